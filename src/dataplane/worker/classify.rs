//! Stage 1 of DESIGN §1: parse and classify a received frame — a TCP/UDP
//! packet with its tuple, hash and flags; ICMP (echo, ND, errors); ARP; or
//! a drop with its precise reason. The common case (untagged IPv4 for our
//! MAC, 20-byte header, TCP/UDP) takes one straight pass; everything else
//! the general parser.
//!
//! IP fragments of TCP/UDP become [`Class::Frag`] with their datagram's
//! key; the first also carries its tuple (`worker::frag` forwards them).
//!
//! Rules: reads only; never panics on any input; every verdict the general
//! parser would give for a frame the fast path accepts is the same.

use crate::conntrack::Tuple;
use crate::dataplane::counters::DropReason;
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::xmit::{ip_end, Layout, NO_L4};

use super::frag::{FirstFrag, FragKey};
use crate::wire::{self, ethertype, ip_proto, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet};

/// A parsed packet: what the burst stages carry between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Arp,
    L4 {
        lay: Layout,
        tuple: Tuple,
        hash: u32,
        flags: u8,
    },
    Icmp {
        lay: Layout,
    },
    /// A TCP/UDP fragment: `first` for the one at offset 0 (its `lay` has
    /// the L4 protocol); later ones have `lay.proto == NO_L4`.
    Frag {
        lay: Layout,
        key: FragKey,
        first: Option<FirstFrag>,
    },
    Drop(DropReason),
}

/// Parse and classify a frame (stage 1).
pub(super) fn classify(frame: &[u8], snap: &Snapshot, port: u16) -> Class {
    if let Some(c) = classify_fast4(frame, snap, port) {
        return c;
    }
    classify_full(frame, snap, port)
}

/// The common case in one pass: an untagged IPv4 frame for our MAC with a
/// 20-byte header, not a fragment, a valid header checksum, carrying a
/// complete TCP or UDP header. Anything else (or anything odd) returns
/// `None` and takes the general parser, which gives the precise verdict.
#[inline]
fn classify_fast4(frame: &[u8], snap: &Snapshot, port: u16) -> Option<Class> {
    let eth: &[u8; 34] = frame.get(..34)?.try_into().ok()?;
    if eth[12] != 0x08 || eth[13] != 0x00 || eth[14] != 0x45 {
        return None;
    }
    let mac = snap.port(port)?.mac.0;
    if eth[..6] != mac {
        return None;
    }
    let ip = &eth[14..34];
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 || total < 20 || 14 + total > frame.len() {
        return None;
    }
    // Header checksum over ten 16-bit words.
    let mut sum = 0u32;
    for w in ip.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    if sum != 0xffff {
        return None;
    }
    let proto = ip[9];
    let l4 = &frame[34..14 + total];
    let flags = match proto {
        ip_proto::TCP => {
            let doff = (*l4.get(12)? >> 4) as usize * 4;
            if doff < 20 || doff > l4.len() {
                return None;
            }
            l4[13]
        }
        ip_proto::UDP => {
            let ulen = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]) as usize;
            if ulen < 8 || ulen > l4.len() {
                return None;
            }
            0
        }
        _ => return None,
    };
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&ip[12..16]);
    dst[..4].copy_from_slice(&ip[16..20]);
    let tuple = Tuple::new(
        proto,
        false,
        src,
        u16::from_be_bytes([l4[0], l4[1]]),
        dst,
        u16::from_be_bytes([l4[2], l4[3]]),
    );
    Some(Class::L4 {
        lay: Layout {
            l3: 14,
            l4: 34,
            v6: false,
            proto,
        },
        hash: tuple.hash(),
        tuple,
        flags,
    })
}

