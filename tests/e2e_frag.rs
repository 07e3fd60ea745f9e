//! End to end: IP fragments through `lbd` (two workers; TAP and AF_PACKET
//! ports) in NAT and FULLNAT, in the shared namespace world
//! (`tests/support`).
//!
//! * 4 KB UDP datagrams: the client's kernel fragments them for the
//!   MTU-1500 link to the director; a python echo server on each real
//!   server answers with the same bytes, which its kernel fragments on the
//!   way back. Every answer must come back intact.
//! * A 1 MiB HTTP POST: the client sits one hop behind a router (a second
//!   namespace, link MTU 9000, path MTU discovery off), the real servers
//!   advertise an MSS of 8960 (`advmss`), so the client sends 8960-byte
//!   segments without DF and the router fragments them for the MTU-1500
//!   link to the director. A python HTTP server on the real server answers
//!   with the SHA-256 of the body it received; it must be the body's.
//!   The real servers' `IpReasmOKs` proves the fragments arrived as
//!   fragments, and no fragment drop reason may count.
//!
//! ```text
//!  far 10.9.0.2 ─(MTU 9000)─ 10.9.0.1 cli 10.0.0.2 + 10.0.0.1 ── ext [lbd] int ── rs1, rs2
//! ```
//! lbd routes 10.9.0.0/24 via 10.0.0.1 (its YAML); `cli` takes that
//! address too and forwards for `far`.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use rvs::ctl::protocol::Response;
use support::lbd::lbctl_json;
use support::netns::Netns;
use support::process::Proc;
use support::topology::*;
use support::world::*;

const TOOLS: [&str; 7] = [
    "ip", "nginx", "curl", "python3", "sysctl", "nstat", "ethtool",
];

/// UDP echo port of this test's own echo server (the world's reads at most
/// 2048 bytes).
const BIG_ECHO_PORT: u16 = 5454;
/// The digesting HTTP server's port.
const POST_PORT: u16 = 8000;
/// UDP datagram payload.
const UDP_LEN: usize = 4000;
/// POST body.
const POST_LEN: usize = 1 << 20;
/// The far client behind the client-side router.
const FAR: &str = "10.9.0.2";

