#![no_main]
//! `mummer::fuzzing::cookies_cdp`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::cookies_cdp(data));
