//! Replay: the state machine that reads a log back, verifying everything, in order.
//!
//! [`Replay::step`] yields one [`Step`] at a time: a segment starts, a verified
//! block's events (borrowed from the replay's one block buffer, not copied again),
//! or an issue. It checks every rule of docs/FORMAT.md:
//!
//! - segments are contiguous by index, and each header's `segment_index` is its own;
//! - magic, version, header size, header checksum, and a sealed header's totals;
//! - for each block: header checksum, `1 <= event_count <= 256`, `first_event_id != 0`,
//!   `first <= last`, `block_index == slot`, first and last ids equal to the events',
//!   ids strictly increasing, valid events, zero unused slots, block checksum, chained
//!   checksum;
//! - event ids keep increasing from block to block and segment to segment;
//! - a sealed header's `block_count` blocks are all there, and its totals match them;
//! - an open header (the writer crashed before sealing) is read block by block up to
//!   its first empty slot, instead of being dropped whole as the C++ recorder does;
//! - an open segment may be followed by later segments only when every one of its block
//!   slots holds a valid block (the C++ recorder seals a rotated segment late, so a
//!   crash can leave a full segment open behind the next one), or when everything after
//!   it is an empty open segment: the C++ recorder's preparer creates up to three ahead
//!   of need, preallocation that holds no data. An empty open segment followed by one
//!   holding data is a gap, and an open segment that is neither full nor followed only
//!   by empty ones has lost blocks: both are damage.
//!
//! # Modes
//!
//! [`Mode::Strict`] stops at the first problem: what it yielded is the longest valid
//! prefix of the log, the only thing to rebuild state from. [`Mode::Diagnostic`] skips
//! a bad block, resynchronises on the next block that is valid on its own and whose ids
//! come after the last accepted one, and reports every gap; it is for salvage and
//! forensics, never for rebuilding state.
//!
//! # Torn tail or damage
//!
//! After a problem, replay looks for valid data beyond it: a block that verifies on its
//! own, with ids greater than the last accepted id. None means a torn tail, as a crash
//! leaves ([`Status::Truncated`]); some means damage in the middle of the log
//! ([`Status::Corrupt`]). Stale blocks from a reused file carry older ids and so never
//! count as valid data.
//!
//! # The durable watermark
//!
//! A log fswal wrote carries checkpoint records saying which event the last sync made
//! durable, and where its block is ([`crate::watermark`]). When everything present
//! verifies but the valid data ends before that event, replay reports
//! [`Reason::DurableDataMissing`] (truncated): a lost or misdirected write, or a
//! removed segment, that would otherwise look like a clean end. In strict mode it also
//! checks that the block the record names is where it says, with the chained checksum
//! it records; another block there, or none, is [`Reason::WatermarkMismatch`]
//! (corrupt): the acknowledged history was replaced, even if ids still climb.
//! Diagnostic mode, which salvages every valid block, does not check the place.

use zerocopy::IntoBytes;

mod resync;

use resync::{Found, Scan, scan_slots};

use crate::block::Block;
use crate::block_header::BlockHeader;
use crate::device::BlockDevice;
use crate::error::Error;
use crate::event::RequestEvent;
use crate::issue::{Issue, Reason, Status};
use crate::limits::{
    BLOCK_HEADER_SIZE_BYTES, BLOCK_SIZE_BYTES, SEGMENT_BLOCKS_MAX, SEGMENT_HEADER_SIZE_BYTES,
    block_offset_bytes, slot_bytes_present, slots_in,
};
use crate::segment_header::{HeaderState, SealedTotals, SegmentHeader};
use crate::store::SegmentStore;
use crate::watermark::{Watermark, WatermarkCheck};

/// How replay reacts to a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Stop at the first problem (point-in-time recovery).
    Strict,
    /// Skip bad blocks, resynchronise, report every gap. Never rebuild state from this.
    Diagnostic,
}

/// A segment replay has opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// Its index.
    pub index: u32,
    /// Its header as read.
    pub header: SegmentHeader,
    /// Open or sealed; `None` when the header is damaged (diagnostic mode only).
    pub state: Option<HeaderState>,
    /// Whole block slots the segment holds.
    pub slots: u32,
}

/// A verified block's events.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct BlockView<'a> {
    /// Index of its segment.
    pub segment: u32,
    /// Its slot in the segment.
    pub slot: u32,
    /// Its events, in order (after a seek, only those at or after the target id).
    pub events: &'a [RequestEvent],
}

/// One step of replay.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Step<'a> {
    /// A segment starts.
    Segment(SegmentInfo),
    /// A verified block.
    Block(BlockView<'a>),
    /// A problem. In strict mode it is the last step.
    Issue(Issue),
}

/// Where a log ends: what a writer needs to continue it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tail {
    /// Index of the last segment holding valid data (or the last segment opened).
    pub segment: u32,
    /// Its header.
    pub header: SegmentHeader,
    /// Whether that segment is sealed.
    pub sealed: bool,
    /// Whole block slots the segment holds.
    pub slots: u32,
    /// The first slot after its last valid block.
    pub next_slot: u32,
    /// Chained checksum of its last valid block (0 when it has none).
    pub chain: u64,
    /// Events in its valid blocks.
    pub event_count: u32,
    /// Id of its first event (0 when it has none).
    pub first_event_id: u64,
    /// Id of its last event (0 when it has none).
    pub last_event_id: u64,
}

/// What replay found, so far or in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// `Ok`, or whether valid data follows the first problem.
    pub status: Status,
    /// Segments opened.
    pub segments: u32,
    /// Verified blocks.
    pub blocks: u64,
    /// Events in verified blocks (in diagnostic mode: salvaged).
    pub events: u64,
    /// Id of the first verified event.
    pub first_event_id: Option<u64>,
    /// Id of the last verified event.
    pub last_event_id: Option<u64>,
    /// Non-empty block slots whose events were not replayed (diagnostic mode): each
    /// damaged block, and every non-blank slot the resynchronising scan passed over
    /// after it. 0 in strict mode, which stops at the first problem.
    pub skipped_blocks: u64,
    /// Whether the last segment opened has an open (never sealed) header.
    pub open_segment: bool,
    /// The first open segment followed by later segments that was accepted because
    /// every one of its block slots holds a valid block (sealed late, as the C++
    /// recorder does); a writer going on seals it first.
    pub late_sealed: Option<u32>,
    /// Problems found.
    pub issues: u64,
    /// The first problem found.
    pub first_issue: Option<Issue>,
    /// The end of the valid prefix of the log, `None` for a log without segments.
    pub tail: Option<Tail>,
}

impl Summary {
    pub(crate) const EMPTY: Self = Self {
        status: Status::Ok,
        segments: 0,
        blocks: 0,
        events: 0,
        first_event_id: None,
        last_event_id: None,
        skipped_blocks: 0,
        open_segment: false,
        late_sealed: None,
        issues: 0,
        first_issue: None,
        tail: None,
    };
}

