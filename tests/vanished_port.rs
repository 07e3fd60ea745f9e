//! End to end: a TAP port's interface is deleted under a running `lbd`
//! (issue #17 items 4/5). The port is reported — `link_gone` in
//! `lbctl --port-stats -o json`, `NAME (gone)` in the table, one log line —
//! and no longer polled: its receive-error count stops growing (before, every
//! pass of the worker read the dead fd and counted an error), nothing more
//! counts as transmitted on it, `lbctl` keeps answering, and `lbd` still
//! stops within 2 s of SIGTERM. The same for an AF_PACKET port that only
//! receives (nothing is sent on it after the interface goes): the queue
//! notices on its idle receive polls, not only when a send fails. Skipped
//! without root outside CI; fails under CI if it cannot set itself up.

mod support;

use std::time::{Duration, Instant};

use rvs::ctl::protocol::PortStatsInfo;
use support::lbd::port_stats;
use support::process::poll_until;
use support::topology::*;
use support::world::*;

const TOOLS: [&str; 2] = ["ip", "python3"];

fn ext(t: &Topology) -> PortStatsInfo {
    port_stats(&t.socket)
        .expect("lbctl --port-stats answers")
        .into_iter()
        .find(|p| p.name == "ext")
        .expect("port ext listed")
}

#[test]
fn a_deleted_tap_interface_is_reported_not_spun_on_and_lbd_still_stops_in_2_s() {
    vanished_ext_port(Driver::Tap);
}

#[test]
fn a_receive_only_af_packet_port_whose_interface_is_deleted_is_reported_and_lbd_stops_in_2_s() {
    vanished_ext_port(Driver::AfPacket);
}

/// Traffic through `ext`, then its interface deleted with nothing more sent
/// through the director: reported gone, not polled, `lbd` stops in 2 s.
fn vanished_ext_port(driver: Driver) {
    let _serial = support::serial();
    if !support::needs_root("vanished_port", &TOOLS) {
        return;
    }
    let mut t = Topology::build(Options::new(driver));
    t.server_mode(ServerMode::ViaDirector, &[]);
    let svc = format!("{VIP_NAT}:{ECHO_PORT}");
    t.lbctl(&["-A", "-u", &svc, "-s", "rr"]);
    t.lbctl(&[
        "-a",
        "-u",
        &svc,
        "-r",
        &format!("{}:{ECHO_PORT}", rip(0)),
        "-m",
    ]);
    let names = t.udp_names(VIP_NAT, ECHO_PORT, 2);
    assert!(names.iter().all(|n| n.starts_with("rs")), "{names:?}");
    assert!(!ext(&t).link_gone, "ext is up");

    // The client side of ext0 lives in the client namespace: delete it
    // (for AF_PACKET this deletes the veth pair, the director's end too).
    let before = ext(&t);
    t.cli.ip(&["link", "del", "ext0"]);
    let gone = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let p = ext(&t);
        p.link_gone.then_some(p)
    })
    .expect("ext reported gone within 10 s");
    // Not spun on: a second later, no more errors or sends on it.
    std::thread::sleep(Duration::from_secs(1));
    let later = ext(&t);
    println!(
        "ext at detection: rx_errors {} tx_packets {}; 1 s later: rx_errors {} tx_packets {}",
        gone.rx_errors, gone.tx_packets, later.rx_errors, later.tx_packets
    );
    assert_eq!(later.rx_errors, gone.rx_errors, "the dead fd is not polled");
    assert_eq!(later.tx_packets, gone.tx_packets, "nothing sent on it");
    assert_eq!(
        gone.tx_packets, before.tx_packets,
        "the port was receive-only after the deletion: detection did not need a send"
    );
    assert!(
        later.rx_errors <= 16,
        "errors before detection: {}",
        later.rx_errors
    );
    let table = t.lbctl(&["--port-stats"]);
    assert!(table.contains("ext (gone)"), "{table}");
    let int = port_stats(&t.socket)
        .expect("port stats")
        .into_iter()
        .find(|p| p.name == "int")
        .expect("int");
    assert!(!int.link_gone, "the other port is fine");

    let start = Instant::now();
    t.stop_lbd_cleanly();
    let took = start.elapsed();
    println!("lbd stopped {took:?} after SIGTERM with a vanished port");
    assert!(took < Duration::from_secs(2), "lbd took {took:?} to stop");
    let log = t.lbd_log();
    assert_eq!(
        log.matches("the interface is gone").count(),
        1,
        "reported once:\n{log}"
    );
}
