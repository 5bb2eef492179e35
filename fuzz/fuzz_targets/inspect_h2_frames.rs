#![no_main]
//! `mummer::fuzzing::inspect_h2_frames`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::inspect_h2_frames(data));
