//! VRRP advertisement view and representation: VRRPv2 (RFC 3768, with the
//! RFC 2338 simple-password authentication keepalived still sends) and
//! VRRPv3 (RFC 5798), over IPv4 and IPv6, byte for byte as keepalived 2.2.7
//! sends and checks them (`reference/keepalived.md` §2.1).
//!
//! Rules:
//! * The address family is not in the message: [`VrrpPacket::new_checked`]
//!   takes it and checks that the buffer holds the fixed header, `count`
//!   addresses of that family and (v2) the 8-byte authentication data.
//!   Bytes beyond that (Ethernet padding) are ignored; the receive checks
//!   compare the declared IP length themselves.
//! * Checksums: v2 over the message only, no pseudo-header; v3 with the IP
//!   pseudo-header (source, destination, length, protocol 112), for IPv4
//!   too, as keepalived does by default. [`VrrpPacket::verify_checksum_v3_as_v2`]
//!   accepts the pseudo-header-less v3 form (Cisco/Juniper, keepalived's
//!   `v3_checksum_as_v2`).
//! * Intervals are kept in the version's own unit: v2 whole seconds (u8),
//!   v3 centiseconds (12 bits).
//! * [`VrrpRepr`] owns its address list (a `Vec`): adverts are parsed and
//!   built by the VRRP control thread, never on a worker's packet path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::quoted::IpFamily;
use super::{ip_proto, read_u16, write_u16, Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// v2: authentication type.
    pub const AUTH_TYPE: usize = 4;
    /// v2: advertisement interval in seconds.
    pub const ADVER_INT: usize = 5;
    /// v3: 4 reserved bits and the 12-bit max advertisement interval.
    pub const MAX_ADVER_INT: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const ADDRS: usize = 8;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::ADDRS;
/// Length of the v2 authentication data (the password, zero-padded).
pub const AUTH_LEN: usize = 8;
/// IPv4 multicast group of VRRP (224.0.0.18).
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group of VRRP (ff02::12).
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The only packet type: advertisement.
pub const TYPE_ADVERT: u8 = 1;
/// TTL / hop limit of every advert (checked on receipt of multicast).
pub const TTL: u8 = 255;
/// IP TOS / traffic class of keepalived's adverts (network control).
pub const TOS: u8 = 0xc0;

/// v2 authentication types.
pub mod auth_type {
    /// No authentication.
    pub const NONE: u8 = 0;
    /// Simple text password (RFC 2338).
    pub const PASS: u8 = 1;
    /// IPsec AH (keepalived: HMAC-MD5-96 in protocol 51).
    pub const AH: u8 = 2;
}

/// Length of the message with `count` addresses of `family` in `version`.
pub fn message_len(version: u8, family: IpFamily, count: u8) -> usize {
    let alen = match family {
        IpFamily::V4 => 4,
        IpFamily::V6 => 16,
    };
    HEADER_LEN + usize::from(count) * alen + if version == 2 { AUTH_LEN } else { 0 }
}

/// A view of a VRRP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpPacket<T: AsRef<[u8]>> {
    buffer: T,
    family: IpFamily,
}

impl VrrpPacket<&'static [u8]> {
    /// Length of the fixed header (also `HEADER_LEN` in this module).
    pub const HEADER_LEN: usize = HEADER_LEN;
}

