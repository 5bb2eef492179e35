//! The retry and circuit-breaker actor that sits in front of the session actors.
//!
//! Every request goes through a [`Dispatcher`]: it checks quarantine and the breakers (per
//! session and per target host), waits for the rate limits, sends the attempt to the
//! session actor, classifies the outcome ([`crate::policy`]), and then returns, waits and
//! retries, dead-letters, or quarantines the session.
//!
//! There is one dispatcher per arbiter, and a session's requests go through the
//! dispatcher on its own arbiter: the attempt never leaves that thread, which saves two
//! thread crossings per request (measured in `docs/benchmarks.md`). The dispatchers share
//! one state (breakers, quarantine set, dead letters, limiters) behind a mutex that is
//! held for a few map operations and never across an await.
//!
//! Why one file (about 1,250 lines of code, 140 of tests): the retry loop, the state
//! every dispatcher shares and the actor that runs it change together, and the loop
//! reads top to bottom as the life of one request. The next cut is the shared state
//! (breakers, quarantine, dead letters, limiters) into its own file.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use actix::{Actor, Addr, Context, Handler, Message, Recipient, ResponseFuture};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::breaker::{Admission, Breaker, BreakerConfig, BreakerState};
use crate::core::{SessionCore, DEFAULT_TENANT};
use crate::error::ActorError;
use crate::events::EngineEvent;
use crate::policy::{self, Attempt, Decision, Detected, RetryPolicy, Signal};
use crate::rate::{Limiters, Rate, RateLimits, SharedRateLimit};
use crate::session_actor::{Aborted, Execute, SessionActor};
use crate::throttle::{HostThrottle, ThrottleConfig};

/// Mark a session quarantined: the dispatcher's verdict, sent to whoever owns the
/// sessions (the supervisor handles it). The dispatcher holds only a `Recipient` of
/// it, so it does not depend on the supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MarkQuarantined(pub String);

/// Most dead letters kept; older ones are dropped first.
pub const DEAD_LETTER_CAPACITY: usize = 10_000;

/// A request that failed for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Session id.
    pub session: String,
    /// Target host.
    pub target: String,
    /// Attempts made.
    pub attempts: usize,
    /// The last status, when there was a response.
    pub status: Option<u16>,
    /// What happened.
    pub reason: String,
    /// When, Unix milliseconds.
    pub at: u64,
}

/// The maps the request path reads on every attempt (four or five lookups per attempt):
/// `foldhash` instead of SipHash, about a quarter of the cost on these short keys. Host
/// names come from the URLs a crawler follows, which a hostile site chooses; foldhash's
/// `RandomState` seeds each map per process, so colliding names cannot be computed
/// ahead of time (it is not a cryptographic hash, and this does not need one).
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// What a breaker guards: one session, or one target host (of every session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Session,
    Host,
}

impl Scope {
    /// The breaker's name in events, errors and listings: `session:ID` or `host:NAME`
    /// (built only when reported, never on the request path).
    fn key(self, name: &str) -> String {
        match self {
            Scope::Session => format!("session:{name}"),
            Scope::Host => format!("host:{name}"),
        }
    }

    fn index(self) -> usize {
        match self {
            Scope::Session => 0,
            Scope::Host => 1,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Scope::Session => "session",
            Scope::Host => "host",
        }
    }
}

/// One breaker and the last failure it counted (named when it keeps a request back, so
/// a caller sees "connection refused", not only "breaker open").
struct Tracked {
    breaker: Breaker,
    cause: String,
}

/// One session's re-authentication: a lock held while the hook runs, the number of
/// re-authentications done, and the last one's outcome: its rewrite (type-erased: the
/// state is not generic over the session type; [`dispatch`] downcasts it to its
/// [`Rewrite`]) or why it failed.
#[derive(Default)]
struct ReauthGate {
    refreshes: AtomicU64,
    last: tokio::sync::Mutex<Option<ReauthOutcome>>,
}

/// How the last re-authentication of a session ended.
type ReauthOutcome = Result<Arc<dyn Any + Send + Sync>, String>;

struct State {
    breaker: BreakerConfig,
    throttle: ThrottleConfig,
    /// Breakers by session id.
    by_session: FastMap<String, Tracked>,
    /// Breakers by target host.
    by_host: FastMap<String, Tracked>,
    /// Breakers open or half-open, per scope ([`Scope::index`]): the `breakers_open`
    /// gauge.
    tripped: [usize; 2],
    /// Hosts slowed down by 429s or paused by `Retry-After`.
    throttles: FastMap<String, HostThrottle>,
    quarantined: FastSet<String>,
    /// Re-authentication gates of sessions that needed one.
    gates: FastMap<String, Arc<ReauthGate>>,
    dead: VecDeque<DeadLetter>,
    events: broadcast::Sender<EngineEvent>,
    limits: Limiters,
    shared_rate: Option<Arc<dyn SharedRateLimit>>,
    dead_letter_sink: Option<DeadLetterSink>,
}

/// Receives every dead letter as it is made (a durable queue, say). Called under the
/// dispatchers' shared lock: it must only hand the letter over (push it on a channel),
/// never block.
pub type DeadLetterSink = Arc<dyn Fn(&DeadLetter) + Send + Sync>;

impl State {
    fn breakers(&mut self, scope: Scope) -> &mut FastMap<String, Tracked> {
        match scope {
            Scope::Host => &mut self.by_host,
            Scope::Session => &mut self.by_session,
        }
    }

    /// Asks `name`'s breaker whether a request may go now. A name without a breaker
    /// has never failed (or recovered since): it is admitted without touching the map.
    fn admit(&mut self, scope: Scope, name: &str) -> Admission {
        match self.breakers(scope).get_mut(name) {
            Some(tracked) => tracked.breaker.admit(Instant::now().into_std()),
            None => Admission::Allowed,
        }
    }

