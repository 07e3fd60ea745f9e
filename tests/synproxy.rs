//! Golden packets of the SYN proxy: the cookie handshake, the real
//! server's handshake made by the director, the sequence / SACK /
//! timestamp shift of established traffic in both directions, and invalid
//! ACKs — through a real worker on the `mem` driver, every frame decoded and
//! its checksums recomputed by `etherparse`.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use common::*;
use etherparse::{NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};
use rvs::conntrack::Fwd;
use rvs::dataplane::counters::{CoreCounters, DropReason};
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
fn synack() -> TcpFlags {
    TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0)
}

/// A NAT and a FULLNAT TCP service with the proxy on, and a NAT one without.
fn topo() -> Topo {
    let mut t = Topo::empty();
    t.svc(6, "10.0.0.1", 80, "rr")
        .dest(RS1, 8080, Fwd::Nat, 1)
        .synproxy = true;
    t.svc(6, "10.0.0.4", 80, "rr")
        .dest(RS2, 8080, Fwd::FullNat, 1)
        .laddr(LIP)
        .synproxy = true;
    t.svc(6, "10.0.0.5", 80, "rr").dest(RS1, 8081, Fwd::Nat, 1);
    t
}

struct Director {
    w: Worker<MemQueue>,
    counters: Arc<CoreCounters>,
}

impl Director {
    fn new(capacity: u32) -> Director {
        let links = Links::new(1);
        let counters = links.counters[0].clone();
        let cfg = WorkerConfig {
            conn_capacity: capacity,
            ..WorkerConfig::default()
        };
        let queues = vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])];
        Director {
            w: Worker::new(cfg, queues, links, topo().snapshot(1)),
            counters,
        }
    }

    /// Send one frame; what left (port, frame), each checked by etherparse.
    fn send(&mut self, port: u16, frame: Vec<u8>) -> Vec<(u16, Seg)> {
        self.w.queues_mut()[port as usize].inject(frame);
        self.pass()
    }

    /// One pass of the worker; what left, decoded.
    fn pass(&mut self) -> Vec<(u16, Seg)> {
        self.w.poll_once();
        self.w.flush_all();
        let mut got = Vec::new();
        for (p, q) in self.w.queues_mut().iter_mut().enumerate() {
            for f in q.take_sent() {
                got.push((p as u16, decode(&f)));
            }
        }
        got
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.counters.drops_of(r)
    }
}

/// A decoded TCP segment.
#[derive(Debug, Clone, PartialEq)]
struct Seg {
    src: String,
    sport: u16,
    dst: String,
    dport: u16,
    seq: u32,
    ack: u32,
    syn: bool,
    ackf: bool,
    window: u16,
    mss: Option<u16>,
    ws: Option<u8>,
    sack_perm: bool,
    ts: Option<(u32, u32)>,
    sack: Vec<(u32, u32)>,
    payload: Vec<u8>,
}

fn decode(frame: &[u8]) -> Seg {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse decodes it");
    let Some(NetSlice::Ipv4(v4)) = &p.net else {
        panic!("IPv4 expected")
    };
    let h = v4.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("TCP expected")
    };
    let want = t
        .to_header()
        .calc_checksum_ipv4(&h, t.payload())
        .expect("checksum");
    assert_eq!(t.checksum(), want, "TCP checksum");
    let mut s = Seg {
        src: std::net::Ipv4Addr::from(h.source).to_string(),
        sport: t.source_port(),
        dst: std::net::Ipv4Addr::from(h.destination).to_string(),
        dport: t.destination_port(),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        syn: t.syn(),
        ackf: t.ack(),
        window: t.window_size(),
        mss: None,
        ws: None,
        sack_perm: false,
        ts: None,
        sack: Vec::new(),
        payload: t.payload().to_vec(),
    };
    for o in t.options_iterator() {
        match o.expect("well-formed options") {
            TcpOptionElement::MaximumSegmentSize(m) => s.mss = Some(m),
            TcpOptionElement::WindowScale(w) => s.ws = Some(w),
            TcpOptionElement::SelectiveAcknowledgementPermitted => s.sack_perm = true,
            TcpOptionElement::Timestamp(a, b) => s.ts = Some((a, b)),
            TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                s.sack.push(first);
                s.sack.extend(rest.iter().flatten());
            }
            _ => {}
        }
    }
    s
}

