//! lbpktgen end to end: a veth pair between two fresh network namespaces
//! (`rvs-t-<pid>-<n>-gen` with the generator on `pg0`,
//! `rvs-t-<pid>-<n>-responder` with 198.18.9.1 on `pe0`), a kernel responder on the far side (a Python
//! UDP echo, or a Python TCP server answering one request per connection),
//! and the real `lbpktgen` binary on AF_PACKET with `--json`. The
//! generator resolves the responder's MAC by ARP and answers the kernel's
//! ARP for its two source addresses itself.
//!
//! Needs root (CI runs as root, so there it runs for real, and fails if it
//! cannot set up); elsewhere the namespace tests print why they skip. The
//! responder process (stopped by its PID) and both namespaces are removed by
//! Drop guards (`support`), also when a test fails. Every lbpktgen run is
//! bounded by a count and a duration. The namespace tests run one at a time
//! (two cores).

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::netns::Netns;
use support::process::Proc;

const LBPKTGEN: &str = env!("CARGO_BIN_EXE_lbpktgen");
const RESPONDER_IP: &str = "198.18.9.1";

/// True when the test may run: root (or, outside CI, a printed skip).
fn can_run(test: &str) -> bool {
    support::needs_root(test, &["ip", "python3", "sysctl"])
}

/// UDP echo: every datagram goes back to its sender. The receive buffer
/// is forced (SO_RCVBUFFORCE, root) past `rmem_max` so that the whole run
/// fits even if Python is descheduled for a while on a busy 2-core machine.
const UDP_ECHO: &str = r#"
import socket, sys
SO_RCVBUFFORCE = 33
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(4096)
    s.sendto(data, addr)
"#;

/// TCP server: one response per connection, then close.
const TCP_SERVER: &str = r#"
import selectors, socket, sys
sel = selectors.DefaultSelector()
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2])))
ls.listen(1024)
ls.setblocking(False)
sel.register(ls, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ls:
            try:
                c, _ = ls.accept()
            except BlockingIOError:
                continue
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if data:
            try:
                s.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except OSError:
                pass
        sel.unregister(s)
        s.close()
"#;

/// The two namespaces, the veth between them, and the responder; all
/// removed on drop (the responder first: field order is drop order).
struct Topology {
    responder: Option<Proc>,
    gen_ns: Netns,
    responder_ns: Netns,
    tmp: tempfile::TempDir,
}

impl Topology {
    fn new() -> Topology {
        let t = Topology {
            responder: None,
            gen_ns: Netns::new("gen"),
            responder_ns: Netns::new("responder"),
            tmp: tempfile::tempdir().expect("temporary directory"),
        };
        let (g, e) = (&t.gen_ns, &t.responder_ns);
        g.add_veth("pg0", e, "pe0");
        // The generator side has no addresses; keep its kernel quiet.
        g.sysctl("net.ipv6.conf.pg0.disable_ipv6", "1");
        g.ip(&["link", "set", "pg0", "up"]);
        e.ip(&["link", "set", "pe0", "up"]);
        e.ip(&["addr", "add", &format!("{RESPONDER_IP}/24"), "dev", "pe0"]);
        t
    }

    /// Start `script` (Python) in the responder namespace with the
    /// responder address and `port`; returns once it says "ready".
    fn start_responder(&mut self, script: &str, port: u16) {
        let mut cmd = self.responder_ns.cmd("python3");
        cmd.args(["-c", script, RESPONDER_IP, &port.to_string()]);
        let log = self.tmp.path().join("responder.log");
        self.responder = Some(Proc::spawn_ready(
            "the python3 responder",
            cmd,
            &log,
            "ready",
            Duration::from_secs(10),
        ));
    }

    /// Run lbpktgen in the generator namespace.
    fn lbpktgen(&self, args: &[&str]) -> Output {
        self.gen_ns
            .cmd(LBPKTGEN)
            .args(args)
            .output()
            .expect("run lbpktgen")
    }
}

/// The JSON summary of a successful run.
fn summary(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lbpktgen failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "summary is not JSON ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a count in {v}"))
}

