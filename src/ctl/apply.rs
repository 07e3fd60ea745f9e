//! ctl::apply — the daemon's authoritative configuration and the rules that
//! change it.
//!
//! Owns [`ControlState`]: the virtual services in insertion order, each with
//! its real servers (insertion order) and FULLNAT local addresses; the
//! global timeouts and settings; the ports, routes and static neighbours
//! from the YAML file ([`Topology`]); the configuration generation; and the
//! stable slot ids of services and real servers. [`ControlState::apply`]
//! validates and applies one [`Request`]; [`ControlState::snapshot`] builds
//! the immutable data-plane [`Snapshot`] (schedulers — Maglev rings, wrr
//! tables — are built here, by the control plane, never by workers).
//!
//! Rules:
//! * Every request is validated completely; a failing request changes
//!   nothing. A [`Request::Batch`] is applied to a clone and replaces the
//!   state only if every request in it succeeds (all or nothing).
//! * Errors use ipvsadm's (libipvs `ipvs_strerror`) wording where it has one:
//!   "Service already exists", "No such service", "Service not defined",
//!   "Destination already exists", "No such destination",
//!   "Scheduler or persistence engine not found", "Memory allocation
//!   problem", "Zero port specified for non-persistent service", and DPVS's
//!   "Local address already exists" / "No such Local address". Each error
//!   maps to a [`protocol::ErrorKind`](crate::ctl::protocol::ErrorKind).
//! * Slot ids: services get ids below [`MAX_SERVICES`], real servers below
//!   [`MAX_DESTS`] (the per-core counter arrays). Ids are allocated
//!   round-robin and never reused while in use, so a freed id comes back only
//!   after every other free id was handed out: connections and counters of a
//!   deleted real server are not confused with a new one. Editing a service
//!   or real server keeps its id; deleting a service frees its real servers'
//!   ids and drops its local addresses.
//! * IPVS semantics kept here: DR and TUN real servers take the service port
//!   (`ipvsadm` forces it); a real server of another address family than
//!   the service is refused (rvs's tunnels do not cross families); weights
//!   are 0..=65535, thresholds 0..=`INT_MAX` with `l ≤ u` (kernel:
//!   "lower threshold is higher than upper threshold"); `last_weight` keeps
//!   the last non-zero weight (set on add, kept when edited to 0) for mh.
//! * Thresholds are director-wide: the snapshot ships
//!   [`per_core_threshold`] of the configured `-x/-y` to the schedulers,
//!   which count connections per worker (see `sched` module docs).
//!   Listings show the configured values.
//! * The generation goes up by one for every applied change that alters the
//!   configuration (a batch counts once). `-Z` changes no configuration: it
//!   only asks the caller to zero counters ([`Changed`]).
//! * Local addresses may not be shared between services (each service's
//!   workers allocate local ports from their own pool, so a shared address
//!   could hand out the same `lip:lport` twice), and may not be a virtual
//!   address.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::conntrack::Fwd;
use crate::conntrack::{self, addr_from_ip, prefix_mask};
use crate::ctl::protocol::{
    DestSpec, ErrorKind, LaddrSpec, Netmask, Request, ServiceKey, ServiceSpec, Timeouts,
};
use crate::dataplane::counters::{MAX_DESTS, MAX_SERVICES};
use crate::dataplane::neigh::NeighUpdate;
use crate::dataplane::route::{Route, RouteTable};
use crate::dataplane::snapshot::{Dest, PortConf, Service, Settings, Snapshot};
use crate::sched::{
    per_core_threshold, BuildOptions, DestView, SchedError, SchedFlags, SchedKind, Scheduler,
    MAX_WEIGHT,
};

/// Longest persistence timeout ipvsadm accepts (`-p`, 31 days).
pub const MAX_PERSISTENT_SECS: u32 = 31 * 24 * 60 * 60;

/// Largest threshold ipvsadm accepts (`-x`/`-y`, `INT_MAX`).
pub const MAX_THRESHOLD: u32 = i32::MAX as u32;

/// Why a request was refused. The `Display` text is what `lbctl` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// `-A` of an existing service (EEXIST).
    #[error("Service already exists")]
    ServiceExists,
    /// `-E`, `-D`, `-Z`, `-L` of a missing service (ESRCH).
    #[error("No such service")]
    NoSuchService,
    /// `-a`, `-e`, `-d`, `-P`, `-Q`, `-G` on a missing service (ESRCH).
    #[error("Service not defined")]
    ServiceNotDefined,
    /// `-a` of an existing real server (EEXIST).
    #[error("Destination already exists")]
    DestExists,
    /// `-e`, `-d` of a missing real server (ENOENT).
    #[error("No such destination")]
    NoSuchDest,
    /// `-P` of an address the service already has (DPVS wording).
    #[error("Local address already exists")]
    LaddrExists,
    /// `-Q` of an address the service does not have (DPVS wording).
    #[error("No such Local address")]
    NoSuchLaddr,
    /// The scheduler or persistence engine does not exist (ENOENT).
    #[error("Scheduler or persistence engine not found")]
    SchedulerNotFound,
    /// Scheduler flags or scheduler tables refused by `sched`.
    #[error("{0}")]
    Scheduler(SchedError),
    /// No free service or real-server slot (ENOMEM): ipvsadm's words,
    /// then the limit that was reached.
    #[error("Memory allocation problem: {0}")]
    NoSpace(&'static str),
    /// A value out of range or inconsistent (EINVAL); the text says which.
    #[error("{0}")]
    Invalid(String),
    /// Something IPVS can do and rvs does not (EOPNOTSUPP).
    #[error("{0}")]
    Unsupported(String),
    /// A request of a batch failed; nothing of the batch was applied.
    #[error("{source} (request {index} of {total} in the batch; nothing was applied)")]
    InBatch {
        /// 1-based position of the failing request.
        index: usize,
        /// Number of requests in the batch.
        total: usize,
        /// Why it failed.
        source: Box<ApplyError>,
    },
    /// The snapshot could not be built (an internal inconsistency).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApplyError {
    /// The protocol error class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApplyError::ServiceExists | ApplyError::DestExists | ApplyError::LaddrExists => {
                ErrorKind::Exists
            }
            ApplyError::NoSuchService
            | ApplyError::ServiceNotDefined
            | ApplyError::NoSuchDest
            | ApplyError::NoSuchLaddr
            | ApplyError::SchedulerNotFound => ErrorKind::NotFound,
            ApplyError::Scheduler(_) | ApplyError::Invalid(_) => ErrorKind::Invalid,
            ApplyError::Unsupported(_) => ErrorKind::Unsupported,
            ApplyError::NoSpace(_) => ErrorKind::NoSpace,
            ApplyError::InBatch { source, .. } => source.kind(),
            ApplyError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// What an applied request asks of the caller besides the new state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    /// The configuration changed: publish [`ControlState::snapshot`] (the
    /// generation was already incremented).
    pub config: bool,
    /// Service slots whose counters and rates must read zero from now on
    /// (`-Z`, and slots newly handed to a service).
    pub zero_services: Vec<u16>,
    /// Real-server slots whose counters and rates must read zero from now
    /// on (`-Z`, and slots newly handed to a real server).
    pub zero_dests: Vec<u16>,
}

impl Changed {
    fn merge(&mut self, other: Changed) {
        self.config |= other.config;
        self.zero_services.extend(other.zero_services);
        self.zero_dests.extend(other.zero_dests);
    }
}

/// What [`ApplyError::NoSpace`] says when the service slots are used up.
const SERVICES_FULL: &str = "rvs holds at most 1024 virtual services";
/// What [`ApplyError::NoSpace`] says when the real-server slots are used up.
const DESTS_FULL: &str = "rvs holds at most 8192 real servers over all services";
const _: () = assert!(
    MAX_SERVICES == 1024 && MAX_DESTS == 8192,
    "update the messages"
);

/// `spec` as stored: each scheduler flag once, in the order first given
/// (ipvsadm's flags are a bit set; a client may send one twice).
fn normalized(spec: &ServiceSpec) -> ServiceSpec {
    let mut spec = spec.clone();
    let mut seen = Vec::with_capacity(spec.sched_flags.len());
    spec.sched_flags.retain(|f| {
        let first = !seen.contains(f);
        if first {
            seen.push(f.clone());
        }
        first
    });
    spec
}

/// The parts of the configuration that only the YAML file sets.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Number of workers the snapshots are built for (0: no data plane).
    pub workers: u16,
    /// Ports by index.
    pub ports: Vec<PortConf>,
    /// Static routes (connected routes are derived from the port addresses).
    pub routes: Vec<Route>,
    /// Static neighbours.
    pub neighbours: Vec<NeighUpdate>,
}

