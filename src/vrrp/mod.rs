//! VRRP: failover of the virtual addresses between directors, byte for
//! byte interoperable with keepalived 2.2.7 (`reference/keepalived.md` §2,
//! issue #13).
//!
//! * [`conf`]: the YAML `vrrp:` section with keepalived's keywords and
//!   defaults, resolved against the ports.
//! * [`state`]: one instance as a pure state machine on virtual time, with
//!   keepalived's receive checks (each rejection counted by reason).
//! * [`service`]: the control thread doing the I/O: adverts through a raw
//!   IP socket (protocol 112) on the port's kernel interface, gratuitous
//!   ARPs through an AF_PACKET socket on it, mastership published to the
//!   workers as the snapshot's standby set (the VIPs of every instance not
//!   MASTER are neither answered for nor forwarded).
//!
//! Rules: nothing here runs on a worker; the workers see VRRP only through
//! snapshots. Building packets here is pure ([`advert_ipv4`], [`garp`]).
//! Layering: [`conf`] and [`state`] depend only on `wire` (`ctl::config`
//! embeds [`conf::VrrpConf`]); [`service`] sits at the daemon's layer (it
//! uses `ctl::server::Control` and `daemon::log`, and only `daemon` starts
//! it); `lbctl --vrrp`'s answer type lives in `ctl::protocol`.

pub mod conf;
pub mod service;
pub mod state;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::vrrp::{self, VrrpRepr};
use crate::wire::{
    ethertype, ip_proto, ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame,
    EthernetRepr, IpFamily, Ipv4Packet, Ipv4Repr, VrrpPacket,
};

use conf::InstanceSpec;

/// The IPv4 advert of `spec` with `priority` to `dst`, IP header included,
/// as keepalived builds it (`vrrp_build_ip4`): TOS 0xc0, TTL 255, DF clear,
/// identification `ident`.
pub fn advert_ipv4(spec: &InstanceSpec, priority: u8, ident: u16, dst: Ipv4Addr) -> Vec<u8> {
    let repr = VrrpRepr {
        version: spec.version,
        vrid: spec.vrid,
        priority,
        interval: if spec.version == 2 {
            spec.interval_cs / 100
        } else {
            spec.interval_cs
        },
        auth: if spec.version == 2 {
            spec.auth
        } else {
            crate::wire::VrrpAuth::None
        },
        addrs: spec.vips.clone(),
    };
    let src = match spec.src {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: ip_proto::VRRP,
        payload_len: repr.buffer_len(),
        ttl: vrrp::TTL,
        dscp_ecn: vrrp::TOS,
        ident,
        dont_frag: false,
    };
    let mut buf = vec![0u8; ip.buffer_len() + repr.buffer_len()];
    let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut packet);
    let mut v = VrrpPacket::new_unchecked(packet.payload_mut(), IpFamily::V4);
    repr.emit(&mut v, &IpAddr::V4(src), &IpAddr::V4(dst));
    buf
}

/// The VRRPv3 message of an IPv6 instance `spec` with `priority` from
/// `src` to `dst` (the kernel adds the IPv6 header: hop limit 255, traffic
/// class 0xc0); checksummed with the IPv6 pseudo-header.
pub fn advert_v6(spec: &InstanceSpec, priority: u8, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let repr = VrrpRepr {
        version: 3,
        vrid: spec.vrid,
        priority,
        interval: spec.interval_cs,
        auth: crate::wire::VrrpAuth::None,
        addrs: spec.vips.clone(),
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    let mut v = VrrpPacket::new_unchecked(&mut buf[..], IpFamily::V6);
    repr.emit(&mut v, &IpAddr::V6(src), &IpAddr::V6(dst));
    buf
}

/// An unsolicited neighbour advertisement for `vip` from `mac` (keepalived
/// `vrrp_ndisc.c`): to ff02::1 from the VIP, hop limit 255, Override set,
/// with the target link-layer address option.
pub fn unsolicited_na(mac: EthernetAddress, vip: Ipv6Addr) -> Vec<u8> {
    crate::wire::PacketBuilder::ethernet(mac, EthernetAddress([0x33, 0x33, 0, 0, 0, 1]))
        .ipv6(vip, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1))
        .ndp_advert(crate::wire::NdpFlags::OVERRIDE, vip, Some(mac))
        .build()
}

/// A gratuitous ARP for `vip` from `mac` as keepalived sends it: a
/// broadcast request with sender = target = the VIP and target MAC
/// ff:ff:ff:ff:ff:ff.
pub fn garp(mac: EthernetAddress, vip: Ipv4Addr) -> Vec<u8> {
    let mut buf = vec![0u8; EthernetFrame::HEADER_LEN + ArpPacket::PACKET_LEN];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: ethertype::ARP,
    }
    .emit(&mut frame);
    ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: vip,
        target_hardware_addr: EthernetAddress::BROADCAST,
        target_protocol_addr: vip,
    }
    .emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_is_a_broadcast_request_for_the_vip_with_broadcast_target_mac() {
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let f = garp(mac, Ipv4Addr::new(10, 99, 0, 38));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac.0);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[22..28], &mac.0, "sha");
        assert_eq!(&f[28..32], &[10, 99, 0, 38], "spa");
        assert_eq!(&f[32..38], &[0xff; 6], "tha");
        assert_eq!(&f[38..42], &[10, 99, 0, 38], "tpa");
    }

    #[test]
    fn unsolicited_na_overrides_for_the_vip_with_its_mac() {
        use crate::wire::{Icmpv6Packet, Ipv6Packet, NdpRepr};
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let vip: Ipv6Addr = "2001:db8::38".parse().unwrap();
        let f = unsolicited_na(mac, vip);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.src_addr(), vip);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        assert_eq!(
            NdpRepr::parse(&icmp).unwrap(),
            NdpRepr::NeighborAdvert {
                flags: crate::wire::NdpFlags::OVERRIDE,
                target: vip,
                target_lladdr: Some(mac),
            }
        );
    }

    #[test]
    fn v6_advert_is_checksummed_with_the_ipv6_pseudo_header() {
        let mut spec = crate::vrrp::state::tests::spec(90, [10, 99, 0, 11]);
        spec.version = 3;
        spec.vips = vec!["2001:db8::38".parse().unwrap()];
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst = crate::wire::vrrp::MCAST_V6;
        let msg = advert_v6(&spec, 90, src, dst);
        assert_eq!(msg.len(), 24);
        let p = VrrpPacket::new_checked(&msg[..], IpFamily::V6).unwrap();
        assert!(p.verify_checksum_v3(&IpAddr::V6(src), &IpAddr::V6(dst)));
        assert_eq!((p.version(), p.priority(), p.max_adver_int()), (3, 90, 100));
    }
}
