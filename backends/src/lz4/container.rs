//! The fswal LZ4 container, version 1 (magic `FSWALZ4\x01`): what fswal wrote before
//! it wrote standard LZ4 frames. Only fswal reads it; it is still read (as the segment
//! it holds, with random access), never written, and [`recompress`](super::recompress)
//! turns it into the current format.
//!
//! A container is cut into independently compressed chunks of [`CHUNK_SIZE_BYTES`] raw
//! bytes in LZ4's *block* format, listed in a table: a read decompresses only the
//! chunks it covers.
//!
//! The layout is in the [module docs](super) of `lz4`, section "The earlier container".
//!
//! # Distrust
//!
//! Opening checks the magic, the header checksum, the reserved bytes, that
//! `chunk_bytes` is [`CHUNK_SIZE_BYTES`], that `raw_len_bytes` is at most
//! [`SEGMENT_SIZE_BYTES_MAX`] and `chunk_count` matches it (so it is at most
//! [`CHUNK_COUNT_MAX`]), the table checksum, and that the chunks are contiguous, no
//! longer than LZ4's worst case for their raw length, and end exactly at the end of the
//! file. Reading a chunk checks that it decompresses to exactly its raw length and
//! hash. Every violation is a [`FileError`] of kind `InvalidData` naming the file and
//! the offset in the container where the bad bytes are; nothing sized by a header
//! field is allocated before the field has been checked against these constants.
//!
//! The whole-segment hash is only checked by
//! [`Lz4Device::verify_contents`](super::Lz4Device::verify_contents), which
//! decompresses everything. The device holds at most one raw chunk and one compressed
//! chunk in memory (about 2 MiB), whatever the segment's size.

use std::fmt;
use std::format;
use std::fs::File;
use std::path::Path;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use fswal_core::limits::SEGMENT_SIZE_BYTES_MAX;
use lz4_flex::block::get_maximum_output_size;
use xxhash_rust::xxh64::{Xxh64, xxh64};

use super::RawBlocks;
use super::fields::{Fields, invalid_data, logic_error, read_exact_at};
use crate::file::FileError;

/// The first 8 bytes of every container: "FSWALZ4" and the container version, 1.
pub const CONTAINER_V1_MAGIC: [u8; 8] = *b"FSWALZ4\x01";

/// Bytes in the container header, at offset 0.
pub(super) const HEADER_SIZE_BYTES: usize = 64;

/// Raw bytes in every chunk but the last (1 MiB): large enough that the table (24 bytes
/// a chunk) and LZ4's restart at each chunk cost little, small enough that a random
/// read decompresses little and a device holds little in memory.
pub const CHUNK_SIZE_BYTES: u32 = 1 << 20;

/// Bytes in one entry of the chunk table.
pub(super) const CHUNK_ENTRY_SIZE_BYTES: usize = 24;

/// The most chunks a container may have: enough for the largest segment.
// Exact: the quotient is about 8225, far below `u32::MAX` (asserted below), and
// `try_from` is not const.
#[allow(clippy::cast_possible_truncation)]
pub const CHUNK_COUNT_MAX: u32 = SEGMENT_SIZE_BYTES_MAX.div_ceil(CHUNK_SIZE_BYTES as u64) as u32;

/// Bytes of the checksum that follows the chunk table.
const TABLE_CHECKSUM_SIZE_BYTES: usize = 8;

/// Bytes of the header that its checksum covers (everything before the checksum).
const HEADER_CHECKED_BYTES: usize = 56;

/// Offsets of the header fields, for the offsets that errors report.
const RAW_LEN_OFFSET: u64 = 8;
const CHUNK_BYTES_OFFSET: u64 = 16;
const CHUNK_COUNT_OFFSET: u64 = 20;
const RAW_XXH64_OFFSET: u64 = 24;
const RESERVED_OFFSET: u64 = 32;
const HEADER_XXH64_OFFSET: u64 = 56;

/// The reserved bytes of the header, zero in version 1.
const HEADER_RESERVED_BYTES: usize = 24;

/// The most bytes LZ4 may turn one full chunk into (its worst case, for data that does
/// not compress). The table check bounds each chunk by the worst case for its own raw
/// length, which is at most this, so the buffer for compressed chunks never grows past
/// it.
const COMPRESSED_CHUNK_BYTES_MAX: usize = get_maximum_output_size(CHUNK_SIZE_BYTES as usize);

const _: () = assert!(HEADER_CHECKED_BYTES + 8 == HEADER_SIZE_BYTES);
const _: () = assert!(8 + 8 + 4 + 4 + 8 + HEADER_RESERVED_BYTES + 8 == HEADER_SIZE_BYTES);
const _: () = assert!(8 + 4 + 4 + 8 == CHUNK_ENTRY_SIZE_BYTES);
// Compressed chunk lengths are stored as u32.
const _: () = assert!(COMPRESSED_CHUNK_BYTES_MAX as u64 <= u32::MAX as u64);
// `CHUNK_COUNT_MAX` is exact and covers the largest segment.
const _: () = assert!(SEGMENT_SIZE_BYTES_MAX.div_ceil(CHUNK_SIZE_BYTES as u64) <= u32::MAX as u64);
const _: () = assert!(CHUNK_COUNT_MAX as u64 * CHUNK_SIZE_BYTES as u64 >= SEGMENT_SIZE_BYTES_MAX);
// The largest chunk table is small (about 200 KB), so reading it whole at open is fine.
const _: () = assert!((CHUNK_COUNT_MAX as usize) * CHUNK_ENTRY_SIZE_BYTES <= 1 << 20);

