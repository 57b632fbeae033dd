//! [`AnyStore`]: a WAL on any backend, chosen at run time: a directory through the
//! file, mmap or `O_DIRECT` backend, or a raw block device. Its segments are
//! [`AnyDevice`]s. It forwards every call to the store it holds: what each backend
//! promises (crash contracts, locking) is unchanged.

use std::fmt;
use std::format;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;

use fswal_core::checkpoint::{CHECKPOINT_SIZE_BYTES, CheckpointKind};
use fswal_core::cpp_meta::CppMeta;
use fswal_core::{BlockDevice, Issue, SegmentStore};

use crate::dir::{
    CHECKPOINT_FILE_NAME, DirPreparer, DirSegment, DirStore, MARK_FILE_NAME, SegmentDir, TornCopy,
};
use crate::direct::DirectDevice;
use crate::file::{FileDevice, FileError};
use crate::mmap::MmapDevice;
use crate::raw::RawStore;

/// How the segment files of a WAL directory are read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// Positioned reads and writes through the page cache, `fdatasync`
    /// ([`FileDevice`]).
    #[default]
    File,
    /// A shared memory mapping, `msync` ([`MmapDevice`]).
    Mmap,
    /// `O_DIRECT` (no page cache), sector-aligned, `fdatasync` ([`DirectDevice`]).
    Direct,
}

/// A WAL store of any kind.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// A directory through the file backend.
    File(DirStore),
    /// A directory through the mmap backend.
    Mmap(SegmentDir<MmapDevice>),
    /// A directory through the `O_DIRECT` backend.
    Direct(SegmentDir<DirectDevice>),
    /// A raw block device.
    Raw(RawStore),
}

/// A segment of an [`AnyStore`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyDevice {
    /// A segment file through the file backend.
    File(DirSegment<FileDevice>),
    /// A segment file through the mmap backend.
    Mmap(DirSegment<MmapDevice>),
    /// A segment file through the `O_DIRECT` backend.
    Direct(DirSegment<DirectDevice>),
    /// A segment slot of a raw device.
    Raw(DirectDevice),
}

/// Runs `$body` with `$s` bound to the store inside any variant.
macro_rules! each {
    ($value:expr, $s:ident => $body:expr) => {
        match $value {
            AnyStore::File($s) => $body,
            AnyStore::Mmap($s) => $body,
            AnyStore::Direct($s) => $body,
            AnyStore::Raw($s) => $body,
        }
    };
}

/// Runs `$body` with `$d` bound to the device inside any variant.
macro_rules! each_device {
    ($value:expr, $d:ident => $body:expr) => {
        match $value {
            AnyDevice::File($d) => $body,
            AnyDevice::Mmap($d) => $body,
            AnyDevice::Direct($d) => $body,
            AnyDevice::Raw($d) => $body,
        }
    };
}

/// Runs `$body` with `$s` bound to the directory store inside a directory variant;
/// `$raw` for a raw device.
macro_rules! each_dir {
    ($value:expr, $s:ident => $body:expr, $raw:ident => $other:expr) => {
        match $value {
            AnyStore::File($s) => $body,
            AnyStore::Mmap($s) => $body,
            AnyStore::Direct($s) => $body,
            AnyStore::Raw($raw) => $other,
        }
    };
}

impl BlockDevice for AnyDevice {
    type Error = FileError;

    fn write_granularity_bytes(&self) -> u32 {
        each_device!(self, d => d.write_granularity_bytes())
    }
    fn len_bytes(&self) -> u64 {
        each_device!(self, d => d.len_bytes())
    }
    fn capacity_bytes(&self) -> u64 {
        each_device!(self, d => d.capacity_bytes())
    }
    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), FileError> {
        each_device!(self, d => d.read_exact_at(offset_bytes, buf))
    }
    fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), FileError> {
        each_device!(self, d => d.write_all_at(offset_bytes, buf))
    }
    fn sync(&mut self) -> Result<(), FileError> {
        each_device!(self, d => d.sync())
    }
    fn mapped_bytes(&self) -> Option<&[u8]> {
        each_device!(self, d => d.mapped_bytes())
    }
}

impl SegmentStore for AnyStore {
    type Device = AnyDevice;
    type Error = FileError;

