//! Golden packets: each case sends readable, builder-made frames through a
//! real worker on the `mem` driver and states exactly what must leave which
//! port — byte for byte — or which drop reason must be counted. Every output
//! frame is also decoded by an independent parser (`etherparse`) and all of
//! its checksums are recomputed there.

mod common;
mod support;

use common::*;
use rvs::conntrack::Fwd;
use rvs::dataplane::counters::{CoreCounters, DropReason};
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::{icmpv4, icmpv6, ip_proto, EthernetAddress, NdpFlags, TcpFlags};
use std::sync::Arc;

const SYN: TcpFlags = TcpFlags::SYN;
fn synack() -> TcpFlags {
    TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0)
}
const ACK: TcpFlags = TcpFlags::ACK;

/// What a step must produce.
enum Expect {
    /// Exactly these frames, on these ports, in order.
    Out(Vec<(u16, Vec<u8>)>),
    /// Nothing sent; this reason counted once.
    Drop(DropReason),
    /// The frames are checked by a function (when a field is chosen by the
    /// director, e.g. an ICMP error's quote), and this drop may be counted.
    Check(fn(&[(u16, Vec<u8>)]), Option<DropReason>),
}

struct Step {
    port: u16,
    input: Vec<u8>,
    expect: Expect,
}

struct Case {
    name: &'static str,
    topo: fn() -> Topo,
    capacity: u32,
    steps: Vec<Step>,
}

fn case(name: &'static str, steps: Vec<Step>) -> Case {
    Case {
        name,
        topo: Topo::standard,
        capacity: 1024,
        steps,
    }
}

fn step(port: u16, input: Vec<u8>, expect: Expect) -> Step {
    Step {
        port,
        input,
        expect,
    }
}

fn out(port: u16, frame: Vec<u8>) -> Expect {
    Expect::Out(vec![(port, frame)])
}

// ---- frame makers (readable shorthands over the builder) -----------------

/// A frame from the client side (router → director).
fn from_client() -> PacketBuilder {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
}
/// A frame the director sends to the client side.
fn to_client() -> PacketBuilder {
    PacketBuilder::ethernet(EXT_MAC, ROUTER_MAC)
}
fn from_rs(mac: EthernetAddress) -> PacketBuilder {
    PacketBuilder::ethernet(mac, INT_MAC)
}
fn to_rs(mac: EthernetAddress) -> PacketBuilder {
    PacketBuilder::ethernet(INT_MAC, mac)
}

fn tcp4(b: PacketBuilder, src: &str, dst: &str, sp: u16, dp: u16, f: TcpFlags, ttl: u8) -> Vec<u8> {
    b.ipv4(v4(src), v4(dst))
        .ttl(ttl)
        .tcp(sp, dp)
        .flags(f)
        .seq(7)
        .payload(b"abc")
        .build()
}
fn udp4(b: PacketBuilder, src: &str, dst: &str, sp: u16, dp: u16, ttl: u8) -> Vec<u8> {
    b.ipv4(v4(src), v4(dst))
        .ttl(ttl)
        .udp(sp, dp)
        .payload(b"query")
        .build()
}
fn tcp6(b: PacketBuilder, src: &str, dst: &str, sp: u16, dp: u16, f: TcpFlags, hl: u8) -> Vec<u8> {
    b.ipv6(v6(src), v6(dst))
        .hop_limit(hl)
        .tcp(sp, dp)
        .flags(f)
        .seq(7)
        .payload(b"abc")
        .build()
}
fn udp6(b: PacketBuilder, src: &str, dst: &str, sp: u16, dp: u16, hl: u8) -> Vec<u8> {
    b.ipv6(v6(src), v6(dst))
        .hop_limit(hl)
        .udp(sp, dp)
        .payload(b"query")
        .build()
}

// ---- the harness ----------------------------------------------------------

struct Director {
    w: Worker<MemQueue>,
    counters: Arc<CoreCounters>,
}

