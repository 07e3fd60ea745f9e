//! lblcr — locality-based least connection with replication
//! (`ip_vs_lblcr.c`).
//!
//! Like lblc, but a destination address maps to a **set** of real servers.
//! A pick takes the set's weighted-least-connection member (skipping
//! overloaded, weight-0 and unavailable members; ties to the most recently
//! added member). If there is none, or it is "overloaded" in lblc's sense
//! (`active > weight` and some server has `active * 2 < weight`), wlc picks
//! cluster-wide and the result joins the set. When a set of more than one
//! member has not changed for `expiration_secs` (24 h), its most loaded
//! member is dropped (IPVS's `ip_vs_dest_set_max`, strict weighted compare).
//!
//! The cache (buckets, preallocated pool, GC/expiry timers) is lblc's
//! [`super::lblc`] cache. Sets hold at most [`SET_CAPACITY`] members (IPVS:
//! unbounded); adding to a full set first drops its most loaded member.
//! Members remember `(index, id)`; a member whose server was deleted is
//! dropped from the set when next seen (IPVS keeps it, unusable, until the
//! shrink rule removes it). Default pool: 20,480 entries × 96 bytes per
//! worker and service, allocated in [`LblcrState::new`].

use super::lblc::{is_overloaded, time_reached, LocalityCache, Member};
use super::{cross_gt, overhead, resolve, wlc, DestLoad, DestView, FlowKey, LocalityParams};

/// Maximum members of one destination's server set.
pub const SET_CAPACITY: usize = 8;

/// A destination's server set; `members[..len]` in insertion order (IPVS's
/// list head is the last one).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DestSet {
    lastmod: u32,
    len: u8,
    members: [Member; SET_CAPACITY],
}

impl DestSet {
    fn live(&self) -> &[Member] {
        &self.members[..self.len as usize]
    }

    fn remove_at(&mut self, k: usize) {
        let len = self.len as usize;
        self.members.copy_within(k + 1..len, k);
        self.len -= 1;
    }

    /// Re-finds every member by id; drops deleted ones.
    fn refresh(&mut self, dests: &[DestView]) {
        let mut k = 0;
        while k < self.len as usize {
            let m = self.members[k];
            match resolve(dests, m.idx, m.id) {
                Some(i) => {
                    self.members[k].idx = i as u32;
                    k += 1;
                }
                None => self.remove_at(k),
            }
        }
    }

    /// `ip_vs_dest_set_min`: weighted least-connection member.
    fn min(&self, dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
        let mut it = self.live().iter().rev().map(|m| m.idx as usize);
        let (mut least, mut loh) = loop {
            let i = it.next()?;
            if load[i].overloaded {
                continue;
            }
            if dests[i].weight > 0 && dests[i].available {
                break (i, overhead(&load[i]));
            }
        };
        for i in it {
            if load[i].overloaded {
                continue;
            }
            let doh = overhead(&load[i]);
            if cross_gt(loh, dests[i].weight, doh, dests[least].weight) && dests[i].available {
                least = i;
                loh = doh;
            }
        }
        Some(least)
    }

    /// `ip_vs_dest_set_max`: weighted most-connection member (position in
    /// `members`).
    fn max(&self, dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
        let live = self.live();
        let mut ks = (0..live.len()).rev();
        let (mut most, mut moh) = loop {
            let k = ks.next()?;
            let i = live[k].idx as usize;
            if dests[i].weight > 0 {
                break (k, overhead(&load[i]));
            }
        };
        for k in ks {
            let i = live[k].idx as usize;
            let mi = live[most].idx as usize;
            let doh = overhead(&load[i]);
            if dests[i].weight > 0 && cross_gt(doh, dests[mi].weight, moh, dests[i].weight) {
                most = k;
                moh = doh;
            }
        }
        Some(most)
    }

    /// `ip_vs_dest_set_insert(.., check = true)`.
    fn insert(&mut self, i: usize, dests: &[DestView], load: &[DestLoad], now: u32) {
        let id = dests[i].id;
        if self.live().iter().any(|m| m.id == id) {
            return;
        }
        if self.len as usize == SET_CAPACITY {
            let k = self.max(dests, load).unwrap_or(0);
            self.remove_at(k);
        }
        self.members[self.len as usize] = Member { idx: i as u32, id };
        self.len += 1;
        self.lastmod = now;
    }
}

/// Per-worker lblcr state: the daddr → server-set cache.
#[derive(Debug)]
pub struct LblcrState {
    cache: LocalityCache<DestSet>,
}

impl LblcrState {
    /// Preallocates the cache (`params.capacity` entries).
    pub fn new(params: &LocalityParams) -> Self {
        Self {
            cache: LocalityCache::new(params),
        }
    }

    /// The cache parameters.
    pub fn params(&self) -> &LocalityParams {
        self.cache.params()
    }

