//! Hash functions the hashing schedulers (dh, sh, mh, lblc, lblcr) share.
//!
//! Everything here is pure, allocation-free and fixed-key: the same input
//! gives the same bucket on every core, every run and every director of an
//! HA pair, which is what consistent hashing needs.
//!
//! * [`hash_32`] is Linux's `hash_32()` (multiply by `GOLDEN_RATIO_32`, keep
//!   the top bits): the bucket hash of dh, sh, lblc and lblcr.
//! * [`hsiphash_u32`] is Linux's `hsiphash()` of one 32-bit word **as built on
//!   64-bit kernels**, where "HalfSipHash-1-3" is really SipHash-1-3 over
//!   64-bit lanes with the 32-bit result taken from the low half. mh keys its
//!   permutations and lookups with it, using IPVS's two fixed keys
//!   ([`MH_KEY1`], [`MH_KEY2`]), so an rvs Maglev table equals the one an
//!   x86-64 kernel builds for the same destination list. It is a keyed PRF,
//!   not a secret: the keys are public constants, as in IPVS.
//! * [`siphash`] is the generic SipHash-c-d the specialised function is
//!   checked against (and the reference test vectors check it).
//! * [`fold_addr`] folds an address to 32 bits as IPVS does
//!   (`addr->ip`, or the XOR of the four IPv6 words), in host order.
//! * [`FastMod`] is Lemire's exact "fastmod" for a fixed 32-bit divisor, so
//!   lookups into prime-sized Maglev tables avoid a hardware division.

/// Linux's `GOLDEN_RATIO_32` (`include/linux/hash.h`).
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// Linux's `hash_32(val, bits)`: the top `bits` bits of `val * GOLDEN_RATIO_32`.
/// `bits` must be in `1..=32`; values outside are clamped.
#[inline]
pub fn hash_32(val: u32, bits: u32) -> u32 {
    let bits = bits.clamp(1, 32);
    val.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// Folds an address to the 32-bit host-order value IPVS hashes.
///
/// IPv4 addresses occupy `addr[0..4]` (the layout of Linux's
/// `union nf_inet_addr`); IPv6 addresses are folded as
/// `ntohl(a[0] ^ a[1] ^ a[2] ^ a[3])`.
#[inline]
pub fn fold_addr(addr: &[u8; 16], v6: bool) -> u32 {
    let w = |i: usize| u32::from_be_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    if v6 {
        w(0) ^ w(4) ^ w(8) ^ w(12)
    } else {
        w(0)
    }
}

/// A 128-bit SipHash key, as two 64-bit words (`hsiphash_key_t` on 64-bit
/// Linux: `unsigned long key[2]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipKey(pub u64, pub u64);

/// IPVS mh's first key (`generate_hash_secret`: 2654435761 twice): offsets
/// and lookups.
pub const MH_KEY1: SipKey = SipKey(2_654_435_761, 2_654_435_761);
/// IPVS mh's second key (2654446892 twice): skips.
pub const MH_KEY2: SipKey = SipKey(2_654_446_892, 2_654_446_892);

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

#[inline(always)]
fn preamble(key: SipKey) -> [u64; 4] {
    [
        0x736f_6d65_7073_6575 ^ key.0,
        0x646f_7261_6e64_6f6d ^ key.1,
        0x6c79_6765_6e65_7261 ^ key.0,
        0x7465_6462_7974_6573 ^ key.1,
    ]
}

/// Generic SipHash-`C`-`D` (`C` compression rounds per 8-byte block, `D`
/// finalisation rounds) of `data` under `key`. SipHash-2-4 is the standard
/// PRF; SipHash-1-3 is what Linux's 64-bit `hsiphash` uses.
pub fn siphash<const C: usize, const D: usize>(key: SipKey, data: &[u8]) -> u64 {
    let mut v = preamble(key);
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v[3] ^= m;
        for _ in 0..C {
            sipround(&mut v);
        }
        v[0] ^= m;
    }
    let mut b = (data.len() as u64) << 56;
    for (i, byte) in chunks.remainder().iter().enumerate() {
        b |= u64::from(*byte) << (8 * i);
    }
    v[3] ^= b;
    for _ in 0..C {
        sipround(&mut v);
    }
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..D {
        sipround(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Linux 64-bit `hsiphash(&word, 4, key)` (equivalently `hsiphash_1u32`):
/// SipHash-1-3 of the 4-byte little-endian word, truncated to 32 bits.
#[inline]
pub fn hsiphash_u32(key: SipKey, word: u32) -> u32 {
    let mut v = preamble(key);
    let b = (4u64 << 56) | u64::from(word);
    v[3] ^= b;
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    (v[0] ^ v[1] ^ v[2] ^ v[3]) as u32
}

/// Exact `a % d` for a fixed non-zero 32-bit divisor without a division
/// instruction (Lemire, Kaser, Kurz: "Faster remainder by direct computation",
/// 2019): `M = ⌊(2^64 − 1) / d⌋ + 1`, `a mod d = ⌊((M·a mod 2^64) · d) / 2^64⌋`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastMod {
    divisor: u32,
    magic: u64,
}

impl FastMod {
    /// Prepares division by `divisor`; `None` for zero.
    pub fn new(divisor: u32) -> Option<Self> {
        if divisor == 0 {
            return None;
        }
        Some(Self {
            divisor,
            magic: (u64::MAX / u64::from(divisor)).wrapping_add(1),
        })
    }

    /// The divisor.
    #[inline]
    pub fn divisor(&self) -> u32 {
        self.divisor
    }

    /// `a % divisor`.
    #[inline]
    pub fn rem(&self, a: u32) -> u32 {
        let low = self.magic.wrapping_mul(u64::from(a));
        ((u128::from(low) * u128::from(self.divisor)) >> 64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_key() -> SipKey {
        // Key bytes 00 01 .. 0f, little-endian words (SipHash paper, App. A).
        SipKey(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908)
    }

    #[test]
    fn siphash24_matches_reference_vectors() {
        let key = reference_key();
        assert_eq!(siphash::<2, 4>(key, &[]), 0x726f_db47_dd0e_0e31);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash::<2, 4>(key, &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn hash_32_takes_top_bits_of_golden_ratio_product() {
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(1, 32), GOLDEN_RATIO_32);
        assert!(hash_32(u32::MAX, 10) < 1024);
    }

    #[test]
    fn fold_addr_is_ipvs_fold() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(fold_addr(&a, false), 0x0a00_0001);
        // IPv4 zero-padded folds the same either way.
        assert_eq!(fold_addr(&a, true), 0x0a00_0001);
        let b: [u8; 16] = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        ];
        assert_eq!(fold_addr(&b, true), 0x2001_0db8 ^ 0x0000_0001);
    }

    #[test]
    fn fastmod_rejects_zero() {
        assert!(FastMod::new(0).is_none());
    }

    proptest! {
        #[test]
        fn hsiphash_u32_is_siphash13_of_the_le_word(word: u32, k0: u64, k1: u64) {
            let key = SipKey(k0, k1);
            prop_assert_eq!(
                hsiphash_u32(key, word),
                siphash::<1, 3>(key, &word.to_le_bytes()) as u32
            );
        }

        #[test]
        fn fastmod_equals_remainder(a: u32, d in 1u32..) {
            let fm = FastMod::new(d).expect("non-zero divisor");
            prop_assert_eq!(fm.rem(a), a % d);
        }
    }
}
