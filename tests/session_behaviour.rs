//! A session against a local HTTPS server that plays several sites (shop.test and its
//! subdomains, cdn.test, other.test, all routed to 127.0.0.1 with --connect-to):
//! cookies, SameSite, redirects, the navigation context, client hints, the conditional
//! cache, counters and closing.

mod support;

use mummer::client::CacheStatus;
use mummer::net::ConnectTo;
use mummer::session::CacheConfig;
use mummer::{Profile, RequestKind, Session};
use support::https::{HttpsServer, Reply, SeenRequest};

fn site(req: &SeenRequest) -> Reply {
    let host = req.host();
    match (host.as_str(), req.path()) {
        (_, "/login") => Reply::ok("welcome")
            .header("set-cookie", "sid=abc; Secure; HttpOnly; Path=/")
            .header("set-cookie", "pref=dark; Domain=shop.test; SameSite=Lax")
            .header("set-cookie", "strict=1; SameSite=Strict")
            .header("set-cookie", "bad=1; Domain=test"),
        (_, "/hostile") => Reply::ok("")
            .header("set-cookie", &format!("huge={}", "x".repeat(5000)))
            .header("set-cookie", "noequals")
            .header("set-cookie", "=emptyname")
            .header(
                "set-cookie",
                "__Host-fake=1; Secure; Path=/; Domain=shop.test",
            )
            .header("set-cookie", "nodate=1; Expires=not-a-date")
            .header("set-cookie", "gone=1; Max-Age=0")
            .header("set-cookie", "ok=1"),
        (_, "/hop") => Reply::new(302)
            .header("location", "/final")
            .header("set-cookie", "hop=1"),
        (_, "/error") => Reply::new(500).header("set-cookie", "err=1"),
        (_, "/post-302") => Reply::new(302).header("location", "/landing"),
        (_, "/post-307") => Reply::new(307).header("location", "/landing"),
        (_, "/to-other") => Reply::new(302).header("location", "https://other.test/landing"),
        (_, "/loop") => Reply::new(302).header("location", "/loop"),
        ("cdn.test", "/set") => Reply::ok("")
            .header("set-cookie", "cdnlax=1; SameSite=Lax")
            .header("set-cookie", "cdnnone=1; SameSite=None; Secure"),
        (_, "/ch") => {
            Reply::ok("").header("accept-ch", "Sec-CH-UA-Full-Version-List, Sec-CH-UA-Arch")
        }
        (_, "/etag") => {
            if req.header("if-none-match") == Some("\"v1\"") {
                Reply::new(304).header("etag", "\"v1\"")
            } else {
                Reply::ok("cached page")
                    .header("etag", "\"v1\"")
                    .header("cache-control", "no-cache")
            }
        }
        _ => Reply::ok("ok"),
    }
}

async fn setup() -> (HttpsServer, Session, tempfile::NamedTempFile) {
    let server = HttpsServer::start(site).await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &server.cert_pem).unwrap();
    let session = session_for(&server, &ca, CacheConfig::default());
    (server, session, ca)
}

fn session_for(server: &HttpsServer, ca: &tempfile::NamedTempFile, cache: CacheConfig) -> Session {
    let route: ConnectTo = format!(":443:127.0.0.1:{}", server.addr.port())
        .parse()
        .unwrap();
    let ca = ca.path().to_path_buf();
    Session::builder(Profile::named("chrome-156-linux").unwrap())
        .cache(cache)
        .transport(move |b| b.ca_file(ca).connect_to(route))
        .build()
        .unwrap()
}

fn last(server: &HttpsServer, path: &str) -> SeenRequest {
    server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path() == path)
        .unwrap_or_else(|| panic!("no request for {path}"))
}

