//! Load on the message API: 200 concurrent clients driving 50 sessions for 30 seconds,
//! three ways in the same run: the embedded engine (the floor), the HTTP/JSON API
//! (`POST /v1/sessions/{id}/requests`, one HTTP client per API client), and the forward
//! proxy (absolute-form requests with `X-Mummer-Scheme: https`). Prints throughput,
//! p50/p99 and what the API and the proxy add to the embedded engine's p99, and counts
//! errors: any is a failure, since the target never fails.
//!
//! ```text
//! cargo bench --bench api
//! cargo bench --bench api -- --seconds 10 --clients 200 --sessions 50
//! ```
//!
//! The HTTPS target runs in a child process; the API server, the proxy and the clients
//! share this one. Run by `cargo test` it does a short smoke run.

#[path = "support/bench_args.rs"]
mod bench_args;
#[path = "../tests/support/https.rs"]
mod https;
#[path = "support/server_process.rs"]
mod server_process;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench_args::BenchArgs;
use mummer::api::proxy::{ForwardProxy, ProxyConfig};
use mummer::api::{ApiConfig, ApiServer, TransportOptions};
use mummer::{Engine, EngineSession, SessionConfig};

/// How one client sends a request.
#[derive(Clone)]
enum Way {
    Embedded(Arc<Vec<EngineSession>>),
    Api {
        base: String,
        ids: Arc<Vec<String>>,
    },
    Proxy {
        proxy: String,
        ids: Arc<Vec<String>>,
    },
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    wall: Duration,
}

