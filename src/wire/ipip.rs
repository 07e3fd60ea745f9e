//! IP-in-IP encapsulation for the TUN forwarding mode: writing the outer
//! header in front of an inner packet (IPv4 in IPv4, RFC 2003; IPv6 in IPv6,
//! RFC 2473).
//!
//! Rules: the caller reserves the outer header's bytes (the packet buffer has
//! headroom for it) and passes exactly that slice; these helpers only write
//! the header and never touch the inner packet. A slice shorter than the
//! header is [`Error::Truncated`]; an inner packet too long for the outer
//! 16-bit length field is [`Error::Malformed`] (the caller should have sent
//! "fragmentation needed" / "packet too big" instead).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{ip_proto, Error, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, Result};

/// Length of the outer IPv4 header written by [`emit_ipip4`].
pub const ENCAP_IPV4_LEN: usize = 20;
/// Length of the outer IPv6 header written by [`emit_ip6ip6`].
pub const ENCAP_IPV6_LEN: usize = 40;
/// Outer protocol for IPv4 inside IPv4.
pub const PROTO_IPIP: u8 = ip_proto::IPIP;
/// Outer next header for IPv6 inside IPv6.
pub const PROTO_IPV6: u8 = ip_proto::IPV6;

/// Writes a 20-byte outer IPv4 header (protocol 4, identification 0, checksum
/// filled) into `outer[..20]` for an inner packet of `inner_total_len` bytes.
pub fn emit_ipip4(
    outer: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    inner_total_len: usize,
    ttl: u8,
    dont_frag: bool,
    dscp_ecn: u8,
) -> Result<()> {
    emit_ipip4_ident(
        outer,
        src,
        dst,
        inner_total_len,
        ttl,
        dont_frag,
        dscp_ecn,
        0,
    )
}

/// [`emit_ipip4`] with an explicit identification (needed when DF is clear and
/// the outer packet may be fragmented on the way).
#[allow(clippy::too_many_arguments)]
pub fn emit_ipip4_ident(
    outer: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    inner_total_len: usize,
    ttl: u8,
    dont_frag: bool,
    dscp_ecn: u8,
    ident: u16,
) -> Result<()> {
    let outer = outer.get_mut(..ENCAP_IPV4_LEN).ok_or(Error::Truncated)?;
    if ENCAP_IPV4_LEN + inner_total_len > usize::from(u16::MAX) {
        return Err(Error::Malformed("IPIP packet longer than 65535 bytes"));
    }
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: PROTO_IPIP,
        payload_len: inner_total_len,
        ttl,
        dscp_ecn,
        ident,
        dont_frag,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(outer));
    Ok(())
}

/// Writes a 40-byte outer IPv6 header (next header 41) into `outer[..40]` for
/// an inner packet of `inner_len` bytes.
pub fn emit_ip6ip6(
    outer: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    inner_len: usize,
    hop_limit: u8,
    traffic_class: u8,
    flow_label: u32,
) -> Result<()> {
    let outer = outer.get_mut(..ENCAP_IPV6_LEN).ok_or(Error::Truncated)?;
    if inner_len > usize::from(u16::MAX) {
        return Err(Error::Malformed("ip6ip6 payload longer than 65535 bytes"));
    }
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: PROTO_IPV6,
        payload_len: inner_len,
        hop_limit,
        traffic_class,
        flow_label,
    };
    repr.emit(&mut Ipv6Packet::new_unchecked(outer));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{builder::PacketBuilder, ipv6_upper_layer};

    #[test]
    fn ipip4_wraps_an_inner_packet() {
        let inner = PacketBuilder::new()
            .ipv4(Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(10, 0, 0, 100))
            .tcp(40000, 80)
            .payload(b"GET /")
            .build();
        let mut pkt = vec![0xa5u8; ENCAP_IPV4_LEN];
        pkt.extend_from_slice(&inner);
        let (outer, _) = pkt.split_at_mut(ENCAP_IPV4_LEN);
        let (dip, rip) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 1, 5));
        emit_ipip4(outer, dip, rip, inner.len(), 64, true, 0x10).unwrap();
        let p = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        assert_eq!(p.next_header(), ip_proto::IPIP);
        assert_eq!(usize::from(p.total_len()), ENCAP_IPV4_LEN + inner.len());
        assert_eq!((p.src_addr(), p.dst_addr()), (dip, rip));
        assert_eq!(
            (p.ttl(), p.dont_frag(), p.dscp_ecn(), p.ident()),
            (64, true, 0x10, 0)
        );
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &inner[..]);
    }

    #[test]
    fn ipip4_ident_and_errors() {
        let mut outer = [0u8; 20];
        let a = Ipv4Addr::new(1, 2, 3, 4);
        emit_ipip4_ident(&mut outer, a, a, 0, 1, false, 0, 0xabcd).unwrap();
        assert_eq!(Ipv4Packet::new_unchecked(&outer[..]).ident(), 0xabcd);
        assert_eq!(
            emit_ipip4(&mut outer[..19], a, a, 0, 1, false, 0),
            Err(Error::Truncated)
        );
        assert!(matches!(
            emit_ipip4(&mut outer, a, a, 65516, 1, false, 0),
            Err(Error::Malformed(_))
        ));
        assert!(emit_ipip4(&mut outer, a, a, 65515, 1, false, 0).is_ok());
    }

    #[test]
    fn ip6ip6_wraps_an_inner_packet() {
        let (cip, vip) = (
            "2001:db8::c".parse().unwrap(),
            "2001:db8::100".parse().unwrap(),
        );
        let inner = PacketBuilder::new()
            .ipv6(cip, vip)
            .udp(5000, 53)
            .payload(b"q")
            .build();
        let mut pkt = vec![0xa5u8; ENCAP_IPV6_LEN];
        pkt.extend_from_slice(&inner);
        let (dip, rip): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8:1::5".parse().unwrap(),
        );
        emit_ip6ip6(
            &mut pkt[..ENCAP_IPV6_LEN],
            dip,
            rip,
            inner.len(),
            63,
            0xb8,
            0x12345,
        )
        .unwrap();
        let p = Ipv6Packet::new_checked(&pkt[..]).unwrap();
        assert_eq!(p.next_header(), ip_proto::IPV6);
        assert_eq!(usize::from(p.payload_len()), inner.len());
        assert_eq!((p.src_addr(), p.dst_addr()), (dip, rip));
        assert_eq!(
            (p.hop_limit(), p.traffic_class(), p.flow_label()),
            (63, 0xb8, 0x12345)
        );
        assert_eq!(p.payload(), &inner[..]);
        let up = ipv6_upper_layer(&pkt).unwrap();
        assert_eq!((up.proto, up.offset), (ip_proto::IPV6, 40));
        let mut short = [0u8; 39];
        assert_eq!(
            emit_ip6ip6(&mut short, dip, rip, 0, 1, 0, 0),
            Err(Error::Truncated)
        );
    }
}
