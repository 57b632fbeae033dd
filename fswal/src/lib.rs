//! fswal: the FlashStrike write-ahead log. A matching engine records every request
//! event (64 bytes) before acting on it; fswal makes it durable in segments of 16 KiB
//! blocks under three layers of XXH64 checksums, and after a restart replays it,
//! verifying everything, stopping safely at the first damaged or partial block.
//!
//! This crate is what an application needs: [`Wal`] to create or recover a log and
//! append to it, [`Options`] for everything else, [`replay`] to read a log, and the
//! event types. The on-disk format is the FlashStrike C++ recorder's, byte for byte
//! (`docs/FORMAT.md`).
//!
//! ```
//! use fswal::{Event, EventType, OrderType, RequestEvent, Side, Status, Wal};
//!
//! # fn apply(_: &RequestEvent) {}
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path().join("wal");
//! // Create the log, or recover it and continue after its last event.
//! let mut wal = Wal::open(&dir)?;
//! let id = wal.last_event_id() + 1;
//! wal.append(&RequestEvent::from(Event {
//!     event_id: id,
//!     timestamp: 1_700_000_000_000_000_000,
//!     price: 101_250,
//!     quantity: 10,
//!     user_id: 7,
//!     order_id: 42,
//!     event_type: EventType::NewOrder,
//!     order_type: OrderType::Limit,
//!     side: Side::Bid,
//! }))?;
//! wal.sync()?; // returns once the event is durable
//! assert!(wal.durable_event_id() >= id);
//! wal.close()?;
//!
//! // After a restart: recover, rebuilding state from every event, verified once.
//! let mut wal = Wal::options().open_replaying(&dir, |e: &RequestEvent| apply(e))?;
//! assert_eq!(wal.last_event_id(), id);
//! wal.close()?;
//!
//! // Read a log without touching it: strict, stops at the first damage.
//! let mut events = 0;
//! let summary = fswal::replay(&dir, |_: &RequestEvent| events += 1)?;
//! assert_eq!((summary.status, events), (Status::Ok, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crates underneath (`fswal-core`, a `no_std` core over an abstract block device;
//! `fswal-backends`; `fswal-recorder`) are for hosts that need their parts: an
//! embedded target, a backend of their own, the pipeline's telemetry.

mod error;
mod options;
mod replay;
mod wal;

pub use error::Error;
pub use fswal_backends::any::Backend;
pub use fswal_core::event::EventDefect;
pub use fswal_core::{
    Event, EventType, Issue, OrderType, Reason, Recovery, RequestEvent, Side, Status, Summary,
};
pub use options::Options;
pub use replay::replay;
pub use wal::Wal;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
