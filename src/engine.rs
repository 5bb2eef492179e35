//! The engine: what a tokio program embeds to run many sessions. [`Engine`] is a cheap,
//! cloneable handle to an actor system (from `mummer-actors`) on its own threads: a
//! supervisor that creates, finds, lists, reaps and closes sessions, one actor per
//! session, and a retry/circuit-breaker actor in front of them.
//!
//! This module is the glue: it implements the actors' [`SessionCore`] trait for
//! [`Session`] (what an attempt is, how its outcome is classified, what its target host
//! is) and maps the actors' errors onto [`Error`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use mummer_actors::breaker::BreakerConfig;
use mummer_actors::dispatch::DeadLetter;
pub use mummer_actors::policy::Detected;
use mummer_actors::policy::{Attempt, RetryPolicy};
use mummer_actors::rate::{Rate, SharedRateLimit};
use mummer_actors::supervisor::LimitPolicy;
pub use mummer_actors::throttle::ThrottleConfig;
pub use mummer_actors::RequestSite;
use mummer_actors::{
    ActorError, ActorSystem, BoxFuture, CloseReason, EngineEvent, SessionCore, SessionRef,
    SystemConfig,
};
use tokio::sync::broadcast;

use crate::audit::{AuditConfig, AuditLog};
use crate::client::{ClientBuilder, Response};
use crate::error::{EngineErrorKind, Error, Result};
use crate::profile::{Profile, RequestKind};
use crate::proxies::{Assignment, ProxyRouter, RotationPolicy};
use crate::robots::RobotsCache;
use crate::session::snapshot::decode;
use crate::session::SnapshotKey;
use crate::session::{Session, SessionStats};
use crate::store::persist::{PersistSettings, Persister};
use crate::store::{Lease, SessionStore};
use crate::tls::TicketBackend;

pub use crate::tenant::DEFAULT_TENANT;

/// One request as the engine carries it: everything needed to send it again.
#[derive(Clone, Debug)]
pub struct EngineRequest {
    method: Method,
    /// The URL, parsed once: the session sends it as it is, and its host names the
    /// target for breakers and rate limits. `Err` holds a text that did not parse and
    /// why, which the session reports when the request is sent.
    url: std::result::Result<url::Url, (String, url::ParseError)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
    kind: RequestKind,
    typed: bool,
    no_cache: bool,
    no_redirects: bool,
}

impl EngineRequest {
    /// The URL as the caller gave it (serialized, when it parsed).
    fn url_text(&self) -> &str {
        match &self.url {
            Ok(url) => url.as_str(),
            Err((text, _)) => text,
        }
    }

    /// Whether it may be sent twice: an idempotent method, or an `Idempotency-Key`.
    fn replayable(&self) -> bool {
        let (method, keyed) = <Session as SessionCore>::method(self);
        mummer_actors::policy::is_idempotent(method, keyed)
    }
}

impl SessionCore for Session {
    type Request = EngineRequest;
    type Response = Response;
    type Error = Error;
    type Stats = SessionStats;

    fn execute(&self, r: &EngineRequest) -> BoxFuture<Result<Response>> {
        let req = match &r.url {
            Ok(url) => self.request_parsed(r.method.clone(), url.clone()),
            Err((text, _)) => self.request(r.method.clone(), text),
        };
        let mut req = req.kind(r.kind);
        for (n, v) in &r.headers {
            req = req.header_value(n.clone(), v.clone());
        }
        if let Some(b) = &r.body {
            req = req.body(b.clone());
        }
        if r.typed {
            req = req.typed();
        }
        if r.no_cache {
            req = req.no_cache();
        }
        if r.no_redirects {
            req = req.no_redirects();
        }
        Box::pin(req.send())
    }

    fn stats(&self) -> SessionStats {
        Session::stats(self)
    }

    fn in_flight(&self) -> usize {
        Session::in_flight(self)
    }

    fn idle_time(&self) -> Duration {
        Session::idle_time(self)
    }

    fn close(&self) {
        Session::close(self);
    }

    fn touch(&self) {
        Session::touch(self);
    }

    fn tenant_label(&self) -> metrics::SharedString {
        metrics::SharedString::from(self.tenant_shared())
    }

    fn target(r: &EngineRequest) -> &str {
        // `url` lower-cases the hosts of http and https URLs as it parses them.
        r.url
            .as_ref()
            .ok()
            .and_then(url::Url::host_str)
            .unwrap_or("")
    }

    fn method(r: &EngineRequest) -> (&str, bool) {
        let keyed = r.headers.iter().any(|(n, _)| n == "idempotency-key");
        (r.method.as_str(), keyed)
    }

    fn describe(result: &Result<Response>) -> Attempt {
        match result {
            Ok(resp) => Attempt::Response {
                status: resp.status().as_u16(),
                retry_after: resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            },
            // Timeouts, refused or reset connections and broken streams may pass; bad
            // input, TLS refusals, proxies refusing credentials and body limits will not.
            Err(e) => Attempt::Failure {
                transient: e.is_timeout() || e.is_connect() || e.is_protocol(),
            },
        }
    }
}

fn map_err(e: ActorError<Error>) -> Error {
    match e {
        ActorError::Session(e) => e,
        ActorError::SessionNotFound(id) => Error::session_not_found(&id),
        other @ ActorError::SessionLimit { .. } => {
            Error::engine(EngineErrorKind::Limit, other.to_string())
        }
        other @ ActorError::BreakerOpen { retry_in, .. } => {
            Error::engine(EngineErrorKind::Breaker, other.to_string()).with_retry_in(retry_in)
        }
        other @ ActorError::Quarantined(_) => {
            Error::engine(EngineErrorKind::Quarantined, other.to_string())
        }
        other @ ActorError::ShuttingDown => {
            Error::engine(EngineErrorKind::ShutDown, other.to_string())
        }
        other @ ActorError::Deadline(_) => {
            Error::engine(EngineErrorKind::Deadline, other.to_string())
        }
    }
}

/// How much of a body a block detector sees.
pub const BLOCK_CHECK_BYTES: usize = 64 * 1024;

/// What a block detector ([`EngineBuilder::block_detector`]) sees of an answer.
pub struct BlockCheck<'a> {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: &'a http::HeaderMap,
    /// The first [`BLOCK_CHECK_BYTES`] of the decoded body.
    pub body: &'a [u8],
}

/// The shortest lease TTL and save interval [`EngineBuilder::start`] accepts.
pub const MIN_STORE_PERIOD: Duration = Duration::from_millis(10);
/// The longest lease TTL and save interval [`EngineBuilder::start`] accepts (a day: a
/// longer lease outlives any crash it is meant to survive, and clocks must not overflow).
pub const MAX_STORE_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// Builds an [`Engine`].
pub struct EngineBuilder {
    config: SystemConfig<Session>,
    robots: Option<String>,
    tickets: Option<Arc<dyn TicketBackend>>,
    store: Option<Arc<dyn SessionStore>>,
    snapshot_key: Option<SnapshotKey>,
    save_interval: Duration,
    lease_ttl: Duration,
    proxies: Option<ProxyRouter>,
    audit: Option<AuditConfig>,
    audit_redis: Option<(crate::store::RedisStore, crate::store::RedisAuditConfig)>,
}

