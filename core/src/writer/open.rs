//! Opening a log for append: recovery, from what replay found to a writer that goes
//! on after the last event (the decision itself is [`crate::recovery::decide`]).

use super::*;

/// What recovery made of the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointUse {
    /// There was none.
    Absent,
    /// It did not decode (bad magic, checksum, fields) and was ignored.
    Invalid(CheckpointDefect),
    /// It decoded, and the log reaches at least its last event.
    Confirmed(CheckpointFields),
}

impl CheckpointUse {
    /// The record's fields, when it decoded.
    #[must_use]
    pub fn fields(&self) -> Option<CheckpointFields> {
        match self {
            Self::Confirmed(fields) => Some(*fields),
            Self::Absent | Self::Invalid(_) => None,
        }
    }
}

/// The open last segment, sealed by recovery where its valid blocks end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SealedTail {
    /// The segment.
    pub segment: u32,
    /// The block count it was sealed with: its valid blocks, in slots `0..block_count`.
    pub block_count: u32,
    /// The whole block slots the segment holds.
    pub slots: u32,
    /// Why it was sealed early.
    pub reason: SealReason,
    /// What its slots after the valid blocks hold, left in place, if any is not blank.
    pub set_aside: Option<SetAside>,
}

/// What opening a log for append found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// What replay found, before recovery acted (with [`OpenScan::FromCheckpoint`],
    /// over the segments it read).
    pub summary: Summary,
    /// The segment replay started at.
    pub scanned_from_segment: Option<u32>,
    /// The sealed checkpoint found, and whether it was used.
    pub checkpoint: CheckpointUse,
    /// The sync mark found.
    pub mark: CheckpointUse,
    /// The durable watermark the two records gave.
    pub watermark: Watermark,
    /// The open last segment, when recovery sealed it early (a torn tail, or a file too
    /// short to append to).
    pub sealed_tail: Option<SealedTail>,
    /// Full segments left open behind later ones (the C++ recorder seals late) that
    /// recovery sealed.
    pub sealed_late: u32,
    /// Empty open segments after the log's end (prepared ahead of need by the C++
    /// recorder) that recovery removed: they held nothing.
    pub prepared_removed: u32,
}

impl<S: SegmentStore, C: Clock> WalWriter<S, C> {
    /// Opens the log in `store` for append, recovering it first.
    ///
    /// Strict replay finds the end of the log, and [`crate::recovery::decide`] says
    /// what to do with it. If everything verifies, appending goes on after the last
    /// event: in the last segment if it is open, else in a new one. If the only problem
    /// is a torn tail in the open last segment (slots after the last valid block hold
    /// bytes that do not verify, and nothing valid follows, or valid blocks after a
    /// hole that a durable watermark proves were never acknowledged), that segment is
    /// sealed at its last valid block, the slots after it are left in place (replay
    /// never reads past a sealed block count), and appending goes on in a new segment:
    /// nothing is copied, nothing erased. Any other problem (damage before the end, a
    /// sealed segment missing blocks, a damaged header, lost durable data, replaced
    /// history) refuses with an error and changes nothing.
    ///
    /// Before it relies on anything it read, it makes that durable: a process that
    /// crashed may have left writes visible through the cache that no sync covered, and
    /// a segment created, a checkpoint written or an event acknowledged on top of them
    /// would be lost with them in a later power cut. So every segment that may hold
    /// such writes is synced (those from the one the newest checkpoint record names to
    /// the last: a segment is sealed and synced before the next one is created), and
    /// so is the store's metadata ([`SegmentStore::sync_metadata`]).
    pub fn open(
        store: S,
        clock: C,
        config: WriterConfig,
    ) -> Result<(Self, Recovery), Error<S::Error>> {
        Self::open_inner(store, clock, config, None)
    }

