//! The runtime: starts the workers as threads pinned to their cores, hands
//! each its queues, publishes snapshots and waits for every worker to run
//! the new generation, collects connection listings, stops the workers.
//!
//! Rules: the control plane talks to workers only through their mailboxes
//! and reads their counters; it never touches a worker's tables. A publish
//! returns once every worker acknowledged the generation (or errs after a
//! timeout, naming the workers that did not).

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dataplane::counters::CoreCounters;
use crate::dataplane::driver::{PortQueue, PortStats};
use crate::dataplane::ports::Ports;
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::worker::{ConnEntry, Links, Msg, Worker, WorkerConfig};

/// Runtime errors.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A worker did not take a new generation in time.
    #[error("workers {workers:?} did not acknowledge generation {generation} within {timeout:?}")]
    NoAck {
        /// The generation.
        generation: u64,
        /// Workers that lag.
        workers: Vec<u16>,
        /// How long we waited.
        timeout: Duration,
    },
    /// A worker's mailbox stayed full.
    #[error("worker {0} mailbox full")]
    MailboxFull(u16),
    /// A thread could not be started.
    #[error("cannot start worker {worker}: {source}")]
    Spawn {
        /// Which worker.
        worker: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Bad worker set-up.
    #[error("{0}")]
    Config(String),
}

/// What the control plane needs from a running dataplane, whatever its
/// driver type.
pub trait DataplaneHandle: Send + Sync {
    /// Number of workers (0: control plane only).
    fn workers(&self) -> u16;
    /// Publish a snapshot and wait until every worker runs it.
    fn publish(&self, snap: Arc<Snapshot>) -> Result<(), RuntimeError>;
    /// Per-worker counters.
    fn counters(&self) -> Vec<Arc<CoreCounters>>;
    /// Every worker's connections.
    fn dump_conns(&self) -> Vec<ConnEntry>;
    /// Each port's name and device counters, in port order.
    fn port_stats(&self) -> Vec<(String, PortStats)> {
        Vec::new()
    }
    /// The connection sync rings (`crate::sync`), when there are workers.
    fn sync_rings(&self) -> Option<Arc<crate::sync::export::SyncRings>> {
        None
    }
    /// Tells every worker to export connection events to the sync thread
    /// (a master sync daemon runs) or to stop doing so. Best effort within
    /// 100 ms per worker (a worker that does not take it keeps its mode).
    fn set_sync_export(&self, on: bool) {
        let _ = on;
    }
    /// Asks every worker to export its whole connection table (a backup
    /// asked for a full resynchronisation); best effort like
    /// [`DataplaneHandle::set_sync_export`].
    fn sync_full(&self) {}
    /// Stop the workers and wait for them.
    fn stop(&self);
    /// Stop the workers, waiting at most `timeout` in all; returns the
    /// workers that did not stop in time (they are left running).
    fn stop_within(&self, timeout: Duration) -> Vec<u16> {
        let _ = timeout;
        self.stop();
        Vec::new()
    }
}

/// A dataplane with no workers (lbd without ports): snapshots are accepted
/// and kept, nothing forwards.
#[derive(Default)]
pub struct NoDataplane {
    counters: Vec<Arc<CoreCounters>>,
}

impl DataplaneHandle for NoDataplane {
    fn workers(&self) -> u16 {
        0
    }
    fn publish(&self, _snap: Arc<Snapshot>) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn counters(&self) -> Vec<Arc<CoreCounters>> {
        self.counters.clone()
    }
    fn dump_conns(&self) -> Vec<ConnEntry> {
        Vec::new()
    }
    fn stop(&self) {}
}

/// How long start-up waits for every worker to build its tables.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a publish waits for acknowledgements.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`DataplaneHandle::stop`] waits for the workers: `lbd` must
/// exit within 2 s of SIGTERM, whatever state the workers are in.
pub const STOP_TIMEOUT: Duration = Duration::from_millis(1500);

