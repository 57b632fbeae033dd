//! Verification split into pieces that can be checked at the same time, on as many
//! cores as there are, then joined in order.
//!
//! A block's chained checksum is seeded with the chained checksum of the block before
//! it. Seeding each piece with the value *stored* in the header of the block before it
//! lets every piece be verified on its own; joining the pieces in order then confirms
//! the links: a piece's seed must equal the chained checksum its predecessor computed
//! (and found stored), and its first event id must come after its predecessor's last.
//! That is the whole of what strict [`Replay`](crate::Replay) checks between blocks, so
//! nothing is checked less.
//!
//! This module is only the arithmetic: [`SegmentPlan`] splits a segment into
//! [`Piece`]s, [`check_piece`] verifies one piece's bytes, and [`Join`] folds the piece
//! reports, in order, into the [`Summary`] strict replay would give. It has no threads
//! and is private to the crate: the driver that runs the pieces on many cores is
//! [`ParallelReplay`](crate::parallel_replay::ParallelReplay) (feature `std`), the
//! public face of all of this.
//!
//! # The fast path only accepts
//!
//! The pieces check the *plain* shape of a log: every segment from the first index to
//! the last present with a valid header, every sealed segment's blocks all there and
//! valid with matching totals, at most the last segment open and holding valid blocks
//! followed by nothing but zeros, and the log reaching its durable watermark. Anything
//! else (damage, a torn tail, a missing segment, an unreadable file) is [`Unusual`]:
//! the host then runs the sequential [`Replay`](crate::Replay), which explains exactly
//! what is wrong and where. So the fast path never has to describe a problem, only to
//! be sure there is none; tests and the fuzzer hold it to giving the very summary the
//! sequential replay gives whenever it accepts.

use core::ops::Range;

use zerocopy::{FromBytes, IntoBytes};

use crate::block::Block;
use crate::block_header::BlockHeader;
use crate::device::BlockDevice;
#[cfg(test)]
use crate::error::Error;
use crate::issue::Status;
use crate::limits::{
    BLOCK_HEADER_SIZE_BYTES, BLOCK_SIZE_BYTES, SEGMENT_BLOCKS_MAX, SEGMENT_HEADER_SIZE_BYTES,
    block_offset_bytes, slot_bytes_present, slots_in,
};
use crate::replay::{Summary, Tail};
use crate::segment_header::{HeaderState, SealedTotals, SegmentHeader};
#[cfg(test)]
use crate::store::SegmentStore;
use crate::watermark::{Watermark, WatermarkCheck};

/// Blocks in a piece: 4 MiB of blocks, enough to amortise a read and a hand-off
/// between threads, small enough that a few per core balance the load.
pub const PIECE_BLOCKS: u32 = 256;

const _: () = assert!(PIECE_BLOCKS >= 1 && PIECE_BLOCKS <= SEGMENT_BLOCKS_MAX);

/// Why the fast path gave up: the log is not plain (or could not be read), and the
/// sequential replay must decide. Where is only a hint for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unusual {
    /// The segment where the fast path stopped.
    pub segment: u32,
    /// The slot, when the reason is in a block.
    pub slot: Option<u32>,
}

impl Unusual {
    /// At segment `segment`, outside its blocks.
    #[must_use]
    pub(crate) const fn segment(segment: u32) -> Self {
        Self {
            segment,
            slot: None,
        }
    }

    /// At slot `slot` of segment `segment`.
    #[must_use]
    pub(crate) const fn slot(segment: u32, slot: u32) -> Self {
        Self {
            segment,
            slot: Some(slot),
        }
    }
}

/// How one segment is checked, from its header and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentPlan {
    /// The segment's index.
    pub(crate) index: u32,
    /// Its header.
    pub(crate) header: SegmentHeader,
    /// Its totals, when it is sealed; `None` when it is open.
    pub(crate) sealed: Option<SealedTotals>,
    /// Its length in bytes.
    pub(crate) len_bytes: u64,
    /// Whole block slots it holds.
    pub(crate) slots: u32,
    /// Slots to check: a sealed header's `block_count`; for an open header every slot,
    /// a trailing partial one included (which must then be all zeros).
    pub(crate) limit: u32,
}

impl SegmentPlan {
    /// The plan for segment `index`, `len_bytes` long, whose first bytes are `header`;
    /// [`Unusual`] when the header is not valid, or the segment is too short for what
    /// a sealed header says.
    pub(crate) fn new(
        index: u32,
        len_bytes: u64,
        header: &[u8; SEGMENT_HEADER_SIZE_BYTES],
    ) -> Result<Self, Unusual> {
        let header = SegmentHeader::read_from(header);
        if len_bytes < SEGMENT_HEADER_SIZE_BYTES as u64 {
            return Err(Unusual::segment(index));
        }
        let slots = slots_in(len_bytes);
        let (sealed, limit) = match header.check(index) {
            Ok(HeaderState::Sealed(t)) if t.block_count <= slots => (Some(t), t.block_count),
            Ok(HeaderState::Open) => {
                let partial = slots < SEGMENT_BLOCKS_MAX && block_offset_bytes(slots) < len_bytes;
                (None, slots.saturating_add(u32::from(partial)))
            }
            _ => return Err(Unusual::segment(index)),
        };
        Ok(Self {
            index,
            header,
            sealed,
            len_bytes,
            slots,
            limit,
        })
    }

