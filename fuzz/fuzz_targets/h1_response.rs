#![no_main]
//! `mummer::fuzzing::h1_response`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::h1_response(data));
