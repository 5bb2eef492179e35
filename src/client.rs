//! The transport client: one profile, a per-origin connection pool, and single
//! request/response exchanges.
//!
//! [`Client`] is what `mummer fetch` uses and what the session layer builds on. It owns
//! the TLS context (built once), the dialer (DNS overrides, proxy, connect deadline), the
//! TLS ticket cache and the pool: one multiplexed HTTP/2 connection per origin (a second
//! one when the server's stream limit is reached, a new one after GOAWAY) and up to
//! [`ClientBuilder::max_idle_per_origin`] keep-alive HTTP/1.1 connections. It follows no
//! redirects and keeps no cookies: those belong to the session layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use tokio_boring::SslStream;

use crate::decode::decode_body;
use crate::error::{Error, Result};
use crate::h1::H1Connection;
use crate::h2::{self, H2Connection};
use crate::net::{BoxedIo, ByteCounters, ConnectTo, CountingIo, Dialer, Proxy, ResolveOverride};
use crate::profile::{HeaderTemplate, Profile, RequestKind};
use crate::request::RequestUrl;
use crate::tls::{TicketCache, TlsConnector, TlsInfo, TlsOptions};

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
}

/// Builds a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    profile: Profile,
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
        self.profile
            .validate()
            .map_err(|e| Error::invalid_profile(self.profile.name.clone(), e))?;
        let tls = TlsConnector::shared(&self.profile.tls, &self.tls)?;
        let dialer = Dialer::new(&self.resolve, self.proxy.clone(), self.connect_timeout)
            .with_connect_to(self.connect_to.clone())
            .with_proxy_tls(self.tls.clone())
            .with_destination_policy(self.destination.clone());
        let templates = RequestKind::ALL
            .into_iter()
            .map(|kind| Ok((kind, HeaderTemplate::compile(self.profile.template(kind))?)))
            .collect::<Result<_>>()
            .map_err(|e| Error::invalid_profile(self.profile.name.clone(), e.to_string()))?;
        Ok(Client {
            inner: Arc::new(ClientInner {
                templates,
                tls,
                dialer,
                tickets: TicketCache::new(),
                pool: Mutex::new(Pool::default()),
                config: self,
                counters: Counters::default(),
            }),
        })
    }
}

/// A browser-profiled HTTP client. Cheap to clone; clones share the pool and tickets.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    /// The profile's request templates, parsed once, by [`RequestKind`].
    templates: HashMap<RequestKind, HeaderTemplate>,
    tls: Arc<TlsConnector>,
    dialer: Dialer,
    tickets: TicketCache,
    pool: Mutex<Pool>,
    config: ClientBuilder,
    counters: Counters,
}

/// Transport counters, updated on the request path with relaxed atomics.
#[derive(Debug, Default)]
struct Counters {
    connections_opened: AtomicU64,
    connections_reused: AtomicU64,
    tls_resumed: AtomicU64,
    bytes: ByteCounters,
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

type OriginKey = (String, String, u16);

/// An idle keep-alive HTTP/1.1 connection and the TLS details it was opened with.
type IdleH1 = (H1Connection<MaybeTls>, Option<TlsInfo>);

#[derive(Default)]
struct Pool {
    h2: HashMap<OriginKey, Vec<(H2Connection, TlsInfo)>>,
    h1: HashMap<OriginKey, Vec<IdleH1>>,
    /// One connection attempt at a time per origin while it may speak HTTP/2, so that
    /// concurrent first requests share the connection the first one opens (as browsers
    /// do) instead of opening one each.
    dial_gates: HashMap<OriginKey, Arc<tokio::sync::Mutex<()>>>,
    /// Origins whose server chose HTTP/1.1: connections are opened in parallel.
    h1_origins: std::collections::HashSet<OriginKey>,
}

impl Pool {
    fn lock(m: &Mutex<Pool>) -> std::sync::MutexGuard<'_, Pool> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Plain TCP for `http://`, TLS for `https://`.
type MaybeTls = tokio_util_either::Either;

mod tokio_util_either {
    //! A two-way stream enum so HTTP/1.1 connections of both schemes share one pool.
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    pub enum Either {
        Plain(super::BoxedIo),
        Tls(Box<super::SslStream<super::BoxedIo>>),
    }