    /// Why `name`'s breaker keeps requests back: the last failure it counted.
    fn cause(&mut self, scope: Scope, name: &str) -> String {
        self.breakers(scope)
            .get(name)
            .map(|t| t.cause.clone())
            .unwrap_or_default()
    }

    fn probe_sent(&mut self, scope: Scope, name: &str, number: u64) {
        if let Some(tracked) = self.breakers(scope).get_mut(name) {
            tracked
                .breaker
                .probe_sent(number, Instant::now().into_std());
        }
    }

    fn release_probe(&mut self, scope: Scope, name: &str, number: u64) {
        if let Some(tracked) = self.breakers(scope).get_mut(name) {
            tracked.breaker.release_probe(number);
        }
    }

    /// Counts a signal against `name`'s breaker (`cause` names a failure). Only names
    /// with failures keep a breaker: a success on a name without one changes nothing,
    /// and a breaker that successes bring back to rest is dropped. So the request path
    /// touches no map entry while everything succeeds, and a thousand healthy sessions
    /// hold no breakers at all.
    fn record(&mut self, scope: Scope, name: &str, signal: Signal, cause: &dyn Fn() -> String) {
        let cfg = self.breaker;
        let now = Instant::now().into_std();
        let map = self.breakers(scope);
        let (change, newly_tripped) = match signal {
            Signal::Neutral => return,
            Signal::Success => {
                let Some(tracked) = map.get_mut(name) else {
                    return;
                };
                let change = tracked.breaker.success(now);
                if tracked.breaker.is_at_rest() {
                    map.remove(name);
                }
                (change, false)
            }
            Signal::Failure => {
                // Allocate the key only when a breaker is first needed.
                if !map.contains_key(name) {
                    map.insert(
                        name.to_string(),
                        Tracked {
                            breaker: Breaker::new(cfg),
                            cause: String::new(),
                        },
                    );
                }
                let Some(tracked) = map.get_mut(name) else {
                    return;
                };
                tracked.cause = cause();
                let was_closed = tracked.breaker.state(now) == BreakerState::Closed;
                let change = tracked.breaker.failure(now);
                (change, was_closed && change == Some(BreakerState::Open))
            }
        };
        let Some(state) = change else { return };
        let count = &mut self.tripped[scope.index()];
        if newly_tripped {
            *count += 1;
        } else if state == BreakerState::Closed {
            *count = count.saturating_sub(1);
        }
        metrics::gauge!("breakers_open", "scope" => scope.label()).set(*count as f64);
        let _ = self.events.send(EngineEvent::Breaker {
            key: scope.key(name),
            state,
        });
    }

    /// The wait before the next request to `host` may go (429 slow-down, `Retry-After`
    /// pause) and the throttle's cut count the request leaves with; zero, without a
    /// lookup, while no host is throttled.
    fn throttle_wait(&mut self, host: &str) -> (Duration, u64) {
        if self.throttles.is_empty() {
            return (Duration::ZERO, 0);
        }
        match self.throttles.get_mut(host) {
            Some(t) => (t.reserve(Instant::now().into_std()), t.cuts()),
            None => (Duration::ZERO, 0),
        }
    }

    /// Feeds an answer from `host` to its throttle: a 429 slows it down, a
    /// `Retry-After` (`pause`) holds every request to it back, a success recovers.
    fn throttle_after(
        &mut self,
        host: &str,
        cuts_at_send: u64,
        status: Option<u16>,
        pause: Option<Duration>,
        ok: bool,
    ) {
        if !(status == Some(429) || pause.is_some() || (ok && !self.throttles.is_empty())) {
            // The common case, a success with no host throttled: nothing to do.
            return;
        }
        let now = Instant::now().into_std();
        let ceiling = self.limits.host_rate(host).map(|r| r.per_second);
        let cfg = self.throttle;
        if status == Some(429) || pause.is_some() {
            let throttle = match self.throttles.get_mut(host) {
                Some(t) => t,
                None => self
                    .throttles
                    .entry(host.to_string())
                    .or_insert_with(|| HostThrottle::new(now)),
            };
            if status == Some(429) {
                throttle.throttled(&cfg, now, cuts_at_send, pause, ceiling);
                metrics::counter!("throttled_total").increment(1);
            } else {
                throttle.pause(now, pause);
            }
        } else {
            if let Some(t) = self.throttles.get_mut(host) {
                t.succeeded(&cfg, ceiling);
                if t.is_at_rest(now) {
                    self.throttles.remove(host);
                }
            }
        }
    }

    fn dead_letter(&mut self, letter: DeadLetter) {
        let _ = self.events.send(EngineEvent::DeadLettered {
            id: letter.session.clone(),
            target: letter.target.clone(),
            reason: letter.reason.clone(),
        });
        if let Some(sink) = &self.dead_letter_sink {
            sink(&letter);
        }
        if self.dead.len() == DEAD_LETTER_CAPACITY {
            self.dead.pop_front();
        }
        self.dead.push_back(letter);
    }
}

/// Whose traffic a host's breaker, rate limit and throttle count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostScope {
    /// Each tenant's own: tenant `acme`'s failures at `shop.test` open only `acme`'s
    /// breaker for it, and each tenant gets the per-host rate. Sessions of the default
    /// tenant keep the bare host as key.
    #[default]
    PerTenant,
    /// One per host, for every tenant (a global budget the operator chose).
    Global,
}

