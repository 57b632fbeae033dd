//! Sizes and bounds of the v1 format, and the limits fswal puts on everything it reads.
//!
//! Every loop over disk content is bounded by one of these constants, and every
//! relation between them that the code relies on is asserted at compile time below,
//! so a change to one of them that breaks an assumption fails the build.

/// Bytes in one `RequestEvent`.
pub const EVENT_SIZE_BYTES: usize = 64;

/// Event slots in one block (`WAL_BLOCK_EVENTS` in the C++ recorder).
pub const BLOCK_EVENTS_MAX: usize = 256;

/// Bytes in a block header.
pub const BLOCK_HEADER_SIZE_BYTES: usize = 64;

/// Bytes in a block: its header and all of its event slots, used or not.
pub const BLOCK_SIZE_BYTES: usize = BLOCK_HEADER_SIZE_BYTES + BLOCK_EVENTS_MAX * EVENT_SIZE_BYTES;

/// Bytes in a segment header, at offset 0 of every segment.
pub const SEGMENT_HEADER_SIZE_BYTES: usize = 64;

/// The fewest block slots a segment may be preallocated with (64 KiB of blocks).
pub const SEGMENT_BLOCKS_MIN: u32 = 16;

/// The most block slots a segment may hold (about 8 GiB).
pub const SEGMENT_BLOCKS_MAX: u32 = 524_288;

/// The default number of block slots in a segment written by fswal (about 64 MiB).
pub const SEGMENT_BLOCKS_DEFAULT: u32 = 4_096;

/// The most block slots a segment may have for the C++ recorder to read it: its reader
/// computes segment sizes in 32 bits and silently misreads larger ones (docs/FORMAT.md,
/// "What the C++ recorder leaves on disk"). fswal itself reads up to
/// [`SEGMENT_BLOCKS_MAX`]; a writer makes larger segments only when told the log will
/// never be read by the C++ recorder.
pub const CPP_READER_BLOCKS_MAX: u32 = 261_120;

/// The largest segment index: file names carry it as 8 decimal digits.
pub const SEGMENT_INDEX_MAX: u32 = 99_999_999;

/// Bytes in the largest segment fswal reads or writes.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = segment_size_bytes(SEGMENT_BLOCKS_MAX);

/// The 64-byte alignment of every on-disk structure (one cache line).
pub const STRUCT_ALIGN_BYTES: usize = 64;

/// Byte offset of block slot `slot` inside its segment.
///
/// 64-bit arithmetic throughout: the C++ recorder's 32-bit offset arithmetic wraps
/// for segments above 4 GiB, fswal's does not (`SEGMENT_BLOCKS_MAX` slots fit in u64
/// with room to spare, asserted below).
#[must_use]
pub const fn block_offset_bytes(slot: u32) -> u64 {
    SEGMENT_HEADER_SIZE_BYTES as u64 + slot as u64 * BLOCK_SIZE_BYTES as u64
}

/// Bytes in a segment preallocated with `blocks` block slots.
#[must_use]
pub const fn segment_size_bytes(blocks: u32) -> u64 {
    block_offset_bytes(blocks)
}

/// The number of whole block slots a segment of `len_bytes` bytes holds, capped at
/// [`SEGMENT_BLOCKS_MAX`]. Bytes after the last whole slot are not a slot.
#[must_use]
pub const fn slots_in(len_bytes: u64) -> u32 {
    if len_bytes < SEGMENT_HEADER_SIZE_BYTES as u64 {
        return 0;
    }
    let slots = (len_bytes - SEGMENT_HEADER_SIZE_BYTES as u64) / BLOCK_SIZE_BYTES as u64;
    if slots > SEGMENT_BLOCKS_MAX as u64 {
        SEGMENT_BLOCKS_MAX
    } else {
        // Exact: `slots <= SEGMENT_BLOCKS_MAX`, which is a u32 (`try_from` is not const).
        #[allow(clippy::cast_possible_truncation)]
        let slots = slots as u32;
        slots
    }
}

/// How many bytes of block slot `slot` a segment of `len_bytes` bytes holds:
/// `BLOCK_SIZE_BYTES` for a whole slot, fewer for a slot the segment ends inside, 0 for
/// a slot past its end.
#[must_use]
pub fn slot_bytes_present(len_bytes: u64, slot: u32) -> usize {
    let present = len_bytes.saturating_sub(block_offset_bytes(slot));
    usize::try_from(present).map_or(BLOCK_SIZE_BYTES, |p| p.min(BLOCK_SIZE_BYTES))
}

