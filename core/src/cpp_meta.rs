//! `CppMeta`: the C++ recorder's meta file (`wal_meta.dat`), read as a hint only.
//!
//! ```text
//!  offset  size  field           notes
//!  ------  ----  --------------  -------------------------------------------------
//!       0     8  position        u64: segment_index << 32 | offset in that segment
//!       8     8  last_event_id   u64
//!  ------  ----
//!            16
//! ```
//!
//! The C++ recorder writes it on rotation, start and shutdown, with no magic and no
//! checksum (docs/FORMAT.md). Nothing proves that it was written whole or that it says
//! what the segments hold, so fswal never trusts it over them and never writes it: it
//! only reports what it says, and says so when the log's valid prefix ends before the
//! event it names.

use core::mem::size_of;

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes in the C++ meta file.
pub const CPP_META_SIZE_BYTES: usize = 16;

/// The meta file exactly as it is stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
struct Record {
    position: U64,
    last_event_id: U64,
}

const _: () = assert!(size_of::<Record>() == CPP_META_SIZE_BYTES);

/// What the C++ meta file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CppMeta {
    /// The segment it names.
    pub segment_index: u32,
    /// The offset in that segment it names.
    pub offset_bytes: u32,
    /// The last event id it names.
    pub last_event_id: u64,
}

impl CppMeta {
    /// Decodes the file's bytes, or `None` when they are not exactly 16 bytes long.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let record = Record::read_from_bytes(bytes).ok()?;
        let position = record.position.get();
        Some(Self {
            // The high and the low half of the position: both exact.
            segment_index: u32::try_from(position >> 32).ok()?,
            offset_bytes: u32::try_from(position & u64::from(u32::MAX)).ok()?,
            last_event_id: record.last_event_id.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_vector_and_refuses_other_sizes() {
        // wal_meta.dat of the C++ vector flashstrike-mgr-crash.
        let bytes = [
            0x40, 0x04, 0x04, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x20, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(
            CppMeta::decode(&bytes),
            Some(CppMeta {
                segment_index: 2,
                offset_bytes: 263_232,
                last_event_id: 8192
            })
        );
        assert_eq!(CppMeta::decode(&bytes[..15]), None);
        assert_eq!(CppMeta::decode(&[0u8; 17]), None);
    }
}
