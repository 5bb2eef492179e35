//! The peer protocol of the side-by-side benchmark (`benches/peers.rs`): what one peer
//! process does and prints. Every peer (mummer's layers, reqwest, the raw floor, and
//! wreq, which is its own cargo project because its BoringSSL fork cannot link next to
//! `boring`) is run as a separate process with the same command line, so each one's CPU
//! and memory are its own and measured the same way:
//!
//! ```text
//! PEER --mode throughput --url URL --requests N --concurrency C
//!     one client, a warm-up of 100 requests, then N GETs from C tasks
//!     prints: cpu_us_per_req=F requests_per_s=F
//! PEER --mode idle --sessions K
//!     K clients (sessions) made and kept, nothing sent
//!     prints: heap_per_session=F resident_per_session=F
//! PEER --mode fresh --url URL --sessions K
//!     K times, one after the other: a new client and its first request; all kept, so
//!     each holds its one TLS + HTTP/2 connection
//!     prints: cpu_us_per_new=F heap_per_session=F resident_per_session=F
//! ```
//!
//! Heap bytes come from the `cap` counting allocator each peer installs, resident bytes
//! from `/proc/self/statm`, CPU from `CLOCK_PROCESS_CPUTIME_ID` around the measured phase
//! only (the server is another process); for instruction counts, see
//! [`measured_phase_boundary`]. This file is shared by `#[path]` between the
//! mummer bench and the wreq peer, so the two cannot measure differently.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cpu_time::ProcessTime;

/// One peer: how it makes a client (a session) and sends one GET with it.
pub trait Peer: Send + Sync + 'static {
    /// A client, cheap to clone (shared by the request tasks).
    type Client: Clone + Send + Sync + 'static;

    /// A new client (for the engine: a new session in one shared engine).
    fn make(&self) -> impl Future<Output = Result<Self::Client, String>> + Send;

    /// One GET of `url` over HTTP/2; the body's length.
    fn get(client: &Self::Client, url: &str) -> impl Future<Output = Result<usize, String>> + Send;
}

/// What was asked on the command line.
pub struct Job {
    mode: String,
    url: String,
    requests: usize,
    concurrency: usize,
    sessions: usize,
}

impl Job {
    /// Reads `--mode`, `--url`, `--requests`, `--concurrency`, `--sessions`.
    pub fn from_args(args: &[String]) -> Result<Job, String> {
        let text = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let number = |name: &str, default: usize| match text(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| format!("{name} wants a number, got {v:?}")),
        };
        let job = Job {
            mode: text("--mode").ok_or("--mode throughput|idle|fresh is required")?,
            url: text("--url").unwrap_or_default(),
            requests: number("--requests", 1000)?,
            concurrency: number("--concurrency", 1)?.max(1),
            sessions: number("--sessions", 1000)?.max(1),
        };
        if job.mode != "idle" && job.url.is_empty() {
            return Err(format!("--mode {} needs --url", job.mode));
        }
        Ok(job)
    }
}

/// Heap and resident bytes now; `heap` is the peer's counting allocator.
#[derive(Clone, Copy)]
pub struct Memory {
    heap: usize,
    resident: usize,
}

impl Memory {
    /// Reads the resident set now and pairs it with `heap`.
    pub fn now(heap: usize) -> Memory {
        let resident = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
            .map_or(0, |pages| pages * 4096);
        Memory { heap, resident }
    }
}

/// Runs `job` with `peer` and prints its one result line. `heap` reads the counting
/// allocator's live bytes.
pub async fn run<P: Peer>(peer: Arc<P>, job: Job, heap: fn() -> usize) -> Result<String, String> {
    match job.mode.as_str() {
        "throughput" => {
            let client = peer.make().await?;
            drive::<P>(&client, &job.url, job.concurrency, 100.min(job.requests)).await?;
            measured_phase_boundary();
            let (cpu, wall) = (ProcessTime::now(), Instant::now());
            drive::<P>(&client, &job.url, job.concurrency, job.requests).await?;
            let (cpu, wall) = (cpu.elapsed(), wall.elapsed());
            measured_phase_boundary();
            let n = job.requests as f64;
            Ok(format!(
                "cpu_us_per_req={:.2} requests_per_s={:.0}",
                cpu.as_secs_f64() * 1e6 / n,
                n / wall.as_secs_f64()
            ))
        }
        "idle" => {
            // One first, so what all share (contexts, profiles) is not counted.
            let warm = peer.make().await?;
            let before = Memory::now(heap());
            let mut kept = Vec::with_capacity(job.sessions);
            for _ in 0..job.sessions {
                kept.push(peer.make().await?);
            }
            let after = Memory::now(heap());
            let line = per_session(before, after, job.sessions);
            drop((warm, kept));
            Ok(line)
        }
        "fresh" => {
            let warm = peer.make().await?;
            P::get(&warm, &job.url).await?;
            let before = Memory::now(heap());
            let cpu = ProcessTime::now();
            let mut kept = Vec::with_capacity(job.sessions);
            for _ in 0..job.sessions {
                let client = peer.make().await?;
                P::get(&client, &job.url).await?;
                kept.push(client);
            }
            let cpu = cpu.elapsed();
            let after = Memory::now(heap());
            let line = format!(
                "cpu_us_per_new={:.1} {}",
                cpu.as_secs_f64() * 1e6 / job.sessions as f64,
                per_session(before, after, job.sessions)
            );
            drop((warm, kept));
            Ok(line)
        }
        other => Err(format!("unknown --mode {other:?}")),
    }
}

/// Called right before and right after the measured requests and nowhere else: under
/// `valgrind --tool=callgrind --dump-before='*measured_phase_boundary'` the second dump
/// counts the measured requests alone, for every peer alike.
#[inline(never)]
pub fn measured_phase_boundary() {
    std::hint::black_box(());
}

fn per_session(before: Memory, after: Memory, k: usize) -> String {
    let per = |a: usize, b: usize| (b as f64 - a as f64) / k as f64;
    format!(
        "heap_per_session={:.0} resident_per_session={:.0}",
        per(before.heap, after.heap),
        per(before.resident, after.resident)
    )
}

/// `total` GETs from `concurrency` tasks pulling from one counter.
async fn drive<P: Peer>(
    client: &P::Client,
    url: &str,
    concurrency: usize,
    total: usize,
) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                P::get(&client, &url).await?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("request task: {e}"))??;
    }
    Ok(())
}
