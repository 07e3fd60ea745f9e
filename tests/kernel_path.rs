//! The director's own traffic through the kernel path (issue 11): lbd with
//! `kernel_if` on both ports (`kext` with the DIP 10.0.0.254, `kint` with
//! 192.168.10.254, in the director's namespace), the physical interfaces
//! carrying no addresses, real tools on every side.
//!
//! * `af_packet_kernel_path_*`: the client pings the DIP (the director's
//!   kernel answers); a TCP server bound to the DIP (python3's http.server)
//!   serves the client through lbd; the director's kernel fetches a real
//!   server's page with `curl --interface DIP` (resolving its ARP itself);
//!   VIP traffic (NAT) keeps flowing; the counters show both directions.
//! * `af_packet_icmp_port_unreachable_*`: the director's kernel sends UDP
//!   from the DIP to a closed port of a real server; the port unreachable
//!   goes up and its socket sees ECONNREFUSED.
//! * `af_packet_lbd_guards_*`: lbd itself installs the physical
//!   interfaces' ingress drop (no duplicate replies to a ping of the DIP)
//!   and removes it when it stops.
//! * `af_packet_bgp_session_through_the_kernel_path_*`: BIRD 2 in the
//!   director's namespace peers with BIRD in the router namespace over
//!   lbd's `int` port and announces the VIP as a /32; the router's kernel
//!   table shows it.
//! * `af_packet_dip_flood_*`: a bounded UDP flood to the DIP while UDP VIP
//!   traffic flows: no VIP exchange is lost, `kernel_drop` counts the excess.
//! * `af_packet_full_kernel_ring_*`: rings of 8 frames and no rate limit:
//!   a bursty flood to the DIP fills them; `kernel_drop` counts the excess
//!   and no VIP exchange is lost.
//! * `dpdk_net_tap_kernel_path_*` (feature `dpdk`): ping, TCP and curl on
//!   DPDK `net_tap` ports.
//! * `bench_kernel_path_*` (ignored; `bench/kernel_path.sh`): VIP rate with
//!   and without a DIP flood, side by side, and the exception path's TCP
//!   throughput (iperf3).

mod support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rvs::ctl::protocol::{Response, WorkerStatsInfo};
use support::lbd::lbctl_json;
use support::process::{poll_until, Proc};
use support::topology::*;
use support::world::*;

/// The kernel interfaces of ports `ext` and `int`.
const KERNEL_IFS: (&str, &str) = ("kext", "kint");

const TOOLS: [&str; 9] = [
    "ip", "nginx", "curl", "wrk", "python3", "ethtool", "sysctl", "ping", "nft",
];

fn may_run(test: &str, extra: &[&str]) -> bool {
    let mut tools = TOOLS.to_vec();
    tools.extend_from_slice(extra);
    support::needs_root(test, &tools)
}

fn topology(driver: Driver, workers: u16) -> Topology {
    topology_limited(driver, workers, None)
}

fn topology_limited(driver: Driver, workers: u16, pps: Option<u64>) -> Topology {
    topology_with(driver, workers, pps, None)
}

/// NAT services on TCP 80 and UDP `ECHO_PORT` of `VIP_NAT`, both ports
/// with kernel interfaces (`kernel_if_pps` = `pps`, `kernel_if_steer` =
/// `steer`).
fn topology_with(driver: Driver, workers: u16, pps: Option<u64>, steer: Option<bool>) -> Topology {
    let mut t = Topology::build(Options {
        workers,
        kernel_ifs: Some(KERNEL_IFS),
        kernel_if_pps: pps,
        kernel_if_steer: steer,
        ..Options::new(driver)
    });
    // NAT: the real servers route through the director.
    t.server_mode(ServerMode::ViaDirector, &[]);
    let svc = format!("{VIP_NAT}:80");
    t.lbctl(&["-A", "-t", &svc, "-s", "rr"]);
    let usvc = format!("{VIP_NAT}:{ECHO_PORT}");
    t.lbctl(&["-A", "-u", &usvc, "-s", "rr"]);
    for i in 0..2 {
        let rs = rip(i);
        t.lbctl(&["-a", "-t", &svc, "-r", &format!("{rs}:80"), "-m"]);
        t.lbctl(&["-a", "-u", &usvc, "-r", &format!("{rs}:{ECHO_PORT}"), "-m"]);
    }
    t
}

