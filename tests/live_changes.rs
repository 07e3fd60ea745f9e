//! Live configuration changes under traffic: two workers forward established
//! flows of a real server that is never touched while the control plane
//! applies 1,000 changes (real servers added, edited and deleted beside it,
//! the service's scheduler edited, other services added and deleted,
//! timeouts set). Every change is published and acknowledged by both workers
//! before the next; no packet of the untouched flows may be lost.

mod support;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs::conntrack::{Fwd, Proto};
use rvs::ctl::config::Config;
use rvs::ctl::protocol::{DestSpec, Request, Response, ServiceKey, ServiceSpec, Timeouts};
use rvs::ctl::server::{Control, ControlOptions};
use rvs::dataplane::counters::DropReason;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::runtime::{DataplaneHandle, Runtime};
use rvs::dataplane::worker::{IdlePolicy, WorkerConfig};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;
use support::process::poll_until;
use support::world::{LbdYaml, PortYaml, WorkersYaml, EXT_MAC, INT_MAC, ROUTER_MAC, STATIC_TABLES};

/// The test world's director on `mem` ports (their MACs are given to
/// `Config::topology`), a third real server's neighbour, one NAT service.
fn config_text() -> String {
    let mut yaml = LbdYaml::new(PortYaml::plain("mem"), PortYaml::plain("mem"));
    yaml.workers = Some(WorkersYaml {
        count: 2,
        ..WorkersYaml::default()
    });
    // STATIC_TABLES ends with the neighbour list: rs3 is one more.
    yaml.tables = format!(
        "{STATIC_TABLES}  - {{addr: 192.168.10.3, mac: \"02:b3:00:00:00:03\", port: int}}\n{SERVICE}"
    );
    yaml.text()
}

const SERVICE: &str = r#"services:
  - proto: tcp
    vip: 10.0.0.1
    port: 80
    scheduler: wlc
    dests:
      - {addr: 192.168.10.1, port: 8080, fwd: masq}
"#;

fn ok(r: Response) {
    assert!(matches!(r, Response::Ok { .. }), "{r:?}");
}

