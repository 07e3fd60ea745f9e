//! health::service — the health checker of `lbd`: one control thread runs
//! every check as a task of a single-threaded async runtime (thousands of
//! checks, one thread), and one manager thread turns the checkers' state
//! changes into Control changes, scripts and the live view.
//!
//! Rules:
//! * Checks never run on a worker; their verdicts reach the workers only as
//!   snapshots, through [`Control::set_health`] / [`Control::set_sorry`]
//!   like any `lbctl` change (see the ownership rule in [`crate::health`]).
//! * Each checker follows [`state::CheckState`] (keepalived's rules); a
//!   server is alive iff all its checkers are up; its verdict is published
//!   only when it changes.
//! * `lbctl -d` of a checked server: the next verdict is refused with
//!   "No such destination" and the manager's once-a-second look at the
//!   configuration notices it too; its checks stop.
//! * Quorum (per service): the weight sum of alive servers (configured
//!   weight, or the `misc_dynamic` one; servers without checkers count as
//!   alive) against `quorum`/`hysteresis`; when lost, the `sorry_server`
//!   takes the service (its real servers' verdicts are only recorded) and
//!   `quorum_down` runs; when gained, the sorry server leaves and
//!   `quorum_up` runs.
//! * Scripts (`notify_up`, `notify_down`, `quorum_up`, `quorum_down`) run
//!   as keepalived runs them — the configured command line, no arguments
//!   added — as child processes that nobody waits for (reaped later), so
//!   they never block a check or a verdict. With `omega`, `quorum_down`
//!   and the alive servers' `notify_down` run on stop.
//! * Stop: the runtime's tasks are dropped (a running MISC_CHECK script is
//!   killed) and both threads end within a few hundred milliseconds.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conntrack::Fwd;
use crate::ctl::apply::{ControlState, DestHealth};
use crate::ctl::config::Config;
use crate::ctl::protocol::{CheckerInfo, DestSpec, ErrorKind, HealthInfo, Response, ServiceKey};
use crate::ctl::server::Control;
use crate::health::checker::{random_u64, split_command, Check};
use crate::health::conf::{HealthConfError, Inherited, Timing};
use crate::health::state::{self, CheckState, Damping, Quorum};

/// One real server of a checked service, resolved.
#[derive(Debug, Clone)]
pub struct ServerPlan {
    /// Its address.
    pub addr: IpAddr,
    /// Its port (the service's for DR/TUN).
    pub port: u16,
    /// Configured weight (for the quorum).
    pub weight: u32,
    /// Dead: weight 0 instead of removal.
    pub inhibit: bool,
    /// Starts down.
    pub alpha: bool,
    /// `notify_up` command.
    pub notify_up: Option<Vec<String>>,
    /// `notify_down` command.
    pub notify_down: Option<Vec<String>>,
    /// rise/fall.
    pub damping: Damping,
    /// Its checkers and their timing.
    pub checks: Vec<(Check, Timing)>,
    /// Everything above that the checkers' state depends on: a reload
    /// keeps the state of a server whose fingerprint did not change.
    pub fingerprint: String,
}

/// A virtual service with at least one checked real server.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// The service.
    pub key: ServiceKey,
    /// `quorum` (1).
    pub quorum: u32,
    /// `hysteresis` (0).
    pub hysteresis: u32,
    /// `quorum_up` command.
    pub quorum_up: Option<Vec<String>>,
    /// `quorum_down` command.
    pub quorum_down: Option<Vec<String>>,
    /// `sorry_server`.
    pub sorry: Option<DestSpec>,
    /// `omega`.
    pub omega: bool,
    /// Every real server of the service (those without checkers count as
    /// alive).
    pub servers: Vec<ServerPlan>,
}

fn command(line: &Option<String>) -> Result<Option<Vec<String>>, HealthConfError> {
    line.as_deref().map(split_command).transpose()
}

