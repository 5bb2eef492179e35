//! The transport client: one profile, a per-origin connection pool, and single
//! request/response exchanges.
//!
//! [`Client`] is what `mummer fetch` uses and what the session layer builds on. It owns
//! the TLS context (built once), the dialer (DNS overrides, proxy, connect deadline), the
//! TLS ticket cache and the pool: one multiplexed HTTP/2 connection per origin (a second
//! one when the server's stream limit is reached, a new one after GOAWAY) and up to
//! [`ClientBuilder::max_idle_per_origin`] keep-alive HTTP/1.1 connections. It follows no
//! redirects and keeps no cookies: those belong to the session layer.

//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`ClientBuilder`] (every transport setting), [`Client`] and its counters |
//! | `request.rs` | [`Client::execute`]: one exchange of a [`Request`], from target to decoded [`Response`] |
//! | `pool.rs` | the per-origin pool: pooled HTTP/2 and idle HTTP/1.1 connections, the dial gate |
//! | `connect.rs` | opening a connection (dial, TLS, HTTP/2 handshake) and one HTTP/1.1 or HTTP/2 exchange on it |
//! | `response.rs` | [`Response`], [`Timings`], [`Redirect`], [`CacheStatus`] |

mod connect;
mod pool;
mod request;
mod response;

use self::pool::Pool;
pub use self::request::ClientRequest;
pub use self::response::{CacheStatus, Redirect, Response, StreamingResponse, Timings};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;

use crate::alt_svc::{AltSvcCache, AltSvcRecord, Alternative};
use crate::error::{Error, Result};
use crate::net::{ByteCounters, ConnectTo, Dialer, Proxy, ResolveOverride};
use crate::profile::{HeaderTemplate, Profile, RequestKind};
use crate::request::{Request, RequestBuilder};
use crate::tls::{TicketCache, TlsConnector, TlsOptions};

/// Default limit on a response body as received.
pub const DEFAULT_MAX_BODY: u64 = 64 * 1024 * 1024;
/// Default limit on a response body after Content-Encoding is undone.
pub const DEFAULT_MAX_DECODED_BODY: u64 = 64 * 1024 * 1024;
/// Keep-alive HTTP/1.1 connections kept per origin (Chromium allows 6 per host).
pub const DEFAULT_MAX_IDLE_PER_ORIGIN: usize = 6;

/// Which HTTP version to use over TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpVersionPref {
    /// Let ALPN decide with the profile's list (h2 when the server offers it).
    #[default]
    Auto,
    /// Offer only `http/1.1` (`--http1.1`).
    Http1Only,
    /// Offer only `h2` (`--http2`); a server without h2 fails the handshake.
    Http2Only,
    /// HTTP/3 over QUIC only (`--http3-only`): no TCP to https origins; a server that
    /// does not answer over UDP fails the request. Plain `http://` has no HTTP/3 and
    /// stays HTTP/1.1, as with curl.
    Http3Only,
    /// Try HTTP/3 on every https origin before any `Alt-Svc` (`--http3`): QUIC and TCP
    /// race as for an origin that offered HTTP/3 (QUIC first, TCP after a head start),
    /// and a failed QUIC attempt marks the origin's HTTP/3 broken for a while.
    Http3,
}

/// Builds a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    profile: Arc<Profile>,
    tls: TlsOptions,
    resolve: Vec<ResolveOverride>,
    connect_to: Vec<ConnectTo>,
    proxy: Option<Proxy>,
    connect_timeout: Option<Duration>,
    tls_timeout: Option<Duration>,
    timeout: Option<Duration>,
    version: HttpVersionPref,
    max_body: u64,
    max_decoded_body: u64,
    decode: bool,
    max_idle_per_origin: usize,
    destination: Option<std::sync::Arc<crate::destination::DestinationPolicy>>,
}

