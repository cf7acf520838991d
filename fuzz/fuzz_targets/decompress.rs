//! Fuzz target: see `diff_tests::fuzzing::decompress_any`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diff_tests::fuzzing::decompress_any(data));
