//! A readable packet builder for tests, golden packets and the packet
//! generator. Not on the hot path: it allocates.
//!
//! ```text
//! PacketBuilder::ethernet(client_mac, director_mac)
//!     .vlan(100)
//!     .ipv4(cip, vip).ttl(64).dont_frag(true)
//!     .tcp(40000, 80).flags(TcpFlags::SYN).seq(1)
//!     .payload(b"GET / HTTP/1.0\r\n\r\n")
//!     .build()
//! ```
//!
//! Rules:
//! * Every length and checksum is computed correctly unless an override says
//!   otherwise. Setters are order-independent (`.seq(1).tcp(..)` works) and
//!   settings that do not apply to the chosen layers are ignored.
//! * [`PacketBuilder::new`] builds from layer 3 (no Ethernet header): use it for
//!   packets to quote in ICMP errors or to wrap in IP-in-IP.
//! * Raw escapes for malformed-packet tests ([`ipv4_ihl`](PacketBuilder::ipv4_ihl),
//!   [`ipv4_total_len`](PacketBuilder::ipv4_total_len),
//!   [`ipv6_payload_len`](PacketBuilder::ipv6_payload_len),
//!   [`udp_len`](PacketBuilder::udp_len),
//!   [`l4_checksum`](PacketBuilder::l4_checksum),
//!   [`ipv4_checksum`](PacketBuilder::ipv4_checksum),
//!   [`pad_to`](PacketBuilder::pad_to), [`truncate`](PacketBuilder::truncate))
//!   are applied after the packet is built, in that order; after the IPv4
//!   overrides the IPv4 header checksum is recomputed (over the bytes the new
//!   IHL names, as far as they exist) unless `ipv4_checksum` is given.
//!   Transport checksums are always computed before any override.
//! * Defaults: TTL / hop limit 64 (255 for NDP), DF clear, identification 0,
//!   TCP flags SYN (as Scapy), window 65535, sequence and acknowledgment 0.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    checksum, ethertype, icmpv4, icmpv6, ip_proto, ArpOperation, ArpPacket, ArpRepr,
    EthernetAddress, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpFamily, Ipv4Packet,
    Ipv4Repr, Ipv6Packet, Ipv6Repr, NdpFlags, NdpRepr, TcpFlags, TcpPacket, TcpRepr, UdpPacket,
    UdpRepr,
};

/// Most bytes of the offending packet an ICMPv4 error quotes: the error must
/// fit in 576 bytes (RFC 1812 §4.3.2.3; what Linux does): 576 - 20 - 8.
pub const ICMPV4_QUOTE_MAX: usize = 548;
/// Most bytes of the offending packet an ICMPv6 error quotes: the error must
/// fit in the minimum MTU (RFC 4443 §2.4(c)): 1280 - 40 - 8.
pub const ICMPV6_QUOTE_MAX: usize = 1232;

