//! Per-core counters: plain integers written only by their worker, read
//! (relaxed) by the control plane, which sums the cores for `lbctl --stats`.
//!
//! Rules: one [`CoreCounters`] per worker, shared with the control plane as
//! an `Arc`; the worker updates with relaxed load+store (it is the only
//! writer, so no read-modify-write atomics and no contended cache lines);
//! every dropped packet increments exactly one [`DropReason`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why the dataplane dropped a packet. Every drop has exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Too short or inconsistent headers (Ethernet, IP, L4, ICMP quote).
    Malformed,
    /// IPv4 header checksum wrong.
    BadChecksum,
    /// A second VLAN tag (QinQ) — not supported.
    VlanStack,
    /// Frame addressed to another host's MAC.
    NotForUs,
    /// Ethertype or IP protocol the director does not handle.
    UnsupportedProto,
    /// An IP fragment rvs cannot forward: not TCP/UDP, a first fragment
    /// too short for its L4 header, or a TCP fragment at offset 8 (RFC 1858).
    Fragment,
    /// TCP/UDP to an address with no virtual service and no connection.
    NoService,
    /// TCP segment without SYN for a service, with no connection.
    NotSyn,
    /// The scheduler found no eligible real server.
    NoDest,
    /// No route to the destination.
    NoRoute,
    /// Next hop's MAC unknown and the pending queue is full.
    NoNeighbour,
    /// Connection table full: new flow refused.
    TableFull,
    /// FULLNAT local-address pool has no free port.
    LaddrExhausted,
    /// TTL / hop limit expired.
    TtlExpired,
    /// Encapsulated packet would exceed the MTU (an ICMP error was sent).
    TooBig,
    /// Packet addressed to the director itself with no handler.
    Local,
    /// ICMP error that matches no connection.
    IcmpNoConn,
    /// The device did not take a packet on transmit.
    TxFull,
    /// Steering ring to the owner worker was full.
    RingFull,
    /// No buffer to build a reply (ARP, ICMP).
    NoBuffer,
    /// The connection's real server was deleted (expire_nodest_conn).
    DestDeleted,
    /// A new connection's tuple collides with an existing entry.
    Conflict,
    /// A non-first fragment whose datagram has no connection (its first
    /// fragment was dropped or its record aged out).
    FragNoConn,
    /// A fragment that arrived before its first fragment found the
    /// per-worker waiting buffer full.
    FragBufferFull,
    /// A fragment waited for its first fragment longer than the limit.
    FragTimeout,
    /// SYN proxy: an ACK for a proxied service whose cookie is wrong or too
    /// old (spoofed, or from a handshake minutes ago).
    SynproxyBadAck,
    /// SYN proxy: a client packet while the director's handshake with the
    /// real server is still under way (the client retransmits it).
    SynproxyPending,
    /// Traffic to a VIP of a VRRP instance this director is not MASTER of
    /// (a BACKUP never forwards VIP traffic).
    VrrpBackup,
    /// IPVS's `drop_packet` defense: a new-connection packet dropped while
    /// the table is fuller than `settings.defense_percent` (or always).
    DropPacket,
    /// IPVS's `drop_entry` defense: a connection entry dropped (one count
    /// per entry, not per packet).
    DropEntry,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 30] = [
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::VlanStack,
        DropReason::NotForUs,
        DropReason::UnsupportedProto,
        DropReason::Fragment,
        DropReason::NoService,
        DropReason::NotSyn,
        DropReason::NoDest,
        DropReason::NoRoute,
        DropReason::NoNeighbour,
        DropReason::TableFull,
        DropReason::LaddrExhausted,
        DropReason::TtlExpired,
        DropReason::TooBig,
        DropReason::Local,
        DropReason::IcmpNoConn,
        DropReason::TxFull,
        DropReason::RingFull,
        DropReason::NoBuffer,
        DropReason::DestDeleted,
        DropReason::Conflict,
        DropReason::FragNoConn,
        DropReason::FragBufferFull,
        DropReason::FragTimeout,
        DropReason::SynproxyBadAck,
        DropReason::SynproxyPending,
        DropReason::VrrpBackup,
        DropReason::DropPacket,
        DropReason::DropEntry,
    ];

    /// snake_case name for listings and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::VlanStack => "vlan_stack",
            DropReason::NotForUs => "not_for_us",
            DropReason::UnsupportedProto => "unsupported_proto",
            DropReason::Fragment => "fragment",
            DropReason::NoService => "no_service",
            DropReason::NotSyn => "not_syn",
            DropReason::NoDest => "no_dest",
            DropReason::NoRoute => "no_route",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::TableFull => "table_full",
            DropReason::LaddrExhausted => "laddr_exhausted",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::TooBig => "too_big",
            DropReason::Local => "local",
            DropReason::IcmpNoConn => "icmp_no_conn",
            DropReason::TxFull => "tx_full",
            DropReason::RingFull => "ring_full",
            DropReason::NoBuffer => "no_buffer",
            DropReason::DestDeleted => "dest_deleted",
            DropReason::Conflict => "conflict",
            DropReason::FragNoConn => "frag_no_conn",
            DropReason::FragBufferFull => "frag_buffer_full",
            DropReason::FragTimeout => "frag_timeout",
            DropReason::SynproxyBadAck => "synproxy_bad_ack",
            DropReason::SynproxyPending => "synproxy_pending",
            DropReason::VrrpBackup => "vrrp_backup",
            DropReason::DropPacket => "drop_packet",
            DropReason::DropEntry => "drop_entry",
        }
    }
}

