//! The daemon: what `lbd` is once its command line is read. A [`Daemon`]
//! owns the data plane (the opened ports and the running workers), the
//! control state, the rate estimator and the control socket; the services
//! still to come (health checks, VRRP, connection sync, metrics, reload)
//! hang off it too, each as a control thread that talks to workers only
//! through snapshots and the runtime's rings. The health checker
//! (`crate::health`) runs when any real server has checks: `alpha` verdicts
//! are in the first snapshot, a reload restarts it with the file's checks
//! (unchanged checkers keep their state), and it stops first on stop (its
//! verdicts publish snapshots, which need running workers). The kernel path
//! (`dataplane::kernel`, the ports' `kernel_if` interfaces) is created
//! before the workers start (they get its rings); its thread stops after
//! them.
//!
//! Layering (DESIGN §2): `daemon` sits above `ctl` and `dataplane` and
//! below the binaries; it is the only module that starts both halves, so a
//! test can run a whole `lbd` in-process ([`Daemon::start`] /
//! [`Daemon::stop`]).
//!
//! Rules: start-up binds the control socket (and the metrics exporter's
//! listener, when `metrics.listen` or `--metrics-listen` asks for one)
//! before it opens any device (a second `lbd` fails before touching a
//! port), opens the ports, starts the workers with the first snapshot, and
//! only then serves `lbctl` and scrapes. Stop withdraws the announced
//! routes first (`crate::announce`, bounded), then stops the workers
//! (bounded: a wedged worker is named, not waited for), then the exporter,
//! the socket (removing its file) and the estimator; the ports close when
//! the last handle goes. The whole stop takes under 2 s. Logging is one line
//! per event on stderr, from control threads only
//! ([`log`]). Under systemd (`Type=notify`) `READY=1` is sent once
//! [`Daemon::start`] returned (every worker runs), `RELOADING=1`/`READY=1`
//! around a reload (SIGHUP, [`reload`]) and `STOPPING=1` before stopping.

pub mod log;
pub mod reload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::ctl::apply::ControlState;
use crate::ctl::config::{Config, ConfigError, DriverKind};
use crate::ctl::protocol::DEFAULT_SOCKET_PATH;
use crate::ctl::protocol::{Request, Response};
use crate::ctl::server::{
    bind_socket, Control, ControlOptions, Server, ServerError, ServerOptions,
};
use crate::ctl::stats::{spawn_estimator, EstimatorThread, ESTIMATOR_PERIOD};
use crate::dataplane::kernel::{KernelIfSpec, KernelPath, KernelThread, RING_SLOTS};
use crate::dataplane::ports::{PortError, PortSetup, Ports};
use crate::dataplane::runtime::{DataplaneHandle, STOP_TIMEOUT};
use crate::health::service::{initial_health, HealthService, ServicePlan};
use crate::metrics::{Exporter, MetricsError, MetricsListener};
use crate::sync::service::SyncService;
use crate::sys::{signal_name, TermSignals};
use crate::wire::EthernetAddress;
use log::{log, Level};
use reload::ConfigSource;
use sd_notify::NotifyState;

