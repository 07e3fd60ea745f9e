//! The IPVS sync v1 wire format (reference/keepalived.md §3.2) through the
//! public API: a whole message byte for byte as the kernel lays out
//! `ip_vs_sync_mesg` + `ip_vs_sync_v4` / `ip_vs_sync_v6`, parse/emit round
//! trips of arbitrary entries, and arbitrary bytes never panicking the
//! parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rvs::sync::export::SyncEntry;
use rvs::wire::ipvs_sync::{
    self, flags, message_len, SyncConn, SyncConnRepr, SyncMessage, CONN_V4_LEN, CONN_V6_LEN,
    HEADER_LEN, OPT_RVS_LOCAL,
};
use rvs::wire::Error;

/// A v1 message holding `entries`, syncid `syncid`.
fn emit_message(syncid: u8, entries: &[SyncConnRepr]) -> Vec<u8> {
    let mut buf = vec![0xa5u8; message_len(entries)];
    ipvs_sync::emit_message(&mut buf, syncid, entries);
    buf
}

#[test]
fn a_message_with_a_v4_dr_entry_and_a_v6_nat_entry_matches_the_kernel_layout() {
    let dr = SyncConnRepr {
        protocol: 17,
        flags: flags::DROUTE | flags::NOOUTPUT | flags::INACTIVE,
        state: 0,
        cport: 0x1234,
        vport: 53,
        dport: 53,
        fwmark: 0,
        timeout: 300,
        caddr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        vaddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 101)),
        daddr: IpAddr::V4(Ipv4Addr::new(192, 168, 10, 2)),
        local: None,
    };
    let v6 = SyncConnRepr {
        protocol: 6,
        flags: flags::MASQ,
        state: 4, // FIN_WAIT
        cport: 443,
        vport: 443,
        dport: 8443,
        fwmark: 0,
        timeout: 120,
        caddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        vaddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100)),
        daddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
        local: None,
    };
    let m = emit_message(9, &[dr, v6]);
    let mut want = vec![
        0, 9, 0, 116, 2, 1, 0, 0, // reserved, syncid, size 8+36+72, nr_conns, version, spare
        // ip_vs_sync_v4
        0, 17, 0, 36, // type, protocol, ver_size
        0, 0, 0x01, 0x83, // flags DROUTE|NOOUTPUT|INACTIVE
        0, 0, 0x12, 0x34, 0, 53, 0, 53, // state, cport, vport, dport
        0, 0, 0, 0, 0, 0, 0x01, 0x2c, // fwmark, timeout 300
        203, 0, 113, 7, 10, 0, 0, 101, 192, 168, 10, 2, // ip_vs_sync_v6
        1, 6, 0, 72, 0, 0, 0, 0, // type INET6, protocol, ver_size, flags MASQ
        0, 4, 0x01, 0xbb, 0x01, 0xbb, 0x20, 0xfb, // state, cport, vport, dport
        0, 0, 0, 0, 0, 0, 0, 120, // fwmark, timeout
    ];
    for a in [&v6.caddr, &v6.vaddr, &v6.daddr] {
        if let IpAddr::V6(a) = a {
            want.extend_from_slice(&a.octets());
        }
    }
    assert_eq!(m, want);
    assert_eq!(CONN_V4_LEN, 36);
    assert_eq!(CONN_V6_LEN, 72);
    let msg = SyncMessage::new_checked(&m[..]).expect("valid v1");
    assert_eq!(msg.syncid(), 9);
    let back: Vec<_> = msg.conns().collect::<Result<_, _>>().expect("entries");
    assert_eq!(back, [dr, v6]);
}

#[test]
fn a_v0_message_a_wrong_size_and_a_short_datagram_are_refused() {
    let e = SyncConnRepr {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        cport: 1,
        vport: 80,
        dport: 80,
        fwmark: 0,
        timeout: 900,
        caddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        vaddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
        daddr: IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1)),
        local: None,
    };
    let m = emit_message(1, &[e]);
    assert_eq!(
        SyncMessage::new_checked(&m[..7]).err(),
        Some(Error::Truncated)
    );
    let mut v0 = m.clone();
    v0[0] = 1; // a v0 header: nr_conns first
    assert!(matches!(
        SyncMessage::new_checked(&v0[..]),
        Err(Error::Unsupported(_))
    ));
    let mut longer = m.clone();
    longer.extend_from_slice(&[0; 4]);
    assert!(matches!(
        SyncMessage::new_checked(&longer[..]),
        Err(Error::Malformed(_))
    ));
    let mut two = m.clone();
    two[4] = 2;
    let got: Vec<_> = SyncMessage::new_checked(&two[..])
        .expect("header")
        .conns()
        .collect();
    assert_eq!(got.last(), Some(&Err(Error::Truncated)));
}

fn addr(v6: bool) -> impl Strategy<Value = IpAddr> {
    if v6 {
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(a.into())).boxed()
    } else {
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(a.into())).boxed()
    }
}

fn repr() -> impl Strategy<Value = SyncConnRepr> {
    any::<bool>().prop_flat_map(|v6| {
        (
            (any::<u8>(), any::<u32>(), any::<u16>(), any::<u16>()),
            (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()),
            (addr(v6), addr(v6), addr(v6)),
            proptest::option::of((addr(v6), any::<u16>())),
        )
            .prop_map(
                |(
                    (protocol, fl, state, cport),
                    (vport, dport, fwmark, timeout),
                    (c, v, d),
                    local,
                )| {
                    SyncConnRepr {
                        protocol,
                        flags: fl & !flags::HASHED,
                        state,
                        cport,
                        vport,
                        dport,
                        fwmark,
                        timeout,
                        caddr: c,
                        vaddr: v,
                        daddr: d,
                        local,
                    }
                },
            )
    })
}

proptest! {
    #[test]
    fn every_entry_survives_emit_then_parse(entries in proptest::collection::vec(repr(), 1..20)) {
        let m = emit_message(3, &entries);
        let msg = SyncMessage::new_checked(&m[..]).expect("valid");
        let back: Vec<_> = msg.conns().collect::<Result<_, _>>().expect("entries");
        prop_assert_eq!(back, entries);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(msg) = SyncMessage::new_checked(&bytes[..]) {
            for r in msg.conns().flatten() {
                let _ = SyncEntry::from_repr(&r);
            }
        }
        let _ = SyncConn::new_checked(&bytes[..]).map(|c| SyncConnRepr::parse(&c));
    }

    #[test]
    fn a_valid_header_with_corrupted_entries_never_panics(
        entries in proptest::collection::vec(repr(), 1..5),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut m = emit_message(3, &entries);
        for (at, v) in flips {
            let i = HEADER_LEN + at % (m.len() - HEADER_LEN);
            m[i] = v;
        }
        if let Ok(msg) = SyncMessage::new_checked(&m[..]) {
            for r in msg.conns().flatten() {
                let _ = SyncEntry::from_repr(&r);
            }
        }
    }
}

#[test]
fn the_rvs_option_is_optional_so_a_kernel_backup_skips_it() {
    assert_eq!(OPT_RVS_LOCAL, 72);
    assert_ne!(OPT_RVS_LOCAL & 0x40, 0);
}
