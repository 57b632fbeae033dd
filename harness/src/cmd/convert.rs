//! `fswal convert [--dry-run] [--reindex] DIR`: rewrites the compressed segments of a
//! WAL directory in fswal's current compressed format, a standard LZ4 frame with a
//! block index (see `fswal_backends::lz4`).
//!
//! Earlier versions of fswal compressed sealed segments into a container of their own
//! (magic `FSWALZ4\x01`) that only fswal reads; the `lz4` command and the C++ recorder
//! do not. `convert` turns each of those into a standard frame. With `--reindex` it
//! also rewrites standard frames that have no fswal block index (the C++ recorder's:
//! 4 MiB linked blocks), which fswal can only read after decompressing them whole;
//! the result is still a standard frame, which the C++ reader and `lz4 -d` read.
//!
//! Every file is replaced only by a file that holds the same segment, byte for byte:
//! the new file is written as `FS.%08u.wal.lz4.tmp`, synced, read back in full and
//! compared with the old one's decompressed bytes, then renamed over it, and the
//! directory synced. A crash leaves the old file or the new one under the segment's
//! name (both hold the segment), and at worst the `.tmp` file, which no reader takes
//! for a segment and the next `convert` removes. The writer lock is held throughout,
//! so no writer compresses or removes a segment meanwhile.
//!
//! A compressed file beside its raw segment (`FS.%08u.wal` and `FS.%08u.wal.lz4`, left
//! by an interrupted compression) is skipped: the raw file is the one read.
//!
//! One line per file, then a summary line. Exit codes: 0 done (or nothing to do), 2 a
//! usage or I/O error, or a file that does not decompress (named with its offset;
//! files converted before it stay converted, and nothing else is touched).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use fswal_backends::dir::DirStore;
use fswal_backends::file::sync_dir;
use fswal_backends::lz4::{COMPRESSED_SUFFIX, Lz4Device, Lz4Format, recompress};
use fswal_core::limits::SEGMENT_INDEX_MAX;
use fswal_core::store::parse_segment_file_name;

use crate::error::CliError;

/// The suffix of the file a conversion writes before renaming it into place.
const TEMPORARY_SUFFIX: &str = ".tmp";

/// The most directory entries listed: a WAL directory holds at most one file per
/// segment index, a few of fswal's own, and whatever else the user keeps there.
const DIR_ENTRIES_MAX: u64 = 4 * (SEGMENT_INDEX_MAX as u64 + 1);

/// Arguments of `fswal convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// List what would be converted, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also rewrite standard LZ4 frames that have no fswal block index (the C++
    /// recorder's), so that fswal reads them with random access.
    #[arg(long)]
    pub reindex: bool,
    /// The WAL directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// What `convert` does with one compressed segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Rewrite it in the current format.
    Convert,
    /// Leave it: it is in the current format already, or a standard frame and
    /// `--reindex` was not given.
    Keep,
    /// Leave it: its raw segment is beside it and is the file read.
    SkipBesideRaw,
}

/// The decision for a compressed file in `format`, with or without its raw segment
/// beside it: a pure function, tested as a table below.
#[must_use]
pub fn decide(format: Lz4Format, raw_beside: bool, reindex: bool) -> Action {
    if raw_beside {
        return Action::SkipBesideRaw;
    }
    match format {
        Lz4Format::FswalContainerV1 => Action::Convert,
        Lz4Format::Frame { indexed: false, .. } if reindex => Action::Convert,
        _ => Action::Keep,
    }
}

/// A human name for a compressed format, for the report.
fn describe(format: Lz4Format) -> &'static str {
    match format {
        Lz4Format::FswalContainerV1 => "fswal LZ4 container v1",
        Lz4Format::Frame { indexed: true, .. } => "LZ4 frame with fswal's block index",
        Lz4Format::Frame { linked: true, .. } => "LZ4 frame, linked blocks, no index",
        Lz4Format::Frame { .. } => "LZ4 frame, no index",
        _ => "LZ4 file",
    }
}

