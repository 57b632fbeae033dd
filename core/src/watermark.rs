//! The durable watermark: which event a sync made durable, and where in the log its
//! block is.
//!
//! A log fswal wrote carries two checkpoint records ([`crate::checkpoint`]): the sealed
//! checkpoint and the sync mark. Each says "events up to `last_event_id` are durable,
//! and the block before slot `next_slot` of segment `segment_index` ends with them,
//! its chained checksum `chained_checksum`". The highest `last_event_id` among the
//! records that decode is the *durable watermark*: every event up to it was
//! acknowledged.
//!
//! Comparing ids alone is not enough: another writer could delete acknowledged
//! segments and append new events whose ids climb past the watermark. So the records
//! that hold the watermark are also checked against the log's bytes: replay must find,
//! exactly where a record says, a block with the chained checksum and last event id it
//! records ([`WatermarkCheck`]). A record with a lower id was superseded by a later one
//! (retention may since have removed the segment it names) and only the id counts.
//!
//! A record is never trusted over the segments: a record that does not decode is
//! ignored, and one that decodes only makes replay stricter.

use crate::checkpoint::{Checkpoint, CheckpointFields, CheckpointKind};
use crate::issue::{Issue, Reason};
use crate::limits::block_offset_bytes;
use crate::store::SegmentStore;

/// The durable watermark of a log, as its checkpoint records give it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Watermark {
    /// The highest event id a decodable record says a sync made durable; 0 without one.
    pub durable_event_id: u64,
    /// Whether at least one record decodes: fswal kept a watermark for this log (a log
    /// only the C++ recorder wrote has none).
    pub kept: bool,
    /// The record that holds `durable_event_id`, and its kind: where the log must show
    /// the block that ends with it. When both records hold the same id, the one naming
    /// the later place holds it (the writer wrote it last: nothing was appended between
    /// the two places, and retention may since have removed the earlier one).
    pub holder: Option<(CheckpointKind, CheckpointFields)>,
}

impl Watermark {
    /// The watermark the decodable records among `records` (by kind) give.
    #[must_use]
    pub fn from_records(records: [Option<CheckpointFields>; 2]) -> Self {
        let holder = CheckpointKind::ALL
            .into_iter()
            .filter_map(|kind| records[kind.index()].map(|r| (kind, r)))
            .max_by_key(|(_, r)| (r.last_event_id, r.segment_index, r.next_slot));
        Self {
            durable_event_id: holder.map_or(0, |(_, r)| r.last_event_id),
            kept: holder.is_some(),
            holder,
        }
    }

    /// The last event id before segment `first`, the first segment present, when the
    /// holder names the start of it: retention removed every segment before, and with
    /// them the ids they held, which the log still counts from.
    #[must_use]
    pub fn before_first_segment(&self, first: u32) -> Option<u64> {
        self.holder
            .filter(|(_, r)| r.next_slot == 0 && r.segment_index == first)
            .map(|(_, r)| r.last_event_id)
    }

    /// Reads both records of `store`; one that is absent or does not decode is left out.
    pub fn read<S: SegmentStore>(store: &mut S) -> Result<Self, S::Error> {
        let mut records = [None; 2];
        for kind in CheckpointKind::ALL {
            if let Some(bytes) = store.read_checkpoint(kind)? {
                records[kind.index()] = Checkpoint::decode(&bytes).ok();
            }
        }
        Ok(Self::from_records(records))
    }
}

/// Where a record says the block ending with the watermark is: before slot `next_slot`
/// of `segment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    kind: CheckpointKind,
    segment: u32,
    next_slot: u32,
    chain: u64,
    last_event_id: u64,
}

impl Expected {
    /// The issue for a log that shows `found` (chain and last id of the block there, if
    /// any) where this record expects its block.
    fn mismatch(&self, found: Option<(u64, u64)>) -> Issue {
        let slot = self.next_slot.saturating_sub(1);
        Issue {
            segment: self.segment,
            block: Some(if self.next_slot == 0 { 0 } else { slot }),
            offset_bytes: block_offset_bytes(if self.next_slot == 0 { 0 } else { slot }),
            reason: Reason::WatermarkMismatch {
                kind: self.kind,
                durable_event_id: self.last_event_id,
                expected_chain: self.chain,
                found_chain: found.map(|(chain, _)| chain),
                found_event_id: found.map(|(_, last)| last),
            },
        }
    }
}

/// Checks, as replay accepts blocks in log order, that the log holds the block each
/// watermark record names, where it names it.
///
/// Replay calls [`WatermarkCheck::segment_start`] when it starts a segment at slot 0,
/// [`WatermarkCheck::block`] for every block it accepts, and
/// [`WatermarkCheck::segment_end`] when it leaves a segment; each returns the issue of
/// the first record the log contradicts. [`WatermarkCheck::unreached`] says, at the
/// end, whether a record names a place replay never got to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatermarkCheck {
    /// The holder of the watermark, until it is confirmed.
    pending: Option<Expected>,
}

