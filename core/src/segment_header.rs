//! `SegmentHeader`: the first 64 bytes of every segment.
//!
//! ```text
//!  offset  size  field                  notes
//!  ------  ----  ---------------------  ------------------------------------------
//!       0     2  magic                  0x4653 ("FS"; bytes 53 46)
//!       2     1  version                1
//!       3     1  header_size            64
//!       4     4  segment_index          matches the file name
//!       8     4  block_count            blocks written (full or partial)
//!      12     4  event_count            events in the segment
//!      16     8  first_event_id         0 = no event yet
//!      24     8  last_event_id          0 = no event yet
//!      32     8  created_ts_ns          wall clock, ns since the Unix epoch
//!      40     8  closed_ts_ns           0 while the segment is open
//!      48     8  checksum               XXH64(0..48) then XXH64(56..64)
//!      56     8  last_chained_checksum  chained checksum of the last block
//!  ------  ----
//!            64
//! ```
//!
//! A segment is created with an *open* header: magic, version, header size, index and
//! creation time set, everything else zero, checksum zero. Only sealing rewrites it
//! with the totals and a valid checksum. A writer that crashes leaves an open header
//! in front of blocks that may all be valid, so an open header is not damage: replay
//! reads such a segment block by block up to its first empty slot.
//!
//! The C++ recorder's preparer writes a zero at the first byte of every page of the
//! segments it creates ahead of need, the header's first byte included: an open header
//! it prepared reads as magic `0x4600` (bytes `00 46`), every other byte an open
//! header's. That, and only that, is also an open header ([`PREPARED_MAGIC`]); sealing
//! writes the proper magic back.

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::checksum::segment_header_checksum;
use crate::issue::Reason;
use crate::limits::{BLOCK_EVENTS_MAX, SEGMENT_BLOCKS_MAX, SEGMENT_HEADER_SIZE_BYTES};

/// The magic number, `"FS"` read as a little-endian u16.
pub const SEGMENT_MAGIC: u16 = 0x4653;

/// The magic of an open header the C++ recorder's preparer touched: its first byte
/// zeroed (bytes `00 46`). Accepted on an open header only.
pub const PREPARED_MAGIC: u16 = SEGMENT_MAGIC & 0xff00;

/// The only format version fswal reads and writes.
pub const FORMAT_VERSION: u8 = 1;

/// The `header_size` byte: the header's size, 64.
const HEADER_SIZE_FIELD: u8 = 64;
const _: () = assert!(HEADER_SIZE_FIELD as usize == SEGMENT_HEADER_SIZE_BYTES);

/// The segment header exactly as it is stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, align(64))]
pub struct SegmentHeader {
    magic: U16,
    version: u8,
    header_size: u8,
    segment_index: U32,
    block_count: U32,
    event_count: U32,
    first_event_id: U64,
    last_event_id: U64,
    created_ts_ns: U64,
    closed_ts_ns: U64,
    checksum: U64,
    last_chained_checksum: U64,
}

const _: () = assert!(size_of::<SegmentHeader>() == SEGMENT_HEADER_SIZE_BYTES);
const _: () = assert!(offset_of!(SegmentHeader, magic) == 0);
const _: () = assert!(offset_of!(SegmentHeader, version) == 2);
const _: () = assert!(offset_of!(SegmentHeader, header_size) == 3);
const _: () = assert!(offset_of!(SegmentHeader, segment_index) == 4);
const _: () = assert!(offset_of!(SegmentHeader, block_count) == 8);
const _: () = assert!(offset_of!(SegmentHeader, event_count) == 12);
const _: () = assert!(offset_of!(SegmentHeader, first_event_id) == 16);
const _: () = assert!(offset_of!(SegmentHeader, last_event_id) == 24);
const _: () = assert!(offset_of!(SegmentHeader, created_ts_ns) == 32);
const _: () = assert!(offset_of!(SegmentHeader, closed_ts_ns) == 40);
const _: () = assert!(offset_of!(SegmentHeader, checksum) == 48);

/// Offset of the header checksum field, which the header checksum skips.
pub const SEGMENT_HEADER_CHECKSUM_OFFSET: usize = offset_of!(SegmentHeader, checksum);
const _: () = assert!(offset_of!(SegmentHeader, last_chained_checksum) == 56);

