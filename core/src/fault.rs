//! A fault-injecting segment store for crash and fault testing (feature `testing`: test
//! support, exempt from semver; it may change or go in any release).
//!
//! [`FaultStore`] keeps, for every segment, its *durable* image (what a power cut keeps
//! for sure) and its *pending* writes (issued, not yet covered by a sync), and applies
//! the crash contract of [`crate::device`] to them:
//!
//! - reads see the durable image with the pending writes applied in order;
//! - `sync` of a segment makes its pending writes durable;
//! - creating or removing a segment and writing a checkpoint are durable when they
//!   return (the [`SegmentStore`] contract);
//! - [`SegmentStore::sync_metadata`] makes durable which segments exist and the
//!   checkpoint records, as they are visible now.
//!
//! Before every operation that changes what a crash would leave, an observer is handed
//! a [`Snapshot`]: a crash point. A crash there is one of two kinds:
//!
//! - a **power cut**: [`Snapshot::image`] builds what the medium holds, the durable
//!   state plus any choice of pending writes, each applied whole, cut after a prefix of
//!   its sectors, or in an arbitrary subset of its sectors; a fresh store over the image
//!   ([`FaultStore::from_image`]) is what a machine that lost power finds;
//! - a **process crash**: the machine stays up, so everything the process did stays
//!   visible through the cache, but what no sync covered is still not durable.
//!   [`FaultStore::after_process_crash`] builds that store: its reads show every
//!   pending write, and those writes stay pending, so that a power cut *later*, after
//!   a restarted process built on them, can still take them away. An operation the
//!   process was in the middle of (a segment being created or removed, a checkpoint
//!   being replaced) can be left visible and not durable, as a rename before its
//!   directory sync is.
//!
//! Faults it injects on request ([`Faults`]): an I/O error on the n-th read, write or
//! sync; a misdirected write (the n-th write lands elsewhere); a power cut once a given
//! number of bytes was written (every later operation fails, as for a dead machine).

use std::boxed::Box;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::vec::Vec;

use crate::checkpoint::{CHECKPOINT_SIZE_BYTES, CheckpointKind};
use crate::device::{BlockDevice, ErrorKind, range_within};
use crate::mem::MemError;
use crate::store::SegmentStore;

/// A write issued and not yet covered by a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The segment written.
    pub segment: u32,
    /// Where in it.
    pub offset_bytes: u64,
    /// What.
    pub data: Arc<[u8]>,
}

impl Pending {
    /// The sector indices (of `sector_bytes` each, aligned in the segment) it touches.
    #[must_use]
    pub fn sectors(&self, sector_bytes: u32) -> core::ops::Range<u64> {
        let s = u64::from(sector_bytes.max(1));
        let first = self.offset_bytes / s;
        let end = (self.offset_bytes + self.data.len() as u64).div_ceil(s);
        first..end.max(first)
    }
}

/// What kind of operation a crash point precedes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A device write.
    Write,
    /// A device sync.
    Sync,
    /// A segment creation.
    Create,
    /// A segment removal.
    Remove,
    /// A checkpoint record write.
    Checkpoint(CheckpointKind),
    /// Making the store's metadata durable ([`SegmentStore::sync_metadata`]).
    SyncMetadata,
}

/// The operation a crash point precedes, with what it would change, for a process
/// crash that leaves it half done: visible, and not durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InFlight {
    /// Segment `index` is being created with `bytes` (its content already synced, its
    /// name not yet durable).
    Create {
        /// Its index.
        index: u32,
        /// Its bytes.
        bytes: Arc<Vec<u8>>,
    },
    /// Segment `index` is being removed.
    Remove {
        /// Its index.
        index: u32,
    },
    /// The checkpoint record of `kind` is being replaced by `record`.
    Checkpoint {
        /// Which record.
        kind: CheckpointKind,
        /// The new record.
        record: [u8; CHECKPOINT_SIZE_BYTES],
    },
}

