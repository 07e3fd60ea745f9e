//! NAT (`-m`, masquerading): client → VIP packets get their destination
//! rewritten to the real server (port mapping allowed); the real server's
//! replies, routed back through the director, get their source rewritten
//! back to VIP:vport.

use super::{rewrite, Layout, Side};
use crate::conntrack::Conn;

/// Client → real server: dst VIP:vport → RIP:rport.
#[inline]
pub fn to_server(frame: &mut [u8], lay: &Layout, c: &Conn) {
    rewrite(frame, lay, Side::Dst, &c.rip(), c.rport());
}

/// Real server → client: src RIP:rport → VIP:vport.
#[inline]
pub fn to_client(frame: &mut [u8], lay: &Layout, c: &Conn) {
    rewrite(frame, lay, Side::Src, &c.vip(), c.vport());
}
