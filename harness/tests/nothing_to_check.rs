//! Guards what the command line says when there is nothing to look at: `record
//! --events 0` on a new directory leaves a log `verify` accepts as empty, and `demo`
//! never reports a check as held when the run gave it nothing to check.

mod common;

use common::*;

#[test]
fn record_of_no_events_leaves_an_empty_log_that_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let out = fswal(&["record", "--dir", p(&dir), "--events", "0"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let out = fswal(&["verify", p(&dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "ok: 0 segments, 0 blocks, 0 events");
    let out = fswal(&["verify", "--json", "--mode", "diagnostic", p(&dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = last_json(&out);
    assert_eq!(
        (
            v["status"].as_str(),
            v["events"].as_u64(),
            v["segments"].as_u64()
        ),
        (Some("ok"), Some(0), Some(0)),
        "{v}"
    );
    let out = fswal(&["dump", p(&dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // And it goes on like any log.
    let out = fswal(&["record", "--dir", p(&dir), "--resume", "--events", "5"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("ids 1..=5"), "{}", stdout(&out));
}

#[test]
fn a_log_whose_segments_are_all_gone_is_still_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A checkpoint recording durable events, with every segment gone: not an empty log.
    let dir = tmp.path().join("wal");
    record_small(&dir, 300);
    std::fs::remove_file(dir.join("FS.00000000.wal")).expect("remove the segment");
    let out = fswal(&["verify", p(&dir)]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not a WAL") && err.lines().count() == 1,
        "{err}"
    );
}

/// The lines of `fswal demo --events n` that report a check.
fn demo_checks(n: u64) -> (Vec<String>, String) {
    let events = n.to_string();
    let out = fswal(&["demo", "--events", &events]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    let checks = text
        .lines()
        .filter(|l| l.trim_start().starts_with('['))
        .map(str::to_owned)
        .collect();
    (checks, text)
}

#[test]
fn demo_reports_checks_with_nothing_to_check_as_skipped() {
    // 100 events: no sync before the crash (the demo syncs every 4096 events) and no
    // block written, so nothing was acknowledged and nothing could be torn.
    let (checks, text) = demo_checks(100);
    let held = |what: &str| {
        checks
            .iter()
            .any(|l| l.contains("[ok]") && l.contains(what))
    };
    let skipped = |what: &str| {
        checks
            .iter()
            .any(|l| l.contains("[skipped]") && l.contains(what))
    };
    assert!(!held("no acknowledged event lost"), "{text}");
    assert!(skipped("no acknowledged event lost"), "{text}");
    assert!(!held("torn tail"), "{text}");
    assert!(skipped("torn tail"), "{text}");
    assert!(held("replay gives ids 1..=100"), "{text}");
    assert!(text.contains("had nothing to check"), "{text}");

    // 5000 events: a sync at 4096, and an unsynced block after it to tear.
    let (checks, text) = demo_checks(5000);
    assert!(
        checks.iter().all(|l| l.contains("[ok]")) && checks.len() == 3,
        "{text}"
    );
    assert!(text.lines().any(|l| l == "demo passed"), "{text}");
}
