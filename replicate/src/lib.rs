//! Replication of an fswal log through NATS JetStream.
//!
//! The unit shipped is the block, verbatim, with the segment starts and sealed
//! headers around it ([`message`]): nothing is re-encoded, and a follower receives the
//! bytes the primary's checksums cover. A shipper publishes them in log order, each
//! with a message id derived from its place (so a retry is stored once) and the
//! stream's expected last sequence (so two writers cannot both extend the stream). A
//! follower ([`replica`]) verifies each message against the log it extends before it
//! writes a byte of it.

pub mod epoch;
pub mod error;
pub mod follow;
pub mod message;
pub mod nats;
pub mod replica;
pub mod ship;
pub mod source;

pub use error::ReplicateError;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
