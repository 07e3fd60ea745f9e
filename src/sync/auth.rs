//! The optional shared-key authentication of sync messages (an rvs
//! extension; IPVS only filters on syncid): HMAC-SHA256 with the key of
//! the YAML `sync: [{…, auth_key: …}]` over the whole message up to the
//! MAC, carried in a last entry of protocol 0 (`wire::ipvs_sync`
//! [`OPT_RVS_HMAC`](crate::wire::ipvs_sync::OPT_RVS_HMAC)), which a kernel
//! IPVS receiver drops. With a key a daemon signs what it sends and
//! accepts only what verifies; without one it neither signs nor checks.
//!
//! Rules: the comparison is constant-time (`hmac`'s `verify_slice`); no
//! allocation.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::wire::ipvs_sync::{hmac_span, SyncMessage, HMAC_LEN};

type HmacSha256 = Hmac<Sha256>;

/// Fills in the MAC of a message whose last entry is an HMAC trailer
/// (`emit_hmac_trailer`, counted in its header); false if it has none.
pub fn sign(key: &[u8], msg: &mut [u8]) -> bool {
    let Ok(m) = SyncMessage::new_checked(&msg[..]) else {
        return false;
    };
    let Some((signed, at)) = hmac_span(&m) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    mac.update(&msg[..signed]);
    msg[at..at + HMAC_LEN].copy_from_slice(&mac.finalize().into_bytes());
    true
}

/// Whether a checked message carries a trailer whose MAC verifies with
/// `key`.
pub fn verify<T: AsRef<[u8]>>(key: &[u8], m: &SyncMessage<T>) -> bool {
    let Some((signed, at)) = hmac_span(m) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    let b = &m.as_bytes()[..usize::from(m.size())];
    mac.update(&b[..signed]);
    mac.verify_slice(&b[at..at + HMAC_LEN]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipvs_sync::{emit_hmac_trailer, SyncHeaderRepr, HEADER_LEN};

    fn signed(key: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + 72];
        emit_hmac_trailer(&mut buf[HEADER_LEN..]);
        SyncHeaderRepr {
            syncid: 3,
            nr_conns: 1,
            size: buf.len() as u16,
        }
        .emit(&mut SyncMessage::new_unchecked(&mut buf[..]));
        assert!(sign(key, &mut buf));
        buf
    }

    #[test]
    fn a_signed_message_verifies_with_its_key_only() {
        let m = signed(b"s3cret");
        let v = SyncMessage::new_checked(&m[..]).unwrap();
        assert!(verify(b"s3cret", &v));
        assert!(!verify(b"other", &v));
        let mut t = m.clone();
        t[1] = 4; // the syncid is covered
        assert!(!verify(
            b"s3cret",
            &SyncMessage::new_checked(&t[..]).unwrap()
        ));
    }
}
