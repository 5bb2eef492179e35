//! Transport benchmark: requests per second and client CPU time per request for mummer's
//! transport, reqwest, and a floor made of raw `tokio-boring` + `http2` with nothing on top,
//! against one local HTTPS HTTP/2 server, at 1 and 64 concurrent requests.
//!
//! The server runs in a child process (this binary re-executed), so the CPU time measured
//! here (`CLOCK_PROCESS_CPUTIME_ID`) is the client's alone. Each client gets one tokio
//! worker thread, the server another: on a two-core machine neither starves the other.
//! Rounds are interleaved (mummer, reqwest, floor, mummer, ...) and the median is printed.
//!
//! ```text
//! cargo bench --bench transport                       # full run
//! cargo bench --bench transport -- --requests 50000 --rounds 5 --body 1024
//! cargo bench --bench transport -- --only mummer       # one client, e.g. under perf
//! ```
//!
//! Run by `cargo test` (without `--bench`), it does a short smoke run so the benchmark
//! cannot rot.

#[path = "support/bench_args.rs"]
mod bench_args;
#[path = "support/browser_headers.rs"]
mod browser_headers;
#[path = "../tests/support/https.rs"]
mod https;
#[path = "support/server_process.rs"]
mod server_process;

use bench_args::BenchArgs;
use browser_headers::browser_headers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cpu_time::ProcessTime;

struct Options {
    /// Peers to run (all by default; `--only mummer` for profiling one).
    peers: Vec<Peer>,
    requests: usize,
    rounds: usize,
    body: usize,
    full: bool,
}

fn options() -> Options {
    let args = BenchArgs::from_env();
    let full = args.full();
    let only = args
        .text("--only")
        .and_then(|name| PEERS.into_iter().find(|p| p.name().starts_with(name)));
    Options {
        peers: only.map_or(PEERS.to_vec(), |p| vec![p]),
        requests: args
            .number("--requests")
            .unwrap_or(if full { 20_000 } else { 300 }),
        rounds: args.number("--rounds").unwrap_or(if full { 5 } else { 1 }),
        body: args.number("--body").unwrap_or(1024),
        full,
    }
}

fn main() {
    if server_process::serve_if_child() {
        return;
    }
    let opts = options();
    let server = server_process::spawn(opts.body);
    let url = format!("https://127.0.0.1:{}/bench", server.port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let results = rt.block_on(run_all(&url, &opts));
    drop(server);
    print_results(&results, &opts);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    Mummer,
    Reqwest,
    Floor,
}

const PEERS: [Peer; 3] = [Peer::Mummer, Peer::Reqwest, Peer::Floor];

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Mummer => "mummer (chrome-latest)",
            Peer::Reqwest => "reqwest 0.12 (rustls)",
            Peer::Floor => "floor: boring + http2",
        }
    }
}

/// One client, connected and warmed up. reqwest and the floor send the same header list
/// as mummer's navigation (names and values, from the profile), so every client does the
/// same HPACK work and the server sees the same requests.
#[derive(Clone)]
enum Client {
    Mummer(mummer::Client),
    Reqwest(reqwest::Client, http::HeaderMap),
    Floor(http2::client::SendRequest<Bytes>, http::HeaderMap),
}

impl Client {
    async fn new(peer: Peer, url: &str) -> Client {
        match peer {
            Peer::Mummer => {
                let profile = mummer::Profile::named("chrome-latest").expect("built-in profile");
                Client::Mummer(
                    mummer::Client::builder(profile)
                        .insecure(true)
                        .build()
                        .expect("mummer client"),
                )
            }
            Peer::Reqwest => Client::Reqwest(
                reqwest::Client::builder()
                    .danger_accept_invalid_certs(true)
                    .build()
                    .expect("reqwest client"),
                browser_headers(),
            ),
            Peer::Floor => {
                let uri: http::Uri = url.parse().expect("url");
                let addr = format!(
                    "{}:{}",
                    uri.host().unwrap_or("127.0.0.1"),
                    uri.port_u16().unwrap_or(443)
                );
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                tcp.set_nodelay(true).expect("nodelay");
                let mut b = boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls())
                    .expect("connector");
                b.set_verify(boring::ssl::SslVerifyMode::NONE);
                b.set_alpn_protos(b"\x02h2").expect("alpn");
                let cfg = b.build().configure().expect("configure");
                let tls = tokio_boring::connect(cfg, "localhost", tcp)
                    .await
                    .expect("tls");
                let (send, conn) = http2::client::handshake(tls).await.expect("h2 handshake");
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Client::Floor(send, browser_headers())
            }
        }
    }

    /// One GET; returns the body length.
    async fn get(&self, url: &str) -> usize {
        match self {
            Client::Mummer(c) => {
                let r = c.get(url).send().await.expect("mummer request");
                assert_eq!(r.version(), http::Version::HTTP_2);
                r.body().len()
            }
            Client::Reqwest(c, headers) => {
                let r = c
                    .get(url)
                    .headers(headers.clone())
                    .send()
                    .await
                    .expect("reqwest request");
                assert_eq!(r.version(), http::Version::HTTP_2);
                r.bytes().await.expect("reqwest body").len()
            }
            Client::Floor(send, headers) => {
                let mut send = send.clone().ready().await.expect("h2 ready");
                let mut req = http::Request::get(url).body(()).expect("request");
                *req.headers_mut() = headers.clone();
                let (resp, _) = send.send_request(req, true).expect("send");
                let mut body = resp.await.expect("response").into_body();
                let mut n = 0;
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.expect("data");
                    n += chunk.len();
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                n
            }
        }
    }
}

