//! The keepalived.conf reader (`rvs::keepalived`) and `lbd --keepalived`:
//! keepalived 2.2.7's lexical rules one by one, the LVS guides'
//! configurations with keepalived's diagnostics and effective values, every
//! malformed input refused with its file and line, the conversion to rvs's
//! configuration, the `lbd` binary (check and start), and — where
//! keepalived is installed — the same diagnosed lines and exit codes as
//! `keepalived -t`.

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rvs::conntrack::{Fwd, Proto};
use rvs::ctl::config::Config;
use rvs::keepalived::diag::{Diags, Severity};
use rvs::keepalived::lexer::LexOptions;
use rvs::keepalived::model::{
    Auth, CheckerKind, KeepalivedConf, LbKind, Protocol, VrrpState, VsAddr,
};
use rvs::keepalived::{import, load, load_text};
use support::lbd::{lbctl, Lbd, LBD};
use support::process::{poll_until, Proc};

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

fn fixture(name: &str) -> (KeepalivedConf, Diags) {
    load(&data(name), &opts())
}

fn text(body: &str) -> (KeepalivedConf, Diags) {
    load_text(Path::new("t.conf"), body, &opts())
}

/// The lines of the diagnostics at `severity` or worse, in file `file`.
fn lines(d: &Diags, severity: Severity) -> Vec<u32> {
    d.at_least(severity)
        .filter_map(|x| x.loc.as_ref().map(|l| l.line))
        .collect()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ports() -> Config {
    Config::load(&data("ports.yaml")).expect("ports.yaml")
}

// ---------------------------------------------------------------- guides

#[test]
fn tcp_check_dr_guide_loads_with_keepalived_diagnostics_persistence_0_refused_and_retry_1() {
    let (conf, d) = fixture("lvs_dr_tcp_check.conf");
    // keepalived 2.2.7 -t: line 13 persistence_timeout out of range, lines
    // 20 and 29 "Unknown keyword 'nb_get_retry'"; exit 5.
    assert_eq!(lines(&d, Severity::Error), vec![13, 20, 29], "{d}");
    assert!(d.0[0].message.contains("outside range [1, 2678400]"), "{d}");
    assert!(
        d.0[1].message.contains("Unknown keyword 'nb_get_retry'"),
        "{d}"
    );
    assert_eq!(d.exit_code(), 5);
    assert!(d.can_start());
    let vs = &conf.virtual_servers[0];
    assert_eq!(
        vs.addr,
        VsAddr::Ip {
            addr: ip("10.0.0.38"),
            port: 80
        }
    );
    assert_eq!(
        vs.persistence_timeout, None,
        "persistence_timeout 0 leaves it non-persistent"
    );
    assert_eq!(
        (vs.protocol, vs.lb_algo.as_str(), &vs.lb_kind),
        (Protocol::Tcp, "rr", &LbKind::Dr)
    );
    assert_eq!(vs.real_servers.len(), 2);
    for rs in &vs.real_servers {
        let c = &rs.checkers[0];
        assert_eq!(c.kind, CheckerKind::Tcp);
        assert_eq!(c.common.retry, 1, "nb_get_retry is ignored in TCP_CHECK");
        assert_eq!(c.common.connect_timeout, secs(10));
        assert_eq!(c.common.delay_before_retry, secs(3));
        assert_eq!(
            c.common.delay_loop,
            secs(6),
            "inherited from the virtual server"
        );
        assert_eq!(c.common.warmup, secs(6), "warmup defaults to delay_loop");
        assert_eq!(c.common.connect_port, Some(80));
    }
    let imp = import(&data("lvs_dr_tcp_check.conf"), &opts(), Some(ports()));
    let config = imp.config.expect("starts");
    let s = &config.services[0];
    assert_eq!(
        (s.proto, s.vip.0, s.port, s.persistent),
        (Proto::Tcp, ip("10.0.0.38"), 80, None)
    );
    assert_eq!(s.scheduler, "rr");
    let dests: Vec<_> = s
        .dests
        .iter()
        .map(|d| (d.addr.0, d.port, d.fwd, d.weight.0))
        .collect();
    assert_eq!(
        dests,
        vec![
            (ip("10.0.0.21"), Some(80), Fwd::Dr, 1),
            (ip("10.0.0.22"), Some(80), Fwd::Dr, 1)
        ]
    );
    assert_eq!(config.ports.len(), 2, "ports come from the YAML");
}

#[test]
fn http_get_nat_guide_honours_nb_get_retry_only_in_http_get_with_status_codes_and_digest() {
    let (conf, d) = fixture("lvs_nat_http_get.conf");
    assert_eq!(lines(&d, Severity::Error), vec![26], "{d}");
    assert!(d.0[0].message.contains("nb_get_retry is deprecated"));
    assert_eq!(
        d.exit_code(),
        5,
        "keepalived 2.2.7 -t exits 5 on the deprecation"
    );
    let vs = &conf.virtual_servers[0];
    assert_eq!(vs.persistence_timeout, Some(50));
    assert_eq!(vs.lb_kind, LbKind::Nat);
    let rs1 = &vs.real_servers[0];
    assert!(rs1.inhibit_on_failure);
    assert_eq!(rs1.weight, 3);
    let c = &rs1.checkers[0];
    assert_eq!(c.common.retry, 3, "nb_get_retry counts in HTTP_GET");
    assert_eq!(c.common.delay_before_retry, secs(3));
    assert_eq!(c.common.delay_loop, secs(3));
    let CheckerKind::Http(h) = &c.kind else {
        panic!("HTTP_GET expected: {:?}", c.kind)
    };
    assert_eq!(h.urls[0].path, "/index.html");
    assert_eq!(
        h.urls[0].digest.as_deref(),
        Some("640205b7b0fc66c1ea91c463fac6334d")
    );
    assert_eq!(h.urls[0].status_codes, vec![(200, 299)], "default 200-299");
    assert_eq!(h.urls[1].status_codes, vec![(200, 299), (404, 404)]);
    let c2 = &vs.real_servers[1].checkers[0];
    assert_eq!(c2.common.retry, 2);
    assert_eq!(c2.common.delay_before_retry, secs(3), "HTTP_GET's default");
    let config = import(&data("lvs_nat_http_get.conf"), &opts(), Some(ports()))
        .config
        .expect("starts");
    let s = &config.services[0];
    assert_eq!((s.persistent, s.scheduler.as_str()), (Some(50), "wlc"));
    assert!(s.dests.iter().all(|d| d.fwd == Fwd::Nat));
    assert_eq!(s.dests[0].port, Some(8080));
}

#[test]
fn vrrp_guide_state_master_without_priority_is_255_and_auth_pass_keeps_8_bytes() {
    let (conf, d) = fixture("vrrp_and_lvs.conf");
    assert_eq!(
        lines(&d, Severity::Error),
        vec![21],
        "only the truncation: {d}"
    );
    assert_eq!(d.exit_code(), 5);
    let i = &conf.vrrp_instances[0];
    assert_eq!(i.state, VrrpState::Master);
    assert_eq!(i.priority, 255);
    assert_eq!(i.virtual_router_id, 51);
    assert_eq!(i.interface.as_deref(), Some("eth0"));
    assert_eq!(i.advert_int, secs(1));
    assert_eq!(i.version, 2);
    assert_eq!(i.auth, Some(Auth::Pass(*b"secretpa")));
    assert_eq!((i.garp_master_delay, i.garp_master_repeat), (secs(5), 5));
    let v: Vec<_> = i
        .virtual_ipaddress
        .iter()
        .map(|v| (v.addr, v.prefix, v.dev.clone(), v.label.clone()))
        .collect();
    assert_eq!(
        v,
        vec![
            (ip("10.0.0.38"), 32, None, None),
            (
                ip("10.0.0.39"),
                24,
                Some("eth0".into()),
                Some("eth0:1".into())
            )
        ]
    );
    let vs = &conf.virtual_servers[0];
    assert_eq!(
        vs.real_servers[0].checkers[0].common.connect_timeout,
        secs(3)
    );
    assert_eq!(vs.real_servers[1].checkers[0].common.connect_port, None);
}

#[test]
fn vrrp_blocks_are_typed_with_keepalived_defaults_and_its_consistency_rules() {
    let (conf, d) = fixture("vrrp_full.conf");
    // keepalived 2.2.7 -t: the duplicate at line 53, plus four errors it
    // prints without a line; exit 5.
    assert_eq!(lines(&d, Severity::Error), vec![53, 32, 49, 65, 52], "{d}");
    assert_eq!(d.exit_code(), 5);
    assert_eq!(conf.global.vrrp_garp_master_delay, secs(10));
    let s = &conf.vrrp_scripts[0];
    assert_eq!(s.script.as_ref().unwrap().command, "/usr/bin/pgrep -x lbd");
    assert_eq!(
        (s.interval, s.timeout, s.weight, s.rise, s.fall),
        (secs(2), secs(2), -20, 2, 3)
    );
    let g = &conf.vrrp_sync_groups[0];
    assert_eq!(g.group, vec!["VI_EXT", "VI_INT"]);
    let master = g.notify.master.as_ref().unwrap();
    assert_eq!(master.command, "/usr/local/bin/notify.sh master");
    let ext = &conf.vrrp_instances[0];
    assert_eq!(
        (ext.state, ext.priority, ext.nopreempt),
        (VrrpState::Backup, 90, true)
    );
    assert_eq!(ext.preempt_delay, Duration::ZERO, "reset: nopreempt");
    assert_eq!(ext.src_ip, Some(ip("10.0.0.12")));
    assert_eq!(ext.unicast_peer, vec![ip("10.0.0.11")]);
    assert_eq!(ext.auth, Some(Auth::Pass(*b"1111\0\0\0\0")));
    assert_eq!(
        (ext.garp_master_delay, ext.garp_master_repeat),
        (secs(10), 3),
        "from global_defs"
    );
    assert_eq!(ext.garp_master_refresh, secs(60));
    assert_eq!(ext.virtual_ipaddress_excluded[0].addr, ip("2001:db8::38"));
    assert_eq!(ext.virtual_ipaddress_excluded[0].prefix, 64);
    assert!(
        ext.track_interface.is_empty(),
        "own interface is not tracked"
    );
    assert!(
        ext.track_script.is_empty(),
        "weighted trackers of sync group members are ignored"
    );
    assert_eq!(
        ext.notify.any.as_ref().unwrap().command,
        "/usr/local/bin/notify.sh"
    );
    let int = &conf.vrrp_instances[1];
    assert_eq!(
        (int.state, int.priority, int.nopreempt),
        (VrrpState::Master, 255, false)
    );
    assert_eq!(
        (int.version, int.advert_int),
        (3, Duration::from_millis(500))
    );
    assert_eq!(int.virtual_ipaddress[0].label.as_deref(), Some("eth0:gw"));
    // Track weights: the tracker's own weight overrides the script's.
    let (conf, d) = text(
        "vrrp_script s {\n script /bin/true\n weight 5\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 1\n \
         track_script {\n  s weight -10 reverse\n }\n track_interface {\n  eth1\n  eth2 weight 7\n }\n \
         virtual_ipaddress {\n  10.0.0.38\n }\n}\n",
    );
    assert!(d.at_least(Severity::Error).next().is_none(), "{d}");
    let a = &conf.vrrp_instances[0];
    assert_eq!(
        (a.track_script[0].weight, a.track_script[0].reverse),
        (Some(-10), true)
    );
    let ifs: Vec<_> = a
        .track_interface
        .iter()
        .map(|t| (t.name.as_str(), t.weight))
        .collect();
    assert_eq!(ifs, vec![("eth1", None), ("eth2", Some(7))]);
    assert_eq!(
        (a.state, a.priority),
        (VrrpState::Backup, 100),
        "BACKUP without priority is 100"
    );
}

#[test]
fn every_checker_keeps_its_own_keywords_and_the_shared_ones() {
    let (conf, d) = fixture("checkers.conf");
    assert_eq!(d.exit_code(), 0, "{d}");
    let vs = &conf.virtual_servers[0];
    assert_eq!(vs.sched_flags, vec!["sh-port"]);
    assert!(vs.alpha && vs.omega && vs.inhibit_on_failure);
    assert_eq!((vs.quorum, vs.hysteresis), (2, 1));
    assert_eq!(vs.sorry_server, Some((ip("192.168.10.100"), Some(8443))));
    assert_eq!(
        vs.persistence_timeout,
        Some(360),
        "granularity implies 360 s"
    );
    let rs = &vs.real_servers[0];
    assert!(!rs.inhibit_on_failure, "the real server overrides");
    assert_eq!((rs.uthreshold, rs.lthreshold), (100, 10));
    let ssl = &rs.checkers[0];
    let CheckerKind::Ssl(h) = &ssl.kind else {
        panic!("{:?}", ssl.kind)
    };
    assert!(h.enable_sni);
    assert_eq!(h.urls[0].status_codes, vec![(200, 200)]);
    let c = &ssl.common;
    assert_eq!(
        (c.connect_ip, c.connect_port),
        (Some(ip("192.168.10.11")), Some(9443))
    );
    assert_eq!(
        (c.bindto, c.bind_port),
        (Some(ip("192.168.10.254")), Some(40000))
    );
    assert_eq!((c.connect_timeout, c.retry), (secs(2), 2));
    assert_eq!(
        (c.delay_before_retry, c.warmup, c.delay_loop),
        (Duration::from_millis(1500), secs(4), secs(10))
    );
    assert!(c.alpha, "alpha is inherited from the virtual server");
    let CheckerKind::Misc(m) = &rs.checkers[1].kind else {
        panic!()
    };
    assert_eq!((m.timeout, m.dynamic), (secs(5), true));
    let dns_vs = &conf.virtual_servers[1];
    let checks = &dns_vs.real_servers[0].checkers;
    let CheckerKind::Udp(u) = &checks[0].kind else {
        panic!()
    };
    assert_eq!(
        (
            u.payload.clone(),
            u.require_reply.clone(),
            u.min_reply_length,
            u.max_reply_length
        ),
        (Some(vec![0, 1]), Some(vec![0, 2]), 2, 255)
    );
    assert_eq!(
        (checks[0].common.retry, checks[0].common.delay_loop),
        (2, secs(5)),
        "from the virtual server"
    );
    let CheckerKind::Dns(dns) = &checks[1].kind else {
        panic!()
    };
    assert_eq!(
        (dns.qtype.as_str(), dns.name.as_str()),
        ("AAAA", "www.example.org")
    );
    assert_eq!(
        (
            checks[1].common.delay_loop,
            checks[1].common.delay_before_retry
        ),
        (secs(7), secs(7))
    );
    assert_eq!(
        checks[1].common.retry, 2,
        "the virtual server's retry overrides DNS_CHECK's 3"
    );
}

#[test]
fn one_line_form_is_refused_with_file_and_line_and_nothing_is_converted() {
    let imp = import(&data("oneline.conf"), &opts(), Some(ports()));
    let fatal: Vec<String> = imp
        .diags
        .at_least(Severity::Fatal)
        .map(|d| d.to_string())
        .collect();
    assert_eq!(fatal.len(), 2, "{}", imp.diags);
    assert!(
        fatal[0].contains("oneline.conf:1: fatal: state: extra arguments 'interface eth0"),
        "{fatal:?}"
    );
    assert!(
        fatal[1].contains("oneline.conf:2: fatal: delay_loop: extra arguments 'lb_algo rr"),
        "{fatal:?}"
    );
    assert_eq!(imp.diags.exit_code(), 4);
    assert!(imp.config.is_none());
}

// --------------------------------------------------------- lexical rules

#[test]
fn comments_start_at_hash_or_bang_outside_quotes_and_backslash_escapes_them() {
    let (conf, d) = text(
        "global_defs { # comment\n router_id a\\#b ! comment\n}\n\
         virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n \
         quorum_up \"/bin/echo #1 !2\"\n real_server 10.0.0.2 80 {\n }\n}\n",
    );
    assert!(d.at_least(Severity::Error).next().is_none(), "{d}");
    assert_eq!(conf.global.router_id.as_deref(), Some("a#b"));
    let q = conf.virtual_servers[0].quorum_up.as_ref().unwrap();
    assert_eq!(q.command, "/bin/echo #1 !2");
}

#[test]
fn lines_split_after_each_brace_so_a_block_can_sit_on_one_line() {
    let (conf, d) = text("global_defs { router_id X }\n");
    assert!(d.0.is_empty(), "{d}");
    assert_eq!(conf.global.router_id.as_deref(), Some("X"));
}

#[test]
fn quoted_strings_take_c_escapes_and_keep_spaces() {
    let (conf, d) = text("global_defs {\n router_id \"a b\\x41\\101\\t'\"\n}\n");
    assert!(d.0.is_empty(), "{d}");
    assert_eq!(conf.global.router_id.as_deref(), Some("a bAA\t'"));
    let (_, d) = text("global_defs {\n router_id \"open\n}\n");
    assert_eq!(lines(&d, Severity::Fatal), vec![2], "{d}");
}

#[test]
fn a_trailing_backslash_is_not_a_continuation_outside_parameter_definitions() {
    // keepalived 2.2.7: `delay_loop 3\` is "invalid number '3\'".
    let (conf, d) = text(
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n delay_loop 3\\\n real_server 10.0.0.2 80 {\n }\n}\n",
    );
    assert_eq!(lines(&d, Severity::Error), vec![5], "{d}");
    assert!(d.0[0].message.contains("invalid number '3\\'"), "{d}");
    let c = &conf.virtual_servers[0].real_servers[0];
    assert!(c.checkers.is_empty());
}

