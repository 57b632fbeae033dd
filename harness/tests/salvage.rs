//! Guards `fswal salvage`: every event diagnostic replay salvages from a damaged WAL
//! lands, in order and byte for byte, in a new WAL that verifies strictly; every gap is
//! reported where it starts with the ids that bound what was lost; the exit codes; the
//! source is never modified; a destination that is not new, empty and outside the
//! source is refused with nothing written; and a salvage killed part way leaves the
//! destination as it was (absent or empty), its leftover removed by the next one only
//! when it is salvage's own, and a mount point refused up front.

mod common;

use common::*;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use fswal_backends::dir::DirStore;
use fswal_backends::testing::say;

use serde_json::Value;

/// A WAL of `events` reference events, 16 blocks per segment, at `tmp/a`.
fn recorded(tmp: &Path, events: u64) -> PathBuf {
    let dir = tmp.join("a");
    record_small(&dir, events);
    dir
}

/// Event `i` of the reference stream as `fswal dump` prints it, written out from
/// docs/FORMAT.md's definition rather than taken from the code under test.
fn expected_line(i: u64) -> String {
    let kind = [
        "NEW_ORDER",
        "MODIFY_ORDER_PRICE",
        "MODIFY_ORDER_QUANTITY",
        "CANCEL_ORDER",
    ][usize::try_from(i % 4).expect("small")];
    let order = if i % 3 == 0 { "MARKET" } else { "LIMIT" };
    let side = if i % 2 == 1 { "BID" } else { "ASK" };
    format!(
        r#"{{"event_id":{i},"timestamp":{},"price":{},"quantity":{},"user_id":{},"order_id":{i},"type":"{kind}","order_type":"{order}","side":"{side}"}}"#,
        1000 + i,
        7 * i,
        i % 100 + 1,
        i % 17
    )
}

/// What `fswal dump` prints for the reference events `ids`.
fn expected_dump(ids: impl Iterator<Item = u64>) -> String {
    ids.map(|i| expected_line(i) + "\n").collect()
}

/// Runs `fswal salvage --json src dst` and checks what holds for every salvage that
/// wrote something: the exit code, one JSON object, a destination that verifies
/// strictly with the events reported, and a source left as it was.
fn salvage(src: &Path, dst: &Path, want_code: i32) -> Value {
    let before = hashes(src);
    let out = fswal(&["salvage", "--json", p(src), p(dst)]);
    assert_eq!(code(&out), want_code, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    let v = last_json(&out);
    assert_unchanged(src, &before, "salvage");
    assert_eq!(v["source"], p(src));
    assert_eq!(v["destination"], p(dst));
    assert_eq!(v["destination_verified"], true);
    let check = fswal(&["verify", "--json", p(dst)]);
    assert_eq!(code(&check), 0, "{}", stdout(&check));
    let checked = last_json(&check);
    assert_eq!(checked["status"], "ok");
    assert_eq!(checked["open_segment"], false);
    for key in ["events", "first_event_id", "last_event_id"] {
        assert_eq!(checked[key], v[key], "{key}");
    }
    assert_eq!(checked["segments"], v["segments_written"]);
    v
}

/// A gap of a report as (segment, slot, offset, lost after, lost before).
type GapRow = (u64, Option<u64>, u64, Option<u64>, Option<u64>);

/// The gaps of a report.
fn gaps(v: &Value) -> Vec<GapRow> {
    v["gaps"]
        .as_array()
        .expect("gaps")
        .iter()
        .map(|g| {
            (
                g["segment"].as_u64().expect("segment"),
                g["slot"].as_u64(),
                g["offset"].as_u64().expect("offset"),
                g["lost_after_event_id"].as_u64(),
                g["lost_before_event_id"].as_u64(),
            )
        })
        .collect()
}

fn dump(dir: &Path) -> (i32, String) {
    let out = fswal(&["dump", p(dir)]);
    (code(&out), stdout(&out))
}

#[test]
fn damage_in_the_middle_is_one_gap_and_everything_else_is_salvaged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 10_000);
    let seg1 = a.join("FS.00000001.wal");
    // Inside an event of segment 1, block 5 (ids 5377..=5632).
    flip(&seg1, HEADER + 5 * BLOCK + 164);
    let b = tmp.path().join("b");
    let v = salvage(&a, &b, 1);
    assert_eq!(v["status"], "corrupt");
    assert_eq!(v["events"], 10_000 - 256);
    assert_eq!(
        (v["first_event_id"].as_u64(), v["last_event_id"].as_u64()),
        (Some(1), Some(10_000))
    );
    assert_eq!(v["segments_written"], 3);
    assert_eq!(
        gaps(&v),
        [(1, Some(5), HEADER + 5 * BLOCK, Some(5376), Some(5633))]
    );
    assert_eq!(v["gaps_total"], 1);
    let gap = &v["gaps"][0];
    assert_eq!(gap["file"], p(&seg1));
    assert_eq!(gap["issues"], 1);
    assert!(
        gap["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{gap}"
    );

    // Every field of every event: the reference stream without the lost block.
    let (dumped, text) = dump(&b);
    assert_eq!(dumped, 0);
    assert_eq!(
        text,
        expected_dump((1..=10_000).filter(|i| !(5377..=5632).contains(i)))
    );
    // And the same bytes as the source's valid prefix, as strict replay reads it.
    let (prefix_code, prefix) = dump(&a);
    assert_eq!(prefix_code, 1);
    assert_eq!(prefix.lines().count(), 5376);
    assert!(text.starts_with(&prefix));

    // The text report: one summary line, the gap named by file and offset.
    let c = tmp.path().join("c");
    let out = fswal(&["salvage", p(&a), p(&c)]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "salvaged 9744 events (ids 1..=10000) from {} into {} in 3 segments; 1 gap:",
                p(&a),
                p(&c)
            )
            .as_str()
        )
    );
    let gap_line = lines.next().unwrap_or_default();
    assert!(
        gap_line.starts_with(&format!(
            "  {}: offset {} (block 5): ",
            p(&seg1),
            HEADER + 5 * BLOCK
        )),
        "{gap_line}"
    );
    assert!(
        gap_line.ends_with("lost ids 5377..=5632 (up to 256 events)"),
        "{gap_line}"
    );
}

