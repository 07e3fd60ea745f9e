//! How many TCP checks one health thread sustains (`#[ignore]`; run by
//! `bench/health_checks.sh`): the checker's own code (`Check::run`, the
//! state machine) on one current-thread runtime, as `lbd`'s health thread
//! runs them, against listeners on 127.0.0.1 that accept and close in
//! other threads.
//!
//! * paced: `RVS_HEALTH_BENCH_CHECKS` (10,000) checkers with `delay_loop`
//!   1 s, spread over the first second, for `RVS_HEALTH_BENCH_SECS` (10):
//!   achieved checks/s, how late checks start against their schedule, and
//!   the thread's CPU use.
//! * saturated: 1,000 checkers back to back for 5 s: the ceiling.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rvs::health::checker::Check;
use rvs::health::conf::CheckConf;
use rvs::health::state::{CheckState, Damping};

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Listeners that accept and close until dropped.
struct Listeners {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Listeners {
    fn start(n: usize) -> Listeners {
        let stop = Arc::new(AtomicBool::new(false));
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..n {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            addrs.push(l.local_addr().expect("addr"));
            let stop = stop.clone();
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = l.accept();
                }
            }));
        }
        Listeners {
            addrs,
            stop,
            threads,
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for a in &self.addrs {
            let _ = std::net::TcpStream::connect_timeout(a, Duration::from_millis(100));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn tcp_checks(n: usize, addrs: &[SocketAddr]) -> Vec<Check> {
    let confs: Vec<CheckConf> =
        serde_yaml_ng::from_str("- TCP_CHECK: {delay_loop: 1, connect_timeout: 1}\n")
            .expect("yaml");
    (0..n)
        .map(|i| {
            Check::new(&confs[0], addrs[i % addrs.len()], Duration::from_secs(1)).expect("check")
        })
        .collect()
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "benchmark: bench/health_checks.sh"]
fn bench_tcp_checks_per_second_on_one_thread() {
    raise_nofile();
    let listeners = Listeners::start(8);
    let n = env("RVS_HEALTH_BENCH_CHECKS", 10_000) as usize;
    let secs = env("RVS_HEALTH_BENCH_SECS", 10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Paced: n checkers, delay_loop 1 s, each start spread over 1 s.
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let lateness = Arc::new(Mutex::new(Vec::<u32>::new()));
    let cpu0 = thread_cpu();
    let began = Instant::now();
    rt.block_on(async {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for (i, check) in tcp_checks(n, &listeners.addrs).into_iter().enumerate() {
            let (done, failed, lateness) = (done.clone(), failed.clone(), lateness.clone());
            tasks.push(tokio::spawn(async move {
                let timing = rvs::health::conf::Timing {
                    delay_loop: Duration::from_secs(1),
                    connect_timeout: Duration::from_secs(1),
                    retry: 1,
                    delay_before_retry: Duration::from_secs(1),
                    warmup: Duration::ZERO,
                };
                let mut state = CheckState::new(false);
                let mut due = tokio::time::Instant::now()
                    + Duration::from_micros(1_000_000 * i as u64 / n as u64);
                let mut late = Vec::new();
                while due < end {
                    tokio::time::sleep_until(due).await;
                    let start = tokio::time::Instant::now();
                    late.push(start.saturating_duration_since(due).as_micros() as u32);
                    let out = check.run().await;
                    let step = state.record(&timing, Damping::default(), out.ok);
                    done.fetch_add(1, Ordering::Relaxed);
                    if !out.ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    due = tokio::time::Instant::now() + step.next;
                }
                lateness.lock().expect("lateness").extend(late);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let wall = began.elapsed();
    let cpu = thread_cpu() - cpu0;
    let mut late = std::mem::take(&mut *lateness.lock().expect("lateness"));
    late.sort_unstable();
    let pct = |p: f64| {
        late.get(((late.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let total = done.load(Ordering::Relaxed);
    println!(
        "paced: {n} TCP checkers, delay_loop 1 s, {secs} s: {total} checks in {:.2} s = {:.0} checks/s, {} failed; \
         start lateness p50 {} µs, p99 {} µs, max {} µs; health thread CPU {:.2} s ({:.0} % of one core)",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        failed.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99),
        late.last().copied().unwrap_or(0),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "local listeners refused checks"
    );

    // Saturated: 1,000 checkers back to back for 5 s.
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = thread_cpu();
    let began = Instant::now();
    rt.block_on(async {
        let end = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut tasks = Vec::new();
        for check in tcp_checks(1000, &listeners.addrs) {
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                while tokio::time::Instant::now() < end {
                    let _ = check.run().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let wall = began.elapsed();
    let cpu = thread_cpu() - cpu0;
    let total = done.load(Ordering::Relaxed);
    println!(
        "saturated: 1000 TCP checkers back to back: {total} checks in {:.2} s = {:.0} checks/s; health thread CPU {:.0} % of one core",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
}