/// Client → VIP TCP frame with raw options.
fn client(vip: &str, cport: u16, flags: TcpFlags, seq: u32, ack: u32, opts: &[u8]) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4(vip))
        .tcp(cport, 80)
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .window(500)
        .tcp_options(opts)
        .build()
}

fn ts_opt(v: u32, e: u32) -> [u8; 12] {
    let mut o = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
    o[4..8].copy_from_slice(&v.to_be_bytes());
    o[8..12].copy_from_slice(&e.to_be_bytes());
    o
}

/// SYN options: MSS 1460, SACK permitted, timestamps, window scale 6.
fn syn_opts(tsval: u32) -> Vec<u8> {
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&[0, 0, 0, 0]);
    o.extend_from_slice(&[1, 3, 3, 6]);
    o
}

#[test]
fn a_syn_to_a_proxied_service_gets_a_cookie_syn_ack_and_no_connection() {
    let mut d = Director::new(1024);
    let out = d.send(
        EXT,
        client("10.0.0.1", 40000, SYN, 1000, 0, &syn_opts(5555)),
    );
    assert_eq!(out.len(), 1, "one SYN-ACK");
    let (port, s) = &out[0];
    assert_eq!(*port, EXT);
    assert_eq!((s.src.as_str(), s.sport), ("10.0.0.1", 80));
    assert_eq!((s.dst.as_str(), s.dport), (CIP, 40000));
    assert!(s.syn && s.ackf);
    assert_eq!(s.ack, 1001);
    assert_eq!(s.mss, Some(1460));
    assert_eq!(s.ws, Some(7));
    assert!(s.sack_perm);
    let (tsval, tsecr) = s.ts.expect("timestamps echoed");
    assert_eq!(tsecr, 5555);
    // Window scale 6 and SACK in the timestamp's low 6 bits.
    assert_eq!(tsval & 0x3f, 6 | 0x10);
    assert_eq!(d.w.conns().len(), 0, "no state for a SYN");
    assert_eq!(d.counters.syn_cookies_sent.load(Relaxed), 1);
}

#[test]
fn a_syn_flood_is_answered_and_counted_and_leaves_the_table_empty() {
    let mut d = Director::new(64);
    for i in 0..2000u32 {
        let f = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
            .ipv4(
                std::net::Ipv4Addr::from(0xc633_0000 + i), // 198.51.x.y, spoofed
                v4("10.0.0.1"),
            )
            .tcp(1024 + (i % 60000) as u16, 80)
            .flags(SYN)
            .seq(i)
            .build();
        d.w.queues_mut()[EXT as usize].inject(f);
        if i % 32 == 31 {
            d.w.poll_once();
        }
    }
    d.w.poll_once();
    d.w.flush_all();
    let sent = d.w.queues_mut()[EXT as usize].take_sent().len();
    let cookies = d.counters.syn_cookies_sent.load(Relaxed);
    let drops: u64 = DropReason::ALL.iter().map(|r| d.drops(*r)).sum();
    assert_eq!(cookies + drops, 2000, "every SYN answered or dropped");
    assert_eq!(sent as u64, cookies);
    assert_eq!(d.w.conns().len(), 0);
    // The same flood at a service without the proxy fills the table.
    let mut d = Director::new(64);
    for i in 0..200u32 {
        let f = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
            .ipv4(std::net::Ipv4Addr::from(0xc633_0000 + i), v4("10.0.0.5"))
            .tcp(1024 + i as u16, 80)
            .flags(SYN)
            .build();
        d.send(EXT, f);
    }
    assert_eq!(d.w.conns().len(), 64);
    assert!(d.drops(DropReason::TableFull) > 0);
}

