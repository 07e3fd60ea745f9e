//! lbd — the rvs daemon: the data-plane workers plus the control plane
//! that `lbctl` talks to.
//!
//! ```text
//! lbd [-c|--config FILE] [--socket PATH] [--workers N]
//! lbd --check-config FILE
//! lbd -c FILE --replay PORT=IN.pcap [--replay PORT=IN.pcap ...] --capture-dir DIR
//! ```
//!
//! * Without `--config` lbd runs the control plane only (no ports, no
//!   workers): services can be added, listed, saved and restored.
//! * With ports it opens the devices (mem, pcap, tap, af_packet; dpdk when
//!   built with the `dpdk` feature), gives every worker one queue of every
//!   port, starts the workers pinned to `workers.cores` with the initial
//!   snapshot, then the rate estimator and the control socket, and runs
//!   until SIGINT or SIGTERM; it then closes the socket (removing the
//!   file), stops the estimator and the workers.
//! * `--check-config` validates a file (syntax, values, references, and
//!   every service through the same rules as `lbctl`) and exits: 0 if valid,
//!   1 with the error otherwise.
//! * `--replay` pushes captures through one worker running the configured
//!   tables, writing what each port sends to `DIR/PORT.pcap`.
//!
//! Rules: SIGINT/SIGTERM are blocked before any thread starts and taken
//! with `sigwait` by the main thread (no handler runs in a worker). Logging
//! is `eprintln!` from control threads only. Exit status 1 on any error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{anyhow, bail, Context};
use clap::Parser;

