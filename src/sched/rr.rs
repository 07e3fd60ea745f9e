//! rr — round robin (`ip_vs_rr.c`): the next eligible server after the last
//! pick, circularly, in IPVS list order (newest first).
//!
//! Per-worker state is the cursor: the last picked server as `(index, id)`.
//! After a reconfiguration the cursor re-finds its server by id; if that
//! server was deleted the cursor restarts at the list head (IPVS moves it to
//! the deleted server's predecessor — the difference is one rotation offset).
//! O(1) when the next server is eligible, O(n) worst case; no allocation.

use super::{is_eligible, resolve, DestLoad, DestView};

/// Per-worker rr cursor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RrState {
    /// Last picked server as `(index, id)`; `None` = at the list head.
    last: Option<(u32, u32)>,
}

/// Round-robin pick.
pub(crate) fn pick(state: &mut RrState, dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
    let n = dests.len();
    if n == 0 {
        return None;
    }
    // List position p = n-1-index; the head (newest) is position 0.
    let start = match state.last.and_then(|(i, id)| resolve(dests, i, id)) {
        Some(idx) => (n - 1 - idx) + 1,
        None => 0,
    };
    for step in 0..n {
        let mut p = start + step;
        if p >= n {
            p -= n;
        }
        let idx = n - 1 - p;
        if is_eligible(&dests[idx], &load[idx]) {
            state.last = Some((idx as u32, dests[idx].id));
            return Some(idx);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn rr_cycles_eligible_skipping_quiesced() {
        // Inserted A, B, C, D; C quiesced. List order: D, C, B, A.
        let d = dests(&[1, 1, 0, 1]);
        let s = Scheduler::build("rr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let load = idle(4);
        let picks: Vec<_> = (0..7)
            .map(|i| s.pick(&mut st, &d, &load, &flow(i), 0))
            .collect();
        assert_eq!(
            picks,
            vec![
                Some(3),
                Some(1),
                Some(0),
                Some(3),
                Some(1),
                Some(0),
                Some(3)
            ]
        );
    }

    #[test]
    fn rr_skips_overloaded_and_returns_none_when_all_are() {
        let d = dests(&[1, 1, 1]);
        let s = Scheduler::build("rr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let mut load = idle(3);
        load[1].overloaded = true;
        let picks: Vec<_> = (0..4)
            .map(|i| s.pick(&mut st, &d, &load, &flow(i), 0))
            .collect();
        assert_eq!(picks, vec![Some(2), Some(0), Some(2), Some(0)]);
        for l in &mut load {
            l.overloaded = true;
        }
        assert_eq!(s.pick(&mut st, &d, &load, &flow(0), 0), None);
    }

    #[test]
    fn rr_cursor_survives_a_reconfiguration_by_id() {
        let d = dests(&[1, 1, 1]); // ids 100, 101, 102; order 102, 101, 100
        let s = Scheduler::build("rr", &[], &d).expect("builds");
        let mut st = s.new_state();
        assert_eq!(s.pick(&mut st, &d, &idle(3), &flow(0), 0), Some(2));
        assert_eq!(s.pick(&mut st, &d, &idle(3), &flow(0), 0), Some(1)); // id 101
                                                                         // Oldest server (id 100) deleted: id 101 moves to index 0.
        let d2: Vec<_> = d[1..].to_vec();
        let s2 = Scheduler::build("rr", &[], &d2).expect("builds");
        s2.refresh_state(&mut st);
        // After id 101 comes the head again (id 102, index 1).
        assert_eq!(s2.pick(&mut st, &d2, &idle(2), &flow(0), 0), Some(1));
        assert_eq!(s2.pick(&mut st, &d2, &idle(2), &flow(0), 0), Some(0));
    }
}
