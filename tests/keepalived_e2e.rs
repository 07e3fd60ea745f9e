//! `lbd --keepalived FILE -c PORTS.yaml` end to end (issue 12, reference
//! §5.3 H1, H2, H6): an operator's keepalived.conf, written the way the
//! keepalived documentation and the LVS guides write it with the test
//! timers (`delay_loop 1`, `connect_timeout 1`, `retry 1`,
//! `delay_before_retry 1`: L = C = R = B = 1), drives lbd's services AND
//! its checkers; REAL nginx on two real servers in namespaces; lbd on
//! AF_PACKET with kernel interfaces, so the checks leave from the
//! director's own address through the kernel path.
//!
//! * DR (`lb_kind DR`, TCP_CHECK) and NAT (`lb_kind NAT`, HTTP_GET
//!   `status_code 200`), each: a bounded curl loop from the client; stop
//!   nginx on rs1 → rs1 leaves `lbctl -Ln` within keepalived's bound R·B …
//!   L+R·B (+0.3 s), afterwards every answer comes from rs2 and client
//!   errors occur only inside that window; start it → rs1 is back within L
//!   (+0.3 s) of nginx listening and both answer again.
//! * DR also: black-hole rs1 (an nft drop: no RST, no ICMP) → rs1 leaves
//!   within L+(R+1)·C+R·B (+0.3 s).
//! * NAT also: a MISC_CHECK with `misc_dynamic` whose script exits 12 gives
//!   rs1 weight 10 in `lbctl -Ln`; and `lbctl --reload` re-reads the edited
//!   keepalived.conf.
//!
//! Measured detection times are printed (`--nocapture`) for the report.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use rvs::ctl::protocol::Response;
use support::client_loop::*;
use support::lbd::lbctl_json;
use support::process::poll_until;
use support::topology::*;
use support::world::*;

const TOOLS: [&str; 8] = [
    "ip", "nginx", "curl", "python3", "ethtool", "sysctl", "nft", "ss",
];

/// L, C, R, B of the test timers.
const L: f64 = 1.0;
const C: f64 = 1.0;
const R: f64 = 1.0;
const B: f64 = 1.0;
/// Allowed lateness over keepalived's bounds (RTTs, the snapshot publish,
/// the polling of `lbctl`).
const TOLERANCE: f64 = 0.3;

/// Two real servers as the keepalived documentation writes them, each with
/// `checker` (its body indented for the real_server block).
fn virtual_server(vip: &str, port: u16, lb_kind: &str, checker: &str) -> String {
    let mut t = format!(
        "virtual_server {vip} {port} {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind {lb_kind}\n    protocol TCP\n\n"
    );
    for i in 0..2 {
        t.push_str(&format!(
            "    real_server {} 80 {{\n        weight 1\n{checker}    }}\n",
            rip(i)
        ));
    }
    t + "}\n"
}

const TCP_CHECK: &str = "        TCP_CHECK {
            connect_port 80
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
";

const HTTP_GET: &str = "        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
";

fn dr_conf() -> String {
    format!(
        "! LVS-DR with TCP_CHECK, keepalived's test timers.\nglobal_defs {{\n    router_id LVS_DR\n}}\n\n{}",
        virtual_server(VIP_DR, 80, "DR", TCP_CHECK)
    )
}

/// NAT :80 with HTTP_GET, and :81 whose real servers carry a MISC_CHECK
/// with `misc_dynamic` (rs1's script exits 12: weight 10; rs2's exits 0).
fn nat_conf(rs2_weight: u32) -> String {
    let mut t = format!(
        "! LVS-NAT with HTTP_GET, keepalived's test timers.\nglobal_defs {{\n    router_id LVS_NAT\n}}\n\n{}",
        virtual_server(VIP_NAT, 80, "NAT", HTTP_GET)
    )
    .replacen(
        &format!("real_server {} 80 {{\n        weight 1\n", rip(1)),
        &format!(
            "real_server {} 80 {{\n        weight {rs2_weight}\n",
            rip(1)
        ),
        1,
    );
    t.push_str(&format!(
        "\nvirtual_server {VIP_NAT} 81 {{\n    delay_loop 1\n    lb_algo wrr\n    lb_kind NAT\n    protocol TCP\n\n"
    ));
    for (i, code) in [(0, 12), (1, 0)] {
        t.push_str(&format!(
            "    real_server {} 80 {{\n        weight 1\n        MISC_CHECK {{\n            misc_path \"/bin/sh -c 'exit {code}'\"\n            misc_timeout 1\n            misc_dynamic\n        }}\n    }}\n",
            rip(i)
        ));
    }
    t + "}\n"
}

