//! fo — weighted fail-over (`ip_vs_fo.c`): the non-overloaded server with the
//! highest weight; ties go to the first in list order (the newest server).
//! All traffic goes to one server until it is quiesced, overloaded or
//! removed. O(n), stateless.

use super::{is_eligible, DestLoad, DestView};

/// Fail-over pick.
#[inline]
pub(crate) fn pick(dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut hw = 0u32;
    for (i, (d, l)) in dests.iter().zip(load).enumerate().rev() {
        if is_eligible(d, l) && d.weight > hw {
            best = Some(i);
            hw = d.weight;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn fo_picks_highest_weight_first_in_list() {
        // Weights 5, 9, 9, 2 inserted in that order: list order is
        // #3(2), #2(9), #1(9), #0(5) → #2 (first 9 in list order).
        let d = dests(&[5, 9, 9, 2]);
        let s = Scheduler::build("fo", &[], &d).expect("builds");
        let mut load = active(&[0, 0, 100, 0]);
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(2));
        load[2].overloaded = true;
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(1));
        load[1].overloaded = true;
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(0), 0), Some(0));
    }
}
