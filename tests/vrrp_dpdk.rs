//! VRRP through a DPDK port against the real keepalived 2.2.7 (issue #13:
//! "adverts leave and arrive through the ports, multicast reception enabled
//! on AF_PACKET, TAP and DPDK ports"; the AF_PACKET and TAP cases are in
//! `vrrp_keepalived.rs` and `vrrp_pair.rs`).
//!
//! Two namespaces on one veth pair: `lb1` runs lbd with its port `ext` on
//! the DPDK `net_af_packet` virtual device over `p0` (`--no-huge --no-pci`;
//! or on `net_tap`, see below),
//! kernel interface `kvr`, 10.99.0.11/24; `lb2` runs `keepalived -P` on
//! `e0` (10.99.0.12/24). VRID 51, VRRPv2, PASS 1111, advert 1 s, VIP
//! 10.99.0.38. The AF_PACKET sniffer of `support::vrrp` on `e0` timestamps
//! every advert.
//!
//! * `dpdk_lbd_master_keepalived_backup_stays_stable_then_keepalived_takes_over_on_crash`:
//!   lbd MASTER 100 vs keepalived BACKUP 90: keepalived logs no MASTER
//!   transition for [`STABLE_WINDOW`] (it receives lbd's adverts sent by
//!   the DPDK port); SIGKILL lbd → keepalived MASTER 3.648 s ± 0.2 s after
//!   lbd's last advert.
//! * `dpdk_keepalived_master_lbd_backup_receives_multicast_adverts`:
//!   keepalived MASTER 100, lbd BACKUP 90 stays BACKUP with keepalived's
//!   address as master (it receives keepalived's multicast adverts through
//!   the DPDK port) and does not advertise; keepalived's VRRP process
//!   killed → lbd MASTER 3.648 s ± 0.2 s after the last advert.
//! * `dpdk_net_tap_keepalived_master_lbd_backup_receives_multicast_adverts`:
//!   the same with `ext` on the `net_tap` PMD (its kernel side moved to
//!   keepalived's namespace as `e0`; lbd starts first there, keepalived
//!   then takes MASTER).
//!
//! Every namespace, process and directory is owned by a guard; the tests
//! take the one-at-a-time lock. Without root they print why they skip
//! (under CI they fail).
#![cfg(feature = "dpdk")]

mod support;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::lbd::{Lbd, LBD};
use support::netns::Netns;
use support::process::{poll_until, signal, Proc};
use support::vrrp::{vrrp_json, vrrp_state, wait_vrrp_state, Sniffer};
use support::world::{eal_args, unique};

/// How long lbd MASTER vs keepalived BACKUP must stay put (the e2e test
/// budget is ~30 s; the 20 s window of the issue runs in
/// `vrrp_keepalived.rs`).
const STABLE_WINDOW: Duration = Duration::from_secs(10);
/// Allowed deviation from keepalived's takeover times.
const TOLERANCE: f64 = 0.2;
/// Crash takeover for priority 90, advert 1 s: 3 + 166/256 s.
const CRASH_TAKEOVER_90: f64 = 3.0 + 166.0 / 256.0;

const LBD_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
const KA_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 12);

fn may_run(test: &str) -> bool {
    support::needs_root(test, &["ip", "keepalived"])
}

/// The DPDK virtual device of lbd's port `ext`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Device {
    /// `net_af_packet` over `p0`, a veth whose peer is keepalived's `e0`.
    AfPacket,
    /// `net_tap`: the PMD creates `e0` in lbd's namespace; its kernel side
    /// is moved to keepalived's namespace (lbd keeps the queue fds).
    Tap,
}

/// lbd's namespace, keepalived's, the links, a scratch directory and the
/// sniffer on keepalived's `e0` (for [`Device::Tap`] once lbd created it).
struct Pair {
    device: Device,
    lb1: Netns,
    lb2: Netns,
    dir: tempfile::TempDir,
    sniffer: Option<Sniffer>,
}

