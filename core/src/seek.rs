//! Seek: start replay at an event id without presenting anything past damage it could
//! have seen.
//!
//! [`Replay::seek`] reads the header of every segment in order, from the first one
//! present to the one holding the target (one 64-byte read each, plus the first block
//! header of an open last segment), and checks what those headers vouch for:
//!
//! - every index in the store's range is present, and every header verifies (magic,
//!   version, size, checksum, its own index, the relations between a sealed header's
//!   totals);
//! - every segment but the last is sealed (an open header anywhere else is damage);
//! - event ids continue: each non-empty segment's first id is above the last id of
//!   the non-empty segment before it.
//!
//! Replay then starts at **slot 0** of the segment holding the target, with the id
//! rule seeded by the last id the sealed headers before it record. Every block of that
//! segment before the target is verified as usual (checksums, chain, ids), as is
//! everything after it; only events at or after the target are yielded. Damage in the
//! starting segment, in a header the seek read, or in the ids those headers record is
//! therefore reported, and no event past it is yielded.
//!
//! What a seek does not read is the blocks of the segments before the starting one:
//! their sealed headers vouch for their totals and ids, not for their bytes, so a
//! flipped bit inside them goes unseen. [`Replay::seek_verifying_prefix`] replays those
//! too and misses nothing a strict replay from the beginning catches.
//!
//! Wherever a check fails, or the seek meets something it cannot trust, it gives up
//! and replay starts from the beginning, skipping events below the target: strict
//! replay then reports the damage exactly as it would without a seek. Giving up is
//! only ever slower, never less strict.

use zerocopy::IntoBytes;

use crate::block_header::BlockHeader;
use crate::device::BlockDevice;
use crate::error::Error;
use crate::limits::{SEGMENT_HEADER_SIZE_BYTES, SEGMENT_INDEX_MAX, block_offset_bytes};
use crate::replay::{Replay, StartPoint};
use crate::segment_header::{HeaderState, SegmentHeader};
use crate::store::SegmentStore;

impl<S: SegmentStore> Replay<S> {
    /// Positions replay so that the first event it yields is the first one whose id is
    /// at least `event_id`. Call before the first [`Replay::step`].
    ///
    /// It checks the header of every segment up to the one holding `event_id` (present,
    /// valid, sealed before the last, ids continuing) and verifies every block of that
    /// segment from slot 0, so it never yields an event past damage in those; on any
    /// doubt it replays from the beginning instead (see the [module docs](self)).
    ///
    /// What it can miss: damage inside the blocks of the segments before the starting
    /// one, whose sealed headers vouch only for their totals and ids, not for their
    /// block bytes. [`Replay::seek_verifying_prefix`] misses nothing.
    pub fn seek(&mut self, event_id: u64) -> Result<(), Error<S::Error>> {
        if !self.is_at_start() {
            return Err(Error::LogicBug("seek after replay started"));
        }
        self.set_skip_below(event_id);
        self.start = self.find_start(event_id)?;
        Ok(())
    }

    /// Positions replay like [`Replay::seek`], but verifies everything before
    /// `event_id` as well: replay starts at the first segment, checks every rule of the
    /// format on the way, and yields only events whose id is at least `event_id`. Call
    /// before the first [`Replay::step`].
    ///
    /// It misses nothing a strict replay from the beginning catches, and it reports the
    /// same first problem; it reads the whole log before the target to do so.
    pub fn seek_verifying_prefix(&mut self, event_id: u64) -> Result<(), Error<S::Error>> {
        if !self.is_at_start() {
            return Err(Error::LogicBug("seek after replay started"));
        }
        self.set_skip_below(event_id);
        self.start = None;
        Ok(())
    }

