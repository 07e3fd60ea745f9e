//! Packets for the director itself, as the worker handles them (the packet
//! work is `dataplane::local`'s): ARP and ND (answer, learn the asker),
//! echo requests, neighbour solicitation for unresolved next hops, and
//! neighbours learned here or by other workers — which release the packets
//! that waited for them.
//!
//! Rules: a learned neighbour is shared with every other worker through its
//! bounded inbox; a full inbox loses the update (the neighbour is learned
//! again from the next ARP/ND packet).

use std::net::IpAddr;

use super::{Outcome, Worker};
use crate::dataplane::counters::DropReason;
use crate::dataplane::driver::{PacketBuf, PortQueue};
use crate::dataplane::local;
use crate::dataplane::neigh::NeighUpdate;
use crate::dataplane::xmit::{self, Layout};

impl<Q: PortQueue> Worker<Q> {
    /// Learn what other workers learned.
    pub(super) fn take_neighbours(&mut self) {
        let me = self.cfg.index as usize;
        while let Some(u) = self.links.neigh[me].pop() {
            self.learned(u, false);
        }
    }

    /// A neighbour became known: record it, tell the other workers (when
    /// `share`), send what waited for it.
    fn learned(&mut self, u: NeighUpdate, share: bool) {
        if self.neigh.learn(&u, self.now_ns) {
            self.nh.invalidate();
        }
        if share {
            for w in 0..self.links.workers {
                if w != self.cfg.index {
                    let _ = self.links.neigh[w as usize].push(u);
                }
            }
        }
        let Some(port_mac) = self.snap.port(u.port).map(|p| p.mac) else {
            return;
        };
        let tx = &mut self.tx;
        let now = self.now_ns;
        let counters = &self.counters;
        self.pending.release(&u.addr, |p, mut b| {
            xmit::set_l2(b.data_mut(), &u.mac, &port_mac);
            if tx.push(p as usize, b, now).is_err() {
                counters.count_drop(DropReason::TxFull);
            }
        });
    }

    /// An ARP packet.
    pub(super) fn arp(&mut self, port: u16, mut b: Q::Buf) -> Outcome {
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

    /// Ask for `addr`'s MAC on `port` (ARP request / neighbour
    /// solicitation).
    pub(super) fn solicit(&mut self, port: u16, addr: &IpAddr) {
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

    /// An ICMP / ICMPv6 packet: echo, ND, or an error about a connection.
    pub(super) fn icmp(&mut self, port: u16, mut b: Q::Buf, lay: Layout) -> Outcome {
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
}
