//! The writer: appends events to a log, block by block, segment by segment.
//!
//! [`SegmentWriter`] writes one segment: events fill a block in memory; a full block
//! is finalized (its checksums computed) and written to the next slot; a flush writes
//! a partial block, which is then sealed, so the next events go to the next slot (a
//! block that a sync made durable is never overwritten); sealing rewrites the header
//! with the segment's totals and syncs.
//!
//! [`WalWriter`] writes a log over a [`SegmentStore`]: it refuses an event whose id is
//! 0 or not greater than the last one before writing anything, rotates to a new
//! segment when one is full, and keeps a durable watermark. Opening it recovers the log
//! first (see [`WalWriter::open`]).
//!
//! # Ordering invariants
//!
//! - A full segment is sealed and synced before the next one is created, so a crash
//!   never leaves an unsealed segment followed by another one.
//! - A new segment appears atomically with its open header (the store's contract).
//! - Blocks are written in slot order; a sync covers every block written before it.
//! - After a failed write or sync the writer accepts nothing more: what the device
//!   holds is unknown, and only recovery by replay can say.
//! - After a restart, what recovery read is made durable before anything is built on
//!   it (a segment created, a checkpoint written, a tail sealed, an event
//!   acknowledged): a crashed process's unsynced writes may be readable and not durable.
//! - The sealed checkpoint never names a segment retention removed: it moves to the new
//!   segment first.

mod config;
mod open;
mod retention;
mod segment;

pub use config::{LARGE_SEGMENTS_REFUSED, OpenScan, Retention, WriterConfig};
pub use open::{CheckpointUse, Recovery, SealedTail};
use retention::Ledger;
pub use segment::SegmentWriter;

use zerocopy::IntoBytes;

use crate::block::Block;
use crate::checkpoint::{Checkpoint, CheckpointDefect, CheckpointFields, CheckpointKind};
use crate::device::BlockDevice;
use crate::error::Error;
use crate::event::RequestEvent;
use crate::limits::{
    BLOCK_EVENTS_MAX, CPP_READER_BLOCKS_MAX, SEGMENT_BLOCKS_DEFAULT, SEGMENT_HEADER_SIZE_BYTES,
    SEGMENT_INDEX_MAX, block_offset_bytes, is_valid_segment_blocks, segment_size_bytes, slots_in,
};
use crate::recovery::{Decision, Findings, Refusal, SealReason, SetAside, decide, set_aside_after};
use crate::replay::{Mode, Replay, StartPoint, Summary, Tail};
use crate::segment_header::{HeaderState, SealedTotals, SegmentHeader};
use crate::store::SegmentStore;
use crate::watermark::Watermark;

/// A source of wall-clock time for segment timestamps, in ns since the Unix epoch.
pub trait Clock {
    /// The current time.
    fn now_ns(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Clock for F {
    fn now_ns(&mut self) -> u64 {
        self()
    }
}

/// The wall clock, on hosts with the standard library: nanoseconds since the Unix
/// epoch; 0 if the clock is before it, `u64::MAX` after the year 2554. It stamps
/// segment headers (`created_ts_ns`, `closed_ts_ns`) when passed as the [`Clock`].
#[cfg(any(test, feature = "std"))]
#[must_use]
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Appends events to a log of segments.
///
/// Dropping a writer without [`WalWriter::close`] is what a crash does: the active
/// segment stays open (unsealed), and the next [`WalWriter::open`] continues it.
pub struct WalWriter<S: SegmentStore, C: Clock> {
    store: S,
    clock: C,
    config: WriterConfig,
    active: Option<SegmentWriter<S::Device>>,
    /// Index the next new segment gets.
    next_index: u32,
    last_event_id: u64,
    durable_event_id: u64,
    poisoned: bool,
    /// The segment the sealed checkpoint names, once one was read or written.
    checkpoint_segment: Option<u32>,
    /// The segments retention may delete; `None` without retention.
    ledger: Option<Ledger>,
}

impl<S: SegmentStore, C: Clock> WalWriter<S, C> {
    /// Replaces the checkpoint with the end of the durable log: block slot `next_slot`
    /// of segment `segment`, after a block whose chained checksum is `chain`.
    fn write_checkpoint(
        &mut self,
        kind: CheckpointKind,
        segment: u32,
        next_slot: u32,
        chain: u64,
    ) -> Result<(), Error<S::Error>> {
        let record = Checkpoint::new(&CheckpointFields {
            segment_index: segment,
            next_slot,
            last_event_id: self.durable_event_id,
            chained_checksum: if next_slot == 0 { 0 } else { chain },
            written_ts_ns: self.clock.now_ns(),
        });
        self.store.write_checkpoint(kind, &record.to_bytes())?;
        if kind == CheckpointKind::Sealed {
            self.checkpoint_segment = Some(segment);
        }
        Ok(())
    }

    /// After segment `sealed` was sealed (and so made durable): records the checkpoint,
    /// tells the store, and applies retention.
    fn after_seal(&mut self, sealed: &SegmentWriter<S::Device>) -> Result<(), Error<S::Error>> {
        self.durable_event_id = self.last_event_id;
        self.write_checkpoint(
            CheckpointKind::Sealed,
            sealed.index(),
            sealed.next_slot,
            sealed.chain,
        )?;
        self.store.segment_sealed(sealed.index())?;
        self.apply_retention(None)
    }

    /// Appends `event`. An event whose id is 0 or not greater than the last one, or
    /// whose bytes are not a valid event, is refused and nothing is written. A device
    /// failure stops the writer (see [`Error::Poisoned`]).
    pub fn append(&mut self, event: &RequestEvent) -> Result<(), Error<S::Error>> {
        self.append_batch(core::slice::from_ref(event))
    }

    /// Appends `events`, in order, as [`WalWriter::append`] would one by one, but
    /// copying them into blocks a run at a time. Every event and id is checked first:
    /// a batch holding an invalid event, or an id not above the one before it, is
    /// refused whole and nothing of it is appended.
    pub fn append_batch(&mut self, events: &[RequestEvent]) -> Result<(), Error<S::Error>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let mut previous = self.last_event_id;
        for event in events {
            let event_id = event.event_id();
            event
                .check()
                .map_err(|defect| Error::InvalidEvent { event_id, defect })?;
            if event_id <= previous {
                return Err(Error::EventIdNotIncreasing {
                    event_id,
                    last_event_id: previous,
                });
            }
            previous = event_id;
        }
        let result = self.append_checked(events);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn append_checked(&mut self, events: &[RequestEvent]) -> Result<(), Error<S::Error>> {
        let mut rest = events;
        // Each pass appends at least one event or fails, so the loop ends.
        while let Some(last_of_batch) = rest.last() {
            if !self.active.as_ref().is_some_and(SegmentWriter::has_room) {
                self.rotate()?;
            }
            let active = self
                .active
                .as_mut()
                .ok_or(Error::LogicBug("no active segment after rotation"))?;
            let taken = active.push_many(rest)?;
            let (done, left) = rest.split_at_checked(taken).unwrap_or((rest, &[]));
            self.last_event_id = done
                .last()
                .map_or(last_of_batch.event_id(), RequestEvent::event_id);
            rest = left;
            if !active.has_room() {
                // Seal a full segment now, so that a crash before the next append does
                // not leave it open, and so that closing never creates an empty segment.
                let now = self.clock.now_ns();
                active.seal(now)?;
                if let Some(full) = self.active.take() {
                    self.after_seal(&full)?;
                }
            }
        }
        Ok(())
    }

    /// Seals the active segment, if any, and creates the next one.
    fn rotate(&mut self) -> Result<(), Error<S::Error>> {
        if let Some(mut full) = self.active.take() {
            let now = self.clock.now_ns();
            full.seal(now)?;
            self.after_seal(&full)?;
        }
        let index = self.next_index;
        if index > SEGMENT_INDEX_MAX {
            return Err(Error::SegmentIndexExhausted);
        }
        let header = SegmentHeader::new_open(index, self.clock.now_ns());
        let size_bytes = segment_size_bytes(self.config.blocks_per_segment);
        // Room first: on a store of fixed slots (a raw device), the new segment may need
        // the slot of the oldest one.
        self.apply_retention(Some(size_bytes))?;
        let device = self
            .store
            .create_segment(index, size_bytes, header.as_bytes())?;
        if let Some(ledger) = self.ledger.as_mut() {
            ledger.count = ledger.count.saturating_add(1);
            ledger.bytes = ledger.bytes.saturating_add(size_bytes);
        }
        self.active = Some(SegmentWriter::new(device, header)?);
        self.next_index = index + 1;
        self.apply_retention(None)
    }

    /// Makes every appended event durable and returns the durable watermark (the last
    /// event id). A partial block is written and sealed: later events go to the next
    /// slot. A failure stops the writer; the caller must not acknowledge anything
    /// beyond the previous watermark.
    pub fn sync(&mut self) -> Result<u64, Error<S::Error>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if let Some(active) = self.active.as_mut() {
            if let Err(e) = active.sync() {
                self.poisoned = true;
                return Err(e);
            }
            let (segment, next_slot, chain) = (active.index(), active.next_slot, active.chain);
            if self.config.sync_marks && self.last_event_id > self.durable_event_id {
                // The data is durable; now record that it is. Until this returns the sync
                // has not returned, so nothing past the old watermark was acknowledged.
                let durable_before = self.durable_event_id;
                self.durable_event_id = self.last_event_id;
                if let Err(e) =
                    self.write_checkpoint(CheckpointKind::Synced, segment, next_slot, chain)
                {
                    self.durable_event_id = durable_before;
                    self.poisoned = true;
                    return Err(e);
                }
            }
        }
        self.durable_event_id = self.last_event_id;
        Ok(self.durable_event_id)
    }

    /// Seals the active segment (making everything durable) and returns the durable
    /// watermark. A later append starts a new segment.
    pub fn close(&mut self) -> Result<u64, Error<S::Error>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if let Some(mut active) = self.active.take() {
            let now = self.clock.now_ns();
            let sealed = active.seal(now).and_then(|()| self.after_seal(&active));
            if let Err(e) = sealed {
                self.poisoned = true;
                return Err(e);
            }
        }
        self.durable_event_id = self.last_event_id;
        Ok(self.durable_event_id)
    }

