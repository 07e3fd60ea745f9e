//! ICMP for IPv4 (RFC 792, RFC 1191): message view, a generic representation,
//! and the message type and code constants (`wire::icmpv4::ECHO_REQUEST`, ...).
//!
//! Rules: [`Icmpv4Packet::new_checked`] checks the 8-byte header fits. The
//! message is the whole buffer (the IP payload): the checksum covers all of it.
//! Bytes 4..8 ("rest of header") are read through the accessor that matches
//! the message type (`echo_*`, `next_hop_mtu`, `pointer`, `gateway`).

use std::net::Ipv4Addr;

use super::checksum;
use super::{read_u16, read_u32, write_u16, write_u32, Error, Result};

// Message types.

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// Source quench (deprecated).
pub const SOURCE_QUENCH: u8 = 4;
/// Redirect.
pub const REDIRECT: u8 = 5;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const PARAM_PROBLEM: u8 = 12;

// Codes.

/// Destination unreachable: network unreachable.
pub const NET_UNREACHABLE: u8 = 0;
/// Destination unreachable: host unreachable.
pub const HOST_UNREACHABLE: u8 = 1;
/// Destination unreachable: protocol unreachable.
pub const PROTO_UNREACHABLE: u8 = 2;
/// Destination unreachable: port unreachable.
pub const PORT_UNREACHABLE: u8 = 3;
/// Destination unreachable: fragmentation needed and DF set.
pub const FRAG_NEEDED: u8 = 4;
/// Destination unreachable: communication administratively prohibited.
pub const ADMIN_PROHIBITED: u8 = 13;
/// Time exceeded: TTL exceeded in transit.
pub const TTL_EXCEEDED: u8 = 0;
/// Time exceeded: fragment reassembly time exceeded.
pub const REASSEMBLY_TIME_EXCEEDED: u8 = 1;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const MTU: Range<usize> = 6..8;
    pub const POINTER: usize = 4;
    pub const DATA: usize = 8;
}

/// A view of an ICMPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of the header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = field::DATA;

impl Icmpv4Packet<&'static [u8]> {
    /// Length of the header (type, code, checksum, rest of header). Also `HEADER_LEN` in this module; written as
    /// `Icmpv4Packet::HEADER_LEN` it needs no type annotation.
    pub const HEADER_LEN: usize = HEADER_LEN;
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer of at least 8 bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the header fits in the buffer.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type (`*`).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Bytes 4..8 as one big-endian word.
    pub fn rest_of_header(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REST.start)
    }

    /// Echo identifier (echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number (echo request/reply).
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// Next-hop MTU (destination unreachable, fragmentation needed; RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::MTU.start)
    }

    /// Pointer (parameter problem).
    pub fn pointer(&self) -> u8 {
        self.buffer.as_ref()[field::POINTER]
    }

    /// Gateway address (redirect).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.rest_of_header())
    }

    /// Everything after the 8-byte header (for errors: the quoted packet).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// True for error messages: destination unreachable, source quench,
    /// redirect, time exceeded, parameter problem.
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// True if the checksum over the whole buffer verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

/// True for the ICMPv4 error message types (3, 4, 5, 11, 12).
pub fn is_error_type(msg_type: u8) -> bool {
    matches!(
        msg_type,
        DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
    )
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets bytes 4..8.
    pub fn set_rest_of_header(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::REST.start, value);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, value);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQNO.start, value);
    }

    /// Sets the next-hop MTU and zeroes the unused bytes 4..6.
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        self.set_rest_of_header(u32::from(value));
    }

    /// Sets the pointer (parameter problem) and zeroes bytes 5..8.
    pub fn set_pointer(&mut self, value: u8) {
        self.set_rest_of_header(u32::from(value) << 24);
    }

    /// Sets the gateway address (redirect).
    pub fn set_gateway(&mut self, value: Ipv4Addr) {
        self.set_rest_of_header(u32::from(value));
    }

    /// Everything after the 8-byte header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Computes the checksum over the whole buffer and writes it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(csum);
    }
}

/// An ICMPv4 message in generic form: type, code, the rest-of-header word
/// and the data (echo payload, or the quoted packet of an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Repr<'a> {
    /// Message type.
    pub msg_type: u8,
    /// Message code.
    pub msg_code: u8,
    /// Bytes 4..8 (echo ident << 16 | seq, next-hop MTU, pointer << 24, ...).
    pub rest_of_header: u32,
    /// Data after the header.
    pub data: &'a [u8],
}

