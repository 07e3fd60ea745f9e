//! The VRRP control thread: runs every configured instance's state machine
//! ([`super::state`]) on the real clock and does its I/O on the ports'
//! kernel interfaces (`dataplane::kernel`): adverts through raw IP sockets
//! for protocol 112 bound to the kernel interface and joined to 224.0.0.18
//! / ff02::12 (the kernel path carries them between the TAP and the port),
//! gratuitous ARPs and unsolicited NAs through an AF_PACKET socket on it,
//! mastership to the workers through [`Control::set_standby`] (the
//! snapshot's standby set). It also reads the tracked interfaces' links,
//! runs the tracked scripts (`vrrp.scripts`) and makes sync groups follow.
//!
//! Rules:
//! * The daemon starts with every VRRP VIP on standby (see
//!   [`standby_at_start`]); a VIP is answered for and forwarded only after
//!   its instance became MASTER here, and put back on standby before
//!   anything else when it stops being MASTER.
//! * keepalived's order on becoming MASTER: the advert, then the VIPs,
//!   then `garp_master_repeat` GARPs per VIP, and as many again after
//!   `garp_master_delay` seconds (and every `garp_master_refresh` s).
//! * Notify scripts run with keepalived's arguments (`notify` gets
//!   `INSTANCE name STATE priority`), are never waited for, and are reaped.
//! * [`VrrpService::stop`] sends priority-0 adverts for every MASTER
//!   instance and returns within [`STOP_BUDGET`]: the thread waits on its
//!   sockets at most [`MAX_WAIT`] at a time and looks at the stop flag
//!   between waits.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::conf::{InstanceSpec, ScriptSpec};
use super::garp;
use super::state::{follow_sync_group, Action, Instance, Received, Reject, ScriptState, VrrpState};
use super::{advert_ipv4, advert_v6, unsolicited_na};
use crate::ctl::protocol::{Response, VrrpInstanceInfo};
use crate::ctl::server::Control;
use crate::daemon::log::{log, Level};
use crate::sys::vrrp_sockets::{ifindex, wait_any_readable, FrameSocket, VrrpSocket, VrrpSocket6};
use crate::wire::vrrp::{MCAST_V4, MCAST_V6};
use crate::wire::EthernetAddress;

