#![no_main]
//! `mummer::fuzzing::socks5_reply`: see its documentation in `src/fuzzing.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mummer::fuzzing::socks5_reply(data));