impl Director {
    fn new(topo: &Topo, capacity: u32) -> Director {
        let links = Links::new(1);
        let counters = links.counters[0].clone();
        let cfg = WorkerConfig {
            conn_capacity: capacity,
            ..WorkerConfig::default()
        };
        let queues = vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])];
        Director {
            w: Worker::new(cfg, queues, links, topo.snapshot(1)),
            counters,
        }
    }

    fn send(&mut self, port: u16, frame: Vec<u8>) -> Vec<(u16, Vec<u8>)> {
        self.w.queues_mut()[port as usize].inject(frame);
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

fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// Decode with etherparse and recompute every checksum there.
fn independent_check(frame: &[u8]) -> Result<(), String> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).map_err(|e| format!("etherparse: {e:?}"))?;
    match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header().to_header();
            if h.header_checksum != h.calc_header_checksum() {
                return Err("IPv4 header checksum".into());
            }
            match &p.transport {
                Some(TransportSlice::Tcp(t)) => {
                    let want = t
                        .to_header()
                        .calc_checksum_ipv4(&h, t.payload())
                        .map_err(|e| format!("{e:?}"))?;
                    if want != t.checksum() {
                        return Err(format!("TCP checksum {:04x} want {want:04x}", t.checksum()));
                    }
                }
                Some(TransportSlice::Udp(u)) if u.checksum() != 0 => {
                    let want = u
                        .to_header()
                        .calc_checksum_ipv4(&h, u.payload())
                        .map_err(|e| format!("{e:?}"))?;
                    if want != u.checksum() {
                        return Err("UDP checksum".into());
                    }
                }
                Some(TransportSlice::Icmpv4(i)) => {
                    let want = i.icmp_type().calc_checksum(i.payload());
                    if want != i.checksum() {
                        return Err("ICMPv4 checksum".into());
                    }
                }
                _ => {}
            }
            // IP-in-IP: check the inner packet too.
            if h.protocol.0 == ip_proto::IPIP {
                let inner = v4.payload().payload;
                let ip = etherparse::Ipv4Slice::from_slice(inner).map_err(|e| format!("{e:?}"))?;
                let ih = ip.header().to_header();
                if ih.header_checksum != ih.calc_header_checksum() {
                    return Err("inner IPv4 header checksum".into());
                }
            }
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header().to_header();
            match &p.transport {
                Some(TransportSlice::Tcp(t)) => {
                    let want = t
                        .to_header()
                        .calc_checksum_ipv6(&h, t.payload())
                        .map_err(|e| format!("{e:?}"))?;
                    if want != t.checksum() {
                        return Err("TCP/v6 checksum".into());
                    }
                }
                Some(TransportSlice::Udp(u)) => {
                    let want = u
                        .to_header()
                        .calc_checksum_ipv6(&h, u.payload())
                        .map_err(|e| format!("{e:?}"))?;
                    if want != u.checksum() {
                        return Err("UDP/v6 checksum".into());
                    }
                }
                Some(TransportSlice::Icmpv6(i)) => {
                    let want = i
                        .icmp_type()
                        .calc_checksum(h.source, h.destination, i.payload())
                        .map_err(|e| format!("{e:?}"))?;
                    if want != i.checksum() {
                        return Err("ICMPv6 checksum".into());
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

fn run(c: &Case) -> Result<(), String> {
    let topo = (c.topo)();
    let mut d = Director::new(&topo, c.capacity);
    for (i, s) in c.steps.iter().enumerate() {
        let before = d.drops();
        let got = d.send(s.port, s.input.clone());
        for (p, f) in &got {
            independent_check(f)
                .map_err(|e| format!("step {i}: output on port {p}: {e}\n    {}", hex(f)))?;
        }
        let after = d.drops();
        let new_drops: Vec<_> = after
            .iter()
            .filter(|(r, n)| before.iter().find(|(b, _)| b == r).map_or(0, |(_, m)| *m) < *n)
            .map(|(r, _)| *r)
            .collect();
        match &s.expect {
            Expect::Out(want) => {
                if !new_drops.is_empty() {
                    return Err(format!("step {i}: unexpected drop {new_drops:?}"));
                }
                if got.len() != want.len() {
                    return Err(format!(
                        "step {i}: {} frames out, want {}: {:?}",
                        got.len(),
                        want.len(),
                        got.iter()
                            .map(|(p, f)| format!("port {p}: {}", hex(f)))
                            .collect::<Vec<_>>()
                    ));
                }
                for ((gp, gf), (wp, wf)) in got.iter().zip(want) {
                    if gp != wp || gf != wf {
                        return Err(format!(
                            "step {i}: port {gp} frame\n    {}\nwant port {wp}\n    {}",
                            hex(gf),
                            hex(wf)
                        ));
                    }
                }
            }
            Expect::Drop(r) => {
                if !got.is_empty() {
                    return Err(format!(
                        "step {i}: expected drop {r:?}, got {} frames",
                        got.len()
                    ));
                }
                if new_drops != vec![*r] {
                    return Err(format!(
                        "step {i}: expected drop {r:?}, counted {new_drops:?}"
                    ));
                }
            }
            Expect::Check(f, r) => {
                if new_drops != r.iter().copied().collect::<Vec<_>>() {
                    return Err(format!(
                        "step {i}: expected drops {r:?}, counted {new_drops:?}"
                    ));
                }
                f(&got);
            }
        }
    }
    Ok(())
}

// ---- the cases --------------------------------------------------------------

fn nat_cases() -> Vec<Case> {
    let syn_in = || tcp4(from_client(), CIP, "10.0.0.1", 40000, 80, SYN, 64);
    let syn_out = || tcp4(to_rs(RS1_MAC), CIP, RS1, 40000, 8080, SYN, 63);
    let syn6_in = || tcp6(from_client(), CIP6, "2001:db8::1", 40000, 80, SYN, 64);
    vec![
        case(
            "nat_syn_rewrites_vip_to_rip_and_port",
            vec![step(EXT, syn_in(), out(INT, syn_out()))],
        ),
        case(
            "nat_reply_restores_vip",
            vec![
                step(EXT, syn_in(), out(INT, syn_out())),
                step(
                    INT,
                    tcp4(from_rs(RS1_MAC), RS1, CIP, 8080, 40000, synack(), 64),
                    out(
                        EXT,
                        tcp4(to_client(), "10.0.0.1", CIP, 80, 40000, synack(), 63),
                    ),
                ),
            ],
        ),
        case(
            "nat_established_data_follows_the_connection",
            vec![
                step(EXT, syn_in(), out(INT, syn_out())),
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.1", 40000, 80, ACK, 50),
                    out(INT, tcp4(to_rs(RS1_MAC), CIP, RS1, 40000, 8080, ACK, 49)),
                ),
            ],
        ),
        case(
            "nat_udp_request_and_reply",
            vec![
                step(
                    EXT,
                    udp4(from_client(), CIP, "10.0.0.1", 5000, 53, 64),
                    out(INT, udp4(to_rs(RS1_MAC), CIP, RS1, 5000, 5353, 63)),
                ),
                step(
                    INT,
                    udp4(from_rs(RS1_MAC), RS1, CIP, 5353, 5000, 64),
                    out(EXT, udp4(to_client(), "10.0.0.1", CIP, 53, 5000, 63)),
                ),
            ],
        ),
        case(
            "nat_udp_without_checksum_keeps_none",
            vec![step(
                EXT,
                from_client()
                    .ipv4(v4(CIP), v4("10.0.0.1"))
                    .udp(5001, 53)
                    .payload(b"q")
                    .l4_checksum(0)
                    .build(),
                out(
                    INT,
                    to_rs(RS1_MAC)
                        .ipv4(v4(CIP), v4(RS1))
                        .ttl(63)
                        .udp(5001, 5353)
                        .payload(b"q")
                        .l4_checksum(0)
                        .build(),
                ),
            )],
        ),
        case(
            "nat6_syn_and_reply",
            vec![
                step(
                    EXT,
                    syn6_in(),
                    out(INT, tcp6(to_rs(RS1_MAC), CIP6, RS1_6, 40000, 8080, SYN, 63)),
                ),
                step(
                    INT,
                    tcp6(from_rs(RS1_MAC), RS1_6, CIP6, 8080, 40000, synack(), 64),
                    out(
                        EXT,
                        tcp6(to_client(), "2001:db8::1", CIP6, 80, 40000, synack(), 63),
                    ),
                ),
            ],
        ),
        case(
            "nat6_udp_request_and_reply",
            vec![
                step(
                    EXT,
                    udp6(from_client(), CIP6, "2001:db8::1", 5000, 53, 64),
                    out(INT, udp6(to_rs(RS1_MAC), CIP6, RS1_6, 5000, 5353, 63)),
                ),
                step(
                    INT,
                    udp6(from_rs(RS1_MAC), RS1_6, CIP6, 5353, 5000, 64),
                    out(EXT, udp6(to_client(), "2001:db8::1", CIP6, 53, 5000, 63)),
                ),
            ],
        ),
        case(
            "nat_vlan_tag_is_kept",
            vec![step(
                EXT,
                from_client()
                    .vlan(100)
                    .ipv4(v4(CIP), v4("10.0.0.1"))
                    .tcp(40000, 80)
                    .flags(SYN)
                    .build(),
                out(
                    INT,
                    to_rs(RS1_MAC)
                        .vlan(100)
                        .ipv4(v4(CIP), v4(RS1))
                        .ttl(63)
                        .tcp(40000, 8080)
                        .flags(SYN)
                        .build(),
                ),
            )],
        ),
        case(
            "nat_ipv4_options_are_skipped",
            vec![step(
                EXT,
                from_client()
                    .ipv4(v4(CIP), v4("10.0.0.1"))
                    .ipv4_options(&[1, 1, 1, 0])
                    .tcp(40000, 80)
                    .flags(SYN)
                    .build(),
                out(
                    INT,
                    to_rs(RS1_MAC)
                        .ipv4(v4(CIP), v4(RS1))
                        .ttl(63)
                        .ipv4_options(&[1, 1, 1, 0])
                        .tcp(40000, 8080)
                        .flags(SYN)
                        .build(),
                ),
            )],
        ),
        case(
            "nat_ethernet_padding_is_forwarded_as_is",
            vec![step(
                EXT,
                from_client()
                    .ipv4(v4(CIP), v4("10.0.0.1"))
                    .udp(5002, 53)
                    .payload(b"x")
                    .pad_to(60)
                    .build(),
                out(
                    INT,
                    to_rs(RS1_MAC)
                        .ipv4(v4(CIP), v4(RS1))
                        .ttl(63)
                        .udp(5002, 5353)
                        .payload(b"x")
                        .pad_to(60)
                        .build(),
                ),
            )],
        ),
    ]
}

fn dr_tun_cases() -> Vec<Case> {
    let inner4 = |proto_tcp: bool, df: bool, len: usize| {
        let b = PacketBuilder::new()
            .ipv4(v4(CIP), v4("10.0.0.3"))
            .dont_frag(df);
        if proto_tcp {
            b.tcp(40000, 80).flags(SYN).payload_fill(len).build()
        } else {
            b.udp(5000, 53).payload_fill(len).build()
        }
    };
    vec![
        case(
            "dr_rewrites_only_the_mac",
            vec![step(
                EXT,
                tcp4(from_client(), CIP, "10.0.0.2", 40000, 80, SYN, 64),
                out(
                    INT,
                    tcp4(to_rs(RS1_MAC), CIP, "10.0.0.2", 40000, 80, SYN, 64),
                ),
            )],
        ),
        case(
            "dr_udp_rewrites_only_the_mac",
            vec![step(
                EXT,
                udp4(from_client(), CIP, "10.0.0.2", 5000, 53, 64),
                out(INT, udp4(to_rs(RS1_MAC), CIP, "10.0.0.2", 5000, 53, 64)),
            )],
        ),
        case(
            "dr6_rewrites_only_the_mac",
            vec![step(
                EXT,
                tcp6(from_client(), CIP6, "2001:db8::2", 40000, 80, SYN, 64),
                out(
                    INT,
                    tcp6(to_rs(RS1_MAC), CIP6, "2001:db8::2", 40000, 80, SYN, 64),
                ),
            )],
        ),
        case(
            "dr_later_packets_follow_the_connection",
            vec![
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.2", 40001, 80, SYN, 64),
                    out(
                        INT,
                        tcp4(to_rs(RS1_MAC), CIP, "10.0.0.2", 40001, 80, SYN, 64),
                    ),
                ),
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.2", 40001, 80, ACK, 64),
                    out(
                        INT,
                        tcp4(to_rs(RS1_MAC), CIP, "10.0.0.2", 40001, 80, ACK, 64),
                    ),
                ),
            ],
        ),
        case(
            "tun_wraps_tcp_in_ipip_from_dip_to_rip",
            vec![step(
                EXT,
                from_client().raw_l3(&inner4(true, true, 10)).build(),
                out(
                    INT,
                    to_rs(RS2_MAC)
                        .ipv4(v4(DIP_INT), v4(RS2))
                        .dont_frag(true)
                        .raw_l4(ip_proto::IPIP, &inner4(true, true, 10))
                        .build(),
                ),
            )],
        ),
        case(
            "tun_wraps_udp_without_df",
            vec![step(
                EXT,
                from_client().raw_l3(&inner4(false, false, 10)).build(),
                out(
                    INT,
                    to_rs(RS2_MAC)
                        .ipv4(v4(DIP_INT), v4(RS2))
                        .raw_l4(ip_proto::IPIP, &inner4(false, false, 10))
                        .build(),
                ),
            )],
        ),
        case(
            "tun_too_big_with_df_sends_frag_needed_to_client",
            vec![step(
                EXT,
                from_client().raw_l3(&inner4(true, true, 1500 - 40)).build(),
                Expect::Check(
                    |got| {
                        assert_eq!(got.len(), 1, "one ICMP error");
                        let (p, f) = &got[0];
                        assert_eq!(*p, EXT);
                        let e = etherparse::SlicedPacket::from_ethernet(f).expect("parses");
                        let Some(etherparse::NetSlice::Ipv4(ip)) = e.net else {
                            panic!("v4")
                        };
                        assert_eq!(ip.header().source_addr(), v4("10.0.0.3"), "from the VIP");
                        assert_eq!(ip.header().destination_addr(), v4(CIP));
                        let Some(etherparse::TransportSlice::Icmpv4(i)) = e.transport else {
                            panic!("icmp")
                        };
                        assert_eq!(i.type_u8(), icmpv4::DEST_UNREACHABLE);
                        assert_eq!(i.code_u8(), icmpv4::FRAG_NEEDED);
                        assert_eq!(
                            u16::from_be_bytes([i.bytes5to8()[2], i.bytes5to8()[3]]),
                            1480
                        );
                    },
                    Some(DropReason::TooBig),
                ),
            )],
        ),
        case(
            "tun_too_big_without_df_is_dropped_silently",
            vec![step(
                EXT,
                from_client()
                    .raw_l3(&inner4(false, false, 1500 - 28))
                    .build(),
                Expect::Drop(DropReason::TooBig),
            )],
        ),
        case(
            "tun6_wraps_in_ip6ip6",
            vec![{
                let inner = PacketBuilder::new()
                    .ipv6(v6(CIP6), v6("2001:db8::3"))
                    .tcp(40000, 80)
                    .flags(SYN)
                    .build();
                step(
                    EXT,
                    from_client().raw_l3(&inner).build(),
                    out(
                        INT,
                        to_rs(RS2_MAC)
                            .ipv6(v6(DIP6_INT), v6(RS2_6))
                            .raw_l4(ip_proto::IPV6, &inner)
                            .build(),
                    ),
                )
            }],
        ),
        case(
            "tun6_too_big_sends_packet_too_big",
            vec![step(
                EXT,
                from_client()
                    .ipv6(v6(CIP6), v6("2001:db8::3"))
                    .tcp(40000, 80)
                    .flags(SYN)
                    .payload_fill(1500 - 60)
                    .build(),
                Expect::Check(
                    |got| {
                        assert_eq!(got.len(), 1);
                        let e = etherparse::SlicedPacket::from_ethernet(&got[0].1).expect("parses");
                        let Some(etherparse::TransportSlice::Icmpv6(i)) = e.transport else {
                            panic!("icmpv6")
                        };
                        assert_eq!(i.type_u8(), icmpv6::PACKET_TOO_BIG);
                        assert_eq!(u32::from_be_bytes(i.bytes5to8()), 1460);
                    },
                    Some(DropReason::TooBig),
                ),
            )],
        ),
    ]
}

