//! The in-process director of the golden-packet, steering, expiry and
//! no-allocation tests (and, by `#[path]`, of the benchmarks and examples):
//! a `Snapshot` built directly — a director with a client-side port and a
//! server-side port, real servers on the server side, clients behind a
//! router, one service per forwarding mode and family. No processes, no
//! namespaces: those are `tests/support`'s. Its addresses and MACs are the
//! test world's (`tests/support/world.rs`); `golden.rs` checks that they
//! agree.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rvs::conntrack::{prefix_mask, Fwd, Timeouts};
use rvs::dataplane::driver::heapbuf::HeapBuf;
use rvs::dataplane::driver::mem::MemQueue;
use rvs::dataplane::neigh::NeighUpdate;
use rvs::dataplane::route::{Route, RouteTable};
use rvs::dataplane::snapshot::{Dest, PortConf, Service, Settings, Snapshot};
use rvs::dataplane::worker::{Links, Worker, WorkerConfig};
use rvs::sched::{DestView, Scheduler};
use rvs::wire::EthernetAddress;

pub const EXT: u16 = 0;
pub const INT: u16 = 1;
pub const EXT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
pub const INT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 1, 0x01]);
pub const ROUTER_MAC: EthernetAddress = EthernetAddress([0x02, 0xaa, 0, 0, 0, 0x01]);
pub const RS1_MAC: EthernetAddress = EthernetAddress([0x02, 0xb1, 0, 0, 0, 0x01]);
pub const RS2_MAC: EthernetAddress = EthernetAddress([0x02, 0xb2, 0, 0, 0, 0x02]);
pub const RS3_MAC: EthernetAddress = EthernetAddress([0x02, 0xb3, 0, 0, 0, 0x03]);

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("test IPv4 address")
}
pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("test IPv6 address")
}
pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Addresses of the topology.
pub const DIP_EXT: &str = "10.0.0.254";
pub const DIP_INT: &str = "192.168.10.254";
pub const DIP6_EXT: &str = "2001:db8::fe";
pub const DIP6_INT: &str = "2001:db8:10::fe";
pub const ROUTER: &str = "10.0.0.1";
pub const ROUTER6: &str = "2001:db8::a";
pub const CIP: &str = "203.0.113.7";
pub const CIP6: &str = "2001:db8:99::7";
pub const RS1: &str = "192.168.10.1";
pub const RS2: &str = "192.168.10.2";
pub const RS3: &str = "192.168.10.3"; // no static neighbour: resolved by ARP
pub const RS1_6: &str = "2001:db8:10::1";
pub const RS2_6: &str = "2001:db8:10::2";
pub const RS3_6: &str = "2001:db8:10::3"; // resolved by ND
pub const LIP: &str = "192.168.10.100";
pub const LIP6: &str = "2001:db8:10::100";

/// A service under construction.
pub struct SvcDef {
    pub proto: u8,
    pub vip: IpAddr,
    pub vport: u16,
    pub sched: &'static str,
    pub flags: Vec<&'static str>,
    pub persistent: Option<u32>,
    pub mask_len: u8,
    pub dests: Vec<(IpAddr, u16, Fwd, u32)>,
    pub laddrs: Vec<IpAddr>,
    /// SYN proxy on.
    pub synproxy: bool,
    /// The service's own `sloppy_tcp` (`None`: the global setting).
    pub sloppy_tcp: Option<bool>,
}

/// The topology and its services.
pub struct Topo {
    pub services: Vec<SvcDef>,
    pub settings: Settings,
    pub timeouts: Timeouts,
    pub mtu_int: u16,
    pub workers: u16,
    /// RSS of the server-side port (RSS-aware local-port choice).
    pub rss_int: Option<Arc<rvs::steer::rss::RssConfig>>,
}

impl Default for Topo {
    fn default() -> Self {
        Self::empty()
    }
}

impl Topo {
    pub fn empty() -> Topo {
        Topo {
            services: Vec::new(),
            settings: Settings::default(),
            timeouts: Timeouts::default(),
            mtu_int: 1500,
            workers: 1,
            rss_int: None,
        }
    }

