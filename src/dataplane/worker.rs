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

use std::net::IpAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::conntrack::{
    addr_from_ip, addr_to_ip, secs_to_ticks, tcp_flags, Addr, ConnId, ConnTable, ConntrackError,
    Dir, Fwd, LaddrPool, NewConn, Proto, Tick, Tuple, TICKS_PER_SEC,
};
use crate::dataplane::counters::{bump, CoreCounters, DropReason, MAX_DESTS};
use crate::dataplane::driver::{Burst, PacketBuf, PortQueue, BURST_SIZE};
use crate::dataplane::local;
use crate::dataplane::neigh::{NeighTable, NeighUpdate, Pending, Resolve};
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::xmit::{self, dr, fullnat, nat, tun, Layout};
use crate::sched::{DestLoad, FlowKey, SchedState};
use crate::steer::{client_owner, lport_owner};
use crate::wire::{
    self, ethertype, icmp_quoted, icmpv4, icmpv6, ip_proto, EthernetAddress, Icmpv4Packet,
    Icmpv6Packet, IpFamily, Ipv4Packet, Ipv6Packet,
};

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
    /// A TX buffer is flushed when it has waited this long.
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

/// A connection as listed by `lbctl -Lnc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEntry {
    /// IP protocol (0 for templates of fwmark services).
    pub proto: u8,
    /// State name ("ESTABLISHED", "UDP", "NONE" for templates).
    pub state: &'static str,
    /// Milliseconds until expiry.
    pub expires_ms: u64,
    /// Client.
    pub client: (IpAddr, u16),
    /// Virtual service address.
    pub virt: (IpAddr, u16),
    /// Real server.
    pub dest: (IpAddr, u16),
    /// FULLNAT local address.
    pub local: Option<(IpAddr, u16)>,
    /// A persistence template.
    pub template: bool,
    /// Forwarding method.
    pub fwd: Fwd,
    /// Owning worker.
    pub worker: u16,
}

/// Control messages to a worker.
pub enum Msg {
    /// Run this snapshot from now on.
    Snapshot(Arc<Snapshot>),
    /// Send a listing of the connection table.
    DumpConns(mpsc::Sender<Vec<ConnEntry>>),
    /// End the loop.
    Stop,
}

/// What workers share: the steering rings, neighbour inboxes, mailboxes
/// and counters. Every ring has one producer and one consumer.
pub struct Links<B> {
    workers: u16,
    rings: Vec<ArrayQueue<(u16, B)>>,
    neigh: Vec<ArrayQueue<NeighUpdate>>,
    mailbox: Vec<ArrayQueue<Msg>>,
    /// Per-worker counters.
    pub counters: Vec<Arc<CoreCounters>>,
}

/// Local ports tried for one whose FULLNAT reply RSS delivers to the
/// allocating worker (with N queues about 1 in N matches).
const RSS_PORT_TRIES: u32 = 64;

/// Slots in each steering ring.
pub const RING_SLOTS: usize = 4096;

impl<B> Links<B> {
    /// Links for `workers` workers.
    pub fn new(workers: u16) -> Arc<Self> {
        let n = workers.max(1) as usize;
        Arc::new(Links {
            workers: n as u16,
            rings: (0..n * n).map(|_| ArrayQueue::new(RING_SLOTS)).collect(),
            neigh: (0..n).map(|_| ArrayQueue::new(1024)).collect(),
            mailbox: (0..n).map(|_| ArrayQueue::new(64)).collect(),
            counters: (0..n).map(|_| Arc::new(CoreCounters::new())).collect(),
        })
    }

    /// Number of workers.
    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// Post a message to worker `w`; gives it back when its mailbox is full.
    pub fn post(&self, w: u16, m: Msg) -> Result<(), Msg> {
        match self.mailbox.get(w as usize) {
            Some(q) => q.push(m),
            None => Err(m),
        }
    }

    fn ring(&self, from: u16, to: u16) -> &ArrayQueue<(u16, B)> {
        &self.rings[from as usize * self.workers as usize + to as usize]
    }
}

/// Per-core state of one service.
struct SvcCore {
    id: u16,
    sched: SchedState,
    loads: Vec<DestLoad>,
    pool: Option<LaddrPool>,
    laddrs: Vec<IpAddr>,
}

/// What processing decided for one packet.
enum Outcome {
    /// Sent, queued or handed over: nothing left to do.
    Done,
    /// Drop it, counting the reason.
    Drop(DropReason),
}

/// A parsed packet: what the burst stages carry between them.
#[derive(Clone, Copy)]
enum Class {
    Arp,
    L4 {
        lay: Layout,
        tuple: Tuple,
        hash: u32,
        flags: u8,
    },
    Icmp {
        lay: Layout,
    },
    Drop(DropReason),
}

const NO_POS: u32 = u32::MAX;

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
    tx: Vec<Burst<Q::Buf>>,
    tx_since: Vec<u64>,
    classes: [Class; BURST_SIZE],
    start: Instant,
    now_ns: u64,
    tick: Tick,
    stopped: bool,
    idle_passes: u32,
    nh_cache: Box<[NhEntry]>,
    nh_epoch: u32,
    nh_second: u64,
}

/// A next-hop cache entry: where packets to `addr` go. Valid while its
/// epoch is the worker's (bumped when neighbours or the snapshot change,
/// and every second so stale neighbours are re-checked).
#[derive(Clone, Copy, Default)]
struct NhEntry {
    addr: Addr,
    v6: bool,
    port: u16,
    mac: EthernetAddress,
    src: EthernetAddress,
    epoch: u32,
}

/// Slots of the next-hop cache (direct mapped).
const NH_SLOTS: usize = 1024;