impl WatermarkCheck {
    /// The check of `watermark`'s holder, for a replay that starts at slot `slot` of
    /// segment `segment` (`None`: at the start of the log). A holder naming a place
    /// before the start cannot be checked and is left out, and so is a watermark of
    /// event 0 (nothing was acknowledged).
    #[must_use]
    pub fn new(watermark: &Watermark, start: Option<(u32, u32)>) -> Self {
        let pending = watermark
            .holder
            .filter(|(_, r)| r.last_event_id > 0)
            .filter(|(_, r)| match start {
                None => true,
                // The block before `next_slot` must be at or after the start; a record
                // at slot 0 needs the id before its segment, known only from an
                // earlier segment.
                Some((segment, slot)) if r.next_slot > 0 => {
                    (r.segment_index, r.next_slot - 1) >= (segment, slot)
                }
                Some((segment, _)) => r.segment_index > segment,
            })
            .map(|(kind, r)| Expected {
                kind,
                segment: r.segment_index,
                next_slot: r.next_slot,
                chain: r.chained_checksum,
                last_event_id: r.last_event_id,
            });
        Self { pending }
    }

    /// Replay starts segment `segment` at slot 0, the last event id before it being
    /// `last_event_id`: a record at slot 0 of it must record that id.
    pub fn segment_start(&mut self, segment: u32, last_event_id: u64) -> Result<(), Issue> {
        let Some(e) = self.pending else {
            return Ok(());
        };
        if e.segment < segment {
            // Its segment was passed without a block where it says (a missing segment,
            // or one that ended before): not the acknowledged history.
            return Err(e.mismatch(None));
        }
        if e.segment == segment && e.next_slot == 0 {
            if e.last_event_id != last_event_id {
                return Err(e.mismatch(None));
            }
            self.pending = None;
        }
        Ok(())
    }

    /// Replay accepted the block in slot `slot` of segment `segment`, whose chained
    /// checksum is `chain` and whose last event id is `last_event_id`.
    pub fn block(
        &mut self,
        segment: u32,
        slot: u32,
        chain: u64,
        last_event_id: u64,
    ) -> Result<(), Issue> {
        let Some(e) = self.pending else {
            return Ok(());
        };
        if e.segment == segment && e.next_slot.checked_sub(1) == Some(slot) {
            if (e.chain, e.last_event_id) != (chain, last_event_id) {
                return Err(e.mismatch(Some((chain, last_event_id))));
            }
            self.pending = None;
        }
        Ok(())
    }

    /// Replay leaves segment `segment` after accepting its blocks before slot
    /// `next_slot`: a record naming a later slot of it names a block that is not there.
    pub fn segment_end(&mut self, segment: u32, next_slot: u32) -> Result<(), Issue> {
        match self.pending {
            Some(e) if e.segment < segment || (e.segment == segment && e.next_slot > next_slot) => {
                Err(e.mismatch(None))
            }
            _ => Ok(()),
        }
    }

    /// The issue of a record naming a place replay never reached, if any.
    #[must_use]
    pub fn unreached(&self) -> Option<Issue> {
        self.pending.map(|e| e.mismatch(None))
    }

