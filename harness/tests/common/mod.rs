//! What the command-line tests share: running the built `fswal`, reading what it
//! printed, telling whether a directory changed, and finding the C++ recorder's
//! reference vectors. Each test file uses a part of it.

// Every test file is a crate of its own and uses only some of these.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use serde_json::Value;
use xxhash_rust::xxh64::xxh64;

/// The `fswal` binary cargo built for these tests.
pub const FSWAL: &str = env!("CARGO_BIN_EXE_fswal");

/// Bytes in a block.
pub const BLOCK: u64 = 16_448;

/// Bytes in a segment header.
pub const HEADER: u64 = 64;

/// The C++ recorder's reference vector directory `name`, or `None` after saying the
/// test skips it; it fails instead under `FSWAL_REQUIRE_VECTORS` (CI sets it).
// Every test file is a crate of its own, and not all of them read the vectors.
#[allow(unused_imports)]
pub use fswal_backends::testing::vectors_dir;

/// Runs `fswal args`, which must not panic, whatever its exit code.
pub fn fswal(args: &[&str]) -> Output {
    let out = Command::new(FSWAL).args(args).output().expect("run fswal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "fswal {args:?} panicked: {stderr}"
    );
    out
}

/// The exit code.
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

/// Standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// Standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("utf-8 stderr")
}

/// A path as an argument.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The JSON object on the last line of stdout.
pub fn last_json(out: &Output) -> Value {
    let text = stdout(out);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// What a file's identity is made of here: its length, an XXH64 of its bytes, and its
/// modification time (a write of the same bytes still moves it).
pub type FileHash = (u64, u64, Option<SystemTime>);

/// Every file under `dir`, recursively, with its hash.
pub fn hashes(dir: &Path) -> BTreeMap<PathBuf, FileHash> {
    let mut all = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in fs::read_dir(&at).expect("list") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                pending.push(path);
            } else {
                let bytes = fs::read(&path).unwrap_or_default();
                all.insert(path, (meta.len(), xxh64(&bytes, 0), meta.modified().ok()));
            }
        }
    }
    all
}

/// Asserts that every file under `dir` is as `before` has it, naming those that are not.
pub fn assert_unchanged(dir: &Path, before: &BTreeMap<PathBuf, FileHash>, what: &str) {
    let after = hashes(dir);
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(changed.is_empty(), "{what} changed {changed:?}");
}

/// `fswal record --dir DIR --events N --blocks-per-segment 16` into a new log, which
/// must succeed.
pub fn record_small(dir: &Path, events: u64) {
    let events = events.to_string();
    let out = fswal(&[
        "record",
        "--dir",
        p(dir),
        "--events",
        &events,
        "--blocks-per-segment",
        "16",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// Flips one bit of the byte at `offset` of `path`.
pub fn flip(path: &Path, offset: u64) {
    let mut all = fs::read(path).expect("read");
    let at = usize::try_from(offset).expect("offset");
    all[at] ^= 0x10;
    fs::write(path, all).expect("write");
}
