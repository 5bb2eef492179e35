//! The supervisor's message API (`mummer serve`): an HTTP/JSON server over an
//! [`Engine`], and a local forward proxy that sends ordinary HTTP
//! clients' requests out through its sessions, so programs in any language drive
//! browser-true sessions without linking Rust.
//!
//! - [`ApiServer`] serves the routes of `docs/openapi.json` (the table is in `routes`);
//!   errors are RFC 9457 problem details (`problem`).
//! - [`proxy::ForwardProxy`] takes plain proxy traffic and, with a [`ca::LocalCa`],
//!   terminates CONNECT tunnels so the request leaves with the session's fingerprint.
//! - [`access`]: the operator's token and the tenants' tokens; a tenant's token sees
//!   only that tenant's sessions.
//! - Secrets (cookie, set-cookie, authorization, proxy-authorization values) never
//!   appear in API output or logs (`wire::shown_value`).
//!
//! ```no_run
//! # async fn run() -> mummer::Result<()> {
//! use mummer::api::{ApiConfig, ApiServer};
//! let engine = mummer::Engine::builder().start()?;
//! let server = ApiServer::start(engine.clone(), ApiConfig::default(), None).await?;
//! println!("API on http://{}", server.local_addr());
//! server.stopped().await; // after POST /v1/shutdown
//! engine.shutdown().await;
//! # Ok(()) }
//! ```

pub mod access;
pub mod ca;
mod limits;
mod problem;
pub mod proxy;
mod routes;
pub mod transport;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use self::access::{Caller, TenantTokens};
pub use self::limits::ServerLimits;
pub use self::problem::Problem;
pub use self::routes::OPENAPI;
pub use self::transport::TransportOptions;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::session::SnapshotKey;

/// How the API server listens and what it gives new sessions.
#[derive(Clone)]
pub struct ApiConfig {
    /// Where to listen (default `127.0.0.1:7878`).
    pub listen: SocketAddr,
    /// The operator's bearer token (every tenant's sessions); a token (this or a
    /// tenant's) is required when `listen` is not a loopback address.
    pub token: Option<String>,
    /// Tenants' bearer tokens: each sees and creates only its own tenant's sessions.
    pub tenant_tokens: TenantTokens,
    /// Transport defaults for every session created or restored through the API.
    pub defaults: TransportOptions,
    /// Key for snapshot export and import (plain JSON without one).
    pub snapshot_key: Option<SnapshotKey>,
    /// Renders `/metrics`; without it `/metrics` answers 404.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Whether callers may name files on the server (a profile file, `cacert`). Off by
    /// default: callers get built-in profile names and inline profile JSON only.
    pub allow_file_paths: bool,
    /// Time and size limits on what callers send.
    pub limits: ServerLimits,
    /// Where the sessions the API and the proxy drive may connect
    /// ([`crate::destination`]); none allows every address. `mummer serve` refuses
    /// loopback, private and link-local addresses and its own ports by default. The
    /// server adds its own listening address to the policy once bound.
    pub destination: Option<Arc<crate::destination::DestinationPolicy>>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            token: None,
            tenant_tokens: TenantTokens::new(),
            defaults: TransportOptions::default(),
            snapshot_key: None,
            metrics: None,
            allow_file_paths: false,
            limits: ServerLimits::default(),
            destination: None,
        }
    }
}

/// Refuses a listener that other machines can reach unless it has a token (the
/// operator's, or tenants' tokens when `tenants` is true).
///
/// # Errors
///
/// [`Error::is_invalid_input`] saying what to add.
pub fn check_exposure(
    what: &str,
    listen: SocketAddr,
    token: Option<&str>,
    tenants: bool,
) -> Result<()> {
    match token {
        Some(t) if t.len() < access::MIN_TOKEN_LEN => Err(Error::invalid_input(format!(
            "the {what} token is too short: use at least {} characters",
            access::MIN_TOKEN_LEN
        ))),
        None if !tenants && !listen.ip().is_loopback() => Err(Error::invalid_input(format!(
            "refusing to serve the {what} on {listen} without --token: anyone who can reach it could drive the sessions; bind to 127.0.0.1 or pass --token"
        ))),
        _ => Ok(()),
    }
}

/// Serves `app` on `listener` until `stop` turns true, then waits for the requests in
/// flight. axum's own `serve` has no header timeout, so a client that connects and
/// sends nothing (or a byte a minute) would hold its connection for ever; hyper's HTTP/1
/// server with [`ServerLimits::http1`] closes it.
async fn serve_api(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = hyper_util::service::TowerToHyperService::new(app);
    accept_until_stopped(&listener, &mut stop, "api", |tcp| {
        let conn = limits
            .http1()
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target: "mummer::api", error = %e, "client connection ended with an error");
            }
        });
    })
    .await;
    drop(listener);
    graceful.shutdown().await;
}

/// Accepts connections on `listener` (with `TCP_NODELAY`) and hands each to `serve`
/// until `stop` turns true; a failed accept (out of file descriptors, say) is logged
/// and retried after 50 ms. The one accept loop of the API and the proxy.
pub(crate) async fn accept_until_stopped(
    listener: &tokio::net::TcpListener,
    stop: &mut watch::Receiver<bool>,
    server: &'static str,
    mut serve: impl FnMut(tokio::net::TcpStream),
) {
    loop {
        tokio::select! {
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    serve(tcp);
                }
                Err(e) => {
                    tracing::warn!(target: "mummer::api", server, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Binds a listener for the API or the proxy; the error names the address.
pub(crate) async fn bind(listen: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::invalid_input(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::invalid_input(format!("listener address: {e}")))?;
    Ok((listener, addr))
}

/// A running API server.
pub struct ApiServer {
    addr: SocketAddr,
    stopping: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// Binds `config.listen` and serves the API over `engine` (with `proxy`'s stats when
    /// a forward proxy runs beside it).
    ///
    /// # Errors
    ///
    /// [`check_exposure`] refusing the address, or the bind failing (address in use).
    pub async fn start(
        engine: Engine,
        config: ApiConfig,
        proxy: Option<Arc<proxy::ProxyStats>>,
    ) -> Result<ApiServer> {
        check_exposure(
            "API",
            config.listen,
            config.token.as_deref(),
            !config.tenant_tokens.is_empty(),
        )?;
        config
            .defaults
            .parse_over(&TransportOptions::default())
            .map_err(|e| Error::invalid_input(format!("server transport defaults: {e}")))?;
        let (listener, addr) = bind(config.listen).await?;
        if let Some(policy) = &config.destination {
            policy.refuse_own(addr);
        }
        let (stopping, _) = watch::channel(false);
        let state = routes::ApiState {
            engine,
            defaults: Arc::new(config.defaults),
            snapshot_key: config.snapshot_key,
            metrics: config.metrics,
            allow_file_paths: config.allow_file_paths,
            limits: config.limits,
            destination: config.destination.clone(),
            proxy,
            access: access::Access::new(config.token.as_deref(), &config.tenant_tokens),
            stopping: stopping.clone(),
        };
        let app = routes::router(state);
        let task = tokio::spawn(serve_api(
            listener,
            app,
            config.limits,
            stopping.subscribe(),
        ));
        Ok(ApiServer {
            addr,
            stopping,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A receiver that turns true when a shutdown is asked for (`POST /v1/shutdown` or
    /// [`ApiServer::stop`]).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Starts a graceful stop: no new connections, running calls finish, event streams
    /// end.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Waits until a stop was asked for and every connection has finished.
    pub async fn stopped(self) {
        let _ = self.stopping.subscribe().wait_for(|s| *s).await;
        let _ = self.task.await;
    }
}
