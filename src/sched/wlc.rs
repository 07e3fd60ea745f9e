//! wlc — weighted least connection (`ip_vs_wlc.c`), IPVS's default: the
//! eligible server with the smallest `overhead / weight`, compared by
//! cross-multiplication (`loh * w_d > doh * w_least` picks `d`) so ties keep
//! the first in list order (the newest server). O(n), stateless.
//!
//! lblc and lblcr reuse this pick as their cluster-wide fallback.

use super::{cross_gt, is_eligible, overhead, DestLoad, DestView};

/// Weighted least-connection pick.
#[inline]
pub(crate) fn pick(dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
    // (index, overhead, weight) of the least loaded so far.
    let mut least: Option<(usize, u64, u32)> = None;
    for (i, (d, l)) in dests.iter().zip(load).enumerate().rev() {
        if !is_eligible(d, l) {
            continue;
        }
        let doh = overhead(l);
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
    fn wlc_divides_by_weight() {
        // overhead/weight: 10*256/1, 30*256/4 = 1920, 20*256/2 = 2560.
        let d = dests(&[1, 4, 2]);
        let load = active(&[10, 30, 20]);
        let s = Scheduler::build("wlc", &[], &d).expect("builds");
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(1));
        // lc would pick the least overhead instead.
        let lc = Scheduler::build("lc", &[], &d).expect("builds");
        assert_eq!(
            lc.pick(&mut lc.new_state(), &d, &load, &flow(0), 0),
            Some(0)
        );
    }

    #[test]
    fn wlc_ties_go_to_newest_dest() {
        // Equal overhead/weight everywhere: 2/1 = 4/2 = 6/3.
        let d = dests(&[1, 2, 3]);
        let load = active(&[2, 4, 6]);
        let s = Scheduler::build("wlc", &[], &d).expect("builds");
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(2));
        let mut load = load;
        load[2].overloaded = true;
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(1));
    }

    #[test]
    fn wlc_fills_servers_in_weight_proportion() {
        let d = dests(&[1, 2, 5]);
        let s = Scheduler::build("wlc", &[], &d).expect("builds");
        let mut st = s.new_state();
        let mut load = idle(3);
        for i in 0..800 {
            let p = s.pick(&mut st, &d, &load, &flow(i), 0).expect("server");
            load[p].bind(ConnKind::Active, &d[p]);
            st.load_changed(&load, p);
        }
        assert_eq!(
            load.iter().map(|l| l.active).collect::<Vec<_>>(),
            vec![100, 200, 500]
        );
    }
}