#[derive(Debug, Clone, PartialEq, Eq)]
enum L3 {
    None,
    Ipv4 { src: Ipv4Addr, dst: Ipv4Addr },
    Ipv6 { src: Ipv6Addr, dst: Ipv6Addr },
    Arp(ArpRepr),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum L4 {
    None,
    Raw(u8),
    Tcp {
        src_port: u16,
        dst_port: u16,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    IcmpEcho {
        family: Option<IpFamily>,
        request: bool,
        ident: u16,
        seq_no: u16,
    },
    Icmp {
        family: IpFamily,
        msg_type: u8,
        msg_code: u8,
    },
    Ndp(NdpRepr),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Overrides {
    ipv4_ihl: Option<u8>,
    ipv4_total_len: Option<u16>,
    ipv4_checksum: Option<u16>,
    ipv6_payload_len: Option<u16>,
    udp_len: Option<u16>,
    l4_checksum: Option<u16>,
    pad_to: Option<usize>,
    truncate: Option<usize>,
}

/// Builds a packet layer by layer; [`build`](Self::build) returns the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketBuilder {
    link: Option<(EthernetAddress, EthernetAddress)>,
    vlan: Option<u16>,
    ethertype: Option<u16>,
    l3: L3,
    ttl: Option<u8>,
    dscp_ecn: u8,
    flow_label: u32,
    ident: u16,
    dont_frag: bool,
    ipv4_frag: (u16, bool),
    ipv4_options: Vec<u8>,
    ipv6_exts: Vec<(u8, Vec<u8>, bool)>,
    next_header: Option<u8>,
    l4: L4,
    tcp_flags: TcpFlags,
    seq: u32,
    ack: u32,
    window: u16,
    tcp_options: Vec<u8>,
    icmp_rest: Option<u32>,
    payload: Vec<u8>,
    overrides: Overrides,
}

impl Default for PacketBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBuilder {
    /// A packet without an Ethernet header (starts at layer 3).
    pub fn new() -> Self {
        PacketBuilder {
            link: None,
            vlan: None,
            ethertype: None,
            l3: L3::None,
            ttl: None,
            dscp_ecn: 0,
            flow_label: 0,
            ident: 0,
            dont_frag: false,
            ipv4_frag: (0, false),
            ipv4_options: Vec::new(),
            ipv6_exts: Vec::new(),
            next_header: None,
            l4: L4::None,
            tcp_flags: TcpFlags::SYN,
            seq: 0,
            ack: 0,
            window: 65535,
            tcp_options: Vec::new(),
            icmp_rest: None,
            payload: Vec::new(),
            overrides: Overrides::default(),
        }
    }

    /// An Ethernet II frame from `src` to `dst`.
    pub fn ethernet(src: EthernetAddress, dst: EthernetAddress) -> Self {
        PacketBuilder {
            link: Some((src, dst)),
            ..Self::new()
        }
    }

    // ----- layer 2 -----

    /// Adds one 802.1Q tag with this TCI.
    pub fn vlan(mut self, tci: u16) -> Self {
        self.vlan = Some(tci);
        self
    }

    /// Overrides the (inner) EtherType.
    pub fn ethertype(mut self, value: u16) -> Self {
        self.ethertype = Some(value);
        self
    }

    // ----- layer 3 -----

    /// IPv4 from `src` to `dst`.
    pub fn ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        self.l3 = L3::Ipv4 { src, dst };
        self
    }

    /// IPv6 from `src` to `dst`.
    pub fn ipv6(mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        self.l3 = L3::Ipv6 { src, dst };
        self
    }

    /// IPv4 if both addresses are IPv4, else IPv6 (an IPv4 address mixed with
    /// an IPv6 one is used in its IPv4-mapped form).
    pub fn ip_auto(self, src: IpAddr, dst: IpAddr) -> Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.ipv4(s, d),
            (s, d) => self.ipv6(to_v6(s), to_v6(d)),
        }
    }

    /// An ARP packet given in full.
    pub fn arp(mut self, repr: ArpRepr) -> Self {
        self.l3 = L3::Arp(repr);
        self
    }

    /// ARP request: who has `target_ip`? tell `sender_ip` at `sender_mac`.
    pub fn arp_request(
        self,
        sender_mac: EthernetAddress,
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    ) -> Self {
        self.arp(ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: sender_mac,
            source_protocol_addr: sender_ip,
            target_hardware_addr: EthernetAddress::ZERO,
            target_protocol_addr: target_ip,
        })
    }

    /// ARP reply: `sender_ip` is at `sender_mac`, to `target_ip` at
    /// `target_mac`.
    pub fn arp_reply(
        self,
        sender_mac: EthernetAddress,
        sender_ip: Ipv4Addr,
        target_mac: EthernetAddress,
        target_ip: Ipv4Addr,
    ) -> Self {
        self.arp(ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: sender_mac,
            source_protocol_addr: sender_ip,
            target_hardware_addr: target_mac,
            target_protocol_addr: target_ip,
        })
    }

    /// Raw layer-3 bytes after the link header (no layer 4 is added). The
    /// EtherType is guessed from the version nibble unless set.
    pub fn raw_l3(mut self, bytes: &[u8]) -> Self {
        self.l3 = L3::Raw(bytes.to_vec());
        self
    }

    /// TTL (IPv4) or hop limit (IPv6).
    pub fn ttl(mut self, value: u8) -> Self {
        self.ttl = Some(value);
        self
    }

    /// Alias of [`ttl`](Self::ttl).
    pub fn hop_limit(self, value: u8) -> Self {
        self.ttl(value)
    }

    /// IPv4 DSCP/ECN byte or IPv6 traffic class.
    pub fn dscp_ecn(mut self, value: u8) -> Self {
        self.dscp_ecn = value;
        self
    }

    /// IPv6 flow label.
    pub fn flow_label(mut self, value: u32) -> Self {
        self.flow_label = value;
        self
    }

    /// IPv4 identification.
    pub fn ident(mut self, value: u16) -> Self {
        self.ident = value;
        self
    }

    /// IPv4 don't-fragment flag.
    pub fn dont_frag(mut self, value: bool) -> Self {
        self.dont_frag = value;
        self
    }

    /// Makes the IPv4 packet a fragment: offset in bytes (a multiple of 8) and
    /// the more-fragments flag. The layer-4 bytes are still built as if whole.
    pub fn ipv4_fragment(mut self, offset: u16, more_frags: bool) -> Self {
        self.ipv4_frag = (offset, more_frags);
        self
    }

    /// IPv4 options (zero-padded to a multiple of 4, at most 40 bytes kept).
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = options.to_vec();
        self
    }

    /// Appends an IPv6 extension header of type `kind` (HOPOPT, ROUTING,
    /// DSTOPTS, AH, FRAGMENT): `body` is what follows the next-header and
    /// length bytes; it is zero-padded to the header's unit and the length
    /// byte is computed (for FRAGMENT `body` is the 6 bytes of offset/flags and
    /// identification).
    pub fn ipv6_ext(mut self, kind: u8, body: &[u8]) -> Self {
        self.ipv6_exts.push((kind, body.to_vec(), false));
        self
    }

    /// Appends an IPv6 fragment header (offset in bytes).
    pub fn ipv6_fragment(self, offset: u16, more_frags: bool, ident: u32) -> Self {
        let mut body = (offset & 0xfff8 | u16::from(more_frags))
            .to_be_bytes()
            .to_vec();
        body.extend_from_slice(&ident.to_be_bytes());
        self.ipv6_ext(ip_proto::FRAGMENT, &body)
    }

    /// Appends raw IPv6 extension-header bytes of type `kind` as given; only
    /// the first byte (next header) is filled in. For malformed chains.
    pub fn ipv6_ext_raw(mut self, kind: u8, bytes: &[u8]) -> Self {
        self.ipv6_exts.push((kind, bytes.to_vec(), true));
        self
    }

    /// The IP protocol / next header when no layer 4 is chosen (default
    /// NONE = 59).
    pub fn next_header(mut self, proto: u8) -> Self {
        self.next_header = Some(proto);
        self
    }

    // ----- layer 4 -----

    /// TCP from `src_port` to `dst_port`.
    pub fn tcp(mut self, src_port: u16, dst_port: u16) -> Self {
        self.l4 = L4::Tcp { src_port, dst_port };
        self
    }

    /// TCP flags (default SYN).
    pub fn flags(mut self, flags: TcpFlags) -> Self {
        self.tcp_flags = flags;
        self
    }

    /// TCP sequence number.
    pub fn seq(mut self, value: u32) -> Self {
        self.seq = value;
        self
    }

    /// TCP acknowledgment number.
    pub fn ack(mut self, value: u32) -> Self {
        self.ack = value;
        self
    }

    /// TCP window.
    pub fn window(mut self, value: u16) -> Self {
        self.window = value;
        self
    }

    /// Raw TCP option bytes (zero-padded to a multiple of 4).
    pub fn tcp_options(mut self, options: &[u8]) -> Self {
        self.tcp_options = options.to_vec();
        self
    }

    /// Appends a TCP MSS option.
    pub fn mss(mut self, mss: u16) -> Self {
        self.tcp_options.extend_from_slice(&[2, 4]);
        self.tcp_options.extend_from_slice(&mss.to_be_bytes());
        self
    }

    /// UDP from `src_port` to `dst_port`.
    pub fn udp(mut self, src_port: u16, dst_port: u16) -> Self {
        self.l4 = L4::Udp { src_port, dst_port };
        self
    }

    /// Raw layer-4 bytes (the payload) under IP protocol `proto`.
    pub fn raw_l4(mut self, proto: u8, bytes: &[u8]) -> Self {
        self.l4 = L4::Raw(proto);
        self.payload = bytes.to_vec();
        self
    }

    fn echo(mut self, family: Option<IpFamily>, request: bool, ident: u16, seq_no: u16) -> Self {
        self.l4 = L4::IcmpEcho {
            family,
            request,
            ident,
            seq_no,
        };
        self
    }

    /// ICMPv4 echo request (data from [`payload`](Self::payload)).
    pub fn icmpv4_echo_request(self, ident: u16, seq_no: u16) -> Self {
        self.echo(Some(IpFamily::V4), true, ident, seq_no)
    }

    /// ICMPv4 echo reply.
    pub fn icmpv4_echo_reply(self, ident: u16, seq_no: u16) -> Self {
        self.echo(Some(IpFamily::V4), false, ident, seq_no)
    }

    /// ICMPv6 echo request.
    pub fn icmpv6_echo_request(self, ident: u16, seq_no: u16) -> Self {
        self.echo(Some(IpFamily::V6), true, ident, seq_no)
    }

    /// ICMPv6 echo reply.
    pub fn icmpv6_echo_reply(self, ident: u16, seq_no: u16) -> Self {
        self.echo(Some(IpFamily::V6), false, ident, seq_no)
    }

    /// Echo request of the IP layer's family.
    pub fn icmp_echo_request(self, ident: u16, seq_no: u16) -> Self {
        self.echo(None, true, ident, seq_no)
    }

    /// Echo reply of the IP layer's family.
    pub fn icmp_echo_reply(self, ident: u16, seq_no: u16) -> Self {
        self.echo(None, false, ident, seq_no)
    }

    /// Any ICMPv4 message; data from [`payload`](Self::payload), bytes 4..8 from
    /// [`rest_of_header`](Self::rest_of_header).
    pub fn icmpv4(mut self, msg_type: u8, msg_code: u8) -> Self {
        self.l4 = L4::Icmp {
            family: IpFamily::V4,
            msg_type,
            msg_code,
        };
        self
    }

    /// Any ICMPv6 message.
    pub fn icmpv6(mut self, msg_type: u8, msg_code: u8) -> Self {
        self.l4 = L4::Icmp {
            family: IpFamily::V6,
            msg_type,
            msg_code,
        };
        self
    }

    /// An ICMPv4 error quoting `quoted` (an IP packet, from its IP header),
    /// cut to [`ICMPV4_QUOTE_MAX`] bytes.
    pub fn icmpv4_error(mut self, msg_type: u8, msg_code: u8, quoted: &[u8]) -> Self {
        self.payload = quoted[..quoted.len().min(ICMPV4_QUOTE_MAX)].to_vec();
        self.icmpv4(msg_type, msg_code)
    }

    /// An ICMPv6 error quoting `quoted`, cut to [`ICMPV6_QUOTE_MAX`] bytes.
    pub fn icmpv6_error(mut self, msg_type: u8, msg_code: u8, quoted: &[u8]) -> Self {
        self.payload = quoted[..quoted.len().min(ICMPV6_QUOTE_MAX)].to_vec();
        self.icmpv6(msg_type, msg_code)
    }

    /// ICMP bytes 4..8 (pointer, gateway, ...).
    pub fn rest_of_header(mut self, value: u32) -> Self {
        self.icmp_rest = Some(value);
        self
    }

    /// Next-hop MTU of an ICMPv4 fragmentation-needed error.
    pub fn next_hop_mtu(self, mtu: u16) -> Self {
        self.rest_of_header(u32::from(mtu))
    }

    /// MTU of an ICMPv6 packet-too-big error.
    pub fn icmpv6_mtu(self, mtu: u32) -> Self {
        self.rest_of_header(mtu)
    }

    /// Neighbor solicitation for `target` (use an IPv6 layer to the
    /// solicited-node address, see [`icmpv6::solicited_node`]).
    pub fn ndp_solicit(mut self, target: Ipv6Addr, source_lladdr: Option<EthernetAddress>) -> Self {
        self.l4 = L4::Ndp(NdpRepr::NeighborSolicit {
            target,
            source_lladdr,
        });
        self
    }

    /// Neighbor advertisement for `target`.
    pub fn ndp_advert(
        mut self,
        flags: NdpFlags,
        target: Ipv6Addr,
        target_lladdr: Option<EthernetAddress>,
    ) -> Self {
        self.l4 = L4::Ndp(NdpRepr::NeighborAdvert {
            flags,
            target,
            target_lladdr,
        });
        self
    }

    /// Transport payload (TCP/UDP data, ICMP data).
    pub fn payload(mut self, bytes: &[u8]) -> Self {
        self.payload = bytes.to_vec();
        self
    }

    /// A payload of `len` bytes counting up from 0 (mod 256).
    pub fn payload_fill(mut self, len: usize) -> Self {
        self.payload = (0..len).map(|i| i as u8).collect();
        self
    }

    // ----- overrides applied after building -----

    /// Writes this IHL nibble (words, 0..=15) into the built IPv4 header.
    pub fn ipv4_ihl(mut self, ihl: u8) -> Self {
        self.overrides.ipv4_ihl = Some(ihl);
        self
    }

    /// Writes this total length into the built IPv4 header.
    pub fn ipv4_total_len(mut self, len: u16) -> Self {
        self.overrides.ipv4_total_len = Some(len);
        self
    }

    /// Writes this header checksum into the built IPv4 header (last).
    pub fn ipv4_checksum(mut self, value: u16) -> Self {
        self.overrides.ipv4_checksum = Some(value);
        self
    }

    /// Writes this payload length into the built IPv6 header.
    pub fn ipv6_payload_len(mut self, len: u16) -> Self {
        self.overrides.ipv6_payload_len = Some(len);
        self
    }

    /// Writes this length into the built UDP header (checksum not redone).
    pub fn udp_len(mut self, len: u16) -> Self {
        self.overrides.udp_len = Some(len);
        self
    }

    /// Writes this value into the built TCP/UDP/ICMP checksum field.
    pub fn l4_checksum(mut self, value: u16) -> Self {
        self.overrides.l4_checksum = Some(value);
        self
    }

    /// Appends zero bytes until the frame is `len` bytes long (e.g. 60 for the
    /// Ethernet minimum without FCS).
    pub fn pad_to(mut self, len: usize) -> Self {
        self.overrides.pad_to = Some(len);
        self
    }

    /// Cuts the finished frame to `len` bytes.
    pub fn truncate(mut self, len: usize) -> Self {
        self.overrides.truncate = Some(len);
        self
    }

    // ----- building -----

    fn addrs(&self) -> Option<(IpAddr, IpAddr)> {
        match self.l3 {
            L3::Ipv4 { src, dst } => Some((src.into(), dst.into())),
            L3::Ipv6 { src, dst } => Some((src.into(), dst.into())),
            _ => None,
        }
    }

    fn family(&self) -> IpFamily {
        match self.l3 {
            L3::Ipv6 { .. } => IpFamily::V6,
            _ => IpFamily::V4,
        }
    }

    /// The layer-4 bytes, their protocol, and where their checksum sits.
    fn build_l4(&self) -> (u8, Vec<u8>, Option<usize>) {
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let (src, dst) = self.addrs().unwrap_or((unspecified, unspecified));
        let (src6, dst6) = (to_v6(src), to_v6(dst));
        match self.l4 {
            L4::None => (
                self.next_header.unwrap_or(ip_proto::NONE),
                self.payload.clone(),
                None,
            ),
            L4::Raw(proto) => (proto, self.payload.clone(), None),
            L4::Tcp { src_port, dst_port } => {
                let repr = TcpRepr {
                    src_port,
                    dst_port,
                    seq_number: self.seq,
                    ack_number: self.ack,
                    flags: self.tcp_flags,
                    window_len: self.window,
                    options: &self.tcp_options,
                    payload: &self.payload,
                };
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), &src, &dst);
                (ip_proto::TCP, buf, Some(16))
            }
            L4::Udp { src_port, dst_port } => {
                let repr = UdpRepr {
                    src_port,
                    dst_port,
                    payload: &self.payload,
                };
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), &src, &dst);
                (ip_proto::UDP, buf, Some(6))
            }
            L4::IcmpEcho {
                family,
                request,
                ident,
                seq_no,
            } => {
                let rest = (u32::from(ident) << 16) | u32::from(seq_no);
                let msg_type = match (family.unwrap_or(self.family()), request) {
                    (IpFamily::V4, true) => icmpv4::ECHO_REQUEST,
                    (IpFamily::V4, false) => icmpv4::ECHO_REPLY,
                    (IpFamily::V6, true) => icmpv6::ECHO_REQUEST,
                    (IpFamily::V6, false) => icmpv6::ECHO_REPLY,
                };
                let family = family.unwrap_or(self.family());
                self.build_icmp(family, msg_type, 0, rest, &src6, &dst6)
            }
            L4::Icmp {
                family,
                msg_type,
                msg_code,
            } => {
                let rest = self.icmp_rest.unwrap_or(0);
                self.build_icmp(family, msg_type, msg_code, rest, &src6, &dst6)
            }
            L4::Ndp(repr) => {
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &src6, &dst6);
                (ip_proto::ICMPV6, buf, Some(2))
            }
        }
    }

    fn build_icmp(
        &self,
        family: IpFamily,
        msg_type: u8,
        msg_code: u8,
        rest: u32,
        src6: &Ipv6Addr,
        dst6: &Ipv6Addr,
    ) -> (u8, Vec<u8>, Option<usize>) {
        match family {
            IpFamily::V4 => {
                let repr = Icmpv4Repr {
                    msg_type,
                    msg_code,
                    rest_of_header: rest,
                    data: &self.payload,
                };
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
                (ip_proto::ICMP, buf, Some(2))
            }
            IpFamily::V6 => {
                let repr = Icmpv6Repr {
                    msg_type,
                    msg_code,
                    rest_of_header: rest,
                    data: &self.payload,
                };
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), src6, dst6);
                (ip_proto::ICMPV6, buf, Some(2))
            }
        }
    }

    /// Serializes the IPv6 extension headers chained in front of `upper`.
    fn build_ipv6_exts(&self, upper: u8) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        let first = self.ipv6_exts.first().map_or(upper, |e| e.0);
        for (i, (kind, body, raw)) in self.ipv6_exts.iter().enumerate() {
            let next = self.ipv6_exts.get(i + 1).map_or(upper, |e| e.0);
            if *raw {
                let mut bytes = body.clone();
                if let Some(b) = bytes.first_mut() {
                    *b = next;
                }
                out.extend_from_slice(&bytes);
                continue;
            }
            let start = out.len();
            match *kind {
                ip_proto::FRAGMENT => {
                    out.extend_from_slice(&[next, 0]);
                    let mut b = body.clone();
                    b.resize(6, 0);
                    out.extend_from_slice(&b);
                }
                ip_proto::AH => {
                    let len = (2 + body.len()).div_ceil(8).max(2) * 8;
                    out.extend_from_slice(&[next, (len / 4 - 2) as u8]);
                    out.extend_from_slice(body);
                    out.resize(start + len, 0);
                }
                _ => {
                    let len = (2 + body.len()).div_ceil(8) * 8;
                    out.extend_from_slice(&[next, (len / 8 - 1) as u8]);
                    out.extend_from_slice(body);
                    out.resize(start + len, 0);
                }
            }
        }
        (first, out)
    }

    /// The layer-3 bytes and the offset of the layer-4 checksum within them.
    fn build_l3(&self) -> (Vec<u8>, Option<usize>) {
        match &self.l3 {
            L3::None => {
                let (_, l4, csum_at) = self.build_l4();
                (l4, csum_at)
            }
            L3::Raw(bytes) => (bytes.clone(), None),
            L3::Arp(repr) => {
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
                (buf, None)
            }
            L3::Ipv4 { src, dst } => {
                let (proto, l4, csum_at) = self.build_l4();
                let mut options = self.ipv4_options.clone();
                options.truncate(40);
                options.resize(options.len().div_ceil(4) * 4, 0);
                let header_len = 20 + options.len();
                let repr = Ipv4Repr {
                    src_addr: *src,
                    dst_addr: *dst,
                    next_header: proto,
                    payload_len: header_len - 20 + l4.len(),
                    ttl: self.ttl.unwrap_or(64),
                    dscp_ecn: self.dscp_ecn,
                    ident: self.ident,
                    dont_frag: self.dont_frag,
                };
                let mut buf = vec![0; header_len + l4.len()];
                let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
                repr.emit(&mut packet);
                packet.set_header_len(header_len);
                packet.set_frag_offset(self.ipv4_frag.0);
                packet.set_more_frags(self.ipv4_frag.1);
                packet.options_mut().copy_from_slice(&options);
                packet.fill_checksum();
                buf[header_len..].copy_from_slice(&l4);
                (buf, csum_at.map(|at| header_len + at))
            }
            L3::Ipv6 { src, dst } => {
                let (proto, l4, csum_at) = self.build_l4();
                let (first, exts) = self.build_ipv6_exts(proto);
                let default_hops = if matches!(self.l4, L4::Ndp(_)) {
                    255
                } else {
                    64
                };
                let repr = Ipv6Repr {
                    src_addr: *src,
                    dst_addr: *dst,
                    next_header: first,
                    payload_len: exts.len() + l4.len(),
                    hop_limit: self.ttl.unwrap_or(default_hops),
                    traffic_class: self.dscp_ecn,
                    flow_label: self.flow_label,
                };
                let mut buf = vec![0; 40];
                repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
                buf.extend_from_slice(&exts);
                let l4_start = buf.len();
                buf.extend_from_slice(&l4);
                (buf, csum_at.map(|at| l4_start + at))
            }
        }
    }

    fn l2_ethertype(&self) -> u16 {
        if let Some(value) = self.ethertype {
            return value;
        }
        match &self.l3 {
            L3::Ipv6 { .. } => ethertype::IPV6,
            L3::Arp(_) => ethertype::ARP,
            L3::Raw(bytes) if bytes.first().is_some_and(|b| b >> 4 == 6) => ethertype::IPV6,
            _ => ethertype::IPV4,
        }
    }

    /// Builds the packet.
    pub fn build(&self) -> Vec<u8> {
        let mut frame = Vec::new();
        if let Some((src, dst)) = self.link {
            frame.extend_from_slice(&dst.0);
            frame.extend_from_slice(&src.0);
            if let Some(tci) = self.vlan {
                frame.extend_from_slice(&ethertype::VLAN.to_be_bytes());
                frame.extend_from_slice(&tci.to_be_bytes());
            }
            frame.extend_from_slice(&self.l2_ethertype().to_be_bytes());
        }
        let l3_start = frame.len();
        let (l3, csum_at) = self.build_l3();
        frame.extend_from_slice(&l3);
        self.apply_overrides(&mut frame, l3_start, csum_at.map(|at| l3_start + at));
        frame
    }

    fn apply_overrides(&self, frame: &mut Vec<u8>, l3_start: usize, csum_at: Option<usize>) {
        let o = &self.overrides;
        if matches!(self.l3, L3::Ipv4 { .. }) {
            let l3 = &mut frame[l3_start..];
            if o.ipv4_ihl.is_some() || o.ipv4_total_len.is_some() || o.ipv4_checksum.is_some() {
                if let Some(ihl) = o.ipv4_ihl {
                    l3[0] = 0x40 | (ihl & 0x0f);
                }
                if let Some(len) = o.ipv4_total_len {
                    l3[2..4].copy_from_slice(&len.to_be_bytes());
                }
                let csum = o.ipv4_checksum.unwrap_or_else(|| {
                    l3[10..12].copy_from_slice(&[0, 0]);
                    let header_len = (usize::from(l3[0] & 0x0f) * 4).min(l3.len());
                    checksum::checksum(&l3[..header_len])
                });
                l3[10..12].copy_from_slice(&csum.to_be_bytes());
            }
        }
        if let (Some(len), L3::Ipv6 { .. }) = (o.ipv6_payload_len, &self.l3) {
            frame[l3_start + 4..l3_start + 6].copy_from_slice(&len.to_be_bytes());
        }
        if let (Some(len), L4::Udp { .. }, Some(at)) = (o.udp_len, &self.l4, csum_at) {
            frame[at - 2..at].copy_from_slice(&len.to_be_bytes());
        }
        if let (Some(value), Some(at)) = (o.l4_checksum, csum_at) {
            frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
        }
        if let Some(len) = o.pad_to {
            if frame.len() < len {
                frame.resize(len, 0);
            }
        }
        if let Some(len) = o.truncate {
            frame.truncate(len);
        }
    }
}

