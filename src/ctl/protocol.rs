//! ctl::protocol — the wire protocol between `lbctl` (and any other client)
//! and `lbd`.
//!
//! Owns: the frame format, the protocol version, and the CLOSED set of
//! requests and responses with every field an ipvsadm command line can carry.
//!
//! Rules:
//! * A frame is a 4-byte big-endian payload length followed by that many bytes
//!   of UTF-8 JSON. Frames larger than [`MAX_FRAME_LEN`] are refused before
//!   the payload is read; an empty frame is malformed.
//! * Every request travels in `{"version":1,"request":{...}}` and every
//!   response in `{"version":1,"response":{...}}`. The version is checked
//!   before the body is decoded, so a client speaking a newer protocol gets
//!   [`ProtocolError::BadVersion`], not a confusing decode error.
//! * Requests and responses are internally tagged serde enums
//!   (`{"type":"add_service",...}`) with `deny_unknown_fields`: a misspelt or
//!   unknown field is a [`ProtocolError::Malformed`], never silently ignored.
//! * One connection carries any number of request/response pairs, strictly
//!   alternating; `lbctl` sends one and closes.
//! * A [`Request::Batch`] is applied atomically by the daemon: all of it or
//!   none of it (this is how `lbctl -R` restores a table). Batches do not nest.
//! * Every failure is answered with [`Response::Error`] and changes nothing.
//!   The `message` is what `lbctl` prints on stderr; daemons should use
//!   ipvsadm's wording where ipvsadm has one ("Service already exists",
//!   "No such service", "Service not defined", "Destination already exists",
//!   "No such destination", "Scheduler or persistence engine not found",
//!   "Memory allocation problem").

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::sys::connect_unix;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::conntrack::{Fwd, Proto};

/// Version of this protocol; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame payload accepted or sent, in bytes (16 MiB). Requests are
/// tiny except `-R` batches; the largest responses are connection listings,
/// which the daemon truncates (see [`Response::Conns`]) to stay below this.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Where `lbd` listens and `lbctl` connects unless told otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/run/rvs/lbd.sock";

/// Environment variable that overrides [`DEFAULT_SOCKET_PATH`] for `lbctl`.
pub const SOCKET_ENV: &str = "LBCTL_SOCKET";

/// Errors while framing, encoding or decoding protocol messages.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A frame announces (or a message needs) more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced or needed payload length.
        len: usize,
        /// The limit, [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version {got} is not supported (this side speaks version {expected})")]
    BadVersion {
        /// Version found in the envelope.
        got: u64,
        /// [`PROTOCOL_VERSION`].
        expected: u32,
    },
    /// The payload is not a valid envelope or message; the text says why.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed by peer")]
    Closed,
    /// Reading or writing the stream failed (including timeouts).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Identity of a virtual service: protocol, virtual address and port.
/// Port 0 means "any port" and is only valid for persistent services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceKey {
    /// Transport protocol.
    pub proto: Proto,
    /// Virtual IP address.
    pub addr: IpAddr,
    /// Virtual port (0 = any port, persistent services only).
    pub port: u16,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.proto.name(),
            SocketAddr::new(self.addr, self.port)
        )
    }
}

/// Persistence granularity: which bits of the client address share a
/// persistence template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Netmask {
    /// IPv4 netmask (ipvsadm accepts any dotted quad; default 255.255.255.255).
    V4(Ipv4Addr),
    /// IPv6 prefix length 1..=128 (default 128).
    V6(u8),
}

impl Netmask {
    /// The default, "one client address per template", for a service address.
    pub fn host_for(addr: &IpAddr) -> Netmask {
        match addr {
            IpAddr::V4(_) => Netmask::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(_) => Netmask::V6(128),
        }
    }

    /// True for 255.255.255.255 and /128, which ipvsadm does not print.
    pub fn is_host(&self) -> bool {
        match self {
            Netmask::V4(mask) => *mask == Ipv4Addr::BROADCAST,
            Netmask::V6(prefix) => *prefix == 128,
        }
    }
}

/// Everything `-A`/`-E` set on a virtual service. `-E` replaces the whole
/// spec (ipvsadm semantics: options left out go back to their defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Which service.
    pub key: ServiceKey,
    /// Scheduler name (`-s`), default "wlc".
    pub scheduler: String,
    /// Scheduler flags (`-b`), canonical names in bit order: for sh
    /// "sh-fallback", "sh-port"; for mh "mh-fallback", "mh-port"; otherwise
    /// "flag-1", "flag-2"; and "flag-3".
    pub sched_flags: Vec<String>,
    /// Persistence timeout in seconds (`-p`), `None` = not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity (`-M`).
    pub netmask: Netmask,
    /// One-packet scheduling (`-o`/`--ops`), UDP only.
    pub ops: bool,
    /// Persistence engine (`--pe`); rvs supports none, so always `None` from lbctl.
    pub pe: Option<String>,
    /// SYN proxy (`--synproxy`, rvs/DPVS): answer the handshake with SYN
    /// cookies and open the real server's side on a valid ACK. TCP, NAT
    /// and FULLNAT only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synproxy: bool,
    /// The service's own IPVS `sloppy_tcp` (schedule a TCP segment without
    /// SYN that matches no connection); `None` = the global setting. Set
    /// in the YAML only (ipvsadm has no such option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sloppy_tcp: Option<bool>,
}

impl ServiceSpec {
    /// A spec with ipvsadm's defaults: wlc, no flags, not persistent,
    /// host netmask, no ops, no persistence engine.
    pub fn new(key: ServiceKey) -> ServiceSpec {
        ServiceSpec {
            key,
            scheduler: "wlc".to_string(),
            sched_flags: Vec::new(),
            persistent: None,
            netmask: Netmask::host_for(&key.addr),
            ops: false,
            pe: None,
            synproxy: false,
            sloppy_tcp: None,
        }
    }
}

