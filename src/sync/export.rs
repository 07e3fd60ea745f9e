//! What a worker hands to the sync thread (master side) and what the sync
//! thread hands to a worker (backup side): [`SyncEntry`], one connection
//! or persistence template as a fixed-size `Copy` record, and
//! [`SyncRings`], one bounded lock-free ring per worker and direction,
//! with the per-worker counters of what went through them.
//!
//! Rules: every ring has one producer and one consumer (export: the worker
//! → the sync thread; install: the sync thread → the worker) and is
//! allocated once; pushing never allocates, locks or blocks — a full ring
//! drops the entry and counts it. Counters are written by one thread each
//! (relaxed load + store) and read relaxed. Conversions to and from the
//! wire's [`SyncConnRepr`] live here (one source for the flag and state
//! mapping).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_queue::ArrayQueue;

use crate::conntrack::{addr_from_ip, addr_to_ip, Addr, Conn, Fwd, TcpState, TICKS_PER_SEC};
use crate::wire::ipvs_sync::{flags, SyncConnRepr};

/// Slots of each export and install ring.
pub const SYNC_RING_SLOTS: usize = 4096;

/// One connection or persistence template to synchronise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncEntry {
    /// IP protocol.
    pub proto: u8,
    /// IPv6.
    pub v6: bool,
    /// A persistence template.
    pub template: bool,
    /// Forwarding method.
    pub fwd: Fwd,
    /// IPVS state number (0 for UDP and templates).
    pub state: u8,
    /// Client port (0 for templates).
    pub cport: u16,
    /// Virtual port.
    pub vport: u16,
    /// Real server port.
    pub rport: u16,
    /// FULLNAT local port.
    pub lport: u16,
    /// Client address (templates: masked).
    pub cip: Addr,
    /// Virtual address.
    pub vip: Addr,
    /// Real server address.
    pub rip: Addr,
    /// FULLNAT local address.
    pub lip: Addr,
    /// The state's full timeout in seconds (IPVS sends `cp->timeout/HZ`).
    pub timeout_s: u32,
}

/// Why a received entry cannot be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Neither TCP nor UDP.
    #[error("protocol {0} is not synchronised")]
    Protocol(u8),
    /// A forwarding method rvs does not have (local node, bypass, …).
    #[error("forwarding method {0} is not supported")]
    Fwd(u32),
    /// A TCP state number IPVS does not define.
    #[error("TCP state {0} unknown")]
    State(u16),
    /// Addresses of different families.
    #[error("mixed address families")]
    Family,
    /// A FULLNAT entry without its local address option.
    #[error("FULLNAT entry without local address")]
    NoLocal,
    /// Firewall-mark entries (rvs has no fwmark services).
    #[error("firewall-mark entries are not supported")]
    Fwmark,
}

impl SyncEntry {
    /// The record of connection (or template) `c`.
    pub fn from_conn(c: &Conn) -> SyncEntry {
        SyncEntry {
            proto: c.proto(),
            v6: c.v6(),
            template: c.is_template(),
            fwd: c.fwd(),
            state: if c.is_template() { 0 } else { c.state() as u8 },
            cport: c.cport(),
            vport: c.vport(),
            rport: c.rport(),
            lport: c.lport(),
            cip: c.cip(),
            vip: c.vip(),
            rip: c.rip(),
            lip: c.lip(),
            timeout_s: c.timeout_ticks() / TICKS_PER_SEC,
        }
    }

    /// The TCP state (None for UDP and templates).
    pub fn tcp_state(&self) -> TcpState {
        TcpState::from_index(self.state).unwrap_or_default()
    }

    /// As IPVS v1 sends it: forwarding bits, TEMPLATE, INACTIVE,
    /// NOOUTPUT for DR/TUN, and for FULLNAT rvs's local-address option.
    pub fn to_repr(&self) -> SyncConnRepr {
        let v6 = self.v6;
        let mut f = match self.fwd {
            Fwd::Nat => flags::MASQ,
            Fwd::Dr => flags::DROUTE | flags::NOOUTPUT,
            Fwd::Tun => flags::TUNNEL | flags::NOOUTPUT,
            Fwd::FullNat => flags::FULLNAT,
        };
        if self.template {
            f = flags::TEMPLATE;
        }
        if self.template || self.proto != 6 || !self.tcp_state().is_active() {
            f |= flags::INACTIVE;
        }
        SyncConnRepr {
            protocol: self.proto,
            flags: f,
            state: u16::from(self.state),
            cport: self.cport,
            vport: self.vport,
            dport: self.rport,
            fwmark: 0,
            timeout: self.timeout_s,
            caddr: addr_to_ip(&self.cip, v6),
            vaddr: addr_to_ip(&self.vip, v6),
            daddr: addr_to_ip(&self.rip, v6),
            local: (self.fwd == Fwd::FullNat && !self.template)
                .then(|| (addr_to_ip(&self.lip, v6), self.lport)),
        }
    }