#[test]
fn parameters_substitute_recursively_at_use_and_multiline_definitions_expand() {
    let (conf, d) = fixture("params.conf");
    assert!(d.at_least(Severity::Error).next().is_none(), "{d}");
    let rs: Vec<_> = conf.virtual_servers[0]
        .real_servers
        .iter()
        .map(|r| (r.addr, r.port, r.weight))
        .collect();
    assert_eq!(
        rs,
        vec![
            (ip("192.168.10.1"), Some(8080), 2),
            (ip("192.168.10.2"), Some(8080), 5)
        ]
    );
    assert_eq!(
        conf.vrrp_instances[0].virtual_ipaddress[0].addr,
        ip("10.0.0.38")
    );
    // Substituted when used, not when defined; undefined names stay.
    let (conf, _) = text("$B=10.2.${SUB}\n$SUB=0\nglobal_defs {\n router_id ${B}.1-$UNDEF\n}\n");
    assert_eq!(conf.global.router_id.as_deref(), Some("10.2.0.1-$UNDEF"));
    let (_, d) = text("$A=${A}x\nglobal_defs {\n router_id $A\n}\n");
    assert_eq!(
        lines(&d, Severity::Fatal),
        vec![3],
        "a self-reference is bounded: {d}"
    );
}

/// Found by fuzzing (`keepalived` target, a 10 s timeout): a multi-line
/// parameter whose body names itself expanded a line at a time until the
/// million-line limit. Its nesting is bounded as `${A}` in a line is.
#[test]
fn a_multiline_parameter_that_names_itself_is_fatal_at_its_use_and_reading_stops() {
    let body = "$RS= \\\nreal_server 10.0.0.1 80 { \\\n$RS\nvirtual_server 10.0.0.1 80 {\n$RS\n}\n";
    let (conf, d) = text(body);
    let fatal: Vec<String> = d.at_least(Severity::Fatal).map(|x| x.to_string()).collect();
    assert!(
        fatal[0].starts_with("t.conf:5: fatal: parameter $RS is substituted more than"),
        "{d}"
    );
    // What it had opened before the bound is reported, and no more.
    assert!(fatal.len() <= 64, "{} diagnostics", fatal.len());
    assert!(conf
        .virtual_servers
        .iter()
        .all(|v| v.real_servers.len() <= 32));
    // Two self-references per expansion: one diagnostic (and the block
    // left open when reading stopped), no blow-up.
    let (_, d) = text("$A= \\\n$A \\\n$A\nglobal_defs {\n$A\n}\n");
    assert_eq!(lines(&d, Severity::Fatal), vec![5, 4], "{d}");
}