impl ClientBuilder {
    /// Trust this CA bundle (PEM) instead of the system store, for origins and for an
    /// `https://` proxy.
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// Skip certificate verification of origins and of an `https://` proxy (tests,
    /// debugging).
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.tls.insecure = insecure;
        self
    }

    /// Connect to another host and port for requests to one (curl's `--connect-to`);
    /// TLS and headers still name the URL's host.
    pub fn connect_to(mut self, rule: ConnectTo) -> Self {
        self.connect_to.push(rule);
        self
    }

    /// Connect to `addr` whenever a URL names `host:port` (curl's `--resolve`).
    pub fn resolve(mut self, entry: ResolveOverride) -> Self {
        self.resolve.push(entry);
        self
    }

    /// Route every connection through this proxy.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Refuse connections the policy refuses, checked on each address dialled (origin
    /// or proxy) after resolution; no policy (the default) allows every address.
    pub fn destination_policy(
        mut self,
        policy: std::sync::Arc<crate::destination::DestinationPolicy>,
    ) -> Self {
        self.destination = Some(policy);
        self
    }

    /// Deadline for DNS plus TCP connect (and proxy set-up).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// Deadline for the TLS handshake.
    pub fn tls_timeout(mut self, d: Duration) -> Self {
        self.tls_timeout = Some(d);
        self
    }

    /// Deadline for a whole exchange, from dialing to the last body byte.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// HTTP version preference.
    pub fn http_version(mut self, v: HttpVersionPref) -> Self {
        self.version = v;
        self
    }

    /// Limit on the body as received (default [`DEFAULT_MAX_BODY`]).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// Limit on the decoded body (default [`DEFAULT_MAX_DECODED_BODY`]).
    pub fn max_decoded_body(mut self, bytes: u64) -> Self {
        self.max_decoded_body = bytes;
        self
    }

    /// Undo Content-Encoding (default on).
    pub fn decode(mut self, on: bool) -> Self {
        self.decode = on;
        self
    }

    /// Idle keep-alive HTTP/1.1 connections kept per origin.
    pub fn max_idle_per_origin(mut self, n: usize) -> Self {
        self.max_idle_per_origin = n;
        self
    }

    /// Builds the TLS context and the client.
    ///
    /// # Errors
    ///
    /// A profile BoringSSL cannot express, or an unreadable CA file.
    pub fn build(self) -> Result<Client> {
        // Validated, compiled and keyed once per profile value, not per client.
        let compiled = compiled(&self.profile)?;
        let tls = TlsConnector::shared_keyed(&compiled.tls_key, &self.profile.tls, &self.tls)?;
        let dialer = Dialer::new(&self.resolve, self.proxy.clone(), self.connect_timeout)
            .with_connect_to(self.connect_to.clone())
            .with_proxy_tls(self.tls.clone())
            .with_destination_policy(self.destination.clone());
        let templates = compiled;
        Ok(Client {
            inner: Arc::new(ClientInner {
                templates,
                tls,
                quic_tls: std::sync::OnceLock::new(),
                alt_svc: Mutex::new(None),
                dialer,
                tickets: TicketCache::new(),
                pool: Mutex::new(Pool::default()),
                config: self,
                counters: Counters::default(),
            }),
        })
    }
}

/// What a client needs of its profile beyond the profile itself, worked out once per
/// profile value: the profile validated, its request templates compiled by kind, and
/// its TLS settings as the key of the shared TLS context.
struct Compiled {
    templates: HashMap<RequestKind, HeaderTemplate>,
    tls_key: String,
}

impl std::ops::Deref for Compiled {
    type Target = HashMap<RequestKind, HeaderTemplate>;
    fn deref(&self) -> &Self::Target {
        &self.templates
    }
}

/// `profile` validated and compiled, once per profile value: clients built from the
/// same `Arc<Profile>` (a built-in from [`Profile::shared`], an engine's sessions)
/// share one set of templates, so an idle client holds none of its own, and a new one
/// costs no validation. Keyed by the `Arc`'s address, checked against a weak
/// reference, so a freed profile's address reused by another is never mistaken for it.
fn compiled(profile: &Arc<Profile>) -> Result<Arc<Compiled>> {
    type Entry = (std::sync::Weak<Profile>, std::sync::Weak<Compiled>);
    static COMPILED: std::sync::OnceLock<Mutex<HashMap<usize, Entry>>> = std::sync::OnceLock::new();
    let key = Arc::as_ptr(profile) as usize;
    let compiled = COMPILED.get_or_init(Default::default);
    {
        let map = compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((owner, templates)) = map.get(&key) {
            if std::ptr::eq(owner.as_ptr(), Arc::as_ptr(profile)) && owner.strong_count() > 0 {
                if let Some(templates) = templates.upgrade() {
                    return Ok(templates);
                }
            }
        }
    }
    profile
        .validate()
        .map_err(|e| Error::invalid_profile(profile.name.clone(), e))?;
    let templates = RequestKind::ALL
        .into_iter()
        .map(|kind| Ok((kind, HeaderTemplate::compile(profile.template(kind))?)))
        .collect::<Result<_>>()
        .map_err(|e| Error::invalid_profile(profile.name.clone(), e.to_string()))?;
    let templates = Arc::new(Compiled {
        templates,
        tls_key: TlsConnector::profile_key(&profile.tls),
    });
    let mut map = compiled.lock().unwrap_or_else(|p| p.into_inner());
    // Profiles come and go (an inline profile per session): forget the dead ones.
    if map.len() >= 64 {
        map.retain(|_, (owner, templates)| {
            owner.strong_count() > 0 && templates.strong_count() > 0
        });
    }
    map.insert(key, (Arc::downgrade(profile), Arc::downgrade(&templates)));
    Ok(templates)
}

