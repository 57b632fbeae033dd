//! Guards against persistent faults turning into wrong events or silent loss: bit
//! flips in durable blocks, I/O errors on read, write and sync, misdirected writes and
//! stale blocks from a reused segment file must each be reported, as an error or as
//! damage, and never yield an event that was not appended, nor quietly drop one that
//! was acknowledged.

use fswal_core::fault::{FaultStore, Faults, Image};
use fswal_core::limits::{BLOCK_SIZE_BYTES, block_offset_bytes};
use fswal_core::reference::reference_event;
use fswal_core::{Error, Mode, Replay, RequestEvent, Status, WalWriter, WriterConfig};
use std::sync::Arc;

const BLOCKS: u32 = 16;

fn clock() -> u64 {
    1
}

fn config() -> WriterConfig {
    WriterConfig::with_blocks(BLOCKS)
}

fn events(n: u64) -> Vec<RequestEvent> {
    (1..=n).map(reference_event).collect()
}

/// A log of `n` events on a fault store, synced every `sync_every`, left open: two
/// sealed segments and an open third one for n = 9000.
fn durable_log(n: u64, sync_every: u64) -> FaultStore {
    let store = FaultStore::new();
    let (mut w, _) = WalWriter::open(store.clone(), clock, config()).expect("open");
    for (k, e) in events(n).iter().enumerate() {
        w.append(e).expect("append");
        if (k as u64 + 1) % sync_every == 0 {
            w.sync().expect("sync");
        }
    }
    w.sync().expect("sync");
    store
}

/// What a restart finds on `image`: recovery's outcome, and the events a strict
/// replay of the image yields.
fn recover(
    image: &Image,
) -> (
    Result<u64, Error<fswal_core::mem::MemError>>,
    Vec<RequestEvent>,
    Status,
) {
    let mut replayed = Vec::new();
    let summary = Replay::new(FaultStore::from_image(image), Mode::Strict)
        .run(|e| replayed.push(*e))
        .expect("replay reads the image");
    let opened = WalWriter::open(FaultStore::from_image(image), clock, config())
        .map(|(w, _)| w.last_event_id());
    (opened, replayed, summary.status)
}

/// The verdict every fault must get: either recovery refuses (reported as damage) and
/// replay yields only a prefix of the appended events, or recovery accepts and every
/// acknowledged event is there, unchanged.
fn assert_reported_or_harmless(
    what: &str,
    image: &Image,
    appended: &[RequestEvent],
    acknowledged: usize,
) {
    let (opened, replayed, status) = recover(image);
    assert!(
        appended.starts_with(&replayed),
        "{what}: replay yielded an event that was not appended"
    );
    match opened {
        Err(Error::Damaged { .. } | Error::DurableDataMissing { .. }) => {
            assert!(
                status != Status::Ok,
                "{what}: recovery refused a log that verifies"
            );
        }
        Err(e) => panic!("{what}: unexpected error {e}"),
        Ok(last) => {
            assert!(
                replayed.len() >= acknowledged && last >= appended[acknowledged - 1].event_id(),
                "{what}: recovery accepted the log but lost acknowledged events ({} of {acknowledged} replayed)",
                replayed.len()
            );
        }
    }
}

#[test]
fn bit_flips_in_durable_data_are_reported_never_truncated_away() {
    let store = durable_log(9000, 1000);
    let snapshot = store.snapshot();
    assert!(snapshot.pending.is_empty(), "all durable");
    let appended = events(9000);
    let mut flips = 0;
    for (&segment, bytes) in &snapshot.durable {
        // Every header byte and a spread of event bytes, in the written blocks.
        let written = bytes
            .len()
            .min(usize::try_from(block_offset_bytes(12)).expect("fits"));
        let offsets = (0..64).chain((64..written).step_by(331));
        for offset in offsets {
            let mut image = snapshot.durable_image();
            let seg = image.segments.get_mut(&segment).expect("segment");
            Arc::make_mut(seg)[offset] ^= 0x08;
            assert_reported_or_harmless(
                &format!("flip at segment {segment} offset {offset}"),
                &image,
                &appended,
                9000,
            );
            flips += 1;
        }
    }
    assert!(flips > 1000, "{flips}");
}