/// Sum of one counter over the workers.
fn dataplane_stats(t: &Topology) -> Vec<WorkerStatsInfo> {
    match lbctl_json(&t.socket, &["--dataplane-stats"]) {
        Response::DataplaneStats { workers } => workers,
        other => panic!("not dataplane stats: {other:?}"),
    }
}

fn total(t: &Topology, get: fn(&WorkerStatsInfo) -> u64) -> u64 {
    dataplane_stats(t).iter().map(get).sum()
}

/// The director's own traffic on `driver`: ping, a TCP server on the DIP,
/// curl from the director's kernel to a real server, VIP traffic meanwhile.
fn own_traffic(driver: Driver) {
    let mut t = topology(driver, 1);
    // The kernel interfaces exist in the director's namespace, with the
    // port's MAC and address, and the physical ports have none.
    let kext = t.dir.sh("ip -o addr show dev kext");
    assert!(kext.contains(&format!("{DIP_EXT}/24")), "{kext}");
    let link = t.dir.sh("ip -o link show dev kext");
    println!("{link}");
    assert!(link.contains("UP"), "{link}");

    // VIP traffic flows.
    let names = t.fetch_names(&format!("http://{VIP_NAT}/"), 4);
    assert_eq!(tally(&names).len(), 2, "{names:?}");

    // 1. The client pings the DIP: the director's kernel answers.
    let ping = t.cli.sh(&format!("ping -c 3 -i 0.2 -W 2 {DIP_EXT}"));
    println!("{ping}");
    assert!(ping.contains("3 received"), "{ping}");

    // 2. A TCP server bound to the DIP in the director's namespace.
    let www = t.path("dipwww");
    std::fs::create_dir_all(&www).expect("dir");
    std::fs::write(www.join("index.html"), "director-kernel\n").expect("page");
    let mut server = t.dir.cmd("python3");
    server
        .args([
            "-m",
            "http.server",
            "8000",
            "--bind",
            DIP_EXT,
            "--directory",
        ])
        .arg(&www);
    let _server = Proc::spawn(
        "python3 http.server on the DIP",
        server,
        &t.path("dipwww.log"),
    );
    let url = format!("http://{DIP_EXT}:8000/index.html");
    let got = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let out = t.cli.output("curl", &["-s", "--max-time", "2", &url]);
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && body == "director-kernel").then_some(body)
    });
    assert!(
        got.is_some(),
        "the client cannot fetch {url} from the director's kernel"
    );

    // 3. The director's kernel fetches a real server's page from its own
    // address (the health checks' path), resolving the ARP itself.
    let page = t.dir.sh(&format!(
        "curl -s --max-time 5 --interface {DIP_INT} http://{}/",
        rip(0)
    ));
    assert_eq!(page.trim(), rs_name(0));
    let neigh = t.dir.sh("ip neigh show dev kint");
    assert!(
        neigh.contains(&rip(0)),
        "the kernel resolved rs1 itself: {neigh}"
    );

    // VIP traffic still flows, and the counters saw both directions.
    let names = t.fetch_names(&format!("http://{VIP_NAT}/"), 4);
    assert_eq!(names.len(), 4);
    let stats = t.lbctl(&["--dataplane-stats"]);
    println!("{stats}");
    let up = total(&t, |w| w.to_kernel);
    let down = total(&t, |w| w.from_kernel);
    assert!(up >= 10 && down >= 10, "to_kernel {up}, from_kernel {down}");
    assert!(stats.contains("to_kernel") && stats.contains("from_kernel"));
    t.stop_lbd_cleanly();
    assert!(
        !t.dir.link_exists("kext") && !t.dir.link_exists("kint"),
        "the kernel interfaces go with lbd"
    );
}

