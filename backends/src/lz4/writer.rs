//! Writing a segment in the current format: one standard LZ4 data frame, then fswal's
//! block index in a skippable frame (layout in the [module docs](super)).
//!
//! [`write_new`] is shared by [`compress_segment`](super::compress_segment) (the
//! source is a raw segment file) and [`recompress`](super::recompress) (the source is
//! any compressed file, read through [`Lz4Device`]): it holds the crash contract of
//! both.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::string::ToString;
use std::vec;
use std::vec::Vec;
use std::{format, string::String};

use fswal_core::BlockDevice;
use fswal_core::limits::SEGMENT_SIZE_BYTES_MAX;
use lz4_flex::block::{compress_into, get_maximum_output_size};
use xxhash_rust::xxh32::{Xxh32, xxh32};
use xxhash_rust::xxh64::{Xxh64, xxh64};

use super::fields::invalid_data;
use super::frame::{BLOCK_UNCOMPRESSED, Descriptor, INDEX_SKIPPABLE_MAGIC};
use super::index::{Index, IndexEntry};
use super::{CompressStats, FRAME_BLOCK_SIZE_BYTES, Lz4Device, Lz4Format};
use crate::file::FileError;

/// Writes the segment `source` (read from `src`) in the current format into a new file
/// at `dst`: created with `create_new` (an existing `dst` fails with `AlreadyExists`
/// and is left alone), written, synced with `sync_all`, then opened through
/// [`Lz4Device`] and checked in full, and its XXH64 compared with that of the bytes
/// read from `source`, before this returns. `check_source` is given that XXH64 first,
/// to compare with what the source itself records. On any failure after creating
/// `dst`, the partly written `dst` is removed, so that a retry is not refused.
pub(super) fn write_new<S>(
    source: &mut S,
    src: &Path,
    dst: &Path,
    check_source: impl FnOnce(u64) -> Result<(), FileError>,
) -> Result<CompressStats, FileError>
where
    S: BlockDevice<Error = FileError>,
{
    write_new_with_block_size(source, src, dst, FRAME_BLOCK_SIZE_BYTES, check_source)
}

/// [`write_new`] with raw blocks of `block_size_bytes` (one of the four LZ4 block
/// maximum sizes): fswal writes [`FRAME_BLOCK_SIZE_BYTES`]; tests use smaller blocks
/// to cover many blocks with little data.
pub(super) fn write_new_with_block_size<S>(
    source: &mut S,
    src: &Path,
    dst: &Path,
    block_size_bytes: u32,
    check_source: impl FnOnce(u64) -> Result<(), FileError>,
) -> Result<CompressStats, FileError>
where
    S: BlockDevice<Error = FileError>,
{
    let raw_len_bytes = source.len_bytes();
    if raw_len_bytes > SEGMENT_SIZE_BYTES_MAX {
        return Err(FileError::custom(
            "compress",
            src,
            None,
            io::ErrorKind::InvalidInput,
            format!(
                "{raw_len_bytes} bytes is above the largest segment ({SEGMENT_SIZE_BYTES_MAX} bytes)"
            ),
        ));
    }
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| FileError::new("create", dst, None, e))?;
    let made = write_frame(source, src, &out, dst, raw_len_bytes, block_size_bytes).and_then(
        |(stats, source_xxh64)| {
            check_source(source_xxh64)?;
            // `sync_all`, not `sync_data`: the file's size is metadata and is needed to
            // read it back.
            out.sync_all()
                .map_err(|e| FileError::new("sync", dst, None, e))?;
            read_back(dst, raw_len_bytes, source_xxh64)?;
            Ok(stats)
        },
    );
    if made.is_err() {
        // Best effort, and only the file this call created: the error that matters is
        // the one being returned.
        let _ = fs::remove_file(dst);
    }
    made
}

