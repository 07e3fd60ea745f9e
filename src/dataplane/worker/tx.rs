//! Stage 6 of DESIGN §1: getting a rewritten packet onto the wire. The
//! next-hop cache (destination → port and MACs, one probe per packet), the
//! route and neighbour resolution behind it (packets wait in `Pending`
//! while a neighbour is solicited), and one transmit buffer per port,
//! flushed with `tx_burst` when it holds a full burst, at the end of a pass
//! that emptied every receive queue, or — while receive bursts come full —
//! when its oldest packet has waited the flush deadline.
//!
//! Rules: what the device does not take is freed and counted `TxFull`; the
//! cache is valid only for its epoch, which moves on when neighbours or the
//! snapshot change and once a second (so stale neighbours are re-checked).

use std::net::IpAddr;

use super::{Outcome, Worker};
use crate::conntrack::{addr_from_ip, addr_to_ip, Addr};
use crate::dataplane::counters::{bump, CoreCounters, DropReason};
use crate::dataplane::driver::{Burst, PacketBuf, PortQueue};
use crate::dataplane::neigh::Resolve;
use crate::dataplane::xmit;
use crate::wire::EthernetAddress;

/// One transmit buffer per port, each remembering when its oldest packet
/// was queued.
pub(super) struct TxBuffers<B> {
    bufs: Vec<Burst<B>>,
    since: Vec<u64>,
}

impl<B: PacketBuf> TxBuffers<B> {
    /// Empty buffers for `ports` ports.
    pub(super) fn new(ports: usize) -> Self {
        TxBuffers {
            bufs: (0..ports).map(|_| Burst::new()).collect(),
            since: vec![0; ports],
        }
    }

    /// Make room for at least `ports` ports (control work).
    pub(super) fn ensure_ports(&mut self, ports: usize) {
        if self.bufs.len() < ports {
            self.bufs.resize_with(ports, Burst::new);
            self.since.resize(ports, 0);
        }
    }

    /// Whether nothing waits to be sent.
    pub(super) fn is_empty(&self) -> bool {
        self.bufs.iter().all(|t| t.is_empty())
    }

    /// Packets waiting for port `p`.
    #[cfg(test)]
    pub(super) fn waiting(&self, p: usize) -> usize {
        self.bufs.get(p).map_or(0, |t| t.len())
    }

    /// Queue `b` for port `p` without flushing; gives it back when the
    /// buffer is full (or there is no such port).
    pub(super) fn push(&mut self, p: usize, b: B, now: u64) -> Result<(), B> {
        let Some(t) = self.bufs.get_mut(p) else {
            return Err(b);
        };
        if t.is_empty() {
            self.since[p] = now;
        }
        t.push(b)
    }

    /// Queue `b` for `port`, flushing the buffer when it is full.
    pub(super) fn enqueue<Q: PortQueue<Buf = B>>(
        &mut self,
        queues: &mut [Q],
        counters: &CoreCounters,
        port: u16,
        b: B,
        now: u64,
    ) {
        let p = port as usize;
        if p >= self.bufs.len() {
            counters.count_drop(DropReason::NoRoute);
            return;
        }
        if let Err(b) = self.push(p, b, now) {
            // Full: flush, then retry once.
            self.flush_port(queues, counters, p);
            if self.push(p, b, now).is_err() {
                counters.count_drop(DropReason::TxFull);
            }
        }
        if self.bufs[p].is_full() {
            self.flush_port(queues, counters, p);
        }
    }

    /// Hand port `p`'s buffer to the device; free and count what it does
    /// not take.
    pub(super) fn flush_port<Q: PortQueue<Buf = B>>(
        &mut self,
        queues: &mut [Q],
        counters: &CoreCounters,
        p: usize,
    ) {
        let Some(t) = self.bufs.get_mut(p) else {
            return;
        };
        if t.is_empty() {
            return;
        }
        let sent = queues[p].tx_burst(t);
        bump(&counters.tx_packets, sent as u64);
        let left = t.len();
        if left > 0 {
            for _ in 0..left {
                counters.count_drop(DropReason::TxFull);
            }
            t.clear();
        }
    }

    /// Flush every buffer whose oldest packet waited `deadline_ns` or more.
    pub(super) fn flush_due<Q: PortQueue<Buf = B>>(
        &mut self,
        queues: &mut [Q],
        counters: &CoreCounters,
        now: u64,
        deadline_ns: u64,
    ) {
        for p in 0..self.bufs.len() {
            if !self.bufs[p].is_empty() && now.saturating_sub(self.since[p]) >= deadline_ns {
                self.flush_port(queues, counters, p);
            }
        }
    }

    /// Flush every buffer.
    pub(super) fn flush_all<Q: PortQueue<Buf = B>>(
        &mut self,
        queues: &mut [Q],
        counters: &CoreCounters,
    ) {
        for p in 0..self.bufs.len() {
            self.flush_port(queues, counters, p);
        }
    }
}

