//! Retention: which old segments a writer deletes, kept to what it deletes by a
//! ledger of the segments present.

use super::open::is_sealed;
use super::*;

/// What retention needs to know of the segments present, kept up to date by the writer
/// so that a rotation costs what it deletes, not what the log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ledger {
    /// Every index below this one is gone.
    pub(super) oldest: u32,
    /// Segments present, at most: the indices from `oldest` to the newest, less those
    /// found missing. A missing index counts until retention comes to it.
    pub(super) count: u64,
    /// Bytes of the segments present (their full size), when retention limits bytes.
    pub(super) bytes: u64,
}

impl<S: SegmentStore, C: Clock> WalWriter<S, C> {
    /// The ledger retention keeps, for the segments in `range`; `None` without
    /// retention. Only a limit on bytes needs the size of every segment, read once here.
    pub(super) fn build_ledger(
        &mut self,
        range: Option<(u32, u32)>,
    ) -> Result<Option<Ledger>, Error<S::Error>> {
        let Retention {
            segments_max,
            bytes_max,
        } = self.config.retention;
        if segments_max.is_none() && bytes_max.is_none() {
            return Ok(None);
        }
        let Some((first, last)) = range else {
            return Ok(Some(Ledger {
                oldest: 0,
                count: 0,
                bytes: 0,
            }));
        };
        let mut bytes = 0u64;
        if bytes_max.is_some() {
            // Bounded by the segments present.
            for index in first..=last {
                if let Some(device) = self.store.open_segment(index)? {
                    bytes = bytes.saturating_add(device.len_bytes());
                }
            }
        }
        Ok(Some(Ledger {
            oldest: first,
            count: u64::from(last - first) + 1,
            bytes,
        }))
    }

    /// Deletes the oldest sealed segments while the log keeps more than the retention
    /// allows, counting a segment of `room_bytes` about to be created when given (so
    /// that a store of fixed slots frees the slot the new segment needs first). The
    /// newest segment and any unsealed one are never deleted, and neither is anything
    /// after them. Costs one segment open per segment deleted: the ledger knows the
    /// rest.
    pub(super) fn apply_retention(
        &mut self,
        room_bytes: Option<u64>,
    ) -> Result<(), Error<S::Error>> {
        let Some(mut ledger) = self.ledger.take() else {
            return Ok(());
        };
        let result = self.retire_oldest(&mut ledger, room_bytes);
        self.ledger = Some(ledger);
        result
    }

    pub(super) fn retire_oldest(
        &mut self,
        ledger: &mut Ledger,
        room_bytes: Option<u64>,
    ) -> Result<(), Error<S::Error>> {
        let Retention {
            segments_max,
            bytes_max,
        } = self.config.retention;
        let (room_count, room) = room_bytes.map_or((0, 0), |b| (1, b));
        let too_many = |l: &Ledger| {
            segments_max.is_some_and(|m| l.count.saturating_add(room_count) > u64::from(m))
                || bytes_max.is_some_and(|m| l.bytes.saturating_add(room) > m)
        };
        let Some(newest) = self.next_index.checked_sub(1) else {
            return Ok(());
        };
        // Each pass moves `oldest` up by one, towards `newest`: bounded by the segments.
        while too_many(ledger) && ledger.oldest < newest {
            let index = ledger.oldest;
            let Some(mut device) = self.store.open_segment(index)? else {
                // An index inside the range with no segment: it was counted, not there.
                ledger.count = ledger.count.saturating_sub(1);
                ledger.oldest += 1;
                continue;
            };
            let active = self.active.as_ref().is_some_and(|a| a.index() == index);
            if active || !is_sealed(&mut device, index)? {
                // Never delete what is being written or was never sealed; stop here so
                // that the log stays contiguous.
                break;
            }
            let len = device.len_bytes();
            drop(device);
            if self.checkpoint_segment == Some(index) && !self.move_checkpoint_off(index)? {
                break;
            }
            self.store.remove_segment(index)?;
            ledger.count = ledger.count.saturating_sub(1);
            ledger.bytes = ledger.bytes.saturating_sub(len);
            ledger.oldest += 1;
        }
        Ok(())
    }

    /// Before retention removes segment `index`, which the sealed checkpoint names:
    /// points the checkpoint at the start of the active segment, when that is empty
    /// (what a rotation leaves) and later, so that the durable watermark's record never
    /// names a segment that is gone. Returns whether it could; if not, the segment
    /// stays.
    pub(super) fn move_checkpoint_off(&mut self, index: u32) -> Result<bool, Error<S::Error>> {
        let Some((active, next_slot)) = self.active.as_ref().map(|a| (a.index(), a.next_slot))
        else {
            return Ok(false);
        };
        if next_slot != 0 || active <= index || self.durable_event_id != self.last_event_id {
            return Ok(false);
        }
        self.write_checkpoint(CheckpointKind::Sealed, active, 0, 0)?;
        Ok(true)
    }
}
