//! sed — shortest expected delay (`ip_vs_sed.c`): the eligible server with
//! the smallest `(active + 1) / weight`; inactive connections are ignored.
//! Cross-multiplied compares; ties keep the first in list order (newest).
//! O(n), stateless. nq falls back to sed's cost function.

use super::{cross_gt, is_eligible, DestLoad, DestView};

/// sed's cost numerator: `active + 1`.
#[inline]
pub(crate) fn sed_overhead(load: &DestLoad) -> u64 {
    u64::from(load.active) + 1
}

/// Shortest-expected-delay pick.
#[inline]
pub(crate) fn pick(dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
    let mut least: Option<(usize, u64, u32)> = None;
    for (i, (d, l)) in dests.iter().zip(load).enumerate().rev() {
        if !is_eligible(d, l) {
            continue;
        }
        let doh = sed_overhead(l);
        match least {
            Some((_, loh, lw)) if !cross_gt(loh, d.weight, doh, lw) => {}
            _ => least = Some((i, doh, d.weight)),
        }
    }
    least.map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn sed_prefers_idle_heavy_server() {
        // Both idle: (0+1)/1 vs (0+1)/3 — the heavy server wins even though
        // the light one is newer (wlc would tie and take the newest).
        let d = dests(&[3, 1]);
        let load = idle(2);
        let s = Scheduler::build("sed", &[], &d).expect("builds");
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(0));
        let wlc = Scheduler::build("wlc", &[], &d).expect("builds");
        assert_eq!(
            wlc.pick(&mut wlc.new_state(), &d, &load, &flow(0), 0),
            Some(1)
        );
        // Heavy server busy: (2+1)/3 = 1 vs (0+1)/1 = 1 → tie → newest (light).
        let load = active(&[2, 0]);
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(1));
        // Inactive connections do not count.
        let mut load = active(&[1, 0]);
        load[0].inactive = 1_000;
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(0));
    }
}
