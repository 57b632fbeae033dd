//! Parallel verified replay hands out exactly what the sequential strict replay hands
//! out, events and summary, on plain logs (fast path) and damaged ones (fallback).

use std::num::NonZeroUsize;

use fswal_backends::dir::SegmentDir;
use fswal_backends::file::FileDevice;
use fswal_backends::mmap::MmapDevice;
use fswal_core::mem::MemStore;
use fswal_core::parallel_replay::Outcome;
use fswal_core::reference::reference_event;
use fswal_core::{
    Mode, ParallelReplay, Replay, RequestEvent, SegmentStore, Status, Summary, WalWriter,
    WriterConfig,
};

fn clock() -> impl FnMut() -> u64 {
    let mut t = 1_700_000_000_000_000_000u64;
    move || {
        t += 1;
        t
    }
}

/// `events` reference events in segments of `blocks` slots, sealed at the end if
/// `close`, into `store`.
fn write<S: SegmentStore>(store: S, events: u64, blocks: u32, close: bool) -> S {
    let (mut w, _) = WalWriter::open(store, clock(), WriterConfig::with_blocks(blocks)).unwrap();
    for id in 1..=events {
        w.append(&reference_event(id)).unwrap();
    }
    if close {
        w.close().unwrap();
    } else {
        w.sync().unwrap();
    }
    w.into_store()
}

fn sequential<S: SegmentStore>(store: &mut S) -> (Vec<RequestEvent>, Summary) {
    let mut events = Vec::new();
    let summary = Replay::new(store, Mode::Strict)
        .run(|e| events.push(*e))
        .unwrap();
    (events, summary)
}

fn parallel<S: SegmentStore + Send>(
    store: &mut S,
    threads: usize,
    piece_blocks: u32,
) -> (Vec<RequestEvent>, Outcome) {
    let mut events = Vec::new();
    let outcome = ParallelReplay::new()
        .threads(NonZeroUsize::new(threads).unwrap())
        .piece_blocks(piece_blocks)
        .replay(store, |block| events.extend_from_slice(block))
        .unwrap();
    (events, outcome)
}

/// Both ways, compared; returns whether the fast path verified everything.
fn agree<S: SegmentStore + Send>(store: &mut S, threads: usize, piece_blocks: u32) -> bool {
    let (want_events, want) = sequential(store);
    let (events, outcome) = parallel(store, threads, piece_blocks);
    assert_eq!(
        outcome.summary, want,
        "threads {threads}, pieces {piece_blocks}"
    );
    assert!(
        events == want_events,
        "{} events handed out, sequential replay gives {} (threads {threads}, pieces {piece_blocks})",
        events.len(),
        want_events.len()
    );
    let verified = ParallelReplay::new()
        .threads(NonZeroUsize::new(threads).unwrap())
        .piece_blocks(piece_blocks)
        .verify(store)
        .unwrap();
    assert_eq!(verified.summary, want);
    assert_eq!(verified.fell_back.is_none(), outcome.fell_back.is_none());
    outcome.fell_back.is_none()
}

#[test]
fn plain_logs_take_the_fast_path() {
    for (events, close) in [
        (1, false),
        (10_000, true),
        (10_000, false),
        (40 * 256, true),
    ] {
        for threads in [1, 2, 3, 8] {
            for piece_blocks in [1, 5, 256] {
                let mut store = write(MemStore::new(), events, 16, close);
                assert!(
                    agree(&mut store, threads, piece_blocks),
                    "{events} events, close {close}: the fast path gave up"
                );
            }
        }
    }
}

#[test]
fn damage_falls_back_without_repeating_or_losing_an_event() {
    let base = write(MemStore::new(), 20_000, 16, false);
    let last = *base.indices().last().unwrap();
    let mut cases = 0;
    for seg in base.indices() {
        // A flipped event byte early, in the middle and late in each segment, so that
        // pieces before it were already handed out when the fast path stops.
        for offset in [64 + 64 + 7, 64 + 8 * 16448 + 200, 64 + 15 * 16448 + 9000] {
            let mut store = base.snapshot();
            store
                .with_bytes_mut(seg, |b| {
                    if let Some(byte) = b.get_mut(offset) {
                        *byte ^= 0x40;
                    }
                })
                .unwrap();
            for threads in [1, 2, 4] {
                // Damage anywhere but the empty end of the open last segment stops
                // the fast path.
                let fast = agree(&mut store, threads, 3);
                assert!(!fast || seg == last);
                cases += usize::from(!fast);
            }
        }
    }
    // A missing segment, and a durable watermark past the end.
    let mut store = base.snapshot();
    store.remove(1);
    assert!(!agree(&mut store, 2, 3));
    assert_eq!(sequential(&mut store).1.status, Status::Corrupt);
    assert!(cases >= 3 * 3 * (base.indices().len() - 1));
}

#[test]
fn directories_through_the_file_and_mmap_backends() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentDir::<FileDevice>::open_for_append(dir.path()).unwrap();
    drop(write(store, 30_000, 16, false));
    let mut file = SegmentDir::<FileDevice>::open_read_only(dir.path()).unwrap();
    assert!(agree(&mut file, 2, 7));
    let mut mapped = SegmentDir::<MmapDevice>::open_read_only(dir.path()).unwrap();
    assert!(agree(&mut mapped, 2, 7));
}

#[test]
fn whole_pieces_read_in_chunks_from_files_agree_even_when_damaged() {
    // Segments of 600 blocks, pieces of 256: the file backend reads each piece in
    // several chunks, and so does the mmap one, copying out of its mapping.
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentDir::<FileDevice>::open_for_append(dir.path()).unwrap();
    drop(write(store, 200_000, 600, true));
    let mut file = SegmentDir::<FileDevice>::open_read_only(dir.path()).unwrap();
    assert!(agree(&mut file, 2, 256));
    // One flipped event byte in block 300 of the first segment (in the second chunk of
    // its second piece): both ways must stop at the same place.
    let path = dir.path().join("FS.00000000.wal");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[64 + 300 * 16448 + 5000] ^= 0x08;
    std::fs::write(&path, &bytes).unwrap();
    let mut file = SegmentDir::<FileDevice>::open_read_only(dir.path()).unwrap();
    assert!(!agree(&mut file, 2, 256));
    let mut mapped = SegmentDir::<MmapDevice>::open_read_only(dir.path()).unwrap();
    assert!(!agree(&mut mapped, 2, 256));
}
