//! ICMP for IPv6 (RFC 4443) and the two Neighbor Discovery messages the
//! director needs (RFC 4861 neighbor solicitation and advertisement), with the
//! message type constants (`wire::icmpv6::ECHO_REQUEST`, ...).
//!
//! Rules: [`Icmpv6Packet::new_checked`] checks the 8-byte header fits; the
//! message is the whole buffer and its checksum includes the IPv6
//! pseudo-header, so checksum functions take the addresses. NDP options are
//! walked with every length checked: a zero-length option is
//! [`Error::Malformed`], one running past the message [`Error::Truncated`].
//! The caller checks the IPv6 hop limit is 255 (RFC 4861 §7.1).

use std::net::Ipv6Addr;

use super::checksum;
use super::{ip_proto, read_u16, read_u32, write_u16, write_u32, Error, EthernetAddress, Result};

// Message types.

/// Destination unreachable.
pub const DST_UNREACHABLE: u8 = 1;
/// Packet too big.
pub const PACKET_TOO_BIG: u8 = 2;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const PARAM_PROBLEM: u8 = 4;
/// Echo request.
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const ECHO_REPLY: u8 = 129;
/// Router solicitation.
pub const ROUTER_SOLICIT: u8 = 133;
/// Router advertisement.
pub const ROUTER_ADVERT: u8 = 134;
/// Neighbor solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;
/// Redirect.
pub const REDIRECT: u8 = 137;

// Codes.

/// Destination unreachable: no route.
pub const NO_ROUTE: u8 = 0;
/// Destination unreachable: administratively prohibited.
pub const ADMIN_PROHIBITED: u8 = 1;
/// Destination unreachable: address unreachable.
pub const ADDR_UNREACHABLE: u8 = 3;
/// Destination unreachable: port unreachable.
pub const PORT_UNREACHABLE: u8 = 4;
/// Time exceeded: hop limit exceeded in transit.
pub const HOP_LIMIT_EXCEEDED: u8 = 0;

// NDP option types.

/// Source link-layer address option.
pub const OPT_SOURCE_LLADDR: u8 = 1;
/// Target link-layer address option.
pub const OPT_TARGET_LLADDR: u8 = 2;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const MTU: Range<usize> = 4..8;
    pub const NA_FLAGS: usize = 4;
    pub const DATA: usize = 8;
    pub const TARGET: Range<usize> = 8..24;
    pub const NDP_OPTIONS: usize = 24;
}

/// A view of an ICMPv6 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of the header (type, code, checksum, 4 type-specific bytes).
pub const HEADER_LEN: usize = field::DATA;

impl Icmpv6Packet<&'static [u8]> {
    /// Length of the header (type, code, checksum, 4 type-specific bytes). Also `HEADER_LEN` in this module; written as
    /// `Icmpv6Packet::HEADER_LEN` it needs no type annotation.
    pub const HEADER_LEN: usize = HEADER_LEN;
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
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

    /// Message type (`icmpv6::*`).
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

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// MTU (packet too big).
    pub fn mtu(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::MTU.start)
    }

    /// Pointer (parameter problem).
    pub fn pointer(&self) -> u32 {
        self.rest_of_header()
    }

    /// Everything after the 8-byte header (for errors: the quoted packet).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// True for error messages (types below 128).
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// True if the checksum over the whole buffer and the pseudo-header of
    /// `src` → `dst` verifies.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, data.len() as u32);
        checksum::fold(checksum::combine(pseudo, checksum::sum(data))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Sets the MTU (packet too big).
    pub fn set_mtu(&mut self, value: u32) {
        self.set_rest_of_header(value);
    }

    /// Sets the pointer (parameter problem).
    pub fn set_pointer(&mut self, value: u32) {
        self.set_rest_of_header(value);
    }

    /// Everything after the 8-byte header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Computes the checksum over the whole buffer and the pseudo-header of
    /// `src` → `dst` and writes it.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, data.len() as u32);
        let csum = !checksum::fold(checksum::combine(pseudo, checksum::sum(data)));
        self.set_checksum(csum);
    }
}

fn checksum_prefix(data: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
    let pseudo = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, data.len() as u32);
    !checksum::fold(checksum::combine(pseudo, checksum::sum(data)))
}

/// An ICMPv6 message in generic form: type, code, the rest-of-header word
/// and the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Repr<'a> {
    /// Message type.
    pub msg_type: u8,
    /// Message code.
    pub msg_code: u8,
    /// Bytes 4..8 (echo ident << 16 | seq, MTU, pointer, ...).
    pub rest_of_header: u32,
    /// Data after the header.
    pub data: &'a [u8],
}

