//! A director pair that loses nothing (issues #13/#14, reference §5.4 F1):
//! two real `lbd` directors on one segment run VRRP for the VIP and a
//! connection-sync daemon that follows the VRRP instance (keepalived's
//! `lvs_sync_daemon IF VI`). `d1` (priority 100) starts from YAML with
//! `sync: [{vrrp_instance: VI_1}]`; `d2` (priority 90) starts from a
//! keepalived.conf (`lbd --keepalived`) with `vrrp_instance`,
//! `virtual_server` and `global_defs { lvs_sync_daemon ext VI_1 }`, on
//! ports with a kernel interface — the full VRRP guide running as root.
//!
//! ```text
//!  cl 10.98.0.100 ─┐
//!  d1 p0 [lbd] kvr 10.98.0.11 ─┤ br0 (sw)
//!  d2 p0 [lbd] kvr 10.98.0.12 ─┤
//!  rs 10.98.0.21 (nginx; VIP on lo, DR) ─┘
//! ```
//!
//! Traffic through the master: `wrk -t1 -c20 --timeout 10s` (keep-alive)
//! plus 10 `curl --limit-rate` downloads of a 2 MB file; `d1` is killed
//! (SIGKILL) a few seconds in. With sync: no socket error, no non-2xx,
//! every download complete with the right size, and the longest stall
//! (wrk's maximum latency) within VRRP's takeover plus TCP's
//! retransmission backoff. The same run without sync breaks flows (the
//! proof that the test bites). Durations are shortened from the issue's
//! (wrk 14 s, kill at 5 s) to keep the file near a minute. DR only: the
//! one segment is DR's topology (NAT needs the real server routed through
//! the pair on a second segment).

mod support;

use std::time::{Duration, Instant};

use support::lbd::{lbctl, Lbd, LBD};
use support::netns::Netns;
use support::process::{poll_until, signal, Proc};
use support::vrrp::wait_vrrp_state;

const VIP: &str = "10.98.0.38";
const RIP: &str = "10.98.0.21";
/// Master_Down_Interval of the priority-90 backup.
const MDI_90: f64 = 3.0 + 166.0 / 256.0;
/// Skew_Time of the priority-90 backup (takeover after a priority-0 advert).
const SKEW_90: f64 = 166.0 / 256.0;
const BIG_LEN: usize = 2 * 1024 * 1024;
const DOWNLOADS: usize = 10;
/// Each download's rate (2 MB in about 10 s).
const RATE: &str = "200k";
const WRK_SECS: u64 = 14;
const KILL_AFTER: Duration = Duration::from_secs(5);
/// wrk's `--timeout`. Not the issue's 3 s: wrk counts every request slower
/// than its timeout as a "timeout" socket error even when it completes
/// (`stats_record` refuses the latency), and VRRP's takeover alone is
/// 3.65 s, so with 3 s each request in flight at the kill counts as an
/// error while its connection survives (measured: 20 of 20). With 10 s
/// a surviving request is recorded, and wrk's maximum latency is the stall.
const WRK_TIMEOUT_S: u64 = 10;