/// Tunnel encapsulation of a [`Fwd::Tun`] real server. rvs implements
/// ipip only (`--tun-type gue|gre` is refused by lbctl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunType {
    /// IPv4/IPv6-in-IP encapsulation, ipvsadm's default.
    Ipip,
}

/// Everything `-a`/`-e` set on a real server. `-e` replaces the whole spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestSpec {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port (forced to the service port for Route and Tunnel).
    pub port: u16,
    /// Forwarding method.
    pub fwd: Fwd,
    /// Weight 0..=65535 (0 = quiesced), default 1.
    pub weight: u32,
    /// Upper connection threshold (`-x`), 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    pub l_threshold: u32,
    /// Tunnel type; meaningful only for [`Fwd::Tun`].
    pub tun_type: TunType,
}

impl DestSpec {
    /// A spec with ipvsadm's defaults: Route, weight 1, no thresholds, ipip.
    pub fn new(addr: IpAddr, port: u16) -> DestSpec {
        DestSpec {
            addr,
            port,
            fwd: Fwd::Dr,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TunType::Ipip,
        }
    }
}

/// A FULLNAT local address of a service (`-P`/`-Q` with `-z`, `-F`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaddrSpec {
    /// The service the address belongs to.
    pub service: ServiceKey,
    /// Local (source) address used towards real servers.
    pub addr: IpAddr,
    /// Port (interface) that owns the address, e.g. "dpdk0"; `None` lets lbd
    /// pick the port by route.
    pub ifname: Option<String>,
}

/// Global timeouts of `--set` / `--timeout`, in seconds. In `SetTimeouts`,
/// 0 means "leave unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP ESTABLISHED timeout.
    pub tcp: u32,
    /// TCP FIN_WAIT timeout.
    pub tcpfin: u32,
    /// UDP timeout.
    pub udp: u32,
}

/// The closed set of requests lbd accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// `-A`: add a virtual service.
    AddService {
        /// The new service.
        service: ServiceSpec,
    },
    /// `-E`: replace an existing service's parameters.
    EditService {
        /// The service's new parameters (key selects the service).
        service: ServiceSpec,
    },
    /// `-D`: delete a service with its real servers and local addresses.
    DeleteService {
        /// Which service.
        service: ServiceKey,
    },
    /// `-C`: delete every service.
    Clear,
    /// `-a`: add a real server to a service.
    AddDest {
        /// Which service.
        service: ServiceKey,
        /// The new real server.
        dest: DestSpec,
    },
    /// `-e`: replace a real server's parameters (addr/port select it).
    EditDest {
        /// Which service.
        service: ServiceKey,
        /// The real server's new parameters.
        dest: DestSpec,
    },
    /// `-d`: delete a real server.
    DeleteDest {
        /// Which service.
        service: ServiceKey,
        /// Real server address.
        addr: IpAddr,
        /// Real server port.
        port: u16,
    },
    /// `-L`/`-S`: list all services, or one.
    ListServices {
        /// `None` = all services.
        service: Option<ServiceKey>,
    },
    /// `-Lc`: list connections and persistence templates.
    ListConns,
    /// `-Z`: zero the counters of one service or of all.
    Zero {
        /// `None` = all services.
        service: Option<ServiceKey>,
    },
    /// `--set tcp tcpfin udp` (0 = unchanged).
    SetTimeouts {
        /// New values.
        timeouts: Timeouts,
    },
    /// `-L --timeout`.
    GetTimeouts,
    /// `-P`: add a FULLNAT local address.
    AddLaddr {
        /// The address.
        laddr: LaddrSpec,
    },
    /// `-Q`: delete a FULLNAT local address.
    DeleteLaddr {
        /// The address.
        laddr: LaddrSpec,
    },
    /// `-G`: list local addresses of one service or of all.
    GetLaddrs {
        /// `None` = all services.
        service: Option<ServiceKey>,
    },
    /// `-R`: apply all requests atomically, in order, or none. Only table
    /// changes are allowed inside (no nested batches, no listings).
    Batch {
        /// The requests, in input order.
        requests: Vec<Request>,
    },
    /// Daemon and protocol version.
    Version,
    /// Per-port (NIC) counters.
    PortStats,
    /// Per-worker data-plane counters, drops by reason included.
    DataplaneStats,
    /// rvs extension (`lbctl --vrrp`): the VRRP instances.
    Vrrp,
    /// rvs extension (`lbctl --reload`, as `SIGHUP`): re-read lbd's
    /// configuration file and apply the difference as one change.
    Reload,
    /// rvs extension (`lbctl --health`): every checked real server with
    /// its checkers' live state.
    Health,
    /// `--start-daemon master|backup`: start a connection sync daemon.
    StartDaemon {
        /// Its settings.
        daemon: crate::sync::conf::SyncConf,
    },
    /// `--stop-daemon master|backup`.
    StopDaemon {
        /// Which one.
        role: crate::sync::conf::SyncRole,
    },
    /// `-L --daemon`: the sync daemons and their counters.
    ListDaemon,
    /// rvs extension (`lbctl --announce`): the VIPs this director
    /// announces to its routing daemon (`crate::announce`).
    Announce,
    /// rvs extension (`lbctl --drain [--drain-timeout SECS]`): withdraw
    /// every announced route now, keep forwarding, stop lbd once no
    /// connection is active or `timeout_secs` (default 30) passed.
    Drain {
        /// Seconds to wait for active connections to end (`None`: 30).
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
}

