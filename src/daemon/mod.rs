//! The daemon: what `lbd` is once its command line is read. A [`Daemon`]
//! owns the data plane (the opened ports and the running workers), the
//! control state, the rate estimator and the control socket; the services
//! still to come (health checks, VRRP, connection sync, metrics, reload)
//! hang off it too, each as a control thread that talks to workers only
//! through snapshots and the runtime's rings. The kernel path
//! (`dataplane::kernel`, the ports' `kernel_if` interfaces) is created
//! before the workers start (they get its rings); its thread stops after
//! them.
//!
//! Layering (DESIGN §2): `daemon` sits above `ctl` and `dataplane` and
//! below the binaries; it is the only module that starts both halves, so a
//! test can run a whole `lbd` in-process ([`Daemon::start`] /
//! [`Daemon::stop`]).
//!
//! Rules: start-up binds the control socket before it opens any device (a
//! second `lbd` fails before touching a port), opens the ports, starts the
//! workers with the first snapshot, and only then serves `lbctl`. Stop
//! closes the socket (removing its file), stops the estimator and then the
//! workers; the ports close when the last handle goes. Logging is one line
//! per event on stderr, from control threads only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ctl::apply::ControlState;
use crate::ctl::config::{Config, ConfigError, DriverKind};
use crate::ctl::protocol::DEFAULT_SOCKET_PATH;
use crate::ctl::server::{
    bind_socket, Control, ControlOptions, Server, ServerError, ServerOptions,
};
use crate::ctl::stats::{spawn_estimator, EstimatorThread, ESTIMATOR_PERIOD};
use crate::dataplane::kernel::{KernelIfSpec, KernelPath, KernelThread};
use crate::dataplane::ports::{PortError, PortSetup, Ports};
use crate::dataplane::runtime::DataplaneHandle;
use crate::sys::{signal_name, TermSignals};
use crate::wire::EthernetAddress;

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
    /// The first snapshot could not be built.
    #[error("cannot build the first snapshot: {0}")]
    Snapshot(String),
    #[error("kernel path: {0}")]
    Kernel(#[from] crate::dataplane::kernel::KernelError),
}

/// What the daemon is started with besides its configuration.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Control socket path (`None`: the file's `socket`, else
    /// [`DEFAULT_SOCKET_PATH`]).
    pub socket: Option<PathBuf>,
    /// Control socket limits.
    pub server: ServerOptions,
}

/// A running `lbd`.
pub struct Daemon {
    server: Server,
    estimator: EstimatorThread,
    control: Arc<Control>,
    dataplane: Arc<dyn DataplaneHandle>,
    kernel: Option<KernelThread>,
    socket_path: PathBuf,
    summary: String,
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
        let (state, dataplane, kernel) = start_dataplane(config)?;
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
        let server = Server::start(socket, control.clone(), options.server).map_err(|source| {
            DaemonError::Thread {
                what: "control socket",
                source,
            }
        })?;
        let summary = format!(
            "rvs {} listening on {} ({} workers, {} ports, {} services, generation {})",
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
            control,
            dataplane,
            kernel,
            socket_path,
            summary,
        })
    }

    /// Blocks SIGINT and SIGTERM (before any thread starts), starts the
    /// daemon, serves until one of them arrives, then stops. Returns the
    /// signal's name.
    pub fn run(config: &Config, options: DaemonOptions) -> Result<&'static str, DaemonError> {
        let signals = TermSignals::block().map_err(DaemonError::Signals)?;
        let daemon = Daemon::start(config, options)?;
        eprintln!("lbd: {}", daemon.summary());
        let signal = signals.wait();
        let name = signal.as_ref().map_or("signal", |s| signal_name(*s));
        eprintln!("lbd: {name}, stopping");
        daemon.stop();
        signal.map(|_| name).map_err(DaemonError::Signals)
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

    /// The running data plane.
    pub fn dataplane(&self) -> &Arc<dyn DataplaneHandle> {
        &self.dataplane
    }

    /// Closes the control socket (removing its file), stops the estimator
    /// and the workers, and closes the ports.
    pub fn stop(self) {
        self.server.shutdown();
        self.estimator.stop();
        self.dataplane.stop();
        if let Some(k) = self.kernel {
            k.stop();
        }
    }
}

/// `lbd --check-config`: validates `config` as `lbd` would before opening
/// any device and returns the one-line summary it prints.
pub fn check_config(config: &Config) -> Result<String, DaemonError> {
    check_drivers(config)?;
    let state = config.check()?;
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

fn start_dataplane(config: &Config) -> Result<Started, DaemonError> {
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
                addrs: topology
                    .ports
                    .get(i)
                    .map(|c| c.addrs.clone())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let kernel = if workers > 0 {
        KernelPath::open(&specs, workers, config.ports.len())?
    } else {
        None
    };
    if let Some(k) = &kernel {
        ports.set_kernel(k.rings());
        eprintln!("lbd: kernel path on {}", k.names().join(", "));
    }
    let state = config.control_state(topology)?;
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
        daemon.stop();
        assert!(!path.exists(), "stop removes the socket file");
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
        first.stop();
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
        daemon.stop();
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
