//! One VRRP instance as a pure state machine on virtual time: keepalived
//! 2.2.7's receive checks (`reference/keepalived.md` §2.2) and the RFC 3768 /
//! RFC 5798 machine with keepalived's timings and choices (§2.3).
//!
//! Rules:
//! * No I/O and no clock: every entry point takes `now` in microseconds on
//!   any monotonic scale and returns the [`Action`]s for the caller (the
//!   service) to carry out in order; [`Instance::next_deadline`] says when to
//!   call [`Instance::on_timer`] next.
//! * Timers: Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time;
//!   v2 Skew_Time = (256 − priority)/256 s, v3 = (256 − priority) ×
//!   Master_Adver_Interval / 256. A v2 backup keeps its own interval (the
//!   master's must equal it exactly); a v3 backup adopts the master's.
//! * Every rejected advert is counted by [`Reject`] reason and changes no
//!   state; a master seeing another live master with a lower priority
//!   answers at once and raises the dual-master alarm (counted), as does a
//!   rejected advert while MASTER (the peer ignores us too).

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::wire::vrrp::{self, auth_type, message_len, TYPE_ADVERT};
use crate::wire::{IpFamily, Ipv4Packet, VrrpPacket};

use super::conf::InstanceSpec;

/// Microseconds per second.
const SEC: u64 = 1_000_000;
/// Transitions kept for `lbctl --vrrp`.
const HISTORY: usize = 16;

/// The RFC states, and keepalived's FAULT (an unweighted tracked
/// interface is down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VrrpState {
    /// Not started, or stopped.
    Init,
    /// Waiting for the master to fall silent.
    Backup,
    /// Owner of the VIPs.
    Master,
    /// A tracked resource failed.
    Fault,
}

impl VrrpState {
    /// keepalived's spelling (`MASTER`, ...), also the `notify` argument.
    pub fn name(self) -> &'static str {
        match self {
            VrrpState::Init => "INIT",
            VrrpState::Backup => "BACKUP",
            VrrpState::Master => "MASTER",
            VrrpState::Fault => "FAULT",
        }
    }
}

/// What the caller must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send one advert with this priority (0: the master stops).
    Send {
        /// Priority field.
        priority: u8,
    },
    /// Claim the VIPs (answer ARP, forward), then GARP.
    BecomeMaster,
    /// Release the VIPs at once.
    BecomeBackup,
}

/// Why a received advert was ignored (keepalived's `vrrp_check_packet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// IP header or VRRP message shorter than declared, or a length
    /// mismatch between the IP total length and the message.
    Length,
    /// TTL ≠ 255 on a multicast advert.
    Ttl,
    /// Version ≠ the configured one.
    Version,
    /// Type ≠ 1 (advertisement).
    Type,
    /// Checksum does not verify.
    Checksum,
    /// v2 authentication type differs from ours.
    AuthType,
    /// v2 password differs.
    AuthPass,
    /// v2 interval differs from ours.
    Interval,
    /// Destination is multicast on a unicast instance, or the reverse.
    Destination,
    /// Number of addresses differs.
    AddrCount,
    /// An address is not one of ours.
    AddrList,
}

impl Reject {
    /// Every reason, in counter order.
    pub const ALL: [Reject; 11] = [
        Reject::Length,
        Reject::Ttl,
        Reject::Version,
        Reject::Type,
        Reject::Checksum,
        Reject::AuthType,
        Reject::AuthPass,
        Reject::Interval,
        Reject::Destination,
        Reject::AddrCount,
        Reject::AddrList,
    ];

    /// snake_case name for listings.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Length => "length",
            Reject::Ttl => "ttl",
            Reject::Version => "version",
            Reject::Type => "type",
            Reject::Checksum => "checksum",
            Reject::AuthType => "auth_type",
            Reject::AuthPass => "auth_pass",
            Reject::Interval => "interval",
            Reject::Destination => "destination",
            Reject::AddrCount => "addr_count",
            Reject::AddrList => "addr_list",
        }
    }
}

