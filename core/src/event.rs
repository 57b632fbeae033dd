//! `RequestEvent`: one matching-engine request, 64 bytes on disk.
//!
//! ```text
//!  offset  size  field        values
//!  ------  ----  -----------  -------------------------------------------------
//!       0     8  event_id     u64, strictly increasing over the whole log, 0 invalid
//!       8     8  timestamp    u64
//!      16     8  price        i64, scaled ticks
//!      24     8  quantity     i64, scaled ticks
//!      32     4  user_id      u32
//!      36     4  order_id     u32
//!      40     1  type         0 NEW_ORDER  1 MODIFY_ORDER_PRICE
//!                             2 MODIFY_ORDER_QUANTITY  3 CANCEL_ORDER
//!      41     1  order_type   0 LIMIT  1 MARKET
//!      42     1  side         0 BID  1 ASK
//!      43    21  padding      zero
//!  ------  ----
//!            64  (little-endian, 64-byte aligned)
//! ```
//!
//! [`RequestEvent`] is the byte layout, read from disk without copying; [`Event`] is
//! the same request with native integers and enums, for building events and for
//! printing them. The enum bytes of a `RequestEvent` are raw `u8`s because a byte read
//! from disk may hold any value: [`RequestEvent::check`] says whether it is a valid
//! event, and [`RequestEvent::decode`] refuses one that is not.

use core::fmt;
use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::limits::EVENT_SIZE_BYTES;

/// What a request asks the matching engine to do (the `type` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventType {
    /// Place a new order.
    NewOrder = 0,
    /// Change the price of a resting order.
    ModifyOrderPrice = 1,
    /// Change the quantity of a resting order.
    ModifyOrderQuantity = 2,
    /// Cancel a resting order.
    CancelOrder = 3,
}

/// How an order executes (the `order_type` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrderType {
    /// Execute at the given price or better.
    Limit = 0,
    /// Execute at the best available price.
    Market = 1,
}

/// Which side of the book an order is on (the `side` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// A buy order.
    Bid = 0,
    /// A sell order.
    Ask = 1,
}

impl EventType {
    /// The enum for an on-disk byte, or `None` for a value the format does not define.
    #[must_use]
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::NewOrder),
            1 => Some(Self::ModifyOrderPrice),
            2 => Some(Self::ModifyOrderQuantity),
            3 => Some(Self::CancelOrder),
            _ => None,
        }
    }

    /// The name docs/FORMAT.md gives this value (`NEW_ORDER`, ...).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NewOrder => "NEW_ORDER",
            Self::ModifyOrderPrice => "MODIFY_ORDER_PRICE",
            Self::ModifyOrderQuantity => "MODIFY_ORDER_QUANTITY",
            Self::CancelOrder => "CANCEL_ORDER",
        }
    }
}

impl OrderType {
    /// The enum for an on-disk byte, or `None` for a value the format does not define.
    #[must_use]
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Limit),
            1 => Some(Self::Market),
            _ => None,
        }
    }

    /// The name docs/FORMAT.md gives this value (`LIMIT`, `MARKET`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Limit => "LIMIT",
            Self::Market => "MARKET",
        }
    }
}

impl Side {
    /// The enum for an on-disk byte, or `None` for a value the format does not define.
    #[must_use]
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Bid),
            1 => Some(Self::Ask),
            _ => None,
        }
    }

    /// The name docs/FORMAT.md gives this value (`BID`, `ASK`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bid => "BID",
            Self::Ask => "ASK",
        }
    }
}

/// One request event exactly as it is stored: 64 bytes, little-endian.
///
/// Built from an [`Event`], checked, and decoded back:
///
/// ```
/// use fswal_core::{Event, EventType, OrderType, RequestEvent, Side};
///
/// let event = Event {
///     event_id: 42,
///     timestamp: 1_700_000_000_000_000_000,
///     price: 101_250,
///     quantity: 10,
///     user_id: 7,
///     order_id: 9,
///     event_type: EventType::NewOrder,
///     order_type: OrderType::Limit,
///     side: Side::Bid,
/// };
/// let stored = RequestEvent::from(event);
/// assert_eq!(stored.event_id(), 42);
/// assert!(stored.check().is_ok());
/// assert_eq!(stored.decode(), Ok(event));
/// // Id 0 is never valid.
/// assert!(RequestEvent::ZERO.check().is_err());
/// ```
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct RequestEvent {
    event_id: U64,
    timestamp: U64,
    price: I64,
    quantity: I64,
    user_id: U32,
    order_id: U32,
    event_type: u8,
    order_type: u8,
    side: u8,
    padding: [u8; 21],
}

