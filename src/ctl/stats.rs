//! ctl::stats — service and real-server counters as `ipvsadm --stats` and
//! `--rate` show them.
//!
//! Owns the control plane's view of the per-core counters: sums over the
//! workers' [`CoreCounters`] per slot id, the zero points of `-Z`, and the
//! rate estimator of IPVS (`net/netfilter/ipvs/ip_vs_est.c`).
//!
//! Rules:
//! * Workers are the only writers of their counters; this module only reads
//!   them (relaxed) and never writes them. `-Z` records the current sums as
//!   the zero point of each slot (IPVS's `kstats0`) and listings show
//!   `sum − zero point`; a slot newly handed to a service or real server is
//!   zeroed the same way, so it never shows a previous owner's traffic.
//! * The estimator is IPVS's, bit for bit: every [`ESTIMATOR_PERIOD`] (2 s)
//!   each slot's counter deltas are scaled (`conns`, packets `<< 9` — i.e.
//!   ×2^10 per second over 2 s — and bytes `<< 4` — ×2^5 per second) and
//!   folded into an EWMA with weight 1/4 (`avg += (rate − avg) >> 2`, an
//!   arithmetic shift); reading rounds as `ip_vs_read_estimator` does:
//!   `(cps + 0x1FF) >> 10` and `(bps + 0xF) >> 5`. `-Z` resets a slot's
//!   rates to zero and its last-seen counters to the current sums
//!   (`ip_vs_zero_estimator`).
//! * The estimator runs in its own control thread ([`spawn_estimator`]); it
//!   takes only the stats lock, never the configuration lock.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ctl::protocol::{Rates, Stats};
use crate::dataplane::counters::{CoreCounters, Traffic, TrafficCounters, MAX_DESTS, MAX_SERVICES};

/// How often the estimator samples the counters (IPVS: 2 s).
pub const ESTIMATOR_PERIOD: Duration = Duration::from_secs(2);

/// One slot's rate estimator: IPVS's `struct ip_vs_estimator`. Averages are
/// stored scaled: `cps`/`inpps`/`outpps` by 2^10, `inbps`/`outbps` by 2^5.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimator {
    last: Traffic,
    cps: u64,
    inpps: u64,
    outpps: u64,
    inbps: u64,
    outbps: u64,
}

/// `avg += ((s64)rate - (s64)avg) >> 2`, in IPVS's 64-bit arithmetic.
fn ewma(avg: &mut u64, rate: u64) {
    let diff = (rate as i64).wrapping_sub(*avg as i64);
    *avg = (*avg as i64).wrapping_add(diff >> 2) as u64;
}

impl Estimator {
    /// An estimator whose last sample is `now` and whose rates are zero.
    pub fn new(now: &Traffic) -> Estimator {
        Estimator {
            last: *now,
            ..Estimator::default()
        }
    }

    /// One sampling step (`estimation_timer` for one estimator), `now` being
    /// the counters' current sums.
    pub fn update(&mut self, now: &Traffic) {
        // "scaled by 2^10, but divided 2 seconds"
        ewma(&mut self.cps, now.conns.wrapping_sub(self.last.conns) << 9);
        ewma(
            &mut self.inpps,
            now.inpkts.wrapping_sub(self.last.inpkts) << 9,
        );
        ewma(
            &mut self.outpps,
            now.outpkts.wrapping_sub(self.last.outpkts) << 9,
        );
        ewma(
            &mut self.inbps,
            now.inbytes.wrapping_sub(self.last.inbytes) << 4,
        );
        ewma(
            &mut self.outbps,
            now.outbytes.wrapping_sub(self.last.outbytes) << 4,
        );
        self.last = *now;
    }

    /// `ip_vs_zero_estimator`: rates to zero, last sample = `now`.
    pub fn zero(&mut self, now: &Traffic) {
        *self = Estimator::new(now);
    }

