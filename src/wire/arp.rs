//! ARP (RFC 826) for Ethernet and IPv4 only: the fixed 28-byte packet.
//!
//! Rules: [`ArpPacket::new_checked`] only checks that 28 bytes are there;
//! [`ArpRepr::parse`] additionally requires hardware type 1 (Ethernet),
//! protocol type 0x0800, and address lengths 6 and 4 — any other ARP is
//! [`Error::Unsupported`].

use std::net::Ipv4Addr;

use super::{ethertype, read_u16, write_u16, Error, EthernetAddress, Result};

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// ARP hardware type for Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;

/// The ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// 1: who has `target_protocol_addr`?
    Request,
    /// 2: `source_protocol_addr` is at `source_hardware_addr`.
    Reply,
    /// Anything else (RARP, InARP, ...).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(op: ArpOperation) -> u16 {
        match op {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// A view of an Ethernet/IPv4 ARP packet (28 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

fn mac_at(data: &[u8], range: core::ops::Range<usize>) -> EthernetAddress {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&data[range]);
    EthernetAddress(mac)
}

fn ipv4_at(data: &[u8], range: core::ops::Range<usize>) -> Ipv4Addr {
    let mut addr = [0u8; 4];
    addr.copy_from_slice(&data[range]);
    Ipv4Addr::from(addr)
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

impl ArpPacket<&'static [u8]> {
    /// Length of an Ethernet/IPv4 ARP packet. Also `PACKET_LEN` in this module; written as
    /// `ArpPacket::PACKET_LEN` it needs no type annotation.
    pub const PACKET_LEN: usize = PACKET_LEN;
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer of at least 28 bytes (trailing Ethernet padding is fine).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the 28 bytes fit in the buffer.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 = Ethernet).
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE.start)
    }

    /// Protocol type (0x0800 = IPv4).
    pub fn protocol_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PTYPE.start)
    }

    /// Hardware address length (6).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        read_u16(self.buffer.as_ref(), field::OPER.start).into()
    }

    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> EthernetAddress {
        mac_at(self.buffer.as_ref(), field::SHA)
    }

    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SPA)
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        mac_at(self.buffer.as_ref(), field::THA)
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::HTYPE.start, value);
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::PTYPE.start, value);
    }

    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, value: ArpOperation) {
        write_u16(self.buffer.as_mut(), field::OPER.start, value.into());
    }

    /// Sets the sender hardware address.
    pub fn set_source_hardware_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&value.0);
    }

    /// Sets the sender protocol address.
    pub fn set_source_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&value.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_hardware_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&value.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&value.octets());
    }
}

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request, reply, or other.
    pub operation: ArpOperation,
    /// Sender MAC.
    pub source_hardware_addr: EthernetAddress,
    /// Sender IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC (zero in a request).
    pub target_hardware_addr: EthernetAddress,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an Ethernet/IPv4 ARP packet; other hardware or protocol types
    /// are [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != ethertype::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported("ARP other than Ethernet/IPv4"));
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Length of the emitted packet (28).
    pub const fn buffer_len(&self) -> usize {
        field::TPA.end
    }

    /// Writes the 28-byte packet.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HARDWARE_ETHERNET);
        packet.set_protocol_type(ethertype::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ARP request: who has 192.168.1.1? tell 192.168.1.100.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 192,
        168, 1, 100, 0, 0, 0, 0, 0, 0, 192, 168, 1, 1,
    ];

    #[test]
    fn parses_a_real_request() {
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(repr.operation, ArpOperation::Request);
        assert_eq!(
            repr.source_hardware_addr,
            EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert_eq!(repr.source_protocol_addr, Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(repr.target_hardware_addr, EthernetAddress::ZERO);
        assert_eq!(repr.target_protocol_addr, Ipv4Addr::new(192, 168, 1, 1));
    }

    #[test]
    fn fields_round_trip_on_a5_buffer() {
        let mut buf = [0xa5u8; 28];
        let mut p = ArpPacket::new_checked(&mut buf[..]).unwrap();
        assert_eq!(p.operation(), ArpOperation::Unknown(0xa5a5));
        p.set_operation(ArpOperation::Reply);
        p.set_source_hardware_addr(EthernetAddress([1, 2, 3, 4, 5, 6]));
        p.set_target_protocol_addr(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.operation(), ArpOperation::Reply);
        assert_eq!(
            p.source_hardware_addr(),
            EthernetAddress([1, 2, 3, 4, 5, 6])
        );
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.hardware_type(), 0xa5a5, "untouched fields keep the fill");
    }

    #[test]
    fn repr_round_trip() {
        let repr = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
        };
        let mut buf = [0xa5u8; 28];
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()),
            Ok(repr)
        );
    }

    #[test]
    fn non_ethernet_ipv4_arp_is_unsupported() {
        let mut other = REQUEST;
        other[1] = 6; // IEEE 802 hardware
        assert!(matches!(
            ArpRepr::parse(&ArpPacket::new_checked(&other[..]).unwrap()),
            Err(Error::Unsupported(_))
        ));
        let mut other = REQUEST;
        other[5] = 16;
        assert!(ArpRepr::parse(&ArpPacket::new_checked(&other[..]).unwrap()).is_err());
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]).unwrap_err(),
            Error::Truncated
        );
    }
}
