//! FULLNAT (`--fullnat`): both addresses are rewritten, so the real server
//! needs no route back through the director — it answers the local address.
//! Client → VIP: src CIP:cport → LIP:lport, dst VIP:vport → RIP:rport.
//! Reply to LIP:lport: src RIP:rport → VIP:vport, dst LIP:lport → CIP:cport.
//! The local port comes from the worker's partition of the service's
//! local-address pool (`conntrack::LaddrPool`).
//!
//! Both directions also decrement the TTL / hop limit (the caller checked
//! it does not expire).
//!
//! ICMP errors about a FULLNAT connection are relayed with both mappings
//! applied to the outer header's addresses and to the quoted packet (which
//! travelled the other way): [`icmp_to_client`], [`icmp_to_server`].

use super::{dec_ttl, rewrite, rewrite4, Layout, Side};
use crate::conntrack::Conn;

/// Client → real server.
#[inline]
pub fn to_server(frame: &mut [u8], lay: &Layout, c: &Conn) {
    if lay.v6 {
        dec_ttl(frame, lay);
        rewrite(frame, lay, Side::Src, &c.lip(), c.lport());
        rewrite(frame, lay, Side::Dst, &c.rip(), c.rport());
    } else {
        rewrite4(
            frame,
            lay,
            Some((&c.lip(), c.lport())),
            Some((&c.rip(), c.rport())),
        );
    }
}

/// Real server → client.
#[inline]
pub fn to_client(frame: &mut [u8], lay: &Layout, c: &Conn) {
    if lay.v6 {
        dec_ttl(frame, lay);
        rewrite(frame, lay, Side::Src, &c.vip(), c.vport());
        rewrite(frame, lay, Side::Dst, &c.cip(), c.cport());
    } else {
        rewrite4(
            frame,
            lay,
            Some((&c.vip(), c.vport())),
            Some((&c.cip(), c.cport())),
        );
    }
}

/// An ICMP error from the real server's side (sent to the LIP) about a
/// client packet the director forwarded (quoted LIP:lport → RIP:rport),
/// relayed to the client: outer src → VIP, dst → CIP; quoted src LIP:lport
/// → CIP:cport, dst RIP:rport → VIP:vport, so the client sees its packet as
/// it sent it.
#[inline]
pub fn icmp_to_client(frame: &mut [u8], outer: &Layout, inner: &Layout, c: &Conn) {
    rewrite(frame, outer, Side::Src, &c.vip(), 0);
    rewrite(frame, outer, Side::Dst, &c.cip(), 0);
    rewrite(frame, inner, Side::Src, &c.cip(), c.cport());
    rewrite(frame, inner, Side::Dst, &c.vip(), c.vport());
}

/// An ICMP error from the client's side (sent to the VIP) about a reply the
/// director forwarded (quoted VIP:vport → CIP:cport), relayed to the real
/// server: outer src → LIP, dst → RIP; quoted src VIP:vport → RIP:rport,
/// dst CIP:cport → LIP:lport, so the real server sees its packet as it sent
/// it.
#[inline]
pub fn icmp_to_server(frame: &mut [u8], outer: &Layout, inner: &Layout, c: &Conn) {
    rewrite(frame, outer, Side::Src, &c.lip(), 0);
    rewrite(frame, outer, Side::Dst, &c.rip(), 0);
    rewrite(frame, inner, Side::Src, &c.rip(), c.rport());
    rewrite(frame, inner, Side::Dst, &c.lip(), c.lport());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{addr_from_ip, ConnTable, Fwd, NewConn, Proto, Timeouts};
    use crate::dataplane::xmit::{icmp, ip_addrs, ip_end};
    use crate::wire::builder::PacketBuilder;
    use crate::wire::{checksum, EthernetAddress};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn icmp_error_from_the_client_side_reaches_the_server_about_its_own_reply() {
        let mut table = ConnTable::new(16);
        let nc = NewConn {
            proto: Proto::from_number(6).expect("tcp"),
            v6: false,
            fwd: Fwd::FullNat,
            cip: addr_from_ip(&ip("203.0.113.7")),
            cport: 40000,
            vip: addr_from_ip(&ip("10.0.0.4")),
            vport: 80,
            rip: addr_from_ip(&ip("192.168.10.2")),
            rport: 8080,
            lip: addr_from_ip(&ip("192.168.10.100")),
            lport: 5000,
            svc: 1,
            dest: 1,
            template: None,
            flags: 0,
        };
        let id = table.insert(&nc, 0, &Timeouts::default()).expect("insert");
        let c = *table.get(id);
        // The reply the director sent to the client, quoted in an error from
        // a router on the client's side to the VIP.
        let forwarded = PacketBuilder::new()
            .ipv4(
                "10.0.0.4".parse().expect("a"),
                "203.0.113.7".parse().expect("a"),
            )
            .tcp(80, 40000)
            .build();
        let mut f = PacketBuilder::ethernet(EthernetAddress([2; 6]), EthernetAddress([4; 6]))
            .ipv4(
                "10.0.0.99".parse().expect("a"),
                "10.0.0.4".parse().expect("a"),
            )
            .icmpv4_error(3, 3, &forwarded[..28])
            .build();
        let outer = Layout {
            l3: 14,
            l4: 34,
            v6: false,
            proto: 1,
        };
        let inner = icmp::quoted_layout(&f, &outer).expect("quoted packet");
        icmp_to_server(&mut f, &outer, &inner, &c);
        icmp::fill_icmp_checksum(&mut f, &outer);
        let q = icmp::quoted_tuple(&f, &outer).expect("quoted tuple");
        assert_eq!((q.src, q.sport), (c.rip(), 8080), "as the server sent it");
        assert_eq!((q.dst, q.dport), (c.lip(), 5000));
        assert_eq!(
            ip_addrs(&f, &outer),
            Some((ip("192.168.10.100"), ip("192.168.10.2"))),
            "from the LIP to the real server"
        );
        assert_eq!(checksum::checksum(&f[14..34]), 0, "IP header checksum");
        let end = ip_end(&f, &outer);
        assert_eq!(checksum::checksum(&f[34..end]), 0, "ICMP checksum");
    }
}
