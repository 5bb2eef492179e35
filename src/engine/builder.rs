//! Building an engine: [`EngineBuilder`] holds every setting (limits, retries, rates,
//! robots.txt, hooks, store, tickets, proxies, audit) and `start()` checks them and
//! starts the actor system; [`SessionConfig`] is what one new session wears and how
//! it connects.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use mummer_actors::breaker::BreakerConfig;
use mummer_actors::policy::Detected;
use mummer_actors::policy::RetryPolicy;
use mummer_actors::rate::{Rate, SharedRateLimit};
use mummer_actors::supervisor::LimitPolicy;
use mummer_actors::throttle::ThrottleConfig;
use mummer_actors::RequestSite;
use mummer_actors::{ActorSystem, BoxFuture, CloseReason, SystemConfig};

use super::audit::{AuditSink, AuditTask};
use super::exits::Exits;
use super::Engine;
use crate::request::Request;

use super::persist::{PersistSettings, Persister};
use crate::audit::{AuditConfig, AuditLog};
use crate::client::{ClientBuilder, Response};
use crate::error::{Error, Result};
use crate::profile::Profile;
use crate::proxies::ProxyRouter;
use crate::robots::RobotsCache;
use crate::session::Session;
use crate::session::SnapshotKey;
use crate::store::SessionStore;
use crate::tls::TicketBackend;

use crate::tenant::DEFAULT_TENANT;

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
    pub(super) config: SystemConfig<Session>,
    pub(super) robots: Option<String>,
    pub(super) tickets: Option<Arc<dyn TicketBackend>>,
    pub(super) store: Option<Arc<dyn SessionStore>>,
    pub(super) snapshot_key: Option<SnapshotKey>,
    pub(super) save_interval: Duration,
    pub(super) lease_ttl: Duration,
    pub(super) proxies: Option<ProxyRouter>,
    pub(super) audit: Option<AuditConfig>,
    #[cfg(feature = "redis")]
    pub(super) audit_redis: Option<(crate::store::RedisStore, crate::store::RedisAuditConfig)>,
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
            move |session: &Session, _request: &Request, status: u16| {
                let fut = hook(session.clone(), status);
                Box::pin(async move {
                    let headers = fut
                        .await
                        .ok_or_else(|| "the re-authentication hook gave up".to_string())?;
                    let rewrite: mummer_actors::dispatch::Rewrite<Session> =
                        Arc::new(move |request: &Request| {
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
        #[cfg(feature = "redis")]
        {
            self.audit_redis = None;
        }
        self.audit = Some(config);
        self
    }

    /// Writes the audit trail to the Redis stream `NS:audit` of `store` instead of a
    /// file (the same entries; [`crate::store::redis_audit`]), so every worker's
    /// sessions land in one trail. Needs a tokio runtime at [`EngineBuilder::start`].
    #[cfg(feature = "redis")]
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
        let exits = Exits::new(self.proxies.take());
        {
            let persister = persister.as_ref().map(|(p, _)| p.clone());
            let exits = exits.clone();
            self.config.on_close = Some(Arc::new(move |session: &Session, reason| {
                let id = session.id().to_string();
                if let Some(p) = &persister {
                    p.closing(&session.store_key(), reason);
                }
                exits.release(&id);
            }));
        }
        let system = Arc::new(
            ActorSystem::start(self.config)
                .map_err(|e| Error::io("starting the engine threads", e))?,
        );
        #[cfg(feature = "redis")]
        let redis_sink = self.audit_redis.take().map(|(store, config)| {
            AuditSink::Redis(Box::new(crate::store::RedisAuditLog::new(&store, config)))
        });
        #[cfg(not(feature = "redis"))]
        let redis_sink = None;
        let sink = match self.audit.take() {
            Some(config) => Some(AuditSink::File(AuditLog::open(config)?)),
            None => redis_sink,
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
            exits,
            audit: audit.map(Arc::new),
        })
    }
}

/// What a new session wears and how it connects.
pub struct SessionConfig {
    pub(super) profile: std::result::Result<Arc<Profile>, String>,
    pub(super) identifier: Option<String>,
    pub(super) transport: Box<dyn FnOnce(ClientBuilder) -> ClientBuilder + Send>,
    pub(super) tenant: String,
    pub(super) target: Option<String>,
    pub(super) proxy_key: Option<String>,
}

impl SessionConfig {
    /// A session wearing a built-in profile, alias or profile file.
    pub fn profile(name: &str) -> SessionConfig {
        SessionConfig {
            profile: Profile::resolve_shared(name).map_err(|e| e.to_string()),
            identifier: None,
            transport: Box::new(|b| b),
            tenant: DEFAULT_TENANT.to_owned(),
            target: None,
            proxy_key: None,
        }
    }

    /// A session wearing `profile` (an `Arc<Profile>` is shared, not copied).
    pub fn with_profile(profile: impl Into<Arc<Profile>>) -> SessionConfig {
        SessionConfig {
            profile: Ok(profile.into()),
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
