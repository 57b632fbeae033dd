//! fswal, driven as `fswal record` drives it: a [`DirStore`] whose writes are issued
//! from a second thread, a [`WalWriter`] with the default configuration, and
//! [`WalWriter::close`] (seal and sync) as the one durability call.

use std::path::Path;
use std::time::{Duration, Instant};

use fswal_backends::dir::DirStore;
use fswal_core::writer::wall_clock_ns;
use fswal_core::{Mode, ParallelReplay, Replay, RequestEvent, Status, WalWriter, WriterConfig};
use zerocopy::IntoBytes;

use crate::common::{Context, Digest, Result, Written, fail};

/// Workload 1: opens a new log in `dir`, appends `records` (one `append` call per
/// record, or one `append_batch` call per `batch` records), then closes it, which
/// seals the segment and syncs. Returns the time from opening to `close` returning.
pub fn write(dir: &Path, records: &[RequestEvent], batch: Option<usize>) -> Result<Written> {
    let start = Instant::now();
    let store = DirStore::open_for_append(dir)
        .context(|| format!("fswal: open {} for append", dir.display()))?
        .write_thread(true);
    let (mut writer, _recovery) = WalWriter::open(store, wall_clock_ns, WriterConfig::default())
        .context(|| format!("fswal: open the writer in {}", dir.display()))?;
    match batch {
        None => {
            for record in records {
                writer
                    .append(record)
                    .context(|| format!("fswal: append event {}", record.event_id()))?;
            }
        }
        Some(size) => {
            for run in records.chunks(size.max(1)) {
                writer.append_batch(run).context(|| {
                    format!(
                        "fswal: append a batch from event {}",
                        run.first().map_or(0, RequestEvent::event_id)
                    )
                })?;
            }
        }
    }
    let durable = writer.close().context(|| "fswal: close".to_owned())?;
    let elapsed = start.elapsed();
    let last = records.last().map_or(0, RequestEvent::event_id);
    if durable != last {
        return fail(format!(
            "fswal: close made events durable through {durable}, not {last}"
        ));
    }
    Ok(Written {
        elapsed,
        finish: Box::new(move || {
            // Joins the write thread; everything was synced by `close`.
            drop(writer);
            Ok(())
        }),
    })
}

/// Workload 2, sequential: strict [`Replay`] of `dir`, which verifies every block's
/// checksums (block, chain, header) in order on one thread. Returns the time from
/// opening the directory to the last record handed out, and the digest of the records.
pub fn replay_strict(dir: &Path) -> Result<(Duration, Digest)> {
    let start = Instant::now();
    let store = DirStore::open_read_only(dir)
        .context(|| format!("fswal: open {} to replay", dir.display()))?;
    let mut digest = Digest::default();
    let summary = Replay::new(store, Mode::Strict)
        .run(|event| digest.add(event.as_bytes()))
        .context(|| format!("fswal: replay {}", dir.display()))?;
    let elapsed = start.elapsed();
    if summary.status != Status::Ok {
        return fail(format!(
            "fswal: strict replay of {} ended {:?}: {:?}",
            dir.display(),
            summary.status,
            summary.first_issue
        ));
    }
    if summary.events != digest.count {
        return fail(format!(
            "fswal: replay summary counts {} events but handed out {}",
            summary.events, digest.count
        ));
    }
    Ok((elapsed, digest))
}

/// Workload 2, parallel: [`ParallelReplay`] of `dir` (one worker per core), which
/// verifies pieces of the log on every core and hands the verified events out in
/// order. Returns the time, the digest, and how many workers ran.
pub fn replay_parallel(dir: &Path) -> Result<(Duration, Digest, usize)> {
    let start = Instant::now();
    let mut store = DirStore::open_read_only(dir)
        .context(|| format!("fswal: open {} to replay", dir.display()))?;
    let mut digest = Digest::default();
    let outcome = ParallelReplay::new()
        .replay(&mut store, |events| {
            for event in events {
                digest.add(event.as_bytes());
            }
        })
        .context(|| format!("fswal: parallel replay of {}", dir.display()))?;
    let elapsed = start.elapsed();
    if outcome.summary.status != Status::Ok {
        return fail(format!(
            "fswal: parallel replay of {} ended {:?}: {:?}",
            dir.display(),
            outcome.summary.status,
            outcome.summary.first_issue
        ));
    }
    // A fallback would mean the sequential replay did the work: the measurement would
    // not be of the parallel path, so it is refused rather than reported.
    if let Some(unusual) = outcome.fell_back {
        return fail(format!(
            "fswal: parallel replay fell back to sequential: {unusual:?}"
        ));
    }
    if outcome.summary.events != digest.count {
        return fail(format!(
            "fswal: parallel replay summary counts {} events but handed out {}",
            outcome.summary.events, digest.count
        ));
    }
    Ok((elapsed, digest, outcome.threads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{ScratchDir, disk_usage, reference_records};

    #[test]
    fn writes_and_replays_5000_records_both_ways() -> Result<()> {
        let records = reference_records(5000);
        let expected = Digest::of(&records);
        for batch in [None, Some(256)] {
            let dir = ScratchDir::new(&std::env::temp_dir(), "fswal-test")?;
            let written = write(dir.path(), &records, batch)?;
            (written.finish)()?;
            assert!(disk_usage(dir.path())?.bytes >= 5000 * 64);
            let (_, strict) = replay_strict(dir.path())?;
            strict.check(&expected, "fswal strict")?;
            let (_, parallel, threads) = replay_parallel(dir.path())?;
            parallel.check(&expected, "fswal parallel")?;
            assert!(threads >= 1);
        }
        Ok(())
    }
}
