//! `Session::load` against a local shop site, judged from the site's own request log:
//! every subresource Chromium would fetch is asked for once, with its kind's headers
//! (Referer, `sec-fetch-*`, `accept`, `priority`), fonts after their stylesheet with the
//! stylesheet as Referer, the icon last; nothing a browser would not fetch; broken
//! links reported with their status; limits reported, not silently dropped; a second
//! load revalidates from the cache.

mod support;

use std::time::Duration;

use mummer::client::CacheStatus;
use mummer::net::ConnectTo;
use mummer::page::{LoadOptions, Outcome};
use mummer::session::CacheConfig;
use mummer::{Profile, RequestKind, Session};
use support::https::{HttpsServer, Reply, SeenRequest};

const PAGE: &str = r#"<!doctype html>
<html><head>
<link rel="stylesheet" href="/css/site.css">
<script src="/js/head.js"></script>
<script src="/js/app.mjs" type="module"></script>
<script src="/js/later.js" defer></script>
<link rel="icon" href="/icon.png">
</head><body>
<h1>Shop</h1>
<img src="/img/logo.png" srcset="/img/logo.png 1x, /img/logo@2x.png 2x">
<picture><source type="image/avif" srcset="/img/hero.avif"><img src="/img/hero.jpg"></picture>
<img src="/img/missing.png">
<img src="/img/below.png" loading="lazy">
<img src="https://api.shop.test/img/cdn.png">
<img src="https://nocert.shop.test/img/x.png">
<script type="text/template" src="/not-a-script"></script>
</body></html>"#;

const CSS: &str = r#"@import "/css/theme.css";
@font-face { font-family: Shop; src: url(/fonts/shop.woff2) format("woff2"), url(/fonts/shop.woff) format("woff"); }
@font-face { font-family: Unused; src: url(/fonts/unused.woff2) format("woff2"); }
body { font-family: Shop, sans-serif; }"#;

fn site(req: &SeenRequest) -> Reply {
    match req.path() {
        "/" => Reply::ok(PAGE)
            .header("content-type", "text/html; charset=utf-8")
            .header("etag", "\"page-1\"")
            .header("cache-control", "no-cache"),
        "/css/site.css" => Reply::ok(CSS)
            .header("content-type", "text/css")
            .header("etag", "\"css-1\"")
            .header("cache-control", "no-cache"),
        "/img/missing.png" => Reply::new(404),
        "/slow.png" => Reply::ok("x").delay(Duration::from_secs(5)),
        _ => Reply::ok("body")
            .header("cache-control", "max-age=600")
            .header("etag", "\"static-1\""),
    }
}

fn session(server: &HttpsServer, ca: &tempfile::NamedTempFile) -> Session {
    let route: ConnectTo = format!(":443:127.0.0.1:{}", server.addr.port())
        .parse()
        .expect("route");
    let ca = ca.path().to_path_buf();
    Session::builder(Profile::named("chromium-156-linux").expect("profile"))
        // A browser's disk cache: fresh responses are served without a request.
        .cache(CacheConfig {
            store_bodies: true,
            ..CacheConfig::default()
        })
        .transport(move |b| b.ca_file(ca).connect_to(route))
        .build()
        .expect("session")
}

async fn setup() -> (HttpsServer, Session, tempfile::NamedTempFile) {
    setup_with(site).await
}

/// A server answering with `site`, and a session that trusts it.
async fn setup_with(
    site: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
) -> (HttpsServer, Session, tempfile::NamedTempFile) {
    let server = HttpsServer::start(site).await;
    let ca = tempfile::NamedTempFile::new().expect("ca");
    std::fs::write(ca.path(), &server.cert_pem).expect("ca");
    let s = session(&server, &ca);
    (server, s, ca)
}

fn paths(server: &HttpsServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| format!("{}{}", r.host(), r.path()))
        .collect()
}