    /// Number of cached destination addresses.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of the servers in `daddr`'s set, oldest member first.
    pub fn cached_servers(&self, daddr: &[u8; 16], v6: bool) -> Vec<u32> {
        let b = self.cache.bucket(daddr, v6);
        self.cache
            .find(b, daddr)
            .map(|e| {
                self.cache
                    .slot(e)
                    .value
                    .live()
                    .iter()
                    .map(|m| m.id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs the expiry check now.
    pub fn expire(&mut self, now: u32) {
        self.cache.check_expire(now);
    }

    /// lblcr pick.
    pub(crate) fn pick(
        &mut self,
        dests: &[DestView],
        load: &[DestLoad],
        flow: &FlowKey,
        now: u32,
    ) -> Option<usize> {
        self.cache.maybe_gc(now);
        let expiration = self.cache.params().expiration_secs;
        let b = self.cache.bucket(&flow.daddr, flow.v6);
        if let Some(e) = self.cache.find(b, &flow.daddr) {
            let slot = self.cache.slot_mut(e);
            slot.lastuse = now;
            let set = &mut slot.value;
            set.refresh(dests);
            let dest = set.min(dests, load);
            if set.len > 1 && !time_reached(set.lastmod.wrapping_add(expiration), now) {
                if let Some(k) = set.max(dests, load) {
                    set.remove_at(k);
                    set.lastmod = now;
                }
            }
            if let Some(i) = dest {
                if !is_overloaded(i, dests, load) {
                    return Some(i);
                }
            }
            let i = wlc::pick(dests, load)?;
            set.insert(i, dests, load, now);
            return Some(i);
        }
        let i = wlc::pick(dests, load)?;
        let mut set = DestSet::default();
        set.insert(i, dests, load, now);
        let _ = self.cache.insert(b, &flow.daddr, set, now);
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    fn to(dst: u8) -> FlowKey {
        FlowKey::v4([192, 168, 0, 1], 4000, [172, 16, 0, dst])
    }

    fn set(st: &SchedState, dst: u8) -> Vec<u32> {
        match st {
            SchedState::Lblcr(l) => l.cached_servers(&to(dst).daddr, false),
            _ => Vec::new(),
        }
    }

    #[test]
    fn lblcr_adds_server_when_overloaded() {
        let d = dests(&[10, 10, 10]); // ids 100, 101, 102
        let s = Scheduler::build("lblcr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let mut load = idle(3);
        assert_eq!(s.pick(&mut st, &d, &load, &to(1), 0), Some(2));
        assert_eq!(set(&st, 1), vec![102]);
        // Member busy but not overloaded in lblc's sense: reused.
        load[2].active = 10;
        assert_eq!(s.pick(&mut st, &d, &load, &to(1), 1), Some(2));
        // active > weight while #0 is idle: wlc picks #1 (tie → newest) and
        // it joins the set.
        load[2].active = 11;
        assert_eq!(s.pick(&mut st, &d, &load, &to(1), 2), Some(1));
        assert_eq!(set(&st, 1), vec![102, 101]);
        // The set's least-loaded member serves next.
        load[1].active = 1;
        assert_eq!(s.pick(&mut st, &d, &load, &to(1), 3), Some(1));
        assert_eq!(set(&st, 1), vec![102, 101]);
    }

    #[test]
    fn lblcr_drops_most_loaded_member_after_expiration() {
        let d = dests(&[10, 10, 10]);
        let s = Scheduler::build("lblcr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let mut load = idle(3);
        s.pick(&mut st, &d, &load, &to(1), 0); // {102}
        load[2].active = 11;
        s.pick(&mut st, &d, &load, &to(1), 10); // {102, 101}, lastmod 10
        load[2].active = 9;
        load[1].active = 3;
        let day = 24 * 3600;
        // Not yet expired (needs now > lastmod + 24 h).
        s.pick(&mut st, &d, &load, &to(1), 10 + day);
        assert_eq!(set(&st, 1), vec![102, 101]);
        // Expired: the most loaded member (102) leaves; the pick itself was
        // computed before (101 is least loaded).
        assert_eq!(s.pick(&mut st, &d, &load, &to(1), 11 + day), Some(1));
        assert_eq!(set(&st, 1), vec![101]);
    }

    #[test]
    fn lblcr_drops_deleted_members() {
        let d = dests(&[10, 10]);
        let s = Scheduler::build("lblcr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let mut load = idle(2);
        s.pick(&mut st, &d, &load, &to(1), 0); // {101}
        load[1].active = 11;
        s.pick(&mut st, &d, &load, &to(1), 1); // {101, 100}
        assert_eq!(set(&st, 1), vec![101, 100]);
        let kept: Vec<_> = d[..1].to_vec(); // 101 deleted
        let s2 = Scheduler::build("lblcr", &[], &kept).expect("builds");
        s2.refresh_state(&mut st);
        assert_eq!(s2.pick(&mut st, &kept, &idle(1), &to(1), 2), Some(0));
        assert_eq!(set(&st, 1), vec![100]);
    }

    #[test]
    fn lblcr_set_is_bounded() {
        let d = dests(&[1; 12]);
        let s = Scheduler::build("lblcr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let mut load = idle(12);
        for t in 0..12 {
            let i = s.pick(&mut st, &d, &load, &to(1), t).expect("server");
            load[i].active = 2; // > weight 1, and idle servers have 0*2 < 1
        }
        assert_eq!(set(&st, 1).len(), super::SET_CAPACITY);
    }
}
