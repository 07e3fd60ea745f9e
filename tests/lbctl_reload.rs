//! `lbctl --reload` against the real `lbd` (on `mem` ports, no root): the
//! changes it prints, the differences that need a restart on stderr, and a
//! broken file refused with exit 255 and `lbd --check-config`'s message,
//! the table unchanged.

mod support;

use std::process::Command;

use support::lbd::{lbctl, lbctl_output, Lbd, LBD};
use support::world::write_mem_daemon_config;

#[test]
fn lbctl_reload_prints_the_changes_and_refuses_a_broken_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_mem_daemon_config(dir.path(), "count: 2", "1");
    let socket = dir.path().join("lbd.sock");
    let mut cmd = Command::new(LBD);
    cmd.arg("-c").arg(&config);
    let lbd = Lbd::start("lbd", cmd, &socket, &dir.path().join("lbd.log"));

    write_mem_daemon_config(dir.path(), "count: 1", "4");
    let out = lbctl_output(&socket, &["--reload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "edit real server 192.168.10.1:8080 of TCP 10.0.0.100:80 (weight 1 -> 4)\n"
    );
    assert_eq!(
        stderr,
        "lbctl: not applied: workers (count) changed: restart lbd to apply it\n"
    );
    let listed = lbctl(&socket, &["-Ln"]);
    assert!(
        listed.contains("192.168.10.1:8080            Masq    4"),
        "{listed}"
    );

    let saved = lbctl(&socket, &["-S", "-n"]);
    let broken = write_mem_daemon_config(dir.path(), "count: 1", "-1");
    let check = Command::new(LBD)
        .arg("--check-config")
        .arg(&broken)
        .output()
        .expect("lbd --check-config");
    let message = String::from_utf8_lossy(&check.stderr)
        .trim()
        .trim_start_matches("lbd: ")
        .to_string();
    assert!(!message.is_empty());
    let out = lbctl_output(&socket, &["--reload"]);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("{message}; nothing was changed")
    );
    assert_eq!(
        lbctl(&socket, &["-S", "-n"]),
        saved,
        "the table is unchanged"
    );
    lbd.stop_cleanly();
}
