//! The direct I/O backend: [`DirectDevice`], a segment file or a slot of a raw block
//! device accessed with `O_DIRECT`, and [`geometry`], what the kernel says about a
//! file's or a block device's sectors.
//!
//! # Why `O_DIRECT`
//!
//! Without it a write lands in the page cache and reaches the device only at
//! writeback or at the next `fdatasync`, which then has to find and write every dirty
//! page. With `O_DIRECT` there is no page cache: each write goes to the device when it
//! is issued (`fdatasync` is left to flush the device's own cache and, for a file, to
//! commit the metadata needed to read the data back), memory use does not grow with the
//! log, and on a raw block device no file system sits in between. Opened with
//! `O_DSYNC` as well ([`DirectDevice::open_window`]), every write is durable when it
//! returns.
//!
//! # Alignment
//!
//! Direct I/O needs every `pread`/`pwrite` to have its file offset, its length and its
//! buffer's address aligned to the device's logical block size (for a regular file, to
//! the file system's direct I/O alignments, which `statx` reports with
//! `STATX_DIOALIGN`). The device aligns everything to the *physical* block size
//! ([`Geometry::io_block_bytes`]), a multiple of the logical one: on a "512e" drive
//! (512-byte logical, 4096-byte physical sectors) a 512-byte write makes the drive
//! read, modify and rewrite the whole 4096-byte sector, and a power cut in the middle
//! can damage bytes of it that the write did not cover, bytes a sync may have made
//! durable. Writing whole physical sectors keeps every write one atomic unit, which is
//! what the crash contract assumes. Aligned buffers are made
//! without `unsafe`: a `Vec<u8>` over-allocated by one alignment, used from its first
//! aligned address. The buffer is kept and reused, and grows only when a larger request
//! comes, so the hot path does not allocate.
//!
//! # Boundary sectors: read-modify-write
//!
//! The v1 layout is not sector aligned (block `k` is 16448 bytes at `64 + k * 16448`),
//! so a write usually starts and ends inside a sector. The device writes the aligned
//! span around it, `[align_down(offset), align_up(offset + len))`, in one `pwrite`, with
//! the parts of the first and last sectors outside the write holding the bytes those
//! sectors already hold. This is safe under the crash contract: a sector write is
//! atomic, so after a crash a boundary sector holds either its old bytes or its new
//! ones, and its new ones differ from the old only inside the write. Bytes outside the
//! write are never changed, not even transiently.
//!
//! Where the old bytes come from: the device remembers the last sector it wrote (a
//! one-sector cache). The writer appends sequentially, so the first sector of the next
//! block is the last sector of the previous one, and comes from the cache with no read.
//! The last sector of a write is still read from the device when the write ends inside
//! it (the bytes after the write are not known otherwise). A failed `pwrite` empties
//! the cache, since the device no longer knows what the sector holds. For a regular
//! file, bytes past the end of the file read as zeros. The cache assumes the device is
//! the only writer of its window, which the WAL directory's lock ensures for segments.
//!
//! Windows: [`DirectDevice::open_window`] takes a base that is a multiple of the
//! logical block size, so two windows that do not overlap never share a sector, and
//! the read-modify-write of one never races with writes to another.
//!
//! # File sizes
//!
//! A regular file's length is not sector aligned either (segments are `64 + n * 16448`
//! bytes), so an aligned write of the file's last sector extends the file past its
//! logical end. The device cuts it back (`set_len`) right after, so a segment keeps the
//! exact size docs/FORMAT.md gives it. A crash between the two can leave a few zero bytes
//! past the end (less than one sector), which replay ignores: it counts whole block
//! slots only.

use std::format;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::vec;
use std::vec::Vec;

use fswal_core::device::{BlockDevice, range_within};

use crate::file::{FileDevice, FileError, SegmentFile};

mod geometry;

pub use geometry::{BLOCK_BYTES_DEFAULT, BLOCK_BYTES_MAX, BLOCK_BYTES_MIN, Geometry, geometry};
use geometry::{Kind, probe};

/// A reusable buffer from which aligned slices are cut, without `unsafe`: the vector is
/// over-allocated by one alignment and used from its first aligned address.
#[derive(Debug, Default)]
struct AlignedBuf {
    raw: Vec<u8>,
}

impl AlignedBuf {
    /// `len` bytes starting at an address that is a multiple of `align` (a power of
    /// two), growing the buffer only if it is too small; `None` on overflow.
    fn slice_mut(&mut self, len: usize, align: usize) -> Option<&mut [u8]> {
        if !align.is_power_of_two() {
            return None;
        }
        let need = len.checked_add(align)?;
        if self.raw.len() < need {
            self.raw.resize(need, 0);
        }
        // Recomputed on every call: growing may have moved the allocation.
        let start = self.raw.as_ptr().align_offset(align);
        let end = start.checked_add(len)?;
        self.raw.get_mut(start..end)
    }
}