/// What a slot holds.
enum SlotRead {
    /// The slot starts at or after the end of the segment.
    Beyond,
    /// Only `present_bytes` of the slot are in the segment, not all zero.
    Partial { present_bytes: u64 },
    /// Every byte present is zero.
    Blank,
    /// The block is in the buffer, to be verified.
    Data,
}

/// The segment being replayed.
struct Cursor<D> {
    index: u32,
    device: D,
    header: SegmentHeader,
    /// `None` when the header is damaged and only diagnostic mode goes on.
    state: Option<HeaderState>,
    /// Whole slots present.
    slots: u32,
    /// Slots to read: a sealed header's `block_count`, or every slot (a trailing
    /// partial slot included) of an open or damaged one.
    limit: u32,
    next_slot: u32,
    /// Chained checksum of the last accepted block; `None` right after a resync, when
    /// the link cannot be checked.
    chain: Option<u64>,
    blocks: u32,
    events: u32,
    first_event_id: u64,
    last_event_id: u64,
    /// Whether every block from slot 0 on was accepted, so that a sealed header's
    /// totals can be compared with them.
    complete: bool,
}

impl<D> Cursor<D> {
    fn sealed(&self) -> Option<&SealedTotals> {
        match &self.state {
            Some(HeaderState::Sealed(t)) => Some(t),
            _ => None,
        }
    }

    fn tail(&self) -> Tail {
        Tail {
            segment: self.index,
            header: self.header,
            sealed: self.sealed().is_some(),
            slots: self.slots,
            next_slot: self.next_slot,
            chain: self.chain.unwrap_or(0),
            event_count: self.events,
            first_event_id: self.first_event_id,
            last_event_id: self.last_event_id,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Start,
    /// Open segment `index`, then go on from `slot` (0, or a resync or seek target).
    OpenSegment {
        index: u32,
        slot: u32,
        resync: bool,
    },
    Slot,
    EndOfSegment,
    /// Every segment was read: check the log reaches its durable watermark.
    Finish,
    Done,
}

/// Where a seek or a resync starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StartPoint {
    pub(crate) segment: u32,
    pub(crate) slot: u32,
    /// The chained checksum before `slot`, when known.
    pub(crate) chain: Option<u64>,
    /// The last event id before `slot`.
    pub(crate) last_event_id: u64,
}

/// Where the forward scan after a problem starts.
#[derive(Clone, Copy, Debug)]
enum ScanFrom {
    /// Slot `slot` of the current segment (up to a sealed header's block count, or
    /// every slot present when the header is open or damaged).
    Slot { slot: u32 },
    /// The segment after the current one.
    NextSegment,
}

/// The replay state machine over a [`SegmentStore`].
pub struct Replay<S: SegmentStore> {
    store: S,
    mode: Mode,
    state: State,
    /// The one block buffer: every block is read into it and verified in place.
    buf: Block,
    cursor: Option<Cursor<S::Device>>,
    /// Lowest and highest segment index present.
    range: (u32, u32),
    /// Last accepted event id, over the whole log.
    last_event_id: u64,
    summary: Summary,
    /// After a seek: the first event id to yield.
    skip_below: u64,
    /// After a seek: where to start instead of the first segment.
    pub(crate) start: Option<StartPoint>,
    /// An open segment that may only be followed by empty open segments (it is empty,
    /// or holds blocks without filling its slots): data after it is a gap.
    must_be_last: Option<u32>,
    /// The durable watermark the store's checkpoint records say the log reaches.
    watermark: Watermark,
    /// The watermark the caller already read, used by `begin` instead of reading it.
    preread_watermark: Option<Watermark>,
    /// Whether the log holds the watermark's block where its record says (strict mode).
    check: WatermarkCheck,
}

impl<S: SegmentStore> Replay<S> {
    /// A replay of `store` in `mode`, positioned before its first segment.
    pub fn new(store: S, mode: Mode) -> Self {
        Self {
            store,
            mode,
            state: State::Start,
            buf: Block::EMPTY,
            cursor: None,
            range: (0, 0),
            last_event_id: 0,
            summary: Summary::EMPTY,
            skip_below: 0,
            start: None,
            must_be_last: None,
            watermark: Watermark::default(),
            preread_watermark: None,
            check: WatermarkCheck::default(),
        }
    }

    /// What replay found so far; final once [`Replay::step`] returned `None`.
    #[must_use]
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The mode replay runs in.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    pub(crate) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub(crate) fn is_at_start(&self) -> bool {
        self.state == State::Start
    }

    pub(crate) fn set_skip_below(&mut self, event_id: u64) {
        self.skip_below = event_id;
    }

    /// Replays to the end, calling `on_event` for every verified event, and returns the
    /// summary. Issues are counted in the summary; the first is in `first_issue`.
    pub fn run(
        mut self,
        mut on_event: impl FnMut(&RequestEvent),
    ) -> Result<Summary, Error<S::Error>> {
        while let Some(step) = self.step()? {
            if let Step::Block(view) = step {
                view.events.iter().for_each(&mut on_event);
            }
        }
        Ok(self.summary)
    }

    /// The next step, or `None` at the end of the log (or after the first problem, in
    /// strict mode). Errors are device failures; damage is reported as a step.
    pub fn step(&mut self) -> Result<Option<Step<'_>>, Error<S::Error>> {
        // Every pass either returns a step or moves to a later state of the same
        // position (slot -> end of segment -> next segment -> done), so a handful of
        // passes always suffice; the bound turns a bug into an error, not a hang.
        for _ in 0..STEP_PASSES_MAX {
            match self.state {
                State::Done => return Ok(None),
                State::Start => self.begin()?,
                State::OpenSegment {
                    index,
                    slot,
                    resync,
                } => {
                    if index > self.range.1 {
                        self.state = State::Finish;
                        continue;
                    }
                    match self.open(index, slot, resync)? {
                        Ok(info) => {
                            self.state = State::Slot;
                            return Ok(Some(Step::Segment(info)));
                        }
                        Err((issue, from)) => return self.problem(issue, from).map(Some),
                    }
                }
                State::Slot => match self.slot()? {
                    None => {}
                    Some(SlotOutcome::Accepted { slot }) => return Ok(Some(self.accepted(slot))),
                    Some(SlotOutcome::Problem {
                        issue,
                        from,
                        occupied,
                    }) => {
                        // A damaged block's events are not replayed either: it counts
                        // with the slots the scan passes over after it.
                        if occupied && self.mode == Mode::Diagnostic {
                            self.summary.skipped_blocks += 1;
                        }
                        return self.problem(issue, from).map(Some);
                    }
                    Some(SlotOutcome::Hole(issue, found)) => {
                        return Ok(Some(self.record_problem(issue, Scan::Found(found))));
                    }
                },
                State::EndOfSegment => {
                    if let Some(issue) = self.end_of_segment() {
                        return self.problem(issue, ScanFrom::NextSegment).map(Some);
                    }
                }
                State::Finish => {
                    self.state = State::Done;
                    if let Some(issue) = self.durable_data_missing() {
                        return Ok(Some(self.record_problem(issue, Scan::END)));
                    }
                }
            }
        }
        Err(Error::LogicBug("replay made no progress"))
    }

