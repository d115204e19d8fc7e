//! Counters and latency histograms kept with atomics on the request path,
//! read by `/metrics` (Prometheus text) and by the dashboard's JSON API.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds; the last bucket is +Inf.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests by status class and their latency, for one route.
#[derive(Default)]
pub struct RouteStats {
    /// Index 0 counts 1xx, 4 counts 5xx.
    pub by_class: [AtomicU64; 5],
    /// Non-cumulative counts per bucket; the last one is above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl RouteStats {
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.by_class.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn buckets(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros.load(Relaxed) as f64 / 1e6
    }
}

/// What happened at one instance.
#[derive(Default)]
pub struct InstanceStats {
    pub by_class: [AtomicU64; 5],
    pub connect_errors: AtomicU64,
    pub ejections: AtomicU64,
}

impl InstanceStats {
    pub fn record(&self, status: u16) {
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Relaxed);
    }
}

/// The `q` quantile (0..1) of a non-cumulative bucket histogram, as the
/// upper bound of the bucket it falls in, in seconds.
pub fn quantile(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    None
}

/// Prometheus text exposition, written by [`crate::Gateway::render_metrics`].
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self { out: String::new() }
    }

    pub fn help(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram from non-cumulative `buckets`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], buckets: &[u64], sum: f64) {
        let mut cumulative = 0;
        let bucket_name = format!("{name}_bucket");
        for (i, count) in buckets.iter().enumerate() {
            cumulative += count;
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket_name, &with_le, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_buckets() {
        let stats = RouteStats::default();
        for _ in 0..98 {
            stats.record(200, Duration::from_micros(800));
        }
        stats.record(503, Duration::from_millis(40));
        stats.record(200, Duration::from_secs(20));
        let buckets = stats.buckets();
        assert_eq!(quantile(&buckets, 0.5), Some(0.001));
        assert_eq!(quantile(&buckets, 0.99), Some(0.05));
        assert_eq!(quantile(&buckets, 1.0), Some(f64::INFINITY));
        assert_eq!(stats.total(), 100);
        assert_eq!(stats.by_class[4].load(Relaxed), 1);
        assert_eq!(quantile(&[0; 15], 0.5), None);
    }

    #[test]
    fn exposition_is_prometheus_text() {
        let mut e = Exposition::new();
        e.help("x_total", "counter", "Things.");
        e.sample("x_total", &[("route", "/a\"b")], 3);
        e.histogram("y_seconds", &[("route", "/")], &[1, 0, 2], 0.5);
        let text = e.finish();
        assert!(text.contains("x_total{route=\"/a\\\"b\"} 3\n"));
        assert!(text.contains("y_seconds_bucket{route=\"/\",le=\"0.0005\"} 1\n"));
        assert!(text.contains("y_seconds_bucket{route=\"/\",le=\"0.001\"} 1\n"));
        assert!(text.contains("y_seconds_count{route=\"/\"} 3\n"));
    }
}
