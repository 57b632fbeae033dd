//! What every library's driver shares: the records, the digest that proves every
//! record was read back, errors with context, scratch directories and disk usage.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use fswal_core::RequestEvent;
use fswal_core::reference::reference_event;

/// Bytes in one record: one fswal request event.
pub const RECORD_BYTES: usize = 64;

/// What a workload-1 run returns: its time, and the still-open log.
///
/// The log is closed by [`Written::finish`], outside the timed region, so that the
/// sync count of a run (whose child process exits without finishing) covers exactly
/// the timed region: from opening the log to the durability call returning.
pub struct Written {
    /// From opening the log to the durability call returning.
    pub elapsed: std::time::Duration,
    /// Closes or drops the library's handles.
    pub finish: Box<dyn FnOnce() -> Result<()>>,
}

/// An error, with what was being done when it happened.
#[derive(Debug)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

/// The result type of everything that can fail here.
pub type Result<T> = std::result::Result<T, BenchError>;

/// Adds what was being done to an error, so that a failure names its library, step
/// and path instead of a bare `os error 2`.
pub trait Context<T> {
    /// Wraps the error as `"{what}: {error}"`; `what` is only built on failure.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| BenchError(format!("{}: {e}", what())))
    }
}

/// An error made from a message.
pub fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(BenchError(message.into()))
}

/// The records every library writes: reference events 1..=n, so that every library
/// stores exactly the same bytes. Built once, outside any timed region.
pub fn reference_records(n: u64) -> Vec<RequestEvent> {
    (1..=n).map(reference_event).collect()
}

/// The event id a record starts with (bytes 0..8, little-endian), 0 when it is too
/// short to hold one (raft-engine's log index of a record).
#[cfg_attr(not(feature = "raft-engine"), allow(dead_code))]
pub fn record_event_id(record: &[u8]) -> u64 {
    record
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// An order-dependent digest of the record bytes read back, with their count.
///
/// Every replay feeds every record it hands out through [`Digest::add`], and the
/// result must equal the digest of what was written: a library that skipped records,
/// reordered them or handed out other bytes fails the run. The mixing costs a few
/// nanoseconds a record and is the same code for every library.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// Records added.
    pub count: u64,
    /// Records whose length was not [`RECORD_BYTES`] (always 0 in a good run).
    pub wrong_length: u64,
    /// The running hash.
    pub hash: u64,
}

impl Digest {
    /// Adds one record read back (or written).
    #[inline]
    pub fn add(&mut self, record: &[u8]) {
        self.count += 1;
        let Ok(record) = <&[u8; RECORD_BYTES]>::try_from(record) else {
            self.wrong_length += 1;
            return;
        };
        let mut fold = 0u64;
        for word in record.chunks_exact(8) {
            let word = <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes);
            fold = fold.rotate_left(7) ^ word;
        }
        self.hash = (self.hash.rotate_left(23) ^ fold).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// The digest of `records`, as written.
    pub fn of(records: &[RequestEvent]) -> Self {
        use zerocopy::IntoBytes;
        let mut digest = Self::default();
        for record in records {
            digest.add(record.as_bytes());
        }
        digest
    }

    /// Fails unless `self` (what `what` read back) equals `expected` (what was
    /// written).
    pub fn check(&self, expected: &Self, what: &str) -> Result<()> {
        if self == expected {
            return Ok(());
        }
        fail(format!(
            "{what}: read back {} records ({} of the wrong length), digest {:016x}; \
             wrote {} records, digest {:016x}",
            self.count, self.wrong_length, self.hash, expected.count, expected.hash
        ))
    }
}

/// A scratch directory path that is removed (with everything in it) when dropped.
///
/// The directory itself is not created: each library creates its own, as it would in
/// real use, and that creation is part of what is timed.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    /// A new, not yet existing path under `base` whose name contains `label`.
    pub fn new(base: &Path, label: &str) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = base.join(format!(
            "fswal-bench-compare-{}-{}-{nanos}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if path.exists() {
            return fail(format!("{} already exists", path.display()));
        }
        Ok(Self { path, keep: false })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place when dropped (for the child of a sync count,
    /// whose parent removes it).
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Best effort: a leftover directory in the temp dir is not worth failing a
            // finished measurement for, but it is worth saying.
            Err(e) => eprintln!("warning: could not remove {}: {e}", self.path.display()),
        }
    }
}

/// What a log occupies on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Regular files under the directory.
    pub files: u64,
    /// The sum of their lengths.
    pub bytes: u64,
    /// The sum of their allocated blocks (`st_blocks * 512`): preallocation shows
    /// here, holes do not.
    pub allocated_bytes: u64,
}

/// Sums the regular files under `dir`, recursively (symbolic links are not followed).
pub fn disk_usage(dir: &Path) -> Result<DiskUsage> {
    let mut usage = DiskUsage::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = fs::read_dir(&current).context(|| format!("list {}", current.display()))?;
        for entry in entries {
            let entry = entry.context(|| format!("list {}", current.display()))?;
            let path = entry.path();
            let metadata =
                fs::symlink_metadata(&path).context(|| format!("stat {}", path.display()))?;
            if metadata.is_dir() {
                pending.push(path);
            } else if metadata.is_file() {
                usage.files += 1;
                usage.bytes += metadata.len();
                usage.allocated_bytes += metadata.blocks() * 512;
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_order_and_bytes() {
        let records = reference_records(3);
        let forward = Digest::of(&records);
        let mut reversed = records.clone();
        reversed.reverse();
        assert_ne!(forward, Digest::of(&reversed));
        assert_eq!(forward.count, 3);
        let mut short = Digest::default();
        short.add(&[0u8; 10]);
        assert_eq!(short.wrong_length, 1);
    }

    #[test]
    fn record_event_id_reads_the_first_eight_bytes() {
        use zerocopy::IntoBytes;
        let record = reference_event(4242);
        assert_eq!(record_event_id(record.as_bytes()), 4242);
        assert_eq!(record_event_id(&[1, 2]), 0);
    }
}