/// What [`Instance::receive`] made of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A valid advert for this instance: the actions it causes.
    Advert(Vec<Action>),
    /// Rejected (and counted).
    Rejected(Reject),
    /// Another virtual router's advert (not counted here).
    OtherVrid,
}

/// A transition, for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// When (the caller's `now`).
    pub at: u64,
    /// The state entered.
    pub to: VrrpState,
}

/// One VRRP instance.
#[derive(Debug, Clone)]
pub struct Instance {
    spec: InstanceSpec,
    state: VrrpState,
    /// Backup: when the master is declared down.
    down_at: Option<u64>,
    /// Master: when the next advert is due.
    advert_at: Option<u64>,
    /// The current master's interval, µs.
    master_interval: u64,
    master: Option<IpAddr>,
    /// Preemption is held off until then.
    preempt_at: u64,
    rejects: [u64; Reject::ALL.len()],
    dual_master: u64,
    /// Sum of the weights of the failed weighted trackers (negative
    /// weights) and the working positive ones.
    weight: i32,
    /// An unweighted tracker failed.
    fault: bool,
    sent: u64,
    received: u64,
    history: VecDeque<Transition>,
}

impl Instance {
    /// An instance in INIT.
    pub fn new(spec: InstanceSpec) -> Instance {
        let master_interval = u64::from(spec.interval_cs) * 10_000;
        Instance {
            spec,
            state: VrrpState::Init,
            down_at: None,
            advert_at: None,
            master_interval,
            master: None,
            preempt_at: 0,
            rejects: [0; Reject::ALL.len()],
            dual_master: 0,
            weight: 0,
            fault: false,
            sent: 0,
            received: 0,
            history: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn spec(&self) -> &InstanceSpec {
        &self.spec
    }

    /// Current state.
    pub fn state(&self) -> VrrpState {
        self.state
    }

    /// The master's address as last seen (ours when MASTER).
    pub fn master(&self) -> Option<IpAddr> {
        match self.state {
            VrrpState::Master => Some(self.spec.src),
            _ => self.master,
        }
    }

    /// Rejected adverts by reason ([`Reject::ALL`] order).
    pub fn rejects(&self) -> &[u64; Reject::ALL.len()] {
        &self.rejects
    }

    /// Rejected adverts for `reason`.
    pub fn rejected(&self, reason: Reject) -> u64 {
        self.rejects[reason as usize]
    }

    /// Dual-master alarms raised.
    pub fn dual_master_alarms(&self) -> u64 {
        self.dual_master
    }

    /// Adverts sent (as counted by [`Action::Send`]s returned).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Valid adverts received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The last transitions, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &Transition> {
        self.history.iter()
    }

    /// The current master's advert interval in µs.
    pub fn master_interval_us(&self) -> u64 {
        self.master_interval
    }

    /// The priority advertised and compared: the configured one moved by
    /// the trackers' weights, clamped to 1..=254; 255 never changes
    /// (keepalived, `priority` in keepalived.conf(5)).
    pub fn effective_priority(&self) -> u8 {
        let base = self.spec.priority;
        if base == 255 {
            return 255;
        }
        (i32::from(base) + self.weight).clamp(1, 254) as u8
    }

    /// The trackers' verdict: `fault` (an unweighted tracker failed) and
    /// the summed `weight` of the weighted ones. Entering FAULT from MASTER
    /// sends priority 0 and releases the VIPs; FAULT sends nothing; leaving
    /// it starts as BACKUP. A weight change takes effect with the next
    /// advert.
    pub fn set_trackers(&mut self, now: u64, fault: bool, weight: i32) -> Vec<Action> {
        let mut out = Vec::new();
        self.weight = weight;
        if fault == self.fault {
            return out;
        }
        self.fault = fault;
        match (fault, self.state) {
            (true, VrrpState::Master) => {
                self.send(&mut out, 0);
                out.push(Action::BecomeBackup);
                self.enter_fault(now);
            }
            (true, VrrpState::Backup) => self.enter_fault(now),
            (false, VrrpState::Fault) => {
                self.master = None;
                self.become_backup(now, &mut out);
            }
            _ => {}
        }
        out
    }

    fn enter_fault(&mut self, now: u64) {
        self.enter(now, VrrpState::Fault);
        self.down_at = None;
        self.advert_at = None;
        self.master = None;
    }

    /// Skew_Time in µs for our priority.
    pub fn skew_us(&self) -> u64 {
        let p = 256 - u64::from(self.effective_priority());
        if self.spec.version == 2 {
            p * SEC / 256
        } else {
            p * self.master_interval / 256
        }
    }

    /// Master_Down_Interval in µs.
    pub fn master_down_interval_us(&self) -> u64 {
        3 * self.master_interval + self.skew_us()
    }

    /// When [`Instance::on_timer`] must run next.
    pub fn next_deadline(&self) -> Option<u64> {
        match self.state {
            VrrpState::Backup => self.down_at,
            VrrpState::Master => self.advert_at,
            _ => None,
        }
    }

    fn enter(&mut self, now: u64, to: VrrpState) {
        self.state = to;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Transition { at: now, to });
    }

