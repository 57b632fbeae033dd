//! The messages of a replicated log: what each carries, its headers, its id, and its
//! place in the log.
//!
//! A log is shipped as the bytes its checksums cover, never re-encoded: a segment's
//! start (its open header and its size), each block verbatim as it was written (full,
//! or partial when a sync sealed it), and each sealed header. Fences (written by
//! `promote`) carry no log bytes; they move the stream to a new writer epoch.
//!
//! Every message has a [`Position`] in the log, and the stream holds them in position
//! order: a follower finds where to resume by position, and a shipper never publishes
//! a position twice. A fence takes the position of the message before it.

use std::fmt;

use async_nats::HeaderMap;
use bytes::Bytes;
use fswal_core::limits::{
    BLOCK_SIZE_BYTES, SEGMENT_BLOCKS_MAX, SEGMENT_HEADER_SIZE_BYTES, SEGMENT_INDEX_MAX,
};

/// The header saying what a message is: `start`, `block`, `seal` or `fence`.
pub const HEADER_KIND: &str = "Fswal-Kind";
/// The header holding the message's segment index.
pub const HEADER_SEGMENT: &str = "Fswal-Segment";
/// The header holding the message's place in its segment ([`Position::code`]).
pub const HEADER_CODE: &str = "Fswal-Code";
/// The header holding the writer epoch that published the message.
pub const HEADER_EPOCH: &str = "Fswal-Epoch";
/// On a start: the segment's block slots.
pub const HEADER_SLOTS: &str = "Fswal-Slots";
/// The id of the last event the log holds once this message is applied (0: none).
pub const HEADER_LAST_EVENT: &str = "Fswal-Last-Event";
/// The format version of the payloads: the on-disk format's, `1`.
pub const HEADER_FORMAT: &str = "Fswal-Format";
/// The value of [`HEADER_FORMAT`] this version writes and reads.
pub const FORMAT_VERSION: &str = "1";

/// The code of a segment's start in [`Position::code`].
pub const CODE_START: u32 = 0;
/// The code of a segment's sealed header in [`Position::code`]: after every block.
pub const CODE_SEAL: u32 = u32::MAX;

// Block `k` has code `k + 1`, which must stay below the seal's code.
const _: () = assert!(SEGMENT_BLOCKS_MAX < CODE_SEAL - 1);

/// The first epoch: a stream no `promote` ever fenced is written at epoch 1.
pub const EPOCH_FIRST: u64 = 1;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A segment starts: the payload is its open header (64 bytes).
    Start,
    /// A block, verbatim (16448 bytes).
    Block,
    /// A segment is sealed: the payload is its sealed header (64 bytes).
    Seal,
    /// A new writer epoch begins (no payload): writers of older epochs are fenced.
    Fence,
}

impl Kind {
    /// Its name in [`HEADER_KIND`].
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Block => "block",
            Kind::Seal => "seal",
            Kind::Fence => "fence",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "start" => Some(Kind::Start),
            "block" => Some(Kind::Block),
            "seal" => Some(Kind::Seal),
            "fence" => Some(Kind::Fence),
            _ => None,
        }
    }
}

/// A place in the log: a segment and, inside it, its start ([`CODE_START`]), block
/// `k` (code `k + 1`) or its seal ([`CODE_SEAL`]). Positions order the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The segment index.
    pub segment: u32,
    /// The place inside the segment.
    pub code: u32,
}

impl Position {
    /// Segment `segment`'s start.
    #[must_use]
    pub fn start(segment: u32) -> Self {
        Self {
            segment,
            code: CODE_START,
        }
    }

    /// Block slot `slot` of segment `segment`.
    #[must_use]
    pub fn block(segment: u32, slot: u32) -> Self {
        Self {
            segment,
            code: slot.saturating_add(1),
        }
    }

    /// Segment `segment`'s seal.
    #[must_use]
    pub fn seal(segment: u32) -> Self {
        Self {
            segment,
            code: CODE_SEAL,
        }
    }

