//! Connection synchronisation end to end (issue #14, reference §5.4 F1
//! without VRRP): two real `lbd` directors, A (sync master) and B (sync
//! backup), each on AF_PACKET ports between the same client and the same
//! real server (nginx); the sync messages cross a veth between their
//! namespaces. Slow downloads and a keep-alive client run through A; the
//! test then moves the traffic to B itself — the client's route to the VIP
//! and the real server's gateway neighbour now point at B's ports — and
//! kills A with SIGKILL.
//!
//! ```text
//!          a0 ── ext0 [lbd A] int0 ── pa ┐
//!  cli  (10.0.0.2 on lo)   sync0 │       br0 (sw) ── pr ── eth0 rs 192.168.10.1 (nginx)
//!          b0 ── ext0 [lbd B] int0 ── pb ┘
//!                          sync0 (10.9.0.1 ↔ 10.9.0.2)
//! ```
//!
//! For NAT, DR (the real server answers the client over its own link)
//! and FULLNAT (one local address shared by the pair; the real server's
//! neighbour for it moves; the pair signs its messages with a shared key): with sync every download completes with the
//! right size and the keep-alive client sees no error; the same run
//! without sync breaks them (the baseline proving the test can fail). Both
//! directors run the same services (`lbctl`), as IPVS requires of a
//! backup.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rvs::ctl::protocol::Response;
use support::lbd::{self, Lbd, LBD};
use support::netns::Netns;
use support::process::{poll_until, signal, Proc};

const VIP: &str = "10.0.0.100";
const CIP: &str = "10.0.0.2";
const RIP: &str = "192.168.10.1";
const DIP_INT: &str = "192.168.10.254";
/// Bytes of the slow download (nginx serves it at 128 KiB/s: 5 s).
const BIG_LEN: usize = 640 * 1024;
const DOWNLOADS: usize = 4;
const KEEPALIVE_CONNS: usize = 3;
const MAC_A_EXT: &str = "02:0a:00:00:00:01";
const MAC_A_INT: &str = "02:0a:00:00:01:01";
const MAC_B_EXT: &str = "02:0b:00:00:00:01";
const MAC_B_INT: &str = "02:0b:00:00:01:01";
/// The FULLNAT local address both directors share (it moves with them).
const LIP: &str = "192.168.10.100";

/// The forwarding method under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// NAT: the real server's gateway is the director.
    Nat,
    /// DR: the VIP on the real server's `lo`, replies straight to the
    /// client over a link of their own.
    Dr,
    /// FULLNAT with one local address shared by the pair.
    FullNat,
}

/// The pair of directors, the client, the switch and the real server.
struct Pair {
    // Drop order: processes, the directors, then the namespaces.
    procs: Vec<Proc>,
    a: Option<Lbd>,
    b: Option<Lbd>,
    cli: Netns,
    lba: Netns,
    lbb: Netns,
    sw: Netns,
    rs: Netns,
    tmp: tempfile::TempDir,
    mode: Mode,
}