/// The health checker's verdict on a real server (see `crate::health`:
/// the checker owns "alive", the operator owns the weight and the set of
/// real servers). Kept by slot id beside the configuration, never in it:
/// listings, the snapshot and the schedulers see the effective server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestHealth {
    /// The checkers find it alive.
    pub alive: bool,
    /// When dead: kept at weight 0 instead of removed (`inhibit_on_failure`).
    pub inhibit: bool,
    /// When alive: the weight a `misc_dynamic` MISC_CHECK set (`None`: the
    /// operator's).
    pub weight: Option<u32>,
}

/// A real server as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestEntry {
    /// Stable slot id (index into the per-core real-server counters).
    pub id: u16,
    /// Its configuration (port already forced for DR/TUN).
    pub spec: DestSpec,
    /// Last non-zero weight (IPVS `last_weight`), for mh.
    pub last_weight: u32,
}

/// A FULLNAT local address as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaddrEntry {
    /// The address.
    pub addr: IpAddr,
    /// The port (interface) named with `-F`, if any.
    pub ifname: Option<String>,
}

/// A virtual service as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Stable slot id (index into the per-core service counters).
    pub id: u16,
    /// Its configuration.
    pub spec: ServiceSpec,
    /// Real servers in insertion order.
    pub dests: Vec<DestEntry>,
    /// FULLNAT local addresses in insertion order.
    pub laddrs: Vec<LaddrEntry>,
}

impl ServiceEntry {
    /// The real server with this address and port.
    pub fn dest(&self, addr: &IpAddr, port: u16) -> Option<&DestEntry> {
        self.dests
            .iter()
            .find(|d| d.spec.addr == *addr && d.spec.port == port)
    }
}

/// Round-robin allocator of slot ids `0..capacity`.
#[derive(Debug, Clone)]
struct SlotAllocator {
    in_use: Vec<bool>,
    next: usize,
}

impl SlotAllocator {
    fn new(capacity: usize) -> Self {
        SlotAllocator {
            in_use: vec![false; capacity],
            next: 0,
        }
    }

    /// The first free id at or after the cursor, wrapping; the cursor moves
    /// past it, so freed ids are reused as late as possible.
    fn alloc(&mut self) -> Option<u16> {
        let n = self.in_use.len();
        (0..n)
            .map(|i| (self.next + i) % n)
            .find(|&id| !self.in_use[id])
            .and_then(|id| {
                let id16 = u16::try_from(id).ok()?;
                self.in_use[id] = true;
                self.next = (id + 1) % n;
                Some(id16)
            })
    }

    fn free(&mut self, id: u16) {
        if let Some(slot) = self.in_use.get_mut(usize::from(id)) {
            *slot = false;
        }
    }
}

/// The authoritative configuration of the daemon.
#[derive(Debug, Clone)]
pub struct ControlState {
    generation: u64,
    topology: Topology,
    routes: RouteTable,
    timeouts: conntrack::Timeouts,
    settings: Settings,
    services: Vec<ServiceEntry>,
    /// Built schedulers by service slot, rebuilt only when the service or
    /// its real servers change (so unchanged services keep their per-worker
    /// scheduler state, e.g. the wrr position, across snapshots).
    schedulers: HashMap<u16, Arc<Scheduler>>,
    /// Health verdicts by real-server slot (absent: alive, as configured).
    health: HashMap<u16, DestHealth>,
    /// Sorry servers in force by service slot (quorum lost): they replace
    /// the service's real servers in the snapshot and listings.
    sorry: HashMap<u16, DestEntry>,
    service_slots: SlotAllocator,
    dest_slots: SlotAllocator,
    build: BuildOptions,
    /// VIPs on standby (VRRP instances not MASTER), sorted.
    standby: Vec<IpAddr>,
    /// Every VRRP instance's VIPs: answered for (ARP/ND/ping) while not on
    /// standby, with or without a service.
    vrrp_vips: Vec<IpAddr>,
    /// SYN cookie secrets (current, previous) once rotated; before that
    /// the process's own secret.
    cookie_keys: Option<([u64; 2], [u64; 2])>,
}

impl Default for ControlState {
    fn default() -> Self {
        ControlState {
            generation: 0,
            topology: Topology::default(),
            routes: RouteTable::default(),
            timeouts: conntrack::Timeouts::default(),
            settings: Settings::default(),
            services: Vec::new(),
            schedulers: HashMap::new(),
            health: HashMap::new(),
            sorry: HashMap::new(),
            service_slots: SlotAllocator::new(MAX_SERVICES),
            dest_slots: SlotAllocator::new(MAX_DESTS),
            build: BuildOptions::default(),
            standby: Vec::new(),
            vrrp_vips: Vec::new(),
            cookie_keys: None,
        }
    }
}

/// Whether `addr` can be a service or real-server address (unicast, not
/// unspecified).
fn is_unicast(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

/// The network of `addr/len`.
fn network_of(addr: &IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(*a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            IpAddr::V6((u128::from(*a) & mask).into())
        }
    }
}

/// The request type name, for batch errors.
fn request_name(request: &Request) -> &'static str {
    match request {
        Request::AddService { .. } => "add_service",
        Request::EditService { .. } => "edit_service",
        Request::DeleteService { .. } => "delete_service",
        Request::Clear => "clear",
        Request::AddDest { .. } => "add_dest",
        Request::EditDest { .. } => "edit_dest",
        Request::DeleteDest { .. } => "delete_dest",
        Request::ListServices { .. } => "list_services",
        Request::ListConns => "list_conns",
        Request::Zero { .. } => "zero",
        Request::SetTimeouts { .. } => "set_timeouts",
        Request::GetTimeouts => "get_timeouts",
        Request::AddLaddr { .. } => "add_laddr",
        Request::DeleteLaddr { .. } => "delete_laddr",
        Request::GetLaddrs { .. } => "get_laddrs",
        Request::Batch { .. } => "batch",
        Request::Version => "version",
        Request::PortStats => "port_stats",
        Request::DataplaneStats => "dataplane_stats",
        Request::Vrrp => "vrrp",
        Request::Reload => "reload",
        Request::Health => "health",
        Request::StartDaemon { .. } => "start_daemon",
        Request::StopDaemon { .. } => "stop_daemon",
        Request::ListDaemon => "list_daemon",
        Request::Announce => "announce",
        Request::Drain { .. } => "drain",
    }
}

impl ControlState {
    /// An empty configuration for `topology`: no services, IPVS's default
    /// timeouts, default settings, generation 0. Connected routes are made
    /// from the ports' addresses, then the static routes are added.
    pub fn new(topology: Topology, settings: Settings) -> Result<ControlState, ApplyError> {
        let port_count = topology.ports.len();
        for route in &topology.routes {
            if usize::from(route.port) >= port_count {
                return Err(ApplyError::Invalid(format!(
                    "route {}/{} uses port index {}, but there are {port_count} ports",
                    route.prefix, route.len, route.port
                )));
            }
        }
        for n in &topology.neighbours {
            if usize::from(n.port) >= port_count {
                return Err(ApplyError::Invalid(format!(
                    "neighbour {} uses port index {}, but there are {port_count} ports",
                    n.addr, n.port
                )));
            }
        }
        if settings.lport_range.0 == 0 || settings.lport_range.0 > settings.lport_range.1 {
            return Err(ApplyError::Invalid(format!(
                "local port range {}-{} is empty or starts at 0",
                settings.lport_range.0, settings.lport_range.1
            )));
        }
        if settings.synproxy_auto_percent > 100 {
            return Err(ApplyError::Invalid(format!(
                "synproxy_auto_percent {} is above 100",
                settings.synproxy_auto_percent
            )));
        }
        for (name, mode) in [
            ("drop_entry", settings.drop_entry),
            ("drop_packet", settings.drop_packet),
        ] {
            if mode > 3 {
                return Err(ApplyError::Invalid(format!(
                    "{name} {mode} is not a mode (0 off, 1 auto, 2 on, 3 always)"
                )));
            }
        }
        if !(1..=99).contains(&settings.defense_percent) {
            return Err(ApplyError::Invalid(format!(
                "defense_percent {} is outside 1..=99",
                settings.defense_percent
            )));
        }
        let mut routes = Vec::new();
        for (index, port) in topology.ports.iter().enumerate() {
            let port_index = u16::try_from(index)
                .map_err(|_| ApplyError::Invalid("too many ports".to_string()))?;
            for (addr, len) in &port.addrs {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if *len > max {
                    return Err(ApplyError::Invalid(format!(
                        "port {}: prefix length {len} too long for {addr}",
                        port.name
                    )));
                }
                routes.push(Route {
                    prefix: network_of(addr, *len),
                    len: *len,
                    port: port_index,
                    via: None,
                });
            }
        }
        routes.extend(topology.routes.iter().cloned());
        let routes = RouteTable::new(routes).map_err(|e| ApplyError::Invalid(e.to_string()))?;
        Ok(ControlState {
            topology,
            routes,
            settings,
            ..ControlState::default()
        })
    }