    fn segment_range(&mut self) -> Result<Option<(u32, u32)>, FileError> {
        each!(self, s => s.segment_range())
    }
    fn open_segment(&mut self, index: u32) -> Result<Option<AnyDevice>, FileError> {
        Ok(match self {
            Self::File(s) => s.open_segment(index)?.map(AnyDevice::File),
            Self::Mmap(s) => s.open_segment(index)?.map(AnyDevice::Mmap),
            Self::Direct(s) => s.open_segment(index)?.map(AnyDevice::Direct),
            Self::Raw(s) => s.open_segment(index)?.map(AnyDevice::Raw),
        })
    }
    fn create_segment(
        &mut self,
        index: u32,
        size_bytes: u64,
        initial: &[u8],
    ) -> Result<AnyDevice, FileError> {
        Ok(match self {
            Self::File(s) => AnyDevice::File(s.create_segment(index, size_bytes, initial)?),
            Self::Mmap(s) => AnyDevice::Mmap(s.create_segment(index, size_bytes, initial)?),
            Self::Direct(s) => AnyDevice::Direct(s.create_segment(index, size_bytes, initial)?),
            Self::Raw(s) => AnyDevice::Raw(s.create_segment(index, size_bytes, initial)?),
        })
    }
    fn sync_metadata(&mut self) -> Result<(), FileError> {
        each!(self, s => s.sync_metadata())
    }
    fn remove_segment(&mut self, index: u32) -> Result<(), FileError> {
        each!(self, s => s.remove_segment(index))
    }
    fn segment_sealed(&mut self, index: u32) -> Result<(), FileError> {
        each!(self, s => s.segment_sealed(index))
    }
    fn read_checkpoint(
        &mut self,
        kind: CheckpointKind,
    ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, FileError> {
        each!(self, s => s.read_checkpoint(kind))
    }
    fn write_checkpoint(
        &mut self,
        kind: CheckpointKind,
        record: &[u8; CHECKPOINT_SIZE_BYTES],
    ) -> Result<(), FileError> {
        each!(self, s => s.write_checkpoint(kind, record))
    }
}

impl AnyStore {
    /// Opens the WAL directory `dir` for appending through `backend` (see
    /// [`SegmentDir::open_for_append`]: made if missing, locked for the store's life).
    /// The file backend writes from a thread of its own, so that building blocks and
    /// copying them into the page cache overlap.
    pub fn open_dir_for_append(dir: &Path, backend: Backend) -> Result<Self, FileError> {
        Ok(match backend {
            Backend::File => Self::File(DirStore::open_for_append(dir)?.write_thread(true)),
            Backend::Mmap => Self::Mmap(SegmentDir::open_for_append(dir)?),
            Backend::Direct => Self::Direct(SegmentDir::open_for_append(dir)?),
        })
    }

    /// Opens the WAL directory `dir` read-only through `backend`.
    pub fn open_dir_read_only(dir: &Path, backend: Backend) -> Result<Self, FileError> {
        Ok(match backend {
            Backend::File => Self::File(DirStore::open_read_only(dir)?),
            Backend::Mmap => Self::Mmap(SegmentDir::open_read_only(dir)?),
            Backend::Direct => Self::Direct(SegmentDir::open_read_only(dir)?),
        })
    }

    /// Opens the raw block device `path` for appending, formatting it with segments of
    /// `blocks_per_segment` slots when it is blank (see [`RawStore::open_or_format`]);
    /// with `dsync`, `O_DSYNC`.
    pub fn open_device_for_append(
        path: &Path,
        blocks_per_segment: u32,
        dsync: bool,
    ) -> Result<Self, FileError> {
        let (store, _formatted) = RawStore::open_or_format(
            path,
            blocks_per_segment,
            fswal_core::writer::wall_clock_ns(),
            dsync,
        )?;
        Ok(Self::Raw(store))
    }

    /// The same store, replacing each sealed segment of a directory by its LZ4 frame
    /// (see [`SegmentDir::compress_sealed`]); a raw device keeps its segments as they
    /// are.
    #[must_use]
    pub fn compress_sealed(self, on: bool) -> Self {
        match self {
            Self::File(s) => Self::File(s.compress_sealed(on)),
            Self::Mmap(s) => Self::Mmap(s.compress_sealed(on)),
            Self::Direct(s) => Self::Direct(s.compress_sealed(on)),
            Self::Raw(s) => Self::Raw(s),
        }
    }

