//! [`Replica`]: a WAL directory extended, message by message, from a stream, with
//! every message verified before a byte of it is written.
//!
//! A replica starts at its own directory's verified end (strict replay) and accepts
//! only the message that continues it: the next segment's start, the next block of the
//! open segment (block checksums, header, chain, slot, ids continuing), or that
//! segment's seal (its totals equal to the blocks). Each is written where the primary
//! wrote it, so a sealed segment ends byte-identical to the primary's. A message that
//! does not continue the log is refused and nothing changes.
//!
//! A replica does not yet write checkpoint records of its own: it reads as a log
//! without a durable watermark (as the C++ recorder's do) until a writer opens it,
//! which records one.

use std::path::{Path, PathBuf};

use fswal_backends::dir::{DirSegment, DirStore};
use fswal_backends::file::{FileDevice, FileError};
use fswal_core::limits::{
    BLOCK_SIZE_BYTES, SEGMENT_HEADER_SIZE_BYTES, block_offset_bytes, segment_size_bytes, slots_in,
};
use fswal_core::segment_header::{HeaderState, SealedTotals};
use fswal_core::{Block, BlockDevice, Mode, Replay, SegmentHeader, SegmentStore};
use zerocopy::{FromBytes, IntoBytes};

use crate::error::{ReplicateError, log_error, refuse_corrupt};
use crate::message::{EPOCH_FIRST, Kind, Message, Position};
use crate::nats::Stored;

/// Copies of overwritten slots a replica keeps per slot at most (`.1`, `.2`, ...).
const PRESERVED_COPIES_MAX: u32 = 1000;

/// The open segment a replica extends.
struct OpenSegment {
    index: u32,
    header: SegmentHeader,
    device: DirSegment<FileDevice>,
    slots: u32,
    next_slot: u32,
    chain: u64,
    event_count: u32,
    first_event_id: u64,
    last_event_id: u64,
}

/// Where a replica's log ends.
enum Cursor {
    /// No segment yet.
    Empty,
    /// The last segment is open: the next block or its seal continues it.
    Open(Box<OpenSegment>),
    /// The last segment is sealed: the next segment's start continues it.
    Sealed { index: u32 },
}

/// What applying a message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The message was written (or was already there, identical).
    Written,
    /// The message is at or before the replica's end and matches what it holds: nothing
    /// to do.
    AlreadyHeld,
    /// A fence: the stream moved to a new writer epoch. Nothing is written.
    Fence {
        /// The new epoch.
        epoch: u64,
    },
}

/// A directory being built as a replica of a stream.
pub struct Replica {
    dir: PathBuf,
    store: DirStore,
    stream: String,
    cursor: Cursor,
    last_event_id: u64,
    durable_event_id: u64,
    unsynced: bool,
    epoch: u64,
}

impl Replica {
    /// Opens (creating it if needed) the directory `dir` as a replica of `stream`,
    /// taking the writer lock, and verifies it: a log that does not verify strictly up
    /// to its end (damage before a torn tail) is refused. A torn tail is no obstacle:
    /// the next message is written over it, after the bytes there are kept in a side
    /// file (`FS.<index>.wal.torn-<offset>`, listed by `fswal preserved`).
    pub fn open(dir: &Path, stream: &str) -> Result<Self, ReplicateError> {
        let mut store = DirStore::open_for_append(dir)?.write_thread(false);
        let summary = Replay::new(&mut store, Mode::Strict)
            .run(|_| {})
            .map_err(|e| log_error(dir, format!("replay failed: {e}")))?;
        if let Some(e) = refuse_corrupt(dir, &summary, "a replica must verify strictly") {
            return Err(e);
        }
        let last_event_id = summary.last_event_id.unwrap_or(0);
        let cursor = match summary.tail {
            None => Cursor::Empty,
            Some(tail) if tail.sealed => Cursor::Sealed {
                index: tail.segment,
            },
            Some(tail) => {
                let device = store
                    .open_segment(tail.segment)?
                    .ok_or(ReplicateError::LogicBug(
                        "the replayed tail segment is gone",
                    ))?;
                Cursor::Open(Box::new(OpenSegment {
                    index: tail.segment,
                    header: tail.header,
                    device,
                    slots: tail.slots,
                    next_slot: tail.next_slot,
                    chain: tail.chain,
                    event_count: tail.event_count,
                    first_event_id: tail.first_event_id,
                    last_event_id: tail.last_event_id,
                }))
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            store,
            stream: stream.to_owned(),
            cursor,
            last_event_id,
            durable_event_id: last_event_id,
            unsynced: false,
            epoch: EPOCH_FIRST,
        })
    }