#[tokio::test]
async fn cookies_from_every_response_and_where_they_go() {
    let (server, s, _ca) = setup().await;
    s.get("https://www.shop.test/login").send().await.unwrap();
    let names: Vec<String> = s.cookies().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["sid", "pref", "strict"],
        "Domain=test is a public suffix"
    );

    s.get("https://www.shop.test/account").send().await.unwrap();
    assert_eq!(
        last(&server, "/account").cookie().as_deref(),
        Some("sid=abc; pref=dark; strict=1")
    );
    s.get("https://api.shop.test/v1")
        .kind(RequestKind::Fetch)
        .send()
        .await
        .unwrap();
    assert_eq!(
        last(&server, "/v1").cookie().as_deref(),
        Some("pref=dark"),
        "host-only cookies stay on www"
    );

    // Redirect and error responses set cookies too.
    let r = s.get("https://www.shop.test/hop").send().await.unwrap();
    assert_eq!(r.url(), "https://www.shop.test/final");
    assert_eq!(r.redirects().len(), 1);
    let r = s.get("https://www.shop.test/error").send().await.unwrap();
    assert_eq!(r.status(), 500);
    let names: Vec<String> = s.cookies().into_iter().map(|c| c.name).collect();
    assert!(
        names.contains(&"hop".to_string()) && names.contains(&"err".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn hostile_set_cookie_headers_are_rejected_and_lose_nothing() {
    let (server, s, _ca) = setup().await;
    s.get("https://www.shop.test/login").send().await.unwrap();
    let before = s.cookies();
    let r = s.get("https://www.shop.test/hostile").send().await.unwrap();
    assert_eq!(r.status(), 200, "bad cookies do not fail the response");
    let names: Vec<String> = s.cookies().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["sid", "pref", "strict", "nodate", "ok"],
        "an unparsable Expires is ignored, as browsers do"
    );
    for c in &before {
        assert!(s.cookies().contains(c), "{} survived", c.name);
    }
    s.get("https://www.shop.test/after-hostile")
        .send()
        .await
        .unwrap();
    let sent = last(&server, "/after-hostile").cookie().unwrap();
    assert!(
        !sent.contains("huge") && !sent.contains("gone") && sent.contains("ok=1"),
        "{sent}"
    );
}

#[tokio::test]
async fn same_site_follows_the_navigation_context() {
    let (server, s, _ca) = setup().await;
    // cdn.test sets its cookies during a top-level visit.
    s.get("https://cdn.test/set").typed().send().await.unwrap();
    s.get("https://www.shop.test/page")
        .typed()
        .send()
        .await
        .unwrap();
    // A cross-site subresource from shop.test: only the SameSite=None cookie goes.
    s.get("https://cdn.test/img.png")
        .kind(RequestKind::Image)
        .send()
        .await
        .unwrap();
    let img = last(&server, "/img.png");
    assert_eq!(img.cookie().as_deref(), Some("cdnnone=1"));
    assert_eq!(img.header("sec-fetch-site"), Some("cross-site"));
    assert_eq!(img.header("referer"), Some("https://www.shop.test/"));
    assert_eq!(img.header("origin"), None, "no-cors images send no Origin");
    // A cross-site top-level navigation carries Lax.
    s.get("https://cdn.test/article").send().await.unwrap();
    assert_eq!(
        last(&server, "/article").cookie().as_deref(),
        Some("cdnlax=1; cdnnone=1")
    );
}

#[tokio::test]
async fn navigation_context_headers() {
    let (server, s, _ca) = setup().await;
    s.get("https://www.shop.test/start")
        .typed()
        .send()
        .await
        .unwrap();
    let first = last(&server, "/start");
    assert_eq!(first.header("sec-fetch-site"), Some("none"));
    assert_eq!(first.header("referer"), None);

    s.get("https://www.shop.test/next?q=1")
        .send()
        .await
        .unwrap();
    let link = last(&server, "/next?q=1");
    assert_eq!(link.header("sec-fetch-site"), Some("same-origin"));
    assert_eq!(link.header("referer"), Some("https://www.shop.test/start"));

    s.get("https://api.shop.test/data")
        .kind(RequestKind::Fetch)
        .send()
        .await
        .unwrap();
    let api = last(&server, "/data");
    assert_eq!(api.header("sec-fetch-site"), Some("same-site"));
    assert_eq!(api.header("origin"), Some("https://www.shop.test"));
    assert_eq!(api.header("referer"), Some("https://www.shop.test/"));

    s.post("https://www.shop.test/form")
        .body("a=1")
        .send()
        .await
        .unwrap();
    let form = last(&server, "/form");
    assert_eq!(
        form.header("origin"),
        Some("https://www.shop.test"),
        "form POSTs send Origin"
    );
    assert_eq!(&form.body[..], b"a=1");
    assert_eq!(s.document().as_deref(), Some("https://www.shop.test/form"));
}

#[tokio::test]
async fn redirect_rules() {
    let (server, s, _ca) = setup().await;
    let r = s
        .post("https://www.shop.test/post-302")
        .body("x=1")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.url(), "https://www.shop.test/landing");
    let landing = last(&server, "/landing");
    assert_eq!(landing.method, "GET");
    assert!(landing.body.is_empty() && landing.header("content-type").is_none());

    s.post("https://www.shop.test/post-307")
        .body("y=2")
        .send()
        .await
        .unwrap();
    let landing = last(&server, "/landing");
    assert_eq!(
        (landing.method.as_str(), &landing.body[..]),
        ("POST", &b"y=2"[..])
    );

    s.get("https://www.shop.test/to-other")
        .header("authorization", "Bearer secret")
        .header("cookie", "manual=1")
        .send()
        .await
        .unwrap();
    let before = last(&server, "/to-other");
    assert_eq!(before.header("authorization"), Some("Bearer secret"));
    let other = last(&server, "/landing");
    assert_eq!(other.host(), "other.test");
    assert_eq!(
        other.header("authorization"),
        None,
        "Authorization never crosses origins"
    );
    assert_eq!(other.cookie(), None, "nor does a caller's Cookie");

    let err = s
        .get("https://www.shop.test/loop")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_redirect(), "{err}");
    assert!(err.to_string().contains("more than 10 redirects"), "{err}");
    let r = s
        .get("https://www.shop.test/loop")
        .no_redirects()
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
}