    /// One service per mode and family (ports as the golden tests expect).
    pub fn standard() -> Topo {
        let mut t = Topo::empty();
        t.svc(6, "10.0.0.1", 80, "rr").dest(RS1, 8080, Fwd::Nat, 1);
        t.svc(17, "10.0.0.1", 53, "rr").dest(RS1, 5353, Fwd::Nat, 1);
        t.svc(6, "10.0.0.2", 80, "rr").dest(RS1, 80, Fwd::Dr, 1);
        t.svc(17, "10.0.0.2", 53, "rr").dest(RS1, 53, Fwd::Dr, 1);
        t.svc(6, "10.0.0.3", 80, "rr").dest(RS2, 80, Fwd::Tun, 1);
        t.svc(17, "10.0.0.3", 53, "rr").dest(RS2, 53, Fwd::Tun, 1);
        t.svc(6, "10.0.0.4", 80, "rr")
            .dest(RS2, 8080, Fwd::FullNat, 1)
            .laddr(LIP);
        t.svc(17, "10.0.0.4", 53, "rr")
            .dest(RS2, 5353, Fwd::FullNat, 1)
            .laddr(LIP);
        t.svc(6, "10.0.0.5", 80, "rr").dest(RS3, 80, Fwd::Nat, 1);
        t.svc(6, "10.0.0.6", 80, "rr").dest(RS1, 80, Fwd::Nat, 0);
        t.svc(6, "2001:db8::1", 80, "rr")
            .dest(RS1_6, 8080, Fwd::Nat, 1);
        t.svc(17, "2001:db8::1", 53, "rr")
            .dest(RS1_6, 5353, Fwd::Nat, 1);
        t.svc(6, "2001:db8::2", 80, "rr")
            .dest(RS1_6, 80, Fwd::Dr, 1);
        t.svc(6, "2001:db8::3", 80, "rr")
            .dest(RS2_6, 80, Fwd::Tun, 1);
        t.svc(6, "2001:db8::4", 80, "rr")
            .dest(RS2_6, 8080, Fwd::FullNat, 1)
            .laddr(LIP6);
        t.svc(17, "2001:db8::4", 53, "rr")
            .dest(RS2_6, 5353, Fwd::FullNat, 1)
            .laddr(LIP6);
        t.svc(6, "2001:db8::5", 80, "rr")
            .dest(RS3_6, 80, Fwd::Nat, 1);
        t
    }

    pub fn svc(&mut self, proto: u8, vip: &str, vport: u16, sched: &'static str) -> &mut SvcDef {
        self.services.push(SvcDef {
            proto,
            vip: ip(vip),
            vport,
            sched,
            flags: Vec::new(),
            persistent: None,
            mask_len: 128,
            dests: Vec::new(),
            laddrs: Vec::new(),
            synproxy: false,
            sloppy_tcp: None,
        });
        self.services.last_mut().expect("just pushed")
    }

    pub fn snapshot(&self, generation: u64) -> Arc<Snapshot> {
        let ports = vec![
            PortConf {
                name: "ext".into(),
                mac: EXT_MAC,
                mtu: 1500,
                addrs: vec![(ip(DIP_EXT), 24), (ip(DIP6_EXT), 64)],
                rss: None,
            },
            PortConf {
                name: "int".into(),
                mac: INT_MAC,
                mtu: self.mtu_int,
                addrs: vec![(ip(DIP_INT), 24), (ip(DIP6_INT), 64)],
                rss: self.rss_int.clone(),
            },
        ];
        let routes = RouteTable::new(vec![
            Route {
                prefix: ip("10.0.0.0"),
                len: 24,
                port: EXT,
                via: None,
            },
            Route {
                prefix: ip("192.168.10.0"),
                len: 24,
                port: INT,
                via: None,
            },
            Route {
                prefix: ip("0.0.0.0"),
                len: 0,
                port: EXT,
                via: Some(ip(ROUTER)),
            },
            Route {
                prefix: ip("2001:db8::"),
                len: 64,
                port: EXT,
                via: None,
            },
            Route {
                prefix: ip("2001:db8:10::"),
                len: 64,
                port: INT,
                via: None,
            },
            Route {
                prefix: ip("::"),
                len: 0,
                port: EXT,
                via: Some(ip(ROUTER6)),
            },
        ])
        .expect("routes");
        let neigh = vec![
            NeighUpdate {
                addr: ip(ROUTER),
                mac: ROUTER_MAC,
                port: EXT,
            },
            NeighUpdate {
                addr: ip(ROUTER6),
                mac: ROUTER_MAC,
                port: EXT,
            },
            NeighUpdate {
                addr: ip(RS1),
                mac: RS1_MAC,
                port: INT,
            },
            NeighUpdate {
                addr: ip(RS2),
                mac: RS2_MAC,
                port: INT,
            },
            NeighUpdate {
                addr: ip(RS1_6),
                mac: RS1_MAC,
                port: INT,
            },
            NeighUpdate {
                addr: ip(RS2_6),
                mac: RS2_MAC,
                port: INT,
            },
        ];
        let mut next_dest = 0u16;
        let services = self
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let dests: Vec<Dest> = s
                    .dests
                    .iter()
                    .map(|(a, p, f, w)| {
                        next_dest += 1;
                        Dest {
                            id: next_dest,
                            addr: *a,
                            port: *p,
                            fwd: *f,
                            weight: *w,
                            u_threshold: 0,
                            l_threshold: 0,
                        }
                    })
                    .collect();
                let views: Vec<DestView> = dests
                    .iter()
                    .map(|d| {
                        let a = rvs::conntrack::addr_from_ip(&d.addr);
                        DestView {
                            weight: d.weight,
                            u_threshold: 0,
                            l_threshold: 0,
                            available: true,
                            last_weight: d.weight.max(1),
                            id: d.id as u32,
                            addr: a,
                            port: d.port,
                        }
                    })
                    .collect();
                let sched = Scheduler::build(s.sched, &s.flags, &views).expect("scheduler");
                let mask_len = if s.vip.is_ipv4() {
                    s.mask_len.min(32)
                } else {
                    s.mask_len
                };
                Service {
                    id: i as u16 + 1,
                    proto: s.proto,
                    vip: s.vip,
                    vport: s.vport,
                    sched: Arc::new(sched),
                    persistent: s.persistent,
                    netmask: prefix_mask(s.vip.is_ipv6(), mask_len),
                    ops: false,
                    dests,
                    views,
                    laddrs: s.laddrs.clone(),
                    synproxy: s.synproxy,
                    synproxy_capable: false,
                    sloppy_tcp: s.sloppy_tcp,
                }
            })
            .collect();
        Arc::new(Snapshot::new(
            generation,
            self.workers,
            ports,
            services,
            routes,
            neigh,
            self.timeouts,
            self.settings,
        ))
    }
}

