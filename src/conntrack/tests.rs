//! Behaviour tests of the connection table, named after the spec.

use super::tcp_flags::{ACK, FIN, RST, SYN};
use super::*;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

fn ip(s: &str) -> Addr {
    addr_from_ip(&s.parse::<IpAddr>().expect("test address"))
}

fn secs(s: u32) -> Tick {
    s * TICKS_PER_SEC
}

fn conn(fwd: Fwd, proto: Proto, cport: u16) -> NewConn {
    NewConn {
        proto,
        v6: false,
        fwd,
        cip: ip("203.0.113.7"),
        cport,
        vip: ip("10.0.0.1"),
        vport: 80,
        rip: ip("192.168.10.1"),
        rport: 8080,
        lip: ip("10.0.0.100"),
        lport: 40000 + cport,
        svc: 1,
        dest: 2,
        template: None,
        flags: 0,
    }
}

fn find(t: &ConnTable, tu: &Tuple) -> Option<(ConnId, Dir)> {
    let h = tu.hash();
    t.prefetch(h);
    t.prefetch_conn(h);
    t.prefetch_chain(tu, h);
    t.lookup(tu, h)
}

fn client_to_vip(c: &NewConn) -> Tuple {
    Tuple::new(c.proto.number(), c.v6, c.cip, c.cport, c.vip, c.vport)
}

/// Expires everything due at `now`; returns the removed entries.
fn expire_all(t: &mut ConnTable, now: Tick) -> Vec<Conn> {
    let mut gone = Vec::new();
    t.expire(now, u32::MAX, |c| gone.push(*c));
    gone
}

#[test]
fn tcp_three_way_handshake_goes_established() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(16);
    let c = conn(Fwd::Nat, Proto::Tcp, 1000);
    let id = t.insert(&c, 0, &to).unwrap();
    assert_eq!(t.get(id).state(), TcpState::None);
    assert!(!t.get(id).is_active(), "new connections start inactive");
    assert_eq!(t.get(id).expires_at(), secs(2), "NONE timeout");

    let syn = t.on_packet(id, Dir::Original, SYN, 1, &to);
    assert_eq!((syn.old, syn.new), (TcpState::None, TcpState::SynRecv));
    assert!(syn.became_active && !syn.became_inactive);
    assert_eq!(t.get(id).expires_at(), 1 + secs(60));

    let synack = t.on_packet(id, Dir::Reply, SYN | ACK, 2, &to);
    assert_eq!(synack.new, TcpState::SynRecv);
    assert!(!synack.became_active && !synack.became_inactive);

    let ack = t.on_packet(id, Dir::Original, ACK, 3, &to);
    assert_eq!(
        (ack.old, ack.new),
        (TcpState::SynRecv, TcpState::Established)
    );
    assert!(!ack.became_active, "already active since SYN_RECV");
    let e = t.get(id);
    assert!(e.is_active());
    assert_eq!(e.state_name(), "ESTABLISHED");
    assert_eq!(e.expires_at(), 3 + secs(900));
}

#[test]
fn dr_handshake_uses_input_only_table() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(16);
    let id = t.insert(&conn(Fwd::Dr, Proto::Tcp, 1000), 0, &to).unwrap();
    assert_eq!(
        t.on_packet(id, Dir::Original, SYN, 0, &to).new,
        TcpState::SynRecv
    );
    assert_eq!(
        t.on_packet(id, Dir::Original, ACK, 0, &to).new,
        TcpState::Established
    );
    // A client FIN on a one-way connection: INPUT-ONLY gives FIN_WAIT (INPUT
    // would give CLOSE_WAIT).
    let fin = t.on_packet(id, Dir::Original, FIN | ACK, 0, &to);
    assert_eq!(fin.new, TcpState::FinWait);
    assert!(fin.became_inactive);
}

#[test]
fn fin_wait_expires_after_its_timeout() {
    let to = Timeouts::default();
    // A big table: its wheel spans 819 s, so an ESTABLISHED entry examined
    // once gets filed ~819 s ahead.
    let mut t = ConnTable::new(1 << 16);
    assert_eq!(t.wheel_slots(), 8192);
    let id = t.insert(&conn(Fwd::Nat, Proto::Tcp, 1000), 0, &to).unwrap();
    t.on_packet(id, Dir::Original, SYN, 0, &to);
    t.on_packet(id, Dir::Original, ACK, 0, &to);
    assert_eq!(t.get(id).expires_at(), secs(900));
    assert!(
        expire_all(&mut t, secs(5)).is_empty(),
        "re-filed, not expired"
    );
    // The real server closes: ESTABLISHED + FIN (output) → FIN_WAIT, 120 s.
    // The deadline moves *earlier* than where the wheel filed it, so the
    // entry must be re-filed at once.
    let now = secs(10);
    let sc = t.on_packet(id, Dir::Reply, FIN | ACK, now, &to);
    assert_eq!(sc.new, TcpState::FinWait);
    assert!(sc.became_inactive);
    assert!(expire_all(&mut t, now + secs(120) - 1).is_empty());
    assert!(t.is_live(id));
    let gone = expire_all(&mut t, now + secs(120));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].state(), TcpState::FinWait);
    assert!(!gone[0].is_active(), "the callback sees it inactive");
    assert!(t.is_empty());
    assert!(find(&t, &client_to_vip(&conn(Fwd::Nat, Proto::Tcp, 1000))).is_none());
}

