//! End to end: the SYN proxy retransmits its SYN to a real server that did
//! not answer (DPVS `synproxy_syn_retry`), with the real `lbd` (TAP driver),
//! a real client (curl, the kernel's TCP) and a real nginx.
//!
//! The real server's namespace first drops every SYN to port 80 (nftables);
//! curl's handshake with the director completes (cookie), the director's SYN
//! to the server is lost, and the client sends its request, which the
//! director holds. Once the server's counter has seen the director's SYN the
//! rule goes: the director's next SYN (1 s later) reaches nginx, the held
//! request follows, and curl gets its 200. Without the retransmission the
//! connection waits for a SYN-ACK that never comes and curl times out.
//! The proxy's counters show it in `lbctl --dataplane-stats` (JSON and the
//! table) and in the metrics exporter: one SYN retransmission, one request
//! request held (with the client's own retransmissions of it, at its
//! 200 ms RTO, while the director waits 1 s) and all of it replayed.
//! Skipped without root outside CI; fails under CI if it cannot set itself
//! up.

mod support;

use std::time::Duration;

use support::lbd::dataplane_stats;
use support::process::{poll_until, Proc};
use support::topology::*;
use support::world::*;

const TOOLS: [&str; 4] = ["ip", "nginx", "curl", "nft"];
/// The metrics exporter, inside the director's namespace.
const METRICS_ADDR: &str = "127.0.0.1:9100";

/// SYNs to port 80 the real server's nftables rule dropped.
fn dropped_syns(t: &Topology) -> u64 {
    let out = t.rs[0].sh("nft list chain inet rvs_syn_drop input");
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_lost_syn_to_the_real_server_is_retransmitted_and_the_held_request_is_answered() {
    let _serial = support::serial();
    if !support::needs_root("synproxy_retry", &TOOLS) {
        return;
    }
    let mut t = Topology::build(Options {
        real_servers: 1,
        lbd_args: vec!["--metrics-listen".into(), METRICS_ADDR.into()],
        ..Options::new(Driver::Tap)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    let svc = format!("{VIP_NAT}:80");
    t.lbctl(&["-A", "-t", &svc, "-s", "rr", "--synproxy"]);
    t.lbctl(&["-a", "-t", &svc, "-r", &format!("{}:80", rip(0)), "-m"]);
    let url = format!("http://{VIP_NAT}/");
    assert_eq!(t.fetch_names(&url, 1).len(), 1, "the service answers");

    t.rs[0].sh("nft add table inet rvs_syn_drop
         nft add chain inet rvs_syn_drop input '{ type filter hook input priority 0; }'
         nft add rule inet rvs_syn_drop input tcp dport 80 tcp flags syn counter drop");
    let mut cmd = t.cli.cmd("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_total}\n",
        "--max-time",
        "10",
        &url,
    ]);
    let mut curl = Proc::spawn("curl", cmd, &t.path("curl.out"));
    poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (dropped_syns(&t) >= 1).then_some(())
    })
    .expect("the director's SYN reached the real server (and was dropped)");
    t.rs[0].sh("nft delete table inet rvs_syn_drop");
    let status = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        curl.try_wait()
    })
    .expect("curl ends within its --max-time");
    let out = curl.log_text();
    println!("curl after a lost SYN: {}", out.trim());
    assert!(status.success(), "curl failed: {out}");
    assert!(out.starts_with("200 "), "curl got {out}");
    let table = t.lbctl(&["--dataplane-stats", "--exact"]);
    println!("{table}");
    let sp = dataplane_stats(&t.socket)[0].synproxy;
    assert_eq!(sp.syn_retransmits, 1, "one SYN sent again: {sp:?}");
    assert!(sp.held >= 1, "the request was held: {sp:?}");
    assert_eq!(sp.held_replayed, sp.held, "all of it replayed: {sp:?}");
    assert_eq!(sp.held_timeout, 0, "{sp:?}");
    // The table row: the worker's column and the total.
    let row = |name: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name));
        let line = line.unwrap_or_else(|| panic!("no {name} row in:\n{table}"));
        line.split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("synproxy_syn_retransmits"), ["1", "1"]);
    let replayed = sp.held_replayed.to_string();
    assert_eq!(row("synproxy_held_replayed"), [replayed.clone(), replayed]);
    let url = format!("http://{METRICS_ADDR}/metrics");
    let out = t
        .dir
        .output("curl", &["-sS", "-f", "--max-time", "5", &url]);
    assert!(out.status.success(), "scrape {url}");
    let text = String::from_utf8_lossy(&out.stdout);
    let metric = |event: &str, n: u64| {
        format!("rvs_worker_synproxy_events_total{{worker=\"0\",event=\"{event}\"}} {n}")
    };
    for line in [
        metric("synproxy_syn_retransmits", 1),
        metric("synproxy_held_replayed", sp.held_replayed),
        metric("synproxy_held_timeout", 0),
    ] {
        assert!(text.contains(&line), "no {line:?} in the scrape:\n{text}");
    }
    t.stop_lbd_cleanly();
}
