//! Connection expiry through a real worker: IPVS's default timeouts, values
//! set as `ipvsadm --set` does, the TCP FIN_WAIT timeout, and FULLNAT local
//! ports returned to the pool when their connection expires.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rvs::dataplane::counters::{CoreCounters, DropReason};
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

struct D {
    w: Worker<MemQueue>,
    c: Arc<CoreCounters>,
}

impl D {
    fn new(topo: &Topo) -> D {
        let links = Links::new(1);
        let c = links.counters[0].clone();
        let w = Worker::new(
            WorkerConfig::default(),
            vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])],
            links,
            topo.snapshot(1),
        );
        D { w, c }
    }
    fn send(&mut self, port: u16, f: Vec<u8>) -> usize {
        self.w.queues_mut()[port as usize].inject(f);
        self.w.poll_once();
        self.w.flush_all();
        self.w
            .queues_mut()
            .iter_mut()
            .map(|q| q.take_sent().len())
            .sum()
    }
    /// Let `secs` pass and give the timer wheel time to catch up.
    fn wait(&mut self, secs: u64) {
        self.w.advance_clock(Duration::from_secs(secs));
        for _ in 0..200 {
            self.w.poll_once();
        }
    }
}

fn udp(vip: &str, sport: u16) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4(vip))
        .udp(sport, 53)
        .payload(b"q")
        .build()
}

#[test]
fn udp_connection_expires_after_ipvs_default_300s() {
    let mut d = D::new(&Topo::standard());
    assert_eq!(d.send(EXT, udp("10.0.0.1", 5000)), 1);
    assert_eq!(d.w.conns().len(), 1);
    d.wait(299);
    assert_eq!(d.w.conns().len(), 1, "still alive at 299 s");
    d.wait(2);
    assert_eq!(d.w.conns().len(), 0, "gone after 300 s");
    assert_eq!(d.c.conns_expired.load(Relaxed), 1);
}

#[test]
fn set_timeouts_take_effect() {
    let mut topo = Topo::standard();
    topo.timeouts.set(0, 0, 5).expect("--set 0 0 5");
    let mut d = D::new(&topo);
    d.send(EXT, udp("10.0.0.1", 5000));
    d.wait(4);
    assert_eq!(d.w.conns().len(), 1);
    d.wait(2);
    assert_eq!(d.w.conns().len(), 0, "UDP timeout 5 s applies");
}

#[test]
fn fin_wait_connection_expires_after_its_timeout() {
    let mut d = D::new(&Topo::standard());
    let c = |f: TcpFlags| {
        PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
            .ipv4(v4(CIP), v4("10.0.0.1"))
            .tcp(40000, 80)
            .flags(f)
            .build()
    };
    let s = |f: TcpFlags| {
        PacketBuilder::ethernet(RS1_MAC, INT_MAC)
            .ipv4(v4(RS1), v4(CIP))
            .tcp(8080, 40000)
            .flags(f)
            .build()
    };
    d.send(EXT, c(TcpFlags::SYN));
    d.send(INT, s(TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0)));
    d.send(EXT, c(TcpFlags::ACK));
    let state = |d: &D| {
        d.w.conns()
            .iter()
            .next()
            .map(|(_, c)| c.state_name())
            .unwrap_or("gone")
    };
    assert_eq!(state(&d), "ESTABLISHED");
    // The server closes first: OUTPUT fin from ESTABLISHED → FIN_WAIT (120 s).
    d.send(INT, s(TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0)));
    assert_eq!(state(&d), "FIN_WAIT");
    d.wait(119);
    assert_eq!(state(&d), "FIN_WAIT");
    d.wait(2);
    assert_eq!(state(&d), "gone");
}

#[test]
fn fullnat_local_port_returns_to_the_pool_on_expiry() {
    let mut topo = Topo::standard();
    topo.settings.lport_range = (2000, 2000);
    topo.timeouts.set(0, 0, 10).expect("udp 10 s");
    let mut d = D::new(&topo);
    assert_eq!(d.send(EXT, udp("10.0.0.4", 5000)), 1);
    assert_eq!(d.send(EXT, udp("10.0.0.4", 5001)), 0);
    assert_eq!(d.c.drops_of(DropReason::LaddrExhausted), 1);
    d.wait(11);
    assert_eq!(d.w.conns().len(), 0);
    assert_eq!(
        d.send(EXT, udp("10.0.0.4", 5002)),
        1,
        "the freed port serves a new flow"
    );
}

