//! The floors: what this machine allows for the work fswal does, measured on the same
//! files and in the same directory.
//!
//! - [`hash_floor`]: XXH64 over every block's events twice (under seed 0, and under
//!   the chained checksum stored in the block before, exactly the two hashes
//!   verification needs), split evenly over the threads, reading the files through
//!   fresh memory mappings: the least any verifier must do to check those bytes.
//! - [`write_floor`]: one file as long as the WAL written sequentially in 1 MiB writes,
//!   then `fdatasync`, with and without starting each piece's writeback early (the
//!   faster of the two is the floor): the least any recorder must do to make those
//!   bytes durable.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fswal_backends::file::start_writeback;
use fswal_core::limits::{BLOCK_HEADER_SIZE_BYTES, BLOCK_SIZE_BYTES, block_offset_bytes, slots_in};
use fswal_core::store::parse_segment_file_name;
use memmap2::Mmap;
use xxhash_rust::xxh64::xxh64;

/// Where a block header keeps its chained checksum (little-endian u64; docs/FORMAT.md):
/// the seed of the next block's chained checksum.
const CHAINED_CHECKSUM_OFFSET: usize = 24;

/// Bytes per write of the write floor.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// The segment files of the WAL directory `dir` (`FS.%08u.wal`), in index order.
pub fn segment_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<(u32, PathBuf)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let index = parse_segment_file_name(e.file_name().to_str()?)?;
            Some((index, e.path()))
        })
        .collect();
    files.sort_unstable_by_key(|(index, _)| *index);
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Total bytes of `files`.
pub fn total_bytes(files: &[PathBuf]) -> io::Result<u64> {
    files.iter().map(|f| fs::metadata(f).map(|m| m.len())).sum()
}

/// One hash-floor run over `files` on `threads` threads: the time to map them and
/// double-hash every block's events. Returns the time and the blocks hashed.
pub fn hash_floor(files: &[PathBuf], threads: usize) -> io::Result<(Duration, u64)> {
    let start = Instant::now();
    let maps = files
        .iter()
        .map(|path| {
            let file = File::open(path)?;
            // SAFETY: the benchmark's own files, which nothing writes or truncates
            // while they are mapped.
            unsafe { Mmap::map(&file) }
        })
        .collect::<io::Result<Vec<Mmap>>>()?;
    // Every whole block of every file, as (file, slot).
    let blocks: Vec<(usize, u32)> = maps
        .iter()
        .enumerate()
        .flat_map(|(f, m)| (0..slots_in(m.len() as u64)).map(move |slot| (f, slot)))
        .collect();
    let threads = threads.max(1);
    let per_thread = blocks.len().div_ceil(threads).max(1);
    let digest = std::thread::scope(|scope| {
        let workers: Vec<_> = blocks
            .chunks(per_thread)
            .map(|mine| {
                let maps = &maps;
                scope.spawn(move || {
                    let mut digest = 0u64;
                    for &(f, slot) in mine {
                        digest ^= double_hash(&maps[f], slot);
                    }
                    digest
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(0))
            .fold(0, |a, b| a ^ b)
    });
    black_box(digest);
    let elapsed = start.elapsed();
    drop(maps);
    Ok((elapsed, blocks.len() as u64))
}

/// The two hashes of block `slot` of the mapped segment `map`: XXH64 of its events
/// under seed 0 and under the chained checksum stored in the header before it.
fn double_hash(map: &[u8], slot: u32) -> u64 {
    let Ok(at) = usize::try_from(block_offset_bytes(slot)) else {
        return 0;
    };
    let Some(events) = map.get(at + BLOCK_HEADER_SIZE_BYTES..at + BLOCK_SIZE_BYTES) else {
        return 0;
    };
    let seed = slot
        .checked_sub(1)
        .and_then(|prev| usize::try_from(block_offset_bytes(prev)).ok())
        .and_then(|p| map.get(p + CHAINED_CHECKSUM_OFFSET..p + CHAINED_CHECKSUM_OFFSET + 8))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    xxh64(events, 0) ^ xxh64(events, seed)
}

/// How a write-floor run writes its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFloorWay {
    /// `write` in 1 MiB pieces, then one `fdatasync`: the disk starts when the
    /// kernel's dirty-page writeback does, or at the `fdatasync`.
    Plain,
    /// The same, but each piece's writeback is started right after it is written
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the disk works while the
    /// next pieces are copied and the final `fdatasync` waits for less. A recorder may
    /// do this too (fswal's file backend does), so a floor without it would not be
    /// a floor.
    WriteBehind,
}

/// One write-floor run in `dir`: the time to write `bytes` sequentially to a new file
/// the way `way` says, and `fdatasync` it. The file is removed afterwards.
pub fn write_floor(dir: &Path, bytes: u64, way: WriteFloorWay) -> io::Result<Duration> {
    let path = dir.join(".fswal-bench-write-floor");
    let chunk = vec![0x5au8; WRITE_CHUNK_BYTES];
    let start = Instant::now();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let mut offset_bytes = 0u64;
    while offset_bytes < bytes {
        let n = usize::try_from((bytes - offset_bytes).min(WRITE_CHUNK_BYTES as u64))
            .unwrap_or(WRITE_CHUNK_BYTES);
        file.write_all(&chunk[..n])?;
        if way == WriteFloorWay::WriteBehind {
            start_writeback(&file, offset_bytes, n as u64);
        }
        offset_bytes += n as u64;
    }
    file.sync_data()?;
    drop(file);
    let elapsed = start.elapsed();
    fs::remove_file(&path)?;
    Ok(elapsed)
}