    /// The record of a received entry.
    pub fn from_repr(r: &SyncConnRepr) -> Result<SyncEntry, EntryError> {
        let template = r.flags & flags::TEMPLATE != 0;
        if r.fwmark != 0 {
            return Err(EntryError::Fwmark);
        }
        if !matches!(r.protocol, 6 | 17) {
            return Err(EntryError::Protocol(r.protocol));
        }
        let v6 = r.is_v6();
        if r.vaddr.is_ipv6() != v6 || r.daddr.is_ipv6() != v6 {
            return Err(EntryError::Family);
        }
        let fwd = if template {
            Fwd::Nat
        } else {
            match r.flags & flags::FWD_MASK {
                flags::MASQ => Fwd::Nat,
                flags::DROUTE => Fwd::Dr,
                flags::TUNNEL => Fwd::Tun,
                flags::FULLNAT => Fwd::FullNat,
                other => return Err(EntryError::Fwd(other)),
            }
        };
        let state = if r.protocol == 6 && !template {
            u8::try_from(r.state)
                .ok()
                .and_then(TcpState::from_index)
                .ok_or(EntryError::State(r.state))? as u8
        } else {
            0
        };
        let (lip, lport) = match (fwd, r.local) {
            (Fwd::FullNat, Some((l, p))) if l.is_ipv6() == v6 => (addr_from_ip(&l), p),
            (Fwd::FullNat, Some(_)) => return Err(EntryError::Family),
            (Fwd::FullNat, None) if !template => return Err(EntryError::NoLocal),
            _ => ([0; 16], 0),
        };
        Ok(SyncEntry {
            proto: r.protocol,
            v6,
            template,
            fwd,
            state,
            cport: r.cport,
            vport: r.vport,
            rport: r.dport,
            lport,
            cip: addr_from_ip(&r.caddr),
            vip: addr_from_ip(&r.vaddr),
            rip: addr_from_ip(&r.daddr),
            lip,
            timeout_s: r.timeout,
        })
    }

    /// The client address.
    pub fn client(&self) -> IpAddr {
        addr_to_ip(&self.cip, self.v6)
    }
}

/// One worker's sync counters (written by the thread named on each).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerSyncCounters {
    /// Entries the worker pushed to its export ring.
    pub exported: AtomicU64,
    /// Entries dropped because the export ring was full (worker).
    pub export_ring_full: AtomicU64,
    /// Entries the worker installed as new connections (worker).
    pub installed: AtomicU64,
    /// Entries that updated an existing connection (worker).
    pub updated: AtomicU64,
    /// Entries the worker could not install: no such service or real
    /// server, table full, a conflicting tuple (worker).
    pub install_failed: AtomicU64,
    /// Entries dropped because the install ring was full (sync thread).
    pub install_ring_full: AtomicU64,
    /// FULLNAT entries refused because their local port is not in the
    /// partition of the worker that owns the flow here (the peer runs
    /// another number of workers): its replies would reach another worker
    /// (worker).
    pub install_lport_foreign: AtomicU64,
}

/// The rings between the workers and the sync thread.
pub struct SyncRings {
    export: Vec<ArrayQueue<SyncEntry>>,
    install: Vec<ArrayQueue<SyncEntry>>,
    /// Per-worker counters.
    pub counters: Vec<WorkerSyncCounters>,
}

impl std::fmt::Debug for SyncRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRings")
            .field("workers", &self.export.len())
            .finish()
    }
}

