//! What reopening a log for append does with what strict replay found: go on, set a
//! torn tail aside, or refuse. One pure function, [`decide`], tested as a table; the
//! writer ([`crate::writer::WalWriter::open`]) carries the decision out.
//!
//! The rules, in order:
//!
//! 1. A log that is not the acknowledged history (the block a watermark record names
//!    is not where it says) is refused, whatever else holds.
//! 2. A log whose valid prefix ends before its durable watermark has lost data a sync
//!    covered: refused, and never cleared or set aside.
//! 3. A torn tail (slots after the last valid block of the open last segment that do
//!    not verify, and nothing valid after them) is set aside: the segment is sealed at
//!    its last valid block, the slots after it stay as they are, unread by replay
//!    (`fswal preserved` lists and exports them), and appending goes on in a new
//!    segment. Nothing is copied and nothing is erased.
//! 4. Valid blocks after a hole in that same tail are what writes reordered by a crash
//!    leave; they are set aside the same way, but only for a log fswal kept a
//!    watermark for, which proves none of them was acknowledged. Without one (a log
//!    the C++ recorder wrote, or whose records were deleted) that is damage: refused.
//! 5. An open last segment too short to append to (a truncated file) is sealed where
//!    its valid blocks end, and appending goes on in a new segment.
//! 6. Any other problem (damage before the end, a sealed segment missing blocks, a
//!    damaged header, a missing segment) is refused, and nothing is changed.

use zerocopy::IntoBytes;

use crate::block::Block;
use crate::device::BlockDevice;
use crate::issue::{Issue, Reason, Status};
use crate::limits::{
    BLOCK_HEADER_SIZE_BYTES, block_offset_bytes, is_valid_segment_blocks, slot_bytes_present,
    slots_in,
};
use crate::replay::Summary;
use crate::watermark::Watermark;

/// What replay found, as far as the decision goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Findings {
    /// Replay's verdict.
    pub status: Status,
    /// The first problem, if any.
    pub first_issue: Option<Issue>,
    /// The last event of the valid prefix (0: none).
    pub found_event_id: u64,
    /// The durable watermark.
    pub durable_event_id: u64,
    /// Whether fswal kept a watermark for this log (some record decodes).
    pub watermark_kept: bool,
    /// The segment a writer would go on in, if any.
    pub tail: Option<TailFacts>,
    /// The highest segment index present.
    pub last_segment: Option<u32>,
}

/// The segment where the valid prefix ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TailFacts {
    /// Its index.
    pub segment: u32,
    /// Whether its header is sealed.
    pub sealed: bool,
    /// Whole block slots it holds.
    pub slots: u32,
    /// The first slot after its last valid block.
    pub next_slot: u32,
}

impl Findings {
    /// The findings of a strict replay that gave `summary`, and found the log to reach
    /// event `found_event_id`, over a log with `watermark` whose highest segment index
    /// is `last_segment`.
    #[must_use]
    pub fn of(
        summary: &Summary,
        found_event_id: u64,
        watermark: &Watermark,
        last_segment: Option<u32>,
    ) -> Self {
        Self {
            status: summary.status,
            first_issue: summary.first_issue,
            found_event_id,
            durable_event_id: watermark.durable_event_id,
            watermark_kept: watermark.kept,
            tail: summary.tail.map(|t| TailFacts {
                segment: t.segment,
                sealed: t.sealed,
                slots: t.slots,
                next_slot: t.next_slot,
            }),
            last_segment,
        }
    }

    /// Whether the first problem lies in the open last segment, after its last valid
    /// block: a tail that no problem before it vouches for.
    fn problem_is_in_open_tail(&self) -> bool {
        let (Some(issue), Some(tail), Some(last)) =
            (self.first_issue, self.tail, self.last_segment)
        else {
            return false;
        };
        issue.segment == last
            && tail.segment == last
            && !tail.sealed
            && issue.block.is_some_and(|b| b >= tail.next_slot)
    }
}

/// Why recovery seals the open last segment early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealReason {
    /// Its slots after the last valid block hold bytes that do not verify (a torn or
    /// reordered tail). `past_watermark` says whether a durable watermark proves that
    /// none of them was acknowledged; without one, they may hold data a sync made
    /// durable, and recovery says so.
    TornTail {
        /// Whether the watermark proves they were never acknowledged.
        past_watermark: bool,
    },
    /// It has fewer block slots than a segment may (a truncated file): nothing can be
    /// appended to it.
    TooShort,
}