struct World {
    _sw: Netns,
    cl: Netns,
    d1: Netns,
    d2: Netns,
    rs: Netns,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let sw = Netns::new("haf-sw");
        let cl = Netns::ipv4_host("haf-cl");
        let d1 = Netns::ipv4_host("haf-d1");
        let d2 = Netns::ipv4_host("haf-d2");
        let rs = Netns::ipv4_host("haf-rs");
        sw.ip(&["link", "add", "br0", "type", "bridge"]);
        sw.ip(&["link", "set", "br0", "up"]);
        for (port, ns, ifname) in [
            ("s-cl", &cl, "eth0"),
            ("s-d1", &d1, "p0"),
            ("s-d2", &d2, "p0"),
            ("s-rs", &rs, "eth0"),
        ] {
            sw.add_veth(port, ns, ifname);
            sw.ip(&["link", "set", port, "master", "br0"]);
            sw.ip(&["link", "set", port, "up"]);
            ns.ip(&["link", "set", ifname, "up"]);
        }
        cl.ip(&["addr", "add", "10.98.0.100/24", "dev", "eth0"]);
        // A small receive buffer keeps each download on the wire for its
        // whole length (else the server pushes the 2 MB into the client's
        // socket at once and curl's rate limit only drains it locally).
        cl.sh("sysctl -qw net.ipv4.tcp_rmem=\"4096 32768 65536\"");
        rs.ip(&["addr", "add", &format!("{RIP}/24"), "dev", "eth0"]);
        rs.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        rs.sh(
            "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
             sysctl -qw net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2",
        );
        World {
            _sw: sw,
            cl,
            d1,
            d2,
            rs,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn start_nginx(&self) -> Proc {
        let d = self.path("rs");
        std::fs::create_dir_all(d.join("www")).expect("www");
        std::fs::create_dir_all(d.join("tmp")).expect("tmp");
        std::fs::write(d.join("www/index.html"), "rs1\n").expect("index");
        std::fs::write(d.join("www/big"), vec![b'x'; BIG_LEN]).expect("big");
        let dd = d.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {dd}/nginx.pid;\n\
             error_log {dd}/error.log warn;\nevents {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_body_temp_path {dd}/tmp;\n\
             server {{ listen 80; root {dd}/www; }}\n}}\n"
        );
        std::fs::write(d.join("nginx.conf"), conf).expect("nginx.conf");
        let mut cmd = self.rs.cmd("nginx");
        cmd.arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"));
        Proc::spawn("nginx rs", cmd, &self.path("nginx.out"))
    }

    fn ports_yaml(addr: &str) -> String {
        format!(
            "workers: {{count: 1, idle: backoff}}\n\
             ports:\n\
             \x20 - {{name: ext, driver: af_packet, ifname: p0, addrs: [\"{addr}/24\"], kernel_if: kvr}}\n"
        )
    }

    /// `d1` from YAML: MASTER 100, its sync daemon following VI_1.
    fn start_d1(&self, sync: bool) -> Lbd {
        let socket = self.path("d1.sock");
        let sync_line = if sync {
            "sync: [{interface: kvr, syncid: 51, vrrp_instance: VI_1}]\n"
        } else {
            ""
        };
        let yaml = format!(
            "socket: {}\n{}\
             services:\n\
             \x20 - {{proto: tcp, vip: {VIP}, port: 80, scheduler: rr, dests: [{{addr: {RIP}, port: 80, fwd: route}}]}}\n\
             vrrp:\n\
             \x20 instances:\n\
             \x20   - {{name: VI_1, interface: ext, virtual_router_id: 51, priority: 100, advert_int: 1, \
             authentication: {{auth_type: PASS, auth_pass: \"1111\"}}, virtual_ipaddress: [{VIP}]}}\n\
             {sync_line}",
            socket.display(),
            World::ports_yaml("10.98.0.11"),
        );
        let conf = self.path("d1.yaml");
        std::fs::write(&conf, yaml).expect("config");
        let mut cmd = self.d1.cmd(LBD);
        cmd.arg("--config").arg(&conf);
        Lbd::start("d1", cmd, &socket, &self.path("d1.log"))
    }

    /// `d2` from keepalived.conf: BACKUP 90, `lvs_sync_daemon ext VI_1`.
    fn start_d2(&self, sync: bool) -> Lbd {
        let socket = self.path("d2.sock");
        let ports = self.path("d2-ports.yaml");
        std::fs::write(&ports, World::ports_yaml("10.98.0.12")).expect("ports");
        let global = if sync {
            "global_defs {\n    router_id LVS_BACKUP\n    lvs_sync_daemon ext VI_1\n}\n"
        } else {
            "global_defs {\n    router_id LVS_BACKUP\n}\n"
        };
        let conf = format!(
            "{global}\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface ext\n    virtual_router_id 51\n    priority 90\n    advert_int 1\n\
             \x20   authentication {{\n        auth_type PASS\n        auth_pass 1111\n    }}\n\
             \x20   virtual_ipaddress {{\n        {VIP}\n    }}\n}}\n\
             virtual_server {VIP} 80 {{\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n\
             \x20   real_server {RIP} 80 {{\n        weight 1\n    }}\n}}\n"
        );
        let file = self.path("keepalived.conf");
        std::fs::write(&file, conf).expect("keepalived.conf");
        let mut cmd = self.d2.cmd(LBD);
        cmd.arg("--keepalived")
            .arg(&file)
            .arg("-c")
            .arg(&ports)
            .arg("--socket")
            .arg(&socket);
        Lbd::start("d2", cmd, &socket, &self.path("d2.log"))
    }
}

/// What one run saw.
struct Outcome {
    wrk: String,
    requests: u64,
    socket_errors: u64,
    non_2xx: u64,
    /// wrk's longest request (s): the longest stall a client saw.
    max_latency: f64,
    /// Bytes of each download, and whether curl exited 0.
    downloads: Vec<(usize, bool)>,
}

