#![no_main]
//! `mummer::fuzzing::connect_to`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::connect_to(data));
