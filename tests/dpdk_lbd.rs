//! The real `lbd` on DPDK (feature `dpdk`, `--no-huge --no-pci` virtual
//! devices), against what the same configuration does without DPDK.
//!
//! * `dpdk_net_pcap_output_equals_pcap_replay`: one multi-flow client
//!   capture (TCP NAT and FULLNAT flows, UDP NAT flows, ARP and ping for the
//!   director's addresses, a packet for no service) goes (a) through
//!   `lbd --replay` (rvs's own pcap driver, one worker) and (b) through
//!   `lbd` running on two `net_pcap` devices (`rx_pcap` = the capture on
//!   `ext`; `int` transmit-only). lbd (b) is stopped with SIGTERM once its
//!   port counters show the capture consumed and everything sent; what each
//!   port wrote must be the same frames, byte for byte, in the same order.
//! * `dpdk_net_tap_two_workers_nat_and_fullnat_end_to_end`: lbd with two
//!   workers on two `net_tap` devices, inside its own network namespace;
//!   the kernel sides of the TAPs are moved into a client namespace and a
//!   switch namespace (a bridge to two nginx real servers). Services are
//!   configured with the real `lbctl`. NAT: curl gets both servers' pages;
//!   each worker runs its own rr, so the answers alternate per worker (the
//!   client port names the owning worker, `steer::client_owner`), and the
//!   servers see the client's address. FULLNAT: the servers see the local
//!   address as the client, a few hundred concurrent wrk connections
//!   complete with no socket error, and both workers own connections (the
//!   local port names the owner). lbd must stop cleanly on SIGTERM.
//!
//! Rules: every process, namespace and interface is owned by a guard
//! (`support`'s `Lbd`, `Proc` and `Netns`; the TAPs vanish with lbd), so
//! they are removed on success and on panic. The end-to-end test is the
//! shared end-to-end world (`support::topology`) on `Driver::DpdkTap`.
//! Without root it prints why it is skipped (under CI it fails); as root a
//! set-up failure fails it. The tests take the one-at-a-time lock (two
//! cores). Test names contain "dpdk": CI runs
//! `cargo test --features dpdk dpdk`.
#![cfg(feature = "dpdk")]

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rvs::ctl::protocol::{ConnInfo, PortStatsInfo};
use rvs::dataplane::driver::pcap::{read_capture, write_capture};
use rvs::steer::client_owner;
use rvs::wire::builder::PacketBuilder;
use rvs::wire::{EthernetAddress, TcpFlags};
use support::lbd::{port_stats, Lbd, LBD};
use support::process::poll_until;
use support::topology::{tally, Driver, Options, Topology, Wrk};
use support::world::{
    eal_args, rip, rs_name, unique, v4, LbdYaml, PortYaml, WorkersYaml, CIP, EXT_MAC, LIP,
    ROUTER_MAC, STATIC_TABLES, VIP_FULLNAT, VIP_NAT,
};

// ------------------------------------------- golden replay equivalence

/// Services shared by both runs (with the world's static tables); the
/// replay run ignores the drivers (every port becomes a pcap port) but keeps
/// the configured MACs, so both runs rewrite to the same addresses.
const GOLDEN_SERVICES: &str = r#"services:
  - proto: tcp
    vip: 10.0.0.10
    port: 80
    scheduler: rr
    dests:
      - {addr: 192.168.10.1, port: 8080, fwd: masq}
      - {addr: 192.168.10.2, port: 8080, fwd: masq}
  - proto: udp
    vip: 10.0.0.10
    port: 53
    scheduler: rr
    dests:
      - {addr: 192.168.10.1, fwd: masq}
      - {addr: 192.168.10.2, port: 5353, fwd: masq}
  - proto: tcp
    vip: 10.0.0.11
    port: 443
    scheduler: wrr
    laddrs: [192.168.10.100, 192.168.10.101]
    dests:
      - {addr: 192.168.10.1, port: 8443, fwd: fullnat, weight: 2}
      - {addr: 192.168.10.2, port: 8443, fwd: fullnat}
"#;

