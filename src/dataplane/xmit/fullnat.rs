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