impl Pair {
    fn new(device: Device) -> Pair {
        let lb1 = Netns::ipv4_host("vd-lb1");
        let lb2 = Netns::ipv4_host("vd-lb2");
        lb1.add_veth("t0", &lb2, "t1");
        lb1.ip(&["link", "set", "t0", "up"]);
        lb2.ip(&["link", "set", "t1", "up"]);
        let mut pair = Pair {
            device,
            lb1,
            lb2,
            dir: tempfile::tempdir().expect("tempdir"),
            sniffer: None,
        };
        if device == Device::AfPacket {
            pair.lb1.add_veth("p0", &pair.lb2, "e0");
            pair.lb1.ip(&["link", "set", "p0", "up"]);
            pair.keepalived_side_up();
        }
        pair
    }

    /// Addresses and brings up keepalived's `e0`; starts the sniffer.
    fn keepalived_side_up(&mut self) {
        self.lb2.ip(&["addr", "add", "10.99.0.12/24", "dev", "e0"]);
        self.lb2.ip(&["link", "set", "e0", "up"]);
        self.sniffer = Some(Sniffer::start(&self.lb2, "e0"));
    }

    fn sniffer(&self) -> &Sniffer {
        self.sniffer.as_ref().expect("e0 is up")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// lbd in `lb1` with `ext` on the pair's DPDK device and `int` on
    /// `net_af_packet` over `t0`, the VRRP instance at `priority`. For
    /// [`Device::Tap`] the TAP's kernel side then becomes keepalived's `e0`.
    fn start_lbd(&mut self, priority: u8) -> Lbd {
        let socket = self.path("lbd.sock");
        let ext = match self.device {
            Device::AfPacket => "net_af_packet0,iface=p0",
            Device::Tap => "net_tap0,iface=e0",
        };
        let eal = eal_args(
            &unique("rvs_vrrp_dpdk"),
            &[ext.to_string(), "net_af_packet1,iface=t0".to_string()],
        );
        let ext_device = ext.split(',').next().expect("device name");
        let yaml = format!(
            "socket: {}\n\
             workers: {{count: 1, idle: backoff}}\n\
             ports:\n\
             \x20 - {{name: ext, driver: dpdk, device: {ext_device}, addrs: [\"10.99.0.11/24\"], kernel_if: kvr}}\n\
             \x20 - {{name: int, driver: dpdk, device: net_af_packet1, addrs: [\"10.98.0.11/24\"]}}\n\
             dpdk:\n  eal_args: {}\n\
             services:\n\
             \x20 - {{proto: tcp, vip: 10.99.0.38, port: 80, scheduler: rr, dests: [{{addr: 10.99.0.50, port: 80, fwd: masq}}]}}\n\
             vrrp:\n\
             \x20 instances:\n\
             \x20   - name: VI_1\n\
             \x20     state: BACKUP\n\
             \x20     interface: ext\n\
             \x20     virtual_router_id: 51\n\
             \x20     priority: {priority}\n\
             \x20     virtual_ipaddress: [10.99.0.38]\n\
             \x20     advert_int: 1\n\
             \x20     authentication: {{auth_type: PASS, auth_pass: \"1111\"}}\n",
            socket.display(),
            serde_json::to_string(&eal).expect("strings serialise"),
        );
        let conf = self.path("lbd.yaml");
        std::fs::write(&conf, yaml).expect("config");
        let mut cmd = self.lb1.cmd(LBD);
        cmd.arg("--config").arg(&conf);
        let lbd = Lbd::start(
            &format!("lbd (dpdk {ext_device})"),
            cmd,
            &socket,
            &self.path("lbd.log"),
        );
        if self.device == Device::Tap {
            assert!(
                self.lb1.link_exists("e0"),
                "net_tap did not create e0:\n{}",
                lbd.log_text()
            );
            self.lb1.move_link("e0", &self.lb2);
            // net_tap gives the kernel side the PMD's own MAC: the kernel
            // side gets one of its own, as another host on the link has.
            self.lb2
                .ip(&["link", "set", "e0", "address", "02:cc:00:00:00:12"]);
            self.keepalived_side_up();
        }
        lbd
    }

    /// keepalived (VRRP only, its own pid files) in `lb2` at `priority`;
    /// also the path of its VRRP process's pid file.
    fn start_keepalived(&self, priority: u8) -> (Proc, PathBuf) {
        let conf = self.path("ka.conf");
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  router_id lb2\n}}\n\
                 vrrp_instance VI_1 {{\n  state BACKUP\n  interface e0\n  virtual_router_id 51\n  priority {priority}\n  advert_int 1\n  authentication {{\n    auth_type PASS\n    auth_pass 1111\n  }}\n  virtual_ipaddress {{\n    10.99.0.38\n  }}\n}}\n"
            ),
        )
        .expect("keepalived.conf");
        let p = self.path("ka-pids");
        std::fs::create_dir_all(&p).expect("pid dir");
        let mut cmd = self.lb2.cmd("keepalived");
        cmd.args(["-P", "-n", "-l", "-D", "-R", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(p.join("ka.pid"))
            .arg("-r")
            .arg(p.join("vrrp.pid"))
            .arg("-c")
            .arg(p.join("chk.pid"))
            .arg("-b")
            .arg(p.join("bfd.pid"));
        let proc = Proc::spawn("keepalived", cmd, &self.path("ka.log"));
        (proc, p.join("vrrp.pid"))
    }
}