/// The state every dispatcher of a system shares.
#[derive(Clone)]
pub struct SharedState {
    state: Arc<Mutex<State>>,
    /// Fixed for the system's life, so read without the lock.
    policy: Arc<RetryPolicy>,
    host_scope: HostScope,
}

impl SharedState {
    /// Fresh state with `policy`, `breaker` settings and rate `limits`, reporting on
    /// `events`.
    pub fn new(
        policy: RetryPolicy,
        breaker: BreakerConfig,
        limits: RateLimits,
        events: broadcast::Sender<EngineEvent>,
    ) -> SharedState {
        let state = Arc::new(Mutex::new(State {
            breaker,
            throttle: ThrottleConfig::default(),
            by_session: FastMap::default(),
            by_host: FastMap::default(),
            tripped: [0; 2],
            throttles: FastMap::default(),
            quarantined: FastSet::default(),
            gates: FastMap::default(),
            dead: VecDeque::new(),
            events,
            limits: Limiters::new(limits),
            shared_rate: None,
            dead_letter_sink: None,
        }));
        SharedState {
            state,
            policy: Arc::new(policy),
            host_scope: HostScope::default(),
        }
    }

    /// Keeps host breakers, limits and throttles per tenant or for all ([`HostScope`]).
    pub fn with_host_scope(mut self, scope: HostScope) -> Self {
        self.host_scope = scope;
        self
    }

