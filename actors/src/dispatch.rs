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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::time::Instant;

use actix::{Actor, Addr, Context, Handler, Message, ResponseFuture};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::breaker::{Admission, Breaker, BreakerConfig, BreakerState};
use crate::core::{SessionCore, DEFAULT_TENANT};
use crate::error::ActorError;
use crate::events::EngineEvent;
use crate::policy::{is_idempotent, Attempt, Decision, RetryPolicy};
use crate::rate::{Limiters, Rate, RateLimits, SharedRateLimit};
use crate::session_actor::{Aborted, Execute, SessionActor};
use crate::supervisor::{MarkQuarantined, Supervisor};

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

    fn label(self) -> &'static str {
        match self {
            Scope::Session => "session",
            Scope::Host => "host",
        }
    }
}

struct State {
    breaker: BreakerConfig,
    /// Breakers by session id.
    by_session: FastMap<String, Breaker>,
    /// Breakers by target host.
    by_host: FastMap<String, Breaker>,
    quarantined: FastSet<String>,
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
    fn breakers(&mut self, scope: Scope) -> &mut FastMap<String, Breaker> {
        match scope {
            Scope::Host => &mut self.by_host,
            Scope::Session => &mut self.by_session,
        }
    }

    /// Asks `name`'s breaker whether a request may go now. A name without a breaker
    /// has never failed (or recovered since): it is admitted without touching the map.
    fn admit(&mut self, scope: Scope, name: &str) -> Admission {
        match self.breakers(scope).get_mut(name) {
            Some(breaker) => breaker.admit(Instant::now().into_std()),
            None => Admission::Allowed,
        }
    }