    /// The pieces covering the slots to check, in order, each of `piece_blocks` slots
    /// (the last may be shorter; [`PIECE_BLOCKS`] suits most hosts, and 0 counts as
    /// 1). A segment with nothing to check has none.
    pub(crate) fn pieces(&self, piece_blocks: u32) -> impl Iterator<Item = Piece> + '_ {
        let step = piece_blocks.max(1);
        (0..self.limit)
            .step_by(usize::try_from(step).unwrap_or(usize::MAX))
            .map(move |first| Piece {
                segment: self.index,
                sealed: self.sealed.is_some(),
                slots: first..first.saturating_add(step).min(self.limit),
                len_bytes: self.len_bytes,
            })
    }
}

/// A run of consecutive slots of one segment, checked on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The segment.
    pub(crate) segment: u32,
    /// Whether the segment's header is sealed: then every slot must hold a block.
    pub(crate) sealed: bool,
    /// The slots.
    pub(crate) slots: Range<u32>,
    /// The segment's length, which may end inside the last slot.
    pub(crate) len_bytes: u64,
}

impl Piece {
    /// The bytes of the segment the piece covers: `offset..end`, to be handed to
    /// [`check_piece`]. The last slot of a segment may be partial.
    #[must_use]
    pub(crate) fn byte_range(&self) -> Range<u64> {
        let start = block_offset_bytes(self.slots.start).min(self.len_bytes);
        let end = block_offset_bytes(self.slots.end).min(self.len_bytes);
        start..end
    }

    /// Where the header of the block before the piece is, whose stored chained
    /// checksum seeds the piece; `None` for a piece starting at slot 0 (seed 0).
    #[must_use]
    pub(crate) fn seed_offset_bytes(&self) -> Option<u64> {
        self.slots.start.checked_sub(1).map(block_offset_bytes)
    }
}

/// What a piece holds, when it is plain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PieceReport {
    /// The segment.
    pub(crate) segment: u32,
    /// The first slot of the piece.
    pub(crate) first_slot: u32,
    /// The slot after the piece's last.
    pub(crate) end_slot: u32,
    /// The chained checksum the piece was seeded with.
    pub(crate) seed_chain: u64,
    /// Valid blocks, all at the start of the piece.
    pub(crate) blocks: u32,
    /// Events in them.
    pub(crate) events: u32,
    /// Id of the first event (0 without blocks).
    pub(crate) first_event_id: u64,
    /// Id of the last event (0 without blocks).
    pub(crate) last_event_id: u64,
    /// Chained checksum of the last block (the seed without blocks).
    pub(crate) last_chain: u64,
    /// Whether the slots after the valid blocks (if any) are all blank: only an open
    /// segment may have them.
    pub(crate) blank_tail: bool,
}

/// Verifies the blocks of `piece`, whose bytes (see [`Piece::byte_range`]) are
/// `bytes`, seeded with `seed_chain` (see [`Piece::seed_offset_bytes`]; 0 at slot 0).
///
/// `bytes` are verified in place when they are 64-byte aligned (a device's buffer, a
/// `[Block]` buffer) and copied one block at a time into `scratch` otherwise.
pub(crate) fn check_piece(
    piece: &Piece,
    bytes: &[u8],
    seed_chain: u64,
    scratch: &mut Block,
) -> Result<PieceReport, Unusual> {
    let range = piece.byte_range();
    if range.end.checked_sub(range.start) != u64::try_from(bytes.len()).ok() {
        return Err(Unusual::segment(piece.segment));
    }
    let mut check = PieceCheck::new(piece, seed_chain);
    for chunk in bytes.chunks(BLOCK_SIZE_BYTES) {
        check.push(chunk, scratch)?;
    }
    check.finish()
}

/// A piece being checked one slot at a time, for readers that hold one block at once.
#[derive(Clone, Debug)]
pub(crate) struct PieceCheck {
    sealed: bool,
    len_bytes: u64,
    next_slot: u32,
    prev_last_event_id: u64,
    report: PieceReport,
}

impl PieceCheck {
    /// Starts checking `piece`, seeded with `seed_chain` (see [`check_piece`]).
    #[must_use]
    pub(crate) fn new(piece: &Piece, seed_chain: u64) -> Self {
        Self {
            sealed: piece.sealed,
            len_bytes: piece.len_bytes,
            next_slot: piece.slots.start,
            prev_last_event_id: 0,
            report: PieceReport {
                segment: piece.segment,
                first_slot: piece.slots.start,
                end_slot: piece.slots.end,
                seed_chain,
                blocks: 0,
                events: 0,
                first_event_id: 0,
                last_event_id: 0,
                last_chain: seed_chain,
                blank_tail: false,
            },
        }
    }

