//! Small helpers the LZ4 readers share: reading little-endian fields without ever
//! panicking, and the `InvalidData` error every format violation becomes.

use std::io;
use std::path::Path;
use std::string::String;

use crate::file::FileError;

/// Reads little-endian fields in order from a byte slice, without ever panicking.
pub(super) struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(super) fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.rest.split_first_chunk::<N>()?;
        self.rest = rest;
        Some(*head)
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
}

/// An `InvalidData` error of `op`: the bytes at `offset_bytes` of the compressed file
/// at `path` are not what the format allows.
pub(super) fn invalid_data(
    op: &'static str,
    path: &Path,
    offset_bytes: u64,
    message: String,
) -> FileError {
    FileError::custom(
        op,
        path,
        Some(offset_bytes),
        io::ErrorKind::InvalidData,
        message,
    )
}

/// An error for a state that the checks made at open should have made impossible.
pub(super) fn logic_error(path: &Path, message: String) -> FileError {
    FileError::custom("read", path, None, io::ErrorKind::Other, message)
}

/// Reads exactly `buf.len()` bytes at `offset_bytes` of `file`; a file that ends first
/// (shortened after it was opened) is `InvalidData` at `offset_bytes`, described by
/// `what`.
pub(super) fn read_exact_at(
    file: &std::fs::File,
    path: &Path,
    op: &'static str,
    offset_bytes: u64,
    buf: &mut [u8],
    what: impl FnOnce() -> String,
) -> Result<(), FileError> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset_bytes).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            invalid_data(op, path, offset_bytes, what())
        } else {
            FileError::new("read", path, Some(offset_bytes), e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_stop_at_the_end_without_panicking() {
        let bytes = [1u8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9];
        let mut fields = Fields::new(&bytes);
        assert_eq!(fields.u32(), Some(1));
        assert_eq!(fields.u64(), Some(2));
        assert_eq!(fields.u32(), None);
        assert_eq!(fields.u8(), Some(9));
        assert_eq!(fields.u8(), None);
        assert_eq!(fields.take::<0>(), Some([]));
    }
}