/// The whole life of a proxied connection for service `vip`: returns the
/// (source, port) the real server saw.
fn handshake_and_shift(vip: &str, rs: &str, rport: u16) -> (String, u16) {
    let mut d = Director::new(1024);
    let out = d.send(EXT, client(vip, 40001, SYN, 1000, 0, &syn_opts(5555)));
    let sa = &out[0].1;
    let cookie = sa.seq;
    let our_ts = sa.ts.expect("ts").0;

    // Client's ACK (with its own timestamp) → the director's SYN to the server.
    let mut ack_opts = vec![1, 1];
    ack_opts.extend_from_slice(&ts_opt(5556, our_ts)[2..]);
    let out = d.send(
        EXT,
        client(vip, 40001, ACK, 1001, cookie.wrapping_add(1), &ack_opts),
    );
    assert_eq!(out.len(), 1, "SYN to the real server: {out:?}");
    let (port, syn) = &out[0];
    assert_eq!(*port, INT);
    assert_eq!((syn.dst.as_str(), syn.dport), (rs, rport));
    assert!(syn.syn && !syn.ackf);
    assert_eq!(syn.seq, 1000, "the client's ISN");
    assert_eq!(syn.mss, Some(1460));
    assert_eq!(syn.ws, Some(6), "the client's window scale");
    assert!(syn.sack_perm);
    assert_eq!(syn.ts, Some((5556, 0)));
    assert_eq!(d.w.conns().len(), 1);
    assert_eq!(d.counters.synproxy_acks_valid.load(Relaxed), 1);
    let seen = (syn.src.clone(), syn.sport);

    // Data before the server answered: dropped, counted (retransmitted).
    let early = client(vip, 40001, ACK, 1001, cookie.wrapping_add(1), b"");
    assert!(d.send(EXT, early).is_empty());
    assert_eq!(d.drops(DropReason::SynproxyPending), 1);

    // The server's SYN-ACK → the director's ACK to the server; nothing to the client.
    let rs_isn = 900_000u32;
    let mut rs_opts = vec![2, 4, 0x05, 0xb4, 4, 2];
    rs_opts.extend_from_slice(&ts_opt(777, 5556)[2..]);
    rs_opts.extend_from_slice(&[1, 3, 3, 7]);
    let f = PacketBuilder::ethernet(RS1_MAC, INT_MAC)
        .ipv4(v4(rs), v4(&seen.0))
        .tcp(rport, seen.1)
        .flags(synack())
        .seq(rs_isn)
        .ack(1001)
        .tcp_options(&rs_opts)
        .build();
    let out = d.send(INT, f);
    assert_eq!(out.len(), 1, "ACK to the server: {out:?}");
    let (port, a) = &out[0];
    assert_eq!(*port, INT);
    assert!(a.ackf && !a.syn);
    assert_eq!((a.seq, a.ack), (1001, rs_isn + 1));
    assert_eq!(a.ts, Some((5556, 777)));
    assert_eq!(d.counters.synproxy_established.load(Relaxed), 1);
    let (_, c) = d.w.conns().iter().next().expect("the connection");
    assert_eq!(c.state_name(), "ESTABLISHED");
    let sum = |f: fn(&rvs::dataplane::counters::ConnCounts) -> u64| -> u64 {
        d.counters.dest_conns.iter().map(f).sum()
    };
    assert_eq!(sum(|c| c.active.load(Relaxed)), 1, "counted active");
    assert_eq!(sum(|c| c.inactive.load(Relaxed)), 0);

    // Client data with a SACK block (in the director's space) → shifted.
    let delta = rs_isn.wrapping_sub(cookie);
    let l = cookie.wrapping_add(11);
    let r = cookie.wrapping_add(21);
    let mut o = vec![1, 1, 5, 10];
    o.extend_from_slice(&l.to_be_bytes());
    o.extend_from_slice(&r.to_be_bytes());
    o.extend_from_slice(&ts_opt(5557, our_ts + 3));
    let f = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4(vip))
        .tcp(40001, 80)
        .flags(ACK)
        .seq(1001)
        .ack(cookie.wrapping_add(1))
        .tcp_options(&o)
        .payload(b"GET / HTTP/1.1\r\n\r\n")
        .build();
    let out = d.send(EXT, f);
    assert_eq!(out.len(), 1);
    let s = &out[0].1;
    assert_eq!(s.seq, 1001, "client sequence numbers pass unchanged");
    assert_eq!(s.ack, rs_isn + 1, "ack into the server's space");
    assert_eq!(s.sack, vec![(l.wrapping_add(delta), r.wrapping_add(delta))]);
    assert_eq!(s.ts, Some((5557, 777 + 3)), "echo into the server's clock");
    assert_eq!(s.payload, b"GET / HTTP/1.1\r\n\r\n");

    // Server data → client: sequence and timestamp into the director's space.
    let mut o = vec![1, 1];
    o.extend_from_slice(&ts_opt(790, 5557)[2..]);
    let f = PacketBuilder::ethernet(RS1_MAC, INT_MAC)
        .ipv4(v4(rs), v4(&seen.0))
        .tcp(rport, seen.1)
        .flags(ACK)
        .seq(rs_isn + 1)
        .ack(1019)
        .window(100)
        .tcp_options(&o)
        .payload(b"HTTP/1.1 200 OK\r\n")
        .build();
    let out = d.send(INT, f);
    assert_eq!(out.len(), 1);
    let (port, s) = &out[0];
    assert_eq!(*port, EXT);
    assert_eq!((s.src.as_str(), s.sport), (vip, 80));
    assert_eq!((s.dst.as_str(), s.dport), (CIP, 40001));
    assert_eq!(s.seq, cookie.wrapping_add(1));
    assert_eq!(s.ack, 1019);
    assert_eq!(s.ts, Some((our_ts + 13, 5557)));
    assert_eq!(s.window, 100, "same window scale (7) on both sides");
    seen
}

