//! Stage 2 of DESIGN §1 and what workers share: the steering rings (a
//! packet another worker owns is handed to it), the neighbour inboxes, the
//! mailboxes and the per-core counters; and the owner function as the
//! worker computes it (DESIGN §5).
//!
//! Rules: every ring has one producer and one consumer and is bounded; a
//! full ring drops the packet (`RingFull`). The owner is computed with the
//! steering module's primitives (`client_owner`, `lport_owner`) from the
//! snapshot's indexed lookups, so it agrees with `SteerPlan::owner` (what
//! devices are programmed with) without its linear scan.

use std::sync::mpsc;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::classify::{classify, Class};
use super::install::ConnEntry;
use super::{Outcome, Worker};
use crate::conntrack::{addr_to_ip, Tuple};
use crate::dataplane::counters::{bump, CoreCounters, DropReason};
use crate::dataplane::driver::{PacketBuf, PortQueue, BURST_SIZE};
use crate::dataplane::kernel::KernelRings;
use crate::dataplane::neigh::NeighUpdate;
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::xmit::icmp::quoted_tuple;
use crate::steer::{self, Destination};
use crate::sync::export::SyncRings;

/// Control messages to a worker.
pub enum Msg {
    /// Run this snapshot from now on.
    Snapshot(Arc<Snapshot>),
    /// Send a listing of the connection table.
    DumpConns(mpsc::Sender<Vec<ConnEntry>>),
    /// End the loop.
    Stop,
    /// Export connection events to the sync thread (a master sync daemon
    /// runs) or not.
    SyncExport(bool),
    /// Export the whole connection table once (a full resynchronisation).
    SyncDump,
}

/// What workers share: the steering rings, neighbour inboxes, mailboxes
/// and counters. Every ring has one producer and one consumer.
pub struct Links<B> {
    pub(super) workers: u16,
    rings: Vec<ArrayQueue<(u16, B)>>,
    pub(super) neigh: Vec<ArrayQueue<NeighUpdate>>,
    pub(super) mailbox: Vec<ArrayQueue<Msg>>,
    /// Per-worker counters.
    pub counters: Vec<Arc<CoreCounters>>,
    /// The kernel path's rings, when a port has a kernel interface.
    pub(super) kernel: Option<Arc<KernelRings>>,
    /// The connection sync rings (`crate::sync`).
    pub(super) sync: Arc<SyncRings>,
}

/// Slots in each steering ring.
pub const RING_SLOTS: usize = 4096;

impl<B> Links<B> {
    /// Links for `workers` workers.
    pub fn new(workers: u16) -> Arc<Self> {
        Self::with_kernel(workers, None)
    }

    /// Links for `workers` workers that also reach the kernel path.
    pub fn with_kernel(workers: u16, kernel: Option<Arc<KernelRings>>) -> Arc<Self> {
        let n = workers.max(1) as usize;
        Arc::new(Links {
            workers: n as u16,
            rings: (0..n * n).map(|_| ArrayQueue::new(RING_SLOTS)).collect(),
            neigh: (0..n).map(|_| ArrayQueue::new(1024)).collect(),
            mailbox: (0..n).map(|_| ArrayQueue::new(64)).collect(),
            counters: (0..n).map(|_| Arc::new(CoreCounters::new())).collect(),
            kernel,
            sync: Arc::new(SyncRings::new(n as u16)),
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

    /// The connection sync rings.
    pub fn sync(&self) -> &Arc<SyncRings> {
        &self.sync
    }

    pub(super) fn ring(&self, from: u16, to: u16) -> &ArrayQueue<(u16, B)> {
        &self.rings[from as usize * self.workers as usize + to as usize]
    }
}

impl<Q: PortQueue> Worker<Q> {
    /// Process up to a burst of packets from each other worker's ring.
    pub(super) fn take_steered(&mut self) -> usize {
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
    pub(super) fn handle(&mut self, port: u16, b: Q::Buf, class: Class) -> Outcome {
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
            Class::L4 { tuple, .. } => Some(flow_owner(&self.snap, tuple, n)),
            Class::Icmp { lay } => {
                let t = quoted_tuple(b.data(), lay)?;
                Some(flow_owner(&self.snap, &t.reversed(), n))
            }
            // Every fragment of a datagram goes to its router (`frag`).
            Class::Frag { key, .. } => Some(key.router(n)),
            _ => None,
        }
    }
}

/// The worker owning the flow of a packet with tuple `t` among `workers`
/// (DESIGN §5): a reply to a FULLNAT local address by its local port; a
/// packet to a persistent service by the client address under the
/// persistence mask, port 0; to another service by the client; anything
/// else (a NAT reply) by its destination, the client.
pub fn flow_owner(snap: &Snapshot, t: &Tuple, workers: u16) -> u16 {
    let alen = if t.v6 { 16 } else { 4 };
    let dest = if snap.is_laddr(&addr_to_ip(&t.dst, t.v6)) {
        Destination::Laddr
    } else {
        match snap.find_service(t.proto, &t.dst, t.dport) {
            Some(si) => {
                let s = &snap.services[si as usize];
                Destination::Service {
                    persist_mask: s.persistent.map(|_| &s.netmask[..alen]),
                }
            }
            None => Destination::Other,
        }
    };
    steer::flow_owner(
        dest,
        &t.src[..alen],
        t.sport,
        &t.dst[..alen],
        t.dport,
        workers,
    )
}