/// The services of `config` that have checkers, resolved with keepalived's
/// inheritance and defaults.
pub fn plan(config: &Config) -> Result<Vec<ServicePlan>, HealthConfError> {
    let mut plans = Vec::new();
    for svc in &config.services {
        if svc.dests.iter().all(|d| d.checks.is_empty()) {
            continue;
        }
        let key = svc.key();
        let svc_timing = Inherited {
            delay_loop: svc.delay_loop,
            connect_timeout: svc.connect_timeout,
            retry: svc.retry,
            delay_before_retry: svc.delay_before_retry,
            warmup: svc.warmup,
        };
        let mut servers = Vec::new();
        for d in &svc.dests {
            let port = match d.fwd {
                Fwd::Dr | Fwd::Tun => svc.port,
                _ => d.port.unwrap_or(svc.port),
            };
            let rs_timing = Inherited {
                delay_loop: d.delay_loop,
                connect_timeout: d.connect_timeout,
                retry: d.retry,
                delay_before_retry: d.delay_before_retry,
                warmup: d.warmup,
            }
            .over(svc_timing);
            let mut checks = Vec::new();
            for c in &d.checks {
                let mut c = c.clone();
                if matches!(
                    c.kind(),
                    crate::health::conf::CheckKind::Http | crate::health::conf::CheckKind::Ssl
                ) {
                    if let crate::health::conf::CheckConf::Http(b)
                    | crate::health::conf::CheckConf::Ssl(b) = &mut c
                    {
                        if b.virtualhost.is_none() {
                            b.virtualhost = d.virtualhost.clone().or(svc.virtualhost.clone());
                        }
                    }
                }
                let timing = c.timing(rs_timing);
                if timing.delay_loop.is_zero() || timing.connect_timeout.is_zero() {
                    return Err(HealthConfError::Invalid(format!(
                        "{key} {}: {} delay_loop and connect_timeout must be above 0",
                        crate::ctl::ipvsadm::format::addr_port(&d.addr.0, port),
                        c.kind().keyword()
                    )));
                }
                let check =
                    Check::new(&c, SocketAddr::new(d.addr.0, port), timing.connect_timeout)?;
                checks.push((check, timing));
            }
            let inhibit = d.inhibit_on_failure.unwrap_or(svc.inhibit_on_failure);
            let alpha = d.alpha.unwrap_or(svc.alpha);
            let damping = Damping {
                rise: d.rise.unwrap_or(1),
                fall: d.fall.unwrap_or(0),
            };
            servers.push(ServerPlan {
                fingerprint: format!("{:?}", (&checks, inhibit, alpha, damping)),
                addr: d.addr.0,
                port,
                weight: d.weight.0,
                inhibit,
                alpha,
                notify_up: command(&d.notify_up)?,
                notify_down: command(&d.notify_down)?,
                damping,
                checks,
            });
        }
        plans.push(ServicePlan {
            key,
            quorum: svc.quorum.unwrap_or(1),
            hysteresis: svc.hysteresis.unwrap_or(0),
            quorum_up: command(&svc.quorum_up)?,
            quorum_down: command(&svc.quorum_down)?,
            sorry: svc.sorry_server.as_ref().map(|s| DestSpec {
                fwd: s.fwd,
                ..DestSpec::new(s.addr.0, s.port.unwrap_or(svc.port))
            }),
            omega: svc.omega,
            servers,
        });
    }
    Ok(plans)
}

/// The verdict a server starts with: `alpha` servers are dead (weight 0
/// with `inhibit_on_failure`) until their first success; others are in the
/// pool (no verdict).
fn initial(server: &ServerPlan) -> Option<DestHealth> {
    (server.alpha && !server.checks.is_empty()).then_some(DestHealth {
        alive: false,
        inhibit: server.inhibit,
        weight: None,
    })
}

