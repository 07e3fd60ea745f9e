//! Golden packets for IP fragments (issue 17 item 3): datagrams built whole
//! with the packet builder and split into fragments go through a real
//! worker on the `mem` driver; what leaves must be, byte for byte, the
//! fragments of the datagram rewritten as a whole (forwarding a fragmented
//! datagram = fragmenting the forwarded datagram), in NAT, DR, TUN and
//! FULLNAT, both directions, IPv4 and IPv6. Each output fragment is decoded
//! by `etherparse` (IPv4 header checksum) and the output fragments are
//! reassembled and their L4 checksum recomputed there. Also: fragments
//! before their first fragment wait and follow it, a flood of non-first
//! fragments is bounded and counted, and with two workers every fragment
//! reaches the flow owner whatever worker received it.

mod common;
mod support;

use common::*;
use rvs::dataplane::counters::{CoreCounters, DropReason};
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig, PENDING_NS, PENDING_SLOTS};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::{checksum, ip_proto, TcpFlags};
use std::sync::Arc;
use std::time::Duration;

const IDENT: u16 = 0x4242;

/// A frame from the client side (router → director).
fn from_client() -> PacketBuilder {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
}
/// A frame the director sends to the client side.
fn to_client() -> PacketBuilder {
    PacketBuilder::ethernet(EXT_MAC, ROUTER_MAC)
}
fn from_rs(mac: rvs::wire::EthernetAddress) -> PacketBuilder {
    PacketBuilder::ethernet(mac, INT_MAC)
}
fn to_rs(mac: rvs::wire::EthernetAddress) -> PacketBuilder {
    PacketBuilder::ethernet(INT_MAC, mac)
}
const IDENT6: u32 = 0x0102_0304;

// ---- datagrams and how they are split -------------------------------------

fn udp4_big(
    b: PacketBuilder,
    src: &str,
    dst: &str,
    sp: u16,
    dp: u16,
    ttl: u8,
    n: usize,
) -> Vec<u8> {
    b.ipv4(v4(src), v4(dst))
        .ttl(ttl)
        .ident(IDENT)
        .udp(sp, dp)
        .payload_fill(n)
        .build()
}

fn udp6_big(b: PacketBuilder, src: &str, dst: &str, sp: u16, dp: u16, hl: u8, n: usize) -> Vec<u8> {
    b.ipv6(v6(src), v6(dst))
        .hop_limit(hl)
        .udp(sp, dp)
        .payload_fill(n)
        .build()
}

/// Split the IPv4 packet of an Ethernet frame (20-byte header) into
/// fragments of `chunk` payload bytes (a multiple of 8), as a router would.
fn frag4(frame: &[u8], chunk: usize) -> Vec<Vec<u8>> {
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
            let mf = if i + 1 < n { 0x2000 } else { 0 };
            let off = (i * chunk / 8) as u16 | mf;
            f[20..22].copy_from_slice(&off.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

/// Split the IPv6 packet of an Ethernet frame (no extension headers) into
/// fragments of `chunk` bytes with a fragment header.
fn frag6(frame: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let nh = frame[20];
    let plen = u16::from_be_bytes([frame[18], frame[19]]) as usize;
    let payload = &frame[54..54 + plen];
    let n = payload.len().div_ceil(chunk);
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let mut f = frame[..54].to_vec();
            f[20] = ip_proto::FRAGMENT;
            f[18..20].copy_from_slice(&((8 + c.len()) as u16).to_be_bytes());
            let off = (i * chunk) as u16 | u16::from(i + 1 < n);
            f.extend_from_slice(&[nh, 0]);
            f.extend_from_slice(&off.to_be_bytes());
            f.extend_from_slice(&IDENT6.to_be_bytes());
            f.extend_from_slice(c);
            f
        })
        .collect()
}

