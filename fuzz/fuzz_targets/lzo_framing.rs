//! Fuzz target: see `diff_tests::fuzzing::lzo_framing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diff_tests::fuzzing::lzo_framing(data));
