//! Connection sync in the worker, in process (`mem` driver): what a master
//! worker exports and when (reference §3.3/§3.7), and a backup worker that
//! installs the entries — carried through the IPVS v1 wire format — and
//! then forwards the flow's next packet exactly as the master would, for
//! NAT, DR and FULLNAT. Without the install the backup drops it.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;

use common::*;
use rvs::conntrack::TcpState;
use rvs::dataplane::driver::heapbuf::HeapBuf;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Msg, Worker, WorkerConfig};
use rvs::sync::export::SyncEntry;
use rvs::wire::builder::PacketBuilder;
use rvs::wire::ipvs_sync::{SyncConn, SyncConnRepr};
use rvs::wire::TcpFlags;

fn director(topo: &Topo, export: bool) -> (Worker<MemQueue>, Arc<Links<HeapBuf>>) {
    let links = Links::new(1);
    let mut w = Worker::new(
        WorkerConfig {
            conn_capacity: 1024,
            tx_flush: std::time::Duration::ZERO,
            ..WorkerConfig::default()
        },
        vec![
            MemQueue::scripted(Vec::new()),
            MemQueue::scripted(Vec::new()),
        ],
        links.clone(),
        topo.snapshot(1),
    );
    if links.post(0, Msg::SyncExport(export)).is_err() {
        panic!("mailbox full");
    }
    w.poll_once();
    (w, links)
}

fn client(vip: &str, flags: u8, payload: usize) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4(vip))
        .tcp(40000, 80)
        .flags(TcpFlags(flags))
        .payload_fill(payload)
        .build()
}

/// Feeds `frame` to the worker's client-side port; what it sent on each port.
fn feed(w: &mut Worker<MemQueue>, frame: Vec<u8>) -> Vec<Vec<u8>> {
    w.queues_mut()[0].inject(frame);
    w.poll_once();
    w.poll_once();
    let mut out = w.queues_mut()[0].take_sent();
    out.extend(w.queues_mut()[1].take_sent());
    out
}

fn exported(links: &Links<HeapBuf>) -> Vec<SyncEntry> {
    std::iter::from_fn(|| links.sync().take_export(0)).collect()
}

/// An entry through the wire: emit as IPVS v1, parse back.
fn over_the_wire(e: &SyncEntry) -> SyncEntry {
    let r = e.to_repr();
    let mut buf = vec![0u8; r.padded_len()];
    r.emit(&mut SyncConn::new_unchecked(&mut buf[..]));
    let back =
        SyncConnRepr::parse(&SyncConn::new_checked(&buf[..]).expect("entry")).expect("parses");
    SyncEntry::from_repr(&back).expect("installable")
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN_ACK: u8 = 0x11;

#[test]
fn a_connection_is_exported_when_established_and_when_it_closes_not_before() {
    let topo = Topo::standard();
    let (mut a, links) = director(&topo, true);
    feed(&mut a, client("10.0.0.1", SYN, 0));
    assert!(exported(&links).is_empty(), "SYN_RECV is not synced");
    feed(&mut a, client("10.0.0.1", ACK, 0));
    let got = exported(&links);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].tcp_state(), TcpState::Established);
    assert_eq!(got[0].timeout_s, 900);
    feed(&mut a, client("10.0.0.1", ACK, 10));
    assert!(exported(&links).is_empty(), "no refresh within the window");
    feed(&mut a, client("10.0.0.1", FIN_ACK, 0));
    let got = exported(&links);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].tcp_state(), TcpState::CloseWait);
}

#[test]
fn without_a_master_sync_daemon_nothing_is_exported() {
    let topo = Topo::standard();
    let (mut a, links) = director(&topo, false);
    feed(&mut a, client("10.0.0.1", SYN, 0));
    feed(&mut a, client("10.0.0.1", ACK, 0));
    assert!(exported(&links).is_empty());
    assert_eq!(links.sync().total(|c| &c.exported), 0);
}

#[test]
fn a_synced_connection_forwards_on_the_backup_exactly_as_on_the_master() {
    let topo = Topo::standard();
    for (mode, vip) in [
        ("nat", "10.0.0.1"),
        ("dr", "10.0.0.2"),
        ("fullnat", "10.0.0.4"),
    ] {
        let (mut a, la) = director(&topo, true);
        let (mut b, lb) = director(&topo, false);
        feed(&mut a, client(vip, SYN, 0));
        feed(&mut a, client(vip, ACK, 0));
        let entries = exported(&la);
        assert_eq!(entries.len(), 1, "{mode}: {entries:?}");
        // Before the install the backup drops the mid-flow segment.
        let data = client(vip, ACK, 100);
        assert!(
            feed(&mut b, data.clone()).is_empty(),
            "{mode}: backup forwards blind"
        );
        assert!(lb.sync().install(0, over_the_wire(&entries[0])));
        b.poll_once();
        assert_eq!(lb.sync().total(|c| &c.installed), 1, "{mode}");
        let (_, bc) = b.conns().iter().next().expect("installed");
        let (_, ac) = a.conns().iter().next().expect("master's");
        assert!(bc.is_synced() && !ac.is_synced(), "{mode}");
        assert_eq!(bc.state(), TcpState::Established, "{mode}");
        assert!(bc.is_active(), "{mode}");
        assert_eq!(
            (bc.rip(), bc.rport(), bc.lip(), bc.lport(), bc.fwd()),
            (ac.rip(), ac.rport(), ac.lip(), ac.lport(), ac.fwd()),
            "{mode}"
        );
        let from_a = feed(&mut a, data.clone());
        let from_b = feed(&mut b, data);
        assert_eq!(from_a.len(), 1, "{mode}: master forwards");
        assert_eq!(
            from_b, from_a,
            "{mode}: the backup rewrites as the master does"
        );
    }
}