impl Pair {
    fn build(sync: bool, mode: Mode) -> Pair {
        let tmp = tempfile::Builder::new()
            .prefix("rvs-sync-")
            .tempdir()
            .expect("temporary directory");
        let mut p = Pair {
            procs: Vec::new(),
            a: None,
            b: None,
            cli: Netns::ipv4_host("scli"),
            lba: Netns::ipv4_host("slba"),
            lbb: Netns::ipv4_host("slbb"),
            sw: Netns::ipv4_host("ssw"),
            rs: Netns::ipv4_host("srs"),
            tmp,
            mode,
        };
        p.links();
        p.start_nginx();
        p.a = Some(p.start_lbd("a", &p.lba, sync.then_some("master")));
        p.b = Some(p.start_lbd("b", &p.lbb, sync.then_some("backup")));
        let method = match mode {
            Mode::Nat => "-m",
            Mode::Dr => "-g",
            Mode::FullNat => "--fullnat",
        };
        for lb in [&p.a, &p.b] {
            let socket = lb.as_ref().expect("lbd").socket();
            let svc = format!("{VIP}:80");
            lbd::lbctl(socket, &["-A", "-t", &svc, "-s", "rr"]);
            if mode == Mode::FullNat {
                lbd::lbctl(socket, &["-P", "-t", &svc, "-z", LIP]);
            }
            lbd::lbctl(
                socket,
                &["-a", "-t", &svc, "-r", &format!("{RIP}:80"), method],
            );
        }
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn links(&self) {
        let off = "ethtool -K {} tso off gso off gro off >/dev/null";
        let offload = |ifs: &[&str]| {
            ifs.iter()
                .map(|i| off.replace("{}", i))
                .collect::<Vec<_>>()
                .join("\n")
        };
        self.cli.add_veth("a0", &self.lba, "ext0");
        self.cli.add_veth("b0", &self.lbb, "ext0");
        self.sw
            .sh("ip link add br0 type bridge\nip link set br0 up");
        self.sw.add_veth("pa", &self.lba, "int0");
        self.sw.add_veth("pb", &self.lbb, "int0");
        self.sw.add_veth("pr", &self.rs, "eth0");
        self.lba.add_veth("sync0", &self.lbb, "sync0");
        self.sw.sh(&format!(
            "for i in pa pb pr; do ip link set $i master br0; ip link set $i up; done\n{}",
            offload(&["pa", "pb", "pr"])
        ));
        for (ns, ext, int, sync) in [
            (&self.lba, MAC_A_EXT, MAC_A_INT, "10.9.0.1/24"),
            (&self.lbb, MAC_B_EXT, MAC_B_INT, "10.9.0.2/24"),
        ] {
            ns.sh(&format!(
                "ip link set ext0 address {ext}\nip link set int0 address {int}
                 ip link set ext0 up\nip link set int0 up
                 ip addr add {sync} dev sync0\nip link set sync0 up\n{}",
                offload(&["ext0", "int0"])
            ));
        }
        self.cli.sh(&format!(
            "ip addr add {CIP}/32 dev lo
             ip link set a0 up\nip link set b0 up\n{}
             ip route add {VIP}/32 dev a0 src {CIP}",
            offload(&["a0", "b0"])
        ));
        self.rs.sh(&format!(
            "ip addr add {RIP}/24 dev eth0\nip link set eth0 up\n{}
             ip neigh replace {} lladdr {MAC_A_INT} dev eth0 nud permanent
             ip route add default via {DIP_INT}",
            offload(&["eth0"]),
            self.rs_next_hop()
        ));
        if self.mode == Mode::Dr {
            // The real server answers the client over a link of its own.
            self.cli.add_veth("r0", &self.rs, "c0");
            self.cli
                .sh(&format!("ip link set r0 up\n{}", offload(&["r0"])));
            self.rs.sh(&format!(
                "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
                 ip addr add {VIP}/32 dev lo
                 ip link set c0 up\n{}
                 ip route add {CIP}/32 dev c0",
                offload(&["c0"])
            ));
        }
    }

    fn start_nginx(&mut self) {
        let dir = self.path("rs");
        fs::create_dir_all(dir.join("www/slow")).expect("www");
        fs::write(dir.join("www/index.html"), "rs1\n").expect("index");
        let big: Vec<u8> = (0..BIG_LEN).map(|i| (i % 251) as u8).collect();
        fs::write(dir.join("www/slow/big.bin"), big).expect("big.bin");
        let d = dir.display();
        let conf = format!(
            "daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d};
    keepalive_requests 100000;
    keepalive_timeout 120s;
    server {{
        listen 80;
        root {d}/www;
        location /slow/ {{ limit_rate 128k; }}
    }}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("nginx.conf");
        let mut cmd = self.rs.cmd("nginx");
        cmd.arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path);
        let log = self.path("nginx.out");
        self.procs.push(Proc::spawn("nginx", cmd, &log));
        let up = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let out = self.rs.output(
                "curl",
                &["-s", "--max-time", "1", &format!("http://{RIP}/")],
            );
            (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "rs1")
                .then_some(())
        });
        assert!(up.is_some(), "nginx does not answer on {RIP}");
    }

    fn start_lbd(&self, tag: &str, ns: &Netns, role: Option<&str>) -> Lbd {
        let socket = self.path(&format!("{tag}.sock"));
        let mut yaml = format!(
            "socket: {}
workers: {{count: 1, idle: backoff}}
ports:
  - {{name: ext, driver: af_packet, ifname: ext0, addrs: [\"10.0.0.254/24\"]}}
  - {{name: int, driver: af_packet, ifname: int0, addrs: [\"{DIP_INT}/24\"]}}
",
            socket.display()
        );
        if let Some(role) = role {
            // The FULLNAT pair also signs its messages (rvs's HMAC).
            let key = if self.mode == Mode::FullNat {
                ", auth_key: pair-secret"
            } else {
                ""
            };
            yaml.push_str(&format!(
                "sync:\n  - {{role: {role}, interface: sync0, syncid: 14{key}}}\n"
            ));
        }
        let path = self.path(&format!("{tag}.yaml"));
        fs::write(&path, &yaml).expect("write yaml");
        println!("lbd {tag}:\n{yaml}");
        let mut cmd = ns.cmd(LBD);
        cmd.arg("-c").arg(&path);
        Lbd::start(
            &format!("lbd {tag}"),
            cmd,
            &socket,
            &self.path(&format!("{tag}.log")),
        )
    }

    fn socket(&self, tag: &str) -> PathBuf {
        self.path(&format!("{tag}.sock"))
    }

    /// Starts the slow downloads and the keep-alive client through A.
    fn start_traffic(&mut self, secs: u32) -> (Vec<Proc>, Proc) {
        let url = format!("http://{VIP}/slow/big.bin");
        let downloads = (0..DOWNLOADS)
            .map(|k| {
                let mut cmd = self.cli.cmd("curl");
                cmd.args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "20",
                    "--speed-limit",
                    "1000",
                    "--speed-time",
                    "4",
                    "-w",
                    "%{http_code} %{size_download}\n",
                    &url,
                ]);
                Proc::spawn(
                    &format!("download {k}"),
                    cmd,
                    &self.path(&format!("download-{k}.out")),
                )
            })
            .collect();
        let script = self.path("keepalive.py");
        fs::write(&script, KEEPALIVE_PY).expect("keepalive.py");
        let mut cmd = self.cli.cmd("python3");
        cmd.arg(&script)
            .arg(VIP)
            .arg(secs.to_string())
            .arg(KEEPALIVE_CONNS.to_string());
        let ka = Proc::spawn_ready(
            "keep-alive client",
            cmd,
            &self.path("keepalive.out"),
            "READY",
            Duration::from_secs(10),
        );
        (downloads, ka)
    }

    /// The address whose MAC the real server's replies go to: the
    /// director's (NAT gateway) or the shared local address (FULLNAT).
    fn rs_next_hop(&self) -> &'static str {
        if self.mode == Mode::FullNat {
            LIP
        } else {
            DIP_INT
        }
    }

    /// Moves the traffic to B: the client's route to the VIP, the real
    /// server's neighbour for the director or the local address (what
    /// VRRP's gratuitous ARP would do); then A dies (SIGKILL).
    fn move_to_b(&mut self) {
        self.cli
            .sh(&format!("ip route replace {VIP}/32 dev b0 src {CIP}"));
        self.rs.sh(&format!(
            "ip neigh replace {} lladdr {MAC_B_INT} dev eth0 nud permanent",
            self.rs_next_hop()
        ));
        let a = self.a.as_mut().expect("lbd A");
        signal(a.pid() as libc::pid_t, libc::SIGKILL);
        let _ = a.stop(Duration::from_secs(2));
    }
}

/// ESTABLISHED connections to the VIP in `socket`'s table.
fn established(socket: &Path) -> usize {
    lbd::conns(socket)
        .iter()
        .filter(|c| c.state == "ESTABLISHED" && c.vaddr.ip().to_string() == VIP)
        .count()
}

/// A sync counter of `lbctl -L --daemon -o json`.
fn sync_counter(socket: &Path, name: &str) -> u64 {
    match lbd::lbctl_json(socket, &["-L", "--daemon"]) {
        Response::Daemon { status } => status
            .counters
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.value),
        other => panic!("lbctl -L --daemon: unexpected answer {other:?}"),
    }
}

/// What the client saw.
#[derive(Debug)]
struct Outcome {
    /// Downloads that ended with 200 and every byte.
    complete: usize,
    /// Each download's "CODE BYTES" line (or the curl failure).
    downloads: Vec<String>,
    /// Keep-alive requests answered 200, errors, longest wait (s).
    ka_ok: u64,
    ka_errors: u64,
    ka_worst: f64,
}

fn run(sync: bool, mode: Mode) -> Outcome {
    let mut p = Pair::build(sync, mode);
    // Warm-up through A (neighbours resolved, the path proven).
    let out = p.cli.output(
        "curl",
        &["-s", "--max-time", "3", &format!("http://{VIP}/")],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "rs1",
        "{out:?}"
    );
    let (mut downloads, mut ka) = p.start_traffic(9);
    let want = DOWNLOADS + KEEPALIVE_CONNS;
    let a_sock = p.socket("a");
    let b_sock = p.socket("b");
    let seen = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        (established(&a_sock) >= want).then_some(())
    });
    assert!(seen.is_some(), "A does not hold {want} established flows");
    if sync {
        // The backup has every flow before the move (sent within 10 ms).
        let got = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
            (sync_counter(&b_sock, "installed") >= want as u64).then_some(())
        });
        println!("{}", lbd::lbctl(&b_sock, &["-L", "--daemon", "--exact"]));
        println!("{}", lbd::lbctl(&a_sock, &["-L", "--daemon", "--exact"]));
        assert!(got.is_some(), "B did not install {want} synced connections");
        match lbd::lbctl_json(&b_sock, &["-L", "--daemon"]) {
            Response::Daemon { status } => assert!(
                status
                    .peers
                    .iter()
                    .any(|p| p.addr.to_string() == "10.9.0.1" && p.conns >= want as u64),
                "B lists A as its peer: {:?}",
                status.peers
            ),
            other => panic!("unexpected answer {other:?}"),
        }
        assert!(established(&b_sock) >= want, "B lists the synced flows");
    } else {
        assert_eq!(established(&b_sock), 0);
    }
    // Let the downloads run through A for a while, then move.
    let moved_at = Instant::now() + Duration::from_secs(1);
    while Instant::now() < moved_at {
        std::thread::sleep(Duration::from_millis(50));
    }
    p.move_to_b();
    let mut lines = Vec::new();
    let mut complete = 0;
    for d in &mut downloads {
        let status = d.wait_for(Duration::from_secs(25));
        let text = d.log_text().trim().to_string();
        if status.success() && text == format!("200 {BIG_LEN}") {
            complete += 1;
        }
        lines.push(format!("{text} ({status})"));
    }
    let _ = ka.wait_for(Duration::from_secs(25));
    let text = ka.log_text();
    println!("keep-alive client:\n{text}");
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("ok "))
        .unwrap_or_else(|| panic!("keep-alive client printed no summary:\n{text}"));
    let w: Vec<&str> = last.split_whitespace().collect();
    if sync {
        println!("{}", lbd::lbctl(&b_sock, &["-L", "--daemon", "--exact"]));
    }
    let outcome = Outcome {
        complete,
        downloads: lines,
        ka_ok: w[1].parse().expect("ok count"),
        ka_errors: w[3].parse().expect("error count"),
        ka_worst: w[5].parse().expect("worst"),
    };
    println!("{mode:?} sync={sync}: downloads {:?}", outcome.downloads);
    println!("{mode:?} sync={sync}: {outcome:?}");
    if let Some(b) = p.b.take() {
        b.stop_cleanly();
    }
    outcome
}

