//! End-to-end test harness: network namespaces, real servers, a client and
//! the real `lbd` between them, all removed again when a test ends.
//!
//! The topology (one per test; namespaces named `rvs-e2e-<pid>-<n>-<role>`):
//!
//! ```text
//!                    10.0.0.0/24                 192.168.10.0/24 (bridge br0 in "sw")
//!  client ext0 10.0.0.2 ─── ext [lbd in "dir"] int ─── br0 ─┬─ rs1 eth0 192.168.10.1
//!     │                  10.0.0.254        192.168.10.254   ├─ rs2 eth0 192.168.10.2
//!     │ rtr0 10.1.0.2                                       └─ rtr lan0 192.168.10.253
//!     └──────────────────── 10.1.0.1 cli0 [router "rtr"] ───────────┘
//! ```
//!
//! * TAP ([`Driver::Tap`]): lbd creates `ext0` and `int0` itself in `dir`;
//!   the harness then moves their kernel sides into `cli` (as the client's
//!   interface) and `sw` (as a bridge port) while lbd keeps the fds.
//! * AF_PACKET ([`Driver::AfPacket`]): veth pairs `ext0`–`cli:ext0` and
//!   `int0`–`sw:dir0` exist before lbd binds to the `dir` ends, which carry
//!   no kernel address (IPv6 off). Segmentation offloads are off on every
//!   veth so that frames are no larger than the MTU (AF_PACKET sees a GSO
//!   packet unsegmented).
//! * The router gives the real servers a way back to the client that does
//!   not cross the director (DR, TUN). NAT servers route via the director.
//!
//! Rules:
//! * Tests need root. Without it [`root_or_skip`] prints why and the test
//!   returns; as root, any set-up failure panics with the command and its
//!   output (CI runs these for real).
//! * Everything a test creates is owned by a guard: [`Proc`] kills its
//!   process group, [`Lbd`] stops the daemon (SIGTERM, then SIGKILL),
//!   [`Netns`] kills whatever still runs inside and deletes the namespace —
//!   on success and on panic alike. TAP devices vanish with lbd.
//! * Every traffic command is bounded: curl `--max-time`, wrk `-d` and
//!   `--timeout`, python clients with socket timeouts, and every wait loop
//!   has a deadline.
//! * Services are configured only through `lbctl` (printed as an operator's
//!   terminal would show them); lbd's ports, addresses and settings come
//!   from a YAML file written in the test's temporary directory.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rvs::ctl::protocol::{ConnInfo, Response};

pub const LBD: &str = env!("CARGO_BIN_EXE_lbd");
pub const LBCTL: &str = env!("CARGO_BIN_EXE_lbctl");

/// The client.
pub const CIP: &str = "10.0.0.2";
/// The director's client-side address.
pub const DIP_EXT: &str = "10.0.0.254";
/// The director's server-side address (source of TUN's outer header).
pub const DIP_INT: &str = "192.168.10.254";
/// The router's server-side address (DR / TUN real servers' gateway).
pub const ROUTER_LAN: &str = "192.168.10.253";
/// FULLNAT local address.
pub const LIP: &str = "192.168.10.100";
/// Bytes of the slow download (`/slow/big.bin`, served at 128 KiB/s).
pub const BIG_LEN: usize = 512 * 1024;
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

