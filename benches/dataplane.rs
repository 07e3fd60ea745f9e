//! Dataplane benchmarks (criterion): parsing, checksum updates, connection
//! lookup, whole-burst forwarding per mode for established flows at 1K, 100K,
//! 1M and 10M concurrent connections, the new-connection path, and expiry
//! under churn. All on the `mem` driver in one thread: ns per packet is the
//! reported time divided by the elements (packets) per iteration.
//!
//! `RVS_BENCH_MAX_FLOWS` caps the flow counts (e.g. 100000 for a quick run).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rvs::conntrack::{addr_from_ip, ConnTable, Fwd, NewConn, Proto, Timeouts, Tuple};
use rvs::dataplane::driver::heapbuf;
use rvs::dataplane::driver::mem::{FlowGen, MemQueue};
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::{checksum, parse_l2, Ipv4Packet, TcpFlags, TcpPacket};

fn max_flows() -> u32 {
    std::env::var("RVS_BENCH_MAX_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn template(vip: &str, vport: u16, flags: TcpFlags) -> Vec<u8> {
    // 64-byte frames (60 + FCS on the wire): 14 + 20 + 20 + 6 payload.
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4("100.64.0.1"), v4(vip))
        .tcp(40000, vport)
        .flags(flags)
        .payload_fill(6)
        .build()
}

fn worker(gen: FlowGen, capacity: u32, topo: &Topo) -> Worker<MemQueue> {
    heapbuf::prewarm(8192);
    let cfg = WorkerConfig {
        conn_capacity: capacity,
        ..WorkerConfig::default()
    };
    Worker::new(
        cfg,
        vec![MemQueue::flows(gen), MemQueue::generator(Vec::new())],
        Links::new(1),
        topo.snapshot(1),
    )
}

fn bench_wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    let f = template("10.0.0.1", 80, TcpFlags::ACK);
    g.bench_function("parse_eth_ipv4_tcp", |b| {
        b.iter(|| {
            let l2 = parse_l2(black_box(&f)).expect("l2");
            let ip = Ipv4Packet::new_checked(&f[l2.l3_offset..]).expect("ip");
            let ok = ip.verify_checksum();
            let t = TcpPacket::new_checked(ip.payload()).expect("tcp");
            black_box((ok, t.src_port(), t.dst_port(), t.flags()))
        })
    });
    g.bench_function("checksum_update32", |b| {
        b.iter(|| {
            black_box(checksum::update32(
                black_box(0x1c46),
                black_box(0x0a000001),
                black_box(0xc0a80a01),
            ))
        })
    });
    let big = vec![0xa5u8; 1500];
    g.throughput(Throughput::Bytes(1500));
    g.bench_function("checksum_full_1500B", |b| {
        b.iter(|| black_box(checksum::checksum(black_box(&big))))
    });
    g.finish();
}

fn bench_lookup(c: &mut Criterion) {
    let n = max_flows().min(1_000_000);
    let mut t = ConnTable::new(n);
    let to = Timeouts::default();
    let key = |i: u32| {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&(0x6440_0000u32 + i).to_be_bytes());
        Tuple::new(6, false, src, 40000, addr_from_ip(&ip("10.0.0.1")), 80)
    };
    for i in 0..n {
        let k = key(i);
        t.insert(
            &NewConn {
                proto: Proto::Tcp,
                v6: false,
                fwd: Fwd::Nat,
                cip: k.src,
                cport: k.sport,
                vip: k.dst,
                vport: 80,
                rip: addr_from_ip(&ip(RS1)),
                rport: 8080,
                lip: [0; 16],
                lport: 0,
                svc: 1,
                dest: 1,
                template: None,
                flags: 0,
            },
            0,
            &to,
        )
        .expect("insert");
    }
    eprintln!(
        "conntrack: {} connections, {} bytes per connection (table allocation / capacity)",
        n,
        t.bytes_per_conn()
    );
    let mut g = c.benchmark_group("conntrack");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    g.bench_function(BenchmarkId::new("lookup_hit", n), |b| {
        b.iter(|| {
            i = (i.wrapping_add(0x9E37_79B9)) % n;
            let k = key(i);
            black_box(t.lookup(&k, k.hash()))
        })
    });
    g.bench_function(BenchmarkId::new("lookup_miss", n), |b| {
        b.iter(|| {
            i = (i.wrapping_add(0x9E37_79B9)) % n;
            let k = key(i + n);
            black_box(t.lookup(&k, k.hash()))
        })
    });
    g.finish();
}

