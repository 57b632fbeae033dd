//! Guards `fswal convert`: fswal's old LZ4 containers (FSWALZ4) become standard LZ4
//! frames holding the same segment, in place and crash-safely; a dry run, a raw segment
//! beside its compressed copy, damage and a running writer change nothing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_unchanged, code, fswal, hashes, p, stderr, stdout};

/// The directory fswal's previous writer compressed (two segments, events 1..=20481).
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../backends/tests/data/fswalz4-v1")
}

/// A writable copy of the fixture.
fn copy_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    for entry in fs::read_dir(fixture()).expect("list the fixture") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), tmp.path().join(entry.file_name())).expect("copy");
    }
    tmp
}

/// `fswal dump DIR`, which must succeed: every event, as JSON lines.
fn dump(dir: &Path) -> String {
    let out = fswal(&["dump", p(dir)]);
    assert_eq!(code(&out), 0, "dump: {}", stderr(&out));
    stdout(&out)
}

/// The first bytes of `path`.
fn head(path: &Path) -> [u8; 4] {
    let bytes = fs::read(path).expect("read");
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

/// The magic number of a standard LZ4 frame, as stored.
const FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

#[test]
fn old_containers_become_standard_frames_with_the_same_events() {
    let tmp = copy_fixture();
    let dir = tmp.path();
    let events = dump(dir);
    assert_eq!(events.lines().count(), 20_481);

    // A dry run says what it would do and changes nothing.
    let before = hashes(dir);
    let out = fswal(&["convert", "--dry-run", p(dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would convert 2 compressed segments"),
        "{}",
        stdout(&out)
    );
    assert_unchanged(dir, &before, "convert --dry-run");

    let out = fswal(&["convert", p(dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("converted FS.00000000.wal.lz4: fswal LZ4 container v1"),
        "{text}"
    );
    assert!(text.contains("converted 2 compressed segments"), "{text}");
    for name in ["FS.00000000.wal.lz4", "FS.00000001.wal.lz4"] {
        assert_eq!(head(&dir.join(name)), FRAME_MAGIC, "{name}");
        assert!(!dir.join(format!("{name}.tmp")).exists());
    }
    assert_eq!(dump(dir), events, "the same events, every field");
    let out = fswal(&["verify", p(dir)]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));

    // Converting again converts nothing.
    let before = hashes(dir);
    let out = fswal(&["convert", p(dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("converted 0 compressed segments"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("kept 2"), "{}", stdout(&out));
    for (path, hash) in &before {
        if path.extension().is_some_and(|e| e == "lz4") {
            assert_eq!(hashes(dir).get(path), Some(hash), "{}", path.display());
        }
    }

    // And the log goes on.
    let out = fswal(&["record", "--dir", p(dir), "--resume", "--events", "100"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(dump(dir).lines().count(), 20_581);
}

#[test]
fn a_damaged_container_is_named_and_left_as_it_was() {
    let tmp = copy_fixture();
    let dir = tmp.path();
    let path = dir.join("FS.00000000.wal.lz4");
    // A byte of the first chunk's compressed data: the header and table still check,
    // so only decompressing finds it.
    let len = fs::metadata(&path).expect("stat").len();
    common::flip(&path, len / 4);
    let before = hashes(dir);
    let out = fswal(&["convert", p(dir)]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("FS.00000000.wal.lz4") && err.contains("offset"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let after = hashes(dir);
    assert_eq!(
        after.get(&path),
        before.get(&path),
        "the damaged file is untouched"
    );
    assert!(
        !dir.join("FS.00000000.wal.lz4.tmp").exists(),
        "no partial copy left"
    );
}

#[test]
fn a_compressed_copy_beside_its_raw_segment_is_kept() {
    let tmp = copy_fixture();
    let dir = tmp.path();
    // Segment 1 raw as well (what an interrupted compression leaves).
    let lz4 = dir.join("FS.00000001.wal.lz4");
    let segment = decompressed(&lz4);
    fs::write(dir.join("FS.00000001.wal"), &segment).expect("write");
    let before = hashes(dir);
    let out = fswal(&["convert", p(dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("kept FS.00000001.wal.lz4: segment 1's raw file"),
        "{}",
        stdout(&out)
    );
    assert_eq!(hashes(dir).get(&lz4), before.get(&lz4));
    assert_eq!(head(&dir.join("FS.00000000.wal.lz4")), FRAME_MAGIC);
}

#[test]
fn a_running_writer_is_not_raced() {
    let tmp = copy_fixture();
    let dir = tmp.path();
    // A writer's store holds the directory's lock, as `record` does.
    let writer = fswal_backends::dir::DirStore::open_for_append(dir).expect("lock");
    let before = hashes(dir);
    let out = fswal(&["convert", p(dir)]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(stderr(&out).contains("lock"), "{}", stderr(&out));
    assert_unchanged(dir, &before, "convert beside a writer");
    drop(writer);
}

#[test]
fn convert_refuses_what_is_not_a_directory() {
    let tmp = copy_fixture();
    let file = tmp.path().join("FS.00000000.wal.lz4");
    let out = fswal(&["convert", p(&file)]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    let out = fswal(&["convert", p(&tmp.path().join("absent"))]);
    assert_eq!(code(&out), 2);
    assert!(!tmp.path().join("absent").exists(), "nothing is created");
}

/// The segment `path` holds, as fswal's library reads it.
fn decompressed(path: &Path) -> Vec<u8> {
    use fswal_core::BlockDevice;
    let mut device = fswal_backends::lz4::Lz4Device::open_read_only(path).expect("open");
    let mut bytes = vec![0u8; usize::try_from(device.len_bytes()).expect("fits")];
    device.read_exact_at(0, &mut bytes).expect("read");
    bytes
}