    /// Like [`WalWriter::open`], and hands every event of the log to `on_event`, in
    /// order, once, from the verifying pass recovery makes: an application rebuilds its
    /// state from the log and reopens it for append in one read, not two. The whole log
    /// is read, whatever [`WriterConfig::open_scan`] says, since every event is handed.
    ///
    /// The events handed are those of the log's valid prefix, which is what the log
    /// holds once recovery is done (a torn tail set aside is never handed). When this
    /// fails, some events may have been handed already: they are not a state to act on
    /// (the log was refused, or could not be read).
    pub fn open_replaying(
        store: S,
        clock: C,
        config: WriterConfig,
        mut on_event: impl FnMut(&RequestEvent),
    ) -> Result<(Self, Recovery), Error<S::Error>> {
        let config = WriterConfig {
            open_scan: OpenScan::Full,
            ..config
        };
        Self::open_inner(store, clock, config, Some(&mut on_event))
    }

    /// [`WalWriter::open`], handing the events replayed to `on_event` when given.
    pub(super) fn open_inner(
        mut store: S,
        clock: C,
        config: WriterConfig,
        mut on_event: Option<&mut dyn FnMut(&RequestEvent)>,
    ) -> Result<(Self, Recovery), Error<S::Error>> {
        if !is_valid_segment_blocks(config.blocks_per_segment) {
            return Err(Error::InvalidConfig(
                "blocks_per_segment must be in 16..=524288",
            ));
        }
        if config.retention.segments_max == Some(0) {
            return Err(Error::InvalidConfig(
                "retention must keep at least one segment",
            ));
        }
        if config.blocks_per_segment > CPP_READER_BLOCKS_MAX && !config.allow_large_segments {
            return Err(Error::InvalidConfig(LARGE_SEGMENTS_REFUSED));
        }
        let checkpoint = read_checkpoint(&mut store, CheckpointKind::Sealed)?;
        let mark = read_checkpoint(&mut store, CheckpointKind::Synced)?;
        let watermark = Watermark::from_records([checkpoint.fields(), mark.fields()]);
        let range = store.segment_range()?;
        let scan_from = match (config.open_scan, checkpoint, range) {
            // A checkpoint at slot 0 names a segment that was empty: its last event is in
            // an earlier one, so starting there would be no shortcut.
            (OpenScan::FromCheckpoint, CheckpointUse::Confirmed(c), Some((first, last)))
                if c.next_slot > 0 && (first..=last).contains(&c.segment_index) =>
            {
                Some(c.segment_index)
            }
            _ => range.map(|(first, _)| first),
        };
        let mut replay = Replay::new(&mut store, Mode::Strict);
        // Read once: replay checks the log against the records just read.
        replay.with_watermark(watermark);
        if let (Some(segment), Some((first, _))) = (scan_from, range) {
            if segment != first {
                replay.start = Some(StartPoint {
                    segment,
                    slot: 0,
                    chain: Some(0),
                    last_event_id: 0,
                });
            }
        }
        let summary = replay.run(|event| {
            if let Some(f) = on_event.as_mut() {
                f(event);
            }
        })?;
        // The last event the log accounts for: its last one, or, when retention left it
        // without any, the one its watermark's record says came before its first segment.
        let found = summary.last_event_id.unwrap_or_else(|| {
            range
                .and_then(|(first, _)| watermark.before_first_segment(first))
                .unwrap_or(0)
        });
        // Empty open segments after the tail (the C++ recorder prepares them ahead of
        // need) hold nothing: the log ends at the tail.
        let prepared = prepared_after(&mut store, summary.tail.map(|t| t.segment), range)?;
        let last_with_data = match (prepared, range) {
            (AfterTail::Prepared { after }, _) => Some(after),
            (_, range) => range.map(|r| r.1),
        };
        let findings = Findings::of(&summary, found, &watermark, last_with_data);
        let decision = decide(&findings);
        if let Decision::Refuse(why) = decision {
            return Err(refusal(why, &findings));
        }
        if let AfterTail::NotEmpty(issue) = prepared {
            return Err(Error::Damaged {
                issue,
                status: summary.status,
            });
        }
        let config = WriterConfig {
            blocks_per_segment: new_segment_blocks(&config, summary.tail.as_ref())?,
            ..config
        };
        make_read_durable(&mut store, &[checkpoint, mark], range)?;
        let mut writer = Self {
            store,
            clock,
            config,
            active: None,
            next_index: 0,
            last_event_id: found,
            durable_event_id: found,
            poisoned: false,
            checkpoint_segment: checkpoint.fields().map(|c| c.segment_index),
            ledger: None,
        };
        let mut sealed_tail = None;
        let mut sealed_late = 0u32;
        let mut prepared_removed = 0u32;
        if let Some(tail) = summary.tail {
            writer.next_index = tail
                .segment
                .checked_add(1)
                .ok_or(Error::SegmentIndexExhausted)?;
            // Segments the C++ recorder rotated away from before sealing them: sealed now,
            // before anything goes after them.
            if let Some(first) = summary.late_sealed {
                for index in first..tail.segment {
                    sealed_late += u32::from(writer.seal_late(index)?);
                }
            }
            // The prepared ones after the tail go, the last first, so that a crash
            // midway leaves no gap; appending creates its segments anew.
            if let (AfterTail::Prepared { after }, Some((_, last))) = (prepared, range) {
                for index in (after + 1..=last).rev() {
                    writer.store.remove_segment(index)?;
                    prepared_removed += 1;
                }
            }
            match decision {
                Decision::Resume => {
                    let device =
                        writer
                            .store
                            .open_segment(tail.segment)?
                            .ok_or(Error::SegmentVanished {
                                segment: tail.segment,
                            })?;
                    writer.active = Some(SegmentWriter::resume(device, &tail)?);
                }
                Decision::SealTail(reason) => {
                    sealed_tail = Some(writer.seal_tail(&tail, reason)?);
                }
                Decision::AfterSealed => {}
                Decision::Start | Decision::Refuse(_) => {
                    return Err(Error::LogicBug("a log with segments decided as empty"));
                }
            }
            // Rewrite the checkpoint only if it does not already record this end: a
            // recovery that finds nothing to do changes nothing.
            let chain = if tail.next_slot == 0 { 0 } else { tail.chain };
            let current = matches!(checkpoint, CheckpointUse::Confirmed(c)
                if (c.segment_index, c.next_slot, c.last_event_id, c.chained_checksum)
                    == (tail.segment, tail.next_slot, writer.durable_event_id, chain));
            if !current {
                writer.write_checkpoint(
                    CheckpointKind::Sealed,
                    tail.segment,
                    tail.next_slot,
                    tail.chain,
                )?;
            }
        } else if !watermark.kept {
            // A new log: record that fswal keeps its watermark from the start, so that a
            // crash before the first seal can still be told from damage.
            writer.write_checkpoint(CheckpointKind::Sealed, 0, 0, 0)?;
        }
        // The segments present now: the prepared ones are gone.
        let range = match (prepared, range) {
            (AfterTail::Prepared { after }, Some((first, _))) => Some((first, after)),
            (_, range) => range,
        };
        writer.ledger = writer.build_ledger(range)?;
        let recovery = Recovery {
            summary,
            scanned_from_segment: scan_from,
            checkpoint,
            mark,
            watermark,
            sealed_tail,
            sealed_late,
            prepared_removed,
        };
        Ok((writer, recovery))
    }

