//! lblc — locality-based least connection (`ip_vs_lblc.c`), and the
//! per-worker daddr cache lblc and lblcr share.
//!
//! **Algorithm.** A per-service cache maps the packet's destination address
//! (`FlowKey::daddr`, e.g. the origin server behind a transparent cache
//! cluster) to a real server. A cached server is reused unless it is
//! unavailable, has weight 0, or is "overloaded" in lblc's own sense:
//! `active > weight` **and** some server has `active * 2 < weight`. (As in
//! IPVS, the `-x` OVERLOAD flag does not invalidate a cached server.)
//! Otherwise the server is chosen by wlc and the cache entry is (re)written.
//!
//! **Cache.** Per worker, preallocated at [`LblcState::new`] (no allocation in
//! `pick`): `buckets` chains (1024, keyed by `hash_32(fold(daddr), 10)`) over
//! an entry pool of `capacity` slots (default 20,480). IPVS's table is
//! unbounded; when rvs's pool is full, the least recently used entry of the
//! target bucket is overwritten, or, if that bucket is empty, the connection
//! is scheduled without caching (IPVS's "kmalloc failed" path).
//!
//! **Expiry**, as IPVS's timer, run from `pick` at most every
//! `gc_interval_secs` (60 s) of the caller's clock: every
//! `full_check_every`-th run (30) drops entries idle ≥ `expiration_secs`
//! (24 h); otherwise, when more than `max_entries` (16,384) are cached, it
//! drops entries idle ≥ `entry_timeout_secs` (6 min) bucket by bucket from a
//! rover until `(count − max) · 4/3` (capped at max/2) are gone.
//!
//! Entries remember their server as `(index, id)` and re-find it by id after
//! a reconfiguration; a deleted server makes the entry reschedule.

use super::hash::{fold_addr, hash_32};
use super::{resolve, wlc, DestLoad, DestView, FlowKey, LocalityParams};

const NIL: u32 = u32::MAX;

/// A cached server reference: index into `dests` plus its stable id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) idx: u32,
    pub(crate) id: u32,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot<V> {
    pub(crate) addr: [u8; 16],
    pub(crate) next: u32,
    pub(crate) lastuse: u32,
    pub(crate) value: V,
}

/// `a` is at or after `b` on a wrapping seconds clock.
#[inline]
pub(crate) fn time_reached(now: u32, deadline: u32) -> bool {
    (now.wrapping_sub(deadline) as i32) >= 0
}

/// The preallocated daddr-keyed cache with IPVS's expiry rules.
#[derive(Debug)]
pub(crate) struct LocalityCache<V> {
    params: LocalityParams,
    bits: u32,
    heads: Box<[u32]>,
    slots: Box<[Slot<V>]>,
    free: u32,
    count: u32,
    rover: u32,
    counter: u32,
    next_gc: Option<u32>,
}

impl<V: Copy + Default> LocalityCache<V> {
    pub(crate) fn new(params: &LocalityParams) -> Self {
        let cap = params.capacity as usize;
        let mut slots = vec![Slot::<V>::default(); cap].into_boxed_slice();
        for (i, s) in slots.iter_mut().enumerate() {
            s.next = if i + 1 < cap { i as u32 + 1 } else { NIL };
        }
        Self {
            params: *params,
            bits: params.buckets.trailing_zeros().max(1),
            heads: vec![NIL; params.buckets as usize].into_boxed_slice(),
            slots,
            free: if cap > 0 { 0 } else { NIL },
            count: 0,
            rover: 0,
            counter: 1,
            next_gc: None,
        }
    }

    pub(crate) fn params(&self) -> &LocalityParams {
        &self.params
    }

    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    #[inline]
    pub(crate) fn bucket(&self, addr: &[u8; 16], v6: bool) -> u32 {
        if self.heads.len() == 1 {
            return 0;
        }
        hash_32(fold_addr(addr, v6), self.bits) & (self.heads.len() as u32 - 1)
    }