impl<'a> Icmpv6Repr<'a> {
    /// An echo request.
    pub fn echo_request(ident: u16, seq_no: u16, data: &'a [u8]) -> Self {
        Icmpv6Repr {
            msg_type: ECHO_REQUEST,
            msg_code: 0,
            rest_of_header: (u32::from(ident) << 16) | u32::from(seq_no),
            data,
        }
    }

    /// An echo reply.
    pub fn echo_reply(ident: u16, seq_no: u16, data: &'a [u8]) -> Self {
        Icmpv6Repr {
            msg_type: ECHO_REPLY,
            ..Self::echo_request(ident, seq_no, data)
        }
    }

    /// Reads a checked message. The checksum is **not** verified (it needs the
    /// addresses: use [`Icmpv6Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv6Packet<&'a T>) -> Result<Self> {
        packet.check_len()?;
        let data: &'a [u8] = packet.buffer.as_ref();
        Ok(Icmpv6Repr {
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

    /// Writes the message into the first `buffer_len()` bytes with the
    /// checksum over exactly those bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv6Packet<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) {
        let total = self.buffer_len();
        packet.set_msg_type(self.msg_type);
        packet.set_msg_code(self.msg_code);
        packet.set_checksum(0);
        packet.set_rest_of_header(self.rest_of_header);
        let buf = packet.buffer.as_mut();
        buf[field::DATA..total].copy_from_slice(self.data);
        let csum = checksum_prefix(&buf[..total], src, dst);
        packet.set_checksum(csum);
    }
}

/// The flag bits of a neighbor advertisement (top bits of byte 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NdpFlags(pub u8);

impl NdpFlags {
    /// R: the sender is a router.
    pub const ROUTER: NdpFlags = NdpFlags(0x80);
    /// S: sent in response to a solicitation.
    pub const SOLICITED: NdpFlags = NdpFlags(0x40);
    /// O: override an existing cache entry.
    pub const OVERRIDE: NdpFlags = NdpFlags(0x20);

    /// No flags.
    pub const fn empty() -> NdpFlags {
        NdpFlags(0)
    }

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: NdpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// R flag.
    pub const fn router(self) -> bool {
        self.contains(Self::ROUTER)
    }

    /// S flag.
    pub const fn solicited(self) -> bool {
        self.contains(Self::SOLICITED)
    }

    /// O flag.
    pub const fn override_(self) -> bool {
        self.contains(Self::OVERRIDE)
    }
}

impl core::ops::BitOr for NdpFlags {
    type Output = NdpFlags;
    fn bitor(self, rhs: NdpFlags) -> NdpFlags {
        NdpFlags(self.0 | rhs.0)
    }
}

/// A neighbor solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpRepr {
    /// Type 135: who has `target`? (Duplicate address detection omits the
    /// source link-layer address.)
    NeighborSolicit {
        /// The address being resolved.
        target: Ipv6Addr,
        /// The solicitor's MAC (option 1).
        source_lladdr: Option<EthernetAddress>,
    },
    /// Type 136: `target` is at `target_lladdr`.
    NeighborAdvert {
        /// Router / solicited / override.
        flags: NdpFlags,
        /// The address advertised.
        target: Ipv6Addr,
        /// The advertiser's MAC (option 2).
        target_lladdr: Option<EthernetAddress>,
    },
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1):
/// `ff02::1:ffXX:XXXX` with the low 24 bits of `addr`.
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

fn ipv6_at(data: &[u8], range: core::ops::Range<usize>) -> Ipv6Addr {
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&data[range]);
    Ipv6Addr::from(addr)
}

/// Finds the link-layer address option `wanted` in NDP options, checking every
/// option's length.
fn find_lladdr(mut options: &[u8], wanted: u8) -> Result<Option<EthernetAddress>> {
    let mut found = None;
    while !options.is_empty() {
        if options.len() < 2 {
            return Err(Error::Truncated);
        }
        let len = usize::from(options[1]) * 8;
        if len == 0 {
            return Err(Error::Malformed("NDP option with zero length"));
        }
        if len > options.len() {
            return Err(Error::Truncated);
        }
        if options[0] == wanted && found.is_none() {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&options[2..8]);
            found = Some(EthernetAddress(mac));
        }
        options = &options[len..];
    }
    Ok(found)
}