fn fullnat_cases() -> Vec<Case> {
    vec![
        case(
            "fullnat_syn_uses_local_address_and_port",
            vec![step(
                EXT,
                tcp4(from_client(), CIP, "10.0.0.4", 40000, 80, SYN, 64),
                out(INT, tcp4(to_rs(RS2_MAC), LIP, RS2, 1025, 8080, SYN, 63)),
            )],
        ),
        case(
            "fullnat_reply_restores_vip",
            vec![
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.4", 40000, 80, SYN, 64),
                    out(INT, tcp4(to_rs(RS2_MAC), LIP, RS2, 1025, 8080, SYN, 63)),
                ),
                step(
                    INT,
                    tcp4(from_rs(RS2_MAC), RS2, LIP, 8080, 1025, synack(), 64),
                    out(
                        EXT,
                        tcp4(to_client(), "10.0.0.4", CIP, 80, 40000, synack(), 63),
                    ),
                ),
            ],
        ),
        case(
            "fullnat_second_client_gets_next_local_port",
            vec![
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.4", 40000, 80, SYN, 64),
                    out(INT, tcp4(to_rs(RS2_MAC), LIP, RS2, 1025, 8080, SYN, 63)),
                ),
                step(
                    EXT,
                    tcp4(
                        from_client(),
                        "198.51.100.9",
                        "10.0.0.4",
                        40000,
                        80,
                        SYN,
                        64,
                    ),
                    out(INT, tcp4(to_rs(RS2_MAC), LIP, RS2, 1026, 8080, SYN, 63)),
                ),
            ],
        ),
        case(
            "fullnat_udp_both_directions",
            vec![
                step(
                    EXT,
                    udp4(from_client(), CIP, "10.0.0.4", 5000, 53, 64),
                    out(INT, udp4(to_rs(RS2_MAC), LIP, RS2, 1025, 5353, 63)),
                ),
                step(
                    INT,
                    udp4(from_rs(RS2_MAC), RS2, LIP, 5353, 1025, 64),
                    out(EXT, udp4(to_client(), "10.0.0.4", CIP, 53, 5000, 63)),
                ),
            ],
        ),
        case(
            "fullnat6_both_directions",
            vec![
                step(
                    EXT,
                    tcp6(from_client(), CIP6, "2001:db8::4", 40000, 80, SYN, 64),
                    out(INT, tcp6(to_rs(RS2_MAC), LIP6, RS2_6, 1025, 8080, SYN, 63)),
                ),
                step(
                    INT,
                    tcp6(from_rs(RS2_MAC), RS2_6, LIP6, 8080, 1025, synack(), 64),
                    out(
                        EXT,
                        tcp6(to_client(), "2001:db8::4", CIP6, 80, 40000, synack(), 63),
                    ),
                ),
            ],
        ),
        case(
            "fullnat6_udp_both_directions",
            vec![
                step(
                    EXT,
                    udp6(from_client(), CIP6, "2001:db8::4", 5000, 53, 64),
                    out(INT, udp6(to_rs(RS2_MAC), LIP6, RS2_6, 1025, 5353, 63)),
                ),
                step(
                    INT,
                    udp6(from_rs(RS2_MAC), RS2_6, LIP6, 5353, 1025, 64),
                    out(EXT, udp6(to_client(), "2001:db8::4", CIP6, 53, 5000, 63)),
                ),
            ],
        ),
        Case {
            name: "fullnat_pool_exhausted_is_a_counted_drop",
            topo: || {
                let mut t = Topo::standard();
                t.settings.lport_range = (2000, 2000);
                t
            },
            capacity: 1024,
            steps: vec![
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.4", 40000, 80, SYN, 64),
                    out(INT, tcp4(to_rs(RS2_MAC), LIP, RS2, 2000, 8080, SYN, 63)),
                ),
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.4", 40001, 80, SYN, 64),
                    Expect::Drop(DropReason::LaddrExhausted),
                ),
            ],
        },
    ]
}