    /// Seals segment `index` if its header is still open: a full segment the C++
    /// recorder rotated away from and never sealed (replay accepted it because every
    /// slot holds a valid block). Its blocks are verified again for the totals, so the
    /// sealed header vouches only for what it reads now. Returns whether it sealed.
    pub(super) fn seal_late(&mut self, index: u32) -> Result<bool, Error<S::Error>> {
        let mut device = self
            .store
            .open_segment(index)?
            .ok_or(Error::SegmentVanished { segment: index })?;
        if device.len_bytes() < SEGMENT_HEADER_SIZE_BYTES as u64 {
            return Err(Error::LogicBug("a late-sealed segment lost its header"));
        }
        let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
        device.read_exact_at(0, &mut raw)?;
        let header = SegmentHeader::read_from(&raw);
        match header.check(index) {
            Ok(HeaderState::Open) => {}
            Ok(HeaderState::Sealed(_)) => return Ok(false),
            Err(_) => return Err(Error::LogicBug("a late-sealed segment's header changed")),
        }
        let slots = slots_in(device.len_bytes());
        let mut block = Block::EMPTY;
        let mut totals = SealedTotals::EMPTY;
        // Bounded by the segment's slots.
        for slot in 0..slots {
            device.read_exact_at(block_offset_bytes(slot), block.as_mut_bytes())?;
            let checked = block.verify(slot, totals.last_chained_checksum, totals.last_event_id);
            if let Err(reason) = checked {
                return Err(Error::Damaged {
                    issue: crate::issue::Issue {
                        segment: index,
                        block: Some(slot),
                        offset_bytes: block_offset_bytes(slot),
                        reason,
                    },
                    status: crate::issue::Status::Corrupt,
                });
            }
            let h = block.header;
            if totals.block_count == 0 {
                totals.first_event_id = h.first_event_id();
            }
            totals.block_count += 1;
            totals.event_count = totals
                .event_count
                .saturating_add(u32::from(h.event_count()));
            totals.last_event_id = h.last_event_id();
            totals.last_chained_checksum = h.chained_checksum();
        }
        let sealed = header
            .sealed_checked(&totals, self.clock.now_ns())
            .map_err(|_| Error::LogicBug("the late sealed header does not check"))?;
        device.write_all_at(0, sealed.as_bytes())?;
        device.sync()?;
        drop(device);
        self.store.segment_sealed(index)?;
        Ok(true)
    }

