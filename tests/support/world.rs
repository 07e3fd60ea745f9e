//! The one test world: who has which address and MAC, and lbd's YAML
//! configuration for it.
//!
//! ```text
//!  clients 203.0.113.7, ...          ext 10.0.0.254          int 192.168.10.254
//!    └─ router 10.0.0.1 ────────────── [ director ] ───────────┬─ rs1 192.168.10.1
//!       02:aa:00:00:00:01     02:00:00:00:00:01   02:00:00:00:01:01 │   02:b1:00:00:00:01
//!  (end to end: the client 10.0.0.2 sits on the ext link)         ├─ rs2 192.168.10.2
//!                                                                 │   02:b2:00:00:00:02
//!                            FULLNAT local address 192.168.10.100 └─ router 192.168.10.253
//! ```
//!
//! Rules:
//! * The in-process director of the golden-packet tests (`tests/common`)
//!   has the same addresses and MACs (`golden.rs` checks it).
//! * Tests that run lbd write its configuration with [`LbdYaml`], never by
//!   hand: ports `ext` and `int` with the director's addresses, the workers
//!   idling with `backoff` (two shared cores), the static routes and
//!   neighbours of [`STATIC_TABLES`] when lbd is configured from the file;
//!   services are each test's own.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use rvs::wire::EthernetAddress;

/// The end-to-end client (on the director's client-side link).
pub const CIP: &str = "10.0.0.2";
/// The router on the client side (the director's default gateway).
pub const ROUTER: &str = "10.0.0.1";
/// The director's client-side address.
pub const DIP_EXT: &str = "10.0.0.254";
/// The director's server-side address (source of TUN's outer header).
pub const DIP_INT: &str = "192.168.10.254";
/// The router's server-side address (DR / TUN real servers' gateway).
pub const ROUTER_LAN: &str = "192.168.10.253";
/// FULLNAT local address.
pub const LIP: &str = "192.168.10.100";

/// The VIP of each forwarding mode in the end-to-end tests.
pub const VIP_NAT: &str = "10.0.0.100";
pub const VIP_DR: &str = "10.0.0.101";
pub const VIP_TUN: &str = "10.0.0.102";
pub const VIP_FULLNAT: &str = "10.0.0.103";

/// The director's client-side port's MAC.
pub const EXT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
/// The director's server-side port's MAC.
pub const INT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 1]);
/// The client-side router's MAC.
pub const ROUTER_MAC: EthernetAddress = EthernetAddress([2, 0xaa, 0, 0, 0, 1]);
/// Real servers 1 and 2's MACs.
pub const RS_MACS: [EthernetAddress; 2] = [
    EthernetAddress([2, 0xb1, 0, 0, 0, 1]),
    EthernetAddress([2, 0xb2, 0, 0, 0, 2]),
];

/// The real servers' UDP echo port.
pub const ECHO_PORT: u16 = 5353;

/// Real server `i` (0-based): 192.168.10.(i+1).
pub fn rip(i: usize) -> String {
    format!("192.168.10.{}", i + 1)
}

/// Real server `i`'s name, as its pages and echo replies say it.
pub fn rs_name(i: usize) -> String {
    format!("rs{}", i + 1)
}

/// The name of the real server at `addr`.
pub fn rs_of_addr(addr: &str) -> String {
    let last = addr.rsplit('.').next().unwrap_or("?");
    format!("rs{last}")
}

pub fn v4(s: &str) -> std::net::Ipv4Addr {
    s.parse().expect("test IPv4 address")
}

/// A name unique to this test process and call (DPDK EAL file prefixes).
pub fn unique(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The default route via the client-side router and the static neighbours
/// (router, rs1, rs2): the tables every configured (not `lbctl`-driven)
/// test world shares.
pub const STATIC_TABLES: &str = r#"routes:
  - {prefix: "0.0.0.0/0", via: 10.0.0.1, port: ext}
neighbours:
  - {addr: 10.0.0.1, mac: "02:aa:00:00:00:01", port: ext}
  - {addr: 192.168.10.1, mac: "02:b1:00:00:00:01", port: int}
  - {addr: 192.168.10.2, mac: "02:b2:00:00:00:02", port: int}
"#;

/// EAL arguments that work on these machines (see the driver's `eal.rs`):
/// no hugepages, no PCI, no shared config, file prefix `prefix`, one EAL
/// lcore; plus the test's virtual devices.
pub fn eal_args(prefix: &str, vdevs: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "256",
        "-l",
        "0",
        "--log-level=lib.eal:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--file-prefix={prefix}"));
    args.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
    args
}

