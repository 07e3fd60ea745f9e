//! sh — source hashing (`ip_vs_sh.c`, current Linux): 256 buckets; walking
//! the servers in list order (newest first), each fills `weight` consecutive
//! buckets (a weight-0 server still fills one, as in IPVS), round-robin until
//! the table is full. The key is the client address (the caller puts the
//! client in `FlowKey::saddr`), plus the client port with **`sh-port`**:
//! bucket `= (offset + hash_32(port + fold(addr), 8)) & 255`.
//!
//! The bucket's server is returned when it is available, weight > 0 and not
//! overloaded; otherwise `None`, unless **`sh-fallback`**: then the probe
//! continues with `roffset = (offset + ihash) % 256` for offset 0..256,
//! rehashing each time, until an available server (at most 256 probes).
//! Table built by the control plane; pick O(1) (fallback ≤ 256 probes),
//! stateless.

use super::hash::{fold_addr, hash_32};
use super::{is_eligible, list_order, DestLoad, DestView, FlowKey, SchedFlags, EMPTY_SLOT};

/// sh bucket bits (`CONFIG_IP_VS_SH_TAB_BITS`).
pub const TAB_BITS: u32 = 8;
/// sh bucket count.
pub const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: u32 = TAB_SIZE as u32 - 1;

/// The 256 sh buckets.
#[derive(Debug)]
pub struct ShTable {
    buckets: Box<[u32]>,
}

#[inline]
fn hashkey(fold: u32, port: u16, offset: u32) -> usize {
    (offset.wrapping_add(hash_32(u32::from(port).wrapping_add(fold), TAB_BITS)) & TAB_MASK) as usize
}

impl ShTable {
    pub(crate) fn build(dests: &[DestView]) -> Self {
        let mut buckets = vec![EMPTY_SLOT; TAB_SIZE].into_boxed_slice();
        let order: Vec<usize> = list_order(dests.len()).collect();
        if !order.is_empty() {
            let (mut p, mut count) = (0usize, 0u32);
            for bucket in buckets.iter_mut() {
                let idx = order[p];
                *bucket = idx as u32;
                count += 1;
                if count >= dests[idx].weight {
                    p = (p + 1) % order.len();
                    count = 0;
                }
            }
        }
        Self { buckets }
    }

    /// The buckets (indices into `dests`).
    pub fn buckets(&self) -> &[u32] {
        &self.buckets
    }

    /// Source-hashing pick.
    #[inline]
    pub(crate) fn pick(
        &self,
        dests: &[DestView],
        load: &[DestLoad],
        flow: &FlowKey,
        flags: SchedFlags,
    ) -> Option<usize> {
        let fold = fold_addr(&flow.saddr, flow.v6);
        let port = if flags.port() { flow.sport } else { 0 };
        let usable = |slot: u32| -> Option<Option<usize>> {
            // None = empty bucket; Some(None) = unavailable; Some(Some(i)) = ok.
            if slot == EMPTY_SLOT {
                return None;
            }
            let i = slot as usize;
            Some(match (dests.get(i), load.get(i)) {
                (Some(d), Some(l)) if is_eligible(d, l) => Some(i),
                _ => None,
            })
        };
        let ihash = hashkey(fold, port, 0);
        match usable(self.buckets[ihash])? {
            Some(i) => return Some(i),
            None if !flags.fallback() => return None,
            None => {}
        }
        for offset in 0..TAB_SIZE as u32 {
            let roffset = (offset + ihash as u32) % TAB_SIZE as u32;
            let hash = hashkey(fold, port, roffset);
            if let Some(i) = usable(self.buckets[hash])? {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    #[test]
    fn sh_same_source_same_server() {
        let d = dests(&[1, 2, 3, 1]);
        let s = Scheduler::build("sh", &[], &d).expect("builds");
        let load = idle(4);
        let mut counts = [0usize; 4];
        for client in 0..2_000u32 {
            let b = client.to_be_bytes();
            let key =
                |port: u16, vip: u8| FlowKey::v4([100, b[1], b[2], b[3]], port, [10, 1, 0, vip]);
            let first = s
                .pick(&mut s.new_state(), &d, &load, &key(1000, 1), 0)
                .expect("server");
            for port in [1, 5000, 65535] {
                assert_eq!(
                    s.pick(&mut s.new_state(), &d, &load, &key(port, 2), 0),
                    Some(first)
                );
            }
            counts[first] += 1;
        }
        // Weighted buckets: 1:2:3:1 → roughly 2000 * w / 7.
        for (i, w) in [1usize, 2, 3, 1].into_iter().enumerate() {
            let want = 2_000 * w / 7;
            assert!(
                counts[i].abs_diff(want) < want / 3 + 40,
                "server {i}: {counts:?}"
            );
        }
    }

    #[test]
    fn sh_buckets_follow_weights_in_list_order() {
        // Inserted w1, w2, w0: list order #2 (w0 → still 1 bucket), #1 (2), #0 (1).
        let d = dests(&[1, 2, 0]);
        let s = Scheduler::build("sh", &[], &d).expect("builds");
        assert_eq!(&s.table().expect("table")[..8], &[2, 1, 1, 0, 2, 1, 1, 0]);
    }

    #[test]
    fn sh_port_spreads_ports() {
        let d = dests(&[1; 8]);
        let load = idle(8);
        let plain = Scheduler::build("sh", &[], &d).expect("builds");
        let port = Scheduler::build("sh", &["sh-port"], &d).expect("builds");
        let key = |p: u16| FlowKey::v4([198, 51, 100, 7], p, [10, 1, 0, 1]);
        let mut with_port = std::collections::HashSet::new();
        let mut without = std::collections::HashSet::new();
        for p in 1024..1280u16 {
            without.insert(plain.pick(&mut plain.new_state(), &d, &load, &key(p), 0));
            with_port.insert(port.pick(&mut port.new_state(), &d, &load, &key(p), 0));
        }
        assert_eq!(without.len(), 1, "one client, one server");
        assert_eq!(with_port.len(), 8, "ports spread over every server");
    }

    #[test]
    fn sh_fallback_skips_unavailable() {
        let d = dests(&[1, 1, 1, 1]);
        let s = Scheduler::build("sh", &["sh-fallback"], &d).expect("builds");
        let mut load = idle(4);
        load[2].overloaded = true;
        let mut moved = 0;
        for i in 0..1_000 {
            let got = s.pick(&mut s.new_state(), &d, &load, &flow(i), 0);
            assert!(matches!(got, Some(x) if x != 2), "flow {i}: {got:?}");
            let plain = s.pick(&mut s.new_state(), &d, &idle(4), &flow(i), 0);
            if plain == Some(2) {
                moved += 1;
            } else {
                assert_eq!(got, plain, "flows of healthy servers stay");
            }
        }
        assert!(moved > 100, "about a quarter of the flows belonged to #2");
        for l in &mut load {
            l.overloaded = true;
        }
        assert_eq!(s.pick(&mut s.new_state(), &d, &load, &flow(1), 0), None);
    }

    #[test]
    fn sh_without_fallback_returns_none() {
        let d = dests(&[1, 1, 1, 1]);
        let s = Scheduler::build("sh", &[], &d).expect("builds");
        let mut load = idle(4);
        load[2].overloaded = true;
        let mut nones = 0;
        for i in 0..1_000 {
            match s.pick(&mut s.new_state(), &d, &load, &flow(i), 0) {
                None => nones += 1,
                Some(x) => assert_ne!(x, 2),
            }
        }
        assert!(nones > 100, "flows of the overloaded server get no server");
    }
}