fn topology(conf: String, mode: ServerMode, vips: &[&str]) -> Topology {
    let mut t = Topology::build(Options {
        kernel_ifs: Some(("kext", "kint")),
        keepalived: Some(conf),
        ..Options::new(Driver::AfPacket)
    });
    t.server_mode(mode, vips);
    t
}

/// The real servers of `vip:port` in `lbctl -Ln`, with their weights.
fn listed(t: &Topology, vip: &str, port: u16) -> Vec<(String, u32)> {
    t.listed(Some(vip), port)
}

/// Every checker has passed at least once (`lbctl --health`): from then on
/// a failure is a failure of a running server (R+1 of them take it down),
/// not the start-up's single one.
fn every_checker_passed(t: &Topology) -> bool {
    let Response::Health { servers } = lbctl_json(&t.socket, &["--health"]) else {
        panic!("not a health listing");
    };
    !servers.is_empty()
        && servers
            .iter()
            .flat_map(|s| s.checkers.iter())
            .all(|c| c.last_ok == Some(true))
}

/// Seconds until nginx listens again on real server `i`.
fn listening(t: &Topology, i: usize) -> bool {
    !t.rs[i].sh("ss -Htln 'sport = :80'").trim().is_empty()
}

/// H1 + H2 on `vip:80`: stop nginx on rs1, then start it, under a client
/// loop; asserts keepalived's bounds and the client's view.
fn nginx_stop_and_start_follow_keepalived_timing(t: &mut Topology, vip: &str, what: &str) {
    let checked = poll_until(Duration::from_secs(6), Duration::from_millis(50), || {
        every_checker_passed(t).then_some(())
    });
    assert!(
        checked.is_some(),
        "{what}: the checkers never all passed:\n{}",
        t.lbctl(&["--health"])
    );
    println!("{}", t.lbctl(&["--health"]));
    let url = format!("http://{vip}/");
    let names = t.fetch_names(&url, 4);
    assert_eq!(tally(&names).len(), 2, "{what}: both answer: {names:?}");
    let has_rs1 = |t: &Topology| listed(t, vip, 80).iter().any(|(a, _)| *a == rip(0));

    // --- H1: stop nginx on rs1.
    let client = ClientLoop::start(&t.cli.name, &url);
    thread::sleep(Duration::from_millis(500));
    let t0 = client.now();
    let stopped_at = Instant::now();
    t.stop_nginx(0);
    let down = seconds_until(L + R * B + 3.0, stopped_at, || !has_rs1(t))
        .unwrap_or_else(|| panic!("{what}: rs1 never left: {:?}", listed(t, vip, 80)));
    let t_down = t0 + down;
    println!(
        "{what} nginx stopped: rs1 removed after {down:.2} s (keepalived: {:.0}…{:.0} s)",
        R * B,
        L + R * B
    );
    thread::sleep(Duration::from_millis(1500));

    // --- H2: start nginx again.
    let t_start = client.now();
    let started_at = Instant::now();
    t.restart_nginx(0);
    let listen = seconds_until(3.0, started_at, || listening(t, 0))
        .unwrap_or_else(|| panic!("{what}: nginx on rs1 does not listen again"));
    let listening_at = Instant::now();
    let up = seconds_until(L + 3.0, listening_at, || has_rs1(t))
        .unwrap_or_else(|| panic!("{what}: rs1 never came back: {:?}", listed(t, vip, 80)));
    let t_back = t_start + started_at.elapsed().as_secs_f64();
    println!(
        "{what} nginx started: listening after {listen:.2} s, rs1 back {up:.2} s later (keepalived: ≤ {L:.0} s)"
    );
    thread::sleep(Duration::from_secs(1));
    let answers = client.finish();
    assert!(
        down >= R * B - 0.1,
        "{what}: removed after {down:.2} s: before R·B"
    );
    assert!(
        down <= L + R * B + TOLERANCE,
        "{what}: removed after {down:.2} s: after L+R·B+{TOLERANCE}"
    );
    assert!(
        up <= L + TOLERANCE,
        "{what}: back {up:.2} s after nginx listened: after L+{TOLERANCE}"
    );
    let window = Window {
        stop: t0,
        down: t_down,
        start: t_start,
        back: t_back,
    };
    assert_answers_follow(what, &answers, window, "rs2", "rs1");
}