    /// Where replay should start, or `None` to start from the beginning.
    fn find_start(&mut self, event_id: u64) -> Result<Option<StartPoint>, Error<S::Error>> {
        let store = self.store_mut();
        let Some((first, last)) = store.segment_range()? else {
            return Ok(None);
        };
        // Indices above SEGMENT_INDEX_MAX cannot be named; a store reporting one is not
        // to be trusted, and the bound keeps the loop below within SEGMENT_INDEX_MAX + 1
        // header reads.
        if first > last || last > SEGMENT_INDEX_MAX {
            return Ok(None);
        }
        let mut scan = Scan::START;
        for index in first..=last {
            let facts = read_facts(store, index)?;
            match decide(scan, index, index == last, facts, event_id) {
                Verdict::Next(next) => scan = next,
                Verdict::Stop => break,
                Verdict::FromBeginning => return Ok(None),
            }
        }
        Ok(start_point(scan, first))
    }
}

/// What a seek reads about one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Facts {
    /// The index is in the store's range, but the segment is not there.
    Missing,
    /// Something the seek cannot trust: a header that does not verify (or a file too
    /// short to hold one), or an open segment whose first block header does not.
    Damaged,
    /// A verified sealed header: its event count and id range (both ids 0 when the
    /// count is 0).
    Sealed {
        event_count: u32,
        first_event_id: u64,
        last_event_id: u64,
    },
    /// A verified open header, and the first event id of its slot 0 block header
    /// (`None` when that header is blank: the segment holds no block yet).
    Open { first_event_id: Option<u64> },
}

/// How far the scan over segment headers has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scan {
    /// The last segment so far whose first event id is at most the target, with the
    /// last event id the sealed headers before it record (0 when none does).
    candidate: Option<Candidate>,
    /// The last event id of the last non-empty segment so far (0 before any). For an
    /// open segment, which can only be the last, its first event id.
    last_event_id: u64,
}

/// A segment replay could start in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Candidate {
    segment: u32,
    /// The last event id before the segment.
    previous_event_id: u64,
}

impl Scan {
    const START: Self = Self {
        candidate: None,
        last_event_id: 0,
    };
}

/// What to do after reading one segment's facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Read the next segment (if any), with the scan so far.
    Next(Scan),
    /// This segment starts after the target: start at the candidate.
    Stop,
    /// A check failed: replay from the beginning.
    FromBeginning,
}

/// The pure step of the scan: segment `index` (the store's last when `is_last`) has
/// `facts`; seeking to `target`.
fn decide(scan: Scan, index: u32, is_last: bool, facts: Facts, target: u64) -> Verdict {
    // The first id of a non-empty segment and, when its header records it, its last.
    let (first_event_id, last_event_id) = match facts {
        Facts::Missing | Facts::Damaged => return Verdict::FromBeginning,
        Facts::Open { .. } if !is_last => return Verdict::FromBeginning,
        Facts::Sealed { event_count: 0, .. }
        | Facts::Open {
            first_event_id: None,
        } => return Verdict::Next(scan),
        Facts::Sealed {
            first_event_id,
            last_event_id,
            ..
        } => (first_event_id, last_event_id),
        // An open segment's last id is unknown, but no segment follows it.
        Facts::Open {
            first_event_id: Some(first_event_id),
        } => (first_event_id, first_event_id),
    };
    if first_event_id <= scan.last_event_id {
        return Verdict::FromBeginning;
    }
    if first_event_id > target {
        return Verdict::Stop;
    }
    Verdict::Next(Scan {
        candidate: Some(Candidate {
            segment: index,
            previous_event_id: scan.last_event_id,
        }),
        last_event_id,
    })
}

/// Where replay starts once the scan is over: slot 0 of the candidate, or `None`
/// (the beginning) when there is none or it is the first segment anyway.
fn start_point(scan: Scan, first: u32) -> Option<StartPoint> {
    let c = scan.candidate.filter(|c| c.segment != first)?;
    Some(StartPoint {
        segment: c.segment,
        slot: 0,
        chain: Some(0),
        last_event_id: c.previous_event_id,
    })
}