#[test]
fn conditional_lines_match_the_config_id_and_caret_negates() {
    // params.conf: `@main $PRIO=150`, `@^main $PRIO=50`.
    let (conf, _) = fixture("params.conf");
    assert_eq!(conf.vrrp_instances[0].priority, 150);
    let other = LexOptions {
        config_id: "backup".to_string(),
        includes: true,
    };
    let (conf, _) = load(&data("params.conf"), &other);
    assert_eq!(conf.vrrp_instances[0].priority, 50);
}

#[test]
fn include_globs_are_relative_to_the_including_file_with_brace_expansion() {
    let (conf, d) = fixture("include_glob.conf");
    let vips: Vec<_> = conf
        .virtual_servers
        .iter()
        .map(|v| v.addr.clone())
        .collect();
    assert_eq!(
        vips,
        vec![
            VsAddr::Ip {
                addr: ip("10.0.0.38"),
                port: 80
            },
            VsAddr::Ip {
                addr: ip("10.0.0.38"),
                port: 53
            },
            VsAddr::Ip {
                addr: ip("10.0.0.40"),
                port: 443
            },
        ]
    );
    // A diagnostic inside an included file names that file and its line.
    let e: Vec<String> = d.at_least(Severity::Error).map(|x| x.to_string()).collect();
    assert_eq!(e.len(), 1, "{d}");
    assert!(
        e[0].contains("conf.d/extra.inc:8: error: Unknown keyword 'bogus_in_included'"),
        "{e:?}"
    );
    // A plain include of missing files only warns (keepalived's rule).
    assert_eq!(lines(&d, Severity::Warning).len(), 3);
    assert_eq!(d.exit_code(), 5);
    // Nested: sub/a.conf includes b.conf → sub/b.conf, not ./b.conf.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("main.conf"), "include sub/a.conf\n").unwrap();
    std::fs::write(dir.path().join("sub/a.conf"), "include b.conf\n").unwrap();
    std::fs::write(
        dir.path().join("sub/b.conf"),
        "global_defs {\n router_id nested\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.conf"),
        "global_defs {\n router_id wrong\n}\n",
    )
    .unwrap();
    let (conf, d) = load(&dir.path().join("main.conf"), &opts());
    assert!(d.0.is_empty(), "{d}");
    assert_eq!(conf.global.router_id.as_deref(), Some("nested"));
}

