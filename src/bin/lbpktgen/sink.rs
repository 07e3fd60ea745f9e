//! The sink: what each polling thread does with a received frame.
//!
//! * [`parse_frame`] reads Ethernet (one 802.1Q tag), ARP, IPv4 (with
//!   options; an IP-in-IP packet is looked into once, as a TUN-mode real
//!   server would see it) or IPv6 without extension headers, then TCP or
//!   UDP. Non-first fragments and anything else are [`Parsed::Other`].
//! * [`Sink::handle`] counts the frame and decides: in stream mode a payload
//!   that carries this run's signature is *matched* (duplicates are caught
//!   by a window of the last [`DUP_WINDOW`] sequence numbers, latency is
//!   recorded), everything else is *foreign*; in handshake mode a TCP
//!   segment from the VIP to one of the client endpoints becomes a
//!   [`Segment`] for the client state machine. ARP requests for the
//!   generator's source addresses are handed back so the thread can answer
//!   them ([`write_arp_reply`]).
//!
//! Rules: no allocation after [`Sink::new`]; one sink per polling thread,
//! merged into per-port totals at the end ([`SinkReport::merge`]).

use std::net::{IpAddr, Ipv4Addr};

use rvs::wire::{
    ethertype, ip_proto, parse_l2, ArpOperation, ArpPacket, ArpRepr, EthernetAddress, Ipv4Packet,
    Ipv6Packet, TcpPacket, UdpPacket,
};
use serde::Serialize;

use crate::frame::FlowSpace;
use crate::histogram::LatencyHistogram;
use crate::signature;
use crate::tcp_client::Segment;

/// Bits of a sequence number that pick its duplicate-window slot.
const DUP_WINDOW_BITS: u32 = 20;
/// Sequence numbers remembered for duplicate detection.
pub const DUP_WINDOW: usize = 1 << DUP_WINDOW_BITS;

/// TCP header fields the client needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Flag bits.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
}

/// A TCP or UDP packet as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportView<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// `ip_proto::TCP` or `ip_proto::UDP`.
    pub proto: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP header fields (TCP only).
    pub tcp: Option<TcpInfo>,
    /// The whole transport segment (for checksum verification).
    pub segment: &'a [u8],
    /// The transport payload.
    pub payload: &'a [u8],
}

/// What a received frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// An Ethernet/IPv4 ARP packet.
    Arp(ArpRepr),
    /// TCP or UDP over IPv4/IPv6.
    Transport(TransportView<'a>),
    /// Anything else.
    Other,
}

/// Read a received frame (see the module docs for what is understood).
pub fn parse_frame(frame: &[u8]) -> Parsed<'_> {
    let Ok(l2) = parse_l2(frame) else {
        return Parsed::Other;
    };
    let l3 = &frame[l2.l3_offset..];
    match l2.ethertype {
        ethertype::ARP => match ArpPacket::new_checked(l3).and_then(|p| ArpRepr::parse(&p)) {
            Ok(repr) => Parsed::Arp(repr),
            Err(_) => Parsed::Other,
        },
        ethertype::IPV4 => parse_ipv4(l3, true),
        ethertype::IPV6 => parse_ipv6(l3),
        _ => Parsed::Other,
    }
}

fn parse_ipv4(l3: &[u8], may_decapsulate: bool) -> Parsed<'_> {
    let Ok(ip) = Ipv4Packet::new_checked(l3) else {
        return Parsed::Other;
    };
    if ip.frag_offset() != 0 {
        return Parsed::Other;
    }
    let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
    let header_len = ip.header_len();
    let end = usize::from(ip.total_len());
    let payload = &l3[header_len..end];
    if proto == ip_proto::IPIP && may_decapsulate {
        return parse_ipv4(payload, false);
    }
    parse_l4(IpAddr::V4(src), IpAddr::V4(dst), proto, payload)
}

fn parse_ipv6(l3: &[u8]) -> Parsed<'_> {
    let Ok(ip) = Ipv6Packet::new_checked(l3) else {
        return Parsed::Other;
    };
    let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
    let end = 40 + usize::from(ip.payload_len());
    parse_l4(IpAddr::V6(src), IpAddr::V6(dst), proto, &l3[40..end])
}

