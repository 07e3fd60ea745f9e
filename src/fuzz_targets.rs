//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`, run with
//! `cargo +nightly fuzz run NAME`), kept in the library so the stable test
//! `tests/fuzz_corpus.rs` replays every target's corpus (`fuzz/corpus/NAME/`)
//! through exactly the same code in CI.
//!
//! Rules of this module:
//!
//! * One function per target, `fn(&[u8])`, listed in [`TARGETS`] under the
//!   name of its libFuzzer harness and corpus directory. A target never
//!   returns an error: it asserts (panics) when an invariant breaks, and a
//!   panic is the finding.
//! * Each target asserts invariants, not only "no panic": parse → emit →
//!   parse gives the same representation; what the director transmits is
//!   well formed; a refused change leaves the control state exactly as it
//!   was; `lbctl -S` output restores to the same table.
//! * Adding a decoder (VRRP, connection sync, keepalived.conf): write
//!   `pub fn vrrp(data: &[u8])` here, add it to [`TARGETS`], copy
//!   `fuzz/fuzz_targets/wire.rs` to `fuzz/fuzz_targets/vrrp.rs` calling it,
//!   add the `[[bin]]` to `fuzz/Cargo.toml`, and seed `fuzz/corpus/vrrp/`
//!   (the corpus test fails for a listed target without a corpus).
//!
//! Not part of the public API (`#[doc(hidden)]`); nothing else in the crate
//! uses it.

use std::io::Cursor;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::ctl::apply::ControlState;
use crate::ctl::config::Config;
use crate::ctl::ipvsadm::{self, Command};
use crate::ctl::protocol::{self, Request, ServiceInfo};
use crate::dataplane::driver::mem::MemQueue;
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::worker::{Links, Worker, WorkerConfig};
use crate::wire::{
    self, ethertype, ip_proto, ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpFamily, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    NdpRepr, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

/// A target body.
pub type Target = fn(&[u8]);

/// Every target: (harness and corpus name, body).
pub const TARGETS: &[(&str, Target)] = &[
    ("wire", wire),
    ("worker_burst", worker_burst),
    ("ipvsadm", ipvsadm),
    ("protocol", protocol),
    ("config", config),
    ("keepalived", keepalived),
    ("ipvs_sync", ipvs_sync),
    ("vrrp", vrrp),
];

// ------------------------------------------------------------------ wire

/// Packet views and representations: a frame as the dataplane reads it
/// (L2, then L3 by EtherType, then L4 by protocol), plus every L3/L4 view on
/// the raw bytes. Every `XRepr` that parses is emitted into a fresh buffer,
/// parsed again and compared; emitted checksums verify.
pub fn wire(data: &[u8]) {
    if let Ok(info) = wire::parse_l2(data) {
        assert!(info.l3_offset <= data.len(), "l3 offset past the frame");
        let l3 = &data[info.l3_offset..];
        match info.ethertype {
            ethertype::IPV4 => ipv4(l3),
            ethertype::IPV6 => ipv6(l3),
            ethertype::ARP => arp(l3),
            _ => {}
        }
    }
    ethernet(data);
    ipv4(data);
    ipv6(data);
    arp(data);
    let (a, b) = (
        IpAddr::from([192, 0, 2, 1]),
        IpAddr::from([198, 51, 100, 2]),
    );
    l4(ip_proto::TCP, data, a, b);
    l4(ip_proto::UDP, data, a, b);
    l4(ip_proto::ICMP, data, a, b);
    let (a6, b6) = (
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::from([0xfe80, 0, 0, 0, 0, 0, 0, 2])),
    );
    l4(ip_proto::ICMPV6, data, a6, b6);
}

fn ethernet(data: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let Ok(repr) = EthernetRepr::parse(&frame) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    let again = EthernetFrame::new_checked(&buf[..]).expect("emitted Ethernet header checks");
    assert_eq!(EthernetRepr::parse(&again), Ok(repr), "Ethernet round trip");
}

fn arp(data: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(data) else {
        return;
    };
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return;
    };
    let mut buf = data.to_vec();
    buf.iter_mut().for_each(|b| *b = 0xa5);
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
    let again = ArpPacket::new_checked(&buf[..]).expect("emitted ARP checks");
    assert_eq!(ArpRepr::parse(&again), Ok(repr), "ARP round trip");
}

