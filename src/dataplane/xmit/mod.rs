//! Transmit rewriting for the four forwarding modes (DESIGN §4) and the
//! header surgery they share: address/port rewrite with RFC 1624
//! incremental checksums (the arithmetic is `wire::checksum`'s; this module
//! knows where the fields are), TTL decrement, L2 rewrite, and where the IP
//! packet and its addresses are in a frame.
//!
//! Rules: operate in place on the frame (`&mut [u8]`) at offsets the parser
//! found; never recompute a whole L4 checksum on the forwarding path; never
//! allocate. Each mode lives in its own file — [`nat`], [`dr`], [`tun`],
//! [`fullnat`] — which says everything the mode changes, in forwarded
//! packets and in the ICMP errors relayed about its connections ([`icmp`]
//! holds what those relays share).
//!
//! IP fragments: the first fragment holds the L4 header and is rewritten
//! like a whole packet — its L4 checksum covers the whole datagram, and the
//! incremental update (pseudo-header addresses and ports) is exactly the
//! datagram's delta. Later fragments have no L4 header: their layout says
//! [`NO_L4`], and only the IP header (addresses, TTL, IPv4 header checksum)
//! is rewritten.

pub mod dr;
pub mod fullnat;
pub mod icmp;
pub mod nat;
pub mod tun;

use std::net::IpAddr;

use crate::conntrack::Addr;
use crate::wire::checksum::{self, Delta};
use crate::wire::{ip_proto, EthernetAddress, Ipv4Packet, Ipv6Packet};

/// Where the headers of a parsed IP packet are in its frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the IP header (after Ethernet and an optional VLAN tag).
    pub l3: u16,
    /// Offset of the L4 header.
    pub l4: u16,
    /// IPv6?
    pub v6: bool,
    /// Upper-layer protocol.
    pub proto: u8,
}

/// [`Layout::proto`] of a non-first fragment: the bytes at `l4` are the
/// middle of a datagram, not an L4 header, so no port or L4 checksum is
/// touched (IPv6's fragment-header number, never an upper-layer protocol).
pub const NO_L4: u8 = ip_proto::FRAGMENT;

/// Offsets of the fields touched here.
mod field {
    pub const V4_TTL: usize = 8;
    pub const V4_CSUM: usize = 10;
    pub const V4_SRC: usize = 12;
    pub const V4_DST: usize = 16;
    pub const V6_HLIM: usize = 7;
    pub const V6_SRC: usize = 8;
    pub const V6_DST: usize = 24;
    pub const L4_SPORT: usize = 0;
    pub const L4_DPORT: usize = 2;
    pub const TCP_CSUM: usize = 16;
    pub const UDP_CSUM: usize = 6;
}

#[inline]
fn rd16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

#[inline]
fn wr16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_be_bytes());
}

/// The L4 checksum field offset for `proto`, if it has one we maintain.
#[inline]
fn l4_csum_off(proto: u8) -> Option<usize> {
    match proto {
        ip_proto::TCP => Some(field::TCP_CSUM),
        ip_proto::UDP => Some(field::UDP_CSUM),
        _ => None,
    }
}

/// Apply a checksum update to the L4 checksum (UDP over IPv4 with checksum
/// 0 = none stays 0; a UDP result of 0 is sent as 0xffff).
#[inline]
fn l4_update(frame: &mut [u8], lay: &Layout, f: impl Fn(u16) -> u16) {
    let Some(off) = l4_csum_off(lay.proto) else {
        return;
    };
    let o = lay.l4 as usize + off;
    if o + 2 > frame.len() {
        return;
    }
    let old = rd16(frame, o);
    if lay.proto == ip_proto::UDP && old == 0 && !lay.v6 {
        return;
    }
    let new = f(old);
    let new = if lay.proto == ip_proto::UDP {
        checksum::udp_final(new)
    } else {
        new
    };
    wr16(frame, o, new);
}

/// Which address of the IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Source address and port.
    Src,
    /// Destination address and port.
    Dst,
}