/// The state a crash at some moment may leave: the durable images, and the pending
/// writes any subset of which (torn at sector granularity) may also have landed.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Operations done before this moment.
    pub op: u64,
    /// The operation about to happen.
    pub next: Option<OpKind>,
    /// Each segment's durable image: the segments whose existence is durable (a
    /// segment removed without that being durable yet included), as a power cut leaves
    /// them before any pending write.
    pub durable: BTreeMap<u32, Arc<Vec<u8>>>,
    /// Writes not yet covered by a sync, in the order issued.
    pub pending: Vec<Pending>,
    /// The durable checkpoint records, by kind.
    pub checkpoints: [Option<[u8; CHECKPOINT_SIZE_BYTES]>; 2],
    /// What a process crash leaves visible besides: every visible segment, with its
    /// durable bytes and whether its existence is durable.
    pub visible: BTreeMap<u32, (Arc<Vec<u8>>, bool)>,
    /// Segments removed, the removal not yet durable: gone for readers, back after a
    /// power cut.
    pub ghosts: BTreeMap<u32, Arc<Vec<u8>>>,
    /// The visible checkpoint records, by kind.
    pub visible_checkpoints: [Option<[u8; CHECKPOINT_SIZE_BYTES]>; 2],
    /// The operation about to happen, with what it would change.
    pub in_flight: Option<InFlight>,
}

/// How much of one pending write a crash image applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Landed {
    /// None of it.
    Nothing,
    /// All of it.
    All,
    /// Its first `n` sectors.
    Prefix(u64),
    /// The sectors whose bit is set (bit i = the write's i-th sector), 64 at most;
    /// sectors past 64 land when bit 63 is set.
    Mask(u64),
}

/// A crash image: what a restarted process finds.
#[derive(Clone, Debug)]
pub struct Image {
    /// Each segment's bytes.
    pub segments: BTreeMap<u32, Arc<Vec<u8>>>,
    /// The checkpoint records, by kind.
    pub checkpoints: [Option<[u8; CHECKPOINT_SIZE_BYTES]>; 2],
}

impl Snapshot {
    /// The image where, for each pending write `i`, `landed[i]` says how much of it
    /// reached the medium (missing entries: nothing), at `sector_bytes` granularity.
    /// Only the segments a landed write touches are copied.
    #[must_use]
    pub fn image(&self, landed: &[Landed], sector_bytes: u32) -> Image {
        let mut segments = self.durable.clone();
        let s = u64::from(sector_bytes.max(1));
        for (write, how) in self.pending.iter().zip(landed) {
            let sectors = write.sectors(sector_bytes);
            let lands = |i: u64| match how {
                Landed::Nothing => false,
                Landed::All => true,
                Landed::Prefix(n) => i < *n,
                Landed::Mask(m) => (m >> i.min(63)) & 1 == 1,
            };
            if matches!(how, Landed::Nothing) {
                continue;
            }
            let Some(bytes) = segments.get_mut(&write.segment) else {
                continue;
            };
            let bytes = Arc::make_mut(bytes);
            for (i, sector) in sectors.enumerate() {
                if !lands(i as u64) {
                    continue;
                }
                // The part of the write inside this sector.
                let start = (sector * s).max(write.offset_bytes);
                let end = ((sector + 1) * s).min(write.offset_bytes + write.data.len() as u64);
                let (Ok(from), Ok(to), Ok(src)) = (
                    usize::try_from(start),
                    usize::try_from(end),
                    usize::try_from(start - write.offset_bytes),
                ) else {
                    continue;
                };
                if to > bytes.len() {
                    bytes.resize(to, 0);
                }
                bytes[from..to].copy_from_slice(&write.data[src..src + (to - from)]);
            }
        }
        Image {
            segments,
            checkpoints: self.checkpoints,
        }
    }