/// The flows survive: every download complete, no keep-alive error, the
/// longest wait the move itself plus a TCP retransmission.
fn assert_survived(o: &Outcome) {
    assert_eq!(o.complete, DOWNLOADS, "every download completes: {o:?}");
    assert_eq!(o.ka_errors, 0, "no keep-alive request fails: {o:?}");
    assert!(o.ka_ok > 100, "the keep-alive client kept going: {o:?}");
    assert!(o.ka_worst < 3.0, "longest keep-alive wait {}", o.ka_worst);
}

/// The baseline: without sync the backup knows none of the flows.
fn assert_broken(o: &Outcome) {
    assert_eq!(o.complete, 0, "no download survives without sync: {o:?}");
    assert!(o.ka_errors > 0, "the keep-alive client sees errors: {o:?}");
}

const TOOLS: &[&str] = &["ip", "nginx", "curl", "python3", "ethtool"];

#[test]
fn nat_flows_survive_moving_from_master_to_backup_with_sync() {
    if !support::needs_root(
        "nat_flows_survive_moving_from_master_to_backup_with_sync",
        TOOLS,
    ) {
        return;
    }
    let _serial = support::serial();
    assert_survived(&run(true, Mode::Nat));
}

#[test]
fn without_sync_the_same_nat_move_breaks_the_flows() {
    if !support::needs_root("without_sync_the_same_nat_move_breaks_the_flows", TOOLS) {
        return;
    }
    let _serial = support::serial();
    assert_broken(&run(false, Mode::Nat));
}

