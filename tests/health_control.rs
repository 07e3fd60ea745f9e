//! The health checker's verdicts in the control state: what the data plane
//! and the listings see, and the ownership rule between the checker
//! (alive) and the operator (weight, set of real servers).

use std::net::IpAddr;

use rvs::conntrack::{Fwd, Proto};
use rvs::ctl::apply::{ApplyError, Changed, ControlState, DestHealth};
use rvs::ctl::protocol::{DestSpec, Request, ServiceKey, ServiceSpec};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn web() -> ServiceKey {
    ServiceKey {
        proto: Proto::Tcp,
        addr: ip("10.0.0.100"),
        port: 80,
    }
}

fn dest(addr: &str, weight: u32) -> DestSpec {
    DestSpec {
        fwd: Fwd::Nat,
        weight,
        ..DestSpec::new(ip(addr), 80)
    }
}

/// A service with rs1 (weight 3) and rs2 (weight 1).
fn two_servers() -> ControlState {
    let mut s = ControlState::default();
    s.apply(&Request::AddService {
        service: ServiceSpec::new(web()),
    })
    .expect("service");
    for (a, w) in [("192.168.10.1", 3), ("192.168.10.2", 1)] {
        s.apply(&Request::AddDest {
            service: web(),
            dest: dest(a, w),
        })
        .expect("dest");
    }
    s
}

/// (address, weight) of the service's real servers in the snapshot.
fn snapshot_dests(s: &ControlState) -> Vec<(IpAddr, u32)> {
    let snap = s.snapshot().expect("snapshot");
    snap.services[0]
        .dests
        .iter()
        .map(|d| (d.addr, d.weight))
        .collect()
}

/// The same as listed.
fn listed_dests(s: &ControlState) -> Vec<(IpAddr, u32)> {
    let svc = s.service(&web()).expect("service");
    s.effective_service(svc)
        .dests
        .iter()
        .map(|d| (d.spec.addr, d.spec.weight))
        .collect()
}

/// The checker's verdict on real server `addr`:80 of the service.
fn verdict(s: &mut ControlState, addr: &str, health: Option<DestHealth>) -> Changed {
    s.set_health(&web(), &ip(addr), 80, health)
        .expect("verdict")
}

const DEAD: DestHealth = DestHealth {
    alive: false,
    inhibit: false,
    weight: None,
};

#[test]
fn dead_real_server_is_left_out_of_the_snapshot_and_the_listing() {
    let mut s = two_servers();
    let before = s.generation();
    let changed = s
        .set_health(&web(), &ip("192.168.10.1"), 80, Some(DEAD))
        .expect("verdict");
    assert!(changed.config);
    assert_eq!(s.generation(), before + 1);
    assert_eq!(snapshot_dests(&s), vec![(ip("192.168.10.2"), 1)]);
    assert_eq!(listed_dests(&s), vec![(ip("192.168.10.2"), 1)]);
    // The operator's configuration still has it.
    assert_eq!(s.service(&web()).expect("service").dests.len(), 2);
    // The same verdict again changes nothing.
    let again = s
        .set_health(&web(), &ip("192.168.10.1"), 80, Some(DEAD))
        .expect("verdict");
    assert!(!again.config);
    assert_eq!(s.generation(), before + 1);
    // Alive again: back with its weight.
    verdict(&mut s, "192.168.10.1", None);
    assert_eq!(
        snapshot_dests(&s),
        vec![(ip("192.168.10.1"), 3), (ip("192.168.10.2"), 1)]
    );
}

#[test]
fn inhibit_on_failure_keeps_a_dead_server_at_weight_zero() {
    let mut s = two_servers();
    verdict(
        &mut s,
        "192.168.10.1",
        Some(DestHealth {
            inhibit: true,
            ..DEAD
        }),
    );
    assert_eq!(
        snapshot_dests(&s),
        vec![(ip("192.168.10.1"), 0), (ip("192.168.10.2"), 1)]
    );
    assert_eq!(listed_dests(&s)[0], (ip("192.168.10.1"), 0));
}

#[test]
fn operator_weight_edit_on_a_dead_server_takes_effect_when_it_comes_back() {
    let mut s = two_servers();
    verdict(&mut s, "192.168.10.1", Some(DEAD));
    s.apply(&Request::EditDest {
        service: web(),
        dest: dest("192.168.10.1", 7),
    })
    .expect("-e on a dead server is the operator's");
    assert_eq!(
        snapshot_dests(&s),
        vec![(ip("192.168.10.2"), 1)],
        "still dead"
    );
    verdict(&mut s, "192.168.10.1", None);
    assert_eq!(snapshot_dests(&s)[0], (ip("192.168.10.1"), 7));
}

#[test]
fn misc_dynamic_weight_applies_while_alive_and_the_operator_weight_is_kept() {
    let mut s = two_servers();
    verdict(
        &mut s,
        "192.168.10.1",
        Some(DestHealth {
            alive: true,
            inhibit: false,
            weight: Some(10),
        }),
    );
    assert_eq!(snapshot_dests(&s)[0], (ip("192.168.10.1"), 10));
    let configured = s.service(&web()).expect("service").dests[0].spec.weight;
    assert_eq!(configured, 3);
}

