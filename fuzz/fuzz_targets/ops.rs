//! Writer, crashes and recovery against a model: see `fswal_fuzz::ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fswal_fuzz::ops::run(data));
