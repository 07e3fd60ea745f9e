//! The hot path does not allocate: a counting global allocator watches a
//! worker process bursts of established NAT, FULLNAT, DR and TUN traffic
//! (both directions where the director sees both) on the `mem` driver.
//! This file holds one test so no other test thread allocates meanwhile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use rvs::dataplane::counters::DropReason;
use rvs::dataplane::driver::heapbuf;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn established_bursts_allocate_nothing() {
    let flows = 200u16;
    let mut client = Vec::new();
    let mut server = Vec::new();
    for i in 0..flows {
        let cport = 10000 + i;
        for (vip, rs_mac, rip, rport, lport) in [
            ("10.0.0.1", RS1_MAC, RS1, 8080u16, None),
            ("10.0.0.4", RS2_MAC, RS2, 8080, Some(1025 + i)),
            ("10.0.0.2", RS1_MAC, RS1, 80, None),
            ("10.0.0.3", RS2_MAC, RS2, 80, None),
        ] {
            for f in [TcpFlags::SYN, TcpFlags::ACK] {
                client.push(
                    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
                        .ipv4(v4(CIP), v4(vip))
                        .tcp(cport, 80)
                        .flags(f)
                        .payload_fill(6)
                        .build(),
                );
            }
            if vip == "10.0.0.1" || vip == "10.0.0.4" {
                let (dst, dport) = match lport {
                    Some(l) => (LIP, l),
                    None => (CIP, cport),
                };
                server.push(
                    PacketBuilder::ethernet(rs_mac, INT_MAC)
                        .ipv4(v4(rip), v4(dst))
                        .tcp(rport, dport)
                        .flags(TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0))
                        .build(),
                );
            }
        }
    }
    let topo = Topo::standard();
    let links = Links::new(1);
    let counters = links.counters[0].clone();
    let n_client = client.len();
    let queues = vec![MemQueue::generator(client), MemQueue::generator(server)];
    heapbuf::prewarm(4096);
    let mut w = Worker::new(
        WorkerConfig {
            conn_capacity: 4096,
            ..Default::default()
        },
        queues,
        links,
        topo.snapshot(1),
    );
    // Warm up: two full cycles create every connection and fill every list.
    for _ in 0..(2 * n_client / 32 + 4) {
        w.poll_once();
    }
    assert_eq!(
        w.conns().len() as usize,
        flows as usize * 4,
        "one connection per flow and mode"
    );
    let reasons = [
        DropReason::Malformed,
        DropReason::NoService,
        DropReason::NoNeighbour,
        DropReason::TableFull,
    ];
    let before: Vec<u64> = reasons.iter().map(|r| counters.drops_of(*r)).collect();
    let tx0 = counters.tx_packets.load(Ordering::Relaxed);
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..2000 {
        w.poll_once();
    }
    COUNTING.store(false, Ordering::Relaxed);
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let tx = counters.tx_packets.load(Ordering::Relaxed) - tx0;
    assert!(tx > 100_000, "traffic flowed: {tx} packets sent");
    for (r, b) in reasons.iter().zip(before) {
        assert_eq!(counters.drops_of(*r), b, "no {r:?} drop once established");
    }
    assert_eq!(
        allocs, 0,
        "{allocs} allocations while forwarding {tx} packets"
    );
}