impl Request {
    /// True for requests that change the configuration (and so may appear in
    /// a [`Request::Batch`]).
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Request::AddService { .. }
                | Request::EditService { .. }
                | Request::DeleteService { .. }
                | Request::Clear
                | Request::AddDest { .. }
                | Request::EditDest { .. }
                | Request::DeleteDest { .. }
                | Request::Zero { .. }
                | Request::SetTimeouts { .. }
                | Request::AddLaddr { .. }
                | Request::DeleteLaddr { .. }
        )
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The frame or JSON could not be decoded.
    Malformed,
    /// The client speaks another protocol version.
    BadVersion,
    /// A value is out of range or inconsistent (ipvsadm: EINVAL).
    Invalid,
    /// The object already exists (EEXIST).
    Exists,
    /// The object does not exist (ESRCH/ENOENT).
    NotFound,
    /// rvs does not implement this (EOPNOTSUPP).
    Unsupported,
    /// A table or pool is full (ENOMEM).
    NoSpace,
    /// The daemon failed internally.
    Internal,
}

/// Packet and byte counters (ipvsadm `--stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub inpkts: u64,
    /// Packets server → client.
    pub outpkts: u64,
    /// Bytes client → server.
    pub inbytes: u64,
    /// Bytes server → client.
    pub outbytes: u64,
}

/// Rate estimates (ipvsadm `--rate`), per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets per second client → server.
    pub inpps: u64,
    /// Packets per second server → client.
    pub outpps: u64,
    /// Bytes per second client → server.
    pub inbps: u64,
    /// Bytes per second server → client.
    pub outbps: u64,
}

/// A real server as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestInfo {
    /// Its configuration.
    pub spec: DestSpec,
    /// Active connections (ActiveConn).
    pub active_conns: u64,
    /// Inactive connections (InActConn).
    pub inactive_conns: u64,
    /// Persistence templates pointing at it (PersistConn).
    pub persist_conns: u64,
    /// Counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
}

/// A FULLNAT local address as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaddrInfo {
    /// The address.
    pub addr: IpAddr,
    /// Port (interface) name, if configured.
    pub ifname: Option<String>,
    /// Source-port allocation conflicts seen (DPVS "CONFLICTS").
    pub port_conflicts: u64,
    /// Connections currently using it (DPVS "CONNS").
    pub conns: u64,
}

/// A virtual service as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInfo {
    /// Its configuration.
    pub spec: ServiceSpec,
    /// Its real servers, in the daemon's scheduling order.
    pub dests: Vec<DestInfo>,
    /// Its FULLNAT local addresses (empty unless configured).
    pub laddrs: Vec<LaddrInfo>,
    /// Counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
}

/// A service's local addresses, for `-G`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceLaddrs {
    /// Which service.
    pub service: ServiceKey,
    /// Its local addresses.
    pub laddrs: Vec<LaddrInfo>,
}

/// One connection or persistence template (`-Lnc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnInfo {
    /// Transport protocol.
    pub proto: Proto,
    /// State name as ipvsadm prints it ("ESTABLISHED", "UDP", "NONE" for templates).
    pub state: String,
    /// Time left before expiry, in milliseconds.
    pub expires_ms: u64,
    /// Client address and port (port 0 for templates).
    pub client: SocketAddr,
    /// Virtual address and port.
    pub vaddr: SocketAddr,
    /// Real server address and port.
    pub daddr: SocketAddr,
    /// FULLNAT local address and port, if any.
    pub laddr: Option<SocketAddr>,
    /// True for persistence templates.
    pub template: bool,
    /// Persistence engine name, if any (never set by rvs today).
    pub pe_name: Option<String>,
    /// Persistence engine data, if any.
    pub pe_data: Option<String>,
    /// Installed from a peer director's sync message (IPVS's SYNC flag).
    #[serde(default)]
    pub synced: bool,
}

/// Counters of one NIC port, named like DPDK's `rte_eth_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortStatsInfo {
    /// Port index.
    pub port: u16,
    /// Port name, e.g. "dpdk0".
    pub name: String,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets dropped by the NIC for lack of ring space (imissed).
    pub rx_missed: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Receive mbuf allocation failures.
    pub rx_nombuf: u64,
    /// The port's interface vanished under the daemon (its I/O stopped).
    #[serde(default)]
    pub link_gone: bool,
}

/// Packets one worker dropped for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropCount {
    /// The reason's snake_case name (`DropReason::name`), e.g. "table_full".
    pub reason: String,
    /// Packets dropped for it.
    pub packets: u64,
}

/// One worker's SYN proxy counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynproxyStats {
    /// SYNs answered with a cookie SYN-ACK.
    pub syn_cookies_sent: u64,
    /// ACKs with a valid cookie (connections made).
    pub acks_valid: u64,
    /// ACKs with an invalid cookie (dropped as `synproxy_bad_ack`).
    pub acks_invalid: u64,
    /// Handshakes with the real server completed.
    pub established: u64,
    /// SYNs sent to a real server again (its SYN-ACK did not come).
    #[serde(default)]
    pub syn_retransmits: u64,
    /// Early client data segments held during the server's handshake.
    #[serde(default)]
    pub held: u64,
    /// Held segments forwarded after the server's SYN-ACK.
    #[serde(default)]
    pub held_replayed: u64,
    /// Data segments refused because the hold was full (also in the drop
    /// `synproxy_pending`).
    #[serde(default)]
    pub held_full: u64,
    /// Held segments dropped because the server's handshake did not
    /// complete in time (also in the drop `synproxy_pending`).
    #[serde(default)]
    pub held_timeout: u64,
}

