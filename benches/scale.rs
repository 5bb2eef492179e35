//! The engine at a million idle sessions: how long creating them, listing them, a reap
//! pass and the shutdown take, and what 64 live sessions sending requests meanwhile
//! see (latency percentiles per phase), plus how long a session lookup (a message to
//! the supervisor, what the HTTP API does per request) waits in each phase.
//!
//! ```text
//! cargo bench --bench scale                          # 1 000 000 idle sessions
//! cargo bench --bench scale -- --sessions 200000 --live 64
//! ```
//!
//! The server is a child process (`support/server_process.rs`). Run by `cargo test`
//! (without `--bench`) it does a short smoke run with 2 000 sessions.

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
use mummer::{Engine, SessionConfig};

/// The phases, in order; samples are filed under the phase running when they finished.
const PHASES: [&str; 5] = ["quiet", "create", "list", "reap", "shutdown"];

/// Latency samples per phase: requests on live sessions, and supervisor lookups.
#[derive(Default)]
struct Samples {
    requests: Vec<Vec<Duration>>,
    lookups: Vec<Vec<Duration>>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / (1024.0 * 1024.0))
}

fn main() {
    if server_process::serve_if_child() {
        return;
    }
    let args = BenchArgs::from_env();
    let full = args.full();
    let k = args
        .number("--sessions")
        .unwrap_or(if full { 1_000_000 } else { 2_000 });
    let live = args.number("--live").unwrap_or(if full { 64 } else { 8 });
    let server = server_process::spawn(1024);
    let url = format!("https://127.0.0.1:{}/bench", server.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(k, live, url));
    drop(server);
}

async fn run(k: usize, live: usize, url: String) {
    let engine = Engine::builder()
        .max_sessions(k + live + 1)
        // Nothing is old enough to reap: the pass walks every session and closes none,
        // which is the pass a busy engine runs every minute.
        .idle_timeout(Duration::from_secs(3600))
        .reap_interval(Duration::ZERO)
        .start()
        .expect("engine");
    let config = || SessionConfig::profile("chrome-latest").transport(|b| b.insecure(true));

    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Samples {
        requests: vec![Vec::new(); PHASES.len()],
        lookups: vec![Vec::new(); PHASES.len()],
    }));
    let failures = Arc::new(AtomicUsize::new(0));

    // The live sessions, each sending one request after another.
    let mut workers = Vec::new();
    let mut live_ids = Vec::new();
    for _ in 0..live {
        let id = engine.create_session(config()).await.expect("live session");
        let session = engine.session(&id).await.expect("live session handle");
        live_ids.push(id);
        let (phase, stop, samples, failures, url) = (
            phase.clone(),
            stop.clone(),
            samples.clone(),
            failures.clone(),
            url.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match session.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        let took = started.elapsed();
                        let at = phase.load(Ordering::Relaxed);
                        if let Ok(mut s) = samples.lock() {
                            s.requests[at].push(took);
                        }
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    // A lookup every millisecond: what a caller going through the supervisor waits.
    {
        let (engine, phase, stop, samples, id) = (
            engine.clone(),
            phase.clone(),
            stop.clone(),
            samples.clone(),
            live_ids[0].clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                if engine.peek_session(&id).await.is_err() {
                    break;
                }
                let took = started.elapsed();
                let at = phase.load(Ordering::Relaxed);
                if let Ok(mut s) = samples.lock() {
                    s.lookups[at].push(took);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }

    println!("scale: {k} idle engine sessions, {live} live sessions sending requests meanwhile");
    let mut took = Vec::new();
    // quiet
    tokio::time::sleep(Duration::from_secs(1)).await;
    took.push(Duration::from_secs(1));

    phase.store(1, Ordering::Relaxed);
    let rss0 = resident_mib();
    let started = Instant::now();
    let mut left = k;
    while left > 0 {
        let batch = left.min(256);
        let creations =
            (0..batch).map(|_| engine.create_session(SessionConfig::profile("chrome-latest")));
        for created in futures_util::future::join_all(creations).await {
            created.expect("idle session");
        }
        left -= batch;
    }
    let creation = started.elapsed();
    took.push(creation);
    let rss1 = resident_mib();

    phase.store(2, Ordering::Relaxed);
    let started = Instant::now();
    // Page by page, as a caller walking a million sessions does (the HTTP API's
    // `?limit=`): a single vector of a million stats is the caller's own pause.
    let mut listed = 0;
    let mut cursor = Some(0);
    while let Some(from) = cursor {
        let (page, next) = engine
            .list_sessions_page(from, 1024)
            .await
            .expect("list page");
        listed += page.len();
        cursor = next;
    }
    took.push(started.elapsed());
    assert_eq!(listed, k + live, "every session listed");

    phase.store(3, Ordering::Relaxed);
    let started = Instant::now();
    engine.reap_now().await;
    took.push(started.elapsed());
    assert_eq!(
        engine.session_count().await,
        k + live,
        "nothing was old enough to reap"
    );

    phase.store(4, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let started = Instant::now();
    engine.shutdown().await;
    took.push(started.elapsed());

    println!(
        "  created {k} in {:.2} s: {:.0} per second (256 at a time), resident {:.0} -> {:.0} MiB ({:.0} B per session)",
        creation.as_secs_f64(),
        k as f64 / creation.as_secs_f64(),
        rss0,
        rss1,
        (rss1 - rss0) * 1024.0 * 1024.0 / k as f64
    );
    println!(
        "  {:<9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12}",
        "phase", "took", "requests", "p50", "p99", "max", "lookup p99", "lookup max"
    );
    let mut samples = samples
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    for (i, name) in PHASES.iter().enumerate() {
        let (requests, lookups) = match (samples.requests.get_mut(i), samples.lookups.get_mut(i)) {
            (Some(r), Some(l)) => (r, l),
            _ => continue,
        };
        requests.sort_unstable();
        lookups.sort_unstable();
        let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1e3);
        println!(
            "  {:<9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12}",
            name,
            format!(
                "{:.3}s",
                took.get(i).copied().unwrap_or_default().as_secs_f64()
            ),
            requests.len(),
            ms(percentile(requests, 0.5)),
            ms(percentile(requests, 0.99)),
            ms(requests.last().copied().unwrap_or_default()),
            ms(percentile(lookups, 0.99)),
            ms(lookups.last().copied().unwrap_or_default()),
        );
    }
    let failed = failures.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "requests on live sessions failed");
}
