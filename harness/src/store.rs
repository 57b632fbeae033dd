//! The stores the command line opens: a WAL directory through one of three segment
//! backends, or a raw block device. [`AnyStore`] is one [`SegmentStore`] over all of
//! them, so the commands are written once.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use fswal_backends::dir::{DirStore, SegmentDir};
use fswal_backends::file::FileError;
use fswal_backends::lz4::is_compressed_magic;
use fswal_backends::raw::RawStore;
use fswal_core::checkpoint::{CHECKPOINT_SIZE_BYTES, Checkpoint, CheckpointFields, CheckpointKind};
use fswal_core::segment_header::SEGMENT_MAGIC;
use fswal_core::{Reason, SegmentStore};

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

pub use fswal_backends::any::{AnyDevice, AnyStore};

/// The line that notes what the C++ recorder's meta file says, when the log's valid
/// prefix ends before the event it names (it is only a hint: nothing is refused or
/// changed because of it), or `None`.
pub fn cpp_meta_note(store: &AnyStore, last_event_id: u64) -> Result<Option<String>, FileError> {
    let Some(meta) = store.cpp_meta()? else {
        return Ok(None);
    };
    Ok((meta.last_event_id > last_event_id).then(|| {
        format!(
            "note: the C++ recorder's wal_meta.dat names event {} (segment {}, offset {}), past the log's valid end at event {last_event_id}; it is a hint, never trusted over the segments",
            meta.last_event_id, meta.segment_index, meta.offset_bytes
        )
    }))
}

/// The command that salvages the log in `store` into a new one.
#[must_use]
pub fn salvage_command(store: &AnyStore) -> String {
    match store {
        AnyStore::Raw(s) => format!("fswal salvage --device {} NEW_DIR", s.path().display()),
        other => format!("fswal salvage {} NEW_DIR", other.path().display()),
    }
}

impl From<Backend> for fswal_backends::any::Backend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::File => Self::File,
            Backend::Mmap => Self::Mmap,
            Backend::Direct => Self::Direct,
        }
    }
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

impl Source {
    /// The same source for a diagnostic reader: a compressed segment that does not
    /// decompress with every checksum is a missing segment (a gap replay reports and
    /// goes on after), not an error that ends the read.
    #[must_use]
    pub fn skipping_unreadable_compressed(self) -> Self {
        Self {
            store: self.store.skip_unreadable_compressed(true),
            kind: self.kind,
        }
    }

    /// One line on stderr for each compressed segment skipped so.
    pub fn report_unreadable_compressed(&self) {
        for (index, why) in self.store.unreadable_compressed() {
            eprintln!(
                "fswal: segment {index} skipped: its compressed file does not decompress: {why}"
            );
        }
    }
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
    Err(CliError::at_offset(path, 0, Reason::BadMagic { found }))
}
