//! ctl::server — lbd's side of the control protocol: the request handler
//! ([`Control`]) and the Unix-socket listener ([`Server`]).
//!
//! Owns the answer to every [`Request`]: changes go through
//! [`ControlState::apply`], the resulting snapshot is published to the data
//! plane, and the operator hears `Ok { generation }` only after every worker
//! runs that generation; listings are built from the configuration, the
//! per-core counters ([`stats`](crate::ctl::stats)) and the workers'
//! connection dumps.
//!
//! Rules:
//! * One configuration lock, held while a change is validated, built,
//!   published and committed; listings hold it only to copy what they need.
//!   The data path never takes it. Connection dumps and counter sums run
//!   outside it.
//! * A change is all or nothing: if validation, the snapshot build or the
//!   publish fails, the state is left as it was (after a failed publish the
//!   previous configuration is published again under a new generation, so
//!   workers that took the failed one go back) and an error is answered.
//! * The socket: created with mode 0600 (umask set around `bind`, then
//!   `chmod`), owned by the user that started lbd. A stale socket file (no
//!   listener behind it) is replaced; a live one is never stolen: "lbd
//!   already running on PATH". A path that exists and is not a socket is
//!   left alone (error). The file is removed on shutdown if it is still
//!   ours.
//! * One thread per client, at most [`ServerOptions::max_clients`] at once;
//!   a connection beyond that gets an error response and is closed. Each
//!   connection carries any number of request/response pairs. A malformed
//!   frame or a frame of another protocol version gets an error response
//!   and the connection continues; a frame announcing more than
//!   `MAX_FRAME_LEN` bytes gets an error response and the connection is
//!   closed (its payload was not read, so framing is lost).
//! * `ListConns` answers at most as many connections as fit in one frame
//!   and sets `truncated` when it stopped early.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conntrack::Proto;
use crate::ctl::apply::{ApplyError, ControlState, DestHealth};
use crate::ctl::ipvsadm::IPVS_VERSION;
use crate::ctl::protocol::{
    self, ConnInfo, DestInfo, DropCount, ErrorKind, LaddrInfo, PortStatsInfo, ProtocolError,
    Request, Response, ServiceInfo, ServiceLaddrs, WorkerStatsInfo, MAX_FRAME_LEN,
    PROTOCOL_VERSION,
};
use crate::ctl::stats::{self, StatsKeeper};
use crate::dataplane::counters::{CoreCounters, DropReason};
use crate::dataplane::driver::PortStats;
use crate::dataplane::runtime::DataplaneHandle;
use crate::dataplane::worker::ConnEntry;
use crate::sys::UmaskGuard;

/// Everything [`Control`] needs besides the state and the data plane.
#[derive(Default)]
pub struct ControlOptions {
    /// Connection-table capacity of one worker (`-L` prints capacity ×
    /// workers as the table size).
    pub conn_capacity: u32,
}

/// One port's device counters as `lbctl --port-stats` shows them.
fn port_stats_info(index: usize, name: &str, s: &PortStats) -> PortStatsInfo {
    PortStatsInfo {
        port: u16::try_from(index).unwrap_or(u16::MAX),
        name: name.to_string(),
        rx_packets: s.ipackets,
        rx_bytes: s.ibytes,
        tx_packets: s.opackets,
        tx_bytes: s.obytes,
        rx_missed: s.imissed,
        rx_errors: s.ierrors,
        tx_errors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
        link_gone: s.link_gone,
    }
}

/// Locks a mutex, ignoring poisoning (a panicked holder left consistent
/// data: every mutation is a whole-value replacement).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What answers [`Request::Reload`]: installed by the daemon, which knows
/// its configuration file (see `daemon::reload`).
pub type ReloadHook = Box<dyn Fn(&Control) -> Response + Send + Sync>;

/// What answers [`Request::Vrrp`]: installed by the daemon's VRRP service.
pub type VrrpStatusHook =
    Box<dyn Fn() -> Vec<crate::ctl::protocol::VrrpInstanceInfo> + Send + Sync>;
/// What answers [`Request::Health`]: installed by the daemon's health
/// checker (`crate::health`), which keeps the live view.
pub type HealthHook = Box<dyn Fn() -> Vec<protocol::HealthInfo> + Send + Sync>;

/// What answers [`Request::Announce`] and [`Request::Drain`]: installed by
/// the daemon (`crate::announce`).
pub type AnnounceHook = Box<dyn Fn(&Request) -> Response + Send + Sync>;

/// How often `lbd` rotates the SYN cookie secret: longer than a cookie
/// lives (2 minutes), so with the previous secret still accepted a cookie
/// stays valid for its whole life.
pub const SYNPROXY_KEY_PERIOD: Duration = Duration::from_secs(300);

/// The thread rotating the SYN cookie secret
/// ([`Control::spawn_key_rotation`]); stopped and joined on drop.
pub struct KeyRotation {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for KeyRotation {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once.
        self.stop.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The request handler: configuration, data plane and statistics.
pub struct Control {
    announce: OnceLock<AnnounceHook>,
    state: Mutex<ControlState>,
    reload: OnceLock<ReloadHook>,
    vrrp: OnceLock<VrrpStatusHook>,
    health_view: Mutex<Option<HealthHook>>,
    sync: OnceLock<Arc<crate::sync::service::SyncService>>,
    stats: Arc<Mutex<StatsKeeper>>,
    dataplane: Arc<dyn DataplaneHandle>,
    counters: Vec<Arc<CoreCounters>>,
    conn_table_size: u64,
}

impl Control {
    /// A handler for `state`, whose snapshot the data plane already runs.
    pub fn new(
        state: ControlState,
        dataplane: Arc<dyn DataplaneHandle>,
        options: ControlOptions,
    ) -> Control {
        let counters = dataplane.counters();
        let conn_table_size = u64::from(options.conn_capacity) * u64::from(dataplane.workers());
        Control {
            announce: OnceLock::new(),
            state: Mutex::new(state),
            reload: OnceLock::new(),
            vrrp: OnceLock::new(),
            health_view: Mutex::new(None),
            sync: OnceLock::new(),
            stats: Arc::new(Mutex::new(StatsKeeper::new())),
            dataplane,
            counters,
            conn_table_size,
        }
    }

    /// The statistics keeper (for the estimator thread).
    pub fn stats(&self) -> Arc<Mutex<StatsKeeper>> {
        self.stats.clone()
    }

    /// The workers' counters.
    pub fn counters(&self) -> &[Arc<CoreCounters>] {
        &self.counters
    }

    /// A copy of the configuration now in force.
    pub fn state(&self) -> ControlState {
        lock(&self.state).clone()
    }

    /// Runs `f` on the configuration in force, under the configuration
    /// lock (keep it short: no I/O), without copying it.
    pub fn inspect<R>(&self, f: impl FnOnce(&ControlState) -> R) -> R {
        f(&lock(&self.state))
    }

    /// Installs what answers [`Request::Announce`] and [`Request::Drain`]
    /// (once; false if one was installed already). Without it both are
    /// refused as unsupported.
    pub fn set_announce(&self, hook: AnnounceHook) -> bool {
        self.announce.set(hook).is_ok()
    }

    /// Installs what answers [`Request::Reload`] (once; false if one was
    /// installed already). Without it a reload is refused.
    pub fn set_reload(&self, hook: ReloadHook) -> bool {
        self.reload.set(hook).is_ok()
    }