/// How often [`Daemon::run`] looks for ports whose interface vanished.
const PORT_WATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(500);

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The ports or workers could not be started.
    #[error(transparent)]
    Ports(#[from] PortError),
    /// The control socket could not be created.
    #[error(transparent)]
    Socket(#[from] ServerError),
    /// A control thread could not be started.
    #[error("cannot start the {what}: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Termination signals could not be blocked or waited for.
    #[error("signals: {0}")]
    Signals(#[source] std::io::Error),
    /// The metrics exporter could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The first snapshot could not be built.
    #[error("cannot build the first snapshot: {0}")]
    Snapshot(String),
    /// Workers did not stop within the stop timeout (left running as the
    /// process exits).
    #[error("workers {0:?} did not stop within {STOP_TIMEOUT:?}")]
    Wedged(Vec<u16>),
    /// The VRRP service could not start.
    #[error("{0}")]
    Vrrp(String),
    #[error("kernel path: {0}")]
    Kernel(#[from] crate::dataplane::kernel::KernelError),
    /// The health checks cannot be set up.
    #[error("health checks: {0}")]
    Health(#[from] crate::health::conf::HealthConfError),
    /// A configured sync daemon could not start.
    #[error(transparent)]
    Sync(#[from] crate::sync::service::SyncError),
}

/// What the daemon is started with besides its configuration.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Control socket path (`None`: the file's `socket`, else
    /// [`DEFAULT_SOCKET_PATH`]).
    pub socket: Option<PathBuf>,
    /// Control socket limits.
    pub server: ServerOptions,
    /// Prometheus exporter address (`None`: the file's `metrics.listen`,
    /// else no exporter).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The file the configuration was read from (and its command-line
    /// override): what a reload re-reads. `None`: reload is refused.
    pub source: Option<ConfigSource>,
}

/// A running `lbd`.
pub struct Daemon {
    server: Server,
    estimator: EstimatorThread,
    /// Rotates the SYN cookie secret (stopped first on stop).
    key_rotation: crate::ctl::server::KeyRotation,
    control: Arc<Control>,
    dataplane: Arc<dyn DataplaneHandle>,
    kernel: Option<KernelThread>,
    socket_path: PathBuf,
    summary: String,
    metrics: Option<Exporter>,
    vrrp: Option<crate::vrrp::service::VrrpService>,
    /// The health checker (none while no real server has checks); the
    /// reload hook restarts it with the new file's checks.
    health: Arc<Mutex<Option<HealthService>>>,
    sync: Arc<SyncService>,
    /// Route announcement (`announce:`) and drain (`crate::announce`).
    announcer: crate::announce::Announcer,
}

impl Daemon {
    /// Starts the daemon for `config`: binds the control socket, opens the
    /// ports, starts the workers with the configured tables, then the rate
    /// estimator and the control socket's listener.
    pub fn start(config: &Config, options: DaemonOptions) -> Result<Daemon, DaemonError> {
        check_drivers(config)?;
        let socket_path = options
            .socket
            .clone()
            .or_else(|| config.socket.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH));
        // Bind first: a second lbd must fail before it touches any device.
        let socket = bind_socket(&socket_path)?;
        let metrics = options
            .metrics_listen
            .or(config.metrics.listen)
            .map(MetricsListener::bind)
            .transpose()?;
        let plans = health_plan(config)?;
        let (state, dataplane, kernel) = start_dataplane(config, &plans)?;
        let generation = state.generation();
        let services = state.services().len();
        let control = Arc::new(Control::new(
            state,
            dataplane.clone(),
            ControlOptions {
                conn_capacity: config.worker_config().conn_capacity,
            },
        ));
        let estimator = spawn_estimator(
            control.stats(),
            control.counters().to_vec(),
            ESTIMATOR_PERIOD,
        )
        .map_err(|source| DaemonError::Thread {
            what: "rate estimator",
            source,
        })?;
        let key_rotation = control
            .spawn_key_rotation(crate::ctl::server::SYNPROXY_KEY_PERIOD)
            .map_err(|source| DaemonError::Thread {
                what: "SYN cookie secret rotation",
                source,
            })?;
        let health: Arc<Mutex<Option<HealthService>>> = Arc::new(Mutex::new(None));
        if let Some(source) = options.source.clone() {
            let running = config.clone();
            let slot = health.clone();
            let weak = Arc::downgrade(&control);
            control.set_reload(Box::new(move |control| {
                let answer = reload::reload(control, &source, &running);
                if let (Response::Reloaded { .. }, Some(control)) = (&answer, weak.upgrade()) {
                    restart_health(control, &source, &slot);
                }
                answer
            }));
        }
        let sync = Arc::new(SyncService::new(dataplane.clone(), {
            // Weak: the control holds the sync service (no cycle, so the
            // ports close when the daemon goes).
            let control = Arc::downgrade(&control);
            Box::new(move || {
                let control = control.upgrade()?;
                let snap = control.state().snapshot().ok()?;
                Some(Arc::new(snap))
            })
        }));
        for conf in &config.sync {
            // A daemon that follows a VRRP instance starts as backup (the
            // instance starts in BACKUP); the VRRP thread switches it.
            let started = match conf.vrrp_instance {
                Some(_) => sync.follow(conf, crate::sync::conf::SyncRole::Backup),
                None => sync.start(conf),
            };
            if let Err(e) = started {
                sync.shutdown();
                let _ = dataplane.stop_within(STOP_TIMEOUT);
                return Err(e.into());
            }
        }
        control.set_sync(sync.clone());
        let server = Server::start(socket, control.clone(), options.server).map_err(|source| {
            DaemonError::Thread {
                what: "control socket",
                source,
            }
        })?;
        let metrics = metrics
            .map(|listener| listener.serve(control.clone()))
            .transpose()?;
        let vrrp = start_vrrp(
            config,
            &control,
            dataplane.workers(),
            sync_follower(config, &sync),
        )?;
        // The checker runs when any real server has checks.
        if !plans.is_empty() {
            let service = HealthService::start(control.clone(), plans).map_err(|source| {
                DaemonError::Thread {
                    what: "health checker",
                    source,
                }
            })?;
            *lock_health(&health) = Some(service);
        }
        let announcer = crate::announce::Announcer::start(config.announce.clone(), &control)
            .map_err(|source| DaemonError::Thread {
                what: "route announcement",
                source,
            })?;
        let metrics_note = metrics
            .as_ref()
            .map(|m| format!(", metrics on http://{}/metrics", m.local_addr()))
            .unwrap_or_default();
        let summary = format!(
            "rvs {} listening on {}{metrics_note} ({} workers, {} ports, {} services, generation {})",
            env!("CARGO_PKG_VERSION"),
            socket_path.display(),
            dataplane.workers(),
            config.ports.len(),
            services,
            generation
        );
        Ok(Daemon {
            server,
            estimator,
            key_rotation,
            control,
            dataplane,
            kernel,
            socket_path,
            summary,
            metrics,
            vrrp,
            health,
            sync,
            announcer,
        })
    }

    /// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR2 (before any thread
    /// starts), starts the daemon, tells systemd it is ready, drains on
    /// SIGUSR2 (then stops), reloads on each SIGHUP
    /// and serves until SIGINT or SIGTERM arrives, then stops. Returns the
    /// signal's name.
    pub fn run(config: &Config, options: DaemonOptions) -> Result<&'static str, DaemonError> {
        let signals = TermSignals::block().map_err(DaemonError::Signals)?;
        let daemon = Daemon::start(config, options)?;
        // A finished drain (`lbctl --drain`) stops lbd as SIGTERM would.
        daemon.announcer.set_on_drained(Box::new(|| {
            if let Err(e) = crate::sys::terminate_self() {
                log(Level::Error, &format!("drain: cannot signal lbd: {e}"));
            }
        }));
        log(Level::Notice, daemon.summary());
        // Every worker runs (start returned): now, and only now, ready.
        notify(&[NotifyState::Ready, NotifyState::Status(daemon.summary())]);
        let mut gone_reported = Vec::new();
        let result = loop {
            match signals.wait_timeout(PORT_WATCH_PERIOD) {
                Ok(None) => daemon.report_vanished_ports(&mut gone_reported),
                Ok(Some(libc::SIGUSR2)) => {
                    // `lbctl --drain` with the default timeout.
                    log(Level::Notice, "SIGUSR2, draining");
                    let timeout = crate::announce::DEFAULT_DRAIN_TIMEOUT;
                    if let Err(e) = daemon.announcer.drain(timeout) {
                        log(Level::Error, &format!("drain: {e}"));
                    }
                }
                Ok(Some(libc::SIGHUP)) => {
                    log(Level::Notice, "SIGHUP, reloading the configuration");
                    daemon.reload_notified();
                }
                Ok(Some(signal)) => break Ok(signal_name(signal)),
                Err(err) => break Err(DaemonError::Signals(err)),
            }
        };
        // A port that vanished since the last look is still told.
        daemon.report_vanished_ports(&mut gone_reported);
        let name = result.as_ref().map_or("signal", |n| *n);
        log(Level::Notice, &format!("{name}, stopping"));
        notify(&[NotifyState::Stopping]);
        let stopped = daemon.stop();
        let name = result?;
        stopped.map(|()| name)
    }

    /// Logs, once per port, a port whose interface vanished (a TAP or
    /// AF_PACKET interface deleted under lbd: `link_gone` in the port's
    /// stats, which its queues set without printing anything themselves —
    /// a worker never logs). `reported` remembers the ports already told.
    pub fn report_vanished_ports(&self, reported: &mut Vec<bool>) {
        let Response::PortStats { ports } = self.control.handle(&Request::PortStats) else {
            return;
        };
        reported.resize(ports.len(), false);
        for (port, told) in ports.iter().zip(reported.iter_mut()) {
            if port.link_gone && !*told {
                *told = true;
                log(
                    Level::Error,
                    &format!(
                        "port {}: the interface is gone; the port stops its I/O",
                        port.name
                    ),
                );
            }
        }
    }

    /// Re-reads the configuration file and applies it (as `lbctl
    /// --reload`), logging what happened; returns the answer.
    pub fn reload(&self) -> Response {
        let answer = self.control.handle(&Request::Reload);
        match &answer {
            Response::Reloaded {
                generation,
                applied,
                not_applied,
            } => {
                for line in applied {
                    log(Level::Info, &format!("reload: {line}"));
                }
                for line in not_applied {
                    log(Level::Warning, &format!("reload: {line} (not applied)"));
                }
                log(
                    Level::Notice,
                    &format!(
                        "reloaded: {} changes, generation {generation}{}",
                        applied.len(),
                        if not_applied.is_empty() {
                            String::new()
                        } else {
                            format!(", {} differences need a restart", not_applied.len())
                        }
                    ),
                );
            }
            Response::Error { message, .. } => {
                log(Level::Error, &format!("reload refused: {message}"));
            }
            other => log(
                Level::Error,
                &format!("reload: unexpected answer {other:?}"),
            ),
        }
        answer
    }

    /// [`Daemon::reload`] between systemd's `RELOADING=1` and `READY=1`.
    fn reload_notified(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => notify(&[NotifyState::Reloading, now]),
            Err(_) => notify(&[NotifyState::Reloading]),
        }
        self.reload();
        notify(&[NotifyState::Ready, NotifyState::Status(self.summary())]);
    }

    /// One line saying what runs (version, socket, workers, ports,
    /// services, generation).
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The control socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The request handler (what `lbctl` talks to).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Where the Prometheus exporter serves, if it runs.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(Exporter::local_addr)
    }

    /// The route announcement and drain.
    pub fn announcer(&self) -> &crate::announce::Announcer {
        &self.announcer
    }

    /// The running data plane.
    pub fn dataplane(&self) -> &Arc<dyn DataplaneHandle> {
        &self.dataplane
    }

    /// Stops the workers first (a busy-polling worker must not keep its
    /// core while the rest shuts down), then closes the control socket
    /// (removing its file) and stops the estimator; the ports close when
    /// the last handle goes. Bounded: returns within about 2 s whatever
    /// state the workers, the socket file or the clients are in, with
    /// [`DaemonError::Wedged`] naming the workers that did not stop.
    pub fn stop(self) -> Result<(), DaemonError> {
        // Routes first: ECMP must stop sending new flows here before the
        // data plane stops; BGP's withdraw leaves through the workers.
        let before = from_kernel(&self.control);
        if self.announcer.stop() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
            while from_kernel(&self.control) == before && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        // No more secret rotations: they publish snapshots.
        drop(self.key_rotation);
        // Then VRRP: its priority-0 adverts leave through the workers.
        if let Some(v) = self.vrrp {
            stop_vrrp(v, &self.control);
        }
        // Then the checker: its verdicts publish snapshots, which need
        // running workers.
        if let Some(health) = lock_health(&self.health).take() {
            health.stop();
        }
        // Then the sync threads: each stops within 100 ms, and the master
        // tells the workers to stop exporting while they still run.
        self.sync.shutdown();
        let wedged = self.dataplane.stop_within(STOP_TIMEOUT);
        if let Some(metrics) = self.metrics {
            metrics.stop();
        }
        self.server.shutdown();
        self.estimator.stop();
        if let Some(k) = self.kernel {
            k.stop();
        }
        if wedged.is_empty() {
            Ok(())
        } else {
            Err(DaemonError::Wedged(wedged))
        }
    }
}

