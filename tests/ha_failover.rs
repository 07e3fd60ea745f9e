//! A director pair that loses nothing (issues #13/#14, reference §5.4
//! F1-F5): two real `lbd` directors run VRRP for the VIP and a
//! connection-sync daemon that follows the VRRP instance (keepalived's
//! `lvs_sync_daemon IF VI`). `d1` (priority 100) starts from YAML with
//! `sync: [{vrrp_instance: VI_1}]`; `d2` (priority 90) starts from a
//! keepalived.conf (`lbd --keepalived`) with `vrrp_instance`,
//! `virtual_server` and `global_defs { lvs_sync_daemon ext VI_1 }`, on
//! ports with a kernel interface — the full VRRP guide running as root.
//!
//! ```text
//!  cl 10.98.0.100 (.101-.104 persistence clients) ─┐
//!  d1 p0 [lbd] kvr 10.98.0.11 ─┤ br0 (outside)
//!  d2 p0 [lbd] kvr 10.98.0.12 ─┤
//!  DR: rs1 10.98.0.21, rs2 .22 (nginx; VIP on lo) ─┘
//!
//!  NAT / FULLNAT, a second segment behind the pair:
//!  d1 p1 [lbd] kvi 10.98.1.11 ─┐
//!  d2 p1 [lbd] kvi 10.98.1.12 ─┤ br1 (inside)
//!  rs1 10.98.1.21 (nginx) ─────┘
//! ```
//!
//! NAT and FULLNAT move the inside address with the VIP as keepalived
//! operators set it up: a second instance `VI_2` on the inside port holds
//! the real servers' gateway 10.98.1.254 (NAT) or the FULLNAT local
//! address 10.98.1.100 the pair shares, and a `vrrp_sync_group` moves
//! VI_1 and VI_2 together (the new master's gratuitous ARPs on each
//! segment repoint the client and the real servers).
//!
//! Traffic through the master: `wrk -t1 -c20 --timeout 10s` (keep-alive)
//! plus 10 `curl --limit-rate` downloads of a 2 MB file; `d1` is killed
//! (SIGKILL) a few seconds in. With sync: no socket error, no non-2xx,
//! every download complete with the right size, and the longest stall
//! (wrk's maximum latency) within VRRP's takeover plus TCP's
//! retransmission backoff. The same run without sync breaks flows (the
//! proof that the test bites). Durations are shortened from the issue's
//! (wrk 14 s, kill at 5 s) to keep each run near 25 s. Also: a clean
//! stop (priority-0 advert); persistence (`-p`: clients keep their real
//! server because the templates are synced, and not without sync); and
//! a clean stop, restart and failback where the restarted `d1` holds the
//! whole table (full resync on join) before its `preempt_delay` lets it
//! take the VIP back.
//!
//! Every test takes the one-at-a-time lock: they share two cores.

mod support;

use std::time::{Duration, Instant};

use support::lbd::{lbctl, Lbd, LBD};
use support::netns::Netns;
use support::process::{poll_until, signal, Proc};
use support::vrrp::{sync_counter, vrrp_state, wait_vrrp_state};

const VIP: &str = "10.98.0.38";
const CLIENT: &str = "10.98.0.100";
/// The real servers on the outside segment (DR).
const RIPS_DR: [&str; 2] = ["10.98.0.21", "10.98.0.22"];
/// The real servers on the inside segment (NAT, FULLNAT).
const RIPS_IN: [&str; 2] = ["10.98.1.21", "10.98.1.22"];
/// The real servers' gateway (NAT): VI_2's address.
const GATEWAY: &str = "10.98.1.254";
/// The FULLNAT local address the pair shares: VI_2's address.
const LIP: &str = "10.98.1.100";
/// Master_Down_Interval of the priority-90 backup.
const MDI_90: f64 = 3.0 + 166.0 / 256.0;
/// Skew_Time of the priority-90 backup (takeover after a priority-0 advert).
const SKEW_90: f64 = 166.0 / 256.0;
/// Master_Down_Interval of the priority-100 director.
const MDI_100: f64 = 3.0 + 156.0 / 256.0;
const BIG_LEN: usize = 2 * 1024 * 1024;
const DOWNLOADS: usize = 10;
const KILL_AFTER: Duration = Duration::from_secs(5);
/// wrk's `--timeout`. Not the issue's 3 s: wrk counts every request slower
/// than its timeout as a "timeout" socket error even when it completes
/// (`stats_record` refuses the latency), and VRRP's takeover alone is
/// 3.65 s, so with 3 s each request in flight at the kill counts as an
/// error while its connection survives (measured: 20 of 20). With 10 s
/// a surviving request is recorded, and wrk's maximum latency is the stall.
const WRK_TIMEOUT_S: u64 = 10;
/// `preempt_delay` of the restarted `d1` in the failback run: the time it
/// stays BACKUP after its start whatever it hears (then it preempts after
/// its Master_Down_Interval).
const PREEMPT_DELAY_S: u32 = 3;