use rvs::ctl::apply::ControlState;
use rvs::ctl::config::{Config, DriverKind, PortSpec, TxModeConf};
use rvs::ctl::protocol::{PortStatsInfo, DEFAULT_SOCKET_PATH};
use rvs::ctl::server::{
    bind_socket, Control, ControlOptions, PortStatsFn, PublishHook, Server, ServerOptions,
};
use rvs::ctl::stats::{spawn_estimator, ESTIMATOR_PERIOD};
use rvs::dataplane::driver::af_packet::{AfPacketDriver, AfPacketOptions, AfPacketQueue, TxMode};
use rvs::dataplane::driver::heapbuf::HeapBuf;
use rvs::dataplane::driver::mem::{MemDriver, MemQueue};
use rvs::dataplane::driver::pcap::{read_capture, PcapDriver, PcapQueue};
use rvs::dataplane::driver::tap::{TapDriver, TapQueue};
use rvs::dataplane::driver::{Burst, Driver, PortCaps, PortQueue, PortStats};
use rvs::dataplane::replay;
use rvs::dataplane::runtime::{DataplaneHandle, NoDataplane, Runtime};
use rvs::dataplane::snapshot::Snapshot;
use rvs::wire::EthernetAddress;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "lbd",
    version,
    about = "rvs load-balancer daemon (LVS/IPVS in user space)"
)]
struct Args {
    /// YAML configuration file (see conf/README.md).
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Control socket path (overrides the file's `socket`).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Validate FILE and exit.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "replay"])]
    check_config: Option<PathBuf>,
    /// Replay a capture into a port: PORT=FILE (repeatable); needs --capture-dir.
    #[arg(long, value_name = "PORT=FILE", requires = "capture_dir")]
    replay: Vec<String>,
    /// Where a replay writes what each port sends (DIR/PORT.pcap).
    #[arg(long, value_name = "DIR", requires = "replay")]
    capture_dir: Option<PathBuf>,
    /// Number of workers (overrides workers.count).
    #[arg(long, value_name = "N")]
    workers: Option<u16>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lbd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Path, workers: Option<u16>) -> anyhow::Result<Config> {
    let mut config = Config::load(path).with_context(|| format!("{}", path.display()))?;
    if let Some(n) = workers {
        config
            .set_workers(n)
            .with_context(|| format!("{} with --workers {n}", path.display()))?;
    }
    Ok(config)
}

/// Drivers this binary cannot open.
fn check_drivers(config: &Config) -> anyhow::Result<()> {
    if cfg!(feature = "dpdk") {
        return Ok(());
    }
    if let Some((i, p)) = config
        .ports
        .iter()
        .enumerate()
        .find(|(_, p)| p.driver == DriverKind::Dpdk)
    {
        bail!(
            "ports[{i}] ({}): driver dpdk: lbd was built without dpdk support (rebuild with --features dpdk)",
            p.name
        );
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.check_config {
        let config = load_config(path, args.workers)?;
        check_drivers(&config).with_context(|| format!("{}", path.display()))?;
        let state = config
            .check()
            .with_context(|| format!("{}", path.display()))?;
        let dests: usize = state.services().iter().map(|s| s.dests.len()).sum();
        println!(
            "{}: configuration OK ({} ports, {} workers, {} services, {} real servers)",
            path.display(),
            config.ports.len(),
            config.worker_count(),
            state.services().len(),
            dests
        );
        return Ok(());
    }
    let config = match &args.config {
        Some(path) => load_config(path, args.workers)?,
        None => {
            if args.workers.is_some_and(|n| n > 0) {
                eprintln!("lbd: no configuration, no ports: --workers ignored");
            }
            Config::default()
        }
    };
    if !args.replay.is_empty() {
        // A replay opens no device: every port becomes a pcap port.
        return run_replay(&config, &args);
    }
    check_drivers(&config)?;

    // Before any thread exists, so that every thread inherits the mask and
    // only the main thread's sigwait takes the signals.
    let signals = block_signals().context("cannot block SIGINT/SIGTERM")?;

    let socket_path = args
        .socket
        .clone()
        .or_else(|| config.socket.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH));
    // Bind first: a second lbd must fail before it touches any device.
    let socket = bind_socket(&socket_path)?;

    let plane = start_dataplane(&config)?;
    let generation = plane.state.generation();
    let services = plane.state.services().len();
    let control = Arc::new(Control::new(
        plane.state,
        plane.handle.clone(),
        ControlOptions {
            conn_capacity: config.worker_config().conn_capacity,
            port_stats: plane.port_stats,
            on_publish: plane.on_publish,
        },
    ));
    let estimator = spawn_estimator(
        control.stats(),
        control.counters().to_vec(),
        ESTIMATOR_PERIOD,
    )
    .context("cannot start the rate estimator")?;
    let server = Server::start(socket, control, ServerOptions::default())
        .context("cannot start the control socket")?;
    eprintln!(
        "lbd: rvs {} listening on {} ({} workers, {} ports, {} services, generation {})",
        env!("CARGO_PKG_VERSION"),
        socket_path.display(),
        plane.handle.workers(),
        config.ports.len(),
        services,
        generation
    );

    let signal = wait_for_signal(&signals).context("sigwait failed")?;
    eprintln!(
        "lbd: {}, stopping",
        if signal == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        }
    );
    server.shutdown();
    estimator.stop();
    plane.handle.stop();
    drop(plane.keep);
    Ok(())
}

/// `--replay PORT=FILE ... --capture-dir DIR`.
fn run_replay(config: &Config, args: &Args) -> anyhow::Result<()> {
    let dir = args
        .capture_dir
        .as_deref()
        .ok_or_else(|| anyhow!("--replay needs --capture-dir DIR"))?;
    let mut inputs = Vec::new();
    for spec in &args.replay {
        let (port, file) = spec
            .split_once('=')
            .filter(|(p, f)| !p.is_empty() && !f.is_empty())
            .ok_or_else(|| anyhow!("--replay {spec:?}: expected PORT=FILE"))?;
        inputs.push((port.to_string(), PathBuf::from(file)));
    }
    let topology = config.topology(1, &[])?;
    let state = config.control_state(topology)?;
    let snap = Arc::new(state.snapshot()?);
    let report = replay::run(snap, &inputs, dir, config.worker_config())?;
    for (name, read, written, path) in &report.ports {
        println!(
            "{name}: {read} packets in, {written} packets out -> {}",
            path.display()
        );
    }
    println!("connections created: {}", report.conns_created);
    for (reason, n) in &report.drops {
        println!("dropped {}: {n}", reason.name());
    }
    Ok(())
}

