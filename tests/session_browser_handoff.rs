//! Handing a session to a real browser and back: a session logs in to a local site, its
//! cookies go into headless Chromium through the DevTools protocol
//! (`Network.setCookies`), Chromium renders the logged-in page, the page's JavaScript
//! sets a cookie, and that cookie comes back (`Network.getAllCookies`) into the session,
//! which sends it on its next request.

mod support;

use std::time::Duration;

use mummer::cookies::formats;
use mummer::net::ResolveOverride;
use mummer::{Profile, Session};
use serde_json::{json, Value};
use support::cdp::Cdp;
use support::chromium::{base_args, run_isolated};
use support::https::{HttpsServer, Reply};

const HOST: &str = "shop.test";

fn site(req: &support::https::SeenRequest) -> Reply {
    let cookie = req.cookie().unwrap_or_default();
    match (req.method.as_str(), req.path()) {
        ("POST", "/login") if &req.body[..] == b"user=alice&password=pw" => Reply::new(303)
            .header("location", "/account")
            .header("set-cookie", "sid=alice-7f3a; Secure; HttpOnly; Path=/; SameSite=Lax"),
        (_, "/account") if cookie.contains("sid=alice-7f3a") => Reply::ok(
            "<!doctype html><title>account</title><h1 id=who>Welcome back, alice</h1>\
             <script>document.cookie = 'js_pref=from-chromium; path=/; max-age=3600; secure';</script>",
        )
        .header("content-type", "text/html"),
        (_, "/account") => Reply::ok("<!doctype html><h1 id=who>Please log in</h1>").header("content-type", "text/html"),
        _ => Reply::ok("ok"),
    }
}

#[test]
fn cookies_go_to_chromium_and_come_back() {
    run_isolated("cookies_go_to_chromium_and_come_back", handoff);
}

async fn handoff() {
    let server = HttpsServer::start(site).await;
    let port = server.addr.port();
    let base = format!("https://{HOST}:{port}");
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &server.cert_pem).unwrap();
    let ca_path = ca.path().to_path_buf();
    let route: ResolveOverride = format!("{HOST}:{port}:127.0.0.1").parse().unwrap();
    let session = Session::builder(Profile::named("chrome-156-linux").unwrap())
        .transport(move |b| b.ca_file(ca_path).resolve(route))
        .build()
        .unwrap();

    // 1. The session logs in (POST, 303 to the account page).
    let page = session
        .post(&format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("user=alice&password=pw")
        .send()
        .await
        .unwrap();
    assert!(
        page.text().contains("Welcome back, alice"),
        "{}",
        page.text()
    );

    // 2. Chromium gets the session's cookies over the DevTools protocol.
    let profile_dir = tempfile::tempdir().unwrap();
    let args = base_args(&[HOST], profile_dir.path());
    let (browser, mut cdp) = Cdp::launch(args).await;
    let sid = cdp.new_page().await;
    let sid = Some(sid.as_str());
    let exported: Value = serde_json::from_str(&formats::to_cdp(&session.cookies())).unwrap();
    cdp.call("Network.setCookies", exported, sid).await;

    // 3. Chromium renders the logged-in page, whose script sets a cookie.
    cdp.call(
        "Page.navigate",
        json!({"url": format!("{base}/account")}),
        sid,
    )
    .await;
    let mut heading = String::new();
    for _ in 0..100 {
        let r = cdp
            .call(
                "Runtime.evaluate",
                json!({"expression": "document.readyState === 'complete' && document.cookie.includes('js_pref') ? document.getElementById('who').textContent : ''", "returnByValue": true}),
                sid,
            )
            .await;
        heading = r["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !heading.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        heading, "Welcome back, alice",
        "Chromium rendered the logged-in page"
    );
    let chromium_request = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path() == "/account")
        .unwrap();
    assert!(chromium_request
        .header("user-agent")
        .unwrap()
        .contains("HeadlessChrome"));

    // 4. The cookie the page set comes back into the session.
    let all = cdp.call("Network.getAllCookies", json!({}), sid).await;
    let records = formats::parse_cdp(&all.to_string()).unwrap();
    let from_js: Vec<_> = records
        .into_iter()
        .filter(|c| c.name == "js_pref")
        .collect();
    assert_eq!(from_js.len(), 1, "{from_js:?}");
    session.import_cookies(&from_js).unwrap();
    drop(browser);

    session
        .get(&format!("{base}/account"))
        .send()
        .await
        .unwrap();
    let last = server.requests().into_iter().last().unwrap();
    assert!(
        last.header("user-agent").unwrap().contains("Chrome/156")
            && !last.header("user-agent").unwrap().contains("Headless")
    );
    let cookie = last.cookie().unwrap();
    assert!(
        cookie.contains("sid=alice-7f3a") && cookie.contains("js_pref=from-chromium"),
        "{cookie}"
    );
}
