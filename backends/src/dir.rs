//! The directory backend: [`DirStore`], a WAL as a directory of `FS.%08u.wal` files.
//!
//! A store is opened in one of three ways:
//!
//! - [`DirStore::open_read_only`]: to replay or verify. It creates and modifies
//!   nothing, and its segments are opened read-only.
//! - [`DirStore::open_for_append`]: to write. It creates the directory if needed and
//!   holds an exclusive lock on `.fswal.lock` in it for as long as it lives, so two
//!   writers never append to one WAL.
//! - [`DirStore::single_segment`]: one segment file on its own, read-only, to verify a
//!   file that may not even be in a WAL directory.
//!
//! Only regular files (symbolic links followed) named exactly `FS.` + 8 digits +
//! `.wal` are segments; everything else in the directory (temporary files of a crashed
//! creation, the lock file, notes) is ignored. Torn-tail copies that earlier versions
//! of fswal made (`FS.%08u.wal.torn-<offset>`) are listed by [`SegmentDir::torn_copies`]
//! and removed with their segment.
//!
//! Durability: a segment is created under a temporary name, fully allocated, written
//! and synced, then renamed to its name, and the directory is synced. A crash leaves
//! either the whole segment or none, plus at worst a stale `.tmp` file that the next
//! creation of that segment removes.
//!
//! The core's writer and replay over a directory (the `fswal` crate's `Wal` wraps
//! this):
//!
//! ```
//! use fswal_backends::dir::DirStore;
//! use fswal_core::reference::reference_event;
//! use fswal_core::writer::wall_clock_ns;
//! use fswal_core::{Mode, Replay, Status, WalWriter, WriterConfig};
//!
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path().join("wal");
//! let store = DirStore::open_for_append(&dir)?; // locked while it lives
//! let (mut writer, _recovery) = WalWriter::open(store, wall_clock_ns, WriterConfig::with_blocks(16))?;
//! for id in 1..=5000 {
//!     writer.append(&reference_event(id))?;
//! }
//! writer.close()?; // seals and syncs
//! drop(writer);
//!
//! let mut ids = Vec::new();
//! let summary = Replay::new(DirStore::open_read_only(&dir)?, Mode::Strict)
//!     .run(|e| ids.push(e.event_id()))?;
//! assert_eq!((summary.status, ids.len()), (Status::Ok, 5000));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::format;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::vec;
use std::vec::Vec;

use fswal_core::BlockDevice;
use fswal_core::SegmentStore;
use fswal_core::checkpoint::{CHECKPOINT_SIZE_BYTES, CheckpointKind};
use fswal_core::cpp_meta::CppMeta;
use fswal_core::limits::{SEGMENT_HEADER_SIZE_BYTES, SEGMENT_INDEX_MAX};
use fswal_core::segment_header::{HeaderState, SegmentHeader};
use fswal_core::store::{parse_segment_file_name, segment_file_name};

use crate::file::{FileDevice, FileError, SegmentFile, create_dir_durably, sync_dir};
mod checkpoint;
mod lock;
mod preparer;
mod segment;
mod torn;
mod twins;

use lock::lock_exclusive;
pub use preparer::DirPreparer;
pub use segment::DirSegment;
pub use torn::TornCopy;

use crate::lz4::{
    COMPRESSED_SUFFIX, Lz4Device, MAGIC_PROBE_BYTES, compress_segment, is_compressed_magic,
};

/// The name of the lock file a writer holds in the WAL directory.
pub const LOCK_FILE_NAME: &str = ".fswal.lock";

/// The checkpoint file in a WAL directory (see [`fswal_core::checkpoint`]).
pub const CHECKPOINT_FILE_NAME: &str = "fswal.meta";

/// The C++ recorder's meta file in a WAL directory: read as a hint only, never written
/// (see [`fswal_core::cpp_meta`]).
pub const CPP_META_FILE_NAME: &str = "wal_meta.dat";

/// The suffix of a segment file allocated ahead of need (no header yet).
pub const PREPARED_SUFFIX: &str = ".prep";

/// The sync mark file in a WAL directory: one checkpoint record at offset 0 of a 4 KiB
/// file, rewritten in place after every sync.
pub const MARK_FILE_NAME: &str = "fswal.mark";

/// The suffix that starts the name of a torn-tail copy (see [`TornCopy`]), after the
/// segment's file name.
pub const TORN_COPY_INFIX: &str = ".torn-";

/// How a store was opened.
#[derive(Debug)]
enum Access {
    /// Replay only: nothing is created or modified.
    ReadOnly,
    /// A writer's store, holding the lock file open (and locked) for its lifetime.
    Append {
        /// Never read: the lock lives as long as the descriptor does.
        _lock: File,
    },
    /// One segment file with this index, read-only.
    Single { index: u32 },
}

/// A WAL directory of `FS.%08u.wal` segment files (or, from
/// [`SegmentDir::single_segment`], one segment file), whose segments are devices of
/// kind `D`.
#[derive(Debug)]
pub struct SegmentDir<D> {
    /// The directory, or the file of a single-segment store.
    path: PathBuf,
    access: Access,
    /// Whether a sealed segment is replaced by its LZ4 container.
    compress_sealed: bool,
    /// Whether creating a segment also allocates the next one's file (off when a
    /// preparer thread does it, see [`SegmentDir::preparer`]).
    prepare_ahead: bool,
    /// Whether segment devices opened for writing issue their writes from a thread of
    /// their own (see [`FileDevice::set_write_thread`]).
    write_thread: bool,
    /// The sync mark file, kept open once written: it is rewritten after every sync.
    mark: Option<File>,
    /// The segments that have torn-tail copies, listed once on the first removal (so
    /// that retention does not list the directory at every rotation).
    torn_segments: Option<std::collections::BTreeSet<u32>>,
    /// The segments stored both raw and compressed whose two copies were compared (see
    /// [`twins`]), so that each pair is compared once in the store's life. Such pairs
    /// come only from an interrupted compression, one per crash at most.
    twins_checked: std::collections::BTreeSet<u32>,
    /// Whether a compressed segment that does not decompress with every checksum is
    /// reported missing instead of failing the read (see
    /// [`SegmentDir::skip_unreadable_compressed`]).
    skip_unreadable: bool,
    /// The compressed segments skipped so, with why: at most one per segment index.
    unreadable: std::collections::BTreeMap<u32, FileError>,
    /// The device kind of the segments: a type only, no value.
    device: PhantomData<fn() -> D>,
}

