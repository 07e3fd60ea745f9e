//! Packet views: Ethernet, 802.1Q VLAN, ARP, IPv4, IPv6 (with its extension
//! header chain), TCP, UDP, ICMPv4, ICMPv6/NDP, IP-in-IP encapsulation, VRRP
//! adverts (v2 and v3), and the
//! Internet checksum (RFC 1071 full, RFC 1624 incremental).
//!
//! Rules of this module (the smoltcp manner):
//!
//! * Every protocol is a zero-copy view `XPacket<T: AsRef<[u8]>> { buffer: T }`
//!   whose field byte ranges are declared once in a private `mod field`.
//!   `new_unchecked` wraps any buffer; `new_checked` validates every length the
//!   header declares so that afterwards **no getter, `payload()` or
//!   `verify_checksum()` can panic**. Setters (on `T: AsMut<[u8]>`) assume the
//!   buffer is long enough for the field they write (an emitter sizes its buffer
//!   first); they are never called on untrusted lengths.
//! * `XRepr` structs are the parsed, owned-or-borrowed high-level form:
//!   `parse(&packet) -> Result<XRepr>`, `buffer_len()`, `emit(&self, &mut packet)`.
//!   A `parse` verifies a checksum only when it can without the IP addresses
//!   (IPv4 header, ICMPv4); transport checksums are verified with the packet
//!   view's `verify_checksum(src, dst)`. Emitters that need the pseudo-header
//!   take the addresses and always write a correct checksum.
//! * Header lengths are associated constants usable without a type annotation
//!   (`EthernetFrame::HEADER_LEN`, `Ipv4Packet::MIN_HEADER_LEN`, ...) and also
//!   module constants (`wire::ethernet::HEADER_LEN`, ...).
//! * Bad input yields a precise [`Error`], never a panic. The compiler refuses raw-pointer code
//!   here (the attribute below) and nothing on the per-packet path allocates (only [`builder`] does,
//!   and it is for tests, golden packets and the packet generator).
//! * `wire` depends on nothing else in the crate.

#![deny(unsafe_code)]

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipip;
pub mod ipv4;
pub mod ipv6;
pub mod ipvs_sync;
pub mod quoted;
pub mod tcp;
pub mod udp;
pub mod vrrp;

#[cfg(test)]
mod proptests;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use builder::PacketBuilder;
pub use ethernet::{
    parse_l2, EthernetAddress, EthernetAddressParseError, EthernetFrame, EthernetRepr, L2Info,
    VlanHeader,
};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr, NdpFlags, NdpRepr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{ipv6_upper_layer, Ipv6Frag, Ipv6Packet, Ipv6Repr, Ipv6Upper};
pub use quoted::{icmp_quoted, IpFamily, QuotedPacket};
pub use tcp::{TcpFlags, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};
pub use vrrp::{VrrpAuth, VrrpPacket, VrrpRepr};

/// Why a buffer could not be read as (or written into) a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the fixed header, or than a length the
    /// packet itself declares (header length, total length, option length,
    /// extension header chain).
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the protocol forbids (wrong version, a length
    /// smaller than the header, a zero-length option, ...).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed, but something this director does not handle (non
    /// Ethernet/IPv4 ARP, a quoted non-first fragment, ...).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// More than one VLAN tag (802.1Q in 802.1Q, or an 802.1ad QinQ tag): the
    /// director does not do QinQ.
    #[error("stacked VLAN tags (QinQ) are not supported")]
    UnsupportedVlanStack,
    /// A checksum did not verify (only returned by `XRepr::parse` functions
    /// documented to verify it).
    #[error("bad checksum")]
    Checksum,
}

/// Result of the `wire` functions.
pub type Result<T> = core::result::Result<T, Error>;

/// EtherType values (the 16-bit field after the MAC addresses).
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service tag (QinQ).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ service tag still seen on some switches.
    pub const QINQ_LEGACY: u16 = 0x9100;
}

/// IP protocol numbers / IPv6 next-header values (IANA).
pub mod ip_proto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPT: u8 = 0;
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulated in IP (IP-in-IP).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulated in IP.
    pub const IPV6: u8 = 41;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload.
    pub const ESP: u8 = 50;
    /// Authentication header.
    pub const AH: u8 = 51;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const NONE: u8 = 59;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
    /// VRRP (RFC 3768 / RFC 5798).
    pub const VRRP: u8 = 112;
    /// SCTP (ports at the same place as TCP/UDP).
    pub const SCTP: u8 = 132;
    /// UDP-Lite (ports at the same place as UDP).
    pub const UDPLITE: u8 = 136;
}

