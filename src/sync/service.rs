//! The sync daemons: control threads that move connection entries between
//! the workers' rings (`sync::export`) and the network, in IPVS sync v1
//! messages (`wire::ipvs_sync`) over UDP multicast (224.0.0.81:8848 by
//! default).
//!
//! * **Master**: polls every worker's export ring each millisecond, packs
//!   the entries into messages of at most `maxlen` bytes (and 255
//!   entries), and sends a message when it is full or when its first entry
//!   has waited [`FLUSH_DELAY`] — so an entry leaves within 10 ms of the
//!   event (IPVS waits up to 2 s). The socket is bound to the interface's
//!   address, so the kernel sends by that interface (as IPVS's master
//!   does); TTL `ttl`, multicast loop off.
//! * **Backup**: joins the group on the interface and receives. A message
//!   longer than `maxlen`, shorter than its header, whose `size` differs
//!   from the datagram, not of version 1, with another `syncid` (when
//!   ours is not 0), or with an entry that does not parse, is counted by
//!   reason and ignored as a whole; an entry rvs cannot install (another
//!   protocol or method, an unknown mandatory option, no such service) is
//!   counted and skipped. Each good entry goes to the worker that owns its
//!   flow (`dataplane::worker::flow_owner` over the running snapshot) via
//!   that worker's install ring.
//!
//! * **Following VRRP** ([`SyncService::follow`]): a daemon given a
//!   `vrrp_instance` is switched by the VRRP service's transitions — the
//!   backup stopped and the master started on MASTER, the reverse on
//!   BACKUP/FAULT (keepalived's `ipvs_syncd_master`/`ipvs_syncd_backup`).
//!
//! Rules: one master and one backup at most; starting one that runs is
//! refused; sockets are opened before the thread starts, so errors reach
//! the operator. Every thread waits at most 100 ms at a time and stops
//! promptly ([`SyncService::shutdown`] within the daemon's stop budget).

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::auth;
use super::conf::{SyncConf, SyncConfError, SyncRole};
use super::export::{bump, SyncEntry, SyncRings, WorkerSyncCounters};
use crate::conntrack::Tuple;
use crate::dataplane::runtime::DataplaneHandle;
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::worker::flow_owner;
use crate::wire::ipvs_sync::{
    emit_hmac_trailer, emit_resync_request, is_resync_request, SyncConn, SyncHeaderRepr,
    SyncMessage, HEADER_LEN, HMAC_TRAILER_LEN, RESYNC_REQUEST_LEN,
};
use crate::wire::Error as WireError;

