//! Connection keys: addresses, the lookup [`Tuple`] and its hash.
//!
//! Rules:
//! * An [`Addr`] is 16 bytes for both families; IPv4 sits in the first four
//!   bytes and the rest are zero, so one entry layout serves both.
//! * [`Tuple::hash`] is the only hash the table uses. It is the same function
//!   on every core (one process-wide seed, fixed at first use) so a worker can
//!   hash a whole burst before looking anything up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 address: IPv4 in the first 4 bytes, the other 12 zero.
pub type Addr = [u8; 16];

/// The all-zero address.
pub const ADDR_ZERO: Addr = [0; 16];

/// Converts an [`IpAddr`] into an [`Addr`].
pub fn addr_from_ip(ip: &IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => {
            let mut a = ADDR_ZERO;
            a[..4].copy_from_slice(&v4.octets());
            a
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Converts an [`Addr`] back into an [`IpAddr`] of the given family.
pub fn addr_to_ip(a: &Addr, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

/// The netmask of a prefix length: `/24` for IPv4 gives 255.255.255.0 in the
/// first four bytes. Lengths beyond the family's width (32 or 128) are clamped.
pub fn prefix_mask(v6: bool, prefix_len: u8) -> Addr {
    let width: u32 = if v6 { 128 } else { 32 };
    let len = u32::from(prefix_len).min(width);
    let mut m = ADDR_ZERO;
    for (i, byte) in m.iter_mut().enumerate().take((width / 8) as usize) {
        let start = (i as u32) * 8;
        *byte = if len >= start + 8 {
            0xff
        } else if len > start {
            0xffu8 << (8 - (len - start))
        } else {
            0
        };
    }
    m
}

/// Bytewise `a & mask` (persistence netmask, `ipvsadm -M`).
pub fn mask_addr(a: &Addr, mask: &Addr) -> Addr {
    let mut out = ADDR_ZERO;
    for ((o, x), m) in out.iter_mut().zip(a.iter()).zip(mask.iter()) {
        *o = x & m;
    }
    out
}

/// Transport protocols the table tracks by state — and that a virtual
/// service speaks: the control protocol and the YAML configuration carry
/// this type too (as `"tcp"` / `"udp"`). SCTP is refused by `lbctl`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Proto {
    /// TCP (IP protocol 6): IPVS TCP state machine.
    Tcp = 6,
    /// UDP (IP protocol 17): one state, "UDP".
    Udp = 17,
}

impl Proto {
    /// The IP (IANA) protocol number (6, 17); ipvsadm sorts services by it.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// ipvsadm's protocol name as printed by `-L` ("TCP", "UDP").
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }

    /// The protocol with this IP protocol number, if tracked.
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// A lookup key as read off a packet: (proto, family, src, sport, dst, dport).
///
/// Persistence templates use the key
/// `{proto, v6, src: caddr & mask, sport: 0, dst: vip, dport: vport}` (vport 0
/// for port-0 services); see [`Tuple::template_key`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Tuple {
    /// IP protocol number (6 TCP, 17 UDP; 0 for fwmark templates).
    pub proto: u8,
    /// IPv6 (true) or IPv4.
    pub v6: bool,
    /// Source address.
    pub src: Addr,
    /// Source port (host order).
    pub sport: u16,
    /// Destination address.
    pub dst: Addr,
    /// Destination port (host order).
    pub dport: u16,
}

/// Default hash seed, used when [`init_hash_seed`] was not called before the
/// first hash.
const DEFAULT_SEED: u64 = 0x243f_6a88_85a3_08d3;
/// Odd multiplier of the folded multiply (2^64 / golden ratio).
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

static HASH_SEED: OnceLock<u64> = OnceLock::new();

/// Sets the process-wide seed of [`Tuple::hash`]. Call it once at startup,
/// before any worker runs, with a random value (hash-flooding defence).
/// Returns `false` — and changes nothing — if the seed is already fixed
/// (by an earlier call or by a first hash): tables never see it change.
pub fn init_hash_seed(seed: u64) -> bool {
    HASH_SEED.set(seed).is_ok()
}

#[inline]
fn hash_seed() -> u64 {
    *HASH_SEED.get_or_init(|| DEFAULT_SEED)
}

/// 64×64→128 multiply folded to 64 bits (as in foldhash / wyhash).
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn word(a: &Addr, hi: bool) -> u64 {
    let o = if hi { 8 } else { 0 };
    let mut b = [0u8; 8];
    b.copy_from_slice(&a[o..o + 8]);
    u64::from_le_bytes(b)
}

impl Tuple {
    /// Builds a tuple.
    pub fn new(proto: u8, v6: bool, src: Addr, sport: u16, dst: Addr, dport: u16) -> Tuple {
        Tuple {
            proto,
            v6,
            src,
            sport,
            dst,
            dport,
        }
    }

    /// The same flow seen from the other end (source and destination swapped).
    pub fn reversed(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            v6: self.v6,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }

    /// The key of a persistence template (IPVS `ip_vs_sched_persist`):
    /// `<proto, client & mask, 0, vip, vport>`. Pass `vport = 0` for port-0
    /// (and FTP) services, and `proto = 0` with the fwmark in `vip` for
    /// fwmark services.
    pub fn template_key(
        proto: u8,
        v6: bool,
        client: &Addr,
        mask: &Addr,
        vip: &Addr,
        vport: u16,
    ) -> Tuple {
        Tuple {
            proto,
            v6,
            src: mask_addr(client, mask),
            sport: 0,
            dst: *vip,
            dport: vport,
        }
    }

    /// The table's hash of this tuple: five folded multiplies over the
    /// address words and one word of (proto, family, ports), keyed by the
    /// process-wide seed. Identical on every core.
    #[inline]
    pub fn hash(&self) -> u32 {
        let meta = u64::from(self.proto)
            | (u64::from(self.v6) << 8)
            | (u64::from(self.sport) << 16)
            | (u64::from(self.dport) << 32);
        let mut h = hash_seed();
        h = fold_mul(h ^ word(&self.src, false), MUL);
        h = fold_mul(h ^ word(&self.src, true), MUL);
        h = fold_mul(h ^ word(&self.dst, false), MUL);
        h = fold_mul(h ^ word(&self.dst, true), MUL);
        h = fold_mul(h ^ meta, MUL);
        (h ^ (h >> 32)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Addr {
        addr_from_ip(&IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    #[test]
    fn ipv4_sits_in_first_four_bytes_and_round_trips() {
        let a = v4(10, 1, 2, 3);
        assert_eq!(&a[..4], &[10, 1, 2, 3]);
        assert!(a[4..].iter().all(|&b| b == 0));
        assert_eq!(addr_to_ip(&a, false), "10.1.2.3".parse::<IpAddr>().unwrap());
        let six: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(addr_to_ip(&addr_from_ip(&six), true), six);
    }

    #[test]
    fn prefix_masks_match_netmasks() {
        assert_eq!(&prefix_mask(false, 24)[..4], &[255, 255, 255, 0]);
        assert_eq!(&prefix_mask(false, 20)[..4], &[255, 255, 240, 0]);
        assert_eq!(prefix_mask(false, 32)[4..], [0u8; 12]);
        assert_eq!(prefix_mask(false, 99), prefix_mask(false, 32));
        let m = prefix_mask(true, 64);
        assert_eq!(m[..8], [0xff; 8]);
        assert_eq!(m[8..], [0; 8]);
        assert_eq!(prefix_mask(true, 0), ADDR_ZERO);
    }

    #[test]
    fn template_key_masks_client_and_zeroes_sport() {
        let k = Tuple::template_key(
            6,
            false,
            &v4(192, 0, 2, 77),
            &prefix_mask(false, 24),
            &v4(10, 0, 0, 1),
            80,
        );
        assert_eq!(k.src, v4(192, 0, 2, 0));
        assert_eq!(k.sport, 0);
        assert_eq!(k.dport, 80);
    }

    #[test]
    fn hash_depends_on_every_field_and_spreads_low_bits() {
        let base = Tuple::new(6, false, v4(1, 2, 3, 4), 1000, v4(5, 6, 7, 8), 80);
        let h = base.hash();
        assert_eq!(h, base.hash(), "deterministic");
        let variants = [
            Tuple { proto: 17, ..base },
            Tuple { v6: true, ..base },
            Tuple {
                sport: 1001,
                ..base
            },
            Tuple { dport: 81, ..base },
            Tuple {
                src: v4(1, 2, 3, 5),
                ..base
            },
            Tuple {
                dst: v4(5, 6, 7, 9),
                ..base
            },
            base.reversed(),
        ];
        for v in variants {
            assert_ne!(v.hash(), h, "{v:?}");
        }
        // Sequential client ports must fill the low bits of a 1024-bucket table evenly.
        let mut buckets = [0u32; 1024];
        for p in 0..65535u16 {
            let t = Tuple { sport: p, ..base };
            buckets[(t.hash() & 1023) as usize] += 1;
        }
        let max = buckets.iter().copied().max().unwrap_or(0);
        assert!(max < 64 * 2, "worst bucket {max} (mean 64)");
    }

    #[test]
    fn hash_seed_is_fixed_after_first_use() {
        let _ = Tuple::new(6, false, ADDR_ZERO, 1, ADDR_ZERO, 2).hash();
        assert!(!init_hash_seed(42));
    }
}