/// Rewrite one side's address and port, updating the IPv4 header checksum
/// and the TCP/UDP checksum incrementally.
#[inline]
pub fn rewrite(frame: &mut [u8], lay: &Layout, side: Side, addr: &Addr, port: u16) {
    let l3 = lay.l3 as usize;
    let l4 = lay.l4 as usize;
    if lay.v6 {
        let o = l3
            + if side == Side::Src {
                field::V6_SRC
            } else {
                field::V6_DST
            };
        let mut old = [0u8; 16];
        old.copy_from_slice(&frame[o..o + 16]);
        if old != *addr {
            frame[o..o + 16].copy_from_slice(addr);
            l4_update(frame, lay, |c| checksum::update_bytes(c, &old, addr));
        }
    } else {
        let o = l3
            + if side == Side::Src {
                field::V4_SRC
            } else {
                field::V4_DST
            };
        let old = u32::from_be_bytes([frame[o], frame[o + 1], frame[o + 2], frame[o + 3]]);
        let new = u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]);
        if old != new {
            frame[o..o + 4].copy_from_slice(&addr[..4]);
            let c = rd16(frame, l3 + field::V4_CSUM);
            wr16(frame, l3 + field::V4_CSUM, checksum::update32(c, old, new));
            l4_update(frame, lay, |c| checksum::update32(c, old, new));
        }
    }
    if matches!(lay.proto, ip_proto::TCP | ip_proto::UDP) {
        let po = l4
            + if side == Side::Src {
                field::L4_SPORT
            } else {
                field::L4_DPORT
            };
        let old = rd16(frame, po);
        if old != port {
            wr16(frame, po, port);
            l4_update(frame, lay, |c| checksum::update16(c, old, port));
        }
    }
}

/// IPv4 fast path of the rewriting modes: replace the source and/or
/// destination address and port and decrement the TTL, with a single
/// incremental adjustment of the IP header checksum and one of the TCP/UDP
/// checksum (RFC 1624). The caller checked the TTL ([`ttl_expires`]) and
/// the header lengths (the parser did).
#[inline(always)]
pub fn rewrite4(
    frame: &mut [u8],
    lay: &Layout,
    src: Option<(&Addr, u16)>,
    dst: Option<(&Addr, u16)>,
) {
    let l3 = lay.l3 as usize;
    let l4 = lay.l4 as usize;
    let Some(ip) = frame.get_mut(l3..l3 + 20) else {
        return;
    };
    let rd32 = |b: &[u8], o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let mut d_ip = Delta::new();
    let mut d_l4 = Delta::new();
    let mut ports = [None::<u16>, None::<u16>];
    for (i, (side, off)) in [(src, field::V4_SRC), (dst, field::V4_DST)]
        .into_iter()
        .enumerate()
    {
        if let Some((a, p)) = side {
            let old = rd32(ip, off);
            let new = u32::from_be_bytes([a[0], a[1], a[2], a[3]]);
            ip[off..off + 4].copy_from_slice(&a[..4]);
            d_ip.word32(old, new);
            d_l4.word32(old, new);
            ports[i] = Some(p);
        }
    }
    // TTL (high byte of the TTL/protocol word).
    let old_tp = u16::from_be_bytes([ip[field::V4_TTL], ip[field::V4_TTL + 1]]);
    ip[field::V4_TTL] = ip[field::V4_TTL].wrapping_sub(1);
    let new_tp = old_tp.wrapping_sub(0x100);
    d_ip.word16(old_tp, new_tp);
    let c = u16::from_be_bytes([ip[field::V4_CSUM], ip[field::V4_CSUM + 1]]);
    ip[field::V4_CSUM..field::V4_CSUM + 2].copy_from_slice(&d_ip.apply(c).to_be_bytes());
    let (csum_off, udp) = match lay.proto {
        ip_proto::TCP => (field::TCP_CSUM, false),
        ip_proto::UDP => (field::UDP_CSUM, true),
        _ => return,
    };
    let Some(l4h) = frame.get_mut(l4..l4 + csum_off + 2) else {
        return;
    };
    for (i, po) in [field::L4_SPORT, field::L4_DPORT].into_iter().enumerate() {
        if let Some(p) = ports[i] {
            let old = u16::from_be_bytes([l4h[po], l4h[po + 1]]);
            l4h[po..po + 2].copy_from_slice(&p.to_be_bytes());
            d_l4.word16(old, p);
        }
    }
    let c = u16::from_be_bytes([l4h[csum_off], l4h[csum_off + 1]]);
    if udp && c == 0 {
        return; // IPv4 UDP without checksum stays without.
    }
    let mut n = d_l4.apply(c);
    if udp {
        n = checksum::udp_final(n);
    }
    l4h[csum_off..csum_off + 2].copy_from_slice(&n.to_be_bytes());
}