#[test]
fn nat_proxied_connection_handshakes_and_shifts_both_directions() {
    let seen = handshake_and_shift("10.0.0.1", RS1, 8080);
    assert_eq!(seen, (CIP.to_string(), 40001));
}

#[test]
fn fullnat_proxied_connection_handshakes_and_shifts_both_directions() {
    let seen = handshake_and_shift("10.0.0.4", RS2, 8080);
    assert_eq!(seen.0, LIP);
}

#[test]
fn invalid_acks_are_dropped_and_counted_and_make_no_connection() {
    let mut d = Director::new(1024);
    let out = d.send(EXT, client("10.0.0.1", 40002, SYN, 1000, 0, &[]));
    let cookie = out[0].1.seq;
    assert_eq!(out[0].1.mss, Some(536), "no MSS from the client: 536");
    assert_eq!(out[0].1.ts, None);
    // Wrong cookie, wrong sequence, another port, a spoofed random ACK.
    // (As in Linux, the MSS index sits in the cookie's low bits: an ACK off
    // by one or two within the 4 MSS values decodes another MSS, not an
    // error; so the wrong cookie differs in the hashed bits.)
    let bad = [
        client(
            "10.0.0.1",
            40002,
            ACK,
            1001,
            (cookie ^ 0x00f0_0000).wrapping_add(1),
            &[],
        ),
        client("10.0.0.1", 40002, ACK, 1002, cookie.wrapping_add(1), &[]),
        client("10.0.0.1", 40003, ACK, 1001, cookie.wrapping_add(1), &[]),
        client("10.0.0.1", 40004, ACK, 0x1234_5678, 0x9abc_def0, &[]),
    ];
    for f in bad {
        assert!(d.send(EXT, f).is_empty());
    }
    assert_eq!(d.drops(DropReason::SynproxyBadAck), 4);
    assert_eq!(d.counters.synproxy_acks_invalid.load(Relaxed), 4);
    // RST+ACK and FIN-less junk without SYN: not a new connection.
    let rst = client(
        "10.0.0.1",
        40002,
        TcpFlags(TcpFlags::RST.0 | TcpFlags::ACK.0),
        1001,
        cookie.wrapping_add(1),
        &[],
    );
    assert!(d.send(EXT, rst).is_empty());
    assert_eq!(d.drops(DropReason::NotSyn), 1);
    // A truncated TCP header (data offset past the end) is malformed.
    let mut f = client("10.0.0.1", 40002, ACK, 1001, cookie.wrapping_add(1), &[]);
    f[14 + 20 + 12] = 0xf0;
    assert!(d.send(EXT, f).is_empty());
    assert_eq!(d.drops(DropReason::Malformed), 1);
    assert_eq!(d.w.conns().len(), 0);
    // The right ACK still works afterwards: the cookie is still valid.
    let ok = client("10.0.0.1", 40002, ACK, 1001, cookie.wrapping_add(1), &[]);
    let out = d.send(EXT, ok);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.mss, Some(536));
    assert_eq!(out[0].1.ts, None);
    assert_eq!(out[0].1.ws, None);
    assert_eq!(d.w.conns().len(), 1);
}