#[test]
fn lbpktgen_counts_every_udp_packet_echoed_back_over_af_packet() {
    if !can_run("lbpktgen_counts_every_udp_packet_echoed_back_over_af_packet") {
        return;
    }
    let _serial = support::serial();
    let mut topo = Topology::new();
    topo.start_responder(UDP_ECHO, 9000);
    let run = |count: &str, rate: &str| {
        topo.lbpktgen(&[
            "--port",
            "af_packet:pg0",
            "--src-ip",
            "198.18.9.10",
            "--src-ips",
            "2",
            "--flows",
            "8",
            "--dst-ip",
            RESPONDER_IP,
            "--dst-port",
            "9000",
            "--size",
            "128",
            "--count",
            count,
            "--rate",
            rate,
            "--duration",
            "5",
            "--drain-ms",
            "2000",
            "--verify-checksums",
            "--json",
        ])
    };
    // Warm-up: the responder's kernel asks (ARP) for both source
    // addresses and lbpktgen answers; the measured run then does not
    // depend on how fast that happens.
    let warm = summary(&run("40", "2000"));
    assert_eq!(u(&warm, &["matched"]), 40, "{warm}");
    assert!(
        u(&warm["rx"][0], &["arp_replies"]) >= 1,
        "the kernel asked for the second source address: {warm}"
    );

    let out = run("2000", "20000");
    let s = summary(&out);
    assert_eq!(s["mode"], "udp");
    assert_eq!(u(&s, &["tx", "packets"]), 2000);
    assert_eq!(u(&s, &["tx", "bytes"]), 2000 * 128);
    assert_eq!(u(&s, &["tx", "unsent"]), 0);
    let rx = &s["rx"][0];
    assert_eq!(rx["port"], "af_packet:pg0");
    assert_eq!(u(rx, &["matched"]), 2000, "every packet came back: {s}");
    assert_eq!(u(rx, &["duplicates"]), 0);
    assert_eq!(
        u(rx, &["bad_checksums"]),
        0,
        "the kernel's echo checksums verify"
    );
    assert!(u(rx, &["packets"]) >= 2000);
    assert_eq!(
        u(rx, &["packets"]),
        2000 + u(rx, &["foreign"]),
        "everything else is foreign"
    );
    assert_eq!((u(&s, &["matched"]), u(&s, &["lost"])), (2000, 0));
    assert_eq!(s["loss_pct"].as_f64(), Some(0.0));
    // 2000 packets at 20 kpps take about 0.1 s.
    let secs = s["tx"]["seconds"].as_f64().expect("seconds");
    assert!((0.09..1.0).contains(&secs), "sent in {secs} s");
    let lat = &s["latency_ns"];
    assert_eq!(u(lat, &["samples"]), 2000);
    let (p50, p99, max) = (u(lat, &["p50"]), u(lat, &["p99"]), u(lat, &["max"]));
    assert!(u(lat, &["min"]) > 0 && p50 <= p99 && p99 <= max, "{lat}");
    assert!(max < 2_000_000_000, "latency {max} ns is not plausible");
    assert!(s["tcp"].is_null());
}

#[test]
fn lbpktgen_completes_tcp_handshakes_with_the_kernel() {
    if !can_run("lbpktgen_completes_tcp_handshakes_with_the_kernel") {
        return;
    }
    let _serial = support::serial();
    let mut topo = Topology::new();
    topo.start_responder(TCP_SERVER, 8080);
    let out = topo.lbpktgen(&[
        "--port",
        "af_packet:pg0",
        "--src-ip",
        "198.18.9.10",
        "--src-ips",
        "2",
        "--flows",
        "1000",
        "--dst-ip",
        RESPONDER_IP,
        "--dst-port",
        "8080",
        "--tcp-handshake",
        "--concurrency",
        "32",
        "--count",
        "300",
        "--rate",
        "1000",
        "--duration",
        "5",
        "--conn-timeout-ms",
        "3000",
        "--json",
    ]);
    let s = summary(&out);
    assert_eq!(s["mode"], "tcp-handshake");
    let tcp = &s["tcp"];
    assert_eq!(u(tcp, &["opened"]), 300);
    assert_eq!(u(tcp, &["handshakes"]), 300, "{tcp}");
    assert_eq!(u(tcp, &["requests"]), 300);
    assert_eq!(u(tcp, &["responses"]), 300, "{tcp}");
    assert_eq!(u(tcp, &["completed"]), 300);
    assert_eq!(
        u(tcp, &["timeouts"]) + u(tcp, &["refused"]) + u(tcp, &["reset"]),
        0
    );
    assert_eq!(u(tcp, &["open_at_end"]), 0);
    // SYN, ACK+request and RST per connection.
    assert_eq!(u(&s, &["tx", "packets"]), 900);
    assert_eq!(u(&tcp["handshake_latency_ns"], &["samples"]), 300);
    assert!(tcp["handshakes_per_sec"].as_f64().expect("rate") > 100.0);
    assert!(s["matched"].is_null() && s["latency_ns"].is_null());

    // Orderly close: FIN, the server's FIN, our last ACK (other client
    // ports, so no endpoint of the first run is reused).
    let out = topo.lbpktgen(&[
        "--port",
        "af_packet:pg0",
        "--src-ip",
        "198.18.9.10",
        "--src-ips",
        "2",
        "--src-port",
        "20000",
        "--flows",
        "1000",
        "--dst-ip",
        RESPONDER_IP,
        "--dst-port",
        "8080",
        "--tcp-handshake",
        "--close",
        "fin",
        "--concurrency",
        "32",
        "--count",
        "100",
        "--rate",
        "1000",
        "--duration",
        "5",
        "--conn-timeout-ms",
        "3000",
        "--json",
    ]);
    let s = summary(&out);
    let tcp = &s["tcp"];
    assert_eq!(u(tcp, &["completed"]), 100, "{tcp}");
    assert_eq!(u(tcp, &["responses"]), 100);
    assert_eq!(u(tcp, &["timeouts"]) + u(tcp, &["reset"]), 0, "{tcp}");
    assert_eq!(
        u(tcp, &["open_at_end"]),
        0,
        "every server FIN was acknowledged"
    );
    // SYN, ACK+request, FIN and the last ACK per connection.
    assert_eq!(u(&s, &["tx", "packets"]), 400);
}

#[test]
fn lbpktgen_refuses_to_run_unbounded() {
    let out = Command::new(LBPKTGEN)
        .args(["--port", "af_packet:lo", "--dst-ip", "127.0.0.1"])
        .output()
        .expect("run lbpktgen");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--count or --duration"), "{err}");
    let out = Command::new(LBPKTGEN)
        .args([
            "--port",
            "af_packet:lo",
            "--dst-ip",
            "127.0.0.1",
            "--duration",
            "301",
        ])
        .output()
        .expect("run lbpktgen");
    assert!(!out.status.success(), "the duration is capped at 300 s");
}
