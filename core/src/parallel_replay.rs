//! Parallel verified replay: the pieces of verification (see the crate-private
//! `parallel` module) checked on every core, joined and handed out in order on the
//! calling thread. Needs the standard library (feature `std`) for its threads.
//!
//! ```text
//!  calling thread                         worker w of n
//!  ──────────────                         ─────────────
//!  plan every segment (headers)
//!  split into pieces of 256 slots  ──▶    pieces w, w+n, w+2n, ... in order:
//!                                           read (or borrow a buffer), check the
//!  piece p: receive from worker p % n ◀──   piece on its own, send the report
//!    join: links, ids, totals               (and, to deliver, the verified copy)
//!    deliver its events, in order
//!  finish: watermark, summary
//! ```
//!
//! A block's chained checksum is seeded with the chained checksum of the block before
//! it. Seeding each piece with the value *stored* in the header of the block before it
//! lets every piece be verified on its own; joining the pieces in order then confirms
//! the links: a piece's seed must equal the chained checksum its predecessor computed
//! (and found stored), and its first event id must come after its predecessor's last.
//! That is the whole of what strict [`Replay`] checks between blocks, so nothing is
//! checked less.
//!
//! Each worker takes every n-th piece and sends its results through its own bounded
//! channel, so receiving from the workers in turn yields the pieces in log order and
//! memory stays bounded (a few pieces per worker). The events handed out are the bytes
//! that were verified: a verified copy, never a second read.
//!
//! The fast path only accepts a *plain* log: every segment from the first index to the
//! last present with a valid header, every sealed segment's blocks all there and valid
//! with matching totals, at most the last segment open and holding valid blocks
//! followed by nothing but zeros, and the log reaching its durable watermark. When the
//! log is not plain (damage, a torn tail, a missing segment, a device error) the fast
//! path stops ([`Unusual`]) and the sequential strict [`Replay`] runs from the start,
//! handing out only the events after those already handed out. The result, events and
//! summary, is always exactly the sequential replay's.
//!
//! ```
//! use fswal_core::mem::MemStore;
//! use fswal_core::reference::reference_event;
//! use fswal_core::{ParallelReplay, Status, WalWriter, WriterConfig};
//!
//! let (mut writer, _) = WalWriter::open(MemStore::new(), || 1, WriterConfig::with_blocks(16))?;
//! for id in 1..=10_000 {
//!     writer.append(&reference_event(id))?;
//! }
//! writer.close()?;
//! let mut store = writer.into_store();
//!
//! let mut events = 0;
//! let outcome = ParallelReplay::new().replay(&mut store, |block| events += block.len())?;
//! assert_eq!((outcome.summary.status, events), (Status::Ok, 10_000));
//! assert!(outcome.fell_back.is_none(), "a plain log takes the fast path");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::num::NonZeroUsize;
use core::sync::atomic::{AtomicBool, Ordering};
use std::boxed::Box;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::vec::Vec;

use zerocopy::IntoBytes;

use crate::block::Block;
use crate::device::BlockDevice;
use crate::error::Error;
use crate::event::RequestEvent;
use crate::parallel::{
    Join, Piece, PieceReport, SegmentPlan, check_piece, check_piece_in_chunks, piece_bytes,
    plan_segment, read_seed,
};
pub use crate::parallel::{PIECE_BLOCKS, Unusual};
use crate::replay::{Mode, Replay, Step, Summary};
use crate::store::SegmentStore;
use crate::watermark::Watermark;

/// Pieces a worker may have checked ahead of the calling thread.
const AHEAD_PIECES: usize = 2;

/// Blocks a verifying worker reads at once when it cannot see a segment's bytes in
/// place: half a piece (2 MiB), so that the start of what was read is still in cache
/// when it is hashed. Measured on `fswal verify` of 8M events: 5% faster than reading
/// the whole piece (4 MiB) at once; smaller reads (16 blocks, 263 KiB) were 8% slower
/// than that, the extra system calls costing more than the cache saves.
const CHUNK_BLOCKS: usize = 128;
// A chunk is a whole number of blocks, at least one, and no larger than a piece.
#[allow(clippy::cast_possible_truncation)]
const _: () = assert!(CHUNK_BLOCKS > 0 && CHUNK_BLOCKS as u32 <= PIECE_BLOCKS);

