//! Fuzz target: see `diff_tests::fuzzing::image_metadata`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diff_tests::fuzzing::image_metadata(data));