/// A running data plane and what the control plane needs from it.
struct Plane {
    handle: Arc<dyn DataplaneHandle>,
    state: ControlState,
    port_stats: Option<PortStatsFn>,
    on_publish: Option<PublishHook>,
    /// Held until the end (e.g. the DPDK EAL).
    keep: Box<dyn std::any::Any>,
}

fn start_dataplane(config: &Config) -> anyhow::Result<Plane> {
    if config.ports.is_empty() {
        let topology = config.topology(0, &[])?;
        return Ok(Plane {
            handle: Arc::new(NoDataplane::default()),
            state: config.control_state(topology)?,
            port_stats: None,
            on_publish: None,
            keep: Box::new(()),
        });
    }
    if config.ports.iter().all(|p| p.driver == DriverKind::Dpdk) {
        return start_dpdk(config);
    }
    start_software(config)
}

/// A queue of any software driver (they all use [`HeapBuf`]), so that one
/// worker can own queues of different drivers. Variants are not boxed: a
/// queue is moved once into its worker and stays there, and a box would
/// cost a pointer chase on every burst.
#[allow(clippy::large_enum_variant)]
enum SoftQueue {
    Mem(MemQueue),
    Pcap(PcapQueue),
    Tap(TapQueue),
    AfPacket(AfPacketQueue),
}

impl PortQueue for SoftQueue {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        match self {
            SoftQueue::Mem(q) => q.rx_burst(burst),
            SoftQueue::Pcap(q) => q.rx_burst(burst),
            SoftQueue::Tap(q) => q.rx_burst(burst),
            SoftQueue::AfPacket(q) => q.rx_burst(burst),
        }
    }

    fn tx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        match self {
            SoftQueue::Mem(q) => q.tx_burst(burst),
            SoftQueue::Pcap(q) => q.tx_burst(burst),
            SoftQueue::Tap(q) => q.tx_burst(burst),
            SoftQueue::AfPacket(q) => q.tx_burst(burst),
        }
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        match self {
            SoftQueue::Mem(q) => q.alloc(),
            SoftQueue::Pcap(q) => q.alloc(),
            SoftQueue::Tap(q) => q.alloc(),
            SoftQueue::AfPacket(q) => q.alloc(),
        }
    }

    fn rx_exhausted(&self) -> bool {
        match self {
            SoftQueue::Mem(q) => q.rx_exhausted(),
            SoftQueue::Pcap(q) => q.rx_exhausted(),
            SoftQueue::Tap(q) => q.rx_exhausted(),
            SoftQueue::AfPacket(q) => q.rx_exhausted(),
        }
    }
}

/// A software driver.
enum SoftDriver {
    Mem(Box<MemDriver>),
    Pcap(Box<PcapDriver>),
    Tap(Box<TapDriver>),
    AfPacket(Box<AfPacketDriver>),
}

impl SoftDriver {
    fn caps(&self) -> &PortCaps {
        match self {
            SoftDriver::Mem(d) => d.caps(),
            SoftDriver::Pcap(d) => d.caps(),
            SoftDriver::Tap(d) => d.caps(),
            SoftDriver::AfPacket(d) => d.caps(),
        }
    }

    fn stats(&self) -> PortStats {
        match self {
            SoftDriver::Mem(d) => d.stats(),
            SoftDriver::Pcap(d) => d.stats(),
            SoftDriver::Tap(d) => d.stats(),
            SoftDriver::AfPacket(d) => d.stats(),
        }
    }

