//! The memory-mapped backend: [`MmapDevice`], one segment file through a shared mapping.
//!
//! What it is for: appending to the active segment with plain memory copies, no system
//! call per block. A writable device maps the whole file shared and writable; a write
//! is a copy into the mapping, and [`BlockDevice::sync`] writes back only the range
//! written since the last sync, with `msync(MS_SYNC)`. Pages are faulted in as the
//! writes first touch them, a few microseconds per block spread over the segment's
//! life, rather than all at once when the segment is created: prefaulting 64 MiB
//! stalled a rotation for tens of milliseconds, long enough to fill the recorder's
//! ring. A read-only device maps the file read-only, for replay, and a read is a copy
//! out of the mapping.
//!
//! A mapping cannot grow: the device's length and capacity are the file's length at
//! open, and a write past it fails with `InvalidInput`. That suits segments, which
//! [`FileDevice::create_preallocated`] makes at their full size. A zero-length file has
//! no mapping at all (the system cannot map 0 bytes): reading 0 bytes at offset 0
//! succeeds, anything else is out of range.
//!
//! The write granularity is the page size: `msync` writes whole pages back.
//!
//! # The rule: no reference into a mapping, ever
//!
//! The bytes behind a shared mapping belong to the file, not to the program: any
//! process that can open the file for writing can change them at any moment, and
//! nothing fswal does can stop it. A sealed segment is no exception: `fswal preserved
//! --release` zeroes set-aside slots of sealed segments, and a tool outside fswal may
//! write anywhere. A `&[u8]` over such bytes would promise Rust that they do not change
//! while it lives, a promise nobody can keep, so holding one is undefined behaviour
//! whatever the checksums find afterwards; a `&mut [u8]` would promise that nobody
//! else even reads them.
//!
//! So the device keeps its mapping as a [`MmapRaw`], which only hands out raw
//! pointers, and touches the mapped bytes only with volatile reads and writes inside
//! `copy_from_mapping` and `copy_to_mapping`, which copy between the mapping and a
//! buffer of the caller's within one call. Memory that Rust code only ever accesses
//! with volatile operations is, for Rust, outside every Rust allocation (like a
//! device's registers): another process changing it is no data race, only bytes that
//! a read returns, possibly a mix of old and new ones that the checksums then refuse.
//! What the caller verifies is its own copy, which nothing else can change. Therefore
//! [`BlockDevice::mapped_bytes`] is `None` for every device, read-only or writable:
//! replay verifies copies, never the mapping in place. There is no private snapshot to
//! lend instead: a `MAP_PRIVATE` mapping shows later changes of the file in every page
//! it has not copied, so it is no snapshot.
//!
//! The one assumption left is that the mapped pages stay backed by the file: if a
//! process truncates a mapped file, touching the lost pages raises `SIGBUS`, which
//! kills this process (a volatile access must not trap). fswal never truncates a
//! segment file below a length a reader may have seen: a writer holds the WAL
//! directory's lock, preallocates segments at their full size and never shrinks them;
//! retention and salvage delete or replace whole files (a deleted file's pages stay
//! mapped until the mapping goes); the direct backend cuts back only the few bytes
//! that an aligned write of a segment's last sector added, which lie in the page that
//! holds the segment's end (a sector is no larger than a page), so no mapped page is
//! lost; and a reader maps the length it saw at open. A foreign process truncating a
//! segment while fswal has it mapped kills fswal; it cannot make it read memory that
//! is not the file's.

use std::format;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use fswal_core::device::{BlockDevice, range_within};
use memmap2::{MmapOptions, MmapRaw};

use crate::file::{FileDevice, FileError, SegmentFile};

/// The page size reported when the system does not say (`sysconf` failing).
pub const PAGE_BYTES_DEFAULT: u32 = 4096;