    /// The image with nothing pending applied.
    #[must_use]
    pub fn durable_image(&self) -> Image {
        Image {
            segments: self.durable.clone(),
            checkpoints: self.checkpoints,
        }
    }
}

/// Faults to inject. Reads, writes and syncs are numbered separately, from 0, over
/// every device of the store: `fail_sync_at: Some(2)` fails the third sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Fail the read with this number with an I/O error.
    pub fail_read_at: Option<u64>,
    /// Fail the write with this number with an I/O error (nothing is written).
    pub fail_write_at: Option<u64>,
    /// Fail the sync with this number with an I/O error (nothing becomes durable).
    pub fail_sync_at: Option<u64>,
    /// Send the write with this number `delta` bytes away from where it was aimed.
    pub misdirect_write_at: Option<(u64, i64)>,
    /// Once this many bytes were written, the power is gone: every later write, sync,
    /// creation, removal or checkpoint fails.
    pub power_cut_after_bytes: Option<u64>,
}

/// How many operations of each kind a [`FaultStore`]'s devices made (see
/// [`FaultStore::operations`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Operations {
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// Syncs.
    pub syncs: u64,
}

/// Observes crash points.
pub type Observer = Box<dyn FnMut(&Snapshot) + Send>;

struct Segment {
    durable: Arc<Vec<u8>>,
    /// Whether a power cut keeps the segment at all: false after a process crash left
    /// its creation visible and not durable, until the metadata is synced.
    exists_durably: bool,
    /// What reads see: durable with the pending writes applied. Shared with `durable`
    /// until the next write (copy on write), so that a segment nobody writes is never
    /// copied, however many stores are made over it.
    current: Arc<Vec<u8>>,
    pending: Vec<(u64, Arc<[u8]>)>,
}

impl Segment {
    /// A segment whose `bytes` are all durable.
    fn settled(bytes: Arc<Vec<u8>>) -> Self {
        Self {
            current: Arc::clone(&bytes),
            durable: bytes,
            exists_durably: true,
            pending: Vec::new(),
        }
    }
}

struct State {
    /// The visible segments.
    segments: BTreeMap<u32, Segment>,
    /// Segments removed, the removal not durable: a power cut brings them back.
    ghosts: BTreeMap<u32, Arc<Vec<u8>>>,
    /// The visible checkpoint records.
    checkpoints: [Option<[u8; CHECKPOINT_SIZE_BYTES]>; 2],
    /// The durable checkpoint records.
    checkpoints_durable: [Option<[u8; CHECKPOINT_SIZE_BYTES]>; 2],
    faults: Faults,
    /// Reads, writes and syncs done: all of them, and of each kind.
    ops: u64,
    reads: u64,
    writes: u64,
    syncs: u64,
    bytes_written: u64,
    power_cut: bool,
    observer: Option<Observer>,
}

impl State {
    fn empty() -> Self {
        Self {
            segments: BTreeMap::new(),
            ghosts: BTreeMap::new(),
            checkpoints: [None; 2],
            checkpoints_durable: [None; 2],
            faults: Faults::default(),
            ops: 0,
            reads: 0,
            writes: 0,
            syncs: 0,
            bytes_written: 0,
            power_cut: false,
            observer: None,
        }
    }

    fn snapshot(&self, next: Option<OpKind>, in_flight: Option<InFlight>) -> Snapshot {
        let mut pending = Vec::new();
        for (&segment, seg) in &self.segments {
            for (offset_bytes, data) in &seg.pending {
                pending.push(Pending {
                    segment,
                    offset_bytes: *offset_bytes,
                    data: Arc::clone(data),
                });
            }
        }
        let mut durable: BTreeMap<u32, Arc<Vec<u8>>> = self
            .segments
            .iter()
            .filter(|(_, s)| s.exists_durably)
            .map(|(&i, s)| (i, Arc::clone(&s.durable)))
            .collect();
        for (&i, bytes) in &self.ghosts {
            durable.insert(i, Arc::clone(bytes));
        }
        Snapshot {
            op: self.ops,
            next,
            durable,
            pending,
            checkpoints: self.checkpoints_durable,
            visible: self
                .segments
                .iter()
                .map(|(&i, s)| (i, (Arc::clone(&s.durable), s.exists_durably)))
                .collect(),
            ghosts: self.ghosts.clone(),
            visible_checkpoints: self.checkpoints,
            in_flight,
        }
    }

