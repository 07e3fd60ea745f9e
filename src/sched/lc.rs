//! lc — least connection (`ip_vs_lc.c`): the eligible server with the
//! smallest `overhead = active*256 + inactive`; weight only gates
//! eligibility. Ties go to the first in list order (the newest server).
//! O(n), stateless.

use super::{is_eligible, overhead, DestLoad, DestView};

/// Least-connection pick.
#[inline]
pub(crate) fn pick(dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for (i, (d, l)) in dests.iter().zip(load).enumerate().rev() {
        if !is_eligible(d, l) {
            continue;
        }
        let doh = overhead(l);
        if least.map_or(true, |(_, loh)| doh < loh) {
            least = Some((i, doh));
        }
    }
    least.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn lc_picks_least_overhead() {
        // Weights differ but lc ignores them: overheads 512, 257, 256.
        let d = dests(&[1, 10, 5]);
        let load = vec![
            DestLoad {
                active: 2,
                inactive: 0,
                ..Default::default()
            }, // 512
            DestLoad {
                active: 1,
                inactive: 1,
                ..Default::default()
            }, // 257
            DestLoad {
                active: 1,
                inactive: 0,
                ..Default::default()
            }, // 256
        ];
        let s = Scheduler::build("lc", &[], &d).expect("builds");
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(2));
        // 255 inactive conns still cost less than one active one.
        let load = vec![
            DestLoad {
                active: 0,
                inactive: 255,
                ..Default::default()
            },
            DestLoad {
                active: 1,
                inactive: 0,
                ..Default::default()
            },
            DestLoad {
                active: 1,
                inactive: 0,
                ..Default::default()
            },
        ];
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(0));
    }

    #[test]
    fn lc_ties_go_to_newest_and_overloaded_is_skipped() {
        let d = dests(&[1, 1, 1]);
        let s = Scheduler::build("lc", &[], &d).expect("builds");
        let mut load = idle(3);
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(2));
        load[2].overloaded = true;
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(1));
    }
}
