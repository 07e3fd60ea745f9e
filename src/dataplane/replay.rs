//! Offline replay (`lbd --replay PORT=in.pcap ... --capture-dir DIR`): push
//! recorded traffic through one worker over `pcap` ports and write what each
//! port sent to `DIR/PORT.pcap`, so operators can test a configuration
//! against recorded traffic without a NIC.
//!
//! Rules: one worker, run in the calling thread until every input is
//! consumed; packets still waiting for a neighbour at the end are dropped
//! and counted as `no_neighbour` (configure static neighbours for replays).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::dataplane::counters::DropReason;
use crate::dataplane::driver::pcap::{PcapDriver, PcapQueue};
use crate::dataplane::driver::{Driver, DriverError};
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::worker::{Links, Worker, WorkerConfig};

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Per port: name, packets read, packets written, capture path.
    pub ports: Vec<(String, u64, u64, PathBuf)>,
    /// Non-zero drop counts.
    pub drops: Vec<(DropReason, u64)>,
    /// Connections created.
    pub conns_created: u64,
}

/// Errors of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// `--replay` names a port the configuration does not have.
    #[error("--replay names port {0:?}, which the configuration does not define")]
    UnknownPort(String),
    /// A capture could not be opened or written.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// Replay `inputs` (port name, capture) through a worker running `snap`;
/// every port of the snapshot writes what it sends to `capture_dir/NAME.pcap`.
pub fn run(
    snap: Arc<Snapshot>,
    inputs: &[(String, PathBuf)],
    capture_dir: &Path,
    cfg: WorkerConfig,
) -> Result<ReplayReport, ReplayError> {
    for (name, _) in inputs {
        if !snap.ports.iter().any(|p| &p.name == name) {
            return Err(ReplayError::UnknownPort(name.clone()));
        }
    }
    std::fs::create_dir_all(capture_dir).map_err(|e| DriverError::os(capture_dir.display(), e))?;
    let mut queues: Vec<PcapQueue> = Vec::new();
    let mut paths = Vec::new();
    for p in &snap.ports {
        let rx = inputs
            .iter()
            .find(|(n, _)| n == &p.name)
            .map(|(_, f)| f.as_path());
        let tx = capture_dir.join(format!("{}.pcap", p.name));
        let mut d = PcapDriver::open(&p.name, p.mac.0, p.mtu, rx, Some(&tx))?;
        queues.extend(d.take_queues()?);
        paths.push(tx);
    }
    let cfg = WorkerConfig {
        index: 0,
        workers: 1,
        ..cfg
    };
    let links = Links::new(1);
    let counters = links.counters[0].clone();
    let mut w = Worker::new(cfg, queues, links, snap.clone());
    // Run until every capture is consumed, then a few passes more so that
    // time-based flushes fire.
    while !w.drained() {
        w.poll_once();
    }
    for _ in 0..4 {
        w.poll_once();
    }
    w.flush_all();
    let queues = w.into_queues();
    let mut report = ReplayReport::default();
    for ((p, q), path) in snap.ports.iter().zip(queues.iter()).zip(paths) {
        report
            .ports
            .push((p.name.clone(), q.rx_count, q.tx_count, path));
    }
    drop(queues);
    for r in DropReason::ALL {
        let n = counters.drops_of(r);
        if n > 0 {
            report.drops.push((r, n));
        }
    }
    report.conns_created = counters.conns_created.load(Relaxed);
    Ok(report)
}
