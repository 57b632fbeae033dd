//! `BlockHeader`: the first 64 bytes of every block.
//!
//! ```text
//!  offset  size  field             notes
//!  ------  ----  ----------------  ----------------------------------------------
//!       0     8  first_event_id    id of events[0]
//!       8     8  last_event_id     id of events[event_count - 1]
//!      16     8  block_checksum    XXH64(used event bytes, seed 0)
//!      24     8  chained_checksum  XXH64(used event bytes, seed prev_chained)
//!      32     8  checksum          XXH64(0..32) then XXH64(40..64)
//!      40     4  block_index       the block's slot in its segment
//!      44     2  event_count       1..=256
//!      46    18  padding           zero
//!  ------  ----
//!            64
//! ```
//!
//! The header checksum covers everything but itself, padding included, so a header
//! that verifies was written whole; the structural rules then say whether what was
//! written makes sense. The C++ recorder never verifies this checksum; fswal does.

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::checksum::block_header_checksum;
use crate::issue::Reason;
use crate::limits::{BLOCK_EVENTS_MAX, BLOCK_HEADER_SIZE_BYTES};

/// The block header exactly as it is stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, align(64))]
pub struct BlockHeader {
    first_event_id: U64,
    last_event_id: U64,
    block_checksum: U64,
    chained_checksum: U64,
    checksum: U64,
    block_index: U32,
    event_count: U16,
    padding: [u8; 18],
}

const _: () = assert!(size_of::<BlockHeader>() == BLOCK_HEADER_SIZE_BYTES);
const _: () = assert!(offset_of!(BlockHeader, first_event_id) == 0);
const _: () = assert!(offset_of!(BlockHeader, last_event_id) == 8);
const _: () = assert!(offset_of!(BlockHeader, block_checksum) == 16);
const _: () = assert!(offset_of!(BlockHeader, chained_checksum) == 24);
const _: () = assert!(offset_of!(BlockHeader, checksum) == 32);

/// Offset of the header checksum field, which the header checksum skips.
pub const BLOCK_HEADER_CHECKSUM_OFFSET: usize = offset_of!(BlockHeader, checksum);
const _: () = assert!(offset_of!(BlockHeader, block_index) == 40);
const _: () = assert!(offset_of!(BlockHeader, event_count) == 44);
const _: () = assert!(offset_of!(BlockHeader, padding) == 46);

/// The fields of a block header other than its own checksum and padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockFields {
    /// Id of the first event.
    pub first_event_id: u64,
    /// Id of the last event.
    pub last_event_id: u64,
    /// XXH64 of the used event bytes, seed 0.
    pub block_checksum: u64,
    /// XXH64 of the used event bytes, seeded with the previous block's chained checksum.
    pub chained_checksum: u64,
    /// The block's slot in its segment.
    pub block_index: u32,
    /// Events in the block.
    pub event_count: u16,
}

impl BlockHeader {
    /// The all-zero header of an empty slot.
    pub const BLANK: Self = Self {
        first_event_id: U64::ZERO,
        last_event_id: U64::ZERO,
        block_checksum: U64::ZERO,
        chained_checksum: U64::ZERO,
        checksum: U64::ZERO,
        block_index: U32::ZERO,
        event_count: U16::ZERO,
        padding: [0; 18],
    };

    /// A header holding `fields`, with zero padding and its checksum computed.
    #[must_use]
    pub fn new(fields: &BlockFields) -> Self {
        let mut h = Self {
            first_event_id: U64::new(fields.first_event_id),
            last_event_id: U64::new(fields.last_event_id),
            block_checksum: U64::new(fields.block_checksum),
            chained_checksum: U64::new(fields.chained_checksum),
            checksum: U64::ZERO,
            block_index: U32::new(fields.block_index),
            event_count: U16::new(fields.event_count),
            padding: [0; 18],
        };
        h.checksum = U64::new(block_header_checksum(&h));
        h
    }

    /// The fields other than the checksum and padding.
    #[must_use]
    pub fn fields(&self) -> BlockFields {
        BlockFields {
            first_event_id: self.first_event_id.get(),
            last_event_id: self.last_event_id.get(),
            block_checksum: self.block_checksum.get(),
            chained_checksum: self.chained_checksum.get(),
            block_index: self.block_index.get(),
            event_count: self.event_count.get(),
        }
    }