/// Tests run one at a time: they share two cores, and timing-sensitive
/// checks (connection timeouts) must not compete with another test's wrk.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the one-test-at-a-time lock (a failed test does not poison it).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// True when the test may run; otherwise prints why it is skipped. As root,
/// also checks the tools and panics naming the missing ones.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!(
            "skipping {test}: end-to-end tests need root (network namespaces, TAP, AF_PACKET); euid is {euid}"
        );
        return false;
    }
    let missing: Vec<&str> = ["ip", "nginx", "curl", "wrk", "python3", "ethtool", "sysctl"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    assert!(
        missing.is_empty(),
        "{test}: running as root but {missing:?} not installed \
         (apt-get install iproute2 nginx-light curl wrk python3 ethtool procps)"
    );
    remove_stale_namespaces();
    true
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

/// Deletes `rvs-e2e-<pid>-*` namespaces whose test process is gone (a test
/// binary killed with SIGKILL cannot run its guards).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("rvs-e2e-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_netns_pids(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
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

/// `ip ARGS...` in the host namespace.
pub fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

fn kill_netns_pids(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            // SAFETY: kill(2) only sends a signal; the pid was listed as
            // living in a namespace this test created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A network namespace, deleted (after killing what runs in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `name` with `lo` up, IPv6 off and reverse-path filtering off
    /// (replies in DR / TUN arrive on other interfaces than the route back).
    pub fn new(name: String) -> Netns {
        if Path::new("/run/netns").join(&name).exists() {
            kill_netns_pids(&name);
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.sh("ip link set lo up
             sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
             sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");
        ns
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a shell script (`set -e`) inside the namespace; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        run(self.cmd("sh").arg("-c").arg(format!("set -e\n{script}")))
    }

    /// Runs a command inside the namespace; returns its output, whatever its
    /// status.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.cmd(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name))
    }

    /// A kernel SNMP counter (`nstat` name, e.g. `TcpOutRsts`).
    pub fn snmp(&self, counter: &str) -> u64 {
        let out = self.sh(&format!("nstat -azs {counter}"));
        out.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(counter)).then(|| f.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no counter {counter} in {}: {out}", self.name))
    }

    /// An interface's packet counter (`rx_packets`, `tx_packets`, ...).
    pub fn link_stat(&self, ifname: &str, stat: &str) -> u64 {
        let text = self.sh(&format!("cat /sys/class/net/{ifname}/statistics/{stat}"));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad {ifname} {stat}: {text}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_netns_pids(&self.name);
        for _ in 0..50 {
            let ok = Command::new("ip")
                .args(["netns", "del", &self.name])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok || !Path::new("/run/netns").join(&self.name).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not delete network namespace {}", self.name);
    }
}

/// A child process in its own process group, killed (group-wide) on drop.
pub struct Proc {
    pub what: String,
    child: Child,
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until it ends, at most `limit`; panics if it does not.
    pub fn wait_for(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {limit:?}; log:\n{}",
                self.what,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to the process group.
    pub fn signal_group(&self, signal: libc::c_int) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) only sends a signal; the negative pid names the
        // process group this guard created (process_group(0) at spawn).
        unsafe { libc::kill(-pgid, signal) };
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; returns the status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_wait() {
            self.signal_group(libc::SIGKILL);
            return Some(status);
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                self.signal_group(libc::SIGKILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// Which lbd driver carries the ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Tap,
    AfPacket,
}

impl Driver {
    fn yaml(self) -> &'static str {
        match self {
            Driver::Tap => "tap",
            Driver::AfPacket => "af_packet",
        }
    }
}

/// How a topology is built.
#[derive(Debug, Clone)]
pub struct Options {
    pub driver: Driver,
    pub workers: u16,
    pub real_servers: usize,
    /// `workers.conn_capacity`.
    pub conn_capacity: Option<u32>,
    /// `settings.lport_range`.
    pub lport_range: Option<&'static str>,
}

impl Options {
    pub fn new(driver: Driver) -> Options {
        Options {
            driver,
            workers: 1,
            real_servers: 2,
            conn_capacity: None,
            lport_range: None,
        }
    }
}

/// How the real servers are set up for a forwarding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    /// Default route via the director (NAT).
    ViaDirector,
    /// Default route via the router; the director is reached only because
    /// replies go to its local address (FULLNAT).
    ViaRouter,
    /// DR: VIPs on `lo`, ARP silenced, default route via the router.
    DirectReturn,
    /// TUN: VIPs on `lo`, the decapsulation helper, default route via the
    /// router.
    Tunnel,
}

static TOPOLOGY_SEQ: AtomicU32 = AtomicU32::new(0);

/// A client, a director running lbd, real servers and a router, in
/// namespaces, with nginx and a UDP echo server on every real server.
/// Dropping it stops everything and deletes the namespaces.
pub struct Topology {
    // Field order is drop order: processes, then lbd, then namespaces.
    procs: Vec<Proc>,
    lbd: Option<Lbd>,
    pub cli: Netns,
    pub dir: Netns,
    pub sw: Netns,
    pub rtr: Netns,
    pub rs: Vec<Netns>,
    pub opts: Options,
    pub tmp: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Topology {
    /// Builds the namespaces, starts lbd from a YAML file and the real
    /// servers' nginx and echo services.
    pub fn build(opts: Options) -> Topology {
        let seq = TOPOLOGY_SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("rvs-e2e-{}-{seq}", std::process::id());
        let tmp = tempfile::Builder::new()
            .prefix("rvs-e2e-")
            .tempdir()
            .expect("temporary directory");
        let socket = tmp.path().join("lbd.sock");
        let rs = (0..opts.real_servers)
            .map(|i| Netns::new(format!("{prefix}-rs{}", i + 1)))
            .collect();
        let mut topo = Topology {
            procs: Vec::new(),
            lbd: None,
            cli: Netns::new(format!("{prefix}-cli")),
            dir: Netns::new(format!("{prefix}-dir")),
            sw: Netns::new(format!("{prefix}-sw")),
            rtr: Netns::new(format!("{prefix}-rtr")),
            rs,
            opts,
            tmp,
            socket,
        };
        topo.build_links();
        topo.start_lbd();
        if topo.opts.driver == Driver::Tap {
            topo.adopt_taps();
        }
        topo.configure_hosts();
        for i in 0..topo.rs.len() {
            topo.start_nginx(i);
            topo.start_echo(i);
        }
        topo.wait_servers();
        topo
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The switch, the router and the real servers' links (and, for
    /// AF_PACKET, the director's veths).
    fn build_links(&self) {
        let (sw, cli, rtr, dir) = (
            &self.sw.name,
            &self.cli.name,
            &self.rtr.name,
            &self.dir.name,
        );
        self.sw.sh(
            "ip link add br0 type bridge\nip link set br0 up\nsysctl -qw net.ipv4.ip_forward=0",
        );
        for (i, rs) in self.rs.iter().enumerate() {
            let port = format!("rs{}p", i + 1);
            ip(&[
                "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &rs.name,
            ]);
            self.sw.sh(&format!(
                "ip link set {port} master br0\nip link set {port} up"
            ));
        }
        ip(&[
            "-n", sw, "link", "add", "rtrp", "type", "veth", "peer", "name", "lan0", "netns", rtr,
        ]);
        self.sw
            .sh("ip link set rtrp master br0\nip link set rtrp up");
        ip(&[
            "-n", cli, "link", "add", "rtr0", "type", "veth", "peer", "name", "cli0", "netns", rtr,
        ]);
        if self.opts.driver == Driver::AfPacket {
            ip(&[
                "-n", dir, "link", "add", "ext0", "type", "veth", "peer", "name", "ext0", "netns",
                cli,
            ]);
            ip(&[
                "-n", dir, "link", "add", "int0", "type", "veth", "peer", "name", "dir0", "netns",
                sw,
            ]);
            self.sw
                .sh("ip link set dir0 master br0\nip link set dir0 up");
            self.dir.sh("ip link set ext0 up\nip link set int0 up
                 ethtool -K ext0 tso off gso off gro off >/dev/null
                 ethtool -K int0 tso off gso off gro off >/dev/null");
        }
    }

    fn yaml(&self) -> String {
        let drv = self.opts.driver.yaml();
        let mut y = String::new();
        let _ = writeln!(y, "socket: {}", self.socket.display());
        let _ = write!(y, "workers: {{count: {}, idle: backoff", self.opts.workers);
        if let Some(cap) = self.opts.conn_capacity {
            let _ = write!(y, ", conn_capacity: {cap}");
        }
        y.push_str("}\nports:\n");
        let _ = writeln!(
            y,
            "  - {{name: ext, driver: {drv}, ifname: ext0, addrs: [\"{DIP_EXT}/24\"]}}"
        );
        let _ = writeln!(
            y,
            "  - {{name: int, driver: {drv}, ifname: int0, addrs: [\"{DIP_INT}/24\"]}}"
        );
        if let Some(range) = self.opts.lport_range {
            let _ = writeln!(y, "settings: {{lport_range: \"{range}\"}}");
        }
        y
    }

    fn start_lbd(&mut self) {
        let yaml_path = self.path("lbd.yaml");
        fs::write(&yaml_path, self.yaml()).expect("write lbd.yaml");
        println!("lbd.yaml:\n{}", self.yaml());
        let mut cmd = self.dir.cmd(LBD);
        cmd.arg("-c").arg(&yaml_path);
        let proc = Proc::spawn("lbd", cmd, &self.path("lbd.log"));
        let mut lbd = Lbd {
            proc,
            socket: self.socket.clone(),
        };
        lbd.wait_ready();
        self.lbd = Some(lbd);
    }

    /// TAP: lbd created `ext0` and `int0` in `dir`; move their kernel sides
    /// to the client and the switch (lbd keeps its queue fds).
    fn adopt_taps(&self) {
        let dir = &self.dir.name;
        ip(&["-n", dir, "link", "set", "ext0", "netns", &self.cli.name]);
        ip(&["-n", dir, "link", "set", "int0", "netns", &self.sw.name]);
        self.sw
            .sh("ip link set int0 master br0\nip link set int0 up");
    }

    fn configure_hosts(&self) {
        let offload = |ifname: &str| {
            if self.opts.driver == Driver::AfPacket {
                format!("ethtool -K {ifname} tso off gso off gro off >/dev/null")
            } else {
                String::new()
            }
        };
        self.cli.sh(&format!(
            "ip addr add {CIP}/24 dev ext0\nip link set ext0 up\n{}
             ip addr add 10.1.0.2/24 dev rtr0\nip link set rtr0 up\n{}",
            offload("ext0"),
            offload("rtr0")
        ));
        self.rtr.sh(&format!(
            "sysctl -qw net.ipv4.ip_forward=1
             ip addr add 10.1.0.1/24 dev cli0\nip link set cli0 up
             ip addr add {ROUTER_LAN}/24 dev lan0\nip link set lan0 up\n{}
             ip route add 10.0.0.0/24 via 10.1.0.2",
            offload("lan0")
        ));
        for (i, rs) in self.rs.iter().enumerate() {
            rs.sh(&format!(
                "ip addr add {}/24 dev eth0\nip link set eth0 up\n{}
                 ip route add default via {DIP_INT}",
                rip(i),
                offload("eth0")
            ));
        }
    }

    /// Sets up the real servers for a forwarding mode; `vips` are the
    /// addresses they must accept as their own (DR, TUN).
    pub fn server_mode(&mut self, mode: ServerMode, vips: &[&str]) {
        let gateway = match mode {
            ServerMode::ViaDirector => DIP_INT,
            _ => ROUTER_LAN,
        };
        for i in 0..self.rs.len() {
            let mut script = format!("ip route replace default via {gateway}\n");
            if matches!(mode, ServerMode::DirectReturn | ServerMode::Tunnel) {
                script.push_str(
                    "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2\n",
                );
                for vip in vips {
                    let _ = writeln!(script, "ip addr add {vip}/32 dev lo");
                }
            }
            self.rs[i].sh(&script);
            if mode == ServerMode::Tunnel {
                self.start_decap(i);
            }
        }
    }

    fn start_nginx(&mut self, i: usize) {
        let dir = self.path(&rs_name(i));
        fs::create_dir_all(dir.join("www/slow")).expect("www");
        fs::create_dir_all(dir.join("tmp")).expect("tmp");
        fs::write(dir.join("www/index.html"), format!("{}\n", rs_name(i))).expect("index");
        fs::write(dir.join("www/slow/big.bin"), big_body()).expect("big.bin");
        let d = dir.display();
        let conf = format!(
            "daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    log_format e2e '$remote_addr $server_addr $request_uri $status $body_bytes_sent';
    access_log {d}/access.log e2e;
    client_body_temp_path {d}/tmp;
    keepalive_requests 100000;
    server {{
        listen 80 backlog=4096;
        root {d}/www;
        location /slow/ {{ limit_rate 128k; }}
    }}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("nginx.conf");
        let mut cmd = self.rs[i].cmd("nginx");
        cmd.arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path);
        let log = self.path(&format!("{}-nginx.out", rs_name(i)));
        self.procs
            .push(Proc::spawn(&format!("nginx {}", rs_name(i)), cmd, &log));
    }

    fn start_echo(&mut self, i: usize) {
        let script = self.path("udp_echo.py");
        fs::write(&script, UDP_ECHO_PY).expect("udp_echo.py");
        let mut cmd = self.rs[i].cmd("python3");
        cmd.arg(&script).arg(rs_name(i)).arg(ECHO_PORT.to_string());
        let log = self.path(&format!("{}-echo.log", rs_name(i)));
        self.procs
            .push(Proc::spawn(&format!("udp echo {}", rs_name(i)), cmd, &log));
    }

    /// TUN: the real server's decapsulation helper (no ipip module here).
    fn start_decap(&mut self, i: usize) {
        let script = self.path("ipip_decap.py");
        fs::write(&script, IPIP_DECAP_PY).expect("ipip_decap.py");
        let report = self.path(&format!("{}-decap.report", rs_name(i)));
        let mut cmd = self.rs[i].cmd("python3");
        cmd.arg(&script)
            .arg(DIP_INT)
            .arg(rip(i))
            .arg(CIP)
            .arg(&report);
        let log = self.path(&format!("{}-decap.log", rs_name(i)));
        let mut proc = Proc::spawn(&format!("ipip decap {}", rs_name(i)), cmd, &log);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !proc.log_text().contains("READY") {
            assert!(
                proc.try_wait().is_none() && Instant::now() < deadline,
                "decap helper on {} did not start:\n{}",
                rs_name(i),
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.procs.push(proc);
    }

    /// The decapsulation helper's verdicts on real server `i`: (good, bad
    /// lines).
    pub fn decap_report(&self, i: usize) -> (usize, Vec<String>) {
        let text = fs::read_to_string(self.path(&format!("{}-decap.report", rs_name(i))))
            .unwrap_or_default();
        let good = text.lines().filter(|l| l.starts_with("OK ")).count();
        let bad = text
            .lines()
            .filter(|l| !l.starts_with("OK "))
            .map(str::to_string)
            .collect();
        (good, bad)
    }

    fn wait_servers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for i in 0..self.rs.len() {
            loop {
                let out = self.rs[i].output(
                    "curl",
                    &["-s", "--max-time", "1", &format!("http://{}/", rip(i))],
                );
                if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == rs_name(i)
                {
                    break;
                }
                for p in &mut self.procs {
                    if let Some(status) = p.try_wait() {
                        panic!("{} exited ({status}):\n{}", p.what, p.log_text());
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx on {} does not answer: {}",
                    rs_name(i),
                    String::from_utf8_lossy(&out.stderr)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Runs `lbctl ARGS` as an operator would (printed with its output);
    /// it must succeed.
    pub fn lbctl(&self, args: &[&str]) -> String {
        println!("# lbctl {}", args.join(" "));
        let out = self.lbctl_output(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        assert!(
            out.status.success(),
            "lbctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn lbctl_output(&self, args: &[&str]) -> Output {
        Command::new(LBCTL)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run lbctl")
    }

    /// `lbctl -Lnc -o json`: the connection entries.
    pub fn conns(&self) -> Vec<ConnInfo> {
        let out = self.lbctl_output(&["-Lnc", "-o", "json"]);
        assert!(out.status.success(), "lbctl -Lnc -o json failed");
        match serde_json::from_slice::<Response>(&out.stdout) {
            Ok(Response::Conns { conns, truncated }) => {
                assert!(!truncated, "connection list truncated");
                conns
            }
            other => panic!("lbctl -Lnc -o json: unexpected answer {other:?}"),
        }
    }

    /// `lbctl -Ln --stats` parsed: the counters of the service line whose
    /// address is `vip_port` (e.g. "10.0.0.100:80") and of its servers.
    pub fn stats(&self, proto: &str, vip_port: &str) -> ServiceStats {
        let text = self.lbctl(&["-Ln", "--stats"]);
        parse_stats(&text, proto, vip_port)
            .unwrap_or_else(|| panic!("no {proto} {vip_port} in lbctl -Ln --stats:\n{text}"))
    }

    /// One HTTP GET from the client on a new connection; the body, trimmed,
    /// or curl's exit code.
    pub fn http_get(&self, url: &str) -> Result<String, i32> {
        self.http_get_from(url).map(|(body, _)| body)
    }

    /// Like [`Topology::http_get`], also returning the client's local port.
    pub fn http_get_from(&self, url: &str) -> Result<(String, u16), i32> {
        let out = self.cli.output(
            "curl",
            &[
                "-s",
                "--max-time",
                "3",
                "-H",
                "Connection: close",
                "-w",
                "\n%{local_port}",
                url,
            ],
        );
        if !out.status.success() {
            return Err(out.status.code().unwrap_or(-1));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, port) = text.trim().rsplit_once('\n').unwrap_or((text.trim(), "0"));
        Ok((body.trim().to_string(), port.trim().parse().unwrap_or(0)))
    }

    /// `n` GETs, each on its own connection; the page bodies (server
    /// names) in order (printed with each client port). Panics if one
    /// fails.
    pub fn fetch_names(&self, url: &str, n: usize) -> Vec<String> {
        let answers: Vec<(String, u16)> = (0..n)
            .map(|k| {
                self.http_get_from(url)
                    .unwrap_or_else(|code| panic!("request {k} to {url} failed: curl exit {code}"))
            })
            .collect();
        let shown: Vec<String> = answers.iter().map(|(b, p)| format!("{b}@{p}")).collect();
        println!("{url}: answers (server@client port): {}", shown.join(" "));
        answers.into_iter().map(|(b, _)| b).collect()
    }

    /// `n` UDP exchanges with `vip:port`, each from a new socket (a new
    /// flow); the echoing servers' names ("TIMEOUT" when none answered).
    pub fn udp_names(&self, vip: &str, port: u16, n: usize) -> Vec<String> {
        let out = self.cli.output(
            "python3",
            &["-c", UDP_CLIENT_PY, vip, &port.to_string(), &n.to_string()],
        );
        assert!(
            out.status.success(),
            "udp client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "udp {vip}:{port}: answers (server@client port): {}",
            String::from_utf8_lossy(&out.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Opens `n` TCP connections to `vip:port` from the client, holds them,
    /// then tries one more; the verdict lines ("open", then "extra
    /// timeout" / "extra connected" / "extra refused").
    pub fn hold_and_try_one_more(&self, vip: &str, port: u16, n: usize) -> Vec<String> {
        let out = self.cli.output(
            "python3",
            &["-c", HOLD_CLIENT_PY, vip, &port.to_string(), &n.to_string()],
        );
        assert!(
            out.status.success(),
            "hold client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts a slow download (128 KiB/s, `BIG_LEN` bytes) from the client
    /// in the background; curl prints "HTTP_CODE BYTES".
    pub fn start_slow_download(&mut self, url: &str, tag: &str) -> Proc {
        let mut cmd = self.cli.cmd("curl");
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "15",
            "--speed-limit",
            "1000",
            "--speed-time",
            "2",
            "-w",
            "%{http_code} %{size_download}\n",
            url,
        ]);
        Proc::spawn(
            &format!("slow download {tag}"),
            cmd,
            &self.path(&format!("slow-{tag}.out")),
        )
    }

    /// Real server `i`'s access log lines.
    pub fn access_log(&self, i: usize) -> Vec<String> {
        fs::read_to_string(self.path(&format!("{}/access.log", rs_name(i))))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts wrk from the client in the background (bounded by `-d` and
    /// `--timeout`); [`Topology::finish_wrk`] collects it.
    pub fn start_wrk(&self, threads: u32, conns: u32, secs: u32, url: &str) -> Proc {
        let line = format!("wrk -t{threads} -c{conns} -d{secs}s --timeout 10s {url}");
        println!("$ {line}");
        let mut cmd = self.cli.cmd("sh");
        cmd.arg("-c").arg(format!("ulimit -n 65536; exec {line}"));
        Proc::spawn("wrk", cmd, &self.path("wrk.out"))
    }

    /// Waits for wrk (its duration plus its timeout at most); it must exit
    /// 0; returns what it printed.
    pub fn finish_wrk(&self, mut wrk: Proc) -> WrkResult {
        let status = wrk.wait_for(Duration::from_secs(60));
        let text = wrk.log_text();
        println!("{text}");
        assert!(status.success(), "wrk failed ({status}): {text}");
        WrkResult::parse(&text)
    }

    /// The lbd log so far.
    pub fn lbd_log(&self) -> String {
        fs::read_to_string(self.path("lbd.log")).unwrap_or_default()
    }

    /// Stops lbd with SIGTERM and checks that it exits cleanly.
    pub fn stop_lbd_cleanly(&mut self) {
        if let Some(mut lbd) = self.lbd.take() {
            let status = lbd.proc.stop(Duration::from_secs(10));
            let log = lbd.proc.log_text();
            assert!(
                status.is_some_and(|s| s.success()),
                "lbd did not stop cleanly ({status:?}):\n{log}"
            );
            assert!(!log.contains("panicked"), "lbd panicked:\n{log}");
        }
    }
}

/// A running lbd (inside the director namespace).
struct Lbd {
    proc: Proc,
    socket: PathBuf,
}

impl Lbd {
    /// Waits until lbd answers `lbctl -Ln` (its ports are open by then).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.proc.try_wait() {
                panic!("lbd exited at start ({status}):\n{}", self.proc.log_text());
            }
            if self.socket.exists() {
                let ok = Command::new(LBCTL)
                    .arg("--socket")
                    .arg(&self.socket)
                    .arg("-Ln")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "lbd did not answer on {}:\n{}",
                self.socket.display(),
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Counters of one service (`lbctl -Ln --stats`), and of its servers.
#[derive(Debug, Clone, Default)]
pub struct ServiceStats {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Per real server `ADDR:PORT`: (conns, in_pkts, out_pkts).
    pub dests: BTreeMap<String, (u64, u64, u64)>,
}

/// `print_largenum`'s units back to numbers ("12K" → 12000).
fn largenum(s: &str) -> Option<u64> {
    let (digits, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1_000),
        'M' => (&s[..s.len() - 1], 1_000_000),
        'G' => (&s[..s.len() - 1], 1_000_000_000),
        'T' => (&s[..s.len() - 1], 1_000_000_000_000),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * mult)
}

pub fn parse_stats(text: &str, proto: &str, vip_port: &str) -> Option<ServiceStats> {
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 7 && f[0] == proto && f[1] == vip_port {
            let n = |k: usize| largenum(f[k]);
            let mut st = ServiceStats {
                conns: n(2)?,
                in_pkts: n(3)?,
                out_pkts: n(4)?,
                in_bytes: n(5)?,
                out_bytes: n(6)?,
                dests: BTreeMap::new(),
            };
            while let Some(next) = lines.peek() {
                let g: Vec<&str> = next.split_whitespace().collect();
                if g.first() != Some(&"->") || g.len() < 5 {
                    break;
                }
                st.dests.insert(
                    g[1].to_string(),
                    (largenum(g[2])?, largenum(g[3])?, largenum(g[4])?),
                );
                lines.next();
            }
            return Some(st);
        }
    }
    None
}

/// What wrk printed.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub requests_per_sec: f64,
    /// "Socket errors: connect C, read R, write W, timeout T" (0 when absent).
    pub socket_errors: [u64; 4],
    pub non_2xx: u64,
}

impl WrkResult {
    pub fn parse(text: &str) -> WrkResult {
        let mut r = WrkResult::default();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("Requests/sec:") {
                r.requests_per_sec = rest.trim().parse().unwrap_or(0.0);
            } else if let Some(rest) = line.strip_prefix("Socket errors:") {
                let nums: Vec<u64> = rest
                    .split(',')
                    .filter_map(|p| p.split_whitespace().last()?.parse().ok())
                    .collect();
                for (k, v) in nums.into_iter().take(4).enumerate() {
                    r.socket_errors[k] = v;
                }
            } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
                r.non_2xx = rest.trim().parse().unwrap_or(u64::MAX);
            } else if line.contains(" requests in ") {
                r.requests = line
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            }
        }
        r
    }
}

/// Counts of each name.
pub fn tally(names: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

/// The slow download's content: a recognisable byte pattern.
pub fn big_body() -> Vec<u8> {
    (0..BIG_LEN).map(|i| (i % 251) as u8).collect()
}

const UDP_ECHO_PY: &str = r#"
import socket, sys
name, port = sys.argv[1].encode(), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(name + b" " + data, peer)
"#;

const UDP_CLIENT_PY: &str = r#"
import socket, sys
vip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for k in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    answer = "TIMEOUT"
    for attempt in range(3):
        s.sendto(b"ping %d" % k, (vip, port))
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            continue
        words = data.split()
        if peer != (vip, port) or words[1:] != [b"ping", b"%d" % k]:
            answer = "BAD %r from %r" % (data, peer)
        else:
            answer = words[0].decode()
        break
    print(answer, flush=True)
    sys.stderr.write("%s@%d\n" % (answer, s.getsockname()[1]))
    s.close()
"#;

const HOLD_CLIENT_PY: &str = r#"
import socket, sys
vip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for k in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3.0)
    try:
        s.connect((vip, port))
        print("open", flush=True)
    except OSError as e:
        print("failed %s" % e, flush=True)
    held.append(s)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(3.0)
try:
    s.connect((vip, port))
    print("extra connected", flush=True)
except socket.timeout:
    print("extra timeout", flush=True)
except ConnectionRefusedError:
    print("extra refused", flush=True)
except OSError as e:
    print("extra error %s" % e, flush=True)
"#;

/// The TUN real server's decapsulation: receives IPIP packets on a raw
/// socket (protocol 4 is then not "unknown" to the kernel, so no ICMP),
/// checks the outer header (DIP → RIP, protocol 4, valid checksum) and the
/// inner one (from the client), and writes the inner packet into a TUN
/// device, where the kernel receives it for the VIP on `lo`.
const IPIP_DECAP_PY: &str = r#"
import fcntl, os, socket, struct, subprocess, sys
dip, rip, cip, report = sys.argv[1:5]
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return s
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454ca, 0x0001, 0x1000
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"decap0", IFF_TUN | IFF_NO_PI))
subprocess.check_call(["ip", "link", "set", "decap0", "up"])
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
out = open(report, "a", buffering=1)
print("READY", flush=True)
while True:
    pkt = raw.recv(65535)
    ihl = (pkt[0] & 0x0f) * 4
    o_src, o_dst = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
    total = struct.unpack("!H", pkt[2:4])[0]
    inner = pkt[ihl:]
    problems = []
    if pkt[0] >> 4 != 4: problems.append("outer version %d" % (pkt[0] >> 4))
    if pkt[9] != 4: problems.append("outer protocol %d" % pkt[9])
    if o_src != dip or o_dst != rip: problems.append("outer %s -> %s" % (o_src, o_dst))
    if csum(pkt[:ihl]) != 0xffff: problems.append("outer checksum")
    if total != len(pkt): problems.append("outer length %d of %d" % (total, len(pkt)))
    if len(inner) < 20 or inner[0] >> 4 != 4:
        problems.append("inner not IPv4")
    else:
        i_src, i_dst = socket.inet_ntoa(inner[12:16]), socket.inet_ntoa(inner[16:20])
        if i_src != cip: problems.append("inner source %s" % i_src)
        if csum(inner[:(inner[0] & 0x0f) * 4]) != 0xffff: problems.append("inner checksum")
    if problems:
        out.write("BAD %s\n" % "; ".join(problems))
        continue
    out.write("OK %s -> %s inner %s -> %s proto %d len %d\n" % (o_src, o_dst, i_src, i_dst, inner[9], len(inner)))
    os.write(tun, inner)
"#;