// ---- the switch: lbctl, the control state ---------------------------------

mod switch {
    use rvs::conntrack::{Fwd, Proto};
    use rvs::ctl::apply::ControlState;
    use rvs::ctl::ipvsadm::{parse_args, Command};
    use rvs::ctl::protocol::{DestSpec, Request, ServiceKey};

    fn apply_line(s: &mut ControlState, line: &str) -> Result<(), String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match parse_args(&words).map_err(|e| e.to_string())? {
            Command::Apply(r) => s.apply(&r).map(|_| ()).map_err(|e| e.to_string()),
            other => Err(format!("not a change: {other:?}")),
        }
    }

    #[test]
    fn lbctl_synproxy_switches_the_proxy_on_add_and_edit_and_for_tcp_only() {
        let words = ["-A", "-t", "10.0.0.1:80", "-s", "rr", "--synproxy"];
        let Ok(Command::Apply(Request::AddService { service })) = parse_args(&words) else {
            panic!("an add");
        };
        assert!(service.synproxy);
        let words = ["-E", "-t", "10.0.0.1:80", "-s", "rr"];
        let Ok(Command::Apply(Request::EditService { service })) = parse_args(&words) else {
            panic!("an edit");
        };
        assert!(!service.synproxy, "-E without it switches it off");
        let e = parse_args(&["-A", "-u", "10.0.0.1:53", "--synproxy"]).expect_err("udp");
        assert!(e.to_string().contains("only for TCP"), "{e}");
        let e = parse_args(&["-L", "-n", "--synproxy"]).expect_err("list");
        assert!(e.to_string().contains("only for -A and -E"), "{e}");
    }

    #[test]
    fn the_proxy_is_refused_with_dr_and_tun_real_servers_and_reaches_the_snapshot() {
        let mut s = ControlState::default();
        apply_line(&mut s, "-A -t 10.0.0.1:80 -s rr --synproxy").expect("add");
        apply_line(&mut s, "-a -t 10.0.0.1:80 -r 192.168.10.1:8080 -m").expect("nat");
        for fwd in ["-g", "-i"] {
            let e = apply_line(&mut s, &format!("-a -t 10.0.0.1:80 -r 192.168.10.2 {fwd}"))
                .expect_err("dr/tun refused");
            assert!(e.contains("SYN proxy needs NAT or FULLNAT"), "{e}");
        }
        // A DR service cannot be switched to the proxy either.
        apply_line(&mut s, "-A -t 10.0.0.2:80 -s rr").expect("add");
        apply_line(&mut s, "-a -t 10.0.0.2:80 -r 192.168.10.2 -g").expect("dr");
        let e = apply_line(&mut s, "-E -t 10.0.0.2:80 -s rr --synproxy").expect_err("edit");
        assert!(e.contains("bypass the director"), "{e}");
        let snap = s.snapshot().expect("snapshot");
        let svc = |vip: &str| {
            snap.services
                .iter()
                .find(|x| x.vip.to_string() == vip)
                .expect("service")
        };
        assert!(svc("10.0.0.1").synproxy && svc("10.0.0.1").synproxy_capable);
        assert!(!svc("10.0.0.2").synproxy && !svc("10.0.0.2").synproxy_capable);
        // FULLNAT over IPv6 has no room for the shift: refused.
        apply_line(&mut s, "-A -t [2001:db8::1]:80 -s rr --synproxy").expect("add v6");
        let r = s.apply(&Request::AddDest {
            service: ServiceKey {
                proto: Proto::Tcp,
                addr: "2001:db8::1".parse().expect("a"),
                port: 80,
            },
            dest: DestSpec {
                fwd: Fwd::FullNat,
                ..DestSpec::new("2001:db8:10::1".parse().expect("a"), 80)
            },
        });
        assert!(r.expect_err("v6 fullnat").to_string().contains("IPv4 only"));
    }
}

