//! IPv4 (RFC 791) header view and representation.
//!
//! Rules: [`Ipv4Packet::new_checked`] checks version 4, IHL >= 5, the header
//! fits in the buffer, and `header_len <= total_len <= buffer length` (a buffer
//! longer than `total_len` is normal: Ethernet padding). After it, `payload()`
//! is exactly `header_len..total_len` and nothing panics. Fragment offsets are
//! in **bytes** in this API (the field holds 8-byte units).

use std::net::Ipv4Addr;

use super::checksum;
use super::{read_u16, write_u16, Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn ipv4_at(data: &[u8], range: core::ops::Range<usize>) -> Ipv4Addr {
    let mut addr = [0u8; 4];
    addr.copy_from_slice(&data[range]);
    Ipv4Addr::from(addr)
}

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::DST_ADDR.end;

impl Ipv4Packet<&'static [u8]> {
    /// Length of a header without options. Also `MIN_HEADER_LEN` in this module; written as
    /// `Ipv4Packet::MIN_HEADER_LEN` it needs no type annotation.
    pub const MIN_HEADER_LEN: usize = MIN_HEADER_LEN;
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks version, IHL, header length and total length against the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed("IPv4 version is not 4"));
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(Error::Malformed("IPv4 IHL below 5"));
        }
        if header_len > len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::Malformed("IPv4 total length below header length"));
        }
        if total_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version nibble.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN byte (formerly TOS).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length (header + payload) in bytes.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT.start)
    }

    fn flags_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLG_OFF.start)
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// True for any fragment: MF set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol of the payload (`ip_proto::*`).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Options bytes (20..header_len).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The header bytes (0..header_len).
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload: `header_len..total_len` (excludes Ethernet padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// True if the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.header())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (stored as `len / 4`, keeps version).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT.start, value);
    }

    fn set_flags_offset(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::FLG_OFF.start, value);
    }

    /// Sets or clears DF.
    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_DF;
        self.set_flags_offset(v | if value { FLAG_DF } else { 0 });
    }

    /// Sets or clears MF.
    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.flags_offset() & !FLAG_MF;
        self.set_flags_offset(v | if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset in bytes (stored as `offset / 8`).
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = self.flags_offset() & !OFFSET_MASK;
        self.set_flags_offset(v | (offset >> 3));
    }

    /// Clears the reserved bit, DF, MF and the offset.
    pub fn clear_flags(&mut self) {
        self.set_flags_offset(0);
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the payload protocol.
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    /// Sets the header checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Options bytes, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..end]
    }

    /// The payload (`header_len..total_len`), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }

    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::checksum(self.header());
        self.set_checksum(csum);
    }

    /// Decrements the TTL and updates the checksum incrementally (RFC 1624).
    /// The caller checks `ttl() > 1` first.
    pub fn decrement_ttl(&mut self) {
        let old = read_u16(self.buffer.as_ref(), field::TTL);
        self.set_ttl(self.ttl().wrapping_sub(1));
        let new = read_u16(self.buffer.as_ref(), field::TTL);
        let csum = checksum::update16(self.checksum(), old, new);
        self.set_checksum(csum);
    }
}

/// The fields of an option-less IPv4 header that a sender chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol (`ip_proto::*`).
    pub next_header: u8,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN byte.
    pub dscp_ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Reads a packet's header. Verifies the header checksum
    /// ([`Error::Checksum`]); options are skipped and fragment fields ignored.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Length of the emitted header (20: no options).
    pub const fn buffer_len(&self) -> usize {
        field::DST_ADDR.end
    }

    /// Writes a 20-byte header (total length = 20 + `payload_len`, which must
    /// fit in 16 bits) with its checksum. The payload is not touched.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.buffer.as_mut()[field::VER_IHL] = 0x45;
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len((self.buffer_len() + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.clear_flags();
        packet.set_dont_frag(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;

    // A real IPv4/UDP DNS query header (checksum 0xb861 per Wikipedia's
    // example), followed by 95 payload bytes to match total length 0x73.
    fn real_packet() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        p.resize(0x73, 0x11);
        p
    }

    #[test]
    fn parses_real_bytes() {
        let buf = real_packet();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.next_header(), ip_proto::UDP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x73 - 20);
        let repr = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, 0x73 - 20);
        assert!(repr.dont_frag);
    }

    #[test]
    fn ethernet_padding_beyond_total_len_is_not_payload() {
        let mut buf = real_packet();
        buf.extend_from_slice(&[0; 10]);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn fields_round_trip_on_a5_buffer() {
        let mut buf = [0xa5u8; 60];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_dscp_ecn(0xb8);
        p.set_total_len(60);
        p.set_ident(0x1234);
        p.clear_flags();
        p.set_dont_frag(true);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        p.set_ttl(17);
        p.set_next_header(ip_proto::TCP);
        p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dscp_ecn(), 0xb8);
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag() && p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(p.ttl(), 17);
        assert_eq!(p.next_header(), ip_proto::TCP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(5, 6, 7, 8));
        assert_eq!(p.options(), &[0xa5; 4]);
        assert_eq!(p.payload().len(), 36);
        assert!(p.verify_checksum());
    }

    #[test]
    fn flag_setters_are_independent() {
        let mut buf = [0u8; 20];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_frag_offset(8 * 0x1fff);
        p.set_dont_frag(true);
        p.set_more_frags(false);
        assert_eq!(p.frag_offset(), 8 * 0x1fff);
        assert!(p.dont_frag());
        p.set_dont_frag(false);
        assert_eq!(p.frag_offset(), 8 * 0x1fff);
        assert!(p.is_fragment(), "non-zero offset alone is a fragment");
        p.set_frag_offset(0);
        p.set_more_frags(true);
        assert!(p.is_fragment(), "MF alone is a fragment");
    }

    #[test]
    fn check_len_errors_are_precise() {
        let good = real_packet();
        assert_eq!(
            Ipv4Packet::new_checked(&good[..19]).unwrap_err(),
            Error::Truncated
        );
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert!(matches!(
            Ipv4Packet::new_checked(&v6[..]),
            Err(Error::Malformed(_))
        ));
        let mut ihl4 = good.clone();
        ihl4[0] = 0x44;
        assert!(matches!(
            Ipv4Packet::new_checked(&ihl4[..]),
            Err(Error::Malformed(_))
        ));
        let mut ihl15 = good.clone();
        ihl15[0] = 0x4f;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl15[..40]).unwrap_err(),
            Error::Truncated
        );
        let mut short_total = good.clone();
        short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert!(matches!(
            Ipv4Packet::new_checked(&short_total[..]),
            Err(Error::Malformed(_))
        ));
        assert_eq!(
            Ipv4Packet::new_checked(&good[..0x72]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn repr_emit_parse_round_trip() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            next_header: ip_proto::TCP,
            payload_len: 12,
            ttl: 63,
            dscp_ecn: 0x02,
            ident: 777,
            dont_frag: true,
        };
        let mut buf = vec![0xa5u8; repr.buffer_len() + 12];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(!packet.more_frags() && packet.frag_offset() == 0);
        assert_eq!(Ipv4Repr::parse(&packet), Ok(repr));
        buf[8] ^= 1;
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&buf[..]).unwrap()),
            Err(Error::Checksum)
        );
    }

    #[test]
    fn decrement_ttl_keeps_checksum_valid() {
        let mut buf = real_packet();
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        let incremental = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), incremental);
    }
}
