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
//! Skipped without root outside CI; fails under CI if it cannot set itself
//! up.

mod support;

use std::time::Duration;

use support::process::{poll_until, Proc};
use support::topology::*;
use support::world::*;

const TOOLS: [&str; 4] = ["ip", "nginx", "curl", "nft"];

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
    let stats = t.lbctl(&["--dataplane-stats", "--exact"]);
    println!("{stats}");
    t.stop_lbd_cleanly();
}