fn syn_ack(flags: TcpFlags, sport: u16) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4("10.0.0.7"))
        .tcp(sport, 80)
        .flags(flags)
        .build()
}

fn two_server_topo(rs1_weight: u32, with_rs1: bool, expire_nodest: bool) -> Topo {
    let mut t = Topo::empty();
    t.settings.expire_nodest_conn = expire_nodest;
    let s = t.svc(6, "10.0.0.7", 80, "rr");
    if with_rs1 {
        s.dest(RS1, 80, rvs::conntrack::Fwd::Nat, rs1_weight);
    }
    s.dest(RS2, 80, rvs::conntrack::Fwd::Nat, 1);
    t
}

/// The real server the conn of client port `sport` uses.
fn server_of(d: &D, sport: u16) -> Option<std::net::IpAddr> {
    d.w.conns()
        .iter()
        .find(|(_, c)| c.cport() == sport)
        .map(|(_, c)| rvs::conntrack::addr_to_ip(&c.rip(), false))
}

#[test]
fn deleted_real_server_connections_end_at_their_next_packet_with_expire_nodest_conn() {
    let mut d = D::new(&two_server_topo(1, true, true));
    // rr: find a client port that went to RS1.
    let mut on_rs1 = None;
    for p in 1000..1010 {
        d.send(EXT, syn_ack(TcpFlags::SYN, p));
        if server_of(&d, p) == Some(ip(RS1)) {
            on_rs1 = Some(p);
        }
    }
    let p = on_rs1.expect("rr used RS1");
    // The next snapshot has RS1 deleted; RS2 keeps its slot id (2), as the
    // control plane keeps ids of real servers that stay.
    let mut t = two_server_topo(1, true, true);
    t.services[0].dests.retain(|d| d.0 != ip(RS1));
    let mut s = (*t.snapshot(2)).clone();
    s.services[0].dests[0].id = 2;
    s.services[0].views[0].id = 2;
    d.w.install(std::sync::Arc::new(s));
    assert_eq!(
        d.send(EXT, syn_ack(TcpFlags::ACK, p)),
        0,
        "packet to the deleted server dropped"
    );
    assert_eq!(d.c.drops_of(DropReason::DestDeleted), 1);
    assert_eq!(server_of(&d, p), None, "its connection is gone");
    let before = d.w.conns().len();
    assert!(before > 0, "connections of the other server remain");
}

#[test]
fn without_expire_nodest_conn_connections_of_a_deleted_server_keep_flowing() {
    let mut d = D::new(&two_server_topo(1, true, false));
    let mut on_rs1 = None;
    for p in 1000..1010 {
        d.send(EXT, syn_ack(TcpFlags::SYN, p));
        if server_of(&d, p) == Some(ip(RS1)) {
            on_rs1 = Some(p);
        }
    }
    let p = on_rs1.expect("rr used RS1");
    let mut t = two_server_topo(1, true, false);
    t.services[0].dests.retain(|d| d.0 != ip(RS1));
    let mut s = (*t.snapshot(2)).clone();
    s.services[0].dests[0].id = 2;
    s.services[0].views[0].id = 2;
    d.w.install(std::sync::Arc::new(s));
    assert_eq!(
        d.send(EXT, syn_ack(TcpFlags::ACK, p)),
        1,
        "still forwarded until it expires"
    );
    assert_eq!(server_of(&d, p), Some(ip(RS1)));
}

#[test]
fn quiesced_server_keeps_established_connections_but_gets_no_new_one() {
    let mut d = D::new(&two_server_topo(1, true, true));
    let mut on_rs1 = None;
    for p in 1000..1010 {
        d.send(EXT, syn_ack(TcpFlags::SYN, p));
        if server_of(&d, p) == Some(ip(RS1)) {
            on_rs1 = Some(p);
        }
    }
    let p = on_rs1.expect("rr used RS1");
    d.w.install(two_server_topo(0, true, true).snapshot(2));
    assert_eq!(
        d.send(EXT, syn_ack(TcpFlags::ACK, p)),
        1,
        "established connection continues"
    );
    for q in 2000..2020 {
        d.send(EXT, syn_ack(TcpFlags::SYN, q));
        assert_eq!(
            server_of(&d, q),
            Some(ip(RS2)),
            "new connections avoid the quiesced server"
        );
    }
}