    /// Checks the next slot, whose bytes present in the segment are `chunk` (a whole
    /// block, or fewer bytes for a segment's partial last slot). Misaligned bytes are
    /// copied into `scratch` first.
    pub(crate) fn push(&mut self, chunk: &[u8], scratch: &mut Block) -> Result<(), Unusual> {
        if chunk.len() < BLOCK_SIZE_BYTES {
            return self.push_partial(chunk);
        }
        match Block::ref_from_bytes(chunk) {
            Ok(block) => self.push_block(block),
            Err(_) => {
                // Not aligned for a `Block`: verify a copy.
                let dst = scratch.as_mut_bytes();
                if dst.len() != chunk.len() {
                    return Err(self.here());
                }
                dst.copy_from_slice(chunk);
                self.push_block(scratch)
            }
        }
    }

    /// Checks the next slot, the segment's partial last one, whose bytes are `chunk`:
    /// a crash while the file grew, fine only in an open segment and when nothing was
    /// written to it.
    pub(crate) fn push_partial(&mut self, chunk: &[u8]) -> Result<(), Unusual> {
        let here = self.take_slot(chunk.len())?;
        if self.sealed || chunk.iter().any(|&b| b != 0) {
            return Err(here);
        }
        self.report.blank_tail = true;
        Ok(())
    }

    /// Checks the next slot, a whole one, holding `block`.
    pub(crate) fn push_block(&mut self, block: &Block) -> Result<(), Unusual> {
        let here = self.take_slot(BLOCK_SIZE_BYTES)?;
        let slot = self.next_slot.saturating_sub(1);
        let report = &mut self.report;
        if report.blank_tail {
            // After the first empty slot of an open segment, everything must be empty:
            // valid data there would be a hole for the sequential replay to explain.
            return if block.is_blank() { Ok(()) } else { Err(here) };
        }
        if block.header.is_blank() {
            if self.sealed || !block.is_blank() {
                return Err(here);
            }
            report.blank_tail = true;
            return Ok(());
        }
        // Every rule of `Block::verify`; the first block's ids are compared with the
        // block before the piece when `Join` joins it.
        block
            .verify(slot, report.last_chain, self.prev_last_event_id)
            .map_err(|_| here)?;
        let h = &block.header;
        if report.blocks == 0 {
            report.first_event_id = h.first_event_id();
        }
        report.blocks = report.blocks.checked_add(1).ok_or(here)?;
        report.events = report
            .events
            .checked_add(u32::from(h.event_count()))
            .ok_or(here)?;
        report.last_event_id = h.last_event_id();
        report.last_chain = h.chained_checksum();
        self.prev_last_event_id = h.last_event_id();
        Ok(())
    }

    fn here(&self) -> Unusual {
        Unusual::slot(self.report.segment, self.next_slot)
    }

    /// Moves past the next slot, which must be in the piece and hold `len` bytes in
    /// the segment; returns where it is, for errors.
    fn take_slot(&mut self, len: usize) -> Result<Unusual, Unusual> {
        let slot = self.next_slot;
        let here = self.here();
        if slot >= self.report.end_slot || slot_bytes_present(self.len_bytes, slot) != len {
            return Err(here);
        }
        self.next_slot = slot.saturating_add(1);
        Ok(here)
    }

    /// The report, once every slot of the piece was pushed.
    pub(crate) fn finish(self) -> Result<PieceReport, Unusual> {
        if self.next_slot != self.report.end_slot {
            return Err(Unusual::slot(self.report.segment, self.next_slot));
        }
        Ok(self.report)
    }
}

/// The chained checksum stored in the block header `header` (the bytes at
/// [`Piece::seed_offset_bytes`]), to seed a piece. It is not trusted: [`Join`] checks
/// it against what the previous piece computed.
#[must_use]
pub(crate) fn seed_from_header(header: &[u8; BLOCK_HEADER_SIZE_BYTES]) -> u64 {
    BlockHeader::read_from_bytes(header).map_or(0, |h| h.chained_checksum())
}

/// The segment [`Join`] is inside.
#[derive(Clone, Copy, Debug)]
struct Current {
    plan: SegmentPlan,
    /// The next slot a piece must start at.
    next_slot: u32,
    /// Chained checksum after the last valid block (0 before any).
    chain: u64,
    blocks: u32,
    events: u32,
    first_event_id: u64,
    last_event_id: u64,
    /// Whether an empty slot was seen: every later slot must be empty too.
    blank: bool,
}

/// Joins piece reports, in order, into the summary strict replay gives, confirming the
/// links between pieces and segments.
#[derive(Clone, Debug)]
pub(crate) struct Join {
    first_segment: u32,
    last_segment: u32,
    durable_floor: u64,
    /// Whether the watermark's block is where its record says. The join sees only the
    /// end of each segment: a record naming a block inside one is left unconfirmed,
    /// and the sequential replay, which sees every block, decides.
    check: WatermarkCheck,
    previous_segment: Option<u32>,
    current: Option<Current>,
    last_event_id: u64,
    summary: Summary,
}

