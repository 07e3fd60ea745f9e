//! The Internet checksum: RFC 1071 full computation and RFC 1624 incremental
//! update.
//!
//! Vocabulary: a *partial sum* (`u32`) is a one's-complement sum of big-endian
//! 16-bit words that has not been folded or inverted yet; partial sums of
//! adjacent even-length pieces can be [`combine`]d. [`fold`] reduces a partial
//! sum to 16 bits, and the checksum written into a header is `!fold(sum)`.
//!
//! # What the incremental functions guarantee
//!
//! One's-complement arithmetic has two zeros, `0x0000` and `0xffff`. A full
//! computation over data that is not entirely zero never produces `0xffff`
//! (the folded sum of such data lies in `1..=0xffff`, so its complement lies in
//! `0..=0xfffe`). [`update16`], [`update32`] and [`update_bytes`] (RFC 1624
//! eqn. 3, `HC' = ~(~HC + ~m + m')`) are written so they keep that property:
//!
//! > If `csum` is a valid checksum of some data (either representation of zero
//! > is accepted), and the data after the change is not all zero bytes, the
//! > result is **bit-for-bit equal to a full recomputation** (`checksum(new
//! > data)`).
//!
//! The UDP rule "a computed 0x0000 is transmitted as 0xffff, and 0x0000 in the
//! field means *no checksum* (IPv4)" is the caller's business: skip the update
//! when the field is 0 on IPv4, and write 0xffff when the update returns 0 (see
//! [`udp_final`]). The property tests in `wire::proptests` check both.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement partial sum of `data` read as big-endian 16-bit words; an
/// odd trailing byte is padded with a zero byte on the right.
///
/// The result is already reduced to 16 bits (it is `<= 0xffff`) and is 0 only
/// if `data` is all zeros. Processes 8 bytes per step with a 64-bit
/// end-around-carry accumulator (equivalent to 16-bit one's-complement
/// addition, RFC 1071 §2(C)).
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let (s, carry) = acc.overflowing_add(u64::from_be_bytes(word));
        acc = s + u64::from(carry);
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc = add64(acc, u64::from(u16::from_be_bytes([rest[0], rest[1]])));
        rest = &rest[2..];
    }
    if let Some(&last) = rest.first() {
        acc = add64(acc, u64::from(last) << 8);
    }
    u32::from(fold64(acc))
}

#[inline]
fn add64(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

#[inline]
fn fold64(mut acc: u64) -> u16 {
    // Each step keeps the value congruent modulo 0xffff and never turns a
    // non-zero value into zero.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// Folds a partial sum to 16 bits with end-around carry (does not invert).
#[inline]
pub fn fold(sum: u32) -> u16 {
    fold64(u64::from(sum))
}

/// Adds two partial sums (one's-complement addition).
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    u32::from(fold64(u64::from(a) + u64::from(b)))
}

/// The Internet checksum of `data`: `!fold(sum(data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Partial sum of the IPv4 pseudo-header (RFC 793 / RFC 768): source,
/// destination, zero byte, protocol, and the upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, proto: u8, len: u32) -> u32 {
    let acc =
        u64::from(u32::from(*src)) + u64::from(u32::from(*dst)) + u64::from(proto) + u64::from(len);
    u32::from(fold64(acc))
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination,
/// 32-bit upper-layer length, three zero bytes, next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, len: u32) -> u32 {
    let acc = u64::from(sum(&src.octets()))
        + u64::from(sum(&dst.octets()))
        + u64::from(proto)
        + u64::from(len);
    u32::from(fold64(acc))
}

/// Replaces a folded value of 0 by 0xffff: a sum that includes non-zero data is
/// never the "positive zero".
#[inline]
fn nonzero(folded: u16) -> u16 {
    if folded == 0 {
        0xffff
    } else {
        folded
    }
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word of the covered data
/// changes from `old` to `new` (`HC' = ~(~HC + ~m + m')`).
///
/// The word must sit at an even offset of the checksummed data. See the module
/// documentation for the exactness guarantee.
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!csum) + u64::from(!old) + u64::from(new);
    !nonzero(fold64(acc))
}

