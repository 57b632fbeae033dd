//! `Superblock`: the first 64 bytes of a raw block device holding a WAL
//! (docs/FORMAT.md, "The raw device layout"). Private to the raw backend but for
//! [`Layout`], which [`RawStore::layout`](super::RawStore::layout) returns.
//!
//! On a raw device there are no files: the WAL is a fixed array of segment slots
//! behind this record, which says how the device is laid out.
//!
//! ```text
//!  offset  size  field                     notes
//!  ------  ----  ------------------------  ----------------------------------------
//!       0     8  magic                     "FSWALDV1"
//!       8     4  layout_version            1
//!      12     4  logical_block_bytes       the device's sector size when formatted
//!      16     8  device_size_bytes         the device's size when formatted
//!      24     8  first_slot_offset_bytes   where slot 0 starts (aligned)
//!      32     8  slot_size_bytes           bytes per slot (aligned, >= one segment)
//!      40     4  slot_count                slots on the device
//!      44     4  blocks_per_segment        block slots of every segment
//!      48     8  formatted_ts_ns           when the device was formatted
//!      56     8  checksum                  XXH64(bytes 0..56, seed 0)
//!  ------  ----
//!            64
//! ```
//!
//! Device layout (every region aligned to 4 KiB, so to any sector size up to it):
//!
//! ```text
//!  0          superblock (this record, in a 4 KiB sector)
//!  4 KiB      sealed checkpoint (a 64-byte checkpoint record, in a 4 KiB sector)
//!  8 KiB      sync mark (a 64-byte checkpoint record, in a 4 KiB sector)
//!  64 KiB     quarantine: 40 entries of 24 KiB (a 4 KiB header, then up to one
//!             block of bytes that earlier versions of recovery copied there before
//!             clearing them; no longer written)
//!  1 MiB      slot 0, slot 1, ... slot_count - 1; segment i lives in slot
//!             i % slot_count, its v1 segment bytes at the start of the slot
//! ```
//!
//! The superblock is written once, when the device is formatted, and never rewritten.
//! A slot's segment says itself which segment it is (its header's `segment_index`).

use core::mem::{offset_of, size_of};

use xxhash_rust::xxh64::xxh64;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use fswal_core::limits::{BLOCK_SIZE_BYTES, is_valid_segment_blocks, segment_size_bytes};

/// Bytes in the superblock record.
pub(crate) const SUPERBLOCK_SIZE_BYTES: usize = 64;

/// The superblock magic.
pub(crate) const SUPERBLOCK_MAGIC: [u8; 8] = *b"FSWALDV1";

/// The only layout version.
pub(crate) const LAYOUT_VERSION: u32 = 1;

/// The alignment of every region of the device.
pub(crate) const REGION_ALIGN_BYTES: u64 = 4096;

/// Where the sealed checkpoint's sector starts.
pub(crate) const CHECKPOINT_OFFSET_BYTES: u64 = 4096;

/// Where the sync mark's sector starts.
pub(crate) const MARK_OFFSET_BYTES: u64 = 8192;

/// Where the quarantine area starts.
pub(crate) const QUARANTINE_OFFSET_BYTES: u64 = 64 * 1024;

/// Bytes per quarantine entry: a 4 KiB header sector, then room for one block.
pub(crate) const QUARANTINE_ENTRY_BYTES: u64 = 24 * 1024;

/// Entries in the quarantine area.
pub(crate) const QUARANTINE_ENTRIES: u32 = 40;

/// Where slot 0 starts, and the alignment of the slot size.
pub(crate) const FIRST_SLOT_OFFSET_BYTES: u64 = 1024 * 1024;

const _: () = assert!(CHECKPOINT_OFFSET_BYTES >= REGION_ALIGN_BYTES);
const _: () = assert!(MARK_OFFSET_BYTES >= CHECKPOINT_OFFSET_BYTES + REGION_ALIGN_BYTES);
const _: () = assert!(QUARANTINE_OFFSET_BYTES >= MARK_OFFSET_BYTES + REGION_ALIGN_BYTES);
const _: () = assert!(QUARANTINE_ENTRY_BYTES >= REGION_ALIGN_BYTES + BLOCK_SIZE_BYTES as u64);
const _: () = assert!(
    QUARANTINE_OFFSET_BYTES + QUARANTINE_ENTRIES as u64 * QUARANTINE_ENTRY_BYTES
        <= FIRST_SLOT_OFFSET_BYTES
);
const _: () = assert!(FIRST_SLOT_OFFSET_BYTES % REGION_ALIGN_BYTES == 0);
const _: () = assert!(QUARANTINE_ENTRY_BYTES % REGION_ALIGN_BYTES == 0);

