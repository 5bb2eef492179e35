//! Sessions: one browser identity over a long life. A [`Session`] owns its connection
//! pool and TLS tickets (through its [`Client`]), its cookie jar, its conditional cache,
//! the current top-level document, the origins that asked for client hints, its
//! identifier and its counters.
//!
//! Every request goes through [`Session::execute`], which is the one place that
//! decides, per hop of a redirect chain: `sec-fetch-site`, `Referer` and `Origin`
//! ([`nav`]), the cookies ([`crate::cookies::CookieJar`]), the client hints, the
//! validators ([`cache`]), and whether and where to go next ([`redirect`]).
//!
//! A session is cheap to clone (clones share everything) and safe to use from many
//! tasks at once: HTTP/2 requests run concurrently; the jar and cache sit behind one
//! short lock that is never held across I/O. What each observability call costs is
//! written on it.

pub mod cache;
mod hop;
pub mod nav;
pub mod redirect;
pub(crate) mod snapshot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue, Method};
use serde::Serialize;
use url::Url;
use uuid::Uuid;

pub use self::cache::{CacheConfig, ConditionalCache};
pub use self::snapshot::{SessionSnapshot, SnapshotKey, SNAPSHOT_VERSION};
use crate::client::{
    CacheStatus, Client, ClientBuilder, Redirect, Response, StreamingResponse, TransportStats,
};
use crate::cookies::{CookieJar, CookieLimits, CookieRecord, ImportedCookies, TrackingFilter};
use crate::error::{Error, Result};
use crate::profile::{Profile, RequestKind};
use crate::request::{Request, RequestBuilder, RequestUrl};

/// Builds a [`Session`].
pub struct SessionBuilder {
    transport: ClientBuilder,
    identifier: Option<String>,
    tenant: String,
    cookie_limits: CookieLimits,
    tracking: TrackingFilter,
    cache: CacheConfig,
    max_redirects: usize,
}

impl SessionBuilder {
    /// Sets transport options (CA file, proxy, resolve overrides, timeouts, ...) on the
    /// session's client.
    pub fn transport(mut self, f: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Self {
        self.transport = f(self.transport);
        self
    }

    /// The identifier that partitions TLS tickets (default: the session id).
    pub fn identifier(mut self, id: impl Into<String>) -> Self {
        self.identifier = Some(id.into());
        self
    }

    /// The tenant the session belongs to (default [`crate::tenant::DEFAULT_TENANT`]):
    /// part of its store key and its TLS-ticket partition, fixed for its life.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Cookie size and count limits.
    pub fn cookie_limits(mut self, limits: CookieLimits) -> Self {
        self.cookie_limits = limits;
        self
    }

    /// Drop tracking cookies before they are stored (off by default).
    pub fn tracking_filter(mut self, filter: TrackingFilter) -> Self {
        self.tracking = filter;
        self
    }

    /// What the conditional cache keeps.
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// Most redirects followed per request (default 10).
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.max_redirects = n;
        self
    }

    /// Builds the session.
    ///
    /// # Errors
    ///
    /// Transport configuration errors (an unreadable CA file, a profile the TLS stack
    /// refuses), [`Error::is_invalid_input`] for a malformed tenant name.
    pub fn build(self) -> Result<Session> {
        self.build_with(Uuid::new_v4(), SystemTime::now())
    }

    fn build_with(self, id: Uuid, created_at: SystemTime) -> Result<Session> {
        crate::tenant::check_tenant(&self.tenant)?;
        self.cache.validate()?;
        let client = self.transport.build()?;
        let identifier = self.identifier.unwrap_or_else(|| id.to_string());
        let session = Session {
            inner: Arc::new(Inner {
                id,
                tenant: Arc::from(self.tenant),
                created_at,
                client,
                max_redirects: self.max_redirects,
                request_count: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
                last_used_ms: AtomicU64::new(unix_ms(created_at)),
                active: AtomicBool::new(true),
                state: Mutex::new(State {
                    jar: CookieJar::with_policy(self.cookie_limits, self.tracking),
                    cache: ConditionalCache::new(self.cache),
                    document: None,
                    accept_ch: BTreeMap::new(),
                    identifier: String::new(),
                }),
            }),
        };
        session.set_identifier(&identifier);
        Ok(session)
    }
}

/// One browser identity: see the module documentation.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    id: Uuid,
    /// Shared: the metrics label of every request clones it.
    tenant: Arc<str>,
    created_at: SystemTime,
    client: Client,
    max_redirects: usize,
    request_count: AtomicU64,
    in_flight: AtomicUsize,
    last_used_ms: AtomicU64,
    active: AtomicBool,
    state: Mutex<State>,
}