    /// The position of the last message the replica holds, `None` when it holds none.
    #[must_use]
    pub fn end(&self) -> Option<Position> {
        match &self.cursor {
            Cursor::Empty => None,
            Cursor::Sealed { index } => Some(Position::seal(*index)),
            Cursor::Open(open) if open.next_slot == 0 => Some(Position::start(open.index)),
            Cursor::Open(open) => Some(Position::block(open.index, open.next_slot - 1)),
        }
    }

    /// The id of the last event written (0: none).
    #[must_use]
    pub fn last_event_id(&self) -> u64 {
        self.last_event_id
    }

    /// The id of the last event synced: it survives a crash of the replica.
    #[must_use]
    pub fn durable_event_id(&self) -> u64 {
        self.durable_event_id
    }

    /// The highest writer epoch seen in the messages applied (1 before any fence).
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Verifies `stored` against the replica's end and writes it. A message that does
    /// not continue the log is refused with [`ReplicateError::Verify`] (or
    /// [`ReplicateError::Diverged`], for one at a place the replica already holds
    /// differently), and nothing is written.
    pub fn apply(&mut self, stored: &Stored) -> Result<Applied, ReplicateError> {
        let m = &stored.message;
        if m.kind == Kind::Fence {
            self.epoch = self.epoch.max(m.epoch);
            return Ok(Applied::Fence { epoch: m.epoch });
        }
        if m.epoch > self.epoch {
            self.epoch = m.epoch;
        }
        if self.end().is_some_and(|end| m.position <= end) {
            return self.compare_held(stored);
        }
        match m.kind {
            Kind::Start => self.apply_start(stored),
            Kind::Block => self.apply_block(stored),
            Kind::Seal => self.apply_seal(stored),
            Kind::Fence => Err(ReplicateError::LogicBug("a fence past the fence check")),
        }
    }

    fn verify_error(&self, stored: &Stored, detail: impl Into<String>) -> ReplicateError {
        ReplicateError::Verify {
            stream: self.stream.clone(),
            sequence: stored.sequence,
            detail: format!("{}: {}", stored.message.position, detail.into()),
        }
    }

    /// A message at a place the replica already holds must hold the same bytes.
    fn compare_held(&mut self, stored: &Stored) -> Result<Applied, ReplicateError> {
        check_held(
            &mut self.store,
            &self.stream,
            &self.dir,
            stored,
            "nothing is there, though the log goes on after it",
        )?;
        Ok(Applied::AlreadyHeld)
    }

    fn apply_start(&mut self, stored: &Stored) -> Result<Applied, ReplicateError> {
        let m = &stored.message;
        let index = m.position.segment;
        let follows = match &self.cursor {
            Cursor::Empty => true,
            Cursor::Sealed { index: last } => last.checked_add(1) == Some(index),
            // A full segment left open (the C++ recorder seals late) may be followed.
            Cursor::Open(open) => {
                open.next_slot == open.slots && open.index.checked_add(1) == Some(index)
            }
        };
        if !follows {
            return Err(self.verify_error(
                stored,
                format!(
                    "does not follow the replica's end ({})",
                    describe_end(self.end())
                ),
            ));
        }
        let header = header_of(&m.payload).ok_or(ReplicateError::LogicBug("header length"))?;
        match header.check(index) {
            Ok(HeaderState::Open) => {}
            Ok(HeaderState::Sealed(_)) => {
                return Err(self.verify_error(stored, "the start carries a sealed header"));
            }
            Err(reason) => return Err(self.verify_error(stored, format!("its header: {reason}"))),
        }
        let size_bytes = segment_size_bytes(m.slots);
        let device = self.store.create_segment(index, size_bytes, &m.payload)?;
        self.cursor = Cursor::Open(Box::new(OpenSegment {
            index,
            header,
            device,
            slots: m.slots,
            next_slot: 0,
            chain: 0,
            event_count: 0,
            first_event_id: 0,
            last_event_id: 0,
        }));
        Ok(Applied::Written)
    }