impl SvcDef {
    pub fn dest(&mut self, addr: &str, port: u16, fwd: Fwd, weight: u32) -> &mut SvcDef {
        self.dests.push((ip(addr), port, fwd, weight));
        self
    }
    pub fn laddr(&mut self, addr: &str) -> &mut SvcDef {
        self.laddrs.push(ip(addr));
        self
    }
    pub fn persistent(&mut self, timeout: u32, mask_len: u8) -> &mut SvcDef {
        self.persistent = Some(timeout);
        self.mask_len = mask_len;
        self
    }
    pub fn flags(&mut self, flags: &[&'static str]) -> &mut SvcDef {
        self.flags = flags.to_vec();
        self
    }
}

/// Lets a worker's expiry catch up after a benchmark or profile set up its
/// flows: moves the worker's clock 3 s on (past the 2 s NONE timeout every
/// new connection was first filed under) and polls until one pass's expiry
/// examined fewer entries than its budget. Without it, the expiry wheel
/// re-files every set-up connection once (lazy re-arm) while the
/// measurement runs: a cost of the new connections, not of established
/// traffic. Bounded: at most `capacity / budget + 1000` passes.
pub fn settle_expiry(
    w: &mut rvs::dataplane::worker::Worker<rvs::dataplane::driver::mem::MemQueue>,
) {
    w.advance_clock(std::time::Duration::from_secs(3));
    let budget = rvs::dataplane::worker::WorkerConfig::default().expire_budget;
    let max = w.conns().capacity() / budget + 1000;
    for _ in 0..max {
        w.poll_once();
        if w.conns().last_expire_work() < budget {
            break;
        }
    }
}

/// A worker on two scripted `mem` ports (`EXT`, `INT`), nothing queued.
pub fn mem_worker(
    cfg: WorkerConfig,
    links: Arc<Links<HeapBuf>>,
    snap: Arc<Snapshot>,
) -> Worker<MemQueue> {
    Worker::new(
        cfg,
        vec![MemQueue::scripted(vec![]), MemQueue::scripted(vec![])],
        links,
        snap,
    )
}

/// Workers 0 and 1 of two sharing `links`, running `topo` (4,096
/// connections each).
pub fn worker_pair(topo: &Topo, links: &Arc<Links<HeapBuf>>) -> [Worker<MemQueue>; 2] {
    let snap = topo.snapshot(1);
    [0, 1].map(|index| {
        let cfg = WorkerConfig {
            index,
            workers: 2,
            conn_capacity: 4096,
            ..WorkerConfig::default()
        };
        mem_worker(cfg, links.clone(), snap.clone())
    })
}