/// Opens the file just written at `dst` and checks it in full: the current format,
/// every checksum, and `raw_len_bytes` bytes hashing to `source_xxh64`.
fn read_back(dst: &Path, raw_len_bytes: u64, source_xxh64: u64) -> Result<(), FileError> {
    let mut device = Lz4Device::open_read_only(dst)?;
    let format = device.format();
    if format
        != (Lz4Format::Frame {
            indexed: true,
            linked: false,
        })
    {
        return Err(invalid_data(
            "verify",
            dst,
            0,
            format!("read back as {format:?}, not an indexed frame"),
        ));
    }
    device.verify_contents()?;
    if device.raw_xxh64() != source_xxh64 || device.len_bytes() != raw_len_bytes {
        return Err(invalid_data(
            "verify",
            dst,
            0,
            format!(
                "read back as {} bytes hashing to {:#018x}, the source is {raw_len_bytes} bytes hashing to {source_xxh64:#018x}",
                device.len_bytes(),
                device.raw_xxh64()
            ),
        ));
    }
    Ok(())
}

/// A compression failure of `src` at raw offset `offset_bytes`.
fn compress_error(src: &Path, offset_bytes: Option<u64>, message: String) -> FileError {
    FileError::custom("compress", src, offset_bytes, io::ErrorKind::Other, message)
}

