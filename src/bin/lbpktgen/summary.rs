//! The run's results: the summary (printed as text, or as JSON with
//! `--json`) and the live progress line.
//!
//! Rules: rates are over the transmit time (first to last packet sent);
//! bits per second count frames without FCS, preamble or gap; latencies
//! are in nanoseconds.

use std::fmt::Write as _;

use rvs::dataplane::driver::PortStats;
use serde::Serialize;

use crate::histogram::LatencyHistogram;
use crate::tcp_client::ClientStats;

/// Latency percentiles, ns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub samples: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl LatencySummary {
    /// The summary of `h`, `None` without samples.
    pub fn of(h: &LatencyHistogram) -> Option<LatencySummary> {
        Some(LatencySummary {
            samples: h.samples(),
            min: h.min()?,
            mean: h.mean()?,
            p50: h.percentile(50.0)?,
            p90: h.percentile(90.0)?,
            p99: h.percentile(99.0)?,
            max: h.max()?,
        })
    }
}

/// The transmit side.
#[derive(Debug, Clone, Serialize)]
pub struct TxSummary {
    /// The TX port.
    pub port: String,
    /// Packets sent (taken by the device).
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Seconds from the first to the last packet sent.
    pub seconds: f64,
    /// Packets per second.
    pub pps: f64,
    /// Bits per second (frames without FCS).
    pub bits_per_sec: f64,
    /// Packets not built because the buffer pool was empty.
    pub nobuf: u64,
    /// Packets built but not taken by the device before the end.
    pub unsent: u64,
    /// ARP replies sent from this port.
    pub arp_replies: u64,
    /// Frames received on the TX port when it is not an RX port (ignored).
    pub rx_ignored: u64,
    /// The device's own counters.
    pub device: PortStats,
}

/// One receive port.
#[derive(Debug, Clone, Serialize)]
pub struct RxSummary {
    /// The RX port.
    pub port: String,
    /// Frames received.
    pub packets: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Frames per second over the transmit time.
    pub pps: f64,
    /// Packets carrying this run's signature (first copies).
    pub matched: u64,
    /// Signed packets received again.
    pub duplicates: u64,
    /// Frames without the signature (handshake mode: not a segment of one
    /// of the connections).
    pub foreign: u64,
    /// Frames with a wrong TCP/UDP checksum (`--verify-checksums`).
    pub bad_checksums: u64,
    /// TCP segments given to the client (handshake mode).
    pub segments: u64,
    /// ARP replies sent from this port.
    pub arp_replies: u64,
    /// Segments lost because the client's event queue was full.
    pub events_dropped: u64,
    /// The device's own counters.
    pub device: PortStats,
}

/// The handshake mode's results.
#[derive(Debug, Clone, Serialize)]
pub struct TcpSummary {
    /// What the clients did.
    #[serde(flatten)]
    pub stats: ClientStats,
    /// Connections still open at the end.
    pub open_at_end: u32,
    /// Handshakes per second over the transmit time.
    pub handshakes_per_sec: f64,
    /// Completed connections per second over the transmit time.
    pub completed_per_sec: f64,
    /// SYN → SYN-ACK, ns.
    pub handshake_latency_ns: Option<LatencySummary>,
    /// Request → first response data, ns.
    pub response_latency_ns: Option<LatencySummary>,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `udp`, `tcp` or `tcp-handshake`.
    pub mode: &'static str,
    /// Flows (client endpoints).
    pub flows: u32,
    /// Source addresses the flows use.
    pub src_ips: u32,
    /// Frame size (stream modes).
    pub frame_size: Option<u16>,
    /// Rate limit, packets (connections) per second; `null`: unlimited.
    pub rate_limit_pps: Option<f64>,
    /// Whether the run was cut short by SIGINT/SIGTERM.
    pub interrupted: bool,
    /// Transmit side.
    pub tx: TxSummary,
    /// Receive ports.
    pub rx: Vec<RxSummary>,
    /// Signed packets matched on all RX ports (stream modes).
    pub matched: Option<u64>,
    /// Packets sent and never matched (stream modes).
    pub lost: Option<u64>,
    /// `lost` as a percentage of packets sent (stream modes).
    pub loss_pct: Option<f64>,
    /// One-way latency of matched packets, ns (stream modes).
    pub latency_ns: Option<LatencySummary>,
    /// Handshake mode results.
    pub tcp: Option<TcpSummary>,
}