const BIG_ECHO_PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("READY", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"#;

const DIGEST_HTTP_PY: &str = r#"
import hashlib, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        body = self.rfile.read(n)
        out = ("%d %s\n" % (len(body), hashlib.sha256(body).hexdigest())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H)
print("READY", flush=True)
srv.serve_forever()
"#;

/// Sends `n` datagrams of `len` pseudo-random bytes to `vip:port` one at a
/// time (2 s timeout each, one retry); prints "OK k" or "BAD k ...".
const UDP_BIG_CLIENT_PY: &str = r#"
import os, socket, sys
vip, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for k in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    data = os.urandom(size)
    got = None
    for attempt in range(2):
        s.sendto(data, (vip, port))
        try:
            got, _ = s.recvfrom(65535)
            break
        except socket.timeout:
            pass
    print("OK %d" % k if got == data else "BAD %d %r" % (k, None if got is None else len(got)))
    s.close()
"#;

fn may_run(test: &str) -> bool {
    support::needs_root(test, &TOOLS)
}

/// Fragment drop reasons summed over the workers.
fn frag_drops(t: &Topology) -> BTreeMap<String, u64> {
    println!("{}", t.lbctl(&["--dataplane-stats"]));
    let workers = match lbctl_json(&t.socket, &["--dataplane-stats"]) {
        Response::DataplaneStats { workers } => workers,
        other => panic!("lbctl --dataplane-stats -o json: unexpected {other:?}"),
    };
    let mut total = BTreeMap::new();
    for w in &workers {
        for d in w.drops.iter().filter(|d| d.reason.starts_with("frag")) {
            *total.entry(d.reason.clone()).or_insert(0) += d.packets;
        }
    }
    total
}

struct World {
    t: Topology,
    far: Netns,
    _procs: Vec<Proc>,
}

fn world(driver: Driver) -> World {
    let mut t = Topology::build(Options {
        workers: 2,
        tables: Some(format!(
            "routes:\n  - {{prefix: \"10.9.0.0/24\", via: {ROUTER}, port: ext}}\n"
        )),
        ..Options::new(driver)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    // The client namespace becomes the director's client-side router too.
    let far = Netns::ipv4_host("far");
    far.add_veth("up0", &t.cli, "far0");
    t.cli.sh(&format!(
        "ip addr add {ROUTER}/24 dev ext0
         ip link set far0 mtu 9000
         ip addr add 10.9.0.1/24 dev far0
         ip link set far0 up
         ethtool -K far0 gro off >/dev/null
         sysctl -qw net.ipv4.ip_forward=1"
    ));
    assert_eq!(
        ROUTER_MAC.0,
        [2, 0xaa, 0, 0, 0, 1],
        "the world's router MAC"
    );
    far.sh(&format!(
        "ip link set up0 mtu 9000
         ip addr add {FAR}/24 dev up0
         ip link set up0 up
         ethtool -K up0 tso off gso off >/dev/null
         ip route add default via 10.9.0.1
         sysctl -qw net.ipv4.ip_no_pmtu_disc=1"
    ));
    let mut procs = Vec::new();
    let echo = t.path("big_echo.py");
    fs::write(&echo, BIG_ECHO_PY).expect("big_echo.py");
    let http = t.path("digest_http.py");
    fs::write(&http, DIGEST_HTTP_PY).expect("digest_http.py");
    for i in 0..t.rs.len() {
        // Advertise a large MSS to the client side (NAT: via the default
        // route; FULLNAT: to the local address).
        t.rs[i].sh(&format!(
            "ip route replace default via {DIP_INT} advmss 8960
             ip route replace {LIP_TCP}/32 dev eth0 advmss 8960"
        ));
        let mut cmd = t.rs[i].cmd("python3");
        cmd.arg(&echo).arg(BIG_ECHO_PORT.to_string());
        let log = t.path(&format!("rs{}-big-echo.log", i + 1));
        procs.push(Proc::spawn_ready(
            "big udp echo",
            cmd,
            &log,
            "READY",
            Duration::from_secs(10),
        ));
        let mut cmd = t.rs[i].cmd("python3");
        cmd.arg(&http).arg(POST_PORT.to_string());
        let log = t.path(&format!("rs{}-digest-http.log", i + 1));
        procs.push(Proc::spawn_ready(
            "digest http",
            cmd,
            &log,
            "READY",
            Duration::from_secs(10),
        ));
    }
    World {
        t,
        far,
        _procs: procs,
    }
}

/// The TCP service's FULLNAT local address (rvs does not share one
/// between services).
const LIP_TCP: &str = "192.168.10.101";

fn add_services(t: &Topology, vip: &str, fwd: &str) {
    for (flag, port, lip) in [("-u", BIG_ECHO_PORT, LIP), ("-t", POST_PORT, LIP_TCP)] {
        let svc = format!("{vip}:{port}");
        t.lbctl(&["-A", flag, &svc, "-s", "rr"]);
        if fwd == "--fullnat" {
            t.lbctl(&["-P", flag, &svc, "-z", lip]);
        }
        for i in 0..t.rs.len() {
            t.lbctl(&["-a", flag, &svc, "-r", &format!("{}:{port}", rip(i)), fwd]);
        }
    }
}

fn reasm_oks(w: &World) -> u64 {
    w.t.rs.iter().map(|ns| ns.snmp("IpReasmOKs")).sum()
}

/// 4 KB UDP datagrams from the client (fragmented by its kernel) come back
/// intact from the echo servers (fragmented by theirs).
fn udp_datagrams_arrive_intact(w: &World, vip: &str) {
    let n = 20;
    let out = w.t.cli.output(
        "python3",
        &[
            "-c",
            UDP_BIG_CLIENT_PY,
            vip,
            &BIG_ECHO_PORT.to_string(),
            &n.to_string(),
            &UDP_LEN.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "udp client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = text.lines().filter(|l| l.starts_with("OK ")).count();
    assert_eq!(ok, n, "every 4 KB datagram echoed intact:\n{text}");
}

/// A 1 MiB POST from the far client, fragmented by the router, arrives
/// whole: the server's digest is the body's.
fn large_post_arrives_intact(w: &World, vip: &str) {
    let body = w.t.path("body.bin");
    let data: Vec<u8> = (0..POST_LEN as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&body, &data).expect("body.bin");
    let want = w.far.sh(&format!("sha256sum {}", body.display()));
    let want = want.split_whitespace().next().expect("digest").to_string();
    let url = format!("http://{vip}:{POST_PORT}/");
    let out = w.far.output(
        "curl",
        &[
            "-s",
            "--max-time",
            "20",
            "-H",
            "Expect:",
            "--data-binary",
            &format!("@{}", body.display()),
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        println!("{}", w.t.lbctl(&["--dataplane-stats"]));
        println!("{}", w.t.lbctl(&["-Lnc"]));
        for (name, ns) in [
            ("far", &w.far),
            ("cli", &w.t.cli),
            ("rs1", &w.t.rs[0]),
            ("rs2", &w.t.rs[1]),
        ] {
            println!("DIAG {name}: {}", ns.sh("nstat -az | grep -E 'IpFrag|IpReasm|CsumErr|TcpActiveOpens|TcpPassiveOpens|TcpRetransSegs|IpOutNoRoutes|IpInDiscards|IpInHdrErrors|IpForwDatagrams' | tr -s ' ' | tr '\\n' ';'"));
        }
    }
    assert!(
        out.status.success(),
        "curl POST {url}: exit {:?}: {text}",
        out.status.code()
    );
    assert_eq!(
        text.trim(),
        format!("{POST_LEN} {want}"),
        "the server got the body"
    );
}

fn run(test: &str, driver: Driver, vip: &str, fwd: &str) {
    let _serial = support::serial();
    if !may_run(test) {
        return;
    }
    let w = world(driver);
    add_services(&w.t, vip, fwd);
    let before = reasm_oks(&w);
    udp_datagrams_arrive_intact(&w, vip);
    let after_udp = reasm_oks(&w);
    assert!(
        after_udp >= before + 20,
        "the real servers reassembled the datagrams ({before} → {after_udp})"
    );
    large_post_arrives_intact(&w, vip);
    let after_post = reasm_oks(&w);
    assert!(
        after_post > after_udp + 50,
        "the POST's segments arrived as fragments ({after_udp} → {after_post})"
    );
    let drops = frag_drops(&w.t);
    assert!(
        drops.values().all(|&n| n == 0),
        "no fragment dropped: {drops:?}"
    );
    // The helpers, lbd and every namespace are stopped and removed by
    // their guards (`World`'s fields).
}

#[test]
fn nat_forwards_fragmented_udp_and_a_fragmented_http_post_intact_over_tap() {
    run(
        "nat_forwards_fragmented_udp_and_a_fragmented_http_post_intact_over_tap",
        Driver::Tap,
        VIP_NAT,
        "-m",
    );
}

#[test]
fn fullnat_forwards_fragmented_udp_and_a_fragmented_http_post_intact_over_tap() {
    run(
        "fullnat_forwards_fragmented_udp_and_a_fragmented_http_post_intact_over_tap",
        Driver::Tap,
        VIP_FULLNAT,
        "--fullnat",
    );
}

/// AF_PACKET: the cBPF fanout program steers IPv4 fragments to their
/// datagram's router (`steer::frag_owner`) in the kernel.
#[test]
fn nat_forwards_fragmented_udp_and_a_fragmented_http_post_intact_over_af_packet() {
    run(
        "nat_forwards_fragmented_udp_and_a_fragmented_http_post_intact_over_af_packet",
        Driver::AfPacket,
        VIP_NAT,
        "-m",
    );
}

#[test]
fn fullnat_forwards_fragmented_udp_and_a_fragmented_http_post_intact_over_af_packet() {
    run(
        "fullnat_forwards_fragmented_udp_and_a_fragmented_http_post_intact_over_af_packet",
        Driver::AfPacket,
        VIP_FULLNAT,
        "--fullnat",
    );
}
