//! The director's own IPv6 traffic through the kernel path (issue 11): lbd
//! on one AF_PACKET port (`p0` in `dir`, IPv6 off on it) facing a client
//! namespace over a veth, the port's IPv6 address (the DIP) on its kernel
//! interface `kv6`, real tools on both sides.
//!
//! * the client resolves the DIP by ND and pings it (the director's kernel
//!   answers, once: lbd's ingress drop keeps `p0`'s stack out);
//! * a TCP server bound to the DIP (python3's http.server) serves the
//!   client's curl through lbd;
//! * the director's kernel fetches a page from the client from the DIP,
//!   resolving the client's address by ND itself;
//! * the counters show both directions, and the kernel interface goes with
//!   lbd.

mod support;

use std::time::Duration;

use rvs::ctl::protocol::Response;
use support::lbd::{lbctl_json, Lbd, LBD};
use support::netns::Netns;
use support::process::{poll_until, Proc};

const DIP6: &str = "fd00:99::254";
const CIP6: &str = "fd00:99::2";

#[test]
fn af_packet_kernel_path_carries_the_directors_ipv6_nd_ping_and_tcp_both_ways() {
    let _serial = support::serial();
    if !support::needs_root(
        "af_packet_kernel_path_v6",
        &["ip", "curl", "python3", "ethtool", "sysctl", "ping", "nft"],
    ) {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("rvs-kpath6-")
        .tempdir()
        .expect("temporary directory");
    let path = |n: &str| tmp.path().join(n);
    let cli = Netns::new("cli6");
    let dir = Netns::new("dir6");
    dir.add_veth("p0", &cli, "e0");
    dir.sh("sysctl -qw net.ipv6.conf.p0.disable_ipv6=1
         ip link set p0 up
         ethtool -K p0 tso off gso off gro off >/dev/null");
    cli.sh(&format!(
        "ip addr add {CIP6}/64 dev e0 nodad
         ip link set e0 up
         ethtool -K e0 tso off gso off gro off >/dev/null"
    ));

    let socket = path("lbd.sock");
    let conf = path("lbd.yaml");
    std::fs::write(
        &conf,
        format!(
            "socket: {}\n\
             workers: {{count: 1, idle: backoff}}\n\
             ports:\n\
             \x20 - {{name: ext, driver: af_packet, ifname: p0, addrs: [\"{DIP6}/64\"], kernel_if: kv6}}\n",
            socket.display()
        ),
    )
    .expect("config");
    let mut cmd = dir.cmd(LBD);
    cmd.arg("--config").arg(&conf);
    let lbd = Lbd::start("lbd (IPv6 kernel path)", cmd, &socket, &path("lbd.log"));

    // The DIP on the kernel interface, past duplicate address detection.
    let addr = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let a = dir.sh("ip -6 -o addr show dev kv6");
        (a.contains(&format!("{DIP6}/64")) && !a.contains("tentative")).then_some(a)
    });
    assert!(
        addr.is_some(),
        "kv6 never held {DIP6}: {}",
        dir.sh("ip -6 addr")
    );

    // 1. ND and ping of the DIP from the client: one answer each.
    let ping = cli.sh(&format!("ping -6 -c 3 -i 0.2 -W 2 {DIP6}"));
    println!("{ping}");
    assert!(ping.contains("3 received"), "{ping}");
    assert!(!ping.contains("DUP!"), "{ping}");
    let neigh = cli.sh("ip -6 neigh show dev e0");
    assert!(neigh.contains(DIP6), "the client resolved the DIP: {neigh}");

    // 2. A TCP server on the DIP serves the client.
    let _server = serve(&dir, DIP6, 8000, "director-kernel-v6", &path("dipwww"));
    assert!(
        fetches(
            &cli,
            &[],
            &format!("http://[{DIP6}]:8000/index.html"),
            "director-kernel-v6"
        ),
        "the client cannot fetch from the DIP"
    );

    // 3. The director's kernel fetches from the client, from the DIP,
    // resolving the client by ND itself.
    let _cserver = serve(&cli, CIP6, 8001, "client-v6", &path("cwww"));
    assert!(
        fetches(
            &dir,
            &["--interface", DIP6],
            &format!("http://[{CIP6}]:8001/index.html"),
            "client-v6"
        ),
        "the director's kernel cannot fetch from the client"
    );
    let neigh = dir.sh("ip -6 neigh show dev kv6");
    assert!(
        neigh.contains(CIP6),
        "the kernel resolved the client: {neigh}"
    );

    let (up, down) = match lbctl_json(&socket, &["--dataplane-stats"]) {
        Response::DataplaneStats { workers } => workers
            .iter()
            .fold((0, 0), |(u, d), w| (u + w.to_kernel, d + w.from_kernel)),
        other => panic!("not dataplane stats: {other:?}"),
    };
    assert!(up >= 10 && down >= 10, "to_kernel {up}, from_kernel {down}");
    lbd.stop_cleanly();
    assert!(!dir.link_exists("kv6"), "kv6 goes with lbd");
}

/// python3's http.server in `ns` on `[addr]:port`, serving `body` as
/// `index.html` from `dir`.
fn serve(ns: &Netns, addr: &str, port: u16, body: &str, dir: &std::path::Path) -> Proc {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("index.html"), format!("{body}\n")).expect("page");
    let mut cmd = ns.cmd("python3");
    cmd.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        addr,
        "--directory",
    ])
    .arg(dir);
    Proc::spawn(
        &format!("http.server on [{addr}]:{port}"),
        cmd,
        &dir.with_extension("log"),
    )
}

/// Whether curl in `ns` (with `extra` arguments) gets `want` from `url`
/// within 10 s.
fn fetches(ns: &Netns, extra: &[&str], url: &str, want: &str) -> bool {
    poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let mut args = vec!["-s", "-g", "--max-time", "2"];
        args.extend_from_slice(extra);
        args.push(url);
        let out = ns.output("curl", &args);
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && body == want).then_some(())
    })
    .is_some()
}