    /// The key a request of `tenant` to `host` is counted under by the host breaker,
    /// limiter and throttle: the host itself for the default tenant or a global scope,
    /// `TENANT/HOST` otherwise (a tenant name has no `/`, a host neither).
    pub fn host_key<'a>(&self, tenant: &str, host: &'a str) -> std::borrow::Cow<'a, str> {
        if self.host_scope == HostScope::Global || tenant == crate::core::DEFAULT_TENANT {
            std::borrow::Cow::Borrowed(host)
        } else {
            std::borrow::Cow::Owned(format!("{tenant}/{host}"))
        }
    }

    /// Forgets a closed session: its breaker, quarantine mark, limiter and
    /// re-authentication gate.
    pub fn forget(&self, id: &str) {
        let mut st = self.lock();
        st.quarantined.remove(id);
        st.gates.remove(id);
        if let Some(tracked) = st.by_session.remove(id) {
            if !tracked.breaker.is_at_rest()
                && tracked.breaker.state(Instant::now().into_std()) != BreakerState::Closed
            {
                let count = &mut st.tripped[Scope::Session.index()];
                *count = count.saturating_sub(1);
                metrics::gauge!("breakers_open", "scope" => Scope::Session.label())
                    .set(*count as f64);
            }
        }
        st.limits.forget_session(id);
    }

    /// Whether `id` is quarantined (its blocked responses stopped it taking requests).
    pub fn is_quarantined(&self, id: &str) -> bool {
        self.lock().quarantined.contains(id)
    }

    /// Hands every new dead letter to `sink` as well.
    pub fn with_dead_letter_sink(self, sink: Option<DeadLetterSink>) -> Self {
        self.lock().dead_letter_sink = sink;
        self
    }

    /// Adds a rate limit shared with other processes (per target host).
    pub fn with_shared_rate(self, limit: Option<Arc<dyn SharedRateLimit>>) -> Self {
        self.lock().shared_rate = limit;
        self
    }

    /// How hosts that answer 429 are slowed down.
    pub fn with_throttle(self, throttle: ThrottleConfig) -> Self {
        self.lock().throttle = throttle;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section is a few map operations; a panic in one leaves maps
        // that are still maps.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A half-open probe this request holds: its outcome is reported with the others, and
/// when the request ends without one (its future dropped, aborted, refused before it
/// was sent) the guard gives the slot back, so the breaker cannot wedge.
struct ProbeGuard {
    state: SharedState,
    scope: Scope,
    name: String,
    number: u64,
    armed: bool,
}

impl ProbeGuard {
    /// The probe's outcome is being recorded (under the lock): a signal this breaker
    /// counts settles it; a neutral one (a 500 or 404 for a session's breaker, say)
    /// tells it nothing and frees the slot for the next request.
    fn settle(&mut self, st: &mut State, scope: Scope, signal: Signal) {
        if self.armed && self.scope == scope {
            if signal == Signal::Neutral {
                st.release_probe(self.scope, &self.name, self.number);
            }
            self.armed = false;
        }
    }

    /// Releases the slot under a lock the caller already holds.
    fn release_in(&mut self, st: &mut State) {
        if self.armed {
            st.release_probe(self.scope, &self.name, self.number);
            self.armed = false;
        }
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        // Never dropped while the caller holds the lock: every path that holds it
        // settles or releases the guard first.
        if self.armed {
            self.state
                .lock()
                .release_probe(self.scope, &self.name, self.number);
        }
    }
}

/// How often a request waiting on a half-open breaker asks again (the probe's outcome
/// usually comes within one round trip).
const PROBE_POLL: Duration = Duration::from_millis(100);

/// The retry and circuit-breaker actor (one per arbiter).
pub struct Dispatcher<C: SessionCore> {
    state: SharedState,
    supervisor: Recipient<MarkQuarantined>,
    hooks: Hooks<C>,
}

/// The engine's hooks into the retry loop.
pub struct Hooks<C: SessionCore> {
    /// Re-authentication on 401/403.
    pub reauth: Option<ReauthHook<C>>,
    /// A look at each answer that may call it a block or a soft failure.
    pub detector: Option<BlockDetector<C>>,
}

impl<C: SessionCore> Default for Hooks<C> {
    fn default() -> Self {
        Hooks {
            reauth: None,
            detector: None,
        }
    }
}

impl<C: SessionCore> Clone for Hooks<C> {
    fn clone(&self) -> Self {
        Hooks {
            reauth: self.reauth.clone(),
            detector: self.detector.clone(),
        }
    }
}

impl<C: SessionCore> Dispatcher<C> {
    /// A dispatcher over `state`, reporting quarantines to `supervisor`.
    pub fn new(
        state: SharedState,
        hooks: Hooks<C>,
        supervisor: Recipient<MarkQuarantined>,
    ) -> Self {
        Dispatcher {
            state,
            supervisor,
            hooks,
        }
    }
}

impl<C: SessionCore> Actor for Dispatcher<C> {
    type Context = Context<Self>;
}

/// Perform a request on a session, with retries.
pub struct Dispatch<C: SessionCore> {
    /// Session id.
    pub id: String,
    /// The session (for the re-authentication hook).
    pub core: C,
    /// The session's actor.
    pub actor: Addr<SessionActor<C>>,
    /// The request.
    pub request: C::Request,
}

/// What a re-authentication did to requests: applied to the request that triggered it
/// and to every request of the session that was refused while it ran.
pub type Rewrite<C> =
    Arc<dyn Fn(&<C as SessionCore>::Request) -> <C as SessionCore>::Request + Send + Sync>;

/// Called on a 401 or 403 with the session, the request and the status, at most once
/// at a time per session (concurrent refusals wait for it): it may refresh credentials
/// (log in again through the session) and return how requests change (new headers), or
/// an error that quarantines the session with that cause. Bounded by the request's
/// deadline; a hook that does not finish in time quarantines too.
pub type ReauthHook<C> = std::sync::Arc<
    dyn Fn(
            &C,
            &<C as SessionCore>::Request,
            u16,
        ) -> crate::core::BoxFuture<Result<Rewrite<C>, String>>
        + Send
        + Sync,
>;

/// Looks at each answer (status, headers, the first bytes of the body) and may call it
/// a block (a CAPTCHA served with 200: quarantine) or a soft failure (retry); `None`
/// leaves it to the status.
pub type BlockDetector<C> = std::sync::Arc<
    dyn Fn(&Result<<C as SessionCore>::Response, <C as SessionCore>::Error>) -> Option<Detected>
        + Send
        + Sync,
>;

/// A response and the number of attempts it took.
#[derive(Debug)]
pub struct Dispatched<R> {
    /// The final response.
    pub response: R,
    /// Attempts made (1 when the first one answered).
    pub attempts: usize,
}

impl<C: SessionCore> Message for Dispatch<C> {
    type Result = Result<Dispatched<C::Response>, ActorError<C::Error>>;
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<C: SessionCore> Handler<Dispatch<C>> for Dispatcher<C> {
    type Result = ResponseFuture<Result<Dispatched<C::Response>, ActorError<C::Error>>>;

    fn handle(&mut self, msg: Dispatch<C>, _: &mut Context<Self>) -> Self::Result {
        let Dispatch {
            id,
            core,
            actor,
            request,
        } = msg;
        let gone = id.clone();
        // Each attempt is a message to the session actor on this arbiter (which owns
        // its copy of the request).
        let attempt = move |request: &C::Request| {
            let (actor, gone, request) = (actor.clone(), gone.clone(), request.clone());
            async move {
                match actor.send(Execute(request)).await {
                    Ok(Ok(result)) => Ok(result),
                    Ok(Err(Aborted)) => Err(ActorError::ShuttingDown),
                    Err(_) => Err(ActorError::SessionNotFound(gone)),
                }
            }
        };
        let cx = self.context();
        Box::pin(async move { dispatch(&cx, &id, &core, request, attempt).await })
    }
}

/// What the retry loop needs from the engine, wherever it runs: the shared state, the
/// supervisor (for quarantines) and the hooks.
pub struct DispatchContext<C: SessionCore> {
    state: SharedState,
    supervisor: Recipient<MarkQuarantined>,
    hooks: Hooks<C>,
}

impl<C: SessionCore> DispatchContext<C> {
    /// Whether `id` is quarantined.
    pub fn is_quarantined(&self, id: &str) -> bool {
        self.state.is_quarantined(id)
    }
}

impl<C: SessionCore> Clone for DispatchContext<C> {
    fn clone(&self) -> Self {
        DispatchContext {
            state: self.state.clone(),
            supervisor: self.supervisor.clone(),
            hooks: self.hooks.clone(),
        }
    }
}

impl<C: SessionCore> DispatchContext<C> {
    /// Slows `host` to `rate` (robots.txt `Crawl-delay`) unless the operator's limit
    /// is slower already: the stricter of the two wins. In effect for the next request
    /// that waits for a slot (synchronous: no request can slip past it).
    pub fn set_host_rate(&self, host: &str, rate: Rate) {
        self.state.lock().limits.set_host_rate(host, rate);
    }
}

impl<C: SessionCore> DispatchContext<C> {
    /// Waits for a slot of `host`'s rate limits (the local one, its throttle, the
    /// shared one) within `within`; false when none came in time. For requests outside
    /// the retry loop (robots.txt), which the site sees like any other.
    pub async fn host_slot(&self, host: &str, within: Duration) -> bool {
        let until = Instant::now() + within;
        let (limiter, pause, shared) = {
            let mut st = self.state.lock();
            (
                st.limits.for_host(host),
                st.throttle_wait(host).0,
                st.shared_rate.clone(),
            )
        };
        wait_for_slot(pause, limiter, shared, host, until).await
    }

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.state.policy
    }
}

impl<C: SessionCore> Dispatcher<C> {
    /// The context its retry loops run in (the same for every dispatcher of a system).
    pub fn context(&self) -> DispatchContext<C> {
        DispatchContext {
            state: self.state.clone(),
            supervisor: self.supervisor.clone(),
            hooks: self.hooks.clone(),
        }
    }
}

/// An attempt's result kept while its retry waits.
struct Previous<C: SessionCore> {
    result: Result<C::Response, C::Error>,
    attempts: usize,
    status: Option<u16>,
    reason: String,
}

impl<C: SessionCore> Previous<C> {
    /// The retry cannot go (`why`): this result is final; it is dead-lettered and
    /// returned.
    fn give_up(
        self,
        state: &SharedState,
        id: &str,
        target: &str,
        why: &str,
    ) -> Result<Dispatched<C::Response>, ActorError<C::Error>> {
        state.lock().dead_letter(DeadLetter {
            session: id.to_string(),
            target: target.to_string(),
            attempts: self.attempts,
            status: self.status,
            reason: format!(
                "gave up after {} attempt(s): {} ({why})",
                self.attempts, self.reason
            ),
            at: unix_ms(),
        });
        self.result
            .map(|response| Dispatched {
                response,
                attempts: self.attempts,
            })
            .map_err(ActorError::Session)
    }
}

/// Waits out the host's throttle `pause`, then each of `limiters`, then the `shared`
/// budget for `host`, until `until`; false when a slot did not come in time. The
/// operator's limiters come after the throttle, so whatever the throttle scheduled, no
/// two requests leave closer than the operator's limit.
async fn wait_for_slot(
    pause: Duration,
    limiters: impl IntoIterator<Item = Arc<governor::DefaultDirectRateLimiter>>,
    shared: Option<Arc<dyn SharedRateLimit>>,
    host: &str,
    until: Instant,
) -> bool {
    let left = || until.saturating_duration_since(Instant::now());
    if !pause.is_zero() {
        if pause >= left() {
            return false;
        }
        tokio::time::sleep(pause).await;
    }
    for limiter in limiters {
        if tokio::time::timeout(left(), limiter.until_ready())
            .await
            .is_err()
        {
            return false;
        }
    }
    match shared {
        Some(shared) => shared.acquire(host, left()).await,
        None => true,
    }
}

/// What a refused request learned from the re-authentication gate.
enum Reauthed<C: SessionCore> {
    /// Send this request (rewritten) once more.
    Retry(C::Request),
    /// Quarantine, for this reason.
    Failed(String),
}

/// Runs the session's re-authentication for a request refused with `status` that was
/// sent when `refreshes_at_send` refreshes had completed: if one finished since, the
/// request takes its rewrite; otherwise this request runs the hook (the others of the
/// session wait on the gate), within `time_left`.
async fn reauthenticate<C: SessionCore>(
    cx: &DispatchContext<C>,
    id: &str,
    core: &C,
    request: &C::Request,
    status: u16,
    refreshes_at_send: u64,
    time_left: Duration,
) -> Reauthed<C> {
    let Some(hook) = &cx.hooks.reauth else {
        return Reauthed::Failed(format!("status {status}"));
    };
    let until = Instant::now() + time_left;
    let gate = cx
        .state
        .lock()
        .gates
        .entry(id.to_string())
        .or_default()
        .clone();
    let Ok(mut last) = tokio::time::timeout(time_left, gate.last.lock()).await else {
        return Reauthed::Failed(format!(
            "status {status}; re-authentication by another request did not finish within the deadline"
        ));
    };
    if gate.refreshes.load(Ordering::Acquire) != refreshes_at_send {
        // Another request re-authenticated after this one was sent: take its outcome
        // (its rewrite, or the reason it failed) instead of calling the hook again.
        return match last.as_ref() {
            Some(Ok(rewrite)) => match rewrite.downcast_ref::<Rewrite<C>>() {
                Some(rewrite) => Reauthed::Retry(rewrite(request)),
                None => Reauthed::Retry(request.clone()),
            },
            Some(Err(why)) => Reauthed::Failed(why.clone()),
            None => Reauthed::Retry(request.clone()),
        };
    }
    metrics::counter!("reauth_total").increment(1);
    // What is left of the deadline after waiting for the gate.
    let left = until.saturating_duration_since(Instant::now());
    let outcome = match tokio::time::timeout(left, hook(core, request, status)).await {
        Ok(Ok(rewrite)) => {
            let fresh = rewrite(request);
            *last = Some(Ok(Arc::new(rewrite)));
            Reauthed::Retry(fresh)
        }
        Ok(Err(why)) => {
            metrics::counter!("reauth_failed_total").increment(1);
            let why = format!("status {status}; re-authentication failed: {why}");
            *last = Some(Err(why.clone()));
            Reauthed::Failed(why)
        }
        Err(_) => {
            metrics::counter!("reauth_failed_total").increment(1);
            let why = format!(
                "status {status}; re-authentication did not finish within the deadline ({left:?} left)"
            );
            *last = Some(Err(why.clone()));
            Reauthed::Failed(why)
        }
    };
    // Counted whatever the outcome: the requests that waited take it as it is.
    gate.refreshes.fetch_add(1, Ordering::AcqRel);
    outcome
}

/// Performs `request` on session `id` with retries: quarantine and breaker checks
/// (waiting out an open breaker when its probe time is within the deadline), rate
/// limits and the host's throttle, one `attempt_once` per try, classification, backoff,
/// dead letters. It runs one try wherever the caller chose (a message to the session
/// actor, or the session's own future registered with its actor).
///
/// The request is counted once in `requests_total`, with the class of its final
/// outcome (`error` when it ended without a response: a transport failure, a breaker
/// or a deadline); each attempt in `attempts_total`.
pub async fn dispatch<C, A, F>(
    cx: &DispatchContext<C>,
    id: &str,
    core: &C,
    request: C::Request,
    attempt_once: A,
) -> Result<Dispatched<C::Response>, ActorError<C::Error>>
where
    C: SessionCore,
    A: FnMut(&C::Request) -> F,
    F: std::future::Future<Output = Result<Result<C::Response, C::Error>, ActorError<C::Error>>>,
{
    let mut class = ERROR_CLASS;
    let result = retry_loop(cx, id, core, request, attempt_once, &mut class).await;
    count_request(class, core.tenant_label());
    result
}

async fn retry_loop<C, A, F>(
    cx: &DispatchContext<C>,
    id: &str,
    core: &C,
    mut request: C::Request,
    mut attempt_once: A,
    final_class: &mut usize,
) -> Result<Dispatched<C::Response>, ActorError<C::Error>>
where
    C: SessionCore,
    A: FnMut(&C::Request) -> F,
    F: std::future::Future<Output = Result<Result<C::Response, C::Error>, ActorError<C::Error>>>,
{
    let DispatchContext {
        state,
        supervisor,
        hooks,
    } = cx;
    let mut reauthenticated = false;
    let retryable = C::replayable(&request);
    let (policy, started) = (&*state.policy, Instant::now());
    let time_left = || policy.deadline.saturating_sub(started.elapsed());
    let mut attempt = 0;
    // The last attempt's result while a retry waits: when the retry cannot go (its
    // deadline passes waiting for a slot or a breaker), this is what the caller gets,
    // and what is dead-lettered, instead of a bare deadline error.
    let mut previous: Option<Previous<C>> = None;
    let tenant = core.tenant_label();
    loop {
        attempt += 1;
        // Borrowed from the request, so taken again on each pass: a re-authentication
        // replaces the request. Breakers, limits and throttles count `host` (the target
        // scoped by tenant); letters and events name the bare target.
        let target = C::target(&request);
        let host_key = state.host_key(&tenant, target);
        let host = host_key.as_ref();
        // Quarantine, breakers, the limiters and the throttle, under one lock; an
        // open breaker is waited out when its probe time is within the deadline.
        let mut probes: Vec<ProbeGuard> = Vec::new();
        let (limiters, shared, (pause, cuts_at_send), refreshes_at_send) = loop {
            let refused = {
                let mut st = state.lock();
                if st.quarantined.contains(id) {
                    return Err(ActorError::Quarantined(id.to_string()));
                }
                let mut refused = None;
                for (scope, name) in [(Scope::Session, id), (Scope::Host, host)] {
                    match st.admit(scope, name) {
                        Admission::Allowed => {}
                        Admission::Probe(number) => probes.push(ProbeGuard {
                            state: state.clone(),
                            scope,
                            name: name.to_string(),
                            number,
                            armed: true,
                        }),
                        Admission::Rejected { retry_in, probing } => {
                            refused = Some((scope, name, retry_in, probing));
                            break;
                        }
                    }
                }
                match refused {
                    None => {
                        let refreshes = match hooks.reauth {
                            Some(_) => st
                                .gates
                                .get(id)
                                .map_or(0, |g| g.refreshes.load(Ordering::Acquire)),
                            None => 0,
                        };
                        break (
                            st.limits.for_request(host, id),
                            st.shared_rate.clone(),
                            st.throttle_wait(host),
                            refreshes,
                        );
                    }
                    Some((scope, name, retry_in, probing)) => {
                        // Not sent: a probe taken for the other breaker goes back.
                        for probe in &mut probes {
                            probe.release_in(&mut st);
                        }
                        let cause = st.cause(scope, name);
                        (scope, name, retry_in, probing, cause)
                    }
                }
            };
            probes.clear();
            let (scope, name, retry_in, probing, cause) = refused;
            let nap = if probing {
                retry_in.min(PROBE_POLL)
            } else {
                retry_in
            };
            if nap >= time_left() {
                let why = format!("{} breaker open, next probe in {retry_in:?}", scope.label());
                if let Some(last) = previous.take() {
                    return last.give_up(state, id, target, &why);
                }
                return Err(ActorError::BreakerOpen {
                    key: scope.key(name),
                    retry_in,
                    cause,
                });
            }
            metrics::counter!("breaker_waits_total", "scope" => scope.label()).increment(1);
            tokio::time::sleep(nap.max(Duration::from_millis(1))).await;
        };
        if !wait_for_slot(pause, limiters, shared, host, started + policy.deadline).await {
            if let Some(last) = previous.take() {
                return last.give_up(state, id, target, "no rate slot within the deadline");
            }
            return Err(ActorError::Deadline(policy.deadline));
        }
        // A probe that waited for its slot is sent now: its timeout counts from here.
        if !probes.is_empty() {
            let mut st = state.lock();
            for probe in &probes {
                st.probe_sent(probe.scope, &probe.name, probe.number);
            }
        }
        previous = None;
        metrics::counter!("attempts_total").increment(1);
        let result = if probes.is_empty() {
            attempt_once(&request).await?
        } else {
            // A probe is bounded by the deadline: one that hangs ends with it and gives
            // its slot back as it drops. Other attempts are bounded by the transport's
            // own timeouts; a timer on every attempt costs ~1 500 instructions per
            // request (callgrind, docs/benchmarks.md).
            match tokio::time::timeout(time_left(), attempt_once(&request)).await {
                Ok(result) => result?,
                Err(_) => return Err(ActorError::Deadline(policy.deadline)),
            }
        };
        let outcome = C::describe(&result);
        *final_class = class_index(&outcome);
        let detected = hooks.detector.as_ref().and_then(|d| d(&result));
        let mut signals = policy.classification.signals(&outcome, detected);
        let class = policy.classification.class_of(&outcome, detected);
        let now = SystemTime::now();
        let decision = policy.decide_class(
            class,
            &outcome,
            attempt,
            now,
            time_left(),
            rand::random(),
            retryable,
        );
        let status = match &outcome {
            Attempt::Response { status, .. } => Some(*status),
            Attempt::Failure { .. } => None,
        };
        let reason = || match (&result, status, detected) {
            (Err(e), _, _) => e.to_string(),
            (Ok(_), Some(s), Some(Detected::Blocked)) => {
                format!("status {s}, a block page (the block detector)")
            }
            (Ok(_), Some(s), _) => format!("status {s}"),
            (Ok(_), None, _) => "failed".to_string(),
        };
        // A 401/403 that the re-authentication hook is about to handle tells the
        // session's breaker nothing yet: expired credentials on many requests at once
        // must not open it under the refreshed ones. If the hook fails, the session is
        // quarantined anyway.
        let reauth_pending = !reauthenticated
            && hooks.reauth.is_some()
            && detected.is_none()
            && decision == Decision::Quarantine
            && matches!(status, Some(401 | 403));
        if reauth_pending {
            signals.session = Signal::Neutral;
        }
        let pause = policy::host_pause(&outcome, now, policy.max_retry_after);
        // Counted before anything else happens to the request (a re-authentication
        // included): the breakers, the probes this request holds, the throttle.
        {
            let mut st = state.lock();
            for probe in &mut probes {
                probe.settle(&mut st, Scope::Session, signals.session);
                probe.settle(&mut st, Scope::Host, signals.host);
            }
            st.record(Scope::Session, id, signals.session, &reason);
            st.record(Scope::Host, host, signals.host, &reason);
            st.throttle_after(
                host,
                cuts_at_send,
                status,
                pause,
                signals.host == Signal::Success,
            );
        }
        drop(probes);
        // 401/403: the hook may refresh credentials once per request (once per
        // session at a time), then the request goes again instead of quarantining.
        let mut quarantine_cause = None;
        if let (true, Some(s)) = (reauth_pending, status) {
            reauthenticated = true;
            match reauthenticate(cx, id, core, &request, s, refreshes_at_send, time_left()).await {
                Reauthed::Retry(fresh) => {
                    request = fresh;
                    continue;
                }
                Reauthed::Failed(why) => quarantine_cause = Some(why),
            }
        }
        // A success has nothing more to record: the request path takes the lock twice
        // (admission, outcome), as it did before re-authentication could sit between.
        if decision != Decision::Done {
            let mut st = state.lock();
            match decision {
                // Final failures: non-recoverable at once, or recoverable with
                // the retries (or the deadline) used up.
                Decision::DeadLetter | Decision::GiveUp => {
                    let why = if decision == Decision::GiveUp {
                        format!("gave up after {attempt} attempt(s): {}", reason())
                    } else {
                        reason()
                    };
                    let letter = DeadLetter {
                        session: id.to_string(),
                        target: target.to_string(),
                        attempts: attempt,
                        status,
                        reason: why,
                        at: unix_ms(),
                    };
                    st.dead_letter(letter);
                }
                Decision::Quarantine => {
                    st.quarantined.insert(id.to_string());
                    let _ = st.events.send(EngineEvent::Quarantined {
                        id: id.to_string(),
                        reason: quarantine_cause.unwrap_or_else(reason),
                    });
                    supervisor.do_send(MarkQuarantined(id.to_string()));
                }
                Decision::RetryAfter(delay) => {
                    metrics::counter!("retries_total").increment(1);
                    metrics::histogram!("backoff_seconds").record(delay.as_secs_f64());
                    let _ = st.events.send(EngineEvent::RetryScheduled {
                        id: id.to_string(),
                        target: target.to_string(),
                        attempt,
                        delay,
                        class,
                    });
                }
                Decision::Done => {}
            }
        }
        match decision {
            Decision::RetryAfter(delay) => {
                let reason = reason();
                let last = Previous {
                    result,
                    attempts: attempt,
                    status,
                    reason,
                };
                tokio::time::sleep(delay).await;
                if started.elapsed() >= policy.deadline {
                    return last.give_up(state, id, target, "the deadline passed");
                }
                previous = Some(last);
            }
            _ => {
                if decision == Decision::Done && attempt > 1 {
                    metrics::counter!("retry_success_total").increment(1);
                }
                return result
                    .map(|response| Dispatched {
                        response,
                        attempts: attempt,
                    })
                    .map_err(ActorError::Session);
            }
        }
    }
}

/// The status classes of `requests_total`, in [`class_index`] order.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// The class of a request that ended without a response.
const ERROR_CLASS: usize = 5;

fn class_index(a: &Attempt) -> usize {
    match a {
        Attempt::Response { status, .. } => match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        },
        Attempt::Failure { .. } => 5,
    }
}

