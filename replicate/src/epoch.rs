//! The epoch record (`fswal.epoch`): which writer epoch of a stream a directory holds.
//!
//! `promote` fences a stream with a new epoch and then records it here; a shipper
//! publishes at the directory's epoch and refuses to when the stream has moved past it
//! (the directory's writer was fenced). A directory without the file is at epoch 1,
//! the epoch of a stream nobody promoted.
//!
//! Layout (64 bytes, little-endian): magic `FSWALEP1`, epoch (u64), the stream
//! sequence of the fence that began it (u64, 0 for epoch 1), 32 reserved zero bytes,
//! and `XXH64(bytes[0..56], seed 0)`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh64::xxh64;

use crate::message::EPOCH_FIRST;

/// The record's file name in a WAL directory.
pub const EPOCH_FILE_NAME: &str = "fswal.epoch";
/// Bytes in the record.
pub const EPOCH_RECORD_SIZE_BYTES: usize = 64;
const MAGIC: &[u8; 8] = b"FSWALEP1";
const CHECKSUM_AT: usize = EPOCH_RECORD_SIZE_BYTES - 8;

/// A directory's writer epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// The epoch.
    pub epoch: u64,
    /// The stream sequence of the fence that began it (0 for epoch 1).
    pub fence_sequence: u64,
}

impl Epoch {
    /// The epoch of a directory no promotion touched.
    pub const FIRST: Epoch = Epoch {
        epoch: EPOCH_FIRST,
        fence_sequence: 0,
    };

    fn encode(self) -> [u8; EPOCH_RECORD_SIZE_BYTES] {
        let mut b = [0u8; EPOCH_RECORD_SIZE_BYTES];
        b[..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        b[16..24].copy_from_slice(&self.fence_sequence.to_le_bytes());
        let sum = xxh64(&b[..CHECKSUM_AT], 0);
        b[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
        b
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let b: &[u8; EPOCH_RECORD_SIZE_BYTES] = bytes.try_into().ok()?;
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let sound = &b[..8] == MAGIC
            && word(CHECKSUM_AT) == xxh64(&b[..CHECKSUM_AT], 0)
            && b[24..CHECKSUM_AT].iter().all(|x| *x == 0)
            && word(8) >= EPOCH_FIRST;
        sound.then(|| Epoch {
            epoch: word(8),
            fence_sequence: word(16),
        })
    }
}

fn path_in(dir: &Path) -> PathBuf {
    dir.join(EPOCH_FILE_NAME)
}

/// The epoch `dir` records: [`Epoch::FIRST`] when it has no record. A record that
/// does not decode is an error naming the file: guessing an epoch could let a fenced
/// writer publish.
pub fn read_epoch(dir: &Path) -> io::Result<Epoch> {
    let path = path_in(dir);
    match fs::read(&path) {
        Ok(bytes) => Epoch::decode(&bytes).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not an epoch record ({} bytes at offset 0; a record is {EPOCH_RECORD_SIZE_BYTES} bytes with magic FSWALEP1 and a valid checksum)",
                    path.display(),
                    bytes.len()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Epoch::FIRST),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// Records `epoch` in `dir` atomically and durably: written to a temporary file,
/// synced, renamed over the record, and the directory synced. After a crash the old
/// record or the new one is there, whole.
pub fn write_epoch(dir: &Path, epoch: Epoch) -> io::Result<()> {
    let path = path_in(dir);
    let tmp = dir.join(format!("{EPOCH_FILE_NAME}.tmp"));
    let named = |e: io::Error, p: &Path| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| named(e, &tmp))?;
    f.write_all(&epoch.encode()).map_err(|e| named(e, &tmp))?;
    f.sync_all().map_err(|e| named(e, &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| named(e, &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| named(e, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_record_is_at_the_first_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_epoch(dir.path()).expect("reads"), Epoch::FIRST);
    }

    #[test]
    fn a_record_round_trips_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let two = Epoch {
            epoch: 2,
            fence_sequence: 77,
        };
        write_epoch(dir.path(), two).expect("writes");
        assert_eq!(read_epoch(dir.path()).expect("reads"), two);
        let three = Epoch {
            epoch: 3,
            fence_sequence: 90,
        };
        write_epoch(dir.path(), three).expect("writes");
        assert_eq!(read_epoch(dir.path()).expect("reads"), three);
        assert!(!dir.path().join("fswal.epoch.tmp").exists());
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = Epoch {
            epoch: 2,
            fence_sequence: 1,
        }
        .encode();
        bytes[9] ^= 1;
        fs::write(dir.path().join(EPOCH_FILE_NAME), bytes).expect("writes");
        let e = read_epoch(dir.path()).expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("fswal.epoch"), "{e}");
        fs::write(dir.path().join(EPOCH_FILE_NAME), [0u8; 3]).expect("writes");
        assert!(read_epoch(dir.path()).is_err());
    }
}
