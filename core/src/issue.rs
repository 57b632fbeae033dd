//! What replay reports about damage: an [`Issue`] says where, its [`Reason`] says what.
//!
//! An issue is not an error: the device answered, but what it holds breaks a rule of
//! the format. Errors (the device failed, the caller misused an API) are in
//! [`crate::error`].

use core::fmt;

use crate::checkpoint::CheckpointKind;
use crate::event::EventDefect;

/// Which rule a segment or block breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A segment index between the first and the last present segment has no file.
    MissingSegment,
    /// The segment is shorter than its 64-byte header.
    SegmentTooShort {
        /// Bytes in the segment.
        len_bytes: u64,
    },
    /// The magic is not `0x4653` ("FS"): this is not a FlashStrike segment.
    BadMagic {
        /// The magic found.
        found: u16,
    },
    /// The format version is not 1.
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// The header size byte is not 64.
    BadHeaderSize {
        /// The header size found.
        found: u8,
    },
    /// The header's `segment_index` is not the index in the segment's file name.
    SegmentIndexMismatch {
        /// The index the header holds.
        found: u32,
        /// The index the segment's name gives.
        expected: u32,
    },
    /// The segment header checksum does not match its bytes.
    SegmentHeaderChecksumMismatch {
        /// Checksum stored in the header.
        stored: u64,
        /// Checksum computed over the header.
        computed: u64,
    },
    /// A sealed header whose fields contradict each other.
    InconsistentSegmentHeader {
        /// The rule broken.
        rule: &'static str,
    },
    /// A sealed header counts more blocks than the segment has slots for.
    SegmentTruncated {
        /// Blocks the header declares.
        declared_blocks: u32,
        /// Whole block slots the segment holds.
        present_slots: u32,
    },
    /// A sealed header's totals disagree with the blocks that follow it.
    HeaderDisagreesWithBlocks {
        /// The header field that disagrees.
        field: &'static str,
    },
    /// A segment that is not the last one was never sealed: where it ended is unknown.
    UnsealedSegmentNotLast,
    /// A block that a sealed header declares is missing (the slot is empty).
    MissingBlock,
    /// The segment ends inside this block slot.
    TruncatedBlock {
        /// Bytes of the slot present.
        present_bytes: u64,
    },
    /// The block header is blank but the event area is not: a torn write.
    TornBlock,
    /// An empty slot in an open segment is followed by a valid block: a hole.
    HoleBeforeData,
    /// An open segment after the end of the log, with no valid block (what the C++
    /// recorder prepares ahead of need), holds non-zero bytes here: recovery would remove
    /// a prepared segment, but never one that may hold the only copy of something.
    PreparedSegmentNotEmpty,
    /// The block header checksum does not match its bytes.
    BlockHeaderChecksumMismatch {
        /// Checksum stored in the header.
        stored: u64,
        /// Checksum computed over the header.
        computed: u64,
    },
    /// `event_count` is 0 or more than 256.
    BadEventCount {
        /// The count found.
        count: u16,
    },
    /// `first_event_id` is 0.
    ZeroFirstEventId,
    /// `first_event_id > last_event_id`.
    FirstAfterLast {
        /// The block's first event id.
        first: u64,
        /// The block's last event id.
        last: u64,
    },
    /// `block_index` is not the slot the block sits in.
    BlockIndexMismatch {
        /// The index the header holds.
        found: u32,
    },
    /// The block header's padding is not zero.
    BlockHeaderPaddingNotZero,
    /// The header's `first_event_id` is not the first event's id.
    FirstIdMismatch {
        /// Id in the header.
        header: u64,
        /// Id of the first event.
        event: u64,
    },
    /// The header's `last_event_id` is not the last event's id.
    LastIdMismatch {
        /// Id in the header.
        header: u64,
        /// Id of the last event.
        event: u64,
    },
    /// Event ids do not strictly increase inside the block.
    EventIdNotIncreasing {
        /// Position of the offending event in the block.
        position: u16,
        /// Its id.
        event_id: u64,
        /// The id before it.
        previous: u64,
    },
    /// An event's bytes are not a valid event.
    InvalidEvent {
        /// Position of the event in the block.
        position: u16,
        /// What is wrong with it.
        defect: EventDefect,
    },
    /// An unused event slot (at or after `event_count`) is not zero.
    UnusedSlotNotZero {
        /// Position of the first non-zero unused slot.
        position: u16,
    },
    /// The block checksum does not match the events.
    BlockChecksumMismatch {
        /// Checksum stored in the header.
        stored: u64,
        /// Checksum computed over the events.
        computed: u64,
    },
    /// The chained checksum does not link this block to the previous one.
    ChainedChecksumMismatch {
        /// Checksum stored in the header.
        stored: u64,
        /// Checksum computed from the previous block's chained checksum.
        computed: u64,
    },
    /// The log ends before events that a sync made durable: its checkpoint or sync mark
    /// records `durable_event_id`, and the valid data stops earlier. Lost durable data
    /// (a removed segment, a lost or misdirected write), never a torn tail.
    DurableDataMissing {
        /// The last event the checkpoint records as durable.
        durable_event_id: u64,
    },
    /// A checkpoint record holding the durable watermark names this place for the block
    /// ending with event `durable_event_id` (chained checksum `expected_chain`), and the
    /// log holds another block there, or none: the acknowledged history was replaced
    /// (segments deleted and rewritten behind fswal's back), even where ids still climb.
    WatermarkMismatch {
        /// Which record.
        kind: CheckpointKind,
        /// The last event it records as durable.
        durable_event_id: u64,
        /// The chained checksum it records for that event's block (0 for a record at
        /// the start of a segment).
        expected_chain: u64,
        /// The chained checksum of the block the log holds there, if any.
        found_chain: Option<u64>,
        /// The last event id of the block the log holds there, if any.
        found_event_id: Option<u64>,
    },
    /// The block's first event id is not greater than the last id before it: ids must
    /// keep increasing across blocks and segments (a stale block from a reused file
    /// has a valid chain of its own but older ids).
    EventIdRegression {
        /// The block's first event id.
        first: u64,
        /// The last event id before the block.
        previous: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::MissingSegment => f.write_str("segment file is missing"),
            Self::SegmentTooShort { len_bytes } => write!(
                f,
                "segment is {len_bytes} bytes, shorter than its 64-byte header"
            ),
            Self::BadMagic { found } => write!(
                f,
                "bad magic 0x{found:04x} (want 0x4653): not a FlashStrike WAL segment"
            ),
            Self::UnsupportedVersion { found } => {
                write!(f, "unsupported format version {found} (want 1)")
            }
            Self::BadHeaderSize { found } => write!(f, "header size {found} (want 64)"),
            Self::SegmentIndexMismatch { found, expected } => write!(
                f,
                "header says segment {found} but the file is segment {expected}"
            ),
            Self::SegmentHeaderChecksumMismatch { stored, computed } => write!(
                f,
                "segment header checksum mismatch (stored 0x{stored:016x}, computed 0x{computed:016x})"
            ),
            Self::InconsistentSegmentHeader { rule } => {
                write!(f, "sealed segment header is inconsistent: {rule}")
            }
            Self::SegmentTruncated {
                declared_blocks,
                present_slots,
            } => write!(
                f,
                "header declares {declared_blocks} blocks but the segment holds only {present_slots} block slots"
            ),
            Self::HeaderDisagreesWithBlocks { field } => {
                write!(f, "sealed header's {field} disagrees with its blocks")
            }
            Self::UnsealedSegmentNotLast => {
                f.write_str("segment was never sealed but a later segment follows it")
            }
            Self::MissingBlock => f.write_str("block declared by the sealed header is missing"),
            Self::TruncatedBlock { present_bytes } => write!(
                f,
                "segment ends inside this block ({present_bytes} of 16448 bytes present)"
            ),
            Self::TornBlock => f.write_str("torn block: blank header over non-zero events"),
            Self::HoleBeforeData => {
                f.write_str("empty block slot followed by valid blocks (a hole in the log)")
            }
            Self::PreparedSegmentNotEmpty => f.write_str(
                "an empty open segment after the end of the log (prepared ahead of need) holds non-zero bytes here; it is not removed",
            ),
            Self::BlockHeaderChecksumMismatch { stored, computed } => write!(
                f,
                "block header checksum mismatch (stored 0x{stored:016x}, computed 0x{computed:016x})"
            ),
            Self::BadEventCount { count } => write!(f, "event count {count} is not in 1..=256"),
            Self::ZeroFirstEventId => f.write_str("first event id is 0"),
            Self::FirstAfterLast { first, last } => {
                write!(
                    f,
                    "first event id {first} is greater than last event id {last}"
                )
            }
            Self::BlockIndexMismatch { found } => {
                write!(f, "block index {found} does not match its slot")
            }
            Self::BlockHeaderPaddingNotZero => f.write_str("block header padding is not zero"),
            Self::FirstIdMismatch { header, event } => write!(
                f,
                "header's first event id {header} but the first event is {event}"
            ),
            Self::LastIdMismatch { header, event } => write!(
                f,
                "header's last event id {header} but the last event is {event}"
            ),
            Self::EventIdNotIncreasing {
                position,
                event_id,
                previous,
            } => write!(
                f,
                "event {position} has id {event_id}, not greater than the previous id {previous}"
            ),
            Self::InvalidEvent { position, defect } => write!(f, "event {position}: {defect}"),
            Self::UnusedSlotNotZero { position } => {
                write!(f, "unused event slot {position} is not zero")
            }
            Self::BlockChecksumMismatch { stored, computed } => write!(
                f,
                "block checksum mismatch (stored 0x{stored:016x}, computed 0x{computed:016x})"
            ),
            Self::ChainedChecksumMismatch { stored, computed } => write!(
                f,
                "chained checksum mismatch (stored 0x{stored:016x}, computed 0x{computed:016x})"
            ),
            Self::DurableDataMissing { durable_event_id } => write!(
                f,
                "the log ends before event {durable_event_id}, which a sync made durable (checkpoint)"
            ),
            Self::WatermarkMismatch {
                kind,
                durable_event_id,
                expected_chain,
                found_chain,
                found_event_id,
            } => {
                let record = match kind {
                    CheckpointKind::Sealed => "the sealed checkpoint",
                    CheckpointKind::Synced => "the sync mark",
                };
                write!(
                    f,
                    "{record} records event {durable_event_id} as durable in the block here (chained checksum 0x{expected_chain:016x}), but the log holds "
                )?;
                match (found_chain, found_event_id) {
                    (Some(chain), Some(last)) => write!(
                        f,
                        "a block ending at event {last} with chained checksum 0x{chain:016x}"
                    )?,
                    _ => f.write_str("no such block")?,
                }
                f.write_str(" there: acknowledged history was replaced")
            }
            Self::EventIdRegression { first, previous } => write!(
                f,
                "block starts at event id {first}, not after the previous event id {previous}"
            ),
        }
    }
}

