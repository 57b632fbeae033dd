//! `Checkpoint`: the meta record that says where the log was known to end, durably.
//!
//! ```text
//!  offset  size  field                notes
//!  ------  ----  -------------------  ---------------------------------------------
//!       0     8  magic                "FSWALCP1"
//!       8     4  segment_index        the segment holding the last durable block
//!      12     4  next_slot            the slot after that block (0: segment empty)
//!      16     8  offset_bytes         64 + next_slot * 16448: where appending resumes
//!      24     8  last_event_id        the last durable event (0: none)
//!      32     8  chained_checksum     chained checksum of the block before next_slot
//!      40     8  written_ts_ns        when the checkpoint was written
//!      48     8  reserved             zero
//!      56     8  checksum             XXH64(bytes 0..56, seed 0)
//!  ------  ----
//!            64
//! ```
//!
//! There are two such records ([`CheckpointKind`]). The writer replaces the *sealed*
//! one atomically (the store writes a temporary copy, syncs it, renames it, syncs the
//! directory) when it seals a segment and when it closes or recovers the log, and
//! rewrites the *synced* one (the sync mark) in place after every sync. It is an fswal addition, not part of the C++ format, and
//! it is never trusted over the segments themselves. It serves two purposes:
//!
//! 1. It lets recovery start verifying at the checkpoint instead of at the first
//!    segment, after confirming against the segment bytes that the block it names is
//!    there, verifies, and ends with the event it records.
//! 2. It is a durable watermark: a log whose valid prefix ends before the checkpoint's
//!    last event has lost data that a sync had made durable. Recovery refuses to treat
//!    such damage as a torn tail to set aside.

use core::mem::{offset_of, size_of};

use xxhash_rust::xxh64::xxh64;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::limits::{SEGMENT_BLOCKS_MAX, block_offset_bytes};

/// Bytes in a checkpoint record.
pub const CHECKPOINT_SIZE_BYTES: usize = 64;

/// The checkpoint magic.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"FSWALCP1";

/// Which of the two checkpoint records: both hold the same fields, and recovery takes
/// the later of them as the durable watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckpointKind {
    /// Written when a segment is sealed and when the log is closed or recovered;
    /// replaced atomically (temporary copy, sync, rename, directory sync).
    Sealed,
    /// The sync mark: written after every sync, in place (one sector, which the crash
    /// contract makes atomic), and synced before the sync returns. It is what lets
    /// recovery tell a block a sync covered (damage: refuse) from one it did not (a
    /// torn or reordered tail: set aside).
    Synced,
}

impl CheckpointKind {
    /// Both kinds.
    pub const ALL: [Self; 2] = [Self::Sealed, Self::Synced];

    /// Its position in [`CheckpointKind::ALL`], for stores that keep both in an array.
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::Sealed => 0,
            Self::Synced => 1,
        }
    }
}

/// The checkpoint record exactly as it is stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, align(64))]
pub struct Checkpoint {
    magic: [u8; 8],
    segment_index: U32,
    next_slot: U32,
    offset_bytes: U64,
    last_event_id: U64,
    chained_checksum: U64,
    written_ts_ns: U64,
    reserved: [u8; 8],
    checksum: U64,
}

const _: () = assert!(size_of::<Checkpoint>() == CHECKPOINT_SIZE_BYTES);
const _: () = assert!(offset_of!(Checkpoint, segment_index) == 8);
const _: () = assert!(offset_of!(Checkpoint, next_slot) == 12);
const _: () = assert!(offset_of!(Checkpoint, offset_bytes) == 16);
const _: () = assert!(offset_of!(Checkpoint, last_event_id) == 24);
const _: () = assert!(offset_of!(Checkpoint, chained_checksum) == 32);
const _: () = assert!(offset_of!(Checkpoint, written_ts_ns) == 40);
const _: () = assert!(offset_of!(Checkpoint, checksum) == 56);

/// Where a checkpoint says the log ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointFields {
    /// The segment holding the last durable block.
    pub segment_index: u32,
    /// The slot after that block.
    pub next_slot: u32,
    /// The last durable event id (0 when the log was empty).
    pub last_event_id: u64,
    /// Chained checksum of the block in slot `next_slot - 1` (0 when `next_slot` is 0).
    pub chained_checksum: u64,
    /// When the checkpoint was written, ns since the Unix epoch.
    pub written_ts_ns: u64,
}