/// The superblock exactly as it is stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, align(64))]
pub(crate) struct Superblock {
    magic: [u8; 8],
    layout_version: U32,
    logical_block_bytes: U32,
    device_size_bytes: U64,
    first_slot_offset_bytes: U64,
    slot_size_bytes: U64,
    slot_count: U32,
    blocks_per_segment: U32,
    formatted_ts_ns: U64,
    checksum: U64,
}

const _: () = assert!(size_of::<Superblock>() == SUPERBLOCK_SIZE_BYTES);
const _: () = assert!(offset_of!(Superblock, logical_block_bytes) == 12);
const _: () = assert!(offset_of!(Superblock, first_slot_offset_bytes) == 24);
const _: () = assert!(offset_of!(Superblock, slot_count) == 40);
const _: () = assert!(offset_of!(Superblock, checksum) == 56);

/// The layout a superblock describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Layout {
    /// The device's sector size when formatted.
    pub logical_block_bytes: u32,
    /// The device's size when formatted.
    pub device_size_bytes: u64,
    /// Where slot 0 starts.
    pub first_slot_offset_bytes: u64,
    /// Bytes per slot.
    pub slot_size_bytes: u64,
    /// Slots on the device.
    pub slot_count: u32,
    /// Block slots of every segment.
    pub blocks_per_segment: u32,
    /// When the device was formatted.
    pub formatted_ts_ns: u64,
}

/// Why a superblock cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SuperblockDefect {
    /// Not the superblock magic: the device does not hold an fswal WAL.
    BadMagic,
    /// A layout version fswal does not know.
    UnsupportedVersion,
    /// The checksum does not match.
    ChecksumMismatch,
    /// The layout contradicts itself or the format's bounds.
    Inconsistent(&'static str),
}

impl Layout {
    /// The layout for a device of `device_size_bytes` with `logical_block_bytes`
    /// sectors, holding segments of `blocks_per_segment` block slots: as many slots as
    /// fit. `None` when not even one slot fits or the block count is out of range.
    #[must_use]
    pub(crate) fn for_device(
        device_size_bytes: u64,
        logical_block_bytes: u32,
        blocks_per_segment: u32,
        formatted_ts_ns: u64,
    ) -> Option<Self> {
        if !is_valid_segment_blocks(blocks_per_segment) {
            return None;
        }
        let slot_size_bytes =
            segment_size_bytes(blocks_per_segment).next_multiple_of(FIRST_SLOT_OFFSET_BYTES);
        let slots = device_size_bytes.checked_sub(FIRST_SLOT_OFFSET_BYTES)? / slot_size_bytes;
        let slot_count = u32::try_from(slots).ok().filter(|&n| n > 0)?;
        let layout = Self {
            logical_block_bytes,
            device_size_bytes,
            first_slot_offset_bytes: FIRST_SLOT_OFFSET_BYTES,
            slot_size_bytes,
            slot_count,
            blocks_per_segment,
            formatted_ts_ns,
        };
        layout.check().ok().map(|()| layout)
    }

    /// Where slot `slot` starts on the device.
    #[must_use]
    pub fn slot_offset_bytes(&self, slot: u32) -> u64 {
        self.first_slot_offset_bytes + u64::from(slot) * self.slot_size_bytes
    }

    /// The slot segment `index` lives in.
    #[must_use]
    pub fn slot_of(&self, index: u32) -> u32 {
        index % self.slot_count.max(1)
    }

    /// Bytes of every segment on the device.
    #[must_use]
    pub fn segment_size_bytes(&self) -> u64 {
        segment_size_bytes(self.blocks_per_segment)
    }

    /// Checks the relations between the fields.
    fn check(&self) -> Result<(), SuperblockDefect> {
        let broken = |rule| Err(SuperblockDefect::Inconsistent(rule));
        if !self.logical_block_bytes.is_power_of_two()
            || u64::from(self.logical_block_bytes) > REGION_ALIGN_BYTES
        {
            return broken("the sector size is not a power of two up to 4096");
        }
        if !is_valid_segment_blocks(self.blocks_per_segment) {
            return broken("blocks_per_segment is not in 16..=524288");
        }
        if self.first_slot_offset_bytes < FIRST_SLOT_OFFSET_BYTES
            || self.first_slot_offset_bytes % REGION_ALIGN_BYTES != 0
        {
            return broken("slot 0 overlaps the reserved regions or is unaligned");
        }
        if self.slot_size_bytes < segment_size_bytes(self.blocks_per_segment)
            || self.slot_size_bytes % REGION_ALIGN_BYTES != 0
        {
            return broken("a slot is smaller than a segment or unaligned");
        }
        if self.slot_count == 0 {
            return broken("no slot");
        }
        let end = u64::from(self.slot_count)
            .checked_mul(self.slot_size_bytes)
            .and_then(|b| b.checked_add(self.first_slot_offset_bytes));
        if end.is_none_or(|end| end > self.device_size_bytes) {
            return broken("the slots do not fit on the device");
        }
        Ok(())
    }
}

