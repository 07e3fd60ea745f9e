//! The Prometheus exporter under real traffic: lbd (TAP ports, in the
//! director's namespace) runs with `--metrics-listen 127.0.0.1:9100`, a NAT
//! service balances curl's requests over two nginx real servers, and
//! `/metrics` is scraped with curl during a download and after it. Every
//! scrape is parsed by a real OpenMetrics parser (Python's
//! `prometheus_client`, Debian's `python3-prometheus-client`), and its
//! figures are checked against what `lbctl -Ln --stats --exact`,
//! `lbctl --dataplane-stats` and `lbctl --port-stats` print: during traffic
//! each counter lies between the lbctl readings taken just before and just
//! after the scrape; once traffic stops they are equal.

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use rvs::ctl::protocol::Response;
use support::lbd::{lbctl_json, parse_stats, port_stats};
use support::process::poll_until;
use support::topology::{Driver, Options, ServerMode, Topology};
use support::world::{rip, VIP_NAT};

const TOOLS: [&str; 6] = ["ip", "nginx", "curl", "python3", "ethtool", "sysctl"];

const METRICS_ADDR: &str = "127.0.0.1:9100";

/// Debian's Python, where `python3-prometheus-client` is installed (a
/// python3 earlier on PATH, e.g. pyenv's, would not have it).
const PYTHON: &str = "/usr/bin/python3";

/// Metric samples by `name{label="value",...}` (labels sorted).
type Samples = BTreeMap<String, u64>;