fn icmp_cases() -> Vec<Case> {
    // What the real server received for the NAT connection, quoted back.
    let nat_quote = || {
        PacketBuilder::new()
            .ipv4(v4(CIP), v4(RS1))
            .ttl(63)
            .udp(5000, 5353)
            .payload(b"query")
            .build()
    };
    let nat_quote_after = || {
        PacketBuilder::new()
            .ipv4(v4(CIP), v4("10.0.0.1"))
            .ttl(63)
            .udp(5000, 53)
            .payload(b"query")
            .build()
    };
    vec![
        case(
            "ping_to_vip_is_answered",
            vec![step(
                EXT,
                from_client()
                    .ipv4(v4(CIP), v4("10.0.0.1"))
                    .icmpv4_echo_request(7, 1)
                    .payload(b"ping")
                    .build(),
                out(
                    EXT,
                    to_client()
                        .ipv4(v4("10.0.0.1"), v4(CIP))
                        .icmpv4_echo_reply(7, 1)
                        .payload(b"ping")
                        .build(),
                ),
            )],
        ),
        case(
            "ping_to_director_address_is_answered",
            vec![step(
                EXT,
                from_client()
                    .ipv4(v4(CIP), v4(DIP_EXT))
                    .icmpv4_echo_request(8, 2)
                    .build(),
                out(
                    EXT,
                    to_client()
                        .ipv4(v4(DIP_EXT), v4(CIP))
                        .icmpv4_echo_reply(8, 2)
                        .build(),
                ),
            )],
        ),
        case(
            "ping6_to_vip_is_answered",
            vec![step(
                EXT,
                from_client()
                    .ipv6(v6(CIP6), v6("2001:db8::1"))
                    .icmpv6_echo_request(9, 3)
                    .payload(b"p6")
                    .build(),
                out(
                    EXT,
                    to_client()
                        .ipv6(v6("2001:db8::1"), v6(CIP6))
                        .icmpv6_echo_reply(9, 3)
                        .payload(b"p6")
                        .build(),
                ),
            )],
        ),
        case(
            "ping_to_other_host_is_not_answered",
            vec![step(
                EXT,
                from_client()
                    .ipv4(v4(CIP), v4("10.0.0.99"))
                    .icmpv4_echo_request(7, 1)
                    .build(),
                Expect::Drop(DropReason::Local),
            )],
        ),
        case(
            "nat_icmp_error_from_server_is_translated_to_client",
            vec![
                step(
                    EXT,
                    udp4(from_client(), CIP, "10.0.0.1", 5000, 53, 64),
                    out(INT, udp4(to_rs(RS1_MAC), CIP, RS1, 5000, 5353, 63)),
                ),
                step(
                    INT,
                    from_rs(RS1_MAC)
                        .ipv4(v4(RS1), v4(CIP))
                        .icmpv4_error(
                            icmpv4::DEST_UNREACHABLE,
                            icmpv4::PORT_UNREACHABLE,
                            &nat_quote(),
                        )
                        .build(),
                    out(
                        EXT,
                        to_client()
                            .ipv4(v4("10.0.0.1"), v4(CIP))
                            .ttl(63)
                            .icmpv4_error(
                                icmpv4::DEST_UNREACHABLE,
                                icmpv4::PORT_UNREACHABLE,
                                &nat_quote_after(),
                            )
                            .build(),
                    ),
                ),
            ],
        ),
        case(
            "nat_icmp_error_from_client_side_goes_to_server",
            vec![
                step(
                    EXT,
                    udp4(from_client(), CIP, "10.0.0.1", 5000, 53, 64),
                    out(INT, udp4(to_rs(RS1_MAC), CIP, RS1, 5000, 5353, 63)),
                ),
                step(
                    EXT,
                    from_client()
                        .ipv4(v4(CIP), v4("10.0.0.1"))
                        .icmpv4_error(
                            icmpv4::DEST_UNREACHABLE,
                            icmpv4::PORT_UNREACHABLE,
                            &PacketBuilder::new()
                                .ipv4(v4("10.0.0.1"), v4(CIP))
                                .udp(53, 5000)
                                .payload(b"r")
                                .build(),
                        )
                        .build(),
                    out(
                        INT,
                        to_rs(RS1_MAC)
                            .ipv4(v4(CIP), v4(RS1))
                            .ttl(63)
                            .icmpv4_error(
                                icmpv4::DEST_UNREACHABLE,
                                icmpv4::PORT_UNREACHABLE,
                                &PacketBuilder::new()
                                    .ipv4(v4(RS1), v4(CIP))
                                    .udp(5353, 5000)
                                    .payload(b"r")
                                    .build(),
                            )
                            .build(),
                    ),
                ),
            ],
        ),
        case(
            "fullnat_icmp_error_from_server_is_translated_to_client",
            vec![
                step(
                    EXT,
                    udp4(from_client(), CIP, "10.0.0.4", 5000, 53, 64),
                    out(INT, udp4(to_rs(RS2_MAC), LIP, RS2, 1025, 5353, 63)),
                ),
                step(
                    INT,
                    from_rs(RS2_MAC)
                        .ipv4(v4(RS2), v4(LIP))
                        .icmpv4_error(
                            icmpv4::DEST_UNREACHABLE,
                            icmpv4::PORT_UNREACHABLE,
                            &PacketBuilder::new()
                                .ipv4(v4(LIP), v4(RS2))
                                .ttl(63)
                                .udp(1025, 5353)
                                .payload(b"query")
                                .build(),
                        )
                        .build(),
                    out(
                        EXT,
                        to_client()
                            .ipv4(v4("10.0.0.4"), v4(CIP))
                            .ttl(63)
                            .icmpv4_error(
                                icmpv4::DEST_UNREACHABLE,
                                icmpv4::PORT_UNREACHABLE,
                                &PacketBuilder::new()
                                    .ipv4(v4(CIP), v4("10.0.0.4"))
                                    .ttl(63)
                                    .udp(5000, 53)
                                    .payload(b"query")
                                    .build(),
                            )
                            .build(),
                    ),
                ),
            ],
        ),
        case(
            "fullnat_icmp_error_from_client_side_goes_to_server",
            vec![
                step(
                    EXT,
                    udp4(from_client(), CIP, "10.0.0.4", 5000, 53, 64),
                    out(INT, udp4(to_rs(RS2_MAC), LIP, RS2, 1025, 5353, 63)),
                ),
                step(
                    EXT,
                    from_client()
                        .ipv4(v4(CIP), v4("10.0.0.4"))
                        .icmpv4_error(
                            icmpv4::DEST_UNREACHABLE,
                            icmpv4::PORT_UNREACHABLE,
                            &PacketBuilder::new()
                                .ipv4(v4("10.0.0.4"), v4(CIP))
                                .udp(53, 5000)
                                .payload(b"r")
                                .build(),
                        )
                        .build(),
                    out(
                        INT,
                        to_rs(RS2_MAC)
                            .ipv4(v4(LIP), v4(RS2))
                            .ttl(63)
                            .icmpv4_error(
                                icmpv4::DEST_UNREACHABLE,
                                icmpv4::PORT_UNREACHABLE,
                                &PacketBuilder::new()
                                    .ipv4(v4(RS2), v4(LIP))
                                    .udp(5353, 1025)
                                    .payload(b"r")
                                    .build(),
                            )
                            .build(),
                    ),
                ),
            ],
        ),
        case(
            "nat6_icmp_error_from_server_is_translated",
            vec![
                step(
                    EXT,
                    udp6(from_client(), CIP6, "2001:db8::1", 5000, 53, 64),
                    out(INT, udp6(to_rs(RS1_MAC), CIP6, RS1_6, 5000, 5353, 63)),
                ),
                step(
                    INT,
                    from_rs(RS1_MAC)
                        .ipv6(v6(RS1_6), v6(CIP6))
                        .icmpv6_error(
                            icmpv6::DST_UNREACHABLE,
                            icmpv6::PORT_UNREACHABLE,
                            &PacketBuilder::new()
                                .ipv6(v6(CIP6), v6(RS1_6))
                                .hop_limit(63)
                                .udp(5000, 5353)
                                .payload(b"query")
                                .build(),
                        )
                        .build(),
                    out(
                        EXT,
                        to_client()
                            .ipv6(v6("2001:db8::1"), v6(CIP6))
                            .hop_limit(63)
                            .icmpv6_error(
                                icmpv6::DST_UNREACHABLE,
                                icmpv6::PORT_UNREACHABLE,
                                &PacketBuilder::new()
                                    .ipv6(v6(CIP6), v6("2001:db8::1"))
                                    .hop_limit(63)
                                    .udp(5000, 53)
                                    .payload(b"query")
                                    .build(),
                            )
                            .build(),
                    ),
                ),
            ],
        ),
        case(
            "icmp_error_for_unknown_connection_is_dropped",
            vec![step(
                INT,
                from_rs(RS1_MAC)
                    .ipv4(v4(RS1), v4(CIP))
                    .icmpv4_error(
                        icmpv4::DEST_UNREACHABLE,
                        icmpv4::PORT_UNREACHABLE,
                        &nat_quote(),
                    )
                    .build(),
                Expect::Drop(DropReason::IcmpNoConn),
            )],
        ),
        case(
            "ttl_expiring_on_nat_sends_time_exceeded",
            vec![step(
                EXT,
                tcp4(from_client(), CIP, "10.0.0.1", 40000, 80, SYN, 1),
                Expect::Check(
                    |got| {
                        assert_eq!(got.len(), 1);
                        assert_eq!(got[0].0, EXT);
                        let e = etherparse::SlicedPacket::from_ethernet(&got[0].1).expect("parses");
                        let Some(etherparse::NetSlice::Ipv4(ip)) = e.net else {
                            panic!("v4")
                        };
                        assert_eq!(ip.header().source_addr(), v4("10.0.0.1"));
                        let Some(etherparse::TransportSlice::Icmpv4(i)) = e.transport else {
                            panic!("icmp")
                        };
                        assert_eq!(i.type_u8(), icmpv4::TIME_EXCEEDED);
                    },
                    Some(DropReason::TtlExpired),
                ),
            )],
        ),
        case(
            "hop_limit_expiring_on_nat6_sends_time_exceeded",
            vec![step(
                EXT,
                tcp6(from_client(), CIP6, "2001:db8::1", 40000, 80, SYN, 1),
                Expect::Check(
                    |got| {
                        assert_eq!(got.len(), 1);
                        let e = etherparse::SlicedPacket::from_ethernet(&got[0].1).expect("parses");
                        let Some(etherparse::TransportSlice::Icmpv6(i)) = e.transport else {
                            panic!("icmpv6")
                        };
                        assert_eq!(i.type_u8(), icmpv6::TIME_EXCEEDED);
                    },
                    Some(DropReason::TtlExpired),
                ),
            )],
        ),
    ]
}

