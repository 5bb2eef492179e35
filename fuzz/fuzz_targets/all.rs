#![no_main]
//! Every target of `mummer::fuzzing::TARGETS` in one binary, the one `scripts/fuzz.sh`
//! builds: the environment variable `MUMMER_FUZZ_TARGET` names the target a run
//! fuzzes. One binary links once, where nineteen would link nineteen times; that is
//! what lets the test command fuzz every target on a two-core machine. The per-target
//! binaries beside it stay for `cargo fuzz run <target>`.

use std::sync::OnceLock;

static HARNESS: OnceLock<mummer::fuzzing::Harness> = OnceLock::new();

libfuzzer_sys::fuzz_target!(
    init: {
        let name = std::env::var("MUMMER_FUZZ_TARGET").unwrap_or_default();
        match mummer::fuzzing::target(&name) {
            Some(harness) => {
                let _ = HARNESS.set(harness);
            }
            None => {
                let names: Vec<&str> = mummer::fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
                eprintln!(
                    "MUMMER_FUZZ_TARGET={name:?} names no target; one of: {}",
                    names.join(", ")
                );
                std::process::exit(2);
            }
        }
    },
    |data: &[u8]| {
        if let Some(harness) = HARNESS.get() {
            harness(data);
        }
    }
);
