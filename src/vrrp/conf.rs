//! The `vrrp:` section of lbd's YAML configuration: VRRP instances with
//! keepalived's keyword names and defaults (`reference/keepalived.md` §1.5),
//! so that the keepalived.conf reader maps `vrrp_instance` one-to-one onto
//! [`InstanceConf`], and [`VrrpConf::resolve`], which checks an instance
//! against the ports and turns it into the parameters the state machine and
//! the service run on ([`InstanceSpec`]).
//!
//! Rules: keepalived's defaults (`priority` 100, or 255 with `state
//! MASTER`; `advert_int` 1 s; version 2; preempt on; GARP 5 + 5 after 5 s).
//! keepalived's quirks are kept: a v2 interval is rounded to whole seconds,
//! the password is cut to 8 bytes, `nopreempt` and `preempt_delay` are
//! cleared with `state MASTER` (each noted in [`InstanceSpec::notes`]).
//! What rvs cannot honour yet (`track_interface`, sync groups, AH) is
//! refused with a message naming the field, never ignored.

use std::net::IpAddr;

use serde::Deserialize;

use crate::wire::VrrpAuth;

/// Why the `vrrp:` section is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vrrp.instances[{index}] ({name}): {message}")]
pub struct VrrpConfError {
    /// Position of the instance.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// What is wrong, naming the field.
    pub message: String,
}

/// The `vrrp:` top-level section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpConf {
    /// `vrrp_instance` blocks.
    #[serde(default)]
    pub instances: Vec<InstanceConf>,
    /// `vrrp_sync_group` blocks: members move together.
    #[serde(default)]
    pub sync_groups: Vec<SyncGroupConf>,
    /// `vrrp_script` blocks: checks instances track.
    #[serde(default)]
    pub scripts: Vec<ScriptConf>,
}

/// `vrrp_script NAME { script; interval; timeout; weight; rise; fall }`
/// (reference §1.3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConf {
    /// Name (`track_script` refers to it).
    pub name: String,
    /// `PROGRAM ARGS...` (no shell); exit 0 = OK.
    pub script: String,
    /// Seconds between runs (default 1).
    #[serde(default = "default_advert_int")]
    pub interval: f64,
    /// Seconds a run may take (default: the interval); longer = KO.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// -253..=253: 0 (default) = KO puts the instance in FAULT; > 0 added
    /// while OK; < 0 added while KO.
    #[serde(default)]
    pub weight: i32,
    /// Consecutive OK runs to become OK (default 1).
    #[serde(default = "default_one")]
    pub rise: u32,
    /// Consecutive KO runs to become KO (default 1).
    #[serde(default = "default_one")]
    pub fall: u32,
}

impl Eq for ScriptConf {}

fn default_one() -> u32 {
    1
}

/// A checked `vrrp_script`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptSpec {
    /// Name.
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Run period, ms.
    pub interval_ms: u64,
    /// Run limit, ms.
    pub timeout_ms: u64,
    /// Consecutive results to change state.
    pub rise: u32,
    /// Consecutive results to change state.
    pub fall: u32,
}

impl VrrpConf {
    /// The scripts, checked.
    pub fn script_specs(&self) -> Result<Vec<ScriptSpec>, VrrpConfError> {
        let mut out: Vec<ScriptSpec> = Vec::new();
        for (index, s) in self.scripts.iter().enumerate() {
            let bad = |message: String| VrrpConfError {
                index,
                name: s.name.clone(),
                message: format!("vrrp.scripts: {message}"),
            };
            let argv: Vec<String> = s.script.split_whitespace().map(String::from).collect();
            if argv.is_empty() {
                return Err(bad("script: empty".into()));
            }
            if !(0.01..=3600.0).contains(&s.interval) {
                return Err(bad(format!(
                    "interval: {} out of range 0.01..=3600 s",
                    s.interval
                )));
            }
            let timeout = s.timeout.unwrap_or(s.interval);
            if !(0.01..=3600.0).contains(&timeout) {
                return Err(bad(format!(
                    "timeout: {timeout} out of range 0.01..=3600 s"
                )));
            }
            if !(-253..=253).contains(&s.weight) {
                return Err(bad(format!("weight: {} out of range -253..=253", s.weight)));
            }
            if s.rise == 0 || s.fall == 0 {
                return Err(bad("rise and fall: at least 1".into()));
            }
            if out.iter().any(|o| o.name == s.name) {
                return Err(bad("name used twice".into()));
            }
            out.push(ScriptSpec {
                name: s.name.clone(),
                argv,
                interval_ms: (s.interval * 1000.0).round() as u64,
                timeout_ms: (timeout * 1000.0).round() as u64,
                rise: s.rise,
                fall: s.fall,
            });
        }
        Ok(out)
    }
}

