//! A sync backup (a real `lbd`, two workers on `mem` ports) fed from a
//! raw UDP socket in a neighbouring namespace: truncated, oversized,
//! wrong-size, wrong-version, wrong-syncid and malformed messages, and
//! entries it cannot install, are each counted under their reason and
//! change nothing; then one well-formed message installs its connection
//! in the table of the worker that owns the flow (the positive control).
//! Then `lbctl --start-daemon`, `-L --daemon` and `--stop-daemon` on the
//! running daemon, a full resynchronisation on request (the master sends
//! its table), and a stop within lbd's 2 s budget.

mod support;

use std::net::{SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::Duration;

use rvs::conntrack::{addr_from_ip, Tuple};
use rvs::ctl::protocol::Response;
use rvs::steer::{self, Destination};
use rvs::wire::ipvs_sync::{
    self, flags, message_len, SyncConnRepr, DEFAULT_GROUP, DEFAULT_PORT, HEADER_LEN,
};
use support::lbd::{self, Lbd, LBD};
use support::netns::Netns;
use support::process::poll_until;

const SYNCID: u8 = 14;

fn entry(cport: u16, vip: &str) -> SyncConnRepr {
    SyncConnRepr {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        cport,
        vport: 80,
        dport: 8080,
        fwmark: 0,
        timeout: 900,
        caddr: "10.0.0.7".parse().unwrap(),
        vaddr: vip.parse().unwrap(),
        daddr: "192.168.10.1".parse().unwrap(),
        local: None,
    }
}

/// A v1 message holding `entries`, syncid `syncid`.
fn message(syncid: u8, entries: &[SyncConnRepr]) -> Vec<u8> {
    let mut buf = vec![0u8; message_len(entries)];
    ipvs_sync::emit_message(&mut buf, syncid, entries);
    buf
}

fn counters(socket: &Path) -> Vec<(String, u64)> {
    match lbd::lbctl_json(socket, &["-L", "--daemon"]) {
        Response::Daemon { status } => status
            .counters
            .into_iter()
            .map(|c| (c.name, c.value))
            .collect(),
        other => panic!("unexpected answer {other:?}"),
    }
}

fn counter(all: &[(String, u64)], name: &str) -> u64 {
    all.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no counter {name} in {all:?}"))
}

fn send_all(inj: &Netns, datagrams: Vec<Vec<u8>>) {
    inj.run(move || {
        let s = UdpSocket::bind("10.9.0.9:0").expect("bind the injector");
        s.set_multicast_ttl_v4(1).expect("ttl");
        for d in datagrams {
            s.send_to(&d, SocketAddrV4::new(DEFAULT_GROUP, DEFAULT_PORT))
                .expect("send");
        }
    });
}

/// An lbd (two workers, `mem` ports, a NAT service) with a sync backup on
/// `sync0` in namespace `bk`, and an injector namespace `inj` (10.9.0.9)
/// on the other end of the veth.
struct BackupWorld {
    // Drop order: lbd, then the namespaces.
    lbd: Lbd,
    socket: std::path::PathBuf,
    inj: Netns,
    _bk: Netns,
    _tmp: tempfile::TempDir,
}

impl BackupWorld {
    /// `extra`: more keys of the backup's `sync:` entry (", auth_key: k").
    fn start(extra: &str) -> BackupWorld {
        let bk = Netns::ipv4_host("sbk");
        let inj = Netns::ipv4_host("sinj");
        bk.add_veth("sync0", &inj, "s0");
        bk.sh("ip addr add 10.9.0.2/24 dev sync0\nip link set sync0 up");
        inj.sh("ip addr add 10.9.0.9/24 dev s0\nip link set s0 up");
        let tmp = tempfile::tempdir().expect("tempdir");
        let socket = tmp.path().join("lbd.sock");
        let yaml = format!(
            "socket: {}
workers: {{count: 2, idle: backoff}}
ports:
  - {{name: ext, driver: mem, addrs: [\"10.0.0.254/24\"]}}
  - {{name: int, driver: mem, addrs: [\"192.168.10.254/24\"]}}
sync:
  - {{role: backup, interface: sync0, syncid: {SYNCID}{extra}}}
",
            socket.display()
        );
        let path = tmp.path().join("lbd.yaml");
        std::fs::write(&path, &yaml).expect("yaml");
        let mut cmd = bk.cmd(LBD);
        cmd.arg("-c").arg(&path);
        let lbd = Lbd::start("lbd backup", cmd, &socket, &tmp.path().join("lbd.log"));
        lbd.lbctl(&["-A", "-t", "10.0.0.100:80", "-s", "rr"]);
        lbd.lbctl(&["-a", "-t", "10.0.0.100:80", "-r", "192.168.10.1:8080", "-m"]);
        BackupWorld {
            lbd,
            socket,
            inj,
            _bk: bk,
            _tmp: tmp,
        }
    }
}

/// `entries` in a message signed with `key` (rvs's HMAC trailer).
fn signed_message(key: &[u8], entries: &[SyncConnRepr]) -> Vec<u8> {
    let mut m = message(SYNCID, entries);
    let n = m.len();
    m.resize(n + ipvs_sync::HMAC_TRAILER_LEN, 0);
    ipvs_sync::emit_hmac_trailer(&mut m[n..]);
    m[4] += 1;
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    assert!(rvs::sync::auth::sign(key, &mut m));
    m
}

#[test]
fn a_backup_with_a_key_installs_only_messages_signed_with_it() {
    if !support::needs_root(
        "a_backup_with_a_key_installs_only_messages_signed_with_it",
        &["ip"],
    ) {
        return;
    }
    let w = BackupWorld::start(", auth_key: s3cret");
    send_all(
        &w.inj,
        vec![
            message(SYNCID, &[entry(40000, "10.0.0.100")]),
            signed_message(b"wrong", &[entry(40001, "10.0.0.100")]),
        ],
    );
    let c = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let c = counters(&w.socket);
        (counter(&c, "messages_received") >= 2).then_some(c)
    })
    .expect("two messages received");
    assert_eq!(counter(&c, "dropped_auth"), 2, "{c:?}");
    assert_eq!(counter(&c, "installed"), 0, "{c:?}");
    send_all(
        &w.inj,
        vec![signed_message(b"s3cret", &[entry(40002, "10.0.0.100")])],
    );
    let done = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (counter(&counters(&w.socket), "installed") == 1).then_some(())
    });
    assert!(done.is_some(), "{:?}", counters(&w.socket));
    let conns = lbd::conns(&w.socket);
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0].client.port(), 40002);
    assert!(
        !w.lbd
            .lbctl(&["-L", "--daemon", "-o", "json"])
            .contains("s3cret"),
        "the key is never listed"
    );
}

#[test]
fn malformed_or_foreign_sync_messages_are_counted_and_install_nothing() {
    if !support::needs_root(
        "malformed_or_foreign_sync_messages_are_counted_and_install_nothing",
        &["ip"],
    ) {
        return;
    }
    let w = BackupWorld::start("");
    let (lbd, socket, inj) = (&w.lbd, w.socket.clone(), &w.inj);
    assert_eq!(
        lbd.lbctl(&["-L", "--daemon"]),
        "backup sync daemon (mcast=sync0, syncid=14, maxlen=1472, group=224.0.0.81, port=8848)\n"
    );

    let good = message(SYNCID, &[entry(40000, "10.0.0.100")]);
    let mut bad_size = good.clone();
    bad_size[2..4].copy_from_slice(&40u16.to_be_bytes());
    let mut v0 = good.clone();
    v0[5] = 0;
    let mut short_entry = good.clone();
    short_entry[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&20u16.to_be_bytes());
    let mut more_than_declared = good.clone();
    more_than_declared[4] = 2;
    // An entry with an unknown mandatory option (type 0x11): skipped.
    let mut mandatory = message(SYNCID, &[entry(40001, "10.0.0.100")]);
    mandatory.extend_from_slice(&[0x11, 2, 0, 0]);
    let len = mandatory.len() as u16;
    mandatory[2..4].copy_from_slice(&len.to_be_bytes());
    mandatory[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&40u16.to_be_bytes());
    let mut not_ipvs = good.clone();
    not_ipvs[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&flags::LOCALNODE.to_be_bytes());
    let mut oversized = message(SYNCID, &[entry(40002, "10.0.0.100"); 30]);
    oversized.extend_from_slice(&[0u8; 400]);
    let n = oversized.len() as u16;
    oversized[2..4].copy_from_slice(&n.to_be_bytes());
    assert!(oversized.len() > 1472);
    let bad = vec![
        good[..5].to_vec(),                                 // truncated header
        good[..good.len() - 4].to_vec(),                    // truncated entry (size says more)
        bad_size,                                           // size below the datagram
        v0,                                                 // version 0
        message(SYNCID + 1, &[entry(40003, "10.0.0.100")]), // another syncid
        short_entry,                                        // entry shorter than IPv4's
        more_than_declared,                                 // nr_conns 2, one entry
        oversized,                                          // > maxlen
        mandatory,                                          // refused entry
        not_ipvs,                                           // local-node method
        message(SYNCID, &[entry(40004, "10.0.0.199")]),     // no such service
    ];
    let sent = bad.len() as u64;
    send_all(inj, bad);
    let all = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let c = counters(&socket);
        (counter(&c, "messages_received") >= sent).then_some(c)
    })
    .unwrap_or_else(|| {
        panic!(
            "the backup did not receive {sent} messages: {:?}",
            counters(&socket)
        )
    });
    println!("{}", lbd.lbctl(&["-L", "--daemon", "--exact"]));
    for (name, want) in [
        ("messages_received", sent),
        ("dropped_truncated", 2),
        ("dropped_bad_size", 1),
        ("dropped_bad_version", 1),
        ("dropped_wrong_syncid", 1),
        ("dropped_malformed", 2),
        ("dropped_oversized", 1),
        ("entries_refused", 2),
        ("entries_no_service", 1),
        ("installed", 0),
        ("updated", 0),
        ("install_failed", 0),
    ] {
        assert_eq!(counter(&all, name), want, "{name} in {all:?}");
    }
    assert!(lbd::conns(&socket).is_empty(), "nothing installed");

    // The positive control: the well-formed message installs its entry,
    // on the worker that owns the flow.
    send_all(inj, vec![good]);
    let done = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (counter(&counters(&socket), "installed") == 1).then_some(())
    });
    assert!(done.is_some(), "{:?}", counters(&socket));
    let conns = lbd::conns(&socket);
    assert_eq!(conns.len(), 1, "{conns:?}");
    let c = &conns[0];
    assert_eq!(c.state, "ESTABLISHED");
    assert_eq!(c.client.to_string(), "10.0.0.7:40000");
    assert_eq!(c.daddr.to_string(), "192.168.10.1:8080");
    assert!(c.expires_ms > 890_000, "full ESTABLISHED timeout: {c:?}");
    assert!(c.synced, "marked as synced: {c:?}");
    let text = lbd.lbctl(&["-Lnc"]);
    assert!(text.contains("ESTABLISHED"), "{text}");
    assert!(
        !text.contains("synced"),
        "ipvsadm's format by default: {text}"
    );
    let text = lbd.lbctl(&["-Lnc", "--persistent-conn"]);
    assert!(text.contains(" synced\n"), "{text}");
    let t = Tuple::new(
        6,
        false,
        addr_from_ip(&c.client.ip()),
        40000,
        addr_from_ip(&c.vaddr.ip()),
        80,
    );
    let owner = steer::flow_owner(
        Destination::Service { persist_mask: None },
        &t.src[..4],
        t.sport,
        &t.dst[..4],
        t.dport,
        2,
    );
    let listed = lbd::lbctl_json(&socket, &["--dataplane-stats"]);
    let Response::DataplaneStats { workers } = listed else {
        panic!("unexpected answer {listed:?}");
    };
    let holders: Vec<u16> = workers
        .iter()
        .filter(|w| w.conns_now > 0)
        .map(|w| w.worker)
        .collect();
    assert_eq!(holders, [owner], "{workers:?}");

    // ipvsadm's words on the running daemon: a master joins the backup,
    // a second master is refused, and it stops again.
    lbd.lbctl(&[
        "--start-daemon",
        "master",
        "--mcast-interface",
        "sync0",
        "--syncid",
        "14",
        "--mcast-ttl",
        "2",
    ]);
    assert_eq!(
        lbd.lbctl(&["-L", "--daemon"]),
        "master sync daemon (mcast=sync0, syncid=14, maxlen=1472, group=224.0.0.81, port=8848, ttl=2)\n\
         backup sync daemon (mcast=sync0, syncid=14, maxlen=1472, group=224.0.0.81, port=8848)\n"
    );
    // A full resynchronisation (rvs): a backup's request makes the master
    // send its whole table — here the one connection installed above.
    let got = inj.run(|| {
        let group = UdpSocket::bind(SocketAddrV4::new(DEFAULT_GROUP, DEFAULT_PORT))
            .expect("bind the group");
        group
            .join_multicast_v4(&DEFAULT_GROUP, &"10.9.0.9".parse().unwrap())
            .expect("join");
        group
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let s = UdpSocket::bind("10.9.0.9:0").expect("bind the injector");
        let mut req = [0u8; ipvs_sync::RESYNC_REQUEST_LEN];
        let n = ipvs_sync::emit_resync_request(&mut req, SYNCID);
        s.send_to(&req[..n], SocketAddrV4::new(DEFAULT_GROUP, DEFAULT_PORT))
            .expect("send");
        poll_until(Duration::from_secs(5), Duration::from_millis(1), || {
            let mut buf = [0u8; 2048];
            let n = group.recv(&mut buf).ok()?;
            let m = ipvs_sync::SyncMessage::new_checked(&buf[..n]).ok()?;
            let conns: Vec<SyncConnRepr> = m.conns().flatten().collect();
            conns.iter().any(|c| c.cport == 40000).then_some(conns)
        })
    });
    let got = got.expect("the master sent its table after the request");
    assert_eq!(got[0].dport, 8080, "{got:?}");
    let c = counters(&socket);
    assert_eq!(counter(&c, "resync_requests_served"), 1, "{c:?}");
    assert_eq!(
        counter(&c, "resync_requests_sent"),
        1,
        "the backup asked at start"
    );
    let (_, err) = lbd::lbctl_fails(&socket, &["--start-daemon", "master"]);
    assert!(
        err.contains("a master sync daemon is already running"),
        "{err}"
    );
    lbd.lbctl(&["--stop-daemon", "master"]);
    let (_, err) = lbd::lbctl_fails(&socket, &["--stop-daemon", "master"]);
    assert!(err.contains("no master sync daemon is running"), "{err}");
    assert!(!lbd.lbctl(&["-L", "--daemon"]).contains("master"));
    // lbd stops within its 2 s budget with the backup thread running.
    let t0 = std::time::Instant::now();
    let BackupWorld { lbd, .. } = w;
    lbd.stop_cleanly();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
}