/// Reads what the seek needs to know about segment `index`.
fn read_facts<S: SegmentStore>(store: &mut S, index: u32) -> Result<Facts, S::Error> {
    let Some(mut device) = store.open_segment(index)? else {
        return Ok(Facts::Missing);
    };
    if device.len_bytes() < SEGMENT_HEADER_SIZE_BYTES as u64 {
        return Ok(Facts::Damaged);
    }
    let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
    device.read_exact_at(0, &mut raw)?;
    Ok(match SegmentHeader::read_from(&raw).check(index) {
        Err(_) => Facts::Damaged,
        Ok(HeaderState::Sealed(t)) => Facts::Sealed {
            event_count: t.event_count,
            first_event_id: t.first_event_id,
            last_event_id: t.last_event_id,
        },
        Ok(HeaderState::Open) => match first_block_id(&mut device)? {
            Some(first_event_id) => Facts::Open { first_event_id },
            None => Facts::Damaged,
        },
    })
}

/// The first event id of the block header in slot 0: `Some(None)` when the header is
/// blank, `None` when it cannot be trusted (not all there, or not verifying).
fn first_block_id<D: BlockDevice>(device: &mut D) -> Result<Option<Option<u64>>, D::Error> {
    let offset = block_offset_bytes(0);
    let mut header = BlockHeader::BLANK;
    if offset.saturating_add(header.as_bytes().len() as u64) > device.len_bytes() {
        return Ok(None);
    }
    device.read_exact_at(offset, header.as_mut_bytes())?;
    if header.is_blank() {
        return Ok(Some(None));
    }
    Ok(header.check(0).ok().map(|()| Some(header.first_event_id())))
}