#[test]
fn an_include_loop_is_fatal_at_the_include_line() {
    let (_, d) = fixture("include_loop_a.conf");
    let f: Vec<String> = d.at_least(Severity::Fatal).map(|x| x.to_string()).collect();
    assert_eq!(f.len(), 1, "{d}");
    assert!(
        f[0].starts_with(&format!(
            "{}:1: fatal: include loop",
            data("include_loop_b.conf").display()
        )),
        "{f:?}"
    );
    assert_eq!(d.exit_code(), 4);
}

#[test]
fn a_strict_include_that_matches_nothing_exits_6_and_refuses_to_start() {
    let (_, d) = fixture("includem_missing.conf");
    assert_eq!(lines(&d, Severity::StrictInclude), vec![1], "{d}");
    assert_eq!(d.exit_code(), 6);
    assert!(!d.can_start());
}

// ------------------------------------------------------ defaults, errors

#[test]
fn a_virtual_server_without_protocol_scheduler_or_method_gets_udp_wlc_nat_with_warnings() {
    let (conf, d) = text("virtual_server 10.0.0.1 53 {\n real_server 10.0.0.2 53 {\n }\n}\n");
    let vs = &conf.virtual_servers[0];
    assert_eq!(
        (vs.protocol, vs.lb_algo.as_str(), &vs.lb_kind),
        (Protocol::Udp, "wlc", &LbKind::Nat)
    );
    assert_eq!(d.at_least(Severity::Warning).count(), 3, "{d}");
    assert_eq!(
        d.exit_code(),
        5,
        "keepalived -t counts each default as an error"
    );
    assert!(d.can_start(), "and runs with the defaults");
    let (conf, _) = text("virtual_server 10.0.0.1 0 {\n protocol TCP\n real_server 10.0.0.2 {\n }\n}\nvirtual_server 10.0.0.1 1 {\n protocol TCP\n persistence_timeout\n real_server 10.0.0.2 {\n }\n}\n");
    let (_, d) = text("virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n}\n");
    assert_eq!(d.0.len(), 1, "{d}");
    assert!(
        d.0[0].message.contains("has no real servers - ignoring"),
        "{d}"
    );
    assert_eq!(
        conf.virtual_servers[0].persistence_timeout,
        Some(360),
        "port 0 forces 360 s"
    );
    assert_eq!(
        conf.virtual_servers[1].persistence_timeout,
        Some(360),
        "bare keyword = 360 s"
    );
}