/// `vrrp_sync_group NAME { group { ... } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncGroupConf {
    /// Group name.
    pub name: String,
    /// Member instances.
    pub group: Vec<String>,
}

/// `state MASTER|BACKUP`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum InitialState {
    /// Wish to be master (only priority 255 takes over at once).
    #[serde(rename = "MASTER")]
    Master,
    /// Start as backup.
    #[default]
    #[serde(rename = "BACKUP")]
    Backup,
}

/// One `track_interface` entry: a port name, or `{interface, weight}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TrackConf {
    /// Unweighted: down → FAULT.
    Port(String),
    /// Weighted: a positive weight is added while up, a negative one
    /// while down (-253..=253; 0 = unweighted).
    Weighted {
        /// The port (or, in `track_script`, the script; `name` is an
        /// alias).
        #[serde(alias = "name")]
        interface: String,
        /// The weight.
        weight: i32,
    },
}

/// `auth_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthType {
    /// Simple password.
    #[serde(rename = "PASS")]
    Pass,
    /// IPsec AH (refused).
    #[serde(rename = "AH")]
    Ah,
}

/// `authentication { auth_type PASS; auth_pass X }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConf {
    /// Type.
    pub auth_type: AuthType,
    /// Password (first 8 bytes used).
    pub auth_pass: String,
}

/// `vrrp_instance NAME { ... }` with keepalived's keywords.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConf {
    /// Instance name.
    pub name: String,
    /// Initial wish.
    #[serde(default)]
    pub state: InitialState,
    /// The lbd port (by name) the adverts leave by; it needs a `kernel_if`.
    pub interface: String,
    /// VRID 1..255.
    pub virtual_router_id: u8,
    /// Priority 1..255 (default 100, or 255 with `state: MASTER`).
    #[serde(default)]
    pub priority: Option<u8>,
    /// Seconds (v2: whole, 1..255; v3: 0.01..40.95).
    #[serde(default = "default_advert_int")]
    pub advert_int: f64,
    /// 2 or 3.
    #[serde(default = "default_version")]
    pub version: u8,
    /// v2 authentication.
    #[serde(default)]
    pub authentication: Option<AuthConf>,
    /// The virtual addresses carried in the adverts.
    pub virtual_ipaddress: Vec<IpAddr>,
    /// Addresses that move with the instance but are not carried in the
    /// adverts (either family): FULLNAT local addresses, the inside
    /// gateway address of LVS-NAT real servers.
    #[serde(default)]
    pub virtual_ipaddress_excluded: Vec<IpAddr>,
    /// Source address of the adverts (default: the port's first address
    /// of the VIPs' family).
    #[serde(default)]
    pub unicast_src_ip: Option<IpAddr>,
    /// Unicast peers (none: multicast).
    #[serde(default)]
    pub unicast_peer: Vec<IpAddr>,
    /// Do not take over from a live lower-priority master.
    #[serde(default)]
    pub nopreempt: bool,
    /// Seconds 0..1000 to delay preemption after start.
    #[serde(default)]
    pub preempt_delay: f64,
    /// Tracked ports (their Linux interfaces): down → FAULT, or with a
    /// weight, priority ± weight.
    #[serde(default)]
    pub track_interface: Vec<TrackConf>,
    /// Tracked `vrrp.scripts` by name, or `{interface: NAME, weight}` to
    /// override the script's weight.
    #[serde(default)]
    pub track_script: Vec<TrackConf>,
    /// Run on becoming MASTER.
    #[serde(default)]
    pub notify_master: Option<String>,
    /// Run on becoming BACKUP.
    #[serde(default)]
    pub notify_backup: Option<String>,
    /// Run on entering FAULT.
    #[serde(default)]
    pub notify_fault: Option<String>,
    /// Run after the specific script with `INSTANCE name STATE priority`.
    #[serde(default)]
    pub notify: Option<String>,
    /// Seconds between the two GARP bursts after becoming MASTER (0: one
    /// burst).
    #[serde(default = "default_garp_delay")]
    pub garp_master_delay: u32,
    /// GARPs per VIP per burst.
    #[serde(default = "default_garp_repeat")]
    pub garp_master_repeat: u32,
    /// Seconds between periodic GARP refreshes while MASTER (0: none).
    #[serde(default)]
    pub garp_master_refresh: u32,
}

