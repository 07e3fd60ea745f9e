//! IPVS's defense strategies `drop_entry` and `drop_packet`
//! (`ip_vs_ctl.c` `update_defense_level`, `ip_vs_todrop`,
//! `ip_vs_random_dropentry`), per worker, with "memory low" meaning this
//! worker's connection table is fuller than `settings.defense_percent`.
//!
//! Modes as IPVS's sysctls: 0 off; 1 auto (acts only while memory is low);
//! 2 on (IPVS moves 2 → 1 at the first check that finds memory fine, and
//! acts only while it is low, so 1 and 2 act alike); 3 always.
//!
//! * `drop_packet`: while active, one new-connection packet in `rate` is
//!   dropped (counted `drop_packet`), with IPVS's
//!   `rate = amemthresh / (amemthresh - availmem)` in free table slots
//!   (mode 3: `am_droprate`): the fuller the table, the more is dropped, up
//!   to every new flow at a full table.
//! * `drop_entry`: while active, once a second 1/32 of the table's slots,
//!   picked at random, are visited; half-open TCP entries (SYN_RECV,
//!   SYNACK) are dropped, ESTABLISHED TCP and every UDP entry only when idle
//!   for 60 s (IPVS's `todrop_entry`), templates never. Each drop is
//!   counted `drop_entry`. rvs keeps no per-connection packet count, so
//!   IPVS's further filter (spare entries with more than 8 incoming
//!   packets, thin out the others by their count) is not applied.
//!
//! Rules: the level is recomputed once a second from the table's length
//! (no allocation, no lock, no system call); the per-packet check is a
//! counter decrement.

use super::Worker;
use crate::conntrack::{ConnId, TcpState, Tick, TICKS_PER_SEC};
use crate::dataplane::counters::DropReason;
use crate::dataplane::driver::PortQueue;
use crate::dataplane::snapshot::Settings;
use crate::wire::ip_proto;

/// Idle time after which `drop_entry` may take an established entry.
const IDLE_TICKS: Tick = 60 * TICKS_PER_SEC as Tick;

/// The defense state of one worker.
#[derive(Debug, Clone)]
pub(super) struct Defense {
    /// When the level is recomputed next (worker clock, ns).
    next_check_ns: u64,
    /// One new-connection packet in `drop_rate` is dropped (0: none).
    drop_rate: u32,
    /// Packets left before the next drop.
    drop_counter: u32,
    /// `drop_entry` acts now.
    drop_entry: bool,
    /// xorshift state for the random slots.
    rng: u64,
}

impl Defense {
    /// Off until the first check.
    pub(super) fn new(seed: u64) -> Defense {
        Defense {
            next_check_ns: 0,
            drop_rate: 0,
            drop_counter: 0,
            drop_entry: false,
            rng: seed | 1,
        }
    }

    /// IPVS's `update_defense_level` for a table holding `len` of `cap`.
    pub(super) fn update(&mut self, s: &Settings, len: u32, cap: u32) {
        let cap = u64::from(cap);
        let avail = cap.saturating_sub(u64::from(len));
        let pct = u64::from(s.defense_percent.min(100));
        let amemthresh = cap * (100 - pct) / 100;
        let nomem = avail < amemthresh;
        let low_rate = if nomem {
            (amemthresh / (amemthresh - avail)).min(u64::from(u32::MAX)) as u32
        } else {
            0
        };
        let (rate, reset) = match s.drop_packet {
            1 | 2 => (low_rate, true),
            3 => (s.am_droprate, false),
            _ => (0, true),
        };
        if reset || self.drop_rate != rate {
            self.drop_counter = rate;
        }
        self.drop_rate = rate;
        self.drop_entry = match s.drop_entry {
            1 | 2 => nomem,
            3 => true,
            _ => false,
        };
    }

    /// IPVS's `ip_vs_todrop`: whether this new-connection packet is dropped.
    #[inline]
    pub(super) fn todrop(&mut self) -> bool {
        if self.drop_rate == 0 {
            return false;
        }
        if self.drop_counter > 1 {
            self.drop_counter -= 1;
            return false;
        }
        self.drop_counter = self.drop_rate;
        true
    }

    /// The current rate (one in N new-connection packets; 0 = none).
    #[cfg(test)]
    pub(super) fn drop_rate(&self) -> u32 {
        self.drop_rate
    }