#[test]
fn keepalived_dr_config_takes_a_stopped_or_black_holed_nginx_out_and_back_within_keepalived_bounds()
{
    if !support::needs_root(
        "keepalived_dr_config_takes_a_stopped_or_black_holed_nginx_out_and_back_within_keepalived_bounds",
        &TOOLS,
    ) {
        return;
    }
    let _serial = support::serial();
    let mut t = topology(dr_conf(), ServerMode::DirectReturn, &[VIP_DR]);
    assert_eq!(
        listed(&t, VIP_DR, 80),
        vec![(rip(0), 1), (rip(1), 1)],
        "the keepalived file's service"
    );
    nginx_stop_and_start_follow_keepalived_timing(&mut t, VIP_DR, "DR");
    // H3: black-hole rs1 (no RST, no ICMP): down within L+(R+1)·C+R·B.
    let has_rs1 = |t: &Topology| listed(t, VIP_DR, 80).iter().any(|(a, _)| *a == rip(0));
    let back = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        every_checker_passed(&t).then_some(())
    });
    assert!(
        back.is_some(),
        "rs1's checker did not pass again after the restart"
    );
    t.black_hole_http(0, true);
    let holed_at = Instant::now();
    let bound = L + (R + 1.0) * C + R * B;
    let gone = seconds_until(bound + 3.0, holed_at, || !has_rs1(&t));
    t.black_hole_http(0, false);
    let gone =
        gone.unwrap_or_else(|| panic!("black-holed rs1 never left: {:?}", listed(&t, VIP_DR, 80)));
    println!("DR black hole: rs1 removed after {gone:.2} s (keepalived: ≤ {bound:.0} s)");
    assert!(
        gone <= bound + TOLERANCE,
        "black-holed rs1 removed after {gone:.2} s: after L+(R+1)·C+R·B+{TOLERANCE}"
    );
    let back = seconds_until(L + C + 3.0, Instant::now(), || has_rs1(&t));
    assert!(back.is_some(), "rs1 did not come back after the black hole");
}

#[test]
fn keepalived_nat_config_follows_nginx_and_misc_dynamic_exit_12_sets_weight_10() {
    if !support::needs_root(
        "keepalived_nat_config_follows_nginx_and_misc_dynamic_exit_12_sets_weight_10",
        &TOOLS,
    ) {
        return;
    }
    let _serial = support::serial();
    let mut t = topology(nat_conf(1), ServerMode::ViaDirector, &[]);
    // H6: exit 12 with misc_dynamic → weight 10; exit 0 → up at weight 1.
    let dynamic = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (listed(&t, VIP_NAT, 81) == vec![(rip(0), 10), (rip(1), 1)]).then_some(())
    });
    let ln = t.lbctl(&["-Ln"]);
    println!("{ln}");
    assert!(
        dynamic.is_some(),
        "MISC_CHECK exit 12 did not give weight 10:\n{ln}"
    );
    let rs1_line = format!("-> {}:80 Masq 10", rip(0));
    assert!(
        ln.lines().any(|l| l
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .starts_with(&rs1_line)),
        "no `{rs1_line}` line in lbctl -Ln:\n{ln}"
    );
    nginx_stop_and_start_follow_keepalived_timing(&mut t, VIP_NAT, "NAT");
    // Reload re-reads the keepalived file: rs2's weight 1 → 3 on :80.
    std::fs::write(t.path("keepalived.conf"), nat_conf(3)).expect("edit keepalived.conf");
    let out = t.lbctl(&["--reload"]);
    println!("lbctl --reload:\n{out}");
    assert_eq!(listed(&t, VIP_NAT, 80), vec![(rip(0), 1), (rip(1), 3)]);
    let mut t = t;
    let stopping = Instant::now();
    t.stop_lbd_cleanly();
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "lbd took {:?} to stop",
        stopping.elapsed()
    );
}
