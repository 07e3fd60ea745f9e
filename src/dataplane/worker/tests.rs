//! Unit tests of the worker's stages: each stage on built packets, through
//! the stage's own function where it has one, else through a worker on the
//! `mem` driver.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::classify::{classify, Class};
use super::links::flow_owner;
use super::tx::{NextHop, NhCache, TxBuffers};
use super::{Links, Msg, Worker, WorkerConfig};
use crate::conntrack::{addr_from_ip, prefix_mask, Fwd, Timeouts, Tuple};
use crate::dataplane::counters::{CoreCounters, DropReason};
use crate::dataplane::driver::heapbuf::HeapBuf;
use crate::dataplane::driver::mem::MemQueue;
use crate::dataplane::driver::BURST_SIZE;
use crate::dataplane::neigh::NeighUpdate;
use crate::dataplane::route::{Route, RouteTable};
use crate::dataplane::snapshot::{Dest, PortConf, Service, Settings, Snapshot};
use crate::sched::{DestView, Scheduler};
use crate::wire::builder::PacketBuilder;
use crate::wire::{checksum, EthernetAddress, TcpFlags};

const EXT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const INT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 1]);
const ROUTER_MAC: EthernetAddress = EthernetAddress([2, 0xaa, 0, 0, 0, 1]);
const RS_MAC_A: EthernetAddress = EthernetAddress([2, 0xb1, 0, 0, 0, 1]);
const RS_MAC_B: EthernetAddress = EthernetAddress([2, 0xb1, 0, 0, 0, 2]);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// A service with one real server at 192.168.10.1.
fn service(id: u16, vip: &str, vport: u16, fwd: Fwd, persistent: bool) -> Service {
    let dests = vec![Dest {
        id,
        addr: ip("192.168.10.1"),
        port: if fwd == Fwd::Nat { 8080 } else { vport },
        fwd,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    }];
    let views: Vec<DestView> = dests
        .iter()
        .map(|d| DestView {
            weight: d.weight,
            u_threshold: 0,
            l_threshold: 0,
            available: true,
            last_weight: 1,
            id: d.id as u32,
            addr: addr_from_ip(&d.addr),
            port: d.port,
        })
        .collect();
    let sched = Scheduler::build("rr", &[], &views).expect("scheduler");
    let laddrs = if fwd == Fwd::FullNat {
        vec![ip("192.168.10.100")]
    } else {
        Vec::new()
    };
    Service {
        id,
        proto: 6,
        vip: ip(vip),
        vport,
        sched: Arc::new(sched),
        persistent: persistent.then_some(300),
        netmask: prefix_mask(false, 24),
        ops: false,
        dests,
        views,
        laddrs,
        synproxy: false,
        synproxy_capable: false,
        sloppy_tcp: None,
    }
}

/// Two ports (ext 10.0.0.0/24, int 192.168.10.0/24); a NAT, a persistent
/// NAT and a FULLNAT service; the real server's MAC is `rs_mac`.
fn snapshot(generation: u64, workers: u16, rs_mac: EthernetAddress) -> Arc<Snapshot> {
    let ports = vec![
        PortConf {
            name: "ext".into(),
            mac: EXT_MAC,
            mtu: 1500,
            addrs: vec![(ip("10.0.0.254"), 24)],
            rss: None,
        },
        PortConf {
            name: "int".into(),
            mac: INT_MAC,
            mtu: 1500,
            addrs: vec![(ip("192.168.10.254"), 24)],
            rss: None,
        },
    ];
    let route = |prefix: &str, len, port, via: Option<&str>| Route {
        prefix: ip(prefix),
        len,
        port,
        via: via.map(ip),
    };
    let routes = RouteTable::new(vec![
        route("10.0.0.0", 24, 0, None),
        route("192.168.10.0", 24, 1, None),
        route("0.0.0.0", 0, 0, Some("10.0.0.1")),
    ])
    .expect("routes");
    let neigh = vec![
        NeighUpdate {
            addr: ip("10.0.0.1"),
            mac: ROUTER_MAC,
            port: 0,
        },
        NeighUpdate {
            addr: ip("192.168.10.1"),
            mac: rs_mac,
            port: 1,
        },
    ];
    Arc::new(Snapshot::new(
        generation,
        workers,
        ports,
        vec![
            service(1, "10.0.0.1", 80, Fwd::Nat, false),
            service(2, "10.0.0.2", 80, Fwd::Nat, true),
            service(3, "10.0.0.4", 80, Fwd::FullNat, false),
        ],
        routes,
        neigh,
        Timeouts::default(),
        Settings::default(),
    ))
}

