//! Save and restore: a restored session resumes TLS from its saved ticket and sends its
//! cookies; every kind of bad snapshot is refused with an error that says which, and the
//! file is left as it was.

mod support;

use mummer::net::ConnectTo;
use mummer::{Profile, Session, SnapshotKey};
use support::https::{HttpsServer, Reply};

struct Fixture {
    server: HttpsServer,
    ca: tempfile::NamedTempFile,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let server = HttpsServer::start(|req| match req.path() {
            "/login" => {
                Reply::ok("in").header("set-cookie", "sid=s3cr3t; Secure; HttpOnly; Max-Age=3600")
            }
            // What browsers take: a space in the name, UTF-8 in the value.
            "/odd" => Reply::ok("odd")
                .header("set-cookie", "foo bar=baz; Max-Age=3600")
                .header("set-cookie", "utf=caf\u{e9}; Max-Age=3600"),
            _ => Reply::ok("ok"),
        })
        .await;
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), &server.cert_pem).unwrap();
        Fixture {
            server,
            ca,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn transport(&self) -> impl FnOnce(mummer::ClientBuilder) -> mummer::ClientBuilder {
        let route: ConnectTo = format!(":443:127.0.0.1:{}", self.server.addr.port())
            .parse()
            .unwrap();
        let ca = self.ca.path().to_path_buf();
        move |b| b.ca_file(ca).connect_to(route)
    }

    fn session(&self) -> Session {
        Session::builder(Profile::named("chrome-156-windows").unwrap())
            .transport(self.transport())
            .build()
            .unwrap()
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test]
async fn restored_session_resumes_tls_and_sends_cookies() {
    let f = Fixture::new().await;
    let s = f.session();
    s.get("https://shop.test/login").send().await.unwrap();
    let key = SnapshotKey::generate();
    let path = f.path("session.snap");
    s.save(&path, Some(&key)).unwrap();
    let raw = std::fs::read(&path).unwrap();
    assert!(
        !String::from_utf8_lossy(&raw).contains("s3cr3t"),
        "encrypted at rest"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    s.close();

    let restored = Session::load(&path, Some(&key), f.transport()).unwrap();
    assert_eq!(restored.id(), s.id());
    assert_eq!(restored.stats().request_count, 1);
    assert_eq!(restored.profile().name, "chrome-156-windows");
    let r = restored
        .get("https://shop.test/account")
        .send()
        .await
        .unwrap();
    assert!(
        r.tls().unwrap().resumed,
        "the saved ticket resumes the handshake"
    );
    let seen = f.server.requests().into_iter().last().unwrap();
    assert!(seen.resumed, "the server saw a resumed handshake");
    assert_eq!(seen.cookie().as_deref(), Some("sid=s3cr3t"));
    assert_eq!(restored.stats().transport.tls_resumed, 1);

    // A plain (unencrypted) snapshot works the same way, and a new identifier does not
    // resume from the old identifier's tickets.
    let plain = f.path("plain.json");
    restored.save(&plain, None).unwrap();
    let other = Session::load(&plain, None, f.transport()).unwrap();
    other.set_identifier("someone-else");
    let r = other.get("https://shop.test/x").send().await.unwrap();
    assert!(
        !r.tls().unwrap().resumed,
        "tickets are partitioned by identifier"
    );
}

#[tokio::test]
async fn bad_snapshots_are_refused_and_left_alone() {
    let f = Fixture::new().await;
    let s = f.session();
    s.get("https://shop.test/login").send().await.unwrap();
    let key = SnapshotKey::generate();
    let enc = f.path("enc.snap");
    let plain = f.path("plain.json");
    s.save(&enc, Some(&key)).unwrap();
    s.save(&plain, None).unwrap();
    let enc_bytes = std::fs::read(&enc).unwrap();
    let plain_text = std::fs::read_to_string(&plain).unwrap();

    let mut tampered = enc_bytes.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    let future = plain_text.replacen("\"version\": 1", "\"version\": 99", 1);
    let bad_field = plain_text.replacen("\"request_count\": 1", "\"request_count\": \"one\"", 1);
    let wrong = SnapshotKey::generate();
    let cases: Vec<(&str, Vec<u8>, Option<&SnapshotKey>, &str)> = vec![
        (
            "garbage",
            b"\x00\x01not a snapshot".to_vec(),
            None,
            "corrupt",
        ),
        (
            "truncated",
            plain_text.as_bytes()[..plain_text.len() / 2].to_vec(),
            None,
            "truncated",
        ),
        (
            "truncated-enc",
            enc_bytes[..40].to_vec(),
            Some(&key),
            "truncated",
        ),
        ("tampered", tampered, Some(&key), "tampered"),
        ("wrong-key", enc_bytes.clone(), Some(&wrong), "wrong key"),
        ("no-key", enc_bytes.clone(), None, "encrypted"),
        (
            "plain-with-key",
            plain_text.as_bytes().to_vec(),
            Some(&key),
            "not encrypted",
        ),
        ("future", future.into_bytes(), None, "newer mummer"),
        ("bad-field", bad_field.into_bytes(), None, "request_count"),
        (
            "foreign",
            br#"{"hello": "world"}"#.to_vec(),
            None,
            "version",
        ),
    ];
    for (name, bytes, key, expect) in cases {
        let path = f.path(name);
        std::fs::write(&path, &bytes).unwrap();
        let err = Session::load(&path, key, f.transport()).unwrap_err();
        assert!(err.is_snapshot(), "{name}: {err}");
        assert!(err.to_string().contains(expect), "{name}: {err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: the file is untouched"
        );
    }
    let missing = Session::load(f.path("nope"), None, f.transport()).unwrap_err();
    assert!(
        missing.is_snapshot() && missing.to_string().contains("cannot read"),
        "{missing}"
    );
    // The good files still load after all that.
    Session::load(&enc, Some(&key), f.transport()).unwrap();
    Session::load(&plain, None, f.transport()).unwrap();
}

#[tokio::test]
async fn hostile_snapshot_fields_are_refused_with_the_field_and_nothing_panics() {
    let f = Fixture::new().await;
    let s = f.session();
    s.get("https://shop.test/login").send().await.unwrap();
    let plain = f.path("plain.json");
    s.save(&plain, None).unwrap();
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plain).unwrap()).unwrap();
    let inline = serde_json::to_value(Profile::named("chrome-156-windows").unwrap()).unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let with_profile = |edit: Edit| -> Edit {
        let inline = inline.clone();
        Box::new(move |v: &mut serde_json::Value| {
            let mut p = inline.clone();
            edit(&mut p);
            v["profile"] = serde_json::json!({ "inline": p });
        })
    };
    use serde_json::json;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "cache-1e9",
            Box::new(|v| v["cache_config"]["max_entries"] = json!(1_000_000_000u64)),
            "max_entries",
        ),
        (
            "cache-2^63",
            Box::new(|v| v["cache_config"]["max_entries"] = json!(1u64 << 63)),
            "max_entries",
        ),
        (
            "cache-bytes",
            Box::new(|v| v["cache_config"]["max_body_bytes"] = json!(u64::MAX)),
            "max_body_bytes",
        ),
        (
            "no-templates",
            with_profile(Box::new(|p| p["requests"] = json!({}))),
            "requests.navigation",
        ),
        (
            "even-stream",
            with_profile(Box::new(|p| p["http2"]["initial_stream_id"] = json!(2))),
            "initial_stream_id",
        ),
        (
            "tiny-frames",
            with_profile(Box::new(|p| {
                p["http2"]["settings"] = json!([["MAX_FRAME_SIZE", 1]])
            })),
            "MaxFrameSize",
        ),
        (
            "huge-window",
            with_profile(Box::new(|p| {
                p["http2"]["settings"] = json!([["INITIAL_WINDOW_SIZE", u32::MAX]])
            })),
            "InitialWindowSize",
        ),
    ];
    for (name, edit, expect) in cases {
        let mut v = good.clone();
        edit(&mut v);
        let path = f.path(name);
        let bytes = serde_json::to_vec_pretty(&v).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let err = Session::load(&path, None, f.transport()).unwrap_err();
        assert!(err.is_snapshot(), "{name}: {err}");
        assert!(err.to_string().contains(expect), "{name}: {err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}: untouched");
    }
    // The limits themselves load.
    let mut v = good.clone();
    v["cache_config"]["max_entries"] = json!(1_000_000);
    let path = f.path("at-the-limit");
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    Session::load(&path, None, f.transport()).unwrap();
}

