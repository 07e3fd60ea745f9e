//! Neighbours (ARP / IPv6 ND): the MAC of each next hop, per worker.
//!
//! Rules: a table per worker, preallocated to a fixed capacity (no growth on
//! the hot path). Static entries come with the snapshot; entries learned
//! from ARP replies/requests and neighbour advertisements are shared with the
//! other workers through their neighbour inboxes (lock-free rings), so every
//! core learns what one core saw. Packets waiting for a resolution sit in a
//! bounded pending queue; beyond it they are dropped and counted
//! (`DropReason::NoNeighbour`). Requests for one address are rate limited.

use std::net::IpAddr;

use crate::dataplane::fxhash::FxHashMap;
use crate::wire::EthernetAddress;

/// How often a request for one unresolved address is repeated.
pub const REQUEST_INTERVAL_NS: u64 = 1_000_000_000;
/// Most packets waiting for resolution per worker.
pub const PENDING_MAX: usize = 64;
/// Learned entries are trusted this long before they must be refreshed by
/// traffic (a new request is sent once, the old MAC keeps being used).
pub const REACHABLE_NS: u64 = 300 * 1_000_000_000;

/// A known neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEntry {
    /// Its MAC.
    pub mac: EthernetAddress,
    /// Port it was seen on / is reached through.
    pub port: u16,
    /// Configured, never expires.
    pub is_static: bool,
    /// When it was learned (ns on the worker clock).
    pub learned_ns: u64,
}

/// A learned binding, shared between workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighUpdate {
    /// The address.
    pub addr: IpAddr,
    /// Its MAC.
    pub mac: EthernetAddress,
    /// The port it was seen on.
    pub port: u16,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Known: send to this MAC.
    Known(EthernetAddress),
    /// Unknown: the caller queues the packet and, if `send_request`, emits
    /// an ARP request / neighbour solicitation.
    Unknown {
        /// Whether a request is due now.
        send_request: bool,
    },
}

/// One worker's neighbour table.
#[derive(Debug)]
pub struct NeighTable {
    entries: FxHashMap<IpAddr, NeighEntry>,
    requested: FxHashMap<IpAddr, u64>,
    capacity: usize,
}

