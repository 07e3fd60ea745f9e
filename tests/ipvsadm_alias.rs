//! `ipvsadm` is `lbctl`: the LVS guides' director scripts (`lvs_dr.sh`,
//! `lvs_nat.sh`), written as the guides write them (`$IPVSADM -C`,
//! `$IPVSADM -A -t $VIP:80 -s wrr`, ...), run unchanged through an `ipvsadm`
//! symlink to lbctl against a live lbd, and `ipvsadm -Ln` prints the table
//! ipvsadm would print. Invoked as `ipvsadm`, lbctl speaks ipvsadm 1.31 only:
//! its version line, no rvs option, the socket from `LBCTL_SOCKET`.
//!
//! lbd runs its control plane only (no ports): no root needed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::lbd::{Lbd, LBCTL, LBD};

/// A live lbd on a socket in `dir`, and an `ipvsadm` symlink to lbctl.
struct Director {
    lbd: Lbd,
    ipvsadm: PathBuf,
    dir: tempfile::TempDir,
}

impl Director {
    fn start() -> Director {
        let dir = tempfile::Builder::new()
            .prefix("rvs-ipvsadm-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("lbd.sock");
        let mut cmd = Command::new(LBD);
        cmd.arg("--socket").arg(&socket);
        let lbd = Lbd::start("lbd", cmd, &socket, &dir.path().join("lbd.log"));
        let ipvsadm = dir.path().join("ipvsadm");
        std::os::unix::fs::symlink(LBCTL, &ipvsadm).expect("symlink ipvsadm -> lbctl");
        Director { lbd, ipvsadm, dir }
    }

    /// Runs a shell script with `$IPVSADM` set to the symlink and
    /// `LBCTL_SOCKET` to lbd's socket (the only way `ipvsadm` finds it).
    fn script(&self, name: &str, text: &str) -> Output {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write script");
        println!("# sh {name}\n{text}");
        let out = Command::new("sh")
            .arg("-e")
            .arg(&path)
            .env("IPVSADM", &self.ipvsadm)
            .env("LBCTL_SOCKET", self.lbd.socket())
            .output()
            .expect("run sh");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// `ipvsadm ARGS` (through the symlink, socket from the environment).
    fn ipvsadm(&self, args: &[&str]) -> Output {
        ipvsadm_at(&self.ipvsadm, self.lbd.socket(), args)
    }
}

fn ipvsadm_at(ipvsadm: &Path, socket: &Path, args: &[&str]) -> Output {
    Command::new(ipvsadm)
        .args(args)
        .env("LBCTL_SOCKET", socket)
        .output()
        .expect("run ipvsadm")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ipvsadm 1.31's header of `-L` (lbd without ports: table size 0).
const HEADER: &str = "IP Virtual Server version 1.2.1 (size=0)\n\
Prot LocalAddress:Port Scheduler Flags\n  \
-> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

/// ipvsadm's real-server line with no connections.
fn row(addr: &str, fwd: &str, weight: u32) -> String {
    format!("  -> {addr:<28} {fwd:<7} {weight:<6} {:<10} {:<10}\n", 0, 0)
}

/// ipvsadm's service line: "%s  %s %s" then flags.
fn svc(proto: &str, addr: &str, sched: &str) -> String {
    format!("{proto}  {addr} {sched}\n")
}

/// The director half of the LVS-HOWTO's `lvs_dr.sh` (the kernel sysctls and
/// the VIP's alias, which a user-space director does not need, left out).
const LVS_DR_SH: &str = r#"#!/bin/sh
# lvs_dr.sh: LVS-DR director, two realservers
VIP=10.0.0.101
RIP1=192.168.10.1
RIP2=192.168.10.2

#setup_ipvsadm_table
#clear ipvsadm table
$IPVSADM -C
#installing LVS services with ipvsadm
#add http to VIP with weighted round robin scheduling
$IPVSADM -A -t $VIP:80 -s wrr
#forward http to realserver using direct routing with weight 1
$IPVSADM -a -t $VIP:80 -r $RIP1 -g -w 1
$IPVSADM -a -t $VIP:80 -r $RIP2 -g -w 1
#add https, persistent, least connections
$IPVSADM -A -t $VIP:443 -s wlc -p 360
$IPVSADM -a -t $VIP:443 -r $RIP1 -g -w 1
$IPVSADM -a -t $VIP:443 -r $RIP2 -g -w 2
#displaying ipvsadm settings
$IPVSADM -L -n
"#;

/// The director half of the LVS-HOWTO's `lvs_nat.sh`.
const LVS_NAT_SH: &str = r#"#!/bin/sh
# lvs_nat.sh: LVS-NAT director, two realservers on the private network
VIP=10.0.0.100
RIP1=192.168.10.1
RIP2=192.168.10.2

$IPVSADM -C
$IPVSADM -A -t $VIP:80 -s wrr
$IPVSADM -a -t $VIP:80 -r $RIP1:80 -m -w 1
$IPVSADM -a -t $VIP:80 -r $RIP2:80 -m -w 3
$IPVSADM -A -u $VIP:53 -s rr
$IPVSADM -a -u $VIP:53 -r $RIP1:53 -m -w 1
$IPVSADM -a -u $VIP:53 -r $RIP2:53 -m -w 1
#a realserver out of service (quiesced)
$IPVSADM -e -t $VIP:80 -r $RIP2:80 -m -w 0
$IPVSADM -L -n
"#;

#[test]
fn lvs_dr_and_lvs_nat_scripts_run_unchanged_through_an_ipvsadm_symlink() {
    let d = Director::start();

    let out = d.script("lvs_dr.sh", LVS_DR_SH);
    let dr_table = format!(
        "{HEADER}{}{}{}{}{}{}",
        svc("TCP", "10.0.0.101:80", "wrr"),
        row("192.168.10.1:80", "Route", 1),
        row("192.168.10.2:80", "Route", 1),
        "TCP  10.0.0.101:443 wlc persistent 360\n",
        row("192.168.10.1:443", "Route", 1),
        row("192.168.10.2:443", "Route", 2),
    );
    assert_eq!(stdout(&out), dr_table, "lvs_dr.sh's final `ipvsadm -L -n`");
    assert_eq!(stdout(&d.ipvsadm(&["-Ln"])), dr_table);

    // lvs_nat.sh starts with -C: the DR table goes.
    let out = d.script("lvs_nat.sh", LVS_NAT_SH);
    let nat_table = format!(
        "{HEADER}{}{}{}{}{}{}",
        svc("TCP", "10.0.0.100:80", "wrr"),
        row("192.168.10.1:80", "Masq", 1),
        row("192.168.10.2:80", "Masq", 0),
        svc("UDP", "10.0.0.100:53", "rr"),
        row("192.168.10.1:53", "Masq", 1),
        row("192.168.10.2:53", "Masq", 1),
    );
    assert_eq!(
        stdout(&out),
        nat_table,
        "lvs_nat.sh's final `ipvsadm -L -n`"
    );
    assert_eq!(stdout(&d.ipvsadm(&["-Ln"])), nat_table);

    // ipvsadm-save / ipvsadm-restore round trip through the alias.
    let saved = stdout(&d.ipvsadm(&["-S", "-n"]));
    assert!(saved.contains("-A -t 10.0.0.100:80 -s wrr"), "{saved}");
    let restore = d.script(
        "restore.sh",
        &format!("$IPVSADM -C\n$IPVSADM -R <<'EOF'\n{saved}EOF\n$IPVSADM -L -n\n"),
    );
    assert_eq!(stdout(&restore), nat_table);
    d.lbd.stop_cleanly();
}

#[test]
fn invoked_as_ipvsadm_lbctl_prints_ipvsadm_1_31_version_and_refuses_rvs_options() {
    let d = Director::start();
    for flag in ["-v", "--version"] {
        assert_eq!(
            stdout(&d.ipvsadm(&[flag])),
            "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
        );
    }
    let help = stdout(&d.ipvsadm(&["-h"]));
    assert!(
        help.starts_with("ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\nUsage:\n  ipvsadm -A|E virtual-service"),
        "{help}"
    );
    assert!(!help.contains("rvs") && !help.contains("lbctl"), "{help}");

    // rvs's own options are unknown to ipvsadm, and nothing reaches lbd.
    d.ipvsadm(&["-A", "-t", "10.0.0.103:80", "-s", "rr"]);
    for args in [
        &[
            "-a",
            "-t",
            "10.0.0.103:80",
            "-r",
            "192.168.10.1:80",
            "--fullnat",
        ][..],
        &["-P", "-t", "10.0.0.103:80", "-z", "192.168.10.100"],
        &["--port-stats"],
        &["--dataplane-stats"],
        &["-Ln", "-o", "json"],
        &["--socket", "/nonexistent", "-Ln"],
    ] {
        let out = d.ipvsadm(args);
        assert!(!out.status.success(), "ipvsadm {args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.is_empty(), "ipvsadm {args:?}: no message");
    }
    assert_eq!(
        stdout(&d.ipvsadm(&["-Ln"])),
        format!("{HEADER}{}", svc("TCP", "10.0.0.103:80", "rr")),
        "the refused commands changed nothing"
    );
    // lbctl keeps its extensions under its own name.
    let lbctl = Command::new(LBCTL)
        .args(["--socket"])
        .arg(d.lbd.socket())
        .args(["-v"])
        .output()
        .expect("lbctl -v");
    assert!(stdout(&lbctl).starts_with("lbctl (rvs)"));
    d.lbd.stop_cleanly();
}
