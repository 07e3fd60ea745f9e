//! The real `lbd` as a test's child process, and `lbctl` to talk to it.
//!
//! * [`Lbd::start`] spawns the command it is given (from a YAML file, with
//!   `--socket`, inside a namespace: the caller decides) and returns once
//!   lbd answers `lbctl --port-stats` — its ports are open then; it panics
//!   with lbd's log if lbd exits or stays silent for 30 s.
//! * [`Lbd::stop_cleanly`] is SIGTERM and lbd must exit 0 by itself without
//!   a panic; dropping an [`Lbd`] stops it regardless (by PID).
//! * [`lbctl`] runs the real `lbctl` as an operator would, printing the
//!   command and its output.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use rvs::ctl::protocol::{ConnInfo, PortStatsInfo, Response};

use super::process::{poll_until, Proc};

pub const LBD: &str = env!("CARGO_BIN_EXE_lbd");
pub const LBCTL: &str = env!("CARGO_BIN_EXE_lbctl");

/// A running lbd, stopped when dropped.
pub struct Lbd {
    proc: Proc,
    socket: PathBuf,
}

impl Lbd {
    /// Spawns `cmd` (an lbd command line whose control socket is `socket`)
    /// with its output to `log`; waits until it answers.
    pub fn start(what: &str, cmd: Command, socket: &Path, log: &Path) -> Lbd {
        let mut proc = Proc::spawn(what, cmd, log);
        let answered = poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
            if let Some(status) = proc.try_wait() {
                panic!("{what} exited at start ({status}):\n{}", proc.log_text());
            }
            (socket.exists() && port_stats(socket).is_some()).then_some(())
        });
        assert!(
            answered.is_some(),
            "{what} did not answer on {}:\n{}",
            socket.display(),
            proc.log_text()
        );
        Lbd {
            proc,
            socket: socket.to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `lbctl ARGS` against this lbd; see [`lbctl`].
    pub fn lbctl(&self, args: &[&str]) -> String {
        lbctl(&self.socket, args)
    }

    /// lbd's output so far.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// lbd's exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.proc.try_wait()
    }

    /// SIGTERM, up to `grace` to exit by itself, then SIGKILL; the status if
    /// it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.proc.stop(grace)
    }

    /// SIGTERM; lbd must exit by itself within 10 s, successfully, without
    /// panicking.
    pub fn stop_cleanly(mut self) {
        let status = self.proc.stop(Duration::from_secs(10));
        let log = self.proc.log_text();
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not stop cleanly after SIGTERM ({status:?}):\n{log}",
            self.proc.what
        );
        assert!(
            !log.contains("panicked"),
            "{} panicked:\n{log}",
            self.proc.what
        );
    }
}

/// Runs `lbctl --socket SOCKET ARGS` with `input` on its stdin (or none);
/// its output, whatever its status.
pub fn lbctl_with_input(socket: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut child = Command::new(LBCTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lbctl");
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("lbctl output")
}

/// Runs `lbctl --socket SOCKET ARGS`; its output, whatever its status.
pub fn lbctl_output(socket: &Path, args: &[&str]) -> Output {
    lbctl_with_input(socket, args, None)
}

/// Runs `lbctl ARGS` as an operator would (printed with its output); it
/// must succeed; returns its stdout.
pub fn lbctl(socket: &Path, args: &[&str]) -> String {
    println!("# lbctl {}", args.join(" "));
    let out = lbctl_output(socket, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    assert!(
        out.status.success(),
        "lbctl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `lbctl ARGS`; it must fail; returns (exit code, stderr).
pub fn lbctl_fails(socket: &Path, args: &[&str]) -> (i32, String) {
    let out = lbctl_output(socket, args);
    assert!(!out.status.success(), "lbctl {args:?} succeeded");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `lbctl --dataplane-stats -o json`: every worker's counters.
pub fn dataplane_stats(socket: &Path) -> Vec<rvs::ctl::protocol::WorkerStatsInfo> {
    match lbctl_json(socket, &["--dataplane-stats"]) {
        Response::DataplaneStats { workers } => workers,
        other => panic!("lbctl --dataplane-stats -o json: {other:?}"),
    }
}

/// `lbctl ARGS -o json` decoded; panics unless lbctl succeeds.
pub fn lbctl_json(socket: &Path, args: &[&str]) -> Response {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = lbctl_output(socket, &all);
    assert!(
        out.status.success(),
        "lbctl {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("lbctl {all:?}: not a response ({e})"))
}

/// `lbctl -Lnc -o json`: the connection entries.
pub fn conns(socket: &Path) -> Vec<ConnInfo> {
    match lbctl_json(socket, &["-Lnc"]) {
        Response::Conns { conns, truncated } => {
            assert!(!truncated, "connection list truncated");
            conns
        }
        other => panic!("lbctl -Lnc -o json: unexpected answer {other:?}"),
    }
}

/// `lbctl --port-stats -o json`, or `None` while lbd does not answer.
pub fn port_stats(socket: &Path) -> Option<Vec<PortStatsInfo>> {
    let out = lbctl_output(socket, &["--port-stats", "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    match serde_json::from_slice::<Response>(&out.stdout) {
        Ok(Response::PortStats { ports }) => Some(ports),
        other => panic!("lbctl --port-stats -o json: unexpected answer {other:?}"),
    }
}

/// `lbctl -Ln --stats` parsed: the counters of the service line whose
/// address is `vip_port` (e.g. "10.0.0.100:80") and of its servers.
pub fn stats(socket: &Path, proto: &str, vip_port: &str) -> ServiceStats {
    let text = lbctl(socket, &["-Ln", "--stats"]);
    parse_stats(&text, proto, vip_port)
        .unwrap_or_else(|| panic!("no {proto} {vip_port} in lbctl -Ln --stats:\n{text}"))
}

/// Counters of one service (`lbctl -Ln --stats`), and of its servers.
#[derive(Debug, Clone, Default)]
pub struct ServiceStats {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Per real server `ADDR:PORT`: (conns, in_pkts, out_pkts).
    pub dests: BTreeMap<String, (u64, u64, u64)>,
}

/// `print_largenum`'s units back to numbers ("12K" → 12000).
fn largenum(s: &str) -> Option<u64> {
    let (digits, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1_000),
        'M' => (&s[..s.len() - 1], 1_000_000),
        'G' => (&s[..s.len() - 1], 1_000_000_000),
        'T' => (&s[..s.len() - 1], 1_000_000_000_000),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * mult)
}

/// The service `proto vip_port`'s counters in `lbctl -Ln --stats` output.
pub fn parse_stats(text: &str, proto: &str, vip_port: &str) -> Option<ServiceStats> {
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 7 && f[0] == proto && f[1] == vip_port {
            let n = |k: usize| largenum(f[k]);
            let mut st = ServiceStats {
                conns: n(2)?,
                in_pkts: n(3)?,
                out_pkts: n(4)?,
                in_bytes: n(5)?,
                out_bytes: n(6)?,
                dests: BTreeMap::new(),
            };
            while let Some(next) = lines.peek() {
                let g: Vec<&str> = next.split_whitespace().collect();
                if g.first() != Some(&"->") || g.len() < 5 {
                    break;
                }
                st.dests.insert(
                    g[1].to_string(),
                    (largenum(g[2])?, largenum(g[3])?, largenum(g[4])?),
                );
                lines.next();
            }
            return Some(st);
        }
    }
    None
}
