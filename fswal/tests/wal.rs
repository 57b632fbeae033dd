//! Guards the `fswal` crate's contract: a program using only `fswal::*` creates,
//! appends, syncs, reopens with `open_replaying` (every event handed once) and
//! replays, on every backend and through the pipeline; options reach the writer;
//! errors keep their kind and name the file.

use std::fs;
use std::io;
use std::path::Path;

use fswal::{Backend, Event, EventType, OrderType, RequestEvent, Side, Status, Wal};

/// Event `i` of a stream whose fields all depend on `i`.
fn event(i: u64) -> RequestEvent {
    RequestEvent::from(Event {
        event_id: i,
        timestamp: 1000 + i,
        price: 7 * i64::try_from(i).expect("small"),
        quantity: 1,
        user_id: 3,
        order_id: 9,
        event_type: EventType::NewOrder,
        order_type: OrderType::Limit,
        side: if i % 2 == 0 { Side::Ask } else { Side::Bid },
    })
}

/// Every event id `fswal::replay` hands, and the summary's status.
fn replayed(dir: &Path) -> (Vec<u64>, Status) {
    let mut ids = Vec::new();
    let summary = fswal::replay(dir, |e: &RequestEvent| ids.push(e.event_id())).expect("replay");
    (ids, summary.status)
}

/// Appends, syncs, closes, reopens replaying, appends again: with `options`.
fn round_trip(options: &fswal::Options, dir: &Path) {
    let mut wal = options.open(dir).expect("open");
    assert_eq!(wal.last_event_id(), 0);
    let batch: Vec<RequestEvent> = (1..=5000).map(event).collect();
    wal.append_batch(&batch).expect("append_batch");
    wal.append(&event(5001)).expect("append");
    assert_eq!(wal.sync().expect("sync"), 5001);
    assert_eq!(wal.durable_event_id(), 5001);
    assert_eq!(wal.close().expect("close"), 5001);

    let mut seen = Vec::new();
    let mut wal = options
        .open_replaying(dir, |e: &RequestEvent| seen.push(e.event_id()))
        .expect("open_replaying");
    assert!(
        seen.iter().copied().eq(1..=5001),
        "every event once, in order"
    );
    assert_eq!(wal.recovery().summary.events, 5001);
    assert_eq!(wal.last_event_id(), 5001);
    for i in 5002..=6000 {
        wal.append(&event(i)).expect("append");
    }
    wal.close().expect("close");
    let (ids, status) = replayed(dir);
    assert_eq!(status, Status::Ok);
    assert!(ids.iter().copied().eq(1..=6000));
}

#[test]
fn the_default_log_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    round_trip(
        &Wal::options().blocks_per_segment(16),
        &tmp.path().join("wal"),
    );
}

#[test]
fn every_backend_and_the_pipeline_round_trip() {
    for (name, options) in [
        ("mmap", Wal::options().backend(Backend::Mmap)),
        ("direct", Wal::options().backend(Backend::Direct)),
        ("pipelined", Wal::options().pipelined(true)),
        ("compressed", Wal::options().compress(true)),
        ("no sync marks", Wal::options().sync_marks(false)),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let options = options.blocks_per_segment(16);
        // O_DIRECT is not offered by every file system a temporary directory is on.
        if name == "direct" {
            match options.open(tmp.path().join("probe")) {
                Err(e) if e.io_kind() == Some(io::ErrorKind::InvalidInput) => {
                    let _ = std::io::Write::write_all(
                        &mut io::stderr(),
                        b"skipping direct: O_DIRECT unsupported here\n",
                    );
                    continue;
                }
                other => drop(other),
            }
        }
        round_trip(&options, &tmp.path().join(name.replace(' ', "-")));
    }
}

