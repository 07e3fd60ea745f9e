//! IP fragments of TCP and UDP, forwarded without reassembly as IPVS does
//! for NAT, DR, TUN and FULLNAT: the first fragment (offset 0) carries the
//! L4 header and is looked up, scheduled and rewritten like a whole packet
//! (its L4 checksum covers the whole datagram, so the incremental update of
//! addresses and ports fixes it for the datagram); later fragments carry
//! no ports and take the connection the first one found, by the datagram's
//! key (source, destination, protocol, identification): only their IP
//! header is rewritten (`xmit::NO_L4`).
//!
//! Steering (DESIGN §5 cannot apply: non-first fragments have no ports).
//! Every fragment of a datagram passes first through one worker,
//! `steer::frag_owner(src, dst, ident)` — the *fragment router* — whatever
//! queue it arrived on (the receiving worker hands it over like any packet
//! it does not own; the AF_PACKET cBPF fanout program already delivers
//! IPv4 fragments to it, other devices anywhere). The router learns the flow owner from the first
//! fragment (`steer::flow_owner` of its tuple, the same function every
//! other packet of the flow is steered by), remembers it in its
//! [`FragTable`], and passes the datagram's fragments to that owner through
//! the one-producer ring between them, so the owner sees the first fragment
//! before the later ones. The owner remembers the first fragment's tuple in
//! its own [`FragTable`] and forwards the later ones on that connection.
//! With one worker the router and the owner are the same.
//!
//! Fragments that reach the router before their first fragment wait in a
//! small buffer ([`FragPending`], [`PENDING_SLOTS`] per worker, at most
//! [`PENDING_NS`]); they follow the first fragment once it comes, are
//! dropped as `frag_timeout` when it does not, and as `frag_buffer_full`
//! when the buffer is full — a flood of non-first fragments holds at most
//! [`PENDING_SLOTS`] buffers per worker for [`PENDING_NS`] and is counted.
//!
//! Rules: both structures are allocated when the worker starts and never
//! grow; the table is set-associative ([`WAYS`] ways), entries age out after
//! [`ENTRY_NS`] and a full set replaces its oldest entry; nothing here
//! allocates, locks or logs on the packet path.

use super::links::flow_owner;
use super::{Outcome, Worker};
use crate::conntrack::{Addr, Tuple};
use crate::dataplane::counters::{bump, DropReason};
use crate::dataplane::driver::PortQueue;
use crate::dataplane::xmit::Layout;
use crate::steer;

/// Entries of a worker's fragment table (sets × ways).
pub const TABLE_ENTRIES: usize = 2048;
/// Ways per set.
pub const WAYS: usize = 4;
/// How long a datagram's record lives after its last use.
pub const ENTRY_NS: u64 = 2_000_000_000;
/// Fragments a worker holds while they wait for their first fragment.
pub const PENDING_SLOTS: usize = 64;
/// How long a fragment waits for its first fragment.
pub const PENDING_NS: u64 = 1_000_000_000;

/// What identifies one IP datagram's fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragKey {
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// IP identification (IPv4: 16 bits; IPv6 fragment header: 32 bits).
    pub ident: u32,
    /// Upper-layer protocol.
    pub proto: u8,
    /// IPv6?
    pub v6: bool,
}

impl FragKey {
    /// The key of a fragment.
    pub fn new(proto: u8, v6: bool, src: Addr, dst: Addr, ident: u32) -> FragKey {
        FragKey {
            src,
            dst,
            ident,
            proto,
            v6,
        }
    }

    fn alen(&self) -> usize {
        if self.v6 {
            16
        } else {
            4
        }
    }

    /// The worker routing this datagram's fragments.
    pub fn router(&self, workers: u16) -> u16 {
        let n = self.alen();
        steer::frag_owner(&self.src[..n], &self.dst[..n], self.ident, workers)
    }

    fn set(&self, sets: usize) -> usize {
        let h = steer::fold_addr(&self.src) ^ steer::fold_addr(&self.dst).rotate_left(7);
        let h = (h ^ self.ident ^ (u32::from(self.proto) << 24)).wrapping_mul(0x85EB_CA6B);
        ((h ^ (h >> 15)) as usize) % sets
    }
}

/// The first fragment of a datagram: its tuple and TCP flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstFrag {
    /// The datagram's connection tuple as the first fragment carries it.
    pub tuple: Tuple,
    /// Its TCP flags (0 for UDP); later fragments are the same segment.
    pub flags: u8,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: FragKey,
    /// 0: empty.
    expires: u64,
    /// The flow owner (router side), if learned.
    owner: Option<u16>,
    /// The first fragment (owner side), if seen.
    first: Option<FirstFrag>,
}

const EMPTY: Entry = Entry {
    key: FragKey {
        src: [0; 16],
        dst: [0; 16],
        ident: 0,
        proto: 0,
        v6: false,
    },
    expires: 0,
    owner: None,
    first: None,
};

