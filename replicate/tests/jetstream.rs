//! Guards shipping and following through a real three-node JetStream cluster: a
//! shipped log's replica verifies strictly with every event and its segments are
//! byte-identical; shipping and following resume; a stream leader killed mid-way
//! loses nothing; a corrupted message stops the follower before it writes anything.

use std::path::Path;

use fswal_backends::dir::DirStore;
use fswal_core::reference::reference_event;
use fswal_core::writer::wall_clock_ns;
use fswal_core::{Mode, Replay, Status, WalWriter, WriterConfig};
use fswal_replicate::ReplicateError;
use fswal_replicate::follow::follow;
use fswal_replicate::message::{EPOCH_FIRST, Kind};
use fswal_replicate::nats::{LogStream, connect};
use fswal_replicate::replica::Replica;
use fswal_replicate::ship::ship_dir;
use fswal_replicate::source::{message_at, verified_places};
use fswal_replicate::testing::{cluster_or_skip, wal_files};

/// Appends reference events `first..=last` to the log in `dir` (256-block segments),
/// syncing every `sync_every`, and closes it.
fn record(dir: &Path, first: u64, last: u64, sync_every: u64) {
    let store = DirStore::open_for_append(dir).expect("store");
    let (mut w, _) =
        WalWriter::open(store, wall_clock_ns, WriterConfig::with_blocks(256)).expect("open");
    for id in first..=last {
        w.append(&reference_event(id)).expect("append");
        if id % sync_every == 0 {
            w.sync().expect("sync");
        }
    }
    w.close().expect("close");
}

fn strict(dir: &Path) -> (Status, u64, Option<u64>) {
    let mut store = DirStore::open_read_only(dir).expect("store");
    let s = Replay::new(&mut store, Mode::Strict)
        .run(|_| {})
        .expect("replay");
    (s.status, s.events, s.last_event_id)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_shipped_million_events_replicate_byte_for_byte_and_survive_a_leader_kill() {
    let Some(mut cluster) = cluster_or_skip(3) else {
        return;
    };
    let primary = tempfile::tempdir().expect("tempdir");
    let replica_dir = tempfile::tempdir().expect("tempdir");
    record(primary.path(), 1, 600_000, 50_000);
    let rt = runtime();
    let urls = cluster.urls();
    let stream = rt.block_on(async {
        let client = connect(&urls).await.expect("connects");
        LogStream::open_or_create(client, "orders", 3)
            .await
            .expect("stream")
    });
    let shipped = rt
        .block_on(ship_dir(primary.path(), &stream, EPOCH_FIRST))
        .expect("ships");
    assert_eq!(shipped.last_event_id, 600_000);
    // Half the replica, then the leader dies, then the rest of the log is recorded and
    // shipped through the two nodes left.
    let mut replica = Replica::open(replica_dir.path(), "orders").expect("replica");
    rt.block_on(follow(&stream, &mut replica, Some(300_000), |_| {}))
        .expect("follows");
    drop(replica);
    if let Some(leader) = cluster.stream_leader("orders") {
        cluster.kill(leader);
        record(primary.path(), 600_001, 1_000_000, 50_000);
        let shipped = rt
            .block_on(ship_dir(primary.path(), &stream, EPOCH_FIRST))
            .expect("ships after the leader died");
        assert_eq!(shipped.last_event_id, 1_000_000);
        cluster.restart(leader).expect("restarts");
    } else {
        panic!("the stream has no leader");
    }
    // Shipping again publishes nothing: the stream already holds the log.
    let again = rt
        .block_on(ship_dir(primary.path(), &stream, EPOCH_FIRST))
        .expect("ships");
    assert_eq!(again.messages, 0);
    let mut replica = Replica::open(replica_dir.path(), "orders").expect("reopens");
    let done = rt
        .block_on(follow(&stream, &mut replica, Some(1_000_000), |_| {}))
        .expect("follows");
    assert_eq!(done.durable_event_id, 1_000_000);
    drop(replica);
    assert_eq!(
        strict(replica_dir.path()),
        (Status::Ok, 1_000_000, Some(1_000_000))
    );
    assert_eq!(wal_files(primary.path()), wal_files(replica_dir.path()));
}

#[test]
fn a_flipped_byte_in_the_stream_stops_the_follower_before_it_writes() {
    let Some(cluster) = cluster_or_skip(3) else {
        return;
    };
    let primary = tempfile::tempdir().expect("tempdir");
    let replica_dir = tempfile::tempdir().expect("tempdir");
    record(primary.path(), 1, 5_000, 1_000);
    let rt = runtime();
    let stream = rt.block_on(async {
        let client = connect(&cluster.urls()).await.expect("connects");
        LogStream::open_or_create(client, "flipped", 3)
            .await
            .expect("stream")
    });
    // The first half of the log is shipped and replicated.
    let places = verified_places(primary.path()).expect("places");
    let mut store = DirStore::open_read_only(primary.path()).expect("store");
    let half = places.len() / 2;
    rt.block_on(async {
        for (i, place) in places[..half].iter().enumerate() {
            let m = message_at(&mut store, place).expect("message");
            stream
                .publish(&m, i as u64)
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
    });
    let mut replica = Replica::open(replica_dir.path(), "flipped").expect("replica");
    let last = places[half - 1].last_event_id;
    rt.block_on(follow(&stream, &mut replica, Some(last), |_| {}))
        .expect("follows");
    let before = wal_files(replica_dir.path());
    // The next block goes in with one byte flipped in an event.
    let next = places[half..]
        .iter()
        .find(|p| p.kind == Kind::Block)
        .expect("a block");
    let mut m = message_at(&mut store, next).expect("message");
    let mut bytes = m.payload.to_vec();
    bytes[200] ^= 0x01;
    m.payload = bytes.into();
    let seq = rt.block_on(async {
        let (_, last) = stream.bounds().await.expect("bounds");
        stream
            .publish(&m, last)
            .await
            .expect("publish")
            .await
            .expect("ack")
            .sequence
    });
    let e = rt
        .block_on(follow(&stream, &mut replica, Some(5_000), |_| {}))
        .expect_err("refused");
    assert!(
        matches!(e, ReplicateError::Verify { sequence, .. } if sequence == seq),
        "{e}"
    );
    assert!(e.to_string().contains(&format!("sequence {seq}")), "{e}");
    drop(replica);
    assert_eq!(before, wal_files(replica_dir.path()));
    assert_eq!(strict(replica_dir.path()).2, Some(last));
}
