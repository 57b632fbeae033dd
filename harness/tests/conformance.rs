//! Guards that every storage backend behaves the same: one workload (appends, syncs,
//! a crash, recovery, more appends, seals, reopenings) runs against the memory,
//! file (with and without its write thread), mmap, O_DIRECT, compressed-directory and raw-device stores (on an image file
//! and on a real loop device), and each must replay the same events and hold segments
//! byte-identical to the others'. Every backend's segment devices also keep the
//! `BlockDevice` contract (read-your-writes, clean errors out of range).

use std::path::Path;

use fswal_backends::dir::{DirStore, SegmentDir};
use fswal_backends::direct::DirectDevice;
use fswal_backends::memory::MemStore;
use fswal_backends::mmap::MmapDevice;
use fswal_backends::raw::RawStore;
use fswal_backends::testing::{LoopDevice, say};
use fswal_core::reference::reference_event;
use fswal_core::{
    BlockDevice, ErrorKind, Mode, Replay, RequestEvent, SegmentStore, Status, WalWriter,
    WriterConfig,
};

const BLOCKS: u32 = 16;
const MIB: u64 = 1 << 20;

/// Appends `ids` to the log in `store`, syncing after every `sync_every` events, and
/// seals at the end if `close`; returns the store.
fn append<S: SegmentStore>(
    store: S,
    ids: impl IntoIterator<Item = u64>,
    sync_every: u64,
    close: bool,
) -> S
where
    S::Error: std::fmt::Debug,
{
    let (mut w, recovery) =
        WalWriter::open(store, || 1u64, WriterConfig::with_blocks(BLOCKS)).expect("open");
    assert!(
        recovery.summary.status != Status::Corrupt,
        "{:?}",
        recovery.summary
    );
    for (n, id) in ids.into_iter().enumerate() {
        w.append(&reference_event(id)).expect("append");
        if (n as u64 + 1) % sync_every == 0 {
            w.sync().expect("sync");
        }
    }
    if close {
        w.close().expect("close");
    }
    w.into_store()
}

/// The workload every backend runs. `reopen` is a restart: it gets the store the last
/// step left (none at first) and returns the store to go on with: the same one for
/// memory, a fresh one from the path for files and devices (the old one dropped, and
/// its lock with it). Returns the replayed events and every segment's bytes.
fn workload<S: SegmentStore>(
    mut reopen: impl FnMut(Option<S>) -> S,
) -> (Vec<RequestEvent>, Vec<Vec<u8>>)
where
    S::Error: std::fmt::Debug,
{
    // A crash: 5000 events with syncs every 700, the writer dropped without sealing.
    let store = append(reopen(None), 1..=5000, 700, false);
    // Recovery, then appends across segment boundaries with partial blocks, sealed.
    let store = append(reopen(Some(store)), 5001..=9000, 333, true);
    // A reopening of a sealed log starts a new segment; one event, then sealed.
    let store = append(reopen(Some(store)), 9001..=9001, 1, true);
    // A reopening that finds nothing to do, and appends nothing.
    let store = append(reopen(Some(store)), std::iter::empty(), 1, true);

    let mut store = reopen(Some(store));
    let mut events = Vec::new();
    let summary = Replay::new(&mut store, Mode::Strict)
        .run(|e| events.push(*e))
        .expect("replay");
    assert_eq!(summary.status, Status::Ok);
    assert!(!summary.open_segment);
    let (first, last) = store.segment_range().expect("range").expect("segments");
    let mut images = Vec::new();
    for index in first..=last {
        let mut device = store.open_segment(index).expect("open").expect("present");
        device_contract(&mut device);
        let len = usize::try_from(device.len_bytes()).expect("fits");
        let mut bytes = vec![0u8; len];
        device.read_exact_at(0, &mut bytes).expect("read");
        images.push(bytes);
    }
    (events, images)
}

/// A `reopen` for stores that live at a path: drop the old one, open anew.
fn from_path<S>(mut open: impl FnMut() -> S) -> impl FnMut(Option<S>) -> S {
    move |old| {
        drop(old);
        open()
    }
}

