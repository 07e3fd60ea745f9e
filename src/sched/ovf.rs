//! ovf — overflow connection (`ip_vs_ovf.c`): the highest-weight server whose
//! active connections do not exceed its weight (`active ≤ weight`), skipping
//! overloaded and weight-0 servers; ties go to the first in list order
//! (newest). Only active connections count, so it suits TCP, not UDP.
//! With per-core counters the limit applies per worker (see the module doc).
//! O(n), stateless.

use super::{is_eligible, DestLoad, DestView};

/// Overflow pick.
#[inline]
pub(crate) fn pick(dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for (i, (d, l)) in dests.iter().zip(load).enumerate().rev() {
        let w = d.weight;
        if !is_eligible(d, l) || l.active > w {
            continue;
        }
        if best.map_or(true, |(_, hw)| w > hw) {
            best = Some((i, w));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn ovf_skips_server_over_its_weight() {
        let d = dests(&[2, 5]);
        let s = Scheduler::build("ovf", &[], &d).expect("builds");
        let mut st = s.new_state();
        let mut load = idle(2);
        // The weight-5 server takes connections while active <= 5, i.e. six
        // of them, then the weight-2 server takes three, then nothing.
        let mut picks = Vec::new();
        for i in 0..10 {
            match s.pick(&mut st, &d, &load, &flow(i), 0) {
                Some(p) => {
                    load[p].bind(ConnKind::Active, &d[p]);
                    st.load_changed(&load, p);
                    picks.push(p);
                }
                None => break,
            }
        }
        assert_eq!(picks, vec![1, 1, 1, 1, 1, 1, 0, 0, 0]);
        // Inactive connections do not count.
        let mut load = idle(2);
        load[1].inactive = 1_000;
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(1));
    }
}
