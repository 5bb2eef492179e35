//! `mummer serve`'s destination policy, judged from both sides: a loopback site must
//! see no request a refused session tried to make, and the server must survive its own
//! proxy being aimed at its API (`POST /v1/shutdown` through the proxy once answered
//! 202). Covered: the default refusal of loopback, a name that resolves to loopback (the
//! `resolve` field stands in for DNS rebinding), a redirect from an allowed host to
//! loopback, a `proxy` pointing at the API, the proxy forwarding to the API, and
//! `--allow-private` letting the site through while the server's own ports stay refused.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::https::{HttpsServer, Reply};

struct Serve {
    child: Child,
    api: String,
    proxy: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, extra: &[&str]) -> Serve {
    let ready = dir.join(format!("ready-{}.json", extra.len()));
    let child = Command::new(env!("CARGO_BIN_EXE_mummer"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
        ])
        .args(["--max-retries", "0", "-k"])
        .arg("--ready-file")
        .arg(&ready)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mummer serve starts");
    let started = Instant::now();
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&ready) {
            if !t.is_empty() {
                break t;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let v: Value = serde_json::from_str(&text).expect("ready file");
    Serve {
        child,
        api: v["api"].as_str().expect("api").to_string(),
        proxy: v["proxy"].as_str().expect("proxy").to_string(),
    }
}

async fn post(api: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{api}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("api answers");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn session(api: &str, body: Value) -> String {
    let (status, v) = post(api, "/v1/sessions", body).await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().expect("id").to_string()
}

async fn fetch(api: &str, id: &str, url: &str) -> (u16, Value) {
    post(
        api,
        &format!("/v1/sessions/{id}/requests"),
        json!({ "url": url }),
    )
    .await
}

fn refused(answer: &(u16, Value), what: &str) {
    assert_eq!(answer.0, 403, "{what}: {}", answer.1);
    assert_eq!(
        answer.1["type"], "/problems/destination-refused",
        "{what}: {}",
        answer.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_proxy_sessions_cannot_reach_private_addresses_or_the_server_itself() {
    let site = HttpsServer::start(|req| match req.path() {
        // Were the policy to let it through, 127.0.0.1:443 would refuse the connection
        // (a 502, not the 403 the test wants).
        "/to-loopback" => Reply::new(302).header("location", "https://127.0.0.1/secret"),
        _ => Reply::ok("site"),
    })
    .await;
    let port = site.addr.port();
    let dir = tempfile::tempdir().expect("tempdir");

    // Default policy.
    let s = serve(dir.path(), &[]);
    let plain = session(&s.api, json!({})).await;
    refused(
        &fetch(&s.api, &plain, &format!("https://127.0.0.1:{port}/")).await,
        "loopback",
    );
    refused(
        &fetch(&s.api, &plain, &format!("https://localhost:{port}/")).await,
        "localhost",
    );
    let rebound = session(
        &s.api,
        json!({ "resolve": [format!("rebind.test:{port}:127.0.0.1")] }),
    )
    .await;
    refused(
        &fetch(&s.api, &rebound, &format!("https://rebind.test:{port}/")).await,
        "a public-looking name resolving to loopback",
    );
    let api_port = s.api.rsplit(':').next().expect("port").to_string();
    refused(
        &fetch(
            &s.api,
            &plain,
            &format!("http://127.0.0.1:{api_port}/v1/sessions"),
        )
        .await,
        "the API itself",
    );
    let via_api = session(&s.api, json!({ "proxy": format!("http://{}", s.api) })).await;
    refused(
        &fetch(&s.api, &via_api, "http://93.184.216.34/").await,
        "a proxy pointing at the API",
    );
    // The forward proxy aimed at the API's shutdown route.
    let proxied = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", s.proxy)).expect("proxy url"))
        .build()
        .expect("client")
        .post(format!("http://{}/v1/shutdown", s.api))
        .header("x-mummer-session", &plain)
        .send()
        .await
        .expect("proxy answers");
    assert_eq!(proxied.status().as_u16(), 403);
    let (healthy, _) = post(&s.api, "/v1/sessions", json!({})).await;
    assert_eq!(healthy, 201, "the server is still up");
    assert!(
        site.requests().is_empty(),
        "the site saw {:?}",
        site.requests()
    );
    drop(s);

    // The operator allows one host: its redirect to loopback is still refused.
    let s = serve(
        dir.path(),
        &[
            "--allow-destination",
            "shop.test",
            "--resolve",
            &format!("shop.test:{port}:127.0.0.1"),
        ],
    );
    let shop = session(&s.api, json!({})).await;
    let answer = fetch(&s.api, &shop, &format!("https://shop.test:{port}/")).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    refused(
        &fetch(
            &s.api,
            &shop,
            &format!("https://shop.test:{port}/to-loopback"),
        )
        .await,
        "a redirect to loopback",
    );
    let paths: Vec<String> = site
        .requests()
        .iter()
        .map(|r| r.path().to_string())
        .collect();
    assert_eq!(
        paths,
        ["/", "/to-loopback"],
        "the redirect target was never asked"
    );
    drop(s);

    // --allow-private: the site is reachable, the server's own ports are not.
    let s = serve(dir.path(), &["--allow-private"]);
    let open = session(&s.api, json!({})).await;
    let answer = fetch(&s.api, &open, &format!("https://127.0.0.1:{port}/")).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    refused(
        &fetch(&s.api, &open, &format!("http://{}/v1/shutdown", s.api)).await,
        "the API with --allow-private",
    );
    refused(
        &fetch(&s.api, &open, &format!("http://{}/", s.proxy)).await,
        "the proxy port with --allow-private",
    );
    let (healthy, _) = post(&s.api, "/v1/sessions", json!({})).await;
    assert_eq!(healthy, 201, "the server is still up");
}
