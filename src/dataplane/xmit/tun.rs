//! TUN (`-i`, IP tunnelling): the client's packet is sent unchanged inside
//! an outer header DIP → RIP: IP-in-IP (protocol 4) for IPv4, ip6ip6 (next
//! header 41) for IPv6. The outer header is prepended in the buffer's
//! headroom; the L2 header moves in front of it.
//!
//! When the encapsulated packet would exceed the egress MTU, IPv4 with DF
//! set and every IPv6 packet get `TooBig` (the caller answers the client with
//! fragmentation-needed / packet-too-big carrying `mtu - overhead`, as IPVS's
//! `ip_vs_tunnel_xmit` does). IPv4 without DF is also refused as `TooBig`
//! with no ICMP: rvs does not fragment (documented limitation).
//!
//! ICMP errors about a TUN connection (from the client's side) are relayed
//! to the real server encapsulated like its packets, inner error unchanged.

use std::net::IpAddr;

use super::Layout;
use crate::dataplane::driver::PacketBuf;
use crate::wire::{ipip, Ipv4Packet, Ipv6Packet};

/// Why a packet could not be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunError {
    /// Encapsulated it would exceed the MTU; `icmp_mtu` is the MTU to report
    /// to the sender (`None`: send no ICMP).
    TooBig {
        /// Path MTU to report.
        icmp_mtu: Option<u16>,
    },
    /// No headroom to prepend the outer header.
    NoHeadroom,
    /// Families of the inner packet and the tunnel end points differ.
    Family,
}

/// Bytes the outer header adds.
pub fn overhead(v6: bool) -> usize {
    if v6 {
        ipip::ENCAP_IPV6_LEN
    } else {
        ipip::ENCAP_IPV4_LEN
    }
}

/// Encapsulate the IP packet in `buf` (at `lay.l3`) in an outer header from
/// `src` to `dst`; `mtu` is the egress IP MTU.
pub fn encapsulate<B: PacketBuf>(
    buf: &mut B,
    lay: &Layout,
    src: &IpAddr,
    dst: &IpAddr,
    mtu: u16,
) -> Result<(), TunError> {
    if src.is_ipv6() != lay.v6 || dst.is_ipv6() != lay.v6 {
        return Err(TunError::Family);
    }
    let l3 = lay.l3 as usize;
    let inner_len = buf.len() - l3;
    let over = overhead(lay.v6);
    let (dont_frag, dscp_ecn, flow) = {
        let d = buf.data();
        if lay.v6 {
            let p = Ipv6Packet::new_unchecked(&d[l3..]);
            (true, p.traffic_class(), p.flow_label())
        } else {
            let p = Ipv4Packet::new_unchecked(&d[l3..]);
            (p.dont_frag(), p.dscp_ecn(), 0)
        }
    };
    // Ethernet padding of short frames is not part of the IP packet.
    let ip_len = {
        let d = buf.data();
        if lay.v6 {
            Ipv6Packet::new_unchecked(&d[l3..]).payload_len() as usize + 40
        } else {
            Ipv4Packet::new_unchecked(&d[l3..]).total_len() as usize
        }
    };
    if ip_len < inner_len {
        let _ = buf.trim(inner_len - ip_len);
    }
    if ip_len + over > mtu as usize {
        let icmp_mtu = (mtu as usize).saturating_sub(over) as u16;
        return Err(TunError::TooBig {
            icmp_mtu: if lay.v6 || dont_frag {
                Some(icmp_mtu)
            } else {
                None
            },
        });
    }
    if buf.headroom() < over {
        return Err(TunError::NoHeadroom);
    }
    buf.prepend(over).ok_or(TunError::NoHeadroom)?;
    let d = buf.data_mut();
    d.copy_within(over..over + l3, 0);
    let outer = &mut d[l3..l3 + over];
    let written = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            ipip::emit_ipip4(outer, *s, *t, ip_len, 64, dont_frag, dscp_ecn)
        }
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            ipip::emit_ip6ip6(outer, *s, *t, ip_len, 64, dscp_ecn, flow)
        }
        _ => return Err(TunError::Family),
    };
    written.map_err(|_| TunError::NoHeadroom)
}