impl NdpRepr {
    /// Parses a neighbor solicitation or advertisement (other types are
    /// [`Error::Unsupported`]). Checks code 0, length >= 24, a unicast target,
    /// and the option list. The checksum is not verified here.
    pub fn parse<T: AsRef<[u8]>>(packet: &Icmpv6Packet<T>) -> Result<NdpRepr> {
        packet.check_len()?;
        let msg_type = packet.msg_type();
        if msg_type != NEIGHBOR_SOLICIT && msg_type != NEIGHBOR_ADVERT {
            return Err(Error::Unsupported("ICMPv6 message is not NS/NA"));
        }
        if packet.msg_code() != 0 {
            return Err(Error::Malformed("NDP message code is not 0"));
        }
        let data = packet.buffer.as_ref();
        if data.len() < field::NDP_OPTIONS {
            return Err(Error::Truncated);
        }
        let target = ipv6_at(data, field::TARGET);
        if target.is_multicast() {
            return Err(Error::Malformed("NDP target is multicast"));
        }
        let options = &data[field::NDP_OPTIONS..];
        if msg_type == NEIGHBOR_SOLICIT {
            Ok(NdpRepr::NeighborSolicit {
                target,
                source_lladdr: find_lladdr(options, OPT_SOURCE_LLADDR)?,
            })
        } else {
            Ok(NdpRepr::NeighborAdvert {
                flags: NdpFlags(data[field::NA_FLAGS] & 0xe0),
                target,
                target_lladdr: find_lladdr(options, OPT_TARGET_LLADDR)?,
            })
        }
    }

    fn lladdr(&self) -> Option<(u8, EthernetAddress)> {
        match *self {
            NdpRepr::NeighborSolicit { source_lladdr, .. } => {
                source_lladdr.map(|mac| (OPT_SOURCE_LLADDR, mac))
            }
            NdpRepr::NeighborAdvert { target_lladdr, .. } => {
                target_lladdr.map(|mac| (OPT_TARGET_LLADDR, mac))
            }
        }
    }

    /// The whole ICMPv6 message length: 24, plus 8 with a link-layer option.
    pub fn buffer_len(&self) -> usize {
        field::NDP_OPTIONS + if self.lladdr().is_some() { 8 } else { 0 }
    }

    /// Writes the message into the first `buffer_len()` bytes with its
    /// checksum for `src` → `dst`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv6Packet<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) {
        let (msg_type, rest, target) = match *self {
            NdpRepr::NeighborSolicit { target, .. } => (NEIGHBOR_SOLICIT, 0u32, target),
            NdpRepr::NeighborAdvert { flags, target, .. } => {
                (NEIGHBOR_ADVERT, u32::from(flags.0 & 0xe0) << 24, target)
            }
        };
        let total = self.buffer_len();
        packet.set_msg_type(msg_type);
        packet.set_msg_code(0);
        packet.set_checksum(0);
        packet.set_rest_of_header(rest);
        let lladdr = self.lladdr();
        let buf = packet.buffer.as_mut();
        buf[field::TARGET].copy_from_slice(&target.octets());
        if let Some((kind, mac)) = lladdr {
            let opt = &mut buf[field::NDP_OPTIONS..field::NDP_OPTIONS + 8];
            opt[0] = kind;
            opt[1] = 1;
            opt[2..8].copy_from_slice(&mac.0);
        }
        let csum = checksum_prefix(&buf[..total], src, dst);
        packet.set_checksum(csum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    // A real NS from fe80::1 for fe80::2 with source lladdr 52:54:00:12:34:56.
    fn real_ns() -> Vec<u8> {
        let mut p = vec![135, 0, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(&addr("fe80::2").octets());
        p.extend_from_slice(&[1, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        let (src, dst) = (addr("fe80::1"), solicited_node(&addr("fe80::2")));
        Icmpv6Packet::new_unchecked(&mut p[..]).fill_checksum(&src, &dst);
        p
    }

    #[test]
    fn parses_a_real_neighbor_solicitation() {
        let buf = real_ns();
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(&addr("fe80::1"), &addr("ff02::1:ff00:2")));
        assert!(!p.is_error());
        assert_eq!(
            NdpRepr::parse(&p),
            Ok(NdpRepr::NeighborSolicit {
                target: addr("fe80::2"),
                source_lladdr: Some(EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
            })
        );
    }

    #[test]
    fn fields_round_trip_on_a5_buffer() {
        let mut buf = [0xa5u8; 16];
        let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(PACKET_TOO_BIG);
        p.set_msg_code(0);
        p.set_mtu(1280);
        p.data_mut()[0] = 0x60;
        let (s, d) = (addr("2001:db8::1"), addr("2001:db8::2"));
        p.fill_checksum(&s, &d);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code(), p.mtu()), (2, 0, 1280));
        assert!(p.is_error());
        assert_eq!(p.data()[..2], [0x60, 0xa5]);
        assert!(p.verify_checksum(&s, &d));
        assert!(!p.verify_checksum(&s, &addr("2001:db8::3")));
        let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
        p.set_echo_ident(0x1234);
        p.set_echo_seq_no(0x5678);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 0x5678));
        p.set_pointer(40);
        assert_eq!(p.pointer(), 40);
    }

