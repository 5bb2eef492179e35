#![no_main]
//! `mummer::fuzzing::quic_initial`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::quic_initial(data));