    fn take_queues(&mut self) -> anyhow::Result<Vec<SoftQueue>> {
        Ok(match self {
            SoftDriver::Mem(d) => d.take_queues()?.into_iter().map(SoftQueue::Mem).collect(),
            SoftDriver::Pcap(d) => d.take_queues()?.into_iter().map(SoftQueue::Pcap).collect(),
            SoftDriver::Tap(d) => d.take_queues()?.into_iter().map(SoftQueue::Tap).collect(),
            SoftDriver::AfPacket(d) => d
                .take_queues()?
                .into_iter()
                .map(SoftQueue::AfPacket)
                .collect(),
        })
    }
}

fn open_software(port: &PortSpec, workers: u16) -> anyhow::Result<SoftDriver> {
    let mac = Config::default_mac(port).0;
    Ok(match port.driver {
        DriverKind::Mem => {
            let frames = match &port.pcap_rx {
                Some(path) => read_capture(path)?,
                None => Vec::new(),
            };
            let queues = (0..workers)
                .map(|_| MemQueue::generator(frames.clone()))
                .collect();
            SoftDriver::Mem(Box::new(MemDriver::new(&port.name, mac, port.mtu, queues)))
        }
        DriverKind::Pcap => SoftDriver::Pcap(Box::new(PcapDriver::open(
            &port.name,
            mac,
            port.mtu,
            port.pcap_rx.as_deref(),
            port.pcap_tx.as_deref(),
        )?)),
        DriverKind::Tap => SoftDriver::Tap(Box::new(TapDriver::open_with_mac(
            port.ifname(),
            workers,
            port.mtu,
            port.mac.map(|m| m.0 .0),
        )?)),
        DriverKind::AfPacket => {
            let mut opts = AfPacketOptions {
                mac: port.mac.map(|m| m.0 .0),
                ..AfPacketOptions::default()
            };
            if let Some(a) = &port.af_packet {
                opts.block_size = a.block_size.unwrap_or(opts.block_size);
                opts.block_count = a.block_count.unwrap_or(opts.block_count);
                opts.frame_size = a.frame_size.unwrap_or(opts.frame_size);
                opts.block_timeout_ms = a.block_timeout_ms.unwrap_or(opts.block_timeout_ms);
                opts.qdisc_bypass = a.qdisc_bypass.unwrap_or(opts.qdisc_bypass);
                opts.fanout_group_id = a.fanout_group_id.or(opts.fanout_group_id);
                if let Some(mode) = a.tx_mode {
                    opts.tx_mode = match mode {
                        TxModeConf::Sendmmsg => TxMode::Sendmmsg,
                        TxModeConf::Ring => TxMode::Ring,
                    };
                }
            }
            SoftDriver::AfPacket(Box::new(AfPacketDriver::open(
                port.ifname(),
                workers,
                opts,
            )?))
        }
        DriverKind::Dpdk => bail!(
            "port {}: dpdk ports cannot be mixed with software drivers",
            port.name
        ),
    })
}

/// Per port, the queues of each worker → per worker, its queue of each
/// port (in port order).
fn per_worker<Q>(ports: Vec<(String, Vec<Q>)>, workers: u16) -> anyhow::Result<Vec<Vec<Q>>> {
    let mut out: Vec<Vec<Q>> = (0..workers).map(|_| Vec::new()).collect();
    for (name, queues) in ports {
        if queues.len() != usize::from(workers) {
            bail!(
                "port {name}: the device gave {} queues for {workers} workers",
                queues.len()
            );
        }
        for (w, q) in queues.into_iter().enumerate() {
            out[w].push(q);
        }
    }
    Ok(out)
}

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
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Installs the AF_PACKET steering programs for `snap`.
fn steer_af_packet(drivers: &[Mutex<SoftDriver>], snap: &Snapshot) {
    for d in drivers {
        if let SoftDriver::AfPacket(a) = &*lock(d) {
            if let Err(e) = a.set_steering(&snap.steer) {
                eprintln!(
                    "lbd: port {}: cannot install the steering program: {e}",
                    a.caps().name
                );
            }
        }
    }
}

