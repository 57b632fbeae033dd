//! A store wrapper that measures the I/O the writer does: block writes, syncs and
//! segment creations, into the recorder's telemetry; and that tells the segment
//! preparer when a segment was created, so that it prepares the next one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Instant;

use fswal_core::checkpoint::{CHECKPOINT_SIZE_BYTES, CheckpointKind};
use fswal_core::{BlockDevice, SegmentStore};

use crate::telemetry::Telemetry;

/// Nanoseconds since `start`, saturating.
pub(crate) fn ns_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A [`SegmentStore`] that measures its devices' writes and syncs and its creations.
pub struct TimedStore<S> {
    inner: S,
    telemetry: Arc<Telemetry>,
    /// Where to ask for the next segment to be prepared: `(index, size_bytes)`.
    prepare: Option<Sender<(u32, u64)>>,
}

/// A device of a [`TimedStore`].
pub struct TimedDevice<D> {
    inner: D,
    telemetry: Arc<Telemetry>,
}

impl<S> TimedStore<S> {
    /// `inner`, measured into `telemetry`; segment creations are announced on `prepare`.
    pub fn new(inner: S, telemetry: Arc<Telemetry>, prepare: Option<Sender<(u32, u64)>>) -> Self {
        Self {
            inner,
            telemetry,
            prepare,
        }
    }
}

impl<S: SegmentStore> SegmentStore for TimedStore<S> {
    type Device = TimedDevice<S::Device>;
    type Error = S::Error;

    fn segment_range(&mut self) -> Result<Option<(u32, u32)>, S::Error> {
        self.inner.segment_range()
    }

    fn open_segment(&mut self, index: u32) -> Result<Option<Self::Device>, S::Error> {
        Ok(self.inner.open_segment(index)?.map(|inner| TimedDevice {
            inner,
            telemetry: Arc::clone(&self.telemetry),
        }))
    }

    fn create_segment(
        &mut self,
        index: u32,
        size_bytes: u64,
        initial: &[u8],
    ) -> Result<Self::Device, S::Error> {
        let start = Instant::now();
        let inner = self.inner.create_segment(index, size_bytes, initial)?;
        self.telemetry.rotation_ns.record(ns_since(start));
        self.telemetry
            .segments_created
            .fetch_add(1, Ordering::Relaxed);
        if let (Some(tx), Some(next)) = (&self.prepare, index.checked_add(1)) {
            // The preparer may be gone (it failed): creating the next segment then
            // allocates its file itself.
            let _ = tx.send((next, size_bytes));
        }
        Ok(TimedDevice {
            inner,
            telemetry: Arc::clone(&self.telemetry),
        })
    }

    fn sync_metadata(&mut self) -> Result<(), S::Error> {
        self.inner.sync_metadata()
    }

    fn remove_segment(&mut self, index: u32) -> Result<(), S::Error> {
        self.inner.remove_segment(index)
    }

    fn segment_sealed(&mut self, index: u32) -> Result<(), S::Error> {
        self.inner.segment_sealed(index)
    }

    fn read_checkpoint(
        &mut self,
        kind: CheckpointKind,
    ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, S::Error> {
        self.inner.read_checkpoint(kind)
    }

    fn write_checkpoint(
        &mut self,
        kind: CheckpointKind,
        record: &[u8; CHECKPOINT_SIZE_BYTES],
    ) -> Result<(), S::Error> {
        self.inner.write_checkpoint(kind, record)
    }
}

impl<D: BlockDevice> BlockDevice for TimedDevice<D> {
    type Error = D::Error;

    fn write_granularity_bytes(&self) -> u32 {
        self.inner.write_granularity_bytes()
    }

    fn len_bytes(&self) -> u64 {
        self.inner.len_bytes()
    }

    fn capacity_bytes(&self) -> u64 {
        self.inner.capacity_bytes()
    }

    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), D::Error> {
        self.inner.read_exact_at(offset_bytes, buf)
    }

    fn mapped_bytes(&self) -> Option<&[u8]> {
        self.inner.mapped_bytes()
    }

    fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), D::Error> {
        let start = Instant::now();
        self.inner.write_all_at(offset_bytes, buf)?;
        self.telemetry.block_write_ns.record(ns_since(start));
        self.telemetry
            .bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), D::Error> {
        let start = Instant::now();
        self.inner.sync()?;
        self.telemetry.sync_ns.record(ns_since(start));
        self.telemetry.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
