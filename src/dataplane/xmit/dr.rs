//! DR (`-g`, direct routing, the ipvsadm default): the IP packet is not
//! touched at all — not even the TTL, as IPVS's `ip_vs_dr_xmit` leaves it;
//! only the destination MAC becomes the real server's (same L2 segment).
//! The real server holds the VIP on its loopback and answers the client
//! directly, so the director sees only the client's direction.
//!
//! ICMP errors about a DR connection (from the client's side) are relayed
//! to the real server with the IP packet unchanged too, only the TTL
//! decremented as for any relayed error.

use super::Layout;

/// DR needs no IP rewrite; the caller writes the L2 header. Present so each
/// mode has one place that says what it changes.
#[inline]
pub fn to_server(_frame: &mut [u8], _lay: &Layout) {}