    /// The generation of the configuration now in force.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Moves the generation to at least `generation` (used after a failed
    /// publish, so that a number some workers may have seen is never reused
    /// for another configuration).
    pub fn skip_generation_to(&mut self, generation: u64) {
        self.generation = self.generation.max(generation);
    }

    /// Marks the configuration as changed without a request (the caller
    /// publishes the result): bumps the generation.
    pub fn bump_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Puts exactly `vips` on standby (VRRP: the instances this director
    /// is not MASTER of); bumps the generation if that changed anything.
    /// Returns whether it did.
    pub fn set_standby(&mut self, mut vips: Vec<IpAddr>) -> bool {
        vips.sort();
        vips.dedup();
        if vips == self.standby {
            return false;
        }
        self.standby = vips;
        self.bump_generation();
        true
    }

    /// Rotates the SYN cookie secret: a fresh one makes cookies from the
    /// next snapshot on, the one in force until now is still accepted (so a
    /// handshake that straddles the rotation completes); the one before
    /// that is forgotten. Bumps the generation.
    pub fn rotate_synproxy_key(&mut self) {
        let current = self
            .cookie_keys
            .map_or_else(crate::dataplane::snapshot::process_cookie_key, |k| k.0);
        self.cookie_keys = Some((crate::dataplane::snapshot::fresh_cookie_key(), current));
        self.bump_generation();
    }

    /// The VIPs on standby.
    pub fn standby(&self) -> &[IpAddr] {
        &self.standby
    }

    /// Declares every VRRP instance's VIPs (set once, at start): the
    /// director answers for them while they are not on standby, as
    /// keepalived's MASTER holds them on its interface.
    pub fn set_vrrp_vips(&mut self, vips: Vec<IpAddr>) {
        self.vrrp_vips = vips;
    }

    /// Number of workers snapshots are built for.
    pub fn workers(&self) -> u16 {
        self.topology.workers
    }

    /// The ports.
    pub fn ports(&self) -> &[PortConf] {
        &self.topology.ports
    }

    /// The topology (ports, static routes, neighbours).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The services, in insertion order.
    pub fn services(&self) -> &[ServiceEntry] {
        &self.services
    }

    /// The service with this key.
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceEntry> {
        self.services.iter().find(|s| s.spec.key == *key)
    }

    /// The global timeouts as `--timeout` shows them.
    pub fn timeouts(&self) -> Timeouts {
        let (tcp, tcpfin, udp) = self.timeouts.get();
        Timeouts { tcp, tcpfin, udp }
    }

    /// The full timeout table.
    pub fn conn_timeouts(&self) -> &conntrack::Timeouts {
        &self.timeouts
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Scheduler build options (Maglev size, locality cache parameters);
    /// every scheduler is rebuilt with them.
    pub fn set_build_options(&mut self, build: BuildOptions) -> Result<(), ApplyError> {
        let mut next = self.clone();
        next.build = build;
        next.schedulers.clear();
        for s in &self.services {
            let sched = next.build_scheduler(s)?;
            next.schedulers.insert(s.id, Arc::new(sched));
        }
        *self = next;
        Ok(())
    }

    /// Validates and applies `request`. On error nothing changed. On
    /// success the generation was incremented if the configuration changed.
    /// Listings (`ListServices`, `GetTimeouts`, …) are not changes and are
    /// refused here.
    pub fn apply(&mut self, request: &Request) -> Result<Changed, ApplyError> {
        let changed = match request {
            Request::Batch { requests } => {
                let mut next = self.clone();
                let mut changed = Changed::default();
                let total = requests.len();
                for (i, sub) in requests.iter().enumerate() {
                    let result = if sub.is_change() {
                        next.apply_one(sub)
                    } else {
                        Err(ApplyError::Invalid(format!(
                            "only table changes may appear in a batch, not {}",
                            request_name(sub)
                        )))
                    };
                    match result {
                        Ok(c) => changed.merge(c),
                        Err(source) => {
                            return Err(ApplyError::InBatch {
                                index: i + 1,
                                total,
                                source: Box::new(source),
                            })
                        }
                    }
                }
                *self = next;
                changed
            }
            other => self.apply_one(other)?,
        };
        if changed.config {
            self.generation += 1;
        }
        Ok(changed)
    }

    /// One request, not a batch. Validates everything before mutating.
    fn apply_one(&mut self, request: &Request) -> Result<Changed, ApplyError> {
        match request {
            Request::AddService { service } => self.add_service(service),
            Request::EditService { service } => self.edit_service(service),
            Request::DeleteService { service } => self.delete_service(service),
            Request::Clear => {
                for s in std::mem::take(&mut self.services) {
                    self.free_service_slots(&s);
                }
                self.schedulers.clear();
                Ok(Changed {
                    config: true,
                    ..Changed::default()
                })
            }
            Request::AddDest { service, dest } => self.add_dest(service, dest),
            Request::EditDest { service, dest } => self.edit_dest(service, dest),
            Request::DeleteDest {
                service,
                addr,
                port,
            } => self.delete_dest(service, addr, *port),
            Request::Zero { service } => self.zero(service.as_ref()),
            Request::SetTimeouts { timeouts } => {
                let mut next = self.timeouts;
                next.set(timeouts.tcp, timeouts.tcpfin, timeouts.udp)
                    .map_err(|e| ApplyError::Invalid(e.to_string()))?;
                self.timeouts = next;
                Ok(Changed {
                    config: true,
                    ..Changed::default()
                })
            }
            Request::AddLaddr { laddr } => self.add_laddr(laddr),
            Request::DeleteLaddr { laddr } => self.delete_laddr(laddr),
            Request::Batch { .. } => Err(ApplyError::Invalid("batches do not nest".to_string())),
            Request::ListServices { .. }
            | Request::ListConns
            | Request::GetTimeouts
            | Request::GetLaddrs { .. }
            | Request::Version
            | Request::PortStats
            | Request::DataplaneStats
            | Request::Vrrp
            | Request::Health
            | Request::StartDaemon { .. }
            | Request::StopDaemon { .. }
            | Request::ListDaemon
            | Request::Announce
            | Request::Drain { .. }
            | Request::Reload => Err(ApplyError::Invalid(format!(
                "{} is a listing, not a change",
                request_name(request)
            ))),
        }
    }

    fn service_index(&self, key: &ServiceKey) -> Option<usize> {
        self.services.iter().position(|s| s.spec.key == *key)
    }

    fn free_service_slots(&mut self, service: &ServiceEntry) {
        for d in &service.dests {
            self.dest_slots.free(d.id);
            self.health.remove(&d.id);
        }
        if let Some(sorry) = self.sorry.remove(&service.id) {
            self.dest_slots.free(sorry.id);
        }
        self.service_slots.free(service.id);
    }

    /// Service-level checks shared by `-A` and `-E`.
    fn check_service_spec(&self, spec: &ServiceSpec) -> Result<(), ApplyError> {
        let key = &spec.key;
        if !is_unicast(&key.addr) {
            return Err(ApplyError::Invalid(format!(
                "Invalid virtual address {}: not a unicast address",
                key.addr
            )));
        }
        if spec.synproxy {
            if key.proto.number() != crate::wire::ip_proto::TCP {
                return Err(ApplyError::Invalid(
                    "--synproxy is for TCP services only".to_string(),
                ));
            }
            if let Some(s) = self.service_index(key).map(|i| &self.services[i]) {
                for d in &s.dests {
                    synproxy_dest_ok(&s.spec, &d.spec)?;
                }
            }
        }
        if key.port == 0 && spec.persistent.is_none() {
            return Err(ApplyError::Invalid(
                "Zero port specified for non-persistent service".to_string(),
            ));
        }
        let Some(kind) = SchedKind::from_name(&spec.scheduler) else {
            return Err(ApplyError::SchedulerNotFound);
        };
        let words: Vec<&str> = spec.sched_flags.iter().map(String::as_str).collect();
        SchedFlags::parse(kind, &words).map_err(ApplyError::Scheduler)?;
        if spec.pe.is_some() {
            // IPVS answers ENOENT when the persistence engine module is absent.
            return Err(ApplyError::SchedulerNotFound);
        }
        if let Some(timeout) = spec.persistent {
            if timeout == 0 || timeout > MAX_PERSISTENT_SECS {
                return Err(ApplyError::Invalid(format!(
                    "Invalid persistent timeout {timeout}: must be 1..={MAX_PERSISTENT_SECS} seconds"
                )));
            }
        }
        match (&spec.netmask, &key.addr) {
            (Netmask::V4(_), IpAddr::V4(_)) => {}
            (Netmask::V6(prefix), IpAddr::V6(_)) => {
                if !(1..=128).contains(prefix) {
                    return Err(ApplyError::Invalid(format!(
                        "Invalid IPv6 persistence prefix length {prefix}: must be 1..=128"
                    )));
                }
            }
            _ => {
                return Err(ApplyError::Invalid(format!(
                    "The persistence netmask is of another address family than {}",
                    key.addr
                )))
            }
        }
        if spec.ops && key.proto != crate::conntrack::Proto::Udp {
            return Err(ApplyError::Invalid(
                "One-Packet Scheduling is only for UDP virtual services".to_string(),
            ));
        }
        if let Some(owner) = self
            .services
            .iter()
            .find(|s| s.laddrs.iter().any(|l| l.addr == key.addr))
        {
            return Err(ApplyError::Invalid(format!(
                "Virtual address {} is a local address of service {}",
                key.addr, owner.spec.key
            )));
        }
        Ok(())
    }

    /// Builds the scheduler of a service as the snapshot will use it,
    /// refusing what cannot be built (e.g. more real servers than Maglev
    /// slots). Store it with [`Self::commit_service`].
    fn check_scheduler(&self, service: &ServiceEntry) -> Result<Arc<Scheduler>, ApplyError> {
        self.build_scheduler(service).map(Arc::new)
    }

    /// Replaces (or appends) a service with its freshly built scheduler.
    fn commit_service(
        &mut self,
        index: Option<usize>,
        service: ServiceEntry,
        sched: Arc<Scheduler>,
    ) {
        self.schedulers.insert(service.id, sched);
        match index {
            Some(i) => self.services[i] = service,
            None => self.services.push(service),
        }
    }

    fn add_service(&mut self, spec: &ServiceSpec) -> Result<Changed, ApplyError> {
        let spec = &normalized(spec);
        if self.service_index(&spec.key).is_some() {
            return Err(ApplyError::ServiceExists);
        }
        self.check_service_spec(spec)?;
        let mut slots = self.service_slots.clone();
        let id = slots.alloc().ok_or(ApplyError::NoSpace(SERVICES_FULL))?;
        let service = ServiceEntry {
            id,
            spec: spec.clone(),
            dests: Vec::new(),
            laddrs: Vec::new(),
        };
        let sched = self.check_scheduler(&service)?;
        self.service_slots = slots;
        self.commit_service(None, service, sched);
        Ok(Changed {
            config: true,
            zero_services: vec![id],
            zero_dests: Vec::new(),
        })
    }

    fn edit_service(&mut self, spec: &ServiceSpec) -> Result<Changed, ApplyError> {
        let spec = &normalized(spec);
        let index = self
            .service_index(&spec.key)
            .ok_or(ApplyError::NoSuchService)?;
        self.check_service_spec(spec)?;
        let mut edited = self.services[index].clone();
        edited.spec = spec.clone();
        let sched = self.check_scheduler(&edited)?;
        self.commit_service(Some(index), edited, sched);
        Ok(Changed {
            config: true,
            ..Changed::default()
        })
    }

    fn delete_service(&mut self, key: &ServiceKey) -> Result<Changed, ApplyError> {
        let index = self.service_index(key).ok_or(ApplyError::NoSuchService)?;
        let removed = self.services.remove(index);
        self.schedulers.remove(&removed.id);
        self.free_service_slots(&removed);
        Ok(Changed {
            config: true,
            ..Changed::default()
        })
    }

    /// Normalises and checks a real server for `service` (`-a`/`-e`).
    fn normalise_dest(service: &ServiceEntry, dest: &DestSpec) -> Result<DestSpec, ApplyError> {
        let key = &service.spec.key;
        let mut dest = dest.clone();
        // ipvsadm: "The destination port must be equal to the service port
        // if the IP_VS_CONN_F_TUNNEL or IP_VS_CONN_F_DROUTE is set."
        if matches!(dest.fwd, Fwd::Dr | Fwd::Tun) {
            dest.port = key.port;
        }
        if !is_unicast(&dest.addr) {
            return Err(ApplyError::Invalid(format!(
                "Invalid real server address {}: not a unicast address",
                dest.addr
            )));
        }
        if dest.addr.is_ipv4() != key.addr.is_ipv4() {
            return Err(if dest.fwd == Fwd::Tun {
                ApplyError::Unsupported(
                    "rvs does not tunnel across address families: the real server must be of the service's family".to_string(),
                )
            } else {
                ApplyError::Invalid(
                    "Different address family is allowed only for tunneling servers".to_string(),
                )
            });
        }
        if dest.weight > MAX_WEIGHT {
            return Err(ApplyError::Invalid(format!(
                "Invalid weight {}: must be 0..={MAX_WEIGHT}",
                dest.weight
            )));
        }
        for (name, value) in [("upper", dest.u_threshold), ("lower", dest.l_threshold)] {
            if value > MAX_THRESHOLD {
                return Err(ApplyError::Invalid(format!(
                    "Invalid {name} threshold {value}: must be 0..={MAX_THRESHOLD}"
                )));
            }
        }
        if dest.l_threshold > dest.u_threshold {
            return Err(ApplyError::Invalid(format!(
                "lower threshold {} is higher than upper threshold {}",
                dest.l_threshold, dest.u_threshold
            )));
        }
        if service.spec.synproxy {
            synproxy_dest_ok(&service.spec, &dest)?;
        }
        Ok(dest)
    }

    fn add_dest(&mut self, key: &ServiceKey, dest: &DestSpec) -> Result<Changed, ApplyError> {
        let index = self
            .service_index(key)
            .ok_or(ApplyError::ServiceNotDefined)?;
        let dest = Self::normalise_dest(&self.services[index], dest)?;
        if self.services[index].dest(&dest.addr, dest.port).is_some() {
            return Err(ApplyError::DestExists);
        }
        let mut slots = self.dest_slots.clone();
        let id = slots.alloc().ok_or(ApplyError::NoSpace(DESTS_FULL))?;
        let mut edited = self.services[index].clone();
        edited.dests.push(DestEntry {
            id,
            last_weight: dest.weight,
            spec: dest,
        });
        let sched = self.check_scheduler(&edited)?;
        self.dest_slots = slots;
        self.commit_service(Some(index), edited, sched);
        Ok(Changed {
            config: true,
            zero_services: Vec::new(),
            zero_dests: vec![id],
        })
    }

    fn edit_dest(&mut self, key: &ServiceKey, dest: &DestSpec) -> Result<Changed, ApplyError> {
        let index = self
            .service_index(key)
            .ok_or(ApplyError::ServiceNotDefined)?;
        let dest = Self::normalise_dest(&self.services[index], dest)?;
        let mut edited = self.services[index].clone();
        let entry = edited
            .dests
            .iter_mut()
            .find(|d| d.spec.addr == dest.addr && d.spec.port == dest.port)
            .ok_or(ApplyError::NoSuchDest)?;
        // "keep the last_weight with latest non-0 weight"
        if dest.weight != 0 {
            entry.last_weight = dest.weight;
        }
        entry.spec = dest;
        let sched = self.check_scheduler(&edited)?;
        self.commit_service(Some(index), edited, sched);
        Ok(Changed {
            config: true,
            ..Changed::default()
        })
    }

    fn delete_dest(
        &mut self,
        key: &ServiceKey,
        addr: &IpAddr,
        port: u16,
    ) -> Result<Changed, ApplyError> {
        let index = self
            .service_index(key)
            .ok_or(ApplyError::ServiceNotDefined)?;
        let mut edited = self.services[index].clone();
        let pos = edited
            .dests
            .iter()
            .position(|d| d.spec.addr == *addr && d.spec.port == port)
            .ok_or(ApplyError::NoSuchDest)?;
        let removed = edited.dests.remove(pos);
        let sched = self.check_scheduler(&edited)?;
        self.dest_slots.free(removed.id);
        self.health.remove(&removed.id);
        self.commit_service(Some(index), edited, sched);
        Ok(Changed {
            config: true,
            ..Changed::default()
        })
    }

    fn zero(&mut self, key: Option<&ServiceKey>) -> Result<Changed, ApplyError> {
        let services: Vec<&ServiceEntry> = match key {
            Some(key) => vec![self.service(key).ok_or(ApplyError::NoSuchService)?],
            None => self.services.iter().collect(),
        };
        Ok(Changed {
            config: false,
            zero_services: services.iter().map(|s| s.id).collect(),
            zero_dests: services
                .iter()
                .flat_map(|s| s.dests.iter().map(|d| d.id))
                .collect(),
        })
    }

    fn add_laddr(&mut self, laddr: &LaddrSpec) -> Result<Changed, ApplyError> {
        let index = self
            .service_index(&laddr.service)
            .ok_or(ApplyError::ServiceNotDefined)?;
        let service = &self.services[index];
        if service.laddrs.iter().any(|l| l.addr == laddr.addr) {
            return Err(ApplyError::LaddrExists);
        }
        if !is_unicast(&laddr.addr) {
            return Err(ApplyError::Invalid(format!(
                "Invalid local address {}: not a unicast address",
                laddr.addr
            )));
        }
        if laddr.addr.is_ipv4() != service.spec.key.addr.is_ipv4() {
            return Err(ApplyError::Invalid(format!(
                "Local address {} is not of the service's address family",
                laddr.addr
            )));
        }
        if let Some(other) = self
            .services
            .iter()
            .find(|s| s.laddrs.iter().any(|l| l.addr == laddr.addr))
        {
            return Err(ApplyError::Invalid(format!(
                "Local address {} is already used by service {} (rvs does not share local addresses between services)",
                laddr.addr, other.spec.key
            )));
        }
        if let Some(svc) = self.services.iter().find(|s| s.spec.key.addr == laddr.addr) {
            return Err(ApplyError::Invalid(format!(
                "Local address {} is the virtual address of service {}",
                laddr.addr, svc.spec.key
            )));
        }
        if let Some(ifname) = &laddr.ifname {
            // Whatever the client checked: the name ends up in listings.
            crate::ctl::config::check_port_name(ifname).map_err(|e| {
                ApplyError::Invalid(format!(
                    "Invalid port name for local address {}: {e}",
                    laddr.addr
                ))
            })?;
            if !self.topology.ports.is_empty()
                && !self.topology.ports.iter().any(|p| &p.name == ifname)
            {
                return Err(ApplyError::Invalid(format!(
                    "No such port {ifname:?} for local address {} (ports: {})",
                    laddr.addr,
                    self.topology
                        .ports
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        self.services[index].laddrs.push(LaddrEntry {
            addr: laddr.addr,
            ifname: laddr.ifname.clone(),
        });
        Ok(Changed {
            config: true,
            ..Changed::default()
        })
    }

    fn delete_laddr(&mut self, laddr: &LaddrSpec) -> Result<Changed, ApplyError> {
        let index = self
            .service_index(&laddr.service)
            .ok_or(ApplyError::ServiceNotDefined)?;
        let service = &mut self.services[index];
        let pos = service
            .laddrs
            .iter()
            .position(|l| l.addr == laddr.addr)
            .ok_or(ApplyError::NoSuchLaddr)?;
        service.laddrs.remove(pos);
        Ok(Changed {
            config: true,
            ..Changed::default()
        })
    }

    /// The scheduler's view of a service's real servers, in insertion order.
    fn dest_views(&self, service: &ServiceEntry) -> Vec<DestView> {
        let workers = u32::from(self.topology.workers);
        self.effective_dests(service)
            .iter()
            .map(|d| DestView {
                weight: d.spec.weight,
                u_threshold: per_core_threshold(d.spec.u_threshold, workers),
                l_threshold: per_core_threshold(d.spec.l_threshold, workers),
                available: true,
                last_weight: d.last_weight,
                id: u32::from(d.id),
                addr: addr_from_ip(&d.spec.addr),
                port: d.spec.port,
            })
            .collect()
    }

    fn build_scheduler(&self, service: &ServiceEntry) -> Result<Scheduler, ApplyError> {
        let views = self.dest_views(service);
        let flags: Vec<&str> = service
            .spec
            .sched_flags
            .iter()
            .map(String::as_str)
            .collect();
        Scheduler::build_with(&service.spec.scheduler, &flags, &views, &self.build).map_err(|e| {
            match e {
                SchedError::UnknownScheduler(_) => ApplyError::SchedulerNotFound,
                other => ApplyError::Scheduler(other),
            }
        })
    }

    /// The real servers of `service` as the data plane and the listings see
    /// them: the sorry server alone while it is in force; else the
    /// configured ones without the dead (or at weight 0 with
    /// `inhibit_on_failure`), with a `misc_dynamic` weight where one is set.
    pub fn effective_dests(&self, service: &ServiceEntry) -> Vec<DestEntry> {
        if let Some(sorry) = self.sorry.get(&service.id) {
            return vec![sorry.clone()];
        }
        service
            .dests
            .iter()
            .filter_map(|d| {
                let weight = match self.health.get(&d.id) {
                    None => d.spec.weight,
                    Some(h) if h.alive => h.weight.unwrap_or(d.spec.weight),
                    Some(h) if h.inhibit => 0,
                    Some(_) => return None,
                };
                let mut d = d.clone();
                d.spec.weight = weight;
                Some(d)
            })
            .collect()
    }

    /// `service` as listed: its effective real servers.
    pub fn effective_service(&self, service: &ServiceEntry) -> ServiceEntry {
        ServiceEntry {
            dests: self.effective_dests(service),
            ..service.clone()
        }
    }

    /// Whether `service`'s sorry server is in force (quorum lost).
    pub fn sorry_in_force(&self, service: &ServiceEntry) -> bool {
        self.sorry.contains_key(&service.id)
    }

    /// The health verdict on a real-server slot (`None`: none recorded).
    pub fn dest_health(&self, id: u16) -> Option<DestHealth> {
        self.health.get(&id).copied()
    }

    /// Records the checker's verdict on a real server (`None`: forget it,
    /// the server counts as configured). Refused for a server that is not
    /// configured. The generation goes up when the effective tables change.
    pub fn set_health(
        &mut self,
        key: &ServiceKey,
        addr: &IpAddr,
        port: u16,
        health: Option<DestHealth>,
    ) -> Result<Changed, ApplyError> {
        let index = self
            .service_index(key)
            .ok_or(ApplyError::ServiceNotDefined)?;
        let id = self.services[index]
            .dest(addr, port)
            .ok_or(ApplyError::NoSuchDest)?
            .id;
        if self.health.get(&id).copied() == health {
            return Ok(Changed::default());
        }
        if let Some(weight) = health.and_then(|h| h.weight) {
            if weight > MAX_WEIGHT {
                return Err(ApplyError::Invalid(format!(
                    "Invalid weight {weight}: must be 0..={MAX_WEIGHT}"
                )));
            }
        }
        let mut next = self.clone();
        match health {
            Some(h) => next.health.insert(id, h),
            None => next.health.remove(&id),
        };
        self.commit_overlay(next, index, Vec::new())
    }

    /// Puts a sorry server in force for a service (quorum lost), replacing
    /// its real servers, or takes it out (`None`). The generation goes up
    /// when something changed.
    pub fn set_sorry(
        &mut self,
        key: &ServiceKey,
        sorry: Option<&DestSpec>,
    ) -> Result<Changed, ApplyError> {
        let index = self
            .service_index(key)
            .ok_or(ApplyError::ServiceNotDefined)?;
        let service_id = self.services[index].id;
        let mut next = self.clone();
        let mut zero_dests = Vec::new();
        match (sorry, next.sorry.get(&service_id)) {
            (None, None) => return Ok(Changed::default()),
            (Some(spec), Some(current)) if current.spec == *spec => return Ok(Changed::default()),
            (sorry, _) => {
                if let Some(old) = next.sorry.remove(&service_id) {
                    next.dest_slots.free(old.id);
                }
                if let Some(spec) = sorry {
                    let spec = Self::normalise_dest(&next.services[index], spec)?;
                    let id = next
                        .dest_slots
                        .alloc()
                        .ok_or(ApplyError::NoSpace(DESTS_FULL))?;
                    zero_dests.push(id);
                    next.sorry.insert(
                        service_id,
                        DestEntry {
                            id,
                            last_weight: spec.weight,
                            spec,
                        },
                    );
                }
            }
        }
        self.commit_overlay(next, index, zero_dests)
    }

    /// Ends a health or sorry-server change made on `next`: rebuilds the
    /// scheduler of service `index` over its effective real servers, bumps
    /// the generation and takes `next` as the state.
    fn commit_overlay(
        &mut self,
        mut next: ControlState,
        index: usize,
        zero_dests: Vec<u16>,
    ) -> Result<Changed, ApplyError> {
        let service = next.services[index].clone();
        let sched = next.check_scheduler(&service)?;
        next.commit_service(Some(index), service, sched);
        next.generation += 1;
        *self = next;
        Ok(Changed {
            config: true,
            zero_services: Vec::new(),
            zero_dests,
        })
    }

    /// Builds the immutable snapshot of this configuration: schedulers with
    /// their tables, routes (connected + static), neighbours, timeouts and
    /// settings, for [`ControlState::generation`].
    pub fn snapshot(&self) -> Result<Snapshot, ApplyError> {
        let mut services = Vec::with_capacity(self.services.len());
        let mut seen = HashSet::new();
        for s in &self.services {
            if !seen.insert(s.id) {
                return Err(ApplyError::Internal(format!(
                    "service slot {} used twice",
                    s.id
                )));
            }
            let key = &s.spec.key;
            let views = self.dest_views(s);
            let sched = match self.schedulers.get(&s.id) {
                Some(sched) => sched.clone(),
                None => Arc::new(self.build_scheduler(s)?),
            };
            let netmask = match s.spec.netmask {
                Netmask::V4(mask) => addr_from_ip(&IpAddr::V4(mask)),
                Netmask::V6(prefix) => prefix_mask(true, prefix),
            };
            services.push(Service {
                id: s.id,
                proto: key.proto.number(),
                vip: key.addr,
                vport: key.port,
                sched,
                persistent: s.spec.persistent,
                netmask,
                ops: s.spec.ops,
                dests: self
                    .effective_dests(s)
                    .iter()
                    .map(|d| Dest {
                        id: d.id,
                        addr: d.spec.addr,
                        port: d.spec.port,
                        fwd: d.spec.fwd,
                        weight: d.spec.weight,
                        u_threshold: d.spec.u_threshold,
                        l_threshold: d.spec.l_threshold,
                    })
                    .collect(),
                views,
                laddrs: s.laddrs.iter().map(|l| l.addr).collect(),
                synproxy: s.spec.synproxy,
                synproxy_capable: false,
                sloppy_tcp: s.spec.sloppy_tcp,
            });
        }
        let snap = Snapshot::new(
            self.generation,
            self.topology.workers,
            self.topology.ports.clone(),
            services,
            self.routes.clone(),
            self.topology.neighbours.clone(),
            self.timeouts,
            self.settings,
        )
        .with_vrrp(&self.vrrp_vips, &self.standby);
        Ok(match self.cookie_keys {
            Some((current, previous)) => snap.with_synproxy_keys(current, previous),
            None => snap,
        })
    }
}

/// Whether real server `d` can sit behind the SYN proxy of service `s`:
/// the proxy shifts sequence numbers on the return path, which DR and TUN
/// replies bypass; FULLNAT over IPv6 has no room for the shift in the entry.
fn synproxy_dest_ok(s: &ServiceSpec, d: &DestSpec) -> Result<(), ApplyError> {
    match d.fwd {
        Fwd::Dr | Fwd::Tun => Err(ApplyError::Unsupported(format!(
            "the SYN proxy needs NAT or FULLNAT real servers: {} replies bypass the director, so their sequence numbers cannot be shifted",
            d.fwd.name()
        ))),
        Fwd::FullNat if s.key.addr.is_ipv6() => Err(ApplyError::Unsupported(
            "the SYN proxy supports FULLNAT over IPv4 only".to_string(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Proto;
    use crate::ctl::protocol::TunType;
    use crate::wire::EthernetAddress;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn key(addr: &str, port: u16) -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            addr: ip(addr),
            port,
        }
    }

    fn add_svc(state: &mut ControlState, k: ServiceKey) -> Result<Changed, ApplyError> {
        state.apply(&Request::AddService {
            service: ServiceSpec::new(k),
        })
    }

    fn dest(addr: &str, port: u16, fwd: Fwd, weight: u32) -> DestSpec {
        DestSpec {
            fwd,
            weight,
            ..DestSpec::new(ip(addr), port)
        }
    }

    fn add_dest(
        state: &mut ControlState,
        k: ServiceKey,
        d: DestSpec,
    ) -> Result<Changed, ApplyError> {
        state.apply(&Request::AddDest {
            service: k,
            dest: d,
        })
    }

    fn web() -> ServiceKey {
        key("10.0.0.1", 80)
    }

    #[test]
    fn add_service_twice_is_service_already_exists() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("first add");
        let err = add_svc(&mut s, web()).expect_err("second add");
        assert_eq!(err, ApplyError::ServiceExists);
        assert_eq!(err.to_string(), "Service already exists");
        assert_eq!(err.kind(), ErrorKind::Exists);
        assert_eq!(s.services().len(), 1);
        assert_eq!(s.generation(), 1);
    }

    #[test]
    fn missing_services_and_dests_use_ipvsadm_wording() {
        let mut s = ControlState::default();
        let spec = ServiceSpec::new(web());
        let cases: Vec<(Request, &str)> = vec![
            (Request::EditService { service: spec }, "No such service"),
            (Request::DeleteService { service: web() }, "No such service"),
            (
                Request::Zero {
                    service: Some(web()),
                },
                "No such service",
            ),
            (
                Request::AddDest {
                    service: web(),
                    dest: DestSpec::new(ip("192.168.10.1"), 80),
                },
                "Service not defined",
            ),
            (
                Request::DeleteDest {
                    service: web(),
                    addr: ip("192.168.10.1"),
                    port: 80,
                },
                "Service not defined",
            ),
        ];
        for (request, text) in cases {
            let err = s.apply(&request).expect_err("must fail");
            assert_eq!(err.to_string(), text, "{request:?}");
            assert_eq!(err.kind(), ErrorKind::NotFound);
        }
        add_svc(&mut s, web()).expect("add");
        let err = s
            .apply(&Request::EditDest {
                service: web(),
                dest: DestSpec::new(ip("192.168.10.1"), 80),
            })
            .expect_err("edit missing dest");
        assert_eq!(err.to_string(), "No such destination");
        add_dest(&mut s, web(), dest("192.168.10.1", 80, Fwd::Nat, 1)).expect("add dest");
        let err =
            add_dest(&mut s, web(), dest("192.168.10.1", 80, Fwd::Nat, 3)).expect_err("dup dest");
        assert_eq!(err.to_string(), "Destination already exists");
        assert_eq!(err.kind(), ErrorKind::Exists);
    }

    #[test]
    fn zero_port_needs_persistence() {
        let mut s = ControlState::default();
        let err = add_svc(&mut s, key("10.0.0.1", 0)).expect_err("port 0");
        assert_eq!(
            err.to_string(),
            "Zero port specified for non-persistent service"
        );
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let mut spec = ServiceSpec::new(key("10.0.0.1", 0));
        spec.persistent = Some(300);
        s.apply(&Request::AddService { service: spec })
            .expect("persistent port 0");
    }

    #[test]
    fn unknown_scheduler_and_bad_flags_are_refused() {
        let mut s = ControlState::default();
        let mut spec = ServiceSpec::new(web());
        spec.scheduler = "fastest".into();
        let err = s
            .apply(&Request::AddService {
                service: spec.clone(),
            })
            .expect_err("unknown scheduler");
        assert_eq!(err.to_string(), "Scheduler or persistence engine not found");
        spec.scheduler = "wlc".into();
        spec.sched_flags = vec!["sh-port".into()];
        let err = s
            .apply(&Request::AddService {
                service: spec.clone(),
            })
            .expect_err("sh flag on wlc");
        assert!(matches!(
            err,
            ApplyError::Scheduler(SchedError::IncompatibleFlag { .. })
        ));
        spec.scheduler = "sh".into();
        s.apply(&Request::AddService { service: spec })
            .expect("sh-port with sh");
        assert_eq!(s.services().len(), 1);
        assert_eq!(s.generation(), 1, "only the good request counted");
    }

    #[test]
    fn persistence_and_ops_are_validated() {
        let mut s = ControlState::default();
        let mut spec = ServiceSpec::new(web());
        spec.persistent = Some(MAX_PERSISTENT_SECS + 1);
        assert!(s
            .apply(&Request::AddService {
                service: spec.clone()
            })
            .is_err());
        spec.persistent = Some(300);
        spec.netmask = Netmask::V6(64);
        let err = s
            .apply(&Request::AddService {
                service: spec.clone(),
            })
            .expect_err("v6 mask on v4 service");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        spec.netmask = Netmask::V4(Ipv4Addr::new(255, 255, 255, 0));
        spec.ops = true;
        let err = s
            .apply(&Request::AddService {
                service: spec.clone(),
            })
            .expect_err("ops on tcp");
        assert_eq!(
            err.to_string(),
            "One-Packet Scheduling is only for UDP virtual services"
        );
        spec.ops = false;
        spec.pe = Some("sip".into());
        let err = s
            .apply(&Request::AddService { service: spec })
            .expect_err("pe");
        assert_eq!(err.to_string(), "Scheduler or persistence engine not found");
        assert_eq!(s.generation(), 0, "nothing applied");
    }

    #[test]
    fn dr_and_tun_ports_are_forced_to_the_service_port() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        add_dest(&mut s, web(), dest("192.168.10.1", 8080, Fwd::Dr, 1)).expect("dr");
        add_dest(&mut s, web(), dest("192.168.10.2", 8080, Fwd::Tun, 1)).expect("tun");
        add_dest(&mut s, web(), dest("192.168.10.3", 8080, Fwd::Nat, 1)).expect("nat");
        let svc = s.service(&web()).expect("svc");
        let ports: Vec<u16> = svc.dests.iter().map(|d| d.spec.port).collect();
        assert_eq!(ports, vec![80, 80, 8080]);
        // -d of the DR server by the service port finds it.
        s.apply(&Request::DeleteDest {
            service: web(),
            addr: ip("192.168.10.1"),
            port: 80,
        })
        .expect("delete dr");
    }

    #[test]
    fn weights_thresholds_and_families_are_checked() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        let err =
            add_dest(&mut s, web(), dest("192.168.10.1", 80, Fwd::Nat, 65536)).expect_err("weight");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("65536"), "{err}");
        let mut d = dest("192.168.10.1", 80, Fwd::Nat, 1);
        d.l_threshold = 10;
        d.u_threshold = 5;
        let err = add_dest(&mut s, web(), d).expect_err("l > u");
        assert!(err.to_string().contains("lower threshold"), "{err}");
        let err =
            add_dest(&mut s, web(), dest("2001:db8::1", 80, Fwd::Nat, 1)).expect_err("family");
        assert_eq!(
            err.to_string(),
            "Different address family is allowed only for tunneling servers"
        );
        let err =
            add_dest(&mut s, web(), dest("2001:db8::1", 80, Fwd::Tun, 1)).expect_err("family tun");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        let err =
            add_dest(&mut s, web(), dest("224.0.0.1", 80, Fwd::Nat, 1)).expect_err("multicast");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(s.service(&web()).expect("svc").dests.is_empty());
        assert_eq!(s.generation(), 1);
    }

    #[test]
    fn editing_keeps_ids_and_last_weight() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        add_dest(&mut s, web(), dest("192.168.10.1", 80, Fwd::Nat, 5)).expect("d1");
        let svc_id = s.service(&web()).expect("svc").id;
        let dest_id = s.service(&web()).expect("svc").dests[0].id;
        s.apply(&Request::EditDest {
            service: web(),
            dest: dest("192.168.10.1", 80, Fwd::Nat, 0),
        })
        .expect("quiesce");
        let mut spec = ServiceSpec::new(web());
        spec.scheduler = "mh".into();
        s.apply(&Request::EditService { service: spec })
            .expect("edit svc");
        let svc = s.service(&web()).expect("svc");
        assert_eq!(svc.id, svc_id);
        assert_eq!(svc.dests[0].id, dest_id);
        assert_eq!(svc.dests[0].spec.weight, 0);
        assert_eq!(svc.dests[0].last_weight, 5, "last non-zero weight kept");
        s.apply(&Request::EditDest {
            service: web(),
            dest: dest("192.168.10.1", 80, Fwd::Nat, 7),
        })
        .expect("re-weight");
        assert_eq!(s.service(&web()).expect("svc").dests[0].last_weight, 7);
        let snap = s.snapshot().expect("snapshot");
        assert_eq!(snap.services[0].views[0].last_weight, 7);
        assert_eq!(snap.services[0].sched.name(), "mh");
    }

    #[test]
    fn slot_ids_are_round_robin_and_never_reused_while_in_use() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        let mut ids = Vec::new();
        for i in 1..=3 {
            let c = add_dest(
                &mut s,
                web(),
                dest(&format!("192.168.10.{i}"), 80, Fwd::Nat, 1),
            )
            .expect("add dest");
            ids.extend(c.zero_dests);
        }
        assert_eq!(ids, vec![0, 1, 2]);
        s.apply(&Request::DeleteDest {
            service: web(),
            addr: ip("192.168.10.2"),
            port: 80,
        })
        .expect("delete");
        let c = add_dest(&mut s, web(), dest("192.168.10.2", 80, Fwd::Nat, 1)).expect("again");
        assert_eq!(c.zero_dests, vec![3], "a freed id is not reused at once");
        // Deleting the service frees its ids; new ones continue after.
        s.apply(&Request::DeleteService { service: web() })
            .expect("del svc");
        add_svc(&mut s, web()).expect("re-add");
        let c = add_dest(&mut s, web(), dest("192.168.10.9", 80, Fwd::Nat, 1)).expect("d");
        assert_eq!(c.zero_dests, vec![4]);
        assert_eq!(s.service(&web()).expect("svc").id, 1);
    }

    #[test]
    fn slot_allocator_wraps_and_skips_used_ids() {
        let mut a = SlotAllocator::new(3);
        assert_eq!(a.alloc(), Some(0));
        assert_eq!(a.alloc(), Some(1));
        a.free(0);
        assert_eq!(a.alloc(), Some(2));
        assert_eq!(a.alloc(), Some(0), "wraps to the freed id");
        assert_eq!(a.alloc(), None, "full");
        a.free(1);
        assert_eq!(a.alloc(), Some(1));
    }

    #[test]
    fn too_many_services_is_memory_allocation_problem() {
        let mut s = ControlState::default();
        for i in 0..MAX_SERVICES {
            let k = ServiceKey {
                proto: Proto::Udp,
                addr: IpAddr::V4(Ipv4Addr::new(10, 1, (i / 256) as u8, (i % 256) as u8)),
                port: 53,
            };
            add_svc(&mut s, k).expect("fits");
        }
        let err = add_svc(&mut s, web()).expect_err("full");
        assert_eq!(
            err.to_string(),
            "Memory allocation problem: rvs holds at most 1024 virtual services"
        );
        assert_eq!(err.kind(), ErrorKind::NoSpace);
    }

    #[test]
    fn batch_is_all_or_nothing() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        let before = s.clone();
        let batch = Request::Batch {
            requests: vec![
                Request::AddDest {
                    service: web(),
                    dest: dest("192.168.10.1", 80, Fwd::Nat, 1),
                },
                Request::AddService {
                    service: ServiceSpec::new(key("10.0.0.2", 443)),
                },
                Request::AddDest {
                    service: web(),
                    dest: dest("192.168.10.1", 80, Fwd::Nat, 2),
                },
            ],
        };
        let err = s.apply(&batch).expect_err("third fails");
        assert_eq!(
            err.to_string(),
            "Destination already exists (request 3 of 3 in the batch; nothing was applied)"
        );
        assert_eq!(err.kind(), ErrorKind::Exists);
        assert_eq!(s.services(), before.services());
        assert_eq!(s.generation(), before.generation());
        // The slot cursor did not move either: the next dest gets id 0.
        let c = add_dest(&mut s, web(), dest("192.168.10.1", 80, Fwd::Nat, 1)).expect("add");
        assert_eq!(c.zero_dests, vec![0]);
        // A good batch applies once, bumping the generation by one.
        let g = s.generation();
        let good = Request::Batch {
            requests: vec![
                Request::Clear,
                Request::AddService {
                    service: ServiceSpec::new(web()),
                },
                Request::AddDest {
                    service: web(),
                    dest: dest("192.168.10.5", 80, Fwd::Nat, 1),
                },
                Request::SetTimeouts {
                    timeouts: Timeouts {
                        tcp: 60,
                        tcpfin: 0,
                        udp: 0,
                    },
                },
            ],
        };
        let c = s.apply(&good).expect("good batch");
        assert!(c.config);
        assert_eq!(s.generation(), g + 1);
        assert_eq!(
            s.timeouts(),
            Timeouts {
                tcp: 60,
                tcpfin: 120,
                udp: 300
            }
        );
        assert_eq!(s.services().len(), 1);
    }

    #[test]
    fn an_empty_batch_changes_nothing_and_keeps_the_generation() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        let changed = s
            .apply(&Request::Batch { requests: vec![] })
            .expect("empty batch");
        assert!(!changed.config);
        assert_eq!(s.generation(), 1);
    }

    #[test]
    fn duplicate_scheduler_flags_are_stored_once() {
        let mut s = ControlState::default();
        let mut spec = ServiceSpec::new(web());
        spec.scheduler = "sh".into();
        spec.sched_flags = vec!["sh-port".into(), "sh-fallback".into(), "sh-port".into()];
        s.apply(&Request::AddService {
            service: spec.clone(),
        })
        .expect("add");
        let stored = &s.service(&web()).expect("svc").spec.sched_flags;
        assert_eq!(stored, &["sh-port", "sh-fallback"]);
        spec.sched_flags = vec!["sh-fallback".into(), "sh-fallback".into()];
        s.apply(&Request::EditService { service: spec })
            .expect("edit");
        let stored = &s.service(&web()).expect("svc").spec.sched_flags;
        assert_eq!(stored, &["sh-fallback"]);
    }

    #[test]
    fn local_address_port_names_are_checked_by_the_daemon() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        for bad in ["eth0\n-A -t 1.2.3.4:80", &"x".repeat(15 << 20), "", "a b"] {
            let err = s
                .apply(&Request::AddLaddr {
                    laddr: LaddrSpec {
                        service: web(),
                        addr: ip("192.168.100.1"),
                        ifname: Some(bad.to_string()),
                    },
                })
                .expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
            assert!(err.to_string().contains("Invalid port name"), "{err}");
        }
        assert_eq!(s.generation(), 1);
    }

