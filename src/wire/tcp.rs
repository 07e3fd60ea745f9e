//! TCP (RFC 9293) segment view, flags and representation.
//!
//! Rules: [`TcpPacket::new_checked`] checks the data offset (>= 5) and that the
//! header fits in the buffer. The segment is the **whole buffer**: the
//! checksum functions use `buffer.len()` as the TCP length, so callers pass
//! exactly the segment (the IP payload, not Ethernet padding).

use core::fmt;
use core::ops;
use std::net::IpAddr;

use super::checksum;
use super::{ip_proto, read_u16, read_u32, write_u16, write_u32, Error, Result};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// The maximum TCP header length (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// The eight TCP flag bits of byte 13 (NS, in byte 12, is not included).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// No flags.
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if every bit of `other` is set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any bit of `other` is set in `self`.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// No bit set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }
}

impl ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl ops::Not for TcpFlags {
    type Output = TcpFlags;
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0)
    }
}

impl fmt::Debug for TcpFlags {
    /// Lists the set flags, e.g. `TcpFlags(SYN|ACK)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

impl fmt::Display for TcpFlags {
    /// `SYN|ACK`, or `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        if self.0 == 0 {
            return f.write_str("-");
        }
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Partial sum of the pseudo-header for an upper-layer segment of `len` bytes
/// between `src` and `dst`. Mixed families (which a real packet cannot have)
/// use the IPv4-mapped IPv6 form of the IPv4 address.
pub(crate) fn pseudo_header(src: &IpAddr, dst: &IpAddr, proto: u8, len: u32) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_header_v4(s, d, proto, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(s, d, proto, len),
        (IpAddr::V4(s), IpAddr::V6(d)) => {
            checksum::pseudo_header_v6(&s.to_ipv6_mapped(), d, proto, len)
        }
        (IpAddr::V6(s), IpAddr::V4(d)) => {
            checksum::pseudo_header_v6(s, &d.to_ipv6_mapped(), proto, len)
        }
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::URGENT.end;

impl TcpPacket<&'static [u8]> {
    /// Length of a header without options. Also `MIN_HEADER_LEN` in this module; written as
    /// `TcpPacket::MIN_HEADER_LEN` it needs no type annotation.
    pub const MIN_HEADER_LEN: usize = MIN_HEADER_LEN;
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the data offset and that the header fits in the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(Error::Malformed("TCP data offset below 5"));
        }
        if header_len > len {
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

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flag byte.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The NS (nonce sum) bit.
    pub fn ns(&self) -> bool {
        self.buffer.as_ref()[field::DATA_OFF] & 0x01 != 0
    }

    /// FIN set.
    pub fn fin(&self) -> bool {
        self.flags().contains(TcpFlags::FIN)
    }

    /// SYN set.
    pub fn syn(&self) -> bool {
        self.flags().contains(TcpFlags::SYN)
    }

    /// RST set.
    pub fn rst(&self) -> bool {
        self.flags().contains(TcpFlags::RST)
    }

    /// PSH set.
    pub fn psh(&self) -> bool {
        self.flags().contains(TcpFlags::PSH)
    }

    /// ACK set.
    pub fn ack(&self) -> bool {
        self.flags().contains(TcpFlags::ACK)
    }

    /// URG set.
    pub fn urg(&self) -> bool {
        self.flags().contains(TcpFlags::URG)
    }

    /// Window size (unscaled).
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT.start)
    }

    /// Option bytes (20..header_len).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The data after the header (to the end of the buffer).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Length of the sequence space this segment occupies: payload length
    /// plus one for SYN and one for FIN.
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// The MSS option's value, if the header carries a well-formed one.
    /// Malformed option lists yield `None`, never a panic.
    pub fn mss(&self) -> Option<u16> {
        let mut opts = self.options();
        while let Some(&kind) = opts.first() {
            match kind {
                0 => return None,
                1 => opts = &opts[1..],
                _ => {
                    let len = usize::from(*opts.get(1)?);
                    if len < 2 || len > opts.len() {
                        return None;
                    }
                    if kind == 2 && len == 4 {
                        return Some(read_u16(opts, 2));
                    }
                    opts = &opts[len..];
                }
            }
        }
        None
    }

    /// True if the checksum verifies for a segment sent from `src` to `dst`.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = pseudo_header(src, dst, ip_proto::TCP, data.len() as u32);
        checksum::fold(checksum::combine(pseudo, checksum::sum(data))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT.start, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT.start, value);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM.start, value);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM.start, value);
    }

    /// Sets the header length in bytes (stored as `len / 4`; keeps the
    /// reserved bits and NS).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (((len / 4) as u8) << 4);
    }

    /// Sets the flag byte.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets or clears NS.
    pub fn set_ns(&mut self, value: bool) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & !0x01) | u8::from(value);
    }

    /// Sets the window size.
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE.start, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT.start, value);
    }

    /// Option bytes, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..end]
    }

    /// The data after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes the checksum over the whole buffer with the pseudo-header of
    /// `src` → `dst` and writes it.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = pseudo_header(src, dst, ip_proto::TCP, data.len() as u32);
        let csum = !checksum::fold(checksum::combine(pseudo, checksum::sum(data)));
        self.set_checksum(csum);
    }
}

