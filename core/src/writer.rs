//! The writer: appends events to a log, block by block, segment by segment.
//!
//! [`SegmentWriter`] writes one segment: events fill a block in memory; a full block
//! is finalized (its checksums computed) and written to the next slot; a flush writes
//! a partial block, which is then sealed, so the next events go to the next slot (a
//! block that a sync made durable is never overwritten); sealing rewrites the header
//! with the segment's totals and syncs.
//!
//! [`WalWriter`] writes a log over a [`SegmentStore`]: it refuses an event whose id is
//! 0 or not greater than the last one before writing anything, rotates to a new
//! segment when one is full, and keeps a durable watermark. Opening it recovers the log
//! first (see [`WalWriter::open`]).
//!
//! # Ordering invariants
//!
//! - A full segment is sealed and synced before the next one is created, so a crash
//!   never leaves an unsealed segment followed by another one.
//! - A new segment appears atomically with its open header (the store's contract).
//! - Blocks are written in slot order; a sync covers every block written before it.
//! - After a failed write or sync the writer accepts nothing more: what the device
//!   holds is unknown, and only recovery by replay can say.

use zerocopy::IntoBytes;

use crate::block::Block;
use crate::device::BlockDevice;
use crate::error::Error;
use crate::event::RequestEvent;
use crate::issue::Status;
use crate::limits::{
    BLOCK_EVENTS_MAX, SEGMENT_BLOCKS_DEFAULT, SEGMENT_INDEX_MAX, block_offset_bytes,
    is_valid_segment_blocks, segment_size_bytes, slot_bytes_present, slots_in,
};
use crate::replay::{Mode, Replay, Summary, Tail};
use crate::segment_header::{SealedTotals, SegmentHeader};
use crate::store::SegmentStore;

