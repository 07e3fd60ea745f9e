//! Packets for the director itself: ARP and IPv6 neighbour discovery for its
//! own addresses, VIPs and LIPs; echo replies from VIPs and own addresses;
//! the ICMP errors the director sends (time exceeded, fragmentation needed /
//! packet too big). Relaying ICMP errors about tracked connections is the
//! forwarding modes' business (`xmit::icmp` and each mode's file).
//!
//! Rules: answers are written in place in the received buffer when the size
//! allows; new packets are written into a buffer from the driver's pool —
//! never a heap allocation. Anything unparseable is `Malformed`, never a
//! panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::dataplane::driver::PacketBuf;
use crate::dataplane::neigh::NeighUpdate;
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::xmit::{ip_addrs, ip_end, Layout};
use crate::wire::{
    self, checksum, ethertype, icmpv4, icmpv6, ip_proto, ArpOperation, ArpPacket, ArpRepr,
    EthernetAddress, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    NdpFlags, NdpRepr,
};

/// What to do with an ARP or ND packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpAction {
    /// The buffer now holds the answer: send it back out the port. The
    /// asker's binding was learned (port to be filled by the caller).
    Reply {
        /// The asker's address and MAC.
        learned: Option<NeighUpdate>,
    },
    /// Nothing to send; a binding was learned.
    Learn(NeighUpdate),
    /// Not for us.
    Ignore,
    /// Broken.
    Malformed,
}

/// Kinds of ICMP messages the worker tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    /// Echo request (v4 or v6).
    EchoRequest,
    /// IPv6 neighbour solicitation.
    NeighborSolicit,
    /// IPv6 neighbour advertisement.
    NeighborAdvert,
    /// An error (destination unreachable, too big, time exceeded, ...).
    Error,
    /// Anything else.
    Other,
    /// Too short.
    Malformed,
}

/// The source MAC of a frame.
pub fn l2_src(frame: &[u8]) -> EthernetAddress {
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[6..12]);
    EthernetAddress(m)
}

/// Handle an ARP packet: answer requests for our addresses in place, learn
/// the sender of requests for us and of replies.
pub fn arp_input(frame: &mut [u8], snap: &Snapshot, our_mac: EthernetAddress) -> ArpAction {
    let Ok(l2) = wire::parse_l2(frame) else {
        return ArpAction::Malformed;
    };
    let l3 = l2.l3_offset;
    let repr = match ArpPacket::new_checked(&frame[l3..]).and_then(|p| ArpRepr::parse(&p)) {
        Ok(r) => r,
        Err(_) => return ArpAction::Malformed,
    };
    let target_is_ours = snap.is_local(&IpAddr::V4(repr.target_protocol_addr));
    let sender = NeighUpdate {
        addr: IpAddr::V4(repr.source_protocol_addr),
        mac: repr.source_hardware_addr,
        port: 0,
    };
    let sender_valid = !repr.source_protocol_addr.is_unspecified() && sender.mac.is_unicast();
    match repr.operation {
        ArpOperation::Request if target_is_ours => {
            let reply = ArpRepr {
                operation: ArpOperation::Reply,
                source_hardware_addr: our_mac,
                source_protocol_addr: repr.target_protocol_addr,
                target_hardware_addr: repr.source_hardware_addr,
                target_protocol_addr: repr.source_protocol_addr,
            };
            let mut p = ArpPacket::new_unchecked(&mut frame[l3..]);
            reply.emit(&mut p);
            frame[0..6].copy_from_slice(&repr.source_hardware_addr.0);
            frame[6..12].copy_from_slice(&our_mac.0);
            ArpAction::Reply {
                learned: sender_valid.then_some(sender),
            }
        }
        ArpOperation::Reply if sender_valid => ArpAction::Learn(sender),
        // Gratuitous ARP from a host we may talk to: learn it too.
        ArpOperation::Request
            if sender_valid && repr.source_protocol_addr == repr.target_protocol_addr =>
        {
            ArpAction::Learn(sender)
        }
        _ => ArpAction::Ignore,
    }
}

/// Classify an ICMP/ICMPv6 packet at `lay`.
pub fn icmp_kind(frame: &[u8], lay: &Layout) -> IcmpKind {
    let Some(t) = frame.get(lay.l4 as usize) else {
        return IcmpKind::Malformed;
    };
    if lay.v6 {
        match *t {
            icmpv6::ECHO_REQUEST => IcmpKind::EchoRequest,
            icmpv6::NEIGHBOR_SOLICIT => IcmpKind::NeighborSolicit,
            icmpv6::NEIGHBOR_ADVERT => IcmpKind::NeighborAdvert,
            1..=4 => IcmpKind::Error,
            _ => IcmpKind::Other,
        }
    } else {
        match *t {
            icmpv4::ECHO_REQUEST => IcmpKind::EchoRequest,
            t if icmpv4::is_error_type(t) => IcmpKind::Error,
            _ => IcmpKind::Other,
        }
    }
}

