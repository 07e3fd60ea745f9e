//! keepalived::model — the typed keepalived.conf: `global_defs`, the LVS
//! blocks (`virtual_server`, `virtual_server_group`, `real_server`, every
//! checker), the DPVS fork's `local_address_group`, and the VRRP blocks
//! (`vrrp_instance`, `vrrp_sync_group`, `vrrp_script`), each field with
//! keepalived 2.2.7's default already applied and documented with its
//! keyword.
//!
//! Rules:
//! * Values are what keepalived runs with, not what was written: a value
//!   keepalived refuses is diagnosed and the default stays (e.g.
//!   `persistence_timeout 0` → non-persistent; `nb_get_retry` in
//!   `TCP_CHECK` is an unknown keyword → `retry` stays 1).
//! * Timing keywords are inherited checker ← real server ← virtual server
//!   ← the checker kind's default (reference §1.6).
//! * One keyword per line: extra words after a keyword's arguments are
//!   fatal (keepalived reads `state MASTER interface eth0 ...` as `state`
//!   with ignored arguments; rvs refuses to start on it).
//! * Keywords keepalived knows that rvs does not act on are kept out of
//!   the model with a warning naming them, never silently.

use std::net::IpAddr;
use std::time::Duration;

use super::diag::{Diags, Loc, Severity};
use super::parse::Node;

/// `quoted command [user [group]]`, as notify and check scripts are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The command line (one word: quote it when it has arguments).
    pub command: String,
    /// Run as this user (default `global_defs script_user`).
    pub user: Option<String>,
    /// And this group.
    pub group: Option<String>,
    /// Where it is configured.
    pub loc: Loc,
}

/// `global_defs` (the part rvs reads; reference §1.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GlobalDefs {
    /// `router_id` (default: the host name).
    pub router_id: Option<String>,
    /// `script_user USER [GROUP]`.
    pub script_user: Option<(String, Option<String>)>,
    /// `enable_script_security`.
    pub enable_script_security: bool,
    /// `vrrp_mcast_group4` (default 224.0.0.18).
    pub vrrp_mcast_group4: Option<IpAddr>,
    /// `vrrp_mcast_group6` (default ff02::12).
    pub vrrp_mcast_group6: Option<IpAddr>,
    /// `vrrp_version` (default 2).
    pub vrrp_version: u8,
    /// `vrrp_garp_master_delay` (default 5 s).
    pub vrrp_garp_master_delay: Duration,
    /// `vrrp_garp_master_repeat` (default 5).
    pub vrrp_garp_master_repeat: u32,
    /// `vrrp_garp_master_refresh` (default 0: off).
    pub vrrp_garp_master_refresh: Duration,
    /// `vrrp_garp_master_refresh_repeat` (default 1).
    pub vrrp_garp_master_refresh_repeat: u32,
    /// `vrrp_garp_interval` (default 0).
    pub vrrp_garp_interval: Duration,
    /// `vrrp_strict`.
    pub vrrp_strict: bool,
    /// `vrrp_skip_check_adv_addr`.
    pub vrrp_skip_check_adv_addr: bool,
    /// `vrrp_check_unicast_src`.
    pub vrrp_check_unicast_src: bool,
    /// `vrrp_startup_delay`.
    pub vrrp_startup_delay: Duration,
    /// `lvs_timeouts tcp S tcpfin S udp S` (seconds; 0 = not set).
    pub lvs_timeouts: LvsTimeouts,
    /// `lvs_sync_daemon IF [VI] [id N] ...` (words after the keyword, and
    /// the keyword's line).
    pub lvs_sync_daemon: Option<(Vec<String>, Loc)>,
}

/// `global_defs lvs_timeouts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LvsTimeouts {
    /// `tcp S`.
    pub tcp: u32,
    /// `tcpfin S`.
    pub tcpfin: u32,
    /// `udp S`.
    pub udp: u32,
}

/// `protocol` of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `TCP`.
    Tcp,
    /// `UDP` (keepalived's default when `protocol` is missing).
    Udp,
    /// `SCTP`.
    Sctp,
}

/// `lb_kind` / `lvs_method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbKind {
    /// `NAT` (keepalived's default).
    Nat,
    /// `DR`.
    Dr,
    /// `TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]` (words after
    /// `TUN` kept).
    Tun(Vec<String>),
    /// `FNAT` (DPVS fork): FULLNAT.
    Fnat,
}

/// The address part of `virtual_server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsAddr {
    /// `virtual_server IP [PORT]` (port 0 when absent).
    Ip {
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
    },
    /// `virtual_server fwmark N`.
    Fwmark(u32),
    /// `virtual_server group NAME`.
    Group(String),
}

/// One entry of `virtual_server_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsgEntry {
    /// `IP PORT`, `IP-LAST PORT` (inclusive range of the last byte/group)
    /// or `CIDR PORT`: the addresses `first..=last`.
    Range {
        /// First address.
        first: IpAddr,
        /// Last address (= first for one address).
        last: IpAddr,
        /// Port.
        port: u16,
        /// Where.
        loc: Loc,
    },
    /// `fwmark N`.
    Fwmark(u32, Loc),
}

/// `virtual_server_group NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServerGroup {
    /// Name.
    pub name: String,
    /// Entries.
    pub entries: Vec<VsgEntry>,
    /// Where.
    pub loc: Loc,
}

/// `local_address_group NAME { IP[-LAST] IFNAME ... }` (DPVS fork).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddressGroup {
    /// Name.
    pub name: String,
    /// Addresses with the interface (port) that owns them.
    pub addrs: Vec<(IpAddr, Option<String>)>,
    /// Where.
    pub loc: Loc,
}

/// The timing and connection keywords every checker shares, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerCommon {
    /// `connect_ip` (default: the real server's address).
    pub connect_ip: Option<IpAddr>,
    /// `connect_port` (default: the real server's port).
    pub connect_port: Option<u16>,
    /// `bindto`.
    pub bindto: Option<IpAddr>,
    /// `bind_port`.
    pub bind_port: Option<u16>,
    /// `bind_if`.
    pub bind_if: Option<String>,
    /// `fwmark` (SO_MARK).
    pub fwmark: Option<u32>,
    /// `connect_timeout` (default 5 s, inherited).
    pub connect_timeout: Duration,
    /// `retry` (`nb_get_retry` in HTTP_GET/SSL_GET); default per checker.
    pub retry: u32,
    /// `delay_before_retry`; default per checker.
    pub delay_before_retry: Duration,
    /// `warmup` (default: `delay_loop`).
    pub warmup: Duration,
    /// `delay_loop` (default 60 s, inherited).
    pub delay_loop: Duration,
    /// `alpha` (inherited).
    pub alpha: bool,
    /// `log_all_failures`.
    pub log_all_failures: bool,
}

/// One `url { ... }` of HTTP_GET / SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `path`.
    pub path: String,
    /// `digest` (MD5 of the body, lower-case hex).
    pub digest: Option<String>,
    /// `status_code` codes and ranges (default 200-299).
    pub status_codes: Vec<(u16, u16)>,
    /// `virtualhost` (overrides the checker's).
    pub virtualhost: Option<String>,
    /// Where.
    pub loc: Loc,
}

/// HTTP_GET / SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// `url` blocks, checked in turn.
    pub urls: Vec<Url>,
    /// `virtualhost` (Host header; default ip:port).
    pub virtualhost: Option<String>,
    /// `http_protocol 1.0|1.0C|1.1` (default 1.0).
    pub http_protocol: String,
    /// `fast_recovery`.
    pub fast_recovery: bool,
    /// `enable_sni` (SSL_GET).
    pub enable_sni: bool,
    /// `sni_name` (SSL_GET).
    pub sni_name: Option<String>,
}

/// MISC_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscCheck {
    /// `misc_path` (required).
    pub path: Option<Script>,
    /// `misc_timeout` (default: `delay_loop`).
    pub timeout: Duration,
    /// `misc_dynamic`: exit 2..255 sets the weight to code - 2.
    pub dynamic: bool,
    /// `user USER [GROUP]`.
    pub user: Option<(String, Option<String>)>,
}

/// UDP_CHECK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpCheck {
    /// `payload HEX` (random when absent).
    pub payload: Option<Vec<u8>>,
    /// `require_reply [HEX]`: `Some(pattern)`; a timeout then fails.
    pub require_reply: Option<Vec<u8>>,
    /// `min_reply_length` (0).
    pub min_reply_length: u32,
    /// `max_reply_length` (255).
    pub max_reply_length: u32,
}

/// DNS_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    /// `type` (default SOA).
    pub qtype: String,
    /// `name` (default ".").
    pub name: String,
}

/// Which checker, with its own keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckerKind {
    /// `TCP_CHECK`.
    Tcp,
    /// `HTTP_GET`.
    Http(HttpCheck),
    /// `SSL_GET`.
    Ssl(HttpCheck),
    /// `MISC_CHECK`.
    Misc(MiscCheck),
    /// `UDP_CHECK`.
    Udp(UdpCheck),
    /// `DNS_CHECK`.
    Dns(DnsCheck),
}

/// One checker of a real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checker {
    /// Kind and own keywords.
    pub kind: CheckerKind,
    /// Shared keywords, resolved.
    pub common: CheckerCommon,
    /// Where the checker block opens.
    pub loc: Loc,
}

/// `real_server IP [PORT] { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    /// Address.
    pub addr: IpAddr,
    /// Port (default: the virtual server's).
    pub port: Option<u16>,
    /// `weight` (default 1; 0..=INT32_MAX).
    pub weight: u32,
    /// `lvs_method` / `lb_kind` override.
    pub lb_kind: Option<LbKind>,
    /// `inhibit_on_failure` (default: the virtual server's).
    pub inhibit_on_failure: bool,
    /// `notify_up`.
    pub notify_up: Option<Script>,
    /// `notify_down`.
    pub notify_down: Option<Script>,
    /// `uthreshold`.
    pub uthreshold: u32,
    /// `lthreshold`.
    pub lthreshold: u32,
    /// Checkers (`TCP_CHECK`, ...). An RS is alive iff all are up.
    pub checkers: Vec<Checker>,
    /// Where.
    pub loc: Loc,
}