    /// Id of the first event.
    #[must_use]
    pub fn first_event_id(&self) -> u64 {
        self.first_event_id.get()
    }
    /// Id of the last event.
    #[must_use]
    pub fn last_event_id(&self) -> u64 {
        self.last_event_id.get()
    }
    /// The stored block checksum.
    #[must_use]
    pub fn block_checksum(&self) -> u64 {
        self.block_checksum.get()
    }
    /// The stored chained checksum.
    #[must_use]
    pub fn chained_checksum(&self) -> u64 {
        self.chained_checksum.get()
    }
    /// The stored header checksum.
    #[must_use]
    pub fn checksum(&self) -> u64 {
        self.checksum.get()
    }
    /// The stored block index.
    #[must_use]
    pub fn block_index(&self) -> u32 {
        self.block_index.get()
    }
    /// The stored event count (not yet checked against 1..=256).
    #[must_use]
    pub fn event_count(&self) -> u16 {
        self.event_count.get()
    }

    /// Whether every byte is zero: a slot that was never written.
    #[must_use]
    pub fn is_blank(&self) -> bool {
        *self == Self::BLANK
    }

    /// Checks the header of the block in slot `slot` on its own: its checksum first,
    /// then the structural rules of the format.
    pub fn check(&self, slot: u32) -> Result<(), Reason> {
        let computed = block_header_checksum(self);
        if computed != self.checksum() {
            return Err(Reason::BlockHeaderChecksumMismatch {
                stored: self.checksum(),
                computed,
            });
        }
        let count = self.event_count();
        if count == 0 || usize::from(count) > BLOCK_EVENTS_MAX {
            return Err(Reason::BadEventCount { count });
        }
        if self.first_event_id() == 0 {
            return Err(Reason::ZeroFirstEventId);
        }
        if self.first_event_id() > self.last_event_id() {
            return Err(Reason::FirstAfterLast {
                first: self.first_event_id(),
                last: self.last_event_id(),
            });
        }
        if self.block_index() != slot {
            return Err(Reason::BlockIndexMismatch {
                found: self.block_index(),
            });
        }
        if self.padding.iter().any(|&b| b != 0) {
            return Err(Reason::BlockHeaderPaddingNotZero);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block0() -> BlockHeader {
        BlockHeader::new(&BlockFields {
            first_event_id: 1,
            last_event_id: 256,
            block_checksum: 0x4eb8_b670_751f_0aa9,
            chained_checksum: 0x4eb8_b670_751f_0aa9,
            block_index: 0,
            event_count: 256,
        })
    }

    #[test]
    fn known_answer_headers() {
        assert_eq!(block0().checksum(), 0x1a7a_8390_456f_7bc3);
        let block1 = BlockHeader::new(&BlockFields {
            first_event_id: 257,
            last_event_id: 512,
            block_checksum: 0x4916_5dde_90b2_24e4,
            chained_checksum: 0x7419_c55e_3bbd_e796,
            block_index: 1,
            event_count: 256,
        });
        assert_eq!(block1.checksum(), 0xde5c_bb26_86d5_c672);
        assert_eq!(block1.check(1), Ok(()));
        assert_eq!(
            block1.check(2),
            Err(Reason::BlockIndexMismatch { found: 1 })
        );
    }

    #[test]
    fn structural_rules_apply_after_the_checksum() {
        let f = block0().fields();
        let with = |f: BlockFields| BlockHeader::new(&f).check(f.block_index);
        assert_eq!(
            with(BlockFields {
                event_count: 0,
                ..f
            }),
            Err(Reason::BadEventCount { count: 0 })
        );
        assert_eq!(
            with(BlockFields {
                event_count: 257,
                ..f
            }),
            Err(Reason::BadEventCount { count: 257 })
        );
        assert_eq!(
            with(BlockFields {
                first_event_id: 0,
                ..f
            }),
            Err(Reason::ZeroFirstEventId)
        );
        assert_eq!(
            with(BlockFields {
                first_event_id: 300,
                ..f
            }),
            Err(Reason::FirstAfterLast {
                first: 300,
                last: 256
            })
        );
    }

    #[test]
    fn padding_is_covered_and_checked() {
        let mut h = block0();
        h.as_mut_bytes()[50] = 1;
        assert!(matches!(
            h.check(0),
            Err(Reason::BlockHeaderChecksumMismatch { .. })
        ));
        // Even with a checksum recomputed over it, non-zero padding is refused.
        let fixed = block_header_checksum(&h);
        h.checksum = U64::new(fixed);
        assert_eq!(h.check(0), Err(Reason::BlockHeaderPaddingNotZero));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let base = block0();
        for bit in 0..512 {
            let mut h = base;
            h.as_mut_bytes()[bit / 8] ^= 1 << (bit % 8);
            assert!(h.check(0).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn blank_is_all_zero() {
        assert!(BlockHeader::BLANK.is_blank());
        assert!(BlockHeader::BLANK.as_bytes().iter().all(|&b| b == 0));
        assert!(!block0().is_blank());
    }
}
