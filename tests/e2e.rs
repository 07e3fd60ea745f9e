//! End to end: real Linux clients and servers in network namespaces, the
//! real `lbd` between them on TAP devices and on AF_PACKET over veth, every
//! forwarding mode, configured only through `lbctl` (DESIGN.md §7 layer 4).
//!
//! What each test shows:
//! * NAT: curl from the client reaches both nginx servers in the
//!   scheduler's proportions (rr 1:1 alternating, wrr 3:1), UDP echo too;
//!   the servers see the client's address.
//! * DR: the servers hold the VIP on `lo` (ARP silenced) and answer through
//!   a router, never through the director: lbd's OutPkts stay 0 while the
//!   router forwards the replies.
//! * TUN: a real-server helper checks every IPIP packet (outer DIP → RIP,
//!   protocol 4, inner from the client) and hands the inner packet to the
//!   server's stack (no ipip module in this kernel); nginx answers directly.
//! * FULLNAT: the servers see the local address as the client (access
//!   log), replies come back through the director; 2,000 concurrent wrk
//!   connections over two workers finish with no socket error and no reset,
//!   and the connections are spread over both workers (the local port names
//!   the owner).
//! * Failures: a weight-0 server gets no new connection while its
//!   established download completes; a deleted server gets none and its
//!   connection is cut (expire_nodest_conn); a full connection table and an
//!   exhausted local-port pool refuse new flows (the SYN is dropped: the
//!   client times out) while the table holds exactly what fits, and
//!   `lbctl --dataplane-stats` counts those drops under their reason
//!   (`table_full`, `laddr_exhausted`).
//!
//! Without root every test here (except the configuration check) prints why
//! it is skipped and passes; as root a set-up failure fails the test. Tests
//! run one at a time (two cores). lbd is the debug build
//! (`CARGO_BIN_EXE_lbd`) with `workers.idle: backoff`.

mod e2e_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_support::*;
use rvs::conntrack::Fwd;
use rvs::ctl::config::Config;
use rvs::ctl::protocol::{ConnInfo, Response};

const VIP_NAT: &str = "10.0.0.100";
const VIP_DR: &str = "10.0.0.101";
const VIP_TUN: &str = "10.0.0.102";
const VIP_FULLNAT: &str = "10.0.0.103";

/// Consecutive answers all differ (rr over two servers alternates).
fn assert_alternates(names: &[String]) {
    for pair in names.windows(2) {
        assert_ne!(pair[0], pair[1], "answers do not alternate: {names:?}");
    }
}

/// Adds a TCP service and real servers `rs1..rsN` with `fwd_flag`.
fn add_service(t: &Topology, flag: &str, vip: &str, port: u16, sched: &str, fwd_flag: &str) {
    let svc = format!("{vip}:{port}");
    t.lbctl(&["-A", flag, &svc, "-s", sched]);
    for i in 0..t.rs.len() {
        let server = if fwd_flag == "-m" || fwd_flag == "--fullnat" {
            format!("{}:{port}", rip(i))
        } else {
            rip(i)
        };
        t.lbctl(&["-a", flag, &svc, "-r", &server, fwd_flag, "-w", "1"]);
    }
}

