//! Property tests for the whole `wire` module:
//! 1. no parser or getter panics on arbitrary or mutated bytes;
//! 2. incremental checksum updates equal full recomputation (bit for bit);
//! 3. the builder's packets parse and verify in an independent implementation
//!    (`etherparse`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------- 1. no panic

fn exercise_tcp(data: &[u8], src: &IpAddr, dst: &IpAddr) {
    if let Ok(p) = TcpPacket::new_checked(data) {
        let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number());
        let _ = (
            p.header_len(),
            p.flags(),
            p.syn(),
            p.ack(),
            p.fin(),
            p.rst(),
            p.psh(),
        );
        let _ = (p.urg(), p.ns(), p.window_len(), p.checksum(), p.urgent_at());
        let _ = (p.options(), p.payload(), p.segment_len(), p.mss());
        let _ = p.verify_checksum(src, dst);
        let _ = TcpRepr::parse(&p);
    }
}

fn exercise_udp(data: &[u8], src: &IpAddr, dst: &IpAddr) {
    if let Ok(p) = UdpPacket::new_checked(data) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload(),
        );
        let _ = p.verify_checksum(src, dst);
        let _ = UdpRepr::parse(&p);
    }
}

fn exercise_icmpv4(data: &[u8]) {
    if let Ok(p) = Icmpv4Packet::new_checked(data) {
        let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.rest_of_header());
        let _ = (
            p.echo_ident(),
            p.echo_seq_no(),
            p.next_hop_mtu(),
            p.pointer(),
            p.gateway(),
        );
        let _ = (p.data(), p.is_error(), p.verify_checksum());
        let _ = Icmpv4Repr::parse(&p);
        let _ = icmp_quoted(IpFamily::V4, p.data());
    }
}

fn exercise_icmpv6(data: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) {
    if let Ok(p) = Icmpv6Packet::new_checked(data) {
        let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.rest_of_header());
        let _ = (p.echo_ident(), p.echo_seq_no(), p.mtu(), p.pointer());
        let _ = (p.data(), p.is_error(), p.verify_checksum(src, dst));
        let _ = Icmpv6Repr::parse(&p);
        let _ = NdpRepr::parse(&p);
        let _ = icmp_quoted(IpFamily::V6, p.data());
    }
}

fn exercise_l4(proto: u8, data: &[u8], src: IpAddr, dst: IpAddr) {
    exercise_tcp(data, &src, &dst);
    exercise_udp(data, &src, &dst);
    match (proto, src, dst) {
        (ip_proto::ICMP, _, _) => exercise_icmpv4(data),
        (ip_proto::ICMPV6, IpAddr::V6(s), IpAddr::V6(d)) => exercise_icmpv6(data, &s, &d),
        _ => {}
    }
}

fn exercise_ipv4(data: &[u8]) {
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp_ecn(),
            p.total_len(),
            p.ident(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
        );
        let _ = (
            p.ttl(),
            p.next_header(),
            p.checksum(),
            p.options(),
            p.header(),
        );
        let _ = p.verify_checksum();
        let _ = Ipv4Repr::parse(&p);
        exercise_l4(
            p.next_header(),
            p.payload(),
            p.src_addr().into(),
            p.dst_addr().into(),
        );
    }
}

fn exercise_ipv6(data: &[u8]) {
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
        );
        let _ = (p.next_header(), p.hop_limit(), p.payload());
        let _ = Ipv6Repr::parse(&p);
        if let Ok(up) = ipv6_upper_layer(data) {
            let end = 40 + usize::from(p.payload_len());
            assert!(up.offset <= end, "upper layer offset inside the payload");
            let l4 = &data[up.offset..end];
            exercise_l4(up.proto, l4, p.src_addr().into(), p.dst_addr().into());
        }
    }
}

