//! Packets for the director itself, as the worker handles them (the packet
//! work is `dataplane::local`'s): ARP and ND (answer, learn the asker),
//! echo requests, neighbour solicitation for unresolved next hops, and
//! neighbours learned here or by other workers — which release the packets
//! that waited for them.
//!
//! With a kernel interface on the port (`dataplane::kernel`), this stage
//! also decides which received frames go up to the director's kernel (its
//! module doc lists the cases), copies them into the kernel path's rings,
//! and transmits what the kernel sent down.
//!
//! Rules: a learned neighbour is shared with every other worker through its
//! bounded inbox; a full inbox loses the update (the neighbour is learned
//! again from the next ARP/ND packet).

use std::net::IpAddr;

use super::classify::Class;
use super::{Outcome, Worker};
use crate::conntrack::{addr_to_ip, Addr};
use crate::dataplane::counters::{bump, DropReason};
use crate::dataplane::driver::{PacketBuf, PortQueue, BURST_SIZE};
use crate::dataplane::local;
use crate::dataplane::neigh::NeighUpdate;
use crate::dataplane::xmit::{self, icmp, Layout};
use crate::wire;

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
            local::IcmpKind::Error => {
                if self.error_for_kernel(port, b.data(), &lay) {
                    self.hand_up(port, b.data());
                    return Outcome::Done;
                }
                self.icmp_error_forward(b, lay)
            }
            local::IcmpKind::Other => Outcome::Drop(DropReason::Local),
            local::IcmpKind::Malformed => Outcome::Drop(DropReason::Malformed),
        }
    }
}

/// Where a received frame goes on a port with a kernel interface
/// (`dataplane::kernel` lists the cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelVerdict {
    /// The dataplane alone.
    Keep,
    /// The kernel alone.
    Up,
    /// A copy to the kernel, and the dataplane handles it too.
    Both,
}

/// The destination address of an ICMP / ICMPv6 packet (IPv4 in the first
/// four bytes).
fn icmp_dst(frame: &[u8], lay: &Layout) -> Option<Addr> {
    let l3 = lay.l3 as usize;
    let (at, n) = if lay.v6 { (l3 + 24, 16) } else { (l3 + 16, 4) };
    let mut dst = [0u8; 16];
    dst[..n].copy_from_slice(frame.get(at..at + n)?);
    Some(dst)
}

impl<Q: PortQueue> Worker<Q> {
    /// The kernel path's share of a received frame: `None` when the frame
    /// went to the kernel alone (copied up, or dropped and counted as
    /// `kernel_drop`), else the frame for the dataplane.
    pub(super) fn kernel_first(&mut self, port: u16, b: Q::Buf, class: &Class) -> Option<Q::Buf> {
        match self.kernel_verdict(port, b.data(), class) {
            KernelVerdict::Keep => Some(b),
            KernelVerdict::Up => {
                self.hand_up(port, b.data());
                None
            }
            KernelVerdict::Both => {
                self.hand_up(port, b.data());
                Some(b)
            }
        }
    }

    fn hand_up(&mut self, port: u16, frame: &[u8]) {
        let Some(k) = &self.kernel else { return };
        let admitted = match self.kernel_limit.get_mut(port as usize) {
            Some(l) => l.admit(k.rate(port), self.now_ns),
            None => true,
        };
        if admitted && k.push_up(self.cfg.index, port, frame) {
            bump(&self.counters.to_kernel, 1);
        } else {
            bump(&self.counters.kernel_drop, 1);
        }
    }

