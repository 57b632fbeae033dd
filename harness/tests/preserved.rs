//! Guards `fswal preserved`: it lists every set-aside tail, torn-tail copy and
//! quarantine entry exactly (slots, bytes, claimed ids), changes nothing without
//! `--release`, exports each item's exact bytes with a manifest whose hashes hold, never
//! overwrites a file, and releases only what it exported, under the writer lock, with
//! replay giving the same result before and after.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use fswal_backends::dir::DirStore;
use fswal_backends::raw::RawStore;
use fswal_core::reference::reference_event;
use fswal_core::{SegmentStore, WalWriter, WriterConfig};
use serde_json::Value;
use xxhash_rust::xxh64::xxh64;

const MIB: u64 = 1 << 20;
/// Where a quarantine entry starts on a device, and how long one is (the raw layout).
const QUARANTINE_OFFSET: u64 = 64 * 1024;
const QUARANTINE_ENTRY: u64 = 24 * 1024;

/// Runs `fswal args`, which must succeed, and returns the JSON object on the last line
/// of its stdout.
fn ok_json(args: &[&str]) -> Value {
    let out = fswal(args);
    assert_eq!(code(&out), 0, "{args:?}: {}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Runs `fswal args`, which must fail with exit code 2 and one line on stderr,
/// returned.
fn refused(args: &[&str]) -> String {
    let out = fswal(args);
    assert_eq!(code(&out), 2, "{args:?}: {}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "", "{args:?}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

fn range(bytes: &[u8], start: u64, end: u64) -> &[u8] {
    &bytes[usize::try_from(start).expect("start")..usize::try_from(end).expect("end")]
}

/// Appends 1..=1000 with `store` (16 blocks per segment) and syncs, then appends
/// 1001..=1800 and drops the writer unclosed, as a crash does: slots 0..=3 of segment 0
/// hold the synced events (slot 3 a flushed partial block, 769..=1000), slots 4..=6
/// the unsynced full blocks 1001..=1256, 1257..=1512, 1513..=1768 (the last 32 events
/// never left the writer).
fn crash<S: SegmentStore>(store: S)
where
    S::Error: std::fmt::Debug,
{
    let (mut w, _) = WalWriter::open(store, || 1u64, WriterConfig::with_blocks(16)).unwrap();
    for i in 1..=1000 {
        w.append(&reference_event(i)).unwrap();
    }
    w.sync().unwrap();
    for i in 1001..=1800 {
        w.append(&reference_event(i)).unwrap();
    }
    drop(w);
}

/// A WAL directory at `tmp/wal` whose segment 0 recovery sealed at block 4, setting
/// aside slots 4..=6 (slot 4 damaged, 5 and 6 valid behind it: a reordered tail, past
/// the durable watermark), then went on with events 1001..=1010 in segment 1
/// (`extra` options passed to that `record`). Returns the directory and the bytes of
/// segment 0 as the crash left them.
fn set_aside_dir(tmp: &Path, extra: &[&str]) -> (PathBuf, Vec<u8>) {
    let dir = tmp.join("wal");
    crash(DirStore::open_for_append(&dir).unwrap());
    let seg0 = dir.join("FS.00000000.wal");
    // An event byte of slot 4: its block checksum fails, its header still verifies.
    flip(&seg0, HEADER + 4 * BLOCK + 64 + 100);
    let crashed = fs::read(&seg0).expect("read");
    let mut args = vec!["record", "--resume", "--events", "10", "--dir", p(&dir)];
    args.extend_from_slice(extra);
    let out = fswal(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("set aside"), "{}", stderr(&out));
    (dir, crashed)
}

/// What `fswal verify --json` and `fswal dump` say of a log (`target` arguments).
fn replayed(target: &[&str]) -> (String, String) {
    let mut verify = vec!["verify", "--json"];
    verify.extend_from_slice(target);
    let v = fswal(&verify);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
    let mut dump = vec!["dump"];
    dump.extend_from_slice(target);
    let d = fswal(&dump);
    assert_eq!(code(&d), 0, "{}", stderr(&d));
    assert_eq!(stdout(&d).lines().count(), 1010);
    (stdout(&v), stdout(&d))
}

/// The manifest of the export in `dir`, with each file's bytes checked against the
/// size and XXH64 it records; returns the files by name.
fn manifest(dir: &Path, source: &Path) -> BTreeMap<String, Value> {
    let text = fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    let m: Value = serde_json::from_str(&text).expect("manifest JSON");
    assert_eq!(m["source"], p(source));
    let mut files = BTreeMap::new();
    for f in m["files"].as_array().expect("files") {
        let name = f["file"].as_str().expect("file").to_string();
        let bytes = fs::read(dir.join(&name)).expect("exported file");
        assert_eq!(Some(bytes.len() as u64), f["bytes"].as_u64(), "{name}");
        assert_eq!(
            f["xxh64"].as_str(),
            Some(format!("{:#018x}", xxh64(&bytes, 0)).as_str()),
            "{name}"
        );
        files.insert(name, f.clone());
    }
    // Nothing in the directory but the files it lists.
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut listed: Vec<String> = files.keys().cloned().collect();
    listed.push("manifest.json".to_string());
    listed.sort();
    assert_eq!(names, listed);
    files
}

#[test]
fn a_set_aside_tail_is_listed_exactly_and_listing_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = set_aside_dir(tmp.path(), &[]);
    let before = hashes(&dir);
    let v = ok_json(&["preserved", "--json", p(&dir)]);
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{v}");
    let item = &items[0];
    assert_eq!(item["kind"], "set-aside");
    assert_eq!(item["segment"], 0);
    assert_eq!(item["file"], p(&dir.join("FS.00000000.wal")));
    assert_eq!(item["block_count"], 4);
    assert_eq!(
        (item["first_slot"].as_u64(), item["last_slot"].as_u64()),
        (Some(4), Some(6))
    );
    assert_eq!(item["slots"], 3);
    assert_eq!(item["bytes"], 3 * BLOCK);
    assert_eq!(item["offset"], HEADER + 4 * BLOCK);
    assert_eq!(item["end"], HEADER + 7 * BLOCK);
    assert_eq!(item["file_offset"], HEADER + 4 * BLOCK);
    // Slot 4's header still verifies (only an event byte was damaged): it claims
    // 1001..=1256, and slots 5 and 6 the rest.
    assert_eq!(item["claimed_first_event_id"], 1001);
    assert_eq!(item["claimed_last_event_id"], 1768);
    assert_eq!(item["compressed"], false);
    assert_eq!(v["totals"]["items"], 1);
    assert_eq!(v["totals"]["set_aside"], 1);
    assert_eq!(v["totals"]["bytes"], 3 * BLOCK);
    assert_eq!(v["not_examined_total"], 0);
    assert_eq!(v["export"], Value::Null);
    assert_eq!(v["released"], Value::Array(vec![]));
    assert_unchanged(&dir, &before, "a JSON listing");

    let out = fswal(&["preserved", p(&dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "set-aside tail: {}: offset {}",
            p(&dir.join("FS.00000000.wal")),
            HEADER + 4 * BLOCK
        )),
        "{text}"
    );
    assert!(lines[0].contains("slots 4..=6"), "{text}");
    assert!(lines[0].contains("claim events 1001..=1768"), "{text}");
    assert!(lines[1].starts_with("total: 1 item, 49344 bytes"), "{text}");
    assert_unchanged(&dir, &before, "a text listing");
}

#[test]
fn an_export_holds_the_exact_slots_and_is_never_overwritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, crashed) = set_aside_dir(tmp.path(), &[]);
    let before = hashes(&dir);
    let export = tmp.path().join("kept/deeper");
    let v = ok_json(&["preserved", "--json", "--export", p(&export), p(&dir)]);
    assert_eq!(v["export"]["files"], 1);
    assert_eq!(v["export"]["bytes"], 3 * BLOCK);
    assert_unchanged(&dir, &before, "an export");
    let files = manifest(&export, &dir);
    let name = "FS.00000000.wal.slots-000004-000006";
    let f = &files[name];
    assert_eq!(f["kind"], "set-aside");
    assert_eq!(f["source"], p(&dir.join("FS.00000000.wal")));
    assert_eq!(
        (f["segment"].as_u64(), f["offset"].as_u64()),
        (Some(0), Some(HEADER + 4 * BLOCK))
    );
    assert_eq!(f["source_offset"], HEADER + 4 * BLOCK);
    assert_eq!(
        (f["first_slot"].as_u64(), f["last_slot"].as_u64()),
        (Some(4), Some(6))
    );
    let exported = fs::read(export.join(name)).expect("read");
    let segment = fs::read(dir.join("FS.00000000.wal")).expect("read");
    assert!(
        exported == range(&segment, HEADER + 4 * BLOCK, HEADER + 7 * BLOCK),
        "the export differs from the slots in the segment"
    );
    assert!(
        exported == range(&crashed, HEADER + 4 * BLOCK, HEADER + 7 * BLOCK),
        "the slots are not what the crash left"
    );

    // The same export again: refused, the export left as it was.
    let kept = hashes(&export);
    let err = refused(&["preserved", "--export", p(&export), p(&dir)]);
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains(name), "{err}");
    assert_unchanged(&export, &kept, "a refused export");
    // Into the WAL directory: refused, nothing created.
    let inside = dir.join("out");
    let err = refused(&["preserved", "--export", p(&inside), p(&dir)]);
    assert!(err.contains("inside the WAL directory"), "{err}");
    assert!(!inside.exists());
    // Onto a file: refused.
    let file = tmp.path().join("a-file");
    fs::write(&file, b"x").expect("write");
    let err = refused(&["preserved", "--export", p(&file), p(&dir)]);
    assert!(err.contains("not a directory"), "{err}");
    assert_unchanged(&dir, &before, "refused exports");
}