/// A wrk latency like `1.23s`, `456.78ms`, `12.00us`.
fn seconds(text: &str) -> f64 {
    let (num, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| text.split_at(i))
        .unwrap_or((text, "s"));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "m" => n * 60.0,
        _ => n,
    }
}

fn parse_wrk(wrk: &str) -> (u64, u64, u64, f64) {
    let num = |s: &str| s.trim_end_matches(',').parse::<u64>().unwrap_or(0);
    let mut out = (0, 0, 0, f64::NAN);
    for line in wrk.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["Latency", _avg, _stdev, max, ..] => out.3 = seconds(max),
            [n, "requests", "in", ..] => out.0 = num(n),
            ["Socket", "errors:", rest @ ..] => {
                out.1 = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum()
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => out.2 = num(n),
            _ => {}
        }
    }
    out
}

/// How the master goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// SIGKILL: the backup takes over after Master_Down_Interval.
    Kill,
    /// SIGTERM: priority-0 advert, the backup takes over after Skew_Time.
    Stop,
}

/// Starts the pair, runs the traffic through the master, then the master
/// goes (`how`).
fn run(sync: bool, how: Failure) -> Outcome {
    let w = World::new();
    let _nginx = w.start_nginx();
    let d1 = w.start_d1(sync);
    let d2 = w.start_d2(sync);
    wait_vrrp_state(&d1, "MASTER", Duration::from_secs(8));
    wait_vrrp_state(&d2, "BACKUP", Duration::from_secs(2));
    if sync {
        // The sync daemons follow the instance (lbctl -L --daemon).
        let listed = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
            let a = lbctl(d1.socket(), &["-L", "--daemon"]);
            let b = lbctl(d2.socket(), &["-L", "--daemon"]);
            (a.contains("master sync daemon (mcast=kvr, syncid=51")
                && b.contains("backup sync daemon (mcast=kvr, syncid=51"))
            .then_some(())
        });
        assert!(
            listed.is_some(),
            "d1: {}\nd2: {}",
            lbctl(d1.socket(), &["-L", "--daemon"]),
            lbctl(d2.socket(), &["-L", "--daemon"])
        );
    }
    let url = format!("http://{VIP}/");
    let served = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let o = w.cl.output("curl", &["-s", "-m", "1", &url]);
        (o.status.success() && o.stdout == b"rs1\n").then_some(())
    });
    assert!(served.is_some(), "the VIP is not served through d1");

    let mut downloads: Vec<(Proc, std::path::PathBuf)> = (0..DOWNLOADS)
        .map(|i| {
            let file = w.path(&format!("big-{i}"));
            let mut cmd = w.cl.cmd("curl");
            cmd.args(["-s", "-S", "--limit-rate", RATE, "-m", "25", "-o"])
                .arg(&file)
                .arg(format!("{url}big"));
            (
                Proc::spawn("curl", cmd, &w.path(&format!("curl-{i}.log"))),
                file,
            )
        })
        .collect();
    let mut wrk_cmd = w.cl.cmd("wrk");
    wrk_cmd.args([
        "-t1",
        "-c20",
        &format!("-d{WRK_SECS}s"),
        "--timeout",
        &format!("{WRK_TIMEOUT_S}s"),
        &url,
    ]);
    let mut wrk = Proc::spawn("wrk", wrk_cmd, &w.path("wrk.log"));
    let start = Instant::now();
    std::thread::sleep(KILL_AFTER);
    let sig = match how {
        Failure::Kill => libc::SIGKILL,
        Failure::Stop => libc::SIGTERM,
    };
    signal(d1.pid() as i32, sig);
    let killed = start.elapsed();
    let took_over = poll_until(Duration::from_secs(6), Duration::from_millis(20), || {
        (support::vrrp::vrrp_state(&d2) == "MASTER").then_some(())
    });
    assert!(
        took_over.is_some(),
        "d2 did not take over:\n{}",
        d2.log_text()
    );
    if sync {
        let listed = poll_until(Duration::from_secs(2), Duration::from_millis(20), || {
            lbctl(d2.socket(), &["-L", "--daemon"])
                .contains("master sync daemon (mcast=kvr, syncid=51")
                .then_some(())
        });
        assert!(
            listed.is_some(),
            "d2's sync daemon did not follow MASTER: {}",
            lbctl(d2.socket(), &["-L", "--daemon"])
        );
    }
    wrk.wait_for(Duration::from_secs(WRK_SECS + 10));
    let outcome_downloads: Vec<(usize, bool)> = downloads
        .iter_mut()
        .map(|(p, file)| {
            let ok = p.wait_for(Duration::from_secs(30)).success();
            (std::fs::metadata(file).map_or(0, |m| m.len() as usize), ok)
        })
        .collect();
    let text = wrk.log_text();
    let (requests, socket_errors, non_2xx, max_latency) = parse_wrk(&text);
    println!(
        "HA_FAILOVER sync={sync} {how:?}: master gone at {:.1} s; {requests} requests, socket errors {socket_errors}, non-2xx {non_2xx}, longest stall {max_latency:.3} s\n{text}",
        killed.as_secs_f64()
    );
    println!("downloads (bytes, curl ok): {outcome_downloads:?}");
    println!("{}", lbctl(d2.socket(), &["-L", "--daemon", "--exact"]));
    drop(d1);
    d2.stop_cleanly();
    Outcome {
        wrk: text,
        requests,
        socket_errors,
        non_2xx,
        max_latency,
        downloads: outcome_downloads.clone(),
    }
}