/// `virtual_server ... { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// Address, fwmark or group.
    pub addr: VsAddr,
    /// `protocol` (default UDP, with keepalived's warning).
    pub protocol: Protocol,
    /// `lb_algo` / `lvs_sched` (default wlc, with keepalived's warning).
    pub lb_algo: String,
    /// Scheduler flags (`ops` is separate): `flag-1..3`, `sh-port`,
    /// `sh-fallback`, `mh-port`, `mh-fallback`.
    pub sched_flags: Vec<String>,
    /// `ops`.
    pub ops: bool,
    /// `lb_kind` / `lvs_method` (default NAT, with keepalived's warning).
    pub lb_kind: LbKind,
    /// `persistence_timeout` (bare keyword: 360; `0` is refused).
    pub persistence_timeout: Option<u32>,
    /// `persistence_granularity` (netmask or prefix length).
    pub persistence_granularity: Option<String>,
    /// `ha_suspend`.
    pub ha_suspend: bool,
    /// `alpha`.
    pub alpha: bool,
    /// `omega`.
    pub omega: bool,
    /// `quorum` (default 1).
    pub quorum: u32,
    /// `hysteresis` (default 0).
    pub hysteresis: u32,
    /// `quorum_up`.
    pub quorum_up: Option<Script>,
    /// `quorum_down`.
    pub quorum_down: Option<Script>,
    /// `sorry_server IP [PORT]`.
    pub sorry_server: Option<(IpAddr, Option<u16>)>,
    /// `sorry_server_inhibit`.
    pub sorry_server_inhibit: bool,
    /// `inhibit_on_failure`.
    pub inhibit_on_failure: bool,
    /// `virtualhost` (default for HTTP checkers).
    pub virtualhost: Option<String>,
    /// `laddr_group_name` (DPVS): the `local_address_group` for FNAT.
    pub laddr_group_name: Option<String>,
    /// `syn_proxy` (DPVS).
    pub syn_proxy: bool,
    /// Real servers.
    pub real_servers: Vec<RealServer>,
    /// Where.
    pub loc: Loc,
}

/// `state` of a VRRP instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpState {
    /// `MASTER`.
    Master,
    /// `BACKUP` (default).
    Backup,
}

/// `authentication { auth_type ...; auth_pass ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `auth_type PASS`: the first 8 bytes of `auth_pass`, zero-padded.
    Pass([u8; 8]),
    /// `auth_type AH`.
    Ah([u8; 8]),
}

/// One `virtual_ipaddress` line: `IP[/LEN] [brd IP] [dev IF] [scope S]
/// [label L] [no_track] ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipAddr {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length (default /32 or /128).
    pub prefix: u8,
    /// `brd`.
    pub brd: Option<IpAddr>,
    /// `dev` (default: the instance's `interface`).
    pub dev: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `label`.
    pub label: Option<String>,
    /// `no_track`.
    pub no_track: bool,
    /// Where.
    pub loc: Loc,
}

/// `track_interface` / `track_script` entry: `NAME [weight W [reverse]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Interface or script name.
    pub name: String,
    /// `weight` (`None`: unweighted → FAULT on failure).
    pub weight: Option<i32>,
    /// `reverse`.
    pub reverse: bool,
    /// Where.
    pub loc: Loc,
}

/// The notify scripts of a VRRP instance or sync group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notify {
    /// `notify_master`.
    pub master: Option<Script>,
    /// `notify_backup`.
    pub backup: Option<Script>,
    /// `notify_fault`.
    pub fault: Option<Script>,
    /// `notify_stop`.
    pub stop: Option<Script>,
    /// `notify`: run after the specific one with `INSTANCE|GROUP NAME
    /// STATE PRIORITY`.
    pub any: Option<Script>,
}

impl Notify {
    /// The configured scripts.
    pub fn scripts(&self) -> impl Iterator<Item = &Script> {
        [
            &self.master,
            &self.backup,
            &self.fault,
            &self.stop,
            &self.any,
        ]
        .into_iter()
        .flatten()
    }
}

/// `vrrp_instance NAME { ... }` (reference §1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstance {
    /// Name.
    pub name: String,
    /// `state` (default BACKUP).
    pub state: VrrpState,
    /// `interface`.
    pub interface: Option<String>,
    /// `dpdk_interface` (DPVS fork).
    pub dpdk_interface: Option<String>,
    /// `virtual_router_id` 1..=255 (required).
    pub virtual_router_id: u8,
    /// `priority` 1..=255; without it 255 for `state MASTER`, else 100.
    pub priority: u8,
    /// `advert_int` (default 1 s).
    pub advert_int: Duration,
    /// `version` (default `global_defs vrrp_version`, 2).
    pub version: u8,
    /// `authentication`.
    pub auth: Option<Auth>,
    /// `virtual_ipaddress`.
    pub virtual_ipaddress: Vec<VipAddr>,
    /// `virtual_ipaddress_excluded`.
    pub virtual_ipaddress_excluded: Vec<VipAddr>,
    /// `unicast_src_ip` / `mcast_src_ip`.
    pub src_ip: Option<IpAddr>,
    /// `unicast_peer { IP ... }`.
    pub unicast_peer: Vec<IpAddr>,
    /// `nopreempt` (cleared with a warning under `state MASTER`).
    pub nopreempt: bool,
    /// `preempt_delay` 0..=1000 s.
    pub preempt_delay: Duration,
    /// `track_interface`.
    pub track_interface: Vec<Track>,
    /// `track_script`.
    pub track_script: Vec<Track>,
    /// `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`, `notify`.
    pub notify: Notify,
    /// `garp_master_delay` (default: global).
    pub garp_master_delay: Duration,
    /// `garp_master_repeat` (default: global).
    pub garp_master_repeat: u32,
    /// `garp_master_refresh` (default: global).
    pub garp_master_refresh: Duration,
    /// `garp_master_refresh_repeat` (default: global).
    pub garp_master_refresh_repeat: u32,
    /// `use_vmac [NAME]`.
    pub use_vmac: Option<Option<String>>,
    /// `dont_track_primary`.
    pub dont_track_primary: bool,
    /// Where.
    pub loc: Loc,
}

/// `vrrp_sync_group NAME { group { ... } ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpSyncGroup {
    /// Name.
    pub name: String,
    /// `group` members (instance names).
    pub group: Vec<String>,
    /// `track_interface`.
    pub track_interface: Vec<Track>,
    /// `track_script`.
    pub track_script: Vec<Track>,
    /// `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`, `notify`.
    pub notify: Notify,
    /// `sync_group_tracking_weight`: members keep their weighted trackers.
    pub sync_group_tracking_weight: bool,
    /// Where.
    pub loc: Loc,
}

/// `vrrp_script NAME { ... }` (reference §1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpScript {
    /// Name.
    pub name: String,
    /// `script` (required).
    pub script: Option<Script>,
    /// `interval` (default 1 s).
    pub interval: Duration,
    /// `timeout` (default: `interval`).
    pub timeout: Duration,
    /// `weight -253..=253` (default 0).
    pub weight: i32,
    /// `weight W reverse`.
    pub reverse: bool,
    /// `rise` (default 1).
    pub rise: u32,
    /// `fall` (default 1).
    pub fall: u32,
    /// `user USER [GROUP]`.
    pub user: Option<(String, Option<String>)>,
    /// `init_fail`.
    pub init_fail: bool,
    /// Where.
    pub loc: Loc,
}

/// A whole keepalived.conf.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeepalivedConf {
    /// `global_defs`.
    pub global: GlobalDefs,
    /// `virtual_server` blocks.
    pub virtual_servers: Vec<VirtualServer>,
    /// `virtual_server_group` blocks.
    pub virtual_server_groups: Vec<VirtualServerGroup>,
    /// `local_address_group` blocks (DPVS).
    pub local_address_groups: Vec<LocalAddressGroup>,
    /// `vrrp_instance` blocks (instances keepalived would drop are not here).
    pub vrrp_instances: Vec<VrrpInstance>,
    /// `vrrp_sync_group` blocks.
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    /// `vrrp_script` blocks.
    pub vrrp_scripts: Vec<VrrpScript>,
}

// ---------------------------------------------------------------------------
// Reading the tree.

/// keepalived's `persistence_timeout` without a value, and the forced
/// timeout of a port-0 service (`IPVS_SVC_PERSISTENT_TIMEOUT`).
pub const DEFAULT_PERSISTENCE: u32 = 360;
/// Largest `persistence_timeout` (31 days).
pub const MAX_PERSISTENCE: u32 = 2_678_400;
/// keepalived's schedulers (`lvs_schedulers[]`).
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos",
];
/// Longest timer value accepted (seconds).
const MAX_TIMER_SECS: f64 = 1_000_000.0;

/// Keywords keepalived knows that rvs does not act on, per block: accepted
/// with a warning naming them.
const GLOBAL_IGNORED: &[&str] = &[
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "checker_log_all_failures",
    "rs_init_notifies",
    "no_checker_emails",
    "max_auto_priority",
    "vrrp_rt_priority",
    "checker_rt_priority",
    "vrrp_priority",
    "checker_priority",
    "vrrp_no_swap",
    "checker_no_swap",
    "vrrp_cpu_affinity",
    "checker_cpu_affinity",
    "notify_fifo",
    "vrrp_notify_fifo",
    "lvs_notify_fifo",
    "net_namespace",
    "instance",
    "lvs_flush",
    "lvs_flush_on_stop",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_gna_interval",
    "vrrp_min_garp",
    "vrrp_delay_after_boot",
    "vrrp_iptables",
    "vrrp_ipsets",
    "dynamic_interfaces",
    "enable_traps",
    "snmp_socket",
    "enable_snmp_keepalived",
    "enable_snmp_checker",
    "enable_snmp_rfc",
    "enable_dbus",
    "script_security",
    "default_interface",
    "lvs_sync_daemon_interface",
];

const VS_IGNORED: &[&str] = &[
    "smtp_alert",
    "snmp_name",
    "ip_family",
    "persistence_engine",
    "sorry_server_lvs_method",
    "expire_quiescent_conn",
    "establish_timeout",
    "vip_bind_dev",
    "hash_target",
];

const VRRP_IGNORED: &[&str] = &[
    "smtp_alert",
    "accept",
    "no_accept",
    "strict_mode",
    "skip_check_adv_addr",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "down_timer_adverts",
    "check_unicast_src",
    "unicast_fault_no_peer",
    "unicast_ttl",
    "vmac_xmit_base",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "notify_master_rx_lower_pri",
    "lvs_sync_daemon_interface",
    "virtual_routes",
    "virtual_rules",
    "debug",
    "track_file",
    "track_process",
    "track_bfd",
];