/// Decrement the TTL / hop limit; `false` (unchanged) when it would reach 0.
#[inline]
pub fn dec_ttl(frame: &mut [u8], lay: &Layout) -> bool {
    let l3 = lay.l3 as usize;
    if lay.v6 {
        let h = frame[l3 + field::V6_HLIM];
        if h <= 1 {
            return false;
        }
        frame[l3 + field::V6_HLIM] = h - 1;
    } else {
        let t = frame[l3 + field::V4_TTL];
        if t <= 1 {
            return false;
        }
        let old = rd16(frame, l3 + field::V4_TTL);
        frame[l3 + field::V4_TTL] = t - 1;
        let new = rd16(frame, l3 + field::V4_TTL);
        let c = rd16(frame, l3 + field::V4_CSUM);
        wr16(frame, l3 + field::V4_CSUM, checksum::update16(c, old, new));
    }
    true
}

/// Whether the TTL / hop limit would expire on forwarding.
#[inline]
pub fn ttl_expires(frame: &[u8], lay: &Layout) -> bool {
    let l3 = lay.l3 as usize;
    let t = if lay.v6 {
        frame[l3 + field::V6_HLIM]
    } else {
        frame[l3 + field::V4_TTL]
    };
    t <= 1
}

/// Write the Ethernet addresses (the VLAN tag, if any, is kept).
#[inline]
pub fn set_l2(frame: &mut [u8], dst: &EthernetAddress, src: &EthernetAddress) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
}

/// End of the IP packet within the frame (excludes Ethernet padding).
#[inline]
pub fn ip_end(frame: &[u8], lay: &Layout) -> usize {
    let l3 = lay.l3 as usize;
    let n = if lay.v6 {
        40 + u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) as usize
    } else {
        u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize
    };
    (l3 + n).min(frame.len())
}

/// Source and destination addresses of the IP packet at `lay`.
pub fn ip_addrs(frame: &[u8], lay: &Layout) -> Option<(IpAddr, IpAddr)> {
    let ip = frame.get(lay.l3 as usize..)?;
    if lay.v6 {
        let p = Ipv6Packet::new_checked(ip).ok()?;
        Some((p.src_addr().into(), p.dst_addr().into()))
    } else {
        let p = Ipv4Packet::new_checked(ip).ok()?;
        Some((p.src_addr().into(), p.dst_addr().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::PacketBuilder;
    use crate::wire::{EthernetAddress, TcpFlags};
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn rewrite_keeps_checksums_valid_v4_tcp() {
        let mut f = PacketBuilder::ethernet(EthernetAddress([2; 6]), EthernetAddress([4; 6]))
            .ipv4(
                "203.0.113.7".parse().expect("a"),
                "10.0.0.1".parse().expect("a"),
            )
            .tcp(51000, 80)
            .flags(TcpFlags::SYN)
            .payload(b"hello")
            .build();
        let lay = Layout {
            l3: 14,
            l4: 34,
            v6: false,
            proto: 6,
        };
        let rip = crate::conntrack::addr_from_ip(&ip("192.168.10.1"));
        rewrite(&mut f, &lay, Side::Dst, &rip, 8080);
        assert!(dec_ttl(&mut f, &lay));
        let p = etherparse::SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(etherparse::NetSlice::Ipv4(v4)) = p.net else {
            panic!("ipv4")
        };
        assert_eq!(
            v4.header().destination_addr(),
            Ipv4Addr::new(192, 168, 10, 1)
        );
        let hdr = v4.header().to_header();
        assert_eq!(hdr.header_checksum, hdr.calc_header_checksum());
        let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("tcp")
        };
        assert_eq!(tcp.destination_port(), 8080);
        let want = tcp
            .to_header()
            .calc_checksum_ipv4(&hdr, tcp.payload())
            .expect("csum");
        assert_eq!(tcp.checksum(), want);
    }
}