async fn one(
    way: &Way,
    client: &reqwest::Client,
    n: usize,
    url: &str,
    plain_url: &str,
) -> Result<(), String> {
    match way {
        Way::Embedded(sessions) => {
            let r = sessions[n % sessions.len()]
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() != 200 {
                return Err(format!("status {}", r.status()));
            }
        }
        Way::Api { base, ids } => {
            let r = client
                .post(format!(
                    "{base}/v1/sessions/{}/requests",
                    ids[n % ids.len()]
                ))
                .body(format!(r#"{{"url":"{url}","kind":"fetch"}}"#))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let body = r.bytes().await.map_err(|e| e.to_string())?;
            if status != 200 || !body.starts_with(b"{\"status\":200") {
                return Err(format!(
                    "API {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ));
            }
        }
        Way::Proxy { ids, .. } => {
            let r = client
                .get(plain_url)
                .header("x-mummer-session", &ids[n % ids.len()])
                .header("x-mummer-scheme", "https")
                .header("x-mummer-kind", "fetch")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let body = r.bytes().await.map_err(|e| e.to_string())?;
            if status != 200 || body.len() != 1024 {
                return Err(format!("proxy {status}, {} bytes", body.len()));
            }
        }
    }
    Ok(())
}

/// Drives `clients` clients for `seconds`; with `rate`, all of them together send about
/// that many requests per second (each on its own schedule), else as fast as they can.
async fn run(
    way: Way,
    clients: usize,
    seconds: f64,
    rate: Option<f64>,
    url: &str,
    plain_url: &str,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new((0usize, None::<String>)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (way, stop, counter, errors) =
            (way.clone(), stop.clone(), counter.clone(), errors.clone());
        let (url, plain_url) = (url.to_string(), plain_url.to_string());
        // One HTTP client (its own connection) per API client.
        let mut builder = reqwest::Client::builder().pool_max_idle_per_host(1);
        builder = match &way {
            Way::Proxy { proxy, .. } => {
                builder.proxy(reqwest::Proxy::http(proxy).expect("proxy url"))
            }
            _ => builder.no_proxy(),
        };
        let client = builder.build().expect("client");
        let period = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut ticks = period.map(|p| {
                // Spread the clients' schedules over one period.
                let offset = p.mul_f64(rand::random::<f64>());
                let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, p);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = ticks.as_mut() {
                    t.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match one(&way, &client, n, &url, &plain_url).await {
                    Ok(()) => mine.push(t.elapsed()),
                    Err(e) => {
                        let mut guard = errors.lock().expect("errors");
                        guard.0 += 1;
                        guard.1.get_or_insert(e);
                    }
                }
            }
            mine
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    let wall = started.elapsed();
    latencies.sort();
    let (errors, first_error) = std::mem::take(&mut *errors.lock().expect("errors"));
    Outcome {
        latencies,
        errors,
        first_error,
        wall,
    }
}

fn pct(l: &[Duration], p: usize) -> Duration {
    if l.is_empty() {
        return Duration::ZERO;
    }
    l[(l.len() * p / 100).min(l.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if server_process::serve_if_child() {
        return;
    }
    let args = BenchArgs::from_env();
    let full = args.full();
    let seconds = args
        .number("--seconds")
        .map_or(if full { 30.0 } else { 1.0 }, |s| s as f64);
    let clients = args
        .number("--clients")
        .unwrap_or(if full { 200 } else { 20 });
    let sessions = args
        .number("--sessions")
        .unwrap_or(if full { 50 } else { 5 });
    let server = server_process::spawn(1024);
    let url = format!("https://bench.test:{}/item", server.port);
    let plain_url = format!("http://bench.test:{}/item", server.port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let resolve = format!("bench.test:{}:127.0.0.1", server.port);
        let engine = Engine::builder().max_sessions(sessions * 2 + 10).start().expect("engine");
        let api = ApiServer::start(
            engine.clone(),
            ApiConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                defaults: TransportOptions {
                    resolve: vec![resolve.clone()],
                    insecure: Some(true),
                    ..Default::default()
                },
                ..ApiConfig::default()
            },
            None,
        )
        .await
        .expect("api");
        let proxy = ForwardProxy::start(
            engine.clone(),
            ProxyConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                mitm: None,
                default_session: None,
                token: None,
                tenant_tokens: mummer::api::TenantTokens::new(),
                limits: mummer::api::ServerLimits::default(),
            },
        )
        .await
        .expect("proxy");
        let base = format!("http://{}", api.local_addr());
        // Embedded sessions, and sessions created through the API for the other two.
        let mut handles = Vec::new();
        for _ in 0..sessions {
            let r: mummer::net::ResolveOverride = resolve.parse().expect("resolve");
            let id = engine
                .create_session(SessionConfig::profile("chrome-latest").transport(move |b| b.insecure(true).resolve(r)))
                .await
                .expect("create");
            handles.push(engine.session(&id).await.expect("session"));
        }
        let setup = reqwest::Client::builder().no_proxy().build().expect("client");
        let mut ids = Vec::new();
        for _ in 0..sessions {
            let created = setup
                .post(format!("{base}/v1/sessions"))
                .body("{}")
                .send()
                .await
                .expect("create through the API");
            assert_eq!(created.status(), 201);
            let v: serde_json::Value = serde_json::from_slice(&created.bytes().await.expect("body")).expect("json");
            ids.push(v["id"].as_str().expect("id").to_string());
        }
        let ids = Arc::new(ids);
        println!(
            "message API under load: {clients} clients, {sessions} sessions, {seconds} s per way, 1 KiB bodies, HTTP/2 over TLS 1.3 upstream{}",
            if full { "" } else { " (smoke run; use `cargo bench --bench api`)" }
        );
        println!("  {:<34} {:>9} {:>9} {:>10} {:>10} {:>14} {:>7}", "way", "requests", "req/s", "p50", "p99", "p99 added", "errors");
        let ways = [
            ("embedded engine (floor)", Way::Embedded(Arc::new(handles))),
            ("HTTP/JSON API", Way::Api { base: base.clone(), ids: ids.clone() }),
            ("forward proxy (X-Mummer-Scheme)", Way::Proxy { proxy: format!("http://{}", proxy.local_addr()), ids: ids.clone() }),
        ];
        let paced = args.number("--rate").unwrap_or(if full { 2000 } else { 200 }) as f64;
        let mut failed = 0;
        for rate in [None, Some(paced)] {
        match rate {
            None => println!("  as fast as the clients go:"),
            Some(r) => println!("  paced at {r} requests/s in total (below every way's capacity, so p99 shows per-request cost, not queueing):"),
        }
        let mut floor = None;
        for (label, way) in ways.clone() {
            // A short warm-up opens the connections.
            let _ = run(way.clone(), clients, if full { 2.0 } else { 0.3 }, None, &url, &plain_url).await;
            let out = run(way, clients, if rate.is_some() { seconds / 2.0 } else { seconds }, rate, &url, &plain_url).await;
            let p99 = pct(&out.latencies, 99);
            let added = floor.map_or("-".to_string(), |f: Duration| ms(p99.saturating_sub(f)));
            floor.get_or_insert(p99);
            println!(
                "  {:<34} {:>9} {:>9.0} {:>10} {:>10} {:>14} {:>7}",
                label,
                out.latencies.len(),
                out.latencies.len() as f64 / out.wall.as_secs_f64(),
                ms(pct(&out.latencies, 50)),
                ms(p99),
                added,
                out.errors
            );
            if let Some(e) = out.first_error {
                println!("    first error: {e}");
            }
            failed += out.errors;
        }
        }
        proxy.stop().await;
        api.stop();
        api.stopped().await;
        engine.shutdown().await;
        assert_eq!(failed, 0, "requests failed although the target never does");
    });
}
