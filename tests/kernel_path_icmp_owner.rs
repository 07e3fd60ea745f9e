//! ICMP errors with two workers and a kernel interface on both ports
//! (issue 11): an error arrives on whichever queue the device (TAP: the
//! kernel's queue choice; AF_PACKET: the fanout program) picked, and only
//! the worker owning the quoted flow holds its connection. The error must
//! be handed to that owner (`steer`'s owner function) and relayed, and
//! only an error that quotes no connection goes up to the director's
//! kernel.
//!
//! * NAT: a real server's port unreachable about a UDP flow owned by the
//!   other worker is translated and reaches the client.
//! * FULLNAT with the DIP as local address: a real server's port
//!   unreachable to the DIP about a flow owned by the other worker is
//!   relayed to the client, not handed to the kernel (the receiving
//!   worker's own table does not hold the connection).
//! * An error to the DIP quoting no connection goes up to the kernel
//!   interface (once, not relayed).

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use common::*;
use rvs::conntrack::Fwd;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::kernel::KernelRings;
use rvs::dataplane::worker::{Links, Worker};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::{parse_l2, EthernetAddress, Ipv4Packet};

struct Pair {
    w: [Worker<MemQueue>; 2],
    rings: Arc<KernelRings>,
}

fn pair(topo: &Topo) -> Pair {
    let rings = Arc::new(KernelRings::new(2, 2, &[EXT, INT], 2048));
    let links = Links::with_kernel(2, Some(rings.clone()));
    Pair {
        w: worker_pair(topo, &links),
        rings,
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

    /// What was sent on `port`, by any worker.
    fn sent(&mut self, port: u16) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for w in self.w.iter_mut() {
            v.extend(w.queues_mut()[port as usize].take_sent());
        }
        v
    }

    fn to_kernel(&self) -> [u64; 2] {
        [0, 1].map(|i| self.w[i].counters().to_kernel.load(Relaxed))
    }

    /// Frames in the up rings, per worker.
    fn up_frames(&self) -> [Vec<Vec<u8>>; 2] {
        [0u16, 1].map(|i| {
            let mut v = Vec::new();
            while let Some(f) = self.rings.pop_up(i) {
                v.push(f.data().to_vec());
                self.rings.recycle_up(f);
            }
            v
        })
    }
}

fn topo(fullnat_laddr: &str) -> Topo {
    let mut t = Topo::empty();
    t.workers = 2;
    t.svc(17, "10.0.0.1", 53, "rr").dest(RS1, 5353, Fwd::Nat, 1);
    t.svc(17, "10.0.0.4", 53, "rr")
        .dest(RS2, 5353, Fwd::FullNat, 1)
        .laddr(fullnat_laddr);
    t
}

fn udp_to_vip(cport: u16, vip: &str) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4(vip))
        .udp(cport, 53)
        .payload_fill(18)
        .build()
}

/// The IPv4 packet of a frame, its ICMP message's quoted IPv4 header and
/// the quoted UDP ports.
fn ip_of(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let l2 = parse_l2(frame).expect("ethernet");
    Ipv4Packet::new_checked(&frame[l2.l3_offset..]).expect("ipv4")
}

/// An ICMP port unreachable from `from` to `to` (received on port INT)
/// quoting `quoted` (an Ethernet frame whose IP packet is quoted).
fn port_unreachable(from: &str, from_mac: EthernetAddress, to: &str, quoted: &[u8]) -> Vec<u8> {
    let l2 = parse_l2(quoted).expect("ethernet");
    PacketBuilder::ethernet(from_mac, INT_MAC)
        .ipv4(v4(from), v4(to))
        .icmpv4_error(3, 3, &quoted[l2.l3_offset..])
        .build()
}

/// The quoted (destination address, destination port) of an ICMPv4 error
/// frame.
fn quoted_dst(frame: &[u8]) -> (std::net::Ipv4Addr, u16) {
    let ip = ip_of(frame);
    assert_eq!(ip.next_header(), 1, "an ICMP message");
    let icmp = ip.payload();
    assert_eq!((icmp[0], icmp[1]), (3, 3), "port unreachable");
    let q = Ipv4Packet::new_checked(&icmp[8..]).expect("quoted ipv4");
    let ihl = q.header_len();
    let udp = &icmp[8 + ihl..];
    (q.dst_addr(), u16::from_be_bytes([udp[2], udp[3]]))
}

/// A client port whose flow worker `owner` owns.
fn cport_owned_by(topo: &Topo, vip: &str, owner: u16) -> u16 {
    let snap = topo.snapshot(1);
    (40000..41000u16)
        .find(|p| {
            snap.steer
                .owner(17, &v4(CIP).octets(), *p, &v4(vip).octets(), 53)
                == owner
        })
        .expect("a client port of each owner")
}

