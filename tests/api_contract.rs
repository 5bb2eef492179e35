//! Contract tests of the message API (`mummer serve`'s routes, served in-process over a
//! real engine and a loopback HTTPS site): every endpoint, every error case, and every
//! answer checked against `docs/openapi.json` by the client in `support/api.rs`.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use mummer::api::{ApiConfig, ApiServer, TenantTokens, TransportOptions};
use mummer::Engine;
use mummer::RetryPolicy;
use serde_json::{json, Value};
use support::api::ApiClient;
use support::https::{HttpsServer, Reply};

fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("one recorder per test process")
        })
        .clone()
}

async fn site() -> HttpsServer {
    HttpsServer::start(|req| match req.path() {
        "/login" => Reply::new(302)
            .header("location", "/account")
            .header("set-cookie", "sid=s3cret-value; Path=/; Secure; HttpOnly"),
        "/account"
            if req
                .cookie()
                .unwrap_or_default()
                .contains("sid=s3cret-value") =>
        {
            Reply::ok("welcome back")
        }
        "/account" => Reply::new(401).body("log in first"),
        "/echo" => Reply::ok(req.body.clone()).header("x-method", req.method.as_str()),
        "/binary" => Reply::ok(vec![0u8, 159, 146, 150, 255])
            .header("content-type", "application/octet-stream"),
        "/gone" => Reply::new(404).body("no such page"),
        "/page" => Reply::ok(r#"<link rel=stylesheet href="/s.css"><img src="/gone">"#)
            .header("content-type", "text/html"),
        _ => Reply::ok("hello"),
    })
    .await
}

struct Fixture {
    api: ApiClient,
    server: ApiServer,
    engine: Engine,
    site: HttpsServer,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("https://shop.test:{}{path}", self.site.addr.port())
    }
}

async fn start(max_sessions: usize, store: bool, token: Option<&str>) -> Fixture {
    start_with(max_sessions, store, token, None, TenantTokens::new()).await
}

async fn start_with(
    max_sessions: usize,
    store: bool,
    token: Option<&str>,
    proxies: Option<mummer::proxies::ProxyRouter>,
    tenant_tokens: TenantTokens,
) -> Fixture {
    let site = site().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("site.pem");
    std::fs::write(&ca, &site.cert_pem).expect("write ca");
    let mut builder = Engine::builder()
        .max_sessions(max_sessions)
        .retry(RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        });
    if store {
        let stored = mummer::store::open_store(
            &format!("file:{}", dir.path().join("store").display()),
            "contract",
        )
        .expect("file store");
        builder = builder.store(stored);
    }
    if let Some(router) = proxies {
        builder = builder.proxies(router);
    }
    let engine = builder.start().expect("engine");
    let server = ApiServer::start(
        engine.clone(),
        ApiConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            token: token.map(str::to_owned),
            tenant_tokens,
            defaults: TransportOptions {
                resolve: vec![format!("shop.test:{}:127.0.0.1", site.addr.port())],
                cacert: Some(ca),
                ..Default::default()
            },
            snapshot_key: None,
            metrics: Some(metrics()),
            allow_file_paths: false,
            limits: Default::default(),
            destination: None,
        },
        None,
    )
    .await
    .expect("api");
    let mut api = ApiClient::new(format!("http://{}", server.local_addr()));
    api.token = token.map(str::to_owned);
    Fixture {
        api,
        server,
        engine,
        site,
        _dir: dir,
    }
}

async fn create(api: &ApiClient) -> String {
    let a = api.post("/v1/sessions", json!({})).await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    a.json["id"].as_str().expect("id").to_string()
}