    /// Whether `drop_entry` acts now.
    pub(super) fn drop_entry_on(&self) -> bool {
        self.drop_entry
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

impl<Q: PortQueue> Worker<Q> {
    /// Once a second: recompute the defense level, then (while `drop_entry`
    /// acts) drop entries as IPVS's defense timer does.
    pub(super) fn defense_tick(&mut self) {
        if self.now_ns < self.defense.next_check_ns {
            return;
        }
        self.defense.next_check_ns = self.now_ns + 1_000_000_000;
        self.defense_update();
        if self.defense.drop_entry_on() {
            self.drop_entries(self.tick);
        }
    }

    /// Recompute the level from the table's occupancy now.
    pub(super) fn defense_update(&mut self) {
        let (len, cap) = (self.conns.len(), self.conns.capacity());
        self.defense.update(&self.snap.settings, len, cap);
    }

    /// IPVS's `ip_vs_random_dropentry` at time `now`: visit 1/32 of the
    /// slots at random; returns how many entries were dropped.
    pub(super) fn drop_entries(&mut self, now: Tick) -> u32 {
        let cap = self.conns.capacity();
        if cap == 0 {
            return 0;
        }
        let mut dropped = 0;
        for _ in 0..(cap >> 5).max(1) {
            let id = ConnId((self.defense.next_random() % u64::from(cap)) as u32);
            let Some(c) = self.conns.try_get(id) else {
                continue;
            };
            if c.is_template() || c.n_control() > 0 {
                continue;
            }
            let idle = now.wrapping_sub(c.expires_at().wrapping_sub(c.timeout_ticks()));
            // A wrapped difference (refreshed "in the future") is not idle.
            let idle_long = (IDLE_TICKS..Tick::MAX / 2).contains(&idle);
            let drop = if c.proto() == ip_proto::TCP {
                match c.state() {
                    TcpState::SynRecv | TcpState::SynAck => true,
                    TcpState::Established => idle_long,
                    _ => false,
                }
            } else {
                idle_long
            };
            if drop {
                self.remove_conn(id);
                self.counters.count_drop(DropReason::DropEntry);
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(drop_entry: u8, drop_packet: u8) -> Settings {
        Settings {
            drop_entry,
            drop_packet,
            defense_percent: 90,
            am_droprate: 10,
            ..Settings::default()
        }
    }

    /// Drops among the next `n` new-connection packets.
    fn drops(d: &mut Defense, n: u32) -> u32 {
        (0..n).filter(|_| d.todrop()).count() as u32
    }

    #[test]
    fn drop_packet_off_never_drops_even_at_a_full_table() {
        let mut d = Defense::new(1);
        d.update(&settings(0, 0), 1000, 1000);
        assert_eq!(drops(&mut d, 1000), 0);
        assert!(!d.drop_entry_on());
    }

    #[test]
    fn drop_packet_auto_acts_only_above_the_threshold_with_ipvs_rate() {
        let mut d = Defense::new(1);
        let s = settings(0, 1);
        // 1000 slots, 90 %: memory is low below 100 free slots.
        d.update(&s, 900, 1000);
        assert_eq!(d.drop_rate(), 0, "at the threshold: not low");
        assert_eq!(drops(&mut d, 1000), 0);
        // 50 free: rate = 100 / (100 - 50) = 2 → one in two.
        d.update(&s, 950, 1000);
        assert_eq!(d.drop_rate(), 2);
        assert_eq!(drops(&mut d, 1000), 500);
        // 80 free: rate 100 / 20 = 5.
        d.update(&s, 920, 1000);
        assert_eq!(drops(&mut d, 1000), 200);
        // Full: every new flow.
        d.update(&s, 1000, 1000);
        assert_eq!(drops(&mut d, 1000), 1000);
        // Below the threshold again: off.
        d.update(&s, 100, 1000);
        assert_eq!(drops(&mut d, 1000), 0);
    }

    #[test]
    fn drop_packet_on_acts_like_auto_and_always_uses_am_droprate() {
        let mut on = Defense::new(1);
        on.update(&settings(0, 2), 10, 1000);
        assert_eq!(drops(&mut on, 100), 0, "mode 2 with memory fine: as 1");
        on.update(&settings(0, 2), 950, 1000);
        assert_eq!(drops(&mut on, 100), 50);
        let mut always = Defense::new(1);
        always.update(&settings(0, 3), 0, 1000);
        assert_eq!(drops(&mut always, 1000), 100, "am_droprate 10: one in ten");
        // A later check at the same rate keeps the counter running.
        always.update(&settings(0, 3), 0, 1000);
        assert_eq!(drops(&mut always, 1000), 100);
    }

    #[test]
    fn drop_entry_modes_follow_ipvs() {
        let mut d = Defense::new(1);
        for (mode, low, want) in [
            (0, true, false),
            (1, false, false),
            (1, true, true),
            (2, false, false),
            (2, true, true),
            (3, false, true),
        ] {
            let len = if low { 950 } else { 10 };
            d.update(&settings(mode, 0), len, 1000);
            assert_eq!(d.drop_entry_on(), want, "mode {mode}, low {low}");
        }
    }
}
