//! Criterion micro-benchmarks of the loops that decide fswal's speed, each next to the
//! alternative it replaced, so that one run gives the ratio on this machine:
//!
//! - a block's two checksums: two XXH64 passes against the fused one-pass pair;
//! - verifying a full block (`Block::verify`);
//! - appending 64 Ki events to a memory log one by one against in batches of 256;
//! - replaying a 64 Ki-event memory log: the sequential `Replay` against the fast path
//!   of `ParallelReplay` run on one worker thread;
//! - the recorder ring: a push and a pop.
//!
//! `cargo bench -p fswal-harness --bench hot_loops`

use std::hint::black_box;
use std::num::NonZeroUsize;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fswal_core::checksum::block_checksums;
use fswal_core::limits::BLOCK_EVENTS_MAX;
use fswal_core::mem::MemStore;
use fswal_core::reference::reference_event;
use fswal_core::{Block, Mode, ParallelReplay, Replay, RequestEvent, WalWriter, WriterConfig};
use fswal_recorder::ring::ring;
use xxhash_rust::xxh64::xxh64;
use zerocopy::IntoBytes;

/// Events in the append and replay benchmarks.
const EVENTS: u64 = 65_536;

fn full_block() -> Box<Block> {
    let mut block = Box::new(Block::EMPTY);
    for (id, slot) in (1..).zip(block.events.iter_mut()) {
        *slot = reference_event(id);
    }
    block
        .finalize(1, 256, 0x1234)
        .expect("a full block of reference events");
    block
}

fn events() -> Vec<RequestEvent> {
    (1..=EVENTS).map(reference_event).collect()
}

fn memory_log() -> MemStore {
    let config = WriterConfig::with_blocks(64);
    let (mut w, _) = WalWriter::open(MemStore::new(), || 1u64, config).expect("open");
    w.append_batch(&events()).expect("append");
    w.close().expect("close");
    w.into_store()
}

fn checksums(c: &mut Criterion) {
    let block = full_block();
    let bytes = block.events.as_bytes();
    let mut g = c.benchmark_group("block checksums");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("two XXH64 passes", |b| {
        b.iter(|| (xxh64(black_box(bytes), 0), xxh64(black_box(bytes), 0x1234)));
    });
    g.bench_function("fused pair", |b| {
        b.iter(|| block_checksums(black_box(&block.events), 0x1234));
    });
    g.bench_function("Block::verify", |b| {
        b.iter(|| black_box(&block).verify(1, 0x1234, 0));
    });
    g.finish();
}

fn append(c: &mut Criterion) {
    let events = events();
    let mut g = c.benchmark_group("append 64 Ki events to memory");
    g.throughput(Throughput::Elements(EVENTS));
    let fresh = || {
        let config = WriterConfig::with_blocks(64);
        WalWriter::open(MemStore::new(), || 1u64, config)
            .expect("open")
            .0
    };
    g.bench_function("one by one", |b| {
        b.iter_batched(
            fresh,
            |mut w| {
                for e in &events {
                    w.append(e).expect("append");
                }
                w
            },
            BatchSize::LargeInput,
        );
    });
    g.bench_function("batches of 256", |b| {
        b.iter_batched(
            fresh,
            |mut w| {
                for batch in events.chunks(BLOCK_EVENTS_MAX) {
                    w.append_batch(batch).expect("append");
                }
                w
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

fn replay(c: &mut Criterion) {
    let mut store = memory_log();
    let mut g = c.benchmark_group("replay 64 Ki events from memory");
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("sequential Replay", |b| {
        b.iter(|| {
            let mut n = 0u64;
            Replay::new(&mut store, Mode::Strict)
                .run(|e| n = n.wrapping_add(e.event_id()))
                .expect("replay");
            n
        });
    });
    let one = ParallelReplay::new().threads(NonZeroUsize::MIN);
    g.bench_function("parallel fast path, one thread", |b| {
        b.iter(|| one.verify_fast(&mut store).expect("verify"));
    });
    g.finish();
}

fn ring_hand_off(c: &mut Criterion) {
    let (mut p, mut q) = ring(1024, RequestEvent::ZERO);
    let event = reference_event(1);
    c.bench_function("ring push + pop of one event", |b| {
        b.iter(|| {
            let _ = p.try_push(black_box(event));
            q.try_pop()
        });
    });
}

criterion_group!(benches, checksums, append, replay, ring_hand_off);
criterion_main!(benches);