#[test]
fn checker_timing_is_inherited_from_real_and_virtual_server_with_each_checkers_defaults() {
    let (conf, d) = text(
        "virtual_server 10.0.0.1 53 {\n protocol UDP\n lb_algo rr\n lb_kind NAT\n delay_loop 2\n \
         real_server 10.0.0.2 53 {\n  connect_timeout 7\n  DNS_CHECK {\n  }\n  MISC_CHECK {\n   misc_path \"/bin/true x\"\n   misc_dynamic\n  }\n  UDP_CHECK {\n   retry 4\n   require_reply 0a0b\n  }\n }\n}\n",
    );
    assert!(d.at_least(Severity::Error).next().is_none(), "{d}");
    let c = &conf.virtual_servers[0].real_servers[0].checkers;
    // DNS_CHECK: retry 3, delay_before_retry = delay_loop, type SOA, name ".".
    assert_eq!(
        (c[0].common.retry, c[0].common.delay_before_retry),
        (3, secs(2))
    );
    assert_eq!(c[0].common.connect_timeout, secs(7), "from the real server");
    let CheckerKind::Dns(dns) = &c[0].kind else {
        panic!()
    };
    assert_eq!((dns.qtype.as_str(), dns.name.as_str()), ("SOA", "."));
    // MISC_CHECK: retry 0, misc_timeout = delay_loop.
    let CheckerKind::Misc(m) = &c[1].kind else {
        panic!()
    };
    assert_eq!(
        (c[1].common.retry, m.timeout, m.dynamic),
        (0, secs(2), true)
    );
    assert_eq!(m.path.as_ref().unwrap().command, "/bin/true x");
    let CheckerKind::Udp(u) = &c[2].kind else {
        panic!()
    };
    assert_eq!(
        (c[2].common.retry, u.require_reply.clone()),
        (4, Some(vec![10, 11]))
    );
    // Scripts without enable_script_security: keepalived -t exits 6.
    assert_eq!(d.exit_code(), 6);
    assert!(d.can_start());
}

#[test]
fn unbalanced_braces_are_fatal_with_the_line_of_the_open_or_extra_brace() {
    let (_, d) = fixture("unbalanced_open.conf");
    assert_eq!(lines(&d, Severity::Fatal), vec![1], "{d}");
    assert!(d.0[0]
        .message
        .contains("'global_defs' opened here is not closed"));
    let (_, d) = fixture("unbalanced_close.conf");
    assert_eq!(lines(&d, Severity::Fatal), vec![4], "{d}");
    assert_eq!(d.exit_code(), 4);
}

#[test]
fn unknown_keywords_and_bad_values_are_errors_at_their_lines_and_defaults_stay() {
    let (_, d) = fixture("unknown_keyword.conf");
    assert_eq!(lines(&d, Severity::Error), vec![3, 9], "{d}");
    assert_eq!(d.exit_code(), 5);
    let (conf, d) = fixture("bad_value.conf");
    assert_eq!(
        lines(&d, Severity::Error),
        vec![3, 4, 5, 7, 1, 1],
        "the defaults count as errors: {d}"
    );
    let vs = &conf.virtual_servers[0];
    assert_eq!((vs.lb_algo.as_str(), &vs.lb_kind), ("wlc", &LbKind::Nat));
    assert_eq!(vs.real_servers[0].weight, 1);
    let (_, d) = text("vrrp_instance V {\n virtual_router_id 256\n priority 0\n}\n");
    assert_eq!(lines(&d, Severity::Error), vec![2, 3, 1], "{d}");
}

// ------------------------------------------------------------ conversion

