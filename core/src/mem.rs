//! In-memory devices: the reference [`BlockDevice`] and, with the `std` feature, a
//! [`SegmentStore`](crate::store::SegmentStore) of memory segments.
//!
//! [`MemDevice`] works over any byte buffer (a static array, a borrowed slice, a
//! `Vec`), needs no allocator, and is what embedded hosts, the fuzzers and the core's
//! own tests use. It keeps the crash contract trivially: nothing is lost until the
//! buffer is dropped, so `sync` has nothing to do. Crash behaviour is simulated by
//! the fault-injecting device, which wraps any device.

use core::fmt;

use crate::device::{BlockDevice, DeviceError, ErrorKind, range_within};

/// An error of a memory device: what was asked and why it could not be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The operation that failed.
    pub op: &'static str,
    /// Offset asked for.
    pub offset_bytes: u64,
    /// Bytes asked for.
    pub len: usize,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory device: {} of {} bytes at offset {} failed: {:?}",
            self.op, self.len, self.offset_bytes, self.kind
        )
    }
}

impl core::error::Error for MemError {}

impl DeviceError for MemError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// A device over a byte buffer; its capacity is the buffer's length.
#[derive(Clone, Debug)]
pub struct MemDevice<S> {
    storage: S,
    len_bytes: u64,
    granularity_bytes: u32,
}

/// The sector size memory devices report unless told otherwise.
pub const MEM_GRANULARITY_BYTES_DEFAULT: u32 = 512;

impl<S: AsRef<[u8]> + AsMut<[u8]>> MemDevice<S> {
    /// An empty device (length 0) over `storage`, which is zeroed so that bytes never
    /// written read as zero.
    pub fn new(mut storage: S) -> Self {
        storage.as_mut().fill(0);
        Self {
            storage,
            len_bytes: 0,
            granularity_bytes: MEM_GRANULARITY_BYTES_DEFAULT,
        }
    }

    /// A device whose content is `image`, all of it readable: a segment image to replay.
    pub fn from_image(image: S) -> Self {
        let len_bytes = image.as_ref().len() as u64;
        Self {
            storage: image,
            len_bytes,
            granularity_bytes: MEM_GRANULARITY_BYTES_DEFAULT,
        }
    }

    /// The same device reporting `granularity_bytes` as its sector size (a power of two).
    #[must_use]
    pub fn with_granularity(mut self, granularity_bytes: u32) -> Self {
        self.granularity_bytes = granularity_bytes.max(1);
        self
    }

    /// The readable bytes, `0..len_bytes()`.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        let all = self.storage.as_ref();
        let len = usize::try_from(self.len_bytes)
            .unwrap_or(all.len())
            .min(all.len());
        all.get(..len).unwrap_or(all)
    }

    /// The readable bytes, mutably: for tests that damage an image in place.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let all_len = self.storage.as_ref().len();
        let len = usize::try_from(self.len_bytes)
            .unwrap_or(all_len)
            .min(all_len);
        let all = self.storage.as_mut();
        let (readable, _) = all.split_at_mut(len);
        readable
    }

    /// Sets the readable length, as truncating or extending a file would (extending
    /// exposes whatever the buffer holds there; a fresh device holds zeros). Fails past
    /// the capacity.
    pub fn set_len(&mut self, len_bytes: u64) -> Result<(), MemError> {
        if len_bytes > self.capacity_bytes() {
            return Err(MemError {
                kind: ErrorKind::InvalidInput,
                op: "set_len",
                offset_bytes: len_bytes,
                len: 0,
            });
        }
        self.len_bytes = len_bytes;
        Ok(())
    }

    /// The buffer, giving up the device.
    pub fn into_inner(self) -> S {
        self.storage
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> BlockDevice for MemDevice<S> {
    type Error = MemError;

    fn write_granularity_bytes(&self) -> u32 {
        self.granularity_bytes
    }

    fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    fn capacity_bytes(&self) -> u64 {
        self.storage.as_ref().len() as u64
    }

    fn mapped_bytes(&self) -> Option<&[u8]> {
        Some(self.bytes())
    }

    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let err = |kind| MemError {
            kind,
            op: "read",
            offset_bytes,
            len: buf.len(),
        };
        if !range_within(offset_bytes, buf.len(), self.len_bytes) {
            return Err(err(ErrorKind::InvalidInput));
        }
        let start = usize::try_from(offset_bytes).map_err(|_| err(ErrorKind::InvalidInput))?;
        let src = self
            .storage
            .as_ref()
            .get(start..start + buf.len())
            .ok_or(err(ErrorKind::InvalidInput))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), MemError> {
        let err = |kind| MemError {
            kind,
            op: "write",
            offset_bytes,
            len: buf.len(),
        };
        if !range_within(offset_bytes, buf.len(), self.capacity_bytes()) {
            return Err(err(ErrorKind::InvalidInput));
        }
        let start = usize::try_from(offset_bytes).map_err(|_| err(ErrorKind::InvalidInput))?;
        let dst = self
            .storage
            .as_mut()
            .get_mut(start..start + buf.len())
            .ok_or(err(ErrorKind::InvalidInput))?;
        dst.copy_from_slice(buf);
        // `range_within` proved `offset + len <= capacity`, so this cannot overflow.
        self.len_bytes = self.len_bytes.max(offset_bytes + buf.len() as u64);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), MemError> {
        Ok(())
    }
}

