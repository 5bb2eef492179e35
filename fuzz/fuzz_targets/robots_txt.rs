#![no_main]
//! `mummer::fuzzing::robots_txt`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::robots_txt(data));
