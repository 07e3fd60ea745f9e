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