impl Join {
    /// A join of segments `first_segment..=last_segment` (the lowest and highest index
    /// present), for a log whose checkpoint records give `watermark`.
    #[must_use]
    pub(crate) fn new(first_segment: u32, last_segment: u32, watermark: &Watermark) -> Self {
        Self {
            first_segment,
            last_segment,
            durable_floor: watermark.durable_event_id,
            check: WatermarkCheck::new(watermark, None),
            previous_segment: None,
            current: None,
            last_event_id: 0,
            summary: Summary::EMPTY,
        }
    }

    /// Starts segment `plan.index`, which must follow the previous one, and may be open
    /// only if it is the last.
    pub(crate) fn begin_segment(&mut self, plan: &SegmentPlan) -> Result<(), Unusual> {
        let here = Unusual::segment(plan.index);
        if self.current.is_some() {
            return Err(here);
        }
        let follows = match self.previous_segment {
            None => plan.index == self.first_segment,
            Some(p) => p.checked_add(1) == Some(plan.index),
        };
        if !follows || plan.index > self.last_segment {
            return Err(here);
        }
        if plan.sealed.is_none() && plan.index != self.last_segment {
            return Err(here);
        }
        if self
            .check
            .segment_start(plan.index, self.last_event_id)
            .is_err()
        {
            return Err(here);
        }
        self.summary.segments = self.summary.segments.checked_add(1).ok_or(here)?;
        self.current = Some(Current {
            plan: *plan,
            next_slot: 0,
            chain: 0,
            blocks: 0,
            events: 0,
            first_event_id: 0,
            last_event_id: 0,
            blank: false,
        });
        Ok(())
    }

    /// Adds the next piece of the current segment.
    pub(crate) fn piece(&mut self, report: &PieceReport) -> Result<(), Unusual> {
        let cur = self
            .current
            .as_mut()
            .ok_or(Unusual::segment(report.segment))?;
        let here = Unusual::slot(report.segment, report.first_slot);
        if report.segment != cur.plan.index
            || report.first_slot != cur.next_slot
            || report.end_slot <= report.first_slot
            || report.end_slot > cur.plan.limit
        {
            return Err(here);
        }
        if cur.blank {
            // An empty slot came before: this piece must be empty throughout.
            if report.blocks != 0 || !report.blank_tail {
                return Err(here);
            }
        } else if report.blocks > 0 {
            // The links: seeded with what the previous piece computed, ids increasing.
            if report.seed_chain != cur.chain || report.first_event_id <= self.last_event_id {
                return Err(here);
            }
            if cur.blocks == 0 {
                cur.first_event_id = report.first_event_id;
            }
            cur.blocks = cur.blocks.checked_add(report.blocks).ok_or(here)?;
            cur.events = cur.events.checked_add(report.events).ok_or(here)?;
            cur.last_event_id = report.last_event_id;
            cur.chain = report.last_chain;
            self.last_event_id = report.last_event_id;
            self.summary.blocks += u64::from(report.blocks);
            self.summary.events += u64::from(report.events);
            self.summary
                .first_event_id
                .get_or_insert(report.first_event_id);
            self.summary.last_event_id = Some(report.last_event_id);
        }
        cur.blank |= report.blank_tail;
        cur.next_slot = report.end_slot;
        Ok(())
    }

    /// Ends the current segment: every slot to check was covered, and a sealed
    /// header's totals match the blocks.
    pub(crate) fn end_segment(&mut self) -> Result<(), Unusual> {
        let cur = self.current.take().ok_or(Unusual::segment(0))?;
        let here = Unusual::segment(cur.plan.index);
        if cur.next_slot != cur.plan.limit {
            return Err(here);
        }
        let last_slot = cur.blocks.checked_sub(1);
        let confirmed = last_slot.is_none_or(|slot| {
            self.check
                .block(cur.plan.index, slot, cur.chain, cur.last_event_id)
                .is_ok()
        }) && self.check.segment_end(cur.plan.index, cur.blocks).is_ok();
        if !confirmed {
            return Err(here);
        }
        if let Some(t) = cur.plan.sealed {
            let agrees = cur.blocks == t.block_count
                && cur.events == t.event_count
                && cur.first_event_id == t.first_event_id
                && cur.last_event_id == t.last_event_id
                && cur.chain == t.last_chained_checksum;
            if !agrees {
                return Err(here);
            }
        }
        self.previous_segment = Some(cur.plan.index);
        self.summary.open_segment = cur.plan.sealed.is_none();
        self.summary.tail = Some(Tail {
            segment: cur.plan.index,
            header: cur.plan.header,
            sealed: cur.plan.sealed.is_some(),
            slots: cur.plan.slots,
            next_slot: cur.blocks,
            chain: cur.chain,
            event_count: cur.events,
            first_event_id: cur.first_event_id,
            last_event_id: cur.last_event_id,
        });
        Ok(())
    }

    /// The summary, once every segment up to the last was joined and the log reaches
    /// its durable watermark.
    pub(crate) fn finish(self) -> Result<Summary, Unusual> {
        let here = Unusual::segment(self.last_segment);
        if self.current.is_some()
            || self.previous_segment != Some(self.last_segment)
            || self.last_event_id < self.durable_floor
            || !self.check.is_settled()
        {
            return Err(here);
        }
        debug_assert_eq!(self.summary.status, Status::Ok);
        Ok(self.summary)
    }
}

