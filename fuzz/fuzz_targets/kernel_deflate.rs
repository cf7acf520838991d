//! Fuzz target: see `diff_tests::fuzzing::kernel_deflate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| diff_tests::fuzzing::kernel_deflate(data));