#[cfg(any(test, feature = "std"))]
pub use store::{MemSegment, MemStore};

#[cfg(any(test, feature = "std"))]
mod store {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
    use std::vec::Vec;

    use super::{MemDevice, MemError};
    use crate::checkpoint::{CHECKPOINT_SIZE_BYTES, CheckpointKind};
    use crate::device::{BlockDevice, ErrorKind};
    use crate::store::SegmentStore;

    type Shared = Arc<Mutex<MemDevice<Vec<u8>>>>;

    /// A WAL in memory. A `MemStore` is a handle: its clones share one store (segments,
    /// checkpoints, everything), as a directory is shared by whoever opens it; the
    /// devices it hands out share their segment's buffer, so a segment reopened sees
    /// what was written. [`MemStore::snapshot`] makes an independent copy.
    #[derive(Clone, Debug, Default)]
    pub struct MemStore {
        state: Arc<Mutex<State>>,
        read_only: bool,
    }

    #[derive(Debug, Default)]
    struct State {
        segments: BTreeMap<u32, Shared>,
        /// The checkpoint records, by kind, if written.
        checkpoints: [Option<[u8; CHECKPOINT_SIZE_BYTES]>; 2],
        /// Segments reported sealed, in order.
        sealed: Vec<u32>,
    }

    /// One segment of a [`MemStore`].
    #[derive(Clone, Debug)]
    pub struct MemSegment {
        shared: Shared,
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        // Every operation leaves the state consistent before it could panic (each is a
        // copy or an insertion), so a poisoned lock is used as is.
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    impl MemStore {
        /// An empty store.
        #[must_use]
        pub fn new() -> Self {
            Self::default()
        }

        fn state(&self) -> MutexGuard<'_, State> {
            lock(&self.state)
        }

        /// An independent copy of this store, which refuses to change: what a reader of
        /// a snapshot gets.
        #[must_use]
        pub fn snapshot(&self) -> Self {
            let s = self.state();
            let copy = State {
                segments: s
                    .segments
                    .iter()
                    .map(|(&i, d)| (i, Arc::new(Mutex::new(lock(d).clone()))))
                    .collect(),
                checkpoints: s.checkpoints,
                sealed: s.sealed.clone(),
            };
            Self {
                state: Arc::new(Mutex::new(copy)),
                read_only: true,
            }
        }

        /// Inserts (or replaces) segment `index` with the readable bytes `image`.
        pub fn insert_image(&mut self, index: u32, image: Vec<u8>) {
            self.state()
                .segments
                .insert(index, Arc::new(Mutex::new(MemDevice::from_image(image))));
        }

        /// Removes segment `index`, returning its readable bytes.
        pub fn remove(&mut self, index: u32) -> Option<Vec<u8>> {
            let removed = self.state().segments.remove(&index);
            removed.map(|s| lock(&s).bytes().to_vec())
        }

        /// A copy of the readable bytes of segment `index`.
        #[must_use]
        pub fn image(&self, index: u32) -> Option<Vec<u8>> {
            let segment = self.state().segments.get(&index).cloned();
            segment.map(|s| lock(&s).bytes().to_vec())
        }

        /// Runs `f` on the readable bytes of segment `index`: for tests that damage a
        /// segment in place.
        pub fn with_bytes_mut<R>(
            &mut self,
            index: u32,
            f: impl FnOnce(&mut [u8]) -> R,
        ) -> Option<R> {
            let segment = self.state().segments.get(&index).cloned();
            segment.map(|s| f(lock(&s).bytes_mut()))
        }

        /// Sets the readable length of segment `index`, as truncating a file would.
        pub fn set_len(&mut self, index: u32, len_bytes: u64) -> Option<Result<(), MemError>> {
            let segment = self.state().segments.get(&index).cloned();
            segment.map(|s| lock(&s).set_len(len_bytes))
        }

        /// The checkpoint record of `kind`, if one was written.
        #[must_use]
        pub fn checkpoint(&self, kind: CheckpointKind) -> Option<[u8; CHECKPOINT_SIZE_BYTES]> {
            self.state().checkpoints[kind.index()]
        }

        /// The segments the writer reported sealed, in the order it did.
        #[must_use]
        pub fn sealed(&self) -> Vec<u32> {
            self.state().sealed.clone()
        }