impl Superblock {
    /// The record for `layout`, with its checksum.
    #[must_use]
    pub(crate) fn new(layout: &Layout) -> Self {
        let mut s = Self {
            magic: SUPERBLOCK_MAGIC,
            layout_version: U32::new(LAYOUT_VERSION),
            logical_block_bytes: U32::new(layout.logical_block_bytes),
            device_size_bytes: U64::new(layout.device_size_bytes),
            first_slot_offset_bytes: U64::new(layout.first_slot_offset_bytes),
            slot_size_bytes: U64::new(layout.slot_size_bytes),
            slot_count: U32::new(layout.slot_count),
            blocks_per_segment: U32::new(layout.blocks_per_segment),
            formatted_ts_ns: U64::new(layout.formatted_ts_ns),
            checksum: U64::ZERO,
        };
        s.checksum = U64::new(s.computed_checksum());
        s
    }

    fn computed_checksum(&self) -> u64 {
        let bytes = self.as_bytes();
        xxh64(
            bytes
                .get(..offset_of!(Superblock, checksum))
                .unwrap_or(bytes),
            0,
        )
    }

    /// Decodes and checks a stored superblock.
    pub(crate) fn decode(bytes: &[u8; SUPERBLOCK_SIZE_BYTES]) -> Result<Layout, SuperblockDefect> {
        let s = Self::read_from_bytes(bytes).map_err(|_| SuperblockDefect::BadMagic)?;
        if s.magic != SUPERBLOCK_MAGIC {
            return Err(SuperblockDefect::BadMagic);
        }
        if s.checksum.get() != s.computed_checksum() {
            return Err(SuperblockDefect::ChecksumMismatch);
        }
        if s.layout_version.get() != LAYOUT_VERSION {
            return Err(SuperblockDefect::UnsupportedVersion);
        }
        let layout = Layout {
            logical_block_bytes: s.logical_block_bytes.get(),
            device_size_bytes: s.device_size_bytes.get(),
            first_slot_offset_bytes: s.first_slot_offset_bytes.get(),
            slot_size_bytes: s.slot_size_bytes.get(),
            slot_count: s.slot_count.get(),
            blocks_per_segment: s.blocks_per_segment.get(),
            formatted_ts_ns: s.formatted_ts_ns.get(),
        };
        layout.check()?;
        Ok(layout)
    }

    /// The stored bytes.
    #[must_use]
    pub(crate) fn to_bytes(self) -> [u8; SUPERBLOCK_SIZE_BYTES] {
        let mut out = [0u8; SUPERBLOCK_SIZE_BYTES];
        out.copy_from_slice(self.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_fits_slots_after_the_reserved_regions() {
        let l = Layout::for_device(64 << 20, 512, 16, 1).unwrap();
        assert_eq!(
            l.slot_size_bytes,
            1 << 20,
            "263 232 bytes rounded up to 1 MiB"
        );
        assert_eq!(l.slot_count, 63);
        assert_eq!(l.slot_offset_bytes(0), 1 << 20);
        assert_eq!(l.slot_offset_bytes(62), 63 << 20);
        assert_eq!(l.slot_of(65), 2);
        assert_eq!(
            Layout::for_device(1 << 20, 512, 16, 1),
            None,
            "no room for a slot"
        );
        assert_eq!(Layout::for_device(64 << 20, 512, 15, 1), None);
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let l = Layout::for_device(256 << 20, 4096, 64, 7).unwrap();
        let bytes = Superblock::new(&l).to_bytes();
        assert_eq!(&bytes[..8], b"FSWALDV1");
        assert_eq!(Superblock::decode(&bytes), Ok(l));
        for bit in 0..512 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Superblock::decode(&b).is_err(), "bit {bit}");
        }
        assert_eq!(
            Superblock::decode(&[0u8; 64]),
            Err(SuperblockDefect::BadMagic)
        );
    }

    #[test]
    fn inconsistent_layouts_are_refused() {
        let good = Layout::for_device(64 << 20, 512, 16, 1).unwrap();
        for bad in [
            Layout {
                slot_count: 64,
                ..good
            },
            Layout {
                slot_size_bytes: 4096,
                ..good
            },
            Layout {
                first_slot_offset_bytes: 4096,
                ..good
            },
            Layout {
                logical_block_bytes: 8192,
                ..good
            },
            Layout {
                blocks_per_segment: 8,
                ..good
            },
        ] {
            let bytes = Superblock::new(&bad).to_bytes();
            assert!(
                matches!(
                    Superblock::decode(&bytes),
                    Err(SuperblockDefect::Inconsistent(_))
                ),
                "{bad:?}"
            );
        }
    }
}