#[test]
fn dr_flows_survive_moving_from_master_to_backup_with_sync() {
    if !support::needs_root(
        "dr_flows_survive_moving_from_master_to_backup_with_sync",
        TOOLS,
    ) {
        return;
    }
    let _serial = support::serial();
    assert_survived(&run(true, Mode::Dr));
}

#[test]
fn without_sync_the_same_dr_move_breaks_the_flows() {
    if !support::needs_root("without_sync_the_same_dr_move_breaks_the_flows", TOOLS) {
        return;
    }
    let _serial = support::serial();
    assert_broken(&run(false, Mode::Dr));
}

#[test]
fn fullnat_flows_with_a_shared_local_address_survive_with_sync() {
    if !support::needs_root(
        "fullnat_flows_with_a_shared_local_address_survive_with_sync",
        TOOLS,
    ) {
        return;
    }
    let _serial = support::serial();
    assert_survived(&run(true, Mode::FullNat));
}

#[test]
fn without_sync_the_same_fullnat_move_breaks_the_flows() {
    if !support::needs_root("without_sync_the_same_fullnat_move_breaks_the_flows", TOOLS) {
        return;
    }
    let _serial = support::serial();
    assert_broken(&run(false, Mode::FullNat));
}

/// Keep-alive HTTP client: `n` connections opened at start, one GET on
/// each every 20 ms for `secs` seconds; a failed request is counted and
/// its connection reopened. Prints "READY", then
/// "ok N errors E worst SECONDS".
const KEEPALIVE_PY: &str = r#"
import http.client, sys, time
vip, secs, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
conns = [http.client.HTTPConnection(vip, 80, timeout=4) for _ in range(n)]
for c in conns:
    c.connect()
print("READY", flush=True)
ok = err = 0
worst = 0.0
end = time.time() + secs
while time.time() < end:
    for i, c in enumerate(conns):
        t = time.time()
        try:
            c.request("GET", "/")
            r = c.getresponse()
            body = r.read()
            if r.status == 200 and body == b"rs1\n":
                ok += 1
            else:
                err += 1
        except Exception as e:
            err += 1
            print("error %r" % (e,), flush=True)
            c.close()
            conns[i] = http.client.HTTPConnection(vip, 80, timeout=4)
        worst = max(worst, time.time() - t)
    time.sleep(0.02)
print("ok %d errors %d worst %.3f" % (ok, err, worst), flush=True)
"#;
