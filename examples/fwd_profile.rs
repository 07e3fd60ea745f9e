//! Profiling driver: forwards established NAT (or another mode's) traffic
//! on the `mem` driver for a fixed number of bursts, for `perf` or
//! `valgrind --tool=callgrind`:
//!
//! ```sh
//! cargo build --release --example fwd_profile
//! valgrind --tool=callgrind target/release/examples/fwd_profile nat 100000 2000
//! # only the measured bursts, with the cache simulation:
//! valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*forward_bursts*' \
//!     target/release/examples/fwd_profile nat 1000000 2000
//! ```
//!
//! Arguments: mode (nat|fullnat|dr|tun), flows, bursts. Setting up the
//! flows (a SYN then an ACK per flow, then letting expiry re-file them:
//! `settle_expiry`) happens outside [`forward_bursts`], so
//! `--toggle-collect` counts the established traffic alone. Prints ns per
//! packet by the wall clock and by the thread's CPU time (the steadier
//! figure on a shared machine).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use rvs::conntrack::TcpState;
use rvs::dataplane::driver::heapbuf;
use rvs::dataplane::driver::mem::{FlowGen, MemQueue};
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("nat");
    let flows: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let bursts: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let vip = match mode {
        "fullnat" => "10.0.0.4",
        "dr" => "10.0.0.2",
        "tun" => "10.0.0.3",
        _ => "10.0.0.1",
    };
    let template = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
        .ipv4(v4("100.64.0.1"), v4(vip))
        .tcp(40000, 80)
        .flags(TcpFlags::SYN)
        .payload_fill(6)
        .build();
    let mut topo = Topo::standard();
    for s in topo.services.iter_mut().filter(|s| s.vip == ip("10.0.0.4")) {
        for i in 0..170u32 {
            s.laddrs
                .push(ip(&format!("192.168.{}.{}", 20 + i / 200, 1 + i % 200)));
        }
    }
    // Under valgrind one set-up sweep can take longer than SYN_RECV's 60 s,
    // and a flow whose connection expired before its ACK would be dropped.
    topo.timeouts
        .set_tcp_state(TcpState::SynRecv, 3600)
        .expect("SYN_RECV timeout");
    heapbuf::prewarm(8192);
    let cfg = WorkerConfig {
        conn_capacity: flows + 1024,
        ..WorkerConfig::default()
    };
    let queues = vec![
        MemQueue::flows(FlowGen::new(template, flows)),
        MemQueue::generator(Vec::new()),
    ];
    let mut w = Worker::new(cfg, queues, Links::new(1), topo.snapshot(1));
    let polls = flows.div_ceil(32) as usize;
    for _ in 0..polls {
        w.poll_once();
    }
    let g = w.queues_mut()[0].flow_gen_mut().expect("flows");
    g.set_tcp_flags(TcpFlags::ACK.0);
    g.rewind();
    for _ in 0..polls {
        w.poll_once();
    }
    assert_eq!(w.conns().len(), flows, "every flow has its connection");
    settle_expiry(&mut w);
    let t0 = std::time::Instant::now();
    let c0 = thread_cpu_ns();
    let n = forward_bursts(&mut w, bursts);
    let cpu = thread_cpu_ns() - c0;
    let el = t0.elapsed();
    eprintln!(
        "{mode}: {flows} flows, {n} packets in {el:?}: {:.1} ns/packet, {:.1} ns/packet of thread CPU time, {} conns",
        el.as_nanos() as f64 / n as f64,
        cpu as f64 / n as f64,
        w.conns().len()
    );
}

/// This thread's CPU time in ns (`CLOCK_THREAD_CPUTIME_ID`): unlike the
/// wall clock it does not count the time other processes of a shared
/// machine hold the core.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec for the call
    // to fill; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The measured part: `bursts` passes of the worker loop over established
/// flows; returns the packets processed.
#[inline(never)]
fn forward_bursts(w: &mut Worker<MemQueue>, bursts: usize) -> usize {
    let mut n = 0;
    for _ in 0..bursts {
        n += w.poll_once();
    }
    n
}
