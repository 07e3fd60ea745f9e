//! The announcement's rules on an in-process daemon (mem ports); `birdc`
//! is a shell command that records each run (the real BIRD runs in
//! `tests/ecmp.rs`).

use super::*;
use crate::ctl::apply::DestHealth;
use crate::ctl::config::Config;
use crate::ctl::ipvsadm::{parse_args_as, Command, Dialect};
use crate::ctl::protocol::{DestSpec, ServiceKey};
use crate::daemon::{Daemon, DaemonOptions};

const VIP_A: &str = "10.0.0.100";
const VIP_B: &str = "10.0.0.101";

fn config(dir: &Path, announce: Option<AnnounceConf>) -> Config {
    let yaml = format!(
        "socket: {sock}\n\
         workers: {{ count: 1 }}\n\
         ports:\n\
         \x20 - {{ name: lan, driver: mem, addrs: [192.168.10.254/24] }}\n\
         services:\n\
         \x20 - {{ proto: tcp, vip: {VIP_A}, port: 80, scheduler: mh,\n\
         \x20     dests: [{{ addr: 192.168.10.1, port: 80, fwd: route }}] }}\n\
         \x20 - {{ proto: tcp, vip: {VIP_B}, port: 80, scheduler: rr,\n\
         \x20     dests: [{{ addr: 192.168.10.2, port: 80, fwd: route, weight: 0 }}] }}\n",
        sock = dir.join("lbd.sock").display()
    );
    let mut c = Config::from_yaml(&yaml).expect("test configuration");
    c.announce = announce;
    c
}

/// An `announce:` whose command appends the include to `runs.log`, one
/// block per run.
fn recording(dir: &Path) -> AnnounceConf {
    let include = dir.join("vips.conf");
    let log = dir.join("runs.log");
    AnnounceConf {
        birdc: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "grep -h route {} >> {log} ; echo RUN >> {log}",
                include.display(),
                log = log.display()
            ),
        ],
        ..AnnounceConf::new(include)
    }
}

/// The routes each recorded run saw.
fn runs(dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("runs.log")).unwrap_or_default();
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        if line == "RUN" {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(line.trim().to_string());
        }
    }
    out
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Applies one `lbctl` command line (its arguments, split on spaces).
fn lbctl(daemon: &Daemon, line: &str) {
    let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let Ok(Command::Apply(request)) = parse_args_as(&args, Dialect::Lbctl) else {
        panic!("not a change: {args:?}");
    };
    let answer = daemon.control().handle(&request);
    assert!(matches!(answer, Response::Ok { .. }), "{answer:?}");
}

fn route(vip: &str) -> String {
    format!("route {vip}/32 blackhole;")
}

#[test]
fn servable_vips_are_services_with_a_live_server_of_weight_above_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = config(dir.path(), None).check().expect("state");
    let a: IpAddr = VIP_A.parse().expect("vip");
    let b: IpAddr = VIP_B.parse().expect("vip");
    assert_eq!(
        servable_vips(&state),
        BTreeSet::from([a]),
        "B's only server has weight 0"
    );
    let key = ServiceKey {
        proto: crate::conntrack::Proto::Tcp,
        addr: a,
        port: 80,
    };
    let rs: IpAddr = "192.168.10.1".parse().expect("rip");
    let dead = DestHealth {
        alive: false,
        inhibit: false,
        weight: None,
    };
    state.set_health(&key, &rs, 80, Some(dead)).expect("dead");
    assert!(servable_vips(&state).is_empty(), "A's server is dead");
    state.set_health(&key, &rs, 80, None).expect("alive");
    assert_eq!(servable_vips(&state), BTreeSet::from([a]));
    let sorry = DestSpec::new("192.168.10.9".parse().expect("sorry"), 80);
    state.set_sorry(&key, Some(&sorry)).expect("sorry");
    assert!(
        servable_vips(&state).is_empty(),
        "quorum lost: the sorry server does not count as serving"
    );
    state.set_sorry(&key, None).expect("quorum back");
    state.set_standby(vec![a]);
    assert!(servable_vips(&state).is_empty(), "VRRP standby VIP");
    let _ = b;
}

