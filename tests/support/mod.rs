//! Test support shared by every integration test that needs more than the
//! library: network namespaces, child processes, the real `lbd`, and the one
//! test world (addresses, MACs, the YAML configuration text).
//!
//! * [`netns`]: namespaces (with veth and TAP devices inside), removed by
//!   their guards; `ip` and shell runners.
//! * [`process`]: child processes in their own process group, stopped by
//!   PID (SIGTERM, then SIGKILL) when their guard drops; bounded waits.
//! * [`lbd`]: starting `lbd` until it answers, talking to it with `lbctl`,
//!   stopping it cleanly; parsing what `lbctl` prints.
//! * [`world`]: the one test world — who has which address and MAC — and
//!   the generator of lbd's YAML configuration for it.
//! * [`topology`]: the end-to-end world in namespaces: a client, a director
//!   running lbd (TAP, AF_PACKET or DPDK `net_tap`), real servers running
//!   nginx and a UDP echo, a router.
//!
//! Rules every test keeps by using this tree:
//! * A test that needs root calls [`needs_root`] first. Outside CI without
//!   root it prints why it is skipped and returns; under CI (`CI=true`) a
//!   missing privilege or tool FAILS the test: CI runs as root and runs
//!   these for real.
//! * Everything a test creates is owned by a guard and removed on success
//!   and on panic alike: namespaces (with what runs and lives in them),
//!   processes (by PID), temporary directories. TAP devices go with the
//!   file descriptors that hold them.
//! * Every wait is a condition with a deadline ([`process::poll_until`]),
//!   never a fixed sleep; every traffic command is bounded.
//! * Network tests that compete for the two cores run one at a time
//!   ([`serial`]).
//!
//! Each test crate compiles this whole tree and uses part of it.
#![allow(dead_code)]

pub mod client_loop;
pub mod lbd;
pub mod netns;
pub mod process;
pub mod topology;
pub mod vrrp;
pub mod world;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Tests of one test binary that take this lock run one at a time: they
/// share two cores, and timing-sensitive checks (connection timeouts, rates)
/// must not compete with another test's traffic.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the one-test-at-a-time lock (a failed test does not poison it).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether this process runs under CI (`CI=true`, as `.ci/run` and most CI
/// services set it).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when `test` may run: we are root and every program in `tools` is
/// installed. Without root it prints why the test is skipped and returns
/// false — except under CI, where it panics (a test that cannot set itself
/// up must fail there, not pass silently). As root, missing tools panic with
/// their names. Also removes namespaces left behind by test processes that
/// were killed before their guards ran.
pub fn needs_root(test: &str, tools: &[&str]) -> bool {
    let euid = process::euid();
    if euid != 0 {
        assert!(
            !under_ci(),
            "{test}: needs root (network namespaces, TAP, AF_PACKET) and CI=true, \
             but euid is {euid}: CI must run these tests for real"
        );
        println!(
            "skipping {test}: needs root (network namespaces, TAP, AF_PACKET); euid is {euid}"
        );
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| !process::on_path(tool))
        .collect();
    assert!(
        missing.is_empty(),
        "{test}: running as root but {missing:?} not installed \
         (apt-get install iproute2 nginx-light curl wrk python3 ethtool procps)"
    );
    netns::remove_stale_namespaces();
    true
}