/// Why 64 bytes are not a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointDefect {
    /// Not the checkpoint magic.
    BadMagic,
    /// The checksum does not match.
    ChecksumMismatch,
    /// The fields contradict each other or the format's bounds.
    Inconsistent,
}

impl Checkpoint {
    /// The record for `fields`, with its offset and checksum computed.
    #[must_use]
    pub fn new(fields: &CheckpointFields) -> Self {
        let mut c = Self {
            magic: CHECKPOINT_MAGIC,
            segment_index: U32::new(fields.segment_index),
            next_slot: U32::new(fields.next_slot),
            offset_bytes: U64::new(block_offset_bytes(fields.next_slot)),
            last_event_id: U64::new(fields.last_event_id),
            chained_checksum: U64::new(fields.chained_checksum),
            written_ts_ns: U64::new(fields.written_ts_ns),
            reserved: [0; 8],
            checksum: U64::ZERO,
        };
        c.checksum = U64::new(c.computed_checksum());
        c
    }

    fn computed_checksum(&self) -> u64 {
        let bytes = self.as_bytes();
        xxh64(
            bytes
                .get(..offset_of!(Checkpoint, checksum))
                .unwrap_or(bytes),
            0,
        )
    }

    /// Decodes and checks a stored checkpoint.
    pub fn decode(
        bytes: &[u8; CHECKPOINT_SIZE_BYTES],
    ) -> Result<CheckpointFields, CheckpointDefect> {
        let c = Self::read_from_bytes(bytes).map_err(|_| CheckpointDefect::Inconsistent)?;
        if c.magic != CHECKPOINT_MAGIC {
            return Err(CheckpointDefect::BadMagic);
        }
        if c.checksum.get() != c.computed_checksum() {
            return Err(CheckpointDefect::ChecksumMismatch);
        }
        let next_slot = c.next_slot.get();
        let consistent = next_slot <= SEGMENT_BLOCKS_MAX
            && c.offset_bytes.get() == block_offset_bytes(next_slot)
            && c.reserved == [0; 8]
            && (next_slot > 0 || c.chained_checksum.get() == 0);
        if !consistent {
            return Err(CheckpointDefect::Inconsistent);
        }
        Ok(CheckpointFields {
            segment_index: c.segment_index.get(),
            next_slot,
            last_event_id: c.last_event_id.get(),
            chained_checksum: c.chained_checksum.get(),
            written_ts_ns: c.written_ts_ns.get(),
        })
    }

    /// The stored bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; CHECKPOINT_SIZE_BYTES] {
        let mut out = [0u8; CHECKPOINT_SIZE_BYTES];
        out.copy_from_slice(self.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> CheckpointFields {
        CheckpointFields {
            segment_index: 3,
            next_slot: 17,
            last_event_id: 99_999,
            chained_checksum: 0xabcd,
            written_ts_ns: 5,
        }
    }

    #[test]
    fn round_trips() {
        let bytes = Checkpoint::new(&fields()).to_bytes();
        assert_eq!(&bytes[..8], b"FSWALCP1");
        assert_eq!(
            u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
            64 + 17 * 16_448
        );
        assert_eq!(Checkpoint::decode(&bytes), Ok(fields()));
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let bytes = Checkpoint::new(&fields()).to_bytes();
        for bit in 0..512 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Checkpoint::decode(&b).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn inconsistent_fields_are_refused_even_with_a_valid_checksum() {
        let mut c = Checkpoint::new(&fields());
        c.offset_bytes = U64::new(12);
        c.checksum = U64::new(c.computed_checksum());
        assert_eq!(
            Checkpoint::decode(&c.to_bytes()),
            Err(CheckpointDefect::Inconsistent)
        );
        let empty = CheckpointFields {
            next_slot: 0,
            ..fields()
        };
        assert_eq!(
            Checkpoint::decode(&Checkpoint::new(&empty).to_bytes()),
            Err(CheckpointDefect::Inconsistent),
            "no block before slot 0, so no chained checksum"
        );
    }
}
