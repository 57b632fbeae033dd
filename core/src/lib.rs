//! fswal-core: the FlashStrike write-ahead log's on-disk format, checksums, writer and
//! verifying replay, with no standard library, no allocator and no `unsafe`.
//!
//! A matching engine records every request event (64 bytes) before acting on it. The
//! log is a numbered set of segments; a segment is a 64-byte header and fixed 16448-byte
//! blocks; a block is a 64-byte header and 256 event slots. Three layers of XXH64
//! checksums (block, chained, header) let replay verify everything and stop exactly
//! at the first corrupted or partial block. The format is the FlashStrike C++
//! recorder's, byte for byte (docs/FORMAT.md).
//!
//! | module | what |
//! |---|---|
//! | [`event`] | `RequestEvent`, the 64-byte event |
//! | [`segment_header`] | `SegmentHeader`, the first 64 bytes of a segment |
//! | [`block_header`] | `BlockHeader`, the first 64 bytes of a block |
//! | [`block`] | `Block`, a header and 256 event slots |
//! | [`checksum`] | the four checksums |
//! | [`cpp_meta`] | the C++ recorder's meta file, read as a hint only |
//! | [`checkpoint`] | the meta record: where the log was durably known to end |
//! | [`watermark`] | the durable watermark the records give, and the check that the log holds its block |
//! | [`device`] | `BlockDevice`, the storage abstraction, and its crash contract |
//! | [`store`] | `SegmentStore`, a log as numbered segments |
//! | [`writer`] | `SegmentWriter` and `WalWriter`: append, sync, seal, rotate, recover |
//! | [`recovery`] | what reopening a log does with what replay found: go on, set a torn tail aside, or refuse |
//! | [`replay`] | `Replay`, the verifying state machine |
//! | [`seek`] | start replay at an event id |
//! | `parallel_replay` | `ParallelReplay`: verified replay on every core, the result always the sequential replay's (feature `std`) |
//! | [`issue`] | what replay reports about damage |
//! | [`error`] | errors |
//! | [`limits`] | sizes and bounds, with their relations asserted |
//! | [`mem`] | in-memory devices |
//! | `fault` | a fault-injecting store that builds crash images (feature `testing`) |
//! | `rng` | the deterministic generator of the crash simulator and the randomized tests (feature `testing`) |
//! | [`reference`](mod@reference) | the reference event stream of the known answers |
//!
//! Features: `std` adds [`mem::MemStore`], an in-memory segment store, and
//! `ParallelReplay`, verified replay on every core (threads). `testing` is test support
//! for fswal's own tests, crash simulator and fuzzers (the modules `fault` and `rng`):
//! it is **exempt from semver**, anything under it may change or go in any release, and
//! applications do not enable it.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod block;
pub mod block_header;
pub mod checkpoint;
pub mod checksum;
pub mod cpp_meta;
pub mod device;
pub mod error;
pub mod event;
#[cfg(any(test, feature = "testing"))]
pub mod fault;
pub mod issue;
pub mod limits;
pub mod mem;
#[cfg(any(test, feature = "std"))]
mod parallel;
#[cfg(feature = "std")]
pub mod parallel_replay;
pub mod recovery;
pub mod reference;
pub mod replay;
#[cfg(any(test, feature = "testing"))]
pub mod rng;
pub mod seek;
pub mod segment_header;
pub mod store;
#[cfg(test)]
mod testutil;
pub mod watermark;
pub mod writer;

pub use block::Block;
pub use block_header::BlockHeader;
pub use device::{BlockDevice, DeviceError, ErrorKind};
pub use error::Error;
pub use event::{Event, EventType, OrderType, RequestEvent, Side};
pub use issue::{Issue, Reason, Status};
#[cfg(feature = "std")]
pub use parallel_replay::ParallelReplay;
pub use replay::{BlockView, Mode, Replay, SegmentInfo, Step, Summary, Tail};
pub use segment_header::SegmentHeader;
pub use store::SegmentStore;
pub use writer::{Clock, Recovery, SegmentWriter, WalWriter, WriterConfig};