    fn kernel_verdict(&self, port: u16, frame: &[u8], class: &Class) -> KernelVerdict {
        let Some(k) = &self.kernel else {
            return KernelVerdict::Keep;
        };
        if !k.enabled(port) {
            return KernelVerdict::Keep;
        }
        let multicast = frame.first().is_some_and(|b| b & 1 != 0);
        let up_if = |yes: bool| {
            if yes {
                KernelVerdict::Up
            } else {
                KernelVerdict::Keep
            }
        };
        match class {
            Class::Arp => {
                // Replies to both; requests stay with lbd.
                let reply = wire::parse_l2(frame).ok().is_some_and(|l2| {
                    frame.get(l2.l3_offset + 6..l2.l3_offset + 8) == Some(&[0, 2][..])
                });
                if reply {
                    KernelVerdict::Both
                } else {
                    KernelVerdict::Keep
                }
            }
            Class::Drop(DropReason::UnsupportedProto) => KernelVerdict::Up,
            // Fragments for the kernel's own addresses (not a VIP, not a
            // local address) go up whole; the kernel reassembles them.
            Class::Frag { key, .. } => {
                let dst = addr_to_ip(&key.dst, key.v6);
                up_if(
                    self.kernel_owns(port, &key.dst, key.v6)
                        && !self.snap.is_laddr(&dst)
                        && !self.snap.services.iter().any(|s| s.vip == dst),
                )
            }
            Class::Drop(_) => KernelVerdict::Keep,
            Class::L4 { tuple, .. } => {
                if multicast {
                    return KernelVerdict::Up;
                }
                if !self.kernel_owns(port, &tuple.dst, tuple.v6) {
                    return KernelVerdict::Keep;
                }
                let dst = addr_to_ip(&tuple.dst, tuple.v6);
                up_if(
                    self.snap
                        .find_service(tuple.proto, &tuple.dst, tuple.dport)
                        .is_none()
                        && !self.snap.is_laddr(&dst),
                )
            }
            Class::Icmp { lay } => match local::icmp_kind(frame, lay) {
                local::IcmpKind::NeighborSolicit | local::IcmpKind::NeighborAdvert => {
                    KernelVerdict::Both
                }
                local::IcmpKind::EchoRequest | local::IcmpKind::Other => {
                    let Some(dst) = icmp_dst(frame, lay) else {
                        return KernelVerdict::Keep;
                    };
                    up_if(multicast || self.kernel_owns(port, &dst, lay.v6))
                }
                // An error to the DIP quoting no connection answers a socket
                // of the director's kernel (port unreachable, fragmentation
                // needed / packet too big) and goes up; one quoting a
                // connection is relayed. Only the connection's owner can
                // tell (the receiving worker's table does not hold the
                // other workers' connections): an error that quotes a
                // TCP/UDP tuple stays here, is handed to the owner of that
                // tuple, and the owner decides ([`Self::error_for_kernel`]).
                // One quoting nothing usable goes up when it is to the DIP.
                local::IcmpKind::Error => up_if(
                    icmp::quoted_tuple(frame, lay).is_none()
                        && icmp_dst(frame, lay)
                            .is_some_and(|dst| self.kernel_owns(port, &dst, lay.v6)),
                ),
                _ => KernelVerdict::Keep,
            },
        }
    }

    /// Whether an ICMP error that reached its quoted flow's owner (this
    /// worker) is for the director's kernel: the port has a kernel
    /// interface, the error is to one of the port's addresses, and it quotes
    /// no connection of this worker's table.
    fn error_for_kernel(&self, port: u16, frame: &[u8], lay: &Layout) -> bool {
        if !self.kernel.as_ref().is_some_and(|k| k.enabled(port)) {
            return false;
        }
        let own = icmp_dst(frame, lay).is_some_and(|dst| self.kernel_owns(port, &dst, lay.v6));
        own && !icmp::quoted_tuple(frame, lay).is_some_and(|q| {
            let key = q.reversed();
            self.conns.lookup(&key, key.hash()).is_some()
        })
    }

    /// Whether `dst` is one of `port`'s own addresses (or IPv6 link-local):
    /// the kernel interface holds those.
    #[inline]
    fn kernel_owns(&self, port: u16, dst: &Addr, v6: bool) -> bool {
        if v6 && dst[0] == 0xfe && dst[1] & 0xc0 == 0x80 {
            return true;
        }
        let Some(pc) = self.snap.port(port) else {
            return false;
        };
        pc.addrs.iter().any(|(a, _)| match a {
            IpAddr::V4(a) => !v6 && a.octets() == dst[..4],
            IpAddr::V6(a) => v6 && a.octets() == *dst,
        })
    }

    /// Transmit up to a burst of frames the kernel sent, through this
    /// worker's transmit path; returns how many.
    pub(super) fn take_kernel(&mut self) -> usize {
        let me = self.cfg.index;
        let mut n = 0;
        for _ in 0..BURST_SIZE {
            let Some(f) = self.kernel.as_ref().and_then(|k| k.pop_down(me)) else {
                break;
            };
            n += 1;
            let port = f.port();
            let data = f.data();
            let buf = self.queues.get_mut(port as usize).and_then(|q| q.alloc());
            match buf {
                Some(mut b) => match b.append(data.len()) {
                    Some(d) => {
                        d.copy_from_slice(data);
                        bump(&self.counters.from_kernel, 1);
                        self.enqueue(port, b);
                    }
                    None => bump(&self.counters.kernel_drop, 1),
                },
                None => bump(&self.counters.kernel_drop, 1),
            }
            if let Some(k) = &self.kernel {
                k.recycle_down(f);
            }
        }
        n
    }
}