    fn apply_block(&mut self, stored: &Stored) -> Result<Applied, ReplicateError> {
        let m = &stored.message;
        let Cursor::Open(open) = &self.cursor else {
            return Err(self.verify_error(
                stored,
                format!("no open segment to extend ({})", describe_end(self.end())),
            ));
        };
        let slot = m.position.slot().unwrap_or(u32::MAX);
        if open.index != m.position.segment || open.next_slot != slot || slot >= open.slots {
            return Err(self.verify_error(
                stored,
                format!(
                    "does not follow the replica's end ({})",
                    describe_end(self.end())
                ),
            ));
        }
        let block = Block::read_from_bytes(&m.payload)
            .map_err(|_| ReplicateError::LogicBug("block length"))?;
        if let Err(reason) = block.verify(slot, open.chain, self.last_event_id) {
            return Err(self.verify_error(stored, reason.to_string()));
        }
        let last = block.header.last_event_id();
        if m.last_event_id != last {
            return Err(self.verify_error(
                stored,
                format!(
                    "its header says last event {} but the block ends with {last}",
                    m.last_event_id
                ),
            ));
        }
        let offset = block_offset_bytes(slot);
        let Cursor::Open(open) = &mut self.cursor else {
            return Err(ReplicateError::LogicBug("the cursor changed"));
        };
        preserve_and_write(
            &self.store,
            &mut open.device,
            open.index,
            offset,
            &m.payload,
        )?;
        if open.first_event_id == 0 {
            open.first_event_id = block.header.first_event_id();
        }
        open.last_event_id = last;
        open.event_count = open
            .event_count
            .saturating_add(u32::from(block.header.event_count()));
        open.chain = block.header.chained_checksum();
        open.next_slot += 1;
        self.last_event_id = last;
        self.unsynced = true;
        Ok(Applied::Written)
    }

    fn apply_seal(&mut self, stored: &Stored) -> Result<Applied, ReplicateError> {
        let m = &stored.message;
        let Cursor::Open(open) = &self.cursor else {
            return Err(self.verify_error(
                stored,
                format!("no open segment to seal ({})", describe_end(self.end())),
            ));
        };
        if open.index != m.position.segment {
            return Err(self.verify_error(
                stored,
                format!(
                    "does not follow the replica's end ({})",
                    describe_end(self.end())
                ),
            ));
        }
        let sealed = header_of(&m.payload).ok_or(ReplicateError::LogicBug("header length"))?;
        let mut totals = SealedTotals::EMPTY;
        totals.block_count = open.next_slot;
        totals.event_count = open.event_count;
        totals.first_event_id = open.first_event_id;
        totals.last_event_id = open.last_event_id;
        totals.last_chained_checksum = open.chain;
        // The seal must be exactly the header the blocks call for: the replica's own
        // open header sealed with their totals, at the primary's closing time.
        let expected = open
            .header
            .sealed_checked(&totals, sealed.closed_ts_ns())
            .map_err(|reason| self.verify_error(stored, format!("cannot seal: {reason}")))?;
        if expected.as_bytes() != m.payload.as_ref() {
            return Err(self.verify_error(
                stored,
                format!(
                    "the sealed header does not match the {} block(s) and {} event(s) held",
                    totals.block_count, totals.event_count
                ),
            ));
        }
        let Cursor::Open(mut open) = std::mem::replace(&mut self.cursor, Cursor::Empty) else {
            return Err(ReplicateError::LogicBug("the cursor changed"));
        };
        // Blocks first, then the header that vouches for them (as the writer does).
        let sealed_result = open
            .device
            .sync()
            .and_then(|()| open.device.write_all_at(0, &m.payload))
            .and_then(|()| open.device.sync());
        if let Err(e) = sealed_result {
            self.cursor = Cursor::Open(open);
            return Err(e.into());
        }
        self.durable_event_id = self.last_event_id;
        self.unsynced = false;
        self.cursor = Cursor::Sealed { index: open.index };
        Ok(Applied::Written)
    }

    /// Makes everything written durable and records the durable watermark (the sync
    /// mark). Returns the last durable event id.
    pub fn sync(&mut self) -> Result<u64, ReplicateError> {
        if !self.unsynced {
            return Ok(self.durable_event_id);
        }
        if let Cursor::Open(open) = &mut self.cursor {
            open.device.sync()?;
        }
        self.unsynced = false;
        self.durable_event_id = self.last_event_id;
        Ok(self.durable_event_id)
    }
}

fn describe_end(end: Option<Position>) -> String {
    end.map_or_else(
        || "it holds nothing".to_owned(),
        |p| format!("it ends with {p}"),
    )
}

fn header_of(bytes: &[u8]) -> Option<SegmentHeader> {
    let b: &[u8; SEGMENT_HEADER_SIZE_BYTES] = bytes.try_into().ok()?;
    Some(SegmentHeader::read_from(b))
}