/// The checked fields of a container header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    raw_len_bytes: u64,
    chunk_count: u32,
    raw_xxh64: u64,
}

impl Header {
    /// The 64 header bytes, checksum included, and that checksum (the table's seed).
    #[cfg(test)]
    fn encode(&self) -> (Vec<u8>, u64) {
        let mut bytes = Vec::with_capacity(HEADER_SIZE_BYTES);
        bytes.extend_from_slice(&CONTAINER_V1_MAGIC);
        bytes.extend_from_slice(&self.raw_len_bytes.to_le_bytes());
        bytes.extend_from_slice(&CHUNK_SIZE_BYTES.to_le_bytes());
        bytes.extend_from_slice(&self.chunk_count.to_le_bytes());
        bytes.extend_from_slice(&self.raw_xxh64.to_le_bytes());
        bytes.extend_from_slice(&[0u8; HEADER_RESERVED_BYTES]);
        let checksum = xxh64(&bytes, 0);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        (bytes, checksum)
    }

    /// Parses and checks the header `bytes` of the container at `path`; returns it and
    /// its checksum (the table's seed).
    fn decode(bytes: &[u8; HEADER_SIZE_BYTES], path: &Path) -> Result<(Self, u64), FileError> {
        let bad =
            |offset_bytes: u64, message: String| invalid_data("open", path, offset_bytes, message);
        let mut fields = Fields::new(bytes);
        let truncated = || bad(0, "the header is cut short".to_string());
        let magic: [u8; 8] = fields.take().ok_or_else(truncated)?;
        let raw_len_bytes = fields.u64().ok_or_else(truncated)?;
        let chunk_bytes = fields.u32().ok_or_else(truncated)?;
        let chunk_count = fields.u32().ok_or_else(truncated)?;
        let raw_xxh64 = fields.u64().ok_or_else(truncated)?;
        let reserved: [u8; HEADER_RESERVED_BYTES] = fields.take().ok_or_else(truncated)?;
        let stored_checksum = fields.u64().ok_or_else(truncated)?;

        // The magic first, so that a file that is not a container at all says so rather
        // than reporting a bad checksum.
        if magic != CONTAINER_V1_MAGIC {
            return Err(bad(
                0,
                format!(
                    "not an fswal LZ4 container: magic {magic:02x?}, expected {CONTAINER_V1_MAGIC:02x?}"
                ),
            ));
        }
        let checked = bytes.get(..HEADER_CHECKED_BYTES).ok_or_else(truncated)?;
        let checksum = xxh64(checked, 0);
        if checksum != stored_checksum {
            return Err(bad(
                HEADER_XXH64_OFFSET,
                format!(
                    "header checksum is {stored_checksum:#018x}, the header's bytes hash to {checksum:#018x}"
                ),
            ));
        }
        // The checksum only shows that the fields are the ones written: a writer with a
        // bug, or a forger, still gets no field used unchecked.
        if reserved.iter().any(|&b| b != 0) {
            return Err(bad(
                RESERVED_OFFSET,
                "reserved header bytes are not zero".to_string(),
            ));
        }
        if chunk_bytes != CHUNK_SIZE_BYTES {
            return Err(bad(
                CHUNK_BYTES_OFFSET,
                format!("chunk size is {chunk_bytes} bytes, expected {CHUNK_SIZE_BYTES}"),
            ));
        }
        if raw_len_bytes > SEGMENT_SIZE_BYTES_MAX {
            return Err(bad(
                RAW_LEN_OFFSET,
                format!(
                    "segment length {raw_len_bytes} bytes is above the largest segment ({SEGMENT_SIZE_BYTES_MAX} bytes)"
                ),
            ));
        }
        let expected_count = chunk_count_for(raw_len_bytes).ok_or_else(|| {
            bad(
                RAW_LEN_OFFSET,
                format!("segment length {raw_len_bytes} bytes needs too many chunks"),
            )
        })?;
        if chunk_count != expected_count {
            return Err(bad(
                CHUNK_COUNT_OFFSET,
                format!(
                    "chunk count is {chunk_count}, a segment of {raw_len_bytes} bytes has {expected_count}"
                ),
            ));
        }
        Ok((
            Self {
                raw_len_bytes,
                chunk_count,
                raw_xxh64,
            },
            checksum,
        ))
    }
}

/// One entry of the chunk table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ChunkEntry {
    compressed_offset_bytes: u64,
    compressed_len_bytes: u32,
    raw_xxh64: u64,
}

impl ChunkEntry {
    #[cfg(test)]
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.compressed_offset_bytes.to_le_bytes());
        out.extend_from_slice(&self.compressed_len_bytes.to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&self.raw_xxh64.to_le_bytes());
    }
}

/// The number of chunks a segment of `raw_len_bytes` bytes is cut into, or `None` if
/// it is more than [`CHUNK_COUNT_MAX`].
fn chunk_count_for(raw_len_bytes: u64) -> Option<u32> {
    let count = u32::try_from(raw_len_bytes.div_ceil(u64::from(CHUNK_SIZE_BYTES))).ok()?;
    (count <= CHUNK_COUNT_MAX).then_some(count)
}