/// The totals a sealed header records about its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SealedTotals {
    /// Blocks written, full or partial.
    pub block_count: u32,
    /// Events in the segment.
    pub event_count: u32,
    /// Id of the first event, 0 when the segment is empty.
    pub first_event_id: u64,
    /// Id of the last event, 0 when the segment is empty.
    pub last_event_id: u64,
    /// Chained checksum of the last block, 0 when the segment is empty.
    pub last_chained_checksum: u64,
}

impl SealedTotals {
    /// The totals of a segment without blocks.
    pub const EMPTY: Self = Self {
        block_count: 0,
        event_count: 0,
        first_event_id: 0,
        last_event_id: 0,
        last_chained_checksum: 0,
    };
}

/// Whether a structurally valid header is open or sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderState {
    /// Written at creation and never sealed: the totals are unknown and replay reads
    /// blocks up to the first empty slot.
    Open,
    /// Sealed on close: the totals are authoritative.
    Sealed(SealedTotals),
}

impl SegmentHeader {
    /// An open header for a new segment.
    #[must_use]
    pub fn new_open(segment_index: u32, created_ts_ns: u64) -> Self {
        Self {
            magic: U16::new(SEGMENT_MAGIC),
            version: FORMAT_VERSION,
            header_size: HEADER_SIZE_FIELD,
            segment_index: U32::new(segment_index),
            block_count: U32::ZERO,
            event_count: U32::ZERO,
            first_event_id: U64::ZERO,
            last_event_id: U64::ZERO,
            created_ts_ns: U64::new(created_ts_ns),
            closed_ts_ns: U64::ZERO,
            checksum: U64::ZERO,
            last_chained_checksum: U64::ZERO,
        }
    }

    /// The sealed form of this header: the totals, the closing time and a valid checksum.
    #[must_use]
    pub fn sealed(&self, totals: &SealedTotals, closed_ts_ns: u64) -> Self {
        let mut h = *self;
        // An open header the C++ preparer touched gets its magic back.
        h.magic = U16::new(SEGMENT_MAGIC);
        h.block_count = U32::new(totals.block_count);
        h.event_count = U32::new(totals.event_count);
        h.first_event_id = U64::new(totals.first_event_id);
        h.last_event_id = U64::new(totals.last_event_id);
        h.last_chained_checksum = U64::new(totals.last_chained_checksum);
        h.closed_ts_ns = U64::new(closed_ts_ns);
        h.checksum = U64::ZERO;
        h.checksum = U64::new(segment_header_checksum(&h));
        h
    }

    /// The sealed form of this header, as [`SegmentHeader::sealed`] builds it, checked
    /// before anyone writes it: it must check as a sealed header of its own segment
    /// with exactly `totals`, so totals that contradict each other, or a header the
    /// checksum does not vouch for, are refused with the rule they break instead of
    /// being written over a segment's blocks. Cheap (one checksum of 64 bytes), so it
    /// runs in every build.
    pub fn sealed_checked(&self, totals: &SealedTotals, closed_ts_ns: u64) -> Result<Self, Reason> {
        let sealed = self.sealed(totals, closed_ts_ns);
        match sealed.check(self.segment_index())? {
            HeaderState::Sealed(found) if found == *totals => Ok(sealed),
            // A true checksum of 0 reads as an open header (a 2^-64 chance), and totals
            // that read back otherwise would be a bug in the layout: neither may be
            // written as a seal.
            HeaderState::Sealed(_) | HeaderState::Open => Err(Reason::InconsistentSegmentHeader {
                rule: "the sealed header does not read back as the totals it was built from",
            }),
        }
    }

    /// The header in `bytes`, whatever they hold; use [`SegmentHeader::check`] before
    /// trusting it.
    #[must_use]
    pub fn read_from(bytes: &[u8; SEGMENT_HEADER_SIZE_BYTES]) -> Self {
        // A 64-byte array always holds a SegmentHeader (every bit pattern is one).
        let mut h = Self::new_zeroed();
        h.as_mut_bytes().copy_from_slice(bytes);
        h
    }

