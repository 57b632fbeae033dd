//! Helpers the LZ4 modules' tests share: seeded data, reference segments, the `lz4`
//! command, and checks of errors and reads.

use std::env;
use std::eprintln;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use embedded_io::{Error as _, ErrorKind};
use fswal_core::BlockDevice;
use fswal_core::limits::BLOCK_SIZE_BYTES;
use fswal_core::reference::reference_event;
use fswal_core::{WalWriter, WriterConfig};

use super::{COMPRESSED_SUFFIX, Lz4Device};
use crate::dir::DirStore;
use crate::file::FileError;

/// A small seeded generator (SplitMix64), so that random tests repeat exactly.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    pub(super) fn index(&mut self, bound: usize) -> usize {
        usize::try_from(self.below(bound as u64)).unwrap()
    }
}

/// `len` bytes that compress well and repeat at every distance up to LZ4's window:
/// phrases drawn from a small set, with a few random bytes between them, so that
/// linked blocks really refer to the blocks before them.
pub(super) fn compressible(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let phrases: Vec<Vec<u8>> = (0..64)
        .map(|_| {
            let n = 8 + rng.index(120);
            (0..n)
                .map(|_| b'a' + u8::try_from(rng.below(26)).unwrap())
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(len + 256);
    while out.len() < len {
        out.extend_from_slice(&phrases[rng.index(phrases.len())]);
        if rng.below(4) == 0 {
            out.push(rng.next().to_le_bytes()[0]);
        }
    }
    out.truncate(len);
    out
}

/// `len` bytes that do not compress.
pub(super) fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes reference events `1..=events` into a new WAL in `dir` and returns the path
/// of segment 0.
pub(super) fn write_reference_wal(dir: &Path, events: u64, blocks_per_segment: u32) -> PathBuf {
    let store = DirStore::open_for_append(dir).unwrap();
    let (mut writer, _) = WalWriter::open(
        store,
        || 1u64,
        WriterConfig::with_blocks(blocks_per_segment),
    )
    .unwrap();
    for i in 1..=events {
        writer.append(&reference_event(i)).unwrap();
    }
    writer.close().unwrap();
    dir.join("FS.00000000.wal")
}

/// `segment` with [`COMPRESSED_SUFFIX`] added.
pub(super) fn compressed_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_os_string();
    name.push(COMPRESSED_SUFFIX);
    PathBuf::from(name)
}

/// Reads the whole of `dev` in segment-block-sized reads.
pub(super) fn read_device(dev: &mut Lz4Device) -> Result<Vec<u8>, FileError> {
    let len = usize::try_from(dev.len_bytes()).unwrap();
    let mut out = vec![0u8; len];
    for (i, piece) in out.chunks_mut(BLOCK_SIZE_BYTES).enumerate() {
        dev.read_exact_at((i * BLOCK_SIZE_BYTES) as u64, piece)?;
    }
    Ok(out)
}

/// Opens `path` and reads the whole segment, in block-sized reads.
pub(super) fn read_all(path: &Path) -> Result<Vec<u8>, FileError> {
    read_device(&mut Lz4Device::open_read_only(path)?)
}

/// Opens `path`, reads it whole, and runs the full check.
pub(super) fn read_and_verify(path: &Path) -> Result<Vec<u8>, FileError> {
    let mut dev = Lz4Device::open_read_only(path)?;
    let bytes = read_device(&mut dev)?;
    dev.verify_contents()?;
    Ok(bytes)
}

/// Reads `dev` at random offsets and lengths, then backward one piece at a time, and
/// checks every read against `raw`.
pub(super) fn check_random_reads(dev: &mut Lz4Device, raw: &[u8], seed: u64, rounds: usize) {
    assert_eq!(dev.len_bytes(), raw.len() as u64);
    let mut rng = Rng(seed);
    if raw.is_empty() {
        dev.read_exact_at(0, &mut []).unwrap();
        return;
    }
    for _ in 0..rounds {
        let len = 1 + rng.index(raw.len().min(300_000));
        let offset = rng.index(raw.len() - len + 1);
        let mut buf = vec![0u8; len];
        dev.read_exact_at(offset as u64, &mut buf).unwrap();
        assert!(buf == raw[offset..offset + len], "{offset}+{len}");
    }
    let piece = 40_000.min(raw.len());
    let mut end = raw.len();
    while end > 0 {
        let start = end.saturating_sub(piece);
        let mut buf = vec![0u8; end - start];
        dev.read_exact_at(start as u64, &mut buf).unwrap();
        assert!(buf == raw[start..end], "backward {start}..{end}");
        end = start;
    }
}

/// Checks that `e` is `InvalidData`, names `path` and an offset.
pub(super) fn assert_invalid_data(e: &FileError, path: &Path) {
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    assert!(e.offset_bytes.is_some(), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
}

/// The `lz4` command, or `None` (saying so on stderr) when it is not on `PATH`;
/// panics instead when `FSWAL_REQUIRE_LZ4` is set.
pub(super) fn lz4_cli() -> Option<PathBuf> {
    let found = env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|dir| dir.join("lz4"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            env::var_os("FSWAL_REQUIRE_LZ4").is_none(),
            "lz4 not found on PATH, and FSWAL_REQUIRE_LZ4 is set"
        );
        eprintln!("skipping: lz4 not found");
    }
    found
}

/// Runs `lz4 args`, panicking with its stderr unless it succeeds; returns its stdout.
pub(super) fn run_lz4(lz4: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(lz4).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "lz4 {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `path` as a string, for command lines.
pub(super) fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The shared C++ reference vectors, or `None` (saying so on stderr) when absent.
pub(super) fn cpp_vectors(name: &str) -> Option<PathBuf> {
    crate::testing::vectors_dir(name)
}

/// Writes `bytes` to a new file `name` in `dir` and returns its path.
pub(super) fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}
