//! health::state — keepalived's checker state machine, pure: results in,
//! transitions and the delay to the next check out. No clock, no I/O: the
//! caller feeds results and sleeps the returned delay, so tests run it in
//! virtual time.
//!
//! keepalived's rules (`check_tcp.c` `tcp_epilog()`, `ipwrapper.c`):
//! * The next check is scheduled after the previous one *finished*
//!   (`delay_loop` from its end: the loop is not fixed-rate).
//! * While up, a failure is retried after `delay_before_retry`; `retry + 1`
//!   failures in a row take the checker down, and the next check comes
//!   `delay_loop` later.
//! * While down there are no retries: a check every `delay_loop`; the first
//!   success brings it up.
//! * At start-up a checker is up (its server is in the pool) until its
//!   first failure, which alone takes it down (keepalived starts with
//!   `retry_it = retry`); with `alpha` it starts down.
//! * The first check comes `1 s + random(0..warmup)` after start.
//! * A server is alive iff all its checkers are up ([`all_up`]).
//! * Quorum ([`Quorum`]): gained when the alive weight sum ≥ quorum +
//!   hysteresis, lost when it is 0 or < quorum − hysteresis.
//!
//! rvs's flap damping (beyond keepalived, off by default): `rise N` — a down
//! checker needs N consecutive successes (each `delay_loop` apart) to come
//! up (keepalived: 1); `fall N` — an up checker goes down after
//! max(N, retry + 1) consecutive failures (keepalived: retry + 1), the
//! failures after the first still `delay_before_retry` apart. The start-up
//! rule (one failure before any check ran) is kept.

use std::time::Duration;

use crate::health::conf::Timing;

/// The first check's delay after start: `1 s + random·warmup`, `random` in
/// `[0, 1)`.
pub fn first_delay(timing: &Timing, random: f64) -> Duration {
    Duration::from_secs(1) + timing.warmup.mul_f64(random.clamp(0.0, 1.0))
}

/// rvs's flap damping (see the module doc); `Damping::default()` is
/// keepalived's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Damping {
    /// Consecutive successes to come up (0 and 1: one).
    pub rise: u32,
    /// Consecutive failures to go down, at least `retry + 1` (0: `retry + 1`).
    pub fall: u32,
}

/// What one result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// `Some(up)` when the checker changed state.
    pub changed: Option<bool>,
    /// Delay from the end of this check to the start of the next.
    pub next: Duration,
}

/// One checker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckState {
    up: bool,
    has_run: bool,
    failures: u32,
    successes: u32,
    flaps: u32,
}

impl CheckState {
    /// At start-up: up (in the pool until the first failure), or down with
    /// `alpha`.
    pub fn new(alpha: bool) -> CheckState {
        CheckState {
            up: !alpha,
            has_run: false,
            failures: 0,
            successes: 0,
            flaps: 0,
        }
    }

    /// Whether the checker is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether the next check is a retry (a failure seen while up).
    pub fn retrying(&self) -> bool {
        self.up && self.failures > 0
    }

    /// Number of state changes so far.
    pub fn flaps(&self) -> u32 {
        self.flaps
    }

    /// Records one check's result; returns the change and the delay to the
    /// next check.
    pub fn record(&mut self, timing: &Timing, damping: Damping, success: bool) -> Step {
        let mut changed = None;
        let next;
        if success {
            self.failures = 0;
            if self.up {
                self.successes = 0;
            } else {
                self.successes += 1;
                if self.successes >= damping.rise.max(1) {
                    self.up = true;
                    self.successes = 0;
                    changed = Some(true);
                }
            }
            next = timing.delay_loop;
        } else {
            self.successes = 0;
            if self.up {
                self.failures += 1;
                let threshold = damping.fall.max(timing.retry.saturating_add(1));
                if !self.has_run || self.failures >= threshold {
                    self.up = false;
                    self.failures = 0;
                    changed = Some(false);
                    next = timing.delay_loop;
                } else {
                    next = timing.delay_before_retry;
                }
            } else {
                next = timing.delay_loop;
            }
        }
        if changed.is_some() {
            self.flaps += 1;
        }
        self.has_run = true;
        Step { changed, next }
    }
}

/// A server is alive iff all its checkers are up (no checkers: alive).
pub fn all_up<'a>(checks: impl IntoIterator<Item = &'a CheckState>) -> bool {
    checks.into_iter().all(CheckState::is_up)
}

/// keepalived's quorum with hysteresis over the alive weight sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    quorum: u64,
    hysteresis: u64,
    up: bool,
}

impl Quorum {
    /// Quorum `quorum` (keepalived's default 1) with `hysteresis` (0);
    /// starts with the quorum held.
    pub fn new(quorum: u32, hysteresis: u32) -> Quorum {
        Quorum {
            quorum: u64::from(quorum),
            hysteresis: u64::from(hysteresis),
            up: true,
        }
    }