#[test]
fn fnat_with_a_local_address_group_becomes_fullnat_with_laddrs_on_the_named_port() {
    let imp = import(&data("fnat_dpvs.conf"), &opts(), Some(ports()));
    assert_eq!(imp.diags.exit_code(), 0, "{}", imp.diags);
    let s = &imp.config.expect("starts").services[0];
    assert_eq!(s.dests[0].fwd, Fwd::FullNat);
    let l: Vec<_> = s
        .laddrs
        .iter()
        .map(|l| (l.addr, l.ifname.clone()))
        .collect();
    let dpdk0 = Some("dpdk0".to_string());
    assert_eq!(
        l,
        vec![
            (ip("192.168.100.200"), dpdk0.clone()),
            (ip("192.168.100.201"), dpdk0.clone()),
            (ip("192.168.100.202"), dpdk0)
        ]
    );
}

#[test]
fn a_virtual_server_group_expands_to_one_service_per_address_and_port() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("g.conf");
    std::fs::write(
        &f,
        "virtual_server_group web {\n 10.0.0.1-3 80\n 10.0.1.0/31 443\n}\n\
         virtual_server group web {\n protocol TCP\n lb_algo rr\n lb_kind DR\n real_server 10.0.0.20 {\n weight 2\n }\n}\n",
    )
    .unwrap();
    let imp = import(&f, &opts(), None);
    let keys: Vec<_> = imp
        .config
        .expect("starts")
        .services
        .iter()
        .map(|s| (s.vip.0, s.port, s.dests.len()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (ip("10.0.0.1"), 80, 1),
            (ip("10.0.0.2"), 80, 1),
            (ip("10.0.0.3"), 80, 1),
            (ip("10.0.1.0"), 443, 1),
            (ip("10.0.1.1"), 443, 1)
        ]
    );
}

#[test]
fn what_rvs_cannot_carry_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.conf");
    std::fs::write(
        &f,
        "virtual_server fwmark 1 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n real_server 10.0.0.5 {\n }\n}\n\
         virtual_server 10.0.0.1 80 {\n protocol SCTP\n lb_algo rr\n lb_kind DR\n real_server 10.0.0.5 {\n }\n}\n\
         vrrp_instance V {\n interface eth9\n virtual_router_id 9\n}\n\
         virtual_server 10.0.0.2 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n real_server 10.0.0.3 80 {\n  weight 70000\n  SMTP_CHECK {\n  }\n }\n}\n",
    )
    .unwrap();
    let imp = import(&f, &opts(), Some(ports()));
    assert_eq!(
        lines(&imp.diags, Severity::Fatal),
        vec![25, 15, 1, 8, 23],
        "{}",
        imp.diags
    );
    assert!(imp.config.is_none());
    // Every interface name of an instance is a port: its addresses' `dev`
    // and its tracked interfaces too.
    std::fs::write(
        &f,
        "vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  10.0.0.38 dev eth7\n  10.0.0.39 dev eth0\n }\n track_interface {\n  eth8\n }\n}\n",
    )
    .unwrap();
    let imp = import(&f, &opts(), Some(ports()));
    assert_eq!(
        lines(&imp.diags, Severity::Fatal),
        vec![5, 9],
        "{}",
        imp.diags
    );
    assert!(imp
        .diags
        .to_string()
        .contains("interface 'eth7' is not a port"));
    // A YAML with services of its own is refused (one source per fact).
    let mut with_services = ports();
    with_services.services.push(Default::default());
    let imp = import(&data("lvs_dr_tcp_check.conf"), &opts(), Some(with_services));
    assert!(imp.config.is_none(), "{}", imp.diags);
}

// ---------------------------------------------------------------- lbd

/// Runs lbd with `args` (bounded: 20 s), returning its exit code and output.
fn lbd_bounded(args: &[&str], dir: &Path) -> (i32, String) {
    let mut cmd = Command::new(LBD);
    cmd.args(args).current_dir(data(""));
    let log = dir.join("lbd.log");
    let mut proc = Proc::spawn("lbd", cmd, &log);
    let status = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        proc.try_wait()
    })
    .unwrap_or_else(|| panic!("lbd {args:?} did not exit:\n{}", proc.log_text()));
    (status.code().unwrap_or(-1), proc.log_text())
}

#[test]
fn lbd_check_config_keepalived_exits_with_keepalived_codes_and_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, i32, &str)] = &[
        (
            "lvs_dr_tcp_check.conf",
            5,
            "lvs_dr_tcp_check.conf:13: error: number '0' outside range",
        ),
        (
            "vrrp_and_lvs.conf",
            5,
            "vrrp_and_lvs.conf: configuration OK (2 ports, 1 workers, 1 services, 2 real servers)",
        ),
        ("fnat_dpvs.conf", 0, "configuration OK"),
        (
            "oneline.conf",
            4,
            "oneline.conf:1: fatal: state: extra arguments",
        ),
        (
            "unbalanced_open.conf",
            4,
            "unbalanced_open.conf:1: fatal: missing '}'",
        ),
        (
            "unbalanced_close.conf",
            4,
            "unbalanced_close.conf:4: fatal: Extra '}'",
        ),
        (
            "unknown_keyword.conf",
            5,
            "unknown_keyword.conf:9: error: Unknown keyword 'delay_lop'",
        ),
        (
            "bad_value.conf",
            5,
            "bad_value.conf:7: error: weight: number '-3' outside range",
        ),
        (
            "include_loop_a.conf",
            4,
            "include_loop_b.conf:1: fatal: include loop",
        ),
        (
            "includem_missing.conf",
            6,
            "includem_missing.conf:1: error: includem: Config files missing",
        ),
        (
            "missing_main_file.conf",
            4,
            "cannot read configuration file missing_main_file.conf",
        ),
    ];
    for (file, code, needle) in cases {
        let (got, out) = lbd_bounded(
            &[
                "--check-config",
                "--keepalived",
                file,
                "-c",
                "ports.yaml",
                "--config-id",
                "main",
            ],
            dir.path(),
        );
        assert_eq!(got, *code, "{file}:\n{out}");
        assert!(out.contains(needle), "{file}: {needle:?} not in:\n{out}");
    }
}

