//! End to end: a spoofed UDP flood (random sources) at a NAT UDP service
//! whose connection table is small, with the real `lbd` (TAP driver), real
//! UDP echo servers, and established UDP flows running through the same
//! service (issue #17 item 2; DPVS's issue #446 is this flood taking the
//! director down).
//!
//! * The flood fills the table (it reaches its capacity; new flows are
//!   dropped as `table_full`), yet every packet of the flows that were in
//!   the table before it is echoed: 100 % delivery. Their entries are
//!   refreshed by their own packets and never evicted.
//! * Once the flood stops, new legitimate flows get in again as soon as the
//!   flood's entries expire (UDP timeout [`UDP_TIMEOUT`] s, set with
//!   `lbctl --set`), within that timeout plus a margin.
//! * `lbd` runs throughout and stops cleanly on SIGTERM.
//!
//! The flood is a python raw-socket sender in the client namespace: UDP
//! datagrams from random sources in 198.18.0.0/15 and random ports, paced
//! at [`FLOOD_PPS`] for [`FLOOD_SECS`] s (bounded in count and time).
//! Skipped without root outside CI; fails under CI if it cannot set itself
//! up.

mod support;

use std::time::{Duration, Instant};

use rvs::ctl::protocol::WorkerStatsInfo;
use support::lbd::dataplane_stats;
use support::process::{poll_until, Proc};
use support::topology::*;
use support::world::*;

const TOOLS: [&str; 3] = ["ip", "python3", "sysctl"];
/// The connection table's capacity.
const CAPACITY: u32 = 512;
/// UDP entry timeout (s) during the test.
const UDP_TIMEOUT: u64 = 3;
/// Established flows and their packet interval.
const FLOWS: u32 = 8;
const FLOW_INTERVAL_MS: u32 = 20;
/// How long the flood runs, and its rate. Paced where one worker on TAP
/// carries the established flows beside it (the TAP queue, not the table,
/// is the limit of this path; see tests/synproxy_flood.rs).
const FLOOD_SECS: f64 = 5.0;
const FLOOD_PPS: u32 = 20_000;

const FLOOD_PY: &str = r#"
import socket, struct, sys, time, random
vip, port, secs, pps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(11)
d = socket.inet_aton(vip)
so = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
so.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
payload = b"flood"
udp_len = 8 + len(payload)
sent = 0
start = time.monotonic()
end = start + secs
while True:
    s = struct.pack('!I', (198 << 24) | (18 << 16) | rnd.randrange(1, 1 << 17))
    udp = struct.pack('!HHHH', rnd.randrange(1024, 65535), port, udp_len, 0) + payload
    # The kernel fills in the IP checksum (IP_HDRINCL); UDP checksum 0 = none.
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + udp_len, sent & 0xffff, 0, 64, 17, 0, s, d)
    try:
        so.sendto(ip + udp, (vip, 0))
        sent += 1
    except OSError:
        pass
    if sent % 256 == 0:
        now = time.monotonic()
        if now >= end:
            break
        ahead = start + sent / pps - now
        if ahead > 0:
            time.sleep(ahead)
print("sent", sent, "rate", int(sent / (time.monotonic() - start)))
"#;

/// `FLOWS` connected UDP sockets, one datagram each every interval until a
/// stop file appears (or `limit` s), then 2 s for the last echoes; prints
/// "sent S received R" and each flow's losses.
const FLOWS_PY: &str = r#"
import os, select, socket, sys, time
vip, port, flows, interval, stop, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], float(sys.argv[6])
socks = []
for f in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((vip, port))
    s.setblocking(False)
    socks.append(s)
got = [set() for _ in socks]
sent = 0
seq = 0
def drain(timeout):
    r, _, _ = select.select(socks, [], [], timeout)
    for s in r:
        while True:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                break
            w = data.split()
            if len(w) == 3:
                got[int(w[1])].add(int(w[2]))
start = time.monotonic()
print("ready", flush=True)
while not os.path.exists(stop) and time.monotonic() - start < limit:
    for f, s in enumerate(socks):
        s.send(b"%d %d" % (f, seq))
        sent += 1
    seq += 1
    t = time.monotonic() + interval
    while time.monotonic() < t:
        drain(max(0.0, t - time.monotonic()))
end = time.monotonic() + 2.0
while time.monotonic() < end and sum(len(g) for g in got) < sent:
    drain(0.1)
print("sent", sent, "received", sum(len(g) for g in got))
print("lost", [seq - len(g) for g in got])
"#;

fn dataplane(t: &Topology) -> Vec<WorkerStatsInfo> {
    dataplane_stats(&t.socket)
}

fn drop_count(ws: &[WorkerStatsInfo], reason: &str) -> u64 {
    ws.iter()
        .flat_map(|w| &w.drops)
        .filter(|d| d.reason == reason)
        .map(|d| d.packets)
        .sum()
}

/// The numbers after `word` in the flows client's output.
fn field(out: &str, word: &str) -> u64 {
    out.split_whitespace()
        .skip_while(|w| *w != word)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {word} in {out:?}"))
}