    /// `ip_vs_read_estimator`: the decoded rates, per second.
    pub fn rates(&self) -> Rates {
        Rates {
            cps: self.cps.wrapping_add(0x1FF) >> 10,
            inpps: self.inpps.wrapping_add(0x1FF) >> 10,
            outpps: self.outpps.wrapping_add(0x1FF) >> 10,
            inbps: self.inbps.wrapping_add(0xF) >> 5,
            outbps: self.outbps.wrapping_add(0xF) >> 5,
        }
    }

    /// The scaled averages `[cps, inpps, outpps, inbps, outbps]` (tests).
    pub fn scaled(&self) -> [u64; 5] {
        [self.cps, self.inpps, self.outpps, self.inbps, self.outbps]
    }
}

/// Sum of one counter slot over every worker.
fn sum_slot<'a>(slots: impl Iterator<Item = Option<&'a TrafficCounters>>) -> Traffic {
    let mut sum = Traffic::default();
    for slot in slots.flatten() {
        let t = slot.read();
        sum.conns = sum.conns.wrapping_add(t.conns);
        sum.inpkts = sum.inpkts.wrapping_add(t.inpkts);
        sum.outpkts = sum.outpkts.wrapping_add(t.outpkts);
        sum.inbytes = sum.inbytes.wrapping_add(t.inbytes);
        sum.outbytes = sum.outbytes.wrapping_add(t.outbytes);
    }
    sum
}

/// A service slot's traffic summed over the workers.
pub fn sum_service(counters: &[Arc<CoreCounters>], id: u16) -> Traffic {
    sum_slot(counters.iter().map(|c| c.services.get(usize::from(id))))
}

/// A real-server slot's traffic summed over the workers.
pub fn sum_dest(counters: &[Arc<CoreCounters>], id: u16) -> Traffic {
    sum_slot(counters.iter().map(|c| c.dests.get(usize::from(id))))
}

/// Connection counts of a real server over all workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestConns {
    /// ActiveConn.
    pub active: u64,
    /// InActConn.
    pub inactive: u64,
    /// PersistConn (templates).
    pub persist: u64,
}

/// A real-server slot's connection counts summed over the workers.
pub fn dest_conns(counters: &[Arc<CoreCounters>], id: u16) -> DestConns {
    let mut sum = DestConns::default();
    for c in counters {
        if let Some(cc) = c.dest_conns.get(usize::from(id)) {
            sum.active = sum.active.wrapping_add(cc.active.load(Relaxed));
            sum.inactive = sum.inactive.wrapping_add(cc.inactive.load(Relaxed));
            sum.persist = sum.persist.wrapping_add(cc.persist.load(Relaxed));
        }
    }
    sum
}

fn minus(now: &Traffic, base: &Traffic) -> Stats {
    Stats {
        conns: now.conns.wrapping_sub(base.conns),
        inpkts: now.inpkts.wrapping_sub(base.inpkts),
        outpkts: now.outpkts.wrapping_sub(base.outpkts),
        inbytes: now.inbytes.wrapping_sub(base.inbytes),
        outbytes: now.outbytes.wrapping_sub(base.outbytes),
    }
}

/// Zero point and estimator of one slot.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    zero: Traffic,
    est: Estimator,
}

impl Slot {
    fn reset(&mut self, now: &Traffic) {
        self.zero = *now;
        self.est.zero(now);
    }
}

/// Zero points and rate estimators of every service and real-server slot.
#[derive(Debug, Clone)]
pub struct StatsKeeper {
    services: Vec<Slot>,
    dests: Vec<Slot>,
}

impl Default for StatsKeeper {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsKeeper {
    /// Every slot at zero (the counters of fresh workers are zero too).
    pub fn new() -> StatsKeeper {
        StatsKeeper {
            services: vec![Slot::default(); MAX_SERVICES],
            dests: vec![Slot::default(); MAX_DESTS],
        }
    }

    /// One estimator step for every slot.
    pub fn tick(&mut self, counters: &[Arc<CoreCounters>]) {
        if counters.is_empty() {
            return;
        }
        for (id, slot) in self.services.iter_mut().enumerate() {
            let now = sum_service(counters, id as u16);
            slot.est.update(&now);
        }
        for (id, slot) in self.dests.iter_mut().enumerate() {
            let now = sum_dest(counters, id as u16);
            slot.est.update(&now);
        }
    }

