//! The local forward proxy of `mummer serve --proxy-listen`: ordinary HTTP proxy
//! traffic in, requests out through a session's fingerprinted transport.
//!
//! - The session is picked by `X-Mummer-Session: <id>` (on the request, or on the
//!   CONNECT that opened the tunnel); a missing or unknown id is a 400/404 unless the
//!   proxy has a default session.
//! - `http://` absolute-form requests go out as `http://`, or as `https://` with
//!   `X-Mummer-Scheme: https`.
//! - CONNECT is served only with a [`LocalCa`] (`--mitm`): the client's TLS ends here
//!   with a certificate for the host signed by that CA, and each request inside goes
//!   out with the session's TLS and HTTP/2. Without it CONNECT is refused, because a
//!   blind tunnel would carry the client's own fingerprint.
//!
//! What the session owns and the client's request does not override: `user-agent`,
//! `accept-encoding` (the body comes back decoded), client hints and `sec-fetch-*`,
//! `upgrade-insecure-requests`, `priority`, and an `accept: */*` (curl's). Hop-by-hop and
//! proxy headers are dropped both ways. Cookies belong to the session: the jar stores a
//! response's `Set-Cookie` and it is not passed to the client, so a cookie-keeping
//! client never sends the session's cookies twice. Redirects are returned to the client.
//!
//! Why one file (about 575 lines of code): plain-HTTP forwarding and the MITM tunnel
//! share the header rules and the session lookup; both are one request's path through
//! the proxy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::IntoResponse;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::watch;

use super::access::{Access, Caller};
use super::ca::LocalCa;
use super::problem::Problem;
use crate::engine::{Engine, EngineSession};
use crate::error::{Error, Result};
use crate::profile::RequestKind;

/// Picks the session for a proxied request.
pub const SESSION_HEADER: &str = "x-mummer-session";
/// `https` sends an `http://` absolute-form request out over TLS.
pub const SCHEME_HEADER: &str = "x-mummer-scheme";
/// The request kind (`navigation` by default; `fetch`, `xhr`, `image`, ...).
pub const KIND_HEADER: &str = "x-mummer-kind";

/// How the proxy listens and which sessions it serves.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Terminate CONNECT tunnels with certificates from this CA (`--mitm`).
    pub mitm: Option<Arc<LocalCa>>,
    /// The session for requests without `X-Mummer-Session`.
    pub default_session: Option<String>,
    /// The operator's token, required in `Proxy-Authorization` (Basic with the token
    /// as password, or Bearer); a token (this or tenants') is mandatory when `listen`
    /// is not loopback.
    pub token: Option<String>,
    /// Tenants' tokens: a request authorized by one may only go through that tenant's
    /// sessions (another tenant's is "unknown", 404).
    pub tenant_tokens: super::TenantTokens,
    /// Time and size limits on what clients send (the body limit also bounds what a
    /// session buffers to replay on retries and 307s).
    pub limits: super::ServerLimits,
}

/// Live counters of a running proxy.
#[derive(Debug)]
pub struct ProxyStats {
    running: AtomicBool,
    port: u16,
    active: AtomicUsize,
    total: AtomicU64,
    failed: AtomicU64,
    mitm: bool,
    started: Instant,
}

/// [`ProxyStats`] as the API and `/metrics` show them.
#[derive(Debug, Serialize)]
pub struct ProxyStatsView {
    /// Accepting connections.
    pub running: bool,
    /// The port it listens on.
    pub port: u16,
    /// Whether CONNECT is terminated (`--mitm`).
    pub mitm: bool,
    /// Client connections open now.
    pub active_connections: usize,
    /// Requests forwarded (or refused) since start.
    pub total_requests: u64,
    /// Requests answered with an error.
    pub failed_requests: u64,
    /// Live sessions the proxy can route to.
    pub registered_sessions: usize,
    /// Seconds since start.
    pub uptime_secs: f64,
}

impl ProxyStats {
    /// The counters with the engine's live session count.
    pub fn view(&self, registered_sessions: usize) -> ProxyStatsView {
        ProxyStatsView {
            running: self.running.load(Ordering::Relaxed),
            port: self.port,
            mitm: self.mitm,
            active_connections: self.active.load(Ordering::Relaxed),
            total_requests: self.total.load(Ordering::Relaxed),
            failed_requests: self.failed.load(Ordering::Relaxed),
            registered_sessions,
            uptime_secs: self.started.elapsed().as_secs_f64(),
        }
    }