/// The segment index and whether the file is compressed, for a name that is exactly
/// `FS.` + 8 digits + `.wal`, optionally followed by `.lz4`.
fn parse_listed_name(name: &str) -> Option<(u32, bool)> {
    match name.strip_suffix(COMPRESSED_SUFFIX) {
        Some(raw) => parse_segment_file_name(raw).map(|i| (i, true)),
        None => parse_segment_file_name(name).map(|i| (i, false)),
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether `path` is a regular file (following symbolic links); a missing file is not.
fn is_regular_file(path: &Path) -> Result<bool, FileError> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(metadata.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FileError::new("stat", path, None, e)),
    }
}

/// A WAL directory whose segments are [`FileDevice`]s (positioned I/O through the page
/// cache): the default backend.
pub type DirStore = SegmentDir<FileDevice>;

impl<D: SegmentFile> SegmentDir<D> {
    /// Opens the WAL directory `dir` to read it. The directory must exist; nothing in
    /// it is created or modified, and no lock is taken (a reader may watch a live WAL).
    pub fn open_read_only(dir: &Path) -> Result<Self, FileError> {
        let metadata = fs::metadata(dir).map_err(|e| FileError::new("open", dir, None, e))?;
        if !metadata.is_dir() {
            return Err(not_a_directory(dir));
        }
        Ok(Self {
            path: dir.to_path_buf(),
            access: Access::ReadOnly,
            compress_sealed: false,
            prepare_ahead: true,
            write_thread: false,
            mark: None,
            torn_segments: None,
            twins_checked: std::collections::BTreeSet::new(),
            skip_unreadable: false,
            unreadable: std::collections::BTreeMap::new(),
            device: PhantomData,
        })
    }

