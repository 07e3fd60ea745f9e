//! Connection sync keeps the worker's hot path allocation-free: a worker
//! exporting every new connection (each UDP packet a new flow, expiring
//! after 1 s), installing synced connections from its install ring, and
//! walking its table for a full resynchronisation, all under a counting
//! allocator.

mod common;
mod counting_alloc;

use std::time::Duration;

use common::*;
use counting_alloc::{count_allocations, take_allocations};
use rvs::conntrack::{addr_from_ip, Fwd, TcpState};
use rvs::dataplane::driver::heapbuf;
use rvs::dataplane::driver::mem::{FlowGen, MemQueue};
use rvs::dataplane::worker::{Links, Msg, Worker, WorkerConfig};
use rvs::sync::export::SyncEntry;
use rvs::wire::builder::PacketBuilder;

fn synced(cport: u16) -> SyncEntry {
    SyncEntry {
        proto: 6,
        v6: false,
        template: false,
        fwd: Fwd::Nat,
        state: TcpState::Established as u8,
        cport,
        vport: 80,
        rport: 8080,
        lport: 0,
        cip: addr_from_ip(&ip("198.51.100.9")),
        vip: addr_from_ip(&ip("10.0.0.1")),
        rip: addr_from_ip(&ip(RS1)),
        lip: [0; 16],
        timeout_s: 900,
    }
}

#[test]
fn exporting_installing_and_resyncing_allocate_nothing() {
    let mut topo = Topo::standard();
    topo.timeouts.set(0, 0, 1).expect("udp timeout 1 s");
    let t = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4("100.64.0.1"), v4("10.0.0.1"))
        .udp(40000, 53)
        .payload_fill(18)
        .build();
    heapbuf::prewarm(8192);
    let links = Links::new(1);
    let mut w = Worker::new(
        WorkerConfig {
            conn_capacity: 1 << 16,
            ..WorkerConfig::default()
        },
        vec![
            MemQueue::flows(FlowGen::new(t, 1 << 20)),
            MemQueue::generator(Vec::new()),
        ],
        links.clone(),
        topo.snapshot(1),
    );
    let rings = links.sync().clone();
    assert!(links.post(0, Msg::SyncExport(true)).is_ok());
    let pass = |w: &mut Worker<MemQueue>, k: u32| {
        w.advance_clock(Duration::from_millis(1));
        w.poll_once();
        while rings.take_export(0).is_some() {}
        if k % 10 == 0 {
            for i in 0..8 {
                rings.install(0, synced((k % 60_000) as u16 + i));
            }
        }
        if k % 500 == 0 {
            assert!(links.post(0, Msg::SyncDump).is_ok());
        }
    };
    for k in 0..1500 {
        pass(&mut w, k);
    }
    let exported0 = rings.total(|c| &c.exported);
    let installed0 = rings.total(|c| &c.installed) + rings.total(|c| &c.updated);
    take_allocations();
    count_allocations(true);
    for k in 1500..4000 {
        pass(&mut w, k);
    }
    count_allocations(false);
    let allocs = take_allocations();
    let exported = rings.total(|c| &c.exported) - exported0;
    let installed = rings.total(|c| &c.installed) + rings.total(|c| &c.updated) - installed0;
    assert!(exported > 50_000, "{exported} exported");
    assert!(installed > 1_000, "{installed} installed");
    assert_eq!(rings.total(|c| &c.install_failed), 0);
    assert_eq!(allocs, 0, "{allocs} allocations");
}