/// A browser-profiled HTTP client. Cheap to clone; clones share the pool and tickets.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    /// The profile's request templates, parsed once per profile, by [`RequestKind`]
    /// (shared by every client wearing the same `Arc<Profile>`).
    templates: Arc<Compiled>,
    tls: Arc<TlsConnector>,
    /// The QUIC ClientHello's context, built on first use of HTTP/3 (most clients
    /// never need it).
    quic_tls: std::sync::OnceLock<Arc<TlsConnector>>,
    /// Alternative services the origins offered (made on the first `Alt-Svc` seen).
    alt_svc: Mutex<Option<Box<AltSvcCache>>>,
    dialer: Dialer,
    tickets: TicketCache,
    pool: Mutex<Pool>,
    config: ClientBuilder,
    counters: Counters,
}

impl ClientInner {
    /// Runs `f` on the alternative-service cache, making it first.
    fn alt_svc<T>(&self, f: impl FnOnce(&mut AltSvcCache) -> T) -> T {
        let mut slot = self.alt_svc.lock().unwrap_or_else(|p| p.into_inner());
        f(slot.get_or_insert_with(Box::default))
    }

    /// The HTTP/3 alternative the next connection to `target` may race, if any. None
    /// through an HTTP proxy, which carries no UDP (Chrome then stays on TCP too);
    /// through SOCKS5 QUIC goes by UDP ASSOCIATE.
    fn usable_alternative(&self, target: &request::Target) -> Option<crate::alt_svc::Alternative> {
        if !self.dialer.carries_udp() {
            return None;
        }
        let origin = crate::alt_svc::origin_key(&target.host, target.port);
        let now = std::time::SystemTime::now();
        let slot = self.alt_svc.lock().unwrap_or_else(|p| p.into_inner());
        let cache = slot.as_deref();
        if let Some(alt) = cache.and_then(|c| c.usable(&origin, now)) {
            return Some(alt);
        }
        if self.config.version != HttpVersionPref::Http3 {
            return None;
        }
        // `--http3`: the origin's own port, unless that failed recently.
        let own = crate::alt_svc::Alternative {
            protocol: "h3".into(),
            host: String::new(),
            port: target.port,
            expires: u64::MAX,
        };
        let broken = cache.is_some_and(|c| c.is_broken(&origin, &own, now));
        (!broken).then_some(own)
    }

    /// Files the `Alt-Svc` fields of a response from `target` (automatic protocol
    /// choice over https only: a client pinned to one version ignores them).
    fn record_alt_svc(
        &self,
        target: &request::Target,
        headers: &[(http::HeaderName, http::HeaderValue)],
    ) {
        if !matches!(
            self.config.version,
            HttpVersionPref::Auto | HttpVersionPref::Http3
        ) || !target.https
        {
            return;
        }
        let mut values = headers
            .iter()
            .filter(|(n, _)| n == http::header::ALT_SVC)
            .filter_map(|(_, v)| v.to_str().ok())
            .peekable();
        if values.peek().is_none() {
            return;
        }
        let origin = crate::alt_svc::origin_key(&target.host, target.port);
        self.alt_svc(|cache| cache.record(&origin, values, std::time::SystemTime::now()));
    }

    /// The TLS context for QUIC handshakes, built from the profile's QUIC variant.
    fn quic_tls(&self) -> Result<Arc<TlsConnector>> {
        if let Some(tls) = self.quic_tls.get() {
            return Ok(tls.clone());
        }
        let profile = &self.config.profile;
        let tls = TlsConnector::shared(&profile.quic.tls_profile(&profile.tls), &self.config.tls)?;
        Ok(self.quic_tls.get_or_init(|| tls).clone())
    }
}

