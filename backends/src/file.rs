//! The file backend: [`FileDevice`], one segment file, and [`FileError`].
//!
//! Reads and writes are positioned (`pread`/`pwrite` through
//! [`std::os::unix::fs::FileExt`]), so a device never seeks and never shares a file
//! position. [`BlockDevice::sync`] is `fdatasync`, which also makes a size the writes
//! grew durable, because the size is needed to read the data back.
//!
//! New segments are made by [`FileDevice::create_preallocated`]: the whole file is
//! allocated up front (`posix_fallocate`), so appending never allocates blocks nor
//! changes the file size, and a full disk shows up when a segment is created rather
//! than in the middle of a write.
//!
//! Every error names the file, and the offset when there is one, so that a message
//! like `wal/FS.00000003.wal: read at offset 16512: ...` says where to look.

use std::boxed::Box;
use std::fmt;
use std::format;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::vec::Vec;

use fswal_core::device::{BlockDevice, range_within};
use fswal_core::limits::SEGMENT_SIZE_BYTES_MAX;

use crate::write_thread::{Failed, WriteThread};

/// The sector size reported when the file system does not say (`st_blksize` of 0).
pub const GRANULARITY_BYTES_DEFAULT: u32 = 4096;

/// The smallest sector size a file device reports (a disk sector).
pub const GRANULARITY_BYTES_MIN: u32 = 512;

/// The largest sector size a file device reports.
pub const GRANULARITY_BYTES_MAX: u32 = 65_536;

/// How many times `posix_fallocate` is retried when a signal interrupts it, before
/// giving up (each try starts over, so retrying is safe; the bound keeps a signal
/// storm from turning into a hang).
const FALLOCATE_ATTEMPTS_MAX: u32 = 64;

/// A failed file operation: which operation, on which file, at which offset, and the
/// operating system's reason.
#[derive(Debug)]
#[non_exhaustive]
pub struct FileError {
    /// The operation that failed (`"open"`, `"read"`, `"write"`, `"sync"`, ...).
    pub op: &'static str,
    /// The file or directory it was applied to.
    pub path: PathBuf,
    /// The byte offset in the file, for operations that have one.
    pub offset_bytes: Option<u64>,
    /// Why it failed.
    pub source: io::Error,
}

impl FileError {
    /// An error of `op` on `path` (at `offset_bytes`, if the operation has an offset),
    /// caused by `source`.
    pub fn new(
        op: &'static str,
        path: impl Into<PathBuf>,
        offset_bytes: Option<u64>,
        source: io::Error,
    ) -> Self {
        Self {
            op,
            path: path.into(),
            offset_bytes,
            source,
        }
    }

    /// An error of `op` on `path` that the operating system did not report but fswal
    /// found (a range check, a read-only store): `kind` classifies it and `message`,
    /// one line, explains it.
    pub fn custom(
        op: &'static str,
        path: impl Into<PathBuf>,
        offset_bytes: Option<u64>,
        kind: io::ErrorKind,
        message: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::new(op, path, offset_bytes, io::Error::new(kind, message))
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.op)?;
        if let Some(offset_bytes) = self.offset_bytes {
            write!(f, " at offset {offset_bytes}")?;
        }
        write!(f, ": {}", self.source)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl embedded_io::Error for FileError {
    fn kind(&self) -> embedded_io::ErrorKind {
        self.source.kind().into()
    }
}

/// One segment file, open read-only or read-write.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    path: PathBuf,
    /// The file's size: at open, then grown by writes past it.
    len_bytes: u64,
    /// The most bytes the device lets a write reach.
    capacity_bytes: u64,
    granularity_bytes: u32,
    writable: bool,
    /// Bytes written since writeback was last started or the file synced, as a range:
    /// see [`WRITE_BEHIND_BYTES`].
    behind: Option<(u64, u64)>,
    /// Writes gathered for one `pwrite` (see [`COALESCE_BYTES`]): these bytes belong at
    /// `pending_offset_bytes`, and the file does not hold them yet.
    pending: Vec<u8>,
    pending_offset_bytes: u64,
    /// Issues the gathered writes while the caller goes on, when turned on (see
    /// [`FileDevice::set_write_thread`]); started at the first write that needs it.
    thread: Option<WriteThread>,
    /// Whether writes go through a write thread (started lazily, so that a device
    /// opened only to be read or synced, as recovery opens every segment, costs no
    /// thread).
    thread_wanted: bool,
    /// A write that failed, out of sight of the call that asked for it: every later
    /// write and sync fails with it.
    failed: Option<(u64, io::ErrorKind, std::string::String)>,
}