const _: () = assert!(size_of::<RequestEvent>() == EVENT_SIZE_BYTES);
const _: () = assert!(offset_of!(RequestEvent, event_id) == 0);
const _: () = assert!(offset_of!(RequestEvent, timestamp) == 8);
const _: () = assert!(offset_of!(RequestEvent, price) == 16);
const _: () = assert!(offset_of!(RequestEvent, quantity) == 24);
const _: () = assert!(offset_of!(RequestEvent, user_id) == 32);
const _: () = assert!(offset_of!(RequestEvent, order_id) == 36);
const _: () = assert!(offset_of!(RequestEvent, event_type) == 40);
const _: () = assert!(offset_of!(RequestEvent, order_type) == 41);
const _: () = assert!(offset_of!(RequestEvent, side) == 42);
const _: () = assert!(offset_of!(RequestEvent, padding) == 43);

/// One request event with native fields: what a caller builds and what `dump` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// Position of the event in the log; strictly increasing, never 0.
    pub event_id: u64,
    /// Engine timestamp.
    pub timestamp: u64,
    /// Price in scaled ticks.
    pub price: i64,
    /// Quantity in scaled ticks.
    pub quantity: i64,
    /// The user who sent the request.
    pub user_id: u32,
    /// The order the request is about.
    pub order_id: u32,
    /// What the request asks for.
    pub event_type: EventType,
    /// How the order executes.
    pub order_type: OrderType,
    /// Bid or ask.
    pub side: Side,
}

/// Why 64 bytes are not a valid `RequestEvent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventDefect {
    /// `event_id` is 0, which the format reserves for "no event".
    ZeroEventId,
    /// The `type` byte is not one of the four defined values.
    InvalidType(u8),
    /// The `order_type` byte is neither LIMIT nor MARKET.
    InvalidOrderType(u8),
    /// The `side` byte is neither BID nor ASK.
    InvalidSide(u8),
    /// A padding byte is not zero; `offset` is its offset inside the event.
    NonZeroPadding {
        /// Offset of the first non-zero padding byte inside the event.
        offset: u8,
    },
}

impl fmt::Display for EventDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroEventId => f.write_str("event id is 0"),
            Self::InvalidType(b) => write!(f, "event type byte {b} is not defined"),
            Self::InvalidOrderType(b) => write!(f, "order type byte {b} is not defined"),
            Self::InvalidSide(b) => write!(f, "side byte {b} is not defined"),
            Self::NonZeroPadding { offset } => {
                write!(f, "padding byte at event offset {offset} is not zero")
            }
        }
    }
}

impl RequestEvent {
    /// The all-zero event: what an unused slot holds. It is not a valid event.
    pub const ZERO: Self = Self {
        event_id: U64::ZERO,
        timestamp: U64::ZERO,
        price: I64::ZERO,
        quantity: I64::ZERO,
        user_id: U32::ZERO,
        order_id: U32::ZERO,
        event_type: 0,
        order_type: 0,
        side: 0,
        padding: [0; 21],
    };

    /// Position of the event in the log.
    #[must_use]
    pub fn event_id(&self) -> u64 {
        self.event_id.get()
    }

    /// Engine timestamp.
    #[must_use]
    pub fn timestamp(&self) -> u64 {
        self.timestamp.get()
    }

    /// Price in scaled ticks.
    #[must_use]
    pub fn price(&self) -> i64 {
        self.price.get()
    }

    /// Quantity in scaled ticks.
    #[must_use]
    pub fn quantity(&self) -> i64 {
        self.quantity.get()
    }