#[test]
fn pipeline_settings_alone_do_not_turn_the_pipeline_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wal = Wal::options()
        .commit_every(std::time::Duration::from_millis(1))
        .ring_capacity(1024)
        .open(tmp.path().join("wal"))
        .expect("open");
    assert!(wal.telemetry().is_none(), "written on the calling thread");
    wal.close().expect("close");
    let wal = Wal::options()
        .commit_every_events(16)
        .pipelined(true)
        .open(tmp.path().join("wal"))
        .expect("reopen");
    assert!(wal.telemetry().is_some(), "through the pipeline");
    wal.close().expect("close");
}

#[test]
fn a_reopened_log_keeps_its_segment_size_and_retention_applies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let mut wal = Wal::options()
        .blocks_per_segment(16)
        .open(&dir)
        .expect("open");
    for i in 1..=4096 * 3 {
        wal.append(&event(i)).expect("append");
    }
    wal.close().expect("close");
    // Reopened without a size: the log's 16-block segments go on.
    let mut wal = Wal::options()
        .retain_segments(2)
        .open(&dir)
        .expect("reopen");
    for i in 4096 * 3 + 1..=4096 * 6 {
        wal.append(&event(i)).expect("append");
    }
    wal.close().expect("close");
    let segments: Vec<u64> = fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with("FS.") && name.ends_with(".wal"))
                .then(|| e.metadata().expect("stat").len())
        })
        .collect();
    assert_eq!(segments.len(), 2, "retention kept two segments");
    assert!(
        segments.iter().all(|&len| len == 64 + 16 * 16_448),
        "{segments:?}"
    );
}

#[test]
fn a_raw_device_image_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("device.img");
    fs::File::create(&image)
        .and_then(|f| f.set_len(64 << 20))
        .expect("image");
    let options = Wal::options().raw_device(true).blocks_per_segment(16);
    match options.open(&image) {
        Err(e) if e.io_kind() == Some(io::ErrorKind::InvalidInput) => {
            let _ = std::io::Write::write_all(
                &mut io::stderr(),
                b"skipping: O_DIRECT unsupported here\n",
            );
        }
        Err(e) => panic!("{e}"),
        Ok(mut wal) => {
            for i in 1..=5000 {
                wal.append(&event(i)).expect("append");
            }
            wal.close().expect("close");
            let mut seen = 0u64;
            let wal = options
                .open_replaying(&image, |_: &RequestEvent| seen += 1)
                .expect("reopen");
            assert_eq!((seen, wal.last_event_id()), (5000, 5000));
            wal.close().expect("close");
        }
    }
}

#[test]
fn refusals_and_errors_say_what_and_where() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let mut wal = Wal::options()
        .blocks_per_segment(16)
        .open(&dir)
        .expect("open");
    for i in 1..=10_000 {
        wal.append(&event(i)).expect("append");
    }
    // Ids must increase; nothing is written.
    let refused = wal.append(&event(10_000)).expect_err("not increasing");
    assert!(refused.to_string().contains("10000"), "{refused}");
    wal.close().expect("close");

    // Damage before the end: opening refuses, naming the segment file, and changes
    // nothing; replay stops there.
    let segment = dir.join("FS.00000000.wal");
    let mut bytes = fs::read(&segment).expect("read");
    bytes[64 + 16_448 * 3 + 500] ^= 1;
    fs::write(&segment, &bytes).expect("write");
    let err = Wal::open(&dir).expect_err("damage is refused");
    assert!(matches!(err, fswal::Error::Log(_)), "{err:?}");
    assert_eq!(fs::read(&segment).expect("read"), bytes, "nothing changed");
    let (ids, status) = replayed(&dir);
    assert_eq!((ids.len(), status), (768, Status::Corrupt));

    // A file where the directory should be: the I/O error's kind is kept.
    let file = tmp.path().join("file");
    fs::write(&file, b"x").expect("write");
    let err = Wal::open(file.join("wal")).expect_err("not a directory");
    assert!(err.io_kind().is_some(), "{err:?}");
    assert!(err.file_error().is_some(), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
}