#[test]
fn a_missing_middle_segment_is_one_gap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 10_000);
    fs::remove_file(a.join("FS.00000001.wal")).expect("remove");
    let b = tmp.path().join("b");
    let v = salvage(&a, &b, 1);
    assert_eq!(v["status"], "corrupt");
    assert_eq!(gaps(&v), [(1, None, 0, Some(4096), Some(8193))]);
    assert_eq!(v["gaps"][0]["file"], p(&a.join("FS.00000001.wal")));
    assert_eq!(v["events"], 10_000 - 4096);
    assert_eq!(
        dump(&b),
        (0, expected_dump((1..=4096).chain(8193..=10_000)))
    );
}

#[test]
fn a_damaged_segment_header_in_the_middle_is_a_gap_that_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 10_000);
    // The header's event_count: the header checksum fails, its blocks still verify.
    flip(&a.join("FS.00000001.wal"), 12);
    let b = tmp.path().join("b");
    let v = salvage(&a, &b, 1);
    assert_eq!(v["status"], "corrupt");
    assert_eq!(gaps(&v), [(1, None, 0, Some(4096), Some(4097))]);
    assert_eq!(v["events"], 10_000);
    assert_eq!(dump(&b), (0, expected_dump(1..=10_000)));
}

#[test]
fn a_torn_tail_is_a_gap_with_nothing_valid_after_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 10_000);
    // Segment 2 (ids 8193..=10000) cut inside block 3: blocks 0..=2 remain.
    let seg2 = a.join("FS.00000002.wal");
    let len = HEADER + 3 * BLOCK + 1000;
    fs::OpenOptions::new()
        .write(true)
        .open(&seg2)
        .and_then(|f| f.set_len(len))
        .expect("truncate");
    let b = tmp.path().join("b");
    let v = salvage(&a, &b, 1);
    assert_eq!(v["status"], "truncated");
    assert_eq!(gaps(&v), [(2, Some(3), len, Some(8960), None)]);
    assert_eq!(v["events"], 8960);
    assert_eq!(dump(&b), (0, expected_dump(1..=8960)));
}