impl<T: AsRef<[u8]>> VrrpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T, family: IpFamily) -> Self {
        VrrpPacket { buffer, family }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T, family: IpFamily) -> Result<Self> {
        let packet = Self::new_unchecked(buffer, family);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version is 2 or 3 and the buffer holds the whole message
    /// it declares.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let version = self.version();
        if version != 2 && version != 3 {
            return Err(Error::Malformed("VRRP version is neither 2 nor 3"));
        }
        if version == 2 && self.family == IpFamily::V6 {
            return Err(Error::Malformed("VRRPv2 carries IPv4 addresses only"));
        }
        if data.len() < self.message_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The address family of the carried addresses.
    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// Version (high nibble of byte 0).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// Type (low nibble of byte 0; 1 = advertisement).
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    /// Virtual router id.
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    /// Priority (0 = the master stops, 255 = address owner).
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    /// Number of addresses.
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// v2: authentication type.
    pub fn auth_type(&self) -> u8 {
        self.buffer.as_ref()[field::AUTH_TYPE]
    }

    /// v2: advertisement interval, seconds.
    pub fn adver_int(&self) -> u8 {
        self.buffer.as_ref()[field::ADVER_INT]
    }

    /// v3: max advertisement interval, centiseconds (12 bits).
    pub fn max_adver_int(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::MAX_ADVER_INT.start) & 0x0fff
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    fn addr_len(&self) -> usize {
        match self.family {
            IpFamily::V4 => 4,
            IpFamily::V6 => 16,
        }
    }

    /// Length of the message (header, addresses, v2 authentication data).
    pub fn message_len(&self) -> usize {
        message_len(self.version(), self.family, self.count())
    }

    /// Address `i` (`i < count()`).
    pub fn addr(&self, i: usize) -> IpAddr {
        let alen = self.addr_len();
        let at = field::ADDRS + i * alen;
        let b = &self.buffer.as_ref()[at..at + alen];
        match self.family {
            IpFamily::V4 => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            IpFamily::V6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        }
    }

    /// The addresses in order.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (0..usize::from(self.count())).map(|i| self.addr(i))
    }

    /// v2: the 8 bytes of authentication data.
    pub fn auth_data(&self) -> &[u8] {
        let at = field::ADDRS + usize::from(self.count()) * self.addr_len();
        &self.buffer.as_ref()[at..at + AUTH_LEN]
    }

    /// The whole message (`0..message_len()`).
    pub fn message(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.message_len()]
    }

    /// v2: the checksum over the message alone verifies.
    pub fn verify_checksum_v2(&self) -> bool {
        checksum::fold(checksum::sum(self.message())) == 0xffff
    }

    /// v3: the checksum with the pseudo-header of `src` → `dst` verifies.
    pub fn verify_checksum_v3(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let msg = self.message();
        let pseudo = pseudo_header(src, dst, msg.len());
        checksum::fold(checksum::combine(pseudo, checksum::sum(msg))) == 0xffff
    }

    /// v3 checksummed without the pseudo-header (`v3_checksum_as_v2`).
    pub fn verify_checksum_v3_as_v2(&self) -> bool {
        self.verify_checksum_v2()
    }
}