#[test]
fn killing_the_master_of_a_synced_pair_loses_no_request_and_no_download_and_without_sync_it_does() {
    if !support::needs_root("ha_failover", &["ip", "nginx", "curl", "wrk"]) {
        return;
    }
    let _serial = support::serial();
    let with = run(true, Failure::Kill);
    assert!(with.requests > 0, "{}", with.wrk);
    assert_eq!(with.socket_errors, 0, "{}", with.wrk);
    assert_eq!(with.non_2xx, 0, "{}", with.wrk);
    for (i, (len, ok)) in with.downloads.iter().enumerate() {
        assert!(
            *ok && *len == BIG_LEN,
            "download {i}: {len} bytes, curl ok {ok}"
        );
    }
    // VRRP's takeover plus one retransmission timeout of the waiting
    // flows, backed off four times by then: 16 × their RTO (200 ms at
    // least, more with the RTT variance of this shared machine; measured
    // stalls 6.64-6.93 s).
    let bound = MDI_90 + 3.2 + 1.0;
    assert!(
        with.max_latency <= bound,
        "longest stall {:.3} s > {bound:.3} s",
        with.max_latency
    );

    // The requests in flight at the kill survived it: wrk recorded them
    // (a request whose connection died is never recorded).
    assert!(
        with.max_latency >= MDI_90 - 1.0,
        "no request waited through the takeover: {:.3} s",
        with.max_latency
    );

    let without = run(false, Failure::Kill);
    let broken = without
        .downloads
        .iter()
        .filter(|(len, ok)| !ok || *len != BIG_LEN)
        .count();
    println!(
        "HA_FAILOVER without sync: {} socket errors, {} non-2xx, {broken}/{DOWNLOADS} downloads broken, longest recorded request {:.3} s",
        without.socket_errors, without.non_2xx, without.max_latency
    );
    // Without sync the new master drops the flows' packets (no entry, not
    // a SYN): every download stalls and no request in flight at the kill
    // ever completes (wrk counts none of them as an error: they simply
    // never end, so its longest recorded request stays short).
    assert_eq!(broken, DOWNLOADS, "{:?}", without.downloads);
    assert!(
        without.max_latency < MDI_90,
        "a request survived the takeover without sync\n{}",
        without.wrk
    );
}

#[test]
fn stopping_the_master_of_a_synced_pair_cleanly_loses_nothing_and_stalls_less() {
    if !support::needs_root("ha_failover", &["ip", "nginx", "curl", "wrk"]) {
        return;
    }
    let _serial = support::serial();
    let out = run(true, Failure::Stop);
    assert!(out.requests > 0, "{}", out.wrk);
    assert_eq!(out.socket_errors, 0, "{}", out.wrk);
    assert_eq!(out.non_2xx, 0, "{}", out.wrk);
    for (i, (len, ok)) in out.downloads.iter().enumerate() {
        assert!(
            *ok && *len == BIG_LEN,
            "download {i}: {len} bytes, curl ok {ok}"
        );
    }
    // Skew_Time (0.648 s) after the priority-0 advert, plus the waiting
    // flows' retransmission (200 ms backed off to 0.8 s by then).
    let bound = SKEW_90 + 0.8 + 0.8;
    assert!(
        out.max_latency <= bound,
        "longest stall {:.3} s > {bound:.3} s",
        out.max_latency
    );
}
