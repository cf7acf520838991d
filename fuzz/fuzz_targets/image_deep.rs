//! Fuzz target: see `diff_tests::fuzzing::image_metadata_deep`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diff_tests::fuzzing::image_metadata_deep(data));