#[inline]
fn nh_slot(a: &Addr) -> usize {
    let mut x = 0u32;
    for w in a.chunks_exact(4) {
        x ^= u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
    }
    (x.wrapping_mul(0x9E37_79B1) >> 22) as usize & (NH_SLOTS - 1)
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
            tx: (0..nports).map(|_| Burst::new()).collect(),
            tx_since: vec![0; nports],
            classes: [Class::Drop(DropReason::Malformed); BURST_SIZE],
            start: Instant::now(),
            now_ns: 0,
            tick: 0,
            stopped: false,
            idle_passes: 0,
            nh_cache: vec![NhEntry::default(); NH_SLOTS].into_boxed_slice(),
            nh_epoch: 1,
            nh_second: 0,
        };
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
        let second = self.now_ns / 1_000_000_000;
        if second != self.nh_second {
            self.nh_second = second;
            self.nh_epoch = self.nh_epoch.wrapping_add(1).max(1);
        }
        self.take_mail();
        self.take_neighbours();
        let mut n = 0;
        let mut rx = self.rx.take().unwrap_or_default();
        for port in 0..self.queues.len() {
            let got = self.queues[port].rx_burst(&mut rx);
            if got > 0 {
                n += got;
                bump(&self.counters.rx_packets, got as u64);
                self.process_burst(port as u16, &mut rx);
            }
        }
        self.rx = Some(rx);
        n += self.take_steered();
        self.flush_due();
        self.expire();
        n
    }

    /// Whether every queue's receive side ended (replay finished) and
    /// nothing waits to be sent.
    pub fn drained(&self) -> bool {
        self.queues.iter().all(|q| q.rx_exhausted())
            && self.tx.iter().all(|t| t.is_empty())
            && self.links.workers <= 1
    }

    // ---- control -------------------------------------------------------

    fn take_mail(&mut self) {
        let me = self.cfg.index as usize;
        while let Some(m) = self.links.mailbox[me].pop() {
            match m {
                Msg::Snapshot(s) => self.install(s),
                Msg::DumpConns(tx) => {
                    let _ = tx.send(self.dump_conns());
                }
                Msg::Stop => self.stopped = true,
            }
        }
    }

    /// Switch to a new snapshot: remap per-core service state by stable id,
    /// keeping scheduler state, loads and local-port pools of services and
    /// real servers that remain. Control work, done between bursts.
    pub fn install(&mut self, snap: Arc<Snapshot>) {
        let mut old: Vec<SvcCore> = std::mem::take(&mut self.svcs);
        let old_pos = std::mem::replace(&mut self.dest_pos, vec![NO_POS; MAX_DESTS]);
        let mut svcs = Vec::with_capacity(snap.services.len());
        for (si, s) in snap.services.iter().enumerate() {
            let prev = old
                .iter()
                .position(|o| o.id == s.id)
                .map(|i| old.swap_remove(i));
            let mut loads = vec![DestLoad::default(); s.dests.len()];
            if let Some(p) = &prev {
                for (di, d) in s.dests.iter().enumerate() {
                    let op = old_pos.get(d.id as usize).copied().unwrap_or(NO_POS);
                    if op != NO_POS && (op >> 16) as usize == old_svc_index(&p.id, &self.snap) {
                        if let Some(l) = p.loads.get((op & 0xffff) as usize) {
                            loads[di] = *l;
                        }
                    }
                }
            }
            for (di, d) in s.dests.iter().enumerate() {
                if let Some(slot) = self.dest_pos.get_mut(d.id as usize) {
                    *slot = ((si as u32) << 16) | di as u32;
                }
            }
            let (lo, hi) = snap.settings.lport_range;
            let (prev_sched, prev) = match prev {
                Some(p) => (Some(p.sched), Some((p.pool, p.laddrs))),
                None => (None, None),
            };
            let (pool, laddrs) = match prev {
                Some((pool, laddrs)) if laddrs == s.laddrs => (pool, laddrs),
                _ if s.laddrs.is_empty() => (None, Vec::new()),
                _ => {
                    let lips: Vec<_> = s.laddrs.iter().map(addr_from_ip).collect();
                    (
                        Some(LaddrPool::new(
                            &lips,
                            lo,
                            hi,
                            self.cfg.index,
                            self.cfg.workers,
                        )),
                        s.laddrs.clone(),
                    )
                }
            };
            let sched = match prev_sched {
                Some(mut st) => {
                    s.sched.refresh_state(&mut st);
                    st
                }
                None => s.sched.new_state(),
            };
            svcs.push(SvcCore {
                id: s.id,
                sched,
                loads,
                pool,
                laddrs,
            });
        }
        self.svcs = svcs;
        self.neigh.set_static(&snap.static_neigh);
        self.nh_epoch = self.nh_epoch.wrapping_add(1).max(1);
        if self.tx.len() < self.queues.len() {
            self.tx.resize_with(self.queues.len(), Burst::new);
            self.tx_since.resize(self.queues.len(), 0);
        }
        self.counters
            .generation
            .store(snap.generation, std::sync::atomic::Ordering::Release);
        // Connections of real servers that left the snapshot are handled
        // lazily, as IPVS does: with expire_nodest_conn their next packet
        // is dropped and the connection expired (see `forward`); otherwise
        // they keep flowing until they expire. Nothing here walks the table.
        self.snap = snap;
    }

    fn dump_conns(&self) -> Vec<ConnEntry> {
        let now = self.tick;
        self.conns
            .iter()
            .map(|(_, c)| {
                let v6 = c.v6();
                let left = c.expires_at().saturating_sub(now) as u64;
                ConnEntry {
                    proto: c.proto(),
                    state: if c.is_template() {
                        "NONE"
                    } else {
                        c.state_name()
                    },
                    expires_ms: left * 1000 / TICKS_PER_SEC as u64,
                    client: (addr_to_ip(&c.cip(), v6), c.cport()),
                    virt: (addr_to_ip(&c.vip(), v6), c.vport()),
                    dest: (addr_to_ip(&c.rip(), v6), c.rport()),
                    local: (c.fwd() == Fwd::FullNat && !c.is_template())
                        .then(|| (addr_to_ip(&c.lip(), v6), c.lport())),
                    template: c.is_template(),
                    fwd: c.fwd(),
                    worker: self.cfg.index,
                }
            })
            .collect()
    }

    fn take_neighbours(&mut self) {
        let me = self.cfg.index as usize;
        while let Some(u) = self.links.neigh[me].pop() {
            self.learned(u, false);
        }
    }

    /// A neighbour became known: record it, tell the other workers (when
    /// `share`), send what waited for it.
    fn learned(&mut self, u: NeighUpdate, share: bool) {
        if self.neigh.learn(&u, self.now_ns) {
            self.nh_epoch = self.nh_epoch.wrapping_add(1).max(1);
        }
        if share {
            for w in 0..self.links.workers {
                if w != self.cfg.index {
                    let _ = self.links.neigh[w as usize].push(u);
                }
            }
        }
        let mut released = 0;
        let Some(port) = self.snap.port(u.port).cloned_mac() else {
            return;
        };
        let tx = &mut self.tx;
        let tx_since = &mut self.tx_since;
        let now = self.now_ns;
        let counters = &self.counters;
        self.pending.release(&u.addr, |p, mut b| {
            xmit::set_l2(b.data_mut(), &u.mac, &port);
            let p = p as usize;
            if tx[p].is_empty() {
                tx_since[p] = now;
            }
            if let Err(b) = tx[p].push(b) {
                drop(b);
                counters.count_drop(DropReason::TxFull);
            }
            released += 1;
        });
        let _ = released;
    }

    // ---- the burst -----------------------------------------------------

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
        // Stage 3: look up, schedule, rewrite, enqueue.
        for (i, b) in rx.drain().enumerate() {
            let class = self.classes[i];
            let out = self.handle(port, b, class);
            if let Outcome::Drop(r) = out {
                self.counters.count_drop(r);
            }
        }
    }

    fn take_steered(&mut self) -> usize {
        if self.links.workers <= 1 {
            return 0;
        }
        let me = self.cfg.index;
        let mut n = 0;
        for from in 0..self.links.workers {
            if from == me {
                continue;
            }
            for _ in 0..BURST_SIZE {
                let Some((port, b)) = self.links.ring(from, me).pop() else {
                    break;
                };
                n += 1;
                bump(&self.counters.steered_in, 1);
                let class = classify(b.data(), &self.snap, port);
                if let Outcome::Drop(r) = self.handle_owned(port, b, class) {
                    self.counters.count_drop(r);
                }
            }
        }
        n
    }

    /// Process one packet (it may be handed to its owner).
    fn handle(&mut self, port: u16, b: Q::Buf, class: Class) -> Outcome {
        if self.links.workers > 1 {
            if let Some(owner) = self.owner_of(&b, &class) {
                if owner != self.cfg.index {
                    return match self.links.ring(self.cfg.index, owner).push((port, b)) {
                        Ok(()) => {
                            bump(&self.counters.steered_out, 1);
                            Outcome::Done
                        }
                        Err(_) => Outcome::Drop(DropReason::RingFull),
                    };
                }
            }
        }
        self.handle_owned(port, b, class)
    }

    /// The worker that owns this packet's flow (DESIGN §5), or `None` for
    /// packets any worker may handle (ARP, ND, echo requests).
    fn owner_of(&self, b: &Q::Buf, class: &Class) -> Option<u16> {
        let n = self.links.workers;
        match class {
            Class::L4 { tuple, .. } => Some(self.tuple_owner(tuple, n)),
            Class::Icmp { lay } => {
                let t = quoted_tuple(b.data(), lay)?;
                Some(self.tuple_owner(&t.reversed(), n))
            }
            _ => None,
        }
    }

    fn tuple_owner(&self, t: &Tuple, n: u16) -> u16 {
        let alen = if t.v6 { 16 } else { 4 };
        let dst_ip = addr_to_ip(&t.dst, t.v6);
        if self.snap.is_laddr(&dst_ip) {
            return lport_owner(t.dport, n);
        }
        if let Some(si) = self.snap.find_service(t.proto, &t.dst, t.dport) {
            let s = &self.snap.services[si as usize];
            if s.persistent.is_some() {
                let mut m = [0u8; 16];
                for (o, (a, k)) in m.iter_mut().zip(t.src.iter().zip(s.netmask.iter())) {
                    *o = a & k;
                }
                return client_owner(&m[..alen], 0, n);
            }
            return client_owner(&t.src[..alen], t.sport, n);
        }
        client_owner(&t.dst[..alen], t.dport, n)
    }

    fn handle_owned(&mut self, port: u16, b: Q::Buf, class: Class) -> Outcome {
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
        }
    }

    // ---- TCP / UDP -----------------------------------------------------

    fn l4(&mut self, b: Q::Buf, lay: Layout, t: Tuple, hash: u32, flags: u8) -> Outcome {
        match self.conns.lookup(&t, hash) {
            Some((id, dir)) => self.forward(id, dir, b, lay, flags),
            None => match self.snap.find_service(t.proto, &t.dst, t.dport) {
                Some(si) => match self.new_conn(si as usize, &t, flags) {
                    Ok(id) => self.forward(id, Dir::Original, b, lay, flags),
                    Err(r) => Outcome::Drop(r),
                },
                None => {
                    let dst = addr_to_ip(&t.dst, t.v6);
                    Outcome::Drop(if self.snap.is_local(&dst) {
                        DropReason::Local
                    } else {
                        DropReason::NoService
                    })
                }
            },
        }
    }

    /// Schedule a new connection for service position `si`.
    fn new_conn(&mut self, si: usize, t: &Tuple, flags: u8) -> Result<ConnId, DropReason> {
        let snap = self.snap.clone();
        let svc = &snap.services[si];
        if t.proto == ip_proto::TCP && flags & tcp_flags::SYN == 0 {
            // IPVS schedules TCP only on SYN (sloppy_tcp off).
            return Err(DropReason::NotSyn);
        }
        if self.conns.len() >= self.conns.capacity() {
            return Err(DropReason::TableFull);
        }
        // Persistence: reuse the template's real server while it lives.
        let mut template = None;
        let mut pick = None;
        if let Some(timeout) = svc.persistent {
            let tk = Tuple::template_key(t.proto, t.v6, &t.src, &svc.netmask, &t.dst, svc.vport);
            if let Some(tid) = self.conns.lookup_template(&tk, tk.hash()) {
                let dest_id = self.conns.get(tid).dest();
                let usable = svc
                    .dests
                    .iter()
                    .position(|d| d.id == dest_id)
                    .filter(|&di| {
                        let d = &svc.dests[di];
                        d.weight > 0 || !snap.settings.expire_quiescent_template
                    });
                match usable {
                    Some(di) => {
                        // IPVS refreshes the template each time it is used.
                        self.conns.touch(tid, self.tick);
                        template = Some(tid);
                        pick = Some(di);
                    }
                    None => {
                        // Template points at a deleted or (with
                        // expire_quiescent_template) quiesced server:
                        // unindex it (ip_vs_check_template) so a new one
                        // can be made; it goes once its conns are gone.
                        let _ = self.conns.invalidate_template(tid);
                    }
                }
            }
            if pick.is_none() {
                let di = self.schedule(si, svc, t)?;
                let d = &svc.dests[di];
                let tid = self
                    .conns
                    .insert_template(
                        &tk,
                        d.id,
                        svc.id,
                        addr_from_ip(&d.addr),
                        d.port,
                        timeout,
                        self.tick,
                    )
                    .map_err(|_| DropReason::TableFull)?;
                self.set_persist_count(si, di, 1);
                template = Some(tid);
                pick = Some(di);
            }
        }
        let di = match pick {
            Some(di) => di,
            None => self.schedule(si, svc, t)?,
        };
        let d = &svc.dests[di];
        let rport = if d.port == 0 || svc.vport == 0 {
            t.dport
        } else {
            d.port
        };
        let (lip, lport) = if d.fwd == Fwd::FullNat {
            // Where the device spreads the replies by RSS, take a local port
            // whose reply (RIP:rport → LIP:lport) lands on this worker's own
            // queue, so it needs no hand-over; else any port of the partition.
            let rss = snap
                .routes
                .lookup(&d.addr)
                .and_then(|h| snap.port(h.port))
                .and_then(|p| p.rss.as_deref())
                .filter(|_| self.cfg.workers > 1);
            let me = self.cfg.index;
            let got = match (self.svcs[si].pool.as_mut(), rss) {
                (Some(p), Some(r)) => p
                    .alloc_matching(RSS_PORT_TRIES, |l, lp| {
                        r.fullnat_reply_queue(d.addr, rport, addr_to_ip(l, t.v6), lp) == Some(me)
                    })
                    .or_else(|| p.alloc()),
                (Some(p), None) => p.alloc(),
                (None, _) => None,
            };
            match got {
                Some(x) => x,
                None => return Err(DropReason::LaddrExhausted),
            }
        } else {
            ([0u8; 16], 0)
        };
        let proto = Proto::from_number(t.proto).ok_or(DropReason::UnsupportedProto)?;
        let nc = NewConn {
            proto,
            v6: t.v6,
            fwd: d.fwd,
            cip: t.src,
            cport: t.sport,
            vip: t.dst,
            vport: t.dport,
            rip: addr_from_ip(&d.addr),
            rport,
            lip,
            lport,
            svc: svc.id,
            dest: d.id,
            template,
            flags: 0,
        };
        match self.conns.insert(&nc, self.tick, &snap.timeouts) {
            Ok(id) => {
                let core = &mut self.svcs[si];
                let view = &svc.views[di];
                core.loads[di].inactive += 1;
                core.loads[di].on_bind(view);
                bump(&self.counters.conns_created, 1);
                bump(&self.counters.conns_now, 1);
                bump(&self.counters.services[svc.id as usize].conns, 1);
                bump(&self.counters.dests[d.id as usize].conns, 1);
                bump(&self.counters.dest_conns[d.id as usize].inactive, 1);
                Ok(id)
            }
            Err(e) => {
                if let Some(p) = self.svcs[si].pool.as_mut() {
                    if d.fwd == Fwd::FullNat {
                        p.free(&lip, lport);
                    }
                }
                Err(match e {
                    ConntrackError::TableFull { .. } => DropReason::TableFull,
                    // A FULLNAT (lip, lport) still indexed by a connection a
                    // previous pool handed out: the port is busy.
                    ConntrackError::Exists(_) if d.fwd == Fwd::FullNat => {
                        DropReason::LaddrExhausted
                    }
                    _ => DropReason::Conflict,
                })
            }
        }
    }

    fn schedule(
        &mut self,
        si: usize,
        svc: &crate::dataplane::snapshot::Service,
        t: &Tuple,
    ) -> Result<usize, DropReason> {
        let flow = FlowKey {
            saddr: t.src,
            sport: t.sport,
            daddr: t.dst,
            v6: t.v6,
        };
        let core = &mut self.svcs[si];
        let now_s = self.tick / TICKS_PER_SEC;
        svc.sched
            .pick(&mut core.sched, &svc.views, &core.loads, &flow, now_s)
            .ok_or(DropReason::NoDest)
    }

    fn set_persist_count(&mut self, si: usize, di: usize, delta: i64) {
        let Some(core) = self.svcs.get_mut(si) else {
            return;
        };
        if let Some(l) = core.loads.get_mut(di) {
            l.persist = (l.persist as i64 + delta).max(0) as u32;
        }
        if let Some(d) = self.snap.services.get(si).and_then(|s| s.dests.get(di)) {
            let c = &self.counters.dest_conns[d.id as usize].persist;
            let v = c.load(std::sync::atomic::Ordering::Relaxed) as i64 + delta;
            c.store(v.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Account a connection's state change in the per-core loads.
    fn account(&mut self, dest_id: u16, became_active: bool, became_inactive: bool) {
        if !became_active && !became_inactive {
            return;
        }
        let pos = self
            .dest_pos
            .get(dest_id as usize)
            .copied()
            .unwrap_or(NO_POS);
        let cc = &self.counters.dest_conns[dest_id as usize];
        let add = |c: &std::sync::atomic::AtomicU64, d: i64| {
            let v = c.load(std::sync::atomic::Ordering::Relaxed) as i64 + d;
            c.store(v.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
        };
        let (da, di): (i64, i64) = if became_active { (1, -1) } else { (-1, 1) };
        add(&cc.active, da);
        add(&cc.inactive, di);
        if pos == NO_POS {
            return;
        }
        let (si, dj) = ((pos >> 16) as usize, (pos & 0xffff) as usize);
        if let Some(l) = self.svcs.get_mut(si).and_then(|s| s.loads.get_mut(dj)) {
            l.active = (l.active as i64 + da).max(0) as u32;
            l.inactive = (l.inactive as i64 + di).max(0) as u32;
        }
    }

    /// Forward a packet of connection `id` in direction `dir`.
    fn forward(&mut self, id: ConnId, dir: Dir, mut b: Q::Buf, lay: Layout, flags: u8) -> Outcome {
        let dest_id = self.conns.get(id).dest();
        if self.snap.settings.expire_nodest_conn
            && self.dest_pos.get(dest_id as usize).copied() == Some(NO_POS)
        {
            self.remove_conn(id);
            return Outcome::Drop(DropReason::DestDeleted);
        }
        let ch = self
            .conns
            .on_packet(id, dir, flags, self.tick, &self.snap.timeouts);
        if ch.became_active || ch.became_inactive {
            self.account(dest_id, ch.became_active, ch.became_inactive);
        }
        let len = b.len();
        let c = self.conns.get(id);
        if let (Some(svc_c), Some(dst_c)) = (
            self.counters.services.get(c.svc() as usize),
            self.counters.dests.get(dest_id as usize),
        ) {
            match dir {
                Dir::Original => {
                    svc_c.inbound(len);
                    dst_c.inbound(len);
                }
                Dir::Reply => {
                    svc_c.outbound(len);
                    dst_c.outbound(len);
                }
            }
        }
        let v6 = c.v6();
        let fwd = c.fwd();
        let rewrites = fwd == Fwd::Nat || fwd == Fwd::FullNat;
        if rewrites && xmit::ttl_expires(b.data(), &lay) {
            return self.time_exceeded(b, lay);
        }
        let frame = b.data_mut();
        let next: Addr = match (fwd, dir) {
            (Fwd::Nat, Dir::Original) => {
                nat::to_server(frame, &lay, c);
                c.rip()
            }
            (Fwd::FullNat, Dir::Original) => {
                fullnat::to_server(frame, &lay, c);
                c.rip()
            }
            (Fwd::Nat, Dir::Reply) => {
                nat::to_client(frame, &lay, c);
                c.cip()
            }
            (Fwd::FullNat, Dir::Reply) => {
                fullnat::to_client(frame, &lay, c);
                c.cip()
            }
            (Fwd::Dr, _) => {
                dr::to_server(frame, &lay);
                c.rip()
            }
            (Fwd::Tun, _) => {
                let rip = addr_to_ip(&c.rip(), v6);
                return self.tunnel(b, lay, rip);
            }
        };
        self.send_to(b, &next, v6)
    }

    fn tunnel(&mut self, mut b: Q::Buf, lay: Layout, rip: IpAddr) -> Outcome {
        let Some(hop) = self.snap.routes.lookup(&rip) else {
            return Outcome::Drop(DropReason::NoRoute);
        };
        let Some(pc) = self.snap.port(hop.port) else {
            return Outcome::Drop(DropReason::NoRoute);
        };
        let Some(dip) = pc.addr_like(&rip) else {
            return Outcome::Drop(DropReason::NoRoute);
        };
        let mtu = pc.mtu;
        match tun::encapsulate(&mut b, &lay, &dip, &rip, mtu) {
            Ok(()) => self.send_ip(b, &rip, None),
            Err(tun::TunError::TooBig { icmp_mtu }) => {
                if let Some(m) = icmp_mtu {
                    self.icmp_error_back(&b, &lay, IcmpErr::TooBig(m));
                }
                Outcome::Drop(DropReason::TooBig)
            }
            Err(_) => Outcome::Drop(DropReason::NoBuffer),
        }
    }

    fn time_exceeded(&mut self, b: Q::Buf, lay: Layout) -> Outcome {
        self.icmp_error_back(&b, &lay, IcmpErr::TimeExceeded);
        Outcome::Drop(DropReason::TtlExpired)
    }

    /// Send an IP packet to `dst` (next hop by route), through the
    /// next-hop cache: one probe per packet when the destination's port and
    /// MAC are known.
    #[inline]
    fn send_to(&mut self, mut b: Q::Buf, dst: &Addr, v6: bool) -> Outcome {
        let slot = nh_slot(dst);
        let e = &self.nh_cache[slot];
        if e.epoch == self.nh_epoch && e.addr == *dst && e.v6 == v6 {
            let (port, mac, src) = (e.port, e.mac, e.src);
            xmit::set_l2(b.data_mut(), &mac, &src);
            self.enqueue(port, b);
            return Outcome::Done;
        }
        let ip = addr_to_ip(dst, v6);
        self.send_ip(b, &ip, Some(slot))
    }

    /// Route, resolve and enqueue an IP packet for `dst`; fills next-hop
    /// cache slot `cache` when the neighbour is known.
    fn send_ip(&mut self, mut b: Q::Buf, dst: &IpAddr, cache: Option<usize>) -> Outcome {
        let Some(hop) = self.snap.routes.lookup(dst) else {
            return Outcome::Drop(DropReason::NoRoute);
        };
        let Some(src_mac) = self.snap.port(hop.port).map(|p| p.mac) else {
            return Outcome::Drop(DropReason::NoRoute);
        };
        match self.neigh.resolve(&hop.addr, self.now_ns) {
            Resolve::Known(mac) => {
                if let Some(slot) = cache {
                    self.nh_cache[slot] = NhEntry {
                        addr: addr_from_ip(dst),
                        v6: dst.is_ipv6(),
                        port: hop.port,
                        mac,
                        src: src_mac,
                        epoch: self.nh_epoch,
                    };
                }
                xmit::set_l2(b.data_mut(), &mac, &src_mac);
                self.enqueue(hop.port, b);
                Outcome::Done
            }
            Resolve::Unknown { send_request } => {
                if send_request {
                    self.solicit(hop.port, &hop.addr);
                }
                match self.pending.push(hop.addr, hop.port, b) {
                    Ok(()) => Outcome::Done,
                    Err(_) => Outcome::Drop(DropReason::NoNeighbour),
                }
            }
        }
    }

    fn enqueue(&mut self, port: u16, b: Q::Buf) {
        let p = port as usize;
        if p >= self.tx.len() {
            self.counters.count_drop(DropReason::NoRoute);
            return;
        }
        if self.tx[p].is_empty() {
            self.tx_since[p] = self.now_ns;
        }
        if let Err(b) = self.tx[p].push(b) {
            // Full: flush, then retry once.
            self.flush_port(p);
            if self.tx[p].is_empty() {
                self.tx_since[p] = self.now_ns;
            }
            if self.tx[p].push(b).is_err() {
                self.counters.count_drop(DropReason::TxFull);
            }
        }
        if self.tx[p].is_full() {
            self.flush_port(p);
        }
    }

    fn flush_port(&mut self, p: usize) {
        let before = self.tx[p].len();
        if before == 0 {
            return;
        }
        let sent = self.queues[p].tx_burst(&mut self.tx[p]);
        bump(&self.counters.tx_packets, sent as u64);
        let left = self.tx[p].len();
        if left > 0 {
            // The device did not take them: free and count.
            for _ in 0..left {
                self.counters.count_drop(DropReason::TxFull);
            }
            self.tx[p].clear();
        }
    }

    fn flush_due(&mut self) {
        let deadline = self.cfg.tx_flush.as_nanos() as u64;
        for p in 0..self.tx.len() {
            if !self.tx[p].is_empty() && self.now_ns.saturating_sub(self.tx_since[p]) >= deadline {
                self.flush_port(p);
            }
        }
    }

    /// Send everything buffered now.
    pub fn flush_all(&mut self) {
        for p in 0..self.tx.len() {
            self.flush_port(p);
        }
    }

    fn expire(&mut self) {
        let budget = self.cfg.expire_budget;
        let counters = &self.counters;
        let svcs = &mut self.svcs;
        let dest_pos = &self.dest_pos;
        let n = self.conns.expire(self.tick, budget, |c| {
            release_conn(c, svcs, dest_pos, counters);
        });
        if n > 0 {
            let cur = counters
                .conns_now
                .load(std::sync::atomic::Ordering::Relaxed);
            counters.conns_now.store(
                cur.saturating_sub(n as u64),
                std::sync::atomic::Ordering::Relaxed,
            );
            bump(&counters.conns_expired, n as u64);
        }
    }

    fn remove_conn(&mut self, id: ConnId) {
        let c = *self.conns.get(id);
        if c.is_template() && c.n_control() > 0 {
            return;
        }
        release_conn(&c, &mut self.svcs, &self.dest_pos, &self.counters);
        let _ = self.conns.remove(id);
        let cur = self
            .counters
            .conns_now
            .load(std::sync::atomic::Ordering::Relaxed);
        self.counters
            .conns_now
            .store(cur.saturating_sub(1), std::sync::atomic::Ordering::Relaxed);
    }

    // ---- ARP / ND / ICMP ------------------------------------------------

    fn arp(&mut self, port: u16, mut b: Q::Buf) -> Outcome {
        let Some(pc) = self.snap.port(port) else {
            return Outcome::Drop(DropReason::NoRoute);
        };
        let mac = pc.mac;
        match local::arp_input(b.data_mut(), &self.snap, mac) {
            local::ArpAction::Reply { learned } => {
                if let Some(l) = learned {
                    self.learned(NeighUpdate { port, ..l }, true);
                }
                self.enqueue(port, b);
                Outcome::Done
            }
            local::ArpAction::Learn(l) => {
                self.learned(NeighUpdate { port, ..l }, true);
                Outcome::Drop(DropReason::Local)
            }
            local::ArpAction::Ignore => Outcome::Drop(DropReason::Local),
            local::ArpAction::Malformed => Outcome::Drop(DropReason::Malformed),
        }
    }

    fn solicit(&mut self, port: u16, addr: &IpAddr) {
        let Some(pc) = self.snap.port(port) else {
            return;
        };
        let Some(src) = pc.addr_like(addr) else {
            return;
        };
        let mac = pc.mac;
        let Some(mut b) = self.queues[port as usize].alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        };
        if local::emit_solicit(&mut b, mac, &src, addr) {
            self.enqueue(port, b);
        }
    }

    fn icmp(&mut self, port: u16, mut b: Q::Buf, lay: Layout) -> Outcome {
        let Some(mac) = self.snap.port(port).map(|p| p.mac) else {
            return Outcome::Drop(DropReason::NoRoute);
        };
        let kind = local::icmp_kind(b.data(), &lay);
        match kind {
            local::IcmpKind::EchoRequest => {
                if local::echo_reply_in_place(b.data_mut(), &lay, &self.snap) {
                    let dst = local::l2_src(b.data());
                    xmit::set_l2(b.data_mut(), &dst, &mac);
                    self.enqueue(port, b);
                    Outcome::Done
                } else {
                    Outcome::Drop(DropReason::Local)
                }
            }
            local::IcmpKind::NeighborSolicit | local::IcmpKind::NeighborAdvert => {
                match local::nd_input(&mut b, &lay, &self.snap, mac) {
                    local::ArpAction::Reply { learned } => {
                        if let Some(l) = learned {
                            self.learned(NeighUpdate { port, ..l }, true);
                        }
                        self.enqueue(port, b);
                        Outcome::Done
                    }
                    local::ArpAction::Learn(l) => {
                        self.learned(NeighUpdate { port, ..l }, true);
                        Outcome::Drop(DropReason::Local)
                    }
                    local::ArpAction::Ignore => Outcome::Drop(DropReason::Local),
                    local::ArpAction::Malformed => Outcome::Drop(DropReason::Malformed),
                }
            }
            local::IcmpKind::Error => self.icmp_error_forward(b, lay),
            local::IcmpKind::Other => Outcome::Drop(DropReason::Local),
            local::IcmpKind::Malformed => Outcome::Drop(DropReason::Malformed),
        }
    }

    /// An ICMP error about a tracked connection: translate the outer and
    /// the quoted headers and forward it to the other side (IPVS
    /// `ip_vs_in_icmp` / `ip_vs_out_icmp`).
    fn icmp_error_forward(&mut self, mut b: Q::Buf, lay: Layout) -> Outcome {
        let Some(q) = quoted_tuple(b.data(), &lay) else {
            return Outcome::Drop(DropReason::Malformed);
        };
        let key = q.reversed();
        let Some((id, dir)) = self.conns.lookup(&key, key.hash()) else {
            return Outcome::Drop(DropReason::IcmpNoConn);
        };
        let c = *self.conns.get(id);
        let v6 = c.v6();
        let Some(inner) = local::quoted_layout(b.data(), &lay) else {
            return Outcome::Drop(DropReason::Malformed);
        };
        let frame = b.data_mut();
        let next = match (c.fwd(), dir) {
            (Fwd::Nat, Dir::Reply) => {
                xmit::rewrite(frame, &lay, xmit::Side::Src, &c.vip(), 0);
                xmit::rewrite(frame, &inner, xmit::Side::Dst, &c.vip(), c.vport());
                addr_to_ip(&c.cip(), v6)
            }
            (Fwd::FullNat, Dir::Reply) => {
                xmit::rewrite(frame, &lay, xmit::Side::Src, &c.vip(), 0);
                xmit::rewrite(frame, &lay, xmit::Side::Dst, &c.cip(), 0);
                xmit::rewrite(frame, &inner, xmit::Side::Src, &c.cip(), c.cport());
                xmit::rewrite(frame, &inner, xmit::Side::Dst, &c.vip(), c.vport());
                addr_to_ip(&c.cip(), v6)
            }
            (Fwd::Nat, Dir::Original) => {
                xmit::rewrite(frame, &lay, xmit::Side::Dst, &c.rip(), 0);
                xmit::rewrite(frame, &inner, xmit::Side::Src, &c.rip(), c.rport());
                addr_to_ip(&c.rip(), v6)
            }
            (Fwd::FullNat, Dir::Original) => {
                xmit::rewrite(frame, &lay, xmit::Side::Src, &c.lip(), 0);
                xmit::rewrite(frame, &lay, xmit::Side::Dst, &c.rip(), 0);
                xmit::rewrite(frame, &inner, xmit::Side::Src, &c.rip(), c.rport());
                xmit::rewrite(frame, &inner, xmit::Side::Dst, &c.lip(), c.lport());
                addr_to_ip(&c.rip(), v6)
            }
            (Fwd::Dr, _) => addr_to_ip(&c.rip(), v6),
            (Fwd::Tun, _) => {
                let rip = addr_to_ip(&c.rip(), v6);
                return self.tunnel(b, lay, rip);
            }
        };
        if !xmit::dec_ttl(frame, &lay) {
            return Outcome::Drop(DropReason::TtlExpired);
        }
        local::fill_icmp_checksum(frame, &lay);
        self.send_ip(b, &next, None)
    }

    /// Send an ICMP error about packet `orig` back to its source.
    fn icmp_error_back(&mut self, orig: &Q::Buf, lay: &Layout, kind: IcmpErr) {
        let Some(mut nb) = self.queues.first_mut().and_then(|q| q.alloc()) else {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        };
        let d = orig.data();
        let (src, dst) = match local::ip_addrs(d, lay) {
            Some(x) => x,
            None => return,
        };
        // The error comes from the address the packet was sent to when that
        // is ours (VIP: fragmentation needed), else from our address on the
        // egress port toward the sender.
        let from = if self.snap.is_local(&dst) {
            dst
        } else {
            match self
                .snap
                .routes
                .lookup(&src)
                .and_then(|h| self.snap.port(h.port))
                .and_then(|p| p.addr_like(&src))
            {
                Some(a) => a,
                None => return,
            }
        };
        if local::emit_icmp_error(&mut nb, d, lay, &from, &src, kind) {
            let _ = self.send_ip(nb, &src, None);
        }
    }
}

/// Which ICMP error the director generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpErr {
    /// TTL / hop limit exceeded in transit.
    TimeExceeded,
    /// Fragmentation needed (v4) / packet too big (v6) with this MTU.
    TooBig(u16),
}

fn old_svc_index(id: &u16, snap: &Snapshot) -> usize {
    snap.services
        .iter()
        .position(|s| s.id == *id)
        .unwrap_or(usize::MAX)
}

/// Undo a connection's accounting when it goes away.
fn release_conn(
    c: &crate::conntrack::Conn,
    svcs: &mut [SvcCore],
    dest_pos: &[u32],
    counters: &CoreCounters,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let d = c.dest() as usize;
    let pos = dest_pos.get(d).copied().unwrap_or(NO_POS);
    let sub =
        |a: &std::sync::atomic::AtomicU64| a.store(a.load(Relaxed).saturating_sub(1), Relaxed);
    if let Some(cc) = counters.dest_conns.get(d) {
        if c.is_template() {
            sub(&cc.persist);
        } else if c.is_active() {
            sub(&cc.active);
        } else {
            sub(&cc.inactive);
        }
    }
    if pos != NO_POS {
        let (si, di) = ((pos >> 16) as usize, (pos & 0xffff) as usize);
        if let Some(core) = svcs.get_mut(si) {
            if let Some(l) = core.loads.get_mut(di) {
                if c.is_template() {
                    l.persist = l.persist.saturating_sub(1);
                } else if c.is_active() {
                    l.active = l.active.saturating_sub(1);
                } else {
                    l.inactive = l.inactive.saturating_sub(1);
                }
            }
            if !c.is_template() && c.fwd() == Fwd::FullNat {
                if let Some(p) = core.pool.as_mut() {
                    p.free(&c.lip(), c.lport());
                }
            }
        }
    } else if !c.is_template() && c.fwd() == Fwd::FullNat {
        // The service is gone or changed: return the port to whichever pool
        // of this worker owns that local address.
        for core in svcs.iter_mut() {
            if let Some(p) = core.pool.as_mut() {
                p.free(&c.lip(), c.lport());
            }
        }
    }
}

/// The tuple of the packet quoted in an ICMP error at `lay`.
fn quoted_tuple(frame: &[u8], lay: &Layout) -> Option<Tuple> {
    let data = frame.get(lay.l4 as usize + 8..)?;
    let fam = if lay.v6 { IpFamily::V6 } else { IpFamily::V4 };
    let q = icmp_quoted(fam, data).ok()?;
    Some(Tuple::new(
        q.proto,
        lay.v6,
        addr_from_ip(&q.src),
        q.src_port,
        addr_from_ip(&q.dst),
        q.dst_port,
    ))
}

/// Parse and classify a frame (stage 1).
fn classify(frame: &[u8], snap: &Snapshot, port: u16) -> Class {
    if let Some(c) = classify_fast4(frame, snap, port) {
        return c;
    }
    classify_full(frame, snap, port)
}

/// The common case in one pass: an untagged IPv4 frame for our MAC with a
/// 20-byte header, not a fragment, a valid header checksum, carrying a
/// complete TCP or UDP header. Anything else (or anything odd) returns
/// `None` and takes the general parser, which gives the precise verdict.
#[inline]
fn classify_fast4(frame: &[u8], snap: &Snapshot, port: u16) -> Option<Class> {
    let eth: &[u8; 34] = frame.get(..34)?.try_into().ok()?;
    if eth[12] != 0x08 || eth[13] != 0x00 || eth[14] != 0x45 {
        return None;
    }
    let mac = snap.port(port)?.mac.0;
    if eth[..6] != mac {
        return None;
    }
    let ip = &eth[14..34];
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 || total < 20 || 14 + total > frame.len() {
        return None;
    }
    // Header checksum over ten 16-bit words.
    let mut sum = 0u32;
    for w in ip.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    if sum != 0xffff {
        return None;
    }
    let proto = ip[9];
    let l4 = &frame[34..14 + total];
    let flags = match proto {
        ip_proto::TCP => {
            let doff = (*l4.get(12)? >> 4) as usize * 4;
            if doff < 20 || doff > l4.len() {
                return None;
            }
            l4[13]
        }
        ip_proto::UDP => {
            let ulen = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]) as usize;
            if ulen < 8 || ulen > l4.len() {
                return None;
            }
            0
        }
        _ => return None,
    };
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&ip[12..16]);
    dst[..4].copy_from_slice(&ip[16..20]);
    let tuple = Tuple::new(
        proto,
        false,
        src,
        u16::from_be_bytes([l4[0], l4[1]]),
        dst,
        u16::from_be_bytes([l4[2], l4[3]]),
    );
    Some(Class::L4 {
        lay: Layout {
            l3: 14,
            l4: 34,
            v6: false,
            proto,
        },
        hash: tuple.hash(),
        tuple,
        flags,
    })
}

