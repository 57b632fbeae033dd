//! okaywal 0.3.1, driven through its public API.
//!
//! okaywal's unit of durability is the entry: `EntryWriter::commit` flushes and
//! `fdatasync`s the segment file (and syncs the directory when the file is new)
//! before it returns, and a recovered entry is all or nothing. So workload 1 writes
//! ONE entry holding the N records as N chunks (`write_chunk` once per record), then
//! commits once, which is exactly "append N records, then one durability call".
//!
//! The one setting changed from okaywal's defaults is `checkpoint_after_bytes`
//! (raised to `u64::MAX`). With the default (768 KiB) the commit would hand the
//! segment to okaywal's checkpointer thread, after which its entries belong to the
//! application's store and are no longer replayed when the log is reopened, so
//! workload 2 would have nothing to read. It also keeps okaywal from creating and
//! zero-filling a second segment during the timed commit.
//!
//! Workload 2 reopens the directory with a [`LogManager`] whose `recover` reads every
//! chunk of every entry in full and checks its CRC-32C (okaywal computes the CRC as
//! the chunk's bytes are read; `check_crc` compares it with the stored one).

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fswal_core::RequestEvent;
use okaywal::{
    Configuration, Entry, EntryId, LogManager, LogVoid, ReadChunkResult, SegmentReader,
    WriteAheadLog,
};
use zerocopy::IntoBytes;

use crate::common::{Context, Digest, RECORD_BYTES, Result, Written, fail};

/// The configuration both workloads open the log with (see the module comment).
fn configuration(dir: &Path) -> Configuration {
    Configuration::default_for(dir).checkpoint_after_bytes(u64::MAX)
}

/// Workload 1: opens a new log in `dir`, writes one entry of `records.len()` chunks
/// (one `write_chunk` call per record), commits it. Returns the time from opening to
/// `commit` returning.
pub fn write(dir: &Path, records: &[RequestEvent]) -> Result<Written> {
    let start = Instant::now();
    // `LogVoid` recovers nothing: the directory is new, there is nothing to recover.
    let wal = configuration(dir)
        .open(LogVoid)
        .context(|| format!("okaywal: open {}", dir.display()))?;
    let mut entry = wal
        .begin_entry()
        .context(|| "okaywal: begin_entry".to_owned())?;
    for record in records {
        entry
            .write_chunk(record.as_bytes())
            .context(|| format!("okaywal: write_chunk of event {}", record.event_id()))?;
    }
    entry.commit().context(|| "okaywal: commit".to_owned())?;
    let elapsed = start.elapsed();
    Ok(Written {
        elapsed,
        // Joins the checkpointer thread, which has nothing to do.
        finish: Box::new(move || wal.shutdown().context(|| "okaywal: shutdown".to_owned())),
    })
}

/// What recovery saw, shared between the [`LogManager`] (owned by the log) and the
/// caller.
#[derive(Debug, Default)]
struct Seen {
    digest: Digest,
    entries: u64,
}

/// A [`LogManager`] that reads back every chunk of every entry, checks each chunk's
/// CRC and feeds its bytes to a [`Digest`].
struct Verifier {
    seen: Arc<Mutex<Seen>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier")
    }
}

impl LogManager for Verifier {
    fn recover(&mut self, entry: &mut Entry<'_>) -> io::Result<()> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.entries += 1;
        let entry_id = entry.id();
        let mut record = [0u8; RECORD_BYTES];
        loop {
            match entry.read_chunk()? {
                ReadChunkResult::Chunk(mut chunk) => {
                    let length = chunk.bytes_remaining();
                    if usize::try_from(length).ok() != Some(RECORD_BYTES) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("a chunk of {length} bytes, not {RECORD_BYTES}"),
                        ));
                    }
                    chunk.read_exact(&mut record)?;
                    if !chunk.check_crc()? {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("CRC mismatch in a chunk at {:?}", chunk.log_position()),
                        ));
                    }
                    seen.digest.add(&record);
                }
                ReadChunkResult::EndOfEntry => return Ok(()),
                // Only a crash leaves one; this benchmark's logs are closed cleanly, so
                // it is an error here, not something to skip.
                ReadChunkResult::AbortedEntry => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("entry {entry_id:?} was aborted"),
                    ));
                }
            }
        }
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> io::Result<()> {
        // Never reached with `checkpoint_after_bytes = u64::MAX` and one segment.
        Ok(())
    }
}

/// Workload 2: reopens the log in `dir`; its recovery hands every entry to the
/// [`Verifier`]. Returns the time from opening to recovery finishing, and the digest.
pub fn replay(dir: &Path) -> Result<(Duration, Digest)> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let verifier = Verifier {
        seen: Arc::clone(&seen),
    };
    let start = Instant::now();
    let wal = configuration(dir)
        .open(verifier)
        .context(|| format!("okaywal: reopen and recover {}", dir.display()))?;
    let elapsed = start.elapsed();
    wal.shutdown().context(|| "okaywal: shutdown".to_owned())?;
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    if seen.entries != 1 {
        return fail(format!(
            "okaywal: recovered {} entries, not the 1 written",
            seen.entries
        ));
    }
    Ok((elapsed, seen.digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{ScratchDir, reference_records};

    #[test]
    fn writes_and_recovers_5000_records() -> Result<()> {
        let records = reference_records(5000);
        let dir = ScratchDir::new(&std::env::temp_dir(), "okaywal-test")?;
        let written = write(dir.path(), &records)?;
        (written.finish)()?;
        let (_, digest) = replay(dir.path())?;
        digest.check(&Digest::of(&records), "okaywal")
    }
}