struct Sample {
    peer: Peer,
    concurrency: usize,
    rps: f64,
    cpu_us: f64,
}

async fn run_all(url: &str, opts: &Options) -> Vec<Sample> {
    let mut out = Vec::new();
    for concurrency in [1usize, 64] {
        for round in 0..opts.rounds {
            for i in 0..opts.peers.len() {
                let peer = opts.peers[(i + round) % opts.peers.len()];
                let client = Client::new(peer, url).await;
                // Warm-up: connect, and let the allocator and the pool settle.
                drive(&client, url, concurrency, 100.min(opts.requests), opts.body).await;
                let cpu = ProcessTime::now();
                let wall = Instant::now();
                drive(&client, url, concurrency, opts.requests, opts.body).await;
                let wall = wall.elapsed();
                let cpu: Duration = cpu.elapsed();
                out.push(Sample {
                    peer,
                    concurrency,
                    rps: opts.requests as f64 / wall.as_secs_f64(),
                    cpu_us: cpu.as_secs_f64() * 1e6 / opts.requests as f64,
                });
            }
        }
    }
    out
}

/// Runs `total` GETs with `concurrency` tasks pulling from one counter.
async fn drive(client: &Client, url: &str, concurrency: usize, total: usize, body: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let n = client.get(&url).await;
                assert_eq!(n, body, "whole body read");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn print_results(samples: &[Sample], opts: &Options) {
    println!(
        "transport benchmark: {} requests x {} rounds, {}-byte bodies, HTTP/2 over TLS 1.3 on loopback{}",
        opts.requests,
        opts.rounds,
        opts.body,
        if opts.full { "" } else { " (smoke run; use `cargo bench --bench transport`)" }
    );
    for concurrency in [1usize, 64] {
        println!("\nconcurrency {concurrency}");
        println!(
            "  {:<26} {:>10} {:>14} {:>16} {:>16} {:>18}",
            "client", "req/s", "CPU us/req", "req/s vs reqwest", "CPU vs reqwest", "CPU us min-max"
        );
        let stat = |peer: Peer| {
            let of = |f: fn(&Sample) -> f64| {
                median(
                    samples
                        .iter()
                        .filter(|s| s.peer == peer && s.concurrency == concurrency)
                        .map(f)
                        .collect(),
                )
            };
            (of(|s| s.rps), of(|s| s.cpu_us))
        };
        if opts.peers.len() < PEERS.len() {
            for peer in &opts.peers {
                let (rps, cpu) = stat(*peer);
                println!("  {:<26} {:>10.0} {:>14.1}", peer.name(), rps, cpu);
            }
            continue;
        }
        let (base_rps, base_cpu) = stat(Peer::Reqwest);
        for peer in PEERS {
            let (rps, cpu) = stat(peer);
            let cpus: Vec<f64> = samples
                .iter()
                .filter(|s| s.peer == peer && s.concurrency == concurrency)
                .map(|s| s.cpu_us)
                .collect();
            let (lo, hi) = cpus
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), c| (lo.min(*c), hi.max(*c)));
            println!(
                "  {:<26} {:>10.0} {:>14.1} {:>16.2} {:>16.2} {:>18}",
                peer.name(),
                rps,
                cpu,
                rps / base_rps,
                cpu / base_cpu,
                format!("{lo:.1}-{hi:.1}")
            );
        }
        let (m_rps, m_cpu) = stat(Peer::Mummer);
        let (f_rps, f_cpu) = stat(Peer::Floor);
        println!(
            "  mummer vs floor: {:.2}x the throughput, {:.2}x the CPU per request",
            m_rps / f_rps,
            m_cpu / f_cpu
        );
    }
}
