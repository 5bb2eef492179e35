//! A local demo site for the crawler: logins and cookies, ETags, a robots.txt, a page
//! that answers 429 with Retry-After, a flaky endpoint, and links to a host that always
//! fails. HTTPS with a self-signed certificate on loopback.
//!
//! ```text
//! cargo run --example demo_site -- --write-cert /tmp/ca.pem --port-file /tmp/port
//! ```
//!
//! It serves `shop.test` (and `www.shop.test`, `api.shop.test`, `cdn.test`,
//! `other.test`) on one port: point clients at it with
//! `--resolve shop.test:PORT:127.0.0.1`. It stops after `--for SECS` (default 300) or
//! when killed.

#[path = "../tests/support/https.rs"]
mod https;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use https::{HttpsServer, Reply, SeenRequest};

const PRODUCTS: usize = 30;

fn page(title: &str, body: &str, links: &[String]) -> String {
    let links: String = links
        .iter()
        .map(|l| format!("<li><a href=\"{l}\">{l}</a></li>"))
        .collect();
    format!("<!doctype html><title>{title}</title><h1>{title}</h1>{body}<ul>{links}</ul>")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "demo_site [--write-cert FILE] [--port-file FILE] [--down-port PORT] [--for SECS]"
        );
        println!("  Serves the crawler demo on 127.0.0.1 (random port) until --for SECS pass.");
        return;
    }
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let lifetime = value("--for")
        .and_then(|v| v.parse().ok())
        .unwrap_or(300u64);
    let down_port = value("--down-port").unwrap_or_else(|| "9".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let slow_hits = Arc::new(AtomicUsize::new(0));
        let flaky_hits = Arc::new(AtomicUsize::new(0));
        let down = down_port.clone();
        let handler = move |req: &SeenRequest| -> Reply {
            let path = req.path().to_string();
            let cookie = req.cookie().unwrap_or_default();
            let html = |r: Reply| r.header("content-type", "text/html; charset=utf-8");
            match path.as_str() {
                "/robots.txt" => Reply::ok("User-agent: *\nDisallow: /private\n"),
                "/" => html(Reply::ok(page(
                    "Demo shop",
                    "<p>Welcome.</p>",
                    &[
                        "/products/1".into(),
                        "/login".into(),
                        "/account".into(),
                        "/cached".into(),
                        "/slow".into(),
                        "/flaky".into(),
                        "/private/admin".into(),
                        "/gone".into(),
                        format!("https://down.test:{down}/"),
                    ],
                ))),
                "/login" => Reply::new(302).header("location", "/account").header(
                    "set-cookie",
                    "sid=demo-user; Secure; HttpOnly; Path=/; SameSite=Lax",
                ),
                "/account" if cookie.contains("sid=demo-user") => html(Reply::ok(page(
                    "Your account",
                    "<p>Logged in as demo-user.</p>",
                    &["/".into()],
                ))),
                "/account" => html(Reply::ok(page(
                    "Account",
                    "<p>Please log in.</p>",
                    &["/login".into()],
                ))),
                "/cached" => {
                    if req.header("if-none-match") == Some("\"v1\"") {
                        Reply::new(304).header("etag", "\"v1\"")
                    } else {
                        html(Reply::ok(page(
                            "Cached",
                            "<p>Has an ETag.</p>",
                            &["/".into()],
                        )))
                        .header("etag", "\"v1\"")
                        .header("cache-control", "no-cache")
                    }
                }
                "/slow" => {
                    if slow_hits.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                        Reply::new(429).header("retry-after", "1")
                    } else {
                        html(Reply::ok(page(
                            "Slow",
                            "<p>Came back after Retry-After.</p>",
                            &["/".into()],
                        )))
                    }
                }
                "/flaky" => {
                    if flaky_hits.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                        Reply::new(503)
                    } else {
                        html(Reply::ok(page(
                            "Flaky",
                            "<p>Second try worked.</p>",
                            &["/".into()],
                        )))
                    }
                }
                p if p.starts_with("/products/") => {
                    let n: usize = p["/products/".len()..].parse().unwrap_or(0);
                    if n == 0 || n > PRODUCTS {
                        return Reply::new(404);
                    }
                    let mut links = vec!["/".to_string()];
                    links.extend(
                        [n * 2, n * 2 + 1]
                            .iter()
                            .filter(|i| **i <= PRODUCTS)
                            .map(|i| format!("/products/{i}")),
                    );
                    html(Reply::ok(page(
                        &format!("Product {n}"),
                        "<p>A product.</p>",
                        &links,
                    )))
                    .header("set-cookie", &format!("last_seen={n}; Path=/"))
                }
                _ => Reply::new(404),
            }
        };
        let server = HttpsServer::start(handler).await;
        if let Some(path) = value("--write-cert") {
            std::fs::write(&path, &server.cert_pem).expect("write the certificate");
        }
        let port = server.addr.port();
        if let Some(path) = value("--port-file") {
            std::fs::write(&path, port.to_string()).expect("write the port");
        }
        eprintln!("demo site: https://shop.test:{port}/ (resolve shop.test:{port}:127.0.0.1)");
        tokio::time::sleep(Duration::from_secs(lifetime)).await;
    });
}
