#![no_main]
//! `mummer::fuzzing::set_cookie`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::set_cookie(data));