    /// Seals the open last segment `tail` where its valid blocks end, leaving the slots
    /// after them as they are, and reports what they hold.
    pub(super) fn seal_tail(
        &mut self,
        tail: &Tail,
        reason: SealReason,
    ) -> Result<SealedTail, Error<S::Error>> {
        let mut device = self
            .store
            .open_segment(tail.segment)?
            .ok_or(Error::SegmentVanished {
                segment: tail.segment,
            })?;
        let set_aside = set_aside_after(&mut device, tail.next_slot)?;
        let totals = SealedTotals {
            block_count: tail.next_slot,
            event_count: tail.event_count,
            first_event_id: tail.first_event_id,
            last_event_id: tail.last_event_id,
            last_chained_checksum: if tail.next_slot == 0 { 0 } else { tail.chain },
        };
        // Checked before it is written: a header that does not check would turn a torn
        // tail into damage.
        let sealed = tail
            .header
            .sealed_checked(&totals, self.clock.now_ns())
            .map_err(|_| Error::LogicBug("the sealed tail header does not check"))?;
        // The valid blocks are durable already (recovery synced what it read), so the
        // header vouches only for durable blocks.
        device.write_all_at(0, sealed.as_bytes())?;
        device.sync()?;
        drop(device);
        self.store.segment_sealed(tail.segment)?;
        Ok(SealedTail {
            segment: tail.segment,
            block_count: tail.next_slot,
            slots: tail.slots,
            reason,
            set_aside,
        })
    }
}

/// Block slots for the new segments of a log whose last segment replay found as
/// `tail`: its size when `config` keeps it and it is a valid segment size, else the
/// configured one. A kept size over the C++ reader's limit needs the same permission
/// as a configured one: adding another segment the C++ reader misreads is as much a
/// choice as the first one was.
pub(super) fn new_segment_blocks<E>(
    config: &WriterConfig,
    tail: Option<&Tail>,
) -> Result<u32, Error<E>> {
    let blocks = match tail {
        Some(t) if config.keep_segment_blocks && is_valid_segment_blocks(t.slots) => t.slots,
        _ => config.blocks_per_segment,
    };
    if blocks > CPP_READER_BLOCKS_MAX && !config.allow_large_segments {
        return Err(Error::InvalidConfig(LARGE_SEGMENTS_REFUSED));
    }
    Ok(blocks)
}

/// The checkpoint record of `kind` in `store`, decoded.
pub(super) fn read_checkpoint<S: SegmentStore>(
    store: &mut S,
    kind: CheckpointKind,
) -> Result<CheckpointUse, S::Error> {
    Ok(match store.read_checkpoint(kind)? {
        None => CheckpointUse::Absent,
        Some(bytes) => match Checkpoint::decode(&bytes) {
            Ok(fields) => CheckpointUse::Confirmed(fields),
            Err(defect) => CheckpointUse::Invalid(defect),
        },
    })
}

