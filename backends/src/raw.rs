//! The raw block device backend: a WAL on a block device with no file system.
//!
//! The device is a fixed array of segment slots behind a small checksummed superblock
//! (the `superblock` submodule; docs/FORMAT.md for the layout). Segment `i` lives in slot
//! `i % slot_count`; a slot's segment header says which segment it holds. All I/O is
//! `O_DIRECT` through [`DirectDevice`] windows aligned to the device's physical
//! sectors, so nothing sits in a page cache between a sync and the device.
//!
//! What each [`SegmentStore`] operation does here:
//!
//! - creating segment `i` needs its slot free (no segment header): the slot is zeroed,
//!   synced, and only then given its header (one sector write), synced. A crash leaves
//!   a free slot or the whole new segment. A slot still holding a segment means the
//!   device is full: retention must remove that segment first.
//! - removing a segment blanks its header sector (one sector write) and syncs.
//! - the sealed checkpoint (4 KiB) and the sync mark (8 KiB) are one sector each,
//!   rewritten in place: a sector write is atomic.
//! - syncing the metadata is one `fdatasync` of the device: every write is `O_DIRECT`,
//!   so only the device's own cache stands between a write and the medium.
//! - the quarantine area (40 entries) holds torn-tail bytes that earlier versions of
//!   fswal's recovery copied there before clearing them. Recovery no longer uses it (it
//!   seals the segment at its last valid block and leaves the rest in place); its
//!   entries are listed ([`RawStore::quarantine`]), released
//!   ([`RawStore::release_quarantine_entry`], `fswal preserved --release`), and
//!   released on their own once the slot they came from is recycled for a new segment.
//!
//! A device is formatted only when its first 4 KiB are blank: fswal never overwrites
//! something it did not write. Formatting blanks every slot's header sector, so that
//! nothing an earlier use left on the device reads as a segment.

use std::boxed::Box;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::vec;
use std::vec::Vec;
use std::{format, string::String};

use fswal_core::checkpoint::{CHECKPOINT_SIZE_BYTES, CheckpointKind};
use fswal_core::device::BlockDevice;
use fswal_core::segment_header::SEGMENT_MAGIC;
use fswal_core::store::SegmentStore;
use xxhash_rust::xxh64::xxh64;

use crate::direct::{DirectDevice, geometry};
use crate::file::FileError;

mod superblock;

pub use superblock::Layout;
use superblock::{
    CHECKPOINT_OFFSET_BYTES, FIRST_SLOT_OFFSET_BYTES, MARK_OFFSET_BYTES, QUARANTINE_ENTRIES,
    QUARANTINE_ENTRY_BYTES, QUARANTINE_OFFSET_BYTES, REGION_ALIGN_BYTES, SUPERBLOCK_SIZE_BYTES,
    Superblock, SuperblockDefect,
};

/// The quarantine entry magic.
const QUARANTINE_MAGIC: [u8; 8] = *b"FSWALQ01";

/// Bytes zeroed per write when a slot is cleared for a new segment.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// Attempts at `flock` when a signal interrupts it.
const LOCK_ATTEMPTS_MAX: u32 = 64;

/// One entry of the quarantine area: bytes an earlier version of recovery copied there
/// before clearing them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuarantineEntry {
    /// The entry's number (0..40).
    pub entry: u32,
    /// The segment the bytes came from.
    pub segment: u32,
    /// Their offset inside that segment.
    pub offset_bytes: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl QuarantineEntry {
    /// Entry `entry`, holding `bytes` from `offset_bytes` of segment `segment` (what
    /// the store lists; for tests of code that handles them).
    #[must_use]
    pub fn new(entry: u32, segment: u32, offset_bytes: u64, bytes: Vec<u8>) -> Self {
        Self {
            entry,
            segment,
            offset_bytes,
            bytes,
        }
    }

    /// Where the entry's bytes start on the device: the sector after its header.
    #[must_use]
    pub fn device_offset_bytes(&self) -> u64 {
        quarantine_data_offset_bytes(self.entry)
    }
}

/// Where the bytes of quarantine entry `entry` start on the device: the sector after
/// its header.
fn quarantine_data_offset_bytes(entry: u32) -> u64 {
    QUARANTINE_OFFSET_BYTES + u64::from(entry) * QUARANTINE_ENTRY_BYTES + REGION_ALIGN_BYTES
}

/// A WAL on a raw block device (or a file used as one).
#[derive(Debug)]
pub struct RawStore {
    path: PathBuf,
    layout: Layout,
    writable: bool,
    dsync: bool,
    /// A read-only window over the whole used part of the device, for headers and
    /// reserved regions. Writes always go through fresh windows (see `write_at`).
    reader: DirectDevice,
    /// A writer's claims on the device, held for the store's lifetime (boxed: the
    /// store stays as small as with the single lock it used to hold).
    _lock: Option<Box<DeviceLock>>,
    /// Whether some quarantine entry holds bytes, once known (see
    /// `release_quarantine_of_slot`).
    quarantine_in_use: Option<bool>,
}

/// The error for `message` about the device `path`.
fn invalid(
    op: &'static str,
    path: &Path,
    offset: Option<u64>,
    kind: io::ErrorKind,
    message: String,
) -> FileError {
    FileError::custom(op, path, offset, kind, message)
}

