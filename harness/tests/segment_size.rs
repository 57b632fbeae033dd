//! Guards the segment size `record` uses: `--resume` keeps the size of the log's
//! segments unless `--blocks-per-segment` says otherwise, and a new log whose segments
//! preallocate far more than it records gets one warning line saying how much.

mod common;

use common::*;

use std::fs;
use std::path::Path;

/// Bytes of a segment file with `blocks` block slots.
fn segment_bytes(blocks: u64) -> u64 {
    HEADER + blocks * BLOCK
}

/// The length of every `FS.*` file of `dir` (segments, and the one prepared ahead),
/// by name.
fn segment_lengths(dir: &Path) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().expect("stat").len())
        })
        .filter(|(name, _)| name.starts_with("FS."))
        .collect();
    all.sort();
    all
}

/// Runs `fswal record --dir dir` with `args`, which must succeed; returns stderr.
fn record(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["record", "--dir", p(dir)];
    all.extend_from_slice(args);
    let out = fswal(&all);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    stderr(&out)
}

/// Asserts that strict verification of `dir` gives events `1..=last`.
fn assert_verifies(dir: &Path, last: u64) {
    let out = fswal(&["verify", "--json", p(dir)]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let v = last_json(&out);
    assert_eq!(
        (v["events"].as_u64(), v["last_event_id"].as_u64()),
        (Some(last), Some(last)),
        "{v}"
    );
}

#[test]
fn resume_keeps_the_size_of_the_logs_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    // 5000 events: segment 0 full (16 blocks), segment 1 sealed with 4 blocks.
    record(&dir, &["--events", "5000", "--blocks-per-segment", "16"]);
    record(&dir, &["--resume", "--events", "5000"]);
    let lengths = segment_lengths(&dir);
    // Segments 2 and 3 are new; the last file is the one prepared ahead of segment 4.
    let names: Vec<&str> = lengths.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "FS.00000000.wal",
            "FS.00000001.wal",
            "FS.00000002.wal",
            "FS.00000003.wal",
            "FS.00000004.wal.prep"
        ]
    );
    for (name, len) in &lengths {
        assert_eq!(*len, segment_bytes(16), "{name}");
    }
    assert_verifies(&dir, 10_000);
}

#[test]
fn an_explicit_segment_size_wins_over_the_logs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    record(&dir, &["--events", "100", "--blocks-per-segment", "16"]);
    record(
        &dir,
        &["--resume", "--events", "5000", "--blocks-per-segment", "32"],
    );
    let lengths = segment_lengths(&dir);
    assert_eq!(
        lengths.first(),
        Some(&("FS.00000000.wal".to_owned(), segment_bytes(16)))
    );
    assert!(lengths.len() >= 2, "{lengths:?}");
    for (name, len) in &lengths[1..] {
        assert_eq!(*len, segment_bytes(32), "{name}");
    }
    assert_verifies(&dir, 5100);
}

#[test]
fn a_new_log_of_large_segments_for_few_events_says_what_it_allocates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 8192 blocks: 128.5 MiB per segment, two files (the one prepared ahead) over the
    // 256 MiB threshold; 10 events fill a fraction of one block.
    let large = tmp.path().join("large");
    let err = record(&large, &["--events", "10", "--blocks-per-segment", "8192"]);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("128.5 MiB per segment file") && warnings[0].contains("257.0 MiB"),
        "{err}"
    );
    // Continuing that log allocates nothing new for the warning to be about.
    let err = record(&large, &["--resume", "--events", "10"]);
    assert!(!err.contains("warning"), "{err}");
    fs::remove_dir_all(&large).expect("remove the large log");

    // Normal sizes, and a large size filled by what is recorded, say nothing.
    for (name, args) in [
        ("default", &["--events", "10"][..]),
        (
            "small",
            &["--events", "10", "--blocks-per-segment", "16"][..],
        ),
        (
            "none",
            &["--events", "0", "--blocks-per-segment", "8192"][..],
        ),
    ] {
        let dir = tmp.path().join(name);
        let err = record(&dir, args);
        assert!(!err.contains("warning"), "{name}: {err}");
    }
}
