//! The immutable configuration snapshot a worker runs on (DESIGN §1):
//! ports and their addresses, services with their real servers and prebuilt
//! scheduler tables, local-address pools, routes, static neighbours,
//! timeouts and settings. Built by the control plane (`ctl::apply`),
//! published as `Arc<Snapshot>`, never mutated afterwards.
//!
//! Identity: services and real servers carry stable slot ids (`id`) that
//! survive snapshots; connections, per-core counters and per-core scheduler
//! loads refer to them by id, positions in the vectors may change.

use std::net::IpAddr;
use std::sync::Arc;

use crate::conntrack::{addr_from_ip, Addr, Fwd, Timeouts};
use crate::dataplane::neigh::NeighUpdate;
use crate::dataplane::route::RouteTable;
use crate::sched::{DestView, Scheduler};
use crate::steer::rss::RssConfig;
use crate::steer::{SteerPlan, SteerService};
use crate::wire::EthernetAddress;

pub use crate::dataplane::fxhash::{FxHashMap, FxHashSet, FxHasher};

/// One port of the director.
#[derive(Debug, Clone)]
pub struct PortConf {
    /// Name from the configuration.
    pub name: String,
    /// The director's MAC on this port.
    pub mac: EthernetAddress,
    /// IP MTU.
    pub mtu: u16,
    /// The director's own addresses on this port, with prefix lengths
    /// (they make the connected routes).
    pub addrs: Vec<(IpAddr, u8)>,
    /// The device's RSS (key and redirection table, queue = worker) when it
    /// spreads packets by Toeplitz hash: workers then choose FULLNAT local
    /// ports whose replies arriving on this port land on their own queue.
    pub rss: Option<Arc<RssConfig>>,
}

impl PortConf {
    /// The first own address of the family of `like`.
    pub fn addr_like(&self, like: &IpAddr) -> Option<IpAddr> {
        self.addrs
            .iter()
            .map(|(a, _)| *a)
            .find(|a| a.is_ipv4() == like.is_ipv4())
    }
}

/// A real server ("destination" in IPVS).
#[derive(Debug, Clone)]
pub struct Dest {
    /// Stable slot id.
    pub id: u16,
    /// Address.
    pub addr: IpAddr,
    /// Port (for DR/TUN it equals the service port).
    pub port: u16,
    /// Forwarding method.
    pub fwd: Fwd,
    /// Weight 0..65535 (0 = quiesced).
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold.
    pub l_threshold: u32,
}

/// A virtual service.
#[derive(Debug, Clone)]
pub struct Service {
    /// Stable slot id.
    pub id: u16,
    /// IP protocol: 6 or 17.
    pub proto: u8,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port; 0 = every port (persistent services only).
    pub vport: u16,
    /// The scheduler with its prebuilt tables.
    pub sched: Arc<Scheduler>,
    /// Persistence timeout in seconds.
    pub persistent: Option<u32>,
    /// Persistence netmask, as address bytes (v4 in the first 4 bytes).
    pub netmask: Addr,
    /// One-packet scheduling (UDP `--ops`).
    pub ops: bool,
    /// Real servers, in insertion order.
    pub dests: Vec<Dest>,
    /// The scheduler's view of `dests` (same order).
    pub views: Vec<DestView>,
    /// FULLNAT local addresses.
    pub laddrs: Vec<IpAddr>,
    /// SYN proxy switched on (`--synproxy`, YAML `synproxy: true`).
    pub synproxy: bool,
    /// The service can be proxied: TCP, every real server NAT or FULLNAT
    /// (and no FULLNAT over IPv6). Computed by [`Snapshot::new`].
    pub synproxy_capable: bool,
    /// The service's own `sloppy_tcp` (YAML `services[].sloppy_tcp`);
    /// `None` = [`Settings::sloppy_tcp`]. See [`Service::sloppy_tcp_on`].
    pub sloppy_tcp: Option<bool>,
}

impl Service {
    /// Whether the service has IPv6 addresses.
    pub fn is_v6(&self) -> bool {
        self.vip.is_ipv6()
    }

    /// Whether a TCP segment without SYN (and without RST) that matches no
    /// connection of this service is scheduled (IPVS's `sloppy_tcp`): the
    /// service's own setting, else the global one.
    #[inline]
    pub fn sloppy_tcp_on(&self, settings: &Settings) -> bool {
        self.sloppy_tcp.unwrap_or(settings.sloppy_tcp)
    }
}

