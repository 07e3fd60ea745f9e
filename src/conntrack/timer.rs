//! Time in ticks, and the hashed timer wheel that drives expiry.
//!
//! Rules:
//! * Time is a [`Tick`]: [`TICKS_PER_SEC`] (10) ticks per second since the
//!   worker started, a `u32` that wraps after ~13.6 years; every comparison
//!   is wrap-safe (`(a - b) as i32`). Timeouts are capped at
//!   [`MAX_TIMEOUT_SECS`] so a deadline is never more than 2^31 ticks away.
//! * The wheel has `N` (a power of two) slots of one tick each plus one
//!   "in progress" list. An entry is *filed* in the slot of tick
//!   `clamp(deadline, cur, cur + N - 1)`, where `cur` is the next tick the
//!   wheel will process; so a slot only ever holds entries filed for one tick
//!   and an entry is examined no later than its deadline.
//! * Lazy re-arm: touching an entry only moves its `deadline` field later;
//!   when its slot comes due and the deadline is still ahead, it is filed
//!   again. A deadline that moves *earlier* must be re-filed at once
//!   (`unlink` + `file`, O(1)) — the table does that.
//! * Lists are doubly linked through `u32` indices stored in the entries
//!   ([`WheelLink`]); a `prev` with the top bit set names the list head
//!   instead of an entry. Entry indices are below 2^31.
//! * Processing is bounded: each slot advanced and each entry examined costs
//!   one unit of the caller's budget; a slot left half-done stays in the
//!   "in progress" list for the next call.

/// Time in ticks since the worker started.
pub type Tick = u32;

/// Ticks per second (timer resolution 100 ms).
pub const TICKS_PER_SEC: u32 = 10;

/// The largest timeout accepted anywhere, in seconds (~3.2 years): keeps
/// every deadline within 2^31 ticks of `now`.
pub const MAX_TIMEOUT_SECS: u32 = 100_000_000;

/// Seconds → ticks, saturating at [`MAX_TIMEOUT_SECS`].
#[inline]
pub fn secs_to_ticks(secs: u32) -> Tick {
    secs.min(MAX_TIMEOUT_SECS) * TICKS_PER_SEC
}

/// Whether `t` is at or before `now` (wrap-safe).
#[inline]
pub fn tick_reached(t: Tick, now: Tick) -> bool {
    (now.wrapping_sub(t) as i32) >= 0
}

/// "No entry" marker of every `u32` link.
pub(crate) const NIL: u32 = u32::MAX;
/// Top bit of `WheelLink::prev`: the entry is first in list `prev & !HEAD`.
const HEAD: u32 = 1 << 31;

/// Fewest wheel slots a table gets (the wheel has capacity / 8 slots, rounded
/// up to a power of two, between this and [`MAX_WHEEL_SLOTS`]).
pub const MIN_WHEEL_SLOTS: u32 = 64;
/// 8192 slots of 100 ms cover 819 s: an ESTABLISHED connection (900 s) is
/// examined about twice in its idle life.
pub const MAX_WHEEL_SLOTS: u32 = 8192;

/// The wheel links stored in each entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WheelLink {
    pub(crate) next: u32,
    pub(crate) prev: u32,
}

impl WheelLink {
    /// Not in any list.
    pub(crate) const UNLINKED: WheelLink = WheelLink {
        next: NIL,
        prev: NIL,
    };
}

/// Access to the wheel links of the entries the wheel orders.
pub(crate) trait Linked {
    fn link(&self) -> &WheelLink;
    fn link_mut(&mut self) -> &mut WheelLink;
}

/// A hashed timer wheel over entries identified by `u32` index.
#[derive(Debug)]
pub(crate) struct Wheel {
    /// `slots` list heads, then the "in progress" list.
    heads: Vec<u32>,
    mask: u32,
    /// Next tick to process: every tick before it has been processed.
    cur: Tick,
    /// Entries currently filed (including "in progress").
    filed: u32,
}

