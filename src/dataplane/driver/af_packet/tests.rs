//! Unit tests of the fanout steering program (generated program against
//! [`SteerPlan::owner`] through the `cbpf` interpreter, the kernel's checks,
//! far jumps) and of the driver's option checks. The receive-side frame
//! tests live next to the code in `rx.rs`.

use super::cbpf::{run, verify, Skb};
use super::cbpf::{Asm, BPF_IMM, BPF_K, BPF_LD, BPF_RET};
use super::socket::{
    attach_filter, drop_outgoing_filter, ETH_P_8021AD, ETH_P_8021Q, MAX_BPF_INSNS,
};
use super::*;
use crate::steer::SteerService;
use std::io;
use std::os::fd::FromRawFd;

// --- Packets, built byte by byte.

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for x in &mut b {
            *x = self.next() as u8;
        }
        b
    }
}

/// An IPv4 header with `options` words of options and a TCP/UDP-ish
/// L4 header (ports, then zeros).
fn ipv4(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, options: u8) -> Vec<u8> {
    let ihl = 5 + options as usize;
    let mut p = vec![0u8; ihl * 4 + 20];
    p[0] = 0x40 | (ihl as u8);
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..ihl * 4].fill(1); // NOP options
    let l4 = ihl * 4;
    p[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    p[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    p
}

fn ipv6(next: u8, src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 20];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&20u16.to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&src);
    p[24..40].copy_from_slice(&dst);
    p[40..42].copy_from_slice(&sport.to_be_bytes());
    p[42..44].copy_from_slice(&dport.to_be_bytes());
    p
}

/// Every way the kernel may present an L3 packet to the program:
/// untagged (or tag taken into metadata), tag left in the data
/// (802.1Q and 802.1ad).
fn views(ethertype: u16, l3: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = vec![(ethertype, l3.to_vec())];
    for tpid in [ETH_P_8021Q, ETH_P_8021AD] {
        let mut d = vec![0x20, 0x0a];
        d.extend_from_slice(&ethertype.to_be_bytes());
        d.extend_from_slice(l3);
        out.push((tpid, d));
    }
    out
}

pub(super) fn v6(prefix: u16, last: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0..2].copy_from_slice(&0x2001u16.to_be_bytes());
    a[2..4].copy_from_slice(&0x0db8u16.to_be_bytes());
    a[4..6].copy_from_slice(&prefix.to_be_bytes());
    a[14..16].copy_from_slice(&last.to_be_bytes());
    a
}

fn svc(proto: u8, vip: &[u8], vport: u16, mask: Option<&[u8]>) -> SteerService {
    SteerService {
        proto,
        vip: vip.to_vec(),
        vport,
        persist_mask: mask.map(|m| m.to_vec()),
    }
}

/// Services of every shape: all ports, one port, persistent with full,
/// short and over-long masks, a protocol the program never sees, both
/// families; local addresses of both families.
fn mixed_plan(workers: u16) -> SteerPlan {
    let mut v6_64 = [0u8; 16];
    v6_64[..8].fill(0xff);
    SteerPlan {
        workers,
        services: vec![
            svc(6, &[198, 51, 100, 10], 80, None),
            svc(17, &[198, 51, 100, 10], 0, None),
            svc(6, &[198, 51, 100, 20], 443, Some(&[255, 255, 255, 0])),
            svc(6, &[198, 51, 100, 21], 0, Some(&[255, 255])),
            svc(17, &[198, 51, 100, 22], 53, Some(&v6_64)),
            svc(1, &[198, 51, 100, 30], 0, None),
            svc(6, &v6(1, 0x10), 80, None),
            svc(17, &v6(1, 0x20), 53, Some(&v6_64)),
            svc(6, &v6(1, 0x21), 0, Some(&[255, 255, 255, 255])),
            svc(6, &v6(1, 0x22), 8080, Some(&[0xff; 16])),
            svc(6, &[198, 51, 100, 10], 8080, Some(&[255, 255, 0, 0])),
        ],
        laddrs: vec![vec![198, 51, 100, 200], v6(1, 0x200).to_vec()],
    }
}

