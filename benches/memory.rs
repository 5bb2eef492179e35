//! What an idle session weighs: heap bytes per kept `Client`, `Session` and engine
//! session, counted by a counting global allocator (`cap`) (live bytes after creating K of
//! them, minus before, over K), with the process's resident growth beside it.
//!
//! ```text
//! cargo bench --bench memory                   # K = 1000
//! cargo bench --bench memory -- --sessions 100000
//! ```
//!
//! Run by `cargo test` (without `--bench`) it keeps 50 of each so the benchmark cannot
//! rot. No network: nothing is sent, idle sessions are what is measured.

use std::alloc::System;

use cap::Cap;
use mummer::{Client, Engine, Profile, Session, SessionConfig};

/// Counts the bytes live on the heap (the `cap` crate: no allocator code of our own).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Heap bytes live now.
fn live() -> isize {
    ALLOCATOR.allocated() as isize
}

/// Resident set size of this process, bytes (0 where `/proc` is not there).
fn resident() -> isize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<isize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Heap and resident bytes per item for `k` items made by `make` and kept.
fn per_item<T>(k: usize, mut make: impl FnMut(usize) -> T) -> (f64, f64, Vec<T>) {
    let (heap0, rss0) = (live(), resident());
    let kept: Vec<T> = (0..k).map(&mut make).collect();
    let (heap1, rss1) = (live(), resident());
    let k = k as f64;
    ((heap1 - heap0) as f64 / k, (rss1 - rss0) as f64 / k, kept)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let k = args
        .iter()
        .position(|a| a == "--sessions")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if full { 1000 } else { 50 });
    // `--only client|session|engine|profile`: one kind in a fresh process, so the
    // resident figure is not memory an earlier kind freed and this one reused.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let wants = |kind: &str| only.as_deref().is_none_or(|o| o == kind);
    // Shared, as `SessionConfig::profile` and the API share built-ins: one copy of
    // the profile and one set of compiled templates for all.
    let profile = Profile::shared("chrome-latest").expect("a built-in profile");
    // One of each first, so what every later one shares (TLS contexts, built-in
    // profiles parsed once) is not counted against the first K.
    let warm = Session::builder(profile.clone()).build().expect("session");
    println!("idle weight, {k} kept (heap: counting allocator; resident: /proc/self/statm)");

    if wants("profile") {
        let (heap, rss, copies) = per_item(k, |_| Profile::clone(&profile));
        println!("  (Profile copy   {heap:>9.0} B heap  {rss:>9.0} B resident)");
        drop(copies);
    }
    if wants("client") {
        let (heap, rss, clients) = per_item(k, |_| {
            Client::builder(profile.clone()).build().expect("client")
        });
        println!("  Client          {heap:>9.0} B heap  {rss:>9.0} B resident");
        drop(clients);
    }
    if wants("session") {
        let (heap, rss, sessions) = per_item(k, |_| {
            Session::builder(profile.clone()).build().expect("session")
        });
        println!("  Session         {heap:>9.0} B heap  {rss:>9.0} B resident");
        drop(sessions);
    }
    if !wants("engine") {
        return;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let engine = Engine::builder()
            .max_sessions(k + 1)
            .start()
            .expect("engine");
        let (heap0, rss0) = (live(), resident());
        // 256 creations in flight at a time, as a crawler starting up would.
        let started = std::time::Instant::now();
        let mut left = k;
        while left > 0 {
            let batch = left.min(256);
            let creations = (0..batch)
                .map(|_| engine.create_session(SessionConfig::profile("chrome-latest")));
            for created in futures_util::future::join_all(creations).await {
                created.expect("session");
            }
            left -= batch;
        }
        let took = started.elapsed();
        let (heap1, rss1) = (live(), resident());
        let n = k as f64;
        println!(
            "  engine session  {:>9.0} B heap  {:>9.0} B resident  ({:.0} created per second, 256 at a time)",
            (heap1 - heap0) as f64 / n,
            (rss1 - rss0) as f64 / n,
            n / took.as_secs_f64()
        );
        let started = std::time::Instant::now();
        engine.shutdown().await;
        println!("  engine shutdown with {k} idle sessions: {:?}", started.elapsed());
    });
    drop(warm);
}