// The seconds are compared as written; a NaN never passes `resolve`.
impl Eq for InstanceConf {}

fn default_advert_int() -> f64 {
    1.0
}
fn default_version() -> u8 {
    2
}
fn default_garp_delay() -> u32 {
    5
}
fn default_garp_repeat() -> u32 {
    5
}

/// What [`VrrpConf::resolve`] needs to know about a port.
#[derive(Debug, Clone)]
pub struct PortInfo {
    /// Port name.
    pub name: String,
    /// Its kernel interface, if any.
    pub kernel_if: Option<String>,
    /// Its own addresses.
    pub addrs: Vec<IpAddr>,
    /// The Linux interface whose link state `track_interface` reads
    /// (af_packet, tap ports), if any.
    pub linux_if: Option<String>,
}

impl InstanceSpec {
    /// Every address the instance owns while MASTER: its VIPs, then the
    /// excluded ones.
    pub fn owned(&self) -> impl Iterator<Item = &IpAddr> {
        self.vips.iter().chain(&self.excluded)
    }
}

/// The EUI-64 link-local address the kernel gives an interface with `mac`
/// (`addr_gen_mode` 0, the default): what an IPv6 instance sends from.
pub fn link_local(mac: [u8; 6]) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// An instance ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    /// Name.
    pub name: String,
    /// Port index.
    pub port: u16,
    /// The port's kernel interface (adverts and GARPs go through it).
    pub kernel_if: String,
    /// VRID.
    pub vrid: u8,
    /// Configured (base) priority.
    pub priority: u8,
    /// 2 or 3.
    pub version: u8,
    /// Advert interval in centiseconds (v2: a multiple of 100).
    pub interval_cs: u16,
    /// v2 authentication.
    pub auth: VrrpAuth,
    /// VIPs.
    pub vips: Vec<IpAddr>,
    /// `virtual_ipaddress_excluded`: gated and announced like the VIPs,
    /// not carried in adverts.
    pub excluded: Vec<IpAddr>,
    /// Source address of the adverts (the tie-breaker). IPv6 without
    /// `unicast_src_ip`: `::` here, the kernel interface's link-local
    /// address once the service knows the port's MAC ([`link_local`]).
    pub src: IpAddr,
    /// Unicast peers (empty: multicast).
    pub unicast_peers: Vec<IpAddr>,
    /// nopreempt.
    pub nopreempt: bool,
    /// Preemption delay, centiseconds.
    pub preempt_delay_cs: u32,
    /// Scripts.
    pub notify_master: Option<String>,
    /// Scripts.
    pub notify_backup: Option<String>,
    /// Scripts.
    pub notify_fault: Option<String>,
    /// Scripts.
    pub notify: Option<String>,
    /// GARP schedule: second burst delay (s), repeat, refresh (s).
    pub garp_delay_s: u32,
    /// GARPs per VIP per burst.
    pub garp_repeat: u32,
    /// Refresh period (s), 0 = none.
    pub garp_refresh_s: u32,
    /// The `vrrp_sync_group` it belongs to.
    pub sync_group: Option<String>,
    /// Tracked Linux interfaces with their weights (0 = down → FAULT).
    pub track: Vec<(String, i32)>,
    /// Tracked scripts (index in [`VrrpConf::script_specs`]) with their
    /// weights (0 = KO → FAULT).
    pub track_scripts: Vec<(usize, i32)>,
    /// What keepalived would have warned about.
    pub notes: Vec<String>,
}

