//! NAT (`-m`, masquerading): client → VIP packets get their destination
//! rewritten to the real server (port mapping allowed); the real server's
//! replies, routed back through the director, get their source rewritten
//! back to VIP:vport.

//!
//! Both directions also decrement the TTL / hop limit (the caller checked
//! it does not expire).

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
