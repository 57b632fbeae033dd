//! The memory backend.
//!
//! [`MemDevice`] works over any byte buffer (a static array, a borrowed slice, a
//! `Vec`) and needs neither the standard library nor an allocator, so it is usable on
//! any target. With the `std` feature, [`MemStore`] holds a whole log in memory.
//!
//! Both live in `fswal-core`, beside the [`BlockDevice`](fswal_core::BlockDevice)
//! trait, because the core's own tests and fuzzers run over them; this module
//! re-exports them so that every backend is found in one crate.

pub use fswal_core::mem::{MEM_GRANULARITY_BYTES_DEFAULT, MemDevice, MemError};

#[cfg(feature = "std")]
pub use fswal_core::mem::{MemSegment, MemStore};
