//! The standard LZ4 frame format (the `lz4` command's, `lz4_Frame_format.md`): frame
//! descriptors, blocks, skippable frames, and a reader over a file of one or more
//! frames that reads as their concatenated content, as `lz4 -d` does.
//!
//! [`FrameReader::open`] walks the file by its headers only: the frame descriptors and
//! each block's 4-byte size word, which give where every block is stored but not how
//! many raw bytes it holds. When the file is the one data frame fswal writes followed
//! by fswal's block index, and the index matches the walked blocks, every block's raw
//! offset is known and a read decompresses only the blocks it covers. Otherwise the
//! reader decompresses everything once at open, checking every checksum, and records
//! where each block's raw bytes start and their XXH64, so that later reads decompress
//! only what they need and return exactly the bytes checked at open.
//!
//! Linked blocks (`lz4 -BD`, the C++ recorder's) need the 64 KiB of content before
//! them as a dictionary. The reader keeps the decoder's history after the block it
//! decoded last, so reading forward costs one decompression per block, and up to
//! [`SNAPSHOT_COUNT_MAX`] copies of that history taken at evenly spaced blocks during
//! the pass at open, so that reading backward decompresses at most the blocks since
//! the nearest copy.

use std::fmt;
use std::format;
use std::fs::File;
use std::path::Path;
use std::string::String;
use std::vec;
use std::vec::Vec;

use fswal_core::limits::SEGMENT_SIZE_BYTES_MAX;
use xxhash_rust::xxh32::{Xxh32, xxh32};
use xxhash_rust::xxh64::{Xxh64, xxh64};

use super::RawBlocks;
use super::fields::{Fields, invalid_data, logic_error, read_exact_at};
use super::index::{self, Index};
use crate::file::FileError;

/// The magic number of an LZ4 data frame (bytes `04 22 4D 18` in the file).
pub const FRAME_MAGIC: u32 = 0x184D_2204;

/// The first magic number of a skippable frame, which decoders skip.
pub const SKIPPABLE_MAGIC_FIRST: u32 = 0x184D_2A50;

/// The last magic number of a skippable frame.
pub const SKIPPABLE_MAGIC_LAST: u32 = 0x184D_2A5F;

/// The skippable frame magic number fswal's block index is stored under (bytes
/// `5A 2A 4D 18`). Other tools use some of the sixteen: 0x184D2A50 is the first one
/// anyone picks, and zstd's seekable format uses 0x184D2A5E.
pub const INDEX_SKIPPABLE_MAGIC: u32 = 0x184D_2A5A;

/// The magic number of the legacy frame format (`lz4 -l`), which is not read.
const LEGACY_MAGIC: u32 = 0x184C_2102;

/// FLG: the version bits and version 01, the only one defined.
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
/// FLG: blocks are independent (no dictionary from the blocks before).
const FLG_BLOCK_INDEPENDENT: u8 = 1 << 5;
/// FLG: each block is followed by the XXH32 of its stored bytes.
const FLG_BLOCK_CHECKSUM: u8 = 1 << 4;
/// FLG: the descriptor holds the content size.
const FLG_CONTENT_SIZE: u8 = 1 << 3;
/// FLG: the EndMark is followed by the XXH32 of the whole content.
const FLG_CONTENT_CHECKSUM: u8 = 1 << 2;
/// FLG: reserved, zero.
const FLG_RESERVED: u8 = 1 << 1;
/// FLG: the descriptor holds a dictionary ID.
const FLG_DICT_ID: u8 = 1;
/// BD: the reserved bits (7 and 3..0), zero.
const BD_RESERVED_MASK: u8 = 0b1000_1111;
/// BD: where the block maximum size code sits.
const BD_CODE_SHIFT: u32 = 4;

/// The high bit of a block size word: the block is stored uncompressed.
pub(super) const BLOCK_UNCOMPRESSED: u32 = 1 << 31;

/// The smallest block maximum size a frame may declare (code 4).
pub const BLOCK_SIZE_MIN_BYTES: u32 = 64 << 10;

/// The largest block maximum size a frame may declare (code 7).
pub const BLOCK_SIZE_MAX_BYTES: u32 = 4 << 20;

/// Bytes of history a linked block may refer to: LZ4's window.
pub(super) const DICTIONARY_BYTES: usize = 64 << 10;

/// The most blocks a file may hold, all frames together: the largest segment
/// ([`SEGMENT_SIZE_BYTES_MAX`]) in blocks of the smallest maximum size. Blocks shorter
/// than their maximum are allowed, as long as there are no more than this.
// Exact: the quotient is 131 585, far below `u32::MAX` (asserted below), and
// `try_from` is not const.
#[allow(clippy::cast_possible_truncation)]
pub const BLOCK_COUNT_MAX: u32 =
    SEGMENT_SIZE_BYTES_MAX.div_ceil(BLOCK_SIZE_MIN_BYTES as u64) as u32;

/// The most data frames a file may hold (concatenated frames, `cat a.lz4 b.lz4`).
pub const DATA_FRAME_COUNT_MAX: u32 = 4096;

/// The most copies of a linked frame's decoder history the reader keeps, each of the
/// 64 KiB a linked block may refer to: 4 MiB in all.
pub const SNAPSHOT_COUNT_MAX: u32 = 64;

/// Bytes of a frame descriptor after the magic, at most: FLG, BD, content size, dictionary
/// ID, header checksum.
const DESCRIPTOR_MAX_BYTES: usize = 2 + 8 + 4 + 1;

/// Offset of the content size field from the start of its frame.
const CONTENT_SIZE_AT: u64 = 6;

/// Bytes of a block size word, of a block checksum, of the EndMark, of the content
/// checksum.
const WORD_BYTES: u64 = 4;

/// Bytes of a skippable frame's header (magic and size).
const SKIPPABLE_HEADER_BYTES: u64 = 8;

const _: () =
    assert!(SEGMENT_SIZE_BYTES_MAX.div_ceil(BLOCK_SIZE_MIN_BYTES as u64) <= u32::MAX as u64);
const _: () =
    assert!(BLOCK_COUNT_MAX as u64 * BLOCK_SIZE_MIN_BYTES as u64 >= SEGMENT_SIZE_BYTES_MAX);
const _: () = assert!(BLOCK_SIZE_MAX_BYTES < BLOCK_UNCOMPRESSED);
const _: () = assert!(
    INDEX_SKIPPABLE_MAGIC >= SKIPPABLE_MAGIC_FIRST && INDEX_SKIPPABLE_MAGIC <= SKIPPABLE_MAGIC_LAST
);
// The index of the most blocks is small enough to read whole at open (about 3 MiB).
const _: () = assert!(
    BLOCK_COUNT_MAX as usize * index::ENTRY_SIZE_BYTES + index::HEADER_SIZE_BYTES + 8 <= 4 << 20
);

/// The block maximum size of BD code `code`, if it is one of the four defined.
const fn block_max_for_code(code: u8) -> Option<u32> {
    match code {
        4 => Some(64 << 10),
        5 => Some(256 << 10),
        6 => Some(1 << 20),
        7 => Some(4 << 20),
        _ => None,
    }
}

/// The BD code of block maximum size `bytes`, if it is one of the four defined.
const fn code_for_block_max(bytes: u32) -> Option<u8> {
    match bytes {
        0x1_0000 => Some(4),
        0x4_0000 => Some(5),
        0x10_0000 => Some(6),
        0x40_0000 => Some(7),
        _ => None,
    }
}

/// The header checksum of a frame: the second byte of XXH32 (seed 0) of the descriptor
/// from FLG up to the checksum.
fn header_checksum(descriptor: &[u8]) -> u8 {
    let [_, checksum, _, _] = xxh32(descriptor, 0).to_le_bytes();
    checksum
}

/// The checked fields of a frame descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Descriptor {
    /// Blocks use the content before them as a dictionary (B.Indep clear).
    pub(super) linked: bool,
    /// Each block is followed by the XXH32 of its stored bytes.
    pub(super) block_checksum: bool,
    /// The EndMark is followed by the XXH32 of the frame's content.
    pub(super) content_checksum: bool,
    /// The frame's content size, if the descriptor holds it.
    pub(super) content_size: Option<u64>,
    /// The most raw bytes a block holds.
    pub(super) block_max_bytes: u32,
}