/// The forwarding method under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// DR on one segment.
    Dr,
    /// NAT: the real servers route through the pair's floating gateway.
    Nat,
    /// FULLNAT with one local address shared by the pair.
    FullNat,
}

impl Mode {
    fn rips(self) -> [&'static str; 2] {
        if self == Mode::Dr {
            RIPS_DR
        } else {
            RIPS_IN
        }
    }

    /// VI_2's address on the inside segment (none for DR).
    fn inside_vip(self) -> Option<&'static str> {
        match self {
            Mode::Dr => None,
            Mode::Nat => Some(GATEWAY),
            Mode::FullNat => Some(LIP),
        }
    }
}

/// How a pair is configured.
#[derive(Debug, Clone, Copy)]
struct Setup {
    mode: Mode,
    sync: bool,
    /// Real servers (1 or 2).
    servers: usize,
    /// `persistence_timeout` (`-p`), seconds.
    persistent: Option<u32>,
    /// `d1`'s `preempt_delay`, seconds.
    preempt_delay: u32,
}

impl Setup {
    fn new(mode: Mode, sync: bool) -> Setup {
        Setup {
            mode,
            sync,
            servers: 1,
            persistent: None,
            preempt_delay: 0,
        }
    }
}

struct World {
    // Drop order: the real servers' processes, then the namespaces.
    _nginx: Vec<Proc>,
    _sw: Netns,
    cl: Netns,
    d1: Netns,
    d2: Netns,
    rs: Vec<Netns>,
    setup: Setup,
    dir: tempfile::TempDir,
}

impl World {
    fn new(setup: Setup) -> World {
        let sw = Netns::new("haf-sw");
        let cl = Netns::ipv4_host("haf-cl");
        let d1 = Netns::ipv4_host("haf-d1");
        let d2 = Netns::ipv4_host("haf-d2");
        let rs: Vec<Netns> = (0..setup.servers)
            .map(|i| Netns::ipv4_host(&format!("haf-rs{}", i + 1)))
            .collect();
        let inside = setup.mode != Mode::Dr;
        let bridges: &[&str] = if inside { &["br0", "br1"] } else { &["br0"] };
        for br in bridges {
            sw.ip(&["link", "add", br, "type", "bridge"]);
            sw.ip(&["link", "set", br, "up"]);
        }
        let mut links = vec![
            ("s-cl", &cl, "eth0", "br0"),
            ("s-d1", &d1, "p0", "br0"),
            ("s-d2", &d2, "p0", "br0"),
        ];
        if inside {
            links.push(("i-d1", &d1, "p1", "br1"));
            links.push(("i-d2", &d2, "p1", "br1"));
        }
        let rs_ports: Vec<String> = (0..rs.len()).map(|i| format!("s-rs{}", i + 1)).collect();
        for (i, ns) in rs.iter().enumerate() {
            links.push((&rs_ports[i], ns, "eth0", if inside { "br1" } else { "br0" }));
        }
        // Segmentation offloads off: an AF_PACKET port takes frames of the
        // link's MTU, not the veth's 64 KB GSO super-frames (NAT and
        // FULLNAT forward the downloads' data).
        let no_offload = |i: &str| format!("ethtool -K {i} tso off gso off gro off >/dev/null");
        for (port, ns, ifname, br) in links {
            sw.add_veth(port, ns, ifname);
            sw.ip(&["link", "set", port, "master", br]);
            sw.ip(&["link", "set", port, "up"]);
            ns.ip(&["link", "set", ifname, "up"]);
            sw.sh(&no_offload(port));
            ns.sh(&no_offload(ifname));
        }
        cl.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"]);
        // The persistence clients' own source addresses.
        for c in persistence_clients() {
            cl.ip(&["addr", "add", &format!("{c}/24"), "dev", "eth0"]);
        }
        // A small receive buffer keeps each download on the wire for its
        // whole length (else the server pushes the 2 MB into the client's
        // socket at once and curl's rate limit only drains it locally).
        cl.sh("sysctl -qw net.ipv4.tcp_rmem=\"4096 32768 65536\"");
        for (ns, rip) in rs.iter().zip(setup.mode.rips()) {
            ns.ip(&["addr", "add", &format!("{rip}/24"), "dev", "eth0"]);
            match setup.mode {
                Mode::Dr => {
                    ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
                    ns.sh(
                        "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
                         sysctl -qw net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2",
                    );
                }
                // The replies go back through the floating gateway.
                Mode::Nat => {
                    ns.ip(&["route", "add", "default", "via", GATEWAY]);
                }
                // The replies go to the local address, on the segment.
                Mode::FullNat => {}
            }
        }
        let w = World {
            _nginx: Vec::new(),
            _sw: sw,
            cl,
            d1,
            d2,
            rs,
            setup,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let nginx = (0..w.rs.len()).map(|i| w.start_nginx(i)).collect();
        World { _nginx: nginx, ..w }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// nginx on real server `i`: `/` answers `rsN`, `/big` is 2 MB.
    fn start_nginx(&self, i: usize) -> Proc {
        let d = self.path(&format!("rs{}", i + 1));
        std::fs::create_dir_all(d.join("www")).expect("www");
        std::fs::create_dir_all(d.join("tmp")).expect("tmp");
        std::fs::write(d.join("www/index.html"), format!("rs{}\n", i + 1)).expect("index");
        std::fs::write(d.join("www/big"), vec![b'x'; BIG_LEN]).expect("big");
        let dd = d.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {dd}/nginx.pid;\n\
             error_log {dd}/error.log warn;\nevents {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_body_temp_path {dd}/tmp;\n\
             server {{ listen 80; root {dd}/www; }}\n}}\n"
        );
        std::fs::write(d.join("nginx.conf"), conf).expect("nginx.conf");
        let mut cmd = self.rs[i].cmd("nginx");
        cmd.arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"));
        Proc::spawn(&format!("nginx rs{}", i + 1), cmd, &d.join("nginx.out"))
    }

