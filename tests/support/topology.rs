//! The end-to-end world in network namespaces: a client, the real `lbd`
//! on a director, real servers and a router, all removed again when a test
//! ends.
//!
//! The topology (one per test; namespaces `rvs-t-<pid>-<n>-<role>`):
//!
//! ```text
//!                    10.0.0.0/24                 192.168.10.0/24 (bridge br0 in "sw")
//!  client ext0 10.0.0.2 ─── ext [lbd in "dir"] int ─── br0 ─┬─ rs1 eth0 192.168.10.1
//!     │                  10.0.0.254        192.168.10.254   ├─ rs2 eth0 192.168.10.2
//!     │ rtr0 10.1.0.2                                       └─ rtr lan0 192.168.10.253
//!     └──────────────────── 10.1.0.1 cli0 [router "rtr"] ───────────┘
//! ```
//!
//! * TAP ([`Driver::Tap`], [`Driver::DpdkTap`]): lbd creates `ext0` and
//!   `int0` itself in `dir`; the harness then moves their kernel sides into
//!   `cli` (as the client's interface) and `sw` (as a bridge port) while
//!   lbd keeps the fds.
//! * AF_PACKET ([`Driver::AfPacket`]): veth pairs `ext0`–`cli:ext0` and
//!   `int0`–`sw:dir0` exist before lbd binds to the `dir` ends, which carry
//!   no kernel address (IPv6 off). Segmentation offloads are off on every
//!   veth so that frames are no larger than the MTU (AF_PACKET sees a GSO
//!   packet unsegmented).
//! * The router gives the real servers a way back to the client that does
//!   not cross the director (DR, TUN). NAT servers route via the director.
//!
//! Rules (with those of [`crate::support`]):
//! * Everything a test creates is owned by a guard: [`Proc`] stops its
//!   process group, [`Lbd`] stops the daemon (SIGTERM, then SIGKILL),
//!   [`Netns`] kills whatever still runs inside and deletes the namespace —
//!   on success and on panic alike. TAP devices vanish with lbd.
//! * Every traffic command is bounded: curl `--max-time`, wrk `-d` and
//!   `--timeout`, python clients with socket timeouts, and every wait has a
//!   deadline.
//! * Services are configured only through `lbctl` (printed as an operator's
//!   terminal would show them); lbd's ports, addresses and settings come
//!   from a YAML file ([`LbdYaml`]) written in the test's temporary
//!   directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use rvs::ctl::protocol::ConnInfo;

use super::lbd::{self, Lbd, ServiceStats, LBD};
use super::netns::Netns;
use super::process::{poll_until, Proc};
use super::world::{
    self, rip, rs_name, LbdYaml, PortYaml, WorkersYaml, CIP, DIP_INT, ECHO_PORT, ROUTER_LAN,
};

/// Bytes of the slow download (`/slow/big.bin`, served at 128 KiB/s).
pub const BIG_LEN: usize = 512 * 1024;

/// Which lbd driver carries the ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// rvs's TAP driver: lbd creates `ext0` and `int0`.
    Tap,
    /// rvs's AF_PACKET driver on veth pairs made beforehand.
    AfPacket,
    /// DPDK `net_tap` devices (feature `dpdk`): the PMD creates `ext0` and
    /// `int0` (EAL with `--no-huge`, see [`world::eal_args`]).
    DpdkTap,
}

impl Driver {
    /// How lbd opens port `name` (`ext` or `int`) on `ifname`.
    fn port(self, name: &str, ifname: &str) -> PortYaml {
        match self {
            Driver::Tap => PortYaml::on_interface("tap", ifname),
            Driver::AfPacket => PortYaml::on_interface("af_packet", ifname),
            Driver::DpdkTap => {
                let n = if name == "ext" { 0 } else { 1 };
                PortYaml::dpdk(&format!("net_tap{n}"), false)
            }
        }
    }

    /// Whether lbd's ports are TAP devices whose kernel sides the harness
    /// moves out of the director's namespace.
    fn creates_taps(self) -> bool {
        matches!(self, Driver::Tap | Driver::DpdkTap)
    }
}

