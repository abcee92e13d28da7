use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the buckets, in milliseconds.
const BOUNDS_MS: [f64; 17] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    30000.0, 60000.0, 300000.0,
];

/// A lock-free latency histogram with fixed buckets (0.5 ms to 5 min).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_MS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A histogram's content at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct HistogramSnapshot {
    /// Observations.
    pub count: u64,
    /// Sum of observations, seconds.
    pub sum_seconds: f64,
    /// Median estimate (upper bound of its bucket), milliseconds.
    pub p50_ms: f64,
    /// 99th percentile estimate, milliseconds.
    pub p99_ms: f64,
    /// `(upper bound ms, cumulative count)`; the last bound is +Inf.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let idx = BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(BOUNDS_MS.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Reads the histogram.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BOUNDS_MS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let bound = BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        let count = cumulative;
        let quantile = |q: f64| -> f64 {
            if count == 0 {
                return 0.0;
            }
            let rank = (q * count as f64).ceil().max(1.0) as u64;
            buckets
                .iter()
                .find(|(_, c)| *c >= rank)
                .map(|(b, _)| *b)
                .unwrap_or(f64::INFINITY)
        };
        HistogramSnapshot {
            count,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_observations() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.observe(Duration::from_millis(3));
        }
        h.observe(Duration::from_millis(700));
        h.observe(Duration::from_millis(700));
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, 5.0);
        assert_eq!(s.p99_ms, 1000.0);
        assert!((s.sum_seconds - (0.294 + 1.4)).abs() < 1e-6);
        assert_eq!(s.buckets.last().unwrap().1, 100);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let s = Histogram::default().snapshot();
        assert_eq!((s.count, s.p50_ms, s.p99_ms), (0, 0.0, 0.0));
    }
}