/// Tells the service manager (`$NOTIFY_SOCKET`, if set) about a state
/// change; a failure is logged, never fatal.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(false, states) {
        log(Level::Warning, &format!("cannot notify systemd: {err}"));
    }
}

/// `lbd --check-config`: validates `config` as `lbd` would before opening
/// any device and returns the one-line summary it prints.
pub fn check_config(config: &Config) -> Result<String, DaemonError> {
    check_drivers(config)?;
    let state = config.check()?;
    health_plan(config)?;
    let dests: usize = state.services().iter().map(|s| s.dests.len()).sum();
    Ok(format!(
        "configuration OK ({} ports, {} workers, {} services, {} real servers)",
        config.ports.len(),
        config.worker_count(),
        state.services().len(),
        dests
    ))
}

/// Refuses drivers this build cannot open.
fn check_drivers(config: &Config) -> Result<(), DaemonError> {
    if cfg!(feature = "dpdk") {
        return Ok(());
    }
    match config.ports.iter().find(|p| p.driver == DriverKind::Dpdk) {
        Some(p) => Err(PortError::NoDpdk(p.name.clone()).into()),
        None => Ok(()),
    }
}

/// Opens the configured ports and starts the workers on the configured
/// tables; without ports, a data plane with no workers that keeps the
/// tables (services can be added and listed).
type Started = (ControlState, Arc<dyn DataplaneHandle>, Option<KernelThread>);