/// `GET /v1/sessions?limit=` walks the sessions page by page through `Link` headers:
/// every session once, no page over its limit, and bad parameters are 400s naming
/// the parameter.
/// `POST /v1/sessions/{id}/load` loads a page through the session and reports each
/// subresource; bad limits are 400s naming the field.
#[tokio::test]
async fn a_page_is_loaded_through_the_api() {
    let f = start(3, false, None).await;
    let id = create(&f.api).await;
    let load = f
        .api
        .post(
            &format!("/v1/sessions/{id}/load"),
            json!({"url": f.url("/page"), "favicon": false}),
        )
        .await;
    assert_eq!(load.status, 200, "{}", load.json);
    assert_eq!(load.json["document"]["status"], 200);
    let subs = load.json["subresources"].as_array().expect("subresources");
    let summary: Vec<(String, String, Value)> = subs
        .iter()
        .map(|s| {
            (
                s["url"]
                    .as_str()
                    .expect("url")
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                s["outcome"].as_str().expect("outcome").to_string(),
                s["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("s.css".to_string(), "fetched".to_string(), json!(200)),
            ("gone".to_string(), "fetched".to_string(), json!(404)),
        ]
    );
    assert_eq!(load.json["complete"], true);
    let mut seen: Vec<String> = f
        .site
        .requests()
        .iter()
        .map(|r| r.path().to_string())
        .collect();
    // The stylesheet and the image leave together; the server may log either first.
    seen[1..].sort();
    assert_eq!(seen, ["/page", "/gone", "/s.css"], "what the site saw");
    for (body, field) in [
        (
            json!({"url": f.url("/page"), "timeout_ms": 0}),
            "timeout_ms",
        ),
        (
            json!({"url": f.url("/page"), "max_subresources": 100000}),
            "max_subresources",
        ),
        (
            json!({"url": f.url("/page"), "kinds": ["video"]}),
            "kinds[0]",
        ),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": f.url("/page"), "extra": 1}), "extra"),
    ] {
        let bad = f.api.post(&format!("/v1/sessions/{id}/load"), body).await;
        assert_eq!(bad.status, 400, "{field}: {}", bad.json);
        assert!(
            bad.json.to_string().contains(field),
            "{field}: {}",
            bad.json
        );
    }
    f.engine.shutdown().await;
}

#[tokio::test]
async fn sessions_are_listed_page_by_page() {
    let f = start(5000, false, None).await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..1500 {
        let id = f
            .engine
            .create_session(mummer::SessionConfig::profile("chrome-latest"))
            .await
            .expect("session");
        ids.insert(id);
    }
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut path = "/v1/sessions?limit=200".to_string();
    let mut pages = 0;
    loop {
        let page = f.api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.json);
        let listed = page.json.as_array().expect("an array");
        assert!(
            listed.len() <= 200,
            "a page within its limit: {}",
            listed.len()
        );
        for s in listed {
            *seen
                .entry(s["id"].as_str().expect("id").to_string())
                .or_default() += 1;
        }
        pages += 1;
        let Some(link) = page.headers.get("link") else {
            break;
        };
        let link = link.to_str().expect("ascii");
        path = link
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(url, _)| url.to_string())
            .expect("a next link");
        assert!(pages < 100, "the walk ends");
    }
    assert!(pages >= 8, "1500 sessions in pages of 200 or less: {pages}");
    assert_eq!(seen.len(), ids.len(), "every session listed");
    assert!(seen.values().all(|&n| n == 1), "and listed once");
    assert!(ids.iter().all(|id| seen.contains_key(id)));

    let unpaged = f.api.get("/v1/sessions").await;
    assert_eq!(unpaged.json.as_array().expect("all").len(), 1500);
    assert!(unpaged.headers.get("link").is_none());
    let past = f.api.get("/v1/sessions?cursor=1024").await;
    assert_eq!((past.status, past.json.clone()), (200, json!([])));
    assert!(past.headers.get("link").is_none(), "nothing after the end");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("cursor=-1", "cursor"),
        ("cursor=1025", "cursor"),
        ("limit=1000001", "limit"),
        ("page=2", "page"),
    ] {
        let bad = f.api.get(&format!("/v1/sessions?{query}")).await;
        assert_eq!(bad.status, 400, "{query}: {}", bad.json);
        assert!(
            bad.json.to_string().contains(field),
            "{query} names {field}: {}",
            bad.json
        );
    }
    f.engine.shutdown().await;
}