    /// Installs the sync daemons that answer `--start-daemon`,
    /// `--stop-daemon` and `-L --daemon` (once; false if set already).
    pub fn set_sync(&self, sync: Arc<crate::sync::service::SyncService>) -> bool {
        self.sync.set(sync).is_ok()
    }

    fn sync_request(&self, request: &Request) -> Response {
        let Some(sync) = self.sync.get() else {
            return Response::error(
                ErrorKind::Unsupported,
                "this lbd has no connection sync service".to_string(),
            );
        };
        let done = match request {
            Request::StartDaemon { daemon } => sync.start(daemon),
            Request::StopDaemon { role } => sync.stop(*role),
            _ => {
                return Response::Daemon {
                    status: sync.status(),
                }
            }
        };
        match done {
            Ok(()) => Response::Ok {
                generation: lock(&self.state).generation(),
            },
            Err(e) => {
                let kind = match e {
                    crate::sync::service::SyncError::Running(_) => ErrorKind::Exists,
                    crate::sync::service::SyncError::NotRunning(_) => ErrorKind::NotFound,
                    crate::sync::service::SyncError::Conf(_) => ErrorKind::Invalid,
                    _ => ErrorKind::Internal,
                };
                Response::error(kind, e.to_string())
            }
        }
    }

    /// Plans a change from the configuration in force and commits it as
    /// one change, under one hold of the configuration lock (so no other
    /// change slips in between the plan and its commit). `plan` answers
    /// `Ok(None)` for nothing to do, `Err` to refuse (answered as is).
    pub fn change_planned(
        &self,
        plan: impl FnOnce(&ControlState) -> Result<Option<Request>, Response>,
    ) -> Response {
        let mut state = lock(&self.state);
        match plan(&state) {
            Ok(Some(request)) => self.commit(&mut state, &request),
            Ok(None) => Response::Ok {
                generation: state.generation(),
            },
            Err(response) => response,
        }
    }

    /// Installs what answers [`Request::Vrrp`] (once; false if one was
    /// installed already). Without it the answer lists no instance.
    pub fn set_vrrp_status(&self, hook: VrrpStatusHook) -> bool {
        self.vrrp.set(hook).is_ok()
    }

    /// Puts exactly `vips` on standby (VRRP) and publishes the snapshot
    /// when that changed anything; answers when every worker runs it.
    pub fn set_standby(&self, vips: Vec<std::net::IpAddr>) -> Response {
        let mut state = lock(&self.state);
        let mut next = (*state).clone();
        if !next.set_standby(vips) {
            return Response::Ok {
                generation: state.generation(),
            };
        }
        self.publish_next(&mut state, next, "VRRP standby change")
    }

    /// Publishes `next` (a copy of `state` with one change) and makes it the
    /// state in force once every worker runs it; answers an internal error
    /// naming `what` otherwise (and never reuses its generation).
    fn publish_next(&self, state: &mut ControlState, next: ControlState, what: &str) -> Response {
        let published = next.snapshot().map_err(|e| e.to_string()).and_then(|snap| {
            self.dataplane
                .publish(Arc::new(snap))
                .map_err(|e| e.to_string())
        });
        match published {
            Ok(()) => {
                *state = next;
                Response::Ok {
                    generation: state.generation(),
                }
            }
            Err(err) => {
                // A generation some workers may have seen is never reused.
                state.skip_generation_to(next.generation());
                Response::error(
                    ErrorKind::Internal,
                    format!("the data plane did not take the {what} ({err})"),
                )
            }
        }
    }

    /// Rotates the SYN cookie secret ([`ControlState::rotate_synproxy_key`])
    /// and publishes it; answers when every worker runs it.
    pub fn rotate_synproxy_key(&self) -> Response {
        let mut state = lock(&self.state);
        let mut next = (*state).clone();
        next.rotate_synproxy_key();
        self.publish_next(&mut state, next, "new SYN cookie secret")
    }

    /// Starts the control thread that rotates the SYN cookie secret every
    /// `period` ([`SYNPROXY_KEY_PERIOD`] in `lbd`); it holds the control
    /// weakly and stops at once when the returned handle goes.
    pub fn spawn_key_rotation(self: &Arc<Self>, period: Duration) -> io::Result<KeyRotation> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let control = Arc::downgrade(self);
        let handle = std::thread::Builder::new()
            .name("rvs-cookie-key".to_string())
            .spawn(move || loop {
                match rx.recv_timeout(period) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let Some(control) = control.upgrade() else {
                    return;
                };
                if let Response::Error { message, .. } = control.rotate_synproxy_key() {
                    eprintln!("lbd: the SYN cookie secret was not rotated: {message}");
                }
            })?;
        Ok(KeyRotation {
            stop: Some(tx),
            handle: Some(handle),
        })
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request) -> Response {
        match request {
            r if r.is_change() || matches!(r, Request::Batch { .. }) => self.change(r),
            Request::Announce | Request::Drain { .. } => match self.announce.get() {
                Some(hook) => hook(request),
                None => Response::error(
                    ErrorKind::Unsupported,
                    "this lbd has no route announcement or drain".to_string(),
                ),
            },
            Request::Reload => match self.reload.get() {
                Some(hook) => hook(self),
                None => Response::error(
                    ErrorKind::Unsupported,
                    "lbd runs without a configuration file: there is nothing to reload".to_string(),
                ),
            },
            Request::ListServices { service } => self.list_services(service.as_ref()),
            Request::ListConns => self.list_conns(),
            Request::Health => Response::Health {
                servers: lock(&self.health_view)
                    .as_ref()
                    .map(|view| view())
                    .unwrap_or_default(),
            },
            Request::StartDaemon { .. } | Request::StopDaemon { .. } | Request::ListDaemon => {
                self.sync_request(request)
            }
            Request::GetTimeouts => Response::Timeouts {
                timeouts: lock(&self.state).timeouts(),
            },
            Request::GetLaddrs { service } => self.get_laddrs(service.as_ref()),
            Request::Version => Response::Version {
                daemon: format!("rvs {}", env!("CARGO_PKG_VERSION")),
                protocol: PROTOCOL_VERSION,
                ipvs: IPVS_VERSION.to_string(),
            },
            Request::PortStats => Response::PortStats {
                ports: self
                    .dataplane
                    .port_stats()
                    .iter()
                    .enumerate()
                    .map(|(i, (name, s))| port_stats_info(i, name, s))
                    .collect(),
            },
            Request::DataplaneStats => Response::DataplaneStats {
                workers: self
                    .counters
                    .iter()
                    .enumerate()
                    .map(|(index, core)| {
                        // Workers are numbered by u16 (DataplaneHandle::workers).
                        worker_stats_info(u16::try_from(index).unwrap_or(u16::MAX), core)
                    })
                    .collect(),
            },
            Request::Vrrp => Response::Vrrp {
                instances: self.vrrp.get().map(|f| f()).unwrap_or_default(),
            },
            // Every change was handled by the first arm.
            other => Response::error(
                ErrorKind::Internal,
                format!("request {other:?} has no handler"),
            ),
        }
    }

    fn apply_error(err: &ApplyError) -> Response {
        Response::error(err.kind(), err.to_string())
    }

    /// Validates, publishes and commits a change, or changes nothing.
    fn change(&self, request: &Request) -> Response {
        let mut state = lock(&self.state);
        self.commit(&mut state, request)
    }

    /// Records the health checker's verdict on a real server and publishes
    /// the effective tables (see [`ControlState::set_health`]); answers as a
    /// change does. Refused (`NotFound`) once the server is no longer
    /// configured (the operator deleted it: its checks stop).
    pub fn set_health(
        &self,
        key: &protocol::ServiceKey,
        addr: &std::net::IpAddr,
        port: u16,
        health: Option<DestHealth>,
    ) -> Response {
        let mut state = lock(&self.state);
        self.commit_with(&mut state, |next| next.set_health(key, addr, port, health))
    }

