//! `SegmentStore`: a WAL as a numbered set of segments, each a [`BlockDevice`].
//!
//! A directory of `FS.%08u.wal` files is one store; the slots of a raw block device
//! are another; memory is a third. Replay walks a store from its lowest segment index
//! to its highest; the writer creates segments in it.

use heapless::String;

use crate::checkpoint::{CHECKPOINT_SIZE_BYTES, CheckpointKind};
use crate::device::{BlockDevice, DeviceError};
use crate::limits::SEGMENT_INDEX_MAX;

/// Bytes in a segment file name: `FS.` + 8 digits + `.wal`.
pub const SEGMENT_FILE_NAME_LEN: usize = 15;

/// A numbered set of segments.
pub trait SegmentStore {
    /// The device holding one segment.
    type Device: BlockDevice<Error = Self::Error>;
    /// Errors of the store and of its devices.
    type Error: DeviceError;

    /// The lowest and highest index of the segments present, or `None` when there are
    /// none. Indices in between may be missing; replay reports each missing one.
    fn segment_range(&mut self) -> Result<Option<(u32, u32)>, Self::Error>;

    /// Opens segment `index`, or returns `None` when it does not exist.
    fn open_segment(&mut self, index: u32) -> Result<Option<Self::Device>, Self::Error>;

    /// Creates segment `index`, `size_bytes` long, holding `initial` at offset 0 and
    /// zeros after it, and returns it open for writing.
    ///
    /// Creation is atomic and durable: once this returns `Ok`, a crash leaves the whole
    /// new segment; before, it leaves no segment `index` at all. It fails with
    /// [`crate::device::ErrorKind::AlreadyExists`] when segment `index` exists, and with
    /// [`crate::device::ErrorKind::PermissionDenied`] on a store opened read-only.
    fn create_segment(
        &mut self,
        index: u32,
        size_bytes: u64,
        initial: &[u8],
    ) -> Result<Self::Device, Self::Error>;

    /// Makes durable what the store lists and records now, whoever changed it: which
    /// segments exist (for a directory, its entries: creations, renames, removals) and
    /// both checkpoint records.
    ///
    /// A writer reopening a log calls it, with a sync of every segment that may hold
    /// unsynced writes, before it relies on anything it read (to create a segment,
    /// write a checkpoint or acknowledge an event): after a process crash, what the
    /// crashed process did may be visible through a cache and still not durable, and a
    /// later power cut would then take it away from under what was built on it.
    fn sync_metadata(&mut self) -> Result<(), Self::Error>;

    /// Removes segment `index` durably (for a directory: unlink, then sync the
    /// directory). Only retention calls it, and only for a sealed segment older than
    /// the active one; removing a segment that does not exist is not an error.
    fn remove_segment(&mut self, index: u32) -> Result<(), Self::Error>;

    /// Called once segment `index` is sealed and durable: the store may now move it to
    /// cold storage (a directory compresses it when asked to). The segment must read
    /// back the same afterwards.
    fn segment_sealed(&mut self, index: u32) -> Result<(), Self::Error>;

    /// The stored checkpoint record of `kind`, or `None` when there is none.
    fn read_checkpoint(
        &mut self,
        kind: CheckpointKind,
    ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, Self::Error>;

    /// Replaces the checkpoint record of `kind` atomically and durably: when this
    /// returns, the new record is durable; after a crash before that, the old record or
    /// the new one is there, whole. The sealed kind is rare and may cost a rename and
    /// a directory sync; the synced kind comes with every sync and should be one sector
    /// rewritten in place.
    fn write_checkpoint(
        &mut self,
        kind: CheckpointKind,
        record: &[u8; CHECKPOINT_SIZE_BYTES],
    ) -> Result<(), Self::Error>;
}

impl<T: SegmentStore + ?Sized> SegmentStore for &mut T {
    type Device = T::Device;
    type Error = T::Error;

    fn segment_range(&mut self) -> Result<Option<(u32, u32)>, Self::Error> {
        T::segment_range(self)
    }
    fn open_segment(&mut self, index: u32) -> Result<Option<Self::Device>, Self::Error> {
        T::open_segment(self, index)
    }
    fn create_segment(
        &mut self,
        index: u32,
        size_bytes: u64,
        initial: &[u8],
    ) -> Result<Self::Device, Self::Error> {
        T::create_segment(self, index, size_bytes, initial)
    }
    fn sync_metadata(&mut self) -> Result<(), Self::Error> {
        T::sync_metadata(self)
    }
    fn remove_segment(&mut self, index: u32) -> Result<(), Self::Error> {
        T::remove_segment(self, index)
    }
    fn segment_sealed(&mut self, index: u32) -> Result<(), Self::Error> {
        T::segment_sealed(self, index)
    }
    fn read_checkpoint(
        &mut self,
        kind: CheckpointKind,
    ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, Self::Error> {
        T::read_checkpoint(self, kind)
    }
    fn write_checkpoint(
        &mut self,
        kind: CheckpointKind,
        record: &[u8; CHECKPOINT_SIZE_BYTES],
    ) -> Result<(), Self::Error> {
        T::write_checkpoint(self, kind, record)
    }
}

/// The file name of segment `index`: `FS.` + 8 zero-padded decimal digits + `.wal`.
/// Indices above [`SEGMENT_INDEX_MAX`] have no name.
#[must_use]
pub fn segment_file_name(index: u32) -> Option<String<SEGMENT_FILE_NAME_LEN>> {
    if index > SEGMENT_INDEX_MAX {
        return None;
    }
    let mut digits = [b'0'; 8];
    let mut rest = index;
    for d in digits.iter_mut().rev() {
        // `rest % 10 < 10`: the cast is exact.
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let mut name = String::new();
    for part in [b"FS.".as_slice(), &digits, b".wal"] {
        for &b in part {
            name.push(char::from(b)).ok()?;
        }
    }
    Some(name)
}

/// The index in a segment file name, or `None` when `name` is not exactly
/// `FS.` + 8 decimal digits + `.wal`.
#[must_use]
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("FS.")?.strip_suffix(".wal")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(0).unwrap().as_str(), "FS.00000000.wal");
        assert_eq!(segment_file_name(42).unwrap().as_str(), "FS.00000042.wal");
        assert_eq!(
            segment_file_name(SEGMENT_INDEX_MAX).unwrap().as_str(),
            "FS.99999999.wal"
        );
        assert_eq!(segment_file_name(SEGMENT_INDEX_MAX + 1), None);
        for i in [0, 1, 7, 12_345_678, SEGMENT_INDEX_MAX] {
            assert_eq!(
                parse_segment_file_name(segment_file_name(i).unwrap().as_str()),
                Some(i)
            );
        }
    }

    #[test]
    fn other_names_are_not_segments() {
        for name in [
            "FS.0.wal",
            "FS.000000001.wal",
            "FS.0000000a.wal",
            "fs.00000000.wal",
            "FS.00000000.wal.tmp",
            "FS.+0000000.wal",
            "FS.00000000.WAL",
            "",
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name}");
        }
    }
}
