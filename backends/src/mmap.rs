//! The memory-mapped backend: [`MmapDevice`], one segment file through a shared mapping.
//!
//! What it is for: appending to the active segment with plain memory copies, no system
//! call per block, and replaying sealed segments without copying them. A writable
//! device maps the whole file shared and writable; a write is a `memcpy` into the
//! mapping, and [`BlockDevice::sync`] writes back only the range written since the last
//! sync, with `msync(MS_SYNC)`. Pages are faulted in as the writes first touch them, a
//! few microseconds per block spread over the segment's life, rather than all at once
//! when the segment is created: prefaulting 64 MiB stalled a rotation for tens of
//! milliseconds, long enough to fill the recorder's ring. A read-only device maps the
//! file read-only, for replay, and lends the mapping out
//! ([`BlockDevice::mapped_bytes`]) so that blocks are verified where they lie.
//!
//! A mapping cannot grow: the device's length and capacity are the file's length at
//! open, and a write past it fails with `InvalidInput`. That suits segments, which
//! [`FileDevice::create_preallocated`] makes at their full size. A zero-length file has
//! no mapping at all (the system cannot map 0 bytes): reading 0 bytes at offset 0
//! succeeds, anything else is out of range.
//!
//! The write granularity is the page size: `msync` writes whole pages back.
//!
//! # SIGBUS, and why the map calls are sound
//!
//! Mapping a file is `unsafe` because the bytes behind the mapping belong to the file,
//! not to the program: if another process truncates a mapped file, touching the lost
//! pages kills this process with `SIGBUS`, and if it writes to the file the mapped
//! bytes change underneath. fswal never truncates a segment, a writer holds the WAL
//! directory's lock so no other fswal writer touches its segments, and a reader maps
//! the length it saw at open, so within fswal no mapped page is ever lost. A writable
//! device never lends out a reference into its mapping: bytes are copied in and out
//! inside each call. A read-only device lends its mapping for as long as it is
//! borrowed; the only writer that can change those bytes meanwhile is a live fswal
//! writer filling an empty slot of the active segment, and a block that changes while
//! it is verified does not verify (the checksums see a mix), so the reader falls back
//! to copying replay, which reports what it finds. Each `unsafe` map call below says
//! this where it is made.

use std::format;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use fswal_core::device::{BlockDevice, range_within};
use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::file::{FileDevice, FileError, SegmentFile};

/// The page size reported when the system does not say (`sysconf` failing).
pub const PAGE_BYTES_DEFAULT: u32 = 4096;

/// The mapping of a device's file.
#[derive(Debug)]
enum Mapping {
    /// A zero-length file, which cannot be mapped.
    Empty,
    /// A read-only device's mapping.
    ReadOnly(Mmap),
    /// A writable device's shared, writable mapping.
    ReadWrite(MmapMut),
}

impl Mapping {
    /// The mapped bytes (none for an empty file).
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Empty => &[],
            Self::ReadOnly(map) => map,
            Self::ReadWrite(map) => map,
        }
    }
}

/// One segment file, accessed through a memory mapping of the whole file: shared and
/// writable when open for writing, read-only otherwise.
#[derive(Debug)]
pub struct MmapDevice {
    mapping: Mapping,
    /// Kept open for as long as the mapping lives. On Linux the mapping needs no
    /// descriptor after `mmap` returns; elsewhere `sync` calls `fdatasync` on it.
    #[cfg_attr(
        any(target_os = "linux", target_os = "android"),
        allow(
            dead_code,
            reason = "only non-Linux targets sync through the descriptor"
        )
    )]
    file: File,
    path: PathBuf,
    /// The file's length at open, which is also the mapping's: it never changes.
    len_bytes: u64,
    /// The bytes `[lo, hi)` of the mapping that the next sync must write back: those
    /// written since the last successful sync, and, on a device just opened for
    /// writing, the whole file (see `from_file`).
    dirty: Option<(usize, usize)>,
    page_bytes: u32,
    writable: bool,
}

