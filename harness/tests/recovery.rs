//! Guards what `fswal record` does and says when it recovers a log a crash or an
//! operator left behind (issue 9): a torn tail with and without its watermark records,
//! a truncated open segment, thousands of unsynced blocks, old torn-tail copies, lost
//! durable data and replaced history; every refusal names the file and offset and what
//! to do, and changes nothing.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use fswal_backends::dir::DirStore;
use fswal_core::limits::block_offset_bytes;
use fswal_core::reference::reference_event;
use fswal_core::{WalWriter, WriterConfig};

/// Every file under `dir` and its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let path = e.expect("entry").path();
            let bytes = fs::read(&path).unwrap_or_default();
            (path, bytes)
        })
        .collect()
}

/// `fswal verify --json` of `dir`: the exit code and the report.
fn verify(dir: &Path) -> (i32, serde_json::Value) {
    let out = fswal(&["verify", "--json", p(dir)]);
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    (
        out.status.code().expect("code"),
        serde_json::from_str(&line).expect("json"),
    )
}

/// A WAL in `dir` with `blocks`-block segments holding events 1..=`synced` synced, then
/// `1..=unsynced` more appended, and the writer dropped: what a crash leaves.
fn crashed_log(dir: &Path, blocks: u32, synced: u64, unsynced: u64) {
    let store = DirStore::open_for_append(dir).expect("open");
    let (mut w, _) =
        WalWriter::open(store, || 1u64, WriterConfig::with_blocks(blocks)).expect("open");
    for i in 1..=synced {
        w.append(&reference_event(i)).expect("append");
    }
    w.sync().expect("sync");
    for i in synced + 1..=synced + unsynced {
        w.append(&reference_event(i)).expect("append");
    }
    drop(w);
}

fn resume(dir: &Path, blocks: &str) -> Output {
    fswal(&[
        "record",
        "--dir",
        p(dir),
        "--resume",
        "--events",
        "10",
        "--blocks-per-segment",
        blocks,
    ])
}

#[test]
fn a_torn_tail_past_the_watermark_is_set_aside_with_an_ordinary_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    // Blocks 0..=9 synced; block 10 (events 2561..=2816) written, not synced: torn.
    crashed_log(&dir, 16, 2560, 300);
    let seg = dir.join("FS.00000000.wal");
    flip(&seg, block_offset_bytes(10) + 64 + 500);
    let out = resume(&dir, "16");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("recovered: sealed") && err.contains("FS.00000000.wal at block 10"),
        "{err}"
    );
    assert!(err.contains("block slots 10..=10 (1 non-blank, 16448 bytes; their block headers claim events 2561..=2816)"), "{err}");
    assert!(
        err.contains("never acknowledged (past the durable watermark, event 2560)"),
        "{err}"
    );
    assert!(!err.contains("WARNING"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let (code, report) = verify(&dir);
    assert_eq!(code, 0);
    assert_eq!(report["last_event_id"], 2570);
    assert!(
        files(&dir)
            .keys()
            .all(|f| !f.to_string_lossy().contains(".torn-")),
        "no side files"
    );
}

#[test]
fn without_watermark_records_recovery_says_durable_data_may_have_been_discarded() {
    // Issue 9, defect 9: the refusal names both watermark records, and when recovery
    // accepts a loss because they were deleted, it says so plainly, naming the slots and
    // the ids their headers claim.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    crashed_log(&dir, 16, 2560, 0);
    // Block 9 (events 2305..=2560) was synced: acknowledged, and now damaged.
    flip(
        &dir.join("FS.00000000.wal"),
        block_offset_bytes(9) + 64 + 500,
    );
    let before = files(&dir);
    let out = resume(&dir, "16");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("FS.00000000.wal: offset 148096 (block 9)"),
        "{err}"
    );
    assert!(
        err.contains("events up to 2560 were made durable, but the log ends at event 2304"),
        "{err}"
    );
    let meta = dir.join("fswal.meta");
    let mark = dir.join("fswal.mark");
    assert!(
        err.contains(&format!(
            "deleting both {} and {} accepts the loss",
            meta.display(),
            mark.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("fswal salvage {} NEW_DIR", dir.display())),
        "{err}"
    );
    assert_eq!(files(&dir), before, "nothing changed");
    // The operator accepts the loss.
    fs::remove_file(&meta).expect("rm meta");
    fs::remove_file(&mark).expect("rm mark");
    let out = resume(&dir, "16");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("fswal: WARNING: recovered without a durable watermark"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{} and {} are missing",
            meta.display(),
            mark.display()
        )),
        "{err}"
    );
    assert!(err.contains("block slots 9..=9"), "{err}");
    assert!(
        err.contains("their block headers claim events 2305..=2560"),
        "{err}"
    );
    assert!(
        err.contains("data a sync may have made durable was DISCARDED from the log"),
        "{err}"
    );
    assert!(!err.contains("cleared a torn tail"), "{err}");
    let (code, report) = verify(&dir);
    assert_eq!((code, report["last_event_id"].as_u64()), (0, Some(2314)));
    // The discarded slots are still there, listed.
    let out = fswal(&["preserved", "--json", p(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("set-aside"));
}

#[test]
fn a_hole_without_watermark_records_is_refused_and_salvage_is_the_way_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    crashed_log(&dir, 16, 2560, 300);
    flip(
        &dir.join("FS.00000000.wal"),
        block_offset_bytes(9) + 64 + 500,
    );
    fs::remove_file(dir.join("fswal.meta")).expect("rm meta");
    fs::remove_file(dir.join("fswal.mark")).expect("rm mark");
    // Valid block 10 after the damaged block 9, and nothing proves it unacknowledged.
    let before = files(&dir);
    let out = resume(&dir, "16");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("FS.00000000.wal: offset 148096 (block 9)"),
        "{err}"
    );
    assert!(
        err.contains("the log is corrupt there, refusing to append (nothing was changed)"),
        "{err}"
    );
    assert!(err.contains("fswal salvage"), "{err}");
    assert_eq!(files(&dir), before, "nothing changed");
    let saved = tmp.path().join("saved");
    let out = fswal(&["salvage", p(&dir), p(&saved)]);
    assert_eq!(out.status.code(), Some(1), "gaps: {}", stderr(&out));
    let (code, report) = verify(&saved);
    assert_eq!((code, report["events"].as_u64()), (0, Some(2304 + 256)));
}

