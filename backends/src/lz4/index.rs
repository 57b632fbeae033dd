//! fswal's block index: the payload of the skippable frame that follows the data frame
//! of every file fswal writes (layout in the [module docs](super)), so that a reader
//! knows the raw offset of every block without decompressing the file.
//!
//! This file encodes and decodes the payload and checks it on its own (magic, reserved
//! bytes, checksum, lengths); whether it describes the data frame it follows is checked
//! by the frame reader against the blocks it walked.

use std::format;
use std::path::Path;
use std::string::ToString;
use std::vec::Vec;

use xxhash_rust::xxh64::xxh64;

use super::fields::{Fields, invalid_data};
use crate::file::FileError;

/// The first 8 bytes of the index payload: "FSWALZI" and the index version, 1.
pub const INDEX_MAGIC: [u8; 8] = *b"FSWALZI\x01";

/// Bytes of the payload's fixed fields, before the entries.
pub(super) const HEADER_SIZE_BYTES: usize = 40;

/// Bytes of one entry.
pub(super) const ENTRY_SIZE_BYTES: usize = 24;

/// Bytes of the checksum that ends the payload.
pub(super) const CHECKSUM_SIZE_BYTES: usize = 8;

/// Offsets of the fixed fields in the payload, for the offsets errors report.
pub(super) const CONTENT_LEN_AT: u64 = 8;
pub(super) const RAW_XXH64_AT: u64 = 16;
pub(super) const RAW_BLOCK_SIZE_AT: u64 = 24;
pub(super) const BLOCK_COUNT_AT: u64 = 28;
pub(super) const DATA_FRAME_LEN_AT: u64 = 32;

const _: () = assert!(8 + 8 + 8 + 4 + 4 + 8 == HEADER_SIZE_BYTES);
const _: () = assert!(8 + 4 + 4 + 8 == ENTRY_SIZE_BYTES);
const _: () = assert!(DATA_FRAME_LEN_AT + 8 == HEADER_SIZE_BYTES as u64);
const _: () = assert!(INDEX_MAGIC.len() as u64 == CONTENT_LEN_AT);

/// One block of the data frame, as the index records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct IndexEntry {
    /// The offset in the file of the block's size word.
    pub(super) word_offset_bytes: u64,
    /// The size word as stored, the "uncompressed" bit included.
    pub(super) word: u32,
    /// XXH64 (seed 0) of the block's raw bytes.
    pub(super) raw_xxh64: u64,
}

/// The decoded index payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Index {
    /// The segment's length.
    pub(super) content_len_bytes: u64,
    /// XXH64 (seed 0) of the whole segment.
    pub(super) raw_xxh64: u64,
    /// Raw bytes in every block but the last.
    pub(super) raw_block_size_bytes: u32,
    /// The data frame's length in bytes (it starts at offset 0).
    pub(super) data_frame_len_bytes: u64,
    /// One entry per block, in order.
    pub(super) entries: Vec<IndexEntry>,
}

/// The payload's length for `block_count` blocks, or `None` if it overflows.
pub(super) fn payload_len_bytes(block_count: u32) -> Option<usize> {
    usize::try_from(block_count)
        .ok()?
        .checked_mul(ENTRY_SIZE_BYTES)?
        .checked_add(HEADER_SIZE_BYTES + CHECKSUM_SIZE_BYTES)
}

/// The offset in the payload of entry `index` (saturating: only used in messages and
/// for indices below the checked block count).
pub(super) fn entry_at(index: u32) -> u64 {
    u64::from(index)
        .saturating_mul(ENTRY_SIZE_BYTES as u64)
        .saturating_add(HEADER_SIZE_BYTES as u64)
}

impl Index {
    /// The payload bytes, checksum included.
    pub(super) fn encode(&self) -> Option<Vec<u8>> {
        let block_count = u32::try_from(self.entries.len()).ok()?;
        let mut out = Vec::with_capacity(payload_len_bytes(block_count)?);
        out.extend_from_slice(&INDEX_MAGIC);
        out.extend_from_slice(&self.content_len_bytes.to_le_bytes());
        out.extend_from_slice(&self.raw_xxh64.to_le_bytes());
        out.extend_from_slice(&self.raw_block_size_bytes.to_le_bytes());
        out.extend_from_slice(&block_count.to_le_bytes());
        out.extend_from_slice(&self.data_frame_len_bytes.to_le_bytes());
        for entry in &self.entries {
            out.extend_from_slice(&entry.word_offset_bytes.to_le_bytes());
            out.extend_from_slice(&entry.word.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&entry.raw_xxh64.to_le_bytes());
        }
        let checksum = xxh64(&out, 0);
        out.extend_from_slice(&checksum.to_le_bytes());
        Some(out)
    }