#[tokio::test]
async fn client_hints_after_accept_ch() {
    let (server, s, _ca) = setup().await;
    s.get("https://www.shop.test/ch")
        .typed()
        .send()
        .await
        .unwrap();
    assert_eq!(last(&server, "/ch").header("sec-ch-ua-arch"), None);
    s.get("https://www.shop.test/after").send().await.unwrap();
    let after = last(&server, "/after");
    let names: Vec<&str> = after.headers.iter().map(|(n, _)| n.as_str()).collect();
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("{n} in {names:?}"))
    };
    assert!(after
        .header("sec-ch-ua-full-version-list")
        .unwrap()
        .contains("Google Chrome"));
    assert_eq!(after.header("sec-ch-ua-arch"), Some("\"x86\""));
    assert!(
        pos("sec-ch-ua-arch") < pos("user-agent"),
        "high-entropy hints sit with the other client hints"
    );
    s.get("https://other.test/x").send().await.unwrap();
    assert_eq!(
        last(&server, "/x").header("sec-ch-ua-arch"),
        None,
        "only to the origin that asked"
    );
}

#[tokio::test]
async fn conditional_cache_with_and_without_bodies() {
    let (server, s, ca) = setup().await;
    let r = s.get("https://www.shop.test/etag").send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.cache_status()),
        (200, CacheStatus::Miss)
    );
    let r = s.get("https://www.shop.test/etag").send().await.unwrap();
    assert_eq!(
        last(&server, "/etag").header("if-none-match"),
        Some("\"v1\"")
    );
    assert_eq!(
        (r.status().as_u16(), r.cache_status()),
        (304, CacheStatus::NotModified)
    );
    s.get("https://www.shop.test/etag")
        .no_cache()
        .send()
        .await
        .unwrap();
    assert_eq!(
        last(&server, "/etag").header("if-none-match"),
        None,
        "the per-request switch"
    );
    assert_eq!(s.stats().cache_entry_count, 1);

    // clear_cache drops validators only: cookies and TLS tickets stay.
    s.get("https://www.shop.test/login").send().await.unwrap();
    s.clear_cache();
    s.refresh();
    s.get("https://www.shop.test/etag").send().await.unwrap();
    let again = last(&server, "/etag");
    assert_eq!(again.header("if-none-match"), None);
    assert!(again.cookie().unwrap().contains("sid=abc"));
    assert!(again.resumed, "tickets survive clear_cache and refresh");

    let with_bodies = session_for(
        &server,
        &ca,
        CacheConfig {
            store_bodies: true,
            ..CacheConfig::default()
        },
    );
    with_bodies
        .get("https://www.shop.test/etag")
        .send()
        .await
        .unwrap();
    let r = with_bodies
        .get("https://www.shop.test/etag")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.cache_status()),
        (200, CacheStatus::Revalidated)
    );
    assert_eq!(r.text(), "cached page");
}

#[tokio::test]
async fn counters_idle_time_and_close() {
    let (_server, s, _ca) = setup().await;
    assert_eq!(s.stats().request_count, 0);
    s.get("https://www.shop.test/hop").send().await.unwrap();
    let st = s.stats();
    assert_eq!(st.request_count, 2, "each redirect hop leaves");
    assert_eq!(st.transport.connections_opened, 1);
    assert_eq!(st.transport.connections_reused, 1);
    assert!(st.transport.bytes_in > 0 && st.transport.bytes_out > 0);
    assert!(st.idle_secs < 5.0);
    // A failed request counts too.
    let _ = s.get("https://unrouted.invalid:1/").send().await;
    assert_eq!(s.stats().request_count, 3);

    assert!(s.is_active());
    s.close();
    s.close();
    assert!(!s.is_active());
    let err = s.get("https://www.shop.test/").send().await.unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert_eq!(s.stats().request_count, 3, "refused requests never left");
}