    /// The magic number.
    #[must_use]
    pub fn magic(&self) -> u16 {
        self.magic.get()
    }
    /// The format version.
    #[must_use]
    pub fn version(&self) -> u8 {
        self.version
    }
    /// The header size byte.
    #[must_use]
    pub fn header_size(&self) -> u8 {
        self.header_size
    }
    /// The segment index.
    #[must_use]
    pub fn segment_index(&self) -> u32 {
        self.segment_index.get()
    }
    /// Blocks recorded by a sealed header (0 in an open one).
    #[must_use]
    pub fn block_count(&self) -> u32 {
        self.block_count.get()
    }
    /// Events recorded by a sealed header (0 in an open one).
    #[must_use]
    pub fn event_count(&self) -> u32 {
        self.event_count.get()
    }
    /// First event id recorded by a sealed header.
    #[must_use]
    pub fn first_event_id(&self) -> u64 {
        self.first_event_id.get()
    }
    /// Last event id recorded by a sealed header.
    #[must_use]
    pub fn last_event_id(&self) -> u64 {
        self.last_event_id.get()
    }
    /// Creation time, ns since the Unix epoch.
    #[must_use]
    pub fn created_ts_ns(&self) -> u64 {
        self.created_ts_ns.get()
    }
    /// Closing time, ns since the Unix epoch; 0 while open.
    #[must_use]
    pub fn closed_ts_ns(&self) -> u64 {
        self.closed_ts_ns.get()
    }
    /// The stored header checksum.
    #[must_use]
    pub fn checksum(&self) -> u64 {
        self.checksum.get()
    }
    /// Chained checksum of the segment's last block, as a sealed header records it.
    #[must_use]
    pub fn last_chained_checksum(&self) -> u64 {
        self.last_chained_checksum.get()
    }

    /// Whether every byte is zero: a header that was never written.
    #[must_use]
    pub fn is_blank(&self) -> bool {
        self.as_bytes().iter().all(|&b| b == 0)
    }

    /// Checks the header of the segment numbered `expected_index` and says whether it
    /// is open or sealed.
    ///
    /// Identity first (magic, version, size), then the checksum, then the index, then
    /// the relations between a sealed header's totals, so that the reason reported is
    /// the most basic rule broken. An open header is recognised by its zero checksum and
    /// requires every field that sealing sets to be zero as well; a sealed header whose
    /// true checksum happens to be 0 (a 2^-64 chance) would be misread as a damaged
    /// open one, never accepted wrongly.
    pub fn check(&self, expected_index: u32) -> Result<HeaderState, Reason> {
        // A touched magic passes only as an open header, checked as one below.
        let prepared = self.magic() == PREPARED_MAGIC;
        if self.magic() != SEGMENT_MAGIC && !prepared {
            return Err(Reason::BadMagic {
                found: self.magic(),
            });
        }
        if self.version != FORMAT_VERSION {
            return Err(Reason::UnsupportedVersion {
                found: self.version,
            });
        }
        if self.header_size != HEADER_SIZE_FIELD {
            return Err(Reason::BadHeaderSize {
                found: self.header_size,
            });
        }
        let computed = segment_header_checksum(self);
        let state = if self.checksum() == 0 {
            let untouched = self.block_count() == 0
                && self.event_count() == 0
                && self.first_event_id() == 0
                && self.last_event_id() == 0
                && self.closed_ts_ns() == 0
                && self.last_chained_checksum() == 0;
            if !untouched {
                return Err(Reason::SegmentHeaderChecksumMismatch {
                    stored: 0,
                    computed,
                });
            }
            HeaderState::Open
        } else if prepared {
            // A prepared header is open; one with a checksum is not one the C++
            // preparer wrote, whatever its checksum says.
            return Err(Reason::BadMagic {
                found: self.magic(),
            });
        } else if self.checksum() != computed {
            return Err(Reason::SegmentHeaderChecksumMismatch {
                stored: self.checksum(),
                computed,
            });
        } else {
            HeaderState::Sealed(self.sealed_totals()?)
        };
        if self.segment_index() != expected_index {
            return Err(Reason::SegmentIndexMismatch {
                found: self.segment_index(),
                expected: expected_index,
            });
        }
        Ok(state)
    }