#[test]
fn above_the_auto_occupancy_an_unproxied_service_answers_with_cookies() {
    let mut t = topo();
    t.settings.synproxy_auto_percent = 50;
    let links = Links::new(1);
    let counters = links.counters[0].clone();
    let cfg = WorkerConfig {
        conn_capacity: 10,
        ..WorkerConfig::default()
    };
    let queues = vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])];
    let mut d = Director {
        w: Worker::new(cfg, queues, links, t.snapshot(1)),
        counters,
    };
    let mut forwarded = 0;
    for i in 0..20u16 {
        let out = d.send(EXT, client("10.0.0.5", 41000 + i, SYN, 7, 0, &[]));
        assert_eq!(out.len(), 1);
        if out[0].0 == INT {
            forwarded += 1;
        } else {
            assert!(out[0].1.syn && out[0].1.ackf, "a cookie SYN-ACK");
        }
    }
    assert_eq!(forwarded, 5, "plain scheduling below 50 % of 10");
    assert_eq!(d.w.conns().len(), 5);
    assert_eq!(d.counters.syn_cookies_sent.load(Relaxed), 15);
}

// ---- the real server's handshake: SYN retransmission, early data, secrets --

/// A SYN and the cookie ACK from client port `cport` to 10.0.0.1 (NAT to
/// RS1:8080); returns the SYN the director sent the real server and the
/// cookie.
fn open_to_server(d: &mut Director, cport: u16) -> (Seg, u32) {
    let out = d.send(
        EXT,
        client("10.0.0.1", cport, SYN, 1000, 0, &syn_opts(5555)),
    );
    let sa = &out[0].1;
    let (cookie, our_ts) = (sa.seq, sa.ts.expect("ts").0);
    let mut ack_opts = vec![1, 1];
    ack_opts.extend_from_slice(&ts_opt(5556, our_ts)[2..]);
    let out = d.send(
        EXT,
        client(
            "10.0.0.1",
            cport,
            ACK,
            1001,
            cookie.wrapping_add(1),
            &ack_opts,
        ),
    );
    assert_eq!(out.len(), 1, "the SYN to the real server: {out:?}");
    assert_eq!(out[0].0, INT);
    (out[0].1.clone(), cookie)
}

/// Let `secs` pass on the worker's clock and run one pass.
fn wait(d: &mut Director, secs: f64) -> Vec<(u16, Seg)> {
    d.w.advance_clock(std::time::Duration::from_secs_f64(secs));
    d.pass()
}

/// The real server's SYN-ACK to the SYN `syn`.
fn server_synack(syn: &Seg, rs_isn: u32) -> Vec<u8> {
    let mut rs_opts = vec![2, 4, 0x05, 0xb4, 4, 2];
    rs_opts.extend_from_slice(&ts_opt(777, 5556)[2..]);
    rs_opts.extend_from_slice(&[1, 3, 3, 7]);
    PacketBuilder::ethernet(RS1_MAC, INT_MAC)
        .ipv4(v4(&syn.dst), v4(&syn.src))
        .tcp(syn.dport, syn.sport)
        .flags(synack())
        .seq(rs_isn)
        .ack(syn.seq.wrapping_add(1))
        .tcp_options(&rs_opts)
        .build()
}

