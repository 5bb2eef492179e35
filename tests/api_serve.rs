//! `mummer serve` as a process: the Python example (standard library only) logs in
//! through the proxy, survives a restart of the server through the file store, and the
//! server's JSON logs carry session ids and never a cookie value.

mod support;

use std::process::Command;

use support::https::{HttpsServer, Reply};

const SECRET: &str = "py-cookie-5f2c9a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_stays_logged_in_across_a_restart() {
    let site = HttpsServer::start(|req| match req.path() {
        "/login" => Reply::new(302).header("location", "/account").header(
            "set-cookie",
            &format!("sid={SECRET}; Path=/; Secure; HttpOnly"),
        ),
        "/account" if req.cookie().unwrap_or_default().contains(SECRET) => {
            Reply::ok("<h1>Your account</h1>")
        }
        "/account" => Reply::ok("<p>Please log in</p>"),
        _ => Reply::ok("hello"),
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("site.pem");
    std::fs::write(&ca, &site.cert_pem).expect("write");
    let log = dir.path().join("serve.log");
    let port = site.addr.port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python/login_roundtrip.py"
    );
    let args = vec![
        script.to_string(),
        "--mummer".into(),
        env!("CARGO_BIN_EXE_mummer").into(),
        "--site".into(),
        format!("https://shop.test:{port}"),
        "--resolve".into(),
        format!("shop.test:{port}:127.0.0.1"),
        "--cacert".into(),
        ca.display().to_string(),
        "--log".into(),
        log.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(&args)
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .output()
            .expect("python3 is installed (scripts/setup.sh)")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the example failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("still logged in after the restart"),
        "{stdout}"
    );

    // The site saw the session's browser, and the cookie after the restart.
    let seen = site.requests();
    let accounts: Vec<_> = seen.iter().filter(|r| r.path() == "/account").collect();
    assert!(accounts.len() >= 3, "{}", accounts.len());
    let last = accounts.last().expect("account");
    assert!(last.cookie().unwrap_or_default().contains(SECRET));
    assert!(last
        .header("user-agent")
        .unwrap_or_default()
        .contains("Chrome/"));

    // JSON logs: one object per line, a session id on every session line, no secrets.
    let logs = std::fs::read_to_string(&log).expect("logs");
    assert!(!logs.contains(SECRET), "a cookie value reached the logs");
    let mut session_lines = 0;
    for line in logs.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let path = entry["path"].as_str().unwrap_or_default();
        if path.starts_with("/v1/sessions/") || entry["message"] == "proxied" {
            assert!(entry["session"].is_string(), "no session id: {line}");
            session_lines += 1;
        }
    }
    assert!(session_lines >= 5, "{logs}");
}