    /// The totals of a sealed header, checked against each other.
    fn sealed_totals(&self) -> Result<SealedTotals, Reason> {
        let t = SealedTotals {
            block_count: self.block_count(),
            event_count: self.event_count(),
            first_event_id: self.first_event_id(),
            last_event_id: self.last_event_id(),
            last_chained_checksum: self.last_chained_checksum(),
        };
        let broken = |rule| Err(Reason::InconsistentSegmentHeader { rule });
        if t.block_count > SEGMENT_BLOCKS_MAX {
            return broken("block_count is above the largest segment");
        }
        // Both sides fit in u64 without overflow: block_count <= 2^19 and 256 = 2^8.
        if u64::from(t.event_count) > u64::from(t.block_count) * BLOCK_EVENTS_MAX as u64 {
            return broken("more events than its blocks can hold");
        }
        if t.event_count < t.block_count {
            return broken("fewer events than blocks (every block holds at least one)");
        }
        if t.event_count == 0 {
            if t.first_event_id != 0 || t.last_event_id != 0 || t.last_chained_checksum != 0 {
                return broken("no events but event ids or a chained checksum are set");
            }
            return Ok(t);
        }
        if t.first_event_id == 0 {
            return broken("first_event_id is 0");
        }
        if t.first_event_id > t.last_event_id {
            return broken("first_event_id is greater than last_event_id");
        }
        // Strictly increasing ids: at least event_count distinct ids in first..=last.
        if t.last_event_id - t.first_event_id < u64::from(t.event_count) - 1 {
            return broken("fewer distinct ids in first..=last than events");
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known_sealed() -> SegmentHeader {
        // The finalized header of docs/FORMAT.md's known answers.
        let open = SegmentHeader::new_open(0, 0x18ea_14fb_337b_48ea);
        open.sealed(
            &SealedTotals {
                block_count: 16,
                event_count: 4096,
                first_event_id: 1,
                last_event_id: 4096,
                last_chained_checksum: 0x85a8_d2ad_7eb9_a52a,
            },
            0x18ea_14fb_3383_1313,
        )
    }

    #[test]
    fn sealing_reproduces_the_known_header_bytes() {
        let want = "5346014000000000100000000010000001000000000000000010000000000000\
                    ea487b33fb14ea1813138333fb14ea18c08cfe29de72bd132aa5b97eadd2a885";
        let h = known_sealed();
        let mut got = [0u8; 128];
        for (i, b) in h.as_bytes().iter().enumerate() {
            let hex = b"0123456789abcdef";
            got[2 * i] = hex[usize::from(b >> 4)];
            got[2 * i + 1] = hex[usize::from(b & 15)];
        }
        assert_eq!(core::str::from_utf8(&got).unwrap(), want);
        assert_eq!(h.checksum(), 0x13bd_72de_29fe_8cc0);
        assert!(matches!(h.check(0), Ok(HeaderState::Sealed(t)) if t.event_count == 4096));
    }

    #[test]
    fn open_header_is_recognised() {
        let h = SegmentHeader::new_open(7, 123);
        assert_eq!(h.check(7), Ok(HeaderState::Open));
        assert_eq!(
            h.check(8),
            Err(Reason::SegmentIndexMismatch {
                found: 7,
                expected: 8
            })
        );
        assert_eq!(h.as_bytes()[..4], [0x53, 0x46, 1, 64]);
    }

    #[test]
    fn a_header_the_cpp_preparer_touched_is_open_and_nothing_else_relaxes() {
        // The C++ preparer zeroes the first byte of every page: magic 0x4600.
        let touched = |h: SegmentHeader| {
            let mut bytes = [0u8; 64];
            bytes.copy_from_slice(h.as_bytes());
            bytes[0] = 0;
            SegmentHeader::read_from(&bytes)
        };
        let open = touched(SegmentHeader::new_open(3, 99));
        assert_eq!(open.magic(), PREPARED_MAGIC);
        assert_eq!(open.check(3), Ok(HeaderState::Open));
        assert!(matches!(
            open.check(4),
            Err(Reason::SegmentIndexMismatch { .. })
        ));
        // Only an open header: a touched sealed one is not a header at all.
        assert_eq!(
            touched(known_sealed()).check(0),
            Err(Reason::BadMagic { found: 0x4600 })
        );
        // Any other first byte, or a touched second byte, is still bad magic.
        for (at, v) in [(0usize, 0x01u8), (0, 0xff), (1, 0x00)] {
            let mut bytes = [0u8; 64];
            bytes.copy_from_slice(open.as_bytes());
            bytes[at] = v;
            assert!(matches!(
                SegmentHeader::read_from(&bytes).check(3),
                Err(Reason::BadMagic { .. })
            ));
        }
        // Sealing writes the proper magic back.
        let sealed = open.sealed(&SealedTotals::EMPTY, 100);
        assert_eq!(sealed.magic(), SEGMENT_MAGIC);
        assert!(matches!(sealed.check(3), Ok(HeaderState::Sealed(_))));
    }

    #[test]
    fn open_header_with_a_total_set_is_damage() {
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(SegmentHeader::new_open(1, 5).as_bytes());
        bytes[12] = 1; // event_count = 1, checksum still zero
        let h = SegmentHeader::read_from(&bytes);
        assert!(matches!(
            h.check(1),
            Err(Reason::SegmentHeaderChecksumMismatch { stored: 0, .. })
        ));
    }

    #[test]
    fn identity_checks_come_first() {
        let base = known_sealed();
        let with = |at: usize, v: u8| {
            let mut bytes = [0u8; 64];
            bytes.copy_from_slice(base.as_bytes());
            bytes[at] = v;
            SegmentHeader::read_from(&bytes).check(0)
        };
        assert_eq!(with(0, 0x54), Err(Reason::BadMagic { found: 0x4654 }));
        assert_eq!(with(2, 2), Err(Reason::UnsupportedVersion { found: 2 }));
        assert_eq!(with(3, 32), Err(Reason::BadHeaderSize { found: 32 }));
        assert!(matches!(
            with(20, 9),
            Err(Reason::SegmentHeaderChecksumMismatch { .. })
        ));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let base = known_sealed();
        for bit in 0..512 {
            let mut bytes = [0u8; 64];
            bytes.copy_from_slice(base.as_bytes());
            bytes[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentHeader::read_from(&bytes).check(0).is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn sealed_totals_must_agree() {
        let open = SegmentHeader::new_open(0, 1);
        let seal = |t: SealedTotals| open.sealed(&t, 2).check(0);
        let ok = SealedTotals {
            block_count: 2,
            event_count: 300,
            first_event_id: 10,
            last_event_id: 309,
            last_chained_checksum: 1,
        };
        assert!(seal(ok).is_ok());
        assert!(seal(SealedTotals::EMPTY).is_ok());
        for bad in [
            SealedTotals {
                event_count: 513,
                ..ok
            },
            SealedTotals {
                event_count: 1,
                ..ok
            },
            SealedTotals {
                first_event_id: 0,
                ..ok
            },
            SealedTotals {
                first_event_id: 400,
                ..ok
            },
            SealedTotals {
                last_event_id: 100,
                ..ok
            },
            SealedTotals {
                block_count: SEGMENT_BLOCKS_MAX + 1,
                ..ok
            },
            SealedTotals {
                last_chained_checksum: 5,
                ..SealedTotals::EMPTY
            },
        ] {
            assert!(
                matches!(seal(bad), Err(Reason::InconsistentSegmentHeader { .. })),
                "{bad:?}"
            );
            // The checked seal refuses the same totals, and says which rule they break.
            assert_eq!(
                open.sealed_checked(&bad, 2).err(),
                seal(bad).err(),
                "{bad:?}"
            );
        }
        assert_eq!(open.sealed_checked(&ok, 2), Ok(open.sealed(&ok, 2)));
    }

    #[test]
    fn a_checked_seal_is_the_known_answer() {
        let open = SegmentHeader::new_open(0, 0x18ea_14fb_337b_48ea);
        let totals = match known_sealed().check(0) {
            Ok(HeaderState::Sealed(t)) => t,
            other => panic!("the known answer does not check: {other:?}"),
        };
        let closed_ts_ns = known_sealed().closed_ts_ns();
        assert_eq!(
            open.sealed_checked(&totals, closed_ts_ns),
            Ok(known_sealed())
        );
        // A prepared header (the C++ preparer's magic) seals with the proper magic.
        let mut prepared = open;
        prepared.magic = U16::new(PREPARED_MAGIC);
        assert_eq!(
            prepared.sealed_checked(&totals, closed_ts_ns),
            Ok(known_sealed())
        );
    }
}