/// The `lbctl --port-stats` source for a set of opened devices, in port order.
fn port_stats_of<D: Send + 'static>(
    config: &Config,
    drivers: Arc<Vec<Mutex<D>>>,
    stats: fn(&D) -> PortStats,
) -> PortStatsFn {
    let names: Vec<String> = config.ports.iter().map(|p| p.name.clone()).collect();
    Box::new(move || {
        drivers
            .iter()
            .zip(&names)
            .enumerate()
            .map(|(i, (d, name))| port_stats_info(i, name, &stats(&lock(d))))
            .collect()
    })
}

fn no_start(_worker: u16) {}

fn start_software(config: &Config) -> anyhow::Result<Plane> {
    let workers = config.worker_count();
    let mut drivers = Vec::new();
    let mut queues = Vec::new();
    let mut macs = Vec::new();
    for (i, port) in config.ports.iter().enumerate() {
        let mut d = open_software(port, workers)
            .with_context(|| format!("ports[{i}] ({}): cannot open", port.name))?;
        macs.push(EthernetAddress(d.caps().mac));
        queues.push((port.name.clone(), d.take_queues()?));
        drivers.push(Mutex::new(d));
    }
    let topology = config.topology(workers, &macs)?;
    let state = config.control_state(topology)?;
    let snap = Arc::new(state.snapshot()?);
    let drivers = Arc::new(drivers);
    steer_af_packet(&drivers, &snap);
    let runtime = Runtime::start(
        per_worker(queues, workers)?,
        config.worker_config(),
        &config.cores(),
        snap,
        no_start,
    )
    .context("cannot start the workers")?;
    let port_stats = port_stats_of(config, drivers.clone(), SoftDriver::stats);
    let hook_drivers = drivers.clone();
    let on_publish: PublishHook = Box::new(move |snap| steer_af_packet(&hook_drivers, snap));
    Ok(Plane {
        handle: Arc::new(runtime),
        state,
        port_stats: Some(port_stats),
        on_publish: Some(on_publish),
        keep: Box::new(drivers),
    })
}

#[cfg(feature = "dpdk")]
fn dpdk_worker_start(_worker: u16) {
    if let Err(e) = rvs::dataplane::driver::dpdk::register_worker_thread() {
        eprintln!("lbd: worker cannot register with DPDK: {e}");
    }
}

#[cfg(feature = "dpdk")]
fn start_dpdk(config: &Config) -> anyhow::Result<Plane> {
    use rvs::dataplane::driver::dpdk::{DpdkDriver, Eal};
    let workers = config.worker_count();
    let args = config
        .dpdk
        .as_ref()
        .map(|d| d.eal_args.clone())
        .unwrap_or_default();
    let eal = Eal::init(&args).context("cannot start the DPDK EAL")?;
    let mut drivers = Vec::new();
    let mut queues = Vec::new();
    let mut macs = Vec::new();
    for (i, port) in config.ports.iter().enumerate() {
        let mut d =
            DpdkDriver::open(&eal, port.device(), workers, Some(port.mtu)).with_context(|| {
                format!("ports[{i}] ({}): cannot open {}", port.name, port.device())
            })?;
        macs.push(match port.mac {
            Some(mac) => mac.0,
            None => EthernetAddress(d.caps().mac),
        });
        queues.push((port.name.clone(), d.take_queues()?));
        drivers.push(Mutex::new(d));
    }
    let mut topology = config.topology(workers, &macs)?;
    // Devices that spread by RSS (queue i = worker i): workers choose FULLNAT
    // local ports whose replies land on their own queue.
    for (conf, d) in topology.ports.iter_mut().zip(&drivers) {
        let d = lock(d);
        if d.caps().steering == rvs::dataplane::driver::Steering::Rss {
            conf.rss = d
                .rss()
                .filter(|r| r.reta_confirmed)
                .map(|r| Arc::new(r.clone()));
        }
    }
    let state = config.control_state(topology)?;
    let snap = Arc::new(state.snapshot()?);
    let runtime = Runtime::start(
        per_worker(queues, workers)?,
        config.worker_config(),
        &config.cores(),
        snap,
        dpdk_worker_start,
    )
    .context("cannot start the workers")?;
    let drivers = Arc::new(drivers);
    if let Ok(snap) = state.snapshot() {
        steer_dpdk_flows(&drivers, &snap);
    }
    let port_stats = port_stats_of(config, drivers.clone(), |d: &DpdkDriver| d.stats());
    let hook_drivers = drivers.clone();
    let on_publish: PublishHook = Box::new(move |snap| steer_dpdk_flows(&hook_drivers, snap));
    Ok(Plane {
        handle: Arc::new(runtime),
        state,
        port_stats: Some(port_stats),
        on_publish: Some(on_publish),
        // Ports before the EAL: dropping the EAL last cleans it up.
        keep: Box::new((drivers, eal)),
    })
}

