//! The least-connection family without a scan: a per-worker tournament tree
//! for lc, wlc, sed, nq, fo and ovf that picks in O(1) and follows a load
//! change in O(log n).
//!
//! # What it owns and its rules
//!
//! * [`LeastTree`]: a complete binary tree over the `n` real servers (padded
//!   to a power of two). Leaf `i` holds `i` when server `i` may take a new
//!   connection (IPVS eligibility: available, `weight > 0`, OVERLOAD clear;
//!   ovf adds `active ≤ weight`) and [`NONE`] otherwise; every inner node
//!   holds the better of its two children. The root is the pick.
//! * "Better" is exactly the order the IPVS scan applies: the scheduler's
//!   cost (lc `overhead`, wlc `overhead/weight`, sed `(active+1)/weight` by
//!   cross-multiplication; fo/ovf the highest weight; nq "idle first, newest
//!   idle wins", then sed), ties going to the **higher index** — the scan
//!   walks newest (`n-1`) first and only replaces on a strict improvement.
//!   The cross-multiplied compares are exact rational compares, so the order
//!   is total and the tournament's winner is the scan's choice.
//! * The tree caches each server's weight (0 = not eligible: unavailable or
//!   quiesced) from the `dests` of the first pick after
//!   [`LeastTree::invalidate`]; that pick rebuilds the tree in O(n) in the
//!   preallocated nodes. The worker calls [`LeastTree::invalidate`] (through
//!   [`super::Scheduler::refresh_state`]) whenever it adopts a snapshot, and
//!   [`LeastTree::load_changed`] (through [`super::SchedState::load_changed`])
//!   after **every** change of a server's `active`, `inactive` or
//!   `overloaded`. Missing a notification would make picks stale, so debug
//!   builds check every tree pick against the scan.
//! * Nodes are allocated once, in [`LeastTree::new`] (control path); pick,
//!   rebuild and update never allocate, lock or panic.

use super::sed::sed_overhead;
use super::{cross_gt, overhead, DestLoad, DestView};

/// No eligible server in this subtree.
pub const NONE: u32 = u32::MAX;

/// Which cost the tree orders by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeastKind {
    /// Least `overhead`.
    Lc,
    /// Least `overhead / weight`.
    Wlc,
    /// Least `(active + 1) / weight`.
    Sed,
    /// Newest idle server, else sed.
    Nq,
    /// Highest weight.
    Fo,
    /// Highest weight with `active ≤ weight`.
    Ovf,
}

/// A per-worker tournament tree for one service (see the module doc).
#[derive(Debug, Clone)]
pub struct LeastTree {
    kind: LeastKind,
    /// Number of servers the tree currently describes.
    n: usize,
    /// Leaves start at `width` (a power of two ≥ n, ≥ 1).
    width: usize,
    /// `nodes[1]` is the root, `nodes[width + i]` leaf `i`; `2 * width` long.
    nodes: Vec<u32>,
    /// Cached weight of each server, 0 when unavailable or quiesced.
    weight: Vec<u32>,
    /// False until the next pick rebuilds from `dests` and loads.
    valid: bool,
}

impl LeastTree {
    /// A tree for `n` servers, invalid until the first pick. Allocates.
    pub fn new(kind: LeastKind, n: usize) -> Self {
        let width = n.max(1).next_power_of_two();
        Self {
            kind,
            n,
            width,
            nodes: vec![NONE; 2 * width],
            weight: vec![0; n],
            valid: false,
        }
    }

    /// The cost this tree orders by.
    pub fn kind(&self) -> LeastKind {
        self.kind
    }

    /// Number of servers the nodes were allocated for.
    pub fn capacity(&self) -> usize {
        self.n
    }

    /// Whether the tree is built (a pick since the last invalidation).
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// Forget the tree: weights or the server list changed (a new snapshot).
    /// The next pick rebuilds it.
    #[inline]
    pub fn invalidate(&mut self) {
        self.valid = false;
    }

    /// The pick: an index into `dests`, or `None`. Rebuilds first if the
    /// tree was invalidated. `dests`/`load` must have the length the tree was
    /// allocated for (the caller checks).
    #[inline]
    pub fn pick(&mut self, dests: &[DestView], load: &[DestLoad]) -> Option<usize> {
        if !self.valid {
            self.rebuild(dests, load);
        }
        let root = self.nodes[1];
        (root != NONE).then_some(root as usize)
    }

