//! FULLNAT local-address pools (DPVS `sa_pool`): one per worker per service.
//!
//! Rules:
//! * A FULLNAT reply is addressed to `lip:lport`, and the local port alone
//!   must tell which worker owns the flow (DESIGN.md §5). So each worker
//!   allocates only from its own partition of every LIP's port range: port
//!   `p` belongs to worker [`lport_owner`]`(p, workers)` = `p % workers`,
//!   the one partition function of the leaf [`crate::steer`] that the
//!   worker's hand-over and the drivers' steering programs use too. [`LaddrPool::new_filtered`] takes any other partition
//!   (e.g. RSS-aware: ports whose reply hash lands on the worker's queue).
//! * Port 0 is never handed out.
//! * Everything is allocated by the constructor; `alloc`, `claim` and
//!   `free` do not allocate. Free ports are a FIFO per LIP (a port freed
//!   last is reused last, giving the real server's TIME_WAIT the longest
//!   rest).
//! * `alloc` rotates over the LIPs (round-robin), skipping exhausted ones.
//! * A port is held by the connections that use it: the one `alloc` handed
//!   it to, and those that `claim` it — connections a sync backup installs
//!   with the master's local port (they were not allocated here, and a new
//!   connection must not be handed their port while they live). `free`
//!   lets go of one holder; the port is free again when none is left. Each
//!   port's state is one byte (holders, and whether it sits in the free
//!   FIFO); a port claimed while queued leaves a stale FIFO entry that
//!   `alloc` skips (amortised O(1)).
//! * `free` of a port that nobody holds here (double free, another
//!   worker's port, unknown LIP) is ignored and counted.

use super::key::Addr;
use crate::steer::lport_owner;

/// A port outside this pool (another worker's partition, or filtered out).
const FOREIGN: u8 = 0xff;
/// Bit of a port's state: the port has an entry in its LIP's free ring.
const QUEUED: u8 = 0x80;
/// Low bits of a port's state: how many connections hold it.
const HOLDERS: u8 = 0x7f;
/// Most connections that may hold one port ([`LaddrPool::claim`]).
pub const MAX_HOLDERS: u8 = 0x7e;

/// What [`LaddrPool::claim`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The port was free and is now held.
    Taken,
    /// The port was already held (by connections to other real servers):
    /// one holder more.
    Shared,
    /// Not this pool's port (another worker's partition, out of range,
    /// another LIP), or already held by [`MAX_HOLDERS`] connections:
    /// nothing changed.
    NotHeld,
}

/// One LIP's ports.
#[derive(Clone, Debug)]
struct LipPorts {
    addr: Addr,
    lo: u16,
    /// Per port in `lo..=hi`: FOREIGN, or [`QUEUED`] | holders.
    state: Vec<u8>,
    /// Ring of queued ports (a free port, or a stale entry of a port
    /// claimed while queued); `ring.len()` = ports in this partition.
    ring: Vec<u16>,
    head: u32,
    /// Entries in the ring (free ports and stale entries).
    queued: u32,
}

impl LipPorts {
    fn idx(&self, port: u16) -> Option<usize> {
        let i = usize::from(port.checked_sub(self.lo)?);
        (self.state.get(i).is_some_and(|&s| s != FOREIGN)).then_some(i)
    }

    /// The oldest free port, now held once. Stale entries met on the way
    /// (ports claimed while queued) leave the ring: amortised O(1).
    fn pop(&mut self) -> Option<u16> {
        while self.queued > 0 {
            let port = self.ring[self.head as usize];
            self.head = (self.head + 1) % self.ring.len() as u32;
            self.queued -= 1;
            let st = &mut self.state[usize::from(port - self.lo)];
            *st &= !QUEUED;
            if *st & HOLDERS == 0 {
                *st = 1;
                return Some(port);
            }
        }
        None
    }

    /// One holder of `port` lets go; `Some(true)` when it became free,
    /// `None` when it was not held (or not ours).
    fn release(&mut self, port: u16) -> Option<bool> {
        let i = self.idx(port)?;
        let st = self.state[i];
        if st & HOLDERS == 0 {
            return None;
        }
        let st = st - 1;
        self.state[i] = st;
        if st & HOLDERS != 0 {
            return Some(false);
        }
        if st & QUEUED == 0 {
            // Not in the ring (a stale entry would still be): append.
            let len = self.ring.len() as u32;
            let tail = (self.head + self.queued) % len;
            self.ring[tail as usize] = port;
            self.queued += 1;
            self.state[i] = QUEUED;
        }
        Some(true)
    }

    /// One holder more for `port`, whatever its place in the ring (its
    /// queued entry, if any, goes stale and is dropped by `pop`).
    fn claim(&mut self, port: u16) -> Claim {
        let Some(i) = self.idx(port) else {
            return Claim::NotHeld;
        };
        let holders = self.state[i] & HOLDERS;
        if holders >= MAX_HOLDERS {
            return Claim::NotHeld;
        }
        self.state[i] += 1;
        if holders == 0 {
            Claim::Taken
        } else {
            Claim::Shared
        }
    }
}

