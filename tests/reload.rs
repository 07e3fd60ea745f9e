//! Reload under traffic, end to end: the real `lbd` on TAP ports in
//! namespaces (tests/support), started from a file; the file is edited —
//! one real server's weight changed, a UDP service added — and lbd gets
//! SIGHUP while two slow downloads run through the untouched real servers'
//! established connections. The downloads complete and no packet was lost
//! through the director (lbd's drop counters and the TAP queues' drops do
//! not move; the real servers' retransmissions are printed: on a loaded
//! 2-core machine tail-loss probes fire without any loss), the change shows in
//! `lbctl -Ln` and the new service forwards. Then a broken file: refused
//! with `lbd --check-config`'s message in lbd's log, the table unchanged.

mod support;

use std::process::Command;
use std::time::Duration;

use support::lbd::LBD;
use support::process::poll_until;
use support::topology::{Driver, Options, ServerMode, Topology, BIG_LEN};
use support::world::{rip, ECHO_PORT, VIP_NAT};
use support::{needs_root, serial};

fn tables(weight2: u32, with_udp: bool) -> String {
    let mut t = format!(
        "services:\n\
         \x20 - proto: tcp\n\
         \x20   vip: {VIP_NAT}\n\
         \x20   port: 80\n\
         \x20   scheduler: wrr\n\
         \x20   dests:\n\
         \x20     - {{addr: {}, port: 80, fwd: masq, weight: 1}}\n\
         \x20     - {{addr: {}, port: 80, fwd: masq, weight: {weight2}}}\n",
        rip(0),
        rip(1)
    );
    if with_udp {
        t.push_str(&format!(
            "  - proto: udp\n    vip: {VIP_NAT}\n    port: {ECHO_PORT}\n    scheduler: rr\n    dests:\n      - {{addr: {}, fwd: masq}}\n      - {{addr: {}, fwd: masq}}\n",
            rip(0),
            rip(1)
        ));
    }
    t
}

fn sighup(t: &Topology) {
    println!("$ kill -HUP {}", t.lbd_pid());
    support::process::signal(t.lbd_pid() as libc::pid_t, libc::SIGHUP);
}

fn retransmits(t: &Topology) -> u64 {
    t.rs.iter().map(|rs| rs.snmp("TcpRetransSegs")).sum()
}

/// Packets lost on the way through the director: lbd's drops (every
/// reason but `local` and `unsupported_proto`, every worker) and what the kernel could not hand to lbd's TAP
/// queues (`tx_dropped` of the kernel sides `cli:ext0` and `sw:int0`).
fn losses(t: &Topology) -> (u64, u64) {
    let drops = match support::lbd::lbctl_json(&t.socket, &["--dataplane-stats"]) {
        rvs::ctl::protocol::Response::DataplaneStats { workers } => {
            let drops: Vec<_> = workers
                .iter()
                .flat_map(|w| w.drops.iter().filter(|d| d.packets > 0))
                // Packets for the director's own addresses and of other
                // protocols (IGMP and the like) are not the flows' TCP:
                // the hosts' kernel chatter, whenever it comes.
                .filter(|d| d.reason != "local" && d.reason != "unsupported_proto")
                .collect();
            println!("lbd drops: {drops:?}");
            drops.iter().map(|d| d.packets).sum()
        }
        other => panic!("unexpected answer {other:?}"),
    };
    let tap = t.cli.link_stat("ext0", "tx_dropped") + t.sw.link_stat("int0", "tx_dropped");
    (drops, tap)
}

#[test]
fn sighup_under_traffic_applies_the_file_and_loses_no_packet_of_untouched_flows() {
    if !needs_root(
        "sighup_under_traffic_applies_the_file_and_loses_no_packet_of_untouched_flows",
        &["ip", "nginx", "curl", "python3", "nstat"],
    ) {
        return;
    }
    let _serial = serial();
    let mut t = Topology::build(Options::new(Driver::Tap));
    t.server_mode(ServerMode::ViaDirector, &[]);

    // The file gets a NAT service; the first reload adopts it.
    t.write_config(&tables(1, false));
    sighup(&t);
    let vs = format!("TCP  {VIP_NAT}:80 wrr");
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        t.lbctl(&["-Ln"]).contains(&vs).then_some(())
    })
    .unwrap_or_else(|| panic!("the first reload did not add the service:\n{}", t.lbd_log()));
    let url = format!("http://{VIP_NAT}/slow/big.bin");

    // Two slow downloads: one on each real server (wrr 1:1).
    let before = retransmits(&t);
    let lost_before = losses(&t);
    let mut downloads = vec![
        t.start_slow_download(&url, "a"),
        t.start_slow_download(&url, "b"),
    ];
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        (t.conns().len() >= 2).then_some(())
    })
    .expect("both downloads have their connection");

    // Edit the file: rs2's weight 1 -> 3, a UDP service; SIGHUP mid-flow.
    t.write_config(&tables(3, true));
    sighup(&t);
    let rs2 = format!("{}:80", rip(1));
    let listed = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let text = t.lbctl(&["-Ln"]);
        (text.contains(&format!("UDP  {VIP_NAT}:{ECHO_PORT} rr"))
            && text
                .lines()
                .any(|l| l.contains(&rs2) && l.split_whitespace().nth(3) == Some("3")))
        .then_some(text)
    })
    .unwrap_or_else(|| panic!("the reload did not show in lbctl -Ln:\n{}", t.lbd_log()));
    println!("{listed}");
    let log = t.lbd_log();
    assert!(log.contains("lbd: reloaded: 4 changes"), "{log}");

    // The new service forwards.
    let echoes = t.udp_names(VIP_NAT, ECHO_PORT, 4);
    assert!(
        echoes.iter().all(|e| e.starts_with("rs")),
        "UDP answers through the new service: {echoes:?}"
    );

    // The untouched flows completed, and no segment was retransmitted.
    for d in &mut downloads {
        let status = d.wait_for(Duration::from_secs(20));
        let out = d.log_text();
        assert!(status.success(), "{}: {status} {out}", d.what);
        assert_eq!(out.trim(), format!("200 {BIG_LEN}"), "{}", d.what);
    }
    let lost_after = losses(&t);
    println!(
        "lbd drops {} -> {}, TAP drops {} -> {}, real servers' retransmitted segments: {}",
        lost_before.0,
        lost_after.0,
        lost_before.1,
        lost_after.1,
        retransmits(&t) - before
    );
    assert_eq!(
        lost_after, lost_before,
        "no packet lost through the director"
    );

    // A broken file: refused with --check-config's message; table unchanged.
    let saved = t.lbctl(&["-S", "-n"]);
    let path = t.write_config(&tables(3, true).replace("weight: 3", "weight: -3"));
    let check = Command::new(LBD)
        .arg("--check-config")
        .arg(&path)
        .output()
        .expect("lbd --check-config");
    assert!(!check.status.success());
    let message = String::from_utf8_lossy(&check.stderr)
        .trim()
        .trim_start_matches("lbd: ")
        .to_string();
    sighup(&t);
    let expected = format!("lbd: error: reload refused: {message}; nothing was changed");
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        t.lbd_log().contains(&expected).then_some(())
    })
    .unwrap_or_else(|| panic!("no {expected:?} in the log:\n{}", t.lbd_log()));
    assert_eq!(t.lbctl(&["-S", "-n"]), saved, "the table is unchanged");
    t.stop_lbd_cleanly();
}