/// Reassemble fragments (in any order) into the whole frame: the checks
/// then recompute the datagram's L4 checksum with etherparse.
fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    let v6 = frags[0][12..14] == [0x86, 0xdd];
    let mut parts: Vec<(usize, Vec<u8>, Vec<u8>)> = frags
        .iter()
        .map(|f| {
            if v6 {
                let off = (u16::from_be_bytes([f[56], f[57]]) & 0xfff8) as usize;
                let mut h = f[..54].to_vec();
                h[20] = f[54];
                (off, h, f[62..].to_vec())
            } else {
                let off = (u16::from_be_bytes([f[20], f[21]]) & 0x1fff) as usize * 8;
                (off, f[..34].to_vec(), f[34..].to_vec())
            }
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    let mut out = parts[0].1.clone();
    for p in &parts {
        assert_eq!(
            out.len() - out.len().min(if v6 { 54 } else { 34 }),
            p.0,
            "contiguous"
        );
        out.extend_from_slice(&p.2);
    }
    if v6 {
        let plen = (out.len() - 54) as u16;
        out[18..20].copy_from_slice(&plen.to_be_bytes());
    } else {
        let tl = (out.len() - 14) as u16;
        out[16..18].copy_from_slice(&tl.to_be_bytes());
        out[20..22].copy_from_slice(&[0, 0]);
        out[24..26].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&out[14..34]);
        out[24..26].copy_from_slice(&c.to_be_bytes());
    }
    out
}

/// etherparse: every fragment's IP header, and the reassembled datagram's
/// L4 checksum.
fn independent_check(frags: &[Vec<u8>]) {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    for f in frags {
        let p = SlicedPacket::from_ethernet(f).expect("etherparse decodes the fragment");
        if let Some(NetSlice::Ipv4(v4)) = &p.net {
            let h = v4.header().to_header();
            assert_eq!(
                h.header_checksum,
                h.calc_header_checksum(),
                "IPv4 header checksum"
            );
            if h.protocol.0 == ip_proto::IPIP {
                let ip = etherparse::Ipv4Slice::from_slice(v4.payload().payload).expect("inner");
                let ih = ip.header().to_header();
                assert_eq!(
                    ih.header_checksum,
                    ih.calc_header_checksum(),
                    "inner checksum"
                );
                return;
            }
        }
    }
    let whole = reassemble(frags);
    let p = SlicedPacket::from_ethernet(&whole).expect("etherparse decodes the datagram");
    match (&p.net, &p.transport) {
        (Some(NetSlice::Ipv4(v4)), Some(TransportSlice::Udp(u))) => {
            let h = v4.header().to_header();
            let want = u
                .to_header()
                .calc_checksum_ipv4(&h, u.payload())
                .expect("csum");
            assert_eq!(
                u.checksum(),
                want,
                "UDP checksum of the reassembled datagram"
            );
        }
        (Some(NetSlice::Ipv4(v4)), Some(TransportSlice::Tcp(t))) => {
            let h = v4.header().to_header();
            let want = t
                .to_header()
                .calc_checksum_ipv4(&h, t.payload())
                .expect("csum");
            assert_eq!(
                t.checksum(),
                want,
                "TCP checksum of the reassembled datagram"
            );
        }
        (Some(NetSlice::Ipv6(v6)), Some(TransportSlice::Udp(u))) => {
            let h = v6.header().to_header();
            let want = u
                .to_header()
                .calc_checksum_ipv6(&h, u.payload())
                .expect("csum");
            assert_eq!(
                u.checksum(),
                want,
                "UDP/v6 checksum of the reassembled datagram"
            );
        }
        other => panic!("unexpected reassembled datagram {other:?}"),
    }
}

// ---- the director ---------------------------------------------------------

struct Director {
    w: Worker<MemQueue>,
    counters: Arc<CoreCounters>,
}