impl Wheel {
    /// Slot count for a table of `capacity` entries: capacity/8 rounded to a
    /// power of two, within [`MIN_WHEEL_SLOTS`]..=[`MAX_WHEEL_SLOTS`]
    /// (at most 0.5 byte per entry once capacity ≥ 1024).
    pub(crate) fn slots_for_capacity(capacity: u32) -> u32 {
        (capacity / 8)
            .checked_next_power_of_two()
            .unwrap_or(MAX_WHEEL_SLOTS)
            .clamp(MIN_WHEEL_SLOTS, MAX_WHEEL_SLOTS)
    }

    /// A wheel of `slots` slots (rounded up to a power of two), starting at tick 0.
    pub(crate) fn new(slots: u32) -> Wheel {
        // MAX_WHEEL_SLOTS is a power of two, so this cannot overflow.
        let n = slots.clamp(1, MAX_WHEEL_SLOTS).next_power_of_two();
        Wheel {
            heads: vec![NIL; n as usize + 1],
            mask: n - 1,
            cur: 0,
            filed: 0,
        }
    }

    /// Number of slots.
    pub(crate) fn slots(&self) -> u32 {
        self.mask + 1
    }

    /// Bytes allocated for the list heads.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.heads.capacity() * std::mem::size_of::<u32>()
    }

    /// The next tick the wheel will process.
    pub(crate) fn cur(&self) -> Tick {
        self.cur
    }

    fn in_progress(&self) -> usize {
        self.mask as usize + 1
    }

    /// Files entry `id` in the slot for `deadline` (clamped to the wheel's window).
    #[inline]
    pub(crate) fn file<T: Linked>(&mut self, entries: &mut [T], id: u32, deadline: Tick) {
        let rel = deadline.wrapping_sub(self.cur) as i32;
        let off = if rel <= 0 {
            0
        } else {
            (rel as u32).min(self.mask)
        };
        let slot = self.cur.wrapping_add(off) & self.mask;
        self.push(entries, slot as usize, id);
    }

    fn push<T: Linked>(&mut self, entries: &mut [T], list: usize, id: u32) {
        let old = self.heads[list];
        *entries[id as usize].link_mut() = WheelLink {
            next: old,
            prev: HEAD | list as u32,
        };
        if old != NIL {
            entries[old as usize].link_mut().prev = id;
        }
        self.heads[list] = id;
        self.filed += 1;
    }

    /// Removes entry `id` from whatever list it is in. O(1).
    #[inline]
    pub(crate) fn unlink<T: Linked>(&mut self, entries: &mut [T], id: u32) {
        let WheelLink { next, prev } = *entries[id as usize].link();
        if prev == NIL {
            return; // not filed
        }
        if prev & HEAD != 0 {
            self.heads[(prev & !HEAD) as usize] = next;
        } else {
            entries[prev as usize].link_mut().next = next;
        }
        if next != NIL {
            entries[next as usize].link_mut().prev = prev;
        }
        *entries[id as usize].link_mut() = WheelLink::UNLINKED;
        self.filed -= 1;
    }

    /// The next entry to examine at time `now`, already unlinked: the caller
    /// either frees it or files it again. `None` once the wheel has processed
    /// every tick up to `now`, or when `work` reaches `budget` (one unit per
    /// slot advanced and per entry returned).
    pub(crate) fn next_due<T: Linked>(
        &mut self,
        entries: &mut [T],
        now: Tick,
        work: &mut u32,
        budget: u32,
    ) -> Option<u32> {
        let ip = self.in_progress();
        loop {
            let id = self.heads[ip];
            if id != NIL {
                if *work >= budget {
                    return None;
                }
                *work += 1;
                self.unlink(entries, id);
                return Some(id);
            }
            if !tick_reached(self.cur, now) {
                return None;
            }
            if self.filed == 0 {
                // Nothing to find: jump straight to the present.
                self.cur = now.wrapping_add(1);
                return None;
            }
            if *work >= budget {
                return None;
            }
            // More than a whole turn behind: one turn visits every slot.
            if now.wrapping_sub(self.cur) > self.mask {
                self.cur = now.wrapping_sub(self.mask);
            }
            *work += 1;
            let slot = (self.cur & self.mask) as usize;
            let head = self.heads[slot];
            self.heads[slot] = NIL;
            self.heads[ip] = head;
            if head != NIL {
                entries[head as usize].link_mut().prev = HEAD | ip as u32;
            }
            self.cur = self.cur.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    struct E(WheelLink, Tick);
    impl Linked for E {
        fn link(&self) -> &WheelLink {
            &self.0
        }
        fn link_mut(&mut self) -> &mut WheelLink {
            &mut self.0
        }
    }

    /// Drains everything due at `now`, re-filing what is not yet due.
    fn run(w: &mut Wheel, es: &mut [E], now: Tick, budget: u32) -> (Vec<u32>, u32) {
        let mut work = 0;
        let mut out = Vec::new();
        while let Some(id) = w.next_due(es, now, &mut work, budget) {
            if tick_reached(es[id as usize].1, now) {
                out.push(id);
            } else {
                let d = es[id as usize].1;
                w.file(es, id, d);
            }
        }
        out.sort_unstable();
        (out, work)
    }

    #[test]
    fn entries_come_due_at_their_deadline_not_before() {
        let mut w = Wheel::new(16);
        let mut es = vec![E(WheelLink::UNLINKED, 0); 4];
        for (i, d) in [5u32, 5, 40, 100].into_iter().enumerate() {
            es[i].1 = d;
            w.file(&mut es, i as u32, d);
        }
        assert_eq!(run(&mut w, &mut es, 4, u32::MAX).0, Vec::<u32>::new());
        assert_eq!(run(&mut w, &mut es, 5, u32::MAX).0, vec![0, 1]);
        assert_eq!(run(&mut w, &mut es, 39, u32::MAX).0, Vec::<u32>::new());
        assert_eq!(run(&mut w, &mut es, 40, u32::MAX).0, vec![2]);
        assert_eq!(run(&mut w, &mut es, 99, u32::MAX).0, Vec::<u32>::new());
        assert_eq!(run(&mut w, &mut es, 100, u32::MAX).0, vec![3]);
        assert_eq!(w.filed, 0);
    }

    #[test]
    fn budget_stops_midway_and_the_next_call_resumes() {
        let mut w = Wheel::new(16);
        let mut es = vec![E(WheelLink::UNLINKED, 3); 10];
        for i in 0..10 {
            w.file(&mut es, i, 3);
        }
        let (a, work) = run(&mut w, &mut es, 3, 6);
        assert_eq!(work, 6);
        assert!(!a.is_empty() && a.len() < 10);
        let (b, _) = run(&mut w, &mut es, 3, u32::MAX);
        assert_eq!(a.len() + b.len(), 10);
    }

    #[test]
    fn unlink_from_middle_head_and_in_progress() {
        let mut w = Wheel::new(8);
        let mut es = vec![E(WheelLink::UNLINKED, 2); 3];
        for i in 0..3 {
            w.file(&mut es, i, 2);
        }
        w.unlink(&mut es, 1); // middle
        w.unlink(&mut es, 2); // head
        w.unlink(&mut es, 2); // twice: no-op
        assert_eq!(w.filed, 1);
        let (out, _) = run(&mut w, &mut es, 2, u32::MAX);
        assert_eq!(out, vec![0]);
    }

    #[test]
    fn far_behind_wheel_catches_up_in_one_turn() {
        let mut w = Wheel::new(16);
        let mut es = vec![E(WheelLink::UNLINKED, 0); 2];
        es[0].1 = 7;
        es[1].1 = 1_000_000;
        w.file(&mut es, 0, 7);
        w.file(&mut es, 1, 1_000_000);
        let (out, work) = run(&mut w, &mut es, 500_000, u32::MAX);
        assert_eq!(out, vec![0]);
        assert!(work <= 16 * 2 + 4, "work {work}");
    }

    #[test]
    fn slot_count_scales_with_capacity_within_bounds() {
        assert_eq!(Wheel::slots_for_capacity(0), MIN_WHEEL_SLOTS);
        assert_eq!(Wheel::slots_for_capacity(4096), 512);
        assert_eq!(Wheel::slots_for_capacity(u32::MAX), MAX_WHEEL_SLOTS);
        assert_eq!(Wheel::new(100).slots(), 128);
    }
}