/// A client → VIP TCP frame.
fn to_vip(vip: &str, cport: u16, flags: TcpFlags) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4("203.0.113.7".parse().expect("a"), vip.parse().expect("a"))
        .tcp(cport, 80)
        .flags(flags)
        .payload(b"hi")
        .build()
}

/// Rewrite the IPv4 header checksum of an untagged frame after a change.
fn fix_ip_checksum(f: &mut [u8]) {
    f[24..26].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

fn drop_reason(c: Class) -> Option<DropReason> {
    match c {
        Class::Drop(r) => Some(r),
        _ => None,
    }
}

#[test]
fn classify_gives_tcp_to_our_mac_its_tuple_and_flags() {
    let snap = snapshot(1, 1, RS_MAC_A);
    let f = to_vip("10.0.0.1", 40000, TcpFlags::SYN);
    let Class::L4 {
        lay, tuple, flags, ..
    } = classify(&f, &snap, 0)
    else {
        panic!("an L4 packet");
    };
    assert_eq!((lay.l3, lay.l4, lay.v6, lay.proto), (14, 34, false, 6));
    assert_eq!(tuple.sport, 40000);
    assert_eq!(tuple.dport, 80);
    assert_eq!(tuple.dst, addr_from_ip(&ip("10.0.0.1")));
    assert_eq!(flags, TcpFlags::SYN.0);
}

#[test]
fn classify_drops_unicast_for_another_mac_as_not_for_us() {
    let snap = snapshot(1, 1, RS_MAC_A);
    let f = to_vip("10.0.0.1", 40000, TcpFlags::SYN);
    // Port 1's MAC is INT_MAC: the frame addressed to EXT_MAC is not ours.
    assert_eq!(
        drop_reason(classify(&f, &snap, 1)),
        Some(DropReason::NotForUs)
    );
}

#[test]
fn classify_drops_bad_header_checksum_and_fragments_with_their_reasons() {
    let snap = snapshot(1, 1, RS_MAC_A);
    let mut f = to_vip("10.0.0.1", 40000, TcpFlags::SYN);
    f[24] ^= 0xff;
    assert_eq!(
        drop_reason(classify(&f, &snap, 0)),
        Some(DropReason::BadChecksum)
    );
    // A TCP first fragment is classified with its tuple; one at offset 8
    // (RFC 1858: could overwrite the flags) and a first fragment shorter
    // than its TCP header are refused as `fragment`.
    let mut f = to_vip("10.0.0.1", 40000, TcpFlags::SYN);
    f[20] |= 0x20; // more fragments
    fix_ip_checksum(&mut f);
    let Class::Frag {
        lay,
        first: Some(first),
        ..
    } = classify(&f, &snap, 0)
    else {
        panic!("a first fragment");
    };
    assert_eq!(
        (lay.proto, first.tuple.sport, first.flags),
        (6, 40000, TcpFlags::SYN.0)
    );
    let mut g = f.clone();
    g[21] = 1; // offset 8 bytes
    fix_ip_checksum(&mut g);
    assert_eq!(
        drop_reason(classify(&g, &snap, 0)),
        Some(DropReason::Fragment)
    );
    let mut g = f.clone();
    g[16..18].copy_from_slice(&36u16.to_be_bytes()); // 20 IP + 16 TCP bytes
    fix_ip_checksum(&mut g);
    assert_eq!(
        drop_reason(classify(&g[..50], &snap, 0)),
        Some(DropReason::Fragment)
    );
}

#[test]
fn classify_sends_arp_to_the_control_path_and_refuses_unknown_ethertypes() {
    let snap = snapshot(1, 1, RS_MAC_A);
    let mut f = to_vip("10.0.0.1", 40000, TcpFlags::SYN);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(classify(&f, &snap, 0), Class::Arp);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    assert_eq!(
        drop_reason(classify(&f, &snap, 0)),
        Some(DropReason::UnsupportedProto)
    );
    assert_eq!(
        drop_reason(classify(&f[..10], &snap, 0)),
        Some(DropReason::Malformed)
    );
}

#[test]
fn tx_buffer_flushes_when_it_holds_a_burst() {
    let counters = CoreCounters::new();
    let mut queues = vec![MemQueue::scripted(Vec::new())];
    let mut tx = TxBuffers::new(1);
    for i in 0..BURST_SIZE - 1 {
        tx.enqueue(
            &mut queues,
            &counters,
            0,
            HeapBuf::from_slice(&[i as u8]),
            0,
        );
    }
    assert_eq!(tx.waiting(0), BURST_SIZE - 1);
    assert!(queues[0].take_sent().is_empty(), "nothing sent before");
    tx.enqueue(&mut queues, &counters, 0, HeapBuf::from_slice(&[0xff]), 0);
    assert_eq!(tx.waiting(0), 0);
    assert_eq!(queues[0].take_sent().len(), BURST_SIZE);
    assert_eq!(
        counters.tx_packets.load(Ordering::Relaxed),
        BURST_SIZE as u64
    );
}

#[test]
fn tx_buffer_flushes_at_its_deadline_counted_from_its_oldest_packet() {
    let counters = CoreCounters::new();
    let mut queues = vec![MemQueue::scripted(Vec::new())];
    let mut tx = TxBuffers::new(1);
    let deadline = 100_000;
    tx.enqueue(&mut queues, &counters, 0, HeapBuf::from_slice(&[1]), 1_000);
    tx.enqueue(&mut queues, &counters, 0, HeapBuf::from_slice(&[2]), 50_000);
    tx.flush_due(&mut queues, &counters, 1_000 + deadline - 1, deadline);
    assert_eq!(tx.waiting(0), 2, "not yet due");
    tx.flush_due(&mut queues, &counters, 1_000 + deadline, deadline);
    assert_eq!(tx.waiting(0), 0);
    assert_eq!(queues[0].take_sent(), vec![vec![1u8], vec![2u8]]);
}

#[test]
fn tx_to_a_port_without_a_buffer_is_dropped_as_no_route() {
    let counters = CoreCounters::new();
    let mut queues = vec![MemQueue::scripted(Vec::new())];
    let mut tx = TxBuffers::new(1);
    tx.enqueue(&mut queues, &counters, 3, HeapBuf::from_slice(&[1]), 0);
    assert_eq!(counters.drops_of(DropReason::NoRoute), 1);
    assert!(tx.is_empty());
}

#[test]
fn next_hop_cache_hits_until_invalidated_or_a_new_second() {
    let dst = ip("192.168.10.1");
    let a = addr_from_ip(&dst);
    let slot = NhCache::slot(&a);
    let hop = NextHop {
        port: 1,
        mac: RS_MAC_A,
        src: INT_MAC,
    };
    let mut nh = NhCache::new();
    assert_eq!(nh.get(slot, &a, false), None);
    nh.fill(slot, &dst, hop);
    assert_eq!(nh.get(slot, &a, false), Some(hop));
    assert_eq!(
        nh.get(slot, &a, true),
        None,
        "the family is part of the key"
    );
    nh.invalidate();
    assert_eq!(nh.get(slot, &a, false), None);
    nh.fill(slot, &dst, hop);
    nh.on_clock(999_999_999);
    assert_eq!(nh.get(slot, &a, false), Some(hop), "same second");
    nh.on_clock(1_000_000_000);
    assert_eq!(nh.get(slot, &a, false), None, "a new second");
}

/// A one-worker NAT world: client frames in on port 0, what left port 1.
fn nat_worker(frames: Vec<Vec<u8>>) -> Worker<MemQueue> {
    let links = Links::new(1);
    Worker::new(
        WorkerConfig {
            conn_capacity: 1024,
            ..Default::default()
        },
        vec![MemQueue::scripted(frames), MemQueue::scripted(Vec::new())],
        links,
        snapshot(1, 1, RS_MAC_A),
    )
}

#[test]
fn a_new_snapshot_invalidates_the_next_hop_cache() {
    let mut w = nat_worker(vec![to_vip("10.0.0.1", 40000, TcpFlags::SYN)]);
    w.poll_once();
    w.flush_all();
    let sent = w.queues_mut()[1].take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][..6], RS_MAC_A.0, "to the real server's MAC");
    // The real server moved to another MAC; the same flow goes there at once.
    w.install(snapshot(2, 1, RS_MAC_B));
    w.queues_mut()[0].inject(to_vip("10.0.0.1", 40000, TcpFlags::ACK));
    w.poll_once();
    w.flush_all();
    let sent = w.queues_mut()[1].take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][..6], RS_MAC_B.0, "not the cached old MAC");
}