/// `n` per second with a unit: `1.23 Mpps`.
pub fn rate(n: f64, unit: &str) -> String {
    let (v, p) = if n >= 1e9 {
        (n / 1e9, "G")
    } else if n >= 1e6 {
        (n / 1e6, "M")
    } else if n >= 1e3 {
        (n / 1e3, "k")
    } else {
        (n, "")
    };
    format!("{v:.2} {p}{unit}")
}

/// A duration in ns, human-sized: `850 ns`, `12.3 µs`, `4.56 ms`.
pub fn nanos(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn latency_line(l: &LatencySummary) -> String {
    format!(
        "min {}  p50 {}  p90 {}  p99 {}  max {}  mean {}  ({} samples)",
        nanos(l.min as f64),
        nanos(l.p50 as f64),
        nanos(l.p90 as f64),
        nanos(l.p99 as f64),
        nanos(l.max as f64),
        nanos(l.mean),
        l.samples
    )
}

impl Summary {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let t = &self.tx;
        let size = self
            .frame_size
            .map(|b| format!(", {b}-byte frames"))
            .unwrap_or_default();
        let limit = self
            .rate_limit_pps
            .map(|r| format!(", limit {}", rate(r, "pps")))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "lbpktgen {}: {} flows from {} source address(es){size}{limit}{}",
            self.mode,
            self.flows,
            self.src_ips,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "tx  {:<22} {:>12} pkts {:>14} bytes  {:.3} s  {}  {}",
            t.port,
            t.packets,
            t.bytes,
            t.seconds,
            rate(t.pps, "pps"),
            rate(t.bits_per_sec, "bit/s")
        );
        if t.nobuf + t.unsent + t.arp_replies + t.rx_ignored > 0 {
            let _ = writeln!(
                s,
                "    nobuf {}  unsent {}  arp replies {}  rx ignored {}",
                t.nobuf, t.unsent, t.arp_replies, t.rx_ignored
            );
        }
        for r in &self.rx {
            let _ = writeln!(
                s,
                "rx  {:<22} {:>12} pkts {:>14} bytes  {}  matched {}  dup {}  foreign {}",
                r.port,
                r.packets,
                r.bytes,
                rate(r.pps, "pps"),
                r.matched,
                r.duplicates,
                r.foreign
            );
            if r.bad_checksums + r.arp_replies + r.events_dropped + r.device.imissed > 0 {
                let _ = writeln!(
                    s,
                    "    bad checksums {}  arp replies {}  events dropped {}  device missed {}",
                    r.bad_checksums, r.arp_replies, r.events_dropped, r.device.imissed
                );
            }
        }
        if let (Some(lost), Some(pct)) = (self.lost, self.loss_pct) {
            let _ = writeln!(s, "loss {lost} of {} ({pct:.3} %)", t.packets);
        }
        if let Some(l) = &self.latency_ns {
            let _ = writeln!(s, "latency  {}", latency_line(l));
        }
        if let Some(c) = &self.tcp {
            let st = &c.stats;
            let _ = writeln!(
                s,
                "tcp  opened {}  handshakes {}  requests {}  responses {}  completed {}  ({} handshakes/s, {} completed/s)",
                st.opened,
                st.handshakes,
                st.requests,
                st.responses,
                st.completed,
                rate(c.handshakes_per_sec, "").trim_end(),
                rate(c.completed_per_sec, "").trim_end()
            );
            let _ = writeln!(
                s,
                "     refused {}  reset {}  closed early {}  timeouts {}  late {}  stray {}  open at end {}",
                st.refused,
                st.reset,
                st.closed_early,
                st.timeouts,
                st.late,
                st.stray,
                c.open_at_end
            );
            if let Some(l) = &c.handshake_latency_ns {
                let _ = writeln!(s, "handshake  {}", latency_line(l));
            }
            if let Some(l) = &c.response_latency_ns {
                let _ = writeln!(s, "response   {}", latency_line(l));
            }
        }
        s
    }
}

