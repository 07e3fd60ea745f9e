//! ctl::config — lbd's YAML configuration file.
//!
//! Owns the file's schema, its parsing (with `serde_yaml_ng`) and its
//! translation into the daemon's start-up state: worker settings, the
//! [`Topology`] (ports, routes, neighbours) and the services, which are
//! turned into the same [`Request`]s `lbctl` sends and applied through
//! [`ControlState::apply`] — one rule book for both.
//!
//! Rules:
//! * Every mapping is `deny_unknown_fields`, and every value with a syntax
//!   (IP address, CIDR prefix, MAC, port range, weight, port reference) is a
//!   newtype with its own `Deserialize`, so an unknown key or a bad value is
//!   an error that names the field path and its line and column, e.g.
//!   `services[0].dests[1].weight: weight 70000 out of range 0..=65535 at
//!   line 31 column 17`.
//! * A route or neighbour naming a port that `ports` does not define is an
//!   error at that value's line too (the file is read twice: once to learn
//!   the port names, once to check the references).
//! * Checks that involve several fields (workers vs. pcap queues, driver
//!   options that do not fit the driver, services) name the item they
//!   concern (`ports[1] (eth1)`, `services[2] (TCP 10.0.0.1:80)`).
//!
//! # Schema
//!
//! Every key is optional unless marked *required*.
//!
//! ```yaml
//! socket: /run/rvs/lbd.sock        # control socket (lbd --socket overrides)
//! workers:
//!   count: 2                       # default: len(cores), else 1; 0 workers if no ports
//!   cores: [1, 2]                  # pin worker i to cores[i]
//!   conn_capacity: 1048576         # connections per worker (max 2^30)
//!   idle: busy                     # busy | backoff
//!   idle_after: 64                 # backoff: empty polls before sleeping
//!   idle_sleep_us: 50              # backoff: sleep length
//!   tx_flush_us: 100               # under backlog: flush a TX buffer after this long
//! ports:
//!   - name: eth0                   # required, unique; routes refer to it
//!     driver: tap                  # required: mem | pcap | tap | af_packet | dpdk
//!     ifname: rvs0                 # tap, af_packet: interface (default: name)
//!     device: net_tap0             # dpdk: device name or port id (default: name)
//!     mac: "02:00:00:00:00:01"     # director MAC (tap/mem/pcap default: derived
//!                                  # from the name; af_packet/dpdk: the device's)
//!     mtu: 1500                    # IP MTU, 68..=9216
//!     addrs: ["10.0.0.254/24"]     # own addresses; they make connected routes
//!     pcap_rx: in.pcap             # pcap: capture to read; mem: frames to cycle
//!     pcap_tx: out.pcap            # pcap: capture to write
//!     queues: 2                    # if given, must equal workers.count
//!     af_packet:                   # af_packet ring options
//!       block_size: 131072
//!       block_count: 32
//!       frame_size: 2048
//!       tpacket: v2                # v2 (frame slots) | v3 (blocks)
//!       block_timeout_ms: 1        # v3: block retire timeout
//!       qdisc_bypass: true
//!       tx_mode: sendmmsg          # sendmmsg | ring
//!       fanout_group_id: 42
//! dpdk:
//!   eal_args: ["--no-huge", "--no-pci", "--vdev=net_null0"]
//! routes:
//!   - {prefix: "0.0.0.0/0", via: 10.0.0.1, port: eth0}   # prefix, port required
//! neighbours:
//!   - {addr: 10.0.0.1, mac: "02:00:00:00:00:fe", port: eth0}
//! timeouts: {tcp: 900, tcpfin: 120, udp: 300}            # 0 = IPVS default
//! settings:
//!   expire_nodest_conn: true
//!   expire_quiescent_template: false
//!   lport_range: "1025-65535"      # FULLNAT local ports
//!   synproxy_auto_percent: 0       # table % above which TCP services use SYN cookies (0 = off)
//!   drop_entry: 0                  # IPVS defense: 0 off, 1 auto, 2 on, 3 always
//!   drop_packet: 0                 # IPVS defense: 0 off, 1 auto, 2 on, 3 always
//!   am_droprate: 10                # drop_packet 3: one new flow in N dropped
//!   defense_percent: 90            # table % above which "memory is low" (1..=99)
//!   sloppy_tcp: false              # IPVS sloppy_tcp: schedule TCP without SYN (not RST)
//! services:
//!   - proto: tcp                   # required: tcp | udp
//!     vip: 10.0.0.1                # required
//!     port: 80                     # required (0 = all ports, persistent only)
//!     scheduler: wlc               # rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos
//!     sched_flags: [sh-port]       # ipvsadm -b words
//!     persistent: 300              # seconds (ipvsadm -p)
//!     netmask: 255.255.255.0       # -M: dotted quad, or a prefix length (IPv6: 1..=128)
//!     ops: false                   # one-packet scheduling (UDP)
//!     synproxy: false              # SYN proxy with cookies (TCP; NAT/FULLNAT servers)
//!     sloppy_tcp: true             # this service's sloppy_tcp (default: settings.sloppy_tcp)
//!     laddrs:                      # FULLNAT local addresses
//!       - 192.168.100.1
//!       - {addr: 192.168.100.2, ifname: eth1}
//!     dests:
//!       - addr: 192.168.10.1       # required
//!         port: 8080               # default: the service port (forced for route/tunnel)
//!         fwd: masq                # masq | route | tunnel | fullnat (default route)
//!         weight: 1                # 0..=65535
//!         u_threshold: 0
//!         l_threshold: 0
//! sync:                            # connection sync daemons (ipvsadm --start-daemon)
//!   - role: master                 # required: master | backup (one of each at most)
//!     interface: sync0             # --mcast-interface (default: the kernel's choice)
//!     syncid: 1                    # 0..=255 (backup: 0 accepts any)
//!     maxlen: 1472                 # --sync-maxlen; group 224.0.0.81, port 8848, ttl 1
//!     auth_key: SECRET             # rvs: HMAC-SHA256 of every message (default: none)
//! ```

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::conntrack::MAX_CAPACITY;
use crate::conntrack::{Fwd, Proto};
use crate::ctl::apply::{ApplyError, ControlState, Topology, MAX_THRESHOLD};
use crate::ctl::protocol::{
    DestSpec, LaddrSpec, Netmask, Request, ServiceKey, ServiceSpec, Timeouts, TunType,
};
use crate::dataplane::driver::af_packet::{AfPacketOptions, Tpacket, TxMode};
use crate::dataplane::driver::check_ifname;
use crate::dataplane::neigh::NeighUpdate;
use crate::dataplane::ports::{Device, PortSetup};
use crate::dataplane::route::Route;
use crate::dataplane::snapshot::{PortConf, Settings};
use crate::dataplane::worker::{IdlePolicy, WorkerConfig};
use crate::sched::MAX_WEIGHT;
use crate::wire::EthernetAddress;

/// Smallest and largest IP MTU accepted for a port.
pub const MTU_RANGE: (u16, u16) = (68, 9216);

/// Largest IP MTU the software drivers (mem, pcap, tap, af_packet) carry:
/// their packet buffers hold 2048 bytes of frame, less an Ethernet header
/// and a VLAN tag.
pub const SOFTWARE_MTU_MAX: u16 = 2030;

/// Longest `workers.idle_sleep_us`: a worker that takes `Stop` or a new
/// snapshot sleeps at most this long before it does (10 ms).
pub const IDLE_SLEEP_MAX_US: u64 = 10_000;

/// Longest `workers.tx_flush_us` (10 ms).
pub const TX_FLUSH_MAX_US: u64 = 10_000;

/// Longest port name (names appear in listings, routes and logs).
pub const PORT_NAME_MAX: usize = 32;

/// Longest Unix socket path (`sun_path` holds 108 bytes with the NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// Checks a port name: 1..=[`PORT_NAME_MAX`] letters, digits, `_`, `-`,
/// `.`, `@` or `:` (no spaces, newlines or other control characters).
pub fn check_port_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > PORT_NAME_MAX {
        return Err(format!(
            "{name:?}: a name has 1..={PORT_NAME_MAX} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.@:".contains(*c)))
    {
        return Err(format!(
            "{name:?}: {c:?} is not allowed (letters, digits, '_', '-', '.', '@', ':')"
        ));
    }
    Ok(())
}

