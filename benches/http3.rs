//! HTTP/3 next to HTTP/2: client CPU time per request and requests per second for
//! mummer's `Client` over QUIC (`--http3-only`) and over HTTP/2, against local servers
//! (quinn + h3, and the `http2` crate's server) with the same body, at 1 and 64
//! requests in flight.
//!
//! The servers run in a child process (this binary re-executed), so the CPU time
//! measured here is the client's alone; the client has one tokio worker thread. Rounds
//! alternate the protocols and the median is printed.
//!
//! ```text
//! cargo bench --bench http3                        # full run
//! cargo bench --bench http3 -- --requests 5000 --rounds 3 --body 1024
//! ```
//!
//! Run by `cargo test` (without `--bench`), it does a short smoke run so the benchmark
//! cannot rot.

#[path = "support/bench_args.rs"]
mod bench_args;
#[path = "../tests/support/h3.rs"]
mod h3site;
#[path = "../tests/support/https.rs"]
mod https;

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_args::BenchArgs;
use bytes::Bytes;
use cpu_time::ProcessTime;
use mummer::client::HttpVersionPref;

const SERVER_ROLE: &str = "MUMMER_BENCH_H3_SERVER_BODY";

fn main() {
    if let Ok(body) = std::env::var(SERVER_ROLE) {
        serve(body.parse().unwrap_or(1024));
        return;
    }
    let args = BenchArgs::from_env();
    let full = args.full();
    let requests: usize = args
        .number("--requests")
        .unwrap_or(if full { 10_000 } else { 200 });
    let rounds: usize = args.number("--rounds").unwrap_or(if full { 5 } else { 1 });
    let body: usize = args.number("--body").unwrap_or(1024);

    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env(SERVER_ROLE, body.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server process");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ports");
    let ports: Vec<u16> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let (h2_port, h3_port) = (ports[0], ports[1]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut samples: Vec<(Protocol, usize, f64, f64)> = Vec::new();
    rt.block_on(async {
        for concurrency in [1usize, 64] {
            for round in 0..rounds {
                for i in 0..2 {
                    let protocol = [Protocol::H2, Protocol::H3][(i + round) % 2];
                    let port = match protocol {
                        Protocol::H2 => h2_port,
                        Protocol::H3 => h3_port,
                    };
                    let client = client(protocol);
                    let url = format!("https://127.0.0.1:{port}/bench");
                    drive(
                        &client,
                        &url,
                        concurrency,
                        100.min(requests),
                        body,
                        protocol,
                    )
                    .await;
                    let cpu = ProcessTime::now();
                    let wall = Instant::now();
                    drive(&client, &url, concurrency, requests, body, protocol).await;
                    let wall = wall.elapsed();
                    let cpu: Duration = cpu.elapsed();
                    samples.push((
                        protocol,
                        concurrency,
                        requests as f64 / wall.as_secs_f64(),
                        cpu.as_secs_f64() * 1e6 / requests as f64,
                    ));
                }
            }
        }
    });
    drop(child.stdin.take());
    let _ = child.wait();

    println!(
        "http3 benchmark: {requests} requests x {rounds} rounds, {body}-byte bodies, mummer Client, loopback{}",
        if full { "" } else { " (smoke run; use `cargo bench --bench http3`)" }
    );
    for concurrency in [1usize, 64] {
        println!("\nconcurrency {concurrency}");
        println!(
            "  {:<10} {:>10} {:>12} {:>14}",
            "protocol", "req/s", "CPU us/req", "CPU vs HTTP/2"
        );
        let median = |p: Protocol, pick: fn(&(Protocol, usize, f64, f64)) -> f64| {
            let mut v: Vec<f64> = samples
                .iter()
                .filter(|s| s.0 == p && s.1 == concurrency)
                .map(pick)
                .collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let h2_cpu = median(Protocol::H2, |s| s.3);
        for p in [Protocol::H2, Protocol::H3] {
            let cpu = median(p, |s| s.3);
            println!(
                "  {:<10} {:>10.0} {:>12.1} {:>13.2}x",
                p.name(),
                median(p, |s| s.2),
                cpu,
                cpu / h2_cpu
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    H2,
    H3,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::H2 => "HTTP/2",
            Protocol::H3 => "HTTP/3",
        }
    }
}

fn client(protocol: Protocol) -> mummer::Client {
    let version = match protocol {
        Protocol::H2 => HttpVersionPref::Http2Only,
        Protocol::H3 => HttpVersionPref::Http3Only,
    };
    mummer::Client::builder(mummer::Profile::named("chrome-latest").expect("built-in profile"))
        .insecure(true)
        .http_version(version)
        .build()
        .expect("client")
}

async fn drive(
    client: &mummer::Client,
    url: &str,
    concurrency: usize,
    total: usize,
    body: usize,
    protocol: Protocol,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let r = client.get(&url).send().await.expect("request");
                let want = match protocol {
                    Protocol::H2 => http::Version::HTTP_2,
                    Protocol::H3 => http::Version::HTTP_3,
                };
                assert_eq!(r.version(), want);
                assert_eq!(r.body().len(), body, "whole body read");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
}

/// The child: an HTTP/2 and an HTTP/3 server with the same body, ports on stdout,
/// until stdin closes.
fn serve(body: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let payload = Bytes::from(vec![b'x'; body]);
        let h2_payload = payload.clone();
        let h2 = https::HttpsServer::start_with_alpn(
            &[b"h2"],
            Arc::new(move |_: &https::SeenRequest| https::Reply::ok(h2_payload.clone())),
            false,
        )
        .await;
        let h3 = h3site::H3Site::start_bench(payload).await;
        println!("{} {}", h2.addr.port(), h3.addr.port());
        let _ = std::io::stdout().flush();
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        })
        .await
        .expect("stdin");
        drop((h2, h3));
    });
}
