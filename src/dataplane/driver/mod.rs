//! Drivers ("PMDs"): the one trait every packet source/sink implements.
//!
//! A device is opened once by the control thread ([`Driver`]); it hands out one
//! [`PortQueue`] per worker, which that worker owns and moves into its pinned
//! thread. A queue does `rx_burst`/`tx_burst` of up to [`BURST_SIZE`] buffers
//! and allocates buffers for packets the worker creates (ARP requests, ICMP
//! errors). The shapes follow DPDK so an `rte_mbuf` fits without change:
//!
//! * [`PacketBuf`] is a buffer with headroom in front of the packet data
//!   (`prepend`/`adj` = `rte_pktmbuf_prepend`/`rte_pktmbuf_adj`,
//!   `append`/`trim` = `rte_pktmbuf_append`/`rte_pktmbuf_trim`).
//! * `tx_burst` sends from the front of the burst and leaves what the device
//!   did not take in the burst; the caller frees and counts it.
//! * Dropping a buffer frees it (returns it to its pool).
//!
//! Rules: nothing here allocates on the per-packet path once warmed up; the
//! heap buffers of the software drivers come from a per-thread free list
//! ([`heapbuf`]).

pub mod af_packet;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod heapbuf;
pub mod mem;
pub mod pcap;
pub mod tap;

use std::fmt;

/// Most packets one rx/tx call moves.
pub const BURST_SIZE: usize = 32;

/// A packet buffer with headroom, owned; dropping it frees it.
pub trait PacketBuf: Send + Sized {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes free in front of the data.
    fn headroom(&self) -> usize;
    /// Bytes free after the data.
    fn tailroom(&self) -> usize;
    /// Grow the packet by `n` bytes at the front (from the headroom);
    /// returns the new front `n` bytes, or `None` without change if the
    /// headroom is too small.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Remove `n` bytes from the front; `false` without change if the packet
    /// is shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Grow the packet by `n` bytes at the end; returns them, or `None`.
    fn append(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Remove `n` bytes from the end; `false` without change if shorter.
    fn trim(&mut self, n: usize) -> bool;
    /// Length of the packet data.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// Whether the packet has no data.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A flow hash computed by the device (RSS), if it gives one.
    fn rss_hash(&self) -> Option<u32> {
        None
    }
}

/// A burst of up to [`BURST_SIZE`] buffers. Its storage is allocated once,
/// when the burst is made; pushing past capacity is refused, never grows it.
pub struct Burst<B> {
    bufs: Vec<B>,
}

impl<B> Default for Burst<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Burst<B> {
    /// An empty burst with room for [`BURST_SIZE`] buffers.
    pub fn new() -> Self {
        Burst {
            bufs: Vec::with_capacity(BURST_SIZE),
        }
    }
    /// Number of buffers held.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }
    /// Whether it holds [`BURST_SIZE`] buffers.
    pub fn is_full(&self) -> bool {
        self.bufs.len() >= BURST_SIZE
    }
    /// Room left.
    pub fn room(&self) -> usize {
        BURST_SIZE - self.bufs.len()
    }
    /// Add a buffer; gives it back if the burst is full.
    pub fn push(&mut self, b: B) -> Result<(), B> {
        if self.is_full() {
            Err(b)
        } else {
            self.bufs.push(b);
            Ok(())
        }
    }
    /// Take the last buffer.
    pub fn pop(&mut self) -> Option<B> {
        self.bufs.pop()
    }
    /// Take every buffer out, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, B> {
        self.bufs.drain(..)
    }
    /// Remove the first `n` buffers (those a device took) and return them.
    pub fn drain_front(&mut self, n: usize) -> std::vec::Drain<'_, B> {
        let n = n.min(self.bufs.len());
        self.bufs.drain(..n)
    }
    /// The buffers.
    pub fn as_slice(&self) -> &[B] {
        &self.bufs
    }
    /// The buffers, writable.
    pub fn as_mut_slice(&mut self) -> &mut [B] {
        &mut self.bufs
    }
    /// Drop (free) every buffer.
    pub fn clear(&mut self) {
        self.bufs.clear()
    }
}

