//! Sealed segments stored LZ4-compressed: [`compress_segment`] writes one,
//! [`Lz4Device`] reads it back as the segment it holds, and [`recompress`] rewrites
//! any compressed segment in the current format.
//!
//! A sealed segment never changes again, so it may be kept as `FS.%08u.wal.lz4`
//! ([`COMPRESSED_SUFFIX`]) instead of `FS.%08u.wal`. fswal writes it as a **standard
//! LZ4 frame**, which the `lz4` command (`lz4 -t`, `lz4 -d`) and the FlashStrike C++
//! recorder read, followed by a block index in a skippable frame, which LZ4 decoders
//! skip and which gives fswal random access: a read decompresses only the blocks it
//! covers. fswal reads:
//!
//! | file | [`Lz4Format`] | how it is read |
//! |---|---|---|
//! | what fswal writes: one frame of independent 1 MiB blocks, then its index | `Frame { indexed: true, .. }` | random access from the index, checked against the frame's headers at open |
//! | any other standard LZ4 frame, or several concatenated (`cat a.lz4 b.lz4`), with any block size (64 KiB to 4 MiB), linked or independent blocks, with or without block checksums, content checksum and content size; skippable frames anywhere | `Frame { indexed: false, .. }` | decompressed once in full at open, every checksum checked; then random access (see below) |
//! | fswal's earlier container (magic `FSWALZ4\x01`, [`CONTAINER_V1_MAGIC`]) | `FswalContainerV1` | random access from its chunk table |
//!
//! The C++ recorder writes one frame of 4 MiB **linked** blocks without a content
//! checksum: fswal reads it as a foreign frame, and [`recompress`] gives it an index.
//! LZ4's legacy format (`lz4 -l`, magic `02 21 4C 18`) and frames that need an
//! external dictionary are refused.
//!
//! # The format fswal writes
//!
//! Little-endian integers throughout. XXH32 and XXH64 are the standard hashes, seed 0.
//!
//! ```text
//! offset                 size  field
//! ---------------------- ----  --------------------------------------------------------
//! data frame (the standard LZ4 frame format)
//!   0                       4  magic               04 22 4D 18 (FRAME_MAGIC, 0x184D2204)
//!   4                       1  FLG                 0x7C: version 01, B.Indep 1, B.Checksum 1,
//!                                                  C.Size 1, C.Checksum 1, DictID 0
//!   5                       1  BD                  0x60: block maximum size 1 MiB (code 6)
//!   6                       8  content size        u64: the segment's length L
//!  14                       1  HC                  (XXH32(bytes 4..14) >> 8) & 0xFF
//! n = ceil(L / 1 MiB) blocks, back to back from 15; block i holds raw bytes
//! i * 1 MiB .. min((i + 1) * 1 MiB, L)
//!   w_i                     4  size word           u32: stored length s_i, plus 0x80000000
//!                                                  when the block is stored uncompressed
//!   w_i + 4               s_i  block data          LZ4 block format, or the raw bytes when
//!                                                  compressing would not make them smaller
//!   w_i + 4 + s_i           4  block checksum      XXH32(the s_i stored bytes)
//!   E                       4  EndMark             0
//!   E + 4                   4  content checksum    XXH32(the whole segment)
//! index frame (a skippable frame), from F = E + 8 to the end of the file
//!   F                       4  magic               5A 2A 4D 18 (INDEX_SKIPPABLE_MAGIC)
//!   F + 4                   4  frame size          u32: 48 + 24 * n, the payload's length
//!   F + 8                   8  index magic         b"FSWALZI\x01" (INDEX_MAGIC)
//!   F + 16                  8  content length      u64: L
//!   F + 24                  8  raw_xxh64           u64: XXH64(the whole segment)
//!   F + 32                  4  raw block size      u32: 1048576 (FRAME_BLOCK_SIZE_BYTES)
//!   F + 36                  4  block count         u32: n
//!   F + 40                  8  data frame length   u64: F
//!   F + 48 + 24 * i         8  word offset         u64: w_i
//!   F + 48 + 24 * i + 8     4  size word           u32: as stored at w_i
//!   F + 48 + 24 * i + 12    4  reserved            zero
//!   F + 48 + 24 * i + 16    8  block raw_xxh64     u64: XXH64(block i's raw bytes)
//!   F + 48 + 24 * n         8  index checksum      u64: XXH64(bytes F + 8 .. F + 48 + 24 * n)
//! ```
//!
//! ```text
//! +-------+---------+---------+-----+-------------+---------+-----------+-----------------+
//! | frame | block 0 | block 1 | ... | block n - 1 | EndMark | content   | skippable frame |
//! | header| w s c   | w s c   |     | w s c       |         | checksum  | (the index)     |
//! +-------+---------+---------+-----+-------------+---------+-----------+-----------------+
//! 0       15                                       E         E + 4       F               EOF
//! ```
//!
//! Every byte is covered by a checksum or a structural check: the frame's descriptor
//! by HC, each block by its checksum (and, once decompressed, by its hash in the
//! index), the size words and the EndMark by the walk and the index, the content by the
//! content checksum and the index's raw_xxh64, the index by its own checksum.
//!
//! # Reading
//!
//! [`Lz4Device::open_read_only`] tells the formats apart by their first bytes. A file
//! of frames is walked by its headers only: each frame descriptor is checked (version,
//! reserved bits, block maximum size, HC, content size at most
//! [`SEGMENT_SIZE_BYTES_MAX`]), and each block costs one 4-byte read of its size
//! word, which must not exceed the frame's block maximum nor reach past the end of the
//! file; the frames must fill the file exactly, and there may be at most
//! [`DATA_FRAME_COUNT_MAX`] data frames and [`BLOCK_COUNT_MAX`] blocks in all (the
//! largest segment in blocks of the smallest maximum size, 64 KiB).
//!
//! When the file is one data frame followed by an index frame
//! ([`INDEX_SKIPPABLE_MAGIC`]) and nothing else, that frame is taken to be fswal's:
//! its payload must be a valid index (magic, checksum, reserved bytes, length) that
//! matches the walked frame exactly (independent blocks, raw block size equal to the
//! block maximum, content length equal to the frame's content size, block count
//! `ceil(length / block size)`, every entry's word offset and size word equal to the
//! walked block's, the data frame's length), or opening fails. (An index frame whose
//! magic was changed into another skippable frame's is skipped, as decoders do: the
//! file is then read as a foreign frame, fully checked.) The index is never
//! trusted for the data: each block read is checked against its block checksum, its
//! raw length and its hash in the index, so an index copied from another file (or
//! forged with a correct checksum) yields an error, not other bytes.
//!
//! Any other file of frames is decompressed in full at open: every block checksum,
//! every frame's content size and content checksum when present, and the total length
//! (at most [`SEGMENT_SIZE_BYTES_MAX`]) are checked, and each block's raw offset,
//! length and XXH64 recorded; later reads check each block they decompress against
//! that record. A block of linked frames needs the 64 KiB of content before it: the
//! reader keeps the decoder's history after the last block it decoded (so reading
//! forward decompresses each block once) and up to [`SNAPSHOT_COUNT_MAX`] copies of the
//! history, taken at evenly spaced blocks during the pass at open, so that any other
//! read decompresses at most the blocks since the nearest copy: at most
//! `ceil(linked blocks / 64)`, about 1/64 of the segment. A frame starts with no
//! history, so concatenated frames never share one.
//!
//! Every violation is a [`FileError`] of kind `InvalidData` naming the file and the
//! offset in the compressed file where the bad bytes are, and never a panic; nothing
//! is allocated from a field before it is checked against these limits.
//! [`Lz4Device::verify_contents`] makes the full check whatever the format: it
//! decompresses everything and checks every checksum and hash, the content checksum
//! and the index's raw_xxh64 included ([`compress_segment`] and [`recompress`] call it
//! before returning).
//!
//! # Memory
//!
//! Bounded whatever the segment's size. A frame device holds one block's stored bytes
//! and one block's raw bytes (at most 4 MiB each; 1 MiB for what fswal writes), the
//! 64 KiB history and at most [`SNAPSHOT_COUNT_MAX`] copies of it (4 MiB), 40 bytes a
//! block (at most [`BLOCK_COUNT_MAX`] blocks: about 5 MiB; 330 KB for the largest
//! segment fswal writes) and 56 bytes a data frame (at most [`DATA_FRAME_COUNT_MAX`]):
//! under 18 MiB at worst, about 2.5 MiB for the files fswal writes. Opening an indexed
//! file also reads the index whole, briefly (at most 24 bytes a block, twice).
//!
//! # The earlier container
//!
//! fswal wrote this format (magic `FSWALZ4\x01`, [`CONTAINER_V1_MAGIC`]) before it
//! wrote standard frames. Only fswal reads it; it is still read with random access,
//! never written, and [`recompress`] (behind `fswal convert`) turns it into the format
//! above. It is cut into independently compressed chunks of 1 MiB raw bytes in LZ4's
//! *block* format (no frame), listed in a checksummed table.
//!
//! Little-endian integers throughout. XXH64 is the same hash as the segment format's,
//! with the seeds given below.
//!
//! ```text
//! offset                         size  field
//! ------------------------------ ----  -------------------------------------------------
//! header (64 bytes)
//!   0                               8  magic               b"FSWALZ4\x01"
//!   8                               8  raw_len_bytes       u64: the segment's length
//!  16                               4  chunk_bytes         u32: 1048576 (1 MiB)
//!  20                               4  chunk_count         u32: ceil(raw_len_bytes / chunk_bytes)
//!  24                               8  raw_xxh64           u64: XXH64(whole segment, seed 0)
//!  32                              24  reserved            zero
//!  56                               8  header_xxh64        u64: XXH64(bytes 0..56, seed 0)
//! chunk table (chunk_count entries of 24 bytes, then 8 bytes)
//!  64 + 24*i                        8  compressed_offset   u64: from the start of the file
//!  64 + 24*i + 8                    4  compressed_len      u32: bytes of LZ4 block data
//!  64 + 24*i + 12                   4  reserved            zero
//!  64 + 24*i + 16                   8  raw_xxh64           u64: XXH64(chunk's raw bytes, seed 0)
//!  64 + 24*n                        8  table_xxh64         u64: XXH64(the n entries,
//!                                                           seed header_xxh64)
//! chunks (from data_start = 64 + 24*n + 8 to the end of the file)
//!  compressed_offset of chunk i   len  LZ4 block format (no size prefix, no frame)
//! ```
//!
//! ```text
//! +--------+------------------------------+-----------+---------+---------+-----+-----------+
//! | header | entry 0 | entry 1 | ... | n-1 | table_xx  | chunk 0 | chunk 1 | ... | chunk n-1 |
//! +--------+------------------------------+-----------+---------+---------+-----+-----------+
//! 0        64                             64+24n      data_start                       EOF
//! ```
//!
//! Chunk `i` holds the raw bytes `i * chunk_bytes ..` up to the next chunk or the end of
//! the segment, so every chunk but the last has exactly `chunk_bytes` raw bytes. The
//! chunks follow the table back to back in order, and the last one ends at the end of
//! the file: nothing else is in the file.
//!
//! The table checksum is seeded with the header's so that a table is only accepted
//! behind the header it was written with. Together with the per-chunk hashes, every
//! byte of the file is covered by a checksum.
//!
//! Opening checks the magic, the header checksum, the reserved bytes, the chunk size,
//! the segment length (at most [`SEGMENT_SIZE_BYTES_MAX`]) against the chunk count, the
//! table checksum, and that the chunks are contiguous, no longer than LZ4's worst case
//! for their raw length, and end exactly at the end of the file; reading a chunk
//! checks its raw length and hash; the whole-segment hash is checked by
//! [`Lz4Device::verify_contents`]. A container device holds at most one raw and one
//! compressed chunk (about 2 MiB).