/// Whether `blocks` is an allowed number of block slots for a new segment.
#[must_use]
pub const fn is_valid_segment_blocks(blocks: u32) -> bool {
    blocks >= SEGMENT_BLOCKS_MIN && blocks <= SEGMENT_BLOCKS_MAX
}

const _: () = assert!(BLOCK_SIZE_BYTES == 16_448);
const _: () = assert!(BLOCK_SIZE_BYTES % STRUCT_ALIGN_BYTES == 0);
const _: () = assert!(SEGMENT_HEADER_SIZE_BYTES == STRUCT_ALIGN_BYTES);
const _: () = assert!(EVENT_SIZE_BYTES == STRUCT_ALIGN_BYTES);
// `event_count` is a u16 on disk and must be able to hold a full block.
const _: () = assert!(BLOCK_EVENTS_MAX <= u16::MAX as usize);
// A segment's `event_count` is a u32 on disk and must hold a full segment.
const _: () = assert!((SEGMENT_BLOCKS_MAX as u64) * (BLOCK_EVENTS_MAX as u64) <= u32::MAX as u64);
// Offsets into the largest segment fit easily in u64 (and in 2^63, so adding one
// block to any valid offset cannot overflow either).
const _: () = assert!(SEGMENT_SIZE_BYTES_MAX < (1u64 << 40));
const _: () = assert!(SEGMENT_BLOCKS_MIN <= SEGMENT_BLOCKS_DEFAULT);
const _: () = assert!(SEGMENT_BLOCKS_DEFAULT <= SEGMENT_BLOCKS_MAX);
// The default segment is one the C++ recorder reads, and its limit one fswal reads.
const _: () = assert!(SEGMENT_BLOCKS_DEFAULT <= CPP_READER_BLOCKS_MAX);
const _: () = assert!(CPP_READER_BLOCKS_MAX <= SEGMENT_BLOCKS_MAX);
// Up to it, a segment's size fits the C++ reader's 32-bit arithmetic.
const _: () = assert!(segment_size_bytes(CPP_READER_BLOCKS_MAX) < (1u64 << 32));
// Segment file names print the index with exactly 8 digits.
const _: () = assert!(SEGMENT_INDEX_MAX == 99_999_999);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_format() {
        assert_eq!(block_offset_bytes(0), 64);
        assert_eq!(block_offset_bytes(1), 64 + 16_448);
        assert_eq!(segment_size_bytes(16), 263_232);
        // Above 4 GiB, where 32-bit arithmetic would wrap.
        assert_eq!(
            block_offset_bytes(SEGMENT_BLOCKS_MAX - 1),
            64 + 524_287u64 * 16_448
        );
    }

    #[test]
    fn slots_in_counts_whole_slots_only() {
        assert_eq!(slots_in(0), 0);
        assert_eq!(slots_in(63), 0);
        assert_eq!(slots_in(64), 0);
        assert_eq!(slots_in(64 + 16_447), 0);
        assert_eq!(slots_in(64 + 16_448), 1);
        assert_eq!(slots_in(segment_size_bytes(16) + 100), 16);
        assert_eq!(slots_in(u64::MAX), SEGMENT_BLOCKS_MAX);
    }

    #[test]
    fn slot_bytes_present_is_bounded_by_a_block() {
        assert_eq!(slot_bytes_present(0, 0), 0);
        assert_eq!(slot_bytes_present(64, 0), 0);
        assert_eq!(slot_bytes_present(64 + 10, 0), 10);
        assert_eq!(
            slot_bytes_present(segment_size_bytes(2), 1),
            BLOCK_SIZE_BYTES
        );
        assert_eq!(slot_bytes_present(segment_size_bytes(2), 2), 0);
        assert_eq!(slot_bytes_present(u64::MAX, 3), BLOCK_SIZE_BYTES);
    }

    #[test]
    fn segment_block_bounds() {
        assert!(!is_valid_segment_blocks(15));
        assert!(is_valid_segment_blocks(16));
        assert!(is_valid_segment_blocks(524_288));
        assert!(!is_valid_segment_blocks(524_289));
    }
}
