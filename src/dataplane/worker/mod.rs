//! The worker: one pinned thread's busy-poll loop (DESIGN §1).
//!
//! Each pass: take mailbox messages (a new snapshot, a connection dump, stop)
//! and neighbours other workers learned; `rx_burst` up to 32 packets from
//! each of its queues and process the burst in stages (parse and classify
//! all, compute the connection hash and prefetch, then look up / schedule /
//! rewrite / enqueue each); take packets other workers steered to it; flush
//! the TX buffers that are full or past their deadline; expire a bounded
//! number of connections.
//!
//! Rules: the worker owns its queues, connection table, local-port
//! partitions, neighbour table, scheduler state and per-core loads; it reads
//! configuration only from its current `Arc<Snapshot>`. On the packet path
//! it does not allocate, lock, log, or make system calls other than the
//! driver's I/O (the clock is read once per pass through the vDSO). Every
//! dropped packet is counted under exactly one [`DropReason`].
//!
//! One file per stage: `classify` (parse), `links` (steering to the
//! owner, the shared rings and mailboxes), `setup` (connection lookup and
//! new connections), `forward` (rewrite by mode, ICMP errors), `tx` (next
//! hop and transmit buffers), `local_traffic` (ARP/ND/echo and the kernel
//! path's share: frames up to the kernel interface and down) and `install`
//! (snapshot install, mailbox), `frag` (IP fragments: the fragment router,
//! the per-worker fragment table and waiting buffer), `synproxy` (SYN
//! cookies and the sequence shift of proxied connections). This file holds
//! the loop that runs them.

mod classify;
mod defense;
mod forward;
mod frag;
mod install;
mod links;
mod local_traffic;
mod setup;
mod sync;
mod synproxy;
mod tx;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conntrack::{secs_to_ticks, ConnTable, Tick, TICKS_PER_SEC};
use crate::dataplane::counters::{bump, CoreCounters, DropReason, MAX_DESTS};
use crate::dataplane::driver::{Burst, PacketBuf, PortQueue, BURST_SIZE};
use crate::dataplane::kernel::{KernelRings, UpLimiter};
use crate::dataplane::neigh::{NeighTable, Pending};
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::xmit::Layout;

use classify::{classify, Class};
use setup::SvcCore;
use tx::{NhCache, TxBuffers};

pub use crate::dataplane::local::IcmpErr;
pub use frag::{PENDING_NS, PENDING_SLOTS};
pub use install::ConnEntry;
pub use links::{flow_owner, Links, Msg, RING_SLOTS};
pub use synproxy::{HELD_PER_CONN, HELD_SLOTS};

/// How an idle worker waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin (production: lowest latency, one core at 100 %).
    BusyPoll,
    /// After `after` empty passes, sleep `sleep` between passes (tests,
    /// demos, shared machines).
    Backoff {
        /// Empty passes before sleeping.
        after: u32,
        /// Sleep length.
        sleep: Duration,
    },
}

/// Per-worker settings.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// This worker's index, 0-based.
    pub index: u16,
    /// Number of workers.
    pub workers: u16,
    /// Connection table capacity.
    pub conn_capacity: u32,
    /// While receive bursts come full (a backlog), a partial TX buffer is
    /// flushed when it has waited this long; a pass that empties every
    /// receive queue flushes all buffers at its end.
    pub tx_flush: Duration,
    /// Idle behaviour.
    pub idle: IdlePolicy,
    /// Neighbour table capacity.
    pub neigh_capacity: usize,
    /// Connections expired at most per pass.
    pub expire_budget: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            index: 0,
            workers: 1,
            conn_capacity: 1 << 20,
            tx_flush: Duration::from_micros(100),
            idle: IdlePolicy::BusyPoll,
            neigh_capacity: 4096,
            expire_budget: 256,
        }
    }
}

/// What processing decided for one packet.
enum Outcome {
    /// Sent, queued or handed over: nothing left to do.
    Done,
    /// Drop it, counting the reason.
    Drop(DropReason),
}

const NO_POS: u32 = u32::MAX;

/// How many packets ahead of the one being processed stage 3 reads the
/// first entry of a chain and prefetches the second (see
/// [`ConnTable::prefetch_chain`]).
const CHAIN_AHEAD: usize = 4;