/// [`update16`] for a 32-bit value (an IPv4 address, a TCP sequence number, or
/// two adjacent ports) at an even offset.
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!csum)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from((new >> 16) as u16)
        + u64::from(new as u16);
    !nonzero(fold64(acc))
}

/// [`update16`] for a run of bytes replaced by another run of the same length
/// (an IPv6 address, a MAC-less option rewrite, ...). Both runs must start at
/// the same even offset of the checksummed data; with equal lengths that is
/// all it needs (an odd length is handled as `sum` pads it).
#[inline]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let acc = u64::from(!csum) + u64::from(!fold(sum(old))) + u64::from(sum(new));
    !nonzero(fold64(acc))
}

/// Several changes to checksummed data, accumulated and then applied to a
/// checksum in one step (RFC 1624 eqn. 3 with many `~m + m'` terms): for a
/// rewrite that changes addresses, ports and the TTL at once.
///
/// [`Delta::apply`] gives the same result as applying each change with
/// [`update16`] / [`update32`] in turn (and so the same guarantee: equal to a
/// full recomputation). Every word must sit at an even offset of the data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    /// No change.
    #[inline]
    pub const fn new() -> Delta {
        Delta(0)
    }

    /// A 16-bit word changes from `old` to `new`.
    #[inline(always)]
    pub fn word16(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// A 32-bit value (an IPv4 address, two adjacent ports) changes from
    /// `old` to `new`.
    #[inline(always)]
    pub fn word32(&mut self, old: u32, new: u32) {
        self.word16((old >> 16) as u16, (new >> 16) as u16);
        self.word16(old as u16, new as u16);
    }

    /// The checksum after all the changes, from `csum` before them.
    #[inline(always)]
    pub fn apply(self, csum: u16) -> u16 {
        !nonzero(fold64(u64::from(!csum) + self.0))
    }
}

