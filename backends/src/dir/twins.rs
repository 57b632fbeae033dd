//! A segment stored twice: `FS.%08u.wal` and `FS.%08u.wal.lz4` side by side.
//!
//! Both exist only when a compression was interrupted between writing the compressed
//! file and deleting the raw one (fswal's own compression, or the C++ recorder's
//! maintainer, which writes the `.lz4` under its final name). The raw file is the one
//! read: it is what the writer made, and a compressed file cut short by the crash may
//! be incomplete. When both are complete they must hold the same bytes: two different
//! complete copies of one segment mean that one of them is not this log's (a stale file
//! of an earlier log, a copy from elsewhere), and fswal does not guess which events are
//! the true ones.
//!
//! "Complete" means, for the raw file, a sealed header for its index (a segment is
//! compressed only once it is sealed) and, for the compressed file, that it decompresses
//! in full with every checksum it carries.

use std::format;
use std::path::Path;
use std::vec;

use fswal_core::BlockDevice;
use fswal_core::limits::SEGMENT_HEADER_SIZE_BYTES;
use fswal_core::segment_header::{HeaderState, SegmentHeader};

use crate::file::{FileDevice, FileError};
use crate::lz4::Lz4Device;

/// Bytes compared at a time: two buffers of this size are all the comparison holds.
const COMPARE_CHUNK_BYTES: usize = 1 << 20;

const _: () = assert!(COMPARE_CHUNK_BYTES >= SEGMENT_HEADER_SIZE_BYTES);

/// What [`compare`] found about the two copies of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Twins {
    /// Both are complete and hold the same bytes.
    Same,
    /// The raw file has no sealed header for its index: it is the one to read, and
    /// there is nothing complete to compare it with.
    RawNotSealed,
    /// The compressed file is cut short or damaged (a compression interrupted while
    /// writing it): the raw file is read, and the compressed one is ignored.
    CompressedIncomplete,
}

/// Compares the raw file `raw` and the compressed file `compressed` of segment `index`.
/// Fails with `InvalidData`, naming the raw file and the first offset where they
/// differ (the compressed file named in the message), when both are complete and
/// differ; fails with the I/O error when the raw file cannot be read.
pub(super) fn compare(index: u32, raw: &Path, compressed: &Path) -> Result<Twins, FileError> {
    let mut raw_device = FileDevice::open_read_only(raw)?;
    let mut header = [0u8; SEGMENT_HEADER_SIZE_BYTES];
    if raw_device.len_bytes() < SEGMENT_HEADER_SIZE_BYTES as u64 {
        return Ok(Twins::RawNotSealed);
    }
    raw_device.read_exact_at(0, &mut header)?;
    if !matches!(
        SegmentHeader::read_from(&header).check(index),
        Ok(HeaderState::Sealed(_))
    ) {
        return Ok(Twins::RawNotSealed);
    }
    // A compressed file that does not open or does not verify is an interrupted
    // compression: its error is not the log's, since the raw file holds the segment.
    let Ok(mut packed) = Lz4Device::open_read_only(compressed) else {
        return Ok(Twins::CompressedIncomplete);
    };
    if packed.verify_contents().is_err() {
        return Ok(Twins::CompressedIncomplete);
    }
    let differ = |offset_bytes: u64, what: &str| {
        FileError::custom(
            "compare",
            raw,
            Some(offset_bytes),
            std::io::ErrorKind::InvalidData,
            format!(
                "segment {index} is also stored, complete, in {}, and the two differ ({what}): move the one that is not this log's out of the directory",
                compressed.display()
            ),
        )
    };
    let len_bytes = raw_device.len_bytes();
    if packed.len_bytes() != len_bytes {
        return Err(differ(
            len_bytes.min(packed.len_bytes()),
            &format!("{len_bytes} bytes raw, {} decompressed", packed.len_bytes()),
        ));
    }
    let mut a = vec![0u8; COMPARE_CHUNK_BYTES];
    let mut b = vec![0u8; COMPARE_CHUNK_BYTES];
    let mut offset_bytes = 0u64;
    // Each pass advances by at least one byte (the chunk is not empty while bytes are
    // left), so the loop ends after at most `len_bytes / 1` passes.
    while offset_bytes < len_bytes {
        let n = usize::try_from(len_bytes - offset_bytes)
            .unwrap_or(COMPARE_CHUNK_BYTES)
            .min(COMPARE_CHUNK_BYTES);
        let (Some(a), Some(b)) = (a.get_mut(..n), b.get_mut(..n)) else {
            break;
        };
        raw_device.read_exact_at(offset_bytes, a)?;
        packed.read_exact_at(offset_bytes, b)?;
        if let Some(at) = a.iter().zip(b.iter()).position(|(x, y)| x != y) {
            return Err(differ(
                offset_bytes.saturating_add(at as u64),
                "first different byte",
            ));
        }
        offset_bytes = offset_bytes.saturating_add(n as u64);
    }
    Ok(Twins::Same)
}
