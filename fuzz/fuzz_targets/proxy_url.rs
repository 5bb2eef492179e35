#![no_main]
//! `mummer::fuzzing::proxy_url`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::proxy_url(data));