fn ipv4(data: &[u8]) {
    let Ok(packet) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.is_fragment(), packet.frag_offset(), packet.options());
    if let Ok(repr) = Ipv4Repr::parse(&packet) {
        let payload = packet.payload();
        assert_eq!(payload.len(), repr.payload_len, "IPv4 payload length");
        let mut buf = vec![0xa5u8; repr.buffer_len() + repr.payload_len];
        buf[repr.buffer_len()..].copy_from_slice(payload);
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let again = Ipv4Packet::new_checked(&buf[..]).expect("emitted IPv4 checks");
        assert!(again.verify_checksum(), "emitted IPv4 checksum");
        assert_eq!(Ipv4Repr::parse(&again), Ok(repr), "IPv4 round trip");
        assert_eq!(again.payload(), payload, "IPv4 payload kept");
    }
    if !packet.is_fragment() || packet.frag_offset() == 0 {
        l4(
            packet.next_header(),
            packet.payload(),
            packet.src_addr().into(),
            packet.dst_addr().into(),
        );
    }
}

fn ipv6(data: &[u8]) {
    let Ok(packet) = Ipv6Packet::new_checked(data) else {
        return;
    };
    if let Ok(repr) = Ipv6Repr::parse(&packet) {
        let payload = packet.payload();
        assert_eq!(payload.len(), repr.payload_len, "IPv6 payload length");
        let mut buf = vec![0xa5u8; wire::ipv6::HEADER_LEN + repr.payload_len];
        buf[wire::ipv6::HEADER_LEN..].copy_from_slice(payload);
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        let again = Ipv6Packet::new_checked(&buf[..]).expect("emitted IPv6 checks");
        assert_eq!(Ipv6Repr::parse(&again), Ok(repr), "IPv6 round trip");
    }
    if let Ok(up) = wire::ipv6_upper_layer(data) {
        let end = wire::ipv6::HEADER_LEN + usize::from(packet.payload_len());
        assert!(up.offset <= end, "upper layer inside the payload");
        l4(
            up.proto,
            &data[up.offset..end],
            packet.src_addr().into(),
            packet.dst_addr().into(),
        );
    }
}

fn l4(proto: u8, data: &[u8], src: IpAddr, dst: IpAddr) {
    match proto {
        ip_proto::TCP => tcp(data, &src, &dst),
        ip_proto::UDP => udp(data, &src, &dst),
        ip_proto::ICMP => icmpv4(data),
        ip_proto::ICMPV6 => {
            if let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) {
                icmpv6(data, &s, &d);
            }
        }
        _ => {}
    }
}

fn tcp(data: &[u8], src: &IpAddr, dst: &IpAddr) {
    let Ok(packet) = TcpPacket::new_checked(data) else {
        return;
    };
    let _ = (packet.mss(), packet.options(), packet.segment_len());
    let _ = packet.verify_checksum(src, dst);
    let Ok(repr) = TcpRepr::parse(&packet) else {
        return;
    };
    let mut buf = vec![0xa5u8; repr.buffer_len()];
    repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst);
    let again = TcpPacket::new_checked(&buf[..]).expect("emitted TCP checks");
    assert!(again.verify_checksum(src, dst), "emitted TCP checksum");
    assert_eq!(TcpRepr::parse(&again), Ok(repr), "TCP round trip");
}

fn udp(data: &[u8], src: &IpAddr, dst: &IpAddr) {
    let Ok(packet) = UdpPacket::new_checked(data) else {
        return;
    };
    let _ = packet.verify_checksum(src, dst);
    let Ok(repr) = UdpRepr::parse(&packet) else {
        return;
    };
    let mut buf = vec![0xa5u8; repr.buffer_len()];
    repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), src, dst);
    let again = UdpPacket::new_checked(&buf[..]).expect("emitted UDP checks");
    assert!(again.verify_checksum(src, dst), "emitted UDP checksum");
    assert_eq!(UdpRepr::parse(&again), Ok(repr), "UDP round trip");
}

