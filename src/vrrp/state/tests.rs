//! The state machine on virtual time, against keepalived's timings and
//! receive checks (reference §2.2–2.3).

use super::*;
use crate::vrrp::advert_ipv4;
use crate::wire::VrrpAuth;
use std::net::Ipv4Addr;

const MS: u64 = 1_000;

pub(crate) fn spec(priority: u8, src: [u8; 4]) -> InstanceSpec {
    InstanceSpec {
        name: "VI_1".into(),
        port: 0,
        kernel_if: "kext".into(),
        vrid: 51,
        priority,
        version: 2,
        interval_cs: 100,
        auth: VrrpAuth::pass("1111"),
        vips: vec!["10.99.0.38".parse().unwrap()],
        excluded: vec![],
        src: IpAddr::V4(Ipv4Addr::from(src)),
        unicast_peers: vec![],
        nopreempt: false,
        preempt_delay_cs: 0,
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify: None,
        garp_delay_s: 5,
        garp_repeat: 5,
        garp_refresh_s: 0,
        sync_group: None,
        track: vec![],
        track_scripts: vec![],
        notes: vec![],
    }
}

/// The peer's advert as keepalived sends it.
fn peer_advert(peer: &InstanceSpec, priority: u8) -> Vec<u8> {
    advert_ipv4(peer, priority, 1, crate::wire::vrrp::MCAST_V4)
}

fn started(priority: u8) -> Instance {
    let mut i = Instance::new(spec(priority, [10, 99, 0, 11]));
    assert!(i.start(0).is_empty());
    assert_eq!(i.state(), VrrpState::Backup);
    i
}

/// Runs timers until `limit`, returning when the instance became MASTER.
fn takeover_time(i: &mut Instance, limit: u64) -> Option<u64> {
    while let Some(t) = i.next_deadline() {
        if t > limit {
            return None;
        }
        let out = i.on_timer(t);
        if out.contains(&Action::BecomeMaster) {
            return Some(t);
        }
    }
    None
}

#[test]
fn backup_becomes_master_after_master_down_interval() {
    // Priority 90, advert 1 s: 3 + 166/256 s = 3.6484375 s (keepalived
    // measured 3.665 s).
    let mut i = started(90);
    assert_eq!(i.master_down_interval_us(), 3_648_437);
    let peer = spec(100, [10, 99, 0, 12]);
    // The master's advert at t = 2 s restarts the timer.
    let r = i.receive(2_000 * MS, &peer_advert(&peer, 100));
    assert_eq!(r, Received::Advert(vec![]));
    assert_eq!(i.master(), Some(peer.src));
    assert_eq!(takeover_time(&mut i, 2_000 * MS + 3_648_436), None);
    let mut i2 = started(90);
    i2.receive(2_000 * MS, &peer_advert(&peer, 100));
    let t = i2.on_timer(2_000 * MS + 3_648_437);
    assert_eq!(
        t,
        vec![Action::Send { priority: 90 }, Action::BecomeMaster],
        "the advert first, then the VIPs"
    );
    assert_eq!(i2.state(), VrrpState::Master);
    // Then one advert per interval.
    assert_eq!(
        i2.next_deadline(),
        Some(2_000 * MS + 3_648_437 + 1_000 * MS)
    );
}

#[test]
fn priority_zero_advert_shortens_takeover_to_skew() {
    let mut i = started(90);
    let peer = spec(100, [10, 99, 0, 12]);
    i.receive(1_000 * MS, &peer_advert(&peer, 100));
    i.receive(1_500 * MS, &peer_advert(&peer, 0));
    // 166/256 s = 0.6484375 s (keepalived: 0.650 s).
    assert_eq!(i.next_deadline(), Some(1_500 * MS + 648_437));
    assert_eq!(
        takeover_time(&mut i, 10_000 * MS),
        Some(1_500 * MS + 648_437)
    );
}

#[test]
fn nopreempt_keeps_lower_priority_master() {
    let mut s = spec(150, [10, 99, 0, 11]);
    s.nopreempt = true;
    let mut i = Instance::new(s);
    i.start(0);
    let peer = spec(100, [10, 99, 0, 12]);
    for k in 1..=20 {
        let r = i.receive(k * 1_000 * MS, &peer_advert(&peer, 100));
        assert_eq!(r, Received::Advert(vec![]));
        assert!(i.on_timer(k * 1_000 * MS + 999 * MS).is_empty());
    }
    assert_eq!(i.state(), VrrpState::Backup);
    // Without nopreempt the same backup ignores the lower priority and
    // takes over one Master_Down_Interval after its start.
    let mut p = started(150);
    for k in 1..=3 {
        p.receive(k * 1_000 * MS, &peer_advert(&peer, 100));
    }
    assert_eq!(
        takeover_time(&mut p, 20_000 * MS),
        Some(p.master_down_interval_us())
    );
}