    /// The block slot, for a block's position.
    #[must_use]
    pub fn slot(self) -> Option<u32> {
        (self.code != CODE_START && self.code != CODE_SEAL).then(|| self.code - 1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.slot()) {
            (CODE_START, _) => write!(f, "the start of segment {}", self.segment),
            (CODE_SEAL, _) => write!(f, "the seal of segment {}", self.segment),
            (_, Some(slot)) => write!(f, "block {slot} of segment {}", self.segment),
            _ => write!(f, "segment {} code {}", self.segment, self.code),
        }
    }
}

/// One message of a replicated log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// What it is.
    pub kind: Kind,
    /// Its place (a fence: the place of the message before it).
    pub position: Position,
    /// The writer epoch that published it (a fence: the epoch it begins).
    pub epoch: u64,
    /// On a start: the segment's block slots; otherwise 0.
    pub slots: u32,
    /// The last event id the log holds once it is applied (0: none).
    pub last_event_id: u64,
    /// The bytes: an open header, a block, a sealed header, or nothing (a fence).
    pub payload: Bytes,
}

/// Why a stream message is not a message of a replicated log. Its checksums are not
/// checked here: the follower verifies the payload against the log it extends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// A header is missing.
    MissingHeader(&'static str),
    /// A header does not parse, or is out of range.
    BadHeader(&'static str, String),
    /// The payload's length is not the kind's.
    BadLength {
        /// The kind the headers say.
        kind: Kind,
        /// The payload's length.
        len_bytes: usize,
    },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::MissingHeader(name) => write!(f, "header {name} is missing"),
            MessageError::BadHeader(name, value) => {
                write!(f, "header {name} has a value out of range: {value:?}")
            }
            MessageError::BadLength { kind, len_bytes } => write!(
                f,
                "a {} message of {len_bytes} bytes (a {} message holds {})",
                kind.name(),
                kind.name(),
                payload_len_bytes(*kind)
            ),
        }
    }
}

impl std::error::Error for MessageError {}

/// The payload length of a message of `kind`.
#[must_use]
pub fn payload_len_bytes(kind: Kind) -> usize {
    match kind {
        Kind::Start | Kind::Seal => SEGMENT_HEADER_SIZE_BYTES,
        Kind::Block => BLOCK_SIZE_BYTES,
        Kind::Fence => 0,
    }
}

impl Message {
    /// A segment's start: its open header and its block slots.
    #[must_use]
    pub fn start(segment: u32, slots: u32, header: Bytes, last_event_id: u64) -> Self {
        Self {
            kind: Kind::Start,
            position: Position::start(segment),
            epoch: EPOCH_FIRST,
            slots,
            last_event_id,
            payload: header,
        }
    }

    /// Block `slot` of `segment`, verbatim; `last_event_id` is its last event's.
    #[must_use]
    pub fn block(segment: u32, slot: u32, block: Bytes, last_event_id: u64) -> Self {
        Self {
            kind: Kind::Block,
            position: Position::block(segment, slot),
            epoch: EPOCH_FIRST,
            slots: 0,
            last_event_id,
            payload: block,
        }
    }

    /// Segment `segment`'s sealed header.
    #[must_use]
    pub fn seal(segment: u32, header: Bytes, last_event_id: u64) -> Self {
        Self {
            kind: Kind::Seal,
            position: Position::seal(segment),
            epoch: EPOCH_FIRST,
            slots: 0,
            last_event_id,
            payload: header,
        }
    }

    /// A fence beginning `epoch`, after the message at `after`.
    #[must_use]
    pub fn fence(epoch: u64, after: Position, last_event_id: u64) -> Self {
        Self {
            kind: Kind::Fence,
            position: after,
            epoch,
            slots: 0,
            last_event_id,
            payload: Bytes::new(),
        }
    }