use std::boxed::Box;
use std::fmt;
use std::format;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fswal_core::device::{BlockDevice, range_within};
#[cfg(doc)]
use fswal_core::limits::SEGMENT_SIZE_BYTES_MAX;

use crate::file::{FileDevice, FileError, GRANULARITY_BYTES_DEFAULT, SegmentFile};

mod container;
mod fields;
mod frame;
mod index;
#[cfg(test)]
mod test_util;
mod writer;

use container::Container;
use fields::{invalid_data, logic_error};
use frame::FrameReader;

pub use container::CONTAINER_V1_MAGIC;
pub use frame::{
    BLOCK_COUNT_MAX, BLOCK_SIZE_MAX_BYTES, BLOCK_SIZE_MIN_BYTES, DATA_FRAME_COUNT_MAX, FRAME_MAGIC,
    INDEX_SKIPPABLE_MAGIC, SKIPPABLE_MAGIC_FIRST, SKIPPABLE_MAGIC_LAST, SNAPSHOT_COUNT_MAX,
};
pub use index::INDEX_MAGIC;

/// The suffix a compressed segment's file name adds to the segment's name:
/// `FS.00000003.wal` is stored compressed as `FS.00000003.wal.lz4`.
pub const COMPRESSED_SUFFIX: &str = ".lz4";

/// Raw bytes in every block fswal writes but the last (1 MiB, the frame's block
/// maximum size): large enough that the index (24 bytes a block) and LZ4's restart at
/// each block cost little, small enough that a random read decompresses little.
pub const FRAME_BLOCK_SIZE_BYTES: u32 = 1 << 20;