#[tokio::test]
async fn sessions_are_created_listed_read_touched_and_closed() {
    let f = start(3, false, None).await;
    let api = &f.api;
    assert_eq!(api.get("/healthz").await.json["status"], "ok");
    let doc = api.get("/openapi.json").await;
    assert_eq!(
        doc.json,
        support::api::openapi(),
        "the served document is docs/openapi.json"
    );

    let created = api
        .post(
            "/v1/sessions",
            json!({"profile": "firefox-latest", "identifier": "alice"}),
        )
        .await;
    assert_eq!(created.status, 201);
    let id = created.json["id"].as_str().expect("id").to_string();
    assert_eq!(
        created.headers["location"].to_str().expect("location"),
        format!("/v1/sessions/{id}")
    );
    assert_eq!(created.json["identifier"], "alice");
    assert!(created.json["profile"]
        .as_str()
        .expect("profile")
        .starts_with("firefox"));

    let listed = api.get("/v1/sessions").await;
    assert_eq!(listed.json.as_array().expect("list").len(), 1);
    assert_eq!(
        api.get(&format!("/v1/sessions/{id}")).await.json["id"],
        id.as_str()
    );
    // Reading a session never marks it used: polling it lets it go idle (and be
    // reaped); touch is the explicit call.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let idle = |v: &serde_json::Value| v["idle_secs"].as_f64().expect("idle_secs");
    let read = api.get(&format!("/v1/sessions/{id}")).await.json;
    assert!(idle(&read) >= 0.3, "a read does not touch: {read}");
    let listed = api.get("/v1/sessions").await.json;
    assert!(idle(&listed[0]) >= 0.3, "nor does a list: {listed}");
    assert_eq!(
        api.post(&format!("/v1/sessions/{id}/touch"), json!({}))
            .await
            .status,
        204
    );
    let read = api.get(&format!("/v1/sessions/{id}")).await.json;
    assert!(idle(&read) < 0.3, "touched: {read}");
    let put = api
        .call(
            "PUT",
            &format!("/v1/sessions/{id}/identifier"),
            Some(br#"{"identifier":"bob"}"#.to_vec()),
        )
        .await;
    assert_eq!(put.status, 204);
    assert_eq!(
        api.get(&format!("/v1/sessions/{id}")).await.json["identifier"],
        "bob"
    );
    let empty = api
        .call(
            "PUT",
            &format!("/v1/sessions/{id}/identifier"),
            Some(br#"{"identifier":" "}"#.to_vec()),
        )
        .await;
    assert_eq!(
        (empty.status, empty.problem_field()),
        (400, Some("identifier"))
    );

    assert_eq!(api.delete(&format!("/v1/sessions/{id}")).await.status, 204);
    let gone = api.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(gone.status, 404);
    // An id that is not UTF-8 names no session either (it was a text/plain 400).
    let garbled = api.get("/v1/sessions/%FF").await;
    assert_eq!(garbled.status, 404);
    assert_eq!(garbled.json["type"], "/problems/session-not-found");
    assert_eq!(gone.json["type"], "/problems/session-not-found");
    assert_eq!(api.delete(&format!("/v1/sessions/{id}")).await.status, 404);
    assert_eq!(
        api.post(&format!("/v1/sessions/{id}/touch"), json!({}))
            .await
            .status,
        404
    );
    f.engine.shutdown().await;
}

#[tokio::test]
async fn bad_bodies_name_the_field_and_the_limit_is_in_the_detail() {
    let f = start(2, false, None).await;
    let api = &f.api;
    let malformed = api.post_raw("/v1/sessions", b"{not json").await;
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.detail().contains("invalid JSON"),
        "{}",
        malformed.detail()
    );
    // A JSON array is not an object, though serde would read it as the fields in order.
    let array = api.post_raw("/v1/sessions", b"[null, null]").await;
    assert_eq!(array.status, 400, "{:?}", array.json);
    assert!(
        array.detail().contains("expected a JSON object"),
        "{}",
        array.detail()
    );
    // Each bad body is a 400 naming the field it got wrong.
    for (body, field) in [
        (json!({"timeout_ms": "soon"}), "timeout_ms"),
        (json!({"profil": "chrome-latest"}), "profil"),
        (json!({"profile": "netscape-4"}), "profile"),
        (json!({"resolve": ["nonsense"]}), "resolve[0]"),
        (json!({"http_version": "h9"}), "http_version"),
        (json!({"identifier": "  "}), "identifier"),
        (json!({"identifier": " \t\u{1}\u{7f} "}), "identifier"),
        (json!({"timeout_ms": 2.5}), "timeout_ms"),
        (json!({"timeout_ms": -1.0}), "timeout_ms"),
    ] {
        let answer = api.post("/v1/sessions", body).await;
        assert_eq!((answer.status, answer.problem_field()), (400, Some(field)));
    }
    assert_eq!(
        f.engine.session_count().await,
        0,
        "no failed create left a session"
    );
    // What docs/openapi.json calls valid is taken: an integer written as a double (JSON
    // Schema's "integer" is any whole number), an identifier of non-ASCII characters.
    let whole = api
        .post(
            "/v1/sessions",
            json!({"timeout_ms": 2000.0, "identifier": "\u{3000}"}),
        )
        .await;
    assert_eq!(whole.status, 201, "{:?}", whole.json);
    let id = whole.json["id"].as_str().expect("id").to_string();
    assert_eq!(api.delete(&format!("/v1/sessions/{id}")).await.status, 204);

    create(api).await;
    create(api).await;
    let limit = api.post("/v1/sessions", json!({})).await;
    assert_eq!(limit.status, 429);
    assert!(
        limit
            .detail()
            .contains("maximum sessions limit reached (2)"),
        "{}",
        limit.detail()
    );
    let nowhere = api.get("/v2/nothing").await;
    assert_eq!(nowhere.status, 404);
    let wrong_method = api.call("PATCH", "/v1/sessions", None).await;
    assert_eq!(wrong_method.status, 405);
    f.engine.shutdown().await;
}

/// Issue 16 defect 3: the API does not read server files named by callers. A path as
/// the profile or `cacert` is refused before anything touches the file, with the same
/// answer whether it exists or not; inline profile JSON is taken and validated.
#[tokio::test]
async fn callers_cannot_name_server_files_and_inline_profiles_are_validated() {
    let f = start(2, false, None).await;
    let api = &f.api;
    let started = std::time::Instant::now();
    let mut details = Vec::new();
    for path in ["/dev/zero", "/etc/hostname", "/nonexistent/profile.json"] {
        let answer = api.post("/v1/sessions", json!({ "profile": path })).await;
        assert_eq!(
            (answer.status, answer.problem_field()),
            (400, Some("profile")),
            "{path}"
        );
        assert!(
            answer.detail().contains("--allow-file-paths"),
            "{}",
            answer.detail()
        );
        details.push(answer.detail().replace(path, "PATH"));
        let ca = api.post("/v1/sessions", json!({ "cacert": path })).await;
        assert_eq!(
            (ca.status, ca.problem_field()),
            (400, Some("cacert")),
            "{path}"
        );
        details.push(ca.detail().replace(path, "PATH"));
        let checkout = api
            .post(
                "/v1/store/sessions/someone/checkout",
                json!({ "cacert": path }),
            )
            .await;
        assert_eq!(checkout.status, 400, "{path}: {:?}", checkout.json);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "a refused path was read"
    );
    // Existing and missing files get the same answer.
    assert_eq!(details[0], details[2]);
    assert_eq!(details[0], details[4]);
    assert_eq!(details[1], details[3]);
    assert_eq!(details[1], details[5]);

    let mut inline =
        serde_json::to_value(mummer::Profile::named("firefox-latest").expect("built-in"))
            .expect("profile JSON");
    let good = api
        .post("/v1/sessions", json!({ "profile": inline.clone() }))
        .await;
    assert_eq!(good.status, 201, "{:?}", good.json);
    inline["http2"]["settings"] = json!([["MAX_FRAME_SIZE", 1]]);
    let bad = api.post("/v1/sessions", json!({ "profile": inline })).await;
    assert_eq!(
        (bad.status, bad.problem_field()),
        (400, Some("profile")),
        "{:?}",
        bad.json
    );
    assert!(bad.detail().contains("MAX_FRAME_SIZE"), "{}", bad.detail());
    let odd = api.post("/v1/sessions", json!({ "profile": 7 })).await;
    assert_eq!((odd.status, odd.problem_field()), (400, Some("profile")));
    assert_eq!(
        f.engine.session_count().await,
        1,
        "only the good profile made a session"
    );
    f.engine.shutdown().await;
}

#[tokio::test]
async fn requests_go_through_the_session_and_secrets_stay_redacted() {
    let f = start(4, false, None).await;
    let api = &f.api;
    let id = create(api).await;
    let path = format!("/v1/sessions/{id}/requests");
    let login = api
        .post(&path, json!({"url": f.url("/login"), "typed": true}))
        .await;
    assert_eq!(login.status, 200, "{:?}", login.json);
    assert_eq!(login.json["status"], 200);
    assert_eq!(login.json["body"], "welcome back");
    assert_eq!(login.json["redirects"][0]["status"], 302);
    let text = login.json.to_string();
    assert!(
        !text.contains("s3cret-value"),
        "a cookie value leaked: {text}"
    );
    let sent: Vec<(String, String)> =
        serde_json::from_value(login.json["request_headers"].clone()).expect("pairs");
    let cookie = sent
        .iter()
        .find(|(n, _)| n == "cookie")
        .expect("cookie sent");
    assert_eq!(cookie.1, "[redacted]");
    assert!(sent
        .iter()
        .any(|(n, v)| n == "user-agent" && v.contains("Chrome/")));

    // Header order as given, body and method passed through.
    let echo = api
        .post(
            &path,
            json!({"method": "put", "url": f.url("/echo"), "kind": "fetch",
                   "headers": [["x-b", "2"], ["x-a", "1"]], "body": "payload"}),
        )
        .await;
    assert_eq!(echo.json["body"], "payload");
    let sent: Vec<(String, String)> =
        serde_json::from_value(echo.json["request_headers"].clone()).expect("pairs");
    let pos = |n: &str| sent.iter().position(|(h, _)| h == n).expect("header");
    assert!(pos("x-b") < pos("x-a"), "caller order kept: {sent:?}");
    let seen = f.site.requests();
    let put = seen.iter().find(|r| r.path() == "/echo").expect("seen");
    assert_eq!(put.method, http::Method::PUT);

    let binary = api.post(&path, json!({"url": f.url("/binary")})).await;
    let b64 = binary.json["body_base64"]
        .as_str()
        .expect("binary as base64");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("b64"),
        vec![0u8, 159, 146, 150, 255]
    );
    let b64_body = api
        .post(&path, json!({"method": "POST", "url": f.url("/echo"), "body_base64": "AAEC", "response_body": "base64"}))
        .await;
    assert_eq!(b64_body.json["body_base64"], "AAEC");

    for (body, field) in [
        (
            json!({"url": f.url("/"), "body": "a", "body_base64": "AA=="}),
            "body_base64",
        ),
        (
            json!({"url": f.url("/"), "body_base64": "***"}),
            "body_base64",
        ),
        (
            json!({"url": f.url("/"), "headers": [["bad name", "x"]]}),
            "headers[0]",
        ),
        (
            json!({"url": f.url("/"), "headers": {" x-padded": "1"}}),
            "headers[0]",
        ),
        (
            json!({"url": f.url("/"), "headers": [["x-ctl", "a\u{1}b"]]}),
            "headers[0]",
        ),
        (json!({"url": f.url("/"), "method": "GE T"}), "method"),
        (json!({"url": f.url("/"), "kind": "telepathy"}), "kind"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": f.url("/"), "headers": {"x": 1}}), "headers"),
    ] {
        let bad = api.post(&path, body.clone()).await;
        assert_eq!(
            (bad.status, bad.problem_field()),
            (400, Some(field)),
            "{body}: {:?}",
            bad.json
        );
    }
    let no_url = api.post(&path, json!({})).await;
    assert_eq!((no_url.status, no_url.problem_field()), (400, Some("url")));

    // The target failing is a 502 naming it; a target's 404 is a 200 carrying it.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let down = api
        .post(
            &path,
            json!({"url": format!("https://127.0.0.1:{closed_port}/")}),
        )
        .await;
    assert_eq!(down.status, 502, "{:?}", down.json);
    assert!(down.detail().contains("127.0.0.1"), "{}", down.detail());
    let missing = api.post(&path, json!({"url": f.url("/gone")})).await;
    assert_eq!(
        (missing.status, missing.json["status"].as_u64()),
        (200, Some(404))
    );
    let dead = api.get("/v1/dead-letters?drain=true").await;
    assert!(
        dead.json
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["status"] == 404),
        "{:?}",
        dead.json
    );
    assert_eq!(api.get("/v1/dead-letters").await.json, json!([]), "drained");
    assert_eq!(api.get("/v1/dead-letters?drain=maybe").await.status, 400);
    assert_eq!(
        api.post("/v1/sessions/none/requests", json!({"url": f.url("/")}))
            .await
            .status,
        404
    );

    let metrics = api.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.bytes);
    assert!(text.contains("mummer_sessions_live"), "{text}");
    assert!(text.contains("requests_total"), "{text}");
    f.engine.shutdown().await;
}

