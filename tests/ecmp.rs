//! Scale-out past one director (issue 15): two active directors behind an
//! ECMP router, the VIP announced by real BIRD 2 on each director from
//! what lbd writes (`announce:`), real nginx real servers in DR mode.
//!
//! ```text
//!  cli 10.1.0.2 ── 10.1.0.1 [rtr: BIRD, merge paths, L4 multipath hash] 192.168.10.253 ──┐
//!                                                                      bridge br0 in "sw"
//!  dirA: lbd (af_packet on int0, kernel_if kl 192.168.10.251) + BIRD ──┤
//!  dirB: lbd (af_packet on int0, kernel_if kl 192.168.10.252) + BIRD ──┤
//!  rs1 192.168.10.1, rs2 192.168.10.2: nginx, VIP on lo, default via the router
//! ```
//!
//! * `two_directors_*`: the router's kernel has a multipath route to the
//!   VIP via both directors; 200 new connections all succeed and both
//!   directors forward some; a director whose real servers all have weight
//!   0 withdraws its route and announces it again when one is back; SIGTERM to one director (lbd withdraws its
//!   route before its data plane stops) converges the router to the other
//!   (time printed); 200 new connections then all succeed.
//! * `drain_*`: `lbctl --drain` on one director withdraws its route while
//!   lbd still runs, then lbd stops by itself once its connections have
//!   gone quiet, long before the drain timeout.
//! * `flows_moved_by_ecmp_*`: 16 slow downloads (small receive buffer: the
//!   server needs every ACK) run over both directors; director A is
//!   drained, the router moves A's flows to B. With `mh` + `mh-port` and
//!   `sloppy_tcp`, B schedules their next ACK to the same real server and
//!   every moved download completes intact (a TCP stream cannot resume on
//!   another server: it would answer with a reset); with `wlc` and no
//!   `sloppy_tcp` B drops their ACKs (`not_syn`) and every moved download
//!   stalls. Both print the fraction that survived.
//!
//! Every namespace, process and file is owned by a guard; every client
//! loop is bounded in count and time.

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::lbd::{self, Lbd, LBD};
use support::netns::Netns;
use support::process::{poll_until, signal, Proc};
use support::world::{rip, rs_name, ROUTER_LAN};

const VIP: &str = "10.0.0.100";
const DIPS: [&str; 2] = ["192.168.10.251", "192.168.10.252"];
const CLIENT: &str = "10.1.0.2";
/// The slow download: `SLOW_LEN` bytes at 64 KiB/s (about 6 s).
const SLOW_LEN: usize = 384 * 1024;

const TOOLS: [&str; 8] = [
    "ip", "nginx", "python3", "ethtool", "sysctl", "nft", "bird", "birdc",
];

/// One director: lbd and its BIRD (dropped first: BIRD, then lbd).
struct Director {
    /// Held for its guard (stopped by PID on drop).
    _bird: Proc,
    lbd: Option<Lbd>,
    socket: PathBuf,
    include: PathBuf,
}

/// The whole world; dropping it stops every process and deletes every
/// namespace (field order is drop order).
struct Ecmp {
    procs: Vec<Proc>,
    dirs: Vec<Director>,
    cli: Netns,
    rtr: Netns,
    sw: Netns,
    dns: Vec<Netns>,
    rs: Vec<Netns>,
    tmp: tempfile::TempDir,
}

/// How the directors schedule.
struct Sched {
    name: &'static str,
    flags: &'static [&'static str],
}

const MH_PORT: Sched = Sched {
    name: "mh",
    flags: &["mh-port"],
};