fn arp_nd_cases() -> Vec<Case> {
    let who_has = |target: &str| {
        PacketBuilder::ethernet(ROUTER_MAC, EthernetAddress::BROADCAST)
            .arp_request(ROUTER_MAC, v4(ROUTER), v4(target))
            .build()
    };
    let is_at = |target: &str| {
        PacketBuilder::ethernet(EXT_MAC, ROUTER_MAC)
            .arp_reply(EXT_MAC, v4(target), ROUTER_MAC, v4(ROUTER))
            .build()
    };
    let ns = |target: &str| {
        let t = v6(target);
        PacketBuilder::ethernet(
            ROUTER_MAC,
            EthernetAddress::from_ipv6_multicast(&rvs::wire::icmpv6::solicited_node(&t)),
        )
        .ipv6(v6(ROUTER6), rvs::wire::icmpv6::solicited_node(&t))
        .ndp_solicit(t, Some(ROUTER_MAC))
        .build()
    };
    let na = |target: &str| {
        PacketBuilder::ethernet(EXT_MAC, ROUTER_MAC)
            .ipv6(v6(target), v6(ROUTER6))
            .ndp_advert(
                NdpFlags::SOLICITED | NdpFlags::OVERRIDE,
                v6(target),
                Some(EXT_MAC),
            )
            .build()
    };
    vec![
        case(
            "arp_request_for_vip_is_answered",
            vec![step(EXT, who_has("10.0.0.1"), out(EXT, is_at("10.0.0.1")))],
        ),
        case(
            "arp_request_for_director_address_is_answered",
            vec![step(EXT, who_has(DIP_EXT), out(EXT, is_at(DIP_EXT)))],
        ),
        case(
            "arp_request_for_local_address_is_answered",
            vec![step(EXT, who_has(LIP), out(EXT, is_at(LIP)))],
        ),
        case(
            "arp_request_for_other_host_is_ignored",
            vec![step(
                EXT,
                who_has("10.0.0.77"),
                Expect::Drop(DropReason::Local),
            )],
        ),
        case(
            "unknown_real_server_is_resolved_by_arp_then_packet_released",
            vec![
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.5", 40000, 80, SYN, 64),
                    out(
                        INT,
                        PacketBuilder::ethernet(INT_MAC, EthernetAddress::BROADCAST)
                            .arp_request(INT_MAC, v4(DIP_INT), v4(RS3))
                            .build(),
                    ),
                ),
                step(
                    INT,
                    PacketBuilder::ethernet(RS3_MAC, INT_MAC)
                        .arp_reply(RS3_MAC, v4(RS3), INT_MAC, v4(DIP_INT))
                        .build(),
                    Expect::Check(
                        |got| {
                            assert_eq!(got.len(), 1, "the waiting SYN is sent");
                            assert_eq!(got[0].0, INT);
                            assert_eq!(
                                got[0].1,
                                tcp4(to_rs(RS3_MAC), CIP, RS3, 40000, 80, SYN, 63)
                            );
                        },
                        Some(DropReason::Local),
                    ),
                ),
            ],
        ),
        case(
            "nd_solicit_for_vip6_is_answered",
            vec![step(EXT, ns("2001:db8::1"), out(EXT, na("2001:db8::1")))],
        ),
        case(
            "nd_solicit_for_director6_is_answered",
            vec![step(EXT, ns(DIP6_EXT), out(EXT, na(DIP6_EXT)))],
        ),
        case(
            "nd_solicit_for_other_host_is_ignored",
            vec![step(
                EXT,
                ns("2001:db8::77"),
                Expect::Drop(DropReason::Local),
            )],
        ),
        case(
            "unknown_real_server6_is_resolved_by_nd_then_packet_released",
            vec![
                step(
                    EXT,
                    tcp6(from_client(), CIP6, "2001:db8::5", 40000, 80, SYN, 64),
                    Expect::Check(
                        |got| {
                            assert_eq!(got.len(), 1, "a neighbour solicitation");
                            let e =
                                etherparse::SlicedPacket::from_ethernet(&got[0].1).expect("parses");
                            let Some(etherparse::TransportSlice::Icmpv6(i)) = e.transport else {
                                panic!("icmpv6")
                            };
                            assert_eq!(i.type_u8(), icmpv6::NEIGHBOR_SOLICIT);
                        },
                        None,
                    ),
                ),
                step(
                    INT,
                    PacketBuilder::ethernet(RS3_MAC, INT_MAC)
                        .ipv6(v6(RS3_6), v6(DIP6_INT))
                        .ndp_advert(NdpFlags::SOLICITED, v6(RS3_6), Some(RS3_MAC))
                        .build(),
                    Expect::Check(
                        |got| {
                            assert_eq!(got.len(), 1);
                            assert_eq!(
                                got[0].1,
                                tcp6(to_rs(RS3_MAC), CIP6, RS3_6, 40000, 80, SYN, 63)
                            );
                        },
                        Some(DropReason::Local),
                    ),
                ),
            ],
        ),
    ]
}