#[test]
fn include_holds_one_static_protocol_per_family_with_host_routes() {
    let conf = AnnounceConf::new("/run/rvs/bird-vips.conf");
    let vips: BTreeSet<IpAddr> = ["10.0.0.100", "2001:db8::100", "10.0.0.7"]
        .iter()
        .map(|a| a.parse().expect("addr"))
        .collect();
    let text = render_include(&conf, &vips);
    assert!(
        text.contains(
            "protocol static rvs_vips4 {\n  ipv4;\n  route 10.0.0.7/32 blackhole;\n  route 10.0.0.100/32 blackhole;\n}\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "protocol static rvs_vips6 {\n  ipv6;\n  route 2001:db8::100/128 blackhole;\n}\n"
        ),
        "{text}"
    );
    let empty = render_include(&conf, &BTreeSet::new());
    assert!(!empty.contains("route"), "{empty}");
    assert!(empty.contains("protocol static rvs_vips4 {\n  ipv4;\n}"));
}

#[test]
fn include_is_replaced_atomically_leaving_no_temporary_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vips.conf");
    write_atomically(&path, "one\n").expect("write");
    write_atomically(&path, "two\n").expect("rewrite");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "two\n");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("vips.conf")]);
    let err = write_atomically(&dir.path().join("no/such/dir/x"), "x").unwrap_err();
    assert!(err.to_string().contains("cannot write"), "{err}");
}

#[test]
fn a_command_that_hangs_is_killed_at_its_timeout_and_a_failure_is_reported() {
    let started = Instant::now();
    let err = run_command(&["sleep".into(), "5".into()], Duration::from_millis(200)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "bounded");
    assert!(err.to_string().contains("killed"), "{err}");
    let err = run_command(
        &["sh".into(), "-c".into(), "echo syntax error; exit 1".into()],
        BIRDC_TIMEOUT,
    )
    .unwrap_err();
    assert!(err.to_string().contains("syntax error"), "{err}");
    let err = run_command(&["/nonexistent/birdc".into()], BIRDC_TIMEOUT).unwrap_err();
    assert!(err.to_string().contains("cannot run"), "{err}");
}

#[test]
fn birdc_runs_only_when_the_announced_set_changes_and_stop_withdraws_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(
        &config(dir.path(), Some(recording(dir.path()))),
        DaemonOptions::default(),
    )
    .expect("start");
    wait_for("the first run", || {
        (runs(dir.path()).len() == 1).then_some(())
    });
    assert_eq!(runs(dir.path())[0], [route(VIP_A)]);
    // B gains a weighted server: announced; A loses its only one: withdrawn.
    lbctl(&daemon, "-e -t 10.0.0.101:80 -r 192.168.10.2:80 -g -w 1");
    wait_for("the second run", || {
        (runs(dir.path()).len() == 2).then_some(())
    });
    lbctl(&daemon, "-e -t 10.0.0.100:80 -r 192.168.10.1:80 -g -w 0");
    wait_for("the third run", || {
        (runs(dir.path()).len() == 3).then_some(())
    });
    // A table change that leaves the set as it is runs nothing; the next
    // run is the next change's.
    lbctl(&daemon, "-e -t 10.0.0.101:80 -r 192.168.10.2:80 -g -w 5");
    lbctl(&daemon, "-D -t 10.0.0.101:80");
    wait_for("the fourth run", || {
        (runs(dir.path()).len() == 4).then_some(())
    });
    let r = runs(dir.path());
    assert_eq!(
        r,
        [
            vec![route(VIP_A)],
            vec![route(VIP_A), route(VIP_B)],
            vec![route(VIP_B)],
            vec![],
        ]
    );
    lbctl(&daemon, "-e -t 10.0.0.100:80 -r 192.168.10.1:80 -g -w 1");
    wait_for("the fifth run", || {
        (runs(dir.path()).len() == 5).then_some(())
    });
    // The command wrote its record before lbd saw it exit.
    let status = wait_for("the fifth set in force", || {
        let Response::Announce { status } = daemon.control().handle(&Request::Announce) else {
            panic!("not an announce answer");
        };
        (status.announced == [VIP_A.parse::<IpAddr>().expect("vip")]).then_some(status)
    });
    assert!(
        !status.draining && status.last_error.is_none(),
        "{status:?}"
    );
    let started = Instant::now();
    daemon.stop().expect("stop");
    assert!(started.elapsed() < Duration::from_secs(2));
    let r = runs(dir.path());
    assert_eq!(r.len(), 6, "stop withdraws: {r:?}");
    assert!(r[5].is_empty(), "{r:?}");
}