/// Runs every parser on `frame` as the dataplane would, plus each parser on
/// the raw bytes directly.
fn exercise_frame(frame: &[u8]) {
    if let Ok(info) = parse_l2(frame) {
        assert!(info.l3_offset <= frame.len());
        let l3 = &frame[info.l3_offset..];
        match info.ethertype {
            ethertype::IPV4 => exercise_ipv4(l3),
            ethertype::IPV6 => exercise_ipv6(l3),
            ethertype::ARP => {
                if let Ok(p) = ArpPacket::new_checked(l3) {
                    let _ = (
                        p.operation(),
                        p.source_hardware_addr(),
                        p.target_protocol_addr(),
                    );
                    let _ = ArpRepr::parse(&p);
                }
            }
            _ => {}
        }
    }
    if let Ok(f) = EthernetFrame::new_checked(frame) {
        let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload());
        let _ = EthernetRepr::parse(&f);
    }
    if let Ok(v) = VlanHeader::new_checked(frame) {
        let _ = (
            v.tci(),
            v.vid(),
            v.pcp(),
            v.dei(),
            v.ethertype(),
            v.payload(),
        );
    }
    exercise_ipv4(frame);
    exercise_ipv6(frame);
    let any = IpAddr::V4(Ipv4Addr::LOCALHOST);
    exercise_l4(ip_proto::ICMP, frame, any, any);
    let any6 = Ipv6Addr::LOCALHOST;
    exercise_icmpv6(frame, &any6, &any6);
    let _ = icmp_quoted(IpFamily::V4, frame);
    let _ = icmp_quoted(IpFamily::V6, frame);
}