    #[test]
    fn batches_refuse_listings_and_nesting() {
        let mut s = ControlState::default();
        for inner in [Request::ListConns, Request::Batch { requests: vec![] }] {
            let err = s
                .apply(&Request::Batch {
                    requests: vec![Request::Clear, inner],
                })
                .expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::Invalid);
        }
        assert_eq!(s.generation(), 0);
    }

    #[test]
    fn zero_changes_no_configuration() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        add_dest(&mut s, web(), dest("192.168.10.1", 80, Fwd::Nat, 1)).expect("d");
        let g = s.generation();
        let c = s.apply(&Request::Zero { service: None }).expect("zero");
        assert!(!c.config);
        assert_eq!(c.zero_services, vec![0]);
        assert_eq!(c.zero_dests, vec![0]);
        assert_eq!(s.generation(), g);
    }

    #[test]
    fn set_timeouts_zero_keeps_and_range_is_checked() {
        let mut s = ControlState::default();
        s.apply(&Request::SetTimeouts {
            timeouts: Timeouts {
                tcp: 0,
                tcpfin: 30,
                udp: 0,
            },
        })
        .expect("set");
        assert_eq!(
            s.timeouts(),
            Timeouts {
                tcp: 900,
                tcpfin: 30,
                udp: 300
            }
        );
        let err = s
            .apply(&Request::SetTimeouts {
                timeouts: Timeouts {
                    tcp: u32::MAX,
                    tcpfin: 0,
                    udp: 0,
                },
            })
            .expect_err("too big");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(s.timeouts().tcp, 900);
    }

    #[test]
    fn laddrs_follow_dpvs_rules() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        add_svc(&mut s, key("10.0.0.2", 80)).expect("add 2");
        let l = |svc: ServiceKey, a: &str| LaddrSpec {
            service: svc,
            addr: ip(a),
            ifname: None,
        };
        s.apply(&Request::AddLaddr {
            laddr: l(web(), "192.168.100.1"),
        })
        .expect("laddr");
        let err = s
            .apply(&Request::AddLaddr {
                laddr: l(web(), "192.168.100.1"),
            })
            .expect_err("dup");
        assert_eq!(err.to_string(), "Local address already exists");
        let err = s
            .apply(&Request::AddLaddr {
                laddr: l(key("10.0.0.2", 80), "192.168.100.1"),
            })
            .expect_err("shared");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let err = s
            .apply(&Request::AddLaddr {
                laddr: l(web(), "2001:db8::1"),
            })
            .expect_err("family");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let err = s
            .apply(&Request::AddLaddr {
                laddr: l(web(), "10.0.0.2"),
            })
            .expect_err("vip");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let err = s
            .apply(&Request::AddLaddr {
                laddr: l(key("10.9.9.9", 80), "192.168.100.2"),
            })
            .expect_err("no svc");
        assert_eq!(err.to_string(), "Service not defined");
        let err = s
            .apply(&Request::DeleteLaddr {
                laddr: l(web(), "192.168.100.9"),
            })
            .expect_err("missing");
        assert_eq!(err.to_string(), "No such Local address");
        let snap = s.snapshot().expect("snap");
        assert_eq!(snap.services[0].laddrs, vec![ip("192.168.100.1")]);
        assert!(snap.is_laddr(&ip("192.168.100.1")));
        s.apply(&Request::DeleteService { service: web() })
            .expect("delete");
        // Deleting the service dropped its laddrs: the other may take it.
        s.apply(&Request::AddLaddr {
            laddr: l(key("10.0.0.2", 80), "192.168.100.1"),
        })
        .expect("free again");
    }

    #[test]
    fn laddr_ifname_must_name_a_port_when_there_are_ports() {
        let topology = Topology {
            workers: 1,
            ports: vec![PortConf {
                name: "eth0".into(),
                mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                mtu: 1500,
                addrs: vec![(ip("10.0.0.254"), 24)],
                rss: None,
            }],
            routes: vec![Route {
                prefix: ip("0.0.0.0"),
                len: 0,
                port: 0,
                via: Some(ip("10.0.0.1")),
            }],
            neighbours: Vec::new(),
        };
        let mut s = ControlState::new(topology, Settings::default()).expect("state");
        add_svc(&mut s, web()).expect("add");
        let mut spec = LaddrSpec {
            service: web(),
            addr: ip("192.168.100.1"),
            ifname: Some("eth9".into()),
        };
        let err = s
            .apply(&Request::AddLaddr {
                laddr: spec.clone(),
            })
            .expect_err("no port");
        assert!(err.to_string().contains("eth9"), "{err}");
        spec.ifname = Some("eth0".into());
        s.apply(&Request::AddLaddr { laddr: spec })
            .expect("port ok");
        let snap = s.snapshot().expect("snap");
        // Connected route from the port address plus the default route.
        let routes = snap.routes.routes();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].prefix, ip("10.0.0.0"));
        assert_eq!(routes[0].len, 24);
        assert_eq!(routes[0].via, None);
        assert_eq!(routes[1].via, Some(ip("10.0.0.1")));
    }

    #[test]
    fn snapshot_carries_services_and_per_core_thresholds() {
        let topology = Topology {
            workers: 2,
            ..Topology::default()
        };
        let mut s = ControlState::new(topology, Settings::default()).expect("state");
        let mut spec = ServiceSpec::new(web());
        spec.scheduler = "wrr".into();
        spec.persistent = Some(600);
        spec.netmask = Netmask::V4(Ipv4Addr::new(255, 255, 255, 0));
        s.apply(&Request::AddService { service: spec })
            .expect("svc");
        let mut d = dest("192.168.10.1", 8080, Fwd::Nat, 3);
        d.u_threshold = 101;
        d.l_threshold = 50;
        add_dest(&mut s, web(), d).expect("d1");
        add_dest(&mut s, web(), dest("192.168.10.2", 8080, Fwd::FullNat, 2)).expect("d2");
        let snap = s.snapshot().expect("snapshot");
        assert_eq!(snap.generation, s.generation());
        assert_eq!(snap.workers, 2);
        let svc = &snap.services[0];
        assert_eq!(svc.proto, 6);
        assert_eq!(svc.vport, 80);
        assert_eq!(svc.persistent, Some(600));
        assert_eq!(&svc.netmask[..4], &[255, 255, 255, 0]);
        assert_eq!(svc.dests.len(), 2);
        assert_eq!(svc.dests[0].fwd, conntrack::Fwd::Nat);
        assert_eq!(svc.dests[1].fwd, conntrack::Fwd::FullNat);
        assert_eq!(svc.dests[0].u_threshold, 101, "configured value kept");
        assert_eq!(
            svc.views[0].u_threshold, 51,
            "director-wide: split over 2 workers"
        );
        assert_eq!(svc.views[0].l_threshold, 25);
        assert_eq!(svc.sched.name(), "wrr");
        let vip = addr_from_ip(&ip("10.0.0.1"));
        assert_eq!(snap.find_service(6, &vip, 80), Some(0));
        assert_eq!(snap.find_service(17, &vip, 80), None);
        assert_eq!(snap.timeouts, conntrack::Timeouts::default());
    }

    #[test]
    fn unchanged_services_keep_their_built_scheduler() {
        let mut s = ControlState::default();
        let mut spec = ServiceSpec::new(web());
        spec.scheduler = "wrr".into();
        s.apply(&Request::AddService { service: spec })
            .expect("svc");
        add_dest(&mut s, web(), dest("192.168.10.1", 80, Fwd::Nat, 2)).expect("d");
        add_svc(&mut s, key("10.0.0.2", 80)).expect("other");
        let before = s.snapshot().expect("snap");
        add_dest(
            &mut s,
            key("10.0.0.2", 80),
            dest("192.168.10.9", 80, Fwd::Nat, 1),
        )
        .expect("other dest");
        let after = s.snapshot().expect("snap");
        assert!(Arc::ptr_eq(
            &before.services[0].sched,
            &after.services[0].sched
        ));
        assert!(!Arc::ptr_eq(
            &before.services[1].sched,
            &after.services[1].sched
        ));
    }

    #[test]
    fn clear_and_delete_free_every_slot() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        add_dest(&mut s, web(), dest("192.168.10.1", 80, Fwd::Nat, 1)).expect("d");
        s.apply(&Request::AddLaddr {
            laddr: LaddrSpec {
                service: web(),
                addr: ip("192.168.100.1"),
                ifname: None,
            },
        })
        .expect("laddr");
        s.apply(&Request::Clear).expect("clear");
        assert!(s.services().is_empty());
        assert!(s.service_slots.in_use.iter().all(|u| !u));
        assert!(s.dest_slots.in_use.iter().all(|u| !u));
        assert_eq!(s.snapshot().expect("snap").services.len(), 0);
    }

    #[test]
    fn tunnel_dest_keeps_tun_type() {
        let mut s = ControlState::default();
        add_svc(&mut s, web()).expect("add");
        let d = DestSpec {
            fwd: Fwd::Tun,
            tun_type: TunType::Ipip,
            ..DestSpec::new(ip("192.168.10.1"), 80)
        };
        add_dest(&mut s, web(), d.clone()).expect("tun");
        assert_eq!(s.service(&web()).expect("svc").dests[0].spec, d);
    }
}