    /// Counts an outcome against `name`'s breaker. Only names with failures keep a
    /// breaker: a success on a name without one changes nothing, and a breaker that a
    /// success brings back to rest is dropped. So the request path touches no map
    /// entry while everything succeeds, and a thousand healthy sessions hold no
    /// breakers at all.
    fn record(&mut self, scope: Scope, name: &str, ok: bool) {
        let cfg = self.breaker;
        let map = self.breakers(scope);
        let change = if ok {
            let Some(breaker) = map.get_mut(name) else {
                return;
            };
            let change = breaker.success(Instant::now().into_std());
            if breaker.is_at_rest() {
                map.remove(name);
            }
            change
        } else {
            // Allocate the key only when a breaker is first needed.
            if !map.contains_key(name) {
                map.insert(name.to_string(), Breaker::new(cfg));
            }
            map.get_mut(name)
                .expect("the breaker was inserted just above")
                .failure(Instant::now().into_std())
        };
        if let Some(state) = change {
            metrics::gauge!("breaker_state", "scope" => scope.label()).set(match state {
                BreakerState::Closed => 0.0,
                BreakerState::HalfOpen => 1.0,
                BreakerState::Open => 2.0,
            });
            let _ = self.events.send(EngineEvent::Breaker {
                key: scope.key(name),
                state,
            });
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

/// The state every dispatcher of a system shares.
#[derive(Clone)]
pub struct SharedState {
    state: Arc<Mutex<State>>,
    /// Fixed for the system's life, so read without the lock.
    policy: Arc<RetryPolicy>,
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
            by_session: FastMap::default(),
            by_host: FastMap::default(),
            quarantined: FastSet::default(),
            dead: VecDeque::new(),
            events,
            limits: Limiters::new(limits),
            shared_rate: None,
            dead_letter_sink: None,
        }));
        SharedState {
            state,
            policy: Arc::new(policy),
        }
    }

    /// Forgets a closed session: its breaker, quarantine mark and limiter.
    pub fn forget(&self, id: &str) {
        let mut st = self.lock();
        st.quarantined.remove(id);
        st.by_session.remove(id);
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

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section is a few map operations; a panic in one leaves maps
        // that are still maps.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The retry and circuit-breaker actor (one per arbiter).
pub struct Dispatcher<C: SessionCore> {
    state: SharedState,
    supervisor: Addr<Supervisor<C>>,
    reauth: Option<ReauthHook<C>>,
}

impl<C: SessionCore> Dispatcher<C> {
    /// A dispatcher over `state`, reporting quarantines to `supervisor`.
    pub fn new(
        state: SharedState,
        reauth: Option<ReauthHook<C>>,
        supervisor: Addr<Supervisor<C>>,
    ) -> Self {
        Dispatcher {
            state,
            supervisor,
            reauth,
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

/// Called once per request on a 401 or 403 with the session, the request and the
/// status: it may refresh credentials (log in again through the session, or return the
/// request with new headers) and return the request to retry, or `None` to let the
/// session be quarantined.
pub type ReauthHook<C> = std::sync::Arc<
    dyn Fn(
            &C,
            &<C as SessionCore>::Request,
            u16,
        ) -> crate::core::BoxFuture<Option<<C as SessionCore>::Request>>
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
/// supervisor (for quarantines) and the re-authentication hook.
pub struct DispatchContext<C: SessionCore> {
    state: SharedState,
    supervisor: Addr<Supervisor<C>>,
    reauth: Option<ReauthHook<C>>,
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
            reauth: self.reauth.clone(),
        }
    }
}

impl<C: SessionCore> DispatchContext<C> {
    /// Gives `host` its own rate (robots.txt `Crawl-delay`), in effect for the next
    /// request that waits for a slot (synchronous: no request can slip past it).
    pub fn set_host_rate(&self, host: &str, rate: Rate) {
        self.state.lock().limits.set_host_rate(host, rate);
    }
}

impl<C: SessionCore> Dispatcher<C> {
    /// The context its retry loops run in (the same for every dispatcher of a system).
    pub fn context(&self) -> DispatchContext<C> {
        DispatchContext {
            state: self.state.clone(),
            supervisor: self.supervisor.clone(),
            reauth: self.reauth.clone(),
        }
    }
}

/// Performs `request` on session `id` with retries: quarantine and breaker checks, rate
/// limits, one `attempt_once` per try, classification, backoff, dead letters. It runs
/// one try wherever the caller chose (a message to the session actor, or the session's
/// own future registered with its actor).
pub async fn dispatch<C, A, F>(
    cx: &DispatchContext<C>,
    id: &str,
    core: &C,
    mut request: C::Request,
    mut attempt_once: A,
) -> Result<Dispatched<C::Response>, ActorError<C::Error>>
where
    C: SessionCore,
    A: FnMut(&C::Request) -> F,
    F: std::future::Future<Output = Result<Result<C::Response, C::Error>, ActorError<C::Error>>>,
{
    let DispatchContext {
        state,
        supervisor,
        reauth,
    } = cx;
    let mut reauthenticated = false;
    let (method, has_key) = C::method(&request);
    let retryable = is_idempotent(method, has_key);
    let (policy, started) = (&*state.policy, Instant::now());
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Borrowed from the request, so taken again on each pass: a re-authentication
        // replaces the request.
        let target = C::target(&request);
        // Quarantine, breakers and the rate limiters to wait for, under one lock.
        let (limiters, shared) = {
            let mut st = state.lock();
            if st.quarantined.contains(id) {
                return Err(ActorError::Quarantined(id.to_string()));
            }
            for (scope, name) in [(Scope::Session, id), (Scope::Host, target)] {
                if let Admission::Rejected { retry_in } = st.admit(scope, name) {
                    return Err(ActorError::BreakerOpen {
                        key: scope.key(name),
                        retry_in,
                    });
                }
            }
            (st.limits.for_request(target, id), st.shared_rate.clone())
        };
        // Rate limits: wait for a slot, within the deadline.
        for limiter in limiters {
            let left = policy.deadline.saturating_sub(started.elapsed());
            if tokio::time::timeout(left, limiter.until_ready())
                .await
                .is_err()
            {
                return Err(ActorError::Deadline(policy.deadline));
            }
        }
        if let Some(shared) = shared {
            let left = policy.deadline.saturating_sub(started.elapsed());
            if !shared.acquire(target, left).await {
                return Err(ActorError::Deadline(policy.deadline));
            }
        }
        let result = attempt_once(&request).await?;
        let outcome = C::describe(&result);
        let time_left = policy.deadline.saturating_sub(started.elapsed());
        let mut decision = policy.decide(
            &outcome,
            attempt,
            SystemTime::now(),
            time_left,
            rand::random(),
        );
        if !retryable && matches!(decision, Decision::RetryAfter(_)) {
            decision = Decision::GiveUp;
        }
        // 401/403: the hook may refresh credentials once, then the request goes
        // again instead of quarantining the session.
        if let (
            Decision::Quarantine,
            Attempt::Response {
                status: s @ (401 | 403),
                ..
            },
            Some(hook),
        ) = (decision, &outcome, &reauth)
        {
            if !reauthenticated {
                reauthenticated = true;
                if let Some(fresh) = hook(core, &request, *s).await {
                    request = fresh;
                    metrics::counter!("reauth_total").increment(1);
                    continue;
                }
            }
        }
        let class = policy.classification.classify(&outcome);
        let target_failed = class == crate::policy::Class::Recoverable;
        count_request(&outcome, core.tenant_label());
        if attempt > 1 && !target_failed {
            metrics::counter!("retry_success_total").increment(1);
        }
        let status = match &outcome {
            Attempt::Response { status, .. } => Some(*status),
            Attempt::Failure { .. } => None,
        };
        let reason = || match (&result, status) {
            (Err(e), _) => e.to_string(),
            (Ok(_), Some(s)) => format!("status {s}"),
            (Ok(_), None) => "failed".to_string(),
        };
        {
            let mut st = state.lock();
            st.record(Scope::Session, id, !target_failed);
            st.record(Scope::Host, target, !target_failed);
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
                        reason: reason(),
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
                tokio::time::sleep(delay).await;
                if started.elapsed() >= policy.deadline {
                    return Err(ActorError::Deadline(policy.deadline));
                }
            }
            _ => {
                return result
                    .map(|response| Dispatched {
                        response,
                        attempts: attempt,
                    })
                    .map_err(ActorError::Session)
            }
        }
    }
}