#[test]
fn install_through_the_mailbox_swaps_the_snapshot_and_acks_its_generation() {
    let mut w = nat_worker(Vec::new());
    let counters = w.counters().clone();
    assert_eq!(counters.generation.load(Ordering::Acquire), 1);
    let links = w.links.clone();
    assert!(links
        .post(0, Msg::Snapshot(snapshot(7, 1, RS_MAC_B)))
        .is_ok());
    assert_eq!(w.snapshot().generation, 1, "nothing before the next pass");
    w.poll_once();
    assert_eq!(w.snapshot().generation, 7);
    assert_eq!(counters.generation.load(Ordering::Acquire), 7);
}

#[test]
fn byte_counters_count_the_ip_datagram_as_ipvs_does_without_ethernet_header_or_padding() {
    // 14 Ethernet + 20 IP + 20 TCP + 2 payload = 56, padded to the 60-byte
    // Ethernet minimum: IPVS counts the 42-byte IP datagram.
    let mut frame = to_vip("10.0.0.1", 40000, TcpFlags::SYN);
    assert_eq!(frame.len(), 56);
    frame.resize(60, 0);
    let mut w = nat_worker(vec![frame, to_vip("10.0.0.1", 40000, TcpFlags::ACK)]);
    w.poll_once();
    w.flush_all();
    assert_eq!(w.queues_mut()[1].take_sent().len(), 2, "both forwarded");
    let sum = |v: &[crate::dataplane::counters::TrafficCounters]| {
        v.iter().fold((0, 0), |(p, b), t| {
            let t = t.read();
            (p + t.inpkts, b + t.inbytes)
        })
    };
    assert_eq!(sum(&w.counters().services), (2, 2 * 42), "service");
    assert_eq!(sum(&w.counters().dests), (2, 2 * 42), "real server");
}