impl NeighTable {
    /// An empty table holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        NeighTable {
            entries: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            requested: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            capacity,
        }
    }

    /// Replace the static entries (from a new snapshot); learned ones stay.
    pub fn set_static(&mut self, statics: &[NeighUpdate]) {
        self.entries.retain(|_, e| !e.is_static);
        for s in statics {
            if self.entries.len() < self.capacity || self.entries.contains_key(&s.addr) {
                self.entries.insert(
                    s.addr,
                    NeighEntry {
                        mac: s.mac,
                        port: s.port,
                        is_static: true,
                        learned_ns: 0,
                    },
                );
            }
        }
    }

    /// Learn (or refresh) a binding. Returns whether it was new or changed.
    /// Static entries are never overwritten; when full, new addresses are
    /// not learned.
    pub fn learn(&mut self, u: &NeighUpdate, now_ns: u64) -> bool {
        self.requested.remove(&u.addr);
        let room = self.entries.len() < self.capacity;
        match self.entries.get_mut(&u.addr) {
            Some(e) if e.is_static => false,
            Some(e) => {
                let changed = e.mac != u.mac || e.port != u.port;
                e.mac = u.mac;
                e.port = u.port;
                e.learned_ns = now_ns;
                changed
            }
            None if room => {
                self.entries.insert(
                    u.addr,
                    NeighEntry {
                        mac: u.mac,
                        port: u.port,
                        is_static: false,
                        learned_ns: now_ns,
                    },
                );
                true
            }
            None => false,
        }
    }

    /// The MAC of `addr`, or whether to ask for it.
    pub fn resolve(&mut self, addr: &IpAddr, now_ns: u64) -> Resolve {
        if let Some(e) = self.entries.get(addr).copied() {
            if !e.is_static && now_ns.saturating_sub(e.learned_ns) > REACHABLE_NS {
                // Stale: keep using it, ask again now and then.
                let _ = self.request_due(addr, now_ns);
            }
            return Resolve::Known(e.mac);
        }
        Resolve::Unknown {
            send_request: self.request_due(addr, now_ns),
        }
    }

    fn request_due(&mut self, addr: &IpAddr, now_ns: u64) -> bool {
        let room = self.requested.len() < self.capacity;
        match self.requested.get_mut(addr) {
            Some(t) if now_ns.saturating_sub(*t) < REQUEST_INTERVAL_NS => false,
            Some(t) => {
                *t = now_ns;
                true
            }
            None if room => {
                self.requested.insert(*addr, now_ns);
                true
            }
            None => false,
        }
    }

    /// An entry, if known.
    pub fn get(&self, addr: &IpAddr) -> Option<&NeighEntry> {
        self.entries.get(addr)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Packets waiting for a neighbour, bounded.
pub struct Pending<B> {
    items: Vec<(IpAddr, u16, B)>,
}

impl<B> Default for Pending<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Pending<B> {
    /// An empty queue with room for [`PENDING_MAX`] packets.
    pub fn new() -> Self {
        Pending {
            items: Vec::with_capacity(PENDING_MAX),
        }
    }

    /// Queue a packet for `addr` on `port`; gives it back when full.
    pub fn push(&mut self, addr: IpAddr, port: u16, b: B) -> Result<(), B> {
        if self.items.len() >= PENDING_MAX {
            return Err(b);
        }
        self.items.push((addr, port, b));
        Ok(())
    }

    /// Take out every packet waiting for `addr`, in order, calling `f` on
    /// each (port, buffer).
    pub fn release(&mut self, addr: &IpAddr, mut f: impl FnMut(u16, B)) {
        let mut i = 0;
        while i < self.items.len() {
            if self.items[i].0 == *addr {
                let (_, port, b) = self.items.remove(i);
                f(port, b);
            } else {
                i += 1;
            }
        }
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

    #[test]
    fn unknown_neighbour_is_requested_once_per_interval() {
        let mut t = NeighTable::new(8);
        let a: IpAddr = "10.0.0.2".parse().expect("addr");
        assert_eq!(t.resolve(&a, 0), Resolve::Unknown { send_request: true });
        assert_eq!(
            t.resolve(&a, 10),
            Resolve::Unknown {
                send_request: false
            }
        );
        assert_eq!(
            t.resolve(&a, REQUEST_INTERVAL_NS + 1),
            Resolve::Unknown { send_request: true }
        );
        t.learn(
            &NeighUpdate {
                addr: a,
                mac: MAC,
                port: 0,
            },
            5,
        );
        assert_eq!(t.resolve(&a, 6), Resolve::Known(MAC));
    }

    #[test]
    fn static_entries_are_not_overwritten_by_learning() {
        let mut t = NeighTable::new(8);
        let a: IpAddr = "10.0.0.2".parse().expect("addr");
        t.set_static(&[NeighUpdate {
            addr: a,
            mac: MAC,
            port: 1,
        }]);
        assert!(!t.learn(
            &NeighUpdate {
                addr: a,
                mac: EthernetAddress([2; 6]),
                port: 0
            },
            1
        ));
        assert_eq!(t.resolve(&a, 2), Resolve::Known(MAC));
    }

    #[test]
    fn pending_queue_is_bounded_and_releases_in_order() {
        let mut p: Pending<u32> = Pending::new();
        let a: IpAddr = "10.0.0.2".parse().expect("addr");
        let b: IpAddr = "10.0.0.3".parse().expect("addr");
        for i in 0..PENDING_MAX as u32 {
            p.push(if i % 2 == 0 { a } else { b }, 0, i).expect("room");
        }
        assert_eq!(p.push(a, 0, 999), Err(999));
        let mut got = vec![];
        p.release(&a, |_, x| got.push(x));
        assert_eq!(got.len(), PENDING_MAX / 2);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(p.len(), PENDING_MAX / 2);
    }
}