impl EngineBuilder {
    /// Most live sessions (default 100).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.config.supervisor.max_sessions = n;
        self
    }

    /// A session idle this long is closed by the reaper (default 30 minutes).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.supervisor.idle_timeout = d;
        self
    }

    /// How often the reaper runs (default 1 minute).
    pub fn reap_interval(mut self, d: Duration) -> Self {
        self.config.supervisor.reap_interval = d;
        self
    }

    /// At the limit, close the least recently used idle session instead of refusing.
    pub fn evict_idle_at_limit(mut self, evict: bool) -> Self {
        self.config.supervisor.at_limit = if evict {
            LimitPolicy::EvictIdle
        } else {
            LimitPolicy::Refuse
        };
        self
    }

    /// How long close and shutdown wait for running requests (default 10 s).
    pub fn close_deadline(mut self, d: Duration) -> Self {
        self.config.supervisor.close_deadline = d;
        self
    }

    /// Arbiter threads for session actors (default: one per core). 0 runs the session
    /// actors on the engine's system thread, next to the dispatcher. With requests run
    /// on the arbiters ([`RequestSite::Arbiter`]) this decides where the HTTP work
    /// goes; with the default [`RequestSite::Caller`] the actors only hold lifecycle
    /// and the work runs in the callers' tasks.
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// Where requests run: in the calling task (default; the cheapest, no thread
    /// crossing) or on the session's arbiter (all network work on the engine's threads,
    /// two thread crossings per request). Both go through the same retry, breaker and
    /// rate-limit logic, and a close aborts both at its deadline.
    pub fn request_site(mut self, site: RequestSite) -> Self {
        self.config.site = site;
        self
    }

    /// Retries, backoff, deadlines and status classes.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// At most `rate` requests to each target host, all sessions of a tenant together
    /// (of all tenants with [`EngineBuilder::global_host_budget`]).
    pub fn rate_limit_per_host(mut self, rate: Rate) -> Self {
        self.config.rates.per_host = Some(rate);
        self
    }

    /// Counts host breakers, host rate limits and 429 throttles over all tenants
    /// instead of per tenant (the default, so one tenant's failures or 429s at a host
    /// cannot stop or slow another's).
    pub fn global_host_budget(mut self, global: bool) -> Self {
        self.config.host_scope = if global {
            mummer_actors::HostScope::Global
        } else {
            mummer_actors::HostScope::PerTenant
        };
        self
    }

    /// At most `rate` requests from each session.
    pub fn rate_limit_per_session(mut self, rate: Rate) -> Self {
        self.config.rates.per_session = Some(rate);
        self
    }

    /// Obey robots.txt, matching groups for `agent` (e.g. `mummer`); off by default in
    /// the library, on in the crawler example. A `Crawl-delay` sets that host's rate.
    pub fn respect_robots(mut self, agent: Option<&str>) -> Self {
        self.robots = agent.map(str::to_string);
        self
    }

    /// On a 401 or 403, call `hook` with the session and the status; it may log in
    /// again through the session (cookies land in its jar) and return headers to set
    /// on the retried request (`Some(vec![])` for none), or `None` to let the session
    /// be quarantined.
    ///
    /// No stampede: a session's concurrent refusals call the hook once; the other
    /// requests wait for it (within their deadlines) and are then sent once more with
    /// the same headers. A hook that gives up or does not finish within the request's
    /// deadline quarantines the session, with that as the cause.
    pub fn on_auth_failure<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Session, u16) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Option<Vec<(HeaderName, HeaderValue)>>> + Send + 'static,
    {
        let hook = Arc::new(hook);
        self.config.reauth = Some(Arc::new(
            move |session: &Session, _request: &EngineRequest, status: u16| {
                let fut = hook(session.clone(), status);
                Box::pin(async move {
                    let headers = fut
                        .await
                        .ok_or_else(|| "the re-authentication hook gave up".to_string())?;
                    let rewrite: mummer_actors::dispatch::Rewrite<Session> =
                        Arc::new(move |request: &EngineRequest| {
                            let mut request = request.clone();
                            for (name, value) in &headers {
                                request.headers.retain(|(n, _)| n != name);
                                request.headers.push((name.clone(), value.clone()));
                            }
                            request
                        });
                    Ok(rewrite)
                })
                    as BoxFuture<
                        std::result::Result<mummer_actors::dispatch::Rewrite<Session>, String>,
                    >
            },
        ));
        self
    }

    /// Looks at every answer before the retry policy does: `detector` sees the status,
    /// the headers and the first 64 KiB of the (decoded) body and may call it a block
    /// page ([`Detected::Blocked`]: the session is quarantined, as for a 403 — say, a
    /// CAPTCHA served with 200) or a soft failure ([`Detected::Retry`]: retried like a
    /// 503). `None` leaves the answer to its status.
    pub fn block_detector<F>(mut self, detector: F) -> Self
    where
        F: Fn(&BlockCheck<'_>) -> Option<Detected> + Send + Sync + 'static,
    {
        self.config.block_detector = Some(Arc::new(move |result: &Result<Response>| {
            let response = result.as_ref().ok()?;
            let body = response.body();
            detector(&BlockCheck {
                status: response.status(),
                headers: response.headers(),
                body: &body[..body.len().min(BLOCK_CHECK_BYTES)],
            })
        }));
        self
    }

    /// How hosts that answer 429 are slowed down (AIMD; see
    /// [`mummer_actors::throttle`]).
    pub fn throttle(mut self, config: ThrottleConfig) -> Self {
        self.config.throttle = config;
        self
    }

    /// Circuit breaker settings.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.config.breaker = config;
        self
    }

    /// A per-host rate limit shared with other processes (a
    /// [`crate::store::RedisRateLimit`]: N workers crawling one host stay under one
    /// budget), on top of the local limits.
    pub fn shared_rate_limit(mut self, limit: Arc<dyn SharedRateLimit>) -> Self {
        self.config.shared_rate = Some(limit);
        self
    }

    /// Keeps every session's TLS tickets in `backend` too (a
    /// [`crate::store::RedisTickets`]): a session with the same identifier and profile
    /// resumes on any worker. Keys carry the identifier, so identifiers stay isolated.
    pub fn ticket_backend(mut self, backend: Arc<dyn TicketBackend>) -> Self {
        self.tickets = Some(backend);
        self
    }

    /// Hands every dead letter to `sink` as well (a [`crate::store::RedisDeadLetters`]
    /// stream that every worker reads), besides the in-memory queue.
    pub fn dead_letter_sink(mut self, sink: mummer_actors::dispatch::DeadLetterSink) -> Self {
        self.config.dead_letter_sink = Some(sink);
        self
    }

    /// Proxy pools and routes: each new session takes its exit from the pool its target
    /// domain and tenant route to, and keeps it for life ([`SessionConfig::target`],
    /// [`SessionConfig::tenant`]). Requests that fail at the proxy count against it; a
    /// pool with every proxy benched fails creation with
    /// [`Error::is_no_healthy_proxy`].
    pub fn proxies(mut self, router: ProxyRouter) -> Self {
        self.proxies = Some(router);
        self
    }

    /// Writes the audit trail of session lifecycle events (created, proxy assigned,
    /// rotated, quarantined, closed) to a JSON-lines file with retention
    /// ([`crate::audit`]). Needs a tokio runtime at [`EngineBuilder::start`];
    /// [`Engine::shutdown`] returns after the last close is written.
    pub fn audit(mut self, config: AuditConfig) -> Self {
        self.audit_redis = None;
        self.audit = Some(config);
        self
    }

    /// Writes the audit trail to the Redis stream `NS:audit` of `store` instead of a
    /// file (the same entries; [`crate::store::redis_audit`]), so every worker's
    /// sessions land in one trail. Needs a tokio runtime at [`EngineBuilder::start`].
    pub fn audit_redis(
        mut self,
        store: &crate::store::RedisStore,
        config: crate::store::RedisAuditConfig,
    ) -> Self {
        self.audit = None;
        self.audit_redis = Some((store.clone(), config));
        self
    }

    /// Keeps sessions in `store` ([`crate::store::FileStore`],
    /// [`crate::store::RedisStore`], or [`crate::store::open_store`] from a URL): each
    /// session is leased to this engine while it lives, saved on the save interval, on
    /// close, eviction, idle reaping and shutdown, and can be restored
    /// ([`Engine::restore_sessions`]) or checked out by id ([`Engine::checkout_session`])
    /// by another engine once its lease is free.
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Encrypts what the store keeps with `key` (ChaCha20-Poly1305, as snapshot files).
    pub fn snapshot_key(mut self, key: SnapshotKey) -> Self {
        self.snapshot_key = Some(key);
        self
    }

    /// How often sessions that sent requests since their last save are saved (default
    /// 30 s).
    pub fn save_interval(mut self, every: Duration) -> Self {
        self.save_interval = every;
        self
    }

    /// How long a session's lease lasts without renewal (default 30 s; renewed every
    /// third of it). After a crash, another worker can take the session this long after
    /// the last renewal (a file store's lease ends with the process at once).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Starts the engine's threads (and, with a store, its background saver, on the
    /// current tokio runtime).
    ///
    /// # Errors
    ///
    /// Breaker settings, a lease TTL or a save interval out of range; the OS refusing a
    /// thread; with a store, being called outside a tokio runtime.
    pub fn start(mut self) -> Result<Engine> {
        self.config
            .breaker
            .validate()
            .map_err(Error::invalid_input)?;
        for (name, value) in [
            ("lease_ttl", self.lease_ttl),
            ("save_interval", self.save_interval),
        ] {
            if !(MIN_STORE_PERIOD..=MAX_STORE_PERIOD).contains(&value) {
                return Err(Error::invalid_input(format!(
                    "{name} {value:?} is out of range ({MIN_STORE_PERIOD:?} to {MAX_STORE_PERIOD:?})"
                )));
            }
        }
        let close_deadline = self.config.supervisor.close_deadline;
        let persister = match self.store.take() {
            None => None,
            Some(store) => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    Error::invalid_input(
                        "an engine with a store must be started inside a tokio runtime",
                    )
                })?;
                let persister = Arc::new(Persister::new(
                    store,
                    self.snapshot_key.take(),
                    PersistSettings {
                        save_interval: self.save_interval,
                        lease_ttl: self.lease_ttl,
                        close_deadline: self.config.supervisor.close_deadline,
                    },
                ));
                Some((persister, runtime))
            }
        };
        let exits: Arc<Mutex<HashMap<String, Routed>>> = Arc::default();
        {
            let persister = persister.as_ref().map(|(p, _)| p.clone());
            let (router, exits) = (self.proxies.clone(), exits.clone());
            self.config.on_close = Some(Arc::new(move |session: &Session, reason| {
                let id = session.id().to_string();
                if let Some(p) = &persister {
                    p.closing(&session.store_key(), reason);
                }
                let routed = exits.lock().ok().and_then(|mut e| e.remove(&id));
                if let (Some(router), Some(routed)) = (&router, routed) {
                    router.release(&routed.exit);
                }
            }));
        }
        let system = Arc::new(
            ActorSystem::start(self.config)
                .map_err(|e| Error::io("starting the engine threads", e))?,
        );
        let sink = match (self.audit.take(), self.audit_redis.take()) {
            (Some(config), _) => Some(AuditSink::File(AuditLog::open(config)?)),
            (None, Some((store, config))) => Some(AuditSink::Redis(Box::new(
                crate::store::RedisAuditLog::new(&store, config),
            ))),
            (None, None) => None,
        };
        let audit = match sink {
            None => None,
            Some(sink) => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    Error::invalid_input(
                        "an engine with an audit trail must be started inside a tokio runtime",
                    )
                })?;
                Some(AuditTask::spawn(sink, system.events(), &runtime))
            }
        };
        let persister = persister.map(|(persister, runtime)| {
            let weak = Arc::downgrade(&system);
            let spawner = runtime.clone();
            persister.attach(
                system.event_sender(),
                Box::new(move |id| {
                    if let Some(system) = weak.upgrade() {
                        spawner.spawn(async move {
                            system.close(&id, CloseReason::LeaseLost).await;
                        });
                    }
                }),
            );
            runtime.spawn(persister.clone().run());
            persister
        });
        Ok(Engine {
            system,
            robots: self.robots.map(|agent| Arc::new(RobotsCache::new(&agent))),
            persister,
            tickets: self.tickets,
            close_deadline,
            proxies: self.proxies,
            exits,
            rotations: Arc::default(),
            audit: audit.map(Arc::new),
        })
    }
}

