//! Verified replay in process: every event handed to a consumer, in order, after its
//! block verified; sequentially (`Replay`) and on every core (`ParallelReplay`).

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use fswal_core::{Mode, ParallelReplay, Replay, RequestEvent, SegmentStore, Status};

use crate::error::CliError;
use crate::store::AnyStore;

/// What one replay run did.
#[derive(Clone, Copy, Debug)]
pub struct ReplayRun {
    /// Wall time.
    pub elapsed: Duration,
    /// Events handed out.
    pub events: u64,
}

/// A consumer that reads every event's fields, so that nothing is optimised away.
#[derive(Default)]
struct Sink {
    events: u64,
    digest: u64,
}

impl Sink {
    #[inline]
    fn take(&mut self, events: &[RequestEvent]) {
        for e in events {
            self.digest = self.digest.wrapping_add(e.event_id() ^ e.price() as u64);
        }
        self.events += events.len() as u64;
    }
}

fn finish(start: Instant, sink: &Sink, status: Status) -> Result<ReplayRun, CliError> {
    let elapsed = start.elapsed();
    black_box(sink.digest);
    if status != Status::Ok {
        return Err(CliError::new(format!(
            "the benchmark WAL does not verify ({})",
            status.name()
        )));
    }
    Ok(ReplayRun {
        elapsed,
        events: sink.events,
    })
}

/// The sequential strict replay over `store`, on the calling thread.
pub fn sequential(store: &mut AnyStore) -> Result<ReplayRun, CliError> {
    let mut sink = Sink::default();
    let start = Instant::now();
    let mut replay = Replay::new(&mut *store, Mode::Strict);
    let summary = loop {
        match replay.step() {
            Ok(Some(fswal_core::Step::Block(view))) => sink.take(view.events),
            Ok(Some(_)) => {}
            Ok(None) => break *replay.summary(),
            Err(e) => {
                drop(replay);
                return Err(CliError::from_core(store, e));
            }
        }
    };
    finish(start, &sink, summary.status)
}

/// The parallel replay over `store` with `threads` workers, handing events out on the
/// calling thread.
pub fn parallel(store: &mut AnyStore, threads: NonZeroUsize) -> Result<ReplayRun, CliError> {
    let mut sink = Sink::default();
    let start = Instant::now();
    let outcome = ParallelReplay::new()
        .threads(threads)
        .replay(&mut *store, |events| sink.take(events))
        .map_err(|e| CliError::from_core(store, e))?;
    if outcome.fell_back.is_some() {
        return Err(CliError::new(
            "the benchmark WAL did not take the parallel fast path",
        ));
    }
    finish(start, &sink, outcome.summary.status)
}

/// Whether `store` holds any segment: a guard against timing an empty directory.
pub fn has_segments(store: &mut AnyStore) -> bool {
    store.segment_range().ok().flatten().is_some()
}
