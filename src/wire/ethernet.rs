//! Ethernet II frames, 802.1Q VLAN tags, MAC addresses, and [`parse_l2`], the
//! first step of every received frame.
//!
//! Rules: exactly one 802.1Q tag is accepted; a second tag (802.1Q in 802.1Q)
//! or an 802.1ad/legacy QinQ service tag is [`Error::UnsupportedVlanStack`].
//! EtherType values below 0x0600 (802.3 lengths) are reported as they are; the
//! caller drops what it does not know.

use core::fmt;
use core::ops::Range;
use core::str::FromStr;
use std::net::Ipv6Addr;

use super::{ethertype, read_u16, write_u16, Error, Result};

/// A 48-bit IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);
    /// 00:00:00:00:00:00 (the unknown target of an ARP request).
    pub const ZERO: EthernetAddress = EthernetAddress([0; 6]);

    /// The six bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// All ones.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The group bit (least significant bit of the first byte) is set; true
    /// for broadcast too.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Not multicast (and so not broadcast).
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// All zeros.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// The locally-administered bit is set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The multicast MAC an IPv6 multicast address maps to (RFC 2464 §7):
    /// `33:33` followed by the last four bytes of the address.
    pub fn from_ipv6_multicast(addr: &Ipv6Addr) -> EthernetAddress {
        let o = addr.octets();
        EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(bytes: [u8; 6]) -> Self {
        EthernetAddress(bytes)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The string given to [`EthernetAddress::from_str`] is not six hex bytes
/// separated by `:` (or `-`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ethernet address {0:?} (expected six hex bytes like 02:00:5e:10:00:01)")]
pub struct EthernetAddressParseError(pub String);

impl FromStr for EthernetAddress {
    type Err = EthernetAddressParseError;

    /// Parses `aa:bb:cc:dd:ee:ff` (also `aa-bb-cc-dd-ee-ff`), case-insensitive,
    /// one or two hex digits per byte.
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let err = || EthernetAddressParseError(s.to_owned());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut bytes = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(EthernetAddress(bytes))
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;

    pub const VLAN_TCI: Range<usize> = 0..2;
    pub const VLAN_ETHERTYPE: Range<usize> = 2..4;
}

fn mac_at(data: &[u8], range: Range<usize>) -> EthernetAddress {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&data[range]);
    EthernetAddress(mac)
}

/// A view of an Ethernet II frame (no FCS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

impl EthernetFrame<&'static [u8]> {
    /// Length of the Ethernet II header. Also `HEADER_LEN` in this module; written as
    /// `EthernetFrame::HEADER_LEN` it needs no type annotation.
    pub const HEADER_LEN: usize = HEADER_LEN;
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer that holds at least the 14-byte header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the header fits in the buffer.
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

    /// Destination MAC.
    pub fn dst_addr(&self) -> EthernetAddress {
        mac_at(self.buffer.as_ref(), field::DST)
    }

    /// Source MAC.
    pub fn src_addr(&self) -> EthernetAddress {
        mac_at(self.buffer.as_ref(), field::SRC)
    }

    /// The EtherType (0x8100 if the frame is VLAN-tagged).
    pub fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// Everything after the 14-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE.start, value);
    }

    /// Everything after the 14-byte header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source MAC.
    pub src_addr: EthernetAddress,
    /// Destination MAC.
    pub dst_addr: EthernetAddress,
    /// EtherType.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        field::PAYLOAD
    }

    /// Writes the header into the first 14 bytes of `frame`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

/// A view of the 4 bytes that follow an outer EtherType of 0x8100: the tag
/// control information and the inner EtherType.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of the tag (TCI + inner EtherType).
pub const VLAN_HEADER_LEN: usize = 4;