/// True if a built frame parses down to a transport header whose checksum
/// verifies (or is a well-formed ARP packet).
fn valid_frame_parses(frame: &[u8]) -> bool {
    let Ok(info) = parse_l2(frame) else {
        return false;
    };
    let l3 = &frame[info.l3_offset..];
    match info.ethertype {
        ethertype::ARP => ArpPacket::new_checked(l3)
            .and_then(|p| ArpRepr::parse(&p))
            .is_ok(),
        ethertype::IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(l3) else {
                return false;
            };
            let (s, d) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
            ip.verify_checksum()
                && match ip.next_header() {
                    ip_proto::TCP => TcpPacket::new_checked(ip.payload())
                        .is_ok_and(|t| t.verify_checksum(&s, &d)),
                    ip_proto::UDP => UdpPacket::new_checked(ip.payload())
                        .is_ok_and(|u| u.verify_checksum(&s, &d)),
                    ip_proto::ICMP => {
                        Icmpv4Packet::new_checked(ip.payload()).is_ok_and(|i| i.verify_checksum())
                    }
                    _ => false,
                }
        }
        ethertype::IPV6 => {
            let Ok(ip) = Ipv6Packet::new_checked(l3) else {
                return false;
            };
            let Ok(up) = ipv6_upper_layer(l3) else {
                return false;
            };
            let l4 = &l3[up.offset..40 + usize::from(ip.payload_len())];
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            match up.proto {
                ip_proto::TCP => TcpPacket::new_checked(l4)
                    .is_ok_and(|t| t.verify_checksum(&s.into(), &d.into())),
                ip_proto::UDP => UdpPacket::new_checked(l4)
                    .is_ok_and(|u| u.verify_checksum(&s.into(), &d.into())),
                ip_proto::ICMPV6 => {
                    Icmpv6Packet::new_checked(l4).is_ok_and(|i| i.verify_checksum(&s, &d))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

fn arb_v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn arb_v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

/// A valid frame of some kind, from a few random choices.
fn arb_valid_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        0u8..10,
        arb_v4(),
        arb_v4(),
        arb_v6(),
        arb_v6(),
        any::<(u16, u16)>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        0u8..4,
    )
        .prop_map(|(vlan, kind, s4, d4, s6, d6, (sp, dp), payload, exts)| {
            let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
            let mut b = PacketBuilder::ethernet(mac, mac);
            if vlan {
                b = b.vlan(7);
            }
            let v6 = kind % 2 == 1;
            b = if v6 { b.ipv6(s6, d6) } else { b.ipv4(s4, d4) };
            if v6 {
                for e in 0..exts {
                    b = b.ipv6_ext(
                        [ip_proto::HOPOPT, ip_proto::DSTOPTS, ip_proto::AH][usize::from(e) % 3],
                        &[0; 6],
                    );
                }
            }
            let inner = PacketBuilder::new()
                .ipv4(d4, s4)
                .udp(dp, sp)
                .payload(&payload)
                .build();
            b = match kind / 2 {
                0 => b.tcp(sp, dp).mss(1400),
                1 => b.udp(sp, dp),
                2 if v6 => b.icmpv6_error(icmpv6::DST_UNREACHABLE, 4, &payload),
                2 => b.icmpv4_error(icmpv4::DEST_UNREACHABLE, 3, &inner),
                3 if v6 => b.ndp_advert(NdpFlags::SOLICITED, s6, Some(mac)),
                3 => b.arp_request(mac, s4, d4),
                _ => b.icmp_echo_request(sp, dp),
            };
            if kind / 2 != 2 {
                b = b.payload(&payload);
            }
            b.build()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        exercise_frame(&bytes);
    }

    #[test]
    fn parsers_never_panic_on_mutated_valid_frames(
        frame in arb_valid_frame(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        // The unmutated frame parses all the way (sanity of the harness).
        prop_assert!(valid_frame_parses(&frame), "builder frame did not parse");
        exercise_frame(&frame);
        let mut frame = frame;
        for (at, value) in edits {
            let i = at.index(frame.len());
            frame[i] = value;
        }
        if do_cut {
            let len = cut.index(frame.len() + 1);
            frame.truncate(len);
        }
        exercise_frame(&frame);
    }
}

// ------------------------------------------------- 2. incremental == full

/// Rewrites the addresses and ports of a built IPv4/TCP packet the way a NAT
/// would, with RFC 1624 updates only.
fn nat_v4_tcp(pkt: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) {
    let mut ip = Ipv4Packet::new_checked(&mut pkt[..]).unwrap();
    let (old_src, old_dst) = (u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
    let mut ip_csum = ip.checksum();
    ip_csum = checksum::update32(ip_csum, old_src, u32::from(src));
    ip_csum = checksum::update32(ip_csum, old_dst, u32::from(dst));
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.set_checksum(ip_csum);
    let mut tcp = TcpPacket::new_checked(ip.payload_mut()).unwrap();
    let mut c = tcp.checksum();
    c = checksum::update32(c, old_src, u32::from(src));
    c = checksum::update32(c, old_dst, u32::from(dst));
    c = checksum::update16(c, tcp.src_port(), sport);
    c = checksum::update16(c, tcp.dst_port(), dport);
    tcp.set_src_port(sport);
    tcp.set_dst_port(dport);
    tcp.set_checksum(c);
}

/// Same for IPv6/UDP, including UDP's "0 is sent as 0xffff" rule.
fn nat_v6_udp(pkt: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) {
    let mut ip = Ipv6Packet::new_checked(&mut pkt[..]).unwrap();
    let (old_src, old_dst) = (ip.src_addr(), ip.dst_addr());
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    let mut udp = UdpPacket::new_checked(ip.payload_mut()).unwrap();
    let mut c = udp.checksum();
    c = checksum::update_bytes(c, &old_src.octets(), &src.octets());
    c = checksum::update_bytes(c, &old_dst.octets(), &dst.octets());
    c = checksum::update16(c, udp.src_port(), sport);
    c = checksum::update16(c, udp.dst_port(), dport);
    udp.set_src_port(sport);
    udp.set_dst_port(dport);
    udp.set_checksum(checksum::udp_final(c));
}

fn v4_tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(src, dst)
        .ident(0x55aa)
        .tcp(sport, dport)
        .flags(TcpFlags::ACK)
        .seq(seq)
        .payload(payload)
        .build()
}

fn v6_udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .ipv6(src, dst)
        .udp(sport, dport)
        .payload(payload)
        .build()
}

/// Replaces the first two payload bytes so that the transport checksum of the
/// packet `build(payload)` computes to 0x0000 (TCP) — i.e. the folded sum is
/// 0xffff. Returns the adjusted payload.
fn payload_for_zero_checksum(build: impl Fn(&[u8]) -> (Vec<u8>, usize), payload: &[u8]) -> Vec<u8> {
    let mut p = payload.to_vec();
    p[0] = 0;
    p[1] = 0;
    let (pkt, csum_at) = build(&p);
    let c = u16::from_be_bytes([pkt[csum_at], pkt[csum_at + 1]]);
    // Adding the complement of the folded sum to a zero word makes the folded
    // sum 0xffff, so the new checksum is !0xffff = 0.
    p[..2].copy_from_slice(&c.to_be_bytes());
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn incremental_nat_v4_tcp_equals_full_recomputation(
        (s, d, s2, d2) in (arb_v4(), arb_v4(), arb_v4(), arb_v4()),
        (sp, dp, sp2, dp2) in any::<(u16, u16, u16, u16)>(),
        seq in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 2..80),
        force_zero in any::<bool>(),
    ) {
        let payload = if force_zero {
            // Make the *rewritten* packet's TCP checksum exactly 0x0000.
            payload_for_zero_checksum(|p| (v4_tcp(s2, d2, sp2, dp2, seq, p), 36), &payload)
        } else {
            payload
        };
        let mut pkt = v4_tcp(s, d, sp, dp, seq, &payload);
        nat_v4_tcp(&mut pkt, s2, d2, sp2, dp2);
        let full = v4_tcp(s2, d2, sp2, dp2, seq, &payload);
        if force_zero {
            prop_assert_eq!(&full[36..38], &[0, 0]);
        }
        prop_assert_eq!(pkt, full);
    }

    #[test]
    fn incremental_nat_v6_udp_equals_full_recomputation(
        (s, d, s2, d2) in (arb_v6(), arb_v6(), arb_v6(), arb_v6()),
        (sp, dp, sp2, dp2) in any::<(u16, u16, u16, u16)>(),
        payload in proptest::collection::vec(any::<u8>(), 2..80),
        zero_side in 0u8..3,
    ) {
        // zero_side 1: the original packet's computed checksum is 0 (sent as
        // 0xffff); 2: the rewritten one's is.
        let payload = match zero_side {
            1 => payload_for_zero_checksum(|p| (v6_udp(s, d, sp, dp, p), 46), &payload),
            2 => payload_for_zero_checksum(|p| (v6_udp(s2, d2, sp2, dp2, p), 46), &payload),
            _ => payload,
        };
        let mut pkt = v6_udp(s, d, sp, dp, &payload);
        if zero_side == 1 {
            prop_assert_eq!(&pkt[46..48], &[0xff, 0xff]);
        }
        nat_v6_udp(&mut pkt, s2, d2, sp2, dp2);
        let full = v6_udp(s2, d2, sp2, dp2, &payload);
        if zero_side == 2 {
            prop_assert_eq!(&full[46..48], &[0xff, 0xff]);
        }
        prop_assert_eq!(pkt, full);
    }
}

// ------------------------------------------- 3. cross-check with etherparse

fn etherparse_checks(frame: &[u8]) -> core::result::Result<(), TestCaseError> {
    use etherparse::{LinkExtSlice, LinkSlice, NetSlice, SlicedPacket, TransportSlice};
    let sliced = SlicedPacket::from_ethernet(frame)
        .map_err(|e| TestCaseError::fail(format!("etherparse rejected: {e:?}")))?;
    let l2 = parse_l2(frame).unwrap();
    match &sliced.link {
        Some(LinkSlice::Ethernet2(eth)) => {
            prop_assert_eq!(eth.source(), l2.src.0);
            prop_assert_eq!(eth.destination(), l2.dst.0);
        }
        other => return Err(TestCaseError::fail(format!("link {other:?}"))),
    }
    match (sliced.link_exts.first(), l2.vlan) {
        (Some(LinkExtSlice::Vlan(v)), Some(tci)) => {
            prop_assert_eq!(v.vlan_identifier().value(), tci & 0xfff);
            prop_assert_eq!(v.ether_type().0, l2.ethertype);
        }
        (None, None) => {}
        other => return Err(TestCaseError::fail(format!("vlan {other:?}"))),
    }
    let (src, dst): (IpAddr, IpAddr) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            prop_assert_eq!(
                h.calc_header_checksum(),
                h.header_checksum,
                "IPv4 header checksum"
            );
            let ours = Ipv4Packet::new_checked(&frame[l2.l3_offset..]).unwrap();
            prop_assert!(ours.verify_checksum());
            prop_assert_eq!(h.total_len, ours.total_len());
            prop_assert_eq!(h.time_to_live, ours.ttl());
            prop_assert_eq!(h.protocol.0, ours.next_header());
            (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let ours = Ipv6Packet::new_checked(&frame[l2.l3_offset..]).unwrap();
            prop_assert_eq!(h.payload_length(), ours.payload_len());
            prop_assert_eq!(h.next_header().0, ours.next_header());
            prop_assert_eq!(h.hop_limit(), ours.hop_limit());
            prop_assert_eq!(h.flow_label().value(), ours.flow_label());
            let up = ipv6_upper_layer(&frame[l2.l3_offset..]).unwrap();
            prop_assert_eq!(ip.payload().ip_number.0, up.proto);
            prop_assert_eq!(
                ip.payload().payload.len(),
                40 + usize::from(ours.payload_len()) - up.offset
            );
            (h.source_addr().into(), h.destination_addr().into())
        }
        other => return Err(TestCaseError::fail(format!("net {other:?}"))),
    };
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let expected = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => tcp.calc_checksum_ipv4(s.octets(), d.octets()),
                (IpAddr::V6(s), IpAddr::V6(d)) => tcp.calc_checksum_ipv6(s.octets(), d.octets()),
                _ => unreachable!(),
            };
            prop_assert_eq!(expected.unwrap(), tcp.checksum(), "TCP checksum");
            let ours = TcpPacket::new_checked(tcp.slice()).unwrap();
            prop_assert!(ours.verify_checksum(&src, &dst));
            prop_assert_eq!(ours.payload(), tcp.payload());
            prop_assert_eq!(ours.options(), tcp.options());
        }
        Some(TransportSlice::Udp(udp)) => {
            let h = udp.to_header();
            let expected = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    h.calc_checksum_ipv4_raw(s.octets(), d.octets(), udp.payload())
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    h.calc_checksum_ipv6_raw(s.octets(), d.octets(), udp.payload())
                }
                _ => unreachable!(),
            };
            prop_assert_eq!(expected.unwrap(), udp.checksum(), "UDP checksum");
            prop_assert!(UdpPacket::new_checked(udp.slice())
                .unwrap()
                .verify_checksum(&src, &dst));
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            prop_assert_eq!(
                icmp.icmp_type().calc_checksum(icmp.payload()),
                icmp.checksum()
            );
            prop_assert!(Icmpv4Packet::new_checked(icmp.slice())
                .unwrap()
                .verify_checksum());
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
                unreachable!()
            };
            prop_assert!(
                icmp.is_checksum_valid(s.octets(), d.octets()),
                "ICMPv6 checksum"
            );
            prop_assert!(Icmpv6Packet::new_checked(icmp.slice())
                .unwrap()
                .verify_checksum(&s, &d));
        }
        other => return Err(TestCaseError::fail(format!("transport {other:?}"))),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn builder_output_agrees_with_etherparse(
        (s4, d4, s6, d6) in (arb_v4(), arb_v4(), arb_v6(), arb_v6()),
        (sp, dp) in any::<(u16, u16)>(),
        (seq, ack, ttl, tos) in any::<(u32, u32, u8, u8)>(),
        flags in any::<u8>(),
        kind in 0u8..4,
        v6 in any::<bool>(),
        vlan in proptest::option::of(0u16..4096),
        dstopts in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let mut b = PacketBuilder::ethernet(mac, EthernetAddress([2, 0, 0, 0, 0, 2]));
        if let Some(tci) = vlan {
            b = b.vlan(tci);
        }
        b = if v6 { b.ipv6(s6, d6) } else { b.ipv4(s4, d4).dont_frag(true) };
        if v6 && dstopts {
            b = b.ipv6_ext(ip_proto::DSTOPTS, &[1, 4, 0, 0, 0, 0]);
        }
        b = b.ttl(ttl).dscp_ecn(tos).payload(&payload);
        b = match kind {
            0 => b.tcp(sp, dp).flags(TcpFlags(flags)).seq(seq).ack(ack).mss(1460),
            1 => b.udp(sp, dp),
            2 => b.icmp_echo_request(sp, dp),
            _ if v6 => {
                let quoted = PacketBuilder::new().ipv6(d6, s6).udp(dp, sp).payload(&payload).build();
                b.icmpv6_error(icmpv6::DST_UNREACHABLE, icmpv6::PORT_UNREACHABLE, &quoted)
            }
            _ => {
                let quoted = PacketBuilder::new().ipv4(d4, s4).tcp(dp, sp).payload(&payload).build();
                b.icmpv4_error(icmpv4::DEST_UNREACHABLE, icmpv4::FRAG_NEEDED, &quoted)
                    .next_hop_mtu(1400)
            }
        };
        etherparse_checks(&b.build())?;
    }
}
