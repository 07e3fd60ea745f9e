//! Two lbd directors as a VRRP MASTER/BACKUP pair with a real client and a
//! real server (issue #13, "lbd ↔ lbd with clients"). One bridge (`sw`)
//! joins the client (10.99.0.100, curl), directors `d1` (priority 100) and
//! `d2` (priority 90) — each lbd on AF_PACKET with its kernel interface
//! holding 10.99.0.11 / .12 — and a real server (10.99.0.21, nginx, DR: the
//! VIP 10.99.0.38 on its loopback, ARP silenced). A bounded client loop
//! fetches the VIP through the master; `d1` is killed (SIGKILL); the client
//! must be served again by `d2` within the VRRP bound (Master_Down_Interval
//! 3.648 s, plus the client's 1 s request timeout and its retry), found by
//! the GARPs `d2` sends. Established connections are not synced yet (new
//! ones succeed); the test reports the longest gap between answers. An
//! address tied to the instance (`virtual_ipaddress_excluded`) moves too.

mod support;

use std::time::{Duration, Instant};

use support::lbd::{lbctl, Lbd, LBD};
use support::netns::Netns;
use support::process::{signal, Proc};
use support::vrrp::{vrrp_json, wait_vrrp_state};

const VIP: &str = "10.99.0.38";
/// An address tied to the instance but not carried in adverts (as a
/// FULLNAT local address or an inside gateway would be).
const EXCLUDED: &str = "10.99.0.39";
/// Master_Down_Interval of the priority-90 backup.
const MDI_90: f64 = 3.0 + 166.0 / 256.0;
/// The client's per-request timeout (curl `-m`).
const REQUEST_TIMEOUT_S: f64 = 1.0;
/// Bounded client loop: at most this long after the kill.
const AFTER_KILL: Duration = Duration::from_secs(10);

struct World {
    _sw: Netns,
    cl: Netns,
    d1: Netns,
    d2: Netns,
    rs: Netns,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let sw = Netns::new("vp-sw");
        let cl = Netns::ipv4_host("vp-cl");
        let d1 = Netns::ipv4_host("vp-d1");
        let d2 = Netns::ipv4_host("vp-d2");
        let rs = Netns::ipv4_host("vp-rs");
        sw.ip(&["link", "add", "br0", "type", "bridge"]);
        sw.ip(&["link", "set", "br0", "up"]);
        for (port, ns, ifname) in [
            ("s-cl", &cl, "eth0"),
            ("s-d1", &d1, "p0"),
            ("s-d2", &d2, "p0"),
            ("s-rs", &rs, "eth0"),
        ] {
            sw.add_veth(port, ns, ifname);
            sw.ip(&["link", "set", port, "master", "br0"]);
            sw.ip(&["link", "set", port, "up"]);
            ns.ip(&["link", "set", ifname, "up"]);
        }
        cl.ip(&["addr", "add", "10.99.0.100/24", "dev", "eth0"]);
        rs.ip(&["addr", "add", "10.99.0.21/24", "dev", "eth0"]);
        rs.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        rs.sh(
            "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
             sysctl -qw net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2",
        );
        World {
            _sw: sw,
            cl,
            d1,
            d2,
            rs,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn start_nginx(&self) -> Proc {
        let d = self.path("rs");
        std::fs::create_dir_all(d.join("www")).expect("www");
        std::fs::create_dir_all(d.join("tmp")).expect("tmp");
        std::fs::write(d.join("www/index.html"), "rs1\n").expect("index");
        let dd = d.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {dd}/nginx.pid;\n\
             error_log {dd}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log {dd}/access.log;\n  client_body_temp_path {dd}/tmp;\n\
             server {{ listen 80; root {dd}/www; }}\n}}\n"
        );
        std::fs::write(d.join("nginx.conf"), conf).expect("nginx.conf");
        let mut cmd = self.rs.cmd("nginx");
        cmd.arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"));
        Proc::spawn("nginx rs", cmd, &self.path("nginx.out"))
    }

    fn start_lbd(&self, ns: &Netns, name: &str, addr: &str, priority: u8) -> Lbd {
        let socket = self.path(&format!("{name}.sock"));
        let yaml = format!(
            "socket: {}\n\
             metrics: {{listen: \"127.0.0.1:9100\"}}\n\
             workers: {{count: 1, idle: backoff}}\n\
             ports:\n\
             \x20 - {{name: ext, driver: af_packet, ifname: p0, addrs: [\"{addr}/24\"], kernel_if: kvr}}\n\
             services:\n\
             \x20 - {{proto: tcp, vip: {VIP}, port: 80, scheduler: rr, dests: [{{addr: 10.99.0.21, port: 80, fwd: route}}]}}\n\
             vrrp:\n\
             \x20 instances:\n\
             \x20   - {{name: VI_1, interface: ext, virtual_router_id: 51, priority: {priority}, advert_int: 1, \
             authentication: {{auth_type: PASS, auth_pass: \"1111\"}}, virtual_ipaddress: [{VIP}], \
             virtual_ipaddress_excluded: [{EXCLUDED}]}}\n",
            socket.display()
        );
        let conf = self.path(&format!("{name}.yaml"));
        std::fs::write(&conf, yaml).expect("config");
        let mut cmd = ns.cmd(LBD);
        cmd.arg("--config").arg(&conf);
        Lbd::start(name, cmd, &socket, &self.path(&format!("{name}.log")))
    }

    /// The client's ARP entry's MAC for `addr` after one bounded ping
    /// (None: no answer).
    fn pinged_mac(&self, addr: &str) -> Option<String> {
        let ping = self.cl.output("ping", &["-c", "1", "-W", "1", addr]);
        if !ping.status.success() {
            return None;
        }
        let neigh = self.cl.sh(&format!("ip neigh show {addr}"));
        neigh
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(String::from)
    }

    /// The VRRP mastership lbd in `ns` exports (`rvs_vrrp_master`).
    fn exported_master(ns: &Netns) -> String {
        let text = ns.sh("curl -s -m 2 http://127.0.0.1:9100/metrics");
        text.lines()
            .find(|l| l.starts_with("rvs_vrrp_master{instance=\"VI_1\"}"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("no rvs_vrrp_master in:\n{text}"))
            .to_string()
    }

    /// lbd's port MAC in `ns`.
    fn port_mac(ns: &Netns) -> String {
        ns.sh("cat /sys/class/net/p0/address").trim().to_string()
    }

    /// One bounded request to the VIP: whether it was answered by the page.
    fn fetch(&self) -> bool {
        let out = self.cl.output(
            "curl",
            &[
                "-s",
                "-m",
                &REQUEST_TIMEOUT_S.to_string(),
                &format!("http://{VIP}/"),
            ],
        );
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "rs1"
    }
}