    /// The user who sent the request.
    #[must_use]
    pub fn user_id(&self) -> u32 {
        self.user_id.get()
    }

    /// The order the request is about.
    #[must_use]
    pub fn order_id(&self) -> u32 {
        self.order_id.get()
    }

    /// The raw `type` byte.
    #[must_use]
    pub fn event_type_byte(&self) -> u8 {
        self.event_type
    }

    /// The raw `order_type` byte.
    #[must_use]
    pub fn order_type_byte(&self) -> u8 {
        self.order_type
    }

    /// The raw `side` byte.
    #[must_use]
    pub fn side_byte(&self) -> u8 {
        self.side
    }

    /// Whether these bytes are a valid event: a non-zero id, defined enum values and
    /// zero padding. This says nothing about its place in the log.
    pub fn check(&self) -> Result<(), EventDefect> {
        if self.is_plausible() {
            return Ok(());
        }
        self.find_defect()
    }

    /// Whether the event is valid, decided with three word-wide tests: exactly when
    /// [`RequestEvent::check`] finds no defect (a property test holds them equal).
    #[inline]
    #[must_use]
    pub fn is_plausible(&self) -> bool {
        /// Bits that may be set in the little-endian word at bytes 40..48: the type
        /// (0..=3) in byte 40, the order type (0..=1) in byte 41, the side (0..=1) in
        /// byte 42. The other five bytes are padding and must be zero.
        const ENUM_WORD_ALLOWED: u64 = 0x0001_0103;
        let bytes = self.as_bytes();
        let word = |at: usize| {
            let mut w = [0u8; 8];
            if let Some(src) = bytes.get(at..at + 8) {
                w.copy_from_slice(src);
            }
            u64::from_le_bytes(w)
        };
        self.event_id.get() != 0
            && word(40) & !ENUM_WORD_ALLOWED == 0
            && word(48) == 0
            && word(56) == 0
    }

    /// The first defect, field by field, in the order of the layout.
    pub(crate) fn find_defect(&self) -> Result<(), EventDefect> {
        if self.event_id.get() == 0 {
            return Err(EventDefect::ZeroEventId);
        }
        if EventType::from_byte(self.event_type).is_none() {
            return Err(EventDefect::InvalidType(self.event_type));
        }
        if OrderType::from_byte(self.order_type).is_none() {
            return Err(EventDefect::InvalidOrderType(self.order_type));
        }
        if Side::from_byte(self.side).is_none() {
            return Err(EventDefect::InvalidSide(self.side));
        }
        if let Some(i) = self.padding.iter().position(|&b| b != 0) {
            // `i < 21`, so the sum is at most 63 and fits in a u8.
            let offset = u8::try_from(offset_of!(RequestEvent, padding) + i).unwrap_or(u8::MAX);
            return Err(EventDefect::NonZeroPadding { offset });
        }
        Ok(())
    }

    /// The event with native fields, or why these bytes are not a valid event.
    pub fn decode(&self) -> Result<Event, EventDefect> {
        self.check()?;
        // `check` accepted every enum byte, so the fallbacks below are unreachable; they
        // only avoid a panic path.
        Ok(Event {
            event_id: self.event_id.get(),
            timestamp: self.timestamp.get(),
            price: self.price.get(),
            quantity: self.quantity.get(),
            user_id: self.user_id.get(),
            order_id: self.order_id.get(),
            event_type: EventType::from_byte(self.event_type)
                .ok_or(EventDefect::InvalidType(self.event_type))?,
            order_type: OrderType::from_byte(self.order_type)
                .ok_or(EventDefect::InvalidOrderType(self.order_type))?,
            side: Side::from_byte(self.side).ok_or(EventDefect::InvalidSide(self.side))?,
        })
    }
}

impl From<&Event> for RequestEvent {
    #[inline]
    fn from(e: &Event) -> Self {
        Self {
            event_id: U64::new(e.event_id),
            timestamp: U64::new(e.timestamp),
            price: I64::new(e.price),
            quantity: I64::new(e.quantity),
            user_id: U32::new(e.user_id),
            order_id: U32::new(e.order_id),
            event_type: e.event_type as u8,
            order_type: e.order_type as u8,
            side: e.side as u8,
            padding: [0; 21],
        }
    }
}

