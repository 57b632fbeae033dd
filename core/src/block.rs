//! `Block`: a block header followed by 256 event slots, 16448 bytes.
//!
//! ```text
//!  offset  size  content
//!  ------  ----  ------------------------------------------------------------
//!       0    64  BlockHeader
//!      64    64  events[0]
//!     128    64  events[1]
//!     ...
//!   16384    64  events[255]
//!  ------  ----
//!         16448  (block k of a segment starts at byte 64 + k * 16448)
//! ```
//!
//! Only the first `event_count` slots are used; the rest are zero. A block may be
//! partial: a flush writes one, and the next events go to the next slot.
//!
//! Verification is split in two. [`Block::check_alone`] checks what the block says
//! about itself (its header, its events, its block checksum). [`Block::check_link`]
//! checks that it follows the block before it (ids keep increasing, the chained
//! checksum is seeded with the previous one). Replay needs both; resynchronising after
//! damage, where the previous block is unknown, can only use the first.

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::block_header::{BlockFields, BlockHeader};
use crate::checksum::{block_checksum, block_checksums, chained_checksum};
use crate::event::RequestEvent;
use crate::issue::Reason;
use crate::limits::{BLOCK_EVENTS_MAX, BLOCK_HEADER_SIZE_BYTES, BLOCK_SIZE_BYTES};

/// One block exactly as it is stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, PartialEq, Eq, Debug)]
#[repr(C, align(64))]
#[non_exhaustive]
pub struct Block {
    /// The block header.
    pub header: BlockHeader,
    /// The event slots; the first `header.event_count()` are used, the rest are zero.
    pub events: [RequestEvent; BLOCK_EVENTS_MAX],
}

const _: () = assert!(size_of::<Block>() == BLOCK_SIZE_BYTES);
const _: () = assert!(offset_of!(Block, header) == 0);
const _: () = assert!(offset_of!(Block, events) == BLOCK_HEADER_SIZE_BYTES);

impl Block {
    /// An empty slot: every byte zero.
    pub const EMPTY: Self = Self {
        header: BlockHeader::BLANK,
        events: [RequestEvent::ZERO; BLOCK_EVENTS_MAX],
    };

    /// The used event slots, as many as the header's `event_count` says (at most 256,
    /// even when the count read from disk is larger).
    #[must_use]
    pub fn used_events(&self) -> &[RequestEvent] {
        let count = usize::from(self.header.event_count()).min(BLOCK_EVENTS_MAX);
        self.events.get(..count).unwrap_or(&[])
    }

    /// Whether every byte is zero: a slot that was never written.
    #[must_use]
    pub fn is_blank(&self) -> bool {
        self.as_bytes().iter().all(|&b| b == 0)
    }

    /// Writes the header for the first `event_count` slots as block `block_index`,
    /// chained to `prev_chained`, and returns the block's chained checksum.
    ///
    /// A count outside 1..=256 is refused ([`Reason::BadEventCount`]): no block can
    /// hold it, and a header claiming it would be a block replay refuses. The header
    /// built is then checked on its own, as replay will check it ([`BlockHeader::check`]:
    /// its checksum, its count, a first id of 0 or after the last, its index), in every
    /// build: it costs one checksum of 64 bytes, and a header that fails it must never
    /// reach the disk. On a refusal the header is left as it was and the block must not
    /// be written.
    ///
    /// The caller fills the slots and keeps the unused ones zero; the events themselves
    /// and the chain are what [`Block::verify`] checks, which the writer runs in debug
    /// builds.
    pub fn finalize(
        &mut self,
        block_index: u32,
        event_count: u16,
        prev_chained: u64,
    ) -> Result<u64, Reason> {
        let count = usize::from(event_count);
        let used = match self.events.get(..count) {
            Some(used) if count > 0 => used,
            _ => return Err(Reason::BadEventCount { count: event_count }),
        };
        let first_event_id = used.first().map_or(0, RequestEvent::event_id);
        let last_event_id = used.last().map_or(0, RequestEvent::event_id);
        let (block, chained) = block_checksums(used, prev_chained);
        let header = BlockHeader::new(&BlockFields {
            first_event_id,
            last_event_id,
            block_checksum: block,
            chained_checksum: chained,
            block_index,
            event_count,
        });
        header.check(block_index)?;
        self.header = header;
        Ok(chained)
    }