    /// The ports of director `n` (1 or 2): `ext` (kernel interface `kvr`)
    /// and, behind the pair, `int` (`kvi`).
    fn ports_yaml(&self, n: u8) -> String {
        let mut out = format!(
            "workers: {{count: 1, idle: backoff}}\n\
             ports:\n\
             \x20 - {{name: ext, driver: af_packet, ifname: p0, addrs: [\"10.98.0.1{n}/24\"], kernel_if: kvr}}\n"
        );
        if self.setup.mode != Mode::Dr {
            out.push_str(&format!(
                "\x20 - {{name: int, driver: af_packet, ifname: p1, addrs: [\"10.98.1.1{n}/24\"], kernel_if: kvi}}\n"
            ));
        }
        out
    }

    /// `d1` from YAML: priority 100, its sync daemon following VI_1.
    fn start_d1(&self) -> Lbd {
        let setup = &self.setup;
        let socket = self.path("d1.sock");
        let sync_line = if setup.sync {
            "sync: [{interface: kvr, syncid: 51, vrrp_instance: VI_1}]\n"
        } else {
            ""
        };
        let fwd = match setup.mode {
            Mode::Dr => "route",
            Mode::Nat => "masq",
            Mode::FullNat => "fullnat",
        };
        let dests: Vec<String> = setup.mode.rips()[..setup.servers]
            .iter()
            .map(|r| format!("{{addr: {r}, port: 80, fwd: {fwd}}}"))
            .collect();
        let persistent = setup
            .persistent
            .map_or(String::new(), |p| format!("persistent: {p}, "));
        let laddrs = if setup.mode == Mode::FullNat {
            format!("laddrs: [{{addr: {LIP}, ifname: int}}], ")
        } else {
            String::new()
        };
        let instance = |name: &str, port: &str, vrid: u8, vip: &str| {
            format!(
                "\x20   - {{name: {name}, interface: {port}, virtual_router_id: {vrid}, priority: 100, advert_int: 1, \
                 preempt_delay: {}, authentication: {{auth_type: PASS, auth_pass: \"1111\"}}, virtual_ipaddress: [{vip}]}}\n",
                setup.preempt_delay
            )
        };
        let mut vrrp = format!(
            "vrrp:\n\x20 instances:\n{}",
            instance("VI_1", "ext", 51, VIP)
        );
        if let Some(inside) = setup.mode.inside_vip() {
            vrrp.push_str(&instance("VI_2", "int", 52, inside));
            vrrp.push_str("\x20 sync_groups:\n\x20   - {name: G1, group: [VI_1, VI_2]}\n");
        }
        let yaml = format!(
            "socket: {}\n{}\
             services:\n\
             \x20 - {{proto: tcp, vip: {VIP}, port: 80, scheduler: rr, {persistent}{laddrs}dests: [{}]}}\n\
             {vrrp}{sync_line}",
            socket.display(),
            self.ports_yaml(1),
            dests.join(", "),
        );
        let conf = self.path("d1.yaml");
        std::fs::write(&conf, yaml).expect("config");
        let mut cmd = self.d1.cmd(LBD);
        cmd.arg("--config").arg(&conf);
        Lbd::start("d1", cmd, &socket, &self.path("d1.log"))
    }