/// How one of the director's two ports (`ext`, `int`) is opened.
#[derive(Debug, Clone)]
pub struct PortYaml {
    /// `tap`, `af_packet`, `dpdk`, `pcap`, `mem`.
    pub driver: &'static str,
    /// `ifname:` (TAP, AF_PACKET).
    pub ifname: Option<String>,
    /// `device:` (DPDK).
    pub device: Option<String>,
    /// Whether the port gets the world's MAC (`EXT_MAC` / `INT_MAC`).
    pub world_mac: bool,
    /// `pcap_rx:` (mem: the frames it replays forever).
    pub pcap_rx: Option<PathBuf>,
    /// `kernel_if:` (the director's own traffic).
    pub kernel_if: Option<String>,
    /// `kernel_if_pps:`.
    pub kernel_if_pps: Option<u64>,
    /// `kernel_if_steer:`.
    pub kernel_if_steer: Option<bool>,
}

impl PortYaml {
    /// A port on `driver` with the world's MAC and nothing else.
    pub fn with_mac(driver: &'static str) -> PortYaml {
        PortYaml {
            driver,
            ifname: None,
            device: None,
            world_mac: true,
            pcap_rx: None,
            kernel_if: None,
            kernel_if_pps: None,
            kernel_if_steer: None,
        }
    }

    /// A port on `driver` with nothing else (its MAC chosen by lbd or
    /// given in-process).
    pub fn plain(driver: &'static str) -> PortYaml {
        PortYaml {
            world_mac: false,
            ..PortYaml::with_mac(driver)
        }
    }

    /// A port on interface `ifname` (TAP, AF_PACKET), MAC chosen by lbd.
    pub fn on_interface(driver: &'static str, ifname: &str) -> PortYaml {
        PortYaml {
            driver,
            ifname: Some(ifname.to_string()),
            device: None,
            world_mac: false,
            pcap_rx: None,
            kernel_if: None,
            kernel_if_pps: None,
            kernel_if_steer: None,
        }
    }

    /// A DPDK port on device `device`.
    pub fn dpdk(device: &str, world_mac: bool) -> PortYaml {
        PortYaml {
            driver: "dpdk",
            ifname: None,
            device: Some(device.to_string()),
            world_mac,
            pcap_rx: None,
            kernel_if: None,
            kernel_if_pps: None,
            kernel_if_steer: None,
        }
    }
}

/// `workers:` (always `idle: backoff`: the tests share two cores).
#[derive(Debug, Clone, Default)]
pub struct WorkersYaml {
    pub count: u16,
    pub cores: Option<Vec<u16>>,
    pub idle_sleep_us: Option<u32>,
    pub conn_capacity: Option<u32>,
    /// `workers.kernel_ring`.
    pub kernel_ring: Option<u32>,
}

/// lbd's configuration file for the test world: director ports `ext`
/// (`DIP_EXT/24`) and `int` (`DIP_INT/24`), plus what the test sets.
#[derive(Debug, Clone)]
pub struct LbdYaml {
    pub socket: Option<PathBuf>,
    pub workers: Option<WorkersYaml>,
    pub ext: PortYaml,
    pub int: PortYaml,
    /// `settings.lport_range`.
    pub lport_range: Option<String>,
    /// `dpdk.eal_args`.
    pub eal_args: Option<Vec<String>>,
    /// Routes, neighbours and services, as YAML ([`STATIC_TABLES`] plus the
    /// test's services, or nothing when `lbctl` configures them).
    pub tables: String,
}

impl LbdYaml {
    /// Ports `ext` and `int` as given; nothing else.
    pub fn new(ext: PortYaml, int: PortYaml) -> LbdYaml {
        LbdYaml {
            socket: None,
            workers: None,
            ext,
            int,
            lport_range: None,
            eal_args: None,
            tables: String::new(),
        }
    }