/// The mapping of a device's file: raw pointers only (see the module docs), read-only
/// or shared and writable as the device was opened.
#[derive(Debug)]
enum Mapping {
    /// A zero-length file, which cannot be mapped.
    Empty,
    /// The whole file, mapped shared.
    Mapped(MmapRaw),
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
    ///
    /// This is where the mapping is made, so this is where its rule holds: the mapping
    /// is a [`MmapRaw`], never lent out as a reference, and its bytes are only ever
    /// copied in or out with volatile accesses within one call ([`copy_from_mapping`],
    /// [`copy_to_mapping`]), because another process may change them at any time (see
    /// the module docs).
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
        } else {
            // Mapping raw is safe: a `MmapRaw` promises nothing about the bytes behind
            // it, and every access to them below is an `unsafe` copy that states its
            // own conditions.
            let mut options = MmapOptions::new();
            options.len(map_len);
            let map = if writable {
                options.map_raw(&file)
            } else {
                options.map_raw_read_only(&file)
            }
            .map_err(|e| FileError::new("map", path.as_path(), None, e))?;
            Mapping::Mapped(map)
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

    /// The mapping when `range` lies inside it, for a copy in or out; `None` for an
    /// empty range (nothing to touch, even in an unmapped empty file) and an `op`
    /// error for a range the mapping does not hold.
    fn mapping_for(
        &self,
        op: &'static str,
        offset_bytes: u64,
        range: &Range<usize>,
    ) -> Result<Option<&MmapRaw>, FileError> {
        if range.is_empty() {
            return Ok(None);
        }
        match &self.mapping {
            Mapping::Mapped(map) if range.end <= map.len() => Ok(Some(map)),
            // `mapped_range` checked the range against the file's length, which is the
            // mapping's: unreachable, but an error beats a panic.
            Mapping::Mapped(_) | Mapping::Empty => Err(FileError::custom(
                op,
                self.path.as_path(),
                Some(offset_bytes),
                io::ErrorKind::InvalidInput,
                "range outside the mapping",
            )),
        }
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

    /// Always `None`: another process may change the mapped bytes at any time, so the
    /// device never lends a reference into its mapping (see the module docs). Readers
    /// verify what [`BlockDevice::read_exact_at`] copied out.
    fn mapped_bytes(&self) -> Option<&[u8]> {
        None
    }

    /// Copies the bytes out of the mapping with volatile reads.
    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), FileError> {
        let range = self.mapped_range("read", offset_bytes, buf.len())?;
        let Some(map) = self.mapping_for("read", offset_bytes, &range)? else {
            return Ok(());
        };
        // SAFETY: `mapping_for` checked `range.end <= map.len()`, so the `buf.len()`
        // bytes from `range.start` lie inside the mapping, which lives as long as
        // `self`, borrowed for this whole call. The mapped pages are backed by the
        // file, which was at least `map.len()` bytes long at open and which fswal never
        // truncates (the one assumption of the module docs). The mapping is touched
        // only by the volatile accesses of `copy_from_mapping` and `copy_to_mapping`,
        // never through a reference, so it is memory outside every Rust allocation; and
        // since no reference into it ever exists, `buf`, a live `&mut [u8]`, does not
        // overlap it.
        unsafe { copy_from_mapping(map.as_ptr().add(range.start), buf) };
        Ok(())
    }

    /// Copies the bytes into the mapping with volatile writes.
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
        let Some(map) = self.mapping_for("write", offset_bytes, &range)? else {
            return Ok(());
        };
        // SAFETY: as for `read_exact_at`: the range lies inside the live mapping, whose
        // pages the file backs, and `buf`, a live `&[u8]`, does not overlap a mapping
        // that no reference ever points into. The mapping is writable: a writable device maps with `map_raw`
        // (`PROT_READ | PROT_WRITE`, `MAP_SHARED`) over a descriptor opened read-write,
        // so the writes do not trap, and they change only the file's pages, no memory
        // of any Rust allocation.
        unsafe { copy_to_mapping(buf, map.as_mut_ptr().add(range.start)) };
        let (lo, hi) = (range.start, range.end);
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
            if let (true, Mapping::Mapped(map)) = (self.writable, &self.mapping) {
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

/// Copies `dst.len()` bytes from `src` into `dst` with volatile reads, eight bytes at a
/// time where `src` is aligned for it.
///
/// Volatile, because the bytes at `src` may be a shared mapping that another process
/// changes meanwhile: Rust then treats them as memory outside its allocations and
/// assumes nothing about them between two reads, where plain reads of bytes that
/// change would be a data race. Each byte copied is one the mapping held at some point
/// of the call; what `dst` ends up holding is the caller's own, fixed copy.
///
/// # Safety
///
/// `src..src + dst.len()` must be readable for the whole call without trapping:
/// either memory outside every Rust allocation that Rust code only ever accesses with
/// volatile operations (a mapping), or memory valid for reads that nothing writes
/// during the call. It must not overlap `dst`.
unsafe fn copy_from_mapping(src: *const u8, dst: &mut [u8]) {
    const WORD: usize = size_of::<u64>();
    let len = dst.len();
    let head = ((WORD - src.addr() % WORD) % WORD).min(len);
    let words_end = head + (len - head) / WORD * WORD;
    let (head_dst, rest) = dst.split_at_mut(head);
    let (words_dst, tail_dst) = rest.split_at_mut(words_end - head);
    for (i, out) in head_dst.iter_mut().enumerate() {
        // SAFETY: `i < head <= len`: inside the source range the caller vouches for.
        *out = unsafe { src.add(i).read_volatile() };
    }
    // SAFETY: `head <= len`: inside the source range, or at its end.
    let words_src = unsafe { src.add(head) }.cast::<u64>();
    for (i, out) in words_dst.chunks_exact_mut(WORD).enumerate() {
        // SAFETY: word `i` is source bytes `head + 8i .. head + 8i + 8`, all before
        // `words_end <= len`. When there are words at all, `head` is the distance from
        // `src` to the next multiple of 8, so `src + head` is 8-byte aligned and so is
        // every word; any bits are a valid `u64`.
        let word = unsafe { words_src.add(i).read_volatile() };
        out.copy_from_slice(&word.to_ne_bytes());
    }
    // SAFETY: `words_end <= len`: inside the source range, or at its end.
    let tail_src = unsafe { src.add(words_end) };
    for (i, out) in tail_dst.iter_mut().enumerate() {
        // SAFETY: `words_end + i < len`: inside the source range.
        *out = unsafe { tail_src.add(i).read_volatile() };
    }
}

/// Copies `src` to `dst` with volatile writes, eight bytes at a time where `dst` is
/// aligned for it: the counterpart of [`copy_from_mapping`], for the same reason.
///
/// # Safety
///
/// `dst..dst + src.len()` must be writable for the whole call without trapping, and
/// writing it must change no memory of any Rust allocation but (when it is not a
/// mapping) that range itself: either memory outside every Rust allocation that Rust
/// code only ever accesses with volatile operations (a writable mapping), or memory
/// valid for writes that nothing else accesses during the call. It must not overlap
/// `src`.
unsafe fn copy_to_mapping(src: &[u8], dst: *mut u8) {
    const WORD: usize = size_of::<u64>();
    let len = src.len();
    let head = ((WORD - dst.addr() % WORD) % WORD).min(len);
    let words_end = head + (len - head) / WORD * WORD;
    let (head_src, rest) = src.split_at(head);
    let (words_src, tail_src) = rest.split_at(words_end - head);
    for (i, byte) in head_src.iter().enumerate() {
        // SAFETY: `i < head <= len`: inside the destination range the caller vouches
        // for.
        unsafe { dst.add(i).write_volatile(*byte) };
    }
    // SAFETY: `head <= len`: inside the destination range, or at its end.
    let words_dst = unsafe { dst.add(head) }.cast::<u64>();
    for (i, chunk) in words_src.chunks_exact(WORD).enumerate() {
        let mut word = [0u8; WORD];
        word.copy_from_slice(chunk);
        // SAFETY: word `i` is destination bytes `head + 8i .. head + 8i + 8`, all
        // before `words_end <= len`, and 8-byte aligned as in `copy_from_mapping`.
        unsafe { words_dst.add(i).write_volatile(u64::from_ne_bytes(word)) };
    }
    // SAFETY: `words_end <= len`: inside the destination range, or at its end.
    let tail_dst = unsafe { dst.add(words_end) };
    for (i, byte) in tail_src.iter().enumerate() {
        // SAFETY: `words_end + i < len`: inside the destination range.
        unsafe { tail_dst.add(i).write_volatile(*byte) };
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
    fn copies_in_and_out_of_a_mapping_equal_plain_copies_at_every_alignment() {
        // The volatile copies split a range into bytes, aligned words and bytes: every
        // start alignment and every length across a few words, plus a long one, must
        // copy exactly the bytes asked for. Runs under Miri, which checks the pointer
        // arithmetic and the alignment of every word access (it cannot map a file, so
        // a buffer of this test stands for the mapping).
        let mut rng = XorShift(0x5eed_0fa1_1b17_e500);
        let mut source = vec![0u8; 600];
        rng.fill(&mut source);
        let long = if cfg!(miri) { 200 } else { 520 };
        for start in 0..16 {
            for len in (0..48).chain([long]) {
                let mut out = vec![0xAAu8; len];
                // SAFETY: `start + len <= 536 < 600`: inside `source`, which nothing
                // writes during the call and which `out`, another allocation, does
                // not overlap.
                unsafe { copy_from_mapping(source.as_ptr().add(start), &mut out) };
                assert_eq!(out, source[start..start + len], "read {len} at {start}");

                let mut target = vec![0x55u8; 600];
                let mut expected = target.clone();
                expected[start..start + len].copy_from_slice(&source[..len]);
                // SAFETY: as above, inside `target`, which nothing else accesses during
                // the call and which does not overlap `source`.
                unsafe { copy_to_mapping(&source[..len], target.as_mut_ptr().add(start)) };
                assert_eq!(target, expected, "write {len} at {start}");
            }
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
    fn no_device_lends_its_mapping_and_reads_are_copies() {
        // Issue 11, item 4: a read-only device used to lend its mapping as a `&[u8]`,
        // which another process (here, a writable device over the same file) could
        // change while the borrow lived. No device lends it now; a read is a copy that
        // keeps what it read while the file changes, and the next read sees the change.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("seg");
        let mut writer = MmapDevice::create(&path, 1 << 16, b"sealed?").unwrap();
        let mut reader = MmapDevice::open(&path, false).unwrap();
        assert!(
            reader.mapped_bytes().is_none(),
            "a read-only device lends its mapping"
        );
        assert!(
            writer.mapped_bytes().is_none(),
            "a writable device lends its mapping"
        );
        let mut before = [0u8; 7];
        reader.read_exact_at(0, &mut before).unwrap();
        assert_eq!(&before, b"sealed?");
        writer.write_all_at(0, b"changed").unwrap();
        assert_eq!(&before, b"sealed?");
        let mut after = [0u8; 7];
        reader.read_exact_at(0, &mut after).unwrap();
        assert_eq!(&after, b"changed", "the mapping is shared with the writer");
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
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
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
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
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
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
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
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
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
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
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
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
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
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
    #[cfg_attr(miri, ignore = "Miri cannot map files")]
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