#[test]
fn set_timeouts_take_effect() {
    let mut to = Timeouts::default();
    to.set(60, 5, 7).unwrap();
    assert_eq!(to.get(), (60, 5, 7));
    let mut t = ConnTable::new(16);
    let a = t.insert(&conn(Fwd::Nat, Proto::Tcp, 1), 0, &to).unwrap();
    t.on_packet(a, Dir::Original, SYN, 0, &to);
    t.on_packet(a, Dir::Original, ACK, 0, &to);
    assert_eq!(t.get(a).expires_at(), secs(60), "--set tcp");
    let b = t.insert(&conn(Fwd::Nat, Proto::Tcp, 2), 0, &to).unwrap();
    t.on_packet(b, Dir::Original, SYN, 0, &to);
    t.on_packet(b, Dir::Original, ACK, 0, &to);
    t.on_packet(b, Dir::Reply, FIN, 0, &to);
    assert_eq!(t.get(b).expires_at(), secs(5), "--set tcpfin");
    let u = t.insert(&conn(Fwd::Nat, Proto::Udp, 3), 0, &to).unwrap();
    assert_eq!(t.get(u).expires_at(), secs(7), "--set udp");

    let gone: HashSet<u16> = expire_all(&mut t, secs(7))
        .iter()
        .map(|c| c.cport())
        .collect();
    assert_eq!(gone, HashSet::from([2, 3]));
    assert_eq!(expire_all(&mut t, secs(60)).len(), 1);
}

#[test]
fn udp_conn_expires_after_300s() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(16);
    let c = conn(Fwd::Nat, Proto::Udp, 5353);
    let id = t.insert(&c, 0, &to).unwrap();
    assert_eq!(t.get(id).state_name(), "UDP");
    let sc = t.on_packet(id, Dir::Original, 0, secs(100), &to);
    assert!(
        !sc.became_active && !t.get(id).is_active(),
        "UDP is never active"
    );
    t.on_packet(id, Dir::Reply, 0, secs(100), &to);
    assert!(!t.get(id).is_active());
    assert!(expire_all(&mut t, secs(400) - 1).is_empty());
    assert_eq!(expire_all(&mut t, secs(400)).len(), 1);
    assert!(find(&t, &client_to_vip(&c)).is_none());
}

#[test]
fn reply_tuple_finds_same_conn() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(16);
    // NAT: the reply is rip:rport → cip:cport.
    let nat = conn(Fwd::Nat, Proto::Tcp, 1000);
    let n = t.insert(&nat, 0, &to).unwrap();
    let nat_reply = Tuple::new(6, false, nat.rip, nat.rport, nat.cip, nat.cport);
    assert_eq!(t.get(n).reply_tuple(), Some(nat_reply));
    assert_eq!(find(&t, &client_to_vip(&nat)), Some((n, Dir::Original)));
    assert_eq!(find(&t, &nat_reply), Some((n, Dir::Reply)));
    // FULLNAT: the reply is rip:rport → lip:lport.
    let full = conn(Fwd::FullNat, Proto::Tcp, 2000);
    let f = t.insert(&full, 0, &to).unwrap();
    let full_reply = Tuple::new(6, false, full.rip, full.rport, full.lip, full.lport);
    assert_eq!(t.get(f).original_tuple(), client_to_vip(&full));
    assert_eq!(find(&t, &client_to_vip(&full)), Some((f, Dir::Original)));
    assert_eq!(find(&t, &full_reply), Some((f, Dir::Reply)));
    // The FULLNAT reply is not addressed to the client.
    let wrong = Tuple::new(6, false, full.rip, full.rport, full.cip, full.cport);
    assert_eq!(find(&t, &wrong), None);
    // IPv6 works the same way.
    let six = NewConn {
        v6: true,
        cip: ip("2001:db8::7"),
        vip: ip("2001:db8::1"),
        rip: ip("fd00::10"),
        lip: ip("fd00::100"),
        ..conn(Fwd::FullNat, Proto::Udp, 3000)
    };
    let s = t.insert(&six, 0, &to).unwrap();
    let six_reply = Tuple::new(17, true, six.rip, six.rport, six.lip, six.lport);
    assert_eq!(find(&t, &six_reply), Some((s, Dir::Reply)));
    // Removing drops both keys.
    let gone = t.remove(f).unwrap();
    assert_eq!(gone.lport(), full.lport);
    assert_eq!(find(&t, &client_to_vip(&full)), None);
    assert_eq!(find(&t, &full_reply), None);
    assert_eq!(find(&t, &nat_reply), Some((n, Dir::Reply)));
}