    /// The step for a block just accepted into the buffer.
    fn accepted(&mut self, slot: u32) -> Step<'_> {
        let segment = self.cursor.as_ref().map_or(0, |c| c.index);
        let events = self.buf.used_events();
        // After a seek, events before the target are not yielded.
        let skip = events.partition_point(|e| e.event_id() < self.skip_below);
        let events = events.get(skip..).unwrap_or(&[]);
        let s = &mut self.summary;
        s.events += events.len() as u64;
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            s.first_event_id.get_or_insert(first.event_id());
            s.last_event_id = Some(last.event_id());
        }
        Step::Block(BlockView {
            segment,
            slot,
            events,
        })
    }

    /// Replays against `watermark`, which the caller read from the store's records,
    /// instead of reading them again (the writer's open reads them for itself).
    pub(crate) fn with_watermark(&mut self, watermark: Watermark) {
        self.preread_watermark = Some(watermark);
    }

    /// Lists the store, reads its durable watermark (unless it was given), and
    /// positions replay at its first segment (or the seek target).
    fn begin(&mut self) -> Result<(), Error<S::Error>> {
        self.watermark = match self.preread_watermark.take() {
            Some(watermark) => watermark,
            None => Watermark::read(&mut self.store)?,
        };
        if self.mode == Mode::Strict {
            let start = self.start.map(|p| (p.segment, p.slot));
            self.check = WatermarkCheck::new(&self.watermark, start);
        }
        let Some((first, last)) = self.store.segment_range()? else {
            self.state = State::Finish;
            return Ok(());
        };
        if first > last {
            return Err(Error::LogicBug("store reported a segment range backwards"));
        }
        self.range = (first, last);
        // Retention may have removed every segment before the first one: the log's ids
        // still go on from where its watermark's record says they stood.
        if self.start.is_none() {
            if let Some(before) = self.watermark.before_first_segment(first) {
                self.last_event_id = before;
            }
        }
        self.state = match self.start {
            Some(p) => {
                self.last_event_id = p.last_event_id;
                State::OpenSegment {
                    index: p.segment,
                    slot: p.slot,
                    resync: false,
                }
            }
            None => State::OpenSegment {
                index: first,
                slot: 0,
                resync: false,
            },
        };
        Ok(())
    }

    /// Opens segment `index` and checks its header. On a damaged header, diagnostic
    /// mode keeps a cursor so that the forward scan can look at its blocks.
    #[allow(clippy::type_complexity)]
    fn open(
        &mut self,
        index: u32,
        slot: u32,
        resync: bool,
    ) -> Result<Result<SegmentInfo, (Issue, ScanFrom)>, Error<S::Error>> {
        self.cursor = None;
        let issue = |offset_bytes, reason| Issue {
            segment: index,
            block: None,
            offset_bytes,
            reason,
        };
        let Some(mut device) = self.store.open_segment(index)? else {
            return Ok(Err((
                issue(0, Reason::MissingSegment),
                ScanFrom::NextSegment,
            )));
        };
        self.summary.segments += 1;
        let len_bytes = device.len_bytes();
        let slots = slots_in(len_bytes);
        let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
        let header_result = if len_bytes < SEGMENT_HEADER_SIZE_BYTES as u64 {
            Err(Reason::SegmentTooShort { len_bytes })
        } else {
            device.read_exact_at(0, &mut raw)?;
            SegmentHeader::read_from(&raw).check(index)
        };
        let header = SegmentHeader::read_from(&raw);
        // A partial trailing slot is read too (and must be blank) unless a sealed header
        // says how many blocks there are.
        let whole_or_partial =
            if slots < SEGMENT_BLOCKS_MAX && block_offset_bytes(slots) < len_bytes {
                slots.saturating_add(1)
            } else {
                slots
            };
        let (state, limit) = match header_result {
            Ok(HeaderState::Sealed(t)) => (Some(HeaderState::Sealed(t)), t.block_count),
            Ok(HeaderState::Open) => (Some(HeaderState::Open), whole_or_partial),
            Err(_) => (None, whole_or_partial),
        };
        let chain = if slot == 0 {
            Some(0)
        } else if resync {
            None
        } else {
            self.start.and_then(|p| p.chain)
        };
        self.cursor = Some(Cursor {
            index,
            device,
            header,
            state,
            slots,
            limit,
            next_slot: slot,
            chain,
            blocks: 0,
            events: 0,
            first_event_id: 0,
            last_event_id: 0,
            complete: slot == 0,
        });
        self.summary.open_segment = state == Some(HeaderState::Open);
        if state.is_some() && self.must_be_last.is_none() {
            // A segment with a valid header is where a writer would go on, even before
            // any of its blocks verify; empty open segments after an open one that must
            // be the last are preallocation, and the writer goes on before them.
            self.summary.tail = self.cursor.as_ref().map(Cursor::tail);
        }
        match header_result {
            Ok(HeaderState::Sealed(_)) if self.must_be_last.is_some() && !resync => {
                Ok(Err((self.gap_before(), ScanFrom::Slot { slot: 0 })))
            }
            Ok(_) => {
                if slot == 0 && !resync {
                    if let Err(issue) = self.check.segment_start(index, self.last_event_id) {
                        return Ok(Err((issue, ScanFrom::Slot { slot: 0 })));
                    }
                }
                Ok(Ok(SegmentInfo {
                    index,
                    header,
                    state,
                    slots,
                }))
            }
            Err(reason) => {
                let offset = match reason {
                    Reason::SegmentTooShort { len_bytes } => len_bytes,
                    _ => 0,
                };
                Ok(Err((issue(offset, reason), ScanFrom::Slot { slot: 0 })))
            }
        }
    }

    /// Reads and verifies the next slot of the current segment.
    fn slot(&mut self) -> Result<Option<SlotOutcome>, Error<S::Error>> {
        let Some(cur) = self.cursor.as_mut() else {
            return Err(Error::LogicBug("slot state without a segment"));
        };
        if cur.next_slot >= cur.limit {
            self.state = State::EndOfSegment;
            return Ok(None);
        }
        let slot = cur.next_slot;
        let segment = cur.index;
        let sealed = cur.sealed().copied();
        let offset_bytes = block_offset_bytes(slot);
        let issue = |reason| Issue {
            segment,
            block: Some(slot),
            offset_bytes,
            reason,
        };
        let here = ScanFrom::Slot {
            slot: slot.saturating_add(1),
        };
        // A problem at this slot; `occupied` when the slot holds bytes, a block whose
        // events are not replayed.
        let problem = |issue, occupied| {
            Ok(Some(SlotOutcome::Problem {
                issue,
                from: here,
                occupied,
            }))
        };
        match read_slot(&mut cur.device, slot, &mut self.buf)? {
            read @ (SlotRead::Beyond | SlotRead::Partial { .. }) if sealed.is_some() => {
                let declared_blocks = sealed.map_or(0, |t| t.block_count);
                let present_slots = cur.slots;
                problem(
                    Issue {
                        offset_bytes: cur.device.len_bytes(),
                        ..issue(Reason::SegmentTruncated {
                            declared_blocks,
                            present_slots,
                        })
                    },
                    matches!(read, SlotRead::Partial { .. }),
                )
            }
            SlotRead::Beyond => {
                self.state = State::EndOfSegment;
                Ok(None)
            }
            SlotRead::Partial { present_bytes } => {
                problem(issue(Reason::TruncatedBlock { present_bytes }), true)
            }
            SlotRead::Blank if sealed.is_some() => problem(issue(Reason::MissingBlock), false),
            SlotRead::Blank => {
                // The end of an open segment, unless valid data follows the empty slot in
                // the same segment. (Valid data in a later segment is judged at the end
                // of this one: an open segment may only be the last.)
                let found = scan_slots(
                    &mut cur.device,
                    segment,
                    slot.saturating_add(1),
                    cur.slots,
                    self.last_event_id,
                    &mut self.buf,
                )?;
                match found {
                    Scan::Found(found) => Ok(Some(SlotOutcome::Hole(
                        issue(Reason::HoleBeforeData),
                        found,
                    ))),
                    // Bytes after the end of an open segment that no valid block follows
                    // are past its end (an unsynced tail), not damage, and not counted.
                    Scan::End { .. } => {
                        self.state = State::EndOfSegment;
                        Ok(None)
                    }
                }
            }
            SlotRead::Data => {
                let cur = self
                    .cursor
                    .as_mut()
                    .ok_or(Error::LogicBug("cursor vanished"))?;
                if self.buf.header.is_blank() {
                    return problem(issue(Reason::TornBlock), true);
                }
                let checked = match cur.chain {
                    // Both checksums in one pass over the events.
                    Some(chain) => self.buf.verify(slot, chain, self.last_event_id),
                    None => self
                        .buf
                        .check_alone(slot)
                        .and_then(|()| self.buf.check_link(None, self.last_event_id)),
                };
                if let Err(reason) = checked {
                    return problem(issue(reason), true);
                }
                if self.must_be_last.is_some() {
                    // Data after an open segment that had to be the last one: the gap is
                    // before this block, which is valid, so the scan for where replay
                    // goes on starts at it, not after it (diagnostic replay yields it,
                    // and strict replay knows valid data follows the gap).
                    let gap = self.gap_before();
                    return Ok(Some(SlotOutcome::Problem {
                        issue: gap,
                        from: ScanFrom::Slot { slot },
                        occupied: false,
                    }));
                }
                let h = &self.buf.header;
                // A valid block, but where the watermark's record names another one: not
                // the acknowledged history, so not yielded.
                if let Err(mismatch) =
                    self.check
                        .block(segment, slot, h.chained_checksum(), h.last_event_id())
                {
                    return problem(mismatch, true);
                }
                let count = u32::from(h.event_count());
                cur.chain = Some(h.chained_checksum());
                cur.next_slot = slot.saturating_add(1);
                cur.blocks = cur.blocks.saturating_add(1);
                cur.events = cur.events.saturating_add(count);
                if cur.first_event_id == 0 {
                    cur.first_event_id = h.first_event_id();
                }
                cur.last_event_id = h.last_event_id();
                self.last_event_id = h.last_event_id();
                self.summary.blocks += 1;
                self.summary.tail = Some(cur.tail());
                Ok(Some(SlotOutcome::Accepted { slot }))
            }
        }
    }

    /// Checks a segment whose slots have all been read, and moves to the next one.
    fn end_of_segment(&mut self) -> Option<Issue> {
        let cur = self.cursor.as_ref()?;
        let index = cur.index;
        // Empty open segments after one that must be the last are not where a writer
        // goes on.
        if self.must_be_last.is_none() {
            self.summary.tail = Some(cur.tail());
        }
        self.state = State::OpenSegment {
            index: index.saturating_add(1),
            slot: 0,
            resync: false,
        };
        if index == u32::MAX {
            self.state = State::Finish;
        }
        let issue = |offset_bytes, reason| Issue {
            segment: index,
            block: None,
            offset_bytes,
            reason,
        };
        let totals = match cur.state {
            Some(HeaderState::Sealed(t)) if cur.complete => {
                let field = if cur.events != t.event_count {
                    Some(("event_count", 12))
                } else if cur.first_event_id != t.first_event_id {
                    Some(("first_event_id", 16))
                } else if cur.last_event_id != t.last_event_id {
                    Some(("last_event_id", 24))
                } else if cur.chain != Some(t.last_chained_checksum) {
                    Some(("last_chained_checksum", 56))
                } else {
                    None
                };
                field.map(|(field, at)| issue(at, Reason::HeaderDisagreesWithBlocks { field }))
            }
            Some(HeaderState::Open) if index < self.range.1 && cur.complete => {
                if cur.slots > 0 && cur.next_slot >= cur.slots {
                    // Every slot holds a valid block: sealed late. Ids must go on
                    // increasing into the next segment, as everywhere.
                    self.summary.late_sealed.get_or_insert(index);
                } else if self.must_be_last.is_none() {
                    // Empty, or not full: only empty open segments may follow.
                    self.must_be_last = Some(index);
                }
                None
            }
            Some(HeaderState::Open) if index < self.range.1 => {
                Some(issue(0, Reason::UnsealedSegmentNotLast))
            }
            _ => None,
        };
        let next_slot = cur.next_slot;
        totals.or_else(|| self.check.segment_end(index, next_slot).err())
    }

    /// The issue for data found after the open segment that had to be the last one, and
    /// so no longer has to be.
    fn gap_before(&mut self) -> Issue {
        let segment = self.must_be_last.take().unwrap_or(0);
        Issue {
            segment,
            block: None,
            offset_bytes: 0,
            reason: Reason::UnsealedSegmentNotLast,
        }
    }

    /// When everything present verified but the log ends before its durable watermark:
    /// the issue, placed where the missing data should have started; or, when it reaches
    /// the watermark's id without ever coming to the place its record names, that
    /// mismatch.
    fn durable_data_missing(&self) -> Option<Issue> {
        if self.summary.issues > 0 {
            return None;
        }
        if self.last_event_id >= self.watermark.durable_event_id {
            return self.check.unreached();
        }
        let (segment, slot) = self
            .summary
            .tail
            .map_or((0, 0), |t| (t.segment, t.next_slot));
        Some(Issue {
            segment,
            block: Some(slot),
            offset_bytes: block_offset_bytes(slot),
            reason: Reason::DurableDataMissing {
                durable_event_id: self.watermark.durable_event_id,
            },
        })
    }
}