impl Ecmp {
    fn build(sched: &Sched, settings: &str) -> Ecmp {
        let tmp = tempfile::Builder::new()
            .prefix("rvs-ecmp-")
            .tempdir()
            .expect("temporary directory");
        let mut w = Ecmp {
            procs: Vec::new(),
            dirs: Vec::new(),
            cli: Netns::ipv4_host("ecli"),
            rtr: Netns::ipv4_host("ertr"),
            sw: Netns::ipv4_host("esw"),
            dns: vec![Netns::ipv4_host("edira"), Netns::ipv4_host("edirb")],
            rs: (0..2)
                .map(|i| Netns::ipv4_host(&format!("e{}", rs_name(i))))
                .collect(),
            tmp,
        };
        w.links();
        for i in 0..w.rs.len() {
            w.start_nginx(i);
        }
        for d in 0..2 {
            w.start_director(d, sched, settings);
        }
        w.start_router_bird();
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn links(&self) {
        let no_offload = "ethtool -K {} tso off gso off gro off >/dev/null";
        let off = |ifname: &str| no_offload.replace("{}", ifname);
        self.sw
            .sh("ip link add br0 type bridge\nip link set br0 up");
        let plug = |port: &str| {
            self.sw.sh(&format!(
                "ip link set {port} master br0\nip link set {port} up\n{}",
                off(port)
            ));
        };
        self.sw.add_veth("rtrp", &self.rtr, "lan0");
        plug("rtrp");
        for (i, ns) in self.dns.iter().enumerate() {
            let port = format!("dir{i}p");
            self.sw.add_veth(&port, ns, "int0");
            plug(&port);
            ns.sh(&format!("ip link set int0 up\n{}", off("int0")));
        }
        for (i, ns) in self.rs.iter().enumerate() {
            let port = format!("rs{i}p");
            self.sw.add_veth(&port, ns, "eth0");
            plug(&port);
            ns.sh(&format!(
                "ip addr add {}/24 dev eth0\nip link set eth0 up\n{}
                 ip route add default via {ROUTER_LAN}
                 ip addr add {VIP}/32 dev lo
                 sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2",
                rip(i),
                off("eth0")
            ));
        }
        self.cli.add_veth("eth0", &self.rtr, "cli0");
        self.cli.sh(&format!(
            "ip addr add {CLIENT}/24 dev eth0\nip link set eth0 up\n{}
             ip route add default via 10.1.0.1",
            off("eth0")
        ));
        self.rtr.sh(&format!(
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
             ip addr add 10.1.0.1/24 dev cli0\nip link set cli0 up\n{}
             ip addr add {ROUTER_LAN}/24 dev lan0\nip link set lan0 up\n{}",
            off("cli0"),
            off("lan0")
        ));
    }

    fn start_nginx(&mut self, i: usize) {
        let dir = self.path(&rs_name(i));
        fs::create_dir_all(dir.join("www/slow")).expect("www");
        fs::write(dir.join("www/index.html"), format!("{}\n", rs_name(i))).expect("index");
        let body: Vec<u8> = (0..SLOW_LEN).map(|k| (k % 251) as u8).collect();
        fs::write(dir.join("www/slow/big.bin"), body).expect("big.bin");
        let d = dir.display();
        let conf = format!(
            "daemon off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d};
    server {{
        listen 80 backlog=1024;
        root {d}/www;
        location /slow/ {{ limit_rate 64k; }}
    }}
}}
"
        );
        fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let mut cmd = self.rs[i].cmd("nginx");
        cmd.arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"));
        let log = self.path(&format!("{}-nginx.out", rs_name(i)));
        self.procs
            .push(Proc::spawn(&format!("nginx {}", rs_name(i)), cmd, &log));
        let url = format!("http://{}/", rip(i));
        let up = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            let out = self.rs[i].output("python3", &["-c", GET_PY, &url]);
            (String::from_utf8_lossy(&out.stdout).trim() == rs_name(i)).then_some(())
        });
        assert!(up.is_some(), "nginx on {} does not answer", rs_name(i));
    }

    fn start_director(&mut self, d: usize, sched: &Sched, settings: &str) {
        let tag = ["a", "b"][d];
        let socket = self.path(&format!("lbd-{tag}.sock"));
        let include = self.path(&format!("bird-vips-{tag}.conf"));
        let bird_ctl = self.path(&format!("bird-{tag}.ctl"));
        let flags: Vec<String> = sched.flags.iter().map(|f| format!("\"{f}\"")).collect();
        let yaml = format!(
            "socket: {socket}
workers: {{count: 1, idle: backoff}}
ports:
  - {{name: lan, driver: af_packet, ifname: int0, addrs: [\"{dip}/24\"], kernel_if: kl}}
{settings}announce:
  bird_include: {include}
  birdc: [birdc, -s, {ctl}, configure]
routes:
  - {{prefix: \"0.0.0.0/0\", via: {ROUTER_LAN}, port: lan}}
services:
  - proto: tcp
    vip: {VIP}
    port: 80
    scheduler: {sched}
    sched_flags: [{flags}]
    dests:
      - {{addr: {rs1}, fwd: route}}
      - {{addr: {rs2}, fwd: route}}
",
            socket = socket.display(),
            dip = DIPS[d],
            include = include.display(),
            ctl = bird_ctl.display(),
            sched = sched.name,
            flags = flags.join(", "),
            rs1 = rip(0),
            rs2 = rip(1),
        );
        let yaml_path = self.path(&format!("lbd-{tag}.yaml"));
        fs::write(&yaml_path, &yaml).expect("lbd yaml");
        println!("director {tag} lbd.yaml:\n{yaml}");
        let mut cmd = self.dns[d].cmd(LBD);
        cmd.arg("-c").arg(&yaml_path);
        let lbd = Lbd::start(
            &format!("lbd director {tag}"),
            cmd,
            &socket,
            &self.path(&format!("lbd-{tag}.log")),
        );
        // lbd writes the include first thing; BIRD reads it at start.
        let written = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            include.exists().then_some(())
        });
        assert!(
            written.is_some(),
            "lbd {tag} wrote no {}",
            include.display()
        );
        // The shipped director configuration, for this director.
        let conf = include_str!("../conf/bird-director.conf")
            .replace("192.168.10.251", DIPS[d])
            .replace("/run/rvs/bird-vips.conf", &include.display().to_string());
        let conf_path = self.path(&format!("bird-{tag}.conf"));
        fs::write(&conf_path, conf).expect("bird conf");
        let mut cmd = self.dns[d].cmd("bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(&bird_ctl);
        let bird = Proc::spawn(
            &format!("bird on director {tag}"),
            cmd,
            &self.path(&format!("bird-{tag}.log")),
        );
        self.dirs.push(Director {
            _bird: bird,
            lbd: Some(lbd),
            socket,
            include,
        });
    }

    fn start_router_bird(&mut self) {
        let conf_path = self.path("bird-rtr.conf");
        fs::write(&conf_path, include_str!("../conf/bird-router.conf")).expect("bird conf");
        let mut cmd = self.rtr.cmd("bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(self.path("bird-rtr.ctl"));
        self.procs.push(Proc::spawn(
            "bird on the router",
            cmd,
            &self.path("bird-rtr.log"),
        ));
    }

    /// The router's kernel route to the VIP.
    fn route(&self) -> String {
        self.rtr.sh(&format!("ip route show {VIP}/32"))
    }

    /// The router's BIRD protocols (for failure messages).
    fn router_protocols(&self) -> String {
        let ctl = self.path("bird-rtr.ctl");
        let out = self.rtr.output(
            "birdc",
            &[
                "-s",
                ctl.to_str().expect("path"),
                "show",
                "protocols",
                "all",
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (30 s at most) until the router's route to the VIP has
    /// exactly the directors `via` as next hops; returns it.
    fn wait_route(&self, via: &[usize], limit: Duration) -> String {
        let want = |r: &str| {
            DIPS.iter()
                .enumerate()
                .all(|(d, dip)| r.contains(&format!("via {dip} ")) == via.contains(&d))
                && (via.len() > 1) == r.contains("nexthop")
        };
        let got = poll_until(limit, Duration::from_millis(10), || {
            let r = self.route();
            want(&r).then_some(r)
        });
        got.unwrap_or_else(|| {
            panic!(
                "the router's route to {VIP} never became via {via:?}: {:?}\n{}\n{}",
                self.route(),
                self.router_protocols(),
                self.dirs
                    .iter()
                    .map(|d| fs::read_to_string(&d.include).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    }

    /// `n` new connections from the client, each `GET /`, bounded by
    /// `limit`; (succeeded, failed) and the output.
    fn connections(&self, n: usize, limit: Duration) -> (usize, usize, String) {
        let out = self.cli.output(
            "python3",
            &[
                "-c",
                MANY_PY,
                VIP,
                &n.to_string(),
                &limit.as_secs().to_string(),
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let total = text
            .lines()
            .find_map(|l| l.strip_prefix("TOTAL "))
            .unwrap_or_else(|| panic!("no total from the client: {text}"));
        let num = |key: &str| -> usize {
            total
                .split_whitespace()
                .find_map(|f| f.strip_prefix(key)?.parse().ok())
                .unwrap_or_else(|| panic!("bad total {total:?}"))
        };
        (num("ok="), num("fail="), text)
    }

    /// Connections director `d` scheduled (`lbctl -Ln --stats`).
    fn scheduled(&self, d: usize) -> u64 {
        lbd::stats(&self.dirs[d].socket, "TCP", &format!("{VIP}:80")).conns
    }

    fn lbctl(&self, d: usize, args: &[&str]) -> String {
        lbd::lbctl(&self.dirs[d].socket, args)
    }

    /// Starts `n` slow downloads (one connection each, small receive
    /// buffer so the server needs every ACK); prints `STARTED` once each
    /// got its first bytes, then one `FLOW` line per connection.
    fn start_downloads(&self, n: usize, tag: &str) -> Proc {
        let mut cmd = self.cli.cmd("python3");
        cmd.args(["-c", SLOW_PY, VIP, &n.to_string(), &SLOW_LEN.to_string()]);
        Proc::spawn_ready(
            &format!("slow downloads {tag}"),
            cmd,
            &self.path(&format!("slow-{tag}.out")),
            "STARTED",
            Duration::from_secs(15),
        )
    }

    /// The client ports of director `d`'s connections to the VIP.
    fn client_ports(&self, d: usize) -> Vec<u16> {
        lbd::conns(&self.dirs[d].socket)
            .iter()
            .filter(|c| c.client.ip().to_string() == CLIENT)
            .map(|c| c.client.port())
            .collect()
    }
}

/// The downloads' verdicts: client port → completed intact.
fn flows(text: &str) -> Vec<(u16, bool, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"FLOW"))
                .then(|| (f[1].parse().expect("port"), f[2] == "OK", f[2..].join(" ")))
        })
        .collect()
}

/// One GET; prints the body.
const GET_PY: &str = r#"
import socket, sys
host = sys.argv[1].split("/")[2]
s = socket.create_connection((host, 80), timeout=1)
s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while True:
    b = s.recv(4096)
    if not b: break
    data += b
print(data.partition(b"\r\n\r\n")[2].decode().strip())
"#;

/// `n` GETs, each on a new connection (a new source port), 2 s timeout
/// each, all within `limit` seconds; one line per connection, then TOTAL.
const MANY_PY: &str = r#"
import socket, sys, time
vip, n, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ok = fail = 0
end = time.monotonic() + limit
for k in range(n):
    if time.monotonic() > end:
        fail += n - k
        print("DEADLINE after", k)
        break
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect((vip, 80))
        s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b: break
            data += b
        head, _, body = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 200"):
            ok += 1
            print("OK", body.strip().decode(), s.getsockname()[1])
        else:
            fail += 1
            print("BAD", head[:40])
    except OSError as e:
        fail += 1
        print("FAIL", k, e)
    finally:
        s.close()
print("TOTAL ok=%d fail=%d" % (ok, fail), flush=True)
"#;

/// `n` concurrent slow downloads of /slow/big.bin; a 16 KiB receive
/// buffer (the server cannot run ahead of the ACKs); a connection that
/// gets nothing for 3 s, or is reset, fails. Everything ends within 30 s.
const SLOW_PY: &str = r#"
import socket, sys, threading, time
vip, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
expect = bytes(k % 251 for k in range(size))
started = threading.Barrier(n + 1, timeout=15)
results = {}
def flow(k):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.settimeout(3.0)
    port = 0
    data = b""
    verdict = "OK"
    try:
        s.connect((vip, 80))
        port = s.getsockname()[1]
        s.sendall(b"GET /slow/big.bin HTTP/1.0\r\nHost: vip\r\n\r\n")
        first = s.recv(4096)
        data += first
        try: started.wait()
        except threading.BrokenBarrierError: pass
        end = time.monotonic() + 30
        while time.monotonic() < end:
            b = s.recv(65536)
            if not b: break
            data += b
        body = data.partition(b"\r\n\r\n")[2]
        if body != expect:
            verdict = "SHORT %d/%d" % (len(body), size)
    except socket.timeout:
        verdict = "STALLED %d" % len(data)
    except OSError as e:
        verdict = "ERROR %s %d" % (e.__class__.__name__, len(data))
    finally:
        s.close()
    results[k] = (port, verdict)
threads = [threading.Thread(target=flow, args=(k,)) for k in range(n)]
for t in threads: t.start()
try: started.wait()
except threading.BrokenBarrierError: pass
print("STARTED", flush=True)
for t in threads: t.join()
for k in range(n):
    port, verdict = results.get(k, (0, "LOST"))
    print("FLOW", port, verdict, flush=True)
print("DONE", flush=True)
"#;

fn may_run(test: &str) -> bool {
    support::needs_root(test, &TOOLS)
}

#[test]
fn two_directors_share_a_vip_by_ecmp_and_one_leaving_converges_to_the_other() {
    let _serial = support::serial();
    if !may_run("two_directors_share_a_vip_by_ecmp") {
        return;
    }
    let mut w = Ecmp::build(&MH_PORT, "");
    // (a) Both directors announce: one multipath route.
    let started = Instant::now();
    let route = w.wait_route(&[0, 1], Duration::from_secs(30));
    println!("router after {:?}: {route}", started.elapsed());
    for d in 0..2 {
        println!("director {d}: {}", w.lbctl(d, &["--announce"]));
    }
    let (ok, fail, text) = w.connections(200, Duration::from_secs(40));
    let split = [w.scheduled(0), w.scheduled(1)];
    println!(
        "200 connections: {ok} ok, {fail} failed; scheduled by A {}, by B {}",
        split[0], split[1]
    );
    assert_eq!((ok, fail), (200, 0), "{text}");
    assert!(
        split[0] > 0 && split[1] > 0,
        "both directors forward new connections: {split:?}"
    );
    assert_eq!(split[0] + split[1], 200, "each connection once: {split:?}");
    // The route follows what A can serve: every real server at weight 0
    // on A withdraws A's route; one back at weight 1 announces it again.
    for i in 0..2 {
        let rs = rip(i);
        w.lbctl(
            0,
            &["-e", "-t", &format!("{VIP}:80"), "-r", &rs, "-g", "-w", "0"],
        );
    }
    let t = Instant::now();
    w.wait_route(&[1], Duration::from_secs(10));
    println!(
        "A without a weighted server: withdrawn in {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    w.lbctl(
        0,
        &[
            "-e",
            "-t",
            &format!("{VIP}:80"),
            "-r",
            &rip(0),
            "-g",
            "-w",
            "1",
        ],
    );
    w.lbctl(
        0,
        &[
            "-e",
            "-t",
            &format!("{VIP}:80"),
            "-r",
            &rip(1),
            "-g",
            "-w",
            "1",
        ],
    );
    w.wait_route(&[0, 1], Duration::from_secs(10));
    println!("A weighted again: announced in {:?}", t.elapsed());
    // (b) Director A stops (SIGTERM): lbd withdraws first.
    let pid = w.dirs[0].lbd.as_ref().expect("lbd A").pid();
    let t0 = Instant::now();
    signal(pid as libc::pid_t, libc::SIGTERM);
    let route = w.wait_route(&[1], Duration::from_secs(10));
    let convergence = t0.elapsed();
    println!("CONVERGENCE after SIGTERM to director A: {convergence:?} -> {route}");
    let mut a = w.dirs[0].lbd.take().expect("lbd A");
    let exited = poll_until(Duration::from_secs(3), Duration::from_millis(10), || {
        a.try_wait()
    });
    let stopped_in = t0.elapsed();
    let log = a.log_text();
    assert!(
        exited.is_some_and(|s| s.success()),
        "lbd A exits 0 within 2 s of SIGTERM ({exited:?}):\n{log}"
    );
    assert!(
        stopped_in < Duration::from_secs(2) + Duration::from_millis(500),
        "{stopped_in:?}"
    );
    assert!(
        log.contains("announce: 0 VIPs"),
        "withdrawn on stop:\n{log}"
    );
    assert!(
        convergence < Duration::from_secs(2),
        "withdraw-on-stop reaches the router: {convergence:?}"
    );
    let before = w.scheduled(1);
    let (ok, fail, text) = w.connections(200, Duration::from_secs(40));
    println!("after convergence: {ok} ok, {fail} failed");
    assert_eq!((ok, fail), (200, 0), "{text}");
    assert_eq!(w.scheduled(1) - before, 200, "all to director B");
}

#[test]
fn drain_withdraws_routes_then_stops_when_connections_end() {
    let _serial = support::serial();
    if !may_run("drain_withdraws_routes") {
        return;
    }
    let mut w = Ecmp::build(&MH_PORT, "");
    w.wait_route(&[0, 1], Duration::from_secs(30));
    let mut downloads = w.start_downloads(12, "drain");
    let on_a = w.client_ports(0);
    println!("connections on director A: {on_a:?}");
    assert!(!on_a.is_empty(), "ECMP gave director A none of 12 flows");
    let t0 = Instant::now();
    let answer = w.lbctl(0, &["--drain", "--drain-timeout", "30"]);
    assert!(answer.contains("Draining"), "{answer}");
    let route = w.wait_route(&[1], Duration::from_secs(10));
    let withdrawn_in = t0.elapsed();
    println!("DRAIN: route withdrawn after {withdrawn_in:?} -> {route}");
    let a = w.dirs[0].lbd.as_mut().expect("lbd A");
    assert!(
        a.try_wait().is_none(),
        "lbd A still runs (and forwards) when the route is gone"
    );
    let exited = poll_until(Duration::from_secs(35), Duration::from_millis(50), || {
        a.try_wait()
    });
    let stopped_in = t0.elapsed();
    let log = a.log_text();
    println!("DRAIN: lbd A stopped by itself after {stopped_in:?}");
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}:\n{log}");
    assert!(
        stopped_in < Duration::from_secs(25),
        "stopped because its connections ended or went quiet, not at the 30 s timeout: {stopped_in:?}\n{log}"
    );
    assert!(log.contains("drain: withdrawing every route"), "{log}");
    assert!(
        log.contains("drain: no active connection") || log.contains("drain: no packet"),
        "{log}"
    );
    let status = downloads.wait_for(Duration::from_secs(40));
    let text = downloads.log_text();
    assert!(status.success(), "{text}");
    // Flows that stayed on director B are untouched by A's drain.
    for (port, ok, verdict) in flows(&text) {
        if !on_a.contains(&port) {
            assert!(ok, "flow {port} on B: {verdict}\n{text}");
        }
    }
}

/// Starts `n` slow downloads over both directors, drains director A while
/// they run (its route goes: the router moves A's flows to B), waits for
/// them; (flows that were on A, of which completed intact).
fn moved_flows(sched: &Sched, settings: &str, tag: &str) -> (usize, usize) {
    let w = Ecmp::build(sched, settings);
    w.wait_route(&[0, 1], Duration::from_secs(30));
    let mut downloads = w.start_downloads(16, tag);
    let on_a = w.client_ports(0);
    println!("connections on director A: {on_a:?}");
    assert!(!on_a.is_empty(), "ECMP gave director A none of 16 flows");
    w.lbctl(0, &["--drain", "--drain-timeout", "30"]);
    w.wait_route(&[1], Duration::from_secs(10));
    let status = downloads.wait_for(Duration::from_secs(45));
    let text = downloads.log_text();
    assert!(status.success(), "{text}");
    let all = flows(&text);
    assert_eq!(all.len(), 16, "{text}");
    let mut moved = 0;
    let mut survived = 0;
    for (port, ok, verdict) in &all {
        if on_a.contains(port) {
            moved += 1;
            survived += usize::from(*ok);
            println!("moved flow {port}: {verdict}");
        } else {
            assert!(ok, "flow {port} stayed on B: {verdict}\n{text}");
        }
    }
    println!("MOVED FLOWS SURVIVED ({tag}): {survived}/{moved}");
    (moved, survived)
}

#[test]
fn flows_moved_by_ecmp_keep_their_real_server_with_mh_and_sloppy_tcp() {
    let _serial = support::serial();
    if !may_run("flows_moved_by_ecmp_keep_their_real_server") {
        return;
    }
    let (moved, survived) = moved_flows(&MH_PORT, "settings:\n  sloppy_tcp: true\n", "mh-sloppy");
    assert!(moved > 0);
    assert_eq!(
        survived, moved,
        "every moved flow continues on the same real server through director B"
    );
}

#[test]
fn flows_moved_by_ecmp_break_with_wlc_and_without_sloppy_tcp() {
    let _serial = support::serial();
    if !may_run("flows_moved_by_ecmp_break_with_wlc") {
        return;
    }
    let wlc = Sched {
        name: "wlc",
        flags: &[],
    };
    let (moved, survived) = moved_flows(&wlc, "", "wlc");
    assert!(moved > 0);
    assert_eq!(
        survived, 0,
        "director B has no entry for a moved flow and drops its segments (not_syn)"
    );
}

#[test]
fn sigusr2_drains_lbd_which_then_stops_by_itself() {
    // No namespaces: lbd with the control plane only (no ports, so no
    // connection can be active); the signal path of `lbctl --drain`.
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket = tmp.path().join("lbd.sock");
    let yaml = tmp.path().join("lbd.yaml");
    fs::write(&yaml, format!("socket: {}\n", socket.display())).expect("yaml");
    let mut cmd = std::process::Command::new(LBD);
    cmd.arg("-c").arg(&yaml);
    let mut l = Lbd::start(
        "lbd without ports",
        cmd,
        &socket,
        &tmp.path().join("lbd.log"),
    );
    let t0 = Instant::now();
    signal(l.pid() as libc::pid_t, libc::SIGUSR2);
    let exited = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        l.try_wait()
    });
    let log = l.log_text();
    println!("lbd stopped {:?} after SIGUSR2:\n{log}", t0.elapsed());
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}\n{log}");
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "not before the grace"
    );
    assert!(log.contains("SIGUSR2, draining"), "{log}");
    assert!(
        log.contains("drain: no active connection, stopping"),
        "{log}"
    );
    assert!(!socket.exists(), "a clean stop removes the socket");
}