#[test]
fn dr_conn_has_no_reply_key() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(16);
    for (fwd, cport) in [(Fwd::Dr, 1), (Fwd::Tun, 2)] {
        let c = conn(fwd, Proto::Tcp, cport);
        let id = t.insert(&c, 0, &to).unwrap();
        assert_eq!(t.get(id).reply_tuple(), None);
        assert_eq!(find(&t, &client_to_vip(&c)), Some((id, Dir::Original)));
        let would_be_reply = Tuple::new(6, false, c.rip, c.rport, c.cip, c.cport);
        assert_eq!(find(&t, &would_be_reply), None);
    }
    // So a NAT conn whose reply tuple equals a DR conn's unindexed one is accepted.
    let nat = NewConn {
        vport: 443,
        ..conn(Fwd::Nat, Proto::Tcp, 1)
    };
    assert!(t.insert(&nat, 0, &to).is_ok());
}

#[test]
fn duplicate_original_or_reply_tuple_is_rejected() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(16);
    let c = conn(Fwd::Nat, Proto::Tcp, 1000);
    let id = t.insert(&c, 0, &to).unwrap();
    assert_eq!(t.insert(&c, 0, &to), Err(ConntrackError::Exists(id)));
    // Another VIP, same client and real server: same reply tuple.
    let other_vip = NewConn {
        vip: ip("10.0.0.2"),
        ..c
    };
    assert_eq!(
        t.insert(&other_vip, 0, &to),
        Err(ConntrackError::Exists(id))
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn table_full_rejects_new_keeps_existing() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(4);
    let ids: Vec<ConnId> = (0..4)
        .map(|p| t.insert(&conn(Fwd::Nat, Proto::Tcp, p), 0, &to).unwrap())
        .collect();
    assert_eq!(
        t.insert(&conn(Fwd::Nat, Proto::Tcp, 99), 0, &to),
        Err(ConntrackError::TableFull { capacity: 4 })
    );
    let key = Tuple::template_key(
        6,
        false,
        &ip("198.51.100.1"),
        &prefix_mask(false, 24),
        &ip("10.0.0.1"),
        80,
    );
    assert!(matches!(
        t.insert_template(&key, 2, 1, ip("192.168.10.1"), 80, 300, 0),
        Err(ConntrackError::TableFull { .. })
    ));
    assert_eq!(t.len(), 4);
    for (p, id) in ids.iter().enumerate() {
        assert_eq!(
            find(&t, &client_to_vip(&conn(Fwd::Nat, Proto::Tcp, p as u16))),
            Some((*id, Dir::Original))
        );
    }
    t.remove(ids[1]).unwrap();
    let again = t.insert(&conn(Fwd::Nat, Proto::Tcp, 99), 0, &to).unwrap();
    assert_eq!(again, ids[1], "the freed slot is reused");
    assert_eq!(t.len(), 4);
}

#[test]
fn zero_capacity_table_is_always_full() {
    let mut t = ConnTable::new(0);
    assert!(matches!(
        t.insert(&conn(Fwd::Nat, Proto::Tcp, 1), 0, &Timeouts::default()),
        Err(ConntrackError::TableFull { capacity: 0 })
    ));
    assert_eq!(t.expire(100, 10, |_| {}), 0);
}

/// Work of expiring the same 10 short-lived connections over 3 s, next to
/// `background` long-lived ones.
fn expiry_work_with(background: u32) -> (u32, u64, u32) {
    let to = Timeouts::default();
    let mut t = ConnTable::new(background + 64);
    let mut c = conn(Fwd::Nat, Proto::Udp, 0);
    for i in 0..background {
        c.cip = ip("198.18.0.0");
        c.cip[2] = (i >> 16) as u8;
        c.cip[3] = (i >> 8) as u8;
        c.cport = (i & 0xff) as u16 + 1;
        t.insert(&c, 0, &to).unwrap();
    }
    for p in 0..10 {
        t.insert(&conn(Fwd::Nat, Proto::Tcp, 1000 + p), 0, &to)
            .unwrap();
    }
    let (mut expired, mut total_work, mut max_work) = (0, 0u64, 0);
    for now in 1..=secs(3) {
        expired += t.expire(now, 1000, |_| {});
        total_work += u64::from(t.last_expire_work());
        max_work = max_work.max(t.last_expire_work());
    }
    (expired, total_work, max_work)
}

