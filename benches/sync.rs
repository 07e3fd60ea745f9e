//! The worker's cost of connection sync (issue #14): new UDP connections
//! through a worker on the `mem` driver (each packet a new flow, UDP
//! timeout 1 s with the clock advanced 1 ms per burst, so the table
//! expires as many as it creates), with the export to the sync thread
//! off and on. With sync on every new connection is pushed to the
//! worker's export ring; the ring is drained here between bursts (what
//! the sync thread does on another core), so the figure includes the
//! pops. ns per connection = time / 32.
//!
//! `export_one_entry` isolates the added work: the record taken from a
//! connection and pushed to the ring (plus the pop, in the same thread).
//!
//! `cargo bench --bench sync`

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rvs::conntrack::{addr_from_ip, ConnTable, Fwd, NewConn, Proto, Timeouts};
use rvs::dataplane::driver::heapbuf;
use rvs::dataplane::driver::mem::{FlowGen, MemQueue};
use rvs::dataplane::worker::{Links, Msg, Worker, WorkerConfig};
use rvs::sync::export::{SyncEntry, SyncRings};
use rvs::wire::builder::PacketBuilder;

fn worker(links: &std::sync::Arc<Links<heapbuf::HeapBuf>>) -> Worker<MemQueue> {
    heapbuf::prewarm(8192);
    let mut topo = Topo::standard();
    topo.timeouts.set(0, 0, 1).expect("udp timeout 1 s");
    let t = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4("100.64.0.1"), v4("10.0.0.1"))
        .udp(40000, 53)
        .payload_fill(18)
        .build();
    let gen = FlowGen::new(t, 1 << 22);
    let cfg = WorkerConfig {
        conn_capacity: 1 << 21,
        ..WorkerConfig::default()
    };
    Worker::new(
        cfg,
        vec![MemQueue::flows(gen), MemQueue::generator(Vec::new())],
        links.clone(),
        topo.snapshot(1),
    )
}

fn bench_export(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync_export");
    g.throughput(Throughput::Elements(32));
    for on in [false, true] {
        let links = Links::new(1);
        let mut w = worker(&links);
        if links.post(0, Msg::SyncExport(on)).is_err() {
            panic!("mailbox full");
        }
        let rings = links.sync().clone();
        let name = if on {
            "udp_new_sync_on"
        } else {
            "udp_new_sync_off"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                w.advance_clock(Duration::from_millis(1));
                let n = black_box(w.poll_once());
                while let Some(e) = rings.take_export(0) {
                    black_box(e);
                }
                n
            })
        });
        let exported = rings.total(|c| &c.exported);
        let dropped = rings.total(|c| &c.export_ring_full);
        eprintln!(
            "sync_export/{name}: {} connections live, {exported} exported, {dropped} ring-full drops",
            w.conns().len()
        );
        assert!(!on || exported > 0, "sync on exports");
        assert!(on || exported == 0, "sync off exports nothing");
    }
    g.finish();
}

fn bench_export_one(c: &mut Criterion) {
    let mut t = ConnTable::new(16);
    let nc = NewConn {
        proto: Proto::Tcp,
        v6: false,
        fwd: Fwd::Nat,
        cip: addr_from_ip(&ip("203.0.113.7")),
        cport: 40000,
        vip: addr_from_ip(&ip("10.0.0.1")),
        vport: 80,
        rip: addr_from_ip(&ip("192.168.10.1")),
        rport: 8080,
        lip: [0; 16],
        lport: 0,
        svc: 0,
        dest: 0,
        template: None,
        flags: 0,
    };
    let id = t.insert(&nc, 0, &Timeouts::default()).expect("insert");
    let conn = *t.get(id);
    let rings = SyncRings::new(1);
    let mut g = c.benchmark_group("sync_export");
    g.throughput(Throughput::Elements(1));
    g.bench_function("export_one_entry", |b| {
        b.iter(|| {
            rings.export(0, SyncEntry::from_conn(black_box(&conn)));
            black_box(rings.take_export(0))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench_export_one, bench_export
}
criterion_main!(benches);