/// The compressed segment files of `dir`, in index order.
fn compressed_segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>, CliError> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| CliError::at(dir, format!("cannot list: {e}")))?;
    for (seen, entry) in (1u64..).zip(entries) {
        if seen > DIR_ENTRIES_MAX {
            return Err(CliError::at(
                dir,
                format!("more than {DIR_ENTRIES_MAX} entries: not a WAL directory"),
            ));
        }
        let entry = entry.map_err(|e| CliError::at(dir, format!("cannot list: {e}")))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(raw_name) = name.strip_suffix(COMPRESSED_SUFFIX) else {
            continue;
        };
        let Some(index) = parse_segment_file_name(raw_name) else {
            continue;
        };
        let path = entry.path();
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            found.push((index, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Runs `fswal convert`.
pub fn run(args: &ConvertArgs) -> Result<ExitCode, CliError> {
    let dir = &args.dir;
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(CliError::at(dir, "not a directory: give the WAL directory")),
        Err(e) => return Err(CliError::at(dir, format!("cannot open: {e}"))),
    }
    // Held until the end, so that no writer compresses, removes or recreates a segment
    // while its file is being replaced. A dry run changes nothing and takes no lock.
    let _lock = if args.dry_run {
        None
    } else {
        Some(DirStore::open_for_append(dir)?)
    };
    let mut converted = 0u32;
    let mut kept = 0u32;
    let mut bytes_before = 0u64;
    let mut bytes_after = 0u64;
    for (index, path) in compressed_segments(dir)? {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let raw_name = name.strip_suffix(COMPRESSED_SUFFIX).unwrap_or(&name);
        let raw_beside = fs::metadata(dir.join(raw_name)).is_ok_and(|m| m.is_file());
        let device = Lz4Device::open_read_only(&path)?;
        let format = device.format();
        let old_len_bytes = device.compressed_len_bytes();
        drop(device);
        match decide(format, raw_beside, args.reindex) {
            Action::Keep => {
                kept += 1;
                println!("kept {name}: {}", describe(format));
            }
            Action::SkipBesideRaw => {
                kept += 1;
                println!(
                    "kept {name}: segment {index}'s raw file {raw_name} is beside it and is the one read"
                );
            }
            Action::Convert if args.dry_run => {
                converted += 1;
                println!("would convert {name}: {}", describe(format));
            }
            Action::Convert => {
                let new_len_bytes = replace(dir, &path)?;
                converted += 1;
                bytes_before = bytes_before.saturating_add(old_len_bytes);
                bytes_after = bytes_after.saturating_add(new_len_bytes);
                println!(
                    "converted {name}: {} ({old_len_bytes} bytes) to an LZ4 frame with fswal's block index ({new_len_bytes} bytes)",
                    describe(format)
                );
            }
        }
    }
    if args.dry_run {
        println!("would convert {converted} compressed segments, keep {kept}; nothing was changed");
    } else {
        println!(
            "converted {converted} compressed segments ({bytes_before} bytes to {bytes_after}), kept {kept}"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Rewrites `path` in the current format through a temporary file (see the module
/// docs); returns the new file's length.
fn replace(dir: &Path, path: &Path) -> Result<u64, CliError> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(TEMPORARY_SUFFIX);
    let tmp = PathBuf::from(tmp);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(CliError::at(
                &tmp,
                format!("cannot remove a stale copy: {e}"),
            ));
        }
    }
    // `recompress` syncs the new file, reads it back in full and compares it with the
    // old one's decompressed bytes, and removes it on any failure.
    let stats = recompress(path, &tmp)?;
    fs::rename(&tmp, path).map_err(|e| CliError::at(&tmp, format!("cannot rename: {e}")))?;
    sync_dir(dir)?;
    Ok(stats.compressed_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_converted() {
        let indexed = Lz4Format::Frame {
            indexed: true,
            linked: false,
        };
        let foreign = Lz4Format::Frame {
            indexed: false,
            linked: true,
        };
        let legacy = Lz4Format::FswalContainerV1;
        // (format, raw file beside it, --reindex) -> action
        let table = [
            (legacy, false, false, Action::Convert),
            (legacy, false, true, Action::Convert),
            (legacy, true, false, Action::SkipBesideRaw),
            (legacy, true, true, Action::SkipBesideRaw),
            (indexed, false, false, Action::Keep),
            (indexed, false, true, Action::Keep),
            (indexed, true, true, Action::SkipBesideRaw),
            (foreign, false, false, Action::Keep),
            (foreign, false, true, Action::Convert),
            (foreign, true, true, Action::SkipBesideRaw),
        ];
        for (format, raw_beside, reindex, action) in table {
            assert_eq!(
                decide(format, raw_beside, reindex),
                action,
                "{format:?} raw_beside={raw_beside} reindex={reindex}"
            );
        }
    }
}