    /// `d2` from keepalived.conf: BACKUP 90, `lvs_sync_daemon ext VI_1`
    /// (and the sync group, the local address group as DPVS writes it).
    fn start_d2(&self) -> Lbd {
        let setup = &self.setup;
        let socket = self.path("d2.sock");
        let ports = self.path("d2-ports.yaml");
        std::fs::write(&ports, self.ports_yaml(2)).expect("ports");
        let mut conf = if setup.sync {
            "global_defs {\n    router_id LVS_BACKUP\n    lvs_sync_daemon ext VI_1\n}\n".to_string()
        } else {
            "global_defs {\n    router_id LVS_BACKUP\n}\n".to_string()
        };
        let instance = |name: &str, port: &str, vrid: u8, vip: &str| {
            format!(
                "vrrp_instance {name} {{\n    state BACKUP\n    interface {port}\n    virtual_router_id {vrid}\n    priority 90\n    advert_int 1\n\
                 \x20   authentication {{\n        auth_type PASS\n        auth_pass 1111\n    }}\n\
                 \x20   virtual_ipaddress {{\n        {vip}\n    }}\n}}\n"
            )
        };
        conf.push_str(&instance("VI_1", "ext", 51, VIP));
        if let Some(inside) = setup.mode.inside_vip() {
            conf.push_str(&instance("VI_2", "int", 52, inside));
            conf.push_str(
                "vrrp_sync_group G1 {\n    group {\n        VI_1\n        VI_2\n    }\n}\n",
            );
        }
        let (kind, mut extra) = match setup.mode {
            Mode::Dr => ("DR", String::new()),
            Mode::Nat => ("NAT", String::new()),
            Mode::FullNat => {
                conf.push_str(&format!(
                    "local_address_group laddr_g1 {{\n    {LIP} int\n}}\n"
                ));
                ("FNAT", "    laddr_group_name laddr_g1\n".to_string())
            }
        };
        if let Some(p) = setup.persistent {
            extra.push_str(&format!("    persistence_timeout {p}\n"));
        }
        conf.push_str(&format!(
            "virtual_server {VIP} 80 {{\n    lb_algo rr\n    lb_kind {kind}\n    protocol TCP\n{extra}"
        ));
        for r in &setup.mode.rips()[..setup.servers] {
            conf.push_str(&format!(
                "    real_server {r} 80 {{\n        weight 1\n    }}\n"
            ));
        }
        conf.push_str("}\n");
        let file = self.path("keepalived.conf");
        std::fs::write(&file, conf).expect("keepalived.conf");
        let mut cmd = self.d2.cmd(LBD);
        cmd.arg("--keepalived")
            .arg(&file)
            .arg("-c")
            .arg(&ports)
            .arg("--socket")
            .arg(&socket);
        Lbd::start("d2", cmd, &socket, &self.path("d2.log"))
    }

    /// Starts both directors; returns once `d1` is MASTER, `d2` BACKUP,
    /// their sync daemons follow them, and the VIP answers through `d1`.
    fn start_pair(&self) -> (Lbd, Lbd) {
        let d1 = self.start_d1();
        let d2 = self.start_d2();
        wait_vrrp_state(&d1, "MASTER", Duration::from_secs(8));
        wait_vrrp_state(&d2, "BACKUP", Duration::from_secs(2));
        if self.setup.sync {
            wait_sync_role(&d1, "master", Duration::from_secs(3));
            wait_sync_role(&d2, "backup", Duration::from_secs(3));
        }
        let url = format!("http://{VIP}/");
        let served = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let o = self.cl.output("curl", &["-s", "-m", "1", &url]);
            (o.status.success() && o.stdout.starts_with(b"rs")).then_some(())
        });
        assert!(
            served.is_some(),
            "the VIP is not served through d1:\n{}",
            d1.log_text()
        );
        (d1, d2)
    }
}

/// Waits (bounded) until `lbd`'s sync daemon runs as `role` (`master`,
/// `backup`), as `lbctl -L --daemon` lists it.
fn wait_sync_role(lbd: &Lbd, role: &str, limit: Duration) {
    let want = format!("{role} sync daemon (mcast=kvr, syncid=51");
    let listed = poll_until(limit, Duration::from_millis(20), || {
        lbctl(lbd.socket(), &["-L", "--daemon"])
            .contains(&want)
            .then_some(())
    });
    assert!(
        listed.is_some(),
        "the sync daemon is not {role}: {}",
        lbctl(lbd.socket(), &["-L", "--daemon"])
    );
}

