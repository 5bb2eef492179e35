//! Stress: 1,000 sessions and 20,000 requests through the engine with the reaper
//! running. Every request gets its response, nothing panics, and once the sessions are
//! reaped and the engine is shut down, no task or socket is left behind.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mummer::net::ConnectTo;
use mummer::{Engine, SessionConfig};
use support::https::{HttpsServer, Reply, SeenRequest};

const SESSIONS: usize = 1_000;
const REQUESTS: usize = 20_000;
const CONCURRENCY: usize = 200;
const HOSTS: [&str; 5] = [
    "shop.test",
    "www.shop.test",
    "api.shop.test",
    "cdn.test",
    "other.test",
];

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Raises this process's soft open-file limit to its hard limit (2,000+ sockets are
/// open at the peak: both ends of 1,000 connections live in this process).
fn raise_fd_limit() {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=unlimited:unlimited"])
        .status();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if soft != 0 && soft < 2 * SESSIONS + 200 {
        let hard = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(4))
            .unwrap_or("?")
            .to_string();
        let _ = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_sessions_twenty_thousand_requests() {
    raise_fd_limit();
    let server = HttpsServer::start_with_alpn(
        &[b"h2", b"http/1.1"],
        Arc::new(|req: &SeenRequest| Reply::ok(req.path().to_string())),
        false,
    )
    .await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &server.cert_pem).unwrap();
    let fds_before = open_fds();
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();

    let engine = Engine::builder()
        .max_sessions(SESSIONS)
        // Longer than creating the sessions and one round of 1,000 requests take in a
        // debug build on a busy machine (5 s was not, once, with other builds sharing
        // two cores), short enough that the reaper empties the engine soon after.
        .idle_timeout(Duration::from_secs(15))
        .reap_interval(Duration::from_millis(100))
        .workers(2)
        .start()
        .unwrap();
    let started = std::time::Instant::now();
    let mut ids = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let route: ConnectTo = format!(":443:127.0.0.1:{}", server.addr.port())
            .parse()
            .unwrap();
        let ca_path = ca.path().to_path_buf();
        let config = SessionConfig::profile("chrome-latest")
            .transport(move |b| b.ca_file(ca_path).connect_to(route));
        ids.push(engine.create_session(config).await.unwrap());
    }
    assert_eq!(engine.session_count().await, SESSIONS);
    eprintln!("created {SESSIONS} sessions in {:?}", started.elapsed());
    let started = std::time::Instant::now();

    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(ids);
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (engine, next, ok, ids) = (engine.clone(), next.clone(), ok.clone(), ids.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= REQUESTS {
                    break;
                }
                let id = &ids[n % SESSIONS];
                // Each session talks to one of the certificate's hosts.
                let host = HOSTS[(n % SESSIONS) % HOSTS.len()];
                let session = engine.session(id).await.expect("live session");
                let path = format!("/r/{n}");
                let resp = session
                    .get(&format!("https://{host}{path}"))
                    .kind(mummer::RequestKind::Fetch)
                    .send()
                    .await
                    .expect("a response for every request");
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.text(), path, "the response is this request's");
                ok.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await.expect("no worker panicked");
    }
    assert_eq!(ok.load(Ordering::Relaxed), REQUESTS, "no lost response");
    eprintln!("{REQUESTS} requests in {:?}", started.elapsed());
    let list = engine.list_sessions().await.unwrap();
    let total: u64 = list.iter().map(|s| s.request_count).sum();
    assert_eq!(total, REQUESTS as u64);

    // Idle now: the reaper closes every session.
    let mut waited = Duration::ZERO;
    while engine.session_count().await > 0 && waited < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    assert_eq!(engine.session_count().await, 0, "reaped once idle");
    engine.shutdown().await;
    drop(engine);

    // Sockets and tasks drain back (connections close asynchronously).
    let mut fds_after = open_fds();
    for _ in 0..100 {
        if fds_after <= fds_before + 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_after = open_fds();
    }
    assert!(
        fds_after <= fds_before + 5,
        "sockets leaked: {fds_before} before, {fds_after} after"
    );
    let tasks_after = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert!(
        tasks_after <= tasks_before + 2,
        "tasks leaked: {tasks_before} before, {tasks_after} after"
    );
}