#[test]
fn a_silent_real_server_gets_the_same_syn_again_each_second_at_most_three_times() {
    let mut d = Director::new(1024);
    let (syn, _) = open_to_server(&mut d, 40100);
    assert!(
        wait(&mut d, 0.5).is_empty(),
        "nothing before the retry time"
    );
    for i in 1..=3 {
        let out = wait(&mut d, if i == 1 { 0.6 } else { 1.05 });
        assert_eq!(out.len(), 1, "retransmission {i}: {out:?}");
        assert_eq!(out[0], (INT, syn.clone()), "the same SYN, checksums valid");
    }
    for _ in 0..5 {
        assert!(wait(&mut d, 1.1).is_empty(), "no fourth retransmission");
    }
    assert_eq!(d.counters.synproxy_syn_retransmits.load(Relaxed), 3);
    // A server that answers late still completes the handshake.
    let out = d.send(INT, server_synack(&syn, 4242));
    assert_eq!(out.len(), 1, "the ACK to the server: {out:?}");
    assert_eq!(d.counters.synproxy_established.load(Relaxed), 1);
}

#[test]
fn no_syn_is_retransmitted_once_the_real_server_answered() {
    let mut d = Director::new(1024);
    let (syn, _) = open_to_server(&mut d, 40101);
    let out = d.send(INT, server_synack(&syn, 5000));
    assert_eq!(out.len(), 1);
    for _ in 0..4 {
        assert!(wait(&mut d, 1.1).is_empty(), "nothing more to the server");
    }
    assert_eq!(d.counters.synproxy_syn_retransmits.load(Relaxed), 0);
}

#[test]
fn client_data_before_the_servers_syn_ack_is_held_and_forwarded_after_it_in_order() {
    let mut d = Director::new(1024);
    let (syn, cookie) = open_to_server(&mut d, 40102);
    let data = |seq: u32, body: &[u8]| {
        PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
            .ipv4(v4(CIP), v4("10.0.0.1"))
            .tcp(40102, 80)
            .flags(ACK)
            .seq(seq)
            .ack(cookie.wrapping_add(1))
            .payload(body)
            .build()
    };
    // Three segments are held, a fourth (and a bare ACK) is not.
    let bodies: [&[u8]; 4] = [b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n", b"more"];
    let mut seq = 1001u32;
    for b in bodies {
        assert!(d.send(EXT, data(seq, b)).is_empty(), "held or dropped");
        seq += b.len() as u32;
    }
    let bare = client("10.0.0.1", 40102, ACK, 1001, cookie.wrapping_add(1), b"");
    assert!(d.send(EXT, bare).is_empty());
    assert_eq!(
        d.drops(DropReason::SynproxyPending),
        2,
        "the 4th and the bare ACK"
    );
    assert_eq!(d.counters.synproxy_held.load(Relaxed), 3);
    assert_eq!(
        d.counters.synproxy_held_full.load(Relaxed),
        1,
        "the 4th (a bare ACK is not data)"
    );
    assert_eq!(d.counters.synproxy_held_replayed.load(Relaxed), 0);

    let rs_isn = 7_000_000u32;
    let out = d.send(INT, server_synack(&syn, rs_isn));
    assert_eq!(
        out.len(),
        4,
        "the ACK, then the three held segments: {out:?}"
    );
    assert!(out.iter().all(|(p, _)| *p == INT));
    assert!(
        out[0].1.payload.is_empty() && out[0].1.ackf,
        "the ACK first"
    );
    let mut seq = 1001u32;
    for (i, (_, s)) in out[1..].iter().enumerate() {
        assert_eq!(s.payload, bodies[i], "segment {i} in arrival order");
        assert_eq!(s.seq, seq);
        assert_eq!(
            s.ack,
            rs_isn + 1,
            "acknowledgement shifted into the server's space"
        );
        assert_eq!((s.dst.as_str(), s.dport), (RS1, 8080));
        seq += bodies[i].len() as u32;
    }
    assert_eq!(d.counters.synproxy_held_replayed.load(Relaxed), 3);
    assert_eq!(d.counters.synproxy_held_timeout.load(Relaxed), 0);
}

#[test]
fn held_client_data_is_dropped_and_counted_when_the_server_never_answers() {
    let mut d = Director::new(1024);
    let (_, cookie) = open_to_server(&mut d, 40103);
    let f = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4(CIP), v4("10.0.0.1"))
        .tcp(40103, 80)
        .flags(ACK)
        .seq(1001)
        .ack(cookie.wrapping_add(1))
        .payload(b"hello")
        .build();
    assert!(d.send(EXT, f).is_empty());
    assert_eq!(d.drops(DropReason::SynproxyPending), 0, "held");
    for _ in 0..4 {
        // (The SYN retransmissions go out meanwhile.)
        let out = wait(&mut d, 1.0);
        assert!(out.iter().all(|(_, s)| s.syn), "{out:?}");
    }
    assert_eq!(d.drops(DropReason::SynproxyPending), 1, "dropped after 3 s");
    assert_eq!(d.counters.synproxy_held.load(Relaxed), 1);
    assert_eq!(d.counters.synproxy_held_timeout.load(Relaxed), 1);
    assert_eq!(d.counters.synproxy_held_replayed.load(Relaxed), 0);
    assert_eq!(d.counters.synproxy_held_full.load(Relaxed), 0);
}