/// The general parser: VLAN tags, IPv4 options, IPv6 extension headers,
/// ARP, ICMP, and every malformed case with its drop reason.
fn classify_full(frame: &[u8], snap: &Snapshot, port: u16) -> Class {
    let l2 = match wire::parse_l2(frame) {
        Ok(l2) => l2,
        Err(wire::Error::UnsupportedVlanStack) => return Class::Drop(DropReason::VlanStack),
        Err(_) => return Class::Drop(DropReason::Malformed),
    };
    if let Some(p) = snap.port(port) {
        if l2.dst.is_unicast() && l2.dst != p.mac {
            return Class::Drop(DropReason::NotForUs);
        }
    }
    let l3 = l2.l3_offset;
    let ip = &frame[l3..];
    let (lay, src, dst) = match l2.ethertype {
        ethertype::ARP => return Class::Arp,
        ethertype::IPV4 => {
            let Ok(p) = Ipv4Packet::new_checked(ip) else {
                return Class::Drop(DropReason::Malformed);
            };
            if !p.verify_checksum() {
                return Class::Drop(DropReason::BadChecksum);
            }
            if p.is_fragment() {
                return Class::Drop(DropReason::Fragment);
            }
            let l4 = l3 + p.header_len();
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s[..4].copy_from_slice(&p.src_addr().octets());
            d[..4].copy_from_slice(&p.dst_addr().octets());
            (
                Layout {
                    l3: l3 as u16,
                    l4: l4 as u16,
                    v6: false,
                    proto: p.next_header(),
                },
                s,
                d,
            )
        }
        ethertype::IPV6 => {
            let Ok(p) = Ipv6Packet::new_checked(ip) else {
                return Class::Drop(DropReason::Malformed);
            };
            let up = match wire::ipv6_upper_layer(&ip[..40 + p.payload_len() as usize]) {
                Ok(u) => u,
                Err(_) => return Class::Drop(DropReason::Malformed),
            };
            if up.fragment.is_some() {
                return Class::Drop(DropReason::Fragment);
            }
            (
                Layout {
                    l3: l3 as u16,
                    l4: (l3 + up.offset) as u16,
                    v6: true,
                    proto: up.proto,
                },
                p.src_addr().octets(),
                p.dst_addr().octets(),
            )
        }
        _ => return Class::Drop(DropReason::UnsupportedProto),
    };
    let ip_end = ip_end(frame, &lay);
    let l4 = &frame[lay.l4 as usize..ip_end];
    match lay.proto {
        ip_proto::TCP => {
            let Ok(t) = wire::TcpPacket::new_checked(l4) else {
                return Class::Drop(DropReason::Malformed);
            };
            let tuple = Tuple::new(lay.proto, lay.v6, src, t.src_port(), dst, t.dst_port());
            Class::L4 {
                lay,
                hash: tuple.hash(),
                tuple,
                flags: t.flags().0,
            }
        }
        ip_proto::UDP => {
            let Ok(u) = wire::UdpPacket::new_checked(l4) else {
                return Class::Drop(DropReason::Malformed);
            };
            let tuple = Tuple::new(lay.proto, lay.v6, src, u.src_port(), dst, u.dst_port());
            Class::L4 {
                lay,
                hash: tuple.hash(),
                tuple,
                flags: 0,
            }
        }
        ip_proto::ICMP if !lay.v6 => {
            if Icmpv4Packet::new_checked(l4).is_err() {
                return Class::Drop(DropReason::Malformed);
            }
            Class::Icmp { lay }
        }
        ip_proto::ICMPV6 if lay.v6 => {
            if Icmpv6Packet::new_checked(l4).is_err() {
                return Class::Drop(DropReason::Malformed);
            }
            Class::Icmp { lay }
        }
        _ => Class::Drop(DropReason::UnsupportedProto),
    }
}

/// End of the IP packet within the frame (excludes Ethernet padding).
pub(crate) fn ip_end(frame: &[u8], lay: &Layout) -> usize {
    let l3 = lay.l3 as usize;
    let n = if lay.v6 {
        40 + u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) as usize
    } else {
        u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize
    };
    (l3 + n).min(frame.len())
}

// Referenced so the imports of the ICMP constant modules stay in use when
// helpers move; these are the types ICMP handling relies on.
#[allow(dead_code)]
const _ICMP_TYPES: (u8, u8) = (icmpv4::ECHO_REQUEST, icmpv6::ECHO_REQUEST);

trait MacOf {
    fn cloned_mac(self) -> Option<EthernetAddress>;
}

impl MacOf for Option<&crate::dataplane::snapshot::PortConf> {
    fn cloned_mac(self) -> Option<EthernetAddress> {
        self.map(|p| p.mac)
    }
}

/// Seconds → ticks, for callers outside conntrack.
pub fn ticks(secs: u32) -> Tick {
    secs_to_ticks(secs)
}
