//! `lbd` stops within 2 s of SIGTERM after the interfaces of its ports
//! vanished (issue 17 item 5): the real `lbd` binary in a network namespace
//! of its own, on TAP and AF_PACKET ports whose links the test deletes
//! while lbd runs. lbd must keep serving `lbctl` (port statistics too) and
//! exit by itself, successfully, within the bound. Needs root (CI runs as
//! root); elsewhere the tests print why they skip. Serialised with
//! `support::serial`: busy-polling workers compete for the two cores.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::lbd::{lbctl, port_stats, Lbd, LBD};
use support::netns::Netns;
use support::world::{LbdYaml, PortYaml, WorkersYaml, STATIC_TABLES};

/// Starts lbd inside `ns` on `config` (written to `dir`), socket in `dir`.
fn start_in(ns: &Netns, dir: &Path, yaml: &LbdYaml) -> (Lbd, std::path::PathBuf) {
    let config = dir.join("lbd.yaml");
    std::fs::write(&config, yaml.text()).expect("config");
    let sock = dir.join("lbd.sock");
    let mut cmd = ns.cmd(LBD);
    cmd.arg("--socket").arg(&sock).arg("-c").arg(&config);
    let lbd = Lbd::start("lbd", cmd, &sock, &dir.join("lbd.log"));
    (lbd, sock)
}

/// Deletes `links` in `ns`, checks lbd still answers, then SIGTERM: lbd
/// must exit by itself, successfully, within 2 s. Returns the stop time.
fn vanish_then_stop(ns: &Netns, lbd: &mut Lbd, sock: &Path, links: &[&str], what: &str) {
    for l in links {
        ns.ip(&["link", "del", l]);
    }
    // Still serving: listings and the port counters.
    assert!(lbctl(sock, &["-Ln"]).starts_with("IP Virtual Server"));
    let ports = port_stats(sock).expect("port stats");
    assert_eq!(ports.len(), 2);
    println!("# port stats after the links vanished: {ports:?}");
    let t0 = Instant::now();
    let status = lbd.stop(Duration::from_secs(2));
    let took = t0.elapsed();
    println!("# stop time {what}: {} ms", took.as_millis());
    let log = lbd.log_text();
    let status =
        status.unwrap_or_else(|| panic!("{what}: still running 2 s after SIGTERM:\n{log}"));
    assert!(status.success(), "{what}: {status}\n{log}");
}

fn yaml(ext: PortYaml, int: PortYaml) -> LbdYaml {
    let mut y = LbdYaml::new(ext, int);
    y.workers = Some(WorkersYaml {
        count: 1,
        conn_capacity: Some(1024),
        ..WorkersYaml::default()
    });
    y.tables = STATIC_TABLES.to_string();
    y
}

#[test]
fn lbd_stops_within_2s_after_its_tap_interfaces_vanished() {
    if !support::needs_root("tap_vanished", &["ip"]) {
        return;
    }
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = Netns::new("dir");
    let (mut lbd, sock) = start_in(
        &ns,
        dir.path(),
        &yaml(
            PortYaml::on_interface("tap", "rvs-ext"),
            PortYaml::on_interface("tap", "rvs-int"),
        ),
    );
    vanish_then_stop(
        &ns,
        &mut lbd,
        &sock,
        &["rvs-ext", "rvs-int"],
        "tap interfaces deleted",
    );
}

#[test]
fn lbd_stops_within_2s_after_its_af_packet_interfaces_vanished() {
    if !support::needs_root("af_packet_vanished", &["ip"]) {
        return;
    }
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = Netns::new("dir");
    let peer = Netns::new("peer");
    ns.add_veth("rvs-ext", &peer, "ext-p");
    ns.add_veth("rvs-int", &peer, "int-p");
    for l in ["rvs-ext", "rvs-int"] {
        ns.ip(&["link", "set", l, "up"]);
    }
    let (mut lbd, sock) = start_in(
        &ns,
        dir.path(),
        &yaml(
            PortYaml::on_interface("af_packet", "rvs-ext"),
            PortYaml::on_interface("af_packet", "rvs-int"),
        ),
    );
    vanish_then_stop(
        &ns,
        &mut lbd,
        &sock,
        &["rvs-ext", "rvs-int"],
        "af_packet interfaces deleted",
    );
}