/// The pseudo-header's partial sum, or 0 for mixed families (which never
/// verify anyway).
fn pseudo_header(src: &IpAddr, dst: &IpAddr, len: usize) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            checksum::pseudo_header_v4(s, d, ip_proto::VRRP, len as u32)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::pseudo_header_v6(s, d, ip_proto::VRRP, len as u32)
        }
        _ => 0,
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VrrpPacket<T> {
    /// Sets version and type.
    pub fn set_version_kind(&mut self, version: u8, kind: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version << 4) | (kind & 0x0f);
    }

    /// Sets the virtual router id.
    pub fn set_vrid(&mut self, value: u8) {
        self.buffer.as_mut()[field::VRID] = value;
    }

    /// Sets the priority.
    pub fn set_priority(&mut self, value: u8) {
        self.buffer.as_mut()[field::PRIORITY] = value;
    }

    /// Sets the address count.
    pub fn set_count(&mut self, value: u8) {
        self.buffer.as_mut()[field::COUNT] = value;
    }

    /// v2: sets the authentication type.
    pub fn set_auth_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::AUTH_TYPE] = value;
    }

    /// v2: sets the interval in seconds.
    pub fn set_adver_int(&mut self, value: u8) {
        self.buffer.as_mut()[field::ADVER_INT] = value;
    }

    /// v3: sets the interval in centiseconds (reserved bits zero).
    pub fn set_max_adver_int(&mut self, value: u16) {
        write_u16(
            self.buffer.as_mut(),
            field::MAX_ADVER_INT.start,
            value & 0x0fff,
        );
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Writes address `i`.
    pub fn set_addr(&mut self, i: usize, addr: &IpAddr) {
        let alen = self.addr_len();
        let at = field::ADDRS + i * alen;
        let b = &mut self.buffer.as_mut()[at..at + alen];
        match addr {
            IpAddr::V4(a) if alen == 4 => b.copy_from_slice(&a.octets()),
            IpAddr::V6(a) if alen == 16 => b.copy_from_slice(&a.octets()),
            _ => b.fill(0),
        }
    }

    /// v2: writes the 8 bytes of authentication data.
    pub fn set_auth_data(&mut self, data: &[u8; AUTH_LEN]) {
        let at = field::ADDRS + usize::from(self.count()) * self.addr_len();
        self.buffer.as_mut()[at..at + AUTH_LEN].copy_from_slice(data);
    }

    /// Computes and writes the checksum of this version: v2 over the
    /// message; v3 with the pseudo-header of `src` → `dst`.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let msg = self.message();
        let sum = checksum::sum(msg);
        let sum = if self.version() == 3 {
            checksum::combine(pseudo_header(src, dst, msg.len()), sum)
        } else {
            sum
        };
        self.set_checksum(!checksum::fold(sum));
    }
}

/// v2 authentication as carried in the advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpAuth {
    /// Type 0: eight zero bytes.
    None,
    /// Type 1: the password's first 8 bytes, zero-padded.
    Pass([u8; AUTH_LEN]),
}

impl VrrpAuth {
    /// The PASS form of `password` as keepalived sends it: its first 8
    /// bytes, zero-padded (`secretpassword` → `secretpa`).
    pub fn pass(password: &str) -> VrrpAuth {
        let mut data = [0u8; AUTH_LEN];
        let b = password.as_bytes();
        let n = b.len().min(AUTH_LEN);
        data[..n].copy_from_slice(&b[..n]);
        VrrpAuth::Pass(data)
    }

    /// The authentication type number.
    pub fn type_number(&self) -> u8 {
        match self {
            VrrpAuth::None => auth_type::NONE,
            VrrpAuth::Pass(_) => auth_type::PASS,
        }
    }

    /// The 8 bytes of authentication data.
    pub fn data(&self) -> [u8; AUTH_LEN] {
        match self {
            VrrpAuth::None => [0; AUTH_LEN],
            VrrpAuth::Pass(d) => *d,
        }
    }
}

/// An advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpRepr {
    /// 2 or 3.
    pub version: u8,
    /// Virtual router id.
    pub vrid: u8,
    /// Priority.
    pub priority: u8,
    /// Interval in the version's unit: v2 seconds, v3 centiseconds.
    pub interval: u16,
    /// v2 authentication (v3: always `None`).
    pub auth: VrrpAuth,
    /// The virtual addresses (all of one family).
    pub addrs: Vec<IpAddr>,
}

