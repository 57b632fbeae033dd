//! Guards the counts diagnostic verification reports: `skipped_blocks` counts every
//! non-empty block slot whose events were not replayed, the damaged block included.

mod common;

use common::*;

#[test]
fn a_corrupted_block_counts_as_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    record_small(&dir, 10000);
    let segment = dir.join("FS.00000000.wal");
    // Inside the first event of block 5.
    flip(&segment, HEADER + 5 * BLOCK + 64 + 100);

    for target in [&dir, &segment] {
        let out = fswal(&["verify", "--json", "--mode", "diagnostic", p(target)]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let v = last_json(&out);
        assert_eq!(v["status"], "corrupt", "{v}");
        assert_eq!(v["skipped_blocks"], 1, "{}: {v}", p(target));
        assert_eq!(v["issues_total"], 1, "{v}");
        assert_eq!(v["issues"][0]["block"], 5, "{v}");
        let out = fswal(&["verify", "--mode", "diagnostic", p(target)]);
        assert!(
            stdout(&out).contains(", 1 blocks skipped"),
            "{}",
            stdout(&out)
        );
    }
    let out = fswal(&["verify", "--json", "--mode", "diagnostic", p(&dir)]);
    assert_eq!(last_json(&out)["events"], 10_000 - 256);

    // Strict mode stops at the block and skips nothing.
    let out = fswal(&["verify", "--json", p(&dir)]);
    assert_eq!(code(&out), 1);
    assert_eq!(last_json(&out)["skipped_blocks"], 0);
}