/// A one-worker NAT world with a `capacity`-entry table and `settings`.
fn defense_worker(capacity: u32, settings: Settings) -> Worker<MemQueue> {
    let mut snap = (*snapshot(1, 1, RS_MAC_A)).clone();
    snap.settings = settings;
    Worker::new(
        WorkerConfig {
            conn_capacity: capacity,
            ..Default::default()
        },
        vec![
            MemQueue::scripted(Vec::new()),
            MemQueue::scripted(Vec::new()),
        ],
        Links::new(1),
        Arc::new(snap),
    )
}

/// Client frames from ports `ports` to 10.0.0.1:80, all processed.
fn send_flows(w: &mut Worker<MemQueue>, ports: std::ops::Range<u16>, flags: TcpFlags) {
    for p in ports {
        w.queues_mut()[0].inject(to_vip("10.0.0.1", p, flags));
    }
    for _ in 0..1000 {
        if w.poll_once() == 0 {
            break;
        }
    }
    w.flush_all();
}

#[test]
fn drop_packet_always_drops_one_new_flow_in_am_droprate_and_counts_it() {
    let settings = Settings {
        drop_packet: 3,
        am_droprate: 2,
        ..Settings::default()
    };
    let mut w = defense_worker(1024, settings);
    send_flows(&mut w, 40000..40010, TcpFlags::SYN);
    assert_eq!(w.counters().drops_of(DropReason::DropPacket), 5);
    assert_eq!(w.conns().len(), 5, "the other half scheduled");
    // Packets of the flows that got in are not new connections: never dropped.
    let before = w.queues_mut()[1].take_sent().len();
    assert_eq!(before, 5);
    send_flows(&mut w, 40000..40010, TcpFlags::ACK);
    assert_eq!(w.counters().drops_of(DropReason::DropPacket), 5);
    assert_eq!(w.queues_mut()[1].take_sent().len(), 5);
}

#[test]
fn drop_packet_auto_starts_above_defense_percent_at_the_ipvs_rate() {
    let settings = Settings {
        drop_packet: 1,
        defense_percent: 50,
        ..Settings::default()
    };
    let mut w = defense_worker(64, settings);
    let cap = w.conns().capacity();
    assert_eq!(cap, 64);
    // Half full: memory is not low, nothing dropped.
    send_flows(&mut w, 40000..40032, TcpFlags::SYN);
    w.defense_update();
    send_flows(&mut w, 40032..40048, TcpFlags::SYN);
    assert_eq!(w.counters().drops_of(DropReason::DropPacket), 0);
    assert_eq!(w.conns().len(), 48);
    // 16 free of a 32-slot threshold: rate 32 / (32 - 16) = 2.
    w.defense_update();
    send_flows(&mut w, 40048..40058, TcpFlags::SYN);
    assert_eq!(w.counters().drops_of(DropReason::DropPacket), 5);
    assert_eq!(w.conns().len(), 53);
}