#[test]
fn a_flip_in_the_last_acknowledged_block_is_refused() {
    // Looks exactly like a torn tail; the sync mark says it was acknowledged.
    let store = durable_log(1000, 1000);
    let mut image = store.snapshot().durable_image();
    let seg = image.segments.get_mut(&0).expect("segment 0");
    Arc::make_mut(seg)[usize::try_from(block_offset_bytes(3)).expect("fits") + 64 + 8] ^= 1;
    let (opened, replayed, status) = recover(&image);
    assert_eq!(status, Status::Truncated);
    assert_eq!(replayed.len(), 768);
    assert!(matches!(
        opened,
        Err(Error::DurableDataMissing {
            durable_event_id: 1000,
            ..
        })
    ));
}

#[test]
fn read_errors_are_errors_and_what_came_before_them_is_right() {
    let store = durable_log(9000, 1000);
    let image = store.snapshot().durable_image();
    let appended = events(9000);
    // How many reads a replay of this log takes, to fail each part of it.
    let counting = FaultStore::from_image(&image);
    Replay::new(counting.clone(), Mode::Strict)
        .run(|_| {})
        .expect("replay");
    let reads = counting.ops();
    assert!(reads > 20, "{reads}");
    for n in [0, 1, 2, 5, reads / 3, reads / 2, reads - 1] {
        let faulty = FaultStore::from_image(&image);
        faulty.set_faults(Faults {
            fail_read_at: Some(n),
            ..Faults::default()
        });
        let mut yielded = Vec::new();
        let mut replay = Replay::new(faulty.clone(), Mode::Strict);
        let result = loop {
            match replay.step() {
                Ok(Some(fswal_core::Step::Block(b))) => yielded.extend_from_slice(b.events),
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        assert!(
            result.is_err(),
            "read {n} failed, yet replay ended normally"
        );
        assert!(
            appended.starts_with(&yielded),
            "read {n}: wrong events before the error"
        );
        // Recovery meets the same error and reports it; it does not call it a torn tail.
        let faulty = FaultStore::from_image(&image);
        faulty.set_faults(Faults {
            fail_read_at: Some(n),
            ..Faults::default()
        });
        assert!(matches!(
            WalWriter::open(faulty, clock, config()),
            Err(Error::Device(_))
        ));
    }
}

#[test]
fn write_and_sync_errors_stop_the_writer_and_lose_nothing_acknowledged() {
    for (fault, label) in [
        (
            Faults {
                fail_write_at: Some(3),
                ..Faults::default()
            },
            "write",
        ),
        (
            Faults {
                fail_sync_at: Some(2),
                ..Faults::default()
            },
            "sync",
        ),
        (
            Faults {
                fail_write_at: Some(40),
                ..Faults::default()
            },
            "late write",
        ),
        (
            Faults {
                fail_sync_at: Some(30),
                ..Faults::default()
            },
            "late sync",
        ),
    ] {
        let store = FaultStore::new();
        let (mut w, _) = WalWriter::open(store.clone(), clock, config()).expect("open");
        store.set_faults(fault);
        let appended = events(20_000);
        let mut failed = false;
        for (k, e) in appended.iter().enumerate() {
            if w.append(e).is_err() || ((k + 1) % 300 == 0 && w.sync().is_err()) {
                failed = true;
                break;
            }
        }
        assert!(failed, "{label}: the injected error surfaced");
        let acknowledged = appended.partition_point(|e| e.event_id() <= w.durable_event_id());
        assert!(
            matches!(w.append(&reference_event(30_000)), Err(Error::Poisoned)),
            "{label}"
        );
        assert!(
            matches!(w.sync(), Err(Error::Poisoned)),
            "{label}: never retried"
        );
        // Whatever a crash now leaves keeps the acknowledged events and adds none.
        let snapshot = store.snapshot();
        for image in [
            snapshot.durable_image(),
            snapshot.image(
                &vec![fswal_core::fault::Landed::All; snapshot.pending.len()],
                512,
            ),
        ] {
            let (opened, replayed, _) = recover(&image);
            let last = opened.unwrap_or_else(|e| panic!("{label}: recovery refused: {e}"));
            assert!(appended.starts_with(&replayed), "{label}: phantom events");
            assert!(
                replayed.len() >= acknowledged,
                "{label}: acknowledged events lost"
            );
            assert_eq!(last, replayed.last().map_or(0, RequestEvent::event_id));
        }
    }
}

#[test]
fn misdirected_writes_are_reported() {
    // Write number n lands one block away, forward (into a free slot) or backward (over
    // a block already durable), and then syncs as if all were well.
    for (n, delta) in [
        (6, BLOCK_SIZE_BYTES as i64),
        (6, -(BLOCK_SIZE_BYTES as i64)),
        (9, 2 * BLOCK_SIZE_BYTES as i64),
    ] {
        let store = FaultStore::new();
        let (mut w, _) = WalWriter::open(store.clone(), clock, config()).expect("open");
        store.set_faults(Faults {
            misdirect_write_at: Some((n, delta)),
            ..Faults::default()
        });
        let appended = events(3000);
        for (k, e) in appended.iter().enumerate() {
            w.append(e).expect("append");
            if (k + 1) % 256 == 0 {
                w.sync().expect("sync");
            }
        }
        w.sync().expect("sync");
        let image = store.snapshot().durable_image();
        let (opened, replayed, status) = recover(&image);
        assert!(
            appended.starts_with(&replayed),
            "write {n} {delta:+}: phantom events"
        );
        assert!(
            status != Status::Ok,
            "write {n} {delta:+}: verify did not see it"
        );
        assert!(
            matches!(
                opened,
                Err(Error::Damaged { .. } | Error::DurableDataMissing { .. })
            ),
            "write {n} {delta:+}: recovery did not refuse: {opened:?}"
        );
    }
}

#[test]
fn a_stale_block_from_a_reused_file_never_replays() {
    // Segment 2 is open with 3 blocks; its next slot holds block 0 of segment 0 as a
    // reused file would: valid on its own, chained from 0, with old ids.
    let store = durable_log(9000, 256);
    let mut image = store.snapshot().durable_image();
    let stale = image.segments[&0][64..64 + BLOCK_SIZE_BYTES].to_vec();
    let seg2 = Arc::make_mut(image.segments.get_mut(&2).expect("segment 2"));
    let next = (1..16)
        .map(|k| usize::try_from(block_offset_bytes(k)).expect("fits"))
        .find(|&at| seg2[at..at + BLOCK_SIZE_BYTES].iter().all(|&b| b == 0))
        .expect("a free slot");
    seg2[next..next + BLOCK_SIZE_BYTES].copy_from_slice(&stale);
    let (opened, replayed, status) = recover(&image);
    assert_eq!(replayed, events(9000), "the stale events are not replayed");
    assert_eq!(
        status,
        Status::Truncated,
        "reported: the stale block ends the valid data"
    );
    assert_eq!(opened.expect("recovered"), 9000);
    // Its placing right after the last valid block makes it a torn tail: recovery seals
    // the segment before it and leaves it where it is, never to be replayed.
    let recovered = FaultStore::from_image(&image);
    let (_, rec) = WalWriter::open(recovered.clone(), clock, config()).expect("recover");
    let aside = rec
        .sealed_tail
        .and_then(|t| t.set_aside)
        .expect("set aside");
    assert_eq!(aside.slots, 1);
    assert_eq!(
        aside.claimed_event_ids,
        Some((1, 256)),
        "the stale block's own ids"
    );
    let after = recovered.snapshot().durable_image();
    assert_eq!(after.segments[&2][next..next + BLOCK_SIZE_BYTES], stale[..]);
}
