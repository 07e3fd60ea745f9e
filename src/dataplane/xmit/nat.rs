//! NAT (`-m`, masquerading): client → VIP packets get their destination
//! rewritten to the real server (port mapping allowed); the real server's
//! replies, routed back through the director, get their source rewritten
//! back to VIP:vport.
//!
//! Both directions also decrement the TTL / hop limit (the caller checked
//! it does not expire).
//!
//! ICMP errors about a NAT connection are relayed with the same mapping
//! applied to the outer header's address and to the quoted packet (which
//! travelled the other way): [`icmp_to_client`], [`icmp_to_server`].

use super::{dec_ttl, rewrite, rewrite4, Layout, Side};
use crate::conntrack::Conn;

/// Client → real server: dst VIP:vport → RIP:rport.
#[inline]
pub fn to_server(frame: &mut [u8], lay: &Layout, c: &Conn) {
    if lay.v6 {
        dec_ttl(frame, lay);
        rewrite(frame, lay, Side::Dst, &c.rip(), c.rport());
    } else {
        rewrite4(frame, lay, None, Some((&c.rip(), c.rport())));
    }
}

/// Real server → client: src RIP:rport → VIP:vport.
#[inline]
pub fn to_client(frame: &mut [u8], lay: &Layout, c: &Conn) {
    if lay.v6 {
        dec_ttl(frame, lay);
        rewrite(frame, lay, Side::Src, &c.vip(), c.vport());
    } else {
        rewrite4(frame, lay, Some((&c.vip(), c.vport())), None);
    }
}

/// An ICMP error from the real server's side about a client packet the
/// director forwarded (quoted CIP:cport → RIP:rport), relayed to the
/// client: outer src → VIP; quoted dst RIP:rport → VIP:vport, so the client
/// sees its packet as it sent it. `outer` and `inner` are the error's and
/// the quoted packet's layouts.
#[inline]
pub fn icmp_to_client(frame: &mut [u8], outer: &Layout, inner: &Layout, c: &Conn) {
    rewrite(frame, outer, Side::Src, &c.vip(), 0);
    rewrite(frame, inner, Side::Dst, &c.vip(), c.vport());
}

/// An ICMP error from the client's side (sent to the VIP) about a reply the
/// director forwarded (quoted VIP:vport → CIP:cport), relayed to the real
/// server: outer dst → RIP; quoted src VIP:vport → RIP:rport, so the real
/// server sees its packet as it sent it.
#[inline]
pub fn icmp_to_server(frame: &mut [u8], outer: &Layout, inner: &Layout, c: &Conn) {
    rewrite(frame, outer, Side::Dst, &c.rip(), 0);
    rewrite(frame, inner, Side::Src, &c.rip(), c.rport());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{addr_from_ip, ConnTable, Fwd, NewConn, Proto, Timeouts};
    use crate::dataplane::xmit::{icmp, ip_end};
    use crate::wire::builder::PacketBuilder;
    use crate::wire::{checksum, EthernetAddress};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn icmp_error_from_the_server_side_reaches_the_client_about_its_own_packet() {
        let mut table = ConnTable::new(16);
        let nc = NewConn {
            proto: Proto::from_number(6).expect("tcp"),
            v6: false,
            fwd: Fwd::Nat,
            cip: addr_from_ip(&ip("203.0.113.7")),
            cport: 40000,
            vip: addr_from_ip(&ip("10.0.0.1")),
            vport: 80,
            rip: addr_from_ip(&ip("192.168.10.1")),
            rport: 8080,
            lip: [0; 16],
            lport: 0,
            svc: 1,
            dest: 1,
            template: None,
            flags: 0,
        };
        let id = table.insert(&nc, 0, &Timeouts::default()).expect("insert");
        let c = *table.get(id);
        // What the director sent to the real server, quoted in an error
        // from a router on the server side to the client.
        let forwarded = PacketBuilder::new()
            .ipv4(
                "203.0.113.7".parse().expect("a"),
                "192.168.10.1".parse().expect("a"),
            )
            .tcp(40000, 8080)
            .build();
        let mut f = PacketBuilder::ethernet(EthernetAddress([2; 6]), EthernetAddress([4; 6]))
            .ipv4(
                "192.168.10.50".parse().expect("a"),
                "203.0.113.7".parse().expect("a"),
            )
            .icmpv4_error(3, 1, &forwarded[..28])
            .build();
        let outer = Layout {
            l3: 14,
            l4: 34,
            v6: false,
            proto: 1,
        };
        let inner = icmp::quoted_layout(&f, &outer).expect("quoted packet");
        icmp_to_client(&mut f, &outer, &inner, &c);
        icmp::fill_icmp_checksum(&mut f, &outer);
        let q = icmp::quoted_tuple(&f, &outer).expect("quoted tuple");
        assert_eq!((q.src, q.sport), (c.cip(), 40000));
        assert_eq!((q.dst, q.dport), (c.vip(), 80), "as the client sent it");
        assert_eq!(f[26..30], [10, 0, 0, 1], "the error comes from the VIP");
        assert_eq!(checksum::checksum(&f[14..34]), 0, "IP header checksum");
        let end = ip_end(&f, &outer);
        assert_eq!(checksum::checksum(&f[34..end]), 0, "ICMP checksum");
    }
}