    /// Shows the observer the crash point before `kind` (which would change what
    /// `in_flight` says), and fails if the power is cut.
    fn before(&mut self, kind: OpKind, in_flight: Option<InFlight>) -> Result<(), MemError> {
        if let Some(mut observer) = self.observer.take() {
            observer(&self.snapshot(Some(kind), in_flight));
            self.observer = Some(observer);
        }
        if self.power_cut {
            return Err(fail("power cut", 0));
        }
        Ok(())
    }
}

fn fail(op: &'static str, offset_bytes: u64) -> MemError {
    MemError {
        kind: ErrorKind::Other,
        op,
        offset_bytes,
        len: 0,
    }
}

/// A store whose devices record writes and syncs and can fail on purpose.
#[derive(Clone)]
pub struct FaultStore {
    state: Arc<Mutex<State>>,
}

/// A segment of a [`FaultStore`].
pub struct FaultDevice {
    state: Arc<Mutex<State>>,
    index: u32,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Each operation leaves the state consistent before it can panic; a poisoned lock
    // is used as is.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for FaultStore {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultStore {
    /// An empty store without faults.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::empty())),
        }
    }

    /// A store holding `image`, all durable: what a process restarted after a power
    /// cut finds.
    #[must_use]
    pub fn from_image(image: &Image) -> Self {
        let mut state = State::empty();
        state.checkpoints = image.checkpoints;
        state.checkpoints_durable = image.checkpoints;
        for (&i, bytes) in &image.segments {
            state
                .segments
                .insert(i, Segment::settled(Arc::clone(bytes)));
        }
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// What a process restarted after a process crash at `snapshot` finds: every
    /// pending write visible and still pending, the durable state unchanged, and, when
    /// `half_done` is set, the operation the process was in (a creation, a removal, a
    /// checkpoint replaced) visible and not durable.
    #[must_use]
    pub fn after_process_crash(snapshot: &Snapshot, half_done: bool) -> Self {
        let mut state = State::empty();
        state.checkpoints = snapshot.visible_checkpoints;
        state.checkpoints_durable = snapshot.checkpoints;
        state.ghosts = snapshot.ghosts.clone();
        for (&i, (durable, exists_durably)) in &snapshot.visible {
            let mut segment = Segment::settled(Arc::clone(durable));
            segment.exists_durably = *exists_durably;
            state.segments.insert(i, segment);
        }
        for write in &snapshot.pending {
            let Some(segment) = state.segments.get_mut(&write.segment) else {
                continue;
            };
            let (Ok(start), len) = (usize::try_from(write.offset_bytes), write.data.len()) else {
                continue;
            };
            let current = Arc::make_mut(&mut segment.current);
            if start.saturating_add(len) > current.len() {
                current.resize(start + len, 0);
            }
            current[start..start + len].copy_from_slice(&write.data);
            segment
                .pending
                .push((write.offset_bytes, Arc::clone(&write.data)));
        }
        match snapshot.in_flight.as_ref().filter(|_| half_done) {
            Some(InFlight::Create { index, bytes }) => {
                let mut segment = Segment::settled(Arc::clone(bytes));
                segment.exists_durably = false;
                state.segments.insert(*index, segment);
                state.ghosts.remove(index);
            }
            Some(InFlight::Remove { index }) => {
                if let Some(gone) = state.segments.remove(index) {
                    if gone.exists_durably {
                        state.ghosts.insert(*index, gone.durable);
                    }
                }
            }
            Some(InFlight::Checkpoint { kind, record }) => {
                state.checkpoints[kind.index()] = Some(*record);
            }
            None => {}
        }
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Injects `faults` from now on.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.state).faults = faults;
    }

    /// How many reads, writes and syncs the store's devices have made so far: the
    /// numbers [`Faults`] counts in, so that a test can fail the next one.
    #[must_use]
    pub fn operations(&self) -> Operations {
        let state = lock(&self.state);
        Operations {
            reads: state.reads,
            writes: state.writes,
            syncs: state.syncs,
        }
    }

    /// Hands `observer` a snapshot before every operation that changes what a crash
    /// would leave.
    pub fn set_observer(&self, observer: Option<Observer>) {
        lock(&self.state).observer = observer;
    }

    /// What reads see now, as an image: every visible segment with its pending writes
    /// applied, and the visible checkpoint records (what a process restarted after a
    /// process crash reads; not what a power cut leaves).
    #[must_use]
    pub fn visible_image(&self) -> Image {
        let s = lock(&self.state);
        Image {
            segments: s
                .segments
                .iter()
                .map(|(&i, seg)| (i, Arc::clone(&seg.current)))
                .collect(),
            checkpoints: s.checkpoints,
        }
    }

    /// The crash point now.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.state).snapshot(None, None)
    }

    /// Operations done so far: reads, writes and syncs, of every device.
    #[must_use]
    pub fn ops(&self) -> u64 {
        lock(&self.state).ops
    }

    /// Whether the power was cut.
    #[must_use]
    pub fn power_is_cut(&self) -> bool {
        lock(&self.state).power_cut
    }
}