    /// Whether the quorum is held.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Updates with the alive weight sum; `Some(held)` when it changed.
    pub fn update(&mut self, weight_sum: u64) -> Option<bool> {
        if !self.up && weight_sum >= self.quorum + self.hysteresis {
            self.up = true;
            return Some(true);
        }
        if self.up && (weight_sum == 0 || weight_sum < self.quorum.saturating_sub(self.hysteresis))
        {
            self.up = false;
            return Some(false);
        }
        None
    }
}

/// MISC_CHECK's exit status: `(success, weight)`. 0 up (the configured
/// weight), 1 down; with `misc_dynamic` 2..=255 up with weight `code − 2`;
/// without it anything but 0 is down. `None` (killed, timed out): down.
pub fn misc_result(status: Option<i32>, dynamic: bool) -> (bool, Option<u32>) {
    match status {
        Some(0) => (true, None),
        Some(code @ 2..=255) if dynamic => (true, Some(code as u32 - 2)),
        _ => (false, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// delay_loop L, connect_timeout C, retry R, delay_before_retry B.
    fn timing(l: u64, c: u64, r: u32, b: u64) -> Timing {
        Timing {
            delay_loop: secs(l),
            connect_timeout: secs(c),
            retry: r,
            delay_before_retry: secs(b),
            warmup: secs(l),
        }
    }

    /// Virtual time: runs checks whose outcome `ok(t)` depends on the start
    /// time, each taking `cost`; returns the time the checker went down/up
    /// (state `want`) after `from`.
    fn time_to(
        state: &mut CheckState,
        t: &Timing,
        damping: Damping,
        mut now: Duration,
        cost: impl Fn(bool) -> Duration,
        ok: impl Fn(Duration) -> bool,
        want: bool,
    ) -> Duration {
        for _ in 0..1000 {
            let success = ok(now);
            now += cost(success);
            let step = state.record(t, damping, success);
            if step.changed == Some(want) {
                return now;
            }
            now += step.next;
        }
        panic!("never reached {want}");
    }

    #[test]
    fn retry_plus_one_failures_take_server_down() {
        let t = timing(6, 10, 3, 3);
        let mut s = CheckState::new(false);
        assert_eq!(s.record(&t, Damping::default(), true).changed, None);
        for i in 0..3 {
            let step = s.record(&t, Damping::default(), false);
            assert_eq!(step.changed, None, "failure {i} is retried");
            assert_eq!(step.next, secs(3), "retry after delay_before_retry");
            assert!(s.is_up());
        }
        let step = s.record(&t, Damping::default(), false);
        assert_eq!(step.changed, Some(false), "retry + 1 = 4th failure");
        assert_eq!(step.next, secs(6));
        // Down: no retries, every delay_loop.
        assert_eq!(s.record(&t, Damping::default(), false).next, secs(6));
    }

    #[test]
    fn a_success_between_failures_resets_the_retry_count() {
        let t = timing(6, 10, 1, 3);
        let mut s = CheckState::new(false);
        s.record(&t, Damping::default(), true);
        assert_eq!(s.record(&t, Damping::default(), false).changed, None);
        assert_eq!(s.record(&t, Damping::default(), true).changed, None);
        assert_eq!(s.record(&t, Damping::default(), false).changed, None);
        assert_eq!(s.record(&t, Damping::default(), false).changed, Some(false));
    }

    #[test]
    fn one_success_brings_server_up() {
        let t = timing(6, 10, 1, 3);
        let mut s = CheckState::new(false);
        s.record(&t, Damping::default(), false);
        assert!(!s.is_up());
        let step = s.record(&t, Damping::default(), true);
        assert_eq!(step.changed, Some(true));
        assert_eq!(step.next, secs(6));
        assert_eq!(s.flaps(), 2);
    }

    #[test]
    fn first_failure_at_startup_takes_server_down_at_once() {
        let t = timing(6, 10, 3, 3);
        let mut s = CheckState::new(false);
        assert!(s.is_up(), "in the pool before the first check");
        assert_eq!(s.record(&t, Damping::default(), false).changed, Some(false));
    }

    #[test]
    fn alpha_starts_down() {
        let t = timing(6, 10, 1, 3);
        let mut s = CheckState::new(true);
        assert!(!s.is_up());
        assert_eq!(s.record(&t, Damping::default(), false).changed, None);
        assert_eq!(s.record(&t, Damping::default(), true).changed, Some(true));
    }

    #[test]
    fn warmup_spreads_the_first_check_over_one_second_plus_warmup() {
        let t = timing(60, 5, 1, 1);
        assert_eq!(first_delay(&t, 0.0), secs(1));
        assert_eq!(first_delay(&t, 0.5), secs(31));
        assert!(first_delay(&t, 0.999) < secs(61));
        let no_warmup = Timing {
            warmup: Duration::ZERO,
            ..t
        };
        assert_eq!(first_delay(&no_warmup, 0.7), secs(1));
    }

    #[test]
    fn refused_server_is_detected_within_r_b_to_l_plus_r_b() {
        // L=1, C=1, R=1, B=1: refusals cost nothing; failing from t0 at
        // every phase of the loop, detection is within [R·B, L+R·B].
        let t = timing(1, 1, 1, 1);
        for phase_ms in [0u64, 250, 500, 999] {
            let mut s = CheckState::new(false);
            s.record(&t, Damping::default(), true);
            let t0 = Duration::from_millis(phase_ms);
            // last success ended at 0, next check at L = 1 s; failure from t0.
            let down = time_to(
                &mut s,
                &t,
                Damping::default(),
                secs(1),
                |_| Duration::ZERO,
                |now| now < t0,
                false,
            );
            let after = down - t0;
            assert!(after >= secs(1) && after <= secs(2), "{after:?}");
        }
    }

    #[test]
    fn black_holed_server_is_detected_within_l_plus_r_plus_one_c_plus_r_b() {
        let t = timing(1, 1, 1, 1);
        let mut s = CheckState::new(false);
        s.record(&t, Damping::default(), true);
        // Black hole from t0 = 0 (just after a success): each failure costs C.
        let down = time_to(
            &mut s,
            &t,
            Damping::default(),
            secs(1),
            |ok| if ok { Duration::ZERO } else { secs(1) },
            |_| false,
            false,
        );
        assert_eq!(down, secs(1 + 2 + 1), "L + (R+1)·C + R·B");
    }

    #[test]
    fn rise_needs_consecutive_successes_to_come_up() {
        let t = timing(1, 1, 1, 1);
        let d = Damping { rise: 3, fall: 0 };
        let mut s = CheckState::new(true);
        assert_eq!(s.record(&t, d, true).changed, None);
        assert_eq!(s.record(&t, d, false).changed, None);
        assert_eq!(s.record(&t, d, true).changed, None);
        assert_eq!(s.record(&t, d, true).changed, None);
        assert_eq!(s.record(&t, d, true).changed, Some(true));
    }

    #[test]
    fn fall_needs_more_failures_than_retry_plus_one_when_larger() {
        let t = timing(1, 1, 1, 1);
        let d = Damping { rise: 1, fall: 4 };
        let mut s = CheckState::new(false);
        s.record(&t, d, true);
        for _ in 0..3 {
            let step = s.record(&t, d, false);
            assert_eq!(step.changed, None);
            assert_eq!(step.next, secs(1));
        }
        assert_eq!(s.record(&t, d, false).changed, Some(false));
        // A fall below retry + 1 does not shorten keepalived's rule.
        let mut s = CheckState::new(false);
        let t3 = timing(1, 1, 3, 1);
        s.record(&t3, Damping { rise: 1, fall: 2 }, true);
        for _ in 0..3 {
            assert_eq!(
                s.record(&t3, Damping { rise: 1, fall: 2 }, false).changed,
                None
            );
        }
        assert_eq!(
            s.record(&t3, Damping { rise: 1, fall: 2 }, false).changed,
            Some(false)
        );
    }

    #[test]
    fn server_is_alive_only_if_all_checkers_are_up() {
        let up = CheckState::new(false);
        let down = CheckState::new(true);
        assert!(all_up([&up, &up]));
        assert!(!all_up([&up, &down]));
        assert!(all_up(std::iter::empty()));
    }

    #[test]
    fn quorum_is_lost_below_quorum_minus_hysteresis_and_gained_at_quorum_plus_hysteresis() {
        let mut q = Quorum::new(4, 1);
        assert_eq!(q.update(3), None, "3 is not below 4 - 1");
        assert_eq!(q.update(2), Some(false));
        assert_eq!(q.update(4), None, "4 is below 4 + 1");
        assert_eq!(q.update(5), Some(true));
        let mut q = Quorum::new(1, 0);
        assert_eq!(q.update(1), None);
        assert_eq!(q.update(0), Some(false), "a zero sum always loses it");
        assert_eq!(q.update(1), Some(true));
    }

    #[test]
    fn misc_dynamic_exit_codes_set_up_down_and_weight() {
        assert_eq!(misc_result(Some(0), true), (true, None));
        assert_eq!(misc_result(Some(1), true), (false, None));
        assert_eq!(misc_result(Some(12), true), (true, Some(10)));
        assert_eq!(misc_result(Some(255), true), (true, Some(253)));
        assert_eq!(misc_result(Some(12), false), (false, None));
        assert_eq!(misc_result(None, true), (false, None), "timed out");
    }
}
