//! The forward proxy of `mummer serve`, with real clients: curl through `--mitm` seen
//! by the fingerprint inspector, reqwest sending absolute-form requests, raw CONNECTs,
//! and the refusals (no session, unknown session, CONNECT without a CA, no token).

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mummer::api::ca::LocalCa;
use mummer::api::proxy::{ForwardProxy, ProxyConfig};
use mummer::inspect::Inspector;
use mummer::RetryPolicy;
use mummer::{Engine, SessionConfig};
use support::https::{HttpsServer, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn engine() -> Engine {
    Engine::builder()
        .retry(RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        })
        .start()
        .expect("engine")
}

async fn proxy(engine: &Engine, mitm: Option<Arc<LocalCa>>, token: Option<&str>) -> ForwardProxy {
    ForwardProxy::start(
        engine.clone(),
        ProxyConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            mitm,
            default_session: None,
            token: token.map(str::to_owned),
            tenant_tokens: mummer::api::TenantTokens::new(),
            limits: mummer::api::ServerLimits {
                handshake_timeout: std::time::Duration::from_secs(1),
                ..Default::default()
            },
        },
    )
    .await
    .expect("proxy")
}

fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--noproxy",
            "",
        ])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .expect("curl is installed (scripts/setup.sh)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn report(inspector: &mut Inspector) -> mummer::inspect::ConnectionReport {
    tokio::time::timeout(Duration::from_secs(20), inspector.next_report())
        .await
        .expect("a report within 20 s")
        .expect("inspector running")
}

fn user_agent(r: &mummer::inspect::ConnectionReport) -> String {
    let headers = match &r.http2 {
        Some(h2) => h2.requests[0].headers.clone(),
        None => r.http1[0].clone(),
    };
    headers
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_mitm_proxy_wears_the_session_fingerprint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut inspector = Inspector::start(
        "127.0.0.1:0".parse().expect("addr"),
        &["inspect.test".into()],
    )
    .await
    .expect("inspector");
    let port = inspector.local_addr().port();
    let inspector_ca = dir.path().join("inspector.pem");
    std::fs::write(&inspector_ca, inspector.cert_pem()).expect("write");
    let url = format!("https://inspect.test:{port}/");
    let resolve = format!("inspect.test:{port}:127.0.0.1");

    // curl on its own: its own fingerprint.
    let (code, _, err) = curl(&[
        "--cacert",
        inspector_ca.to_str().expect("path"),
        "--resolve",
        &resolve,
        &url,
    ]);
    assert_eq!(code, 0, "{err}");
    let plain_curl = report(&mut inspector).await;

    // The session on its own.
    let engine = engine();
    let transport = {
        let (ca, resolve) = (inspector_ca.clone(), resolve.clone());
        move |b: mummer::ClientBuilder| b.ca_file(ca).resolve(resolve.parse().expect("resolve"))
    };
    let direct_id = engine
        .create_session(SessionConfig::profile("chrome-latest").transport(transport.clone()))
        .await
        .expect("session");
    let direct_session = engine.session(&direct_id).await.expect("live");
    direct_session.get(&url).send().await.expect("direct");
    // The inspector reports a connection when it ends.
    direct_session.session().client().close_connections();
    let direct = report(&mut inspector).await;

    // curl through the proxy, with another session of the same profile.
    let id = engine
        .create_session(SessionConfig::profile("chrome-latest").transport(transport))
        .await
        .expect("session");
    let ca = Arc::new(LocalCa::generate().expect("ca"));
    let ca_file = dir.path().join("proxy-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write");
    let proxy = proxy(&engine, Some(ca), None).await;
    let (code, body, err) = curl(&[
        "--proxy",
        &format!("http://{}", proxy.local_addr()),
        "--cacert",
        ca_file.to_str().expect("path"),
        "--proxy-header",
        &format!("X-Mummer-Session: {id}"),
        &url,
    ]);
    assert_eq!(code, 0, "curl through the proxy: {err}");
    assert!(!body.is_empty(), "the inspector's answer came back");
    let proxied_session = engine.session(&id).await.expect("live");
    proxied_session.session().client().close_connections();
    let proxied = report(&mut inspector).await;

    assert_ne!(
        plain_curl.ja4, direct.ja4,
        "curl and Chrome differ to begin with"
    );
    assert_eq!(
        proxied.ja4, direct.ja4,
        "the inspector saw the session's TLS, not curl's"
    );
    assert_eq!(proxied.ja3n_hash, direct.ja3n_hash);
    assert_eq!(
        proxied.http2.as_ref().map(|h| h.akamai.clone()),
        direct.http2.as_ref().map(|h| h.akamai.clone()),
        "and its HTTP/2 settings"
    );
    assert!(
        user_agent(&proxied).contains("Chrome/"),
        "{}",
        user_agent(&proxied)
    );
    assert!(!user_agent(&proxied).contains("curl"));
    let stats = engine.session(&id).await.expect("live").session().stats();
    assert_eq!(
        stats.request_count, 1,
        "the request went through the named session"
    );
    let view = proxy.stats().view(2);
    assert!(view.mitm && view.total_requests >= 2, "{view:?}");
    proxy.stop().await;
    engine.shutdown().await;
}