/// One worker.
pub struct Worker<Q: PortQueue> {
    cfg: WorkerConfig,
    queues: Vec<Q>,
    links: Arc<Links<Q::Buf>>,
    counters: Arc<CoreCounters>,
    snap: Arc<Snapshot>,
    conns: ConnTable,
    svcs: Vec<SvcCore>,
    dest_pos: Vec<u32>,
    neigh: NeighTable,
    pending: Pending<Q::Buf>,
    rx: Option<Burst<Q::Buf>>,
    tx: TxBuffers<Q::Buf>,
    classes: [Class; BURST_SIZE],
    start: Instant,
    now_ns: u64,
    tick: Tick,
    stopped: bool,
    idle_passes: u32,
    nh: NhCache,
    frags: frag::FragTable,
    frag_pending: frag::FragPending<Q::Buf>,
    kernel: Option<Arc<KernelRings>>,
    kernel_limit: Vec<UpLimiter>,
    /// A master sync daemon runs: export connection events.
    sync_export: bool,
    /// A full resynchronisation in progress: the next table slot to export.
    sync_dump: Option<u32>,
    /// IPVS's drop_entry / drop_packet state.
    defense: defense::Defense,
    /// The SYN proxy's SYN copies and held segments.
    proxyq: synproxy::ProxyQueues<Q::Buf>,
}

impl<Q: PortQueue> Worker<Q> {
    /// A worker owning `queues` (index = port), running `snap`.
    pub fn new(
        cfg: WorkerConfig,
        queues: Vec<Q>,
        links: Arc<Links<Q::Buf>>,
        snap: Arc<Snapshot>,
    ) -> Self {
        let counters = links.counters[cfg.index as usize].clone();
        let nports = queues.len();
        let mut w = Worker {
            cfg,
            queues,
            counters,
            links,
            snap: Arc::new(Snapshot::empty(cfg.workers)),
            conns: ConnTable::new(cfg.conn_capacity),
            svcs: Vec::new(),
            dest_pos: vec![NO_POS; MAX_DESTS],
            neigh: NeighTable::new(cfg.neigh_capacity),
            pending: Pending::new(),
            rx: Some(Burst::new()),
            tx: TxBuffers::new(nports),
            classes: [Class::Drop(DropReason::Malformed); BURST_SIZE],
            start: Instant::now(),
            now_ns: 0,
            tick: 0,
            stopped: false,
            idle_passes: 0,
            nh: NhCache::new(),
            frags: frag::FragTable::new(),
            frag_pending: frag::FragPending::new(),
            kernel: None,
            kernel_limit: vec![UpLimiter::default(); nports],
            sync_export: false,
            sync_dump: None,
            defense: defense::Defense::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(cfg.index)),
            proxyq: synproxy::ProxyQueues::new(),
        };
        w.kernel = w.links.kernel.clone();
        w.install(snap);
        w
    }

    /// This worker's counters.
    pub fn counters(&self) -> &Arc<CoreCounters> {
        &self.counters
    }

    /// This worker's index.
    pub fn index(&self) -> u16 {
        self.cfg.index
    }

    /// The connection table (tests, listings).
    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    /// The queues (tests read what mem queues sent).
    pub fn queues_mut(&mut self) -> &mut [Q] {
        &mut self.queues
    }

    /// Give back the queues.
    pub fn into_queues(self) -> Vec<Q> {
        self.queues
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// Whether a `Stop` message arrived.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Move the worker clock forward artificially (tests of expiry).
    pub fn advance_clock(&mut self, by: Duration) {
        self.start -= by;
    }

    /// Run until stopped; returns the worker so its queues can be flushed.
    pub fn run(mut self) -> Self {
        while !self.stopped {
            let n = self.poll_once();
            match self.cfg.idle {
                IdlePolicy::BusyPoll => {}
                IdlePolicy::Backoff { after, sleep } => {
                    if n == 0 {
                        self.idle_passes = self.idle_passes.saturating_add(1);
                        if self.idle_passes > after {
                            std::thread::sleep(sleep);
                        }
                    } else {
                        self.idle_passes = 0;
                    }
                }
            }
        }
        self.flush_all();
        self
    }

    /// One pass of the loop; returns the number of packets processed.
    pub fn poll_once(&mut self) -> usize {
        self.now_ns = self.start.elapsed().as_nanos() as u64;
        self.tick = (self.now_ns / (1_000_000_000 / TICKS_PER_SEC as u64)) as Tick;
        self.nh.on_clock(self.now_ns);
        self.take_mail();
        self.take_neighbours();
        self.defense_tick();
        let mut n = 0;
        // A full receive burst: the port may hold more, so partial transmit
        // buffers may wait (at most `tx_flush`) to fill; otherwise the
        // worker has caught up and waiting would only add latency.
        let mut backlog = false;
        let mut rx = self.rx.take().unwrap_or_default();
        for port in 0..self.queues.len() {
            let got = self.queues[port].rx_burst(&mut rx);
            if got > 0 {
                backlog |= got >= BURST_SIZE;
                n += got;
                bump(&self.counters.rx_packets, got as u64);
                self.process_burst(port as u16, &mut rx);
            }
        }
        self.rx = Some(rx);
        n += self.take_steered();
        n += self.take_kernel();
        n += self.take_synced();
        if self.sync_dump.is_some() {
            self.sync_dump_step();
        }
        self.synproxy_timers();
        if backlog {
            self.flush_due();
        } else {
            self.flush_all();
        }
        self.expire();
        self.frag_expire();
        n
    }

    /// Whether every queue's receive side ended (replay finished) and
    /// nothing waits to be sent.
    pub fn drained(&self) -> bool {
        self.queues.iter().all(|q| q.rx_exhausted())
            && self.tx.is_empty()
            && self.links.workers <= 1
    }

    /// Stages 1–6 over one received burst.
    fn process_burst(&mut self, port: u16, rx: &mut Burst<Q::Buf>) {
        // Stage 1: parse and classify all, hash, prefetch.
        for (i, b) in rx.as_slice().iter().enumerate() {
            let c = classify(b.data(), &self.snap, port);
            if let Class::L4 { hash, .. } = c {
                self.conns.prefetch(hash);
            }
            self.classes[i] = c;
        }
        // Stage 2: the buckets are (being) loaded: prefetch each chain's
        // first entry, so the lookups below find their lines in cache.
        let n = rx.len();
        for c in &self.classes[..n] {
            if let Class::L4 { hash, .. } = c {
                self.conns.prefetch_conn(*hash);
            }
        }
        // Stage 3: look up, schedule, rewrite, enqueue — while the chain's
        // first entry of the packet CHAIN_AHEAD places further on is read
        // (in cache by now) and, if it is not that packet's connection, the
        // next entry of its chain is prefetched.
        for c in &self.classes[..n.min(CHAIN_AHEAD)] {
            if let Class::L4 { tuple, hash, .. } = c {
                self.conns.prefetch_chain(tuple, *hash);
            }
        }
        for (i, b) in rx.drain().enumerate() {
            if let Some(Class::L4 { tuple, hash, .. }) = self.classes[..n].get(i + CHAIN_AHEAD) {
                self.conns.prefetch_chain(tuple, *hash);
            }
            let class = self.classes[i];
            let Some(b) = self.kernel_first(port, b, &class) else {
                continue;
            };
            let out = self.handle(port, b, class);
            if let Outcome::Drop(r) = out {
                self.counters.count_drop(r);
            }
        }
    }

    /// Process a packet this worker owns.
    fn handle_owned(&mut self, port: u16, mut b: Q::Buf, class: Class) -> Outcome {
        if let Class::L4 { lay, .. } | Class::Icmp { lay } = class {
            trim_to_ip(&mut b, &lay);
        } else if let (Class::Arp, Ok(l2)) = (class, crate::wire::parse_l2(b.data())) {
            // An ARP reply is written over the request: without its trailer.
            trim_to(&mut b, l2.l3_offset + MIN_ETH_PAYLOAD);
        }
        match class {
            Class::Drop(r) => Outcome::Drop(r),
            Class::Arp => self.arp(port, b),
            Class::L4 {
                lay,
                tuple,
                hash,
                flags,
            } => self.l4(b, lay, tuple, hash, flags),
            Class::Icmp { lay } => self.icmp(port, b, lay),
            Class::Frag { lay, key, first } => self.frag(port, b, lay, key, first),
        }
    }
}

