//! The four XXH64 checksums of the v1 format, each computed by exactly one function.
//!
//! | checksum | input | seed |
//! |---|---|---|
//! | segment header | header bytes `0..48`, then `56..64` | 0, then the first hash |
//! | block header | header bytes `0..32`, then `40..64` | 0, then the first hash |
//! | block | the used event slots (`event_count * 64` bytes) | 0 |
//! | chained | the used event slots | the previous block's chained checksum (0 for block 0) |
//!
//! Both header checksums skip their own 8-byte field by hashing the bytes before it and
//! then the bytes after it, seeded with the first hash. The chain restarts in every
//! segment, so block 0's block checksum and chained checksum are equal.

use xxhash_rust::xxh64::xxh64;
use zerocopy::IntoBytes;

use crate::block_header::{BLOCK_HEADER_CHECKSUM_OFFSET, BlockHeader};
use crate::event::RequestEvent;
use crate::segment_header::{SEGMENT_HEADER_CHECKSUM_OFFSET, SegmentHeader};

/// Hashes `bytes` without the 8 bytes at `skip`, as both header checksums do.
fn hash_skipping_checksum_field(bytes: &[u8], skip: usize) -> u64 {
    let (before, rest) = bytes.split_at(skip);
    let after = rest.get(8..).unwrap_or(&[]);
    xxh64(after, xxh64(before, 0))
}

/// The segment header checksum: XXH64 of bytes `0..48` (seed 0), then of bytes `56..64`
/// seeded with that.
#[must_use]
pub fn segment_header_checksum(header: &SegmentHeader) -> u64 {
    hash_skipping_checksum_field(header.as_bytes(), SEGMENT_HEADER_CHECKSUM_OFFSET)
}

/// The block header checksum: XXH64 of bytes `0..32` (seed 0), then of bytes `40..64`
/// seeded with that.
#[must_use]
pub fn block_header_checksum(header: &BlockHeader) -> u64 {
    hash_skipping_checksum_field(header.as_bytes(), BLOCK_HEADER_CHECKSUM_OFFSET)
}

/// The block checksum: XXH64 of the used event slots, seed 0.
#[must_use]
pub fn block_checksum(events: &[RequestEvent]) -> u64 {
    xxh64(events.as_bytes(), 0)
}

/// The chained checksum: XXH64 of the used event slots, seeded with the previous
/// block's chained checksum (0 for block 0 of a segment).
#[must_use]
pub fn chained_checksum(events: &[RequestEvent], prev_chained: u64) -> u64 {
    xxh64(events.as_bytes(), prev_chained)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_header::BlockFields;
    use crate::reference::reference_event;

    fn reference_events<const N: usize>(first: u64) -> [RequestEvent; N] {
        let mut out = [RequestEvent::ZERO; N];
        for (i, e) in (first..).zip(out.iter_mut()) {
            *e = reference_event(i);
        }
        out
    }

    // Known answers from FORMAT-v1.md.
    #[test]
    fn block_0_known_answer() {
        let events = reference_events::<256>(1);
        assert_eq!(block_checksum(&events), 0x4eb8_b670_751f_0aa9);
        assert_eq!(chained_checksum(&events, 0), 0x4eb8_b670_751f_0aa9);
    }

    #[test]
    fn block_1_known_answer() {
        let events = reference_events::<256>(257);
        assert_eq!(block_checksum(&events), 0x4916_5dde_90b2_24e4);
        assert_eq!(
            chained_checksum(&events, 0x4eb8_b670_751f_0aa9),
            0x7419_c55e_3bbd_e796
        );
    }

    #[test]
    fn block_header_known_answers() {
        let mut fields = BlockFields {
            first_event_id: 1,
            last_event_id: 256,
            block_checksum: 0x4eb8_b670_751f_0aa9,
            chained_checksum: 0x4eb8_b670_751f_0aa9,
            block_index: 0,
            event_count: 256,
        };
        assert_eq!(
            block_header_checksum(&BlockHeader::new(&fields)),
            0x1a7a_8390_456f_7bc3
        );
        fields = BlockFields {
            first_event_id: 257,
            last_event_id: 512,
            block_checksum: 0x4916_5dde_90b2_24e4,
            chained_checksum: 0x7419_c55e_3bbd_e796,
            block_index: 1,
            event_count: 256,
        };
        assert_eq!(
            block_header_checksum(&BlockHeader::new(&fields)),
            0xde5c_bb26_86d5_c672
        );
    }

    #[test]
    fn segment_header_known_answer() {
        let hex = "5346014000000000100000000010000001000000000000000010000000000000\
                   ea487b33fb14ea1813138333fb14ea18c08cfe29de72bd132aa5b97eadd2a885";
        let mut bytes = [0u8; 64];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let header = SegmentHeader::read_from(&bytes);
        assert_eq!(header.checksum(), 0x13bd_72de_29fe_8cc0);
        assert_eq!(segment_header_checksum(&header), 0x13bd_72de_29fe_8cc0);
    }

    #[test]
    fn the_checksum_field_is_not_hashed() {
        let h = BlockHeader::new(&BlockFields {
            first_event_id: 1,
            last_event_id: 2,
            block_checksum: 3,
            chained_checksum: 4,
            block_index: 5,
            event_count: 6,
        });
        let mut changed = h;
        changed.as_mut_bytes()[32..40].copy_from_slice(&0xdead_beef_u64.to_le_bytes());
        assert_eq!(block_header_checksum(&changed), block_header_checksum(&h));
        let mut seg = [0u8; 64];
        seg[48..56].copy_from_slice(&7u64.to_le_bytes());
        let zero = SegmentHeader::read_from(&[0u8; 64]);
        assert_eq!(
            segment_header_checksum(&SegmentHeader::read_from(&seg)),
            segment_header_checksum(&zero)
        );
    }
}