/// Traffic counters of one service or real server on one core
/// (IPVS's `ip_vs_stats`): "in" is client → server, "out" the replies.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct TrafficCounters {
    /// Connections scheduled.
    pub conns: AtomicU64,
    /// Packets client → server.
    pub inpkts: AtomicU64,
    /// Packets server → client.
    pub outpkts: AtomicU64,
    /// Bytes client → server.
    pub inbytes: AtomicU64,
    /// Bytes server → client.
    pub outbytes: AtomicU64,
}

/// A plain copy of [`TrafficCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Connections.
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out.
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, o: Traffic) {
        self.conns += o.conns;
        self.inpkts += o.inpkts;
        self.outpkts += o.outpkts;
        self.inbytes += o.inbytes;
        self.outbytes += o.outbytes;
    }
}

/// Single-writer increment: relaxed load + store (no lock prefix).
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl TrafficCounters {
    /// A packet in the client → server direction.
    #[inline]
    pub fn inbound(&self, bytes: usize) {
        bump(&self.inpkts, 1);
        bump(&self.inbytes, bytes as u64);
    }
    /// A packet in the server → client direction.
    #[inline]
    pub fn outbound(&self, bytes: usize) {
        bump(&self.outpkts, 1);
        bump(&self.outbytes, bytes as u64);
    }
    /// Read a copy.
    pub fn read(&self) -> Traffic {
        Traffic {
            conns: self.conns.load(Relaxed),
            inpkts: self.inpkts.load(Relaxed),
            outpkts: self.outpkts.load(Relaxed),
            inbytes: self.inbytes.load(Relaxed),
            outbytes: self.outbytes.load(Relaxed),
        }
    }
}

/// Most services and real servers (stable slot ids) the counters cover.
pub const MAX_SERVICES: usize = 1024;
/// Most real servers (stable slot ids) over all services.
pub const MAX_DESTS: usize = 8192;

/// Active/inactive/persistent connection counts of one real server on one
/// core, published for listings (the scheduler's own copy lives in the worker).
#[derive(Debug, Default)]
pub struct ConnCounts {
    /// Active connections.
    pub active: AtomicU64,
    /// Inactive connections.
    pub inactive: AtomicU64,
    /// Persistence templates.
    pub persist: AtomicU64,
}