fn wait_log(proc: &Proc, text: &str, limit: Duration) {
    let ok = poll_until(limit, Duration::from_millis(20), || {
        proc.log_text().contains(text).then_some(())
    });
    assert!(
        ok.is_some(),
        "{} did not log {text:?} within {limit:?}:\n{}",
        proc.what,
        proc.log_text()
    );
}

fn assert_near(what: &str, got: f64, want: f64) {
    println!("TAKEOVER {what}: {got:.3} s (keepalived theory {want:.3} s)");
    assert!(
        (got - want).abs() <= TOLERANCE,
        "{what}: {got:.3} s, want {want:.3} ± {TOLERANCE} s"
    );
}

#[test]
fn dpdk_lbd_master_keepalived_backup_stays_stable_then_keepalived_takes_over_on_crash() {
    if !may_run("dpdk_lbd_master_keepalived_backup") {
        return;
    }
    let _serial = support::serial();
    let mut pair = Pair::new(Device::AfPacket);
    let lbd = pair.start_lbd(100);
    wait_vrrp_state(&lbd, "MASTER", Duration::from_secs(6));
    let (ka, _vrrp_pid) = pair.start_keepalived(90);
    wait_log(&ka, "Entering BACKUP STATE", Duration::from_secs(5));

    // Stable: keepalived hears lbd's adverts (sent by the DPDK port) and
    // never becomes MASTER.
    let t0 = Instant::now();
    while t0.elapsed() < STABLE_WINDOW {
        assert!(
            !ka.log_text().contains("Entering MASTER STATE"),
            "keepalived became MASTER while lbd (DPDK) is:\n{}\nlbd:\n{}",
            ka.log_text(),
            lbd.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!ka.log_text().contains("Entering MASTER STATE"));
    assert_eq!(vrrp_state(&lbd), "MASTER");
    let ours = pair.sniffer().adverts_from(LBD_ADDR);
    assert!(
        ours.len() >= STABLE_WINDOW.as_secs() as usize - 1,
        "{} adverts from lbd on the wire in {STABLE_WINDOW:?}",
        ours.len()
    );
    assert!(ours.iter().all(|(_, p)| *p == 100), "{ours:?}");

    // SIGKILL lbd → keepalived MASTER 3.648 s after lbd's last advert.
    let kill = Instant::now();
    signal(lbd.pid() as i32, libc::SIGKILL);
    let first = pair
        .sniffer()
        .first_advert_after(KA_ADDR, kill, Duration::from_secs(8));
    let (last, _) = pair.sniffer().last_advert_before(LBD_ADDR, first);
    assert_near(
        "keepalived after lbd (DPDK) SIGKILL",
        first.duration_since(last).as_secs_f64(),
        CRASH_TAKEOVER_90,
    );
    wait_log(&ka, "Entering MASTER STATE", Duration::from_secs(2));
}

#[test]
fn dpdk_keepalived_master_lbd_backup_receives_multicast_adverts() {
    if !may_run("dpdk_keepalived_master_lbd_backup") {
        return;
    }
    let _serial = support::serial();
    lbd_backup_receives_keepalived_adverts(Device::AfPacket);
}

#[test]
fn dpdk_net_tap_keepalived_master_lbd_backup_receives_multicast_adverts() {
    if !may_run("dpdk_net_tap_keepalived_master_lbd_backup") {
        return;
    }
    let _serial = support::serial();
    lbd_backup_receives_keepalived_adverts(Device::Tap);
}

/// keepalived MASTER 100, lbd BACKUP 90 on `device`: lbd hears the
/// multicast adverts, stays BACKUP and silent; keepalived's VRRP process
/// killed → lbd MASTER 3.648 s ± 0.2 s after the last advert.
fn lbd_backup_receives_keepalived_adverts(device: Device) {
    let mut pair = Pair::new(device);
    // With net_tap, keepalived's interface exists once lbd has made it:
    // lbd starts first (and may be MASTER until keepalived preempts it).
    let (lbd, ka, vrrp_pid_file) = if device == Device::Tap {
        let lbd = pair.start_lbd(90);
        let (ka, pid) = pair.start_keepalived(100);
        (lbd, ka, pid)
    } else {
        let (ka, pid) = pair.start_keepalived(100);
        wait_log(&ka, "Entering MASTER STATE", Duration::from_secs(6));
        (pair.start_lbd(90), ka, pid)
    };
    wait_log(&ka, "Entering MASTER STATE", Duration::from_secs(8));
    let backups = || ka.log_text().matches("Entering BACKUP STATE").count();
    let backups_before = backups();

    // lbd receives keepalived's multicast adverts through the DPDK port:
    // BACKUP with keepalived's address as master, for longer than its
    // Master_Down_Interval, and silent on the wire.
    wait_vrrp_state(&lbd, "BACKUP", Duration::from_secs(5));
    let heard = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (vrrp_json(&lbd)["instances"][0]["master"] == KA_ADDR.to_string()).then_some(())
    });
    assert!(
        heard.is_some(),
        "lbd (DPDK) never saw keepalived's adverts: {}\n{}",
        vrrp_json(&lbd),
        lbd.log_text()
    );
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        assert_eq!(vrrp_state(&lbd), "BACKUP", "{}", lbd.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent: Vec<_> = pair
        .sniffer()
        .adverts_from(LBD_ADDR)
        .into_iter()
        .filter(|(at, _)| *at > t0)
        .collect();
    assert!(sent.is_empty(), "lbd (BACKUP) advertised: {sent:?}");
    assert_eq!(
        backups(),
        backups_before,
        "keepalived left MASTER:\n{}",
        ka.log_text()
    );
    println!("{}", lbd.lbctl(&["--vrrp"]));

    // keepalived's VRRP process killed → lbd MASTER 3.648 s after the last
    // advert.
    let vrrp_pid: i32 = std::fs::read_to_string(&vrrp_pid_file)
        .expect("vrrp.pid")
        .trim()
        .parse()
        .expect("pid");
    let kill = Instant::now();
    signal(vrrp_pid, libc::SIGKILL);
    let first = pair
        .sniffer()
        .first_advert_after(LBD_ADDR, kill, Duration::from_secs(8));
    let (last, _) = pair.sniffer().last_advert_before(KA_ADDR, first);
    assert_near(
        "lbd (DPDK) after keepalived SIGKILL",
        first.duration_since(last).as_secs_f64(),
        CRASH_TAKEOVER_90,
    );
    wait_vrrp_state(&lbd, "MASTER", Duration::from_secs(1));
    lbd.stop_cleanly();
}
