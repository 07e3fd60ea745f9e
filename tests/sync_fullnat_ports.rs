//! FULLNAT local ports of synced connections on the backup (issue #14):
//! a connection the sync backup installs keeps the master's local address
//! and port, and that port is held in the worker's pool as if the worker
//! had allocated it — new connections get the other ports (or
//! `laddr_exhausted`), never that one, and the port is free again when the
//! synced connection expires. A synced port of another worker's partition
//! (the peer runs another number of workers) is refused and counted.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rvs::conntrack::{addr_from_ip, Fwd, TcpState};
use rvs::dataplane::counters::DropReason;
use rvs::dataplane::driver::heapbuf::HeapBuf;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::sync::export::SyncEntry;
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

const VIP: &str = "10.0.0.4";

/// One FULLNAT service VIP:80 → RS2:8080 through LIP, local ports
/// 6000..=6003 (all four this worker's when it is alone).
fn topo(workers: u16) -> Topo {
    let mut t = Topo::empty();
    t.workers = workers;
    t.settings.lport_range = (6000, 6003);
    t.svc(6, VIP, 80, "rr")
        .dest(RS2, 8080, Fwd::FullNat, 1)
        .laddr(LIP);
    t
}

fn backup(topo: &Topo, index: u16) -> (Worker<MemQueue>, Arc<Links<HeapBuf>>) {
    let links = Links::new(topo.workers);
    let w = Worker::new(
        WorkerConfig {
            index,
            workers: topo.workers,
            conn_capacity: 1024,
            tx_flush: Duration::ZERO,
            ..WorkerConfig::default()
        },
        vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])],
        links.clone(),
        topo.snapshot(1),
    );
    (w, links)
}

/// An ESTABLISHED FULLNAT connection of client port `cport` holding local
/// port `lport` on the master, living `timeout_s` more seconds.
fn synced(cport: u16, lport: u16, timeout_s: u32) -> SyncEntry {
    SyncEntry {
        proto: 6,
        v6: false,
        template: false,
        fwd: Fwd::FullNat,
        state: TcpState::Established as u8,
        cport,
        vport: 80,
        rport: 8080,
        lport,
        cip: addr_from_ip(&ip(CIP)),
        vip: addr_from_ip(&ip(VIP)),
        rip: addr_from_ip(&ip(RS2)),
        lip: addr_from_ip(&ip(LIP)),
        timeout_s,
    }
}

fn syn(cport: u16) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4(VIP))
        .tcp(cport, 80)
        .flags(TcpFlags::SYN)
        .build()
}

/// Sends a client SYN; the local port of the connection it made, if any.
fn new_conn_port(w: &mut Worker<MemQueue>, cport: u16) -> Option<u16> {
    w.queues_mut()[EXT as usize].inject(syn(cport));
    w.poll_once();
    w.flush_all();
    for q in w.queues_mut() {
        q.take_sent();
    }
    w.conns()
        .iter()
        .find(|(_, c)| c.cport() == cport && !c.is_synced())
        .map(|(_, c)| c.lport())
}

fn install(w: &mut Worker<MemQueue>, links: &Links<HeapBuf>, index: u16, e: SyncEntry) {
    assert!(links.sync().install(index, e), "install ring has room");
    w.poll_once();
}

/// A one-worker backup on which the master's connections hold local
/// ports 6000 and 6001 (the first its pool would hand out) for
/// `timeout_s` seconds.
fn backup_holding_6000_and_6001(timeout_s: u32) -> Worker<MemQueue> {
    let (mut w, links) = backup(&topo(1), 0);
    install(&mut w, &links, 0, synced(50000, 6000, timeout_s));
    install(&mut w, &links, 0, synced(50001, 6001, timeout_s));
    assert_eq!(links.sync().total(|c| &c.installed), 2);
    w
}

#[test]
fn new_connections_never_get_a_local_port_a_synced_connection_holds() {
    let mut w = backup_holding_6000_and_6001(900);
    let mut got = vec![
        new_conn_port(&mut w, 40000).expect("a free port is left"),
        new_conn_port(&mut w, 40001).expect("a free port is left"),
    ];
    got.sort_unstable();
    assert_eq!(
        got,
        vec![6002, 6003],
        "the ports no synced connection holds"
    );
    // All four held: the next new connection is refused, not given a
    // synced connection's port.
    assert_eq!(new_conn_port(&mut w, 40002), None);
    assert_eq!(w.counters().drops_of(DropReason::LaddrExhausted), 1);
    assert_eq!(w.conns().len(), 4);
}

#[test]
fn a_synced_connections_local_port_is_free_again_when_it_expires() {
    let mut w = backup_holding_6000_and_6001(5);
    assert_eq!(new_conn_port(&mut w, 40000), Some(6002));
    assert_eq!(new_conn_port(&mut w, 40001), Some(6003));
    // The synced ones (5 s) expire, the new ones (SYN_RECV, 60 s) live.
    w.advance_clock(Duration::from_secs(10));
    for _ in 0..200 {
        w.poll_once();
    }
    assert_eq!(w.conns().len(), 2, "the two synced connections expired");
    let mut got = vec![
        new_conn_port(&mut w, 40002).expect("a port a synced connection left"),
        new_conn_port(&mut w, 40003).expect("a port a synced connection left"),
    ];
    got.sort_unstable();
    assert_eq!(got, vec![6000, 6001]);
    assert_eq!(new_conn_port(&mut w, 40004), None, "and no more");
}

#[test]
fn a_synced_port_of_another_workers_partition_is_refused_and_counted() {
    // Two workers: worker 0 owns the even local ports (lport % 2), and
    // replies to an odd one are steered to worker 1.
    let t = topo(2);
    let (mut w, links) = backup(&t, 0);
    install(&mut w, &links, 0, synced(50000, 6001, 900));
    assert_eq!(links.sync().total(|c| &c.install_lport_foreign), 1);
    assert_eq!(w.conns().len(), 0);
    install(&mut w, &links, 0, synced(50001, 6002, 900));
    assert_eq!(links.sync().total(|c| &c.installed), 1);
    // Its port is held: worker 0's only other port goes to a new flow (of
    // a client port worker 0 owns), then none is left.
    let mine: Vec<u16> = (40000..)
        .filter(|&p| rvs::steer::client_owner(&v4(CIP).octets(), p, 2) == 0)
        .take(2)
        .collect();
    assert_eq!(new_conn_port(&mut w, mine[0]), Some(6000));
    assert_eq!(new_conn_port(&mut w, mine[1]), None);
    assert_eq!(w.counters().drops_of(DropReason::LaddrExhausted), 1);
}