impl Descriptor {
    /// The frame header: magic, FLG, BD, content size if any, header checksum; `None`
    /// if the block maximum size is not one of the four defined.
    pub(super) fn encode(&self) -> Option<Vec<u8>> {
        let code = code_for_block_max(self.block_max_bytes)?;
        let mut flg = FLG_VERSION_01;
        for (on, bit) in [
            (!self.linked, FLG_BLOCK_INDEPENDENT),
            (self.block_checksum, FLG_BLOCK_CHECKSUM),
            (self.content_size.is_some(), FLG_CONTENT_SIZE),
            (self.content_checksum, FLG_CONTENT_CHECKSUM),
        ] {
            if on {
                flg |= bit;
            }
        }
        let mut out = Vec::with_capacity(4 + DESCRIPTOR_MAX_BYTES);
        out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        out.push(flg);
        out.push(code << BD_CODE_SHIFT);
        if let Some(size) = self.content_size {
            out.extend_from_slice(&size.to_le_bytes());
        }
        let checksum = header_checksum(out.get(4..)?);
        out.push(checksum);
        Some(out)
    }

    /// Parses and checks the descriptor `bytes` (what follows the magic of the frame
    /// at `frame_at`: up to [`DESCRIPTOR_MAX_BYTES`], fewer if the file ends first).
    /// Returns it and its length in bytes (after the magic).
    fn decode(bytes: &[u8], frame_at: u64, path: &Path) -> Result<(Self, usize), FileError> {
        let at = |offset: u64| frame_at.saturating_add(offset);
        let bad = |offset: u64, message: String| invalid_data("open", path, at(offset), message);
        let mut fields = Fields::new(bytes);
        let cut = || {
            bad(
                4,
                format!(
                    "the file ends inside the frame descriptor ({} bytes of it)",
                    bytes.len()
                ),
            )
        };
        let flg = fields.u8().ok_or_else(cut)?;
        let bd = fields.u8().ok_or_else(cut)?;
        if flg & FLG_VERSION_MASK != FLG_VERSION_01 {
            return Err(bad(
                4,
                format!(
                    "frame version {} (FLG {flg:#04x}), only version 1 is defined",
                    flg >> 6
                ),
            ));
        }
        if flg & FLG_RESERVED != 0 {
            return Err(bad(4, format!("reserved FLG bit set (FLG {flg:#04x})")));
        }
        if bd & BD_RESERVED_MASK != 0 {
            return Err(bad(5, format!("reserved BD bits set (BD {bd:#04x})")));
        }
        let code = bd >> BD_CODE_SHIFT;
        let block_max_bytes = block_max_for_code(code).ok_or_else(|| {
            bad(
                5,
                format!("block maximum size code {code} (BD {bd:#04x}), only 4 to 7 are defined"),
            )
        })?;
        let content_size = if flg & FLG_CONTENT_SIZE != 0 {
            Some(fields.u64().ok_or_else(cut)?)
        } else {
            None
        };
        let dict_id = if flg & FLG_DICT_ID != 0 {
            Some(fields.u32().ok_or_else(cut)?)
        } else {
            None
        };
        let stored_checksum = fields.u8().ok_or_else(cut)?;
        let size_bytes = if content_size.is_some() { 8 } else { 0 };
        let dict_id_bytes = if dict_id.is_some() { 4 } else { 0 };
        let len = 2 + size_bytes + dict_id_bytes;
        let checked = bytes.get(..len).ok_or_else(cut)?;
        let checksum = header_checksum(checked);
        if checksum != stored_checksum {
            return Err(bad(
                4 + len as u64,
                format!(
                    "frame header checksum is {stored_checksum:#04x}, the descriptor's bytes give {checksum:#04x}"
                ),
            ));
        }
        if let Some(id) = dict_id {
            return Err(bad(
                4,
                format!(
                    "the frame needs an external dictionary (ID {id:#010x}), which a segment file cannot name"
                ),
            ));
        }
        if let Some(size) = content_size
            && size > SEGMENT_SIZE_BYTES_MAX
        {
            return Err(bad(
                CONTENT_SIZE_AT,
                format!(
                    "content size {size} bytes is above the largest segment ({SEGMENT_SIZE_BYTES_MAX} bytes)"
                ),
            ));
        }
        Ok((
            Self {
                linked: flg & FLG_BLOCK_INDEPENDENT == 0,
                block_checksum: flg & FLG_BLOCK_CHECKSUM != 0,
                content_checksum: flg & FLG_CONTENT_CHECKSUM != 0,
                content_size,
                block_max_bytes,
            },
            len + 1,
        ))
    }
}

/// One data frame of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameInfo {
    /// Offset of the frame's magic.
    offset_bytes: u64,
    descriptor: Descriptor,
    /// Index of its first block in the file's block list.
    first_block: u32,
    block_count: u32,
    /// Offset of its EndMark.
    end_mark_at: u64,
    /// Offset just past the frame (past the content checksum, if any).
    end_bytes: u64,
}

impl FrameInfo {
    /// The indices of its blocks in the file's block list.
    fn blocks(&self) -> std::ops::Range<u32> {
        self.first_block..self.first_block.saturating_add(self.block_count)
    }
}

/// One block of a data frame: where it is stored (from the walk), and where its raw
/// bytes are in the content (from the index or the pass at open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    /// Offset of its size word.
    word_at: u64,
    /// Its size word as stored.
    word: u32,
    /// Index of its frame.
    frame: u32,
    /// Offset of its raw bytes in the content.
    raw_offset_bytes: u64,
    /// Its raw length.
    raw_len: u32,
    /// XXH64 (seed 0) of its raw bytes.
    raw_xxh64: u64,
}

impl Block {
    fn stored_len(&self) -> u32 {
        self.word & !BLOCK_UNCOMPRESSED
    }

    fn uncompressed(&self) -> bool {
        self.word & BLOCK_UNCOMPRESSED != 0
    }

    /// Offset of its stored bytes.
    fn data_at(&self) -> u64 {
        self.word_at.saturating_add(WORD_BYTES)
    }

    fn raw_end_bytes(&self) -> u64 {
        self.raw_offset_bytes
            .saturating_add(u64::from(self.raw_len))
    }
}

/// A skippable frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Skippable {
    offset_bytes: u64,
    magic: u32,
    len: u32,
}

/// What walking the headers of a file found.
#[derive(Debug, Default)]
struct Walk {
    frames: Vec<FrameInfo>,
    blocks: Vec<Block>,
    /// Frames of any kind.
    frame_count: u64,
    /// The last frame of the file, if it is a skippable one.
    last_skippable: Option<Skippable>,
}

/// Reads the little-endian u32 at `at`, or fails as `InvalidData` described by `what`
/// if the file ends first.
fn read_u32(
    file: &File,
    path: &Path,
    at: u64,
    what: &dyn Fn() -> String,
) -> Result<u32, FileError> {
    let mut word = [0u8; 4];
    read_exact_at(file, path, "open", at, &mut word, what)?;
    Ok(u32::from_le_bytes(word))
}

/// Walks the frames of the file of `file_len_bytes` bytes by their headers, checking
/// every descriptor, every block size and that the frames fill the file exactly.
fn walk(file: &File, path: &Path, file_len_bytes: u64) -> Result<Walk, FileError> {
    let mut walk = Walk::default();
    let mut at = 0u64;
    while at < file_len_bytes {
        let left = file_len_bytes.saturating_sub(at);
        if left < WORD_BYTES {
            return Err(invalid_data(
                "open",
                path,
                at,
                format!("{left} bytes after the last frame are not a frame"),
            ));
        }
        let magic = read_u32(file, path, at, &|| {
            "the file ends inside a magic number".into()
        })?;
        walk.frame_count = walk.frame_count.saturating_add(1);
        if magic == FRAME_MAGIC {
            at = walk_data_frame(file, path, file_len_bytes, at, &mut walk)?;
            walk.last_skippable = None;
        } else if (SKIPPABLE_MAGIC_FIRST..=SKIPPABLE_MAGIC_LAST).contains(&magic) {
            let len_at = at.saturating_add(WORD_BYTES);
            if left < SKIPPABLE_HEADER_BYTES {
                return Err(invalid_data(
                    "open",
                    path,
                    len_at,
                    "the file ends inside a skippable frame's size".into(),
                ));
            }
            let len = read_u32(file, path, len_at, &|| {
                "the file ends inside a skippable frame's size".into()
            })?;
            let end = at
                .checked_add(SKIPPABLE_HEADER_BYTES)
                .and_then(|start| start.checked_add(u64::from(len)))
                .filter(|&end| end <= file_len_bytes)
                .ok_or_else(|| {
                    invalid_data(
                        "open",
                        path,
                        len_at,
                        format!(
                            "skippable frame of {len} bytes at {at} extends past the end of the file ({file_len_bytes} bytes)"
                        ),
                    )
                })?;
            walk.last_skippable = Some(Skippable {
                offset_bytes: at,
                magic,
                len,
            });
            at = end;
        } else if magic == LEGACY_MAGIC {
            return Err(invalid_data(
                "open",
                path,
                at,
                "a legacy LZ4 frame (lz4 -l), which is not read: recompress it with lz4 without -l"
                    .into(),
            ));
        } else {
            return Err(invalid_data(
                "open",
                path,
                at,
                format!(
                    "not an LZ4 frame: magic {:02x?}, expected {:02x?} or a skippable frame",
                    magic.to_le_bytes(),
                    FRAME_MAGIC.to_le_bytes()
                ),
            ));
        }
    }
    Ok(walk)
}