impl From<Event> for RequestEvent {
    fn from(e: Event) -> Self {
        Self::from(&e)
    }
}

impl fmt::Debug for RequestEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestEvent")
            .field("event_id", &self.event_id.get())
            .field("timestamp", &self.timestamp.get())
            .field("price", &self.price.get())
            .field("quantity", &self.quantity.get())
            .field("user_id", &self.user_id.get())
            .field("order_id", &self.order_id.get())
            .field("type", &self.event_type)
            .field("order_type", &self.order_type)
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::reference_event;

    #[test]
    fn reference_event_bytes_match_the_format() {
        // Event 8193 of the reference stream, as the C++ recorder wrote it into
        // vectors/flashstrike-ref-3seg/FS.00000002.wal at offset 128.
        let e = reference_event(8193);
        let mut want = [0u8; 64];
        want[0..8].copy_from_slice(&8193u64.to_le_bytes());
        want[8..16].copy_from_slice(&(1000u64 + 8193).to_le_bytes());
        want[16..24].copy_from_slice(&(7i64 * 8193).to_le_bytes());
        want[24..32].copy_from_slice(&94i64.to_le_bytes());
        want[32..36].copy_from_slice(&16u32.to_le_bytes());
        want[36..40].copy_from_slice(&8193u32.to_le_bytes());
        want[40] = 1; // MODIFY_ORDER_PRICE
        want[41] = 1; // MARKET: 8193 is a multiple of 3
        want[42] = 0; // BID: odd id
        assert_eq!(e.as_bytes(), &want);
    }

    #[test]
    fn decode_round_trips() {
        for i in 1..=20 {
            let raw = reference_event(i);
            let e = raw.decode().unwrap();
            assert_eq!(RequestEvent::from(&e), raw);
            assert_eq!(e.event_id, i);
        }
    }

    #[test]
    fn check_names_each_defect() {
        let good = reference_event(5);
        assert_eq!(good.check(), Ok(()));
        assert_eq!(RequestEvent::ZERO.check(), Err(EventDefect::ZeroEventId));

        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(good.as_bytes());
        let with = |at: usize, v: u8| {
            let mut b = bytes;
            b[at] = v;
            RequestEvent::read_from_bytes(&b).unwrap().check()
        };
        assert_eq!(with(40, 4), Err(EventDefect::InvalidType(4)));
        assert_eq!(with(41, 2), Err(EventDefect::InvalidOrderType(2)));
        assert_eq!(with(42, 9), Err(EventDefect::InvalidSide(9)));
        assert_eq!(with(43, 1), Err(EventDefect::NonZeroPadding { offset: 43 }));
        assert_eq!(with(63, 1), Err(EventDefect::NonZeroPadding { offset: 63 }));
        assert!(std::format!("{}", with(63, 1).unwrap_err()).contains("63"));
    }

    #[test]
    fn enum_names_are_the_format_names() {
        assert_eq!(EventType::from_byte(0).unwrap().name(), "NEW_ORDER");
        assert_eq!(EventType::from_byte(3).unwrap().name(), "CANCEL_ORDER");
        assert_eq!(OrderType::Market.name(), "MARKET");
        assert_eq!(Side::Ask.name(), "ASK");
        assert_eq!(EventType::from_byte(4), None);
    }

    proptest::proptest! {
        /// The word-wide fast test accepts exactly the events the field-by-field checks
        /// accept, whatever one or two bytes hold.
        #[test]
        fn fast_test_agrees_with_the_field_checks(
            id in 0u64..4,
            a in 0usize..64,
            x: u8,
            b in 0usize..64,
            y: u8,
        ) {
            let mut e = reference_event(id.max(1));
            if id == 0 {
                e.event_id = U64::new(0);
            }
            e.as_mut_bytes()[a] = x;
            e.as_mut_bytes()[b] = y;
            proptest::prop_assert_eq!(e.is_plausible(), e.find_defect().is_ok());
            proptest::prop_assert_eq!(e.check(), e.find_defect());
        }
    }
}