/// Whether segment `index` on `device` has a valid sealed header.
pub(super) fn is_sealed<D: BlockDevice>(device: &mut D, index: u32) -> Result<bool, D::Error> {
    if device.len_bytes() < SEGMENT_HEADER_SIZE_BYTES as u64 {
        return Ok(false);
    }
    let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
    device.read_exact_at(0, &mut raw)?;
    Ok(matches!(
        SegmentHeader::read_from(&raw).check(index),
        Ok(HeaderState::Sealed(_))
    ))
}

/// Makes durable what a crashed process may have left visible and not durable, before
/// recovery relies on it: every segment from the one the newest checkpoint record names
/// to the last (a record is written only once the segments before the one it names
/// were sealed and synced: the writer syncs a segment before it creates the next), or
/// every segment without a record; then the store's metadata.
pub(super) fn make_read_durable<S: SegmentStore>(
    store: &mut S,
    records: &[CheckpointUse; 2],
    range: Option<(u32, u32)>,
) -> Result<(), Error<S::Error>> {
    if let Some((first, last)) = range {
        let from = records
            .iter()
            .filter_map(CheckpointUse::fields)
            .map(|c| c.segment_index)
            .max()
            .map_or(first, |named| named.clamp(first, last));
        // Bounded by the segments present; normally one or two.
        for index in from..=last {
            if let Some(mut device) = store.open_segment(index)? {
                device.sync()?;
            }
        }
    }
    store.sync_metadata()?;
    Ok(())
}

/// What the segments after the tail are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AfterTail {
    /// There are none.
    Nothing,
    /// All of them are open, empty and blank (prepared ahead of need): the log ends
    /// with segment `after`.
    Prepared {
        /// The tail's segment.
        after: u32,
    },
    /// Something else: a sealed segment, a damaged one, one with data.
    Other,
    /// One is open and holds no valid block, but holds bytes (here): never removed.
    NotEmpty(crate::issue::Issue),
}

/// Whether every segment after `tail` (up to the last in `range`) is open and entirely
/// blank after its header: what the C++ recorder's preparer leaves. Reads them whole;
/// there are a few at most.
pub(super) fn prepared_after<S: SegmentStore>(
    store: &mut S,
    tail: Option<u32>,
    range: Option<(u32, u32)>,
) -> Result<AfterTail, Error<S::Error>> {
    let (Some(tail), Some((_, last))) = (tail, range) else {
        return Ok(AfterTail::Nothing);
    };
    if tail >= last {
        return Ok(AfterTail::Nothing);
    }
    // Bounded by the segments present after the tail.
    for index in tail + 1..=last {
        let Some(mut device) = store.open_segment(index)? else {
            return Ok(AfterTail::Other);
        };
        if device.len_bytes() < SEGMENT_HEADER_SIZE_BYTES as u64 {
            return Ok(AfterTail::Other);
        }
        let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
        device.read_exact_at(0, &mut raw)?;
        if SegmentHeader::read_from(&raw).check(index) != Ok(HeaderState::Open) {
            return Ok(AfterTail::Other);
        }
        if let Some(bytes) = set_aside_after(&mut device, 0)? {
            return Ok(AfterTail::NotEmpty(crate::issue::Issue {
                segment: index,
                block: Some(bytes.first_slot),
                offset_bytes: block_offset_bytes(bytes.first_slot),
                reason: crate::issue::Reason::PreparedSegmentNotEmpty,
            }));
        }
    }
    Ok(AfterTail::Prepared { after: tail })
}

/// The error for a refused recovery.
pub(super) fn refusal<E>(why: Refusal, f: &Findings) -> Error<E> {
    match (why, f.first_issue) {
        (Refusal::HistoryReplaced, Some(issue)) => Error::HistoryReplaced { issue },
        (Refusal::Damaged, Some(issue)) => Error::Damaged {
            issue,
            status: f.status,
        },
        (Refusal::DurableDataMissing, issue) => Error::DurableDataMissing {
            durable_event_id: f.durable_event_id,
            found_event_id: f.found_event_id,
            issue,
        },
        (Refusal::HistoryReplaced | Refusal::Damaged, None) => {
            Error::LogicBug("a refusal without an issue")
        }
    }
}
