//! lbd — the rvs daemon: the data-plane workers plus the control plane
//! that `lbctl` talks to.
//!
//! ```text
//! lbd [-c|--config FILE] [--socket PATH] [--workers N] [--metrics-listen ADDR:PORT]
//! lbd --check-config FILE
//! lbd --keepalived KEEPALIVED.CONF [-c PORTS.yaml] [--config-id ID]
//! lbd --check-config --keepalived KEEPALIVED.CONF [-c PORTS.yaml]
//! lbd -c FILE --replay PORT=IN.pcap [--replay PORT=IN.pcap ...] --capture-dir DIR
//! ```
//!
//! * Without `--config` lbd runs the control plane only (no ports, no
//!   workers): services can be added, listed, saved and restored.
//! * With ports it runs a [`rvs::daemon::Daemon`] until SIGINT or SIGTERM;
//!   SIGHUP (or `lbctl --reload`) re-reads `--config FILE` and applies the
//!   difference (see `rvs::daemon::reload`); SIGUSR2 (or `lbctl --drain`)
//!   withdraws the announced routes and stops once connections end
//!   (`rvs::announce`). Under systemd (`Type=notify`)
//!   it reports readiness once every worker runs.
//! * `--check-config` validates a file (syntax, values, references, and
//!   every service through the same rules as `lbctl`) and exits: 0 if valid,
//!   1 with the error otherwise.
//! * `--keepalived` takes the services from an operator's keepalived.conf
//!   (`rvs::keepalived`); `-c` then gives only ports, workers and routes.
//!   Each diagnostic is printed with its file and line; `--check-config`
//!   exits with `keepalived -t`'s code (0, 4, 5 or 6), and lbd starts only
//!   on what keepalived would run with. The file's checkers run in lbd;
//!   SIGHUP (or `lbctl --reload`) re-reads the keepalived file and `-c`.
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
use rvs::daemon::reload::{ConfigSource, KeepalivedSource};
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
    /// Validate FILE (or, with --keepalived, the keepalived file) and exit.
    #[arg(long, value_name = "FILE", num_args = 0..=1, conflicts_with = "replay")]
    check_config: Option<Option<PathBuf>>,
    /// Take the services from a keepalived.conf (ports come from --config).
    #[arg(long, value_name = "FILE", conflicts_with = "replay")]
    keepalived: Option<PathBuf>,
    /// keepalived's config id (-i) for `@ID` lines (default: short host name).
    #[arg(long, value_name = "ID", requires = "keepalived")]
    config_id: Option<String>,
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
    let args = Args::parse();
    if args.keepalived.is_some() {
        return run_keepalived(args);
    }
    match run(args) {
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
    if let Some(check) = &args.check_config {
        let path = match (check, &args.config) {
            (Some(path), None) => path,
            (Some(_), Some(_)) => {
                return Err(anyhow!("--check-config FILE and --config FILE: give one"))
            }
            (None, _) => {
                return Err(anyhow!(
                    "--check-config needs a FILE (or --keepalived FILE)"
                ))
            }
        };
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
            keepalived: None,
        }),
        ..DaemonOptions::default()
    };
    Daemon::run(&config, options)?;
    Ok(())
}

/// `--keepalived FILE`: prints the reader's diagnostics; with
/// `--check-config` exits with keepalived's `-t` code, else runs the daemon
/// on the converted configuration unless the file is refused.
fn run_keepalived(args: Args) -> ExitCode {
    let Some(file) = args.keepalived.clone() else {
        return ExitCode::FAILURE;
    };
    let fail = |err: anyhow::Error| {
        eprintln!("lbd: {}", causes_once(err.chain().map(|c| c.to_string())));
        ExitCode::from(rvs::keepalived::diag::EXIT_CANNOT_RUN)
    };
    if let Some(Some(other)) = &args.check_config {
        return fail(anyhow!(
            "--check-config {} with --keepalived: give the file once (--check-config --keepalived FILE)",
            other.display()
        ));
    }
    let ports = match &args.config {
        Some(path) => match load_config(path, args.workers) {
            Ok(c) => Some(c),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let config_id = args
        .config_id
        .clone()
        .unwrap_or_else(rvs::keepalived::lexer::default_config_id);
    let opts = rvs::keepalived::lexer::LexOptions {
        config_id: config_id.clone(),
        includes: true,
    };
    let import = rvs::keepalived::import(&file, &opts, ports);
    eprint!("{}", import.diags);
    let code = import.diags.exit_code();
    let Some(config) = import.config else {
        eprintln!(
            "lbd: {}: refused (exit {code}); nothing started",
            file.display()
        );
        return ExitCode::from(code);
    };
    if args.check_config.is_some() {
        return match check_config(&config) {
            Ok(summary) => {
                println!("{}: {summary}", file.display());
                ExitCode::from(code)
            }
            Err(e) => fail(anyhow::Error::new(e).context(file.display().to_string())),
        };
    }
    let options = DaemonOptions {
        socket: args.socket.clone(),
        metrics_listen: args.metrics_listen,
        // SIGHUP / `lbctl --reload` re-read the keepalived file and the ports YAML.
        source: Some(ConfigSource {
            path: file.clone(),
            workers: args.workers,
            keepalived: Some(KeepalivedSource {
                ports: args.config.clone(),
                config_id,
            }),
        }),
        ..DaemonOptions::default()
    };
    match Daemon::run(&config, options) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e.into()),
    }
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