/// The source addresses of the persistence clients.
fn persistence_clients() -> Vec<String> {
    (101..105).map(|i| format!("10.98.0.{i}")).collect()
}

/// What one run saw.
struct Outcome {
    wrk: String,
    requests: u64,
    socket_errors: u64,
    non_2xx: u64,
    /// wrk's longest request (s): the longest stall a client saw.
    max_latency: f64,
    /// Bytes of each download, and whether curl exited 0.
    downloads: Vec<(usize, bool)>,
}

/// A wrk latency like `1.23s`, `456.78ms`, `12.00us`.
fn seconds(text: &str) -> f64 {
    let (num, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| text.split_at(i))
        .unwrap_or((text, "s"));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "m" => n * 60.0,
        _ => n,
    }
}

fn parse_wrk(wrk: &str) -> (u64, u64, u64, f64) {
    let num = |s: &str| s.trim_end_matches(',').parse::<u64>().unwrap_or(0);
    let mut out = (0, 0, 0, f64::NAN);
    for line in wrk.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["Latency", _avg, _stdev, max, ..] => out.3 = seconds(max),
            [n, "requests", "in", ..] => out.0 = num(n),
            ["Socket", "errors:", rest @ ..] => {
                out.1 = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum()
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => out.2 = num(n),
            _ => {}
        }
    }
    out
}

/// How the master goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// SIGKILL: the backup takes over after Master_Down_Interval.
    Kill,
    /// SIGTERM: priority-0 advert, the backup takes over after Skew_Time.
    Stop,
    /// SIGTERM, then `d1` restarts and takes the VIP back once its
    /// `preempt_delay` has passed (having the whole table by then).
    StopAndFailback,
}

/// The traffic's length and each download's rate (2 MB in about the wrk
/// run's length, so that every download spans the failover(s)).
fn durations(how: Failure) -> (u64, &'static str) {
    match how {
        Failure::Kill | Failure::Stop => (14, "200k"),
        Failure::StopAndFailback => (20, "120k"),
    }
}

/// What the failback showed, last seen while the restarted `d1` was still
/// BACKUP: the established connections in its table and in `d2`'s, the resync
/// requests it sent and `d2` served; and the seconds from the restart to
/// `d1` MASTER, and to it first holding as many as `d2`.
struct Failback {
    table_after: Option<f64>,
    d1_conns: usize,
    d2_conns: usize,
    resyncs_sent: u64,
    resyncs_served: u64,
    restart_to_master: f64,
}

/// ESTABLISHED connections of `lbd` to the VIP (closing ones may expire
/// at different moments on the two directors).
fn established(lbd: &Lbd) -> usize {
    support::lbd::conns(lbd.socket())
        .iter()
        .filter(|c| c.state == "ESTABLISHED" && c.vaddr.ip().to_string() == VIP)
        .count()
}