/// A window `[base_offset_bytes, base_offset_bytes + len_bytes)` of a regular file or
/// a block device, accessed with `O_DIRECT` (and `O_DSYNC` if asked). See the module
/// docs for the alignment rules and the boundary-sector read-modify-write.
#[derive(Debug)]
pub struct DirectDevice {
    file: File,
    path: PathBuf,
    geometry: Geometry,
    /// The logical block size as a `usize`, for buffer arithmetic.
    align: usize,
    base_offset_bytes: u64,
    /// The window's length: the device's length and capacity.
    len_bytes: u64,
    /// For a regular file, its length at open, which the device keeps it at; `None`
    /// for a block device, whose size does not change.
    file_size_bytes: Option<u64>,
    writable: bool,
    /// The aligned span of the current read or write.
    scratch: AlignedBuf,
    /// The device offset of the sector in `last_sector_bytes`: the last sector this
    /// device wrote, as it wrote it. `None` when nothing is cached.
    last_sector_offset_bytes: Option<u64>,
    /// One logical block: the bytes of the cached sector.
    last_sector_bytes: Vec<u8>,
    /// Boundary sectors read from the device (cache misses), for tests.
    #[cfg(test)]
    boundary_reads: u64,
}

impl DirectDevice {
    /// Opens the window `[base_offset_bytes, base_offset_bytes + len_bytes)` of the
    /// block device (or regular file) at `path` with `O_DIRECT`, for reading and also
    /// writing if `writable`, and with `O_DSYNC` if `dsync` (every write durable when
    /// it returns). The device's length and capacity are `len_bytes`; its offset 0 is
    /// byte `base_offset_bytes` of `path`.
    ///
    /// Fails with `InvalidInput` when the base is not a multiple of the logical block
    /// size, when the window does not lie inside the device (or file), or when `path`
    /// is neither a block device nor a regular file. Windows must not overlap one
    /// another; with aligned bases, windows that do not overlap never share a sector.
    pub fn open_window(
        path: &Path,
        base_offset_bytes: u64,
        len_bytes: u64,
        writable: bool,
        dsync: bool,
    ) -> Result<Self, FileError> {
        let file = open_direct(path, writable, dsync)?;
        let (geometry, kind) = probe(&file, path)?;
        let logical = u64::from(geometry.io_block_bytes());
        if base_offset_bytes % logical != 0 {
            return Err(FileError::custom(
                "open",
                path,
                Some(base_offset_bytes),
                io::ErrorKind::InvalidInput,
                format!(
                    "the window's base is not a multiple of the physical block size ({logical} bytes)"
                ),
            ));
        }
        let inside = base_offset_bytes
            .checked_add(len_bytes)
            .is_some_and(|end| end <= geometry.size_bytes);
        if !inside {
            return Err(FileError::custom(
                "open",
                path,
                Some(base_offset_bytes),
                io::ErrorKind::InvalidInput,
                format!(
                    "a window of {len_bytes} bytes does not fit in the device ({} bytes)",
                    geometry.size_bytes
                ),
            ));
        }
        Self::new(
            file,
            path.to_path_buf(),
            geometry,
            kind,
            base_offset_bytes,
            len_bytes,
            writable,
        )
    }

