//! Headless Chromium for tests: where it is, the flags every test gives it (it resolves
//! only the test's host names, to 127.0.0.1, and talks to no other host), killing it by
//! the PID we started, and re-running a test inside a loopback-only network namespace.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Debian's Chromium, installed by `scripts/setup.sh`.
pub fn chromium_path() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is installed by scripts/setup.sh")
}

/// The flags every test starts Chromium with: headless, no background traffic, its own
/// profile directory, and `hosts` mapped to 127.0.0.1 with everything else unresolvable.
pub fn base_args(hosts: &[&str], user_data_dir: &Path) -> Vec<String> {
    let map: Vec<String> = hosts.iter().map(|h| format!("MAP {h} 127.0.0.1")).collect();
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-quic".into(),
        "--ignore-certificate-errors".into(),
        format!("--host-resolver-rules={}, MAP * ~NOTFOUND", map.join(", ")),
        format!("--user-data-dir={}", user_data_dir.display()),
    ]
}

/// A running browser, killed (by the PID we started) when dropped.
pub struct Browser(pub Child);

impl Browser {
    /// Starts Chromium with `args`, stdout and stderr as given.
    pub fn start(args: &[String], stderr: Stdio) -> Browser {
        let child = Command::new(chromium_path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start chromium");
        Browser(child)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Re-runs `test` (of the current test binary) inside a new network namespace with only
/// loopback (`unshare -n`, then `ip link set lo up`) and returns true when that run
/// happened (and passed). Returns false when already inside one, or when the machine does
/// not allow it (then the caller runs in this namespace; Chromium still resolves only the
/// test's hosts).
pub fn reran_in_loopback_namespace(test: &str) -> bool {
    if std::env::var_os("MUMMER_IN_NETNS").is_some() {
        return false;
    }
    let allowed = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!("unshare -n is not permitted here: running in this network namespace");
        return false;
    }
    let status = Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(std::env::current_exe().expect("own path"))
        .args([test, "--exact", "--nocapture"])
        .env("MUMMER_IN_NETNS", "1")
        .status()
        .expect("run the test inside the namespace");
    assert!(
        status.success(),
        "the run inside the loopback-only namespace failed"
    );
    true
}

/// Runs a test's `body` on a two-worker runtime, inside a loopback-only network
/// namespace where the machine allows it (see [`reran_in_loopback_namespace`]; `test`
/// is the test's own name).
pub fn run_isolated<F: std::future::Future<Output = ()>>(test: &str, body: impl FnOnce() -> F) {
    if reran_in_loopback_namespace(test) {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(body());
}

/// The base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's
/// `--ignore-certificate-errors-spki-list` takes it.
pub fn spki_hash(cert_pem: &[u8]) -> String {
    use base64::Engine as _;
    let cert = boring::x509::X509::from_pem(cert_pem).expect("inspector certificate");
    let spki = cert
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .expect("public key");
    let digest = boring::hash::hash(boring::hash::MessageDigest::sha256(), &spki).expect("sha256");
    base64::engine::general_purpose::STANDARD.encode(digest)
}
