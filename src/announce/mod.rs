//! announce — route announcement that follows health, and graceful drain,
//! for several active directors behind an ECMP router (issue 15). One
//! control thread of `lbd` (never a worker) keeps a BIRD include file in
//! step with the VIPs this director can serve and tells BIRD to re-read it;
//! BIRD announces them over the kernel path (`ports[].kernel_if`).
//!
//! * What is announced: the VIP (IPv4 /32, IPv6 /128) of every service
//!   that has at least one real server in the published tables with
//!   weight > 0 ([`servable_vips`]). A dead server (health) is not in the
//!   tables; a service whose sorry server is in force (quorum lost) does
//!   not count: another director that still has quorum serves better, and
//!   ECMP sends it the flows. VIPs on VRRP standby are not announced.
//!   Nothing is announced while draining or stopping.
//! * How: the include holds whole `protocol static` blocks (one
//!   top-level `include` line in `bird.conf` takes both), one per family,
//!   each route a
//!   `blackhole` (BIRD on a director has no kernel protocol, so the route
//!   never reaches the director's table; the BGP next hop is the
//!   session's own address). The file is written atomically (temporary
//!   file, then rename) and the `birdc` command runs only when the set
//!   changed, or again after a failure (backoff 0.5 s doubling to 10 s).
//! * Drain (`lbctl --drain`, or SIGUSR2 to `lbd`): withdraw first, keep forwarding whatever
//!   still arrives, and once no connection is active or no packet reached
//!   a service for [`DRAIN_IDLE`] (both counted from at least
//!   [`DRAIN_GRACE`] after the withdrawal, so the BGP withdraw leaves), or
//!   the timeout passed, call the daemon's drained hook (in `lbd`: SIGTERM
//!   to itself).
//!
//! Rules: the thread reads the tables under the configuration lock
//! without I/O ([`Control::inspect`]) and never blocks a worker; every
//! `birdc` run is bounded ([`BIRDC_TIMEOUT`], [`STOP_BIRDC_TIMEOUT`] on
//! stop); [`Announcer::stop`] withdraws every route before it returns
//! (bounded) so the daemon stops its workers only after BIRD was told; each
//! thread here stops within one poll period once asked.

pub mod conf;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ctl::apply::ControlState;
use crate::ctl::protocol::{AnnounceInfo, Request, Response};
use crate::ctl::server::Control;
use crate::daemon::log::{log, Level};
use crate::dataplane::counters::CoreCounters;
use conf::AnnounceConf;

/// How often the thread looks at the tables (and a drain at the
/// connection count).
pub const POLL: Duration = Duration::from_millis(100);
/// How long one `birdc` run may take while lbd runs.
pub const BIRDC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the withdrawal may take when lbd stops (its 2 s budget).
pub const STOP_BIRDC_TIMEOUT: Duration = Duration::from_millis(700);
/// A drain's timeout when none is given.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest drain timeout accepted.
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// A drain lasts at least this long after the withdrawal (the BGP
/// withdraw leaves through the workers, the router converges).
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// A drain also ends when no packet reached any service for this long
/// after the withdrawal: ECMP moved every flow elsewhere (a router keeps
/// no per-flow state), so the connections left in the table would only
/// idle until their timeouts.
pub const DRAIN_IDLE: Duration = Duration::from_secs(3);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Why the set could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The include could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The include (or its temporary file).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command's first word.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command failed or took too long.
    #[error("{command} failed: {detail}")]
    Command {
        /// The command's first word.
        command: String,
        /// Its exit and output.
        detail: String,
    },
}

/// The VIPs of the services `state` can serve: at least one real server
/// in the published tables with weight > 0, no sorry server in force, the
/// VIP not on VRRP standby.
pub fn servable_vips(state: &ControlState) -> BTreeSet<IpAddr> {
    state
        .services()
        .iter()
        .filter(|s| !state.standby().contains(&s.spec.key.addr))
        .filter(|s| !state.sorry_in_force(s))
        .filter(|s| state.effective_dests(s).iter().any(|d| d.spec.weight > 0))
        .map(|s| s.spec.key.addr)
        .collect()
}