/// Records the start-up verdicts (`alpha`) in `state` before its first
/// snapshot, so an alpha server never takes a connection before its first
/// success.
pub fn initial_health(plans: &[ServicePlan], state: &mut ControlState) {
    for p in plans {
        for s in &p.servers {
            if let Some(h) = initial(s) {
                // A server the tables do not have has nothing to mark.
                let _ = state.set_health(&p.key, &s.addr, s.port, Some(h));
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Live state of one checker.
#[derive(Debug, Clone)]
struct CheckRt {
    state: CheckState,
    last_ok: Option<bool>,
    reason: String,
    latency: Option<Duration>,
    next_at: Option<Instant>,
    weight: Option<u32>,
}

/// Live state of one server.
#[derive(Debug, Clone)]
struct ServerRt {
    service: usize,
    checks: Vec<CheckRt>,
    published: Option<DestHealth>,
    alive: bool,
    flaps: u32,
    removed: bool,
}

/// What the tasks and the manager share (short critical sections only).
struct Shared {
    plans: Vec<ServicePlan>,
    servers: Vec<ServerRt>,
    /// (service index, server index in the plan) by server id.
    index: Vec<(usize, usize)>,
}

impl Shared {
    fn plan(&self, id: usize) -> &ServerPlan {
        let (s, r) = self.index[id];
        &self.plans[s].servers[r]
    }

    /// The servers still checked: (id, live state, plan, service key).
    fn live(&self) -> impl Iterator<Item = (usize, &ServerRt, &ServerPlan, ServiceKey)> {
        self.servers
            .iter()
            .enumerate()
            .filter(|(_, rt)| !rt.removed)
            .map(|(id, rt)| (id, rt, self.plan(id), self.plans[rt.service].key))
    }

    fn view(&self) -> Vec<HealthInfo> {
        let now = Instant::now();
        self.live()
            .filter(|(_, _, plan, _)| !plan.checks.is_empty())
            .map(|(_, rt, plan, key)| HealthInfo {
                service: key,
                addr: plan.addr,
                port: plan.port,
                alive: rt.alive,
                flaps: rt.flaps,
                checkers: rt
                    .checks
                    .iter()
                    .zip(&plan.checks)
                    .map(|(c, (check, _))| CheckerInfo {
                        checker: check.kind.keyword().to_string(),
                        target: check.target(),
                        up: c.state.is_up(),
                        last_ok: c.last_ok,
                        reason: c.reason.clone(),
                        latency_us: c.latency.map(|l| l.as_micros() as u64),
                        next_check_ms: c
                            .next_at
                            .map_or(0, |t| t.saturating_duration_since(now).as_millis() as u64),
                        flaps: c.state.flaps(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// A server's checker state kept across a reload (see
/// [`HealthService::stop_keeping_state`]).
#[derive(Debug, Clone)]
pub struct Kept {
    key: ServiceKey,
    addr: IpAddr,
    port: u16,
    fingerprint: String,
    rt: ServerRt,
}

/// The running health checker.
pub struct HealthService {
    stop: Arc<AtomicBool>,
    keep: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    runtime: Option<JoinHandle<()>>,
    manager: Option<JoinHandle<()>>,
}

/// How often the manager looks for real servers the operator deleted.
const RECONCILE: Duration = Duration::from_secs(1);
/// The manager's longest wait for an event (its stop latency).
const TICK: Duration = Duration::from_millis(100);

impl HealthService {
    /// Starts checking `plans`, publishing through `control`, and installs
    /// the live view (`lbctl --health`).
    pub fn start(control: Arc<Control>, plans: Vec<ServicePlan>) -> std::io::Result<HealthService> {
        Self::start_keeping(control, plans, Vec::new())
    }

    /// [`HealthService::start`] after a reload: servers whose checkers did
    /// not change continue with their state (up/down, retries, flaps, next
    /// check time); verdicts of servers no longer checked are withdrawn.
    pub fn start_keeping(
        control: Arc<Control>,
        plans: Vec<ServicePlan>,
        mut kept: Vec<Kept>,
    ) -> std::io::Result<HealthService> {
        let mut servers = Vec::new();
        let mut index = Vec::new();
        for (si, p) in plans.iter().enumerate() {
            for (ri, s) in p.servers.iter().enumerate() {
                let found = kept.iter().position(|k| {
                    k.key == p.key
                        && k.addr == s.addr
                        && k.port == s.port
                        && k.fingerprint == s.fingerprint
                });
                if let Some(k) = found {
                    let mut rt = kept.swap_remove(k).rt;
                    rt.service = si;
                    rt.removed = false;
                    servers.push(rt);
                    index.push((si, ri));
                    continue;
                }
                let published = initial(s);
                servers.push(ServerRt {
                    service: si,
                    checks: s
                        .checks
                        .iter()
                        .map(|_| CheckRt {
                            state: CheckState::new(s.alpha),
                            last_ok: None,
                            reason: "not checked yet".to_string(),
                            latency: None,
                            next_at: None,
                            weight: None,
                        })
                        .collect(),
                    alive: published.is_none(),
                    published,
                    flaps: 0,
                    removed: false,
                });
                index.push((si, ri));
            }
        }
        Self::withdraw(&control, &kept);
        let shared = Arc::new(Mutex::new(Shared {
            plans,
            servers,
            index,
        }));
        let view = shared.clone();
        control.set_health_view(Box::new(move || lock(&view).view()));

        let (events_tx, events_rx) = mpsc::channel::<usize>();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let tasks = shared.clone();
        let runtime = std::thread::Builder::new()
            .name("lbd-health".to_string())
            .spawn(move || {
                let mut stop_rx = stop_rx;
                rt.block_on(async move {
                    let jobs: Vec<Checker> = {
                        let s = lock(&tasks);
                        let now = Instant::now();
                        (0..s.servers.len())
                            .flat_map(|id| {
                                let p = s.plan(id);
                                let rt = &s.servers[id];
                                p.checks
                                    .iter()
                                    .enumerate()
                                    .map(|(ci, (c, t))| {
                                        // A kept checker resumes its schedule.
                                        let first = match &rt.checks[ci] {
                                            c if c.last_ok.is_some() => {
                                                c.next_at.map_or(Duration::ZERO, |at| {
                                                    at.saturating_duration_since(now)
                                                })
                                            }
                                            _ => state::first_delay(t, random01()),
                                        };
                                        Checker {
                                            id,
                                            ci,
                                            check: c.clone(),
                                            timing: *t,
                                            damping: p.damping,
                                            first,
                                        }
                                    })
                                    .collect::<Vec<_>>()
                            })
                            .collect()
                    };
                    for job in jobs {
                        tokio::spawn(run_check(tasks.clone(), job, events_tx.clone()));
                    }
                    drop(events_tx);
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                });
                // Dropping the runtime drops every task (kill_on_drop
                // scripts are killed).
                drop(rt);
            })?;
        let manager_stop = stop.clone();
        let keep = Arc::new(AtomicBool::new(false));
        let manager_keep = keep.clone();
        let kept_shared = shared.clone();
        let manager = std::thread::Builder::new()
            .name("lbd-health-mgr".to_string())
            .spawn(move || {
                Manager {
                    control,
                    shared,
                    children: Vec::new(),
                    quorum: Vec::new(),
                }
                .run(events_rx, &manager_stop, &manager_keep)
            });
        let manager = match manager {
            Ok(m) => m,
            Err(e) => {
                let _ = stop_tx.send(true);
                let _ = runtime.join();
                return Err(e);
            }
        };
        Ok(HealthService {
            stop,
            keep,
            shared: kept_shared,
            stop_tx,
            runtime: Some(runtime),
            manager: Some(manager),
        })
    }

    /// Stops every check and the manager (bounded: the manager wakes every
    /// 100 ms, the runtime drops its tasks at once).
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Withdraws the verdicts on servers no longer checked (or checked
    /// differently): they count as configured until new checkers decide.
    pub fn withdraw(control: &Control, stale: &[Kept]) {
        for k in stale.iter().filter(|k| k.rt.published.is_some()) {
            // A server the reload deleted has no verdict left to withdraw.
            let _ = control.set_health(&k.key, &k.addr, k.port, None);
        }
    }

    /// Stops, returning every server's state for
    /// [`HealthService::start_keeping`] (a reload). `omega` scripts do not
    /// run: the service goes on.
    pub fn stop_keeping_state(mut self) -> Vec<Kept> {
        self.keep.store(true, Ordering::Relaxed);
        self.shutdown();
        let s = lock(&self.shared);
        s.live()
            .map(|(_, rt, p, key)| Kept {
                key,
                addr: p.addr,
                port: p.port,
                fingerprint: p.fingerprint.clone(),
                rt: rt.clone(),
            })
            .collect()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stop_tx.send(true);
        for handle in [self.runtime.take(), self.manager.take()]
            .into_iter()
            .flatten()
        {
            if handle.join().is_err() {
                eprintln!("lbd: health: a checker thread panicked");
            }
        }
    }
}

impl Drop for HealthService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A number in [0, 1) for the warmup spread.
fn random01() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// One checker's loop: wait, check, feed the state machine, tell the
/// manager about changes, wait the returned delay (counted from the end of
/// the check).
/// One checker task's parameters.
struct Checker {
    id: usize,
    ci: usize,
    check: Check,
    timing: Timing,
    damping: Damping,
    first: Duration,
}

async fn run_check(shared: Arc<Mutex<Shared>>, c: Checker, events: mpsc::Sender<usize>) {
    let Checker {
        id,
        ci,
        check,
        timing,
        damping,
        first,
    } = c;
    let mut delay = first;
    loop {
        {
            let mut s = lock(&shared);
            if s.servers[id].removed {
                return;
            }
            s.servers[id].checks[ci].next_at = Some(Instant::now() + delay);
        }
        tokio::time::sleep(delay).await;
        {
            let mut s = lock(&shared);
            if s.servers[id].removed {
                return;
            }
            s.servers[id].checks[ci].next_at = None;
        }
        let started = Instant::now();
        let outcome = check.run().await;
        let latency = started.elapsed();
        let (tell, next) = {
            let mut s = lock(&shared);
            let c = &mut s.servers[id].checks[ci];
            let step = c.state.record(&timing, damping, outcome.ok);
            c.last_ok = Some(outcome.ok);
            c.reason = outcome.reason;
            c.latency = Some(latency);
            let weight_changed = outcome.ok && c.weight != outcome.weight;
            if outcome.ok {
                c.weight = outcome.weight;
            }
            (step.changed.is_some() || weight_changed, step.next)
        };
        if tell && events.send(id).is_err() {
            return;
        }
        delay = next;
    }
}

/// Turns server state changes into Control changes and scripts.
struct Manager {
    control: Arc<Control>,
    shared: Arc<Mutex<Shared>>,
    children: Vec<Child>,
    quorum: Vec<Quorum>,
}

impl Manager {
    fn run(mut self, events: mpsc::Receiver<usize>, stop: &AtomicBool, keep: &AtomicBool) {
        let services = lock(&self.shared).plans.len();
        self.quorum = {
            let s = lock(&self.shared);
            s.plans
                .iter()
                .map(|p| Quorum::new(p.quorum, p.hysteresis))
                .collect()
        };
        for si in 0..services {
            self.update_quorum(si);
        }
        let mut last_reconcile = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match events.recv_timeout(TICK) {
                Ok(id) => self.server_changed(id),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(TICK);
                }
            }
            if last_reconcile.elapsed() >= RECONCILE {
                last_reconcile = Instant::now();
                self.reconcile();
            }
            self.children
                .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        }
        if !keep.load(Ordering::Relaxed) {
            self.omega();
        }
    }

    /// Marks servers the operator deleted as removed (their checks stop).
    fn reconcile(&mut self) {
        let state = self.control.state();
        let mut s = lock(&self.shared);
        for id in 0..s.servers.len() {
            if s.servers[id].removed {
                continue;
            }
            let key = s.plans[s.servers[id].service].key;
            let plan = s.plan(id);
            let present = state
                .service(&key)
                .is_some_and(|svc| svc.dest(&plan.addr, plan.port).is_some());
            if !present {
                eprintln!(
                    "lbd: health: {} {}: no longer configured, checks stopped",
                    key,
                    crate::ctl::ipvsadm::format::addr_port(&plan.addr, plan.port)
                );
                s.servers[id].removed = true;
            }
        }
    }

    fn spawn(&mut self, argv: &Option<Vec<String>>) {
        let Some((program, args)) = argv.as_ref().and_then(|a| a.split_first()) else {
            return;
        };
        match Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => self.children.push(child),
            Err(e) => eprintln!("lbd: health: cannot run {program}: {e}"),
        }
    }

    fn server_changed(&mut self, id: usize) {
        let (key, addr, port, wanted, alive, was_alive, notify) = {
            let s = lock(&self.shared);
            let rt = &s.servers[id];
            if rt.removed {
                return;
            }
            let plan = s.plan(id);
            let alive = state::all_up(rt.checks.iter().map(|c| &c.state));
            let weight = rt.checks.iter().find_map(|c| c.weight);
            let wanted = match (alive, weight) {
                (true, None) => None,
                (true, Some(w)) => Some(DestHealth {
                    alive: true,
                    inhibit: plan.inhibit,
                    weight: Some(w),
                }),
                (false, _) => Some(DestHealth {
                    alive: false,
                    inhibit: plan.inhibit,
                    weight: None,
                }),
            };
            if wanted == rt.published {
                return;
            }
            let notify = if alive {
                plan.notify_up.clone()
            } else {
                plan.notify_down.clone()
            };
            (
                s.plans[rt.service].key,
                plan.addr,
                plan.port,
                wanted,
                alive,
                rt.alive,
                notify,
            )
        };
        let name = crate::ctl::ipvsadm::format::addr_port(&addr, port);
        match self.control.set_health(&key, &addr, port, wanted) {
            Response::Ok { .. } => {}
            Response::Error {
                kind: ErrorKind::NotFound,
                ..
            } => {
                eprintln!("lbd: health: {key} {name}: no longer configured, checks stopped");
                lock(&self.shared).servers[id].removed = true;
                return;
            }
            other => {
                eprintln!("lbd: health: {key} {name}: verdict not applied: {other:?}");
                return;
            }
        }
        let service = {
            let mut s = lock(&self.shared);
            let rt = &mut s.servers[id];
            rt.published = wanted;
            rt.alive = alive;
            if alive != was_alive {
                rt.flaps += 1;
            }
            rt.service
        };
        if alive != was_alive {
            eprintln!(
                "lbd: health: {key} {name} {}",
                if alive { "UP" } else { "DOWN" }
            );
            self.spawn(&notify);
        }
        self.update_quorum(service);
    }

    fn update_quorum(&mut self, si: usize) {
        let (sum, key, sorry, up, down, quorum, hysteresis) = {
            let s = lock(&self.shared);
            let sum: u64 = s
                .servers
                .iter()
                .enumerate()
                .filter(|(_, rt)| rt.service == si && rt.alive && !rt.removed)
                .map(|(id, rt)| {
                    let w = rt.checks.iter().find_map(|c| c.weight);
                    u64::from(w.unwrap_or(s.plan(id).weight))
                })
                .sum();
            let p = &s.plans[si];
            (
                sum,
                p.key,
                p.sorry.clone(),
                p.quorum_up.clone(),
                p.quorum_down.clone(),
                p.quorum,
                p.hysteresis,
            )
        };
        let Some(q) = self.quorum.get_mut(si) else {
            return;
        };
        match q.update(sum) {
            Some(false) => {
                eprintln!(
                    "lbd: health: {key}: lost quorum (weight sum {sum} < quorum {quorum} - hysteresis {hysteresis})"
                );
                if let Some(sorry) = &sorry {
                    if let Response::Error { message, .. } =
                        self.control.set_sorry(&key, Some(sorry))
                    {
                        eprintln!("lbd: health: {key}: sorry server not set: {message}");
                    }
                }
                self.spawn(&down);
            }
            Some(true) => {
                eprintln!("lbd: health: {key}: gained quorum (weight sum {sum})");
                if sorry.is_some() {
                    if let Response::Error { message, .. } = self.control.set_sorry(&key, None) {
                        eprintln!("lbd: health: {key}: sorry server not removed: {message}");
                    }
                }
                self.spawn(&up);
            }
            None => {}
        }
    }

    /// `omega`: on stop, `quorum_down` and the alive servers' `notify_down`.
    fn omega(&mut self) {
        let scripts: Vec<Option<Vec<String>>> = {
            let s = lock(&self.shared);
            let mut v = Vec::new();
            for (si, p) in s.plans.iter().enumerate() {
                if !p.omega {
                    continue;
                }
                for (id, rt) in s.servers.iter().enumerate() {
                    if rt.service == si && rt.alive && !rt.removed {
                        v.push(s.plan(id).notify_down.clone());
                    }
                }
                v.push(p.quorum_down.clone());
            }
            v
        };
        for script in &scripts {
            self.spawn(script);
        }
    }
}