/// How many leading bytes [`is_compressed_magic`] needs to decide.
pub const MAGIC_PROBE_BYTES: usize = 8;

const _: () = assert!(CONTAINER_V1_MAGIC.len() == MAGIC_PROBE_BYTES);
const _: () = assert!(FRAME_BLOCK_SIZE_BYTES >= BLOCK_SIZE_MIN_BYTES);
const _: () = assert!(FRAME_BLOCK_SIZE_BYTES <= BLOCK_SIZE_MAX_BYTES);

/// Whether `head`, the first bytes of a file (up to [`MAGIC_PROBE_BYTES`] of them),
/// starts like a compressed segment: an LZ4 frame's magic, a skippable frame's magic,
/// or fswal's earlier container's ([`CONTAINER_V1_MAGIC`]). A segment file starts
/// with neither.
#[must_use]
pub fn is_compressed_magic(head: &[u8]) -> bool {
    if head.starts_with(&CONTAINER_V1_MAGIC) {
        return true;
    }
    head.first_chunk::<4>()
        .map(|magic| u32::from_le_bytes(*magic))
        .is_some_and(|magic| {
            magic == FRAME_MAGIC || (SKIPPABLE_MAGIC_FIRST..=SKIPPABLE_MAGIC_LAST).contains(&magic)
        })
}

/// Which compressed format a file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lz4Format {
    /// One or more standard LZ4 frames.
    Frame {
        /// The file is one data frame followed by fswal's block index: what fswal
        /// writes, read with random access without decompressing it first.
        indexed: bool,
        /// Some frame has linked blocks (`lz4 -BD`, the C++ recorder's).
        linked: bool,
    },
    /// fswal's earlier container (magic `FSWALZ4\x01`).
    FswalContainerV1,
}

/// What [`compress_segment`] or [`recompress`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompressStats {
    /// Bytes in the segment.
    pub raw_bytes: u64,
    /// Bytes in the file written, frame headers and index included.
    pub compressed_bytes: u64,
    /// LZ4 blocks in the frame written.
    pub blocks: u32,
}

/// Raw bytes kept in numbered blocks, each decompressed on demand: what both readers
/// offer [`read_blocks`].
trait RawBlocks {
    /// The block holding raw byte `position_bytes`, and the raw offset where that
    /// block starts; `None` past the end.
    fn locate(&self, position_bytes: u64) -> Option<(u32, u64)>;

    /// Block `index`'s raw bytes, decompressing (and checking) it unless it is cached.
    fn load(&mut self, path: &Path, index: u32) -> Result<&[u8], FileError>;
}

/// Fills `buf` with the raw bytes at `offset_bytes` of `blocks` (the range checked by
/// the caller), block by block.
fn read_blocks(
    blocks: &mut impl RawBlocks,
    path: &Path,
    offset_bytes: u64,
    buf: &mut [u8],
) -> Result<(), FileError> {
    let mut done = 0usize;
    // Each pass copies at least one byte or fails, so the loop ends.
    while let Some(dst) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
        let position_bytes = u64::try_from(done)
            .ok()
            .and_then(|done| offset_bytes.checked_add(done))
            .ok_or_else(|| logic_error(path, "read position overflows".into()))?;
        let (index, start_bytes) = blocks
            .locate(position_bytes)
            .ok_or_else(|| logic_error(path, format!("no block holds offset {position_bytes}")))?;
        let within = usize::try_from(position_bytes.saturating_sub(start_bytes))
            .map_err(|_| logic_error(path, "block offset does not fit memory".into()))?;
        let src = blocks.load(path, index)?.get(within..).unwrap_or_default();
        let n = src.len().min(dst.len());
        if n == 0 {
            return Err(logic_error(
                path,
                format!("block {index} holds no bytes at offset {position_bytes}"),
            ));
        }
        if let (Some(to), Some(from)) = (dst.get_mut(..n), src.get(..n)) {
            to.copy_from_slice(from);
        }
        done = done.saturating_add(n);
    }
    Ok(())
}

/// The two readers a device may be.
enum Reader {
    Frame(Box<FrameReader>),
    Container(Box<Container>),
}

/// A read-only [`BlockDevice`] over a compressed segment file (any of the formats in
/// the [module docs](self)): it reads as the segment the file holds, decompressing
/// the blocks each read covers. The block read last stays cached, so reading a
/// segment in order decompresses each block once.
pub struct Lz4Device {
    path: PathBuf,
    /// The file's length when it was opened.
    file_len_bytes: u64,
    reader: Reader,
}

impl fmt::Debug for Lz4Device {
    /// The path and the shape of the file, not the buffers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Lz4Device");
        s.field("path", &self.path)
            .field("format", &self.format())
            .field("file_len_bytes", &self.file_len_bytes)
            .field("raw_len_bytes", &self.len_bytes())
            .field("block_count", &self.block_count());
        match &self.reader {
            Reader::Frame(r) => s.field("frames", r),
            Reader::Container(r) => s.field("container", r),
        };
        s.finish_non_exhaustive()
    }
}

impl Lz4Device {
    /// Opens the compressed segment at `path`, telling its format from its first bytes,
    /// and checks it (see the module docs: an indexed frame or a container by its
    /// headers, any other frame by decompressing it once). Fails with `InvalidData`,
    /// naming the file and the offset, if anything is wrong.
    pub fn open_read_only(path: &Path) -> Result<Self, FileError> {
        let file = File::open(path).map_err(|e| FileError::new("open", path, None, e))?;
        let file_len_bytes = crate::file::regular_file_metadata(&file, path)?.len();
        let mut head = [0u8; MAGIC_PROBE_BYTES];
        let probe = usize::try_from(file_len_bytes.min(MAGIC_PROBE_BYTES as u64)).unwrap_or(0);
        let head = head.get_mut(..probe).unwrap_or_default();
        file.read_exact_at(head, 0)
            .map_err(|e| FileError::new("read", path, Some(0), e))?;
        let reader = if head.starts_with(&CONTAINER_V1_MAGIC) {
            Reader::Container(Box::new(Container::open(file, path, file_len_bytes)?))
        } else if head.len() >= 4 {
            // The walk refuses what is not a frame, naming the magic it found.
            Reader::Frame(Box::new(FrameReader::open(file, path, file_len_bytes)?))
        } else {
            return Err(invalid_data(
                "open",
                path,
                0,
                format!(
                    "not a compressed segment: {file_len_bytes} bytes, too short for any magic"
                ),
            ));
        };
        Ok(Self {
            path: path.to_path_buf(),
            file_len_bytes,
            reader,
        })
    }