/// The general parser: VLAN tags, IPv4 options, IPv6 extension headers,
/// ARP, ICMP, and every malformed case with its drop reason.
fn classify_full(frame: &[u8], snap: &Snapshot, port: u16) -> Class {
    let l2 = match wire::parse_l2(frame) {
        Ok(l2) => l2,
        Err(wire::Error::UnsupportedVlanStack) => return Class::Drop(DropReason::VlanStack),
        Err(_) => return Class::Drop(DropReason::Malformed),
    };
    if let Some(p) = snap.port(port) {
        if l2.dst.is_unicast() && l2.dst != p.mac {
            return Class::Drop(DropReason::NotForUs);
        }
    }
    let l3 = l2.l3_offset;
    let ip = &frame[l3..];
    let (lay, src, dst) = match l2.ethertype {
        ethertype::ARP => return Class::Arp,
        ethertype::IPV4 => {
            let Ok(p) = Ipv4Packet::new_checked(ip) else {
                return Class::Drop(DropReason::Malformed);
            };
            if !p.verify_checksum() {
                return Class::Drop(DropReason::BadChecksum);
            }
            let l4 = l3 + p.header_len();
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s[..4].copy_from_slice(&p.src_addr().octets());
            d[..4].copy_from_slice(&p.dst_addr().octets());
            if p.is_fragment() {
                let lay = Layout {
                    l3: l3 as u16,
                    l4: l4 as u16,
                    v6: false,
                    proto: p.next_header(),
                };
                let key = FragKey::new(p.next_header(), false, s, d, u32::from(p.ident()));
                return classify_frag(frame, lay, key, p.frag_offset());
            }
            (
                Layout {
                    l3: l3 as u16,
                    l4: l4 as u16,
                    v6: false,
                    proto: p.next_header(),
                },
                s,
                d,
            )
        }
        ethertype::IPV6 => {
            let Ok(p) = Ipv6Packet::new_checked(ip) else {
                return Class::Drop(DropReason::Malformed);
            };
            let up = match wire::ipv6_upper_layer(&ip[..40 + p.payload_len() as usize]) {
                Ok(u) => u,
                Err(_) => return Class::Drop(DropReason::Malformed),
            };
            let lay = Layout {
                l3: l3 as u16,
                l4: (l3 + up.offset) as u16,
                v6: true,
                proto: up.proto,
            };
            let (s, d) = (p.src_addr().octets(), p.dst_addr().octets());
            match up.fragment {
                // An atomic fragment (offset 0, no more): a whole packet.
                Some(f) if f.offset == 0 && !f.more => {}
                Some(f) => {
                    let key = FragKey::new(up.proto, true, s, d, f.ident);
                    return classify_frag(frame, lay, key, f.offset);
                }
                None => {}
            }
            (lay, s, d)
        }
        _ => return Class::Drop(DropReason::UnsupportedProto),
    };
    let ip_end = ip_end(frame, &lay);
    let l4 = &frame[lay.l4 as usize..ip_end];
    match lay.proto {
        ip_proto::TCP => {
            let Ok(t) = wire::TcpPacket::new_checked(l4) else {
                return Class::Drop(DropReason::Malformed);
            };
            let tuple = Tuple::new(lay.proto, lay.v6, src, t.src_port(), dst, t.dst_port());
            Class::L4 {
                lay,
                hash: tuple.hash(),
                tuple,
                flags: t.flags().0,
            }
        }
        ip_proto::UDP => {
            let Ok(u) = wire::UdpPacket::new_checked(l4) else {
                return Class::Drop(DropReason::Malformed);
            };
            let tuple = Tuple::new(lay.proto, lay.v6, src, u.src_port(), dst, u.dst_port());
            Class::L4 {
                lay,
                hash: tuple.hash(),
                tuple,
                flags: 0,
            }
        }
        ip_proto::ICMP if !lay.v6 => {
            if Icmpv4Packet::new_checked(l4).is_err() {
                return Class::Drop(DropReason::Malformed);
            }
            Class::Icmp { lay }
        }
        ip_proto::ICMPV6 if lay.v6 => {
            if Icmpv6Packet::new_checked(l4).is_err() {
                return Class::Drop(DropReason::Malformed);
            }
            Class::Icmp { lay }
        }
        _ => Class::Drop(DropReason::UnsupportedProto),
    }
}

/// A fragment of the datagram `key` at byte `offset`; `lay` is the
/// fragment's layout with the datagram's L4 protocol.
fn classify_frag(frame: &[u8], mut lay: Layout, key: FragKey, offset: u16) -> Class {
    if lay.proto != ip_proto::TCP && lay.proto != ip_proto::UDP {
        return Class::Drop(DropReason::Fragment);
    }
    let end = ip_end(frame, &lay);
    let Some(l4) = frame.get(lay.l4 as usize..end) else {
        return Class::Drop(DropReason::Malformed);
    };
    if offset != 0 {
        // RFC 1858: a TCP fragment at offset 8 could overwrite the flags.
        if lay.proto == ip_proto::TCP && offset == 8 {
            return Class::Drop(DropReason::Fragment);
        }
        lay.proto = NO_L4;
        return Class::Frag {
            lay,
            key,
            first: None,
        };
    }
    // The first fragment must hold the whole L4 header (RFC 1858: no tiny
    // fragments), so ports, flags and the checksum field are all here.
    let flags = match lay.proto {
        ip_proto::TCP => {
            let doff = l4.get(12).map_or(0, |b| (b >> 4) as usize * 4);
            if doff < 20 || doff > l4.len() {
                return Class::Drop(DropReason::Fragment);
            }
            l4[13]
        }
        _ => {
            if l4.len() < 8 {
                return Class::Drop(DropReason::Fragment);
            }
            0
        }
    };
    let tuple = Tuple::new(
        lay.proto,
        lay.v6,
        key.src,
        u16::from_be_bytes([l4[0], l4[1]]),
        key.dst,
        u16::from_be_bytes([l4[2], l4[3]]),
    );
    Class::Frag {
        lay,
        key,
        first: Some(FirstFrag { tuple, flags }),
    }
}