/// Longest wait on the sockets between looks at the stop flag.
pub const MAX_WAIT: Duration = Duration::from_millis(50);
/// What [`VrrpService::stop`] may take.
pub const STOP_BUDGET: Duration = Duration::from_millis(500);
/// Notify scripts running at once (more are refused and logged).
const MAX_CHILDREN: usize = 64;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    /// A socket on a kernel interface could not be opened.
    #[error("VRRP on {ifname}: {source}")]
    Socket {
        /// The kernel interface.
        ifname: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The thread could not be started.
    #[error("cannot start the VRRP thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Whether Linux interface `ifname` is up (`operstate` `up`, or `unknown`
/// as TAP devices report it); a missing interface is down.
fn link_up(ifname: &str) -> bool {
    match std::fs::read_to_string(format!("/sys/class/net/{ifname}/operstate")) {
        Ok(s) => matches!(s.trim(), "up" | "unknown"),
        Err(_) => false,
    }
}

/// The addresses the daemon starts with on standby: every instance's VIPs
/// and excluded addresses.
pub fn standby_at_start(specs: &[InstanceSpec]) -> Vec<IpAddr> {
    specs.iter().flat_map(|s| s.owned().copied()).collect()
}

/// Called by the VRRP thread after each state change of an instance (its
/// name and new state), after the notify scripts were started: how other
/// services (the sync daemon of `lvs_sync_daemon IF VI`) follow mastership
/// without polling. It runs on the VRRP thread, so it must return promptly.
pub type StateHook = Box<dyn FnMut(&str, VrrpState) + Send>;

/// The running service.
pub struct VrrpService {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    status: Arc<Mutex<Vec<VrrpInstanceInfo>>>,
}

/// A kernel interface with its two sockets.
struct Iface {
    name: String,
    sock: VrrpSocket,
    frames: FrameSocket,
    mac: EthernetAddress,
    index: u32,
    /// The IPv6 socket, when an IPv6 instance uses the interface.
    sock6: Option<VrrpSocket6>,
}

/// A tracked script: its verdict, next run, and the run under way (with
/// its start).
struct ScriptRun {
    spec: ScriptSpec,
    state: ScriptState,
    next_at: u64,
    child: Option<(Child, u64)>,
}

/// What the thread runs on.
struct Runner {
    control: Arc<Control>,
    ifaces: Vec<Iface>,
    /// The instances.
    instances: Vec<Instance>,
    /// The index in `ifaces` of each instance's interface.
    iface_of: Vec<usize>,
    /// `vrrp_script`s.
    scripts: Vec<ScriptRun>,
    /// (when, instance) GARP bursts still to send.
    garps: Vec<(u64, usize)>,
    ident: u16,
    epoch: Instant,
    wall_epoch_ms: u64,
    /// The standby set last published (None: publish now).
    published: Option<Vec<IpAddr>>,
    children: Vec<Child>,
    status: Arc<Mutex<Vec<VrrpInstanceInfo>>>,
    on_state: Option<StateHook>,
}

impl VrrpService {
    /// Opens the sockets on every instance's kernel interface (whose MAC
    /// is `macs[port]`) and starts the thread.
    pub fn start(
        specs: Vec<InstanceSpec>,
        scripts: Vec<ScriptSpec>,
        macs: &[EthernetAddress],
        control: Arc<Control>,
        on_state: Option<StateHook>,
    ) -> Result<VrrpService, VrrpError> {
        let mut ifaces: Vec<Iface> = Vec::new();
        let mut instances = Vec::new();
        let mut iface_of = Vec::new();
        for mut spec in specs {
            let mac = macs
                .get(usize::from(spec.port))
                .copied()
                .unwrap_or(EthernetAddress([0; 6]));
            if spec.src == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
                spec.src = IpAddr::V6(super::conf::link_local(mac.0));
            }
            for n in &spec.notes {
                log(Level::Warning, &format!("VRRP {}: {n}", spec.name));
            }
            let at = match ifaces.iter().position(|i| i.name == spec.kernel_if) {
                Some(at) => at,
                None => {
                    let err = |source| VrrpError::Socket {
                        ifname: spec.kernel_if.clone(),
                        source,
                    };
                    let index = ifindex(&spec.kernel_if).map_err(err)?;
                    ifaces.push(Iface {
                        name: spec.kernel_if.clone(),
                        sock: VrrpSocket::open(&spec.kernel_if, index).map_err(err)?,
                        frames: FrameSocket::open(index).map_err(err)?,
                        mac,
                        index,
                        sock6: None,
                    });
                    ifaces.len() - 1
                }
            };
            if spec.src.is_ipv6() && ifaces[at].sock6.is_none() {
                let sock6 =
                    VrrpSocket6::open(&spec.kernel_if, ifaces[at].index).map_err(|source| {
                        VrrpError::Socket {
                            ifname: spec.kernel_if.clone(),
                            source,
                        }
                    })?;
                ifaces[at].sock6 = Some(sock6);
            }
            instances.push(Instance::new(spec));
            iface_of.push(at);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(Vec::new()));
        let wall_epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut runner = Runner {
            control,
            ifaces,
            instances,
            iface_of,
            scripts: scripts
                .into_iter()
                .map(|spec| ScriptRun {
                    state: ScriptState::new(spec.rise, spec.fall),
                    spec,
                    next_at: 0,
                    child: None,
                })
                .collect(),
            garps: Vec::new(),
            ident: 0,
            epoch: Instant::now(),
            wall_epoch_ms,
            published: None,
            children: Vec::new(),
            status: status.clone(),
            on_state,
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vrrp".into())
            .spawn(move || runner.run(&flag))
            .map_err(VrrpError::Thread)?;
        Ok(VrrpService {
            stop,
            thread: Some(thread),
            status,
        })
    }

    /// The instances' status (as of the thread's last turn).
    pub fn status(&self) -> Vec<VrrpInstanceInfo> {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A shared handle on the status (for the control socket).
    pub fn status_handle(&self) -> Arc<Mutex<Vec<VrrpInstanceInfo>>> {
        self.status.clone()
    }

    /// Clean stop: priority-0 adverts for every MASTER, then the thread
    /// ends (bounded by [`STOP_BUDGET`]; a thread that does not end in time
    /// is left behind and logged).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + STOP_BUDGET;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                log(Level::Error, "VRRP thread did not stop in time");
            }
        }
    }
}