#[tokio::test]
async fn a_cookie_the_jar_took_from_a_server_survives_save_and_load() {
    let f = Fixture::new().await;
    let s = f.session();
    s.get("https://shop.test/odd").send().await.unwrap();
    let names: Vec<String> = s.cookies().into_iter().map(|c| c.name).collect();
    assert!(names.contains(&"foo bar".to_string()), "{names:?}");
    assert!(
        names.contains(&"utf".to_string()),
        "UTF-8 values are kept: {names:?}"
    );
    let path = f.path("odd.json");
    s.save(&path, None).unwrap();
    let back = Session::load(&path, None, f.transport()).unwrap();
    assert_eq!(back.cookies(), s.cookies());
}

#[tokio::test]
async fn a_save_that_cannot_finish_keeps_the_previous_snapshot() {
    let f = Fixture::new().await;
    let s = f.session();
    let path = f.path("s.json");
    s.save(&path, None).unwrap();
    let before = std::fs::read(&path).unwrap();
    s.get("https://shop.test/login").send().await.unwrap();
    // A read-only directory makes the temporary file impossible: the save fails cleanly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = f.path("ro");
        std::fs::create_dir(&ro).unwrap();
        let target = ro.join("s.json");
        std::fs::write(&target, &before).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        let err = s.save(&target, None);
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Root ignores directory permissions; only check when the write was refused.
        if let Err(err) = err {
            assert!(err.is_snapshot(), "{err}");
            assert_eq!(std::fs::read(&target).unwrap(), before);
        }
    }
    // A stray temporary file from a crashed save is ignored by load.
    std::fs::write(f.path(".s.json.tmp-1-deadbeef"), b"{\"version\": 1, trunc").unwrap();
    let restored = Session::load(&path, None, f.transport()).unwrap();
    assert_eq!(restored.stats().request_count, 0, "the last complete save");
}