/// Longest an exported entry waits for more to share its message.
pub const FLUSH_DELAY: Duration = Duration::from_millis(5);
/// How often the master looks at the export rings.
const POLL: Duration = Duration::from_millis(1);
/// The backup's longest wait in `recv` (its stop latency).
const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// Why a sync daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A setting is out of range.
    #[error(transparent)]
    Conf(#[from] SyncConfError),
    /// That role already runs.
    #[error("a {0} sync daemon is already running")]
    Running(&'static str),
    /// No such daemon to stop.
    #[error("no {0} sync daemon is running")]
    NotRunning(&'static str),
    /// lbd runs without workers.
    #[error("lbd runs without ports: there are no connections to synchronise")]
    NoWorkers,
    /// The socket could not be set up.
    #[error("sync {role} socket: {source}")]
    Socket {
        /// Which daemon.
        role: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The thread could not start.
    #[error("cannot start the sync thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The running snapshot, for the owner computation (installed by the
/// daemon; called only when the workers' generation changed).
pub type SnapshotFn = Box<dyn Fn() -> Option<Arc<Snapshot>> + Send + Sync>;

/// The sync threads' counters (each written by one thread).
#[derive(Debug, Default)]
pub struct SyncStats {
    messages_sent: AtomicU64,
    conns_sent: AtomicU64,
    bytes_sent: AtomicU64,
    send_errors: AtomicU64,
    messages_received: AtomicU64,
    conns_received: AtomicU64,
    bytes_received: AtomicU64,
    drop_oversized: AtomicU64,
    drop_truncated: AtomicU64,
    drop_size: AtomicU64,
    drop_version: AtomicU64,
    drop_syncid: AtomicU64,
    drop_malformed: AtomicU64,
    entries_refused: AtomicU64,
    entries_no_service: AtomicU64,
    resync_requests_sent: AtomicU64,
    resync_requests_served: AtomicU64,
    drop_auth: AtomicU64,
    /// Masters heard from (backup thread writes; listings read).
    peers: Mutex<Vec<Peer>>,
}

/// A master a backup heard from.
#[derive(Debug, Clone)]
struct Peer {
    addr: IpAddr,
    messages: u64,
    conns: u64,
    last: Instant,
}

/// A master as `lbctl -L --daemon --exact` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPeer {
    /// Its address (the messages' source).
    pub addr: IpAddr,
    /// Messages accepted from it.
    pub messages: u64,
    /// Entries in them.
    pub conns: u64,
    /// Milliseconds since its last message (how stale the copy may be).
    pub last_ms_ago: u64,
}

/// One counter as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounter {
    /// Name (snake case).
    pub name: String,
    /// Value.
    pub value: u64,
}

/// What `lbctl -L --daemon` and `lbctl --daemon-stats` show.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The running daemons (master first).
    pub daemons: Vec<SyncConf>,
    /// Counters: the sync threads' and the workers' sums.
    pub counters: Vec<SyncCounter>,
    /// The masters the backup heard from.
    #[serde(default)]
    pub peers: Vec<SyncPeer>,
}

/// Chooses one of a worker's sync counters.
type PickCounter = fn(&WorkerSyncCounters) -> &AtomicU64;

struct Running {
    conf: SyncConf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The sync daemons of one `lbd`.
pub struct SyncService {
    dataplane: Arc<dyn DataplaneHandle>,
    rings: Option<Arc<SyncRings>>,
    snapshot: Arc<SnapshotFn>,
    stats: Arc<SyncStats>,
    master: Mutex<Option<Running>>,
    backup: Mutex<Option<Running>>,
    /// Set by [`SyncService::shutdown`]: a late VRRP transition starts
    /// nothing.
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SyncService {
    /// Sync daemons for `dataplane`'s workers; none runs yet.
    pub fn new(dataplane: Arc<dyn DataplaneHandle>, snapshot: SnapshotFn) -> SyncService {
        SyncService {
            rings: dataplane.sync_rings(),
            dataplane,
            snapshot: Arc::new(snapshot),
            stats: Arc::new(SyncStats::default()),
            master: Mutex::new(None),
            backup: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `conf` (a daemon that follows a VRRP instance) in `role`: the
    /// other role's daemon stops first, then this one starts (nothing
    /// changes when it already runs in `role`; nothing starts after
    /// [`SyncService::shutdown`]).
    pub fn follow(&self, conf: &SyncConf, role: SyncRole) -> Result<(), SyncError> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if lock(self.slot(role)).is_some() {
            return Ok(());
        }
        let other = match role {
            SyncRole::Master => SyncRole::Backup,
            SyncRole::Backup => SyncRole::Master,
        };
        let _ = self.stop(other);
        self.start(&SyncConf {
            role,
            ..conf.clone()
        })
    }

    fn slot(&self, role: SyncRole) -> &Mutex<Option<Running>> {
        match role {
            SyncRole::Master => &self.master,
            SyncRole::Backup => &self.backup,
        }
    }

    /// Starts a daemon (`lbctl --start-daemon`).
    pub fn start(&self, conf: &SyncConf) -> Result<(), SyncError> {
        conf.validate()?;
        let rings = self.rings.clone().ok_or(SyncError::NoWorkers)?;
        let role = conf.role.name();
        let mut slot = lock(self.slot(conf.role));
        if slot.is_some() {
            return Err(SyncError::Running(role));
        }
        let sock_err = |source| SyncError::Socket { role, source };
        let iface = conf
            .interface
            .as_deref()
            .map(crate::sys::interface_ipv4)
            .transpose()
            .map_err(sock_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = self.stats.clone();
        let thread = match conf.role {
            SyncRole::Master => {
                let sock = master_socket(conf, iface).map_err(sock_err)?;
                let listen = group_socket(conf, iface).map_err(sock_err)?;
                listen.set_nonblocking(true).map_err(sock_err)?;
                let m = Master {
                    conf: conf.clone(),
                    sock,
                    listen,
                    rings,
                    stats,
                    stop: stop.clone(),
                    dataplane: self.dataplane.clone(),
                };
                self.dataplane.set_sync_export(true);
                spawn("rvs-sync-master", move || m.run())
            }
            SyncRole::Backup => {
                let sock = group_socket(conf, iface).map_err(sock_err)?;
                sock.set_read_timeout(Some(RECV_TIMEOUT))
                    .map_err(sock_err)?;
                // Ask the masters for their whole tables (rvs): a backup
                // that (re)joins is ready before it takes over.
                let ask = master_socket(conf, iface).map_err(sock_err)?;
                let mut req = [0u8; RESYNC_REQUEST_LEN + HMAC_TRAILER_LEN];
                let mut n = emit_resync_request(&mut req, conf.syncid);
                if let Some(key) = &conf.auth_key {
                    n += emit_hmac_trailer(&mut req[n..]);
                    req[4] = 2;
                    req[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                    auth::sign(key.as_bytes(), &mut req[..n]);
                }
                if ask
                    .send_to(&req[..n], SocketAddrV4::new(conf.group, conf.port))
                    .is_ok()
                {
                    bump(&self.stats.resync_requests_sent, 1);
                }
                let b = Backup {
                    conf: conf.clone(),
                    sock,
                    rings,
                    stats,
                    stop: stop.clone(),
                    dataplane: self.dataplane.clone(),
                    snapshot: self.snapshot.clone(),
                    snap: None,
                    generation: u64::MAX,
                };
                spawn("rvs-sync-backup", move || b.run())
            }
        };
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                if conf.role == SyncRole::Master {
                    self.dataplane.set_sync_export(false);
                }
                return Err(SyncError::Thread(e));
            }
        };
        *slot = Some(Running {
            conf: conf.clone(),
            stop,
            thread,
        });
        Ok(())
    }

    /// Stops the daemon of `role` (`lbctl --stop-daemon master|backup`).
    pub fn stop(&self, role: SyncRole) -> Result<(), SyncError> {
        let running = lock(self.slot(role)).take();
        let Some(r) = running else {
            return Err(SyncError::NotRunning(role.name()));
        };
        if role == SyncRole::Master {
            self.dataplane.set_sync_export(false);
        }
        r.stop.store(true, Ordering::Release);
        let _ = r.thread.join();
        Ok(())
    }

    /// Stops whatever runs (daemon stop).
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        for role in [SyncRole::Master, SyncRole::Backup] {
            let _ = self.stop(role);
        }
    }

    /// The running daemons and the counters.
    pub fn status(&self) -> SyncStatus {
        let daemons = [&self.master, &self.backup]
            .iter()
            .filter_map(|m| lock(m).as_ref().map(|r| r.conf.clone()))
            .collect();
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counters: Vec<(&str, u64)> = vec![
            ("messages_sent", get(&s.messages_sent)),
            ("conns_sent", get(&s.conns_sent)),
            ("bytes_sent", get(&s.bytes_sent)),
            ("send_errors", get(&s.send_errors)),
            ("messages_received", get(&s.messages_received)),
            ("conns_received", get(&s.conns_received)),
            ("bytes_received", get(&s.bytes_received)),
            ("dropped_oversized", get(&s.drop_oversized)),
            ("dropped_truncated", get(&s.drop_truncated)),
            ("dropped_bad_size", get(&s.drop_size)),
            ("dropped_bad_version", get(&s.drop_version)),
            ("dropped_wrong_syncid", get(&s.drop_syncid)),
            ("dropped_malformed", get(&s.drop_malformed)),
            ("entries_refused", get(&s.entries_refused)),
            ("entries_no_service", get(&s.entries_no_service)),
            ("resync_requests_sent", get(&s.resync_requests_sent)),
            ("resync_requests_served", get(&s.resync_requests_served)),
            ("dropped_auth", get(&s.drop_auth)),
        ];
        if let Some(r) = &self.rings {
            let worker: [(&str, PickCounter); 7] = [
                ("exported", |c| &c.exported),
                ("export_ring_full", |c| &c.export_ring_full),
                ("installed", |c| &c.installed),
                ("updated", |c| &c.updated),
                ("install_failed", |c| &c.install_failed),
                ("install_ring_full", |c| &c.install_ring_full),
                ("install_lport_foreign", |c| &c.install_lport_foreign),
            ];
            for (name, pick) in worker {
                counters.push((name, r.total(pick)));
            }
        }
        let peers = lock(&s.peers)
            .iter()
            .map(|p| SyncPeer {
                addr: p.addr,
                messages: p.messages,
                conns: p.conns,
                last_ms_ago: p.last.elapsed().as_millis() as u64,
            })
            .collect();
        SyncStatus {
            daemons,
            peers,
            counters: counters
                .into_iter()
                .map(|(name, value)| SyncCounter {
                    name: name.to_string(),
                    value,
                })
                .collect(),
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_string()).spawn(f)
}

fn master_socket(conf: &SyncConf, iface: Option<Ipv4Addr>) -> std::io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(iface.unwrap_or(Ipv4Addr::UNSPECIFIED), 0))?;
    sock.set_multicast_ttl_v4(u32::from(conf.ttl))?;
    sock.set_multicast_loop_v4(false)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// A socket receiving the group (the backup's messages, the master's
/// resynchronisation requests): bound to group:port with SO_REUSEADDR (a
/// master and a backup of one host both bind it), joined on the interface.
fn group_socket(conf: &SyncConf, iface: Option<Ipv4Addr>) -> std::io::Result<UdpSocket> {
    let sock = crate::sys::udp_bind_reuse(SocketAddrV4::new(conf.group, conf.port))?;
    sock.join_multicast_v4(&conf.group, &iface.unwrap_or(Ipv4Addr::UNSPECIFIED))?;
    Ok(sock)
}

struct Master {
    conf: SyncConf,
    sock: UdpSocket,
    listen: UdpSocket,
    rings: Arc<SyncRings>,
    stats: Arc<SyncStats>,
    stop: Arc<AtomicBool>,
    dataplane: Arc<dyn DataplaneHandle>,
}

/// A message being filled.
struct Batch {
    buf: Vec<u8>,
    len: usize,
    n: u8,
    since: Option<Instant>,
}

impl Master {
    fn run(self) {
        // With a key the last entry of each message is its HMAC trailer.
        let room = if self.conf.auth_key.is_some() {
            HMAC_TRAILER_LEN
        } else {
            0
        };
        let maxlen = usize::from(self.conf.maxlen) - room;
        let mut b = Batch {
            buf: vec![0; maxlen + room],
            len: HEADER_LEN,
            n: 0,
            since: None,
        };
        let dst = SocketAddrV4::new(self.conf.group, self.conf.port);
        while !self.stop.load(Ordering::Acquire) {
            let mut got = false;
            for w in 0..self.rings.workers() {
                while let Some(e) = self.rings.take_export(w) {
                    got = true;
                    let r = e.to_repr();
                    let need = r.padded_len();
                    if b.len + need > maxlen || b.n == u8::MAX - 1 {
                        self.send(&mut b, dst);
                    }
                    r.emit(&mut SyncConn::new_unchecked(
                        &mut b.buf[b.len..b.len + need],
                    ));
                    b.len += need;
                    b.n += 1;
                    b.since.get_or_insert_with(Instant::now);
                }
            }
            if b.since.is_some_and(|t| t.elapsed() >= FLUSH_DELAY) {
                self.send(&mut b, dst);
            }
            self.take_requests();
            if !got {
                std::thread::sleep(POLL);
            }
        }
        self.send(&mut b, dst);
    }

    /// Serves resynchronisation requests of our syncid (or 0): every
    /// worker walks its table into its export ring.
    fn take_requests(&self) {
        let mut buf = [0u8; 512];
        while let Ok(n) = self.listen.recv(&mut buf) {
            let Ok(m) = SyncMessage::new_checked(&buf[..n]) else {
                continue;
            };
            if let Some(key) = &self.conf.auth_key {
                if !auth::verify(key.as_bytes(), &m) {
                    bump(&self.stats.drop_auth, 1);
                    continue;
                }
            }
            if is_resync_request(&m) && (m.syncid() == 0 || m.syncid() == self.conf.syncid) {
                bump(&self.stats.resync_requests_served, 1);
                self.dataplane.sync_full();
            }
        }
    }

    fn send(&self, b: &mut Batch, dst: SocketAddrV4) {
        if b.n == 0 {
            return;
        }
        if self.conf.auth_key.is_some() {
            b.len += emit_hmac_trailer(&mut b.buf[b.len..]);
            b.n += 1;
        }
        SyncHeaderRepr {
            syncid: self.conf.syncid,
            nr_conns: b.n,
            size: b.len as u16,
        }
        .emit(&mut SyncMessage::new_unchecked(&mut b.buf[..HEADER_LEN]));
        if let Some(key) = &self.conf.auth_key {
            auth::sign(key.as_bytes(), &mut b.buf[..b.len]);
        }
        let s = &self.stats;
        match self.sock.send_to(&b.buf[..b.len], dst) {
            Ok(_) => {
                bump(&s.messages_sent, 1);
                bump(&s.conns_sent, u64::from(b.n));
                bump(&s.bytes_sent, b.len as u64);
            }
            Err(_) => bump(&s.send_errors, 1),
        }
        b.len = HEADER_LEN;
        b.n = 0;
        b.since = None;
    }
}

struct Backup {
    conf: SyncConf,
    sock: UdpSocket,
    rings: Arc<SyncRings>,
    stats: Arc<SyncStats>,
    stop: Arc<AtomicBool>,
    dataplane: Arc<dyn DataplaneHandle>,
    snapshot: Arc<SnapshotFn>,
    snap: Option<Arc<Snapshot>>,
    generation: u64,
}

impl Backup {
    fn run(mut self) {
        let mut buf = vec![0u8; 65536];
        while !self.stop.load(Ordering::Acquire) {
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Some(conns) = self.message(&buf[..n]) {
                        self.heard(from.ip(), conns);
                    }
                }
                Err(_) => continue,
            }
        }
    }

    /// The snapshot the workers run (rebuilt when their generation moved).
    fn refresh_snapshot(&mut self) {
        let generation = self
            .dataplane
            .counters()
            .first()
            .map_or(0, |c| c.generation.load(Ordering::Acquire));
        if generation != self.generation || self.snap.is_none() {
            if let Some(s) = (self.snapshot)() {
                self.snap = Some(s);
                self.generation = generation;
            }
        }
    }

    /// Notes a good message of `conns` entries from master `addr`.
    fn heard(&self, addr: IpAddr, conns: u64) {
        let mut peers = lock(&self.stats.peers);
        if let Some(p) = peers.iter_mut().find(|p| p.addr == addr) {
            p.messages += 1;
            p.conns += conns;
            p.last = Instant::now();
        } else if peers.len() < 64 {
            // A bounded list: the masters of one sync group.
            peers.push(Peer {
                addr,
                messages: 1,
                conns,
                last: Instant::now(),
            });
        }
    }

    /// Validates one datagram and hands its entries to their owners;
    /// the number of entries of an accepted message.
    fn message(&mut self, data: &[u8]) -> Option<u64> {
        let s = self.stats.clone();
        bump(&s.messages_received, 1);
        bump(&s.bytes_received, data.len() as u64);
        if data.len() > usize::from(self.conf.maxlen) {
            bump(&s.drop_oversized, 1);
            return None;
        }
        let msg = match SyncMessage::new_checked(data) {
            Ok(m) => m,
            Err(WireError::Truncated) => {
                bump(&s.drop_truncated, 1);
                return None;
            }
            Err(WireError::Unsupported(_)) => {
                bump(&s.drop_version, 1);
                return None;
            }
            Err(_) => {
                bump(&s.drop_size, 1);
                return None;
            }
        };
        if self.conf.syncid != 0 && msg.syncid() != self.conf.syncid {
            bump(&s.drop_syncid, 1);
            return None;
        }
        if let Some(key) = &self.conf.auth_key {
            if !auth::verify(key.as_bytes(), &msg) {
                bump(&s.drop_auth, 1);
                return None;
            }
        }
        if is_resync_request(&msg) {
            // Another backup asking the masters: not for us.
            return None;
        }
        // The whole message parses, or none of it is used.
        let mut entries = Vec::with_capacity(usize::from(msg.nr_conns()));
        for r in msg.conns() {
            match r {
                // rvs control entries (the HMAC trailer): not connections.
                Ok(r) if r.protocol == 0 => {}
                Ok(r) => entries.push(Some(r)),
                Err(WireError::Unsupported(_)) => entries.push(None),
                Err(_) => {
                    bump(&s.drop_malformed, 1);
                    return None;
                }
            }
        }
        self.refresh_snapshot();
        let snap = self.snap.clone()?;
        let n = entries.len() as u64;
        let workers = self.rings.workers();
        for r in entries {
            bump(&s.conns_received, 1);
            let Some(e) = r.and_then(|r| SyncEntry::from_repr(&r).ok()) else {
                bump(&s.entries_refused, 1);
                continue;
            };
            if snap.find_service(e.proto, &e.vip, e.vport).is_none() {
                bump(&s.entries_no_service, 1);
                continue;
            }
            let t = Tuple::new(e.proto, e.v6, e.cip, e.cport, e.vip, e.vport);
            let owner = flow_owner(&snap, &t, workers);
            self.rings.install(owner, e);
        }
        Some(n)
    }
}