    #[test]
    fn error_types_are_below_128() {
        let mut buf = [0u8; 8];
        for (t, err) in [
            (1, true),
            (4, true),
            (127, true),
            (128, false),
            (136, false),
        ] {
            buf[0] = t;
            assert_eq!(Icmpv6Packet::new_checked(&buf[..]).unwrap().is_error(), err);
        }
    }

    #[test]
    fn ndp_reprs_round_trip() {
        let (s, d) = (addr("fe80::a"), addr("fe80::b"));
        for repr in [
            NdpRepr::NeighborSolicit {
                target: addr("2001:db8::5"),
                source_lladdr: None,
            },
            NdpRepr::NeighborSolicit {
                target: addr("2001:db8::5"),
                source_lladdr: Some(EthernetAddress([2, 0, 0, 0, 0, 1])),
            },
            NdpRepr::NeighborAdvert {
                flags: NdpFlags::SOLICITED | NdpFlags::OVERRIDE,
                target: addr("2001:db8::5"),
                target_lladdr: Some(EthernetAddress([2, 0, 0, 0, 0, 2])),
            },
            NdpRepr::NeighborAdvert {
                flags: NdpFlags::ROUTER,
                target: addr("fe80::5"),
                target_lladdr: None,
            },
        ] {
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &s, &d);
            let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
            assert!(p.verify_checksum(&s, &d));
            assert_eq!(NdpRepr::parse(&p), Ok(repr));
        }
        let flags = NdpFlags::SOLICITED | NdpFlags::OVERRIDE;
        assert!(flags.solicited() && flags.override_() && !flags.router());
    }

    #[test]
    fn ndp_option_errors() {
        let mut zero_len = real_ns();
        zero_len[25] = 0;
        let p = Icmpv6Packet::new_checked(&zero_len[..]).unwrap();
        assert!(matches!(NdpRepr::parse(&p), Err(Error::Malformed(_))));

        let mut too_long = real_ns();
        too_long[25] = 2;
        let p = Icmpv6Packet::new_checked(&too_long[..]).unwrap();
        assert_eq!(NdpRepr::parse(&p), Err(Error::Truncated));

        let mut dangling = real_ns();
        dangling.push(1);
        let p = Icmpv6Packet::new_checked(&dangling[..]).unwrap();
        assert_eq!(NdpRepr::parse(&p), Err(Error::Truncated));

        let short = real_ns();
        let p = Icmpv6Packet::new_checked(&short[..20]).unwrap();
        assert_eq!(NdpRepr::parse(&p), Err(Error::Truncated));

        let mut mcast_target = real_ns();
        mcast_target[8] = 0xff;
        let p = Icmpv6Packet::new_checked(&mcast_target[..]).unwrap();
        assert!(matches!(NdpRepr::parse(&p), Err(Error::Malformed(_))));

        let mut echo = real_ns();
        echo[0] = ECHO_REQUEST;
        let p = Icmpv6Packet::new_checked(&echo[..]).unwrap();
        assert!(matches!(NdpRepr::parse(&p), Err(Error::Unsupported(_))));
    }

    #[test]
    fn unknown_options_are_skipped() {
        let mut buf = real_ns();
        buf.truncate(24);
        buf.extend_from_slice(&[14, 1, 0, 0, 0, 0, 0, 0]); // nonce option
        buf.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 7]);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        match NdpRepr::parse(&p).unwrap() {
            NdpRepr::NeighborSolicit { source_lladdr, .. } => {
                assert_eq!(source_lladdr, Some(EthernetAddress([2, 0, 0, 0, 0, 7])))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn solicited_node_address() {
        assert_eq!(
            solicited_node(&addr("2001:db8::1:2345:6789")),
            addr("ff02::1:ff45:6789")
        );
    }

    #[test]
    fn icmpv6_repr_round_trip() {
        let (s, d) = (addr("2001:db8::1"), addr("2001:db8::2"));
        let repr = Icmpv6Repr::echo_reply(3, 4, b"ping");
        let mut buf = vec![0xa5u8; repr.buffer_len() + 2];
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &s, &d);
        let p = Icmpv6Packet::new_checked(&buf[..repr.buffer_len()]).unwrap();
        assert!(p.verify_checksum(&s, &d));
        assert_eq!(Icmpv6Repr::parse(&p), Ok(repr));
    }
}
