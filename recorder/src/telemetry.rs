//! What the recorder measures: latency histograms and counters, printable and
//! exportable as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::histogram::Histogram;

/// The recorder's measurements. Every field is updated lock-free; reading them while
/// the recorder runs gives each value as of some moment of the run.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Telemetry {
    /// Engine-thread latency of `append`, ns: the copy into the ring, and any wait for
    /// room in it.
    pub append_ns: Histogram,
    /// I/O-thread latency of one block write through the backend, ns.
    pub block_write_ns: Histogram,
    /// Latency of one device sync, ns.
    pub sync_ns: Histogram,
    /// Latency of a group commit: writing the partial block, syncing, recording the
    /// sync mark, ns.
    pub commit_ns: Histogram,
    /// Latency of creating a segment (the rotation's I/O), ns.
    pub rotation_ns: Histogram,
    /// Events handed to the writer.
    pub events: AtomicU64,
    /// Appends that found the ring full and had to wait.
    pub ring_full: AtomicU64,
    /// Times the engine thread yielded its core while waiting for room.
    pub ring_full_yields: AtomicU64,
    /// Group commits.
    pub commits: AtomicU64,
    /// Device syncs.
    pub syncs: AtomicU64,
    /// Bytes written to devices.
    pub bytes_written: AtomicU64,
    /// Segments created.
    pub segments_created: AtomicU64,
    /// Segment files prepared ahead of need.
    pub segments_prepared: AtomicU64,
    /// Segment files the preparer failed to allocate (the writer then creates the
    /// segment itself, at the cost of a slower rotation); the last failure is
    /// [`crate::Recorder::preparer_error`].
    pub segments_prepare_failed: AtomicU64,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Telemetry {
    /// No measurement yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn histograms(&self) -> [(&'static str, &'static str, &Histogram); 5] {
        [
            ("append", "engine-thread append latency", &self.append_ns),
            ("block_write", "block write latency", &self.block_write_ns),
            ("sync", "device sync latency", &self.sync_ns),
            ("commit", "group commit latency", &self.commit_ns),
            ("rotation", "segment creation latency", &self.rotation_ns),
        ]
    }

    fn counters(&self) -> [(&'static str, &'static str, u64); 9] {
        [
            (
                "events_total",
                "events handed to the writer",
                load(&self.events),
            ),
            (
                "ring_full_total",
                "appends that found the ring full",
                load(&self.ring_full),
            ),
            (
                "ring_full_yields_total",
                "yields while waiting for room in the ring",
                load(&self.ring_full_yields),
            ),
            ("commits_total", "group commits", load(&self.commits)),
            ("syncs_total", "device syncs", load(&self.syncs)),
            (
                "bytes_written_total",
                "bytes written to devices",
                load(&self.bytes_written),
            ),
            (
                "segments_created_total",
                "segments created",
                load(&self.segments_created),
            ),
            (
                "segments_prepared_total",
                "segment files prepared ahead of need",
                load(&self.segments_prepared),
            ),
            (
                "segments_prepare_failed_total",
                "segment files the preparer failed to allocate",
                load(&self.segments_prepare_failed),
            ),
        ]
    }

    /// A human-readable summary, one line per measurement.
    #[must_use]
    pub fn report(&self) -> String {
        let mut out = String::new();
        for (name, _, h) in self.histograms() {
            let s = h.snapshot();
            let _ = writeln!(
                out,
                "{name:<12} n={:<10} p50={} p99={} p99.9={} p99.99={} max={} (ns)",
                s.count,
                s.quantile(0.5),
                s.quantile(0.99),
                s.quantile(0.999),
                s.quantile(0.9999),
                s.max
            );
        }
        for (name, _, v) in self.counters() {
            let _ = writeln!(out, "{name:<24} {v}");
        }
        out
    }

    /// The measurements in the Prometheus text exposition format (histograms in
    /// seconds, as Prometheus expects; counters as totals).
    #[must_use]
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (name, help, h) in self.histograms() {
            let s = h.snapshot();
            let metric = format!("fswal_{name}_seconds");
            let _ = writeln!(out, "# HELP {metric} {help}.");
            let _ = writeln!(out, "# TYPE {metric} histogram");
            for (le_ns, count) in s.cumulative() {
                let _ = writeln!(out, "{metric}_bucket{{le=\"{}\"}} {count}", seconds(le_ns));
            }
            let _ = writeln!(out, "{metric}_bucket{{le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "{metric}_sum {}", seconds(s.sum));
            let _ = writeln!(out, "{metric}_count {}", s.count);
        }
        for (name, help, v) in self.counters() {
            let metric = format!("fswal_{name}");
            let _ = writeln!(out, "# HELP {metric} {help}.");
            let _ = writeln!(out, "# TYPE {metric} counter");
            let _ = writeln!(out, "{metric} {v}");
        }
        out
    }
}

/// `ns` nanoseconds as seconds, exactly (9 decimals).
fn seconds(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_well_formed() {
        let t = Telemetry::new();
        t.append_ns.record(120);
        t.append_ns.record(5_000);
        t.syncs.fetch_add(3, Ordering::Relaxed);
        let text = t.prometheus();
        assert!(text.contains("# TYPE fswal_append_seconds histogram"));
        assert!(text.contains("fswal_append_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("fswal_append_seconds_sum 0.000005120"));
        assert!(text.contains("fswal_syncs_total 3"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.rsplitn(2, ' ');
            let value = parts.next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(t.report().contains("append"));
    }
}