    fn send(&mut self, out: &mut Vec<Action>, priority: u8) {
        self.sent += 1;
        out.push(Action::Send { priority });
    }

    fn become_master(&mut self, now: u64, out: &mut Vec<Action>) {
        // keepalived: the advert first, then the VIPs, then the GARPs.
        self.send(out, self.effective_priority());
        self.enter(now, VrrpState::Master);
        self.down_at = None;
        self.master_interval = u64::from(self.spec.interval_cs) * 10_000;
        self.advert_at = Some(now + self.master_interval);
        out.push(Action::BecomeMaster);
    }

    fn become_backup(&mut self, now: u64, out: &mut Vec<Action>) {
        let was_master = self.state == VrrpState::Master;
        self.enter(now, VrrpState::Backup);
        self.advert_at = None;
        self.down_at = Some(now + self.master_down_interval_us());
        if was_master {
            out.push(Action::BecomeBackup);
        }
    }

    /// Starts the instance: the address owner (priority 255) becomes
    /// MASTER at once; everyone else, `state MASTER` included, is BACKUP
    /// for a Master_Down_Interval.
    pub fn start(&mut self, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.preempt_at = now + u64::from(self.spec.preempt_delay_cs) * 10_000;
        if self.fault {
            self.enter_fault(now);
        } else if self.spec.priority == 255 {
            self.become_master(now, &mut out);
        } else {
            self.become_backup(now, &mut out);
        }
        out
    }

    /// Stops the instance: a MASTER sends priority 0 and releases the VIPs.
    pub fn stop(&mut self, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == VrrpState::Master {
            self.send(&mut out, 0);
            out.push(Action::BecomeBackup);
        }
        self.enter(now, VrrpState::Init);
        self.down_at = None;
        self.advert_at = None;
        out
    }

