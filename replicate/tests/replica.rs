//! Guards the follower's verifier: a replica built from a log's messages verifies
//! strictly and its sealed segments are byte-identical to the primary's; a message that
//! does not verify, or does not continue the log, is refused and nothing changes.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use fswal_backends::dir::DirStore;
use fswal_core::reference::reference_event;
use fswal_core::writer::wall_clock_ns;
use fswal_core::{Mode, Replay, Status, WalWriter, WriterConfig};
use fswal_replicate::ReplicateError;
use fswal_replicate::message::{Kind, Message};
use fswal_replicate::replica::{Applied, Replica, unsequenced};
use fswal_replicate::source::{message_at, verified_places};
use fswal_replicate::testing::wal_files;

/// Records `events` reference events in 16-block segments, syncing every `sync_every`
/// (partial blocks), and closes the log when `close` is set.
fn record(dir: &Path, events: u64, sync_every: u64, close: bool) {
    let store = DirStore::open_for_append(dir).expect("store");
    let (mut w, _) =
        WalWriter::open(store, wall_clock_ns, WriterConfig::with_blocks(16)).expect("open");
    for id in 1..=events {
        w.append(&reference_event(id)).expect("append");
        if id % sync_every == 0 {
            w.sync().expect("sync");
        }
    }
    if close {
        w.close().expect("close");
    } else {
        w.sync().expect("sync");
    }
}

fn messages(dir: &Path) -> Vec<Message> {
    let places = verified_places(dir).expect("places");
    let mut store = DirStore::open_read_only(dir).expect("store");
    places
        .iter()
        .map(|p| message_at(&mut store, p).expect("message"))
        .collect()
}

fn strict_events(dir: &Path) -> (Status, u64) {
    let mut store = DirStore::open_read_only(dir).expect("store");
    let s = Replay::new(&mut store, Mode::Strict)
        .run(|_| {})
        .expect("replay");
    (s.status, s.events)
}

#[test]
fn a_replica_of_every_message_verifies_and_its_sealed_segments_are_identical() {
    let primary = tempfile::tempdir().expect("tempdir");
    let replica_dir = tempfile::tempdir().expect("tempdir");
    // 3.5 segments of 16 blocks, with partial blocks from syncs every 1000 events.
    record(primary.path(), 14_500, 1000, true);
    let msgs = messages(primary.path());
    assert!(msgs.iter().any(|m| m.kind == Kind::Seal));
    let mut replica = Replica::open(replica_dir.path(), "t").expect("replica");
    for m in &msgs {
        assert_eq!(
            replica.apply(&unsequenced(m.clone())).expect("applies"),
            Applied::Written
        );
    }
    replica.sync().expect("sync");
    assert_eq!(replica.durable_event_id(), 14_500);
    drop(replica);
    assert_eq!(strict_events(replica_dir.path()), (Status::Ok, 14_500));
    assert_eq!(wal_files(primary.path()), wal_files(replica_dir.path()));
}

#[test]
fn a_replica_resumes_from_its_own_end_and_skips_what_it_holds() {
    let primary = tempfile::tempdir().expect("tempdir");
    let replica_dir = tempfile::tempdir().expect("tempdir");
    record(primary.path(), 6000, 700, false);
    let msgs = messages(primary.path());
    let half = msgs.len() / 2;
    let mut replica = Replica::open(replica_dir.path(), "t").expect("replica");
    for m in &msgs[..half] {
        replica.apply(&unsequenced(m.clone())).expect("applies");
    }
    replica.sync().expect("sync");
    drop(replica);
    let mut replica = Replica::open(replica_dir.path(), "t").expect("reopens");
    assert_eq!(replica.end(), Some(msgs[half - 1].position));
    assert_eq!(
        replica
            .apply(&unsequenced(msgs[half - 1].clone()))
            .expect("held"),
        Applied::AlreadyHeld
    );
    for m in &msgs[half..] {
        replica.apply(&unsequenced(m.clone())).expect("applies");
    }
    replica.sync().expect("sync");
    drop(replica);
    assert_eq!(strict_events(replica_dir.path()), (Status::Ok, 6000));
}

#[test]
fn a_flipped_byte_or_a_message_out_of_order_is_refused_and_nothing_changes() {
    let primary = tempfile::tempdir().expect("tempdir");
    let replica_dir = tempfile::tempdir().expect("tempdir");
    record(primary.path(), 3000, 500, false);
    let msgs = messages(primary.path());
    let mut replica = Replica::open(replica_dir.path(), "t").expect("replica");
    for m in &msgs[..4] {
        replica.apply(&unsequenced(m.clone())).expect("applies");
    }
    replica.sync().expect("sync");
    let before = wal_files(replica_dir.path());
    let next = msgs[4].clone();
    assert_eq!(next.kind, Kind::Block);
    // Every byte of the block is covered: a flip anywhere is refused.
    for at in [0usize, 20, 40, 64, 100, 16_447] {
        let mut bytes = next.payload.to_vec();
        bytes[at] ^= 0x10;
        let mut bad = next.clone();
        bad.payload = Bytes::from(bytes);
        let mut stored = unsequenced(bad);
        stored.sequence = 77;
        let e = replica.apply(&stored).expect_err("refused");
        assert!(
            matches!(e, ReplicateError::Verify { sequence: 77, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("sequence 77"), "{e}");
    }
    // A block that skips a slot, and a seal before its blocks, are refused too.
    let e = replica
        .apply(&unsequenced(msgs[5].clone()))
        .expect_err("refused");
    assert!(matches!(e, ReplicateError::Verify { .. }), "{e}");
    assert_eq!(replica.end(), Some(msgs[3].position));
    assert_eq!(before, wal_files(replica_dir.path()));
    // The real block still goes on.
    assert_eq!(
        replica.apply(&unsequenced(next)).expect("applies"),
        Applied::Written
    );
}

#[test]
fn a_torn_slot_is_kept_in_a_side_file_before_it_is_written_over() {
    let primary = tempfile::tempdir().expect("tempdir");
    let replica_dir = tempfile::tempdir().expect("tempdir");
    record(primary.path(), 2000, 2000, false);
    let msgs = messages(primary.path());
    let mut replica = Replica::open(replica_dir.path(), "t").expect("replica");
    for m in &msgs[..3] {
        replica.apply(&unsequenced(m.clone())).expect("applies");
    }
    replica.sync().expect("sync");
    drop(replica);
    // A torn write in the next slot: half of the block's bytes.
    let segment = replica_dir.path().join("FS.00000000.wal");
    let mut bytes = fs::read(&segment).expect("read");
    let slot = 64 + 2 * 16_448;
    bytes[slot + 64..slot + 8000].copy_from_slice(&msgs[3].payload[64..8000]);
    fs::write(&segment, &bytes).expect("write");
    let mut replica = Replica::open(replica_dir.path(), "t").expect("reopens a torn tail");
    for m in &msgs[3..] {
        replica.apply(&unsequenced(m.clone())).expect("applies");
    }
    replica.sync().expect("sync");
    drop(replica);
    let kept = replica_dir
        .path()
        .join(format!("FS.00000000.wal.torn-{slot:012}"));
    let kept = fs::read(kept).expect("the torn bytes are kept");
    assert_eq!(&kept[..], &bytes[slot..slot + 16_448]);
    assert_eq!(strict_events(replica_dir.path()), (Status::Ok, 2000));
}