/// Reads the tree of a keepalived.conf into the model.
pub fn read(tree: &[Node], diags: &mut Diags) -> KeepalivedConf {
    let mut cx = Cx { d: diags };
    let mut conf = KeepalivedConf {
        global: GlobalDefs {
            vrrp_version: 2,
            vrrp_garp_master_delay: Duration::from_secs(5),
            vrrp_garp_master_repeat: 5,
            vrrp_garp_master_refresh_repeat: 1,
            ..GlobalDefs::default()
        },
        ..KeepalivedConf::default()
    };
    // global_defs first: instances take their GARP defaults from it.
    for n in tree.iter().filter(|n| n.keyword == "global_defs") {
        if cx.args(n, 0, 0) {
            cx.global_defs(n, &mut conf.global);
        }
    }
    for n in tree {
        match n.keyword.as_str() {
            "global_defs" => {}
            "virtual_server" => {
                if let Some(vs) = cx.virtual_server(n) {
                    conf.virtual_servers.push(vs);
                }
            }
            "virtual_server_group" => {
                if let Some(g) = cx.vs_group(n) {
                    conf.virtual_server_groups.push(g);
                }
            }
            "local_address_group" => {
                if let Some(g) = cx.laddr_group(n) {
                    conf.local_address_groups.push(g);
                }
            }
            "vrrp_instance" => {
                if let Some(i) = cx.vrrp_instance(n, &conf.global) {
                    conf.vrrp_instances.push(i);
                }
            }
            "vrrp_sync_group" => {
                if let Some(g) = cx.sync_group(n) {
                    conf.vrrp_sync_groups.push(g);
                }
            }
            "vrrp_script" => {
                if let Some(s) = cx.vrrp_script(n) {
                    conf.vrrp_scripts.push(s);
                }
            }
            "static_ipaddress"
            | "static_routes"
            | "static_rules"
            | "linkbeat_interfaces"
            | "garp_group"
            | "deny_address_group"
            | "allow_address_group"
            | "tunnel_group"
            | "SSL"
            | "bfd_instance"
            | "track_file"
            | "track_process"
            | "vrrp_track_file"
            | "vrrp_track_process" => cx.ignored(n),
            _ => cx.unknown(n),
        }
    }
    cx.sync_groups(&mut conf);
    cx.script_security(&conf);
    conf
}

/// Timing keywords as written at one level (virtual server, real server,
/// checker), before inheritance.
#[derive(Debug, Clone, Default)]
struct Timing {
    delay_loop: Option<Duration>,
    connect_timeout: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    alpha: Option<bool>,
}

impl Timing {
    fn or(&self, outer: &Timing) -> Timing {
        Timing {
            delay_loop: self.delay_loop.or(outer.delay_loop),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            warmup: self.warmup.or(outer.warmup),
            alpha: self.alpha.or(outer.alpha),
        }
    }
}

/// A checker as read, before the virtual server's timing is known.
struct RawChecker {
    kind: CheckerKind,
    common: CheckerCommon,
    timing: Timing,
    misc_timeout: Option<Duration>,
    loc: Loc,
}

struct RawRs {
    rs: RealServer,
    timing: Timing,
    inhibit: Option<bool>,
    checkers: Vec<RawChecker>,
}

struct Cx<'a> {
    d: &'a mut Diags,
}