        /// The indices of the segments present, in order.
        #[must_use]
        pub fn indices(&self) -> Vec<u32> {
            self.state().segments.keys().copied().collect()
        }

        fn refuse_if_read_only(&self, op: &'static str, offset_bytes: u64) -> Result<(), MemError> {
            if self.read_only {
                return Err(MemError {
                    kind: ErrorKind::PermissionDenied,
                    op,
                    offset_bytes,
                    len: 0,
                });
            }
            Ok(())
        }
    }

    impl SegmentStore for MemStore {
        type Device = MemSegment;
        type Error = MemError;

        fn segment_range(&mut self) -> Result<Option<(u32, u32)>, MemError> {
            let s = self.state();
            let first = s.segments.keys().next().copied();
            let last = s.segments.keys().next_back().copied();
            Ok(first.zip(last))
        }

        fn open_segment(&mut self, index: u32) -> Result<Option<MemSegment>, MemError> {
            Ok(self.state().segments.get(&index).map(|s| MemSegment {
                shared: Arc::clone(s),
            }))
        }

        fn create_segment(
            &mut self,
            index: u32,
            size_bytes: u64,
            initial: &[u8],
        ) -> Result<MemSegment, MemError> {
            let err = |kind| MemError {
                kind,
                op: "create",
                offset_bytes: u64::from(index),
                len: initial.len(),
            };
            self.refuse_if_read_only("create", u64::from(index))?;
            let size = usize::try_from(size_bytes).map_err(|_| err(ErrorKind::OutOfMemory))?;
            if initial.len() > size {
                return Err(err(ErrorKind::InvalidInput));
            }
            let mut s = self.state();
            if s.segments.contains_key(&index) {
                return Err(err(ErrorKind::AlreadyExists));
            }
            let mut buffer = Vec::new();
            buffer
                .try_reserve_exact(size)
                .map_err(|_| err(ErrorKind::OutOfMemory))?;
            buffer.resize(size, 0);
            buffer[..initial.len()].copy_from_slice(initial);
            // A preallocated segment: its whole size is readable and reads as zeros.
            let shared = Arc::new(Mutex::new(MemDevice::from_image(buffer)));
            s.segments.insert(index, Arc::clone(&shared));
            Ok(MemSegment { shared })
        }

        /// Memory has no cache between a write and what survives: nothing to do.
        fn sync_metadata(&mut self) -> Result<(), MemError> {
            Ok(())
        }

        fn remove_segment(&mut self, index: u32) -> Result<(), MemError> {
            self.refuse_if_read_only("remove", u64::from(index))?;
            self.state().segments.remove(&index);
            Ok(())
        }

        fn segment_sealed(&mut self, index: u32) -> Result<(), MemError> {
            self.state().sealed.push(index);
            Ok(())
        }

        fn read_checkpoint(
            &mut self,
            kind: CheckpointKind,
        ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, MemError> {
            Ok(self.state().checkpoints[kind.index()])
        }

        fn write_checkpoint(
            &mut self,
            kind: CheckpointKind,
            record: &[u8; CHECKPOINT_SIZE_BYTES],
        ) -> Result<(), MemError> {
            self.refuse_if_read_only("write checkpoint", 0)?;
            self.state().checkpoints[kind.index()] = Some(*record);
            Ok(())
        }
    }

    impl BlockDevice for MemSegment {
        type Error = MemError;

        fn write_granularity_bytes(&self) -> u32 {
            lock(&self.shared).write_granularity_bytes()
        }
        fn len_bytes(&self) -> u64 {
            lock(&self.shared).len_bytes()
        }
        fn capacity_bytes(&self) -> u64 {
            lock(&self.shared).capacity_bytes()
        }
        fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), MemError> {
            lock(&self.shared).read_exact_at(offset_bytes, buf)
        }
        fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), MemError> {
            lock(&self.shared).write_all_at(offset_bytes, buf)
        }
        fn sync(&mut self) -> Result<(), MemError> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_stay_in_bounds() {
        let mut dev = MemDevice::new([7u8; 128]);
        assert_eq!(dev.len_bytes(), 0);
        assert_eq!(dev.capacity_bytes(), 128);
        dev.write_all_at(10, &[1, 2, 3]).unwrap();
        assert_eq!(dev.len_bytes(), 13);
        let mut buf = [9u8; 13];
        dev.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(buf, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        let e = dev.read_exact_at(12, &mut [0u8; 2]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(dev.write_all_at(127, &[0, 0]).is_err());
        assert!(dev.write_all_at(u64::MAX, &[0]).is_err());
    }

    #[test]
    fn image_is_readable_whole() {
        let mut dev = MemDevice::from_image([5u8; 16]);
        let mut buf = [0u8; 16];
        dev.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(buf, [5u8; 16]);
        dev.set_len(4).unwrap();
        assert_eq!(dev.bytes(), &[5, 5, 5, 5]);
        assert!(dev.set_len(17).is_err());
    }
}
