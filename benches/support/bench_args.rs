//! The command line every benchmark takes: `--bench` (set by `cargo bench`; without it a
//! benchmark does a short smoke run, as under `cargo test`) and `--NAME N` numbers.

/// The arguments of this run.
pub struct BenchArgs(Vec<String>);

impl BenchArgs {
    /// This process's arguments.
    pub fn from_env() -> BenchArgs {
        BenchArgs(std::env::args().collect())
    }

    /// A full run (`cargo bench`), not a smoke run.
    pub fn full(&self) -> bool {
        self.has("--bench")
    }

    /// Whether `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|a| a == flag)
    }

    /// The number after `name`, if given and a number.
    pub fn number(&self, name: &str) -> Option<usize> {
        self.text(name).and_then(|v| v.parse().ok())
    }

    /// The word after `name`, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
}
