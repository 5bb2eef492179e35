//! The checked-in fuzz corpus (`fuzz/corpus/<target>/`) replayed through the same
//! harnesses the cargo-fuzz targets run (`mummer::fuzzing`), on stable `cargo test`: no
//! seed may panic, and every target has a corpus (and every corpus a target).
//!
//! Inputs a fuzzer found to crash are kept in `fuzz/artifacts-found/<target>/` until
//! fixed; `cargo test --test fuzz_corpus -- --ignored` replays them.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files directly under `dir`, sorted (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs every file under `root/<target>/` through its target; returns the failures
/// (target, file, panic message) and the number of inputs run.
fn replay(root: &Path) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, run) in mummer::fuzzing::TARGETS {
        for file in files(&root.join(name)) {
            let data = std::fs::read(&file).expect("a readable corpus file");
            ran += 1;
            if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(not a string)");
                failures.push(format!("{name}: {}: {why}", file.display()));
            }
        }
    }
    (failures, ran)
}

#[test]
fn every_seed_runs_without_a_panic() {
    let (failures, ran) = replay(&fuzz_dir().join("corpus"));
    assert!(ran > 0, "no corpus files found under fuzz/corpus");
    assert!(
        failures.is_empty(),
        "seeds that panic:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_corpus_a_source_file_and_a_bin() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in mummer::fuzzing::TARGETS {
        assert!(
            !files(&fuzz_dir().join("corpus").join(name)).is_empty(),
            "fuzz/corpus/{name}/ is empty"
        );
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("mummer::fuzzing::{name}(")),
            "{} does not call mummer::fuzzing::{name}",
            source.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
    for dir in std::fs::read_dir(fuzz_dir().join("corpus")).expect("fuzz/corpus") {
        let dir = dir.expect("an entry").file_name();
        let dir = dir.to_string_lossy();
        assert!(
            mummer::fuzzing::target(&dir).is_some(),
            "fuzz/corpus/{dir}/ belongs to no target in mummer::fuzzing::TARGETS"
        );
    }
}

/// Crashing inputs found by fuzzing, kept until the code is fixed.
#[test]
#[ignore = "replays fuzz/artifacts-found: inputs that crashed when found"]
fn found_artifacts_no_longer_panic() {
    let (failures, _) = replay(&fuzz_dir().join("artifacts-found"));
    assert!(
        failures.is_empty(),
        "still panicking:\n{}",
        failures.join("\n")
    );
}