#[test]
fn expiry_cost_does_not_grow_with_table() {
    let (small_expired, small_work, _) = expiry_work_with(1_000);
    let (big_expired, big_work, big_max) = expiry_work_with(100_000);
    assert_eq!(small_expired, 10);
    assert_eq!(big_expired, 10);
    // One unit per tick advanced (31: ticks 0..=30) plus one per expired entry.
    assert_eq!(
        small_work, big_work,
        "work independent of the 100k idle entries"
    );
    assert!(big_work <= 31 + 10, "work {big_work}");
    assert!(big_max <= 11);
}

#[test]
fn expire_respects_budget_and_resumes() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(256);
    for p in 0..200 {
        t.insert(&conn(Fwd::Nat, Proto::Tcp, p), 0, &to).unwrap();
    }
    let now = secs(2);
    let mut calls = 0;
    let mut expired = 0;
    while !t.is_empty() {
        expired += t.expire(now, 16, |_| {});
        assert!(t.last_expire_work() <= 16);
        calls += 1;
        assert!(calls < 100, "no progress");
    }
    assert_eq!(expired, 200);
    assert!(calls >= 200 / 16);
}

#[test]
fn touched_conn_is_rearmed_lazily_not_expired() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(64);
    let c = conn(Fwd::Nat, Proto::Udp, 1);
    let id = t.insert(&c, 0, &to).unwrap();
    // Keep it alive with a packet every 200 s for 2000 s.
    let mut now = 0;
    while now < secs(2000) {
        now += secs(200);
        t.on_packet(id, Dir::Original, 0, now, &to);
        assert!(
            expire_all(&mut t, now).is_empty(),
            "expired while in use at {now}"
        );
    }
    assert!(expire_all(&mut t, now + secs(300) - 1).is_empty());
    assert_eq!(expire_all(&mut t, now + secs(300)).len(), 1);
}

#[test]
fn template_outlives_while_controlling_conns() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(64);
    let c = conn(Fwd::Nat, Proto::Tcp, 1000);
    let key = Tuple::template_key(6, false, &c.cip, &prefix_mask(false, 24), &c.vip, c.vport);
    let tpl = t
        .insert_template(&key, c.dest, c.svc, c.rip, c.rport, 300, 0)
        .unwrap();
    assert_eq!(t.lookup_template(&key, key.hash()), Some(tpl));
    assert_eq!(find(&t, &key), None, "conn lookups never return templates");
    let e = t.get(tpl);
    assert!(e.is_template() && !e.is_active());
    assert_eq!((e.state_name(), e.cport(), e.n_control()), ("NONE", 0, 0));

    let id = t
        .insert(
            &NewConn {
                template: Some(tpl),
                ..c
            },
            0,
            &to,
        )
        .unwrap();
    assert_eq!(t.get(id).template(), Some(tpl));
    assert_eq!(t.get(tpl).n_control(), 1);
    assert_eq!(
        t.remove(tpl),
        Err(ConntrackError::TemplateInUse {
            id: tpl,
            n_control: 1
        })
    );
    t.on_packet(id, Dir::Original, SYN, 0, &to);
    t.on_packet(id, Dir::Original, ACK, 0, &to);

    // The template's 300 s pass while the conn lives: re-armed for 60 s.
    assert!(expire_all(&mut t, secs(300)).is_empty());
    assert!(t.is_live(tpl));
    assert_eq!(
        t.get(tpl).expires_at(),
        secs(300) + secs(TEMPLATE_RETRY_SECS)
    );
    assert!(expire_all(&mut t, secs(360)).is_empty());
    assert!(t.is_live(tpl));

    // The conn goes; the template follows at its next deadline.
    t.on_packet(id, Dir::Original, RST, secs(400), &to);
    let gone = expire_all(&mut t, secs(410));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].template(), Some(tpl));
    assert_eq!(t.get(tpl).n_control(), 0);
    assert!(t.is_live(tpl));
    let deadline = t.get(tpl).expires_at();
    assert!(deadline <= secs(410) + secs(TEMPLATE_RETRY_SECS));
    let gone = expire_all(&mut t, deadline);
    assert_eq!(gone.len(), 1);
    assert!(gone[0].is_template());
    assert!(t.is_empty());
    assert_eq!(t.lookup_template(&key, key.hash()), None);
}