/// Switches IPVS exposes as sysctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `expire_nodest_conn`: connections to a deleted real server are
    /// dropped at their next packet (and flushed) instead of lingering.
    pub expire_nodest_conn: bool,
    /// `expire_quiescent_template`: persistence templates pointing to a
    /// weight-0 server expire at once.
    pub expire_quiescent_template: bool,
    /// FULLNAT local port range (inclusive).
    pub lport_range: (u16, u16),
    /// Table occupancy (percent of capacity) above which every service that
    /// can be proxied answers new TCP flows with SYN cookies; 0 = never.
    pub synproxy_auto_percent: u8,
    /// IPVS's `drop_entry` mode: 0 off, 1 auto, 2 on, 3 always
    /// (`worker::defense`).
    pub drop_entry: u8,
    /// IPVS's `drop_packet` mode: 0 off, 1 auto, 2 on, 3 always.
    pub drop_packet: u8,
    /// IPVS's `am_droprate`: `drop_packet` 3 drops one new-connection
    /// packet in this many.
    pub am_droprate: u32,
    /// Table occupancy (percent, 1..=99) above which a worker's "memory is
    /// low" for `drop_entry` / `drop_packet` (IPVS's `amemthresh`).
    pub defense_percent: u8,
    /// IPVS's `sloppy_tcp`: a TCP segment without SYN that matches no
    /// connection is scheduled like a SYN (RST never is); services may
    /// override it ([`Service::sloppy_tcp_on`]).
    pub sloppy_tcp: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expire_nodest_conn: true,
            expire_quiescent_template: false,
            lport_range: (1025, 65535),
            synproxy_auto_percent: 0,
            drop_entry: 0,
            drop_packet: 0,
            am_droprate: 10,
            defense_percent: 90,
            sloppy_tcp: false,
        }
    }
}

/// Key of the service index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SvcKey {
    /// IP protocol.
    pub proto: u8,
    /// Virtual address bytes.
    pub vip: Addr,
    /// Virtual port.
    pub vport: u16,
}

/// The snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Generation, increasing by one per change.
    pub generation: u64,
    /// Number of workers it was built for.
    pub workers: u16,
    /// Ports, by index.
    pub ports: Vec<PortConf>,
    /// Services.
    pub services: Vec<Service>,
    /// Routes.
    pub routes: RouteTable,
    /// Static neighbours.
    pub static_neigh: Vec<NeighUpdate>,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Switches.
    pub settings: Settings,
    /// Device-side steering plan.
    pub steer: SteerPlan,
    /// The SYN cookie secret (keyed SipHash); the same in every snapshot
    /// of this process unless the control plane rotates it.
    pub synproxy_key: [u64; 2],
    /// The secret before the last rotation: cookies made with it are still
    /// accepted (the same as `synproxy_key` until the first rotation).
    pub synproxy_key_prev: [u64; 2],
    svc_index: FxHashMap<SvcKey, u16>,
    local: FxHashSet<IpAddr>,
    /// VIPs of VRRP instances this director is not MASTER of: not in
    /// `local` (no ARP/ND/echo answer) and their services not forwarded.
    standby: FxHashSet<IpAddr>,
    /// By service slot id: the service's VIP is on standby (empty when no
    /// VIP is).
    standby_ids: Vec<bool>,
    laddrs: FxHashSet<IpAddr>,
    max_dest_id: u16,
}