    /// Puts a service's sorry server in force or takes it out (quorum),
    /// publishing the effective tables (see [`ControlState::set_sorry`]).
    pub fn set_sorry(
        &self,
        key: &protocol::ServiceKey,
        sorry: Option<&protocol::DestSpec>,
    ) -> Response {
        let mut state = lock(&self.state);
        self.commit_with(&mut state, |next| next.set_sorry(key, sorry))
    }

    /// Installs what answers [`Request::Health`], replacing the previous
    /// one (the checker restarts on reload). Without it the listing is
    /// empty.
    pub fn set_health_view(&self, hook: HealthHook) {
        *lock(&self.health_view) = Some(hook);
    }

    /// [`Control::change`] with the configuration lock held by the caller.
    fn commit(&self, state: &mut MutexGuard<'_, ControlState>, request: &Request) -> Response {
        self.commit_with(state, |next| next.apply(request))
    }

    /// Applies `change` to a copy of the state, publishes and commits it, or
    /// changes nothing.
    fn commit_with(
        &self,
        state: &mut MutexGuard<'_, ControlState>,
        change: impl FnOnce(&mut ControlState) -> Result<crate::ctl::apply::Changed, ApplyError>,
    ) -> Response {
        let mut next = (**state).clone();
        let changed = match change(&mut next) {
            Ok(changed) => changed,
            Err(err) => return Self::apply_error(&err),
        };
        if changed.config {
            let snap = match next.snapshot() {
                Ok(snap) => Arc::new(snap),
                Err(err) => return Self::apply_error(&err),
            };
            if let Err(err) = self.dataplane.publish(snap.clone()) {
                // Some workers may run the failed generation: publish the
                // previous configuration again under a newer number.
                state.skip_generation_to(next.generation());
                state.bump_generation();
                match state.snapshot() {
                    Ok(old) => {
                        let old = Arc::new(old);
                        match self.dataplane.publish(old.clone()) {
                            Ok(()) => {}
                            Err(again) => eprintln!(
                                "lbd: could not restore generation {}: {again}",
                                old.generation
                            ),
                        }
                    }
                    Err(again) => eprintln!("lbd: could not rebuild the configuration: {again}"),
                }
                return Response::error(
                    ErrorKind::Internal,
                    format!("the data plane did not take the new configuration ({err}); nothing was changed"),
                );
            }
        }
        **state = next;
        let generation = state.generation();
        // Zero before answering, still under the configuration lock, so a
        // listing that follows the answer never shows a slot's old counts.
        if !changed.zero_services.is_empty() || !changed.zero_dests.is_empty() {
            lock(&self.stats).zero(&self.counters, &changed.zero_services, &changed.zero_dests);
        }
        Response::Ok { generation }
    }

    fn list_services(&self, key: Option<&protocol::ServiceKey>) -> Response {
        let entries = {
            let state = lock(&self.state);
            match key {
                Some(key) => match state.service(key) {
                    Some(s) => vec![state.effective_service(s)],
                    None => return Self::apply_error(&ApplyError::NoSuchService),
                },
                None => state
                    .services()
                    .iter()
                    .map(|s| state.effective_service(s))
                    .collect(),
            }
        };
        let keeper = lock(&self.stats);
        let counters = &self.counters;
        let services = entries
            .into_iter()
            .map(|s| {
                let (stats, rates) = keeper.service(counters, s.id);
                ServiceInfo {
                    dests: s
                        .dests
                        .iter()
                        .map(|d| {
                            let (stats, rates) = keeper.dest(counters, d.id);
                            let conns = stats::dest_conns(counters, d.id);
                            DestInfo {
                                spec: d.spec.clone(),
                                active_conns: conns.active,
                                inactive_conns: conns.inactive,
                                persist_conns: conns.persist,
                                stats,
                                rates,
                            }
                        })
                        .collect(),
                    laddrs: s.laddrs.iter().map(laddr_info).collect(),
                    spec: s.spec,
                    stats,
                    rates,
                }
            })
            .collect();
        Response::Services {
            services,
            conn_table_size: self.conn_table_size,
        }
    }

    fn get_laddrs(&self, key: Option<&protocol::ServiceKey>) -> Response {
        let state = lock(&self.state);
        let services = match key {
            Some(key) => match state.service(key) {
                Some(s) => vec![s],
                None => return Self::apply_error(&ApplyError::ServiceNotDefined),
            },
            None => state.services().iter().collect(),
        };
        Response::Laddrs {
            services: services
                .into_iter()
                .map(|s| ServiceLaddrs {
                    service: s.spec.key,
                    laddrs: s.laddrs.iter().map(laddr_info).collect(),
                })
                .collect(),
        }
    }

