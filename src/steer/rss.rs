//! Receive-side scaling as the NIC computes it, so software can predict
//! which queue a packet will land on (DESIGN §5, "RSS-aware local-port
//! choice"): the Toeplitz hash, the redirection table (RETA) lookup, and
//! the queue a FULLNAT reply (RIP:rport → LIP:lport) will reach.
//!
//! Rules: pure functions, no DPDK calls, no allocation in the hash. The
//! hash input is what NICs hash for TCP/UDP over IP: source address,
//! destination address, source port, destination port, all in network
//! byte order. With the symmetric key (0x6d5a repeated) both directions of
//! a flow hash alike.

use std::net::IpAddr;

/// The symmetric Toeplitz key (0x6d5a repeated), 40 bytes as most NICs
/// take; [`symmetric_rss_key`] makes other lengths.
pub const SYMMETRIC_RSS_KEY: [u8; 40] = {
    let mut k = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// The symmetric key (0x6d5a repeated) of `len` bytes (a device's
/// `hash_key_size`, e.g. 52 for i40e).
pub fn symmetric_rss_key(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 2 == 0 { 0x6d } else { 0x5a })
        .collect()
}

/// The Toeplitz hash of `input` under `key` (Microsoft RSS): for every set
/// bit of the input, xor in the 32 key bits starting at that bit's position.
/// Key bits past the end of `key` count as zero (a key must be at least
/// `input.len() + 4` bytes to cover the input, as NIC keys are).
pub fn toeplitz_hash(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |i: usize| key.get(i).copied().unwrap_or(0);
    // The 32-bit window of the key starting at the current bit, plus the
    // next key byte to shift in.
    let mut window = u32::from_be_bytes([key_byte(0), key_byte(1), key_byte(2), key_byte(3)]);
    let mut hash = 0u32;
    for (i, &byte) in input.iter().enumerate() {
        let next = key_byte(i + 4);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | ((next >> (7 - bit)) & 1) as u32;
        }
    }
    hash
}

/// The queue the redirection table sends `hash` to (`reta[hash mod
/// reta.len()]`; NICs index by the low bits, the same for power-of-two
/// tables). An empty table means queue 0.
#[inline]
pub fn rss_queue_for(hash: u32, reta: &[u16]) -> u16 {
    if reta.is_empty() {
        0
    } else {
        reta[hash as usize % reta.len()]
    }
}

/// The Toeplitz hash of an L4 tuple as a NIC computes it for
/// TCP/UDP over IPv4 or IPv6 (src addr, dst addr, src port, dst port);
/// `None` when the two addresses are of different families.
pub fn tuple_hash(key: &[u8], src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Option<u32> {
    let mut input = [0u8; 36];
    let n = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            input[..4].copy_from_slice(&s.octets());
            input[4..8].copy_from_slice(&d.octets());
            8
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            input[..16].copy_from_slice(&s.octets());
            input[16..32].copy_from_slice(&d.octets());
            32
        }
        _ => return None,
    };
    input[n..n + 2].copy_from_slice(&sport.to_be_bytes());
    input[n + 2..n + 4].copy_from_slice(&dport.to_be_bytes());
    Some(toeplitz_hash(key, &input[..n + 4]))
}

/// The queue RSS delivers a FULLNAT reply to: the real server's packet
/// src RIP:rport → dst LIP:lport. An lport allocator that wants replies on
/// its own worker's queue accepts only lports for which this is that
/// queue. `None` when RIP and LIP are of different families.
pub fn fullnat_reply_queue(
    key: &[u8],
    reta: &[u16],
    rip: IpAddr,
    rport: u16,
    lip: IpAddr,
    lport: u16,
) -> Option<u16> {
    tuple_hash(key, rip, rport, lip, lport).map(|h| rss_queue_for(h, reta))
}

/// A port's RSS set-up as configured on the device: key, hashed fields and
/// redirection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConfig {
    /// The Toeplitz key programmed into the device.
    pub key: Vec<u8>,
    /// DPDK `rss_hf` bits in force (`RTE_ETH_RSS_*`).
    pub hash_functions: u64,
    /// Redirection table: entry i is the queue for hashes ≡ i.
    pub reta: Vec<u16>,
    /// Whether `reta` was read back from (or written to) the device; if
    /// `false` it is the usual default `i % queues`, assumed.
    pub reta_confirmed: bool,
}