/// Walks the data frame whose magic is at `frame_at`; returns the offset just past it.
fn walk_data_frame(
    file: &File,
    path: &Path,
    file_len_bytes: u64,
    frame_at: u64,
    walk: &mut Walk,
) -> Result<u64, FileError> {
    let frame_index = u32::try_from(walk.frames.len())
        .ok()
        .filter(|&n| n < DATA_FRAME_COUNT_MAX)
        .ok_or_else(|| {
            invalid_data(
                "open",
                path,
                frame_at,
                format!("more than {DATA_FRAME_COUNT_MAX} data frames"),
            )
        })?;
    let descriptor_at = frame_at.saturating_add(WORD_BYTES);
    let available = file_len_bytes.saturating_sub(descriptor_at);
    let mut bytes = [0u8; DESCRIPTOR_MAX_BYTES];
    let take = usize::try_from(available.min(DESCRIPTOR_MAX_BYTES as u64)).unwrap_or(0);
    let head = bytes.get_mut(..take).unwrap_or_default();
    read_exact_at(file, path, "open", descriptor_at, head, || {
        "the file ends inside the frame descriptor".into()
    })?;
    let (descriptor, descriptor_len) = Descriptor::decode(head, frame_at, path)?;
    let mut at = descriptor_at.saturating_add(descriptor_len as u64);
    let first_block = u32::try_from(walk.blocks.len()).unwrap_or(u32::MAX);
    let block_trailer = if descriptor.block_checksum {
        WORD_BYTES
    } else {
        0
    };
    loop {
        let index = u32::try_from(walk.blocks.len()).unwrap_or(u32::MAX);
        let cut = || std::format!("the file ends inside the size word of block {index}");
        if file_len_bytes.saturating_sub(at) < WORD_BYTES {
            return Err(invalid_data("open", path, at, cut()));
        }
        let word = read_u32(file, path, at, &cut)?;
        if word == 0 {
            // The EndMark, then the content checksum if the frame has one.
            let end_mark_at = at;
            let checksum_bytes = if descriptor.content_checksum {
                WORD_BYTES
            } else {
                0
            };
            let end = at.saturating_add(WORD_BYTES).saturating_add(checksum_bytes);
            if end > file_len_bytes {
                return Err(invalid_data(
                    "open",
                    path,
                    at.saturating_add(WORD_BYTES),
                    "the file ends before the frame's content checksum".into(),
                ));
            }
            walk.frames.push(FrameInfo {
                offset_bytes: frame_at,
                descriptor,
                first_block,
                block_count: index.saturating_sub(first_block),
                end_mark_at,
                end_bytes: end,
            });
            return Ok(end);
        }
        if index >= BLOCK_COUNT_MAX {
            return Err(invalid_data(
                "open",
                path,
                at,
                format!("more than {BLOCK_COUNT_MAX} blocks"),
            ));
        }
        let stored = word & !BLOCK_UNCOMPRESSED;
        if stored > descriptor.block_max_bytes {
            return Err(invalid_data(
                "open",
                path,
                at,
                format!(
                    "block {index} is {stored} bytes stored (size word {word:#010x}), above the frame's block maximum of {} bytes",
                    descriptor.block_max_bytes
                ),
            ));
        }
        let end = at
            .saturating_add(WORD_BYTES)
            .saturating_add(u64::from(stored))
            .saturating_add(block_trailer);
        if end > file_len_bytes {
            return Err(invalid_data(
                "open",
                path,
                at,
                format!(
                    "block {index} ({stored} bytes stored, size word {word:#010x}) extends past the end of the file ({file_len_bytes} bytes)"
                ),
            ));
        }
        walk.blocks.push(Block {
            word_at: at,
            word,
            frame: frame_index,
            raw_offset_bytes: 0,
            raw_len: 0,
            raw_xxh64: 0,
        });
        at = end;
    }
}

/// The last [`DICTIONARY_BYTES`] of a linked frame's content decoded so far: the
/// dictionary of the next block.
#[derive(Clone, Debug, Default)]
struct History {
    bytes: Vec<u8>,
}

impl History {
    fn clear(&mut self) {
        self.bytes.clear();
    }

    fn set(&mut self, bytes: &[u8]) {
        self.bytes.clear();
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends `data` to the content, keeping the last [`DICTIONARY_BYTES`].
    fn push(&mut self, data: &[u8]) {
        let new_len = data.len().min(DICTIONARY_BYTES);
        let new = data
            .get(data.len().saturating_sub(new_len)..)
            .unwrap_or_default();
        let keep = DICTIONARY_BYTES.saturating_sub(new_len);
        let drop = self.bytes.len().saturating_sub(keep);
        self.bytes.drain(..drop);
        self.bytes.extend_from_slice(new);
    }
}

/// A copy of a linked frame's history: the dictionary of block `block`.
#[derive(Clone)]
struct Snapshot {
    block: u32,
    dictionary: Vec<u8>,
}

/// Whether a full pass over the blocks records what it finds or checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// At open: record each block's raw offset, length and hash, and snapshots.
    Record,
    /// In `verify_contents`: check them.
    Check,
}

/// Reads block `index` (`block`, of `frame`) from `file`: its stored bytes and
/// checksum into `stored`, checks the checksum, and decodes it into `raw` with
/// `dictionary` (the content before it, for linked blocks). Returns its raw length.
#[allow(clippy::too_many_arguments)]
fn decode_block(
    file: &File,
    path: &Path,
    index: u32,
    block: &Block,
    frame: &FrameInfo,
    dictionary: &[u8],
    stored: &mut Vec<u8>,
    raw: &mut Vec<u8>,
) -> Result<usize, FileError> {
    let data_at = block.data_at();
    let len = usize::try_from(block.stored_len())
        .map_err(|_| logic_error(path, format!("block {index} does not fit memory")))?;
    let trailer = if frame.descriptor.block_checksum {
        4
    } else {
        0
    };
    // Bounded at open: the stored length by the frame's block maximum (4 MiB at most).
    stored.resize(len.saturating_add(trailer), 0);
    read_exact_at(file, path, "read", data_at, stored, || {
        format!("the file ends inside block {index} (shortened since it was opened?)")
    })?;
    let (data, checksum) = stored.split_at_checked(len).unwrap_or_default();
    if frame.descriptor.block_checksum {
        let expected = Fields::new(checksum).u32().unwrap_or_default();
        let computed = xxh32(data, 0);
        if computed != expected {
            return Err(invalid_data(
                "decompress",
                path,
                data_at,
                format!(
                    "block {index}: its checksum (at offset {}) is {expected:#010x}, its {len} stored bytes hash to {computed:#010x}",
                    data_at.saturating_add(len as u64)
                ),
            ));
        }
    }
    let max = usize::try_from(frame.descriptor.block_max_bytes)
        .map_err(|_| logic_error(path, "block maximum does not fit memory".into()))?;
    raw.resize(max, 0);
    if block.uncompressed() {
        let to = raw
            .get_mut(..len)
            .ok_or_else(|| logic_error(path, format!("block {index} above its maximum")))?;
        to.copy_from_slice(data);
        return Ok(len);
    }
    let decoded = if frame.descriptor.linked {
        lz4_flex::block::decompress_into_with_dict(data, raw, dictionary)
    } else {
        lz4_flex::block::decompress_into(data, raw)
    };
    decoded.map_err(|e| {
        invalid_data(
            "decompress",
            path,
            data_at,
            format!("block {index} ({len} bytes stored) is not valid LZ4: {e}"),
        )
    })
}

/// A reader over a file of LZ4 frames, reading as their concatenated content.
pub(super) struct FrameReader {
    file: File,
    frames: Vec<FrameInfo>,
    blocks: Vec<Block>,
    /// The offset of fswal's block index payload, when the file has one and it was
    /// trusted for the blocks' raw offsets.
    index_at: Option<u64>,
    content_len_bytes: u64,
    /// XXH64 (seed 0) of the content: the index's, or computed at open.
    raw_xxh64: u64,
    /// A buffer for one block's stored bytes and checksum.
    stored: Vec<u8>,
    /// The raw bytes of block `cached`, sized to its frame's block maximum.
    raw: Vec<u8>,
    cached: Option<u32>,
    /// The decoder history of linked frames: the dictionary of block `history_next`.
    history: History,
    history_next: Option<u32>,
    /// Histories taken at open, by ascending block.
    snapshots: Vec<Snapshot>,
    /// Blocks decompressed so far, at open included.
    decompressions: u64,
}