    /// Whether every record was confirmed (or none was to be checked).
    #[must_use]
    pub fn is_settled(&self) -> bool {
        self.pending.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(segment_index: u32, next_slot: u32, last_event_id: u64) -> CheckpointFields {
        CheckpointFields {
            segment_index,
            next_slot,
            last_event_id,
            chained_checksum: if next_slot == 0 {
                0
            } else {
                0xc0de ^ u64::from(next_slot)
            },
            written_ts_ns: 1,
        }
    }

    #[test]
    fn the_highest_record_holds_the_watermark() {
        let sealed = record(2, 16, 12_288);
        let mark = record(3, 4, 13_000);
        let w = Watermark::from_records([Some(sealed), Some(mark)]);
        assert_eq!(w.durable_event_id, 13_000);
        assert!(w.kept);
        assert_eq!(
            w.holder,
            Some((CheckpointKind::Synced, mark)),
            "the sealed record was superseded"
        );
        // The same id at two places: the later place holds it (retention may have
        // removed the earlier segment since).
        let later = record(3, 0, 12_288);
        let w = Watermark::from_records([Some(later), Some(sealed)]);
        assert_eq!(w.holder, Some((CheckpointKind::Sealed, later)));
        let w = Watermark::from_records([None, None]);
        assert_eq!((w.durable_event_id, w.kept), (0, false));
        let new_log = Watermark::from_records([Some(record(0, 0, 0)), None]);
        assert_eq!((new_log.durable_event_id, new_log.kept), (0, true));
        assert!(WatermarkCheck::new(&new_log, None).is_settled());
    }

    /// Replays a log shaped as `segments` (block count and the last id before each
    /// segment), with every block's chain `0xc0de ^ (slot + 1)` and its last id
    /// `before + 256 * (slot + 1)`, through the check; returns the first issue.
    fn drive(check: &mut WatermarkCheck, segments: &[(u32, u32, u64)]) -> Option<Issue> {
        for &(segment, blocks, before) in segments {
            if let Err(i) = check.segment_start(segment, before) {
                return Some(i);
            }
            for slot in 0..blocks {
                let last = before + 256 * u64::from(slot + 1);
                if let Err(i) = check.block(segment, slot, 0xc0de ^ u64::from(slot + 1), last) {
                    return Some(i);
                }
            }
            if let Err(i) = check.segment_end(segment, blocks) {
                return Some(i);
            }
        }
        check.unreached()
    }

    #[test]
    fn records_are_confirmed_or_contradicted_where_they_point() {
        // Segments 0..=2 of 16 blocks, then segment 3 with 5 blocks.
        let log = [(0, 16, 0), (1, 16, 4096), (2, 16, 8192), (3, 5, 12_288)];
        let mismatch = |i: Option<Issue>| {
            i.map(|i| match i.reason {
                Reason::WatermarkMismatch {
                    found_chain,
                    found_event_id,
                    ..
                } => (i.segment, i.block, found_chain, found_event_id),
                other => panic!("{other:?}"),
            })
        };
        /// Where the mismatch is, and the chain and last id found there.
        type Found = (u32, Option<u32>, Option<u64>, Option<u64>);
        let cases: [(CheckpointFields, Option<Found>); 7] = [
            // Where the log's blocks are: confirmed.
            (record(3, 4, 12_288 + 1024), None),
            (record(2, 16, 12_288), None),
            // The start of segment 3, after event 12 288: confirmed.
            (record(3, 0, 12_288), None),
            // The right place, another id: contradicted by the block found there.
            (
                record(3, 4, 99_999),
                Some((3, Some(3), Some(0xc0de ^ 4), Some(12_288 + 1024))),
            ),
            // Slot 9 of segment 3, which holds only 5 blocks: no block there.
            (record(3, 9, 12_288 + 2304), Some((3, Some(8), None, None))),
            // A segment after the end: never reached.
            (record(7, 2, 12_288 + 1792), Some((7, Some(1), None, None))),
            // The start of segment 3 after another id.
            (record(3, 0, 12_000), Some((3, Some(0), None, None))),
        ];
        for (r, want) in cases {
            let mut wrong_chain = r;
            let w = Watermark::from_records([None, Some(r)]);
            let mut check = WatermarkCheck::new(&w, None);
            assert_eq!(mismatch(drive(&mut check, &log)), want, "{r:?}");
            if want.is_none() && r.next_slot > 0 {
                wrong_chain.chained_checksum ^= 1;
                let w = Watermark::from_records([Some(wrong_chain), None]);
                let mut check = WatermarkCheck::new(&w, None);
                assert!(drive(&mut check, &log).is_some(), "{wrong_chain:?}");
            }
        }
    }

    #[test]
    fn a_skipped_segment_contradicts_a_record_in_it() {
        // The record names segment 2, but the log goes from segment 1 to segment 3
        // with ids that climbed past the watermark: history was replaced.
        let w = Watermark::from_records([Some(record(2, 3, 8192 + 768)), None]);
        let mut check = WatermarkCheck::new(&w, None);
        let issue = drive(&mut check, &[(0, 16, 0), (1, 16, 4096), (3, 16, 8192)]).unwrap();
        assert_eq!((issue.segment, issue.block), (2, Some(2)));
    }

    #[test]
    fn records_before_the_start_are_not_checked() {
        let w = Watermark::from_records([Some(record(3, 4, 13_312)), None]);
        assert!(!WatermarkCheck::new(&w, Some((3, 0))).is_settled());
        assert!(!WatermarkCheck::new(&w, Some((3, 3))).is_settled());
        assert!(WatermarkCheck::new(&w, Some((3, 4))).is_settled());
        assert!(WatermarkCheck::new(&w, Some((4, 0))).is_settled());
        let at_start = Watermark::from_records([Some(record(3, 0, 12_288)), None]);
        assert!(WatermarkCheck::new(&at_start, Some((3, 0))).is_settled());
        assert!(!WatermarkCheck::new(&at_start, Some((2, 0))).is_settled());
    }
}