impl SynproxyStats {
    /// All zero.
    pub fn is_zero(&self) -> bool {
        *self == SynproxyStats::default()
    }

    /// Every counter with its name as `lbctl --dataplane-stats` rows and
    /// the metrics exporter's `event` label show it, in that order.
    pub fn named(&self) -> [(&'static str, u64); 9] {
        [
            ("syn_cookies_sent", self.syn_cookies_sent),
            ("synproxy_acks_valid", self.acks_valid),
            ("synproxy_acks_invalid", self.acks_invalid),
            ("synproxy_established", self.established),
            ("synproxy_syn_retransmits", self.syn_retransmits),
            ("synproxy_held", self.held),
            ("synproxy_held_replayed", self.held_replayed),
            ("synproxy_held_full", self.held_full),
            ("synproxy_held_timeout", self.held_timeout),
        ]
    }
}

/// The route announcement as `lbctl --announce` (and `--drain`) shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceInfo {
    /// The BIRD include lbd writes (`None`: no `announce:` configured).
    pub include: Option<String>,
    /// The VIPs in force in the include (what BIRD announces).
    pub announced: Vec<IpAddr>,
    /// The VIPs this director can serve now (announced unless draining or
    /// stopping).
    pub servable: Vec<IpAddr>,
    /// Draining: routes withdrawn, lbd stops when connections end.
    pub draining: bool,
    /// Seconds left before a drain stops lbd regardless.
    pub drain_left_secs: Option<u64>,
    /// Active connections (all services).
    pub active_conns: u64,
    /// The last failure to apply the set (write or `birdc`), if the last
    /// attempt failed.
    pub last_error: Option<String>,
}

/// One VRRP instance as `lbctl --vrrp` shows it (rvs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpInstanceInfo {
    /// Name.
    pub name: String,
    /// Port's kernel interface.
    pub interface: String,
    /// VRID.
    pub vrid: u8,
    /// `MASTER`, `BACKUP`, ...
    pub state: String,
    /// Configured priority.
    pub priority: u8,
    /// Effective priority (moved by weighted tracked interfaces).
    pub effective_priority: u8,
    /// The master as last seen (this director when MASTER).
    pub master: Option<IpAddr>,
    /// Advert interval in centiseconds.
    pub advert_int_cs: u16,
    /// VRRP version.
    pub version: u8,
    /// The VIPs.
    pub vips: Vec<IpAddr>,
    /// Transitions: (Unix time in ms, state entered), oldest first.
    pub transitions: Vec<(u64, String)>,
    /// Rejected adverts by reason (every reason, zeros included).
    pub rejects: Vec<(String, u64)>,
    /// Dual-master alarms.
    pub dual_master_alarms: u64,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Valid adverts received.
    pub adverts_received: u64,
}

/// Counters of one data-plane worker (`CoreCounters`), read relaxed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerStatsInfo {
    /// Worker index.
    pub worker: u16,
    /// Packets received from devices.
    pub rx_packets: u64,
    /// Packets handed to devices.
    pub tx_packets: u64,
    /// Packets received from another worker's steering ring.
    pub steered_in: u64,
    /// Packets handed to another worker (software steering).
    pub steered_out: u64,
    /// Connections created.
    pub conns_created: u64,
    /// Connections expired.
    pub conns_expired: u64,
    /// Connections in the table now.
    pub conns_now: u64,
    /// Frames handed to the port's kernel interface.
    #[serde(default)]
    pub to_kernel: u64,
    /// Frames the kernel sent that this worker transmitted.
    #[serde(default)]
    pub from_kernel: u64,
    /// Kernel-path frames lost (no free slot, ring full), by the worker
    /// and by the kernel-path thread.
    #[serde(default)]
    pub kernel_drop: u64,
    /// SYN proxy counters (left out of JSON while all zero).
    #[serde(default, skip_serializing_if = "SynproxyStats::is_zero")]
    pub synproxy: SynproxyStats,
    /// Drops by reason: every reason the daemon knows, in its counter order
    /// (`DropReason::ALL`), zeros included.
    pub drops: Vec<DropCount>,
}

/// One checker of a real server as `lbctl --health` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckerInfo {
    /// keepalived's keyword (`TCP_CHECK`, `HTTP_GET`, ...).
    pub checker: String,
    /// What it checks (`ip:port`, or the MISC_CHECK command).
    pub target: String,
    /// Whether this checker finds the server up.
    pub up: bool,
    /// The last check's result (`None`: none ran yet).
    pub last_ok: Option<bool>,
    /// Why the last check failed or passed, e.g. `connection refused`.
    pub reason: String,
    /// Duration of the last check in microseconds.
    pub latency_us: Option<u64>,
    /// Milliseconds to the next check (0: running now).
    pub next_check_ms: u64,
    /// State changes of this checker since start.
    pub flaps: u32,
}

/// One checked real server as `lbctl --health` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthInfo {
    /// The virtual service.
    pub service: ServiceKey,
    /// The real server's address.
    pub addr: IpAddr,
    /// The real server's port.
    pub port: u16,
    /// Alive: every checker up.
    pub alive: bool,
    /// Changes of the alive state since start.
    pub flaps: u32,
    /// Its checkers, in configuration order.
    pub checkers: Vec<CheckerInfo>,
}

