//! Network namespaces for tests, and the links inside them (veth pairs;
//! TAP devices opened from a thread that entered a namespace).
//!
//! Rules:
//! * Every namespace is named `rvs-t-<pid>-<n>-<role>` and owned by a
//!   [`Netns`] guard: dropping it kills whatever still runs inside (by PID)
//!   and deletes it, and with it every link it holds (veth pairs go with
//!   either end's namespace; TAP devices with the fds that hold them).
//! * Namespaces of a test process that died without running its guards
//!   (SIGKILL) are removed by the next test that needs root
//!   ([`remove_stale_namespaces`]).
//! * Commands that set things up panic with their output when they fail.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::process::{poll_until, run, signal};

/// Every test namespace's name starts with this, then `<pid>-`.
const PREFIX: &str = "rvs-t-";
/// Prefixes used before the support tree (removed when stale, too).
const OLD_PREFIXES: [&str; 2] = ["rvs-e2e-", "rvs-pg-"];

/// `ip ARGS...` in the host namespace; panics with its output on failure.
pub fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

fn kill_netns_pids(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            signal(pid, libc::SIGKILL);
        }
    }
}

fn delete_netns(name: &str) {
    kill_netns_pids(name);
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Deletes test namespaces whose test process is gone.
pub fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = std::iter::once(PREFIX)
            .chain(OLD_PREFIXES)
            .find_map(|p| name.strip_prefix(p))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            delete_netns(name);
        }
    }
}

/// A network namespace, deleted (after killing what runs in it) on drop.
pub struct Netns {
    /// The namespace's name (`rvs-t-<pid>-<n>-<role>`).
    pub name: String,
}

impl Netns {
    /// A fresh namespace for `role` ("cli", "dir", "peer", ...) with `lo`
    /// up.
    pub fn new(role: &str) -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{PREFIX}{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if Path::new("/run/netns").join(&name).exists() {
            delete_netns(&name);
        }
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A namespace for an IPv4 host of the end-to-end world: IPv6 off, and
    /// reverse-path filtering off (replies in DR / TUN arrive on other
    /// interfaces than the route back).
    pub fn ipv4_host(role: &str) -> Netns {
        let ns = Netns::new(role);
        ns.sh(
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
             sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
        );
        ns
    }

    /// `ip -n NS ARGS...`; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a shell script (`set -e`) inside the namespace; panics on
    /// failure; returns its stdout.
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

    /// `sysctl -qw KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.sh(&format!("sysctl -qw {key}={value}"));
    }

    /// A veth pair: `ifname` here, `peer_ifname` in `peer`.
    pub fn add_veth(&self, ifname: &str, peer: &Netns, peer_ifname: &str) {
        self.ip(&[
            "link",
            "add",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            peer_ifname,
            "netns",
            &peer.name,
        ]);
    }

    /// Moves link `ifname` into namespace `to` (a TAP's kernel side: the
    /// process holding its fds keeps them).
    pub fn move_link(&self, ifname: &str, to: &Netns) {
        self.ip(&["link", "set", ifname, "netns", &to.name]);
    }

    /// Whether link `ifname` exists here.
    pub fn link_exists(&self, ifname: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", ifname])
            .stderr(Stdio::null())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Runs `f` on a fresh thread that has entered this namespace (sockets
    /// and devices it creates — a TAP, an AF_PACKET socket — belong to the
    /// namespace).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on a valid namespace fd; it only changes this
            // helper thread's network namespace.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
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
        let gone = poll_until(Duration::from_secs(1), Duration::from_millis(20), || {
            delete_netns(&self.name);
            (!Path::new("/run/netns").join(&self.name).exists()).then_some(())
        });
        if gone.is_none() {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}