struct State {
    jar: CookieJar,
    cache: ConditionalCache,
    /// The current top-level document: the final URL of the last navigation (shared
    /// with the requests it initiates, so each does not copy it).
    document: Option<Arc<Url>>,
    /// Origins that sent `Accept-CH`, and the hints they asked for (lower-case).
    accept_ch: BTreeMap<String, Vec<String>>,
    identifier: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("profile", &self.profile().name)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a session's counters and sizes, from [`Session::stats`].
#[derive(Clone, Debug, Serialize)]
pub struct SessionStats {
    /// The session id (UUID v4).
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// Profile name.
    pub profile: String,
    /// TLS-ticket partition identifier.
    pub identifier: String,
    /// Creation time, Unix milliseconds.
    pub created_at: u64,
    /// When a request last started or ended, Unix milliseconds.
    pub last_used: u64,
    /// Requests that left (each redirect hop counts; failed ones too; cache hits not).
    pub request_count: u64,
    /// False forever after [`Session::close`].
    pub active: bool,
    /// Requests running now.
    pub in_flight: usize,
    /// Unexpired cookies.
    pub cookie_count: usize,
    /// Bytes of `name=value` over those cookies.
    pub cookie_bytes: usize,
    /// Cookies from responses the jar rejected since the session was built or
    /// restored in this process (why: `cookies::RejectReason`, logged at debug level).
    pub cookies_rejected: u64,
    /// URLs with cache validators.
    pub cache_entry_count: usize,
    /// Cached body bytes.
    pub cache_body_bytes: usize,
    /// Seconds since creation.
    pub age_secs: f64,
    /// Seconds since a request last started or ended; 0 while one is running.
    pub idle_secs: f64,
    /// Connections, reuse, resumption, streams and bytes.
    pub transport: TransportStats,
    /// Quarantined by the engine after blocked responses (always false outside one).
    pub quarantined: bool,
    /// The protocol each origin with a pooled connection speaks now, and the HTTP/3
    /// alternative each origin offered (`Alt-Svc`), sorted by origin.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<crate::client::OriginProtocol>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Session {
    /// A builder wearing `profile` (a `Profile`, or an `Arc<Profile>` shared with
    /// other sessions: [`Profile::shared`]).
    pub fn builder(profile: impl Into<Arc<Profile>>) -> SessionBuilder {
        SessionBuilder {
            transport: Client::builder(profile),
            identifier: None,
            tenant: crate::tenant::DEFAULT_TENANT.to_owned(),
            cookie_limits: CookieLimits::default(),
            tracking: TrackingFilter::Off,
            cache: CacheConfig::default(),
            max_redirects: redirect::DEFAULT_MAX_REDIRECTS,
        }
    }

    /// The session id.
    pub fn id(&self) -> Uuid {
        self.inner.id
    }

    /// Requests sent so far (each redirect hop counts). Cost: one atomic load.
    pub fn request_count(&self) -> u64 {
        self.inner
            .request_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Time since the session was created (zero if the clock went back).
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.inner.created_at)
            .unwrap_or_default()
    }

    /// The tenant the session belongs to.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The tenant as a shared string (a reference count, no copy).
    pub fn tenant_shared(&self) -> Arc<str> {
        self.inner.tenant.clone()
    }

    /// The key the session is saved under in a store (see [`crate::tenant::store_key`]).
    pub fn store_key(&self) -> String {
        crate::tenant::store_key(&self.inner.tenant, &self.inner.id.to_string())
    }

    /// The profile this session wears.
    pub fn profile(&self) -> &Profile {
        self.inner.client.profile()
    }

