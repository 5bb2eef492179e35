//! Conformance of a page load: headless Chromium and `Session::load_page` with
//! `chromium-156-linux` load the inspector's test page (a stylesheet, a classic and a
//! module script, an image, a font from the CSS, an icon; the script's own `fetch()`
//! and XHR; two cookies set by the document), and every HEADERS frame of the requests both make is compared: the
//! priority block, the header list in order with values, and how HPACK wrote each
//! field; and the order in which they were sent.
//!
//! A second test visits the page twice on one connection, the second time by clicking
//! the page's link to itself (Chromium driven over the DevTools protocol): the second
//! visit is cache-warm, and both must revalidate what is `no-cache` (`If-None-Match`,
//! `If-Modified-Since`, each where Chromium puts it) and ask nothing for what is fresh.
//!
//! Chromium runs as in `conformance_chromium.rs` (only the test's host resolves, to
//! 127.0.0.1; inside a loopback-only network namespace where the machine allows it).

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use mummer::client::CacheStatus;
use mummer::inspect::h2frames::HeadersFrame;
use mummer::inspect::test_page::AGAIN_ID;
use mummer::inspect::{ConnectionReport, Inspector, PAGE_LOAD_PATH};
use mummer::net::ResolveOverride;
use mummer::page::{LoadOptions, Outcome, PageLoad};
use mummer::session::CacheConfig;
use mummer::{Profile, Session};
use serde_json::json;
use support::cdp::Cdp;
use support::chromium::{base_args, run_isolated, spki_hash, Browser};

const HOST: &str = "pageload.test";

/// Requests of every reported connection, by path, in the order they were sent
/// (connection by connection, stream by stream).
fn requests(reports: &[ConnectionReport]) -> Vec<(String, HeadersFrame)> {
    let mut out = Vec::new();
    for r in reports {
        if let Some(h2) = &r.http2 {
            for frame in &h2.requests {
                let path = frame
                    .headers
                    .iter()
                    .find(|(n, _)| n == ":path")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                out.push((path, frame.clone()));
            }
        }
    }
    out
}

/// Everything Chromium sent for one visit of the test page.
async fn chromium_load(inspector: &mut Inspector) -> Vec<ConnectionReport> {
    let url = format!(
        "https://{HOST}:{}{PAGE_LOAD_PATH}",
        inspector.local_addr().port()
    );
    let profile_dir = tempfile::tempdir().expect("profile dir");
    let mut args = base_args(&[HOST], profile_dir.path());
    args.extend(["--dump-dom".to_string(), url]);
    let browser = Browser::start(&args, Stdio::null());
    let mut reports = Vec::new();
    // Connections report when they close: the browser closes them when it exits after
    // the load event (`--dump-dom`).
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let wait = if reports.is_empty() {
            give_up.saturating_duration_since(tokio::time::Instant::now())
        } else {
            Duration::from_secs(3)
        };
        match tokio::time::timeout(wait, inspector.next_report()).await {
            Ok(Some(report)) => reports.push(report),
            _ => break,
        }
    }
    drop(browser);
    assert!(!reports.is_empty(), "chromium connected within 60 s");
    reports
}

/// Everything Chromium sent for two visits of the test page: the first typed, the
/// second by clicking the page's link to itself, on the same connection.
async fn chromium_load_twice(inspector: &mut Inspector) -> Vec<ConnectionReport> {
    let url = format!(
        "https://{HOST}:{}{PAGE_LOAD_PATH}",
        inspector.local_addr().port()
    );
    let profile_dir = tempfile::tempdir().expect("profile dir");
    // The inspector's certificate trusted by its key, not every error ignored:
    // Chromium's HTTP cache keeps nothing fetched over a certificate error, and the
    // second visit is about what it kept.
    let mut args = base_args(&[HOST], profile_dir.path());
    args.retain(|a| a != "--ignore-certificate-errors");
    args.push(format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_hash(inspector.cert_pem())
    ));
    let (browser, mut cdp) = Cdp::launch(args).await;
    let page = cdp.new_page().await;
    cdp.call("Page.navigate", json!({ "url": url }), Some(&page))
        .await;
    // Loaded, and the icon (asked for after the load event) had its time.
    wait_until(&mut cdp, &page, "document.readyState === 'complete'").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cdp.eval(
        &format!("document.getElementById('{AGAIN_ID}').click(); 1"),
        &page,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_until(&mut cdp, &page, "document.readyState === 'complete'").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cdp.call("Browser.close", json!({}), None).await;
    let mut reports = Vec::new();
    while let Ok(Some(r)) =
        tokio::time::timeout(Duration::from_secs(3), inspector.next_report()).await
    {
        reports.push(r);
    }
    drop(browser);
    assert!(!reports.is_empty(), "chromium connected");
    reports
}

