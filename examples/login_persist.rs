//! Log in once, keep using the session, survive a restart: the session is saved to a
//! file (encrypted when `MUMMER_SESSION_KEY` holds 64 hex digits) and restored on the
//! next run, which skips the login and resumes TLS.
//!
//! ```text
//! cargo run --example demo_site -- --write-cert /tmp/ca.pem --port-file /tmp/port &
//! P=$(cat /tmp/port)
//! cargo run --features cli --example login_persist -- --base https://shop.test:$P --resolve shop.test:$P:127.0.0.1 \
//!     --cacert /tmp/ca.pem --session-file /tmp/alice.session      # logs in
//! cargo run --features cli --example login_persist -- ... (same again)            # restored: no login
//! ```
//!
//! With `--store file:DIR` (or `redis://HOST:PORT/DB`) instead of `--session-file`, the
//! session lives in a store: the first run prints its id, and `--session-id ID` checks
//! it out (leased while in use) on the next run, on this machine or another.

use std::path::PathBuf;

use clap::Parser;
use mummer::net::ResolveOverride;
use mummer::store::open_store;
use mummer::{ClientBuilder, Engine, Profile, Session, SnapshotKey};

#[derive(Parser)]
#[command(about = "Log in once and keep the session across restarts")]
struct Args {
    /// Site base URL (https://host:port).
    #[arg(long)]
    base: String,
    /// Where the session lives between runs.
    #[arg(long = "session-file", required_unless_present = "store")]
    session_file: Option<PathBuf>,
    /// Or a store: file:DIR or redis://HOST:PORT/DB.
    #[arg(long, conflicts_with = "session_file")]
    store: Option<String>,
    /// Namespace of the store's keys (Redis).
    #[arg(long, default_value = "mummer")]
    namespace: String,
    /// The session's id in the store (from the first run).
    #[arg(long = "session-id", requires = "store")]
    session_id: Option<String>,
    /// HOST:PORT:ADDR override (repeatable).
    #[arg(long)]
    resolve: Vec<String>,
    /// Trust this CA bundle (PEM).
    #[arg(long)]
    cacert: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let resolve = args
        .resolve
        .iter()
        .map(|r| r.parse::<ResolveOverride>())
        .collect::<Result<Vec<_>, _>>()?;
    let key = match std::env::var("MUMMER_SESSION_KEY") {
        Ok(hex) => Some(SnapshotKey::from_hex(&hex)?),
        Err(_) => None,
    };
    let ca = args.cacert.clone();
    let transport = move |mut b: ClientBuilder| {
        for r in resolve {
            b = b.resolve(r);
        }
        if let Some(ca) = ca {
            b = b.ca_file(ca);
        }
        b
    };
    let mut builder = Engine::builder();
    if let Some(url) = &args.store {
        builder = builder.store(open_store(url, &args.namespace)?);
        if let Some(key) = &key {
            builder = builder.snapshot_key(key.clone());
        }
    }
    let engine = builder.start()?;
    let (id, restored) = match (&args.session_file, &args.session_id) {
        (Some(file), _) if file.exists() => {
            let session = Session::load(file, key.as_ref(), transport)?;
            (engine.adopt_session(session).await?, true)
        }
        (None, Some(id)) => (engine.checkout_session(id, transport).await?, true),
        _ => {
            let s = Session::builder(Profile::named("chrome-latest")?)
                .transport(transport)
                .build()?;
            (engine.adopt_session(s).await?, false)
        }
    };
    let handle = engine.session(&id).await?;
    let session = handle.session().clone();
    if restored {
        println!(
            "restored session {} ({} cookies)",
            &id[..8],
            session.cookies().len()
        );
    } else {
        let r = handle.get(&format!("{}/login", args.base)).send().await?;
        println!("logged in: {} -> {}", r.status(), r.url());
    }
    let account = handle.get(&format!("{}/account", args.base)).send().await?;
    let resumed = account.tls().is_some_and(|t| t.resumed);
    let logged_in = account.text().contains("Logged in");
    println!(
        "account page: {} ({}), TLS resumed: {resumed}",
        account.status(),
        if logged_in {
            "logged in"
        } else {
            "not logged in"
        }
    );
    match &args.session_file {
        Some(file) => {
            session.save(file, key.as_ref())?;
            println!("saved to {}", file.display());
        }
        None => println!("saved in the store; next run: --session-id {id}"),
    }
    // With a store, shutdown saves the session and releases its lease.
    engine.shutdown().await;
    Ok(())
}