fn icmpv4(data: &[u8]) {
    let Ok(packet) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let _ = wire::icmp_quoted(IpFamily::V4, packet.data());
    let Ok(repr) = Icmpv4Repr::parse(&packet) else {
        return;
    };
    let mut buf = vec![0xa5u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
    let again = Icmpv4Packet::new_checked(&buf[..]).expect("emitted ICMPv4 checks");
    assert_eq!(Icmpv4Repr::parse(&again), Ok(repr), "ICMPv4 round trip");
}

fn icmpv6(data: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) {
    let Ok(packet) = Icmpv6Packet::new_checked(data) else {
        return;
    };
    let _ = packet.verify_checksum(src, dst);
    let _ = wire::icmp_quoted(IpFamily::V6, packet.data());
    if let Ok(repr) = Icmpv6Repr::parse(&packet) {
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), src, dst);
        let again = Icmpv6Packet::new_checked(&buf[..]).expect("emitted ICMPv6 checks");
        assert!(again.verify_checksum(src, dst), "emitted ICMPv6 checksum");
        assert_eq!(Icmpv6Repr::parse(&again), Ok(repr), "ICMPv6 round trip");
    }
    if let Ok(repr) = NdpRepr::parse(&packet) {
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), src, dst);
        let again = Icmpv6Packet::new_checked(&buf[..]).expect("emitted NDP checks");
        assert!(again.verify_checksum(src, dst), "emitted NDP checksum");
        assert_eq!(NdpRepr::parse(&again), Ok(repr), "NDP round trip");
    }
}

// ---------------------------------------------------------- worker burst

/// The director every stateful target starts from: two `mem` ports, static
/// neighbours, and a NAT, DR, TUN and FULLNAT service (TCP and UDP, IPv4
/// and IPv6), as `lbd --config` would read it.
pub const BASE_CONFIG: &str = r#"
workers: {count: 1}
ports:
  - {name: ext, driver: mem, mac: "02:00:00:00:00:01", addrs: ["10.0.0.254/24", "2001:db8::fe/64"]}
  - {name: int, driver: mem, mac: "02:00:00:00:01:01", mtu: 1400, addrs: ["192.168.10.254/24", "2001:db8:10::fe/64"]}
routes:
  - {prefix: "0.0.0.0/0", via: 10.0.0.1, port: ext}
  - {prefix: "::/0", via: "2001:db8::a", port: ext}
neighbours:
  - {addr: 10.0.0.1, mac: "02:aa:00:00:00:01", port: ext}
  - {addr: "2001:db8::a", mac: "02:aa:00:00:00:01", port: ext}
  - {addr: 192.168.10.1, mac: "02:b1:00:00:00:01", port: int}
  - {addr: 192.168.10.2, mac: "02:b2:00:00:00:02", port: int}
  - {addr: "2001:db8:10::1", mac: "02:b1:00:00:00:01", port: int}
settings: {lport_range: "40000-40063"}
services:
  - {proto: tcp, vip: 10.0.0.1, port: 80, scheduler: rr, dests: [{addr: 192.168.10.1, port: 8080, fwd: masq}, {addr: 192.168.10.2, port: 8080, fwd: masq}]}
  - {proto: udp, vip: 10.0.0.1, port: 53, scheduler: rr, dests: [{addr: 192.168.10.1, port: 5353, fwd: masq}]}
  - {proto: tcp, vip: 10.0.0.2, port: 80, scheduler: wlc, dests: [{addr: 192.168.10.1, fwd: route}]}
  - {proto: udp, vip: 10.0.0.2, port: 53, scheduler: sh, dests: [{addr: 192.168.10.1, fwd: route}]}
  - {proto: tcp, vip: 10.0.0.3, port: 80, scheduler: rr, dests: [{addr: 192.168.10.2, fwd: tunnel}]}
  - {proto: udp, vip: 10.0.0.3, port: 53, scheduler: rr, dests: [{addr: 192.168.10.2, fwd: tunnel}]}
  - {proto: tcp, vip: 10.0.0.4, port: 80, scheduler: rr, laddrs: [192.168.10.100], dests: [{addr: 192.168.10.2, port: 8080, fwd: fullnat}]}
  - {proto: udp, vip: 10.0.0.4, port: 53, scheduler: rr, laddrs: [192.168.10.101], dests: [{addr: 192.168.10.2, port: 5353, fwd: fullnat}]}
  - {proto: tcp, vip: 10.0.0.5, port: 0, persistent: 300, netmask: 255.255.255.0, scheduler: lc, dests: [{addr: 192.168.10.3, fwd: masq}]}
  - {proto: udp, vip: 10.0.0.6, port: 53, ops: true, scheduler: rr, dests: [{addr: 192.168.10.1, fwd: masq}]}
  - {proto: tcp, vip: "2001:db8::1", port: 80, scheduler: rr, dests: [{addr: "2001:db8:10::1", port: 8080, fwd: masq}]}
  - {proto: tcp, vip: "2001:db8::2", port: 80, scheduler: rr, dests: [{addr: "2001:db8:10::1", fwd: route}]}
  - {proto: tcp, vip: "2001:db8::3", port: 80, scheduler: rr, dests: [{addr: "2001:db8:10::1", fwd: tunnel}]}
  - {proto: tcp, vip: "2001:db8::4", port: 80, scheduler: rr, laddrs: ["2001:db8:10::100"], dests: [{addr: "2001:db8:10::1", port: 8080, fwd: fullnat}]}
  - {proto: tcp, vip: 10.0.0.7, port: 80, scheduler: rr, synproxy: true, dests: [{addr: 192.168.10.1, port: 8080, fwd: masq}]}
  - {proto: tcp, vip: 10.0.0.8, port: 80, scheduler: rr, synproxy: true, laddrs: [192.168.10.102], dests: [{addr: 192.168.10.2, port: 8080, fwd: fullnat}]}
