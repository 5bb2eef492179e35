#![no_main]
//! `mummer::fuzzing::resolve_override`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::resolve_override(data));