#[test]
fn a_clean_log_is_copied_exactly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 10_000);
    let b = tmp.path().join("b");
    let v = salvage(&a, &b, 0);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["events"], 10_000);
    assert_eq!(v["gaps"], Value::Array(vec![]));
    assert_eq!(v["gaps_total"], 0);
    // The segment size follows the source's: 16 blocks, so 3 segments.
    assert_eq!(v["segments_written"], 3);
    let (a_code, a_text) = dump(&a);
    assert_eq!((a_code, a_text.lines().count()), (0, 10_000));
    assert_eq!(dump(&b), (0, a_text));
    // With the same segment size and full blocks, the blocks are the source's byte for
    // byte; only the segment headers (timestamps, checksum) differ.
    for i in 0..3 {
        let name = format!("FS.{i:08}.wal");
        let (src, dst) = (
            fs::read(a.join(&name)).expect("read"),
            fs::read(b.join(&name)).expect("read"),
        );
        assert_eq!(src.len(), dst.len(), "{name}");
        assert!(src[64..] == dst[64..], "{name}: blocks differ");
    }

    // Another segment size is honoured and still holds the same events.
    let c = tmp.path().join("c");
    let out = fswal(&[
        "salvage",
        "--json",
        "--blocks-per-segment",
        "32",
        p(&a),
        p(&c),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(last_json(&out)["segments_written"], 2);
    assert_eq!(dump(&c), dump(&a));
    assert_eq!(
        fs::metadata(c.join("FS.00000000.wal")).expect("stat").len(),
        HEADER + 32 * BLOCK
    );
}

#[test]
fn the_cpp_reference_vector_salvages_whole() {
    let Some(vectors) = vectors_dir("flashstrike-ref-3seg") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = tmp.path().join("b");
    let v = salvage(&vectors, &b, 0);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["events"], 10_000);
    assert_eq!(v["gaps_total"], 0);
    assert_eq!(dump(&b), (0, expected_dump(1..=10_000)));
}

#[test]
fn a_raw_device_is_salvaged_and_its_gaps_named_by_device() {
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
    // Segment 0 (in the slot at 1 MiB), block 2: ids 513..=768.
    flip(&image, (1 << 20) + HEADER + 2 * BLOCK + 100);
    let before = fs::read(&image).expect("read");
    let b = tmp.path().join("b");
    let out = fswal(&["salvage", "--json", "--device", p(&image), p(&b)]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(
        fs::read(&image).expect("read"),
        before,
        "the device changed"
    );
    let v = last_json(&out);
    assert_eq!(v["source"], p(&image));
    assert_eq!(
        gaps(&v),
        [(0, Some(2), HEADER + 2 * BLOCK, Some(512), Some(769))]
    );
    assert_eq!(v["gaps"][0]["file"], p(&image));
    assert_eq!(dump(&b), (0, expected_dump((1..=512).chain(769..=5000))));
}

#[test]
fn a_destination_that_is_not_new_or_empty_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 1000);
    let src_before = hashes(&a);

    let full = tmp.path().join("full");
    fs::create_dir(&full).expect("mkdir");
    fs::write(full.join("notes.txt"), b"keep me").expect("write");
    let other_log = recorded(&tmp.path().join("other"), 300);
    let file = tmp.path().join("a-file");
    fs::write(&file, b"not a directory").expect("write");
    for dst in [&full, &other_log, &file] {
        let before = dst.is_dir().then(|| hashes(dst));
        let out = fswal(&["salvage", p(&a), p(dst)]);
        assert_eq!(code(&out), 2, "{}", p(dst));
        assert_eq!(stdout(&out), "");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("fswal: {}: ", p(dst))), "{err}");
        match &before {
            Some(before) => assert_unchanged(dst, before, "a refused salvage"),
            None => assert_eq!(fs::read(dst).expect("read"), b"not a directory"),
        }
    }
    // An empty directory is fine.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    assert_eq!(salvage(&a, &empty, 0)["events"], 1000);
    assert_unchanged(&a, &src_before, "salvage");
}

#[test]
fn a_destination_inside_the_source_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 1000);
    let before = hashes(&a);
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&a, &link).expect("symlink");
    let inside = [
        a.clone(),
        a.join("b"),
        a.join("deeper/b"),
        a.join("./b"),
        link.join("b"),
    ];
    for dst in &inside {
        let out = fswal(&["salvage", p(&a), p(dst)]);
        assert_eq!(code(&out), 2, "{}", p(dst));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("inside"), "{err}");
        assert_unchanged(&a, &before, "a refused salvage");
    }
    // A path that climbs out of what does not exist yet is refused too, unread.
    let climbing = tmp.path().join("new/../b");
    let out = fswal(&["salvage", p(&a), p(&climbing)]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains(".."), "{}", stderr(&out));
    assert!(!tmp.path().join("new").exists());
    assert!(!tmp.path().join("b").exists());
}