/// What a new session wears and how it connects.
pub struct SessionConfig {
    profile: std::result::Result<Profile, String>,
    identifier: Option<String>,
    transport: Box<dyn FnOnce(ClientBuilder) -> ClientBuilder + Send>,
    tenant: String,
    target: Option<String>,
    proxy_key: Option<String>,
}

impl SessionConfig {
    /// A session wearing a built-in profile, alias or profile file.
    pub fn profile(name: &str) -> SessionConfig {
        SessionConfig {
            profile: Profile::resolve(name).map_err(|e| e.to_string()),
            identifier: None,
            transport: Box::new(|b| b),
            tenant: DEFAULT_TENANT.to_owned(),
            target: None,
            proxy_key: None,
        }
    }

    /// A session wearing `profile`.
    pub fn with_profile(profile: Profile) -> SessionConfig {
        SessionConfig {
            profile: Ok(profile),
            identifier: None,
            transport: Box::new(|b| b),
            tenant: DEFAULT_TENANT.to_owned(),
            target: None,
            proxy_key: None,
        }
    }

    /// The TLS-ticket identifier (default: the session id).
    pub fn identifier(mut self, id: impl Into<String>) -> Self {
        self.identifier = Some(id.into());
        self
    }

    /// The tenant the session belongs to (default `default`; see [`crate::tenant`]):
    /// its store key and TLS-ticket partition carry it, metrics are labelled with it,
    /// routing rules may send it to its own pool, and an API token of another tenant
    /// cannot see the session.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// The domain the session will mostly visit, for the routing table's domain rules.
    pub fn target(mut self, domain: impl Into<String>) -> Self {
        self.target = Some(domain.into());
        self
    }