"#;

/// The control state of [`BASE_CONFIG`] (parsed once, cloned per input).
pub fn base_state() -> ControlState {
    static STATE: OnceLock<ControlState> = OnceLock::new();
    STATE
        .get_or_init(|| {
            Config::from_yaml(BASE_CONFIG)
                .and_then(|c| c.check())
                .expect("the fuzz base configuration is valid")
        })
        .clone()
}

fn base_snapshot() -> Arc<Snapshot> {
    static SNAP: OnceLock<Arc<Snapshot>> = OnceLock::new();
    SNAP.get_or_init(|| {
        Arc::new(
            base_state()
                .snapshot()
                .expect("the fuzz base snapshot builds"),
        )
    })
    .clone()
}

/// Most frames per input.
const MAX_FRAMES: usize = 96;

/// A burst of arbitrary frames through a real [`Worker`] on the `mem`
/// driver running [`BASE_CONFIG`]. The input is a sequence of
/// `[port: u8][len: u16 BE][frame: len bytes]` records (port = low bit; a
/// short last record takes what is left); the second half is delivered
/// after the clock moved 2 s (so retransmissions, state changes and
/// expiry run on existing connections). Between the halves, every cookie
/// SYN-ACK the director sent (SYN proxy services 10.0.0.7 and 10.0.0.8) is
/// answered with the client's ACK, so the second half meets connections in
/// their server handshake (held data, the server's SYN-ACK, SYN
/// retransmissions). Invariants: every frame is counted
/// received; drops never exceed receptions; everything transmitted is a
/// well-formed Ethernet frame within the egress port's MTU, with a valid
/// IPv4 header checksum when it is IPv4.
pub fn worker_burst(data: &[u8]) {
    let snap = base_snapshot();
    let mut frames: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    let mut rest = data;
    let mut count = 0;
    while rest.len() >= 3 && count < MAX_FRAMES {
        let port = usize::from(rest[0] & 1);
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        frames[port].push(rest[3..3 + len].to_vec());
        rest = &rest[3 + len..];
        count += 1;
    }
    let [ext, int] = frames;
    let half = |v: &Vec<Vec<u8>>| v.len() / 2;
    let (ext_a, ext_b) = ext.split_at(half(&ext));
    let (int_a, int_b) = int.split_at(half(&int));
    let cfg = WorkerConfig {
        conn_capacity: 256,
        neigh_capacity: 64,
        ..WorkerConfig::default()
    };
    let links = Links::new(1);
    let queues = vec![
        MemQueue::scripted(ext_a.to_vec()),
        MemQueue::scripted(int_a.to_vec()),
    ];
    let mut worker = Worker::new(cfg, queues, links, snap.clone());
    let mut sent: Vec<(usize, Vec<u8>)> = Vec::new();
    let drain = |worker: &mut Worker<MemQueue>, sent: &mut Vec<(usize, Vec<u8>)>| {
        for _ in 0..8 {
            if worker.poll_once() == 0 {
                break;
            }
        }
        worker.flush_all();
        for (port, q) in worker.queues_mut().iter_mut().enumerate() {
            sent.extend(q.take_sent().into_iter().map(|f| (port, f)));
        }
    };
    drain(&mut worker, &mut sent);
    let acks: Vec<Vec<u8>> = sent
        .iter()
        .filter(|(port, _)| *port == 0)
        .filter_map(|(_, f)| cookie_ack(f))
        .collect();
    count += acks.len();
    for a in acks {
        worker.queues_mut()[0].inject(a);
    }
    drain(&mut worker, &mut sent);
    worker.advance_clock(Duration::from_secs(2));
    for f in ext_b {
        worker.queues_mut()[0].inject(f.clone());
    }
    for f in int_b {
        worker.queues_mut()[1].inject(f.clone());
    }
    drain(&mut worker, &mut sent);
    worker.advance_clock(Duration::from_secs(1000));
    drain(&mut worker, &mut sent);

    let c = worker.counters();
    let rx = c.rx_packets.load(Ordering::Relaxed);
    assert_eq!(rx, count as u64, "every frame is received once");
    let drops: u64 = c.drops.iter().map(|d| d.load(Ordering::Relaxed)).sum();
    assert!(drops <= rx, "{drops} drops for {rx} frames");
    for (port, frame) in &sent {
        let mtu = usize::from(snap.ports[*port].mtu);
        let l2 = wire::parse_l2(frame).expect("a transmitted frame parses");
        assert!(
            frame.len() - l2.l3_offset <= mtu,
            "a {}-byte packet sent on a port with MTU {mtu}",
            frame.len() - l2.l3_offset
        );
        if l2.ethertype == ethertype::IPV4 {
            let ip = Ipv4Packet::new_checked(&frame[l2.l3_offset..])
                .expect("a transmitted IPv4 packet checks");
            assert!(ip.verify_checksum(), "transmitted IPv4 header checksum");
        } else if l2.ethertype == ethertype::IPV6 {
            Ipv6Packet::new_checked(&frame[l2.l3_offset..])
                .expect("a transmitted IPv6 packet checks");
        }
    }
}

