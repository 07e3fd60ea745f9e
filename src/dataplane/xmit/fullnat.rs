//! FULLNAT (`--fullnat`): both addresses are rewritten, so the real server
//! needs no route back through the director — it answers the local address.
//! Client → VIP: src CIP:cport → LIP:lport, dst VIP:vport → RIP:rport.
//! Reply to LIP:lport: src RIP:rport → VIP:vport, dst LIP:lport → CIP:cport.
//! The local port comes from the worker's partition of the service's
//! local-address pool (`conntrack::LaddrPool`).

//! Both directions also decrement the TTL / hop limit (the caller checked
//! it does not expire).

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