impl fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("frames", &self.frames.len())
            .field("blocks", &self.blocks.len())
            .field("index_at", &self.index_at)
            .field("linked", &self.linked())
            .field("content_len_bytes", &self.content_len_bytes)
            .field("cached", &self.cached)
            .field("snapshots", &self.snapshots.len())
            .finish_non_exhaustive()
    }
}

impl FrameReader {
    /// Opens the file `file` of `file_len_bytes` bytes at `path`: walks it, then
    /// either trusts fswal's index (checked against the walk) or decompresses it all
    /// once, checking everything.
    pub(super) fn open(file: File, path: &Path, file_len_bytes: u64) -> Result<Self, FileError> {
        let walk = walk(&file, path, file_len_bytes)?;
        let index = read_index(&file, path, &walk)?;
        let mut reader = Self {
            file,
            frames: walk.frames,
            blocks: walk.blocks,
            index_at: None,
            content_len_bytes: 0,
            raw_xxh64: 0,
            stored: Vec::new(),
            raw: Vec::new(),
            cached: None,
            history: History::default(),
            history_next: None,
            snapshots: Vec::new(),
            decompressions: 0,
        };
        match index {
            Some((index, payload_at)) => reader.trust_index(&index, payload_at, path)?,
            None => reader.pass(path, Pass::Record)?,
        }
        Ok(reader)
    }

    /// The content's length.
    pub(super) fn content_len_bytes(&self) -> u64 {
        self.content_len_bytes
    }

    /// XXH64 (seed 0) of the content: the index's, or computed at open.
    pub(super) fn raw_xxh64(&self) -> u64 {
        self.raw_xxh64
    }

    /// The offset of the index's content hash, if there is an index.
    pub(super) fn raw_xxh64_at(&self) -> Option<u64> {
        self.index_at
            .map(|at| at.saturating_add(index::RAW_XXH64_AT))
    }

    /// Whether fswal's block index gave the blocks' raw offsets.
    pub(super) fn indexed(&self) -> bool {
        self.index_at.is_some()
    }

    /// Whether any frame has linked blocks.
    pub(super) fn linked(&self) -> bool {
        self.frames.iter().any(|f| f.descriptor.linked)
    }

    /// The number of blocks, all frames together.
    pub(super) fn block_count(&self) -> u32 {
        u32::try_from(self.blocks.len()).unwrap_or(u32::MAX)
    }

    /// The number of data frames.
    #[cfg(test)]
    pub(super) fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Blocks decompressed so far.
    #[cfg(test)]
    pub(super) fn decompressions(&self) -> u64 {
        self.decompressions
    }

    /// The block whose raw bytes are cached.
    #[cfg(test)]
    pub(super) fn cached_block(&self) -> Option<u32> {
        self.cached
    }

    /// Snapshots of linked history kept.
    #[cfg(test)]
    pub(super) fn snapshot_count(&self) -> usize {
        self.snapshots.len()
    }

    /// Decompresses every block and checks every checksum: the blocks', each
    /// frame's content checksum and size, and the blocks' and the whole content's
    /// XXH64 against the index's (or against what was found at open).
    pub(super) fn verify_contents(&mut self, path: &Path) -> Result<(), FileError> {
        self.pass(path, Pass::Check)
    }

    /// Fills the blocks' raw offsets from the checked `index` whose payload is at
    /// `payload_at`, after checking that it describes the walked frame exactly.
    fn trust_index(
        &mut self,
        index: &Index,
        payload_at: u64,
        path: &Path,
    ) -> Result<(), FileError> {
        let bad = |field: u64, message: String| {
            invalid_data("open", path, payload_at.saturating_add(field), message)
        };
        let frame = self
            .frames
            .first()
            .copied()
            .ok_or_else(|| logic_error(path, "an index without a data frame".into()))?;
        let block_size = index.raw_block_size_bytes;
        if frame.descriptor.linked {
            return Err(bad(
                0,
                "fswal's block index follows a frame of linked blocks, which fswal never writes"
                    .into(),
            ));
        }
        if block_size != frame.descriptor.block_max_bytes {
            return Err(bad(
                index::RAW_BLOCK_SIZE_AT,
                format!(
                    "the block index says blocks of {block_size} bytes, the frame's maximum is {}",
                    frame.descriptor.block_max_bytes
                ),
            ));
        }
        let content_len = index.content_len_bytes;
        if content_len > SEGMENT_SIZE_BYTES_MAX {
            return Err(bad(
                index::CONTENT_LEN_AT,
                format!(
                    "the block index says {content_len} bytes, above the largest segment ({SEGMENT_SIZE_BYTES_MAX} bytes)"
                ),
            ));
        }
        if let Some(size) = frame.descriptor.content_size
            && size != content_len
        {
            return Err(bad(
                index::CONTENT_LEN_AT,
                format!(
                    "the block index says {content_len} bytes, the frame's content size {size}"
                ),
            ));
        }
        if index.data_frame_len_bytes != frame.end_bytes {
            return Err(bad(
                index::DATA_FRAME_LEN_AT,
                format!(
                    "the block index says the data frame is {} bytes, it is {}",
                    index.data_frame_len_bytes, frame.end_bytes
                ),
            ));
        }
        let expected_count = content_len.div_ceil(u64::from(block_size));
        if u64::try_from(index.entries.len()).ok() != Some(expected_count)
            || index.entries.len() != self.blocks.len()
        {
            return Err(bad(
                index::BLOCK_COUNT_AT,
                format!(
                    "the block index lists {} blocks, a content of {content_len} bytes has {expected_count} and the frame {}",
                    index.entries.len(),
                    self.blocks.len()
                ),
            ));
        }
        let mut raw_offset = 0u64;
        for ((i, entry), block) in (0u32..).zip(&index.entries).zip(self.blocks.iter_mut()) {
            let entry_at = index::entry_at(i);
            if entry.word_offset_bytes != block.word_at || entry.word != block.word {
                let field = if entry.word_offset_bytes == block.word_at {
                    entry_at.saturating_add(8)
                } else {
                    entry_at
                };
                return Err(bad(
                    field,
                    format!(
                        "index entry {i} says a block at {} with size word {:#010x}, the frame has one at {} with {:#010x}",
                        entry.word_offset_bytes, entry.word, block.word_at, block.word
                    ),
                ));
            }
            let raw_len = content_len
                .saturating_sub(raw_offset)
                .min(u64::from(block_size));
            let raw_len = u32::try_from(raw_len)
                .map_err(|_| logic_error(path, "block longer than its maximum".into()))?;
            if block.uncompressed() && block.stored_len() != raw_len {
                return Err(invalid_data(
                    "open",
                    path,
                    block.word_at,
                    format!(
                        "block {i} is stored uncompressed in {} bytes, the block index gives it {raw_len} raw bytes",
                        block.stored_len()
                    ),
                ));
            }
            block.raw_offset_bytes = raw_offset;
            block.raw_len = raw_len;
            block.raw_xxh64 = entry.raw_xxh64;
            raw_offset = raw_offset.saturating_add(u64::from(raw_len));
        }
        self.content_len_bytes = content_len;
        self.raw_xxh64 = index.raw_xxh64;
        self.index_at = Some(payload_at);
        Ok(())
    }

