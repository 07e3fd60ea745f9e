//! Latency histogram (HDR style): fixed log-linear buckets, so recording is
//! an index computation and an increment, and percentiles come out with a
//! bounded relative error.
//!
//! Values below 2^[`SUB_BITS`] ns have a bucket each (exact). Above, every
//! power-of-two range is split into 2^`SUB_BITS` equal buckets, so a
//! bucket's width is at most 1/128 of its values (< 0.8 % error). A
//! percentile is reported as the highest value of its bucket, clamped to
//! the largest value recorded: it is never below the true percentile.
//!
//! Rules: all memory is allocated by [`LatencyHistogram::new`]; recording
//! never allocates.

/// Sub-bucket bits: 2^7 = 128 buckets per power of two.
pub const SUB_BITS: u32 = 7;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Buckets needed to cover every `u64`.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) << SUB_BITS;

/// Counts of nanosecond values in log-linear buckets.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    samples: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            samples: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    #[inline]
    fn index(v: u64) -> usize {
        if v < SUB_COUNT {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB_BITS;
        let group = (shift + 1) as usize;
        let sub = ((v >> shift) - SUB_COUNT) as usize;
        (group << SUB_BITS) + sub
    }

    /// The highest value bucket `i` holds.
    fn bucket_high(i: usize) -> u64 {
        let group = (i >> SUB_BITS) as u32;
        let sub = (i as u64) & (SUB_COUNT - 1);
        if group == 0 {
            return sub;
        }
        let shift = group - 1;
        let low = (SUB_COUNT + sub) << shift;
        low + ((1u64 << shift) - 1)
    }

    /// Count one value.
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.samples += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Add another histogram's counts to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.samples += other.samples;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Values recorded.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Smallest value recorded.
    pub fn min(&self) -> Option<u64> {
        (self.samples > 0).then_some(self.min)
    }

    /// Largest value recorded.
    pub fn max(&self) -> Option<u64> {
        (self.samples > 0).then_some(self.max)
    }

    /// Mean of the values recorded.
    pub fn mean(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.sum as f64 / self.samples as f64)
    }

    /// The value at or below which `pct` percent of the samples lie (rank
    /// `ceil(pct/100 · n)`, at least 1), as the high end of its bucket
    /// clamped to the maximum; `None` without samples.
    pub fn percentile(&self, pct: f64) -> Option<u64> {
        if self.samples == 0 {
            return None;
        }
        let pct = pct.clamp(0.0, 100.0);
        let rank = ((pct / 100.0 * self.samples as f64).ceil() as u64).clamp(1, self.samples);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::bucket_high(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact percentile of sorted values by the same rank rule.
    fn exact(sorted: &[u64], pct: f64) -> u64 {
        let rank = ((pct / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = LatencyHistogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(90.0), Some(90));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(100));
        assert_eq!(h.mean(), Some(50.5));
    }

    #[test]
    fn percentiles_are_within_bucket_precision_and_never_below() {
        // A skewed spread from 1 µs to ~10 ms.
        let mut values: Vec<u64> = (0..10_000u64)
            .map(|i| 1_000 + (i * i * 97) % 10_000_000)
            .collect();
        let mut h = LatencyHistogram::new();
        for &v in &values {
            h.record(v);
        }
        values.sort_unstable();
        for pct in [50.0, 90.0, 99.0, 99.9] {
            let want = exact(&values, pct);
            let got = h.percentile(pct).expect("samples");
            assert!(got >= want, "p{pct}: {got} < exact {want}");
            let err = (got - want) as f64 / want as f64;
            assert!(err <= 1.0 / 128.0, "p{pct}: {got} vs {want} ({err})");
        }
        assert_eq!(h.percentile(100.0), Some(*values.last().expect("values")));
    }

    #[test]
    fn bucket_bounds_cover_every_value_once() {
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            255,
            256,
            257,
            1 << 20,
            (1 << 20) + 12345,
            u64::MAX,
        ] {
            let i = LatencyHistogram::index(v);
            assert!(LatencyHistogram::bucket_high(i) >= v, "{v}");
            if i > 0 {
                assert!(LatencyHistogram::bucket_high(i - 1) < v, "{v}");
            }
        }
        assert_eq!(LatencyHistogram::index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn merged_histograms_equal_one_fed_everything() {
        let (mut a, mut b, mut all) = (
            LatencyHistogram::new(),
            LatencyHistogram::new(),
            LatencyHistogram::new(),
        );
        for v in 0..5_000u64 {
            let x = v * 331 % 70_000;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            all.record(x);
        }
        a.merge(&b);
        for pct in [50.0, 90.0, 99.0] {
            assert_eq!(a.percentile(pct), all.percentile(pct));
        }
        assert_eq!(
            (a.samples(), a.min(), a.max()),
            (all.samples(), all.min(), all.max())
        );
    }

    #[test]
    fn an_empty_histogram_has_no_percentiles() {
        let h = LatencyHistogram::new();
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.min(), None);
        assert_eq!(h.mean(), None);
    }
}
