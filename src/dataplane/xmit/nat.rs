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

/// An ICMP error from the real server's side about a packet it sent toward
/// the client, relayed to the client: outer src → VIP; quoted dst RIP:rport
/// → VIP:vport. `outer` and `inner` are the error's and the quoted packet's
/// layouts.
#[inline]
pub fn icmp_to_client(frame: &mut [u8], outer: &Layout, inner: &Layout, c: &Conn) {
    rewrite(frame, outer, Side::Src, &c.vip(), 0);
    rewrite(frame, inner, Side::Dst, &c.vip(), c.vport());
}

/// An ICMP error from the client's side about a packet sent to the client,
/// relayed to the real server: outer dst → RIP; quoted src VIP:vport →
/// RIP:rport.
#[inline]
pub fn icmp_to_server(frame: &mut [u8], outer: &Layout, inner: &Layout, c: &Conn) {
    rewrite(frame, outer, Side::Dst, &c.rip(), 0);
    rewrite(frame, inner, Side::Src, &c.rip(), c.rport());
}