/// The closed set of responses lbd sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// A change was applied; `generation` is the configuration generation
    /// now in force (unchanged for requests that change nothing).
    Ok {
        /// Configuration generation.
        generation: u64,
    },
    /// The request failed and changed nothing.
    Error {
        /// Error class.
        kind: ErrorKind,
        /// Human-readable message, printed by lbctl as is.
        message: String,
    },
    /// Answer to [`Request::ListServices`].
    Services {
        /// The services, in the daemon's order (lbctl sorts).
        services: Vec<ServiceInfo>,
        /// Connection table size, printed in the `-L` header.
        conn_table_size: u64,
    },
    /// Answer to [`Request::ListConns`].
    Conns {
        /// The connections.
        conns: Vec<ConnInfo>,
        /// True when the daemon stopped early to stay under [`MAX_FRAME_LEN`].
        truncated: bool,
    },
    /// Answer to [`Request::GetTimeouts`].
    Timeouts {
        /// Current values.
        timeouts: Timeouts,
    },
    /// Answer to [`Request::GetLaddrs`].
    Laddrs {
        /// Per-service local addresses.
        services: Vec<ServiceLaddrs>,
    },
    /// Answer to [`Request::Version`].
    Version {
        /// Daemon name and version, e.g. "rvs 0.1.0".
        daemon: String,
        /// [`PROTOCOL_VERSION`] of the daemon.
        protocol: u32,
        /// IPVS version emulated, e.g. "1.2.1".
        ipvs: String,
    },
    /// Answer to [`Request::PortStats`].
    PortStats {
        /// One entry per port.
        ports: Vec<PortStatsInfo>,
    },
    /// Answer to [`Request::ListDaemon`].
    Daemon {
        /// The running sync daemons and the counters.
        status: crate::sync::service::SyncStatus,
    },
    /// Answer to [`Request::DataplaneStats`].
    DataplaneStats {
        /// One entry per worker, in worker order.
        workers: Vec<WorkerStatsInfo>,
    },
    /// Answer to [`Request::Vrrp`].
    Vrrp {
        /// One entry per configured instance.
        instances: Vec<VrrpInstanceInfo>,
    },
    /// Answer to [`Request::Announce`] and [`Request::Drain`].
    Announce {
        /// The announcement's state (boxed: the largest answer).
        status: Box<AnnounceInfo>,
    },
    /// Answer to [`Request::Health`].
    Health {
        /// The checked real servers, in configuration order.
        servers: Vec<HealthInfo>,
    },
    /// Answer to [`Request::Reload`]: the file was valid and its table
    /// difference is in force (all of it, as one generation).
    Reloaded {
        /// Configuration generation now in force (unchanged when the file
        /// changed nothing that can change live).
        generation: u64,
        /// What changed, one line each (`-A -t 10.0.0.1:80 ...` style).
        applied: Vec<String>,
        /// Differences that only a restart applies (ports, workers, ...),
        /// one line each; none of them was applied.
        not_applied: Vec<String>,
    },
}

impl Response {
    /// Shorthand for an error response.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error {
            kind,
            message: message.into(),
        }
    }

    /// The error response a server sends for a request it could not decode;
    /// `None` for transport failures (nothing sensible can be sent).
    pub fn for_protocol_error(err: &ProtocolError) -> Option<Response> {
        match err {
            ProtocolError::TooLarge { .. } | ProtocolError::Malformed(_) => {
                Some(Response::error(ErrorKind::Malformed, err.to_string()))
            }
            ProtocolError::BadVersion { .. } => {
                Some(Response::error(ErrorKind::BadVersion, err.to_string()))
            }
            ProtocolError::Closed | ProtocolError::Io(_) => None,
        }
    }
}

/// The request envelope as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEnvelope {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The request.
    pub request: Request,
}

/// The response envelope as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseEnvelope {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The response.
    pub response: Response,
}

/// Writes one frame: 4-byte big-endian length, then `payload`.
pub fn write_frame<W: Write>(writer: &mut W, payload: &[u8]) -> Result<(), ProtocolError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(ProtocolError::TooLarge {
            len: payload.len(),
            max: MAX_FRAME_LEN,
        });
    }
    // MAX_FRAME_LEN < u32::MAX, so the length fits.
    let len = u32::try_from(payload.len()).map_err(|_| ProtocolError::TooLarge {
        len: payload.len(),
        max: MAX_FRAME_LEN,
    })?;
    writer.write_all(&len.to_be_bytes())?;
    writer.write_all(payload)?;
    writer.flush()?;
    Ok(())
}

/// Reads one frame's payload. A clean end of stream before the first length
/// byte is [`ProtocolError::Closed`]; an oversized length is refused without
/// reading the payload.
pub fn read_frame<R: Read>(reader: &mut R) -> Result<Vec<u8>, ProtocolError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Err(ProtocolError::Closed),
            Ok(0) => {
                return Err(ProtocolError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame header",
                )))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtocolError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    if len == 0 {
        return Err(ProtocolError::Malformed("empty frame".to_string()));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload)?;
    Ok(payload)
}

/// Encodes a request in its envelope (JSON bytes, without the frame header).
pub fn encode_request(request: &Request) -> Result<Vec<u8>, ProtocolError> {
    encode(&RequestEnvelope {
        version: PROTOCOL_VERSION,
        request: request.clone(),
    })
}

/// Encodes a response in its envelope (JSON bytes, without the frame header).
pub fn encode_response(response: &Response) -> Result<Vec<u8>, ProtocolError> {
    encode(&ResponseEnvelope {
        version: PROTOCOL_VERSION,
        response: response.clone(),
    })
}

/// Decodes a request envelope, checking the version first.
pub fn decode_request(payload: &[u8]) -> Result<Request, ProtocolError> {
    decode_enveloped(payload, "request")
}

/// Decodes a response envelope, checking the version first.
pub fn decode_response(payload: &[u8]) -> Result<Response, ProtocolError> {
    decode_enveloped(payload, "response")
}