/// A next-hop cache entry: where packets to `addr` go, valid while its
/// epoch is the cache's.
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

/// Where a destination's packets go: port, destination MAC, source MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NextHop {
    pub(super) port: u16,
    pub(super) mac: EthernetAddress,
    pub(super) src: EthernetAddress,
}

/// The next-hop cache: direct mapped, invalidated as a whole by moving its
/// epoch on.
pub(super) struct NhCache {
    slots: Box<[NhEntry]>,
    epoch: u32,
    second: u64,
}

impl NhCache {
    /// An empty cache.
    pub(super) fn new() -> Self {
        NhCache {
            slots: vec![NhEntry::default(); NH_SLOTS].into_boxed_slice(),
            epoch: 1,
            second: 0,
        }
    }

    /// The slot of `a`.
    #[inline]
    pub(super) fn slot(a: &Addr) -> usize {
        let mut x = 0u32;
        for w in a.chunks_exact(4) {
            x ^= u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
        }
        (x.wrapping_mul(0x9E37_79B1) >> 22) as usize & (NH_SLOTS - 1)
    }

    /// The cached next hop of `dst` in `slot`, if valid.
    #[inline]
    pub(super) fn get(&self, slot: usize, dst: &Addr, v6: bool) -> Option<NextHop> {
        let e = &self.slots[slot];
        (e.epoch == self.epoch && e.addr == *dst && e.v6 == v6).then_some(NextHop {
            port: e.port,
            mac: e.mac,
            src: e.src,
        })
    }

    /// Remember `dst`'s next hop in `slot`.
    pub(super) fn fill(&mut self, slot: usize, dst: &IpAddr, hop: NextHop) {
        self.slots[slot] = NhEntry {
            addr: addr_from_ip(dst),
            v6: dst.is_ipv6(),
            port: hop.port,
            mac: hop.mac,
            src: hop.src,
            epoch: self.epoch,
        };
    }

    /// Forget every entry (neighbours or the snapshot changed).
    pub(super) fn invalidate(&mut self) {
        self.epoch = self.epoch.wrapping_add(1).max(1);
    }

    /// Forget every entry when a new second starts (`now_ns` since start).
    #[inline]
    pub(super) fn on_clock(&mut self, now_ns: u64) {
        let second = now_ns / 1_000_000_000;
        if second != self.second {
            self.second = second;
            self.invalidate();
        }
    }
}

impl<Q: PortQueue> Worker<Q> {
    /// Send an IP packet to `dst` (next hop by route), through the
    /// next-hop cache: one probe per packet when the destination's port and
    /// MAC are known.
    #[inline]
    pub(super) fn send_to(&mut self, mut b: Q::Buf, dst: &Addr, v6: bool) -> Outcome {
        let slot = NhCache::slot(dst);
        if let Some(h) = self.nh.get(slot, dst, v6) {
            xmit::set_l2(b.data_mut(), &h.mac, &h.src);
            self.enqueue(h.port, b);
            return Outcome::Done;
        }
        let ip = addr_to_ip(dst, v6);
        self.send_ip(b, &ip, Some(slot))
    }

    /// Route, resolve and enqueue an IP packet for `dst`; fills next-hop
    /// cache slot `cache` when the neighbour is known.
    pub(super) fn send_ip(&mut self, mut b: Q::Buf, dst: &IpAddr, cache: Option<usize>) -> Outcome {
        let Some(hop) = self.snap.routes.lookup(dst) else {
            return Outcome::Drop(DropReason::NoRoute);
        };
        let Some(src_mac) = self.snap.port(hop.port).map(|p| p.mac) else {
            return Outcome::Drop(DropReason::NoRoute);
        };
        match self.neigh.resolve(&hop.addr, self.now_ns) {
            Resolve::Known(mac) => {
                if let Some(slot) = cache {
                    let next = NextHop {
                        port: hop.port,
                        mac,
                        src: src_mac,
                    };
                    self.nh.fill(slot, dst, next);
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

    /// Queue a finished frame on `port`.
    #[inline]
    pub(super) fn enqueue(&mut self, port: u16, b: Q::Buf) {
        self.tx
            .enqueue(&mut self.queues, &self.counters, port, b, self.now_ns);
    }

    /// Flush the buffers past their deadline.
    pub(super) fn flush_due(&mut self) {
        let deadline = self.cfg.tx_flush.as_nanos() as u64;
        self.tx
            .flush_due(&mut self.queues, &self.counters, self.now_ns, deadline);
    }

    /// Send everything buffered now.
    pub fn flush_all(&mut self) {
        self.tx.flush_all(&mut self.queues, &self.counters);
    }
}