/// The client's ACK to an IPv4 SYN-ACK `f` the director sent (echoing its
/// timestamp), or `None` if `f` is no SYN-ACK.
fn cookie_ack(f: &[u8]) -> Option<Vec<u8>> {
    let l2 = wire::parse_l2(f).ok()?;
    if l2.ethertype != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&f[l2.l3_offset..]).ok()?;
    if ip.next_header() != ip_proto::TCP {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let synack = crate::wire::TcpFlags(crate::wire::TcpFlags::SYN.0 | crate::wire::TcpFlags::ACK.0);
    if tcp.flags() != synack {
        return None;
    }
    let eth = EthernetFrame::new_checked(f).ok()?;
    let mut opts = Vec::new();
    // The director's SYN-ACK options: MSS (4), then NOP NOP TS or SACK TS.
    let o = tcp.options();
    if let Some(i) = o.windows(2).position(|w| w == [8, 10]) {
        if let Some(tsval) = o.get(i + 2..i + 6) {
            opts.extend_from_slice(&[1, 1, 8, 10]);
            opts.extend_from_slice(&0x0102_0304u32.to_be_bytes());
            opts.extend_from_slice(tsval);
        }
    }
    Some(
        crate::wire::builder::PacketBuilder::ethernet(eth.dst_addr(), eth.src_addr())
            .ipv4(ip.dst_addr(), ip.src_addr())
            .tcp(tcp.dst_port(), tcp.src_port())
            .flags(crate::wire::TcpFlags::ACK)
            .seq(tcp.ack_number())
            .ack(tcp.seq_number().wrapping_add(1))
            .tcp_options(&opts)
            .build(),
    )
}

// --------------------------------------------------------------- ipvsadm

/// What a refused change must leave untouched.
fn observable(state: &ControlState) -> impl PartialEq + std::fmt::Debug {
    (
        state.generation(),
        state.services().to_vec(),
        state.timeouts(),
    )
}

/// A change applied to `state`; when refused, `state` is unchanged.
fn apply_checked(state: &mut ControlState, request: &Request) {
    let before = observable(state);
    if state.apply(request).is_err() {
        assert_eq!(
            observable(state),
            before,
            "a refused change changed nothing"
        );
    }
}