fn parse_l4(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> Parsed<'_> {
    match proto {
        ip_proto::UDP => {
            let Ok(udp) = UdpPacket::new_checked(segment) else {
                return Parsed::Other;
            };
            let end = usize::from(udp.len());
            Parsed::Transport(TransportView {
                src,
                dst,
                proto,
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
                tcp: None,
                segment: &segment[..end],
                payload: &segment[8..end],
            })
        }
        ip_proto::TCP => {
            let Ok(tcp) = TcpPacket::new_checked(segment) else {
                return Parsed::Other;
            };
            Parsed::Transport(TransportView {
                src,
                dst,
                proto,
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                tcp: Some(TcpInfo {
                    flags: tcp.flags().bits(),
                    seq: tcp.seq_number(),
                    ack: tcp.ack_number(),
                }),
                segment,
                payload: &segment[tcp.header_len()..],
            })
        }
        _ => Parsed::Other,
    }
}

/// Whether the TCP/UDP checksum of `t` is right (a UDP checksum of 0 over
/// IPv4 means "none" and passes).
pub fn checksum_ok(t: &TransportView<'_>) -> bool {
    match t.proto {
        ip_proto::UDP => UdpPacket::new_unchecked(t.segment).verify_checksum(&t.src, &t.dst),
        ip_proto::TCP => TcpPacket::new_unchecked(t.segment).verify_checksum(&t.src, &t.dst),
        _ => true,
    }
}

/// Length of an Ethernet ARP reply frame.
pub const ARP_FRAME_LEN: usize = 14 + 28;

/// Write the ARP reply to `req` ("`req.target` is at `our_mac`") into
/// `out` ([`ARP_FRAME_LEN`] bytes).
pub fn write_arp_reply(out: &mut [u8], our_mac: [u8; 6], req: &ArpRepr) {
    out[0..6].copy_from_slice(&req.source_hardware_addr.0);
    out[6..12].copy_from_slice(&our_mac);
    out[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(our_mac),
        source_protocol_addr: req.target_protocol_addr,
        target_hardware_addr: req.source_hardware_addr,
        target_protocol_addr: req.source_protocol_addr,
    };
    reply.emit(&mut ArpPacket::new_unchecked(&mut out[14..ARP_FRAME_LEN]));
}

/// Remembers the last [`DUP_WINDOW`] sequence numbers seen: slot
/// `seq mod DUP_WINDOW` holds the rest of the last number that mapped to
/// it, plus one (0: none yet).
#[derive(Debug, Clone)]
pub struct DupWindow {
    slots: Vec<u16>,
}

impl DupWindow {
    /// An empty window.
    pub fn new() -> DupWindow {
        DupWindow {
            slots: vec![0; DUP_WINDOW],
        }
    }

    /// Record `seq`; `true` if it was seen already (within the window).
    #[inline]
    pub fn seen_before(&mut self, seq: u32) -> bool {
        let slot = &mut self.slots[seq as usize & (DUP_WINDOW - 1)];
        let mark = (seq >> DUP_WINDOW_BITS) as u16 + 1;
        if *slot == mark {
            return true;
        }
        *slot = mark;
        false
    }
}

/// What the sink looks for.
#[derive(Debug, Clone, Copy)]
pub enum SinkMode {
    /// Packets signed with this run tag.
    Stream {
        /// The run's tag.
        run_tag: u16,
    },
    /// TCP segments from `vip:vport` to the client endpoints.
    Handshake {
        /// The service address.
        vip: Ipv4Addr,
        /// The service port.
        vport: u16,
    },
}

/// Counters of one sink (one polling thread on one port).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkCounts {
    /// Frames received.
    pub packets: u64,
    /// Bytes received (frames without FCS).
    pub bytes: u64,
    /// Packets carrying this run's signature, first copies.
    pub matched: u64,
    /// Signed packets seen before (within the duplicate window).
    pub duplicates: u64,
    /// Packets not carrying the signature (ARP, other traffic; in handshake
    /// mode: anything that is not a segment of one of the connections).
    pub foreign: u64,
    /// Signed packets or segments whose TCP/UDP checksum was wrong (only
    /// with `--verify-checksums`).
    pub bad_checksums: u64,
    /// TCP segments handed to the client state machine (handshake mode).
    pub segments: u64,
    /// ARP requests for a source address, answered.
    pub arp_requests: u64,
}