impl VrrpConf {
    /// Checks every instance against `ports` and resolves it.
    pub fn resolve(&self, ports: &[PortInfo]) -> Result<Vec<InstanceSpec>, VrrpConfError> {
        self.script_specs()?;
        let mut out: Vec<InstanceSpec> = Vec::new();
        for (index, i) in self.instances.iter().enumerate() {
            let spec = i
                .resolve(ports, &self.scripts)
                .map_err(|message| VrrpConfError {
                    index,
                    name: i.name.clone(),
                    message,
                })?;
            let clash = out.iter().find(|o| {
                o.name == spec.name
                    || (o.port == spec.port
                        && o.vrid == spec.vrid
                        && o.src.is_ipv4() == spec.src.is_ipv4())
            });
            if let Some(o) = clash {
                return Err(VrrpConfError {
                    index,
                    name: i.name.clone(),
                    message: format!(
                        "same name or virtual_router_id {} on {} as instance {}",
                        spec.vrid, i.interface, o.name
                    ),
                });
            }
            out.push(spec);
        }
        for (index, g) in self.sync_groups.iter().enumerate() {
            let bad = |message: String| VrrpConfError {
                index,
                name: g.name.clone(),
                message,
            };
            if g.group.len() < 2 {
                return Err(bad(
                    "vrrp.sync_groups: a group needs at least two instances".into(),
                ));
            }
            for member in &g.group {
                let spec = out.iter_mut().find(|s| &s.name == member).ok_or_else(|| {
                    bad(format!("vrrp.sync_groups: no instance named {member:?}"))
                })?;
                if let Some(other) = &spec.sync_group {
                    return Err(bad(format!(
                        "vrrp.sync_groups: instance {member:?} is already in group {other:?}"
                    )));
                }
                spec.sync_group = Some(g.name.clone());
            }
        }
        Ok(out)
    }
}