/// Polls `condition` in the page (every 50 ms, 20 s at most).
async fn wait_until(cdp: &mut Cdp, page: &str, condition: &str) {
    for _ in 0..400 {
        if cdp.eval(condition, page).await == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{condition} within 20 s");
}

/// What `Session::load_page` sent for `visits` loads of the test page, one after the
/// other in one session (a cache that keeps bodies, as a browser's), with the loads.
async fn mummer_load(
    inspector: &mut Inspector,
    visits: usize,
) -> (Vec<ConnectionReport>, Vec<PageLoad>) {
    let port = inspector.local_addr().port();
    let resolve: ResolveOverride = format!("{HOST}:{port}:127.0.0.1").parse().expect("resolve");
    let session = Session::builder(Profile::named("chromium-156-linux").expect("profile"))
        .transport(move |b| b.insecure(true).resolve(resolve))
        .cache(CacheConfig {
            store_bodies: true,
            ..CacheConfig::default()
        })
        .build()
        .expect("session");
    let mut loads = Vec::new();
    for _ in 0..visits {
        let load = session
            .load_page(
                &format!("https://{HOST}:{port}{PAGE_LOAD_PATH}"),
                &LoadOptions::default(),
            )
            .await
            .expect("page load");
        assert!(load.complete(), "{:?}", load.subresources);
        loads.push(load);
    }
    session.client().close_connections();
    let mut reports = Vec::new();
    while let Ok(Some(r)) =
        tokio::time::timeout(Duration::from_secs(3), inspector.next_report()).await
    {
        reports.push(r);
    }
    (reports, loads)
}

#[test]
fn chromium_and_mummer_load_the_test_page_alike() {
    run_isolated("chromium_and_mummer_load_the_test_page_alike", compare);
}

async fn compare() {
    let mut inspector = Inspector::start("127.0.0.1:0".parse().expect("addr"), &[HOST.to_string()])
        .await
        .expect("inspector");
    let browser = requests(&chromium_load(&mut inspector).await);
    let (ours, _) = mummer_load(&mut inspector, 1).await;
    let mut ours = requests(&ours);
    // Chromium asks for the icon after the load event, and `--dump-dom` sometimes
    // exits first (seen in one run of three): then the icon is not compared.
    if !browser.iter().any(|(p, _)| p == "/pl/icon.png") {
        eprintln!("allowed: chromium exited before asking for the icon");
        ours.retain(|(p, _)| p != "/pl/icon.png");
    }
    same_frames(&browser, &ours);
}

/// What the page's script asks for: mummer runs no JavaScript, so these are not made,
/// and what they put in the HPACK table (their `priority: u=1, i`) is not there for the
/// requests after them.
const SCRIPT_MADE: [&str; 2] = ["/pl/api/fetch", "/pl/api/xhr"];

/// Asserts that `ours` are the requests `browser` made (but the script's), in the same
/// order, each HEADERS frame alike: priority block, header names in order, values, and
/// how HPACK wrote each field. The only differences allowed are named: which streams
/// were open when a request left (its dependency), and table entries only the script's
/// requests put there.
fn same_frames(browser: &[(String, HeadersFrame)], ours: &[(String, HeadersFrame)]) {
    let browser_paths: Vec<&str> = browser.iter().map(|(p, _)| p.as_str()).collect();
    let our_paths: Vec<&str> = ours.iter().map(|(p, _)| p.as_str()).collect();
    eprintln!("chromium sent: {browser_paths:?}");
    eprintln!("mummer sent:   {our_paths:?}");
    // Fields whose first appearance on the connection was in a request of the
    // script's: only Chromium's table holds them.
    let mut first_seen_in: BTreeMap<(String, String), &str> = BTreeMap::new();
    for (path, f) in browser {
        for field in &f.headers {
            first_seen_in.entry(field.clone()).or_insert(path.as_str());
        }
    }
    let script_values: Vec<(String, String)> = first_seen_in
        .into_iter()
        .filter(|(_, path)| SCRIPT_MADE.contains(path))
        .map(|(field, _)| field)
        .collect();
    let expected: Vec<&(String, HeadersFrame)> = browser
        .iter()
        .filter(|(p, _)| !SCRIPT_MADE.contains(&p.as_str()))
        .collect();
    let expected_paths: Vec<&str> = expected.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        our_paths, expected_paths,
        "the same requests, in the same order"
    );

    let mut differences = Vec::new();
    let mut allowed = Vec::new();
    for (i, ((path, b), (_, o))) in expected
        .into_iter()
        .map(|e| (&e.0, &e.1))
        .zip(ours)
        .enumerate()
    {
        let path = format!("#{i} {path}");
        let (pb, po) = (b.priority, o.priority);
        if pb.map(|p| (p.exclusive, p.weight)) != po.map(|p| (p.exclusive, p.weight)) {
            differences.push(format!("{path}: priority {pb:?} vs {po:?}"));
        } else if pb.map(|p| p.depends_on) != po.map(|p| p.depends_on) {
            // Which streams are still open when a request leaves depends on when the
            // responses before it arrived (and, after the script ran, on its requests).
            allowed.push(format!(
                "{path}: depends on {pb:?} vs {po:?} (streams open then)"
            ));
        }
        let names = |f: &HeadersFrame| f.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        if names(b) != names(o) {
            differences.push(format!(
                "{path}: header order\n  {:?}\n  {:?}",
                names(b),
                names(o)
            ));
            continue;
        }
        for ((name, vb), (_, vo)) in b.headers.iter().zip(&o.headers) {
            let vb = vb.replace("HeadlessChrome", "Chrome");
            if &vb != vo {
                differences.push(format!("{path}: {name}: {vb:?} vs {vo:?}"));
            }
        }
        for (((name, value), rb), ro) in b
            .headers
            .iter()
            .zip(&b.representations)
            .zip(&o.representations)
        {
            if rb == ro {
                continue;
            }
            let from_script =
                rb.kind == "indexed" && script_values.iter().any(|(n, v)| n == name && v == value);
            let entry = format!("{path}: {name} written {rb:?} vs {ro:?}");
            if from_script {
                allowed.push(format!("{entry} (in the table from the script's requests)"));
            } else {
                differences.push(entry);
            }
        }
    }
    for a in &allowed {
        eprintln!("allowed: {a}");
    }
    for d in &differences {
        eprintln!("DIFF {d}");
    }
    assert!(differences.is_empty(), "{} differences", differences.len());
}

