#![no_main]
//! `mummer::fuzzing::snapshot_decode`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::snapshot_decode(data));