    /// The same message, published at `epoch`.
    #[must_use]
    pub fn at_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// The `Nats-Msg-Id` JetStream deduplicates it by: derived from its position (a
    /// fence: from its epoch), so a retry, or a restarted shipper publishing the same
    /// place again, is stored once.
    #[must_use]
    pub fn msg_id(&self) -> String {
        match (self.kind, self.position.slot()) {
            (Kind::Start, _) => format!("fswal/{}/start", self.position.segment),
            (Kind::Seal, _) => format!("fswal/{}/seal", self.position.segment),
            (Kind::Fence, _) => format!("fswal/fence/{}", self.epoch),
            (Kind::Block, slot) => format!(
                "fswal/{}/{}",
                self.position.segment,
                slot.unwrap_or(u32::MAX)
            ),
        }
    }

    /// Its headers (the deduplication id and expected sequence are added when
    /// publishing).
    #[must_use]
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER_FORMAT, FORMAT_VERSION);
        h.insert(HEADER_KIND, self.kind.name());
        h.insert(HEADER_SEGMENT, self.position.segment.to_string().as_str());
        h.insert(HEADER_CODE, self.position.code.to_string().as_str());
        h.insert(HEADER_EPOCH, self.epoch.to_string().as_str());
        h.insert(HEADER_LAST_EVENT, self.last_event_id.to_string().as_str());
        if self.kind == Kind::Start {
            h.insert(HEADER_SLOTS, self.slots.to_string().as_str());
        }
        h
    }

    /// Reads a stream message back. Headers and lengths are checked; the payload's
    /// contents are the follower's to verify.
    pub fn from_parts(headers: &HeaderMap, payload: Bytes) -> Result<Self, MessageError> {
        let format = text(headers, HEADER_FORMAT)?;
        if format != FORMAT_VERSION {
            return Err(MessageError::BadHeader(HEADER_FORMAT, format.to_owned()));
        }
        let kind_name = text(headers, HEADER_KIND)?;
        let kind = Kind::from_name(kind_name)
            .ok_or_else(|| MessageError::BadHeader(HEADER_KIND, kind_name.to_owned()))?;
        let segment = number(headers, HEADER_SEGMENT)?;
        let segment = u32::try_from(segment)
            .ok()
            .filter(|s| *s <= SEGMENT_INDEX_MAX)
            .ok_or_else(|| MessageError::BadHeader(HEADER_SEGMENT, segment.to_string()))?;
        let code = number(headers, HEADER_CODE)?;
        let code = u32::try_from(code)
            .map_err(|_| MessageError::BadHeader(HEADER_CODE, code.to_string()))?;
        let position = Position { segment, code };
        let code_fits = match kind {
            Kind::Start => code == CODE_START,
            Kind::Seal => code == CODE_SEAL,
            Kind::Block => position.slot().is_some_and(|s| s < SEGMENT_BLOCKS_MAX),
            Kind::Fence => true,
        };
        if !code_fits {
            return Err(MessageError::BadHeader(HEADER_CODE, code.to_string()));
        }
        let epoch = number(headers, HEADER_EPOCH)?;
        if epoch < EPOCH_FIRST {
            return Err(MessageError::BadHeader(HEADER_EPOCH, epoch.to_string()));
        }
        let last_event_id = number(headers, HEADER_LAST_EVENT)?;
        let slots = if kind == Kind::Start {
            let slots = number(headers, HEADER_SLOTS)?;
            u32::try_from(slots)
                .ok()
                .filter(|s| fswal_core::limits::is_valid_segment_blocks(*s))
                .ok_or_else(|| MessageError::BadHeader(HEADER_SLOTS, slots.to_string()))?
        } else {
            0
        };
        if payload.len() != payload_len_bytes(kind) {
            return Err(MessageError::BadLength {
                kind,
                len_bytes: payload.len(),
            });
        }
        Ok(Self {
            kind,
            position,
            epoch,
            slots,
            last_event_id,
            payload,
        })
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, MessageError> {
    headers
        .get(name)
        .map(|v| v.as_str())
        .ok_or(MessageError::MissingHeader(name))
}

fn number(headers: &HeaderMap, name: &'static str) -> Result<u64, MessageError> {
    let value = text(headers, name)?;
    // Only plain decimal digits: `u64::from_str` also takes a leading `+`.
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MessageError::BadHeader(name, value.to_owned()));
    }
    value
        .parse()
        .map_err(|_| MessageError::BadHeader(name, value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_bytes() -> Bytes {
        Bytes::from(vec![7u8; BLOCK_SIZE_BYTES])
    }

    #[test]
    fn every_kind_round_trips_through_its_headers() {
        let messages = [
            Message::start(3, 16, Bytes::from(vec![1u8; 64]), 0),
            Message::block(3, 15, block_bytes(), 4096).at_epoch(2),
            Message::seal(3, Bytes::from(vec![2u8; 64]), 4096),
            Message::fence(5, Position::seal(3), 4096),
        ];
        for m in messages {
            let back = Message::from_parts(&m.headers(), m.payload.clone()).expect("reads");
            assert_eq!(back, m);
        }
    }

    #[test]
    fn positions_order_the_log_and_a_block_sits_between_start_and_seal() {
        let s = Position::start(4);
        let b0 = Position::block(4, 0);
        let last = Position::block(4, SEGMENT_BLOCKS_MAX - 1);
        let seal = Position::seal(4);
        assert!(Position::seal(3) < s && s < b0 && b0 < last && last < seal);
        assert!(seal < Position::start(5));
        assert_eq!(b0.slot(), Some(0));
        assert_eq!(s.slot(), None);
        assert_eq!(seal.slot(), None);
        assert_eq!(b0.to_string(), "block 0 of segment 4");
    }

    #[test]
    fn ids_are_derived_from_the_place_not_the_epoch() {
        let a = Message::block(1, 2, block_bytes(), 9);
        let b = a.clone().at_epoch(7);
        assert_eq!(a.msg_id(), "fswal/1/2");
        assert_eq!(a.msg_id(), b.msg_id());
        assert_eq!(
            Message::fence(3, Position::start(0), 0).msg_id(),
            "fswal/fence/3"
        );
    }

    #[test]
    fn malformed_headers_and_lengths_are_refused_by_name() {
        let m = Message::block(1, 2, block_bytes(), 9);
        let mut h = m.headers();
        h.insert(HEADER_CODE, "0");
        assert_eq!(
            Message::from_parts(&h, m.payload.clone()),
            Err(MessageError::BadHeader(HEADER_CODE, "0".into()))
        );
        let mut h = m.headers();
        h.insert(HEADER_SEGMENT, "+1");
        assert!(matches!(
            Message::from_parts(&h, m.payload.clone()),
            Err(MessageError::BadHeader(HEADER_SEGMENT, _))
        ));
        let mut h = m.headers();
        h.insert(HEADER_EPOCH, "0");
        assert!(Message::from_parts(&h, m.payload.clone()).is_err());
        let short = m.payload.slice(..100);
        assert_eq!(
            Message::from_parts(&m.headers(), short),
            Err(MessageError::BadLength {
                kind: Kind::Block,
                len_bytes: 100
            })
        );
        let mut h = HeaderMap::new();
        h.insert(HEADER_FORMAT, FORMAT_VERSION);
        assert_eq!(
            Message::from_parts(&h, Bytes::new()),
            Err(MessageError::MissingHeader(HEADER_KIND))
        );
        let mut h = m.headers();
        h.insert(HEADER_FORMAT, "2");
        assert!(Message::from_parts(&h, m.payload).is_err());
        let start = Message::start(0, 8, Bytes::from(vec![0u8; 64]), 0);
        assert!(matches!(
            Message::from_parts(&start.headers(), start.payload),
            Err(MessageError::BadHeader(HEADER_SLOTS, _))
        ));
    }
}