async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_proxy_forwards_through_sessions_and_refuses_clearly() {
    let site = HttpsServer::start(|req| match req.path() {
        "/login" => Reply::new(302)
            .header("location", "/account")
            .header("set-cookie", "sid=proxy-secret; Path=/; Secure"),
        "/account"
            if req
                .cookie()
                .unwrap_or_default()
                .contains("sid=proxy-secret") =>
        {
            Reply::ok("logged in")
        }
        "/account" => Reply::new(401),
        "/echo" => Reply::ok(req.body.clone()),
        _ => Reply::ok("hi"),
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let site_ca = dir.path().join("site.pem");
    std::fs::write(&site_ca, &site.cert_pem).expect("write");
    let port = site.addr.port();
    let engine = engine();
    let id = engine
        .create_session(
            SessionConfig::profile("firefox-latest").transport(move |b| {
                b.ca_file(site_ca).resolve(
                    format!("shop.test:{port}:127.0.0.1")
                        .parse()
                        .expect("resolve"),
                )
            }),
        )
        .await
        .expect("session");
    let proxy = proxy(&engine, None, None).await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", proxy.local_addr())).expect("proxy"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = format!("http://shop.test:{port}");

    let login = client
        .get(format!("{base}/login"))
        .header("x-mummer-session", &id)
        .header("x-mummer-scheme", "https")
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 302, "redirects come back to the client");
    assert!(
        login.headers().get("set-cookie").is_none(),
        "the session keeps its cookies"
    );
    let account = client
        .get(format!("{base}/account"))
        .header("x-mummer-session", &id)
        .header("x-mummer-scheme", "https")
        .send()
        .await
        .expect("account");
    assert_eq!(account.status(), 200);
    assert_eq!(account.text().await.expect("body"), "logged in");
    let posted = client
        .post(format!("{base}/echo"))
        .header("x-mummer-session", &id)
        .header("x-mummer-scheme", "https")
        .header("content-type", "text/plain")
        .body("from the client")
        .send()
        .await
        .expect("post");
    assert_eq!(posted.text().await.expect("body"), "from the client");
    let seen = site.requests();
    let last = seen.last().expect("seen");
    assert!(last
        .header("user-agent")
        .unwrap_or_default()
        .contains("Firefox/"));
    assert!(
        last.header("x-mummer-session").is_none(),
        "the routing header is stripped"
    );
    assert_eq!(last.header("content-type"), Some("text/plain"));

    let none = client.get(format!("{base}/")).send().await.expect("answer");
    assert_eq!(none.status(), 400);
    let text = none.text().await.expect("body");
    assert!(text.contains("X-Mummer-Session"), "{text}");
    let unknown = client
        .get(format!("{base}/"))
        .header("x-mummer-session", "no-such-session")
        .send()
        .await
        .expect("answer");
    assert_eq!(unknown.status(), 404);
    let scheme = client
        .get(format!("{base}/"))
        .header("x-mummer-session", &id)
        .header("x-mummer-scheme", "gopher")
        .send()
        .await
        .expect("answer");
    assert_eq!(scheme.status(), 400);

    let connect = raw_exchange(
        proxy.local_addr(),
        &format!("CONNECT shop.test:{port} HTTP/1.1\r\nHost: shop.test:{port}\r\nX-Mummer-Session: {id}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(connect.starts_with("HTTP/1.1 405"), "{connect}");
    assert!(
        connect.contains("fingerprint") && connect.contains("--mitm"),
        "{connect}"
    );
    let origin_form = raw_exchange(
        proxy.local_addr(),
        &format!("GET / HTTP/1.1\r\nHost: shop.test\r\nX-Mummer-Session: {id}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(origin_form.starts_with("HTTP/1.1 400"), "{origin_form}");
    let view = proxy.stats().view(1);
    assert!(
        view.total_requests >= 7 && view.failed_requests >= 4,
        "{view:?}"
    );

    // The same counters through the API and /metrics.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let api = mummer::api::ApiServer::start(
        engine.clone(),
        mummer::api::ApiConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            metrics: Some(metrics),
            ..Default::default()
        },
        Some(proxy.stats()),
    )
    .await
    .expect("api");
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let stats: serde_json::Value = serde_json::from_slice(
        &plain
            .get(format!("http://{}/v1/proxy", api.local_addr()))
            .send()
            .await
            .expect("stats")
            .bytes()
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(stats["running"], true);
    assert_eq!(stats["port"], proxy.local_addr().port());
    assert_eq!(stats["registered_sessions"], 1);
    assert_eq!(stats["total_requests"], view.total_requests);
    let text = plain
        .get(format!("http://{}/metrics", api.local_addr()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(&format!("mummer_proxy_requests {}", view.total_requests)),
        "{text}"
    );
    assert!(text.contains("mummer_proxy_active_connections"), "{text}");
    api.stop();
    api.stopped().await;
    proxy.stop().await;

    let guarded = self::proxy(&engine, None, Some("0123456789abcdef")).await;
    let anonymous = raw_exchange(
        guarded.local_addr(),
        &format!("GET {base}/ HTTP/1.1\r\nHost: shop.test\r\nX-Mummer-Session: {id}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(anonymous.starts_with("HTTP/1.1 407"), "{anonymous}");
    let (code, body, err) = curl(&[
        "--proxy",
        &format!("http://{}", guarded.local_addr()),
        "--proxy-user",
        "any:0123456789abcdef",
        "-H",
        &format!("X-Mummer-Session: {id}"),
        "-H",
        "X-Mummer-Scheme: https",
        &format!("{base}/account"),
    ]);
    assert_eq!((code, body.as_str()), (0, "logged in"), "{err}");
    guarded.stop().await;
    engine.shutdown().await;
}