#[tokio::test]
async fn cookies_cache_and_snapshots_round_trip() {
    let f = start(4, false, None).await;
    let api = &f.api;
    let id = create(api).await;
    let base = format!("/v1/sessions/{id}");
    api.post(&format!("{base}/requests"), json!({"url": f.url("/login")}))
        .await;
    let cookies = api.get(&format!("{base}/cookies")).await;
    assert_eq!(cookies.json[0]["name"], "sid");
    assert_eq!(
        cookies.json[0]["value"], "s3cret-value",
        "the cookie endpoint hands values out"
    );
    let netscape = api.get(&format!("{base}/cookies?format=netscape")).await;
    let netscape_text = String::from_utf8_lossy(&netscape.bytes).into_owned();
    assert!(netscape_text.contains("s3cret-value"));
    assert_eq!(
        api.get(&format!("{base}/cookies?format=yaml")).await.status,
        400
    );
    assert_eq!(
        api.get(&format!("{base}/cookies?url={}", f.url("/")))
            .await
            .json
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let snapshot = api.get(&format!("{base}/snapshot")).await;
    assert_eq!(snapshot.status, 200);
    assert_eq!(
        api.post_raw("/v1/sessions/import", &snapshot.bytes)
            .await
            .status,
        409
    );

    assert_eq!(api.delete(&format!("{base}/cookies")).await.status, 204);
    assert_eq!(api.get(&format!("{base}/cookies")).await.json, json!([]));
    let refused = api
        .post_raw(
            &format!("{base}/cookies?format=netscape"),
            b"only one field\n",
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        api.get(&format!("{base}/cookies")).await.json,
        json!([]),
        "nothing half-imported"
    );
    let imported = api
        .post_raw(
            &format!("{base}/cookies?format=netscape"),
            netscape_text.as_bytes(),
        )
        .await;
    assert_eq!(imported.json["imported"], 1);
    assert_eq!(imported.json["expired"], 0);
    // A record that expired before it arrived is counted apart, not as imported.
    let stale = api
        .post(
            &format!("{base}/cookies"),
            json!([{"name": "old", "value": "1", "domain": "127.0.0.1", "path": "/",
                    "host_only": false, "expires": 1_000_000, "secure": false,
                    "http_only": false}]),
        )
        .await;
    assert_eq!(stale.status, 200, "{:?}", stale.json);
    assert_eq!(stale.json, json!({"imported": 0, "expired": 1}));
    let account = api
        .post(
            &format!("{base}/requests"),
            json!({"url": f.url("/account")}),
        )
        .await;
    assert_eq!(account.json["body"], "welcome back");
    assert_eq!(api.delete(&format!("{base}/cache")).await.status, 204);

    // Close, import the snapshot: the same session is back with its cookie.
    assert_eq!(api.delete(&base).await.status, 204);
    let garbage = api
        .post_raw("/v1/sessions/import", b"{\"version\": 99}")
        .await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.json["type"], "/problems/invalid-snapshot");
    let back = api.post_raw("/v1/sessions/import", &snapshot.bytes).await;
    assert_eq!(back.status, 201, "{:?}", back.json);
    assert_eq!(back.json["id"], id.as_str());
    let account = api
        .post(
            &format!("{base}/requests"),
            json!({"url": f.url("/account")}),
        )
        .await;
    assert_eq!(account.json["body"], "welcome back");
    f.engine.shutdown().await;
}