#[test]
fn nothing_to_salvage_is_refused_and_creates_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // One block of 100 events, its only block damaged.
    let a = recorded(tmp.path(), 100);
    flip(&a.join("FS.00000000.wal"), HEADER + 64 + 100);
    let before = hashes(&a);
    let b = tmp.path().join("b");
    let out = fswal(&["salvage", "--json", p(&a), p(&b)]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nothing to salvage"), "{err}");
    // With --json, the error is also the one object on stdout.
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    let json = last_json(&out);
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("nothing to salvage")),
        "{json}"
    );
    assert!(!b.exists(), "{} was created", p(&b));
    assert!(!building(&b).exists(), "a temporary log was left");
    assert_unchanged(&a, &before, "salvage");
}

/// The directory a salvage to `dst` builds its log in.
fn building(dst: &Path) -> PathBuf {
    let name = dst.file_name().expect("name").to_str().expect("utf-8");
    dst.with_file_name(format!(".{name}.salvage-tmp"))
}

/// Whether `dir` is a directory with nothing in it.
fn is_empty_dir(dir: &Path) -> bool {
    dir.is_dir() && fs::read_dir(dir).expect("list").next().is_none()
}

#[test]
fn a_salvage_killed_part_way_leaves_dst_as_it_was_and_a_rerun_succeeds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Large enough (245 segments of 16 blocks) that salvage is seconds from done when
    // its second segment appears.
    let a = recorded(tmp.path(), 1_000_000);
    for dst_exists in [false, true] {
        let b = tmp.path().join(if dst_exists { "empty" } else { "new" });
        if dst_exists {
            fs::create_dir(&b).expect("mkdir");
        }
        let partial = building(&b);
        let mut child = Command::new(FSWAL)
            .args(["salvage", p(&a), p(&b)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fswal salvage");
        // Killed once its log holds a sealed segment and the next: part way.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !partial.join("FS.00000001.wal").exists() {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("salvage ended ({status}) before it could be killed");
            }
            assert!(Instant::now() < deadline, "salvage made no progress");
            sleep(Duration::from_millis(1));
        }
        child.kill().expect("kill");
        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(9), "salvage finished before the kill");
        if dst_exists {
            assert!(is_empty_dir(&b), "{} is not empty after the kill", p(&b));
        } else {
            assert!(!b.exists(), "{} exists after the kill", p(&b));
        }
        assert!(
            partial.is_dir(),
            "nothing was being built in {}",
            p(&partial)
        );
        let check = fswal(&["verify", p(&b)]);
        assert_ne!(
            code(&check),
            0,
            "verify calls the killed salvage's DST valid"
        );

        // The next salvage to the same DST removes the leftover and succeeds.
        let out = fswal(&["salvage", "--json", p(&a), p(&b)]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("removed {}", p(&partial))),
            "{}",
            stderr(&out)
        );
        assert_eq!(last_json(&out)["events"], 1_000_000);
        assert!(!partial.exists(), "{} is left", p(&partial));
        let check = fswal(&["verify", "--json", p(&b)]);
        assert_eq!(code(&check), 0, "{}", stdout(&check));
        assert_eq!(last_json(&check)["events"], 1_000_000);
    }
}