    /// The underlying client (pool and tickets).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the jar or cache half-updated in a
        // way that matters more than losing the session would: keep going.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counters and sizes. Cost: a few atomic loads, the session lock for constant-time
    /// jar and cache counts (plus a pass over the jar when a cookie has expired since the
    /// last call), the pool lock, and a copy of the id and identifier; no I/O.
    pub fn stats(&self) -> SessionStats {
        let now = SystemTime::now();
        let last_used = self.inner.last_used_ms.load(Ordering::Relaxed);
        let (
            cookie_count,
            cookie_bytes,
            cookies_rejected,
            cache_entry_count,
            cache_body_bytes,
            identifier,
        ) = {
            let mut st = self.state();
            st.jar.remove_expired();
            (
                st.jar.len(),
                st.jar.size_bytes(),
                st.jar.rejected_count(),
                st.cache.len(),
                st.cache.body_bytes(),
                st.identifier.clone(),
            )
        };
        SessionStats {
            id: self.inner.id.to_string(),
            tenant: self.inner.tenant.to_string(),
            profile: self.profile().name.clone(),
            identifier,
            created_at: unix_ms(self.inner.created_at),
            last_used,
            request_count: self.inner.request_count.load(Ordering::Relaxed),
            active: self.is_active(),
            in_flight: self.inner.in_flight.load(Ordering::Relaxed),
            cookie_count,
            cookie_bytes,
            cookies_rejected,
            cache_entry_count,
            cache_body_bytes,
            age_secs: now
                .duration_since(self.inner.created_at)
                .unwrap_or_default()
                .as_secs_f64(),
            idle_secs: if self.in_flight() > 0 {
                0.0
            } else {
                unix_ms(now).saturating_sub(last_used) as f64 / 1000.0
            },
            transport: self.inner.client.transport_stats(),
            quarantined: false,
            origins: self.inner.client.origin_protocols(),
        }
    }

    /// Time since a request last started or ended; zero while one is running (a
    /// streamed body still being read counts). Cost: two atomic loads.
    pub fn idle_time(&self) -> Duration {
        if self.in_flight() > 0 {
            return Duration::ZERO;
        }
        let last = self.inner.last_used_ms.load(Ordering::Relaxed);
        Duration::from_millis(unix_ms(SystemTime::now()).saturating_sub(last))
    }

    /// Requests running now. Cost: one atomic load.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// False forever after [`Session::close`]. Cost: one atomic load.
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Marks the session used now (resets idle time only). Cost: one atomic store.
    pub fn touch(&self) {
        self.inner
            .last_used_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// Drops cache validators and stored bodies; cookies, tickets, connections and
    /// identity stay. Cost: the session lock and freeing the entries.
    pub fn clear_cache(&self) {
        self.state().cache.clear();
    }

    /// Drops every cookie. Cost: the session lock and freeing the cookies.
    pub fn clear_cookies(&self) {
        self.state().jar.clear();
    }

    /// Sets the identifier that is part of every TLS-ticket key: tickets filed under
    /// another identifier are never offered again. Cost: two short locks.
    pub fn set_identifier(&self, identifier: &str) {
        let partition =
            crate::tenant::ticket_partition(&self.inner.tenant, identifier, &self.profile().name);
        self.inner.client.tickets().set_partition(&partition);
        self.state().identifier = identifier.to_string();
    }

    /// The current identifier. Cost: the session lock and a string copy.
    pub fn identifier(&self) -> String {
        self.state().identifier.clone()
    }

    /// Drops pooled connections; tickets and cookies stay, so the next connection
    /// resumes TLS. Cost: the pool lock; connections close in the background.
    pub fn refresh(&self) {
        self.inner.client.close_connections();
    }

    /// Closes the session: no new requests (they fail with [`Error::is_closed`]),
    /// connections dropped. Requests already running finish. Calling it twice is fine.
    pub fn close(&self) {
        self.inner.active.store(false, Ordering::Release);
        self.inner.client.close_connections();
    }

    /// The current top-level document (the final URL of the last navigation).
    pub fn document(&self) -> Option<String> {
        self.state().document.as_ref().map(|u| u.to_string())
    }

    /// Every unexpired cookie, oldest first. Cost: the session lock, a copy of each.
    pub fn cookies(&self) -> Vec<CookieRecord> {
        self.state().jar.records()
    }

    /// Cookies a same-site request to `url` would carry.
    ///
    /// # Errors
    ///
    /// An invalid URL.
    pub fn cookies_for(&self, url: &str) -> Result<Vec<CookieRecord>> {
        self.state().jar.get(url)
    }

    /// Sets a cookie as if `url` had answered `Set-Cookie: line`.
    ///
    /// # Errors
    ///
    /// The rejection (public suffix, size, prefix rules...) or an invalid URL.
    pub fn set_cookie(&self, url: &str, line: &str) -> Result<()> {
        self.state().jar.set(url, line)
    }

    /// Deletes one cookie; true when it existed.
    pub fn delete_cookie(&self, domain: &str, path: &str, name: &str) -> bool {
        self.state().jar.delete(domain, path, name)
    }

    /// Adds cookies, all or nothing; says how many were stored and how many skipped
    /// as already expired.
    ///
    /// # Errors
    ///
    /// The first invalid record, by position and name; nothing is added then.
    pub fn import_cookies(&self, records: &[CookieRecord]) -> Result<ImportedCookies> {
        self.state().jar.import(records)
    }

    /// Loads the page at `url` as Chromium loads it: the document, then its stylesheets,
    /// scripts, images, fonts and icon with the browser's priorities and headers, over
    /// this session's connections, cookies and cache (`crate::page`). Every
    /// subresource is in the result, with what became of it.
    ///
    /// # Errors
    ///
    /// The document's failure (a subresource's failure is in its entry).
    pub async fn load_page(
        &self,
        url: &str,
        options: &crate::page::LoadOptions,
    ) -> Result<crate::page::PageLoad> {
        crate::page::load(self, url, options).await
    }

    /// Starts a request (a navigation unless [`RequestBuilder::kind`] says otherwise);
    /// `send` performs it.
    pub fn request(&self, method: Method, url: &str) -> SessionRequest {
        RequestBuilder::new(self.clone(), Request::new(method, url))
    }

    /// Starts a GET.
    pub fn get(&self, url: &str) -> SessionRequest {
        self.request(Method::GET, url)
    }

    /// Starts a POST.
    pub fn post(&self, url: &str) -> SessionRequest {
        self.request(Method::POST, url)
    }
}

/// A request on a session; `send` performs it, following redirects.
pub type SessionRequest = RequestBuilder<Session>;

impl crate::request::sealed::Sealed for Session {}
impl crate::request::SessionTarget for Session {}

/// Headers the session computes; a caller's own value for one of them wins.
const SESSION_HEADERS: [HeaderName; 3] = [
    http::header::REFERER,
    http::header::ORIGIN,
    HeaderName::from_static("sec-fetch-site"),
];

/// The request's URL, parsed (unless the caller did) and checked to be http or https;
/// errors name the URL as the caller wrote it.
fn http_url(url: RequestUrl) -> Result<Url> {
    let (url, written) = match url {
        RequestUrl::Parsed(url) => (url, None),
        RequestUrl::Text(text) => match Url::parse(&text) {
            Ok(url) => (url, Some(text)),
            Err(e) => return Err(Error::invalid_url(&text, e)),
        },
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid_url(
            written.as_deref().unwrap_or(url.as_str()),
            "only http and https are supported",
        ));
    }
    Ok(url)
}

