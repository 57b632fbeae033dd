//! Guards the stable contracts of the `fswal` command line: exit codes, the JSON
//! report of `verify`, the output of `dump`, one-line errors naming the file and the
//! offset for bad input, no panics, and inputs left exactly as they were.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// A WAL of `events` reference events, 16 blocks per segment, in a new tempdir.
fn recorded(events: u64) -> (tempfile::TempDir, PathBuf) {
    let (tmp, dir, _) = recorded_with(events, &[]);
    (tmp, dir)
}

/// A WAL of `events` reference events, 16 blocks per segment, recorded with the
/// `extra` options in a new tempdir; also what `record` printed.
fn recorded_with(events: u64, extra: &[&str]) -> (tempfile::TempDir, PathBuf, Output) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let events = events.to_string();
    let mut args = vec![
        "record",
        "--dir",
        p(&dir),
        "--events",
        &events,
        "--blocks-per-segment",
        "16",
    ];
    args.extend_from_slice(extra);
    let out = fswal(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (tmp, dir, out)
}

/// Every file under `dir` and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let path = e.expect("entry").path();
            let bytes = fs::read(&path).unwrap_or_default();
            (path, bytes)
        })
        .collect()
}

/// Asserts that every file of `dir` is as in `before`, naming the ones that are not.
fn assert_unchanged(dir: &Path, before: &BTreeMap<PathBuf, Vec<u8>>, what: &str) {
    let after = snapshot(dir);
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(changed.is_empty(), "{what} changed {changed:?}");
}

/// Runs `fswal record` with `args` on `dir`, which must refuse: exit code 2, one line
/// on stderr (returned), and every file of `dir` left exactly as it was.
fn refused_record(dir: &Path, args: &[&str]) -> String {
    let before = snapshot(dir);
    let mut all = vec!["record", "--dir", p(dir)];
    all.extend_from_slice(args);
    let out = fswal(&all);
    assert_eq!(code(&out), 2, "{args:?}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_unchanged(dir, &before, "a refused record");
    err
}

fn json(out: &Output) -> Value {
    let text = stdout(out);
    assert_eq!(
        text.lines().count(),
        1,
        "one JSON object on one line: {text}"
    );
    serde_json::from_str(&text).expect("valid JSON")
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut all = fs::read(path).expect("read");
    let at = usize::try_from(offset).expect("offset");
    all[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, all).expect("write");
}

#[test]
fn verify_ok_reports_every_field() {
    let (_tmp, dir) = recorded(10_000);
    let out = fswal(&["verify", "--json", p(&dir)]);
    assert_eq!(code(&out), 0);
    let v = json(&out);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["segments"], 3);
    assert_eq!(v["blocks"], 40);
    assert_eq!(v["events"], 10_000);
    assert_eq!(v["first_event_id"], 1);
    assert_eq!(v["last_event_id"], 10_000);
    assert_eq!(v["skipped_blocks"], 0);
    assert_eq!(v["open_segment"], false);
    assert_eq!(v["issues"], Value::Array(vec![]));

    let text = fswal(&["verify", p(&dir)]);
    assert_eq!(code(&text), 0);
    assert!(stdout(&text).starts_with("ok: 3 segments, 40 blocks, 10000 events"));
}