    /// Opens the whole regular file at `path` with `O_DIRECT` (no `O_DSYNC`).
    fn open_file(path: &Path, writable: bool) -> Result<Self, FileError> {
        let file = open_direct(path, writable, false)?;
        let (geometry, kind) = probe(&file, path)?;
        if kind != Kind::RegularFile {
            return Err(FileError::custom(
                "open",
                path,
                None,
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Self::new(
            file,
            path.to_path_buf(),
            geometry,
            kind,
            0,
            geometry.size_bytes,
            writable,
        )
    }

    fn new(
        file: File,
        path: PathBuf,
        geometry: Geometry,
        kind: Kind,
        base_offset_bytes: u64,
        len_bytes: u64,
        writable: bool,
    ) -> Result<Self, FileError> {
        // At most 65536, so this only fails on a 16-bit target.
        let align = usize::try_from(geometry.io_block_bytes()).map_err(|_| {
            FileError::custom(
                "open",
                path.as_path(),
                None,
                io::ErrorKind::InvalidInput,
                "the logical block size does not fit this platform's addresses",
            )
        })?;
        Ok(Self {
            file,
            path,
            geometry,
            align,
            base_offset_bytes,
            len_bytes,
            file_size_bytes: (kind == Kind::RegularFile).then_some(geometry.size_bytes),
            writable,
            scratch: AlignedBuf::default(),
            last_sector_offset_bytes: None,
            last_sector_bytes: vec![0; align],
            #[cfg(test)]
            boundary_reads: 0,
        })
    }

    /// What the kernel said about the device when it was opened.
    #[must_use]
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Where the window starts in the file or block device, in bytes.
    #[must_use]
    pub fn base_offset_bytes(&self) -> u64 {
        self.base_offset_bytes
    }

    /// Whether the device was opened for writing.
    #[must_use]
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The aligned span `[start, end)` of the device (in bytes of the file or block
    /// device) that covers `len` bytes at window offset `offset_bytes`, and the file
    /// offset of the first of those bytes; `InvalidInput` for `op` when they do not lie
    /// inside the window.
    fn span(&self, op: &'static str, offset_bytes: u64, len: usize) -> Result<Span, FileError> {
        let out_of_range = || {
            FileError::custom(
                op,
                self.path.as_path(),
                self.base_offset_bytes.checked_add(offset_bytes),
                io::ErrorKind::InvalidInput,
                format!(
                    "{len} bytes at window offset {offset_bytes} do not fit in the window ({} bytes from byte {})",
                    self.len_bytes, self.base_offset_bytes
                ),
            )
        };
        if !range_within(offset_bytes, len, self.len_bytes) {
            return Err(out_of_range());
        }
        let align = u64::from(self.geometry.io_block_bytes());
        let len_u64 = u64::try_from(len).map_err(|_| out_of_range())?;
        let start_bytes = self
            .base_offset_bytes
            .checked_add(offset_bytes)
            .ok_or_else(out_of_range)?;
        let end_bytes = start_bytes.checked_add(len_u64).ok_or_else(out_of_range)?;
        let span_start_bytes = start_bytes - start_bytes % align;
        let span_end_bytes = end_bytes
            .checked_add(align - 1)
            .map(|x| x - x % align)
            .ok_or_else(out_of_range)?;
        let span_len =
            usize::try_from(span_end_bytes - span_start_bytes).map_err(|_| out_of_range())?;
        let head = usize::try_from(start_bytes - span_start_bytes).map_err(|_| out_of_range())?;
        Ok(Span {
            start_bytes,
            end_bytes,
            span_start_bytes,
            span_end_bytes,
            span_len,
            head,
        })
    }

    fn error(&self, op: &'static str, offset_bytes: Option<u64>, source: io::Error) -> FileError {
        FileError::new(op, self.path.as_path(), offset_bytes, source)
    }

    fn scratch_error(&self, op: &'static str, offset_bytes: u64) -> FileError {
        FileError::custom(
            op,
            self.path.as_path(),
            Some(offset_bytes),
            io::ErrorKind::OutOfMemory,
            "no aligned buffer of that size",
        )
    }
}

/// The aligned span around a request, in bytes of the file or block device.
#[derive(Clone, Copy, Debug)]
struct Span {
    /// The request's first byte.
    start_bytes: u64,
    /// The byte after the request.
    end_bytes: u64,
    /// `start_bytes` rounded down to the logical block size.
    span_start_bytes: u64,
    /// `end_bytes` rounded up to the logical block size.
    span_end_bytes: u64,
    /// `span_end_bytes - span_start_bytes`.
    span_len: usize,
    /// Where the request starts inside the span.
    head: usize,
}

/// Opens `path` with `O_DIRECT`, read-write if `writable`, and `O_DSYNC` if `dsync`.
fn open_direct(path: &Path, writable: bool, dsync: bool) -> Result<File, FileError> {
    let flags = if dsync {
        libc::O_DIRECT | libc::O_DSYNC
    } else {
        libc::O_DIRECT
    };
    OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| FileError::new("open", path, None, e))
}

/// Reads into `buf` (aligned, a whole number of `align`-byte sectors) from `offset_bytes`
/// (aligned) until it is full or the file ends; returns the bytes read. A short read
/// that ends inside a sector is the end of the file: reading on from an unaligned
/// offset would be refused by direct I/O, so it stops there.
fn pread_aligned(
    file: &File,
    offset_bytes: u64,
    buf: &mut [u8],
    align: usize,
) -> io::Result<usize> {
    let mut done = 0usize;
    // Each turn reads at least one byte or stops, except for retries after a signal.
    while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
        let at = u64::try_from(done)
            .ok()
            .and_then(|done| offset_bytes.checked_add(done))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflows"))?;
        match file.read_at(rest, at) {
            Ok(0) => break,
            Ok(n) => {
                done = done.saturating_add(n);
                if done % align != 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl BlockDevice for DirectDevice {
    type Error = FileError;

    /// The physical block size: the unit direct I/O writes in.
    fn write_granularity_bytes(&self) -> u32 {
        self.geometry.io_block_bytes()
    }

    fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The window's length: a direct device never grows.
    fn capacity_bytes(&self) -> u64 {
        self.len_bytes
    }

    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), FileError> {
        let span = self.span("read", offset_bytes, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let align = self.align;
        let Some(aligned) = self.scratch.slice_mut(span.span_len, align) else {
            return Err(self.scratch_error("read", span.start_bytes));
        };
        let got = pread_aligned(&self.file, span.span_start_bytes, aligned, align);
        let got = got
            .map_err(|e| FileError::new("read", self.path.as_path(), Some(span.start_bytes), e))?;
        // A read may stop short at the end of a file; it must still cover the request.
        let wanted = span.head.checked_add(buf.len());
        let src = wanted
            .filter(|&wanted| wanted <= got)
            .and_then(|wanted| aligned.get(span.head..wanted));
        let Some(src) = src else {
            return Err(FileError::custom(
                "read",
                self.path.as_path(),
                Some(span.start_bytes),
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended after {got} of the {} bytes read from byte {}",
                    span.span_len, span.span_start_bytes
                ),
            ));
        };
        buf.copy_from_slice(src);
        Ok(())
    }

    /// Writes the aligned span around `buf` in one `pwrite`, its boundary sectors
    /// holding the bytes they already hold outside `buf` (from the one-sector cache, or
    /// read from the device); for a regular file, then cuts the file back to its length
    /// if the span went past it.
    fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), FileError> {
        if !self.writable {
            return Err(FileError::custom(
                "write",
                self.path.as_path(),
                self.base_offset_bytes.checked_add(offset_bytes),
                io::ErrorKind::PermissionDenied,
                "the device is open read-only",
            ));
        }
        let span = self.span("write", offset_bytes, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let align = self.align;
        let align_u64 = u64::from(self.geometry.io_block_bytes());
        // Split borrows: the scratch buffer is filled from the file and the cache.
        let Self {
            file,
            path,
            scratch,
            last_sector_offset_bytes,
            last_sector_bytes,
            file_size_bytes,
            #[cfg(test)]
            boundary_reads,
            ..
        } = &mut *self;
        let Some(aligned) = scratch.slice_mut(span.span_len, align) else {
            return Err(FileError::custom(
                "write",
                path.as_path(),
                Some(span.start_bytes),
                io::ErrorKind::OutOfMemory,
                "no aligned buffer of that size",
            ));
        };
        let mut boundary = Boundary {
            file,
            align,
            cached_offset_bytes: *last_sector_offset_bytes,
            cached: last_sector_bytes,
            #[cfg(test)]
            reads: boundary_reads,
        };
        let tail_sector_bytes = span.span_end_bytes - align_u64;
        let tail_at = span.span_len - align;
        let head_partial = span.start_bytes != span.span_start_bytes;
        let tail_partial = span.end_bytes != span.span_end_bytes;
        let filled = (|| {
            if head_partial {
                boundary.fill(span.span_start_bytes, aligned.get_mut(..align))?;
            }
            // A one-sector span whose head was just filled needs no second read.
            if tail_partial && !(head_partial && tail_at == 0) {
                boundary.fill(tail_sector_bytes, aligned.get_mut(tail_at..))?;
            }
            Ok(())
        })();
        filled.map_err(|e| FileError::new("read", path.as_path(), Some(span.start_bytes), e))?;
        let dst = span
            .head
            .checked_add(buf.len())
            .and_then(|end| aligned.get_mut(span.head..end));
        let Some(dst) = dst else {
            return Err(FileError::custom(
                "write",
                path.as_path(),
                Some(span.start_bytes),
                io::ErrorKind::InvalidInput,
                "request outside its aligned span",
            ));
        };
        dst.copy_from_slice(buf);

        let written = file.write_all_at(aligned, span.span_start_bytes);
        // The device grew only if the span went past a regular file's end.
        let grown_past = file_size_bytes.filter(|&size| span.span_end_bytes > size);
        if let Err(e) = written {
            // What the sectors hold is unknown now.
            *last_sector_offset_bytes = None;
            if let Some(size) = grown_past {
                // Best effort: the write's error is the one to report.
                let _ = file.set_len(size);
            }
            return Err(FileError::new(
                "write",
                path.as_path(),
                Some(span.start_bytes),
                e,
            ));
        }
        match aligned.get(tail_at..) {
            Some(tail) if tail.len() == last_sector_bytes.len() => {
                last_sector_bytes.copy_from_slice(tail);
                *last_sector_offset_bytes = Some(tail_sector_bytes);
            }
            _ => *last_sector_offset_bytes = None,
        }
        if let Some(size) = grown_past {
            if let Err(e) = file.set_len(size) {
                *last_sector_offset_bytes = None;
                return Err(FileError::new(
                    "set_len",
                    path.as_path(),
                    Some(span.start_bytes),
                    e,
                ));
            }
        }
        Ok(())
    }

    /// `fdatasync`: flushes the device's write cache, and for a file commits the
    /// metadata needed to read the data back (the length, extent conversions).
    fn sync(&mut self) -> Result<(), FileError> {
        self.file
            .sync_data()
            .map_err(|e| self.error("sync", None, e))
    }
}

/// Where the boundary sectors of a write come from: the one-sector cache, else the
/// device.
struct Boundary<'a> {
    file: &'a File,
    align: usize,
    cached_offset_bytes: Option<u64>,
    cached: &'a [u8],
    #[cfg(test)]
    reads: &'a mut u64,
}

impl Boundary<'_> {
    /// Fills `sector` (one aligned logical block, or `None` if the span had no room for
    /// it, which is a bug) with the bytes the device holds at `offset_bytes`: from the
    /// cache if it holds that sector, else read, with zeros past the end of a file.
    fn fill(&mut self, offset_bytes: u64, sector: Option<&mut [u8]>) -> io::Result<()> {
        let Some(sector) = sector.filter(|s| s.len() == self.align) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "boundary sector outside the aligned span",
            ));
        };
        if self.cached_offset_bytes == Some(offset_bytes) && self.cached.len() == sector.len() {
            sector.copy_from_slice(self.cached);
            return Ok(());
        }
        #[cfg(test)]
        {
            *self.reads += 1;
        }
        let got = pread_aligned(self.file, offset_bytes, sector, self.align)?;
        if let Some(past_end) = sector.get_mut(got..) {
            past_end.fill(0);
        }
        Ok(())
    }
}