/// A worker's FULLNAT local addresses and ports for one service.
#[derive(Clone, Debug)]
pub struct LaddrPool {
    lips: Vec<LipPorts>,
    next: usize,
    available: u32,
    in_use: u32,
    ignored_frees: u64,
}

impl LaddrPool {
    /// Worker `worker`'s pool (of `workers`): for every LIP, the ports `p` in
    /// `port_lo..=port_hi` with [`lport_owner`]`(p, workers) == worker`.
    /// `workers == 0` is taken as 1; `worker ≥ workers` gives an empty pool.
    pub fn new(lips: &[Addr], port_lo: u16, port_hi: u16, worker: u16, workers: u16) -> Self {
        let workers = workers.max(1);
        Self::new_filtered(lips, port_lo, port_hi, |_, p| {
            lport_owner(p, workers) == worker
        })
    }

    /// A pool of the ports in `port_lo..=port_hi` (of every LIP) that pass
    /// `accept`. Duplicate LIPs are taken once; an empty range gives an
    /// empty pool.
    pub fn new_filtered(
        lips: &[Addr],
        port_lo: u16,
        port_hi: u16,
        accept: impl Fn(&Addr, u16) -> bool,
    ) -> Self {
        let lo = port_lo.max(1);
        let mut out: Vec<LipPorts> = Vec::with_capacity(lips.len());
        for addr in lips {
            if out.iter().any(|l| l.addr == *addr) {
                continue;
            }
            let (state, ring) = if lo <= port_hi {
                let mut state = vec![FOREIGN; usize::from(port_hi - lo) + 1];
                let mut ring = Vec::new();
                for p in lo..=port_hi {
                    if accept(addr, p) {
                        state[usize::from(p - lo)] = QUEUED;
                        ring.push(p);
                    }
                }
                ring.shrink_to_fit();
                (state, ring)
            } else {
                (Vec::new(), Vec::new())
            };
            let queued = ring.len() as u32;
            out.push(LipPorts {
                addr: *addr,
                lo,
                state,
                ring,
                head: 0,
                queued,
            });
        }
        let available = out.iter().map(|l| l.queued).sum();
        LaddrPool {
            lips: out,
            next: 0,
            available,
            in_use: 0,
            ignored_frees: 0,
        }
    }