impl Cx<'_> {
    fn unknown(&mut self, n: &Node) {
        self.d.push(
            Severity::Error,
            &n.loc,
            format!("Unknown keyword '{}'", n.keyword),
        );
    }

    fn ignored(&mut self, n: &Node) {
        self.d.push_rvs(
            Severity::Warning,
            &n.loc,
            format!(
                "'{}' is keepalived's but rvs does not act on it: ignored",
                n.keyword
            ),
        );
    }

    /// Checks the argument count: too few is an error (the line is
    /// ignored), too many is fatal (several keywords on one line).
    fn args(&mut self, n: &Node, min: usize, max: usize) -> bool {
        if n.args.len() < min {
            self.d.push(
                Severity::Error,
                &n.loc,
                format!(
                    "{}: missing argument ({} needed) - ignoring",
                    n.keyword, min
                ),
            );
            return false;
        }
        if n.args.len() > max {
            self.d.push_rvs(
                Severity::Fatal,
                &n.loc,
                format!(
                    "{}: extra arguments '{}' - one keyword per line (keepalived would read them as arguments of '{}' and ignore them)",
                    n.keyword,
                    n.args[max..].join(" "),
                    n.keyword
                ),
            );
            return false;
        }
        true
    }

    fn word(&mut self, n: &Node) -> Option<String> {
        self.args(n, 1, 1).then(|| n.args[0].clone())
    }

    fn number(&mut self, n: &Node, min: i64, max: i64) -> Option<i64> {
        let w = self.word(n)?;
        self.parse_number(n, &w, min, max)
    }

    fn parse_number(&mut self, n: &Node, w: &str, min: i64, max: i64) -> Option<i64> {
        let v = match w.parse::<i64>() {
            Ok(v) => v,
            Err(_) => {
                self.d.push(
                    Severity::Error,
                    &n.loc,
                    format!("{}: invalid number '{w}'", n.keyword),
                );
                return None;
            }
        };
        if v < min || v > max {
            self.d.push(
                Severity::Error,
                &n.loc,
                format!(
                    "{}: number '{w}' outside range [{min}, {max}] - ignoring",
                    n.keyword
                ),
            );
            return None;
        }
        Some(v)
    }

    fn u32_in(&mut self, n: &Node, min: u32, max: u32) -> Option<u32> {
        self.number(n, min.into(), max.into())
            .and_then(|v| u32::try_from(v).ok())
    }

    fn timer(&mut self, n: &Node) -> Option<Duration> {
        let w = self.word(n)?;
        match w.parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=MAX_TIMER_SECS).contains(&v) => {
                Some(Duration::from_micros((v * 1e6).round() as u64))
            }
            Ok(_) => {
                self.d.push(
                    Severity::Error,
                    &n.loc,
                    format!(
                        "{}: '{w}' outside range [0, {MAX_TIMER_SECS}] seconds - ignoring",
                        n.keyword
                    ),
                );
                None
            }
            Err(_) => {
                self.d.push(
                    Severity::Error,
                    &n.loc,
                    format!("{}: invalid number '{w}' - ignoring", n.keyword),
                );
                None
            }
        }
    }

    /// `KEYWORD` alone (true) or `KEYWORD on|off|true|false|yes|no`.
    fn boolean(&mut self, n: &Node) -> Option<bool> {
        if !self.args(n, 0, 1) {
            return None;
        }
        match n.args.first().map(String::as_str) {
            None | Some("on" | "true" | "yes") => Some(true),
            Some("off" | "false" | "no") => Some(false),
            Some(w) => {
                self.d.push(
                    Severity::Error,
                    &n.loc,
                    format!("{}: invalid boolean '{w}' - ignoring", n.keyword),
                );
                None
            }
        }
    }

    fn flag(&mut self, n: &Node) -> bool {
        self.args(n, 0, 0)
    }

    fn parse_ip(&mut self, n: &Node, w: &str) -> Option<IpAddr> {
        match w.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.d.push(
                    Severity::Error,
                    &n.loc,
                    format!("{}: invalid address '{w}' - ignoring", n.keyword),
                );
                None
            }
        }
    }

    fn ip(&mut self, n: &Node) -> Option<IpAddr> {
        let w = self.word(n)?;
        self.parse_ip(n, &w)
    }

    fn port(&mut self, n: &Node, w: &str) -> Option<u16> {
        self.parse_number(n, w, 0, 65535)
            .and_then(|v| u16::try_from(v).ok())
    }

    fn script(&mut self, n: &Node) -> Option<Script> {
        if !self.args(n, 1, 3) {
            return None;
        }
        Some(Script {
            command: n.args[0].clone(),
            user: n.args.get(1).cloned(),
            group: n.args.get(2).cloned(),
            loc: n.loc.clone(),
        })
    }

    /// One of the notify keywords of an instance or sync group.
    fn notify(&mut self, n: &Node, notify: &mut Notify) {
        let slot = match n.keyword.as_str() {
            "notify_master" => &mut notify.master,
            "notify_backup" => &mut notify.backup,
            "notify_fault" => &mut notify.fault,
            "notify_stop" => &mut notify.stop,
            _ => &mut notify.any,
        };
        if let Some(script) = self.script(n) {
            *slot = Some(script);
        }
    }

    fn user(&mut self, n: &Node) -> Option<(String, Option<String>)> {
        self.args(n, 1, 2)
            .then(|| (n.args[0].clone(), n.args.get(1).cloned()))
    }

    /// A keyword that must not open a block: the block is reported and
    /// skipped, the keyword itself still read (as keepalived does; its
    /// arguments are checked, so `state MASTER interface eth0 ... {` on one
    /// line is refused for its extra words). Always true.
    fn no_block(&mut self, n: &Node) -> bool {
        if n.block.is_some() {
            self.d.push(
                Severity::Error,
                &n.loc,
                format!("{}: unexpected '{{' - ignoring the block", n.keyword),
            );
        }
        true
    }

    /// A keyword that must open a block.
    fn block<'n>(&mut self, n: &'n Node) -> Option<&'n [Node]> {
        match &n.block {
            Some(b) => Some(b),
            None => {
                self.d.push(
                    Severity::Error,
                    &n.loc,
                    format!("{}: missing '{{' - ignoring", n.keyword),
                );
                None
            }
        }
    }

    fn global_defs(&mut self, n: &Node, g: &mut GlobalDefs) {
        let Some(children) = self.block(n) else {
            return;
        };
        for c in children {
            let kw = c.keyword.as_str();
            if GLOBAL_IGNORED.contains(&kw) {
                self.ignored(c);
                continue;
            }
            if !self.no_block(c) {
                continue;
            }
            match kw {
                "router_id" => g.router_id = self.word(c).or(g.router_id.take()),
                "script_user" => g.script_user = self.user(c).or(g.script_user.take()),
                "enable_script_security" => {
                    g.enable_script_security = self.flag(c) || g.enable_script_security
                }
                "vrrp_mcast_group4" => g.vrrp_mcast_group4 = self.ip(c).or(g.vrrp_mcast_group4),
                "vrrp_mcast_group6" => g.vrrp_mcast_group6 = self.ip(c).or(g.vrrp_mcast_group6),
                "vrrp_version" => {
                    if let Some(v) = self.number(c, 2, 3) {
                        g.vrrp_version = v as u8;
                    }
                }
                "vrrp_garp_master_delay" => {
                    g.vrrp_garp_master_delay = self.timer(c).unwrap_or(g.vrrp_garp_master_delay)
                }
                "vrrp_garp_master_repeat" => {
                    g.vrrp_garp_master_repeat =
                        self.u32_in(c, 0, 255).unwrap_or(g.vrrp_garp_master_repeat)
                }
                "vrrp_garp_master_refresh" => {
                    g.vrrp_garp_master_refresh = self.timer(c).unwrap_or(g.vrrp_garp_master_refresh)
                }
                "vrrp_garp_master_refresh_repeat" => {
                    g.vrrp_garp_master_refresh_repeat = self
                        .u32_in(c, 1, 255)
                        .unwrap_or(g.vrrp_garp_master_refresh_repeat)
                }
                "vrrp_garp_interval" => {
                    g.vrrp_garp_interval = self.timer(c).unwrap_or(g.vrrp_garp_interval)
                }
                "vrrp_strict" => g.vrrp_strict = self.flag(c) || g.vrrp_strict,
                "vrrp_skip_check_adv_addr" => {
                    g.vrrp_skip_check_adv_addr = self.boolean(c).unwrap_or(true)
                }
                "vrrp_check_unicast_src" => g.vrrp_check_unicast_src = self.flag(c),
                "vrrp_startup_delay" => {
                    g.vrrp_startup_delay = self.timer(c).unwrap_or(g.vrrp_startup_delay)
                }
                "lvs_timeouts" => self.lvs_timeouts(c, &mut g.lvs_timeouts),
                "lvs_sync_daemon" => {
                    if self.args(c, 1, 12) {
                        g.lvs_sync_daemon = Some((c.args.clone(), c.loc.clone()));
                    }
                }
                _ => self.unknown(c),
            }
        }
    }

    fn lvs_timeouts(&mut self, n: &Node, t: &mut LvsTimeouts) {
        if n.args.is_empty() || n.args.len() % 2 != 0 {
            self.d.push(
                Severity::Error,
                &n.loc,
                "lvs_timeouts: expected pairs of 'tcp|tcpfin|udp SECONDS'",
            );
            return;
        }
        for pair in n.args.chunks(2) {
            let Some(v) = self.parse_number(n, &pair[1], 1, 86400 * 31) else {
                continue;
            };
            let v = v as u32;
            match pair[0].as_str() {
                "tcp" => t.tcp = v,
                "tcpfin" => t.tcpfin = v,
                "udp" => t.udp = v,
                other => self.d.push(
                    Severity::Error,
                    &n.loc,
                    format!("lvs_timeouts: unknown protocol '{other}'"),
                ),
            }
        }
    }

    /// A timing keyword shared by virtual servers, real servers and
    /// checkers; false if `n` is not one.
    fn timing(&mut self, n: &Node, t: &mut Timing) -> bool {
        match n.keyword.as_str() {
            "delay_loop" => t.delay_loop = self.timer(n).or(t.delay_loop),
            "connect_timeout" => t.connect_timeout = self.timer(n).or(t.connect_timeout),
            "retry" => t.retry = self.u32_in(n, 0, u32::MAX).or(t.retry),
            "delay_before_retry" => t.delay_before_retry = self.timer(n).or(t.delay_before_retry),
            "warmup" => t.warmup = self.timer(n).or(t.warmup),
            "alpha" => t.alpha = self.boolean(n).or(t.alpha),
            _ => return false,
        }
        true
    }

    fn lb_kind(&mut self, n: &Node) -> Option<LbKind> {
        if n.args.is_empty() {
            self.args(n, 1, 1);
            return None;
        }
        let kind = match n.args[0].as_str() {
            "NAT" => LbKind::Nat,
            "DR" => LbKind::Dr,
            "TUN" => {
                if !self.args(n, 1, 6) {
                    return None;
                }
                return Some(LbKind::Tun(n.args[1..].to_vec()));
            }
            "FNAT" => LbKind::Fnat,
            "SNAT" => {
                self.d.push_rvs(
                    Severity::Fatal,
                    &n.loc,
                    "lb_kind SNAT (DPVS) is not supported by rvs",
                );
                return None;
            }
            other => {
                self.d.push(
                    Severity::Error,
                    &n.loc,
                    format!("PARSER : unknown [{other}] routing method for virtual server."),
                );
                return None;
            }
        };
        self.args(n, 1, 1).then_some(kind)
    }

    fn virtual_server(&mut self, n: &Node) -> Option<VirtualServer> {
        let addr = match n.args.first().map(String::as_str) {
            Some("fwmark") => {
                if !self.args(n, 2, 2) {
                    return None;
                }
                VsAddr::Fwmark(self.parse_number(n, &n.args[1], 1, u32::MAX.into())? as u32)
            }
            Some("group") => {
                if !self.args(n, 2, 2) {
                    return None;
                }
                VsAddr::Group(n.args[1].clone())
            }
            _ => {
                if !self.args(n, 1, 2) {
                    return None;
                }
                let addr = self.parse_ip(n, &n.args[0])?;
                let port = match n.args.get(1) {
                    Some(p) => self.port(n, p)?,
                    None => 0,
                };
                VsAddr::Ip { addr, port }
            }
        };
        let children = self.block(n)?;
        let mut vs = VirtualServer {
            addr,
            protocol: Protocol::Udp,
            lb_algo: String::new(),
            sched_flags: Vec::new(),
            ops: false,
            lb_kind: LbKind::Nat,
            persistence_timeout: None,
            persistence_granularity: None,
            ha_suspend: false,
            alpha: false,
            omega: false,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
            sorry_server_inhibit: false,
            inhibit_on_failure: false,
            virtualhost: None,
            laddr_group_name: None,
            syn_proxy: false,
            real_servers: Vec::new(),
            loc: n.loc.clone(),
        };
        let mut timing = Timing::default();
        let mut protocol = None;
        let mut lb_algo = None;
        let mut lb_kind = None;
        let mut raw_rs = Vec::new();
        for c in children {
            let kw = c.keyword.as_str();
            if kw == "real_server" {
                if let Some(rs) = self.real_server(c) {
                    raw_rs.push(rs);
                }
                continue;
            }
            if VS_IGNORED.contains(&kw) {
                self.ignored(c);
                continue;
            }
            if !self.no_block(c) {
                continue;
            }
            if self.timing(c, &mut timing) {
                continue;
            }
            match kw {
                "protocol" => {
                    if let Some(w) = self.word(c) {
                        match w.as_str() {
                            "TCP" => protocol = Some(Protocol::Tcp),
                            "UDP" => protocol = Some(Protocol::Udp),
                            "SCTP" => protocol = Some(Protocol::Sctp),
                            _ => self.d.push(
                                Severity::Error,
                                &c.loc,
                                format!("Unknown protocol {w} - ignoring"),
                            ),
                        }
                    }
                }
                "lb_algo" | "lvs_sched" => {
                    if let Some(w) = self.word(c) {
                        if SCHEDULERS.contains(&w.as_str()) {
                            lb_algo = Some(w);
                        } else {
                            self.d.push(
                                Severity::Error,
                                &c.loc,
                                format!("Invalid lvs_scheduler '{w}' - ignoring"),
                            );
                        }
                    }
                }
                "lb_kind" | "lvs_method" => lb_kind = self.lb_kind(c).or(lb_kind),
                "ops" => vs.ops = self.flag(c) || vs.ops,
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
                | "mh-fallback" => {
                    if self.flag(c) {
                        vs.sched_flags.push(kw.to_string());
                    }
                }
                "persistence_timeout" => {
                    if c.args.is_empty() {
                        vs.persistence_timeout = Some(DEFAULT_PERSISTENCE);
                    } else if let Some(w) = self.word(c) {
                        match w.parse::<i64>() {
                            Ok(v) if (1..=i64::from(MAX_PERSISTENCE)).contains(&v) => {
                                vs.persistence_timeout = Some(v as u32)
                            }
                            Ok(_) => self.d.push(
                                Severity::Error,
                                &c.loc,
                                format!("number '{w}' outside range [1, {MAX_PERSISTENCE}]: persistence_timeout invalid - the service stays non-persistent"),
                            ),
                            Err(_) => self.d.push(
                                Severity::Error,
                                &c.loc,
                                format!("invalid number '{w}': persistence_timeout invalid"),
                            ),
                        }
                    }
                }
                "persistence_granularity" => {
                    vs.persistence_granularity = self.word(c).or(vs.persistence_granularity.take())
                }
                "ha_suspend" => vs.ha_suspend = self.flag(c) || vs.ha_suspend,
                "omega" => vs.omega = self.flag(c) || vs.omega,
                "quorum" => vs.quorum = self.u32_in(c, 1, u32::MAX).unwrap_or(vs.quorum),
                "hysteresis" => {
                    vs.hysteresis = self.u32_in(c, 0, u32::MAX).unwrap_or(vs.hysteresis)
                }
                "quorum_up" => vs.quorum_up = self.script(c).or(vs.quorum_up.take()),
                "quorum_down" => vs.quorum_down = self.script(c).or(vs.quorum_down.take()),
                "sorry_server" => {
                    if self.args(c, 1, 2) {
                        if let Some(a) = self.parse_ip(c, &c.args[0]) {
                            let port = match c.args.get(1) {
                                Some(p) => self.port(c, p),
                                None => None,
                            };
                            vs.sorry_server = Some((a, port));
                        }
                    }
                }
                "sorry_server_inhibit" => vs.sorry_server_inhibit = self.boolean(c).unwrap_or(true),
                "inhibit_on_failure" => {
                    vs.inhibit_on_failure = self.boolean(c).unwrap_or(vs.inhibit_on_failure)
                }
                "virtualhost" => vs.virtualhost = self.word(c).or(vs.virtualhost.take()),
                "laddr_group_name" => {
                    vs.laddr_group_name = self.word(c).or(vs.laddr_group_name.take())
                }
                "syn_proxy" => vs.syn_proxy = self.flag(c) || vs.syn_proxy,
                _ => self.unknown(c),
            }
        }
        let name = self.vs_name(&vs.addr, protocol);
        vs.protocol = protocol.unwrap_or_else(|| {
            self.d.push_rvs(
                Severity::Error,
                &n.loc,
                format!("Virtual server {name}: no protocol set - defaulting to UDP"),
            );
            Protocol::Udp
        });
        vs.lb_algo = lb_algo.unwrap_or_else(|| {
            self.d.push_rvs(
                Severity::Error,
                &n.loc,
                format!("Virtual server {name}: no scheduler set, setting default 'wlc'"),
            );
            "wlc".to_string()
        });
        vs.lb_kind = lb_kind.unwrap_or_else(|| {
            self.d.push_rvs(
                Severity::Error,
                &n.loc,
                format!("Virtual server {name}: no forwarding method set, setting default NAT"),
            );
            LbKind::Nat
        });
        vs.alpha = timing.alpha.unwrap_or(false);
        if vs.persistence_timeout.is_none() {
            if vs.persistence_granularity.is_some() {
                vs.persistence_timeout = Some(DEFAULT_PERSISTENCE);
            } else if matches!(vs.addr, VsAddr::Ip { port: 0, .. }) {
                vs.persistence_timeout = Some(DEFAULT_PERSISTENCE);
                self.d.push_rvs(
                    Severity::Error,
                    &n.loc,
                    format!("Virtual server {name}: zero port only valid for persistent services - setting persistence_timeout {DEFAULT_PERSISTENCE}"),
                );
            }
        }
        for raw in raw_rs {
            vs.real_servers
                .push(self.finish_rs(raw, &timing, vs.inhibit_on_failure));
        }
        // keepalived 2.2.7 `check_data.c`: the quorum cannot exceed the
        // total weight, and the hysteresis must stay below the quorum.
        let total: u64 = vs.real_servers.iter().map(|r| u64::from(r.weight)).sum();
        if !vs.real_servers.is_empty() && u64::from(vs.quorum) > total {
            self.d.push_rvs(
                Severity::Error,
                &n.loc,
                format!("Warning - quorum {} for {name} exceeds total weight of real servers {total}, reducing quorum to {total}", vs.quorum),
            );
            vs.quorum = total as u32;
        }
        if !vs.real_servers.is_empty() && vs.hysteresis >= vs.quorum {
            // keepalived sets quorum - 1, which wraps to 4294967295 for a
            // quorum of 0; rvs keeps 0.
            let h = vs.quorum.saturating_sub(1);
            self.d.push_rvs(
                Severity::Error,
                &n.loc,
                format!(
                    "Virtual server {name}: hysteresis {} >= quorum {}; setting hysteresis to {h}",
                    vs.hysteresis, vs.quorum
                ),
            );
            vs.hysteresis = h;
        }
        if vs.real_servers.is_empty() {
            // keepalived 2.2.7 drops such a virtual server.
            self.d.push_rvs(
                Severity::Error,
                &n.loc,
                format!("Virtual server {name} has no real servers - ignoring"),
            );
            return None;
        }
        Some(vs)
    }

    fn vs_name(&self, addr: &VsAddr, protocol: Option<Protocol>) -> String {
        let p = match protocol {
            Some(Protocol::Tcp) => "tcp",
            Some(Protocol::Udp) => "udp",
            Some(Protocol::Sctp) => "sctp",
            None => "none",
        };
        match addr {
            VsAddr::Ip { addr, port } => format!("[{addr}]:{p}:{port}"),
            VsAddr::Fwmark(m) => format!("FWM {m}"),
            VsAddr::Group(g) => format!("group {g}"),
        }
    }

    fn real_server(&mut self, n: &Node) -> Option<RawRs> {
        if !self.args(n, 1, 2) {
            return None;
        }
        let addr = self.parse_ip(n, &n.args[0])?;
        let port = match n.args.get(1) {
            Some(p) => Some(self.port(n, p)?),
            None => None,
        };
        let children = n.block.as_deref().unwrap_or(&[]);
        let mut raw = RawRs {
            rs: RealServer {
                addr,
                port,
                weight: 1,
                lb_kind: None,
                inhibit_on_failure: false,
                notify_up: None,
                notify_down: None,
                uthreshold: 0,
                lthreshold: 0,
                checkers: Vec::new(),
                loc: n.loc.clone(),
            },
            timing: Timing::default(),
            inhibit: None,
            checkers: Vec::new(),
        };
        for c in children {
            let kw = c.keyword.as_str();
            match kw {
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" | "UDP_CHECK" | "DNS_CHECK" => {
                    if let Some(ch) = self.checker(c) {
                        raw.checkers.push(ch);
                    }
                    continue;
                }
                "SMTP_CHECK" | "PING_CHECK" | "FILE_CHECK" | "BFD_CHECK" => {
                    self.d.push_rvs(
                        Severity::Fatal,
                        &c.loc,
                        format!("{kw} is not supported by rvs: without it the real server would be taken as always alive"),
                    );
                    continue;
                }
                "smtp_alert" | "virtualhost" => {
                    self.ignored(c);
                    continue;
                }
                _ => {}
            }
            if !self.no_block(c) || self.timing(c, &mut raw.timing) {
                continue;
            }
            let rs = &mut raw.rs;
            match kw {
                "weight" => rs.weight = self.u32_in(c, 0, i32::MAX as u32).unwrap_or(rs.weight),
                "lvs_method" | "lb_kind" => rs.lb_kind = self.lb_kind(c).or(rs.lb_kind.take()),
                "inhibit_on_failure" => raw.inhibit = self.boolean(c).or(raw.inhibit),
                "notify_up" => rs.notify_up = self.script(c).or(rs.notify_up.take()),
                "notify_down" => rs.notify_down = self.script(c).or(rs.notify_down.take()),
                "uthreshold" => {
                    rs.uthreshold = self.u32_in(c, 0, i32::MAX as u32).unwrap_or(rs.uthreshold)
                }
                "lthreshold" => {
                    rs.lthreshold = self.u32_in(c, 0, i32::MAX as u32).unwrap_or(rs.lthreshold)
                }
                _ => self.unknown(c),
            }
        }
        Some(raw)
    }

    fn checker(&mut self, n: &Node) -> Option<RawChecker> {
        if !self.args(n, 0, 0) {
            return None;
        }
        let kw = n.keyword.as_str();
        let children = self.block(n)?;
        let mut kind = match kw {
            "TCP_CHECK" => CheckerKind::Tcp,
            "HTTP_GET" | "SSL_GET" => {
                let h = HttpCheck {
                    urls: Vec::new(),
                    virtualhost: None,
                    http_protocol: "1.0".to_string(),
                    fast_recovery: false,
                    enable_sni: false,
                    sni_name: None,
                };
                if kw == "HTTP_GET" {
                    CheckerKind::Http(h)
                } else {
                    CheckerKind::Ssl(h)
                }
            }
            "MISC_CHECK" => CheckerKind::Misc(MiscCheck {
                path: None,
                timeout: Duration::ZERO,
                dynamic: false,
                user: None,
            }),
            "UDP_CHECK" => CheckerKind::Udp(UdpCheck {
                max_reply_length: 255,
                ..UdpCheck::default()
            }),
            _ => CheckerKind::Dns(DnsCheck {
                qtype: "SOA".to_string(),
                name: ".".to_string(),
            }),
        };
        let mut common = CheckerCommon {
            connect_ip: None,
            connect_port: None,
            bindto: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            connect_timeout: Duration::ZERO,
            retry: 0,
            delay_before_retry: Duration::ZERO,
            warmup: Duration::ZERO,
            delay_loop: Duration::ZERO,
            alpha: false,
            log_all_failures: false,
        };
        let mut timing = Timing::default();
        let mut misc_timeout = None;
        let is_misc = matches!(kind, CheckerKind::Misc(_));
        for c in children {
            let ckw = c.keyword.as_str();
            if ckw == "url" {
                if let CheckerKind::Http(h) | CheckerKind::Ssl(h) = &mut kind {
                    if let Some(u) = self.url(c) {
                        h.urls.push(u);
                    }
                    continue;
                }
            }
            if !self.no_block(c) {
                continue;
            }
            // MISC_CHECK has only the timing group (no connect_*).
            let timing_kw = if is_misc {
                ckw != "connect_timeout" && self.timing(c, &mut timing)
            } else {
                self.timing(c, &mut timing)
            };
            if timing_kw {
                continue;
            }
            if ckw == "log_all_failures" {
                common.log_all_failures = self.boolean(c).unwrap_or(true);
                continue;
            }
            if !is_misc {
                let handled = match ckw {
                    "connect_ip" => {
                        common.connect_ip = self.ip(c).or(common.connect_ip);
                        true
                    }
                    "connect_port" => {
                        if let Some(w) = self.word(c) {
                            common.connect_port = self.port(c, &w).or(common.connect_port);
                        }
                        true
                    }
                    "bindto" => {
                        common.bindto = self.ip(c).or(common.bindto);
                        true
                    }
                    "bind_port" => {
                        if let Some(w) = self.word(c) {
                            common.bind_port = self.port(c, &w).or(common.bind_port);
                        }
                        true
                    }
                    "bind_if" => {
                        common.bind_if = self.word(c).or(common.bind_if.take());
                        true
                    }
                    "fwmark" => {
                        common.fwmark = self.u32_in(c, 0, u32::MAX).or(common.fwmark);
                        true
                    }
                    _ => false,
                };
                if handled {
                    continue;
                }
            }
            match (&mut kind, ckw) {
                (CheckerKind::Http(h) | CheckerKind::Ssl(h), _) => match ckw {
                    "nb_get_retry" => {
                        // keepalived 2.2.7 honours it here, and `-t` counts
                        // the deprecation as a configuration error (exit 5).
                        self.d.push(
                            Severity::Error,
                            &c.loc,
                            "nb_get_retry is deprecated - please use 'retry' (honoured as retry)",
                        );
                        timing.retry = self.u32_in(c, 0, u32::MAX).or(timing.retry);
                    }
                    "virtualhost" => h.virtualhost = self.word(c).or(h.virtualhost.take()),
                    "http_protocol" => {
                        if let Some(w) = self.word(c) {
                            if ["1.0", "1.0C", "1.1", "0.9"].contains(&w.as_str()) {
                                h.http_protocol = w;
                            } else {
                                self.d.push(
                                    Severity::Error,
                                    &c.loc,
                                    format!("Invalid http_protocol '{w}' - ignoring"),
                                );
                            }
                        }
                    }
                    "fast_recovery" => h.fast_recovery = self.boolean(c).unwrap_or(true),
                    "enable_sni" => h.enable_sni = self.boolean(c).unwrap_or(true),
                    "sni_name" => h.sni_name = self.word(c).or(h.sni_name.take()),
                    "tls_compliant" => self.ignored(c),
                    _ => self.unknown(c),
                },
                (CheckerKind::Misc(m), "misc_path") => m.path = self.script(c).or(m.path.take()),
                (CheckerKind::Misc(_), "misc_timeout") => {
                    misc_timeout = self.timer(c).or(misc_timeout)
                }
                (CheckerKind::Misc(m), "misc_dynamic") => m.dynamic = self.flag(c) || m.dynamic,
                (CheckerKind::Misc(m), "user") => m.user = self.user(c).or(m.user.take()),
                (CheckerKind::Udp(u), "payload") => {
                    if let Some(w) = self.word(c) {
                        u.payload = self.hex(c, &w).or(u.payload.take());
                    }
                }
                (CheckerKind::Udp(u), "require_reply") => {
                    if self.args(c, 0, 1) {
                        u.require_reply = match c.args.first() {
                            Some(w) => self.hex(c, w),
                            None => Some(Vec::new()),
                        };
                    }
                }
                (CheckerKind::Udp(u), "min_reply_length") => {
                    u.min_reply_length = self.u32_in(c, 0, 65535).unwrap_or(u.min_reply_length)
                }
                (CheckerKind::Udp(u), "max_reply_length") => {
                    u.max_reply_length = self.u32_in(c, 0, 65535).unwrap_or(u.max_reply_length)
                }
                (CheckerKind::Dns(d), "type") => {
                    if let Some(w) = self.word(c) {
                        let up = w.to_ascii_uppercase();
                        if ["A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"].contains(&up.as_str()) {
                            d.qtype = up;
                        } else {
                            self.d.push(
                                Severity::Error,
                                &c.loc,
                                format!("DNS_CHECK: unknown type '{w}' - ignoring"),
                            );
                        }
                    }
                }
                (CheckerKind::Dns(d), "name") => {
                    if let Some(w) = self.word(c) {
                        d.name = w;
                    }
                }
                _ => self.unknown(c),
            }
        }
        Some(RawChecker {
            kind,
            common,
            timing,
            misc_timeout,
            loc: n.loc.clone(),
        })
    }

    fn hex(&mut self, n: &Node, w: &str) -> Option<Vec<u8>> {
        let digits = w.trim_start_matches("0x");
        let ok = digits.len() % 2 == 0 && digits.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            self.d.push(
                Severity::Error,
                &n.loc,
                format!("{}: invalid hex string '{w}' - ignoring", n.keyword),
            );
            return None;
        }
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
            .collect()
    }

    fn url(&mut self, n: &Node) -> Option<Url> {
        if !self.args(n, 0, 0) {
            return None;
        }
        let children = self.block(n)?;
        let mut url = Url {
            path: String::new(),
            digest: None,
            status_codes: Vec::new(),
            virtualhost: None,
            loc: n.loc.clone(),
        };
        for c in children {
            if !self.no_block(c) {
                continue;
            }
            match c.keyword.as_str() {
                "path" => url.path = self.word(c).unwrap_or(url.path),
                "digest" => {
                    if let Some(w) = self.word(c) {
                        if w.len() == 32 && w.bytes().all(|b| b.is_ascii_hexdigit()) {
                            url.digest = Some(w.to_ascii_lowercase());
                        } else {
                            self.d.push(
                                Severity::Error,
                                &c.loc,
                                format!("digest '{w}' is not 32 hex digits (MD5) - ignoring"),
                            );
                        }
                    }
                }
                "status_code" => {
                    if !self.args(c, 1, 64) {
                        continue;
                    }
                    for w in &c.args {
                        let (lo, hi) = w.split_once('-').unwrap_or((w, w));
                        match (lo.parse::<u16>(), hi.parse::<u16>()) {
                            (Ok(lo), Ok(hi)) if (100..=599).contains(&lo) && lo <= hi && hi <= 599 => {
                                url.status_codes.push((lo, hi))
                            }
                            _ => self.d.push(
                                Severity::Error,
                                &c.loc,
                                format!("status_code '{w}' is not a code or range in 100-599 - ignoring"),
                            ),
                        }
                    }
                }
                "virtualhost" => url.virtualhost = self.word(c).or(url.virtualhost.take()),
                "regex" | "regex_no_match" | "regex_options" | "regex_stack"
                | "regex_min_offset" | "regex_max_offset" => self.ignored(c),
                _ => self.unknown(c),
            }
        }
        if url.path.is_empty() {
            self.d
                .push_rvs(Severity::Error, &n.loc, "url without path - ignoring");
            return None;
        }
        if url.status_codes.is_empty() {
            url.status_codes.push((200, 299));
        }
        Some(url)
    }

    fn finish_rs(&mut self, raw: RawRs, vs_timing: &Timing, vs_inhibit: bool) -> RealServer {
        let mut rs = raw.rs;
        rs.inhibit_on_failure = raw.inhibit.unwrap_or(vs_inhibit);
        let outer = raw.timing.or(vs_timing);
        for ch in raw.checkers {
            let t = ch.timing.or(&outer);
            let delay_loop = t.delay_loop.unwrap_or(Duration::from_secs(60));
            let (retry, dbr) = match ch.kind {
                CheckerKind::Tcp | CheckerKind::Udp(_) => (1, Duration::from_secs(1)),
                CheckerKind::Http(_) | CheckerKind::Ssl(_) => (1, Duration::from_secs(3)),
                CheckerKind::Dns(_) => (3, delay_loop),
                CheckerKind::Misc(_) => (0, Duration::from_secs(1)),
            };
            let mut kind = ch.kind;
            if let CheckerKind::Misc(m) = &mut kind {
                m.timeout = ch.misc_timeout.unwrap_or(delay_loop);
                if m.path.is_none() {
                    self.d.push_rvs(
                        Severity::Error,
                        &ch.loc,
                        "MISC_CHECK without misc_path - ignoring the checker",
                    );
                    continue;
                }
            }
            if let CheckerKind::Http(h) | CheckerKind::Ssl(h) = &kind {
                if h.urls.is_empty() {
                    self.d.push_rvs(
                        Severity::Error,
                        &ch.loc,
                        "HTTP checker without url - ignoring the checker",
                    );
                    continue;
                }
            }
            rs.checkers.push(Checker {
                kind,
                common: CheckerCommon {
                    connect_timeout: t.connect_timeout.unwrap_or(Duration::from_secs(5)),
                    retry: t.retry.unwrap_or(retry),
                    delay_before_retry: t.delay_before_retry.unwrap_or(dbr),
                    warmup: t.warmup.unwrap_or(delay_loop),
                    delay_loop,
                    alpha: t.alpha.unwrap_or(false),
                    ..ch.common
                },
                loc: ch.loc,
            });
        }
        rs
    }

    fn vs_group(&mut self, n: &Node) -> Option<VirtualServerGroup> {
        let name = self.word(n)?;
        let children = self.block(n)?;
        let mut g = VirtualServerGroup {
            name,
            entries: Vec::new(),
            loc: n.loc.clone(),
        };
        for c in children {
            if !self.no_block(c) {
                continue;
            }
            if c.keyword == "fwmark" {
                if let Some(m) = self.u32_in(c, 1, u32::MAX) {
                    g.entries.push(VsgEntry::Fwmark(m, c.loc.clone()));
                }
                continue;
            }
            // IP PORT | IP-LAST PORT | CIDR PORT: the address is the keyword.
            if c.args.len() != 1 {
                self.args(c, 1, 1);
                continue;
            }
            let Some(port) = self.port(c, &c.args[0]) else {
                continue;
            };
            match addr_range(&c.keyword) {
                Some((first, last)) => g.entries.push(VsgEntry::Range {
                    first,
                    last,
                    port,
                    loc: c.loc.clone(),
                }),
                None => self.d.push(
                    Severity::Error,
                    &c.loc,
                    format!(
                        "virtual server group {}: invalid address '{}' - ignoring",
                        g.name, c.keyword
                    ),
                ),
            }
        }
        Some(g)
    }

    fn laddr_group(&mut self, n: &Node) -> Option<LocalAddressGroup> {
        let name = self.word(n)?;
        let children = self.block(n)?;
        let mut g = LocalAddressGroup {
            name,
            addrs: Vec::new(),
            loc: n.loc.clone(),
        };
        for c in children {
            if !self.no_block(c) || !self.args(c, 0, 1) {
                continue;
            }
            let Some((first, last)) = addr_range(&c.keyword) else {
                self.d.push(
                    Severity::Error,
                    &c.loc,
                    format!(
                        "local_address_group {}: invalid address '{}' - ignoring",
                        g.name, c.keyword
                    ),
                );
                continue;
            };
            let ifname = c.args.first().cloned();
            match expand_range(first, last, 256) {
                Some(addrs) => g
                    .addrs
                    .extend(addrs.into_iter().map(|a| (a, ifname.clone()))),
                None => self.d.push_rvs(
                    Severity::Fatal,
                    &c.loc,
                    format!(
                        "local_address_group {}: range '{}' has more than 256 addresses",
                        g.name, c.keyword
                    ),
                ),
            }
        }
        Some(g)
    }

    fn vip_list(&mut self, n: &Node) -> Vec<VipAddr> {
        let mut out = Vec::new();
        let Some(children) = self.block(n) else {
            return out;
        };
        for c in children {
            if !self.no_block(c) {
                continue;
            }
            let (a, p) = c.keyword.split_once('/').unwrap_or((&c.keyword, ""));
            let Ok(addr) = a.parse::<IpAddr>() else {
                self.d.push(
                    Severity::Error,
                    &c.loc,
                    format!("Invalid address '{}' - ignoring", c.keyword),
                );
                continue;
            };
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = if p.is_empty() {
                Some(max)
            } else {
                p.parse::<u8>().ok().filter(|l| *l <= max)
            };
            let Some(prefix) = prefix else {
                self.d.push(
                    Severity::Error,
                    &c.loc,
                    format!("Invalid prefix length in '{}' - ignoring", c.keyword),
                );
                continue;
            };
            let mut vip = VipAddr {
                addr,
                prefix,
                brd: None,
                dev: None,
                scope: None,
                label: None,
                no_track: false,
                loc: c.loc.clone(),
            };
            let mut words = c.args.iter();
            let mut ok = true;
            while let Some(w) = words.next() {
                match w.as_str() {
                    "no_track" => vip.no_track = true,
                    "brd" | "broadcast" | "dev" | "scope" | "label" | "preferred_lft" => {
                        let Some(v) = words.next() else {
                            self.d.push(
                                Severity::Error,
                                &c.loc,
                                format!("'{w}' needs a value - ignoring the address"),
                            );
                            ok = false;
                            break;
                        };
                        match w.as_str() {
                            "dev" => vip.dev = Some(v.clone()),
                            "scope" => vip.scope = Some(v.clone()),
                            "label" => vip.label = Some(v.clone()),
                            "brd" | "broadcast" => vip.brd = v.parse().ok(),
                            _ => {}
                        }
                    }
                    "home" | "-" | "nodad" | "noprefixroute" | "autojoin" => {}
                    other => {
                        self.d.push_rvs(
                            Severity::Fatal,
                            &c.loc,
                            format!("unknown word '{other}' in a virtual address (one address per line)"),
                        );
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                out.push(vip);
            }
        }
        out
    }

    fn tracks(&mut self, n: &Node, script: bool) -> Vec<Track> {
        let mut out = Vec::new();
        let Some(children) = self.block(n) else {
            return out;
        };
        for c in children {
            if !self.no_block(c) {
                continue;
            }
            let mut t = Track {
                name: c.keyword.clone(),
                weight: None,
                reverse: false,
                loc: c.loc.clone(),
            };
            match c.args.as_slice() {
                [] => {}
                [w, v, rest @ ..] if w == "weight" && rest.len() <= 1 => {
                    let Some(v) = self.parse_number(c, v, -254, 254) else {
                        continue;
                    };
                    t.weight = Some(v as i32);
                    match rest.first().map(String::as_str) {
                        None | Some("noreverse") => {}
                        Some("reverse") => t.reverse = true,
                        Some(o) => {
                            self.d.push_rvs(
                                Severity::Fatal,
                                &c.loc,
                                format!("unknown word '{o}' after the weight"),
                            );
                            continue;
                        }
                    }
                }
                _ => {
                    self.d.push_rvs(
                        Severity::Fatal,
                        &c.loc,
                        format!(
                            "{} '{}': expected 'NAME [weight W [reverse]]', one per line",
                            if script {
                                "track_script"
                            } else {
                                "track_interface"
                            },
                            c.keyword
                        ),
                    );
                    continue;
                }
            }
            if out.iter().any(|o: &Track| o.name == t.name) {
                self.d.push(
                    Severity::Error,
                    &c.loc,
                    format!(
                        "duplicate {} {} - ignoring",
                        if script {
                            "track_script"
                        } else {
                            "track_interface"
                        },
                        t.name
                    ),
                );
                continue;
            }
            out.push(t);
        }
        out
    }

    fn vrrp_instance(&mut self, n: &Node, g: &GlobalDefs) -> Option<VrrpInstance> {
        let name = self.word(n)?;
        let children = self.block(n)?;
        let mut i = VrrpInstance {
            name,
            state: VrrpState::Backup,
            interface: None,
            dpdk_interface: None,
            virtual_router_id: 0,
            priority: 0,
            advert_int: Duration::from_secs(1),
            version: g.vrrp_version,
            auth: None,
            virtual_ipaddress: Vec::new(),
            virtual_ipaddress_excluded: Vec::new(),
            src_ip: None,
            unicast_peer: Vec::new(),
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            track_interface: Vec::new(),
            track_script: Vec::new(),
            notify: Notify::default(),
            garp_master_delay: g.vrrp_garp_master_delay,
            garp_master_repeat: g.vrrp_garp_master_repeat,
            garp_master_refresh: g.vrrp_garp_master_refresh,
            garp_master_refresh_repeat: g.vrrp_garp_master_refresh_repeat,
            use_vmac: None,
            dont_track_primary: false,
            loc: n.loc.clone(),
        };
        let mut priority = None;
        let mut nopreempt_loc = None;
        for c in children {
            let kw = c.keyword.as_str();
            if VRRP_IGNORED.contains(&kw) {
                self.ignored(c);
                continue;
            }
            match kw {
                "virtual_ipaddress" => {
                    let v = self.vip_list(c);
                    i.virtual_ipaddress.extend(v);
                    continue;
                }
                "virtual_ipaddress_excluded" => {
                    let v = self.vip_list(c);
                    i.virtual_ipaddress_excluded.extend(v);
                    continue;
                }
                "track_interface" => {
                    let v = self.tracks(c, false);
                    i.track_interface.extend(v);
                    continue;
                }
                "track_script" => {
                    let v = self.tracks(c, true);
                    i.track_script.extend(v);
                    continue;
                }
                "authentication" => {
                    self.auth(c, &mut i);
                    continue;
                }
                "unicast_peer" => {
                    let Some(children) = self.block(c) else {
                        continue;
                    };
                    for p in children {
                        if !self.no_block(p) || !self.args(p, 0, 4) {
                            continue;
                        }
                        if let Some(a) = self.parse_ip(p, &p.keyword) {
                            i.unicast_peer.push(a);
                        }
                    }
                    continue;
                }
                _ => {}
            }
            if !self.no_block(c) {
                continue;
            }
            match kw {
                "state" => {
                    if let Some(w) = self.word(c) {
                        match w.as_str() {
                            "MASTER" => i.state = VrrpState::Master,
                            "BACKUP" => i.state = VrrpState::Backup,
                            _ => self.d.push(
                                Severity::Error,
                                &c.loc,
                                format!(
                                    "(VI: {}) unknown state '{w}', defaulting to BACKUP",
                                    i.name
                                ),
                            ),
                        }
                    }
                }
                "interface" => i.interface = self.word(c).or(i.interface.take()),
                "dpdk_interface" => i.dpdk_interface = self.word(c).or(i.dpdk_interface.take()),
                "virtual_router_id" => {
                    if let Some(v) = self.number(c, 1, 255) {
                        i.virtual_router_id = v as u8;
                    }
                }
                "priority" => priority = self.number(c, 1, 255).map(|v| v as u8).or(priority),
                "advert_int" => i.advert_int = self.timer(c).unwrap_or(i.advert_int),
                "version" => i.version = self.number(c, 2, 3).map_or(i.version, |v| v as u8),
                "unicast_src_ip" | "mcast_src_ip" => i.src_ip = self.ip(c).or(i.src_ip),
                "nopreempt" => {
                    if self.flag(c) {
                        i.nopreempt = true;
                        nopreempt_loc = Some(c.loc.clone());
                    }
                }
                "preempt" => {
                    if self.flag(c) {
                        i.nopreempt = false;
                    }
                }
                "preempt_delay" => {
                    if let Some(t) = self.timer(c) {
                        if t <= Duration::from_secs(1000) {
                            i.preempt_delay = t;
                        } else {
                            self.d.push(
                                Severity::Error,
                                &c.loc,
                                "preempt_delay outside range [0, 1000] - ignoring",
                            );
                        }
                    }
                }
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                    self.notify(c, &mut i.notify)
                }
                "garp_master_delay" => {
                    i.garp_master_delay = self.timer(c).unwrap_or(i.garp_master_delay)
                }
                "garp_master_repeat" => {
                    i.garp_master_repeat = self.u32_in(c, 0, 255).unwrap_or(i.garp_master_repeat)
                }
                "garp_master_refresh" => {
                    i.garp_master_refresh = self.timer(c).unwrap_or(i.garp_master_refresh)
                }
                "garp_master_refresh_repeat" => {
                    i.garp_master_refresh_repeat = self
                        .u32_in(c, 1, 255)
                        .unwrap_or(i.garp_master_refresh_repeat)
                }
                "use_vmac" => {
                    if self.args(c, 0, 2) {
                        i.use_vmac = Some(c.args.first().cloned());
                    }
                }
                "dont_track_primary" => i.dont_track_primary = self.flag(c),
                _ => self.unknown(c),
            }
        }
        i.priority = priority.unwrap_or(match i.state {
            VrrpState::Master => 255,
            VrrpState::Backup => 100,
        });
        // keepalived 2.2.7 `vrrp_complete_instance()`: each of these is a
        // configuration error (`-t` exit 5), reported without a line.
        let at = nopreempt_loc.unwrap_or_else(|| i.loc.clone());
        if i.state == VrrpState::Master {
            if i.nopreempt {
                i.nopreempt = false;
                let m = if i.priority == 255 {
                    format!(
                        "({}) nopreempt is incompatible with priority 255. resetting nopreempt",
                        i.name
                    )
                } else {
                    format!("({}) Warning - nopreempt will not work with initial state MASTER - clearing", i.name)
                };
                self.d.push_rvs(Severity::Error, &at, m);
            }
            if !i.preempt_delay.is_zero() {
                i.preempt_delay = Duration::ZERO;
                self.d.push_rvs(
                    Severity::Error,
                    &at,
                    format!("({}) Warning - preempt delay will not work with initial state MASTER - clearing", i.name),
                );
            }
        } else if i.nopreempt && !i.preempt_delay.is_zero() {
            i.preempt_delay = Duration::ZERO;
            self.d.push_rvs(
                Severity::Error,
                &at,
                format!(
                    "({}) preempt_delay is incompatible with nopreempt mode - resetting",
                    i.name
                ),
            );
        }
        if let Some(own) = i.interface.clone() {
            let (own_tracks, others): (Vec<Track>, Vec<Track>) =
                i.track_interface.drain(..).partition(|t| t.name == own);
            i.track_interface = others;
            for t in own_tracks {
                self.d.push_rvs(
                    Severity::Error,
                    &t.loc,
                    format!(
                        "({}) Ignoring track_interface {own} since own interface",
                        i.name
                    ),
                );
            }
        }
        if i.version == 2 && i.advert_int.subsec_micros() != 0 {
            let secs = i.advert_int.as_secs_f64().round().max(1.0);
            self.d.push_rvs(
                Severity::Error,
                &i.loc,
                format!(
                    "({}) VRRPv2 advert_int is whole seconds: rounded to {secs}",
                    i.name
                ),
            );
            i.advert_int = Duration::from_secs_f64(secs);
        }
        if i.virtual_router_id == 0 {
            self.d.push_rvs(
                Severity::Error,
                &n.loc,
                format!(
                    "({}) the virtual router id must be set - the instance is ignored",
                    i.name
                ),
            );
            return None;
        }
        if i.virtual_ipaddress.is_empty() {
            self.d.push_rvs(
                Severity::Error,
                &i.loc,
                format!("({}) No VIP specified; at least one is sensible", i.name),
            );
        }
        Some(i)
    }

    fn auth(&mut self, n: &Node, i: &mut VrrpInstance) {
        let Some(children) = self.block(n) else {
            return;
        };
        let mut ah = false;
        let mut pass = None;
        for c in children {
            if !self.no_block(c) {
                continue;
            }
            match c.keyword.as_str() {
                "auth_type" => match self.word(c).as_deref() {
                    Some("PASS") => ah = false,
                    Some("AH") => ah = true,
                    Some(w) => self.d.push(
                        Severity::Error,
                        &c.loc,
                        format!("unknown authentication type '{w}'"),
                    ),
                    None => {}
                },
                "auth_pass" => {
                    if let Some(w) = self.word(c) {
                        if w.len() > 8 {
                            // keepalived 2.2.7's `-t` counts it as an error (exit 5).
                            self.d.push(
                                Severity::Error,
                                &c.loc,
                                "Truncating auth_pass to 8 characters",
                            );
                        }
                        let mut b = [0u8; 8];
                        for (d, s) in b.iter_mut().zip(w.bytes()) {
                            *d = s;
                        }
                        pass = Some(b);
                    }
                }
                _ => self.unknown(c),
            }
        }
        i.auth = pass.map(|p| if ah { Auth::Ah(p) } else { Auth::Pass(p) });
    }

    fn sync_group(&mut self, n: &Node) -> Option<VrrpSyncGroup> {
        let name = self.word(n)?;
        let children = self.block(n)?;
        let mut g = VrrpSyncGroup {
            name,
            group: Vec::new(),
            track_interface: Vec::new(),
            track_script: Vec::new(),
            notify: Notify::default(),
            sync_group_tracking_weight: false,
            loc: n.loc.clone(),
        };
        for c in children {
            match c.keyword.as_str() {
                "sync_group_tracking_weight" => {
                    g.sync_group_tracking_weight = self.flag(c) || g.sync_group_tracking_weight
                }
                "group" => {
                    if let Some(b) = self.block(c) {
                        for m in b {
                            if self.no_block(m) && self.args(m, 0, 0) {
                                g.group.push(m.keyword.clone());
                            }
                        }
                    }
                }
                "track_interface" => {
                    let v = self.tracks(c, false);
                    g.track_interface.extend(v);
                }
                "track_script" => {
                    let v = self.tracks(c, true);
                    g.track_script.extend(v);
                }
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                    self.notify(c, &mut g.notify)
                }
                "smtp_alert" | "global_tracking" | "track_file" | "track_process" | "track_bfd" => {
                    self.ignored(c)
                }
                _ => self.unknown(c),
            }
        }
        Some(g)
    }

    fn vrrp_script(&mut self, n: &Node) -> Option<VrrpScript> {
        let name = self.word(n)?;
        let children = self.block(n)?;
        let mut s = VrrpScript {
            name,
            script: None,
            interval: Duration::from_secs(1),
            timeout: Duration::ZERO,
            weight: 0,
            reverse: false,
            rise: 1,
            fall: 1,
            user: None,
            init_fail: false,
            loc: n.loc.clone(),
        };
        let mut timeout = None;
        for c in children {
            if !self.no_block(c) {
                continue;
            }
            match c.keyword.as_str() {
                "script" => s.script = self.script(c).or(s.script.take()),
                "interval" => s.interval = self.timer(c).unwrap_or(s.interval),
                "timeout" => timeout = self.timer(c).or(timeout),
                "weight" => {
                    if !self.args(c, 1, 2) {
                        continue;
                    }
                    if let Some(w) = self.parse_number(c, &c.args[0], -253, 253) {
                        s.weight = w as i32;
                    }
                    match c.args.get(1).map(String::as_str) {
                        None => {}
                        Some("reverse") => s.reverse = true,
                        Some(o) => self.d.push_rvs(
                            Severity::Fatal,
                            &c.loc,
                            format!("weight: unknown word '{o}' (one keyword per line)"),
                        ),
                    }
                }
                "rise" => s.rise = self.u32_in(c, 1, u32::MAX).unwrap_or(s.rise),
                "fall" => s.fall = self.u32_in(c, 1, u32::MAX).unwrap_or(s.fall),
                "user" => s.user = self.user(c).or(s.user.take()),
                "init_fail" => s.init_fail = self.flag(c),
                _ => self.unknown(c),
            }
        }
        s.timeout = timeout.unwrap_or(s.interval);
        if s.script.is_none() {
            self.d.push_rvs(
                Severity::Error,
                &n.loc,
                format!("vrrp_script {}: no script - ignoring", s.name),
            );
            return None;
        }
        Some(s)
    }

    /// keepalived 2.2.7's checks of sync groups (errors without a line):
    /// a group of one instance, and weighted trackers of members, which are
    /// ignored unless `sync_group_tracking_weight`.
    fn sync_groups(&mut self, conf: &mut KeepalivedConf) {
        let script_weights: Vec<(String, i32)> = conf
            .vrrp_scripts
            .iter()
            .map(|s| (s.name.clone(), s.weight))
            .collect();
        for g in &conf.vrrp_sync_groups {
            if g.group.len() == 1 {
                self.d.push_rvs(
                    Severity::Error,
                    &g.loc,
                    format!("Sync group {} has only 1 virtual router(s) - this probably isn't what you want", g.name),
                );
            }
            if g.sync_group_tracking_weight {
                continue;
            }
            for i in conf
                .vrrp_instances
                .iter_mut()
                .filter(|i| g.group.contains(&i.name))
            {
                for (tracks, what) in [
                    (&mut i.track_script, "script"),
                    (&mut i.track_interface, "interface"),
                ] {
                    // A tracked script without its own weight has the
                    // vrrp_script's.
                    let weight = |t: &Track| match (t.weight, what) {
                        (Some(w), _) => w,
                        (None, "script") => script_weights
                            .iter()
                            .find(|(n, _)| *n == t.name)
                            .map_or(0, |(_, w)| *w),
                        (None, _) => 0,
                    };
                    let (weighted, kept): (Vec<Track>, Vec<Track>) =
                        tracks.drain(..).partition(|t| weight(t) != 0);
                    *tracks = kept;
                    for t in weighted {
                        self.d.push_rvs(
                            Severity::Error,
                            &t.loc,
                            format!(
                                "({}) ignoring tracked {what} {} with weights due to SYNC group",
                                i.name, t.name
                            ),
                        );
                    }
                }
            }
        }
    }

    /// keepalived 2.2.7 `-t` exits 6 when scripts are configured and
    /// `enable_script_security` is not set.
    fn script_security(&mut self, conf: &KeepalivedConf) {
        if conf.global.enable_script_security {
            return;
        }
        let first = conf
            .virtual_servers
            .iter()
            .flat_map(|vs| {
                let rs_scripts = vs.real_servers.iter().flat_map(|rs| {
                    let misc = rs.checkers.iter().filter_map(|c| match &c.kind {
                        CheckerKind::Misc(m) => m.path.as_ref(),
                        _ => None,
                    });
                    rs.notify_up.iter().chain(rs.notify_down.iter()).chain(misc)
                });
                vs.quorum_up
                    .iter()
                    .chain(vs.quorum_down.iter())
                    .chain(rs_scripts)
            })
            .chain(conf.vrrp_scripts.iter().filter_map(|s| s.script.as_ref()))
            .chain(conf.vrrp_instances.iter().flat_map(|i| i.notify.scripts()))
            .chain(
                conf.vrrp_sync_groups
                    .iter()
                    .flat_map(|g| g.notify.scripts()),
            )
            .next();
        if let Some(s) = first {
            self.d.push_rvs(
                Severity::Security,
                &s.loc,
                "SECURITY VIOLATION - scripts are configured but script security is not enabled (global_defs enable_script_security)",
            );
        }
    }
}