impl SegmentFile for DirectDevice {
    /// Opens the whole regular file at `path` with `O_DIRECT`, read-only unless
    /// `writable`. Its length and capacity are the file's length.
    fn open(path: &Path, writable: bool) -> Result<Self, FileError> {
        Self::open_file(path, writable)
    }

    /// Creates the file with [`FileDevice::create_preallocated`] (allocated, holding
    /// `initial`, synced), then reopens it with `O_DIRECT` for writing.
    fn create(path: &Path, size_bytes: u64, initial: &[u8]) -> Result<Self, FileError> {
        let created = FileDevice::create_preallocated(path, size_bytes, initial)?;
        drop(created);
        let reopened = Self::open_file(path, true);
        if reopened.is_err() {
            // Best effort, as `create_preallocated` does on its own failures (a file
            // system without direct I/O fails here): a file left behind would make the
            // next attempt fail with `AlreadyExists`.
            let _ = fs::remove_file(path);
        }
        reopened
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the device a new path after its file was renamed; the descriptor follows
    /// the file, only the name in errors changes.
    fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }
}

#[cfg(test)]
mod tests {

    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    use embedded_io::{Error as _, ErrorKind};
    use fswal_core::limits::{BLOCK_SIZE_BYTES, block_offset_bytes, segment_size_bytes};
    use fswal_core::reference::reference_event;
    use fswal_core::{Mode, Replay, Status};