    fn list_conns(&self) -> Response {
        let entries = self.dataplane.dump_conns();
        let (conns, truncated) = conns_within_frame(&entries, MAX_FRAME_LEN);
        Response::Conns { conns, truncated }
    }
}

fn laddr_info(l: &crate::ctl::apply::LaddrEntry) -> LaddrInfo {
    LaddrInfo {
        addr: l.addr,
        ifname: l.ifname.clone(),
        // Per-address counters are not kept by the data plane yet.
        port_conflicts: 0,
        conns: 0,
    }
}

/// One worker's counters as listed by `DataplaneStats`: relaxed reads (the
/// worker is the only writer; each value is a recent one, the set is not a
/// consistent snapshot), every drop reason in [`DropReason::ALL`] order.
pub fn worker_stats_info(worker: u16, core: &CoreCounters) -> WorkerStatsInfo {
    WorkerStatsInfo {
        worker,
        rx_packets: core.rx_packets.load(Ordering::Relaxed),
        tx_packets: core.tx_packets.load(Ordering::Relaxed),
        steered_in: core.steered_in.load(Ordering::Relaxed),
        steered_out: core.steered_out.load(Ordering::Relaxed),
        conns_created: core.conns_created.load(Ordering::Relaxed),
        conns_expired: core.conns_expired.load(Ordering::Relaxed),
        conns_now: core.conns_now.load(Ordering::Relaxed),
        to_kernel: core
            .to_kernel
            .load(Ordering::Relaxed)
            .saturating_add(core.to_kernel_path.load(Ordering::Relaxed)),
        from_kernel: core.from_kernel.load(Ordering::Relaxed),
        kernel_drop: core
            .kernel_drop
            .load(Ordering::Relaxed)
            .saturating_add(core.kernel_drop_path.load(Ordering::Relaxed)),
        synproxy: crate::ctl::protocol::SynproxyStats {
            syn_cookies_sent: core.syn_cookies_sent.load(Ordering::Relaxed),
            acks_valid: core.synproxy_acks_valid.load(Ordering::Relaxed),
            acks_invalid: core.synproxy_acks_invalid.load(Ordering::Relaxed),
            established: core.synproxy_established.load(Ordering::Relaxed),
            syn_retransmits: core.synproxy_syn_retransmits.load(Ordering::Relaxed),
            held: core.synproxy_held.load(Ordering::Relaxed),
            held_replayed: core.synproxy_held_replayed.load(Ordering::Relaxed),
            held_full: core.synproxy_held_full.load(Ordering::Relaxed),
            held_timeout: core.synproxy_held_timeout.load(Ordering::Relaxed),
        },
        drops: DropReason::ALL
            .iter()
            .map(|&reason| DropCount {
                reason: reason.name().to_string(),
                packets: core.drops_of(reason),
            })
            .collect(),
    }
}

/// A worker's connection entry as listed; `None` for protocols the listing
/// cannot name.
pub fn conn_info(e: &ConnEntry) -> Option<ConnInfo> {
    let proto = match e.proto {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        _ => return None,
    };
    Some(ConnInfo {
        proto,
        state: e.state.to_string(),
        expires_ms: e.expires_ms,
        client: SocketAddr::new(e.client.0, e.client.1),
        vaddr: SocketAddr::new(e.virt.0, e.virt.1),
        daddr: SocketAddr::new(e.dest.0, e.dest.1),
        laddr: e.local.map(|(a, p)| SocketAddr::new(a, p)),
        template: e.template,
        pe_name: None,
        pe_data: None,
        synced: e.synced,
    })
}

/// Bytes the `Conns` envelope needs around its entries (generous).
const CONNS_ENVELOPE_BYTES: usize = 256;

/// Converts `entries` to `ConnInfo`s, stopping before the encoded response
/// would exceed `max_frame` bytes; returns whether it stopped early.
pub fn conns_within_frame(entries: &[ConnEntry], max_frame: usize) -> (Vec<ConnInfo>, bool) {
    let budget = max_frame.saturating_sub(CONNS_ENVELOPE_BYTES);
    let mut used = 0usize;
    let mut out = Vec::new();
    for e in entries {
        let Some(info) = conn_info(e) else { continue };
        // Each entry costs its JSON plus a separating comma.
        let len = serde_json::to_vec(&info)
            .map(|v| v.len() + 1)
            .unwrap_or(usize::MAX);
        if used.saturating_add(len) > budget {
            return (out, true);
        }
        used += len;
        out.push(info);
    }
    (out, false)
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another daemon answers on the socket.
    #[error("lbd already running on {}", .path.display())]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The path exists and is not a socket.
    #[error("{} exists and is not a socket; not replacing it", .path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// An OS call failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A bound, listening control socket. Dropping it removes the socket file
/// (if it is still the one it created).
pub struct ListeningSocket {
    listener: UnixListener,
    path: PathBuf,
    identity: (u64, u64),
}

impl ListeningSocket {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ListeningSocket {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Creates the control socket at `path`: replaces a stale socket file,
/// refuses to steal a live one, creates a missing parent directory, binds
/// with mode 0600.
pub fn bind_socket(path: &Path) -> Result<ListeningSocket, ServerError> {
    let io_err = |what: &'static str, source: io::Error| ServerError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(ServerError::AlreadyRunning {
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| io_err("cannot remove stale socket", e))?;
            }
            Err(e) => return Err(io_err("cannot probe existing socket", e)),
        },
        Ok(_) => {
            return Err(ServerError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot inspect", e)),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_err("cannot create the socket's directory for", e))?;
        }
    }
    let listener = {
        let _umask = UmaskGuard::set(0o177);
        UnixListener::bind(path).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                ServerError::AlreadyRunning {
                    path: path.to_path_buf(),
                }
            } else {
                io_err("cannot bind", e)
            }
        })?
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_err("cannot inspect", e))?;
    let socket = ListeningSocket {
        listener,
        path: path.to_path_buf(),
        identity: (meta.dev(), meta.ino()),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("cannot chmod", e))?;
    Ok(socket)
}

/// Listener settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Most clients served at once. When all slots are taken, a new client
    /// takes the slot of the client that has waited longest without a
    /// request being answered (idle, or still sending one); it is refused
    /// only when every slot is busy answering.
    pub max_clients: usize,
    /// A client idle this long between requests is disconnected; also bounds
    /// each write.
    pub io_timeout: Duration,
    /// Once a request's first byte arrived, the whole frame must arrive
    /// within this time (a client that trickles bytes is disconnected).
    pub request_timeout: Duration,
    /// Most bytes of request frames held at once over all clients beyond
    /// the first 64 KiB of each (which every client has, so ordinary
    /// requests always get through); a request that would go beyond it is
    /// refused and its client closed.
    pub request_memory: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_clients: 64,
            io_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            request_memory: 2 * MAX_FRAME_LEN,
        }
    }
}

/// A client's phase, for eviction: [`BUSY`] while its request is being
/// answered, else the time (ms since the server started, at least 1) since
/// which it has been idle or sending a request.
const BUSY: u64 = 0;

/// One served client, as the accept loop sees it.
struct ClientSlot {
    stream: UnixStream,
    phase: Arc<AtomicU64>,
}

/// Clients being served, for the limit and for shutdown.
struct Clients {
    active: AtomicUsize,
    rejecting: AtomicUsize,
    next_id: AtomicU64,
    streams: Mutex<HashMap<u64, ClientSlot>>,
    /// Bytes of request frames held now, over all clients.
    request_bytes: AtomicUsize,
    epoch: Instant,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            active: AtomicUsize::new(0),
            rejecting: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            streams: Mutex::new(HashMap::new()),
            request_bytes: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Clients {
    fn now_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    /// Disconnects the client that has waited longest without being
    /// answered; false when every client is busy being answered.
    fn evict_oldest_waiting(&self) -> bool {
        let streams = lock(&self.streams);
        let oldest = streams
            .values()
            .filter(|c| c.phase.load(Ordering::Acquire) != BUSY)
            .min_by_key(|c| c.phase.load(Ordering::Acquire));
        match oldest {
            Some(c) => {
                // Its thread sees the stream end and frees the slot.
                c.phase.store(BUSY, Ordering::Release);
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
                true
            }
            None => false,
        }
    }
}

/// The running listener.
pub struct Server {
    socket: Option<ListeningSocket>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    clients: Arc<Clients>,
}

impl Server {
    /// Starts accepting clients on `socket`, answering with `control`.
    pub fn start(
        socket: ListeningSocket,
        control: Arc<Control>,
        options: ServerOptions,
    ) -> io::Result<Server> {
        let listener = socket.listener.try_clone()?;
        // Polled, then accepted: never blocks in accept(2).
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let clients = Arc::new(Clients::default());
        let accept = {
            let stop = stop.clone();
            let clients = clients.clone();
            std::thread::Builder::new()
                .name("rvs-ctl-accept".to_string())
                .spawn(move || accept_loop(listener, control, options, stop, clients))?
        };
        Ok(Server {
            socket: Some(socket),
            stop,
            accept: Some(accept),
            clients,
        })
    }

    /// The socket path.
    pub fn path(&self) -> Option<&Path> {
        self.socket.as_ref().map(ListeningSocket::path)
    }

    /// Clients being served now.
    pub fn active_clients(&self) -> usize {
        self.clients.active.load(Ordering::Acquire)
    }

    /// Bytes of request frames held now, over all clients.
    pub fn pending_request_bytes(&self) -> usize {
        self.clients.request_bytes.load(Ordering::Acquire)
    }

