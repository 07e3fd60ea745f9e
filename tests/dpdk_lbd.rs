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
//! (`e2e_support`'s `Proc` and `Netns`; the TAPs vanish with lbd), so they
//! are removed on success and on panic. Without root the end-to-end test
//! prints why it is skipped; as root a set-up failure fails it. The tests
//! take the harness's one-at-a-time lock (two cores). Test names contain
//! "dpdk": CI runs `cargo test --features dpdk dpdk`.
#![cfg(feature = "dpdk")]

mod e2e_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use e2e_support::{
    ip, rip, root_or_skip, rs_name, serial, tally, Netns, Proc, WrkResult, LBCTL, LBD,
};
use rvs::ctl::protocol::{ConnInfo, PortStatsInfo, Response};
use rvs::dataplane::driver::pcap::{read_capture, write_capture};
use rvs::steer::client_owner;
use rvs::wire::builder::PacketBuilder;
use rvs::wire::{EthernetAddress, TcpFlags};

// ------------------------------------------------------------ common

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call (EAL file prefixes,
/// namespaces).
fn unique(tag: &str) -> String {
    format!(
        "{tag}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// EAL arguments that work on these machines (see the driver's `eal.rs`):
/// no hugepages, no PCI, no shared config, a file prefix of our own, one
/// EAL lcore; plus the test's virtual devices.
fn eal_args(prefix: &str, vdevs: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "256",
        "-l",
        "0",
        "--log-level=lib.eal:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--file-prefix={prefix}"));
    args.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
    args
}

/// A YAML flow sequence of strings (JSON is valid YAML).
fn yaml_strings(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialise")
}

fn lbctl(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(LBCTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run lbctl")
}

/// Runs `lbctl ARGS` as an operator would (printed with its output); it
/// must succeed.
fn lbctl_ok(socket: &Path, args: &[&str]) -> String {
    println!("# lbctl {}", args.join(" "));
    let out = lbctl(socket, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    assert!(
        out.status.success(),
        "lbctl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `lbctl --port-stats -o json`, or `None` while lbd does not answer.
fn port_stats(socket: &Path) -> Option<Vec<PortStatsInfo>> {
    let out = lbctl(socket, &["--port-stats", "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    match serde_json::from_slice::<Response>(&out.stdout) {
        Ok(Response::PortStats { ports }) => Some(ports),
        other => panic!("lbctl --port-stats -o json: unexpected answer {other:?}"),
    }
}

/// Waits until lbd (`proc`) answers on `socket`; panics with its log if it
/// exits or does not answer in time.
fn wait_ready(proc: &mut Proc, socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = proc.try_wait() {
            panic!("lbd exited at start ({status}):\n{}", proc.log_text());
        }
        if socket.exists() && port_stats(socket).is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lbd did not answer on {}:\n{}",
            socket.display(),
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM; lbd must exit by itself, successfully, without panicking.
fn stop_cleanly(mut proc: Proc) {
    let status = proc.stop(Duration::from_secs(10));
    let log = proc.log_text();
    assert!(
        status.is_some_and(|s| s.success()),
        "lbd did not stop cleanly after SIGTERM ({status:?}):\n{log}"
    );
    assert!(!log.contains("panicked"), "lbd panicked:\n{log}");
}

// ------------------------------------------- golden replay equivalence

const EXT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const ROUTER_MAC: EthernetAddress = EthernetAddress([2, 0xaa, 0, 0, 0, 1]);

/// Ports, static neighbours and services shared by both runs; the replay
/// run ignores the drivers (every port becomes a pcap port) but keeps the
/// configured MACs, so both runs rewrite to the same addresses.
const GOLDEN_TABLES: &str = r#"
routes:
  - {prefix: "0.0.0.0/0", via: 10.0.0.1, port: ext}
neighbours:
  - {addr: 10.0.0.1, mac: "02:aa:00:00:00:01", port: ext}
  - {addr: 192.168.10.1, mac: "02:b1:00:00:00:01", port: int}
  - {addr: 192.168.10.2, mac: "02:b2:00:00:00:02", port: int}
services:
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

fn v4(s: &str) -> std::net::Ipv4Addr {
    s.parse().expect("address")
}

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

fn golden_yaml(socket: &Path, eal: &[String]) -> String {
    format!(
        "socket: {}
workers: {{count: 1, idle: backoff}}
ports:
  - {{name: ext, driver: dpdk, device: net_pcap0, mac: \"02:00:00:00:00:01\", addrs: [\"10.0.0.254/24\"]}}
  - {{name: int, driver: dpdk, device: net_pcap1, mac: \"02:00:00:00:01:01\", addrs: [\"192.168.10.254/24\"]}}
dpdk:
  eal_args: {}
{GOLDEN_TABLES}",
        socket.display(),
        yaml_strings(eal)
    )
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
    let _serial = serial();
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
    fs::write(&conf, golden_yaml(&socket, &eal)).expect("write lbd.yaml");

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
    let mut lbd = Proc::spawn("lbd (dpdk net_pcap)", cmd, &dir.path().join("lbd.log"));
    wait_ready(&mut lbd, &socket);
    let want = (
        frames.len() as u64,
        replay_ext.len() as u64,
        replay_int.len() as u64,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = port_stats(&socket).expect("lbd answers --port-stats");
        let (ext, int) = (stats_of(&stats, "ext"), stats_of(&stats, "int"));
        let got = (ext.rx_packets, ext.tx_packets, int.tx_packets);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lbd on net_pcap: (ext rx, ext tx, int tx) = {got:?}, want {want:?}\n{stats:?}\n{}",
            lbd.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lbctl_ok(&socket, &["--port-stats"]);
    lbctl_ok(&socket, &["-Ln", "--stats"]);
    stop_cleanly(lbd);

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

/// The client (its interface is `net_tap0`'s kernel side).
const CIP: &str = "10.0.0.2";
const DIP_EXT: &str = "10.0.0.254";
const DIP_INT: &str = "192.168.10.254";
const VIP_NAT: &str = "10.0.0.100";
const VIP_FULLNAT: &str = "10.0.0.103";
const LIP: &str = "192.168.10.100";
const WORKERS: u16 = 2;
/// Concurrent wrk connections through the FULLNAT service.
const FULLNAT_CONNECTIONS: u32 = 300;

/// lbd on two `net_tap` devices in namespace `dir`; the kernel side of
/// `net_tap0` (`ext0`) is the client's interface in `cli`, that of
/// `net_tap1` (`int0`) a port of bridge `br0` in `sw`, with the real
/// servers `rs1`, `rs2` (nginx) behind it:
///
/// ```text
///  cli: ext0 10.0.0.2 ══ net_tap0 [lbd in dir] net_tap1 ══ int0 ─ br0 (sw) ─┬─ rs1 eth0 192.168.10.1
///                     10.0.0.254          192.168.10.254                   └─ rs2 eth0 192.168.10.2
/// ```
///
/// Field order is drop order: nginx, lbd (the TAPs go with it), then the
/// namespaces (whatever still runs in them is killed), then the files.
struct TapTopology {
    nginx: Vec<Proc>,
    lbd: Option<Proc>,
    cli: Netns,
    dir: Netns,
    sw: Netns,
    rs: Vec<Netns>,
    tmp: tempfile::TempDir,
    socket: PathBuf,
}

impl TapTopology {
    fn build() -> TapTopology {
        // `rvs-e2e-<pid>-…`: the harness removes such namespaces when the
        // process that made them is gone (a test killed with SIGKILL).
        let prefix = format!(
            "rvs-e2e-{}-dpdk{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = tempfile::Builder::new()
            .prefix("rvs-dpdk-e2e-")
            .tempdir()
            .expect("temporary directory");
        let socket = tmp.path().join("lbd.sock");
        let mut t = TapTopology {
            nginx: Vec::new(),
            lbd: None,
            cli: Netns::new(format!("{prefix}-cli")),
            dir: Netns::new(format!("{prefix}-dir")),
            sw: Netns::new(format!("{prefix}-sw")),
            rs: (1..=2)
                .map(|i| Netns::new(format!("{prefix}-rs{i}")))
                .collect(),
            tmp,
            socket,
        };
        t.start_lbd();
        t.wire();
        for i in 0..t.rs.len() {
            t.start_nginx(i);
        }
        t.wait_servers();
        t
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn yaml(&self) -> String {
        let eal = eal_args(
            &unique("rvs_lbd_tap"),
            &[
                "net_tap0,iface=ext0".to_string(),
                "net_tap1,iface=int0".to_string(),
            ],
        );
        format!(
            "socket: {}
workers: {{count: {WORKERS}, cores: [0, 1], idle: backoff}}
ports:
  - {{name: ext, driver: dpdk, device: net_tap0, addrs: [\"{DIP_EXT}/24\"]}}
  - {{name: int, driver: dpdk, device: net_tap1, addrs: [\"{DIP_INT}/24\"]}}
dpdk:
  eal_args: {}
",
            self.socket.display(),
            yaml_strings(&eal)
        )
    }

    /// lbd in `dir`; `net_tap` creates `ext0` and `int0` there.
    fn start_lbd(&mut self) {
        let yaml = self.yaml();
        println!("lbd.yaml:\n{yaml}");
        let conf = self.path("lbd.yaml");
        fs::write(&conf, yaml).expect("write lbd.yaml");
        let mut cmd = self.dir.cmd(LBD);
        cmd.arg("-c").arg(&conf);
        let mut lbd = Proc::spawn("lbd (dpdk net_tap)", cmd, &self.path("lbd.log"));
        wait_ready(&mut lbd, &self.socket);
        self.lbd = Some(lbd);
    }

    /// Moves the TAPs' kernel sides out of `dir` (lbd keeps its queue fds)
    /// and builds the client and the server side.
    fn wire(&self) {
        let dir = &self.dir.name;
        let listed = self.dir.sh("ip -o link show");
        assert!(
            listed.contains("ext0") && listed.contains("int0"),
            "net_tap did not create ext0 and int0 in {dir}:\n{listed}"
        );
        ip(&["-n", dir, "link", "set", "ext0", "netns", &self.cli.name]);
        ip(&["-n", dir, "link", "set", "int0", "netns", &self.sw.name]);
        // net_tap gives the kernel side the PMD's own MAC: a bridge would
        // take frames to that MAC for itself (a port's address is local to
        // the bridge), so the kernel sides get addresses of their own, as
        // the other hosts on those links would have.
        self.cli.sh(&format!(
            "ip link set ext0 address 02:cc:00:00:00:01
             ip addr add {CIP}/24 dev ext0\nip link set ext0 up"
        ));
        self.sw.sh("ip link add br0 type bridge\nip link set br0 up
             ip link set int0 address 02:cc:00:00:00:02
             ip link set int0 master br0\nip link set int0 up");
        for (i, rs) in self.rs.iter().enumerate() {
            let port = format!("rs{}p", i + 1);
            ip(&[
                "-n",
                &self.sw.name,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &rs.name,
            ]);
            self.sw.sh(&format!(
                "ip link set {port} master br0\nip link set {port} up"
            ));
            rs.sh(&format!(
                "ip addr add {}/24 dev eth0\nip link set eth0 up\nip route add default via {DIP_INT}",
                rip(i)
            ));
        }
    }

    /// nginx on real server `i` (its own configuration, `daemon off;`),
    /// answering `/` with its name and logging the peer's address.
    fn start_nginx(&mut self, i: usize) {
        let dir = self.path(&rs_name(i));
        fs::create_dir_all(dir.join("www")).expect("www");
        fs::create_dir_all(dir.join("tmp")).expect("tmp");
        fs::write(dir.join("www/index.html"), format!("{}\n", rs_name(i))).expect("index");
        let d = dir.display();
        let conf = format!(
            "daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 4096;
events {{ worker_connections 2048; }}
http {{
    log_format peer '$remote_addr $server_addr $request_uri $status';
    access_log {d}/access.log peer;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    keepalive_requests 100000;
    server {{
        listen 80 backlog=1024;
        root {d}/www;
    }}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("nginx.conf");
        let mut cmd = self.rs[i].cmd("nginx");
        cmd.arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path);
        let log = self.path(&format!("{}-nginx.out", rs_name(i)));
        self.nginx
            .push(Proc::spawn(&format!("nginx {}", rs_name(i)), cmd, &log));
    }

    fn wait_servers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for i in 0..self.rs.len() {
            loop {
                let out = self.rs[i].output(
                    "curl",
                    &["-s", "--max-time", "1", &format!("http://{}/", rip(i))],
                );
                if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == rs_name(i)
                {
                    break;
                }
                for p in &mut self.nginx {
                    if let Some(status) = p.try_wait() {
                        panic!("{} exited ({status}):\n{}", p.what, p.log_text());
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx on {} does not answer",
                    rs_name(i)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn lbctl(&self, args: &[&str]) -> String {
        lbctl_ok(&self.socket, args)
    }

    /// One GET from the client on a new connection: (body, client port).
    fn get(&self, url: &str) -> (String, u16) {
        let out = self.cli.output(
            "curl",
            &[
                "-s",
                "--max-time",
                "3",
                "-H",
                "Connection: close",
                "-w",
                "\n%{local_port}",
                url,
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "GET {url} failed (curl {}): {text}\nlbd log:\n{}",
            out.status,
            self.lbd_log()
        );
        let (body, port) = text
            .trim()
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("curl printed {text:?}"));
        (
            body.trim().to_string(),
            port.trim()
                .parse()
                .unwrap_or_else(|_| panic!("local port in {text:?}")),
        )
    }

    fn lbd_log(&self) -> String {
        self.lbd.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// Real server `i`'s access-log lines caused by the client side (not
    /// the readiness probes, which come from the server's own address).
    fn client_log_lines(&self, i: usize) -> Vec<String> {
        fs::read_to_string(self.path(&format!("{}/access.log", rs_name(i))))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with(&format!("{} ", rip(i))))
            .map(str::to_string)
            .collect()
    }

    /// `lbctl -Lnc -o json`.
    fn conns(&self) -> Vec<ConnInfo> {
        let out = lbctl(&self.socket, &["-Lnc", "-o", "json"]);
        assert!(out.status.success(), "lbctl -Lnc -o json failed");
        match serde_json::from_slice::<Response>(&out.stdout) {
            Ok(Response::Conns { conns, truncated }) => {
                assert!(!truncated, "connection list truncated");
                conns
            }
            other => panic!("lbctl -Lnc -o json: unexpected answer {other:?}"),
        }
    }

    fn wrk(&self, conns: u32, secs: u32, url: &str) -> WrkResult {
        let script =
            format!("ulimit -n 65536; exec wrk -t2 -c{conns} -d{secs}s --timeout 5s {url}");
        let out = self.cli.output("sh", &["-c", &script]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("$ wrk -t2 -c{conns} -d{secs}s --timeout 5s {url}\n{text}");
        assert!(
            out.status.success(),
            "wrk failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        WrkResult::parse(&text)
    }

    fn stop_lbd_cleanly(&mut self) {
        if let Some(lbd) = self.lbd.take() {
            stop_cleanly(lbd);
        }
    }
}

/// Adds TCP service `vip:80` (rr) with both real servers on port 80.
fn add_service(t: &TapTopology, vip: &str, fwd_flag: &str, laddr: Option<&str>) {
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
    let _serial = serial();
    if !root_or_skip("dpdk_net_tap_two_workers_nat_and_fullnat_end_to_end") {
        return;
    }
    let mut t = TapTopology::build();
    let cip: std::net::Ipv4Addr = CIP.parse().expect("CIP");

    // ---- NAT, rr: each worker's scheduler alternates over both servers.
    add_service(&t, VIP_NAT, "-m", None);
    let url = format!("http://{VIP_NAT}/");
    let answers: Vec<(String, u16)> = (0..20).map(|_| t.get(&url)).collect();
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
    let names: Vec<String> = (0..10).map(|_| t.get(&url).0).collect();
    println!("FULLNAT answers: {names:?}");
    assert_eq!(tally(&names).len(), 2, "both servers answer: {names:?}");
    let w = t.wrk(FULLNAT_CONNECTIONS, 3, &url);
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
