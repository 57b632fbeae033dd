//! Helpers shared by the core's unit tests: write a reference log into memory, replay
//! it and collect what came out.

use std::vec::Vec;

use crate::event::RequestEvent;
use crate::issue::Issue;
use crate::mem::MemStore;
use crate::reference::reference_event;
use crate::replay::{Mode, Replay, Step, Summary};
use crate::writer::{WalWriter, WriterConfig};

/// A clock that ticks by one per call, so timestamps are deterministic.
pub fn ticking_clock() -> impl FnMut() -> u64 {
    let mut t = 1_700_000_000_000_000_000u64;
    move || {
        t += 1;
        t
    }
}

/// Writes `events` to a fresh memory log with `blocks` slots per segment, syncing
/// after each event whose position is in `sync_after`, and sealing at the end if
/// `close`.
pub fn write_events(
    events: impl IntoIterator<Item = RequestEvent>,
    blocks: u32,
    sync_every: Option<usize>,
    close: bool,
) -> MemStore {
    let config = WriterConfig {
        blocks_per_segment: blocks,
    };
    let (mut w, _) = WalWriter::open(MemStore::new(), ticking_clock(), config).unwrap();
    for (n, e) in events.into_iter().enumerate() {
        w.append(&e).unwrap();
        if sync_every.is_some_and(|k| (n + 1) % k == 0) {
            w.sync().unwrap();
        }
    }
    if close {
        w.close().unwrap();
    }
    w.into_store()
}

/// The reference events `1..=n` written with `blocks` slots per segment.
pub fn reference_log(n: u64, blocks: u32, close: bool) -> MemStore {
    write_events((1..=n).map(reference_event), blocks, None, close)
}

/// What a full replay yields.
pub struct Replayed {
    pub ids: Vec<u64>,
    pub events: Vec<RequestEvent>,
    pub issues: Vec<Issue>,
    pub summary: Summary,
}

/// Replays `store` to the end in `mode`, from `seek` if given.
pub fn replay(store: &mut MemStore, mode: Mode, seek: Option<u64>) -> Replayed {
    let mut r = Replay::new(store, mode);
    if let Some(id) = seek {
        r.seek(id).unwrap();
    }
    let mut out = Replayed {
        ids: Vec::new(),
        events: Vec::new(),
        issues: Vec::new(),
        summary: *r.summary(),
    };
    while let Some(step) = r.step().unwrap() {
        match step {
            Step::Block(b) => {
                out.events.extend_from_slice(b.events);
                out.ids.extend(b.events.iter().map(RequestEvent::event_id));
            }
            Step::Issue(i) => out.issues.push(i),
            Step::Segment(_) => {}
        }
    }
    out.summary = *r.summary();
    out
}

/// `1..=n` as a Vec.
pub fn ids(range: core::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.collect()
}