/// Why recovery refuses; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Damage that is not a torn tail.
    Damaged,
    /// The valid prefix ends before the durable watermark.
    DurableDataMissing,
    /// The block a watermark record names is not where it says.
    HistoryReplaced,
}

/// What reopening a log does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// No segment yet: a new log.
    Start,
    /// Go on in the open last segment, after its last valid block.
    Resume,
    /// Go on in a new segment after the sealed last one.
    AfterSealed,
    /// Seal the open last segment at its last valid block, leave what follows it in
    /// place, and go on in a new segment.
    SealTail(SealReason),
    /// Refuse, changing nothing.
    Refuse(Refusal),
}

/// The decision for `f` (see the module docs for the rules).
#[must_use]
pub fn decide(f: &Findings) -> Decision {
    if matches!(
        f.first_issue.map(|i| i.reason),
        Some(Reason::WatermarkMismatch { .. })
    ) {
        return Decision::Refuse(Refusal::HistoryReplaced);
    }
    let lost_durable = f.found_event_id < f.durable_event_id;
    match f.status {
        Status::Ok if lost_durable => Decision::Refuse(Refusal::DurableDataMissing),
        Status::Ok => match f.tail {
            None => Decision::Start,
            Some(t) if t.sealed => Decision::AfterSealed,
            Some(t) if is_valid_segment_blocks(t.slots) => Decision::Resume,
            Some(_) => Decision::SealTail(SealReason::TooShort),
        },
        Status::Corrupt if f.problem_is_in_open_tail() && f.watermark_kept => {
            if lost_durable {
                Decision::Refuse(Refusal::DurableDataMissing)
            } else {
                Decision::SealTail(SealReason::TornTail {
                    past_watermark: true,
                })
            }
        }
        Status::Corrupt => Decision::Refuse(Refusal::Damaged),
        Status::Truncated if lost_durable => Decision::Refuse(Refusal::DurableDataMissing),
        Status::Truncated if f.problem_is_in_open_tail() => {
            Decision::SealTail(SealReason::TornTail {
                past_watermark: f.watermark_kept,
            })
        }
        Status::Truncated => Decision::Refuse(Refusal::Damaged),
    }
}

/// Non-blank block slots after a segment's sealed end, which recovery left in place:
/// replay never reads them (a sealed header says how many blocks there are), nothing
/// erased them, and they go only when retention removes the segment. `fswal preserved`
/// lists and exports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetAside {
    /// The first non-blank slot.
    pub first_slot: u32,
    /// The last non-blank slot (a trailing partial slot included).
    pub last_slot: u32,
    /// Non-blank slots among `first_slot..=last_slot`.
    pub slots: u32,
    /// Bytes in those slots.
    pub bytes: u64,
    /// The lowest first event id and the highest last event id that the block headers
    /// among them claim, for those whose own checksum and fields hold (whatever slot
    /// they name); their events were never verified.
    pub claimed_event_ids: Option<(u64, u64)>,
}