#[test]
fn a_thousand_changes_lose_no_packet_of_untouched_flows() {
    let config = Config::from_yaml(&config_text()).expect("config");
    let topology = config.topology(2, &[EXT_MAC, INT_MAC]).expect("topology");
    let state = config.control_state(topology).expect("state");
    let snap = Arc::new(state.snapshot().expect("snapshot"));
    // Each worker generates the flows it owns (as a steering NIC would
    // deliver them): SYN then ACKs, cycled.
    let mut per_worker: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new()];
    for i in 0..400u16 {
        let cip = std::net::Ipv4Addr::new(100, 64, (i >> 8) as u8, i as u8);
        let owner = snap
            .steer
            .owner(6, &cip.octets(), 40000, &[10, 0, 0, 1], 80) as usize;
        for f in [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::ACK] {
            per_worker[owner].push(
                PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
                    .ipv4(cip, "10.0.0.1".parse().expect("vip"))
                    .tcp(40000, 80)
                    .flags(f)
                    .payload_fill(6)
                    .build(),
            );
        }
    }
    let queues: Vec<Vec<MemQueue>> = per_worker
        .into_iter()
        .map(|frames| vec![MemQueue::generator(frames), MemQueue::generator(Vec::new())])
        .collect();
    let cfg = WorkerConfig {
        conn_capacity: 65536,
        idle: IdlePolicy::BusyPoll,
        ..WorkerConfig::default()
    };
    let runtime =
        Arc::new(Runtime::start(queues, cfg, &[None, None], snap, |_| {}).expect("runtime"));
    assert!(
        runtime.counters().iter().all(|c| c.running.load(Relaxed)),
        "start returns only once every worker built its tables and runs"
    );
    let control = Control::new(
        state,
        runtime.clone(),
        ControlOptions {
            conn_capacity: 65536,
        },
    );

    let vs = ServiceKey {
        proto: Proto::Tcp,
        addr: "10.0.0.1".parse().expect("vip"),
        port: 80,
    };
    let other = ServiceKey {
        proto: Proto::Udp,
        addr: "10.0.0.2".parse().expect("vip"),
        port: 53,
    };
    let masq = |addr: &str, w: u32| DestSpec {
        fwd: Fwd::Nat,
        weight: w,
        ..DestSpec::new(addr.parse().expect("rs"), 8080)
    };
    // Every untouched flow has its connection before the changes start.
    let created = || -> u64 {
        runtime
            .counters()
            .iter()
            .map(|c| c.conns_created.load(Relaxed))
            .sum()
    };
    poll_until(Duration::from_secs(10), Duration::from_millis(10), || {
        (created() == 400).then_some(())
    })
    .unwrap_or_else(|| panic!("{} of 400 connections before the changes", created()));
    let t0 = Instant::now();
    let mut changes = 0;
    while changes < 1000 {
        let step = changes % 11;
        let r = match step {
            0 => control.handle(&Request::AddDest {
                service: vs,
                dest: masq("192.168.10.2", 1),
            }),
            1 => control.handle(&Request::EditDest {
                service: vs,
                dest: masq("192.168.10.2", 5),
            }),
            2 => control.handle(&Request::AddDest {
                service: vs,
                dest: masq("192.168.10.3", 2),
            }),
            3 => control.handle(&Request::EditDest {
                service: vs,
                dest: masq("192.168.10.3", 0),
            }),
            4 => control.handle(&Request::EditService {
                service: ServiceSpec {
                    scheduler: if changes % 20 == 4 { "rr" } else { "wlc" }.into(),
                    ..ServiceSpec::new(vs)
                },
            }),
            5 => control.handle(&Request::AddService {
                service: ServiceSpec::new(other),
            }),
            6 => control.handle(&Request::AddDest {
                service: other,
                dest: DestSpec {
                    port: 53,
                    ..masq("192.168.10.2", 1)
                },
            }),
            7 => control.handle(&Request::DeleteService { service: other }),
            8 => control.handle(&Request::DeleteDest {
                service: vs,
                addr: "192.168.10.3".parse().expect("rs"),
                port: 8080,
            }),
            9 => control.handle(&Request::DeleteDest {
                service: vs,
                addr: "192.168.10.2".parse().expect("rs"),
                port: 8080,
            }),
            _ => control.handle(&Request::SetTimeouts {
                timeouts: Timeouts {
                    tcp: 900 + (changes as u32 % 7),
                    tcpfin: 0,
                    udp: 0,
                },
            }),
        };
        ok(r);
        changes += 1;
    }
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let counters = runtime.counters();
    let workers = runtime.join();
    assert_eq!(workers.len(), 2);
    let rx: u64 = counters.iter().map(|c| c.rx_packets.load(Relaxed)).sum();
    let tx: u64 = counters.iter().map(|c| c.tx_packets.load(Relaxed)).sum();
    let created: u64 = counters.iter().map(|c| c.conns_created.load(Relaxed)).sum();
    let drops: Vec<(DropReason, u64)> = DropReason::ALL
        .iter()
        .map(|r| (*r, counters.iter().map(|c| c.drops_of(*r)).sum::<u64>()))
        .filter(|(_, n)| *n > 0)
        .collect();
    println!(
        "{changes} changes in {took:?}; {rx} packets received, {tx} sent, {created} connections"
    );
    assert!(rx > 100_000, "traffic flowed during the changes: {rx}");
    assert_eq!(drops, vec![], "no packet dropped");
    assert_eq!(rx, tx, "every packet of the untouched flows was forwarded");
    assert_eq!(created, 400, "no flow was rescheduled");
    let generation = control.state().generation();
    assert!(
        generation >= 1000,
        "each change is a generation: {generation}"
    );
}
