//! raft-engine 0.4.2 (TiKV's Raft log store), driven through its public API.
//!
//! raft-engine stores protobuf messages as the log entries of Raft groups. Each
//! record is one entry of one group (region 1): a `google.protobuf.BytesValue`
//! holding the 64 record bytes (66 bytes encoded), whose log index is the record's
//! event id (so index `i` holds event `i`). Entries go into a `LogBatch`
//! (`add_entries`) and a batch is written with `Engine::write(batch, sync)`; a write
//! with `sync = true` ends with `fdatasync`.
//!
//! Two write patterns are measured:
//! - batches of 256: `add_entries` with 256 entries, then `write(sync = false)`; the
//!   last batch is written with `sync = true`. This matches fswal's 256-event blocks
//!   and its `append_batch(256)`, and is how TiKV uses the engine (a batch per ready).
//! - one write per record: `add_entries` with 1 entry and `write` for every record,
//!   the last with `sync = true`: the per-record pattern the others are driven with.
//!
//! `Engine::sync()` is NOT used as the durability call: in 0.4.2 it writes an empty
//! `LogBatch` with `sync = true`, and `write` returns early for an empty batch
//! without syncing (the sync count under strace shows it), so the last real write
//! carries the sync instead.
//!
//! Settings changed from the defaults: compression is off
//! (`batch_compression_threshold = 0`; the default 8 KiB threshold would LZ4 every
//! batch of 256, and neither fswal nor okaywal compresses by default), and recovery is
//! `AbsoluteConsistency` (fail on any corruption, like fswal's strict replay; it only
//! matters for damaged logs).
//!
//! Workload 2 is `Engine::open` (its recovery reads every log batch and checks the
//! CRC-32 of each batch's item footer to rebuild the in-memory index) followed by
//! `fetch_entries_to` over every index, which reads each batch's entry block and
//! checks its CRC-32 before decoding the entries.

use std::path::Path;
use std::time::{Duration, Instant};

use fswal_core::RequestEvent;
use protobuf::well_known_types::BytesValue;
use raft_engine::{Config, Engine, LogBatch, MessageExt, ReadableSize, RecoveryMode};
use zerocopy::IntoBytes;

use crate::common::{Context, Digest, Result, Written, fail, record_event_id};

/// The Raft group every record goes to.
const REGION: u64 = 1;

/// Entries fetched per `fetch_entries_to` call: bounds the memory replay holds.
const FETCH_ENTRIES: u64 = 4096;

/// Records in one `LogBatch` in the batched write pattern.
pub const BATCH_RECORDS: usize = 256;

/// The message type of the log: a `BytesValue` whose index is the event id at the
/// start of its bytes.
struct Records;

impl MessageExt for Records {
    type Entry = BytesValue;

    fn index(entry: &BytesValue) -> u64 {
        record_event_id(entry.get_value())
    }
}

/// The engine configuration both workloads use (see the module comment).
fn config(dir: &Path) -> Result<Config> {
    let Some(dir) = dir.to_str() else {
        return fail(format!("raft-engine: {} is not UTF-8", dir.display()));
    };
    Ok(Config {
        dir: dir.to_owned(),
        batch_compression_threshold: ReadableSize(0),
        recovery_mode: RecoveryMode::AbsoluteConsistency,
        ..Config::default()
    })
}

/// Workload 1: opens a new engine in `dir` and writes `records` as entries of one
/// group, `per_write` records per `Engine::write` (the last write syncs). Returns the
/// time from opening to the syncing write returning.
pub fn write(dir: &Path, records: &[RequestEvent], per_write: usize) -> Result<Written> {
    let per_write = per_write.max(1);
    let config = config(dir)?;
    let start = Instant::now();
    let engine = Engine::open(config).context(|| format!("raft-engine: open {}", dir.display()))?;
    let mut batch = LogBatch::default();
    // The messages are reused across batches (their byte vectors keep their
    // capacity), so the loop does not allocate one message per record.
    let mut entries: Vec<BytesValue> = Vec::with_capacity(per_write);
    let runs = records.len().div_ceil(per_write);
    for (i, run) in records.chunks(per_write).enumerate() {
        entries.resize_with(run.len(), BytesValue::new);
        for (entry, record) in entries.iter_mut().zip(run) {
            let value = entry.mut_value();
            value.clear();
            value.extend_from_slice(record.as_bytes());
        }
        batch
            .add_entries::<Records>(REGION, &entries)
            .context(|| format!("raft-engine: add entries of run {i}"))?;
        let sync = i + 1 == runs;
        engine
            .write(&mut batch, sync)
            .context(|| format!("raft-engine: write run {i} (sync {sync})"))?;
    }
    let elapsed = start.elapsed();
    let last = records.last().map_or(0, RequestEvent::event_id);
    if engine.last_index(REGION).unwrap_or(0) != last {
        return fail(format!(
            "raft-engine: last index {:?} after writing through {last}",
            engine.last_index(REGION)
        ));
    }
    Ok(Written {
        elapsed,
        finish: Box::new(move || {
            // Closes the active file (truncate and sync) and joins the engine's thread.
            drop(engine);
            Ok(())
        }),
    })
}

/// Workload 2: opens the engine in `dir` (recovery) and fetches every entry of the
/// group. Returns the time from opening to the last entry read, and the digest.
pub fn replay(dir: &Path) -> Result<(Duration, Digest)> {
    let config = config(dir)?;
    let start = Instant::now();
    let engine =
        Engine::open(config).context(|| format!("raft-engine: reopen {}", dir.display()))?;
    let (Some(first), Some(last)) = (engine.first_index(REGION), engine.last_index(REGION)) else {
        return fail(format!(
            "raft-engine: no entries recovered from {}",
            dir.display()
        ));
    };
    let mut digest = Digest::default();
    let mut fetched: Vec<BytesValue> = Vec::with_capacity(FETCH_ENTRIES as usize);
    let mut next = first;
    while next <= last {
        let end = next.saturating_add(FETCH_ENTRIES).min(last + 1);
        fetched.clear();
        let count = engine
            .fetch_entries_to::<Records>(REGION, next, end, None, &mut fetched)
            .context(|| format!("raft-engine: fetch entries {next}..{end}"))?;
        if u64::try_from(count).ok() != Some(end - next) {
            return fail(format!(
                "raft-engine: fetched {count} entries for {next}..{end}"
            ));
        }
        for entry in &fetched {
            digest.add(entry.get_value());
        }
        next = end;
    }
    let elapsed = start.elapsed();
    if first != 1 {
        return fail(format!("raft-engine: the first index is {first}, not 1"));
    }
    Ok((elapsed, digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{ScratchDir, reference_records};

    #[test]
    fn writes_and_replays_5000_records_both_ways() -> Result<()> {
        let records = reference_records(5000);
        let expected = Digest::of(&records);
        for per_write in [BATCH_RECORDS, 1] {
            let dir = ScratchDir::new(&std::env::temp_dir(), "raft-engine-test")?;
            let written = write(dir.path(), &records, per_write)?;
            (written.finish)()?;
            let (_, digest) = replay(dir.path())?;
            digest.check(&expected, "raft-engine")?;
        }
        Ok(())
    }
}