    /// The file this device reads.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's format.
    #[must_use]
    pub fn format(&self) -> Lz4Format {
        match &self.reader {
            Reader::Frame(r) => Lz4Format::Frame {
                indexed: r.indexed(),
                linked: r.linked(),
            },
            Reader::Container(_) => Lz4Format::FswalContainerV1,
        }
    }

    /// The compressed file's length in bytes.
    #[must_use]
    pub fn compressed_len_bytes(&self) -> u64 {
        self.file_len_bytes
    }

    /// The number of LZ4 blocks (all frames together), or of a container's chunks.
    #[must_use]
    pub fn block_count(&self) -> u32 {
        match &self.reader {
            Reader::Frame(r) => r.block_count(),
            Reader::Container(r) => r.chunk_count(),
        }
    }

    /// The XXH64 (seed 0) of the whole segment: as fswal's index or the container's
    /// header records it (checked by [`Lz4Device::verify_contents`]), or as computed
    /// when a frame without an index was decompressed at open.
    #[must_use]
    pub fn raw_xxh64(&self) -> u64 {
        match &self.reader {
            Reader::Frame(r) => r.raw_xxh64(),
            Reader::Container(r) => r.raw_xxh64(),
        }
    }

    /// The offset in the file of the recorded whole-segment hash (0 when it was
    /// computed at open).
    fn raw_xxh64_at(&self) -> u64 {
        match &self.reader {
            Reader::Frame(r) => r.raw_xxh64_at().unwrap_or(0),
            Reader::Container(_) => Container::raw_xxh64_at(),
        }
    }

    /// Decompresses everything and checks every checksum and hash the format has,
    /// the whole segment's included: the full check that opening an indexed frame or
    /// a container (which reads only their headers) does not make.
    pub fn verify_contents(&mut self) -> Result<(), FileError> {
        match &mut self.reader {
            Reader::Frame(r) => r.verify_contents(&self.path),
            Reader::Container(r) => r.verify_contents(&self.path),
        }
    }

    /// Blocks (or chunks) decompressed so far, for tests of what the caches save.
    #[cfg(test)]
    fn decompressions(&self) -> u64 {
        match &self.reader {
            Reader::Frame(r) => r.decompressions(),
            Reader::Container(r) => r.decompressions(),
        }
    }

    /// The frame reader, for tests.
    #[cfg(test)]
    fn frames(&self) -> Option<&FrameReader> {
        match &self.reader {
            Reader::Frame(r) => Some(r),
            Reader::Container(_) => None,
        }
    }
}

impl BlockDevice for Lz4Device {
    type Error = FileError;

    /// The page size: reads go through the page cache, and the device is never
    /// written, so this only matters to code that aligns its reads.
    fn write_granularity_bytes(&self) -> u32 {
        GRANULARITY_BYTES_DEFAULT
    }

    /// The length of the segment the file holds, not of the file.
    fn len_bytes(&self) -> u64 {
        match &self.reader {
            Reader::Frame(r) => r.content_len_bytes(),
            Reader::Container(r) => r.raw_len_bytes(),
        }
    }

    /// The segment's length: a compressed segment never grows.
    fn capacity_bytes(&self) -> u64 {
        self.len_bytes()
    }

    /// Reads raw segment bytes, decompressing every block the range covers (the block
    /// read last stays cached). Errors of the range name the raw offset; errors of the
    /// data name the offset in the file of the bad block.
    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), FileError> {
        let len_bytes = self.len_bytes();
        if !range_within(offset_bytes, buf.len(), len_bytes) {
            return Err(FileError::custom(
                "read",
                self.path.as_path(),
                Some(offset_bytes),
                io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes asked for, past the end of the segment ({len_bytes} bytes)",
                    buf.len()
                ),
            ));
        }
        match &mut self.reader {
            Reader::Frame(r) => read_blocks(r.as_mut(), &self.path, offset_bytes, buf),
            Reader::Container(r) => read_blocks(r.as_mut(), &self.path, offset_bytes, buf),
        }
    }

    /// Always fails with `PermissionDenied`: a compressed segment is sealed.
    fn write_all_at(&mut self, offset_bytes: u64, _buf: &[u8]) -> Result<(), FileError> {
        Err(FileError::custom(
            "write",
            self.path.as_path(),
            Some(offset_bytes),
            io::ErrorKind::PermissionDenied,
            "a compressed segment is read-only",
        ))
    }

    /// Nothing to do: the device is never written.
    fn sync(&mut self) -> Result<(), FileError> {
        Ok(())
    }
}

impl SegmentFile for Lz4Device {
    /// Opens the file read-only; asking for a writable device fails with
    /// `PermissionDenied`, since a compressed segment is sealed.
    fn open(path: &Path, writable: bool) -> Result<Self, FileError> {
        if writable {
            return Err(FileError::custom(
                "open",
                path,
                None,
                io::ErrorKind::PermissionDenied,
                "a compressed segment cannot be opened for writing",
            ));
        }
        Self::open_read_only(path)
    }

    /// Always fails with `Unsupported`: compressed segments are made by
    /// [`compress_segment`] from sealed segments, never created empty.
    fn create(path: &Path, _size_bytes: u64, _initial: &[u8]) -> Result<Self, FileError> {
        Err(FileError::custom(
            "create",
            path,
            None,
            io::ErrorKind::Unsupported,
            "compressed segments are made by compress_segment, not created",
        ))
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the device a new path after its file was renamed, so that its errors name
    /// the file as it is now called.
    fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }
}

/// Compresses the segment file `src` into a new file at `dst`, in the format of the
/// [module docs](self).
///
/// `src` is read one block at a time (never all in memory). `dst` is created with
/// `create_new`, so an existing file there makes this fail with `AlreadyExists` and is
/// left alone; it is written, synced with `sync_all`, then opened through
/// [`Lz4Device`] and checked in full ([`Lz4Device::verify_contents`]), and its XXH64
/// compared with that of the bytes read from `src`, before this returns. On any
/// failure after creating `dst`, the partly written `dst` is removed, so that a retry
/// is not refused with `AlreadyExists`. A source above [`SEGMENT_SIZE_BYTES_MAX`] is
/// refused with `InvalidInput` before `dst` is created.
///
/// Nothing is renamed and `src` is not touched: replacing the segment by its compressed
/// file (and syncing the directory) is the directory store's job.
pub fn compress_segment(src: &Path, dst: &Path) -> Result<CompressStats, FileError> {
    let mut source = FileDevice::open_read_only(src)?;
    writer::write_new(&mut source, src, dst, |_| Ok(()))
}