/// Counts a finished request in `requests_total{class, tenant}` ([`CLASSES`] index).
/// The keys of the default tenant are built at compile time; `metrics::counter!` with
/// a label that is not a literal builds its key (a vector of labels) on every call, one
/// allocation per request on the hottest path. Other tenants' keys are still built per
/// request.
fn count_request(class: usize, tenant: metrics::SharedString) {
    use metrics::{Key, Label, Level, Metadata};
    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
    const fn labels(class: usize) -> [Label; 2] {
        [
            Label::from_static_parts("class", CLASSES[class]),
            Label::from_static_parts("tenant", DEFAULT_TENANT),
        ]
    }
    static LABELS: [[Label; 2]; 6] = [
        labels(0),
        labels(1),
        labels(2),
        labels(3),
        labels(4),
        labels(5),
    ];
    static DEFAULT_TENANT_KEYS: [Key; 6] = [
        Key::from_static_parts("requests_total", &LABELS[0]),
        Key::from_static_parts("requests_total", &LABELS[1]),
        Key::from_static_parts("requests_total", &LABELS[2]),
        Key::from_static_parts("requests_total", &LABELS[3]),
        Key::from_static_parts("requests_total", &LABELS[4]),
        Key::from_static_parts("requests_total", &LABELS[5]),
    ];
    let class = class.min(ERROR_CLASS);
    if &*tenant == DEFAULT_TENANT {
        metrics::with_recorder(|r| r.register_counter(&DEFAULT_TENANT_KEYS[class], &METADATA))
            .increment(1);
    } else {
        metrics::counter!("requests_total", "class" => CLASSES[class], "tenant" => tenant)
            .increment(1);
    }
}