#[test]
fn killing_the_master_lbd_moves_the_vip_to_the_backup_lbd_within_the_vrrp_bound() {
    if !support::needs_root("vrrp_pair", &["ip", "nginx", "curl"]) {
        return;
    }
    let _serial = support::serial();
    let w = World::new();
    let _nginx = w.start_nginx();
    let d1 = w.start_lbd(&w.d1, "d1", "10.99.0.11", 100);
    let d2 = w.start_lbd(&w.d2, "d2", "10.99.0.12", 90);
    wait_vrrp_state(&d1, "MASTER", Duration::from_secs(8));
    wait_vrrp_state(&d2, "BACKUP", Duration::from_secs(2));
    let backup = vrrp_json(&d2);
    assert_eq!(backup["instances"][0]["master"], "10.99.0.11", "{backup}");

    // The client is served through the master.
    let served = (0..50).find(|_| w.fetch());
    assert!(served.is_some(), "the VIP is not served through d1");
    let mut last_ok = Instant::now();
    for _ in 0..3 {
        assert!(w.fetch(), "a request through the master failed");
        last_ok = Instant::now();
    }
    // The excluded address answers through the master too.
    assert_eq!(
        w.pinged_mac(EXCLUDED),
        Some(World::port_mac(&w.d1)),
        "the excluded address is not d1's"
    );
    assert_eq!(World::exported_master(&w.d1), "1");
    assert_eq!(World::exported_master(&w.d2), "0");
    let before = lbctl(d2.socket(), &["-Ln", "--stats"]);
    println!("{before}");

    // Kill the master; a bounded client loop until it is served again.
    let kill = Instant::now();
    signal(d1.pid() as i32, libc::SIGKILL);
    let (mut failures, mut back) = (0u32, None);
    while kill.elapsed() < AFTER_KILL {
        if w.fetch() {
            back = Some(Instant::now());
            break;
        }
        failures += 1;
    }
    let back = back.unwrap_or_else(|| {
        panic!(
            "the VIP was not served again within {AFTER_KILL:?} after the master died:\n{}",
            d2.log_text()
        )
    });
    let gap = back.duration_since(last_ok).as_secs_f64();
    println!(
        "FAILOVER lbd -> lbd: client served again {gap:.3} s after the master was killed ({failures} failed requests; bound {:.3} s)",
        MDI_90 + 2.0 * REQUEST_TIMEOUT_S
    );
    assert!(
        gap <= MDI_90 + 2.0 * REQUEST_TIMEOUT_S,
        "{gap:.3} s without service"
    );
    assert_eq!(
        vrrp_json(&d2)["instances"][0]["state"],
        "MASTER",
        "{}",
        d2.log_text()
    );
    // d2 serves from now on, through its dataplane.
    for _ in 0..3 {
        assert!(w.fetch(), "a request through the new master failed");
    }
    // The excluded address moved with the VIP (d2's GARPs).
    assert_eq!(
        w.pinged_mac(EXCLUDED),
        Some(World::port_mac(&w.d2)),
        "the excluded address did not move to d2"
    );
    assert_eq!(World::exported_master(&w.d2), "1", "the metric follows");
    let after = lbctl(d2.socket(), &["-Ln", "--stats"]);
    println!("{after}");
    let conns = |text: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with("TCP"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(conns(&before), 0, "the BACKUP forwarded VIP traffic");
    assert!(conns(&after) >= 4, "d2 did not schedule the requests");
    drop(d1);
    d2.stop_cleanly();
}