/// The client capture: 24 TCP flows (12 NAT, 12 FULLNAT) of five segments
/// each with payloads of many sizes, 8 UDP flows of two datagrams, ARP
/// requests and pings for a VIP and the director, and a segment for a port
/// with no service; flows interleaved.
fn golden_client_capture() -> Vec<Vec<u8>> {
    let clients = ["203.0.113.7", "198.51.100.9", "192.0.2.33"];
    let from_router = || PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC);
    let mut frames = vec![
        PacketBuilder::ethernet(ROUTER_MAC, EthernetAddress::BROADCAST)
            .arp_request(ROUTER_MAC, v4("10.0.0.1"), v4("10.0.0.10"))
            .build(),
        PacketBuilder::ethernet(ROUTER_MAC, EthernetAddress::BROADCAST)
            .arp_request(ROUTER_MAC, v4("10.0.0.1"), v4("10.0.0.254"))
            .build(),
    ];
    let stages = [
        (TcpFlags::SYN, 0usize),
        (TcpFlags::ACK, 0),
        (TcpFlags::PSH | TcpFlags::ACK, 1),
        (TcpFlags::ACK, 2),
        (TcpFlags::FIN | TcpFlags::ACK, 0),
    ];
    for (stage, (flags, size_class)) in stages.iter().enumerate() {
        for f in 0..24u16 {
            let (vip, vport) = if f < 12 {
                ("10.0.0.10", 80)
            } else {
                ("10.0.0.11", 443)
            };
            let len = match size_class {
                0 => 0,
                1 => 17 + 61 * usize::from(f),
                _ => 1400 - 23 * usize::from(f),
            };
            frames.push(
                from_router()
                    .ipv4(v4(clients[usize::from(f) % 3]), v4(vip))
                    .ttl(60)
                    .tcp(40000 + f * 7, vport)
                    .flags(*flags)
                    .seq(1000 + stage as u32 * 100)
                    .ack(if stage == 0 { 0 } else { 5000 })
                    .payload_fill(len)
                    .build(),
            );
        }
        if stage < 2 {
            for f in 0..8u16 {
                frames.push(
                    from_router()
                        .ipv4(v4(clients[usize::from(f) % 3]), v4("10.0.0.10"))
                        .udp(50000 + f, 53)
                        .payload_fill(20 + usize::from(f) * 9)
                        .build(),
                );
            }
        }
        if stage == 2 {
            frames.push(
                from_router()
                    .ipv4(v4(clients[0]), v4("10.0.0.10"))
                    .icmpv4_echo_request(77, 1)
                    .payload(b"ping the vip")
                    .build(),
            );
            frames.push(
                from_router()
                    .ipv4(v4(clients[1]), v4("10.0.0.254"))
                    .icmpv4_echo_request(78, 2)
                    .payload(b"ping the director")
                    .build(),
            );
            frames.push(
                from_router()
                    .ipv4(v4(clients[2]), v4("10.0.0.10"))
                    .tcp(41000, 8081)
                    .flags(TcpFlags::SYN)
                    .build(),
            );
        }
    }
    frames
}

fn golden_yaml(socket: &Path, eal: Vec<String>) -> String {
    let mut yaml = LbdYaml::new(
        PortYaml::dpdk("net_pcap0", true),
        PortYaml::dpdk("net_pcap1", true),
    );
    yaml.socket = Some(socket.to_path_buf());
    yaml.workers = Some(WorkersYaml {
        count: 1,
        ..WorkersYaml::default()
    });
    yaml.eal_args = Some(eal);
    yaml.tables = format!("{STATIC_TABLES}{GOLDEN_SERVICES}");
    yaml.text()
}

/// Per-port counters by name.
fn stats_of<'a>(stats: &'a [PortStatsInfo], name: &str) -> &'a PortStatsInfo {
    stats
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no port {name} in {stats:?}"))
}