    /// The id of the last event appended (0 for an empty log).
    #[must_use]
    pub fn last_event_id(&self) -> u64 {
        self.last_event_id
    }

    /// The id of the last event known durable: every event up to it survives a crash.
    #[must_use]
    pub fn durable_event_id(&self) -> u64 {
        self.durable_event_id
    }

    /// Block slots each new segment gets: the configured count, or the size of the
    /// log's last segment when reopening kept it (see
    /// [`WriterConfig::keep_segment_blocks`]).
    #[must_use]
    pub fn blocks_per_segment(&self) -> u32 {
        self.config.blocks_per_segment
    }

    /// The index of the segment being written, if one is open.
    #[must_use]
    pub fn active_segment(&self) -> Option<u32> {
        self.active.as_ref().map(SegmentWriter::index)
    }

    /// The store, for inspection.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back, without sealing: like a crash, for the log.
    pub fn into_store(self) -> S {
        self.store
    }
}

#[cfg(test)]
// Tests run on 64-bit hosts, where segment offsets fit in usize.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::vec::Vec;

    use proptest::prelude::*;
    use zerocopy::FromBytes;

    use super::open::new_segment_blocks;
    use super::*;
    use crate::event::EventDefect;
    use crate::fault::{FaultStore, Faults};
    use crate::issue::{Reason, Status};
    use crate::mem::MemStore;
    use crate::reference::reference_event;
    use crate::segment_header::HeaderState;
    use crate::store::SegmentStore;
    use crate::testutil::{ids, reference_log, replay, ticking_clock, write_events};

    const SMALL: WriterConfig = WriterConfig::with_blocks(16);

    fn open(store: MemStore) -> (WalWriter<MemStore, impl Clock>, Recovery) {
        WalWriter::open(store, ticking_clock(), SMALL).unwrap()
    }

    fn images(store: &MemStore) -> Vec<Vec<u8>> {
        store
            .indices()
            .iter()
            .map(|&i| store.image(i).unwrap())
            .collect()
    }

    fn header(store: &MemStore, index: u32) -> SegmentHeader {
        let image = store.image(index).unwrap();
        SegmentHeader::read_from_bytes(&image[..64]).unwrap()
    }

    /// The events a strict replay of a fault store's durable state (a power cut now)
    /// yields, or the error recovering it gives.
    fn after_power_cut(
        store: &crate::fault::FaultStore,
    ) -> Result<Vec<u64>, Error<crate::mem::MemError>> {
        let image = store.snapshot().durable_image();
        let (w, _) = WalWriter::open(
            crate::fault::FaultStore::from_image(&image),
            ticking_clock(),
            SMALL,
        )?;
        let mut store = w.into_store();
        let mut ids = Vec::new();
        Replay::new(&mut store, Mode::Strict).run(|e| ids.push(e.event_id()))?;
        Ok(ids)
    }

    /// Runs `workload` on a fault store and returns the crash points it passed.
    fn crash_points(
        workload: impl FnOnce(
            &mut WalWriter<crate::fault::FaultStore, std::boxed::Box<dyn FnMut() -> u64>>,
        ),
    ) -> Vec<crate::fault::Snapshot> {
        let store = crate::fault::FaultStore::new();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&seen);
        store.set_observer(Some(std::boxed::Box::new(
            move |s: &crate::fault::Snapshot| {
                log.lock().unwrap().push(s.clone());
            },
        )));
        let clock: std::boxed::Box<dyn FnMut() -> u64> = std::boxed::Box::new(ticking_clock());
        let (mut w, _) = WalWriter::open(store.clone(), clock, SMALL).unwrap();
        workload(&mut w);
        store.set_observer(None);
        seen.lock().unwrap().clone()
    }

    #[test]
    fn a_seal_only_in_the_cache_is_made_durable_before_the_log_goes_on() {
        // Issue 9, defect 1: killed between the sealed header's write and its sync, the
        // header is only in the cache. The restart must make it durable before it creates
        // the next segment and acknowledges events there; otherwise a power cut reverts
        // the header to open, with a later segment after it, and the log is refused.
        let points = crash_points(|w| {
            for i in 1..=4096 {
                w.append(&reference_event(i)).unwrap();
            }
        });
        let in_window: Vec<_> = points
            .iter()
            .filter(|p| {
                p.next == Some(crate::fault::OpKind::Sync)
                    && p.pending
                        .iter()
                        .any(|w| (w.segment, w.offset_bytes) == (0, 0))
            })
            .collect();
        assert_eq!(
            in_window.len(),
            1,
            "the seal's sync, with the header pending"
        );
        // The cached header reads as sealed: appending goes on in a new segment.
        restart_append_power_cut(in_window[0], false, (4096, None), 4196);
    }

    /// A process crash at `point` (the operation it was in half done if `half_done`),
    /// a restart that finds events up to `found` and goes on in segment `active`,
    /// appends up to `last` and syncs (so acknowledges them), then a power cut: every
    /// event must survive it.
    fn restart_append_power_cut(
        point: &crate::fault::Snapshot,
        half_done: bool,
        (found, active): (u64, Option<u32>),
        last: u64,
    ) {
        let crashed = crate::fault::FaultStore::after_process_crash(point, half_done);
        let (mut w, _) = WalWriter::open(crashed.clone(), ticking_clock(), SMALL).unwrap();
        assert_eq!(w.last_event_id(), found, "what the cache shows is read");
        assert_eq!(w.active_segment(), active, "where appending goes on");
        for i in found + 1..=last {
            w.append(&reference_event(i)).unwrap();
        }
        assert_eq!(w.sync().unwrap(), last, "acknowledged");
        assert_eq!(after_power_cut(&crashed).unwrap(), ids(1..=last));
    }

    #[test]
    fn a_segment_created_only_in_the_cache_is_made_durable_before_it_is_written() {
        // Issue 9, defect 1 (the directory): killed after a new segment's rename but before
        // the directory's sync, the segment exists only in the cache; appending to it
        // and syncing its file does not make its name durable.
        let points = crash_points(|w| {
            for i in 1..=4100 {
                w.append(&reference_event(i)).unwrap();
            }
        });
        let creating: Vec<_> = points
            .iter()
            .filter(|p| {
                matches!(
                    p.in_flight,
                    Some(crate::fault::InFlight::Create { index: 1, .. })
                )
            })
            .collect();
        assert_eq!(creating.len(), 1);
        // Appending goes on in the cached segment.
        restart_append_power_cut(creating[0], true, (4096, Some(1)), 4150);
    }

    #[test]
    fn refused_events_write_nothing() {
        let (mut w, _) = open(MemStore::new());
        w.append(&reference_event(5)).unwrap();
        w.sync().unwrap();
        let before = images(w.store());
        let mut bad_type = reference_event(9);
        bad_type.as_mut_bytes()[40] = 9;
        let cases = [
            (
                reference_event(5),
                Error::EventIdNotIncreasing {
                    event_id: 5,
                    last_event_id: 5,
                },
            ),
            (
                reference_event(4),
                Error::EventIdNotIncreasing {
                    event_id: 4,
                    last_event_id: 5,
                },
            ),
            (
                RequestEvent::ZERO,
                Error::InvalidEvent {
                    event_id: 0,
                    defect: EventDefect::ZeroEventId,
                },
            ),
            (
                bad_type,
                Error::InvalidEvent {
                    event_id: 9,
                    defect: EventDefect::InvalidType(9),
                },
            ),
        ];
        for (event, want) in cases {
            assert_eq!(w.append(&event), Err(want));
        }
        w.sync().unwrap();
        assert_eq!(images(w.store()), before, "a refused event changed the log");
        // The writer is not stopped by a refusal.
        w.append(&reference_event(6)).unwrap();
        assert_eq!(w.last_event_id(), 6);
    }

    #[test]
    fn a_synced_partial_block_is_sealed_and_never_rewritten() {
        let (mut w, _) = open(MemStore::new());
        for i in 1..=10 {
            w.append(&reference_event(i)).unwrap();
        }
        assert_eq!(w.durable_event_id(), 0);
        assert_eq!(w.sync().unwrap(), 10);
        let slot0 = w.store().image(0).unwrap()[64..64 + 16_448].to_vec();
        w.append(&reference_event(11)).unwrap();
        w.sync().unwrap();
        let image = w.store().image(0).unwrap();
        assert_eq!(image[64..64 + 16_448], slot0[..], "slot 0 was rewritten");
        let b1 =
            crate::block::Block::read_from_bytes(&image[64 + 16_448..64 + 2 * 16_448]).unwrap();
        assert_eq!(b1.header.event_count(), 1);
        assert_eq!(b1.header.block_index(), 1);
        let mut store = w.into_store();
        assert_eq!(
            replay(&mut store, crate::replay::Mode::Strict, None).ids,
            ids(1..=11)
        );
    }

    #[test]
    fn full_segments_are_sealed_when_full() {
        let (mut w, _) = open(MemStore::new());
        for i in 1..=4096 {
            w.append(&reference_event(i)).unwrap();
        }
        assert_eq!(w.active_segment(), None);
        assert_eq!(w.durable_event_id(), 4096, "sealing syncs");
        assert!(
            matches!(header(w.store(), 0).check(0), Ok(HeaderState::Sealed(t)) if t.event_count == 4096)
        );
        w.close().unwrap();
        assert_eq!(
            w.store().indices(),
            [0],
            "closing must not create an empty segment"
        );
    }

    #[test]
    fn reopening_continues_ids_and_chain() {
        let store = write_events((1..=5000).map(reference_event), 16, Some(1000), false);
        let (mut w, rec) = open(store);
        assert_eq!(rec.summary.status, Status::Ok);
        assert_eq!(rec.sealed_tail, None);
        assert_eq!((w.last_event_id(), w.durable_event_id()), (5000, 5000));
        assert_eq!(w.active_segment(), Some(1));
        assert!(matches!(
            w.append(&reference_event(5000)),
            Err(Error::EventIdNotIncreasing { .. })
        ));
        for i in 5001..=9000 {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        let mut store = w.into_store();
        let r = replay(&mut store, crate::replay::Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=9000));
        assert_eq!(r.summary.status, Status::Ok);
        assert!(!r.summary.open_segment);
    }

    #[test]
    fn open_replaying_hands_every_recovered_event_once_from_one_pass() {
        // A torn tail (block 10 written, not synced, damaged) is set aside: only the
        // valid prefix is handed, which is what the log holds after recovery.
        let mut store = write_events((1..=3000).map(reference_event), 16, Some(2560), false);
        store
            .with_bytes_mut(0, |b| b[block_offset_bytes(10) as usize + 9000] ^= 1)
            .unwrap();
        // Even when asked to scan from the checkpoint: every event is handed.
        let config = WriterConfig {
            open_scan: OpenScan::FromCheckpoint,
            ..SMALL
        };
        let mut seen = Vec::new();
        let (mut w, rec) =
            WalWriter::open_replaying(store, ticking_clock(), config, |e: &RequestEvent| {
                seen.push(e.event_id());
            })
            .unwrap();
        assert_eq!(seen, ids(1..=2560));
        assert_eq!((rec.summary.events, w.last_event_id()), (2560, 2560));
        assert_eq!(rec.scanned_from_segment, Some(0));
        for i in 2561..=5000 {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        let mut seen = Vec::new();
        let (w, _) = WalWriter::open_replaying(
            w.into_store(),
            ticking_clock(),
            config,
            |e: &RequestEvent| {
                seen.push(e.event_id());
            },
        )
        .unwrap();
        assert_eq!(seen, ids(1..=5000));
        assert_eq!(w.last_event_id(), 5000);
    }

    #[test]
    fn reopening_a_sealed_log_starts_a_new_segment() {
        let store = reference_log(100, 16, true);
        let (mut w, _) = open(store);
        assert_eq!(w.active_segment(), None);
        w.append(&reference_event(101)).unwrap();
        assert_eq!(w.active_segment(), Some(1));
        w.close().unwrap();
        let mut store = w.into_store();
        assert_eq!(
            replay(&mut store, crate::replay::Mode::Strict, None).ids,
            ids(1..=101)
        );
    }

    #[test]
    fn a_torn_tail_is_sealed_off_in_place_and_appending_goes_on() {
        let store = write_events((1..=3000).map(reference_event), 16, Some(2560), false);
        // Blocks 0..=9 are synced; block 10 (events 2561..=2816) is written, not synced.
        let mut store = store;
        store
            .with_bytes_mut(0, |b| b[block_offset_bytes(10) as usize + 9000] ^= 1)
            .unwrap();
        let before = store.image(0).unwrap();
        let (mut w, rec) = open(store);
        assert_eq!(rec.summary.status, Status::Truncated);
        let tail = rec.sealed_tail.unwrap();
        assert_eq!(
            (tail.segment, tail.block_count, tail.reason),
            (
                0,
                10,
                SealReason::TornTail {
                    past_watermark: true
                }
            )
        );
        let aside = tail.set_aside.unwrap();
        assert_eq!(
            (aside.first_slot, aside.last_slot, aside.slots, aside.bytes),
            (10, 10, 1, 16_448)
        );
        assert_eq!(aside.claimed_event_ids, Some((2561, 2816)));
        assert_eq!(w.last_event_id(), 2560);
        // Nothing but the header changed: the torn block is still there, unread.
        let after = w.store().image(0).unwrap();
        assert_eq!(after[64..], before[64..]);
        assert!(
            matches!(header(w.store(), 0).check(0), Ok(HeaderState::Sealed(t)) if t.block_count == 10 && t.last_event_id == 2560)
        );
        for i in 2561..=3500 {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        let mut store = w.into_store();
        assert_eq!(
            store.indices(),
            [0, 1],
            "appending went on in a new segment"
        );
        let r = replay(&mut store, crate::replay::Mode::Strict, None);
        assert_eq!(r.ids, ids(1..=3500));
        assert_eq!(r.summary.status, Status::Ok);
        let r = replay(&mut store, crate::replay::Mode::Diagnostic, None);
        assert_eq!(
            (r.ids, r.summary.issues),
            (ids(1..=3500), 0),
            "diagnostic replay never reads past a sealed block count either"
        );
    }

    #[test]
    fn damage_before_the_end_refuses_to_open_and_changes_nothing() {
        let mut store = reference_log(10_000, 16, false);
        store
            .with_bytes_mut(0, |b| b[block_offset_bytes(3) as usize + 276] ^= 1)
            .unwrap();
        let before = images(&store);
        let Err(e) = WalWriter::open(store.clone(), ticking_clock(), SMALL) else {
            panic!("opened a damaged log");
        };
        match e {
            Error::Damaged { issue, status } => {
                assert_eq!((issue.segment, issue.block), (0, Some(3)));
                assert!(matches!(issue.reason, Reason::BlockChecksumMismatch { .. }));
                assert_eq!(status, Status::Corrupt);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(images(&store), before);
    }

    #[test]
    fn a_sealed_segment_missing_its_last_block_is_refused() {
        // Truncated, but the sealed header vouches for the block: lost durable data,
        // not a torn tail. The checkpoint written at sealing says so; without it, the
        // sealed header does.
        let mut store = reference_log(4000, 16, true);
        store
            .with_bytes_mut(0, |b| b[block_offset_bytes(15) as usize + 64] ^= 1)
            .unwrap();
        let before = images(&store);
        assert!(matches!(
            WalWriter::open(store.clone(), ticking_clock(), SMALL),
            Err(Error::DurableDataMissing {
                durable_event_id: 4000,
                found_event_id: 3840,
                issue: Some(_)
            })
        ));
        let mut no_checkpoint = MemStore::new();
        for i in store.indices() {
            no_checkpoint.insert_image(i, store.image(i).unwrap());
        }
        assert!(matches!(
            WalWriter::open(no_checkpoint, ticking_clock(), SMALL),
            Err(Error::Damaged {
                status: Status::Truncated,
                ..
            })
        ));
        assert_eq!(images(&store), before);
    }

    #[test]
    fn a_failed_sync_stops_the_writer() {
        let store = FaultStore::new();
        let faults = store.clone();
        let (mut w, _) = WalWriter::open(store, ticking_clock(), SMALL).unwrap();
        for i in 1..=300 {
            w.append(&reference_event(i)).unwrap();
        }
        assert_eq!(w.sync(), Ok(300));
        w.append(&reference_event(301)).unwrap();
        faults.set_faults(Faults {
            fail_sync_at: Some(faults.operations().syncs),
            ..Faults::default()
        });
        assert!(matches!(w.sync(), Err(Error::Device(_))));
        assert_eq!(
            w.durable_event_id(),
            300,
            "nothing after the failed sync is durable"
        );
        faults.set_faults(Faults::default());
        let syncs = faults.operations().syncs;
        assert_eq!(
            w.sync(),
            Err(Error::Poisoned),
            "a failed sync is never retried"
        );
        assert_eq!(faults.operations().syncs, syncs, "not even tried");
        assert_eq!(w.append(&reference_event(302)), Err(Error::Poisoned));
        assert_eq!(w.close(), Err(Error::Poisoned));
    }

    #[test]
    fn a_failed_write_stops_the_writer() {
        let store = FaultStore::new();
        let faults = store.clone();
        let (mut w, _) = WalWriter::open(store, ticking_clock(), SMALL).unwrap();
        for i in 1..=255 {
            w.append(&reference_event(i)).unwrap();
        }
        faults.set_faults(Faults {
            fail_write_at: Some(faults.operations().writes),
            ..Faults::default()
        });
        assert!(matches!(
            w.append(&reference_event(256)),
            Err(Error::Device(_))
        ));
        faults.set_faults(Faults::default());
        assert_eq!(w.append(&reference_event(257)), Err(Error::Poisoned));
    }

    #[test]
    fn segments_the_cpp_reader_misreads_need_to_be_allowed() {
        let large = WriterConfig::with_blocks(CPP_READER_BLOCKS_MAX + 1);
        assert_eq!(
            WalWriter::open(MemStore::new(), ticking_clock(), large).err(),
            Some(Error::InvalidConfig(LARGE_SEGMENTS_REFUSED))
        );
        assert!(
            WalWriter::open(
                MemStore::new(),
                ticking_clock(),
                WriterConfig::with_blocks(CPP_READER_BLOCKS_MAX)
            )
            .is_ok()
        );
        let allowed = WriterConfig {
            allow_large_segments: true,
            ..large
        };
        assert!(WalWriter::open(MemStore::new(), ticking_clock(), allowed).is_ok());
    }

    /// Appends events after the last one of `w` until it has created segment
    /// `index`, then closes it.
    fn append_into_segment(w: &mut WalWriter<MemStore, impl Clock>, index: u32) {
        let mut id = w.last_event_id();
        // Bounded: each event fills part of a segment, so segment `index` comes.
        while w.active_segment().is_none_or(|a| a < index) {
            id += 1;
            w.append(&reference_event(id)).unwrap();
        }
        w.close().unwrap();
    }

    #[test]
    fn reopening_keeps_the_size_of_the_logs_segments() {
        // Open last segment, then sealed last segment: new segments keep 16 slots.
        for close in [false, true] {
            let store = write_events((1..=5000).map(reference_event), 16, None, close);
            let (mut w, _) =
                WalWriter::open(store, ticking_clock(), WriterConfig::default()).unwrap();
            assert_eq!(w.blocks_per_segment(), 16, "close {close}");
            append_into_segment(&mut w, 2);
            let store = w.into_store();
            assert_eq!(
                store.image(2).unwrap().len() as u64,
                segment_size_bytes(16),
                "close {close}"
            );
        }
        // A new log gets the configured size.
        let (w, _) =
            WalWriter::open(MemStore::new(), ticking_clock(), WriterConfig::default()).unwrap();
        assert_eq!(w.blocks_per_segment(), SEGMENT_BLOCKS_DEFAULT);
    }

    #[test]
    fn a_size_asked_for_wins_over_the_logs() {
        let store = reference_log(100, 16, true);
        let config = WriterConfig {
            keep_segment_blocks: false,
            ..WriterConfig::with_blocks(32)
        };
        let (mut w, _) = WalWriter::open(store, ticking_clock(), config).unwrap();
        assert_eq!(w.blocks_per_segment(), 32);
        append_into_segment(&mut w, 1);
        let store = w.into_store();
        assert_eq!(store.image(0).unwrap().len() as u64, segment_size_bytes(16));
        assert_eq!(store.image(1).unwrap().len() as u64, segment_size_bytes(32));
    }

    #[test]
    fn a_kept_size_follows_the_rules_of_a_configured_one() {
        let mut store = reference_log(100, 16, false);
        let tail = replay(&mut store, Mode::Strict, None).summary.tail.unwrap();
        let keep = WriterConfig::default();
        let large = Tail {
            slots: CPP_READER_BLOCKS_MAX + 1,
            ..tail
        };
        assert_eq!(
            new_segment_blocks::<()>(&keep, Some(&large)),
            Err(Error::InvalidConfig(LARGE_SEGMENTS_REFUSED))
        );
        let allowed = WriterConfig {
            allow_large_segments: true,
            ..keep
        };
        assert_eq!(
            new_segment_blocks::<()>(&allowed, Some(&large)),
            Ok(CPP_READER_BLOCKS_MAX + 1)
        );
        // A last segment too short to be one is not a size to keep.
        let short = Tail { slots: 3, ..tail };
        assert_eq!(
            new_segment_blocks::<()>(&keep, Some(&short)),
            Ok(SEGMENT_BLOCKS_DEFAULT)
        );
        assert_eq!(
            new_segment_blocks::<()>(&keep, None),
            Ok(SEGMENT_BLOCKS_DEFAULT)
        );
    }

    /// A segment writer on a new 16-slot segment 0 of `store`.
    fn segment_writer(store: &mut MemStore) -> SegmentWriter<<MemStore as SegmentStore>::Device> {
        let header = SegmentHeader::new_open(0, 1);
        let device = store
            .create_segment(0, segment_size_bytes(16), header.as_bytes())
            .unwrap();
        SegmentWriter::new(device, header).unwrap()
    }

    #[test]
    fn a_seal_whose_header_does_not_check_is_refused_before_it_is_written() {
        let mut store = MemStore::new();
        let mut w = segment_writer(&mut store);
        for i in 1..=300 {
            w.push(&reference_event(i)).unwrap();
        }
        w.flush().unwrap();
        // Totals that contradict each other (fewer events than blocks): a bug, which
        // the seal must report, in every build, instead of writing it.
        w.event_count = 1;
        assert_eq!(
            w.seal(2),
            Err(Error::LogicBug("the sealed header does not check"))
        );
        drop(w);
        assert_eq!(header(&store, 0), SegmentHeader::new_open(0, 1));
    }

    #[test]
    fn a_block_whose_header_does_not_check_is_refused_before_it_is_written() {
        let mut store = MemStore::new();
        let mut w = segment_writer(&mut store);
        w.push(&reference_event(1)).unwrap();
        // A count of 0 (no block holds it), and events whose first id is 0.
        w.fill = 0;
        assert_eq!(
            w.write_block(),
            Err(Error::LogicBug("the finalized block header does not check"))
        );
        w.fill = 1;
        w.block.events[0] = RequestEvent::ZERO;
        assert_eq!(
            w.write_block(),
            Err(Error::LogicBug("the finalized block header does not check"))
        );
        assert_eq!(w.next_slot, 0);
        drop(w);
        let image = store.image(0).unwrap();
        let slot0 = block_offset_bytes(0) as usize..block_offset_bytes(1) as usize;
        assert!(image[slot0].iter().all(|&b| b == 0), "slot 0 was written");
    }

    #[test]
    fn configuration_is_checked() {
        for blocks in [0, 15, 524_289] {
            assert!(matches!(
                WalWriter::open(
                    MemStore::new(),
                    ticking_clock(),
                    WriterConfig::with_blocks(blocks)
                ),
                Err(Error::InvalidConfig(_))
            ));
        }
    }

    fn checkpoint_of(store: &MemStore) -> CheckpointFields {
        Checkpoint::decode(
            &store
                .checkpoint(CheckpointKind::Sealed)
                .expect("a checkpoint"),
        )
        .unwrap()
    }

    #[test]
    fn checkpoints_follow_seals_closes_and_recoveries() {
        let (mut w, rec) = open(MemStore::new());
        assert_eq!(rec.checkpoint, CheckpointUse::Absent);
        for i in 1..=4096 + 300 {
            w.append(&reference_event(i)).unwrap();
        }
        // Segment 0 was sealed when full: the checkpoint says so.
        let cp = checkpoint_of(w.store());
        assert_eq!(
            (cp.segment_index, cp.next_slot, cp.last_event_id),
            (0, 16, 4096)
        );
        w.sync().unwrap();
        assert_eq!(
            checkpoint_of(w.store()).last_event_id,
            4096,
            "a sync alone does not write one"
        );
        w.close().unwrap();
        let cp = checkpoint_of(w.store());
        assert_eq!(
            (cp.segment_index, cp.next_slot, cp.last_event_id),
            (1, 2, 4396)
        );
        assert_eq!(w.store().sealed(), [0, 1]);

        let (_, rec) = open(w.into_store());
        assert!(matches!(rec.checkpoint, CheckpointUse::Confirmed(c) if c.last_event_id == 4396));
    }

    #[test]
    fn reopening_a_healthy_log_writes_nothing() {
        let store = reference_log(5000, 16, true);
        let marks = |s: &MemStore| CheckpointKind::ALL.map(|k| s.checkpoint(k));
        let before = (images(&store), marks(&store));
        let (mut w, _) = open(store);
        w.close().unwrap();
        let store = w.into_store();
        assert_eq!((images(&store), marks(&store)), before);
    }

    /// A log of events 1..=1000 synced (blocks 0..=3, the last partial), then two
    /// full blocks (slots 4 and 5, events 1001..=1512) written and not synced: the
    /// writer dropped as in a crash.
    fn synced_then_two_unsynced_blocks() -> MemStore {
        let (mut w, _) = open(MemStore::new());
        for i in 1..=1000 {
            w.append(&reference_event(i)).unwrap();
        }
        w.sync().unwrap();
        for i in 1001..=1512 {
            w.append(&reference_event(i)).unwrap();
        }
        w.into_store()
    }

    fn zero_slot(store: &mut MemStore, segment: u32, slot: u32) {
        store
            .with_bytes_mut(segment, |b| {
                let at = block_offset_bytes(slot) as usize;
                b[at..at + 16_448].fill(0);
            })
            .unwrap();
    }

    #[test]
    fn the_sync_mark_follows_every_sync() {
        let (mut w, _) = open(MemStore::new());
        assert!(
            w.store().checkpoint(CheckpointKind::Sealed).is_some(),
            "a new log is watermarked from the start"
        );
        for i in 1..=300 {
            w.append(&reference_event(i)).unwrap();
        }
        w.sync().unwrap();
        let mark =
            Checkpoint::decode(&w.store().checkpoint(CheckpointKind::Synced).unwrap()).unwrap();
        assert_eq!(
            (mark.segment_index, mark.next_slot, mark.last_event_id),
            (0, 2, 300)
        );
        // No new events: no new mark.
        let before = w.store().checkpoint(CheckpointKind::Synced);
        w.sync().unwrap();
        assert_eq!(w.store().checkpoint(CheckpointKind::Synced), before);

        let config = WriterConfig {
            sync_marks: false,
            ..SMALL
        };
        let (mut w, _) = WalWriter::open(MemStore::new(), ticking_clock(), config).unwrap();
        w.append(&reference_event(1)).unwrap();
        w.sync().unwrap();
        assert_eq!(w.store().checkpoint(CheckpointKind::Synced), None);
    }

    #[test]
    fn reordered_unsynced_writes_leave_a_hole_that_recovery_sets_aside() {
        // The crash kept slot 5 and lost slot 4: a hole, then a valid block, neither of
        // them acknowledged.
        let mut store = synced_then_two_unsynced_blocks();
        zero_slot(&mut store, 0, 4);
        let r = replay(&mut store.snapshot(), crate::replay::Mode::Strict, None);
        assert_eq!(
            r.summary.status,
            Status::Corrupt,
            "verify still reports the hole"
        );
        let (w, rec) = open(store);
        assert_eq!(w.last_event_id(), 1000);
        let tail = rec.sealed_tail.unwrap();
        let aside = tail.set_aside.unwrap();
        assert_eq!((tail.block_count, aside.first_slot, aside.slots), (4, 5, 1));
        assert_eq!(aside.claimed_event_ids, Some((1257, 1512)));
        let mut store = w.into_store();
        let r = replay(&mut store, crate::replay::Mode::Strict, None);
        assert_eq!((r.ids.len(), r.summary.status), (1000, Status::Ok));
    }

    #[test]
    fn a_lost_synced_block_is_refused_not_set_aside() {
        // The same hole, but the blocks were synced: acknowledged data is gone.
        let (mut w, _) = open(MemStore::new());
        for i in 1..=1512 {
            w.append(&reference_event(i)).unwrap();
        }
        w.sync().unwrap();
        let mut store = w.into_store();
        zero_slot(&mut store, 0, 4);
        let before = images(&store);
        assert!(matches!(
            WalWriter::open(store.clone(), ticking_clock(), SMALL),
            Err(Error::DurableDataMissing {
                durable_event_id: 1512,
                found_event_id: 1024,
                issue: Some(_)
            })
        ));
        assert_eq!(images(&store), before);
    }

    #[test]
    fn a_bit_flip_in_the_last_synced_block_is_refused_not_set_aside() {
        let (mut w, _) = open(MemStore::new());
        for i in 1..=1000 {
            w.append(&reference_event(i)).unwrap();
        }
        w.sync().unwrap();
        let mut store = w.into_store();
        // Block 3 holds events 769..=1000: the last acknowledged ones, nothing after.
        store
            .with_bytes_mut(0, |b| b[block_offset_bytes(3) as usize + 64 + 20] ^= 0x20)
            .unwrap();
        let r = replay(&mut store.snapshot(), crate::replay::Mode::Strict, None);
        assert_eq!(
            r.summary.status,
            Status::Truncated,
            "it looks like a torn tail"
        );
        assert!(matches!(
            WalWriter::open(store, ticking_clock(), SMALL),
            Err(Error::DurableDataMissing {
                durable_event_id: 1000,
                found_event_id: 768,
                ..
            })
        ));
    }

    #[test]
    fn a_hole_without_watermark_records_is_refused() {
        // A log fswal never kept a watermark for (the C++ recorder's): nothing proves
        // the blocks after the hole were never acknowledged.
        let mut store = synced_then_two_unsynced_blocks();
        zero_slot(&mut store, 0, 4);
        let mut bare = MemStore::new();
        bare.insert_image(0, store.image(0).unwrap());
        assert!(matches!(
            WalWriter::open(bare, ticking_clock(), SMALL),
            Err(Error::Damaged {
                status: Status::Corrupt,
                ..
            })
        ));
    }

    #[test]
    fn a_damaged_checkpoint_is_ignored() {
        let mut store = reference_log(5000, 16, true);
        let mut bytes = store
            .read_checkpoint(CheckpointKind::Sealed)
            .unwrap()
            .unwrap();
        bytes[30] ^= 1;
        store
            .write_checkpoint(CheckpointKind::Sealed, &bytes)
            .unwrap();
        let config = WriterConfig {
            open_scan: OpenScan::FromCheckpoint,
            ..SMALL
        };
        let (w, rec) = WalWriter::open(store, ticking_clock(), config).unwrap();
        assert_eq!(
            rec.checkpoint,
            CheckpointUse::Invalid(CheckpointDefect::ChecksumMismatch)
        );
        assert_eq!(
            rec.scanned_from_segment,
            Some(0),
            "no valid checkpoint: full scan"
        );
        assert_eq!(w.last_event_id(), 5000);
    }

    #[test]
    fn opening_from_the_checkpoint_skips_earlier_segments() {
        let mut store = reference_log(20_000, 16, true);
        // Damage in segment 1, long before the checkpoint (segment 4).
        store
            .with_bytes_mut(1, |b| b[block_offset_bytes(2) as usize + 100] ^= 1)
            .unwrap();
        assert!(matches!(
            WalWriter::open(store.clone(), ticking_clock(), SMALL),
            Err(Error::Damaged { .. })
        ));
        let fast = WriterConfig {
            open_scan: OpenScan::FromCheckpoint,
            ..SMALL
        };
        let (mut w, rec) = WalWriter::open(store, ticking_clock(), fast).unwrap();
        assert_eq!(rec.scanned_from_segment, Some(4));
        assert_eq!(rec.summary.status, Status::Ok);
        assert_eq!(rec.summary.segments, 1);
        assert_eq!(w.last_event_id(), 20_000);
        w.append(&reference_event(20_001)).unwrap();
        w.close().unwrap();
        // A full replay still finds the old damage: skipping it was the trade.
        let mut store = w.into_store();
        let r = replay(&mut store, crate::replay::Mode::Strict, None);
        assert_eq!(r.summary.status, Status::Corrupt);
    }

    #[test]
    fn lost_durable_segments_refuse_to_open() {
        // The newest segment deleted behind fswal's back: the checkpoint knows.
        let mut store = reference_log(10_000, 16, true);
        store.remove(2).unwrap();
        let e = WalWriter::open(store, ticking_clock(), SMALL)
            .err()
            .unwrap();
        let Error::DurableDataMissing {
            durable_event_id: 10_000,
            found_event_id: 8192,
            issue: Some(issue),
        } = e
        else {
            panic!("{e:?}");
        };
        // Placed where the missing data would have started: after segment 1's end.
        assert_eq!((issue.segment, issue.block), (1, Some(16)));
        assert_eq!(
            issue.reason,
            crate::issue::Reason::DurableDataMissing {
                durable_event_id: 10_000
            }
        );
    }

    #[test]
    fn a_truncated_open_tail_is_sealed_where_its_blocks_end() {
        // Issue 9, defect 5: `truncate -s 216064 FS.00000001.wal` (13 whole slots and a
        // part of one) made recovery clear the slot, then refuse forever with "segment
        // device does not hold 16..=524288 block slots", naming no file.
        for (cut_bytes, valid_blocks, torn) in [
            // Inside slot 13, which holds nothing: nothing to set aside.
            (216_064u64, 11u32, false),
            // Inside block 10, written and never synced: set aside in place.
            (block_offset_bytes(10) + 5000, 10, true),
        ] {
            let mut store = write_events((1..=4096 + 2900).map(reference_event), 16, None, false);
            store.set_len(1, cut_bytes).unwrap().unwrap();
            let before = store.image(1).unwrap();
            let (mut w, rec) = open(store);
            let tail = rec.sealed_tail.unwrap();
            assert_eq!(
                (tail.segment, tail.block_count),
                (1, valid_blocks),
                "{cut_bytes}"
            );
            let last = 4096 + 256 * u64::from(valid_blocks);
            assert_eq!(w.last_event_id(), last);
            if torn {
                assert_eq!(
                    tail.reason,
                    SealReason::TornTail {
                        past_watermark: true
                    }
                );
                assert_eq!(tail.set_aside.map(|a| a.bytes), Some(5000));
            } else {
                assert_eq!(tail.reason, SealReason::TooShort);
                assert_eq!(tail.set_aside, None);
            }
            assert_eq!(
                w.store().image(1).unwrap()[64..],
                before[64..],
                "only the header changed"
            );
            for i in last + 1..=last + 500 {
                w.append(&reference_event(i)).unwrap();
            }
            w.close().unwrap();
            let mut store = w.into_store();
            assert_eq!(store.indices(), [0, 1, 2]);
            let r = replay(&mut store, Mode::Strict, None);
            assert_eq!((r.ids, r.summary.status), (ids(1..=last + 500), Status::Ok));
        }
    }

    /// An independent copy of `store` (its clones share one store).
    fn copy_of(store: &MemStore) -> MemStore {
        let mut copy = MemStore::new();
        for i in store.indices() {
            copy.insert_image(i, store.image(i).unwrap());
        }
        for kind in CheckpointKind::ALL {
            if let Some(record) = store.checkpoint(kind) {
                copy.write_checkpoint(kind, &record).unwrap();
            }
        }
        copy
    }

    #[test]
    fn replaced_history_is_refused_even_when_ids_climb() {
        // Issue 9, defect 8: another writer deleted acknowledged segments and appended
        // events whose ids climbed past the watermark; fswal compared ids only.
        let original = reference_log(10_000, 16, true);
        // The same first 8192 events, then other ones from 9001: ids past 10 000.
        let other = write_events(
            (1..=8192).chain(9001..=14_000).map(reference_event),
            16,
            None,
            true,
        );
        let mut replaced = copy_of(&original);
        replaced.insert_image(2, other.image(2).unwrap());
        replaced.insert_image(3, other.image(3).unwrap());
        let before = images(&replaced);
        let Err(Error::HistoryReplaced { issue }) =
            WalWriter::open(replaced.clone(), ticking_clock(), SMALL)
        else {
            panic!("replaced history was accepted");
        };
        // Segment 2 block 7, where the checkpoint records event 10 000's block.
        assert_eq!((issue.segment, issue.block), (2, Some(7)));
        assert!(matches!(
            issue.reason,
            Reason::WatermarkMismatch {
                durable_event_id: 10_000,
                found_event_id: Some(11_048),
                ..
            }
        ));
        assert_eq!(images(&replaced), before, "nothing was changed");
        let r = replay(&mut replaced.snapshot(), Mode::Strict, None);
        assert_eq!(r.summary.status, Status::Corrupt);
        assert_eq!(
            r.ids.last(),
            Some(&10_792),
            "nothing from the mismatching block on is replayed"
        );
        // A segment where the record's block would be, ending before it, then more ids.
        let (mut w, _) = open(reference_log(9000, 16, true));
        for i in 20_001..=24_000 {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        let short = w.into_store();
        assert_eq!(
            header(&short, 2).block_count(),
            4,
            "segment 2 ends before block 7"
        );
        let mut replaced = copy_of(&original);
        replaced.remove(2);
        for i in short.indices().into_iter().filter(|&i| i >= 2) {
            replaced.insert_image(i, short.image(i).unwrap());
        }
        assert!(matches!(
            WalWriter::open(replaced, ticking_clock(), SMALL),
            Err(Error::HistoryReplaced { .. })
        ));
        // The log as written reopens.
        assert!(WalWriter::open(original, ticking_clock(), SMALL).is_ok());
    }

    #[test]
    fn opening_reads_each_checkpoint_record_once() {
        // Issue 11: the writer and its replay each read both records.
        let counting = crate::testutil::CountingStore::new(reference_log(5000, 16, true));
        let reads = counting.checkpoint_reads.clone();
        let (w, rec) = WalWriter::open(counting, ticking_clock(), SMALL).unwrap();
        assert_eq!((rec.summary.status, w.last_event_id()), (Status::Ok, 5000));
        assert_eq!(reads.load(Ordering::Relaxed), 2, "one read of each record");
    }

    #[test]
    fn retention_costs_what_it_deletes() {
        // Issue 9, defect 10: retention opened every segment at each rotation.
        let store = reference_log(120 * 4096, 16, true);
        let counting = crate::testutil::CountingStore::new(store);
        let opens = counting.opens.clone();
        let config = WriterConfig {
            retention: Retention {
                segments_max: Some(118),
                bytes_max: None,
            },
            ..SMALL
        };
        let (mut w, _) = WalWriter::open(counting, ticking_clock(), config).unwrap();
        let at_open = opens.load(Ordering::Relaxed);
        for i in 120 * 4096 + 1..=130 * 4096 {
            w.append(&reference_event(i)).unwrap();
        }
        let rotations = 10;
        let per_rotation = (opens.load(Ordering::Relaxed) - at_open) / rotations;
        assert!(
            per_rotation <= 3,
            "{per_rotation} segment opens per rotation"
        );
        w.close().unwrap();
        let mut store = w.into_store().inner;
        assert_eq!(store.indices().len(), 118);
        assert_eq!(store.indices()[0], 12);
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!(r.summary.status, Status::Ok);
    }

    #[test]
    fn retention_never_leaves_a_log_recovery_refuses() {
        // Keeping one segment, the segment the checkpoint names is the one retention
        // removes at a rotation: the checkpoint moves first, and a crash anywhere leaves
        // a log that reopens.
        let config = WriterConfig {
            retention: Retention {
                segments_max: Some(1),
                bytes_max: None,
            },
            ..SMALL
        };
        let store = crate::fault::FaultStore::new();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&seen);
        store.set_observer(Some(std::boxed::Box::new(
            move |s: &crate::fault::Snapshot| {
                log.lock().unwrap().push(s.clone());
            },
        )));
        let (mut w, _) = WalWriter::open(store.clone(), ticking_clock(), config).unwrap();
        for i in 1..=3 * 4096 + 100 {
            w.append(&reference_event(i)).unwrap();
            if i % 1000 == 0 {
                w.sync().unwrap();
            }
        }
        w.close().unwrap();
        store.set_observer(None);
        let points = seen.lock().unwrap().clone();
        assert!(
            points
                .iter()
                .any(|p| p.next == Some(crate::fault::OpKind::Remove))
        );
        for point in &points {
            for image in [
                point.durable_image(),
                point.image(
                    &std::vec![crate::fault::Landed::All; point.pending.len()],
                    512,
                ),
            ] {
                let recovered = crate::fault::FaultStore::from_image(&image);
                if let Err(e) = WalWriter::open(recovered, ticking_clock(), config) {
                    panic!("op {} ({:?}): refused: {e}", point.op, point.next);
                }
            }
            let crashed = crate::fault::FaultStore::after_process_crash(point, true);
            if let Err(e) = WalWriter::open(crashed, ticking_clock(), config) {
                panic!(
                    "op {} ({:?}), process crash: refused: {e}",
                    point.op, point.next
                );
            }
        }
    }

    /// Turns segment `index` of `store` into what the C++ recorder leaves when it
    /// rotated away from it before its maintainer sealed it: the same blocks, an open
    /// header.
    fn unseal(store: &mut MemStore, index: u32) {
        let open = SegmentHeader::new_open(index, 5);
        store
            .with_bytes_mut(index, |b| b[..64].copy_from_slice(open.as_bytes()))
            .unwrap();
    }

    /// Adds `count` empty open segments after the last of `store`, as the C++
    /// recorder's preparer leaves them (first byte zeroed).
    fn prepare(store: &mut MemStore, count: u32) {
        let last = store.indices().last().copied().unwrap_or(0);
        for index in last + 1..=last + count {
            let mut image = std::vec![0u8; segment_size_bytes(16) as usize];
            image[..64].copy_from_slice(SegmentHeader::new_open(index, 9).as_bytes());
            image[0] = 0;
            store.insert_image(index, image);
        }
    }

    #[test]
    fn a_segment_sealed_late_is_sealed_before_the_log_goes_on() {
        let original = reference_log(10_000, 16, true);
        let mut store = copy_of(&original);
        unseal(&mut store, 1);
        let (mut w, rec) = open(store);
        assert_eq!(
            (rec.summary.status, rec.summary.late_sealed, rec.sealed_late),
            (Status::Ok, Some(1), 1)
        );
        let Ok(HeaderState::Sealed(totals)) = header(w.store(), 1).check(1) else {
            panic!("segment 1 is sealed again");
        };
        let Ok(HeaderState::Sealed(want)) = header(&original, 1).check(1) else {
            panic!("sealed");
        };
        assert_eq!(
            totals, want,
            "the totals the C++ maintainer would have written"
        );
        for i in 10_001..=10_500 {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        let mut store = w.into_store();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!((r.ids, r.summary.status), (ids(1..=10_500), Status::Ok));
        assert_eq!(r.summary.late_sealed, None);
    }

    #[test]
    fn prepared_segments_after_the_end_are_removed_and_the_tail_goes_on() {
        // Segment 1 open with events 4097..=5000, then three prepared segments.
        let mut store = write_events((1..=5000).map(reference_event), 16, Some(5000), false);
        prepare(&mut store, 3);
        assert_eq!(store.indices(), [0, 1, 2, 3, 4]);
        let (mut w, rec) = open(store);
        assert_eq!(rec.prepared_removed, 3);
        assert_eq!(w.store().indices(), [0, 1], "nothing held an event");
        assert_eq!((w.active_segment(), w.last_event_id()), (Some(1), 5000));
        for i in 5001..=9000 {
            w.append(&reference_event(i)).unwrap();
        }
        w.close().unwrap();
        let mut store = w.into_store();
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!((r.ids, r.summary.status), (ids(1..=9000), Status::Ok));
        // After a sealed segment, the first prepared one is where appending goes on.
        let mut store = reference_log(4096, 16, true);
        prepare(&mut store, 3);
        let (mut w, rec) = open(store);
        assert_eq!((rec.prepared_removed, w.active_segment()), (2, Some(1)));
        w.append(&reference_event(4097)).unwrap();
        w.close().unwrap();
        let mut store = w.into_store();
        assert_eq!(store.indices(), [0, 1]);
        let s1 = header(&store, 1);
        assert_eq!(
            s1.magic(),
            crate::segment_header::SEGMENT_MAGIC,
            "its magic back"
        );
        let r = replay(&mut store, Mode::Strict, None);
        assert_eq!((r.ids, r.summary.status), (ids(1..=4097), Status::Ok));
    }

    #[test]
    fn a_prepared_segment_holding_bytes_is_never_removed() {
        let mut store = write_events((1..=5000).map(reference_event), 16, Some(5000), false);
        prepare(&mut store, 2);
        store
            .with_bytes_mut(3, |b| b[block_offset_bytes(7) as usize + 100] = 1)
            .unwrap();
        let before = images(&store);
        let Err(Error::Damaged { issue, .. }) =
            WalWriter::open(store.clone(), ticking_clock(), SMALL)
        else {
            panic!("a prepared segment with bytes in it was accepted");
        };
        assert_eq!(
            (issue.segment, issue.block, issue.reason),
            (3, Some(7), Reason::PreparedSegmentNotEmpty)
        );
        assert_eq!(images(&store), before, "nothing changed");
    }

    #[test]
    fn retention_keeps_the_newest_segments() {
        let config = WriterConfig {
            retention: Retention {
                segments_max: Some(2),
                bytes_max: None,
            },
            ..SMALL
        };
        let (mut w, _) = WalWriter::open(MemStore::new(), ticking_clock(), config).unwrap();
        for i in 1..=5 * 4096 + 10 {
            w.append(&reference_event(i)).unwrap();
            let indices = w.store().indices();
            assert!(indices.len() <= 2, "{indices:?} after event {i}");
        }
        w.close().unwrap();
        let mut store = w.into_store();
        assert_eq!(store.indices(), [4, 5]);
        let r = replay(&mut store, crate::replay::Mode::Strict, None);
        assert_eq!(r.ids, ids(4 * 4096 + 1..=5 * 4096 + 10));
        assert_eq!(r.summary.status, Status::Ok);
        // And the log reopens and goes on.
        let (mut w, rec) = WalWriter::open(store, ticking_clock(), config).unwrap();
        assert_eq!(rec.summary.status, Status::Ok);
        w.append(&reference_event(5 * 4096 + 11)).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn retention_by_bytes_and_never_an_unsealed_segment() {
        let seg_bytes = segment_size_bytes(16);
        let config = WriterConfig {
            retention: Retention {
                segments_max: None,
                bytes_max: Some(3 * seg_bytes),
            },
            ..SMALL
        };
        let (mut w, _) = WalWriter::open(MemStore::new(), ticking_clock(), config).unwrap();
        for i in 1..=6 * 4096 {
            w.append(&reference_event(i)).unwrap();
        }
        assert_eq!(w.store().indices(), [3, 4, 5]);

        // An unsealed old segment stops retention: it is never deleted.
        let mut store = reference_log(3 * 4096, 16, true);
        let open_header = SegmentHeader::new_open(0, 1);
        store
            .with_bytes_mut(0, |b| b[..64].copy_from_slice(open_header.as_bytes()))
            .unwrap();
        let mut w = WalWriter {
            store,
            clock: ticking_clock(),
            config: WriterConfig {
                retention: Retention {
                    segments_max: Some(1),
                    bytes_max: None,
                },
                ..SMALL
            },
            active: None,
            next_index: 3,
            last_event_id: 3 * 4096,
            durable_event_id: 3 * 4096,
            poisoned: false,
            checkpoint_segment: Some(2),
            ledger: Some(Ledger {
                oldest: 0,
                count: 3,
                bytes: 3 * segment_size_bytes(16),
            }),
        };
        w.apply_retention(None).unwrap();
        assert_eq!(w.store().indices(), [0, 1, 2]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Arbitrary increasing ids, segment sizes and sync points: what is written is
        /// what replays, before and after a reopen that appends more.
        #[test]
        fn write_replay_round_trip(
            gaps in proptest::collection::vec(1u64..1000, 0..2500),
            more in proptest::collection::vec(1u64..5, 0..600),
            blocks in 16u32..20,
            sync_every in proptest::option::of(1usize..700),
            close in any::<bool>(),
        ) {
            let mut id = 0u64;
            let first: Vec<u64> = gaps.iter().map(|g| { id += g; id }).collect();
            let config = WriterConfig::with_blocks(blocks);
            let store = write_events(first.iter().map(|&i| reference_event(i)), blocks, sync_every, close);
            let mut snapshot = store.snapshot();
            let r = replay(&mut snapshot, crate::replay::Mode::Strict, None);
            // Without a sync or close, the partial block of the last segment was never
            // written: replay returns a prefix ending at a block boundary.
            if close || sync_every == Some(1) {
                prop_assert_eq!(&r.ids, &first);
            } else {
                prop_assert_eq!(&r.ids[..], &first[..r.ids.len()]);
            }
            prop_assert_eq!(r.summary.status, Status::Ok);

            let (mut w, rec) = WalWriter::open(store, ticking_clock(), config).unwrap();
            prop_assert_eq!(rec.summary.status, Status::Ok);
            let mut all = r.ids.clone();
            let mut id = w.last_event_id();
            for g in &more {
                id += g;
                w.append(&reference_event(id)).unwrap();
                all.push(id);
            }
            w.close().unwrap();
            let mut store = w.into_store();
            let r = replay(&mut store, crate::replay::Mode::Strict, None);
            prop_assert_eq!(r.ids, all);
            prop_assert_eq!(r.summary.status, Status::Ok);
            prop_assert!(!r.summary.open_segment || r.summary.events == 0);
        }
    }

    proptest! {
        /// Appending in batches of any sizes writes the very bytes appending one by one
        /// writes, across block and segment boundaries.
        #[test]
        fn batches_write_what_single_appends_write(
            sizes in proptest::collection::vec(1usize..700, 1..12),
            close: bool,
        ) {
            let total: usize = sizes.iter().sum();
            let events: Vec<RequestEvent> = (1..=total as u64).map(reference_event).collect();
            let single = write_events(events.iter().copied(), 16, None, close);
            let config = WriterConfig::with_blocks(16);
            let (mut w, _) = WalWriter::open(MemStore::new(), ticking_clock(), config).unwrap();
            let mut rest = &events[..];
            for size in sizes {
                let (batch, left) = rest.split_at(size);
                w.append_batch(batch).unwrap();
                rest = left;
            }
            if close {
                w.close().unwrap();
            }
            let batched = w.into_store();
            prop_assert!(images(&batched) == images(&single), "the segment bytes differ");
        }
    }

    #[test]
    fn a_batch_with_a_bad_event_is_refused_whole() {
        let config = WriterConfig::with_blocks(16);
        let (mut w, _) = WalWriter::open(MemStore::new(), ticking_clock(), config).unwrap();
        w.append_batch(&[reference_event(1), reference_event(2)])
            .unwrap();
        let mut bad = reference_event(4);
        bad.as_mut_bytes()[40] = 9;
        assert!(matches!(
            w.append_batch(&[reference_event(3), bad]),
            Err(Error::InvalidEvent { event_id: 4, .. })
        ));
        assert!(matches!(
            w.append_batch(&[reference_event(3), reference_event(3)]),
            Err(Error::EventIdNotIncreasing {
                event_id: 3,
                last_event_id: 3
            })
        ));
        // Nothing of either batch went in, and the writer goes on.
        assert_eq!(w.last_event_id(), 2);
        w.append_batch(&[reference_event(3)]).unwrap();
        w.close().unwrap();
        assert_eq!(
            replay(&mut w.into_store(), Mode::Strict, None).ids,
            ids(1..=3)
        );
    }
}