    use super::*;
    use crate::dir::{DirStore, SegmentDir};
    use crate::mmap::tests::{
        REFERENCE_EVENTS, XorShift, random_ops, segment_files, usize_of, write_reference_log,
    };
    use crate::testing::{LoopDevice, say};

    const MIB: u64 = 1 << 20;

    /// Whether `dir`'s file system takes `O_DIRECT`; says why not when it does not.
    fn direct_io_available(dir: &Path) -> bool {
        let probe = dir.join("probe");
        fs::write(&probe, [0u8; 4096]).unwrap();
        let opened = open_direct(&probe, true, false);
        fs::remove_file(&probe).unwrap();
        match opened {
            Ok(_) => true,
            Err(e) => {
                say(format_args!(
                    "skipping: O_DIRECT unavailable in {} ({e})\n",
                    dir.display()
                ));
                false
            }
        }
    }

    #[test]
    fn random_writes_and_reads_match_a_model_and_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        if !direct_io_available(tmp.path()) {
            return;
        }
        let path = tmp.path().join("seg");
        // 64 + 16 * 16448 bytes: the file's end is not sector aligned.
        let size_bytes = segment_size_bytes(16);
        let mut model = vec![0u8; usize_of(size_bytes)];
        model[..6].copy_from_slice(b"header");
        let mut dev = DirectDevice::create(&path, size_bytes, b"header").unwrap();
        assert!(dev.is_writable());
        assert_eq!(dev.len_bytes(), size_bytes);
        assert_eq!(dev.capacity_bytes(), size_bytes);
        let sector = u64::from(dev.write_granularity_bytes());
        random_ops(&mut dev, &mut model, 0x2545_f491_4f6c_dd1d, 300, sector);
        // Writes at the very end went past the file's end and were cut back.
        assert_eq!(fs::metadata(&path).unwrap().len(), size_bytes);
        dev.sync().unwrap();
        drop(dev);