/// How a topology is built.
#[derive(Debug, Clone)]
pub struct Options {
    pub driver: Driver,
    pub workers: u16,
    /// `workers.cores`.
    pub cores: Option<Vec<u16>>,
    pub real_servers: usize,
    /// `workers.conn_capacity`.
    pub conn_capacity: Option<u32>,
    /// `settings.lport_range`.
    pub lport_range: Option<&'static str>,
    /// More arguments for lbd (e.g. `--metrics-listen ADDR:PORT`).
    pub lbd_args: Vec<String>,
    /// Extra `routes:`/`neighbours:` YAML for lbd's configuration file.
    pub tables: Option<String>,
    /// `kernel_if` of ports `ext` and `int` (the director's own traffic
    /// then lives on these interfaces in `dir`).
    pub kernel_ifs: Option<(&'static str, &'static str)>,
    /// `kernel_if_pps` of both ports.
    pub kernel_if_pps: Option<u64>,
    /// A keepalived.conf: lbd then runs `--keepalived FILE -c PORTS.yaml`
    /// (the services come from it; the YAML has only ports and workers).
    pub keepalived: Option<String>,
    /// af_packet with `kernel_ifs`: leave the ports' ingress drop to lbd
    /// (its `kernel_if_guard`) instead of installing it here.
    pub lbd_guards_ports: bool,
    /// `workers.kernel_ring`.
    pub kernel_ring: Option<u32>,
    /// `kernel_if_steer` of both ports.
    pub kernel_if_steer: Option<bool>,
}