impl MmapDevice {
    /// Whether the device was opened for writing.
    #[must_use]
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Maps `file`, the regular file at `path`, whole: shared and writable if
    /// `writable`, read-only otherwise.
    fn from_file(file: File, path: PathBuf, writable: bool) -> Result<Self, FileError> {
        let metadata = file
            .metadata()
            .map_err(|e| FileError::new("stat", path.as_path(), None, e))?;
        if !metadata.is_file() {
            // A device node or a directory has no length that a mapping could cover.
            return Err(FileError::custom(
                "open",
                path,
                None,
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let len_bytes = metadata.len();
        let map_len = usize::try_from(len_bytes).map_err(|_| {
            FileError::custom(
                "map",
                path.as_path(),
                None,
                io::ErrorKind::InvalidInput,
                format!("{len_bytes} bytes do not fit this platform's address space"),
            )
        })?;
        let mapping = if map_len == 0 {
            Mapping::Empty
        } else if writable {
            // SAFETY: the mapping covers exactly the `map_len` bytes the file held a
            // moment ago, and fswal never truncates or resizes a segment while a device
            // is open on it; the WAL directory lock keeps other fswal writers out. The
            // device never hands out a reference into the mapping (bytes are copied in
            // and out inside each call), so a change made by another process cannot
            // invalidate a borrow. Truncation by a foreign process is the SIGBUS caveat
            // of the module docs.
            let map = unsafe { MmapOptions::new().len(map_len).map_mut(&file) }
                .map_err(|e| FileError::new("map", path.as_path(), None, e))?;
            Mapping::ReadWrite(map)
        } else {
            // SAFETY: as for the writable mapping above: exactly the length the file
            // had, never truncated by fswal. It is lent out by `mapped_bytes` for as long
            // as the device is borrowed; a live writer filling an empty slot meanwhile
            // makes at worst a block that mixes old and new bytes, which verification
            // refuses (see the module docs).
            let map = unsafe { MmapOptions::new().len(map_len).map(&file) }
                .map_err(|e| FileError::new("map", path.as_path(), None, e))?;
            Mapping::ReadOnly(map)
        };
        // An existing file opened for writing may hold pages that an earlier process
        // wrote and that are not durable yet (it crashed before its sync): the first
        // sync covers the whole file, so that recovery can make what it read durable
        // before relying on it (the `BlockDevice::sync` contract).
        let dirty = (writable && map_len > 0).then_some((0, map_len));
        Ok(Self {
            mapping,
            file,
            path,
            len_bytes,
            dirty,
            page_bytes: page_size_bytes(),
            writable,
        })
    }

    /// The mapping's index range for `len` bytes at `offset_bytes`, or an
    /// `InvalidInput` error for `op` when they do not lie inside the file.
    fn mapped_range(
        &self,
        op: &'static str,
        offset_bytes: u64,
        len: usize,
    ) -> Result<Range<usize>, FileError> {
        let out_of_range = || {
            FileError::custom(
                op,
                self.path.as_path(),
                Some(offset_bytes),
                io::ErrorKind::InvalidInput,
                format!(
                    "{len} bytes do not fit in the mapped file ({} bytes; a mapping cannot grow)",
                    self.len_bytes
                ),
            )
        };
        if !range_within(offset_bytes, len, self.len_bytes) {
            return Err(out_of_range());
        }
        // Inside the length, which fits a usize (the mapping was made with it).
        let start = usize::try_from(offset_bytes).map_err(|_| out_of_range())?;
        let end = start.checked_add(len).ok_or_else(out_of_range)?;
        Ok(start..end)
    }

    fn error(&self, op: &'static str, offset_bytes: Option<u64>, source: io::Error) -> FileError {
        FileError::new(op, self.path.as_path(), offset_bytes, source)
    }
}

impl BlockDevice for MmapDevice {
    type Error = FileError;

    /// The page size: `msync` writes whole pages back.
    fn write_granularity_bytes(&self) -> u32 {
        self.page_bytes
    }

    fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The file's length at open: a mapping cannot grow.
    fn capacity_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// A read-only device's mapping, for replay to verify blocks where they lie; a
    /// writable device lends nothing (its bytes change with every write).
    fn mapped_bytes(&self) -> Option<&[u8]> {
        (!self.writable).then(|| self.mapping.bytes())
    }

    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), FileError> {
        let range = self.mapped_range("read", offset_bytes, buf.len())?;
        let src = self.mapping.bytes().get(range).ok_or_else(|| {
            FileError::custom(
                "read",
                self.path.as_path(),
                Some(offset_bytes),
                io::ErrorKind::InvalidInput,
                "range outside the mapping",
            )
        })?;
        buf.copy_from_slice(src);
        Ok(())
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
        let range = self.mapped_range("write", offset_bytes, buf.len())?;
        if range.is_empty() {
            return Ok(());
        }
        let (lo, hi) = (range.start, range.end);
        // A writable device with a non-empty file always has a writable mapping; the
        // other arms are unreachable, but an error beats a panic.
        let dst = match &mut self.mapping {
            Mapping::ReadWrite(map) => map.get_mut(range),
            Mapping::Empty | Mapping::ReadOnly(_) => None,
        };
        let Some(dst) = dst else {
            return Err(FileError::custom(
                "write",
                self.path.as_path(),
                Some(offset_bytes),
                io::ErrorKind::InvalidInput,
                "range outside the writable mapping",
            ));
        };
        dst.copy_from_slice(buf);
        self.dirty = Some(match self.dirty {
            None => (lo, hi),
            Some((old_lo, old_hi)) => (old_lo.min(lo), old_hi.max(hi)),
        });
        Ok(())
    }

    /// Writes the range written since the last sync back with `msync(MS_SYNC)` and
    /// waits for it; on targets other than Linux, also `fdatasync`s the file.
    ///
    /// On Linux, `msync` with `MS_SYNC` on a shared file mapping runs the file's
    /// `fsync` for the range in its data-only form (`vfs_fsync_range(.., datasync)`):
    /// it writes the dirty pages back, waits for them, and commits the metadata needed
    /// to read them (such as the conversion of preallocated extents), which is exactly
    /// what `fdatasync` would add. Elsewhere POSIX only promises that `msync` writes
    /// the pages, so the device also asks for `fdatasync`.
    ///
    /// A failed sync keeps the dirty range: the writer must stop anyway (the crash
    /// contract), and a retry would at least cover everything again.
    fn sync(&mut self) -> Result<(), FileError> {
        if let Some((lo, hi)) = self.dirty {
            let len = hi.saturating_sub(lo);
            if let Mapping::ReadWrite(map) = &self.mapping {
                map.flush_range(lo, len)
                    .map_err(|e| self.error("sync", None, e))?;
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        if self.writable {
            self.file
                .sync_data()
                .map_err(|e| self.error("sync", None, e))?;
        }
        self.dirty = None;
        Ok(())
    }
}

impl SegmentFile for MmapDevice {
    /// Opens and maps the regular file at `path`: read-write and shared if
    /// `writable`; read-only otherwise.
    fn open(path: &Path, writable: bool) -> Result<Self, FileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| FileError::new("open", path, None, e))?;
        Self::from_file(file, path.to_path_buf(), writable)
    }

    /// Creates the file with [`FileDevice::create_preallocated`] (allocated, holding
    /// `initial`, synced), then maps it writable.
    fn create(path: &Path, size_bytes: u64, initial: &[u8]) -> Result<Self, FileError> {
        let created = FileDevice::create_preallocated(path, size_bytes, initial)?;
        // Mapping through a fresh descriptor keeps this module independent of the file
        // device's internals; the file is complete and durable already.
        drop(created);
        let mut mapped = Self::open(path, true);
        if let Ok(device) = mapped.as_mut() {
            // Nothing is pending in a file just made and synced.
            device.dirty = None;
        }
        if mapped.is_err() {
            // Best effort, as `create_preallocated` does on its own failures: a file
            // left behind would make the next attempt fail with `AlreadyExists`.
            let _ = std::fs::remove_file(path);
        }
        mapped
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the device a new path after its file was renamed; the mapping and the
    /// descriptor follow the file, only the name in errors changes.
    fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }
}

/// The system's page size, or [`PAGE_BYTES_DEFAULT`] when it does not say (or says
/// something that is not a power of two).
fn page_size_bytes() -> u32 {
    // SAFETY: `sysconf` takes an integer and returns one; it touches no memory of ours.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(raw)
        .ok()
        .filter(|page| page.is_power_of_two())
        .unwrap_or(PAGE_BYTES_DEFAULT)
}

/// Tests, and the model-based helpers that the direct backend's tests share.
#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::string::{String, ToString};
    use std::vec;
    use std::vec::Vec;

    use embedded_io::{Error as _, ErrorKind};
    use fswal_core::limits::segment_size_bytes;
    use fswal_core::reference::reference_event;
    use fswal_core::{Mode, Replay, Status, WalWriter, WriterConfig};

    use super::*;
    use crate::dir::{DirStore, SegmentDir};

    /// A seeded xorshift64 generator: reproducible random operations, no crate needed.
    pub(crate) struct XorShift(pub(crate) u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// A number in `0..n` (`n > 0`).
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        pub(crate) fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.next().to_le_bytes()[0];
            }
        }
    }

    pub(crate) fn usize_of(x: u64) -> usize {
        usize::try_from(x).unwrap()
    }

    /// Applies `ops` random writes and reads to `dev`, mirrored on `model` (the bytes
    /// the device holds), and checks after each one that the device reads as the model.
    /// Offsets cluster around multiples of `sector` and at the very end.
    pub(crate) fn random_ops<D: BlockDevice>(
        dev: &mut D,
        model: &mut [u8],
        seed: u64,
        ops: usize,
        sector: u64,
    ) where
        D::Error: core::fmt::Debug,
    {
        let mut rng = XorShift(seed);
        let len = u64::try_from(model.len()).unwrap();
        assert_eq!(dev.len_bytes(), len);
        let mut next_sequential = 0u64;
        for op in 0..ops {
            let n = match rng.below(4) {
                0 => 1 + rng.below(16),
                1 => 1 + rng.below(2 * sector + 1),
                2 => 1 + rng.below(20_000),
                _ => 16_448,
            }
            .min(len);
            let offset = match rng.below(5) {
                0 => rng.below(len - n + 1),
                1 => {
                    // Straddling a sector boundary.
                    let boundary = rng.below(len / sector + 1) * sector;
                    boundary.saturating_sub(rng.below(n + 1)).min(len - n)
                }
                2 => len - n,
                3 => next_sequential.min(len - n),
                _ => rng.below(2 * sector).min(len - n),
            };
            let (start, end) = (usize_of(offset), usize_of(offset + n));
            if rng.below(10) < 7 {
                let mut data = vec![0u8; end - start];
                rng.fill(&mut data);
                dev.write_all_at(offset, &data).unwrap();
                model[start..end].copy_from_slice(&data);
                next_sequential = offset + n;
            }
            let mut got = vec![0u8; end - start];
            dev.read_exact_at(offset, &mut got).unwrap();
            assert!(got == model[start..end], "op {op}: {n} bytes at {offset}");
            // And somewhere else, so a write that spilled over is caught.
            let probe_n = 1 + rng.below(3 * sector).min(len - 1);
            let probe = rng.below(len - probe_n + 1);
            let mut got = vec![0u8; usize_of(probe_n)];
            dev.read_exact_at(probe, &mut got).unwrap();
            assert!(
                got == model[usize_of(probe)..usize_of(probe + probe_n)],
                "op {op}: probe of {probe_n} bytes at {probe}"
            );
            if op % 50 == 49 {
                dev.sync().unwrap();
            }
        }
        let mut all = vec![0u8; model.len()];
        dev.read_exact_at(0, &mut all).unwrap();
        assert!(all == model, "whole device differs from the model");
    }

    #[test]
    fn the_first_sync_of_an_opened_file_covers_all_of_it() {
        // Issue 9, defect 1 (mmap): what a crashed process wrote through its mapping sits
        // in the page cache; a restart's sync must write it back, though this device
        // wrote nothing itself.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        let created = MmapDevice::create(&path, 1 << 16, b"FS").unwrap();
        assert_eq!(created.dirty, None, "a new file is durable already");
        drop(created);
        let mut dev = MmapDevice::open(&path, true).unwrap();
        assert_eq!(dev.dirty, Some((0, 1 << 16)));
        dev.sync().unwrap();
        assert_eq!(dev.dirty, None);
        let reader = MmapDevice::open(&path, false).unwrap();
        assert_eq!(reader.dirty, None, "a reader never syncs");
    }

    #[test]
    fn random_writes_and_reads_match_a_model_and_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        let size_bytes = segment_size_bytes(16);
        let mut model = vec![0u8; usize_of(size_bytes)];
        model[..6].copy_from_slice(b"header");
        let mut dev = MmapDevice::create(&path, size_bytes, b"header").unwrap();
        assert!(dev.is_writable());
        assert_eq!(dev.capacity_bytes(), size_bytes);
        random_ops(&mut dev, &mut model, 0x9e37_79b9_7f4a_7c15, 300, 512);
        dev.sync().unwrap();
        drop(dev);

        assert_eq!(fs::metadata(&path).unwrap().len(), size_bytes);
        assert!(fs::read(&path).unwrap() == model);
        let mut reopened = MmapDevice::open(&path, false).unwrap();
        assert!(!reopened.is_writable());
        let mut all = vec![0u8; model.len()];
        reopened.read_exact_at(0, &mut all).unwrap();
        assert!(all == model);
    }

    #[test]
    fn writes_past_the_mapping_fail_and_name_path_and_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        fs::write(&path, [0u8; 100]).unwrap();
        let mut dev = MmapDevice::open(&path, true).unwrap();
        assert_eq!(dev.len_bytes(), 100);
        assert_eq!(dev.capacity_bytes(), 100);
        dev.write_all_at(96, b"abcd").unwrap();
        let e = dev.write_all_at(97, b"abcd").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.offset_bytes, Some(97));
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: write at offset 97: ", path.display())),
            "{msg}"
        );
        let e = dev.write_all_at(u64::MAX, &[1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = dev.read_exact_at(100, &mut [0u8; 1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // An empty write at the end is in range and does nothing.
        dev.write_all_at(100, &[]).unwrap();
        dev.sync().unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 100);
        assert_eq!(&bytes[96..], b"abcd");
    }

    #[test]
    fn read_only_device_refuses_writes_and_leaves_the_file_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        fs::write(&path, [7u8; 64]).unwrap();
        let mut dev = MmapDevice::open(&path, false).unwrap();
        let e = dev.write_all_at(0, &[1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: write at offset 0: ", path.display()))
        );
        let e = dev.write_all_at(u64::MAX, &[1, 2]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let mut buf = [0u8; 64];
        dev.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 64]);
        dev.sync().unwrap();
        assert_eq!(fs::read(&path).unwrap(), vec![7u8; 64]);
    }

    #[test]
    fn a_zero_length_file_has_no_mapping() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("empty");
        for writable in [false, true] {
            fs::write(&path, b"").unwrap();
            let mut dev = MmapDevice::open(&path, writable).unwrap();
            assert_eq!(dev.len_bytes(), 0);
            assert_eq!(dev.capacity_bytes(), 0);
            dev.read_exact_at(0, &mut []).unwrap();
            let e = dev.read_exact_at(0, &mut [0u8; 1]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let e = dev.read_exact_at(1, &mut []).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let e = dev.write_all_at(0, &[1]).unwrap_err();
            let expected = if writable {
                ErrorKind::InvalidInput
            } else {
                ErrorKind::PermissionDenied
            };
            assert_eq!(e.kind(), expected);
            dev.sync().unwrap();
        }
        let dev = MmapDevice::create(&tmp.path().join("new-empty"), 0, b"").unwrap();
        assert_eq!(dev.len_bytes(), 0);
    }

    #[test]
    fn granularity_is_the_page_size_and_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        let dev = MmapDevice::create(&path, 4096, b"x").unwrap();
        let page = dev.write_granularity_bytes();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
        assert_eq!(page, page_size_bytes());

        let e = MmapDevice::create(&path, 4096, b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        let missing = tmp.path().join("missing.wal");
        let e = MmapDevice::open(&missing, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: open: ", missing.display()))
        );
        let e = MmapDevice::open(tmp.path(), false).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn set_path_renames_what_errors_name() {
        let tmp = tempfile::tempdir().unwrap();
        let old = tmp.path().join("a.tmp");
        let new = tmp.path().join("a");
        let mut dev = MmapDevice::create(&old, 128, b"").unwrap();
        fs::rename(&old, &new).unwrap();
        dev.set_path(new.clone());
        assert_eq!(SegmentFile::path(&dev), new.as_path());
        dev.write_all_at(0, b"still mapped").unwrap();
        dev.sync().unwrap();
        assert_eq!(&fs::read(&new).unwrap()[..12], b"still mapped");
        let e = dev.write_all_at(200, &[1]).unwrap_err();
        assert!(e.to_string().starts_with(&new.display().to_string()));
    }

    pub(crate) const REFERENCE_EVENTS: u64 = 10_000;

    /// Writes the reference stream 1..=10000 through the core writer over a
    /// `SegmentDir<D>` in `dir`, 16 blocks per segment, with the clock fixed at 1.
    pub(crate) fn write_reference_log<D: SegmentFile>(dir: &Path) {
        let store = SegmentDir::<D>::open_for_append(dir).unwrap();
        let (mut writer, recovery) =
            WalWriter::open(store, || 1u64, WriterConfig::with_blocks(16)).unwrap();
        assert_eq!(recovery.summary.status, Status::Ok);
        for i in 1..=REFERENCE_EVENTS {
            writer.append(&reference_event(i)).unwrap();
        }
        assert_eq!(writer.close().unwrap(), REFERENCE_EVENTS);
    }

    /// The segment files of `dir`, by name, with their bytes.
    pub(crate) fn segment_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| {
                let name = entry.file_name();
                let name = name.to_str().unwrap();
                name.starts_with("FS.") && name.ends_with(".wal")
            })
            .map(|entry| {
                (
                    entry.file_name().to_str().unwrap().to_string(),
                    fs::read(entry.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn reference_log_through_mmap_segments_equals_the_file_backend() {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        write_reference_log::<MmapDevice>(ours.path());
        write_reference_log::<FileDevice>(theirs.path());

        let mut ids = Vec::new();
        let summary = Replay::new(
            SegmentDir::<MmapDevice>::open_read_only(ours.path()).unwrap(),
            Mode::Strict,
        )
        .run(|e| ids.push(e.event_id()))
        .unwrap();
        assert_eq!(summary.status, Status::Ok);
        assert_eq!(summary.events, REFERENCE_EVENTS);
        assert!(ids.iter().copied().eq(1..=REFERENCE_EVENTS));

        // `DirStore` is `SegmentDir<FileDevice>`: the reference run replays as well.
        let summary = Replay::new(
            DirStore::open_read_only(theirs.path()).unwrap(),
            Mode::Strict,
        )
        .run(|_| {})
        .unwrap();
        assert_eq!(summary.status, Status::Ok);

        let ours = segment_files(ours.path());
        let theirs = segment_files(theirs.path());
        assert_eq!(ours.len(), 3);
        assert_eq!(
            ours.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>(),
            theirs.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
        );
        assert!(ours == theirs, "segment bytes differ from the DirStore run");
    }
}
