#![no_main]
//! `mummer::fuzzing::page_subresources`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::page_subresources(data));