#[test]
fn release_zeroes_the_exported_slots_and_replay_is_unchanged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = set_aside_dir(tmp.path(), &[]);
    let seg0 = dir.join("FS.00000000.wal");
    let segment_before = fs::read(&seg0).expect("read");
    let replay_before = replayed(&[p(&dir)]);
    let export = tmp.path().join("kept");
    let out = fswal(&["preserved", "--export", p(&export), "--release", p(&dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("released set-aside tail: ")),
        "{text}"
    );
    // The export holds what was zeroed.
    manifest(&export, &dir);
    let exported = fs::read(export.join("FS.00000000.wal.slots-000004-000006")).expect("read");
    assert!(exported == range(&segment_before, HEADER + 4 * BLOCK, HEADER + 7 * BLOCK));
    // Exactly the range is zero now; every other byte is as it was.
    let mut want = segment_before.clone();
    want[usize::try_from(HEADER + 4 * BLOCK).unwrap()
        ..usize::try_from(HEADER + 7 * BLOCK).unwrap()]
        .fill(0);
    assert!(
        fs::read(&seg0).expect("read") == want,
        "more than the range changed"
    );
    assert_eq!(replayed(&[p(&dir)]), replay_before, "replay changed");
    let v = ok_json(&["preserved", "--json", p(&dir)]);
    assert_eq!(v["items"], Value::Array(vec![]));
    assert_eq!(v["totals"]["items"], 0);
}