        assert_eq!(fs::metadata(&path).unwrap().len(), size_bytes);
        assert!(fs::read(&path).unwrap() == model);
        let mut reopened = DirectDevice::open(&path, false).unwrap();
        assert!(!reopened.is_writable());
        assert_eq!(reopened.len_bytes(), size_bytes);
        let mut all = vec![0u8; model.len()];
        reopened.read_exact_at(0, &mut all).unwrap();
        assert!(all == model);
    }

    #[test]
    fn geometry_of_a_regular_file_is_sane() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        fs::write(&path, [1u8; 1000]).unwrap();
        let file = File::open(&path).unwrap();
        let g = geometry(&file, &path).unwrap();
        say(format_args!("regular file geometry: {g:?}\n"));
        for bytes in [g.logical_block_bytes, g.physical_block_bytes] {
            assert!(bytes.is_power_of_two(), "{g:?}");
            assert!(
                (BLOCK_BYTES_MIN..=BLOCK_BYTES_MAX).contains(&bytes),
                "{g:?}"
            );
        }
        assert!(g.physical_block_bytes >= g.logical_block_bytes, "{g:?}");
        assert_eq!(g.size_bytes, 1000);

        // A directory is neither a file nor a block device.
        let dir = File::open(tmp.path()).unwrap();
        let e = geometry(&dir, tmp.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .contains("neither a regular file nor a block device")
        );
    }

    #[test]
    fn aligned_buffers_are_aligned_and_grow_only_when_needed() {
        let mut buf = AlignedBuf::default();
        for (len, align) in [
            (512, 512),
            (4096, 4096),
            (100, 512),
            (17_408, 4096),
            (0, 512),
        ] {
            let s = buf.slice_mut(len, align).unwrap();
            assert_eq!(s.len(), len);
            assert_eq!(s.as_ptr().align_offset(align), 0);
        }
        let capacity = buf.raw.len();
        buf.slice_mut(512, 512).unwrap();
        assert_eq!(
            buf.raw.len(),
            capacity,
            "a smaller request does not reallocate"
        );
        assert!(buf.slice_mut(10, 3).is_none(), "not a power of two");
        assert!(buf.slice_mut(usize::MAX, 512).is_none());
    }

    #[test]
    fn open_window_checks_alignment_and_bounds() {
        let tmp = tempfile::tempdir().unwrap();
        if !direct_io_available(tmp.path()) {
            return;
        }
        let path = tmp.path().join("disk");
        fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
        let file = File::open(&path).unwrap();
        let logical = u64::from(geometry(&file, &path).unwrap().io_block_bytes());

        let e = DirectDevice::open_window(&path, 100, 512, true, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.offset_bytes, Some(100));
        assert!(
            e.to_string()
                .contains("not a multiple of the physical block size"),
            "{e}"
        );
        let e = DirectDevice::open_window(&path, logical, 64 * 1024, true, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("does not fit in the device"), "{e}");
        let e = DirectDevice::open_window(&path, logical, u64::MAX, true, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = DirectDevice::open_window(tmp.path(), 0, 0, false, false).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Other),
            "{e}"
        );

        // The whole file, and an empty window at its end, are fine.
        DirectDevice::open_window(&path, 0, 64 * 1024, true, true).unwrap();
        let mut empty = DirectDevice::open_window(&path, 64 * 1024, 0, true, false).unwrap();
        empty.read_exact_at(0, &mut []).unwrap();
        empty.write_all_at(0, &[]).unwrap();
        assert_eq!(
            empty.write_all_at(0, &[1]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn writes_past_the_window_fail_cleanly_and_change_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        if !direct_io_available(tmp.path()) {
            return;
        }
        let path = tmp.path().join("disk");
        let pattern: Vec<u8> = (0..64 * 1024u32)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        fs::write(&path, &pattern).unwrap();
        // A window whose end is inside a sector: its tail sector is shared with bytes
        // the window does not own, which must keep their values.
        let base = 8192;
        let len = 5000;
        let mut dev = DirectDevice::open_window(&path, base, len, true, false).unwrap();
        assert_eq!(dev.base_offset_bytes(), base);
        assert_eq!(dev.len_bytes(), len);
        assert_eq!(dev.capacity_bytes(), len);

        let e = dev.write_all_at(len - 3, b"abcd").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.offset_bytes, Some(base + len - 3));
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "{}: write at offset {}: ",
                path.display(),
                base + len - 3
            )),
            "{msg}"
        );
        let e = dev.write_all_at(u64::MAX, &[1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.offset_bytes, None, "no such offset in the file");
        let e = dev.read_exact_at(len, &mut [0u8; 1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(fs::read(&path).unwrap(), pattern, "nothing was written");

        // The window's last bytes: the rest of their sector keeps its bytes.
        dev.write_all_at(len - 4, b"wxyz").unwrap();
        dev.sync().unwrap();
        let mut expected = pattern.clone();
        let end = usize_of(base + len);
        expected[end - 4..end].copy_from_slice(b"wxyz");
        assert_eq!(fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn read_only_device_refuses_writes() {
        let tmp = tempfile::tempdir().unwrap();
        if !direct_io_available(tmp.path()) {
            return;
        }
        let path = tmp.path().join("seg");
        fs::write(&path, [7u8; 1000]).unwrap();
        let mut dev = DirectDevice::open(&path, false).unwrap();
        assert!(!dev.is_writable());
        let e = dev.write_all_at(0, &[1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: write at offset 0: ", path.display()))
        );
        let e = dev.write_all_at(u64::MAX, &[1, 2]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        // Unaligned reads, including the file's last bytes (a short read at EOF).
        let mut buf = [0u8; 7];
        dev.read_exact_at(993, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 7]);
        dev.read_exact_at(3, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 7]);
        assert_eq!(fs::read(&path).unwrap(), vec![7u8; 1000]);

        let e = DirectDevice::open(tmp.path(), false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let missing = tmp.path().join("missing.wal");
        let e = DirectDevice::open(&missing, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: open: ", missing.display()))
        );
    }

    #[test]
    fn a_read_past_a_truncated_file_is_an_error_not_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        if !direct_io_available(tmp.path()) {
            return;
        }
        let path = tmp.path().join("seg");
        fs::write(&path, [7u8; 10_000]).unwrap();
        let mut dev = DirectDevice::open(&path, false).unwrap();
        // Someone else shortens the file after the device measured it.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(5000)
            .unwrap();
        let e = dev.read_exact_at(4990, &mut [0u8; 20]).unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("the file ended"), "{e}");
        let mut buf = [0u8; 10];
        dev.read_exact_at(4990, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 10]);
    }

    #[test]
    fn sequential_block_writes_take_the_head_sector_from_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        if !direct_io_available(tmp.path()) {
            return;
        }
        let path = tmp.path().join("seg");
        let size_bytes = segment_size_bytes(16);
        let mut dev = DirectDevice::create(&path, size_bytes, &[]).unwrap();
        let mut model = vec![0u8; usize_of(size_bytes)];
        let mut rng = XorShift(7);
        let mut header = [0u8; 64];
        rng.fill(&mut header);
        dev.write_all_at(0, &header).unwrap();
        model[..64].copy_from_slice(&header);
        // The header's sector ends inside the write's span: one read for its tail.
        assert_eq!(dev.boundary_reads, 1);
        let mut block = vec![0u8; BLOCK_SIZE_BYTES];
        for slot in 0..16 {
            rng.fill(&mut block);
            let offset = block_offset_bytes(slot);
            dev.write_all_at(offset, &block).unwrap();
            model[usize_of(offset)..usize_of(offset) + BLOCK_SIZE_BYTES].copy_from_slice(&block);
        }
        // Each block's head sector is the previous write's tail sector, from the cache;
        // only the tail sector of a block that ends inside a sector is read (with 512-byte
        // sectors, blocks 6 and 14 end on a sector boundary).
        let sector = u64::from(dev.write_granularity_bytes());
        let tails_read = (1..=16u32)
            .filter(|&slot| block_offset_bytes(slot) % sector != 0)
            .count();
        let expected = 1 + u64::try_from(tails_read).unwrap();
        assert_eq!(dev.boundary_reads, expected);
        // Sealing rewrites the header: sector 0 is no longer cached.
        rng.fill(&mut header);
        dev.write_all_at(0, &header).unwrap();
        model[..64].copy_from_slice(&header);
        assert_eq!(dev.boundary_reads, expected + 1);
        dev.sync().unwrap();
        assert!(fs::read(&path).unwrap() == model);
        assert_eq!(fs::metadata(&path).unwrap().len(), size_bytes);
    }

    #[test]
    fn reference_log_through_direct_segments_equals_the_file_backend() {
        let ours = tempfile::tempdir().unwrap();
        if !direct_io_available(ours.path()) {
            return;
        }
        let theirs = tempfile::tempdir().unwrap();
        write_reference_log::<DirectDevice>(ours.path());
        write_reference_log::<FileDevice>(theirs.path());

        let mut ids = Vec::new();
        let summary = Replay::new(
            SegmentDir::<DirectDevice>::open_read_only(ours.path()).unwrap(),
            Mode::Strict,
        )
        .run(|e| ids.push(e.event_id()))
        .unwrap();
        assert_eq!(summary.status, Status::Ok);
        assert_eq!(summary.events, REFERENCE_EVENTS);
        assert!(ids.iter().copied().eq(1..=REFERENCE_EVENTS));
        // `DirStore` is `SegmentDir<FileDevice>`: it reads our segments too.
        let summary = Replay::new(DirStore::open_read_only(ours.path()).unwrap(), Mode::Strict)
            .run(|_| {})
            .unwrap();
        assert_eq!(summary.status, Status::Ok);
        assert_eq!(summary.events, REFERENCE_EVENTS);

        let ours = segment_files(ours.path());
        let theirs = segment_files(theirs.path());
        assert_eq!(ours.len(), 3);
        assert_eq!(
            ours.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>(),
            theirs.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
        );
        assert!(ours == theirs, "segment bytes differ from the DirStore run");
        // The reference event the comparison starts from, as a sanity check.
        assert_eq!(reference_event(1).event_id(), 1);
    }

    #[test]
    fn a_window_of_a_loop_device_matches_a_model() {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("disk.img");
        // A pattern rather than zeros, so that a boundary sector rewritten with the
        // wrong bytes shows.
        let pattern: Vec<u8> = (0..64 * MIB)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        fs::write(&image, &pattern).unwrap();
        let loop_device = match LoopDevice::attach(&image) {
            Ok(loop_device) => loop_device,
            Err(reason) => {
                say(format_args!(
                    "skipping: loop devices unavailable ({reason})\n"
                ));
                return;
            }
        };
        let dev_path = loop_device.path().to_path_buf();

        let file = File::open(&dev_path).unwrap();
        let g = geometry(&file, &dev_path).unwrap();
        drop(file);
        say(format_args!(
            "loop device {} geometry: {g:?}\n",
            dev_path.display()
        ));
        assert_eq!(g.size_bytes, 64 * MIB);
        assert!(matches!(g.logical_block_bytes, 512 | 4096), "{g:?}");
        assert!(g.physical_block_bytes >= g.logical_block_bytes, "{g:?}");

        let mut expected = pattern.clone();
        {
            let (base, len) = (MIB, 32 * MIB);
            let mut dev = DirectDevice::open_window(&dev_path, base, len, true, true).unwrap();
            assert_eq!(dev.geometry(), g);
            let mut model = pattern[usize_of(base)..usize_of(base + len)].to_vec();
            let sector = u64::from(dev.write_granularity_bytes());
            random_ops(&mut dev, &mut model, 0xdead_beef_cafe_f00d, 300, sector);
            dev.sync().unwrap();
            expected[usize_of(base)..usize_of(base + len)].copy_from_slice(&model);
        }
        {
            // A window ending inside a sector, without O_DSYNC: its tail sector's bytes
            // past the window must survive.
            let (base, len) = (40 * MIB, MIB - 100);
            let mut dev = DirectDevice::open_window(&dev_path, base, len, true, false).unwrap();
            let mut model = pattern[usize_of(base)..usize_of(base + len)].to_vec();
            let sector = u64::from(dev.write_granularity_bytes());
            random_ops(&mut dev, &mut model, 0x0123_4567_89ab_cdef, 100, sector);
            dev.sync().unwrap();
            expected[usize_of(base)..usize_of(base + len)].copy_from_slice(&model);
        }
        // Past the device's end.
        let e = DirectDevice::open_window(&dev_path, 63 * MIB, 2 * MIB, false, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);

        // The image file, read through its own page cache, holds what was written.
        let image_bytes = fs::read(&image).unwrap();
        assert_eq!(image_bytes.len(), pattern.len());
        if let Some(first) = image_bytes.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!("the image differs from the model first at byte {first}");
        }
        drop(loop_device);
    }
}