    /// Decodes and checks the `payload` that starts at `payload_at` in the file at
    /// `path`: its magic, its checksum, the reserved bytes, and that its length is the
    /// one its block count gives. Errors name the offset in the file of the bad field.
    pub(super) fn decode(payload: &[u8], payload_at: u64, path: &Path) -> Result<Self, FileError> {
        let at = |offset: u64| payload_at.saturating_add(offset);
        let bad = |offset: u64, message: std::string::String| {
            invalid_data("open", path, at(offset), message)
        };
        let cut = || bad(0, "the fswal block index is cut short".to_string());
        let mut fields = Fields::new(payload);
        let magic: [u8; 8] = fields.take().ok_or_else(cut)?;
        if magic != INDEX_MAGIC {
            return Err(bad(
                0,
                format!("not fswal's block index: magic {magic:02x?}, expected {INDEX_MAGIC:02x?}"),
            ));
        }
        let checked_len = payload.len().saturating_sub(CHECKSUM_SIZE_BYTES);
        let (checked, checksum) = payload.split_at_checked(checked_len).ok_or_else(cut)?;
        let stored = Fields::new(checksum).u64().ok_or_else(cut)?;
        let computed = xxh64(checked, 0);
        let checksum_at = u64::try_from(checked_len).unwrap_or(u64::MAX);
        if stored != computed {
            return Err(bad(
                checksum_at,
                format!(
                    "block index checksum is {stored:#018x}, the index's bytes hash to {computed:#018x}"
                ),
            ));
        }
        let content_len_bytes = fields.u64().ok_or_else(cut)?;
        let raw_xxh64 = fields.u64().ok_or_else(cut)?;
        let raw_block_size_bytes = fields.u32().ok_or_else(cut)?;
        let block_count = fields.u32().ok_or_else(cut)?;
        let data_frame_len_bytes = fields.u64().ok_or_else(cut)?;
        if payload_len_bytes(block_count) != Some(payload.len()) {
            return Err(bad(
                BLOCK_COUNT_AT,
                format!(
                    "the block index lists {block_count} blocks but is {} bytes long",
                    payload.len()
                ),
            ));
        }
        // Bounded: the payload holds this many entries, and its length was checked by
        // the caller against the walked blocks before it was read.
        let mut entries = Vec::with_capacity(checked_len / ENTRY_SIZE_BYTES);
        for index in 0..block_count {
            let entry_cut = || bad(entry_at(index), format!("index entry {index} is cut short"));
            let word_offset_bytes = fields.u64().ok_or_else(entry_cut)?;
            let word = fields.u32().ok_or_else(entry_cut)?;
            let reserved = fields.u32().ok_or_else(entry_cut)?;
            let raw_xxh64 = fields.u64().ok_or_else(entry_cut)?;
            if reserved != 0 {
                return Err(bad(
                    entry_at(index).saturating_add(12),
                    format!("index entry {index}: reserved bytes are not zero"),
                ));
            }
            entries.push(IndexEntry {
                word_offset_bytes,
                word,
                raw_xxh64,
            });
        }
        Ok(Self {
            content_len_bytes,
            raw_xxh64,
            raw_block_size_bytes,
            data_frame_len_bytes,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::vec;

    use embedded_io::{Error as _, ErrorKind};

    use super::*;

    fn sample() -> Index {
        Index {
            content_len_bytes: 3 << 20,
            raw_xxh64: 0x1234,
            raw_block_size_bytes: 1 << 20,
            data_frame_len_bytes: 999,
            entries: vec![
                IndexEntry {
                    word_offset_bytes: 15,
                    word: 100,
                    raw_xxh64: 1,
                },
                IndexEntry {
                    word_offset_bytes: 123,
                    word: 0x8010_0000,
                    raw_xxh64: 2,
                },
                IndexEntry {
                    word_offset_bytes: 500,
                    word: 7,
                    raw_xxh64: 3,
                },
            ],
        }
    }

    #[test]
    fn an_index_round_trips_and_every_changed_byte_is_refused() {
        let path = Path::new("x.lz4");
        let index = sample();
        let bytes = index.encode().unwrap();
        assert_eq!(bytes.len(), payload_len_bytes(3).unwrap());
        assert_eq!(bytes.len(), 40 + 3 * 24 + 8);
        assert_eq!(Index::decode(&bytes, 1000, path).unwrap(), index);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            let e = Index::decode(&bad, 1000, path).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
            let offset = e.offset_bytes.unwrap();
            assert!((1000..1000 + bytes.len() as u64).contains(&offset), "{e}");
        }
        for len in 0..bytes.len() {
            let e = Index::decode(&bytes[..len], 1000, path).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
        }
    }

    #[test]
    fn a_resealed_index_with_a_wrong_count_or_reserved_bytes_is_refused() {
        let path = Path::new("x.lz4");
        let reseal = |b: &mut Vec<u8>| {
            let n = b.len() - 8;
            let sum = xxh64(&b[..n], 0);
            b[n..].copy_from_slice(&sum.to_le_bytes());
        };
        let mut bytes = sample().encode().unwrap();
        bytes[28] = 4;
        reseal(&mut bytes);
        let e = Index::decode(&bytes, 0, path).unwrap_err();
        assert_eq!(e.offset_bytes, Some(BLOCK_COUNT_AT));

        let mut bytes = sample().encode().unwrap();
        bytes[40 + 24 + 12] = 1;
        reseal(&mut bytes);
        let e = Index::decode(&bytes, 0, path).unwrap_err();
        assert_eq!(e.offset_bytes, Some(40 + 24 + 12));
        assert!(e.to_string().contains("reserved"), "{e}");
    }
}
