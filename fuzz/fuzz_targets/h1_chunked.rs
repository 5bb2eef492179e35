#![no_main]
//! `mummer::fuzzing::h1_chunked`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::h1_chunked(data));
