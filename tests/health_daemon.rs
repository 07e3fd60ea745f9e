//! The health checker inside a whole in-process `lbd` (mem ports, no root):
//! checks against real listeners on 127.0.0.x, verdicts seen in the
//! listings, `alpha`, `lbctl -d` stopping checks, `misc_dynamic` weights,
//! quorum with a sorry server and the notify/quorum scripts, and the stop
//! budget. Timers are short (delay_loop 0.2 s); every wait is bounded.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use rvs::ctl::config::Config;
use rvs::ctl::protocol::{HealthInfo, Request, Response};
use rvs::daemon::{Daemon, DaemonOptions};

/// A free TCP port on `ip` (bound, then released).
fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn listen(ip: &str, port: u16) -> TcpListener {
    TcpListener::bind((ip, port)).expect("listen")
}

const TIMERS: &str =
    "delay_loop: 0.2, connect_timeout: 0.5, retry: 1, delay_before_retry: 0.2, warmup: 0";

/// lbd's YAML: mem ports and one NAT service 10.0.0.100:80 whose fields
/// and real servers are `service` and `dests` (YAML flow items).
fn yaml(dir: &Path, service: &str, dests: &[String]) -> String {
    format!(
        "socket: {}\n\
         workers: {{ count: 1, idle: backoff }}\n\
         ports:\n\
         \x20 - {{ name: ext, driver: mem, addrs: [10.0.0.2/24] }}\n\
         \x20 - {{ name: int, driver: mem, addrs: [192.168.10.254/24] }}\n\
         services:\n\
         \x20 - {{ proto: tcp, vip: 10.0.0.100, port: 80, scheduler: wrr, {TIMERS}{service}, dests: [{}] }}\n",
        dir.join("lbd.sock").display(),
        dests.join(", ")
    )
}

/// Starts an in-process lbd on [`yaml`].
fn start(dir: &Path, service: &str, dests: &[String]) -> Daemon {
    let yaml = yaml(dir, service, dests);
    let config = Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Daemon::start(&config, DaemonOptions::default()).expect("lbd starts")
}

/// (address:port, weight) of the service's real servers as listed.
fn listed(d: &Daemon) -> Vec<(SocketAddr, u32)> {
    let Response::Services { services, .. } =
        d.control().handle(&Request::ListServices { service: None })
    else {
        panic!("not a listing");
    };
    services[0]
        .dests
        .iter()
        .map(|x| (SocketAddr::new(x.spec.addr, x.spec.port), x.spec.weight))
        .collect()
}

fn health(d: &Daemon) -> Vec<HealthInfo> {
    match d.control().handle(&Request::Health) {
        Response::Health { servers } => servers,
        other => panic!("not a health listing: {other:?}"),
    }
}

/// Waits (bounded) until `cond` holds; the time it took.
fn within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn rs(addr: &str, port: u16, extra: &str) -> String {
    format!("{{addr: {addr}, port: {port}, fwd: masq{extra}}}")
}

fn sock(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse().expect("ip"), port)
}

#[test]
fn refusing_server_is_removed_and_returns_when_it_listens_and_notify_scripts_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("notify.log");
    let (p1, p2) = (free_port("127.0.0.1"), free_port("127.0.0.2"));
    let _rs2 = listen("127.0.0.2", p2);
    let notify = format!(
        ", notify_up: \"/bin/sh -c 'echo up $# >> {0}'\", notify_down: \"/bin/sh -c 'echo down $# >> {0}'\"",
        log.display()
    );
    let d = start(
        dir.path(),
        "",
        &[
            rs(
                "127.0.0.1",
                p1,
                &format!(", checks: [{{TCP_CHECK: {{}}}}]{notify}"),
            ),
            rs("127.0.0.2", p2, ", checks: [{TCP_CHECK: {}}]"),
        ],
    );
    assert_eq!(listed(&d).len(), 2, "in the pool before the first check");
    within(Duration::from_secs(4), "refusing rs1 removed", || {
        listed(&d) == vec![(sock("127.0.0.2", p2), 1)]
    });
    let h = health(&d);
    let rs1 = h.iter().find(|s| s.port == p1).expect("rs1 listed");
    assert!(!rs1.alive);
    assert_eq!(rs1.checkers[0].reason, "connection refused");
    assert_eq!(rs1.checkers[0].last_ok, Some(false));
    let _rs1 = listen("127.0.0.1", p1);
    within(Duration::from_secs(2), "rs1 back", || listed(&d).len() == 2);
    within(Duration::from_secs(2), "notify scripts ran", || {
        std::fs::read_to_string(&log).unwrap_or_default() == "down 0\nup 0\n"
    });
    let stop = Instant::now();
    d.stop().expect("stops");
    assert!(
        stop.elapsed() < Duration::from_secs(2),
        "{:?}",
        stop.elapsed()
    );
}