/// One sample's key.
fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Parses an exposition with prometheus_client's OpenMetrics parser and
/// prints its samples as JSON (a parse error fails the script).
const PARSE_PY: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// Scrapes `/metrics` from inside the director's namespace and parses it
/// with the real parser.
fn scrape(t: &Topology) -> Samples {
    let url = format!("http://{METRICS_ADDR}/metrics");
    let out = t
        .dir
        .output("curl", &["-sS", "-f", "--max-time", "5", &url]);
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut parser = Command::new(PYTHON)
        .args(["-c", PARSE_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    parser
        .stdin
        .take()
        .expect("stdin")
        .write_all(&out.stdout)
        .expect("feed the parser");
    let parsed = parser.wait_with_output().expect("parser output");
    assert!(
        parsed.status.success(),
        "the OpenMetrics parser rejected the exposition: {}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let rows: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&parsed.stdout).expect("parser JSON");
    rows.into_iter()
        .map(|(name, labels, value)| {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert!(
                value >= 0.0 && value.fract() == 0.0,
                "{name}: not a count: {value}"
            );
            (key(&name, &labels), value as u64)
        })
        .collect()
}

/// What lbctl prints now, named as the exporter names it: the service's
/// and its real servers' counters (`-Ln --stats --exact`), the workers'
/// (`--dataplane-stats`) and the ports' (`--port-stats`).
fn lbctl_reading(t: &Topology) -> Samples {
    let mut r = Samples::new();
    let vip = format!("{VIP_NAT}:80");
    let text = t.lbctl(&["-Ln", "--stats", "--exact"]);
    let s = parse_stats(&text, "TCP", &vip).expect("the service in -Ln --stats --exact");
    let svc = [("proto", "tcp"), ("vip", vip.as_str())];
    r.insert(key("rvs_service_connections_total", &svc), s.conns);
    r.insert(key("rvs_service_in_packets_total", &svc), s.in_pkts);
    r.insert(key("rvs_service_out_packets_total", &svc), s.out_pkts);
    r.insert(key("rvs_service_in_bytes_total", &svc), s.in_bytes);
    r.insert(key("rvs_service_out_bytes_total", &svc), s.out_bytes);
    assert_eq!(s.dests.len(), 2, "{text}");
    for (addr, (conns, inpkts, outpkts)) in &s.dests {
        let rs = [
            ("proto", "tcp"),
            ("vip", vip.as_str()),
            ("rip", addr.as_str()),
        ];
        r.insert(key("rvs_real_server_connections_total", &rs), *conns);
        r.insert(key("rvs_real_server_in_packets_total", &rs), *inpkts);
        r.insert(key("rvs_real_server_out_packets_total", &rs), *outpkts);
    }
    match lbctl_json(&t.socket, &["--dataplane-stats"]) {
        Response::DataplaneStats { workers } => {
            assert!(!workers.is_empty());
            for w in workers {
                let id = w.worker.to_string();
                let l = [("worker", id.as_str())];
                r.insert(key("rvs_worker_rx_packets_total", &l), w.rx_packets);
                r.insert(key("rvs_worker_tx_packets_total", &l), w.tx_packets);
                r.insert(key("rvs_worker_steered_in_packets_total", &l), w.steered_in);
                r.insert(
                    key("rvs_worker_steered_out_packets_total", &l),
                    w.steered_out,
                );
                r.insert(
                    key("rvs_worker_connections_created_total", &l),
                    w.conns_created,
                );
                r.insert(
                    key("rvs_worker_connections_expired_total", &l),
                    w.conns_expired,
                );
                for d in &w.drops {
                    let l = [("worker", id.as_str()), ("reason", d.reason.as_str())];
                    r.insert(key("rvs_worker_dropped_packets_total", &l), d.packets);
                }
            }
        }
        other => panic!("--dataplane-stats: {other:?}"),
    }
    let ports = port_stats(&t.socket).expect("--port-stats");
    assert_eq!(ports.len(), 2);
    for p in ports {
        let l = [("port", p.name.as_str())];
        r.insert(key("rvs_port_rx_packets_total", &l), p.rx_packets);
        r.insert(key("rvs_port_rx_bytes_total", &l), p.rx_bytes);
        r.insert(key("rvs_port_tx_packets_total", &l), p.tx_packets);
        r.insert(key("rvs_port_tx_bytes_total", &l), p.tx_bytes);
        r.insert(key("rvs_port_rx_missed_packets_total", &l), p.rx_missed);
        r.insert(key("rvs_port_rx_errors_total", &l), p.rx_errors);
        r.insert(key("rvs_port_tx_errors_total", &l), p.tx_errors);
        r.insert(key("rvs_port_rx_no_buffer_total", &l), p.rx_nombuf);
    }
    r
}

/// lbctl before, a scrape, lbctl after: every counter lbctl shows is in
/// the scrape and lies between the two readings. Returns the three.
fn sandwich(t: &Topology) -> (Samples, Samples, Samples) {
    let before = lbctl_reading(t);
    let scraped = scrape(t);
    let after = lbctl_reading(t);
    for (k, lo) in &before {
        let hi = after[k];
        let got = *scraped
            .get(k)
            .unwrap_or_else(|| panic!("the scrape has no {k}"));
        assert!(
            *lo <= got && got <= hi,
            "{k}: lbctl said {lo} before and {hi} after the scrape, the scrape says {got}"
        );
    }
    (before, scraped, after)
}

#[test]
fn scraped_metrics_parse_and_match_lbctl_during_and_after_traffic() {
    let _serial = support::serial();
    if !support::needs_root("metrics_exporter", &TOOLS) {
        return;
    }
    let parser = Command::new(PYTHON)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .status()
        .expect("python3");
    assert!(
        parser.success(),
        "python3-prometheus-client is not installed (apt-get install python3-prometheus-client)"
    );
    let mut t = Topology::build(Options {
        lbd_args: vec!["--metrics-listen".into(), METRICS_ADDR.into()],
        ..Options::new(Driver::Tap)
    });
    t.server_mode(ServerMode::ViaDirector, &[]);
    let vip = format!("{VIP_NAT}:80");
    t.lbctl(&["-A", "-t", &vip, "-s", "wrr"]);
    for (i, w) in [(0, "1"), (1, "3")] {
        let rs = format!("{}:80", rip(i));
        t.lbctl(&["-a", "-t", &vip, "-r", &rs, "-m", "-w", w]);
    }
    let url = format!("http://{VIP_NAT}/");
    let names = t.fetch_names(&url, 8);
    assert_eq!(names.len(), 8);

    // During a download: the figures move and the scrape sits between
    // lbctl's readings.
    let mut download = t.start_slow_download(&format!("{url}slow/big.bin"), "metrics");
    let svc_out = key(
        "rvs_service_out_bytes_total",
        &[("proto", "tcp"), ("vip", vip.as_str())],
    );
    let first = lbctl_reading(&t);
    let moved = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (before, scraped, after) = sandwich(&t);
        (scraped[&svc_out] > first[&svc_out] && after[&svc_out] > before[&svc_out])
            .then_some(scraped)
    })
    .expect("the download's bytes show up in the scrapes");
    let active: u64 = (0..2)
        .map(|i| {
            let rs = format!("{}:80", rip(i));
            moved[&key(
                "rvs_real_server_active_connections",
                &[
                    ("proto", "tcp"),
                    ("vip", vip.as_str()),
                    ("rip", rs.as_str()),
                ],
            )]
        })
        .sum();
    assert_eq!(active, 1, "the download's connection is active");
    let status = download.wait_for(Duration::from_secs(30));
    assert!(status.success(), "download: {}", download.log_text());

    // After traffic: once two lbctl readings agree, the scrape between
    // them equals them.
    let (settled, scraped) =
        poll_until(Duration::from_secs(15), Duration::from_millis(200), || {
            let (before, scraped, after) = sandwich(&t);
            (before == after).then_some((before, scraped))
        })
        .expect("the counters settle after the traffic");
    for (k, v) in &settled {
        assert_eq!(scraped[k], *v, "{k}");
    }
    assert_eq!(
        settled[&key(
            "rvs_service_connections_total",
            &[("proto", "tcp"), ("vip", vip.as_str())]
        )],
        9,
        "8 requests and the download"
    );
    // Gauges from the listing: weights as configured.
    for (i, w) in [(0, 1), (1, 3)] {
        let rs = format!("{}:80", rip(i));
        let weight = key(
            "rvs_real_server_weight",
            &[
                ("proto", "tcp"),
                ("vip", vip.as_str()),
                ("rip", rs.as_str()),
            ],
        );
        assert_eq!(scraped[&weight], w, "{weight}");
    }
    let rx = key("rvs_worker_rx_packets_total", &[("worker", "0")]);
    assert!(scraped[&rx] > 100, "{rx} = {}", scraped[&rx]);
    t.stop_lbd_cleanly();
}