#[tokio::test]
async fn stored_sessions_are_saved_listed_and_checked_out() {
    let f = start(4, true, None).await;
    let api = &f.api;
    let id = create(api).await;
    let base = format!("/v1/sessions/{id}");
    api.post(&format!("{base}/requests"), json!({"url": f.url("/login")}))
        .await;
    let saved = api.post(&format!("{base}/save"), json!({})).await;
    assert_eq!(saved.status, 200, "{:?}", saved.json);
    assert!(saved.json["version"].as_u64().expect("version") >= 1);
    assert_eq!(api.get("/v1/store/sessions").await.json, json!([id]));
    let held = api
        .post(&format!("/v1/store/sessions/{id}/checkout"), json!({}))
        .await;
    assert_eq!(held.status, 409, "live here, so leased: {:?}", held.json);
    assert_eq!(api.delete(&base).await.status, 204);
    let back = api
        .post(&format!("/v1/store/sessions/{id}/checkout"), json!({}))
        .await;
    assert_eq!(back.status, 201, "{:?}", back.json);
    let account = api
        .post(
            &format!("{base}/requests"),
            json!({"url": f.url("/account")}),
        )
        .await;
    assert_eq!(account.json["body"], "welcome back");
    let unknown = api
        .post(
            "/v1/store/sessions/00000000-0000-4000-8000-000000000000/checkout",
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.json);
    let bad = api
        .post(
            &format!("/v1/store/sessions/{id}/checkout"),
            json!({"resolve": ["x"]}),
        )
        .await;
    assert_eq!((bad.status, bad.problem_field()), (400, Some("resolve[0]")));
    f.engine.shutdown().await;

    let g = start(2, false, None).await;
    assert_eq!(
        g.api.get("/v1/store/sessions").await.status,
        400,
        "no store configured"
    );
    let id = create(&g.api).await;
    assert_eq!(
        g.api
            .post(&format!("/v1/sessions/{id}/save"), json!({}))
            .await
            .status,
        400
    );
    g.engine.shutdown().await;
}

#[tokio::test]
async fn events_stream_and_shutdown_ends_them() {
    let f = start(4, false, None).await;
    let mut stream = f
        .api
        .client
        .get(format!("{}/v1/events", f.api.base))
        .send()
        .await
        .expect("events");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let id = create(&f.api).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(&id) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("an event within 10 s")
            .expect("stream")
            .expect("not ended");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: session_created"), "{seen}");
    let data = seen
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let event: Value = serde_json::from_str(data).expect("json data");
    assert_eq!(event["event"], "session_created");

    let stop = f.api.post("/v1/shutdown", json!({})).await;
    assert_eq!(stop.status, 202);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream ends on shutdown");
    tokio::time::timeout(Duration::from_secs(10), f.server.stopped())
        .await
        .expect("server stopped");
    f.engine.shutdown().await;
    f.engine.shutdown().await;
}

#[tokio::test]
async fn a_token_guards_every_route_but_health() {
    let token = "0123456789abcdef-token";
    let f = start(2, false, Some(token)).await;
    let mut anonymous = ApiClient::new(f.api.base.clone());
    anonymous.token = None;
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    let refused = anonymous.get("/v1/sessions").await;
    assert_eq!(refused.status, 401);
    anonymous.token = Some("0123456789abcdef-wrong".into());
    assert_eq!(anonymous.post("/v1/sessions", json!({})).await.status, 401);
    assert_eq!(f.engine.session_count().await, 0);
    assert_eq!(f.api.get("/v1/sessions").await.status, 200);
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    let lower = reqwest::Client::new()
        .get(format!("{}/v1/sessions", f.api.base))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(lower.status().as_u16(), 200);

    let exposed =
        mummer::api::check_exposure("API", "192.0.2.1:7878".parse().expect("addr"), None, false)
            .expect_err("refused");
    assert!(exposed.to_string().contains("--token"), "{exposed}");
    assert!(mummer::api::check_exposure(
        "API",
        "192.0.2.1:7878".parse().expect("addr"),
        Some("short"),
        false
    )
    .is_err());
    assert!(mummer::api::check_exposure(
        "API",
        "192.0.2.1:7878".parse().expect("addr"),
        Some(token),
        false
    )
    .is_ok());
    // Tenants' tokens guard a reachable address too.
    assert!(mummer::api::check_exposure(
        "API",
        "192.0.2.1:7878".parse().expect("addr"),
        None,
        true
    )
    .is_ok());
    f.engine.shutdown().await;
}