#[test]
fn a_truncated_open_segment_is_sealed_where_its_blocks_end_and_the_log_goes_on() {
    // Issue 9, defect 5: `truncate -s 216064 FS.00000001.wal; fswal record --resume`
    // modified the segment, then refused forever naming no file.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    crashed_log(&dir, 16, 4096 + 2000, 900);
    let seg = dir.join("FS.00000001.wal");
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open")
        .set_len(216_064)
        .expect("truncate");
    let out = resume(&dir, "16");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("FS.00000001.wal is shorter than a segment (13 block slots: truncated?)"),
        "{err}"
    );
    let (code, report) = verify(&dir);
    assert_eq!(code, 0, "{report}");
    // Segment 1 held events 4097..=6096 synced (blocks 0..=7, the last partial), then
    // 6097..=6864 written (blocks 8..=10); the cut leaves 13 whole slots and a piece of
    // an empty one, and the log goes on in segment 2.
    assert_eq!(report["last_event_id"], 6864 + 10);
    assert_eq!(report["segments"], 3);
}

#[test]
fn thousands_of_unsynced_blocks_and_a_thousand_old_copies_do_not_stop_recovery() {
    // Issue 9, defect 4: one power cut with a whole unsynced 64 MiB segment left 4090
    // side files; after 1000 copies of one torn offset, recovery refused.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    crashed_log(&dir, 4096, 1000, 256 * 4000);
    let seg = dir.join("FS.00000000.wal");
    // The crash lost the first unsynced block and kept 3 999 after it.
    let mut bytes = fs::read(&seg).expect("read");
    let at = usize::try_from(block_offset_bytes(4)).expect("fits");
    bytes[at..at + 16_448].fill(0);
    fs::write(&seg, bytes).expect("write");
    // Copies an earlier version made of that offset, over a thousand of them.
    let base = format!("{}.torn-{:012}", seg.display(), block_offset_bytes(4));
    fs::write(&base, b"old").expect("copy");
    for k in 1..=1000 {
        fs::write(format!("{base}.{k}"), b"old").expect("copy");
    }
    let out = resume(&dir, "4096");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("block slots 5..=4003 (3999 non-blank"),
        "{err}"
    );
    let torn = files(&dir)
        .keys()
        .filter(|f| f.to_string_lossy().contains(".torn-"))
        .count();
    assert_eq!(torn, 1001, "no new side file, the old ones untouched");
    let (code, report) = verify(&dir);
    assert_eq!((code, report["last_event_id"].as_u64()), (0, Some(1010)));
}

#[test]
fn replaced_history_is_refused_naming_the_file_and_offset() {
    // Issue 9, defect 8: segments replaced by another writer's, ids still climbing.
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    for (dir, start, events) in [(&a, "1", "10000"), (&b, "1", "8192"), (&b, "9001", "5000")] {
        let out = fswal(&[
            "record",
            "--dir",
            p(dir),
            "--start-id",
            start,
            "--events",
            events,
            "--blocks-per-segment",
            "16",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    for i in [2, 3] {
        let name = format!("FS.0000000{i}.wal");
        fs::copy(b.join(&name), a.join(&name)).expect("copy");
    }
    let (code, report) = verify(&a);
    assert_eq!(code, 1);
    assert_eq!(report["status"], "corrupt");
    let before = files(&a);
    let out = resume(&a, "16");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("FS.00000002.wal: offset 115200 (block 7)"),
        "{err}"
    );
    assert!(err.contains("acknowledged history was replaced"), "{err}");
    assert!(
        err.contains("fswal.meta") && err.contains("fswal.mark"),
        "{err}"
    );
    assert_eq!(files(&a), before, "nothing changed");
}