    impl AsyncRead for Either {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                Either::Plain(s) => s.as_mut().poll_read(cx, buf),
                Either::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            }
        }
    }

    impl AsyncWrite for Either {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            match self.get_mut() {
                Either::Plain(s) => s.as_mut().poll_write(cx, buf),
                Either::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            }
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                Either::Plain(s) => s.as_mut().poll_flush(cx),
                Either::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            }
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                Either::Plain(s) => s.as_mut().poll_shutdown(cx),
                Either::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            }
        }
    }
}

impl Client {
    /// A builder for `profile`.
    pub fn builder(profile: Profile) -> ClientBuilder {
        ClientBuilder {
            profile,
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

    /// The TLS tickets this client holds.
    pub fn tickets(&self) -> &TicketCache {
        &self.inner.tickets
    }

    /// Starts a request.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            url: RequestUrl::Text(url.to_string()),
            headers: Vec::new(),
            body: None,
            kind: RequestKind::Navigation,
            error: None,
        }
    }

    /// Starts a request to a URL the caller already parsed (the session does, for its
    /// cookies and cache): it is not parsed again.
    pub(crate) fn request_parsed(&self, method: Method, url: url::Url) -> RequestBuilder {
        RequestBuilder {
            url: RequestUrl::Parsed(url),
            ..self.request(method, "")
        }
    }

    /// Starts a GET request (a navigation unless [`RequestBuilder::kind`] says otherwise).
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
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
            bytes_in: c.bytes.read.load(Ordering::Relaxed),
            bytes_out: c.bytes.written.load(Ordering::Relaxed),
        }
    }

    /// Drops every pooled connection (tickets stay).
    pub fn close_connections(&self) {
        let mut pool = Pool::lock(&self.inner.pool);
        pool.h1.clear();
        pool.h2.clear();
    }
}

/// One request being put together; [`RequestBuilder::send`] performs it.
#[derive(Debug)]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    url: RequestUrl,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
    kind: RequestKind,
    error: Option<Error>,
}

