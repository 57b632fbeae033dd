//! The hot path: `Recorder::append` on the engine thread, paced at a target rate or
//! flat out, with the I/O thread committing in groups behind it.

use std::hint::spin_loop;
use std::path::Path;
use std::time::{Duration, Instant};

use fswal_backends::dir::SegmentDir;
use fswal_backends::file::SegmentFile;
use fswal_core::WriterConfig;
use fswal_core::reference::reference_event;
use fswal_recorder::histogram::Snapshot;
use fswal_recorder::{Recorder, RecorderConfig};
use serde::Serialize;

use crate::clock::wall_clock_ns;
use crate::error::CliError;
use crate::store::Backend;

/// Latency percentiles of `append`, ns.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p99_9_ns: u64,
    /// 99.99th percentile.
    pub p99_99_ns: u64,
    /// Largest.
    pub max_ns: u64,
}

impl Latency {
    fn of(s: &Snapshot) -> Self {
        Self {
            p50_ns: s.quantile(0.5),
            p99_ns: s.quantile(0.99),
            p99_9_ns: s.quantile(0.999),
            p99_99_ns: s.quantile(0.9999),
            max_ns: s.max,
        }
    }
}

/// One recorder run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct HotPathRun {
    /// Events appended.
    pub events: u64,
    /// The pace asked for, events per second (`None`: flat out).
    pub rate_target_per_s: Option<u64>,
    /// Events per second the engine thread appended at.
    pub append_rate_per_s: f64,
    /// Events per second from the first append until `close` returned with everything
    /// sealed and durable.
    pub durable_rate_per_s: f64,
    /// `append` latency on the engine thread.
    pub append: Latency,
    /// Appends that found the ring full.
    pub ring_full: u64,
    /// Group commits.
    pub commits: u64,
    /// Device syncs.
    pub syncs: u64,
    /// Median and largest device sync, ns.
    pub sync_p50_ns: u64,
    /// Largest device sync, ns.
    pub sync_max_ns: u64,
    /// Largest segment creation (the rotation's I/O, on the I/O thread), ns.
    pub rotation_max_ns: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Segment files the preparer allocated ahead of need.
    pub segments_prepared: u64,
}

/// Records `events` reference events into the new WAL directory `dir` through
/// `backend`, paced at `rate_per_s` if given, with a preparer thread, then closes.
pub fn run(
    backend: Backend,
    dir: &Path,
    events: u64,
    rate_per_s: Option<u64>,
) -> Result<HotPathRun, CliError> {
    match backend {
        Backend::File => run_on::<fswal_backends::file::FileDevice>(dir, events, rate_per_s),
        Backend::Mmap => run_on::<fswal_backends::mmap::MmapDevice>(dir, events, rate_per_s),
        Backend::Direct => run_on::<fswal_backends::direct::DirectDevice>(dir, events, rate_per_s),
    }
}

fn run_on<D>(dir: &Path, events: u64, rate_per_s: Option<u64>) -> Result<HotPathRun, CliError>
where
    D: SegmentFile + Send + 'static,
{
    let store = SegmentDir::<D>::open_for_append(dir)?.prepare_ahead(false);
    let config = RecorderConfig::default()
        .writer(WriterConfig::default())
        .preparer(Box::new(store.preparer()));
    let (mut recorder, _) = Recorder::start(store, wall_clock_ns, config)
        .map_err(|e| CliError::new(format!("{}: {e}", dir.display())))?;
    let fail = |e: fswal_recorder::RecorderError| CliError::new(format!("{}: {e}", dir.display()));
    let start = Instant::now();
    for (n, id) in (0u64..).zip(1..=events) {
        let event = reference_event(id);
        if let Some(rate) = rate_per_s {
            // Spin until this event's moment: an engine thread that receives requests
            // at this rate (event n at n / rate seconds).
            let due_ns = u128::from(n) * 1_000_000_000 / u128::from(rate.max(1));
            let due = start + Duration::from_nanos(u64::try_from(due_ns).unwrap_or(u64::MAX));
            while Instant::now() < due {
                spin_loop();
            }
        }
        recorder.append(&event).map_err(fail)?;
    }
    let appended = start.elapsed();
    let telemetry = std::sync::Arc::clone(recorder.telemetry());
    recorder.close().map_err(fail)?;
    let durable = start.elapsed();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let sync = telemetry.sync_ns.snapshot();
    Ok(HotPathRun {
        events,
        rate_target_per_s: rate_per_s,
        append_rate_per_s: events as f64 / appended.as_secs_f64(),
        durable_rate_per_s: events as f64 / durable.as_secs_f64(),
        append: Latency::of(&telemetry.append_ns.snapshot()),
        ring_full: load(&telemetry.ring_full),
        commits: load(&telemetry.commits),
        syncs: load(&telemetry.syncs),
        sync_p50_ns: sync.quantile(0.5),
        sync_max_ns: sync.max,
        rotation_max_ns: telemetry.rotation_ns.snapshot().max,
        segments_created: load(&telemetry.segments_created),
        segments_prepared: load(&telemetry.segments_prepared),
    })
}