    /// `-Z` (and fresh slots): these slots read zero from now on, counters
    /// and rates.
    pub fn zero(&mut self, counters: &[Arc<CoreCounters>], services: &[u16], dests: &[u16]) {
        for &id in services {
            if let Some(slot) = self.services.get_mut(usize::from(id)) {
                slot.reset(&sum_service(counters, id));
            }
        }
        for &id in dests {
            if let Some(slot) = self.dests.get_mut(usize::from(id)) {
                slot.reset(&sum_dest(counters, id));
            }
        }
    }

    /// A service's counters since its zero point, and its rates.
    pub fn service(&self, counters: &[Arc<CoreCounters>], id: u16) -> (Stats, Rates) {
        match self.services.get(usize::from(id)) {
            Some(slot) => (
                minus(&sum_service(counters, id), &slot.zero),
                slot.est.rates(),
            ),
            None => (Stats::default(), Rates::default()),
        }
    }

    /// A real server's counters since its zero point, and its rates.
    pub fn dest(&self, counters: &[Arc<CoreCounters>], id: u16) -> (Stats, Rates) {
        match self.dests.get(usize::from(id)) {
            Some(slot) => (minus(&sum_dest(counters, id), &slot.zero), slot.est.rates()),
            None => (Stats::default(), Rates::default()),
        }
    }
}

/// The running estimator thread; stops when [`EstimatorThread::stop`] is
/// called or it is dropped.
pub struct EstimatorThread {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl EstimatorThread {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Dropping the sender wakes the thread at once.
        self.stop.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for EstimatorThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the control thread that calls [`StatsKeeper::tick`] every
/// `period` (IPVS: [`ESTIMATOR_PERIOD`]) on `counters` (the workers'
/// counters, fixed for the life of the data plane). Ticks are scheduled on
/// a fixed grid, so a late wake-up does not stretch later periods.
pub fn spawn_estimator(
    keeper: Arc<Mutex<StatsKeeper>>,
    counters: Vec<Arc<CoreCounters>>,
    period: Duration,
) -> io::Result<EstimatorThread> {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("rvs-estimator".to_string())
        .spawn(move || {
            let mut next = Instant::now() + period;
            loop {
                let wait = next.saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                keeper
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .tick(&counters);
                next += period;
                let now = Instant::now();
                if next < now {
                    // Fell behind by more than a period (suspended host):
                    // restart the grid instead of ticking in a burst.
                    next = now + period;
                }
            }
        })?;
    Ok(EstimatorThread {
        stop: Some(tx),
        handle: Some(handle),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::counters::bump;

    fn traffic(conns: u64, pkts: u64, bytes: u64) -> Traffic {
        Traffic {
            conns,
            inpkts: pkts,
            outpkts: pkts / 2,
            inbytes: bytes,
            outbytes: bytes / 2,
        }
    }

    #[test]
    fn estimator_matches_hand_computed_ipvs_values() {
        // 100 conns, 1000 packets, 1,000,000 bytes per 2 s period.
        let mut e = Estimator::new(&Traffic::default());
        e.update(&traffic(100, 1000, 1_000_000));
        // rate = 100 << 9 = 51200; avg = 0 + 51200 >> 2 = 12800.
        // bytes: rate = 1e6 << 4 = 16e6; avg = 4e6.
        assert_eq!(e.scaled(), [12800, 128_000, 64_000, 4_000_000, 2_000_000]);
        // (12800 + 511) >> 10 = 12; (4e6 + 15) >> 5 = 125000.
        assert_eq!(
            e.rates(),
            Rates {
                cps: 12,
                inpps: 125,
                outpps: 62,
                inbps: 125_000,
                outbps: 62_500
            }
        );
        e.update(&traffic(200, 2000, 2_000_000));
        // avg = 12800 + (51200 - 12800) >> 2 = 22400 → (22400 + 511) >> 10 = 22.
        assert_eq!(e.scaled()[0], 22400);
        assert_eq!(e.rates().cps, 22);
        // bytes: 4e6 + (16e6 - 4e6) / 4 = 7e6 → 218750.
        assert_eq!(e.rates().inbps, 218_750);
    }

    #[test]
    fn estimator_converges_to_the_true_rate_and_decays() {
        let mut e = Estimator::new(&Traffic::default());
        let mut now = Traffic::default();
        for _ in 0..100 {
            now.conns += 2000; // 1000 conns/s
            now.inbytes += 20_000_000; // 10 MB/s
            e.update(&now);
        }
        assert_eq!(e.rates().cps, 1000);
        assert_eq!(e.rates().inbps, 10_000_000);
        // Traffic stops: the average decays by 3/4 per period, with the
        // arithmetic shift rounding towards minus infinity.
        let before = e.scaled()[0];
        assert!((1_023_997..=1_024_000).contains(&before), "{before}");
        e.update(&now);
        assert_eq!(e.scaled()[0], before - before.div_ceil(4));
        assert_eq!(e.rates().cps, 750);
        for _ in 0..60 {
            e.update(&now);
        }
        assert_eq!(e.rates().cps, 0);
        assert_eq!(e.rates().inbps, 0);
    }

    #[test]
    fn zero_resets_counters_and_rates_without_touching_the_workers() {
        let core = Arc::new(CoreCounters::new());
        let counters = vec![core.clone()];
        let mut keeper = StatsKeeper::new();
        bump(&core.services[3].conns, 10);
        bump(&core.dests[7].inpkts, 40);
        bump(&core.dests[7].inbytes, 4000);
        keeper.tick(&counters);
        let (stats, rates) = keeper.dest(&counters, 7);
        assert_eq!(stats.inpkts, 40);
        assert_eq!(rates.inpps, 5, "(40<<9>>2 + 511) >> 10");
        keeper.zero(&counters, &[3], &[7]);
        assert_eq!(
            keeper.service(&counters, 3),
            (Stats::default(), Rates::default())
        );
        assert_eq!(
            keeper.dest(&counters, 7),
            (Stats::default(), Rates::default())
        );
        assert_eq!(
            core.dests[7].inpkts.load(Relaxed),
            40,
            "workers' counters untouched"
        );
        bump(&core.dests[7].inpkts, 2);
        assert_eq!(keeper.dest(&counters, 7).0.inpkts, 2);
        keeper.tick(&counters);
        assert_eq!(
            keeper.dest(&counters, 7).1.inpps,
            0,
            "(2<<9>>2 + 511) >> 10 = 0"
        );
    }

    #[test]
    fn sums_run_over_every_worker() {
        let a = Arc::new(CoreCounters::new());
        let b = Arc::new(CoreCounters::new());
        bump(&a.services[1].outbytes, 5);
        bump(&b.services[1].outbytes, 7);
        a.dest_conns[2].active.store(3, Relaxed);
        b.dest_conns[2].active.store(4, Relaxed);
        b.dest_conns[2].persist.store(1, Relaxed);
        let counters = vec![a, b];
        assert_eq!(sum_service(&counters, 1).outbytes, 12);
        assert_eq!(
            dest_conns(&counters, 2),
            DestConns {
                active: 7,
                inactive: 0,
                persist: 1
            }
        );
        // Out-of-range ids read as zero instead of panicking.
        assert_eq!(sum_dest(&counters, u16::MAX), Traffic::default());
    }

    #[test]
    fn estimator_thread_ticks_and_stops() {
        let core = Arc::new(CoreCounters::new());
        let keeper = Arc::new(Mutex::new(StatsKeeper::new()));
        bump(&core.services[0].conns, 1000);
        let t = spawn_estimator(
            keeper.clone(),
            vec![core.clone()],
            Duration::from_millis(20),
        )
        .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let cps = keeper
                .lock()
                .expect("lock")
                .service(std::slice::from_ref(&core), 0)
                .1
                .cps;
            if cps > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "estimator never ticked");
            std::thread::sleep(Duration::from_millis(5));
        }
        let t0 = Instant::now();
        t.stop();
        assert!(t0.elapsed() < Duration::from_secs(1), "stop is prompt");
    }
}