    /// Opens the WAL directory `dir` to append to it, creating it (and its missing
    /// parents) if needed, and locks it against other writers until the store is
    /// dropped. Fails if another store, in this process or another, holds the lock.
    pub fn open_for_append(dir: &Path) -> Result<Self, FileError> {
        create_dir_durably(dir)?;
        let metadata = fs::metadata(dir).map_err(|e| FileError::new("open", dir, None, e))?;
        if !metadata.is_dir() {
            return Err(not_a_directory(dir));
        }
        let lock_path = dir.join(LOCK_FILE_NAME);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| FileError::new("open lock file", lock_path.as_path(), None, e))?;
        lock_exclusive(&lock, dir, &lock_path)?;
        Ok(Self {
            path: dir.to_path_buf(),
            access: Access::Append { _lock: lock },
            compress_sealed: false,
            prepare_ahead: true,
            write_thread: false,
            mark: None,
            torn_segments: None,
            twins_checked: std::collections::BTreeSet::new(),
            skip_unreadable: false,
            unreadable: std::collections::BTreeMap::new(),
            device: PhantomData,
        })
    }

    /// A read-only store holding only the segment file `file`, for verifying one file.
    ///
    /// The segment's index is the one in the file name when the name is exactly
    /// `FS.` + 8 digits + `.wal`; otherwise the `segment_index` field of the file's
    /// header (bytes 4..8, little-endian) when the file holds at least 8 bytes, so that
    /// a renamed copy still checks against its own header; otherwise 0.
    pub fn single_segment(file: &Path) -> Result<Self, FileError> {
        crate::file::regular_path_metadata(file)?;
        let from_name = file
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(parse_listed_name)
            .map(|(index, _)| index);
        let index = match from_name {
            Some(index) => index,
            None => index_from_header(file)?,
        };
        Ok(Self {
            path: file.to_path_buf(),
            access: Access::Single { index },
            compress_sealed: false,
            prepare_ahead: true,
            write_thread: false,
            mark: None,
            torn_segments: None,
            twins_checked: std::collections::BTreeSet::new(),
            skip_unreadable: false,
            unreadable: std::collections::BTreeMap::new(),
            device: PhantomData,
        })
    }

    /// The directory of the store, or the file of a single-segment store.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file segment `index` maps to (whether or not it exists); for a
    /// single-segment store, its file, whatever `index` is.
    ///
    /// An index above [`SEGMENT_INDEX_MAX`] has no segment file name; it maps to the
    /// same pattern with more digits, a name no segment can have.
    #[must_use]
    pub fn segment_path(&self, index: u32) -> PathBuf {
        match self.access {
            Access::Single { .. } => self.path.clone(),
            Access::ReadOnly | Access::Append { .. } => {
                let raw = match segment_file_name(index) {
                    Some(name) => self.path.join(name.as_str()),
                    None => self.path.join(format!("FS.{index:08}.wal")),
                };
                let compressed = with_suffix(&raw, COMPRESSED_SUFFIX);
                // The raw file is read when both exist (see `open_segment`).
                if !raw.exists() && compressed.exists() {
                    compressed
                } else {
                    raw
                }
            }
        }
    }

    /// The same store, replacing each segment by its LZ4 container (`FS.%08u.wal.lz4`)
    /// once it is sealed and durable. Readers decompress it transparently.
    #[must_use]
    pub fn compress_sealed(mut self, on: bool) -> Self {
        self.compress_sealed = on;
        self
    }

    /// The same read-only store, for diagnostic readers (`verify --mode diagnostic`,
    /// `salvage`): a compressed segment (`FS.%08u.wal.lz4`) whose bytes do not
    /// decompress with every checksum they carry is reported missing, so that replay
    /// records a gap there and goes on with the segments after it, instead of failing
    /// with the file's error; [`SegmentDir::unreadable_compressed`] lists what was
    /// skipped and why. Each compressed segment is then decompressed in full when it
    /// is opened. A writer's store never skips anything: it has no such switch.
    #[must_use]
    pub fn skip_unreadable_compressed(mut self, on: bool) -> Self {
        self.skip_unreadable = on && !self.is_writable();
        self
    }

    /// The compressed segments [`SegmentDir::skip_unreadable_compressed`] skipped, by
    /// index, with the error that names the file and the offset of the bad bytes.
    #[must_use]
    pub fn unreadable_compressed(&self) -> &std::collections::BTreeMap<u32, FileError> {
        &self.unreadable
    }

    /// Opens the compressed file `path` of segment `index`: checked in full first when
    /// unreadable ones are skipped, and then `None` if it does not verify.
    fn open_compressed(
        &mut self,
        index: u32,
        path: &Path,
    ) -> Result<Option<DirSegment<D>>, FileError> {
        if !self.skip_unreadable {
            return Lz4Device::open_read_only(path).map(|d| Some(DirSegment::Compressed(d)));
        }
        if self.unreadable.contains_key(&index) {
            return Ok(None);
        }
        let checked = Lz4Device::open_read_only(path).and_then(|mut d| {
            d.verify_contents()?;
            Ok(d)
        });
        match checked {
            Ok(device) => Ok(Some(DirSegment::Compressed(device))),
            Err(e) if e.source.kind() == io::ErrorKind::InvalidData => {
                self.unreadable.insert(index, e);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The same store, allocating (or not) the next segment's file whenever it creates a
    /// segment. Turn it off when a [`DirPreparer`] on another thread does that work.
    #[must_use]
    pub fn prepare_ahead(mut self, on: bool) -> Self {
        self.prepare_ahead = on;
        self
    }

    /// The same store, whose segment devices open for writing issue their writes from
    /// a thread of their own (see [`FileDevice::set_write_thread`]; devices other than
    /// files ignore it): the writer builds the next blocks while the kernel copies the
    /// last ones. Off by default.
    #[must_use]
    pub fn write_thread(mut self, on: bool) -> Self {
        self.write_thread = on;
        self
    }

    /// A handle that allocates segment files ahead of need, from any thread, without
    /// the writer's lock: the files it makes are not segments until the store takes one.
    #[must_use]
    pub fn preparer(&self) -> DirPreparer {
        DirPreparer {
            dir: self.path.clone(),
        }
    }

    /// Replaces sealed segment `index` by its LZ4 container: compressed into a
    /// temporary file (synced, and read back and checked against the segment), renamed
    /// into place, the directory synced, and only then the raw file removed and the
    /// directory synced again. A crash leaves the raw segment, or both (the raw one is
    /// read), or the container alone: never neither.
    fn compress(&mut self, index: u32) -> Result<(), FileError> {
        let raw = self.named_segment_path("compress", index)?;
        let mut device = FileDevice::open_read_only(&raw)?;
        let mut header = [0u8; SEGMENT_HEADER_SIZE_BYTES];
        if device.len_bytes() >= SEGMENT_HEADER_SIZE_BYTES as u64 {
            device.read_exact_at(0, &mut header)?;
        }
        drop(device);
        if !matches!(
            SegmentHeader::read_from(&header).check(index),
            Ok(HeaderState::Sealed(_))
        ) {
            return Err(FileError::custom(
                "compress",
                raw,
                Some(0),
                io::ErrorKind::InvalidInput,
                "only a sealed segment may be compressed",
            ));
        }
        let compressed = with_suffix(&raw, COMPRESSED_SUFFIX);
        let tmp = with_suffix(&compressed, ".tmp");
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FileError::new("remove stale", tmp, None, e)),
        }
        compress_segment(&raw, &tmp)?;
        fs::rename(&tmp, &compressed)
            .map_err(|e| FileError::new("rename", tmp.as_path(), None, e))?;
        sync_dir(&self.path)?;
        fs::remove_file(&raw).map_err(|e| FileError::new("remove", raw.as_path(), None, e))?;
        sync_dir(&self.path)
    }

    /// What the C++ recorder's meta file (`wal_meta.dat`) says, when there is one of the
    /// right size: a hint only, never trusted over the segments.
    pub fn cpp_meta(&self) -> Result<Option<CppMeta>, FileError> {
        if matches!(self.access, Access::Single { .. }) {
            return Ok(None);
        }
        let path = self.path.join(CPP_META_FILE_NAME);
        match fs::read(&path) {
            Ok(bytes) => Ok(CppMeta::decode(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FileError::new("read", path, None, e)),
        }
    }

    /// Whether segments may be created and removed.
    fn is_writable(&self) -> bool {
        matches!(self.access, Access::Append { .. })
    }

    /// A `PermissionDenied` error for `op` on a store that is not open for append.
    fn read_only_error(
        &self,
        op: &'static str,
        path: &Path,
        offset_bytes: Option<u64>,
    ) -> FileError {
        let message = match self.access {
            Access::Single { .. } => "a single-segment store is read-only",
            Access::ReadOnly | Access::Append { .. } => "the WAL is open read-only",
        };
        FileError::custom(
            op,
            path,
            offset_bytes,
            io::ErrorKind::PermissionDenied,
            message,
        )
    }

    /// The path of segment `index` in the directory, or an error for an index no
    /// segment file name can hold.
    fn named_segment_path(&self, op: &'static str, index: u32) -> Result<PathBuf, FileError> {
        segment_file_name(index)
            .map(|name| self.path.join(name.as_str()))
            .ok_or_else(|| {
                FileError::custom(
                    op,
                    self.path.as_path(),
                    None,
                    io::ErrorKind::InvalidInput,
                    format!("segment index {index} is above {SEGMENT_INDEX_MAX}"),
                )
            })
    }
}

impl<D: SegmentFile> SegmentStore for SegmentDir<D> {
    type Device = DirSegment<D>;
    type Error = FileError;

    /// Lists the directory (on every call, so segments created by another process are
    /// seen) and returns the lowest and highest index of the segment files in it.
    fn segment_range(&mut self) -> Result<Option<(u32, u32)>, FileError> {
        if let Access::Single { index } = self.access {
            return Ok(Some((index, index)));
        }
        let entries = fs::read_dir(&self.path)
            .map_err(|e| FileError::new("list", self.path.as_path(), None, e))?;
        let mut range: Option<(u32, u32)> = None;
        // Bounded by the directory's entries, which the file system holds finitely.
        for entry in entries {
            let entry = entry.map_err(|e| FileError::new("list", self.path.as_path(), None, e))?;
            let name = entry.file_name();
            let Some((index, _)) = name.to_str().and_then(parse_listed_name) else {
                continue;
            };
            let entry_path = entry.path();
            // `fs::metadata` follows symbolic links: a link to a segment file is one.
            match fs::metadata(&entry_path) {
                Ok(metadata) if metadata.is_file() => {}
                Ok(_) => continue,
                // Removed since the listing, or a dangling link: not a segment.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(FileError::new("stat", entry_path, None, e)),
            }
            range = Some(match range {
                None => (index, index),
                Some((low, high)) => (low.min(index), high.max(index)),
            });
        }
        Ok(range)
    }

    /// Opens segment `index` read-write in a store open for append, read-only
    /// otherwise; `None` when there is no such regular file.
    fn open_segment(&mut self, index: u32) -> Result<Option<DirSegment<D>>, FileError> {
        let raw = match self.access {
            Access::Single { index: own } if own != index => return Ok(None),
            Access::Single { .. } => {
                // A single file is opened as what its magic says it is.
                let path = self.path.clone();
                return if has_compressed_magic(&path)? {
                    self.open_compressed(index, &path)
                } else {
                    D::open(&path, false).map(|d| Some(DirSegment::Raw(d)))
                };
            }
            Access::ReadOnly | Access::Append { .. } => match segment_file_name(index) {
                Some(name) => self.path.join(name.as_str()),
                None => return Ok(None),
            },
        };
        // What `segment_range` does not list, this does not open: a directory or a
        // dangling link under a segment's name is a missing segment. The raw file is
        // preferred: both exist only after a crash in the middle of compressing, when
        // the raw file is the one the writer made.
        let compressed = with_suffix(&raw, COMPRESSED_SUFFIX);
        let raw_exists = is_regular_file(&raw)?;
        if raw_exists && !self.twins_checked.contains(&index) && is_regular_file(&compressed)? {
            twins::compare(index, &raw, &compressed)?;
            self.twins_checked.insert(index);
        }
        let opened = if raw_exists {
            D::open(&raw, self.is_writable()).and_then(|mut d| {
                if self.is_writable() && self.write_thread {
                    d.set_write_thread(true)?;
                }
                Ok(DirSegment::Raw(d))
            })
        } else if is_regular_file(&compressed)? {
            return match self.open_compressed(index, &compressed) {
                // Removed between the check and the open.
                Err(e) if e.source.kind() == io::ErrorKind::NotFound => Ok(None),
                other => other,
            };
        } else {
            return Ok(None);
        };
        match opened {
            Ok(device) => Ok(Some(device)),
            // Removed between the check and the open.
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_segment(
        &mut self,
        index: u32,
        size_bytes: u64,
        initial: &[u8],
    ) -> Result<DirSegment<D>, FileError> {
        let final_path = self.named_segment_path("create", index)?;
        if !self.is_writable() {
            return Err(self.read_only_error("create", &final_path, None));
        }
        let compressed = with_suffix(&final_path, COMPRESSED_SUFFIX);
        match fs::symlink_metadata(&final_path).or_else(|_| fs::symlink_metadata(&compressed)) {
            Ok(_) => {
                return Err(FileError::custom(
                    "create",
                    final_path,
                    None,
                    io::ErrorKind::AlreadyExists,
                    format!("segment {index} already exists"),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FileError::new("stat", final_path, None, e)),
        }
        let tmp_path = with_suffix(&final_path, ".tmp");
        // A stale temporary file is what a crash during an earlier creation leaves; it
        // never became the segment, so it holds nothing anyone acknowledged.
        match fs::remove_file(&tmp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FileError::new("remove stale", tmp_path, None, e)),
        }
        // The file prepared ahead of need, when there is one of the right size, only
        // needs its header; otherwise the file is allocated now.
        let mut device = if self.take_prepared(index, &tmp_path, size_bytes, initial)? {
            D::open(&tmp_path, true)?
        } else {
            D::create(&tmp_path, size_bytes, initial)?
        };
        // The lock keeps other fswal writers out, so nothing can have created the
        // segment since the check above, and the rename does not replace anything.
        if let Err(e) = fs::rename(&tmp_path, &final_path) {
            // Best effort: the rename's error is the one to report.
            let _ = fs::remove_file(&tmp_path);
            return Err(FileError::new("rename", tmp_path, None, e));
        }
        // The descriptor follows the file through the rename; only its name changed.
        device.set_path(final_path);
        if self.write_thread {
            device.set_write_thread(true)?;
        }
        sync_dir(&self.path)?;
        // Allocate the next segment's file now, ahead of need, so that the next rotation
        // only writes a header. Best effort: if it fails (a full disk), that rotation
        // allocates the file itself and reports the error then, when it matters.
        if let Some(next) = index
            .checked_add(1)
            .filter(|&n| n <= SEGMENT_INDEX_MAX && self.prepare_ahead)
        {
            let _ = self.prepare(next, size_bytes);
        }
        Ok(DirSegment::Raw(device))
    }

    /// Syncs the directory (its entries: segments created, renamed or removed by a
    /// process that crashed before syncing it), the checkpoint file and the sync mark.
    fn sync_metadata(&mut self) -> Result<(), FileError> {
        if !self.is_writable() {
            return Err(self.read_only_error("sync", &self.path, None));
        }
        for name in [CHECKPOINT_FILE_NAME, MARK_FILE_NAME] {
            let path = self.path.join(name);
            match File::open(&path) {
                Ok(file) => file
                    .sync_all()
                    .map_err(|e| FileError::new("sync", path.as_path(), None, e))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(FileError::new("open", path, None, e)),
            }
        }
        sync_dir(&self.path)
    }

    fn remove_segment(&mut self, index: u32) -> Result<(), FileError> {
        let path = self.named_segment_path("remove", index)?;
        if !self.is_writable() {
            return Err(self.read_only_error("remove", &path, None));
        }
        self.remove_torn_copies_of(index)?;
        let mut removed = false;
        for file in [with_suffix(&path, COMPRESSED_SUFFIX), path] {
            match fs::remove_file(&file) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(FileError::new("remove", file, None, e)),
            }
        }
        // The unlink is a change to the directory: only its sync makes it durable.
        if removed {
            sync_dir(&self.path)?;
        }
        Ok(())
    }

    fn segment_sealed(&mut self, index: u32) -> Result<(), FileError> {
        if self.compress_sealed && self.is_writable() {
            self.compress(index)?;
        }
        Ok(())
    }

    fn read_checkpoint(
        &mut self,
        kind: CheckpointKind,
    ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, FileError> {
        self.read_checkpoint_file(kind)
    }

    fn write_checkpoint(
        &mut self,
        kind: CheckpointKind,
        record: &[u8; CHECKPOINT_SIZE_BYTES],
    ) -> Result<(), FileError> {
        self.write_checkpoint_file(kind, record)
    }
}

/// The error for a path that should be a directory and is not.
fn not_a_directory(path: &Path) -> FileError {
    FileError::custom(
        "open",
        path,
        None,
        io::ErrorKind::InvalidInput,
        "not a directory",
    )
}

/// The `segment_index` field of the header of the segment file at `path`, or 0 when
/// the file is too short to hold it.
/// Whether the file at `path` starts like a compressed segment ([`is_compressed_magic`]).
fn has_compressed_magic(path: &Path) -> Result<bool, FileError> {
    let mut device = FileDevice::open_read_only(path)?;
    let mut magic = [0u8; MAGIC_PROBE_BYTES];
    if device.len_bytes() < magic.len() as u64 {
        return Ok(false);
    }
    device.read_exact_at(0, &mut magic)?;
    Ok(is_compressed_magic(&magic))
}

fn index_from_header(path: &Path) -> Result<u32, FileError> {
    let mut device: DirSegment<FileDevice> = if has_compressed_magic(path)? {
        DirSegment::Compressed(Lz4Device::open_read_only(path)?)
    } else {
        DirSegment::Raw(FileDevice::open_read_only(path)?)
    };
    if device.len_bytes() < 8 {
        return Ok(0);
    }
    let mut head = [0u8; 8];
    device.read_exact_at(0, &mut head)?;
    let [_, _, _, _, b0, b1, b2, b3] = head;
    Ok(u32::from_le_bytes([b0, b1, b2, b3]))
}

#[cfg(test)]
mod tests {
    use std::eprintln;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    use embedded_io::{Error as _, ErrorKind};
    use fswal_core::limits::{SEGMENT_HEADER_SIZE_BYTES, segment_size_bytes};
    use fswal_core::reference::reference_event;
    use fswal_core::{Mode, Replay, Status, WalWriter, WriterConfig};

    use super::checkpoint::{CHECKPOINT_TMP_NAME, MARK_FILE_BYTES};
    use super::torn::parse_torn_copy_name;
    use super::*;

    fn touch(path: &Path, bytes: &[u8]) {
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn lists_only_valid_segment_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        touch(&dir.join("FS.00000003.wal"), b"a");
        touch(&dir.join("FS.00000007.wal"), b"b");
        // Decoys.
        touch(&dir.join("FS.1.wal"), b"");
        touch(&dir.join("FS.00000001.wal.tmp"), b"");
        touch(&dir.join("FS.00000000.wal.torn-000000000064"), b"");
        touch(&dir.join("notes.txt"), b"");
        fs::create_dir(dir.join("FS.00000009.wal")).unwrap();
        std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("FS.00000010.wal")).unwrap();
        // A link to a segment file is a segment.
        std::os::unix::fs::symlink(dir.join("FS.00000003.wal"), dir.join("FS.00000002.wal"))
            .unwrap();

        let mut store = DirStore::open_read_only(dir).unwrap();
        assert_eq!(store.segment_range().unwrap(), Some((2, 7)));
        assert!(
            store.open_segment(9).unwrap().is_none(),
            "a directory is not a segment"
        );
        assert!(
            store.open_segment(10).unwrap().is_none(),
            "a dangling link is not a segment"
        );
        assert!(store.open_segment(5).unwrap().is_none());
        assert!(store.open_segment(u32::MAX).unwrap().is_none());
        let mut dev = store.open_segment(7).unwrap().unwrap();
        assert!(!dev.raw().unwrap().is_writable());
        let mut buf = [0u8; 1];
        dev.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"b");

        // Listed again on every call.
        touch(&dir.join("FS.00000011.wal"), b"c");
        assert_eq!(store.segment_range().unwrap(), Some((2, 11)));
    }

    #[test]
    fn empty_dir_has_no_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = DirStore::open_read_only(tmp.path()).unwrap();
        assert_eq!(store.segment_range().unwrap(), None);
        assert!(store.open_segment(0).unwrap().is_none());
        assert_eq!(store.path(), tmp.path());
        assert_eq!(store.segment_path(3), tmp.path().join("FS.00000003.wal"));
    }

    #[test]
    fn open_read_only_needs_an_existing_directory_and_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("wal");
        let e = DirStore::open_read_only(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: open: ", missing.display()))
        );
        assert!(!missing.exists());

        let file = tmp.path().join("file");
        touch(&file, b"");
        let e = DirStore::open_read_only(&file).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: open: not a directory", file.display())
        );

        let _store = DirStore::open_read_only(tmp.path()).unwrap();
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file")]);
    }

    #[test]
    fn listing_a_removed_directory_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        fs::create_dir(&dir).unwrap();
        let mut store = DirStore::open_read_only(&dir).unwrap();
        fs::remove_dir(&dir).unwrap();
        let e = store.segment_range().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: list: ", dir.display()))
        );
    }

    #[test]
    fn create_then_reopen_sees_the_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/wal");
        let size_bytes = segment_size_bytes(16);
        {
            let mut store = DirStore::open_for_append(&dir).unwrap();
            assert_eq!(store.segment_range().unwrap(), None);
            let mut dev = store.create_segment(4, size_bytes, b"initial").unwrap();
            assert_eq!(dev.path(), dir.join("FS.00000004.wal"));
            assert_eq!(dev.len_bytes(), size_bytes);
            dev.write_all_at(1000, b"appended").unwrap();
            dev.sync().unwrap();
            assert!(!dir.join("FS.00000004.wal.tmp").exists());
            assert_eq!(store.segment_range().unwrap(), Some((4, 4)));

            let e = store.create_segment(4, size_bytes, b"again").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyExists);
            assert!(e.to_string().contains("FS.00000004.wal"));

            // Reopened through the writer's store, it is writable.
            let dev = store.open_segment(4).unwrap().unwrap();
            assert!(dev.raw().unwrap().is_writable());
        }
        let mut store = DirStore::open_read_only(&dir).unwrap();
        assert_eq!(store.segment_range().unwrap(), Some((4, 4)));
        let mut dev = store.open_segment(4).unwrap().unwrap();
        assert!(!dev.raw().unwrap().is_writable());
        assert_eq!(dev.len_bytes(), size_bytes);
        let mut buf = [0u8; 7];
        dev.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"initial");
        let mut buf = [0u8; 8];
        dev.read_exact_at(1000, &mut buf).unwrap();
        assert_eq!(&buf, b"appended");
    }

    #[test]
    fn create_replaces_a_stale_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        touch(&tmp.path().join("FS.00000000.wal.tmp"), b"left by a crash");
        let mut store = DirStore::open_for_append(tmp.path()).unwrap();
        let mut dev = store.create_segment(0, 4096, b"new").unwrap();
        let mut buf = [0u8; 4];
        dev.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"new\0");
        assert!(!tmp.path().join("FS.00000000.wal.tmp").exists());
        let e = store
            .create_segment(SEGMENT_INDEX_MAX + 1, 4096, b"")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn read_only_stores_refuse_to_create_or_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = DirStore::open_read_only(tmp.path()).unwrap();
        let e = store.create_segment(0, 4096, b"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("FS.00000000.wal"), "{e}");
        let e = store.sync_metadata().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);

        let file = tmp.path().join("FS.00000002.wal");
        touch(&file, b"");
        let mut single = DirStore::single_segment(&file).unwrap();
        let e = single.create_segment(3, 4096, b"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let e = single.sync_metadata().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_second_writer_is_locked_out() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DirStore::open_for_append(tmp.path()).unwrap();
        let e = DirStore::open_for_append(tmp.path()).unwrap_err();
        let lock_path = tmp.path().join(LOCK_FILE_NAME);
        assert_eq!(
            e.to_string(),
            format!(
                "{}: lock: another process is writing to this WAL (lock held on {})",
                tmp.path().display(),
                lock_path.display()
            )
        );
        // Readers are not locked out.
        let _reader = DirStore::open_read_only(tmp.path()).unwrap();
        drop(first);
        let _second = DirStore::open_for_append(tmp.path()).unwrap();
    }

    #[test]
    fn torn_copies_are_listed_released_and_removed_with_their_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut store = DirStore::open_for_append(dir).unwrap();
        for i in 0..3 {
            store.create_segment(i, 4096, b"FS").unwrap();
        }
        let torn: Vec<u8> = (0..=255u8).cycle().take(16_448).collect();
        touch(&dir.join("FS.00000001.wal.torn-000000016512"), &torn);
        touch(&dir.join("FS.00000001.wal.torn-000000016512.1"), b"second");
        touch(&dir.join("FS.00000002.wal.torn-000000000064"), b"two");
        // Decoys: not the pattern.
        touch(&dir.join("FS.00000002.wal.torn-64"), b"");
        touch(&dir.join("FS.00000002.wal.torn-000000000064.x"), b"");
        let copies = store.torn_copies().unwrap();
        let seen: Vec<(u32, u64, u64)> = copies
            .iter()
            .map(|c| (c.segment, c.offset_bytes, c.len_bytes))
            .collect();
        assert_eq!(seen, [(1, 16_512, 16_448), (1, 16_512, 6), (2, 64, 3)]);
        // Side files are not segments.
        assert_eq!(store.segment_range().unwrap(), Some((0, 2)));
        // Released one by one, or with their segment.
        store.release_torn_copy(&copies[2]).unwrap();
        assert!(!copies[2].path.exists());
        store.remove_segment(1).unwrap();
        assert!(!copies[0].path.exists() && !copies[1].path.exists());
        assert!(store.torn_copies().unwrap().is_empty());
        assert!(dir.join("FS.00000002.wal.torn-64").exists(), "not a copy");
        // A reader lists them and releases nothing.
        let mut reader = DirStore::open_read_only(dir).unwrap();
        touch(&dir.join("FS.00000002.wal.torn-000000000128"), b"x");
        let listed = reader.torn_copies().unwrap();
        assert_eq!(listed.len(), 1);
        let e = reader.release_torn_copy(&listed[0]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(parse_torn_copy_name("notes.torn-000000000064").is_none());
    }

    #[test]
    fn single_segment_index_from_name_and_from_header() {
        let tmp = tempfile::tempdir().unwrap();
        let mut header = [0u8; 64];
        header[4..8].copy_from_slice(&42u32.to_le_bytes());

        let named = tmp.path().join("FS.00000005.wal");
        touch(&named, &header);
        let mut store = DirStore::single_segment(&named).unwrap();
        assert_eq!(store.segment_range().unwrap(), Some((5, 5)));
        assert_eq!(store.segment_path(5), named);
        assert_eq!(store.path(), named);
        assert!(store.open_segment(42).unwrap().is_none());
        let dev = store.open_segment(5).unwrap().unwrap();
        assert!(!dev.raw().unwrap().is_writable());
        assert_eq!(dev.len_bytes(), 64);

        let renamed = tmp.path().join("copy.wal");
        touch(&renamed, &header);
        let mut store = DirStore::single_segment(&renamed).unwrap();
        assert_eq!(store.segment_range().unwrap(), Some((42, 42)));
        assert_eq!(store.open_segment(42).unwrap().unwrap().path(), renamed);

        let short = tmp.path().join("short.wal");
        touch(&short, &header[..7]);
        let mut store = DirStore::single_segment(&short).unwrap();
        assert_eq!(store.segment_range().unwrap(), Some((0, 0)));

        let missing = tmp.path().join("missing.wal");
        let e = DirStore::single_segment(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("missing.wal"));
        let e = DirStore::single_segment(tmp.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    const REFERENCE_EVENTS: u64 = 10_000;

    /// Writes events 1..=`REFERENCE_EVENTS` of the reference stream to a new WAL in
    /// `dir` with 16-block segments and a clock that always says 1, and closes it.
    fn write_reference_log(dir: &Path) {
        let store = DirStore::open_for_append(dir).unwrap();
        let (mut writer, recovery) =
            WalWriter::open(store, || 1u64, WriterConfig::with_blocks(16)).unwrap();
        assert_eq!(recovery.summary.status, Status::Ok);
        assert_eq!(recovery.sealed_tail, None);
        for i in 1..=REFERENCE_EVENTS {
            writer.append(&reference_event(i)).unwrap();
        }
        assert_eq!(writer.close().unwrap(), REFERENCE_EVENTS);
    }

    #[test]
    fn writer_and_replay_round_trip_over_a_dir_store() {
        let tmp = tempfile::tempdir().unwrap();
        write_reference_log(tmp.path());

        let mut ids = Vec::new();
        let summary = Replay::new(DirStore::open_read_only(tmp.path()).unwrap(), Mode::Strict)
            .run(|e| ids.push(e.event_id()))
            .unwrap();
        assert_eq!(summary.status, Status::Ok);
        assert_eq!(summary.segments, 3);
        assert_eq!(summary.events, REFERENCE_EVENTS);
        assert_eq!(summary.first_issue, None);
        assert!(ids.iter().copied().eq(1..=REFERENCE_EVENTS));

        // Reopening for append after a clean close continues in a new segment.
        let store = DirStore::open_for_append(tmp.path()).unwrap();
        let (mut writer, recovery) =
            WalWriter::open(store, || 2u64, WriterConfig::with_blocks(16)).unwrap();
        assert_eq!(recovery.summary.last_event_id, Some(REFERENCE_EVENTS));
        writer
            .append(&reference_event(REFERENCE_EVENTS + 1))
            .unwrap();
        writer.close().unwrap();
        let mut store = DirStore::open_read_only(tmp.path()).unwrap();
        assert_eq!(store.segment_range().unwrap(), Some((0, 3)));
    }

    /// Bytes of a segment header that hold wall-clock times (`created_ts_ns`,
    /// `closed_ts_ns`) or the checksum over them, which differ between any two runs.
    const TIME_DEPENDENT_BYTES: core::ops::Range<usize> = 32..56;

    #[test]
    fn segments_match_the_cpp_recorder_vectors() {
        let Some(vectors) = crate::testing::vectors_dir("flashstrike-ref-3seg") else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        write_reference_log(tmp.path());

        let mut findings = Vec::new();
        for index in 0..3u32 {
            let name = segment_file_name(index).unwrap();
            let ours = fs::read(tmp.path().join(name.as_str())).unwrap();
            let theirs = fs::read(vectors.join(name.as_str())).unwrap();
            if ours.len() != theirs.len() {
                findings.push(format!(
                    "{name}: {} bytes, the vector has {}",
                    ours.len(),
                    theirs.len()
                ));
            }
            let mut differing = ours
                .iter()
                .zip(&theirs)
                .enumerate()
                .filter(|&(offset, (a, b))| a != b && !TIME_DEPENDENT_BYTES.contains(&offset));
            if let Some((offset, (a, b))) = differing.next() {
                let more = differing.count();
                let place = if offset < SEGMENT_HEADER_SIZE_BYTES {
                    "segment header".to_string()
                } else {
                    let in_segment = offset - SEGMENT_HEADER_SIZE_BYTES;
                    format!(
                        "block slot {}, byte {} of the block",
                        in_segment / fswal_core::limits::BLOCK_SIZE_BYTES,
                        in_segment % fswal_core::limits::BLOCK_SIZE_BYTES
                    )
                };
                findings.push(format!(
                    "{name}: first difference at offset {offset} ({place}): ours {a:#04x}, vector {b:#04x}; {more} more differing bytes"
                ));
            }
        }
        for finding in &findings {
            eprintln!("{finding}");
        }
        assert!(
            findings.is_empty(),
            "segments differ from the vectors: {findings:#?}"
        );
    }

    /// Writes events `1..=n` through the core writer into `store`, then closes.
    fn write_log<D: SegmentFile>(store: SegmentDir<D>, n: u64) -> SegmentDir<D> {
        let (mut w, _) = WalWriter::open(store, || 1u64, WriterConfig::with_blocks(16)).unwrap();
        for i in 1..=n {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        w.into_store()
    }

    fn replay_ids(store: DirStore) -> (Vec<u64>, Status) {
        let mut ids = Vec::new();
        let s = Replay::new(store, Mode::Strict)
            .run(|e| ids.push(e.event_id()))
            .unwrap();
        (ids, s.status)
    }

    #[test]
    fn sealed_segments_are_compressed_and_read_back_transparently() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        drop(write_log(
            DirStore::open_for_append(dir)
                .unwrap()
                .compress_sealed(true),
            10_000,
        ));
        for i in 0..3 {
            assert!(!dir.join(format!("FS.0000000{i}.wal")).exists());
            assert!(dir.join(format!("FS.0000000{i}.wal.lz4")).exists());
        }
        let (ids, status) = replay_ids(DirStore::open_read_only(dir).unwrap());
        assert_eq!(ids, (1..=10_000).collect::<Vec<_>>());
        assert_eq!(status, Status::Ok);
        let store = DirStore::open_read_only(dir).unwrap();
        assert_eq!(store.segment_path(1), dir.join("FS.00000001.wal.lz4"));

        // One compressed file on its own verifies too, its index taken from its name.
        let (ids, status) =
            replay_ids(DirStore::single_segment(&dir.join("FS.00000002.wal.lz4")).unwrap());
        assert_eq!((ids.len(), ids[0], status), (1808, 8193, Status::Ok));

        // And the log reopens for append: sealed compressed segments are only read.
        let store = write_log(DirStore::open_for_append(dir).unwrap(), 0);
        drop(store);
        let (ids, _) = replay_ids(DirStore::open_read_only(dir).unwrap());
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn a_raw_segment_wins_over_its_compressed_copy() {
        // Both exist after a crash between the rename of the container and the removal
        // of the raw file: the raw one is read, and the segment is listed once.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        drop(write_log(DirStore::open_for_append(dir).unwrap(), 5000));
        crate::lz4::compress_segment(
            &dir.join("FS.00000000.wal"),
            &dir.join("FS.00000000.wal.lz4"),
        )
        .unwrap();
        let mut store = DirStore::open_read_only(dir).unwrap();
        assert_eq!(store.segment_range().unwrap(), Some((0, 1)));
        assert!(store.open_segment(0).unwrap().unwrap().raw().is_some());
        let (ids, status) = replay_ids(store);
        assert_eq!((ids.len(), status), (5000, Status::Ok));
        // Removal removes both.
        let mut store = DirStore::open_for_append(dir).unwrap();
        store.remove_segment(0).unwrap();
        assert!(!dir.join("FS.00000000.wal").exists());
        assert!(!dir.join("FS.00000000.wal.lz4").exists());
        store.remove_segment(0).unwrap();
    }

    #[test]
    fn two_complete_copies_of_a_segment_that_differ_are_refused_naming_both() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        drop(write_log(DirStore::open_for_append(dir).unwrap(), 5000));
        let raw = dir.join("FS.00000000.wal");
        let packed = dir.join("FS.00000000.wal.lz4");
        crate::lz4::compress_segment(&raw, &packed).unwrap();
        // One event's byte changed in the raw copy: its header is still sealed, so
        // both are complete, and which one holds the true event is not fswal's guess.
        let at = 64 + 64 + 3 * 64 + 20;
        let mut bytes = fs::read(&raw).unwrap();
        bytes[at] ^= 0x10;
        fs::write(&raw, &bytes).unwrap();
        let mut store = DirStore::open_read_only(dir).unwrap();
        let err = store.open_segment(0).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            (err.path.as_path(), err.offset_bytes),
            (raw.as_path(), Some(at as u64))
        );
        let text = err.to_string();
        assert!(
            text.contains("FS.00000000.wal.lz4") && text.contains("differ"),
            "{text}"
        );
        // Writers refuse too, and nothing is modified.
        assert!(
            DirStore::open_for_append(dir)
                .unwrap()
                .open_segment(0)
                .is_err()
        );
        assert_eq!(fs::read(&raw).unwrap(), bytes);
        // Once the wrong copy is moved away, the other is read.
        fs::rename(&raw, dir.join("elsewhere")).unwrap();
        let (ids, status) = replay_ids(DirStore::open_read_only(dir).unwrap());
        assert_eq!((ids.len(), status), (5000, Status::Ok));
    }

    #[test]
    fn diagnostic_readers_skip_a_compressed_segment_that_does_not_decompress() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        drop(write_log(
            DirStore::open_for_append(dir)
                .unwrap()
                .compress_sealed(true),
            12_000,
        ));
        let damaged = dir.join("FS.00000001.wal.lz4");
        let mut bytes = fs::read(&damaged).unwrap();
        bytes[3000] ^= 0x40;
        fs::write(&damaged, &bytes).unwrap();
        // A plain reader fails with the file's error, naming it.
        let err = Replay::new(DirStore::open_read_only(dir).unwrap(), Mode::Diagnostic)
            .run(|_| {})
            .unwrap_err();
        assert!(err.to_string().contains("FS.00000001.wal.lz4"), "{err}");
        // A diagnostic reader reports a gap there and salvages what is around it.
        let mut store = DirStore::open_read_only(dir)
            .unwrap()
            .skip_unreadable_compressed(true);
        let mut ids = Vec::new();
        let s = Replay::new(&mut store, Mode::Diagnostic)
            .run(|e| ids.push(e.event_id()))
            .unwrap();
        assert_eq!(s.status, Status::Corrupt);
        assert_eq!(ids.len(), 12_000 - 4096);
        assert!(ids.iter().copied().eq((1..=4096).chain(8193..=12_000)));
        let skipped = store.unreadable_compressed();
        assert_eq!(skipped.keys().copied().collect::<Vec<_>>(), [1]);
        let why = &skipped[&1];
        assert_eq!(
            (why.path.as_path(), why.source.kind()),
            (damaged.as_path(), io::ErrorKind::InvalidData)
        );
        assert!(why.offset_bytes.is_some());
        assert_eq!(fs::read(&damaged).unwrap(), bytes, "nothing is modified");
        // A writer's store never skips.
        let writer = DirStore::open_for_append(dir)
            .unwrap()
            .skip_unreadable_compressed(true);
        assert!(!writer.skip_unreadable);
    }

    #[test]
    fn a_compressed_copy_cut_short_is_ignored_beside_its_raw_segment() {
        // The C++ maintainer writes the `.lz4` under its final name: a crash while it
        // writes leaves a partial one beside the raw segment, which is the one read.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        drop(write_log(DirStore::open_for_append(dir).unwrap(), 5000));
        let raw = dir.join("FS.00000000.wal");
        let packed = dir.join("FS.00000000.wal.lz4");
        crate::lz4::compress_segment(&raw, &packed).unwrap();
        let len = fs::metadata(&packed).unwrap().len();
        for cut in [0, 7, len / 2, len - 1] {
            OpenOptions::new()
                .write(true)
                .open(&packed)
                .unwrap()
                .set_len(cut)
                .unwrap();
            let (ids, status) = replay_ids(DirStore::open_read_only(dir).unwrap());
            assert_eq!((ids.len(), status), (5000, Status::Ok), "cut at {cut}");
        }
    }

    #[test]
    fn checkpoint_file_is_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut store = DirStore::open_for_append(dir).unwrap();
        assert_eq!(store.read_checkpoint(CheckpointKind::Sealed).unwrap(), None);
        let record = [7u8; CHECKPOINT_SIZE_BYTES];
        store
            .write_checkpoint(CheckpointKind::Sealed, &record)
            .unwrap();
        assert_eq!(
            store.read_checkpoint(CheckpointKind::Sealed).unwrap(),
            Some(record)
        );
        assert_eq!(fs::read(dir.join(CHECKPOINT_FILE_NAME)).unwrap(), record);
        assert!(!dir.join(CHECKPOINT_TMP_NAME).exists());
        // A file of the wrong size is handed over altered, so that it never decodes.
        fs::write(dir.join(CHECKPOINT_FILE_NAME), [7u8; 10]).unwrap();
        let read = store
            .read_checkpoint(CheckpointKind::Sealed)
            .unwrap()
            .unwrap();
        assert_ne!(read[..10], [7u8; 10]);
        let mut ro = DirStore::open_read_only(dir).unwrap();
        assert_eq!(
            ro.write_checkpoint(CheckpointKind::Sealed, &record)
                .unwrap_err()
                .kind(),
            ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn the_sync_mark_is_rewritten_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut store = DirStore::open_for_append(dir).unwrap();
        assert_eq!(store.read_checkpoint(CheckpointKind::Synced).unwrap(), None);
        for n in 1..=3u8 {
            store
                .write_checkpoint(CheckpointKind::Synced, &[n; CHECKPOINT_SIZE_BYTES])
                .unwrap();
            let file = fs::read(dir.join(MARK_FILE_NAME)).unwrap();
            assert_eq!(file.len() as u64, MARK_FILE_BYTES);
            assert_eq!(file[..CHECKPOINT_SIZE_BYTES], [n; CHECKPOINT_SIZE_BYTES]);
        }
        drop(store);
        let mut store = DirStore::open_read_only(dir).unwrap();
        assert_eq!(
            store.read_checkpoint(CheckpointKind::Synced).unwrap(),
            Some([3; CHECKPOINT_SIZE_BYTES])
        );
        assert_eq!(store.read_checkpoint(CheckpointKind::Sealed).unwrap(), None);
    }

    #[test]
    fn the_writer_leaves_a_checkpoint_in_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        drop(write_log(DirStore::open_for_append(dir).unwrap(), 5000));
        let bytes = fs::read(dir.join(CHECKPOINT_FILE_NAME)).unwrap();
        let record: [u8; CHECKPOINT_SIZE_BYTES] = bytes.try_into().unwrap();
        let cp = fswal_core::checkpoint::Checkpoint::decode(&record).unwrap();
        assert_eq!((cp.segment_index, cp.last_event_id), (1, 5000));
    }

    #[test]
    fn the_next_segment_is_allocated_ahead_of_need() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        drop(write_log(DirStore::open_for_append(dir).unwrap(), 5000));
        // Segments 0 and 1 written; segment 2's file is ready, full size, no header.
        let prepared = dir.join("FS.00000002.wal.prep");
        let bytes = fs::read(&prepared).unwrap();
        assert_eq!(bytes.len() as u64, segment_size_bytes(16));
        assert!(bytes.iter().all(|&b| b == 0));
        assert_eq!(
            DirStore::open_read_only(dir)
                .unwrap()
                .segment_range()
                .unwrap(),
            Some((0, 1))
        );
        // The next rotation takes it.
        drop(write_log(DirStore::open_for_append(dir).unwrap(), 0));
        let store = DirStore::open_for_append(dir).unwrap();
        let (mut w, _) = WalWriter::open(store, || 1u64, WriterConfig::with_blocks(16)).unwrap();
        w.append(&reference_event(5001)).unwrap();
        w.close().unwrap();
        drop(w);
        assert!(!prepared.exists());
        assert!(dir.join("FS.00000003.wal.prep").exists());
        let (ids, status) = replay_ids(DirStore::open_read_only(dir).unwrap());
        assert_eq!((ids.len(), status), (5001, Status::Ok));
    }
}
