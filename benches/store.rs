//! Session stores at scale: bytes per session and save/load rates, for the file store
//! and a local `redis-server` (started by the benchmark on a free loopback port).
//!
//! ```text
//! cargo bench --bench store
//! cargo bench --bench store -- --sessions 2000 --cookies 50
//! ```
//!
//! Each session is a typical crawler identity: `--cookies` cookies over a few sites, a
//! jar without TLS tickets, encrypted with a snapshot key (as an engine with `snapshot_key`
//! stores it). Saves and loads run 32 at a time, as an engine saving on its interval
//! does. Run by `cargo test` it does a short smoke run.

#[path = "support/bench_args.rs"]
mod bench_args;
#[path = "../tests/support/redis.rs"]
mod redis_server;

use bench_args::BenchArgs;

use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use mummer::session::{Session, SnapshotKey};
use mummer::store::{FileStore, RedisStore, SessionStore};
use mummer::Profile;

fn session(cookies: usize) -> (String, Vec<u8>) {
    let s = Session::builder(Profile::named("chrome-latest").expect("profile"))
        .build()
        .expect("session");
    for i in 0..cookies {
        let site = i % 5;
        s.set_cookie(
            &format!("https://www.site{site}.test/"),
            &format!("c{i}=v{i}-0123456789abcdef0123456789abcdef; Path=/; Max-Age=86400; Secure; SameSite=Lax"),
        )
        .expect("cookie");
    }
    let key = SnapshotKey::from_bytes([9; 32]);
    let bytes = s.snapshot_bytes(Some(&key)).expect("snapshot");
    (s.id().to_string(), bytes)
}

async fn rate(
    store: &Arc<dyn SessionStore>,
    sessions: &[(String, Vec<u8>)],
    version: u64,
) -> (f64, f64) {
    let started = Instant::now();
    stream::iter(sessions)
        .for_each_concurrent(32, |(id, bytes)| {
            let store = store.clone();
            async move { store.save(id, version, bytes).await.expect("save") }
        })
        .await;
    let save = sessions.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    stream::iter(sessions)
        .for_each_concurrent(32, |(id, _)| {
            let store = store.clone();
            async move {
                store.load(id).await.expect("load").expect("present");
            }
        })
        .await;
    let load = sessions.len() as f64 / started.elapsed().as_secs_f64();
    (save, load)
}

fn main() {
    let args = BenchArgs::from_env();
    let full = args.full();
    let value = |name: &str| args.number(name);
    let count = value("--sessions").unwrap_or(if full { 2000 } else { 20 });
    let cookies = value("--cookies").unwrap_or(50);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let sessions: Vec<(String, Vec<u8>)> = (0..count).map(|_| session(cookies)).collect();
        let mean = sessions.iter().map(|(_, b)| b.len()).sum::<usize>() / count.max(1);
        println!(
            "session stores: {count} sessions x {cookies} cookies, encrypted snapshot {mean} bytes on average{}",
            if full { "" } else { " (smoke run; use `cargo bench --bench store`)" }
        );
        println!("  {:<40} {:>12} {:>12}", "store", "saves/s", "loads/s");

        let dir = tempfile::tempdir().expect("tempdir");
        let file: Arc<dyn SessionStore> = Arc::new(FileStore::open(dir.path()).expect("file store"));
        let (s, l) = rate(&file, &sessions, 1).await;
        println!("  {:<40} {:>12.0} {:>12.0}", "file (tmpfs or disk under /tmp)", s, l);

        let redis = redis_server::RedisServer::start();
        let before: u64 = used_memory(&redis);
        let store: Arc<dyn SessionStore> =
            Arc::new(RedisStore::open(&redis.url(), "bench").expect("redis store"));
        let (s, l) = rate(&store, &sessions, 1).await;
        println!("  {:<40} {:>12.0} {:>12.0}", "redis (local, appendfsync always)", s, l);
        let after: u64 = used_memory(&redis);
        println!(
            "  redis memory per session: {} bytes (used_memory delta / sessions; snapshot {mean} bytes)",
            after.saturating_sub(before) / count.max(1) as u64
        );
    });
}

fn used_memory(redis: &redis_server::RedisServer) -> u64 {
    redis
        .cli(&["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