    /// Decodes every block in order, recording (at open) or checking (in
    /// `verify_contents`) each block's raw offset, length and hash; checks every
    /// checksum the frames have, and their content sizes.
    fn pass(&mut self, path: &Path, pass: Pass) -> Result<(), FileError> {
        self.cached = None;
        self.history_next = None;
        if pass == Pass::Record {
            self.snapshots.clear();
        }
        let linked_blocks: u64 = self
            .frames
            .iter()
            .filter(|f| f.descriptor.linked)
            .map(|f| u64::from(f.block_count))
            .sum();
        let spacing = linked_blocks.div_ceil(u64::from(SNAPSHOT_COUNT_MAX)).max(1);
        let mut linked_ordinal = 0u64;
        let mut whole = Xxh64::new(0);
        let mut total = 0u64;
        let mut last = None;
        for f in 0..self.frames.len() {
            let frame = *self
                .frames
                .get(f)
                .ok_or_else(|| logic_error(path, "frame list changed".into()))?;
            let linked = frame.descriptor.linked;
            self.history.clear();
            let mut content = Xxh32::new(0);
            let mut frame_raw = 0u64;
            for b in frame.blocks() {
                let block = self.block(path, b)?;
                if pass == Pass::Record
                    && linked
                    && b != frame.first_block
                    && linked_ordinal % spacing == 0
                    && self.snapshots.len() < SNAPSHOT_COUNT_MAX as usize
                {
                    self.snapshots.push(Snapshot {
                        block: b,
                        dictionary: self.history.bytes.clone(),
                    });
                }
                if linked {
                    linked_ordinal = linked_ordinal.saturating_add(1);
                }
                let len = decode_block(
                    &self.file,
                    path,
                    b,
                    &block,
                    &frame,
                    &self.history.bytes,
                    &mut self.stored,
                    &mut self.raw,
                )?;
                self.decompressions = self.decompressions.saturating_add(1);
                let bytes = self.raw.get(..len).unwrap_or_default();
                let digest = xxh64(bytes, 0);
                let new_total = u64::try_from(len)
                    .ok()
                    .and_then(|len| total.checked_add(len))
                    .filter(|&t| t <= SEGMENT_SIZE_BYTES_MAX)
                    .ok_or_else(|| {
                        invalid_data(
                            "decompress",
                            path,
                            block.word_at,
                            format!(
                                "at block {b} the content passes the largest segment ({SEGMENT_SIZE_BYTES_MAX} bytes)"
                            ),
                        )
                    })?;
                let raw_len = u32::try_from(len)
                    .map_err(|_| logic_error(path, "block longer than its maximum".into()))?;
                match pass {
                    Pass::Record => {
                        if let Some(slot) =
                            usize::try_from(b).ok().and_then(|i| self.blocks.get_mut(i))
                        {
                            slot.raw_offset_bytes = total;
                            slot.raw_len = raw_len;
                            slot.raw_xxh64 = digest;
                        }
                    }
                    Pass::Check => {
                        if block.raw_offset_bytes != total {
                            return Err(invalid_data(
                                "verify",
                                path,
                                block.word_at,
                                format!(
                                    "block {b} starts at raw offset {total}, expected {}",
                                    block.raw_offset_bytes
                                ),
                            ));
                        }
                        check_block(path, b, &block, bytes, self.index_at.is_some())?;
                    }
                }
                whole.update(bytes);
                content.update(bytes);
                frame_raw = frame_raw.saturating_add(u64::from(raw_len));
                total = new_total;
                if linked {
                    self.history.push(bytes);
                }
                last = Some(b);
            }
            self.check_frame_end(path, &frame, content.digest(), frame_raw)?;
        }
        let digest = whole.digest();
        match pass {
            Pass::Record => {
                self.content_len_bytes = total;
                self.raw_xxh64 = digest;
            }
            Pass::Check => {
                let at = self.raw_xxh64_at().unwrap_or(0);
                if total != self.content_len_bytes || digest != self.raw_xxh64 {
                    return Err(invalid_data(
                        "verify",
                        path,
                        at,
                        format!(
                            "the content is {total} bytes hashing to {digest:#018x}, expected {} bytes hashing to {:#018x}",
                            self.content_len_bytes, self.raw_xxh64
                        ),
                    ));
                }
            }
        }
        // The raw buffer holds the last block decoded.
        self.cached = last;
        Ok(())
    }

    /// Checks the content checksum and the content size of `frame`, whose content
    /// hashed to `content_xxh32` and was `frame_raw` bytes long.
    fn check_frame_end(
        &self,
        path: &Path,
        frame: &FrameInfo,
        content_xxh32: u32,
        frame_raw: u64,
    ) -> Result<(), FileError> {
        if frame.descriptor.content_checksum {
            let at = frame.end_mark_at.saturating_add(WORD_BYTES);
            let mut word = [0u8; 4];
            read_exact_at(&self.file, path, "read", at, &mut word, || {
                "the file ends inside a content checksum (shortened since it was opened?)".into()
            })?;
            let stored = u32::from_le_bytes(word);
            if stored != content_xxh32 {
                return Err(invalid_data(
                    "verify",
                    path,
                    at,
                    format!(
                        "the frame's content checksum is {stored:#010x}, its {frame_raw} bytes of content hash to {content_xxh32:#010x}"
                    ),
                ));
            }
        }
        if let Some(size) = frame.descriptor.content_size
            && size != frame_raw
        {
            return Err(invalid_data(
                "verify",
                path,
                frame.offset_bytes.saturating_add(CONTENT_SIZE_AT),
                format!("the frame's content size is {size} bytes, its blocks hold {frame_raw}"),
            ));
        }
        Ok(())
    }

    fn block(&self, path: &Path, index: u32) -> Result<Block, FileError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.blocks.get(i))
            .copied()
            .ok_or_else(|| logic_error(path, format!("block {index} is not in the list")))
    }

    fn frame_of(&self, path: &Path, block: &Block) -> Result<FrameInfo, FileError> {
        usize::try_from(block.frame)
            .ok()
            .and_then(|i| self.frames.get(i))
            .copied()
            .ok_or_else(|| logic_error(path, format!("frame {} is not in the list", block.frame)))
    }

    /// Decodes block `target` of the linked `frame` into `raw`, from the latest
    /// restart point (see [`FrameReader::restart_point`]), checking every block
    /// decoded on the way; leaves the history after `target`.
    fn load_linked(
        &mut self,
        path: &Path,
        target: u32,
        frame: &FrameInfo,
    ) -> Result<(), FileError> {
        let (start, restart) = self.restart_point(target, frame);
        // The history is only valid again once the decoding below succeeds.
        self.history_next = None;
        match restart {
            Restart::Empty => self.history.clear(),
            Restart::Snapshot(i) => {
                let snapshot = self
                    .snapshots
                    .get(i)
                    .ok_or_else(|| logic_error(path, "snapshot vanished".into()))?;
                self.history.set(&snapshot.dictionary);
            }
            Restart::History => {}
        }
        for b in start..=target {
            let block = self.block(path, b)?;
            let len = decode_block(
                &self.file,
                path,
                b,
                &block,
                frame,
                &self.history.bytes,
                &mut self.stored,
                &mut self.raw,
            )?;
            self.decompressions = self.decompressions.saturating_add(1);
            let bytes = self.raw.get(..len).unwrap_or_default();
            check_block(path, b, &block, bytes, self.index_at.is_some())?;
            self.history.push(bytes);
        }
        // The history is the dictionary of the next block only if that block is in
        // the same frame: a frame starts with none.
        self.history_next = target
            .checked_add(1)
            .filter(|next| frame.blocks().contains(next));
        Ok(())
    }

    /// Where decoding must start to reach block `target` of the linked `frame`, and
    /// with which dictionary: the frame's first block (no dictionary), the nearest
    /// snapshot, or the current history, whichever is latest.
    fn restart_point(&self, target: u32, frame: &FrameInfo) -> (u32, Restart) {
        let mut best = (frame.first_block, Restart::Empty);
        let below = self.snapshots.partition_point(|s| s.block <= target);
        if let Some(i) = below.checked_sub(1)
            && let Some(snapshot) = self.snapshots.get(i)
            && snapshot.block > best.0
        {
            best = (snapshot.block, Restart::Snapshot(i));
        }
        if let Some(next) = self.history_next
            && next > frame.first_block
            && next >= best.0
            && next <= target
        {
            best = (next, Restart::History);
        }
        best
    }
}

/// Where a linked decode restarts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restart {
    Empty,
    Snapshot(usize),
    History,
}

/// Checks that block `index` decoded to the raw bytes `bytes` recorded for it (from
/// fswal's index when `indexed`, else at open).
fn check_block(
    path: &Path,
    index: u32,
    block: &Block,
    bytes: &[u8],
    indexed: bool,
) -> Result<(), FileError> {
    let source = if indexed {
        "fswal's block index says"
    } else {
        "when the file was opened it held"
    };
    let len_ok = u32::try_from(bytes.len()).is_ok_and(|len| len == block.raw_len);
    let describe = || {
        format!(
            "block {index} (raw bytes {}..{})",
            block.raw_offset_bytes,
            block.raw_end_bytes()
        )
    };
    if !len_ok {
        return Err(invalid_data(
            "decompress",
            path,
            block.data_at(),
            format!(
                "{} decompresses to {} bytes; {source} {}",
                describe(),
                bytes.len(),
                block.raw_len
            ),
        ));
    }
    let digest = xxh64(bytes, 0);
    if digest != block.raw_xxh64 {
        return Err(invalid_data(
            "decompress",
            path,
            block.data_at(),
            format!(
                "{} decompresses to bytes hashing to {digest:#018x}; {source} {:#018x}",
                describe(),
                block.raw_xxh64
            ),
        ));
    }
    Ok(())
}