impl Drop for VrrpService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Runner {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn run(&mut self, stop: &AtomicBool) {
        self.track();
        let now = self.now();
        for i in 0..self.instances.len() {
            let actions = self.instances[i].start(now);
            self.act(i, actions, VrrpState::Init);
        }
        self.publish();
        self.report();
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::Acquire) {
            let now = self.now();
            let next = self
                .instances
                .iter()
                .filter_map(Instance::next_deadline)
                .chain(self.garps.iter().map(|g| g.0))
                .min();
            let wait = next.map_or(MAX_WAIT, |t| {
                Duration::from_micros(t.saturating_sub(now)).min(MAX_WAIT)
            });
            let fds: Vec<BorrowedFd<'_>> = self
                .ifaces
                .iter()
                .flat_map(|i| {
                    std::iter::once(i.sock.as_fd()).chain(i.sock6.as_ref().map(AsFd::as_fd))
                })
                .collect();
            if let Err(e) = wait_any_readable(&fds, wait) {
                log(Level::Error, &format!("VRRP: poll: {e}"));
                std::thread::sleep(wait);
            }
            drop(fds);
            self.receive_all(&mut buf);
            self.track();
            let now = self.now();
            for i in 0..self.instances.len() {
                let before = self.instances[i].state();
                let actions = self.instances[i].on_timer(now);
                self.act(i, actions, before);
            }
            self.garp_due(now);
            self.publish();
            self.reap();
            self.report();
        }
        // Clean stop: priority 0 from every MASTER.
        let now = self.now();
        for i in 0..self.instances.len() {
            let before = self.instances[i].state();
            let actions = self.instances[i].stop(now);
            self.act(i, actions, before);
        }
        self.publish();
        self.report();
        for s in &mut self.scripts {
            if let Some((mut child, _)) = s.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Runs the due scripts and collects the finished ones (bounded by
    /// their timeouts: a run over time is killed and counts as KO).
    fn run_scripts(&mut self) {
        let now = self.now();
        for s in &mut self.scripts {
            let finished = match &mut s.child {
                Some((child, started)) => match child.try_wait() {
                    Ok(Some(status)) => Some(status.success()),
                    Ok(None) if now.saturating_sub(*started) > s.spec.timeout_ms * 1000 => {
                        let _ = child.kill();
                        let _ = child.wait();
                        Some(false)
                    }
                    Ok(None) => None,
                    Err(_) => Some(false),
                },
                None => None,
            };
            if let Some(success) = finished {
                s.child = None;
                if s.state.result(success) {
                    log(
                        Level::Notice,
                        &format!(
                            "VRRP script {} now {}",
                            s.spec.name,
                            if s.state.ok() { "OK" } else { "KO" }
                        ),
                    );
                }
            }
            if s.child.is_none() && now >= s.next_at {
                s.next_at = now + s.spec.interval_ms * 1000;
                let Some((program, args)) = s.spec.argv.split_first() else {
                    continue;
                };
                match Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                {
                    Ok(child) => s.child = Some((child, now)),
                    Err(_) => {
                        s.state.result(false);
                    }
                }
            }
        }
    }

    /// Reads the tracked interfaces' links and the tracked scripts'
    /// verdicts, and hands each instance the result.
    fn track(&mut self) {
        self.run_scripts();
        for i in 0..self.instances.len() {
            let spec = self.instances[i].spec();
            if spec.track.is_empty() && spec.track_scripts.is_empty() {
                continue;
            }
            let (mut fault, mut weight) = (false, 0);
            let links = spec.track.iter().map(|(ifname, w)| (*w, link_up(ifname)));
            let scripts = spec
                .track_scripts
                .iter()
                .map(|(at, w)| (*w, self.scripts.get(*at).is_some_and(|s| s.state.ok())));
            for (w, up) in links.chain(scripts) {
                match (w, up) {
                    (0, false) => fault = true,
                    (w, true) if w > 0 => weight += w,
                    (w, false) if w < 0 => weight += w,
                    _ => {}
                }
            }
            let before = self.instances[i].state();
            let now = self.now();
            let actions = self.instances[i].set_trackers(now, fault, weight);
            self.act(i, actions, before);
        }
    }

    fn receive_all(&mut self, buf: &mut [u8]) {
        for f in 0..self.ifaces.len() {
            self.receive_v6(f, buf);
            // Bounded: at most 64 packets per interface per turn.
            for _ in 0..64 {
                let n = match self.ifaces[f].sock.recv(buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => {
                        log(
                            Level::Error,
                            &format!("VRRP: receive on {}: {e}", self.ifaces[f].name),
                        );
                        break;
                    }
                };
                let now = self.now();
                for i in 0..self.instances.len() {
                    if self.iface_of[i] != f || !self.instances[i].spec().src.is_ipv4() {
                        continue;
                    }
                    let before = self.instances[i].state();
                    match self.instances[i].receive(now, &buf[..n]) {
                        Received::Advert(actions) => self.act(i, actions, before),
                        Received::Rejected(reason) => {
                            let from = buf
                                .get(12..16)
                                .map(|s| Ipv4Addr::new(s[0], s[1], s[2], s[3]).to_string())
                                .unwrap_or_else(|| "?".into());
                            self.rejected(i, reason, &from);
                        }
                        Received::OtherVrid => {}
                    }
                }
            }
        }
    }

    /// Drains the IPv6 socket of interface `f` (bounded).
    fn receive_v6(&mut self, f: usize, buf: &mut [u8]) {
        for _ in 0..64 {
            let Some(sock) = self.ifaces[f].sock6.as_ref() else {
                return;
            };
            let got = match sock.recv(buf) {
                Ok(Some(got)) => got,
                Ok(None) => break,
                Err(e) => {
                    log(
                        Level::Error,
                        &format!("VRRP: receive on {} (IPv6): {e}", self.ifaces[f].name),
                    );
                    break;
                }
            };
            let now = self.now();
            for i in 0..self.instances.len() {
                if self.iface_of[i] != f || !self.instances[i].spec().src.is_ipv6() {
                    continue;
                }
                let before = self.instances[i].state();
                let msg = &buf[..got.len];
                match self.instances[i].receive_v6(now, got.src, got.dst, got.hop_limit, msg) {
                    Received::Advert(actions) => self.act(i, actions, before),
                    Received::Rejected(reason) => self.rejected(i, reason, &got.src.to_string()),
                    Received::OtherVrid => {}
                }
            }
        }
    }

    fn rejected(&self, i: usize, reason: Reject, from: &str) {
        let inst = &self.instances[i];
        log(
            Level::Warning,
            &format!(
                "VRRP {}: advert from {from} rejected ({})",
                inst.spec().name,
                reason.name()
            ),
        );
        if inst.state() == VrrpState::Master {
            log(
                Level::Error,
                &format!(
                    "VRRP {}: dual-master alarm: {from} sends adverts we reject while we are MASTER",
                    inst.spec().name
                ),
            );
        }
    }

    /// Carries out `actions` of instance `i` (in order), then what its
    /// state change asks (log, notify).
    fn act(&mut self, i: usize, actions: Vec<Action>, before: VrrpState) {
        for a in actions {
            match a {
                Action::Send { priority } => self.send_advert(i, priority),
                Action::BecomeMaster => {
                    // The VIPs first, then the GARPs.
                    self.published = None;
                    self.publish();
                    let now = self.now();
                    self.garp_burst(i);
                    let spec = self.instances[i].spec();
                    if spec.garp_delay_s > 0 {
                        let at = now + u64::from(spec.garp_delay_s) * 1_000_000;
                        self.garps.push((at, i));
                    }
                }
                Action::BecomeBackup => {
                    self.published = None;
                    self.publish();
                    self.garps.retain(|g| g.1 != i);
                }
            }
        }
        let after = self.instances[i].state();
        if after != before {
            let inst = &self.instances[i];
            log(
                Level::Notice,
                &format!(
                    "VRRP {}: entering {} state{}",
                    inst.spec().name,
                    after.name(),
                    inst.master()
                        .filter(|_| after == VrrpState::Backup)
                        .map(|m| format!(" (master {m})"))
                        .unwrap_or_default()
                ),
            );
            self.notify(i, after);
            if let Some(hook) = &mut self.on_state {
                hook(&self.instances[i].spec().name, after);
            }
            // vrrp_sync_group: the other members follow.
            let now = self.now();
            for (j, actions) in follow_sync_group(&mut self.instances, i, now) {
                let before = if after == VrrpState::Master {
                    VrrpState::Backup
                } else {
                    VrrpState::Master
                };
                self.act(j, actions, before);
            }
        }
    }

    fn send_advert(&mut self, i: usize, priority: u8) {
        let (inst, f) = (&self.instances[i], &self.iface_of[i]);
        let spec = inst.spec();
        let iface = &self.ifaces[*f];
        if let IpAddr::V6(src) = spec.src {
            let dsts: Vec<Ipv6Addr> = if spec.unicast_peers.is_empty() {
                vec![MCAST_V6]
            } else {
                spec.unicast_peers
                    .iter()
                    .filter_map(|p| match p {
                        IpAddr::V6(a) => Some(*a),
                        IpAddr::V4(_) => None,
                    })
                    .collect()
            };
            for dst in dsts {
                let msg = advert_v6(spec, priority, src, dst);
                let sent = match &iface.sock6 {
                    Some(s) => s.send_to(&msg, dst, iface.index),
                    None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
                };
                if let Err(e) = sent {
                    log(
                        Level::Error,
                        &format!("VRRP {}: advert to {dst} on {}: {e}", spec.name, iface.name),
                    );
                }
            }
            return;
        }
        let dsts: Vec<Ipv4Addr> = if spec.unicast_peers.is_empty() {
            vec![MCAST_V4]
        } else {
            spec.unicast_peers
                .iter()
                .filter_map(|p| match p {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .collect()
        };
        for dst in dsts {
            self.ident = self.ident.wrapping_add(1);
            let packet = advert_ipv4(spec, priority, self.ident, dst);
            if let Err(e) = iface.sock.send_to(&packet, dst) {
                log(
                    Level::Error,
                    &format!("VRRP {}: advert to {dst} on {}: {e}", spec.name, iface.name),
                );
            }
        }
    }

    fn garp_burst(&self, i: usize) {
        let (inst, f) = (&self.instances[i], &self.iface_of[i]);
        let spec = inst.spec();
        let iface = &self.ifaces[*f];
        for _ in 0..spec.garp_repeat {
            for vip in spec.owned() {
                let frame = match vip {
                    IpAddr::V4(v) => garp(iface.mac, *v),
                    IpAddr::V6(v) => unsolicited_na(iface.mac, *v),
                };
                if let Err(e) = iface.frames.send(&frame) {
                    log(
                        Level::Error,
                        &format!("VRRP {}: GARP/NA on {}: {e}", spec.name, iface.name),
                    );
                }
            }
        }
    }

    fn garp_due(&mut self, now: u64) {
        let due: Vec<usize> = self
            .garps
            .iter()
            .filter(|g| g.0 <= now)
            .map(|g| g.1)
            .collect();
        self.garps.retain(|g| g.0 > now);
        for i in due {
            if self.instances[i].state() != VrrpState::Master {
                continue;
            }
            self.garp_burst(i);
            let refresh = self.instances[i].spec().garp_refresh_s;
            if refresh > 0 {
                self.garps.push((now + u64::from(refresh) * 1_000_000, i));
            }
        }
    }

    /// Publishes the standby set if it changed (or was invalidated).
    fn publish(&mut self) {
        let standby: Vec<IpAddr> = self
            .instances
            .iter()
            .filter(|i| i.state() != VrrpState::Master)
            .flat_map(|i| i.spec().owned().copied())
            .filter(|v| {
                // A VIP shared with a MASTER instance stays live.
                !self
                    .instances
                    .iter()
                    .any(|o| o.state() == VrrpState::Master && o.spec().owned().any(|a| a == v))
            })
            .collect();
        if self.published.as_ref() == Some(&standby) {
            return;
        }
        match self.control.set_standby(standby.clone()) {
            Response::Ok { .. } => self.published = Some(standby),
            other => {
                log(
                    Level::Error,
                    &format!("VRRP: cannot publish the standby VIPs: {other:?}"),
                );
                self.published = None;
            }
        }
    }

    fn notify(&mut self, i: usize, state: VrrpState) {
        let spec = self.instances[i].spec();
        let specific = match state {
            VrrpState::Master => spec.notify_master.clone(),
            VrrpState::Backup => spec.notify_backup.clone(),
            VrrpState::Fault => spec.notify_fault.clone(),
            VrrpState::Init => None,
        };
        let mut runs: Vec<Vec<String>> = Vec::new();
        if let Some(s) = specific {
            runs.push(s.split_whitespace().map(String::from).collect());
        }
        if state != VrrpState::Init {
            if let Some(s) = &spec.notify {
                let mut argv: Vec<String> = s.split_whitespace().map(String::from).collect();
                argv.extend([
                    "INSTANCE".to_string(),
                    spec.name.clone(),
                    state.name().to_string(),
                    self.instances[i].effective_priority().to_string(),
                ]);
                runs.push(argv);
            }
        }
        for argv in runs {
            let Some((program, args)) = argv.split_first() else {
                continue;
            };
            if self.children.len() >= MAX_CHILDREN {
                log(
                    Level::Warning,
                    &format!(
                        "VRRP: {program} not run: {MAX_CHILDREN} notify scripts still running"
                    ),
                );
                continue;
            }
            match Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .spawn()
            {
                Ok(child) => self.children.push(child),
                Err(e) => log(Level::Error, &format!("VRRP: cannot run {program}: {e}")),
            }
        }
    }

    fn reap(&mut self) {
        self.children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
    }

    fn report(&self) {
        let list = self
            .instances
            .iter()
            .zip(&self.iface_of)
            .map(|(inst, f)| {
                let spec = inst.spec();
                VrrpInstanceInfo {
                    name: spec.name.clone(),
                    interface: self.ifaces[*f].name.clone(),
                    vrid: spec.vrid,
                    state: inst.state().name().to_string(),
                    priority: spec.priority,
                    effective_priority: inst.effective_priority(),
                    master: inst.master(),
                    advert_int_cs: spec.interval_cs,
                    version: spec.version,
                    vips: spec.vips.clone(),
                    transitions: inst
                        .history()
                        .map(|t| (self.wall_epoch_ms + t.at / 1000, t.to.name().to_string()))
                        .collect(),
                    rejects: Reject::ALL
                        .iter()
                        .map(|r| (r.name().to_string(), inst.rejected(*r)))
                        .collect(),
                    dual_master_alarms: inst.dual_master_alarms(),
                    adverts_sent: inst.sent(),
                    adverts_received: inst.received(),
                }
            })
            .collect();
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = list;
    }
}