#[test]
fn template_touch_and_invalidate() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(16);
    let key = Tuple::template_key(
        17,
        false,
        &ip("198.51.100.9"),
        &prefix_mask(false, 32),
        &ip("10.0.0.1"),
        0,
    );
    let tpl = t
        .insert_template(&key, 3, 1, ip("192.168.10.3"), 53, 100, 0)
        .unwrap();
    assert!(matches!(
        t.insert_template(&key, 3, 1, ip("192.168.10.3"), 53, 100, 0),
        Err(ConntrackError::Exists(id)) if id == tpl
    ));
    t.touch(tpl, secs(50));
    assert_eq!(t.get(tpl).expires_at(), secs(150));
    assert!(expire_all(&mut t, secs(149)).is_empty());
    t.invalidate_template(tpl).unwrap();
    assert_eq!(t.lookup_template(&key, key.hash()), None);
    assert!(
        t.is_live(tpl),
        "invalidated templates stay until their time"
    );
    // A new template with the same key can now be created.
    let fresh = t
        .insert_template(&key, 4, 1, ip("192.168.10.4"), 53, 100, secs(149))
        .unwrap();
    assert_ne!(fresh, tpl);
    let gone = expire_all(&mut t, secs(150));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].dest(), 3);
    // Bad ids are precise errors, not panics.
    assert_eq!(
        t.invalidate_template(ConnId(999)),
        Err(ConntrackError::NoSuchTemplate(ConnId(999)))
    );
    assert_eq!(
        t.remove(ConnId(999)).map(|_| ()),
        Err(ConntrackError::NoSuchConn(ConnId(999)))
    );
    let bad = NewConn {
        template: Some(ConnId(7)),
        ..conn(Fwd::Nat, Proto::Udp, 1)
    };
    assert_eq!(
        t.insert(&bad, 0, &to),
        Err(ConntrackError::NoSuchTemplate(ConnId(7)))
    );
    assert!(matches!(
        t.insert_template(&key, 0, 0, ip("1.1.1.1"), 1, MAX_TIMEOUT_SECS + 1, 0),
        Err(ConntrackError::TimeoutOutOfRange { .. })
    ));
}

#[test]
fn stale_ids_change_nothing() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(4);
    let id = t.insert(&conn(Fwd::Nat, Proto::Tcp, 1), 0, &to).unwrap();
    t.remove(id).unwrap();
    assert_eq!(
        t.on_packet(id, Dir::Original, SYN, 0, &to),
        StateChange::default()
    );
    assert_eq!(
        t.on_packet(ConnId(1_000_000), Dir::Original, SYN, 0, &to),
        StateChange::default()
    );
    t.touch(id, 5);
    assert!(t.try_get(id).is_none());
    assert!(t.try_get(ConnId(u32::MAX)).is_none());
    assert!(t.is_empty());
}

#[test]
fn tcp_active_in_established_syn_sent_syn_recv_only() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(16);
    // SYN_SENT: reachable through OUTPUT syn from NONE.
    let a = t.insert(&conn(Fwd::Nat, Proto::Tcp, 1), 0, &to).unwrap();
    let sc = t.on_packet(a, Dir::Reply, SYN, 0, &to);
    assert_eq!(sc.new, TcpState::SynSent);
    assert!(sc.became_active && t.get(a).is_active());
    // SYN_RECV → (server RST) CLOSE: inactive.
    let b = t.insert(&conn(Fwd::Nat, Proto::Tcp, 2), 0, &to).unwrap();
    assert!(t.on_packet(b, Dir::Original, SYN, 0, &to).became_active);
    let rst = t.on_packet(b, Dir::Reply, RST, 0, &to);
    assert_eq!(rst.new, TcpState::Close);
    assert!(rst.became_inactive && !t.get(b).is_active());
    assert_eq!(t.get(b).expires_at(), secs(10));
    // A client RST in SYN_RECV keeps SYN_RECV (kernel table) and stays active.
    let c = t.insert(&conn(Fwd::Nat, Proto::Tcp, 3), 0, &to).unwrap();
    t.on_packet(c, Dir::Original, SYN, 0, &to);
    let sc = t.on_packet(c, Dir::Original, RST, 0, &to);
    assert_eq!(sc.new, TcpState::SynRecv);
    assert!(!sc.became_active && !sc.became_inactive && t.get(c).is_active());
    // ESTABLISHED → client FIN (input) → CLOSE_WAIT: inactive; server FIN → TIME_WAIT.
    let d = t.insert(&conn(Fwd::Nat, Proto::Tcp, 4), 0, &to).unwrap();
    t.on_packet(d, Dir::Original, SYN, 0, &to);
    t.on_packet(d, Dir::Original, ACK, 0, &to);
    let fin = t.on_packet(d, Dir::Original, FIN | ACK, 0, &to);
    assert_eq!(fin.new, TcpState::CloseWait);
    assert!(fin.became_inactive);
    let fin2 = t.on_packet(d, Dir::Reply, FIN | ACK, 0, &to);
    assert_eq!(fin2.new, TcpState::TimeWait);
    assert!(!fin2.became_active && !fin2.became_inactive);
    // A bare ACK on a NONE connection (sloppy start) → ESTABLISHED, active.
    let e = t.insert(&conn(Fwd::Nat, Proto::Tcp, 5), 0, &to).unwrap();
    assert!(t.on_packet(e, Dir::Original, ACK, 0, &to).became_active);
    // A segment without SYN/FIN/ACK/RST closes (IPVS: state_idx < 0 → CLOSE).
    assert_eq!(
        t.on_packet(e, Dir::Original, 0, 0, &to).new,
        TcpState::Close
    );
    // Only SYN_SENT, SYN_RECV, ESTABLISHED (and SYNACK) ever count as active.
    for (_, conn) in t.iter() {
        assert_eq!(
            conn.is_active(),
            conn.state().is_active(),
            "{:?}",
            conn.state()
        );
    }
}

