//! Latency percentiles of a run in constant memory: a log-linear histogram.
//!
//! `bilayer run` kept every input's latency to sort them for the summary, 8 bytes an input:
//! an endless stream on stdin grew the process by about 0.8 GB per 100 million inputs. The
//! histogram has 128 exact buckets below 128 ns and 128 buckets per power of two above, so a
//! percentile is within 1/128 (0.8%) of the exact one, in 60 KiB whatever the run's length.

/// Buckets below this value hold one nanosecond value each.
const EXACT: u64 = 128;
/// Buckets per power of two above `EXACT` (the 7 bits after the leading one).
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// 128 exact buckets, then 128 for each power of two from 2^7 to 2^63.
const BUCKETS: usize = EXACT as usize + (64 - SUB_BITS as usize) * SUB;

/// Counts of latencies by bucket (see the module docs).
pub(crate) struct LatencyHistogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }

    pub(crate) fn record(&mut self, nanos: u64) {
        self.counts[bucket_of(nanos)] += 1;
        self.total += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The nearest-rank `p`-th percentile (as the Python peers compute it), in microseconds:
    /// the middle of the bucket holding it.
    pub(crate) fn percentile_us(&self, p: f64) -> f64 {
        let rank = ((p / 100.0 * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return middle_of(bucket) / 1000.0;
            }
        }
        0.0
    }
}

fn bucket_of(nanos: u64) -> usize {
    if nanos < EXACT {
        return nanos as usize;
    }
    let exponent = 63 - nanos.leading_zeros(); // at least SUB_BITS
    let sub = (nanos >> (exponent - SUB_BITS)) as usize - SUB;
    EXACT as usize + (exponent - SUB_BITS) as usize * SUB + sub
}

fn middle_of(bucket: usize) -> f64 {
    if bucket < EXACT as usize {
        return bucket as f64;
    }
    let above = bucket - EXACT as usize;
    let shift = (above / SUB) as u32;
    let low = ((SUB + above % SUB) as u64) << shift;
    low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_one_part_in_128_of_the_exact_ones() {
        let mut exact: Vec<u64> = (0..20_000u64).map(|i| i * i % 9_999_991 + i).collect();
        let mut histogram = LatencyHistogram::new();
        for &v in &exact {
            histogram.record(v);
        }
        exact.sort_unstable();
        for p in [1.0, 50.0, 90.0, 99.0, 100.0] {
            let rank = ((p / 100.0 * exact.len() as f64).ceil() as usize).max(1);
            let want = exact[rank - 1] as f64 / 1000.0;
            let got = histogram.percentile_us(p);
            assert!(
                (got - want).abs() <= want / 128.0 + 0.001,
                "p{p}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it() {
        for v in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            1_000_000,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let bucket = bucket_of(v);
            assert!(bucket < BUCKETS);
            let middle = middle_of(bucket);
            assert!(
                (middle - v as f64).abs() <= (v as f64) / 128.0 + 0.5,
                "{v}: {middle}"
            );
        }
    }
}