/// Many services, so that jumps reach past 255 instructions.
fn big_plan(workers: u16) -> SteerPlan {
    let mut services = Vec::new();
    for i in 0..280u16 {
        let mask = (i % 3 == 0).then_some(&[255u8, 255, 255, 0][..]);
        services.push(svc(
            6 + 11 * (i % 2) as u8,
            &[203, 0, (i >> 8) as u8, i as u8],
            80 + i % 4,
            mask,
        ));
    }
    for i in 0..40u16 {
        services.push(svc(6, &v6(7, i), 443, None));
    }
    SteerPlan {
        workers,
        services,
        laddrs: (0..20u8).map(|i| vec![203, 0, 200, i]).collect(),
    }
}

fn addr_pool4(plan: &SteerPlan) -> Vec<[u8; 4]> {
    let mut pool: Vec<[u8; 4]> = plan
        .services
        .iter()
        .map(|s| &s.vip)
        .chain(&plan.laddrs)
        .filter_map(|a| <[u8; 4]>::try_from(a.as_slice()).ok())
        .collect();
    pool.extend([
        [198, 51, 100, 7],
        [198, 51, 100, 99],
        [10, 1, 2, 3],
        [203, 0, 113, 5],
    ]);
    pool
}

fn addr_pool6(plan: &SteerPlan) -> Vec<[u8; 16]> {
    let mut pool: Vec<[u8; 16]> = plan
        .services
        .iter()
        .map(|s| &s.vip)
        .chain(&plan.laddrs)
        .filter_map(|a| <[u8; 16]>::try_from(a.as_slice()).ok())
        .collect();
    pool.extend([v6(1, 0x7), v6(2, 0x7), v6(1, 0x99)]);
    pool
}