#[test]
fn nat_real_servers_port_unreachable_arriving_at_the_other_worker_is_translated_to_the_client() {
    let t = topo(LIP);
    let mut p = pair(&t);
    let cport = cport_owned_by(&t, "10.0.0.1", 1);
    p.w[1].queues_mut()[EXT as usize].inject(udp_to_vip(cport, "10.0.0.1"));
    p.run();
    let fwd = p.sent(INT);
    assert_eq!(fwd.len(), 1, "the datagram went to the real server");
    assert_eq!(p.w[1].conns().len(), 1, "worker 1 owns the connection");
    assert_eq!(p.w[0].conns().len(), 0);

    // RS1 answers with port unreachable to the client; it arrives at worker 0.
    let err = port_unreachable(RS1, RS1_MAC, CIP, &fwd[0]);
    p.w[0].queues_mut()[INT as usize].inject(err);
    p.run();
    let out = p.sent(EXT);
    assert_eq!(out.len(), 1, "the error reached the client side: {out:?}");
    assert_eq!(ip_of(&out[0]).dst_addr(), v4(CIP));
    assert_eq!(
        quoted_dst(&out[0]),
        (v4("10.0.0.1"), 53),
        "the quoted packet is translated back to the VIP"
    );
    assert_eq!(p.to_kernel(), [0, 0], "nothing went to the kernel");
    assert_eq!(p.w[0].counters().steered_out.load(Relaxed), 1);
}

#[test]
fn fullnat_port_unreachable_to_the_dip_about_the_other_workers_flow_is_relayed_not_handed_to_the_kernel(
) {
    // The DIP of the int port is the service's local address.
    let t = topo(DIP_INT);
    for owner in [0u16, 1] {
        let mut p = pair(&t);
        let cport = cport_owned_by(&t, "10.0.0.4", owner);
        p.w[owner as usize].queues_mut()[EXT as usize].inject(udp_to_vip(cport, "10.0.0.4"));
        p.run();
        let fwd = p.sent(INT);
        assert_eq!(fwd.len(), 1, "the datagram went to the real server");
        let ip = ip_of(&fwd[0]);
        assert_eq!(ip.src_addr(), v4(DIP_INT), "FULLNAT from the DIP");
        let lport = u16::from_be_bytes([ip.payload()[0], ip.payload()[1]]);
        let lport_owner = rvs::steer::lport_owner(lport, 2);
        assert_eq!(
            p.w[lport_owner as usize].conns().len(),
            1,
            "the local port's owner holds the connection"
        );
        let other = 1 - lport_owner as usize;
        assert_eq!(p.w[other].conns().len(), 0);

        // RS2 answers with port unreachable to the DIP (the local
        // address); it arrives at the worker that does not hold the flow.
        let err = port_unreachable(RS2, RS2_MAC, DIP_INT, &fwd[0]);
        p.w[other].queues_mut()[INT as usize].inject(err);
        p.run();
        let out = p.sent(EXT);
        assert_eq!(
            p.to_kernel(),
            [0, 0],
            "an error about a connection is not the kernel's"
        );
        assert_eq!(out.len(), 1, "the error reached the client: {out:?}");
        assert_eq!(ip_of(&out[0]).dst_addr(), v4(CIP));
        assert_eq!(quoted_dst(&out[0]), (v4("10.0.0.4"), 53));
    }
}

#[test]
fn icmp_error_to_the_dip_quoting_no_connection_goes_up_to_the_kernel_once() {
    let t = topo(LIP);
    for arrives_at in [0usize, 1] {
        let mut p = pair(&t);
        // The director's kernel sent UDP from the DIP to a closed port of
        // RS1; RS1's port unreachable comes back.
        let kernel_sent = PacketBuilder::ethernet(INT_MAC, RS1_MAC)
            .ipv4(v4(DIP_INT), v4(RS1))
            .udp(41234, 9)
            .payload_fill(8)
            .build();
        let err = port_unreachable(RS1, RS1_MAC, DIP_INT, &kernel_sent);
        p.w[arrives_at].queues_mut()[INT as usize].inject(err.clone());
        p.run();
        let to = p.to_kernel();
        assert_eq!(to[0] + to[1], 1, "one copy went up: {to:?}");
        let up = p.up_frames();
        let frames: Vec<&Vec<u8>> = up.iter().flatten().collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].len(), err.len());
        assert_eq!(quoted_dst(frames[0]), (v4(RS1), 9));
        assert!(
            p.sent(EXT).is_empty() && p.sent(INT).is_empty(),
            "not relayed"
        );
    }
}