/// What the slots of a segment from `from_slot` on hold: the non-blank ones, their
/// bytes, and the ids their block headers claim; `None` when all are blank. Reads each
/// slot once, bounded by the segment's slots (a trailing partial slot included).
pub fn set_aside_after<D: BlockDevice>(
    device: &mut D,
    from_slot: u32,
) -> Result<Option<SetAside>, D::Error> {
    let len_bytes = device.len_bytes();
    let mut block = Block::EMPTY;
    let mut found: Option<SetAside> = None;
    for slot in from_slot..=slots_in(len_bytes) {
        let n = slot_bytes_present(len_bytes, slot);
        if n == 0 {
            break;
        }
        let (bytes, _) = block.as_mut_bytes().split_at_mut(n);
        device.read_exact_at(block_offset_bytes(slot), bytes)?;
        if bytes.iter().all(|&b| b == 0) {
            continue;
        }
        // What a header claims, if it is a header at all (its checksum and fields
        // hold, whatever slot it says it belongs in: a stale block from elsewhere too).
        let h = &block.header;
        let claimed = (n >= BLOCK_HEADER_SIZE_BYTES && h.check(h.block_index()).is_ok())
            .then(|| (h.first_event_id(), h.last_event_id()));
        let s = found.get_or_insert(SetAside {
            first_slot: slot,
            last_slot: slot,
            slots: 0,
            bytes: 0,
            claimed_event_ids: None,
        });
        s.last_slot = slot;
        s.slots += 1;
        s.bytes += n as u64;
        if let Some((first, last)) = claimed {
            s.claimed_event_ids = Some(match s.claimed_event_ids {
                None => (first, last),
                Some((lo, hi)) => (lo.min(first), hi.max(last)),
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointKind;

    fn issue(segment: u32, block: Option<u32>, reason: Reason) -> Option<Issue> {
        Some(Issue {
            segment,
            block,
            offset_bytes: 0,
            reason,
        })
    }

    const OPEN_TAIL: Option<TailFacts> = Some(TailFacts {
        segment: 2,
        sealed: false,
        slots: 16,
        next_slot: 5,
    });

    fn findings(status: Status, first_issue: Option<Issue>) -> Findings {
        Findings {
            status,
            first_issue,
            found_event_id: 9_000,
            durable_event_id: 9_000,
            watermark_kept: true,
            tail: OPEN_TAIL,
            last_segment: Some(2),
        }
    }

    #[test]
    fn the_decision_table() {
        use Decision::{AfterSealed, Refuse, Resume, SealTail, Start};
        let torn = issue(2, Some(5), Reason::TornBlock);
        let hole = issue(2, Some(5), Reason::HoleBeforeData);
        let early = issue(1, Some(3), Reason::TornBlock);
        let header = issue(2, None, Reason::BadMagic { found: 0 });
        let replaced = issue(
            2,
            Some(4),
            Reason::WatermarkMismatch {
                kind: CheckpointKind::Synced,
                durable_event_id: 9_000,
                expected_chain: 1,
                found_chain: Some(2),
                found_event_id: Some(9_000),
            },
        );
        let ok = findings(Status::Ok, None);
        let lost = Findings {
            found_event_id: 8_000,
            ..ok
        };
        let bare = Findings {
            durable_event_id: 0,
            watermark_kept: false,
            ..ok
        };
        let sealed = Findings {
            tail: Some(TailFacts {
                sealed: true,
                ..OPEN_TAIL.unwrap()
            }),
            ..ok
        };
        let short = Findings {
            tail: Some(TailFacts {
                slots: 13,
                ..OPEN_TAIL.unwrap()
            }),
            ..ok
        };
        let torn_past = SealTail(SealReason::TornTail {
            past_watermark: true,
        });
        let torn_unproven = SealTail(SealReason::TornTail {
            past_watermark: false,
        });
        let table: [(&str, Findings, Decision); 19] = [
            (
                "empty store",
                Findings {
                    tail: None,
                    last_segment: None,
                    ..ok
                },
                Start,
            ),
            ("open tail", ok, Resume),
            ("sealed tail", sealed, AfterSealed),
            ("truncated file", short, SealTail(SealReason::TooShort)),
            (
                "segments removed",
                lost,
                Refuse(Refusal::DurableDataMissing),
            ),
            ("torn tail", findings(Status::Truncated, torn), torn_past),
            (
                "torn tail, no watermark records",
                Findings {
                    status: Status::Truncated,
                    first_issue: torn,
                    ..bare
                },
                torn_unproven,
            ),
            (
                "torn acknowledged block",
                Findings {
                    status: Status::Truncated,
                    first_issue: torn,
                    ..lost
                },
                Refuse(Refusal::DurableDataMissing),
            ),
            ("reordered tail", findings(Status::Corrupt, hole), torn_past),
            (
                "reordered acknowledged tail",
                Findings {
                    status: Status::Corrupt,
                    first_issue: hole,
                    ..lost
                },
                Refuse(Refusal::DurableDataMissing),
            ),
            (
                "hole without watermark records",
                Findings {
                    status: Status::Corrupt,
                    first_issue: hole,
                    ..bare
                },
                Refuse(Refusal::Damaged),
            ),
            (
                "damage before the tail",
                findings(Status::Corrupt, early),
                Refuse(Refusal::Damaged),
            ),
            (
                "damage before the tail, nothing valid after",
                findings(Status::Truncated, early),
                Refuse(Refusal::Damaged),
            ),
            (
                "damaged header of the last segment",
                findings(Status::Truncated, header),
                Refuse(Refusal::Damaged),
            ),
            (
                "torn block in a sealed last segment",
                Findings {
                    status: Status::Truncated,
                    first_issue: torn,
                    ..sealed
                },
                Refuse(Refusal::Damaged),
            ),
            (
                "problem in a segment before the last",
                Findings {
                    status: Status::Truncated,
                    first_issue: torn,
                    last_segment: Some(3),
                    ..ok
                },
                Refuse(Refusal::Damaged),
            ),
            (
                "problem before the last valid block",
                findings(Status::Truncated, issue(2, Some(4), Reason::TornBlock)),
                Refuse(Refusal::Damaged),
            ),
            (
                "replaced history, ids still climbing",
                findings(Status::Corrupt, replaced),
                Refuse(Refusal::HistoryReplaced),
            ),
            (
                "replaced history at the very end",
                findings(Status::Truncated, replaced),
                Refuse(Refusal::HistoryReplaced),
            ),
        ];
        for (what, f, want) in table {
            assert_eq!(decide(&f), want, "{what}");
        }
    }

    /// Every combination of a small domain of findings (status, where the first problem
    /// is and what it is, the watermark, the tail), checked against the rules a decision
    /// must keep whatever the table above lists: nothing that was durable is ever given
    /// up, damage is only ever set aside when it is in the open last segment after its
    /// valid blocks, replaced history is always refused, and a writer only resumes or
    /// starts on a log that verified.
    #[test]
    fn every_combination_keeps_the_rules() {
        let statuses = [Status::Ok, Status::Truncated, Status::Corrupt];
        let mismatch = Reason::WatermarkMismatch {
            kind: CheckpointKind::Sealed,
            durable_event_id: 9_000,
            expected_chain: 1,
            found_chain: None,
            found_event_id: None,
        };
        let reasons = [Reason::TornBlock, Reason::HoleBeforeData, mismatch];
        // (segment, block): in the open tail after its valid blocks, at its valid
        // blocks, in an earlier segment, a header problem.
        let places = [
            (2, Some(5)),
            (2, Some(7)),
            (2, Some(4)),
            (1, Some(3)),
            (2, None),
        ];
        let tails = [
            None,
            OPEN_TAIL,
            Some(TailFacts {
                sealed: true,
                ..OPEN_TAIL.unwrap()
            }),
            Some(TailFacts {
                slots: 3,
                next_slot: 3,
                ..OPEN_TAIL.unwrap()
            }),
        ];
        let mut checked = 0u32;
        for status in statuses {
            for problem in reasons.iter().map(Some).chain([None]) {
                for &(segment, block) in &places {
                    for (found, durable) in [(9_000u64, 9_000u64), (8_000, 9_000), (9_000, 0)] {
                        for kept in [true, false] {
                            for tail in tails {
                                for last in [Some(2), Some(3)] {
                                    let f = Findings {
                                        status,
                                        first_issue: problem
                                            .and_then(|&r| issue(segment, block, r)),
                                        found_event_id: found,
                                        durable_event_id: durable,
                                        watermark_kept: kept,
                                        tail,
                                        last_segment: last,
                                    };
                                    check_rules(&f, decide(&f));
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 4 * 5 * 3 * 2 * 4 * 2);
    }

    fn check_rules(f: &Findings, d: Decision) {
        let lost_durable = f.found_event_id < f.durable_event_id;
        let replaced = matches!(
            f.first_issue.map(|i| i.reason),
            Some(Reason::WatermarkMismatch { .. })
        );
        if replaced {
            assert_eq!(d, Decision::Refuse(Refusal::HistoryReplaced), "{f:?}");
            return;
        }
        if lost_durable {
            assert!(
                matches!(d, Decision::Refuse(_)),
                "durable data given up: {f:?} -> {d:?}"
            );
        }
        match d {
            Decision::Start => assert!(f.status == Status::Ok && f.tail.is_none(), "{f:?}"),
            Decision::Resume => assert!(
                f.status == Status::Ok && f.tail.is_some_and(|t| !t.sealed),
                "{f:?}"
            ),
            Decision::AfterSealed => assert!(
                f.status == Status::Ok && f.tail.is_some_and(|t| t.sealed),
                "{f:?}"
            ),
            Decision::SealTail(SealReason::TornTail { .. }) => {
                assert!(f.status != Status::Ok, "{f:?}");
                assert!(
                    f.problem_is_in_open_tail(),
                    "damage set aside elsewhere: {f:?}"
                );
                if f.status == Status::Corrupt {
                    assert!(
                        f.watermark_kept,
                        "valid data after damage without a watermark: {f:?}"
                    );
                }
            }
            Decision::SealTail(SealReason::TooShort) => assert!(
                f.status == Status::Ok && f.tail.is_some_and(|t| !t.sealed),
                "{f:?}"
            ),
            Decision::Refuse(_) => {}
        }
    }
}