    #[inline]
    pub(crate) fn find(&self, bucket: u32, addr: &[u8; 16]) -> Option<u32> {
        let mut e = self.heads[bucket as usize];
        while e != NIL {
            let s = &self.slots[e as usize];
            if s.addr == *addr {
                return Some(e);
            }
            e = s.next;
        }
        None
    }

    #[inline]
    pub(crate) fn slot_mut(&mut self, e: u32) -> &mut Slot<V> {
        &mut self.slots[e as usize]
    }

    #[inline]
    pub(crate) fn slot(&self, e: u32) -> &Slot<V> {
        &self.slots[e as usize]
    }

    /// Adds an entry at the head of `bucket` (caller checked it is absent).
    /// When the pool is full, overwrites the bucket's least recently used
    /// entry; `None` when there is no room at all.
    pub(crate) fn insert(
        &mut self,
        bucket: u32,
        addr: &[u8; 16],
        value: V,
        now: u32,
    ) -> Option<u32> {
        let e = if self.free != NIL {
            let e = self.free;
            self.free = self.slots[e as usize].next;
            self.slots[e as usize].next = self.heads[bucket as usize];
            self.heads[bucket as usize] = e;
            self.count += 1;
            e
        } else {
            let mut e = self.heads[bucket as usize];
            let mut victim: Option<(u32, u32)> = None;
            while e != NIL {
                let idle = now.wrapping_sub(self.slots[e as usize].lastuse);
                if victim.map_or(true, |(_, v)| idle >= v) {
                    victim = Some((e, idle));
                }
                e = self.slots[e as usize].next;
            }
            victim?.0
        };
        let s = &mut self.slots[e as usize];
        s.addr = *addr;
        s.lastuse = now;
        s.value = value;
        Some(e)
    }

    /// Runs IPVS's periodic expiry when due.
    #[inline]
    pub(crate) fn maybe_gc(&mut self, now: u32) {
        match self.next_gc {
            None => self.next_gc = Some(now.wrapping_add(self.params.gc_interval_secs)),
            Some(due) if time_reached(now, due) => {
                self.check_expire(now);
                self.next_gc = Some(now.wrapping_add(self.params.gc_interval_secs));
            }
            Some(_) => {}
        }
    }

    /// `ip_vs_lblc_check_expire`.
    pub(crate) fn check_expire(&mut self, now: u32) {
        if self.counter % self.params.full_check_every == 0 {
            let exp = self.params.expiration_secs;
            let nb = self.heads.len() as u32;
            let mut j = self.rover;
            for _ in 0..nb {
                j = (j + 1) & (nb - 1);
                self.sweep_bucket(j, now, exp, None);
            }
            self.rover = j;
            self.counter = 1;
            return;
        }
        if self.count <= self.params.max_entries {
            self.counter += 1;
            return;
        }
        let max = i64::from(self.params.max_entries);
        let mut goal = ((i64::from(self.count) - max) * 4 / 3).min(max / 2);
        let nb = self.heads.len() as u32;
        let mut j = self.rover;
        for _ in 0..nb {
            j = (j + 1) & (nb - 1);
            self.sweep_bucket(j, now, self.params.entry_timeout_secs, Some(&mut goal));
            if goal <= 0 {
                break;
            }
        }
        self.rover = j;
    }

    /// Drops the entries of `bucket` idle for at least `idle_secs`.
    fn sweep_bucket(&mut self, bucket: u32, now: u32, idle_secs: u32, mut goal: Option<&mut i64>) {
        let mut prev = NIL;
        let mut e = self.heads[bucket as usize];
        while e != NIL {
            let next = self.slots[e as usize].next;
            let deadline = self.slots[e as usize].lastuse.wrapping_add(idle_secs);
            if time_reached(now, deadline) {
                if prev == NIL {
                    self.heads[bucket as usize] = next;
                } else {
                    self.slots[prev as usize].next = next;
                }
                self.slots[e as usize].next = self.free;
                self.free = e;
                self.count -= 1;
                if let Some(g) = goal.as_deref_mut() {
                    *g -= 1;
                }
            } else {
                prev = e;
            }
            e = next;
        }
    }
}

