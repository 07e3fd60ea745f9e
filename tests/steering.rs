//! Two workers, both steering paths (DESIGN §5): packets that arrive at
//! their owner's queue (device steering) are processed there; packets that
//! arrive elsewhere are handed to the owner over the software ring. No
//! connection is ever created on two cores; persistence holds across
//! workers because a persistent client's owner is its masked address.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use common::*;
use rvs::conntrack::{addr_from_ip, Fwd};
use rvs::dataplane::counters::CoreCounters;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

struct Pair {
    w: [Worker<MemQueue>; 2],
    c: [Arc<CoreCounters>; 2],
}

fn pair(topo: &Topo) -> Pair {
    let links = Links::new(2);
    Pair {
        w: worker_pair(topo, &links),
        c: [links.counters[0].clone(), links.counters[1].clone()],
    }
}

impl Pair {
    fn run(&mut self) {
        for _ in 0..8 {
            for w in self.w.iter_mut() {
                w.poll_once();
            }
        }
        for w in self.w.iter_mut() {
            w.flush_all();
        }
    }
    fn sent(&mut self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for w in self.w.iter_mut() {
            for q in w.queues_mut() {
                v.extend(q.take_sent());
            }
        }
        v
    }
}

fn syn(cip: &str, cport: u16, vip: &str) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(cip), v4(vip))
        .tcp(cport, 80)
        .flags(TcpFlags::SYN)
        .build()
}

fn topo2() -> Topo {
    let mut t = Topo::standard();
    t.workers = 2;
    t
}

#[test]
fn software_ring_hands_packets_to_their_owner() {
    let topo = topo2();
    let mut p = pair(&topo);
    let snap = topo.snapshot(1);
    let mut owned_by_1 = 0;
    for port in 1000..1200u16 {
        let f = syn(CIP, port, "10.0.0.1");
        if snap
            .steer
            .owner(6, &v4(CIP).octets(), port, &v4("10.0.0.1").octets(), 80)
            == 1
        {
            owned_by_1 += 1;
        }
        // Everything arrives at worker 0, as from a device that cannot steer.
        p.w[0].queues_mut()[EXT as usize].inject(f);
    }
    p.run();
    assert!(
        owned_by_1 > 50 && owned_by_1 < 150,
        "the owner function splits clients: {owned_by_1}"
    );
    assert_eq!(p.c[0].steered_out.load(Relaxed), owned_by_1);
    assert_eq!(p.c[1].steered_in.load(Relaxed), owned_by_1);
    assert_eq!(p.w[1].conns().len() as u64, owned_by_1);
    assert_eq!(p.w[0].conns().len() as u64, 200 - owned_by_1);
    assert_eq!(p.sent().len(), 200, "every SYN forwarded once");
    // No connection exists on both cores.
    for (_, c) in p.w[0].conns().iter() {
        assert!(p.w[1]
            .conns()
            .lookup(&c.original_tuple(), c.original_tuple().hash())
            .is_none());
    }
}

#[test]
fn device_steered_packets_need_no_handover() {
    let topo = topo2();
    let mut p = pair(&topo);
    let snap = topo.snapshot(1);
    for port in 1000..1200u16 {
        let owner = snap
            .steer
            .owner(6, &v4(CIP).octets(), port, &v4("10.0.0.1").octets(), 80);
        p.w[owner as usize].queues_mut()[EXT as usize].inject(syn(CIP, port, "10.0.0.1"));
    }
    p.run();
    assert_eq!(
        p.c[0].steered_out.load(Relaxed) + p.c[1].steered_out.load(Relaxed),
        0
    );
    assert_eq!(p.w[0].conns().len() + p.w[1].conns().len(), 200);
}

#[test]
fn fullnat_reply_reaches_the_worker_that_owns_its_local_port() {
    let topo = topo2();
    let mut p = pair(&topo);
    for port in 2000..2040u16 {
        p.w[0].queues_mut()[EXT as usize].inject(syn(CIP, port, "10.0.0.4"));
    }
    p.run();
    let out = p.sent();
    assert_eq!(out.len(), 40);
    // Each worker allocated local ports only from its partition.
    for (i, w) in p.w.iter().enumerate() {
        for (_, c) in w.conns().iter() {
            assert_eq!(c.fwd(), Fwd::FullNat);
            assert_eq!(c.lport() % 2, i as u16, "lport {} on worker {i}", c.lport());
        }
    }
    // Replies from the real server all arrive at worker 1's queue; the ones
    // worker 0 owns are handed over and translated there.
    for f in &out {
        let e = etherparse::SlicedPacket::from_ethernet(f).expect("parses");
        let Some(etherparse::TransportSlice::Tcp(t)) = e.transport else {
            panic!("tcp")
        };
        let reply = PacketBuilder::ethernet(RS2_MAC, INT_MAC)
            .ipv4(v4(RS2), v4(LIP))
            .tcp(8080, t.source_port())
            .flags(TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0))
            .build();
        p.w[1].queues_mut()[INT as usize].inject(reply);
    }
    let before = p.c[1].steered_out.load(Relaxed);
    p.run();
    let replies = p.sent();
    assert_eq!(replies.len(), 40, "every reply restored and sent");
    assert_eq!(
        p.c[1].steered_out.load(Relaxed) - before,
        p.w[0].conns().len() as u64
    );
    for f in replies {
        let e = etherparse::SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(etherparse::NetSlice::Ipv4(ip)) = e.net else {
            panic!("v4")
        };
        assert_eq!(ip.header().source_addr(), v4("10.0.0.4"));
        assert_eq!(ip.header().destination_addr(), v4(CIP));
    }
}