/// `lbctl -S` of a state.
fn rules(state: &ControlState) -> String {
    let services: Vec<ServiceInfo> = state
        .services()
        .iter()
        .map(|s| ServiceInfo {
            spec: s.spec.clone(),
            dests: s
                .dests
                .iter()
                .map(|d| protocol::DestInfo {
                    spec: d.spec.clone(),
                    active_conns: 0,
                    inactive_conns: 0,
                    persist_conns: 0,
                    stats: Default::default(),
                    rates: Default::default(),
                })
                .collect(),
            laddrs: s
                .laddrs
                .iter()
                .map(|l| protocol::LaddrInfo {
                    addr: l.addr,
                    ifname: l.ifname.clone(),
                    port_conflicts: 0,
                    conns: 0,
                })
                .collect(),
            stats: Default::default(),
            rates: Default::default(),
        })
        .collect();
    ipvsadm::format::render_rules(&services)
}

/// The ipvsadm command-line parser: each input line is one `lbctl` command
/// line (whitespace-separated words), parsed and, when it is a change,
/// applied to [`BASE_CONFIG`]'s control state. Invariants: a refused
/// change changes nothing; afterwards `lbctl -S` of the table restores
/// (`-C; -R`) into an identical table (same `-S` text).
pub fn ipvsadm(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut state = base_state();
    for line in text.lines().take(32) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let command = ipvsadm::parse_args(&words);
        if let Ok(Command::Apply(request)) = command {
            apply_checked(&mut state, &request);
        }
        if let Ok(Some(request)) = ipvsadm::parse_restore_line(line) {
            apply_checked(&mut state, &request);
        }
    }
    let saved = rules(&state);
    let requests = ipvsadm::parse_restore(&saved)
        .unwrap_or_else(|e| panic!("lbctl -S output does not restore: {e}\n{saved}"));
    let mut restored = ControlState::new(state.topology().clone(), state.settings())
        .expect("an empty state on the same topology");
    restored
        .apply(&Request::Batch { requests })
        .unwrap_or_else(|e| panic!("lbctl -S output is refused by -R: {e}\n{saved}"));
    assert_eq!(rules(&restored), saved, "-S; -C; -R keeps the table");
}

// -------------------------------------------------------------- protocol

/// The control protocol decoder: the input is a byte stream as a client
/// would send it (frames of 4-byte length + JSON). Every frame is read with
/// the server's `read_frame`, decoded as a request and as a response; a
/// decoded message re-encodes to one that decodes equal; a decoded change
/// is applied to [`BASE_CONFIG`]'s state, and if refused, changes nothing.
pub fn protocol(data: &[u8]) {
    let mut stream = Cursor::new(data);
    let mut state: Option<ControlState> = None;
    for _ in 0..16 {
        let Ok(payload) = protocol::read_frame(&mut stream) else {
            break;
        };
        if let Ok(request) = protocol::decode_request(&payload) {
            let bytes = protocol::encode_request(&request).expect("a decoded request encodes");
            let again = protocol::decode_request(&bytes).expect("an encoded request decodes");
            assert_eq!(again, request, "request round trip");
            if request.is_change() || matches!(request, Request::Batch { .. }) {
                apply_checked(state.get_or_insert_with(base_state), &request);
            }
        }
        if let Ok(response) = protocol::decode_response(&payload) {
            let bytes = protocol::encode_response(&response).expect("a decoded response encodes");
            let again = protocol::decode_response(&bytes).expect("an encoded response decodes");
            assert_eq!(again, response, "response round trip");
        }
    }
}

// ---------------------------------------------------------------- config

/// The YAML configuration: `Config::from_yaml`, then `check` as
/// `lbd --check-config` does. Invariants: parsing is deterministic; a
/// configuration that checks builds its snapshot (what workers would run),
/// and its tables survive `lbctl -S; -C; -R`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_yaml(text) else {
        return;
    };
    assert_eq!(
        Config::from_yaml(text).as_ref().ok(),
        Some(&config),
        "parsing is deterministic"
    );
    let Ok(state) = config.check() else {
        return;
    };
    if let Err(e) = state.snapshot() {
        panic!("a configuration that checks has no snapshot: {e}");
    }
}

