//! dh — destination hashing (`ip_vs_dh.c`): 256 buckets filled with the
//! servers round-robin in list order (newest first; weights ignored, weight-0
//! servers included), keyed by `hash_32(daddr, 8)` (current Linux; older
//! kernels used `daddr * 2654435761 & 255`, whose low byte only depends on
//! the address's low byte). The bucket's server is returned only when it is
//! available, has weight > 0 and is not overloaded; otherwise `None` — no
//! fallback, as in IPVS. The table is built by the control plane; pick is
//! O(1) and stateless.

use super::hash::{fold_addr, hash_32};
use super::{is_eligible, DestLoad, DestView, FlowKey, EMPTY_SLOT};

/// dh bucket bits (`CONFIG_IP_VS_DH_TAB_BITS`).
pub const TAB_BITS: u32 = 8;
/// dh bucket count.
pub const TAB_SIZE: usize = 1 << TAB_BITS;

/// The 256 dh buckets.
#[derive(Debug)]
pub struct DhTable {
    buckets: Box<[u32]>,
}

impl DhTable {
    pub(crate) fn build(dests: &[DestView]) -> Self {
        let n = dests.len();
        let buckets = (0..TAB_SIZE)
            .map(|b| {
                if n == 0 {
                    EMPTY_SLOT
                } else {
                    (n - 1 - b % n) as u32
                }
            })
            .collect();
        Self { buckets }
    }

    /// The buckets (indices into `dests`).
    pub fn buckets(&self) -> &[u32] {
        &self.buckets
    }

    /// Destination-hashing pick.
    #[inline]
    pub(crate) fn pick(
        &self,
        dests: &[DestView],
        load: &[DestLoad],
        flow: &FlowKey,
    ) -> Option<usize> {
        let key = hash_32(fold_addr(&flow.daddr, flow.v6), TAB_BITS) as usize;
        let idx = *self.buckets.get(key)? as usize;
        let (d, l) = (dests.get(idx)?, load.get(idx)?);
        is_eligible(d, l).then_some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn dh_same_destination_same_server() {
        let d = dests(&[1, 1, 1, 1, 1]);
        let s = Scheduler::build("dh", &[], &d).expect("builds");
        let load = idle(5);
        let mut seen = std::collections::HashSet::new();
        for dst in 0..200u32 {
            let b = dst.to_be_bytes();
            let key = |src: u32| {
                FlowKey::v4(
                    [172, 16, 0, src as u8],
                    2000 + src as u16,
                    [10, b[1], b[2], b[3]],
                )
            };
            let first = s
                .pick(&mut s.new_state(), &d, &load, &key(1), 0)
                .expect("server");
            for src in 2..20 {
                assert_eq!(
                    s.pick(&mut s.new_state(), &d, &load, &key(src), 0),
                    Some(first),
                    "same daddr, different clients"
                );
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 5, "destinations spread over every server");
        // Buckets are round-robin in list order (newest first).
        assert_eq!(&s.table().expect("table")[..6], &[4, 3, 2, 1, 0, 4]);
    }

    #[test]
    fn dh_returns_none_for_an_overloaded_bucket_owner() {
        let d = dests(&[1, 1]);
        let s = Scheduler::build("dh", &[], &d).expect("builds");
        let mut load = idle(2);
        let f = flow(7);
        let owner = s
            .pick(&mut s.new_state(), &d, &load, &f, 0)
            .expect("server");
        load[owner].overloaded = true;
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &f, 0), None);
    }
}
