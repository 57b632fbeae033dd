//! Where replay goes on after a problem: the scan for the next block that is valid on
//! its own with larger ids (diagnostic mode resynchronises there; strict mode only
//! learns from it whether valid data follows, which makes the log corrupt rather than
//! truncated).

use super::*;

/// A block the forward scan found.
#[derive(Clone, Copy, Debug)]
pub(super) struct Found {
    segment: u32,
    slot: u32,
    /// Non-blank slots passed over before it.
    skipped_blocks: u64,
}

/// What the forward scan after a problem came to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scan {
    /// A block valid on its own, with ids after the last accepted one.
    Found(Found),
    /// The end of what it looked at, with no such block.
    End {
        /// Non-blank slots passed over.
        skipped_blocks: u64,
    },
}

impl Scan {
    /// The end, with nothing passed over.
    pub(super) const END: Self = Self::End { skipped_blocks: 0 };

    /// This scan, after `passed` non-blank slots an earlier part of it passed over.
    pub(super) fn after(self, passed: u64) -> Self {
        match self {
            Self::Found(found) => Self::Found(Found {
                skipped_blocks: found.skipped_blocks.saturating_add(passed),
                ..found
            }),
            Self::End { skipped_blocks } => Self::End {
                skipped_blocks: skipped_blocks.saturating_add(passed),
            },
        }
    }
}

/// Looks at slots `from..end` of segment `segment` for a block valid on its own whose first id is above
/// `min_id`. Reads only block headers until one verifies.
pub(super) fn scan_slots<D: BlockDevice>(
    device: &mut D,
    segment: u32,
    from: u32,
    end: u32,
    min_id: u64,
    buf: &mut Block,
) -> Result<Scan, D::Error> {
    let mut skipped_blocks = 0u64;
    for slot in from..end {
        let offset = block_offset_bytes(slot);
        let Some(block_end) = offset.checked_add(BLOCK_SIZE_BYTES as u64) else {
            break;
        };
        if block_end > device.len_bytes() {
            break;
        }
        let mut header = BlockHeader::BLANK;
        device.read_exact_at(offset, header.as_mut_bytes())?;
        if header.is_blank() {
            continue;
        }
        if header.check(slot).is_ok() && header.first_event_id() > min_id {
            device.read_exact_at(offset, buf.as_mut_bytes())?;
            if buf.check_alone(slot).is_ok() {
                return Ok(Scan::Found(Found {
                    segment,
                    slot,
                    skipped_blocks,
                }));
            }
        }
        skipped_blocks += 1;
    }
    Ok(Scan::End { skipped_blocks })
}

impl<S: SegmentStore> Replay<S> {
    /// Records a problem, classifies it, and decides where replay goes on.
    pub(super) fn problem(
        &mut self,
        issue: Issue,
        from: ScanFrom,
    ) -> Result<Step<'_>, Error<S::Error>> {
        let next = match from {
            ScanFrom::Slot { slot } => self.find_valid_after(slot, self.last_event_id)?,
            ScanFrom::NextSegment => self.find_valid_in_later_segments(self.last_event_id)?,
        };
        Ok(self.record_problem(issue, next))
    }

    pub(super) fn record_problem(&mut self, issue: Issue, next: Scan) -> Step<'_> {
        self.summary.issues += 1;
        if self.summary.first_issue.is_none() {
            self.summary.first_issue = Some(issue);
        }
        // A log that is not the acknowledged history is damaged whatever follows.
        let replaced = matches!(issue.reason, Reason::WatermarkMismatch { .. });
        let status = if matches!(next, Scan::Found(_)) || replaced {
            Status::Corrupt
        } else {
            Status::Truncated
        };
        if self.summary.status != Status::Corrupt {
            self.summary.status = status;
        }
        match (self.mode, next) {
            (Mode::Diagnostic, Scan::Found(found)) => {
                self.summary.skipped_blocks += found.skipped_blocks;
                self.resume_at(found);
            }
            // Nothing valid follows: what the scan passed over is not replayed either.
            (Mode::Diagnostic, Scan::End { skipped_blocks }) => {
                self.summary.skipped_blocks += skipped_blocks;
                self.state = State::Done;
            }
            (Mode::Strict, _) => self.state = State::Done,
        }
        Step::Issue(issue)
    }

    /// Diagnostic mode: goes on at a block found by the forward scan.
    pub(super) fn resume_at(&mut self, found: Found) {
        match self.cursor.as_mut() {
            Some(cur) if cur.index == found.segment => {
                cur.next_slot = found.slot;
                cur.chain = None;
                cur.complete = false;
                if cur.state.is_none() || found.slot >= cur.limit {
                    // A damaged header: read every slot present.
                    cur.limit = cur.limit.max(found.slot.saturating_add(1));
                }
                self.state = State::Slot;
            }
            _ => {
                self.state = State::OpenSegment {
                    index: found.segment,
                    slot: found.slot,
                    resync: true,
                };
            }
        }
    }

    /// The first block after `slot` of the current segment, or in a later segment,
    /// that is valid on its own and starts after `min_id`.
    pub(super) fn find_valid_after(
        &mut self,
        slot: u32,
        min_id: u64,
    ) -> Result<Scan, Error<S::Error>> {
        let mut passed = 0u64;
        if let Some(cur) = self.cursor.as_mut() {
            let end = cur
                .sealed()
                .map_or(cur.slots, |t| t.block_count.min(cur.slots));
            match scan_slots(&mut cur.device, cur.index, slot, end, min_id, &mut self.buf)? {
                Scan::Found(found) => return Ok(Scan::Found(found)),
                Scan::End { skipped_blocks } => passed = skipped_blocks,
            }
        }
        Ok(self.find_valid_in_later_segments(min_id)?.after(passed))
    }

    /// The first valid block, starting after `min_id`, in the segments after the
    /// current one.
    pub(super) fn find_valid_in_later_segments(
        &mut self,
        min_id: u64,
    ) -> Result<Scan, Error<S::Error>> {
        let after = match (&self.cursor, self.state) {
            (Some(cur), _) => cur.index,
            (None, State::OpenSegment { index, .. }) => index,
            (None, _) => return Ok(Scan::END),
        };
        let mut skipped_blocks = 0u64;
        let mut index = after;
        while index < self.range.1 {
            index += 1;
            let Some(mut device) = self.store.open_segment(index)? else {
                continue;
            };
            let slots = slots_in(device.len_bytes());
            let mut end = slots;
            if device.len_bytes() >= SEGMENT_HEADER_SIZE_BYTES as u64 {
                let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
                device.read_exact_at(0, &mut raw)?;
                if let Ok(HeaderState::Sealed(t)) = SegmentHeader::read_from(&raw).check(index) {
                    end = t.block_count.min(slots);
                }
            }
            match scan_slots(&mut device, index, 0, end, min_id, &mut self.buf)? {
                Scan::Found(found) => return Ok(Scan::Found(found).after(skipped_blocks)),
                Scan::End { skipped_blocks: n } => skipped_blocks += n,
            }
        }
        Ok(Scan::End { skipped_blocks })
    }
}