#[test]
fn drop_entry_takes_half_open_entries_first_and_idle_established_ones_after_60_s() {
    let settings = Settings {
        drop_entry: 3,
        ..Settings::default()
    };
    let mut w = defense_worker(64, settings);
    // 8 established flows (SYN, then ACK) and 8 half-open ones (SYN only).
    send_flows(&mut w, 40000..40008, TcpFlags::SYN);
    send_flows(&mut w, 40000..40008, TcpFlags::ACK);
    send_flows(&mut w, 41000..41008, TcpFlags::SYN);
    assert_eq!(w.conns().len(), 16);
    let now = w.tick;
    let mut dropped = 0;
    for _ in 0..2000 {
        dropped += w.drop_entries(now);
        if dropped >= 8 {
            break;
        }
    }
    assert_eq!(dropped, 8, "every half-open entry, nothing else");
    assert_eq!(w.conns().len(), 8);
    assert!(w
        .conns()
        .iter()
        .all(|(_, c)| c.state() == crate::conntrack::TcpState::Established));
    // The established ones go only once idle for 60 s.
    let later = now + 61 * crate::conntrack::TICKS_PER_SEC as crate::conntrack::Tick;
    for _ in 0..2000 {
        dropped += w.drop_entries(later);
        if dropped >= 16 {
            break;
        }
    }
    assert_eq!(dropped, 16);
    assert_eq!(w.conns().len(), 0);
    assert_eq!(w.counters().drops_of(DropReason::DropEntry), 16);
}

#[test]
fn tcp_without_syn_starts_no_connection() {
    let mut w = nat_worker(vec![to_vip("10.0.0.1", 40000, TcpFlags::ACK)]);
    w.poll_once();
    assert_eq!(w.conns().len(), 0);
    assert_eq!(w.counters().drops_of(DropReason::NotSyn), 1);
}

#[test]
fn packets_to_no_service_are_local_or_no_service() {
    let mut w = nat_worker(vec![
        to_vip("10.0.0.254", 40000, TcpFlags::SYN),
        to_vip("10.0.0.9", 40000, TcpFlags::SYN),
    ]);
    w.poll_once();
    assert_eq!(w.counters().drops_of(DropReason::Local), 1);
    assert_eq!(w.counters().drops_of(DropReason::NoService), 1);
}

#[test]
fn flow_owner_agrees_with_the_steering_plan_on_random_tuples() {
    for workers in [2u16, 3, 4] {
        let snap = snapshot(1, workers, RS_MAC_A);
        let mut x = 0x1234_5678u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let dsts = ["10.0.0.1", "10.0.0.2", "192.168.10.100", "203.0.113.7"];
        for _ in 0..2000 {
            let r = next();
            let src = IpAddr::from((next() | 1).to_be_bytes());
            let dst = ip(dsts[(r % 4) as usize]);
            let (sport, dport) = (next() as u16, if r & 8 == 0 { 80 } else { next() as u16 });
            let t = Tuple::new(
                6,
                false,
                addr_from_ip(&src),
                sport,
                addr_from_ip(&dst),
                dport,
            );
            let want = snap
                .steer
                .owner(6, &t.src[..4], t.sport, &t.dst[..4], t.dport);
            assert_eq!(flow_owner(&snap, &t, workers), want, "{t:?}");
        }
    }
}