/// The include's text for `vips`: one `protocol static` per family, each
/// VIP a host route.
pub fn render_include(conf: &AnnounceConf, vips: &BTreeSet<IpAddr>) -> String {
    let mut text = String::from(
        "# Written by lbd (rvs) from its tables: the VIPs this director can serve.\n\
         # Do not edit; lbd rewrites it and runs birdc when the set changes.\n",
    );
    for v6 in [false, true] {
        text.push_str(&format!(
            "protocol static {} {{\n  {};\n",
            conf.protocol_name(v6),
            if v6 { "ipv6" } else { "ipv4" }
        ));
        for vip in vips.iter().filter(|a| a.is_ipv6() == v6) {
            let len = if v6 { 128 } else { 32 };
            text.push_str(&format!("  route {vip}/{len} blackhole;\n"));
        }
        text.push_str("}\n");
    }
    text
}

/// Writes `text` to `path` atomically: a temporary file beside it, synced,
/// then renamed over it (BIRD never reads half a file).
pub fn write_atomically(path: &Path, text: &str) -> Result<(), AnnounceError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", name.unwrap_or_default()));
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| AnnounceError::Write { path: p, source }
    };
    let mut file = std::fs::File::create(&tmp).map_err(err(&tmp))?;
    file.write_all(text.as_bytes()).map_err(err(&tmp))?;
    file.sync_all().map_err(err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(err(path))
}

/// Runs `argv` (no shell) and waits at most `timeout` (then kills it);
/// success is exit status 0 (`birdc` exits 1 on a parse error or when
/// BIRD is not running). Returns what it printed.
pub fn run_command(argv: &[String], timeout: Duration) -> Result<String, AnnounceError> {
    run_command_until(argv, timeout, &|| false)
}

/// [`run_command`], also killed as soon as `abort` says so (lbd stops).
fn run_command_until(
    argv: &[String],
    timeout: Duration,
    abort: &dyn Fn() -> bool,
) -> Result<String, AnnounceError> {
    let command = argv.first().cloned().unwrap_or_default();
    let mut child = std::process::Command::new(&command)
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| AnnounceError::Spawn {
            command: command.clone(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if abort() => {
                let _ = child.kill();
                let _ = child.wait();
                break Err("killed: lbd is stopping".to_string());
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("no answer within {timeout:?} (killed)"));
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut out);
    }
    let out = out.trim().to_string();
    match status {
        Ok(s) if s.success() => Ok(out),
        Ok(s) => Err(AnnounceError::Command {
            command,
            detail: format!("{s}: {}", out.replace('\n', " / ")),
        }),
        Err(detail) => Err(AnnounceError::Command { command, detail }),
    }
}

/// Active connections on every worker (all services, real servers that
/// left included).
pub fn active_conns(counters: &[Arc<CoreCounters>]) -> u64 {
    counters
        .iter()
        .flat_map(|c| c.dest_conns.iter())
        .map(|c| c.active.load(Relaxed))
        .fold(0u64, u64::wrapping_add)
}

/// Packets that reached a service (client → server) on every worker.
pub fn service_packets(counters: &[Arc<CoreCounters>]) -> u64 {
    counters
        .iter()
        .flat_map(|c| c.services.iter())
        .map(|t| t.inpkts.load(Relaxed))
        .fold(0u64, u64::wrapping_add)
}

/// What the drained hook is: called once when a drain ends.
pub type DrainedHook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Inner {
    /// The thread and any drain watcher must end.
    stop: bool,
    /// Draining or stopping: announce nothing.
    withdrawn: bool,
    /// Retry now (skip the backoff).
    retry_now: bool,
    /// The set in force in BIRD (`None`: never applied).
    announced: Option<BTreeSet<IpAddr>>,
    /// When the empty set was first applied after `withdrawn`.
    withdrawn_at: Option<Instant>,
    servable: BTreeSet<IpAddr>,
    last_error: Option<String>,
    drain_deadline: Option<Instant>,
    drained: bool,
}

