//! Engine overhead: CPU per request and latency (p50, p99) through the engine (actors:
//! dispatcher, session actor) against the plain `Session`, at 1 and 64 concurrent
//! requests on one session, and with 1,000 sessions. The target is at most 10% more
//! CPU per request than the plain session.
//!
//! ```text
//! cargo bench --bench engine
//! cargo bench --bench engine -- --requests 20000 --rounds 5
//! cargo bench --bench engine -- --only engine --case 2 --rounds 1   # one contender, one case
//! ```
//!
//! `--cookies N --cached M` put N cookies in the jar and M entries in the cache of the
//! one-session cases first.
//!
//! `--only plain|engine|arbiter` and `--case 1|2|3` run one contender in one case, for
//! counting instructions per request under `valgrind --tool=callgrind` (see
//! `docs/benchmarks.md`): with `--dump-before='*measured_phase_boundary'` the second
//! dump counts the measured requests alone.
//!
//! The HTTPS server runs in a child process; CPU time is this process's (the engine's
//! threads included). Run by `cargo test` it does a short smoke run.

#[path = "support/bench_args.rs"]
mod bench_args;
#[path = "../tests/support/https.rs"]
mod https;
#[path = "support/server_process.rs"]
mod server_process;

use bench_args::BenchArgs;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use mummer::{Engine, EngineSession, Profile, RequestKind, RequestSite, Session, SessionConfig};

#[derive(Clone)]
enum Target {
    Plain(Vec<Session>),
    Engine(Vec<EngineSession>),
}

impl Target {
    async fn get(&self, n: usize, url: &str) {
        let resp = match self {
            Target::Plain(s) => {
                s[n % s.len()]
                    .get(url)
                    .kind(RequestKind::Fetch)
                    .send()
                    .await
            }
            Target::Engine(s) => {
                s[n % s.len()]
                    .get(url)
                    .kind(RequestKind::Fetch)
                    .send()
                    .await
            }
        };
        assert_eq!(resp.expect("response").status(), 200);
    }
}

struct Sample {
    cpu_us: f64,
    p50: Duration,
    p99: Duration,
    rps: f64,
}

async fn measure(target: &Target, url: &str, concurrency: usize, total: usize) -> Sample {
    // Warm-up: every session connected.
    let sessions = match target {
        Target::Plain(s) => s.len(),
        Target::Engine(s) => s.len(),
    };
    drive(
        target,
        url,
        concurrency.max(8),
        sessions.max(100),
        &Arc::new(std::sync::Mutex::new(Vec::new())),
    )
    .await;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    measured_phase_boundary();
    let cpu = ProcessTime::now();
    let wall = Instant::now();
    drive(target, url, concurrency, total, &latencies).await;
    let wall = wall.elapsed();
    let cpu = cpu.elapsed();
    measured_phase_boundary();
    let mut l = latencies.lock().expect("latencies").clone();
    l.sort();
    Sample {
        cpu_us: cpu.as_secs_f64() * 1e6 / total as f64,
        p50: l[l.len() / 2],
        p99: l[(l.len() * 99 / 100).min(l.len() - 1)],
        rps: total as f64 / wall.as_secs_f64(),
    }
}

/// Called right before and right after the measured requests, and nowhere else: under
/// `valgrind --tool=callgrind --dump-before='*measured_phase_boundary'` the second
/// profile dump holds the measured requests alone, without the setup and warm-up
/// (1000 TLS handshakes vary by more than the requests being counted).
#[inline(never)]
fn measured_phase_boundary() {
    std::hint::black_box(());
}

