//! What relaying an ICMP error about a tracked connection shares across the
//! modes (IPVS `ip_vs_in_icmp` / `ip_vs_out_icmp`): finding the packet the
//! error quotes (its tuple names the connection, its headers are rewritten
//! like the connection's packets), and the ICMP checksum after the rewrite.
//! What each mode changes lives in the mode's file (`nat::icmp_to_*`,
//! `fullnat::icmp_to_*`; DR and TUN relay errors unchanged).
//!
//! Rules: offsets are in the same frame as the outer packet; anything that
//! does not parse is `None`, never a panic.

use std::net::IpAddr;

use super::{ip_addrs, ip_end, Layout};
use crate::conntrack::{addr_from_ip, Tuple};
use crate::wire::{icmp_quoted, Icmpv4Packet, Icmpv6Packet, IpFamily};

/// The tuple of the packet quoted in the ICMP error at `lay` (as the packet
/// was sent: reverse it to look up the flow the error is about).
pub fn quoted_tuple(frame: &[u8], lay: &Layout) -> Option<Tuple> {
    let data = frame.get(lay.l4 as usize + 8..)?;
    let fam = if lay.v6 { IpFamily::V6 } else { IpFamily::V4 };
    let q = icmp_quoted(fam, data).ok()?;
    Some(Tuple::new(
        q.proto,
        lay.v6,
        addr_from_ip(&q.src),
        q.src_port,
        addr_from_ip(&q.dst),
        q.dst_port,
    ))
}

/// Where the packet quoted in the ICMP error at `lay` has its headers,
/// as offsets in the same frame.
pub fn quoted_layout(frame: &[u8], lay: &Layout) -> Option<Layout> {
    let start = lay.l4 as usize + 8;
    let data = frame.get(start..ip_end(frame, lay))?;
    let fam = if lay.v6 { IpFamily::V6 } else { IpFamily::V4 };
    let q = icmp_quoted(fam, data).ok()?;
    Some(Layout {
        l3: (start + q.l3_offset) as u16,
        l4: (start + q.l4_offset) as u16,
        v6: lay.v6,
        proto: q.proto,
    })
}

/// Recompute the whole ICMP/ICMPv6 checksum of the packet at `lay` (after
/// the quoted packet was rewritten).
pub fn fill_icmp_checksum(frame: &mut [u8], lay: &Layout) {
    let end = ip_end(frame, lay);
    let l4 = lay.l4 as usize;
    match ip_addrs(frame, lay) {
        Some((IpAddr::V6(s), IpAddr::V6(d))) => {
            Icmpv6Packet::new_unchecked(&mut frame[l4..end]).fill_checksum(&s, &d)
        }
        Some(_) => Icmpv4Packet::new_unchecked(&mut frame[l4..end]).fill_checksum(),
        None => {}
    }
}