impl Snapshot {
    /// Assemble a snapshot and its indexes.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        generation: u64,
        workers: u16,
        ports: Vec<PortConf>,
        mut services: Vec<Service>,
        routes: RouteTable,
        static_neigh: Vec<NeighUpdate>,
        timeouts: Timeouts,
        settings: Settings,
    ) -> Snapshot {
        for s in services.iter_mut() {
            s.synproxy_capable = s.proto == crate::wire::ip_proto::TCP
                && s.dests.iter().all(|d| match d.fwd {
                    Fwd::Nat => true,
                    Fwd::FullNat => s.vip.is_ipv4(),
                    Fwd::Dr | Fwd::Tun => false,
                });
        }
        let mut svc_index = FxHashMap::default();
        let mut local = FxHashSet::default();
        let mut laddrs = FxHashSet::default();
        let mut max_dest_id = 0;
        for p in &ports {
            for (a, _) in &p.addrs {
                local.insert(*a);
            }
        }
        let mut steer_services = Vec::new();
        for (i, s) in services.iter().enumerate() {
            svc_index.insert(
                SvcKey {
                    proto: s.proto,
                    vip: addr_from_ip(&s.vip),
                    vport: s.vport,
                },
                i as u16,
            );
            local.insert(s.vip);
            for l in &s.laddrs {
                local.insert(*l);
                laddrs.insert(*l);
            }
            for d in &s.dests {
                max_dest_id = max_dest_id.max(d.id);
            }
            let alen = if s.vip.is_ipv4() { 4 } else { 16 };
            steer_services.push(SteerService {
                proto: s.proto,
                vip: addr_from_ip(&s.vip)[..alen].to_vec(),
                vport: s.vport,
                persist_mask: s.persistent.map(|_| s.netmask[..alen].to_vec()),
            });
        }
        let steer = SteerPlan {
            workers,
            services: steer_services,
            laddrs: laddrs
                .iter()
                .map(|l: &IpAddr| {
                    let n = if l.is_ipv4() { 4 } else { 16 };
                    addr_from_ip(l)[..n].to_vec()
                })
                .collect(),
        };
        Snapshot {
            generation,
            workers,
            ports,
            services,
            routes,
            static_neigh,
            timeouts,
            settings,
            steer,
            synproxy_key: process_cookie_key(),
            synproxy_key_prev: process_cookie_key(),
            svc_index,
            local,
            standby: FxHashSet::default(),
            standby_ids: Vec::new(),
            laddrs,
            max_dest_id,
        }
    }

    /// Replace the SYN cookie secret (the control plane's rotation).
    pub fn with_synproxy_key(mut self, key: [u64; 2]) -> Snapshot {
        self.synproxy_key = key;
        self.synproxy_key_prev = key;
        self
    }

    /// Both SYN cookie secrets: `current` makes cookies, `previous` (the
    /// one before the last rotation) is still accepted.
    pub fn with_synproxy_keys(mut self, current: [u64; 2], previous: [u64; 2]) -> Snapshot {
        self.synproxy_key = current;
        self.synproxy_key_prev = previous;
        self
    }

    /// The same snapshot with VRRP's view: the instances' VIPs `all` are
    /// the director's own (answered for) except those on `standby` (VRRP
    /// BACKUP), for which it neither answers ARP/ND/echo nor forwards
    /// traffic of their services, new or established.
    pub fn with_vrrp(mut self, all: &[IpAddr], standby: &[IpAddr]) -> Snapshot {
        self.local.extend(all.iter().copied());
        self.standby = standby.iter().copied().collect();
        for v in standby {
            self.local.remove(v);
        }
        self.standby_ids.clear();
        for s in &self.services {
            if self.standby.contains(&s.vip) {
                let i = usize::from(s.id);
                if self.standby_ids.len() <= i {
                    self.standby_ids.resize(i + 1, false);
                }
                self.standby_ids[i] = true;
            }
        }
        self
    }

    /// Whether `a` is a VIP on standby (VRRP BACKUP).
    pub fn is_standby(&self, a: &IpAddr) -> bool {
        self.standby.contains(a)
    }

    /// Whether the service with slot id `id` has its VIP on standby: one
    /// branch when no VIP is.
    #[inline]
    pub fn is_standby_service(&self, id: u16) -> bool {
        !self.standby_ids.is_empty() && self.standby_ids.get(usize::from(id)) == Some(&true)
    }

    /// An empty snapshot (no ports, no services).
    pub fn empty(workers: u16) -> Snapshot {
        Snapshot::new(
            0,
            workers,
            Vec::new(),
            Vec::new(),
            RouteTable::default(),
            Vec::new(),
            Timeouts::default(),
            Settings::default(),
        )
    }

    /// The service for a packet to `vip:vport`: the exact port first, then a
    /// port-0 (every port) service. Returns the position in `services`.
    #[inline]
    pub fn find_service(&self, proto: u8, vip: &Addr, vport: u16) -> Option<u16> {
        if self.svc_index.is_empty() {
            return None;
        }
        let k = SvcKey {
            proto,
            vip: *vip,
            vport,
        };
        self.svc_index
            .get(&k)
            .copied()
            .or_else(|| self.svc_index.get(&SvcKey { vport: 0, ..k }).copied())
    }

    /// Whether the director answers ARP/ND/ping for `a` (own, VIP or LIP).
    #[inline]
    pub fn is_local(&self, a: &IpAddr) -> bool {
        self.local.contains(a)
    }

    /// Whether `a` is a FULLNAT local address.
    #[inline]
    pub fn is_laddr(&self, a: &IpAddr) -> bool {
        self.laddrs.contains(a)
    }

    /// Largest real-server slot id in use.
    pub fn max_dest_id(&self) -> u16 {
        self.max_dest_id
    }

    /// A port's configuration.
    pub fn port(&self, p: u16) -> Option<&PortConf> {
        self.ports.get(p as usize)
    }
}

/// The SYN cookie secret of this process: random, made once.
/// The SYN cookie secret this process starts with (drawn once).
pub fn process_cookie_key() -> [u64; 2] {
    static KEY: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    *KEY.get_or_init(fresh_cookie_key)
}

/// A new random SYN cookie secret (the control plane's rotation).
pub fn fresh_cookie_key() -> [u64; 2] {
    use std::hash::{BuildHasher, Hasher};
    // std's RandomState is seeded from the OS's random source (and differs
    // for every instance made in one thread).
    let r = std::collections::hash_map::RandomState::new();
    let mut a = r.build_hasher();
    a.write_u64(0x5359_4e43_4f4f_4b31);
    let mut b = r.build_hasher();
    b.write_u64(0x5359_4e43_4f4f_4b32);
    [a.finish(), b.finish()]
}