fn lock_health(
    slot: &Mutex<Option<HealthService>>,
) -> std::sync::MutexGuard<'_, Option<HealthService>> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// After a reload: the checker again, with the file's checks; servers whose
/// checks did not change keep their state.
fn restart_health(
    control: Arc<Control>,
    source: &ConfigSource,
    slot: &Mutex<Option<HealthService>>,
) {
    let plans = match source.load().map(|c| crate::health::service::plan(&c)) {
        Ok(Ok(plans)) => plans,
        Ok(Err(e)) => return log(Level::Error, &format!("reload: health checks: {e}")),
        Err(e) => return log(Level::Error, &format!("reload: health checks: {e}")),
    };
    let mut slot = lock_health(slot);
    let kept = slot
        .take()
        .map(HealthService::stop_keeping_state)
        .unwrap_or_default();
    if plans.is_empty() {
        HealthService::withdraw(&control, &kept);
        control.set_health_view(Box::new(Vec::new));
        return;
    }
    match HealthService::start_keeping(control, plans, kept) {
        Ok(service) => *slot = Some(service),
        Err(e) => log(
            Level::Error,
            &format!("reload: cannot restart the health checker: {e}"),
        ),
    }
}

/// The checked services of `config`, resolved.
fn health_plan(config: &Config) -> Result<Vec<ServicePlan>, DaemonError> {
    Ok(crate::health::service::plan(config)?)
}