/// Read (and optionally drain) the dead-letter queue.
#[derive(Message)]
#[rtype(result = "Vec<DeadLetter>")]
pub struct DeadLetters {
    /// Remove what is returned.
    pub drain: bool,
}

impl<C: SessionCore> Handler<DeadLetters> for Dispatcher<C> {
    type Result = Vec<DeadLetter>;

    fn handle(&mut self, msg: DeadLetters, _: &mut Context<Self>) -> Vec<DeadLetter> {
        let mut st = self.state.lock();
        if msg.drain {
            st.dead.drain(..).collect()
        } else {
            st.dead.iter().cloned().collect()
        }
    }
}

/// The current state of every breaker that is not closed.
#[derive(Message)]
#[rtype(result = "Vec<(String, BreakerState)>")]
pub struct OpenBreakers;

impl<C: SessionCore> Handler<OpenBreakers> for Dispatcher<C> {
    type Result = Vec<(String, BreakerState)>;

    fn handle(&mut self, _: OpenBreakers, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now().into_std();
        let st = self.state.lock();
        let sessions = st.by_session.iter().map(|(k, b)| (Scope::Session, k, b));
        let hosts = st.by_host.iter().map(|(k, b)| (Scope::Host, k, b));
        sessions
            .chain(hosts)
            .map(|(scope, k, t)| (scope, k, t.breaker.state(now)))
            .filter(|(_, _, s)| *s != BreakerState::Closed)
            .map(|(scope, k, s)| (scope.key(k), s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(threshold: u32) -> (SharedState, broadcast::Receiver<EngineEvent>) {
        let (events, rx) = broadcast::channel(16);
        let breaker = BreakerConfig {
            consecutive_failures: threshold,
            ..BreakerConfig::default()
        };
        let state = SharedState::new(
            RetryPolicy::default(),
            breaker,
            RateLimits::default(),
            events,
        );
        (state, rx)
    }

    #[test]
    fn successes_keep_no_breaker_and_a_recovery_drops_it() {
        let (state, mut events) = state(2);
        let mut st = state.lock();
        for _ in 0..3 {
            st.record(Scope::Session, "s1", Signal::Success, &String::new);
            st.record(Scope::Host, "a.test", Signal::Success, &String::new);
        }
        assert!(st.by_session.is_empty() && st.by_host.is_empty());

        let refused = || "connection refused".to_string();
        st.record(Scope::Host, "a.test", Signal::Failure, &refused);
        assert_eq!(st.by_host.len(), 1, "a failure is remembered");
        assert_eq!(st.admit(Scope::Host, "a.test"), Admission::Allowed);
        st.record(Scope::Host, "a.test", Signal::Neutral, &refused);
        st.record(Scope::Host, "a.test", Signal::Failure, &refused);
        assert_eq!(st.cause(Scope::Host, "a.test"), "connection refused");
        assert_eq!(st.tripped, [0, 1], "one host breaker open");
        assert!(matches!(
            st.admit(Scope::Host, "a.test"),
            Admission::Rejected { .. }
        ));
        assert!(matches!(
            events.try_recv(),
            Ok(EngineEvent::Breaker { ref key, state: BreakerState::Open }) if key == "host:a.test"
        ));
        assert_eq!(
            st.admit(Scope::Session, "s1"),
            Admission::Allowed,
            "scopes are apart"
        );

        st.record(Scope::Host, "a.test", Signal::Success, &String::new);
        assert!(st.by_host.is_empty(), "back at rest, dropped");
        assert_eq!(st.tripped, [0, 0]);
        assert!(matches!(
            events.try_recv(),
            Ok(EngineEvent::Breaker {
                state: BreakerState::Closed,
                ..
            })
        ));
        assert_eq!(st.admit(Scope::Host, "a.test"), Admission::Allowed);
    }

    /// Remembers the key of every counter registered.
    #[derive(Default)]
    struct Keys(Mutex<Vec<String>>);

    impl metrics::Recorder for Keys {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            self.0
                .lock()
                .expect("keys")
                .push(format!("{}{{{}}}", key.name(), labels.join(",")));
            metrics::Counter::noop()
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            _: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    #[test]
    fn requests_are_counted_by_class_and_tenant() {
        let keys = Keys::default();
        let response = |status| {
            class_index(&Attempt::Response {
                status,
                retry_after: None,
            })
        };
        metrics::with_local_recorder(&keys, || {
            count_request(response(204), metrics::SharedString::const_str("default"));
            count_request(response(503), metrics::SharedString::const_str("default"));
            count_request(
                response(404),
                metrics::SharedString::from("north".to_string()),
            );
        });
        assert_eq!(
            *keys.0.lock().expect("keys"),
            [
                "requests_total{class=2xx,tenant=default}",
                "requests_total{class=5xx,tenant=default}",
                "requests_total{class=4xx,tenant=north}",
            ]
        );
    }
}