#[cfg(test)]
// Tests run on 64-bit hosts, where segment offsets fit in usize.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::event::RequestEvent;
    use crate::issue::{Reason, Status};
    use crate::limits::{BLOCK_SIZE_BYTES, segment_size_bytes};
    use crate::mem::MemStore;
    use crate::reference::reference_event;
    use crate::replay::{Mode, Step};
    use crate::segment_header::SealedTotals;
    use crate::testutil::{Replayed, ids, reference_log, replay, write_events};

    /// Flips one bit of segment `seg` at `offset`.
    fn flip(store: &mut MemStore, seg: u32, offset: u64) {
        store
            .with_bytes_mut(seg, |b| b[offset as usize] ^= 0x10)
            .unwrap();
    }

    /// Replays `store` strictly from the beginning, then seeking to `target` with
    /// [`Replay::seek`], and checks the seek reports the first issue strict replay
    /// does and yields exactly the events >= `target` that strict replay yields.
    fn seek_agrees_with_strict(store: &mut MemStore, target: u64) -> Replayed {
        let strict = replay(store, Mode::Strict, None);
        let sought = replay(store, Mode::Strict, Some(target));
        let want: Vec<u64> = strict
            .ids
            .iter()
            .copied()
            .filter(|&i| i >= target)
            .collect();
        assert_eq!(sought.ids, want, "seek {target}");
        assert_eq!(
            sought.summary.first_issue, strict.summary.first_issue,
            "seek {target}"
        );
        assert_eq!(
            sought.summary.status, strict.summary.status,
            "seek {target}"
        );
        sought
    }

    /// Replays `store` strictly after [`Replay::seek_verifying_prefix`].
    fn replay_verifying_prefix(store: &mut MemStore, target: u64) -> Replayed {
        let mut r = Replay::new(store, Mode::Strict);
        r.seek_verifying_prefix(target).unwrap();
        let mut ids = Vec::new();
        let mut issues = Vec::new();
        while let Some(step) = r.step().unwrap() {
            match step {
                Step::Block(b) => ids.extend(b.events.iter().map(RequestEvent::event_id)),
                Step::Issue(i) => issues.push(i),
                Step::Segment(_) => {}
            }
        }
        Replayed {
            ids,
            events: Vec::new(),
            issues,
            summary: *r.summary(),
        }
    }

    /// The first event id of each segment holding events, from a strict replay.
    fn segment_first_ids(store: &mut MemStore) -> Vec<(u32, u64)> {
        let mut r = Replay::new(store, Mode::Strict);
        let mut out: Vec<(u32, u64)> = Vec::new();
        while let Some(step) = r.step().unwrap() {
            if let Step::Block(b) = step {
                let first = b.events.first().map(RequestEvent::event_id);
                if let (Some(first), true) = (first, out.last().is_none_or(|l| l.0 != b.segment)) {
                    out.push((b.segment, first));
                }
            }
        }
        out
    }

    /// Where a seek into `store` starts.
    fn start_of(store: &mut MemStore, target: u64) -> Option<(u32, u32, u64)> {
        let mut r = Replay::new(store, Mode::Strict);
        r.seek(target).unwrap();
        r.start.map(|p| (p.segment, p.slot, p.last_event_id))
    }

    /// Rewrites the header of segment `seg` with `edit` applied to its sealed totals,
    /// with a valid checksum: a header that verifies on its own but lies.
    fn forge_totals(store: &mut MemStore, seg: u32, edit: impl FnOnce(&mut SealedTotals)) {
        store
            .with_bytes_mut(seg, |b| {
                let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
                raw.copy_from_slice(&b[..SEGMENT_HEADER_SIZE_BYTES]);
                let h = SegmentHeader::read_from(&raw);
                let Ok(HeaderState::Sealed(mut t)) = h.check(seg) else {
                    panic!("segment {seg} is sealed");
                };
                edit(&mut t);
                let forged = h.sealed(&t, h.closed_ts_ns());
                b[..SEGMENT_HEADER_SIZE_BYTES].copy_from_slice(forged.as_bytes());
            })
            .unwrap();
    }

    #[test]
    fn decisions() {
        let scan = |candidate: Option<(u32, u64)>, last_event_id| Scan {
            candidate: candidate.map(|(segment, previous_event_id)| Candidate {
                segment,
                previous_event_id,
            }),
            last_event_id,
        };
        let sealed = |first_event_id, last_event_id| Facts::Sealed {
            event_count: 1,
            first_event_id,
            last_event_id,
        };
        let empty = Facts::Sealed {
            event_count: 0,
            first_event_id: 0,
            last_event_id: 0,
        };
        let open = |first_event_id| Facts::Open { first_event_id };
        let next = |candidate, last| Verdict::Next(scan(candidate, last));
        let start = scan(None, 0);
        let after_0 = scan(Some((0, 0)), 100);
        // (scan, index, is_last, facts, target) -> verdict
        let table = [
            // Anything untrusted, anywhere before the stop, sends replay to the start.
            (start, 0, false, Facts::Missing, 50, Verdict::FromBeginning),
            (start, 0, true, Facts::Damaged, 50, Verdict::FromBeginning),
            (
                after_0,
                1,
                false,
                Facts::Missing,
                500,
                Verdict::FromBeginning,
            ),
            (
                after_0,
                1,
                true,
                Facts::Damaged,
                500,
                Verdict::FromBeginning,
            ),
            // An open header before the last segment is damage, even an empty one.
            (
                after_0,
                1,
                false,
                open(Some(101)),
                500,
                Verdict::FromBeginning,
            ),
            (after_0, 1, false, open(None), 500, Verdict::FromBeginning),
            // Ids that do not continue across headers.
            (
                after_0,
                1,
                false,
                sealed(100, 200),
                500,
                Verdict::FromBeginning,
            ),
            (
                after_0,
                1,
                false,
                sealed(50, 200),
                500,
                Verdict::FromBeginning,
            ),
            (
                after_0,
                1,
                true,
                open(Some(100)),
                500,
                Verdict::FromBeginning,
            ),
            // ... even in the segment that would stop the scan.
            (
                after_0,
                1,
                false,
                sealed(90, 900),
                80,
                Verdict::FromBeginning,
            ),
            // A segment holding the target, or before it, becomes the candidate.
            (start, 0, false, sealed(1, 100), 50, next(Some((0, 0)), 100)),
            (start, 0, false, sealed(1, 100), 1, next(Some((0, 0)), 100)),
            (
                after_0,
                1,
                false,
                sealed(101, 200),
                101,
                next(Some((1, 100)), 200),
            ),
            (
                after_0,
                1,
                false,
                sealed(150, 200),
                500,
                next(Some((1, 100)), 200),
            ),
            (
                after_0,
                1,
                true,
                open(Some(101)),
                500,
                next(Some((1, 100)), 101),
            ),
            // Empty segments change nothing.
            (after_0, 1, false, empty, 500, Verdict::Next(after_0)),
            (after_0, 1, true, open(None), 500, Verdict::Next(after_0)),
            // A segment starting after the target stops the scan.
            (after_0, 1, false, sealed(101, 200), 100, Verdict::Stop),
            (start, 0, false, sealed(10, 100), 5, Verdict::Stop),
            (after_0, 1, true, open(Some(101)), 100, Verdict::Stop),
        ];
        for (scan, index, is_last, facts, target, want) in table {
            assert_eq!(
                decide(scan, index, is_last, facts, target),
                want,
                "{scan:?} {index} {is_last} {facts:?} {target}"
            );
        }
        // The first segment is the beginning; any later candidate starts at slot 0,
        // seeded with the last id before it.
        assert!(start_point(scan(None, 0), 0).is_none());
        assert!(start_point(scan(Some((3, 0)), 100), 3).is_none());
        let p = start_point(scan(Some((4, 700)), 900), 3).unwrap();
        assert_eq!(
            (p.segment, p.slot, p.chain, p.last_event_id),
            (4, 0, Some(0), 700)
        );
    }

    #[test]
    fn a_clean_log_yields_exactly_the_events_from_the_target() {
        // Segments of 4096 events: 1..=4096, 4097..=8192, 8193..=10000.
        let mut store = reference_log(10_000, 16, true);
        for target in [
            0, 1, 2, 255, 256, 257, 4095, 4096, 4097, 5000, 8192, 8193, 9999, 10_000,
        ] {
            let r = seek_agrees_with_strict(&mut store, target);
            assert_eq!(r.ids, ids(target.max(1)..=10_000), "seek {target}");
            assert_eq!(r.summary.status, Status::Ok);
        }
        // Past the end: nothing, and no problem.
        let r = seek_agrees_with_strict(&mut store, 10_001);
        assert!(r.ids.is_empty());
        assert_eq!(r.summary.status, Status::Ok);
        let r = seek_agrees_with_strict(&mut store, u64::MAX);
        assert!(r.ids.is_empty());
    }

    #[test]
    fn the_seek_starts_at_slot_0_of_the_segment_holding_the_target() {
        let mut store = reference_log(10_000, 16, true);
        // Into the first segment (and before the start): that is the beginning.
        assert_eq!(start_of(&mut store, 0), None);
        assert_eq!(start_of(&mut store, 1), None);
        assert_eq!(start_of(&mut store, 4096), None);
        assert_eq!(start_of(&mut store, 4097), Some((1, 0, 4096)));
        assert_eq!(start_of(&mut store, 8192), Some((1, 0, 4096)));
        assert_eq!(start_of(&mut store, 9000), Some((2, 0, 8192)));
        assert_eq!(start_of(&mut store, u64::MAX), Some((2, 0, 8192)));
    }

    #[test]
    fn seek_into_an_open_last_segment() {
        // Sparse ids (3, 6, 9, ...), synced every 1000 events, never sealed: segment 2
        // is open and ends in a partial block.
        let mut store = write_events(
            (1..=10_000).map(|i| reference_event(3 * i)),
            16,
            Some(1000),
            false,
        );
        let firsts = segment_first_ids(&mut store);
        let [(0, 3), (1, first_1), (2, first_2)] = firsts[..] else {
            panic!("three segments: {firsts:?}");
        };
        let all: Vec<u64> = (1..=10_000).map(|i| 3 * i).collect();
        for target in [
            0,
            3,
            4,
            first_1,
            first_2 - 1,
            first_2,
            first_2 + 1,
            29_999,
            30_000,
        ] {
            let r = seek_agrees_with_strict(&mut store, target);
            let want: Vec<u64> = all.iter().copied().filter(|&i| i >= target).collect();
            assert_eq!(r.ids, want, "seek {target}");
            assert_eq!(r.summary.status, Status::Ok);
            assert!(r.summary.open_segment);
        }
        assert_eq!(start_of(&mut store, first_2), Some((2, 0, first_2 - 3)));
        assert_eq!(start_of(&mut store, first_2 - 1), Some((1, 0, first_1 - 3)));
        let r = seek_agrees_with_strict(&mut store, 30_001);
        assert!(r.ids.is_empty());
    }

    #[test]
    fn seek_past_the_end_into_an_empty_open_segment() {
        // Segment 0 sealed with 1..=4096, then an open segment 1 with no block yet: the
        // writer rotated and stopped.
        let mut store = reference_log(4096, 16, true);
        let mut image = SegmentHeader::new_open(1, 5).as_bytes().to_vec();
        image.resize(segment_size_bytes(16) as usize, 0);
        store.insert_image(1, image);
        let strict = replay(&mut store, Mode::Strict, None);
        assert_eq!(strict.ids, ids(1..=4096));
        assert_eq!(strict.summary.status, Status::Ok);
        for target in [4000, 4096, 4097, 1_000_000] {
            seek_agrees_with_strict(&mut store, target);
            assert_eq!(start_of(&mut store, target), None, "seek {target}");
        }
    }

    #[test]
    fn damage_in_the_starting_segment_before_the_target_is_reported() {
        // Issue 9, defect 7: a flipped bit inside an event of block 5 of segment 1
        // (events 5377..=5632). Seeking past it must not yield anything after it.
        let mut store = reference_log(10_000, 16, true);
        flip(&mut store, 1, block_offset_bytes(5) + 164);
        for target in [4097, 5000, 5376, 5377, 5700, 8192] {
            let r = seek_agrees_with_strict(&mut store, target);
            assert!(r.ids.iter().all(|&i| i <= 5376), "seek {target}");
            let issue = r.summary.first_issue.unwrap();
            assert_eq!(
                (issue.segment, issue.block, issue.offset_bytes),
                (1, Some(5), block_offset_bytes(5))
            );
            assert!(matches!(issue.reason, Reason::BlockChecksumMismatch { .. }));
            assert_eq!(r.summary.status, Status::Corrupt);
        }
        assert_eq!(
            replay(&mut store, Mode::Strict, Some(5000)).ids,
            ids(5000..=5376)
        );
        assert!(replay(&mut store, Mode::Strict, Some(5700)).ids.is_empty());
        // A seek into segment 2 does not read segment 1's blocks: the documented
        // trade (see below).
        assert_eq!(
            replay(&mut store, Mode::Strict, Some(9000)).summary.status,
            Status::Ok
        );
    }

    #[test]
    fn a_damaged_earlier_header_is_reported_as_strict_replay_reports_it() {
        let mut store = reference_log(10_000, 16, true);
        flip(&mut store, 1, 20);
        for target in [8193, 9000, 10_000] {
            let r = seek_agrees_with_strict(&mut store, target);
            assert!(r.ids.is_empty());
            let issue = r.summary.first_issue.unwrap();
            assert_eq!((issue.segment, issue.block), (1, None));
            assert!(matches!(
                issue.reason,
                Reason::SegmentHeaderChecksumMismatch { .. }
            ));
        }
        assert_eq!(start_of(&mut store, 9000), None);
    }

    #[test]
    fn a_missing_earlier_segment_is_reported_as_strict_replay_reports_it() {
        let mut store = reference_log(10_000, 16, true);
        store.remove(1).unwrap();
        let r = seek_agrees_with_strict(&mut store, 9000);
        assert!(r.ids.is_empty());
        let issue = r.summary.first_issue.unwrap();
        assert_eq!((issue.segment, issue.reason), (1, Reason::MissingSegment));
        assert_eq!(r.summary.status, Status::Corrupt);
        // Without its first segment, the log starts at segment 1 (retention does that).
        let mut store = reference_log(10_000, 16, true);
        store.remove(0).unwrap();
        assert_eq!(start_of(&mut store, 9000), Some((2, 0, 8192)));
        let r = seek_agrees_with_strict(&mut store, 9000);
        assert_eq!(r.ids, ids(9000..=10_000));
    }

    #[test]
    fn an_unsealed_earlier_segment_is_reported_as_strict_replay_reports_it() {
        // Open and not full (its last block gone): not sealed late, damage.
        let mut store = reference_log(10_000, 16, true);
        let open = SegmentHeader::new_open(1, 5);
        store
            .with_bytes_mut(1, |b| {
                b[..SEGMENT_HEADER_SIZE_BYTES].copy_from_slice(open.as_bytes());
                let at = usize::try_from(crate::limits::block_offset_bytes(15)).unwrap();
                b[at..at + crate::limits::BLOCK_SIZE_BYTES].fill(0);
            })
            .unwrap();
        let r = seek_agrees_with_strict(&mut store, 9000);
        assert!(r.ids.is_empty());
        assert_eq!(
            r.summary.first_issue.unwrap().reason,
            Reason::UnsealedSegmentNotLast
        );
        assert_eq!(start_of(&mut store, 9000), None);
    }

    #[test]
    fn ids_that_do_not_continue_across_headers_are_reported_as_strict_replay_reports_them() {
        // Segment 1's header claims ids from 4000 on, below segment 0's last (4096).
        let mut store = reference_log(10_000, 16, true);
        forge_totals(&mut store, 1, |t| t.first_event_id = 4000);
        let r = seek_agrees_with_strict(&mut store, 9000);
        assert!(r.ids.is_empty());
        let issue = r.summary.first_issue.unwrap();
        assert_eq!(
            (issue.segment, issue.reason),
            (
                1,
                Reason::HeaderDisagreesWithBlocks {
                    field: "first_event_id"
                }
            )
        );
        assert_eq!(start_of(&mut store, 9000), None);

        // Segment 1 is segment 0 again under its own index: a valid header whose ids
        // repeat segment 0's.
        let mut store = reference_log(10_000, 16, true);
        let mut image = store.image(0).unwrap();
        let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
        raw.copy_from_slice(&image[..SEGMENT_HEADER_SIZE_BYTES]);
        let h = SegmentHeader::read_from(&raw);
        let Ok(HeaderState::Sealed(totals)) = h.check(0) else {
            panic!("segment 0 is sealed");
        };
        let renumbered =
            SegmentHeader::new_open(1, h.created_ts_ns()).sealed(&totals, h.closed_ts_ns());
        image[..SEGMENT_HEADER_SIZE_BYTES].copy_from_slice(renumbered.as_bytes());
        store.insert_image(1, image);
        let r = seek_agrees_with_strict(&mut store, 9000);
        assert!(r.ids.is_empty());
        assert_eq!(
            r.summary.first_issue.unwrap().reason,
            Reason::EventIdRegression {
                first: 1,
                previous: 4096
            }
        );
        assert_eq!(start_of(&mut store, 9000), None);
    }

    #[test]
    fn a_lying_sealed_header_of_the_starting_segment_is_caught_by_its_blocks() {
        // The header verifies on its own but its totals disagree with its blocks: the
        // seek verifies the whole starting segment, so it sees that.
        let mut store = reference_log(10_000, 16, true);
        forge_totals(&mut store, 1, |t| t.event_count -= 1);
        let r = seek_agrees_with_strict(&mut store, 5000);
        assert_eq!(r.ids, ids(5000..=8192));
        assert_eq!(
            r.summary.first_issue.unwrap().reason,
            Reason::HeaderDisagreesWithBlocks {
                field: "event_count"
            }
        );
    }

    #[test]
    fn damage_inside_an_earlier_sealed_segment_is_the_documented_trade() {
        // A flipped bit inside an event of block 3 of segment 0, its header intact.
        let mut store = reference_log(10_000, 16, true);
        flip(&mut store, 0, block_offset_bytes(3) + 64 + 100);
        let strict = replay(&mut store, Mode::Strict, None);
        assert_eq!(strict.ids, ids(1..=768));

        // `seek` into segment 2 reads only segment 0's header: it does not see it.
        let r = replay(&mut store, Mode::Strict, Some(9000));
        assert_eq!(r.ids, ids(9000..=10_000));
        assert_eq!(r.summary.status, Status::Ok);
        // A seek into segment 0 itself verifies it from slot 0.
        seek_agrees_with_strict(&mut store, 1000);

        // The verifying variant does, exactly as strict replay does.
        let v = replay_verifying_prefix(&mut store, 9000);
        assert!(v.ids.is_empty());
        assert_eq!(v.summary.first_issue, strict.summary.first_issue);
        assert_eq!(v.summary.status, strict.summary.status);
        assert_eq!(v.issues.len(), 1);
        let v = replay_verifying_prefix(&mut store, 500);
        assert_eq!(v.ids, ids(500..=768));
    }

    #[test]
    fn the_verifying_variant_on_a_clean_log_yields_the_events_from_the_target() {
        let mut store = reference_log(10_000, 16, true);
        for target in [0, 1, 4097, 9000, 10_000] {
            let v = replay_verifying_prefix(&mut store, target);
            assert_eq!(v.ids, ids(target.max(1)..=10_000));
            assert_eq!(v.summary.status, Status::Ok);
        }
        assert!(replay_verifying_prefix(&mut store, 10_001).ids.is_empty());
    }

    #[test]
    fn no_single_bit_flip_in_a_header_or_block_header_makes_a_seek_yield_more() {
        // One bit at a time in every segment header and every block header of segment 1
        // (the one the seek starts in): the seek never yields an event strict replay
        // does not, and reports the same first problem.
        let original = reference_log(10_000, 16, true);
        let mut offsets: Vec<(u32, u64)> = Vec::new();
        for seg in 0..3 {
            offsets.extend((0..SEGMENT_HEADER_SIZE_BYTES as u64).map(|o| (seg, o)));
        }
        for slot in 0..16 {
            let start = block_offset_bytes(slot);
            offsets.extend((start..start + 64).step_by(3).map(|o| (1, o)));
            offsets.extend(
                (start + 64..start + BLOCK_SIZE_BYTES as u64)
                    .step_by(4099)
                    .map(|o| (1, o)),
            );
        }
        for (seg, offset) in offsets {
            let mut store = original.snapshot();
            flip(&mut store, seg, offset);
            seek_agrees_with_strict(&mut store, 6000);
        }
    }

    #[test]
    fn seeking_after_replay_started_is_a_logic_bug() {
        let mut store = reference_log(1000, 16, true);
        let mut r = Replay::new(&mut store, Mode::Strict);
        r.step().unwrap();
        assert!(matches!(r.seek(5), Err(Error::LogicBug(_))));
        assert!(matches!(
            r.seek_verifying_prefix(5),
            Err(Error::LogicBug(_))
        ));
    }
}