    /// The same store, allocating (or not) the next segment's file when a segment is
    /// created (see [`SegmentDir::prepare_ahead`]); a raw device has its slots already.
    #[must_use]
    pub fn prepare_ahead(self, on: bool) -> Self {
        match self {
            Self::File(s) => Self::File(s.prepare_ahead(on)),
            Self::Mmap(s) => Self::Mmap(s.prepare_ahead(on)),
            Self::Direct(s) => Self::Direct(s.prepare_ahead(on)),
            Self::Raw(s) => Self::Raw(s),
        }
    }

    /// The same read-only store, reporting a compressed segment that does not
    /// decompress with every checksum as missing (see
    /// [`SegmentDir::skip_unreadable_compressed`]); a raw device has no compressed
    /// segments.
    #[must_use]
    pub fn skip_unreadable_compressed(self, on: bool) -> Self {
        match self {
            Self::File(s) => Self::File(s.skip_unreadable_compressed(on)),
            Self::Mmap(s) => Self::Mmap(s.skip_unreadable_compressed(on)),
            Self::Direct(s) => Self::Direct(s.skip_unreadable_compressed(on)),
            Self::Raw(s) => Self::Raw(s),
        }
    }

    /// The compressed segments skipped so, by index, each with its error as one line
    /// (naming the file and the offset of the bad bytes).
    #[must_use]
    pub fn unreadable_compressed(&self) -> Vec<(u32, String)> {
        let listed = each_dir!(self, s => Some(s.unreadable_compressed()), _raw => None);
        listed.map_or_else(Vec::new, |m| {
            m.iter().map(|(index, e)| (*index, e.to_string())).collect()
        })
    }

    /// A handle that allocates a directory's segment files ahead of need from another
    /// thread; `None` for a raw device.
    #[must_use]
    pub fn preparer(&self) -> Option<DirPreparer> {
        each_dir!(self, s => Some(s.preparer()), _raw => None)
    }

    /// The WAL directory, or the device.
    #[must_use]
    pub fn path(&self) -> &Path {
        each!(self, s => s.path())
    }

    /// Where byte `offset_bytes` of segment `index` is, for a message: the segment
    /// file and the offset in it, or the device and the offset on it.
    #[must_use]
    pub fn locate(&self, index: u32, offset_bytes: u64) -> String {
        match self {
            Self::Raw(s) => format!(
                "{}: offset {} (segment {index}, offset {offset_bytes} in it)",
                s.path().display(),
                s.device_offset_bytes(index, offset_bytes)
            ),
            _ => format!(
                "{}: offset {offset_bytes}",
                self.segment_file(index).display()
            ),
        }
    }

    /// The file holding segment `index` (the device, for a raw store).
    #[must_use]
    pub fn segment_file(&self, index: u32) -> PathBuf {
        each_dir!(self, s => s.segment_path(index), raw => raw.path().to_path_buf())
    }

    /// The durable watermark's two records, as a user finds them: the checkpoint and
    /// sync mark files of a directory, or the sectors of a raw device.
    #[must_use]
    pub fn watermark_records(&self) -> String {
        match self {
            Self::Raw(s) => format!(
                "the checkpoint and sync-mark sectors of {} (offsets 4096 and 8192)",
                s.path().display()
            ),
            _ => format!(
                "{} and {}",
                self.path().join(CHECKPOINT_FILE_NAME).display(),
                self.path().join(MARK_FILE_NAME).display()
            ),
        }
    }

    /// What the C++ recorder's meta file of a WAL directory says (a hint only), when it
    /// has one.
    pub fn cpp_meta(&self) -> Result<Option<CppMeta>, FileError> {
        each_dir!(self, s => s.cpp_meta(), _raw => Ok(None))
    }

    /// The torn-tail copies earlier versions of fswal made in a WAL directory (see
    /// [`SegmentDir::torn_copies`]); none on a raw device, whose quarantine entries
    /// are [`RawStore::quarantine`].
    pub fn torn_copies(&self) -> Result<Vec<TornCopy>, FileError> {
        each_dir!(self, s => s.torn_copies(), _raw => Ok(Vec::new()))
    }

    /// An issue as one line naming where it is: the file and offset, the block, and
    /// the reason.
    #[must_use]
    pub fn issue_line(&self, issue: &Issue) -> String {
        let block = issue
            .block
            .map(|b| format!(" (block {b})"))
            .unwrap_or_default();
        format!(
            "{}{block}: {}",
            self.locate(issue.segment, issue.offset_bytes),
            issue.reason
        )
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::File => "file",
            Self::Mmap => "mmap",
            Self::Direct => "direct",
        })
    }
}
