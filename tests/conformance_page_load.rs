//! Conformance of a page load: headless Chromium and `Session::load_page` with
//! `chromium-156-linux` load the inspector's test page (a stylesheet, a classic and a
//! module script, an image, a font from the CSS, an icon; the script's own `fetch()`
//! and XHR), and every HEADERS frame of the requests both make is compared: the
//! priority block, the header list in order with values, and how HPACK wrote each
//! field; and the order in which they were sent.
//!
//! Chromium runs as in `conformance_chromium.rs` (only the test's host resolves, to
//! 127.0.0.1; inside a loopback-only network namespace where the machine allows it).

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use mummer::inspect::h2frames::HeadersFrame;
use mummer::inspect::{ConnectionReport, Inspector, PAGE_LOAD_PATH};
use mummer::net::ResolveOverride;
use mummer::page::LoadOptions;
use mummer::{Profile, Session};
use support::chromium::{base_args, reran_in_loopback_namespace, Browser};

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

async fn mummer_load(inspector: &mut Inspector) -> Vec<ConnectionReport> {
    let port = inspector.local_addr().port();
    let resolve: ResolveOverride = format!("{HOST}:{port}:127.0.0.1").parse().expect("resolve");
    let session = Session::builder(Profile::named("chromium-156-linux").expect("profile"))
        .transport(move |b| b.insecure(true).resolve(resolve))
        .build()
        .expect("session");
    let load = session
        .load_page(
            &format!("https://{HOST}:{port}{PAGE_LOAD_PATH}"),
            &LoadOptions::default(),
        )
        .await
        .expect("page load");
    assert!(load.complete(), "{:?}", load.subresources);
    session.client().close_connections();
    let mut reports = Vec::new();
    while let Ok(Some(r)) =
        tokio::time::timeout(Duration::from_secs(3), inspector.next_report()).await
    {
        reports.push(r);
    }
    reports
}

#[test]
fn chromium_and_mummer_load_the_test_page_alike() {
    if reran_in_loopback_namespace("chromium_and_mummer_load_the_test_page_alike") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(compare());
}

async fn compare() {
    let mut inspector = Inspector::start("127.0.0.1:0".parse().expect("addr"), &[HOST.to_string()])
        .await
        .expect("inspector");
    let browser = requests(&chromium_load(&mut inspector).await);
    let ours = requests(&mummer_load(&mut inspector).await);
    let browser_paths: Vec<&str> = browser.iter().map(|(p, _)| p.as_str()).collect();
    let our_paths: Vec<&str> = ours.iter().map(|(p, _)| p.as_str()).collect();
    eprintln!("chromium sent: {browser_paths:?}");
    eprintln!("mummer sent:   {our_paths:?}");

    // What the page's script asks for: mummer runs no JavaScript, so these are not
    // made, and what they put in the HPACK table (their `priority: u=1, i`) is not
    // there for the requests after them.
    const SCRIPT_MADE: [&str; 2] = ["/pl/api/fetch", "/pl/api/xhr"];
    let script_values: Vec<(String, String)> = browser
        .iter()
        .filter(|(p, _)| SCRIPT_MADE.contains(&p.as_str()))
        .flat_map(|(_, f)| f.headers.clone())
        .collect();
    let expected_paths: Vec<&str> = browser_paths
        .iter()
        .copied()
        .filter(|p| !SCRIPT_MADE.contains(p))
        .collect();
    // Chromium asks for the icon after the load event, and `--dump-dom` sometimes
    // exits first (seen in one run of three): then the icon is not compared.
    let mut our_paths = our_paths;
    if !browser_paths.contains(&"/pl/icon.png") {
        eprintln!("allowed: chromium exited before asking for the icon");
        our_paths.retain(|p| *p != "/pl/icon.png");
    }
    assert_eq!(
        our_paths, expected_paths,
        "the same requests, in the same order"
    );

    let ours_by_path: BTreeMap<&str, &HeadersFrame> =
        ours.iter().map(|(p, f)| (p.as_str(), f)).collect();
    let mut differences = Vec::new();
    let mut allowed = Vec::new();
    for (path, b) in browser
        .iter()
        .filter(|(p, _)| !SCRIPT_MADE.contains(&p.as_str()))
    {
        let Some(o) = ours_by_path.get(path.as_str()) else {
            continue;
        };
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