/// Transport counters, updated on the request path with relaxed atomics.
#[derive(Debug, Default)]
struct Counters {
    connections_opened: AtomicU64,
    connections_reused: AtomicU64,
    tls_resumed: AtomicU64,
    h3_connections: AtomicU64,
    h3_fallbacks: AtomicU64,
    bytes: ByteCounters,
}

/// What one origin's connections speak ([`Client::origin_protocols`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OriginProtocol {
    /// `https://host:port` (or `http://`).
    pub origin: String,
    /// `h3`, `h2` or `http/1.1` for the connections pooled now; `None` when none is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    /// The port of the HTTP/3 alternative the origin offered, when it may be tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http3_alternative: Option<u16>,
}

/// What a client's transport has done so far, and what its pool holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransportStats {
    /// Connections opened (TCP, plus TLS for https).
    pub connections_opened: u64,
    /// Requests that went out on a pooled connection instead of a new one.
    pub connections_reused: u64,
    /// TLS handshakes that resumed a session from a ticket.
    pub tls_resumed: u64,
    /// HTTP/2 connections in the pool.
    pub http2_connections: usize,
    /// HTTP/2 streams open now.
    pub http2_streams_active: usize,
    /// Idle HTTP/1.1 keep-alive connections in the pool.
    pub http1_idle: usize,
    /// HTTP/3 connections opened (QUIC handshakes that succeeded).
    #[serde(default)]
    pub http3_opened: u64,
    /// HTTP/3 connections in the pool.
    #[serde(default)]
    pub http3_connections: usize,
    /// Offered HTTP/3 alternatives that failed and were marked broken (the request
    /// went over TCP).
    #[serde(default)]
    pub http3_fallbacks: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
}