/// Polls `lbctl -Lnc` until an ESTABLISHED TCP connection to `vip:port`
/// appears; returns it.
fn established_conn(t: &Topology, vip: &str, port: u16) -> ConnInfo {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let conns = t.conns();
        if let Some(c) = conns.iter().find(|c| {
            c.state == "ESTABLISHED" && c.vaddr.ip().to_string() == vip && c.vaddr.port() == port
        }) {
            return c.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no ESTABLISHED connection to {vip}:{port}: {conns:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Packets the workers dropped, by reason (`DropReason` names), summed over
/// the workers, from `lbctl --dataplane-stats -o json`; the text table is
/// printed for the log. Every worker must list the same reasons.
fn drops_by_reason(t: &Topology) -> BTreeMap<String, u64> {
    t.lbctl(&["--dataplane-stats"]);
    let out = Command::new(LBCTL)
        .arg("--socket")
        .arg(&t.socket)
        .args(["--dataplane-stats", "-o", "json"])
        .output()
        .expect("run lbctl");
    assert!(
        out.status.success(),
        "lbctl --dataplane-stats -o json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let workers = match serde_json::from_slice::<Response>(&out.stdout) {
        Ok(Response::DataplaneStats { workers }) => workers,
        other => panic!("lbctl --dataplane-stats -o json: unexpected answer {other:?}"),
    };
    assert_eq!(workers.len(), usize::from(t.opts.workers), "{workers:?}");
    let mut total = BTreeMap::new();
    for w in &workers {
        let reasons = w.drops.iter().map(|d| &d.reason);
        assert!(
            reasons.eq(workers[0].drops.iter().map(|d| &d.reason)),
            "{workers:?}"
        );
        for d in &w.drops {
            *total.entry(d.reason.clone()).or_insert(0) += d.packets;
        }
    }
    total
}

/// One reason's count from [`drops_by_reason`]; the daemon must list it.
fn drops_of(drops: &BTreeMap<String, u64>, reason: &str) -> u64 {
    *drops
        .get(reason)
        .unwrap_or_else(|| panic!("no {reason} drop counter listed: {drops:?}"))
}

/// Access-log lines caused by the client (not the harness's readiness
/// probes, which come from the server's own address).
fn client_log_lines(t: &Topology, i: usize) -> Vec<String> {
    let own = rip(i);
    t.access_log(i)
        .into_iter()
        .filter(|l| !l.starts_with(&format!("{own} ")))
        .collect()
}

/// Resets a host sent that were not its own aborts (closing a socket with
/// unread data, etc.): answers to segments for connections it does not
/// have — stray packets.
fn stray_resets(ns: &Netns) -> i64 {
    let aborts: u64 = [
        "TcpExtTCPAbortOnData",
        "TcpExtTCPAbortOnClose",
        "TcpExtTCPAbortOnMemory",
        "TcpExtTCPAbortOnTimeout",
        "TcpExtTCPAbortOnLinger",
    ]
    .iter()
    .map(|c| ns.snmp(c))
    .sum();
    ns.snmp("TcpOutRsts") as i64 - aborts as i64
}

// ---------------------------------------------------------------- NAT

fn nat_balances_http_and_udp(driver: Driver) {
    let mut t = Topology::build(Options::new(driver));
    t.server_mode(ServerMode::ViaDirector, &[]);
    add_service(&t, "-t", VIP_NAT, 80, "rr", "-m");
    let url = format!("http://{VIP_NAT}/");

    let names = t.fetch_names(&url, 20);
    assert_alternates(&names);
    assert_eq!(
        tally(&names),
        [("rs1".into(), 10), ("rs2".into(), 10)].into()
    );

    add_service(&t, "-u", VIP_NAT, ECHO_PORT, "rr", "-m");
    let echoes = t.udp_names(VIP_NAT, ECHO_PORT, 10);
    assert_alternates(&echoes);
    assert_eq!(
        tally(&echoes),
        [("rs1".into(), 5), ("rs2".into(), 5)].into()
    );

    // Weighted round robin 3:1, changed on the running service.
    let svc = format!("{VIP_NAT}:80");
    t.lbctl(&["-E", "-t", &svc, "-s", "wrr"]);
    t.lbctl(&[
        "-e",
        "-t",
        &svc,
        "-r",
        &format!("{}:80", rip(0)),
        "-m",
        "-w",
        "3",
    ]);
    let names = t.fetch_names(&url, 40);
    assert_eq!(
        tally(&names),
        [("rs1".into(), 30), ("rs2".into(), 10)].into()
    );

    t.lbctl(&["-Ln"]);
    let tcp = t.stats("TCP", &svc);
    assert_eq!(tcp.conns, 60, "{tcp:?}");
    assert!(tcp.in_pkts >= 60 * 4 && tcp.out_pkts >= 60 * 3, "{tcp:?}");
    assert_eq!(tcp.dests[&format!("{}:80", rip(0))].0, 40, "{tcp:?}");
    assert_eq!(tcp.dests[&format!("{}:80", rip(1))].0, 20, "{tcp:?}");
    let udp = t.stats("UDP", &format!("{VIP_NAT}:{ECHO_PORT}"));
    assert_eq!(
        (udp.conns, udp.in_pkts, udp.out_pkts),
        (10, 10, 10),
        "{udp:?}"
    );

    // NAT keeps the client's address: the servers saw 10.0.0.2 → RIP.
    for i in 0..2 {
        let lines = client_log_lines(&t, i);
        assert!(!lines.is_empty(), "{} saw no request", rs_name(i));
        for l in &lines {
            assert!(
                l.starts_with(&format!("{CIP} {} ", rip(i))),
                "{}: {l}",
                rs_name(i)
            );
        }
    }
    t.stop_lbd_cleanly();
}

#[test]
fn nat_over_tap_balances_http_and_udp_by_scheduler() {
    let _serial = serial();
    if root_or_skip("nat_over_tap_balances_http_and_udp_by_scheduler") {
        nat_balances_http_and_udp(Driver::Tap);
    }
}

#[test]
fn nat_over_af_packet_balances_http_and_udp_by_scheduler() {
    let _serial = serial();
    if root_or_skip("nat_over_af_packet_balances_http_and_udp_by_scheduler") {
        nat_balances_http_and_udp(Driver::AfPacket);
    }
}

// ---------------------------------------------------------------- DR

fn dr_servers_answer_the_client_directly(driver: Driver) {
    let mut t = Topology::build(Options::new(driver));
    t.server_mode(ServerMode::DirectReturn, &[VIP_DR]);
    add_service(&t, "-t", VIP_DR, 80, "rr", "-g");
    let routed_before = t.rtr.link_stat("lan0", "rx_packets");

    let names = t.fetch_names(&format!("http://{VIP_DR}/"), 20);
    assert_alternates(&names);
    assert_eq!(
        tally(&names),
        [("rs1".into(), 10), ("rs2".into(), 10)].into()
    );

    let st = t.stats("TCP", &format!("{VIP_DR}:80"));
    assert_eq!(st.conns, 20, "{st:?}");
    assert!(st.in_pkts >= 20 * 4, "{st:?}");
    assert_eq!(
        (st.out_pkts, st.out_bytes),
        (0, 0),
        "the director saw replies: {st:?}"
    );
    // The replies (SYN-ACK, data, FIN at least) went through the router.
    let routed = t.rtr.link_stat("lan0", "rx_packets") - routed_before;
    assert!(routed >= 20 * 3, "router forwarded only {routed} packets");
    // The servers got the client's packets to the VIP unchanged.
    for (i, ns) in t.rs.iter().enumerate() {
        let lines = client_log_lines(&t, i);
        assert_eq!(lines.len(), 10, "{}: {lines:?}", ns.name);
        for l in &lines {
            assert!(
                l.starts_with(&format!("{CIP} {VIP_DR} ")),
                "{}: {l}",
                rs_name(i)
            );
        }
    }
    t.stop_lbd_cleanly();
}

#[test]
fn dr_over_tap_real_servers_reply_directly() {
    let _serial = serial();
    if root_or_skip("dr_over_tap_real_servers_reply_directly") {
        dr_servers_answer_the_client_directly(Driver::Tap);
    }
}

#[test]
fn dr_over_af_packet_real_servers_reply_directly() {
    let _serial = serial();
    if root_or_skip("dr_over_af_packet_real_servers_reply_directly") {
        dr_servers_answer_the_client_directly(Driver::AfPacket);
    }
}

// ---------------------------------------------------------------- TUN

fn tun_servers_decapsulate_and_reply_directly(driver: Driver) {
    let mut t = Topology::build(Options::new(driver));
    t.server_mode(ServerMode::Tunnel, &[VIP_TUN]);
    add_service(&t, "-t", VIP_TUN, 80, "rr", "-i");

    let names = t.fetch_names(&format!("http://{VIP_TUN}/"), 20);
    assert_alternates(&names);
    assert_eq!(
        tally(&names),
        [("rs1".into(), 10), ("rs2".into(), 10)].into()
    );

    let st = t.stats("TCP", &format!("{VIP_TUN}:80"));
    assert_eq!(st.conns, 20, "{st:?}");
    assert_eq!(st.out_pkts, 0, "the director saw replies: {st:?}");
    for i in 0..2 {
        let (good, bad) = t.decap_report(i);
        assert!(bad.is_empty(), "{}: bad IPIP packets: {bad:?}", rs_name(i));
        // Each request: SYN, ACK, GET, ACK of the reply, FIN, last ACK.
        assert!(good >= 10 * 4, "{}: only {good} IPIP packets", rs_name(i));
        for l in client_log_lines(&t, i) {
            assert!(
                l.starts_with(&format!("{CIP} {VIP_TUN} ")),
                "{}: {l}",
                rs_name(i)
            );
        }
    }
    t.stop_lbd_cleanly();
}

#[test]
fn tun_over_tap_ipip_reaches_real_servers_which_reply_directly() {
    let _serial = serial();
    if root_or_skip("tun_over_tap_ipip_reaches_real_servers_which_reply_directly") {
        tun_servers_decapsulate_and_reply_directly(Driver::Tap);
    }
}

#[test]
fn tun_over_af_packet_ipip_reaches_real_servers_which_reply_directly() {
    let _serial = serial();
    if root_or_skip("tun_over_af_packet_ipip_reaches_real_servers_which_reply_directly") {
        tun_servers_decapsulate_and_reply_directly(Driver::AfPacket);
    }
}

// ---------------------------------------------------------------- FULLNAT

/// Concurrent wrk connections in the FULLNAT tests.
const FULLNAT_CONCURRENCY: u32 = 2000;
/// How long wrk runs in the FULLNAT tests.
const WRK_SECS: u32 = 6;

fn fullnat_sources_from_lip_over_two_workers(driver: Driver) {
    let mut t = Topology::build(Options {
        workers: 2,
        ..Options::new(driver)
    });
    // Servers route to the router: replies reach the director only
    // because they are addressed to its local address.
    t.server_mode(ServerMode::ViaRouter, &[]);
    let svc = format!("{VIP_FULLNAT}:80");
    t.lbctl(&["-A", "-t", &svc, "-s", "rr"]);
    t.lbctl(&["-P", "-t", &svc, "-z", LIP]);
    for i in 0..2 {
        t.lbctl(&[
            "-a",
            "-t",
            &svc,
            "-r",
            &format!("{}:80", rip(i)),
            "--fullnat",
        ]);
    }
    t.lbctl(&["-G"]);
    let url = format!("http://{VIP_FULLNAT}/");

    let names = t.fetch_names(&url, 20);
    // Each worker runs its own rr: whatever the split of the flows, each
    // server gets at least 9 of 20.
    for (name, n) in tally(&names) {
        assert!((9..=11).contains(&n), "{name}: {n} of 20: {names:?}");
    }
    for i in 0..2 {
        let lines = client_log_lines(&t, i);
        assert!(!lines.is_empty(), "{} saw no request", rs_name(i));
        for l in &lines {
            assert!(
                l.starts_with(&format!("{LIP} {} ", rip(i))),
                "{}: {l}",
                rs_name(i)
            );
        }
    }

    // Stray packets (a segment the director sent to a server for a
    // connection the server does not have) make the server answer with a
    // reset. They are counted while the load runs, not after wrk's exit:
    // then the client aborts 2,000 sockets at once, and a veth may deliver
    // an abort before an ACK the same socket sent just earlier from
    // another CPU (veth queues each packet on its sender's CPU), which the
    // server rightly answers with a reset whoever forwards the packets.
    let strays_before: Vec<i64> = t.rs.iter().map(stray_resets).collect();
    let wrk = t.start_wrk(2, FULLNAT_CONCURRENCY, WRK_SECS, &url);
    std::thread::sleep(Duration::from_secs(u64::from(WRK_SECS) - 1));
    let strays: Vec<i64> =
        t.rs.iter()
            .zip(&strays_before)
            .map(|(ns, before)| stray_resets(ns) - before)
            .collect();
    let w = t.finish_wrk(wrk);
    assert_eq!(
        w.socket_errors, [0; 4],
        "wrk socket errors (connect, read, write, timeout)"
    );
    assert_eq!(w.non_2xx, 0);
    assert!(w.requests >= u64::from(FULLNAT_CONCURRENCY), "{w:?}");
    for (i, ns) in t.rs.iter().enumerate() {
        println!(
            "{}: {}",
            rs_name(i),
            ns.sh("nstat -azs TcpOutRsts TcpRetransSegs")
        );
    }
    assert_eq!(
        strays,
        vec![0, 0],
        "resets the servers sent during the load"
    );

    // Every flow went out from the LIP; the local port names the worker.
    let conns: Vec<ConnInfo> = t
        .conns()
        .into_iter()
        .filter(|c| c.vaddr.to_string() == svc)
        .collect();
    assert!(
        conns.len() >= FULLNAT_CONCURRENCY as usize,
        "{} entries",
        conns.len()
    );
    let mut per_worker = [0usize; 2];
    for c in &conns {
        let laddr = c
            .laddr
            .unwrap_or_else(|| panic!("FULLNAT entry without laddr: {c:?}"));
        assert_eq!(laddr.ip().to_string(), LIP, "{c:?}");
        per_worker[usize::from(laddr.port() % 2)] += 1;
    }
    println!("connections per worker (by local port partition): {per_worker:?}");
    for (w, n) in per_worker.iter().enumerate() {
        assert!(
            *n * 4 >= conns.len(),
            "worker {w} owns {n} of {} connections",
            conns.len()
        );
    }
    t.lbctl(&["-Ln", "--stats"]);
    t.lbctl(&["--port-stats"]);
    t.stop_lbd_cleanly();
}

#[test]
fn fullnat_over_tap_sources_from_lip_and_spreads_2000_connections_over_two_workers() {
    let _serial = serial();
    if root_or_skip(
        "fullnat_over_tap_sources_from_lip_and_spreads_2000_connections_over_two_workers",
    ) {
        fullnat_sources_from_lip_over_two_workers(Driver::Tap);
    }
}

#[test]
fn fullnat_over_af_packet_sources_from_lip_and_spreads_2000_connections_over_two_workers() {
    let _serial = serial();
    if root_or_skip(
        "fullnat_over_af_packet_sources_from_lip_and_spreads_2000_connections_over_two_workers",
    ) {
        fullnat_sources_from_lip_over_two_workers(Driver::AfPacket);
    }
}

// ---------------------------------------------------------------- failures

#[test]
fn quiesced_server_finishes_its_connections_and_deleted_server_loses_them() {
    let _serial = serial();
    if !root_or_skip("quiesced_server_finishes_its_connections_and_deleted_server_loses_them") {
        return;
    }
    let mut t = Topology::build(Options::new(Driver::Tap));
    t.server_mode(ServerMode::ViaDirector, &[]);
    add_service(&t, "-t", VIP_NAT, 80, "rr", "-m");
    let svc = format!("{VIP_NAT}:80");
    let url = format!("http://{VIP_NAT}/");
    let big = format!("http://{VIP_NAT}/slow/big.bin");

    // Weight 0: no new connection, the established download completes.
    let mut slow = t.start_slow_download(&big, "quiesce");
    let quiet = established_conn(&t, VIP_NAT, 80).daddr.to_string();
    let quiet_name = rs_of_addr(&quiet.replace(":80", ""));
    t.lbctl(&["-e", "-t", &svc, "-r", &quiet, "-m", "-w", "0"]);
    let listing = t.lbctl(&["-Ln"]);
    assert!(
        listing.contains(&format!("{quiet:<28} Masq    0      1")),
        "{listing}"
    );
    let names = t.fetch_names(&url, 10);
    assert!(
        names.iter().all(|n| *n != quiet_name),
        "weight-0 {quiet_name} got new connections: {names:?}"
    );
    let status = slow.wait_for(Duration::from_secs(15));
    assert!(
        status.success(),
        "download from the quiesced server: {}",
        slow.log_text()
    );
    assert_eq!(slow.log_text().trim(), format!("200 {BIG_LEN}"));

    // Deleted: no new connection, the established one is cut at its next
    // packet (expire_nodest_conn, on by default).
    t.lbctl(&["-e", "-t", &svc, "-r", &quiet, "-m", "-w", "1"]);
    let mut slow = t.start_slow_download(&big, "delete");
    let cut = established_conn(&t, VIP_NAT, 80);
    let gone = cut.daddr.to_string();
    let gone_name = rs_of_addr(&gone.replace(":80", ""));
    t.lbctl(&["-d", "-t", &svc, "-r", &gone]);
    t.lbctl(&["-Ln"]);
    let names = t.fetch_names(&url, 10);
    assert!(
        names.iter().all(|n| *n != gone_name),
        "deleted {gone_name} got new connections: {names:?}"
    );
    let status = slow.wait_for(Duration::from_secs(15));
    let out = slow.log_text();
    let got: usize = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        !status.success() && got < BIG_LEN,
        "download from the deleted server went on ({status}): {out}"
    );
    // The cut connection's entry went at its next packet; finished ones
    // (TIME_WAIT from the first download) stay until they expire.
    let left: Vec<ConnInfo> = t
        .conns()
        .into_iter()
        .filter(|c| c.client == cut.client)
        .collect();
    assert!(left.is_empty(), "the cut connection remains: {left:?}");
    t.stop_lbd_cleanly();
}

#[test]
fn full_connection_table_refuses_new_flows() {
    let _serial = serial();
    if !root_or_skip("full_connection_table_refuses_new_flows") {
        return;
    }
    let mut t = Topology::build(Options {
        conn_capacity: Some(8),
        ..Options::new(Driver::Tap)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    add_service(&t, "-t", VIP_NAT, 80, "rr", "-m");
    let header = t.lbctl(&["-Ln"]);
    assert!(header.contains("(size=8)"), "{header}");

    let verdicts = t.hold_and_try_one_more(VIP_NAT, 80, 8);
    println!("client: {verdicts:?}");
    let mut expected = vec!["open".to_string(); 8];
    expected.push("extra timeout".into());
    assert_eq!(verdicts, expected);
    let conns = t.conns();
    assert_eq!(conns.len(), 8, "{conns:?}");
    let st = t.stats("TCP", &format!("{VIP_NAT}:80"));
    assert_eq!(st.conns, 8, "{st:?}");
    // The extra SYN (and its retransmissions) were dropped as table_full.
    let drops = drops_by_reason(&t);
    assert!(drops_of(&drops, "table_full") > 0, "{drops:?}");
    t.stop_lbd_cleanly();
}

#[test]
fn exhausted_local_port_pool_refuses_new_fullnat_flows() {
    let _serial = serial();
    if !root_or_skip("exhausted_local_port_pool_refuses_new_fullnat_flows") {
        return;
    }
    let mut t = Topology::build(Options {
        lport_range: Some("40000-40003"),
        ..Options::new(Driver::AfPacket)
    });
    t.server_mode(ServerMode::ViaRouter, &[]);
    let svc = format!("{VIP_FULLNAT}:80");
    t.lbctl(&["-A", "-t", &svc, "-s", "rr"]);
    t.lbctl(&["-P", "-t", &svc, "-z", LIP]);
    for i in 0..2 {
        t.lbctl(&[
            "-a",
            "-t",
            &svc,
            "-r",
            &format!("{}:80", rip(i)),
            "--fullnat",
        ]);
    }

    let verdicts = t.hold_and_try_one_more(VIP_FULLNAT, 80, 4);
    println!("client: {verdicts:?}");
    let mut expected = vec!["open".to_string(); 4];
    expected.push("extra timeout".into());
    assert_eq!(verdicts, expected);
    let mut lports: Vec<u16> = t
        .conns()
        .iter()
        .map(|c| c.laddr.expect("FULLNAT laddr").port())
        .collect();
    lports.sort_unstable();
    assert_eq!(lports, vec![40000, 40001, 40002, 40003]);
    // The pool refused the extra SYN, not the (roomy) connection table.
    let drops = drops_by_reason(&t);
    assert!(drops_of(&drops, "laddr_exhausted") > 0, "{drops:?}");
    assert_eq!(drops_of(&drops, "table_full"), 0, "{drops:?}");
    t.stop_lbd_cleanly();
}

// ---------------------------------------------------------------- configs

/// Every example in conf/ passes `lbd --check-config`, and each
/// mode's example uses only its mode.
#[test]
fn example_configs_pass_check_config() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&conf).expect("conf/") {
        let path = entry.expect("dir entry").path();
        if path.extension() != Some(std::ffi::OsStr::new("yaml")) {
            continue;
        }
        let out = Command::new(LBD)
            .arg("--check-config")
            .arg(&path)
            .output()
            .expect("run lbd --check-config");
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
        checked.push(
            path.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
    }
    checked.sort();
    for name in ["demo", "dr", "fullnat", "nat", "tun"] {
        assert!(
            checked.iter().any(|c| c == name),
            "conf/{name}.yaml missing: {checked:?}"
        );
    }
    for (file, fwd) in [
        ("nat", Fwd::Nat),
        ("dr", Fwd::Dr),
        ("tun", Fwd::Tun),
        ("fullnat", Fwd::FullNat),
    ] {
        let config = Config::load(&conf.join(format!("{file}.yaml"))).expect("load");
        assert!(!config.services.is_empty(), "{file}.yaml has no service");
        for s in &config.services {
            assert!(s.dests.iter().all(|d| d.fwd == fwd), "{file}.yaml: {s:?}");
        }
    }
}