impl RawStore {
    /// Opens the WAL on the formatted device `path`, read-only unless `writable`.
    /// A writable store holds an exclusive lock on the device until it is dropped, and
    /// with `dsync` every write is durable when it returns.
    pub fn open(path: &Path, writable: bool, dsync: bool) -> Result<Self, FileError> {
        let lock = if writable {
            Some(lock_device(path)?)
        } else {
            None
        };
        let size = device_size(path)?;
        let mut reader = DirectDevice::open_window(path, 0, size, false, false)?;
        let mut raw = [0u8; SUPERBLOCK_SIZE_BYTES];
        if size >= SUPERBLOCK_SIZE_BYTES as u64 {
            reader.read_exact_at(0, &mut raw)?;
        }
        let layout = Superblock::decode(&raw).map_err(|defect| {
            let why = match defect {
                SuperblockDefect::BadMagic => {
                    "no fswal superblock: not a WAL device (record to a blank device formats it)"
                        .into()
                }
                SuperblockDefect::UnsupportedVersion => "unsupported layout version".into(),
                SuperblockDefect::ChecksumMismatch => "superblock checksum mismatch".into(),
                SuperblockDefect::Inconsistent(rule) => {
                    format!("superblock is inconsistent: {rule}")
                }
            };
            invalid("open", path, Some(0), io::ErrorKind::InvalidData, why)
        })?;
        if layout.device_size_bytes > size {
            return Err(invalid(
                "open",
                path,
                Some(0),
                io::ErrorKind::InvalidData,
                format!(
                    "the device is {size} bytes, smaller than the {} it was formatted with",
                    layout.device_size_bytes
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            layout,
            writable,
            dsync,
            reader,
            _lock: lock,
            quarantine_in_use: None,
        })
    }

    /// Formats the blank device `path` for segments of `blocks_per_segment` block
    /// slots, then opens it for writing. Refuses a device whose first 4 KiB are not
    /// all zero: fswal never overwrites what it did not write.
    pub fn format(
        path: &Path,
        blocks_per_segment: u32,
        now_ns: u64,
        dsync: bool,
    ) -> Result<Self, FileError> {
        let lock = lock_device(path)?;
        let file = File::open(path).map_err(|e| FileError::new("open", path, None, e))?;
        let g = geometry(&file, path)?;
        drop(file);
        let mut reader = DirectDevice::open_window(path, 0, g.size_bytes, false, false)?;
        let mut head = vec![0u8; usize::try_from(REGION_ALIGN_BYTES).unwrap_or(4096)];
        if g.size_bytes >= REGION_ALIGN_BYTES {
            reader.read_exact_at(0, &mut head)?;
        }
        if head.iter().any(|&b| b != 0) {
            return Err(invalid(
                "format",
                path,
                Some(0),
                io::ErrorKind::AlreadyExists,
                "the device's first 4 KiB are not blank: fswal formats only a blank device".into(),
            ));
        }
        let layout = Layout::for_device(g.size_bytes, g.logical_block_bytes, blocks_per_segment, now_ns)
            .ok_or_else(|| {
                invalid(
                    "format",
                    path,
                    None,
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a device of {} bytes cannot hold a segment of {blocks_per_segment} blocks after its 1 MiB of reserved regions",
                        g.size_bytes
                    ),
                )
            })?;
        let mut store = Self {
            path: path.to_path_buf(),
            layout,
            writable: true,
            dsync,
            reader,
            _lock: Some(lock),
            quarantine_in_use: Some(false),
        };
        // Blank the reserved regions and every slot's header, then write the superblock
        // last: a crash before it leaves a device that still reads as blank.
        let reserved = FIRST_SLOT_OFFSET_BYTES - REGION_ALIGN_BYTES;
        store.zero(REGION_ALIGN_BYTES, reserved)?;
        for slot in 0..layout.slot_count {
            store.zero(layout.slot_offset_bytes(slot), REGION_ALIGN_BYTES)?;
        }
        store.write_at("format", 0, &Superblock::new(&layout).to_bytes())?;
        Ok(store)
    }

    /// Opens the WAL on `path` for writing, formatting the device first if it is blank.
    /// Returns the store and whether it formatted.
    pub fn open_or_format(
        path: &Path,
        blocks_per_segment: u32,
        now_ns: u64,
        dsync: bool,
    ) -> Result<(Self, bool), FileError> {
        match Self::open(path, true, dsync) {
            Ok(store) => Ok((store, false)),
            Err(e)
                if e.source.kind() == io::ErrorKind::InvalidData && e.offset_bytes == Some(0) =>
            {
                // Not formatted: `format` refuses anything but a blank device.
                match Self::format(path, blocks_per_segment, now_ns, dsync) {
                    Ok(store) => Ok((store, true)),
                    Err(f) if f.source.kind() == io::ErrorKind::AlreadyExists => Err(e),
                    Err(f) => Err(f),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The device's layout.
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The device.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where byte `offset_bytes` of segment `index` is on the device.
    #[must_use]
    pub fn device_offset_bytes(&self, index: u32, offset_bytes: u64) -> u64 {
        self.layout
            .slot_offset_bytes(self.layout.slot_of(index))
            .saturating_add(offset_bytes)
    }

    /// The entries of the quarantine area that hold preserved bytes.
    pub fn quarantine(&mut self) -> Result<Vec<QuarantineEntry>, FileError> {
        let mut out = Vec::new();
        for entry in 0..QUARANTINE_ENTRIES {
            if let Some(e) = self.read_quarantine_entry(entry)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn refuse_read_only(&self, op: &'static str) -> Result<(), FileError> {
        if self.writable {
            return Ok(());
        }
        Err(invalid(
            op,
            &self.path,
            None,
            io::ErrorKind::PermissionDenied,
            "the WAL device is open read-only".into(),
        ))
    }

    /// Writes `bytes` at device offset `offset_bytes` and syncs, through a fresh
    /// window: its one-sector cache cannot hold a sector another window changed since.
    fn write_at(
        &mut self,
        op: &'static str,
        offset_bytes: u64,
        bytes: &[u8],
    ) -> Result<(), FileError> {
        self.refuse_read_only(op)?;
        let base = offset_bytes - offset_bytes % REGION_ALIGN_BYTES;
        let len = (offset_bytes - base)
            .checked_add(bytes.len() as u64)
            .ok_or_else(|| {
                invalid(
                    op,
                    &self.path,
                    Some(offset_bytes),
                    io::ErrorKind::InvalidInput,
                    "too long".into(),
                )
            })?;
        let mut window = DirectDevice::open_window(&self.path, base, len, true, self.dsync)?;
        window.write_all_at(offset_bytes - base, bytes)?;
        window.sync()
    }

    /// Zeroes `len_bytes` from device offset `offset_bytes` and syncs.
    fn zero(&mut self, offset_bytes: u64, len_bytes: u64) -> Result<(), FileError> {
        self.refuse_read_only("zero")?;
        let mut window =
            DirectDevice::open_window(&self.path, offset_bytes, len_bytes, true, self.dsync)?;
        let zeros = vec![0u8; ZERO_CHUNK_BYTES];
        let mut done = 0u64;
        // Bounded by the slot size over the chunk size.
        while done < len_bytes {
            let n = usize::try_from(len_bytes - done)
                .map_or(ZERO_CHUNK_BYTES, |left| left.min(ZERO_CHUNK_BYTES));
            window.write_all_at(done, &zeros[..n])?;
            done += n as u64;
        }
        window.sync()
    }

    /// The segment index slot `slot`'s header names, if it holds a segment.
    fn slot_segment(&mut self, slot: u32) -> Result<Option<u32>, FileError> {
        let mut head = [0u8; 8];
        self.reader
            .read_exact_at(self.layout.slot_offset_bytes(slot), &mut head)?;
        let [m0, m1, _, _, i0, i1, i2, i3] = head;
        if u16::from_le_bytes([m0, m1]) != SEGMENT_MAGIC {
            return Ok(None);
        }
        let index = u32::from_le_bytes([i0, i1, i2, i3]);
        // A header whose index belongs in another slot is not a segment of this slot.
        Ok((self.layout.slot_of(index) == slot).then_some(index))
    }

    fn segment_window(&self, index: u32) -> Result<DirectDevice, FileError> {
        let offset = self.layout.slot_offset_bytes(self.layout.slot_of(index));
        DirectDevice::open_window(
            &self.path,
            offset,
            self.layout.segment_size_bytes(),
            self.writable,
            self.dsync,
        )
    }

    /// Blanks quarantine entry `entry` (its header sector), synced: the bytes it held
    /// are released.
    pub fn release_quarantine_entry(&mut self, entry: u32) -> Result<(), FileError> {
        self.refuse_read_only("release")?;
        if entry >= QUARANTINE_ENTRIES {
            return Err(invalid(
                "release",
                &self.path,
                None,
                io::ErrorKind::InvalidInput,
                format!("there is no quarantine entry {entry} (0..{QUARANTINE_ENTRIES})"),
            ));
        }
        let blank = vec![0u8; usize::try_from(REGION_ALIGN_BYTES).unwrap_or(4096)];
        self.write_at("release", Self::quarantine_offset(entry), &blank)
    }

    /// Releases the quarantine entries holding bytes of an older segment of slot
    /// `slot`, which segment `index` now occupies. Reads the 40 entry headers only when
    /// some entry is in use (known from one scan per store).
    fn release_quarantine_of_slot(&mut self, slot: u32, index: u32) -> Result<(), FileError> {
        if self.quarantine_in_use == Some(false) {
            return Ok(());
        }
        let mut in_use = false;
        for entry in 0..QUARANTINE_ENTRIES {
            let at = Self::quarantine_offset(entry);
            let mut head = [0u8; 16];
            self.reader.read_exact_at(at, &mut head)?;
            if head[..8] != QUARANTINE_MAGIC {
                continue;
            }
            let segment = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
            if self.layout.slot_of(segment) == slot && segment < index {
                self.release_quarantine_entry(entry)?;
            } else {
                in_use = true;
            }
        }
        self.quarantine_in_use = Some(in_use);
        Ok(())
    }

    pub(crate) fn quarantine_offset(entry: u32) -> u64 {
        QUARANTINE_OFFSET_BYTES + u64::from(entry) * QUARANTINE_ENTRY_BYTES
    }

    fn read_quarantine_entry(&mut self, entry: u32) -> Result<Option<QuarantineEntry>, FileError> {
        let at = Self::quarantine_offset(entry);
        let mut head = [0u8; 64];
        self.reader.read_exact_at(at, &mut head)?;
        if head[..8] != QUARANTINE_MAGIC {
            return Ok(None);
        }
        let field = |range: core::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b[..range.len()].copy_from_slice(&head[range]);
            u64::from_le_bytes(b)
        };
        let damaged = |what: &str| {
            invalid(
                "read quarantine",
                &self.path,
                Some(at),
                io::ErrorKind::InvalidData,
                format!("quarantine entry {entry}: {what}"),
            )
        };
        if xxh64(&head[..56], 0) != field(56..64) {
            return Err(damaged("header checksum mismatch"));
        }
        let segment = u32::try_from(field(8..12)).map_err(|_| damaged("segment"))?;
        let len = usize::try_from(field(12..16)).map_err(|_| damaged("length"))?;
        if len as u64 > QUARANTINE_ENTRY_BYTES - REGION_ALIGN_BYTES {
            return Err(damaged("length beyond the entry"));
        }
        let mut bytes = vec![0u8; len];
        self.reader
            .read_exact_at(at + REGION_ALIGN_BYTES, &mut bytes)?;
        if xxh64(&bytes, 0) != field(24..32) {
            return Err(damaged("data checksum mismatch"));
        }
        Ok(Some(QuarantineEntry {
            entry,
            segment,
            offset_bytes: field(16..24),
            bytes,
        }))
    }
}

impl SegmentStore for RawStore {
    type Device = DirectDevice;
    type Error = FileError;

    fn segment_range(&mut self) -> Result<Option<(u32, u32)>, FileError> {
        let mut range: Option<(u32, u32)> = None;
        // Bounded by the slot count of the superblock.
        for slot in 0..self.layout.slot_count {
            if let Some(index) = self.slot_segment(slot)? {
                range = Some(match range {
                    None => (index, index),
                    Some((low, high)) => (low.min(index), high.max(index)),
                });
            }
        }
        Ok(range)
    }

    fn open_segment(&mut self, index: u32) -> Result<Option<DirectDevice>, FileError> {
        if self.slot_segment(self.layout.slot_of(index))? != Some(index) {
            return Ok(None);
        }
        self.segment_window(index).map(Some)
    }

    fn create_segment(
        &mut self,
        index: u32,
        size_bytes: u64,
        initial: &[u8],
    ) -> Result<DirectDevice, FileError> {
        self.refuse_read_only("create")?;
        let slot = self.layout.slot_of(index);
        let slot_offset = self.layout.slot_offset_bytes(slot);
        if size_bytes != self.layout.segment_size_bytes() {
            return Err(invalid(
                "create",
                &self.path,
                Some(slot_offset),
                io::ErrorKind::InvalidInput,
                format!(
                    "segments on this device have {} blocks ({} bytes), not {size_bytes} bytes",
                    self.layout.blocks_per_segment,
                    self.layout.segment_size_bytes()
                ),
            ));
        }
        if let Some(held) = self.slot_segment(slot)? {
            return Err(invalid(
                "create",
                &self.path,
                Some(slot_offset),
                io::ErrorKind::AlreadyExists,
                format!(
                    "slot {slot} holds segment {held}: the device is full (its {} slots are in use; retention must remove old segments)",
                    self.layout.slot_count
                ),
            ));
        }
        // Zero, sync, then the header, sync: a crash leaves a free slot or the segment.
        self.zero(slot_offset, self.layout.segment_size_bytes())?;
        self.write_at("create", slot_offset, initial)?;
        // The slot's old bytes are gone: so is the point of keeping copies of them.
        self.release_quarantine_of_slot(slot, index)?;
        self.segment_window(index)
    }

    /// One `fdatasync` of the device: its own write cache is all that stands between
    /// an `O_DIRECT` write and the medium.
    fn sync_metadata(&mut self) -> Result<(), FileError> {
        self.refuse_read_only("sync")?;
        self.reader.sync()
    }

    fn remove_segment(&mut self, index: u32) -> Result<(), FileError> {
        self.refuse_read_only("remove")?;
        let slot = self.layout.slot_of(index);
        if self.slot_segment(slot)? != Some(index) {
            return Ok(());
        }
        self.write_at("remove", self.layout.slot_offset_bytes(slot), &[0u8; 64])
    }

    fn segment_sealed(&mut self, _index: u32) -> Result<(), FileError> {
        // Slots are fixed: a sealed segment stays where it is.
        Ok(())
    }

    fn read_checkpoint(
        &mut self,
        kind: CheckpointKind,
    ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, FileError> {
        let mut record = [0u8; CHECKPOINT_SIZE_BYTES];
        self.reader
            .read_exact_at(checkpoint_offset(kind), &mut record)?;
        Ok(record.iter().any(|&b| b != 0).then_some(record))
    }

    fn write_checkpoint(
        &mut self,
        kind: CheckpointKind,
        record: &[u8; CHECKPOINT_SIZE_BYTES],
    ) -> Result<(), FileError> {
        // One sector rewritten in place: atomic under the crash contract, for both kinds.
        self.write_at("write checkpoint", checkpoint_offset(kind), record)
    }
}

/// Where the checkpoint record of `kind` is on the device.
fn checkpoint_offset(kind: CheckpointKind) -> u64 {
    match kind {
        CheckpointKind::Sealed => CHECKPOINT_OFFSET_BYTES,
        CheckpointKind::Synced => MARK_OFFSET_BYTES,
    }
}

/// The size of the device (or file) at `path`.
fn device_size(path: &Path) -> Result<u64, FileError> {
    let file = File::open(path).map_err(|e| FileError::new("open", path, None, e))?;
    Ok(geometry(&file, path)?.size_bytes)
}

/// The claims a writer holds on its device for the store's lifetime. Dropping it
/// closes the descriptors, which releases them.
///
/// An `flock` alone is not enough: it belongs to one inode, and the same bytes can be
/// reached through others, a loop device and its backing file, or a second device node
/// (`mknod`) for the same disk. So a writer takes:
///
/// - an exclusive `flock` on the path, as every fswal writer does;
/// - on Linux, when the path is a block device: an exclusive open (`O_EXCL`) of it,
///   which the kernel grants to one opener of a disk at a time, and not while it is
///   mounted, whatever node names the disk; when it is a loop device, also an `flock`
///   on its backing file, the lock a writer given that file takes;
/// - on Linux, when the path is a regular file: an exclusive open of every loop device
///   it backs (matched by device and inode numbers, not by name).
///
/// What cannot be claimed is passed over, because this process could not write
/// through it either: a loop device with no node in `/dev` (or a node with other
/// numbers), one this user may not open, one detached meanwhile, or a backing file
/// that was deleted or renamed out of reach. A writer that does reach the same bytes
/// that way still meets the `flock` on the backing file.
#[derive(Debug)]
struct DeviceLock {
    _held: Vec<File>,
}

/// Entries of `/sys/block` examined, at most, when looking for loop devices.
#[cfg(target_os = "linux")]
const SYS_BLOCK_ENTRIES_MAX: usize = 1 << 16;

/// The one-line reason given when another writer holds the device.
const HELD_BY_ANOTHER: &str = "another process is writing to this WAL device";

/// Takes every claim a writer needs on `path` (see [`DeviceLock`]), or says who holds
/// one: two writers never share a device.
fn lock_device(path: &Path) -> Result<Box<DeviceLock>, FileError> {
    let file = OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| FileError::new("open", path, None, e))?;
    let mut held = Vec::new();
    // The aliases first: a refusal there names the device another writer holds.
    #[cfg(target_os = "linux")]
    claim_aliases(&file, path, &mut held)?;
    flock_exclusive(&file, path, path, || HELD_BY_ANOTHER.into())?;
    held.push(file);
    Ok(Box::new(DeviceLock { _held: held }))
}

/// Takes an exclusive `flock` on `file` (opened from `locked`), failing with
/// `held()` when another descriptor holds one. Errors name `path`, the WAL device.
fn flock_exclusive(
    file: &File,
    path: &Path,
    locked: &Path,
    held: impl Fn() -> String,
) -> Result<(), FileError> {
    for _ in 0..LOCK_ATTEMPTS_MAX {
        // SAFETY: `flock` only reads its integer arguments; the descriptor belongs to
        // `file`, which is borrowed for the call and so stays open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                return Err(invalid(
                    "lock",
                    path,
                    None,
                    io::ErrorKind::WouldBlock,
                    held(),
                ));
            }
            _ => return Err(FileError::new("lock", locked, None, e)),
        }
    }
    Err(invalid(
        "lock",
        path,
        None,
        io::ErrorKind::Interrupted,
        "interrupted too often".into(),
    ))
}

/// Claims what reaches the same bytes as `path` (open as `file`) by another inode (see
/// [`DeviceLock`]), pushing the descriptors that hold the claims onto `held`.
#[cfg(target_os = "linux")]
fn claim_aliases(file: &File, path: &Path, held: &mut Vec<File>) -> Result<(), FileError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let meta = file
        .metadata()
        .map_err(|e| FileError::new("lock", path, None, e))?;
    if meta.file_type().is_block_device() {
        let numbers = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
        let backing = loop_backing_file(numbers);
        let on_disk = match &backing {
            Some(file) => format!(
                "loop device {}:{}, backed by {}",
                numbers.0,
                numbers.1,
                file.display()
            ),
            None => format!("block device {}:{}", numbers.0, numbers.1),
        };
        let claim = open_exclusive(path).map_err(|e| {
            claim_error(path, path, e, || {
                format!(
                    "{HELD_BY_ANOTHER} (through this node or another for the same disk), or the disk is mounted or in use ({on_disk})"
                )
            })
        })?;
        held.push(claim);
        if let Some(backing) = backing {
            // A backing file that cannot be opened is out of every writer's reach by
            // that name (see `DeviceLock`).
            if let Ok(file) = File::open(&backing) {
                flock_exclusive(&file, path, &backing, || {
                    format!(
                        "{HELD_BY_ANOTHER} through its backing file {}",
                        backing.display()
                    )
                })?;
                held.push(file);
            }
        }
    } else if meta.is_file() {
        for (name, numbers) in loops_backed_by(meta.dev(), meta.ino()) {
            let node = Path::new("/dev").join(&name);
            if !node_is(&node, numbers) {
                continue;
            }
            match open_exclusive(&node) {
                Ok(claim) => held.push(claim),
                Err(e) if passed_over(&e) => {}
                Err(e) => {
                    return Err(claim_error(path, &node, e, || {
                        format!(
                            "{HELD_BY_ANOTHER} through {}, a loop device backed by this file, or that device is mounted or in use",
                            node.display()
                        )
                    }));
                }
            }
        }
    }
    Ok(())
}

/// Opens the block device `node` exclusively (`O_EXCL`): Linux fails it with `EBUSY`
/// while another exclusive opener or a mount holds the disk.
#[cfg(target_os = "linux")]
fn open_exclusive(node: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;

    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(node)
}

/// Whether a failed exclusive open of a loop device found through sysfs leaves
/// nothing to claim: its node is gone, it was detached, or this user may not open it.
#[cfg(target_os = "linux")]
fn passed_over(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV | libc::EACCES | libc::EPERM)
    )
}