#[tokio::test]
async fn a_page_load_fetches_what_chromium_fetches_once_with_its_headers() {
    let (server, s, _ca) = setup().await;
    let load = s
        .load_page("https://www.shop.test/", &LoadOptions::default())
        .await
        .expect("load");
    assert_eq!(load.document.status(), 200);

    let seen = paths(&server);
    let expected = [
        "www.shop.test/",
        "www.shop.test/css/site.css",
        "www.shop.test/js/head.js",
        "www.shop.test/js/app.mjs",
        "www.shop.test/js/later.js",
        "www.shop.test/img/logo.png",
        "www.shop.test/img/hero.avif",
        "www.shop.test/img/missing.png",
        "api.shop.test/img/cdn.png",
        "www.shop.test/css/theme.css",
        "www.shop.test/fonts/shop.woff2",
        "www.shop.test/icon.png",
    ];
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    let mut sorted_expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    sorted_expected.sort();
    assert_eq!(sorted_seen, sorted_expected, "each once, nothing else");
    assert_eq!(seen[0], "www.shop.test/", "the document first");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("www.shop.test/icon.png"),
        "the icon last"
    );
    let at = |p: &str| seen.iter().position(|s| s.ends_with(p)).expect("seen");
    assert!(
        at("/fonts/shop.woff2") > at("/css/site.css"),
        "fonts after their stylesheet"
    );
    assert!(at("/css/theme.css") > at("/css/site.css"));

    let req = |path: &str| -> SeenRequest {
        server
            .requests()
            .into_iter()
            .find(|r| r.path() == path)
            .expect("requested")
    };
    let h = |path: &str, name: &str| req(path).header(name).map(str::to_owned);
    let page = "https://www.shop.test/";
    for (path, dest, mode, priority, accept) in [
        (
            "/css/site.css",
            "style",
            "no-cors",
            Some("u=0"),
            "text/css,*/*;q=0.1",
        ),
        ("/js/head.js", "script", "no-cors", Some("u=1"), "*/*"),
        ("/js/app.mjs", "script", "cors", Some("u=1"), "*/*"),
        ("/js/later.js", "script", "no-cors", None, "*/*"),
        (
            "/img/logo.png",
            "image",
            "no-cors",
            Some("u=2, i"),
            "image/jxl,image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
        ),
        ("/fonts/shop.woff2", "font", "cors", Some("u=4"), "*/*"),
        (
            "/icon.png",
            "image",
            "no-cors",
            Some("u=1, i"),
            "image/jxl,image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
        ),
    ] {
        assert_eq!(h(path, "sec-fetch-dest").as_deref(), Some(dest), "{path}");
        assert_eq!(h(path, "sec-fetch-mode").as_deref(), Some(mode), "{path}");
        assert_eq!(
            h(path, "sec-fetch-site").as_deref(),
            Some("same-origin"),
            "{path}"
        );
        assert_eq!(h(path, "priority").as_deref(), priority, "{path}");
        assert_eq!(h(path, "accept").as_deref(), Some(accept), "{path}");
        let referer = if path.starts_with("/fonts") {
            "https://www.shop.test/css/site.css"
        } else {
            page
        };
        assert_eq!(h(path, "referer").as_deref(), Some(referer), "{path}");
    }
    assert_eq!(
        h("/img/cdn.png", "sec-fetch-site").as_deref(),
        Some("same-site")
    );
    // CORS mode sends Origin even to the same origin (as live Chromium does).
    assert_eq!(
        h("/js/app.mjs", "origin").as_deref(),
        Some("https://www.shop.test")
    );
    assert_eq!(
        h("/fonts/shop.woff2", "origin").as_deref(),
        Some("https://www.shop.test")
    );
    assert!(h("/js/head.js", "origin").is_none(), "no-cors: no Origin");

    // The result names every subresource and what became of it.
    let outcome = |p: &str| {
        load.subresources
            .iter()
            .find(|f| f.url.ends_with(p))
            .map(|f| f.outcome.clone())
            .expect("reported")
    };
    assert!(matches!(
        outcome("/img/missing.png"),
        Outcome::Fetched { status: 404, .. }
    ));
    assert!(
        matches!(outcome("/css/site.css"), Outcome::Fetched { status: 200, bytes, .. } if bytes == CSS.len() as u64)
    );
    // The host whose certificate does not match is reported, not skipped.
    match outcome("nocert.shop.test/img/x.png") {
        Outcome::Failed { error } => assert!(
            error.contains("certificate") || error.contains("TLS"),
            "{error}"
        ),
        other => panic!("a TLS failure is reported: {other:?}"),
    }
    assert_eq!(
        load.subresources.len(),
        expected.len(),
        "every one but the document, and the failed one"
    );
    assert!(
        !load.complete(),
        "a failed subresource: not complete (a 404 alone would be)"
    );
    let kinds: Vec<RequestKind> = load.subresources.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&RequestKind::Font));

    // Again: the document and stylesheet are revalidated, the max-age ones come from
    // the cache without a request.
    let before = server.requests().len();
    let again = s
        .load_page("https://www.shop.test/", &LoadOptions::default())
        .await
        .expect("second load");
    let mut second: Vec<String> = paths(&server)[before..].to_vec();
    second[1..].sort();
    assert_eq!(
        second,
        [
            "www.shop.test/",
            "www.shop.test/css/site.css",
            "www.shop.test/img/missing.png"
        ],
        "only what has no freshness is asked again"
    );
    assert_eq!(
        req("/").header("if-none-match"),
        None,
        "the first load had no validator"
    );
    let last_page = server.requests()[before].clone();
    assert_eq!(last_page.header("if-none-match"), Some("\"page-1\""));
    assert!(again.subresources.iter().any(|f| matches!(
        &f.outcome,
        Outcome::Fetched {
            cache: CacheStatus::Hit,
            ..
        }
    )));
}

