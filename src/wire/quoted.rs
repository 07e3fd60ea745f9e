//! The packet quoted inside an ICMP or ICMPv6 error: which flow the error is
//! about.
//!
//! Rules: the quote is usually cut short (RFC 792 guarantees the IP header plus
//! 8 bytes; RFC 1812 / RFC 4443 senders quote more), so lengths the quoted
//! header declares (IPv4 total length, IPv6 payload length) are **not**
//! required to fit; only the bytes actually read are checked. IPv4 options
//! are skipped by the IHL; IPv6 extension headers are walked as in
//! [`ipv6_upper_layer`](super::ipv6_upper_layer), bounded by the bytes
//! present. Only the first bytes of the transport header are read: 4 for
//! TCP/UDP/SCTP/UDP-Lite ports, 6 for a quoted ICMP echo (its identifier is
//! reported as `src_port`). A quoted non-first fragment carries no transport
//! header and is [`Error::Unsupported`] (IPVS ignores such errors too).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ipv6::walk_ext_headers;
use super::{icmpv4, icmpv6, ip_proto, read_u16, Error, Result};

/// The IP version of the packet carrying the ICMP error (and so of the quoted
/// packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// ICMP for IPv4 quoting an IPv4 packet.
    V4,
    /// ICMPv6 quoting an IPv6 packet.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> IpFamily {
        match addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

/// The flow identity of the packet quoted in an ICMP error, as the sender of
/// that packet wrote it (so its `src` is the original sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedPacket {
    /// Source address of the quoted packet.
    pub src: IpAddr,
    /// Destination address of the quoted packet.
    pub dst: IpAddr,
    /// Its transport protocol (`ip_proto::*`).
    pub proto: u8,
    /// Source port (TCP/UDP/SCTP/UDP-Lite), the echo identifier for a quoted
    /// ICMP/ICMPv6 echo, else 0.
    pub src_port: u16,
    /// Destination port (TCP/UDP/SCTP/UDP-Lite), else 0.
    pub dst_port: u16,
    /// Offset of the quoted IP header within the ICMP data (always 0).
    pub l3_offset: usize,
    /// Offset of the quoted transport header within the ICMP data.
    pub l4_offset: usize,
}

/// Decodes the packet quoted in an ICMP error. `icmp_data` is what follows the
/// 8-byte ICMP header ([`Icmpv4Packet::data`](super::Icmpv4Packet::data) or
/// [`Icmpv6Packet::data`](super::Icmpv6Packet::data)).
///
/// Errors: [`Error::Truncated`] if the quoted IP header, its extension headers
/// or the needed transport bytes are cut off; [`Error::Malformed`] for a wrong
/// version or a bad IHL / extension chain; [`Error::Unsupported`] for a quoted
/// non-first fragment.
pub fn icmp_quoted(family: IpFamily, icmp_data: &[u8]) -> Result<QuotedPacket> {
    match family {
        IpFamily::V4 => quoted_v4(icmp_data),
        IpFamily::V6 => quoted_v6(icmp_data),
    }
}

fn quoted_v4(data: &[u8]) -> Result<QuotedPacket> {
    if data.len() < 20 {
        return Err(Error::Truncated);
    }
    if data[0] >> 4 != 4 {
        return Err(Error::Malformed("quoted packet is not IPv4"));
    }
    let header_len = usize::from(data[0] & 0x0f) * 4;
    if header_len < 20 {
        return Err(Error::Malformed("quoted IPv4 IHL below 5"));
    }
    if header_len > data.len() {
        return Err(Error::Truncated);
    }
    if read_u16(data, 6) & 0x1fff != 0 {
        return Err(Error::Unsupported("quoted packet is a non-first fragment"));
    }
    let src = Ipv4Addr::new(data[12], data[13], data[14], data[15]);
    let dst = Ipv4Addr::new(data[16], data[17], data[18], data[19]);
    let proto = data[9];
    let (src_port, dst_port) = ports(proto, &data[header_len..])?;
    Ok(QuotedPacket {
        src: src.into(),
        dst: dst.into(),
        proto,
        src_port,
        dst_port,
        l3_offset: 0,
        l4_offset: header_len,
    })
}