/// Checks that the log in `store` (the directory `dir`) holds the stream's message
/// `stored` byte for byte, in message form (see [`read_message_bytes`]): otherwise
/// the two histories differ there, [`ReplicateError::Diverged`], with `missing` as the
/// detail when the directory holds nothing at that place.
pub(crate) fn check_held<S>(
    store: &mut S,
    stream: &str,
    dir: &Path,
    stored: &Stored,
    missing: &str,
) -> Result<(), ReplicateError>
where
    S: SegmentStore<Error = FileError>,
{
    let position = stored.message.position;
    let detail = match read_message_bytes(store, position)? {
        Some(held) if held == stored.message.payload.as_ref() => return Ok(()),
        // A start held sealed was rebuilt as its open header: only the fields an open
        // header has are compared.
        Some(_) => "other bytes are there".to_owned(),
        None => missing.to_owned(),
    };
    Err(ReplicateError::Diverged {
        stream: stream.to_owned(),
        position,
        sequence: stored.sequence,
        detail: format!("{}: {detail}", dir.display()),
    })
}

/// The bytes `store` holds at `position`, in the form a message carries them: the open
/// header of a segment's start (rebuilt from a sealed header, whose other fields a
/// seal rewrote), a block, or a sealed header. `None` when it holds nothing there.
pub(crate) fn read_message_bytes<S>(
    store: &mut S,
    position: Position,
) -> Result<Option<Vec<u8>>, ReplicateError>
where
    S: SegmentStore<Error = FileError>,
{
    let Some(mut device) = store.open_segment(position.segment)? else {
        return Ok(None);
    };
    let mut head = [0u8; SEGMENT_HEADER_SIZE_BYTES];
    device.read_exact_at(0, &mut head)?;
    let header = SegmentHeader::read_from(&head);
    let state = header.check(position.segment).ok();
    if let Some(slot) = position.slot() {
        if slot >= slots_in(device.len_bytes()) {
            return Ok(None);
        }
        let mut block = vec![0u8; BLOCK_SIZE_BYTES];
        device.read_exact_at(block_offset_bytes(slot), &mut block)?;
        return Ok((!block.iter().all(|b| *b == 0)).then_some(block));
    }
    Ok(match (position.code, state) {
        (crate::message::CODE_START, Some(HeaderState::Open)) => Some(head.to_vec()),
        (crate::message::CODE_START, Some(HeaderState::Sealed(_))) => Some(
            SegmentHeader::new_open(position.segment, header.created_ts_ns())
                .as_bytes()
                .to_vec(),
        ),
        (crate::message::CODE_SEAL, Some(HeaderState::Sealed(_))) => Some(head.to_vec()),
        _ => None,
    })
}

/// Writes `bytes` at `offset` of segment `index`, first keeping whatever non-blank,
/// different bytes were there in a side file: a replica never destroys bytes it did
/// not write (a torn write of its own is kept too; it costs a small file).
fn preserve_and_write(
    store: &DirStore,
    device: &mut DirSegment<FileDevice>,
    index: u32,
    offset: u64,
    bytes: &[u8],
) -> Result<(), ReplicateError> {
    let mut old = vec![0u8; bytes.len()];
    device.read_exact_at(offset, &mut old)?;
    if old == bytes {
        return Ok(());
    }
    if !old.iter().all(|b| *b == 0) {
        preserve(store, index, offset, &old)?;
    }
    device.write_all_at(offset, bytes)?;
    Ok(())
}

fn preserve(store: &DirStore, index: u32, offset: u64, old: &[u8]) -> Result<(), ReplicateError> {
    let segment_path = store.segment_path(index);
    let base = format!("{}.torn-{offset:012}", segment_path.display());
    for copy in 0..PRESERVED_COPIES_MAX {
        let path = if copy == 0 {
            PathBuf::from(&base)
        } else {
            PathBuf::from(format!("{base}.{copy}"))
        };
        if path.exists() {
            continue;
        }
        std::fs::write(&path, old)
            .and_then(|()| std::fs::File::open(&path)?.sync_all())
            .and_then(|()| std::fs::File::open(store.path())?.sync_all())
            .map_err(|e| FileError::new("preserve", path.as_path(), Some(offset), e))?;
        return Ok(());
    }
    Err(ReplicateError::Log {
        dir: store.path().display().to_string(),
        detail: format!("{PRESERVED_COPIES_MAX} copies of {base} exist already"),
    })
}

/// Rebuilds a [`Stored`] for tests and for callers applying messages they did not
/// read from a stream (sequence 0).
#[must_use]
pub fn unsequenced(message: Message) -> Stored {
    Stored {
        sequence: 0,
        message,
        stored_ts_ns: 0,
    }
}
