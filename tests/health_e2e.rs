//! Health checks end to end (issue 12, reference §5.3 H1–H5): lbd on
//! AF_PACKET with kernel interfaces (`kext`, `kint`: the checks leave from
//! the director's own address 192.168.10.254 through the kernel path),
//! REAL nginx on two real servers, a NAT service whose real servers carry
//! keepalived's test timers (`delay_loop 1`, `connect_timeout 1`, `retry
//! 1`, `delay_before_retry 1`: L = C = R = B = 1), a bounded curl loop from
//! the client.
//!
//! One topology serves every scenario in turn (namespaces are the costly
//! part), each with its own VIP port:
//! * :80  TCP_CHECK — H1: stop nginx on rs1 → rs1 leaves `lbctl -Ln`
//!   within R·B … L+R·B and afterwards every answer comes from rs2, client
//!   errors only inside that window; H2: start nginx → rs1 back within L
//!   (+ one check); H3: black-hole rs1 with an nft drop → down within
//!   L+(R+1)·C+R·B.
//! * :81  HTTP_GET `status_code 200` on `/unavailable` (nginx answers 503)
//!   for rs1 → rs1 is removed; rs2 (path `/`) stays (H5).
//! * :82  the same with `inhibit_on_failure` → rs1 stays at weight 0 (H4).
//! * :83  HTTP_GET with `digest` of rs2's page → rs1 (another page) is
//!   removed (H5).
//!
//! * A second topology (`inhibit_on_failure_*`): MISC_CHECK scripts that
//!   fail while a flag file exists, with `inhibit_on_failure` — a running
//!   download from the failed server completes while new connections avoid
//!   it (H4, H6's exit 1).
//!
//! * A third (`quorum_*`, H8): `quorum 2` with rs3 as `sorry_server`: stop
//!   nginx on rs1 and rs2 → rs3 answers and `quorum_down` ran; start them →
//!   rs1 and rs2 answer again and `quorum_up` ran.
//!
//! Measured detection times are printed (`--nocapture`) for the report.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use rvs::ctl::protocol::Response;
use support::client_loop::*;
use support::lbd::lbctl_json;
use support::process::{poll_until, Proc};
use support::topology::*;
use support::world::*;

const TOOLS: [&str; 7] = ["ip", "nginx", "curl", "python3", "ethtool", "sysctl", "nft"];

/// L, C, R·B of the test timers.
const L: f64 = 1.0;
const C: f64 = 1.0;
const R: f64 = 1.0;
const B: f64 = 1.0;
/// Allowed lateness over keepalived's bound on this shared 2-core machine
/// (RTTs, the snapshot publish, the 50 ms polling of `lbctl`).
const SLACK: f64 = 0.5;

fn services() -> String {
    let timers = "delay_loop: 1, connect_timeout: 1, retry: 1, delay_before_retry: 1";
    let mut y = String::from("services:\n");
    // :80 TCP_CHECK.
    y.push_str(&format!(
        "  - {{proto: tcp, vip: {VIP_NAT}, port: 80, scheduler: rr, {timers}, dests: [\n"
    ));
    for i in 0..2 {
        y.push_str(&format!(
            "      {{addr: {}, port: 80, fwd: masq, checks: [{{TCP_CHECK: {{}}}}]}},\n",
            rip(i)
        ));
    }
    y.push_str("    ]}\n");
    // :81 and :82 HTTP_GET, rs1 on the 503 page; :82 with inhibit_on_failure.
    for (port, inhibit) in [(81, false), (82, true)] {
        y.push_str(&format!(
            "  - {{proto: tcp, vip: {VIP_NAT}, port: {port}, scheduler: rr, {timers}, inhibit_on_failure: {inhibit}, dests: [\n"
        ));
        for (i, path) in [(0, "/unavailable"), (1, "/")] {
            y.push_str(&format!(
                "      {{addr: {}, port: 80, fwd: masq, checks: [{{HTTP_GET: {{url: [{{path: \"{path}\", status_code: [200]}}]}}}}]}},\n",
                rip(i)
            ));
        }
        y.push_str("    ]}\n");
    }
    // :83 HTTP_GET with the digest of rs2's page ("rs2\n"): rs1's differs.
    y.push_str(&format!(
        "  - {{proto: tcp, vip: {VIP_NAT}, port: 83, scheduler: rr, {timers}, dests: [\n"
    ));
    for i in 0..2 {
        y.push_str(&format!(
            "      {{addr: {}, port: 80, fwd: masq, checks: [{{HTTP_GET: {{url: [{{path: /, digest: {RS2_MD5}}}]}}}}]}},\n",
            rip(i)
        ));
    }
    y.push_str("    ]}\n");
    y
}