async fn drive(
    target: &Target,
    url: &str,
    concurrency: usize,
    total: usize,
    latencies: &Arc<std::sync::Mutex<Vec<Duration>>>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (target, url, next, latencies) = (
            target.clone(),
            url.to_string(),
            next.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let t = Instant::now();
                target.get(n, &url).await;
                latencies.lock().expect("latencies").push(t.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
}

fn main() {
    if server_process::serve_if_child() {
        return;
    }
    let args = BenchArgs::from_env();
    let full = args.full();
    let value = |name: &str| args.number(name);
    let requests = value("--requests").unwrap_or(if full { 20_000 } else { 400 });
    let rounds = value("--rounds").unwrap_or(if full { 5 } else { 1 });
    let many = if full { 1000 } else { 20 };
    let server = server_process::spawn(1024);
    let url = format!("https://bench.test:{}/item", server.port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let profile = Profile::named("chrome-latest").expect("profile");
        let resolve = format!("bench.test:{}:127.0.0.1", server.port);
        let plain = |n: usize| {
            Target::Plain(
                (0..n)
                    .map(|_| {
                        let r = resolve.parse().expect("resolve");
                        Session::builder(profile.clone())
                            .transport(|b| b.insecure(true).resolve(r))
                            .build()
                            .expect("session")
                    })
                    .collect(),
            )
        };
        // The default engine runs requests in the caller's task; the second one runs
        // them on its arbiters (`RequestSite::Arbiter`), measured in the same run.
        let mut engines = Vec::new();
        let mut targets = Vec::new();
        for site in [RequestSite::Caller, RequestSite::Arbiter] {
            let mut builder = Engine::builder().max_sessions(many + 10).request_site(site);
            if let Some(w) = value("--workers") {
                builder = builder.workers(w);
            }
            let engine = builder.start().expect("engine");
            let mut handles = Vec::new();
            for _ in 0..many.max(1) {
                let r: mummer::net::ResolveOverride = resolve.parse().expect("resolve");
                let id = engine
                    .create_session(SessionConfig::profile("chrome-latest").transport(move |b| b.insecure(true).resolve(r)))
                    .await
                    .expect("create");
                handles.push(engine.session(&id).await.expect("session"));
            }
            targets.push((Target::Engine(vec![handles[0].clone()]), Target::Engine(handles)));
            engines.push(engine);
        }
        let one_plain = plain(1);
        let many_plain = plain(many);
        // `--cookies N --cached M`: the one-session cases run with N cookies in the jar
        // (each request carries them) and M entries in the conditional cache (URLs
        // with validators, none of them the measured one): the session layer's cost
        // with a lived-in session.
        let (cookies, cached) = (value("--cookies").unwrap_or(0), value("--cached").unwrap_or(0));
        let base = format!("https://bench.test:{}", server.port);
        for one in [&one_plain, &targets[0].0, &targets[1].0] {
            let session = match one {
                Target::Plain(s) => s[0].clone(),
                Target::Engine(s) => s[0].session().clone(),
            };
            for i in 0..cookies {
                session
                    .set_cookie(&base, &format!("c{i}=value-{i:08}; Path=/"))
                    .expect("cookie");
            }
            for i in 0..cached {
                let r = session.get(&format!("{base}/cached/{i}")).send().await.expect("fill");
                assert_eq!(r.status(), 200);
            }
            assert_eq!(session.cookies().len(), cookies, "every cookie kept");
            assert_eq!(session.stats().cache_entry_count, cached, "every entry kept");
        }

        println!(
            "engine overhead: {requests} requests x {rounds} rounds, 1 KiB bodies, HTTP/2 over TLS 1.3 on loopback{}",
            if full { "" } else { " (smoke run; use `cargo bench --bench engine`)" }
        );
        println!(
            "  {:<60} {:>10} {:>12} {:>10} {:>10} {:>12} {:>10}",
            "scenario", "req/s", "CPU us/req", "p50", "p99", "CPU vs plain", "best vs best"
        );
        let [(one_caller, many_caller), (one_arbiter, many_arbiter)] = &targets[..] else {
            unreachable!("two engines were built above")
        };
        let many_label = if full { "1000 sessions, 64 in flight" } else { "20 sessions, 64 in flight" };
        const NAMES: [&str; 3] = ["plain", "engine", "arbiter"];
        let only = args.text("--only");
        let case = value("--case");
        for (n, (label, concurrency, contenders)) in [
            ("1 session, 1 in flight", 1, [&one_plain, one_caller, one_arbiter]),
            ("1 session, 64 in flight", 64, [&one_plain, one_caller, one_arbiter]),
            (many_label, 64, [&many_plain, many_caller, many_arbiter]),
        ]
        .into_iter()
        .enumerate()
        {
            if case.is_some_and(|c| c != n + 1) {
                continue;
            }
            if let Some(name) = only {
                let Some(i) = NAMES.iter().position(|&k| k == name) else {
                    panic!("--only takes one of {NAMES:?}");
                };
                let s = measure(contenders[i], &url, concurrency, requests).await;
                println!(
                    "  {:<60} {:>10.0} {:>12.1} {:>10.2?} {:>10.2?}",
                    format!("{label}: {name} only"),
                    s.rps,
                    s.cpu_us,
                    s.p50,
                    s.p99
                );
                continue;
            }
            let mut samples: [Vec<Sample>; 3] = Default::default();
            for round in 0..rounds {
                // Rotate which goes first.
                for k in 0..3 {
                    let i = (round + k) % 3;
                    samples[i].push(measure(contenders[i], &url, concurrency, requests).await);
                }
            }
            // The median, and the least CPU any round took: on a shared machine the
            // noise is bursts of other load, which only ever add time, so the best
            // round of each is the one least disturbed.
            let median_and_best = |v: &mut Vec<Sample>| {
                v.sort_by(|a, b| a.cpu_us.total_cmp(&b.cpu_us));
                let best = v[0].cpu_us;
                (v.remove(v.len() / 2), best)
            };
            let [ps, cs, as_] = &mut samples;
            let ((pm, pb), (cm, cb), (am, ab)) = (
                median_and_best(ps),
                median_and_best(cs),
                median_and_best(as_),
            );
            for (name, s, best) in [
                ("plain Session", &pm, pb),
                ("engine", &cm, cb),
                ("engine, requests on arbiters", &am, ab),
            ] {
                println!(
                    "  {:<60} {:>10.0} {:>12.1} {:>10.2?} {:>10.2?} {:>12.2} {:>10.2}",
                    format!("{label}: {name}"),
                    s.rps,
                    s.cpu_us,
                    s.p50,
                    s.p99,
                    s.cpu_us / pm.cpu_us,
                    best / pb
                );
            }
        }
        for engine in engines {
            engine.shutdown().await;
        }
    });
    drop(server);
}
