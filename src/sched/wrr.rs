//! wrr — weighted round robin (`ip_vs_wrr.c`), IPVS's interleaved variant.
//!
//! IPVS keeps `di = gcd(positive weights)`, `mw = max_weight − (di − 1)` and
//! a current weight `cw` starting at `mw`. A pick takes the next server in
//! list order (newest first) with `weight ≥ cw` that is not overloaded; at
//! the end of the list `cw −= di` and the scan restarts at the head; when
//! `cw ≤ 0` it becomes `mw` again. A4/B3/C2 (A newest) give
//! `A A B A B C A B C`.
//!
//! IPVS scans the list linearly, which costs O(n) per pick when few servers
//! reach `cw` (one heavy server among many light ones). rvs's control plane
//! instead builds a [`WrrTable`]: `di`, `mw` and a max-weight segment tree
//! over list positions, so "next position ≥ p with weight ≥ cw" is O(log n).
//! Overloaded servers (a per-core, dynamic flag) are skipped by continuing
//! the search after them, which yields exactly IPVS's sequence. When no
//! server is eligible the pick returns `None` after at most `n` skipped
//! candidates plus one O(n) check.
//!
//! Per-worker state ([`WrrState`]) is IPVS's mark: `cw` and the last
//! position. When a new table is adopted (servers added, removed or
//! re-weighted) the state applies IPVS's `ip_vs_wrr_dest_changed`: position
//! back to the head, `cw = mw` if `cw > mw` or `cw == 0`, else
//! `cw = (cw / di) * di + 1` when `di > 1`.

use super::{DestLoad, DestView};

/// The immutable wrr inputs, built by the control plane.
#[derive(Debug)]
pub struct WrrTable {
    build_id: u64,
    di: u32,
    mw: u32,
    n: usize,
    /// Leaves start at `size`; leaf `size + p` is the weight at list
    /// position `p` (index `n − 1 − p`); inner nodes hold the max.
    size: usize,
    tree: Box<[u32]>,
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl WrrTable {
    /// Builds the table for `dests` (insertion order). `build_id` tells
    /// worker states that the servers changed.
    pub(crate) fn build(dests: &[DestView], build_id: u64) -> Self {
        let n = dests.len();
        let g = dests
            .iter()
            .map(|d| d.weight)
            .filter(|&w| w > 0)
            .fold(0, gcd);
        let di = if g == 0 { 1 } else { g };
        let max_w = dests.iter().map(|d| d.weight).max().unwrap_or(0);
        let mw = max_w.saturating_sub(di - 1);
        let size = n.max(1).next_power_of_two();
        let mut tree = vec![0u32; 2 * size].into_boxed_slice();
        for (p, idx) in (0..n).rev().enumerate() {
            tree[size + p] = dests[idx].weight;
        }
        for node in (1..size).rev() {
            tree[node] = tree[2 * node].max(tree[2 * node + 1]);
        }
        Self {
            build_id,
            di,
            mw,
            n,
            size,
            tree,
        }
    }

    /// `gcd` of the positive weights (1 when there are none).
    pub fn di(&self) -> u32 {
        self.di
    }

    /// `max_weight − (di − 1)`; 0 when every weight is 0.
    pub fn mw(&self) -> u32 {
        self.mw
    }

    /// First list position `≥ from` whose weight is `≥ min` (`min ≥ 1`).
    #[inline]
    fn find_first(&self, from: usize, min: u32) -> Option<usize> {
        if from >= self.n {
            return None;
        }
        let mut node = self.size + from;
        // Climb until a subtree at or right of `from` holds a weight >= min.
        while self.tree[node] < min {
            while node & 1 == 1 {
                node >>= 1;
            }
            if node == 0 {
                return None;
            }
            node += 1;
        }
        // Descend to the leftmost qualifying leaf.
        while node < self.size {
            node *= 2;
            if self.tree[node] < min {
                node += 1;
            }
        }
        let p = node - self.size;
        (p < self.n).then_some(p)
    }

    #[inline]
    fn leaf_weight(&self, p: usize) -> u32 {
        self.tree[self.size + p]
    }

    /// Weighted round-robin pick.
    pub(crate) fn pick(
        &self,
        st: &mut WrrState,
        dests: &[DestView],
        load: &[DestLoad],
    ) -> Option<usize> {
        if st.build_id != self.build_id {
            st.rebind(self);
        }
        if self.mw == 0 || dests.len() != self.n {
            return None;
        }
        let n = self.n;
        let usable = |p: usize| {
            let idx = n - 1 - p;
            dests[idx].available && !load[idx].overloaded
        };
        let mut cw = if st.cw == 0 || st.cw > self.mw {
            self.mw
        } else {
            st.cw
        };
        let mut pos = st.last.map_or(0, |p| p as usize + 1);
        let mut skipped = 0usize;
        let mut checked = false;
        // Hard bound: every pass once more than there are passes, every server.
        let mut budget = (self.mw / self.di + 2) as usize * (n + 1);
        while budget > 0 {
            budget -= 1;
            match self.find_first(pos, cw) {
                Some(p) => {
                    if usable(p) {
                        st.cw = cw;
                        st.last = Some(p as u32);
                        return Some(n - 1 - p);
                    }
                    skipped += 1;
                    if skipped >= n && !checked {
                        checked = true;
                        if !(0..n).any(|q| self.leaf_weight(q) > 0 && usable(q)) {
                            st.cw = cw;
                            st.last = Some(p as u32);
                            return None;
                        }
                    }
                    pos = p + 1;
                }
                None => {
                    cw = if cw > self.di { cw - self.di } else { self.mw };
                    pos = 0;
                }
            }
        }
        None
    }
}

/// Per-worker wrr mark: current weight and last list position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrrState {
    build_id: u64,
    cw: u32,
    /// Last picked list position; `None` = at the list head.
    last: Option<u32>,
}

