//! `mummer serve`: an engine behind the HTTP/JSON message API, with an optional local
//! forward proxy; and `mummer ca export`, which writes the proxy's CA certificate.

use mummer::destination::DestinationPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mummer::api::ca::{self, LocalCa};
use mummer::api::proxy::{ForwardProxy, ProxyConfig};
use mummer::api::{ApiConfig, ApiServer, TransportOptions};
use mummer::rate::Rate;
use mummer::Engine;
use mummer::RetryPolicy;

use crate::session_cmd::session_key;
use crate::CliResult;

/// `mummer serve` options.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address of the HTTP/JSON API.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Bearer token the API (and the proxy) require; needed to bind beyond loopback
    /// (or MUMMER_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// Tenants' tokens (TOML `[tenants] NAME = "TOKEN"`, or the same as JSON): a
    /// tenant's token sees and creates only that tenant's sessions, in the API and
    /// through the proxy.
    #[arg(long = "tenant-tokens")]
    tenant_tokens: Option<PathBuf>,
    /// Also run a forward proxy here (e.g. 127.0.0.1:8080).
    #[arg(long = "proxy-listen")]
    proxy_listen: Option<SocketAddr>,
    /// Terminate CONNECT tunnels with certificates from the local CA (see `mummer ca
    /// export`), so HTTPS leaves with the session's fingerprint.
    #[arg(long, requires = "proxy_listen")]
    mitm: bool,
    /// Directory of the local CA (default $MUMMER_HOME/ca or ~/.mummer/ca).
    #[arg(long = "ca-dir")]
    ca_dir: Option<PathBuf>,
    /// Session for proxy requests without X-Mummer-Session.
    #[arg(long = "default-session", requires = "proxy_listen")]
    default_session: Option<String>,
    /// Most live sessions.
    #[arg(long = "max-sessions", default_value_t = 100)]
    max_sessions: usize,
    /// Seconds a session may stay unused before it is reaped.
    #[arg(long = "idle-timeout", default_value = "1800", value_parser = mummer::flags::seconds)]
    idle_timeout: Duration,
    /// Seconds between reaper runs.
    #[arg(long = "reap-interval", default_value = "60", value_parser = mummer::flags::seconds)]
    reap_interval: Duration,
    /// At the limit, close the least recently used idle session instead of refusing.
    #[arg(long = "evict-idle")]
    evict_idle: bool,
    /// Session store: file:DIR or redis://HOST:PORT/DB.
    #[arg(long)]
    store: Option<String>,
    /// Key prefix in the store.
    #[arg(long, default_value = "mummer")]
    namespace: String,
    /// Check out every stored session no other worker holds, at start.
    #[arg(long, requires = "store")]
    restore: bool,
    /// Snapshot encryption key, 64 hex digits (or MUMMER_SESSION_KEY).
    #[arg(long = "session-key")]
    session_key: Option<String>,
    /// Requests per second per target host, across sessions.
    #[arg(long = "rps-per-host", value_parser = mummer::flags::rate)]
    rps_per_host: Option<f64>,
    /// Count host breakers, --rps-per-host and 429 slow-downs over all tenants, not per
    /// tenant (by default one tenant's failures or 429s cannot stop or slow another's).
    #[arg(long)]
    global_host_budget: bool,
    /// Requests per second per session.
    #[arg(long = "rps-per-session", value_parser = mummer::flags::rate)]
    rps_per_session: Option<f64>,
    /// Retries after the first attempt.
    #[arg(long = "max-retries", default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=100))]
    max_retries: u16,
    /// First backoff delay, milliseconds.
    #[arg(long = "retry-base-ms", default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=MAX_BACKOFF_MS))]
    retry_base_ms: u64,
    /// Largest backoff delay, milliseconds.
    #[arg(long = "retry-max-ms", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(0..=MAX_BACKOFF_MS))]
    retry_max_ms: u64,
    /// Deadline of one request with its retries, seconds.
    #[arg(long = "request-deadline", default_value = "120", value_parser = mummer::flags::seconds)]
    request_deadline: Duration,
    /// Proxy pools and routes (TOML or JSON, see docs/proxies.md): sessions take their
    /// exit from the pool their target and tenant route to.
    #[arg(long)]
    proxies: Option<PathBuf>,
    /// Fetch and obey robots.txt (user agent `mummer`).
    #[arg(long)]
    robots: bool,
    /// HOST:PORT:ADDR override for every session.
    #[arg(long)]
    resolve: Vec<String>,
    /// Extra trust anchors (PEM) for every session.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Skip certificate verification for every session.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Let API callers name files on this machine (a profile file, `cacert`); by
    /// default they get built-in profile names and inline profile JSON only.
    #[arg(long)]
    allow_file_paths: bool,
    /// Let sessions reach loopback, private (RFC 1918, fc00::/7) and link-local
    /// addresses; by default every session the API or the proxy drives is refused them
    /// (checked after DNS, on every redirect and connection). This server's own ports
    /// stay refused.
    #[arg(long)]
    allow_private: bool,
    /// Allow one network (10.1.0.0/16), address, host (wiki.corp) or domain (.corp)
    /// despite the destination policy; repeat for more.
    #[arg(long = "allow-destination", value_name = "CIDR|HOST")]
    allow_destination: Vec<String>,
    /// text or json.
    #[arg(long = "log-format", default_value = "text")]
    log_format: String,
    /// Write {"api": ADDR, "proxy": ADDR} here once listening (for scripts using port 0).
    #[arg(long = "ready-file")]
    ready_file: Option<PathBuf>,
}

