//! Replay against the independent scanner: see `fswal_fuzz::verify`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fswal_fuzz::verify::run(data));