impl RequestBuilder {
    /// Adds a header. A name the profile's template knows takes the template's position;
    /// others go after the template's headers, in the order added.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match crate::request::parse_header(name, value) {
            Ok(header) => self.headers.push(header),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds parsed headers, in order (see [`RequestBuilder::header`]).
    pub fn headers(mut self, headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// Adds a header given as curl's `Name: value`.
    pub fn header_line(self, line: &str) -> Self {
        match line.split_once(':') {
            Some((n, v)) => self.header(n, v),
            None => {
                let mut s = self;
                s.error.get_or_insert(Error::invalid_input(format!(
                    "invalid header `{line}`: expected `Name: value`"
                )));
                s
            }
        }
    }

    /// Sets the request body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// What the request is for; picks the profile's header template and priority.
    pub fn kind(mut self, kind: RequestKind) -> Self {
        self.kind = kind;
        self
    }

    /// Performs the exchange.
    ///
    /// # Errors
    ///
    /// Every transport failure, see [`Error`]'s `is_*` methods; the URL is attached.
    pub async fn send(self) -> Result<Response> {
        let url = self.url.as_str().to_owned();
        let timeout = self.client.inner.config.timeout;
        let fut = self.send_inner();
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
                Err(Error::timeout(format!("after {limit:?} (total deadline)")))
            }),
            None => fut.await,
        };
        result.map_err(|e| e.with_url(&url))
    }

    async fn send_inner(self) -> Result<Response> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let started = Instant::now();
        let target = match &self.url {
            RequestUrl::Parsed(url) => Target::from_url(url, url.as_str())?,
            RequestUrl::Text(text) => Target::parse(text)?,
        };
        let client = self.client.inner.clone();
        let config = &client.config;
        let template = config.profile.template(self.kind);
        let mut extra = self.headers;
        if let Some(body) = &self.body {
            if !extra.iter().any(|(n, _)| n == http::header::CONTENT_LENGTH) {
                extra.push((http::header::CONTENT_LENGTH, HeaderValue::from(body.len())));
            }
        }
        let headers = client
            .templates
            .get(&self.kind)
            .map(|t| t.render(&extra))
            .unwrap_or(extra);
        let mut timings = Timings::default();

        // A pooled connection, or else a new one. Opening one is boxed: its futures
        // (dial, TLS and HTTP/2 handshakes) made up a quarter of the request future
        // but run once per connection, while a long session's requests reuse one; a
        // smaller request future is cheaper to move and to allocate.
        let key = target.key();
        let (pooled, dial_permit) = take_pooled_or_gate(&client, &key, target.https).await;
        let conn = match pooled {
            Some(conn) => {
                client
                    .counters
                    .connections_reused
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!("connections_reused_total").increment(1);
                conn
            }
            None => {
                Box::pin(open_connection(
                    &client,
                    &target,
                    &key,
                    template.priority,
                    dial_permit,
                    &mut timings,
                ))
                .await?
            }
        };
        let (status, version, resp_headers, body, tls) = match conn {
            Conn::H2(conn, info) => {
                let ex = self_h2(
                    &conn,
                    &target,
                    &self.method,
                    headers.clone(),
                    self.body,
                    config,
                    &mut timings,
                )
                .await?;
                (ex.0, Version::HTTP_2, ex.1, ex.2, Some(info))
            }
            Conn::H1(mut conn, info) => {
                let ex = self_h1(
                    &mut conn,
                    &target,
                    &self.method,
                    &headers,
                    self.body.as_ref(),
                    config,
                    &mut timings,
                )
                .await?;
                if ex.3 {
                    give_back_h1(&client, key, conn, info.clone());
                }
                (ex.0, Version::HTTP_11, ex.1, ex.2, info)
            }
        };

        let raw_len = body.len() as u64;
        let content_encoding = resp_headers
            .iter()
            .filter(|(n, _)| n == http::header::CONTENT_ENCODING)
            .filter_map(|(_, v)| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let body = if config.decode && !content_encoding.is_empty() {
            decode_body(Vec::from(body), &content_encoding, config.max_decoded_body)?.into()
        } else {
            body
        };
        timings.total = started.elapsed();
        let mut map = HeaderMap::with_capacity(resp_headers.len());
        for (n, v) in &resp_headers {
            map.append(n.clone(), v.clone());
        }
        Ok(Response {
            url: self.url.into_string(),
            status,
            version,
            headers: map,
            wire_headers: resp_headers,
            body,
            raw_body_len: raw_len,
            timings,
            tls,
            request_headers: headers,
            redirects: Vec::new(),
            cache: CacheStatus::NotUsed,
            attempts: 1,
        })
    }
}

type Exchange = (StatusCode, Vec<(HeaderName, HeaderValue)>, Bytes);

/// A connection to send one request on.
enum Conn {
    /// HTTP/2 (over TLS), shared by concurrent requests.
    H2(H2Connection, TlsInfo),
    /// HTTP/1.1, this request's alone until it is given back.
    H1(H1Connection<MaybeTls>, Option<TlsInfo>),
}

/// A pooled HTTP/2 connection with room for a stream, or else an idle HTTP/1.1 one.
fn take_pooled(client: &ClientInner, key: &OriginKey) -> Option<Conn> {
    let mut pool = Pool::lock(&client.pool);
    let conns = pool.h2.entry(key.clone()).or_default();
    conns.retain(|(c, _)| !c.is_closed());
    if let Some((conn, info)) = conns.iter().find(|(c, _)| c.has_capacity()).cloned() {
        return Some(Conn::H2(conn, info));
    }
    pool.h1
        .get_mut(key)
        .and_then(Vec::pop)
        .map(|(conn, info)| Conn::H1(conn, info))
}