struct Shared {
    conf: Option<AnnounceConf>,
    inner: Mutex<Inner>,
    changed: Condvar,
    control: Weak<Control>,
    on_drained: Mutex<Option<DrainedHook>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The announcement thread (when `announce:` is configured) and the drain.
pub struct Announcer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Announcer {
    /// Starts announcing for `control` per `conf` (`None`: nothing is
    /// announced, drain still works) and installs the `lbctl --announce`
    /// and `--drain` answers on it.
    pub fn start(conf: Option<AnnounceConf>, control: &Arc<Control>) -> std::io::Result<Announcer> {
        let shared = Arc::new(Shared {
            conf,
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            control: Arc::downgrade(control),
            on_drained: Mutex::new(None),
            watcher: Mutex::new(None),
        });
        let thread = match shared.conf {
            Some(_) => {
                let s = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("lbd-announce".into())
                        .spawn(move || announce_loop(&s))?,
                )
            }
            None => None,
        };
        let weak = Arc::downgrade(&shared);
        control.set_announce(Box::new(move |request| match weak.upgrade() {
            Some(shared) => answer(&shared, request),
            None => Response::error(
                crate::ctl::protocol::ErrorKind::Internal,
                "lbd is stopping".to_string(),
            ),
        }));
        Ok(Announcer { shared, thread })
    }

    /// What is called once a drain ends (`lbd`: SIGTERM to itself).
    pub fn set_on_drained(&self, hook: DrainedHook) {
        *lock(&self.shared.on_drained) = Some(hook);
    }

    /// Whether a drain ended (the hook was called).
    pub fn drained(&self) -> bool {
        lock(&self.shared.inner).drained
    }

    /// The state as `lbctl --announce` shows it.
    pub fn status(&self) -> AnnounceInfo {
        status(&self.shared)
    }

    /// Starts a drain (see [`Request::Drain`]).
    pub fn drain(&self, timeout: Duration) -> Result<(), String> {
        drain(&self.shared, timeout)
    }