/// The error for a failed exclusive open of `node` on behalf of the WAL device `path`:
/// `busy()` says who may hold it when the kernel refused (`EBUSY`).
#[cfg(target_os = "linux")]
fn claim_error(path: &Path, node: &Path, e: io::Error, busy: impl Fn() -> String) -> FileError {
    if e.raw_os_error() == Some(libc::EBUSY) {
        invalid("lock", path, None, io::ErrorKind::ResourceBusy, busy())
    } else {
        FileError::new("lock", node, None, e)
    }
}

/// The backing file of the loop device with `numbers` (major, minor), from sysfs; none
/// for another kind of device or a loop device with nothing attached.
#[cfg(target_os = "linux")]
fn loop_backing_file(numbers: (u32, u32)) -> Option<PathBuf> {
    let attr = format!(
        "/sys/dev/block/{}:{}/loop/backing_file",
        numbers.0, numbers.1
    );
    let text = std::fs::read_to_string(attr).ok()?;
    backing_file_name(&text).map(PathBuf::from)
}

/// The loop devices whose backing file is the inode `ino` on the device `dev`: their
/// names in `/sys/block` and their (major, minor) numbers.
#[cfg(target_os = "linux")]
fn loops_backed_by(dev: u64, ino: u64) -> Vec<(String, (u32, u32))> {
    use std::os::unix::fs::MetadataExt;
    use std::string::ToString;

    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.take(SYS_BLOCK_ENTRIES_MAX).flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        let dir = entry.path();
        let Some(backing) = std::fs::read_to_string(dir.join("loop/backing_file"))
            .ok()
            .and_then(|text| backing_file_name(&text).map(PathBuf::from))
        else {
            continue;
        };
        // By inode, not by name: the same file has many names, and a name may now be
        // another file's.
        let same = std::fs::metadata(&backing).is_ok_and(|m| m.dev() == dev && m.ino() == ino);
        let numbers = std::fs::read_to_string(dir.join("dev"))
            .ok()
            .and_then(|text| parse_dev_numbers(&text));
        if let (true, Some(numbers)) = (same, numbers) {
            found.push((name, numbers));
        }
    }
    found
}