#[test]
fn chromium_and_mummer_load_the_page_twice_alike() {
    run_isolated(
        "chromium_and_mummer_load_the_page_twice_alike",
        compare_twice,
    );
}

async fn compare_twice() {
    let mut inspector = Inspector::start("127.0.0.1:0".parse().expect("addr"), &[HOST.to_string()])
        .await
        .expect("inspector");
    let browser_reports = chromium_load_twice(&mut inspector).await;
    let (our_reports, loads) = mummer_load(&mut inspector, 2).await;
    assert_eq!(
        browser_reports.len(),
        1,
        "chromium: both visits on one connection"
    );
    assert_eq!(
        our_reports.len(),
        1,
        "mummer: both visits on one connection"
    );
    same_frames(&requests(&browser_reports), &requests(&our_reports));

    // What the second visit did, as the load reports it: revalidated what is
    // `no-cache`, took what is fresh from the cache without a request.
    let second = &loads[1];
    assert_eq!(second.document.cache_status(), CacheStatus::Revalidated);
    let cache: BTreeMap<&str, CacheStatus> = second
        .subresources
        .iter()
        .map(|f| match &f.outcome {
            Outcome::Fetched { cache, .. } => (f.url.rsplit('/').next().unwrap_or(""), *cache),
            other => panic!("{}: {other:?}", f.url),
        })
        .collect();
    assert_eq!(
        cache,
        BTreeMap::from([
            ("app.mjs", CacheStatus::Revalidated),
            ("font.woff2", CacheStatus::Hit),
            ("head.js", CacheStatus::Revalidated),
            ("icon.png", CacheStatus::Hit),
            ("img.png", CacheStatus::Hit),
            ("site.css", CacheStatus::Revalidated),
        ])
    );
}
