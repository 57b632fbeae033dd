//! Seek: start replay at an event id without reading what comes before it.
//!
//! Segments are ordered by index and their first event ids increase with it, and so
//! do the blocks of a segment by slot: a binary search over segment first ids (a sealed
//! header's `first_event_id`, or an open segment's block 0 header), then over block
//! headers, finds the block holding the target, and a search inside the block finds the
//! event. `O(log segments + log slots)` header reads.
//!
//! Replay then starts at that block, verifying it against the header of the block
//! before it (whose own checksum must verify) and everything after it as usual. What
//! comes before the start is not verified: that is the point of seeking. Wherever the
//! search meets something it cannot trust (a missing segment, a damaged header, an
//! empty sealed segment), it gives up and replay starts from the beginning, skipping
//! events below the target; seeking is only ever slower, never less strict.

use zerocopy::IntoBytes;

use crate::block_header::BlockHeader;
use crate::device::BlockDevice;
use crate::error::Error;
use crate::limits::{SEGMENT_HEADER_SIZE_BYTES, block_offset_bytes, slots_in};
use crate::replay::{Replay, StartPoint};
use crate::segment_header::{HeaderState, SegmentHeader};
use crate::store::SegmentStore;

/// What a probe of a block slot found.
enum Probe {
    /// A block header that verifies, with its first event id.
    First(u64),
    /// An empty slot: it sorts after every block.
    Blank,
    /// Something that cannot be trusted.
    Untrusted,
}

impl<S: SegmentStore> Replay<S> {
    /// Positions replay so that the first event it yields is the first one whose id is
    /// at least `event_id`. Call before the first [`Replay::step`].
    pub fn seek(&mut self, event_id: u64) -> Result<(), Error<S::Error>> {
        if !self.is_at_start() {
            return Err(Error::LogicBug("seek after replay started"));
        }
        self.set_skip_below(event_id);
        self.start = self.find_start(event_id)?;
        Ok(())
    }

    /// The block where replay should start, or `None` to start from the beginning.
    fn find_start(&mut self, event_id: u64) -> Result<Option<StartPoint>, Error<S::Error>> {
        let store = self.store_mut();
        let Some((first, last)) = store.segment_range()? else {
            return Ok(None);
        };
        // The last segment whose first event id is <= event_id; `lo` always qualifies
        // or is the first segment.
        let (mut lo, mut hi) = (first, last);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            match segment_first_id(store, mid)? {
                Some(id) if id <= event_id => lo = mid,
                Some(_) => hi = mid - 1,
                None => return Ok(None),
            }
        }
        let segment = lo;
        let Some(mut device) = store.open_segment(segment)? else {
            return Ok(None);
        };
        let Some(state) = read_header(&mut device, segment)? else {
            return Ok(None);
        };
        let slots = slots_in(device.len_bytes());
        let end = match state {
            HeaderState::Sealed(t) => t.block_count.min(slots),
            HeaderState::Open => slots,
        };
        if end == 0 {
            return Ok(None);
        }
        // The last slot whose first event id is <= event_id (slot 0 if none is).
        let (mut lo, mut hi) = (0u32, end - 1);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            match probe(&mut device, mid)? {
                Probe::First(id) if id <= event_id => lo = mid,
                Probe::First(_) | Probe::Blank => hi = mid - 1,
                Probe::Untrusted => return Ok(None),
            }
        }
        let slot = lo;
        if slot == 0 {
            return Ok(Some(StartPoint {
                segment,
                slot,
                chain: Some(0),
                last_event_id: 0,
            }));
        }
        // Seed the chain and the id rule with the previous block's verified header.
        let mut prev = BlockHeader::BLANK;
        device.read_exact_at(block_offset_bytes(slot - 1), prev.as_mut_bytes())?;
        if prev.check(slot - 1).is_err() {
            return Ok(None);
        }
        Ok(Some(StartPoint {
            segment,
            slot,
            chain: Some(prev.chained_checksum()),
            last_event_id: prev.last_event_id(),
        }))
    }
}

/// The first event id of segment `index`, or `None` when it cannot be trusted.
fn segment_first_id<S: SegmentStore>(store: &mut S, index: u32) -> Result<Option<u64>, S::Error> {
    let Some(mut device) = store.open_segment(index)? else {
        return Ok(None);
    };
    match read_header(&mut device, index)? {
        Some(HeaderState::Sealed(t)) if t.event_count > 0 => Ok(Some(t.first_event_id)),
        Some(HeaderState::Open) => match probe(&mut device, 0)? {
            Probe::First(id) => Ok(Some(id)),
            Probe::Blank | Probe::Untrusted => Ok(None),
        },
        _ => Ok(None),
    }
}

/// The checked header state of segment `index`, or `None` when it is damaged.
fn read_header<D: BlockDevice>(
    device: &mut D,
    index: u32,
) -> Result<Option<HeaderState>, D::Error> {
    if device.len_bytes() < SEGMENT_HEADER_SIZE_BYTES as u64 {
        return Ok(None);
    }
    let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
    device.read_exact_at(0, &mut raw)?;
    Ok(SegmentHeader::read_from(&raw).check(index).ok())
}

/// Reads and checks the block header in `slot`.
fn probe<D: BlockDevice>(device: &mut D, slot: u32) -> Result<Probe, D::Error> {
    let offset = block_offset_bytes(slot);
    let mut header = BlockHeader::BLANK;
    if offset.saturating_add(header.as_bytes().len() as u64) > device.len_bytes() {
        return Ok(Probe::Untrusted);
    }
    device.read_exact_at(offset, header.as_mut_bytes())?;
    if header.is_blank() {
        return Ok(Probe::Blank);
    }
    Ok(match header.check(slot) {
        Ok(()) => Probe::First(header.first_event_id()),
        Err(_) => Probe::Untrusted,
    })
}