/// `mummer ca export` options.
#[derive(clap::Args)]
pub struct CaExportArgs {
    /// Directory of the local CA (created when missing).
    #[arg(long = "ca-dir")]
    ca_dir: Option<PathBuf>,
    /// Write the certificate here instead of stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

/// The longest backoff delay the retry flags take: an hour.
const MAX_BACKOFF_MS: u64 = 3_600_000;

fn init_logs(format: &str) -> CliResult {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match format {
        "text" => builder.try_init(),
        "json" => builder.json().flatten_event(true).try_init(),
        other => return Err(format!("--log-format must be text or json, not `{other}`").into()),
    };
    installed.map_err(|e| format!("cannot set up logging: {e}").into())
}

pub async fn serve(args: ServeArgs) -> CliResult {
    init_logs(&args.log_format)?;
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("MUMMER_TOKEN").ok());
    let key = session_key(args.session_key.as_deref())?;
    let defaults = TransportOptions {
        resolve: args.resolve.clone(),
        cacert: args.cacert.clone(),
        insecure: args.insecure.then_some(true),
        ..Default::default()
    };
    let tenant_tokens = match &args.tenant_tokens {
        Some(path) => mummer::api::TenantTokens::load(path)?,
        None => mummer::api::TenantTokens::new(),
    };
    let mut policy = DestinationPolicy::public_only().allow_private(args.allow_private);
    for entry in &args.allow_destination {
        policy = policy
            .allow(entry)
            .map_err(|e| format!("--allow-destination: {e}"))?;
    }
    let policy = Arc::new(policy);
    // Everything that can be refused is checked before anything starts.
    let tenants = !tenant_tokens.is_empty();
    mummer::api::check_exposure("API", args.listen, token.as_deref(), tenants)?;
    if let Some(p) = args.proxy_listen {
        mummer::api::check_exposure("proxy", p, token.as_deref(), tenants)?;
    }
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;