    /// Checks what the block in slot `slot` says about itself, in the order of the
    /// format: header checksum and structure, first and last ids against the events,
    /// every event valid with strictly increasing ids, unused slots zero, block checksum.
    pub fn check_alone(&self, slot: u32) -> Result<(), Reason> {
        let used = self.check_structure(slot)?;
        self.compare_block_checksum(block_checksum(used))
    }

    /// Everything [`Block::check_alone`] checks except the block checksum; returns the
    /// used events.
    fn check_structure(&self, slot: u32) -> Result<&[RequestEvent], Reason> {
        self.header.check(slot)?;
        let count = usize::from(self.header.event_count());
        // `check` bounded the count to 1..=256; split_at_checked keeps this panic-free.
        let (used, unused) = self
            .events
            .split_at_checked(count)
            .ok_or(Reason::BadEventCount {
                count: self.header.event_count(),
            })?;
        let (Some(first), Some(last)) = (used.first(), used.last()) else {
            return Err(Reason::BadEventCount { count: 0 });
        };
        if first.event_id() != self.header.first_event_id() {
            return Err(Reason::FirstIdMismatch {
                header: self.header.first_event_id(),
                event: first.event_id(),
            });
        }
        if last.event_id() != self.header.last_event_id() {
            return Err(Reason::LastIdMismatch {
                header: self.header.last_event_id(),
                event: last.event_id(),
            });
        }
        if !events_plausible(used) {
            // The fast pass saw something wrong; this pass says exactly what.
            let mut previous = 0u64;
            for (position, event) in (0u16..).zip(used) {
                event
                    .check()
                    .map_err(|defect| Reason::InvalidEvent { position, defect })?;
                if position > 0 && event.event_id() <= previous {
                    return Err(Reason::EventIdNotIncreasing {
                        position,
                        event_id: event.event_id(),
                        previous,
                    });
                }
                previous = event.event_id();
            }
        }
        if !unused.as_bytes().iter().all(|&b| b == 0) {
            let i = unused
                .iter()
                .position(|e| *e != RequestEvent::ZERO)
                .unwrap_or(0);
            // `i < 256`, so `count + i < 512` fits in a u16.
            let position = u16::try_from(count + i).unwrap_or(u16::MAX);
            return Err(Reason::UnusedSlotNotZero { position });
        }
        Ok(used)
    }

    fn compare_block_checksum(&self, computed: u64) -> Result<(), Reason> {
        if computed != self.header.block_checksum() {
            return Err(Reason::BlockChecksumMismatch {
                stored: self.header.block_checksum(),
                computed,
            });
        }
        Ok(())
    }

    fn compare_chained_checksum(&self, computed: u64) -> Result<(), Reason> {
        if computed != self.header.chained_checksum() {
            return Err(Reason::ChainedChecksumMismatch {
                stored: self.header.chained_checksum(),
                computed,
            });
        }
        Ok(())
    }

    fn check_regression(&self, prev_last_event_id: u64) -> Result<(), Reason> {
        let first = self.header.first_event_id();
        if first <= prev_last_event_id {
            return Err(Reason::EventIdRegression {
                first,
                previous: prev_last_event_id,
            });
        }
        Ok(())
    }

    /// Checks that this block follows a block whose chained checksum is `prev_chained`
    /// and whose last event id is `prev_last_event_id` (0 when no event came before).
    /// `prev_chained` is `None` where the previous block is unknown (after a gap in
    /// diagnostic replay): then only the ids are checked. Call after
    /// [`Block::check_alone`] succeeded.
    pub fn check_link(
        &self,
        prev_chained: Option<u64>,
        prev_last_event_id: u64,
    ) -> Result<(), Reason> {
        self.check_regression(prev_last_event_id)?;
        let Some(prev_chained) = prev_chained else {
            return Ok(());
        };
        self.compare_chained_checksum(chained_checksum(self.used_events(), prev_chained))
    }