/// What reading a slot led to.
enum SlotOutcome {
    Accepted {
        slot: u32,
    },
    /// A problem at the slot, and where the scan for valid data goes on from.
    Problem {
        issue: Issue,
        from: ScanFrom,
        /// Whether the slot holds bytes: a block whose events are not replayed.
        occupied: bool,
    },
    Hole(Issue, Found),
}

/// Reads slot `slot` into `buf` and says what it holds.
fn read_slot<D: BlockDevice>(
    device: &mut D,
    slot: u32,
    buf: &mut Block,
) -> Result<SlotRead, D::Error> {
    let offset = block_offset_bytes(slot);
    let present = slot_bytes_present(device.len_bytes(), slot);
    if present == 0 {
        return Ok(SlotRead::Beyond);
    }
    if present < BLOCK_SIZE_BYTES {
        let bytes = buf.as_mut_bytes();
        let (head, rest) = bytes.split_at_mut(present.min(bytes.len()));
        device.read_exact_at(offset, head)?;
        rest.fill(0);
        return Ok(if head.iter().all(|&b| b == 0) {
            SlotRead::Blank
        } else {
            SlotRead::Partial {
                present_bytes: present as u64,
            }
        });
    }
    device.read_exact_at(offset, buf.as_mut_bytes())?;
    if buf.header.is_blank() && buf.is_blank() {
        return Ok(SlotRead::Blank);
    }
    Ok(SlotRead::Data)
}

