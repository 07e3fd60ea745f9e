//! The transmit rate limiter: packet `n` of a run is due at `n / rate`
//! seconds after the start; the transmit loop asks how many are due now.
//!
//! Rules: time is passed in (ns since the run's clock origin), so the
//! limiter is a pure function of the calls made to it and testable without
//! a clock. A loop that falls behind (the device stalls, the thread is
//! descheduled) catches up with at most [`RateLimiter::max_credit`] packets
//! at once — a millisecond's worth, at least a burst — and the older
//! backlog is forgotten, so a stall never turns into a line-rate burst.

use rvs::dataplane::driver::BURST_SIZE;

/// How many packets may be sent, and when the next one is due.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Packets per second; `None`: as fast as possible.
    rate_pps: Option<f64>,
    /// Clock reading at which packet 0 was due.
    start_ns: u64,
    /// Packets handed out so far.
    granted: u64,
    /// Due packets given up because the loop fell too far behind.
    skipped: u64,
    /// Most packets one call hands out beyond what is due right now.
    max_credit: u64,
}

impl RateLimiter {
    /// A limiter for `rate_pps` packets per second (`None`: unlimited)
    /// starting at `start_ns`.
    pub fn new(rate_pps: Option<f64>, start_ns: u64) -> RateLimiter {
        let rate_pps = rate_pps.filter(|r| r.is_finite() && *r > 0.0);
        let max_credit = rate_pps
            .map(|r| ((r / 1000.0) as u64).max(BURST_SIZE as u64))
            .unwrap_or(u64::MAX);
        RateLimiter {
            rate_pps,
            start_ns,
            granted: 0,
            skipped: 0,
            max_credit,
        }
    }

    /// Most packets handed out at once after a stall.
    #[cfg(test)]
    pub fn max_credit(&self) -> u64 {
        self.max_credit
    }

    /// Packets due by `now_ns` (since the start), backlog cap applied.
    fn due(&mut self, now_ns: u64) -> u64 {
        let Some(rate) = self.rate_pps else {
            return u64::MAX;
        };
        let elapsed = now_ns.saturating_sub(self.start_ns);
        // Packet 0 is due at the start: n packets are due once
        // (n - 1) / rate seconds have passed.
        let due = (elapsed as f64 * rate / 1e9) as u64 + 1;
        let due = due.saturating_sub(self.skipped);
        let credit = due.saturating_sub(self.granted);
        if credit > self.max_credit {
            self.skipped += credit - self.max_credit;
            return self.granted + self.max_credit;
        }
        due
    }

    /// How many of `want` packets may go now; the caller then
    /// [`commit`](Self::commit)s how many it really sent (built).
    pub fn allowance(&mut self, now_ns: u64, want: usize) -> usize {
        let due = self.due(now_ns);
        due.saturating_sub(self.granted).min(want as u64) as usize
    }

    /// Record that `n` packets were taken.
    pub fn commit(&mut self, n: usize) {
        self.granted += n as u64;
    }

    /// Nanoseconds from `now_ns` until the next packet is due (0: due now;
    /// unlimited rates are always due).
    pub fn ns_until_next(&self, now_ns: u64) -> u64 {
        let Some(rate) = self.rate_pps else {
            return 0;
        };
        // Packet k (0-based, counting the skipped ones) is due at k / rate.
        let k = self.granted + self.skipped;
        let at = self.start_ns + (k as f64 * 1e9 / rate) as u64;
        at.saturating_sub(now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn rate_limiter_releases_packets_as_they_fall_due() {
        let mut rl = RateLimiter::new(Some(1000.0), 5 * MS);
        assert_eq!(rl.allowance(5 * MS, 32), 1, "packet 0 is due at the start");
        rl.commit(1);
        assert_eq!(rl.allowance(5 * MS + MS / 2, 32), 0);
        assert_eq!(rl.ns_until_next(5 * MS + MS / 2), MS / 2);
        assert_eq!(rl.allowance(15 * MS, 32), 10, "packets 1..=10 by 10 ms");
        rl.commit(4);
        assert_eq!(rl.allowance(15 * MS, 32), 6, "the rest stays due");
        assert_eq!(rl.allowance(15 * MS, 2), 2, "never more than wanted");
    }

    #[test]
    fn rate_limiter_holds_the_average_rate_when_polled_unevenly() {
        let rate = 250_000.0;
        let mut rl = RateLimiter::new(Some(rate), 0);
        let (mut now, mut sent) = (0u64, 0u64);
        let mut step = 0u64;
        while now < 1_000 * MS {
            let n = rl.allowance(now, BURST_SIZE);
            rl.commit(n);
            sent += n as u64;
            // Polls every 1..=40 µs, like a loop doing varying work.
            step = (step * 7 + 13) % 40;
            now += (step + 1) * 1_000;
        }
        let err = (sent as f64 - rate).abs() / rate;
        assert!(err < 0.001, "sent {sent} in 1 s at {rate} pps");
    }

    #[test]
    fn rate_limiter_forgets_backlog_beyond_its_credit() {
        let mut rl = RateLimiter::new(Some(1_000_000.0), 0);
        assert_eq!(rl.max_credit(), 1000, "1 ms at 1 Mpps");
        // A one-second stall: 1M packets are overdue, 1000 may go.
        assert_eq!(rl.allowance(1_000 * MS, usize::MAX), 1000);
        rl.commit(1000);
        assert_eq!(rl.allowance(1_000 * MS, usize::MAX), 0);
        // From there on the schedule continues at the rate.
        assert_eq!(rl.allowance(1_000 * MS + 100_000, usize::MAX), 100);
    }

    #[test]
    fn low_rates_still_allow_a_burst_of_credit() {
        let mut rl = RateLimiter::new(Some(100.0), 0);
        assert_eq!(rl.max_credit(), BURST_SIZE as u64);
        assert_eq!(rl.allowance(10_000 * MS, usize::MAX), BURST_SIZE);
    }

    #[test]
    fn unlimited_rate_gives_all_that_is_asked() {
        let mut rl = RateLimiter::new(None, 0);
        assert_eq!(rl.allowance(0, 32), 32);
        rl.commit(32);
        assert_eq!(rl.allowance(0, 32), 32);
        assert_eq!(rl.ns_until_next(0), 0);
    }
}
