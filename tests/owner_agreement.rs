//! One owner function, four computations of it (DESIGN §5): for random
//! packets — v4 and v6 clients to services with and without persistence
//! masks (and port-0 services), NAT replies, FULLNAT replies to random local
//! ports, traffic to no service — and 2, 3 or 4 workers,
//!
//! * the worker: the one worker that keeps the packet when it lands on each
//!   worker's queue in turn (every other one hands it over, `steered_out`);
//! * the plan the control plane gives the devices ([`SteerPlan::owner`]);
//! * the AF_PACKET driver's classic-BPF fanout program, run by the driver's
//!   cBPF interpreter (kernel semantics);
//! * the DPDK driver's `rte_flow` lport partition ([`LportMatch`]) for
//!   FULLNAT replies, and its RSS: a worker picks local ports whose reply
//!   the NIC's RSS delivers to its own queue.
//!
//! all name the same worker.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use rvs::conntrack::Fwd;
use rvs::dataplane::counters::CoreCounters;
use rvs::dataplane::driver::af_packet::{cbpf, fanout_program};
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::snapshot::Snapshot;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::dataplane::DropReason;
use rvs::steer::rss::{symmetric_rss_key, RssConfig};
use rvs::steer::{lport_owner, LportMatch};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::{EthernetAddress, TcpFlags};

/// A service as drawn: protocol, family, which VIP, port, persistence mask
/// length, FULLNAT or NAT.
#[derive(Debug, Clone)]
struct SvcDraw {
    tcp: bool,
    v6: bool,
    vip: u8,
    vport: u16,
    mask_len: Option<u8>,
    fullnat: bool,
}

fn vip(v6: bool, n: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + n as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10 + n))
    }
}

fn svc_draw() -> impl Strategy<Value = SvcDraw> {
    (
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        prop::sample::select(vec![0u16, 53, 80, 443]),
        prop::option::of(0u8..=128),
        any::<bool>(),
    )
        .prop_map(|(tcp, v6, vip, vport, mask_len, fullnat)| {
            // Port 0 ("every port") is for persistent services only.
            let mask_len = match (vport, mask_len) {
                (0, None) => Some(24),
                (_, m) => m,
            };
            SvcDraw {
                tcp,
                v6,
                vip,
                vport,
                mask_len: mask_len.map(|m| if v6 { m } else { m % 33 }),
                fullnat,
            }
        })
}

/// The services of a topology; one per (protocol, VIP, port). A FULLNAT
/// service has two local addresses of its own (services sharing a local
/// address and a real server could hand out the same reply tuple).
fn topo_of(services: &[SvcDraw], workers: u16, rss: Option<Arc<RssConfig>>) -> Topo {
    let mut t = Topo::empty();
    t.workers = workers;
    t.rss_int = rss;
    let mut seen = Vec::new();
    for s in services {
        let key = (s.tcp, s.v6, s.vip, s.vport);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let proto = if s.tcp { 6 } else { 17 };
        let addr = vip(s.v6, s.vip).to_string();
        let d = t.svc(proto, &addr, s.vport, "rr");
        if let Some(m) = s.mask_len {
            d.persistent(300, m);
        }
        let n = 100 + 2 * seen.len();
        match (s.fullnat, s.v6) {
            (false, false) => d.dest(RS1, 8080, Fwd::Nat, 1),
            (false, true) => d.dest(RS1_6, 8080, Fwd::Nat, 1),
            (true, false) => d
                .dest(RS2, 8080, Fwd::FullNat, 1)
                .laddr(&format!("192.168.10.{n}"))
                .laddr(&format!("192.168.10.{}", n + 1)),
            (true, true) => d
                .dest(RS2_6, 8080, Fwd::FullNat, 1)
                .laddr(&format!("2001:db8:10::{n}"))
                .laddr(&format!("2001:db8:10::{}", n + 1)),
        };
    }
    t
}

/// A packet as drawn: which kind, protocol, family, a client, ports and
/// indexes into the topology.
#[derive(Debug, Clone)]
struct PktDraw {
    kind: u8,
    tcp: bool,
    v6: bool,
    client: [u8; 16],
    cport: u16,
    pick: usize,
    port: u16,
}

fn pkt_draw() -> impl Strategy<Value = PktDraw> {
    (
        0u8..5,
        any::<bool>(),
        any::<bool>(),
        any::<[u8; 16]>(),
        1u16..,
        any::<usize>(),
        1u16..,
    )
        .prop_map(|(kind, tcp, v6, client, cport, pick, port)| PktDraw {
            kind,
            tcp,
            v6,
            client,
            cport,
            pick,
            port,
        })
}

/// A unicast client address of the family from random bytes (IPv4 in
/// 1.0.0.0–223.255.255.255 except 127/8, IPv6 in 2001::/16).
fn client_addr(v6: bool, b: [u8; 16]) -> IpAddr {
    if v6 {
        let mut a = b;
        a[0] = 0x20;
        a[1] = 0x01;
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        let first = match 1 + b[0] % 223 {
            127 => 128,
            n => n,
        };
        IpAddr::V4(Ipv4Addr::new(first, b[1], b[2], b[3]))
    }
}