/// What the thread should do with a frame after [`Sink::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; nothing more to do.
    Done,
    /// Answer this ARP request.
    ArpRequest(ArpRepr),
    /// Feed this segment to the TCP client.
    Segment(Segment),
}

/// The receive side of one polling thread.
#[derive(Debug, Clone)]
pub struct Sink {
    mode: SinkMode,
    flows: FlowSpace,
    verify_checksums: bool,
    dups: Option<DupWindow>,
    counts: SinkCounts,
    latency: LatencyHistogram,
}

/// A sink's totals at the end of a run.
#[derive(Debug, Clone)]
pub struct SinkReport {
    /// Counters.
    pub counts: SinkCounts,
    /// One-way latency of matched packets, ns.
    pub latency: LatencyHistogram,
}

impl SinkReport {
    /// An empty report.
    pub fn empty() -> SinkReport {
        SinkReport {
            counts: SinkCounts::default(),
            latency: LatencyHistogram::new(),
        }
    }

    /// Add `other` to this report.
    pub fn merge(&mut self, other: &SinkReport) {
        let (a, b) = (&mut self.counts, &other.counts);
        a.packets += b.packets;
        a.bytes += b.bytes;
        a.matched += b.matched;
        a.duplicates += b.duplicates;
        a.foreign += b.foreign;
        a.bad_checksums += b.bad_checksums;
        a.segments += b.segments;
        a.arp_requests += b.arp_requests;
        self.latency.merge(&other.latency);
    }
}

impl Sink {
    /// A sink for `mode`; `flows` are the generator's source endpoints.
    pub fn new(mode: SinkMode, flows: FlowSpace, verify_checksums: bool) -> Sink {
        Sink {
            mode,
            flows,
            verify_checksums,
            dups: matches!(mode, SinkMode::Stream { .. }).then(DupWindow::new),
            counts: SinkCounts::default(),
            latency: LatencyHistogram::new(),
        }
    }

    /// Counters so far.
    pub fn counts(&self) -> &SinkCounts {
        &self.counts
    }

    /// The totals, consuming the sink.
    pub fn into_report(self) -> SinkReport {
        SinkReport {
            counts: self.counts,
            latency: self.latency,
        }
    }

    /// Count and classify one received `frame`, received at `rx_ns` (ns
    /// since the clock origin), when `tx_built` packets had been built (a
    /// signed sequence number at or above it is not ours: foreign).
    #[inline]
    pub fn handle(&mut self, frame: &[u8], rx_ns: u64, tx_built: u64) -> Verdict {
        self.counts.packets += 1;
        self.counts.bytes += frame.len() as u64;
        match parse_frame(frame) {
            Parsed::Arp(req) => {
                self.counts.foreign += 1;
                let ours = req.operation == ArpOperation::Request
                    && self.flows.has_ip(u32::from(req.target_protocol_addr));
                if ours {
                    self.counts.arp_requests += 1;
                    return Verdict::ArpRequest(req);
                }
                Verdict::Done
            }
            Parsed::Transport(t) => match self.mode {
                SinkMode::Stream { run_tag } => {
                    self.stream_packet(&t, run_tag, rx_ns, tx_built);
                    Verdict::Done
                }
                SinkMode::Handshake { vip, vport } => self.handshake_packet(&t, vip, vport, rx_ns),
            },
            Parsed::Other => {
                self.counts.foreign += 1;
                Verdict::Done
            }
        }
    }

