//! When a worker sends what it forwarded (`mem` driver): a pass that
//! empties every receive queue sends its transmit buffers at its end, so a
//! lone packet leaves in the pass that received it; while receive bursts
//! come full (a backlog), a partial buffer waits for more, at most
//! `tx_flush`, as DPDK's l3fwd drains its buffers.
//!
//! Before, a buffer always waited `tx_flush` (100 µs by default): every
//! director crossing at low load took that long, which is most of what
//! made `lbd`'s p50 latency higher than the kernel's (issue #16, row 2).

mod common;

use std::time::Duration;

use common::*;
use rvs::conntrack::Fwd;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::driver::BURST_SIZE;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

/// A deadline no pass comes near, so only the caught-up rule can send.
const LONG_FLUSH: Duration = Duration::from_secs(3600);

fn director() -> Worker<MemQueue> {
    let mut t = Topo::empty();
    t.svc(6, "10.0.0.1", 80, "rr").dest(RS1, 8080, Fwd::Nat, 1);
    mem_worker(
        WorkerConfig {
            conn_capacity: 4096,
            tx_flush: LONG_FLUSH,
            ..WorkerConfig::default()
        },
        Links::new(1),
        t.snapshot(1),
    )
}

fn syn(cport: u16) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4("10.0.0.1"))
        .tcp(cport, 80)
        .flags(TcpFlags::SYN)
        .build()
}

fn sent_to_real_servers(w: &mut Worker<MemQueue>) -> usize {
    w.queues_mut()[INT as usize].take_sent().len()
}

#[test]
fn a_lone_packet_leaves_in_the_pass_that_received_it() {
    let mut w = director();
    w.queues_mut()[EXT as usize].inject(syn(40000));
    w.poll_once();
    assert_eq!(
        sent_to_real_servers(&mut w),
        1,
        "the queue is empty after this pass: nothing more can join the buffer"
    );
}

#[test]
fn under_a_backlog_a_partial_buffer_waits_to_fill() {
    let mut w = director();
    // A full receive burst: 31 SYNs for the service and one frame that is
    // dropped, so the transmit buffer holds 31 — not full — at the end.
    for cport in 0..(BURST_SIZE as u16 - 1) {
        w.queues_mut()[EXT as usize].inject(syn(41000 + cport));
    }
    w.queues_mut()[EXT as usize].inject(vec![0; 10]);
    assert_eq!(w.poll_once(), BURST_SIZE);
    assert_eq!(
        sent_to_real_servers(&mut w),
        0,
        "a full receive burst: the port may hold more, the buffer waits"
    );
    // The next pass finds the queue empty: the worker has caught up.
    assert_eq!(w.poll_once(), 0);
    assert_eq!(sent_to_real_servers(&mut w), BURST_SIZE - 1);
}