/// Where a problem was found, and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Issue {
    /// Index of the segment.
    pub segment: u32,
    /// Block slot inside the segment, or `None` for a problem with the segment itself.
    pub block: Option<u32>,
    /// Byte offset of the problem inside the segment.
    pub offset_bytes: u64,
    /// What is wrong.
    pub reason: Reason,
}

impl Issue {
    /// The issue `reason` at `offset_bytes` of segment `segment`, in block slot
    /// `block` (`None`: the segment itself).
    #[must_use]
    pub const fn new(segment: u32, block: Option<u32>, offset_bytes: u64, reason: Reason) -> Self {
        Self {
            segment,
            block,
            offset_bytes,
            reason,
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {} offset {}", self.segment, self.offset_bytes)?;
        if let Some(block) = self.block {
            write!(f, " (block {block})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The state of a whole log after replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Everything present is valid. An open (unsealed) last segment whose blocks verify
    /// up to its first empty slot is valid.
    Ok,
    /// A problem was found and nothing valid follows it: a torn tail, as a crash leaves.
    Truncated,
    /// A problem was found and valid data follows it: damage in the middle of the log.
    Corrupt,
}

impl Status {
    /// The name `fswal verify --json` prints: `ok`, `truncated` or `corrupt`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Truncated => "truncated",
            Self::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
