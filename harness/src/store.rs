//! The stores the command line opens: a WAL directory through one of three segment
//! backends, or a raw block device. [`AnyStore`] is one [`SegmentStore`] over all of
//! them, so the commands are written once.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use fswal_backends::dir::{CHECKPOINT_FILE_NAME, DirSegment, DirStore, MARK_FILE_NAME, SegmentDir};
use fswal_backends::direct::DirectDevice;
use fswal_backends::file::{FileDevice, FileError};
use fswal_backends::lz4::is_compressed_magic;
use fswal_backends::mmap::MmapDevice;
use fswal_backends::raw::RawStore;
use fswal_core::checkpoint::{CHECKPOINT_SIZE_BYTES, Checkpoint, CheckpointFields, CheckpointKind};
use fswal_core::cpp_meta::CppMeta;
use fswal_core::segment_header::SEGMENT_MAGIC;
use fswal_core::{BlockDevice, Issue, Reason, SegmentStore};

use crate::error::CliError;

/// How the segment files of a WAL directory are read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Positioned reads and writes through the page cache, `fdatasync`.
    File,
    /// A shared memory mapping, `msync`.
    Mmap,
    /// `O_DIRECT` (no page cache), sector-aligned, `fdatasync`.
    Direct,
}

/// Where a WAL is: the arguments every command shares.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// A WAL directory, or one segment file (`FS.%08u.wal`, or `.wal.lz4`).
    #[arg(required_unless_present = "device", conflicts_with = "device")]
    pub path: Option<PathBuf>,
    /// A raw block device holding a WAL, instead of a directory.
    #[arg(long, value_name = "PATH")]
    pub device: Option<PathBuf>,
    /// How segment files are read and written (a raw device is always O_DIRECT).
    #[arg(long, value_enum, default_value_t = Backend::File)]
    pub backend: Backend,
}

/// A WAL store of any kind the command line opens.
#[derive(Debug)]
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

/// Runs `$body` with `$s` bound to the store (or device) inside any variant.
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
            Self::File(s) => format!("{}: offset {offset_bytes}", s.segment_path(index).display()),
            Self::Mmap(s) => format!("{}: offset {offset_bytes}", s.segment_path(index).display()),
            Self::Direct(s) => {
                format!("{}: offset {offset_bytes}", s.segment_path(index).display())
            }
        }
    }

    /// The file holding segment `index` (the device, for a raw store).
    #[must_use]
    pub fn segment_file(&self, index: u32) -> PathBuf {
        match self {
            Self::Raw(s) => s.path().to_path_buf(),
            Self::File(s) => s.segment_path(index),
            Self::Mmap(s) => s.segment_path(index),
            Self::Direct(s) => s.segment_path(index),
        }
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
            Self::File(s) => dir_watermark_records(s.path()),
            Self::Mmap(s) => dir_watermark_records(s.path()),
            Self::Direct(s) => dir_watermark_records(s.path()),
        }
    }

    /// What the C++ recorder's meta file of a WAL directory says (a hint only), when it
    /// has one.
    pub fn cpp_meta(&self) -> Result<Option<CppMeta>, FileError> {
        match self {
            Self::Raw(_) => Ok(None),
            Self::File(s) => s.cpp_meta(),
            Self::Mmap(s) => s.cpp_meta(),
            Self::Direct(s) => s.cpp_meta(),
        }
    }

    /// The line that notes what the C++ recorder's meta file says, when the log's valid
    /// prefix ends before the event it names (it is only a hint: nothing is refused or
    /// changed because of it), or `None`.
    pub fn cpp_meta_note(&self, last_event_id: u64) -> Result<Option<String>, FileError> {
        let Some(meta) = self.cpp_meta()? else {
            return Ok(None);
        };
        Ok((meta.last_event_id > last_event_id).then(|| {
            format!(
                "note: the C++ recorder's wal_meta.dat names event {} (segment {}, offset {}), past the log's valid end at event {last_event_id}; it is a hint, never trusted over the segments",
                meta.last_event_id, meta.segment_index, meta.offset_bytes
            )
        }))
    }

    /// The command that salvages this log into a new one.
    #[must_use]
    pub fn salvage_command(&self) -> String {
        match self {
            Self::Raw(s) => format!("fswal salvage --device {} NEW_DIR", s.path().display()),
            Self::File(s) => format!("fswal salvage {} NEW_DIR", s.path().display()),
            Self::Mmap(s) => format!("fswal salvage {} NEW_DIR", s.path().display()),
            Self::Direct(s) => format!("fswal salvage {} NEW_DIR", s.path().display()),
        }
    }

    /// An issue as one line naming where it is.
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

/// The checkpoint and sync mark files of the WAL directory `dir`.
fn dir_watermark_records(dir: &Path) -> String {
    format!(
        "{} and {}",
        dir.join(CHECKPOINT_FILE_NAME).display(),
        dir.join(MARK_FILE_NAME).display()
    )
}

