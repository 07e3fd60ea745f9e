//! The kernel path's cost to one worker (issue 11: "a flood to the DIP does
//! not lower the forwarding rate of VIP traffic"), isolated from the kernel,
//! the generators and the other processes an end-to-end run shares the CPU
//! with. One worker on the `mem` driver, port 0 with a kernel interface
//! (`KernelRings`), forwards established NAT TCP flows (1,000 flows, 64-byte
//! frames) while UDP frames to the DIP (1,000 sources) arrive mixed in:
//!
//! * `alone`: VIP frames only;
//! * `drained_1to1`, `drained_1to4`: VIP:DIP 1:1 and 1:4, the up ring
//!   emptied between bursts as the kernel-path thread does (outside the
//!   timed region: that is the other thread's work);
//! * `ring_full_1to1`, `ring_full_1to4`: nobody drains, every DIP frame is
//!   dropped and counted as `kernel_drop`;
//! * `pps_limited_1to1`, `pps_limited_1to4`: `kernel_if_pps` 1000, drained:
//!   the excess is dropped before any copy.
//!
//! One iteration is 5 bursts of 32 frames (160 frames: 160, 80 or 32 of
//! them VIP); criterion's throughput is VIP frames, so its "elem/s" is VIP
//! frames per second of worker time. Group `dip_only` times bursts of DIP
//! frames alone: the worker's cost per DIP frame in each state. A table
//! printed at the end (own timing, same cases) puts ns per VIP frame, VIP
//! Mpps of worker time and ns per DIP frame side by side.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::driver::{heapbuf, PortQueue};
use rvs::dataplane::kernel::KernelRings;
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

const FLOWS: u32 = 1000;
const BURSTS_PER_ITER: usize = 5;
const FRAMES_PER_ITER: u64 = 32 * BURSTS_PER_ITER as u64;
const SLOT_BYTES: usize = 2048;

/// How the kernel path behaves during a case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// The up ring is emptied between bursts.
    Drained,
    /// Nobody empties it: full, every DIP frame dropped.
    RingFull,
    /// `kernel_if_pps` 1000, drained.
    PpsLimited,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Drained => "drained",
            State::RingFull => "ring_full",
            State::PpsLimited => "pps_limited",
        }
    }
}

fn client(f: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(v4("100.64.0.1")) + f)
}

fn vip_frame(f: u32, flags: TcpFlags) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(client(f), v4("10.0.0.1"))
        .tcp(40000, 80)
        .flags(flags)
        .payload_fill(6)
        .build()
}

fn dip_frame(i: u32) -> Vec<u8> {
    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(
            std::net::Ipv4Addr::from(u32::from(v4("198.51.100.1")) + i),
            v4(DIP_EXT),
        )
        .udp(5000 + (i % 1000) as u16, 9999)
        .payload_fill(18)
        .build()
}

/// Frames cycling VIP:DIP as `vip`:`dip` (dip 0: VIP only; vip 0: DIP
/// only).
fn mix(vip: u32, dip: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let (mut fv, mut fd) = (0u32, 0u32);
    for _ in 0..FLOWS {
        for _ in 0..vip {
            out.push(vip_frame(fv % FLOWS, TcpFlags::ACK));
            fv += 1;
        }
        for _ in 0..dip {
            out.push(dip_frame(fd % FLOWS));
            fd += 1;
        }
    }
    out
}

/// A worker with a kernel interface on port 0 whose `FLOWS` NAT
/// connections are established; its port 0 then delivers `frames` in a
/// cycle.
fn worker(state: State, frames: Vec<Vec<u8>>) -> (Worker<MemQueue>, Arc<KernelRings>) {
    heapbuf::prewarm(8192);
    let topo = Topo::standard();
    let rates: &[(u16, u64)] = if state == State::PpsLimited {
        &[(EXT, 1000)]
    } else {
        &[]
    };
    let rings = Arc::new(KernelRings::with_rates(
        1,
        2,
        &[EXT],
        rates,
        SLOT_BYTES,
        rvs::dataplane::kernel::RING_SLOTS,
    ));
    let syns: Vec<Vec<u8>> = (0..FLOWS).map(|f| vip_frame(f, TcpFlags::SYN)).collect();
    let acks: Vec<Vec<u8>> = (0..FLOWS).map(|f| vip_frame(f, TcpFlags::ACK)).collect();
    let mut w = Worker::new(
        WorkerConfig {
            conn_capacity: FLOWS * 4,
            ..WorkerConfig::default()
        },
        vec![MemQueue::scripted(syns), MemQueue::generator(Vec::new())],
        Links::with_kernel(1, Some(rings.clone())),
        topo.snapshot(1),
    );
    drain_script(&mut w);
    w.queues_mut()[0] = MemQueue::scripted(acks);
    drain_script(&mut w);
    assert_eq!(w.conns().len(), FLOWS, "every VIP flow has its connection");
    w.queues_mut()[0] = MemQueue::generator(frames);
    if state == State::RingFull {
        // Fill the up ring: from here on every DIP frame is dropped.
        for _ in 0..64 {
            w.poll_once();
        }
    }
    (w, rings)
}