/// Starts the pair, runs the traffic through the master, then the master
/// goes (`how`). Returns what the client saw and, for a failback, what it
/// showed (the takeover, from the master's end to `d2` MASTER, is printed).
fn run(setup: Setup, how: Failure) -> (Outcome, Option<Failback>) {
    let w = World::new(setup);
    let (mut d1, d2) = w.start_pair();
    let (wrk_secs, rate) = durations(how);
    let url = format!("http://{VIP}/");
    let mut downloads: Vec<(Proc, std::path::PathBuf)> = (0..DOWNLOADS)
        .map(|i| {
            let file = w.path(&format!("big-{i}"));
            let mut cmd = w.cl.cmd("curl");
            cmd.args(["-s", "-S", "--limit-rate", rate, "-m", "35", "-o"])
                .arg(&file)
                .arg(format!("{url}big"));
            (
                Proc::spawn("curl", cmd, &w.path(&format!("curl-{i}.log"))),
                file,
            )
        })
        .collect();
    let mut wrk_cmd = w.cl.cmd("wrk");
    wrk_cmd.args([
        "-t1",
        "-c20",
        &format!("-d{wrk_secs}s"),
        "--timeout",
        &format!("{WRK_TIMEOUT_S}s"),
        &url,
    ]);
    let mut wrk = Proc::spawn("wrk", wrk_cmd, &w.path("wrk.log"));
    let start = Instant::now();
    std::thread::sleep(KILL_AFTER);
    let sig = match how {
        Failure::Kill => libc::SIGKILL,
        Failure::Stop | Failure::StopAndFailback => libc::SIGTERM,
    };
    signal(d1.pid() as i32, sig);
    let killed = start.elapsed();
    let took_over = poll_until(Duration::from_secs(6), Duration::from_millis(20), || {
        (vrrp_state(&d2) == "MASTER").then(Instant::now)
    });
    let took_over = took_over.unwrap_or_else(|| panic!("d2 did not take over:\n{}", d2.log_text()));
    let takeover = (took_over - start).as_secs_f64() - killed.as_secs_f64();
    if setup.sync {
        wait_sync_role(&d2, "master", Duration::from_secs(2));
    }
    let mut failback = None;
    if how == Failure::StopAndFailback {
        let status = d1.stop(Duration::from_secs(3));
        assert!(
            status.is_some_and(|s| s.success()),
            "d1 did not stop by itself after SIGTERM ({status:?}):\n{}",
            d1.log_text()
        );
        drop(d1);
        let restarted = Instant::now();
        d1 = w.start_d1();
        // Until d1 is MASTER again: both tables and the resync counters,
        // last seen while d1 was BACKUP.
        let mut last = (0, 0, 0, 0);
        let mut table_after = None;
        let master = poll_until(Duration::from_secs(15), Duration::from_millis(20), || {
            if vrrp_state(&d1) == "MASTER" {
                return Some(Instant::now());
            }
            last = (
                established(&d1),
                established(&d2),
                sync_counter(&d1, "resync_requests_sent"),
                sync_counter(&d2, "resync_requests_served"),
            );
            if table_after.is_none() && last.1 > 0 && last.0 >= last.1 {
                table_after = Some(restarted.elapsed().as_secs_f64());
            }
            None
        });
        let master =
            master.unwrap_or_else(|| panic!("d1 did not take the VIP back:\n{}", d1.log_text()));
        wait_vrrp_state(&d2, "BACKUP", Duration::from_secs(2));
        wait_sync_role(&d1, "master", Duration::from_secs(2));
        wait_sync_role(&d2, "backup", Duration::from_secs(2));
        failback = Some(Failback {
            table_after,
            d1_conns: last.0,
            d2_conns: last.1,
            resyncs_sent: last.2,
            resyncs_served: last.3,
            restart_to_master: (master - restarted).as_secs_f64(),
        });
    }
    wrk.wait_for(Duration::from_secs(wrk_secs + 10));
    let outcome_downloads: Vec<(usize, bool)> = downloads
        .iter_mut()
        .map(|(p, file)| {
            let ok = p.wait_for(Duration::from_secs(40)).success();
            (std::fs::metadata(file).map_or(0, |m| m.len() as usize), ok)
        })
        .collect();
    let text = wrk.log_text();
    let (requests, socket_errors, non_2xx, max_latency) = parse_wrk(&text);
    println!(
        "HA_FAILOVER {:?} sync={} {how:?}: master gone at {:.1} s, takeover {takeover:.3} s; {requests} requests, socket errors {socket_errors}, non-2xx {non_2xx}, longest stall {max_latency:.3} s\n{text}",
        setup.mode,
        setup.sync,
        killed.as_secs_f64()
    );
    if let Some(f) = &failback {
        println!(
            "HA_FAILOVER {:?} failback: d1 MASTER {:.3} s after its restart (preempt_delay {PREEMPT_DELAY_S} s), \
             holding d2's table {:?} s after it; while BACKUP it held {} established connections (d2 {}), resync requests sent {}, served by d2 {}",
            setup.mode,
            f.restart_to_master,
            f.table_after,
            f.d1_conns,
            f.d2_conns,
            f.resyncs_sent,
            f.resyncs_served
        );
    }
    println!("downloads (bytes, curl ok): {outcome_downloads:?}");
    println!("{}", lbctl(d2.socket(), &["-L", "--daemon", "--exact"]));
    if how == Failure::StopAndFailback {
        println!("{}", lbctl(d1.socket(), &["-L", "--daemon", "--exact"]));
        d1.stop_cleanly();
    } else {
        drop(d1);
    }
    d2.stop_cleanly();
    let outcome = Outcome {
        wrk: text,
        requests,
        socket_errors,
        non_2xx,
        max_latency,
        downloads: outcome_downloads,
    };
    (outcome, failback)
}

/// Every request answered, every download complete with the right size.
fn assert_lost_nothing(o: &Outcome) {
    assert!(o.requests > 0, "{}", o.wrk);
    assert_eq!(o.socket_errors, 0, "{}", o.wrk);
    assert_eq!(o.non_2xx, 0, "{}", o.wrk);
    for (i, (len, ok)) in o.downloads.iter().enumerate() {
        assert!(
            *ok && *len == BIG_LEN,
            "download {i}: {len} bytes, curl ok {ok}"
        );
    }
}