    /// What the `hash` strategy hashes to pick the proxy (default: the tenant), so the
    /// same key gets the same exit across restarts.
    pub fn proxy_key(mut self, key: impl Into<String>) -> Self {
        self.proxy_key = Some(key.into());
        self
    }

    /// Transport options: proxy, CA file, resolve overrides, timeouts. With proxy
    /// pools ([`EngineBuilder::proxies`]) a routed session's pool proxy replaces the
    /// proxy set here.
    pub fn transport(
        mut self,
        f: impl FnOnce(ClientBuilder) -> ClientBuilder + Send + 'static,
    ) -> Self {
        self.transport = Box::new(f);
        self
    }
}

/// Where a session comes from when it goes live, which decides what the store needs.
enum Origin {
    /// Made by this engine (a fresh id).
    Created,
    /// Built elsewhere (it may have a stored version).
    Adopted,
    /// Checked out of the store: its lease and the version it was loaded as.
    CheckedOut(Lease, u64),
}

/// A summary of one live session, from [`Engine::list_sessions`].
pub type SessionInfo = SessionStats;

/// The handle a tokio program embeds. Cheap to clone; every clone drives the same
/// engine.
#[derive(Clone)]
pub struct Engine {
    system: Arc<ActorSystem<Session>>,
    robots: Option<Arc<RobotsCache>>,
    persister: Option<Arc<Persister>>,
    tickets: Option<Arc<dyn TicketBackend>>,
    /// How long a closing session's requests may run.
    close_deadline: Duration,
    /// Proxy pools and routes, when configured.
    proxies: Option<ProxyRouter>,
    /// Each live session's exit (sessions routed to a pool).
    exits: Arc<Mutex<HashMap<String, Routed>>>,
    /// Rotations under way or done, by the old id (see [`Engine::rotate_session`]).
    rotations: Arc<Mutex<Rotations>>,
    /// The audit trail's writer task, when configured.
    audit: Option<Arc<AuditTask>>,
}

/// Where the audit trail goes.
enum AuditSink {
    File(AuditLog),
    Redis(Box<crate::store::RedisAuditLog>),
}

impl AuditSink {
    async fn write(&self, e: &EngineEvent) {
        let written = match self {
            AuditSink::File(log) => log.record(e),
            AuditSink::Redis(log) => log.record(e).await,
        };
        if let Err(err) = written {
            if err.is_store_unavailable() {
                tracing::warn!(error = %err, "audit trail store unavailable; entries wait in memory");
            } else {
                tracing::error!(error = %err, "audit trail write failed");
            }
        }
    }

    /// Writes what waited for an unreachable store (the file trail has nothing waiting).
    async fn flush(&self) {
        if let AuditSink::Redis(log) = self {
            if let Err(e) = log.flush_waiting().await {
                tracing::error!(error = %e, "audit entries still waiting for Redis at shutdown were not written");
            }
        }
    }
}