/// Datagram key → flow owner (on the router) and → first fragment (on the
/// owner); fixed size, aged.
pub struct FragTable {
    e: Vec<Entry>,
}

impl Default for FragTable {
    fn default() -> Self {
        Self::new()
    }
}

impl FragTable {
    /// An empty table of [`TABLE_ENTRIES`].
    pub fn new() -> FragTable {
        FragTable {
            e: vec![EMPTY; TABLE_ENTRIES],
        }
    }

    fn ways(&self, key: &FragKey) -> std::ops::Range<usize> {
        let s = key.set(self.e.len() / WAYS) * WAYS;
        s..s + WAYS
    }

    fn find(&self, key: &FragKey, now: u64) -> Option<&Entry> {
        self.e[self.ways(key)]
            .iter()
            .find(|e| e.expires > now && e.key == *key)
    }

    /// The live entry for `key`, else an empty, expired or the oldest slot
    /// of its set, reset for `key`.
    fn slot(&mut self, key: &FragKey, now: u64) -> &mut Entry {
        let r = self.ways(key);
        let set = &mut self.e[r];
        let i = match set.iter().position(|e| e.expires > now && e.key == *key) {
            Some(i) => i,
            None => {
                let i = (0..WAYS).min_by_key(|&i| set[i].expires).unwrap_or(0);
                set[i] = Entry { key: *key, ..EMPTY };
                i
            }
        };
        let e = &mut set[i];
        e.expires = now + ENTRY_NS;
        e
    }

    /// Router side: the first fragment of `key` goes to `owner`.
    pub fn set_owner(&mut self, key: &FragKey, owner: u16, now: u64) {
        self.slot(key, now).owner = Some(owner);
    }

    /// Router side: where `key`'s fragments go.
    pub fn owner(&self, key: &FragKey, now: u64) -> Option<u16> {
        self.find(key, now).and_then(|e| e.owner)
    }

    /// Owner side: the first fragment of `key`.
    pub fn set_first(&mut self, key: &FragKey, first: FirstFrag, now: u64) {
        self.slot(key, now).first = Some(first);
    }

    /// Owner side: the first fragment of `key`, if seen.
    pub fn first(&self, key: &FragKey, now: u64) -> Option<FirstFrag> {
        self.find(key, now).and_then(|e| e.first)
    }

    /// Live entries (tests).
    #[cfg(test)]
    fn live(&self, now: u64) -> usize {
        self.e.iter().filter(|e| e.expires > now).count()
    }
}

struct Waiting<B> {
    key: FragKey,
    port: u16,
    lay: Layout,
    buf: B,
    deadline: u64,
}

/// Fragments waiting for their datagram's first fragment: a fixed array of
/// [`PENDING_SLOTS`].
pub struct FragPending<B> {
    slots: Vec<Option<Waiting<B>>>,
    used: usize,
}

impl<B> Default for FragPending<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> FragPending<B> {
    /// An empty buffer.
    pub fn new() -> Self {
        FragPending {
            slots: (0..PENDING_SLOTS).map(|_| None).collect(),
            used: 0,
        }
    }

    /// Fragments waiting.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Hold `buf` until `deadline`; gives it back when full.
    fn push(
        &mut self,
        key: FragKey,
        port: u16,
        lay: Layout,
        buf: B,
        deadline: u64,
    ) -> Result<(), B> {
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(s) => {
                *s = Some(Waiting {
                    key,
                    port,
                    lay,
                    buf,
                    deadline,
                });
                self.used += 1;
                Ok(())
            }
            None => Err(buf),
        }
    }

    /// Take one waiting fragment of `key`, oldest slot first.
    fn take(&mut self, key: &FragKey) -> Option<(u16, Layout, B)> {
        if self.used == 0 {
            return None;
        }
        let s = self
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|w| w.key == *key))?;
        let w = s.take()?;
        self.used -= 1;
        Some((w.port, w.lay, w.buf))
    }

    /// Drop what waited past its deadline; returns how many.
    fn expire(&mut self, now: u64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let mut n = 0;
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|w| w.deadline <= now) {
                *s = None;
                n += 1;
            }
        }
        self.used -= n as usize;
        n
    }
}