fn policy_drop_cases() -> Vec<Case> {
    vec![
        case(
            "tcp_without_syn_and_without_connection_is_dropped",
            vec![step(
                EXT,
                tcp4(from_client(), CIP, "10.0.0.1", 40000, 80, ACK, 64),
                Expect::Drop(DropReason::NotSyn),
            )],
        ),
        case(
            "tcp_to_address_without_service_is_dropped",
            vec![step(
                EXT,
                tcp4(from_client(), CIP, "10.0.0.99", 40000, 80, SYN, 64),
                Expect::Drop(DropReason::NoService),
            )],
        ),
        case(
            "udp_to_vip_on_other_port_is_dropped",
            vec![step(
                EXT,
                udp4(from_client(), CIP, "10.0.0.1", 5000, 54, 64),
                Expect::Drop(DropReason::Local),
            )],
        ),
        case(
            "quiesced_only_server_gets_no_new_connection",
            vec![step(
                EXT,
                tcp4(from_client(), CIP, "10.0.0.6", 40000, 80, SYN, 64),
                Expect::Drop(DropReason::NoDest),
            )],
        ),
        Case {
            name: "full_table_refuses_new_flow_but_keeps_established",
            topo: Topo::standard,
            capacity: 1,
            steps: vec![
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.1", 40000, 80, SYN, 64),
                    out(INT, tcp4(to_rs(RS1_MAC), CIP, RS1, 40000, 8080, SYN, 63)),
                ),
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.1", 40001, 80, SYN, 64),
                    Expect::Drop(DropReason::TableFull),
                ),
                step(
                    EXT,
                    tcp4(from_client(), CIP, "10.0.0.1", 40000, 80, ACK, 64),
                    out(INT, tcp4(to_rs(RS1_MAC), CIP, RS1, 40000, 8080, ACK, 63)),
                ),
            ],
        },
        case(
            "frame_for_another_mac_is_dropped",
            vec![step(
                EXT,
                PacketBuilder::ethernet(ROUTER_MAC, EthernetAddress([2, 9, 9, 9, 9, 9]))
                    .ipv4(v4(CIP), v4("10.0.0.1"))
                    .tcp(1, 80)
                    .build(),
                Expect::Drop(DropReason::NotForUs),
            )],
        ),
        case(
            "ipv4_fragment_of_icmp_is_dropped",
            vec![step(
                EXT,
                from_client()
                    .ipv4(v4(CIP), v4("10.0.0.1"))
                    .ipv4_fragment(0, true)
                    .raw_l4(ip_proto::ICMP, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0])
                    .build(),
                Expect::Drop(DropReason::Fragment),
            )],
        ),
        case(
            // RFC 1858: a TCP fragment at offset 8 could rewrite the flags.
            "ipv6_tcp_fragment_at_offset_8_is_dropped",
            vec![step(
                EXT,
                from_client()
                    .ipv6(v6(CIP6), v6("2001:db8::1"))
                    .ipv6_fragment(8, true, 9)
                    .tcp(40000, 80)
                    .payload_fill(64)
                    .build(),
                Expect::Drop(DropReason::Fragment),
            )],
        ),
        case(
            "unknown_ethertype_is_dropped",
            vec![step(
                EXT,
                from_client().ethertype(0x88cc).raw_l3(&[0u8; 46]).build(),
                Expect::Drop(DropReason::UnsupportedProto),
            )],
        ),
        case(
            "sctp_is_not_supported",
            vec![step(
                EXT,
                from_client()
                    .ipv4(v4(CIP), v4("10.0.0.1"))
                    .raw_l4(132, &[0u8; 16])
                    .build(),
                Expect::Drop(DropReason::UnsupportedProto),
            )],
        ),
    ]
}