/// Passes of the state machine per step; see [`Replay::step`].
const STEP_PASSES_MAX: u32 = 8;

const _: () = assert!(BLOCK_HEADER_SIZE_BYTES <= BLOCK_SIZE_BYTES);

#[cfg(test)]
// Tests run on 64-bit hosts, where segment offsets fit in usize.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::vec::Vec;

    use zerocopy::IntoBytes;

    use super::*;
    use crate::block::Block;
    use crate::limits::segment_size_bytes;
    use crate::mem::MemStore;
    use crate::reference::reference_event;
    use crate::testutil::{ids, reference_log, replay, write_events};

    const SLOT: u64 = BLOCK_SIZE_BYTES as u64;

    /// Flips one bit of segment `seg` at `offset`.
    fn flip(store: &mut MemStore, seg: u32, offset: u64) {
        store
            .with_bytes_mut(seg, |b| b[offset as usize] ^= 0x10)
            .unwrap();
    }

    fn only_issue(r: &crate::testutil::Replayed) -> Issue {
        assert_eq!(r.issues.len(), 1, "{:?}", r.issues);
        r.issues[0]
    }

    #[test]
    fn empty_store_replays_nothing() {
        let r = replay(&mut MemStore::new(), Mode::Strict, None);
        assert!(r.ids.is_empty());
        assert_eq!(r.summary.status, Status::Ok);
        assert_eq!(r.summary.tail, None);
    }

    /// Flips a bit inside the first event of block `slot` of segment `seg`.
    fn damage_block(store: &mut MemStore, seg: u32, slot: u32) {
        flip(store, seg, block_offset_bytes(slot) + 64 + 100);
    }

    #[test]
    fn skipped_blocks_counts_the_damaged_block_and_the_slots_passed_over() {
        // Blocks 5, 6 and 7 damaged: block 5 is the issue, 6 and 7 are passed over by
        // the scan that resynchronises on block 8.
        let mut store = reference_log(10_000, 16, true);
        for slot in 5..=7 {
            damage_block(&mut store, 0, slot);
        }
        let d = replay(&mut store, Mode::Diagnostic, None);
        assert_eq!(d.summary.skipped_blocks, 3);
        assert_eq!(d.summary.events, 10_000 - 3 * 256);
        assert_eq!(d.summary.status, Status::Corrupt);
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.summary.skipped_blocks, 0);
    }

    #[test]
    fn skipped_blocks_counts_what_no_valid_block_follows() {
        // A torn last block: nothing valid after it, and its events are not replayed.
        let mut store = write_events((1..=3_000).map(reference_event), 16, None, false);
        damage_block(&mut store, 0, 10);
        let d = replay(&mut store, Mode::Diagnostic, None);
        assert_eq!(d.ids, ids(1..=10 * 256));
        assert_eq!(d.summary.status, Status::Truncated);
        assert_eq!(d.summary.skipped_blocks, 1);

        // The last block of a full segment damaged, then the three blocks of the open
        // segment after it: four non-blank slots, not the 16 slots of segment 1.
        let mut store = write_events((1..=5_000).map(reference_event), 16, None, false);
        damage_block(&mut store, 0, 15);
        for slot in 0..3 {
            damage_block(&mut store, 1, slot);
        }
        let d = replay(&mut store, Mode::Diagnostic, None);
        assert_eq!(d.ids, ids(1..=15 * 256));
        assert_eq!(d.summary.status, Status::Truncated);
        assert_eq!(d.summary.skipped_blocks, 4);
    }

    #[test]
    fn sealed_log_round_trips() {
        let mut store = reference_log(10_000, 16, true);
        assert_eq!(store.indices(), [0, 1, 2]);
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=10_000));
        assert_eq!(r.events[9_999], reference_event(10_000));
        let s = r.summary;
        assert_eq!(s.status, Status::Ok);
        assert_eq!((s.segments, s.blocks, s.events), (3, 40, 10_000));
        assert_eq!((s.first_event_id, s.last_event_id), (Some(1), Some(10_000)));
        assert!(!s.open_segment);
        let tail = s.tail.unwrap();
        assert_eq!((tail.segment, tail.sealed, tail.next_slot), (2, true, 8));
    }

    #[test]
    fn open_last_segment_is_valid() {
        let mut store = write_events((1..=5_000).map(reference_event), 16, Some(100), false);
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=5_000));
        assert_eq!(r.summary.status, Status::Ok);
        assert!(r.summary.open_segment);
        assert!(r.issues.is_empty());
    }

    #[test]
    fn damage_in_the_middle_stops_strict_and_is_skipped_by_diagnostic() {
        let mut store = reference_log(10_000, 16, true);
        let at = block_offset_bytes(5) + 64 + 100; // inside event 1 of block 5
        flip(&mut store, 0, at);
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=5 * 256));
        let issue = only_issue(&r);
        assert_eq!(
            (issue.segment, issue.block, issue.offset_bytes),
            (0, Some(5), block_offset_bytes(5))
        );
        assert!(matches!(issue.reason, Reason::BlockChecksumMismatch { .. }));
        assert_eq!(r.summary.status, Status::Corrupt);
        assert_eq!(r.summary.tail.unwrap().next_slot, 5);

        let d = replay(&mut store, Mode::Diagnostic, None);
        let mut want = ids(1..=5 * 256);
        want.extend(6 * 256 + 1..=10_000);
        assert_eq!(d.ids, want);
        assert_eq!(d.summary.status, Status::Corrupt);
        assert_eq!(
            d.summary.skipped_blocks, 1,
            "the bad block's events were not replayed"
        );
        assert_eq!(r.summary.skipped_blocks, 0, "strict mode skips nothing");
        assert_eq!(d.summary.events, 10_000 - 256);
        // The chain cannot be checked across the gap, and the sealed totals cannot be
        // compared: one issue only.
        assert_eq!(only_issue(&d).block, Some(5));
    }

    #[test]
    fn torn_tail_of_an_open_segment_is_truncated() {
        let mut store = write_events((1..=5_000).map(reference_event), 16, None, false);
        // Segment 1 holds 5000 - 4096 = 904 events: blocks 0..=3, the last partial? No:
        // without a sync the partial block is never written, so blocks 0..=2 are full.
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=4096 + 3 * 256));
        flip(&mut store, 1, block_offset_bytes(2) + 5_000);
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=4096 + 2 * 256));
        assert_eq!(r.summary.status, Status::Truncated);
        assert_eq!(only_issue(&r).block, Some(2));
    }

    #[test]
    fn missing_segment_is_reported_and_valid_data_after_it_makes_it_corrupt() {
        let mut store = reference_log(10_000, 16, true);
        store.remove(1).unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=4096));
        let issue = only_issue(&r);
        assert_eq!(
            (issue.segment, issue.block, issue.reason),
            (1, None, Reason::MissingSegment)
        );
        assert_eq!(r.summary.status, Status::Corrupt);

        let d = replay(&mut store, Mode::Diagnostic, None);
        let mut want = ids(1..=4096);
        want.extend(8193..=10_000);
        assert_eq!(d.ids, want);
    }

    #[test]
    fn a_log_that_ends_before_its_durable_watermark_is_truncated() {
        // The last segment removed: what is left verifies, but the checkpoint knows
        // events up to 10000 were made durable.
        let mut store = reference_log(10_000, 16, true);
        store.remove(2).unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=8192));
        let issue = only_issue(&r);
        assert_eq!(
            issue.reason,
            Reason::DurableDataMissing {
                durable_event_id: 10_000
            }
        );
        assert_eq!((issue.segment, issue.block), (1, Some(16)));
        assert_eq!(r.summary.status, Status::Truncated);
        // A log without records (the C++ recorder's) has no watermark to miss.
        let mut bare = MemStore::new();
        for i in store.indices() {
            bare.insert_image(i, store.image(i).unwrap());
        }
        assert_eq!(
            replay(&mut bare, Mode::Strict, None).summary.status,
            Status::Ok
        );
    }

    #[test]
    fn segment_in_the_wrong_file_is_refused() {
        let mut store = reference_log(10_000, 16, true);
        let seg0 = store.image(0).unwrap();
        store.insert_image(1, seg0);
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=4096));
        assert_eq!(
            only_issue(&r).reason,
            Reason::SegmentIndexMismatch {
                found: 0,
                expected: 1
            }
        );
    }

    #[test]
    fn stale_block_from_a_reused_file_is_not_valid_data() {
        // Segment 1 is open, and its slot 0 holds block 0 of segment 0: a valid chain of
        // its own (block 0 restarts the chain), but old ids.
        let store = reference_log(4096, 16, true);
        let mut log = crate::writer::WalWriter::open(
            store,
            crate::testutil::ticking_clock(),
            crate::writer::WriterConfig::with_blocks(16),
        )
        .unwrap()
        .0;
        log.append(&reference_event(4097)).unwrap();
        log.sync().unwrap();
        let mut store = log.into_store();
        let stale = store.image(0).unwrap()[64..64 + BLOCK_SIZE_BYTES].to_vec();
        store
            .with_bytes_mut(1, |b| b[64..64 + BLOCK_SIZE_BYTES].copy_from_slice(&stale))
            .unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=4096));
        assert_eq!(
            only_issue(&r).reason,
            Reason::EventIdRegression {
                first: 1,
                previous: 4096
            }
        );
        assert_eq!(r.summary.status, Status::Truncated);
        let d = replay(&mut store, Mode::Diagnostic, None);
        assert_eq!(
            d.ids,
            ids(1..=4096),
            "diagnostic mode must not resync on stale blocks"
        );
    }

    #[test]
    fn hole_in_an_open_segment_is_damage() {
        let mut store = write_events((1..=3_000).map(reference_event), 16, None, false);
        store
            .with_bytes_mut(0, |b| {
                let at = block_offset_bytes(3) as usize;
                b[at..at + BLOCK_SIZE_BYTES].fill(0);
            })
            .unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=768));
        assert_eq!(only_issue(&r).reason, Reason::HoleBeforeData);
        assert_eq!(r.summary.status, Status::Corrupt);
        let d = replay(&mut store, Mode::Diagnostic, None);
        let mut want = ids(1..=768);
        want.extend(1025..=11 * 256);
        assert_eq!(d.ids, want);
    }

    #[test]
    fn torn_block_with_a_blank_header() {
        let mut store = write_events((1..=3_000).map(reference_event), 16, None, false);
        store
            .with_bytes_mut(0, |b| {
                let at = block_offset_bytes(10) as usize;
                b[at..at + 64].fill(0);
            })
            .unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=2560));
        assert_eq!(only_issue(&r).reason, Reason::TornBlock);
        assert_eq!(r.summary.status, Status::Truncated);
    }

    #[test]
    fn sealed_header_totals_must_match_the_blocks() {
        let mut store = reference_log(10_000, 16, true);
        store
            .with_bytes_mut(1, |b| {
                let mut raw = [0u8; 64];
                raw.copy_from_slice(&b[..64]);
                let h = SegmentHeader::read_from(&raw);
                let forged = h.sealed(
                    &SealedTotals {
                        event_count: 4095,
                        ..match h.check(1).unwrap() {
                            HeaderState::Sealed(t) => t,
                            HeaderState::Open => unreachable!(),
                        }
                    },
                    h.closed_ts_ns(),
                );
                b[..64].copy_from_slice(forged.as_bytes());
            })
            .unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=8192), "the blocks themselves verify");
        let issue = only_issue(&r);
        assert_eq!(
            (issue.segment, issue.offset_bytes, issue.reason),
            (
                1,
                12,
                Reason::HeaderDisagreesWithBlocks {
                    field: "event_count"
                }
            )
        );
        assert_eq!(r.summary.status, Status::Corrupt);
    }

    #[test]
    fn sealed_segment_missing_a_block() {
        let mut store = reference_log(10_000, 16, true);
        store
            .with_bytes_mut(2, |b| {
                let at = block_offset_bytes(7) as usize;
                b[at..at + BLOCK_SIZE_BYTES].fill(0);
            })
            .unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=8192 + 7 * 256));
        assert_eq!(only_issue(&r).reason, Reason::MissingBlock);
        assert_eq!(r.summary.status, Status::Truncated);
    }

    #[test]
    fn truncated_files() {
        // A sealed segment cut inside block 5.
        let mut store = reference_log(10_000, 16, true);
        store
            .set_len(2, block_offset_bytes(5) + 1000)
            .unwrap()
            .unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=8192 + 5 * 256));
        let issue = only_issue(&r);
        assert_eq!(
            issue.reason,
            Reason::SegmentTruncated {
                declared_blocks: 8,
                present_slots: 5
            }
        );
        assert_eq!(issue.offset_bytes, block_offset_bytes(5) + 1000);
        assert_eq!(r.summary.status, Status::Truncated);

        // An open segment cut inside block 2.
        let mut store = write_events((1..=3_000).map(reference_event), 16, None, false);
        store
            .set_len(0, block_offset_bytes(2) + 5)
            .unwrap()
            .unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=512));
        assert_eq!(
            only_issue(&r).reason,
            Reason::TruncatedBlock { present_bytes: 5 }
        );
        assert_eq!(r.summary.status, Status::Truncated);

        // Shorter than a header.
        store.set_len(0, 10).unwrap().unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert!(r.ids.is_empty());
        assert_eq!(
            only_issue(&r).reason,
            Reason::SegmentTooShort { len_bytes: 10 }
        );
        assert_eq!(only_issue(&r).offset_bytes, 10);
    }

    #[test]
    fn a_full_open_segment_followed_by_another_was_sealed_late() {
        // The C++ recorder's maintainer seals a rotated segment some time after the
        // writer moved on: a crash can leave it open, every slot holding a valid block.
        let mut store = reference_log(10_000, 16, true);
        let open = SegmentHeader::new_open(1, 5);
        store
            .with_bytes_mut(1, |b| b[..64].copy_from_slice(open.as_bytes()))
            .unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=10_000));
        assert_eq!(
            (r.summary.status, r.summary.late_sealed),
            (Status::Ok, Some(1))
        );
        // Not full: blocks were lost, and data follows.
        store
            .with_bytes_mut(1, |b| {
                let at = block_offset_bytes(15) as usize;
                b[at..at + 16_448].fill(0);
            })
            .unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(
            r.ids,
            ids(1..=4096 + 15 * 256),
            "its blocks are valid and replayed"
        );
        let issue = only_issue(&r);
        assert_eq!(
            (issue.segment, issue.reason),
            (1, Reason::UnsealedSegmentNotLast)
        );
        assert_eq!(r.summary.status, Status::Corrupt);
        // Full, but the ids do not go on increasing into the next segment.
        let mut store = reference_log(10_000, 16, true);
        store
            .with_bytes_mut(1, |b| b[..64].copy_from_slice(open.as_bytes()))
            .unwrap();
        let stale = store.image(0).unwrap();
        let mut seg2 = stale.clone();
        seg2[4..8].copy_from_slice(&2u32.to_le_bytes());
        let renumbered = {
            let mut raw = [0u8; 64];
            raw.copy_from_slice(&seg2[..64]);
            let h = SegmentHeader::read_from(&raw);
            let Ok(HeaderState::Sealed(t)) = SegmentHeader::read_from(&{
                let mut r0 = [0u8; 64];
                r0.copy_from_slice(&stale[..64]);
                r0
            })
            .check(0) else {
                panic!("sealed");
            };
            SegmentHeader::new_open(2, h.created_ts_ns()).sealed(&t, h.closed_ts_ns())
        };
        seg2[..64].copy_from_slice(renumbered.as_bytes());
        store.insert_image(2, seg2);
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=8192));
        assert!(matches!(
            only_issue(&r).reason,
            Reason::EventIdRegression { .. }
        ));
    }

    #[test]
    fn empty_open_segments_after_the_last_one_with_data_are_preallocation() {
        // The C++ recorder's preparer creates up to three segments ahead of need, open
        // and empty, their first byte zeroed.
        let mut store = write_events((1..=5000).map(reference_event), 16, Some(5000), false);
        for index in 2..=4 {
            let mut image = std::vec![0u8; segment_size_bytes(16) as usize];
            image[..64].copy_from_slice(SegmentHeader::new_open(index, 9).as_bytes());
            image[0] = 0;
            store.insert_image(index, image);
        }
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!((r.ids, r.summary.status), (ids(1..=5000), Status::Ok));
        let tail = r.summary.tail.unwrap();
        assert_eq!(
            (tail.segment, tail.next_slot, tail.sealed),
            (1, 4, false),
            "a writer goes on after the last event, before the preallocated segments"
        );
        assert!(r.summary.open_segment);
        // An empty open segment before one holding data is a gap.
        let mut gap = reference_log(3 * 4096, 16, true);
        let mut image = std::vec![0u8; segment_size_bytes(16) as usize];
        image[..64].copy_from_slice(SegmentHeader::new_open(1, 9).as_bytes());
        gap.insert_image(1, image);
        let r = replay(&mut gap, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=4096));
        let issue = only_issue(&r);
        assert_eq!(
            (issue.segment, issue.reason),
            (1, Reason::UnsealedSegmentNotLast)
        );
        assert_eq!(r.summary.status, Status::Corrupt);
        let d = replay(&mut gap, Mode::Diagnostic, None);
        assert_eq!(d.ids.len(), 4096 * 2, "the data after the gap is salvaged");
        // The same after a sealed segment: its first empty open successor is the tail.
        let mut sealed = reference_log(4096, 16, true);
        for index in 1..=3 {
            let mut image = std::vec![0u8; segment_size_bytes(16) as usize];
            image[..64].copy_from_slice(SegmentHeader::new_open(index, 9).as_bytes());
            sealed.insert_image(index, image);
        }
        let r = replay(&mut sealed, Mode::Strict, None);
        assert_eq!(r.summary.status, Status::Ok);
        let tail = r.summary.tail.unwrap();
        assert_eq!((tail.segment, tail.next_slot, tail.sealed), (1, 0, false));
    }

    #[test]
    fn a_valid_block_after_an_empty_open_segment_is_salvaged_not_skipped() {
        // Segment 0 sealed, segment 1 open and empty, segment 2 open and holding events
        // after segment 0's: the gap is segment 1, and segment 2's first block is valid.
        let mut store = reference_log(4096, 16, true);
        let mut empty = std::vec![0u8; segment_size_bytes(16) as usize];
        empty[..64].copy_from_slice(SegmentHeader::new_open(1, 9).as_bytes());
        store.insert_image(1, empty);
        let later = write_events((4097..=4700).map(reference_event), 16, Some(604), false);
        let mut image = later.image(0).unwrap();
        image[..64].copy_from_slice(SegmentHeader::new_open(2, 9).as_bytes());
        store.insert_image(2, image);

        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=4096));
        let issue = only_issue(&r);
        assert_eq!(
            (issue.segment, issue.reason),
            (1, Reason::UnsealedSegmentNotLast)
        );
        assert_eq!(
            r.summary.status,
            Status::Corrupt,
            "valid data follows the gap"
        );
        let d = replay(&mut store, Mode::Diagnostic, None);
        assert_eq!(
            (d.ids.len(), d.ids.first(), d.ids.last()),
            (4700, Some(&1), Some(&4700)),
            "segment 2's first block is not lost"
        );
        assert_eq!(d.ids, ids(1..=4700));
        assert_eq!(d.summary.skipped_blocks, 0);
    }

    #[test]
    fn open_segment_ending_early_then_another_segment_is_unsealed_not_a_hole() {
        // Segment 0 is open, with 3 blocks and blank slots after them; segment 1 follows
        // with ids after them. The blank slots are the end of segment 0, which was never
        // sealed: that, not a hole, is the problem.
        let mut store = write_events((1..=768).map(reference_event), 16, Some(768), false);
        let sealed = write_events((769..=1000).map(reference_event), 16, None, true);
        let mut image = sealed.image(0).unwrap();
        let mut raw = [0u8; 64];
        raw.copy_from_slice(&image[..64]);
        let h = SegmentHeader::read_from(&raw);
        let Ok(HeaderState::Sealed(totals)) = h.check(0) else {
            panic!("segment 0 of a closed log is sealed");
        };
        let renumbered =
            SegmentHeader::new_open(1, h.created_ts_ns()).sealed(&totals, h.closed_ts_ns());
        image[..64].copy_from_slice(renumbered.as_bytes());
        store.insert_image(1, image);

        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=768));
        assert_eq!(only_issue(&r).reason, Reason::UnsealedSegmentNotLast);
        assert_eq!(r.summary.status, Status::Corrupt);
        let d = replay(&mut store, Mode::Diagnostic, None);
        assert_eq!(d.ids, ids(1..=1000));
    }

    #[test]
    fn damaged_header_in_diagnostic_mode_still_salvages_its_blocks() {
        let mut store = reference_log(10_000, 16, true);
        flip(&mut store, 1, 20);
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=4096));
        assert!(matches!(
            only_issue(&r).reason,
            Reason::SegmentHeaderChecksumMismatch { .. }
        ));
        let d = replay(&mut store, Mode::Diagnostic, None);
        assert_eq!(d.ids, ids(1..=10_000));
        assert_eq!(d.summary.status, Status::Corrupt);
    }

    #[test]
    fn not_a_segment() {
        let mut store = MemStore::new();
        store.insert_image(
            0,
            b"hello, this is not a WAL segment at all, just some text....... ".repeat(3),
        );
        let r = replay(&mut store, Mode::Strict, None);
        assert!(matches!(only_issue(&r).reason, Reason::BadMagic { .. }));
        assert_eq!(r.summary.status, Status::Truncated);
    }

    #[test]
    fn partial_trailing_slot_of_zeros_is_not_a_problem() {
        let mut store = write_events((1..=300).map(reference_event), 16, Some(300), false);
        let len = segment_size_bytes(16);
        store.set_len(0, len - 100).unwrap().unwrap();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=300));
        assert_eq!(r.summary.status, Status::Ok);
    }

    #[test]
    fn seek_finds_every_position() {
        let mut store = write_events(
            (1..=10_000).map(|i| reference_event(3 * i)),
            16,
            Some(1000),
            false,
        );
        for target in [
            0,
            1,
            3,
            4,
            767,
            768,
            769,
            3 * 4096,
            3 * 4097,
            29_999,
            30_000,
        ] {
            let r = replay(&mut store, Mode::Strict, Some(target));
            let want: Vec<u64> = (1..=10_000)
                .map(|i| 3 * i)
                .filter(|&id| id >= target)
                .collect();
            assert_eq!(r.ids, want, "seek {target}");
            assert_eq!(r.summary.status, Status::Ok);
        }
        let r = replay(&mut store, Mode::Strict, Some(30_001));
        assert!(r.ids.is_empty());
    }

    #[test]
    fn seek_does_not_read_earlier_blocks() {
        // Damage before the target is not seen by a seek; after it, it is.
        let mut store = reference_log(10_000, 16, true);
        flip(&mut store, 0, block_offset_bytes(3) + 200);
        let r = replay(&mut store, Mode::Strict, Some(9_000));
        assert_eq!(r.ids, ids(9_000..=10_000));
        assert_eq!(r.summary.status, Status::Ok);
        let r = replay(&mut store, Mode::Strict, Some(500));
        assert_eq!(r.ids, ids(500..=768));
        assert_eq!(r.summary.status, Status::Corrupt);
    }

    #[test]
    fn no_single_bit_flip_yields_a_wrong_event() {
        // One flipped bit at a time: in every header byte (where the structure lives)
        // and in a spread of payload bytes. Replay may stop early, but what it yields is
        // always a prefix of what was written (strict) or a subset of it (diagnostic),
        // and `Ok` means nothing was lost.
        let original = write_events((1..=600).map(reference_event), 16, Some(100), false);
        let all = replay(&mut original.snapshot(), Mode::Strict, None).events;
        let image = original.image(0).unwrap();
        let used_slots = 8; // six partial blocks, then empty slots
        let mut offsets: Vec<usize> = (0..64).collect();
        for slot in 0..used_slots {
            let start = block_offset_bytes(slot) as usize;
            offsets.extend(start..start + 64);
            offsets.extend((start + 64..start + BLOCK_SIZE_BYTES).step_by(97));
        }
        for offset in offsets {
            for mode in [Mode::Strict, Mode::Diagnostic] {
                let mut store = MemStore::new();
                store.insert_image(0, image.clone());
                store.with_bytes_mut(0, |b| b[offset] ^= 0x04).unwrap();
                let r = replay(&mut store, mode, None);
                if mode == Mode::Strict {
                    assert_eq!(r.events[..], all[..r.events.len()], "flip at {offset}");
                } else {
                    assert!(r.events.iter().all(|e| all.contains(e)), "flip at {offset}");
                }
                if r.summary.status == Status::Ok {
                    assert_eq!(
                        r.events.len(),
                        all.len(),
                        "flip at {offset} lost events silently"
                    );
                }
            }
        }
    }

    #[test]
    fn block_buffer_is_one_block() {
        assert_eq!(Block::EMPTY.as_bytes().len() as u64, SLOT);
    }
}