#[test]
fn release_without_an_export_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = set_aside_dir(tmp.path(), &[]);
    let before = hashes(&dir);
    let err = refused(&["preserved", "--release", p(&dir)]);
    assert!(err.contains("--release needs --export"), "{err}");
    assert_unchanged(&dir, &before, "a refused release");
}

#[test]
fn a_running_writer_keeps_release_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = set_aside_dir(tmp.path(), &[]);
    let before = hashes(&dir);
    let writer = DirStore::open_for_append(&dir).expect("lock");
    let export = tmp.path().join("kept");
    let err = refused(&["preserved", "--export", p(&export), "--release", p(&dir)]);
    assert!(err.contains("another process is writing"), "{err}");
    assert!(!export.exists(), "exported under a running writer");
    assert_unchanged(&dir, &before, "a release refused for the lock");
    // A listing is a reader: it goes on beside the writer.
    let v = ok_json(&["preserved", "--json", p(&dir)]);
    assert_eq!(v["totals"]["items"], 1);
    drop(writer);
    let out = fswal(&["preserved", "--export", p(&export), "--release", p(&dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn legacy_torn_tail_copies_are_listed_exported_and_released() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    record_small(&dir, 1010);
    // Side files as an earlier recovery left them: one slot of segment 0 from offset
    // 65856 (slot 4), and a second copy of the same offset.
    let first: Vec<u8> = (0..=255u8).cycle().take(16_448).collect();
    let second = b"a second copy".to_vec();
    let a = dir.join("FS.00000000.wal.torn-000000065856");
    let b = dir.join("FS.00000000.wal.torn-000000065856.1");
    fs::write(&a, &first).expect("write");
    fs::write(&b, &second).expect("write");
    let before = hashes(&dir);
    let v = ok_json(&["preserved", "--json", p(&dir)]);
    let rows: Vec<(String, u64, u64, u64)> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            assert_eq!(i["kind"], "torn-copy");
            (
                i["path"].as_str().expect("path").to_string(),
                i["segment"].as_u64().expect("segment"),
                i["offset"].as_u64().expect("offset"),
                i["bytes"].as_u64().expect("bytes"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (p(&a).to_string(), 0, 65_856, 16_448),
            (p(&b).to_string(), 0, 65_856, second.len() as u64),
        ]
    );
    assert_eq!(v["totals"]["torn_copies"], 2);
    assert_eq!(v["totals"]["bytes"], 16_448 + second.len() as u64);
    assert_unchanged(&dir, &before, "a listing");

    let replay_before = replayed(&[p(&dir)]);
    let export = tmp.path().join("kept");
    let v = ok_json(&[
        "preserved",
        "--json",
        "--export",
        p(&export),
        "--release",
        p(&dir),
    ]);
    assert_eq!(v["released"].as_array().map(Vec::len), Some(2));
    let files = manifest(&export, &dir);
    assert_eq!(
        fs::read(export.join("FS.00000000.wal.torn-000000065856")).expect("read"),
        first
    );
    assert_eq!(
        fs::read(export.join("FS.00000000.wal.torn-000000065856.1")).expect("read"),
        second
    );
    assert_eq!(files["FS.00000000.wal.torn-000000065856"]["source"], p(&a));
    assert_eq!(files["FS.00000000.wal.torn-000000065856"]["offset"], 65_856);
    assert!(!a.exists() && !b.exists(), "the copies are still there");
    assert_eq!(replayed(&[p(&dir)]), replay_before, "replay changed");
    assert_eq!(
        ok_json(&["preserved", "--json", p(&dir)])["totals"]["items"],
        0
    );
}

/// Writes quarantine entry `entry` into the device image at `path` as an earlier
/// version of recovery did: a header sector (magic `FSWALQ01`, segment u32, length u32,
/// offset u64, XXH64 of the bytes, XXH64 of the header's first 56 bytes at 56), then
/// `bytes` in the next sector.
fn write_quarantine_entry(path: &Path, entry: u64, segment: u32, offset: u64, bytes: &[u8]) {
    let mut image = fs::read(path).expect("read");
    let at = usize::try_from(QUARANTINE_OFFSET + entry * QUARANTINE_ENTRY).expect("offset");
    let mut head = [0u8; 64];
    head[..8].copy_from_slice(b"FSWALQ01");
    head[8..12].copy_from_slice(&segment.to_le_bytes());
    head[12..16].copy_from_slice(&u32::try_from(bytes.len()).expect("len").to_le_bytes());
    head[16..24].copy_from_slice(&offset.to_le_bytes());
    head[24..32].copy_from_slice(&xxh64(bytes, 0).to_le_bytes());
    let checksum = xxh64(&head[..56], 0);
    head[56..64].copy_from_slice(&checksum.to_le_bytes());
    image[at..at + 64].copy_from_slice(&head);
    image[at + 4096..at + 4096 + bytes.len()].copy_from_slice(bytes);
    fs::write(path, &image).expect("write");
}

#[test]
fn a_raw_device_image_end_to_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("device.img");
    fs::File::create(&image)
        .and_then(|f| f.set_len(16 * MIB))
        .expect("image");
    crash(RawStore::format(&image, 16, 1, false).unwrap());
    // Segment 0 lives in the slot at 1 MiB: an event byte of its slot 4.
    flip(&image, MIB + HEADER + 4 * BLOCK + 64 + 100);
    let crashed = fs::read(&image).expect("read");
    let out = fswal(&[
        "record",
        "--resume",
        "--events",
        "10",
        "--device",
        p(&image),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let kept: Vec<u8> = (0..100u8).collect();
    write_quarantine_entry(&image, 7, 0, HEADER + 4 * BLOCK, &kept);

    let before = fs::read(&image).expect("read");
    let v = ok_json(&["preserved", "--json", "--device", p(&image)]);
    assert_eq!(
        fs::read(&image).expect("read"),
        before,
        "a listing changed the device"
    );
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{v}");
    let (tail, entry) = (&items[0], &items[1]);
    assert_eq!(tail["kind"], "set-aside");
    assert_eq!(tail["file"], p(&image));
    assert_eq!(
        (tail["first_slot"].as_u64(), tail["last_slot"].as_u64()),
        (Some(4), Some(6))
    );
    assert_eq!(tail["slots"], 3);
    assert_eq!(tail["offset"], HEADER + 4 * BLOCK);
    assert_eq!(tail["file_offset"], MIB + HEADER + 4 * BLOCK);
    assert_eq!(tail["claimed_first_event_id"], 1001);
    assert_eq!(tail["claimed_last_event_id"], 1768);
    assert_eq!(entry["kind"], "quarantine");
    assert_eq!(entry["entry"], 7);
    assert_eq!(entry["segment"], 0);
    assert_eq!(entry["offset"], HEADER + 4 * BLOCK);
    assert_eq!(entry["bytes"], 100);
    assert_eq!(
        entry["file_offset"],
        QUARANTINE_OFFSET + 7 * QUARANTINE_ENTRY + 4096
    );

    let replay_before = replayed(&["--device", p(&image)]);
    let export = tmp.path().join("kept");
    let v = ok_json(&[
        "preserved",
        "--json",
        "--export",
        p(&export),
        "--release",
        "--device",
        p(&image),
    ]);
    assert_eq!(v["released"].as_array().map(Vec::len), Some(2), "{v}");
    let files = manifest(&export, &image);
    let slots = fs::read(export.join("FS.00000000.wal.slots-000004-000006")).expect("read");
    let (start, end) = (MIB + HEADER + 4 * BLOCK, MIB + HEADER + 7 * BLOCK);
    assert!(
        slots == range(&crashed, start, end),
        "the export is not the slots"
    );
    assert_eq!(
        files["FS.00000000.wal.slots-000004-000006"]["source_offset"],
        start
    );
    let name = "quarantine-07.FS.00000000.wal.torn-000000065856";
    assert_eq!(fs::read(export.join(name)).expect("read"), kept);
    assert_eq!(files[name]["entry"], 7);
    let after = fs::read(&image).expect("read");
    assert!(
        range(&after, start, end).iter().all(|&b| b == 0),
        "slots not zeroed"
    );
    let entry_at = QUARANTINE_OFFSET + 7 * QUARANTINE_ENTRY;
    assert!(
        range(&after, entry_at, entry_at + 4096)
            .iter()
            .all(|&b| b == 0),
        "the entry's header is not blank"
    );
    assert_eq!(
        replayed(&["--device", p(&image)]),
        replay_before,
        "replay changed"
    );
    assert_eq!(
        ok_json(&["preserved", "--json", "--device", p(&image)])["totals"]["items"],
        0
    );
}

#[test]
fn a_compressed_segment_is_exported_but_not_released() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, crashed) = set_aside_dir(tmp.path(), &["--compress"]);
    let lz4 = dir.join("FS.00000000.wal.lz4");
    assert!(lz4.is_file(), "the sealed tail segment was not compressed");
    let v = ok_json(&["preserved", "--json", p(&dir)]);
    let item = &v["items"][0];
    assert_eq!(item["compressed"], true);
    assert_eq!(item["file"], p(&lz4));
    assert_eq!(item["file_offset"], Value::Null);
    assert_eq!(item["slots"], 3);

    let lz4_before = fs::read(&lz4).expect("read");
    let export = tmp.path().join("kept");
    let out = fswal(&["preserved", "--export", p(&export), "--release", p(&dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("not released: set-aside tail: ") && l.contains("compressed")),
        "{text}"
    );
    manifest(&export, &dir);
    let slots = fs::read(export.join("FS.00000000.wal.slots-000004-000006")).expect("read");
    assert!(slots == range(&crashed, HEADER + 4 * BLOCK, HEADER + 7 * BLOCK));
    assert_eq!(
        fs::read(&lz4).expect("read"),
        lz4_before,
        "the container changed"
    );
    assert_eq!(
        ok_json(&["preserved", "--json", p(&dir)])["totals"]["items"],
        1
    );
}
