//! Side by side in one run: mummer's `Client`, `Session` and engine session, reqwest, a
//! raw `boring` + `http2` floor and wreq 6 (Chrome emulation), each in its own process
//! against one local HTTPS HTTP/2 server process, for CPU per request (1, 64 and 256 in
//! flight on 1 KiB bodies, 8 in flight on 256 KiB), bytes per idle session, bytes per
//! session holding one live connection, and CPU per new session and first request.
//!
//! ```text
//! cargo build --release --manifest-path benches/peers/wreq/Cargo.toml   # once, for wreq
//! cargo bench --bench peers
//! cargo bench --bench peers -- --rounds 5 --requests 50000
//! ```
//!
//! What each peer process does is `benches/peers/protocol.rs`. wreq is its own cargo
//! project (its BoringSSL fork cannot link next to `boring`); without its binary the
//! table says how to build it and runs the others. `MUMMER_WREQ_PEER=PATH` points at a
//! binary built elsewhere. Peers run one after the other, in a rotating order, for
//! each round; the table shows medians. Run by `cargo test` (without `--bench`) it does
//! a short smoke run so the benchmark cannot rot.

#[path = "support/bench_args.rs"]
mod bench_args;
#[path = "support/browser_headers.rs"]
mod browser_headers;
#[path = "../tests/support/https.rs"]
mod https;
#[path = "peers/protocol.rs"]
mod protocol;
#[path = "support/server_process.rs"]
mod server_process;

use std::alloc::System;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use bench_args::BenchArgs;
use browser_headers::browser_headers;
use bytes::Bytes;
use cap::Cap;
use tokio::sync::OnceCell;

/// Counts live heap bytes (the `cap` crate), in the peer processes.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The peers, in the order of the table.
const PEERS: [&str; 6] = [
    "floor",
    "reqwest",
    "wreq",
    "mummer-client",
    "mummer-session",
    "mummer-engine",
];

