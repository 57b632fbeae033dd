//! The wall clock that stamps segment headers (`created_ts_ns`, `closed_ts_ns`).

pub use fswal_core::writer::wall_clock_ns;
