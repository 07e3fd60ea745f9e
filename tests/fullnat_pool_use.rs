//! The per-worker FULLNAT pool-use counter behind
//! `rvs_worker_fullnat_ports_in_use`: every FULLNAT connection holds one
//! local port from the worker's pool while it lives; NAT connections hold
//! none; an expired connection gives its port back.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use rvs::conntrack::Fwd;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

fn syn(vip: &str, cport: u16) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4(vip))
        .tcp(cport, 80)
        .flags(TcpFlags::SYN)
        .build()
}

#[test]
fn fullnat_ports_in_use_counts_each_live_fullnat_connection_until_it_expires() {
    let mut topo = Topo::standard();
    topo.svc(6, "10.0.0.50", 80, "rr")
        .dest(RS1, 8080, Fwd::FullNat, 1)
        .laddr(LIP);
    topo.svc(6, "10.0.0.51", 80, "rr")
        .dest(RS1, 8080, Fwd::Nat, 1);
    let links = Links::new(1);
    let counters = links.counters[0].clone();
    let queues = vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])];
    let mut w = Worker::new(WorkerConfig::default(), queues, links, topo.snapshot(1));
    for (vip, cport) in [
        ("10.0.0.50", 40000),
        ("10.0.0.50", 40001),
        ("10.0.0.51", 40002),
    ] {
        w.queues_mut()[EXT as usize].inject(syn(vip, cport));
        w.poll_once();
    }
    w.flush_all();
    assert_eq!(counters.conns_now.load(Relaxed), 3, "three connections");
    assert_eq!(
        counters.fullnat_ports_in_use.load(Relaxed),
        2,
        "two FULLNAT connections hold a local port each; NAT holds none"
    );
    // Past every timeout: the connections expire and the ports come back.
    w.advance_clock(Duration::from_secs(3600));
    for _ in 0..1000 {
        w.poll_once();
        if counters.conns_now.load(Relaxed) == 0 {
            break;
        }
    }
    assert_eq!(counters.conns_now.load(Relaxed), 0, "all expired");
    assert_eq!(counters.fullnat_ports_in_use.load(Relaxed), 0);
}