/// Writes engine events to the audit trail as they come; drained at shutdown.
struct AuditTask {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl AuditTask {
    fn spawn(
        sink: AuditSink,
        mut events: broadcast::Receiver<EngineEvent>,
        runtime: &tokio::runtime::Handle,
    ) -> AuditTask {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = runtime.spawn(async move {
            if let AuditSink::Redis(log) = &sink {
                // Retention once at start, as the file trail does when it opens.
                if let Err(e) = log.purge().await {
                    tracing::warn!(error = %e, "audit stream retention skipped: Redis unavailable");
                }
            }
            loop {
                tokio::select! {
                    next = events.recv() => match next {
                        Ok(e) => sink.write(&e).await,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::error!(missed = n, "the audit trail fell behind and missed events");
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = stopped.changed() => {
                        while let Ok(e) = events.try_recv() {
                            sink.write(&e).await;
                        }
                        sink.flush().await;
                        break;
                    }
                }
            }
        });
        AuditTask {
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Writes what is queued and stops.
    async fn finish(&self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// Rotations by old session id: a second rotation of one session (a request that failed
/// at the proxy while the proxy's benching rotates everything on it) waits for the first
/// and gets the same successor; callers holding an old id can find the new one.
#[derive(Default)]
struct Rotations {
    by_old: HashMap<String, (std::time::Instant, Arc<tokio::sync::OnceCell<String>>)>,
}

impl Rotations {
    /// How long a finished rotation is remembered (to name the successor).
    const KEEP: Duration = Duration::from_secs(600);

    /// The rotation of `id`, started now unless one is under way or done.
    fn of(&mut self, id: &str) -> Arc<tokio::sync::OnceCell<String>> {
        if self.by_old.len() > 1024 {
            self.by_old
                .retain(|_, (at, cell)| !cell.initialized() || at.elapsed() < Self::KEEP);
        }
        self.by_old
            .entry(id.to_owned())
            .or_insert_with(|| (std::time::Instant::now(), Arc::default()))
            .1
            .clone()
    }

    /// The live successor of `id`, following rotations of rotations.
    fn successor(&self, id: &str) -> Option<String> {
        let mut next = self.by_old.get(id)?.1.get()?.clone();
        for _ in 0..16 {
            match self.by_old.get(&next).and_then(|(_, c)| c.get()) {
                Some(further) => next = further.clone(),
                None => break,
            }
        }
        Some(next)
    }
}

/// A live session's exit and what it was routed by (kept for rotation).
#[derive(Clone, Debug)]
struct Routed {
    exit: Assignment,
    /// The pool's rotation policy (fixed for a pool's life), read once at assignment.
    policy: RotationPolicy,
    tenant: String,
    /// What the hash strategy hashes (the proxy key, else the tenant).
    key: String,
}

impl Engine {
    /// A builder with httpcloak's Manager defaults: 100 sessions, 30 minutes idle
    /// timeout, reaping every minute.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            config: SystemConfig::default(),
            robots: None,
            tickets: None,
            store: None,
            snapshot_key: None,
            save_interval: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(30),
            proxies: None,
            audit: None,
            audit_redis: None,
        }
    }

    /// Creates a session and returns its id.
    ///
    /// # Errors
    ///
    /// An unknown profile, [`Error::is_session_limit`] ("maximum sessions limit
    /// reached") unless eviction is on and something is idle, [`Error::is_closed`] after
    /// shutdown.
    pub async fn create_session(&self, config: SessionConfig) -> Result<String> {
        let profile = config.profile.map_err(Error::invalid_input)?;
        let exit = match &self.proxies {
            Some(router) => router.assign(
                config.target.as_deref(),
                &config.tenant,
                config.proxy_key.as_deref(),
                None,
            )?,
            None => None,
        };
        let transport = config.transport;
        let tenant = config.tenant;
        let proxy = exit.as_ref().map(|e| e.proxy.clone());
        let mut builder = Session::builder(profile).transport(move |b| {
            let b = transport(b);
            match proxy {
                Some(p) => b.proxy(p),
                None => b,
            }
        });
        if let Some(id) = config.identifier {
            builder = builder.identifier(id);
        }
        builder = builder.tenant(tenant.clone());
        let routed = exit.map(|exit| Routed {
            policy: self
                .proxies
                .as_ref()
                .map(|r| r.rotation(&exit.pool))
                .unwrap_or_default(),
            exit,
            key: config.proxy_key.unwrap_or_else(|| tenant.clone()),
            tenant,
        });
        self.go_live_routed(builder.build(), routed).await
    }

    /// Makes a freshly built session live on its exit (when it has one): the exit is
    /// recorded before the session can take requests, given back if it cannot go live,
    /// and reported ([`EngineEvent::ProxyAssigned`]) once it is live.
    async fn go_live_routed(
        &self,
        built: Result<Session>,
        routed: Option<Routed>,
    ) -> Result<String> {
        let release = |routed: &Option<Routed>| {
            if let (Some(router), Some(r)) = (&self.proxies, routed) {
                router.release(&r.exit);
            }
        };
        let session = match built {
            Ok(s) => s,
            Err(e) => {
                release(&routed);
                return Err(e);
            }
        };
        let id = session.id().to_string();
        if let (Some(r), Ok(mut exits)) = (&routed, self.exits.lock()) {
            exits.insert(id.clone(), r.clone());
        }
        if let Err(e) = self.register(session, Origin::Created).await {
            if let Ok(mut exits) = self.exits.lock() {
                exits.remove(&id);
            }
            release(&routed);
            return Err(e);
        }
        if let Some(r) = routed {
            self.system.emit(EngineEvent::ProxyAssigned {
                id: id.clone(),
                tenant: r.tenant,
                pool: r.exit.pool,
                proxy: r.exit.proxy.to_string(),
            });
        }
        Ok(id)
    }

    /// The exit (pool and proxy) of the live session `id`, when it was routed to a pool.
    pub fn session_exit(&self, id: &str) -> Option<Assignment> {
        self.exits
            .lock()
            .ok()
            .and_then(|e| e.get(id).map(|r| r.exit.clone()))
    }

    /// Replaces the live session `id` with a fresh one (new cookies, new TLS tickets;
    /// the same profile and transport options) on another healthy proxy of the same
    /// pool, and closes the old one gracefully (no new requests; running ones finish).
    /// Returns the new id; the event stream reports both ids, both exits and `reason`.
    ///
    /// # Errors
    ///
    /// [`Error::is_session_not_found`], [`Error::is_no_healthy_proxy`] (nothing was
    /// closed), [`Error::is_conflict`] for a session not routed to a pool.
    ///
    /// Rotating a session that is already being rotated waits for that rotation and
    /// returns its new id (one successor per session, whoever asked).
    pub async fn rotate_session(&self, id: &str, reason: &str) -> Result<String> {
        let rotation = self
            .rotations
            .lock()
            .map_err(|_| Error::invalid_input("the rotation table was poisoned"))?
            .of(id);
        // A failed rotation leaves the cell empty: the next caller tries again.
        rotation
            .get_or_try_init(|| self.rotate_once(id, reason))
            .await
            .cloned()
    }

    /// The session that replaced `id` by rotation (following chains), if any.
    pub fn successor(&self, id: &str) -> Option<String> {
        self.rotations.lock().ok()?.successor(id)
    }

    async fn rotate_once(&self, id: &str, reason: &str) -> Result<String> {
        let router = self.proxies.as_ref().ok_or_else(|| {
            Error::invalid_input(
                "this engine has no proxy pools: set them with EngineBuilder::proxies",
            )
        })?;
        let old = self.session(id).await?;
        let routed = self
            .exits
            .lock()
            .ok()
            .and_then(|e| e.get(id).cloned())
            .ok_or_else(|| {
                Error::conflict(format!(
                    "session {id} was not routed to a proxy pool; nothing to rotate"
                ))
            })?;
        let exit = router.assign_in(&routed.exit.pool, &routed.key, Some(routed.exit.slot))?;
        let settings = old.session().client().settings().proxy(exit.proxy.clone());
        let profile = old.session().profile().clone();
        drop(old);
        // The old one first, as the caller asked: drained, then closed (and saved).
        if let Err(e) = self.close_session(id).await {
            router.release(&exit);
            return Err(e);
        }
        // The successor belongs to the same tenant (its store key, ticket partition,
        // metrics and API visibility follow from that).
        let fresh = Session::builder(profile)
            .transport(move |_| settings)
            .tenant(routed.tenant.clone())
            .build();
        let next = Routed {
            exit: exit.clone(),
            policy: routed.policy,
            tenant: routed.tenant.clone(),
            key: routed.key.clone(),
        };
        let new_id = self.go_live_routed(fresh, Some(next)).await?;
        tracing::info!(old = %id, new = %new_id, from = %routed.exit.proxy, to = %exit.proxy, reason, "session rotated");
        self.system.emit(EngineEvent::SessionRotated {
            old_id: id.to_owned(),
            new_id: new_id.clone(),
            old_proxy: routed.exit.proxy.to_string(),
            new_proxy: exit.proxy.to_string(),
            reason: reason.to_owned(),
        });
        Ok(new_id)
    }

    /// Rotates every live session on `exit` (its proxy was benched), in the background.
    fn rotate_all_on(&self, exit: &Assignment, why: &str) {
        let ids: Vec<String> = self
            .exits
            .lock()
            .map(|e| {
                e.iter()
                    .filter(|(_, r)| r.exit.pool == exit.pool && r.exit.slot == exit.slot)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(proxy = %exit.proxy, "proxy benched outside a tokio runtime; its sessions were not rotated");
            return;
        };
        let reason = format!("proxy {} benched: {why}", exit.proxy);
        for id in ids {
            let (engine, reason) = (self.clone(), reason.clone());
            runtime.spawn(async move {
                if let Err(e) = engine.rotate_session(&id, &reason).await {
                    tracing::warn!(session = %id, error = %e, "could not rotate a session off a benched proxy");
                }
            });
        }
    }

    /// The proxy router, when the engine has pools.
    pub fn proxy_router(&self) -> Option<&ProxyRouter> {
        self.proxies.as_ref()
    }

    /// What the pools make of a request's outcome: it counts against the session's
    /// proxy, and the pool's [`RotationPolicy`](crate::proxies::RotationPolicy) may move
    /// the session. A request that failed at the proxy is sent again on the session's
    /// successor when it may be (idempotent method or `Idempotency-Key`), so a dying
    /// proxy loses no request; that answer is returned instead.
    async fn after_request(
        &self,
        found: &SessionRef<Session>,
        outcome: Result<Response>,
        replay: Option<EngineRequest>,
    ) -> Result<Response> {
        let Some(router) = &self.proxies else {
            return outcome;
        };
        let proxy_failure = outcome.as_ref().err().filter(|e| e.is_proxy());
        let routed = self
            .exits
            .lock()
            .ok()
            .and_then(|e| e.get(&found.id).map(|r| (r.exit.clone(), r.policy)));
        let (exit, policy) = match routed {
            Some(routed) => routed,
            // Rotated away while this request ran (another request's failure, or the
            // proxy's benching): a failure at the proxy, or a refusal because the
            // rotation closed the session first (say, between two retries), goes to the
            // successor.
            None if outcome
                .as_ref()
                .is_err_and(|e| e.is_proxy() || e.is_closed())
                && self.rotation_known(&found.id) =>
            {
                // Waits for a rotation under way; the old session is closed, so this
                // never starts one.
                return match self.rotate_session(&found.id, "proxy failed").await {
                    Ok(next) => self
                        .replay(&found.id, &next, replay)
                        .await
                        .unwrap_or(outcome),
                    Err(_) => outcome,
                };
            }
            None => return outcome,
        };
        self.note_exit(router, &exit, &outcome);
        if let Some(e) = proxy_failure {
            if !policy.on_proxy_failure {
                return outcome;
            }
            let reason = format!("proxy {} failed: {e}", exit.proxy);
            let next = match self.rotate_session(&found.id, &reason).await {
                Ok(next) => next,
                Err(why) => {
                    tracing::warn!(session = %found.id, error = %why, "could not move the session off its failed proxy");
                    return outcome;
                }
            };
            return self
                .replay(&found.id, &next, replay)
                .await
                .unwrap_or(outcome);
        }
        if policy.on_quarantine && self.system.is_quarantined(&found.id) {
            self.rotate_in_background(&found.id, "quarantined: blocked responses".into());
        } else if policy.has_limits() {
            if let Some(why) = policy.due(found.core.request_count(), found.core.age()) {
                self.rotate_in_background(&found.id, why);
            }
        }
        outcome
    }

    /// Sends `request` (kept only when it may be sent twice, see
    /// [`EngineRequest::replayable`]) on `next`, the successor of `old`; `None` when
    /// there was nothing to send.
    async fn replay(
        &self,
        old: &str,
        next: &str,
        request: Option<EngineRequest>,
    ) -> Option<Result<Response>> {
        let request = request?;
        tracing::info!(old = %old, new = %next, url = %request.url_text(), "sending a request that failed at the proxy again on the rotated session");
        let successor = match self.session(next).await {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let again = self
            .system
            .execute(&successor.0.found, request)
            .await
            .map_err(map_err)
            .map(|done| done.response.with_attempts(done.attempts));
        if let (Some(router), Some(exit)) = (&self.proxies, self.session_exit(next)) {
            self.note_exit(router, &exit, &again);
        }
        Some(again)
    }

    /// Whether `id` has a rotation under way or done.
    fn rotation_known(&self, id: &str) -> bool {
        self.rotations
            .lock()
            .is_ok_and(|r| r.by_old.contains_key(id))
    }

    /// Rotates `id` in a task of its own (the request that made it due is answered
    /// meanwhile).
    fn rotate_in_background(&self, id: &str, reason: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (engine, id) = (self.clone(), id.to_owned());
        runtime.spawn(async move {
            if let Err(e) = engine.rotate_session(&id, &reason).await {
                if !e.is_session_not_found() {
                    tracing::warn!(session = %id, error = %e, reason, "could not rotate the session");
                }
            }
        });
    }

    /// Counts a request's outcome against the session's proxy: a failure at the proxy
    /// (connect, CONNECT, SOCKS, authentication) is one step toward benching it.
    fn note_exit(&self, router: &ProxyRouter, exit: &Assignment, outcome: &Result<Response>) {
        match outcome {
            Ok(_) => router.record_success(exit),
            Err(e) if e.is_proxy() => {
                let why = e.to_string();
                if router.record_failure(exit, &why) == crate::proxies::FailureOutcome::Benched {
                    self.rotate_all_on(exit, &why);
                }
            }
            Err(_) => {}
        }
    }

    /// Registers a session built elsewhere (restored from a snapshot file, say). With a
    /// store, the engine takes its lease first.
    ///
    /// # Errors
    ///
    /// As [`Engine::create_session`]; with a store, [`Error::is_lease_held`] when
    /// another worker owns it.
    pub async fn adopt_session(&self, session: Session) -> Result<String> {
        self.register(session, Origin::Adopted).await
    }

    /// Makes `session` live under its id; with a store, under a lease (taken here
    /// unless `origin` brings one, with the version it was loaded as).
    async fn register(&self, session: Session, origin: Origin) -> Result<String> {
        let id = session.id().to_string();
        let key = session.store_key();
        if let Some(backend) = &self.tickets {
            session
                .client()
                .tickets()
                .set_backend(Some(backend.clone()));
        }
        if let Some(p) = &self.persister {
            let (lease, version) = match origin {
                Origin::CheckedOut(lease, version) => (Some(lease), version),
                Origin::Created | Origin::Adopted => {
                    match p.store().acquire(&key, p.lease_ttl()).await {
                        // A session made here has a fresh id: nothing stored to version against.
                        Ok(lease) if matches!(origin, Origin::Created) => (Some(lease), 0),
                        Ok(lease) => match p.store().load(&key).await {
                            Ok(stored) => (Some(lease), stored.map_or(0, |s| s.version)),
                            Err(e) => {
                                let _ = p.store().release(&lease).await;
                                return Err(e);
                            }
                        },
                        // Keep working in memory; the lease is taken when the store is back.
                        Err(e) if e.is_store_unavailable() => {
                            p.note_unavailable(&e);
                            (None, 0)
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            p.adopt(key.clone(), session.clone(), version, lease);
        }
        if let Err(e) = self.system.create(id.clone(), session).await {
            if let Some(p) = &self.persister {
                p.abandon(&key).await;
            }
            return Err(map_err(e));
        }
        Ok(id)
    }

    fn persister(&self) -> Result<&Arc<Persister>> {
        self.persister.as_ref().ok_or_else(|| {
            Error::invalid_input("this engine has no store: set one with EngineBuilder::store")
        })
    }

    /// Takes the session `id` out of the store (another worker created it, or this one
    /// before a restart) and makes it live here, under this engine's lease;
    /// `transport` sets what snapshots do not carry (proxy, CA file, resolve overrides).
    ///
    /// # Errors
    ///
    /// [`Error::is_lease_held`] while another worker owns it,
    /// [`Error::is_session_not_found`] when the store has no such session,
    /// [`Error::is_snapshot`] for a corrupt or foreign record (named by its key),
    /// [`Error::is_store_unavailable`], [`Error::is_session_limit`].
    pub async fn checkout_session(
        &self,
        id: &str,
        transport: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Result<String> {
        self.checkout_session_of(DEFAULT_TENANT, id, transport)
            .await
    }

    /// [`Engine::checkout_session`] for a session of `tenant`: only that tenant's keys
    /// are looked at, so another tenant's session is "not found" here.
    ///
    /// # Errors
    ///
    /// As [`Engine::checkout_session`]; [`Error::is_invalid_input`] for a malformed
    /// tenant name.
    pub async fn checkout_session_of(
        &self,
        tenant: &str,
        id: &str,
        transport: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Result<String> {
        crate::tenant::check_tenant(tenant)?;
        let p = self.persister()?;
        let store = p.store();
        let key = crate::tenant::store_key(tenant, id);
        let lease = store.acquire(&key, p.lease_ttl()).await?;
        let restored = async {
            let stored = store.load(&key).await?.ok_or_else(|| {
                Error::session_not_found(&format!(
                    "{id} (tenant {tenant}; not in {})",
                    store.describe()
                ))
            })?;
            let place = format!("{} session {key}", store.describe());
            let snapshot =
                decode(&stored.bytes, p.key()).map_err(|why| Error::snapshot(&place, why))?;
            if snapshot.id.to_string() != id || snapshot.tenant != tenant {
                return Err(Error::snapshot(
                    &place,
                    format!(
                        "the record holds session {} of tenant {}, not {id} of {tenant}",
                        snapshot.id, snapshot.tenant
                    ),
                ));
            }
            let session = Session::from_snapshot(snapshot, transport)
                .map_err(|e| Error::snapshot(&place, format!("cannot restore: {e}")))?;
            Ok((session, stored.version))
        }
        .await;
        match restored {
            Ok((session, version)) => {
                self.register(session, Origin::CheckedOut(lease, version))
                    .await
            }
            Err(e) => {
                let _ = store.release(&lease).await;
                Err(e)
            }
        }
    }

    /// Checks out every session in the store that no worker holds (of every tenant), up
    /// to the session limit; returns their ids. A corrupt or foreign record is reported
    /// (with its key) and skipped; so is a session another worker holds.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`] when the store cannot be listed (the engine
    /// works without it meanwhile).
    pub async fn restore_sessions(
        &self,
        transport: impl Fn(ClientBuilder) -> ClientBuilder,
    ) -> Result<Vec<String>> {
        let p = self.persister()?;
        let mut restored = Vec::new();
        for key in p.store().list().await? {
            let (tenant, id) = crate::tenant::split_store_key(&key);
            match self.checkout_session_of(tenant, id, &transport).await {
                Ok(id) => restored.push(id),
                Err(e) if e.is_lease_held() => {
                    tracing::debug!(session = %id, "held by another worker; not restored");
                }
                Err(e) if e.is_session_limit() => break,
                Err(e) if e.is_store_unavailable() => return Err(e),
                Err(e) => tracing::warn!(session = %id, error = %e, "skipping a stored session"),
            }
        }
        Ok(restored)
    }

    /// Saves the live session `id` to the store now; returns the version written.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`] (the state is kept and written when the store is
    /// back; this call did not save it), [`Error::is_store_conflict`] (another worker
    /// saved a newer version: this session is closed), [`Error::is_session_not_found`].
    pub async fn save_session(&self, id: &str) -> Result<u64> {
        let p = self.persister()?;
        let key = self.session(id).await?.session().store_key();
        p.save_now(&key).await
    }

    /// Ids of the default tenant's sessions in the store: live here, leased by another
    /// worker, or free to check out.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] without a store, [`Error::is_store_unavailable`].
    pub async fn stored_sessions(&self) -> Result<Vec<String>> {
        self.stored_sessions_of(DEFAULT_TENANT).await
    }

    /// Ids of `tenant`'s sessions in the store (no other tenant's).
    ///
    /// # Errors
    ///
    /// As [`Engine::stored_sessions`]; [`Error::is_invalid_input`] for a malformed
    /// tenant name.
    pub async fn stored_sessions_of(&self, tenant: &str) -> Result<Vec<String>> {
        crate::tenant::check_tenant(tenant)?;
        let keys = self.persister()?.store().list().await?;
        Ok(crate::tenant::ids_of(tenant, keys))
    }

    /// A handle to the live session `id`, marked used (the caller is about to send
    /// on it, so the reaper leaves it alone).
    ///
    /// # Errors
    ///
    /// [`Error::is_session_not_found`] for a missing, closed or reaped id.
    pub async fn session(&self, id: &str) -> Result<EngineSession> {
        self.look_up(id, true).await
    }

    /// A handle to the live session `id` that does not mark it used: for reading its
    /// stats or cookies, so a caller polling a session never keeps it from being
    /// reaped ([`EngineSession::touch`] marks it used on purpose).
    ///
    /// # Errors
    ///
    /// [`Error::is_session_not_found`] for a missing, closed or reaped id.
    pub async fn peek_session(&self, id: &str) -> Result<EngineSession> {
        self.look_up(id, false).await
    }

    async fn look_up(&self, id: &str, touch: bool) -> Result<EngineSession> {
        let found = if touch {
            self.system.session(id).await
        } else {
            self.system.peek(id).await
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                return Err(match self.successor(id) {
                    Some(next) => Error::session_not_found(&format!(
                        "{id} (rotated: its successor is {next})"
                    )),
                    None => map_err(e),
                })
            }
        };
        Ok(EngineSession(Arc::new(Bound {
            engine: self.clone(),
            found,
        })))
    }

    /// Stats of every live session.
    ///
    /// # Errors
    ///
    /// [`Error::is_closed`] after shutdown.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        let all = self.system.list().await.map_err(map_err)?;
        Ok(all
            .into_iter()
            .map(|(_, mut stats, quarantined)| {
                stats.quarantined = quarantined;
                stats
            })
            .collect())
    }

    /// Number of live sessions.
    pub async fn session_count(&self) -> usize {
        self.system.count().await
    }

    /// Closes `id` gracefully (running requests get the close deadline). With a store,
    /// it returns once the session's final save is written and its lease released (so
    /// it can be checked out again at once), waiting at most the close deadline plus
    /// 10 s, and not at all while the store is unavailable (the write stays queued).
    ///
    /// # Errors
    ///
    /// [`Error::is_session_not_found`] when it was not live.
    pub async fn close_session(&self, id: &str) -> Result<()> {
        let key = match &self.persister {
            Some(_) => Some(self.session(id).await?.session().store_key()),
            None => None,
        };
        if !self.system.close(id, CloseReason::Explicit).await {
            return Err(Error::session_not_found(id));
        }
        if let (Some(p), Some(key)) = (&self.persister, key) {
            if !p
                .settled(&key, self.close_deadline + Duration::from_secs(10))
                .await
            {
                tracing::debug!(session = %id, "closed; its final save is still queued");
            }
        }
        Ok(())
    }

    /// The dead-letter queue: requests that failed for good (drained when `drain`).
    pub async fn dead_letters(&self, drain: bool) -> Vec<DeadLetter> {
        self.system.dead_letters(drain).await
    }

    /// A new subscription to the engine's events.
    pub fn events(&self) -> broadcast::Receiver<EngineEvent> {
        self.system.events()
    }

    /// Runs the idle reaper now.
    pub async fn reap_now(&self) {
        self.system.reap_now().await;
    }

    /// Closes every session gracefully and stops the engine's threads. Calling it again
    /// does nothing.
    ///
    /// With a store, every session is saved and its lease released before this returns;
    /// a store that stays unavailable for 10 s is given up on, with an error in the log
    /// naming the sessions that were not saved.
    pub async fn shutdown(&self) {
        self.system.shutdown().await;
        if let Some(p) = &self.persister {
            p.finish(Duration::from_secs(10)).await;
        }
        if let Some(audit) = &self.audit {
            audit.finish().await;
        }
    }
}

/// A live session of an engine: cheap to clone; requests go through the engine's retry
/// and breaker actor to the session's actor.
#[derive(Clone)]
pub struct EngineSession(Arc<Bound>);

/// What an [`EngineSession`] handle shares: one reference count per clone, so building
/// a request (which keeps a handle) costs no more than an `Arc` clone.
struct Bound {
    engine: Engine,
    found: SessionRef<Session>,
}

impl std::fmt::Debug for EngineSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSession")
            .field("id", &self.0.found.id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl EngineSession {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.0.found.id
    }

    /// The session itself (stats, cookies, snapshots).
    pub fn session(&self) -> &Session {
        &self.0.found.core
    }

    /// The session's statistics now, `quarantined` included (the plain session's
    /// own stats cannot know it: quarantine is the engine's).
    pub fn stats(&self) -> SessionStats {
        let mut stats = self.0.found.core.stats();
        stats.quarantined = self.is_quarantined();
        stats
    }

    /// Whether the engine quarantined the session (a blocked answer: 401, 403, a
    /// block page). The answer that quarantined it is still returned to its caller,
    /// who can check here whether to try it again with another session.
    pub fn is_quarantined(&self) -> bool {
        self.0.engine.system.is_quarantined(&self.0.found.id)
    }

    /// Marks the session used now (the reaper measures idleness from here).
    pub fn touch(&self) {
        self.0.found.core.touch();
    }

    /// Starts a request (a navigation unless `kind` says otherwise).
    pub fn request(&self, method: Method, url: &str) -> EngineRequestBuilder {
        // An unparsable URL is kept as text; the session reports it when sent.
        let url = url::Url::parse(url).map_err(|why| (url.to_string(), why));
        EngineRequestBuilder {
            session: self.clone(),
            request: EngineRequest {
                method,
                url,
                headers: Vec::new(),
                body: None,
                kind: RequestKind::Navigation,
                typed: false,
                no_cache: false,
                no_redirects: false,
            },
            error: None,
        }
    }

    /// Starts a GET.
    pub fn get(&self, url: &str) -> EngineRequestBuilder {
        self.request(Method::GET, url)
    }

    /// The robots.txt fetch: one typed GET outside the retry loop (no breaker,
    /// quarantine or dead letter sees its status), redirects returned, not followed
    /// (`robots` follows them by RFC 9309's rule).
    async fn fetch_robots(&self, url: String) -> Result<crate::robots::Fetched> {
        let mut request = self.get(&url).typed().no_cache().no_redirects().request;
        request.kind = RequestKind::Navigation;
        let response = self
            .0
            .engine
            .system
            .execute_once(&self.0.found, request)
            .await
            .map_err(map_err)?;
        Ok(crate::robots::Fetched {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: response.body().clone(),
        })
    }

    /// Starts a POST.
    pub fn post(&self, url: &str) -> EngineRequestBuilder {
        self.request(Method::POST, url)
    }
}

/// A request being put together on an engine session.
pub struct EngineRequestBuilder {
    session: EngineSession,
    request: EngineRequest,
    error: Option<Error>,
}

impl EngineRequestBuilder {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            (Ok(n), Ok(v)) => self.request.headers.push((n, v)),
            _ => {
                self.error.get_or_insert(Error::invalid_input(format!(
                    "invalid header `{name}: {value}`"
                )));
            }
        }
        self
    }

    /// Adds a header already parsed (see [`EngineRequestBuilder::header`]).
    pub fn header_value(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.request.headers.push((name, value));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.request.body = Some(body.into());
        self
    }

    /// The request kind.
    pub fn kind(mut self, kind: RequestKind) -> Self {
        self.request.kind = kind;
        self
    }

    /// A typed navigation (no initiator).
    pub fn typed(mut self) -> Self {
        self.request.typed = true;
        self
    }

    /// Skip the conditional cache.
    pub fn no_cache(mut self) -> Self {
        self.request.no_cache = true;
        self
    }

    /// Return redirects instead of following them.
    pub fn no_redirects(mut self) -> Self {
        self.request.no_redirects = true;
        self
    }

    /// Sends it through the engine (retries, breakers, quarantine).
    ///
    /// # Errors
    ///
    /// [`Error::is_breaker_open`], [`Error::is_quarantined`], [`Error::is_session_not_found`]
    /// (closed meanwhile), [`Error::is_closed`] (shut down), and the session's errors
    /// after retries.
    pub async fn send(self) -> Result<Response> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let engine = &self.session.0.engine;
        if let Some(robots) = &engine.robots {
            let url = match &self.request.url {
                Ok(url) => url.clone(),
                Err((text, why)) => return Err(Error::invalid_url(text, why)),
            };
            let session = &self.session;
            // A fresh file's Crawl-delay is applied before any request waiting for the
            // same rules is let through (`rules_for` calls this under its fetch gate).
            let apply_delay = |rules: &crate::robots::Rules| {
                if let (Some(delay), Some(host)) = (rules.crawl_delay(), url.host_str()) {
                    engine
                        .system
                        .set_host_rate(host, Rate::per_second(1.0 / delay.as_secs_f64()));
                }
            };
            let (rules, _, holds_for) = robots
                .rules_for(
                    &url,
                    |robots_url| session.fetch_robots(robots_url),
                    apply_delay,
                )
                .await;
            if let Some(why) = rules.unavailable() {
                return Err(Error::robots_unavailable(
                    &url.origin().ascii_serialization(),
                    why,
                    holds_for,
                ));
            }
            if !rules.allows(url.as_str()) {
                engine.system.emit(EngineEvent::RobotsBlocked {
                    id: self.session.0.found.id.clone(),
                    url: url.to_string(),
                });
                return Err(crate::robots::disallowed(&url));
            }
        }
        let engine = &self.session.0.engine;
        // With pools, a request that fails at the proxy may be sent again elsewhere.
        let replay =
            (engine.proxies.is_some() && self.request.replayable()).then(|| self.request.clone());
        let outcome = engine
            .system
            .execute(&self.session.0.found, self.request)
            .await
            .map_err(map_err)
            .map(|done| done.response.with_attempts(done.attempts));
        engine
            .after_request(&self.session.0.found, outcome, replay)
            .await
    }
}