impl WrrState {
    /// A fresh mark for `table`: `cw = mw`, at the head.
    pub fn new(table: &WrrTable) -> Self {
        Self {
            build_id: table.build_id,
            cw: table.mw,
            last: None,
        }
    }

    /// Applies IPVS's `dest_changed` rule when `table` is a new build.
    pub fn rebind(&mut self, table: &WrrTable) {
        if self.build_id == table.build_id {
            return;
        }
        self.build_id = table.build_id;
        self.last = None;
        if self.cw > table.mw || self.cw == 0 {
            self.cw = table.mw;
        } else if table.di > 1 {
            self.cw = (self.cw / table.di) * table.di + 1;
        }
    }

    /// The current weight `cw`.
    pub fn cw(&self) -> u32 {
        self.cw
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use proptest::prelude::*;

    #[test]
    fn wrr_interleaves_by_weight() {
        // Inserted C(2), B(3), A(4): list order A, B, C.
        let d = dests(&[2, 3, 4]);
        let s = Scheduler::build("wrr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let load = idle(3);
        let name = |i: usize| ["C", "B", "A"][i];
        let seq: String = (0..18)
            .map(|i| name(s.pick(&mut st, &d, &load, &flow(i), 0).expect("server")))
            .collect();
        assert_eq!(seq, "AABABCABCAABABCABC");
    }

    #[test]
    fn wrr_uses_gcd_steps() {
        // Weights 20/30/40 behave like 2/3/4.
        let d = dests(&[20, 30, 40]);
        let s = Scheduler::build("wrr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let load = idle(3);
        let seq: Vec<usize> = (0..9)
            .map(|i| s.pick(&mut st, &d, &load, &flow(i), 0).expect("server"))
            .collect();
        assert_eq!(seq, vec![2, 2, 1, 2, 1, 0, 2, 1, 0]);
    }

    #[test]
    fn wrr_heavy_server_among_many_light_ones_is_proportional() {
        let mut w = vec![1u32; 999];
        w.push(1000);
        let d = dests(&w);
        let s = Scheduler::build("wrr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let load = idle(d.len());
        let mut heavy = 0;
        for i in 0..1999 {
            if s.pick(&mut st, &d, &load, &flow(i), 0) == Some(999) {
                heavy += 1;
            }
        }
        assert_eq!(heavy, 1000, "one full cycle is 1000 heavy + 999 light");
    }

    #[test]
    fn wrr_state_follows_dest_changed_rule() {
        let d = dests(&[4, 6]); // di 2, mw 6 - 1 = 5
        let s = Scheduler::build("wrr", &[], &d).expect("builds");
        let mut st = s.new_state();
        let load = idle(2);
        s.pick(&mut st, &d, &load, &flow(0), 0);
        s.pick(&mut st, &d, &load, &flow(0), 0);
        let SchedState::Wrr(w) = &st else {
            panic!("wrr state")
        };
        assert_eq!(w.cw(), 3, "second pass: cw = 5 - 2");
        // Re-weight to 6/9 (di 3, mw 9 - 2 = 7): cw = (3/3)*3 + 1 = 4.
        let d2 = dests(&[6, 9]);
        let s2 = Scheduler::build("wrr", &[], &d2).expect("builds");
        s2.refresh_state(&mut st);
        let SchedState::Wrr(w) = &st else {
            panic!("wrr state")
        };
        assert_eq!(w.cw(), 4);
    }

    /// Direct transliteration of `ip_vs_wrr_schedule` over list positions.
    struct IpvsWrr {
        cl: Option<usize>,
        cw: i64,
        mw: i64,
        di: i64,
    }

    impl IpvsWrr {
        fn new(w: &[u32]) -> Self {
            let g = w.iter().copied().filter(|&x| x > 0).fold(0, super::gcd);
            let di = if g == 0 { 1 } else { i64::from(g) };
            let mw = i64::from(w.iter().copied().max().unwrap_or(0)) - (di - 1);
            Self {
                cl: None,
                cw: mw,
                mw,
                di,
            }
        }

        fn schedule(&mut self, w: &[u32], over: &[bool]) -> Option<usize> {
            let n = w.len();
            let mut dest = self.cl;
            if self.mw == 0 {
                return None;
            }
            let last = dest;
            let mut stop: Option<usize> = None;
            let (mut last_pass, mut restarted) = (false, false);
            loop {
                let start = dest.map_or(0, |p| p + 1);
                for p in start..n {
                    dest = Some(p);
                    if !over[p] && i64::from(w[p]) >= self.cw {
                        self.cl = Some(p);
                        return Some(p);
                    }
                    if stop == Some(p) {
                        self.cl = dest;
                        return None;
                    }
                }
                dest = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                    if last_pass || last.is_none() {
                        self.cl = dest;
                        return None;
                    }
                    restarted = true;
                }
                last_pass = self.cw <= self.di;
                if last_pass && restarted && last.is_some() {
                    stop = last;
                }
            }
        }
    }

    proptest! {
        #[test]
        fn wrr_matches_ipvs_reference(
            weights in proptest::collection::vec(0u32..7, 1..9),
            over_bits in any::<u16>(),
            steps in 1usize..120,
        ) {
            let n = weights.len();
            // List order = reverse insertion order.
            let d = dests(&weights);
            let list_w: Vec<u32> = (0..n).rev().map(|i| weights[i]).collect();
            let over_list: Vec<bool> = (0..n).map(|p| over_bits & (1 << p) != 0).collect();
            let mut load = idle(n);
            for p in 0..n {
                load[n - 1 - p].overloaded = over_list[p];
            }
            let s = Scheduler::build("wrr", &[], &d).expect("builds");
            let mut st = s.new_state();
            let mut reference = IpvsWrr::new(&list_w);
            for step in 0..steps {
                let want = reference.schedule(&list_w, &over_list).map(|p| n - 1 - p);
                let got = s.pick(&mut st, &d, &load, &flow(step as u32), 0);
                prop_assert_eq!(got, want, "step {}", step);
                if want.is_none() {
                    break;
                }
            }
        }
    }
}
