//! Helpers shared by the core's unit tests: write a reference log into memory, replay
//! it and collect what came out.

use std::vec::Vec;

use crate::event::RequestEvent;
use crate::issue::Issue;
use crate::mem::MemStore;
use crate::reference::reference_event;
use crate::replay::{Mode, Replay, Step, Summary};
use crate::writer::{WalWriter, WriterConfig};

/// A clock that ticks by one per call, so timestamps are deterministic.
pub fn ticking_clock() -> impl FnMut() -> u64 {
    let mut t = 1_700_000_000_000_000_000u64;
    move || {
        t += 1;
        t
    }
}

/// Writes `events` to a fresh memory log with `blocks` slots per segment, syncing
/// after each event whose position is in `sync_after`, and sealing at the end if
/// `close`.
pub fn write_events(
    events: impl IntoIterator<Item = RequestEvent>,
    blocks: u32,
    sync_every: Option<usize>,
    close: bool,
) -> MemStore {
    let config = WriterConfig::with_blocks(blocks);
    let (mut w, _) = WalWriter::open(MemStore::new(), ticking_clock(), config).unwrap();
    for (n, e) in events.into_iter().enumerate() {
        w.append(&e).unwrap();
        if sync_every.is_some_and(|k| (n + 1) % k == 0) {
            w.sync().unwrap();
        }
    }
    if close {
        w.close().unwrap();
    }
    w.into_store()
}

/// The reference events `1..=n` written with `blocks` slots per segment.
pub fn reference_log(n: u64, blocks: u32, close: bool) -> MemStore {
    write_events((1..=n).map(reference_event), blocks, None, close)
}

/// What a full replay yields.
pub struct Replayed {
    pub ids: Vec<u64>,
    pub events: Vec<RequestEvent>,
    pub issues: Vec<Issue>,
    pub summary: Summary,
}

/// Replays `store` to the end in `mode`, from `seek` if given.
pub fn replay(store: &mut MemStore, mode: Mode, seek: Option<u64>) -> Replayed {
    let mut r = Replay::new(store, mode);
    if let Some(id) = seek {
        r.seek(id).unwrap();
    }
    let mut out = Replayed {
        ids: Vec::new(),
        events: Vec::new(),
        issues: Vec::new(),
        summary: *r.summary(),
    };
    while let Some(step) = r.step().unwrap() {
        match step {
            Step::Block(b) => {
                out.events.extend_from_slice(b.events);
                out.ids.extend(b.events.iter().map(RequestEvent::event_id));
            }
            Step::Issue(i) => out.issues.push(i),
            Step::Segment(_) => {}
        }
    }
    out.summary = *r.summary();
    out
}

/// `1..=n` as a Vec.
pub fn ids(range: core::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.collect()
}

/// A [`MemStore`] that counts how often segments are opened and checkpoint records
/// read: what a costly listing or reading of every segment, or a second reading of the
/// records, shows up as.
pub struct CountingStore {
    pub inner: MemStore,
    pub opens: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub checkpoint_reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CountingStore {
    pub fn new(inner: MemStore) -> Self {
        Self {
            inner,
            opens: Default::default(),
            checkpoint_reads: Default::default(),
        }
    }
}

impl crate::store::SegmentStore for CountingStore {
    type Device = crate::mem::MemSegment;
    type Error = crate::mem::MemError;

    fn segment_range(&mut self) -> Result<Option<(u32, u32)>, Self::Error> {
        self.inner.segment_range()
    }
    fn open_segment(&mut self, index: u32) -> Result<Option<Self::Device>, Self::Error> {
        self.opens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.open_segment(index)
    }
    fn create_segment(
        &mut self,
        index: u32,
        size: u64,
        initial: &[u8],
    ) -> Result<Self::Device, Self::Error> {
        self.inner.create_segment(index, size, initial)
    }
    fn sync_metadata(&mut self) -> Result<(), Self::Error> {
        self.inner.sync_metadata()
    }
    fn remove_segment(&mut self, index: u32) -> Result<(), Self::Error> {
        self.inner.remove_segment(index)
    }
    fn segment_sealed(&mut self, index: u32) -> Result<(), Self::Error> {
        self.inner.segment_sealed(index)
    }
    fn read_checkpoint(
        &mut self,
        kind: crate::checkpoint::CheckpointKind,
    ) -> Result<Option<[u8; 64]>, Self::Error> {
        self.checkpoint_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_checkpoint(kind)
    }
    fn write_checkpoint(
        &mut self,
        kind: crate::checkpoint::CheckpointKind,
        record: &[u8; 64],
    ) -> Result<(), Self::Error> {
        self.inner.write_checkpoint(kind, record)
    }
}