/// A source of wall-clock time for segment timestamps, in ns since the Unix epoch.
pub trait Clock {
    /// The current time.
    fn now_ns(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Clock for F {
    fn now_ns(&mut self) -> u64 {
        self()
    }
}

/// Writes the blocks and the header of one segment.
pub struct SegmentWriter<D> {
    device: D,
    header: SegmentHeader,
    /// Block slots the segment holds.
    slots: u32,
    /// The block being filled.
    block: Block,
    /// Events in `block`, not yet written.
    fill: u16,
    /// The slot `block` goes to.
    next_slot: u32,
    /// Chained checksum of the last written block (0 before the first).
    chain: u64,
    /// Totals of the written blocks.
    event_count: u32,
    first_event_id: u64,
    last_event_id: u64,
}

impl<D: BlockDevice> SegmentWriter<D> {
    /// A writer for a new segment on `device`, which holds `header` (open) and zeros.
    pub fn new(device: D, header: SegmentHeader) -> Result<Self, Error<D::Error>> {
        let slots = slots_in(device.len_bytes());
        if !is_valid_segment_blocks(slots) {
            return Err(Error::InvalidConfig(
                "segment device does not hold 16..=524288 block slots",
            ));
        }
        Ok(Self {
            device,
            header,
            slots,
            block: Block::EMPTY,
            fill: 0,
            next_slot: 0,
            chain: 0,
            event_count: 0,
            first_event_id: 0,
            last_event_id: 0,
        })
    }

    /// A writer continuing an open segment where replay found its end.
    pub fn resume(device: D, tail: &Tail) -> Result<Self, Error<D::Error>> {
        if tail.sealed {
            return Err(Error::LogicBug("resuming a sealed segment"));
        }
        let mut w = Self::new(device, tail.header)?;
        if tail.next_slot > w.slots {
            return Err(Error::LogicBug("tail beyond the segment's slots"));
        }
        w.next_slot = tail.next_slot;
        w.chain = tail.chain;
        w.event_count = tail.event_count;
        w.first_event_id = tail.first_event_id;
        w.last_event_id = tail.last_event_id;
        Ok(w)
    }

    /// The segment's index.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.header.segment_index()
    }

    /// Whether one more event fits.
    #[must_use]
    pub fn has_room(&self) -> bool {
        usize::from(self.fill) < BLOCK_EVENTS_MAX && self.next_slot < self.slots
    }

    /// Adds `event` to the current block, writing the block when it becomes full.
    /// The caller has checked the event and its id.
    pub fn push(&mut self, event: &RequestEvent) -> Result<(), Error<D::Error>> {
        if !self.has_room() {
            return Err(Error::LogicBug("push into a full segment"));
        }
        let slot = self
            .block
            .events
            .get_mut(usize::from(self.fill))
            .ok_or(Error::LogicBug("block fill out of range"))?;
        *slot = *event;
        self.fill += 1;
        if usize::from(self.fill) == BLOCK_EVENTS_MAX {
            self.write_block()?;
        }
        Ok(())
    }

    /// Writes the partial block, if any, to its slot; the next events go to the next
    /// slot. Not durable until [`SegmentWriter::sync`].
    pub fn flush(&mut self) -> Result<(), Error<D::Error>> {
        if self.fill > 0 {
            self.write_block()?;
        }
        Ok(())
    }

    /// Flushes, then makes everything written durable.
    pub fn sync(&mut self) -> Result<(), Error<D::Error>> {
        self.flush()?;
        self.device.sync()?;
        Ok(())
    }

    /// Flushes, rewrites the header sealed with the segment's totals and `closed_ts_ns`,
    /// and syncs. The segment takes no more events.
    pub fn seal(&mut self, closed_ts_ns: u64) -> Result<(), Error<D::Error>> {
        self.flush()?;
        let totals = SealedTotals {
            block_count: self.next_slot,
            event_count: self.event_count,
            first_event_id: self.first_event_id,
            last_event_id: self.last_event_id,
            last_chained_checksum: self.chain,
        };
        let sealed = self.header.sealed(&totals, closed_ts_ns);
        if cfg!(debug_assertions) && sealed.check(self.index()).is_err() {
            return Err(Error::LogicBug("sealed header does not verify"));
        }
        // Blocks first, then the header that vouches for them: one sync after both is
        // enough because the header only ever moves from open to sealed, and replay
        // accepts either over the same valid blocks.
        self.device.write_all_at(0, sealed.as_bytes())?;
        self.device.sync()?;
        self.header = sealed;
        self.slots = self.next_slot;
        Ok(())
    }

    /// Finalizes the current block and writes it to its slot.
    fn write_block(&mut self) -> Result<(), Error<D::Error>> {
        let fill = usize::from(self.fill);
        // Unused slots must be zero on disk; a full block has none.
        if let Some(unused) = self.block.events.get_mut(fill..) {
            unused.fill(RequestEvent::ZERO);
        }
        let slot = self.next_slot;
        let prev_chain = self.chain;
        let chain = self.block.finalize(slot, self.fill, prev_chain);
        if cfg!(debug_assertions)
            && self
                .block
                .verify(slot, prev_chain, self.last_event_id)
                .is_err()
        {
            return Err(Error::LogicBug("finalized block does not verify"));
        }
        self.device
            .write_all_at(block_offset_bytes(slot), self.block.as_bytes())?;
        let h = self.block.header;
        if self.first_event_id == 0 {
            self.first_event_id = h.first_event_id();
        }
        self.last_event_id = h.last_event_id();
        self.event_count = self.event_count.saturating_add(u32::from(self.fill));
        self.chain = chain;
        self.next_slot += 1;
        self.fill = 0;
        Ok(())
    }
}

/// How a [`WalWriter`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterConfig {
    /// Block slots in each new segment (16..=524288).
    pub blocks_per_segment: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            blocks_per_segment: SEGMENT_BLOCKS_DEFAULT,
        }
    }
}

/// A torn tail that recovery cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClearedTail {
    /// The segment it was in.
    pub segment: u32,
    /// The first slot cleared (the slot after the last valid block).
    pub from_slot: u32,
    /// Slots that held bytes and were cleared (each preserved first).
    pub slots_cleared: u32,
    /// Bytes preserved through [`SegmentStore::preserve`].
    pub bytes_preserved: u64,
}

/// What opening a log for append found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// What replay found, before any clearing.
    pub summary: Summary,
    /// The torn tail cleared, if there was one.
    pub cleared: Option<ClearedTail>,
}

/// Appends events to a log of segments.
///
/// Dropping a writer without [`WalWriter::close`] is what a crash does: the active
/// segment stays open (unsealed), and the next [`WalWriter::open`] continues it.
pub struct WalWriter<S: SegmentStore, C: Clock> {
    store: S,
    clock: C,
    config: WriterConfig,
    active: Option<SegmentWriter<S::Device>>,
    /// Index the next new segment gets.
    next_index: u32,
    last_event_id: u64,
    durable_event_id: u64,
    poisoned: bool,
}