#[test]
fn persistence_survives_across_workers() {
    let mut topo = Topo::empty();
    topo.workers = 2;
    topo.svc(6, "10.0.0.9", 0, "rr")
        .persistent(300, 24)
        .dest(RS1, 0, Fwd::Nat, 1)
        .dest(RS2, 0, Fwd::Nat, 1);
    let mut p = pair(&topo);
    // One client network (/24), many source ports and two service ports,
    // arriving at both workers' queues.
    for (i, port) in (3000..3100u16).enumerate() {
        let client = if i % 2 == 0 {
            "198.51.100.7"
        } else {
            "198.51.100.200"
        };
        let vport = if i % 3 == 0 { 443 } else { 80 };
        let f = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
            .ipv4(v4(client), v4("10.0.0.9"))
            .tcp(port, vport)
            .flags(TcpFlags::SYN)
            .build();
        p.w[i % 2].queues_mut()[EXT as usize].inject(f);
    }
    p.run();
    let all: Vec<_> =
        p.w.iter()
            .flat_map(|w| w.conns().iter().map(|(_, c)| (c.is_template(), c.rip())))
            .collect();
    let conns: Vec<_> = all.iter().filter(|(t, _)| !t).collect();
    assert_eq!(conns.len(), 100);
    let first = conns[0].1;
    assert!(
        conns.iter().all(|(_, r)| *r == first),
        "one real server for the whole /24"
    );
    let holders: Vec<usize> = p.w.iter().map(|w| w.conns().len() as usize).collect();
    assert!(
        holders.contains(&0),
        "one worker owns the client network: {holders:?}"
    );
    assert_eq!(
        all.iter().filter(|(t, _)| *t).count(),
        1,
        "a single template"
    );
    let _ = addr_from_ip(&ip(RS1));
}

#[test]
fn fullnat_local_ports_are_chosen_so_rss_delivers_replies_to_their_owner() {
    use rvs::steer::rss::{symmetric_rss_key, RssConfig};
    let mut topo = topo2();
    let rss = Arc::new(RssConfig {
        key: symmetric_rss_key(40),
        hash_functions: 0,
        reta: (0..128).map(|i| i % 2).collect(),
        reta_confirmed: true,
    });
    topo.rss_int = Some(rss.clone());
    let mut p = pair(&topo);
    for port in 2000..2060u16 {
        p.w[0].queues_mut()[EXT as usize].inject(syn(CIP, port, "10.0.0.4"));
    }
    p.run();
    let out = p.sent();
    assert_eq!(out.len(), 60);
    for (w, worker) in p.w.iter().enumerate() {
        for (_, c) in worker.conns().iter() {
            assert_eq!(
                c.lport() % 2,
                w as u16,
                "the lport partition names the owner"
            );
            assert_eq!(
                rss.fullnat_reply_queue(ip(RS2), 8080, ip(LIP), c.lport()),
                Some(w as u16),
                "RSS delivers the reply to lport {} to worker {w}",
                c.lport()
            );
        }
    }
    // The real server's replies, delivered where RSS puts them, need no
    // hand-over.
    let before = p.c[0].steered_out.load(Relaxed) + p.c[1].steered_out.load(Relaxed);
    for f in &out {
        let e = etherparse::SlicedPacket::from_ethernet(f).expect("parses");
        let Some(etherparse::TransportSlice::Tcp(t)) = e.transport else {
            panic!("tcp")
        };
        let q = rss
            .fullnat_reply_queue(ip(RS2), 8080, ip(LIP), t.source_port())
            .expect("v4");
        let reply = PacketBuilder::ethernet(RS2_MAC, INT_MAC)
            .ipv4(v4(RS2), v4(LIP))
            .tcp(8080, t.source_port())
            .flags(TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0))
            .build();
        p.w[q as usize].queues_mut()[INT as usize].inject(reply);
    }
    p.run();
    assert_eq!(p.sent().len(), 60, "every reply restored and sent");
    let after = p.c[0].steered_out.load(Relaxed) + p.c[1].steered_out.load(Relaxed);
    assert_eq!(after, before, "no reply needed the software ring");
}
