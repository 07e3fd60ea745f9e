//! UDP (RFC 768) datagram view and representation.
//!
//! Rules: [`UdpPacket::new_checked`] checks `8 <= length field <= buffer`;
//! the datagram is `0..len()` (bytes beyond are ignored). A computed checksum
//! of 0 is sent as 0xffff; a zero checksum field means "none" on IPv4 and is
//! invalid on IPv6 (RFC 8200 §8.1).

use std::net::IpAddr;

use super::checksum;
use super::tcp::pseudo_header;
use super::{ip_proto, read_u16, write_u16, Error, Result};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of the header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

impl UdpPacket<&'static [u8]> {
    /// Length of the header. Also `HEADER_LEN` in this module; written as
    /// `UdpPacket::HEADER_LEN` it needs no type annotation.
    pub const HEADER_LEN: usize = HEADER_LEN;
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the header fits and `8 <= length <= buffer`.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let declared = usize::from(self.len());
        if declared < HEADER_LEN {
            return Err(Error::Malformed("UDP length below 8"));
        }
        if declared > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Length field (header + payload).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The payload: `8..len()`.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// True if the checksum verifies for `src` → `dst`. A zero checksum field
    /// ("none") is accepted on IPv4 and rejected on IPv6.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return matches!((src, dst), (IpAddr::V4(_), IpAddr::V4(_)));
        }
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let pseudo = pseudo_header(src, dst, ip_proto::UDP, u32::from(len));
        checksum::fold(checksum::combine(pseudo, checksum::sum(data))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT.start, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT.start, value);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the checksum over `0..len()` with the pseudo-header of `src` →
    /// `dst` and writes it (0 is written as 0xffff).
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let pseudo = pseudo_header(src, dst, ip_proto::UDP, u32::from(len));
        let csum = !checksum::fold(checksum::combine(pseudo, checksum::sum(data)));
        self.set_checksum(checksum::udp_final(csum));
    }
}

/// A UDP datagram's ports and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Data.
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// Reads a checked datagram. The checksum is **not** verified (it needs the
    /// IP addresses: use [`UdpPacket::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &UdpPacket<&'a T>) -> Result<UdpRepr<'a>> {
        packet.check_len()?;
        let data: &'a [u8] = packet.buffer.as_ref();
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: &data[field::CHECKSUM.end..usize::from(packet.len())],
        })
    }

    /// Header plus payload (must fit in 16 bits).
    pub fn buffer_len(&self) -> usize {
        field::CHECKSUM.end + self.payload.len()
    }

    /// Writes header, payload and checksum into the first `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        let total = self.buffer_len();
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(total as u16);
        packet.buffer.as_mut()[field::CHECKSUM.end..total].copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    // A real DNS query 10.0.2.15:54321 -> 8.8.8.8:53 ("example.com A").
    fn dns_query() -> Vec<u8> {
        let mut p = vec![0xd4, 0x31, 0x00, 0x35, 0x00, 0x25, 0x00, 0x00];
        p.extend_from_slice(&[0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        p
    }

    #[test]
    fn parses_real_bytes_and_fills_checksum() {
        let mut buf = dns_query();
        let src = v4([10, 0, 2, 15]);
        let dst = v4([8, 8, 8, 8]);
        UdpPacket::new_checked(&mut buf[..])
            .unwrap()
            .fill_checksum(&src, &dst);
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.src_port(), 54321);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 37);
        assert_eq!(p.payload().len(), 29);
        assert_ne!(p.checksum(), 0);
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&src, &v4([8, 8, 4, 4])));
    }

    #[test]
    fn fields_round_trip_on_a5_buffer() {
        let mut buf = [0xa5u8; 16];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(5353);
        p.set_dst_port(5354);
        p.set_len(12);
        p.set_checksum(0xbeef);
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (5353, 5354, 12, 0xbeef)
        );
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn check_len_errors_are_precise() {
        let buf = dns_query();
        assert_eq!(
            UdpPacket::new_checked(&buf[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            UdpPacket::new_checked(&buf[..36]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = buf.clone();
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert!(matches!(
            UdpPacket::new_checked(&bad[..]),
            Err(Error::Malformed(_))
        ));
        let mut padded = buf.clone();
        padded.extend_from_slice(&[0; 9]);
        assert_eq!(
            UdpPacket::new_checked(&padded[..]).unwrap().payload().len(),
            29
        );
    }

    #[test]
    fn zero_checksum_means_none_on_v4_only() {
        let buf = dns_query();
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.checksum(), 0);
        assert!(p.verify_checksum(&v4([1, 1, 1, 1]), &v4([2, 2, 2, 2])));
        let s6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(!p.verify_checksum(&s6, &s6));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the payload word so that the checksum computes to 0x0000.
        let src = v4([10, 0, 0, 1]);
        let dst = v4([10, 0, 0, 2]);
        let mut buf = [0u8; 10];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(1000);
        p.set_dst_port(2000);
        p.set_len(10);
        p.fill_checksum(&src, &dst);
        let c = p.checksum();
        // Putting the checksum value into the payload word makes the sum 0xffff.
        p.payload_mut().copy_from_slice(&c.to_be_bytes());
        p.fill_checksum(&src, &dst);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&src, &dst));
    }

    #[test]
    fn repr_round_trip() {
        let repr = UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload: b"abc",
        };
        let src: IpAddr = "2001:db8::1".parse().unwrap();
        let dst: IpAddr = "2001:db8::2".parse().unwrap();
        let mut buf = vec![0xa5u8; repr.buffer_len() + 3];
        repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), &src, &dst);
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(&src, &dst));
        assert_eq!(UdpRepr::parse(&p), Ok(repr));
    }
}