impl<S: SegmentStore, C: Clock> WalWriter<S, C> {
    /// Opens the log in `store` for append, recovering it first.
    ///
    /// Strict replay finds the end of the log. If everything verifies, appending goes
    /// on after the last event: in the last segment if it is open, else in a new one.
    /// If the only problem is a torn tail in the open last segment (slots after the
    /// last valid block hold bytes that do not verify, and nothing valid follows),
    /// those slots are preserved through [`SegmentStore::preserve`], cleared and
    /// synced, and appending goes on from the last valid block. Any other problem
    /// (damage before the end, a sealed segment missing blocks, a damaged header)
    /// refuses with [`Error::Damaged`] and changes nothing.
    pub fn open(
        mut store: S,
        clock: C,
        config: WriterConfig,
    ) -> Result<(Self, Recovery), Error<S::Error>> {
        if !is_valid_segment_blocks(config.blocks_per_segment) {
            return Err(Error::InvalidConfig(
                "blocks_per_segment must be in 16..=524288",
            ));
        }
        let summary = Replay::new(&mut store, Mode::Strict).run(|_| {})?;
        let range = store.segment_range()?;
        let mut cleared = None;
        match (summary.status, summary.first_issue) {
            (Status::Ok, _) => {}
            (Status::Truncated, Some(issue)) if is_clearable_tail(&summary, range) => {
                cleared = Some(clear_torn_tail(&mut store, &summary, issue.segment)?);
            }
            (status, Some(issue)) => return Err(Error::Damaged { issue, status }),
            (_, None) => return Err(Error::LogicBug("damaged log without an issue")),
        }
        let mut writer = Self {
            store,
            clock,
            config,
            active: None,
            next_index: 0,
            last_event_id: summary.last_event_id.unwrap_or(0),
            durable_event_id: 0,
            poisoned: false,
        };
        if let Some(tail) = summary.tail {
            writer.next_index = tail
                .segment
                .checked_add(1)
                .ok_or(Error::SegmentIndexExhausted)?;
            if !tail.sealed {
                let device =
                    writer
                        .store
                        .open_segment(tail.segment)?
                        .ok_or(Error::SegmentVanished {
                            segment: tail.segment,
                        })?;
                let mut active = SegmentWriter::resume(device, &tail)?;
                // What replay read may still be only in a cache: make it durable before
                // calling it durable.
                active.device.sync()?;
                writer.active = Some(active);
            }
        }
        writer.durable_event_id = writer.last_event_id;
        Ok((writer, Recovery { summary, cleared }))
    }

    /// Appends `event`. An event whose id is 0 or not greater than the last one, or
    /// whose bytes are not a valid event, is refused and nothing is written. A device
    /// failure stops the writer (see [`Error::Poisoned`]).
    pub fn append(&mut self, event: &RequestEvent) -> Result<(), Error<S::Error>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let event_id = event.event_id();
        event
            .check()
            .map_err(|defect| Error::InvalidEvent { event_id, defect })?;
        if event_id <= self.last_event_id {
            return Err(Error::EventIdNotIncreasing {
                event_id,
                last_event_id: self.last_event_id,
            });
        }
        let result = self.append_checked(event);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn append_checked(&mut self, event: &RequestEvent) -> Result<(), Error<S::Error>> {
        if !self.active.as_ref().is_some_and(SegmentWriter::has_room) {
            self.rotate()?;
        }
        let active = self
            .active
            .as_mut()
            .ok_or(Error::LogicBug("no active segment after rotation"))?;
        active.push(event)?;
        self.last_event_id = event.event_id();
        if !active.has_room() {
            // Seal a full segment now, so that a crash before the next append does not
            // leave it open, and so that closing never creates an empty segment.
            let now = self.clock.now_ns();
            active.seal(now)?;
            self.active = None;
            self.durable_event_id = self.last_event_id;
        }
        Ok(())
    }