// ------------------------------------------------------------ keepalived

/// keepalived.conf text (includes disabled: the input names no files):
/// lexer → tree → model → conversion. Invariants: reading is
/// deterministic; every diagnostic names a line of the input; the exit
/// code agrees with whether lbd would start; a file lbd would start from
/// converts (or is refused with diagnostics), and what converts checks or
/// is refused with an error (never a panic).
pub fn keepalived(data: &[u8]) {
    use crate::keepalived::{diag::Severity, lexer::LexOptions, load_text, to_config};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = LexOptions {
        config_id: "main".to_string(),
        includes: false,
    };
    let name = std::path::Path::new("/nonexistent/keepalived.conf");
    let (conf, diags) = load_text(name, text, &opts);
    assert_eq!(
        load_text(name, text, &opts),
        (conf.clone(), diags.clone()),
        "reading is deterministic"
    );
    let lines = u32::try_from(text.lines().count()).unwrap_or(u32::MAX);
    for d in &diags.0 {
        let loc = d
            .loc
            .as_ref()
            .expect("every diagnostic of a text has a line");
        assert!(
            (1..=lines.max(1)).contains(&loc.line),
            "{d}: line outside the input"
        );
    }
    let start = diags.can_start();
    assert_eq!(
        start,
        !diags
            .0
            .iter()
            .any(|d| matches!(d.severity, Severity::Fatal | Severity::StrictInclude)),
    );
    assert!(!start || [0, 5, 6].contains(&diags.exit_code()));
    if start {
        let mut diags = diags;
        let config = to_config::to_config(&conf, Config::default(), false, &mut diags);
        if diags.can_start() {
            let _ = config.check();
        }
    }
}

// ------------------------------------------------------------- ipvs_sync

/// IPVS sync v1 messages as a backup reads them (`sync::service`): a
/// message that checks yields entries that parse or are refused; each
/// parsed entry, emitted again, parses to the same representation (less
/// the never-sent HASHED flag and options rvs does not keep); an entry the
/// backup would install survives `to_repr` → `from_repr` unchanged.
pub fn ipvs_sync(data: &[u8]) {
    use crate::sync::export::SyncEntry;
    use crate::wire::ipvs_sync::{flags, SyncConn, SyncConnRepr, SyncMessage};
    let Ok(msg) = SyncMessage::new_checked(data) else {
        return;
    };
    for r in msg.conns().flatten() {
        let mut buf = vec![0u8; r.padded_len()];
        r.emit(&mut SyncConn::new_unchecked(&mut buf[..]));
        let c = SyncConn::new_checked(&buf[..]).expect("an emitted entry checks");
        let back = SyncConnRepr::parse(&c).expect("an emitted entry parses");
        let want = SyncConnRepr {
            flags: r.flags & !flags::HASHED,
            ..r
        };
        assert_eq!(back, want, "entry round trip");
        if let Ok(e) = SyncEntry::from_repr(&r) {
            assert_eq!(
                SyncEntry::from_repr(&e.to_repr()),
                Ok(e),
                "entry record round trip"
            );
        }
    }
}

// ------------------------------------------------------------------ vrrp

/// The two instances the VRRP target checks adverts against (keepalived's
/// receive checks, `vrrp::state::Instance::receive{,_v6}`): a VRRPv2 one
/// over IPv4 with PASS authentication, and a VRRPv3 one over IPv6.
pub fn vrrp_instances() -> Vec<crate::vrrp::conf::InstanceSpec> {
    use crate::vrrp::conf::{PortInfo, VrrpConf};
    let yaml = "instances:\n\
        - name: V2\n  interface: ext\n  virtual_router_id: 51\n  priority: 100\n\
        \x20 authentication: {auth_type: PASS, auth_pass: \"1111\"}\n\
        \x20 virtual_ipaddress: [10.99.0.38, 10.99.0.39]\n\
        - name: V3\n  interface: ext\n  virtual_router_id: 52\n  priority: 100\n\
        \x20 version: 3\n  advert_int: 0.5\n\
        \x20 unicast_src_ip: fe80::11\n\
        \x20 virtual_ipaddress: [\"2001:db8::38\"]\n";
    let conf: VrrpConf = serde_yaml_ng::from_str(yaml).expect("the target's VRRP YAML");
    let ports = [PortInfo {
        name: "ext".into(),
        kernel_if: Some("kext".into()),
        addrs: vec!["10.99.0.11".parse().expect("addr")],
        linux_if: None,
    }];
    conf.resolve(&ports).expect("the target's VRRP instances")
}

