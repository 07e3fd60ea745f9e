//! The hot path does not allocate: a counting global allocator watches
//! workers process bursts of established traffic on the `mem` driver — one
//! worker with NAT, FULLNAT, DR and TUN (both directions where the director
//! sees both), and two workers on two threads where every packet arrives at
//! worker 0 and the flows worker 1 owns are handed over the steering ring
//! (so buffers allocated on one thread are freed on the other).
//!
//! Only threads that switched counting on for themselves are counted, so the
//! tests of this file (and the test harness) do not disturb each other.

mod common;
mod counting_alloc;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use counting_alloc::{count_allocations, take_allocations};
use rvs::dataplane::counters::DropReason;
use rvs::dataplane::driver::heapbuf;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

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
    take_allocations();
    count_allocations(true);
    for _ in 0..2000 {
        w.poll_once();
    }
    count_allocations(false);
    let allocs = take_allocations();
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

/// Client → VIP frames (SYN, then ACK) of `flows` NAT and DR flows, and the
/// NAT real server's replies.
fn nat_and_dr_traffic(flows: u16) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut client = Vec::new();
    let mut server = Vec::new();
    for i in 0..flows {
        let cport = 20000 + i;
        for vip in ["10.0.0.1", "10.0.0.2"] {
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
        }
        server.push(
            PacketBuilder::ethernet(RS1_MAC, INT_MAC)
                .ipv4(v4(RS1), v4(CIP))
                .tcp(8080, cport)
                .flags(TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0))
                .build(),
        );
    }
    (client, server)
}

/// What one worker thread reports when it ends.
struct WorkerReport {
    allocs: u64,
    conns: usize,
}

#[test]
fn steered_bursts_between_two_workers_allocate_nothing() {
    const WARM_PASSES: u64 = 8_000;
    const COUNTED_PASSES: u64 = 4_000;
    let flows = 200u16;
    let (client, server) = nat_and_dr_traffic(flows);
    let topo = Topo::standard();
    let snap = topo.snapshot(1);
    let links = Links::new(2);
    let counters = [links.counters[0].clone(), links.counters[1].clone()];
    // Phases, driven by this thread: 0 warm-up, 1 counting, 2 stop.
    let phase = Arc::new(AtomicU64::new(0));
    let passes: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let ready = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
    let mut threads = Vec::new();
    for (index, queues) in [
        // Every packet arrives at worker 0 (as with a device that cannot
        // steer); worker 1 receives only what worker 0 hands it.
        (
            0u16,
            vec![MemQueue::generator(client), MemQueue::generator(server)],
        ),
        (
            1,
            vec![
                MemQueue::generator(Vec::new()),
                MemQueue::generator(Vec::new()),
            ],
        ),
    ] {
        let (links, snap) = (links.clone(), snap.clone());
        let (phase, passes, ready) = (phase.clone(), passes.clone(), ready.clone());
        threads.push(std::thread::spawn(move || {
            heapbuf::prewarm(4096);
            let mut w = Worker::new(
                WorkerConfig {
                    index,
                    workers: 2,
                    conn_capacity: 4096,
                    ..Default::default()
                },
                queues,
                links,
                snap,
            );
            let me = index as usize;
            let mut counting = false;
            let (mut stalled, mut warm) = (false, false);
            loop {
                match phase.load(Ordering::Acquire) {
                    0 => {}
                    1 if !counting => {
                        take_allocations();
                        count_allocations(true);
                        counting = true;
                    }
                    1 => {}
                    _ => break,
                }
                w.poll_once();
                let n = passes[me].fetch_add(1, Ordering::Relaxed) + 1;
                if index == 1 && !stalled && heapbuf::pooled() >= heapbuf::POOL_MAX {
                    // Once worker 1's buffer list is full (from now on what
                    // it frees goes to the shared ring), stall as a
                    // descheduled core would: worker 0 fills the steering
                    // ring, so the buffers that many packets in flight need
                    // exist before counting (a mempool is sized for its
                    // rings the same way).
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    stalled = true;
                }
                if n >= WARM_PASSES && (stalled || index == 0) && !warm {
                    warm = true;
                    ready[me].store(true, Ordering::Release);
                }
            }
            count_allocations(false);
            WorkerReport {
                allocs: take_allocations(),
                conns: w.conns().len() as usize,
            }
        }));
    }
    while !ready.iter().all(|r| r.load(Ordering::Acquire)) {
        std::thread::yield_now();
    }
    let steered0 = counters[1].steered_in.load(Ordering::Relaxed);
    let tx0: Vec<u64> = counters
        .iter()
        .map(|c| c.tx_packets.load(Ordering::Relaxed))
        .collect();
    let start: Vec<u64> = passes.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    phase.store(1, Ordering::Release);
    while passes
        .iter()
        .zip(&start)
        .any(|(p, s)| p.load(Ordering::Relaxed) < s + COUNTED_PASSES)
    {
        std::thread::yield_now();
    }
    phase.store(2, Ordering::Release);
    let reports: Vec<WorkerReport> = threads
        .into_iter()
        .map(|t| t.join().expect("worker thread"))
        .collect();
    let steered = counters[1].steered_in.load(Ordering::Relaxed) - steered0;
    let tx: Vec<u64> = counters
        .iter()
        .zip(tx0)
        .map(|(c, t)| c.tx_packets.load(Ordering::Relaxed) - t)
        .collect();
    assert_eq!(
        reports.iter().map(|r| r.conns).sum::<usize>(),
        flows as usize * 2,
        "one connection per flow and mode, each on its owner"
    );
    assert!(
        reports.iter().all(|r| r.conns > 0),
        "both workers own flows"
    );
    assert!(
        steered > 10_000,
        "worker 1 received its flows over the ring: {steered}"
    );
    assert!(tx.iter().all(|t| *t > 10_000), "both workers sent: {tx:?}");
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(
            r.allocs, 0,
            "worker {i}: {} allocations while forwarding (sent {:?}, steered {steered})",
            r.allocs, tx
        );
    }
}