/// Checks a MAC a port or neighbour is given: not all zeros, not
/// broadcast, not multicast (a frame from or to it would not be unicast).
pub fn check_unicast_mac(mac: &EthernetAddress) -> Result<(), String> {
    let b = mac.0;
    if b == [0; 6] {
        Err(format!("{mac}: the all-zero MAC is not an address"))
    } else if b == [0xff; 6] {
        Err(format!("{mac}: the broadcast MAC is not a unicast address"))
    } else if b[0] & 1 == 1 {
        Err(format!("{mac}: a multicast MAC is not a unicast address"))
    } else {
        Ok(())
    }
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid YAML, an unknown key or a bad value (the message names the
    /// field, line and column).
    #[error("{}", yaml_message(.0))]
    Yaml(#[from] serde_yaml_ng::Error),
    /// Fields that do not fit together; the message names them.
    #[error("{0}")]
    Invalid(String),
    /// A service, real server or local address refused by the same rules
    /// as `lbctl`'s requests.
    #[error("{what}: {source}")]
    Apply {
        /// Which item, e.g. `services[0].dests[1] (192.168.10.2:80)`.
        what: String,
        /// Why.
        #[source]
        source: ApplyError,
    },
}

/// serde_yaml_ng's message, with the position added where it leaves it
/// out (it omits line 1 column 1).
fn yaml_message(err: &serde_yaml_ng::Error) -> String {
    let text = err.to_string();
    match err.location() {
        Some(loc) if !text.contains(" at line ") => {
            format!("{text} at line {} column {}", loc.line(), loc.column())
        }
        _ => text,
    }
}

/// An IP address value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

/// An `ADDR/LEN` prefix value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address as written (host bits kept).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

/// A MAC address value (`aa:bb:cc:dd:ee:ff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub EthernetAddress);

/// A `LO-HI` port range value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

/// A real-server weight, 0..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(pub u32);

impl Default for Weight {
    fn default() -> Self {
        Weight(1)
    }
}

/// A connection threshold, 0..=`INT_MAX`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Threshold(pub u32);

/// The name of a port defined in `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRef(pub String);

/// A persistence netmask: a dotted quad (IPv4) or a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetmaskConf {
    /// `255.255.255.0`.
    Dotted(Ipv4Addr),
    /// `24` (IPv4 0..=32) or `64` (IPv6 1..=128).
    Prefix(u8),
}

/// A FULLNAT local address: `ADDR` or `{addr: ADDR, ifname: PORT}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaddrConf {
    /// The address.
    pub addr: IpAddr,
    /// The port that owns it.
    pub ifname: Option<String>,
}

/// Implements `Deserialize` for a newtype parsed from a string scalar, so
/// that errors carry the scalar's position.
macro_rules! from_str_value {
    ($ty:ty, $expecting:expr, $parse:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        let parse: fn(&str) -> Result<$ty, String> = $parse;
                        parse(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

fn parse_ip(v: &str) -> Result<IpAddr, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("invalid IP address {v:?}"))
}

from_str_value!(Ip, "an IP address", |v| parse_ip(v).map(Ip));

from_str_value!(Cidr, "an ADDR/LEN prefix such as \"10.0.0.0/24\"", |v| {
    let (addr, len) = v
        .split_once('/')
        .ok_or_else(|| format!("invalid prefix {v:?}: expected ADDR/LEN"))?;
    let addr = parse_ip(addr)?;
    let len: u8 = len
        .trim()
        .parse()
        .map_err(|_| format!("invalid prefix length in {v:?}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!(
            "prefix length {len} too long for {addr} (max {max})"
        ));
    }
    Ok(Cidr { addr, len })
});

from_str_value!(Mac, "a MAC address such as \"02:00:00:00:00:01\"", |v| {
    v.trim()
        .parse::<EthernetAddress>()
        .map(Mac)
        .map_err(|_| format!("invalid MAC address {v:?}: expected aa:bb:cc:dd:ee:ff"))
});

from_str_value!(PortRange, "a port range such as \"1025-65535\"", |v| {
    let (lo, hi) = v
        .split_once('-')
        .ok_or_else(|| format!("invalid port range {v:?}: expected LO-HI"))?;
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("invalid port {p:?} in range {v:?}"))
    };
    let (lo, hi) = (port(lo)?, port(hi)?);
    if lo == 0 || lo > hi {
        return Err(format!("invalid port range {v:?}: need 1 <= LO <= HI"));
    }
    Ok(PortRange(lo, hi))
});

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_bounded(d, "a weight", "weight", MAX_WEIGHT).map(Weight)
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_bounded(d, "a connection threshold", "threshold", MAX_THRESHOLD).map(Threshold)
    }
}

/// An integer `0..=max`, refused as "`name` `v` out of range" (a negative
/// one too); `expecting` names it in serde's type errors.
fn deserialize_bounded<'de, D: Deserializer<'de>>(
    d: D,
    expecting: &'static str,
    name: &'static str,
    max: u32,
) -> Result<u32, D::Error> {
    struct V {
        expecting: &'static str,
        name: &'static str,
        max: u32,
    }
    impl<'de> Visitor<'de> for V {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} 0..={}", self.expecting, self.max)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            match u32::try_from(v) {
                Ok(v) if v <= self.max => Ok(v),
                _ => Err(self.out_of_range(v)),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(self.out_of_range(v)),
            }
        }
    }
    impl V {
        fn out_of_range<E: de::Error>(&self, v: impl fmt::Display) -> E {
            E::custom(format!("{} {v} out of range 0..={}", self.name, self.max))
        }
    }
    d.deserialize_u64(V {
        expecting,
        name,
        max,
    })
}

impl<'de> Deserialize<'de> for NetmaskConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NetmaskConf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dotted-quad netmask or a prefix length")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NetmaskConf, E> {
                match u8::try_from(v) {
                    Ok(p) if p <= 128 => Ok(NetmaskConf::Prefix(p)),
                    _ => Err(E::custom(format!(
                        "netmask prefix length {v} out of range 0..=128"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NetmaskConf, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "netmask prefix length {v} out of range 0..=128"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NetmaskConf, E> {
                let t = v.trim().trim_start_matches('/');
                if let Ok(p) = t.parse::<u64>() {
                    return self.visit_u64(p);
                }
                t.parse::<Ipv4Addr>()
                    .map(NetmaskConf::Dotted)
                    .map_err(|_| E::custom(format!("invalid netmask {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for LaddrConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            addr: Ip,
            #[serde(default)]
            ifname: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LaddrConf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a local address, or {addr, ifname}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LaddrConf, E> {
                Ok(LaddrConf {
                    addr: parse_ip(v).map_err(E::custom)?,
                    ifname: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LaddrConf, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(LaddrConf {
                    addr: full.addr.0,
                    ifname: full.ifname,
                })
            }
        }
        d.deserialize_any(V)
    }
}

thread_local! {
    /// Port names a [`PortRef`] may name during the checking pass.
    static KNOWN_PORTS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Sets [`KNOWN_PORTS`] for its lifetime.
struct KnownPorts;

impl KnownPorts {
    fn set(names: Vec<String>) -> KnownPorts {
        KNOWN_PORTS.with(|k| *k.borrow_mut() = Some(names));
        KnownPorts
    }
}

impl Drop for KnownPorts {
    fn drop(&mut self) {
        KNOWN_PORTS.with(|k| *k.borrow_mut() = None);
    }
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the name of a port defined in `ports`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRef, E> {
                let missing = KNOWN_PORTS.with(|k| {
                    k.borrow()
                        .as_ref()
                        .and_then(|names| (!names.iter().any(|n| n == v)).then(|| names.join(", ")))
                });
                match missing {
                    Some(defined) => Err(E::custom(format!(
                        "port {v:?} is not defined in `ports` (defined: {})",
                        if defined.is_empty() { "none" } else { &defined }
                    ))),
                    None => Ok(PortRef(v.to_string())),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// How workers wait when there is no traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleMode {
    /// Spin (lowest latency, one core at 100 %).
    #[default]
    Busy,
    /// Sleep after a run of empty polls.
    Backoff,
}

/// `workers:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConf {
    /// Number of workers.
    #[serde(default)]
    pub count: Option<u16>,
    /// Core of each worker.
    #[serde(default)]
    pub cores: Vec<usize>,
    /// Connections per worker.
    #[serde(default)]
    pub conn_capacity: Option<u32>,
    /// Idle behaviour.
    #[serde(default)]
    pub idle: IdleMode,
    /// Backoff: empty polls before sleeping.
    #[serde(default)]
    pub idle_after: Option<u32>,
    /// Backoff: sleep length in microseconds.
    #[serde(default)]
    pub idle_sleep_us: Option<u64>,
    /// TX flush deadline in microseconds.
    #[serde(default)]
    pub tx_flush_us: Option<u64>,
    /// Frames each worker's kernel-path rings (up and down) hold
    /// (`dataplane::kernel`; default 512). Smaller: less latency under a
    /// flood, more `kernel_drop`.
    #[serde(default)]
    pub kernel_ring: Option<u32>,
}

/// `ports[].driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    /// In-memory (benchmarks).
    Mem,
    /// Capture files.
    Pcap,
    /// A kernel TAP interface.
    Tap,
    /// A Linux interface through AF_PACKET.
    AfPacket,
    /// A DPDK port.
    Dpdk,
}

impl DriverKind {
    /// The name used in the file.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Mem => "mem",
            DriverKind::Pcap => "pcap",
            DriverKind::Tap => "tap",
            DriverKind::AfPacket => "af_packet",
            DriverKind::Dpdk => "dpdk",
        }
    }
}

/// `ports[].af_packet.tx_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxModeConf {
    /// One `sendmmsg(2)` per burst.
    Sendmmsg,
    /// A TPACKET_V3 TX ring.
    Ring,
}

/// `ports[].af_packet.tpacket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TpacketConf {
    /// TPACKET_V2: each frame handed over on its own.
    V2,
    /// TPACKET_V3: blocks handed over full or after `block_timeout_ms`.
    V3,
}

/// `ports[].af_packet`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfPacketConf {
    /// Bytes per ring block.
    #[serde(default)]
    pub block_size: Option<u32>,
    /// Blocks per ring.
    #[serde(default)]
    pub block_count: Option<u32>,
    /// Bytes per frame slot.
    #[serde(default)]
    pub frame_size: Option<u32>,
    /// RX block retire timeout.
    #[serde(default)]
    pub block_timeout_ms: Option<u32>,
    /// The rings' TPACKET version.
    #[serde(default)]
    pub tpacket: Option<TpacketConf>,
    /// `PACKET_QDISC_BYPASS`.
    #[serde(default)]
    pub qdisc_bypass: Option<bool>,
    /// Transmit method.
    #[serde(default)]
    pub tx_mode: Option<TxModeConf>,
    /// Fanout group id.
    #[serde(default)]
    pub fanout_group_id: Option<u16>,
}

fn default_mtu() -> u16 {
    1500
}

/// `ports[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Name (routes, neighbours and `-F` refer to it).
    pub name: String,
    /// Driver.
    pub driver: DriverKind,
    /// Interface (tap, af_packet); default: `name`.
    #[serde(default)]
    pub ifname: Option<String>,
    /// DPDK device name or port id; default: `name`.
    #[serde(default)]
    pub device: Option<String>,
    /// The director's MAC on this port.
    #[serde(default)]
    pub mac: Option<Mac>,
    /// IP MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Own addresses.
    #[serde(default)]
    pub addrs: Vec<Cidr>,
    /// pcap: capture to read; mem: frames to cycle.
    #[serde(default)]
    pub pcap_rx: Option<PathBuf>,
    /// pcap: capture to write.
    #[serde(default)]
    pub pcap_tx: Option<PathBuf>,
    /// Queue count; must equal the worker count.
    #[serde(default)]
    pub queues: Option<u16>,
    /// AF_PACKET options.
    #[serde(default)]
    pub af_packet: Option<AfPacketConf>,
    /// The kernel interface (TAP) `lbd` creates for this port: the
    /// director's own traffic (ssh, BGP, health checks) goes through it
    /// (`dataplane::kernel`). Absent: none.
    #[serde(default)]
    pub kernel_if: Option<String>,
    /// Most frames per second the port hands to its kernel interface (all
    /// workers together); the excess is dropped and counted as
    /// `kernel_drop`. Absent: only the rings bound it.
    #[serde(default)]
    pub kernel_if_pps: Option<u64>,
    /// af_packet with `kernel_if`: `lbd` installs an nftables netdev
    /// ingress chain dropping the port's frames for the physical
    /// interface's kernel stack (AF_PACKET still sees them), removed on
    /// exit. `false`: the operator does it. Default: true.
    #[serde(default)]
    pub kernel_if_guard: Option<bool>,
    /// af_packet with `kernel_if`: the director's own TCP/UDP (to the
    /// port's addresses, not a VIP or local address) is read by the kernel
    /// path's own socket and never reaches a worker
    /// (`driver::af_packet::local`). `false`: the workers hand it up, as
    /// on the other drivers. Default: true.
    #[serde(default)]
    pub kernel_if_steer: Option<bool>,
}

impl PortSpec {
    /// The interface name (tap, af_packet).
    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or(&self.name)
    }

    /// The DPDK device (dpdk).
    pub fn device(&self) -> &str {
        self.device.as_deref().unwrap_or(&self.name)
    }

    /// What `dataplane::ports` opens for this port.
    pub fn setup(&self) -> PortSetup {
        let mac = self.mac.map(|m| m.0 .0);
        let device = match self.driver {
            DriverKind::Mem => Device::Mem {
                frames: self.pcap_rx.clone(),
                mac: Config::default_mac(self).0,
            },
            DriverKind::Pcap => Device::Pcap {
                rx: self.pcap_rx.clone(),
                tx: self.pcap_tx.clone(),
                mac: Config::default_mac(self).0,
            },
            DriverKind::Tap => Device::Tap {
                ifname: self.ifname().to_string(),
                mac,
            },
            DriverKind::AfPacket => {
                let mut options = AfPacketOptions {
                    mac,
                    ..AfPacketOptions::default()
                };
                if let Some(a) = &self.af_packet {
                    options.block_size = a.block_size.unwrap_or(options.block_size);
                    options.block_count = a.block_count.unwrap_or(options.block_count);
                    options.frame_size = a.frame_size.unwrap_or(options.frame_size);
                    options.block_timeout_ms =
                        a.block_timeout_ms.unwrap_or(options.block_timeout_ms);
                    options.qdisc_bypass = a.qdisc_bypass.unwrap_or(options.qdisc_bypass);
                    options.fanout_group_id = a.fanout_group_id.or(options.fanout_group_id);
                    if let Some(v) = a.tpacket {
                        options.tpacket = match v {
                            TpacketConf::V2 => Tpacket::V2,
                            TpacketConf::V3 => Tpacket::V3,
                        };
                    }
                    if let Some(mode) = a.tx_mode {
                        options.tx_mode = match mode {
                            TxModeConf::Sendmmsg => TxMode::Sendmmsg,
                            TxModeConf::Ring => TxMode::Ring,
                        };
                    }
                }
                Device::AfPacket {
                    ifname: self.ifname().to_string(),
                    options,
                }
            }
            DriverKind::Dpdk => Device::Dpdk {
                device: self.device().to_string(),
            },
        };
        PortSetup {
            name: self.name.clone(),
            mtu: Some(self.mtu),
            device,
        }
    }
}

/// `dpdk:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkConf {
    /// EAL arguments (no program name).
    #[serde(default)]
    pub eal_args: Vec<String>,
}