/// Turn an echo request to one of our addresses into the echo reply, in
/// place (addresses swapped, TTL 64, type and checksums updated). `false`
/// if it was not addressed to us.
pub fn echo_reply_in_place(frame: &mut [u8], lay: &Layout, snap: &Snapshot) -> bool {
    let Some((src, dst)) = ip_addrs(frame, lay) else {
        return false;
    };
    if !snap.is_local(&dst) {
        return false;
    }
    let l3 = lay.l3 as usize;
    let l4 = lay.l4 as usize;
    let end = ip_end(frame, lay);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..]);
            ip.set_src_addr(d);
            ip.set_dst_addr(s);
            ip.set_ttl(64);
            ip.fill_checksum();
            let mut icmp = Icmpv4Packet::new_unchecked(&mut frame[l4..end]);
            let old = u16::from_be_bytes([icmpv4::ECHO_REQUEST, icmp.msg_code()]);
            icmp.set_msg_type(icmpv4::ECHO_REPLY);
            let new = u16::from_be_bytes([icmpv4::ECHO_REPLY, icmp.msg_code()]);
            let c = icmp.checksum();
            icmp.set_checksum(checksum::update16(c, old, new));
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = Ipv6Packet::new_unchecked(&mut frame[l3..]);
            ip.set_src_addr(d);
            ip.set_dst_addr(s);
            ip.set_hop_limit(64);
            let mut icmp = Icmpv6Packet::new_unchecked(&mut frame[l4..end]);
            icmp.set_msg_type(icmpv6::ECHO_REPLY);
            icmp.fill_checksum(&d, &s);
        }
        _ => return false,
    }
    true
}

/// Handle a neighbour solicitation or advertisement. A solicitation for one
/// of our addresses becomes a solicited advertisement in place.
pub fn nd_input<B: PacketBuf>(
    b: &mut B,
    lay: &Layout,
    snap: &Snapshot,
    our_mac: EthernetAddress,
) -> ArpAction {
    let (l3, l4) = (lay.l3 as usize, lay.l4 as usize);
    let end = ip_end(b.data(), lay);
    let (src, _dst) = match ip_addrs(b.data(), lay) {
        Some((IpAddr::V6(s), IpAddr::V6(d))) => (s, d),
        _ => return ArpAction::Malformed,
    };
    let repr = {
        let d = b.data();
        let p = Icmpv6Packet::new_unchecked(&d[l4..end]);
        match NdpRepr::parse(&p) {
            Ok(r) => r,
            Err(_) => return ArpAction::Malformed,
        }
    };
    match repr {
        NdpRepr::NeighborSolicit {
            target,
            source_lladdr,
        } => {
            if !snap.is_local(&IpAddr::V6(target)) || src.is_unspecified() {
                return ArpAction::Ignore;
            }
            let learned = source_lladdr.map(|mac| NeighUpdate {
                addr: IpAddr::V6(src),
                mac,
                port: 0,
            });
            let na = NdpRepr::NeighborAdvert {
                flags: NdpFlags::SOLICITED | NdpFlags::OVERRIDE,
                target,
                target_lladdr: Some(our_mac),
            };
            let need = l4 + na.buffer_len();
            let have = b.len();
            if have > need {
                let _ = b.trim(have - need);
            } else if have < need && b.append(need - have).is_none() {
                return ArpAction::Malformed;
            }
            let dst_mac = match source_lladdr {
                Some(m) => m,
                None => l2_src(b.data()),
            };
            let d = b.data_mut();
            {
                let mut ip = Ipv6Packet::new_unchecked(&mut d[l3..]);
                ip.set_src_addr(target);
                ip.set_dst_addr(src);
                ip.set_hop_limit(255);
                ip.set_payload_len((need - l4) as u16 + (l4 - l3 - 40) as u16);
            }
            let mut icmp = Icmpv6Packet::new_unchecked(&mut d[l4..need]);
            na.emit(&mut icmp, &target, &src);
            d[0..6].copy_from_slice(&dst_mac.0);
            d[6..12].copy_from_slice(&our_mac.0);
            ArpAction::Reply { learned }
        }
        NdpRepr::NeighborAdvert {
            target,
            target_lladdr: Some(mac),
            ..
        } => ArpAction::Learn(NeighUpdate {
            addr: IpAddr::V6(target),
            mac,
            port: 0,
        }),
        NdpRepr::NeighborAdvert { .. } => ArpAction::Ignore,
    }
}