    /// Withdraws every route (waiting at most about
    /// [`STOP_BIRDC_TIMEOUT`] for BIRD to take it) and stops the threads.
    /// True when routes were announced and BIRD took their withdrawal (the
    /// daemon then lets BGP's withdraw leave before stopping workers).
    pub fn stop(mut self) -> bool {
        let shared = &self.shared;
        let had = lock(&shared.inner)
            .announced
            .as_ref()
            .is_some_and(|s| !s.is_empty());
        let withdrawn = match &shared.conf {
            Some(_) if had => {
                let deadline = Instant::now() + STOP_BIRDC_TIMEOUT + Duration::from_millis(150);
                let mut g = lock(&shared.inner);
                g.withdrawn = true;
                g.retry_now = true;
                shared.changed.notify_all();
                loop {
                    if g.announced.as_ref().is_some_and(BTreeSet::is_empty) {
                        break true;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    g = shared
                        .changed
                        .wait_timeout(g, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
            _ => false,
        };
        lock(&shared.inner).stop = true;
        shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(t) = lock(&shared.watcher).take() {
            let _ = t.join();
        }
        withdrawn
    }
}

fn answer(shared: &Arc<Shared>, request: &Request) -> Response {
    if let Request::Drain { timeout_secs } = request {
        let timeout = timeout_secs.map_or(DEFAULT_DRAIN_TIMEOUT, Duration::from_secs);
        if timeout > MAX_DRAIN_TIMEOUT {
            return Response::error(
                crate::ctl::protocol::ErrorKind::Invalid,
                format!(
                    "drain timeout {} s out of range 0..={}",
                    timeout.as_secs(),
                    MAX_DRAIN_TIMEOUT.as_secs()
                ),
            );
        }
        if let Err(e) = drain(shared, timeout) {
            return Response::error(crate::ctl::protocol::ErrorKind::Internal, e);
        }
        // Answer once BIRD took the withdrawal (or failed to), so that the
        // operator sees the routes gone.
        let deadline = Instant::now() + BIRDC_TIMEOUT + POLL;
        let mut g = lock(&shared.inner);
        while shared.conf.is_some() && g.withdrawn_at.is_none() && !g.stop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = shared
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
    Response::Announce {
        status: Box::new(status(shared)),
    }
}

fn status(shared: &Shared) -> AnnounceInfo {
    let active = shared
        .control
        .upgrade()
        .map_or(0, |c| active_conns(c.counters()));
    let g = lock(&shared.inner);
    AnnounceInfo {
        include: shared
            .conf
            .as_ref()
            .map(|c| c.bird_include.display().to_string()),
        announced: g
            .announced
            .as_ref()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default(),
        servable: g.servable.iter().copied().collect(),
        draining: g.drain_deadline.is_some(),
        drain_left_secs: g
            .drain_deadline
            .map(|d| d.saturating_duration_since(Instant::now()).as_secs()),
        active_conns: active,
        last_error: g.last_error.clone(),
    }
}

fn drain(shared: &Arc<Shared>, timeout: Duration) -> Result<(), String> {
    {
        let mut g = lock(&shared.inner);
        if g.stop {
            return Err("lbd is stopping".to_string());
        }
        let deadline = Instant::now() + timeout;
        let again = g.drain_deadline.is_some();
        // A second drain may shorten the wait, never lengthen it.
        g.drain_deadline = Some(g.drain_deadline.map_or(deadline, |d| d.min(deadline)));
        g.withdrawn = true;
        g.retry_now = true;
        shared.changed.notify_all();
        if again {
            return Ok(());
        }
        if shared.conf.is_none() {
            g.withdrawn_at = Some(Instant::now());
        }
    }
    log(
        Level::Notice,
        &format!(
            "drain: withdrawing every route, stopping when no connection is active or in {} s",
            timeout.as_secs()
        ),
    );
    let s = shared.clone();
    let handle = std::thread::Builder::new()
        .name("lbd-drain".into())
        .spawn(move || drain_loop(&s))
        .map_err(|e| format!("cannot start the drain thread: {e}"))?;
    *lock(&shared.watcher) = Some(handle);
    Ok(())
}

fn drain_loop(shared: &Shared) {
    let mut last_packets = None;
    let mut quiet_since = Instant::now();
    loop {
        let (active, packets) = shared.control.upgrade().map_or((0, 0), |c| {
            (active_conns(c.counters()), service_packets(c.counters()))
        });
        let now = Instant::now();
        if last_packets != Some(packets) {
            last_packets = Some(packets);
            quiet_since = now;
        }
        let mut g = lock(&shared.inner);
        if g.stop {
            return;
        }
        let expired = g.drain_deadline.is_some_and(|d| now >= d);
        let settled = g
            .withdrawn_at
            .is_some_and(|t| now.duration_since(t) >= DRAIN_GRACE);
        let idle = g
            .withdrawn_at
            .is_some_and(|t| now.duration_since(t.max(quiet_since)) >= DRAIN_IDLE);
        if expired || (settled && (active == 0 || idle)) {
            g.drained = true;
            drop(g);
            log(
                Level::Notice,
                &if expired {
                    format!("drain: timeout with {active} active connections, stopping")
                } else if active == 0 {
                    "drain: no active connection, stopping".to_string()
                } else {
                    format!(
                        "drain: no packet for {DRAIN_IDLE:?} ({active} idle connections), stopping"
                    )
                },
            );
            if let Some(hook) = lock(&shared.on_drained).as_ref() {
                hook();
            }
            return;
        }
        let _ = shared
            .changed
            .wait_timeout(g, POLL)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

fn announce_loop(shared: &Shared) {
    let Some(conf) = shared.conf.as_ref() else {
        return;
    };
    let mut next_try = Instant::now();
    let mut backoff = RETRY_MIN;
    loop {
        let servable = shared
            .control
            .upgrade()
            .map(|c| c.inspect(servable_vips))
            .unwrap_or_default();
        let (want, timeout) = {
            let mut g = lock(&shared.inner);
            if g.stop {
                return;
            }
            g.servable = servable.clone();
            let withdrawal_in_force =
                g.announced.as_ref().is_some_and(BTreeSet::is_empty) && g.last_error.is_none();
            if g.withdrawn && withdrawal_in_force && g.withdrawn_at.is_none() {
                g.withdrawn_at = Some(Instant::now());
                shared.changed.notify_all();
            }
            if g.retry_now {
                g.retry_now = false;
                next_try = Instant::now();
            }
            let due = g.announced.as_ref() != Some(&servable_or_none(&g, &servable))
                || g.last_error.is_some();
            if !due || Instant::now() < next_try {
                let wait = if due {
                    next_try.saturating_duration_since(Instant::now()).min(POLL)
                } else {
                    POLL
                };
                let _ = shared
                    .changed
                    .wait_timeout(g, wait)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let timeout = if g.withdrawn {
                STOP_BIRDC_TIMEOUT
            } else {
                BIRDC_TIMEOUT
            };
            (servable_or_none(&g, &servable), timeout)
        };
        let result = write_atomically(&conf.bird_include, &render_include(conf, &want))
            .and_then(|()| run_command_until(&conf.birdc, timeout, &|| lock(&shared.inner).stop));
        let mut g = lock(&shared.inner);
        match result {
            Ok(_) => {
                let list: Vec<String> = want.iter().map(ToString::to_string).collect();
                log(
                    Level::Notice,
                    &format!(
                        "announce: {} VIPs in {} [{}]",
                        want.len(),
                        conf.bird_include.display(),
                        list.join(" ")
                    ),
                );
                if g.withdrawn && want.is_empty() && g.withdrawn_at.is_none() {
                    g.withdrawn_at = Some(Instant::now());
                }
                g.announced = Some(want);
                g.last_error = None;
                backoff = RETRY_MIN;
            }
            Err(e) => {
                let text = e.to_string();
                if g.last_error.as_deref() != Some(text.as_str()) {
                    log(
                        Level::Error,
                        &format!("announce: {text} (retrying, at most every {RETRY_MAX:?})"),
                    );
                }
                if g.withdrawn && g.withdrawn_at.is_none() {
                    // BIRD could not be told: a drain must not wait on it.
                    g.withdrawn_at = Some(Instant::now());
                }
                g.last_error = Some(text);
                next_try = Instant::now() + backoff;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
        shared.changed.notify_all();
    }
}

/// The set to announce: nothing while withdrawn, else what is servable.
fn servable_or_none(g: &Inner, servable: &BTreeSet<IpAddr>) -> BTreeSet<IpAddr> {
    if g.withdrawn {
        BTreeSet::new()
    } else {
        servable.clone()
    }
}

/// `lbctl --announce` / `--drain`: what the announcement does, for people.
pub fn render_status(s: &AnnounceInfo) -> String {
    let list = |v: &[IpAddr]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let mut text = format!(
        "Include: {}\nAnnounced: {}\nServable: {}\nActive connections: {}\n",
        s.include.as_deref().unwrap_or("(no announce: block)"),
        list(&s.announced),
        list(&s.servable),
        s.active_conns
    );
    if s.draining {
        text.push_str(&format!(
            "Draining: routes withdrawn, stopping when no connection is active (at most {} s)\n",
            s.drain_left_secs.unwrap_or(0)
        ));
    }
    if let Some(e) = &s.last_error {
        text.push_str(&format!("Last error: {e}\n"));
    }
    text
}

/// Parses lbctl's `--drain [--drain-timeout SECS]` (the arguments after
/// the socket option); `None` when `args` is not a drain.
pub fn parse_drain_args(args: &[String]) -> Option<Result<Request, String>> {
    let (first, rest) = args.split_first()?;
    if first != "--drain" {
        return None;
    }
    Some(match rest {
        [] => Ok(Request::Drain { timeout_secs: None }),
        [flag, secs] if flag == "--drain-timeout" => secs
            .parse::<u64>()
            .map(|s| Request::Drain {
                timeout_secs: Some(s),
            })
            .map_err(|_| format!("--drain-timeout: {secs:?} is not a number of seconds")),
        _ => Err("usage: lbctl --drain [--drain-timeout SECS]".to_string()),
    })
}

#[cfg(test)]
mod tests;