impl RssConfig {
    /// The queue a packet with this tuple lands on.
    pub fn queue_for_tuple(&self, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Option<u16> {
        tuple_hash(&self.key, src, sport, dst, dport).map(|h| rss_queue_for(h, &self.reta))
    }

    /// The queue a FULLNAT reply RIP:rport → LIP:lport lands on (see
    /// [`fullnat_reply_queue`]).
    pub fn fullnat_reply_queue(
        &self,
        rip: IpAddr,
        rport: u16,
        lip: IpAddr,
        lport: u16,
    ) -> Option<u16> {
        fullnat_reply_queue(&self.key, &self.reta, rip, rport, lip, lport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The key of Microsoft's RSS verification suite.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().expect("test address"))
    }

    #[test]
    fn toeplitz_matches_the_microsoft_ipv4_verification_suite() {
        // (destination, dst port, source, src port, IPv4-only hash, with TCP ports)
        let cases = [
            (
                [161, 142, 100, 80],
                1766,
                [66, 9, 149, 187],
                2794,
                0x323e_8fc2,
                0x51cc_c178,
            ),
            (
                [65, 69, 140, 83],
                4739,
                [199, 92, 111, 2],
                14230,
                0xd718_262a,
                0xc626_b0ea,
            ),
            (
                [12, 22, 207, 184],
                38024,
                [24, 19, 198, 95],
                12898,
                0xd2d0_a5de,
                0x5c2b_394a,
            ),
            (
                [209, 142, 163, 6],
                2217,
                [38, 27, 205, 30],
                48228,
                0x8298_9176,
                0xafc7_327f,
            ),
            (
                [202, 188, 127, 2],
                1303,
                [153, 39, 163, 191],
                44251,
                0x5d18_09c5,
                0x10e8_28a2,
            ),
        ];
        for (dst, dport, src, sport, l3, l3l4) in cases {
            let mut input = Vec::new();
            input.extend_from_slice(&src);
            input.extend_from_slice(&dst);
            assert_eq!(toeplitz_hash(&MS_KEY, &input), l3, "{src:?} -> {dst:?}");
            assert_eq!(
                tuple_hash(&MS_KEY, v4(src), sport, v4(dst), dport),
                Some(l3l4),
                "{src:?}:{sport} -> {dst:?}:{dport}"
            );
        }
    }

    #[test]
    fn toeplitz_matches_the_microsoft_ipv6_verification_suite() {
        let cases = [
            (
                "3ffe:2501:200:3::1",
                1766,
                "3ffe:2501:200:1fff::7",
                2794,
                0x2cc1_8cd5,
                0x4020_7d3d,
            ),
            (
                "ff02::1",
                4739,
                "3ffe:501:8::260:97ff:fe40:efab",
                14230,
                0x0f0c_461c,
                0xdde5_1bbf,
            ),
            (
                "fe80::200:f8ff:fe21:67cf",
                38024,
                "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
                44251,
                0x4b61_e985,
                0x02d1_feef,
            ),
        ];
        for (dst, dport, src, sport, l3, l3l4) in cases {
            let (s, d) = (v6(src), v6(dst));
            let (IpAddr::V6(s6), IpAddr::V6(d6)) = (s, d) else {
                unreachable!("v6 gives IPv6")
            };
            let mut input = Vec::new();
            input.extend_from_slice(&s6.octets());
            input.extend_from_slice(&d6.octets());
            assert_eq!(toeplitz_hash(&MS_KEY, &input), l3, "{src} -> {dst}");
            assert_eq!(
                tuple_hash(&MS_KEY, s, sport, d, dport),
                Some(l3l4),
                "{src} -> {dst}"
            );
        }
    }

    #[test]
    fn symmetric_key_hashes_both_directions_alike() {
        let key = SYMMETRIC_RSS_KEY;
        assert_eq!(symmetric_rss_key(40), key.to_vec());
        for p in [1u16, 80, 443, 1024, 40000, 65535] {
            let a = tuple_hash(&key, v4([10, 0, 0, 1]), p, v4([192, 168, 7, 9]), 8080);
            let b = tuple_hash(&key, v4([192, 168, 7, 9]), 8080, v4([10, 0, 0, 1]), p);
            assert_eq!(a, b);
            let a6 = tuple_hash(&key, v6("2001:db8::1"), p, v6("2001:db8:1::9"), 53);
            let b6 = tuple_hash(&key, v6("2001:db8:1::9"), 53, v6("2001:db8::1"), p);
            assert_eq!(a6, b6);
        }
        // A non-symmetric key does not.
        let a = tuple_hash(&MS_KEY, v4([10, 0, 0, 1]), 1234, v4([192, 168, 7, 9]), 80);
        let b = tuple_hash(&MS_KEY, v4([192, 168, 7, 9]), 80, v4([10, 0, 0, 1]), 1234);
        assert_ne!(a, b);
    }

    #[test]
    fn mixed_families_have_no_hash() {
        assert_eq!(
            tuple_hash(&SYMMETRIC_RSS_KEY, v4([1, 2, 3, 4]), 1, v6("::1"), 2),
            None
        );
    }

    #[test]
    fn reta_lookup_uses_hash_modulo_table_size() {
        let reta: Vec<u16> = (0..128).map(|i| i % 3).collect();
        assert_eq!(rss_queue_for(0, &reta), 0);
        assert_eq!(rss_queue_for(130, &reta), reta[2]);
        assert_eq!(rss_queue_for(u32::MAX, &reta), reta[127]);
        assert_eq!(rss_queue_for(77, &[]), 0);
    }

    #[test]
    fn fullnat_reply_queue_lets_a_worker_pick_lports_that_come_back_to_it() {
        let reta: Vec<u16> = (0..128).map(|i| i % 2).collect();
        let cfg = RssConfig {
            key: SYMMETRIC_RSS_KEY.to_vec(),
            hash_functions: 0,
            reta,
            reta_confirmed: true,
        };
        let rip = v4([192, 168, 10, 1]);
        let lip = v4([10, 0, 1, 100]);
        let mut per_queue = [0u32; 2];
        for lport in 1024..5024u16 {
            let q = cfg
                .fullnat_reply_queue(rip, 80, lip, lport)
                .expect("same family");
            // The reply's hash is the hash of the director's outgoing
            // packet LIP:lport -> RIP:rport (symmetric key).
            assert_eq!(cfg.queue_for_tuple(lip, lport, rip, 80), Some(q));
            per_queue[q as usize] += 1;
        }
        // Both queues get a fair share of the ports to choose from.
        assert!(per_queue.iter().all(|&n| n > 1500), "{per_queue:?}");
    }
}