    /// Counts an answer to a client: 4xx and 5xx (the proxy's own or the target's) as
    /// failed.
    fn count_answer(&self, status: StatusCode) {
        if status.is_client_error() || status.is_server_error() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the `mummer_proxy_*` gauges from the counters (called before a scrape).
    pub fn publish_gauges(&self, registered_sessions: usize) {
        let v = self.view(registered_sessions);
        metrics::gauge!("mummer_proxy_running").set(if v.running { 1.0 } else { 0.0 });
        metrics::gauge!("mummer_proxy_port").set(f64::from(v.port));
        metrics::gauge!("mummer_proxy_active_connections").set(v.active_connections as f64);
        metrics::gauge!("mummer_proxy_requests").set(v.total_requests as f64);
        metrics::gauge!("mummer_proxy_failed_requests").set(v.failed_requests as f64);
        metrics::gauge!("mummer_proxy_registered_sessions").set(registered_sessions as f64);
    }
}

/// Shared by every connection of one proxy.
struct ProxyContext {
    engine: Engine,
    config: ProxyConfig,
    access: Access,
    stats: Arc<ProxyStats>,
}

/// A running forward proxy.
pub struct ForwardProxy {
    addr: SocketAddr,
    stats: Arc<ProxyStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ForwardProxy {
    /// Binds `config.listen` and starts serving.
    ///
    /// # Errors
    ///
    /// A non-loopback address without a token, or the bind failing.
    pub async fn start(engine: Engine, config: ProxyConfig) -> Result<ForwardProxy> {
        super::check_exposure(
            "proxy",
            config.listen,
            config.token.as_deref(),
            !config.tenant_tokens.is_empty(),
        )?;
        let (listener, addr) = super::bind(config.listen).await?;
        let stats = Arc::new(ProxyStats {
            running: AtomicBool::new(true),
            port: addr.port(),
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            mitm: config.mitm.is_some(),
            started: Instant::now(),
        });
        let ctx = Arc::new(ProxyContext {
            engine,
            access: Access::new(config.token.as_deref(), &config.tenant_tokens),
            config,
            stats: stats.clone(),
        });
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            super::accept_until_stopped(&listener, &mut stopped, "proxy", |stream| {
                tokio::spawn(serve_connection(ctx.clone(), stream));
            })
            .await;
            ctx.stats.running.store(false, Ordering::Relaxed);
        });
        Ok(ForwardProxy {
            addr,
            stats,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    /// Stops accepting connections (open ones finish their requests) and waits for the
    /// listener to close.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Decrements the active-connection count when a connection ends, however it ends.
struct ActiveGuard(Arc<ProxyStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(ctx: Arc<ProxyContext>, stream: tokio::net::TcpStream) {
    ctx.stats.active.fetch_add(1, Ordering::Relaxed);
    let _guard = ActiveGuard(ctx.stats.clone());
    let service_ctx = ctx.clone();
    let service = service_fn(move |req| {
        let ctx = service_ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(ctx, req).await) }
    });
    if let Err(e) = ctx
        .config
        .limits
        .http1()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(target: "mummer::proxy", error = %e, "client connection ended with an error");
    }
}

/// One request on the proxy's own port: CONNECT or absolute-form.
async fn handle(ctx: Arc<ProxyContext>, req: Request<Incoming>) -> Response<Body> {
    ctx.stats.total.fetch_add(1, Ordering::Relaxed);
    let response = match route(&ctx, req).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    };
    ctx.stats.count_answer(response.status());
    response
}

async fn route(
    ctx: &Arc<ProxyContext>,
    req: Request<Incoming>,
) -> std::result::Result<Response<Body>, Problem> {
    let caller = authorize(&ctx.access, req.headers())?;
    let session = pick_session(ctx, &caller, req.headers(), None).await?;
    if req.method() == Method::CONNECT {
        return connect(ctx.clone(), caller, session.id().to_owned(), req);
    }
    let uri = req.uri();
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(Problem::invalid(
            None,
            "this is a forward proxy: send absolute-form requests (GET http://host/path), or CONNECT with --mitm",
        ));
    };
    if scheme != "http" {
        return Err(Problem::invalid(
            None,
            format!("unsupported scheme `{scheme}` in an absolute-form request"),
        ));
    }
    let out_scheme = match header_str(req.headers(), SCHEME_HEADER) {
        None | Some("http") => "http",
        Some("https") => "https",
        Some(other) => {
            return Err(Problem::invalid(
                Some(SCHEME_HEADER.into()),
                format!("X-Mummer-Scheme must be http or https, not `{other}`"),
            ))
        }
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{out_scheme}://{authority}{path}");
    forward(&session, url, req, &ctx.config.limits).await
}

/// Finds who is calling from `Proxy-Authorization` (see [`super::access`]).
fn authorize(access: &Access, headers: &HeaderMap) -> std::result::Result<Caller, Problem> {
    if access.is_open() {
        return Ok(Caller::Operator);
    }
    let given = header_str(headers, "proxy-authorization").unwrap_or("");
    let secret = if let Some(b) = given.strip_prefix("Bearer ") {
        b.as_bytes().to_vec()
    } else if let Some(b) = given.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .unwrap_or_default();
        match decoded.iter().position(|&c| c == b':') {
            Some(i) => decoded[i + 1..].to_vec(),
            None => Vec::new(),
        }
    } else {
        Vec::new()
    };
    if let Some(caller) = access.identify(Some(&secret)) {
        Ok(caller)
    } else {
        let mut p = Problem::new(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "proxy-unauthorized",
            "Missing or wrong proxy token",
            "send Proxy-Authorization: Basic with the operator's or a tenant's token as the password (curl -U any:TOKEN), or Bearer TOKEN",
        );
        p.field = None;
        Err(p)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The session named by the request (or inherited from its tunnel, or the default).
async fn pick_session(
    ctx: &ProxyContext,
    caller: &Caller,
    headers: &HeaderMap,
    tunnel: Option<&str>,
) -> std::result::Result<EngineSession, Problem> {
    let id = header_str(headers, SESSION_HEADER)
        .map(str::to_owned)
        .or_else(|| tunnel.map(str::to_owned))
        .or_else(|| ctx.config.default_session.clone())
        .ok_or_else(|| {
            Problem::invalid(
                Some(SESSION_HEADER.into()),
                "no X-Mummer-Session header: name the session to send this through (create one with POST /v1/sessions), or start the proxy with --default-session",
            )
        })?;
    let session = super::access::visible_session(&ctx.engine, caller, &id).await?;
    // The proxy sends on it next: marked used before the reaper can take it.
    session.touch();
    Ok(session)
}

/// CONNECT: refused without a CA; with one, answered 200 and the tunnel's TLS is
/// terminated on the upgraded connection.
fn connect(
    ctx: Arc<ProxyContext>,
    caller: Caller,
    session: String,
    req: Request<Incoming>,
) -> std::result::Result<Response<Body>, Problem> {
    let Some(ca) = ctx.config.mitm.clone() else {
        return Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "connect-refused",
            "CONNECT refused",
            "a blind CONNECT tunnel would carry the client's own TLS fingerprint, not the session's; start mummer serve with --mitm and trust its CA (mummer ca export), or send http:// requests with X-Mummer-Scheme: https",
        ));
    };
    let authority = req
        .uri()
        .authority()
        .cloned()
        .ok_or_else(|| Problem::invalid(None, "CONNECT needs host:port"))?;
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(443);
    let acceptor = ca.acceptor_for(&host)?;
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(target: "mummer::proxy", error = %e, "CONNECT upgrade failed");
                return;
            }
        };
        let handshake = ctx.config.limits.handshake_timeout;
        let accepted = tokio::time::timeout(
            handshake,
            tokio_boring::accept(&acceptor, TokioIo::new(upgraded)),
        )
        .await;
        let tls = match accepted {
            Ok(Ok(tls)) => tls,
            Err(_) => {
                tracing::info!(target: "mummer::proxy", %session, %host, "client did not finish its TLS handshake within {handshake:?}; tunnel closed");
                return;
            }
            Ok(Err(e)) => {
                tracing::info!(target: "mummer::proxy", %session, %host, error = %e, "client TLS handshake failed (does it trust the CA from `mummer ca export`?)");
                return;
            }
        };
        let origin = if port == 443 {
            format!("https://{host}")
        } else {
            format!("https://{host}:{port}")
        };
        let tunnel_ctx = ctx.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let ctx = tunnel_ctx.clone();
            let origin = origin.clone();
            let (session, caller) = (session.clone(), caller.clone());
            async move {
                ctx.stats.total.fetch_add(1, Ordering::Relaxed);
                let result = async {
                    let session =
                        pick_session(&ctx, &caller, req.headers(), Some(&session)).await?;
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let url = format!("{origin}{path}");
                    forward(&session, url, req, &ctx.config.limits).await
                }
                .await;
                let response = result.unwrap_or_else(IntoResponse::into_response);
                ctx.stats.count_answer(response.status());
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        if let Err(e) = ctx
            .config
            .limits
            .http1()
            .serve_connection(TokioIo::new(tls), service)
            .await
        {
            tracing::debug!(target: "mummer::proxy", error = %e, "tunnel connection ended with an error");
        }
    });
    Ok(Response::new(Body::empty()))
}