#[test]
fn udp_never_active() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(4);
    let id = t.insert(&conn(Fwd::Nat, Proto::Udp, 1), 0, &to).unwrap();
    for flags in [SYN, ACK, FIN, RST, 0] {
        for dir in [Dir::Original, Dir::Reply] {
            let sc = t.on_packet(id, dir, flags, 0, &to);
            assert!(!sc.became_active && !sc.became_inactive);
            assert_eq!(sc.new, TcpState::None);
        }
    }
    assert!(!t.get(id).is_active());
}

#[test]
fn flush_dest_removes_its_conns_then_idle_templates() {
    let to = Timeouts::default();
    let mut t = ConnTable::new(32);
    let c = conn(Fwd::Nat, Proto::Tcp, 1);
    let key = Tuple::template_key(6, false, &c.cip, &prefix_mask(false, 32), &c.vip, 80);
    let tpl = t.insert_template(&key, 2, 1, c.rip, 8080, 300, 0).unwrap();
    t.insert(
        &NewConn {
            template: Some(tpl),
            ..c
        },
        0,
        &to,
    )
    .unwrap();
    t.insert(&conn(Fwd::Nat, Proto::Tcp, 2), 0, &to).unwrap();
    let other = t
        .insert(
            &NewConn {
                dest: 3,
                ..conn(Fwd::Nat, Proto::Tcp, 3)
            },
            0,
            &to,
        )
        .unwrap();
    let mut seen = Vec::new();
    assert_eq!(t.flush_dest(1, 2, |e| seen.push(e.is_template())), 3);
    assert_eq!(seen, [false, false, true], "connections before templates");
    assert_eq!(t.len(), 1);
    assert!(t.is_live(other));
    assert_eq!(t.clear(|_| {}), 1);
    assert!(t.is_empty());
    assert_eq!(t.iter().count(), 0);
}

#[test]
fn bytes_per_conn_at_most_128() {
    assert_eq!(std::mem::size_of::<Conn>(), 108);
    for cap in [1024, 4097, 65_537, 100_000, 1 << 20] {
        let t = ConnTable::new(cap);
        let b = t.bytes_per_conn();
        println!(
            "capacity {cap}: {b} bytes per connection ({} buckets, {} wheel slots)",
            t.bucket_count(),
            t.wheel_slots()
        );
        assert!(b <= 128, "capacity {cap}: {b} B/conn");
        assert!(
            t.bucket_count() >= 4 * u64::from(cap),
            "load factor ≤ 0.5 when full"
        );
    }
}

#[test]
fn laddr_partition_is_disjoint_across_workers() {
    let lips = [ip("10.0.0.100"), ip("10.0.0.101")];
    let workers = 3;
    let mut all: HashSet<(Addr, u16)> = HashSet::new();
    for w in 0..workers {
        let mut pool = LaddrPool::new(&lips, 1024, 2047, w, workers);
        let mut n = 0;
        while let Some((lip, port)) = pool.alloc() {
            assert_eq!(crate::steer::lport_owner(port, workers), w);
            assert!((1024..=2047).contains(&port));
            assert!(all.insert((lip, port)), "{port} handed out twice");
            n += 1;
        }
        assert_eq!(pool.available(), 0);
        assert_eq!(pool.in_use(), n);
    }
    assert_eq!(all.len(), 2 * 1024, "the partitions cover the whole range");
}

#[test]
fn laddr_alloc_matching_skips_ports_that_do_not_match_and_keeps_them() {
    let lips = [ip("10.0.0.100")];
    let mut pool = LaddrPool::new(&lips, 6000, 6009, 0, 1);
    // Only ports divisible by 3 are acceptable (6000, 6003, 6006, 6009).
    let mut got = Vec::new();
    while let Some((_, p)) = pool.alloc_matching(16, |_, p| p % 3 == 0) {
        got.push(p);
    }
    assert_eq!(got, vec![6000, 6003, 6006, 6009]);
    assert_eq!(pool.in_use(), 4, "rejected ports went back to the pool");
    assert_eq!(pool.available(), 6);
    assert_eq!(
        pool.alloc_matching(3, |_, _| false),
        None,
        "gives up after max_tries"
    );
    assert_eq!(pool.available(), 6);
}