#[test]
fn dpdk_net_pcap_output_equals_pcap_replay() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.pcap");
    let frames = golden_client_capture();
    write_capture(&input, &frames).expect("write the client capture");
    let socket = dir.path().join("lbd.sock");
    let dpdk_ext = dir.path().join("dpdk-ext.pcap");
    let dpdk_int = dir.path().join("dpdk-int.pcap");
    let eal = eal_args(
        &unique("rvs_lbd_pcap"),
        &[
            format!(
                "net_pcap0,rx_pcap={},tx_pcap={}",
                input.display(),
                dpdk_ext.display()
            ),
            // Transmit only: net_pcap gives a port without an RX source a
            // dummy receive queue.
            format!("net_pcap1,tx_pcap={}", dpdk_int.display()),
        ],
    );
    let conf = dir.path().join("lbd.yaml");
    fs::write(&conf, golden_yaml(&socket, eal)).expect("write lbd.yaml");

    // (a) rvs's own pcap driver: lbd --replay.
    let replay_dir = dir.path().join("replay");
    let out = Command::new(LBD)
        .arg("-c")
        .arg(&conf)
        .arg("--replay")
        .arg(format!("ext={}", input.display()))
        .arg("--capture-dir")
        .arg(&replay_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run lbd --replay");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("lbd --replay:\n{report}");
    assert!(
        out.status.success(),
        "lbd --replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replay_ext = read_capture(&replay_dir.join("ext.pcap")).expect("replay ext.pcap");
    let replay_int = read_capture(&replay_dir.join("int.pcap")).expect("replay int.pcap");
    // 24 TCP flows × 5 + 8 UDP flows × 2 to the servers; 2 ARP replies and
    // 2 ping replies to the clients; the segment for no service dropped.
    assert_eq!(replay_int.len(), 24 * 5 + 8 * 2, "replay to the servers");
    assert_eq!(replay_ext.len(), 4, "replay to the clients");

    // (b) lbd on DPDK net_pcap devices, until its counters show the capture
    // consumed and as much sent as the replay sent.
    let mut cmd = Command::new(LBD);
    cmd.arg("-c").arg(&conf);
    let lbd = Lbd::start(
        "lbd (dpdk net_pcap)",
        cmd,
        &socket,
        &dir.path().join("lbd.log"),
    );
    let want = (
        frames.len() as u64,
        replay_ext.len() as u64,
        replay_int.len() as u64,
    );
    let mut last = String::new();
    let done = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let stats = port_stats(&socket).expect("lbd answers --port-stats");
        let (ext, int) = (stats_of(&stats, "ext"), stats_of(&stats, "int"));
        let got = (ext.rx_packets, ext.tx_packets, int.tx_packets);
        last = format!("(ext rx, ext tx, int tx) = {got:?}\n{stats:?}");
        (got == want).then_some(())
    });
    assert!(
        done.is_some(),
        "lbd on net_pcap: {last}, want {want:?}\n{}",
        lbd.log_text()
    );
    lbd.lbctl(&["--port-stats"]);
    lbd.lbctl(&["-Ln", "--stats"]);
    lbd.stop_cleanly();

    let got_ext = read_capture(&dpdk_ext).expect("net_pcap0's tx_pcap");
    let got_int = read_capture(&dpdk_int).expect("net_pcap1's tx_pcap");
    assert_same_frames("ext", &got_ext, &replay_ext);
    assert_same_frames("int", &got_int, &replay_int);
}