/// Where the device takes flow rules, steer FULLNAT replies to the worker
/// owning their local port (`lport % workers`, for a power-of-two worker
/// count) with one rule per local address, protocol and worker, as DPVS's
/// sa_pool does; rebuilt whenever the set of local addresses may have
/// changed. A device that refuses them keeps RSS-aware local-port choice
/// and the software ring (reported once).
#[cfg(feature = "dpdk")]
fn steer_dpdk_flows(drivers: &[Mutex<rvs::dataplane::driver::dpdk::DpdkDriver>], snap: &Snapshot) {
    use rvs::dataplane::driver::dpdk::flow::FlowSteering;
    use rvs::steer::LportMatch;
    use std::sync::atomic::{AtomicBool, Ordering};
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let Some(parts) = LportMatch::owner_partition(snap.workers).filter(|_| snap.workers > 1) else {
        return;
    };
    let mut lips: Vec<std::net::IpAddr> = snap
        .services
        .iter()
        .flat_map(|s| s.laddrs.iter().copied())
        .collect();
    lips.sort();
    lips.dedup();
    for d in drivers {
        let d = lock(d);
        if lips.is_empty() {
            let _ = d.remove_fullnat_rules();
            continue;
        }
        match d.install_fullnat_rules(&lips, &parts) {
            Ok(FlowSteering::Installed { rules }) => eprintln!(
                "lbd: port {}: {rules} flow rules steer FULLNAT replies to their workers",
                d.caps().name
            ),
            Ok(FlowSteering::Rejected { reason }) => {
                if !REPORTED.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "lbd: port {}: flow rules refused ({reason}); FULLNAT replies use RSS-aware local ports and the software ring",
                        d.caps().name
                    );
                }
            }
            Err(e) => eprintln!("lbd: port {}: flow rules: {e}", d.caps().name),
        }
    }
}

#[cfg(not(feature = "dpdk"))]
fn start_dpdk(_config: &Config) -> anyhow::Result<Plane> {
    bail!("driver dpdk: lbd was built without dpdk support (rebuild with --features dpdk)")
}

/// Blocks SIGINT and SIGTERM in the calling thread (and every thread it
/// starts afterwards) and returns the set for [`wait_for_signal`].
fn block_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is a plain C struct for which all-zero is a valid
    // value; sigemptyset initialises it right after.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the signal
    // numbers are valid; pthread_sigmask reads `set` and ignores the null
    // old-set pointer.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(set)
}

/// Waits for one of the signals in `set` (blocked by [`block_signals`]).
fn wait_for_signal(set: &libc::sigset_t) -> std::io::Result<i32> {
    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is an initialised sigset_t and `signal` a valid
        // out-pointer for the duration of the call.
        let rc = unsafe { libc::sigwait(set, &mut signal) };
        match rc {
            0 => return Ok(signal),
            libc::EINTR => continue,
            err => return Err(std::io::Error::from_raw_os_error(err)),
        }
    }
}