/// UDP's transmission rule: a computed checksum of 0x0000 is sent as 0xffff
/// (0x0000 in the field means "no checksum", RFC 768).
#[inline]
pub fn udp_final(csum: u16) -> u16 {
    if csum == 0 {
        0xffff
    } else {
        csum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward RFC 1071 reference: 16 bits at a time into a u64.
    fn reference_sum(data: &[u8]) -> u32 {
        let mut acc: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u64::from);
            acc += hi | lo;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u32
    }

    #[test]
    fn rfc1071_example_words_sum_to_ddf2() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 -> sum 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn fast_sum_matches_reference_for_all_lengths_and_patterns() {
        let mut data = Vec::new();
        for i in 0..300u32 {
            data.push((i.wrapping_mul(151) ^ (i >> 3)) as u8);
        }
        for len in 0..data.len() {
            assert_eq!(sum(&data[..len]), reference_sum(&data[..len]), "len {len}");
        }
        let ones = vec![0xffu8; 1000];
        for len in [0, 1, 2, 7, 8, 9, 999, 1000] {
            assert_eq!(sum(&ones[..len]), reference_sum(&ones[..len]), "len {len}");
        }
    }

    #[test]
    fn odd_byte_is_padded_on_the_right() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x00, 0x01, 0x02]), 0x0201);
    }

    #[test]
    fn combine_of_even_halves_equals_sum_of_whole() {
        let data: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
        for split in (0..=64).step_by(2) {
            assert_eq!(
                fold(combine(sum(&data[..split]), sum(&data[split..]))),
                fold(sum(&data))
            );
        }
        assert_eq!(fold(combine(0xffff_ffff, 0xffff_ffff)), fold(0xffff_ffff));
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // Wikipedia's IPv4 header example: checksum 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(sum(&hdr)), 0xffff);
    }

    #[test]
    fn pseudo_headers_match_their_byte_layout() {
        let s4 = Ipv4Addr::new(10, 1, 2, 3);
        let d4 = Ipv4Addr::new(192, 168, 200, 7);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&s4.octets());
        bytes.extend_from_slice(&d4.octets());
        bytes.extend_from_slice(&[0, 6, 0x05, 0xdc]);
        assert_eq!(pseudo_header_v4(&s4, &d4, 6, 1500), sum(&bytes));

        let s6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d6: Ipv6Addr = "fe80::ffff:1:2:3".parse().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&s6.octets());
        bytes.extend_from_slice(&d6.octets());
        bytes.extend_from_slice(&70000u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(pseudo_header_v6(&s6, &d6, 17, 70000), sum(&bytes));
    }

    #[test]
    fn update16_equals_recomputation_including_the_zero_corner() {
        // `base` checksums to exactly 0x0000 (its folded sum is 0xffff).
        let base = [0x10u8, 0x00, 0xef, 0xff, 0x00, 0x00];
        let c0 = checksum(&base);
        assert_eq!(c0, 0x0000, "base was chosen to checksum to zero");
        let mut changed = base;
        changed[4..6].copy_from_slice(&0xabcdu16.to_be_bytes());
        assert_eq!(update16(c0, 0, 0xabcd), checksum(&changed));
        // And back to the zero checksum, from either zero representation.
        let c1 = checksum(&changed);
        assert_eq!(update16(c1, 0xabcd, 0), 0x0000);
        assert_eq!(update16(0xffff, 0, 0), 0x0000);
        // The degenerate all-zero sum (checksum 0xffff, word 0xffff -> 0):
        // data [0xffff, 0x0001, 0xfffe] has folded sum 0xffff, checksum 0.
        let data = [0xff, 0xff, 0x00, 0x01, 0xff, 0xfe];
        assert_eq!(checksum(&data), 0);
        let changed = [0x00, 0x00, 0x00, 0x01, 0xff, 0xfe];
        assert_eq!(checksum(&changed), 0);
        assert_eq!(update16(0xffff, 0xffff, 0x0000), checksum(&changed));
        assert_eq!(update32(0xffff, 0xffff_ffff, 0), 0);
        assert_eq!(update_bytes(0xffff, &[0xff, 0xff], &[0, 0]), 0);
    }

    #[test]
    fn update32_and_update_bytes_equal_recomputation() {
        let mut data: Vec<u8> = (0..40u8)
            .map(|b| b.wrapping_mul(91).wrapping_add(3))
            .collect();
        let c = checksum(&data);
        let old = u32::from_be_bytes([data[12], data[13], data[14], data[15]]);
        let new = 0xc0a8_0101u32;
        data[12..16].copy_from_slice(&new.to_be_bytes());
        assert_eq!(update32(c, old, new), checksum(&data));

        let c = checksum(&data);
        let old16: [u8; 16] = data[8..24].try_into().unwrap();
        let new16 = [0xfeu8; 16];
        data[8..24].copy_from_slice(&new16);
        assert_eq!(update_bytes(c, &old16, &new16), checksum(&data));
    }

    #[test]
    fn delta_of_several_changes_equals_recomputation() {
        let mut data: Vec<u8> = (0..40u8)
            .map(|b| b.wrapping_mul(57).wrapping_add(11))
            .collect();
        let c = checksum(&data);
        let mut d = Delta::new();
        let old_a = u32::from_be_bytes([data[12], data[13], data[14], data[15]]);
        d.word32(old_a, 0x0a00_0001);
        data[12..16].copy_from_slice(&0x0a00_0001u32.to_be_bytes());
        let old_p = u16::from_be_bytes([data[20], data[21]]);
        d.word16(old_p, 8080);
        data[20..22].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(d.apply(c), checksum(&data));
        let one_by_one = update16(update32(c, old_a, 0x0a00_0001), old_p, 8080);
        assert_eq!(d.apply(c), one_by_one);
        assert_eq!(Delta::new().apply(c), c, "no change, same checksum");
    }

    #[test]
    fn udp_final_maps_only_zero() {
        assert_eq!(udp_final(0), 0xffff);
        assert_eq!(udp_final(1), 1);
        assert_eq!(udp_final(0xffff), 0xffff);
    }
}