/// What every segment device must do: reads return what is there, and a read past the
/// end fails with `InvalidInput`, without panicking.
fn device_contract<D: BlockDevice>(device: &mut D) {
    let g = device.write_granularity_bytes();
    assert!(g.is_power_of_two(), "granularity {g}");
    assert!(device.capacity_bytes() >= device.len_bytes());
    let len = device.len_bytes();
    let mut a = [0u8; 100];
    let mut b = [0u8; 100];
    device
        .read_exact_at(len - 100, &mut a)
        .expect("read the end");
    device
        .read_exact_at(len - 100, &mut b)
        .expect("read it again");
    assert_eq!(a, b);
    let e = device
        .read_exact_at(len - 50, &mut a)
        .expect_err("a read past the end");
    assert_eq!(fswal_core::DeviceError::kind(&e), ErrorKind::InvalidInput);
    assert!(device.read_exact_at(u64::MAX - 10, &mut a).is_err());
}

/// What the workload leaves: the crash loses events 4901..=5000, which were after the
/// last sync (at 4900) and never reached a block on the device.
fn expected_events() -> Vec<RequestEvent> {
    (1..=4900).chain(5001..=9001).map(reference_event).collect()
}

/// The reference run: the memory store.
fn reference() -> (Vec<RequestEvent>, Vec<Vec<u8>>) {
    let (events, images) = workload(|old: Option<MemStore>| old.unwrap_or_default());
    assert!(
        events == expected_events(),
        "the memory store replays the workload's events"
    );
    (events, images)
}

fn check(name: &str, got: (Vec<RequestEvent>, Vec<Vec<u8>>)) {
    let (events, images) = reference();
    assert!(got.0 == events, "{name}: different events");
    assert_eq!(got.1.len(), images.len(), "{name}: segment count");
    for (i, (a, b)) in got.1.iter().zip(&images).enumerate() {
        assert_eq!(a.len(), b.len(), "{name}: segment {i} length");
        if let Some(at) = a.iter().zip(b).position(|(x, y)| x != y) {
            panic!("{name}: segment {i} differs from the memory store's at byte {at}");
        }
    }
}

#[test]
fn memory_store_runs_the_workload() {
    let (events, images) = reference();
    assert_eq!(events.len(), 8901);
    // 8901 events in 256-event blocks, partial ones after every sync, 16 blocks per
    // segment: more than three segments.
    assert!(images.len() > 3, "{}", images.len());
}

#[test]
fn file_backend_conforms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let got = workload(from_path(|| DirStore::open_for_append(&dir).expect("open")));
    check("file", got);
}

#[test]
fn file_backend_with_a_write_thread_conforms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let got = workload(from_path(|| {
        DirStore::open_for_append(&dir)
            .expect("open")
            .write_thread(true)
    }));
    check("file with a write thread", got);
}

#[test]
fn mmap_backend_conforms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let got = workload(from_path(|| {
        SegmentDir::<MmapDevice>::open_for_append(&dir).expect("open")
    }));
    check("mmap", got);
}

#[test]
fn direct_backend_conforms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let got = workload(from_path(|| {
        SegmentDir::<DirectDevice>::open_for_append(&dir).expect("open")
    }));
    check("direct", got);
}

#[test]
fn compressed_directory_conforms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let got = workload(from_path(|| {
        DirStore::open_for_append(&dir)
            .expect("open")
            .compress_sealed(true)
    }));
    let compressed = std::fs::read_dir(&dir)
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal.lz4"))
        })
        .count();
    assert!(
        compressed >= 3,
        "sealed segments are compressed: {compressed}"
    );
    check("compressed directory", got);
}

fn raw_store(device: &Path) -> RawStore {
    RawStore::open_or_format(device, BLOCKS, 1, false)
        .expect("open or format")
        .0
}

#[test]
fn raw_device_image_conforms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("device.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(32 * MIB))
        .expect("image");
    let got = workload(from_path(|| raw_store(&image)));
    check("raw device image", got);
}

#[test]
fn loop_device_conforms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let device = match LoopDevice::attach_blank(tmp.path(), 32 * MIB) {
        Ok(device) => device,
        Err(reason) => {
            say(format_args!(
                "skipping: loop devices unavailable ({reason})\n"
            ));
            return;
        }
    };
    let got = workload(from_path(|| raw_store(device.path())));
    check("loop device", got);
}