#[test]
fn damage_in_the_middle_is_corrupt_and_named_by_file_and_offset() {
    let (_tmp, dir) = recorded(10_000);
    let seg1 = dir.join("FS.00000001.wal");
    let at = 64 + 5 * BLOCK + 64 + 20;
    patch(&seg1, at, &[0xff]);
    let before = snapshot(&dir);

    let out = fswal(&["verify", "--json", p(&dir)]);
    assert_eq!(code(&out), 1);
    let v = json(&out);
    assert_eq!(v["status"], "corrupt");
    assert_eq!(v["events"], 4096 + 5 * 256);
    let issue = &v["issues"][0];
    assert_eq!(issue["segment"], 1);
    assert_eq!(issue["block"], 5);
    assert_eq!(issue["offset"], 64 + 5 * BLOCK);
    assert!(
        issue["reason"]
            .as_str()
            .expect("reason")
            .contains("block checksum mismatch")
    );

    let diag = json(&fswal(&[
        "verify",
        "--json",
        "--mode",
        "diagnostic",
        p(&dir),
    ]));
    assert_eq!(diag["status"], "corrupt");
    assert_eq!(
        diag["events"],
        10_000 - 256,
        "diagnostic mode salvages all but the bad block"
    );
    assert_eq!(diag["last_event_id"], 10_000);

    let text = fswal(&["verify", p(&dir)]);
    let first = stdout(&text).lines().next().expect("a line").to_string();
    assert!(
        first.contains("FS.00000001.wal: offset 82304 (block 5): block checksum mismatch"),
        "{first}"
    );
    assert_unchanged(&dir, &before, "verify");
}

#[test]
fn torn_tail_is_truncated() {
    let (_tmp, dir) = recorded(10_000);
    // The last block of the last segment (block 7 of segment 2, 16 events): its
    // sectors after the first 512 bytes never reached the disk.
    let seg2 = dir.join("FS.00000002.wal");
    patch(&seg2, 64 + 7 * BLOCK + 512, &[0u8; 8192]);
    let v = json(&fswal(&["verify", "--json", p(&dir)]));
    assert_eq!(v["status"], "truncated");
    assert_eq!(v["events"], 8192 + 7 * 256);
    assert_eq!(v["issues"][0]["block"], 7);
}

#[test]
fn missing_segment_is_reported() {
    let (_tmp, dir) = recorded(10_000);
    fs::remove_file(dir.join("FS.00000001.wal")).expect("rm");
    let out = fswal(&["verify", p(&dir)]);
    assert_eq!(code(&out), 1);
    let first = stdout(&out).lines().next().expect("a line").to_string();
    assert!(
        first.ends_with("FS.00000001.wal: offset 0: segment file is missing"),
        "{first}"
    );
}

#[test]
fn bad_inputs_get_one_line_errors_naming_the_file() {
    let (tmp, dir) = recorded(1000);
    // Not a WAL: an empty directory, a text file, a path that does not exist.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let text = tmp.path().join("notes.txt");
    fs::write(
        &text,
        "this is not a write-ahead log, just some words\n".repeat(4),
    )
    .expect("write");
    let missing = tmp.path().join("nope");
    for (path, needle) in [
        (&empty, "not a WAL"),
        (&text, "offset 0: bad magic"),
        (&missing, "No such file"),
    ] {
        let out = fswal(&["verify", p(path)]);
        assert_eq!(code(&out), 2, "{}", p(path));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(p(path)) && err.contains(needle), "{err}");
        let out = fswal(&["dump", p(path)]);
        assert_eq!(code(&out), 2, "{}", p(path));
    }

    // A wrong version and a truncated file: damage, named by file and offset.
    let seg0 = dir.join("FS.00000000.wal");
    let copy = tmp.path().join("copy.wal");
    fs::copy(&seg0, &copy).expect("copy");
    patch(&copy, 2, &[2]);
    let out = fswal(&["verify", p(&copy)]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains(&format!(
        "{}: offset 0: unsupported format version 2",
        p(&copy)
    )));
    fs::copy(&seg0, &copy).expect("copy");
    fs::OpenOptions::new()
        .write(true)
        .open(&copy)
        .expect("open")
        .set_len(64 + 2 * BLOCK + 100)
        .expect("truncate");
    let out = fswal(&["verify", "--json", p(&copy)]);
    assert_eq!(code(&out), 1);
    let v = json(&out);
    assert_eq!(v["status"], "truncated");
    assert_eq!(v["events"], 512);
    assert_eq!(v["issues"][0]["offset"], 64 + 2 * BLOCK + 100);

    // Usage errors.
    assert_eq!(code(&fswal(&["verify"])), 2);
    assert_eq!(code(&fswal(&["verify", "--mode", "lenient", p(&dir)])), 2);
    assert_eq!(code(&fswal(&["bogus"])), 2);
}