/// Workers at most, whatever the machine says.
pub const THREADS_MAX: usize = 64;

/// How a parallel replay ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// What replay found: always what the sequential strict replay finds.
    pub summary: Summary,
    /// `None` when the fast path verified everything; otherwise where it gave up and
    /// the sequential replay took over.
    pub fell_back: Option<Unusual>,
    /// Pieces the fast path checked.
    pub pieces: usize,
    /// Workers it ran.
    pub threads: usize,
}

/// Parallel verified replay over a [`SegmentStore`].
#[derive(Clone, Copy, Debug)]
pub struct ParallelReplay {
    threads: NonZeroUsize,
    piece_blocks: u32,
}

impl Default for ParallelReplay {
    fn default() -> Self {
        Self::new()
    }
}

/// What a worker sends for a piece.
struct Checked {
    report: Result<PieceReport, Unusual>,
    /// The verified copy of the piece's blocks, when delivering.
    blocks: Option<Vec<Block>>,
}

impl ParallelReplay {
    /// One worker per core (as the system reports them), pieces of
    /// [`PIECE_BLOCKS`] slots.
    #[must_use]
    pub fn new() -> Self {
        let cores = thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self {
            threads: NonZeroUsize::new(cores.min(THREADS_MAX)).unwrap_or(NonZeroUsize::MIN),
            piece_blocks: PIECE_BLOCKS,
        }
    }

    /// Runs `threads` workers (at most [`THREADS_MAX`]).
    #[must_use]
    pub fn threads(mut self, threads: NonZeroUsize) -> Self {
        self.threads = threads.min(NonZeroUsize::new(THREADS_MAX).unwrap_or(threads));
        self
    }

    /// Splits segments into pieces of `piece_blocks` slots (at least 1).
    #[must_use]
    pub fn piece_blocks(mut self, piece_blocks: u32) -> Self {
        self.piece_blocks = piece_blocks.max(1);
        self
    }

    /// Verifies the whole log, handing nothing out; blocks of devices that show their
    /// bytes (a buffer; see `BlockDevice::mapped_bytes`) are verified in place.
    pub fn verify<S>(&self, store: &mut S) -> Result<Outcome, Error<S::Error>>
    where
        S: SegmentStore + Send,
    {
        self.run(store, None::<&mut fn(&[RequestEvent])>)
    }

    /// Verifies the whole log and hands every verified block's events to `on_events`,
    /// in log order, on the calling thread.
    pub fn replay<S>(
        &self,
        store: &mut S,
        mut on_events: impl FnMut(&[RequestEvent]),
    ) -> Result<Outcome, Error<S::Error>>
    where
        S: SegmentStore + Send,
    {
        self.run(store, Some(&mut on_events))
    }

    /// Only the fast path: the summary, or where the log stopped being plain (then
    /// nothing is said about it; the caller runs its own sequential replay, to collect
    /// every issue for instance).
    pub fn verify_fast<S>(&self, store: &mut S) -> Result<Result<Summary, Unusual>, Error<S::Error>>
    where
        S: SegmentStore + Send,
    {
        let mut delivered = 0;
        let none = None::<&mut fn(&[RequestEvent])>;
        Ok(self
            .fast(store, none, &mut delivered)?
            .map(|(summary, _)| summary))
    }