/// Bytes after the link header of a minimum Ethernet frame (60 bytes).
const MIN_ETH_PAYLOAD: usize = 46;

/// Drop the bytes after the IP packet beyond the Ethernet minimum frame,
/// as the kernel's `ip_rcv` trims to the IP length: a trailer of any length
/// would otherwise be forwarded and could carry a packet past the egress
/// MTU. Padding up to the 60-byte minimum (64 with a VLAN tag) stays, so
/// padded frames are forwarded as they came. `classify` checked that the IP
/// length fits in the frame.
fn trim_to_ip<B: PacketBuf>(b: &mut B, lay: &Layout) {
    let d = b.data();
    let l3 = usize::from(lay.l3);
    let ip_len = if lay.v6 {
        d.get(l3 + 4..l3 + 6)
            .map(|f| 40 + usize::from(u16::from_be_bytes([f[0], f[1]])))
    } else {
        d.get(l3 + 2..l3 + 4)
            .map(|f| usize::from(u16::from_be_bytes([f[0], f[1]])))
    };
    if let Some(n) = ip_len {
        trim_to(b, l3 + n.max(MIN_ETH_PAYLOAD));
    }
}

/// Shorten `b` to `end` bytes if it is longer.
fn trim_to<B: PacketBuf>(b: &mut B, end: usize) {
    if b.len() > end {
        b.trim(b.len() - end);
    }
}

/// Seconds → ticks, for callers outside conntrack.
pub fn ticks(secs: u32) -> Tick {
    secs_to_ticks(secs)
}

#[cfg(test)]
mod tests;