    /// Seals the active segment, if any, and creates the next one.
    fn rotate(&mut self) -> Result<(), Error<S::Error>> {
        if let Some(mut full) = self.active.take() {
            let now = self.clock.now_ns();
            full.seal(now)?;
            self.durable_event_id = self.last_event_id;
        }
        let index = self.next_index;
        if index > SEGMENT_INDEX_MAX {
            return Err(Error::SegmentIndexExhausted);
        }
        let header = SegmentHeader::new_open(index, self.clock.now_ns());
        let size_bytes = segment_size_bytes(self.config.blocks_per_segment);
        let device = self
            .store
            .create_segment(index, size_bytes, header.as_bytes())?;
        self.active = Some(SegmentWriter::new(device, header)?);
        self.next_index = index + 1;
        Ok(())
    }

    /// Makes every appended event durable and returns the durable watermark (the last
    /// event id). A partial block is written and sealed: later events go to the next
    /// slot. A failure stops the writer; the caller must not acknowledge anything
    /// beyond the previous watermark.
    pub fn sync(&mut self) -> Result<u64, Error<S::Error>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if let Some(active) = self.active.as_mut() {
            if let Err(e) = active.sync() {
                self.poisoned = true;
                return Err(e);
            }
        }
        self.durable_event_id = self.last_event_id;
        Ok(self.durable_event_id)
    }

    /// Seals the active segment (making everything durable) and returns the durable
    /// watermark. A later append starts a new segment.
    pub fn close(&mut self) -> Result<u64, Error<S::Error>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if let Some(mut active) = self.active.take() {
            let now = self.clock.now_ns();
            if let Err(e) = active.seal(now) {
                self.poisoned = true;
                return Err(e);
            }
        }
        self.durable_event_id = self.last_event_id;
        Ok(self.durable_event_id)
    }

    /// The id of the last event appended (0 for an empty log).
    #[must_use]
    pub fn last_event_id(&self) -> u64 {
        self.last_event_id
    }

    /// The id of the last event known durable: every event up to it survives a crash.
    #[must_use]
    pub fn durable_event_id(&self) -> u64 {
        self.durable_event_id
    }

    /// The index of the segment being written, if one is open.
    #[must_use]
    pub fn active_segment(&self) -> Option<u32> {
        self.active.as_ref().map(SegmentWriter::index)
    }

    /// The store, for inspection.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back, without sealing: like a crash, for the log.
    pub fn into_store(self) -> S {
        self.store
    }
}

/// Whether the first problem of a truncated log is a torn tail recovery may clear:
/// inside the last segment present, which is open, after its last valid block.
fn is_clearable_tail(summary: &Summary, range: Option<(u32, u32)>) -> bool {
    let (Some(issue), Some(tail), Some((_, last))) = (summary.first_issue, summary.tail, range)
    else {
        return false;
    };
    issue.segment == last
        && tail.segment == last
        && !tail.sealed
        && issue.block.is_some_and(|b| b >= tail.next_slot)
}

/// Preserves, clears and syncs every non-blank slot of segment `index` from the
/// tail's next slot to the end of the segment (a trailing partial slot included).
fn clear_torn_tail<S: SegmentStore>(
    store: &mut S,
    summary: &Summary,
    index: u32,
) -> Result<ClearedTail, Error<S::Error>> {
    let tail = summary
        .tail
        .ok_or(Error::LogicBug("torn tail without a tail"))?;
    let mut device = store
        .open_segment(index)?
        .ok_or(Error::SegmentVanished { segment: index })?;
    let len_bytes = device.len_bytes();
    let mut cleared = ClearedTail {
        segment: index,
        from_slot: tail.next_slot,
        slots_cleared: 0,
        bytes_preserved: 0,
    };
    let mut block = Block::EMPTY;
    let zeros = Block::EMPTY;
    // Bounded by the segment's slots (at most SEGMENT_BLOCKS_MAX, plus a partial one).
    for slot in tail.next_slot..=tail.slots {
        let offset = block_offset_bytes(slot);
        let n = slot_bytes_present(len_bytes, slot);
        if n == 0 {
            break;
        }
        let (bytes, _) = block.as_mut_bytes().split_at_mut(n);
        device.read_exact_at(offset, bytes)?;
        if bytes.iter().all(|&b| b == 0) {
            continue;
        }
        store.preserve(index, offset, bytes)?;
        device.write_all_at(offset, zeros.as_bytes().get(..n).unwrap_or(&[]))?;
        cleared.slots_cleared += 1;
        cleared.bytes_preserved += n as u64;
    }
    device.sync()?;
    Ok(cleared)
}