/// `a.b.c.d`, `a.b.c.d-e` (last byte), `a.b.c.d/len`, or the IPv6 forms
/// (`...-ffff` for the last group) → the first and last address.
pub fn addr_range(text: &str) -> Option<(IpAddr, IpAddr)> {
    if let Some((a, len)) = text.split_once('/') {
        let addr: IpAddr = a.parse().ok()?;
        let len: u32 = len.parse().ok()?;
        return match addr {
            IpAddr::V4(v4) if len <= 32 => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let base = u32::from(v4) & mask;
                Some((IpAddr::V4(base.into()), IpAddr::V4((base | !mask).into())))
            }
            IpAddr::V6(v6) if len <= 128 => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                let base = u128::from(v6) & mask;
                Some((IpAddr::V6(base.into()), IpAddr::V6((base | !mask).into())))
            }
            _ => None,
        };
    }
    if let Some((a, last)) = text.rsplit_once('-') {
        let addr: IpAddr = a.parse().ok()?;
        return match addr {
            IpAddr::V4(v4) => {
                let last: u8 = last.parse().ok()?;
                let o = v4.octets();
                (last >= o[3]).then(|| (addr, IpAddr::V4([o[0], o[1], o[2], last].into())))
            }
            IpAddr::V6(v6) => {
                let last = u16::from_str_radix(last, 16).ok()?;
                let mut s = v6.segments();
                (last >= s[7]).then(|| {
                    s[7] = last;
                    (addr, IpAddr::V6(s.into()))
                })
            }
        };
    }
    let a: IpAddr = text.parse().ok()?;
    Some((a, a))
}

