//! Fuzz target: see `diff_tests::fuzzing::image_zst`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diff_tests::fuzzing::image_zst(data));