/// The kill run with sync lost nothing, and the requests in flight at the
/// kill waited through the takeover and one backed-off retransmission.
fn assert_survived_kill(o: &Outcome) {
    assert_lost_nothing(o);
    // VRRP's takeover plus one retransmission timeout of the waiting
    // flows, backed off four times by then: 16 × their RTO (200 ms at
    // least, more with the RTT variance of this shared machine; measured
    // stalls 6.64-6.93 s).
    let bound = MDI_90 + 3.2 + 1.0;
    assert!(
        o.max_latency <= bound,
        "longest stall {:.3} s > {bound:.3} s",
        o.max_latency
    );
    // The requests in flight at the kill survived it: wrk recorded them
    // (a request whose connection died is never recorded).
    assert!(
        o.max_latency >= MDI_90 - 1.0,
        "no request waited through the takeover: {:.3} s",
        o.max_latency
    );
}

/// Without sync the new master drops the flows' packets (no entry, not a
/// SYN): every download stalls and no request in flight at the kill ever
/// completes (wrk counts none of them as an error: they simply never end,
/// so its longest recorded request stays short).
fn assert_broken_kill(mode: Mode, o: &Outcome) {
    let broken = o
        .downloads
        .iter()
        .filter(|(len, ok)| !ok || *len != BIG_LEN)
        .count();
    println!(
        "HA_FAILOVER {mode:?} without sync: {} socket errors, {} non-2xx, {broken}/{DOWNLOADS} downloads broken, longest recorded request {:.3} s",
        o.socket_errors, o.non_2xx, o.max_latency
    );
    assert_eq!(broken, DOWNLOADS, "{:?}", o.downloads);
    assert!(
        o.max_latency < MDI_90,
        "a request survived the takeover without sync\n{}",
        o.wrk
    );
}

/// The real server (`rs1`, `rs2`) each persistence client reaches with one
/// request of its own (a new connection from its own address), asked in
/// `order`.
fn servers_seen(w: &World, order: &[usize]) -> Vec<(usize, String)> {
    let clients = persistence_clients();
    order
        .iter()
        .map(|&i| {
            let o = w.cl.output(
                "curl",
                &[
                    "-s",
                    "-m",
                    "3",
                    "--interface",
                    &clients[i],
                    &format!("http://{VIP}/"),
                ],
            );
            let body = String::from_utf8_lossy(&o.stdout).trim().to_string();
            assert!(
                o.status.success() && body.starts_with("rs"),
                "client {} got no answer: {o:?}",
                clients[i]
            );
            (i, body)
        })
        .collect()
}

/// Persistence (`-p 300`, rr over two real servers, DR): each client
/// reaches one real server through `d1`; `d1` is killed; each client asks
/// again through `d2`. Returns (client, server before, server after).
fn run_persistence(sync: bool) -> Vec<(usize, String, String)> {
    let setup = Setup {
        servers: 2,
        persistent: Some(300),
        ..Setup::new(Mode::Dr, sync)
    };
    let w = World::new(setup);
    let (d1, d2) = w.start_pair();
    let n = persistence_clients().len();
    // Round robin: clients 0 and 2 share a server, 1 and 3 the other.
    let before = servers_seen(&w, &(0..n).collect::<Vec<_>>());
    if sync {
        // Each client's template (and its connection) reached d2.
        let got = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
            (sync_counter(&d2, "installed") >= 2 * n as u64).then_some(())
        });
        assert!(
            got.is_some(),
            "d2 did not install the templates: {}",
            lbctl(d2.socket(), &["-L", "--daemon", "--exact"])
        );
    }
    let start = Instant::now();
    signal(d1.pid() as i32, libc::SIGKILL);
    wait_vrrp_state(&d2, "MASTER", Duration::from_secs(6));
    println!(
        "HA_FAILOVER persistence sync={sync}: takeover {:.3} s",
        start.elapsed().as_secs_f64()
    );
    // Asked in an order that round robin cannot map onto the first one:
    // without templates, clients 0 and 2 (one server before) are
    // scheduled one after the other, so they get different servers.
    let after = servers_seen(&w, &[0, 2, 1, 3]);
    println!("{}", lbctl(d2.socket(), &["-Lnc"]));
    drop(d1);
    d2.stop_cleanly();
    before
        .iter()
        .map(|(i, b)| {
            let a = after
                .iter()
                .find(|(j, _)| j == i)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            (*i, b.clone(), a)
        })
        .collect()
}

const TOOLS: &[&str] = &["ip", "nginx", "curl", "wrk", "ethtool"];