#[test]
fn dump_prints_events_in_the_format_names() {
    let (_tmp, dir) = recorded(600);
    let out = fswal(&["dump", "--limit", "3", p(&dir)]);
    assert_eq!(code(&out), 0);
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    let e3 = &lines[2];
    let keys: Vec<&str> = e3
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "event_id",
        "timestamp",
        "price",
        "quantity",
        "user_id",
        "order_id",
        "type",
        "order_type",
        "side",
    ] {
        assert!(keys.contains(&key), "missing {key}");
    }
    assert_eq!(e3["event_id"], 3);
    assert_eq!(e3["timestamp"], 1003);
    assert_eq!(e3["price"], 21);
    assert_eq!(e3["quantity"], 4);
    assert_eq!(e3["user_id"], 3);
    assert_eq!(e3["order_id"], 3);
    assert_eq!(e3["type"], "CANCEL_ORDER");
    assert_eq!(e3["order_type"], "MARKET");
    assert_eq!(e3["side"], "BID");

    let csv = stdout(&fswal(&[
        "dump",
        "--format",
        "csv",
        "--from",
        "599",
        p(&dir),
    ]));
    assert_eq!(
        csv,
        "event_id,timestamp,price,quantity,user_id,order_id,type,order_type,side\n\
         599,1599,4193,100,4,599,CANCEL_ORDER,LIMIT,BID\n\
         600,1600,4200,1,5,600,NEW_ORDER,MARKET,ASK\n"
    );
    let all = stdout(&fswal(&["dump", p(&dir)]));
    assert_eq!(all.lines().count(), 600);
    let from = stdout(&fswal(&["dump", "--from", "257", "--limit", "1", p(&dir)]));
    assert!(from.starts_with(r#"{"event_id":257,"#), "{from}");
}

#[test]
fn dump_of_a_damaged_log_prints_the_valid_prefix_and_exits_1() {
    let (_tmp, dir) = recorded(1000);
    let seg0 = dir.join("FS.00000000.wal");
    patch(&seg0, 64 + 2 * BLOCK, &[0x42]);
    let before = snapshot(&dir);
    let out = fswal(&["dump", p(&dir)]);
    assert_eq!(code(&out), 1);
    assert_eq!(stdout(&out).lines().count(), 512);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}: offset {} (block 2)",
            p(&seg0),
            64 + 2 * BLOCK
        )),
        "{err}"
    );
    assert_unchanged(&dir, &before, "dump");
}

/// Flips every bit of the byte at `offset` of `path`.
fn flip_byte(path: &Path, offset: u64) {
    let at = usize::try_from(offset).expect("offset");
    let byte = fs::read(path).expect("read")[at];
    patch(path, offset, &[byte ^ 0xff]);
}

/// The event ids of `dump`'s JSON lines, in order.
fn dumped_ids(out: &Output) -> Vec<u64> {
    stdout(out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            v["event_id"].as_u64().expect("event_id")
        })
        .collect()
}