/// A pooled connection to `key`, or else the permit to open one. Over TLS, concurrent
/// requests to an origin that may speak HTTP/2 wait for one dial among them (the
/// permit), then share its connection; HTTP/1.1-only origins and plain HTTP dial
/// at once.
async fn take_pooled_or_gate(
    client: &ClientInner,
    key: &OriginKey,
    https: bool,
) -> (Option<Conn>, Option<tokio::sync::OwnedMutexGuard<()>>) {
    if !https {
        let idle = Pool::lock(&client.pool).h1.get_mut(key).and_then(Vec::pop);
        return (idle.map(|(conn, _)| Conn::H1(conn, None)), None);
    }
    if let Some(conn) = take_pooled(client, key) {
        return (Some(conn), None);
    }
    let gate = {
        let mut pool = Pool::lock(&client.pool);
        (!pool.h1_origins.contains(key))
            .then(|| pool.dial_gates.entry(key.clone()).or_default().clone())
    };
    match gate {
        Some(gate) => {
            let permit = gate.lock_owned().await;
            (take_pooled(client, key), Some(permit))
        }
        None => (None, None),
    }
}

/// Dials `target` (through the proxy, if any), runs the TLS handshake for `https`
/// and then the HTTP/2 one when ALPN picked `h2`, and pools a new HTTP/2 connection
/// before the dial permit is released (so the requests waiting on it find it).
async fn open_connection(
    client: &ClientInner,
    target: &Target,
    key: &OriginKey,
    priority: crate::profile::Http2Priority,
    dial_permit: Option<tokio::sync::OwnedMutexGuard<()>>,
    timings: &mut Timings,
) -> Result<Conn> {
    let config = &client.config;
    let (io, dial) = client.dialer.dial(&target.host, target.port).await?;
    let io: BoxedIo = Box::pin(CountingIo::new(io, client.counters.bytes.clone()));
    client
        .counters
        .connections_opened
        .fetch_add(1, Ordering::Relaxed);
    metrics::counter!("connections_opened_total").increment(1);
    timings.dns = dial.dns;
    timings.connect = dial.connect;
    if !target.https {
        return Ok(Conn::H1(H1Connection::new(MaybeTls::Plain(io)), None));
    }
    let alpn = match config.version {
        HttpVersionPref::Auto => None,
        HttpVersionPref::Http1Only => Some(vec!["http/1.1".to_string()]),
        HttpVersionPref::Http2Only => Some(vec!["h2".to_string()]),
    };
    let tls_started = Instant::now();
    let handshake = client.tls.connect(
        &target.host,
        target.port,
        io,
        alpn.as_deref(),
        &client.tickets,
    );
    let (stream, info) = match config.tls_timeout {
        Some(limit) => tokio::time::timeout(limit, handshake).await.map_err(|_| {
            Error::timeout(format!(
                "after {limit:?} in the TLS handshake with `{}`",
                target.host
            ))
        })??,
        None => handshake.await?,
    };
    timings.tls = tls_started.elapsed();
    if info.resumed {
        client.counters.tls_resumed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tls_resumed_total").increment(1);
    }
    if info.alpn.as_deref() == Some("h2") {
        let conn = h2::handshake(stream, &config.profile.http2, priority).await?;
        Pool::lock(&client.pool)
            .h2
            .entry(key.clone())
            .or_default()
            .push((conn.clone(), info.clone()));
        drop(dial_permit);
        Ok(Conn::H2(conn, info))
    } else {
        Pool::lock(&client.pool).h1_origins.insert(key.clone());
        drop(dial_permit);
        Ok(Conn::H1(
            H1Connection::new(MaybeTls::Tls(Box::new(stream))),
            Some(info),
        ))
    }
}