    /// Timer expiry: the backup takes over, the master advertises.
    pub fn on_timer(&mut self, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            VrrpState::Backup if self.down_at.is_some_and(|t| now >= t) => {
                self.master = None;
                self.become_master(now, &mut out);
            }
            VrrpState::Master if self.advert_at.is_some_and(|t| now >= t) => {
                self.send(&mut out, self.effective_priority());
                self.advert_at = Some(now + self.master_interval);
            }
            _ => {}
        }
        out
    }

    /// A received IPv4 packet (IP header included, as a raw socket returns
    /// it): keepalived's checks, then the state machine.
    pub fn receive(&mut self, now: u64, ip: &[u8]) -> Received {
        let checked = self.check(ip);
        self.received_checked(now, checked)
    }

    fn received_checked(
        &mut self,
        now: u64,
        checked: Result<Option<(IpAddr, u8, u64)>, Reject>,
    ) -> Received {
        match checked {
            Ok(Some((src, priority, interval))) => {
                self.received += 1;
                Received::Advert(self.on_advert(now, src, priority, interval))
            }
            Ok(None) => Received::OtherVrid,
            Err(reason) => {
                self.rejects[reason as usize] += 1;
                if self.state == VrrpState::Master {
                    // The sender does not accept ours either: it will (or
                    // does) claim the VIPs too.
                    self.dual_master += 1;
                }
                Received::Rejected(reason)
            }
        }
    }

    /// keepalived's `vrrp_check_packet()`: `Ok(None)` for another VRID,
    /// else the sender, its priority and interval (µs).
    fn check(&self, ip: &[u8]) -> Result<Option<(IpAddr, u8, u64)>, Reject> {
        let p = Ipv4Packet::new_checked(ip).map_err(|_| Reject::Length)?;
        if !p.verify_checksum() {
            return Err(Reject::Checksum);
        }
        let total = usize::from(p.total_len());
        if total != ip.len() && !(ip.len() > total && ip.len() <= 46) {
            // Only Ethernet padding may follow the datagram.
            return Err(Reject::Length);
        }
        let src = IpAddr::V4(p.src_addr());
        let dst = IpAddr::V4(p.dst_addr());
        self.check_message(src, dst, p.ttl(), p.payload())
    }

    /// A VRRP message received over IPv6 (a raw socket gives the message,
    /// with the source, destination and hop limit from the ancillary
    /// data): the same checks and state machine as [`Instance::receive`].
    pub fn receive_v6(
        &mut self,
        now: u64,
        src: std::net::Ipv6Addr,
        dst: std::net::Ipv6Addr,
        hop_limit: u8,
        msg: &[u8],
    ) -> Received {
        let checked = self.check_message(IpAddr::V6(src), IpAddr::V6(dst), hop_limit, msg);
        self.received_checked(now, checked)
    }

    /// The checks after the IP layer, for either family.
    fn check_message(
        &self,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        msg: &[u8],
    ) -> Result<Option<(IpAddr, u8, u64)>, Reject> {
        let spec = &self.spec;
        let family = if src.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        };
        if src.is_ipv4() != spec.src.is_ipv4() {
            return Ok(None);
        }
        if msg.len() < vrrp::HEADER_LEN {
            return Err(Reject::Length);
        }
        let (version, count) = (msg[0] >> 4, msg[3]);
        let vrid = msg[1];
        if version != spec.version {
            return if vrid == spec.vrid {
                Err(Reject::Version)
            } else {
                Ok(None)
            };
        }
        if msg.len() != message_len(version, family, count) {
            return Err(Reject::Length);
        }
        let v = VrrpPacket::new_checked(msg, family).map_err(|_| Reject::Length)?;
        let multicast = dst.is_multicast();
        if multicast && ttl != vrrp::TTL {
            return Err(Reject::Ttl);
        }
        if v.kind() != TYPE_ADVERT {
            return Err(Reject::Type);
        }
        if v.vrid() != spec.vrid {
            return Ok(None);
        }
        let sum_ok = if version == 2 {
            v.verify_checksum_v2()
        } else {
            v.verify_checksum_v3(&src, &dst) || v.verify_checksum_v3_as_v2()
        };
        if !sum_ok {
            return Err(Reject::Checksum);
        }
        let interval = if version == 2 {
            if v.auth_type() != spec.auth.type_number() {
                return Err(Reject::AuthType);
            }
            if v.auth_type() == auth_type::PASS && !ct_eq(v.auth_data(), &spec.auth.data()) {
                return Err(Reject::AuthPass);
            }
            if u16::from(v.adver_int()) * 100 != spec.interval_cs {
                return Err(Reject::Interval);
            }
            u64::from(v.adver_int()) * SEC
        } else {
            // v3: a different interval is only logged; the backup adopts it.
            u64::from(v.max_adver_int().max(1)) * 10_000
        };
        if multicast != spec.unicast_peers.is_empty() {
            return Err(Reject::Destination);
        }
        if usize::from(count) != spec.vips.len() {
            return Err(Reject::AddrCount);
        }
        if v.addrs().any(|a| !spec.vips.contains(&a)) {
            return Err(Reject::AddrList);
        }
        Ok(Some((src, v.priority(), interval)))
    }

    /// A valid advert from `src`.
    fn on_advert(&mut self, now: u64, src: IpAddr, priority: u8, interval: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let own = self.effective_priority();
        match self.state {
            VrrpState::Backup => {
                if priority == 0 {
                    self.master = Some(src);
                    self.down_at = Some(now + self.skew_us());
                } else if self.spec.nopreempt || priority >= own || now < self.preempt_at {
                    self.master = Some(src);
                    if self.spec.version == 3 {
                        self.master_interval = interval;
                    }
                    self.down_at = Some(now + self.master_down_interval_us());
                }
                // Else: preempting a lower priority; the timer runs on.
            }
            VrrpState::Master => {
                if priority == 0 {
                    self.send(&mut out, own);
                    self.advert_at = Some(now + self.master_interval);
                } else if priority > own || (priority == own && addr_gt(&src, &self.spec.src)) {
                    self.master = Some(src);
                    if self.spec.version == 3 {
                        self.master_interval = interval;
                    }
                    self.become_backup(now, &mut out);
                } else {
                    // Another master with a lower priority: force a new
                    // election with an advert at once.
                    self.dual_master += 1;
                    self.send(&mut out, own);
                    self.advert_at = Some(now + self.master_interval);
                }
            }
            VrrpState::Init | VrrpState::Fault => {}
        }
        out
    }
}

