#![no_main]
//! `mummer::fuzzing::profile_json`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::profile_json(data));
