//! [`SegmentWriter`]: the blocks and the header of one segment, written and sealed.

use super::*;

/// Writes the blocks and the header of one segment.
pub struct SegmentWriter<D> {
    pub(super) device: D,
    pub(super) header: SegmentHeader,
    /// Block slots the segment holds.
    pub(super) slots: u32,
    /// The block being filled.
    pub(super) block: Block,
    /// Events in `block`, not yet written.
    pub(super) fill: u16,
    /// The slot `block` goes to.
    pub(super) next_slot: u32,
    /// Chained checksum of the last written block (0 before the first).
    pub(super) chain: u64,
    /// Whether blocks were written since the last sync.
    pub(super) unsynced: bool,
    /// Totals of the written blocks.
    pub(super) event_count: u32,
    pub(super) first_event_id: u64,
    pub(super) last_event_id: u64,
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
            unsynced: false,
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
        self.push_many(core::slice::from_ref(event)).map(|_| ())
    }

    /// Adds as many of `events` as the current block holds (at least one), writing the
    /// block when it becomes full, and returns how many it took. The caller has checked
    /// the events and their ids.
    pub fn push_many(&mut self, events: &[RequestEvent]) -> Result<usize, Error<D::Error>> {
        if !self.has_room() || events.is_empty() {
            return Err(Error::LogicBug("push into a full segment, or of nothing"));
        }
        let fill = usize::from(self.fill);
        let take = (BLOCK_EVENTS_MAX - fill).min(events.len());
        let (Some(slots), Some(taken)) = (
            self.block.events.get_mut(fill..fill + take),
            events.get(..take),
        ) else {
            return Err(Error::LogicBug("block fill out of range"));
        };
        slots.copy_from_slice(taken);
        // `fill + take <= 256` fits in a u16.
        self.fill = u16::try_from(fill + take).map_err(|_| Error::LogicBug("block fill"))?;
        if usize::from(self.fill) == BLOCK_EVENTS_MAX {
            self.write_block()?;
        }
        Ok(take)
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
        self.unsynced = false;
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
        // Checked in every build: a sealed header that does not read back as these
        // totals would turn a healthy segment into damage.
        let sealed = self
            .header
            .sealed_checked(&totals, closed_ts_ns)
            .map_err(|_| Error::LogicBug("the sealed header does not check"))?;
        // The blocks must be durable before the header that vouches for them is written:
        // writes no sync separates may land in any order, and a sealed header over a
        // block that did not land is a sealed segment missing a block (damage), where
        // an open header over it is only a torn tail.
        if self.unsynced {
            self.device.sync()?;
            self.unsynced = false;
        }
        self.device.write_all_at(0, sealed.as_bytes())?;
        self.device.sync()?;
        self.header = sealed;
        self.slots = self.next_slot;
        Ok(())
    }

    /// Finalizes the current block and writes it to its slot.
    pub(super) fn write_block(&mut self) -> Result<(), Error<D::Error>> {
        let fill = usize::from(self.fill);
        // Unused slots must be zero on disk; a full block has none.
        if let Some(unused) = self.block.events.get_mut(fill..) {
            unused.fill(RequestEvent::ZERO);
        }
        let slot = self.next_slot;
        let prev_chain = self.chain;
        // `finalize` checks the header it builds in every build; the full verify, which
        // reads every event again, only in debug builds: the events were checked when
        // they were appended.
        let chain = self
            .block
            .finalize(slot, self.fill, prev_chain)
            .map_err(|_| Error::LogicBug("the finalized block header does not check"))?;
        if cfg!(debug_assertions)
            && self
                .block
                .verify(slot, prev_chain, self.last_event_id)
                .is_err()
        {
            return Err(Error::LogicBug("finalized block does not verify"));
        }
        self.unsynced = true;
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