/// One packet on the wire: arriving port, IP protocol and tuple.
#[derive(Debug, Clone, Copy)]
struct Pkt {
    port: u16,
    proto: u8,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

/// The packet `d` describes in topology `t`.
fn pkt_of(d: &PktDraw, t: &Topo) -> Pkt {
    let client = client_addr(d.v6, d.client);
    let proto = if d.tcp { 6 } else { 17 };
    let (rs, lip) = if d.v6 {
        (ip(RS2_6), ip(LIP6))
    } else {
        (ip(RS2), ip(LIP))
    };
    // The topology's local addresses of the family (LIP if none: then
    // the "reply" is to no local address).
    let lips: Vec<IpAddr> = t
        .services
        .iter()
        .flat_map(|s| s.laddrs.iter().copied())
        .filter(|a| a.is_ipv6() == d.v6)
        .chain(std::iter::once(lip))
        .collect();
    let from_client = |dst: IpAddr, dport: u16| Pkt {
        port: EXT,
        proto,
        src: client,
        sport: d.cport,
        dst,
        dport,
    };
    match d.kind {
        // Client → one of the services (its port, or any port for port 0),
        // in the service's protocol and family.
        0 | 1 if !t.services.is_empty() => {
            let s = &t.services[d.pick % t.services.len()];
            let client = client_addr(s.vip.is_ipv6(), d.client);
            let dport = if s.vport == 0 { d.port } else { s.vport };
            Pkt {
                port: EXT,
                proto: s.proto,
                src: client,
                sport: d.cport,
                dst: s.vip,
                dport,
            }
        }
        // Client → a VIP on a random port (a service or none).
        2 => from_client(vip(d.v6, (d.pick % 3) as u8), d.port),
        // FULLNAT reply: real server → a local address, random local port.
        3 => Pkt {
            port: INT,
            proto,
            src: rs,
            sport: 8080,
            dst: lips[d.pick % lips.len()],
            dport: d.port,
        },
        // NAT reply: real server → client.
        _ => Pkt {
            port: INT,
            proto,
            src: if d.v6 { ip(RS1_6) } else { ip(RS1) },
            sport: 8080,
            dst: client,
            dport: d.cport,
        },
    }
}

fn frame(p: &Pkt) -> Vec<u8> {
    let (from, to): (EthernetAddress, EthernetAddress) = if p.port == EXT {
        (ROUTER_MAC, EXT_MAC)
    } else {
        (RS2_MAC, INT_MAC)
    };
    let b = PacketBuilder::ethernet(from, to).ip_auto(p.src, p.dst);
    if p.proto == 6 {
        b.tcp(p.sport, p.dport).flags(TcpFlags::SYN).build()
    } else {
        b.udp(p.sport, p.dport).payload(b"owner").build()
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `workers` workers on the mem driver sharing one snapshot.
struct Workers {
    w: Vec<Worker<MemQueue>>,
    c: Vec<Arc<CoreCounters>>,
}

impl Workers {
    fn new(snap: &Arc<Snapshot>, workers: u16) -> Workers {
        let links = Links::new(workers);
        let w = (0..workers)
            .map(|index| {
                Worker::new(
                    WorkerConfig {
                        index,
                        workers,
                        conn_capacity: 1024,
                        ..Default::default()
                    },
                    vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])],
                    links.clone(),
                    snap.clone(),
                )
            })
            .collect();
        Workers {
            w,
            c: links.counters.clone(),
        }
    }

    /// The worker that keeps `frame` arriving at `port`: it lands on each
    /// worker's queue in turn; the owner processes it, every other worker
    /// hands it over. Exactly one worker must keep it.
    fn owner(&mut self, port: u16, frame: &[u8]) -> u16 {
        let n = self.w.len();
        let mut keepers = Vec::new();
        for k in 0..n {
            let (rx, out) = (
                self.c[k].rx_packets.load(Relaxed),
                self.c[k].steered_out.load(Relaxed),
            );
            self.w[k].queues_mut()[port as usize].inject(frame.to_vec());
            self.w[k].poll_once();
            assert_eq!(self.c[k].rx_packets.load(Relaxed), rx + 1, "received");
            if self.c[k].steered_out.load(Relaxed) == out {
                keepers.push(k as u16);
            }
            // The owner takes a handed-over packet, so rings stay empty.
            for w in self.w.iter_mut() {
                w.poll_once();
            }
        }
        self.sent();
        assert_eq!(keepers.len(), 1, "kept by workers {keepers:?}");
        keepers[0]
    }

    /// Nonzero drop counters, by reason.
    fn drops(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for c in &self.c {
            for (r, n) in DropReason::ALL.iter().zip(c.drops.iter()) {
                let n = n.load(Relaxed);
                if n > 0 {
                    v.push((format!("{r:?}"), n));
                }
            }
        }
        v
    }

    /// Frames sent so far (all workers, all ports).
    fn sent(&mut self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for w in self.w.iter_mut() {
            w.flush_all();
            for q in w.queues_mut() {
                v.extend(q.take_sent());
            }
        }
        v
    }
}

