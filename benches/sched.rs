//! Scheduler benchmarks (criterion, `harness = false`).
//!
//! * `pick/<sched>/<n>`: one [`Scheduler::pick`] for each of the fourteen
//!   schedulers with 2, 100 and 1,000 real servers (mixed weights 1..=5,
//!   pseudo-random per-core loads, nobody overloaded, 1,024 rotating flows;
//!   lblc/lblcr see 256 destination addresses, so they measure cache hits).
//! * `mh_build/M=65537/N=1000`: building the Maglev ring the paper times
//!   (1.8 ms on its hardware).
//! * The Maglev disruption when one of 1,000 servers is removed (M = 65,537)
//!   is printed once as the fraction of slots that changed owner.
//!
//! * `least/<sched>_<scan|tree|scan+churn|tree+churn>/<n>`: the
//!   least-connection family (lc, wlc, sed, nq, fo, ovf) with 10, 100 and
//!   1,000 servers, IPVS's scan ([`rvs::sched::scan`]) and the per-worker
//!   tournament tree side by side in one run; `+churn` adds what a new
//!   connection costs around the pick (bind it, report the load change,
//!   unbind it, report again — the tree's two O(log n) updates). The ratios
//!   scan ÷ tree are printed at the end from criterion's medians.
//! * Instruction counts (deterministic): `RVS_SCHED_CALLGRIND=wlc/tree`
//!   (or `…/scan`, any of the six) runs 10,000 picks at 1,000 servers in
//!   `callgrind_loop` and exits; run it under
//!   `valgrind --tool=callgrind --toggle-collect='*callgrind_loop*'`.
//!
//! Kept short (1 s per case): `cargo bench --bench sched`, or add
//! `-- --quick`, or filter, e.g. `-- pick/mh`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion};
use rvs::sched::mh::MhTable;
use rvs::sched::{
    scan, BuildOptions, ConnKind, DestLoad, DestView, FlowKey, LeastKind, SchedState, Scheduler,
    SCHEDULER_NAMES,
};

/// `n` servers 10.x.y.z:80, ids 0.., weights cycling 1..=5.
fn dests(n: usize) -> Vec<DestView> {
    (0..n)
        .map(|i| {
            let b = (i as u32).to_be_bytes();
            DestView::v4(i as u32, [10, b[1], b[2], b[3]], 80, 1 + (i as u32 * 7) % 5)
        })
        .collect()
}

/// Deterministic pseudo-random per-core loads.
fn loads(n: usize) -> Vec<DestLoad> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            DestLoad {
                active: (x % 50) as u32,
                inactive: ((x >> 8) % 200) as u32,
                persist: 0,
                overloaded: false,
            }
        })
        .collect()
}

/// 1,024 client flows towards 256 destination addresses.
fn flows() -> Vec<FlowKey> {
    (0..1024u32)
        .map(|i| {
            let h = i.wrapping_mul(0x9e37_79b9).to_be_bytes();
            FlowKey::v4(
                [h[0], h[1], h[2], h[3]],
                1024 + i as u16,
                [192, 0, 2, (i & 255) as u8],
            )
        })
        .collect()
}

fn bench_pick(c: &mut Criterion) {
    let flows = flows();
    let mut group = c.benchmark_group("pick");
    for name in SCHEDULER_NAMES {
        for n in [2usize, 100, 1000] {
            let d = dests(n);
            let l = loads(n);
            let s = Scheduler::build(name, &[], &d).expect("scheduler builds");
            let mut state = s.new_state();
            let mut i = 0usize;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let f = &flows[i & 1023];
                    i = i.wrapping_add(1);
                    black_box(s.pick(&mut state, &d, &l, f, 1))
                })
            });
        }
    }
    group.finish();
}

fn bench_mh_build(c: &mut Criterion) {
    let d = dests(1000);
    let equal: Vec<DestView> = d
        .iter()
        .map(|x| DestView {
            weight: 1,
            last_weight: 1,
            ..*x
        })
        .collect();
    let mut group = c.benchmark_group("mh_build");
    group.bench_function("M=65537/N=1000", |b| {
        b.iter(|| black_box(MhTable::build(black_box(&equal), 65_537).expect("builds")))
    });
    group.bench_function("M=65537/N=1000/weights1-5", |b| {
        b.iter(|| black_box(MhTable::build(black_box(&d), 65_537).expect("builds")))
    });
    group.finish();

    // Disruption: remove one of 1,000 equal servers.
    let opts = BuildOptions {
        mh_table_size: 65_537,
        ..BuildOptions::default()
    };
    let before = Scheduler::build_with("mh", &[], &equal, &opts).expect("builds");
    let mut fewer = equal.clone();
    fewer.remove(500);
    let after = Scheduler::build_with("mh", &[], &fewer, &opts).expect("builds");
    let (ta, tb) = (
        before.table().expect("mh table"),
        after.table().expect("mh table"),
    );
    let changed = ta
        .iter()
        .zip(tb)
        .filter(|(x, y)| equal[**x as usize].id != fewer[**y as usize].id)
        .count();
    eprintln!(
        "mh disruption, M=65537, 1 of 1000 servers removed: {changed} of {} slots changed = {:.4} % (ideal 1/N = 0.1000 %)",
        ta.len(),
        100.0 * changed as f64 / ta.len() as f64
    );
}