/// Write an ARP request (IPv4) or neighbour solicitation (IPv6) for
/// `target` from `src` into the empty buffer `b`.
pub fn emit_solicit<B: PacketBuf>(
    b: &mut B,
    mac: EthernetAddress,
    src: &IpAddr,
    target: &IpAddr,
) -> bool {
    match (src, target) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            let Some(d) = b.append(14 + 28) else {
                return false;
            };
            d[0..6].copy_from_slice(&EthernetAddress::BROADCAST.0);
            d[6..12].copy_from_slice(&mac.0);
            d[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
            let req = ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: mac,
                source_protocol_addr: *s,
                target_hardware_addr: EthernetAddress::ZERO,
                target_protocol_addr: *t,
            };
            req.emit(&mut ArpPacket::new_unchecked(&mut d[14..]));
            true
        }
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            let ns = NdpRepr::NeighborSolicit {
                target: *t,
                source_lladdr: Some(mac),
            };
            let icmp_len = ns.buffer_len();
            let Some(d) = b.append(14 + 40 + icmp_len) else {
                return false;
            };
            let group = wire::icmpv6::solicited_node(t);
            d[0..6].copy_from_slice(&EthernetAddress::from_ipv6_multicast(&group).0);
            d[6..12].copy_from_slice(&mac.0);
            d[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
            Ipv6Repr {
                src_addr: *s,
                dst_addr: group,
                next_header: ip_proto::ICMPV6,
                payload_len: icmp_len,
                hop_limit: 255,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut Ipv6Packet::new_unchecked(&mut d[14..]));
            ns.emit(&mut Icmpv6Packet::new_unchecked(&mut d[54..]), s, &group);
            true
        }
        _ => false,
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

/// Most bytes of the offending packet an ICMPv4 error quotes (RFC 1812:
/// as much as fits in 576 bytes).
const QUOTE_V4: usize = 576 - 20 - 8;
/// ICMPv6: as much as fits in the minimum MTU of 1280 (RFC 4443).
const QUOTE_V6: usize = 1280 - 40 - 8;

/// Write an ICMP error about `orig` (its IP packet at `lay.l3`) from `from`
/// to `to` into the empty buffer `nb`: Ethernet header (MACs left for the
/// sender to fill), IP header, ICMP header, quote.
pub fn emit_icmp_error<B: PacketBuf>(
    nb: &mut B,
    orig: &[u8],
    lay: &Layout,
    from: &IpAddr,
    to: &IpAddr,
    kind: IcmpErr,
) -> bool {
    let l3 = lay.l3 as usize;
    let end = ip_end(orig, lay);
    let ip = &orig[l3..end];
    match (from, to) {
        (IpAddr::V4(f), IpAddr::V4(t)) => {
            // Never answer an ICMP error with an error (RFC 1122).
            if lay.proto == ip_proto::ICMP
                && orig
                    .get(lay.l4 as usize)
                    .is_some_and(|t| icmpv4::is_error_type(*t))
            {
                return false;
            }
            let q = ip.len().min(QUOTE_V4);
            let Some(d) = nb.append(14 + 20 + 8 + q) else {
                return false;
            };
            d[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
            emit_v4_header(&mut d[14..34], *f, *t, 8 + q);
            let icmp_bytes = &mut d[34..];
            icmp_bytes[8..].copy_from_slice(&ip[..q]);
            let mut icmp = Icmpv4Packet::new_unchecked(icmp_bytes);
            match kind {
                IcmpErr::TimeExceeded => {
                    icmp.set_msg_type(icmpv4::TIME_EXCEEDED);
                    icmp.set_msg_code(0);
                    icmp.set_rest_of_header(0);
                }
                IcmpErr::TooBig(mtu) => {
                    icmp.set_msg_type(icmpv4::DEST_UNREACHABLE);
                    icmp.set_msg_code(icmpv4::FRAG_NEEDED);
                    icmp.set_rest_of_header(0);
                    icmp.set_next_hop_mtu(mtu);
                }
            }
            icmp.fill_checksum();
            true
        }
        (IpAddr::V6(f), IpAddr::V6(t)) => {
            if lay.proto == ip_proto::ICMPV6 && orig.get(lay.l4 as usize).is_some_and(|t| *t < 128)
            {
                return false;
            }
            let q = ip.len().min(QUOTE_V6);
            let Some(d) = nb.append(14 + 40 + 8 + q) else {
                return false;
            };
            d[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
            Ipv6Repr {
                src_addr: *f,
                dst_addr: *t,
                next_header: ip_proto::ICMPV6,
                payload_len: 8 + q,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut Ipv6Packet::new_unchecked(&mut d[14..54]));
            let icmp_bytes = &mut d[54..];
            icmp_bytes[8..].copy_from_slice(&ip[..q]);
            let mut icmp = Icmpv6Packet::new_unchecked(icmp_bytes);
            match kind {
                IcmpErr::TimeExceeded => {
                    icmp.set_msg_type(icmpv6::TIME_EXCEEDED);
                    icmp.set_msg_code(icmpv6::HOP_LIMIT_EXCEEDED);
                    icmp.set_rest_of_header(0);
                }
                IcmpErr::TooBig(mtu) => {
                    icmp.set_msg_type(icmpv6::PACKET_TOO_BIG);
                    icmp.set_msg_code(0);
                    icmp.set_mtu(mtu as u32);
                }
            }
            icmp.fill_checksum(f, t);
            true
        }
        _ => false,
    }
}

fn emit_v4_header(d: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) {
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: ip_proto::ICMP,
        payload_len,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut Ipv4Packet::new_unchecked(d));
}

#[allow(dead_code)]
fn _unused(_: Ipv6Addr) {}