impl<Q: PortQueue> Worker<Q> {
    /// A TCP/UDP fragment (classified `Class::Frag`), on the worker the
    /// receiving worker handed it to (its router), or from the router on
    /// the flow owner.
    pub(super) fn frag(
        &mut self,
        port: u16,
        b: Q::Buf,
        lay: Layout,
        key: FragKey,
        first: Option<FirstFrag>,
    ) -> Outcome {
        let workers = self.links.workers;
        if key.router(workers) != self.cfg.index {
            // Handed over by the router: this worker owns the flow.
            return self.frag_own(b, lay, key, first);
        }
        let now = self.now_ns;
        match first {
            Some(f) => {
                let owner = flow_owner(&self.snap, &f.tuple, workers);
                self.frags.set_owner(&key, owner, now);
                let out = self.frag_to(owner, port, b, lay, key, first);
                // The fragments that came before it follow it, in order.
                while let Some((p, l, wb)) = self.frag_pending.take(&key) {
                    if let Outcome::Drop(r) = self.frag_to(owner, p, wb, l, key, None) {
                        self.counters.count_drop(r);
                    }
                }
                out
            }
            None => match self.frags.owner(&key, now) {
                Some(owner) => self.frag_to(owner, port, b, lay, key, None),
                None => match self.frag_pending.push(key, port, lay, b, now + PENDING_NS) {
                    Ok(()) => Outcome::Done,
                    Err(_b) => Outcome::Drop(DropReason::FragBufferFull),
                },
            },
        }
    }

    /// Router → owner (itself, or through the ring to the owner).
    fn frag_to(
        &mut self,
        owner: u16,
        port: u16,
        b: Q::Buf,
        lay: Layout,
        key: FragKey,
        first: Option<FirstFrag>,
    ) -> Outcome {
        if owner == self.cfg.index {
            return self.frag_own(b, lay, key, first);
        }
        match self.links.ring(self.cfg.index, owner).push((port, b)) {
            Ok(()) => {
                bump(&self.counters.steered_out, 1);
                Outcome::Done
            }
            Err(_) => Outcome::Drop(DropReason::RingFull),
        }
    }

    /// On the flow owner: the first fragment is looked up (or scheduled)
    /// and forwarded like a whole packet, and remembered; later fragments
    /// are forwarded on its connection.
    fn frag_own(
        &mut self,
        b: Q::Buf,
        lay: Layout,
        key: FragKey,
        first: Option<FirstFrag>,
    ) -> Outcome {
        let now = self.now_ns;
        let f = match first {
            Some(f) => {
                self.frags.set_first(&key, f, now);
                let t = f.tuple;
                return self.l4(b, lay, t, t.hash(), f.flags);
            }
            None => match self.frags.first(&key, now) {
                Some(f) => f,
                None => return Outcome::Drop(DropReason::FragNoConn),
            },
        };
        match self.conns.lookup(&f.tuple, f.tuple.hash()) {
            Some((id, dir)) => self.forward(id, dir, b, lay, f.flags),
            None => Outcome::Drop(DropReason::FragNoConn),
        }
    }

    /// Drop the fragments that waited too long for their first fragment.
    pub(super) fn frag_expire(&mut self) {
        let n = self.frag_pending.expire(self.now_ns);
        if n > 0 {
            bump(&self.counters.drops[DropReason::FragTimeout as usize], n);
        }
    }

    /// Fragments waiting for their first fragment (tests).
    pub fn frags_waiting(&self) -> usize {
        self.frag_pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        let mut s = [0u8; 16];
        s[..4].copy_from_slice(&[203, 0, 113, 7]);
        let mut d = [0u8; 16];
        d[..4].copy_from_slice(&[10, 0, 0, 1]);
        FragKey::new(17, false, s, d, id)
    }

    #[test]
    fn table_remembers_owner_and_first_until_they_age_out() {
        let mut t = FragTable::new();
        t.set_owner(&key(1), 1, 10);
        assert_eq!(t.owner(&key(1), 10 + ENTRY_NS - 1), Some(1));
        assert_eq!(t.owner(&key(1), 10 + ENTRY_NS), None, "aged out");
        assert_eq!(t.owner(&key(2), 10), None);
        assert_eq!(t.first(&key(1), 10), None);
    }

    #[test]
    fn table_is_bounded_and_a_full_set_replaces_its_oldest() {
        let mut t = FragTable::new();
        for id in 0..100_000u32 {
            t.set_owner(&key(id), 0, u64::from(id) + 1);
        }
        assert!(t.live(100_000) <= TABLE_ENTRIES);
        assert_eq!(t.owner(&key(99_999), 100_000), Some(0), "newest kept");
    }

    #[test]
    fn pending_is_bounded_and_expires() {
        let mut p: FragPending<u32> = FragPending::new();
        for i in 0..PENDING_SLOTS as u32 {
            assert!(p.push(key(i), 0, Layout::default(), i, 100).is_ok());
        }
        assert_eq!(p.push(key(999), 0, Layout::default(), 999, 100), Err(999));
        assert_eq!(p.take(&key(3)).map(|x| x.2), Some(3));
        assert_eq!(p.take(&key(3)), None);
        assert_eq!(p.expire(99), 0);
        assert_eq!(p.expire(100), PENDING_SLOTS as u64 - 1);
        assert!(p.is_empty());
    }
}