#[test]
fn a_workers_hold_is_bounded_and_segments_that_do_not_fit_are_counted_as_full() {
    use rvs::dataplane::worker::{HELD_PER_CONN, HELD_SLOTS};
    let mut d = Director::new(4096);
    let conns = HELD_SLOTS / HELD_PER_CONN + 1;
    let mut sent = 0u64;
    for i in 0..conns {
        let cport = 41000 + i as u16;
        let (_, cookie) = open_to_server(&mut d, cport);
        for k in 0..HELD_PER_CONN as u32 {
            let f = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
                .ipv4(v4(CIP), v4("10.0.0.1"))
                .tcp(cport, 80)
                .flags(ACK)
                .seq(1001 + k * 4)
                .ack(cookie.wrapping_add(1))
                .payload(b"data")
                .build();
            assert!(d.send(EXT, f).is_empty(), "held or dropped");
            sent += 1;
        }
    }
    let held = d.counters.synproxy_held.load(Relaxed);
    let full = d.counters.synproxy_held_full.load(Relaxed);
    assert_eq!(held, HELD_SLOTS as u64, "the worker's hold filled");
    assert_eq!(full, sent - HELD_SLOTS as u64, "the rest refused as full");
    assert_eq!(d.drops(DropReason::SynproxyPending), full);
}

#[test]
fn a_cookie_made_before_a_secret_rotation_still_opens_its_connection_but_not_after_two() {
    let (a, b, c) = ([1u64, 2], [3u64, 4], [5u64, 6]);
    let keys = |gen: u64, cur: [u64; 2], prev: [u64; 2]| {
        Arc::new(
            (*topo().snapshot(gen))
                .clone()
                .with_synproxy_keys(cur, prev),
        )
    };
    let mut d = Director::new(1024);
    d.w.install(keys(2, a, a));
    let syn = |d: &mut Director, cport: u16| {
        let out = d.send(EXT, client("10.0.0.1", cport, SYN, 1000, 0, &[]));
        out[0].1.seq
    };
    let ack = |d: &mut Director, cport: u16, cookie: u32| {
        d.send(
            EXT,
            client("10.0.0.1", cport, ACK, 1001, cookie.wrapping_add(1), &[]),
        )
    };
    let a1 = syn(&mut d, 40200);
    let a2 = syn(&mut d, 40201);
    d.w.install(keys(3, b, a));
    assert_eq!(
        ack(&mut d, 40200, a1).len(),
        1,
        "made with the previous secret"
    );
    let b3 = syn(&mut d, 40202);
    assert_ne!(b3, a1, "the new secret makes the cookies");
    d.w.install(keys(4, c, b));
    assert!(
        ack(&mut d, 40201, a2).is_empty(),
        "two rotations ago: refused"
    );
    assert_eq!(d.counters.synproxy_acks_invalid.load(Relaxed), 1);
    assert_eq!(
        ack(&mut d, 40202, b3).len(),
        1,
        "one rotation ago: accepted"
    );
    assert_eq!(d.counters.synproxy_acks_valid.load(Relaxed), 2);
}
