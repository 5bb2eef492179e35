#![no_main]
//! `mummer::fuzzing::body_decode`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::body_decode(data));