async fn self_h2(
    conn: &H2Connection,
    target: &Target,
    method: &Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
    config: &ClientBuilder,
    timings: &mut Timings,
) -> Result<Exchange> {
    let sent = Instant::now();
    let head = http::Request::builder()
        .method(method.clone())
        .uri(&target.uri)
        .version(Version::HTTP_2)
        .body(())
        .map_err(|e| Error::invalid_url(&target.uri, e))?;
    let ex = conn
        .send(
            head,
            headers,
            body,
            config.profile.http2.cookie_crumbling,
            config.max_body,
        )
        .await?;
    timings.first_byte = ex.first_byte.duration_since(sent);
    let (parts, ()) = ex.response.into_parts();
    let headers = parts
        .headers
        .into_iter()
        .fold(Vec::new(), |mut acc, (n, v)| {
            let name = n.or_else(|| {
                acc.last()
                    .map(|(n, _): &(HeaderName, HeaderValue)| n.clone())
            });
            if let Some(name) = name {
                acc.push((name, v));
            }
            acc
        });
    Ok((parts.status, headers, ex.body))
}

async fn self_h1(
    conn: &mut H1Connection<MaybeTls>,
    target: &Target,
    method: &Method,
    headers: &[(HeaderName, HeaderValue)],
    body: Option<&Bytes>,
    config: &ClientBuilder,
    timings: &mut Timings,
) -> Result<(StatusCode, Vec<(HeaderName, HeaderValue)>, Bytes, bool)> {
    let sent = Instant::now();
    let ex = conn
        .send(
            method,
            &target.authority,
            &target.path,
            headers,
            body,
            &config.profile.http1,
            config.max_body,
        )
        .await?;
    timings.first_byte = ex.first_byte.duration_since(sent);
    Ok((ex.status, ex.headers, ex.body.into(), ex.reusable))
}

fn give_back_h1(
    client: &ClientInner,
    key: OriginKey,
    conn: H1Connection<MaybeTls>,
    info: Option<TlsInfo>,
) {
    let mut pool = Pool::lock(&client.pool);
    let idle = pool.h1.entry(key).or_default();
    if idle.len() < client.config.max_idle_per_origin {
        idle.push((conn, info));
    }
}

/// A parsed request target.
#[derive(Debug)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    /// `host` or `host:port` when the port is not the scheme's default.
    authority: String,
    path: String,
    uri: String,
}

impl Target {
    fn parse(raw: &str) -> Result<Target> {
        let url = url::Url::parse(raw).map_err(|e| Error::invalid_url(raw, e))?;
        Target::from_url(&url, raw)
    }

    /// The target of `url` (`raw` as the caller wrote it, for errors).
    fn from_url(url: &url::Url, raw: &str) -> Result<Target> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(Error::invalid_url(
                    raw,
                    format!("scheme `{other}` is not supported"),
                ))
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(Error::invalid_url(raw, "no host")),
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        let host_part = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let authority = match url.port() {
            Some(p) => format!("{host_part}:{p}"),
            None => host_part,
        };
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        let uri = format!("{}://{authority}{path}", url.scheme());
        Ok(Target {
            https,
            host,
            port,
            authority,
            path,
            uri,
        })
    }

    fn key(&self) -> OriginKey {
        (
            if self.https { "https" } else { "http" }.to_string(),
            self.host.clone(),
            self.port,
        )
    }
}

/// Where the time of one exchange went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Timings {
    /// Name resolution (zero on a pooled connection).
    #[serde(serialize_with = "as_micros")]
    pub dns: Duration,
    /// TCP connect and proxy tunnel (zero on a pooled connection).
    #[serde(serialize_with = "as_micros")]
    pub connect: Duration,
    /// TLS handshake (zero on a pooled connection).
    #[serde(serialize_with = "as_micros")]
    pub tls: Duration,
    /// From sending the request to the response head.
    #[serde(serialize_with = "as_micros")]
    pub first_byte: Duration,
    /// The whole exchange.
    #[serde(serialize_with = "as_micros")]
    pub total: Duration,
}