#[tokio::test]
async fn proxy_pools_are_read_changed_and_sessions_rotated_through_the_api() {
    let file = mummer::proxies::ProxiesFile::parse(
        r#"
default_pool = "dc"
[pools.dc]
proxies = ["http://user:pw-hidden@127.0.0.1:9", "http://127.0.0.1:10"]
[pools.other]
proxies = ["http://127.0.0.1:11"]
"#,
        false,
    )
    .expect("pools");
    let router = mummer::proxies::ProxyRouter::from_file(&file).expect("router");
    let f = start_with(8, false, None, Some(router), TenantTokens::new()).await;
    let api = &f.api;
    let created = api
        .post(
            "/v1/sessions",
            json!({"tenant": "acme", "target": "shop.test"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let id = created.json["id"].as_str().expect("id").to_string();
    let health = api.get("/v1/proxies").await;
    assert_eq!(health.status, 200);
    assert!(!String::from_utf8_lossy(&health.bytes).contains("pw-hidden"));
    let on = |h: &Value, pool: &str| -> u64 {
        h[pool]
            .as_array()
            .expect("pool")
            .iter()
            .map(|p| p["sessions"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(on(&health.json, "dc"), 1);

    let rotated = api
        .post(
            &format!("/v1/sessions/{id}/rotate"),
            json!({"reason": "contract test"}),
        )
        .await;
    assert_eq!(rotated.status, 201, "{:?}", rotated.json);
    assert_ne!(rotated.json["id"], id.as_str());
    // The successor stays in the tenant (issue 16 defect 12 a: it went to `default`).
    assert_eq!(rotated.json["tenant"], "acme", "{:?}", rotated.json);
    assert_eq!(api.get(&format!("/v1/sessions/{id}")).await.status, 404);
    assert_eq!(
        api.post(&format!("/v1/sessions/{id}/rotate"), json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        on(&api.get("/v1/proxies").await.json, "dc"),
        1,
        "the old slot was released"
    );

    let routes = api
        .call(
            "PUT",
            "/v1/proxies/routes",
            Some(
                json!({"routes": [{"tenant": "acme", "pool": "other"}]})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(routes.status, 204, "{:?}", routes.json);
    api.post("/v1/sessions", json!({"tenant": "acme"})).await;
    assert_eq!(on(&api.get("/v1/proxies").await.json, "other"), 1);
    let direct = api.post("/v1/sessions", json!({"tenant": "globex"})).await;
    let direct_id = direct.json["id"].as_str().expect("id").to_string();
    let unrouted = api
        .post(&format!("/v1/sessions/{direct_id}/rotate"), json!({}))
        .await;
    assert_eq!(
        (unrouted.status, unrouted.json["type"].as_str()),
        (409, Some("/problems/conflict")),
        "not routed to a pool: {:?}",
        unrouted.json
    );
    let ghost = api
        .call(
            "PUT",
            "/v1/proxies/routes",
            Some(
                json!({"routes": [{"domain": "a.test", "pool": "ghost"}]})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!((ghost.status, ghost.problem_field()), (409, Some("routes")));
    assert!(ghost.detail().contains("ghost"));
    f.engine.shutdown().await;

    let plain = start(2, false, None).await;
    assert_eq!(plain.api.get("/v1/proxies").await.status, 404);
    plain.engine.shutdown().await;
}

#[test]
fn the_openapi_document_is_valid_and_covers_every_route() {
    let doc = support::api::openapi();
    let parsed =
        oas3::from_json(doc.to_string()).expect("docs/openapi.json is an OpenAPI 3.1 document");
    assert!(parsed.openapi.starts_with("3.1"));
    // 3.1 schemas are JSON Schema 2020-12: `nullable` is gone (a null is `"type": [T,
    // "null"]`), and a leftover one would be silently ignored by every 3.1 tool.
    assert!(
        !doc.to_string().contains("\"nullable\""),
        "docs/openapi.json still says `nullable` (3.0 only)"
    );

    // Every $ref resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap_or_default().to_string());
                    }
                    refs(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .expect("local schema ref");
        assert!(
            !doc["components"]["schemas"][name].is_null(),
            "dangling {r}"
        );
    }

    // The router's table (src/api/routes.rs) and the document list the same paths and
    // methods.
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/routes.rs"))
        .expect("routes.rs");
    let mut routed = std::collections::BTreeSet::new();
    let mut rest = source.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + 7..];
        let start = rest.find('"').expect("path literal") + 1;
        let end = start + rest[start..].find('"').expect("end");
        let path = rest[start..end].to_string();
        let close = rest
            .find("\n        .route(")
            .or_else(|| rest.find(".fallback("))
            .unwrap_or(rest.len());
        let handlers = &rest[end..close];
        for (m, name) in [
            ("get", "get("),
            ("post", "post("),
            ("put", "put("),
            ("delete", "delete("),
        ] {
            let called = handlers.match_indices(name).any(|(i, _)| {
                i == 0
                    || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && handlers.as_bytes()[i - 1] != b'_'
            });
            if called {
                routed.insert(format!("{m} {path}"));
            }
        }
    }
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in ["get", "post", "put", "delete", "patch"] {
            if !item[m].is_null() {
                documented.insert(format!("{m} {path}"));
                assert!(
                    item[m]["operationId"].is_string(),
                    "{m} {path} has no operationId"
                );
            }
        }
    }
    assert_eq!(routed, documented, "router and OpenAPI document differ");
    assert!(routed.len() >= 20, "{routed:?}");
}

/// The `proxy` pattern of `docs/openapi.json` and `Proxy::parse` (src/proxy_syntax.rs)
/// draw the same line: on a table of typos and tricks, on strings generated from the
/// pattern (all must parse), and on those strings with one character changed (each
/// side must agree). Two things a pattern cannot say are left out: escapes of non-ASCII
/// UTF-8 in credentials are accepted beyond the pattern (the mutations never write a
/// `%`), and a host label starting with `xn--` must also be valid punycode (such
/// strings are skipped).
#[test]
fn the_documented_proxy_pattern_is_what_the_server_accepts() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let doc = support::api::openapi();
    let pattern = doc["components"]["schemas"]["CreateSession"]["properties"]["proxy"]["pattern"]
        .as_str()
        .expect("CreateSession.proxy has a pattern")
        .to_string();
    assert_eq!(
        doc["components"]["schemas"]["TransportOptions"]["properties"]["proxy"]["pattern"].as_str(),
        Some(pattern.as_str()),
        "one proxy pattern"
    );
    let documented =
        regex::Regex::new(&pattern).expect("an ECMA-262 pattern the regex crate reads");
    let accepted = |url: &str| mummer::net::Proxy::parse(url).is_ok();
    for (url, ok) in [
        ("http://proxy.example:3128", true),
        ("HTTP://Proxy.Example", true),
        ("socks5h://user:p%40ss@10.0.0.1:1080/", true),
        ("https://[2001:db8::1]:8443", true),
        ("http://[1:2:3:4:5:6:7::]", true),
        ("http://[::]", true),
        ("http://my_proxy:0", true),
        ("http://u:@h", true),
        ("http://250.250.250.200*", false),
        ("http://127.1:8080", false),
        ("http://010.0.0.1", false),
        ("http://0x7f.0.0.1", false),
        ("http://1.2.3.4a", false),
        ("http://h:", false),
        ("http://h:080", false),
        ("http://h:65536", false),
        ("http://h/path", false),
        ("http://h?q", false),
        ("http://:pw@h", false),
        ("http://@h", false),
        ("http://u:p w@h", false),
        ("http://[::ffff:1.2.3.4]", false),
        ("http://[fe80::1%25eth0]", false),
        ("http://[::1", false),
        ("http://-", false),
        ("http://a..b", false),
        ("ftp://h", false),
        ("htTp:s://250.250.250.250:65530", false),
    ] {
        assert_eq!(documented.is_match(url), ok, "pattern on {url}");
        assert_eq!(accepted(url), ok, "Proxy::parse on {url}");
    }

    let body = pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .expect("an anchored pattern");
    let generated =
        proptest::string::string_regex(body).expect("a pattern proptest generates from");
    let edits = prop::sample::select(vec![
        '*', '.', ':', '@', '/', '[', ']', '0', '9', 'a', '-', '_', ' ', '?', '#', '!',
    ]);
    // A fixed seed: the same cases every run, so the test command cannot flake; a
    // disagreement found by changing the seed goes into the table above.
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 3000,
            failure_persistence: None,
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    runner
        .run(
            &(generated, any::<prop::sample::Index>(), edits, 0..3u8),
            |(url, at, c, how)| {
                let punycode = |u: &str| u.to_ascii_lowercase().contains("xn--");
                if punycode(&url) {
                    return Ok(());
                }
                prop_assert!(accepted(&url), "generated from the pattern, refused: {url}");
                let mut chars: Vec<char> = url.chars().collect();
                let i = at.index(chars.len() + 1);
                match how {
                    0 => chars.insert(i, c),
                    1 if i < chars.len() => {
                        chars.remove(i);
                    }
                    _ if i < chars.len() => chars[i] = c,
                    _ => chars.push(c),
                }
                let changed: String = chars.into_iter().collect();
                if punycode(&changed) {
                    return Ok(());
                }
                prop_assert_eq!(
                    documented.is_match(&changed),
                    accepted(&changed),
                    "the pattern and the server disagree on {}",
                    changed
                );
                Ok(())
            },
        )
        .expect("pattern and server agree");
}

/// A tenant's token sees, creates, closes, saves and checks out only its tenant's
/// sessions; another tenant's session is a plain 404; routes that span tenants are 403;
/// the operator's token sees everything.
#[tokio::test]
async fn tenant_tokens_confine_each_tenant_to_its_own_sessions() {
    let operator = "operator-token-0123456789";
    let mut tenants = TenantTokens::new();
    tenants
        .insert("acme", "acme-token-0123456789")
        .expect("acme");
    tenants
        .insert("bolt", "bolt-token-0123456789")
        .expect("bolt");
    let f = start_with(8, true, Some(operator), None, tenants).await;
    let as_token = |t: &str| {
        let mut c = ApiClient::new(f.api.base.clone());
        c.token = Some(t.to_owned());
        c
    };
    let (acme, bolt) = (
        as_token("acme-token-0123456789"),
        as_token("bolt-token-0123456789"),
    );

    // Each creates in its own tenant, whatever the body says; naming another is 403.
    let a = acme.post("/v1/sessions", json!({})).await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    assert_eq!(a.json["tenant"], "acme");
    let a_id = a.json["id"].as_str().expect("id").to_owned();
    let b = bolt.post("/v1/sessions", json!({ "tenant": "bolt" })).await;
    assert_eq!(b.json["tenant"], "bolt");
    let b_id = b.json["id"].as_str().expect("id").to_owned();
    let sneaky = bolt.post("/v1/sessions", json!({ "tenant": "acme" })).await;
    assert_eq!(sneaky.status, 403, "{:?}", sneaky.json);
    assert!(sneaky.detail().contains("cannot act for tenant acme"));

    // Logged in as acme: a cookie only acme's session holds.
    let login = acme
        .post(
            &format!("/v1/sessions/{a_id}/requests"),
            json!({ "url": f.url("/login") }),
        )
        .await;
    assert_eq!(login.status, 200, "{:?}", login.json);

    // Listing: each sees its own; the operator sees both.
    let ids = |answer: &support::api::Answer| -> Vec<String> {
        answer
            .json
            .as_array()
            .expect("list")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids(&acme.get("/v1/sessions").await), vec![a_id.clone()]);
    assert_eq!(ids(&bolt.get("/v1/sessions").await), vec![b_id.clone()]);
    let mut all = ids(&f.api.get("/v1/sessions").await);
    all.sort();
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();
    assert_eq!(all, both);

    // Every route that names a session: bolt gets exactly what a missing id gets.
    let missing = bolt.get("/v1/sessions/no-such-session").await;
    assert_eq!(missing.status, 404);
    for (method, path, body) in [
        ("GET", format!("/v1/sessions/{a_id}"), None),
        ("GET", format!("/v1/sessions/{a_id}/cookies"), None),
        ("GET", format!("/v1/sessions/{a_id}/snapshot"), None),
        (
            "POST",
            format!("/v1/sessions/{a_id}/requests"),
            Some(json!({ "url": f.url("/") })),
        ),
        (
            "POST",
            format!("/v1/sessions/{a_id}/cookies"),
            Some(json!([])),
        ),
        (
            "POST",
            format!("/v1/sessions/{a_id}/touch"),
            Some(json!({})),
        ),
        ("POST", format!("/v1/sessions/{a_id}/save"), Some(json!({}))),
        (
            "PUT",
            format!("/v1/sessions/{a_id}/identifier"),
            Some(json!({ "identifier": "x" })),
        ),
        ("DELETE", format!("/v1/sessions/{a_id}/cookies"), None),
        ("DELETE", format!("/v1/sessions/{a_id}/cache"), None),
        ("DELETE", format!("/v1/sessions/{a_id}"), None),
    ] {
        let body = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let answer = bolt.call(method, &path, body).await;
        assert_eq!(answer.status, 404, "{method} {path}: {:?}", answer.json);
        assert_eq!(
            answer.json["title"], missing.json["title"],
            "{method} {path}"
        );
        assert!(
            !answer.detail().contains("acme"),
            "{method} {path} names the tenant"
        );
    }
    // ... and nothing of acme's changed: still live, still logged in.
    let cookies = acme.get(&format!("/v1/sessions/{a_id}/cookies")).await;
    assert_eq!(cookies.status, 200);
    assert!(
        cookies.json.to_string().contains("sid"),
        "{:?}",
        cookies.json
    );

    // Routes that span tenants take the operator's token.
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/v1/events"),
        ("GET", "/v1/dead-letters"),
        ("GET", "/v1/proxy"),
        ("POST", "/v1/shutdown"),
    ] {
        let body = (method == "POST").then(|| b"{}".to_vec());
        let answer = acme.call(method, path, body).await;
        assert_eq!(answer.status, 403, "{method} {path}: {:?}", answer.json);
    }
    assert_eq!(f.api.get("/v1/dead-letters").await.status, 200);

    // Stores: saved under acme's key; bolt can neither list nor check it out.
    assert_eq!(
        acme.post(&format!("/v1/sessions/{a_id}/save"), json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        acme.delete(&format!("/v1/sessions/{a_id}")).await.status,
        204
    );
    assert_eq!(acme.get("/v1/store/sessions").await.json, json!([a_id]));
    assert_eq!(bolt.get("/v1/store/sessions").await.json, json!([]));
    assert_eq!(
        f.api.get("/v1/store/sessions").await.json,
        json!([]),
        "the default tenant has none"
    );
    assert_eq!(
        f.api.get("/v1/store/sessions?tenant=acme").await.json,
        json!([a_id])
    );
    assert_eq!(bolt.get("/v1/store/sessions?tenant=acme").await.status, 403);
    let stolen = bolt
        .post(&format!("/v1/store/sessions/{a_id}/checkout"), json!({}))
        .await;
    assert_eq!(stolen.status, 404, "{:?}", stolen.json);
    let back = acme
        .post(&format!("/v1/store/sessions/{a_id}/checkout"), json!({}))
        .await;
    assert_eq!(back.status, 201, "{:?}", back.json);
    assert_eq!(back.json["tenant"], "acme");
    let cookies = acme.get(&format!("/v1/sessions/{a_id}/cookies")).await;
    assert!(
        cookies.json.to_string().contains("sid"),
        "restored with its login"
    );

    // A snapshot of acme's session cannot be imported by bolt as its own.
    let snapshot = acme.get(&format!("/v1/sessions/{a_id}/snapshot")).await;
    assert_eq!(snapshot.status, 200);
    assert_eq!(
        acme.delete(&format!("/v1/sessions/{a_id}")).await.status,
        204
    );
    let raw = serde_json::to_vec(&snapshot.json).expect("bytes");
    let imported = bolt.post_raw("/v1/sessions/import", &raw).await;
    assert_eq!(imported.status, 403, "{:?}", imported.json);
    let imported = acme.post_raw("/v1/sessions/import", &raw).await;
    assert_eq!(imported.status, 201, "{:?}", imported.json);
    f.engine.shutdown().await;
}