impl SegmentStore for FaultStore {
    type Device = FaultDevice;
    type Error = MemError;

    fn segment_range(&mut self) -> Result<Option<(u32, u32)>, MemError> {
        let s = lock(&self.state);
        Ok(s.segments
            .keys()
            .next()
            .copied()
            .zip(s.segments.keys().next_back().copied()))
    }

    fn open_segment(&mut self, index: u32) -> Result<Option<FaultDevice>, MemError> {
        Ok(lock(&self.state)
            .segments
            .contains_key(&index)
            .then(|| FaultDevice {
                state: Arc::clone(&self.state),
                index,
            }))
    }

    fn create_segment(
        &mut self,
        index: u32,
        size_bytes: u64,
        initial: &[u8],
    ) -> Result<FaultDevice, MemError> {
        let mut s = lock(&self.state);
        let size = usize::try_from(size_bytes).map_err(|_| fail("create", size_bytes))?;
        let mut bytes = std::vec![0u8; size];
        let n = initial.len().min(size);
        bytes[..n].copy_from_slice(&initial[..n]);
        let bytes = Arc::new(bytes);
        let in_flight = InFlight::Create {
            index,
            bytes: Arc::clone(&bytes),
        };
        s.before(OpKind::Create, Some(in_flight))?;
        if s.segments.contains_key(&index) {
            return Err(MemError {
                kind: ErrorKind::AlreadyExists,
                op: "create",
                offset_bytes: u64::from(index),
                len: 0,
            });
        }
        s.ghosts.remove(&index);
        s.segments.insert(index, Segment::settled(bytes));
        drop(s);
        Ok(FaultDevice {
            state: Arc::clone(&self.state),
            index,
        })
    }

    fn sync_metadata(&mut self) -> Result<(), MemError> {
        let mut s = lock(&self.state);
        s.before(OpKind::SyncMetadata, None)?;
        for segment in s.segments.values_mut() {
            segment.exists_durably = true;
        }
        s.ghosts.clear();
        s.checkpoints_durable = s.checkpoints;
        Ok(())
    }