    /// Both checks: the block in slot `slot` is valid and follows the block before it.
    pub fn verify(
        &self,
        slot: u32,
        prev_chained: u64,
        prev_last_event_id: u64,
    ) -> Result<(), Reason> {
        // The same checks in the same order as `check_alone` then `check_link`, with
        // both checksums computed in one pass over the events.
        let used = self.check_structure(slot)?;
        let (block, chained) = block_checksums(used, prev_chained);
        self.compare_block_checksum(block)?;
        self.check_regression(prev_last_event_id)?;
        self.compare_chained_checksum(chained)
    }
}

/// Whether every event is valid and ids strictly increase, decided with a few
/// word-wide tests per event. `false` means some rule is broken; the caller then finds
/// which one with the exact per-field checks. It accepts exactly the sequences those
/// checks accept (a property test holds them equal).
fn events_plausible(used: &[RequestEvent]) -> bool {
    let mut previous = 0u64;
    let mut ok = true;
    for event in used {
        let id = event.event_id();
        // `previous < id` also rejects id 0, since `previous` starts at 0.
        ok &= previous < id && event.is_plausible();
        previous = id;
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventDefect;
    use crate::reference::reference_event;
    use std::boxed::Box;

    /// A boxed block: 16 KiB is too much for some test threads' stacks to copy around.
    fn reference_block(first: u64, count: u16, slot: u32, prev_chained: u64) -> Box<Block> {
        let mut b = Box::new(Block::EMPTY);
        for (i, e) in (first..).zip(b.events.iter_mut().take(usize::from(count))) {
            *e = reference_event(i);
        }
        b.finalize(slot, count, prev_chained).unwrap();
        b
    }

    #[test]
    fn known_answer_blocks_verify() {
        let b0 = reference_block(1, 256, 0, 0);
        assert_eq!(b0.header.checksum(), 0x1a7a_8390_456f_7bc3);
        assert_eq!(b0.verify(0, 0, 0), Ok(()));
        let b1 = reference_block(257, 256, 1, b0.header.chained_checksum());
        assert_eq!(b1.header.chained_checksum(), 0x7419_c55e_3bbd_e796);
        assert_eq!(b1.header.checksum(), 0xde5c_bb26_86d5_c672);
        assert_eq!(b1.verify(1, b0.header.chained_checksum(), 256), Ok(()));
    }

    #[test]
    fn chain_and_id_links_are_checked() {
        let b0 = reference_block(1, 256, 0, 0);
        let b1 = reference_block(257, 256, 1, b0.header.chained_checksum());
        assert!(matches!(
            b1.verify(1, 0, 256),
            Err(Reason::ChainedChecksumMismatch { .. })
        ));
        assert_eq!(
            b1.verify(1, b0.header.chained_checksum(), 257),
            Err(Reason::EventIdRegression {
                first: 257,
                previous: 257
            })
        );
    }

    #[test]
    fn partial_block_keeps_unused_slots_zero() {
        let b = reference_block(8193, 16, 0, 0);
        assert_eq!(b.used_events().len(), 16);
        assert_eq!(b.check_alone(0), Ok(()));
        let mut dirty = b.clone();
        dirty.events[200] = reference_event(1);
        assert_eq!(
            dirty.check_alone(0),
            Err(Reason::UnusedSlotNotZero { position: 200 })
        );
    }

    #[test]
    fn payload_damage_is_caught_by_the_block_checksum() {
        let mut b = reference_block(1, 256, 0, 0);
        b.events[10].as_mut_bytes()[20] ^= 0x40; // the price of event 11
        assert!(matches!(
            b.check_alone(0),
            Err(Reason::BlockChecksumMismatch { .. })
        ));
    }

    #[test]
    fn structural_rules_survive_recomputed_checksums() {
        // A block whose checksums were recomputed after the damage: only the structural
        // rules can catch it.
        let mut b = reference_block(1, 4, 0, 0);
        b.events.swap(1, 2);
        b.finalize(0, 4, 0).unwrap();
        assert_eq!(
            b.check_alone(0),
            Err(Reason::EventIdNotIncreasing {
                position: 2,
                event_id: 2,
                previous: 3
            })
        );

        let mut b = reference_block(1, 4, 0, 0);
        b.events[3].as_mut_bytes()[42] = 7;
        b.finalize(0, 4, 0).unwrap();
        assert_eq!(
            b.check_alone(0),
            Err(Reason::InvalidEvent {
                position: 3,
                defect: EventDefect::InvalidSide(7)
            })
        );

        let mut b = reference_block(1, 4, 0, 0);
        b.finalize(0, 4, 0).unwrap();
        let mut fields = b.header.fields();
        fields.first_event_id = 2;
        b.header = BlockHeader::new(&fields);
        assert_eq!(
            b.check_alone(0),
            Err(Reason::FirstIdMismatch {
                header: 2,
                event: 1
            })
        );
    }

    #[test]
    fn finalize_refuses_a_count_no_block_holds() {
        let mut b = reference_block(1, 256, 0, 0);
        let before = b.header;
        for count in [0, 257, u16::MAX] {
            assert_eq!(
                b.finalize(0, count, 0),
                Err(Reason::BadEventCount { count }),
                "count {count}"
            );
            assert_eq!(
                b.header, before,
                "count {count}: the header is left as it was"
            );
        }
        assert!(b.finalize(0, 1, 0).is_ok());
        assert_eq!(b.header.event_count(), 1);
        assert!(b.finalize(0, 256, 0).is_ok());
    }

    #[test]
    fn finalize_refuses_a_header_replay_would_refuse() {
        // Event 0 first: the header would claim a first id of 0.
        let mut b = reference_block(1, 4, 0, 0);
        b.events[0] = RequestEvent::ZERO;
        let before = b.header;
        assert_eq!(b.finalize(0, 4, 0), Err(Reason::ZeroFirstEventId));
        assert_eq!(b.header, before);
        // Ids in the wrong order: the first after the last.
        let mut b = reference_block(1, 4, 0, 0);
        b.events.swap(0, 3);
        assert_eq!(
            b.finalize(0, 4, 0),
            Err(Reason::FirstAfterLast { first: 4, last: 1 })
        );
    }

    #[test]
    fn empty_block_is_blank() {
        assert!(Block::EMPTY.is_blank());
        assert!(matches!(
            Block::EMPTY.check_alone(0),
            Err(Reason::BlockHeaderChecksumMismatch { .. })
        ));
    }

    /// The exact rules the fast pass must agree with.
    fn events_valid_exactly(used: &[RequestEvent]) -> bool {
        let mut previous = 0u64;
        used.iter().all(|e| {
            let ok = e.find_defect().is_ok() && e.event_id() > previous;
            previous = e.event_id();
            ok
        })
    }

    proptest::proptest! {
        /// The word-wide fast pass accepts exactly what the per-field checks accept,
        /// for events with any one byte changed (enum bytes, padding, ids).
        #[test]
        fn fast_event_pass_agrees_with_the_exact_checks(
            count in 1usize..6,
            victim in 0usize..6,
            offset in 0usize..64,
            value: u8,
            step in 0u64..3,
        ) {
            let mut events = [RequestEvent::ZERO; 6];
            for (i, e) in (0u64..).zip(events.iter_mut()) {
                *e = reference_event(1 + i * step);
            }
            let used = &mut events[..count];
            let at = victim % count;
            if let Some(b) = used[at].as_mut_bytes().get_mut(offset) {
                *b = value;
            }
            proptest::prop_assert_eq!(events_plausible(used), events_valid_exactly(used));
        }
    }
}