impl VlanHeader<&'static [u8]> {
    /// Length of the tag (TCI + inner EtherType). Also `VLAN_HEADER_LEN` in this module; written as
    /// `VlanHeader::HEADER_LEN` it needs no type annotation.
    pub const HEADER_LEN: usize = VLAN_HEADER_LEN;
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    /// Wraps a buffer of at least 4 bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// Checks that the tag fits in the buffer.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < VLAN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Tag control information: PCP (3 bits), DEI (1), VID (12).
    pub fn tci(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::VLAN_TCI.start)
    }

    /// VLAN identifier (low 12 bits of the TCI).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Priority code point (top 3 bits of the TCI).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// The inner EtherType.
    pub fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::VLAN_ETHERTYPE.start)
    }

    /// Everything after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[VLAN_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    /// Sets the whole TCI.
    pub fn set_tci(&mut self, tci: u16) {
        write_u16(self.buffer.as_mut(), field::VLAN_TCI.start, tci);
    }

    /// Sets the VID, keeping PCP and DEI (only the low 12 bits of `vid` count).
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    /// Sets the PCP, keeping DEI and VID (only the low 3 bits of `pcp` count).
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 0x7) << 13);
        self.set_tci(tci);
    }

    /// Sets the DEI bit.
    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Sets the inner EtherType.
    pub fn set_ethertype(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::VLAN_ETHERTYPE.start, value);
    }

    /// Everything after the tag, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[VLAN_HEADER_LEN..]
    }
}

/// What [`parse_l2`] learned from a frame's link-layer header(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Info {
    /// Destination MAC.
    pub dst: EthernetAddress,
    /// Source MAC.
    pub src: EthernetAddress,
    /// The 802.1Q TCI if the frame carried one tag.
    pub vlan: Option<u16>,
    /// The EtherType of the layer-3 payload (the inner one if tagged).
    pub ethertype: u16,
    /// Offset of the layer-3 header in the frame: 14, or 18 if tagged.
    pub l3_offset: usize,
}

fn is_tag(value: u16) -> bool {
    matches!(
        value,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY
    )
}