/// The frames are identical, in order; on failure names the first
/// difference.
fn assert_same_frames(port: &str, dpdk: &[Vec<u8>], replay: &[Vec<u8>]) {
    for (i, (d, r)) in dpdk.iter().zip(replay).enumerate() {
        assert!(
            d == r,
            "port {port}, frame {i}: DPDK run sent\n{}\nthe replay sent\n{}",
            hex(d),
            hex(r)
        );
    }
    assert_eq!(
        dpdk.len(),
        replay.len(),
        "port {port}: frame counts differ (DPDK run, replay)"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ------------------------------------------- end to end on net_tap

const WORKERS: u16 = 2;
/// Concurrent wrk connections through the FULLNAT service.
const FULLNAT_CONNECTIONS: u32 = 300;

/// One GET from the client on a new connection: (body, client port); it
/// must succeed.
fn get(t: &Topology, url: &str) -> (String, u16) {
    t.http_get_from(url).unwrap_or_else(|code| {
        panic!(
            "GET {url} failed (curl exit {code})\nlbd log:\n{}",
            t.lbd_log()
        )
    })
}

/// Adds TCP service `vip:80` (rr) with both real servers on port 80.
fn add_service(t: &Topology, vip: &str, fwd_flag: &str, laddr: Option<&str>) {
    let svc = format!("{vip}:80");
    t.lbctl(&["-A", "-t", &svc, "-s", "rr"]);
    if let Some(lip) = laddr {
        t.lbctl(&["-P", "-t", &svc, "-z", lip]);
    }
    for i in 0..2 {
        t.lbctl(&["-a", "-t", &svc, "-r", &format!("{}:80", rip(i)), fwd_flag]);
    }
}

#[test]
fn dpdk_net_tap_two_workers_nat_and_fullnat_end_to_end() {
    let _serial = support::serial();
    let test = "dpdk_net_tap_two_workers_nat_and_fullnat_end_to_end";
    if !support::needs_root(test, &["ip", "nginx", "curl", "wrk", "python3", "sysctl"]) {
        return;
    }
    // lbd with two workers on two `net_tap` devices in namespace `dir`; the
    // kernel side of `net_tap0` (`ext0`) is the client's interface, that of
    // `net_tap1` (`int0`) a port of the bridge to the real servers.
    let mut t = Topology::build(Options {
        workers: WORKERS,
        cores: Some(vec![0, 1]),
        ..Options::new(Driver::DpdkTap)
    });
    let cip: std::net::Ipv4Addr = CIP.parse().expect("CIP");

    // ---- NAT, rr: each worker's scheduler alternates over both servers.
    add_service(&t, VIP_NAT, "-m", None);
    let url = format!("http://{VIP_NAT}/");
    let answers: Vec<(String, u16)> = (0..20).map(|_| get(&t, &url)).collect();
    println!("NAT answers (server, client port): {answers:?}");
    let names: Vec<String> = answers.iter().map(|(n, _)| n.clone()).collect();
    let counts = tally(&names);
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        ["rs1", "rs2"],
        "{counts:?}"
    );
    for w in 0..WORKERS {
        let seen: Vec<&str> = answers
            .iter()
            .filter(|(_, port)| client_owner(&cip.octets(), *port, WORKERS) == w)
            .map(|(n, _)| n.as_str())
            .collect();
        println!("worker {w} (owner of the client port) answered: {seen:?}");
        for pair in seen.windows(2) {
            assert_ne!(
                pair[0], pair[1],
                "worker {w}'s rr does not alternate: {seen:?}"
            );
        }
    }
    for i in 0..2 {
        let lines = t.client_log_lines(i);
        assert!(!lines.is_empty(), "{} saw no request", rs_name(i));
        for l in &lines {
            assert!(
                l.starts_with(&format!("{CIP} {} ", rip(i))),
                "NAT keeps the client: {}: {l}",
                rs_name(i)
            );
        }
    }
    let nat_lines: Vec<usize> = (0..2).map(|i| t.client_log_lines(i).len()).collect();

    // ---- FULLNAT: the servers see the local address; a few hundred
    // concurrent connections complete without error.
    add_service(&t, VIP_FULLNAT, "--fullnat", Some(LIP));
    t.lbctl(&["-G"]);
    let url = format!("http://{VIP_FULLNAT}/");
    let names: Vec<String> = (0..10).map(|_| get(&t, &url).0).collect();
    println!("FULLNAT answers: {names:?}");
    assert_eq!(tally(&names).len(), 2, "both servers answer: {names:?}");
    let wrk = t.start_wrk(
        Wrk {
            threads: 2,
            conns: FULLNAT_CONNECTIONS,
            secs: 3,
            timeout_secs: 5,
        },
        &url,
    );
    let w = t.finish_wrk(wrk);
    assert_eq!(
        w.socket_errors, [0; 4],
        "wrk socket errors (connect, read, write, timeout)"
    );
    assert_eq!(w.non_2xx, 0, "{w:?}");
    assert!(w.requests >= u64::from(FULLNAT_CONNECTIONS), "{w:?}");
    for i in 0..2 {
        let lines = t.client_log_lines(i);
        assert!(
            lines.len() > nat_lines[i],
            "{} saw no FULLNAT request",
            rs_name(i)
        );
        for l in &lines[nat_lines[i]..] {
            assert!(
                l.starts_with(&format!("{LIP} {} ", rip(i))),
                "FULLNAT source is the local address: {}: {l}",
                rs_name(i)
            );
        }
    }
    let fullnat: Vec<ConnInfo> = t
        .conns()
        .into_iter()
        .filter(|c| c.vaddr.to_string() == format!("{VIP_FULLNAT}:80"))
        .collect();
    assert!(
        fullnat.len() >= FULLNAT_CONNECTIONS as usize,
        "{} FULLNAT entries",
        fullnat.len()
    );
    let mut per_worker = [0usize; WORKERS as usize];
    for c in &fullnat {
        let laddr = c
            .laddr
            .unwrap_or_else(|| panic!("FULLNAT entry without laddr: {c:?}"));
        assert_eq!(laddr.ip().to_string(), LIP, "{c:?}");
        per_worker[usize::from(laddr.port() % WORKERS)] += 1;
    }
    println!("FULLNAT connections per worker (local port partition): {per_worker:?}");
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers own connections: {per_worker:?}"
    );
    t.lbctl(&["-Ln", "--stats"]);
    t.lbctl(&["--port-stats"]);
    t.stop_lbd_cleanly();
}