#[test]
fn preempt_delay_holds_off_preemption() {
    let mut s = spec(150, [10, 99, 0, 11]);
    s.preempt_delay_cs = 500;
    let mut i = Instance::new(s);
    i.start(0);
    let peer = spec(100, [10, 99, 0, 12]);
    let mut k = 1;
    let t = loop {
        let now = k * 1_000 * MS;
        if let Some(d) = i.next_deadline().filter(|&d| d < now) {
            assert!(i.on_timer(d).contains(&Action::BecomeMaster));
            break d;
        }
        i.receive(now, &peer_advert(&peer, 100));
        k += 1;
        assert!(k < 30);
    };
    // The last accepted advert is the one at 4 s (before the 5 s delay).
    assert_eq!(t, 4_000 * MS + i.master_down_interval_us());
}

#[test]
fn higher_address_wins_priority_tie() {
    // We are MASTER at 100 from 10.99.0.11.
    let mut i = started(100);
    takeover_time(&mut i, 10_000 * MS).expect("master");
    let now = 5_000 * MS;
    // Same priority from a lower address: we stay and answer at once.
    let lower = spec(100, [10, 99, 0, 5]);
    assert_eq!(
        i.receive(now, &peer_advert(&lower, 100)),
        Received::Advert(vec![Action::Send { priority: 100 }])
    );
    assert_eq!(i.state(), VrrpState::Master);
    assert_eq!(i.dual_master_alarms(), 1);
    // Same priority from a higher address: it wins.
    let higher = spec(100, [10, 99, 0, 12]);
    assert_eq!(
        i.receive(now, &peer_advert(&higher, 100)),
        Received::Advert(vec![Action::BecomeBackup])
    );
    assert_eq!(i.state(), VrrpState::Backup);
    assert_eq!(i.master(), Some(higher.src));
}

#[test]
fn master_answers_lower_priority_and_yields_to_higher() {
    let mut i = started(100);
    takeover_time(&mut i, 10_000 * MS).expect("master");
    let peer = spec(90, [10, 99, 0, 12]);
    assert_eq!(
        i.receive(6_000 * MS, &peer_advert(&peer, 90)),
        Received::Advert(vec![Action::Send { priority: 100 }])
    );
    assert_eq!(
        i.receive(6_100 * MS, &peer_advert(&peer, 0)),
        Received::Advert(vec![Action::Send { priority: 100 }])
    );
    assert_eq!(
        i.receive(6_200 * MS, &peer_advert(&peer, 200)),
        Received::Advert(vec![Action::BecomeBackup])
    );
}

#[test]
fn priority_255_owner_is_master_at_once_and_clean_stop_sends_priority_zero() {
    let mut i = Instance::new(spec(255, [10, 99, 0, 11]));
    assert_eq!(
        i.start(0),
        vec![Action::Send { priority: 255 }, Action::BecomeMaster]
    );
    assert_eq!(
        i.stop(10 * MS),
        vec![Action::Send { priority: 0 }, Action::BecomeBackup]
    );
    assert_eq!(i.state(), VrrpState::Init);
    assert_eq!(i.next_deadline(), None);
    // A stopped backup sends nothing.
    let mut b = started(90);
    assert!(b.stop(0).is_empty());
}

#[test]
fn v3_skew_scales_with_the_interval() {
    let mut s = spec(90, [10, 99, 0, 11]);
    s.version = 3;
    s.interval_cs = 50;
    s.auth = VrrpAuth::None;
    let i = Instance::new(s);
    // 1.5 + 166 × 0.5 / 256 s = 1.82421875 s.
    assert_eq!(i.master_down_interval_us(), 1_824_218);
}

