//! Per-core connection counters of one real server and IPVS's upper/lower
//! connection thresholds (`ipvsadm -x/-y`, reference §1.1 "Thresholds").
//!
//! A [`DestLoad`] is owned by one worker and counts only that worker's
//! connections (see the module doc of `sched` for what a per-core view means).
//! The worker updates it when it binds a new connection to a server, when a
//! connection changes between active and inactive, and when it unbinds
//! (expires) one; the OVERLOAD flag follows IPVS exactly:
//!
//! * bind: set when `u != 0 && active + inactive >= u`;
//! * unbind: clear when `l != 0 && conns < l`, or `l == 0 && u != 0 &&
//!   conns*4 < u*3`, or both thresholds are 0;
//! * editing the server: clear when the new `u` is 0 or greater than the old
//!   one (`__ip_vs_update_dest`).
//!
//! Templates (persistence) count in `persist`, never in `active + inactive`,
//! but binding/unbinding one still re-evaluates the flag, as in IPVS.
//! No allocation, no locking; all arithmetic saturates instead of wrapping.

use super::DestView;

/// What kind of connection is bound to / unbound from a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    /// An active connection (TCP ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK;
    /// SCTP ESTABLISHED; synced active connections).
    Active,
    /// An inactive connection (every new connection starts here; UDP stays).
    Inactive,
    /// A persistence template (`persistconns`).
    Template,
}

/// One worker's view of one real server's load: its own connection counts and
/// its own OVERLOAD flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestLoad {
    /// Active connections owned by this worker.
    pub active: u32,
    /// Inactive connections owned by this worker.
    pub inactive: u32,
    /// Persistence templates owned by this worker.
    pub persist: u32,
    /// `IP_VS_DEST_F_OVERLOAD` as this worker sees it (upper threshold hit).
    pub overloaded: bool,
}

impl DestLoad {
    /// `active + inactive` (`ip_vs_dest_totalconns`).
    #[inline]
    pub fn total(&self) -> u64 {
        u64::from(self.active) + u64::from(self.inactive)
    }

    /// Applies the bind rule after the counters were incremented:
    /// set OVERLOAD when `u != 0 && active + inactive >= u`.
    #[inline]
    pub fn on_bind(&mut self, dest: &DestView) {
        if dest.u_threshold != 0 && self.total() >= u64::from(dest.u_threshold) {
            self.overloaded = true;
        }
    }

    /// Applies the unbind rule after the counters were decremented.
    #[inline]
    pub fn on_unbind(&mut self, dest: &DestView) {
        let conns = self.total();
        let (l, u) = (u64::from(dest.l_threshold), u64::from(dest.u_threshold));
        if l != 0 {
            if conns < l {
                self.overloaded = false;
            }
        } else if u != 0 {
            if conns * 4 < u * 3 {
                self.overloaded = false;
            }
        } else {
            self.overloaded = false;
        }
    }

    /// Applies the edit rule when the control plane changes a server's
    /// thresholds: clear OVERLOAD when the new upper threshold is 0 or greater
    /// than the old one. Call it for every worker's `DestLoad` of that server
    /// when the new snapshot is adopted.
    #[inline]
    pub fn on_edit(&mut self, old: &DestView, new: &DestView) {
        if new.u_threshold == 0 || new.u_threshold > old.u_threshold {
            self.overloaded = false;
        }
    }

    /// Counts a new connection (or template) of `kind` bound to `dest`, then
    /// applies the bind rule.
    #[inline]
    pub fn bind(&mut self, kind: ConnKind, dest: &DestView) {
        match kind {
            ConnKind::Active => self.active = self.active.saturating_add(1),
            ConnKind::Inactive => self.inactive = self.inactive.saturating_add(1),
            ConnKind::Template => self.persist = self.persist.saturating_add(1),
        }
        self.on_bind(dest);
    }

    /// Uncounts a connection (or template) of `kind` leaving `dest`, then
    /// applies the unbind rule.
    #[inline]
    pub fn unbind(&mut self, kind: ConnKind, dest: &DestView) {
        match kind {
            ConnKind::Active => self.active = self.active.saturating_sub(1),
            ConnKind::Inactive => self.inactive = self.inactive.saturating_sub(1),
            ConnKind::Template => self.persist = self.persist.saturating_sub(1),
        }
        self.on_unbind(dest);
    }

    /// An inactive connection became active (e.g. TCP reached ESTABLISHED).
    /// The total is unchanged, so the flag is not re-evaluated (as in IPVS).
    #[inline]
    pub fn activate(&mut self) {
        if self.inactive > 0 {
            self.inactive -= 1;
            self.active = self.active.saturating_add(1);
        }
    }