    let mut builder = Engine::builder()
        .max_sessions(args.max_sessions)
        .idle_timeout(args.idle_timeout)
        .reap_interval(args.reap_interval)
        .evict_idle_at_limit(args.evict_idle)
        .retry(RetryPolicy {
            max_retries: usize::from(args.max_retries),
            base_delay: Duration::from_millis(args.retry_base_ms),
            max_delay: Duration::from_millis(args.retry_max_ms.max(args.retry_base_ms)),
            deadline: args.request_deadline,
            ..RetryPolicy::default()
        })
        .respect_robots(args.robots.then_some("mummer"))
        .global_host_budget(args.global_host_budget);
    if let Some(r) = args.rps_per_host {
        builder = builder.rate_limit_per_host(Rate::per_second(r));
    }
    if let Some(r) = args.rps_per_session {
        builder = builder.rate_limit_per_session(Rate::per_second(r));
    }
    if let Some(url) = &args.store {
        builder = builder.store(mummer::store::open_store(url, &args.namespace)?);
    }
    if let Some(k) = &key {
        builder = builder.snapshot_key(k.clone());
    }
    if let Some(path) = &args.proxies {
        let file = mummer::proxies::ProxiesFile::load(path)?;
        builder = builder.proxies(mummer::proxies::ProxyRouter::from_file(&file)?);
    }
    let engine = builder.start()?;
    if args.restore {
        let parsed = defaults
            .parse_over(&TransportOptions::default())?
            .with_destination(Some(policy.clone()));
        let restored = engine
            .restore_sessions(move |b| parsed.clone().apply(b))
            .await?;
        tracing::info!(count = restored.len(), "restored sessions from the store");
    }

    let proxy = match args.proxy_listen {
        Some(listen) => {
            let mitm = if args.mitm {
                let dir = args.ca_dir.clone().unwrap_or_else(ca::default_dir);
                Some(Arc::new(LocalCa::load_or_create(&dir)?))
            } else {
                None
            };
            Some(
                ForwardProxy::start(
                    engine.clone(),
                    ProxyConfig {
                        listen,
                        mitm,
                        default_session: args.default_session.clone(),
                        token: token.clone(),
                        tenant_tokens: tenant_tokens.clone(),
                        limits: mummer::api::ServerLimits::default(),
                    },
                )
                .await?,
            )
        }
        None => None,
    };
    if let Some(p) = &proxy {
        policy.refuse_own(p.local_addr());
    }
    let api = ApiServer::start(
        engine.clone(),
        ApiConfig {
            listen: args.listen,
            token,
            tenant_tokens,
            defaults,
            snapshot_key: key,
            metrics: Some(metrics),
            allow_file_paths: args.allow_file_paths,
            limits: mummer::api::ServerLimits::default(),
            destination: Some(policy),
        },
        proxy.as_ref().map(ForwardProxy::stats),
    )
    .await?;
    let proxy_addr = proxy.as_ref().map(|p| p.local_addr().to_string());
    tracing::info!(api = %api.local_addr(), proxy = ?proxy_addr, "mummer serve is listening");
    if let Some(path) = &args.ready_file {
        let ready = serde_json::json!({ "api": api.local_addr().to_string(), "proxy": proxy_addr });
        std::fs::write(path, ready.to_string())?;
    }

    let mut stopping = api.stopping();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = terminate.recv() => tracing::info!("terminated; shutting down"),
        _ = stopping.wait_for(|s| *s) => {}
    }
    api.stop();
    if let Some(p) = proxy {
        p.stop().await;
    }
    if tokio::time::timeout(Duration::from_secs(30), api.stopped())
        .await
        .is_err()
    {
        tracing::warn!("API calls still running after 30 s; shutting the engine down under them");
    }
    engine.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

pub fn ca_export(args: CaExportArgs) -> CliResult {
    let dir = args.ca_dir.unwrap_or_else(ca::default_dir);
    let ca = LocalCa::load_or_create(&dir)?;
    match args.output {
        Some(path) => std::fs::write(&path, ca.cert_pem())?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&ca.cert_pem())?;
        }
    }
    Ok(())
}