/// `metrics:` — the Prometheus exporter (off unless `listen` is set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConf {
    /// `ADDR:PORT` the exporter serves `/metrics` on.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

/// `routes[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Destination network.
    pub prefix: Cidr,
    /// Next hop (none: connected).
    #[serde(default)]
    pub via: Option<Ip>,
    /// Egress port.
    pub port: PortRef,
}

/// `neighbours[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighSpec {
    /// Address.
    pub addr: Ip,
    /// Its MAC.
    pub mac: Mac,
    /// Port it is reached on.
    pub port: PortRef,
}

/// `timeouts:` (0 = IPVS's default).
///
/// The YAML form of the protocol's [`Timeouts`] (same fields, same
/// meaning), kept as its own type because here every field may be left
/// out, while the control protocol requires all three; [`From`] maps it
/// field by field (a destructuring, so the two cannot drift apart
/// silently), and `timeouts_conf_reads_what_the_protocol_writes` checks
/// that each reads the other's form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConf {
    /// TCP ESTABLISHED.
    #[serde(default)]
    pub tcp: u32,
    /// TCP FIN_WAIT.
    #[serde(default)]
    pub tcpfin: u32,
    /// UDP.
    #[serde(default)]
    pub udp: u32,
}

impl From<TimeoutsConf> for Timeouts {
    fn from(conf: TimeoutsConf) -> Timeouts {
        let TimeoutsConf { tcp, tcpfin, udp } = conf;
        Timeouts { tcp, tcpfin, udp }
    }
}

/// `settings:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsConf {
    /// `expire_nodest_conn` (default true).
    #[serde(default)]
    pub expire_nodest_conn: Option<bool>,
    /// `expire_quiescent_template` (default false).
    #[serde(default)]
    pub expire_quiescent_template: Option<bool>,
    /// FULLNAT local port range (default 1025-65535).
    #[serde(default)]
    pub lport_range: Option<PortRange>,
    /// Table occupancy in percent above which services that can be proxied
    /// answer SYNs with cookies (default 0 = never).
    #[serde(default)]
    pub synproxy_auto_percent: Option<u8>,
    /// IPVS's `drop_entry`: 0 off (default), 1 auto, 2 on, 3 always.
    #[serde(default)]
    pub drop_entry: Option<u8>,
    /// IPVS's `drop_packet`: 0 off (default), 1 auto, 2 on, 3 always.
    #[serde(default)]
    pub drop_packet: Option<u8>,
    /// IPVS's `am_droprate` (default 10).
    #[serde(default)]
    pub am_droprate: Option<u32>,
    /// Table occupancy in percent above which memory counts as low for
    /// `drop_entry` / `drop_packet` (default 90).
    #[serde(default)]
    pub defense_percent: Option<u8>,
    /// IPVS's `sloppy_tcp` (default false): schedule a TCP segment without
    /// SYN (and without RST) that matches no connection.
    #[serde(default)]
    pub sloppy_tcp: Option<bool>,
}

fn default_scheduler() -> String {
    crate::sched::DEFAULT_SCHEDULER.to_string()
}

/// `services[].dests[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestConf {
    /// Address.
    pub addr: Ip,
    /// Port (default: the service port).
    #[serde(default)]
    pub port: Option<u16>,
    /// Forwarding method (default route, as ipvsadm's `-g`).
    #[serde(default = "default_fwd")]
    pub fwd: Fwd,
    /// Weight (default 1).
    #[serde(default)]
    pub weight: Weight,
    /// Upper threshold.
    #[serde(default)]
    pub u_threshold: Threshold,
    /// Lower threshold.
    #[serde(default)]
    pub l_threshold: Threshold,
    /// Health checkers (keepalived's `real_server` checkers; see
    /// `crate::health::conf`), and the real server's checker keywords.
    #[serde(default)]
    pub checks: Vec<crate::health::conf::CheckConf>,
    /// Dead: weight 0 instead of removal (overrides the service's).
    #[serde(default)]
    pub inhibit_on_failure: Option<bool>,
    /// Run when the server comes up.
    #[serde(default)]
    pub notify_up: Option<String>,
    /// Run when the server goes down.
    #[serde(default)]
    pub notify_down: Option<String>,
    /// Start down until the first success (overrides the service's).
    #[serde(default)]
    pub alpha: Option<bool>,
    /// Checker timing overrides.
    #[serde(default)]
    pub delay_loop: Option<crate::health::conf::Secs>,
    /// Checker timing overrides.
    #[serde(default)]
    pub connect_timeout: Option<crate::health::conf::Secs>,
    /// Checker timing overrides.
    #[serde(default)]
    pub retry: Option<u32>,
    /// Checker timing overrides.
    #[serde(default)]
    pub delay_before_retry: Option<crate::health::conf::Secs>,
    /// Checker timing overrides.
    #[serde(default)]
    pub warmup: Option<crate::health::conf::Secs>,
    /// HTTP `Host:` for its checkers.
    #[serde(default)]
    pub virtualhost: Option<String>,
    /// rvs flap damping: consecutive successes to come up (default 1).
    #[serde(default)]
    pub rise: Option<u32>,
    /// rvs flap damping: consecutive failures to go down (at least retry + 1).
    #[serde(default)]
    pub fall: Option<u32>,
}