/// Contiguous writes are gathered up to this many bytes and issued as one `pwrite`
/// (before any read, sync, non-contiguous write, or drop): sixteen 16 KiB block
/// writes cost the kernel about twice what one 256 KiB write does. Unsynced writes
/// may be lost in a crash anyway, so holding them back changes nothing a sync
/// promises.
pub const COALESCE_BYTES: usize = 1 << 20;

/// Once this many bytes were written without a sync, the device asks the kernel to
/// start writing them back (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not
/// wait for the disk). The next `fdatasync` then waits only for what was written
/// since, instead of for everything, so that the disk works while the writer builds
/// the next blocks. A hint only: durability still comes from `sync` alone.
pub const WRITE_BEHIND_BYTES: u64 = 1 << 20;

impl FileDevice {
    /// Opens the regular file at `path` for reading only; the device never modifies
    /// it. Its capacity is its length, so every write fails.
    pub fn open_read_only(path: &Path) -> Result<Self, FileError> {
        let file = File::open(path).map_err(|e| FileError::new("open", path, None, e))?;
        Self::from_file(file, path.to_path_buf(), false)
    }

    /// Opens the regular file at `path` for reading and writing. Its capacity is the
    /// largest segment size ([`SEGMENT_SIZE_BYTES_MAX`]), or its length if larger.
    pub fn open_read_write(path: &Path) -> Result<Self, FileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| FileError::new("open", path, None, e))?;
        Self::from_file(file, path.to_path_buf(), true)
    }

    /// Creates a new file at `path` (failing with `AlreadyExists` if there is one),
    /// allocates all of its `size_bytes` on the medium, writes `initial` at offset 0,
    /// makes the whole of it durable, and returns it open read-write.
    ///
    /// The bytes after `initial` read as zero. Allocation uses `posix_fallocate`, so
    /// later writes inside the file never need space; on a file system that cannot
    /// allocate ahead, the file is extended sparsely instead, which reads the same.
    /// The new name itself is not made durable: that takes a sync of the directory
    /// ([`sync_dir`]). On failure the partly made file is removed.
    pub fn create_preallocated(
        path: &Path,
        size_bytes: u64,
        initial: &[u8],
    ) -> Result<Self, FileError> {
        if size_bytes > SEGMENT_SIZE_BYTES_MAX {
            return Err(FileError::custom(
                "create",
                path,
                None,
                io::ErrorKind::InvalidInput,
                format!(
                    "size {size_bytes} bytes is above the largest segment ({SEGMENT_SIZE_BYTES_MAX} bytes)"
                ),
            ));
        }
        if !range_within(0, initial.len(), size_bytes) {
            return Err(FileError::custom(
                "create",
                path,
                None,
                io::ErrorKind::InvalidInput,
                format!(
                    "{} initial bytes do not fit in a file of {size_bytes} bytes",
                    initial.len()
                ),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| FileError::new("create", path, None, e))?;
        let made = preallocate(&file, path, size_bytes)
            .and_then(|()| {
                file.write_all_at(initial, 0)
                    .map_err(|e| FileError::new("write", path, Some(0), e))
            })
            // `sync_all`, not `sync_data`: the size and the allocation are metadata.
            .and_then(|()| {
                file.sync_all()
                    .map_err(|e| FileError::new("sync", path, None, e))
            })
            .and_then(|()| Self::from_file(file, path.to_path_buf(), true));
        if made.is_err() {
            // Best effort: a half-made file would make the next attempt fail with
            // `AlreadyExists`. The error that matters is the one being returned.
            let _ = fs::remove_file(path);
        }
        made
    }

    /// The file this device reads and writes.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the device was opened for writing.
    #[must_use]
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn from_file(file: File, path: PathBuf, writable: bool) -> Result<Self, FileError> {
        let metadata = regular_file_metadata(&file, &path)?;
        let len_bytes = metadata.len();
        let capacity_bytes = if writable {
            SEGMENT_SIZE_BYTES_MAX.max(len_bytes)
        } else {
            len_bytes
        };
        Ok(Self {
            file,
            path,
            len_bytes,
            capacity_bytes,
            granularity_bytes: granularity_from_blksize(metadata.blksize()),
            writable,
            behind: None,
            pending: Vec::new(),
            pending_offset_bytes: 0,
            thread: None,
            thread_wanted: false,
            failed: None,
        })
    }

    /// Issues this device's writes from a thread of its own (on), or from the calling
    /// thread (off, the default). With the thread, a gathered run of writes (up to
    /// [`COALESCE_BYTES`]) is handed over whole, and the caller goes on building the
    /// next one while the kernel copies it: recording then uses two cores. Reads and
    /// syncs wait for everything handed over first, so what they see and what they make
    /// durable is the same either way. A write that fails on the thread fails the next
    /// write or sync, and every one after it.
    ///
    /// The thread starts with the first write it would issue, not here: a device that
    /// is only read or synced never starts one.
    pub fn set_write_thread(&mut self, on: bool) -> Result<(), FileError> {
        if on {
            self.thread_wanted = self.writable;
        } else {
            self.flush_pending()?;
            self.drain()?;
            self.thread = None;
            self.thread_wanted = false;
        }
        Ok(())
    }

    /// The write thread, started now if writes are to go through one.
    fn write_thread(&mut self) -> Result<Option<&mut WriteThread>, FileError> {
        if self.thread_wanted && self.thread.is_none() {
            let thread = WriteThread::start(&self.file)
                .map_err(|e| self.error("start write thread", None, e))?;
            self.thread = Some(thread);
        }
        Ok(self.thread.as_mut())
    }

    /// The error of an earlier failed write, again.
    fn check_failed(&self) -> Result<(), FileError> {
        match &self.failed {
            None => Ok(()),
            Some((offset_bytes, kind, message)) => Err(FileError::custom(
                "write",
                self.path.as_path(),
                Some(*offset_bytes),
                *kind,
                format!("an earlier write failed: {message}"),
            )),
        }
    }

    /// Records a write that failed on the write thread, and returns its error.
    fn thread_failed(&mut self, f: Failed) -> FileError {
        self.failed = Some((f.offset_bytes, f.error.kind(), format!("{}", f.error)));
        self.error("write", Some(f.offset_bytes), f.error)
    }

    /// Waits for the write thread, if any, to issue everything handed to it.
    fn drain(&mut self) -> Result<(), FileError> {
        let Some(thread) = self.thread.as_mut() else {
            return Ok(());
        };
        thread.drain().map_err(|f| self.thread_failed(f))
    }

    /// Issues the gathered writes, if any, as one `pwrite`.
    fn flush_pending(&mut self) -> Result<(), FileError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // Taken out for the call and put back empty, to keep the allocation.
        let offset_bytes = self.pending_offset_bytes;
        let pending = std::mem::take(&mut self.pending);
        let thread = match self.write_thread() {
            Ok(thread) => thread,
            Err(e) => {
                self.pending = pending;
                return Err(e);
            }
        };
        if let Some(thread) = thread {
            return match thread.submit(offset_bytes, pending) {
                Ok(empty) => {
                    self.pending = empty;
                    Ok(())
                }
                Err(f) => Err(self.thread_failed(f)),
            };
        }
        let written = self.write_through(self.pending_offset_bytes, &pending);
        self.pending = pending;
        self.pending.clear();
        written
    }

    /// One `pwrite` of `buf` at `offset_bytes`.
    fn write_through(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), FileError> {
        if let Err(e) = self.file.write_all_at(buf, offset_bytes) {
            // A write that failed part way may still have grown the file, or not: keep
            // the length true to the file so that later reads are checked against it.
            if let Ok(metadata) = self.file.metadata() {
                self.len_bytes = metadata.len();
            }
            return Err(self.error("write", Some(offset_bytes), e));
        }
        self.write_behind(offset_bytes, offset_bytes.saturating_add(buf.len() as u64));
        Ok(())
    }

    fn error(&self, op: &'static str, offset_bytes: Option<u64>, source: io::Error) -> FileError {
        FileError::new(op, self.path.as_path(), offset_bytes, source)
    }

    /// Notes that `start..end` was written, and starts its writeback once
    /// [`WRITE_BEHIND_BYTES`] have gathered (see there).
    fn write_behind(&mut self, start: u64, end: u64) {
        let (lo, hi) = self
            .behind
            .map_or((start, end), |(lo, hi)| (lo.min(start), hi.max(end)));
        if hi - lo < WRITE_BEHIND_BYTES {
            self.behind = Some((lo, hi));
            return;
        }
        self.behind = None;
        start_writeback(&self.file, lo, hi - lo);
    }
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` back to the
/// disk, without waiting. Failures are ignored: this is only a hint, and a real
/// write-back failure is reported by the next `fdatasync`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: `sync_file_range` only reads its integer arguments; the descriptor comes
    // from `file`, borrowed for the whole call, so it stays open.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

/// Elsewhere there is no portable way to start writeback early; `sync` does it all.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

impl Drop for FileDevice {
    /// Issues the gathered writes, so that the file holds everything written through
    /// the device, as it would without gathering. Errors cannot be reported here; they
    /// lose only unsynced writes, which a crash could lose too.
    fn drop(&mut self) {
        let _ = self.flush_pending();
        let _ = self.drain();
    }
}

impl BlockDevice for FileDevice {
    type Error = FileError;

    /// The file system's block size (`st_blksize`), rounded down to a power of two and
    /// clamped to 512..=65536. It is the unit the page cache writes back in, which is
    /// the best a file can say about the medium's atomic unit.
    fn write_granularity_bytes(&self) -> u32 {
        self.granularity_bytes
    }

    fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), FileError> {
        if !range_within(offset_bytes, buf.len(), self.len_bytes) {
            return Err(FileError::custom(
                "read",
                self.path.as_path(),
                Some(offset_bytes),
                io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes asked for, past the end of the file ({} bytes)",
                    buf.len(),
                    self.len_bytes
                ),
            ));
        }
        self.flush_pending()?;
        self.drain()?;
        self.file
            .read_exact_at(buf, offset_bytes)
            .map_err(|e| self.error("read", Some(offset_bytes), e))
    }

    fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), FileError> {
        if !self.writable {
            return Err(FileError::custom(
                "write",
                self.path.as_path(),
                Some(offset_bytes),
                io::ErrorKind::PermissionDenied,
                "the file is open read-only",
            ));
        }
        if !range_within(offset_bytes, buf.len(), self.capacity_bytes) {
            return Err(FileError::custom(
                "write",
                self.path.as_path(),
                Some(offset_bytes),
                io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes do not fit below the device's capacity ({} bytes)",
                    buf.len(),
                    self.capacity_bytes
                ),
            ));
        }
        // `range_within` proved that the end does not overflow and is within capacity.
        let end_bytes = offset_bytes.saturating_add(buf.len() as u64);
        let pending_end_bytes = self
            .pending_offset_bytes
            .saturating_add(self.pending.len() as u64);
        self.check_failed()?;
        let joins = !self.pending.is_empty() && offset_bytes == pending_end_bytes;
        if !(joins && self.pending.len() + buf.len() <= COALESCE_BYTES) {
            self.flush_pending()?;
        }
        if buf.len() >= COALESCE_BYTES && !self.thread_wanted {
            // Too large to gather: straight to the file.
            self.write_through(offset_bytes, buf)?;
        } else {
            if self.pending.is_empty() {
                self.pending.reserve(COALESCE_BYTES);
                self.pending_offset_bytes = offset_bytes;
            }
            self.pending.extend_from_slice(buf);
        }
        self.len_bytes = self.len_bytes.max(end_bytes);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), FileError> {
        self.check_failed()?;
        self.flush_pending()?;
        self.drain()?;
        self.file
            .sync_data()
            .map_err(|e| self.error("sync", None, e))?;
        self.behind = None;
        Ok(())
    }
}

/// A kind of segment file device: how a [`DirStore`](crate::dir::DirStore) opens and
/// creates the files of its segments. [`FileDevice`] (positioned I/O through the page
/// cache) is one; the mmap and `O_DIRECT` devices are others.
pub trait SegmentFile: BlockDevice<Error = FileError> + Sized {
    /// Opens the existing segment file at `path`, read-only unless `writable`. A
    /// read-only device never modifies the file.
    fn open(path: &Path, writable: bool) -> Result<Self, FileError>;

    /// Creates a new file at `path` (failing if it exists), `size_bytes` long and
    /// really allocated, holding `initial` at offset 0 and zeros after it, synced with
    /// its size; returns it open for writing. The store renames it into place.
    fn create(path: &Path, size_bytes: u64, initial: &[u8]) -> Result<Self, FileError>;

    /// The path the device names in its errors.
    fn path(&self) -> &Path;

    /// Records that the file was renamed to `path`; the open descriptor is unchanged.
    fn set_path(&mut self, path: PathBuf);

    /// Issues writes from a thread of the device's own (see
    /// [`FileDevice::set_write_thread`]); a kind of device that has no use for one
    /// ignores it.
    fn set_write_thread(&mut self, _on: bool) -> Result<(), FileError> {
        Ok(())
    }
}

impl SegmentFile for FileDevice {
    fn open(path: &Path, writable: bool) -> Result<Self, FileError> {
        if writable {
            Self::open_read_write(path)
        } else {
            Self::open_read_only(path)
        }
    }

    fn create(path: &Path, size_bytes: u64, initial: &[u8]) -> Result<Self, FileError> {
        Self::create_preallocated(path, size_bytes, initial)
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the device a new path after its file was renamed, so that its errors name
    /// the file as it is now called.
    fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    fn set_write_thread(&mut self, on: bool) -> Result<(), FileError> {
        FileDevice::set_write_thread(self, on)
    }
}

/// The metadata of the open `file` at `path`, refusing with `InvalidInput` anything
/// but a regular file: a directory or a device node opens fine but has no length a
/// segment could be read by.
pub(crate) fn regular_file_metadata(file: &File, path: &Path) -> Result<fs::Metadata, FileError> {
    let metadata = file
        .metadata()
        .map_err(|e| FileError::new("stat", path, None, e))?;
    refuse_irregular(metadata, path)
}

/// The metadata of the file at `path` (symbolic links followed), refusing with
/// `InvalidInput` anything but a regular file.
pub(crate) fn regular_path_metadata(path: &Path) -> Result<fs::Metadata, FileError> {
    let metadata = fs::metadata(path).map_err(|e| FileError::new("open", path, None, e))?;
    refuse_irregular(metadata, path)
}

fn refuse_irregular(metadata: fs::Metadata, path: &Path) -> Result<fs::Metadata, FileError> {
    if metadata.is_file() {
        Ok(metadata)
    } else {
        Err(FileError::custom(
            "open",
            path,
            None,
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

/// Makes the entries of the directory at `path` durable: call it after creating,
/// renaming or deleting a file in it, since a file's own sync does not cover its name.
pub fn sync_dir(path: &Path) -> Result<(), FileError> {
    let dir = File::open(path).map_err(|e| FileError::new("open directory", path, None, e))?;
    dir.sync_all()
        .map_err(|e| FileError::new("sync directory", path, None, e))
}

/// Creates `dir` and its missing parents, and makes each new name durable by syncing
/// the directory that holds it (otherwise a crash could lose the WAL directory itself
/// with every segment synced into it).
pub fn create_dir_durably(dir: &Path) -> Result<(), FileError> {
    // The missing directories, deepest first; bounded by the path's components.
    let mut missing: Vec<&Path> = Vec::new();
    for ancestor in dir.ancestors() {
        if ancestor.as_os_str().is_empty() {
            break;
        }
        match fs::symlink_metadata(ancestor) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(ancestor),
            Err(e) => return Err(FileError::new("stat", ancestor, None, e)),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| FileError::new("create directory", dir, None, e))?;
    for created in missing {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            // A relative path with one component lives in the current directory.
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// Allocates `size_bytes` for `file`, which is new and empty, and sets its size.
fn preallocate(file: &File, path: &Path, size_bytes: u64) -> Result<(), FileError> {
    if size_bytes == 0 {
        // `posix_fallocate` refuses a length of 0, and there is nothing to allocate.
        return Ok(());
    }
    let len = libc::off_t::try_from(size_bytes).map_err(|_| {
        FileError::custom(
            "preallocate",
            path,
            None,
            io::ErrorKind::InvalidInput,
            format!("size {size_bytes} bytes does not fit this platform's file offsets"),
        )
    })?;
    for _ in 0..FALLOCATE_ATTEMPTS_MAX {
        // SAFETY: `posix_fallocate` only reads its integer arguments; the descriptor
        // comes from `file`, which is borrowed for the whole call, so it stays open and
        // refers to the file just created.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match rc {
            0 => return Ok(()),
            libc::EINTR => {}
            // The file system cannot allocate ahead (tmpfs on old kernels, some network
            // and FUSE file systems): a sparse file of the right size reads the same,
            // only without the guarantee that later writes find space.
            libc::EOPNOTSUPP | libc::EINVAL => {
                return file
                    .set_len(size_bytes)
                    .map_err(|e| FileError::new("set_len", path, None, e));
            }
            // `posix_fallocate` returns the error number instead of setting `errno`.
            errno => {
                return Err(FileError::new(
                    "preallocate",
                    path,
                    None,
                    io::Error::from_raw_os_error(errno),
                ));
            }
        }
    }
    Err(FileError::custom(
        "preallocate",
        path,
        None,
        io::ErrorKind::Interrupted,
        "interrupted by signals too many times",
    ))
}

/// The sector size to report for a file system block size of `blksize` bytes.
///
/// Rounded down, not up: reporting a larger atomic unit than the medium has is the
/// direction that would break the crash contract.
fn granularity_from_blksize(blksize: u64) -> u32 {
    if blksize == 0 {
        return GRANULARITY_BYTES_DEFAULT;
    }
    let clamped = blksize.clamp(
        u64::from(GRANULARITY_BYTES_MIN),
        u64::from(GRANULARITY_BYTES_MAX),
    );
    // `clamped` is in 512..=65536, so its base-2 logarithm exists and is at most 16.
    clamped
        .checked_ilog2()
        .and_then(|log| 1u32.checked_shl(log))
        .unwrap_or(GRANULARITY_BYTES_DEFAULT)
}

#[cfg(test)]
mod tests {
    use std::string::ToString;
    use std::vec;

    use embedded_io::{Error as _, ErrorKind};

    use super::*;

    #[test]
    fn round_trip_read_write_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        fs::write(&path, [0u8; 100]).unwrap();
        let mut dev = FileDevice::open_read_write(&path).unwrap();
        assert!(dev.is_writable());
        assert_eq!(dev.len_bytes(), 100);
        assert_eq!(dev.capacity_bytes(), SEGMENT_SIZE_BYTES_MAX);
        let g = dev.write_granularity_bytes();
        assert!(g.is_power_of_two() && (512..=65_536).contains(&g), "{g}");

        dev.write_all_at(10, b"hello").unwrap();
        // Writing past the end grows the file.
        dev.write_all_at(120, b"world").unwrap();
        assert_eq!(dev.len_bytes(), 125);
        dev.sync().unwrap();

        let mut buf = [0u8; 5];
        dev.read_exact_at(10, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let mut gap = [9u8; 20];
        dev.read_exact_at(100, &mut gap).unwrap();
        assert_eq!(gap, [0u8; 20]);

        let mut reopened = FileDevice::open_read_only(&path).unwrap();
        assert_eq!(reopened.len_bytes(), 125);
        assert_eq!(reopened.capacity_bytes(), 125);
        reopened.read_exact_at(120, &mut buf).unwrap();
        assert_eq!(&buf, b"world");
    }

    #[test]
    fn read_only_out_of_range_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        fs::write(&path, [7u8; 64]).unwrap();
        let mut dev = FileDevice::open_read_only(&path).unwrap();
        assert!(!dev.is_writable());

        let e = dev.read_exact_at(60, &mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.offset_bytes, Some(60));
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: read at offset 60: ", path.display())),
            "{msg}"
        );

        let e = dev.read_exact_at(u64::MAX, &mut [0u8; 1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains(&path.display().to_string()));

        let e = dev.write_all_at(0, &[1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: write at offset 0: ", path.display())),
            "{msg}"
        );
        // Past the end as well: refused for being read-only, never a panic.
        let e = dev.write_all_at(u64::MAX, &[1, 2]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);

        // The file was never modified.
        assert_eq!(fs::read(&path).unwrap(), vec![7u8; 64]);
        dev.read_exact_at(0, &mut [0u8; 64]).unwrap();
    }

    #[test]
    fn read_write_out_of_range_is_invalid_input() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        fs::write(&path, [0u8; 16]).unwrap();
        let mut dev = FileDevice::open_read_write(&path).unwrap();
        let e = dev.write_all_at(SEGMENT_SIZE_BYTES_MAX, &[1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains(&path.display().to_string()));
        let e = dev.write_all_at(u64::MAX, &[1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // Reads are checked against the length, not the capacity.
        let e = dev.read_exact_at(16, &mut [0u8; 1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(dev.len_bytes(), 16);
    }

    #[test]
    fn open_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.wal");
        let e = FileDevice::open_read_only(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.offset_bytes, None);
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: open: ", missing.display())),
            "{msg}"
        );
        assert!(!msg.contains("offset"), "{msg}");

        let e = FileDevice::open_read_only(tmp.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("not a regular file"));
    }

    #[test]
    fn create_preallocated_has_exact_size_initial_bytes_and_zeros() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new.wal");
        let size_bytes = 263_232;
        let mut dev = FileDevice::create_preallocated(&path, size_bytes, b"header").unwrap();
        assert!(dev.is_writable());
        assert_eq!(dev.len_bytes(), size_bytes);
        assert_eq!(fs::metadata(&path).unwrap().len(), size_bytes);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..6], b"header");
        assert!(bytes[6..].iter().all(|&b| b == 0));
        // Really allocated (unless the file system cannot, which tmpfs and ext4 can).
        let blocks_bytes = fs::metadata(&path).unwrap().blocks() * 512;
        assert!(blocks_bytes >= size_bytes, "{blocks_bytes} < {size_bytes}");

        dev.write_all_at(size_bytes - 1, &[5]).unwrap();
        assert_eq!(dev.len_bytes(), size_bytes);
    }

    #[test]
    fn create_preallocated_fails_if_the_file_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("old.wal");
        fs::write(&path, b"keep me").unwrap();
        let e = FileDevice::create_preallocated(&path, 4096, b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.to_string().contains(&path.display().to_string()));
        // Neither overwritten nor removed by the failed attempt.
        assert_eq!(fs::read(&path).unwrap(), b"keep me");
    }

    #[test]
    fn create_preallocated_rejects_bad_sizes_without_leaving_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bad.wal");
        let e = FileDevice::create_preallocated(&path, 4, b"too long").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e =
            FileDevice::create_preallocated(&path, SEGMENT_SIZE_BYTES_MAX + 1, b"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!path.exists());
        // An empty file is fine.
        let dev = FileDevice::create_preallocated(&path, 0, b"").unwrap();
        assert_eq!(dev.len_bytes(), 0);
    }

    #[test]
    fn sync_dir_syncs_a_directory_and_names_a_missing_one() {
        let tmp = tempfile::tempdir().unwrap();
        sync_dir(tmp.path()).unwrap();
        let missing = tmp.path().join("nope");
        let e = sync_dir(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: open directory: ", missing.display()))
        );
    }

    #[test]
    fn granularity_is_a_clamped_power_of_two() {
        assert_eq!(granularity_from_blksize(0), 4096);
        assert_eq!(granularity_from_blksize(1), 512);
        assert_eq!(granularity_from_blksize(512), 512);
        assert_eq!(granularity_from_blksize(4096), 4096);
        assert_eq!(granularity_from_blksize(6000), 4096);
        assert_eq!(granularity_from_blksize(131_072), 65_536);
        assert_eq!(granularity_from_blksize(u64::MAX), 65_536);
    }

    #[test]
    fn error_display_is_one_line_and_has_a_source() {
        let e = FileError::custom(
            "read",
            "/x/FS.00000001.wal",
            Some(42),
            io::ErrorKind::InvalidData,
            "bad",
        );
        assert_eq!(e.to_string(), "/x/FS.00000001.wal: read at offset 42: bad");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        let e = FileError::custom("sync", "/x", None, io::ErrorKind::Other, "failed");
        assert_eq!(e.to_string(), "/x: sync: failed");
    }

    /// One step of the model test below.
    #[derive(Clone, Debug)]
    enum Op {
        Write { offset: u64, len: usize, byte: u8 },
        Read { offset: u64, len: usize },
        Sync,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            // Mostly appends of block-ish sizes near each other, some far apart.
            6 => (0u64..3_000_000, 1usize..40_000, any::<u8>())
                .prop_map(|(offset, len, byte)| Op::Write { offset, len, byte }),
            1 => (0u64..3_000_000, 1usize..5000).prop_map(|(offset, len)| Op::Read { offset, len }),
            1 => Just(Op::Sync),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Gathering writes, with or without the write thread, keeps a file device
        /// exactly a byte array: reads see every earlier write, and after a sync (or
        /// after the device is dropped) a fresh handle sees them too.
        #[test]
        // Offsets below 3 MB fit in usize on every test host.
        #[allow(clippy::cast_possible_truncation)]
        fn gathered_writes_read_back_as_written(
            ops in proptest::collection::vec(op(), 1..60),
            thread: bool,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("seg");
            fs::write(&path, []).unwrap();
            let mut dev = FileDevice::open_read_write(&path).unwrap();
            dev.set_write_thread(thread).unwrap();
            let mut model: vec::Vec<u8> = vec::Vec::new();
            for op in ops {
                match op {
                    Op::Write { offset, len, byte } => {
                        let end = offset as usize + len;
                        if model.len() < end {
                            model.resize(end, 0);
                        }
                        model[offset as usize..end].fill(byte);
                        dev.write_all_at(offset, &vec![byte; len]).unwrap();
                        proptest::prop_assert_eq!(dev.len_bytes(), model.len() as u64);
                    }
                    Op::Read { offset, len } => {
                        let mut buf = vec![0u8; len];
                        let end = offset as usize + len;
                        if end <= model.len() {
                            dev.read_exact_at(offset, &mut buf).unwrap();
                            proptest::prop_assert!(buf[..] == model[offset as usize..end]);
                        } else {
                            proptest::prop_assert!(dev.read_exact_at(offset, &mut buf).is_err());
                        }
                    }
                    Op::Sync => {
                        dev.sync().unwrap();
                        proptest::prop_assert!(fs::read(&path).unwrap() == model);
                    }
                }
            }
            drop(dev);
            proptest::prop_assert!(fs::read(&path).unwrap() == model, "after drop");
        }
    }

    #[test]
    fn the_write_thread_starts_with_the_first_write_only() {
        // Issue 9, defect 10: recovery opens every segment of a store whose devices use
        // a write thread; one thread per segment was started (1001 for 1000 segments).
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        FileDevice::create_preallocated(&path, 1 << 16, b"FS").unwrap();
        let mut dev = FileDevice::open_read_write(&path).unwrap();
        dev.set_write_thread(true).unwrap();
        let mut buf = [0u8; 2];
        dev.read_exact_at(0, &mut buf).unwrap();
        dev.sync().unwrap();
        assert!(dev.thread.is_none(), "reads and syncs start no thread");
        dev.write_all_at(64, &[1; 100]).unwrap();
        dev.sync().unwrap();
        assert!(dev.thread.is_some(), "the first write issued started it");
        dev.set_write_thread(false).unwrap();
        assert!(dev.thread.is_none());
        let mut read_only = FileDevice::open_read_only(&path).unwrap();
        read_only.set_write_thread(true).unwrap();
        read_only.read_exact_at(64, &mut buf).unwrap();
        assert_eq!(buf, [1, 1]);
        assert!(read_only.thread.is_none());
    }

    #[test]
    fn a_failed_background_write_fails_every_later_write_and_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        fs::write(&path, [0u8; 16]).unwrap();
        let mut dev = FileDevice::open_read_write(&path).unwrap();
        dev.set_write_thread(true).unwrap();
        dev.write_all_at(0, b"abc").unwrap();
        // What the write thread reports when the disk refuses a write.
        let failure = Failed {
            offset_bytes: 4096,
            error: io::Error::other("no space left"),
        };
        let first = dev.thread_failed(failure);
        assert!(first.to_string().contains("offset 4096"), "{first}");
        for _ in 0..2 {
            let e = dev.sync().expect_err("a sync after a lost write");
            assert!(e.to_string().contains("an earlier write failed"), "{e}");
            assert!(dev.write_all_at(3, b"d").is_err());
        }
    }
}
