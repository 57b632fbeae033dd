//! [`DirSegment`]: a segment of a WAL directory, raw or compressed.

use super::*;

/// A segment of a WAL directory: its file as written (`FS.%08u.wal`), opened as a
/// device of kind `D`, or its compressed copy (`FS.%08u.wal.lz4`), read-only.
#[derive(Debug)]
#[non_exhaustive]
pub enum DirSegment<D> {
    /// The segment file itself.
    Raw(D),
    /// The LZ4 container of a sealed segment, decompressed as it is read.
    Compressed(Lz4Device),
}

impl<D: SegmentFile> DirSegment<D> {
    /// The file the segment is read from.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Raw(d) => d.path(),
            Self::Compressed(d) => d.path(),
        }
    }

    /// The raw segment device, or `None` for a compressed segment.
    #[must_use]
    pub fn raw(&self) -> Option<&D> {
        match self {
            Self::Raw(d) => Some(d),
            Self::Compressed(_) => None,
        }
    }
}

impl<D: BlockDevice<Error = FileError>> BlockDevice for DirSegment<D> {
    type Error = FileError;

    fn write_granularity_bytes(&self) -> u32 {
        match self {
            Self::Raw(d) => d.write_granularity_bytes(),
            Self::Compressed(d) => d.write_granularity_bytes(),
        }
    }
    fn len_bytes(&self) -> u64 {
        match self {
            Self::Raw(d) => d.len_bytes(),
            Self::Compressed(d) => d.len_bytes(),
        }
    }
    fn capacity_bytes(&self) -> u64 {
        match self {
            Self::Raw(d) => d.capacity_bytes(),
            Self::Compressed(d) => d.capacity_bytes(),
        }
    }
    fn read_exact_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), FileError> {
        match self {
            Self::Raw(d) => d.read_exact_at(offset_bytes, buf),
            Self::Compressed(d) => d.read_exact_at(offset_bytes, buf),
        }
    }
    fn write_all_at(&mut self, offset_bytes: u64, buf: &[u8]) -> Result<(), FileError> {
        match self {
            Self::Raw(d) => d.write_all_at(offset_bytes, buf),
            Self::Compressed(d) => d.write_all_at(offset_bytes, buf),
        }
    }
    fn sync(&mut self) -> Result<(), FileError> {
        match self {
            Self::Raw(d) => d.sync(),
            Self::Compressed(d) => d.sync(),
        }
    }
    fn mapped_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Raw(d) => d.mapped_bytes(),
            Self::Compressed(d) => d.mapped_bytes(),
        }
    }
}