/// Reads a big-endian `u16` at `at`. Callers guarantee `at + 2 <= data.len()`.
#[inline]
pub(crate) fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Reads a big-endian `u32` at `at`. Callers guarantee `at + 4 <= data.len()`.
#[inline]
pub(crate) fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Writes a big-endian `u16` at `at`.
#[inline]
pub(crate) fn write_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`.
#[inline]
pub(crate) fn write_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// The names the rest of the crate is written against, spelled the way it
    /// spells them (this test failing to compile is the point).
    #[test]
    fn api_names_are_stable() {
        assert_eq!(EthernetFrame::HEADER_LEN, 14);
        assert_eq!(VlanHeader::HEADER_LEN, 4);
        assert_eq!(ArpPacket::PACKET_LEN, 28);
        assert_eq!(Ipv4Packet::MIN_HEADER_LEN, 20);
        assert_eq!(Ipv6Packet::HEADER_LEN, 40);
        assert_eq!(TcpPacket::MIN_HEADER_LEN, 20);
        assert_eq!(UdpPacket::HEADER_LEN, 8);
        assert_eq!(Icmpv4Packet::HEADER_LEN, 8);
        assert_eq!(Icmpv6Packet::HEADER_LEN, 8);
        assert_eq!(ipip::ENCAP_IPV4_LEN, 20);
        assert_eq!(ipip::ENCAP_IPV6_LEN, 40);
        assert_eq!(
            (
                ethertype::IPV4,
                ethertype::ARP,
                ethertype::IPV6,
                ethertype::VLAN,
                ethertype::QINQ
            ),
            (0x0800, 0x0806, 0x86dd, 0x8100, 0x88a8)
        );
        assert_eq!(
            [
                ip_proto::HOPOPT,
                ip_proto::ICMP,
                ip_proto::IPIP,
                ip_proto::TCP,
                ip_proto::UDP,
                ip_proto::IPV6,
                ip_proto::ROUTING,
                ip_proto::FRAGMENT,
                ip_proto::ESP,
                ip_proto::AH,
                ip_proto::ICMPV6,
                ip_proto::NONE,
                ip_proto::DSTOPTS
            ],
            [0, 1, 4, 6, 17, 41, 43, 44, 50, 51, 58, 59, 60]
        );
        assert_eq!(
            [
                icmpv4::ECHO_REPLY,
                icmpv4::DEST_UNREACHABLE,
                icmpv4::SOURCE_QUENCH,
                icmpv4::REDIRECT,
                icmpv4::ECHO_REQUEST,
                icmpv4::TIME_EXCEEDED,
                icmpv4::PARAM_PROBLEM,
                icmpv4::FRAG_NEEDED,
                icmpv4::PORT_UNREACHABLE,
                icmpv4::HOST_UNREACHABLE
            ],
            [0, 3, 4, 5, 8, 11, 12, 4, 3, 1]
        );
        assert_eq!(
            [
                icmpv6::DST_UNREACHABLE,
                icmpv6::PACKET_TOO_BIG,
                icmpv6::TIME_EXCEEDED,
                icmpv6::PARAM_PROBLEM,
                icmpv6::ECHO_REQUEST,
                icmpv6::ECHO_REPLY,
                icmpv6::NEIGHBOR_SOLICIT,
                icmpv6::NEIGHBOR_ADVERT
            ],
            [1, 2, 3, 4, 128, 129, 135, 136]
        );

        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let mut frame = PacketBuilder::ethernet(
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            EthernetAddress::BROADCAST,
        )
        .ip_auto(src, dst)
        .tcp(1, 2)
        .build();
        let info: L2Info = parse_l2(&frame).unwrap();
        let (l3, _) = (info.l3_offset, info.vlan);
        let mut ip = Ipv4Packet::new_checked(&mut frame[l3..]).unwrap();
        ip.set_ttl(ip.ttl() - 1);
        ip.fill_checksum();
        let mut tcp = TcpPacket::new_checked(ip.payload_mut()).unwrap();
        tcp.set_flags(TcpFlags::SYN | TcpFlags::ACK);
        tcp.fill_checksum(&src, &dst);
        assert!(tcp.verify_checksum(&src, &dst));
        let _: Ipv6Addr = Ipv6Addr::LOCALHOST;
        let _: Result<QuotedPacket> = icmp_quoted(IpFamily::V4, &[]);
        let _: Result<Ipv6Upper> = ipv6_upper_layer(&[]);
        let _: u16 = checksum::update16(0, 0, 0);
    }
}