#[test]
fn laddr_exhausted_then_freed_port_reusable() {
    let lips = [ip("10.0.0.100"), ip("10.0.0.101")];
    let mut pool = LaddrPool::new(&lips, 5000, 5005, 0, 2); // ports 5000, 5002, 5004
    assert_eq!(pool.available(), 6);
    let got: Vec<(Addr, u16)> = std::iter::from_fn(|| pool.alloc()).collect();
    assert_eq!(got.len(), 6);
    // Round-robin over the LIPs.
    assert_eq!(got[0].0, lips[0]);
    assert_eq!(got[1].0, lips[1]);
    assert_eq!(got[2].0, lips[0]);
    assert_eq!(pool.alloc(), None);
    pool.free(&lips[1], 5002);
    assert_eq!((pool.available(), pool.in_use()), (1, 5));
    assert_eq!(pool.alloc(), Some((lips[1], 5002)));
    // Double free, another worker's port, unknown LIP, out of range: ignored, counted.
    pool.free(&lips[0], 5000);
    pool.free(&lips[0], 5000);
    pool.free(&lips[0], 5001);
    pool.free(&ip("10.9.9.9"), 5000);
    pool.free(&lips[0], 80);
    assert_eq!(pool.ignored_frees(), 4);
    assert_eq!((pool.available(), pool.in_use()), (1, 5));
    assert!(pool.contains(&lips[0], 5004) && !pool.contains(&lips[0], 5001));
    // Freed ports are reused oldest first.
    pool.free(&lips[0], 5004);
    assert_eq!(pool.alloc(), Some((lips[0], 5000)));
    assert_eq!(pool.alloc(), Some((lips[0], 5004)));
}

#[test]
fn laddr_filtered_pool_and_degenerate_ranges() {
    let lips = [ip("10.0.0.100"), ip("10.0.0.100")];
    let mut odd = LaddrPool::new_filtered(&lips, 0, 9, |_, p| p % 2 == 1);
    assert_eq!(odd.available(), 5, "duplicate LIP taken once, port 0 never");
    assert!(std::iter::from_fn(|| odd.alloc()).all(|(_, p)| p % 2 == 1));
    assert_eq!(LaddrPool::new(&lips, 10, 9, 0, 1).available(), 0);
    assert_eq!(LaddrPool::new(&lips, 1, 100, 5, 2).available(), 0);
    assert_eq!(LaddrPool::new(&lips, 1, 100, 0, 0).available(), 100);
    assert_eq!(LaddrPool::new(&[], 1, 100, 0, 1).alloc(), None);
}