    /// The YAML text.
    pub fn text(&self) -> String {
        let mut y = String::new();
        if let Some(socket) = &self.socket {
            let _ = writeln!(y, "socket: {}", socket.display());
        }
        if let Some(w) = &self.workers {
            let _ = write!(y, "workers: {{count: {}", w.count);
            if let Some(cores) = &w.cores {
                let list: Vec<String> = cores.iter().map(u16::to_string).collect();
                let _ = write!(y, ", cores: [{}]", list.join(", "));
            }
            y.push_str(", idle: backoff");
            if let Some(us) = w.idle_sleep_us {
                let _ = write!(y, ", idle_sleep_us: {us}");
            }
            if let Some(cap) = w.conn_capacity {
                let _ = write!(y, ", conn_capacity: {cap}");
            }
            if let Some(n) = w.kernel_ring {
                let _ = write!(y, ", kernel_ring: {n}");
            }
            y.push_str("}\n");
        }
        y.push_str("ports:\n");
        for (name, port, mac, addr) in [
            ("ext", &self.ext, EXT_MAC, DIP_EXT),
            ("int", &self.int, INT_MAC, DIP_INT),
        ] {
            let _ = write!(y, "  - {{name: {name}, driver: {}", port.driver);
            if let Some(ifname) = &port.ifname {
                let _ = write!(y, ", ifname: {ifname}");
            }
            if let Some(device) = &port.device {
                let _ = write!(y, ", device: {device}");
            }
            if port.world_mac {
                let _ = write!(y, ", mac: \"{mac}\"");
            }
            let _ = write!(y, ", addrs: [\"{addr}/24\"]");
            if let Some(rx) = &port.pcap_rx {
                let _ = write!(y, ", pcap_rx: {}", rx.display());
            }
            if let Some(k) = &port.kernel_if {
                let _ = write!(y, ", kernel_if: {k}");
            }
            if let Some(pps) = port.kernel_if_pps {
                let _ = write!(y, ", kernel_if_pps: {pps}");
            }
            if let Some(steer) = port.kernel_if_steer {
                let _ = write!(y, ", kernel_if_steer: {steer}");
            }
            y.push_str("}\n");
        }
        if let Some(range) = &self.lport_range {
            let _ = writeln!(y, "settings: {{lport_range: \"{range}\"}}");
        }
        if let Some(eal) = &self.eal_args {
            // A YAML flow sequence of strings (JSON is valid YAML).
            let list = serde_json::to_string(eal).expect("strings serialise");
            let _ = writeln!(y, "dpdk:\n  eal_args: {list}");
        }
        y.push_str(&self.tables);
        y
    }
}

/// Writes `DIR/lbd.yaml` for an `lbd` with two `mem` ports (no devices, no
/// root), its socket at `DIR/lbd.sock`, workers `{WORKERS}` (a YAML flow
/// map's inside, e.g. `count: 2`) and one wrr NAT service 10.0.0.100:80
/// with one real server of weight `weight` (given as text, so a test can
/// write a bad value); returns the file's path.
pub fn write_mem_daemon_config(dir: &std::path::Path, workers: &str, weight: &str) -> PathBuf {
    let path = dir.join("lbd.yaml");
    let text = format!(
        "socket: {}\n\
         workers: {{ {workers} }}\n\
         ports:\n\
         \x20 - {{ name: ext, driver: mem, addrs: [10.0.0.2/24] }}\n\
         \x20 - {{ name: int, driver: mem, addrs: [192.168.10.254/24] }}\n\
         services:\n\
         \x20 - proto: tcp\n\
         \x20   vip: 10.0.0.100\n\
         \x20   port: 80\n\
         \x20   scheduler: wrr\n\
         \x20   dests:\n\
         \x20     - {{ addr: 192.168.10.1, port: 8080, fwd: masq, weight: {weight} }}\n",
        dir.join("lbd.sock").display()
    );
    std::fs::write(&path, text).expect("write lbd.yaml");
    path
}
