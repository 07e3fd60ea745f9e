//! IPv6 (RFC 8200) header view, representation, and the extension-header walk
//! that finds the upper-layer protocol.
//!
//! Rules: [`Ipv6Packet::new_checked`] checks version 6 and that `40 +
//! payload_len` fits in the buffer (jumbograms are not supported: a zero
//! payload length means an empty payload). [`ipv6_upper_layer`] walks at most
//! [`MAX_EXT_HEADERS`] extension headers, checks every length against the
//! payload, accepts hop-by-hop only first, stops at ESP / no-next-header and
//! at the fragment header of a non-first fragment (what follows is not a
//! header).

use std::net::Ipv6Addr;

use super::{ip_proto, read_u16, read_u32, write_u16, Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// The most extension headers [`ipv6_upper_layer`] walks before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// A view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn ipv6_at(data: &[u8], range: core::ops::Range<usize>) -> Ipv6Addr {
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&data[range]);
    Ipv6Addr::from(addr)
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

impl Ipv6Packet<&'static [u8]> {
    /// Length of the fixed header. Also `HEADER_LEN` in this module; written as
    /// `Ipv6Packet::HEADER_LEN` it needs no type annotation.
    pub const HEADER_LEN: usize = HEADER_LEN;
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version and that header + payload fit in the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed("IPv6 version is not 6"));
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }

    /// The version nibble.
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Traffic class (DSCP/ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Next header (first extension header or upper-layer protocol).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        ipv6_at(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        ipv6_at(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The payload: `40..40 + payload_len` (excludes Ethernet padding).
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_ver_tc_flow(&mut self, value: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let v = (self.ver_tc_flow() & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28);
        self.set_ver_tc_flow(v);
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, value: u8) {
        let v = (self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(value) << 20);
        self.set_ver_tc_flow(v);
    }

    /// Sets the flow label (low 20 bits of `value`).
    pub fn set_flow_label(&mut self, value: u32) {
        let v = (self.ver_tc_flow() & 0xfff0_0000) | (value & 0x000f_ffff);
        self.set_ver_tc_flow(v);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fields of the fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Payload length in bytes (extension headers included).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Reads the fixed header of a packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Length of the emitted header (40).
    pub const fn buffer_len(&self) -> usize {
        field::DST_ADDR.end
    }

    /// Writes the 40-byte header (`payload_len` must fit in 16 bits). The
    /// payload is not touched.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_ver_tc_flow(
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff),
        );
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

/// The fragment header found by [`ipv6_upper_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Frag {
    /// Fragment offset in bytes.
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// Where the upper-layer header of an IPv6 packet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Upper {
    /// Upper-layer protocol (`ip_proto::*`; ESP or NONE if the walk stopped
    /// there).
    pub proto: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    /// For a non-first fragment this is where the fragment's data starts.
    pub offset: usize,
    /// The fragment header, if the packet had one.
    pub fragment: Option<Ipv6Frag>,
}

/// Walks the extension-header chain of the IPv6 packet at the start of `ip6`.
///
/// Errors: whatever [`Ipv6Packet::new_checked`] reports; [`Error::Truncated`]
/// if a header runs past `40 + payload_len`; [`Error::Malformed`] for a
/// hop-by-hop header that is not first, two fragment headers, or more than
/// [`MAX_EXT_HEADERS`] extension headers.
pub fn ipv6_upper_layer(ip6: &[u8]) -> Result<Ipv6Upper> {
    let packet = Ipv6Packet::new_checked(ip6)?;
    let end = HEADER_LEN + usize::from(packet.payload_len());
    walk_ext_headers(&ip6[..end], packet.next_header(), HEADER_LEN)
}

/// Walks extension headers in `data[start..]` beginning with `next_header`.
/// Every length is checked against `data.len()`.
pub(crate) fn walk_ext_headers(data: &[u8], next_header: u8, start: usize) -> Result<Ipv6Upper> {
    let mut proto = next_header;
    let mut offset = start;
    let mut fragment: Option<Ipv6Frag> = None;
    let mut count = 0;
    loop {
        let header_len = match proto {
            ip_proto::HOPOPT | ip_proto::ROUTING | ip_proto::DSTOPTS | ip_proto::AH => {
                if proto == ip_proto::HOPOPT && offset != start {
                    return Err(Error::Malformed("IPv6 hop-by-hop header not first"));
                }
                if offset + 2 > data.len() {
                    return Err(Error::Truncated);
                }
                let units = usize::from(data[offset + 1]);
                if proto == ip_proto::AH {
                    (units + 2) * 4
                } else {
                    (units + 1) * 8
                }
            }
            ip_proto::FRAGMENT => {
                if fragment.is_some() {
                    return Err(Error::Malformed("two IPv6 fragment headers"));
                }
                if offset + 8 > data.len() {
                    return Err(Error::Truncated);
                }
                let off_flags = read_u16(data, offset + 2);
                fragment = Some(Ipv6Frag {
                    offset: off_flags & 0xfff8,
                    more: off_flags & 1 != 0,
                    ident: read_u32(data, offset + 4),
                });
                8
            }
            // ESP, NONE and every upper-layer protocol end the walk.
            _ => {
                return Ok(Ipv6Upper {
                    proto,
                    offset,
                    fragment,
                })
            }
        };
        count += 1;
        if count > MAX_EXT_HEADERS {
            return Err(Error::Malformed("too many IPv6 extension headers"));
        }
        if offset + header_len > data.len() {
            return Err(Error::Truncated);
        }
        proto = data[offset];
        offset += header_len;
        if let Some(frag) = fragment {
            if frag.offset != 0 {
                // A non-first fragment: what follows is data, not a header.
                return Ok(Ipv6Upper {
                    proto,
                    offset,
                    fragment,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(next_header: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0x00, 0x00, 0x00];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.push(next_header);
        p.push(64);
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn fields_round_trip_on_a5_buffer() {
        let mut buf = [0xa5u8; 48];
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        p.set_version(6);
        p.set_traffic_class(0x2e);
        p.set_flow_label(0xabcde);
        p.set_payload_len(8);
        p.set_next_header(ip_proto::UDP);
        p.set_hop_limit(255);
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
        p.set_src_addr(src);
        p.set_dst_addr(dst);
        p.payload_mut()[0] = 1;
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x2e);
        assert_eq!(p.flow_label(), 0xabcde);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), ip_proto::UDP);
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(p.src_addr(), src);
        assert_eq!(p.dst_addr(), dst);
        assert_eq!(p.payload(), &[1, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5]);
        // Setting the flow label never disturbs version/traffic class.
        let mut buf2 = buf;
        let mut p2 = Ipv6Packet::new_unchecked(&mut buf2[..]);
        p2.set_flow_label(0xffff_ffff);
        assert_eq!(
            (p2.version(), p2.traffic_class(), p2.flow_label()),
            (6, 0x2e, 0xfffff)
        );
    }

    #[test]
    fn check_len_errors_are_precise() {
        let good = header(ip_proto::NONE, &[0; 8]);
        assert!(Ipv6Packet::new_checked(&good[..]).is_ok());
        assert_eq!(
            Ipv6Packet::new_checked(&good[..39]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv6Packet::new_checked(&good[..47]).unwrap_err(),
            Error::Truncated
        );
        let mut v4 = good.clone();
        v4[0] = 0x45;
        assert!(matches!(
            Ipv6Packet::new_checked(&v4[..]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn repr_round_trip() {
        let repr = Ipv6Repr {
            src_addr: "2001:db8::10".parse().unwrap(),
            dst_addr: "2001:db8::20".parse().unwrap(),
            next_header: ip_proto::TCP,
            payload_len: 20,
            hop_limit: 3,
            traffic_class: 0xff,
            flow_label: 0x12345,
        };
        let mut buf = [0xa5u8; 60];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        assert_eq!(
            Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()),
            Ok(repr)
        );
    }

    #[test]
    fn upper_layer_without_extensions() {
        let p = header(ip_proto::TCP, &[0; 20]);
        let up = ipv6_upper_layer(&p).unwrap();
        assert_eq!(
            up,
            Ipv6Upper {
                proto: ip_proto::TCP,
                offset: 40,
                fragment: None
            }
        );
    }

    #[test]
    fn upper_layer_through_hop_routing_dst_ah() {
        let mut payload = vec![ip_proto::ROUTING, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop, 8 bytes
        payload.extend_from_slice(&[ip_proto::DSTOPTS, 2, 0, 0]); // routing, 24 bytes
        payload.extend_from_slice(&[0; 20]);
        payload.extend_from_slice(&[ip_proto::AH, 0, 1, 4, 0, 0, 0, 0]); // dst opts, 8
        payload.extend_from_slice(&[ip_proto::UDP, 1, 0, 0]); // AH, (1+2)*4 = 12
        payload.extend_from_slice(&[0; 8]);
        payload.extend_from_slice(&[0; 8]); // UDP header
        let p = header(ip_proto::HOPOPT, &payload);
        let up = ipv6_upper_layer(&p).unwrap();
        assert_eq!(up.proto, ip_proto::UDP);
        assert_eq!(up.offset, 40 + 8 + 24 + 8 + 12);
        assert_eq!(up.fragment, None);
    }

    #[test]
    fn first_fragment_continues_and_later_fragment_stops() {
        let mut first = vec![ip_proto::TCP, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
        first.extend_from_slice(&[0; 20]);
        let up = ipv6_upper_layer(&header(ip_proto::FRAGMENT, &first)).unwrap();
        assert_eq!(up.proto, ip_proto::TCP);
        assert_eq!(up.offset, 48);
        assert_eq!(
            up.fragment,
            Some(Ipv6Frag {
                offset: 0,
                more: true,
                ident: 0xdeadbeef
            })
        );

        // Offset 1480 bytes (185 units), last fragment, next header DSTOPTS:
        // the walk must not read the data as a destination-options header.
        let mut later = vec![ip_proto::DSTOPTS, 0, 0x05, 0xc8, 0, 0, 0, 7];
        later.extend_from_slice(&[0xff; 16]);
        let up = ipv6_upper_layer(&header(ip_proto::FRAGMENT, &later)).unwrap();
        assert_eq!(up.proto, ip_proto::DSTOPTS);
        assert_eq!(up.offset, 48);
        assert_eq!(
            up.fragment,
            Some(Ipv6Frag {
                offset: 1480,
                more: false,
                ident: 7
            })
        );
    }

    #[test]
    fn esp_and_no_next_header_stop_the_walk() {
        let up = ipv6_upper_layer(&header(ip_proto::ESP, &[0xff; 16])).unwrap();
        assert_eq!((up.proto, up.offset), (ip_proto::ESP, 40));
        let payload = [ip_proto::NONE, 0, 0, 0, 0, 0, 0, 0];
        let up = ipv6_upper_layer(&header(ip_proto::DSTOPTS, &payload)).unwrap();
        assert_eq!((up.proto, up.offset), (ip_proto::NONE, 48));
    }

    #[test]
    fn chain_past_the_payload_is_truncated() {
        // Routing header claims 16 bytes, payload has 8.
        let p = header(ip_proto::ROUTING, &[ip_proto::TCP, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ipv6_upper_layer(&p).unwrap_err(), Error::Truncated);
        // Ext header whose length byte is beyond the payload.
        let p = header(ip_proto::DSTOPTS, &[ip_proto::TCP]);
        assert_eq!(ipv6_upper_layer(&p).unwrap_err(), Error::Truncated);
        // Fragment header cut short.
        let p = header(ip_proto::FRAGMENT, &[ip_proto::TCP, 0, 0, 0]);
        assert_eq!(ipv6_upper_layer(&p).unwrap_err(), Error::Truncated);
        // Bytes beyond payload_len (padding) do not count as payload.
        let mut p = header(ip_proto::DSTOPTS, &[]);
        p.extend_from_slice(&[ip_proto::TCP, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ipv6_upper_layer(&p).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn bad_chains_are_malformed() {
        // Hop-by-hop after a destination-options header.
        let payload = [
            ip_proto::HOPOPT,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            ip_proto::TCP,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let p = header(ip_proto::DSTOPTS, &payload);
        assert!(matches!(ipv6_upper_layer(&p), Err(Error::Malformed(_))));
        // Two fragment headers.
        let payload = [
            ip_proto::FRAGMENT,
            0,
            0,
            1,
            0,
            0,
            0,
            1,
            ip_proto::TCP,
            0,
            0,
            1,
            0,
            0,
            0,
            1,
        ];
        let p = header(ip_proto::FRAGMENT, &payload);
        assert!(matches!(ipv6_upper_layer(&p), Err(Error::Malformed(_))));
        // Nine destination-options headers.
        let mut payload = Vec::new();
        for i in 0..9 {
            let next = if i == 8 {
                ip_proto::TCP
            } else {
                ip_proto::DSTOPTS
            };
            payload.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
        }
        payload.extend_from_slice(&[0; 20]);
        let p = header(ip_proto::DSTOPTS, &payload);
        assert!(matches!(ipv6_upper_layer(&p), Err(Error::Malformed(_))));
        // Eight are fine.
        let p = header(ip_proto::DSTOPTS, &payload[8..]);
        assert_eq!(ipv6_upper_layer(&p).unwrap().offset, 40 + 64);
    }
}