fn quoted_v6(data: &[u8]) -> Result<QuotedPacket> {
    if data.len() < 40 {
        return Err(Error::Truncated);
    }
    if data[0] >> 4 != 6 {
        return Err(Error::Malformed("quoted packet is not IPv6"));
    }
    let declared_end = 40 + usize::from(read_u16(data, 4));
    let data = &data[..declared_end.min(data.len())];
    let upper = walk_ext_headers(data, data[6], 40)?;
    if upper.fragment.is_some_and(|f| f.offset != 0) {
        return Err(Error::Unsupported("quoted packet is a non-first fragment"));
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&data[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&data[24..40]);
    let (src_port, dst_port) = ports(upper.proto, &data[upper.offset..])?;
    Ok(QuotedPacket {
        src: Ipv6Addr::from(src).into(),
        dst: Ipv6Addr::from(dst).into(),
        proto: upper.proto,
        src_port,
        dst_port,
        l3_offset: 0,
        l4_offset: upper.offset,
    })
}

/// Ports (or the echo identifier) from the start of a quoted transport header.
fn ports(proto: u8, l4: &[u8]) -> Result<(u16, u16)> {
    match proto {
        ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP | ip_proto::UDPLITE => {
            if l4.len() < 4 {
                return Err(Error::Truncated);
            }
            Ok((read_u16(l4, 0), read_u16(l4, 2)))
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let Some(&msg_type) = l4.first() else {
                return Err(Error::Truncated);
            };
            let is_echo = if proto == ip_proto::ICMP {
                msg_type == icmpv4::ECHO_REQUEST || msg_type == icmpv4::ECHO_REPLY
            } else {
                msg_type == icmpv6::ECHO_REQUEST || msg_type == icmpv6::ECHO_REPLY
            };
            if !is_echo {
                return Ok((0, 0));
            }
            if l4.len() < 6 {
                return Err(Error::Truncated);
            }
            Ok((read_u16(l4, 4), 0))
        }
        _ => Ok((0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_header(ihl: u8, proto: u8, frag: u16) -> Vec<u8> {
        let mut h = vec![0x40 | ihl, 0, 0x05, 0xdc, 0, 1];
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        h.resize(usize::from(ihl) * 4, 1); // options (NOPs)
        h
    }

    #[test]
    fn quoted_udp_v4_with_only_eight_bytes_of_transport() {
        let mut data = v4_header(5, ip_proto::UDP, 0x4000);
        data.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x05, 0xc8, 0xab, 0xcd]);
        let q = icmp_quoted(IpFamily::V4, &data).unwrap();
        assert_eq!(q.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(q.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(
            (q.proto, q.src_port, q.dst_port),
            (ip_proto::UDP, 12345, 53)
        );
        assert_eq!((q.l3_offset, q.l4_offset), (0, 20));
    }

    #[test]
    fn quoted_v4_respects_ihl() {
        let mut data = v4_header(7, ip_proto::TCP, 0);
        data.extend_from_slice(&[0x00, 0x50, 0xc0, 0x00, 0, 0, 0, 1]);
        let q = icmp_quoted(IpFamily::V4, &data).unwrap();
        assert_eq!((q.src_port, q.dst_port, q.l4_offset), (80, 49152, 28));
    }

    #[test]
    fn quoted_v4_errors() {
        let mut data = v4_header(5, ip_proto::TCP, 0);
        assert_eq!(
            icmp_quoted(IpFamily::V4, &data[..19]),
            Err(Error::Truncated)
        );
        data.extend_from_slice(&[0, 80, 0]);
        assert_eq!(
            icmp_quoted(IpFamily::V4, &data),
            Err(Error::Truncated),
            "3 port bytes"
        );
        let data = v4_header(6, ip_proto::TCP, 0);
        assert_eq!(
            icmp_quoted(IpFamily::V4, &data[..22]),
            Err(Error::Truncated)
        );
        let mut bad = v4_header(5, ip_proto::UDP, 0);
        bad[0] = 0x44;
        assert!(matches!(
            icmp_quoted(IpFamily::V4, &bad),
            Err(Error::Malformed(_))
        ));
        bad[0] = 0x65;
        assert!(matches!(
            icmp_quoted(IpFamily::V4, &bad),
            Err(Error::Malformed(_))
        ));
        let mut later = v4_header(5, ip_proto::UDP, 0x2000 | 185);
        later.extend_from_slice(&[0; 8]);
        assert!(matches!(
            icmp_quoted(IpFamily::V4, &later),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn quoted_echo_reports_ident_and_other_protocols_report_zero() {
        let mut data = v4_header(5, ip_proto::ICMP, 0);
        data.extend_from_slice(&[8, 0, 0xff, 0xff, 0x12, 0x34, 0, 1]);
        let q = icmp_quoted(IpFamily::V4, &data).unwrap();
        assert_eq!(
            (q.proto, q.src_port, q.dst_port),
            (ip_proto::ICMP, 0x1234, 0)
        );

        let mut data = v4_header(5, ip_proto::ICMP, 0);
        data.extend_from_slice(&[3, 1, 0, 0, 0, 0, 0, 0]);
        let q = icmp_quoted(IpFamily::V4, &data).unwrap();
        assert_eq!((q.src_port, q.dst_port), (0, 0));

        let data = v4_header(5, ip_proto::ESP, 0);
        let q = icmp_quoted(IpFamily::V4, &data).unwrap();
        assert_eq!(
            (q.proto, q.src_port, q.dst_port, q.l4_offset),
            (ip_proto::ESP, 0, 0, 20)
        );
    }

    fn v6_header(next_header: u8, payload_len: u16) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&payload_len.to_be_bytes());
        h.extend_from_slice(&[next_header, 64]);
        h.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        h
    }

    #[test]
    fn quoted_v6_tolerates_a_cut_payload_and_walks_extensions() {
        // The quoted packet claimed 1400 bytes of payload; only 24 are here.
        let mut data = v6_header(ip_proto::DSTOPTS, 1400);
        data.extend_from_slice(&[ip_proto::TCP, 0, 1, 4, 0, 0, 0, 0]);
        data.extend_from_slice(&[0x01, 0xbb, 0x9c, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let q = icmp_quoted(IpFamily::V6, &data).unwrap();
        assert_eq!(q.src, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(q.dst, "2001:db8::2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (q.proto, q.src_port, q.dst_port),
            (ip_proto::TCP, 443, 40000)
        );
        assert_eq!(q.l4_offset, 48);
    }

    #[test]
    fn quoted_v6_errors() {
        let data = v6_header(ip_proto::UDP, 8);
        assert_eq!(
            icmp_quoted(IpFamily::V6, &data[..39]),
            Err(Error::Truncated)
        );
        // Extension header cut off by the quote.
        let mut data = v6_header(ip_proto::ROUTING, 1000);
        data.extend_from_slice(&[ip_proto::UDP, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(icmp_quoted(IpFamily::V6, &data), Err(Error::Truncated));
        // Non-first fragment.
        let mut data = v6_header(ip_proto::FRAGMENT, 1000);
        data.extend_from_slice(&[ip_proto::UDP, 0, 0x05, 0xc8, 0, 0, 0, 9]);
        data.extend_from_slice(&[0; 8]);
        assert!(matches!(
            icmp_quoted(IpFamily::V6, &data),
            Err(Error::Unsupported(_))
        ));
        // A v4 packet in an ICMPv6 error.
        let mut data = v6_header(ip_proto::UDP, 8);
        data[0] = 0x45;
        assert!(matches!(
            icmp_quoted(IpFamily::V6, &data),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn quoted_v6_echo() {
        let mut data = v6_header(ip_proto::ICMPV6, 16);
        data.extend_from_slice(&[128, 0, 0, 0, 0xbe, 0xef, 0, 7]);
        let q = icmp_quoted(IpFamily::V6, &data).unwrap();
        assert_eq!(
            (q.proto, q.src_port, q.dst_port),
            (ip_proto::ICMPV6, 0xbeef, 0)
        );
        assert_eq!(IpFamily::of(&q.src), IpFamily::V6);
    }
}