/// Request headers the session owns, or that only concern the hop to the proxy.
fn dropped_request_header(name: &HeaderName, value: &HeaderValue) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "user-agent"
            | "accept-encoding"
            | "upgrade-insecure-requests"
            | "priority"
            | SESSION_HEADER
            | SCHEME_HEADER
            | KIND_HEADER
    ) || n.starts_with("sec-ch-")
        || n.starts_with("sec-fetch-")
        || (n == "accept" && value.as_bytes() == b"*/*")
}

/// Response headers that concern only the session's hop, or that the session owns.
fn dropped_response_header(name: &HeaderName, decoded: bool) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "set-cookie"
            | "alt-svc"
    ) || (decoded && name == http::header::CONTENT_ENCODING)
}

/// Sends one client request through `session` and turns the answer into the client's
/// response.
async fn forward(
    live: &EngineSession,
    url: String,
    req: Request<Incoming>,
    limits: &super::ServerLimits,
) -> std::result::Result<Response<Body>, Problem> {
    let (parts, body) = req.into_parts();
    let kind = match header_str(&parts.headers, KIND_HEADER) {
        None => RequestKind::Navigation,
        Some(k) => k
            .parse()
            .map_err(|e: Error| Problem::invalid(Some(KIND_HEADER.into()), e.to_string()))?,
    };
    // Headers named by `Connection` are hop-by-hop too.
    let listed: Vec<String> = parts
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let max = limits.max_body;
    let body = tokio::time::timeout(
        limits.body_timeout,
        http_body_util::Limited::new(body, max).collect(),
    )
    .await
    .map_err(|_| {
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "Request body too slow",
            format!(
                "the request body did not arrive within {:?}",
                limits.body_timeout
            ),
        )
    })?
    .map_err(|e| {
        Problem::invalid(
            None,
            format!("cannot read the request body (at most {max} bytes): {e}"),
        )
    })?
    .to_bytes();
    let mut request = live
        .request(parts.method.clone(), &url)
        .kind(kind)
        .no_redirects();
    for (name, value) in &parts.headers {
        if dropped_request_header(name, value) || listed.iter().any(|l| l == name.as_str()) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            request = request.header(name.as_str(), v);
        }
    }
    if !body.is_empty() || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        request = request.body(body);
    }
    let started = Instant::now();
    let result = request.send().await;
    let status = result.as_ref().map_or(0, |r| r.status().as_u16());
    let path = url.split('?').next().unwrap_or_default();
    tracing::info!(target: "mummer::proxy", session = %live.id(), method = %parts.method, url = %path, status, ms = started.elapsed().as_secs_f64() * 1000.0, "proxied");
    let response = result?;
    let decoded = response.raw_body_len() != response.body().len() as u64
        || response
            .headers()
            .contains_key(http::header::CONTENT_ENCODING);
    let mut out = Response::builder().status(response.status());
    for (name, value) in response.wire_headers() {
        if !dropped_response_header(name, decoded) {
            out = out.header(name, value);
        }
    }
    out.body(Body::from(response.body().clone()))
        .map_err(|e| Problem::from(Error::protocol(format!("cannot relay the response: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identity_headers_are_dropped_and_the_rest_kept() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        let n = |s: &'static str| HeaderName::from_static(s);
        assert!(dropped_request_header(&n("user-agent"), &v("curl/8")));
        assert!(dropped_request_header(&n("accept"), &v("*/*")));
        assert!(!dropped_request_header(
            &n("accept"),
            &v("application/json")
        ));
        assert!(dropped_request_header(&n("sec-ch-ua"), &v("x")));
        assert!(dropped_request_header(&n("x-mummer-session"), &v("x")));
        assert!(!dropped_request_header(
            &n("content-type"),
            &v("text/plain")
        ));
        assert!(!dropped_request_header(&n("authorization"), &v("Bearer x")));
        assert!(dropped_response_header(&http::header::SET_COOKIE, false));
        assert!(dropped_response_header(
            &http::header::CONTENT_ENCODING,
            true
        ));
        assert!(!dropped_response_header(
            &http::header::CONTENT_ENCODING,
            false
        ));
        assert!(!dropped_response_header(&http::header::ETAG, true));
    }

    #[test]
    fn proxy_tokens_are_checked() {
        let mut tenants = super::super::TenantTokens::new();
        tenants
            .insert("acme", "acme-token-0123456789")
            .expect("tenant");
        let access = Access::new(Some("0123456789abcdef"), &tenants);
        let mut h = HeaderMap::new();
        assert!(authorize(&access, &h).is_err());
        let basic = base64::engine::general_purpose::STANDARD.encode("any:0123456789abcdef");
        h.insert(
            "proxy-authorization",
            HeaderValue::from_str(&format!("Basic {basic}")).expect("v"),
        );
        assert_eq!(authorize(&access, &h).ok(), Some(Caller::Operator));
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Bearer acme-token-0123456789"),
        );
        assert_eq!(
            authorize(&access, &h).ok(),
            Some(Caller::Tenant("acme".into()))
        );
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Bearer wrong"),
        );
        assert!(authorize(&access, &h).is_err());
    }
}