fn as_micros<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

/// A complete response: head, decoded body, timings and TLS details.
#[derive(Clone, Debug)]
pub struct Response {
    url: String,
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    wire_headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    raw_body_len: u64,
    timings: Timings,
    tls: Option<TlsInfo>,
    request_headers: Vec<(HeaderName, HeaderValue)>,
    redirects: Vec<Redirect>,
    cache: CacheStatus,
    attempts: usize,
}

/// One redirect a session followed on the way to a response.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Redirect {
    /// The URL that answered with a redirect.
    pub url: String,
    /// Its status (301, 302, 303, 307 or 308).
    pub status: u16,
}

/// How a session's conditional cache took part in a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// The cache was not consulted (a plain client, a non-GET, or the per-request switch).
    #[default]
    NotUsed,
    /// Nothing was stored for the URL; the request went out as is.
    Miss,
    /// A fresh stored response answered; no request left.
    Hit,
    /// The request carried validators and the server said 304; the stored 200 is returned.
    Revalidated,
    /// The request carried validators and the server said 304; no body was stored, so
    /// the 304 is returned.
    NotModified,
    /// The request carried validators and the server sent a new response.
    Modified,
}

impl Response {
    /// The URL requested (after a session's redirects: the final URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The redirects a session followed to get here, in order (empty for a plain client).
    pub fn redirects(&self) -> &[Redirect] {
        &self.redirects
    }

    /// Attempts the engine made for this response (1 without retries, and outside an
    /// engine).
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    pub(crate) fn with_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts;
        self
    }

    /// How the session's conditional cache took part.
    pub fn cache_status(&self) -> CacheStatus {
        self.cache
    }

    pub(crate) fn with_session_details(
        mut self,
        url: String,
        redirects: Vec<Redirect>,
        cache: CacheStatus,
    ) -> Self {
        self.url = url;
        self.redirects = redirects;
        self.cache = cache;
        self
    }

    /// A response made from a cache entry, for `url`.
    pub(crate) fn from_cache(
        url: String,
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
        cache: CacheStatus,
    ) -> Self {
        let mut map = HeaderMap::with_capacity(headers.len());
        for (n, v) in &headers {
            map.append(n.clone(), v.clone());
        }
        Response {
            url,
            status,
            version: Version::HTTP_2,
            headers: map,
            wire_headers: headers,
            raw_body_len: body.len() as u64,
            body,
            timings: Timings::default(),
            tls: None,
            request_headers: Vec::new(),
            redirects: Vec::new(),
            cache,
            attempts: 1,
        }
    }
    /// Status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// HTTP version used.
    pub fn version(&self) -> Version {
        self.version
    }
    /// Headers, for lookup.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// Headers in the order the server sent them.
    pub fn wire_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.wire_headers
    }
    /// The body, Content-Encoding undone.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Body bytes as received, before decoding.
    pub fn raw_body_len(&self) -> u64 {
        self.raw_body_len
    }
    /// Timings of the exchange.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }
    /// TLS details, for `https://`.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }
    /// The regular headers sent, in wire order (pseudo-headers and `host` excluded).
    pub fn request_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.request_headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("https://A.test:8443/p?q=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            ("a.test", 8443, "a.test:8443", "/p?q=1")
        );
        let t = Target::parse("http://[::1]/").unwrap();
        assert_eq!((t.authority.as_str(), t.port), ("[::1]", 80));
        assert!(Target::parse("ftp://x/").unwrap_err().is_invalid_url());
        assert!(Target::parse("not a url").unwrap_err().is_invalid_url());
        assert!(Target::parse("/relative").unwrap_err().is_invalid_url());
    }
}