/// lblc's "overloaded": `active > weight` and some available server has
/// `active * 2 < weight`.
#[inline]
pub(crate) fn is_overloaded(i: usize, dests: &[DestView], load: &[DestLoad]) -> bool {
    if load[i].active <= dests[i].weight {
        return false;
    }
    dests
        .iter()
        .zip(load)
        .any(|(d, l)| d.available && u64::from(l.active) * 2 < u64::from(d.weight))
}

/// Per-worker lblc state: the daddr → server cache.
#[derive(Debug)]
pub struct LblcState {
    cache: LocalityCache<Member>,
}

impl LblcState {
    /// Preallocates the cache (`params.capacity` entries, 32 bytes each).
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

    /// The id of the server cached for `daddr`, if any.
    pub fn cached_server(&self, daddr: &[u8; 16], v6: bool) -> Option<u32> {
        let b = self.cache.bucket(daddr, v6);
        self.cache
            .find(b, daddr)
            .map(|e| self.cache.slot(e).value.id)
    }

    /// Runs the expiry check now (the worker may call this from a timer
    /// instead of relying on `pick`).
    pub fn expire(&mut self, now: u32) {
        self.cache.check_expire(now);
    }

    /// lblc pick.
    pub(crate) fn pick(
        &mut self,
        dests: &[DestView],
        load: &[DestLoad],
        flow: &FlowKey,
        now: u32,
    ) -> Option<usize> {
        self.cache.maybe_gc(now);
        let b = self.cache.bucket(&flow.daddr, flow.v6);
        if let Some(e) = self.cache.find(b, &flow.daddr) {
            let slot = self.cache.slot_mut(e);
            slot.lastuse = now;
            if let Some(i) = resolve(dests, slot.value.idx, slot.value.id) {
                slot.value.idx = i as u32;
                let d = &dests[i];
                if d.available && d.weight > 0 && !is_overloaded(i, dests, load) {
                    return Some(i);
                }
            }
            let i = wlc::pick(dests, load)?;
            slot.value = Member {
                idx: i as u32,
                id: dests[i].id,
            };
            return Some(i);
        }
        let i = wlc::pick(dests, load)?;
        let member = Member {
            idx: i as u32,
            id: dests[i].id,
        };
        let _ = self.cache.insert(b, &flow.daddr, member, now);
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    fn to(dst: u32) -> FlowKey {
        let b = dst.to_be_bytes();
        FlowKey::v4([192, 168, 0, 1], 4000, [b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn lblc_reuses_until_overloaded() {
        let d = dests(&[10, 10, 10]);
        let s = Scheduler::build("lblc", &[], &d).expect("builds");
        let mut st = s.new_state();
        let mut load = idle(3);
        let first = s.pick(&mut st, &d, &load, &to(1), 0).expect("server");
        assert_eq!(first, 2, "wlc tie → newest");
        // Busier than the others but active <= weight: reused.
        load[first].active = 10;
        assert_eq!(s.pick(&mut st, &d, &load, &to(1), 1), Some(first));
        // The -x OVERLOAD flag does not invalidate the cache (as in IPVS).
        load[first].overloaded = true;
        assert_eq!(s.pick(&mut st, &d, &load, &to(1), 2), Some(first));
        load[first].overloaded = false;
        // active > weight but nobody has active*2 < weight: still reused.
        load[first].active = 11;
        load[0].active = 5;
        load[1].active = 5;
        assert_eq!(s.pick(&mut st, &d, &load, &to(1), 3), Some(first));
        // Now server #0 has 4*2 < 10: rescheduled by wlc, and cached.
        load[0].active = 4;
        assert_eq!(s.pick(&mut st, &d, &load, &to(1), 4), Some(0));
        load[first].active = 0;
        assert_eq!(
            s.pick(&mut st, &d, &load, &to(1), 5),
            Some(0),
            "new entry sticks"
        );
        // Another destination gets its own wlc choice.
        assert_eq!(s.pick(&mut st, &d, &load, &to(2), 6), Some(2));
    }

    #[test]
    fn lblc_reschedules_when_cached_server_quiesced_or_deleted() {
        let d = dests(&[1, 1]);
        let s = Scheduler::build("lblc", &[], &d).expect("builds");
        let mut st = s.new_state();
        let load = idle(2);
        assert_eq!(s.pick(&mut st, &d, &load, &to(9), 0), Some(1));
        let mut q = d.clone();
        q[1].weight = 0;
        let sq = Scheduler::build("lblc", &[], &q).expect("builds");
        sq.refresh_state(&mut st);
        assert_eq!(sq.pick(&mut st, &q, &load, &to(9), 1), Some(0));
        // Delete server id 100 (index 0): the entry re-finds nothing, reschedules.
        let gone: Vec<_> = d[1..].to_vec();
        let sg = Scheduler::build("lblc", &[], &gone).expect("builds");
        sg.refresh_state(&mut st);
        assert_eq!(sg.pick(&mut st, &gone, &idle(1), &to(9), 2), Some(0));
        let SchedState::Lblc(l) = &st else {
            panic!("lblc state")
        };
        assert_eq!(l.cached_server(&to(9).daddr, false), Some(101));
    }

    #[test]
    fn lblc_gc_follows_ipvs_timers() {
        let params = LocalityParams {
            buckets: 16,
            max_entries: 8,
            capacity: 32,
            ..LocalityParams::default()
        };
        let d = dests(&[1, 1]);
        let s = Scheduler::build_with(
            "lblc",
            &[],
            &d,
            &BuildOptions {
                locality: params,
                ..BuildOptions::default()
            },
        )
        .expect("builds");
        let mut st = s.new_state();
        let load = idle(2);
        // t=0: 20 destinations cached (over max 8); GC first due at t=60.
        for dst in 0..20 {
            s.pick(&mut st, &d, &load, &to(dst), 0);
        }
        let len = |st: &SchedState| match st {
            SchedState::Lblc(l) => l.len(),
            _ => usize::MAX,
        };
        assert_eq!(len(&st), 20);
        // t=60: nothing idle >= 6 min yet.
        s.pick(&mut st, &d, &load, &to(0), 60);
        assert_eq!(len(&st), 20);
        // t=400: keep one destination fresh; GC at t>=420 trims idle entries
        // toward max: goal (20-8)*4/3 = 16 → capped at 8/2 = 4 per run
        // (whole buckets are swept, so at least 4 go).
        s.pick(&mut st, &d, &load, &to(0), 400);
        s.pick(&mut st, &d, &load, &to(0), 420);
        let after = len(&st);
        assert!(
            (4..=19).contains(&(20 - after)) && after < 20,
            "trimmed to {after}"
        );
        assert!(
            matches!(&st, SchedState::Lblc(l) if l.cached_server(&to(0).daddr, false).is_some())
        );
        // Full check: every 30th run drops entries idle >= 24 h.
        let mut t = 420;
        for _ in 0..40 {
            t += 86_400 / 30;
            s.pick(&mut st, &d, &load, &to(0), t);
        }
        assert_eq!(len(&st), 1, "only the destination in use survives");
    }

    #[test]
    fn lblc_full_pool_overwrites_lru_of_bucket_or_skips_caching() {
        let params = LocalityParams {
            buckets: 1,
            max_entries: 2,
            capacity: 2,
            ..LocalityParams::default()
        };
        let d = dests(&[1]);
        let s = Scheduler::build_with(
            "lblc",
            &[],
            &d,
            &BuildOptions {
                locality: params,
                ..BuildOptions::default()
            },
        )
        .expect("builds");
        let mut st = s.new_state();
        let load = idle(1);
        s.pick(&mut st, &d, &load, &to(1), 0);
        s.pick(&mut st, &d, &load, &to(2), 5);
        s.pick(&mut st, &d, &load, &to(3), 10); // evicts to(1), the LRU
        let SchedState::Lblc(l) = &st else {
            panic!("lblc state")
        };
        assert_eq!(l.len(), 2);
        assert!(l.cached_server(&to(1).daddr, false).is_none());
        assert!(l.cached_server(&to(2).daddr, false).is_some());
        assert!(l.cached_server(&to(3).daddr, false).is_some());
    }
}
