//! `mummer fetch --session FILE` twice in a row: the second run sends the cookie the
//! first received and resumes TLS. Then `session show` and `cookies export|import`.

mod support;

use std::process::Output;

use support::https::{HttpsServer, Reply};

async fn mummer(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mummer"))
            .args(&args)
            .env_remove("MUMMER_SESSION_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_file_persists_cookies_and_tickets_across_runs() {
    let server = HttpsServer::start(|req| match req.path() {
        "/login" => Reply::ok("hello").header(
            "set-cookie",
            "sid=persisted-value; Secure; HttpOnly; Max-Age=600",
        ),
        _ => Reply::ok("again"),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();
    let file = dir.path().join("session.json");
    let key = mummer::SnapshotKey::generate().to_hex();
    let common = |url: &str| {
        vec![
            "fetch".to_string(),
            url.to_string(),
            "--session".into(),
            file.display().to_string(),
            "--session-key".into(),
            key.clone(),
            "--cacert".into(),
            ca.display().to_string(),
            "--connect-to".into(),
            format!("shop.test:443:127.0.0.1:{}", server.addr.port()),
            "--profile".into(),
            "chrome-156-macos".into(),
        ]
    };
    let first = mummer(common("https://shop.test/login")).await;
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(String::from_utf8_lossy(&first.stdout), "hello");
    let mut second_args = common("https://shop.test/next");
    second_args.push("-v".into());
    let second = mummer(second_args).await;
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("resumed=true"), "{}", text(&second));
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert!(
        !seen[0].resumed && seen[1].resumed,
        "the second run resumed TLS"
    );
    assert_eq!(seen[1].cookie().as_deref(), Some("sid=persisted-value"));
    assert!(seen[1].header("user-agent").unwrap().contains("Macintosh"));

    // session show hides values unless asked.
    let show = |extra: Vec<&str>| {
        let mut a = vec![
            "session".to_string(),
            "show".into(),
            file.display().to_string(),
            "--session-key".into(),
            key.clone(),
        ];
        a.extend(extra.into_iter().map(String::from));
        a
    };
    let out = mummer(show(vec![])).await;
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("chrome-156-macos")
            && shown.contains("sid=")
            && !shown.contains("persisted-value"),
        "{shown}"
    );
    assert!(shown.contains("tickets    1"), "{shown}");
    let out = mummer(show(vec!["--show-values"])).await;
    assert!(text(&out).contains("sid=persisted-value"));
    // Without the key the encrypted file is refused with a clear message.
    let out = mummer(vec![
        "session".into(),
        "show".into(),
        file.display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(text(&out).contains("encrypted"), "{}", text(&out));

    // cookies export and import through Netscape cookies.txt.
    let txt = dir.path().join("cookies.txt");
    let out = mummer(vec![
        "cookies".into(),
        "export".into(),
        "--session".into(),
        file.display().to_string(),
        "--session-key".into(),
        key.clone(),
        "--format".into(),
        "netscape".into(),
        "-o".into(),
        txt.display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&txt).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "exported cookies are for the owner only: {mode:o}"
        );
    }
    let exported = std::fs::read_to_string(&txt).unwrap();
    assert!(
        exported.contains("#HttpOnly_shop.test\tFALSE\t/\tTRUE\t"),
        "{exported}"
    );
    let other = dir.path().join("other.json");
    let out = mummer(vec![
        "cookies".into(),
        "import".into(),
        "--session".into(),
        other.display().to_string(),
        "--format".into(),
        "netscape".into(),
        txt.display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        std::fs::read_to_string(&other)
            .unwrap()
            .contains("persisted-value"),
        "plain file without a key"
    );

    // A malformed cookie file changes nothing.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "shop.test\tFALSE\t/\tFALSE\tsoon\tx\ty\n").unwrap();
    let before = std::fs::read(&other).unwrap();
    let out = mummer(vec![
        "cookies".into(),
        "import".into(),
        "--session".into(),
        other.display().to_string(),
        "--format".into(),
        "netscape".into(),
        bad.display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(text(&out).contains("line 1"), "{}", text(&out));
    assert_eq!(std::fs::read(&other).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_keeps_a_session_in_a_store_across_runs() {
    let server = HttpsServer::start(|req| match req.path() {
        "/login" => Reply::ok("hello").header("set-cookie", "sid=stored; Secure; Max-Age=600"),
        _ => Reply::ok("again"),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();
    let store = format!("file:{}", dir.path().join("store").display());
    let key = mummer::SnapshotKey::generate().to_hex();
    let common = |url: &str, session: &str| {
        vec![
            "fetch".to_string(),
            url.to_string(),
            "--store".into(),
            store.clone(),
            "--session".into(),
            session.to_string(),
            "--session-key".into(),
            key.clone(),
            "--cacert".into(),
            ca.display().to_string(),
            "--connect-to".into(),
            format!("shop.test:443:127.0.0.1:{}", server.addr.port()),
        ]
    };
    let first = mummer(common("https://shop.test/login", "new")).await;
    assert!(first.status.success(), "{}", text(&first));
    let err = String::from_utf8_lossy(&first.stderr).to_string();
    let id = err
        .split_whitespace()
        .skip_while(|w| *w != "session")
        .nth(1)
        .unwrap_or_else(|| panic!("no id in {err}"))
        .to_string();
    let mut args = common("https://shop.test/next", &id);
    args.push("-v".into());
    let second = mummer(args).await;
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("version"), "{}", text(&second));
    let seen = server.requests();
    assert_eq!(seen[1].cookie().as_deref(), Some("sid=stored"));
    assert!(seen[1].resumed, "TLS resumed from the stored ticket");
    // Encrypted at rest; an unknown id is a clear error.
    let stored = std::fs::read(dir.path().join("store").join(format!("{id}.session"))).unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("sid"));
    let missing = mummer(common("https://shop.test/", "no-such-session")).await;
    assert!(!missing.status.success());
    assert!(text(&missing).contains("not found"), "{}", text(&missing));
}

/// Issue 16 defect 3: files the CLI is pointed at are read bounded. `/dev/zero` as a
/// session file, a profile or a cookie file stops at once with an error that names the
/// file, instead of reading until memory runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_as_session_profile_or_cookie_files_stop_with_a_clear_error() {
    let started = std::time::Instant::now();
    let runs: [Vec<&str>; 4] = [
        vec!["fetch", "--session", "/dev/zero", "http://127.0.0.1:9/"],
        vec!["fetch", "--profile", "/dev/zero", "http://127.0.0.1:9/"],
        vec!["session", "show", "/dev/zero"],
        vec!["profile", "show", "/dev/zero"],
    ];
    for args in runs {
        let out = mummer(args.iter().map(|a| a.to_string()).collect()).await;
        let said = text(&out);
        assert!(!out.status.success(), "{args:?}: {said}");
        assert!(
            said.contains("/dev/zero") && said.contains("not a regular file"),
            "{args:?}: {said}"
        );
        assert!(!said.contains("panicked"), "{args:?}: {said}");
    }
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s.json").display().to_string();
    let out = mummer(
        [
            "cookies",
            "import",
            "--session",
            &session,
            "--format",
            "netscape",
            "/dev/zero",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
    )
    .await;
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains("not a regular file"),
        "{said}"
    );
    assert!(
        !std::path::Path::new(&session).exists(),
        "nothing written: {said}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// `mummer fetch --load` loads a page (document, stylesheet, image), prints a line per
/// subresource, and exits non-zero when one failed, naming how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_load_lists_every_subresource_and_fails_when_one_did() {
    let server = HttpsServer::start(|req| match req.path() {
        "/" => Reply::ok(r#"<link rel=stylesheet href="/s.css"><img src="/i.png">"#)
            .header("content-type", "text/html"),
        "/broken" => Reply::ok(r#"<img src="https://nocert.shop.test/x.png">"#)
            .header("content-type", "text/html"),
        _ => Reply::ok("x"),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();
    let args = |url: &str| {
        vec![
            "fetch".to_string(),
            url.to_string(),
            "--load".into(),
            "--cacert".into(),
            ca.display().to_string(),
            "--connect-to".into(),
            format!(":443:127.0.0.1:{}", server.addr.port()),
            "--profile".into(),
            "chromium-156-linux".into(),
        ]
    };
    let ok = mummer(args("https://shop.test/")).await;
    assert!(ok.status.success(), "{}", text(&ok));
    let out = String::from_utf8_lossy(&ok.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("200 ") && lines[0].ends_with("https://shop.test/"),
        "{out}"
    );
    assert!(
        out.contains("style") && out.contains("https://shop.test/s.css (link rel=stylesheet)"),
        "{out}"
    );
    assert!(out.contains("https://shop.test/i.png (img src)"), "{out}");
    assert!(
        out.contains("https://shop.test/favicon.ico (favicon)"),
        "{out}"
    );
    let paths: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.path().to_string())
        .collect();
    // The stylesheet and the image leave together; the server may log either first.
    let mut middle = paths[1..3].to_vec();
    middle.sort();
    assert_eq!((paths[0].as_str(), paths.len()), ("/", 4), "{paths:?}");
    assert_eq!(middle, ["/i.png", "/s.css"]);
    assert_eq!(paths[3], "/favicon.ico", "the icon last");

    let broken = mummer(args("https://shop.test/broken")).await;
    assert!(
        !broken.status.success(),
        "a failed subresource fails the command"
    );
    assert!(
        text(&broken).contains("page load incomplete: 1 subresources failed"),
        "{}",
        text(&broken)
    );
    assert!(
        String::from_utf8_lossy(&broken.stdout).contains("ERR"),
        "{}",
        text(&broken)
    );

    // Only the kinds asked for; the others are listed as left out, not fetched.
    let before = server.requests().len();
    let mut only_images = args("https://shop.test/");
    only_images.extend(["--load-kinds".into(), "image".into(), "--json".into()]);
    let images = mummer(only_images).await;
    assert!(images.status.success(), "{}", text(&images));
    let json: serde_json::Value = serde_json::from_slice(&images.stdout).unwrap();
    let outcomes: Vec<(String, String)> = json["subresources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["url"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap_or("fetched").to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("https://shop.test/s.css".to_string(), "kind".to_string()),
            ("https://shop.test/i.png".into(), "fetched".into()),
            ("https://shop.test/favicon.ico".into(), "fetched".into()),
        ]
    );
    assert_eq!(
        (
            json["not_listed"].as_u64(),
            json["document_bytes_not_read"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(
        server.requests().len() - before,
        3,
        "the document and two images"
    );
    let mut bad_kind = args("https://shop.test/");
    bad_kind.extend(["--load-kinds".into(), "image,video".into()]);
    let refused = mummer(bad_kind).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("unknown request kind `video`"),
        "{}",
        text(&refused)
    );
}

/// `mummer profile diff` names each differing field and answers with diff(1)'s exit
/// codes; a learned headless profile is warned about; `MUMMER_CHROME_LATEST` points
/// `chrome-latest` at a profile file without a rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_diffed_warned_about_and_chrome_latest_is_configurable() {
    let same = mummer(vec![
        "profile".into(),
        "diff".into(),
        "chromium-156-linux".into(),
        "chromium-156-linux".into(),
    ])
    .await;
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    let brands = mummer(vec![
        "profile".into(),
        "diff".into(),
        "chromium-156-linux".into(),
        "chrome-156-linux".into(),
    ])
    .await;
    assert_eq!(brands.status.code(), Some(1), "{}", text(&brands));
    let out = String::from_utf8_lossy(&brands.stdout).to_string();
    assert_eq!(
        out.lines().count(),
        7,
        "sec-ch-ua in each of the 7 templates: {out}"
    );
    assert!(
        out.lines().all(|l| l.starts_with("requests.")
            && l.contains(".headers.sec-ch-ua: ")
            && l.contains("Google Chrome")),
        "{out}"
    );
    let missing = mummer(vec![
        "profile".into(),
        "diff".into(),
        "chromium-156-linux".into(),
        "no-such-profile".into(),
    ])
    .await;
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));

    // A profile file as learned from headless Chromium: same wire but the brand.
    let dir = tempfile::tempdir().unwrap();
    let learned = dir.path().join("learned.json");
    let mut profile = mummer::Profile::named("chromium-156-linux").unwrap();
    profile.name = "learned".into();
    profile.user_agent = profile.user_agent.replace("Chrome/", "HeadlessChrome/");
    std::fs::write(&learned, serde_json::to_string_pretty(&profile).unwrap()).unwrap();
    let headless = mummer(vec![
        "profile".into(),
        "diff".into(),
        "chromium-156-linux".into(),
        learned.display().to_string(),
    ])
    .await;
    assert_eq!(headless.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&headless.stdout).contains("user_agent:"),
        "{}",
        text(&headless)
    );
    assert!(
        text(&headless).contains("warning") && text(&headless).contains("HeadlessChrome"),
        "{}",
        text(&headless)
    );

    let listed = tokio::task::spawn_blocking({
        let learned = learned.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_mummer"))
                .arg("profiles")
                .env("MUMMER_CHROME_LATEST", &learned)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed.contains(&format!(
            "chrome-latest          alias of {}",
            learned.display()
        )),
        "{listed}"
    );
    let shown = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mummer"))
            .args(["profile", "show", "chrome-latest"])
            .env("MUMMER_CHROME_LATEST", &learned)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("\"name\": \"learned\""),
        "{}",
        text(&shown)
    );
}