#[test]
fn deleting_a_checked_server_drops_its_verdict_and_refuses_the_next() {
    let mut s = two_servers();
    verdict(&mut s, "192.168.10.1", Some(DEAD));
    s.apply(&Request::DeleteDest {
        service: web(),
        addr: ip("192.168.10.1"),
        port: 80,
    })
    .expect("-d");
    assert_eq!(
        s.set_health(&web(), &ip("192.168.10.1"), 80, Some(DEAD)),
        Err(ApplyError::NoSuchDest)
    );
    // Re-added by the operator: in the pool, no stale verdict.
    s.apply(&Request::AddDest {
        service: web(),
        dest: dest("192.168.10.1", 3),
    })
    .expect("-a");
    assert_eq!(snapshot_dests(&s).len(), 2);
}

#[test]
fn sorry_server_replaces_the_real_servers_while_in_force() {
    let mut s = two_servers();
    let sorry = dest("192.168.10.9", 1);
    s.set_sorry(&web(), Some(&sorry)).expect("sorry in");
    assert_eq!(snapshot_dests(&s), vec![(ip("192.168.10.9"), 1)]);
    // Verdicts are recorded meanwhile.
    verdict(&mut s, "192.168.10.2", Some(DEAD));
    assert_eq!(snapshot_dests(&s), vec![(ip("192.168.10.9"), 1)]);
    s.set_sorry(&web(), None).expect("sorry out");
    assert_eq!(snapshot_dests(&s), vec![(ip("192.168.10.1"), 3)]);
}

#[test]
fn lbctl_health_prints_one_line_per_checker_and_json_round_trips() {
    use rvs::ctl::ipvsadm::{parse_args, render, Command};
    use rvs::ctl::protocol::{CheckerInfo, HealthInfo, Response};
    let response = Response::Health {
        servers: vec![HealthInfo {
            service: web(),
            addr: ip("192.168.10.1"),
            port: 80,
            alive: false,
            flaps: 3,
            checkers: vec![
                CheckerInfo {
                    checker: "HTTP_GET".to_string(),
                    target: "192.168.10.1:80".to_string(),
                    up: false,
                    last_ok: Some(false),
                    reason: "status 503".to_string(),
                    latency_us: Some(4200),
                    next_check_ms: 750,
                    flaps: 3,
                },
                CheckerInfo {
                    checker: "TCP_CHECK".to_string(),
                    target: "192.168.10.1:22".to_string(),
                    up: true,
                    last_ok: None,
                    reason: "not checked yet".to_string(),
                    latency_us: None,
                    next_check_ms: 0,
                    flaps: 0,
                },
            ],
        }],
    };
    let Ok(Command::List(list)) = parse_args(&["--health"]) else {
        panic!("--health is a listing");
    };
    assert_eq!(list.request(), Request::Health);
    let text = render(&list, &response).expect("renders");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("Prot LocalAddress:Port"), "{text}");
    for want in [
        "TCP",
        "10.0.0.100:80",
        "192.168.10.1:80",
        "DOWN",
        "HTTP_GET",
        "fail",
        "status 503",
        "4.2ms",
        "0.8s",
    ] {
        assert!(lines[1].contains(want), "{want} missing: {}", lines[1]);
    }
    assert!(
        lines[2].contains("TCP_CHECK") && lines[2].contains("not checked yet"),
        "{}",
        lines[2]
    );
    let json = serde_json::to_string(&response).expect("json");
    let back: Response = serde_json::from_str(&json).expect("decodes");
    assert_eq!(back, response);
    assert!(parse_args(&["--health", "-o", "json"]).is_ok());
    assert!(
        parse_args(&["--health", "-t", "10.0.0.100:80"]).is_err(),
        "no service filter"
    );
}

#[test]
fn bad_checker_keywords_are_refused_with_their_place_in_the_file() {
    let yaml = |check: &str| {
        format!(
            "services:\n  - {{proto: tcp, vip: 10.0.0.100, port: 80, dests: [{{addr: 192.168.10.1, checks: [{check}]}}]}}\n"
        )
    };
    let err = rvs::ctl::config::Config::from_yaml(&yaml("{TCP_CHECK: {nb_get_retry: 3}}"))
        .expect_err("nb_get_retry is not TCP_CHECK's");
    assert_eq!(
        err.to_string(),
        "services[0].dests[0].checks[0]: nb_get_retry is not a TCP_CHECK keyword"
    );
    let err = rvs::ctl::config::Config::from_yaml(&yaml(
        "{HTTP_GET: {url: [{path: /}], conect_timeout: 1}}",
    ))
    .expect_err("typo");
    assert!(err.to_string().contains("conect_timeout"), "{err}");
    let ok = rvs::ctl::config::Config::from_yaml(&yaml(
        "{HTTP_GET: {url: [{path: /}], nb_get_retry: 3}}",
    ))
    .expect("nb_get_retry counts in HTTP_GET");
    let plans = rvs::health::service::plan(&ok).expect("plan");
    assert_eq!(plans[0].servers[0].checks[0].1.retry, 3);
    assert_eq!(
        plans[0].servers[0].checks[0].1.delay_before_retry,
        std::time::Duration::from_secs(3)
    );
}

#[test]
fn a_zero_delay_loop_is_refused() {
    let yaml = "services:\n  - {proto: tcp, vip: 10.0.0.100, port: 80, delay_loop: 0, dests: [{addr: 192.168.10.1, checks: [{TCP_CHECK: {}}]}]}\n";
    let config = rvs::ctl::config::Config::from_yaml(yaml).expect("parses");
    let err = rvs::health::service::plan(&config).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "TCP 10.0.0.100:80 192.168.10.1:80: TCP_CHECK delay_loop and connect_timeout must be above 0"
    );
    let err = rvs::daemon::check_config(&config).expect_err("--check-config refuses it");
    assert!(err.to_string().contains("must be above 0"), "{err}");
}