impl RequestBuilder<Session> {
    /// Performs the request, following redirects (see [`Session::execute`]).
    ///
    /// # Errors
    ///
    /// A malformed header given to the builder, and [`Session::execute`]'s errors.
    pub async fn send(self) -> Result<Response> {
        let (session, request, error) = self.into_parts();
        match error {
            Some(e) => Err(e),
            None => session.execute(request).await,
        }
    }
}

impl RequestBuilder<Session> {
    /// Performs the request, following redirects, and returns at the final head; the
    /// body is read from the [`StreamingResponse`] as it arrives (see
    /// [`Session::execute_streaming`]).
    ///
    /// # Errors
    ///
    /// As `send`.
    pub async fn send_streaming(self) -> Result<StreamingResponse> {
        let (session, request, error) = self.into_parts();
        match error {
            Some(e) => Err(e),
            None => session.execute_streaming(request).await,
        }
    }
}

impl Session {
    /// Performs `request` as [`Session::execute`] does and returns at the final
    /// response's head; the body is read from the [`StreamingResponse`]. A streamed
    /// response is not cached (and no validators are sent for it). Until its body
    /// ends or is dropped, the request counts in [`Session::in_flight`]: the session
    /// is not idle, so an engine does not reap it mid-download.
    ///
    /// # Errors
    ///
    /// As [`Session::execute`].
    pub async fn execute_streaming(&self, request: Request) -> Result<StreamingResponse> {
        let response = self.execute(request.into_streaming()).await?;
        Ok(StreamingResponse::from_response(response))
    }

    /// Performs `request`, following redirects: per hop, the navigation context,
    /// cookies, client hints and cache validators go out (`hop::outgoing`) and the
    /// answer's cookies, hints, cache entry and redirect come in (`hop::absorb`).
    ///
    /// # Errors
    ///
    /// [`Error::is_closed`] on a closed session, [`Error::is_invalid_url`],
    /// [`Error::is_redirect`] past the redirect limit, and every transport error. Cookies
    /// from responses before a failure are kept.
    pub fn execute(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<Response>> + Send + 'static {
        // The future owns its handle (one reference count), so the engine boxes it as
        // it is, without a wrapping future.
        execute_on(self.clone(), request)
    }
}

