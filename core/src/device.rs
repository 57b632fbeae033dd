//! `BlockDevice`: the one storage abstraction every backend implements.
//!
//! A device is a byte-addressed region that holds one segment: a file, a memory
//! buffer, a mapping, or a slot of a raw block device. It offers positioned reads and
//! writes, a sync, its current length and its capacity, and the granularity at which
//! the medium applies writes atomically.
//!
//! # Crash contract
//!
//! This is the fault model fswal is built and tested against. A backend must not
//! promise less, and the writer and replay assume no more:
//!
//! 1. A write that no successful [`BlockDevice::sync`] covers may, after a crash, be
//!    lost, applied partly, or applied out of order with other such writes, at the
//!    granularity of [`BlockDevice::write_granularity_bytes`] sectors: every sector it
//!    touches holds either its old or its new content, independently of the others.
//! 2. One sector write is atomic: a crash never leaves a sector half old, half new.
//! 3. What a sync that returned `Ok` covered is durable: it survives any later crash,
//!    and reads return it.
//! 4. A failed sync is fatal: the device no longer knows which writes reached the
//!    medium (the kernel may have dropped the dirty pages), so the writer must stop,
//!    never retry the sync and then acknowledge. Recovery starts again from what
//!    replay finds.
//! 5. Until a crash, reads return the last bytes written (read your own writes).
//! 6. A crash is a power cut (rules 1 to 3) or a process crash: the machine stays up,
//!    a restarted process reads everything the crashed one wrote, and what no sync
//!    covered is still not durable (a later power cut may still lose it). A sync covers
//!    every write that reads show, whoever issued it, so a recovering writer syncs what
//!    it read before it builds on it.
//!
//! Bytes never written read as zero on a fresh device (a preallocated file, a zeroed
//! buffer). A reused medium may hold stale data instead; replay's rule that event ids
//! keep increasing across blocks and segments is what keeps stale blocks out.

pub use embedded_io::{Error as DeviceError, ErrorKind};

/// A byte-addressed storage region holding one segment. See the module docs for the
/// crash contract every implementation keeps.
pub trait BlockDevice {
    /// The error type; its [`DeviceError::kind`] says what went wrong. A read or write
    /// outside `0..capacity_bytes()` fails with [`ErrorKind::InvalidInput`].
    type Error: DeviceError;

    /// The size in bytes of the sectors the medium writes atomically (a power of two,
    /// at least 1; 512 or 4096 for disks).
    fn write_granularity_bytes(&self) -> u32;

    /// The bytes currently readable, `0..len_bytes()`. Writing past it extends it.
    fn len_bytes(&self) -> u64;

    /// The most bytes the device can ever hold.
    fn capacity_bytes(&self) -> u64;

    /// Fills `buf` with the bytes at `offset_bytes..offset_bytes + buf.len()`, which
    /// must lie inside `0..len_bytes()`.
    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes all of `buf` at `offset_bytes`, inside `0..capacity_bytes()`. Not durable
    /// until a [`BlockDevice::sync`] that covers it returns `Ok`.
    fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), Self::Error>;

    /// Makes every write issued before this call durable; returns only once they are.
    ///
    /// That includes writes issued through an earlier device over the same medium,
    /// by this process or by one that crashed, whose bytes reads return now: a
    /// recovering writer syncs what it read before it builds on it.
    fn sync(&mut self) -> Result<(), Self::Error>;

    /// The bytes `0..len_bytes()` where they lie, when the device can show them
    /// without a copy (a buffer it owns or borrows); `None`, the default, when reads
    /// must go through [`BlockDevice::read_exact_at`]. Readers use it to verify blocks
    /// in place. The slice shows what a read would return now; a reader that must keep
    /// exactly the bytes it verified (to hand them on) copies them first.
    ///
    /// A device returns `Some` only for memory that nothing can change while the
    /// borrow lives, as every `&[u8]` promises. A shared mapping of a file is not such
    /// memory: any process that can write the file can change it, sealed segment or
    /// not, so the mmap backend lends nothing and copies out of its mapping instead.
    fn mapped_bytes(&self) -> Option<&[u8]> {
        None
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for &mut T {
    type Error = T::Error;

    fn write_granularity_bytes(&self) -> u32 {
        T::write_granularity_bytes(self)
    }
    fn len_bytes(&self) -> u64 {
        T::len_bytes(self)
    }
    fn capacity_bytes(&self) -> u64 {
        T::capacity_bytes(self)
    }
    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        T::read_exact_at(self, offset_bytes, buf)
    }
    fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), Self::Error> {
        T::write_all_at(self, offset_bytes, buf)
    }
    fn sync(&mut self) -> Result<(), Self::Error> {
        T::sync(self)
    }
    fn mapped_bytes(&self) -> Option<&[u8]> {
        T::mapped_bytes(self)
    }
}

/// Whether `offset_bytes..offset_bytes + len` lies inside `0..limit_bytes`, without
/// overflowing: the check every backend makes before touching its medium.
#[must_use]
pub fn range_within(offset_bytes: u64, len: usize, limit_bytes: u64) -> bool {
    u64::try_from(len)
        .ok()
        .and_then(|len| offset_bytes.checked_add(len))
        .is_some_and(|end| end <= limit_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks_do_not_overflow() {
        assert!(range_within(0, 64, 64));
        assert!(!range_within(1, 64, 64));
        assert!(!range_within(u64::MAX, 2, u64::MAX));
        assert!(range_within(10, 0, 10));
    }
}