/// VRRP gating (issue #13): while a VIP is on standby (this director is
/// BACKUP) it is neither answered for (ARP) nor forwarded — new and
/// established flows alike, counted as `vrrp_backup` — and both come back
/// with the snapshot that takes it off standby.
#[test]
fn vrrp_standby_vip_is_neither_answered_for_nor_forwarded_until_master() {
    // The router (10.0.0.9 here) asks for the VIP 10.0.0.1.
    let arp = PacketBuilder::ethernet(ROUTER_MAC, EthernetAddress::BROADCAST)
        .arp_request(
            ROUTER_MAC,
            "10.0.0.9".parse().expect("a"),
            "10.0.0.1".parse().expect("a"),
        )
        .build();
    let mut w = nat_worker(vec![to_vip("10.0.0.1", 40000, TcpFlags::SYN)]);
    w.poll_once();
    w.flush_all();
    assert_eq!(w.queues_mut()[1].take_sent().len(), 1, "MASTER forwards");

    let standby = |generation| {
        Arc::new(
            Snapshot::clone(&snapshot(generation, 1, RS_MAC_A))
                .with_vrrp(&[ip("10.0.0.1")], &[ip("10.0.0.1")]),
        )
    };
    w.install(standby(2));
    assert!(w.snapshot().is_standby(&ip("10.0.0.1")));
    assert!(!w.snapshot().is_local(&ip("10.0.0.1")));
    w.queues_mut()[0].inject(to_vip("10.0.0.1", 40000, TcpFlags::ACK));
    w.queues_mut()[0].inject(to_vip("10.0.0.1", 40001, TcpFlags::SYN));
    w.queues_mut()[0].inject(arp.clone());
    // Another VIP, not covered by VRRP, behaves as before.
    w.queues_mut()[0].inject(to_vip("10.0.0.2", 40002, TcpFlags::SYN));
    w.poll_once();
    w.flush_all();
    assert_eq!(w.counters().drops_of(DropReason::VrrpBackup), 2);
    assert!(
        w.queues_mut()[0].take_sent().is_empty(),
        "no ARP answer for a standby VIP"
    );
    assert_eq!(w.queues_mut()[1].take_sent().len(), 1, "10.0.0.2 forwarded");

    w.install(snapshot(3, 1, RS_MAC_A));
    w.queues_mut()[0].inject(to_vip("10.0.0.1", 40000, TcpFlags::ACK));
    w.queues_mut()[0].inject(arp);
    w.poll_once();
    w.flush_all();
    assert_eq!(w.queues_mut()[1].take_sent().len(), 1, "the flow resumes");
    let replies = w.queues_mut()[0].take_sent();
    assert_eq!(replies.len(), 1, "ARP answered again");
    assert_eq!(&replies[0][20..22], &[0, 2]);
    assert_eq!(w.counters().drops_of(DropReason::VrrpBackup), 2);
    // A VRRP VIP without a service is the director's own while MASTER
    // (ARP answered), like keepalived's VIP on its interface.
    let snap = Snapshot::clone(&snapshot(4, 1, RS_MAC_A));
    let master = snap.clone().with_vrrp(&[ip("10.0.0.77")], &[]);
    assert!(master.is_local(&ip("10.0.0.77")));
    let backup = snap.with_vrrp(&[ip("10.0.0.77")], &[ip("10.0.0.77")]);
    assert!(!backup.is_local(&ip("10.0.0.77")));
}

#[test]
fn an_overloaded_real_server_takes_connections_again_once_its_connections_expire() {
    // IPVS clears OVERLOADED when a connection is unbound from its server
    // (`ip_vs_unbind_dest`): with u_threshold 2 and no l_threshold, once the
    // server holds fewer than 3/4 of 2 connections.
    let mut snap = (*snapshot(1, 1, RS_MAC_A)).clone();
    snap.services[0].dests[0].u_threshold = 2;
    snap.services[0].views[0].u_threshold = 2;
    let mut w = Worker::new(
        WorkerConfig::default(),
        vec![
            MemQueue::scripted(Vec::new()),
            MemQueue::scripted(Vec::new()),
        ],
        Links::new(1),
        Arc::new(snap),
    );
    send_flows(&mut w, 40000..40003, TcpFlags::SYN);
    assert_eq!(
        w.conns().len(),
        2,
        "the third SYN finds the server overloaded"
    );
    assert_eq!(w.counters().drops_of(DropReason::NoDest), 1);
    // Both half-open connections time out.
    for _ in 0..600 {
        w.tick += super::ticks(1);
        w.expire();
        if w.conns().is_empty() {
            break;
        }
    }
    assert_eq!(w.conns().len(), 0, "the half-open connections expired");
    send_flows(&mut w, 40010..40011, TcpFlags::SYN);
    assert_eq!(
        w.conns().len(),
        1,
        "with no connection left the server is no longer overloaded"
    );
    assert_eq!(w.counters().drops_of(DropReason::NoDest), 1);
}