/// Writes the frame and the index of `source` (`raw_len_bytes` bytes, in raw blocks of
/// `block_size_bytes`) into the new, empty file `out`; returns what it wrote and the
/// source's XXH64.
fn write_frame<S>(
    source: &mut S,
    src: &Path,
    out: &File,
    dst: &Path,
    raw_len_bytes: u64,
    block_size_bytes: u32,
) -> Result<(CompressStats, u64), FileError>
where
    S: BlockDevice<Error = FileError>,
{
    let too_large = || compress_error(src, None, "the frame does not fit memory".to_string());
    let header = Descriptor {
        linked: false,
        block_checksum: true,
        content_checksum: true,
        content_size: Some(raw_len_bytes),
        block_max_bytes: block_size_bytes,
    }
    .encode()
    .ok_or_else(|| {
        compress_error(
            src,
            None,
            format!("no LZ4 block size of {block_size_bytes}"),
        )
    })?;
    let block_bytes = u64::from(block_size_bytes);
    let block_count =
        u32::try_from(raw_len_bytes.div_ceil(block_bytes)).map_err(|_| too_large())?;
    let raw_buf_len = usize::try_from(raw_len_bytes.min(block_bytes)).map_err(|_| too_large())?;
    let mut raw = vec![0u8; raw_buf_len];
    // The size word, the stored bytes (at worst LZ4's bound for a block: compressed
    // output is only kept when it is shorter than the raw bytes), the checksum.
    let mut packed = vec![0u8; 4 + get_maximum_output_size(raw_buf_len) + 4];
    let mut entries = Vec::with_capacity(usize::try_from(block_count).map_err(|_| too_large())?);
    let mut whole = Xxh64::new(0);
    let mut content = Xxh32::new(0);
    let mut at = u64::try_from(header.len()).map_err(|_| too_large())?;

    for index in 0..block_count {
        let raw_offset_bytes = u64::from(index)
            .checked_mul(block_bytes)
            .ok_or_else(too_large)?;
        let len = usize::try_from(
            raw_len_bytes
                .saturating_sub(raw_offset_bytes)
                .min(block_bytes),
        )
        .map_err(|_| too_large())?;
        let chunk = raw.get_mut(..len).ok_or_else(too_large)?;
        source.read_exact_at(raw_offset_bytes, chunk)?;
        whole.update(chunk);
        content.update(chunk);
        let raw_xxh64 = xxh64(chunk, 0);

        let body = packed.get_mut(4..).ok_or_else(too_large)?;
        let compressed = compress_into(chunk, body)
            .map_err(|e| compress_error(src, Some(raw_offset_bytes), e.to_string()))?;
        // Stored compressed only when that makes the block smaller.
        let (stored, word) = if compressed < len {
            (
                compressed,
                u32::try_from(compressed).map_err(|_| too_large())?,
            )
        } else {
            body.get_mut(..len)
                .ok_or_else(too_large)?
                .copy_from_slice(chunk);
            let len = u32::try_from(len).map_err(|_| too_large())?;
            (
                usize::try_from(len).map_err(|_| too_large())?,
                len | BLOCK_UNCOMPRESSED,
            )
        };
        let data_end = stored.checked_add(4).ok_or_else(too_large)?;
        let checksum = xxh32(packed.get(4..data_end).ok_or_else(too_large)?, 0);
        packed
            .get_mut(..4)
            .ok_or_else(too_large)?
            .copy_from_slice(&word.to_le_bytes());
        let end = data_end.checked_add(4).ok_or_else(too_large)?;
        packed
            .get_mut(data_end..end)
            .ok_or_else(too_large)?
            .copy_from_slice(&checksum.to_le_bytes());
        let piece = packed.get(..end).ok_or_else(too_large)?;
        out.write_all_at(piece, at)
            .map_err(|e| FileError::new("write", dst, Some(at), e))?;
        entries.push(IndexEntry {
            word_offset_bytes: at,
            word,
            raw_xxh64,
        });
        at = at
            .checked_add(u64::try_from(end).map_err(|_| too_large())?)
            .ok_or_else(too_large)?;
    }

    // The EndMark and the content checksum end the data frame; the index follows.
    let raw_xxh64 = whole.digest();
    let data_frame_len_bytes = at.checked_add(8).ok_or_else(too_large)?;
    let payload = Index {
        content_len_bytes: raw_len_bytes,
        raw_xxh64,
        raw_block_size_bytes: block_size_bytes,
        data_frame_len_bytes,
        entries,
    }
    .encode()
    .ok_or_else(too_large)?;
    let payload_len = u32::try_from(payload.len()).map_err(|_| too_large())?;
    let mut tail = Vec::with_capacity(16 + payload.len());
    tail.extend_from_slice(&0u32.to_le_bytes());
    tail.extend_from_slice(&content.digest().to_le_bytes());
    tail.extend_from_slice(&INDEX_SKIPPABLE_MAGIC.to_le_bytes());
    tail.extend_from_slice(&payload_len.to_le_bytes());
    tail.extend_from_slice(&payload);
    out.write_all_at(&tail, at)
        .map_err(|e| FileError::new("write", dst, Some(at), e))?;
    let file_len = at
        .checked_add(u64::try_from(tail.len()).map_err(|_| too_large())?)
        .ok_or_else(too_large)?;
    // The header last, so that until the whole file is written it does not start with
    // a frame's magic (after a power cut nothing unsynced is promised, in any order:
    // the file is only trusted once synced and read back).
    out.write_all_at(&header, 0)
        .map_err(|e| FileError::new("write", dst, Some(0), e))?;
    Ok((
        CompressStats {
            raw_bytes: raw_len_bytes,
            compressed_bytes: file_len,
            blocks: block_count,
        },
        raw_xxh64,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::vec::Vec;

    use embedded_io::{Error as _, ErrorKind};
    use fswal_core::limits::SEGMENT_SIZE_BYTES_MAX;

    use super::*;
    use crate::file::FileDevice;
    use crate::lz4::test_util::{
        Rng, check_random_reads, compressed_path, compressible, incompressible, lz4_cli, p,
        read_and_verify, run_lz4, write_file,
    };
    use crate::lz4::{FRAME_MAGIC, INDEX_MAGIC, compress_segment};

    /// A source that reads from memory and fails once asked for `fail_at`.
    struct Source {
        bytes: Vec<u8>,
        fail_at: Option<u64>,
    }

    impl BlockDevice for Source {
        type Error = FileError;
        fn write_granularity_bytes(&self) -> u32 {
            1
        }
        fn len_bytes(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn capacity_bytes(&self) -> u64 {
            self.len_bytes()
        }
        fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), FileError> {
            if self.fail_at.is_some_and(|at| at <= offset_bytes) {
                return Err(FileError::custom(
                    "read",
                    "source",
                    Some(offset_bytes),
                    io::ErrorKind::Other,
                    "injected",
                ));
            }
            let at = usize::try_from(offset_bytes).unwrap();
            buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
            Ok(())
        }
        fn write_all_at(&mut self, _: u64, _: &[u8]) -> Result<(), FileError> {
            unreachable!()
        }
        fn sync(&mut self) -> Result<(), FileError> {
            Ok(())
        }
    }

    /// Writes `bytes` in raw blocks of `block_size` to a new file in `dir`.
    fn write_bytes(dir: &Path, name: &str, bytes: &[u8], block_size: u32) -> PathBuf {
        let dst = dir.join(name);
        let mut source = Source {
            bytes: bytes.to_vec(),
            fail_at: None,
        };
        let stats =
            write_new_with_block_size(&mut source, Path::new("src"), &dst, block_size, |_| Ok(()))
                .unwrap();
        assert_eq!(stats.raw_bytes, bytes.len() as u64);
        assert_eq!(stats.compressed_bytes, fs::metadata(&dst).unwrap().len());
        assert_eq!(
            u64::from(stats.blocks),
            (bytes.len() as u64).div_ceil(u64::from(block_size))
        );
        dst
    }

    /// Data of `len` bytes in runs of zeros, compressible text and noise.
    fn mixed(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng(seed);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let run = 1 + rng.index(200_000);
            match rng.below(3) {
                0 => out.resize(out.len() + run, 0),
                1 => out.extend_from_slice(&compressible(run, rng.next())),
                _ => out.extend_from_slice(&incompressible(run, rng.next())),
            }
        }
        out.truncate(len);
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// What the writer writes reads back exactly, at random offsets and backward,
        /// from the index, decompressing each block once when read in order.
        #[test]
        fn written_frames_read_back_exactly(len in 0usize..400_000, seed: u64, small in proptest::prelude::any::<bool>()) {
            let tmp = tempfile::tempdir().unwrap();
            let bytes = mixed(len, seed);
            let block_size = if small { 64 << 10 } else { 256 << 10 };
            let dst = write_bytes(tmp.path(), "x.lz4", &bytes, block_size);
            let mut dev = Lz4Device::open_read_only(&dst).unwrap();
            proptest::prop_assert_eq!(dev.format(), Lz4Format::Frame { indexed: true, linked: false });
            proptest::prop_assert_eq!(dev.len_bytes(), len as u64);
            proptest::prop_assert_eq!(dev.decompressions(), 0);
            let mut all = vec![0u8; len];
            dev.read_exact_at(0, &mut all).unwrap();
            proptest::prop_assert!(all == bytes);
            proptest::prop_assert_eq!(dev.decompressions(), u64::from(dev.block_count()));
            check_random_reads(&mut dev, &bytes, seed, 20);
            dev.verify_contents().unwrap();
        }
    }

    #[test]
    fn the_header_and_the_index_are_laid_out_as_documented() {
        let tmp = tempfile::tempdir().unwrap();
        // Three blocks: a compressible one, an incompressible one (stored raw), a short
        // compressible one.
        let mut bytes = compressible(1 << 20, 1);
        bytes.extend_from_slice(&incompressible(1 << 20, 2));
        bytes.extend_from_slice(&compressible(1000, 3));
        let src = write_file(tmp.path(), "seg", &bytes);
        let dst = compressed_path(&src);
        let stats = compress_segment(&src, &dst).unwrap();
        assert_eq!(stats.blocks, 3);
        let file = fs::read(&dst).unwrap();
        let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());

        assert_eq!(file[..4], [0x04, 0x22, 0x4D, 0x18]);
        assert_eq!(u32_at(0), FRAME_MAGIC);
        assert_eq!(file[4], 0x7C, "FLG");
        assert_eq!(file[5], 0x60, "BD");
        assert_eq!(u64_at(6), bytes.len() as u64);
        assert_eq!(file[14], xxh32(&file[4..14], 0).to_le_bytes()[1], "HC");

        let mut at = 15;
        let mut words = Vec::new();
        for i in 0..3 {
            let word = u32_at(at);
            let stored = (word & 0x7FFF_FFFF) as usize;
            assert_eq!(word & 0x8000_0000 != 0, i == 1, "block {i} {word:#x}");
            let data = &file[at + 4..at + 4 + stored];
            assert_eq!(
                u32_at(at + 4 + stored),
                xxh32(data, 0),
                "block {i} checksum"
            );
            words.push((at as u64, word));
            at += 4 + stored + 4;
        }
        assert_eq!(u32_at(at), 0, "EndMark");
        assert_eq!(u32_at(at + 4), xxh32(&bytes, 0), "content checksum");
        let f = at + 8;
        assert_eq!(file[f..f + 4], [0x5A, 0x2A, 0x4D, 0x18]);
        assert_eq!(u32_at(f + 4) as usize, 48 + 24 * 3);
        assert_eq!(file.len(), f + 8 + 48 + 24 * 3);
        assert_eq!(file[f + 8..f + 16], INDEX_MAGIC);
        assert_eq!(u64_at(f + 16), bytes.len() as u64);
        assert_eq!(u64_at(f + 24), xxh64(&bytes, 0));
        assert_eq!(u32_at(f + 32), 1 << 20);
        assert_eq!(u32_at(f + 36), 3);
        assert_eq!(u64_at(f + 40), f as u64);
        for (i, (offset, word)) in words.iter().enumerate() {
            let e = f + 48 + 24 * i;
            assert_eq!(u64_at(e), *offset);
            assert_eq!(u32_at(e + 8), *word);
            assert_eq!(u32_at(e + 12), 0);
            let raw = &bytes[i << 20..((i + 1) << 20).min(bytes.len())];
            assert_eq!(u64_at(e + 16), xxh64(raw, 0));
        }
        let end = f + 48 + 24 * 3;
        assert_eq!(u64_at(end), xxh64(&file[f + 8..end], 0));
    }

    #[test]
    fn lz4_tests_and_decompresses_what_fswal_writes() {
        let Some(lz4) = lz4_cli() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let one = 1usize << 20;
        for (name, bytes) in [
            ("empty", Vec::new()),
            ("tiny", vec![7u8; 5]),
            ("one-block", compressible(one, 4)),
            ("just-over", mixed(one + 1, 5)),
            ("noise", incompressible(2 * one + 12_345, 6)),
            ("mixed", mixed(3 * one - 1, 7)),
        ] {
            let src = write_file(tmp.path(), name, &bytes);
            let dst = compressed_path(&src);
            compress_segment(&src, &dst).unwrap();
            run_lz4(&lz4, &["-t", "-q", p(&dst)]);
            let out = run_lz4(&lz4, &["-d", "-c", "-q", p(&dst)]);
            assert!(out == bytes, "{name}: lz4 -d gives {} bytes", out.len());
            assert!(read_and_verify(&dst).unwrap() == bytes, "{name}");
        }
    }

    #[test]
    fn compress_refuses_an_existing_destination_and_oversized_or_missing_sources() {
        let tmp = tempfile::tempdir().unwrap();
        let src = write_file(tmp.path(), "seg", &compressible(5000, 8));
        let dst = compressed_path(&src);
        compress_segment(&src, &dst).unwrap();
        let before = fs::read(&dst).unwrap();
        let e = compress_segment(&src, &dst).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.to_string().contains(&dst.display().to_string()));
        assert_eq!(fs::read(&dst).unwrap(), before);

        // A (sparse) file above the largest segment is refused before anything is read
        // or created.
        let huge = tmp.path().join("huge");
        File::create(&huge)
            .unwrap()
            .set_len(SEGMENT_SIZE_BYTES_MAX + 1)
            .unwrap();
        let dst = compressed_path(&huge);
        let e = compress_segment(&huge, &dst).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!dst.exists());

        let e = compress_segment(&tmp.path().join("missing"), &dst).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(!dst.exists());
        let e = compress_segment(tmp.path(), &dst).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!dst.exists());
    }

    #[test]
    fn a_failure_after_creating_the_destination_removes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dst = tmp.path().join("x.lz4");
        let bytes = mixed(300_000, 9);
        // The source fails in its third block.
        let mut source = Source {
            bytes: bytes.clone(),
            fail_at: Some(2 << 16),
        };
        let e =
            write_new_with_block_size(&mut source, Path::new("src"), &dst, 64 << 10, |_| Ok(()))
                .unwrap_err();
        assert_eq!(e.to_string(), "source: read at offset 131072: injected");
        assert!(!dst.exists());

        // The source's own record disagrees with what was read.
        let mut source = Source {
            bytes,
            fail_at: None,
        };
        let e = write_new(&mut source, Path::new("src"), &dst, |_| {
            Err(FileError::custom(
                "verify",
                "src",
                Some(0),
                io::ErrorKind::InvalidData,
                "disagrees",
            ))
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert!(!dst.exists());

        // And then a retry succeeds.
        let mut source = FileDevice::open_read_only(&write_file(tmp.path(), "s", b"abc")).unwrap();
        write_new(&mut source, Path::new("s"), &dst, |_| Ok(())).unwrap();
        assert_eq!(read_and_verify(&dst).unwrap(), b"abc");
    }
}