impl Director {
    fn new() -> Director {
        let links = Links::new(1);
        let counters = links.counters[0].clone();
        let queues = vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])];
        let cfg = WorkerConfig {
            conn_capacity: 1024,
            ..WorkerConfig::default()
        };
        Director {
            w: Worker::new(cfg, queues, links, Topo::standard().snapshot(1)),
            counters,
        }
    }

    fn send(&mut self, port: u16, frames: &[Vec<u8>]) -> Vec<(u16, Vec<u8>)> {
        for f in frames {
            self.w.queues_mut()[port as usize].inject(f.clone());
        }
        self.w.poll_once();
        self.w.flush_all();
        let mut got = Vec::new();
        for (p, q) in self.w.queues_mut().iter_mut().enumerate() {
            for f in q.take_sent() {
                got.push((p as u16, f));
            }
        }
        got
    }

    fn drops(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.counters.drops_of(*r)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Send `input` on `port`: exactly `want` leaves `port_out`, in order, and
/// nothing is dropped.
fn expect_out(d: &mut Director, port: u16, input: &[Vec<u8>], port_out: u16, want: &[Vec<u8>]) {
    let got = d.send(port, input);
    assert_eq!(d.drops(), vec![], "no drop");
    let frames: Vec<Vec<u8>> = got.iter().map(|(_, f)| f.clone()).collect();
    assert!(
        got.iter().all(|(p, _)| *p == port_out),
        "all on port {port_out}"
    );
    assert_eq!(frames.len(), want.len(), "fragments out");
    for (i, (g, w)) in frames.iter().zip(want).enumerate() {
        assert_eq!(g, w, "fragment {i} byte for byte");
    }
    independent_check(&frames);
}

// ---- the cases --------------------------------------------------------------

#[test]
fn nat_fragments_first_middle_last_are_rewritten_and_the_reply_too() {
    let mut d = Director::new();
    let input = frag4(
        &udp4_big(from_client(), CIP, "10.0.0.1", 5000, 53, 64, 3000),
        1480,
    );
    assert_eq!(input.len(), 3, "first, middle, last");
    let want = frag4(
        &udp4_big(to_rs(RS1_MAC), CIP, RS1, 5000, 5353, 63, 3000),
        1480,
    );
    expect_out(&mut d, EXT, &input, INT, &want);
    // The reply, fragmented by the real server.
    let reply = frag4(
        &udp4_big(from_rs(RS1_MAC), RS1, CIP, 5353, 5000, 64, 2500),
        1480,
    );
    let want = frag4(
        &udp4_big(to_client(), "10.0.0.1", CIP, 53, 5000, 63, 2500),
        1480,
    );
    expect_out(&mut d, INT, &reply, EXT, &want);
    assert_eq!(d.w.conns().len(), 1, "one connection for both datagrams");
}

#[test]
fn fullnat_fragments_rewrite_both_addresses_both_ways() {
    let mut d = Director::new();
    let input = frag4(
        &udp4_big(from_client(), CIP, "10.0.0.4", 5000, 53, 64, 4000),
        1480,
    );
    let want = frag4(
        &udp4_big(to_rs(RS2_MAC), LIP, RS2, 1025, 5353, 63, 4000),
        1480,
    );
    expect_out(&mut d, EXT, &input, INT, &want);
    let reply = frag4(
        &udp4_big(from_rs(RS2_MAC), RS2, LIP, 5353, 1025, 64, 4000),
        1480,
    );
    let want = frag4(
        &udp4_big(to_client(), "10.0.0.4", CIP, 53, 5000, 63, 4000),
        1480,
    );
    expect_out(&mut d, INT, &reply, EXT, &want);
}

#[test]
fn dr_fragments_change_only_the_mac() {
    let mut d = Director::new();
    let input = frag4(
        &udp4_big(from_client(), CIP, "10.0.0.2", 5000, 53, 64, 3000),
        1480,
    );
    let want = frag4(
        &udp4_big(to_rs(RS1_MAC), CIP, "10.0.0.2", 5000, 53, 64, 3000),
        1480,
    );
    expect_out(&mut d, EXT, &input, INT, &want);
}

#[test]
fn tun_fragments_are_each_encapsulated_unchanged() {
    let mut d = Director::new();
    let input = frag4(
        &udp4_big(from_client(), CIP, "10.0.0.3", 5000, 53, 64, 3000),
        1024,
    );
    let want: Vec<Vec<u8>> = input
        .iter()
        .map(|f| {
            to_rs(RS2_MAC)
                .ipv4(v4(DIP_INT), v4(RS2))
                .raw_l4(ip_proto::IPIP, &f[14..])
                .build()
        })
        .collect();
    expect_out(&mut d, EXT, &input, INT, &want);
}

#[test]
fn tcp_segment_fragments_follow_the_connection_and_keep_its_checksum() {
    let mut d = Director::new();
    let seg = |b: PacketBuilder, s: &str, t: &str, sp: u16, dp: u16, f: TcpFlags, ttl: u8, n| {
        b.ipv4(v4(s), v4(t))
            .ttl(ttl)
            .ident(IDENT)
            .tcp(sp, dp)
            .flags(f)
            .seq(7)
            .payload_fill(n)
            .build()
    };
    let syn = seg(
        from_client(),
        CIP,
        "10.0.0.1",
        40000,
        80,
        TcpFlags::SYN,
        64,
        0,
    );
    let got = d.send(EXT, &[syn]);
    assert_eq!(got.len(), 1, "SYN forwarded");
    let input = frag4(
        &seg(
            from_client(),
            CIP,
            "10.0.0.1",
            40000,
            80,
            TcpFlags::ACK,
            64,
            3000,
        ),
        1480,
    );
    let want = frag4(
        &seg(
            to_rs(RS1_MAC),
            CIP,
            RS1,
            40000,
            8080,
            TcpFlags::ACK,
            63,
            3000,
        ),
        1480,
    );
    expect_out(&mut d, EXT, &input, INT, &want);
}

#[test]
fn ipv6_fragment_headers_through_nat_and_fullnat() {
    let mut d = Director::new();
    let input = frag6(
        &udp6_big(from_client(), CIP6, "2001:db8::1", 5000, 53, 64, 3000),
        1448,
    );
    let want = frag6(
        &udp6_big(to_rs(RS1_MAC), CIP6, RS1_6, 5000, 5353, 63, 3000),
        1448,
    );
    expect_out(&mut d, EXT, &input, INT, &want);
    let input = frag6(
        &udp6_big(from_client(), CIP6, "2001:db8::4", 5001, 53, 64, 3000),
        1448,
    );
    let want = frag6(
        &udp6_big(to_rs(RS2_MAC), LIP6, RS2_6, 1025, 5353, 63, 3000),
        1448,
    );
    expect_out(&mut d, EXT, &input, INT, &want);
    let reply = frag6(
        &udp6_big(from_rs(RS2_MAC), RS2_6, LIP6, 5353, 1025, 64, 3000),
        1448,
    );
    let want = frag6(
        &udp6_big(to_client(), "2001:db8::4", CIP6, 53, 5001, 63, 3000),
        1448,
    );
    expect_out(&mut d, INT, &reply, EXT, &want);
}

#[test]
fn fragments_before_the_first_wait_and_follow_it() {
    let mut d = Director::new();
    let input = frag4(
        &udp4_big(from_client(), CIP, "10.0.0.1", 5000, 53, 64, 4000),
        1480,
    );
    let want = frag4(
        &udp4_big(to_rs(RS1_MAC), CIP, RS1, 5000, 5353, 63, 4000),
        1480,
    );
    assert_eq!(input.len(), 3);
    // Last, then middle: nothing leaves yet, nothing is dropped.
    assert!(d
        .send(EXT, &[input[2].clone(), input[1].clone()])
        .is_empty());
    assert_eq!(d.w.frags_waiting(), 2);
    assert_eq!(d.drops(), vec![]);
    // The first: it leaves first, then the waiting ones in arrival order.
    expect_out(
        &mut d,
        EXT,
        &input[..1],
        INT,
        &[want[0].clone(), want[2].clone(), want[1].clone()],
    );
    assert_eq!(d.w.frags_waiting(), 0);
}

#[test]
fn a_flood_of_non_first_fragments_is_bounded_and_counted() {
    let mut d = Director::new();
    let flood = 3 * PENDING_SLOTS as u16;
    let frames: Vec<Vec<u8>> = (0..flood)
        .map(|id| {
            let mut f = frag4(
                &udp4_big(from_client(), CIP, "10.0.0.1", 5000, 53, 64, 3000),
                1480,
            )
            .swap_remove(1);
            f[18..20].copy_from_slice(&id.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect();
    for chunk in frames.chunks(32) {
        assert!(d.send(EXT, chunk).is_empty(), "nothing forwarded");
    }
    assert_eq!(
        d.w.frags_waiting(),
        PENDING_SLOTS,
        "the buffer holds its bound"
    );
    let full = u64::from(flood) - PENDING_SLOTS as u64;
    assert_eq!(d.drops(), vec![(DropReason::FragBufferFull, full)]);
    // They age out.
    d.w.advance_clock(Duration::from_nanos(PENDING_NS + 1));
    assert!(d.send(EXT, &[]).is_empty());
    assert_eq!(d.w.frags_waiting(), 0);
    assert_eq!(
        d.drops(),
        vec![
            (DropReason::FragBufferFull, full),
            (DropReason::FragTimeout, PENDING_SLOTS as u64)
        ]
    );
    // And the director still forwards a whole fragmented datagram.
    let input = frag4(
        &udp4_big(from_client(), CIP, "10.0.0.1", 5001, 53, 64, 3000),
        1480,
    );
    let got = d.send(EXT, &input);
    assert_eq!(got.len(), 3);
}

#[test]
fn later_fragments_of_a_refused_first_fragment_are_counted_frag_no_conn() {
    let mut d = Director::new();
    // No service on 10.0.0.1:54 (a VIP: the director's own address).
    let input = frag4(
        &udp4_big(from_client(), CIP, "10.0.0.1", 5000, 54, 64, 3000),
        1480,
    );
    assert!(d.send(EXT, &input[..1]).is_empty());
    assert!(d.send(EXT, &input[1..]).is_empty());
    assert_eq!(
        d.drops(),
        vec![(DropReason::Local, 1), (DropReason::FragNoConn, 2)]
    );
}

#[test]
fn a_tiny_first_fragment_and_non_tcp_udp_fragments_are_refused() {
    let mut d = Director::new();
    // A first fragment with 8 bytes of a TCP header (RFC 1858).
    let seg = from_client()
        .ipv4(v4(CIP), v4("10.0.0.1"))
        .tcp(40000, 80)
        .flags(TcpFlags::SYN)
        .payload_fill(64)
        .build();
    let tiny = frag4(&seg, 8).swap_remove(0);
    assert!(d.send(EXT, &[tiny]).is_empty());
    assert_eq!(d.drops(), vec![(DropReason::Fragment, 1)]);
}

#[test]
fn with_two_workers_every_fragment_reaches_the_flow_owner() {
    let mut topo = Topo::standard();
    topo.workers = 2;
    let links = Links::new(2);
    let snap = topo.snapshot(1);
    let mut w: Vec<Worker<MemQueue>> = (0..2u16)
        .map(|i| {
            Worker::new(
                WorkerConfig {
                    index: i,
                    workers: 2,
                    conn_capacity: 1024,
                    ..WorkerConfig::default()
                },
                vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])],
                links.clone(),
                snap.clone(),
            )
        })
        .collect();
    let mut owners_seen = [0u32; 2];
    // Many datagrams (client ports, hence owners, and identifications,
    // hence routers, vary), fragments spread over both workers' queues,
    // the last one first.
    for k in 0..24u16 {
        let mut whole = udp4_big(from_client(), CIP, "10.0.0.4", 6000 + k, 53, 64, 3000);
        whole[18..20].copy_from_slice(&(IDENT + k * 7).to_be_bytes());
        whole[24..26].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&whole[14..34]);
        whole[24..26].copy_from_slice(&c.to_be_bytes());
        let input = frag4(&whole, 1480);
        for (i, f) in input.iter().enumerate().rev() {
            w[(i + k as usize) % 2].queues_mut()[EXT as usize].inject(f.clone());
        }
        let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
        for _ in 0..8 {
            for (wi, wk) in w.iter_mut().enumerate() {
                wk.poll_once();
                wk.flush_all();
                for f in wk.queues_mut()[INT as usize].take_sent() {
                    out.push((wi, f));
                }
            }
        }
        assert_eq!(out.len(), 3, "datagram {k}: all fragments forwarded");
        let owner = out[0].0;
        assert!(
            out.iter().all(|(wi, _)| *wi == owner),
            "one worker sends them all"
        );
        owners_seen[owner] += 1;
        let frames: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
        assert_eq!(
            frames[0][20..22],
            [0x20, 0x00],
            "the first fragment leaves first"
        );
        independent_check(&frames);
        let whole_out = reassemble(&frames);
        let mut want = udp4_big(to_rs(RS2_MAC), LIP, RS2, 0, 5353, 63, 3000);
        let lport = u16::from_be_bytes([whole_out[34], whole_out[35]]);
        assert_eq!(
            usize::from(lport % 2),
            owner,
            "local port of the owner's partition"
        );
        want[34..36].copy_from_slice(&lport.to_be_bytes());
        assert_eq!(whole_out[42..], want[42..], "payload intact");
    }
    assert!(
        owners_seen.iter().all(|&n| n > 0),
        "both workers own some: {owners_seen:?}"
    );
    let dropped: u64 = links
        .counters
        .iter()
        .map(|c| DropReason::ALL.iter().map(|r| c.drops_of(*r)).sum::<u64>())
        .sum();
    assert_eq!(dropped, 0);
}
