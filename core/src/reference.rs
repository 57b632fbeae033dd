//! The reference event stream of docs/FORMAT.md ("Known answers").
//!
//! Event `i` (`i >= 1`) has `event_id = i`, `timestamp = 1000 + i`, `price = 7 * i`,
//! `quantity = i % 100 + 1`, `user_id = i % 17`, `order_id = i`, `type = i % 4`,
//! `order_type = LIMIT if i % 3 != 0 else MARKET`, `side = BID if i is odd else ASK`.
//! The known checksums and the C++ recorder's vectors are computed over this stream;
//! `fswal record`, the tests and the benchmarks write it.
//!
//! Public, and stable as the format is: the stream is defined by docs/FORMAT.md, so
//! these functions cannot change without changing the known answers. An application
//! or another implementation uses it to check itself against those answers, or to
//! produce valid events in its own tests.

use crate::event::{Event, EventType, OrderType, RequestEvent, Side};

/// Event `i` of the reference stream with its native fields.
///
/// Fields that do not fit their on-disk width wrap, exactly as the C++ generator's
/// casts do (`order_id` is a u32, so id `2^32 + 1` has `order_id = 1`).
#[must_use]
#[inline]
pub fn reference_fields(i: u64) -> Event {
    let event_type = match i % 4 {
        0 => EventType::NewOrder,
        1 => EventType::ModifyOrderPrice,
        2 => EventType::ModifyOrderQuantity,
        _ => EventType::CancelOrder,
    };
    Event {
        event_id: i,
        timestamp: i.wrapping_add(1000),
        price: (i as i64).wrapping_mul(7),
        // `i % 100 + 1 <= 100`: exact.
        quantity: (i % 100 + 1) as i64,
        // `i % 17 < 17`: exact.
        user_id: (i % 17) as u32,
        // Wraps by design, as documented above.
        #[allow(clippy::cast_possible_truncation)]
        order_id: i as u32,
        event_type,
        order_type: if i % 3 != 0 {
            OrderType::Limit
        } else {
            OrderType::Market
        },
        side: if i % 2 == 1 { Side::Bid } else { Side::Ask },
    }
}

/// Event `i` of the reference stream, laid out as on disk.
#[must_use]
#[inline]
pub fn reference_event(i: u64) -> RequestEvent {
    RequestEvent::from(&reference_fields(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_events_follow_the_rules() {
        let e = reference_fields(1);
        assert_eq!(e.timestamp, 1001);
        assert_eq!(e.price, 7);
        assert_eq!(e.quantity, 2);
        assert_eq!(e.user_id, 1);
        assert_eq!(e.event_type, EventType::ModifyOrderPrice);
        assert_eq!(e.order_type, OrderType::Limit);
        assert_eq!(e.side, Side::Bid);

        let e = reference_fields(300);
        assert_eq!(e.quantity, 1);
        assert_eq!(e.user_id, 300 % 17);
        assert_eq!(e.event_type, EventType::NewOrder);
        assert_eq!(e.order_type, OrderType::Market);
        assert_eq!(e.side, Side::Ask);
    }
}