/// Rewrites the compressed segment `src`, in any format [`Lz4Device`] reads (fswal's
/// earlier container, a foreign frame without fswal's index, or the current format),
/// as a new file `dst` in the current format, with the same contract as
/// [`compress_segment`]: `dst` is created new, synced, read back in full and compared
/// with the bytes decompressed from `src` (whose own whole-segment hash, when it
/// records one, must match them too) before this returns, and removed on failure.
/// `src` is not touched.
pub fn recompress(src: &Path, dst: &Path) -> Result<CompressStats, FileError> {
    let mut source = Lz4Device::open_read_only(src)?;
    let recorded = source.raw_xxh64();
    let recorded_at = source.raw_xxh64_at();
    writer::write_new(&mut source, src, dst, |digest| {
        if digest == recorded {
            Ok(())
        } else {
            Err(invalid_data(
                "verify",
                src,
                recorded_at,
                format!(
                    "the segment decompresses to bytes hashing to {digest:#018x}, the file records {recorded:#018x}"
                ),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::eprintln;
    use std::fs;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    use embedded_io::{Error as _, ErrorKind};
    use fswal_core::{Mode, Replay, Status};
    use xxhash_rust::xxh64::xxh64;

    use super::test_util::{
        Rng, assert_invalid_data, check_random_reads, compressed_path, compressible, cpp_vectors,
        incompressible, lz4_cli, p, read_all, read_and_verify, read_device, run_lz4, write_file,
    };
    use super::*;
    use crate::dir::DirStore;

    /// The outcome of reading `path` whole and then checking it in full: the bytes
    /// read must be `raw` whenever reading succeeds.
    fn outcome(path: &Path, raw: &[u8]) -> Result<(), FileError> {
        let mut dev = Lz4Device::open_read_only(path)?;
        let bytes = read_device(&mut dev)?;
        assert!(
            bytes == raw,
            "{}: other bytes than the segment's",
            path.display()
        );
        dev.verify_contents()
    }

    #[test]
    fn compressed_magics_are_recognized() {
        for (head, expected) in [
            (&b"\x04\x22\x4d\x18\x64\x40\xa7\x00"[..], true),
            (b"\x04\x22\x4d\x18", true),
            (b"\x50\x2a\x4d\x18\x00\x00\x00\x00", true),
            (b"\x5f\x2a\x4d\x18", true),
            (b"\x5a\x2a\x4d\x18", true),
            (b"\x60\x2a\x4d\x18", false),
            (b"\x4f\x2a\x4d\x18", false),
            (b"FSWALZ4\x01", true),
            (b"FSWALZ4\x02", false),
            (b"FSWALZ4", false),
            (b"SF\x01\x40\x00\x00\x00\x00", false),
            (b"\x02\x21\x4c\x18", false),
            (b"\x04\x22\x4d", false),
            (b"", false),
        ] {
            assert_eq!(is_compressed_magic(head), expected, "{head:02x?}");
        }
        assert_eq!(MAGIC_PROBE_BYTES, 8);
        assert_eq!(COMPRESSED_SUFFIX, ".lz4");
        assert_eq!(BLOCK_COUNT_MAX, 131_585);
    }

    /// Compresses `src` with `lz4 args` into `dst`.
    fn lz4_compress(lz4: &Path, args: &[&str], src: &Path, dst: &Path) {
        let mut all = vec!["-q", "-f"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[p(src), p(dst)]);
        run_lz4(lz4, &all);
    }

    #[test]
    fn files_made_by_the_lz4_command_read_back_exactly() {
        let Some(lz4) = lz4_cli() else { return };
        let tmp = tempfile::tempdir().unwrap();
        // Compressible text, noise (stored uncompressed), zeros: about 1.3 MiB.
        let mut small = compressible(900_000, 21);
        small.extend_from_slice(&incompressible(200_000, 22));
        small.resize(1_315_904, 0);
        // Above 4 MiB, for several blocks of the largest size.
        let mut large = compressible(4 << 20, 23);
        large.extend_from_slice(&incompressible(300_000, 24));
        let small_src = write_file(tmp.path(), "small", &small);
        let large_src = write_file(tmp.path(), "large", &large);
        let cases: [(&[&str], bool, bool); 15] = [
            (&["-B4"], false, false),
            (&["-B5"], false, false),
            (&["-B6"], false, false),
            (&["-B7"], false, false),
            (&["-B7"], true, false),
            (&["-BD"], true, true),
            (&["-B4", "-BD"], false, true),
            (&["-B6", "-BD"], false, true),
            (&["-BX"], false, false),
            (&["--no-frame-crc"], false, false),
            (&["--content-size"], false, false),
            (
                &["-B5", "-BD", "-BX", "--content-size", "--no-frame-crc"],
                false,
                true,
            ),
            (&["-B1000", "-BD"], false, true),
            (&["-B100000", "-BX"], false, false),
            (&["-9", "-B4", "-BD"], false, true),
        ];
        for (i, (args, use_large, linked)) in cases.into_iter().enumerate() {
            let (src, raw) = if use_large {
                (&large_src, &large)
            } else {
                (&small_src, &small)
            };
            let dst = tmp.path().join(std::format!("{i}.lz4"));
            lz4_compress(&lz4, args, src, &dst);
            let mut dev = Lz4Device::open_read_only(&dst).unwrap();
            assert_eq!(
                dev.format(),
                Lz4Format::Frame {
                    indexed: false,
                    linked
                },
                "{args:?}"
            );
            assert!(read_device(&mut dev).unwrap() == *raw, "{args:?}");
            check_random_reads(&mut dev, raw, i as u64, 40);
            dev.verify_contents().unwrap();
            assert_eq!(dev.raw_xxh64(), xxh64(raw, 0));
        }

        // Two frames concatenated read as their concatenation, as `lz4 -d` gives.
        let a = tmp.path().join("a.lz4");
        let b = tmp.path().join("b.lz4");
        lz4_compress(&lz4, &["-B4", "-BD"], &small_src, &a);
        lz4_compress(&lz4, &["-B5", "--content-size", "-BX"], &large_src, &b);
        let both = [fs::read(&a).unwrap(), fs::read(&b).unwrap()].concat();
        let ab = write_file(tmp.path(), "ab.lz4", &both);
        let mut whole = small.clone();
        whole.extend_from_slice(&large);
        assert!(run_lz4(&lz4, &["-d", "-c", "-q", p(&ab)]) == whole);
        let mut dev = Lz4Device::open_read_only(&ab).unwrap();
        assert_eq!(
            dev.format(),
            Lz4Format::Frame {
                indexed: false,
                linked: true
            }
        );
        assert!(read_device(&mut dev).unwrap() == whole);
        check_random_reads(&mut dev, &whole, 99, 40);
        dev.verify_contents().unwrap();

        // Two of fswal's files concatenated: no longer indexed, still read.
        let x = compressed_path(&small_src);
        compress_segment(&small_src, &x).unwrap();
        let xx = write_file(tmp.path(), "xx.lz4", &fs::read(&x).unwrap().repeat(2));
        let mut dev = Lz4Device::open_read_only(&xx).unwrap();
        assert_eq!(
            dev.format(),
            Lz4Format::Frame {
                indexed: false,
                linked: false
            }
        );
        assert!(read_device(&mut dev).unwrap() == small.repeat(2));
    }

    #[test]
    fn the_cpp_recorders_compressed_segment_reads_as_its_segment() {
        let Some(lz4_dir) = cpp_vectors("flashstrike-lz4") else {
            return;
        };
        let Some(ref_dir) = cpp_vectors("flashstrike-ref-3seg") else {
            return;
        };
        let path = lz4_dir.join("FS.00000000.wal.lz4");
        let mut dev = Lz4Device::open_read_only(&path).unwrap();
        assert_eq!(
            dev.format(),
            Lz4Format::Frame {
                indexed: false,
                linked: true
            }
        );
        assert_eq!(dev.len_bytes(), 263_232);
        let raw = read_device(&mut dev).unwrap();
        dev.verify_contents().unwrap();
        // The same layout and events as the reference segment written by the same code:
        // only the header's timestamps (and so its checksum) differ.
        let reference = fs::read(ref_dir.join("FS.00000000.wal")).unwrap();
        assert_eq!(raw.len(), reference.len());
        assert_eq!(raw[..32], reference[..32]);
        assert!(raw[56..] == reference[56..]);
        check_random_reads(&mut dev, &raw, 7, 100);
        if let Some(lz4) = lz4_cli() {
            assert!(run_lz4(&lz4, &["-d", "-c", "-q", p(&path)]) == raw);
        }

        // The directory replays, the compressed segment read through the store.
        let mut ids = Vec::new();
        let summary = Replay::new(DirStore::open_read_only(&lz4_dir).unwrap(), Mode::Strict)
            .run(|e| ids.push(e.event_id()))
            .unwrap();
        assert_eq!(summary.status, Status::Ok);
        assert_eq!(ids, (1..=10_000).collect::<Vec<u64>>());

        // Rewritten with fswal's index: the same bytes, with random access.
        let tmp = tempfile::tempdir().unwrap();
        let dst = tmp.path().join("FS.00000000.wal.lz4");
        let stats = recompress(&path, &dst).unwrap();
        assert_eq!(stats.raw_bytes, 263_232);
        assert_eq!(stats.blocks, 1);
        let mut dev = Lz4Device::open_read_only(&dst).unwrap();
        assert_eq!(
            dev.format(),
            Lz4Format::Frame {
                indexed: true,
                linked: false
            }
        );
        assert!(read_device(&mut dev).unwrap() == raw);
    }

    #[test]
    fn recompress_turns_the_old_container_into_a_standard_frame() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fswalz4-v1");
        let tmp = tempfile::tempdir().unwrap();
        for name in ["FS.00000000.wal.lz4", "FS.00000001.wal.lz4"] {
            let src = fixture.join(name);
            let raw = read_and_verify(&src).unwrap();
            let dst = tmp.path().join(name);
            let stats = recompress(&src, &dst).unwrap();
            assert_eq!(stats.raw_bytes, raw.len() as u64);
            assert_eq!(stats.compressed_bytes, fs::metadata(&dst).unwrap().len());
            let mut dev = Lz4Device::open_read_only(&dst).unwrap();
            assert_eq!(
                dev.format(),
                Lz4Format::Frame {
                    indexed: true,
                    linked: false
                }
            );
            assert!(read_device(&mut dev).unwrap() == raw, "{name}");
            dev.verify_contents().unwrap();
            if let Some(lz4) = lz4_cli() {
                run_lz4(&lz4, &["-t", "-q", p(&dst)]);
                assert!(run_lz4(&lz4, &["-d", "-c", "-q", p(&dst)]) == raw, "{name}");
            }
            // Again, from the new file: the same file.
            let again = tmp.path().join("again.lz4");
            recompress(&dst, &again).unwrap();
            assert!(fs::read(&again).unwrap() == fs::read(&dst).unwrap());
            fs::remove_file(&again).unwrap();
        }
        let e = recompress(
            &fixture.join("FS.00000001.wal.lz4"),
            &tmp.path().join("FS.00000001.wal.lz4"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);

        // A container whose header records another hash than its chunks hold: refused,
        // and nothing left behind.
        let mut bytes = fs::read(fixture.join("FS.00000001.wal.lz4")).unwrap();
        bytes[24] ^= 1;
        let n = 56;
        let sum = xxh64(&bytes[..n], 0);
        bytes[n..n + 8].copy_from_slice(&sum.to_le_bytes());
        // The table checksum is seeded with the header's.
        let count = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
        let end = 64 + 24 * count;
        let table = xxh64(&bytes[64..end], sum);
        bytes[end..end + 8].copy_from_slice(&table.to_le_bytes());
        let src = write_file(tmp.path(), "forged.lz4", &bytes);
        let dst = tmp.path().join("out.lz4");
        let e = recompress(&src, &dst).unwrap_err();
        assert_invalid_data(&e, &src);
        assert_eq!(e.offset_bytes, Some(24));
        assert!(!dst.exists());
    }

    #[test]
    fn recompress_indexes_a_foreign_frame() {
        let Some(lz4) = lz4_cli() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let raw = compressible(2_500_000, 31);
        let src = write_file(tmp.path(), "seg", &raw);
        let foreign = tmp.path().join("foreign.lz4");
        lz4_compress(&lz4, &["-B4", "-BD"], &src, &foreign);
        let dst = tmp.path().join("indexed.lz4");
        let stats = recompress(&foreign, &dst).unwrap();
        assert_eq!(stats.blocks, 3);
        run_lz4(&lz4, &["-t", "-q", p(&dst)]);
        let mut dev = Lz4Device::open_read_only(&dst).unwrap();
        assert_eq!(
            dev.format(),
            Lz4Format::Frame {
                indexed: true,
                linked: false
            }
        );
        assert_eq!(
            dev.decompressions(),
            0,
            "opening an indexed file decompresses nothing"
        );
        check_random_reads(&mut dev, &raw, 5, 50);
    }

    /// A segment of three 64 KiB blocks (compressible, stored raw, short) in fswal's
    /// format, and the offsets of its structures.
    struct Written {
        _tmp: tempfile::TempDir,
        path: PathBuf,
        raw: Vec<u8>,
        good: Vec<u8>,
        /// Offsets of each block's size word, and its stored length.
        blocks: Vec<(usize, usize)>,
        end_mark: usize,
        index_frame: usize,
    }

    fn written() -> Written {
        let tmp = tempfile::tempdir().unwrap();
        let mut raw = compressible(64 << 10, 41);
        raw.extend_from_slice(&incompressible(64 << 10, 42));
        raw.extend_from_slice(&compressible(10_000, 43));
        let src = write_file(tmp.path(), "seg", &raw);
        let path = compressed_path(&src);
        let mut source = FileDevice::open_read_only(&src).unwrap();
        writer::write_new_with_block_size(&mut source, &src, &path, 64 << 10, |_| Ok(())).unwrap();
        let good = fs::read(&path).unwrap();
        let mut blocks = Vec::new();
        let mut at = 15;
        for _ in 0..3 {
            let word = u32::from_le_bytes(good[at..at + 4].try_into().unwrap());
            let stored = (word & 0x7FFF_FFFF) as usize;
            blocks.push((at, stored));
            at += 8 + stored;
        }
        Written {
            _tmp: tmp,
            path,
            raw,
            good,
            blocks,
            end_mark: at,
            index_frame: at + 8,
        }
    }

    #[test]
    fn every_truncation_is_invalid_data_or_the_same_segment() {
        let w = written();
        let f = w.index_frame;
        let mut points = vec![0, 1, 3, 4, 5, 6, 10, 14, 15, 16, 18, 19];
        for &(at, stored) in &w.blocks {
            points.extend_from_slice(&[
                at,
                at + 2,
                at + 4,
                at + 4 + stored / 2,
                at + 4 + stored,
                at + 6 + stored,
            ]);
        }
        points.extend_from_slice(&[w.end_mark, w.end_mark + 2, w.end_mark + 4, w.end_mark + 6]);
        points.extend_from_slice(&[
            f + 2,
            f + 4,
            f + 6,
            f + 8,
            f + 16,
            f + 48,
            f + 60,
            w.good.len() - 8,
            w.good.len() - 1,
        ]);
        for len in points {
            fs::write(&w.path, &w.good[..len]).unwrap();
            let e = outcome(&w.path, &w.raw).unwrap_err();
            assert_invalid_data(&e, &w.path);
            assert!(e.offset_bytes.unwrap() <= len as u64, "cut at {len}: {e}");
        }
        // Cut just after the data frame: a standard frame without an index, read in
        // full at open.
        fs::write(&w.path, &w.good[..f]).unwrap();
        outcome(&w.path, &w.raw).unwrap();
        let dev = Lz4Device::open_read_only(&w.path).unwrap();
        assert_eq!(
            dev.format(),
            Lz4Format::Frame {
                indexed: false,
                linked: false
            }
        );
        fs::write(&w.path, &w.good).unwrap();
        outcome(&w.path, &w.raw).unwrap();
    }

    #[test]
    fn a_changed_byte_in_any_field_is_invalid_data() {
        let w = written();
        let f = w.index_frame;
        let payload = f + 8;
        let n = 3;
        let checksum = payload + 40 + 24 * n;
        let (b0, s0) = w.blocks[0];
        let (b1, s1) = w.blocks[1];
        // (field, byte changed, offset the error names, if it is certain)
        let fields: Vec<(&str, usize, Option<usize>)> = vec![
            ("magic", 1, Some(0)),
            ("FLG", 4, None),
            ("BD", 5, None),
            ("content size", 9, Some(14)),
            ("header checksum", 14, Some(14)),
            ("block 0 size word", b0 + 1, None),
            ("block 0 data", b0 + 4 + s0 / 2, Some(b0 + 4)),
            ("block 0 checksum", b0 + 4 + s0 + 1, Some(b0 + 4)),
            ("block 1 size word (uncompressed bit)", b1 + 3, None),
            ("block 1 data", b1 + 4 + s1 - 1, Some(b1 + 4)),
            ("block 1 checksum", b1 + 4 + s1, Some(b1 + 4)),
            ("EndMark", w.end_mark, None),
            ("content checksum", w.end_mark + 5, Some(w.end_mark + 4)),
            ("index frame magic", f + 3, Some(f)),
            ("index frame size", f + 4, Some(f + 4)),
            ("index magic", payload + 2, Some(payload)),
            ("content length", payload + 8, Some(checksum)),
            ("raw_xxh64", payload + 16, Some(checksum)),
            ("raw block size", payload + 26, Some(checksum)),
            ("block count", payload + 28, Some(checksum)),
            ("data frame length", payload + 32, Some(checksum)),
            ("entry 1 word offset", payload + 40 + 24, Some(checksum)),
            ("entry 1 size word", payload + 40 + 24 + 8, Some(checksum)),
            ("entry 1 reserved", payload + 40 + 24 + 12, Some(checksum)),
            ("entry 1 raw_xxh64", payload + 40 + 24 + 16, Some(checksum)),
            ("index checksum", checksum + 7, Some(checksum)),
        ];
        for (field, at, expected) in fields {
            for flip in [0x01u8, 0x80] {
                let mut bytes = w.good.clone();
                bytes[at] ^= flip;
                fs::write(&w.path, &bytes).unwrap();
                let e = outcome(&w.path, &w.raw).unwrap_err();
                assert_invalid_data(&e, &w.path);
                if let Some(expected) = expected {
                    assert_eq!(
                        e.offset_bytes,
                        Some(expected as u64),
                        "{field} ^ {flip:#x}: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn random_single_byte_changes_never_panic_nor_pass_as_other_data() {
        let w = written();
        let mut rng = Rng(2026);
        let mut detected = 0u32;
        let rounds = 1000;
        for round in 0..rounds {
            let mut bytes = w.good.clone();
            // Half of the rounds hit the headers, the words and the index.
            let at = if round % 2 == 0 {
                let structural = [15, w.blocks[1].0, w.blocks[2].0, w.end_mark, w.index_frame];
                let base = structural[rng.index(structural.len())];
                let span = if base == w.index_frame {
                    bytes.len() - base
                } else {
                    8
                };
                if rng.below(3) == 0 {
                    rng.index(15)
                } else {
                    base + rng.index(span)
                }
            } else {
                rng.index(bytes.len())
            };
            let flip = 1 + u8::try_from(rng.below(255)).unwrap();
            bytes[at] ^= flip;
            fs::write(&w.path, &bytes).unwrap();
            match outcome(&w.path, &w.raw) {
                Err(e) => {
                    assert_invalid_data(&e, &w.path);
                    detected += 1;
                }
                // Only one change leaves a readable file: the index frame's magic turned
                // into another skippable frame's, which decoders skip; the frame is then
                // read and checked in full.
                Ok(()) => {
                    assert_eq!(
                        at, w.index_frame,
                        "round {round}: byte {at} ^ {flip:#04x} not caught"
                    );
                    assert!(flip < 0x10);
                }
            }
        }
        eprintln!("{detected} of {rounds} changes detected, the rest harmless");
        assert!(detected > rounds - 20, "{detected}");
    }

    #[test]
    fn an_index_from_another_file_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        // Two segments of noise of the same length: every block is stored raw, so
        // their frames have the same structure and either index matches either frame.
        let a = incompressible(2_500_000, 51);
        let b = incompressible(2_500_000, 52);
        let a_src = write_file(tmp.path(), "a", &a);
        let b_src = write_file(tmp.path(), "b", &b);
        compress_segment(&a_src, &compressed_path(&a_src)).unwrap();
        compress_segment(&b_src, &compressed_path(&b_src)).unwrap();
        let a_file = fs::read(compressed_path(&a_src)).unwrap();
        let b_file = fs::read(compressed_path(&b_src)).unwrap();
        assert_eq!(a_file.len(), b_file.len());
        let f = a_file.len() - (8 + 48 + 24 * 3);
        let spliced = [&a_file[..f], &b_file[f..]].concat();
        let path = write_file(tmp.path(), "spliced.lz4", &spliced);
        // The index matches the frame's structure, so opening trusts it for the raw
        // offsets; every block read is checked against it and refused.
        let mut dev = Lz4Device::open_read_only(&path).unwrap();
        assert_eq!(
            dev.format(),
            Lz4Format::Frame {
                indexed: true,
                linked: false
            }
        );
        for block in 0..3u64 {
            let e = dev.read_exact_at(block << 20, &mut [0u8; 10]).unwrap_err();
            assert_invalid_data(&e, &path);
            assert!(e.to_string().contains("fswal's block index says"), "{e}");
        }
        assert_invalid_data(&dev.verify_contents().unwrap_err(), &path);

        // Forged with a correct checksum: another content length, another block size,
        // a shifted entry: refused at open.
        let reseal = |bytes: &mut Vec<u8>| {
            let end = bytes.len() - 8;
            let sum = xxh64(&bytes[f + 8..end], 0);
            bytes[end..].copy_from_slice(&sum.to_le_bytes());
        };
        for (field, at, value) in [
            (
                "content length",
                f + 16,
                2_400_000u64.to_le_bytes().to_vec(),
            ),
            (
                "raw block size",
                f + 32,
                (256u32 << 10).to_le_bytes().to_vec(),
            ),
            (
                "data frame length",
                f + 40,
                (f as u64 + 1).to_le_bytes().to_vec(),
            ),
            ("entry 0 word offset", f + 48, 16u64.to_le_bytes().to_vec()),
            (
                "entry 2 size word",
                f + 48 + 48 + 8,
                100u32.to_le_bytes().to_vec(),
            ),
        ] {
            let mut bytes = a_file.clone();
            bytes[at..at + value.len()].copy_from_slice(&value);
            reseal(&mut bytes);
            fs::write(&path, &bytes).unwrap();
            let e = Lz4Device::open_read_only(&path).unwrap_err();
            assert_invalid_data(&e, &path);
            assert_eq!(e.offset_bytes, Some(at as u64), "{field}: {e}");
        }
        // A forged whole-segment hash: only the full check can tell.
        let mut bytes = a_file.clone();
        bytes[f + 24] ^= 1;
        reseal(&mut bytes);
        fs::write(&path, &bytes).unwrap();
        let mut dev = Lz4Device::open_read_only(&path).unwrap();
        assert!(read_device(&mut dev).unwrap() == a);
        let e = dev.verify_contents().unwrap_err();
        assert_invalid_data(&e, &path);
        assert_eq!(e.offset_bytes, Some(f as u64 + 24));
    }

    #[test]
    fn the_device_is_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let src = write_file(tmp.path(), "FS.00000000.wal", &compressible(100_000, 61));
        let path = compressed_path(&src);
        compress_segment(&src, &path).unwrap();
        let e = <Lz4Device as SegmentFile>::open(&path, true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains(&path.display().to_string()));
        let e = <Lz4Device as SegmentFile>::create(&path, 4096, b"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);

        let mut dev = <Lz4Device as SegmentFile>::open(&path, false).unwrap();
        assert_eq!(dev.write_granularity_bytes(), 4096);
        assert_eq!(dev.capacity_bytes(), 100_000);
        assert_eq!(
            dev.compressed_len_bytes(),
            fs::metadata(&path).unwrap().len()
        );
        assert_eq!(dev.path(), path.as_path());
        let e = dev.write_all_at(0, b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.offset_bytes, Some(0));
        dev.sync().unwrap();
        // Out of range: refused, naming the raw offset, never a panic.
        for (offset, len) in [(100_000u64, 1usize), (u64::MAX, 2), (1, 100_000)] {
            let e = dev.read_exact_at(offset, &mut vec![0u8; len]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert_eq!(e.offset_bytes, Some(offset));
        }
        dev.read_exact_at(100_000, &mut []).unwrap();

        // Renamed: errors name the new path.
        let renamed = path.with_extension("moved");
        SegmentFile::set_path(&mut dev, renamed.clone());
        assert_eq!(SegmentFile::path(&dev), renamed.as_path());
        let e = dev.write_all_at(0, b"x").unwrap_err();
        assert!(e.to_string().starts_with(&renamed.display().to_string()));
        // Debug shows the shape, not the buffers.
        dev.read_exact_at(0, &mut [0u8; 10]).unwrap();
        let debug = std::format!("{dev:?}");
        assert!(debug.contains("raw_len_bytes: 100000"), "{debug}");
        assert!(debug.contains("indexed: true"), "{debug}");
        assert!(debug.len() < 600, "{debug}");

        // Not a regular file.
        let e = Lz4Device::open_read_only(tmp.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // A plain segment, and files too short for a magic.
        let e = Lz4Device::open_read_only(&src).unwrap_err();
        assert_invalid_data(&e, &src);
        assert!(e.to_string().contains("magic"), "{e}");
        for len in 0..4 {
            let short = write_file(tmp.path(), "short", &[0x04, 0x22, 0x4D][..len.min(3)]);
            let e = Lz4Device::open_read_only(&short).unwrap_err();
            assert_invalid_data(&e, &short);
        }
    }

    #[test]
    fn segments_compress_through_the_directory_store_and_replay() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let segment = super::test_util::write_reference_wal(&dir, 1_000, 16);
        let raw = fs::read(&segment).unwrap();
        let path = compressed_path(&segment);
        let stats = compress_segment(&segment, &path).unwrap();
        assert!(stats.compressed_bytes * 2 < stats.raw_bytes, "{stats:?}");
        assert_eq!(read_all(&path).unwrap(), raw);
        fs::remove_file(&segment).unwrap();
        let mut ids = Vec::new();
        let summary = Replay::new(DirStore::open_read_only(&dir).unwrap(), Mode::Strict)
            .run(|e| ids.push(e.event_id()))
            .unwrap();
        assert_eq!(summary.status, Status::Ok);
        assert_eq!(ids, (1..=1_000).collect::<Vec<u64>>());
    }
}