/// Check the program against `plan.owner` on `n` random packets of
/// each family, in every presentation; returns how many were checked.
fn check_plan(plan: &SteerPlan, n: usize, seed: u64) -> usize {
    let prog = fanout_program(plan);
    verify(&prog).unwrap_or_else(|e| panic!("program rejected: {e}"));
    let mut rng = Rng(seed);
    let (pool4, pool6) = (addr_pool4(plan), addr_pool6(plan));
    let ports = [80u16, 443, 53, 8080, 81, 82, 83, 0, 65535];
    let port = |rng: &mut Rng| {
        if rng.below(2) == 0 {
            ports[rng.below(ports.len() as u64) as usize]
        } else {
            rng.next() as u16
        }
    };
    let mut checked = 0;
    for _ in 0..n {
        let proto = if rng.below(2) == 0 { 6 } else { 17 };
        let (sport, dport) = (port(&mut rng), port(&mut rng));
        // IPv4: source random or from the pool, destination mostly from the pool.
        let src4 = if rng.below(3) == 0 {
            pool4[rng.below(pool4.len() as u64) as usize]
        } else {
            rng.bytes()
        };
        let dst4 = if rng.below(5) == 0 {
            rng.bytes()
        } else {
            pool4[rng.below(pool4.len() as u64) as usize]
        };
        let options = if rng.below(4) == 0 {
            rng.below(11) as u8
        } else {
            0
        };
        let want = plan.owner(proto, &src4, sport, &dst4, dport);
        for (protocol, data) in views(0x0800, &ipv4(proto, src4, sport, dst4, dport, options)) {
            let got = run(
                &prog,
                &Skb {
                    protocol,
                    data: &data,
                },
            );
            assert_eq!(got, want as u32, "IPv4 {proto} {src4:?}:{sport} -> {dst4:?}:{dport} (ihl options {options}, protocol {protocol:#x})");
            checked += 1;
        }
        let src6 = if rng.below(3) == 0 {
            pool6[rng.below(pool6.len() as u64) as usize]
        } else {
            rng.bytes()
        };
        let dst6 = if rng.below(5) == 0 {
            rng.bytes()
        } else {
            pool6[rng.below(pool6.len() as u64) as usize]
        };
        let want = plan.owner(proto, &src6, sport, &dst6, dport);
        for (protocol, data) in views(0x86dd, &ipv6(proto, src6, sport, dst6, dport)) {
            let got = run(
                &prog,
                &Skb {
                    protocol,
                    data: &data,
                },
            );
            assert_eq!(
                got, want as u32,
                "IPv6 {proto} {src6:?}:{sport} -> {dst6:?}:{dport} (protocol {protocol:#x})"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn fanout_program_computes_the_owner_for_every_tcp_udp_packet() {
    let mut checked = 0;
    for workers in [2u16, 3, 4, 7, 16] {
        checked += check_plan(&mixed_plan(workers), 400, 0x9e37_79b9 + workers as u64);
        checked += check_plan(
            &SteerPlan {
                workers,
                ..SteerPlan::default()
            },
            100,
            7 + workers as u64,
        );
    }
    assert!(checked > 10_000, "{checked}");
}

#[test]
fn fanout_program_with_hundreds_of_services_widens_far_jumps_and_stays_exact() {
    let plan = big_plan(4);
    let prog = fanout_program(&plan);
    assert!(
        prog.len() > 2000 && prog.len() <= MAX_BPF_INSNS,
        "{} instructions",
        prog.len()
    );
    check_plan(&plan, 400, 42);
    // Packets to the last services, the farthest jumps.
    for i in 270..280u16 {
        let vip = [203, 0, (i >> 8) as u8, i as u8];
        let proto = 6 + 11 * (i % 2) as u8;
        for cport in [1000u16, 2000, 3000] {
            let want = plan.owner(proto, &[192, 0, 2, 9], cport, &vip, 80 + i % 4);
            let l3 = ipv4(proto, [192, 0, 2, 9], cport, vip, 80 + i % 4, 0);
            assert_eq!(
                run(
                    &prog,
                    &Skb {
                        protocol: 0x0800,
                        data: &l3
                    }
                ),
                want as u32
            );
        }
    }
}

#[test]
fn fanout_program_sends_what_it_cannot_classify_to_queue_0() {
    let plan = mixed_plan(4);
    let prog = fanout_program(&plan);
    let zero = |protocol: u16, data: &[u8]| run(&prog, &Skb { protocol, data });
    // Pick a flow whose owner is not 0, so 0 means "not classified".
    let cport = (1000u16..)
        .find(|&p| plan.owner(17, &[192, 0, 2, 1], p, &[198, 51, 100, 10], 9) != 0)
        .expect("some port has a non-zero owner");
    let good = ipv4(17, [192, 0, 2, 1], cport, [198, 51, 100, 10], 9, 0);
    assert_ne!(zero(0x0800, &good), 0);
    // ARP
    assert_eq!(zero(0x0806, &[0u8; 28]), 0);
    // ICMP
    let mut icmp = good.clone();
    icmp[9] = 1;
    assert_eq!(zero(0x0800, &icmp), 0);
    // IPv4 fragments, first or not, go to their datagram's router.
    for (flags, ident) in [
        (0x0010u16, 7u16),
        (0x2000, 7),
        (0x2010, 0x4242),
        (0x0010, 9),
    ] {
        let mut frag = good.clone();
        frag[4..6].copy_from_slice(&ident.to_be_bytes());
        frag[6..8].copy_from_slice(&flags.to_be_bytes());
        let want = crate::steer::frag_owner(&frag[12..16], &frag[16..20], ident.into(), 4);
        assert_eq!(zero(0x0800, &frag), u32::from(want), "{flags:#x} {ident}");
        let mut tagged = vec![0, 10, 0x08, 0x00];
        tagged.extend_from_slice(&frag);
        assert_eq!(zero(ETH_P_8021Q, &tagged), u32::from(want), "tagged");
    }
    let routers: std::collections::BTreeSet<u32> = (0..64u16)
        .map(|id| {
            let mut frag = good.clone();
            frag[4..6].copy_from_slice(&id.to_be_bytes());
            frag[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
            zero(0x0800, &frag)
        })
        .collect();
    assert_eq!(routers.len(), 4, "datagrams spread over every worker");
    // Truncated before the ports.
    assert_eq!(zero(0x0800, &good[..22]), 0);
    // IPv6 with a hop-by-hop header first.
    let mut v6p = ipv6(17, v6(9, 1), cport, v6(1, 0x10), 9);
    v6p[6] = 0;
    assert_eq!(zero(0x86dd, &v6p), 0);
    // A tag in the data followed by something that is not IP.
    assert_eq!(zero(ETH_P_8021Q, &[0, 10, 0x08, 0x06, 0, 0]), 0);
}

#[test]
fn single_worker_program_returns_0() {
    let prog = fanout_program(&mixed_plan(1));
    assert_eq!(prog.len(), 1);
    assert_eq!(
        run(
            &prog,
            &Skb {
                protocol: 0x0800,
                data: &[]
            }
        ),
        0
    );
}

#[test]
fn kernel_accepts_the_generated_programs() {
    // SO_ATTACH_FILTER runs the same classic checks as PACKET_FANOUT_DATA
    // and needs no privilege.
    // SAFETY: plain socket(2) call.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(raw >= 0, "{}", io::Error::last_os_error());
    // SAFETY: fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    for plan in [
        mixed_plan(2),
        mixed_plan(5),
        big_plan(3),
        SteerPlan {
            workers: 2,
            ..SteerPlan::default()
        },
    ] {
        let prog = fanout_program(&plan);
        attach_filter(fd.as_raw_fd(), &prog)
            .unwrap_or_else(|e| panic!("kernel refused a {}-instruction program: {e}", prog.len()));
    }
    attach_filter(fd.as_raw_fd(), &drop_outgoing_filter()).expect("outgoing filter");
}

#[test]
fn asm_widens_a_far_conditional_jump_into_a_ja() {
    let mut a = Asm::default();
    let far = a.label();
    a.op(BPF_LD | BPF_IMM, 5);
    a.jeq(5, Some(far), None);
    for _ in 0..300 {
        a.op(BPF_LD | BPF_IMM, 1);
    }
    a.op(BPF_RET | BPF_K, 1);
    a.place(far);
    a.op(BPF_RET | BPF_K, 2);
    let prog = a.finish();
    verify(&prog).expect("valid");
    assert_eq!(prog.len(), 2 + 1 + 300 + 2);
    assert_eq!(
        run(
            &prog,
            &Skb {
                protocol: 0,
                data: &[]
            }
        ),
        2
    );
}

#[test]
fn options_are_checked_before_any_socket_is_opened() {
    let bad = [
        AfPacketOptions {
            block_size: 1000,
            ..Default::default()
        },
        AfPacketOptions {
            frame_size: 2047,
            ..Default::default()
        },
        AfPacketOptions {
            frame_size: 1 << 18,
            ..Default::default()
        },
        AfPacketOptions {
            block_count: 0,
            ..Default::default()
        },
        AfPacketOptions {
            block_timeout_ms: 0,
            ..Default::default()
        },
    ];
    for o in bad {
        let r = AfPacketDriver::open("lo", 1, o.clone());
        assert!(
            matches!(r, Err(DriverError::Config(_))),
            "{o:?}: {:?}",
            r.err()
        );
    }
    assert!(matches!(
        AfPacketDriver::open("lo", 0, AfPacketOptions::default()),
        Err(DriverError::Config(_))
    ));
}