fn default_fwd() -> Fwd {
    Fwd::Dr
}

/// The YAML defaults, with the unspecified address (callers that build a
/// dest in code set `addr` and use `..DestConf::default()` for the rest).
impl Default for DestConf {
    fn default() -> Self {
        DestConf {
            addr: Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: None,
            fwd: default_fwd(),
            weight: Weight::default(),
            u_threshold: Threshold::default(),
            l_threshold: Threshold::default(),
            checks: Vec::new(),
            inhibit_on_failure: None,
            notify_up: None,
            notify_down: None,
            alpha: None,
            delay_loop: None,
            connect_timeout: None,
            retry: None,
            delay_before_retry: None,
            warmup: None,
            virtualhost: None,
            rise: None,
            fall: None,
        }
    }
}

/// `services[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConf {
    /// Protocol.
    pub proto: Proto,
    /// Virtual address.
    pub vip: Ip,
    /// Virtual port.
    pub port: u16,
    /// Scheduler (default wlc).
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    /// Scheduler flags.
    #[serde(default)]
    pub sched_flags: Vec<String>,
    /// Persistence timeout in seconds.
    #[serde(default)]
    pub persistent: Option<u32>,
    /// Persistence netmask.
    #[serde(default)]
    pub netmask: Option<NetmaskConf>,
    /// One-packet scheduling.
    #[serde(default)]
    pub ops: bool,
    /// SYN proxy.
    #[serde(default)]
    pub synproxy: bool,
    /// This service's `sloppy_tcp` (default: `settings.sloppy_tcp`).
    #[serde(default)]
    pub sloppy_tcp: Option<bool>,
    /// FULLNAT local addresses.
    #[serde(default)]
    pub laddrs: Vec<LaddrConf>,
    /// Real servers.
    #[serde(default)]
    pub dests: Vec<DestConf>,
    /// keepalived's virtual_server checker defaults (see `crate::health::conf`).
    #[serde(default)]
    pub delay_loop: Option<crate::health::conf::Secs>,
    /// Checker default.
    #[serde(default)]
    pub connect_timeout: Option<crate::health::conf::Secs>,
    /// Checker default.
    #[serde(default)]
    pub retry: Option<u32>,
    /// Checker default.
    #[serde(default)]
    pub delay_before_retry: Option<crate::health::conf::Secs>,
    /// Checker default.
    #[serde(default)]
    pub warmup: Option<crate::health::conf::Secs>,
    /// HTTP `Host:` for its checkers.
    #[serde(default)]
    pub virtualhost: Option<String>,
    /// Real servers start down until their first success.
    #[serde(default)]
    pub alpha: bool,
    /// Run `quorum_down` and `notify_down` on shutdown.
    #[serde(default)]
    pub omega: bool,
    /// Dead real servers get weight 0 instead of removal.
    #[serde(default)]
    pub inhibit_on_failure: bool,
    /// Weight sum of alive real servers needed (default 1).
    #[serde(default)]
    pub quorum: Option<u32>,
    /// Hysteresis around the quorum (default 0).
    #[serde(default)]
    pub hysteresis: Option<u32>,
    /// Run when the quorum is gained.
    #[serde(default)]
    pub quorum_up: Option<String>,
    /// Run when the quorum is lost.
    #[serde(default)]
    pub quorum_down: Option<String>,
    /// Takes the service while the quorum is lost.
    #[serde(default)]
    pub sorry_server: Option<SorryConf>,
}

/// `services[].sorry_server` (keepalived's `sorry_server IP [PORT]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SorryConf {
    /// Address.
    pub addr: Ip,
    /// Port (default: the service port).
    #[serde(default)]
    pub port: Option<u16>,
    /// Forwarding method (keepalived's `sorry_server_lvs_method`).
    #[serde(default = "default_fwd")]
    pub fwd: Fwd,
}

/// The YAML defaults, TCP on the unspecified address port 0 (callers that
/// build a service in code set those and use `..ServiceConf::default()`).
impl Default for ServiceConf {
    fn default() -> Self {
        ServiceConf {
            proto: Proto::Tcp,
            vip: Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: 0,
            scheduler: default_scheduler(),
            sched_flags: Vec::new(),
            persistent: None,
            netmask: None,
            ops: false,
            synproxy: false,
            sloppy_tcp: None,
            laddrs: Vec::new(),
            dests: Vec::new(),
            delay_loop: None,
            connect_timeout: None,
            retry: None,
            delay_before_retry: None,
            warmup: None,
            virtualhost: None,
            alpha: false,
            omega: false,
            inhibit_on_failure: false,
            quorum: None,
            hysteresis: None,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
        }
    }
}

impl ServiceConf {
    /// The service's identity.
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            proto: self.proto,
            addr: self.vip.0,
            port: self.port,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Control socket path.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Workers.
    #[serde(default)]
    pub workers: WorkersConf,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// DPDK EAL.
    #[serde(default)]
    pub dpdk: Option<DpdkConf>,
    /// Static routes.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Static neighbours.
    #[serde(default)]
    pub neighbours: Vec<NeighSpec>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Option<TimeoutsConf>,
    /// Settings.
    #[serde(default)]
    pub settings: SettingsConf,
    /// Services.
    #[serde(default)]
    pub services: Vec<ServiceConf>,
    /// Prometheus exporter.
    #[serde(default)]
    pub metrics: MetricsConf,
    /// VRRP instances (keepalived's `vrrp_instance` keywords).
    #[serde(default)]
    pub vrrp: crate::vrrp::conf::VrrpConf,
    /// Connection sync daemons started with lbd (`crate::sync::conf`).
    #[serde(default)]
    pub sync: Vec<crate::sync::conf::SyncConf>,
    /// Route announcement to a routing daemon (`crate::announce`): the
    /// VIPs this director can serve, as a BIRD include.
    #[serde(default)]
    pub announce: Option<crate::announce::conf::AnnounceConf>,
}

/// A locally administered MAC derived from a port name (FNV-1a), for ports
/// without a configured one whose driver has no MAC of its own.
pub fn derived_mac(name: &str) -> EthernetAddress {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    EthernetAddress([0x02, b[3], b[4], b[5], b[6], b[7]])
}

