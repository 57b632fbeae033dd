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
//!
//! [`block_checksums`] computes a block's two event checksums in one pass over the
//! events (XXH64 under two seeds with interleaved accumulators): replay's hot loop.

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
///
/// The known answer of docs/FORMAT.md: block 0 of the reference stream (events
/// 1..=256), whose chained checksum is the same (block 0's chain starts at 0).
///
/// ```
/// use fswal_core::checksum::{block_checksum, chained_checksum};
/// use fswal_core::reference::reference_event;
///
/// let events: Vec<_> = (1..=256).map(reference_event).collect();
/// assert_eq!(block_checksum(&events), 0x4eb8_b670_751f_0aa9);
/// assert_eq!(chained_checksum(&events, 0), 0x4eb8_b670_751f_0aa9);
/// ```
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

/// The block checksum and the chained checksum together, in one pass over the events:
/// equal to `(block_checksum(events), chained_checksum(events, prev_chained))`.
///
/// The bytes are read once instead of twice, which is what counts when they come
/// cold from the page cache (about 1.3x faster there); on bytes already in cache both
/// ways are bound by the multiplier and cost about the same (criterion's
/// `block checksums` group measures both). The writer and replay use it.
#[must_use]
pub fn block_checksums(events: &[RequestEvent], prev_chained: u64) -> (u64, u64) {
    if prev_chained == 0 {
        // Block 0 of a segment: both checksums are the same hash.
        let h = xxh64(events.as_bytes(), 0);
        return (h, h);
    }
    xxh64_pair(events.as_bytes(), 0, prev_chained)
}

const PRIME_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME_4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME_5: u64 = 0x27D4_EB2F_1656_67C5;

#[inline(always)]
fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(PRIME_2))
        .rotate_left(31)
        .wrapping_mul(PRIME_1)
}

#[inline(always)]
fn merge_round(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v))
        .wrapping_mul(PRIME_1)
        .wrapping_add(PRIME_4)
}

/// The little-endian u64 at `at` of an 8-byte-aligned position in `chunk` (a 32-byte
/// stripe, so `at` is 0, 8, 16 or 24 and always in range).
#[inline(always)]
fn lane(chunk: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&chunk[at..at + 8]);
    u64::from_le_bytes(b)
}

/// XXH64's last steps for an accumulated `h` over the `tail` bytes after the stripes.
fn finish(mut h: u64, tail: &[u8]) -> u64 {
    let mut words = tail.chunks_exact(8);
    for w in &mut words {
        h ^= round(0, lane(w, 0));
        h = h
            .rotate_left(27)
            .wrapping_mul(PRIME_1)
            .wrapping_add(PRIME_4);
    }
    let mut rest = words.remainder();
    if rest.len() >= 4 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&rest[..4]);
        h ^= u64::from(u32::from_le_bytes(b)).wrapping_mul(PRIME_1);
        h = h
            .rotate_left(23)
            .wrapping_mul(PRIME_2)
            .wrapping_add(PRIME_3);
        rest = &rest[4..];
    }
    for &byte in rest {
        h ^= u64::from(byte).wrapping_mul(PRIME_5);
        h = h.rotate_left(11).wrapping_mul(PRIME_1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(PRIME_2);
    h ^= h >> 29;
    h = h.wrapping_mul(PRIME_3);
    h ^ (h >> 32)
}

/// XXH64 of `data` under seeds `a` and `b`, in one pass: eight independent
/// accumulators (four per seed) fed from the same loads, so the multiplications of both
/// hashes overlap and the bytes are read once. Exactly `(xxh64(data, a), xxh64(data, b))`.
fn xxh64_pair(data: &[u8], a: u64, b: u64) -> (u64, u64) {
    let len = data.len() as u64;
    let init = |seed: u64| {
        [
            seed.wrapping_add(PRIME_1).wrapping_add(PRIME_2),
            seed.wrapping_add(PRIME_2),
            seed,
            seed.wrapping_sub(PRIME_1),
        ]
    };
    let converge = |v: [u64; 4]| {
        let h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        v.iter().fold(h, |h, &v| merge_round(h, v))
    };
    let mut stripes = data.chunks_exact(32);
    let (ha, hb) = if data.len() >= 32 {
        let (mut va, mut vb) = (init(a), init(b));
        for s in &mut stripes {
            let lanes = [lane(s, 0), lane(s, 8), lane(s, 16), lane(s, 24)];
            for i in 0..4 {
                va[i] = round(va[i], lanes[i]);
                vb[i] = round(vb[i], lanes[i]);
            }
        }
        (converge(va), converge(vb))
    } else {
        (a.wrapping_add(PRIME_5), b.wrapping_add(PRIME_5))
    };
    let tail = stripes.remainder();
    (
        finish(ha.wrapping_add(len), tail),
        finish(hb.wrapping_add(len), tail),
    )
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

    // Known answers from docs/FORMAT.md.
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

    proptest::proptest! {
        /// The one-pass pair is exactly XXH64 under each seed, for any input.
        #[test]
        fn xxh64_pair_is_two_xxh64(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300), a: u64, b: u64) {
            proptest::prop_assert_eq!(xxh64_pair(&data, a, b), (xxh64(&data, a), xxh64(&data, b)));
        }
    }

    #[test]
    fn block_checksums_match_the_known_answers() {
        let b0 = reference_events::<256>(1);
        assert_eq!(
            block_checksums(&b0, 0),
            (0x4eb8_b670_751f_0aa9, 0x4eb8_b670_751f_0aa9)
        );
        let b1 = reference_events::<256>(257);
        assert_eq!(
            block_checksums(&b1, 0x4eb8_b670_751f_0aa9),
            (0x4916_5dde_90b2_24e4, 0x7419_c55e_3bbd_e796)
        );
        for n in [1usize, 3, 16, 255] {
            assert_eq!(
                block_checksums(&b1[..n], 77),
                (block_checksum(&b1[..n]), chained_checksum(&b1[..n], 77))
            );
        }
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