#[test]
fn lbd_keepalived_refuses_a_malformed_file_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lbd.sock");
    for file in [
        "oneline.conf",
        "unbalanced_open.conf",
        "include_loop_a.conf",
        "includem_missing.conf",
    ] {
        let (code, out) = lbd_bounded(
            &[
                "--keepalived",
                file,
                "-c",
                "ports.yaml",
                "--socket",
                socket.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_ne!(code, 0, "{file}:\n{out}");
        assert!(
            out.contains("refused") && out.contains("nothing started"),
            "{file}:\n{out}"
        );
        assert!(!socket.exists(), "{file}: a control socket was created");
    }
}

#[test]
fn lbd_keepalived_serves_the_guides_virtual_server_with_its_real_servers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lbd.sock");
    let mut cmd = Command::new(LBD);
    cmd.arg("--keepalived")
        .arg(data("lvs_guide.conf"))
        .arg("-c")
        .arg(data("ports_mem.yaml"))
        .arg("--socket")
        .arg(&socket);
    let lbd = Lbd::start(
        "lbd --keepalived",
        cmd,
        &socket,
        &dir.path().join("lbd.log"),
    );
    let listing = lbctl(lbd.socket(), &["-ln"]);
    let lines: Vec<Vec<&str>> = listing
        .lines()
        .skip(3)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], vec!["TCP", "10.0.0.38:80", "wrr"], "{listing}");
    assert_eq!(lines[1][1..4], ["10.0.0.21:80", "Route", "3"], "{listing}");
    assert_eq!(lines[2][1..4], ["10.0.0.22:80", "Route", "1"], "{listing}");
    lbd.stop_cleanly();
}

/// VRRP cannot run without the director's kernel path: an instance whose
/// port has no `kernel_if` is refused at the instance's line, and nothing
/// starts. (The full guide with VRRP starts in tests/ha_failover.rs, as
/// root, on ports with kernel interfaces.)
#[test]
fn lbd_keepalived_refuses_a_vrrp_instance_on_a_port_without_kernel_if() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lbd.sock");
    let (code, out) = lbd_bounded(
        &[
            "--keepalived",
            "vrrp_and_lvs.conf",
            "-c",
            "ports_mem.yaml",
            "--socket",
            socket.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(
            "vrrp_and_lvs.conf:14: fatal: vrrp_instance VI_1: port 'eth0' has no kernel_if"
        ),
        "{out}"
    );
    assert!(
        out.contains("vrrp_and_lvs.conf:21: error: Truncating auth_pass"),
        "{out}"
    );
    assert!(!socket.exists(), "a control socket was created");
}

// ------------------------------------------------- parity with keepalived

/// `(file name, line)` of every diagnostic `keepalived -t` prints with a
/// line; a line without a file name is the main file's.
fn keepalived_lines(stderr: &str, main: &str) -> BTreeSet<(String, u32)> {
    let mut out = BTreeSet::new();
    for l in stderr.lines() {
        let Some(start) = l.find('(') else { continue };
        let Some(end) = l[start..].find(')') else {
            continue;
        };
        let inner = &l[start + 1..start + end];
        let (file, line) = match inner.rsplit_once("Line ") {
            Some((f, n)) => (f.trim_end_matches(": ").trim(), n),
            None => continue,
        };
        let Ok(n) = line.trim().parse::<u32>() else {
            continue;
        };
        let file = if file.is_empty() { main } else { file };
        let name = Path::new(file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.insert((name, n));
    }
    out
}

#[test]
fn keepalived_t_diagnoses_the_same_lines_with_the_same_exit_code() {
    const KEEPALIVED: &str = "/usr/sbin/keepalived";
    if !Path::new(KEEPALIVED).exists() {
        assert!(
            !support::under_ci() && support::process::euid() != 0,
            "{KEEPALIVED} is not installed (apt-get install keepalived): CI compares with it"
        );
        println!("skipping: {KEEPALIVED} is not installed and this is not CI");
        return;
    }
    // Files rvs reads as keepalived does. Not here, by design: the one-line
    // form, unbalanced braces and include loops (rvs refuses them, exit 4,
    // where keepalived guesses and exits 5 or 0) and the DPVS words.
    let parity = [
        "lvs_dr_tcp_check.conf",
        "lvs_nat_http_get.conf",
        "vrrp_and_lvs.conf",
        "unknown_keyword.conf",
        "bad_value.conf",
        "include_glob.conf",
        "includem_missing.conf",
        "params.conf",
        "vrrp_full.conf",
        "checkers.conf",
    ];
    // And small files, one keepalived default or check each.
    let snippets = [
        "virtual_server 10.0.0.1 53 {\n real_server 10.0.0.2 53 {\n }\n}\n",
        "virtual_server 10.0.0.1 53 {\n protocol UDP\n lb_algo rr\n lb_kind NAT\n}\n",
        "virtual_server 10.0.0.1 0 {\n protocol TCP\n lb_algo rr\n lb_kind NAT\n real_server 10.0.0.2 {\n }\n}\n",
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n persistence_timeout\n real_server 10.0.0.2 80 {\n  weight 0\n }\n}\n",
        "vrrp_instance V {\n virtual_router_id 256\n priority 0\n}\n",
        "vrrp_instance V {\n interface eth0\n virtual_router_id 3\n advert_int 1.5\n virtual_ipaddress {\n 10.1.1.1\n }\n}\n",
        "vrrp_instance V {\n state MASTER\n interface eth0\n virtual_router_id 3\n priority 100\n nopreempt\n virtual_ipaddress {\n 10.1.1.1/24 dev eth0\n }\n}\n",
        "global_defs {\n router_id a\n}\nglobal_defs {\n router_id b\n bogus\n}\n",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, PathBuf)> =
        parity.iter().map(|f| (f.to_string(), data(""))).collect();
    for (i, body) in snippets.iter().enumerate() {
        let name = format!("snippet{i}.conf");
        std::fs::write(dir.path().join(&name), body).unwrap();
        files.push((name, dir.path().to_path_buf()));
    }
    // keepalived checks that `interface eth0` exists on the host: as root
    // it runs in a network namespace of its own with an eth0 (a veth, gone
    // with the namespace when keepalived exits); otherwise the host needs one.
    let isolated = support::process::euid() == 0 && support::process::on_path("unshare");
    if !isolated && !Path::new("/sys/class/net/eth0").exists() {
        assert!(
            !support::under_ci(),
            "CI runs as root: unshare must be installed"
        );
        println!("skipping: not root and this host has no eth0 for keepalived's interface check");
        return;
    }
    for (file, cwd) in &files {
        let file = file.as_str();
        let mut cmd = if isolated {
            let mut c = Command::new("unshare");
            c.args(["--net", "--", "sh", "-c"]).arg(format!(
                "ip link add eth0 type veth peer name eth0p && exec {KEEPALIVED} -t -n -l -P -i main -f {file}"
            ));
            c
        } else {
            let mut c = Command::new(KEEPALIVED);
            c.args(["-t", "-n", "-l", "-P", "-i", "main", "-f", file]);
            c
        };
        let out = cmd.current_dir(cwd).output().expect("run keepalived -t");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ka_code = out.status.code().unwrap_or(-1);
        let ka_lines = keepalived_lines(&stderr, file);
        let (_, diags) = load(&cwd.join(file), &opts());
        assert_eq!(
            i32::from(diags.exit_code()),
            ka_code,
            "{file}: exit code\nkeepalived:\n{stderr}\nrvs:\n{diags}"
        );
        assert_eq!(
            diags.keepalived_lines(),
            ka_lines,
            "{file}: diagnosed lines\nkeepalived:\n{stderr}\nrvs:\n{diags}"
        );
    }
}