/// Establish `flows` connections through the worker (SYN then ACK per
/// flow), then switch the generator to ACKs of established flows, and let
/// expiry re-file the new connections before the measurement
/// (`settle_expiry`).
fn established(vip: &str, flows: u32, topo: &Topo) -> Worker<MemQueue> {
    let gen = FlowGen::new(template(vip, 80, TcpFlags::SYN), flows);
    let mut w = worker(gen, flows + 1024, topo);
    let polls = flows.div_ceil(32) as usize;
    for _ in 0..polls {
        w.poll_once();
    }
    let g = w.queues_mut()[0].flow_gen_mut().expect("flow generator");
    g.set_tcp_flags(TcpFlags::ACK.0);
    g.rewind();
    for _ in 0..polls {
        w.poll_once();
    }
    assert_eq!(w.conns().len(), flows, "every flow has its connection");
    settle_expiry(&mut w);
    w
}

/// The standard topology, with enough FULLNAT local addresses for 10M
/// concurrent flows (64,511 ports each).
fn bench_topo() -> Topo {
    let mut t = Topo::standard();
    for s in t.services.iter_mut().filter(|s| s.vip == ip("10.0.0.4")) {
        for i in 0..170u32 {
            s.laddrs
                .push(ip(&format!("192.168.{}.{}", 20 + i / 200, 1 + i % 200)));
        }
    }
    t
}

fn bench_forward(c: &mut Criterion) {
    let topo = bench_topo();
    let mut g = c.benchmark_group("forward_established");
    g.throughput(Throughput::Elements(32));
    for flows in [1_000u32, 100_000, 1_000_000, 10_000_000] {
        if flows > max_flows() {
            continue;
        }
        for (mode, vip) in [
            ("nat", "10.0.0.1"),
            ("fullnat", "10.0.0.4"),
            ("dr", "10.0.0.2"),
            ("tun", "10.0.0.3"),
        ] {
            let mut w = established(vip, flows, &topo);
            if mode == "nat" {
                eprintln!(
                    "{flows} flows: {} bytes per connection (table allocation / capacity)",
                    w.conns().bytes_per_conn()
                );
            }
            g.bench_function(BenchmarkId::new(mode, flows), |b| {
                b.iter(|| black_box(w.poll_once()))
            });
        }
    }
    g.finish();
}

fn bench_new_conns(c: &mut Criterion) {
    let topo = Topo::standard();
    let mut g = c.benchmark_group("new_connection");
    g.throughput(Throughput::Elements(32));
    // Each SYN is a new flow: 2^24 distinct flows, table large enough that
    // the measurement never fills it.
    let flows = 1u32 << 24;
    for (mode, vip) in [("nat", "10.0.0.1"), ("fullnat", "10.0.0.4")] {
        let mut t = bench_topo();
        t.settings.lport_range = (1, 65535);
        let _ = &topo;
        let gen = FlowGen::new(template(vip, 80, TcpFlags::SYN), flows);
        let mut w = worker(gen, flows + 1024, &t);
        g.bench_function(mode, |b| b.iter(|| black_box(w.poll_once())));
        eprintln!(
            "new_connection/{mode}: {} connections created",
            w.conns().len()
        );
    }
    g.finish();
}

fn bench_expiry_churn(c: &mut Criterion) {
    let mut topo = Topo::standard();
    topo.timeouts.set(0, 0, 1).expect("udp timeout 1 s");
    let mut g = c.benchmark_group("expiry_churn");
    g.throughput(Throughput::Elements(32));
    let t = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4("100.64.0.1"), v4("10.0.0.1"))
        .udp(40000, 53)
        .payload_fill(18)
        .build();
    let gen = FlowGen::new(t, 1 << 22);
    let mut w = worker(gen, 1 << 21, &topo);
    // UDP flows live 1 s; the clock advances 1 ms per burst, so the table
    // holds about 32k live flows and expires as many as it creates.
    g.bench_function("udp_new_and_expire", |b| {
        b.iter(|| {
            w.advance_clock(Duration::from_millis(1));
            black_box(w.poll_once())
        })
    });
    eprintln!(
        "expiry_churn: {} connections live at the end",
        w.conns().len()
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_wire, bench_lookup, bench_forward, bench_new_conns, bench_expiry_churn
}
criterion_main!(benches);