    /// Stops accepting, disconnects the clients (waiting up to 0.3 s for
    /// their threads) and removes the socket file. Needs neither the socket
    /// file nor a connection: it returns within about 0.4 s.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        // The accept loop looks at the flag between bounded waits: no
        // connection is needed to wake it (the socket file may be gone).
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
        for client in lock(&self.clients.streams).values() {
            let _ = client.stream.shutdown(std::net::Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_millis(300);
        while self.clients.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.socket.take();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept.is_some() || self.socket.is_some() {
            self.stop_now();
        }
    }
}

fn accept_loop(
    listener: UnixListener,
    control: Arc<Control>,
    options: ServerOptions,
    stop: Arc<AtomicBool>,
    clients: Arc<Clients>,
) {
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match crate::sys::wait_readable(&listener, ACCEPT_POLL) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                eprintln!("lbd: waiting on the control socket failed: {e}");
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        let stream = match listener.accept().map(|(s, _)| s) {
            Ok(stream) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                eprintln!("lbd: accept on the control socket failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if clients.active.load(Ordering::Acquire) >= options.max_clients
            && !clients.evict_oldest_waiting()
        {
            reject(stream, options.max_clients, &clients);
            continue;
        }
        let id = clients.next_id.fetch_add(1, Ordering::Relaxed);
        let phase = Arc::new(AtomicU64::new(clients.now_ms()));
        if let Ok(clone) = stream.try_clone() {
            lock(&clients.streams).insert(
                id,
                ClientSlot {
                    stream: clone,
                    phase: phase.clone(),
                },
            );
        }
        clients.active.fetch_add(1, Ordering::AcqRel);
        let control = control.clone();
        let thread_clients = clients.clone();
        let spawned = std::thread::Builder::new()
            .name("rvs-ctl-client".to_string())
            .spawn(move || {
                serve_bounded(stream, &control, options, &thread_clients, &phase);
                lock(&thread_clients.streams).remove(&id);
                thread_clients.active.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            eprintln!("lbd: cannot start a client thread: {e}");
            lock(&clients.streams).remove(&id);
            clients.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Most connections being turned away at once; beyond it they are closed
/// without an answer.
const MAX_REJECTING: usize = 16;

/// Answers a connection beyond the client limit with an error. The client's
/// request is read first (briefly, in a short-lived thread) so that closing
/// does not break its write; at most [`MAX_REJECTING`] such threads run.
fn reject(stream: UnixStream, limit: usize, clients: &Arc<Clients>) {
    if clients.rejecting.fetch_add(1, Ordering::AcqRel) >= MAX_REJECTING {
        clients.rejecting.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let thread_clients = clients.clone();
    let spawned = std::thread::Builder::new()
        .name("rvs-ctl-reject".to_string())
        .spawn(move || {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            // Read (at most a chunk of) the request without buffering it.
            let mut sink = [0u8; 4096];
            let mut left = READ_CHUNK;
            while left > 0 {
                match std::io::Read::read(&mut stream, &mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
                if stream
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .is_err()
                {
                    break;
                }
            }
            let _ = protocol::write_response(
                &mut stream,
                &Response::error(
                    ErrorKind::NoSpace,
                    format!("lbd is serving {limit} clients already; try again later"),
                ),
            );
            thread_clients.rejecting.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        clients.rejecting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sends `response`; a response too large for a frame is replaced by an
/// error saying so. Returns false when the connection is unusable.
fn send(stream: &mut UnixStream, response: &Response) -> bool {
    match protocol::write_response(stream, response) {
        Ok(()) => true,
        Err(ProtocolError::TooLarge { len, max }) => protocol::write_response(
            stream,
            &Response::error(
                ErrorKind::Internal,
                format!("the answer ({len} bytes) exceeds the {max}-byte frame limit"),
            ),
        )
        .is_ok(),
        Err(_) => false,
    }
}

/// Serves one client until it closes, errs, idles out or sends an
/// oversized frame (no limits on time per request or memory: for callers
/// that own the stream, e.g. tests; the listener uses the bounded form).
pub fn serve_client(stream: UnixStream, control: &Control, options: ServerOptions) {
    let clients = Clients::default();
    let options = ServerOptions {
        request_memory: usize::MAX,
        request_timeout: Duration::MAX,
        ..options
    };
    serve_bounded(stream, control, options, &clients, &AtomicU64::new(1));
}

/// Why a bounded read of a request frame ended.
enum ReadEnd {
    /// The frame's payload.
    Frame(Vec<u8>),
    /// A protocol error to answer (and, unless malformed, close).
    Protocol(ProtocolError),
    /// Over the memory budget: answer and close.
    NoMemory(usize),
}

/// Holds `n` bytes of the shared request budget until dropped.
struct Reservation<'a> {
    total: &'a AtomicUsize,
    n: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Reads granularity: a frame's buffer grows this much at a time, so a
/// client that announces 16 MiB and sends nothing holds almost nothing.
const READ_CHUNK: usize = 64 * 1024;

/// Reads one request frame: waits up to `io_timeout` for its first byte,
/// then up to `request_timeout` for all of it; the payload is taken from
/// the shared budget as it arrives.
fn read_frame_bounded(
    stream: &mut UnixStream,
    options: &ServerOptions,
    budget: &AtomicUsize,
) -> ReadEnd {
    use std::io::Read;
    let io = |e: io::Error| ReadEnd::Protocol(ProtocolError::Io(e));
    let mut header = [0u8; 4];
    let mut filled = 0;
    let _ = stream.set_read_timeout(Some(options.io_timeout));
    let mut deadline = None;
    // Sets the read timeout to what is left of the request's time.
    let arm = |stream: &UnixStream, deadline: Instant| -> Result<(), io::Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not received in time",
            ));
        }
        stream.set_read_timeout(Some(left))
    };
    while filled < header.len() {
        if let Some(d) = deadline {
            if let Err(e) = arm(stream, d) {
                return io(e);
            }
        }
        match stream.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return ReadEnd::Protocol(ProtocolError::Closed),
            Ok(0) => {
                return io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame header",
                ))
            }
            Ok(n) => {
                filled += n;
                if deadline.is_none() {
                    deadline = Instant::now().checked_add(options.request_timeout);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return io(e),
        }
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return ReadEnd::Protocol(ProtocolError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    if len == 0 {
        return ReadEnd::Protocol(ProtocolError::Malformed("empty frame".to_string()));
    }
    let mut payload = Vec::new();
    let mut held = Reservation {
        total: budget,
        n: 0,
    };
    while payload.len() < len {
        let want = (len - payload.len()).min(READ_CHUNK);
        if payload.len() + want > payload.capacity() {
            // Grow by doubling (no quadratic copying), never beyond the
            // frame, and charge what is allocated, not what is filled.
            let cap = (payload.capacity() * 2).max(READ_CHUNK).min(len);
            // The first chunk is every client's own (at most max_clients
            // of them): an ordinary request always gets through, only
            // the part of big frames beyond it is drawn from the budget.
            let more = cap.saturating_sub(payload.capacity().max(READ_CHUNK));
            if more > 0 {
                let prev = budget.fetch_add(more, Ordering::AcqRel);
                held.n += more;
                if prev.saturating_add(more) > options.request_memory {
                    return ReadEnd::NoMemory(len);
                }
            }
            payload.reserve_exact(cap - payload.len());
        }
        let start = payload.len();
        payload.resize(start + want, 0);
        let mut got = 0;
        while got < want {
            if let Some(d) = deadline {
                if let Err(e) = arm(stream, d) {
                    return io(e);
                }
            }
            match stream.read(&mut payload[start + got..start + want]) {
                Ok(0) => {
                    return io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stream ended inside a frame",
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return io(e),
            }
        }
    }
    ReadEnd::Frame(payload)
}

/// Serves one client with the listener's bounds: time per request, memory
/// over all clients; marks the client busy while its request is answered.
fn serve_bounded(
    mut stream: UnixStream,
    control: &Control,
    options: ServerOptions,
    clients: &Clients,
    phase: &AtomicU64,
) {
    let _ = stream.set_write_timeout(Some(options.io_timeout));
    loop {
        let read = read_frame_bounded(&mut stream, &options, &clients.request_bytes);
        if phase.swap(BUSY, Ordering::AcqRel) == BUSY {
            // Evicted while waiting.
            return;
        }
        let decoded = match read {
            ReadEnd::Frame(payload) => protocol::decode_request(&payload),
            ReadEnd::Protocol(err) => Err(err),
            ReadEnd::NoMemory(len) => {
                let _ = send(
                    &mut stream,
                    &Response::error(
                        ErrorKind::NoSpace,
                        format!(
                            "lbd holds too many pending requests to take one of {len} bytes; \
                             try again later"
                        ),
                    ),
                );
                return;
            }
        };
        match decoded {
            Ok(request) => {
                let response = control.handle(&request);
                if !send(&mut stream, &response) {
                    return;
                }
            }
            Err(err @ (ProtocolError::Malformed(_) | ProtocolError::BadVersion { .. })) => {
                // The frame was read whole: answer and go on.
                let Some(response) = Response::for_protocol_error(&err) else {
                    return;
                };
                if !send(&mut stream, &response) {
                    return;
                }
            }
            Err(err @ ProtocolError::TooLarge { .. }) => {
                // The payload is still in the stream: answer and close.
                if let Some(response) = Response::for_protocol_error(&err) {
                    let _ = send(&mut stream, &response);
                }
                return;
            }
            Err(ProtocolError::Closed) | Err(ProtocolError::Io(_)) => return,
        }
        // Waiting again: evictable from now on, oldest first.
        if phase
            .compare_exchange(BUSY, clients.now_ms(), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Fwd;
    use crate::ctl::apply::Topology;
    use crate::ctl::protocol::{DestSpec, ServiceKey, ServiceSpec, Timeouts};
    use crate::dataplane::counters::bump;
    use crate::dataplane::runtime::{NoDataplane, RuntimeError};
    use crate::dataplane::snapshot::{Settings, Snapshot};
    use std::io::{Read, Write};
    use std::net::IpAddr;

    /// A data plane with one fake worker whose publish can be made to fail.
    struct FakeDataplane {
        counters: Vec<Arc<CoreCounters>>,
        fail: AtomicBool,
        published: Mutex<Vec<u64>>,
        conns: Vec<ConnEntry>,
    }

    impl FakeDataplane {
        fn new(conns: Vec<ConnEntry>) -> Arc<FakeDataplane> {
            Arc::new(FakeDataplane {
                counters: vec![Arc::new(CoreCounters::new())],
                fail: AtomicBool::new(false),
                published: Mutex::new(Vec::new()),
                conns,
            })
        }
    }

    impl DataplaneHandle for FakeDataplane {
        fn workers(&self) -> u16 {
            1
        }
        fn publish(&self, snap: Arc<Snapshot>) -> Result<(), RuntimeError> {
            lock(&self.published).push(snap.generation);
            if self.fail.load(Ordering::SeqCst) {
                return Err(RuntimeError::NoAck {
                    generation: snap.generation,
                    workers: vec![0],
                    timeout: Duration::from_millis(1),
                });
            }
            Ok(())
        }
        fn counters(&self) -> Vec<Arc<CoreCounters>> {
            self.counters.clone()
        }
        fn dump_conns(&self) -> Vec<ConnEntry> {
            self.conns.clone()
        }
        fn stop(&self) {}
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn web() -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            addr: ip("10.0.0.1"),
            port: 80,
        }
    }

    fn control_with(dp: Arc<dyn DataplaneHandle>) -> Control {
        let topology = Topology {
            workers: dp.workers(),
            ..Topology::default()
        };
        let state = ControlState::new(topology, Settings::default()).expect("state");
        Control::new(
            state,
            dp,
            ControlOptions {
                conn_capacity: 1000,
            },
        )
    }

    #[test]
    fn a_secret_rotation_makes_a_new_cookie_secret_and_keeps_the_one_before() {
        let mut s = ControlState::default();
        let before = s.snapshot().expect("snapshot");
        assert_eq!(before.synproxy_key, before.synproxy_key_prev);
        s.rotate_synproxy_key();
        let after = s.snapshot().expect("snapshot");
        assert_ne!(after.synproxy_key, before.synproxy_key, "a fresh secret");
        assert_eq!(
            after.synproxy_key_prev, before.synproxy_key,
            "the old one kept"
        );
        assert!(after.generation > before.generation);
        s.rotate_synproxy_key();
        let again = s.snapshot().expect("snapshot");
        assert_eq!(again.synproxy_key_prev, after.synproxy_key);
        assert_ne!(again.synproxy_key, before.synproxy_key);
    }

    #[test]
    fn the_rotation_thread_publishes_new_secrets_each_period_and_stops_at_once() {
        let dp = FakeDataplane::new(Vec::new());
        let control = Arc::new(control_with(dp.clone()));
        let first = control.state().snapshot().expect("snapshot").synproxy_key;
        let rotation = control
            .spawn_key_rotation(Duration::from_millis(20))
            .expect("thread");
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&dp.published).len() < 2 {
            assert!(Instant::now() < deadline, "no rotation within 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let start = Instant::now();
        drop(rotation);
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "stops at once"
        );
        let published = lock(&dp.published).len();
        let snap = control.state().snapshot().expect("snapshot");
        assert_ne!(snap.synproxy_key, first);
        assert_ne!(
            snap.synproxy_key_prev, first,
            "two rotations: the first secret is gone"
        );
        assert_ne!(snap.synproxy_key, snap.synproxy_key_prev);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            lock(&dp.published).len(),
            published,
            "no rotation after the stop"
        );
    }

    fn add_web(control: &Control) {
        let r = control.handle(&Request::AddService {
            service: ServiceSpec::new(web()),
        });
        assert_eq!(r, Response::Ok { generation: 1 });
    }

    fn masq(addr: &str) -> DestSpec {
        DestSpec {
            fwd: Fwd::Nat,
            ..DestSpec::new(ip(addr), 80)
        }
    }

    #[test]
    fn changes_answer_ok_with_the_published_generation() {
        let dp = FakeDataplane::new(Vec::new());
        let control = control_with(dp.clone());
        add_web(&control);
        let r = control.handle(&Request::AddDest {
            service: web(),
            dest: masq("192.168.10.1"),
        });
        assert_eq!(r, Response::Ok { generation: 2 });
        assert_eq!(*lock(&dp.published), vec![1, 2]);
        // -Z changes nothing in the configuration: same generation, no publish.
        let r = control.handle(&Request::Zero { service: None });
        assert_eq!(r, Response::Ok { generation: 2 });
        assert_eq!(lock(&dp.published).len(), 2);
        let r = control.handle(&Request::AddService {
            service: ServiceSpec::new(web()),
        });
        assert_eq!(
            r,
            Response::error(ErrorKind::Exists, "Service already exists")
        );
    }

    #[test]
    fn failed_publish_rolls_back_and_republishes_the_old_configuration() {
        let dp = FakeDataplane::new(Vec::new());
        let control = control_with(dp.clone());
        add_web(&control);
        dp.fail.store(true, Ordering::SeqCst);
        let r = control.handle(&Request::AddDest {
            service: web(),
            dest: masq("192.168.10.1"),
        });
        match r {
            Response::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::Internal);
                assert!(message.contains("nothing was changed"), "{message}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(control
            .state()
            .service(&web())
            .expect("svc")
            .dests
            .is_empty());
        // Generation 2 failed, 3 re-published the old table.
        assert_eq!(*lock(&dp.published), vec![1, 2, 3]);
        dp.fail.store(false, Ordering::SeqCst);
        let r = control.handle(&Request::AddDest {
            service: web(),
            dest: masq("192.168.10.1"),
        });
        assert_eq!(
            r,
            Response::Ok { generation: 4 },
            "numbers are never reused"
        );
    }

    #[test]
    fn listings_show_specs_counters_and_table_size() {
        let dp = FakeDataplane::new(Vec::new());
        let control = control_with(dp.clone());
        add_web(&control);
        control.handle(&Request::AddDest {
            service: web(),
            dest: masq("192.168.10.1"),
        });
        let state = control.state();
        let svc = state.service(&web()).expect("svc");
        let core = &dp.counters[0];
        bump(&core.services[usize::from(svc.id)].conns, 5);
        bump(&core.dests[usize::from(svc.dests[0].id)].inbytes, 1234);
        core.dest_conns[usize::from(svc.dests[0].id)]
            .active
            .store(3, Ordering::Relaxed);
        match control.handle(&Request::ListServices { service: None }) {
            Response::Services {
                services,
                conn_table_size,
            } => {
                assert_eq!(conn_table_size, 1000);
                assert_eq!(services.len(), 1);
                assert_eq!(services[0].stats.conns, 5);
                assert_eq!(services[0].dests[0].stats.inbytes, 1234);
                assert_eq!(services[0].dests[0].active_conns, 3);
                assert_eq!(services[0].dests[0].spec.fwd, Fwd::Nat);
            }
            other => panic!("unexpected {other:?}"),
        }
        // -Z zeroes the counters but not the connection counts.
        control.handle(&Request::Zero {
            service: Some(web()),
        });
        match control.handle(&Request::ListServices {
            service: Some(web()),
        }) {
            Response::Services { services, .. } => {
                assert_eq!(services[0].stats.conns, 0);
                assert_eq!(services[0].dests[0].stats.inbytes, 0);
                assert_eq!(services[0].dests[0].active_conns, 3);
            }
            other => panic!("unexpected {other:?}"),
        }
        let missing = ServiceKey { port: 81, ..web() };
        assert_eq!(
            control.handle(&Request::ListServices {
                service: Some(missing)
            }),
            Response::error(ErrorKind::NotFound, "No such service")
        );
        assert_eq!(
            control.handle(&Request::GetLaddrs {
                service: Some(missing)
            }),
            Response::error(ErrorKind::NotFound, "Service not defined")
        );
        assert_eq!(
            control.handle(&Request::GetTimeouts),
            Response::Timeouts {
                timeouts: Timeouts {
                    tcp: 900,
                    tcpfin: 120,
                    udp: 300
                }
            }
        );
    }

    #[test]
    fn dataplane_stats_list_every_worker_and_every_drop_reason() {
        let dp = Arc::new(FakeDataplane {
            counters: vec![Arc::new(CoreCounters::new()), Arc::new(CoreCounters::new())],
            fail: AtomicBool::new(false),
            published: Mutex::new(Vec::new()),
            conns: Vec::new(),
        });
        let control = control_with(dp.clone());
        let (first, second) = (&dp.counters[0], &dp.counters[1]);
        bump(&first.rx_packets, 100);
        bump(&first.tx_packets, 90);
        bump(&first.steered_out, 7);
        bump(&second.steered_in, 7);
        bump(&second.conns_created, 4);
        bump(&second.conns_expired, 1);
        bump(&second.conns_now, 3);
        first.count_drop(DropReason::TableFull);
        first.count_drop(DropReason::TableFull);
        second.count_drop(DropReason::LaddrExhausted);
        second.count_drop(DropReason::Conflict);

        let Response::DataplaneStats { workers } = control.handle(&Request::DataplaneStats) else {
            panic!("not a DataplaneStats answer");
        };
        assert_eq!(workers.len(), 2);
        assert_eq!(
            (
                workers[0].worker,
                workers[0].rx_packets,
                workers[0].tx_packets
            ),
            (0, 100, 90)
        );
        assert_eq!((workers[0].steered_in, workers[0].steered_out), (0, 7));
        assert_eq!(workers[1].worker, 1);
        assert_eq!((workers[1].steered_in, workers[1].steered_out), (7, 0));
        assert_eq!(
            (
                workers[1].conns_created,
                workers[1].conns_expired,
                workers[1].conns_now
            ),
            (4, 1, 3)
        );
        let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        for w in &workers {
            let listed: Vec<&str> = w.drops.iter().map(|d| d.reason.as_str()).collect();
            assert_eq!(
                listed, names,
                "every reason, in counter order, zeros included"
            );
        }
        let drops = |w: &WorkerStatsInfo| -> Vec<(String, u64)> {
            w.drops
                .iter()
                .filter(|d| d.packets > 0)
                .map(|d| (d.reason.clone(), d.packets))
                .collect()
        };
        assert_eq!(drops(&workers[0]), vec![("table_full".to_string(), 2)]);
        assert_eq!(
            drops(&workers[1]),
            vec![
                ("laddr_exhausted".to_string(), 1),
                ("conflict".to_string(), 1)
            ]
        );
    }

    #[test]
    fn a_reused_slot_starts_from_zero() {
        let dp = FakeDataplane::new(Vec::new());
        let control = control_with(dp.clone());
        add_web(&control);
        // Pretend a previous owner of every dest slot left traffic behind.
        for t in dp.counters[0].dests.iter() {
            bump(&t.inpkts, 9);
        }
        control.handle(&Request::AddDest {
            service: web(),
            dest: masq("192.168.10.1"),
        });
        match control.handle(&Request::ListServices { service: None }) {
            Response::Services { services, .. } => {
                assert_eq!(services[0].dests[0].stats.inpkts, 0);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn conn(i: u16) -> ConnEntry {
        ConnEntry {
            proto: 6,
            state: "ESTABLISHED",
            expires_ms: 899_000,
            client: (ip("203.0.113.7"), 10_000 + i),
            virt: (ip("10.0.0.1"), 80),
            dest: (ip("192.168.10.1"), 80),
            local: None,
            template: false,
            fwd: crate::conntrack::Fwd::Nat,
            worker: 0,
            synced: false,
        }
    }

    #[test]
    fn connection_listing_is_capped_to_one_frame() {
        let entries: Vec<ConnEntry> = (0..100).map(conn).collect();
        let (all, truncated) = conns_within_frame(&entries, MAX_FRAME_LEN);
        assert_eq!(all.len(), 100);
        assert!(!truncated);
        let one = serde_json::to_vec(&all[0]).expect("json").len() + 1;
        let (some, truncated) = conns_within_frame(&entries, CONNS_ENVELOPE_BYTES + 10 * one);
        assert!(truncated);
        assert_eq!(some.len(), 10);
        // The capped answer encodes within the limit.
        let bytes = protocol::encode_response(&Response::Conns {
            conns: some,
            truncated,
        })
        .expect("encode");
        assert!(bytes.len() <= CONNS_ENVELOPE_BYTES + 10 * one);
        let dp = FakeDataplane::new(entries);
        let control = control_with(dp);
        match control.handle(&Request::ListConns) {
            Response::Conns { conns, truncated } => {
                assert_eq!(conns.len(), 100);
                assert!(!truncated);
                assert_eq!(conns[3].client, "203.0.113.7:10003".parse().expect("addr"));
                assert_eq!(conns[3].state, "ESTABLISHED");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn temp_socket() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lbd.sock");
        (dir, path)
    }

    fn start(path: &Path, options: ServerOptions) -> Server {
        let control = Arc::new(control_with(Arc::new(NoDataplane::default())));
        Server::start(bind_socket(path).expect("bind"), control, options).expect("start")
    }

    #[test]
    fn socket_is_private_live_ones_are_not_stolen_stale_ones_are_replaced() {
        let (_dir, path) = temp_socket();
        let server = start(&path, ServerOptions::default());
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        match bind_socket(&path) {
            Err(err @ ServerError::AlreadyRunning { .. }) => {
                assert_eq!(
                    err.to_string(),
                    format!("lbd already running on {}", path.display())
                );
            }
            other => panic!("expected AlreadyRunning, got {:?}", other.map(|_| ())),
        }
        server.shutdown();
        assert!(!path.exists(), "socket removed at shutdown");
        // A stale socket file: bound, listener gone.
        let stale = UnixListener::bind(&path).expect("stale bind");
        drop(stale);
        assert!(path.exists());
        let server = start(&path, ServerOptions::default());
        let r =
            protocol::call_unix(&path, &Request::Version, Duration::from_secs(5)).expect("call");
        assert!(matches!(
            r,
            Response::Version {
                protocol: PROTOCOL_VERSION,
                ..
            }
        ));
        server.shutdown();
        // Not a socket: left alone.
        std::fs::write(&path, b"precious").expect("write");
        assert!(matches!(
            bind_socket(&path),
            Err(ServerError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&path).expect("read"), b"precious");
    }

    fn read_response(stream: &mut UnixStream) -> Response {
        protocol::read_response(stream).expect("response")
    }

    #[test]
    fn bad_frames_get_error_responses_and_change_nothing() {
        let (_dir, path) = temp_socket();
        let server = start(&path, ServerOptions::default());
        let mut s = UnixStream::connect(&path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // Malformed JSON, then a wrong version, on one connection.
        protocol::write_frame(&mut s, b"{not json").expect("write");
        assert!(matches!(
            read_response(&mut s),
            Response::Error {
                kind: ErrorKind::Malformed,
                ..
            }
        ));
        protocol::write_frame(&mut s, br#"{"version":9,"request":{"type":"clear"}}"#)
            .expect("write");
        assert!(matches!(
            read_response(&mut s),
            Response::Error {
                kind: ErrorKind::BadVersion,
                ..
            }
        ));
        // The connection still works.
        protocol::write_request(&mut s, &Request::GetTimeouts).expect("write");
        assert!(matches!(read_response(&mut s), Response::Timeouts { .. }));
        // An oversized frame: error, then the daemon closes the connection.
        s.write_all(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes())
            .expect("write");
        assert!(matches!(
            read_response(&mut s),
            Response::Error {
                kind: ErrorKind::Malformed,
                ..
            }
        ));
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).expect("eof"), 0);
        server.shutdown();
    }

    #[test]
    fn concurrent_clients_each_get_their_own_generation() {
        let (_dir, path) = temp_socket();
        let control = Arc::new(control_with(FakeDataplane::new(Vec::new())));
        let server = Server::start(
            bind_socket(&path).expect("bind"),
            control.clone(),
            ServerOptions::default(),
        )
        .expect("start");
        add_web(&control);
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut generations = Vec::new();
                    for i in 0..10u8 {
                        let r = protocol::call_unix(
                            &path,
                            &Request::AddDest {
                                service: web(),
                                dest: masq(&format!("192.168.{t}.{i}")),
                            },
                            Duration::from_secs(10),
                        )
                        .expect("call");
                        match r {
                            Response::Ok { generation } => generations.push(generation),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    generations
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("client thread"))
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (2..=81).collect::<Vec<u64>>(),
            "one generation per change"
        );
        assert_eq!(
            control.state().service(&web()).expect("svc").dests.len(),
            80
        );
        server.shutdown();
    }

    fn wait_clients(server: &Server, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.active_clients() != n {
            assert!(
                Instant::now() < deadline,
                "{} clients, expected {n}",
                server.active_clients()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Reads until the server closes the stream; false if it stays open
    /// past `within`.
    fn closed_within(stream: &mut UnixStream, within: Duration) -> bool {
        stream.set_read_timeout(Some(within)).expect("timeout");
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    #[test]
    fn with_every_slot_taken_by_idle_clients_lbctl_still_gets_through() {
        let (_dir, path) = temp_socket();
        let server = start(
            &path,
            ServerOptions {
                max_clients: 2,
                ..ServerOptions::default()
            },
        );
        let mut hold: Vec<UnixStream> = Vec::new();
        for n in 1..=2 {
            hold.push(UnixStream::connect(&path).expect("connect"));
            wait_clients(&server, n);
        }
        let r =
            protocol::call_unix(&path, &Request::Version, Duration::from_secs(5)).expect("answer");
        assert!(matches!(r, Response::Version { .. }), "{r:?}");
        // The oldest idle client gave its slot; the younger one is kept.
        assert!(
            closed_within(&mut hold[0], Duration::from_secs(2)),
            "oldest idle client evicted"
        );
        hold[1]
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut b = [0u8; 1];
        assert!(
            matches!(hold[1].read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "younger client kept"
        );
        server.shutdown();
    }

    #[test]
    fn a_client_trickling_a_request_is_cut_off_at_the_request_timeout() {
        let (_dir, path) = temp_socket();
        let server = start(
            &path,
            ServerOptions {
                request_timeout: Duration::from_millis(300),
                ..ServerOptions::default()
            },
        );
        let mut s = UnixStream::connect(&path).expect("connect");
        let t0 = Instant::now();
        // One byte of the header now, one more every 100 ms: each read is
        // quick, the request as a whole is not.
        let mut cut = false;
        for b in [0u8, 0, 0, 20, b'{', b'"'] {
            if s.write_all(&[b]).is_err() {
                cut = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(cut || closed_within(&mut s, Duration::from_secs(2)));
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        wait_clients(&server, 0);
        server.shutdown();
    }

    #[test]
    fn half_sent_frames_are_bounded_in_memory_over_all_clients() {
        let (_dir, path) = temp_socket();
        let server = start(
            &path,
            ServerOptions {
                request_memory: 1 << 20,
                ..ServerOptions::default()
            },
        );
        let announce = ((MAX_FRAME_LEN) as u32).to_be_bytes();
        let mut a = UnixStream::connect(&path).expect("connect");
        a.write_all(&announce).expect("header");
        a.write_all(&vec![b' '; 900 * 1024]).expect("payload");
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.pending_request_bytes() < 900 * 1024 {
            assert!(Instant::now() < deadline, "payload not taken");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(server.pending_request_bytes() <= 1 << 20);
        let mut b = UnixStream::connect(&path).expect("connect");
        b.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        b.write_all(&announce).expect("header");
        let _ = b.write_all(&vec![b' '; 200 * 1024]);
        match protocol::read_response(&mut b).expect("an answer") {
            Response::Error { kind, .. } => assert_eq!(kind, ErrorKind::NoSpace),
            other => panic!("unexpected {other:?}"),
        }
        assert!(closed_within(&mut b, Duration::from_secs(2)));
        drop(a);
        wait_clients(&server, 0);
        assert_eq!(server.pending_request_bytes(), 0, "all given back");
        server.shutdown();
    }

    #[test]
    fn shutdown_is_prompt_even_when_the_socket_file_was_removed() {
        let (_dir, path) = temp_socket();
        let server = start(&path, ServerOptions::default());
        let _idle = UnixStream::connect(&path).expect("connect");
        std::fs::remove_file(&path).expect("rm");
        let t0 = Instant::now();
        server.shutdown();
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }
}