#[test]
fn alpha_keeps_servers_out_until_their_first_success() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = free_port("127.0.0.3");
    let _l = listen("127.0.0.3", p);
    let d = start(
        dir.path(),
        ", alpha: true",
        &[rs("127.0.0.3", p, ", checks: [{TCP_CHECK: {}}]")],
    );
    assert!(listed(&d).is_empty(), "alpha: out before the first check");
    // The first check comes 1 s + random(0..warmup = 0) after start.
    let took = within(
        Duration::from_secs(3),
        "alpha server in after a success",
        || listed(&d).len() == 1,
    );
    assert!(took >= Duration::from_millis(700), "{took:?}");
    d.stop().expect("stops");
}

#[test]
fn deleting_a_checked_server_stops_its_checks_and_keeps_the_operator_s_weight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p1, p2) = (free_port("127.0.0.4"), free_port("127.0.0.5"));
    let _l2 = listen("127.0.0.5", p2);
    let d = start(
        dir.path(),
        "",
        &[
            rs("127.0.0.4", p1, ", checks: [{TCP_CHECK: {}}]"),
            rs("127.0.0.5", p2, ", checks: [{TCP_CHECK: {}}]"),
        ],
    );
    within(Duration::from_secs(4), "rs1 removed", || {
        listed(&d).len() == 1
    });
    // The operator edits the dead server's weight: kept for its return.
    let edit = rvs::ctl::ipvsadm::parse_args(&[
        "-e",
        "-t",
        "10.0.0.100:80",
        "-r",
        &format!("127.0.0.4:{p1}"),
        "-m",
        "-w",
        "5",
    ])
    .expect("-e parses");
    let rvs::ctl::ipvsadm::Command::Apply(edit) = edit else {
        panic!("not a request")
    };
    assert!(matches!(d.control().handle(&edit), Response::Ok { .. }));
    let _l1 = listen("127.0.0.4", p1);
    within(Duration::from_secs(2), "rs1 back with weight 5", || {
        listed(&d).contains(&(sock("127.0.0.4", p1), 5))
    });
    // -d of rs2: its checks stop, the live view drops it.
    let del = Request::DeleteDest {
        service: rvs::ctl::protocol::ServiceKey {
            proto: rvs::conntrack::Proto::Tcp,
            addr: "10.0.0.100".parse().expect("ip"),
            port: 80,
        },
        addr: "127.0.0.5".parse().expect("ip"),
        port: p2,
    };
    assert!(matches!(d.control().handle(&del), Response::Ok { .. }));
    within(Duration::from_secs(2), "rs2 no longer checked", || {
        health(&d).iter().all(|s| s.port != p2)
    });
    d.stop().expect("stops");
}

#[test]
fn misc_dynamic_exit_12_sets_weight_10() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(
        dir.path(),
        "",
        &[rs(
            "127.0.0.6",
            80,
            ", weight: 3, checks: [{MISC_CHECK: {misc_path: \"/bin/sh -c 'exit 12'\", misc_dynamic: true}}]",
        )],
    );
    within(Duration::from_secs(3), "weight 10", || {
        listed(&d) == vec![(sock("127.0.0.6", 80), 10)]
    });
    d.stop().expect("stops");
}

