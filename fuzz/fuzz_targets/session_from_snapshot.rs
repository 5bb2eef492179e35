#![no_main]
//! `mummer::fuzzing::session_from_snapshot`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::session_from_snapshot(data));