/// MD5 of rs2's index page, `rs2\n` (`md5sum`).
const RS2_MD5: &str = "f1743bfe5e2cd7630e74f90e32d8f651";

fn topology() -> Topology {
    let mut t = Topology::build(Options {
        kernel_ifs: Some(("kext", "kint")),
        tables: Some(services()),
        ..Options::new(Driver::AfPacket)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    t
}

/// The real servers of `VIP_NAT:port` in `lbctl -Ln`, with their weights.
fn listed(t: &Topology, port: u16) -> Vec<(String, u32)> {
    t.listed(None, port)
}

fn has_rs1(t: &Topology, port: u16) -> bool {
    listed(t, port).iter().any(|(a, _)| *a == rip(0))
}

fn nginx_conf(t: &Topology, i: usize) -> String {
    t.path(&rs_name(i)).join("nginx.conf").display().to_string()
}

#[test]
fn health_checks_take_failed_real_servers_out_and_back_with_keepalived_timing() {
    if !support::needs_root(
        "health_checks_take_failed_real_servers_out_and_back_with_keepalived_timing",
        &TOOLS,
    ) {
        return;
    }
    let _serial = support::serial();
    let t = topology();
    let url = format!("http://{VIP_NAT}/");
    // Both answer (the checks passed, or have not run: in the pool).
    let names = t.fetch_names(&url, 4);
    assert_eq!(tally(&names).len(), 2, "{names:?}");
    // --- H5/H4: the 503 page takes rs1 out of :81, to weight 0 in :82.
    let since = Instant::now();
    let out = seconds_until(6.0, since, || !has_rs1(&t, 81));
    println!("HTTP_GET 503: rs1 removed from :81 after {out:?} s");
    assert!(out.is_some(), "rs1 still in :81: {:?}", listed(&t, 81));
    assert_eq!(listed(&t, 81), vec![(rip(1), 1)]);
    let inhibited = seconds_until(6.0, since, || listed(&t, 82).contains(&(rip(0), 0)));
    assert!(
        inhibited.is_some(),
        "rs1 not at weight 0 in :82: {:?}",
        listed(&t, 82)
    );
    assert_eq!(listed(&t, 82), vec![(rip(0), 0), (rip(1), 1)]);
    let ln = t.lbctl(&["-Ln"]);
    println!("{ln}");
    let health = t.lbctl(&["--health"]);
    println!("{health}");
    assert!(
        health.lines().any(|l| l.contains(&format!("{}:80", rip(0)))
            && l.contains("DOWN")
            && l.contains("status 503")),
        "{health}"
    );
    let digest = seconds_until(4.0, since, || listed(&t, 83) == vec![(rip(1), 1)]);
    assert!(
        digest.is_some(),
        "digest mismatch kept rs1 in :83: {:?}",
        listed(&t, 83)
    );
    // The checks came from the director's own address (through kint).
    let from_dip = format!("{DIP_INT} {} /unavailable 503", rip(0));
    assert!(
        t.access_log(0).iter().any(|l| l.starts_with(&from_dip)),
        "no check from {DIP_INT} in rs1's log: {:?}",
        t.access_log(0)
    );
    // Only rs2 answers on :81.
    let names = t.fetch_names(&format!("http://{VIP_NAT}:81/"), 4);
    assert!(names.iter().all(|n| n == "rs2"), "{names:?}");
    assert!(has_rs1(&t, 80), "TCP_CHECK keeps rs1 in :80");

    // --- H1: stop nginx on rs1.
    let client = ClientLoop::start(&t.cli.name, &url);
    thread::sleep(Duration::from_millis(500));
    let t0 = client.now();
    let stopped_at = Instant::now();
    t.rs[0].sh(&format!("nginx -c {} -s stop", nginx_conf(&t, 0)));
    let down = seconds_until(L + R * B + 3.0, stopped_at, || !has_rs1(&t, 80));
    let down = down.unwrap_or_else(|| panic!("rs1 never left :80: {:?}", listed(&t, 80)));
    let t_down = t0 + down;
    println!(
        "H1 nginx stopped: rs1 removed after {down:.2} s (keepalived: {:.0}…{:.0} s)",
        R * B,
        L + R * B
    );
    thread::sleep(Duration::from_secs(2));
    // --- H2: start nginx again.
    let started_at = Instant::now();
    let t_start = client.now();
    let mut cmd = t.rs[0].cmd("nginx");
    cmd.arg("-c").arg(nginx_conf(&t, 0));
    let _nginx = Proc::spawn("nginx rs1 (restarted)", cmd, &t.path("rs1-nginx-again.out"));
    let up = seconds_until(L + 3.0, started_at, || has_rs1(&t, 80));
    let up = up.unwrap_or_else(|| panic!("rs1 never came back: {:?}", listed(&t, 80)));
    println!("H2 nginx started: rs1 back after {up:.2} s (keepalived: ≤ {L:.0} s + one check)");
    thread::sleep(Duration::from_secs(1));
    let answers = client.finish();
    assert!(down >= R * B - 0.1, "removed after {down:.2} s: before R·B");
    assert!(
        down <= L + R * B + SLACK,
        "removed after {down:.2} s: after L+R·B"
    );
    assert!(up <= L + 1.0 + SLACK, "back after {up:.2} s");
    // A timed-out request's connection entry, if any (diagnosis).
    let conns = t.lbctl(&["-Lnc"]);
    for (.., port, a) in answers.iter().filter(|(.., a)| *a == Err(28)) {
        let entry: Vec<&str> = conns
            .lines()
            .filter(|l| l.contains(&format!(":{port} ")))
            .collect();
        println!("timed out from port {port}: {a:?} {entry:?}");
    }
    let window = Window {
        stop: t0,
        down: t_down,
        start: t_start,
        back: t_start + up,
    };
    assert_answers_follow("H1/H2", &answers, window, "rs2", "rs1");

    // --- H3: black-hole rs1 (its kernel drops the health checks' SYNs).
    t.black_hole_http(0, true);
    let holed_at = Instant::now();
    let bound = L + (R + 1.0) * C + R * B;
    let gone = seconds_until(bound + 3.0, holed_at, || !has_rs1(&t, 80));
    t.black_hole_http(0, false);
    let gone = gone.unwrap_or_else(|| panic!("black-holed rs1 never left: {:?}", listed(&t, 80)));
    println!("H3 black hole: rs1 removed after {gone:.2} s (keepalived: ≤ {bound:.0} s)");
    assert!(
        gone <= bound + SLACK,
        "removed after {gone:.2} s, bound {bound} s"
    );
    let back = seconds_until(L + C + 3.0, Instant::now(), || has_rs1(&t, 80));
    assert!(back.is_some(), "rs1 did not come back after the black hole");
    println!("{}", t.lbctl(&["--health"]));
    // lbd stops within its 2 s budget with the checker running.
    let mut t = t;
    let stopping = Instant::now();
    t.stop_lbd_cleanly();
    let took = stopping.elapsed();
    println!("lbd stopped {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(2), "lbd took {took:?} to stop");
}

#[test]
fn inhibit_on_failure_keeps_a_running_download_while_new_connections_avoid_the_failed_server() {
    if !support::needs_root(
        "inhibit_on_failure_keeps_a_running_download_while_new_connections_avoid_the_failed_server",
        &TOOLS,
    ) {
        return;
    }
    let _serial = support::serial();
    let flags = tempfile::tempdir().expect("flag directory");
    let flag = |i: usize| flags.path().join(format!("{}.down", rs_name(i)));
    let mut y = format!(
        "services:\n  - {{proto: tcp, vip: {VIP_NAT}, port: 80, scheduler: rr, \
         delay_loop: 0.5, inhibit_on_failure: true, dests: [\n"
    );
    for i in 0..2 {
        y.push_str(&format!(
            "      {{addr: {}, port: 80, fwd: masq, checks: [{{MISC_CHECK: {{misc_path: \"/bin/sh -c 'test ! -e {}'\"}}}}]}},\n",
            rip(i),
            flag(i).display()
        ));
    }
    y.push_str("    ]}\n");
    let mut t = Topology::build(Options {
        kernel_ifs: Some(("kext", "kint")),
        tables: Some(y),
        ..Options::new(Driver::AfPacket)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    // Both checked and up.
    let both_ok = seconds_until(5.0, Instant::now(), || {
        let Response::Health { servers } = lbctl_json(&t.socket, &["--health"]) else {
            return false;
        };
        servers.len() == 2
            && servers
                .iter()
                .all(|s| s.alive && s.checkers[0].last_ok == Some(true))
    });
    assert!(both_ok.is_some(), "{}", t.lbctl(&["--health"]));
    // A slow download (512 KiB at 128 KiB/s), then its server fails.
    let mut slow = t.start_slow_download(&format!("http://{VIP_NAT}/slow/big.bin"), "inhibit");
    let conn = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        t.conns()
            .into_iter()
            .find(|c| c.state == "ESTABLISHED" && c.vaddr.port() == 80)
    })
    .expect("the download's connection");
    let busy = (0..2)
        .find(|&i| conn.daddr.ip().to_string() == rip(i))
        .expect("a real server");
    std::fs::write(flag(busy), b"").expect("flag");
    let failed_at = Instant::now();
    let zero = seconds_until(4.0, failed_at, || listed(&t, 80).contains(&(rip(busy), 0)));
    let zero =
        zero.unwrap_or_else(|| panic!("{} not at weight 0: {:?}", rs_name(busy), listed(&t, 80)));
    println!("MISC_CHECK exit 1 with inhibit_on_failure: weight 0 after {zero:.2} s");
    // New connections avoid it; the download goes on to the end.
    let names = t.fetch_names(&format!("http://{VIP_NAT}/"), 6);
    assert!(names.iter().all(|n| *n != rs_name(busy)), "{names:?}");
    let status = slow.wait_for(Duration::from_secs(15));
    assert!(status.success(), "download: {}", slow.log_text());
    assert_eq!(slow.log_text().trim(), format!("200 {BIG_LEN}"));
    // The flag goes: back at its weight.
    std::fs::remove_file(flag(busy)).expect("unflag");
    let back = seconds_until(3.0, Instant::now(), || {
        listed(&t, 80).contains(&(rip(busy), 1))
    });
    assert!(back.is_some(), "{:?}", listed(&t, 80));
    t.stop_lbd_cleanly();
}

#[test]
fn quorum_lost_hands_the_service_to_the_sorry_server_and_back() {
    if !support::needs_root(
        "quorum_lost_hands_the_service_to_the_sorry_server_and_back",
        &TOOLS,
    ) {
        return;
    }
    let _serial = support::serial();
    let scripts = tempfile::tempdir().expect("script directory");
    let log = scripts.path().join("quorum.log");
    let timers = "delay_loop: 1, connect_timeout: 1, retry: 1, delay_before_retry: 1";
    let mut y = format!(
        "services:\n  - {{proto: tcp, vip: {VIP_NAT}, port: 80, scheduler: rr, {timers}, quorum: 2, \
         sorry_server: {{addr: {}, port: 80, fwd: masq}}, \
         quorum_up: \"/bin/sh -c 'echo up >> {1}'\", quorum_down: \"/bin/sh -c 'echo down >> {1}'\", dests: [\n",
        rip(2),
        log.display()
    );
    for i in 0..2 {
        y.push_str(&format!(
            "      {{addr: {}, port: 80, fwd: masq, checks: [{{TCP_CHECK: {{}}}}]}},\n",
            rip(i)
        ));
    }
    y.push_str("    ]}\n");
    let mut t = Topology::build(Options {
        kernel_ifs: Some(("kext", "kint")),
        tables: Some(y),
        real_servers: 3,
        ..Options::new(Driver::AfPacket)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    let url = format!("http://{VIP_NAT}/");
    let names = t.fetch_names(&url, 4);
    assert_eq!(tally(&names).keys().collect::<Vec<_>>(), ["rs1", "rs2"]);
    for i in 0..2 {
        t.rs[i].sh(&format!("nginx -c {} -s stop", nginx_conf(&t, i)));
    }
    let lost = seconds_until(L + R * B + 3.0, Instant::now(), || {
        listed(&t, 80) == vec![(rip(2), 1)]
    });
    assert!(
        lost.is_some(),
        "the sorry server did not take over: {:?}",
        listed(&t, 80)
    );
    println!(
        "quorum lost: sorry server in after {:.2} s",
        lost.unwrap_or_default()
    );
    let names = t.fetch_names(&url, 3);
    assert!(names.iter().all(|n| n == "rs3"), "{names:?}");
    let ran = seconds_until(2.0, Instant::now(), || {
        std::fs::read_to_string(&log).unwrap_or_default() == "down\n"
    });
    assert!(
        ran.is_some(),
        "quorum_down: {:?}",
        std::fs::read_to_string(&log)
    );
    let mut restarted = Vec::new();
    for i in 0..2 {
        let mut cmd = t.rs[i].cmd("nginx");
        cmd.arg("-c").arg(nginx_conf(&t, i));
        let out = t.path(&format!("{}-nginx-again.out", rs_name(i)));
        restarted.push(Proc::spawn(
            &format!("nginx {} (restarted)", rs_name(i)),
            cmd,
            &out,
        ));
    }
    let gained = seconds_until(L + 3.0, Instant::now(), || listed(&t, 80).len() == 2);
    assert!(
        gained.is_some(),
        "the real servers did not come back: {:?}",
        listed(&t, 80)
    );
    let names = t.fetch_names(&url, 4);
    assert_eq!(tally(&names).keys().collect::<Vec<_>>(), ["rs1", "rs2"]);
    let ran = seconds_until(2.0, Instant::now(), || {
        std::fs::read_to_string(&log).unwrap_or_default() == "down\nup\n"
    });
    assert!(
        ran.is_some(),
        "quorum_up: {:?}",
        std::fs::read_to_string(&log)
    );
    t.stop_lbd_cleanly();
    drop(restarted);
}