/// Running workers over queues of type `Q`.
pub struct Runtime<Q: PortQueue + 'static> {
    links: Arc<Links<Q::Buf>>,
    threads: Mutex<Vec<JoinHandle<Worker<Q>>>>,
    /// The devices the queues belong to: their steering follows every
    /// published snapshot, their counters are read for `--port-stats`.
    ports: Option<Arc<Ports>>,
}

impl<Q: PortQueue + 'static> Runtime<Q> {
    /// Start one worker per entry of `queues` (the worker's queue on each
    /// port), pinned to `cores[i]` when given. `on_start` runs first in each
    /// worker thread (e.g. DPDK thread registration).
    pub fn start(
        queues: Vec<Vec<Q>>,
        base: WorkerConfig,
        cores: &[Option<usize>],
        snap: Arc<Snapshot>,
        on_start: fn(u16),
    ) -> Result<Self, RuntimeError> {
        Self::start_with_ports(queues, base, cores, snap, on_start, None)
    }

    /// [`Runtime::start`] for the queues of `ports`: device steering is
    /// applied for `snap` before the workers start and for every published
    /// snapshot once every worker runs it.
    pub fn start_with_ports(
        queues: Vec<Vec<Q>>,
        base: WorkerConfig,
        cores: &[Option<usize>],
        snap: Arc<Snapshot>,
        on_start: fn(u16),
        ports: impl Into<Option<Arc<Ports>>>,
    ) -> Result<Self, RuntimeError> {
        let ports = ports.into();
        let n = queues.len() as u16;
        if n == 0 {
            return Err(RuntimeError::Config("no workers".into()));
        }
        let links: Arc<Links<Q::Buf>> =
            Links::with_kernel(n, ports.as_ref().and_then(|p| p.kernel()));
        let all_cores = core_affinity::get_core_ids().unwrap_or_default();
        for c in cores.iter().take(queues.len()).flatten() {
            if !all_cores.iter().any(|id| id.id == *c) {
                return Err(RuntimeError::Config(format!(
                    "core {c} is not available to this process (allowed: {:?})",
                    all_cores.iter().map(|id| id.id).collect::<Vec<_>>()
                )));
            }
        }
        if let Some(p) = &ports {
            p.apply_steering(&snap);
        }
        let mut threads = Vec::new();
        for (i, qs) in queues.into_iter().enumerate() {
            let cfg = WorkerConfig {
                index: i as u16,
                workers: n,
                ..base
            };
            let links = links.clone();
            let snap = snap.clone();
            let core = cores
                .get(i)
                .copied()
                .flatten()
                .and_then(|c| all_cores.iter().find(|id| id.id == c).copied());
            let h = std::thread::Builder::new()
                .name(format!("rvs-worker-{i}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    on_start(cfg.index);
                    crate::dataplane::driver::heapbuf::prewarm(4096);
                    let w = Worker::new(cfg, qs, links, snap);
                    w.counters().running.store(true, Ordering::Release);
                    w.run()
                })
                .map_err(|e| RuntimeError::Spawn {
                    worker: i as u16,
                    source: e,
                })?;
            threads.push(h);
        }
        let rt = Runtime {
            links,
            threads: Mutex::new(threads),
            ports,
        };
        // Building a worker's tables (a large connection table is zeroed
        // page by page) takes time: the daemon is ready only when every
        // worker is in its loop, or packets arriving first would overflow
        // the device rings.
        rt.wait_running(START_TIMEOUT)?;
        Ok(rt)
    }

    fn wait_running(&self, timeout: Duration) -> Result<(), RuntimeError> {
        let t0 = Instant::now();
        loop {
            let waiting: Vec<u16> = self
                .links
                .counters
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.running.load(Ordering::Acquire))
                .map(|(i, _)| i as u16)
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            let finished = self
                .threads
                .lock()
                .map(|t| t.iter().any(|h| h.is_finished()))
                .unwrap_or(false);
            if finished || t0.elapsed() > timeout {
                return Err(RuntimeError::Config(format!(
                    "workers {waiting:?} did not start within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_generation(&self, generation: u64, timeout: Duration) -> Result<(), RuntimeError> {
        let t0 = Instant::now();
        loop {
            let lagging: Vec<u16> = self
                .links
                .counters
                .iter()
                .enumerate()
                .filter(|(_, c)| c.generation.load(Ordering::Acquire) < generation)
                .map(|(i, _)| i as u16)
                .collect();
            if lagging.is_empty() {
                return Ok(());
            }
            if t0.elapsed() > timeout {
                return Err(RuntimeError::NoAck {
                    generation,
                    workers: lagging,
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Posts `msg()` to every worker, retrying a full mailbox for 100 ms.
    fn post_all(&self, msg: impl Fn() -> Msg) {
        for w in 0..self.links.workers() {
            let t0 = Instant::now();
            while self.links.post(w, msg()).is_err() && t0.elapsed() < Duration::from_millis(100) {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Stop the workers and take them back (their queues, their tables).
    /// Waits at most [`STOP_TIMEOUT`]; a worker that did not stop by then
    /// is left running and missing from the result.
    pub fn join(&self) -> Vec<Worker<Q>> {
        self.join_within(STOP_TIMEOUT).0
    }

    /// Posts `Stop` to every worker and takes back those that stop within
    /// `timeout` (in all, not per worker); also returns the indexes of the
    /// workers that did not (a full mailbox that never drains, a worker
    /// wedged in a driver call). Never blocks longer than `timeout` plus a
    /// few milliseconds.
    pub fn join_within(&self, timeout: Duration) -> (Vec<Worker<Q>>, Vec<u16>) {
        let deadline = Instant::now() + timeout;
        let n = self.links.workers();
        // A mailbox may be full (a wedged worker, a burst of publishes):
        // keep offering Stop to the ones that did not take it yet.
        let mut pending: Vec<(u16, Msg)> = (0..n).map(|w| (w, Msg::Stop)).collect();
        let mut handles: Vec<Option<JoinHandle<Worker<Q>>>> = self
            .threads
            .lock()
            .map(|mut t| t.drain(..).map(Some).collect())
            .unwrap_or_default();
        let mut done = Vec::new();
        loop {
            pending = pending
                .into_iter()
                .filter_map(|(w, m)| self.links.post(w, m).err().map(|m| (w, m)))
                .collect();
            for slot in handles.iter_mut() {
                if slot.as_ref().is_some_and(|h| h.is_finished()) {
                    if let Some(Ok(w)) = slot.take().map(|h| h.join()) {
                        done.push(w);
                    }
                }
            }
            if handles.iter().all(Option::is_none) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let wedged: Vec<u16> = handles
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is_some())
            .map(|(i, _)| i as u16)
            .collect();
        // Threads that did not stop stay detached: the process may exit
        // over them, nothing waits for them again.
        (done, wedged)
    }
}

impl<Q: PortQueue + 'static> DataplaneHandle for Runtime<Q> {
    fn workers(&self) -> u16 {
        self.links.workers()
    }

    fn publish(&self, snap: Arc<Snapshot>) -> Result<(), RuntimeError> {
        let generation = snap.generation;
        for w in 0..self.links.workers() {
            let mut m = Msg::Snapshot(snap.clone());
            let t0 = Instant::now();
            loop {
                match self.links.post(w, m) {
                    Ok(()) => break,
                    Err(back) if t0.elapsed() < ACK_TIMEOUT => {
                        m = back;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(_) => return Err(RuntimeError::MailboxFull(w)),
                }
            }
        }
        self.wait_generation(generation, ACK_TIMEOUT)?;
        if let Some(p) = &self.ports {
            p.apply_steering(&snap);
        }
        Ok(())
    }

    fn port_stats(&self) -> Vec<(String, PortStats)> {
        self.ports.as_ref().map(|p| p.stats()).unwrap_or_default()
    }

    fn counters(&self) -> Vec<Arc<CoreCounters>> {
        self.links.counters.clone()
    }

    fn dump_conns(&self) -> Vec<ConnEntry> {
        let mut out = Vec::new();
        for w in 0..self.links.workers() {
            let (tx, rx) = mpsc::channel();
            if self.links.post(w, Msg::DumpConns(tx)).is_ok() {
                if let Ok(v) = rx.recv_timeout(ACK_TIMEOUT) {
                    out.extend(v);
                }
            }
        }
        out
    }

    fn stop(&self) {
        let _ = self.join();
    }

    fn sync_rings(&self) -> Option<Arc<crate::sync::export::SyncRings>> {
        Some(self.links.sync().clone())
    }

    fn set_sync_export(&self, on: bool) {
        self.post_all(|| Msg::SyncExport(on));
    }

    fn sync_full(&self) {
        self.post_all(|| Msg::SyncDump);
    }

    fn stop_within(&self, timeout: Duration) -> Vec<u16> {
        self.join_within(timeout).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::driver::heapbuf::HeapBuf;
    use crate::dataplane::driver::Burst;
    use std::sync::atomic::AtomicBool;

    /// A queue that receives nothing; while `wedge` is set, a receive
    /// blocks (a worker stuck in a driver call).
    struct Wedgeable {
        wedge: Arc<AtomicBool>,
    }

    impl PortQueue for Wedgeable {
        type Buf = HeapBuf;
        fn rx_burst(&mut self, _burst: &mut Burst<HeapBuf>) -> usize {
            while self.wedge.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            0
        }
        fn tx_burst(&mut self, _burst: &mut Burst<HeapBuf>) -> usize {
            0
        }
        fn alloc(&mut self) -> Option<HeapBuf> {
            Some(HeapBuf::alloc())
        }
    }

    fn start(wedges: &[Arc<AtomicBool>]) -> Runtime<Wedgeable> {
        let queues = wedges
            .iter()
            .map(|w| vec![Wedgeable { wedge: w.clone() }])
            .collect();
        let n = wedges.len() as u16;
        let cores = vec![None; wedges.len()];
        Runtime::start(
            queues,
            WorkerConfig::default(),
            &cores,
            Arc::new(Snapshot::empty(n)),
            |_| {},
        )
        .expect("runtime")
    }

    #[test]
    fn a_wedged_worker_is_named_and_the_stop_is_bounded() {
        let wedges: Vec<_> = (0..2).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let rt = start(&wedges);
        wedges[1].store(true, Ordering::Release);
        let t0 = Instant::now();
        let (done, wedged) = rt.join_within(Duration::from_millis(300));
        let took = t0.elapsed();
        assert_eq!(wedged, [1], "worker 1 is stuck in rx_burst");
        assert_eq!(done.len(), 1);
        assert!(took < Duration::from_millis(600), "{took:?}");
        // Let the stuck thread go (it takes Stop and ends).
        wedges[1].store(false, Ordering::Release);
    }

    #[test]
    fn stop_gets_through_a_full_mailbox() {
        let wedges: Vec<_> = (0..1).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let rt = start(&wedges);
        // Fill the mailbox while the worker is stuck, then free it: Stop
        // must still be delivered, within the bound.
        wedges[0].store(true, Ordering::Release);
        let snap = Arc::new(Snapshot::empty(1));
        while rt.links.post(0, Msg::Snapshot(snap.clone())).is_ok() {}
        let release = {
            let w = wedges[0].clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                w.store(false, Ordering::Release);
            })
        };
        let (done, wedged) = rt.join_within(STOP_TIMEOUT);
        assert!(wedged.is_empty(), "{wedged:?}");
        assert_eq!(done.len(), 1);
        release.join().expect("release");
    }
}