/// The raw offset and length of chunk `index` of a segment of `raw_len_bytes` bytes, or
/// `None` if the segment has no such chunk.
fn chunk_raw_range(raw_len_bytes: u64, index: u32) -> Option<(u64, usize)> {
    let offset_bytes = u64::from(index).checked_mul(u64::from(CHUNK_SIZE_BYTES))?;
    let left_bytes = raw_len_bytes
        .checked_sub(offset_bytes)
        .filter(|&left| left > 0)?;
    let len = left_bytes.min(u64::from(CHUNK_SIZE_BYTES));
    Some((offset_bytes, usize::try_from(len).ok()?))
}

/// Bytes of the chunk table of `chunk_count` chunks, its checksum included.
fn table_size_bytes(chunk_count: u32) -> Option<usize> {
    usize::try_from(chunk_count)
        .ok()?
        .checked_mul(CHUNK_ENTRY_SIZE_BYTES)?
        .checked_add(TABLE_CHECKSUM_SIZE_BYTES)
}

/// The offset of the first chunk in a container of `chunk_count` chunks.
fn data_start_bytes(chunk_count: u32) -> Option<u64> {
    let table_bytes = u64::try_from(table_size_bytes(chunk_count)?).ok()?;
    u64::try_from(HEADER_SIZE_BYTES)
        .ok()?
        .checked_add(table_bytes)
}

/// The offset in the container of entry `index` of the chunk table.
fn entry_offset_bytes(index: u32) -> u64 {
    // At most `CHUNK_COUNT_MAX * 24 + 64`, far from overflowing.
    u64::from(index)
        .saturating_mul(CHUNK_ENTRY_SIZE_BYTES as u64)
        .saturating_add(HEADER_SIZE_BYTES as u64)
}

/// A reader over a container: it reads as the segment the container holds,
/// decompressing the chunks each read covers. The last decompressed chunk is kept, so
/// reading a segment block by block decompresses each chunk once.
pub(super) struct Container {
    file: File,
    header: Header,
    chunks: Vec<ChunkEntry>,
    /// The index of the chunk whose raw bytes `raw` holds, if any.
    cached_chunk: Option<u32>,
    /// The raw bytes of `cached_chunk`.
    raw: Vec<u8>,
    /// A buffer for one compressed chunk, reused across reads.
    compressed: Vec<u8>,
    /// How many chunks were decompressed so far (what the cache saves, for tests).
    decompressions: u64,
}

impl fmt::Debug for Container {
    /// The shape of the container, not the buffers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("raw_len_bytes", &self.header.raw_len_bytes)
            .field("chunk_count", &self.header.chunk_count)
            .field("cached_chunk", &self.cached_chunk)
            .finish_non_exhaustive()
    }
}

impl Container {
    /// Reads the header and chunk table of the container `file` (of `file_len_bytes`
    /// bytes, at `path`) and checks them (see the module docs); the chunks themselves
    /// are checked as they are read.
    pub(super) fn open(file: File, path: &Path, file_len_bytes: u64) -> Result<Self, FileError> {
        let mut header_bytes = [0u8; HEADER_SIZE_BYTES];
        if file_len_bytes < HEADER_SIZE_BYTES as u64 {
            return Err(invalid_data(
                "open",
                path,
                file_len_bytes,
                format!("the file ends inside the {HEADER_SIZE_BYTES}-byte container header"),
            ));
        }
        read_exact_at(&file, path, "open", 0, &mut header_bytes, || {
            "the file ends inside the container header".to_string()
        })?;
        let (header, header_checksum) = Header::decode(&header_bytes, path)?;

        // `chunk_count` is now at most `CHUNK_COUNT_MAX`, so the table is small.
        let too_large = || {
            invalid_data(
                "open",
                path,
                CHUNK_COUNT_OFFSET,
                "chunk table too large".to_string(),
            )
        };
        let table_bytes = table_size_bytes(header.chunk_count).ok_or_else(too_large)?;
        let data_start_bytes = data_start_bytes(header.chunk_count).ok_or_else(too_large)?;
        if file_len_bytes < data_start_bytes {
            return Err(invalid_data(
                "open",
                path,
                file_len_bytes,
                format!(
                    "the file ends inside the chunk table of {} chunks (bytes {HEADER_SIZE_BYTES}..{data_start_bytes})",
                    header.chunk_count
                ),
            ));
        }
        let mut table = vec![0u8; table_bytes];
        read_exact_at(
            &file,
            path,
            "open",
            HEADER_SIZE_BYTES as u64,
            &mut table,
            || "the file ends inside the chunk table".to_string(),
        )?;
        let chunks = parse_table(&table, &header, header_checksum, path, file_len_bytes)?;

        Ok(Self {
            file,
            header,
            chunks,
            cached_chunk: None,
            raw: Vec::new(),
            compressed: Vec::new(),
            decompressions: 0,
        })
    }

    /// The segment's length.
    pub(super) fn raw_len_bytes(&self) -> u64 {
        self.header.raw_len_bytes
    }

    /// The number of chunks in the container.
    pub(super) fn chunk_count(&self) -> u32 {
        self.header.chunk_count
    }

    /// The XXH64 (seed 0) of the whole segment, as the header records it.
    pub(super) fn raw_xxh64(&self) -> u64 {
        self.header.raw_xxh64
    }

    /// The offset of the whole segment's hash in the header.
    pub(super) fn raw_xxh64_at() -> u64 {
        RAW_XXH64_OFFSET
    }

    /// Chunks decompressed so far.
    #[cfg(test)]
    pub(super) fn decompressions(&self) -> u64 {
        self.decompressions
    }