// ---------------------------------------------------------------------------
// Model-based property test.

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert {
            client: u8,
            cport: u8,
            fwd: u8,
            udp: bool,
            lport: u8,
        },
        Packet {
            pick: usize,
            reply: bool,
            flags: u8,
        },
        Remove {
            pick: usize,
        },
        Lookup {
            client: u8,
            cport: u8,
            reply: bool,
            lport: u8,
        },
        Advance {
            ticks: u16,
            budget: u32,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..3, 1u8..6, 0u8..4, any::<bool>(), 0u8..4)
                .prop_map(|(client, cport, fwd, udp, lport)| Op::Insert { client, cport, fwd, udp, lport }),
            4 => (any::<usize>(), any::<bool>(), prop::sample::select(vec![SYN, ACK, FIN | ACK, RST, SYN | ACK, 0]))
                .prop_map(|(pick, reply, flags)| Op::Packet { pick, reply, flags }),
            1 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
            2 => (0u8..3, 1u8..6, any::<bool>(), 0u8..4)
                .prop_map(|(client, cport, reply, lport)| Op::Lookup { client, cport, reply, lport }),
            2 => (0u16..120, prop_oneof![Just(u32::MAX), 1u32..8])
                .prop_map(|(ticks, budget)| Op::Advance { ticks, budget }),
        ]
    }

    #[derive(Clone, Debug)]
    struct Live {
        id: ConnId,
        orig: Tuple,
        reply: Option<Tuple>,
        tcp: bool,
        state: TcpState,
        no_output: bool,
        deadline: Tick,
    }

    fn new_conn(client: u8, cport: u8, fwd: u8, udp: bool, lport: u8) -> NewConn {
        let fwd = [Fwd::Nat, Fwd::Dr, Fwd::Tun, Fwd::FullNat][usize::from(fwd)];
        let mut cip = ip("198.51.100.0");
        cip[3] = client;
        NewConn {
            proto: if udp { Proto::Udp } else { Proto::Tcp },
            cip,
            cport: u16::from(cport),
            lport: u16::from(lport) + 1,
            ..conn(fwd, Proto::Tcp, 0)
        }
    }

    fn timeouts() -> Timeouts {
        let mut t = Timeouts::default();
        for (i, s) in TcpState::ALL.into_iter().enumerate() {
            t.set_tcp_state(s, 1 + (i as u32 % 4)).unwrap();
        }
        t.set(0, 0, 3).unwrap();
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn table_matches_hashmap_model(ops in prop::collection::vec(op(), 1..120)) {
            let to = timeouts();
            let cap = 12;
            let mut table = ConnTable::new(cap);
            let mut live: Vec<Live> = Vec::new();
            let mut index: HashMap<Tuple, (ConnId, Dir)> = HashMap::new();
            let mut now: Tick = 0;
            for op in ops {
                match op {
                    Op::Insert { client, cport, fwd, udp, lport } => {
                        let c = new_conn(client, cport, fwd, udp, lport);
                        let orig = client_to_vip(&c);
                        let res = table.insert(&c, now, &to);
                        if live.len() as u32 == cap {
                            prop_assert_eq!(res, Err(ConntrackError::TableFull { capacity: cap }));
                            continue;
                        }
                        let reply = match c.fwd {
                            Fwd::Nat => Some(Tuple::new(c.proto.number(), false, c.rip, c.rport, c.cip, c.cport)),
                            Fwd::FullNat => Some(Tuple::new(c.proto.number(), false, c.rip, c.rport, c.lip, c.lport)),
                            Fwd::Dr | Fwd::Tun => None,
                        };
                        let clash = index.get(&orig).or_else(|| reply.and_then(|r| index.get(&r)));
                        if let Some(&(other, _)) = clash {
                            prop_assert_eq!(res, Err(ConntrackError::Exists(other)));
                            continue;
                        }
                        let id = res.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        index.insert(orig, (id, Dir::Original));
                        if let Some(r) = reply {
                            index.insert(r, (id, Dir::Reply));
                        }
                        let timeout = if udp { to.udp() } else { to.tcp(TcpState::None) };
                        live.push(Live {
                            id, orig, reply, tcp: !udp, state: TcpState::None,
                            no_output: !c.fwd.sees_replies(), deadline: now + secs(timeout),
                        });
                    }
                    Op::Packet { pick, reply, flags } => {
                        if live.is_empty() { continue; }
                        let k = pick % live.len();
                        let l = &mut live[k];
                        let dir = if reply { Dir::Reply } else { Dir::Original };
                        let sc = table.on_packet(l.id, dir, flags, now, &to);
                        let timeout = if l.tcp {
                            let mut tdir = if reply { TcpDir::Output } else { TcpDir::Input };
                            if l.no_output {
                                if reply { l.no_output = false } else { tdir = TcpDir::InputOnly }
                            }
                            let new = next_tcp_state(tdir, flags, l.state);
                            prop_assert_eq!(sc.old, l.state);
                            prop_assert_eq!(sc.new, new);
                            prop_assert_eq!(sc.became_active, !l.state.is_active() && new.is_active());
                            prop_assert_eq!(sc.became_inactive, l.state.is_active() && !new.is_active());
                            l.state = new;
                            to.tcp(new)
                        } else {
                            to.udp()
                        };
                        l.deadline = now + secs(timeout);
                        prop_assert_eq!(table.get(l.id).expires_at(), l.deadline);
                        prop_assert_eq!(table.get(l.id).is_active(), l.tcp && l.state.is_active());
                    }
                    Op::Remove { pick } => {
                        if live.is_empty() { continue; }
                        let l = live.swap_remove(pick % live.len());
                        let gone = table.remove(l.id).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(gone.original_tuple(), l.orig);
                        index.remove(&l.orig);
                        if let Some(r) = l.reply { index.remove(&r); }
                    }
                    Op::Lookup { client, cport, reply, lport } => {
                        let c = new_conn(client, cport, 3, false, lport);
                        let t = if reply {
                            Tuple::new(6, false, c.rip, c.rport, if lport % 2 == 0 { c.lip } else { c.cip },
                                if lport % 2 == 0 { c.lport } else { c.cport })
                        } else {
                            client_to_vip(&c)
                        };
                        prop_assert_eq!(table.lookup(&t, t.hash()), index.get(&t).copied());
                    }
                    Op::Advance { ticks, budget } => {
                        now += Tick::from(ticks);
                        let mut gone = Vec::new();
                        table.expire(now, budget, |c| gone.push(*c));
                        prop_assert!(table.last_expire_work() <= budget);
                        for g in &gone {
                            let k = live.iter().position(|l| l.orig == g.original_tuple());
                            let Some(k) = k else {
                                return Err(TestCaseError::fail(format!("expired unknown {g:?}")));
                            };
                            let l = live.swap_remove(k);
                            prop_assert!(l.deadline <= now, "expired early: {} > {}", l.deadline, now);
                            index.remove(&l.orig);
                            if let Some(r) = l.reply { index.remove(&r); }
                        }
                        if budget == u32::MAX {
                            prop_assert!(live.iter().all(|l| l.deadline > now), "due entry survived");
                        }
                    }
                }
                prop_assert_eq!(table.len() as usize, live.len());
            }
            let mut ids: Vec<ConnId> = table.iter().map(|(id, _)| id).collect();
            let mut want: Vec<ConnId> = live.iter().map(|l| l.id).collect();
            ids.sort();
            want.sort();
            prop_assert_eq!(ids, want);
            for (t, v) in &index {
                prop_assert_eq!(table.lookup(t, t.hash()), Some(*v));
            }
        }
    }
}