/// The addresses `first..=last` if there are at most `max`.
pub fn expand_range(first: IpAddr, last: IpAddr, max: usize) -> Option<Vec<IpAddr>> {
    let (f, l, v4) = match (first, last) {
        (IpAddr::V4(f), IpAddr::V4(l)) => {
            (u128::from(u32::from(f)), u128::from(u32::from(l)), true)
        }
        (IpAddr::V6(f), IpAddr::V6(l)) => (u128::from(f), u128::from(l), false),
        _ => return None,
    };
    // Counted before anything is added: a /0 is never enumerated.
    if l.checked_sub(f)? >= max as u128 {
        return None;
    }
    Some(
        (f..=l)
            .map(|a| match v4 {
                true => IpAddr::V4((a as u32).into()),
                false => IpAddr::V6(a.into()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges_are_inclusive_and_bounded_before_enumeration() {
        let (f, l) = addr_range("10.0.0.1-3").unwrap();
        assert_eq!(expand_range(f, l, 256).unwrap().len(), 3);
        let (f, l) = addr_range("10.0.1.0/31").unwrap();
        assert_eq!(expand_range(f, l, 256).unwrap().len(), 2);
        let (f, l) = addr_range("::/0").unwrap();
        assert_eq!(expand_range(f, l, 256), None);
        let (f, l) = addr_range("10.0.0.0/0").unwrap();
        assert_eq!(expand_range(f, l, 256), None);
        assert_eq!(addr_range("10.0.0.5-3"), None, "a range runs upwards");
        let (f, l) = addr_range("2001:db8::1-ff").unwrap();
        assert_eq!(expand_range(f, l, 256).unwrap().len(), 255);
    }
}