fn drain_script(w: &mut Worker<MemQueue>) {
    while !w.queues_mut()[0].rx_exhausted() {
        w.poll_once();
    }
}

/// Empty worker 0's up ring as the kernel-path thread does (minus the TAP
/// write).
fn drain_up(rings: &KernelRings) {
    while let Some(f) = rings.pop_up(0) {
        black_box(f.data().len());
        rings.recycle_up(f);
    }
}

/// Time `iters` iterations of `BURSTS_PER_ITER` polls, the drain (when the
/// state drains) outside the timed region.
fn timed(w: &mut Worker<MemQueue>, rings: &KernelRings, state: State, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if state != State::RingFull {
            drain_up(rings);
        }
        let t = Instant::now();
        for _ in 0..BURSTS_PER_ITER {
            black_box(w.poll_once());
        }
        total += t.elapsed();
    }
    total
}

/// The cases: name, VIP:DIP, state.
fn cases() -> Vec<(String, u32, u32, State)> {
    let mut v = vec![("alone".to_string(), 1, 0, State::Drained)];
    for state in [State::Drained, State::RingFull, State::PpsLimited] {
        for (vip, dip) in [(1u32, 1u32), (1, 4)] {
            v.push((format!("{}_{vip}to{dip}", state.name()), vip, dip, state));
        }
    }
    v
}

fn vip_per_iter(vip: u32, dip: u32) -> u64 {
    FRAMES_PER_ITER * vip as u64 / (vip + dip) as u64
}

fn bench_vip_with_dip_flood(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernel_path_vip_rate");
    for (name, vip, dip, state) in cases() {
        let (mut w, rings) = worker(state, mix(vip, dip));
        g.throughput(Throughput::Elements(vip_per_iter(vip, dip)));
        g.bench_function(BenchmarkId::from_parameter(&name), |b| {
            b.iter_custom(|iters| timed(&mut w, &rings, state, iters))
        });
    }
    g.finish();
}

fn bench_dip_only(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernel_path_dip_only");
    g.throughput(Throughput::Elements(FRAMES_PER_ITER));
    for state in [State::Drained, State::RingFull, State::PpsLimited] {
        let (mut w, rings) = worker(state, mix(0, 1));
        g.bench_function(BenchmarkId::from_parameter(state.name()), |b| {
            b.iter_custom(|iters| timed(&mut w, &rings, state, iters))
        });
    }
    g.finish();
}

/// The side-by-side table: each case timed for `ITERS` iterations, best of
/// 5 rounds.
fn summary(_: &mut Criterion) {
    const ITERS: u64 = 20_000;
    let best = |state: State, vip: u32, dip: u32| {
        let (mut w, rings) = worker(state, mix(vip, dip));
        timed(&mut w, &rings, state, ITERS / 10);
        let ns = (0..5)
            .map(|_| timed(&mut w, &rings, state, ITERS).as_nanos() as f64)
            .fold(f64::MAX, f64::min);
        let c = w.counters();
        let to = c.to_kernel.load(std::sync::atomic::Ordering::Relaxed);
        let drop = c.kernel_drop.load(std::sync::atomic::Ordering::Relaxed);
        (ns / ITERS as f64, to, drop)
    };
    let (alone, _, _) = best(State::Drained, 1, 0);
    let alone_vip = alone / FRAMES_PER_ITER as f64;
    println!(
        "kernel_path summary (one worker, mem driver, {FLOWS} established NAT flows, 64-byte frames)"
    );
    println!(
        "{:<18} {:>9} {:>12} {:>14} {:>12} {:>12}",
        "case", "VIP:DIP", "ns/VIP pkt", "VIP Mpps(w)", "ns/DIP pkt", "kernel_drop%"
    );
    println!(
        "{:<18} {:>9} {:>12.1} {:>14.2} {:>12} {:>12}",
        "alone",
        "1:0",
        alone_vip,
        1e3 / alone_vip,
        "-",
        "-"
    );
    for (name, vip, dip, state) in cases().into_iter().skip(1) {
        let (per_iter, to, drop) = best(state, vip, dip);
        let nv = vip_per_iter(vip, dip) as f64;
        let nd = FRAMES_PER_ITER as f64 - nv;
        let per_vip = per_iter / nv;
        // What the DIP frames added, per DIP frame: the mixed iteration
        // minus its VIP frames at the VIP-alone cost.
        let per_dip = (per_iter - nv * alone_vip) / nd;
        println!(
            "{:<18} {:>9} {:>12.1} {:>14.2} {:>12.1} {:>12.1}",
            name,
            format!("{vip}:{dip}"),
            per_vip,
            1e3 / per_vip,
            per_dip,
            100.0 * drop as f64 / (to + drop).max(1) as f64
        );
    }
    for state in [State::Drained, State::RingFull, State::PpsLimited] {
        let (per_iter, _, _) = best(state, 0, 1);
        println!(
            "dip_only/{:<9} ns/DIP pkt {:>7.1}",
            state.name(),
            per_iter / FRAMES_PER_ITER as f64
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_vip_with_dip_flood, bench_dip_only, summary
}
criterion_main!(benches);