/// Reads the Ethernet header and at most one 802.1Q tag.
///
/// Errors: [`Error::Truncated`] if the header (or the tag) does not fit;
/// [`Error::UnsupportedVlanStack`] for a QinQ service tag or a second 802.1Q
/// tag.
pub fn parse_l2(frame: &[u8]) -> Result<L2Info> {
    let eth = EthernetFrame::new_checked(frame)?;
    let mut info = L2Info {
        dst: eth.dst_addr(),
        src: eth.src_addr(),
        vlan: None,
        ethertype: eth.ethertype(),
        l3_offset: HEADER_LEN,
    };
    match info.ethertype {
        ethertype::VLAN => {
            let tag = VlanHeader::new_checked(eth.payload())?;
            if is_tag(tag.ethertype()) {
                return Err(Error::UnsupportedVlanStack);
            }
            info.vlan = Some(tag.tci());
            info.ethertype = tag.ethertype();
            info.l3_offset += VLAN_HEADER_LEN;
        }
        ethertype::QINQ | ethertype::QINQ_LEGACY => return Err(Error::UnsupportedVlanStack),
        _ => {}
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_display_and_parse_round_trip() {
        let mac = EthernetAddress([0x02, 0x00, 0x5e, 0x10, 0xab, 0xff]);
        assert_eq!(mac.to_string(), "02:00:5e:10:ab:ff");
        assert_eq!("02:00:5e:10:ab:ff".parse::<EthernetAddress>().unwrap(), mac);
        assert_eq!("02-00-5E-10-AB-FF".parse::<EthernetAddress>().unwrap(), mac);
        assert_eq!("2:0:5e:10:ab:ff".parse::<EthernetAddress>().unwrap(), mac);
        for bad in [
            "",
            "02:00:5e:10:ab",
            "02:00:5e:10:ab:ff:00",
            "02:00:5e:10:ab:fff",
            "02:00:5e:10:ab:g0",
            "02:00:5e:10:ab:",
            "+2:00:5e:10:ab:ff",
        ] {
            assert!(bad.parse::<EthernetAddress>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mac_classes() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!(!EthernetAddress::BROADCAST.is_unicast());
        let mcast = EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast());
        let ucast = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
        assert!(ucast.is_unicast() && ucast.is_local());
        let ns: Ipv6Addr = "ff02::1:ff00:1234".parse().unwrap();
        assert_eq!(
            EthernetAddress::from_ipv6_multicast(&ns),
            EthernetAddress([0x33, 0x33, 0xff, 0x00, 0x12, 0x34])
        );
    }

    #[test]
    fn ethernet_fields_round_trip_on_a5_buffer() {
        let mut buf = [0xa5u8; 64];
        let mut frame = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        let dst = EthernetAddress([1, 2, 3, 4, 5, 6]);
        let src = EthernetAddress([7, 8, 9, 10, 11, 12]);
        frame.set_dst_addr(dst);
        frame.set_src_addr(src);
        frame.set_ethertype(ethertype::IPV6);
        frame.payload_mut()[0] = 0x60;
        assert_eq!(frame.dst_addr(), dst);
        assert_eq!(frame.src_addr(), src);
        assert_eq!(frame.ethertype(), ethertype::IPV6);
        assert_eq!(frame.payload().len(), 50);
        assert_eq!(frame.payload()[..2], [0x60, 0xa5]);
        assert_eq!(
            buf[..14],
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x86, 0xdd]
        );
    }

    #[test]
    fn ethernet_repr_round_trip() {
        let repr = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: ethertype::ARP,
        };
        let mut buf = [0xa5u8; 14];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        let parsed = EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(parsed, repr);
        assert_eq!(repr.buffer_len(), 14);
    }

    #[test]
    fn vlan_fields_round_trip_on_a5_buffer() {
        let mut buf = [0xa5u8; 4];
        let mut tag = VlanHeader::new_checked(&mut buf[..]).unwrap();
        tag.set_vid(100);
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.pcp(), 0b101, "set_vid keeps the PCP bits");
        tag.set_pcp(3);
        tag.set_dei(false);
        tag.set_ethertype(ethertype::IPV4);
        assert_eq!(tag.tci(), (3 << 13) | 100);
        assert!(!tag.dei());
        assert_eq!(tag.ethertype(), ethertype::IPV4);
        tag.set_dei(true);
        assert_eq!(tag.tci(), (3 << 13) | 0x1000 | 100);
        assert_eq!(buf, [0x70, 0x64, 0x08, 0x00]);
    }

    #[test]
    fn short_buffers_are_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            VlanHeader::new_checked(&[0u8; 3][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(parse_l2(&[0u8; 5]).unwrap_err(), Error::Truncated);
    }

    fn frame(ethertypes: &[u16]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
        for (i, t) in ethertypes.iter().enumerate() {
            f.extend_from_slice(&t.to_be_bytes());
            if i + 1 < ethertypes.len() {
                f.extend_from_slice(&(0x2000u16 | 42).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0x45, 0, 0, 20]);
        f
    }

    #[test]
    fn parse_l2_untagged() {
        let info = parse_l2(&frame(&[ethertype::IPV4])).unwrap();
        assert_eq!(info.dst, EthernetAddress::BROADCAST);
        assert_eq!(info.src, EthernetAddress([2, 0, 0, 0, 0, 9]));
        assert_eq!(info.vlan, None);
        assert_eq!(info.ethertype, ethertype::IPV4);
        assert_eq!(info.l3_offset, 14);
    }

    #[test]
    fn parse_l2_single_tag() {
        let info = parse_l2(&frame(&[ethertype::VLAN, ethertype::IPV6])).unwrap();
        assert_eq!(info.vlan, Some(0x2000 | 42));
        assert_eq!(info.ethertype, ethertype::IPV6);
        assert_eq!(info.l3_offset, 18);
    }

    #[test]
    fn parse_l2_rejects_vlan_stacks() {
        for stack in [
            &[ethertype::VLAN, ethertype::VLAN, ethertype::IPV4][..],
            &[ethertype::QINQ, ethertype::VLAN, ethertype::IPV4][..],
            &[ethertype::VLAN, ethertype::QINQ, ethertype::IPV4][..],
            &[ethertype::QINQ_LEGACY, ethertype::VLAN, ethertype::IPV4][..],
        ] {
            assert_eq!(
                parse_l2(&frame(stack)).unwrap_err(),
                Error::UnsupportedVlanStack
            );
        }
    }

    #[test]
    fn parse_l2_tag_cut_short_is_truncated() {
        let mut f = frame(&[ethertype::VLAN, ethertype::IPV4]);
        f.truncate(16);
        assert_eq!(parse_l2(&f).unwrap_err(), Error::Truncated);
    }
}