#[tokio::test]
async fn limits_and_options_are_reported_not_dropped() {
    let (server, s, _ca) = setup().await;
    let options = LoadOptions {
        max_subresources: 3,
        same_origin_only: true,
        ..LoadOptions::default()
    };
    let load = s
        .load_page("https://www.shop.test/", &options)
        .await
        .expect("load");
    let fetched = load
        .subresources
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Fetched { .. }))
        .count();
    assert_eq!(fetched, 3);
    assert_eq!(server.requests().len(), 4, "the document and three");
    let reasons: Vec<String> = load
        .subresources
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::LeftOut { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(reasons.contains(&"other origin".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"count limit".to_string()), "{reasons:?}");
    assert!(
        load.complete(),
        "left out by the caller's limits, not failed"
    );
}

#[tokio::test]
async fn a_subresource_past_the_time_limit_is_reported_as_cut() {
    let (_server, s, _ca) = setup_with(|req: &SeenRequest| match req.path() {
        "/" => Reply::ok(r#"<img src="/slow.png"><img src="/fast.png">"#)
            .header("content-type", "text/html"),
        "/slow.png" => Reply::ok("x").delay(Duration::from_secs(5)),
        _ => Reply::ok("x"),
    })
    .await;
    let options = LoadOptions {
        timeout: Duration::from_millis(800),
        favicon: false,
        ..LoadOptions::default()
    };
    let started = std::time::Instant::now();
    let load = s
        .load_page("https://www.shop.test/", &options)
        .await
        .expect("load");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "bounded by the limit"
    );
    let slow = load
        .subresources
        .iter()
        .find(|f| f.url.ends_with("/slow.png"))
        .expect("reported");
    assert_eq!(
        slow.outcome,
        Outcome::LeftOut {
            reason: "time limit".into()
        }
    );
    assert!(!load.complete(), "cut by the time limit: not complete");
}

/// A hostile document: 30 000 distinct images, 200 000 unclosed `<div>`s, a stylesheet
/// with 50 000 used font faces, and a stylesheet link past the first 8 MiB. The load
/// lists at most 10 000 subresources per document and per stylesheet and counts the
/// rest, reads 8 MiB of the document and says how much it left, fetches no more than
/// its limit, and never asks for what it did not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_page_is_bounded_and_what_was_not_done_is_counted() {
    const IMAGES: usize = 30_000;
    const FACES: usize = 50_000;
    let mut html = String::from("<!doctype html><link rel=stylesheet href=/h/big.css>\n");
    for i in 0..IMAGES {
        html.push_str(&format!("<img src=/h/i{i}.png>"));
    }
    html.push_str(&"<div>".repeat(200_000));
    // Filler to past the read limit, a multi-byte character across it, then a link.
    while html.len() < mummer::page::MAX_DOCUMENT_BYTES - 1 {
        html.push_str("<p>filler</p>");
    }
    html.truncate(mummer::page::MAX_DOCUMENT_BYTES - 1);
    html.push_str("é<link rel=stylesheet href=/h/after-cut.css>");
    let html_len = html.len();
    let mut css = String::new();
    for i in 0..FACES {
        css.push_str(&format!(
            "@font-face{{font-family:f{i};src:url(/f/{i}.woff2)}}.c{i}{{font-family:f{i}}}\n"
        ));
    }
    let (html, css) = (bytes::Bytes::from(html), bytes::Bytes::from(css));
    let (server, s, _ca) = setup_with(move |req: &SeenRequest| match req.path() {
        "/" => Reply::ok(html.clone()).header("content-type", "text/html"),
        "/h/big.css" => Reply::ok(css.clone()).header("content-type", "text/css"),
        _ => Reply::ok("x"),
    })
    .await;
    let options = LoadOptions {
        max_subresources: 50,
        ..LoadOptions::default()
    };
    let load = s
        .load_page("https://www.shop.test/", &options)
        .await
        .expect("load");

    let limit = mummer::page::discover::MAX_FOUND;
    // The document lists `limit` (its icon included); the stylesheet `limit` fonts.
    assert_eq!(load.subresources.len(), 2 * limit);
    assert_eq!(
        load.not_listed,
        (IMAGES + 1 - (limit - 1)) + (FACES - limit),
        "images and faces over the limits are counted"
    );
    // The cut fell inside the two-byte character: it is left whole for later.
    assert_eq!(
        load.document_bytes_not_read,
        (html_len - (mummer::page::MAX_DOCUMENT_BYTES - 1)) as u64
    );
    let seen = paths(&server);
    assert_eq!(
        seen.len(),
        1 + 50,
        "the document and the limit: {}",
        seen.len()
    );
    let distinct: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "each once");
    assert!(!seen.iter().any(|p| p.ends_with("/h/after-cut.css")));
    let left_out = load
        .subresources
        .iter()
        .filter(|f| matches!(&f.outcome, Outcome::LeftOut { reason } if reason == "count limit"))
        .count();
    assert_eq!(left_out, 2 * limit - 50, "the rest are listed as left out");
    assert!(load.complete());
}
