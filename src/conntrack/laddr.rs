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
//! * Everything is allocated by the constructor; `alloc` and `free` do not
//!   allocate. Free ports are a FIFO per LIP (a port freed last is reused
//!   last, giving the real server's TIME_WAIT the longest rest).
//! * `alloc` rotates over the LIPs (round-robin), skipping exhausted ones.
//!   `free` of a port that is not allocated from this pool (double free,
//!   another worker's port, unknown LIP) is ignored and counted.

use super::key::Addr;
use crate::steer::lport_owner;

const FOREIGN: u8 = 0;
const FREE: u8 = 1;
const IN_USE: u8 = 2;

/// One LIP's ports.
#[derive(Clone, Debug)]
struct LipPorts {
    addr: Addr,
    lo: u16,
    /// Per port in `lo..=hi`: FOREIGN, FREE or IN_USE.
    state: Vec<u8>,
    /// Ring of free ports; `ring.len()` = ports in this partition.
    ring: Vec<u16>,
    head: u32,
    free: u32,
}

impl LipPorts {
    fn pop(&mut self) -> Option<u16> {
        if self.free == 0 {
            return None;
        }
        let port = self.ring[self.head as usize];
        self.head = (self.head + 1) % self.ring.len() as u32;
        self.free -= 1;
        self.state[usize::from(port - self.lo)] = IN_USE;
        Some(port)
    }

    fn push(&mut self, port: u16) -> bool {
        let Some(idx) = port.checked_sub(self.lo).map(usize::from) else {
            return false;
        };
        match self.state.get(idx) {
            Some(&IN_USE) => {}
            _ => return false,
        }
        let len = self.ring.len() as u32;
        let tail = (self.head + self.free) % len;
        self.ring[tail as usize] = port;
        self.free += 1;
        self.state[idx] = FREE;
        true
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
                        state[usize::from(p - lo)] = FREE;
                        ring.push(p);
                    }
                }
                ring.shrink_to_fit();
                (state, ring)
            } else {
                (Vec::new(), Vec::new())
            };
            let free = ring.len() as u32;
            out.push(LipPorts {
                addr: *addr,
                lo,
                state,
                ring,
                head: 0,
                free,
            });
        }
        let available = out.iter().map(|l| l.free).sum();
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

    /// Returns `(lip, port)` to the pool. O(number of LIPs). A port this pool
    /// did not hand out (double free, foreign port or LIP) is ignored and
    /// counted in [`Self::ignored_frees`].
    pub fn free(&mut self, lip: &Addr, port: u16) {
        let done = self
            .lips
            .iter_mut()
            .find(|l| l.addr == *lip)
            .is_some_and(|l| l.push(port));
        if done {
            self.available += 1;
            self.in_use -= 1;
        } else {
            self.ignored_frees += 1;
        }
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
        self.lips.iter().any(|l| {
            l.addr == *lip
                && port
                    .checked_sub(l.lo)
                    .and_then(|i| l.state.get(usize::from(i)))
                    .is_some_and(|&s| s != FOREIGN)
        })
    }

    /// The pool's local addresses.
    pub fn lips(&self) -> impl Iterator<Item = &Addr> + '_ {
        self.lips.iter().map(|l| &l.addr)
    }
}