/// Runs the whole fast path on one thread: plans every segment of `store`, checks
/// every piece of `piece_blocks` slots in order (in place when the device shows its bytes, read into `scratch`
/// one slot at a time otherwise) and joins them. `Ok(Err(Unusual))` means the log is
/// not plain and the sequential [`Replay`](crate::Replay) must decide; `Err` is a
/// device error.
///
/// [`ParallelReplay`](crate::parallel_replay::ParallelReplay) runs the same steps on
/// many threads; this one is the reference the tests compare with replay.
#[cfg(test)]
pub(crate) fn verify_in_pieces<S: SegmentStore>(
    store: &mut S,
    piece_blocks: u32,
    scratch: &mut Block,
) -> Result<Result<Summary, Unusual>, Error<S::Error>> {
    let watermark = Watermark::read(store)?;
    let Some((first, last)) = store.segment_range()? else {
        return Ok(Err(Unusual::segment(0)));
    };
    let mut join = Join::new(first, last, &watermark);
    // One pass per segment index; the range is bounded by `SEGMENT_INDEX_MAX`.
    for index in first..=last {
        let Some(mut device) = store.open_segment(index)? else {
            return Ok(Err(Unusual::segment(index)));
        };
        let plan = match plan_segment(&mut device, index)? {
            Ok(plan) => plan,
            Err(unusual) => return Ok(Err(unusual)),
        };
        if let Err(unusual) = join.begin_segment(&plan) {
            return Ok(Err(unusual));
        }
        for piece in plan.pieces(piece_blocks) {
            let seed = read_seed(&mut device, &piece)?;
            let report = match piece_bytes(&device, &piece) {
                Some(bytes) => check_piece(&piece, bytes, seed, scratch),
                None => check_piece_by_reads(&mut device, &piece, seed, scratch)?,
            };
            if let Err(unusual) = report.and_then(|r| join.piece(&r)) {
                return Ok(Err(unusual));
            }
        }
        if let Err(unusual) = join.end_segment() {
            return Ok(Err(unusual));
        }
    }
    Ok(join.finish())
}

/// Reads the header of segment `index` from `device` and plans it.
pub(crate) fn plan_segment<D: BlockDevice>(
    device: &mut D,
    index: u32,
) -> Result<Result<SegmentPlan, Unusual>, D::Error> {
    let len_bytes = device.len_bytes();
    if len_bytes < SEGMENT_HEADER_SIZE_BYTES as u64 {
        return Ok(Err(Unusual::segment(index)));
    }
    let mut header = [0u8; SEGMENT_HEADER_SIZE_BYTES];
    device.read_exact_at(0, &mut header)?;
    Ok(SegmentPlan::new(index, len_bytes, &header))
}

/// The seed of `piece`: the chained checksum stored in the block before it, 0 at slot 0.
pub(crate) fn read_seed<D: BlockDevice>(device: &mut D, piece: &Piece) -> Result<u64, D::Error> {
    let Some(offset) = piece.seed_offset_bytes() else {
        return Ok(0);
    };
    let mut header = [0u8; BLOCK_HEADER_SIZE_BYTES];
    device.read_exact_at(offset, &mut header)?;
    Ok(seed_from_header(&header))
}

/// The bytes of `piece` where they lie, when `device` shows them (see
/// [`BlockDevice::mapped_bytes`]).
#[must_use]
pub(crate) fn piece_bytes<'a, D: BlockDevice>(device: &'a D, piece: &Piece) -> Option<&'a [u8]> {
    let range = piece.byte_range();
    let start = usize::try_from(range.start).ok()?;
    let end = usize::try_from(range.end).ok()?;
    device.mapped_bytes()?.get(start..end)
}

/// Checks `piece` reading `buffer.len()` slots at a time into `buffer`.
///
/// For readers that copy (positioned reads): a buffer that fits the core's cache keeps
/// what was just read there for the checksums, where reading a whole piece first
/// would push its start out before it is hashed. An empty buffer cannot make progress
/// and reports the piece as unusual.
pub(crate) fn check_piece_in_chunks<D: BlockDevice>(
    device: &mut D,
    piece: &Piece,
    seed_chain: u64,
    buffer: &mut [Block],
) -> Result<Result<PieceReport, Unusual>, D::Error> {
    let here = Unusual::slot(piece.segment, piece.slots.start);
    let range = piece.byte_range();
    let Ok(chunk_bytes) = u64::try_from(buffer.len() * BLOCK_SIZE_BYTES) else {
        return Ok(Err(here));
    };
    if chunk_bytes == 0 {
        return Ok(Err(here));
    }
    let mut check = PieceCheck::new(piece, seed_chain);
    let mut offset_bytes = range.start;
    // Bounded: each pass moves at least one byte (`chunk_bytes > 0`) through a piece
    // of at most `PIECE_BLOCKS` slots.
    while offset_bytes < range.end {
        let take = (range.end - offset_bytes).min(chunk_bytes);
        let Some(bytes) = usize::try_from(take)
            .ok()
            .and_then(|n| buffer.as_mut_bytes().get_mut(..n))
        else {
            return Ok(Err(here));
        };
        device.read_exact_at(offset_bytes, bytes)?;
        // Whole slots are whole blocks of the buffer; only a segment's partial last
        // slot is shorter.
        let whole = bytes.len() / BLOCK_SIZE_BYTES;
        let rest = bytes.len() % BLOCK_SIZE_BYTES;
        let (full, tail) = buffer.split_at(whole);
        for block in full {
            if let Err(unusual) = check.push_block(block) {
                return Ok(Err(unusual));
            }
        }
        if rest > 0 {
            let partial = tail.first().and_then(|b| b.as_bytes().get(..rest));
            let pushed = partial.map_or(Err(here), |p| check.push_partial(p));
            if let Err(unusual) = pushed {
                return Ok(Err(unusual));
            }
        }
        offset_bytes += take;
    }
    Ok(check.finish())
}