/// Writes one request frame.
pub fn write_request<W: Write>(writer: &mut W, request: &Request) -> Result<(), ProtocolError> {
    write_frame(writer, &encode_request(request)?)
}

/// Reads one request frame.
pub fn read_request<R: Read>(reader: &mut R) -> Result<Request, ProtocolError> {
    decode_request(&read_frame(reader)?)
}

/// Writes one response frame.
pub fn write_response<W: Write>(writer: &mut W, response: &Response) -> Result<(), ProtocolError> {
    write_frame(writer, &encode_response(response)?)
}

/// Reads one response frame.
pub fn read_response<R: Read>(reader: &mut R) -> Result<Response, ProtocolError> {
    decode_response(&read_frame(reader)?)
}

/// Connects to the daemon's Unix socket, sends one request and waits for its
/// response. `timeout` bounds the connect, each write and each read (a stuck
/// daemon fails the call instead of hanging the operator's shell).
pub fn call_unix(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ProtocolError> {
    let mut stream = connect_unix(path, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write_request(&mut stream, request)?;
    read_response(&mut stream)
}

fn encode<T: Serialize>(envelope: &T) -> Result<Vec<u8>, ProtocolError> {
    let bytes =
        serde_json::to_vec(envelope).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_FRAME_LEN {
        return Err(ProtocolError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(bytes)
}

/// Decodes `{"version":N,"<body_key>":{...}}`: the envelope shape and version
/// are checked before the body, so version skew is reported as such.
fn decode_enveloped<T: DeserializeOwned + Serialize>(
    payload: &[u8],
    body_key: &str,
) -> Result<T, ProtocolError> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(ProtocolError::Malformed(
            "envelope is not a JSON object".to_string(),
        ));
    };
    let version = match map.remove("version") {
        Some(serde_json::Value::Number(n)) => n.as_u64().ok_or_else(|| {
            ProtocolError::Malformed("envelope field `version` is not an unsigned integer".into())
        })?,
        Some(_) => {
            return Err(ProtocolError::Malformed(
                "envelope field `version` is not an unsigned integer".to_string(),
            ))
        }
        None => {
            return Err(ProtocolError::Malformed(
                "envelope has no `version` field".to_string(),
            ))
        }
    };
    if version != u64::from(PROTOCOL_VERSION) {
        return Err(ProtocolError::BadVersion {
            got: version,
            expected: PROTOCOL_VERSION,
        });
    }
    let body = map
        .remove(body_key)
        .ok_or_else(|| ProtocolError::Malformed(format!("envelope has no `{body_key}` field")))?;
    if let Some(extra) = map.keys().next() {
        return Err(ProtocolError::Malformed(format!(
            "unknown envelope field `{extra}`"
        )));
    }
    let keys: Vec<String> = match &body {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let decoded: T =
        serde_json::from_value(body).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    // serde's `deny_unknown_fields` does not reach the unit variants of an
    // internally tagged enum (`{"type":"clear","all":true}` would decode as
    // `Clear`): compare the top-level keys with what the value encodes to.
    if let Ok(serde_json::Value::Object(back)) = serde_json::to_value(&decoded) {
        if let Some(extra) = keys.iter().find(|k| !back.contains_key(k.as_str())) {
            return Err(ProtocolError::Malformed(format!(
                "unknown field `{extra}` in {body_key}"
            )));
        }
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::Ipv6Addr;

    fn tcp_key() -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port: 80,
        }
    }

    fn every_request() -> Vec<Request> {
        let key = tcp_key();
        let mut spec = ServiceSpec::new(key);
        spec.persistent = Some(300);
        spec.netmask = Netmask::V4(Ipv4Addr::new(255, 255, 255, 0));
        let v6 = ServiceSpec::new(ServiceKey {
            proto: Proto::Udp,
            addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            port: 53,
        });
        let dest = DestSpec::new(IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1)), 8080);
        let laddr = LaddrSpec {
            service: key,
            addr: IpAddr::V4(Ipv4Addr::new(192, 168, 100, 1)),
            ifname: Some("dpdk0".to_string()),
        };
        let changes = vec![
            Request::AddService {
                service: spec.clone(),
            },
            Request::EditService { service: v6 },
            Request::DeleteService { service: key },
            Request::Clear,
            Request::AddDest {
                service: key,
                dest: dest.clone(),
            },
            Request::EditDest { service: key, dest },
            Request::DeleteDest {
                service: key,
                addr: IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1)),
                port: 80,
            },
            Request::Zero { service: None },
            Request::SetTimeouts {
                timeouts: Timeouts {
                    tcp: 900,
                    tcpfin: 0,
                    udp: 300,
                },
            },
            Request::AddLaddr {
                laddr: laddr.clone(),
            },
            Request::DeleteLaddr { laddr },
        ];
        let mut all = changes.clone();
        all.extend([
            Request::ListServices { service: Some(key) },
            Request::ListConns,
            Request::GetTimeouts,
            Request::GetLaddrs { service: None },
            Request::Batch { requests: changes },
            Request::Version,
            Request::PortStats,
            Request::DataplaneStats,
            Request::Vrrp,
            Request::Announce,
            Request::Drain { timeout_secs: None },
            Request::Drain {
                timeout_secs: Some(5),
            },
        ]);
        all
    }

    #[test]
    fn every_request_round_trips_through_a_frame() {
        for request in every_request() {
            let mut wire = Vec::new();
            write_request(&mut wire, &request).expect("encode");
            let len = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
            assert_eq!(len, wire.len() - 4, "length prefix counts the payload");
            let back = read_request(&mut Cursor::new(wire)).expect("decode");
            assert_eq!(back, request);
        }
    }

    #[test]
    fn envelope_has_the_documented_shape() {
        let bytes = encode_request(&Request::Clear).expect("encode");
        let text = String::from_utf8(bytes).expect("utf8");
        assert_eq!(text, r#"{"version":1,"request":{"type":"clear"}}"#);
        let bytes = encode_request(&Request::DeleteService { service: tcp_key() }).expect("encode");
        let text = String::from_utf8(bytes).expect("utf8");
        assert_eq!(
            text,
            r#"{"version":1,"request":{"type":"delete_service","service":{"proto":"tcp","addr":"10.0.0.1","port":80}}}"#
        );
    }

    #[test]
    fn responses_round_trip() {
        let responses = vec![
            Response::Ok { generation: 7 },
            Response::error(ErrorKind::NotFound, "No such service"),
            Response::Timeouts {
                timeouts: Timeouts {
                    tcp: 900,
                    tcpfin: 120,
                    udp: 300,
                },
            },
            Response::Conns {
                conns: vec![ConnInfo {
                    proto: Proto::Tcp,
                    state: "ESTABLISHED".into(),
                    expires_ms: 899_000,
                    client: "203.0.113.7:51000".parse().expect("addr"),
                    vaddr: "10.0.0.1:80".parse().expect("addr"),
                    daddr: "[2001:db8::1]:80".parse().expect("addr"),
                    laddr: None,
                    template: false,
                    pe_name: None,
                    pe_data: None,
                    synced: false,
                }],
                truncated: false,
            },
            Response::Version {
                daemon: "rvs 0.1.0".into(),
                protocol: PROTOCOL_VERSION,
                ipvs: "1.2.1".into(),
            },
            Response::DataplaneStats {
                workers: vec![
                    WorkerStatsInfo {
                        worker: 0,
                        rx_packets: 10,
                        tx_packets: 9,
                        steered_in: 1,
                        steered_out: 2,
                        conns_created: 3,
                        conns_expired: 1,
                        conns_now: 2,
                        to_kernel: 0,
                        from_kernel: 0,
                        kernel_drop: 0,
                        synproxy: Default::default(),
                        drops: vec![
                            DropCount {
                                reason: "malformed".into(),
                                packets: 0,
                            },
                            DropCount {
                                reason: "table_full".into(),
                                packets: u64::MAX,
                            },
                        ],
                    },
                    WorkerStatsInfo {
                        worker: 1,
                        rx_packets: 0,
                        tx_packets: 0,
                        steered_in: 0,
                        steered_out: 0,
                        conns_created: 0,
                        conns_expired: 0,
                        conns_now: 0,
                        to_kernel: 0,
                        from_kernel: 0,
                        kernel_drop: 0,
                        synproxy: Default::default(),
                        drops: Vec::new(),
                    },
                ],
            },
            Response::DataplaneStats {
                workers: Vec::new(),
            },
            Response::Vrrp {
                instances: vec![VrrpInstanceInfo {
                    name: "VI_1".into(),
                    interface: "kext".into(),
                    vrid: 51,
                    state: "MASTER".into(),
                    priority: 100,
                    effective_priority: 80,
                    master: Some("10.99.0.11".parse().expect("addr")),
                    advert_int_cs: 100,
                    version: 2,
                    vips: vec!["10.99.0.38".parse().expect("addr")],
                    transitions: vec![(1_796_600_000_000, "MASTER".into())],
                    rejects: vec![("ttl".into(), 3)],
                    dual_master_alarms: 1,
                    adverts_sent: 9,
                    adverts_received: 2,
                }],
            },
        ];
        for response in responses {
            let mut wire = Vec::new();
            write_response(&mut wire, &response).expect("encode");
            assert_eq!(
                read_response(&mut Cursor::new(wire)).expect("decode"),
                response
            );
        }
    }

    #[test]
    fn wrong_version_is_reported_before_the_body_is_decoded() {
        let payload = br#"{"version":2,"request":{"type":"teleport"}}"#;
        match decode_request(payload) {
            Err(ProtocolError::BadVersion {
                got: 2,
                expected: 1,
            }) => {}
            other => panic!("expected BadVersion, got {other:?}"),
        }
    }

    #[test]
    fn unknown_request_type_and_unknown_fields_are_malformed() {
        for payload in [
            &br#"{"version":1,"request":{"type":"teleport"}}"#[..],
            br#"{"version":1,"request":{"type":"delete_service","service":{"proto":"tcp","addr":"10.0.0.1","port":80,"colour":"red"}}}"#,
            br#"{"version":1,"request":{"type":"delete_service","service":{"proto":"sctp","addr":"10.0.0.1","port":80}}}"#,
            br#"{"version":1,"request":{"type":"clear"},"extra":1}"#,
            br#"{"request":{"type":"clear"}}"#,
            br#"[1,2]"#,
            b"not json",
        ] {
            match decode_request(payload) {
                Err(ProtocolError::Malformed(_)) => {}
                other => panic!("{}: expected Malformed, got {other:?}", String::from_utf8_lossy(payload)),
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused_without_reading_the_payload() {
        let mut wire = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(b"{}");
        match read_frame(&mut Cursor::new(wire)) {
            Err(ProtocolError::TooLarge { len, max }) => {
                assert_eq!(len, MAX_FRAME_LEN + 1);
                assert_eq!(max, MAX_FRAME_LEN);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let big = vec![b' '; MAX_FRAME_LEN + 1];
        assert!(matches!(
            write_frame(&mut Vec::new(), &big),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn clean_eof_is_closed_and_torn_frames_are_io_errors() {
        assert!(matches!(
            read_frame(&mut Cursor::new(Vec::new())),
            Err(ProtocolError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut Cursor::new(vec![0, 0])),
            Err(ProtocolError::Io(_))
        ));
        assert!(matches!(
            read_frame(&mut Cursor::new(vec![0, 0, 0, 5, b'{'])),
            Err(ProtocolError::Io(_))
        ));
        assert!(matches!(
            read_frame(&mut Cursor::new(vec![0, 0, 0, 0])),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn protocol_errors_map_to_error_responses() {
        let bad = ProtocolError::BadVersion {
            got: 9,
            expected: 1,
        };
        assert!(matches!(
            Response::for_protocol_error(&bad),
            Some(Response::Error {
                kind: ErrorKind::BadVersion,
                ..
            })
        ));
        assert!(Response::for_protocol_error(&ProtocolError::Closed).is_none());
    }

    #[test]
    fn call_unix_exchanges_one_request_and_response() {
        let dir = std::env::temp_dir().join(format!("rvs-proto-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("lbd.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let request = read_request(&mut stream).expect("request");
            assert_eq!(request, Request::GetTimeouts);
            write_response(
                &mut stream,
                &Response::Timeouts {
                    timeouts: Timeouts {
                        tcp: 900,
                        tcpfin: 120,
                        udp: 300,
                    },
                },
            )
            .expect("response");
        });
        let response =
            call_unix(&path, &Request::GetTimeouts, Duration::from_secs(5)).expect("call");
        server.join().expect("server thread");
        assert_eq!(
            response,
            Response::Timeouts {
                timeouts: Timeouts {
                    tcp: 900,
                    tcpfin: 120,
                    udp: 300
                }
            }
        );
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
    }
}

#[cfg(test)]
mod unknown_field_tests {
    use super::*;

    #[test]
    fn unit_requests_with_unknown_fields_are_malformed() {
        for body in [
            r#"{"version":1,"request":{"type":"clear","all":true}}"#,
            r#"{"version":1,"request":{"type":"list_conns","x":1}}"#,
            r#"{"version":1,"request":{"type":"version","y":null}}"#,
            r#"{"version":1,"request":{"type":"dataplane_stats","worker":0}}"#,
        ] {
            assert!(
                matches!(
                    decode_request(body.as_bytes()),
                    Err(ProtocolError::Malformed(_))
                ),
                "{body}"
            );
        }
        assert_eq!(
            decode_request(br#"{"version":1,"request":{"type":"clear"}}"#).expect("valid"),
            Request::Clear
        );
        assert_eq!(
            decode_request(br#"{"version":1,"request":{"type":"dataplane_stats"}}"#)
                .expect("valid"),
            Request::DataplaneStats
        );
    }

    #[test]
    fn dataplane_stats_have_the_documented_shape_and_refuse_unknown_fields() {
        let response = Response::DataplaneStats {
            workers: vec![WorkerStatsInfo {
                worker: 0,
                rx_packets: 5,
                tx_packets: 4,
                steered_in: 0,
                steered_out: 1,
                conns_created: 2,
                conns_expired: 1,
                conns_now: 1,
                to_kernel: 0,
                from_kernel: 0,
                kernel_drop: 0,
                synproxy: Default::default(),
                drops: vec![DropCount {
                    reason: "no_service".into(),
                    packets: 3,
                }],
            }],
        };
        let text = String::from_utf8(encode_response(&response).expect("encode")).expect("utf8");
        assert_eq!(
            text,
            concat!(
                r#"{"version":1,"response":{"type":"dataplane_stats","workers":[{"worker":0,"#,
                r#""rx_packets":5,"tx_packets":4,"steered_in":0,"steered_out":1,"#,
                r#""conns_created":2,"conns_expired":1,"conns_now":1,"#,
                r#""to_kernel":0,"from_kernel":0,"kernel_drop":0,"#,
                r#""drops":[{"reason":"no_service","packets":3}]}]}}"#
            )
        );
        for bad in [
            text.replace(r#""packets":3"#, r#""packets":3,"bytes":9"#),
            text.replace(r#""conns_now":1,"#, r#""conns_now":1,"conns_max":8,"#),
            text.replace(r#""workers":["#, r#""total":1,"workers":["#),
        ] {
            assert!(
                matches!(
                    decode_response(bad.as_bytes()),
                    Err(ProtocolError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn fwd_and_proto_travel_under_ipvsadm_names() {
        let fwds = [
            (Fwd::Nat, "\"masq\"", "Masq", "-m"),
            (Fwd::Dr, "\"route\"", "Route", "-g"),
            (Fwd::Tun, "\"tunnel\"", "Tunnel", "-i"),
            (Fwd::FullNat, "\"fullnat\"", "FullNat", "--fullnat"),
        ];
        for (fwd, json, name, switch) in fwds {
            assert_eq!(serde_json::to_string(&fwd).expect("encode"), json);
            assert_eq!(serde_json::from_str::<Fwd>(json).expect("decode"), fwd);
            assert_eq!((fwd.name(), fwd.switch()), (name, switch));
        }
        let protos = [
            (Proto::Tcp, "\"tcp\"", "TCP", 6),
            (Proto::Udp, "\"udp\"", "UDP", 17),
        ];
        for (proto, json, name, number) in protos {
            assert_eq!(serde_json::to_string(&proto).expect("encode"), json);
            assert_eq!(serde_json::from_str::<Proto>(json).expect("decode"), proto);
            assert_eq!((proto.name(), proto.number()), (name, number));
        }
        assert!(Proto::Tcp < Proto::Udp, "services sort TCP first");
        assert!(serde_json::from_str::<Fwd>("\"nat\"").is_err());
    }
}