/// Whether `node` is a block device node with the numbers `numbers`.
#[cfg(target_os = "linux")]
fn node_is(node: &Path, numbers: (u32, u32)) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    std::fs::metadata(node).is_ok_and(|m| {
        m.file_type().is_block_device() && (libc::major(m.rdev()), libc::minor(m.rdev())) == numbers
    })
}

/// The path in a sysfs `backing_file` attribute: one line, none if empty.
#[cfg(target_os = "linux")]
fn backing_file_name(text: &str) -> Option<&str> {
    let name = text.strip_suffix('\n').unwrap_or(text);
    (!name.is_empty()).then_some(name)
}

/// The (major, minor) numbers of a sysfs `dev` attribute, `"7:3\n"`.
#[cfg(target_os = "linux")]
fn parse_dev_numbers(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim_end().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::string::ToString;
    use std::vec::Vec;

    use embedded_io::{Error as _, ErrorKind};
    use fswal_core::limits::segment_size_bytes;
    use fswal_core::reference::reference_event;
    use fswal_core::writer::Retention;
    use fswal_core::{Mode, Replay, Status, WalWriter, WriterConfig};

    use super::*;
    use crate::testing::{LoopDevice, say};

    const MIB: u64 = 1 << 20;

    /// A blank image file of `size_bytes` in a new tempdir.
    fn blank_image(size_bytes: u64) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("device.img");
        File::create(&path).unwrap().set_len(size_bytes).unwrap();
        (tmp, path)
    }

    fn write(
        store: RawStore,
        events: core::ops::RangeInclusive<u64>,
        config: WriterConfig,
    ) -> RawStore {
        let (mut w, _) = WalWriter::open(store, || 1u64, config).unwrap();
        for i in events {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        w.into_store()
    }

    fn replay(path: &Path) -> (Vec<u64>, fswal_core::Summary) {
        let mut ids = Vec::new();
        let store = RawStore::open(path, false, false).unwrap();
        let s = Replay::new(store, Mode::Strict)
            .run(|e| ids.push(e.event_id()))
            .unwrap();
        (ids, s)
    }

    #[test]
    fn formats_only_a_blank_device() {
        let (_tmp, path) = blank_image(32 * MIB);
        let e = RawStore::open(&path, false, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert!(e.to_string().contains("no fswal superblock"), "{e}");
        let store = RawStore::format(&path, 16, 5, false).unwrap();
        assert_eq!(store.layout().slot_count, 31);
        assert_eq!(store.layout().blocks_per_segment, 16);
        drop(store);
        let store = RawStore::open(&path, false, false).unwrap();
        assert_eq!(store.layout().formatted_ts_ns, 5);
        // Formatted: not blank any more, so not formatted again.
        let e = RawStore::format(&path, 16, 6, false).unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::AlreadyExists);
        // Something else on a device is never overwritten.
        let (_tmp2, other) = blank_image(32 * MIB);
        fs::write(&other, b"an ext4 superblock, say").unwrap();
        File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_len(32 * MIB)
            .unwrap();
        assert!(RawStore::open_or_format(&other, 16, 1, false).is_err());
        assert_eq!(&fs::read(&other).unwrap()[..7], b"an ext4");
        // Too small for one slot.
        let (_tmp3, tiny) = blank_image(MIB + 4096);
        assert_eq!(
            RawStore::format(&tiny, 16, 1, false)
                .unwrap_err()
                .source
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn writer_and_replay_round_trip_on_a_device_image() {
        let (tmp, path) = blank_image(32 * MIB);
        let (store, formatted) = RawStore::open_or_format(&path, 16, 1, false).unwrap();
        assert!(formatted);
        drop(write(store, 1..=10_000, WriterConfig::with_blocks(16)));
        let (ids, s) = replay(&path);
        assert_eq!(ids, (1..=10_000).collect::<Vec<_>>());
        assert_eq!((s.status, s.segments), (Status::Ok, 3));

        // The same bytes as a directory's segments, at the start of slots 0, 1, 2.
        let dir = tmp.path().join("wal");
        let (mut w, _) = WalWriter::open(
            crate::dir::DirStore::open_for_append(&dir).unwrap(),
            || 1u64,
            WriterConfig::with_blocks(16),
        )
        .unwrap();
        for i in 1..=10_000 {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        let image = fs::read(&path).unwrap();
        let seg = usize::try_from(segment_size_bytes(16)).unwrap();
        for i in 0..3usize {
            let file = fs::read(dir.join(format!("FS.0000000{i}.wal"))).unwrap();
            let at = usize::try_from(MIB).unwrap() * (1 + i);
            assert!(
                image[at..at + seg] == file[..],
                "segment {i} differs from the file backend's"
            );
        }
        // A second writer is locked out while one holds the device.
        let (_store, formatted) = RawStore::open_or_format(&path, 16, 1, false).unwrap();
        assert!(!formatted);
        let e = RawStore::open(&path, true, false).unwrap_err();
        assert!(e.to_string().contains("another process"), "{e}");
    }

    #[test]
    fn a_full_device_refuses_and_retention_recycles_slots() {
        // 8 MiB: 7 slots of 1 MiB after the reserved megabyte.
        let (_tmp, path) = blank_image(8 * MIB);
        let store = RawStore::format(&path, 16, 1, false).unwrap();
        assert_eq!(store.layout().slot_count, 7);
        let (mut w, _) = WalWriter::open(store, || 1u64, WriterConfig::with_blocks(16)).unwrap();
        let mut refused = None;
        for i in 1..=8 * 4096 {
            if let Err(e) = w.append(&reference_event(i)) {
                refused = Some((i, e));
                break;
            }
        }
        let (at, e) = refused.expect("the device filled up");
        assert_eq!(at, 7 * 4096 + 1, "7 full segments fit");
        assert!(e.to_string().contains("the device is full"), "{e}");
        drop(w);

        let (_tmp, path) = blank_image(8 * MIB);
        let store = RawStore::format(&path, 16, 1, false).unwrap();
        let config = WriterConfig::with_blocks(16).retention(Retention::segments(3));
        let mut store = write(store, 1..=20 * 4096 + 5, config);
        assert_eq!(store.segment_range().unwrap(), Some((18, 20)));
        drop(store);
        let (ids, s) = replay(&path);
        assert_eq!(ids.first(), Some(&(18 * 4096 + 1)));
        assert_eq!(ids.len(), 2 * 4096 + 5);
        assert_eq!(s.status, Status::Ok);
    }

    /// Events 1..=1000 synced, then 1001..=1300 appended and the writer dropped, as in
    /// a crash: block 4 (events 1001..=1256) is written and not synced, the rest was
    /// only in memory.
    fn crash_after_a_sync(store: RawStore) {
        let (mut w, _) = WalWriter::open(store, || 1u64, WriterConfig::with_blocks(16)).unwrap();
        for i in 1..=1000 {
            w.append(&reference_event(i)).unwrap();
        }
        w.sync().unwrap();
        for i in 1001..=1300 {
            w.append(&reference_event(i)).unwrap();
        }
    }

    #[test]
    fn a_torn_tail_is_set_aside_in_place_on_the_device() {
        let (_tmp, path) = blank_image(16 * MIB);
        let store = RawStore::format(&path, 16, 1, false).unwrap();
        crash_after_a_sync(store);
        // Tear it: zero its second half on the device.
        let block4 = usize::try_from(MIB + 64 + 4 * 16_448).unwrap();
        let mut image = fs::read(&path).unwrap();
        image[block4 + 8192..block4 + 8192 + 8256].fill(0);
        let torn = image[block4..][..16_448].to_vec();
        fs::write(&path, &image).unwrap();

        let store = RawStore::open(&path, true, false).unwrap();
        let (mut w, rec) = WalWriter::open(store, || 1u64, WriterConfig::with_blocks(16)).unwrap();
        assert_eq!(rec.summary.status, Status::Truncated);
        let tail = rec.sealed_tail.unwrap();
        assert_eq!((tail.segment, tail.block_count), (0, 4));
        assert_eq!(
            tail.set_aside.map(|a| (a.first_slot, a.slots)),
            Some((4, 1))
        );
        assert_eq!(w.last_event_id(), 1000);
        let mut reader = RawStore::open(&path, false, false).unwrap();
        assert!(reader.quarantine().unwrap().is_empty(), "nothing copied");
        let image = fs::read(&path).unwrap();
        assert!(
            image[block4..][..16_448] == torn[..],
            "the torn block is in place"
        );
        // Appending goes on in the next slot's segment.
        for i in 1001..=1100 {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        drop(w);
        let (ids, s) = replay(&path);
        assert_eq!(ids, (1..=1100).collect::<Vec<_>>());
        assert_eq!((s.status, s.segments), (Status::Ok, 2));
        // The checkpoint lives on the device too.
        let mut store = RawStore::open(&path, false, false).unwrap();
        assert!(
            store
                .read_checkpoint(CheckpointKind::Sealed)
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .read_checkpoint(CheckpointKind::Synced)
                .unwrap()
                .is_some()
        );
    }

    /// Writes quarantine entry `entry` into the device image at `path` as an earlier
    /// version of recovery did: `bytes` from `offset_bytes` of segment `segment`.
    fn write_quarantine_entry(
        path: &Path,
        entry: u32,
        segment: u32,
        offset_bytes: u64,
        bytes: &[u8],
    ) {
        let mut image = fs::read(path).unwrap();
        let at = usize::try_from(RawStore::quarantine_offset(entry)).unwrap();
        let mut head = [0u8; 64];
        head[..8].copy_from_slice(&QUARANTINE_MAGIC);
        head[8..12].copy_from_slice(&segment.to_le_bytes());
        head[12..16].copy_from_slice(&u32::try_from(bytes.len()).unwrap().to_le_bytes());
        head[16..24].copy_from_slice(&offset_bytes.to_le_bytes());
        head[24..32].copy_from_slice(&xxh64(bytes, 0).to_le_bytes());
        let checksum = xxh64(&head[..56], 0);
        head[56..64].copy_from_slice(&checksum.to_le_bytes());
        image[at..at + 64].copy_from_slice(&head);
        image[at + 4096..at + 4096 + bytes.len()].copy_from_slice(bytes);
        fs::write(path, &image).unwrap();
    }

    #[test]
    fn a_full_quarantine_area_no_longer_stops_recovery() {
        // Issue 9, defect 2: 40 entries, each torn slot took one, none was released,
        // and recovery then refused forever ("the quarantine area is full").
        let (_tmp, path) = blank_image(16 * MIB);
        let store = RawStore::format(&path, 16, 1, false).unwrap();
        crash_after_a_sync(store);
        for entry in 0..QUARANTINE_ENTRIES {
            write_quarantine_entry(&path, entry, 0, 64 + 4 * 16_448, &[7u8; 100]);
        }
        let block4 = usize::try_from(MIB + 64 + 4 * 16_448).unwrap();
        let mut image = fs::read(&path).unwrap();
        image[block4 + 100] ^= 1;
        fs::write(&path, &image).unwrap();
        let store = RawStore::open(&path, true, false).unwrap();
        let (w, rec) = WalWriter::open(store, || 1u64, WriterConfig::with_blocks(16)).unwrap();
        assert_eq!(rec.sealed_tail.map(|t| t.block_count), Some(4));
        let mut store = w.into_store();
        assert_eq!(
            store.quarantine().unwrap().len(),
            40,
            "old entries untouched"
        );
        // Released one by one, listed without it.
        store.release_quarantine_entry(3).unwrap();
        let left: Vec<u32> = store
            .quarantine()
            .unwrap()
            .iter()
            .map(|e| e.entry)
            .collect();
        assert_eq!(left.len(), 39);
        assert!(!left.contains(&3));
        assert!(store.release_quarantine_entry(QUARANTINE_ENTRIES).is_err());
    }

    #[test]
    fn thousands_of_unsynced_blocks_behind_a_hole_are_set_aside_whole() {
        // Issue 9, defect 2: one crash left 1423 unsynced blocks behind a reordered
        // hole; each needed a quarantine entry, 40 of which there are.
        let (_tmp, path) = blank_image(MIB + 2 * 65 * MIB);
        let config = WriterConfig::with_blocks(4096);
        let store = RawStore::format(&path, 4096, 1, false).unwrap();
        let (mut w, _) = WalWriter::open(store, || 1u64, config).unwrap();
        for i in 1..=1000 {
            w.append(&reference_event(i)).unwrap();
        }
        w.sync().unwrap();
        let unsynced_blocks = 1424u64;
        for i in 1001..=1000 + 256 * unsynced_blocks {
            w.append(&reference_event(i)).unwrap();
        }
        drop(w);
        // The crash kept every unsynced block but the first: a hole, then 1423 blocks.
        let block4 = usize::try_from(MIB + 64 + 4 * 16_448).unwrap();
        let mut image = fs::read(&path).unwrap();
        image[block4..block4 + 16_448].fill(0);
        fs::write(&path, &image).unwrap();
        let store = RawStore::open(&path, true, false).unwrap();
        let (w, rec) = WalWriter::open(store, || 1u64, config).unwrap();
        assert_eq!(w.last_event_id(), 1000);
        let aside = rec.sealed_tail.and_then(|t| t.set_aside).unwrap();
        assert_eq!((aside.first_slot, aside.slots), (5, 1423));
        drop(w);
        let after = fs::read(&path).unwrap();
        assert!(
            after[block4 + 16_448..block4 + 1424 * 16_448]
                == image[block4 + 16_448..block4 + 1424 * 16_448],
            "every unsynced block is where it was"
        );
    }

    #[test]
    fn a_full_cleanly_closed_device_goes_on_with_retention() {
        // Issue 9, defect 3: with every slot holding a sealed segment, the rotation
        // created the new segment before retention ran, so it never ran.
        let (_tmp, path) = blank_image(8 * MIB);
        let store = RawStore::format(&path, 16, 1, false).unwrap();
        let slots = store.layout().slot_count;
        let full = u64::from(slots) * 4096;
        drop(write(store, 1..=full, WriterConfig::with_blocks(16)));
        let without = RawStore::open(&path, true, false).unwrap();
        let (mut w, _) = WalWriter::open(without, || 1u64, WriterConfig::with_blocks(16)).unwrap();
        let e = w.append(&reference_event(full + 1)).unwrap_err();
        assert!(e.to_string().contains("the device is full"), "{e}");
        drop(w);
        for keep in [1, 3, slots] {
            let config = WriterConfig::with_blocks(16).retention(Retention::segments(keep));
            let store = RawStore::open(&path, true, false).unwrap();
            let (_, recovered) = replay(&path);
            let last = *recovered.last_event_id.as_ref().unwrap();
            drop(write(store, last + 1..=last + 1000, config));
            let (ids, s) = replay(&path);
            assert_eq!(s.status, Status::Ok, "keep {keep}");
            assert_eq!(ids.last(), Some(&(last + 1000)), "keep {keep}");
            assert!(
                s.segments <= keep.max(2),
                "keep {keep}: {} segments",
                s.segments
            );
        }
    }

    #[test]
    fn recycling_a_slot_releases_the_quarantine_entries_of_its_old_segment() {
        let (_tmp, path) = blank_image(8 * MIB);
        let store = RawStore::format(&path, 16, 1, false).unwrap();
        drop(store);
        write_quarantine_entry(&path, 0, 0, 64, &[1u8; 10]);
        write_quarantine_entry(&path, 1, 1, 64, &[2u8; 10]);
        let config = WriterConfig::with_blocks(16).retention(Retention::segments(2));
        // Seven slots: segment 7 reuses the slot of segment 0.
        let store = RawStore::open(&path, true, false).unwrap();
        let mut store = write(store, 1..=7 * 4096 + 1, config);
        let left: Vec<u32> = store
            .quarantine()
            .unwrap()
            .iter()
            .map(|e| e.segment)
            .collect();
        assert_eq!(
            left,
            [1],
            "segment 0's slot was recycled, segment 1's not yet"
        );
    }

    #[test]
    fn round_trip_on_a_loop_device() {
        let tmp = tempfile::tempdir().unwrap();
        let device = match LoopDevice::attach_blank(tmp.path(), 64 * MIB) {
            Ok(device) => device,
            Err(reason) => {
                say(format_args!(
                    "skipping: loop devices unavailable ({reason})\n"
                ));
                return;
            }
        };
        let (store, formatted) = RawStore::open_or_format(device.path(), 16, 1, true).unwrap();
        assert!(formatted);
        assert_eq!(store.layout().slot_count, 63);
        drop(write(store, 1..=20_000, WriterConfig::with_blocks(16)));
        let (ids, s) = replay(device.path());
        assert_eq!(ids, (1..=20_000).collect::<Vec<_>>());
        assert_eq!((s.status, s.segments), (Status::Ok, 5));
    }

    #[test]
    fn sysfs_attributes_parse() {
        let dev: [(&str, Option<(u32, u32)>); 7] = [
            ("7:3\n", Some((7, 3))),
            ("259:0", Some((259, 0))),
            ("7:1048575\n", Some((7, 1_048_575))),
            ("", None),
            ("7\n", None),
            ("7:x\n", None),
            (":3\n", None),
        ];
        for (text, want) in dev {
            assert_eq!(parse_dev_numbers(text), want, "{text:?}");
        }
        let backing: [(&str, Option<&str>); 4] = [
            ("/tmp/a b.img\n", Some("/tmp/a b.img")),
            ("/x.img", Some("/x.img")),
            ("\n", None),
            ("", None),
        ];
        for (text, want) in backing {
            assert_eq!(backing_file_name(text), want, "{text:?}");
        }
    }

    /// A loop device over a blank 32 MiB image in `tmp`, and the image, or `None`
    /// (said) where loop devices are unavailable.
    fn loop_over_blank_image(tmp: &Path) -> Option<(LoopDevice, PathBuf)> {
        match LoopDevice::attach_blank(tmp, 32 * MIB) {
            Ok(device) => Some((device, tmp.join("loop.img"))),
            Err(reason) => {
                say(format_args!(
                    "skipping: loop devices unavailable ({reason})\n"
                ));
                None
            }
        }
    }

    /// Asserts that a writer on `path` is refused, with a message that says another
    /// process writes and names `names`.
    fn assert_locked_out(path: &Path, names: &Path) {
        let Err(e) = RawStore::open(path, true, false) else {
            panic!("a second writer was let in on {}", path.display());
        };
        let text = e.to_string();
        assert!(text.contains("another process is writing"), "{text}");
        assert!(
            text.contains(names.to_str().unwrap()),
            "{text} does not name {}",
            names.display()
        );
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn a_loop_device_and_its_backing_file_lock_each_other_out() {
        let tmp = tempfile::tempdir().unwrap();
        let Some((device, image)) = loop_over_blank_image(tmp.path()) else {
            return;
        };
        let (first, formatted) = RawStore::open_or_format(device.path(), 16, 1, false).unwrap();
        assert!(formatted);
        assert_locked_out(&image, device.path());
        // Readers take no lock.
        drop(RawStore::open(&image, false, false).unwrap());
        drop(first);

        let second = RawStore::open(&image, true, false).unwrap();
        assert_locked_out(device.path(), &image);
        drop(second);
        drop(RawStore::open(device.path(), true, false).unwrap());
    }

    #[test]
    fn a_second_node_for_the_same_disk_is_locked_out() {
        use std::os::unix::fs::MetadataExt;

        let tmp = tempfile::tempdir().unwrap();
        let Some((device, _image)) = loop_over_blank_image(tmp.path()) else {
            return;
        };
        let rdev = fs::metadata(device.path()).unwrap().rdev();
        let alias = tmp.path().join("alias");
        let made = std::process::Command::new("mknod")
            .arg(&alias)
            .arg("b")
            .arg(libc::major(rdev).to_string())
            .arg(libc::minor(rdev).to_string())
            .status();
        if !made.as_ref().is_ok_and(|s| s.success()) || File::open(&alias).is_err() {
            say(format_args!(
                "skipping: cannot make and open a second device node ({made:?})\n"
            ));
            return;
        }
        let first = RawStore::open_or_format(device.path(), 16, 1, false)
            .unwrap()
            .0;
        assert_locked_out(&alias, &alias);
        drop(first);
        let second = RawStore::open(&alias, true, false).unwrap();
        assert_locked_out(device.path(), device.path());
        drop(second);
        drop(RawStore::open(device.path(), true, false).unwrap());
    }

    #[test]
    fn a_loop_device_attached_after_the_writer_opened_its_file_is_locked_out() {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("device.img");
        File::create(&image).unwrap().set_len(32 * MIB).unwrap();
        // The writer claims no loop device: none is attached yet.
        let first = RawStore::format(&image, 16, 1, false).unwrap();
        let device = match LoopDevice::attach(&image) {
            Ok(device) => device,
            Err(reason) => {
                say(format_args!(
                    "skipping: loop devices unavailable ({reason})\n"
                ));
                return;
            }
        };
        assert_locked_out(device.path(), &image);
        drop(first);
        drop(RawStore::open(device.path(), true, false).unwrap());
    }
}
