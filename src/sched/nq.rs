//! nq — never queue (`ip_vs_nq.c`): the first eligible server in list order
//! (newest first) with no active connection; if every server is busy, sed's
//! `(active + 1) / weight` minimum. O(n), stateless.

use super::sed::sed_overhead;
use super::{cross_gt, is_eligible, DestLoad, DestView};

/// Never-queue pick.
#[inline]
pub(crate) fn pick(dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
    let mut least: Option<(usize, u64, u32)> = None;
    for (i, (d, l)) in dests.iter().zip(load).enumerate().rev() {
        if !is_eligible(d, l) {
            continue;
        }
        if l.active == 0 {
            return Some(i);
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
    fn nq_takes_idle_server_first() {
        // sed would take the heavy one: (3+1)/10 < (0+1)/1; nq takes the idle one.
        let d = dests(&[1, 10]);
        let load = active(&[0, 3]);
        let nq = Scheduler::build("nq", &[], &d).expect("builds");
        assert_eq!(
            nq.pick(&mut nq.new_state(), &d, &load, &flow(0), 0),
            Some(0)
        );
        let sed = Scheduler::build("sed", &[], &d).expect("builds");
        assert_eq!(
            sed.pick(&mut sed.new_state(), &d, &load, &flow(0), 0),
            Some(1)
        );
        // Nobody idle: sed's rule.
        let load = active(&[1, 3]);
        assert_eq!(
            nq.pick(&mut nq.new_state(), &d, &load, &flow(0), 0),
            Some(1)
        );
        // An idle but overloaded server is not taken.
        let mut load = active(&[0, 3]);
        load[0].overloaded = true;
        assert_eq!(
            nq.pick(&mut nq.new_state(), &d, &load, &flow(0), 0),
            Some(1)
        );
    }
}