#[test]
fn dump_from_never_prints_events_past_damage_in_its_starting_segment() {
    // Issue 9, defect 7: a byte inside event 1 of block 5 of segment 1 (events
    // 5377..=5632) is flipped; strict replay stops at 5376. The seek used to start at
    // block 6, seeded by block 5's intact header, and printed 5700..=10000 with exit 0.
    let (_tmp, dir) = recorded(10_000);
    let seg1 = dir.join("FS.00000001.wal");
    flip_byte(&seg1, 64 + 5 * BLOCK + 164);
    let before = snapshot(&dir);
    let named = format!("{}: offset {} (block 5)", p(&seg1), 64 + 5 * BLOCK);

    let out = fswal(&["dump", "--from", "5700", p(&dir)]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(
        dumped_ids(&out),
        Vec::<u64>::new(),
        "nothing at or above 5700 precedes the damage"
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&named) && err.contains("FS.00000001.wal"),
        "{err}"
    );
    assert_eq!(64 + 5 * BLOCK, 82_304);

    let out = fswal(&["dump", "--from", "5000", p(&dir)]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(dumped_ids(&out), (5000..=5376).collect::<Vec<u64>>());
    assert!(stderr(&out).contains(&named), "{}", stderr(&out));

    let out = fswal(&["dump", "--from", "5000", "--verify-prefix", p(&dir)]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(dumped_ids(&out), (5000..=5376).collect::<Vec<u64>>());
    assert_unchanged(&dir, &before, "dump --from");
}

#[test]
fn verify_prefix_sees_damage_in_earlier_segments_that_a_seek_does_not_read() {
    // Damage inside an event of block 3 of sealed segment 0, its header intact. A seek
    // into segment 2 reads only segment 0's header, which vouches for totals and ids,
    // not for block bytes: the documented trade. `--verify-prefix` reads it all.
    let (_tmp, dir) = recorded(10_000);
    let seg0 = dir.join("FS.00000000.wal");
    flip_byte(&seg0, 64 + 3 * BLOCK + 64 + 100);

    let out = fswal(&["dump", "--from", "9000", p(&dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(dumped_ids(&out), (9000..=10_000).collect::<Vec<u64>>());

    let out = fswal(&["dump", "--from", "9000", "--verify-prefix", p(&dir)]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(dumped_ids(&out), Vec::<u64>::new());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}: offset {} (block 3)",
            p(&seg0),
            64 + 3 * BLOCK
        )),
        "{err}"
    );

    // `--verify-prefix` only means something with `--from`.
    assert_eq!(code(&fswal(&["dump", "--verify-prefix", p(&dir)])), 2);
}

#[test]
fn record_seals_and_keeps_ids_increasing() {
    let (_tmp, dir) = recorded(300);
    let v = json(&fswal(&["verify", "--json", p(&dir)]));
    assert_eq!(
        (v["events"].as_u64(), v["open_segment"].as_bool()),
        (Some(300), Some(false))
    );

    let err = refused_record(&dir, &["--events", "10", "--start-id", "300"]);
    assert!(
        err.contains(p(&dir)) && err.contains("--start-id 301"),
        "{err}"
    );

    let out = fswal(&[
        "record",
        "--dir",
        p(&dir),
        "--events",
        "10",
        "--start-id",
        "301",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&fswal(&["verify", "--json", p(&dir)]));
    assert_eq!(
        (v["events"].as_u64(), v["last_event_id"].as_u64()),
        (Some(310), Some(310))
    );

    for bad in [["--blocks-per-segment", "15"], ["--start-id", "0"]] {
        let out = fswal(&["record", "--dir", p(&dir), "--events", "1", bad[0], bad[1]]);
        assert_eq!(code(&out), 2, "{bad:?}");
    }
}

#[test]
fn record_refuses_a_damaged_wal_and_changes_nothing() {
    let (_tmp, dir) = recorded(10_000);
    patch(&dir.join("FS.00000000.wal"), 64 + 3 * BLOCK + 100, &[0x99]);
    let err = refused_record(&dir, &["--events", "1", "--start-id", "10001"]);
    assert!(
        err.contains("FS.00000000.wal: offset 49408 (block 3)")
            && err.contains("refusing to append"),
        "{err}"
    );
}

#[test]
fn demo_passes() {
    let out = fswal(&["demo", "--events", "100000"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert!(text.contains("demo passed"));
    assert!(text.contains("no acknowledged event lost"));
    assert!(!text.contains("FAILED"));
}

#[test]
fn record_prints_durable_ids_and_resumes() {
    let (_tmp, dir, out) = recorded_with(1000, &["--sync-every", "300", "--print-durable"]);
    let text = stdout(&out);
    let durable: Vec<&str> = text.lines().filter(|l| l.starts_with("durable ")).collect();
    assert_eq!(
        durable,
        ["durable 300", "durable 600", "durable 900", "durable 1000"]
    );
    let out = fswal(&["record", "--dir", p(&dir), "--events", "10", "--resume"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("ids 1001..=1010"), "{}", stdout(&out));
    let v = json(&fswal(&["verify", "--json", p(&dir)]));
    assert_eq!(
        (v["events"].as_u64(), v["last_event_id"].as_u64()),
        (Some(1010), Some(1010))
    );
    // --resume and --start-id contradict each other.
    assert_eq!(
        code(&fswal(&[
            "record",
            "--dir",
            p(&dir),
            "--events",
            "1",
            "--resume",
            "--start-id",
            "5"
        ])),
        2
    );
}

#[test]
fn every_backend_reads_and_writes_the_same_wal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut dumps = Vec::new();
    for backend in ["file", "mmap", "direct"] {
        let dir = tmp.path().join(backend);
        let out = fswal(&[
            "record",
            "--dir",
            p(&dir),
            "--backend",
            backend,
            "--events",
            "5000",
            "--blocks-per-segment",
            "16",
            "--sync-every",
            "777",
        ]);
        assert_eq!(code(&out), 0, "{backend}: {}", stderr(&out));
        for reader in ["file", "mmap", "direct"] {
            let v = json(&fswal(&["verify", "--json", "--backend", reader, p(&dir)]));
            assert_eq!(v["status"], "ok", "{backend} read by {reader}: {v}");
            assert_eq!(v["events"], 5000, "{backend} read by {reader}");
        }
        dumps.push(stdout(&fswal(&[
            "dump",
            "--backend",
            backend,
            "--from",
            "4990",
            p(&dir),
        ])));
    }
    assert!(
        dumps.windows(2).all(|w| w[0] == w[1]),
        "dumps differ across backends"
    );
    assert_eq!(dumps[0].lines().count(), 11);
}

#[test]
fn a_device_image_holds_a_wal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("device.img");
    fs::File::create(&image)
        .and_then(|f| f.set_len(32 << 20))
        .expect("image");
    let out = fswal(&[
        "record",
        "--device",
        p(&image),
        "--events",
        "5000",
        "--blocks-per-segment",
        "16",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("formatted"), "{}", stderr(&out));
    let v = json(&fswal(&["verify", "--json", "--device", p(&image)]));
    assert_eq!(
        (v["status"].as_str(), v["events"].as_u64()),
        (Some("ok"), Some(5000))
    );
    let csv = stdout(&fswal(&[
        "dump",
        "--format",
        "csv",
        "--from",
        "5000",
        "--device",
        p(&image),
    ]));
    assert_eq!(
        csv.lines().nth(1),
        Some("5000,6000,35000,1,2,5000,NEW_ORDER,LIMIT,ASK")
    );

    // Damage is named by device and offset.
    let at = (1u64 << 20) + 64 + 2 * BLOCK + 100; // segment 0, block 2
    patch(&image, at, &[0xee]);
    let out = fswal(&["verify", "--device", p(&image)]);
    assert_eq!(code(&out), 1);
    let first = stdout(&out).lines().next().unwrap_or_default().to_string();
    assert!(
        first.starts_with(&format!(
            "{}: offset {} (segment 0",
            p(&image),
            (1u64 << 20) + 64 + 2 * BLOCK
        )),
        "{first}"
    );

    // Something that is not an fswal device is never formatted over.
    let other = tmp.path().join("other.img");
    fs::write(&other, b"some file system's superblock".repeat(2000)).expect("write");
    let before = fs::read(&other).expect("read");
    let out = fswal(&["record", "--device", p(&other), "--events", "1"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no fswal superblock"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&other).expect("read"), before);
    assert_eq!(code(&fswal(&["verify", "--device", p(&other)])), 2);
}

#[test]
fn compressed_segments_are_read_transparently() {
    let (_tmp, dir, _) = recorded_with(10_000, &["--compress"]);
    let lz4 = dir.join("FS.00000001.wal.lz4");
    assert!(lz4.exists() && !dir.join("FS.00000001.wal").exists());
    let v = json(&fswal(&["verify", "--json", p(&dir)]));
    assert_eq!(
        (v["status"].as_str(), v["events"].as_u64()),
        (Some("ok"), Some(10_000))
    );
    assert_eq!(stdout(&fswal(&["dump", p(&dir)])).lines().count(), 10_000);
    let one = json(&fswal(&["verify", "--json", p(&lz4)]));
    assert_eq!(
        (one["status"].as_str(), one["first_event_id"].as_u64()),
        (Some("ok"), Some(4097))
    );
}

#[test]
fn retention_keeps_the_newest_segments() {
    let (_tmp, dir, _) = recorded_with(20_000, &["--retain-segments", "2"]);
    let segments = fs::read_dir(&dir)
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        })
        .count();
    assert_eq!(segments, 2);
    let v = json(&fswal(&["verify", "--json", p(&dir)]));
    assert_eq!(v["status"], "ok");
    assert_eq!(v["first_event_id"], 3 * 4096 + 1);
    assert_eq!(v["last_event_id"], 20_000);
}

#[test]
fn crashsim_reports_a_clean_run_as_json() {
    let out = fswal(&[
        "crashsim", "--json", "--seed", "5", "--events", "200", "--sector", "4096",
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let last = text.lines().last().expect("a last line");
    let v: Value = serde_json::from_str(last).expect("JSON on the last line");
    for field in [
        "acknowledged_lost",
        "phantom_events",
        "truncation_mismatches",
        "panics",
    ] {
        assert_eq!(v[field], 0, "{field}: {v}");
    }
    assert!(
        v["crash_points"].as_u64().expect("crash_points") > 20,
        "{v}"
    );
    assert!(
        v["images"].as_u64().expect("images") > v["crash_points"].as_u64().expect("points"),
        "{v}"
    );
    assert_eq!(code(&fswal(&["crashsim", "--sector", "1000"])), 2);
}

#[test]
fn a_short_bench_reports_every_figure_against_its_floor_and_cleans_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = fswal(&[
        "bench",
        "--json",
        "--dir",
        p(tmp.path()),
        "--events",
        "20000",
        "--trials",
        "1",
        "--rate",
        "200000",
        "--latency-events",
        "20000",
        "--backends",
        "file",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    let positive = |x: &Value, what: &str| {
        let f = x
            .as_f64()
            .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
        assert!(f.is_finite() && f > 0.0, "{what} = {f}");
    };
    for floor in ["hash_all_cores_s", "hash_one_core_s", "write_s"] {
        positive(&v["floors"][floor], floor);
    }
    positive(&v["record"]["ratio"], "record ratio");
    assert_eq!(v["record"]["trials_s"].as_array().map(Vec::len), Some(1));
    let verify = v["verify"].as_array().expect("verify figures");
    assert_eq!(verify.len(), 4);
    for figure in verify {
        positive(&figure["ratio"], "verify ratio");
    }
    for figure in v["replay"].as_array().expect("replay figures") {
        positive(&figure["ns_per_event"], "replay ns/event");
    }
    let hot = v["hot_path"].as_array().expect("hot path figures");
    assert_eq!(hot.len(), 1);
    assert_eq!(hot[0]["backend"], "file");
    assert_eq!(hot[0]["paced"]["events"], 20_000);
    positive(&hot[0]["paced"]["append"]["p99_9_ns"], "p99.9");
    positive(&hot[0]["sustained_events_per_s"], "sustained rate");
    // The benchmark's WALs and floor files are gone; the directory it was given stays.
    let left: Vec<_> = fs::read_dir(tmp.path()).expect("list").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(code(&fswal(&["bench", "--trials", "0"])), 2);
}