#[test]
fn a_failing_birdc_is_reported_and_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("bird-up");
    let conf = AnnounceConf {
        birdc: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "test -e {} || {{ echo BIRD is down; exit 1; }}",
                flag.display()
            ),
        ],
        ..AnnounceConf::new(dir.path().join("vips.conf"))
    };
    let daemon =
        Daemon::start(&config(dir.path(), Some(conf)), DaemonOptions::default()).expect("start");
    let status = || {
        let Response::Announce { status } = daemon.control().handle(&Request::Announce) else {
            panic!("not an announce answer");
        };
        status
    };
    let err = wait_for("the error", || status().last_error);
    assert!(err.contains("BIRD is down"), "{err}");
    assert!(status().announced.is_empty());
    std::fs::write(&flag, "").expect("flag");
    wait_for("the retry", || {
        (!status().announced.is_empty()).then_some(())
    });
    assert_eq!(status().last_error, None);
    daemon.stop().expect("stop");
}

#[test]
fn drain_withdraws_first_and_ends_when_no_connection_is_active() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(
        &config(dir.path(), Some(recording(dir.path()))),
        DaemonOptions::default(),
    )
    .expect("start");
    wait_for("the first run", || {
        (runs(dir.path()).len() == 1).then_some(())
    });
    let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = called.clone();
    daemon
        .announcer()
        .set_on_drained(Box::new(move || flag.store(true, Relaxed)));
    let started = Instant::now();
    let Response::Announce { status } = daemon.control().handle(&Request::Drain {
        timeout_secs: Some(20),
    }) else {
        panic!("not an announce answer");
    };
    assert!(status.draining, "{status:?}");
    wait_for("the drain to end", || called.load(Relaxed).then_some(()));
    assert!(started.elapsed() >= DRAIN_GRACE, "routes withdrawn first");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not the timeout"
    );
    assert!(daemon.announcer().drained());
    assert_eq!(runs(dir.path()).last(), Some(&vec![]), "withdrawn");
    // Draining: a table change announces nothing.
    lbctl(&daemon, "-e -t 10.0.0.101:80 -r 192.168.10.2:80 -g -w 1");
    let Response::Announce { status } = daemon.control().handle(&Request::Announce) else {
        panic!("not an announce answer");
    };
    assert!(status.announced.is_empty(), "{status:?}");
    let too_long = daemon.control().handle(&Request::Drain {
        timeout_secs: Some(MAX_DRAIN_TIMEOUT.as_secs() + 1),
    });
    assert!(matches!(too_long, Response::Error { .. }), "{too_long:?}");
    daemon.stop().expect("stop");
}

#[test]
fn lbctl_drain_arguments_parse_with_an_optional_timeout() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        parse_drain_args(&args(&["--drain"])),
        Some(Ok(Request::Drain { timeout_secs: None }))
    );
    assert_eq!(
        parse_drain_args(&args(&["--drain", "--drain-timeout", "5"])),
        Some(Ok(Request::Drain {
            timeout_secs: Some(5)
        }))
    );
    assert!(matches!(
        parse_drain_args(&args(&["--drain", "--drain-timeout", "x"])),
        Some(Err(_))
    ));
    assert_eq!(parse_drain_args(&args(&["-Ln"])), None);
}

#[test]
fn a_reload_that_changes_the_announce_block_says_it_needs_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = config(dir.path(), Some(AnnounceConf::new("/run/a.conf")));
    let next = config(dir.path(), Some(AnnounceConf::new("/run/b.conf")));
    assert_eq!(
        crate::daemon::reload::restart_only(&running, &next),
        ["announce changed: restart lbd to apply it"]
    );
    assert!(crate::daemon::reload::restart_only(&running, &running).is_empty());
}

#[test]
fn a_hanging_birdc_does_not_hold_up_the_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = AnnounceConf {
        birdc: vec!["sleep".into(), "30".into()],
        ..AnnounceConf::new(dir.path().join("vips.conf"))
    };
    let daemon =
        Daemon::start(&config(dir.path(), Some(conf)), DaemonOptions::default()).expect("start");
    // The first run hangs (BIRD wedged); lbd must still stop in time.
    wait_for("the include", || {
        dir.path().join("vips.conf").exists().then_some(())
    });
    let started = Instant::now();
    daemon.stop().expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped in {:?}",
        started.elapsed()
    );
}