impl<'a> Icmpv4Repr<'a> {
    /// An echo request.
    pub fn echo_request(ident: u16, seq_no: u16, data: &'a [u8]) -> Self {
        Icmpv4Repr {
            msg_type: ECHO_REQUEST,
            msg_code: 0,
            rest_of_header: (u32::from(ident) << 16) | u32::from(seq_no),
            data,
        }
    }

    /// An echo reply.
    pub fn echo_reply(ident: u16, seq_no: u16, data: &'a [u8]) -> Self {
        Icmpv4Repr {
            msg_type: ECHO_REPLY,
            ..Self::echo_request(ident, seq_no, data)
        }
    }

    /// Reads a checked message and verifies its checksum ([`Error::Checksum`]).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv4Packet<&'a T>) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let data: &'a [u8] = packet.buffer.as_ref();
        Ok(Icmpv4Repr {
            msg_type: packet.msg_type(),
            msg_code: packet.msg_code(),
            rest_of_header: packet.rest_of_header(),
            data: &data[field::DATA..],
        })
    }

    /// Header plus data.
    pub fn buffer_len(&self) -> usize {
        field::DATA + self.data.len()
    }

    /// Writes the message into the first `buffer_len()` bytes, checksum
    /// computed over exactly those bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        let total = self.buffer_len();
        packet.set_msg_type(self.msg_type);
        packet.set_msg_code(self.msg_code);
        packet.set_checksum(0);
        packet.set_rest_of_header(self.rest_of_header);
        let buf = packet.buffer.as_mut();
        buf[field::DATA..total].copy_from_slice(self.data);
        let csum = checksum::checksum(&buf[..total]);
        packet.set_checksum(csum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ping` echo request: id 0x1c46, seq 1, 8 bytes of payload.
    const ECHO: [u8; 16] = [
        0x08, 0x00, 0x00, 0x00, 0x1c, 0x46, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68,
    ];

    #[test]
    fn parses_a_real_echo_request() {
        let mut buf = ECHO;
        Icmpv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.echo_ident(), 0x1c46);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.data(), b"abcdefgh");
        assert!(!p.is_error());
        assert!(p.verify_checksum());
        let repr = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(repr, Icmpv4Repr::echo_request(0x1c46, 1, b"abcdefgh"));
    }

    #[test]
    fn fields_round_trip_on_a5_buffer() {
        let mut buf = [0xa5u8; 12];
        let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(DEST_UNREACHABLE);
        p.set_msg_code(FRAG_NEEDED);
        p.set_next_hop_mtu(1400);
        p.data_mut()[0] = 0x45;
        p.fill_checksum();
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.msg_type(), 3);
        assert_eq!(p.msg_code(), 4);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert_eq!(p.rest_of_header(), 1400, "unused bytes are zeroed");
        assert!(p.is_error());
        assert_eq!(p.data(), &[0x45, 0xa5, 0xa5, 0xa5]);
        assert!(p.verify_checksum());

        let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
        p.set_echo_ident(7);
        p.set_echo_seq_no(9);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (7, 9));
        p.set_pointer(12);
        assert_eq!(p.pointer(), 12);
        p.set_gateway(Ipv4Addr::new(10, 1, 1, 1));
        assert_eq!(p.gateway(), Ipv4Addr::new(10, 1, 1, 1));
    }

    #[test]
    fn error_types() {
        for t in [3, 4, 5, 11, 12] {
            assert!(is_error_type(t), "{t}");
        }
        for t in [0, 8, 13, 14, 255] {
            assert!(!is_error_type(t), "{t}");
        }
    }

    #[test]
    fn short_buffer_is_truncated_and_bad_checksum_is_reported() {
        assert_eq!(
            Icmpv4Packet::new_checked(&ECHO[..7]).unwrap_err(),
            Error::Truncated
        );
        let mut buf = ECHO;
        Icmpv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
        buf[9] ^= 0x40;
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(Error::Checksum));
    }

    #[test]
    fn repr_round_trip() {
        let repr = Icmpv4Repr::echo_reply(1, 2, b"xyz");
        let mut buf = vec![0xa5u8; repr.buffer_len() + 4];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        let p = Icmpv4Packet::new_checked(&buf[..repr.buffer_len()]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Ok(repr));
    }
}
