//! N workers, each driving its own session by id through one engine: the pattern of a
//! session manager, where a worker keeps its identity for its whole life.
//!
//! ```text
//! cargo run --example demo_site -- --write-cert /tmp/ca.pem --port-file /tmp/port &
//! cargo run --features cli --example worker_pool -- --url https://shop.test:$(cat /tmp/port)/products/1 \
//!     --resolve shop.test:$(cat /tmp/port):127.0.0.1 --cacert /tmp/ca.pem --workers 4 --requests 10
//! ```
//!
//! With `--store file:DIR` or `--store redis://HOST:PORT/DB`, the workers take the
//! stored sessions no other process holds before making new ones, and everything is
//! saved at the end: the next run continues with the same identities.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use mummer::net::ResolveOverride;
use mummer::store::open_store;
use mummer::{ClientBuilder, Engine, SessionConfig};

#[derive(Parser)]
#[command(about = "N workers, one session each, through one engine")]
struct Args {
    /// The URL each worker fetches.
    #[arg(long)]
    url: String,
    /// Workers (one session each).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Requests per worker.
    #[arg(long, default_value_t = 10)]
    requests: usize,
    /// Profile name or file.
    #[arg(long, default_value = "chrome-latest")]
    profile: String,
    /// HOST:PORT:ADDR override (repeatable).
    #[arg(long)]
    resolve: Vec<String>,
    /// Trust this CA bundle (PEM).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Skip certificate verification.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Keep the sessions in a store: file:DIR or redis://HOST:PORT/DB.
    #[arg(long)]
    store: Option<String>,
    /// Namespace of the store's keys (Redis).
    #[arg(long, default_value = "mummer")]
    namespace: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let resolve = args
        .resolve
        .iter()
        .map(|r| r.parse::<ResolveOverride>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = Engine::builder().max_sessions(args.workers.max(1));
    if let Some(url) = &args.store {
        builder = builder.store(open_store(url, &args.namespace)?);
    }
    let engine = builder.start()?;
    let transport = {
        let (resolve, ca, insecure) = (resolve.clone(), args.cacert.clone(), args.insecure);
        move |mut b: ClientBuilder| {
            for r in resolve.iter().cloned() {
                b = b.resolve(r);
            }
            if let Some(ca) = &ca {
                b = b.ca_file(ca.clone());
            }
            b.insecure(insecure)
        }
    };
    // Identities from earlier runs first (leased to this process), then new ones.
    let mut ids = match &args.store {
        Some(_) => engine.restore_sessions(&transport).await?,
        None => Vec::new(),
    };
    println!("{} session(s) restored", ids.len());
    while ids.len() < args.workers.max(1) {
        let config = SessionConfig::profile(&args.profile).transport(transport.clone());
        ids.push(engine.create_session(config).await?);
    }
    let mut workers = Vec::new();
    for (w, id) in ids.into_iter().enumerate() {
        let (engine, url, n) = (engine.clone(), args.url.clone(), args.requests);
        workers.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut ok = 0;
            for _ in 0..n {
                // Look the session up by id each time, as a worker handed only an id would.
                match engine.session(&id).await {
                    Ok(session) => match session.get(&url).send().await {
                        Ok(r) if r.status().is_success() => ok += 1,
                        Ok(r) => eprintln!("worker {w}: status {}", r.status()),
                        Err(e) => eprintln!("worker {w}: {e}"),
                    },
                    Err(e) => {
                        eprintln!("worker {w}: {e}");
                        break;
                    }
                }
            }
            println!(
                "worker {w} session {}: {ok}/{n} ok in {:?}",
                &id[..8],
                started.elapsed()
            );
        }));
    }
    for w in workers {
        w.await?;
    }
    for s in engine.list_sessions().await? {
        println!(
            "session {} {} requests, {} connection(s), {} cookies",
            &s.id[..8],
            s.request_count,
            s.transport.connections_opened,
            s.cookie_count
        );
    }
    engine.shutdown().await;
    Ok(())
}