/// Reads fswal's block index, when the file is one data frame at offset 0 followed by
/// a skippable frame of [`INDEX_SKIPPABLE_MAGIC`] and nothing else; returns it and
/// the offset of its payload. Such a frame is fswal's: a payload that is not a valid
/// index for this many blocks is `InvalidData`.
fn read_index(file: &File, path: &Path, walk: &Walk) -> Result<Option<(Index, u64)>, FileError> {
    let (Some(frame), Some(skippable)) = (walk.frames.first(), walk.last_skippable) else {
        return Ok(None);
    };
    if walk.frames.len() != 1
        || walk.frame_count != 2
        || frame.offset_bytes != 0
        || skippable.magic != INDEX_SKIPPABLE_MAGIC
    {
        return Ok(None);
    }
    let payload_at = skippable
        .offset_bytes
        .saturating_add(SKIPPABLE_HEADER_BYTES);
    let block_count = u32::try_from(walk.blocks.len()).unwrap_or(u32::MAX);
    let expected = index::payload_len_bytes(block_count);
    if expected != usize::try_from(skippable.len).ok() {
        return Err(invalid_data(
            "open",
            path,
            skippable.offset_bytes.saturating_add(WORD_BYTES),
            format!(
                "fswal's block index frame holds {} bytes, an index of the frame's {block_count} blocks is {} bytes",
                skippable.len,
                expected.unwrap_or(usize::MAX)
            ),
        ));
    }
    // Bounded by the walked block count, at most `BLOCK_COUNT_MAX` (about 3 MiB).
    let mut payload = vec![0u8; usize::try_from(skippable.len).unwrap_or(0)];
    read_exact_at(file, path, "open", payload_at, &mut payload, || {
        "the file ends inside fswal's block index".into()
    })?;
    let index = Index::decode(&payload, payload_at, path)?;
    Ok(Some((index, payload_at)))
}

impl RawBlocks for FrameReader {
    fn locate(&self, position_bytes: u64) -> Option<(u32, u64)> {
        let i = self
            .blocks
            .partition_point(|b| b.raw_end_bytes() <= position_bytes);
        let block = self.blocks.get(i)?;
        (block.raw_offset_bytes <= position_bytes && position_bytes < block.raw_end_bytes())
            .then_some((u32::try_from(i).ok()?, block.raw_offset_bytes))
    }