// ----------------------------------------------------------- robustness

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 200, ..Default::default() })]

    /// Text made of keepalived's own words, braces, quotes, comments,
    /// parameters and conditionals in any order never panics the reader,
    /// and every invariant of the `keepalived` fuzz target holds.
    #[test]
    fn any_arrangement_of_keepalived_words_is_read_without_panic(
        words in proptest::collection::vec(
            "(global_defs|virtual_server|virtual_server_group|real_server|vrrp_instance|vrrp_script|\
              TCP_CHECK|HTTP_GET|MISC_CHECK|url|path|status_code|retry|nb_get_retry|weight|\
              persistence_timeout|protocol|TCP|UDP|lb_kind|DR|FNAT|lb_algo|rr|state|MASTER|priority|\
              virtual_router_id|virtual_ipaddress|authentication|auth_pass|include|\\{|\\}|\"|'|#|!|\\\\|\
              \\$A=|\\$A|\\$\\{A\\}|\\$B= \\\\|@main|@\\^main|10\\.0\\.0\\.1|10\\.0\\.0\\.1-3|80|0|-1|\
              4294967296|1\\.5|\n| )",
            0..80,
        )
    ) {
        let text: String = words.concat();
        rvs::fuzz_targets::keepalived(text.as_bytes());
    }
}

/// keepalived's `lvs_sync_daemon IF VI [id N] ...`: one sync daemon that
/// follows the instance (`id` defaults to its VRID), leaving by the port's
/// kernel interface; without an instance, a master and a backup; an
/// unknown instance is fatal at the keyword's line.
#[test]
fn lvs_sync_daemon_becomes_a_sync_daemon_that_follows_its_vrrp_instance() {
    use rvs::sync::conf::SyncRole;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.conf");
    let vrrp = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.38\n }\n}\n";
    std::fs::write(
        &f,
        format!("global_defs {{\n lvs_sync_daemon eth0 VI_1 maxlen 1400 ttl 2\n}}\n{vrrp}"),
    )
    .unwrap();
    let imp = import(&f, &opts(), Some(ports()));
    let config = imp.config.expect("imports");
    assert_eq!(config.sync.len(), 1, "{:?}", config.sync);
    let s = &config.sync[0];
    assert_eq!(s.vrrp_instance.as_deref(), Some("VI_1"));
    assert_eq!(s.role, SyncRole::Backup);
    assert_eq!(s.syncid, 51);
    assert_eq!(s.interface.as_deref(), Some("keth0"));
    assert_eq!((s.maxlen, s.ttl), (1400, 2));
    std::fs::write(
        &f,
        format!("global_defs {{\n lvs_sync_daemon sync0 id 7 group 224.0.0.82\n}}\n{vrrp}"),
    )
    .unwrap();
    let config = import(&f, &opts(), Some(ports())).config.expect("imports");
    let roles: Vec<SyncRole> = config.sync.iter().map(|s| s.role).collect();
    assert_eq!(roles, vec![SyncRole::Master, SyncRole::Backup]);
    assert!(config.sync.iter().all(|s| s.syncid == 7
        && s.interface.as_deref() == Some("sync0")
        && s.group.to_string() == "224.0.0.82"
        && s.vrrp_instance.is_none()));
    std::fs::write(
        &f,
        format!("global_defs {{\n lvs_sync_daemon eth0 VI_9\n}}\n{vrrp}"),
    )
    .unwrap();
    let imp = import(&f, &opts(), Some(ports()));
    assert_eq!(lines(&imp.diags, Severity::Fatal), vec![2], "{}", imp.diags);
    assert!(imp
        .diags
        .to_string()
        .contains("VI_9 is not a vrrp_instance"));
}
