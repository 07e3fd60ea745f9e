//! Scaling from 1 to 2 workers on the `mem` driver: each worker pinned to
//! its core generates the established NAT flows it owns (as an
//! owner-steering NIC would deliver them) and forwards them; the total
//! forwarding rate is sampled over a fixed time.
//!
//! ```sh
//! cargo run --release --example scale -- [flows] [seconds] [mode]
//! ```
//! Prints one JSON line per worker count: `{"workers":N,"mpps":X,...}`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rvs::dataplane::driver::mem::{FlowGen, MemQueue};
use rvs::dataplane::runtime::{DataplaneHandle, Runtime};
use rvs::dataplane::worker::WorkerConfig;
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flows: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let mode = args.get(3).cloned().unwrap_or_else(|| "nat".into());
    let vip = match mode.as_str() {
        "fullnat" => "10.0.0.4",
        "dr" => "10.0.0.2",
        "tun" => "10.0.0.3",
        _ => "10.0.0.1",
    };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    for workers in [1u16, 2] {
        if workers as usize > cores.len() {
            eprintln!("only {} cores: skipping {workers} workers", cores.len());
            continue;
        }
        let mut topo = Topo::standard();
        topo.workers = workers;
        for s in topo.services.iter_mut().filter(|s| s.vip == ip("10.0.0.4")) {
            for i in 0..170u32 {
                s.laddrs
                    .push(ip(&format!("192.168.{}.{}", 20 + i / 200, 1 + i % 200)));
            }
        }
        let snap = topo.snapshot(1);
        let queues: Vec<Vec<MemQueue>> = (0..workers)
            .map(|w| {
                let plan = snap.steer.clone();
                let vip_b = v4(vip).octets();
                // SYN first for every flow, then ACKs: a generator cycles, so
                // SYNs of established flows just refresh them.
                let t = PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
                    .ipv4(v4("100.64.0.1"), v4(vip))
                    .tcp(40000, 80)
                    .flags(TcpFlags::SYN)
                    .payload_fill(6)
                    .build();
                let g = FlowGen::new(t, flows)
                    .retain_flows(move |src| plan.owner(6, &src.octets(), 40000, &vip_b, 80) == w);
                vec![MemQueue::flows(g), MemQueue::generator(Vec::new())]
            })
            .collect();
        let cfg = WorkerConfig {
            conn_capacity: flows + 1024,
            ..WorkerConfig::default()
        };
        let pin: Vec<Option<usize>> = (0..workers as usize).map(|i| Some(cores[i].id)).collect();
        let rt = Arc::new(Runtime::start(queues, cfg, &pin, snap, |_| {}).expect("runtime"));
        let counters = rt.counters();
        let tx = || {
            counters
                .iter()
                .map(|c| c.tx_packets.load(Relaxed))
                .sum::<u64>()
        };
        // Warm up: every flow gets its connection.
        std::thread::sleep(Duration::from_millis(500));
        let (t0, n0) = (Instant::now(), tx());
        std::thread::sleep(Duration::from_secs(secs));
        let (el, n1) = (t0.elapsed(), tx());
        let conns: u64 = counters.iter().map(|c| c.conns_now.load(Relaxed)).sum();
        let created: u64 = counters.iter().map(|c| c.conns_created.load(Relaxed)).sum();
        let steered: u64 = counters.iter().map(|c| c.steered_out.load(Relaxed)).sum();
        rt.stop();
        let mpps = (n1 - n0) as f64 / el.as_secs_f64() / 1e6;
        println!(
            "{{\"mode\":\"{mode}\",\"workers\":{workers},\"flows\":{flows},\"seconds\":{:.2},\"mpps\":{mpps:.3},\"conns\":{conns},\"created\":{created},\"steered\":{steered}}}",
            el.as_secs_f64()
        );
    }
}