fn malformed_cases() -> Vec<Case> {
    let m = |name: &'static str, frame: Vec<u8>| {
        case(
            name,
            vec![step(EXT, frame, Expect::Drop(DropReason::Malformed))],
        )
    };
    let syn4 = || {
        from_client()
            .ipv4(v4(CIP), v4("10.0.0.1"))
            .tcp(40000, 80)
            .flags(SYN)
    };
    let udp6 = || {
        from_client()
            .ipv6(v6(CIP6), v6("2001:db8::1"))
            .udp(5000, 53)
            .payload(b"q")
    };
    vec![
        m("zero_length_frame", vec![]),
        m("truncated_ethernet_header", vec![0x02; 10]),
        case(
            "vlan_in_vlan_is_refused",
            vec![step(
                EXT,
                {
                    let mut f = from_client()
                        .vlan(10)
                        .ipv4(v4(CIP), v4("10.0.0.1"))
                        .tcp(1, 80)
                        .build();
                    // Turn the inner ethertype into a second 802.1Q tag.
                    f[16] = 0x81;
                    f[17] = 0x00;
                    f
                },
                Expect::Drop(DropReason::VlanStack),
            )],
        ),
        m("ipv4_header_truncated", syn4().truncate(14 + 12).build()),
        m("ipv4_ihl_below_five", syn4().ipv4_ihl(4).build()),
        m(
            "ipv4_ihl_past_the_buffer",
            syn4().ipv4_ihl(15).truncate(14 + 40).build(),
        ),
        m(
            "ipv4_total_length_past_the_buffer",
            syn4().ipv4_total_len(400).build(),
        ),
        m(
            "ipv4_total_length_below_header",
            syn4().ipv4_total_len(12).build(),
        ),
        case(
            "ipv4_bad_header_checksum",
            vec![step(
                EXT,
                syn4().ipv4_checksum(0x1234).build(),
                Expect::Drop(DropReason::BadChecksum),
            )],
        ),
        m("ip_version_five_in_ipv4_frame", {
            let mut f = syn4().build();
            f[14] = 0x55;
            f
        }),
        m(
            "tcp_header_truncated",
            syn4().truncate(14 + 20 + 10).build(),
        ),
        m("tcp_data_offset_below_five", {
            let mut f = syn4().build();
            f[14 + 20 + 12] = 0x40;
            f
        }),
        m(
            "udp_length_past_ip_payload",
            from_client()
                .ipv4(v4(CIP), v4("10.0.0.1"))
                .udp(1, 53)
                .payload(b"abc")
                .udp_len(200)
                .build(),
        ),
        m(
            "udp_length_below_eight",
            from_client()
                .ipv4(v4(CIP), v4("10.0.0.1"))
                .udp(1, 53)
                .payload(b"abc")
                .udp_len(4)
                .build(),
        ),
        m(
            "ipv6_payload_length_past_the_buffer",
            udp6().ipv6_payload_len(600).build(),
        ),
        m("ipv6_header_truncated", udp6().truncate(14 + 30).build()),
        m(
            "ipv6_extension_chain_runs_past_the_packet",
            from_client()
                .ipv6(v6(CIP6), v6("2001:db8::1"))
                .ipv6_ext_raw(ip_proto::DSTOPTS, &[ip_proto::UDP, 30, 0, 0, 0, 0, 0, 0])
                .udp(5000, 53)
                .build(),
        ),
        m("ipv6_extension_chain_too_long", {
            let mut b = from_client().ipv6(v6(CIP6), v6("2001:db8::1"));
            for _ in 0..10 {
                b = b.ipv6_ext(ip_proto::DSTOPTS, &[0, 0, 0, 0, 0, 0]);
            }
            b.udp(5000, 53).build()
        }),
        m("arp_truncated", {
            let mut f = PacketBuilder::ethernet(ROUTER_MAC, EthernetAddress::BROADCAST)
                .arp_request(ROUTER_MAC, v4(ROUTER), v4("10.0.0.1"))
                .build();
            f.truncate(14 + 20);
            f
        }),
        m(
            "icmp_header_truncated",
            from_client()
                .ipv4(v4(CIP), v4("10.0.0.1"))
                .raw_l4(ip_proto::ICMP, &[3, 3, 0])
                .build(),
        ),
        m(
            "icmp_error_with_truncated_quote",
            from_client()
                .ipv4(v4(CIP), v4("10.0.0.1"))
                .icmpv4_error(
                    icmpv4::DEST_UNREACHABLE,
                    icmpv4::PORT_UNREACHABLE,
                    &[0x45, 0, 0, 28, 0, 0],
                )
                .build(),
        ),
    ]
}