    /// Server `i`'s `active`, `inactive` or `overloaded` changed: replay its
    /// path to the root, O(log n). A no-op while invalid or out of range.
    #[inline]
    pub fn load_changed(&mut self, load: &[DestLoad], i: usize) {
        if !self.valid || i >= self.n || load.len() != self.n {
            return;
        }
        let mut j = self.width + i;
        self.nodes[j] = self.leaf(load, i);
        let me = i as u32;
        while j > 1 {
            j >>= 1;
            let old = self.nodes[j];
            let new = self.winner(load, self.nodes[2 * j], self.nodes[2 * j + 1]);
            // Same winner, and not server `i` whose cost changed: every
            // ancestor's result is unchanged too.
            if new == old && old != me {
                return;
            }
            self.nodes[j] = new;
        }
    }

    /// O(n) rebuild in the preallocated nodes.
    fn rebuild(&mut self, dests: &[DestView], load: &[DestLoad]) {
        let n = self.n.min(dests.len()).min(load.len());
        for (w, d) in self.weight.iter_mut().zip(dests) {
            *w = if d.available { d.weight } else { 0 };
        }
        for i in 0..self.width {
            self.nodes[self.width + i] = if i < n { self.leaf(load, i) } else { NONE };
        }
        for j in (1..self.width).rev() {
            self.nodes[j] = self.winner(load, self.nodes[2 * j], self.nodes[2 * j + 1]);
        }
        self.valid = true;
    }

    /// Leaf value of server `i`: `i` if it may take a new connection.
    #[inline]
    fn leaf(&self, load: &[DestLoad], i: usize) -> u32 {
        let w = self.weight[i];
        let l = &load[i];
        let ok = w > 0 && !l.overloaded && (self.kind != LeastKind::Ovf || l.active <= w);
        if ok {
            i as u32
        } else {
            NONE
        }
    }

    /// The better of two candidates (either may be [`NONE`]).
    #[inline]
    fn winner(&self, load: &[DestLoad], a: u32, b: u32) -> u32 {
        if a == NONE {
            return b;
        }
        if b == NONE {
            return a;
        }
        // Ties go to the higher index (newest in IPVS list order).
        let (hi, lo) = if a > b { (a, b) } else { (b, a) };
        if self.beats(load, lo as usize, hi as usize) {
            lo
        } else {
            hi
        }
    }