    /// Decompresses every chunk, checking each one, and checks the whole segment's
    /// XXH64 against the header's: the full check that opening (which reads only the
    /// header and the table) does not make.
    pub(super) fn verify_contents(&mut self, path: &Path) -> Result<(), FileError> {
        let mut whole = Xxh64::new(0);
        for index in 0..self.header.chunk_count {
            self.load_chunk(path, index)?;
            whole.update(&self.raw);
        }
        let digest = whole.digest();
        if digest != self.header.raw_xxh64 {
            return Err(invalid_data(
                "verify",
                path,
                RAW_XXH64_OFFSET,
                format!(
                    "the segment decompresses to bytes hashing to {digest:#018x}, the header says {:#018x}",
                    self.header.raw_xxh64
                ),
            ));
        }
        Ok(())
    }

    /// Makes `raw` hold the raw bytes of chunk `index`, decompressing it unless it is
    /// the cached chunk.
    fn load_chunk(&mut self, path: &Path, index: u32) -> Result<(), FileError> {
        if self.cached_chunk == Some(index) {
            return Ok(());
        }
        let entry = usize::try_from(index)
            .ok()
            .and_then(|i| self.chunks.get(i))
            .copied()
            .ok_or_else(|| logic_error(path, format!("chunk {index} is not in the table")))?;
        let (raw_offset_bytes, raw_len) = chunk_raw_range(self.header.raw_len_bytes, index)
            .ok_or_else(|| logic_error(path, format!("chunk {index} has no raw bytes")))?;
        let compressed_len = usize::try_from(entry.compressed_len_bytes)
            .map_err(|_| logic_error(path, format!("chunk {index} too long for memory")))?;
        let at = entry.compressed_offset_bytes;
        let describe = |what: &str| {
            format!(
                "chunk {index} (raw bytes {raw_offset_bytes}..{}): {what}",
                raw_offset_bytes.saturating_add(raw_len as u64)
            )
        };

        // Forget the cached chunk before overwriting its buffer, so that a failure below
        // never leaves half-decompressed bytes that a later read would trust.
        self.cached_chunk = None;
        // Both lengths were bounded at open: `compressed_len` by LZ4's worst case for a
        // chunk, `raw_len` by `CHUNK_SIZE_BYTES`.
        self.compressed.resize(compressed_len, 0);
        read_exact_at(&self.file, path, "read", at, &mut self.compressed, || {
            // The file was shortened after it was opened.
            describe("the file ends inside the chunk")
        })?;
        self.raw.resize(raw_len, 0);
        self.decompressions = self.decompressions.saturating_add(1);
        let written =
            lz4_flex::block::decompress_into(&self.compressed, &mut self.raw).map_err(|e| {
                invalid_data(
                    "decompress",
                    path,
                    at,
                    describe(&format!("not valid LZ4: {e}")),
                )
            })?;
        if written != raw_len {
            return Err(invalid_data(
                "decompress",
                path,
                at,
                describe(&format!(
                    "decompresses to {written} bytes, expected {raw_len}"
                )),
            ));
        }
        let digest = xxh64(&self.raw, 0);
        if digest != entry.raw_xxh64 {
            return Err(invalid_data(
                "decompress",
                path,
                at,
                describe(&format!(
                    "decompressed bytes hash to {digest:#018x}, the table says {:#018x}",
                    entry.raw_xxh64
                )),
            ));
        }
        self.cached_chunk = Some(index);
        Ok(())
    }
}

impl RawBlocks for Container {
    fn locate(&self, position_bytes: u64) -> Option<(u32, u64)> {
        if position_bytes >= self.header.raw_len_bytes {
            return None;
        }
        let chunk_bytes = u64::from(CHUNK_SIZE_BYTES);
        let index = u32::try_from(position_bytes / chunk_bytes).ok()?;
        Some((index, u64::from(index).checked_mul(chunk_bytes)?))
    }

    fn load(&mut self, path: &Path, index: u32) -> Result<&[u8], FileError> {
        self.load_chunk(path, index)?;
        Ok(&self.raw)
    }
}