impl Options {
    pub fn new(driver: Driver) -> Options {
        Options {
            driver,
            workers: 1,
            cores: None,
            real_servers: 2,
            conn_capacity: None,
            lport_range: None,
            lbd_args: Vec::new(),
            tables: None,
            kernel_ifs: None,
            kernel_if_pps: None,
            keepalived: None,
            lbd_guards_ports: false,
            kernel_ring: None,
            kernel_if_steer: None,
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
        let tmp = tempfile::Builder::new()
            .prefix("rvs-e2e-")
            .tempdir()
            .expect("temporary directory");
        let socket = tmp.path().join("lbd.sock");
        let rs = (0..opts.real_servers)
            .map(|i| Netns::ipv4_host(&rs_name(i)))
            .collect();
        let mut topo = Topology {
            procs: Vec::new(),
            lbd: None,
            cli: Netns::ipv4_host("cli"),
            dir: Netns::ipv4_host("dir"),
            sw: Netns::ipv4_host("sw"),
            rtr: Netns::ipv4_host("rtr"),
            rs,
            opts,
            tmp,
            socket,
        };
        topo.build_links();
        topo.start_lbd();
        if topo.opts.driver.creates_taps() {
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
        self.sw.sh(
            "ip link add br0 type bridge\nip link set br0 up\nsysctl -qw net.ipv4.ip_forward=0",
        );
        for (i, rs) in self.rs.iter().enumerate() {
            let port = format!("rs{}p", i + 1);
            self.sw.add_veth(&port, rs, "eth0");
            self.sw.sh(&format!(
                "ip link set {port} master br0\nip link set {port} up"
            ));
        }
        self.sw.add_veth("rtrp", &self.rtr, "lan0");
        self.sw
            .sh("ip link set rtrp master br0\nip link set rtrp up");
        self.cli.add_veth("rtr0", &self.rtr, "cli0");
        if self.opts.driver == Driver::AfPacket {
            self.dir.add_veth("ext0", &self.cli, "ext0");
            self.dir.add_veth("int0", &self.sw, "dir0");
            self.sw
                .sh("ip link set dir0 master br0\nip link set dir0 up");
            self.dir.sh("ip link set ext0 up\nip link set int0 up
                 ethtool -K ext0 tso off gso off gro off >/dev/null
                 ethtool -K int0 tso off gso off gro off >/dev/null");
            if self.opts.kernel_ifs.is_some() && !self.opts.lbd_guards_ports {
                // The director's kernel owns the DIPs (on the kernel
                // interfaces): it must not also take the ports' frames
                // (weak host model). AF_PACKET sees them before the
                // netdev ingress hook drops them for the kernel.
                self.dir.sh(
                    "nft add table netdev rvs_ports
                     for i in ext0 int0; do
                       nft add chain netdev rvs_ports in_$i \"{ type filter hook ingress device $i priority 0; policy drop; }\"
                     done",
                );
            }
        }
    }

    fn yaml(&self) -> String {
        let driver = self.opts.driver;
        let mut y = LbdYaml::new(driver.port("ext", "ext0"), driver.port("int", "int0"));
        if let Some((ext, int)) = self.opts.kernel_ifs {
            y.ext.kernel_if = Some(ext.to_string());
            y.int.kernel_if = Some(int.to_string());
            y.ext.kernel_if_pps = self.opts.kernel_if_pps;
            y.int.kernel_if_pps = self.opts.kernel_if_pps;
            y.ext.kernel_if_steer = self.opts.kernel_if_steer;
            y.int.kernel_if_steer = self.opts.kernel_if_steer;
        }
        y.socket = Some(self.socket.clone());
        y.workers = Some(WorkersYaml {
            count: self.opts.workers,
            cores: self.opts.cores.clone(),
            conn_capacity: self.opts.conn_capacity,
            kernel_ring: self.opts.kernel_ring,
            ..WorkersYaml::default()
        });
        y.lport_range = self.opts.lport_range.map(str::to_string);
        if let Some(tables) = &self.opts.tables {
            y.tables = tables.clone();
        }
        if driver == Driver::DpdkTap {
            y.eal_args = Some(world::eal_args(
                &world::unique("rvs_lbd_tap"),
                &[
                    "net_tap0,iface=ext0".to_string(),
                    "net_tap1,iface=int0".to_string(),
                ],
            ));
        }
        y.text()
    }

    fn start_lbd(&mut self) {
        let yaml_path = self.path("lbd.yaml");
        let yaml = self.yaml();
        fs::write(&yaml_path, &yaml).expect("write lbd.yaml");
        println!("lbd.yaml:\n{yaml}");
        let mut cmd = self.dir.cmd(LBD);
        cmd.arg("-c").arg(&yaml_path).args(&self.opts.lbd_args);
        if let Some(text) = &self.opts.keepalived {
            let path = self.path("keepalived.conf");
            fs::write(&path, text).expect("write keepalived.conf");
            println!("keepalived.conf:\n{text}");
            cmd.arg("--keepalived").arg(path);
        }
        let what = format!("lbd ({:?})", self.opts.driver);
        self.lbd = Some(Lbd::start(&what, cmd, &self.socket, &self.path("lbd.log")));
    }

    /// TAP: lbd created `ext0` and `int0` in `dir`; move their kernel sides
    /// to the client and the switch (lbd keeps its queue fds).
    fn adopt_taps(&self) {
        let listed = self.dir.sh("ip -o link show");
        assert!(
            listed.contains("ext0") && listed.contains("int0"),
            "lbd did not create ext0 and int0 in {}:\n{listed}",
            self.dir.name
        );
        self.dir.move_link("ext0", &self.cli);
        self.dir.move_link("int0", &self.sw);
        if self.opts.driver == Driver::DpdkTap {
            // net_tap gives the kernel side the PMD's own MAC: a bridge
            // would take frames to that MAC for itself (a port's address is
            // local to the bridge), so the kernel sides get addresses of
            // their own, as the other hosts on those links would have.
            self.cli
                .ip(&["link", "set", "ext0", "address", "02:cc:00:00:00:01"]);
            self.sw
                .ip(&["link", "set", "int0", "address", "02:cc:00:00:00:02"]);
        }
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
        location = /unavailable {{ return 503; }}
    }}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("nginx.conf");
        self.spawn_nginx(i, "");
    }

    /// Runs real server `i`'s nginx from its configuration file; its guard
    /// stays with the topology's processes.
    fn spawn_nginx(&mut self, i: usize, tag: &str) {
        let dir = self.path(&rs_name(i));
        let mut cmd = self.rs[i].cmd("nginx");
        cmd.arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"));
        let log = self.path(&format!("{}-nginx{tag}.out", rs_name(i)));
        self.procs.push(Proc::spawn(
            &format!("nginx {}{tag}", rs_name(i)),
            cmd,
            &log,
        ));
    }

    /// Stops real server `i`'s nginx as an operator would (`nginx -s
    /// stop`): its port then refuses connections.
    pub fn stop_nginx(&self, i: usize) {
        let conf = self.path(&rs_name(i)).join("nginx.conf");
        self.rs[i].sh(&format!("nginx -c {} -s stop", conf.display()));
    }

    /// Black-holes real server `i`'s port 80 (`on`: its kernel silently
    /// drops every TCP segment to it, as a dead host would; the nft table is
    /// removed with `false`, and with the namespace).
    pub fn black_hole_http(&self, i: usize, on: bool) {
        if on {
            self.rs[i].sh("nft add table inet rvs_blackhole
                 nft add chain inet rvs_blackhole in '{ type filter hook input priority 0; policy accept; }'
                 nft add rule inet rvs_blackhole in tcp dport 80 drop");
        } else {
            self.rs[i].sh("nft delete table inet rvs_blackhole");
        }
    }

    /// Starts real server `i`'s nginx again after [`Topology::stop_nginx`].
    pub fn restart_nginx(&mut self, i: usize) {
        let n = self.procs.len();
        self.spawn_nginx(i, &format!("-again{n}"));
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
        let what = format!("ipip decap {}", rs_name(i));
        let proc = Proc::spawn_ready(&what, cmd, &log, "READY", Duration::from_secs(10));
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

    /// Waits (15 s at most) until every nginx serves its page.
    fn wait_servers(&mut self) {
        for i in 0..self.rs.len() {
            let url = format!("http://{}/", rip(i));
            let mut last = String::new();
            let served = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
                let out = self.rs[i].output("curl", &["-s", "--max-time", "1", &url]);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == rs_name(i)
                {
                    return Some(());
                }
                for p in &mut self.procs {
                    if let Some(status) = p.try_wait() {
                        panic!("{} exited ({status}):\n{}", p.what, p.log_text());
                    }
                }
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                None
            });
            assert!(
                served.is_some(),
                "nginx on {} does not answer: {last}",
                rs_name(i)
            );
        }
    }

    /// Runs `lbctl ARGS` as an operator would (printed with its output);
    /// it must succeed.
    pub fn lbctl(&self, args: &[&str]) -> String {
        lbd::lbctl(&self.socket, args)
    }

    /// `lbctl -Lnc -o json`: the connection entries.
    pub fn conns(&self) -> Vec<ConnInfo> {
        lbd::conns(&self.socket)
    }

    /// The real servers of the service(s) on `vip` (any address when
    /// `None`) and `port` in `lbctl -Ln`, with their weights.
    pub fn listed(&self, vip: Option<&str>, port: u16) -> Vec<(String, u32)> {
        let rvs::ctl::protocol::Response::Services { services, .. } =
            lbd::lbctl_json(&self.socket, &["-Ln"])
        else {
            panic!("not a service listing");
        };
        services
            .iter()
            .filter(|s| s.spec.key.port == port)
            .filter(|s| vip.map_or(true, |v| s.spec.key.addr.to_string() == v))
            .flat_map(|s| s.dests.iter())
            .map(|d| (d.spec.addr.to_string(), d.spec.weight))
            .collect()
    }

    /// `lbctl -Ln --stats` parsed: the counters of the service line whose
    /// address is `vip_port` (e.g. "10.0.0.100:80") and of its servers.
    pub fn stats(&self, proto: &str, vip_port: &str) -> ServiceStats {
        lbd::stats(&self.socket, proto, vip_port)
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

    /// Real server `i`'s access-log lines caused by the client (not the
    /// harness's readiness probes, which come from the server's own
    /// address).
    pub fn client_log_lines(&self, i: usize) -> Vec<String> {
        let own = format!("{} ", rip(i));
        self.access_log(i)
            .into_iter()
            .filter(|l| !l.starts_with(&own))
            .collect()
    }

    /// Starts wrk from the client in the background (bounded by `-d` and
    /// `--timeout`); [`Topology::finish_wrk`] collects it.
    pub fn start_wrk(&self, wrk: Wrk, url: &str) -> Proc {
        let Wrk {
            threads,
            conns,
            secs,
            timeout_secs,
        } = wrk;
        let line = format!("wrk -t{threads} -c{conns} -d{secs}s --timeout {timeout_secs}s {url}");
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

    /// lbd's PID (to signal it).
    pub fn lbd_pid(&self) -> u32 {
        self.lbd.as_ref().expect("lbd runs").pid()
    }

    /// Rewrites the file lbd was started with (`lbd -c`): the same ports
    /// and workers, then `tables` (services etc., as YAML); a reload reads it.
    pub fn write_config(&self, tables: &str) -> PathBuf {
        let path = self.path("lbd.yaml");
        let text = format!("{}{tables}", self.yaml());
        fs::write(&path, &text).expect("write lbd.yaml");
        println!("lbd.yaml now:\n{text}");
        path
    }

    /// The lbd log so far.
    pub fn lbd_log(&self) -> String {
        fs::read_to_string(self.path("lbd.log")).unwrap_or_default()
    }

    /// Stops lbd with SIGTERM and checks that it exits cleanly.
    pub fn stop_lbd_cleanly(&mut self) {
        if let Some(lbd) = self.lbd.take() {
            lbd.stop_cleanly();
        }
    }
}

/// A bounded wrk run: `-t`, `-c`, `-d` and `--timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Wrk {
    pub threads: u32,
    pub conns: u32,
    pub secs: u32,
    pub timeout_secs: u32,
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