impl InstanceConf {
    fn resolve(&self, ports: &[PortInfo], scripts: &[ScriptConf]) -> Result<InstanceSpec, String> {
        let mut notes = Vec::new();
        let (port, info) = ports
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == self.interface)
            .ok_or_else(|| format!("interface: no port named {:?}", self.interface))?;
        let kernel_if = info.kernel_if.clone().ok_or_else(|| {
            format!(
                "interface: port {:?} has no kernel_if; VRRP adverts and GARPs go through the port's kernel interface (ports[].kernel_if)",
                self.interface
            )
        })?;
        if self.virtual_router_id == 0 {
            return Err("virtual_router_id: 0 out of range 1..=255".into());
        }
        let priority = match (self.priority, self.state) {
            (Some(0), _) => return Err("priority: 0 out of range 1..=255".into()),
            (Some(p), _) => p,
            (None, InitialState::Master) => 255,
            (None, InitialState::Backup) => 100,
        };
        let (interval_cs, auth) = match self.version {
            2 => {
                if !(self.advert_int >= 0.5 && self.advert_int < 255.5) {
                    return Err(format!(
                        "advert_int: {} out of range 1..=255 s (VRRPv2)",
                        self.advert_int
                    ));
                }
                let secs = self.advert_int.round();
                if secs != self.advert_int {
                    notes.push(format!(
                        "advert_int {} rounded to {secs} s (VRRPv2 carries whole seconds)",
                        self.advert_int
                    ));
                }
                let auth = match &self.authentication {
                    None => VrrpAuth::None,
                    Some(a) if a.auth_type == AuthType::Ah => {
                        return Err("authentication.auth_type: AH is not supported".into())
                    }
                    Some(a) => {
                        if a.auth_pass.len() > 8 {
                            notes.push("auth_pass cut to its first 8 bytes".into());
                        }
                        VrrpAuth::pass(&a.auth_pass)
                    }
                };
                ((secs as u16) * 100, auth)
            }
            3 => {
                let cs = (self.advert_int * 100.0).round();
                if !(1.0..=4095.0).contains(&cs) {
                    return Err(format!(
                        "advert_int: {} out of range 0.01..=40.95 s (VRRPv3)",
                        self.advert_int
                    ));
                }
                if self.authentication.is_some() {
                    notes.push("authentication ignored in VRRPv3".into());
                }
                (cs as u16, VrrpAuth::None)
            }
            v => return Err(format!("version: {v} (2 or 3)")),
        };
        let first = self
            .virtual_ipaddress
            .first()
            .ok_or("virtual_ipaddress: at least one address")?;
        if self.virtual_ipaddress.len() > 255 {
            return Err("virtual_ipaddress: at most 255 addresses".into());
        }
        if self
            .virtual_ipaddress
            .iter()
            .any(|a| a.is_ipv4() != first.is_ipv4())
        {
            return Err("virtual_ipaddress: all of one family".into());
        }
        if first.is_ipv6() && self.version == 2 {
            return Err("virtual_ipaddress: IPv6 needs version 3".into());
        }
        let src = match self.unicast_src_ip {
            Some(a) if a.is_ipv4() != first.is_ipv4() => {
                return Err("unicast_src_ip: not of the VIPs' family".into())
            }
            Some(a) => a,
            // IPv6: the kernel interface's link-local address (RFC 5798
            // §5.1.2.1), known once the port's MAC is (the service).
            None if first.is_ipv6() => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            None => *info
                .addrs
                .iter()
                .find(|a| a.is_ipv4() == first.is_ipv4())
                .ok_or_else(|| {
                    format!(
                        "interface: port {:?} has no address of the VIPs' family to send from",
                        self.interface
                    )
                })?,
        };
        if self
            .unicast_peer
            .iter()
            .any(|p| p.is_ipv4() != first.is_ipv4())
        {
            return Err("unicast_peer: not of the VIPs' family".into());
        }
        let mut track = Vec::new();
        for t in &self.track_interface {
            let (name, weight) = match t {
                TrackConf::Port(name) => (name, 0),
                TrackConf::Weighted { interface, weight } => (interface, *weight),
            };
            if !(-253..=253).contains(&weight) {
                return Err(format!(
                    "track_interface: weight {weight} out of range -253..=253"
                ));
            }
            let p = ports
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| format!("track_interface: no port named {name:?}"))?;
            let linux_if = p.linux_if.clone().ok_or_else(|| {
                format!(
                    "track_interface: port {name:?} has no Linux interface whose link lbd can read (af_packet and tap ports have one)"
                )
            })?;
            track.push((linux_if, weight));
        }
        let mut track_scripts = Vec::new();
        for t in &self.track_script {
            let (name, weight) = match t {
                TrackConf::Port(name) => (name, None),
                TrackConf::Weighted { interface, weight } => (interface, Some(*weight)),
            };
            let (at, script) = scripts
                .iter()
                .enumerate()
                .find(|(_, s)| &s.name == name)
                .ok_or_else(|| format!("track_script: no vrrp.scripts entry named {name:?}"))?;
            let weight = weight.unwrap_or(script.weight);
            if !(-253..=253).contains(&weight) {
                return Err(format!(
                    "track_script: weight {weight} out of range -253..=253"
                ));
            }
            track_scripts.push((at, weight));
        }
        if !(0.0..=1000.0).contains(&self.preempt_delay) {
            return Err(format!(
                "preempt_delay: {} out of range 0..=1000 s",
                self.preempt_delay
            ));
        }
        let (mut nopreempt, mut preempt_delay) = (self.nopreempt, self.preempt_delay);
        if self.state == InitialState::Master && (nopreempt || preempt_delay > 0.0) {
            notes.push("nopreempt and preempt_delay cleared: state MASTER".into());
            nopreempt = false;
            preempt_delay = 0.0;
        }
        Ok(InstanceSpec {
            name: self.name.clone(),
            port: port as u16,
            kernel_if,
            vrid: self.virtual_router_id,
            priority,
            version: self.version,
            interval_cs,
            auth,
            vips: self.virtual_ipaddress.clone(),
            excluded: self.virtual_ipaddress_excluded.clone(),
            src,
            unicast_peers: self.unicast_peer.clone(),
            nopreempt,
            preempt_delay_cs: (preempt_delay * 100.0).round() as u32,
            notify_master: self.notify_master.clone(),
            notify_backup: self.notify_backup.clone(),
            notify_fault: self.notify_fault.clone(),
            notify: self.notify.clone(),
            garp_delay_s: self.garp_master_delay,
            garp_repeat: self.garp_master_repeat,
            garp_refresh_s: self.garp_master_refresh,
            sync_group: None,
            track,
            track_scripts,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Vec<PortInfo> {
        vec![
            PortInfo {
                name: "ext".into(),
                kernel_if: Some("kext".into()),
                addrs: vec!["10.99.0.11".parse().unwrap()],
                linux_if: Some("eth0".into()),
            },
            PortInfo {
                name: "int".into(),
                kernel_if: None,
                addrs: vec!["192.168.0.1".parse().unwrap()],
                linux_if: None,
            },
        ]
    }

    fn conf(yaml: &str) -> VrrpConf {
        serde_yaml_ng::from_str(yaml).expect("yaml")
    }

    const BASE: &str = "instances:\n  - name: VI_1\n    interface: ext\n    virtual_router_id: 51\n    virtual_ipaddress: [10.99.0.38]\n";

    #[test]
    fn keepalived_defaults_apply() {
        let s = &conf(BASE).resolve(&ports()).unwrap()[0];
        assert!(s.excluded.is_empty());
        assert_eq!(
            (s.priority, s.version, s.interval_cs, s.auth, s.nopreempt),
            (100, 2, 100, VrrpAuth::None, false)
        );
        assert_eq!((s.garp_delay_s, s.garp_repeat, s.garp_refresh_s), (5, 5, 0));
        assert_eq!(s.src, "10.99.0.11".parse::<IpAddr>().unwrap());
        assert_eq!(s.kernel_if, "kext");
    }

    #[test]
    fn state_master_without_priority_is_the_owner_and_clears_nopreempt() {
        let s = &conf(&format!("{BASE}    state: MASTER\n    nopreempt: true\n"))
            .resolve(&ports())
            .unwrap()[0];
        assert_eq!((s.priority, s.nopreempt), (255, false));
        assert!(!s.notes.is_empty());
    }

    #[test]
    fn password_is_cut_and_v2_interval_rounded() {
        let s = &conf(&format!(
            "{BASE}    advert_int: 1.4\n    authentication: {{ auth_type: PASS, auth_pass: secretpassword }}\n"
        ))
        .resolve(&ports())
        .unwrap()[0];
        assert_eq!(s.auth, VrrpAuth::Pass(*b"secretpa"));
        assert_eq!(s.interval_cs, 100);
        assert_eq!(s.notes.len(), 2, "{:?}", s.notes);
    }

    #[test]
    fn a_port_without_kernel_if_is_a_precise_error() {
        let e = conf(&BASE.replace("interface: ext", "interface: int"))
            .resolve(&ports())
            .unwrap_err();
        assert!(e.to_string().contains("has no kernel_if"), "{e}");
        assert!(e.to_string().contains("vrrp.instances[0] (VI_1)"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        for (extra, needle) in [
            ("    version: 4\n", "version"),
            ("    advert_int: 0.2\n", "advert_int"),
            ("    priority: 0\n", "priority"),
            ("    track_interface: [eth0]\n", "no port named \"eth0\""),
            ("    track_interface: [int]\n", "no Linux interface"),
            (
                "    track_interface: [{interface: ext, weight: 300}]\n",
                "out of range",
            ),
            (
                "    authentication: { auth_type: AH, auth_pass: x }\n",
                "AH",
            ),
        ] {
            let e = conf(&format!("{BASE}{extra}"))
                .resolve(&ports())
                .unwrap_err();
            assert!(e.to_string().contains(needle), "{extra}: {e}");
        }
        let v6 = conf(&format!(
            "{}    version: 3\n",
            BASE.replace("[10.99.0.38]", "[\"2001:db8::38\"]")
        ));
        let s6 = &v6.resolve(&ports()).unwrap()[0];
        assert_eq!(s6.src, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        assert_eq!(
            link_local([0x02, 0, 0, 0, 0, 1]),
            "fe80::ff:fe00:1".parse::<std::net::Ipv6Addr>().unwrap()
        );
        let ex = conf(&format!(
            "{BASE}    virtual_ipaddress_excluded: [192.168.10.254, \"2001:db8::1\"]\n"
        ));
        let ex = &ex.resolve(&ports()).unwrap()[0];
        assert_eq!(ex.owned().count(), 3);
        let scripted = conf(&format!(
            "{BASE}    track_script: [chk, {{name: chk, weight: 5}}]\nscripts:\n  - {{name: chk, script: \"test -f /x\", interval: 0.5, weight: -10, fall: 2}}\n"
        ));
        let sp = &scripted.resolve(&ports()).unwrap()[0];
        assert_eq!(sp.track_scripts, vec![(0, -10), (0, 5)]);
        let ss = scripted.script_specs().unwrap();
        assert_eq!(
            (
                ss[0].argv.len(),
                ss[0].interval_ms,
                ss[0].timeout_ms,
                ss[0].fall
            ),
            (3, 500, 500, 2)
        );
        let e = conf(&format!("{BASE}    track_script: [nope]\n"))
            .resolve(&ports())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("no vrrp.scripts entry named \"nope\""),
            "{e}"
        );
        let e = conf(&format!(
            "{BASE}scripts:\n  - {{name: chk, script: \"true\", rise: 0}}\n"
        ))
        .resolve(&ports())
        .unwrap_err();
        assert!(e.to_string().contains("rise and fall"), "{e}");
        let tracked = conf(&format!(
            "{BASE}    track_interface: [ext, {{interface: ext, weight: -20}}]\n"
        ));
        assert_eq!(
            tracked.resolve(&ports()).unwrap()[0].track,
            vec![("eth0".to_string(), 0), ("eth0".to_string(), -20)]
        );
        let v3 = conf(&format!("{BASE}    version: 3\n    advert_int: 0.5\n"));
        let groups = |g: &str| {
            conf(&format!(
                "{BASE}  - name: VI_2\n    interface: ext\n    virtual_router_id: 52\n    virtual_ipaddress: [10.99.0.39]\nsync_groups:\n{g}"
            ))
            .resolve(&ports())
        };
        let specs = groups("  - {name: G1, group: [VI_1, VI_2]}\n").unwrap();
        assert!(specs.iter().all(|s| s.sync_group.as_deref() == Some("G1")));
        for (g, needle) in [
            (
                "  - {name: G1, group: [VI_1, VI_9]}\n",
                "no instance named \"VI_9\"",
            ),
            ("  - {name: G1, group: [VI_1]}\n", "at least two"),
            (
                "  - {name: G1, group: [VI_1, VI_2]}\n  - {name: G2, group: [VI_2, VI_1]}\n",
                "already in group",
            ),
        ] {
            let e = groups(g).unwrap_err().to_string();
            assert!(e.contains(needle), "{g}: {e}");
        }
        assert_eq!(v3.resolve(&ports()).unwrap()[0].interval_cs, 50);
        assert!(serde_yaml_ng::from_str::<VrrpConf>(&format!("{BASE}    bogus: 1\n")).is_err());
    }
}