/// Checks the chunk table `table` (entries and checksum) of a container of
/// `file_len_bytes` bytes whose header is `header` and header checksum
/// `header_checksum`, and returns its entries.
fn parse_table(
    table: &[u8],
    header: &Header,
    header_checksum: u64,
    path: &Path,
    file_len_bytes: u64,
) -> Result<Vec<ChunkEntry>, FileError> {
    let entries_bytes = table.len().saturating_sub(TABLE_CHECKSUM_SIZE_BYTES);
    let checksum_offset_bytes = entry_offset_bytes(header.chunk_count);
    let bad =
        |offset_bytes: u64, message: String| invalid_data("open", path, offset_bytes, message);
    let (entries, checksum) = table.split_at_checked(entries_bytes).ok_or_else(|| {
        bad(
            checksum_offset_bytes,
            "the chunk table is cut short".to_string(),
        )
    })?;
    let stored = Fields::new(checksum).u64().ok_or_else(|| {
        bad(
            checksum_offset_bytes,
            "the chunk table is cut short".to_string(),
        )
    })?;
    let computed = xxh64(entries, header_checksum);
    if stored != computed {
        return Err(bad(
            checksum_offset_bytes,
            format!("chunk table checksum is {stored:#018x}, the table hashes to {computed:#018x}"),
        ));
    }

    // Bounded by `CHUNK_COUNT_MAX`, which the header check enforced.
    let mut chunks = Vec::with_capacity(entries.len() / CHUNK_ENTRY_SIZE_BYTES);
    let mut fields = Fields::new(entries);
    let mut expected_offset_bytes = data_start_bytes(header.chunk_count)
        .ok_or_else(|| bad(CHUNK_COUNT_OFFSET, "chunk table too large".to_string()))?;
    for index in 0..header.chunk_count {
        let at = entry_offset_bytes(index);
        let cut = || bad(at, format!("chunk table entry {index} is cut short"));
        let compressed_offset_bytes = fields.u64().ok_or_else(cut)?;
        let compressed_len_bytes = fields.u32().ok_or_else(cut)?;
        let reserved = fields.u32().ok_or_else(cut)?;
        let raw_xxh64 = fields.u64().ok_or_else(cut)?;
        if reserved != 0 {
            return Err(bad(
                at,
                format!("chunk {index}: reserved bytes are not zero"),
            ));
        }
        if compressed_offset_bytes != expected_offset_bytes {
            return Err(bad(
                at,
                format!(
                    "chunk {index} starts at offset {compressed_offset_bytes}, expected {expected_offset_bytes} (chunks follow each other)"
                ),
            ));
        }
        let (_, raw_len) = chunk_raw_range(header.raw_len_bytes, index)
            .ok_or_else(|| bad(at, format!("chunk {index} has no raw bytes")))?;
        let len_max_bytes = get_maximum_output_size(raw_len);
        let len_ok = usize::try_from(compressed_len_bytes)
            .is_ok_and(|len| (1..=len_max_bytes).contains(&len));
        if !len_ok {
            return Err(bad(
                at,
                format!(
                    "chunk {index} is {compressed_len_bytes} bytes compressed, outside 1..={len_max_bytes} for {raw_len} raw bytes"
                ),
            ));
        }
        let end_bytes = compressed_offset_bytes
            .checked_add(u64::from(compressed_len_bytes))
            .filter(|&end| end <= file_len_bytes)
            .ok_or_else(|| {
                bad(
                    at,
                    format!(
                        "chunk {index} (bytes {compressed_offset_bytes}.. + {compressed_len_bytes}) extends past the end of the file ({file_len_bytes} bytes)"
                    ),
                )
            })?;
        chunks.push(ChunkEntry {
            compressed_offset_bytes,
            compressed_len_bytes,
            raw_xxh64,
        });
        expected_offset_bytes = end_bytes;
    }
    if expected_offset_bytes != file_len_bytes {
        return Err(bad(
            expected_offset_bytes,
            format!(
                "{} bytes follow the last chunk",
                file_len_bytes.saturating_sub(expected_offset_bytes)
            ),
        ));
    }
    Ok(chunks)
}