/// The owner by the plan, by the cBPF fanout program, and (for a FULLNAT
/// reply, with a power-of-two worker count) by the DPDK lport partition —
/// asserted equal; returns it.
fn device_owner(snap: &Snapshot, prog: &[libc::sock_filter], p: &Pkt) -> u16 {
    let (src, dst) = (octets(p.src), octets(p.dst));
    let plan = snap.steer.owner(p.proto, &src, p.sport, &dst, p.dport);
    let f = frame(p);
    let protocol = if p.dst.is_ipv6() { 0x86dd } else { 0x0800 };
    let bpf = cbpf::run(
        prog,
        &cbpf::Skb {
            protocol,
            data: &f[14..],
        },
    );
    assert_eq!(bpf, plan as u32, "cBPF fanout program vs plan: {p:?}");
    let workers = snap.steer.workers;
    if snap.is_laddr(&p.dst) {
        assert_eq!(plan, lport_owner(p.dport, workers), "lport partition");
        if let Some(shares) = LportMatch::owner_partition(workers) {
            let by_rule: Vec<usize> = (0..shares.len())
                .filter(|&q| shares[q].contains(p.dport))
                .collect();
            assert_eq!(by_rule, vec![plan as usize], "rte_flow rules: {p:?}");
        }
    }
    plan
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn worker_plan_cbpf_and_flow_rules_agree_on_the_owner(
        services in prop::collection::vec(svc_draw(), 0..6),
        packets in prop::collection::vec(pkt_draw(), 1..24),
        workers in 2u16..=4,
    ) {
        let topo = topo_of(&services, workers, None);
        let snap = topo.snapshot(1);
        let prog = fanout_program(&snap.steer);
        cbpf::verify(&prog).expect("the kernel would accept the program");
        let mut ws = Workers::new(&snap, workers);
        for d in &packets {
            let p = pkt_of(d, &topo);
            let device = device_owner(&snap, &prog, &p);
            let worker = ws.owner(p.port, &frame(&p));
            prop_assert_eq!(worker, device, "worker vs devices: {:?}", p);
        }
    }

    #[test]
    fn fullnat_local_ports_bring_replies_back_to_their_owner_by_rss_and_flow_rules(
        services in prop::collection::vec(svc_draw(), 1..5),
        clients in prop::collection::vec(pkt_draw(), 1..12),
        workers in 2u16..=4,
    ) {
        let services: Vec<SvcDraw> = services
            .into_iter()
            .map(|s| SvcDraw { fullnat: true, ..s })
            .collect();
        let rss = Arc::new(RssConfig {
            key: symmetric_rss_key(40),
            hash_functions: 0,
            reta: (0..128).map(|i| i % workers).collect(),
            reta_confirmed: true,
        });
        let topo = topo_of(&services, workers, Some(rss.clone()));
        let snap = topo.snapshot(1);
        let prog = fanout_program(&snap.steer);
        let mut ws = Workers::new(&snap, workers);
        for d in &clients {
            // A new client connection, wherever it arrives.
            let p = pkt_of(&PktDraw { kind: 0, tcp: true, ..d.clone() }, &topo);
            let owner = device_owner(&snap, &prog, &p);
            ws.w[d.pick % workers as usize].queues_mut()[EXT as usize].inject(frame(&p));
            for _ in 0..2 {
                for w in ws.w.iter_mut() {
                    w.poll_once();
                }
            }
            let sent = ws.sent();
            prop_assert_eq!(sent.len(), 1, "one packet forwarded to the real server: {:?}, drops {:?}", p, ws.drops());
            let out = etherparse::SlicedPacket::from_ethernet(&sent[0]).expect("parses");
            let (lip, rip) = match &out.net {
                Some(etherparse::NetSlice::Ipv4(h)) => (
                    IpAddr::V4(h.header().source_addr()),
                    IpAddr::V4(h.header().destination_addr()),
                ),
                Some(etherparse::NetSlice::Ipv6(h)) => (
                    IpAddr::V6(h.header().source_addr()),
                    IpAddr::V6(h.header().destination_addr()),
                ),
                _ => panic!("IP"),
            };
            let (lport, rport) = match &out.transport {
                Some(etherparse::TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
                Some(etherparse::TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
                _ => panic!("TCP or UDP"),
            };
            prop_assert!(snap.is_laddr(&lip), "FULLNAT source {lip}");
            // The owner allocated the port from its partition, one whose
            // reply RSS delivers to its own queue.
            prop_assert_eq!(lport_owner(lport, workers), owner);
            prop_assert_eq!(rss.fullnat_reply_queue(rip, rport, lip, lport), Some(owner));
            // And the reply's owner, every way, is that worker.
            let reply = Pkt { port: INT, proto: p.proto, src: rip, sport: rport, dst: lip, dport: lport };
            prop_assert_eq!(device_owner(&snap, &prog, &reply), owner);
            prop_assert_eq!(ws.owner(INT, &frame(&reply)), owner);
        }
    }
}