/// How a device spreads incoming packets over its queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steering {
    /// One queue, or the device chooses without regard to flows: the worker
    /// hands packets it does not own to the owner (software ring).
    None,
    /// The device can steer each packet to the queue of the worker that owns
    /// it by rvs's owner function (flow rules, cBPF fanout program).
    Owner,
    /// Toeplitz RSS with this key over the redirection table: the worker
    /// may choose FULLNAT local ports whose reply hash lands on its queue.
    Rss,
}

/// What a port is and can do.
#[derive(Debug, Clone)]
pub struct PortCaps {
    /// Port name from the configuration.
    pub name: String,
    /// MAC address of the port.
    pub mac: [u8; 6],
    /// IP MTU of the port.
    pub mtu: u16,
    /// RX queues (one per worker).
    pub queues: u16,
    /// Whether the device computes L3/L4 checksums on transmit.
    pub tx_csum_offload: bool,
    /// How the device steers flows to queues.
    pub steering: Steering,
}

/// Device counters, as DPDK's `rte_eth_stats` names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets the device dropped because no RX descriptor was free.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Receive failures because no buffer could be allocated.
    pub rx_nombuf: u64,
    /// The port's interface vanished (deleted under the running daemon):
    /// its queues stopped their I/O. TAP ports report it.
    #[serde(default)]
    pub link_gone: bool,
}

/// One worker's queue on one port: owned by that worker, moved into its
/// thread. All calls are non-blocking.
pub trait PortQueue: Send {
    /// The packet buffer type.
    type Buf: PacketBuf;
    /// Receive up to `burst.room()` packets into `burst`; returns how many.
    fn rx_burst(&mut self, burst: &mut Burst<Self::Buf>) -> usize;
    /// Send packets from the front of `burst`; the ones sent are removed,
    /// the rest stay in `burst` (in order). Returns how many were sent.
    fn tx_burst(&mut self, burst: &mut Burst<Self::Buf>) -> usize;
    /// A fresh, empty buffer with the driver's default headroom, or `None`
    /// when the pool is empty.
    fn alloc(&mut self) -> Option<Self::Buf>;
    /// Whether the receive side has run dry for good (a replayed capture
    /// at its end). Live devices never are.
    fn rx_exhausted(&self) -> bool {
        false
    }
}

/// A device, opened by the control thread.
pub trait Driver: Send {
    /// The queue type it hands to workers.
    type Queue: PortQueue;
    /// What the port is and can do.
    fn caps(&self) -> &PortCaps;
    /// Hand out the per-worker queues (called once, with the worker count
    /// the device was opened for).
    fn take_queues(&mut self) -> Result<Vec<Self::Queue>, DriverError>;
    /// Device counters.
    fn stats(&self) -> PortStats {
        PortStats::default()
    }
}

/// Why a device could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// An OS call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A capture file could not be read or written.
    #[error("pcap {path}: {msg}")]
    Pcap {
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// The configuration asks for something the device cannot do.
    #[error("{0}")]
    Config(String),
    /// Queues were already handed out.
    #[error("queues already taken")]
    QueuesTaken,
}

impl DriverError {
    /// An OS error with context.
    pub fn os(what: impl fmt::Display, source: std::io::Error) -> Self {
        DriverError::Os {
            what: what.to_string(),
            source,
        }
    }
}

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Checks a Linux interface name: 1..=15 printable characters, no `/`,
/// `:` or spaces, not `.` or `..` (what the kernel's `dev_valid_name`
/// accepts, minus the alias colon).
pub fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: an interface name has 1..={IFNAME_MAX} printable characters, no '/', ':' or spaces"
        ))
    }
}