/// VRRP: the advert view and representation on the raw bytes as either
/// family (a parsed advert emits, checksums and parses back to itself), and
/// the receive checks of a started instance on the bytes as an IPv4 packet
/// (v2) and as an IPv6 message (v3). Every packet gets exactly one outcome,
/// counted once; an advert is accepted only when it names the instance's
/// VRID, version, authentication and exactly its addresses.
pub fn vrrp(data: &[u8]) {
    use crate::vrrp::state::{Instance, Received, Reject};
    use crate::wire::{VrrpPacket, VrrpRepr};
    use std::net::IpAddr;

    let src6: IpAddr = "fe80::22".parse().expect("addr");
    let dst6: IpAddr = IpAddr::V6(crate::wire::vrrp::MCAST_V6);
    for family in [IpFamily::V4, IpFamily::V6] {
        let Ok(p) = VrrpPacket::new_checked(data, family) else {
            continue;
        };
        let Ok(repr) = VrrpRepr::parse(&p) else {
            continue;
        };
        let (src, dst) = match family {
            IpFamily::V4 => (
                "10.99.0.22".parse().expect("addr"),
                IpAddr::V4(crate::wire::vrrp::MCAST_V4),
            ),
            IpFamily::V6 => (src6, dst6),
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut out = VrrpPacket::new_unchecked(&mut buf[..], family);
        repr.emit(&mut out, &src, &dst);
        let back = VrrpPacket::new_checked(&buf[..], family).expect("an emitted advert checks");
        match repr.version {
            2 => assert!(
                back.verify_checksum_v2(),
                "v2 checksum of an emitted advert"
            ),
            3 => assert!(back.verify_checksum_v3(&src, &dst), "v3 checksum"),
            _ => {}
        }
        assert_eq!(
            VrrpRepr::parse(&back).as_ref(),
            Ok(&repr),
            "advert round trip"
        );
    }

    for spec in vrrp_instances() {
        let mut inst = Instance::new(spec.clone());
        inst.start(0);
        let (received, rejects) = (inst.received(), inst.rejects().iter().sum::<u64>());
        let (outcome, msg) = if spec.version == 2 {
            let msg = Ipv4Packet::new_checked(data)
                .ok()
                .map(|p| p.payload().to_vec());
            (inst.receive(1_000, data), msg)
        } else {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (src6, dst6) else {
                unreachable!("IPv6 addresses")
            };
            (inst.receive_v6(1_000, s, d, 255, data), Some(data.to_vec()))
        };
        let rejected_now = inst.rejects().iter().sum::<u64>() - rejects;
        match outcome {
            Received::Advert(_) => {
                assert_eq!(
                    (inst.received(), rejected_now),
                    (received + 1, 0),
                    "one advert"
                );
                let msg = msg.expect("an accepted advert is an IP packet");
                let family = if spec.src.is_ipv4() {
                    IpFamily::V4
                } else {
                    IpFamily::V6
                };
                let p = VrrpPacket::new_checked(&msg[..], family).expect("accepted → checks");
                let r = VrrpRepr::parse(&p).expect("accepted → parses");
                assert_eq!((r.version, r.vrid), (spec.version, spec.vrid), "{r:?}");
                assert_eq!(
                    r.addrs.len(),
                    spec.vips.len(),
                    "accepted with another count"
                );
                assert!(
                    r.addrs.iter().all(|a| spec.vips.contains(a)),
                    "accepted with an address not ours: {r:?}"
                );
                if spec.version == 2 {
                    assert_eq!(r.auth, spec.auth, "accepted with another password");
                }
            }
            Received::Rejected(reason) => {
                assert_eq!((inst.received(), rejected_now), (received, 1), "one reject");
                assert_eq!(inst.rejected(reason), 1, "{reason:?} counted");
                assert!(Reject::ALL.contains(&reason));
            }
            Received::OtherVrid => {
                assert_eq!(
                    (inst.received(), rejected_now),
                    (received, 0),
                    "nothing counted"
                );
            }
        }
    }
}