    /// Whether `x` is strictly better than `y` (both eligible).
    #[inline]
    fn beats(&self, load: &[DestLoad], x: usize, y: usize) -> bool {
        let (lx, ly) = (&load[x], &load[y]);
        let (wx, wy) = (self.weight[x], self.weight[y]);
        match self.kind {
            LeastKind::Lc => overhead(lx) < overhead(ly),
            // x beats y when oy/wy > ox/wx.
            LeastKind::Wlc => cross_gt(overhead(ly), wx, overhead(lx), wy),
            LeastKind::Sed => cross_gt(sed_overhead(ly), wx, sed_overhead(lx), wy),
            LeastKind::Nq => match (lx.active == 0, ly.active == 0) {
                (true, false) => true,
                (false, true) | (true, true) => false,
                (false, false) => cross_gt(sed_overhead(ly), wx, sed_overhead(lx), wy),
            },
            LeastKind::Fo | LeastKind::Ovf => wx > wy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tree_follows_every_load_change_without_rebuilding() {
        let d = dests(&[1, 2, 3]);
        let mut load = idle(3);
        let mut t = LeastTree::new(LeastKind::Wlc, 3);
        assert!(!t.is_valid());
        // All idle: tie → newest.
        assert_eq!(t.pick(&d, &load), Some(2));
        assert!(t.is_valid());
        load[2].bind(ConnKind::Active, &d[2]);
        t.load_changed(&load, 2);
        // 256/3 vs 0/1, 0/2 → newest idle (#1).
        assert_eq!(t.pick(&d, &load), Some(1));
        load[1].overloaded = true;
        load[0].overloaded = true;
        t.load_changed(&load, 1);
        t.load_changed(&load, 0);
        assert_eq!(t.pick(&d, &load), Some(2));
        load[2].overloaded = true;
        t.load_changed(&load, 2);
        assert_eq!(t.pick(&d, &load), None);
    }

    #[test]
    fn weight_and_availability_come_from_dests_after_invalidate() {
        let mut d = dests(&[5, 9, 9, 2]);
        let load = idle(4);
        let mut t = LeastTree::new(LeastKind::Fo, 4);
        assert_eq!(t.pick(&d, &load), Some(2));
        d[2].weight = 0;
        t.invalidate();
        assert_eq!(t.pick(&d, &load), Some(1));
        d[1].available = false;
        t.invalidate();
        assert_eq!(t.pick(&d, &load), Some(0));
    }

    /// One step of a worker's history.
    #[derive(Debug, Clone)]
    enum Op {
        /// A new connection: pick, then bind it (inactive, or active).
        Connect(bool),
        /// Connection state change on server `i % n`.
        Activate(usize),
        Deactivate(usize),
        /// A connection (active or inactive) of server `i % n` goes away.
        Disconnect(usize, bool),
        /// `-e`: new weight / thresholds / availability for server `i % n`
        /// (a new snapshot: rebuild the scheduler, refresh the state).
        Edit(usize, u32, u32, u32, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<bool>().prop_map(Op::Connect),
            2 => any::<usize>().prop_map(Op::Activate),
            1 => any::<usize>().prop_map(Op::Deactivate),
            3 => (any::<usize>(), any::<bool>()).prop_map(|(i, a)| Op::Disconnect(i, a)),
            1 => (any::<usize>(), weight(), 0u32..12, 0u32..8, prop::bool::weighted(0.9))
                .prop_map(|(i, w, u, l, av)| Op::Edit(i, w, u, l, av)),
        ]
    }

    /// Small weights (many ties), zero (quiesced) and large ones.
    fn weight() -> impl Strategy<Value = u32> {
        prop_oneof![4 => 0u32..6, 1 => 0u32..=MAX_WEIGHT]
    }

    /// A starting load: counts that make cost ties and the 256 overhead
    /// boundary likely.
    fn start_load() -> impl Strategy<Value = DestLoad> {
        (0u32..6, prop_oneof![0u32..6, 250u32..262], any::<bool>()).prop_map(|(a, i, o)| DestLoad {
            active: a,
            inactive: i,
            persist: 0,
            overloaded: o,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(384))]

        /// The tree's pick equals IPVS's scan after every step of a random
        /// history of connects, state changes, disconnects and edits, for
        /// all six schedulers, random weights, counts and thresholds.
        #[test]
        fn tree_pick_equals_ipvs_scan_over_random_histories(
            name in prop::sample::select(vec!["lc", "wlc", "sed", "nq", "fo", "ovf"]),
            servers in prop::collection::vec(
                (weight(), 0u32..12, 0u32..8, prop::bool::weighted(0.9), start_load()),
                1..40,
            ),
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let mut d = dests(&servers.iter().map(|s| s.0).collect::<Vec<_>>());
            for (v, s) in d.iter_mut().zip(&servers) {
                v.u_threshold = s.1;
                v.l_threshold = s.2;
                v.available = s.3;
            }
            let n = d.len();
            let mut load: Vec<DestLoad> = servers.iter().map(|s| s.4).collect();
            let mut sched = Scheduler::build(name, &[], &d).expect("builds");
            let kind = least_kind(&sched.algo).expect("least family");
            let mut st = sched.new_state();
            for (step, op) in ops.iter().enumerate() {
                let want = scan(kind, &d, &load);
                let got = sched.pick(&mut st, &d, &load, &flow(step as u32), 0);
                prop_assert_eq!(got, want, "{} step {} {:?}", name, step, op);
                // The pick came from the tree, not from the scan fallback.
                prop_assert!(matches!(&st, SchedState::Least(t) if t.is_valid()));
                match *op {
                    Op::Connect(active) => {
                        if let Some(i) = got {
                            let k = if active { ConnKind::Active } else { ConnKind::Inactive };
                            load[i].bind(k, &d[i]);
                            st.load_changed(&load, i);
                        }
                    }
                    Op::Activate(i) => {
                        load[i % n].activate();
                        st.load_changed(&load, i % n);
                    }
                    Op::Deactivate(i) => {
                        load[i % n].deactivate();
                        st.load_changed(&load, i % n);
                    }
                    Op::Disconnect(i, active) => {
                        let k = if active { ConnKind::Active } else { ConnKind::Inactive };
                        load[i % n].unbind(k, &d[i % n]);
                        st.load_changed(&load, i % n);
                    }
                    Op::Edit(i, w, u, l, av) => {
                        let old = d[i % n];
                        let v = &mut d[i % n];
                        v.weight = w;
                        v.last_weight = if w > 0 { w } else { old.last_weight };
                        v.u_threshold = u;
                        v.l_threshold = l;
                        v.available = av;
                        load[i % n].on_edit(&old, &d[i % n]);
                        sched = Scheduler::build(name, &[], &d).expect("builds");
                        sched.refresh_state(&mut st);
                    }
                }
            }
            let want = scan(kind, &d, &load);
            prop_assert_eq!(sched.pick(&mut st, &d, &load, &flow(0), 0), want);
        }
    }
}