/// All counters of one worker.
pub struct CoreCounters {
    /// Packets received from devices.
    pub rx_packets: AtomicU64,
    /// Packets handed to devices.
    pub tx_packets: AtomicU64,
    /// Packets handed to another worker (software steering).
    pub steered_out: AtomicU64,
    /// Packets received from another worker's ring.
    pub steered_in: AtomicU64,
    /// Connections created.
    pub conns_created: AtomicU64,
    /// Connections expired.
    pub conns_expired: AtomicU64,
    /// Connections in the table now.
    pub conns_now: AtomicU64,
    /// FULLNAT local ports held by this worker's connections (its use of
    /// the local-address pools).
    pub fullnat_ports_in_use: AtomicU64,
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Per service slot.
    pub services: Vec<TrafficCounters>,
    /// Per real-server slot.
    pub dests: Vec<TrafficCounters>,
    /// Connection counts per real-server slot.
    pub dest_conns: Vec<ConnCounts>,
    /// Frames handed to the kernel interface (`dataplane::kernel`).
    pub to_kernel: AtomicU64,
    /// Frames the kernel sent that this worker transmitted.
    pub from_kernel: AtomicU64,
    /// Frames for the kernel interface this worker dropped (no free slot,
    /// ring full) or that the kernel sent and it had no buffer for.
    pub kernel_drop: AtomicU64,
    /// Kernel-path frames of this worker that the kernel-path thread lost
    /// (this worker's down ring full, a TAP write refused); written only
    /// by that thread.
    pub kernel_drop_path: AtomicU64,
    /// Frames the kernel-path thread moved from an AF_PACKET port's own
    /// kernel-path socket to the kernel interface (no worker saw them);
    /// written only by that thread, on worker 0's counters.
    pub to_kernel_path: AtomicU64,
    /// SYN proxy: SYNs answered with a cookie SYN-ACK.
    pub syn_cookies_sent: AtomicU64,
    /// SYN proxy: ACKs whose cookie checked out (a connection was made).
    pub synproxy_acks_valid: AtomicU64,
    /// SYN proxy: ACKs whose cookie did not (also counted as the drop
    /// `synproxy_bad_ack`).
    pub synproxy_acks_invalid: AtomicU64,
    /// SYN proxy: handshakes with the real server completed.
    pub synproxy_established: AtomicU64,
    /// SYN proxy: SYNs sent to a real server again because its SYN-ACK
    /// did not come (DPVS `synproxy_syn_retry`).
    pub synproxy_syn_retransmits: AtomicU64,
    /// SYN proxy: early client data segments held while the real server's
    /// handshake ran.
    pub synproxy_held: AtomicU64,
    /// SYN proxy: held segments forwarded after the server's SYN-ACK.
    pub synproxy_held_replayed: AtomicU64,
    /// SYN proxy: data segments not held because the hold was full (per
    /// connection or per worker); also counted as the drop `synproxy_pending`.
    pub synproxy_held_full: AtomicU64,
    /// SYN proxy: held segments dropped because the server's handshake did
    /// not complete in time; also counted as the drop `synproxy_pending`.
    pub synproxy_held_timeout: AtomicU64,
    /// The snapshot generation this worker runs.
    pub generation: AtomicU64,
    /// Set once the worker built its tables and entered its loop.
    pub running: std::sync::atomic::AtomicBool,
}

impl Default for CoreCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl CoreCounters {
    /// Zeroed counters for [`MAX_SERVICES`] services and [`MAX_DESTS`]
    /// real servers.
    pub fn new() -> Self {
        CoreCounters {
            rx_packets: AtomicU64::new(0),
            tx_packets: AtomicU64::new(0),
            steered_out: AtomicU64::new(0),
            steered_in: AtomicU64::new(0),
            conns_created: AtomicU64::new(0),
            conns_expired: AtomicU64::new(0),
            conns_now: AtomicU64::new(0),
            fullnat_ports_in_use: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            services: (0..MAX_SERVICES)
                .map(|_| TrafficCounters::default())
                .collect(),
            dests: (0..MAX_DESTS).map(|_| TrafficCounters::default()).collect(),
            dest_conns: (0..MAX_DESTS).map(|_| ConnCounts::default()).collect(),
            to_kernel: AtomicU64::new(0),
            from_kernel: AtomicU64::new(0),
            kernel_drop: AtomicU64::new(0),
            kernel_drop_path: AtomicU64::new(0),
            to_kernel_path: AtomicU64::new(0),
            syn_cookies_sent: AtomicU64::new(0),
            synproxy_acks_valid: AtomicU64::new(0),
            synproxy_acks_invalid: AtomicU64::new(0),
            synproxy_established: AtomicU64::new(0),
            synproxy_syn_retransmits: AtomicU64::new(0),
            synproxy_held: AtomicU64::new(0),
            synproxy_held_replayed: AtomicU64::new(0),
            synproxy_held_full: AtomicU64::new(0),
            synproxy_held_timeout: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            running: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Count a drop.
    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        bump(&self.drops[r as usize], 1);
    }

    /// Drops of one reason.
    pub fn drops_of(&self, r: DropReason) -> u64 {
        self.drops[r as usize].load(Relaxed)
    }

    /// Zero the traffic counters of a service slot and its dest slots
    /// (`ipvsadm -Z`). Called by the control plane: racy against a
    /// concurrent increment by the worker, as IPVS's zeroing is.
    pub fn zero_traffic(&self, svc: Option<u16>, dests: &[u16]) {
        let z = |t: &TrafficCounters| {
            t.conns.store(0, Relaxed);
            t.inpkts.store(0, Relaxed);
            t.outpkts.store(0, Relaxed);
            t.inbytes.store(0, Relaxed);
            t.outbytes.store(0, Relaxed);
        };
        if let Some(s) = svc.and_then(|s| self.services.get(s as usize)) {
            z(s);
        }
        for d in dests {
            if let Some(t) = self.dests.get(*d as usize) {
                z(t);
            }
        }
    }
}