#[test]
fn a_spoofed_udp_flood_fills_the_table_but_established_flows_keep_full_delivery_and_new_flows_return(
) {
    let _serial = support::serial();
    if !support::needs_root("udp_flood", &TOOLS) {
        return;
    }
    let mut t = Topology::build(Options {
        conn_capacity: Some(CAPACITY),
        ..Options::new(Driver::Tap)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    let svc = format!("{VIP_NAT}:{ECHO_PORT}");
    t.lbctl(&["--set", "0", "0", &UDP_TIMEOUT.to_string()]);
    t.lbctl(&["-A", "-u", &svc, "-s", "rr"]);
    for i in 0..2 {
        t.lbctl(&[
            "-a",
            "-u",
            &svc,
            "-r",
            &format!("{}:{ECHO_PORT}", rip(i)),
            "-m",
        ]);
    }
    let answered = |t: &Topology| {
        t.udp_names(VIP_NAT, ECHO_PORT, 2)
            .iter()
            .all(|n| n.starts_with("rs"))
    };
    assert!(answered(&t), "the UDP service answers before the flood");
    let conns_now = |t: &Topology| -> u64 { dataplane(t).iter().map(|w| w.conns_now).sum() };
    let lbd_pid = t.lbd_pid();

    // The established flows, in the table before the flood.
    let stop = t.path("flows.stop");
    let mut cmd = t.cli.cmd("python3");
    cmd.arg("-c")
        .arg(FLOWS_PY)
        .arg(VIP_NAT)
        .arg(ECHO_PORT.to_string())
        .arg(FLOWS.to_string())
        .arg((f64::from(FLOW_INTERVAL_MS) / 1000.0).to_string())
        .arg(&stop)
        .arg("25");
    let mut flows = Proc::spawn("udp flows", cmd, &t.path("flows.out"));
    poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (conns_now(&t) >= u64::from(FLOWS)).then_some(())
    })
    .expect("the established flows are in the table");

    let mut cmd = t.cli.cmd("python3");
    cmd.arg("-c")
        .arg(FLOOD_PY)
        .arg(VIP_NAT)
        .arg(ECHO_PORT.to_string())
        .arg(FLOOD_SECS.to_string())
        .arg(FLOOD_PPS.to_string());
    let mut flood = Proc::spawn("udp flood", cmd, &t.path("flood.out"));
    let mut max_conns = 0;
    let mut refused_during = None;
    let status = poll_until(Duration::from_secs(30), Duration::from_millis(250), || {
        max_conns = max_conns.max(conns_now(&t));
        if refused_during.is_none() && max_conns >= u64::from(CAPACITY) {
            // A new legitimate flow while the table is full.
            refused_during = Some(!answered(&t));
        }
        flood.try_wait()
    })
    .expect("the flood ends in time");
    let flood_end = Instant::now();
    let flood_out = flood.log_text();
    assert!(status.success(), "flood failed: {flood_out}");
    let during = dataplane(&t);

    // New flows get in again once the flood's entries expire.
    let back = poll_until(
        Duration::from_secs(UDP_TIMEOUT + 10),
        Duration::from_millis(200),
        || answered(&t).then(|| flood_end.elapsed()),
    );
    std::fs::write(&stop, b"").expect("stop file");
    let flows_status = flows.wait_for(Duration::from_secs(15));
    let flows_out = flows.log_text();
    let after = dataplane(&t);
    t.lbctl(&["--dataplane-stats", "--exact"]);
    let alive = std::path::Path::new(&format!("/proc/{lbd_pid}")).exists();
    t.stop_lbd_cleanly();

    let (sent, received) = (field(&flows_out, "sent"), field(&flows_out, "received"));
    let table_full = drop_count(&during, "table_full");
    println!(
        "flood: {}; table max {max_conns}/{CAPACITY}; table_full drops {table_full}; \
         established flows: sent {sent} echoed {received} ({:.2} %); a new flow during the \
         flood refused: {refused_during:?}; new flows answered {back:?} after the flood; \
         drops after: {:?}",
        flood_out.trim(),
        100.0 * received as f64 / sent.max(1) as f64,
        after
            .iter()
            .flat_map(|w| &w.drops)
            .filter(|d| d.packets > 0)
            .map(|d| (d.reason.as_str(), d.packets))
            .collect::<Vec<_>>()
    );
    assert!(alive, "lbd exited during the flood");
    assert!(flows_status.success(), "flows client failed: {flows_out}");
    assert_eq!(max_conns, u64::from(CAPACITY), "the flood fills the table");
    assert!(
        table_full > 1000,
        "new flows refused as table_full: {table_full}"
    );
    assert!(sent > 1000, "the established flows ran: {flows_out}");
    assert_eq!(
        received, sent,
        "every packet of an established flow is echoed: {flows_out}"
    );
    let back = back.expect("new flows answered again after the flood");
    assert!(
        back <= Duration::from_secs(UDP_TIMEOUT + 5),
        "new flows waited {back:?} (UDP timeout {UDP_TIMEOUT} s)"
    );
}
