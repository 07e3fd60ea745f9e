//! Network-namespace helpers shared by the driver tests (`driver_tap.rs`,
//! `driver_af_packet.rs`): root check, `ip` runner, and a namespace that is
//! deleted on drop, with a way to run code inside it.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and no memory effects.
    unsafe { libc::geteuid() == 0 }
}

/// `false` (after saying why) when the test cannot run here.
pub fn can_run(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root (network namespaces, TAP and AF_PACKET devices)");
        return false;
    }
    true
}

/// Run `ip` with `args`; panics with its stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    /// The namespace's name.
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rvs-t-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS args…`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Run `f` on a fresh thread that has entered this namespace (sockets
    /// and devices it creates belong to the namespace).
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

    pub fn link_exists(&self, ifname: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", ifname])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        let st = Command::new("ip")
            .args(["netns", "exec", &self.name, "sysctl", "-qw"])
            .arg(format!("{key}={value}"))
            .status()
            .expect("sysctl");
        assert!(st.success(), "sysctl {key}={value}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
