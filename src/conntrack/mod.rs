//! Connection tracking: the per-core connection table of the forwarder.
//!
//! This module owns:
//! * the lookup key ([`Tuple`], [`Addr`]) and its hash ([`key`]);
//! * the per-core connection table ([`ConnTable`]): every connection is
//!   reachable from the tuple of each direction it sees (client → VIP, and for
//!   NAT / FULLNAT also the real server's reply), IPVS-style persistence
//!   templates with their `n_control` counts ([`table`]);
//! * expiry by a hashed timer wheel with lazy re-arm ([`timer`]);
//! * IPVS's TCP state machine and timeouts, active/inactive accounting
//!   ([`tcp_state`]);
//! * FULLNAT local-address pools, partitioned by worker ([`laddr`]).
//!
//! Rules:
//! * No I/O, no locks, no system calls on the packet path; the only system
//!   call is at construction (a huge-page hint for the table's memory).
//!   Depends on `std`, `thiserror`, `serde` (derives only: [`Proto`] and
//!   [`Fwd`] travel in the control protocol and the configuration as they
//!   are), `libc` (for that hint) and the leaf [`crate::steer`] (the
//!   local-port partition) only.
//! * One [`ConnTable`] per worker, owned and used by that worker alone.
//! * Everything is allocated in the constructors ([`ConnTable::new`],
//!   [`LaddrPool::new`]); inserting, looking up, updating, expiring and
//!   removing never allocate.
//! * Time is a [`Tick`] counter: [`TICKS_PER_SEC`] ticks per second since the
//!   worker started. The caller supplies `now`; this module never reads a clock.
//! * Behaviour follows Linux IPVS (`net/netfilter/ipvs/ip_vs_conn.c`,
//!   `ip_vs_proto_tcp.c`, `ip_vs_proto_udp.c`, `ip_vs_core.c`) unless a doc
//!   comment says otherwise.

#![deny(unsafe_code)]

pub mod key;
pub mod laddr;
pub mod table;
pub mod tcp_state;
pub mod timer;

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

pub use key::{
    addr_from_ip, addr_to_ip, init_hash_seed, mask_addr, prefix_mask, Addr, Proto, Tuple,
};
pub use laddr::{Claim, LaddrPool};
pub use table::{Conn, ConnTable, NewConn, StateChange, MAX_CAPACITY, TEMPLATE_RETRY_SECS};
pub use tcp_state::{next_tcp_state, tcp_flags, TcpDir, TcpState, Timeouts};
pub use timer::{secs_to_ticks, Tick, MAX_TIMEOUT_SECS, TICKS_PER_SEC};

/// Which way a packet travels through a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum Dir {
    /// Client → VIP (IPVS "input").
    Original = 0,
    /// Real server → client (NAT) or → local address (FULLNAT) (IPVS "output").
    Reply = 1,
}

/// How a connection is forwarded to its real server (see DESIGN.md §4) —
/// the packet-forwarding method of a real server as the control protocol
/// and the YAML configuration carry it too, under ipvsadm's names
/// (`"masq"`, `"route"`, `"tunnel"`, `"fullnat"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[repr(u8)]
pub enum Fwd {
    /// Masquerading (`-m`): destination rewritten, replies come back through
    /// us. ipvsadm prints "Masq".
    #[serde(rename = "masq")]
    Nat = 0,
    /// Direct routing (`-g`, ipvsadm's default): only the MAC changes;
    /// replies bypass us. ipvsadm prints "Route".
    #[serde(rename = "route")]
    Dr = 1,
    /// IP-in-IP tunnelling (`-i`): replies bypass us. ipvsadm prints "Tunnel".
    #[serde(rename = "tunnel")]
    Tun = 2,
    /// FULLNAT (`--fullnat`, rvs/DPVS): source → local address, destination
    /// → real server. Printed "FullNat".
    #[serde(rename = "fullnat")]
    FullNat = 3,
}

impl Fwd {
    /// ipvsadm's forward column name ("Masq", "Route", "Tunnel", "FullNat").
    pub fn name(self) -> &'static str {
        match self {
            Fwd::Nat => "Masq",
            Fwd::Dr => "Route",
            Fwd::Tun => "Tunnel",
            Fwd::FullNat => "FullNat",
        }
    }

    /// The option that selects this method in `-S` output.
    pub fn switch(self) -> &'static str {
        match self {
            Fwd::Nat => "-m",
            Fwd::Dr => "-g",
            Fwd::Tun => "-i",
            Fwd::FullNat => "--fullnat",
        }
    }

    /// Whether the director sees the real server's replies (NAT, FULLNAT).
    pub fn sees_replies(self) -> bool {
        matches!(self, Fwd::Nat | Fwd::FullNat)
    }

    pub(crate) fn from_bits(bits: u8) -> Fwd {
        match bits & 3 {
            0 => Fwd::Nat,
            1 => Fwd::Dr,
            2 => Fwd::Tun,
            _ => Fwd::FullNat,
        }
    }
}

/// Index of a connection (or template) in its [`ConnTable`]. Valid until the
/// entry is removed or expires; the slot is then reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// Errors of the connection table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConntrackError {
    /// Every preallocated entry is in use.
    #[error("connection table full ({capacity} entries)")]
    TableFull {
        /// The table's capacity.
        capacity: u32,
    },
    /// A connection (or template) with the same original or reply tuple exists.
    #[error("a connection with this tuple already exists (id {0:?})")]
    Exists(ConnId),
    /// The id does not name a live entry.
    #[error("no live connection with id {0:?}")]
    NoSuchConn(ConnId),
    /// The controlling template named by `NewConn::template` is not a live template.
    #[error("no live persistence template with id {0:?}")]
    NoSuchTemplate(ConnId),
    /// A template still controls live connections and cannot be removed.
    #[error("template {id:?} still controls {n_control} connection(s)")]
    TemplateInUse {
        /// The template.
        id: ConnId,
        /// How many live connections it controls.
        n_control: u32,
    },
    /// A timeout is larger than [`MAX_TIMEOUT_SECS`].
    #[error("timeout {secs} s out of range (max {max} s)")]
    TimeoutOutOfRange {
        /// The rejected value, in seconds.
        secs: u32,
        /// The largest accepted value.
        max: u32,
    },
}
