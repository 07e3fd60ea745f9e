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
//! Kept short (1 s per case): `cargo bench --bench sched`, or add
//! `-- --quick`, or filter, e.g. `-- pick/mh`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rvs::sched::mh::MhTable;
use rvs::sched::{BuildOptions, DestLoad, DestView, FlowKey, Scheduler, SCHEDULER_NAMES};

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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(300))
        .sample_size(20);
    targets = bench_pick, bench_mh_build
}
criterion_main!(benches);