/// Adds `n` to a counter only one thread writes.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl SyncRings {
    /// Rings for `workers` workers.
    pub fn new(workers: u16) -> SyncRings {
        let n = usize::from(workers.max(1));
        SyncRings {
            export: (0..n).map(|_| ArrayQueue::new(SYNC_RING_SLOTS)).collect(),
            install: (0..n).map(|_| ArrayQueue::new(SYNC_RING_SLOTS)).collect(),
            counters: (0..n).map(|_| WorkerSyncCounters::default()).collect(),
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> u16 {
        self.export.len() as u16
    }

    /// Worker `w` exports `e` (worker side; a full ring drops and counts).
    #[inline]
    pub fn export(&self, w: u16, e: SyncEntry) {
        let (Some(q), Some(c)) = (
            self.export.get(usize::from(w)),
            self.counters.get(usize::from(w)),
        ) else {
            return;
        };
        match q.push(e) {
            Ok(()) => bump(&c.exported, 1),
            Err(_) => bump(&c.export_ring_full, 1),
        }
    }

    /// Entries waiting in worker `w`'s export ring.
    #[inline]
    pub fn export_len(&self, w: u16) -> usize {
        self.export.get(usize::from(w)).map_or(0, ArrayQueue::len)
    }

    /// The next exported entry of worker `w` (sync thread side).
    pub fn take_export(&self, w: u16) -> Option<SyncEntry> {
        self.export.get(usize::from(w))?.pop()
    }

    /// Hands `e` to worker `w` for installation (sync thread side); false
    /// (and counted) when its ring is full.
    pub fn install(&self, w: u16, e: SyncEntry) -> bool {
        let (Some(q), Some(c)) = (
            self.install.get(usize::from(w)),
            self.counters.get(usize::from(w)),
        ) else {
            return false;
        };
        match q.push(e) {
            Ok(()) => true,
            Err(_) => {
                bump(&c.install_ring_full, 1);
                false
            }
        }
    }

    /// The next entry for worker `w` to install (worker side).
    #[inline]
    pub fn take_install(&self, w: u16) -> Option<SyncEntry> {
        self.install.get(usize::from(w))?.pop()
    }

    /// Sum of one counter over the workers.
    pub fn total(&self, pick: impl Fn(&WorkerSyncCounters) -> &AtomicU64) -> u64 {
        self.counters.iter().map(|c| pick(c).load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fwd: Fwd) -> SyncEntry {
        let ip = |s: &str| addr_from_ip(&s.parse().unwrap());
        SyncEntry {
            proto: 6,
            v6: false,
            template: false,
            fwd,
            state: TcpState::Established as u8,
            cport: 40000,
            vport: 80,
            rport: 8080,
            lport: if fwd == Fwd::FullNat { 5001 } else { 0 },
            cip: ip("10.0.0.2"),
            vip: ip("10.0.0.100"),
            rip: ip("192.168.10.1"),
            lip: if fwd == Fwd::FullNat {
                ip("10.0.0.200")
            } else {
                [0; 16]
            },
            timeout_s: 900,
        }
    }

    #[test]
    fn every_method_survives_the_wire_repr_and_back() {
        for fwd in [Fwd::Nat, Fwd::Dr, Fwd::Tun, Fwd::FullNat] {
            let e = entry(fwd);
            let r = e.to_repr();
            assert_eq!(r.flags & flags::INACTIVE, 0, "ESTABLISHED is active");
            assert_eq!(SyncEntry::from_repr(&r), Ok(e), "{fwd:?}");
        }
        let mut t = entry(Fwd::Nat);
        t.template = true;
        t.state = 0;
        t.cport = 0;
        let r = t.to_repr();
        assert_eq!(r.flags, flags::TEMPLATE | flags::INACTIVE);
        assert_eq!(SyncEntry::from_repr(&r), Ok(t));
    }

    #[test]
    fn entries_rvs_cannot_install_are_refused_with_a_reason() {
        let mut r = entry(Fwd::Nat).to_repr();
        r.flags = flags::LOCALNODE;
        assert_eq!(SyncEntry::from_repr(&r), Err(EntryError::Fwd(1)));
        let mut r = entry(Fwd::Nat).to_repr();
        r.state = 11;
        assert_eq!(SyncEntry::from_repr(&r), Err(EntryError::State(11)));
        let mut r = entry(Fwd::FullNat).to_repr();
        r.local = None;
        assert_eq!(SyncEntry::from_repr(&r), Err(EntryError::NoLocal));
        let mut r = entry(Fwd::Nat).to_repr();
        r.protocol = 132;
        assert_eq!(SyncEntry::from_repr(&r), Err(EntryError::Protocol(132)));
    }

    #[test]
    fn a_full_export_ring_drops_and_counts() {
        let rings = SyncRings::new(1);
        for _ in 0..SYNC_RING_SLOTS + 3 {
            rings.export(0, entry(Fwd::Nat));
        }
        assert_eq!(rings.total(|c| &c.exported), SYNC_RING_SLOTS as u64);
        assert_eq!(rings.total(|c| &c.export_ring_full), 3);
    }
}
