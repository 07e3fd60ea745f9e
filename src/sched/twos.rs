//! twos — power of two choices (`ip_vs_twos.c`): draw two servers at random,
//! each with probability proportional to its weight among the eligible
//! servers, and keep the one with the lower `overhead / weight`
//! (cross-multiplied; the first draw wins ties).
//!
//! The control plane builds the cumulative weights over list order, so a
//! draw is a binary search (O(log n)). Eligibility is per-core and dynamic,
//! so a draw that lands on an ineligible server is redrawn (rejection
//! sampling keeps the distribution exactly weight-proportional over the
//! eligible servers); after [`MAX_REDRAWS`] misses the draw falls back to an
//! O(n) scan over the eligible servers.
//!
//! Difference from IPVS, on purpose: IPVS draws `r` in `[0, total]`
//! inclusive and walks `r -= w ≤ 0`, which gives the first server one extra
//! chance in `total + 1` and, for `r = total`, leaves the first choice on the
//! last server with an undefined weight; rvs draws exactly in `[0, total)`.
//!
//! Per-worker state is the random generator (SplitMix64), seeded distinctly
//! per state; no allocation.

use super::{cross_gt, is_eligible, list_order, overhead, splitmix64, DestLoad, DestView};

/// Redraws before the exact O(n) fallback.
pub const MAX_REDRAWS: usize = 8;

/// Cumulative weights in list order.
#[derive(Debug)]
pub struct TwosTable {
    /// `cum[p]` = sum of the weights at list positions `0..=p`.
    cum: Box<[u64]>,
}

impl TwosTable {
    pub(crate) fn build(dests: &[DestView]) -> Self {
        let mut acc = 0u64;
        let cum = list_order(dests.len())
            .map(|i| {
                acc += u64::from(dests[i].weight);
                acc
            })
            .collect();
        Self { cum }
    }

    fn draw(&self, rng: &mut TwosState, dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
        let n = dests.len();
        let total = *self.cum.last()?;
        if total == 0 || self.cum.len() != n {
            return None;
        }
        for _ in 0..MAX_REDRAWS {
            let r = rng.below(total);
            let p = self.cum.partition_point(|&c| c <= r);
            let idx = n.checked_sub(p + 1)?;
            if is_eligible(&dests[idx], &load[idx]) {
                return Some(idx);
            }
        }
        let eligible_total: u64 = dests
            .iter()
            .zip(load)
            .filter(|(d, l)| is_eligible(d, l))
            .map(|(d, _)| u64::from(d.weight))
            .sum();
        if eligible_total == 0 {
            return None;
        }
        let mut r = rng.below(eligible_total);
        for i in list_order(n) {
            if is_eligible(&dests[i], &load[i]) {
                let w = u64::from(dests[i].weight);
                if r < w {
                    return Some(i);
                }
                r -= w;
            }
        }
        None
    }

    /// Two-choices pick.
    pub(crate) fn pick(
        &self,
        st: &mut TwosState,
        dests: &[DestView],
        load: &[DestLoad],
    ) -> Option<usize> {
        let c1 = self.draw(st, dests, load)?;
        let c2 = self.draw(st, dests, load).unwrap_or(c1);
        let (w1, w2) = (dests[c1].weight, dests[c2].weight);
        if cross_gt(overhead(&load[c1]), w2, overhead(&load[c2]), w1) {
            Some(c2)
        } else {
            Some(c1)
        }
    }
}

/// Per-worker twos random generator (SplitMix64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwosState {
    state: u64,
}

impl TwosState {
    /// A generator with a given seed (deterministic tests, replays).
    pub fn with_seed(seed: u64) -> Self {
        Self { state: seed }
    }

    #[inline]
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix64(self.state)
    }

    /// Uniform in `[0, n)` (Lemire's multiply-shift; `n > 0`).
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use super::TwosState;

    #[test]
    fn twos_prefers_lower_load_of_two() {
        // Equal weights; #0 is heavily loaded. #0 only wins when both draws
        // land on it (p = 1/4).
        let d = dests(&[1, 1]);
        let s = Scheduler::build("twos", &[], &d).expect("builds");
        let mut st = SchedState::Twos(TwosState::with_seed(42));
        let load = active(&[50, 1]);
        let heavy = (0..4_000)
            .filter(|&i| s.pick(&mut st, &d, &load, &flow(i), 0) == Some(0))
            .count();
        assert!(
            (800..1_200).contains(&heavy),
            "heavy picked {heavy}/4000, want ~1000"
        );
    }

    #[test]
    fn twos_draws_in_weight_proportion_and_skips_ineligible() {
        // All idle: the first draw wins ties, so picks follow the weights.
        let d = dests(&[1, 3, 0, 4]);
        let s = Scheduler::build("twos", &[], &d).expect("builds");
        let mut st = SchedState::Twos(TwosState::with_seed(7));
        let load = idle(4);
        let mut c = [0usize; 4];
        for i in 0..80_000 {
            c[s.pick(&mut st, &d, &load, &flow(i), 0).expect("server")] += 1;
        }
        assert_eq!(c[2], 0);
        for (i, w) in [(0usize, 1usize), (1, 3), (3, 4)] {
            let want = 80_000 * w / 8;
            assert!(c[i].abs_diff(want) < want / 20 + 100, "{c:?}");
        }
        // Overloaded servers are never drawn; the rest keep their ratio.
        let mut load = idle(4);
        load[3].overloaded = true;
        let mut c = [0usize; 4];
        for i in 0..40_000 {
            c[s.pick(&mut st, &d, &load, &flow(i), 0).expect("server")] += 1;
        }
        assert_eq!(c[3], 0);
        assert!(c[1].abs_diff(3 * c[0]) < 3_000, "{c:?}");
        for l in &mut load {
            l.overloaded = true;
        }
        assert_eq!(s.pick(&mut st, &d, &load, &flow(0), 0), None);
    }
}