/// Every receive check rejects, is counted by its reason, and changes
/// nothing (the backup's timer keeps running).
#[test]
fn each_receive_check_rejects_and_counts() {
    let peer = spec(100, [10, 99, 0, 12]);
    let good = peer_advert(&peer, 100);
    let refix = |mut p: Vec<u8>| {
        // Recompute both checksums after an edit.
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.fill_checksum();
        let mut v = VrrpPacket::new_unchecked(ip.payload_mut(), IpFamily::V4);
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        v.fill_checksum(&any, &any);
        p
    };
    let mut cases: Vec<(Vec<u8>, Reject)> = Vec::new();
    // Truncated message (IP length says so, too).
    let mut t = good[..good.len() - 4].to_vec();
    let len = t.len() as u16;
    t[2..4].copy_from_slice(&len.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut t[..]).fill_checksum();
    cases.push((t, Reject::Length));
    // TTL 64.
    let mut t = good.clone();
    t[8] = 64;
    cases.push((refix(t), Reject::Ttl));
    // Version 3.
    let mut t = good.clone();
    t[20] = 0x31;
    cases.push((refix(t), Reject::Version));
    // Type 2.
    let mut t = good.clone();
    t[20] = 0x22;
    cases.push((refix(t), Reject::Type));
    // Bad checksum.
    let mut t = good.clone();
    t[26] ^= 0xff;
    cases.push((t, Reject::Checksum));
    // Auth type none.
    let mut np = peer.clone();
    np.auth = VrrpAuth::None;
    cases.push((peer_advert(&np, 100), Reject::AuthType));
    // Wrong password.
    let mut wp = peer.clone();
    wp.auth = VrrpAuth::pass("2222");
    cases.push((peer_advert(&wp, 100), Reject::AuthPass));
    // Interval 2 s.
    let mut iv = peer.clone();
    iv.interval_cs = 200;
    cases.push((peer_advert(&iv, 100), Reject::Interval));
    // Two VIPs.
    let mut two = peer.clone();
    two.vips.push("10.99.0.39".parse().unwrap());
    cases.push((peer_advert(&two, 100), Reject::AddrCount));
    // Another VIP.
    let mut other = peer.clone();
    other.vips = vec!["10.99.0.40".parse().unwrap()];
    cases.push((peer_advert(&other, 100), Reject::AddrList));
    // Unicast to us on a multicast instance.
    cases.push((
        advert_ipv4(&peer, 100, 1, Ipv4Addr::new(10, 99, 0, 11)),
        Reject::Destination,
    ));

    let mut i = started(90);
    let deadline = i.next_deadline();
    for (n, (packet, reason)) in cases.iter().enumerate() {
        assert_eq!(
            i.receive(1_000 * MS, packet),
            Received::Rejected(*reason),
            "case {n}"
        );
        assert_eq!(i.rejected(*reason), 1, "{reason:?} counted once");
        assert_eq!(i.next_deadline(), deadline, "{reason:?} changed the timer");
        assert_eq!(i.state(), VrrpState::Backup);
    }
    assert_eq!(i.rejects().iter().sum::<u64>(), cases.len() as u64);
    assert!(Reject::ALL.iter().all(|r| i.rejected(*r) == 1));
    assert_eq!(i.received(), 0);
    // The good one is accepted.
    assert_eq!(i.receive(1_000 * MS, &good), Received::Advert(vec![]));
    // Another VRID is not ours and not counted.
    let mut vr = peer.clone();
    vr.vrid = 52;
    assert_eq!(
        i.receive(1_000 * MS, &peer_advert(&vr, 100)),
        Received::OtherVrid
    );
}

#[test]
fn malformed_adverts_never_panic_and_change_nothing() {
    let peer = spec(100, [10, 99, 0, 12]);
    let good = peer_advert(&peer, 100);
    let mut i = started(90);
    let deadline = i.next_deadline();
    for n in 0..good.len() {
        let r = i.receive(MS, &good[..n]);
        assert!(matches!(r, Received::Rejected(_)), "{n} bytes: {r:?}");
    }
    // Every byte flipped in turn.
    for at in 0..good.len() {
        let mut p = good.clone();
        p[at] ^= 0x5a;
        let _ = i.receive(MS, &p);
    }
    assert_eq!(i.next_deadline(), deadline);
    assert_eq!(i.state(), VrrpState::Backup);
}

#[test]
fn a_rejected_advert_while_master_raises_the_dual_master_alarm() {
    let mut i = started(100);
    takeover_time(&mut i, 10_000 * MS).expect("master");
    let mut wp = spec(90, [10, 99, 0, 12]);
    wp.auth = VrrpAuth::pass("bad");
    let r = i.receive(6_000 * MS, &peer_advert(&wp, 90));
    assert_eq!(r, Received::Rejected(Reject::AuthPass));
    assert_eq!(i.dual_master_alarms(), 1);
    assert_eq!(i.state(), VrrpState::Master);
}