/// What a path turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory of segment files.
    Directory,
    /// One segment file.
    SegmentFile,
    /// A raw block device.
    Device,
}

/// A WAL opened read-only: nothing is created or modified through it.
#[derive(Debug)]
pub struct Source {
    /// The store over it.
    pub store: AnyStore,
    /// What it is.
    pub kind: Kind,
}

fn dir_store(
    backend: Backend,
    open: impl Fn() -> Result<DirStore, FileError>,
    path: &Path,
    single: bool,
) -> Result<AnyStore, FileError> {
    Ok(match (backend, single) {
        (Backend::File, _) => AnyStore::File(open()?),
        (Backend::Mmap, false) => AnyStore::Mmap(SegmentDir::open_read_only(path)?),
        (Backend::Mmap, true) => AnyStore::Mmap(SegmentDir::single_segment(path)?),
        (Backend::Direct, false) => AnyStore::Direct(SegmentDir::open_read_only(path)?),
        (Backend::Direct, true) => AnyStore::Direct(SegmentDir::single_segment(path)?),
    })
}

/// Opens the WAL `target` names, read-only.
pub fn open_read_only(target: &TargetArgs) -> Result<Source, CliError> {
    if let Some(device) = &target.device {
        return Ok(Source {
            store: AnyStore::Raw(RawStore::open(device, false, false)?),
            kind: Kind::Device,
        });
    }
    let Some(path) = target.path.as_deref() else {
        return Err(CliError::new(
            "give a WAL directory, a segment file, or --device",
        ));
    };
    let meta = fs::metadata(path).map_err(|e| CliError::at(path, e))?;
    if meta.is_dir() {
        let mut store = dir_store(
            target.backend,
            || DirStore::open_read_only(path),
            path,
            false,
        )?;
        if store.segment_range()?.is_none() && !is_new_log(&mut store)? {
            return Err(CliError::at(
                path,
                "not a WAL: the directory holds no FS.########.wal segment file",
            ));
        }
        Ok(Source {
            store,
            kind: Kind::Directory,
        })
    } else if meta.is_file() {
        refuse_without_magic(path)?;
        Ok(Source {
            store: dir_store(
                target.backend,
                || DirStore::single_segment(path),
                path,
                true,
            )?,
            kind: Kind::SegmentFile,
        })
    } else {
        Err(CliError::at(
            path,
            "neither a WAL directory nor a segment file (for a block device, use --device)",
        ))
    }
}

/// Whether a directory without segment files is a log fswal created and never appended
/// to, which reads as an empty log: its checkpoint (`fswal.meta`) decodes and records
/// nothing durable (segment 0, slot 0, event 0), and no sync mark records more.
/// `record --events 0` on a new directory, or a writer opened and closed, leaves one.
/// A record of durable events with no segment left means the segments were deleted,
/// and a directory without a record is not a log: both stay refused.
fn is_new_log(store: &mut AnyStore) -> Result<bool, CliError> {
    let nothing_durable = |fields: &CheckpointFields| {
        (fields.segment_index, fields.next_slot, fields.last_event_id) == (0, 0, 0)
    };
    let decoded =
        |bytes: Option<[u8; CHECKPOINT_SIZE_BYTES]>| bytes.map(|b| Checkpoint::decode(&b).ok());
    let checkpoint = decoded(store.read_checkpoint(CheckpointKind::Sealed)?);
    let mark = decoded(store.read_checkpoint(CheckpointKind::Synced)?);
    Ok(match (checkpoint, mark) {
        (Some(Some(c)), None) => nothing_durable(&c),
        (Some(Some(c)), Some(Some(m))) => nothing_durable(&c) && nothing_durable(&m),
        _ => false,
    })
}

/// Refuses a file given on its own that starts with neither the segment magic nor the
/// LZ4 container's: it is not a damaged WAL but no WAL at all, a usage error (inside a
/// WAL directory the same finding is reported as damage by replay).
fn refuse_without_magic(path: &Path) -> Result<(), CliError> {
    let mut head = [0u8; 8];
    let mut file = fs::File::open(path).map_err(|e| CliError::at(path, e))?;
    let mut n = 0;
    // Bounded by the 8 bytes asked for: each read returns at least one or ends it.
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CliError::at(path, e)),
        }
    }
    if n < 2 {
        // Shorter than a magic: replay reports it as too short for a header.
        return Ok(());
    }
    let found = u16::from_le_bytes([head[0], head[1]]);
    if found == SEGMENT_MAGIC || is_compressed_magic(&head[..n]) {
        return Ok(());
    }
    Err(CliError::at(
        path,
        format!("offset 0: {}", Reason::BadMagic { found }),
    ))
}