    /// A free `(lip, lport)`, taking LIPs in turn; `None` when all are exhausted.
    /// O(1) per LIP skipped.
    pub fn alloc(&mut self) -> Option<(Addr, u16)> {
        let n = self.lips.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if let Some(port) = self.lips[i].pop() {
                self.next = (i + 1) % n;
                self.available -= 1;
                self.in_use += 1;
                return Some((self.lips[i].addr, port));
            }
        }
        None
    }

    /// A free `(lip, lport)` for which `accept` holds (e.g. a port whose
    /// FULLNAT reply the NIC's RSS delivers to this worker's queue), taking
    /// LIPs in turn. A port that does not match goes back to the end of its
    /// LIP's free list. At most `max_tries` ports are tried; `None` when none
    /// matched (the caller may fall back to [`Self::alloc`]).
    pub fn alloc_matching(
        &mut self,
        max_tries: u32,
        mut accept: impl FnMut(&Addr, u16) -> bool,
    ) -> Option<(Addr, u16)> {
        for _ in 0..max_tries {
            let (lip, port) = self.alloc()?;
            if accept(&lip, port) {
                return Some((lip, port));
            }
            self.free(&lip, port);
        }
        None
    }

    /// One holder of `(lip, port)` lets go (a connection that was handed
    /// the port by [`Self::alloc`] or took it with [`Self::claim`] ends);
    /// the port is free again when none is left. O(number of LIPs). A port
    /// nobody holds here (double free, foreign port or LIP) is ignored and
    /// counted in [`Self::ignored_frees`].
    pub fn free(&mut self, lip: &Addr, port: u16) {
        match self
            .lips
            .iter_mut()
            .find(|l| l.addr == *lip)
            .and_then(|l| l.release(port))
        {
            Some(true) => {
                self.available += 1;
                self.in_use -= 1;
            }
            Some(false) => {}
            None => self.ignored_frees += 1,
        }
    }

    /// Marks `(lip, port)` as held by a connection this pool did not hand
    /// it to (one installed from a peer director's sync message), so that
    /// [`Self::alloc`] does not hand it out while the connection lives;
    /// [`Self::free`] lets go of it as of an allocated port. A port may be
    /// held by several connections (to different real servers, which
    /// FULLNAT's reply tuple tells apart); it is free when the last lets
    /// go. O(number of LIPs), no allocation.
    pub fn claim(&mut self, lip: &Addr, port: u16) -> Claim {
        let Some(l) = self.lips.iter_mut().find(|l| l.addr == *lip) else {
            return Claim::NotHeld;
        };
        let got = l.claim(port);
        if got == Claim::Taken {
            self.available -= 1;
            self.in_use += 1;
        }
        got
    }

    /// Ports free to allocate (all LIPs).
    pub fn available(&self) -> u32 {
        self.available
    }

    /// Ports allocated and not yet freed.
    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    /// Frees ignored because the port was not allocated from this pool.
    pub fn ignored_frees(&self) -> u64 {
        self.ignored_frees
    }

    /// Whether `(lip, port)` belongs to this pool (free or in use).
    pub fn contains(&self, lip: &Addr, port: u16) -> bool {
        self.lips
            .iter()
            .any(|l| l.addr == *lip && l.idx(port).is_some())
    }

    /// How many connections hold `(lip, port)` (0: free or not ours).
    pub fn holders(&self, lip: &Addr, port: u16) -> u8 {
        self.lips
            .iter()
            .find(|l| l.addr == *lip)
            .and_then(|l| l.idx(port).map(|i| l.state[i] & HOLDERS))
            .unwrap_or(0)
    }

    /// The pool's local addresses.
    pub fn lips(&self) -> impl Iterator<Item = &Addr> + '_ {
        self.lips.iter().map(|l| &l.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lip(last: u8) -> Addr {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 0, 0, last]);
        a
    }

    #[test]
    fn a_claimed_port_is_not_handed_out_until_its_holder_frees_it() {
        let l = lip(100);
        let mut pool = LaddrPool::new(&[l], 6000, 6009, 0, 1);
        // 6000 is at the head of the FIFO, 6003 in the middle.
        assert_eq!(pool.claim(&l, 6000), Claim::Taken);
        assert_eq!(pool.claim(&l, 6003), Claim::Taken);
        assert_eq!((pool.available(), pool.in_use()), (8, 2));
        let got: Vec<u16> = std::iter::from_fn(|| pool.alloc())
            .map(|(_, p)| p)
            .collect();
        assert_eq!(got.len(), 8);
        assert!(!got.contains(&6000) && !got.contains(&6003), "{got:?}");
        assert_eq!(pool.alloc(), None, "exhausted: the claimed ports stay held");
        pool.free(&l, 6003);
        assert_eq!(pool.alloc(), Some((l, 6003)));
        assert_eq!(pool.ignored_frees(), 0);
    }

    #[test]
    fn a_port_held_twice_is_free_only_when_both_holders_let_go() {
        let l = lip(100);
        let mut pool = LaddrPool::new(&[l], 7000, 7001, 0, 1);
        let (_, p) = pool.alloc().expect("a port");
        assert_eq!(pool.claim(&l, p), Claim::Shared);
        assert_eq!(pool.holders(&l, p), 2);
        pool.free(&l, p);
        assert_eq!(pool.alloc().map(|(_, q)| q), Some(7001));
        assert_eq!(pool.alloc(), None, "{p} still held once");
        pool.free(&l, p);
        assert_eq!(pool.alloc(), Some((l, p)));
        assert_eq!(pool.in_use(), 2);
    }

    #[test]
    fn claiming_another_workers_port_or_an_unknown_lip_changes_nothing() {
        let l = lip(100);
        let mut pool = LaddrPool::new(&[l], 5000, 5005, 0, 2); // 5000, 5002, 5004
        assert_eq!(pool.claim(&l, 5001), Claim::NotHeld);
        assert_eq!(pool.claim(&lip(9), 5000), Claim::NotHeld);
        assert_eq!(pool.claim(&l, 80), Claim::NotHeld);
        assert_eq!((pool.available(), pool.in_use()), (3, 0));
        for _ in 0..MAX_HOLDERS {
            assert_ne!(pool.claim(&l, 5002), Claim::NotHeld);
        }
        assert_eq!(
            pool.claim(&l, 5002),
            Claim::NotHeld,
            "holder count is bounded"
        );
    }

    #[test]
    fn alloc_claim_and_free_in_any_order_never_hand_out_a_held_port() {
        let lips = [lip(100), lip(101)];
        let mut pool = LaddrPool::new(&lips, 1000, 1031, 1, 2); // 16 odd ports per LIP
        let mut held: HashMap<(Addr, u16), u32> = HashMap::new();
        let mut x = 0x2545_f491u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..20_000 {
            let r = next();
            let key = (lips[(r & 1) as usize], 1001 + 2 * ((r >> 1) % 16) as u16);
            match (r >> 8) % 3 {
                0 => {
                    if let Some(k) = pool.alloc() {
                        assert_eq!(held.get(&k).copied().unwrap_or(0), 0, "{k:?} is held");
                        held.insert(k, 1);
                    } else {
                        assert!(held.values().all(|&n| n > 0) && held.len() == 32);
                    }
                }
                1 => {
                    let n = held.entry(key).or_insert(0);
                    let want = if *n == 0 { Claim::Taken } else { Claim::Shared };
                    assert_eq!(pool.claim(&key.0, key.1), want);
                    *n += 1;
                }
                _ => {
                    let n = held.entry(key).or_insert(0);
                    let ignored = pool.ignored_frees();
                    pool.free(&key.0, key.1);
                    if *n == 0 {
                        assert_eq!(pool.ignored_frees(), ignored + 1);
                    } else {
                        *n -= 1;
                    }
                }
            }
            let busy = held.values().filter(|&&n| n > 0).count() as u32;
            assert_eq!((pool.in_use(), pool.available()), (busy, 32 - busy));
        }
    }
}
