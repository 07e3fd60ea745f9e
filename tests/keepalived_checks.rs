//! The checkers of a keepalived.conf arrive in lbd's configuration with
//! keepalived 2.2.7's effective values (issue 12: the reader joined to the
//! checker): each fixture is read, converted (`to_config`) and resolved by
//! the health side itself (`health::service::plan`, what `lbd` runs), and
//! the resolved timing, targets, URLs, scripts, quorum and sorry server are
//! compared with what keepalived runs with. What the health side cannot
//! carry is named with its file and line.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rvs::conntrack::Fwd;
use rvs::ctl::config::Config;
use rvs::health::checker::Probe;
use rvs::health::conf::{CheckKind, StatusCode};
use rvs::health::service::{plan, ServerPlan, ServicePlan};
use rvs::keepalived::diag::{Diags, Severity};
use rvs::keepalived::lexer::LexOptions;
use rvs::keepalived::{import, load_text, to_config};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keepalived")
        .join(name)
}

fn opts() -> LexOptions {
    LexOptions {
        config_id: "main".to_string(),
        includes: true,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fixture converted and planned as `lbd --keepalived` does.
fn planned(name: &str) -> (Config, Vec<ServicePlan>) {
    let imp = import(&data(name), &opts(), None);
    let config = imp
        .config
        .unwrap_or_else(|| panic!("{name} refused:\n{}", imp.diags));
    let plans = plan(&config).expect("the health side accepts every converted checker");
    (config, plans)
}

/// A text converted: the configuration and every diagnostic.
fn converted(text: &str) -> (Config, Diags) {
    let (conf, mut diags) = load_text(Path::new("t.conf"), text, &opts());
    let config = to_config::to_config(&conf, Config::default(), false, &mut diags);
    (config, diags)
}

/// (delay_loop, connect_timeout, retry, delay_before_retry, warmup) of
/// checker `i` of `server`, in milliseconds.
fn timing(server: &ServerPlan, i: usize) -> (Duration, Duration, u32, Duration, Duration) {
    let t = server.checks[i].1;
    (
        t.delay_loop,
        t.connect_timeout,
        t.retry,
        t.delay_before_retry,
        t.warmup,
    )
}

/// The diagnostics at `severity`, as `LINE: MESSAGE`.
fn at(d: &Diags, severity: Severity) -> Vec<String> {
    d.0.iter()
        .filter(|x| x.severity == severity)
        .map(|x| {
            let line = x.loc.as_ref().map_or(0, |l| l.line);
            (line, format!("{line}: {}", x.message))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn the_lvs_guides_tcp_check_runs_with_retry_1_because_nb_get_retry_is_ignored_in_tcp_check() {
    let (_, plans) = planned("lvs_dr_tcp_check.conf");
    assert_eq!(plans.len(), 1);
    let servers = &plans[0].servers;
    assert_eq!(servers.len(), 2);
    for (s, rs) in servers.iter().zip(["10.0.0.21:80", "10.0.0.22:80"]) {
        assert_eq!(s.checks.len(), 1);
        let check = &s.checks[0].0;
        assert_eq!(check.kind, CheckKind::Tcp);
        assert_eq!(check.connect, sa(rs), "connect_port 80 of the real server");
        assert_eq!(check.bind, None);
        // delay_loop 6 from the virtual server, connect_timeout 10, retry 1
        // (nb_get_retry 3 is unknown there), delay_before_retry 3, warmup =
        // delay_loop.
        assert_eq!(
            timing(s, 0),
            (ms(6000), ms(10_000), 1, ms(3000), ms(6000)),
            "{rs}"
        );
        assert!(!s.alpha && !s.inhibit, "keepalived's defaults");
        assert_eq!(s.weight, 1);
    }
    // keepalived's quorum defaults.
    assert_eq!((plans[0].quorum, plans[0].hysteresis), (1, 0));
    assert!(plans[0].sorry.is_none());
}

#[test]
fn http_get_urls_digests_status_codes_and_nb_get_retry_arrive_from_the_lvs_nat_sample() {
    let (config, plans) = planned("lvs_nat_http_get.conf");
    let s = &plans[0].servers;
    // rs1: nb_get_retry 3 is honoured in HTTP_GET; inhibit_on_failure.
    assert_eq!(
        timing(&s[0], 0),
        (ms(3000), ms(3000), 3, ms(3000), ms(3000))
    );
    assert!(s[0].inhibit);
    assert_eq!(s[0].weight, 3);
    let Probe::Http { tls, urls, host } = &s[0].checks[0].0.probe else {
        panic!("{:?}", s[0].checks[0].0.probe)
    };
    assert!(!tls);
    assert_eq!(host, "192.168.10.1:8080", "no virtualhost: ip:port");
    assert_eq!(urls.len(), 2);
    assert_eq!(urls[0].path, "/index.html");
    assert_eq!(
        urls[0].digest.as_deref(),
        Some("640205b7b0fc66c1ea91c463fac6334d")
    );
    assert_eq!(urls[0].status, vec![StatusCode(200, 299)], "the default");
    assert_eq!(urls[1].path, "/healthz");
    assert_eq!(
        urls[1].status,
        vec![StatusCode(200, 299), StatusCode(404, 404)]
    );
    // rs2: retry 2, HTTP's delay_before_retry default 3 s.
    assert_eq!(
        timing(&s[1], 0),
        (ms(3000), ms(3000), 2, ms(3000), ms(3000))
    );
    assert!(!s[1].inhibit);
    assert_eq!(s[0].checks[0].0.connect, sa("192.168.10.1:8080"));
    // The service itself: NAT real servers, persistence 50.
    let svc = &config.services[0];
    assert_eq!(svc.persistent, Some(50));
    assert!(svc.dests.iter().all(|d| d.fwd == Fwd::Nat));
}

/// checkers.conf with the one thing rvs refuses (a `require_reply`
/// pattern) taken out.
fn checkers_conf_without_reply_pattern() -> String {
    std::fs::read_to_string(data("checkers.conf"))
        .expect("fixture")
        .replace("require_reply 0002", "require_reply")
}

#[test]
fn every_checker_keyword_of_the_checkers_fixture_reaches_the_health_side() {
    let (config, diags) = converted(&checkers_conf_without_reply_pattern());
    assert!(diags.can_start(), "{diags}");
    assert_eq!(
        at(&diags, Severity::Warning),
        Vec::<String>::new(),
        "enable_sni is set"
    );
    let plans = plan(&config).expect("plans");
    // :443 — SSL_GET and MISC_CHECK on one real server.
    let p = &plans[0];
    assert_eq!((p.quorum, p.hysteresis), (2, 1));
    assert_eq!(
        p.quorum_up,
        Some(vec!["/bin/true".to_string(), "up".to_string()])
    );
    assert_eq!(
        p.quorum_down,
        Some(vec!["/bin/true".to_string(), "down".to_string()])
    );
    let sorry = p.sorry.as_ref().expect("sorry_server");
    assert_eq!(
        (sorry.addr, sorry.port, sorry.fwd),
        (ip("192.168.10.100"), 8443, Fwd::Nat),
        "the sorry server is forwarded as the virtual server's lb_kind"
    );
    assert!(p.omega);
    let rs = &p.servers[0];
    assert!(rs.alpha, "alpha of the virtual server, inherited");
    assert!(!rs.inhibit, "inhibit_on_failure off on the real server");
    assert_eq!(
        rs.notify_up,
        Some(vec!["/bin/true".to_string(), "rs-up".to_string()])
    );
    let ssl = &rs.checks[0].0;
    assert_eq!(ssl.kind, CheckKind::Ssl);
    assert_eq!(ssl.connect, sa("192.168.10.11:9443"));
    assert_eq!(ssl.bind, Some(sa("192.168.10.254:40000")));
    assert_eq!(timing(rs, 0), (ms(10_000), ms(2000), 2, ms(1500), ms(4000)));
    let Probe::Http { tls, host, urls } = &ssl.probe else {
        panic!("{:?}", ssl.probe)
    };
    assert!(tls);
    assert_eq!(host, "www.example.org", "virtualhost of the virtual server");
    assert_eq!(urls[0].status, vec![StatusCode(200, 200)]);
    let misc = &rs.checks[1].0;
    let Probe::Misc { argv, dynamic } = &misc.probe else {
        panic!("{:?}", misc.probe)
    };
    assert_eq!(argv, &["/usr/local/bin/check.sh", "192.168.10.1"]);
    assert!(dynamic);
    // MISC: retry 0, the script's limit is misc_timeout.
    let t = rs.checks[1].1;
    assert_eq!(
        (t.delay_loop, t.connect_timeout, t.retry),
        (ms(10_000), ms(5000), 0)
    );
    // :53 — UDP_CHECK and DNS_CHECK; retry 2 from the virtual server.
    let rs = &plans[1].servers[0];
    let Probe::Udp {
        payload,
        require_reply,
        reply_len,
    } = &rs.checks[0].0.probe
    else {
        panic!("{:?}", rs.checks[0].0.probe)
    };
    assert_eq!(payload.as_deref(), Some(&[0u8, 1][..]));
    assert!(require_reply);
    assert_eq!(*reply_len, (2, 255));
    assert_eq!(timing(rs, 0), (ms(5000), ms(5000), 2, ms(1000), ms(5000)));
    let Probe::Dns { qtype, name } = &rs.checks[1].0.probe else {
        panic!("{:?}", rs.checks[1].0.probe)
    };
    assert_eq!((*qtype, name.as_str()), (28, "www.example.org"));
    // DNS: its own delay_loop 7; delay_before_retry defaults to it.
    assert_eq!(timing(rs, 1), (ms(7000), ms(5000), 2, ms(7000), ms(7000)));
    assert_eq!(rs.checks[1].0.connect, sa("10.0.0.21:53"));
}

#[test]
fn a_udp_check_reply_pattern_is_refused_with_its_file_and_line() {
    let imp = import(&data("checkers.conf"), &opts(), None);
    assert!(imp.config.is_none(), "rvs cannot compare reply bytes");
    let fatal: Vec<String> = imp
        .diags
        .at_least(Severity::Fatal)
        .map(|d| d.to_string())
        .collect();
    assert_eq!(fatal.len(), 1, "{fatal:?}");
    assert!(
        fatal[0].contains("checkers.conf:60: fatal: UDP_CHECK require_reply HEX"),
        "{fatal:?}"
    );
    assert_eq!(imp.diags.exit_code(), 4);
}

const TEXT_HEAD: &str = "virtual_server 10.0.0.38 80 {\n protocol TCP\n lb_algo rr\n lb_kind NAT\n";

#[test]
fn keywords_keepalived_acts_on_and_rvs_does_not_are_warned_at_their_line() {
    let text = format!(
        "{TEXT_HEAD} ha_suspend\n real_server 192.168.10.1 80 {{\n  notify_down \"/bin/echo down\" nobody\n  HTTP_GET {{\n   url {{\n    path /\n   }}\n   http_protocol 1.1\n   fast_recovery\n   bind_if eth1\n   fwmark 7\n  }}\n  MISC_CHECK {{\n   misc_path /bin/true\n   user nobody\n  }}\n }}\n}}\n"
    );
    let (config, d) = converted(&text);
    assert!(d.can_start(), "{d}");
    assert_eq!(
        at(&d, Severity::Warning),
        vec![
            "1: ha_suspend: rvs runs the checkers whether or not the VIP is local",
            "7: notify_down: user nobody: rvs runs scripts as lbd's own user",
            "8: HTTP_GET bind_if eth1: rvs's checks leave by the director's routes",
            "8: HTTP_GET fast_recovery: rvs checks a down server every delay_loop",
            "8: HTTP_GET fwmark 7: rvs does not mark its check packets",
            "8: HTTP_GET http_protocol 1.1: rvs sends HTTP/1.0 requests (the server closes after the answer)",
            "17: MISC_CHECK user nobody: rvs runs scripts as lbd's own user",
        ]
    );
    // And the checkers still run, with keepalived's defaults.
    let plans = plan(&config).expect("plans");
    let rs = &plans[0].servers[0];
    assert_eq!(rs.checks.len(), 2);
    assert_eq!(
        timing(rs, 0),
        (ms(60_000), ms(5000), 1, ms(3000), ms(60_000))
    );
    assert_eq!(
        rs.notify_down,
        Some(vec!["/bin/echo".to_string(), "down".to_string()])
    );
}

#[test]
fn urls_with_different_virtualhosts_are_refused_and_one_shared_virtualhost_is_the_host() {
    let url = |path: &str, host: &str| {
        format!("   url {{\n    path {path}\n    virtualhost {host}\n   }}\n")
    };
    let body = |urls: String| {
        format!("{TEXT_HEAD} real_server 192.168.10.1 80 {{\n  HTTP_GET {{\n{urls}  }}\n }}\n}}\n")
    };
    let (_, d) = converted(&body(url("/a", "a.example") + &url("/b", "b.example")));
    assert!(!d.can_start());
    assert_eq!(
        at(&d, Severity::Fatal),
        vec!["6: HTTP_GET: urls with different virtualhost: rvs sends one Host per checker (split them into one HTTP_GET per virtualhost)"]
    );
    let (config, d) = converted(&body(url("/a", "a.example") + &url("/b", "a.example")));
    assert!(d.can_start(), "{d}");
    let plans = plan(&config).expect("plans");
    let Probe::Http { host, .. } = &plans[0].servers[0].checks[0].0.probe else {
        panic!("not HTTP")
    };
    assert_eq!(host, "a.example");
}

#[test]
fn ssl_get_without_enable_sni_warns_that_rvs_sends_the_virtualhost_as_sni() {
    let text = format!(
        "{TEXT_HEAD} virtualhost www.example.org\n real_server 192.168.10.1 443 {{\n  SSL_GET {{\n   url {{\n    path /\n   }}\n  }}\n  SSL_GET {{\n   url {{\n    path /\n   }}\n   virtualhost 192.168.10.1\n  }}\n }}\n}}\n"
    );
    let (_, d) = converted(&text);
    assert_eq!(
        at(&d, Severity::Warning),
        vec!["7: SSL_GET without enable_sni: rvs sends the virtualhost www.example.org as SNI (keepalived sends none)"],
        "an address names no host: no SNI either way"
    );
}

#[test]
fn a_checker_on_a_dr_real_server_checks_the_real_servers_own_port() {
    // keepalived connects to the real server's port; the health side would
    // otherwise take the service port for DR.
    let text = "virtual_server 10.0.0.38 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n real_server 192.168.10.1 8080 {\n  TCP_CHECK {\n  }\n }\n real_server 192.168.10.2 {\n  TCP_CHECK {\n  }\n }\n}\n";
    let (config, d) = converted(text);
    assert!(d.can_start(), "{d}");
    let plans = plan(&config).expect("plans");
    assert_eq!(
        plans[0].servers[0].checks[0].0.connect,
        sa("192.168.10.1:8080")
    );
    assert_eq!(
        plans[0].servers[1].checks[0].0.connect,
        sa("192.168.10.2:80")
    );
}

#[test]
fn alpha_on_some_checkers_only_starts_the_server_down_and_says_so() {
    let text = format!(
        "{TEXT_HEAD} real_server 192.168.10.1 80 {{\n  TCP_CHECK {{\n   alpha\n  }}\n  TCP_CHECK {{\n   connect_port 22\n  }}\n }}\n real_server 192.168.10.2 80 {{\n  TCP_CHECK {{\n  }}\n }}\n}}\n"
    );
    let (config, d) = converted(&text);
    assert!(d.can_start(), "{d}");
    assert_eq!(
        at(&d, Severity::Warning),
        vec!["5: alpha on some checkers only: rvs starts the whole real server down until every checker has passed once"]
    );
    let plans = plan(&config).expect("plans");
    assert!(plans[0].servers[0].alpha);
    assert!(!plans[0].servers[1].alpha);
}