    fn run<S, F: FnMut(&[RequestEvent])>(
        &self,
        store: &mut S,
        mut deliver: Option<&mut F>,
    ) -> Result<Outcome, Error<S::Error>>
    where
        S: SegmentStore + Send,
    {
        let mut delivered_last_id = 0u64;
        let unusual = match self.fast(store, deliver.as_deref_mut(), &mut delivered_last_id)? {
            Ok((summary, (pieces, threads))) => {
                return Ok(Outcome {
                    summary,
                    fell_back: None,
                    pieces,
                    threads,
                });
            }
            Err(unusual) => unusual,
        };
        // The sequential replay yields the events already handed out first (they are a
        // verified prefix of the log): skip them, by id, which only increases.
        let mut replay = Replay::new(&mut *store, Mode::Strict);
        while let Some(step) = replay.step()? {
            if let (Step::Block(view), Some(deliver)) = (step, deliver.as_deref_mut()) {
                let skip = view
                    .events
                    .partition_point(|e| e.event_id() <= delivered_last_id);
                if let Some(rest) = view.events.get(skip..).filter(|r| !r.is_empty()) {
                    deliver(rest);
                }
            }
        }
        Ok(Outcome {
            summary: *replay.summary(),
            fell_back: Some(unusual),
            pieces: 0,
            threads: 1,
        })
    }

    /// The fast path. On success also says how many pieces and workers it used.
    #[allow(clippy::type_complexity)]
    fn fast<S, F: FnMut(&[RequestEvent])>(
        &self,
        store: &mut S,
        deliver: Option<&mut F>,
        delivered_last_id: &mut u64,
    ) -> Result<Result<(Summary, (usize, usize)), Unusual>, Error<S::Error>>
    where
        S: SegmentStore + Send,
    {
        let watermark = Watermark::read(store)?;
        let Some((first, last)) = store.segment_range()? else {
            return Ok(Err(Unusual::segment(0)));
        };
        let mut plans = Vec::new();
        for index in first..=last {
            let Some(mut device) = store.open_segment(index)? else {
                return Ok(Err(Unusual::segment(index)));
            };
            match plan_segment(&mut device, index)? {
                Ok(plan) => plans.push(plan),
                Err(unusual) => return Ok(Err(unusual)),
            }
        }
        let pieces: Vec<Piece> = plans
            .iter()
            .flat_map(|plan| plan.pieces(self.piece_blocks))
            .collect();
        let threads = self.threads.get().min(pieces.len()).max(1);
        let want_copies = deliver.is_some();
        let stop = AtomicBool::new(false);
        let store = Mutex::new(store);

        let joined = thread::scope(|scope| {
            let mut results = Vec::with_capacity(threads);
            let mut pools = Vec::with_capacity(threads);
            for worker in 0..threads {
                let (result_tx, result_rx) = sync_channel::<Checked>(AHEAD_PIECES);
                let (pool_tx, pool_rx) = sync_channel::<Vec<Block>>(AHEAD_PIECES + 1);
                results.push(result_rx);
                pools.push(pool_tx);
                let mine = pieces.iter().skip(worker).step_by(threads);
                let (store, stop) = (&store, &stop);
                scope.spawn(move || {
                    work(store, mine, want_copies, stop, &result_tx, &pool_rx);
                });
            }
            let outcome = consume(
                &plans,
                (first, last, &watermark),
                self.piece_blocks,
                &results,
                &pools,
                deliver,
                delivered_last_id,
            );
            // Whatever happened, let the workers go: they stop at their next piece, and
            // a send to a dropped receiver fails instead of blocking.
            stop.store(true, Ordering::Relaxed);
            drop(results);
            drop(pools);
            outcome
        });
        Ok(joined.map(|summary| (summary, (pieces.len(), threads))))
    }
}