fn start_dataplane(config: &Config, plans: &[ServicePlan]) -> Result<Started, DaemonError> {
    let workers = if config.ports.is_empty() {
        0
    } else {
        config.worker_count()
    };
    let setups: Vec<PortSetup> = config.ports.iter().map(|p| p.setup()).collect();
    let eal_args = config
        .dpdk
        .as_ref()
        .map(|d| d.eal_args.clone())
        .unwrap_or_default();
    let (mut ports, queues) = Ports::open(&setups, workers, &eal_args)?;
    // The director's MAC on each port: the configured one, else the
    // device's.
    let macs: Vec<EthernetAddress> = config
        .ports
        .iter()
        .zip(ports.macs())
        .map(|(p, dev)| p.mac.map_or(EthernetAddress(dev), |m| m.0))
        .collect();
    let mut topology = config.topology(workers, &macs)?;
    // Devices that spread by RSS (queue i = worker i): workers choose
    // FULLNAT local ports whose replies land on their own queue.
    for (conf, rss) in topology.ports.iter_mut().zip(ports.rss()) {
        conf.rss = rss;
    }
    // The kernel interfaces (the director's own traffic), created before
    // the workers start so they get the rings.
    let specs: Vec<KernelIfSpec> = config
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            Some(KernelIfSpec {
                port: i as u16,
                name: p.kernel_if.clone()?,
                mac: macs[i].0,
                mtu: p.mtu,
                rate: p.kernel_if_pps.unwrap_or(0),
                guard_ifname: (p.driver == crate::ctl::config::DriverKind::AfPacket
                    && p.kernel_if_guard != Some(false))
                .then(|| p.ifname().to_string()),
                addrs: topology
                    .ports
                    .get(i)
                    .map(|c| c.addrs.clone())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let mut kernel = if workers > 0 {
        KernelPath::open(
            &specs,
            workers,
            config.ports.len(),
            config
                .workers
                .kernel_ring
                .map_or(RING_SLOTS, |n| n as usize),
        )?
    } else {
        None
    };
    if let Some(k) = &mut kernel {
        steer_kernel_sockets(config, &ports, k);
    }
    if let Some(k) = &kernel {
        ports.set_kernel(k.rings());
        eprintln!("lbd: kernel path on {}", k.names().join(", "));
    }
    let mut state = config.control_state(topology)?;
    // Every VRRP VIP waits on standby until its instance is MASTER.
    let vrrp_vips = crate::vrrp::service::standby_at_start(&config.vrrp_instances()?);
    state.set_vrrp_vips(vrrp_vips.clone());
    state.set_standby(vrrp_vips);
    // alpha servers are out of the pool before the first snapshot.
    initial_health(plans, &mut state);
    let snap = Arc::new(
        state
            .snapshot()
            .map_err(|e| DaemonError::Snapshot(e.to_string()))?,
    );
    let dataplane = ports.start(queues, config.worker_config(), &config.cores(), snap)?;
    let kernel = match kernel {
        Some(k) => Some(k.start(dataplane.counters())?),
        None => None,
    };
    Ok((state, dataplane, kernel))
}

/// AF_PACKET ports with a kernel interface (unless `kernel_if_steer:
/// false`): the kernel path reads the director's own TCP/UDP from a socket
/// of its own, so no worker receives it. A port where that socket cannot
/// be opened keeps the workers' path (logged).
fn steer_kernel_sockets(config: &Config, ports: &Ports, k: &mut KernelPath) {
    for (i, p) in config.ports.iter().enumerate() {
        if p.driver != crate::ctl::config::DriverKind::AfPacket
            || p.kernel_if.is_none()
            || p.kernel_if_steer == Some(false)
        {
            continue;
        }
        match ports.open_kernel_socket(i) {
            Ok(sock) => k.add_steer_socket(i as u16, sock),
            Err(e) => eprintln!(
                "lbd: port {}: {e}; its own traffic goes through the workers",
                p.name
            ),
        }
    }
}

/// The VRRP state hook of a sync daemon that follows an instance
/// (keepalived's `lvs_sync_daemon IF VI`, `ipvs_syncd_cmd`): master while
/// the instance is MASTER, backup while it is BACKUP or FAULT. It runs on
/// the VRRP thread after the transition's adverts and GARPs; switching
/// waits for the old role's thread (at most 100 ms).
fn sync_follower(
    config: &Config,
    sync: &Arc<SyncService>,
) -> Option<crate::vrrp::service::StateHook> {
    use crate::sync::conf::SyncRole;
    use crate::vrrp::state::VrrpState;
    let conf = config
        .sync
        .iter()
        .find(|c| c.vrrp_instance.is_some())?
        .clone();
    let name = conf.vrrp_instance.clone()?;
    let sync = sync.clone();
    Some(Box::new(move |instance: &str, state: VrrpState| {
        if instance != name {
            return;
        }
        let role = match state {
            VrrpState::Master => SyncRole::Master,
            VrrpState::Backup | VrrpState::Fault => SyncRole::Backup,
            _ => return,
        };
        match sync.follow(&conf, role) {
            Ok(()) => log(
                Level::Notice,
                &format!("VRRP {name}: {} sync daemon (lvs_sync_daemon)", role.name()),
            ),
            Err(e) => log(
                Level::Error,
                &format!("VRRP {name}: {} sync daemon not started: {e}", role.name()),
            ),
        }
    }))
}

/// Starts the VRRP service when instances are configured (they need the
/// ports' kernel interfaces, hence workers).
fn start_vrrp(
    config: &Config,
    control: &Arc<Control>,
    workers: u16,
    on_state: Option<crate::vrrp::service::StateHook>,
) -> Result<Option<crate::vrrp::service::VrrpService>, DaemonError> {
    let specs = config.vrrp_instances()?;
    if specs.is_empty() {
        return Ok(None);
    }
    if workers == 0 {
        return Err(DaemonError::Config(ConfigError::Invalid(
            "vrrp: instances need ports (their kernel_if)".into(),
        )));
    }
    let macs: Vec<EthernetAddress> = control.state().ports().iter().map(|p| p.mac).collect();
    let scripts = config
        .vrrp
        .script_specs()
        .map_err(|e| DaemonError::Config(ConfigError::Invalid(e.to_string())))?;
    let service =
        crate::vrrp::service::VrrpService::start(specs, scripts, &macs, control.clone(), on_state)
            .map_err(|e| DaemonError::Vrrp(e.to_string()))?;
    let status = service.status_handle();
    control.set_vrrp_status(Box::new(move || {
        status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }));
    Ok(Some(service))
}

/// Frames the workers sent for the kernel so far (all ports).
fn from_kernel(control: &Control) -> u64 {
    control
        .counters()
        .iter()
        .map(|c| c.from_kernel.load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}

/// Stops VRRP (priority-0 adverts from every MASTER) and waits, bounded,
/// until the workers sent what the kernel wrote meanwhile.
fn stop_vrrp(v: crate::vrrp::service::VrrpService, control: &Control) {
    let before = from_kernel(control);
    let masters = v.status().iter().filter(|s| s.state == "MASTER").count() as u64;
    v.stop();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    while from_kernel(control) < before + masters && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::protocol::{call_unix, Request, Response};
    use std::time::Duration;

    fn mem_config(dir: &Path) -> Config {
        let yaml = format!(
            "socket: {}\n\
             workers: {{ count: 2 }}\n\
             ports:\n\
             \x20 - {{ name: ext, driver: mem, addrs: [10.0.0.2/24] }}\n\
             \x20 - {{ name: int, driver: mem, addrs: [192.168.10.254/24] }}\n\
             services:\n\
             \x20 - proto: tcp\n\
             \x20   vip: 10.0.0.100\n\
             \x20   port: 80\n\
             \x20   scheduler: rr\n\
             \x20   dests:\n\
             \x20     - {{ addr: 192.168.10.1, port: 8080, fwd: masq }}\n",
            dir.join("lbd.sock").display()
        );
        Config::from_yaml(&yaml).expect("test configuration")
    }

    #[test]
    fn a_whole_daemon_runs_in_process_and_serves_lbctl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = mem_config(dir.path());
        let daemon = Daemon::start(&config, DaemonOptions::default()).expect("start");
        assert_eq!(daemon.dataplane().workers(), 2);
        assert!(daemon.summary().contains("2 workers, 2 ports, 1 services"));
        let path = daemon.socket_path().to_path_buf();
        assert!(path.exists());
        match call_unix(&path, &Request::PortStats, Duration::from_secs(5)).expect("call") {
            Response::PortStats { ports } => {
                let names: Vec<_> = ports.iter().map(|p| p.name.as_str()).collect();
                assert_eq!(names, ["ext", "int"]);
            }
            other => panic!("unexpected answer {other:?}"),
        }
        daemon.stop().expect("stopped");
        assert!(!path.exists(), "stop removes the socket file");
    }

    #[test]
    fn a_stopped_daemon_with_sync_daemons_lets_its_control_and_ports_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = mem_config(dir.path());
        config.sync = vec![crate::sync::conf::SyncConf::new(
            crate::sync::conf::SyncRole::Master,
        )];
        let daemon = Daemon::start(&config, DaemonOptions::default()).expect("start");
        let control = Arc::downgrade(daemon.control());
        let dataplane = Arc::downgrade(daemon.dataplane());
        daemon.stop().expect("stopped");
        assert!(
            control.upgrade().is_none(),
            "no reference cycle keeps the control"
        );
        assert!(
            dataplane.upgrade().is_none(),
            "the data plane (ports) is released"
        );
    }

    #[test]
    fn a_sync_daemon_following_a_vrrp_instance_is_master_only_while_it_is_master() {
        use crate::sync::conf::{SyncConf, SyncRole};
        use crate::vrrp::state::VrrpState;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = mem_config(dir.path());
        let daemon = Daemon::start(&config, DaemonOptions::default()).expect("start");
        // The follower as lbd starts it (VRRP itself needs kernel_if, which
        // mem ports lack: the hook is driven by hand, as the VRRP thread
        // drives it).
        let mut follower = config.clone();
        follower.sync = vec![SyncConf {
            vrrp_instance: Some("VI_1".into()),
            ..SyncConf::new(SyncRole::Backup)
        }];
        daemon
            .sync
            .follow(&follower.sync[0], SyncRole::Backup)
            .expect("backup");
        let mut hook = sync_follower(&follower, &daemon.sync).expect("a hook");
        let roles = |d: &Daemon| -> Vec<SyncRole> {
            d.sync.status().daemons.iter().map(|c| c.role).collect()
        };
        assert_eq!(roles(&daemon), vec![SyncRole::Backup]);
        hook("VI_1", VrrpState::Master);
        assert_eq!(roles(&daemon), vec![SyncRole::Master]);
        hook("VI_2", VrrpState::Backup);
        assert_eq!(roles(&daemon), vec![SyncRole::Master], "another instance");
        hook("VI_1", VrrpState::Fault);
        assert_eq!(roles(&daemon), vec![SyncRole::Backup]);
        hook("VI_1", VrrpState::Master);
        hook("VI_1", VrrpState::Backup);
        assert_eq!(roles(&daemon), vec![SyncRole::Backup]);
        daemon.sync.shutdown();
        hook("VI_1", VrrpState::Master);
        assert!(roles(&daemon).is_empty(), "nothing starts after shutdown");
        daemon.stop().expect("stopped");
    }

    #[test]
    fn a_second_daemon_on_the_same_socket_fails_before_opening_ports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = mem_config(dir.path());
        let first = Daemon::start(&config, DaemonOptions::default()).expect("start");
        let err = Daemon::start(&config, DaemonOptions::default())
            .err()
            .expect("the socket is taken");
        assert!(matches!(err, DaemonError::Socket(_)), "{err}");
        first.stop().expect("stopped");
    }

    #[test]
    fn without_ports_the_daemon_keeps_tables_and_has_no_workers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::default();
        let options = DaemonOptions {
            socket: Some(dir.path().join("s.sock")),
            ..DaemonOptions::default()
        };
        let daemon = Daemon::start(&config, options).expect("start");
        assert_eq!(daemon.dataplane().workers(), 0);
        daemon.stop().expect("stopped");
    }

    /// `GET path` over plain HTTP/1.0; the whole answer (head and body).
    fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: lbd\r\n\r\n").expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        answer
    }

    #[test]
    fn the_exporter_serves_openmetrics_at_metrics_and_stops_with_the_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = mem_config(dir.path());
        config.metrics.listen = Some("127.0.0.1:1".parse().expect("addr"));
        let options = DaemonOptions {
            // The command line wins over the file.
            metrics_listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..DaemonOptions::default()
        };
        let daemon = Daemon::start(&config, options).expect("start");
        let addr = daemon.metrics_addr().expect("the exporter runs");
        assert_ne!(addr.port(), 0);
        assert!(daemon
            .summary()
            .contains(&format!("metrics on http://{addr}/metrics")));
        let answer = http_get(addr, "/metrics");
        assert_eq!(answer.split_whitespace().nth(1), Some("200"), "{answer}");
        assert!(
            answer.contains("application/openmetrics-text; version=1.0.0"),
            "{answer}"
        );
        for line in [
            "rvs_service_connections_total{proto=\"tcp\",vip=\"10.0.0.100:80\"} 0",
            "rvs_real_server_weight{proto=\"tcp\",vip=\"10.0.0.100:80\",rip=\"192.168.10.1:8080\"} 1",
            "rvs_worker_dropped_packets_total{worker=\"1\",reason=\"table_full\"} 0",
            "rvs_port_rx_bytes_total{port=\"int\"} 0",
            "# EOF",
        ] {
            assert!(answer.contains(line), "no {line:?} in:\n{answer}");
        }
        assert_eq!(http_get(addr, "/").split_whitespace().nth(1), Some("404"));
        daemon.stop().expect("stopped");
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "stop closes the exporter's listener"
        );
    }

    #[test]
    fn every_metric_of_the_grafana_dashboard_is_exported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let daemon =
            Daemon::start(&mem_config(dir.path()), DaemonOptions::default()).expect("start");
        let text = crate::metrics::render(daemon.control().clone()).expect("render");
        daemon.stop().expect("stopped");
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../conf/grafana-rvs.json")).expect("JSON");
        let mut exprs = Vec::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs.push(target["expr"].as_str().expect("expr").to_string());
            }
        }
        assert!(exprs.len() > 10, "{exprs:?}");
        let mut names = 0;
        for expr in &exprs {
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("rvs_") {
                    names += 1;
                    assert!(
                        text.lines().any(|l| l.starts_with(word)
                            && l[word.len()..].starts_with(['{', ' '])),
                        "the dashboard uses {word}, which the exporter does not export"
                    );
                }
            }
        }
        assert!(names >= exprs.len());
    }

    #[test]
    fn a_taken_metrics_address_fails_start_up_before_opening_ports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let mut config = mem_config(dir.path());
        config.metrics.listen = Some(addr);
        let err = Daemon::start(&config, DaemonOptions::default())
            .err()
            .expect("the address is taken");
        assert!(matches!(err, DaemonError::Metrics(_)), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn check_config_counts_what_it_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let line = check_config(&mem_config(dir.path())).expect("valid");
        assert_eq!(
            line,
            "configuration OK (2 ports, 2 workers, 1 services, 1 real servers)"
        );
    }
}