impl Config {
    /// Parses and validates a configuration text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        // Pass 1: the port names. Pass 2: everything, with port references
        // checked against them (so a bad reference names its line).
        let first: Config = serde_yaml_ng::from_str(text)?;
        let names = first.ports.iter().map(|p| p.name.clone()).collect();
        let config: Config = {
            let _known = KnownPorts::set(names);
            serde_yaml_ng::from_str(text)?
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text)
    }

    /// Overrides `workers.count` (lbd `--workers`) and re-validates.
    pub fn set_workers(&mut self, count: u16) -> Result<(), ConfigError> {
        self.workers.count = Some(count);
        self.validate()
    }

    /// Number of workers lbd runs: 0 without ports, else `workers.count`,
    /// else the number of `cores`, else 1.
    pub fn worker_count(&self) -> u16 {
        if self.ports.is_empty() {
            return 0;
        }
        self.workers
            .count
            .or_else(|| {
                (!self.workers.cores.is_empty())
                    .then(|| u16::try_from(self.workers.cores.len()).unwrap_or(u16::MAX))
            })
            .unwrap_or(1)
    }

    /// The core of each worker (`None`: not pinned).
    pub fn cores(&self) -> Vec<Option<usize>> {
        (0..usize::from(self.worker_count()))
            .map(|i| self.workers.cores.get(i).copied())
            .collect()
    }

    /// Worker settings (index and count are filled in by the runtime).
    pub fn worker_config(&self) -> WorkerConfig {
        let base = WorkerConfig::default();
        let w = &self.workers;
        WorkerConfig {
            workers: self.worker_count().max(1),
            conn_capacity: w.conn_capacity.unwrap_or(base.conn_capacity),
            tx_flush: w
                .tx_flush_us
                .map(Duration::from_micros)
                .unwrap_or(base.tx_flush),
            idle: match w.idle {
                IdleMode::Busy => IdlePolicy::BusyPoll,
                IdleMode::Backoff => IdlePolicy::Backoff {
                    after: w.idle_after.unwrap_or(64),
                    sleep: Duration::from_micros(w.idle_sleep_us.unwrap_or(50)),
                },
            },
            ..base
        }
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        let d = Settings::default();
        Settings {
            expire_nodest_conn: self
                .settings
                .expire_nodest_conn
                .unwrap_or(d.expire_nodest_conn),
            expire_quiescent_template: self
                .settings
                .expire_quiescent_template
                .unwrap_or(d.expire_quiescent_template),
            lport_range: self
                .settings
                .lport_range
                .map(|r| (r.0, r.1))
                .unwrap_or(d.lport_range),
            synproxy_auto_percent: self
                .settings
                .synproxy_auto_percent
                .unwrap_or(d.synproxy_auto_percent),
            drop_entry: self.settings.drop_entry.unwrap_or(d.drop_entry),
            drop_packet: self.settings.drop_packet.unwrap_or(d.drop_packet),
            am_droprate: self.settings.am_droprate.unwrap_or(d.am_droprate),
            defense_percent: self.settings.defense_percent.unwrap_or(d.defense_percent),
            sloppy_tcp: self.settings.sloppy_tcp.unwrap_or(d.sloppy_tcp),
        }
    }

    /// The MAC a port gets when its driver is not asked: the configured
    /// one, else one derived from its name (tap: from its interface name,
    /// as the TAP driver does).
    pub fn default_mac(port: &PortSpec) -> EthernetAddress {
        match (port.mac, port.driver) {
            (Some(mac), _) => mac.0,
            (None, DriverKind::Tap) => derived_mac(port.ifname()),
            (None, _) => derived_mac(&port.name),
        }
    }

    fn port_index(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// The topology for `workers` workers, with each port's MAC taken from
    /// `macs` (the opened devices', in port order) or, when `macs` is
    /// shorter, [`Config::default_mac`].
    pub fn topology(
        &self,
        workers: u16,
        macs: &[EthernetAddress],
    ) -> Result<Topology, ConfigError> {
        let ports = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortConf {
                name: p.name.clone(),
                mac: macs
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| Config::default_mac(p)),
                mtu: p.mtu,
                addrs: p.addrs.iter().map(|c| (c.addr, c.len)).collect(),
                rss: None,
            })
            .collect();
        let mut routes = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let port = self.port_index(&r.port.0).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "routes[{i}].port: port {:?} is not defined in `ports`",
                    r.port.0
                ))
            })?;
            routes.push(Route {
                prefix: r.prefix.addr,
                len: r.prefix.len,
                port,
                via: r.via.map(|v| v.0),
            });
        }
        let mut neighbours = Vec::new();
        for (i, n) in self.neighbours.iter().enumerate() {
            let port = self.port_index(&n.port.0).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "neighbours[{i}].port: port {:?} is not defined in `ports`",
                    n.port.0
                ))
            })?;
            neighbours.push(NeighUpdate {
                addr: n.addr.0,
                mac: n.mac.0,
                port,
            });
        }
        Ok(Topology {
            workers,
            ports,
            routes,
            neighbours,
        })
    }

    /// The requests that build the configured tables, each with the item
    /// it comes from: `--set` for `timeouts`, then per service `-A`, its
    /// local addresses (`-P`) and its real servers (`-a`).
    pub fn requests(&self) -> Result<Vec<(String, Request)>, ConfigError> {
        let mut out = Vec::new();
        if let Some(t) = self.timeouts {
            out.push((
                "timeouts".to_string(),
                Request::SetTimeouts {
                    timeouts: Timeouts::from(t),
                },
            ));
        }
        for (i, s) in self.services.iter().enumerate() {
            let key = s.key();
            let what = format!("services[{i}] ({key})");
            let netmask = match (s.netmask, key.addr) {
                (None, addr) => Netmask::host_for(&addr),
                (Some(NetmaskConf::Dotted(m)), IpAddr::V4(_)) => Netmask::V4(m),
                (Some(NetmaskConf::Prefix(p)), IpAddr::V4(_)) if p <= 32 => {
                    let bits = if p == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(p))
                    };
                    Netmask::V4(Ipv4Addr::from(bits))
                }
                (Some(NetmaskConf::Prefix(p)), IpAddr::V6(_)) => Netmask::V6(p),
                (Some(other), _) => {
                    return Err(ConfigError::Invalid(format!(
                        "{what}.netmask: {other:?} does not fit a service address {}",
                        key.addr
                    )))
                }
            };
            out.push((
                what.clone(),
                Request::AddService {
                    service: ServiceSpec {
                        key,
                        scheduler: s.scheduler.clone(),
                        sched_flags: s.sched_flags.clone(),
                        persistent: s.persistent,
                        netmask,
                        ops: s.ops,
                        pe: None,
                        synproxy: s.synproxy,
                        sloppy_tcp: s.sloppy_tcp,
                    },
                },
            ));
            for (j, l) in s.laddrs.iter().enumerate() {
                out.push((
                    format!("services[{i}].laddrs[{j}] ({})", l.addr),
                    Request::AddLaddr {
                        laddr: LaddrSpec {
                            service: key,
                            addr: l.addr,
                            ifname: l.ifname.clone(),
                        },
                    },
                ));
            }
            for (j, d) in s.dests.iter().enumerate() {
                let port = d.port.unwrap_or(key.port);
                out.push((
                    format!(
                        "services[{i}].dests[{j}] ({})",
                        std::net::SocketAddr::new(d.addr.0, port)
                    ),
                    Request::AddDest {
                        service: key,
                        dest: DestSpec {
                            addr: d.addr.0,
                            port,
                            fwd: d.fwd,
                            weight: d.weight.0,
                            u_threshold: d.u_threshold.0,
                            l_threshold: d.l_threshold.0,
                            tun_type: TunType::Ipip,
                        },
                    },
                ));
            }
        }
        Ok(out)
    }

    /// The start-up state: `topology` with the configured settings, then
    /// every [`Config::requests`] applied in order. The generation is left
    /// at 1 when anything was configured.
    pub fn control_state(&self, topology: Topology) -> Result<ControlState, ConfigError> {
        let mut state =
            ControlState::new(topology, self.settings()).map_err(|source| ConfigError::Apply {
                what: "ports/routes/neighbours".to_string(),
                source,
            })?;
        let (labels, requests): (Vec<String>, Vec<Request>) = self.requests()?.into_iter().unzip();
        if requests.is_empty() {
            return Ok(state);
        }
        // One batch: all or nothing, and one generation for the whole file.
        match state.apply(&Request::Batch { requests }) {
            Ok(_) => Ok(state),
            Err(ApplyError::InBatch { index, source, .. }) => Err(ConfigError::Apply {
                what: labels
                    .get(index.saturating_sub(1))
                    .cloned()
                    .unwrap_or_else(|| format!("request {index}")),
                source: *source,
            }),
            Err(source) => Err(ConfigError::Apply {
                what: "configuration".to_string(),
                source,
            }),
        }
    }

    /// `lbd --check-config`: everything lbd checks before opening devices.
    pub fn check(&self) -> Result<ControlState, ConfigError> {
        self.check_cores()?;
        let topology = self.topology(self.worker_count(), &[])?;
        self.control_state(topology)
    }

    /// Checks that every configured core exists and is allowed to this
    /// process (what the runtime checks at start, for `--check-config`).
    pub fn check_cores(&self) -> Result<(), ConfigError> {
        let allowed: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect();
        for (i, c) in self.workers.cores.iter().enumerate() {
            if !allowed.contains(c) {
                return Err(ConfigError::Invalid(format!(
                    "workers.cores[{i}]: core {c} does not exist or is not allowed to this process (allowed: {allowed:?})"
                )));
            }
        }
        Ok(())
    }

    /// Cross-field checks (the parser checked each value).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let workers = self.worker_count();
        if let Err(e) = crate::sync::conf::validate_all(&self.sync) {
            return bad(format!("sync: {e}"));
        }
        if let Some(Err(e)) = self.announce.as_ref().map(|a| a.validate()) {
            return bad(format!("announce: {e}"));
        }
        for name in self.sync.iter().filter_map(|c| c.vrrp_instance.as_ref()) {
            if !self.vrrp.instances.iter().any(|i| &i.name == name) {
                return bad(format!(
                    "sync: vrrp_instance {name} is not an instance of the vrrp: section"
                ));
            }
        }
        if let Some(path) = &self.socket {
            let len = path.as_os_str().len();
            if len == 0 || len > SOCKET_PATH_MAX {
                return bad(format!(
                    "socket: {} is {len} bytes; a Unix socket path has 1..={SOCKET_PATH_MAX}",
                    path.display()
                ));
            }
        }
        if let Some(us) = self.workers.idle_sleep_us {
            if us == 0 || us > IDLE_SLEEP_MAX_US {
                return bad(format!(
                    "workers.idle_sleep_us: {us} out of range 1..={IDLE_SLEEP_MAX_US}"
                ));
            }
        }
        if let Some(n) = self.workers.kernel_ring {
            let max = crate::dataplane::kernel::UP_SLOTS;
            if !(8..=max as u32).contains(&n) {
                return bad(format!("workers.kernel_ring: {n} out of range 8..={max}"));
            }
        }
        if let Some(us) = self.workers.tx_flush_us {
            if us > TX_FLUSH_MAX_US {
                return bad(format!(
                    "workers.tx_flush_us: {us} out of range 0..={TX_FLUSH_MAX_US}"
                ));
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            let what = format!("ports[{i}] ({})", p.name);
            if p.name.is_empty() {
                return bad(format!("ports[{i}].name: empty"));
            }
            if let Err(e) = check_port_name(&p.name) {
                return bad(format!("ports[{i}].name: {e}"));
            }
            if self.ports[..i].iter().any(|q| q.name == p.name) {
                return bad(format!("{what}: the name {:?} is used twice", p.name));
            }
            if !(MTU_RANGE.0..=MTU_RANGE.1).contains(&p.mtu) {
                return bad(format!(
                    "{what}.mtu: {} out of range {}..={}",
                    p.mtu, MTU_RANGE.0, MTU_RANGE.1
                ));
            }
            if let Some(mac) = &p.mac {
                if let Err(e) = check_unicast_mac(&mac.0) {
                    return bad(format!("{what}.mac: {e}"));
                }
            }
            if matches!(p.driver, DriverKind::Tap | DriverKind::AfPacket) {
                if let Err(e) = check_ifname(p.ifname()) {
                    return bad(format!("{what}.ifname: {e}"));
                }
                if let Some(q) = self.ports[..i].iter().find(|q| {
                    matches!(q.driver, DriverKind::Tap | DriverKind::AfPacket)
                        && q.ifname() == p.ifname()
                }) {
                    return bad(format!(
                        "{what}: interface {:?} is already port {:?} (one port per interface)",
                        p.ifname(),
                        q.name
                    ));
                }
            }
            if p.driver != DriverKind::Dpdk && p.mtu > SOFTWARE_MTU_MAX {
                return bad(format!(
                    "{what}.mtu: {} is more than the {} driver carries (at most {SOFTWARE_MTU_MAX}; jumbo frames need the dpdk driver)",
                    p.mtu,
                    p.driver.name()
                ));
            }
            if let (
                DriverKind::AfPacket,
                PortSetup {
                    device: Device::AfPacket { ifname, options },
                    ..
                },
            ) = (p.driver, p.setup())
            {
                if let Err(e) =
                    crate::dataplane::driver::af_packet::check_options(&ifname, &options)
                {
                    return bad(format!("{what}.af_packet: {e}"));
                }
            }
            if let Some(q) = p.queues {
                if q != workers {
                    return bad(format!(
                        "{what}.queues: {q}, but there are {workers} workers (each worker owns one queue of every port)"
                    ));
                }
            }
            let allowed: &[&str] = match p.driver {
                DriverKind::Mem => &["pcap_rx"],
                DriverKind::Pcap => &["pcap_rx", "pcap_tx"],
                DriverKind::Tap => &["ifname"],
                DriverKind::AfPacket => &["ifname", "af_packet"],
                DriverKind::Dpdk => &["device"],
            };
            for (field, set) in [
                ("ifname", p.ifname.is_some()),
                ("device", p.device.is_some()),
                ("pcap_rx", p.pcap_rx.is_some()),
                ("pcap_tx", p.pcap_tx.is_some()),
                ("af_packet", p.af_packet.is_some()),
            ] {
                if set && !allowed.contains(&field) {
                    return bad(format!(
                        "{what}.{field}: not an option of the {} driver",
                        p.driver.name()
                    ));
                }
            }
            if p.kernel_if_pps.is_some() && p.kernel_if.is_none() {
                return bad(format!("{what}.kernel_if_pps: the port has no kernel_if"));
            }
            if p.kernel_if_guard.is_some() && p.kernel_if.is_none() {
                return bad(format!("{what}.kernel_if_guard: the port has no kernel_if"));
            }
            if p.kernel_if_steer.is_some() && p.kernel_if.is_none() {
                return bad(format!("{what}.kernel_if_steer: the port has no kernel_if"));
            }
            if p.kernel_if_pps == Some(0) {
                return bad(format!(
                    "{what}.kernel_if_pps: 0 (leave it out for no limit)"
                ));
            }
            if let Some(k) = &p.kernel_if {
                if let Err(e) = crate::dataplane::kernel::validate_ifname(k) {
                    return bad(format!("{what}.kernel_if: {e}"));
                }
                if let Some(q) = self.ports[..i]
                    .iter()
                    .find(|q| q.kernel_if.as_deref() == Some(k.as_str()))
                {
                    return bad(format!(
                        "{what}.kernel_if: {k:?} is also the kernel interface of port {}",
                        q.name
                    ));
                }
                if matches!(p.driver, DriverKind::Tap | DriverKind::AfPacket) && p.ifname() == k {
                    return bad(format!(
                        "{what}.kernel_if: {k:?} is the port's own interface"
                    ));
                }
            }
            if p.driver == DriverKind::Pcap && workers > 1 {
                return bad(format!(
                    "{what}: the pcap driver has one queue, so workers.count must be 1 (it is {workers})"
                ));
            }
        }
        let dpdk_ports = self
            .ports
            .iter()
            .filter(|p| p.driver == DriverKind::Dpdk)
            .count();
        if dpdk_ports > 0 && dpdk_ports != self.ports.len() {
            return bad(
                "ports: dpdk ports cannot be mixed with other drivers (their buffers differ)"
                    .to_string(),
            );
        }
        if self.dpdk.is_some() && dpdk_ports == 0 {
            return bad("dpdk: given, but no port uses the dpdk driver".to_string());
        }
        if !self.ports.is_empty() {
            if self.workers.count == Some(0) {
                return bad(
                    "workers.count: must be at least 1 when ports are configured".to_string(),
                );
            }
            if !self.workers.cores.is_empty() && self.workers.cores.len() < usize::from(workers) {
                return bad(format!(
                    "workers.cores: {} cores for {workers} workers",
                    self.workers.cores.len()
                ));
            }
        }
        if let Some(c) = self.workers.conn_capacity {
            if c == 0 || c > MAX_CAPACITY {
                return bad(format!(
                    "workers.conn_capacity: {c} out of range 1..={MAX_CAPACITY}"
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if self.port_index(&r.port.0).is_none() {
                return bad(format!(
                    "routes[{i}].port: port {:?} is not defined in `ports`",
                    r.port.0
                ));
            }
            if let Some(via) = r.via {
                if via.0.is_ipv4() != r.prefix.addr.is_ipv4() {
                    return bad(format!(
                        "routes[{i}].via: {} is not of the family of {}/{}",
                        via.0, r.prefix.addr, r.prefix.len
                    ));
                }
            }
        }
        for (i, n) in self.neighbours.iter().enumerate() {
            if self.port_index(&n.port.0).is_none() {
                return bad(format!(
                    "neighbours[{i}].port: port {:?} is not defined in `ports`",
                    n.port.0
                ));
            }
            if let Err(e) = check_unicast_mac(&n.mac.0) {
                return bad(format!("neighbours[{i}].mac: {e}"));
            }
        }
        self.vrrp_instances()?;
        for (i, svc) in self.services.iter().enumerate() {
            for (j, d) in svc.dests.iter().enumerate() {
                for (k, c) in d.checks.iter().enumerate() {
                    if let Err(e) = c.validate() {
                        return bad(format!("services[{i}].dests[{j}].checks[{k}]: {e}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The VRRP instances, checked against the ports and resolved.
    pub fn vrrp_instances(&self) -> Result<Vec<crate::vrrp::conf::InstanceSpec>, ConfigError> {
        let ports: Vec<crate::vrrp::conf::PortInfo> = self
            .ports
            .iter()
            .map(|p| crate::vrrp::conf::PortInfo {
                name: p.name.clone(),
                kernel_if: p.kernel_if.clone(),
                addrs: p.addrs.iter().map(|c| c.addr).collect(),
                linux_if: matches!(p.driver, DriverKind::AfPacket | DriverKind::Tap)
                    .then(|| p.ifname().to_string()),
            })
            .collect();
        self.vrrp
            .resolve(&ports)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
socket: /tmp/rvs-test.sock
workers:
  count: 1
  cores: [0]
  conn_capacity: 65536
  idle: backoff
  idle_sleep_us: 100
  tx_flush_us: 50
ports:
  - name: ext
    driver: pcap
    mac: "02:00:00:00:00:01"
    addrs: ["10.0.0.254/24", "2001:db8::fe/64"]
    pcap_rx: in.pcap
    pcap_tx: out.pcap
  - name: int
    driver: mem
    mtu: 2000
    addrs: ["192.168.10.254/24"]
routes:
  - {prefix: "0.0.0.0/0", via: 10.0.0.1, port: ext}
neighbours:
  - {addr: 10.0.0.1, mac: "02:00:00:00:00:fe", port: ext}
timeouts: {tcp: 600, tcpfin: 0, udp: 60}
settings:
  expire_quiescent_template: true
  lport_range: "5000-6000"
services:
  - proto: tcp
    vip: 10.0.0.1
    port: 80
    scheduler: wrr
    persistent: 300
    netmask: 255.255.255.0
    dests:
      - {addr: 192.168.10.1, port: 8080, fwd: masq, weight: 3}
      - {addr: 192.168.10.2, fwd: route}
  - proto: udp
    vip: 10.0.0.1
    port: 53
    scheduler: mh
    sched_flags: [mh-port]
    ops: true
    laddrs:
      - 192.168.10.100
      - {addr: 192.168.10.101, ifname: int}
    dests:
      - {addr: 192.168.10.3, fwd: fullnat, u_threshold: 100, l_threshold: 10}
"#;

    #[test]
    fn kernel_if_is_a_checked_interface_name_and_its_rate_needs_it() {
        let port = |extra: &str| {
            format!(
                "ports:\n  - {{name: ext, driver: tap, ifname: ext0, addrs: [10.0.0.254/24]{extra}}}\n  - {{name: int, driver: tap, ifname: int0{extra2}}}\n",
                extra2 = if extra.contains("kext") { ", kernel_if: kint" } else { "" }
            )
        };
        let ok =
            Config::from_yaml(&port(", kernel_if: kext, kernel_if_pps: 5000")).expect("parses");
        ok.validate().expect("valid");
        assert_eq!(ok.ports[0].kernel_if.as_deref(), Some("kext"));
        assert_eq!(ok.ports[0].kernel_if_pps, Some(5000));
        for (extra, want) in [
            (
                ", kernel_if: \"a/b\"",
                "ports[0] (ext).kernel_if: bad interface name",
            ),
            (
                ", kernel_if: sixteen-chars-xx",
                "ports[0] (ext).kernel_if: bad interface name",
            ),
            (
                ", kernel_if: ext0",
                "ports[0] (ext).kernel_if: \"ext0\" is the port's own interface",
            ),
            (
                ", kernel_if_pps: 10",
                "ports[0] (ext).kernel_if_pps: the port has no kernel_if",
            ),
            (
                ", kernel_if: kx, kernel_if_pps: 0",
                "ports[0] (ext).kernel_if_pps: 0",
            ),
            (
                ", kernel_if_guard: false",
                "ports[0] (ext).kernel_if_guard: the port has no kernel_if",
            ),
            (
                ", kernel_if_steer: false",
                "ports[0] (ext).kernel_if_steer: the port has no kernel_if",
            ),
        ] {
            let err = Config::from_yaml(&port(extra))
                .and_then(|c| c.validate().map(|_| c))
                .expect_err(extra);
            assert!(err.to_string().starts_with(want), "{extra}: {err}");
        }
        let twice = "ports:\n  - {name: a, driver: tap, kernel_if: k0}\n  - {name: b, driver: tap, kernel_if: k0}\n";
        let err = Config::from_yaml(twice)
            .and_then(|c| c.validate().map(|_| c))
            .expect_err("twice");
        assert!(
            err.to_string()
                .contains("also the kernel interface of port a"),
            "{err}"
        );
    }

    #[test]
    fn a_full_file_builds_the_state_lbctl_would_build() {
        let config = Config::from_yaml(FULL).expect("valid");
        assert_eq!(config.worker_count(), 1);
        assert_eq!(config.cores(), vec![Some(0)]);
        let wc = config.worker_config();
        assert_eq!(wc.conn_capacity, 65536);
        assert_eq!(wc.tx_flush, Duration::from_micros(50));
        assert!(matches!(wc.idle, IdlePolicy::Backoff { .. }));
        assert_eq!(config.settings().lport_range, (5000, 6000));
        assert!(config.settings().expire_quiescent_template);
        let state = config.check().expect("applies");
        assert_eq!(state.generation(), 1);
        assert_eq!(
            state.timeouts(),
            Timeouts {
                tcp: 600,
                tcpfin: 120,
                udp: 60
            }
        );
        let svcs = state.services();
        assert_eq!(svcs.len(), 2);
        assert_eq!(svcs[0].spec.scheduler, "wrr");
        assert_eq!(
            svcs[0].spec.netmask,
            Netmask::V4(Ipv4Addr::new(255, 255, 255, 0))
        );
        assert_eq!(svcs[0].dests[0].spec.port, 8080);
        assert_eq!(svcs[0].dests[0].spec.weight, 3);
        assert_eq!(
            svcs[0].dests[1].spec.port, 80,
            "route takes the service port"
        );
        assert_eq!(svcs[1].laddrs.len(), 2);
        assert_eq!(svcs[1].laddrs[1].ifname.as_deref(), Some("int"));
        assert_eq!(svcs[1].dests[0].spec.fwd, Fwd::FullNat);
        assert_eq!(svcs[1].dests[0].spec.u_threshold, 100);
        let snap = state.snapshot().expect("snapshot");
        assert_eq!(snap.ports.len(), 2);
        assert_eq!(snap.ports[0].mac, EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(snap.ports[1].mtu, 2000);
        assert_eq!(snap.static_neigh.len(), 1);
        // 3 connected routes + the default route.
        assert_eq!(snap.routes.routes().len(), 4);
    }

    fn error_of(text: &str) -> String {
        match Config::from_yaml(text).and_then(|c| c.check().map(|_| ())) {
            Ok(()) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_checked_where_read() {
        assert_eq!(Config::from_yaml("{}").expect("empty").metrics.listen, None);
        let c = Config::from_yaml("metrics: {listen: \"127.0.0.1:9100\"}\n").expect("valid");
        assert_eq!(
            c.metrics.listen,
            Some("127.0.0.1:9100".parse().expect("addr"))
        );
        let e = error_of("metrics:\n  listen: 127.0.0.1\n");
        assert!(e.contains("metrics.listen") && e.contains("line 2"), "{e}");
        let e = error_of("metrics: {port: 9100}\n");
        assert!(e.contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn unknown_keys_name_the_field_and_line() {
        let e = error_of("services:\n  - proto: tcp\n    vip: 10.0.0.1\n    port: 80\n    dests:\n      - {addr: 192.168.10.1, wieght: 3}\n");
        assert!(e.contains("unknown field `wieght`"), "{e}");
        assert!(e.contains("services[0].dests[0]"), "{e}");
        assert!(e.contains("line 6"), "{e}");
        let e = error_of("workerz: {count: 1}\n");
        assert!(
            e.contains("unknown field `workerz`") && e.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_field_and_line() {
        let e = error_of("services:\n  - proto: tcp\n    vip: 10.0.0.300\n    port: 80\n");
        assert!(e.contains("services[0].vip"), "{e}");
        assert!(e.contains("invalid IP address \"10.0.0.300\""), "{e}");
        assert!(e.contains("line 3 column 10"), "{e}");
        let e = error_of("ports:\n  - name: eth0\n    driver: tap\n    mac: \"02:00:00:00:00\"\n");
        assert!(
            e.contains("ports[0].mac") && e.contains("invalid MAC address"),
            "{e}"
        );
        assert!(e.contains("line 4"), "{e}");
        let e = error_of(
            "services:\n  - proto: tcp\n    vip: 10.0.0.1\n    port: 80\n    dests:\n      - addr: 192.168.10.1\n        weight: 70000\n",
        );
        assert!(e.contains("services[0].dests[0].weight"), "{e}");
        assert!(e.contains("weight 70000 out of range 0..=65535"), "{e}");
        assert!(e.contains("line 7"), "{e}");
        let dest = "services:\n  - proto: tcp\n    vip: 10.0.0.1\n    port: 80\n    dests:\n      - addr: 192.168.10.1\n";
        let e = error_of(&format!("{dest}        weight: -3\n"));
        assert!(
            e.contains("invalid type: integer `-3`, expected a weight 0..=65535"),
            "{e}"
        );
        let e = error_of(&format!("{dest}        weight: heavy\n"));
        assert!(e.contains("expected a weight 0..=65535"), "{e}");
        let e = error_of(&format!("{dest}        u_threshold: 4294967296\n"));
        assert!(
            e.contains(&format!(
                "threshold 4294967296 out of range 0..={MAX_THRESHOLD}"
            )),
            "{e}"
        );
        let e = error_of(&format!("{dest}        l_threshold: -1\n"));
        assert!(
            e.contains("integer `-1`, expected a connection threshold 0..="),
            "{e}"
        );
        let e = error_of("ports:\n  - name: eth0\n    driver: vhost\n");
        assert!(
            e.contains("ports[0].driver") && e.contains("unknown variant `vhost`"),
            "{e}"
        );
        assert!(e.contains("line 3"), "{e}");
        let e = error_of("settings:\n  lport_range: \"6000-5000\"\n");
        assert!(
            e.contains("settings.lport_range") && e.contains("line 2"),
            "{e}"
        );
        let e = error_of("ports:\n  - name: eth0\n    driver: tap\n    addrs: [\"10.0.0.1/33\"]\n");
        assert!(
            e.contains("prefix length 33") && e.contains("line 4"),
            "{e}"
        );
    }

    #[test]
    fn ipvs_defense_settings_read_from_yaml_and_out_of_range_modes_are_refused() {
        let d = Config::from_yaml("settings: {}\n")
            .expect("empty")
            .settings();
        assert_eq!(
            (
                d.drop_entry,
                d.drop_packet,
                d.am_droprate,
                d.defense_percent
            ),
            (0, 0, 10, 90),
            "IPVS's defaults: off, am_droprate 10"
        );
        let s = Config::from_yaml(
            "settings:\n  drop_entry: 1\n  drop_packet: 3\n  am_droprate: 4\n  defense_percent: 75\n",
        )
        .expect("settings")
        .settings();
        assert_eq!(
            (
                s.drop_entry,
                s.drop_packet,
                s.am_droprate,
                s.defense_percent
            ),
            (1, 3, 4, 75)
        );
        let e = error_of("settings:\n  drop_packet: 4\n");
        assert!(e.contains("drop_packet 4 is not a mode"), "{e}");
        let e = error_of("settings:\n  drop_entry: 9\n");
        assert!(e.contains("drop_entry 9 is not a mode"), "{e}");
        let e = error_of("settings:\n  defense_percent: 100\n");
        assert!(e.contains("defense_percent 100 is outside 1..=99"), "{e}");
    }

    #[test]
    fn sloppy_tcp_is_off_by_default_and_read_globally_and_per_service() {
        let d = Config::from_yaml("settings: {}\n").expect("empty");
        assert!(!d.settings().sloppy_tcp, "IPVS's default: off");
        let c = Config::from_yaml(
            "settings:\n  sloppy_tcp: true\nservices:\n  - {proto: tcp, vip: 10.0.0.1, port: 80}\n  - {proto: tcp, vip: 10.0.0.1, port: 81, sloppy_tcp: false}\n",
        )
        .expect("sloppy_tcp");
        assert!(c.settings().sloppy_tcp);
        let own: Vec<Option<bool>> = c
            .requests()
            .expect("requests")
            .into_iter()
            .filter_map(|(_, r)| match r {
                Request::AddService { service } => Some(service.sloppy_tcp),
                _ => None,
            })
            .collect();
        assert_eq!(own, vec![None, Some(false)]);
    }

    #[test]
    fn a_route_to_an_undefined_port_names_it_and_its_line() {
        let e = error_of(
            "ports:\n  - {name: eth0, driver: tap}\nroutes:\n  - prefix: 0.0.0.0/0\n    via: 10.0.0.1\n    port: eth9\n",
        );
        assert!(e.contains("routes[0].port"), "{e}");
        assert!(e.contains("port \"eth9\" is not defined"), "{e}");
        assert!(e.contains("line 6"), "{e}");
        let e =
            error_of("neighbours:\n  - {addr: 10.0.0.1, mac: \"02:00:00:00:00:01\", port: eth0}\n");
        assert!(
            e.contains("neighbours[0].port") && e.contains("defined: none"),
            "{e}"
        );
    }

    #[test]
    fn services_follow_lbctls_rules() {
        let e = error_of(
            "services:\n  - {proto: tcp, vip: 10.0.0.1, port: 80}\n  - {proto: tcp, vip: 10.0.0.1, port: 80}\n",
        );
        assert_eq!(e, "services[1] (TCP 10.0.0.1:80): Service already exists");
        let e = error_of("services:\n  - {proto: tcp, vip: 10.0.0.1, port: 0}\n");
        assert!(
            e.contains("Zero port specified for non-persistent service"),
            "{e}"
        );
        let e = error_of(
            "services:\n  - proto: tcp\n    vip: 10.0.0.1\n    port: 80\n    scheduler: best\n",
        );
        assert!(
            e.contains("Scheduler or persistence engine not found"),
            "{e}"
        );
        let e = error_of(
            "services:\n  - proto: tcp\n    vip: 10.0.0.1\n    port: 80\n    dests:\n      - {addr: 192.168.10.1}\n      - {addr: 192.168.10.1}\n",
        );
        assert_eq!(
            e,
            "services[0].dests[1] (192.168.10.1:80): Destination already exists"
        );
    }

    #[test]
    fn cross_field_rules_name_the_item() {
        let e = error_of("workers: {count: 2}\nports:\n  - {name: cap, driver: pcap}\n");
        assert!(
            e.contains("ports[0] (cap)") && e.contains("one queue"),
            "{e}"
        );
        let e = error_of("ports:\n  - {name: t, driver: tap, device: x}\n");
        assert!(e.contains("ports[0] (t).device"), "{e}");
        let e = error_of("ports:\n  - {name: a, driver: tap}\n  - {name: a, driver: tap}\n");
        assert!(e.contains("used twice"), "{e}");
        let e = error_of("ports:\n  - {name: a, driver: dpdk}\n  - {name: b, driver: tap}\n");
        assert!(e.contains("cannot be mixed"), "{e}");
        let e = error_of("workers: {count: 0}\nports:\n  - {name: a, driver: tap}\n");
        assert!(e.contains("at least 1"), "{e}");
        let e = error_of(
            "services:\n  - proto: tcp\n    vip: 10.0.0.1\n    port: 80\n    persistent: 60\n    netmask: 255.255.0.0\n  - proto: tcp\n    vip: \"2001:db8::1\"\n    port: 80\n    persistent: 60\n    netmask: 255.255.0.0\n",
        );
        assert!(e.contains("services[1]") && e.contains("netmask"), "{e}");
    }

    #[test]
    fn check_config_refuses_what_lbd_cannot_run() {
        let long = "x".repeat(120);
        let cases: Vec<(String, &str)> = vec![
            ("ports:\n  - {name: a, driver: tap, mac: \"00:00:00:00:00:00\"}\n".into(), "all-zero"),
            ("ports:\n  - {name: a, driver: tap, mac: \"ff:ff:ff:ff:ff:ff\"}\n".into(), "broadcast"),
            ("ports:\n  - {name: a, driver: tap, mac: \"01:00:5e:00:00:01\"}\n".into(), "multicast"),
            ("ports:\n  - {name: a, driver: mem}\nneighbours:\n  - {addr: 10.0.0.1, mac: \"ff:ff:ff:ff:ff:ff\", port: a}\n".into(), "neighbours[0].mac"),
            ("ports:\n  - {name: a, driver: af_packet, af_packet: {block_size: 0}}\n".into(), "block_size"),
            ("ports:\n  - {name: a, driver: af_packet, af_packet: {block_count: 0}}\n".into(), "block_count"),
            ("ports:\n  - {name: a, driver: af_packet, af_packet: {frame_size: 0}}\n".into(), "frame_size"),
            ("ports:\n  - {name: a, driver: af_packet, af_packet: {block_timeout_ms: 0}}\n".into(), "block_timeout_ms"),
            ("ports:\n  - {name: a, driver: tap, ifname: sixteen-chars-xx}\n".into(), "interface name"),
            ("ports:\n  - {name: a, driver: af_packet, ifname: \"a b\"}\n".into(), "interface name"),
            ("ports:\n  - {name: a, driver: tap, ifname: e0}\n  - {name: b, driver: af_packet, ifname: e0}\n".into(), "one port per interface"),
            ("ports:\n  - {name: a, driver: tap}\n  - {name: b, driver: tap, ifname: a}\n".into(), "one port per interface"),
            ("ports:\n  - {name: \"a\\nb\", driver: mem}\n".into(), "not allowed"),
            (format!("ports:\n  - {{name: {long}, driver: mem}}\n"), "1..=32"),
            (format!("socket: /tmp/{long}\n"), "Unix socket path"),
            ("ports:\n  - {name: a, driver: tap, mtu: 9000}\n".into(), "jumbo"),
            ("ports:\n  - {name: a, driver: mem, mtu: 2031}\n".into(), "at most 2030"),
            ("workers: {idle: backoff, idle_sleep_us: 20000000}\n".into(), "idle_sleep_us"),
            ("workers: {tx_flush_us: 1000000000}\n".into(), "tx_flush_us"),
            ("workers: {kernel_ring: 4}\n".into(), "workers.kernel_ring: 4 out of range 8..=1024"),
        ];
        for (yaml, want) in &cases {
            let e = error_of(yaml);
            assert!(e.contains(want), "{yaml:?}: {e}");
        }
        // Cores are checked against this machine by --check-config.
        let config = Config::from_yaml(
            "workers: {count: 1, cores: [100000]}\nports:\n  - {name: a, driver: mem}\n",
        )
        .expect("parses");
        let Err(e) = config.check() else {
            panic!("core 100000 accepted")
        };
        let e = e.to_string();
        assert!(e.contains("core 100000 does not exist"), "{e}");
        // What the software drivers carry is still accepted.
        Config::from_yaml(
            "ports:\n  - {name: a, driver: tap, mtu: 2030, mac: \"02:00:00:00:00:01\"}\n",
        )
        .expect("largest software MTU");
    }

    #[test]
    fn an_empty_file_is_a_control_plane_only_daemon() {
        let config = Config::from_yaml("{}").expect("empty");
        assert_eq!(config.worker_count(), 0);
        let state = config.check().expect("state");
        assert_eq!(state.generation(), 0);
        assert!(state.services().is_empty());
        let mut config = Config::from_yaml("ports:\n  - {name: t, driver: tap}\n").expect("tap");
        assert_eq!(config.worker_count(), 1);
        config.set_workers(3).expect("override");
        assert_eq!(config.worker_count(), 3);
    }

    #[test]
    fn netmask_accepts_dotted_quads_and_prefix_lengths() {
        let c = Config::from_yaml(
            "services:\n  - {proto: tcp, vip: 10.0.0.1, port: 0, persistent: 60, netmask: 24}\n  - {proto: udp, vip: \"2001:db8::1\", port: 53, persistent: 60, netmask: 64}\n",
        )
        .expect("valid");
        let s = c.check().expect("state");
        assert_eq!(
            s.services()[0].spec.netmask,
            Netmask::V4(Ipv4Addr::new(255, 255, 255, 0))
        );
        assert_eq!(s.services()[1].spec.netmask, Netmask::V6(64));
    }

    #[test]
    fn timeouts_conf_reads_what_the_protocol_writes() {
        for (tcp, tcpfin, udp) in [(0, 0, 0), (900, 120, 300), (1, 0, u32::MAX)] {
            let wire = Timeouts { tcp, tcpfin, udp };
            let json = serde_json::to_string(&wire).expect("encode");
            let conf: TimeoutsConf = serde_yaml_ng::from_str(&json).expect("YAML reads JSON");
            assert_eq!(conf, TimeoutsConf { tcp, tcpfin, udp });
            assert_eq!(Timeouts::from(conf), wire);
        }
        // What only the configuration allows: fields left out are 0.
        let conf: TimeoutsConf = serde_yaml_ng::from_str("{udp: 60}").expect("partial");
        assert_eq!(
            Timeouts::from(conf),
            Timeouts {
                tcp: 0,
                tcpfin: 0,
                udp: 60
            }
        );
        assert!(serde_json::from_str::<Timeouts>(r#"{"udp":60}"#).is_err());
    }

    #[test]
    fn af_packet_tpacket_version_is_read_and_defaults_to_v2() {
        let text = |extra: &str| {
            format!("ports:\n  - {{name: a, driver: af_packet, ifname: e0{extra}}}\n")
        };
        let options = |t: &str| match Config::from_yaml(t).expect("parses").ports[0]
            .setup()
            .device
        {
            Device::AfPacket { options, .. } => options,
            other => panic!("{other:?}"),
        };
        assert_eq!(options(&text("")).tpacket, Tpacket::V2);
        let v3 = options(&text(", af_packet: {tpacket: v3, block_timeout_ms: 2}"));
        assert_eq!((v3.tpacket, v3.block_timeout_ms), (Tpacket::V3, 2));
        assert!(Config::from_yaml(&text(", af_packet: {tpacket: v4}")).is_err());
    }
}