fn main() {
    if server_process::serve_if_child() {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(peer) = BenchArgs::from_env().text("--peer").map(str::to_owned) {
        match run_peer(&peer, &args) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("peer {peer}: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    drive_all(&BenchArgs::from_env());
}

// ---- the peers that live in this binary ----

fn run_peer(peer: &str, args: &[String]) -> Result<String, String> {
    let job = protocol::Job::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let heap = || ALLOCATOR.allocated();
    runtime.block_on(async move {
        match peer {
            "floor" => protocol::run(Arc::new(Floor::new()?), job, heap).await,
            "reqwest" => protocol::run(Arc::new(Reqwest(browser_headers())), job, heap).await,
            "mummer-client" => protocol::run(Arc::new(MummerClient), job, heap).await,
            "mummer-session" => protocol::run(Arc::new(MummerSession), job, heap).await,
            "mummer-engine" => {
                let engine = mummer::Engine::builder()
                    .max_sessions(1_000_000)
                    .start()
                    .map_err(|e| e.to_string())?;
                let line = protocol::run(Arc::new(MummerEngine(engine.clone())), job, heap).await;
                engine.shutdown().await;
                line
            }
            other => Err(format!("no peer {other:?} in this binary")),
        }
    })
}

/// The floor: one shared `SslConnector`, and per session a connection made on first
/// use (TCP, TLS with `tokio-boring`, the `http2` handshake) and nothing else.
struct Floor {
    connector: Arc<boring::ssl::SslConnector>,
    headers: http::HeaderMap,
}

impl Floor {
    fn new() -> Result<Floor, String> {
        let mut b = boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls())
            .map_err(|e| e.to_string())?;
        b.set_verify(boring::ssl::SslVerifyMode::NONE);
        b.set_alpn_protos(b"\x02h2").map_err(|e| e.to_string())?;
        Ok(Floor {
            connector: Arc::new(b.build()),
            headers: browser_headers(),
        })
    }
}

#[derive(Clone)]
struct FloorSession {
    connector: Arc<boring::ssl::SslConnector>,
    headers: http::HeaderMap,
    connection: Arc<OnceCell<http2::client::SendRequest<Bytes>>>,
}

impl FloorSession {
    async fn connect(&self, uri: &http::Uri) -> Result<http2::client::SendRequest<Bytes>, String> {
        let addr = format!(
            "{}:{}",
            uri.host().unwrap_or("127.0.0.1"),
            uri.port_u16().unwrap_or(443)
        );
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let config = self.connector.configure().map_err(|e| e.to_string())?;
        let tls = tokio_boring::connect(config, "localhost", tcp)
            .await
            .map_err(|e| e.to_string())?;
        // Chromium's windows (6 MiB per stream, 15 MiB per connection), as every
        // other peer here sets them: with the crate's 64 KiB default a 256 KiB body
        // waits for WINDOW_UPDATEs, which measures the window, not the client.
        let (send, connection) = http2::client::Builder::new()
            .initial_window_size(6_291_456)
            .initial_connection_window_size(15_728_640)
            .handshake(tls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(send)
    }
}

impl protocol::Peer for Floor {
    type Client = FloorSession;

    async fn make(&self) -> Result<FloorSession, String> {
        Ok(FloorSession {
            connector: self.connector.clone(),
            headers: self.headers.clone(),
            connection: Arc::new(OnceCell::new()),
        })
    }

    async fn get(session: &FloorSession, url: &str) -> Result<usize, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let send = session
            .connection
            .get_or_try_init(|| session.connect(&uri))
            .await?;
        let mut send = send.clone().ready().await.map_err(|e| e.to_string())?;
        let mut request = http::Request::get(uri)
            .body(())
            .map_err(|e| e.to_string())?;
        *request.headers_mut() = session.headers.clone();
        let (response, _) = send
            .send_request(request, true)
            .map_err(|e| e.to_string())?;
        let mut body = response.await.map_err(|e| e.to_string())?.into_body();
        let mut n = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            n += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok(n)
    }
}

/// reqwest 0.12 with rustls, sending the floor's header list.
struct Reqwest(http::HeaderMap);

impl protocol::Peer for Reqwest {
    type Client = (reqwest::Client, http::HeaderMap);

    async fn make(&self) -> Result<Self::Client, String> {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok((client, self.0.clone()))
    }

    async fn get((client, headers): &Self::Client, url: &str) -> Result<usize, String> {
        let response = client
            .get(url)
            .headers(headers.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.version() != http::Version::HTTP_2 {
            return Err(format!("reqwest spoke {:?}", response.version()));
        }
        Ok(response.bytes().await.map_err(|e| e.to_string())?.len())
    }
}

fn shared_profile() -> Result<Arc<mummer::Profile>, String> {
    mummer::Profile::shared("chrome-latest").map_err(|e| e.to_string())
}

fn checked(response: mummer::Response) -> Result<usize, String> {
    if response.version() != http::Version::HTTP_2 {
        return Err(format!("mummer spoke {:?}", response.version()));
    }
    Ok(response.body().len())
}

/// `mummer::Client` with `chrome-latest`.
struct MummerClient;

impl protocol::Peer for MummerClient {
    type Client = mummer::Client;

    async fn make(&self) -> Result<mummer::Client, String> {
        mummer::Client::builder(shared_profile()?)
            .insecure(true)
            .build()
            .map_err(|e| e.to_string())
    }

    async fn get(client: &mummer::Client, url: &str) -> Result<usize, String> {
        checked(client.get(url).send().await.map_err(|e| e.to_string())?)
    }
}

/// `mummer::Session` (cookies, navigation context, cache) with `chrome-latest`.
struct MummerSession;

impl protocol::Peer for MummerSession {
    type Client = mummer::Session;

    async fn make(&self) -> Result<mummer::Session, String> {
        mummer::Session::builder(shared_profile()?)
            .transport(|b| b.insecure(true))
            .build()
            .map_err(|e| e.to_string())
    }

    async fn get(session: &mummer::Session, url: &str) -> Result<usize, String> {
        checked(session.get(url).send().await.map_err(|e| e.to_string())?)
    }
}

/// A session of one shared `Engine` (supervisor, retry actor, breaker, dispatcher).
struct MummerEngine(mummer::Engine);

impl protocol::Peer for MummerEngine {
    type Client = mummer::EngineSession;

    async fn make(&self) -> Result<mummer::EngineSession, String> {
        let config =
            mummer::SessionConfig::profile("chrome-latest").transport(|b| b.insecure(true));
        let id = self
            .0
            .create_session(config)
            .await
            .map_err(|e| e.to_string())?;
        self.0.session(&id).await.map_err(|e| e.to_string())
    }

    async fn get(session: &mummer::EngineSession, url: &str) -> Result<usize, String> {
        checked(session.get(url).send().await.map_err(|e| e.to_string())?)
    }
}

// ---- the driver ----

/// One measurement: a mode and its arguments, on the server with `body`-byte bodies.
struct Scenario {
    title: &'static str,
    mode: &'static str,
    body: usize,
    args: Vec<(&'static str, usize)>,
    /// The figures of the output line shown, with their column titles.
    figures: &'static [(&'static str, &'static str)],
}

/// The wreq peer binary, if built.
fn wreq_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("MUMMER_WREQ_PEER") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = vec![root.join("benches/peers/wreq/target/release/wreq-peer")];
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("release/wreq-peer"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Runs one peer process; its output line as figures, or why it failed.
fn measure(
    peer: &str,
    wreq: Option<&PathBuf>,
    scenario: &Scenario,
    url: &str,
) -> Result<HashMap<String, f64>, String> {
    let mut command = match peer {
        "wreq" => Command::new(wreq.ok_or("not built")?),
        _ => {
            let mut c = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
            c.args(["--peer", peer]);
            c
        }
    };
    command.args(["--mode", scenario.mode, "--url", url]);
    for (name, value) in &scenario.args {
        command.arg(format!("--{name}")).arg(value.to_string());
    }
    let output = command
        .output()
        .map_err(|e| format!("could not start: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("{}: {}", output.status, stderr.trim()));
    }
    let figures: HashMap<String, f64> = stdout
        .split_whitespace()
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect();
    if figures.is_empty() {
        return Err(format!("no figures in {stdout:?}"));
    }
    Ok(figures)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied()
}

fn drive_all(args: &BenchArgs) {
    let full = args.full();
    let rounds = args.number("--rounds").unwrap_or(if full { 3 } else { 1 });
    let requests = args
        .number("--requests")
        .unwrap_or(if full { 20_000 } else { 200 });
    let sessions = args
        .number("--sessions")
        .unwrap_or(if full { 1000 } else { 20 });
    let only = args.text("--only").map(str::to_owned);
    let peers: Vec<&str> = PEERS
        .into_iter()
        .filter(|p| only.as_deref().is_none_or(|o| p.starts_with(o)))
        .collect();
    let wreq = wreq_binary();

    let throughput = &[
        ("cpu_us_per_req", "CPU us/req"),
        ("requests_per_s", "req/s"),
    ];
    let mut scenarios = Vec::new();
    for concurrency in [1, 64, 256] {
        scenarios.push(Scenario {
            title: "1 KiB bodies",
            mode: "throughput",
            body: 1024,
            args: vec![("requests", requests), ("concurrency", concurrency)],
            figures: throughput,
        });
    }
    scenarios.push(Scenario {
        title: "256 KiB bodies",
        mode: "throughput",
        body: 256 * 1024,
        args: vec![("requests", (requests / 10).max(20)), ("concurrency", 8)],
        figures: throughput,
    });
    scenarios.push(Scenario {
        title: "idle sessions, nothing sent",
        mode: "idle",
        body: 1024,
        args: vec![("sessions", sessions)],
        figures: &[
            ("heap_per_session", "heap B/session"),
            ("resident_per_session", "resident B/session"),
        ],
    });
    scenarios.push(Scenario {
        title: "new session + first request, each kept with its connection",
        mode: "fresh",
        body: 1024,
        args: vec![("sessions", sessions)],
        figures: &[
            ("cpu_us_per_new", "CPU us/new"),
            ("heap_per_session", "heap B/session"),
            ("resident_per_session", "resident B/session"),
        ],
    });

    println!(
        "peers side by side: {rounds} round(s), medians; one server process (TLS 1.3, HTTP/2) on loopback; each peer its own process, one tokio worker{}",
        if full { "" } else { " (smoke run; use `cargo bench --bench peers`)" }
    );
    if wreq.is_none() {
        println!(
            "wreq: not built (cargo build --release --manifest-path benches/peers/wreq/Cargo.toml)"
        );
    }
    let mut servers: HashMap<usize, server_process::ServerProcess> = HashMap::new();
    let mut failed = false;
    for scenario in &scenarios {
        let server = servers
            .entry(scenario.body)
            .or_insert_with(|| server_process::spawn(scenario.body));
        let url = format!("https://127.0.0.1:{}/bench", server.port);
        let mut samples: HashMap<&str, Vec<HashMap<String, f64>>> = HashMap::new();
        let mut errors: HashMap<&str, String> = HashMap::new();
        for round in 0..rounds {
            for i in 0..peers.len() {
                let peer = peers[(i + round) % peers.len()];
                if errors.contains_key(peer) {
                    continue;
                }
                match measure(peer, wreq.as_ref(), scenario, &url) {
                    Ok(figures) => samples.entry(peer).or_default().push(figures),
                    Err(e) => {
                        errors.insert(peer, e);
                    }
                }
            }
        }
        let described: Vec<String> = scenario
            .args
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "\n{} ({}: {})",
            scenario.title,
            scenario.mode,
            described.join(", ")
        );
        print!("  {:<16}", "peer");
        for (_, title) in scenario.figures {
            print!(" {title:>18}");
        }
        println!(" {:>12} {:>12}", "vs wreq", "vs floor");
        let of = |peer: &str, key: &str| {
            median(
                samples
                    .get(peer)
                    .map(|runs| runs.iter().filter_map(|f| f.get(key).copied()).collect())
                    .unwrap_or_default(),
            )
        };
        let (key, _) = scenario.figures[0];
        for peer in &peers {
            print!("  {peer:<16}");
            if let Some(e) = errors.get(peer) {
                if *peer != "wreq" || wreq.is_some() {
                    failed = true;
                }
                println!(" failed: {e}");
                continue;
            }
            for (figure, _) in scenario.figures {
                match of(peer, figure) {
                    Some(v) => print!(" {v:>18.1}"),
                    None => print!(" {:>18}", "-"),
                }
            }
            let ratio = |base: &str| match (of(peer, key), of(base, key)) {
                (Some(v), Some(b)) if b > 0.0 => format!("{:.2}x", v / b),
                _ => "-".to_owned(),
            };
            println!(" {:>12} {:>12}", ratio("wreq"), ratio("floor"));
        }
    }
    drop(servers);
    if failed {
        eprintln!("a peer failed: see the table");
        std::process::exit(1);
    }
}