/// Totals the live display shows, summed over the threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// ns since the start.
    pub at_ns: u64,
    /// Packets sent.
    pub tx: u64,
    /// Frames received.
    pub rx: u64,
    /// Signed packets matched.
    pub matched: u64,
    /// Handshakes completed.
    pub handshakes: u64,
}

/// The one-line progress display between snapshots `prev` and `now`:
/// elapsed, tx and rx rates over the interval, cumulative loss (stream) or
/// connection rate (handshake).
pub fn progress_line(prev: &Snapshot, now: &Snapshot, handshake: bool) -> String {
    let dt = (now.at_ns.saturating_sub(prev.at_ns)) as f64 / 1e9;
    let per_sec = |a: u64, b: u64| {
        if dt > 0.0 {
            b.saturating_sub(a) as f64 / dt
        } else {
            0.0
        }
    };
    let mut line = format!(
        "[{:7.1} s] tx {:>12}  rx {:>12}",
        now.at_ns as f64 / 1e9,
        rate(per_sec(prev.tx, now.tx), "pps"),
        rate(per_sec(prev.rx, now.rx), "pps"),
    );
    if handshake {
        let _ = write!(
            line,
            "  handshakes {:>10}/s  total {}",
            rate(per_sec(prev.handshakes, now.handshakes), "").trim_end(),
            now.handshakes
        );
    } else {
        let loss = if now.tx > 0 {
            now.tx.saturating_sub(now.matched) as f64 * 100.0 / now.tx as f64
        } else {
            0.0
        };
        let _ = write!(line, "  loss {loss:6.2} %");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations_get_units() {
        assert_eq!(rate(950.0, "pps"), "950.00 pps");
        assert_eq!(rate(20_000.0, "pps"), "20.00 kpps");
        assert_eq!(rate(1_234_567.0, "bit/s"), "1.23 Mbit/s");
        assert_eq!(nanos(850.0), "850 ns");
        assert_eq!(nanos(12_345.0), "12.3 µs");
        assert_eq!(nanos(4_560_000.0), "4.56 ms");
    }

    #[test]
    fn progress_shows_interval_rates_and_cumulative_loss() {
        let prev = Snapshot {
            at_ns: 500_000_000,
            tx: 10_000,
            rx: 9_000,
            matched: 9_000,
            handshakes: 0,
        };
        let now = Snapshot {
            at_ns: 1_000_000_000,
            tx: 20_000,
            rx: 19_000,
            matched: 19_000,
            handshakes: 0,
        };
        let line = progress_line(&prev, &now, false);
        assert!(line.starts_with("[    1.0 s]"), "{line}");
        assert!(line.contains("tx   20.00 kpps"), "{line}");
        assert!(line.contains("rx   20.00 kpps"), "{line}");
        assert!(line.contains("loss   5.00 %"), "{line}");
    }

    #[test]
    fn latency_summary_needs_samples() {
        let mut h = LatencyHistogram::new();
        assert_eq!(LatencySummary::of(&h), None);
        h.record(100);
        h.record(120);
        let l = LatencySummary::of(&h).expect("samples");
        assert_eq!(
            (l.samples, l.min, l.max, l.p50, l.p99),
            (2, 100, 120, 100, 120)
        );
        assert_eq!(l.mean, 110.0);
    }
}