    fn stream_packet(&mut self, t: &TransportView<'_>, run_tag: u16, rx_ns: u64, tx_built: u64) {
        let Some(sig) = signature::decode(t.payload, run_tag) else {
            self.counts.foreign += 1;
            return;
        };
        // Sequence numbers are 32 bits: the bound applies until they wrap.
        if tx_built <= u64::from(u32::MAX) && u64::from(sig.seq) >= tx_built {
            self.counts.foreign += 1;
            return;
        }
        if self.verify_checksums && !checksum_ok(t) {
            self.counts.bad_checksums += 1;
            return;
        }
        if self.dups.as_mut().is_some_and(|d| d.seen_before(sig.seq)) {
            self.counts.duplicates += 1;
            return;
        }
        self.counts.matched += 1;
        if let Some(l) = signature::latency_ns(sig.tx_ns, rx_ns) {
            self.latency.record(u64::from(l));
        }
    }

    fn handshake_packet(
        &mut self,
        t: &TransportView<'_>,
        vip: Ipv4Addr,
        vport: u16,
        rx_ns: u64,
    ) -> Verdict {
        let (Some(tcp), IpAddr::V4(src), IpAddr::V4(dst)) = (t.tcp, t.src, t.dst) else {
            self.counts.foreign += 1;
            return Verdict::Done;
        };
        if src != vip || t.src_port != vport {
            self.counts.foreign += 1;
            return Verdict::Done;
        }
        let Some(tuple) = self.flows.flow_of(u32::from(dst), t.dst_port) else {
            self.counts.foreign += 1;
            return Verdict::Done;
        };
        if self.verify_checksums && !checksum_ok(t) {
            self.counts.bad_checksums += 1;
            return Verdict::Done;
        }
        self.counts.segments += 1;
        Verdict::Segment(Segment {
            tuple,
            flags: tcp.flags,
            seq: tcp.seq,
            ack: tcp.ack,
            payload_len: t.payload.len() as u32,
            rx_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::Signature;
    use rvs::wire::{PacketBuilder, TcpFlags};

    const GEN_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().expect("address")
    }

    fn flows() -> FlowSpace {
        FlowSpace::new(v4("198.18.0.10"), Some(2), 1024, 8).expect("flow space")
    }

    fn echo(payload: &[u8]) -> Vec<u8> {
        PacketBuilder::ethernet(PEER_MAC, GEN_MAC)
            .ipv4(v4("198.18.1.1"), v4("198.18.0.10"))
            .udp(9000, 1024)
            .payload(payload)
            .build()
    }

    fn signed(tag: u16, seq: u32, tx_ns: u32) -> Vec<u8> {
        let mut p = vec![0u8; 22];
        signature::encode(&mut p, tag, Signature { seq, tx_ns });
        p
    }

    #[test]
    fn echoed_signed_packets_match_once_and_measure_latency() {
        let mut sink = Sink::new(SinkMode::Stream { run_tag: 9 }, flows(), true);
        let f = echo(&signed(9, 3, 1_000));
        assert_eq!(sink.handle(&f, 51_000, 10), Verdict::Done);
        assert_eq!(sink.handle(&f, 52_000, 10), Verdict::Done);
        let c = sink.counts().clone();
        assert_eq!(
            (c.packets, c.matched, c.duplicates, c.foreign),
            (2, 1, 1, 0)
        );
        assert_eq!(c.bytes, 2 * f.len() as u64);
        let r = sink.into_report();
        assert_eq!(r.latency.samples(), 1);
        assert_eq!(r.latency.max(), Some(50_000));
    }

    #[test]
    fn unsigned_other_runs_and_unsent_sequence_numbers_are_foreign() {
        let mut sink = Sink::new(SinkMode::Stream { run_tag: 9 }, flows(), false);
        sink.handle(&echo(&signed(8, 1, 0)), 0, 10);
        sink.handle(&echo(b"hello, world"), 0, 10);
        sink.handle(&echo(&signed(9, 10, 0)), 0, 10);
        sink.handle(&[0u8; 20], 0, 10);
        let c = sink.counts();
        assert_eq!((c.packets, c.matched, c.foreign), (4, 0, 4));
    }

    #[test]
    fn bad_checksums_are_counted_when_verifying() {
        let mut sink = Sink::new(SinkMode::Stream { run_tag: 9 }, flows(), true);
        let mut f = echo(&signed(9, 0, 0));
        let last = f.len() - 1;
        f[last] ^= 0xff;
        sink.handle(&f, 0, 1);
        assert_eq!(sink.counts().bad_checksums, 1);
        assert_eq!(sink.counts().matched, 0);
    }

    #[test]
    fn signatures_are_found_inside_ip_in_ip_and_vlan_tags() {
        let inner = PacketBuilder::new()
            .ipv4(v4("198.18.0.10"), v4("198.18.1.1"))
            .udp(1024, 9000)
            .payload(&signed(9, 0, 0))
            .build();
        let f = PacketBuilder::ethernet(PEER_MAC, GEN_MAC)
            .vlan(7)
            .ipv4(v4("10.0.0.1"), v4("10.0.0.2"))
            .raw_l4(ip_proto::IPIP, &inner)
            .build();
        let mut sink = Sink::new(SinkMode::Stream { run_tag: 9 }, flows(), true);
        sink.handle(&f, 0, 1);
        assert_eq!(sink.counts().matched, 1);
    }

    #[test]
    fn arp_requests_for_source_addresses_are_returned_and_answered() {
        let mut sink = Sink::new(SinkMode::Stream { run_tag: 9 }, flows(), false);
        let ask = |target: &str| {
            PacketBuilder::ethernet(PEER_MAC, EthernetAddress::BROADCAST)
                .arp_request(PEER_MAC, v4("198.18.1.1"), v4(target))
                .build()
        };
        assert_eq!(
            sink.handle(&ask("198.18.0.12"), 0, 0),
            Verdict::Done,
            "3rd address: none"
        );
        let Verdict::ArpRequest(req) = sink.handle(&ask("198.18.0.11"), 0, 0) else {
            panic!("an ARP request for a source address is handed back");
        };
        let mut out = [0u8; ARP_FRAME_LEN];
        write_arp_reply(&mut out, GEN_MAC.0, &req);
        let want = PacketBuilder::ethernet(GEN_MAC, PEER_MAC)
            .arp_reply(GEN_MAC, v4("198.18.0.11"), PEER_MAC, v4("198.18.1.1"))
            .build();
        assert_eq!(out[..], want[..]);
        assert_eq!(sink.counts().arp_requests, 1);
    }

    #[test]
    fn handshake_mode_turns_segments_from_the_vip_into_client_input() {
        let mut sink = Sink::new(
            SinkMode::Handshake {
                vip: v4("198.18.1.1"),
                vport: 80,
            },
            flows(),
            true,
        );
        let synack = |src: &str, sport: u16, dport: u16| {
            PacketBuilder::ethernet(PEER_MAC, GEN_MAC)
                .ipv4(v4(src), v4("198.18.0.11"))
                .tcp(sport, dport)
                .flags(TcpFlags::SYN | TcpFlags::ACK)
                .seq(500)
                .ack(101)
                .build()
        };
        let v = sink.handle(&synack("198.18.1.1", 80, 1025), 77, 0);
        assert_eq!(
            v,
            Verdict::Segment(Segment {
                tuple: 3,
                flags: (TcpFlags::SYN | TcpFlags::ACK).bits(),
                seq: 500,
                ack: 101,
                payload_len: 0,
                rx_ns: 77,
            })
        );
        assert_eq!(
            sink.handle(&synack("198.18.1.2", 80, 1025), 0, 0),
            Verdict::Done
        );
        assert_eq!(
            sink.handle(&synack("198.18.1.1", 81, 1025), 0, 0),
            Verdict::Done
        );
        assert_eq!(
            sink.handle(&synack("198.18.1.1", 80, 1099), 0, 0),
            Verdict::Done
        );
        let c = sink.counts();
        assert_eq!((c.segments, c.foreign), (1, 3));
    }

    #[test]
    fn dup_window_forgets_after_a_full_turn() {
        let mut w = DupWindow::new();
        assert!(!w.seen_before(5));
        assert!(w.seen_before(5));
        assert!(
            !w.seen_before(5 + DUP_WINDOW as u32),
            "same slot, new number"
        );
        assert!(!w.seen_before(5), "evicted");
        assert!(!w.seen_before(u32::MAX));
        assert!(w.seen_before(u32::MAX));
    }
}