/// The status classes of `requests_total`, in [`class_index`] order.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

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

/// Counts a finished request in `requests_total{class, tenant}`. The keys of the
/// default tenant are built at compile time; `metrics::counter!` with a label that is
/// not a literal builds its key (a vector of labels) on every call, one allocation per
/// request on the hottest path. Other tenants' keys are still built per request.
fn count_request(outcome: &Attempt, tenant: metrics::SharedString) {
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
    let class = class_index(outcome);
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
            .map(|(scope, k, b)| (scope, k, b.state(now)))
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
            failure_threshold: threshold,
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
            st.record(Scope::Session, "s1", true);
            st.record(Scope::Host, "a.test", true);
        }
        assert!(st.by_session.is_empty() && st.by_host.is_empty());

        st.record(Scope::Host, "a.test", false);
        assert_eq!(st.by_host.len(), 1, "a failure is remembered");
        assert_eq!(st.admit(Scope::Host, "a.test"), Admission::Allowed);
        st.record(Scope::Host, "a.test", false);
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

        st.record(Scope::Host, "a.test", true);
        assert!(st.by_host.is_empty(), "back at rest, dropped");
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
        let response = |status| Attempt::Response {
            status,
            retry_after: None,
        };
        metrics::with_local_recorder(&keys, || {
            count_request(&response(204), metrics::SharedString::const_str("default"));
            count_request(&response(503), metrics::SharedString::const_str("default"));
            count_request(
                &response(404),
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