/// The calling thread's side: receives the pieces in order, joins them, hands out their
/// events.
fn consume<F: FnMut(&[RequestEvent])>(
    plans: &[SegmentPlan],
    (first, last, watermark): (u32, u32, &Watermark),
    piece_blocks: u32,
    results: &[Receiver<Checked>],
    pools: &[SyncSender<Vec<Block>>],
    mut deliver: Option<&mut F>,
    delivered_last_id: &mut u64,
) -> Result<Summary, Unusual> {
    let mut join = Join::new(first, last, watermark);
    let mut index = 0usize;
    for plan in plans {
        join.begin_segment(plan)?;
        for piece in plan.pieces(piece_blocks) {
            let worker = index % results.len().max(1);
            index += 1;
            let here = Unusual::slot(piece.segment, piece.slots.start);
            // A worker that stopped (it panicked, or saw a device error) says so by
            // hanging up: the sequential replay then decides.
            let checked = results.get(worker).ok_or(here)?.recv().map_err(|_| here)?;
            let report = checked.report?;
            join.piece(&report)?;
            if let (Some(deliver), Some(blocks)) = (deliver.as_deref_mut(), checked.blocks) {
                let verified = usize::try_from(report.blocks).unwrap_or(usize::MAX);
                for block in blocks.iter().take(verified) {
                    deliver(block.used_events());
                }
                if report.blocks > 0 {
                    *delivered_last_id = report.last_event_id;
                }
                // Back to the worker for a later piece; if it is gone, drop it.
                let _ = pools.get(worker).map(|pool| pool.try_send(blocks));
            }
        }
        join.end_segment()?;
    }
    join.finish()
}

/// A worker: checks `pieces` in order, sending each result.
fn work<'a, S>(
    store: &Mutex<&mut S>,
    pieces: impl Iterator<Item = &'a Piece>,
    want_copies: bool,
    stop: &AtomicBool,
    results: &SyncSender<Checked>,
    pool: &Receiver<Vec<Block>>,
) where
    S: SegmentStore,
{
    let mut device: Option<(u32, S::Device)> = None;
    let mut scratch = Box::new(Block::EMPTY);
    let mut own: Vec<Block> = Vec::new();
    for piece in pieces {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if device
            .as_ref()
            .is_none_or(|(index, _)| *index != piece.segment)
        {
            // Opening is rare (once per segment per worker); the store is shared.
            let opened = store
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .open_segment(piece.segment);
            device = match opened {
                Ok(Some(d)) => Some((piece.segment, d)),
                // Gone since it was planned, or failing: hang up.
                _ => return,
            };
        }
        let Some((_, dev)) = device.as_mut() else {
            return;
        };
        let Ok(seed) = read_seed(dev, piece) else {
            return;
        };
        let checked = if want_copies {
            let mut blocks = pool.try_recv().unwrap_or_default();
            let Ok(report) = check_copy(dev, piece, seed, &mut blocks, &mut scratch) else {
                return;
            };
            Checked {
                report,
                blocks: Some(blocks),
            }
        } else if let Some(bytes) = piece_bytes(dev, piece) {
            Checked {
                report: check_piece(piece, bytes, seed, &mut scratch),
                blocks: None,
            }
        } else {
            // Nothing to hand out: read `CHUNK_BLOCKS` at a time into a buffer this
            // worker keeps, and hash them while they are still in cache.
            own.resize(CHUNK_BLOCKS, Block::EMPTY);
            let Ok(report) = check_piece_in_chunks(dev, piece, seed, &mut own) else {
                return;
            };
            Checked {
                report,
                blocks: None,
            }
        };
        if results.send(checked).is_err() {
            return;
        }
    }
}

/// Reads `piece` into `blocks` (resized to it) with one read, and checks the copy.
fn check_copy<D: BlockDevice>(
    device: &mut D,
    piece: &Piece,
    seed: u64,
    blocks: &mut Vec<Block>,
    scratch: &mut Block,
) -> Result<Result<PieceReport, Unusual>, D::Error> {
    let range = piece.byte_range();
    let here = Unusual::slot(piece.segment, piece.slots.start);
    let Ok(len) = usize::try_from(range.end.saturating_sub(range.start)) else {
        return Ok(Err(here));
    };
    let slots = piece.slots.len();
    blocks.resize(slots, Block::EMPTY);
    let Some(bytes) = blocks.as_mut_bytes().get_mut(..len) else {
        return Ok(Err(here));
    };
    device.read_exact_at(range.start, bytes)?;
    Ok(check_piece(piece, bytes, seed, scratch))
}