/// The six least-connection schedulers and their tree order.
const LEAST: [(&str, LeastKind); 6] = [
    ("lc", LeastKind::Lc),
    ("wlc", LeastKind::Wlc),
    ("sed", LeastKind::Sed),
    ("nq", LeastKind::Nq),
    ("fo", LeastKind::Fo),
    ("ovf", LeastKind::Ovf),
];
const LEAST_NS: [usize; 3] = [10, 100, 1000];

/// Loads for the least-connection benches: [`loads`], all servers busy (so
/// nq cannot stop at an idle one) and ovf's `active ≤ weight` true for some.
fn least_loads(n: usize) -> Vec<DestLoad> {
    let d = dests(n);
    loads(n)
        .into_iter()
        .zip(&d)
        .map(|(mut l, v)| {
            l.active = 1 + l.active % (2 * v.weight);
            l
        })
        .collect()
}

/// A scheduler and a worker state whose tree is built (one pick done).
fn least_setup(name: &str, n: usize) -> (Vec<DestView>, Vec<DestLoad>, Scheduler, SchedState) {
    let d = dests(n);
    let l = least_loads(n);
    let s = Scheduler::build(name, &[], &d).expect("scheduler builds");
    let mut st = s.new_state();
    let f = flows()[0];
    s.pick(&mut st, &d, &l, &f, 1);
    (d, l, s, st)
}

fn bench_least(c: &mut Criterion) {
    let f = flows()[0];
    let mut group = c.benchmark_group("least");
    for (name, kind) in LEAST {
        for n in LEAST_NS {
            let (d, mut l, s, mut st) = least_setup(name, n);
            assert_eq!(s.pick(&mut st, &d, &l, &f, 1), scan(kind, &d, &l));
            group.bench_with_input(BenchmarkId::new(format!("{name}_scan"), n), &n, |b, _| {
                b.iter(|| black_box(scan(kind, black_box(&d), black_box(&l))))
            });
            group.bench_with_input(BenchmarkId::new(format!("{name}_tree"), n), &n, |b, _| {
                b.iter(|| black_box(s.pick(&mut st, black_box(&d), black_box(&l), &f, 1)))
            });
            group.bench_with_input(
                BenchmarkId::new(format!("{name}_scan+churn"), n),
                &n,
                |b, _| {
                    b.iter(|| {
                        if let Some(i) = scan(kind, black_box(&d), black_box(&l)) {
                            l[i].bind(ConnKind::Inactive, &d[i]);
                            l[i].unbind(ConnKind::Inactive, &d[i]);
                        }
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{name}_tree+churn"), n),
                &n,
                |b, _| {
                    b.iter(|| {
                        if let Some(i) = s.pick(&mut st, black_box(&d), black_box(&l), &f, 1) {
                            l[i].bind(ConnKind::Inactive, &d[i]);
                            st.load_changed(&l, i);
                            l[i].unbind(ConnKind::Inactive, &d[i]);
                            st.load_changed(&l, i);
                        }
                    })
                },
            );
            assert_eq!(s.pick(&mut st, &d, &l, &f, 1), scan(kind, &d, &l));
        }
    }
    group.finish();
    print_least_ratios();
}

/// criterion's median (ns) of `least/<id>/<n>` from this run's estimates.
fn median_ns(id: &str, n: usize) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{dir}/criterion/least/{id}/{n}/new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn print_least_ratios() {
    eprintln!("least-connection family, medians (ns) and scan ÷ tree:");
    for (name, _) in LEAST {
        for n in LEAST_NS {
            let m = |v: &str| median_ns(&format!("{name}_{v}"), n);
            let (Some(sc), Some(tr)) = (m("scan"), m("tree")) else {
                continue;
            };
            let churn = match (m("scan+churn"), m("tree+churn")) {
                (Some(a), Some(b)) => {
                    format!("; with churn scan {a:8.1} tree {b:6.1} ratio {:6.1}", a / b)
                }
                _ => String::new(),
            };
            eprintln!(
                "  {name:>3} N={n:>4}: scan {sc:8.1} tree {tr:5.1} ratio {:6.1}{churn}",
                sc / tr
            );
        }
    }
}

/// 10,000 picks at 1,000 servers, for callgrind's instruction count.
#[inline(never)]
fn callgrind_loop(s: &Scheduler, st: &mut SchedState, d: &[DestView], l: &[DestLoad], tree: bool) {
    let kind = LEAST
        .iter()
        .find(|(n, _)| *n == s.name())
        .map(|x| x.1)
        .expect("least family");
    let f = flows()[0];
    for _ in 0..10_000 {
        if tree {
            black_box(s.pick(st, black_box(d), black_box(l), &f, 1));
        } else {
            black_box(scan(kind, black_box(d), black_box(l)));
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(300))
        .sample_size(20);
    targets = bench_pick, bench_mh_build, bench_least
}

fn main() {
    if let Ok(spec) = std::env::var("RVS_SCHED_CALLGRIND") {
        let (name, how) = spec
            .split_once('/')
            .expect("RVS_SCHED_CALLGRIND=<sched>/<scan|tree>");
        let (d, l, s, mut st) = least_setup(name, 1000);
        callgrind_loop(&s, &mut st, &d, &l, how == "tree");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