/// A TCP segment's header fields, options and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window size.
    pub window_len: u16,
    /// Raw option bytes (emit pads them with zeros to a multiple of 4 and
    /// truncates beyond 40 bytes).
    pub options: &'a [u8],
    /// Data.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Reads a checked segment. The checksum is **not** verified (it needs the
    /// IP addresses: use [`TcpPacket::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &TcpPacket<&'a T>) -> Result<TcpRepr<'a>> {
        packet.check_len()?;
        let data: &'a [u8] = packet.buffer.as_ref();
        let header_len = packet.header_len();
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            options: &data[field::URGENT.end..header_len],
            payload: &data[header_len..],
        })
    }

    /// Header length after padding the options (20..=60).
    pub fn header_len(&self) -> usize {
        let options = self.options.len().min(MAX_HEADER_LEN - field::URGENT.end);
        field::URGENT.end + options.div_ceil(4) * 4
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes header, options, padding and payload into the first
    /// `buffer_len()` bytes and the checksum over exactly those bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        let header_len = self.header_len();
        let total = self.buffer_len();
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.buffer.as_mut()[field::DATA_OFF] = ((header_len / 4) as u8) << 4;
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(0);
        let buf = packet.buffer.as_mut();
        let options = &self.options[..self.options.len().min(header_len - field::URGENT.end)];
        let opt_area = &mut buf[field::URGENT.end..header_len];
        opt_area.fill(0);
        opt_area[..options.len()].copy_from_slice(options);
        buf[header_len..total].copy_from_slice(self.payload);
        let pseudo = pseudo_header(src, dst, ip_proto::TCP, total as u32);
        let csum = !checksum::fold(checksum::combine(pseudo, checksum::sum(&buf[..total])));
        packet.set_checksum(csum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    // A real SYN from 192.168.1.2:49152 to 93.184.216.34:80, with MSS 1460,
    // SACK permitted, timestamps, NOP, window scale 7.
    const SYN: [u8; 40] = [
        0xc0, 0x00, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01,
        0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn parses_real_syn_and_its_options() {
        let mut buf = SYN;
        let src = v4([192, 168, 1, 2]);
        let dst = v4([93, 184, 216, 34]);
        TcpPacket::new_unchecked(&mut buf[..]).fill_checksum(&src, &dst);
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.src_port(), 49152);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x12345678);
        assert_eq!(p.header_len(), 40);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst() && !p.psh() && !p.urg());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.mss(), Some(1460));
        assert_eq!(p.options().len(), 20);
        assert!(p.payload().is_empty());
        assert_eq!(p.segment_len(), 1);
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&dst, &v4([1, 1, 1, 1])));
    }

    #[test]
    fn fields_round_trip_on_a5_buffer() {
        let mut buf = [0xa5u8; 32];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(1);
        p.set_dst_port(65535);
        p.set_seq_number(0xdeadbeef);
        p.set_ack_number(0x01020304);
        p.set_header_len(24);
        p.set_flags(TcpFlags::SYN | TcpFlags::ACK);
        p.set_ns(false);
        p.set_window_len(512);
        p.set_checksum(0x1234);
        p.set_urgent_at(7);
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.src_port(), 1);
        assert_eq!(p.dst_port(), 65535);
        assert_eq!(p.seq_number(), 0xdeadbeef);
        assert_eq!(p.ack_number(), 0x01020304);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert!(!p.ns());
        assert_eq!(p.window_len(), 512);
        assert_eq!(p.checksum(), 0x1234);
        assert_eq!(p.urgent_at(), 7);
        assert_eq!(p.options(), &[0xa5; 4]);
        assert_eq!(p.payload().len(), 8);
        assert_eq!(buf[12], 0x64, "reserved bits kept, NS cleared");
    }

    #[test]
    fn check_len_errors_are_precise() {
        assert_eq!(
            TcpPacket::new_checked(&SYN[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            TcpPacket::new_checked(&SYN[..39]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = SYN;
        bad[12] = 0x40;
        assert!(matches!(
            TcpPacket::new_checked(&bad[..]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn flags_helpers() {
        let mut f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN));
        assert!(!f.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(f.intersects(TcpFlags::SYN | TcpFlags::FIN));
        f.remove(TcpFlags::SYN);
        f.insert(TcpFlags::FIN);
        assert_eq!(f, TcpFlags::FIN | TcpFlags::ACK);
        assert_eq!(f.to_string(), "FIN|ACK");
        assert_eq!(format!("{:?}", TcpFlags::empty()), "TcpFlags(-)");
    }

    #[test]
    fn mss_tolerates_malformed_options() {
        for options in [
            &[2u8, 5, 0, 0][..],
            &[2, 0, 5, 0],
            &[8, 30, 0, 0],
            &[1, 1, 1, 0],
            &[0, 2, 4, 5, 0xb4, 0, 0, 0][..],
        ] {
            let mut buf = vec![0u8; 20];
            buf[12] = (((20 + options.len()).div_ceil(4)) as u8) << 4;
            buf.extend_from_slice(options);
            buf.resize(20 + options.len().div_ceil(4) * 4, 0);
            let p = TcpPacket::new_checked(&buf[..]).unwrap();
            assert_eq!(p.mss(), None, "{options:?}");
        }
    }

    #[test]
    fn repr_round_trip_with_unaligned_options_v4_and_v6() {
        let options = [2u8, 4, 0x05, 0xb4, 1, 3, 3]; // MSS + NOP + wscale (7 bytes)
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: 443,
            seq_number: 1,
            ack_number: 2,
            flags: TcpFlags::PSH | TcpFlags::ACK,
            window_len: 1000,
            options: &options,
            payload: b"hello, world",
        };
        assert_eq!(repr.header_len(), 28);
        for (src, dst) in [
            (v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            ),
        ] {
            // Emitting into a longer buffer checksums only the segment.
            let mut buf = vec![0xa5u8; repr.buffer_len() + 5];
            repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), &src, &dst);
            let seg = &buf[..repr.buffer_len()];
            let p = TcpPacket::new_checked(seg).unwrap();
            assert!(p.verify_checksum(&src, &dst));
            let parsed = TcpRepr::parse(&p).unwrap();
            assert_eq!(parsed.options, &[2, 4, 0x05, 0xb4, 1, 3, 3, 0]);
            assert_eq!(
                TcpRepr {
                    options: &options,
                    ..parsed
                },
                repr
            );
            assert_eq!(p.mss(), Some(1460));
        }
    }

    #[test]
    fn repr_truncates_options_beyond_forty_bytes() {
        let options = [1u8; 45];
        let repr = TcpRepr {
            src_port: 1,
            dst_port: 2,
            seq_number: 0,
            ack_number: 0,
            flags: TcpFlags::SYN,
            window_len: 0,
            options: &options,
            payload: &[],
        };
        assert_eq!(repr.header_len(), 60);
        let mut buf = [0u8; 60];
        let addr = v4([1, 2, 3, 4]);
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), &addr, &addr);
        assert_eq!(
            TcpPacket::new_checked(&buf[..]).unwrap().options(),
            &[1u8; 40]
        );
    }
}
