//! lbd — the rvs daemon: the data-plane workers plus the control plane
//! that `lbctl` talks to.
//!
//! ```text
//! lbd [-c|--config FILE] [--socket PATH] [--workers N] [--metrics-listen ADDR:PORT]
//! lbd --check-config FILE
//! lbd -c FILE --replay PORT=IN.pcap [--replay PORT=IN.pcap ...] --capture-dir DIR
//! ```
//!
//! * Without `--config` lbd runs the control plane only (no ports, no
//!   workers): services can be added, listed, saved and restored.
//! * With ports it runs a [`rvs::daemon::Daemon`] until SIGINT or SIGTERM;
//!   SIGHUP (or `lbctl --reload`) re-reads `--config FILE` and applies the
//!   difference (see `rvs::daemon::reload`). Under systemd (`Type=notify`)
//!   it reports readiness once every worker runs.
//! * `--check-config` validates a file (syntax, values, references, and
//!   every service through the same rules as `lbctl`) and exits: 0 if valid,
//!   1 with the error otherwise.
//! * `--replay` pushes captures through one worker running the configured
//!   tables, writing what each port sends to `DIR/PORT.pcap`.
//!
//! This file is argument parsing only; the daemon lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::Parser;

use rvs::ctl::config::Config;
use rvs::daemon::log::causes_once;
use rvs::daemon::reload::ConfigSource;
use rvs::daemon::{check_config, Daemon, DaemonOptions};
use rvs::dataplane::replay;

/// Command line (also read by `examples/gen_docs.rs` for the man page and
/// shell completions).
#[derive(Parser, Debug)]
#[command(
    name = "lbd",
    version,
    about = "rvs load-balancer daemon (LVS/IPVS in user space)"
)]
pub(crate) struct Args {
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
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (overrides
    /// metrics.listen; off by default).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lbd: {}", causes_once(err.chain().map(|c| c.to_string())));
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

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.check_config {
        let config = load_config(path, args.workers)?;
        let summary = check_config(&config).with_context(|| format!("{}", path.display()))?;
        println!("{}: {summary}", path.display());
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
    let options = DaemonOptions {
        socket: args.socket.clone(),
        metrics_listen: args.metrics_listen,
        source: args.config.as_ref().map(|path| ConfigSource {
            path: path.clone(),
            workers: args.workers,
        }),
        ..DaemonOptions::default()
    };
    Daemon::run(&config, options)?;
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