fn to_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        icmp_quoted, icmpv6::solicited_node, ipv6_upper_layer, parse_l2, Error, EthernetFrame,
    };

    const CMAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0c]);
    const DMAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0d]);

    fn cip() -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, 10)
    }
    fn vip() -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, 1)
    }

    #[test]
    fn tcp_syn_over_vlan_parses_back() {
        let frame = PacketBuilder::ethernet(CMAC, DMAC)
            .vlan(100)
            .ipv4(cip(), vip())
            .ttl(63)
            .dont_frag(true)
            .tcp(40000, 80)
            .flags(TcpFlags::SYN)
            .seq(1)
            .mss(1460)
            .payload(b"hi")
            .build();
        let l2 = parse_l2(&frame).unwrap();
        assert_eq!(
            (l2.src, l2.dst, l2.vlan, l2.l3_offset),
            (CMAC, DMAC, Some(100), 18)
        );
        let ip = Ipv4Packet::new_checked(&frame[18..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.ttl(), ip.dont_frag(), ip.next_header()),
            (63, true, ip_proto::TCP)
        );
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&cip().into(), &vip().into()));
        assert_eq!(
            (tcp.src_port(), tcp.dst_port(), tcp.seq_number()),
            (40000, 80, 1)
        );
        assert_eq!(tcp.flags(), TcpFlags::SYN);
        assert_eq!(tcp.mss(), Some(1460));
        assert_eq!(tcp.payload(), b"hi");
    }

    #[test]
    fn ipv6_udp_with_extension_headers() {
        let (s, d): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let pkt = PacketBuilder::new()
            .ipv6(s, d)
            .ipv6_ext(ip_proto::HOPOPT, &[])
            .ipv6_ext(ip_proto::DSTOPTS, &[1, 8, 0, 0, 0, 0, 0, 0, 0, 0])
            .ipv6_fragment(0, true, 42)
            .udp(1, 2)
            .payload(b"data")
            .build();
        let up = ipv6_upper_layer(&pkt).unwrap();
        assert_eq!(up.proto, ip_proto::UDP);
        assert_eq!(up.offset, 40 + 8 + 16 + 8);
        assert_eq!(
            up.fragment.map(|f| (f.offset, f.more, f.ident)),
            Some((0, true, 42))
        );
        let udp = UdpPacket::new_checked(&pkt[up.offset..]).unwrap();
        assert!(udp.verify_checksum(&s.into(), &d.into()));
        assert_eq!(udp.payload(), b"data");
    }

    #[test]
    fn icmp_error_quotes_the_offending_packet() {
        let inner = PacketBuilder::new()
            .ipv4(vip(), cip())
            .udp(53, 5353)
            .payload_fill(1000)
            .build();
        let err = PacketBuilder::new()
            .ipv4(Ipv4Addr::new(10, 9, 9, 9), vip())
            .icmpv4_error(icmpv4::DEST_UNREACHABLE, icmpv4::FRAG_NEEDED, &inner)
            .next_hop_mtu(1400)
            .build();
        assert_eq!(err.len(), 576);
        let ip = Ipv4Packet::new_checked(&err[..]).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum() && icmp.is_error());
        assert_eq!(icmp.next_hop_mtu(), 1400);
        let q = icmp_quoted(IpFamily::V4, icmp.data()).unwrap();
        assert_eq!(
            (q.src, q.dst, q.src_port, q.dst_port),
            (vip().into(), cip().into(), 53, 5353)
        );
    }

    #[test]
    fn icmpv6_error_and_echo_auto_family() {
        let (s, d): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let echo = PacketBuilder::new()
            .ip_auto(s, d)
            .icmp_echo_request(7, 1)
            .build();
        let ip = Ipv6Packet::new_checked(&echo[..]).unwrap();
        assert_eq!(ip.next_header(), ip_proto::ICMPV6);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.echo_ident()),
            (icmpv6::ECHO_REQUEST, 7)
        );
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));

        let big = PacketBuilder::new()
            .ip_auto(d, s)
            .udp(1, 2)
            .payload_fill(2000)
            .build();
        let err = PacketBuilder::new()
            .ip_auto(d, s)
            .icmpv6_error(icmpv6::PACKET_TOO_BIG, 0, &big)
            .icmpv6_mtu(1280)
            .build();
        assert_eq!(err.len(), 1280);
        let ip = Ipv6Packet::new_checked(&err[..]).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.mtu(), 1280);
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        let q = icmp_quoted(IpFamily::V6, icmp.data()).unwrap();
        assert_eq!((q.src_port, q.dst_port), (1, 2));

        let v4 = PacketBuilder::new()
            .ip_auto(cip().into(), vip().into())
            .icmp_echo_reply(1, 2)
            .build();
        assert_eq!(
            Ipv4Packet::new_checked(&v4[..]).unwrap().payload()[0],
            icmpv4::ECHO_REPLY
        );
    }

    #[test]
    fn arp_and_ndp() {
        let frame = PacketBuilder::ethernet(CMAC, EthernetAddress::BROADCAST)
            .arp_request(CMAC, cip(), vip())
            .pad_to(60)
            .build();
        assert_eq!(frame.len(), 60);
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.ethertype(), ethertype::ARP);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        assert_eq!(arp.operation, ArpOperation::Request);
        assert_eq!(arp.target_protocol_addr, vip());

        let src: Ipv6Addr = "fe80::c".parse().unwrap();
        let target: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let ns = PacketBuilder::ethernet(
            CMAC,
            EthernetAddress::from_ipv6_multicast(&solicited_node(&target)),
        )
        .ipv6(src, solicited_node(&target))
        .ndp_solicit(target, Some(CMAC))
        .build();
        let ip = Ipv6Packet::new_checked(&ns[14..]).unwrap();
        assert_eq!(ip.hop_limit(), 255);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        assert_eq!(
            NdpRepr::parse(&icmp),
            Ok(NdpRepr::NeighborSolicit {
                target,
                source_lladdr: Some(CMAC)
            })
        );
    }

    #[test]
    fn overrides_make_malformed_packets() {
        let base = PacketBuilder::new()
            .ipv4(cip(), vip())
            .udp(1, 2)
            .payload(b"abcd");
        let good = base.clone().build();
        assert_eq!(good.len(), 32);

        let bad_ihl = base.clone().ipv4_ihl(4).build();
        assert!(matches!(
            Ipv4Packet::new_checked(&bad_ihl[..]),
            Err(Error::Malformed(_))
        ));

        let long_total = base.clone().ipv4_total_len(100).build();
        assert_eq!(
            Ipv4Packet::new_checked(&long_total[..]).unwrap_err(),
            Error::Truncated
        );
        assert!(Ipv4Packet::new_unchecked(&long_total[..]).verify_checksum());

        let bad_csum = base.clone().ipv4_checksum(0x1234).build();
        assert!(!Ipv4Packet::new_checked(&bad_csum[..])
            .unwrap()
            .verify_checksum());

        let bad_l4 = base.clone().l4_checksum(0).build();
        let ip = Ipv4Packet::new_checked(&bad_l4[..]).unwrap();
        assert_eq!(UdpPacket::new_checked(ip.payload()).unwrap().checksum(), 0);

        let bad_udp_len = base.clone().udp_len(7).build();
        let ip = Ipv4Packet::new_checked(&bad_udp_len[..]).unwrap();
        assert!(matches!(
            UdpPacket::new_checked(ip.payload()),
            Err(Error::Malformed(_))
        ));

        let cut = base.clone().truncate(25).build();
        assert_eq!(cut.len(), 25);
        assert_eq!(&cut[..], &good[..25]);

        let raw = PacketBuilder::ethernet(CMAC, DMAC)
            .raw_l3(&[0x60, 1, 2])
            .build();
        assert_eq!(raw.len(), 17);
        assert_eq!(parse_l2(&raw).unwrap().ethertype, ethertype::IPV6);
    }

    #[test]
    fn ipv4_options_and_fragments() {
        let pkt = PacketBuilder::new()
            .ipv4(cip(), vip())
            .ipv4_options(&[0x94, 0x04, 0, 0, 1])
            .ipv4_fragment(1480, true)
            .ident(99)
            .raw_l4(ip_proto::UDP, &[0; 16])
            .build();
        let ip = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        assert_eq!(ip.header_len(), 28);
        assert_eq!(ip.options(), &[0x94, 0x04, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            (ip.frag_offset(), ip.more_frags(), ip.ident()),
            (1480, true, 99)
        );
        assert!(ip.verify_checksum());
        assert_eq!(ip.payload().len(), 16);
    }
}