#[test]
fn lost_quorum_puts_the_sorry_server_in_and_runs_quorum_scripts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("quorum.log");
    let (p1, p2) = (free_port("127.0.0.7"), free_port("127.0.0.8"));
    let service = format!(
        ", quorum: 2, sorry_server: {{addr: 127.0.0.9, port: 8080, fwd: masq}}, \
         quorum_up: \"/bin/sh -c 'echo up >> {0}'\", quorum_down: \"/bin/sh -c 'echo down >> {0}'\"",
        log.display()
    );
    let d = start(
        dir.path(),
        &service,
        &[
            rs("127.0.0.7", p1, ", checks: [{TCP_CHECK: {}}]"),
            rs("127.0.0.8", p2, ", checks: [{TCP_CHECK: {}}]"),
        ],
    );
    within(Duration::from_secs(4), "sorry server alone", || {
        listed(&d) == vec![(sock("127.0.0.9", 8080), 1)]
    });
    within(Duration::from_secs(2), "quorum_down ran", || {
        std::fs::read_to_string(&log).unwrap_or_default() == "down\n"
    });
    let _l1 = listen("127.0.0.7", p1);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        listed(&d),
        vec![(sock("127.0.0.9", 8080), 1)],
        "weight 1 < quorum 2"
    );
    let _l2 = listen("127.0.0.8", p2);
    within(Duration::from_secs(2), "real servers back", || {
        listed(&d).len() == 2
    });
    within(Duration::from_secs(2), "quorum_up ran", || {
        std::fs::read_to_string(&log).unwrap_or_default() == "down\nup\n"
    });
    d.stop().expect("stops");
}

#[test]
fn reload_keeps_the_state_of_unchanged_checkers_and_withdraws_dropped_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p1 = free_port("127.0.0.10");
    let path = dir.path().join("lbd.yaml");
    let write =
        |dests: &[String]| std::fs::write(&path, yaml(dir.path(), "", dests)).expect("write");
    let checked = rs("127.0.0.10", p1, ", checks: [{TCP_CHECK: {}}]");
    write(std::slice::from_ref(&checked));
    let config = Config::load(&path).expect("config");
    let d = Daemon::start(
        &config,
        DaemonOptions {
            source: Some(rvs::daemon::reload::ConfigSource {
                path: path.clone(),
                workers: None,
                keepalived: None,
            }),
            ..DaemonOptions::default()
        },
    )
    .expect("lbd starts");
    within(Duration::from_secs(4), "refusing rs1 removed", || {
        listed(&d).is_empty()
    });
    // A reload that adds another real server: rs1's checker keeps its
    // state (still down, its flap kept) instead of starting over in the pool.
    write(&[checked, rs("127.0.0.11", 80, "")]);
    assert!(matches!(d.reload(), Response::Reloaded { .. }));
    assert_eq!(listed(&d), vec![(sock("127.0.0.11", 80), 1)]);
    let h = health(&d);
    assert_eq!(h.len(), 1);
    assert!(!h[0].alive);
    assert_eq!(h[0].flaps, 1, "state kept across the reload");
    // A reload that drops rs1's checks: its verdict is withdrawn.
    write(&[rs("127.0.0.10", p1, ""), rs("127.0.0.11", 80, "")]);
    assert!(matches!(d.reload(), Response::Reloaded { .. }));
    assert_eq!(listed(&d).len(), 2);
    assert!(health(&d).is_empty());
    d.stop().expect("stops");
}

#[test]
fn metrics_export_rvs_real_server_up_for_checked_servers() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let (p1, p2) = (free_port("127.0.0.12"), free_port("127.0.0.13"));
    let _rs2 = listen("127.0.0.13", p2);
    let yaml = yaml(
        dir.path(),
        "",
        &[
            rs("127.0.0.12", p1, ", checks: [{TCP_CHECK: {}}]"),
            rs("127.0.0.13", p2, ", checks: [{TCP_CHECK: {}}]"),
        ],
    );
    let config = Config::from_yaml(&yaml).expect("config");
    let d = Daemon::start(
        &config,
        DaemonOptions {
            metrics_listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..DaemonOptions::default()
        },
    )
    .expect("lbd starts");
    let addr = d.metrics_addr().expect("exporter runs");
    let scrape = || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    let down = format!(
        "rvs_real_server_up{{proto=\"tcp\",vip=\"10.0.0.100:80\",rip=\"127.0.0.12:{p1}\"}} 0"
    );
    let up = format!(
        "rvs_real_server_up{{proto=\"tcp\",vip=\"10.0.0.100:80\",rip=\"127.0.0.13:{p2}\"}} 1"
    );
    within(Duration::from_secs(4), "rs1 exported as down", || {
        let text = scrape();
        text.contains(&down) && text.contains(&up)
    });
    d.stop().expect("stops");
}
