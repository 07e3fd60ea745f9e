//! Fragments on the hot path do not allocate: a counting global allocator
//! watches one worker forward fragmented UDP datagrams on the `mem` driver
//! (NAT and FULLNAT, both directions, first fragments first and last
//! fragments first, so the waiting buffer fills and empties) and a stream
//! of orphan non-first fragments (the waiting buffer's bound, counted as
//! `frag_buffer_full`).
//!
//! Only this thread's allocations are counted (see `hot_path_no_alloc.rs`).

mod common;
mod counting_alloc;

use std::sync::atomic::Ordering;

use common::*;
use counting_alloc::{count_allocations, take_allocations};
use rvs::dataplane::counters::DropReason;
use rvs::dataplane::driver::heapbuf;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::checksum;

/// Fragments of `frame`'s IPv4 datagram (20-byte header), `chunk` bytes
/// each, identification `ident`.
fn frag4(frame: &[u8], chunk: usize, ident: u16) -> Vec<Vec<u8>> {
    let total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    let payload = &frame[34..14 + total];
    let n = payload.len().div_ceil(chunk);
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let mut f = frame[..34].to_vec();
            f.extend_from_slice(c);
            f[16..18].copy_from_slice(&((20 + c.len()) as u16).to_be_bytes());
            f[18..20].copy_from_slice(&ident.to_be_bytes());
            let mf = if i + 1 < n { 0x2000 } else { 0 };
            f[20..22].copy_from_slice(&((i * chunk / 8) as u16 | mf).to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

#[test]
fn forwarding_fragments_allocates_nothing() {
    let mut client = Vec::new();
    let mut server = Vec::new();
    for i in 0..64u16 {
        let cport = 10000 + i;
        for (vip, rs_mac, rip, dst, dport) in [
            ("10.0.0.1", RS1_MAC, RS1, CIP, cport),
            ("10.0.0.4", RS2_MAC, RS2, LIP, 1025 + i),
        ] {
            let up = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
                .ipv4(v4(CIP), v4(vip))
                .udp(cport, 53)
                .payload_fill(3000)
                .build();
            let mut frags = frag4(&up, 1480, i);
            if i % 2 == 1 {
                frags.reverse(); // the last fragment first: it waits
            }
            client.extend(frags);
            let down = PacketBuilder::ethernet(rs_mac, INT_MAC)
                .ipv4(v4(rip), v4(dst))
                .udp(5353, dport)
                .payload_fill(2000)
                .build();
            server.extend(frag4(&down, 1480, i));
        }
        // An orphan: a middle fragment whose first never comes.
        let orphan = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
            .ipv4(v4(CIP), v4("10.0.0.1"))
            .udp(cport, 53)
            .payload_fill(3000)
            .build();
        client.push(frag4(&orphan, 1480, 40000 + i).swap_remove(1));
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
    for _ in 0..(2 * n_client / 32 + 4) {
        w.poll_once();
    }
    assert_eq!(w.conns().len(), 128, "one connection per datagram flow");
    let tx0 = counters.tx_packets.load(Ordering::Relaxed);
    let full0 = counters.drops_of(DropReason::FragBufferFull);
    // (Replies that came before their connection during the warm-up were
    // dropped as `frag_no_conn`; none once established.)
    let noconn0 = counters.drops_of(DropReason::FragNoConn);
    take_allocations();
    count_allocations(true);
    for _ in 0..2000 {
        w.poll_once();
    }
    count_allocations(false);
    let allocs = take_allocations();
    let tx = counters.tx_packets.load(Ordering::Relaxed) - tx0;
    assert!(tx > 50_000, "fragments flowed: {tx} sent");
    assert!(
        counters.drops_of(DropReason::FragBufferFull) > full0,
        "orphans hit the waiting buffer's bound"
    );
    assert_eq!(counters.drops_of(DropReason::FragNoConn), noconn0);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations while forwarding {tx} fragments"
    );
}