/// [`Session::execute`]'s body.
async fn execute_on(session: Session, request: Request) -> Result<Response> {
    let session = &session;
    let s = &session.inner;
    if !session.is_active() {
        return Err(Error::closed(format!("session {}", s.id)));
    }
    let Request {
        method,
        url,
        headers,
        body,
        kind,
        options,
        stream_body,
    } = request;
    let url = http_url(url)?;
    let mut busy = Some(Busy::start(session));

    let initiator = if kind == RequestKind::Navigation && options.typed {
        None
    } else {
        session.state().document.clone()
    };
    let profile = session.profile();
    let plan = hop::Plan {
        profile,
        kind,
        template_has_site: profile
            .template(kind)
            .headers
            .iter()
            .any(|(n, _)| n == "sec-fetch-site"),
        initiator,
        use_cache: options.use_cache,
        follow_redirects: options.follow_redirects,
        max_redirects: s.max_redirects,
    };
    let mut hop = hop::Hop {
        site: nav::fetch_site(plan.initiator.as_deref(), &url),
        method,
        url,
        body,
        caller: headers,
        redirects: Vec::new(),
    };
    loop {
        // The session lock is taken for each decision, never across the exchange.
        let outgoing = hop::outgoing(&mut session.state(), &plan, &hop, SystemTime::now());
        let (headers, sent) = match outgoing {
            hop::Outgoing::Fresh(hit) => {
                let resp = cached(&hop.url, hit, CacheStatus::Hit);
                return Ok(finish(
                    session,
                    kind,
                    hop.url,
                    resp,
                    hop.redirects,
                    CacheStatus::Hit,
                ));
            }
            hop::Outgoing::Send(headers, sent) => (headers, sent),
        };
        s.request_count.fetch_add(1, Ordering::Relaxed);
        let wire = Request {
            method: hop.method.clone(),
            url: RequestUrl::Parsed(hop.url.clone()),
            headers,
            body: hop.body.clone(),
            kind,
            options,
            stream_body,
        };
        let resp = s.client.execute(wire).await?;
        let absorbed = {
            let mut st = session.state();
            let absorbed = hop::absorb(&mut st, &plan, &mut hop, &sent, &resp, SystemTime::now());
            metrics::histogram!("cookie_jar_size_bytes").record(st.jar.size_bytes() as f64);
            absorbed
        }?;
        match absorbed {
            hop::Absorbed::Done(cache) => {
                let mut resp = finish(session, kind, hop.url, resp, hop.redirects, cache);
                // A body still arriving keeps the request in flight until it ends.
                if let (Some(body), Some(mut busy)) = (resp.pending_mut(), busy.take()) {
                    busy.touch_at_end = true;
                    body.keep(Box::new(busy));
                }
                return Ok(resp);
            }
            hop::Absorbed::Revalidated(hit) => {
                let cache = CacheStatus::Revalidated;
                let resp = cached(&hop.url, hit, cache);
                return Ok(finish(session, kind, hop.url, resp, hop.redirects, cache));
            }
            hop::Absorbed::Follow => {}
        }
    }
}

/// The cache's copy of `url` as the response.
fn cached(url: &Url, hit: cache::CachedResponse, status: CacheStatus) -> Response {
    Response::from_cache(url.to_string(), hit.status, hit.headers, hit.body, status)
}

/// Records a navigation's final URL as the document and fills in the session details.
fn finish(
    session: &Session,
    kind: RequestKind,
    url: Url,
    resp: Response,
    redirects: Vec<Redirect>,
    cache: CacheStatus,
) -> Response {
    let text = url.to_string();
    if kind == RequestKind::Navigation {
        session.state().document = Some(Arc::new(url));
    }
    resp.with_session_details(text, redirects, cache)
}

/// The request as the cache sees it: method, URL and the caller's headers (the ones a
/// `Vary` could name; profile headers are the same on every request).
fn cache_request(url: &Url, caller: &[(HeaderName, HeaderValue)]) -> http::request::Parts {
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = Method::GET;
    parts.uri = url.as_str().parse().unwrap_or_default();
    for (n, v) in caller {
        parts.headers.append(n.clone(), v.clone());
    }
    parts
}

/// A request running on a session: counted in `in_flight` from its start until this
/// is dropped (at the end of `execute`, or with a streamed body when the body ends).
/// The session is marked used at the start, and at the end too when the end is a
/// streamed body's (a buffered request ends moments after it started: one clock read
/// per request saved).
struct Busy {
    inner: Arc<Inner>,
    touch_at_end: bool,
}

impl Busy {
    fn start(session: &Session) -> Busy {
        session.touch();
        session.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy {
            inner: session.inner.clone(),
            touch_at_end: false,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.touch_at_end {
            self.inner
                .last_used_ms
                .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
        }
        self.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