    fn load(&mut self, path: &Path, target: u32) -> Result<&[u8], FileError> {
        let target_block = self.block(path, target)?;
        let raw_len = usize::try_from(target_block.raw_len)
            .map_err(|_| logic_error(path, "block does not fit memory".into()))?;
        if self.cached != Some(target) {
            // Forget the cache before overwriting its buffer, so that a failure never
            // leaves bytes a later read would trust.
            self.cached = None;
            let frame = self.frame_of(path, &target_block)?;
            if frame.descriptor.linked {
                self.load_linked(path, target, &frame)?;
            } else {
                let len = decode_block(
                    &self.file,
                    path,
                    target,
                    &target_block,
                    &frame,
                    &[],
                    &mut self.stored,
                    &mut self.raw,
                )?;
                self.decompressions = self.decompressions.saturating_add(1);
                let bytes = self.raw.get(..len).unwrap_or_default();
                check_block(path, target, &target_block, bytes, self.index_at.is_some())?;
            }
            self.cached = Some(target);
        }
        self.raw
            .get(..raw_len)
            .ok_or_else(|| logic_error(path, format!("block {target} is not in its buffer")))
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use std::string::ToString;

    use embedded_io::{Error as _, ErrorKind};
    use fswal_core::BlockDevice;
    use lz4_flex::block::{compress_into, compress_into_with_dict, get_maximum_output_size};
    use proptest::prelude::*;

    use super::*;
    use crate::lz4::test_util::{
        Rng, assert_invalid_data, check_random_reads, compressible, incompressible, read_device,
        write_file,
    };
    use crate::lz4::{Lz4Device, Lz4Format};

    /// How the test encoder writes a frame: what foreign writers may choose.
    #[derive(Clone, Debug)]
    struct Opts {
        block_max: u32,
        linked: bool,
        block_checksum: bool,
        content_checksum: bool,
        content_size: bool,
        /// Store every block whose index is a multiple of this uncompressed (0: never
        /// unless compression does not help).
        raw_every: usize,
    }

    impl Opts {
        fn plain(block_max: u32) -> Self {
            Self {
                block_max,
                linked: false,
                block_checksum: false,
                content_checksum: false,
                content_size: false,
                raw_every: 0,
            }
        }
    }

    /// A standard frame of `raw` cut into blocks of the lengths `pieces`, as any LZ4
    /// writer may make it.
    fn encode(raw: &[u8], pieces: &[usize], o: &Opts) -> Vec<u8> {
        assert_eq!(pieces.iter().sum::<usize>(), raw.len());
        let mut out = Descriptor {
            linked: o.linked,
            block_checksum: o.block_checksum,
            content_checksum: o.content_checksum,
            content_size: o.content_size.then_some(raw.len() as u64),
            block_max_bytes: o.block_max,
        }
        .encode()
        .unwrap();
        let mut at = 0;
        let mut packed = vec![0u8; get_maximum_output_size(o.block_max as usize) + 64];
        for (i, &len) in pieces.iter().enumerate() {
            assert!(len > 0 && len <= o.block_max as usize);
            let piece = &raw[at..at + len];
            let n = if o.linked {
                let dict = &raw[at.saturating_sub(DICTIONARY_BYTES)..at];
                compress_into_with_dict(piece, &mut packed, dict).unwrap()
            } else {
                compress_into(piece, &mut packed).unwrap()
            };
            let forced = o.raw_every > 0 && i % o.raw_every == 0;
            let (word, data) = if n < len && !forced {
                (u32::try_from(n).unwrap(), &packed[..n])
            } else {
                (u32::try_from(len).unwrap() | BLOCK_UNCOMPRESSED, piece)
            };
            out.extend_from_slice(&word.to_le_bytes());
            out.extend_from_slice(data);
            if o.block_checksum {
                out.extend_from_slice(&xxh32(data, 0).to_le_bytes());
            }
            at += len;
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        if o.content_checksum {
            out.extend_from_slice(&xxh32(raw, 0).to_le_bytes());
        }
        out
    }

    /// Block lengths for `len` bytes: full blocks, or random ones up to `max`.
    fn pieces(len: usize, max: usize, random: bool, rng: &mut Rng) -> Vec<usize> {
        let mut out = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = if random { 1 + rng.index(max) } else { max }.min(left);
            out.push(n);
            left -= n;
        }
        out
    }

    fn skippable(magic: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = magic.to_le_bytes().to_vec();
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn open_bytes(
        bytes: &[u8],
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        Result<Lz4Device, FileError>,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_file(tmp.path(), "x.wal.lz4", bytes);
        let dev = Lz4Device::open_read_only(&path);
        (tmp, path, dev)
    }

    #[test]
    fn the_records_are_as_small_as_the_module_docs_say() {
        // "40 bytes a block and 56 bytes a data frame"
        assert_eq!(std::mem::size_of::<Block>(), 40);
        assert_eq!(std::mem::size_of::<FrameInfo>(), 56);
        assert_eq!(BLOCK_COUNT_MAX, 131_585);
        assert_eq!(
            index::payload_len_bytes(BLOCK_COUNT_MAX),
            Some(48 + 24 * 131_585)
        );
    }

    #[test]
    fn header_checksums_match_the_lz4_command() {
        // Headers `lz4` 1.9.4 wrote: the default from a pipe (FLG 0x64, BD 0x40), the
        // C++ recorder's (linked, 4 MiB, no checksum: 0x40, 0x70), and
        // `-B100000 -BX` (0x74, 0x50).
        assert_eq!(header_checksum(&[0x64, 0x40]), 0xA7);
        assert_eq!(header_checksum(&[0x40, 0x70]), 0xDF);
        assert_eq!(header_checksum(&[0x74, 0x50]), 0xFF);
        let d = Descriptor {
            linked: true,
            block_checksum: false,
            content_checksum: false,
            content_size: None,
            block_max_bytes: 4 << 20,
        };
        assert_eq!(
            d.encode().unwrap(),
            [0x04, 0x22, 0x4D, 0x18, 0x40, 0x70, 0xDF]
        );
    }

    #[test]
    fn descriptors_round_trip_in_every_combination() {
        let path = Path::new("x");
        for bits in 0u32..64 {
            for code in 4..=7 {
                let d = Descriptor {
                    linked: bits & 1 != 0,
                    block_checksum: bits & 2 != 0,
                    content_checksum: bits & 4 != 0,
                    content_size: (bits & 8 != 0).then_some(u64::from(bits) * 1000),
                    block_max_bytes: block_max_for_code(code).unwrap(),
                };
                let bytes = d.encode().unwrap();
                let (back, len) = Descriptor::decode(&bytes[4..], 0, path).unwrap();
                assert_eq!(back, d);
                assert_eq!(len + 4, bytes.len());
                // Cut anywhere: refused, never a panic.
                for cut in 0..bytes.len() - 4 {
                    let e = Descriptor::decode(&bytes[4..4 + cut], 0, path).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::InvalidData);
                }
            }
        }
        assert_eq!(code_for_block_max(1000), None);
        assert_eq!(block_max_for_code(3), None);
    }

    #[test]
    fn bad_descriptors_are_refused_at_their_offset() {
        let path = Path::new("x");
        let reseal = |mut b: Vec<u8>| {
            let n = b.len() - 1;
            b[n] = header_checksum(&b[4..n]);
            b
        };
        let good = Descriptor {
            linked: false,
            block_checksum: true,
            content_checksum: true,
            content_size: Some(5),
            block_max_bytes: 1 << 20,
        }
        .encode()
        .unwrap();
        let cases: [(&str, Vec<u8>, u64); 7] = [
            (
                "version",
                reseal({
                    let mut b = good.clone();
                    b[4] ^= 0x80;
                    b
                }),
                4,
            ),
            (
                "reserved FLG",
                reseal({
                    let mut b = good.clone();
                    b[4] |= 2;
                    b
                }),
                4,
            ),
            (
                "reserved BD",
                reseal({
                    let mut b = good.clone();
                    b[5] |= 1;
                    b
                }),
                5,
            ),
            (
                "block maximum",
                reseal({
                    let mut b = good.clone();
                    b[5] = 0x30;
                    b
                }),
                5,
            ),
            (
                "header checksum",
                {
                    let mut b = good.clone();
                    b[14] ^= 1;
                    b
                },
                14,
            ),
            (
                "content size",
                reseal({
                    let mut b = good.clone();
                    b[6..14].copy_from_slice(&(SEGMENT_SIZE_BYTES_MAX + 1).to_le_bytes());
                    b
                }),
                6,
            ),
            (
                "dictionary",
                {
                    let mut b = good[..14].to_vec();
                    b[4] |= FLG_DICT_ID;
                    b.extend_from_slice(&7u32.to_le_bytes());
                    b.push(0);
                    reseal(b)
                },
                4,
            ),
        ];
        for (what, bytes, at) in cases {
            let e = Descriptor::decode(&bytes[4..], 1000, path).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{what}: {e}");
            assert_eq!(e.offset_bytes, Some(1000 + at), "{what}: {e}");
        }
    }

    #[test]
    fn the_history_keeps_the_last_64_kib() {
        let mut h = History::default();
        h.push(&[1; 10]);
        assert_eq!(h.bytes, [1; 10]);
        h.push(&incompressible(70_000, 1));
        assert_eq!(
            h.bytes,
            incompressible(70_000, 1)[70_000 - DICTIONARY_BYTES..]
        );
        h.push(&[2; 100]);
        assert_eq!(h.bytes.len(), DICTIONARY_BYTES);
        assert_eq!(h.bytes[DICTIONARY_BYTES - 100..], [2; 100]);
        assert_eq!(
            h.bytes[..DICTIONARY_BYTES - 100],
            incompressible(70_000, 1)[70_000 - DICTIONARY_BYTES + 100..]
        );
        h.push(&[]);
        assert_eq!(h.bytes.len(), DICTIONARY_BYTES);
    }

    fn opts_strategy() -> impl Strategy<Value = Opts> {
        (
            prop_oneof![Just(64u32 << 10), Just(256u32 << 10)],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0usize), Just(1), Just(3)],
        )
            .prop_map(
                |(block_max, linked, block_checksum, content_checksum, content_size, raw_every)| {
                    Opts {
                        block_max,
                        linked,
                        block_checksum,
                        content_checksum,
                        content_size,
                        raw_every,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        /// Frames of every kind, cut into blocks of any length, several of them with
        /// skippable frames between, read back exactly at random offsets and backward.
        #[test]
        fn foreign_frames_read_back_exactly(
            lens in proptest::collection::vec(0usize..150_000, 1..4),
            opts in proptest::collection::vec(opts_strategy(), 3),
            random_pieces: bool,
            skip_between: bool,
            seed: u64,
        ) {
            let mut rng = Rng(seed);
            let mut file = Vec::new();
            let mut raw = Vec::new();
            let mut linked = false;
            for (i, &len) in lens.iter().enumerate() {
                let o = &opts[i];
                let part = if rng.below(4) == 0 { incompressible(len, rng.next()) } else { compressible(len, rng.next()) };
                let max = if random_pieces { 5000.min(o.block_max as usize) } else { o.block_max as usize };
                let cut = pieces(len, max, random_pieces, &mut rng);
                linked |= o.linked && !cut.is_empty();
                linked |= o.linked;
                file.extend_from_slice(&encode(&part, &cut, o));
                if skip_between {
                    file.extend_from_slice(&skippable(SKIPPABLE_MAGIC_FIRST + u32::try_from(i).unwrap(), &[9; 13]));
                }
                raw.extend_from_slice(&part);
            }
            let (_tmp, _path, dev) = open_bytes(&file);
            let mut dev = dev.unwrap();
            prop_assert_eq!(dev.format(), Lz4Format::Frame { indexed: false, linked });
            prop_assert_eq!(dev.len_bytes(), raw.len() as u64);
            prop_assert!(read_device(&mut dev).unwrap() == raw);
            check_random_reads(&mut dev, &raw, seed, 30);
            dev.verify_contents().unwrap();
        }
    }

    #[test]
    fn linked_reads_decompress_from_the_nearest_snapshot() {
        // 300 linked blocks of 1000 bytes: matches reach back across several blocks.
        let raw = compressible(300_000, 11);
        let file = encode(
            &raw,
            &vec![1000; 300],
            &Opts {
                linked: true,
                ..Opts::plain(64 << 10)
            },
        );
        let (_tmp, _path, dev) = open_bytes(&file);
        let mut dev = dev.unwrap();
        let frames = dev.frames().unwrap();
        assert_eq!(frames.decompressions(), 300, "one pass at open");
        assert_eq!(frames.frame_count(), 1);
        // 300 blocks, a snapshot every 5, none for block 0 (the frame's start).
        let spacing = 300u64.div_ceil(u64::from(SNAPSHOT_COUNT_MAX));
        assert_eq!(spacing, 5);
        assert_eq!(frames.snapshot_count(), 59);
        assert_eq!(
            dev.format(),
            Lz4Format::Frame {
                indexed: false,
                linked: true
            }
        );

        // Backward, one block at a time: each read decompresses at most `spacing`
        // blocks.
        let mut buf = vec![0u8; 1000];
        for b in (0..300u64).rev() {
            let before = dev.decompressions();
            dev.read_exact_at(b * 1000, &mut buf).unwrap();
            assert!(
                buf == raw[usize::try_from(b).unwrap() * 1000..][..1000],
                "block {b}"
            );
            let cost = dev.decompressions() - before;
            // The last block is still cached from the pass at open.
            let least = u64::from(b != 299);
            assert!((least..=spacing).contains(&cost), "block {b}: {cost}");
        }
        // Forward: one decompression per block.
        let before = dev.decompressions();
        let mut all = vec![0u8; raw.len()];
        dev.read_exact_at(0, &mut all).unwrap();
        assert!(all == raw);
        assert_eq!(dev.decompressions() - before, 299, "block 0 was cached");
        assert_eq!(dev.frames().unwrap().cached_block(), Some(299));
    }

    #[test]
    fn a_history_never_carries_into_the_next_frame() {
        // Two linked frames of the same bytes: the second frame's first block
        // decodes with no dictionary even right after the first frame's last block.
        let raw = compressible(200_000, 12);
        let o = Opts {
            linked: true,
            block_checksum: true,
            ..Opts::plain(64 << 10)
        };
        let mut file = encode(&raw, &pieces(raw.len(), 64 << 10, false, &mut Rng(0)), &o);
        file.extend_from_slice(&file.clone());
        let (_tmp, _path, dev) = open_bytes(&file);
        let mut dev = dev.unwrap();
        let mut whole = raw.clone();
        whole.extend_from_slice(&raw);
        assert!(read_device(&mut dev).unwrap() == whole);
        check_random_reads(&mut dev, &whole, 3, 50);
    }

    #[test]
    fn skippable_frames_alone_read_as_an_empty_segment() {
        let mut file = skippable(SKIPPABLE_MAGIC_LAST, b"abc");
        file.extend_from_slice(&skippable(INDEX_SKIPPABLE_MAGIC, b""));
        let (_tmp, _path, dev) = open_bytes(&file);
        let mut dev = dev.unwrap();
        assert_eq!(dev.len_bytes(), 0);
        dev.verify_contents().unwrap();
        // An empty frame too.
        let (_tmp, _path, dev) = open_bytes(&encode(&[], &[], &Opts::plain(64 << 10)));
        assert_eq!(dev.unwrap().len_bytes(), 0);
    }

    #[test]
    fn what_is_not_a_frame_is_refused_at_its_offset() {
        let good = encode(&compressible(5000, 1), &[5000], &Opts::plain(64 << 10));
        let n = good.len() as u64;
        let mut legacy = 0x184C_2102u32.to_le_bytes().to_vec();
        legacy.extend_from_slice(&[0; 8]);
        let cases: Vec<(&str, Vec<u8>, u64)> = vec![
            ("legacy", legacy, 0),
            ("unknown magic", b"PK\x03\x04 a zip".to_vec(), 0),
            ("trailing bytes", [good.clone(), vec![1, 2, 3]].concat(), n),
            (
                "a second unknown frame",
                [good.clone(), vec![1, 2, 3, 4]].concat(),
                n,
            ),
            (
                "a skippable frame past the end",
                [
                    good.clone(),
                    skippable(SKIPPABLE_MAGIC_FIRST, &[1; 10])[..12].to_vec(),
                ]
                .concat(),
                n + 4,
            ),
            (
                "a skippable frame without its size",
                [
                    good.clone(),
                    SKIPPABLE_MAGIC_FIRST.to_le_bytes()[..].to_vec(),
                ]
                .concat(),
                n + 4,
            ),
            (
                "a frame without its EndMark",
                good[..good.len() - 4].to_vec(),
                n - 4,
            ),
            ("a block past the end", good[..good.len() - 10].to_vec(), 7),
        ];
        for (what, bytes, at) in cases {
            let (_tmp, path, dev) = open_bytes(&bytes);
            let e = dev.unwrap_err();
            assert_invalid_data(&e, &path);
            assert_eq!(e.offset_bytes, Some(at), "{what}: {e}");
        }

        // A block above the frame's maximum.
        let mut big = Descriptor {
            block_max_bytes: 64 << 10,
            ..Descriptor {
                linked: false,
                block_checksum: false,
                content_checksum: false,
                content_size: None,
                block_max_bytes: 0,
            }
        }
        .encode()
        .unwrap();
        big.extend_from_slice(&(((64u32 << 10) + 1) | BLOCK_UNCOMPRESSED).to_le_bytes());
        big.extend_from_slice(&vec![0; (64 << 10) + 1]);
        big.extend_from_slice(&[0; 4]);
        let (_tmp, path, dev) = open_bytes(&big);
        let e = dev.unwrap_err();
        assert_invalid_data(&e, &path);
        assert_eq!(e.offset_bytes, Some(7));
        assert!(
            e.to_string().contains("above the frame's block maximum"),
            "{e}"
        );
    }

    #[test]
    fn more_blocks_or_frames_than_the_limits_are_refused() {
        // Empty uncompressed blocks, 4 bytes each: one more than the limit.
        let mut file = Descriptor {
            linked: false,
            block_checksum: false,
            content_checksum: false,
            content_size: None,
            block_max_bytes: 64 << 10,
        }
        .encode()
        .unwrap();
        let header = file.len();
        for _ in 0..=BLOCK_COUNT_MAX {
            file.extend_from_slice(&BLOCK_UNCOMPRESSED.to_le_bytes());
        }
        file.extend_from_slice(&[0; 4]);
        let (_tmp, path, dev) = open_bytes(&file);
        let e = dev.unwrap_err();
        assert_invalid_data(&e, &path);
        assert_eq!(
            e.offset_bytes,
            Some((header + 4 * BLOCK_COUNT_MAX as usize) as u64)
        );

        let empty = encode(&[], &[], &Opts::plain(64 << 10));
        let file = empty.repeat(DATA_FRAME_COUNT_MAX as usize + 1);
        let (_tmp, path, dev) = open_bytes(&file);
        let e = dev.unwrap_err();
        assert_invalid_data(&e, &path);
        assert_eq!(
            e.offset_bytes,
            Some((empty.len() * DATA_FRAME_COUNT_MAX as usize) as u64)
        );
        // At the limit, it reads.
        let file = empty.repeat(DATA_FRAME_COUNT_MAX as usize);
        let (_tmp, _path, dev) = open_bytes(&file);
        assert_eq!(dev.unwrap().len_bytes(), 0);
    }

    #[test]
    fn damage_in_a_foreign_frame_is_found_at_open() {
        let raw = compressible(200_000, 13);
        let o = Opts {
            linked: true,
            block_checksum: true,
            content_checksum: true,
            content_size: true,
            raw_every: 0,
            block_max: 64 << 10,
        };
        let good = encode(&raw, &pieces(raw.len(), 64 << 10, false, &mut Rng(0)), &o);
        let first_data = 15 + 4;
        let second_word =
            first_data + (u32::from_le_bytes(good[15..19].try_into().unwrap()) as usize) + 4;
        let content_checksum = good.len() - 4;
        for (what, at, expect) in [
            ("block data", first_data + 100, first_data),
            ("block checksum", second_word - 2, first_data),
            ("content checksum", content_checksum, content_checksum),
        ] {
            let mut bytes = good.clone();
            bytes[at] ^= 0x40;
            let (_tmp, path, dev) = open_bytes(&bytes);
            let e = dev.unwrap_err();
            assert_invalid_data(&e, &path);
            assert_eq!(e.offset_bytes, Some(expect as u64), "{what}: {e}");
        }
        // A wrong content size, resealed.
        let mut bytes = good.clone();
        bytes[6] ^= 1;
        bytes[14] = header_checksum(&bytes[4..14]);
        let (_tmp, path, dev) = open_bytes(&bytes);
        let e = dev.unwrap_err();
        assert_invalid_data(&e, &path);
        assert_eq!(e.offset_bytes, Some(6), "{e}");

        // Without block checksums, a damaged block is still found: it does not decode,
        // or decodes to other bytes than the content checksum's.
        let o = Opts {
            block_checksum: false,
            ..o
        };
        let good = encode(&raw, &pieces(raw.len(), 64 << 10, false, &mut Rng(0)), &o);
        let mut rng = Rng(5);
        for _ in 0..200 {
            let mut bytes = good.clone();
            let at = 15 + rng.index(good.len() - 15);
            bytes[at] ^= 1 + u8::try_from(rng.below(255)).unwrap();
            let (_tmp, path, dev) = open_bytes(&bytes);
            match dev {
                Err(e) => assert_invalid_data(&e, &path),
                Ok(mut dev) => assert!(read_device(&mut dev).unwrap() == raw, "byte {at}"),
            }
        }
    }

    #[test]
    fn garbage_behind_a_valid_header_never_panics() {
        let mut rng = Rng(77);
        for _ in 0..400 {
            let o = Opts {
                linked: rng.below(2) == 0,
                block_checksum: rng.below(2) == 0,
                content_checksum: rng.below(2) == 0,
                content_size: rng.below(2) == 0,
                ..Opts::plain(64 << 10)
            };
            let mut file = encode(&[], &[], &o);
            file.truncate(file.len() - if o.content_checksum { 8 } else { 4 });
            // Plausible size words (small, some uncompressed) over random bytes.
            for _ in 0..rng.index(4) {
                let len = rng.index(300);
                let flag = if rng.below(3) == 0 {
                    BLOCK_UNCOMPRESSED
                } else {
                    0
                };
                file.extend_from_slice(&(u32::try_from(len).unwrap() | flag).to_le_bytes());
                file.extend_from_slice(&incompressible(len + 8, rng.next())[..len]);
                if o.block_checksum {
                    file.extend_from_slice(&rng.next().to_le_bytes()[..4]);
                }
            }
            file.extend_from_slice(&incompressible(rng.index(12), rng.next()));
            let (_tmp, path, dev) = open_bytes(&file);
            match dev {
                Err(e) => assert_invalid_data(&e, &path),
                Ok(mut dev) => {
                    // Whatever it holds, reading it is consistent with opening it.
                    read_device(&mut dev).unwrap();
                    dev.verify_contents().unwrap();
                }
            }
        }
    }

    #[test]
    fn a_file_shortened_after_open_is_invalid_data_at_read() {
        let raw = compressible(200_000, 14);
        let o = Opts {
            block_checksum: true,
            ..Opts::plain(64 << 10)
        };
        let file = encode(&raw, &pieces(raw.len(), 64 << 10, false, &mut Rng(0)), &o);
        let (_tmp, path, dev) = open_bytes(&file);
        let mut dev = dev.unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        let mut buf = vec![0u8; 10];
        let e = dev.read_exact_at(150_000, &mut buf).unwrap_err();
        assert_invalid_data(&e, &path);
        let e = dev.verify_contents().unwrap_err();
        assert_invalid_data(&e, &path);
    }
}