#[test]
fn a_leftover_that_is_not_salvages_own_is_never_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 1000);
    let b = tmp.path().join("b");
    let partial = building(&b);

    // Something salvage does not write: refused, left alone.
    fs::create_dir(&partial).expect("mkdir");
    fs::write(partial.join("FS.00000000.wal"), b"partial").expect("write");
    fs::write(partial.join("notes.txt"), b"keep me").expect("write");
    let before = hashes(&partial);
    let out = fswal(&["salvage", p(&a), p(&b)]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("notes.txt"), "{err}");
    assert_unchanged(&partial, &before, "a refused salvage");
    assert!(!b.exists());

    // Salvage's own files, but a salvage still holds the lock: refused, left alone.
    fs::remove_file(partial.join("notes.txt")).expect("remove");
    let running = DirStore::open_for_append(&partial).expect("lock");
    let before = hashes(&partial);
    let out = fswal(&["salvage", p(&a), p(&b)]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("another salvage"), "{err}");
    assert_unchanged(&partial, &before, "a refused salvage");
    assert!(!b.exists());
    drop(running);

    // A plain file of that name is not a leftover either.
    fs::remove_dir_all(&partial).expect("remove");
    fs::write(&partial, b"a file").expect("write");
    let out = fswal(&["salvage", p(&a), p(&b)]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    assert_eq!(fs::read(&partial).expect("read"), b"a file");
    fs::remove_file(&partial).expect("remove");

    // What a killed salvage leaves (a segment, the writer's temporaries): removed.
    fs::create_dir(&partial).expect("mkdir");
    for name in [
        "FS.00000000.wal",
        "FS.00000001.wal.tmp",
        "fswal.meta.tmp",
        ".fswal.lock",
    ] {
        fs::write(partial.join(name), b"partial").expect("write");
    }
    assert_eq!(salvage(&a, &b, 0)["events"], 1000);
    assert!(!partial.exists());
}

#[test]
fn a_destination_through_a_symbolic_link_is_filled_where_the_link_points() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 1000);
    let real = tmp.path().join("real");
    fs::create_dir(&real).expect("mkdir");
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    assert_eq!(salvage(&a, &link, 0)["events"], 1000);
    assert!(
        fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert!(real.join("FS.00000000.wal").is_file());
}

/// A file system mounted on a directory, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    /// Mounts with `args` (then the mount point `at`), or says why it could not.
    fn new(args: &[&str], at: &Path) -> Result<Self, String> {
        let out = Command::new("mount")
            .args(args)
            .arg(at)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self(at.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_mount_point_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = recorded(tmp.path(), 1000);
    let m = tmp.path().join("m");
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&m).expect("mkdir");
    fs::create_dir(&elsewhere).expect("mkdir");
    let bind = [
        "--bind".to_string(),
        elsewhere.to_str().expect("utf-8").to_string(),
    ];
    // Another file system (tmpfs), then the same one bound (found in the mount list).
    for args in [
        vec!["-t", "tmpfs", "none"],
        bind.iter().map(String::as_str).collect(),
    ] {
        let mounted = match Mounted::new(&args, &m) {
            Ok(mounted) => mounted,
            Err(reason) => {
                say(format_args!("skipping a mount point: {reason}\n"));
                continue;
            }
        };
        let out = fswal(&["salvage", p(&a), p(&m)]);
        assert_eq!(code(&out), 2, "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("is a mount point"), "{err}");
        assert!(is_empty_dir(&m), "{args:?}: written into the mount point");
        assert!(
            !building(&m).exists(),
            "{args:?}: something was built beside it"
        );
        // A new directory inside it is fine.
        assert_eq!(salvage(&a, &m.join("b"), 0)["events"], 1000);
        drop(mounted);
    }
}

#[test]
fn a_compressed_segment_that_does_not_decompress_is_a_gap_not_the_end() {
    // A bit flipped inside a sealed segment's LZ4 frame: strict verify names the file
    // and the offset; diagnostic verify and salvage report a gap there and go on.
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("a");
    let out = fswal(&[
        "record",
        "--dir",
        p(&src),
        "--events",
        "12000",
        "--blocks-per-segment",
        "16",
        "--compress",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    flip(&src.join("FS.00000001.wal.lz4"), 3000);

    let out = fswal(&["verify", p(&src)]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("FS.00000001.wal.lz4") && stderr(&out).contains("offset"),
        "{}",
        stderr(&out)
    );
    let out = fswal(&["verify", "--json", "--mode", "diagnostic", p(&src)]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(last_json(&out)["events"], 12_000 - 4096);
    assert!(
        stderr(&out).contains("segment 1 skipped") && stderr(&out).contains("offset"),
        "{}",
        stderr(&out)
    );

    let dst = tmp.path().join("b");
    let v = salvage(&src, &dst, 1);
    assert_eq!(v["events"], 12_000 - 4096);
    assert_eq!(gaps(&v).len(), 1);
    let (segment, _, _, after, before) = gaps(&v)[0];
    assert_eq!((segment, after, before), (1, Some(4096), Some(8193)));
    let (status, text) = dump(&dst);
    assert_eq!(status, 0);
    assert_eq!(text, expected_dump((1..=4096).chain(8193..=12_000)));
}