#[test]
fn af_packet_kernel_path_serves_ping_tcp_and_curl_of_the_director() {
    let _serial = support::serial();
    if may_run("af_packet_kernel_path", &[]) {
        own_traffic(Driver::AfPacket);
    }
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_net_tap_kernel_path_serves_ping_tcp_and_curl_of_the_director() {
    let _serial = support::serial();
    if may_run("dpdk_net_tap_kernel_path", &[]) {
        own_traffic(Driver::DpdkTap);
    }
}

/// A connected UDP socket bound to `src` sends to `dst:port` and waits for
/// the answer; prints `REFUSED` when the kernel reported port unreachable
/// (ECONNREFUSED), `TIMEOUT` when nothing came back.
const UDP_REFUSED_PY: &str = r#"
import socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.connect((dst, port))
s.settimeout(2.0)
s.send(b"anyone?")
try:
    s.recv(2048)
    print("ANSWERED", flush=True)
except ConnectionRefusedError:
    print("REFUSED", flush=True)
except socket.timeout:
    print("TIMEOUT", flush=True)
"#;

#[test]
fn af_packet_icmp_port_unreachable_for_the_directors_socket_reaches_its_kernel() {
    let _serial = support::serial();
    if !may_run("af_packet_icmp_error_to_dip", &[]) {
        return;
    }
    let t = topology(Driver::AfPacket, 1);
    // The director's kernel sends UDP from the DIP to a closed port of rs1:
    // rs1's kernel answers "port unreachable" to the DIP, which quotes no
    // connection of the dataplane, so it goes up and the socket sees
    // ECONNREFUSED (three tries: the first may wait for ARP).
    let mut last = String::new();
    for _ in 0..3 {
        let out = t
            .dir
            .output("python3", &["-c", UDP_REFUSED_PY, DIP_INT, &rip(0), "9"]);
        last = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if last == "REFUSED" {
            break;
        }
    }
    let stats = t.lbctl(&["--dataplane-stats"]);
    assert_eq!(last, "REFUSED", "{stats}");
    // VIP traffic (NAT) still flows, its ICMP handling untouched.
    assert_eq!(t.fetch_names(&format!("http://{VIP_NAT}/"), 2).len(), 2);
}

#[test]
fn af_packet_lbd_guards_the_ports_kernel_stack_no_duplicate_replies_and_removes_it_on_stop() {
    let _serial = support::serial();
    if !may_run("af_packet_kernel_if_guard", &[]) {
        return;
    }
    // No ingress drop from the test: lbd installs it (kernel_if_guard's
    // default) on both physical interfaces.
    let mut t = Topology::build(Options {
        kernel_ifs: Some(KERNEL_IFS),
        lbd_guards_ports: true,
        ..Options::new(Driver::AfPacket)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    let tables = t.dir.sh("nft list tables netdev");
    for i in ["ext0", "int0"] {
        let chain = t.dir.sh(&format!("nft list table netdev rvs_kp_{i}"));
        assert!(
            chain.contains(&format!("device \"{i}\"")) && chain.contains("policy drop"),
            "{tables}\n{chain}"
        );
    }
    // The client pings the DIP: the director's kernel answers once per
    // request, through the kernel interface only (the physical interface's
    // stack never sees the request, so no DUP! reply).
    let ping = t.cli.sh(&format!("ping -c 5 -i 0.2 -W 2 {DIP_EXT}"));
    println!("{ping}");
    assert!(ping.contains("5 received"), "{ping}");
    assert!(!ping.contains("DUP!"), "duplicate replies: {ping}");
    // The director's own TCP works (one answer per SYN, no RST from ext0).
    let page = t.dir.sh(&format!(
        "curl -s --max-time 5 --interface {DIP_INT} http://{}/",
        rip(0)
    ));
    assert_eq!(page.trim(), rs_name(0));
    t.stop_lbd_cleanly();
    let left = t.dir.sh("nft list tables netdev");
    assert!(
        !left.contains("rvs_kp_"),
        "the ingress drops go with lbd: {left}"
    );
}

const BIRD_DIR: &str = r#"
router id 192.168.10.254;
protocol device {}
protocol static vips { ipv4; route 10.0.0.100/32 blackhole; }
protocol bgp up {
  local 192.168.10.254 as 65000;
  neighbor 192.168.10.253 as 65001;
  connect delay time 1;
  connect retry time 2;
  ipv4 { import none; export where proto = "vips"; };
}
"#;

const BIRD_RTR: &str = r#"
router id 192.168.10.253;
protocol device {}
protocol kernel { ipv4 { import none; export all; }; }
protocol bgp director {
  local 192.168.10.253 as 65001;
  neighbor 192.168.10.254 as 65000;
  connect delay time 1;
  connect retry time 2;
  ipv4 { import all; export none; };
}
"#;

#[test]
fn af_packet_bgp_session_through_the_kernel_path_announces_the_vip() {
    let _serial = support::serial();
    if !may_run("af_packet_bgp_session", &["bird", "birdc"]) {
        return;
    }
    let t = topology(Driver::AfPacket, 1);
    let mut birds = Vec::new();
    for (ns, name, conf) in [(&t.dir, "dir", BIRD_DIR), (&t.rtr, "rtr", BIRD_RTR)] {
        let conf_path = t.path(&format!("bird-{name}.conf"));
        std::fs::write(&conf_path, conf).expect("bird.conf");
        let sock = t.path(&format!("bird-{name}.ctl"));
        let mut cmd = ns.cmd("bird");
        cmd.arg("-f").arg("-c").arg(&conf_path).arg("-s").arg(&sock);
        birds.push((
            Proc::spawn(
                &format!("bird in {name}"),
                cmd,
                &t.path(&format!("bird-{name}.log")),
            ),
            sock,
        ));
    }
    let route = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let r = t.rtr.sh(&format!("ip route show {VIP_NAT}/32"));
        r.contains(&format!("via {DIP_INT}")).then_some(r)
    });
    let show = |i: usize| {
        let out = t.rtr.output(
            "birdc",
            &[
                "-s",
                birds[i].1.to_str().expect("path"),
                "show",
                "protocols",
                "all",
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let Some(route) = route else {
        panic!(
            "the router never learned {VIP_NAT}/32:\n{}\n{}\n{}",
            show(1),
            birds[0].0.log_text(),
            t.lbctl(&["--dataplane-stats"])
        );
    };
    println!("router: {route}{}", show(1));
    assert!(route.contains("proto bird"), "{route}");
    // VIP traffic flows alongside the session.
    assert_eq!(t.fetch_names(&format!("http://{VIP_NAT}/"), 2).len(), 2);
}

/// A bounded UDP flood: `count` datagrams of `size` bytes to `dst:9`, at
/// `pps` per second (0: as fast as it goes), paced in bursts of 50.
const FLOOD_PY: &str = r#"
import socket, sys, time
dst, count, size, pps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * size
sent = 0
t0 = time.monotonic()
for k in range(count):
    try:
        s.sendto(payload, (dst, 9))
        sent += 1
    except OSError:
        pass
    if pps and k % 50 == 49:
        ahead = t0 + (k + 1) / pps - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print("SENT", sent, "IN", round(time.monotonic() - t0, 2), "S", flush=True)
"#;

/// UDP exchanges with the VIP without retries: each from a new socket (a
/// new flow), one datagram, one answer awaited for 2 s; prints the number
/// answered and lost.
const VIP_UDP_PY: &str = r#"
import socket, sys, time
vip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = lost = 0
for k in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2.0)
    s.sendto(b"ping %d" % k, (vip, port))
    try:
        s.recvfrom(2048)
        ok += 1
    except socket.timeout:
        lost += 1
    s.close()
print("ANSWERED", ok, "LOST", lost, flush=True)
"#;

fn start_flood(t: &Topology, tag: &str, procs: usize, count: u32, pps: u32) -> Vec<Proc> {
    start_flood_of(t, tag, procs, count, pps, 1200)
}

fn start_flood_of(
    t: &Topology,
    tag: &str,
    procs: usize,
    count: u32,
    pps: u32,
    size: usize,
) -> Vec<Proc> {
    (0..procs)
        .map(|i| {
            let mut cmd = t.cli.cmd("python3");
            cmd.args([
                "-c",
                FLOOD_PY,
                DIP_EXT,
                &count.to_string(),
                &size.to_string(),
                &pps.to_string(),
            ]);
            Proc::spawn(
                &format!("UDP flood {i} to the DIP"),
                cmd,
                &t.path(&format!("flood-{tag}-{i}.log")),
            )
        })
        .collect()
}

fn finish(mut procs: Vec<Proc>, limit: Duration) {
    for p in &mut procs {
        let status = p.wait_for(limit);
        assert!(status.success(), "{} failed: {}", p.what, p.log_text());
    }
}

#[test]
fn af_packet_dip_flood_costs_vip_traffic_nothing_and_counts_kernel_drop() {
    let _serial = support::serial();
    if !may_run("af_packet_dip_flood", &[]) {
        return;
    }
    // The kernel path takes at most 500 frames/s from this port; the flood
    // sends 3000/s for 6 s (a rate the debug-built port itself keeps up
    // with on these two shared cores: 10000/s of 1200-byte frames overran
    // the AF_PACKET ring before the kernel path was involved, counted as
    // RxMissed, and cost VIP exchanges).
    let t = topology_limited(Driver::AfPacket, 1, Some(500));
    assert_eq!(
        total(&t, |w| w.kernel_drop),
        0,
        "{}",
        t.lbctl(&["--dataplane-stats"])
    );
    let flood = start_flood(&t, "drop", 1, 18_000, 3_000);
    let out = t.cli.output(
        "python3",
        &["-c", VIP_UDP_PY, VIP_NAT, &ECHO_PORT.to_string(), "300"],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("VIP exchanges during the flood: {text}");
    finish(flood, Duration::from_secs(120));
    println!("{}", t.lbctl(&["--dataplane-stats"]));
    println!("{}", t.lbctl(&["--port-stats"]));
    println!(
        "{}",
        t.dir.sh("ip -s link show dev ext0; ip -s link show dev kext; nstat -az | grep -i -e drop -e backlog -e UdpRcvbuf || true")
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ANSWERED 300 LOST 0"), "{text}");
    let dropped = total(&t, |w| w.kernel_drop);
    let up = total(&t, |w| w.to_kernel);
    assert!(up > 0, "the flood reached the kernel path");
    assert!(
        dropped > 0,
        "the kernel path could not take the whole flood, and says so"
    );
    // Every flood frame reached the worker and went up or was counted.
    assert!(
        up + dropped >= 18_000,
        "to_kernel {up} + kernel_drop {dropped}"
    );
    // The limit held: 500/s over the flood's 6 s plus the burst, with
    // slack for a slower flood and the VIP exchanges' ARP.
    assert!(up <= 6_000, "to_kernel {up}");
}

#[test]
fn af_packet_full_kernel_ring_drops_and_counts_while_vip_traffic_is_unaffected() {
    let _serial = support::serial();
    if !may_run("af_packet_kernel_ring_full", &[]) {
        return;
    }
    // No rate limit: only the rings bound the kernel path, and they hold 8
    // frames. The flood comes in bursts of 50 back-to-back datagrams, which
    // the worker receives faster than the kernel-path thread (which wakes
    // at most every millisecond when idle) empties its ring.
    let mut t = Topology::build(Options {
        kernel_ifs: Some(KERNEL_IFS),
        kernel_ring: Some(8),
        // The workers' rings are what this test fills: the DIP's UDP
        // must go through them, not the kernel path's own socket.
        kernel_if_steer: Some(false),
        ..Options::new(Driver::AfPacket)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    let usvc = format!("{VIP_NAT}:{ECHO_PORT}");
    t.lbctl(&["-A", "-u", &usvc, "-s", "rr"]);
    for i in 0..2 {
        t.lbctl(&[
            "-a",
            "-u",
            &usvc,
            "-r",
            &format!("{}:{ECHO_PORT}", rip(i)),
            "-m",
        ]);
    }
    let flood = start_flood(&t, "ring", 1, 9_000, 3_000);
    let out = t.cli.output(
        "python3",
        &["-c", VIP_UDP_PY, VIP_NAT, &ECHO_PORT.to_string(), "200"],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("VIP exchanges during the flood: {text}");
    finish(flood, Duration::from_secs(60));
    let stats = t.lbctl(&["--dataplane-stats"]);
    println!("{stats}");
    assert!(text.contains("ANSWERED 200 LOST 0"), "{text}");
    let dropped = total(&t, |w| w.kernel_drop);
    let up = total(&t, |w| w.to_kernel);
    assert!(up > 0, "the flood reached the kernel: {stats}");
    assert!(dropped > 0, "a full ring drops and counts: {stats}");
    assert!(
        up + dropped >= 9_000,
        "every flood frame went up or was counted: to_kernel {up} + kernel_drop {dropped}"
    );
    t.stop_lbd_cleanly();
}

/// Counts UDP datagrams to `addr:9` until none came for 2 s (at most
/// `secs` seconds); prints the count.
const UDP_COUNT_PY: &str = r#"
import socket, sys, time
addr, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((addr, 9))
print("READY", flush=True)
s.settimeout(2.0)
n = 0
t0 = time.monotonic()
while time.monotonic() - t0 < secs:
    try:
        s.recv(4096)
        n += 1
    except socket.timeout:
        if n:
            break
print("GOT", n, flush=True)
"#;

/// The number after `word` in `text` (e.g. `SENT 123`).
fn number_after(text: &str, word: &str) -> u64 {
    text.split_whitespace()
        .skip_while(|w| *w != word)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {word} N in {text:?}"))
}

/// Frames the workers received, and frames that reached the kernel path
/// (`to_kernel`) or were dropped on its way (`kernel_drop`).
fn rx_up_drop(t: &Topology) -> (u64, u64, u64) {
    let w = dataplane_stats(t);
    (
        w.iter().map(|w| w.rx_packets).sum(),
        w.iter().map(|w| w.to_kernel).sum(),
        w.iter().map(|w| w.kernel_drop).sum(),
    )
}

/// A bounded flood of `count` 200-byte UDP datagrams to the DIP at `pps`
/// while `exchanges` UDP exchanges with the VIP run; returns (datagrams
/// sent, the VIP exchanges' output).
fn flood_during_vip_exchanges(
    t: &Topology,
    tag: &str,
    count: u32,
    pps: u32,
    exchanges: u32,
) -> (u64, String) {
    let mut flood = start_flood_of(t, tag, 1, count, pps, 200);
    let text = vip_exchanges(t, exchanges);
    let status = flood[0].wait_for(Duration::from_secs(60));
    let log = flood[0].log_text();
    assert!(status.success(), "flood: {log}");
    (number_after(&log, "SENT"), text)
}

/// `exchanges` UDP exchanges with the VIP (`VIP_UDP_PY`); its output.
fn vip_exchanges(t: &Topology, exchanges: u32) -> String {
    let out = t.cli.output(
        "python3",
        &[
            "-c",
            VIP_UDP_PY,
            VIP_NAT,
            &ECHO_PORT.to_string(),
            &exchanges.to_string(),
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// VIP exchanges alone: the workers' receive count they cost.
fn vip_exchanges_alone(t: &Topology, exchanges: u32) -> u64 {
    let (rx0, _, _) = rx_up_drop(t);
    let text = vip_exchanges(t, exchanges);
    assert!(
        text.contains(&format!("ANSWERED {exchanges} LOST 0")),
        "{text}"
    );
    rx_up_drop(t).0 - rx0
}

#[test]
fn af_packet_dip_flood_never_reaches_a_worker_and_vip_traffic_loses_nothing() {
    let _serial = support::serial();
    if !may_run("af_packet_dip_flood_steered", &[]) {
        return;
    }
    // Two workers: the fanout group picks one of them for every DIP frame
    // by its hash; that worker's socket filter then drops it. Were a
    // refused frame handed to the other member, the workers' rx would
    // grow by the flood.
    let t = topology_with(Driver::AfPacket, 2, None, None);
    let vip_only = vip_exchanges_alone(&t, 200);
    // The director's kernel counts what it gets on the DIP.
    let mut count = t.dir.cmd("python3");
    count.args(["-c", UDP_COUNT_PY, DIP_EXT, "30"]);
    let mut counter = Proc::spawn_ready(
        "UDP counter on the DIP",
        count,
        &t.path("dip-count.log"),
        "READY",
        Duration::from_secs(5),
    );
    let (rx0, up0, drop0) = rx_up_drop(&t);
    let (sent, vip) = flood_during_vip_exchanges(&t, "steered", 16_000, 4_000, 200);
    println!("VIP exchanges during the flood: {vip}");
    assert!(vip.contains("ANSWERED 200 LOST 0"), "{vip}");
    assert!(counter.wait_for(Duration::from_secs(40)).success());
    let got = number_after(&counter.log_text(), "GOT");
    let (rx1, up1, drop1) = rx_up_drop(&t);
    let stats = t.lbctl(&["--dataplane-stats"]);
    println!("{stats}");
    let (rx, up, dropped) = (rx1 - rx0, up1 - up0, drop1 - drop0);
    println!(
        "flood sent {sent}; workers rx {rx} (VIP exchanges alone: {vip_only}); to_kernel {up}, kernel_drop {dropped}; the DIP's socket got {got}"
    );
    assert!(sent >= 10_000, "the flood ran: {sent}");
    // Less than 1 % of the flood reached a worker.
    assert!(
        rx <= vip_only + sent / 100,
        "workers received {rx} frames (VIP exchanges alone: {vip_only}) of a {sent}-datagram flood to the DIP"
    );
    // The kernel path took it: counted, and the director's kernel got it.
    assert!(
        up + dropped >= sent * 9 / 10,
        "to_kernel {up} + kernel_drop {dropped} of {sent}"
    );
    assert!(
        up >= sent / 2 && got >= sent / 2,
        "to_kernel {up}, the DIP got {got} of {sent}"
    );
    assert!(
        got <= sent,
        "no frame reached the kernel twice: {got} of {sent}"
    );

    // A service on the DIP's address takes the address from the kernel
    // path (the next snapshot re-attaches both filters): the workers get
    // the DIP's frames again; without the service, not any more.
    let dsvc = format!("{DIP_EXT}:8080");
    t.lbctl(&["-A", "-t", &dsvc, "-s", "rr"]);
    let (rx0, _, _) = rx_up_drop(&t);
    let (sent, _) = flood_during_vip_exchanges(&t, "svc", 2_000, 4_000, 1);
    let rx = rx_up_drop(&t).0 - rx0;
    assert!(
        rx >= sent * 9 / 10,
        "a DIP with a service goes to the workers: rx {rx} of {sent}"
    );
    t.lbctl(&["-D", "-t", &dsvc]);
    let (rx0, _, _) = rx_up_drop(&t);
    let (sent, _) = flood_during_vip_exchanges(&t, "nosvc", 2_000, 4_000, 1);
    let rx = rx_up_drop(&t).0 - rx0;
    assert!(
        rx <= 2 * 2 + 20 + sent / 100,
        "steered again: rx {rx} of {sent}"
    );
    // The director's own TCP still works (through the kernel path's socket).
    let page = t.dir.sh(&format!(
        "curl -s --max-time 5 --interface {DIP_INT} http://{}/",
        rip(0)
    ));
    assert_eq!(page.trim(), rs_name(0));
}

#[test]
fn af_packet_kernel_if_steer_false_hands_the_dip_flood_to_the_workers() {
    let _serial = support::serial();
    if !may_run("af_packet_dip_flood_unsteered", &[]) {
        return;
    }
    let t = topology_with(Driver::AfPacket, 2, None, Some(false));
    let (rx0, up0, _) = rx_up_drop(&t);
    let (sent, vip) = flood_during_vip_exchanges(&t, "unsteered", 4_000, 2_000, 50);
    assert!(vip.contains("ANSWERED 50 LOST 0"), "{vip}");
    let (rx1, up1, _) = rx_up_drop(&t);
    println!(
        "flood sent {sent}; workers rx {}, to_kernel {}",
        rx1 - rx0,
        up1 - up0
    );
    assert!(
        rx1 - rx0 >= sent * 9 / 10,
        "the workers hand the DIP's frames up"
    );
}

// ---------------------------------------------------------------- benchmark

/// Median of `v`.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// VIP requests per second (wrk, `secs` seconds) through lbd, alone and
/// with a concurrent DIP flood, with the kernel path's own socket
/// (`kernel_if_steer`, the default) and without (the workers hand the
/// DIP's frames up): two directors side by side, alternating `rounds`
/// times; then each one's exception-path TCP throughput (iperf3 client →
/// server on the DIP).
#[test]
#[ignore = "benchmark: bench/kernel_path.sh"]
fn bench_kernel_path_vip_rate_with_and_without_dip_flood_and_tcp_throughput() {
    let _serial = support::serial();
    if !may_run("bench_kernel_path", &["iperf3"]) {
        return;
    }
    // KERNEL_PATH_BENCH_PPS=N: the ports' kernel_if_pps (default: none).
    let pps = std::env::var("KERNEL_PATH_BENCH_PPS")
        .ok()
        .and_then(|v| v.parse().ok());
    let rounds: usize = std::env::var("KERNEL_PATH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!("kernel_if_pps: {pps:?}");
    let setups = [("steered", Some(true)), ("unsteered", Some(false))];
    let topos: Vec<Topology> = setups
        .iter()
        .map(|(_, steer)| topology_with(Driver::AfPacket, 1, pps, *steer))
        .collect();
    let secs = 4;
    let url = format!("http://{VIP_NAT}/");
    // [setup][alone, flooded]
    let mut rates = vec![[Vec::new(), Vec::new()]; setups.len()];
    let mut report = String::new();
    for round in 0..rounds {
        for (k, t) in topos.iter().enumerate() {
            for with_flood in [false, true] {
                let flood =
                    with_flood.then(|| start_flood(t, &format!("b{round}"), 1, 2_000_000, 0));
                let wrk = t.start_wrk(
                    Wrk {
                        threads: 1,
                        conns: 20,
                        secs,
                        timeout_secs: 2,
                    },
                    &url,
                );
                let r = t.finish_wrk(wrk);
                if let Some(mut f) = flood {
                    for p in &mut f {
                        p.stop(Duration::from_secs(2));
                    }
                }
                let rps = r.requests_per_sec;
                let _ = writeln!(
                    report,
                    "round {round} {} {}: {rps:.0} req/s",
                    setups[k].0,
                    if with_flood {
                        "with DIP flood"
                    } else {
                        "alone"
                    }
                );
                rates[k][with_flood as usize].push(rps);
            }
        }
    }
    for (k, t) in topos.iter().enumerate() {
        let (a, f) = (median(&mut rates[k][0]), median(&mut rates[k][1]));
        let _ = writeln!(
            report,
            "VIP (NAT, HTTP) median, {}: alone {a:.0} req/s, with DIP flood {f:.0} req/s, ratio {:.2}",
            setups[k].0,
            f / a
        );
        println!("{}: {}", setups[k].0, t.lbctl(&["--dataplane-stats"]));
    }

    // The exception path's TCP throughput: iperf3 server bound to the DIP.
    for (k, t) in topos.iter().enumerate() {
        let mut server = t.dir.cmd("iperf3");
        server.args(["-s", "-1", "-B", DIP_EXT, "--forceflush"]);
        let _server = Proc::spawn_ready(
            "iperf3 server on the DIP",
            server,
            &t.path("iperf3-server.log"),
            "Server listening",
            Duration::from_secs(5),
        );
        let t0 = Instant::now();
        let out = t.cli.output("iperf3", &["-c", DIP_EXT, "-t", "5", "-J"]);
        assert!(
            out.status.success(),
            "iperf3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J");
        let bps = json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .expect("bits_per_second");
        let _ = writeln!(
            report,
            "exception path TCP, {} (iperf3 client -> DIP, 5 s, took {:.1} s): {:.1} Mbit/s",
            setups[k].0,
            t0.elapsed().as_secs_f64(),
            bps / 1e6
        );
    }
    println!("\n{report}");
}