/// Checks `piece` reading one slot at a time into `scratch`.
#[cfg(test)]
pub(crate) fn check_piece_by_reads<D: BlockDevice>(
    device: &mut D,
    piece: &Piece,
    seed_chain: u64,
    scratch: &mut Block,
) -> Result<Result<PieceReport, Unusual>, D::Error> {
    check_piece_in_chunks(device, piece, seed_chain, core::slice::from_mut(scratch))
}

#[cfg(test)]
// Tests run on 64-bit hosts, where segment offsets fit in usize.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::boxed::Box;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::{CHECKPOINT_SIZE_BYTES, Checkpoint, CheckpointFields, CheckpointKind};
    use crate::mem::{MemDevice, MemError, MemStore};
    use crate::replay::Mode;
    use crate::testutil::{reference_log, replay};

    /// Segment bytes at a chosen alignment: `shift` 0 keeps blocks 64-byte aligned
    /// (verified in place), 1 does not (verified through the scratch block).
    struct Shifted {
        blocks: Vec<Block>,
        shift: usize,
        len: usize,
    }

    impl Shifted {
        fn new(image: &[u8], shift: usize) -> Self {
            let blocks_needed = (image.len() + shift) / BLOCK_SIZE_BYTES + 1;
            let mut blocks = Vec::new();
            blocks.resize(blocks_needed, Block::EMPTY);
            let mut s = Self {
                blocks,
                shift,
                len: image.len(),
            };
            s.as_mut().copy_from_slice(image);
            s
        }
    }

    impl AsRef<[u8]> for Shifted {
        fn as_ref(&self) -> &[u8] {
            &self.blocks.as_bytes()[self.shift..self.shift + self.len]
        }
    }

    impl AsMut<[u8]> for Shifted {
        fn as_mut(&mut self) -> &mut [u8] {
            &mut self.blocks.as_mut_bytes()[self.shift..self.shift + self.len]
        }
    }

    /// A read-only view of a [`MemStore`] whose devices show their bytes, as a device
    /// over a buffer does.
    struct Mapped<'a> {
        inner: &'a mut MemStore,
        shift: usize,
    }

    impl SegmentStore for Mapped<'_> {
        type Device = MemDevice<Shifted>;
        type Error = MemError;

        fn segment_range(&mut self) -> Result<Option<(u32, u32)>, MemError> {
            self.inner.segment_range()
        }
        fn open_segment(&mut self, index: u32) -> Result<Option<Self::Device>, MemError> {
            Ok(self
                .inner
                .image(index)
                .map(|image| MemDevice::from_image(Shifted::new(&image, self.shift))))
        }
        fn create_segment(&mut self, _: u32, _: u64, _: &[u8]) -> Result<Self::Device, MemError> {
            unreachable!("read-only test view")
        }
        fn sync_metadata(&mut self) -> Result<(), MemError> {
            unreachable!("read-only test view")
        }
        fn remove_segment(&mut self, _: u32) -> Result<(), MemError> {
            unreachable!("read-only test view")
        }
        fn segment_sealed(&mut self, _: u32) -> Result<(), MemError> {
            unreachable!("read-only test view")
        }
        fn read_checkpoint(
            &mut self,
            kind: CheckpointKind,
        ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, MemError> {
            self.inner.read_checkpoint(kind)
        }
        fn write_checkpoint(
            &mut self,
            _: CheckpointKind,
            _: &[u8; CHECKPOINT_SIZE_BYTES],
        ) -> Result<(), MemError> {
            unreachable!("read-only test view")
        }
    }

    /// The fast path over `store` three ways (reads, in place, copied), which must
    /// agree with each other; and what the sequential strict replay says.
    fn both(store: &mut MemStore, piece_blocks: u32) -> (Result<Summary, Unusual>, Summary) {
        let mut scratch = Box::new(Block::EMPTY);
        let by_reads = verify_in_pieces(store, piece_blocks, &mut scratch).unwrap();
        for shift in [0, 1] {
            let mut mapped = Mapped {
                inner: store,
                shift,
            };
            let other = verify_in_pieces(&mut mapped, piece_blocks, &mut scratch).unwrap();
            assert_eq!(other, by_reads, "shift {shift}");
        }
        (by_reads, replay(store, Mode::Strict, None).summary)
    }

    /// Whenever the fast path accepts, the sequential replay accepts and says the same.
    fn assert_sound(store: &mut MemStore, piece_blocks: u32) -> bool {
        let (fast, slow) = both(store, piece_blocks);
        match fast {
            Ok(summary) => {
                assert_eq!(slow.status, Status::Ok);
                assert_eq!(summary, slow);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn plain_logs_take_the_fast_path_and_agree_with_replay() {
        for (events, blocks, close) in [
            (1, 16, true),
            (1, 16, false),
            (256, 16, true),
            (257, 16, false),
            (16 * 256, 16, true),
            (16 * 256 + 1, 16, false),
            (40 * 256 + 17, 16, true),
            (40 * 256 + 17, 16, false),
            (5000, 600, false),
        ] {
            for piece_blocks in [1, 3, 7, PIECE_BLOCKS] {
                let mut store = reference_log(events, blocks, close);
                assert!(
                    assert_sound(&mut store, piece_blocks),
                    "{events} events, {blocks} blocks, close {close}, pieces {piece_blocks}"
                );
            }
        }
    }

    /// Every piece of every segment of `store`, checked with buffers of several sizes:
    /// the reports must not depend on how the piece was read.
    fn chunk_sizes_agree(store: &mut MemStore, piece_blocks: u32) {
        let Some((first, last)) = store.segment_range().unwrap() else {
            return;
        };
        let mut buffer = Vec::new();
        buffer.resize(PIECE_BLOCKS as usize + 1, Block::EMPTY);
        for index in first..=last {
            let mut device = store.open_segment(index).unwrap().unwrap();
            let Ok(plan) = plan_segment(&mut device, index).unwrap() else {
                continue;
            };
            for piece in plan.pieces(piece_blocks) {
                let seed = read_seed(&mut device, &piece).unwrap();
                let one = check_piece_in_chunks(&mut device, &piece, seed, &mut buffer[..1]);
                for blocks in [2, 3, 16, PIECE_BLOCKS as usize + 1] {
                    let other =
                        check_piece_in_chunks(&mut device, &piece, seed, &mut buffer[..blocks]);
                    assert_eq!(
                        other, one,
                        "segment {index}, piece {piece:?}, {blocks} blocks"
                    );
                }
                assert_eq!(
                    check_piece_in_chunks(&mut device, &piece, seed, &mut []).unwrap(),
                    Err(Unusual::slot(index, piece.slots.start))
                );
            }
        }
    }

    #[test]
    fn reading_in_chunks_of_any_size_reports_the_same() {
        for (events, close) in [(1, false), (16 * 256, true), (40 * 256 + 17, false)] {
            for piece_blocks in [1, 7, PIECE_BLOCKS] {
                let mut store = reference_log(events, 16, close);
                chunk_sizes_agree(&mut store, piece_blocks);
                // With a flipped bit in the middle of the first segment.
                store.with_bytes_mut(0, |bytes| {
                    let middle = bytes.len() / 2;
                    bytes[middle] ^= 0x10;
                });
                chunk_sizes_agree(&mut store, piece_blocks);
                // With the last segment cut inside a slot (a partial last slot).
                let last = store.indices().last().copied().unwrap();
                let len = store.image(last).unwrap().len() as u64;
                if len > 2000 {
                    store.set_len(last, len - 1000).unwrap().unwrap();
                    chunk_sizes_agree(&mut store, piece_blocks);
                }
            }
        }
    }

    #[test]
    fn an_empty_store_is_left_to_replay() {
        let mut store = MemStore::new();
        assert!(!assert_sound(&mut store, PIECE_BLOCKS));
    }

    #[test]
    fn every_single_bit_flip_is_refused_or_harmless() {
        // Every byte of a small two-segment log, open at the end: the fast path must
        // never accept what replay refuses, nor report different totals.
        let base = reference_log(20 * 256 + 300, 16, false);
        let mut refused = 0u32;
        for seg in base.indices() {
            let len = base.image(seg).unwrap().len();
            for offset in (0..len).step_by(499) {
                let mut store = base.snapshot();
                store.with_bytes_mut(seg, |b| b[offset] ^= 0x04).unwrap();
                if !assert_sound(&mut store, 3) {
                    refused += 1;
                }
            }
        }
        assert!(refused > 500, "only {refused} damaged images were refused");
    }

    #[test]
    fn the_links_between_pieces_are_confirmed() {
        let header: [u8; SEGMENT_HEADER_SIZE_BYTES] =
            SegmentHeader::new_open(0, 1).as_bytes().try_into().unwrap();
        let plan = SegmentPlan::new(0, crate::limits::segment_size_bytes(16), &header).unwrap();
        assert_eq!((plan.limit, plan.sealed), (16, None));
        let report = |first_slot, end_slot, seed_chain, first_event_id| PieceReport {
            segment: 0,
            first_slot,
            end_slot,
            seed_chain,
            blocks: end_slot - first_slot,
            events: 10,
            first_event_id,
            last_event_id: first_event_id + 9,
            last_chain: 100 + u64::from(end_slot),
            blank_tail: false,
        };
        let mut join = Join::new(0, 0, &Watermark::default());
        join.begin_segment(&plan).unwrap();
        join.piece(&report(0, 4, 0, 1)).unwrap();
        // Seeded with something other than what the previous piece computed.
        assert!(join.clone().piece(&report(4, 8, 99, 11)).is_err());
        // Ids that do not come after the previous piece's.
        assert!(join.clone().piece(&report(4, 8, 104, 10)).is_err());
        // A gap between pieces.
        assert!(join.clone().piece(&report(5, 8, 104, 11)).is_err());
        // Past the slots to check.
        assert!(join.clone().piece(&report(4, 17, 104, 11)).is_err());
        join.piece(&report(4, 8, 104, 11)).unwrap();
        // Not every slot covered yet.
        assert!(join.clone().end_segment().is_err());
        let mut blank = report(8, 16, 108, 0);
        blank.blocks = 0;
        blank.events = 0;
        blank.blank_tail = true;
        join.piece(&blank).unwrap();
        join.end_segment().unwrap();
        let summary = join.finish().unwrap();
        assert_eq!((summary.blocks, summary.events), (8, 20));
        assert_eq!(
            (summary.first_event_id, summary.last_event_id),
            (Some(1), Some(20))
        );
        assert!(summary.open_segment);
        // A durable watermark past the end is left to replay.
        let beyond = |next_slot, last_event_id| {
            Watermark::from_records([
                Some(CheckpointFields {
                    segment_index: 0,
                    next_slot,
                    last_event_id,
                    chained_checksum: 100 + u64::from(next_slot),
                    written_ts_ns: 1,
                }),
                None,
            ])
        };
        let mut short = Join::new(0, 0, &beyond(9, 21));
        short.begin_segment(&plan).unwrap();
        assert!(short.finish().is_err());
        // So is one whose block is inside the segment, which the join cannot see; one
        // at the end of the segment it confirms.
        for (watermark, accepted) in [(beyond(4, 10), false), (beyond(8, 20), true)] {
            let mut join = Join::new(0, 0, &watermark);
            join.begin_segment(&plan).unwrap();
            join.piece(&report(0, 4, 0, 1)).unwrap();
            join.piece(&report(4, 8, 104, 11)).unwrap();
            join.piece(&blank).unwrap();
            assert_eq!(
                join.end_segment().and_then(|()| join.finish()).is_ok(),
                accepted
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Random logs with random damage: the fast path accepts only what replay
        /// accepts, with the same summary, and always accepts an undamaged log.
        #[test]
        fn the_fast_path_never_accepts_what_replay_refuses(
            events in 1u64..(12 * 256),
            close: bool,
            piece_blocks in 1u32..6,
            damage in 0u8..8,
            at in any::<u64>(),
            value in 1u8..=255,
        ) {
            let mut store = reference_log(events, 16, close);
            let indices = store.indices();
            let seg = indices[(at % indices.len() as u64) as usize];
            let len = store.image(seg).unwrap().len() as u64;
            let offset = (at >> 8) % len;
            match damage {
                0 => {}
                1 => {
                    store.with_bytes_mut(seg, |b| b[offset as usize] ^= value).unwrap();
                }
                2 => {
                    store.set_len(seg, offset).unwrap().unwrap();
                }
                3 => {
                    store.remove(seg);
                }
                4 => {
                    // Zero a block-sized run, as a lost write leaves.
                    store.with_bytes_mut(seg, |b| {
                        let end = (offset as usize + BLOCK_SIZE_BYTES).min(b.len());
                        b[offset as usize..end].fill(0);
                    }).unwrap();
                }
                5 => {
                    // A durable watermark beyond the end of the log.
                    let record = Checkpoint::new(&CheckpointFields {
                        segment_index: seg,
                        next_slot: 1,
                        last_event_id: events + (at % 3),
                        chained_checksum: 1,
                        written_ts_ns: 0,
                    })
                    .to_bytes();
                    store.write_checkpoint(CheckpointKind::Synced, &record).unwrap();
                }
                6 => {
                    // Garbage after the end of the last segment.
                    let last = *indices.last().unwrap();
                    let image = store.image(last).unwrap();
                    let mut longer = image.clone();
                    longer.extend(core::iter::repeat_n(value, (at % 20000) as usize));
                    store.insert_image(last, longer);
                }
                _ => {
                    // A segment copied over the next one's index.
                    if let Some(&next) = indices.iter().find(|&&i| i > seg) {
                        let image = store.image(seg).unwrap();
                        store.insert_image(next, image);
                    }
                }
            }
            let accepted = assert_sound(&mut store, piece_blocks);
            if damage == 0 {
                prop_assert!(accepted, "an undamaged log was refused");
            }
        }
    }
}