    fn remove_segment(&mut self, index: u32) -> Result<(), MemError> {
        let mut s = lock(&self.state);
        s.before(OpKind::Remove, Some(InFlight::Remove { index }))?;
        s.segments.remove(&index);
        s.ghosts.remove(&index);
        Ok(())
    }

    fn segment_sealed(&mut self, _index: u32) -> Result<(), MemError> {
        Ok(())
    }

    fn read_checkpoint(
        &mut self,
        kind: CheckpointKind,
    ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, MemError> {
        Ok(lock(&self.state).checkpoints[kind.index()])
    }

    fn write_checkpoint(
        &mut self,
        kind: CheckpointKind,
        record: &[u8; CHECKPOINT_SIZE_BYTES],
    ) -> Result<(), MemError> {
        let mut s = lock(&self.state);
        let in_flight = InFlight::Checkpoint {
            kind,
            record: *record,
        };
        s.before(OpKind::Checkpoint(kind), Some(in_flight))?;
        s.checkpoints[kind.index()] = Some(*record);
        s.checkpoints_durable[kind.index()] = Some(*record);
        Ok(())
    }
}

impl BlockDevice for FaultDevice {
    type Error = MemError;

    fn write_granularity_bytes(&self) -> u32 {
        512
    }

    fn len_bytes(&self) -> u64 {
        lock(&self.state)
            .segments
            .get(&self.index)
            .map_or(0, |s| s.current.len() as u64)
    }

    fn capacity_bytes(&self) -> u64 {
        self.len_bytes()
    }

    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let mut s = lock(&self.state);
        let op = s.reads;
        s.reads += 1;
        s.ops += 1;
        if s.faults.fail_read_at == Some(op) {
            return Err(fail("read", offset_bytes));
        }
        let seg = s
            .segments
            .get(&self.index)
            .ok_or(fail("read", offset_bytes))?;
        if !range_within(offset_bytes, buf.len(), seg.current.len() as u64) {
            return Err(MemError {
                kind: ErrorKind::InvalidInput,
                op: "read",
                offset_bytes,
                len: buf.len(),
            });
        }
        // In range, checked just above.
        let start = usize::try_from(offset_bytes).map_err(|_| fail("read", offset_bytes))?;
        buf.copy_from_slice(&seg.current[start..start + buf.len()]);
        Ok(())
    }

    fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), MemError> {
        let mut s = lock(&self.state);
        s.before(OpKind::Write, None)?;
        let op = s.writes;
        s.writes += 1;
        s.ops += 1;
        if s.faults.fail_write_at == Some(op) {
            return Err(fail("write", offset_bytes));
        }
        let mut at = offset_bytes;
        if let Some((n, delta)) = s.faults.misdirect_write_at {
            if n == op {
                at = offset_bytes.saturating_add_signed(delta);
            }
        }
        let len = buf.len() as u64;
        if let Some(fuel) = s.faults.power_cut_after_bytes {
            if s.bytes_written.saturating_add(len) > fuel {
                // The power goes in the middle of this write: it is lost with the rest
                // of the pending writes that a crash image may or may not keep.
                s.power_cut = true;
                return Err(fail("power cut", offset_bytes));
            }
        }
        s.bytes_written = s.bytes_written.saturating_add(len);
        let Some(seg) = s.segments.get_mut(&self.index) else {
            return Err(fail("write", offset_bytes));
        };
        if !range_within(at, buf.len(), seg.current.len() as u64) {
            // A misdirected write past the end is lost; a direct one is a caller error.
            if at != offset_bytes {
                return Ok(());
            }
            return Err(MemError {
                kind: ErrorKind::InvalidInput,
                op: "write",
                offset_bytes,
                len: buf.len(),
            });
        }
        let start = usize::try_from(at).map_err(|_| fail("write", at))?;
        Arc::make_mut(&mut seg.current)[start..start + buf.len()].copy_from_slice(buf);
        seg.pending.push((at, Arc::from(buf)));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), MemError> {
        let mut s = lock(&self.state);
        s.before(OpKind::Sync, None)?;
        let op = s.syncs;
        s.syncs += 1;
        s.ops += 1;
        if s.faults.fail_sync_at == Some(op) {
            return Err(fail("sync", 0));
        }
        if let Some(seg) = s.segments.get_mut(&self.index) {
            if !seg.pending.is_empty() {
                seg.durable = Arc::clone(&seg.current);
                seg.pending.clear();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_segment() -> (FaultStore, FaultDevice) {
        let mut store = FaultStore::new();
        let dev = store.create_segment(0, 4096, &[1, 2, 3]).unwrap();
        (store, dev)
    }

    #[test]
    fn writes_are_pending_until_synced() {
        let (store, mut dev) = store_with_segment();
        dev.write_all_at(1000, &[9; 100]).unwrap();
        let mut buf = [0u8; 100];
        dev.read_exact_at(1000, &mut buf).unwrap();
        assert_eq!(buf, [9; 100], "reads see pending writes");
        let snap = store.snapshot();
        assert_eq!(snap.pending.len(), 1);
        assert_eq!(snap.durable[&0][1000], 0, "not durable");
        dev.sync().unwrap();
        let snap = store.snapshot();
        assert!(snap.pending.is_empty());
        assert_eq!(snap.durable[&0][1000], 9);
    }

    #[test]
    fn images_apply_prefixes_and_masks_at_sector_granularity() {
        let (store, mut dev) = store_with_segment();
        // 1000..2100 touches sectors 1, 2, 3, 4 of 512 bytes.
        dev.write_all_at(1000, &[7; 1100]).unwrap();
        let snap = store.snapshot();
        assert_eq!(snap.pending[0].sectors(512), 1..5);
        let img = snap.image(&[Landed::Prefix(2)], 512);
        let seg = &img.segments[&0];
        assert!(seg[1000..1536].iter().all(|&b| b == 7));
        assert!(
            seg[1536..2048].iter().all(|&b| b == 0),
            "sector 3 did not land"
        );
        let img = snap.image(&[Landed::Mask(0b1000)], 512);
        let seg = &img.segments[&0];
        assert!(seg[1000..2048].iter().all(|&b| b == 0));
        assert!(seg[2048..2100].iter().all(|&b| b == 7));
        assert_eq!(seg[2100], 0);
        let img = snap.image(&[Landed::All], 4096);
        assert!(img.segments[&0][1000..2100].iter().all(|&b| b == 7));
        assert!(Arc::ptr_eq(
            &snap.durable_image().segments[&0],
            &snap.durable[&0]
        ));
    }

    #[test]
    fn the_observer_sees_every_crash_point() {
        let (store, mut dev) = store_with_segment();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        store.set_observer(Some(Box::new(move |s: &Snapshot| {
            log.lock().unwrap().push((s.next, s.pending.len()));
        })));
        dev.write_all_at(0, &[1]).unwrap();
        dev.sync().unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [(Some(OpKind::Write), 0), (Some(OpKind::Sync), 1)]
        );
    }

    #[test]
    fn a_process_crash_keeps_pending_writes_visible_and_not_durable() {
        let (store, mut dev) = store_with_segment();
        dev.write_all_at(100, &[4; 8]).unwrap();
        let mut crashed = FaultStore::after_process_crash(&store.snapshot(), false);
        let mut seg = crashed.open_segment(0).unwrap().unwrap();
        let mut buf = [0u8; 8];
        seg.read_exact_at(100, &mut buf).unwrap();
        assert_eq!(buf, [4; 8], "the cache still shows it");
        assert_eq!(crashed.snapshot().durable[&0][100], 0, "not durable");
        assert_eq!(
            crashed.snapshot().pending.len(),
            1,
            "a later power cut may drop it"
        );
        seg.sync().unwrap();
        assert_eq!(
            crashed.snapshot().durable[&0][100],
            4,
            "a sync makes it durable"
        );
    }

    #[test]
    fn an_operation_left_half_done_is_visible_and_not_durable_until_metadata_is_synced() {
        let mut store = FaultStore::new();
        let points = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&points);
        store.set_observer(Some(Box::new(move |s: &Snapshot| {
            log.lock().unwrap().push(s.clone());
        })));
        store.create_segment(0, 1024, b"a").unwrap();
        store
            .write_checkpoint(CheckpointKind::Sealed, &[1; 64])
            .unwrap();
        store.create_segment(1, 1024, b"b").unwrap();
        store.remove_segment(0).unwrap();
        store.set_observer(None);
        let points = points.lock().unwrap().clone();
        let kinds: Vec<_> = points.iter().map(|p| p.next).collect();
        assert_eq!(
            kinds,
            [
                Some(OpKind::Create),
                Some(OpKind::Checkpoint(CheckpointKind::Sealed)),
                Some(OpKind::Create),
                Some(OpKind::Remove)
            ]
        );
        // Creating segment 1: visible, gone after a power cut, kept once synced.
        let mut created = FaultStore::after_process_crash(&points[2], true);
        assert_eq!(created.segment_range().unwrap(), Some((0, 1)));
        assert!(!created.snapshot().durable.contains_key(&1));
        created.sync_metadata().unwrap();
        assert!(created.snapshot().durable.contains_key(&1));
        // Removing segment 0: gone for readers, back after a power cut.
        let mut removed = FaultStore::after_process_crash(&points[3], true);
        assert_eq!(removed.segment_range().unwrap(), Some((1, 1)));
        assert!(removed.snapshot().durable.contains_key(&0));
        removed.sync_metadata().unwrap();
        assert!(!removed.snapshot().durable.contains_key(&0));
        // Replacing the checkpoint: the new one is read, the old one durable.
        let mut replaced = FaultStore::after_process_crash(&points[1], true);
        assert_eq!(
            replaced.read_checkpoint(CheckpointKind::Sealed).unwrap(),
            Some([1; 64])
        );
        assert_eq!(replaced.snapshot().checkpoints[0], None);
        replaced.sync_metadata().unwrap();
        assert_eq!(replaced.snapshot().checkpoints[0], Some([1; 64]));
        // Without `half_done`, the operation did not happen.
        let mut before = FaultStore::after_process_crash(&points[2], false);
        assert_eq!(before.segment_range().unwrap(), Some((0, 0)));
    }

    #[test]
    fn faults_fire_once_where_asked() {
        let (store, mut dev) = store_with_segment();
        store.set_faults(Faults {
            fail_write_at: Some(1),
            fail_sync_at: Some(0),
            ..Faults::default()
        });
        dev.write_all_at(0, &[1]).unwrap(); // write 0
        assert!(dev.write_all_at(0, &[2]).is_err()); // write 1
        assert!(dev.sync().is_err()); // sync 0
        dev.sync().unwrap(); // sync 1
        assert_eq!(store.snapshot().durable[&0][0], 1);

        let (store, mut dev) = store_with_segment();
        store.set_faults(Faults {
            power_cut_after_bytes: Some(10),
            ..Faults::default()
        });
        dev.write_all_at(0, &[1; 8]).unwrap();
        assert!(dev.write_all_at(8, &[1; 8]).is_err());
        assert!(store.power_is_cut());
        assert!(dev.sync().is_err(), "nothing works once the power is gone");

        let (store, mut dev) = store_with_segment();
        store.set_faults(Faults {
            misdirect_write_at: Some((0, 512)),
            ..Faults::default()
        });
        dev.write_all_at(0, &[5; 4]).unwrap();
        let snap = store.snapshot();
        assert_eq!(
            snap.pending[0].offset_bytes, 512,
            "the write landed elsewhere"
        );
    }
}