impl VrrpRepr {
    /// Reads a checked advert. Neither the type nor the checksum is
    /// verified here (the receive checks count each on its own); an AH or
    /// unknown v2 authentication type is [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(packet: &VrrpPacket<T>) -> Result<VrrpRepr> {
        packet.check_len()?;
        let version = packet.version();
        let (interval, auth) = if version == 2 {
            let auth = match packet.auth_type() {
                auth_type::NONE => VrrpAuth::None,
                auth_type::PASS => {
                    let mut d = [0u8; AUTH_LEN];
                    d.copy_from_slice(packet.auth_data());
                    VrrpAuth::Pass(d)
                }
                _ => return Err(Error::Unsupported("VRRPv2 authentication type")),
            };
            (u16::from(packet.adver_int()), auth)
        } else {
            (packet.max_adver_int(), VrrpAuth::None)
        };
        Ok(VrrpRepr {
            version,
            vrid: packet.vrid(),
            priority: packet.priority(),
            interval,
            auth,
            addrs: packet.addrs().collect(),
        })
    }

    /// The family of the addresses (IPv4 when there are none).
    pub fn family(&self) -> IpFamily {
        match self.addrs.first() {
            Some(IpAddr::V6(_)) => IpFamily::V6,
            _ => IpFamily::V4,
        }
    }

    /// Length of the message.
    pub fn buffer_len(&self) -> usize {
        message_len(self.version, self.family(), self.addrs.len() as u8)
    }

    /// Writes the message into the first `buffer_len()` bytes with the
    /// checksum of its version (v3: pseudo-header of `src` → `dst`).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut VrrpPacket<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        packet.family = self.family();
        packet.set_version_kind(self.version, TYPE_ADVERT);
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        packet.set_count(self.addrs.len() as u8);
        if self.version == 2 {
            packet.set_auth_type(self.auth.type_number());
            packet.set_adver_int(self.interval.min(255) as u8);
        } else {
            packet.set_max_adver_int(self.interval);
        }
        for (i, a) in self.addrs.iter().enumerate() {
            packet.set_addr(i, a);
        }
        if self.version == 2 {
            packet.set_auth_data(&self.auth.data());
        }
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Ipv4Packet, Ipv4Repr};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// keepalived 2.2.7's advert (reference §2.1): v2, VRID 51, priority
    /// 90, VIP 10.99.0.38, PASS "1111", from 10.99.0.12, IP id 1.
    const KEEPALIVED_V2: &str = "45 c0 0028 0001 0000 ff 70 d023 0a63000c e0000012 \
                                 21 33 5a 01 01 01 16df 0a630026 31313131 00000000";

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    #[test]
    fn keepalived_v2_advert_parses_field_for_field() {
        let bytes = hex(KEEPALIVED_V2);
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.ttl(), ip.dscp_ecn(), ip.next_header()),
            (255, 0xc0, 112)
        );
        let p = VrrpPacket::new_checked(ip.payload(), IpFamily::V4).unwrap();
        assert!(p.verify_checksum_v2());
        let r = VrrpRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            VrrpRepr {
                version: 2,
                vrid: 51,
                priority: 90,
                interval: 1,
                auth: VrrpAuth::pass("1111"),
                addrs: vec![v4([10, 99, 0, 38])],
            }
        );
        assert_eq!(p.kind(), TYPE_ADVERT);
    }

    #[test]
    fn v2_advert_is_emitted_byte_for_byte_as_keepalived_sends_it() {
        let r = VrrpRepr {
            version: 2,
            vrid: 51,
            priority: 90,
            interval: 1,
            auth: VrrpAuth::pass("1111"),
            addrs: vec![v4([10, 99, 0, 38])],
        };
        let src = Ipv4Addr::new(10, 99, 0, 12);
        let mut buf = vec![0xa5u8; 20 + r.buffer_len()];
        let ipr = Ipv4Repr {
            src_addr: src,
            dst_addr: MCAST_V4,
            next_header: ip_proto::VRRP,
            payload_len: r.buffer_len(),
            ttl: TTL,
            dscp_ecn: TOS,
            ident: 1,
            dont_frag: false,
        };
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
        ipr.emit(&mut ip);
        let mut p = VrrpPacket::new_unchecked(ip.payload_mut(), IpFamily::V4);
        r.emit(&mut p, &IpAddr::V4(src), &IpAddr::V4(MCAST_V4));
        assert_eq!(buf, hex(KEEPALIVED_V2));
    }

    #[test]
    fn password_is_cut_to_eight_bytes_and_zero_padded() {
        assert_eq!(VrrpAuth::pass("secretpassword").data(), *b"secretpa");
        assert_eq!(VrrpAuth::pass("1111").data(), *b"1111\0\0\0\0");
    }

    /// keepalived 2.2.7's v3 advert (reference §2.1): VRID 52, priority
    /// 255, interval 0.5 s = 50 cs, VIP 10.99.0.39, checksum 0xda10 with
    /// the IPv4 pseudo-header (source 10.99.0.11 → 224.0.0.18; over the
    /// message alone the sum is 0xeafc).
    #[test]
    fn keepalived_v3_checksum_includes_the_ipv4_pseudo_header() {
        let msg = hex("31 34 ff 01 0032 da10 0a630027");
        let p = VrrpPacket::new_checked(&msg[..], IpFamily::V4).unwrap();
        let (src, dst) = (v4([10, 99, 0, 11]), IpAddr::V4(MCAST_V4));
        assert!(p.verify_checksum_v3(&src, &dst));
        assert!(!p.verify_checksum_v3_as_v2());
        assert_eq!(p.max_adver_int(), 50);
        let r = VrrpRepr::parse(&p).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(
            &mut VrrpPacket::new_unchecked(&mut out[..], IpFamily::V4),
            &src,
            &dst,
        );
        assert_eq!(out, msg);
    }

    #[test]
    fn v3_ipv6_round_trips_with_its_pseudo_header() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MCAST_V6);
        let r = VrrpRepr {
            version: 3,
            vrid: 7,
            priority: 100,
            interval: 100,
            auth: VrrpAuth::None,
            addrs: vec!["2001:db8::38".parse().unwrap()],
        };
        let mut buf = vec![0xa5u8; r.buffer_len()];
        r.emit(
            &mut VrrpPacket::new_unchecked(&mut buf[..], IpFamily::V6),
            &src,
            &dst,
        );
        assert_eq!(buf.len(), 24);
        let p = VrrpPacket::new_checked(&buf[..], IpFamily::V6).unwrap();
        assert!(p.verify_checksum_v3(&src, &dst));
        assert!(!p.verify_checksum_v3(&v4([1, 2, 3, 4]), &dst));
        assert_eq!(VrrpRepr::parse(&p).unwrap(), r);
    }

    #[test]
    fn truncated_and_bad_versions_are_errors_never_panics() {
        let bytes = hex(KEEPALIVED_V2);
        let msg = &bytes[20..];
        for n in 0..msg.len() {
            assert_eq!(
                VrrpPacket::new_checked(&msg[..n], IpFamily::V4).unwrap_err(),
                Error::Truncated,
                "{n} bytes"
            );
        }
        let mut bad = msg.to_vec();
        bad[0] = 0x41;
        assert!(matches!(
            VrrpPacket::new_checked(&bad[..], IpFamily::V4),
            Err(Error::Malformed(_))
        ));
        bad[0] = 0x21;
        bad[4] = auth_type::AH;
        let p = VrrpPacket::new_checked(&bad[..], IpFamily::V4).unwrap();
        assert!(matches!(VrrpRepr::parse(&p), Err(Error::Unsupported(_))));
        // A count larger than the buffer.
        let mut big = msg.to_vec();
        big[3] = 200;
        assert_eq!(
            VrrpPacket::new_checked(&big[..], IpFamily::V4).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn fields_round_trip_on_a_filled_buffer() {
        let mut buf = [0xa5u8; 32];
        let mut p = VrrpPacket::new_unchecked(&mut buf[..], IpFamily::V4);
        p.set_version_kind(3, 1);
        p.set_vrid(9);
        p.set_priority(1);
        p.set_count(2);
        p.set_max_adver_int(0xffff);
        assert_eq!(
            (p.version(), p.kind(), p.vrid(), p.priority(), p.count()),
            (3, 1, 9, 1, 2)
        );
        assert_eq!(p.max_adver_int(), 0x0fff);
        assert_eq!(buf[4] >> 4, 0, "reserved bits stay zero");
    }
}
