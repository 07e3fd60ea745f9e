//! Child processes of a test (lbd, nginx, python helpers, curl, wrk, ...):
//! each runs in its own process group with its output in a log file, and is
//! stopped BY ITS PID when its guard drops — SIGTERM to its group, a grace
//! period, then SIGKILL. Also: running a command to completion, and bounded
//! waits for a condition (never a fixed sleep).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The effective user id (0: root).
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether `tool` is an executable file on `PATH` (or in /usr/sbin, /sbin).
pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

/// Runs a command; panics with its output unless it succeeds; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Calls `ready` every `every` until it gives a value or `limit` has passed
/// (then `None`; the caller says what did not happen).
pub fn poll_until<T>(
    limit: Duration,
    every: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Sends `signal` to process `pid` (one this test started or found in a
/// namespace it created); errors (already gone) are ignored.
pub fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) only sends a signal; the caller names a process (or,
    // negative, a process group) that the test created.
    unsafe { libc::kill(pid, signal) };
}

/// A child process in its own process group, stopped (group-wide, by its
/// PID) on drop.
pub struct Proc {
    /// What it is, for messages ("lbd", "nginx rs1").
    pub what: String,
    child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr to `log`.
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> Proc {
        let file = fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = file.try_clone().expect("dup log fd");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Proc {
            what: what.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// Spawns `cmd` like [`Proc::spawn`] and waits (at most `limit`) until
    /// its log contains `marker` (a helper's "READY" line); panics with the
    /// log if it exits or stays silent.
    pub fn spawn_ready(
        what: &str,
        cmd: Command,
        log: &Path,
        marker: &str,
        limit: Duration,
    ) -> Proc {
        let mut proc = Proc::spawn(what, cmd, log);
        let ready = poll_until(limit, Duration::from_millis(20), || {
            if proc.log_text().contains(marker) {
                return Some(true);
            }
            proc.try_wait().map(|_| false)
        });
        assert!(
            ready == Some(true),
            "{what} did not say {marker:?} within {limit:?} ({:?}):\n{}",
            proc.try_wait(),
            proc.log_text()
        );
        proc
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until it ends, at most `limit`; panics if it does not.
    pub fn wait_for(&mut self, limit: Duration) -> ExitStatus {
        poll_until(limit, Duration::from_millis(20), || self.try_wait()).unwrap_or_else(|| {
            panic!(
                "{} still running after {limit:?}; log:\n{}",
                self.what,
                self.log_text()
            )
        })
    }

    /// What it wrote so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` to the process group (named by the child's PID: it was
    /// spawned as the leader of its own group).
    pub fn signal_group(&self, sig: libc::c_int) {
        signal(-(self.child.id() as libc::pid_t), sig);
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; returns the status if
    /// it exited by itself. Whatever else still runs in its group is killed.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_wait() {
            self.signal_group(libc::SIGKILL);
            return Some(status);
        }
        self.signal_group(libc::SIGTERM);
        let status = poll_until(grace, Duration::from_millis(10), || self.try_wait());
        self.signal_group(libc::SIGKILL);
        if status.is_none() {
            let _ = self.child.wait();
        }
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}