fn server(flags: u8, payload: usize) -> Vec<u8> {
    PacketBuilder::ethernet(RS1_MAC, INT_MAC)
        .ipv4(v4(RS1), v4(CIP))
        .tcp(8080, 40000)
        .flags(TcpFlags(flags))
        .payload_fill(payload)
        .build()
}

/// Feeds a frame from the real server side.
fn feed_int(w: &mut Worker<MemQueue>, frame: Vec<u8>) {
    w.queues_mut()[1].inject(frame);
    w.poll_once();
    w.poll_once();
}

/// The sync cost of one short NAT connection (the figure the bandwidth
/// per 1,000 connections/s is computed from): a request, an answer, the
/// server closing first (HTTP `Connection: close`).
#[test]
fn a_short_nat_connection_is_exported_at_established_and_at_each_closing_state() {
    let topo = Topo::standard();
    let (mut a, links) = director(&topo, true);
    feed(&mut a, client("10.0.0.1", SYN, 0));
    feed_int(&mut a, server(SYN | ACK, 0));
    feed(&mut a, client("10.0.0.1", ACK, 0));
    feed(&mut a, client("10.0.0.1", ACK | 0x08, 100));
    feed_int(&mut a, server(ACK | 0x08, 500));
    feed_int(&mut a, server(FIN_ACK, 0));
    feed(&mut a, client("10.0.0.1", ACK, 0));
    feed(&mut a, client("10.0.0.1", FIN_ACK, 0));
    feed_int(&mut a, server(ACK, 0));
    let states: Vec<TcpState> = exported(&links).iter().map(SyncEntry::tcp_state).collect();
    println!("exported states: {states:?}");
    assert_eq!(
        states,
        [TcpState::Established, TcpState::FinWait, TcpState::TimeWait]
    );
}

fn client_from(cip: &str, cport: u16, vip: &str, flags: u8) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(cip), v4(vip))
        .tcp(cport, 80)
        .flags(TcpFlags(flags))
        .build()
}

/// The real server a frame the director sent goes to (its IPv4 destination).
fn sent_to(frames: &[Vec<u8>]) -> Vec<std::net::Ipv4Addr> {
    frames
        .iter()
        .map(|f| std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33]))
        .collect()
}

/// Persistence (`-p`): the template travels with its connection (first),
/// so a new connection of the same client on the backup goes to the real
/// server the master chose — not to the backup's own scheduler pick.
#[test]
fn a_persistent_client_keeps_its_real_server_on_the_backup() {
    let mut topo = Topo::empty();
    topo.svc(6, "10.0.0.7", 80, "rr")
        .persistent(300, 32)
        .dest(RS1, 8080, rvs::conntrack::Fwd::Nat, 1)
        .dest(RS2, 8080, rvs::conntrack::Fwd::Nat, 1);
    let (mut a, la) = director(&topo, true);
    let (mut b, lb) = director(&topo, false);
    // Client X takes the master's first rr pick, client Y the second.
    feed(&mut a, client_from("203.0.113.7", 1000, "10.0.0.7", SYN));
    let y = "203.0.113.8";
    let first = feed(&mut a, client_from(y, 2000, "10.0.0.7", SYN));
    let y_rs = sent_to(&first);
    feed(&mut a, client_from(y, 2000, "10.0.0.7", ACK));
    let entries = exported(&la);
    assert_eq!(entries.len(), 2, "template, then connection: {entries:?}");
    assert!(entries[0].template && !entries[1].template, "{entries:?}");
    for e in &entries {
        assert!(lb.sync().install(0, over_the_wire(e)));
    }
    b.poll_once();
    assert_eq!(lb.sync().total(|c| &c.installed), 2);
    // A new connection of Y on the backup.
    let out = feed(&mut b, client_from(y, 2001, "10.0.0.7", SYN));
    assert_eq!(sent_to(&out), y_rs, "the template's real server");
    // Without the template the backup's own first pick is the other one.
    let (mut c, _) = director(&topo, false);
    let out = feed(&mut c, client_from(y, 2001, "10.0.0.7", SYN));
    assert_ne!(sent_to(&out), y_rs, "the test bites");
}

/// A full resynchronisation: connections established before any master
/// sync daemon ran are exported when the table is dumped.
#[test]
fn a_full_resync_exports_connections_made_before_sync_started() {
    let topo = Topo::standard();
    let (mut a, links) = director(&topo, false);
    for port in [1000, 1001, 1002] {
        feed(&mut a, client_from(CIP, port, "10.0.0.1", SYN));
        feed(&mut a, client_from(CIP, port, "10.0.0.1", ACK));
    }
    feed(&mut a, client_from(CIP, 1003, "10.0.0.1", SYN));
    assert!(exported(&links).is_empty());
    for m in [Msg::SyncExport(true), Msg::SyncDump] {
        assert!(links.post(0, m).is_ok());
    }
    a.poll_once();
    a.poll_once();
    let mut ports: Vec<u16> = exported(&links).iter().map(|e| e.cport).collect();
    ports.sort_unstable();
    assert_eq!(ports, [1000, 1001, 1002], "ESTABLISHED ones, not SYN_RECV");
}
