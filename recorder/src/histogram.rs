//! A lock-free latency histogram: log-linear buckets of atomic counters.
//!
//! Values below 64 ns have a bucket each; above, every power of two is split into 32
//! buckets, so a bucket's width is at most 1/32 of its lower bound and a reported
//! percentile is within about 3% of the true one. Recording is three relaxed atomic
//! additions and a `fetch_max`: no lock, no allocation, callable from any thread.
//! Values above 2^40 ns (about 18 minutes) land in the last bucket.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two.
const SUB_BUCKETS: u64 = 32;
/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 5;
/// Values below this have a bucket each.
const LINEAR_LIMIT: u64 = 64;
/// The largest power of two tracked.
const TOP_BIT: u32 = 40;
/// Buckets in all: the linear ones, then 32 per power of two from 2^6 to 2^40 (1184,
/// asserted below, so the cast is exact).
#[allow(clippy::cast_possible_truncation)]
const BUCKETS: usize = (LINEAR_LIMIT + (TOP_BIT as u64 - 6 + 1) * SUB_BUCKETS) as usize;
const _: () = assert!(BUCKETS == 1184);

const _: () = assert!(1 << (SUB_BITS + 1) == LINEAR_LIMIT);

/// The bucket of `value`.
fn bucket_of(value: u64) -> usize {
    if value < LINEAR_LIMIT {
        // Exact: below 64.
        #[allow(clippy::cast_possible_truncation)]
        return value as usize;
    }
    let msb = (63 - value.leading_zeros()).min(TOP_BIT);
    let sub = if 63 - value.leading_zeros() > TOP_BIT {
        SUB_BUCKETS - 1
    } else {
        (value >> (msb - SUB_BITS)) & (SUB_BUCKETS - 1)
    };
    let index = LINEAR_LIMIT + u64::from(msb - 6) * SUB_BUCKETS + sub;
    // At most BUCKETS - 1.
    #[allow(clippy::cast_possible_truncation)]
    let index = index as usize;
    index.min(BUCKETS - 1)
}

/// The smallest value of bucket `index`.
fn bucket_low(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR_LIMIT {
        return index;
    }
    let msb = 6 + (index - LINEAR_LIMIT) / SUB_BUCKETS;
    let sub = (index - LINEAR_LIMIT) % SUB_BUCKETS;
    (1 << msb) + (sub << (msb - u64::from(SUB_BITS)))
}

/// A histogram of values (nanoseconds, by convention).
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Histogram")
            .field("count", &s.count)
            .field("p50", &s.quantile(0.5))
            .field("max", &s.max)
            .finish()
    }
}

impl Histogram {
    /// An empty histogram.
    #[must_use]
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value.
    #[inline]
    pub fn record(&self, value: u64) {
        self.buckets[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    /// A consistent-enough copy for reporting (each counter read once).
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
        }
    }

    /// Forgets everything recorded (for a measurement that starts now).
    pub fn reset(&self) {
        for b in &*self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.sum.store(0, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }
}

/// A copy of a histogram's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    buckets: Vec<u64>,
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: u64,
    /// The largest.
    pub max: u64,
}

impl Snapshot {
    /// The value at quantile `q` (0.0..=1.0): the lower bound of the bucket holding it,
    /// or the maximum for `q == 1`; 0 when empty.
    #[must_use]
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max;
        }
        // Rank of the value asked for, at least 1.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q.max(0.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_low(i).min(self.max);
            }
        }
        self.max
    }

    /// The mean, 0 when empty.
    #[must_use]
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }

    /// Cumulative counts at the fixed export edges, for a Prometheus histogram:
    /// `(le_ns, count of values <= le_ns)` for every edge of [`EXPORT_EDGES_LOG2`]
    /// (`le_ns = 2^k - 1`).
    ///
    /// The edges are the same in every snapshot, so that every scrape exposes the
    /// same series (`rate` and `histogram_quantile` need that), and each is the upper
    /// edge of one of this histogram's buckets, so the counts are exact. Values above
    /// the last edge count only in the total (`le="+Inf"`).
    #[must_use]
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(EXPORT_EDGES_LOG2.clone().count());
        let mut seen = 0u64;
        let mut bucket = 0usize;
        for k in EXPORT_EDGES_LOG2 {
            let edge_ns = (1u64 << k) - 1;
            // Buckets are ordered, so each edge adds the buckets up to it.
            while bucket < self.buckets.len() && bucket_low(bucket) <= edge_ns {
                seen += self.buckets[bucket];
                bucket += 1;
            }
            out.push((edge_ns, seen));
        }
        out
    }
}

/// The exported bucket edges of [`Snapshot::cumulative`], as powers of two: from
/// 2^4 - 1 = 15 ns to 2^36 - 1 ns (about 69 s), 33 edges.
pub const EXPORT_EDGES_LOG2: std::ops::RangeInclusive<u32> = 4..=36;

// Every export edge is a bucket's upper edge (`2^k - 1` closes the octave below `2^k`,
// or is a linear bucket), and the largest is below the last tracked power of two.
const _: () = assert!(*EXPORT_EDGES_LOG2.end() < TOP_BIT);
const _: () = assert!(1 << *EXPORT_EDGES_LOG2.start() <= LINEAR_LIMIT);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_edges_are_fixed_and_exact() {
        let h = Histogram::new();
        for v in [0u64, 15, 16, 31, 32, 1000, 1023, 1024, 5_000_000, 1 << 37] {
            h.record(v);
        }
        let empty = Histogram::new().snapshot().cumulative();
        let full = h.snapshot().cumulative();
        // The same edges whatever was recorded.
        assert_eq!(
            empty.iter().map(|e| e.0).collect::<Vec<_>>(),
            full.iter().map(|e| e.0).collect::<Vec<_>>()
        );
        assert_eq!(full.len(), 33);
        let at = |le: u64| full.iter().find(|e| e.0 == le).map(|e| e.1);
        assert_eq!(at(15), Some(2));
        assert_eq!(at(31), Some(4));
        assert_eq!(at(1023), Some(7));
        assert_eq!(at(2047), Some(8));
        assert_eq!(at((1 << 23) - 1), Some(9));
        // 2^37 ns is past the last edge: only the total counts it.
        assert_eq!(full.last().map(|e| e.1), Some(9));
        assert_eq!(h.snapshot().count, 10);
    }

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, (1 << 30) + 7, 1 << 39]) {
            let b = bucket_of(v);
            assert!(b >= last || v < 100_000, "{v}");
            let low = bucket_low(b);
            assert!(low <= v, "{v}: bucket {b} starts at {low}");
            // Relative error below 1/32.
            assert!(v - low <= v / 32 + 1, "{v}: {low}");
            if v < 100_000 {
                last = b;
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 100);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.max, 1_000_000);
        let p50 = s.quantile(0.5);
        assert!((480_000..=500_000).contains(&p50), "{p50}");
        let p99 = s.quantile(0.99);
        assert!((960_000..=990_000).contains(&p99), "{p99}");
        assert_eq!(s.quantile(1.0), 1_000_000);
        assert_eq!(s.mean(), 500_050);
        h.reset();
        assert_eq!(h.snapshot().quantile(0.5), 0);
    }
}
