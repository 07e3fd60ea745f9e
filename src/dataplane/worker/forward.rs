//! Stage 5 of DESIGN §1: forwarding a packet of a known connection —
//! state and accounting, then the mode's rewrite (`xmit::{nat, dr, tun,
//! fullnat}`) and the next hop; relaying ICMP errors about tracked
//! connections (the mode's `icmp_to_*` rewrite); and the ICMP errors the
//! director itself answers with (time exceeded, fragmentation needed).
//!
//! Rules: a connection whose real server left the snapshot is dropped and
//! expired when `expire_nodest_conn` is set (as IPVS does), else it keeps
//! flowing; nothing here walks the connection table.

use std::net::IpAddr;

use super::{synproxy, Outcome, Worker, NO_POS};
use crate::conntrack::{addr_to_ip, Addr, ConnId, Dir, Fwd};
use crate::dataplane::counters::DropReason;
use crate::dataplane::driver::{PacketBuf, PortQueue};
use crate::dataplane::local::{self, IcmpErr};
use crate::dataplane::xmit::{self, dr, fullnat, icmp, nat, tun, Layout};

impl<Q: PortQueue> Worker<Q> {
    /// Forward a packet of connection `id` in direction `dir`.
    pub(super) fn forward(
        &mut self,
        id: ConnId,
        dir: Dir,
        mut b: Q::Buf,
        lay: Layout,
        flags: u8,
    ) -> Outcome {
        let c = self.conns.get(id);
        if self.snap.is_standby_service(c.svc()) {
            // VRRP BACKUP: established flows stop at once too.
            return Outcome::Drop(DropReason::VrrpBackup);
        }
        let dest_id = c.dest();
        let proxy = c.flags();
        // When the previous packet refreshed it (sync's time-based refresh).
        let last_seen = c.expires_at().wrapping_sub(c.timeout_ticks());
        if proxy & synproxy::SP_PENDING != 0 {
            return self.synproxy_pending(id, dir, b, lay, flags);
        }
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
        if self.sync_export {
            self.sync_after_packet(id, ch, last_seen);
        }
        // IPVS counts skb->len at the IP layer: the IP datagram, without the
        // link header or Ethernet padding (ipvsadm --stats agrees).
        let len = xmit::ip_end(b.data(), &lay).saturating_sub(lay.l3 as usize);
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
        if fwd != Fwd::Tun {
            let to = match (fwd, dir) {
                (Fwd::Nat | Fwd::FullNat, Dir::Reply) => addr_to_ip(&c.cip(), v6),
                _ => addr_to_ip(&c.rip(), v6),
            };
            if let Some(out) = self.too_big(&b, &lay, &to) {
                return out;
            }
        }
        let c = self.conns.get(id);
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
        if proxy & synproxy::SP_ON != 0 {
            synproxy::fix_up(frame, &lay, c, dir);
        }
        self.send_to(b, &next, v6)
    }

    /// IPVS's `ensure_mtu_is_adequate` for NAT, DR and FULLNAT: a packet
    /// larger than the egress port's MTU is dropped as `too_big`, with
    /// fragmentation-needed (IPv4 with DF) or packet-too-big (IPv6) to its
    /// sender; rvs does not fragment.
    fn too_big(&mut self, b: &Q::Buf, lay: &Layout, to: &IpAddr) -> Option<Outcome> {
        let hop = self.snap.routes.lookup(to)?;
        let mtu = self.snap.port(hop.port)?.mtu;
        let l3 = usize::from(lay.l3);
        if b.len().saturating_sub(l3) <= usize::from(mtu) {
            return None;
        }
        let df = lay.v6 || b.data().get(l3 + 6).is_some_and(|f| f & 0x40 != 0);
        if df {
            self.icmp_error_back(b, lay, IcmpErr::TooBig(mtu));
        }
        Some(Outcome::Drop(DropReason::TooBig))
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

    /// An ICMP error about a tracked connection: translate the outer and
    /// the quoted headers and forward it to the other side (IPVS
    /// `ip_vs_in_icmp` / `ip_vs_out_icmp`).
    pub(super) fn icmp_error_forward(&mut self, mut b: Q::Buf, lay: Layout) -> Outcome {
        let Some(q) = icmp::quoted_tuple(b.data(), &lay) else {
            return Outcome::Drop(DropReason::Malformed);
        };
        let key = q.reversed();
        let Some((id, dir)) = self.conns.lookup(&key, key.hash()) else {
            return Outcome::Drop(DropReason::IcmpNoConn);
        };
        let c = *self.conns.get(id);
        let v6 = c.v6();
        let Some(inner) = icmp::quoted_layout(b.data(), &lay) else {
            return Outcome::Drop(DropReason::Malformed);
        };
        let frame = b.data_mut();
        let next = match (c.fwd(), dir) {
            (Fwd::Nat, Dir::Reply) => {
                nat::icmp_to_client(frame, &lay, &inner, &c);
                addr_to_ip(&c.cip(), v6)
            }
            (Fwd::FullNat, Dir::Reply) => {
                fullnat::icmp_to_client(frame, &lay, &inner, &c);
                addr_to_ip(&c.cip(), v6)
            }
            (Fwd::Nat, Dir::Original) => {
                nat::icmp_to_server(frame, &lay, &inner, &c);
                addr_to_ip(&c.rip(), v6)
            }
            (Fwd::FullNat, Dir::Original) => {
                fullnat::icmp_to_server(frame, &lay, &inner, &c);
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
        icmp::fill_icmp_checksum(frame, &lay);
        self.send_ip(b, &next, None)
    }

    /// Send an ICMP error about packet `orig` back to its source.
    fn icmp_error_back(&mut self, orig: &Q::Buf, lay: &Layout, kind: IcmpErr) {
        let Some(mut nb) = self.queues.first_mut().and_then(|q| q.alloc()) else {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        };
        let d = orig.data();
        let (src, dst) = match xmit::ip_addrs(d, lay) {
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