/// The SIGKILL run of `mode` with sync loses nothing; without sync it
/// breaks the flows.
fn kill_with_and_without_sync(mode: Mode) {
    let (with, _) = run(Setup::new(mode, true), Failure::Kill);
    assert_survived_kill(&with);
    let (without, _) = run(Setup::new(mode, false), Failure::Kill);
    assert_broken_kill(mode, &without);
}

/// After a priority-0 advert: Skew_Time (0.648 s), plus the waiting flows'
/// retransmission (200 ms backed off to 0.8 s by then).
fn assert_clean_stop_stall(o: &Outcome) {
    let bound = SKEW_90 + 0.8 + 0.8;
    assert!(
        o.max_latency <= bound,
        "longest stall {:.3} s > {bound:.3} s",
        o.max_latency
    );
}

#[test]
fn killing_the_master_of_a_synced_pair_loses_no_request_and_no_download_and_without_sync_it_does() {
    if !support::needs_root("ha_failover", TOOLS) {
        return;
    }
    let _serial = support::serial();
    kill_with_and_without_sync(Mode::Dr);
}

#[test]
fn stopping_the_master_of_a_synced_pair_cleanly_loses_nothing_and_stalls_less() {
    if !support::needs_root("ha_failover", TOOLS) {
        return;
    }
    let _serial = support::serial();
    let (out, _) = run(Setup::new(Mode::Dr, true), Failure::Stop);
    assert_lost_nothing(&out);
    assert_clean_stop_stall(&out);
}

#[test]
fn nat_pair_moving_the_vip_and_the_servers_gateway_with_vrrp_loses_nothing_with_sync_and_breaks_without(
) {
    if !support::needs_root("ha_failover nat", TOOLS) {
        return;
    }
    let _serial = support::serial();
    kill_with_and_without_sync(Mode::Nat);
}

#[test]
fn fullnat_pair_moving_the_shared_local_address_with_vrrp_loses_nothing_with_sync() {
    if !support::needs_root("ha_failover fullnat", TOOLS) {
        return;
    }
    let _serial = support::serial();
    let (with, _) = run(Setup::new(Mode::FullNat, true), Failure::Kill);
    assert_survived_kill(&with);
}

#[test]
fn persistent_clients_keep_their_real_server_across_a_failover_with_sync_and_not_without() {
    if !support::needs_root("ha_failover persistence", TOOLS) {
        return;
    }
    let _serial = support::serial();
    let with = run_persistence(true);
    println!("HA_FAILOVER persistence with sync (client, before, after): {with:?}");
    assert!(
        with.iter().all(|(_, b, a)| a == b),
        "a client changed its real server: {with:?}"
    );
    assert!(
        with.iter().any(|(_, b, _)| b == "rs1") && with.iter().any(|(_, b, _)| b == "rs2"),
        "the clients were spread over both servers: {with:?}"
    );
    let without = run_persistence(false);
    println!("HA_FAILOVER persistence without sync (client, before, after): {without:?}");
    assert!(
        without.iter().any(|(_, b, a)| a != b),
        "without sync every client kept its server: {without:?}"
    );
}

#[test]
fn stopped_master_restarts_gets_the_table_before_preempting_and_fails_back_losing_nothing() {
    if !support::needs_root("ha_failover failback", TOOLS) {
        return;
    }
    let _serial = support::serial();
    let setup = Setup {
        preempt_delay: PREEMPT_DELAY_S,
        ..Setup::new(Mode::Dr, true)
    };
    let (out, failback) = run(setup, Failure::StopAndFailback);
    let f = failback.expect("a failback run");
    // The full resync on join: before preempting, the restarted d1 asked
    // for d2's table, got it, and held every connection (wrk's 20, the 10
    // downloads).
    assert!(
        f.resyncs_sent >= 1 && f.resyncs_served >= 1,
        "resync requests sent {}, served {}",
        f.resyncs_sent,
        f.resyncs_served
    );
    assert!(
        f.d2_conns >= 20 + DOWNLOADS && f.d1_conns >= f.d2_conns,
        "d1 preempted holding {} connections of d2's {}",
        f.d1_conns,
        f.d2_conns
    );
    // preempt_delay held it back (until then each of d2's adverts, one a
    // second, restarted its timer), then its Master_Down_Interval ran out:
    // later than the Master_Down_Interval alone.
    let earliest = f64::from(PREEMPT_DELAY_S) + MDI_100 - 1.0;
    assert!(
        f.restart_to_master >= earliest,
        "d1 preempted {:.3} s after its restart",
        f.restart_to_master
    );
    assert_lost_nothing(&out);
    assert_clean_stop_stall(&out);
}