/// A tracked script's verdict with keepalived's `rise` / `fall`
/// hysteresis: it starts OK; `fall` consecutive failures make it KO,
/// `rise` consecutive successes OK again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptState {
    ok: bool,
    streak: u32,
    rise: u32,
    fall: u32,
}

impl ScriptState {
    /// OK, with these thresholds (at least 1 each).
    pub fn new(rise: u32, fall: u32) -> ScriptState {
        ScriptState {
            ok: true,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// The verdict.
    pub fn ok(&self) -> bool {
        self.ok
    }

    /// One run's result; returns whether the verdict changed.
    pub fn result(&mut self, success: bool) -> bool {
        if success == self.ok {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let need = if success { self.rise } else { self.fall };
        if self.streak >= need {
            self.ok = success;
            self.streak = 0;
            true
        } else {
            false
        }
    }
}

/// keepalived's `vrrp_sync_group`: after instance `leader` changed state,
/// the other members of its group follow — all go MASTER when it went
/// MASTER, all leave MASTER when it left. Returns each follower's actions
/// (to carry out like the leader's).
pub fn follow_sync_group(
    instances: &mut [Instance],
    leader: usize,
    now: u64,
) -> Vec<(usize, Vec<Action>)> {
    let Some(group) = instances
        .get(leader)
        .and_then(|l| l.spec.sync_group.clone())
    else {
        return Vec::new();
    };
    let master = instances[leader].state == VrrpState::Master;
    let mut out = Vec::new();
    for (i, inst) in instances.iter_mut().enumerate() {
        if i == leader || inst.spec.sync_group.as_ref() != Some(&group) {
            continue;
        }
        let mut actions = Vec::new();
        match (master, inst.state) {
            (true, VrrpState::Backup) => {
                inst.master = None;
                inst.become_master(now, &mut actions);
            }
            (false, VrrpState::Master) => {
                inst.master = None;
                inst.become_backup(now, &mut actions);
            }
            _ => continue,
        }
        out.push((i, actions));
    }
    out
}

/// `a > b` as addresses compare in VRRP (network byte order).
fn addr_gt(a: &IpAddr, b: &IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        _ => false,
    }
}

/// Constant-time comparison (keepalived compares the password so).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
pub(crate) mod tests;
