//! The checks behind fswal's fuzz targets (`fuzz_targets/*.rs` only call into here).
//!
//! - [`verify`]: segment images, raw or built by the writer and then damaged
//!   structurally, replayed strictly and diagnostically over the memory backend and
//!   compared with the independent scanner ([`fswal_scan::valid_prefix`]).
//! - [`ops`]: random sequences of append / sync / close / reopen / crash / power cut
//!   against a model of what was appended and acknowledged, recovering every crash
//!   image and checking it against the model and the scanner.
//!
//! Every disagreement is a panic whose message says what differs, so that libFuzzer
//! records the input as a crash.

pub mod input;
pub mod ops;
pub mod replay;
pub mod verify;