#[test]
fn sync_group_members_move_together() {
    let member = |name: &str, vrid, group: Option<&str>| {
        let mut s = spec(100, [10, 99, 0, 11]);
        s.name = name.into();
        s.vrid = vrid;
        s.sync_group = group.map(String::from);
        let mut i = Instance::new(s);
        i.start(0);
        i
    };
    let mut all = vec![
        member("VI_1", 51, Some("G")),
        member("VI_2", 52, Some("G")),
        member("VI_3", 53, None),
    ];
    // VI_1 hears nothing from its peer and takes over first.
    assert!(all[0].on_timer(4_000 * MS).contains(&Action::BecomeMaster));
    let followers = follow_sync_group(&mut all, 0, 4_000 * MS);
    assert_eq!(
        followers,
        vec![(
            1,
            vec![Action::Send { priority: 100 }, Action::BecomeMaster]
        )]
    );
    assert_eq!(all[1].state(), VrrpState::Master);
    assert_eq!(all[2].state(), VrrpState::Backup, "not in the group");
    // VI_2 yields to a higher priority: VI_1 leaves MASTER with it.
    let peer = spec(200, [10, 99, 0, 12]);
    let mut p2 = peer.clone();
    p2.vrid = 52;
    assert_eq!(
        all[1].receive(5_000 * MS, &peer_advert(&p2, 200)),
        Received::Advert(vec![Action::BecomeBackup])
    );
    let followers = follow_sync_group(&mut all, 1, 5_000 * MS);
    assert_eq!(followers, vec![(0, vec![Action::BecomeBackup])]);
    assert_eq!(all[0].state(), VrrpState::Backup);
    // Nothing more moves.
    assert!(follow_sync_group(&mut all, 0, 5_000 * MS).is_empty());
}

#[test]
fn a_failed_tracked_interface_puts_a_master_in_fault_with_priority_zero() {
    let mut i = started(100);
    takeover_time(&mut i, 10_000 * MS).expect("master");
    assert_eq!(
        i.set_trackers(5_000 * MS, true, 0),
        vec![Action::Send { priority: 0 }, Action::BecomeBackup]
    );
    assert_eq!(i.state(), VrrpState::Fault);
    assert_eq!(i.next_deadline(), None, "FAULT sends nothing");
    // Adverts change nothing in FAULT.
    let peer = spec(50, [10, 99, 0, 12]);
    assert_eq!(
        i.receive(5_500 * MS, &peer_advert(&peer, 50)),
        Received::Advert(vec![])
    );
    assert_eq!(i.state(), VrrpState::Fault);
    // The link comes back: BACKUP for a Master_Down_Interval.
    assert!(i.set_trackers(6_000 * MS, false, 0).is_empty());
    assert_eq!(i.state(), VrrpState::Backup);
    assert_eq!(
        i.next_deadline(),
        Some(6_000 * MS + i.master_down_interval_us())
    );
    // A backup in FAULT does not send priority 0.
    let mut b = started(90);
    assert!(b.set_trackers(MS, true, 0).is_empty());
    assert_eq!(b.state(), VrrpState::Fault);
}

#[test]
fn weighted_tracking_moves_the_effective_priority_within_1_to_254() {
    let mut i = started(100);
    takeover_time(&mut i, 10_000 * MS).expect("master");
    assert!(i.set_trackers(5_000 * MS, false, -20).is_empty());
    assert_eq!(i.effective_priority(), 80);
    // The next advert carries 80, and a peer at 90 now wins.
    assert_eq!(
        i.on_timer(i.next_deadline().expect("advert timer")),
        vec![Action::Send { priority: 80 }]
    );
    let peer = spec(90, [10, 99, 0, 5]);
    assert_eq!(
        i.receive(6_000 * MS, &peer_advert(&peer, 90)),
        Received::Advert(vec![Action::BecomeBackup])
    );
    i.set_trackers(6_000 * MS, false, 300);
    assert_eq!(i.effective_priority(), 254);
    i.set_trackers(6_000 * MS, false, -300);
    assert_eq!(i.effective_priority(), 1);
    let mut owner = Instance::new(spec(255, [10, 99, 0, 11]));
    owner.set_trackers(0, false, -50);
    assert_eq!(owner.effective_priority(), 255, "255 never changes");
}

#[test]
fn a_tracked_script_changes_verdict_after_fall_failures_and_rise_successes() {
    let mut s = ScriptState::new(2, 3);
    assert!(s.ok(), "starts OK");
    assert!(!s.result(false));
    assert!(!s.result(false));
    assert!(!s.result(true), "a success resets the streak");
    assert!(!s.result(false));
    assert!(!s.result(false));
    assert!(s.result(false), "third consecutive failure");
    assert!(!s.ok());
    assert!(!s.result(true));
    assert!(s.result(true), "second consecutive success");
    assert!(s.ok());
}