    /// An active connection became inactive (e.g. TCP FIN_WAIT).
    #[inline]
    pub fn deactivate(&mut self) {
        if self.active > 0 {
            self.active -= 1;
            self.inactive = self.inactive.saturating_add(1);
        }
    }
}

/// The per-worker share of an operator's threshold: `⌈threshold / workers⌉`
/// (0 stays 0 = "no threshold"). Thresholds are checked against per-core
/// counters, so a control plane that wants `-x 1000` to mean "1000
/// connections on the whole director" ships `per_core_threshold(1000, K)` in
/// the snapshot's `DestView`s; shipping the raw value instead means "1000 per
/// worker". Which one rvs does is the control plane's documented choice.
pub fn per_core_threshold(threshold: u32, workers: u32) -> u32 {
    if threshold == 0 || workers <= 1 {
        threshold
    } else {
        threshold.div_ceil(workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(u: u32, l: u32) -> DestView {
        DestView {
            weight: 1,
            u_threshold: u,
            l_threshold: l,
            ..DestView::default()
        }
    }

    #[test]
    fn thresholds_set_and_clear_overload() {
        // u = 4, l = 2: set at 4 conns, clear only below 2.
        let d = dest(4, 2);
        let mut load = DestLoad::default();
        for _ in 0..3 {
            load.bind(ConnKind::Inactive, &d);
        }
        assert!(!load.overloaded, "3 < u");
        load.bind(ConnKind::Active, &d);
        assert!(load.overloaded, "active + inactive = 4 >= u");
        load.unbind(ConnKind::Inactive, &d);
        load.unbind(ConnKind::Inactive, &d);
        assert!(load.overloaded, "2 conns is not < l = 2");
        load.unbind(ConnKind::Inactive, &d);
        assert!(!load.overloaded, "1 < l");

        // l = 0, u = 8: clear when conns*4 < u*3, i.e. below 6.
        let d = dest(8, 0);
        let mut load = DestLoad::default();
        for _ in 0..8 {
            load.bind(ConnKind::Active, &d);
        }
        assert!(load.overloaded);
        load.unbind(ConnKind::Active, &d);
        load.unbind(ConnKind::Active, &d);
        assert!(load.overloaded, "6*4 = 24 is not < 24");
        load.unbind(ConnKind::Active, &d);
        assert!(!load.overloaded, "5*4 = 20 < 24");

        // Both 0: any unbind clears a stale flag.
        let d0 = dest(0, 0);
        let mut load = DestLoad {
            active: 5,
            overloaded: true,
            ..DestLoad::default()
        };
        load.unbind(ConnKind::Active, &d0);
        assert!(!load.overloaded);

        // u = 0 never sets.
        let mut load = DestLoad::default();
        for _ in 0..100 {
            load.bind(ConnKind::Active, &d0);
        }
        assert!(!load.overloaded);
    }

    #[test]
    fn templates_do_not_count_toward_thresholds() {
        let d = dest(2, 0);
        let mut load = DestLoad::default();
        for _ in 0..10 {
            load.bind(ConnKind::Template, &d);
        }
        assert_eq!(load.persist, 10);
        assert!(!load.overloaded);
        load.bind(ConnKind::Inactive, &d);
        load.bind(ConnKind::Inactive, &d);
        assert!(load.overloaded);
    }

    #[test]
    fn editing_upper_threshold_to_zero_or_higher_clears_overload() {
        let old = dest(4, 0);
        let overloaded = DestLoad {
            active: 10,
            overloaded: true,
            ..DestLoad::default()
        };
        let mut l = overloaded;
        l.on_edit(&old, &dest(4, 0));
        assert!(l.overloaded, "same u keeps the flag");
        let mut l = overloaded;
        l.on_edit(&old, &dest(3, 0));
        assert!(l.overloaded, "lower u keeps the flag");
        let mut l = overloaded;
        l.on_edit(&old, &dest(5, 0));
        assert!(!l.overloaded, "higher u clears");
        let mut l = overloaded;
        l.on_edit(&old, &dest(0, 0));
        assert!(!l.overloaded, "u = 0 clears");
    }

    #[test]
    fn activate_moves_between_counters_without_changing_total() {
        let mut load = DestLoad::default();
        load.bind(ConnKind::Inactive, &dest(0, 0));
        load.activate();
        assert_eq!((load.active, load.inactive), (1, 0));
        load.deactivate();
        assert_eq!((load.active, load.inactive), (0, 1));
        load.deactivate();
        assert_eq!((load.active, load.inactive), (0, 1), "no underflow");
    }

    #[test]
    fn per_core_threshold_rounds_up() {
        assert_eq!(per_core_threshold(0, 4), 0);
        assert_eq!(per_core_threshold(10, 1), 10);
        assert_eq!(per_core_threshold(10, 4), 3);
        assert_eq!(per_core_threshold(1, 8), 1);
    }
}