impl std::fmt::Debug for ClientInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("profile", &self.config.profile.name)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder for `profile` (a `Profile`, or an `Arc<Profile>` to share one copy
    /// and its compiled templates with other clients: [`Profile::shared`]).
    pub fn builder(profile: impl Into<Arc<Profile>>) -> ClientBuilder {
        ClientBuilder {
            profile: profile.into(),
            tls: TlsOptions::default(),
            resolve: Vec::new(),
            connect_to: Vec::new(),
            proxy: None,
            connect_timeout: Some(Duration::from_secs(10)),
            tls_timeout: Some(Duration::from_secs(10)),
            timeout: Some(Duration::from_secs(60)),
            version: HttpVersionPref::Auto,
            max_body: DEFAULT_MAX_BODY,
            max_decoded_body: DEFAULT_MAX_DECODED_BODY,
            decode: true,
            max_idle_per_origin: DEFAULT_MAX_IDLE_PER_ORIGIN,
            destination: None,
        }
    }

    /// The profile this client wears.
    pub fn profile(&self) -> &Profile {
        &self.inner.config.profile
    }

    /// The profile this client wears, as the shared value it was built with (a
    /// client built from it shares the copy and the compiled templates).
    pub fn shared_profile(&self) -> Arc<Profile> {
        self.inner.config.profile.clone()
    }

    /// The TLS tickets this client holds.
    pub fn tickets(&self) -> &TicketCache {
        &self.inner.tickets
    }

    /// Starts a request (a navigation unless [`RequestBuilder::kind`] says otherwise);
    /// `send` performs it.
    pub fn request(&self, method: Method, url: &str) -> ClientRequest {
        RequestBuilder::new(self.clone(), Request::new(method, url))
    }

    /// Starts a GET request (a navigation unless [`RequestBuilder::kind`] says otherwise).
    pub fn get(&self, url: &str) -> ClientRequest {
        self.request(Method::GET, url)
    }

    /// Starts a POST request.
    pub fn post(&self, url: &str) -> ClientRequest {
        self.request(Method::POST, url)
    }

    /// A builder with this client's settings (profile, TLS options, resolve rules,
    /// proxy, timeouts, limits): a client built from it has its own pool and tickets.
    pub fn settings(&self) -> ClientBuilder {
        self.inner.config.clone()
    }

    /// The transport counters and the pool's current size. Takes the pool lock briefly.
    pub fn transport_stats(&self) -> TransportStats {
        let c = &self.inner.counters;
        let pool = Pool::lock(&self.inner.pool);
        let h2 = pool
            .h2
            .values()
            .flatten()
            .filter(|(conn, _)| !conn.is_closed());
        let (mut http2_connections, mut http2_streams_active) = (0, 0);
        for (conn, _) in h2 {
            http2_connections += 1;
            http2_streams_active += conn.streams_in_flight();
        }
        TransportStats {
            connections_opened: c.connections_opened.load(Ordering::Relaxed),
            connections_reused: c.connections_reused.load(Ordering::Relaxed),
            tls_resumed: c.tls_resumed.load(Ordering::Relaxed),
            http2_connections,
            http2_streams_active,
            http1_idle: pool.h1.values().map(Vec::len).sum(),
            http3_opened: c.h3_connections.load(Ordering::Relaxed),
            http3_connections: pool.h3.values().filter(|(c, _)| !c.is_closed()).count(),
            http3_fallbacks: c.h3_fallbacks.load(Ordering::Relaxed),
            bytes_in: c.bytes.read.load(Ordering::Relaxed),
            bytes_out: c.bytes.written.load(Ordering::Relaxed),
        }
    }

    /// Each origin with a pooled connection and the protocol it speaks (HTTP/3 first,
    /// then HTTP/2, then HTTP/1.1), and each origin's usable HTTP/3 alternative.
    pub fn origin_protocols(&self) -> Vec<OriginProtocol> {
        let mut out: std::collections::BTreeMap<String, OriginProtocol> = Default::default();
        let mut note = |scheme: &str, host: &str, port: u16, protocol: Option<&'static str>| {
            let origin = format!("{scheme}://{host}:{port}");
            let entry = out.entry(origin.clone()).or_insert(OriginProtocol {
                origin,
                protocol: None,
                http3_alternative: None,
            });
            if entry.protocol.is_none() {
                entry.protocol = protocol;
            }
        };
        {
            let pool = Pool::lock(&self.inner.pool);
            for ((scheme, host, port), (c, _)) in &pool.h3 {
                if !c.is_closed() {
                    note(scheme, host, *port, Some("h3"));
                }
            }
            for ((scheme, host, port), conns) in &pool.h2 {
                if conns.iter().any(|(c, _)| !c.is_closed()) {
                    note(scheme, host, *port, Some("h2"));
                }
            }
            for ((scheme, host, port), idle) in &pool.h1 {
                if !idle.is_empty() {
                    note(scheme, host, *port, Some("http/1.1"));
                }
            }
        }
        let now = std::time::SystemTime::now();
        let slot = self.inner.alt_svc.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cache) = slot.as_deref() {
            for record in cache.export(now) {
                if let Some(alt) = cache.usable(&record.origin, now) {
                    let entry = out.entry(record.origin.clone()).or_insert(OriginProtocol {
                        origin: record.origin.clone(),
                        protocol: None,
                        http3_alternative: None,
                    });
                    entry.http3_alternative = Some(alt.port);
                }
            }
        }
        out.into_values().collect()
    }

    /// The HTTP/3 alternatives learned from `Alt-Svc`, unexpired, for a snapshot.
    pub fn alt_svc_export(&self) -> Vec<AltSvcRecord> {
        let slot = self.inner.alt_svc.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref()
            .map(|c| c.export(std::time::SystemTime::now()))
            .unwrap_or_default()
    }

    /// Takes alternatives back (from [`Client::alt_svc_export`] of an earlier client).
    pub fn alt_svc_import(&self, records: &[AltSvcRecord]) {
        if !records.is_empty() {
            self.inner.alt_svc(|c| c.import(records));
        }
    }

    /// The HTTP/3 alternative the next new connection to `host:port` would race, or
    /// `None` (none offered, expired, or broken for now).
    pub fn alternative(&self, host: &str, port: u16) -> Option<Alternative> {
        let slot = self.inner.alt_svc.lock().unwrap_or_else(|p| p.into_inner());
        let origin = crate::alt_svc::origin_key(host, port);
        slot.as_ref()?.usable(&origin, std::time::SystemTime::now())
    }

    /// Drops every pooled connection (tickets stay).
    pub fn close_connections(&self) {
        let mut pool = Pool::lock(&self.inner.pool);
        pool.h1.clear();
        pool.h2.clear();
        pool.h3.clear();
    }
}