fn all_cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(nat_cases());
    v.extend(dr_tun_cases());
    v.extend(fullnat_cases());
    v.extend(icmp_cases());
    v.extend(arp_nd_cases());
    v.extend(policy_drop_cases());
    v.extend(malformed_cases());
    v
}

#[test]
fn golden_packets() {
    let cases = all_cases();
    let mut failures = Vec::new();
    for c in &cases {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(c)));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}: {e}", c.name)),
            Err(_) => failures.push(format!("{}: check panicked (see above)", c.name)),
        }
    }
    println!("{} golden cases, {} failed", cases.len(), failures.len());
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn there_are_at_least_sixty_golden_cases_and_fifteen_malformed() {
    assert!(all_cases().len() >= 60, "{} cases", all_cases().len());
    assert!(malformed_cases().len() >= 15);
    let names: std::collections::HashSet<_> = all_cases().iter().map(|c| c.name).collect();
    assert_eq!(names.len(), all_cases().len(), "case names are unique");
}

#[test]
fn fwd_is_reexported_for_cases() {
    // The topology uses every forwarding method.
    let t = Topo::standard();
    for f in [Fwd::Nat, Fwd::Dr, Fwd::Tun, Fwd::FullNat] {
        assert!(t.services.iter().any(|s| s.dests.iter().any(|d| d.2 == f)));
    }
}

/// The golden director (`tests/common`) lives in the one test world of the
/// process-level tests (`tests/support/world.rs`): same addresses, same
/// MACs.
#[test]
fn the_golden_director_lives_in_the_support_world() {
    use support::world;
    assert_eq!(
        [EXT_MAC, INT_MAC, ROUTER_MAC, RS1_MAC, RS2_MAC],
        [
            world::EXT_MAC,
            world::INT_MAC,
            world::ROUTER_MAC,
            world::RS_MACS[0],
            world::RS_MACS[1]
        ]
    );
    assert_eq!(
        [DIP_EXT, DIP_INT, ROUTER, LIP],
        [world::DIP_EXT, world::DIP_INT, world::ROUTER, world::LIP]
    );
    assert_eq!(
        [RS1, RS2].map(str::to_string),
        [world::rip(0), world::rip(1)]
    );
    // The configured worlds' static neighbours are these hosts.
    for (addr, mac) in [(ROUTER, ROUTER_MAC), (RS1, RS1_MAC), (RS2, RS2_MAC)] {
        let line = format!("{{addr: {addr}, mac: \"{mac}\"");
        assert!(world::STATIC_TABLES.contains(&line), "{line}");
    }
}