/// The container of `raw`, as fswal's earlier writer made it: for the tests of the
/// reader (fswal no longer writes containers).
#[cfg(test)]
fn encode_v1(raw: &[u8]) -> Vec<u8> {
    let count = chunk_count_for(raw.len() as u64).unwrap();
    let mut offset = data_start_bytes(count).unwrap();
    let mut entries = Vec::new();
    let mut chunks = Vec::new();
    let mut packed = vec![0u8; get_maximum_output_size(CHUNK_SIZE_BYTES as usize)];
    for chunk in raw.chunks(CHUNK_SIZE_BYTES as usize) {
        let len = lz4_flex::block::compress_into(chunk, &mut packed).unwrap();
        entries.push(ChunkEntry {
            compressed_offset_bytes: offset,
            compressed_len_bytes: u32::try_from(len).unwrap(),
            raw_xxh64: xxh64(chunk, 0),
        });
        chunks.extend_from_slice(&packed[..len]);
        offset += len as u64;
    }
    let (mut out, header_checksum) = Header {
        raw_len_bytes: raw.len() as u64,
        chunk_count: count,
        raw_xxh64: xxh64(raw, 0),
    }
    .encode();
    let mut table = Vec::new();
    for entry in &entries {
        entry.encode_into(&mut table);
    }
    let table_checksum = xxh64(&table, header_checksum);
    out.extend_from_slice(&table);
    out.extend_from_slice(&table_checksum.to_le_bytes());
    out.extend_from_slice(&chunks);
    out
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;
    use std::vec::Vec;
    use std::{eprintln, println};

    use embedded_io::{Error as _, ErrorKind};
    use fswal_core::limits::{BLOCK_SIZE_BYTES, block_offset_bytes, slots_in};
    use fswal_core::{BlockDevice, Mode, Replay, Status};

    use super::*;
    use crate::dir::DirStore;
    use crate::lz4::test_util::{
        Rng, assert_invalid_data, compressed_path, compressible, read_all, write_file,
        write_reference_wal,
    };
    use crate::lz4::{Lz4Device, Lz4Format};

    /// What [`write_v1`] wrote.
    #[derive(Clone, Copy, Debug)]
    struct V1Stats {
        raw_bytes: u64,
        compressed_bytes: u64,
        chunks: u32,
    }

    /// Writes the segment `src` as a container at `dst`, as fswal's earlier writer did.
    fn write_v1(src: &Path, dst: &Path) -> V1Stats {
        let raw = fs::read(src).unwrap();
        let bytes = encode_v1(&raw);
        fs::write(dst, &bytes).unwrap();
        V1Stats {
            raw_bytes: raw.len() as u64,
            compressed_bytes: bytes.len() as u64,
            chunks: chunk_count_for(raw.len() as u64).unwrap(),
        }
    }

    /// Recomputes the header checksum of `bytes`, then the table checksum (which is
    /// seeded with it), as a forger would.
    fn reseal(bytes: &mut [u8]) {
        let header_checksum = xxh64(&bytes[..HEADER_CHECKED_BYTES], 0);
        bytes[56..64].copy_from_slice(&header_checksum.to_le_bytes());
        let count = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
        let end = HEADER_SIZE_BYTES + count * CHUNK_ENTRY_SIZE_BYTES;
        if end + 8 <= bytes.len() {
            let table_checksum = xxh64(&bytes[HEADER_SIZE_BYTES..end], header_checksum);
            bytes[end..end + 8].copy_from_slice(&table_checksum.to_le_bytes());
        }
    }

    /// A WAL of 10000 reference events in 16-block segments, with segment 0 and its
    /// container.
    struct Fixture {
        _tmp: tempfile::TempDir,
        segment: PathBuf,
        container: PathBuf,
        stats: V1Stats,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let segment = write_reference_wal(&tmp.path().join("wal"), 10_000, 16);
        let container = tmp.path().join("FS.00000000.wal.lz4");
        let stats = write_v1(&segment, &container);
        Fixture {
            _tmp: tmp,
            segment,
            container,
            stats,
        }
    }

    #[test]
    fn constants_match_the_format() {
        assert_eq!(CHUNK_COUNT_MAX, 8225);
        assert_eq!(CONTAINER_V1_MAGIC.len(), 8);
        assert_eq!(chunk_count_for(0), Some(0));
        assert_eq!(chunk_count_for(1), Some(1));
        assert_eq!(chunk_count_for(1 << 20), Some(1));
        assert_eq!(chunk_count_for((1 << 20) + 1), Some(2));
        assert_eq!(
            chunk_count_for(SEGMENT_SIZE_BYTES_MAX),
            Some(CHUNK_COUNT_MAX)
        );
        assert_eq!(chunk_count_for(u64::MAX), None);
        assert_eq!(chunk_raw_range(10, 0), Some((0, 10)));
        assert_eq!(chunk_raw_range(10, 1), None);
        assert_eq!(chunk_raw_range(0, 0), None);
        assert_eq!(chunk_raw_range((1 << 20) + 5, 1), Some((1 << 20, 5)));
        assert_eq!(
            chunk_raw_range(u64::MAX, u32::MAX).map(|r| r.1),
            Some(1 << 20)
        );
    }

    #[test]
    fn round_trip_of_a_reference_segment_block_by_block() {
        let f = fixture();
        let raw = fs::read(&f.segment).unwrap();
        let container_len = fs::metadata(&f.container).unwrap().len();
        assert_eq!(f.stats.raw_bytes, raw.len() as u64);
        assert_eq!(f.stats.compressed_bytes, container_len);
        assert_eq!(f.stats.chunks, 1);
        println!(
            "16-block segment, full of reference events: {} -> {} bytes ({:.1}x)",
            f.stats.raw_bytes,
            f.stats.compressed_bytes,
            f.stats.raw_bytes as f64 / f.stats.compressed_bytes as f64
        );
        // Events are regular and unused padding is zero: LZ4 does far better than 2x.
        assert!(
            f.stats.compressed_bytes * 2 < f.stats.raw_bytes,
            "{:?}",
            f.stats
        );

        let mut dev = Lz4Device::open_read_only(&f.container).unwrap();
        assert_eq!(dev.len_bytes(), raw.len() as u64);
        assert_eq!(dev.capacity_bytes(), raw.len() as u64);
        assert_eq!(dev.write_granularity_bytes(), 4096);
        assert_eq!(dev.raw_xxh64(), xxh64(&raw, 0));
        let mut header = [0u8; 64];
        dev.read_exact_at(0, &mut header).unwrap();
        assert_eq!(&header[..], &raw[..64]);
        let slots = slots_in(raw.len() as u64);
        assert_eq!(slots, 16);
        let mut block = vec![0u8; BLOCK_SIZE_BYTES];
        for slot in 0..slots {
            let at = block_offset_bytes(slot);
            dev.read_exact_at(at, &mut block).unwrap();
            let at = usize::try_from(at).unwrap();
            assert_eq!(&block[..], &raw[at..at + BLOCK_SIZE_BYTES], "slot {slot}");
        }
        assert_eq!(dev.decompressions(), 1);
        dev.verify_contents().unwrap();
        dev.sync().unwrap();
    }

    #[test]
    fn a_multi_chunk_segment_reads_back_exactly_at_random_offsets() {
        let tmp = tempfile::tempdir().unwrap();
        // The length of a segment of 128 slots (about 2 MiB, three chunks); the bytes
        // only need to compress (writing 32768 reference events takes seconds in a
        // debug build).
        let segment = write_file(
            tmp.path(),
            "FS.00000000.wal",
            &compressible(64 + 128 * 16_448, 3),
        );
        let container = compressed_path(&segment);
        let stats = write_v1(&segment, &container);
        let raw = fs::read(&segment).unwrap();
        assert_eq!(raw.len(), 64 + 128 * 16_448);
        assert_eq!(stats.chunks, 3);
        assert!(stats.compressed_bytes * 2 < stats.raw_bytes, "{stats:?}");
        println!(
            "128-block segment of text: {} -> {} bytes ({:.1}x)",
            stats.raw_bytes,
            stats.compressed_bytes,
            stats.raw_bytes as f64 / stats.compressed_bytes as f64
        );

        // Block by block, in order: each chunk is decompressed once, even though blocks
        // straddle the chunk boundaries.
        let mut dev = Lz4Device::open_read_only(&container).unwrap();
        assert_eq!(dev.block_count(), 3);
        let mut block = vec![0u8; BLOCK_SIZE_BYTES];
        for slot in 0..slots_in(raw.len() as u64) {
            let at = block_offset_bytes(slot);
            dev.read_exact_at(at, &mut block).unwrap();
            let at = usize::try_from(at).unwrap();
            assert_eq!(&block[..], &raw[at..at + BLOCK_SIZE_BYTES], "slot {slot}");
        }
        assert_eq!(dev.decompressions(), 3);

        // Reads that straddle boundaries, or cover all chunks at once.
        let chunk = CHUNK_SIZE_BYTES as usize;
        let fixed = [
            (chunk - 10, 20),
            (chunk - 1, 1),
            (chunk, 1),
            (0, raw.len()),
            (chunk - 5, chunk + 10),
            (raw.len() - 1, 1),
            (raw.len(), 0),
        ];
        let mut rng = Rng(0x5eed);
        let random = (0..500).map(|_| {
            let len = usize::try_from(rng.below(3 * 16_448)).unwrap() + 1;
            let offset = usize::try_from(rng.below((raw.len() - len) as u64 + 1)).unwrap();
            (offset, len)
        });
        for (offset, len) in fixed.into_iter().chain(random) {
            let mut buf = vec![0u8; len];
            dev.read_exact_at(offset as u64, &mut buf).unwrap();
            assert_eq!(&buf[..], &raw[offset..offset + len], "{offset}+{len}");
        }

        // Out of range: refused, naming the raw offset, never a panic.
        for (offset, len) in [(raw.len() as u64, 1), (u64::MAX, 2), (1, raw.len())] {
            let e = dev.read_exact_at(offset, &mut vec![0u8; len]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert_eq!(e.offset_bytes, Some(offset));
        }
    }

    #[test]
    fn an_empty_and_a_tiny_source_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        for (name, bytes) in [("empty", Vec::new()), ("tiny", vec![7u8; 5])] {
            let src = tmp.path().join(name);
            fs::write(&src, &bytes).unwrap();
            let dst = compressed_path(&src);
            let stats = write_v1(&src, &dst);
            assert_eq!(stats.raw_bytes, bytes.len() as u64);
            assert_eq!(stats.chunks, u32::from(!bytes.is_empty()));
            assert_eq!(read_all(&dst).unwrap(), bytes);
        }
    }

    #[test]
    fn damaged_header_table_and_chunk_are_invalid_data() {
        let f = fixture();
        let good = fs::read(&f.container).unwrap();
        let path = &f.container;
        let data_start = HEADER_SIZE_BYTES + CHUNK_ENTRY_SIZE_BYTES + 8;
        let damage = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = good.clone();
            edit(&mut bytes);
            fs::write(path, &bytes).unwrap();
            read_all(path).unwrap_err()
        };

        // A bit of the header (in raw_len_bytes), of the magic, of the checksum.
        for at in [10, 0, 60] {
            let e = damage(&|b| b[at] ^= 0x04);
            assert_invalid_data(&e, path);
            assert_eq!(e.op, "open");
        }
        // A bit of the table: its checksum catches it.
        let e = damage(&|b| b[HEADER_SIZE_BYTES + 3] ^= 0x01);
        assert_invalid_data(&e, path);
        assert_eq!(e.offset_bytes, Some(64 + 24));
        // A bit inside the compressed chunk: found when the chunk is read, at the
        // chunk's offset in the container.
        let middle = data_start + (good.len() - data_start) / 2;
        let e = damage(&|b| b[middle] ^= 0x10);
        assert_invalid_data(&e, path);
        assert_eq!(e.offset_bytes, Some(data_start as u64));
        assert!(e.to_string().contains("chunk 0"), "{e}");

        // Truncated anywhere: inside the header, the table, the chunk.
        for len in [0, 30, 70, data_start + 1, good.len() - 1] {
            let e = damage(&|b| b.truncate(len));
            assert_invalid_data(&e, path);
        }
        // Trailing bytes.
        let e = damage(&|b| b.push(0));
        assert_invalid_data(&e, path);
        assert_eq!(e.offset_bytes, Some(good.len() as u64));

        // Forged headers, with recomputed checksums: an absurd chunk count, a segment
        // above the largest, another chunk size, non-zero reserved bytes.
        let e = damage(&|b| {
            b[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
            reseal(b);
        });
        assert_invalid_data(&e, path);
        assert_eq!(e.offset_bytes, Some(CHUNK_COUNT_OFFSET));
        let e = damage(&|b| {
            let len = SEGMENT_SIZE_BYTES_MAX + 1;
            b[8..16].copy_from_slice(&len.to_le_bytes());
            let count = u32::try_from(len.div_ceil(1 << 20)).unwrap();
            b[20..24].copy_from_slice(&count.to_le_bytes());
            reseal(b);
        });
        assert_invalid_data(&e, path);
        assert_eq!(e.offset_bytes, Some(RAW_LEN_OFFSET));
        // The largest segment's count, consistent with its length: the table would be
        // about 200 KB, the file is far shorter.
        let e = damage(&|b| {
            b[8..16].copy_from_slice(&SEGMENT_SIZE_BYTES_MAX.to_le_bytes());
            b[20..24].copy_from_slice(&CHUNK_COUNT_MAX.to_le_bytes());
            reseal(b);
        });
        assert_invalid_data(&e, path);
        let e = damage(&|b| {
            b[16..20].copy_from_slice(&(2u32 << 20).to_le_bytes());
            reseal(b);
        });
        assert_invalid_data(&e, path);
        assert_eq!(e.offset_bytes, Some(CHUNK_BYTES_OFFSET));
        let e = damage(&|b| {
            b[40] = 1;
            reseal(b);
        });
        assert_invalid_data(&e, path);

        // Forged table entries: a chunk past the end of the file, a shifted chunk, an
        // impossible length.
        let entry = HEADER_SIZE_BYTES;
        for (at, value) in [(0, u64::MAX - 3), (0, data_start as u64 + 1)] {
            let e = damage(&|b| {
                b[entry + at..entry + at + 8].copy_from_slice(&value.to_le_bytes());
                reseal(b);
            });
            assert_invalid_data(&e, path);
            assert_eq!(e.offset_bytes, Some(entry as u64));
        }
        for len in [0u32, u32::MAX] {
            let e = damage(&|b| {
                b[entry + 8..entry + 12].copy_from_slice(&len.to_le_bytes());
                reseal(b);
            });
            assert_invalid_data(&e, path);
            assert_eq!(e.offset_bytes, Some(entry as u64));
        }
        // A wrong chunk hash in a well-sealed table: found at read.
        let e = damage(&|b| {
            b[entry + 16] ^= 1;
            reseal(b);
        });
        assert_invalid_data(&e, path);
        assert_eq!(e.op, "decompress");

        // Undamaged, it still reads.
        fs::write(path, &good).unwrap();
        assert_eq!(read_all(path).unwrap(), fs::read(&f.segment).unwrap());
    }

    #[test]
    fn random_single_byte_corruptions_never_panic_nor_pass_as_other_data() {
        let tmp = tempfile::tempdir().unwrap();
        let segment = write_reference_wal(&tmp.path().join("wal"), 600, 16);
        // The first three blocks only, to keep 1000 decompressions quick.
        let small = tmp.path().join("small");
        let raw = fs::read(&segment).unwrap()[..64 + 3 * 16_448].to_vec();
        fs::write(&small, &raw).unwrap();
        let container = compressed_path(&small);
        write_v1(&small, &container);
        let good = fs::read(&container).unwrap();
        let metadata_bytes = HEADER_SIZE_BYTES + CHUNK_ENTRY_SIZE_BYTES + 8;

        let mut rng = Rng(2024);
        let mut detected = 0u32;
        for round in 0..1000 {
            let mut bytes = good.clone();
            // Half of the rounds hit the header and table, which are small but where
            // every field matters.
            let bound = if round % 2 == 0 {
                metadata_bytes
            } else {
                good.len()
            };
            let at = usize::try_from(rng.below(bound as u64)).unwrap();
            let flip = u8::try_from(rng.below(255) + 1).unwrap();
            bytes[at] ^= flip;
            fs::write(&container, &bytes).unwrap();
            match read_all(&container) {
                Err(e) => {
                    assert_invalid_data(&e, &container);
                    detected += 1;
                }
                // LZ4 can encode the same bytes in more than one way (a different
                // match offset in a run of zeros), so a changed byte may decompress to
                // the same segment; it must never decompress to anything else.
                // The header and the table are checksummed byte for byte, so there every
                // change is caught.
                Ok(read) => {
                    assert!(at >= metadata_bytes, "round {round}: byte {at} not caught");
                    assert_eq!(read, raw, "round {round}: byte {at} ^ {flip:#04x}");
                }
            }
        }
        eprintln!("{detected} of 1000 corruptions detected, the rest harmless");
        assert!(detected > 950, "{detected}");
    }

    #[test]
    fn the_committed_container_written_by_the_old_writer_still_reads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fswalz4-v1");
        let path = dir.join("FS.00000000.wal.lz4");
        let mut dev = Lz4Device::open_read_only(&path).unwrap();
        assert_eq!(dev.format(), Lz4Format::FswalContainerV1);
        assert_eq!(dev.len_bytes(), 64 + 80 * 16_448);
        assert_eq!(dev.len_bytes(), 1_315_904);
        assert_eq!(dev.block_count(), 2);
        let mut magic = [0u8; 2];
        dev.read_exact_at(0, &mut magic).unwrap();
        assert_eq!(magic, [0x53, 0x46]);
        dev.verify_contents().unwrap();
        let raw = read_all(&path).unwrap();
        assert_eq!(xxh64(&raw, 0), dev.raw_xxh64());

        let mut one = Lz4Device::open_read_only(&dir.join("FS.00000001.wal.lz4")).unwrap();
        assert_eq!(one.format(), Lz4Format::FswalContainerV1);
        one.verify_contents().unwrap();

        // The events: 1..=20480 in segment 0, 20481 in segment 1, read through the
        // directory store (read-only: the committed files are not touched).
        let mut ids = Vec::new();
        let summary = Replay::new(DirStore::open_read_only(&dir).unwrap(), Mode::Strict)
            .run(|e| ids.push(e.event_id()))
            .unwrap();
        assert_eq!(summary.status, Status::Ok);
        assert_eq!(ids, (1..=20_481).collect::<Vec<u64>>());
    }
}
