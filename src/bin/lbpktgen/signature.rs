//! The payload signature: what lbpktgen writes at the start of every
//! generated packet's transport payload so the sink can tell its own packets
//! from foreign ones, match them to what was sent, and measure latency.
//!
//! Layout (10 bytes, big-endian, so it fits a 64-byte TCP frame):
//!
//! ```text
//! offset 0  u16  run tag      random per run, never 0
//! offset 2  u32  sequence     packet number (low 32 bits)
//! offset 6  u32  tx time      nanoseconds since the run's clock origin (low 32 bits)
//! ```
//!
//! Rules: every field starts at an even offset of the payload (so the
//! transport checksum is patched word by word); the time is kept modulo
//! 2^32 ns (4.29 s) — latency is the wrapping difference, and anything at or
//! above 2^31 ns (2.1 s) is not a plausible one-way latency and is refused.

/// Bytes the signature takes at the start of the payload.
pub const SIGNATURE_LEN: usize = 10;
/// Offset of the sequence number in the signature.
pub const SEQ_OFFSET: usize = 2;
/// Offset of the transmit time in the signature.
pub const TIME_OFFSET: usize = 6;

/// What one generated packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// Packet number (low 32 bits).
    pub seq: u32,
    /// Transmit time, ns since the run's clock origin (low 32 bits).
    pub tx_ns: u32,
}

/// A run tag from the clock and the process id: random enough that packets
/// of an earlier run are foreign to this one; never 0.
pub fn new_run_tag() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    match x as u16 {
        0 => 1,
        t => t,
    }
}

/// Write `sig` tagged with `run_tag` at the start of `payload`; `false`
/// (nothing written) if the payload is shorter than [`SIGNATURE_LEN`].
pub fn encode(payload: &mut [u8], run_tag: u16, sig: Signature) -> bool {
    let Some(dst) = payload.get_mut(..SIGNATURE_LEN) else {
        return false;
    };
    dst[0..2].copy_from_slice(&run_tag.to_be_bytes());
    dst[SEQ_OFFSET..SEQ_OFFSET + 4].copy_from_slice(&sig.seq.to_be_bytes());
    dst[TIME_OFFSET..TIME_OFFSET + 4].copy_from_slice(&sig.tx_ns.to_be_bytes());
    true
}

/// The signature at the start of `payload` if it carries `run_tag`.
#[inline]
pub fn decode(payload: &[u8], run_tag: u16) -> Option<Signature> {
    let s = payload.get(..SIGNATURE_LEN)?;
    if u16::from_be_bytes([s[0], s[1]]) != run_tag {
        return None;
    }
    Some(Signature {
        seq: u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
        tx_ns: u32::from_be_bytes([s[6], s[7], s[8], s[9]]),
    })
}

/// One-way latency of a packet stamped `tx_ns` and received at `rx_ns` (full
/// ns since the clock origin), or `None` when the difference is not
/// plausible (negative, or 2^31 ns and more).
#[inline]
pub fn latency_ns(tx_ns: u32, rx_ns: u64) -> Option<u32> {
    let d = (rx_ns as u32).wrapping_sub(tx_ns);
    (d < 1 << 31).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trips_through_a_payload() {
        let mut payload = [0xa5u8; 22];
        let sig = Signature {
            seq: 0x0102_0304,
            tx_ns: 0xfedc_ba98,
        };
        assert!(encode(&mut payload, 0x5a17, sig));
        assert_eq!(&payload[..2], &[0x5a, 0x17]);
        assert_eq!(&payload[2..6], &[1, 2, 3, 4]);
        assert_eq!(&payload[6..10], &[0xfe, 0xdc, 0xba, 0x98]);
        assert_eq!(payload[10], 0xa5, "bytes after the signature are untouched");
        assert_eq!(decode(&payload, 0x5a17), Some(sig));
    }

    #[test]
    fn another_runs_tag_is_foreign() {
        let mut payload = [0u8; SIGNATURE_LEN];
        assert!(encode(&mut payload, 7, Signature { seq: 1, tx_ns: 2 }));
        assert_eq!(decode(&payload, 8), None);
        assert_eq!(decode(&[0u8; SIGNATURE_LEN], 7), None);
    }

    #[test]
    fn short_payloads_neither_encode_nor_decode() {
        let mut short = [0u8; SIGNATURE_LEN - 1];
        assert!(!encode(&mut short, 7, Signature { seq: 1, tx_ns: 2 }));
        assert_eq!(short, [0u8; SIGNATURE_LEN - 1]);
        let mut full = [0u8; SIGNATURE_LEN];
        assert!(encode(&mut full, 7, Signature { seq: 1, tx_ns: 2 }));
        assert_eq!(decode(&full[..SIGNATURE_LEN - 1], 7), None);
    }

    #[test]
    fn latency_wraps_with_the_32_bit_clock() {
        assert_eq!(latency_ns(1_000, 1_500), Some(500));
        // Sent just before the low 32 bits wrapped, received just after.
        let tx = (u32::MAX - 99) as u64 + (5u64 << 32);
        assert_eq!(latency_ns(tx as u32, tx + 300), Some(300));
        // Received "before" it was sent: not a latency.
        assert_eq!(latency_ns(2_000, 1_000), None);
        assert_eq!(latency_ns(0, 1 << 31), None);
    }

    #[test]
    fn run_tags_are_never_zero() {
        for _ in 0..1000 {
            assert_ne!(new_run_tag(), 0);
        }
    }
}
