//! The supervisor: the session registry. It creates, looks up, lists and closes sessions,
//! reaps idle ones, enforces the session limit (or evicts), and shuts everything down.
//! It never sits on the request path: callers get a session's actor address once and
//! send requests through the dispatcher.

use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message,
    MessageResult, ResponseActFuture, WrapFuture,
};
use actix_rt::ArbiterHandle;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

use crate::core::SessionCore;
use crate::dispatch::{Dispatcher, MarkQuarantined, SharedState};
use crate::events::{CloseReason, EngineEvent};
use crate::registry::{Cursor, Registry};
use crate::session_actor::{Retire, Running, SessionActor};

/// What to do at the session limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPolicy {
    /// Refuse with "maximum sessions limit reached".
    #[default]
    Refuse,
    /// Close the least recently used idle session (none in flight) and create.
    EvictIdle,
}

/// Registry settings. The defaults are those users know from httpcloak's Manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorConfig {
    /// Most live sessions (default 100).
    pub max_sessions: usize,
    /// A session idle this long is reaped (default 30 minutes).
    pub idle_timeout: Duration,
    /// How often reaping runs (default 1 minute; zero turns periodic reaping off).
    pub reap_interval: Duration,
    /// At the limit: refuse or evict.
    pub at_limit: LimitPolicy,
    /// How long a close or shutdown waits for running requests before aborting them
    /// (default 10 s).
    pub close_deadline: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            max_sessions: 100,
            idle_timeout: Duration::from_secs(30 * 60),
            reap_interval: Duration::from_secs(60),
            at_limit: LimitPolicy::Refuse,
            close_deadline: Duration::from_secs(10),
        }
    }
}

/// Where a session actor runs: an arbiter (`None`: the supervisor's own thread) and the
/// dispatcher on that arbiter.
pub type Placement<C> = (Option<ArbiterHandle>, Addr<Dispatcher<C>>);

/// Called with a session and the reason just before it closes (a store saves it here).
pub type CloseHook<C> = std::sync::Arc<dyn Fn(&C, CloseReason) + Send + Sync>;

struct Entry<C: SessionCore> {
    core: C,
    actor: Addr<SessionActor<C>>,
    /// Its running requests.
    running: Running,
    /// The dispatcher on the session's arbiter.
    dispatcher: Addr<Dispatcher<C>>,
    quarantined: bool,
}

/// The supervisor actor.
pub struct Supervisor<C: SessionCore> {
    config: SupervisorConfig,
    sessions: Registry<Entry<C>>,
    /// Where session actors go, each with the dispatcher on the same arbiter.
    placements: Vec<Placement<C>>,
    next_arbiter: usize,
    /// Where the next eviction's sample starts (a shard).
    evict_from: usize,
    events: broadcast::Sender<EngineEvent>,
    on_close: Option<CloseHook<C>>,
    shutting_down: bool,
    /// The dispatchers' state, which forgets a closed session's breaker and quarantine.
    dispatch_state: Option<SharedState>,
}

impl<C: SessionCore> Supervisor<C> {
    /// A supervisor placing session actors round robin over `placements`: an arbiter
    /// (`None`: the supervisor's own) and the dispatcher that runs there.
    pub fn new(
        config: SupervisorConfig,
        placements: Vec<Placement<C>>,
        events: broadcast::Sender<EngineEvent>,
        on_close: Option<CloseHook<C>>,
    ) -> Self {
        Supervisor {
            config,
            sessions: Registry::default(),
            placements,
            next_arbiter: 0,
            evict_from: 0,
            events,
            on_close,
            shutting_down: false,
            dispatch_state: None,
        }
    }

    /// Forgets every closed session (explicit, idle, evicted) in `state` as part of the
    /// close, before the close is answered: a stale handle then sees the close, and
    /// reaping millions of sessions leaves no breaker or quarantine entry behind.
    pub fn forgetting_in(mut self, state: SharedState) -> Self {
        self.dispatch_state = Some(state);
        self
    }

    /// Removes `id` and closes it gracefully in the background: new requests are
    /// refused at once, running ones get `close_deadline`, then are aborted.
    fn close_entry(&mut self, id: &str, reason: CloseReason, ctx: &mut Context<Self>) -> bool {
        let Some(entry) = self.sessions.remove(id) else {
            return false;
        };
        // A quarantined session that its owner closes (or a rotation replaces) is
        // closed because of the quarantine: that is the reason reported.
        let quarantined = entry.quarantined
            || self
                .dispatch_state
                .as_ref()
                .is_some_and(|state| state.is_quarantined(id));
        let reason = match reason {
            CloseReason::Explicit if quarantined => CloseReason::Quarantined,
            other => other,
        };
        if let Some(hook) = &self.on_close {
            hook(&entry.core, reason);
        }
        entry.core.close();
        if let Some(state) = &self.dispatch_state {
            state.forget(id);
        }
        metrics::counter!("session_destruction_total", "reason" => reason.as_str(), "tenant" => entry.core.tenant_label()).increment(1);
        metrics::gauge!("sessions").set(self.sessions.len() as f64);
        let _ = self.events.send(EngineEvent::SessionClosed {
            id: id.to_string(),
            reason,
        });
        ctx.spawn(drain(entry, self.config.close_deadline).into_actor(self));
        true
    }

    /// One step of a reaping pass: closes the idle sessions of a few shards from
    /// `from`, then queues the next step behind the messages already waiting, so a
    /// pass over a million sessions never holds up a lookup for more than a step.
    /// `done` is told when the pass is over.
    fn reap_step(
        &mut self,
        from: usize,
        done: Option<oneshot::Sender<()>>,
        ctx: &mut Context<Self>,
    ) {
        let (taken, next) = self.sessions.step(from, WALK_STEP);
        let idle: Vec<String> = taken
            .into_iter()
            .filter(|(_, e)| {
                e.core.in_flight() == 0 && e.core.idle_time() >= self.config.idle_timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            tracing::debug!(session = %id, "reaping idle session");
            self.close_entry(&id, CloseReason::Idle, ctx);
        }
        match next {
            Some(from) => ctx.notify(ReapStep { from, done }),
            None => {
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }
}

impl<C: SessionCore> Supervisor<C> {
    /// The session to evict at the limit: the least recently used one with nothing in
    /// flight. Up to [`EXACT_EVICTION`] sessions it is exactly that; above, it is the
    /// least recently used of a sample (the sessions of the next shards, at least
    /// [`WALK_STEP`] of them, the starting shard rotating from one eviction to the
    /// next), as Redis approximates LRU: looking at every one of a million sessions
    /// for each create would hold the supervisor up for most of a second each time.
    fn eviction_victim(&mut self) -> Option<String> {
        let idlest = |taken: Vec<(&String, &Entry<C>)>| {
            taken
                .into_iter()
                .filter(|(_, e)| e.core.in_flight() == 0)
                .max_by_key(|(_, e)| e.core.idle_time())
                .map(|(id, _)| id.clone())
        };
        if self.sessions.len() <= EXACT_EVICTION {
            return idlest(self.sessions.iter().collect());
        }
        // At most one round of the table, in samples, until one has an idle session.
        let mut looked = 0;
        while looked < self.sessions.len() {
            let (taken, next) = self.sessions.step(self.evict_from, WALK_STEP);
            looked += taken.len().max(1);
            self.evict_from = next.unwrap_or(0);
            if let Some(id) = idlest(taken) {
                return Some(id);
            }
        }
        None
    }
}

/// Up to this many sessions, eviction looks at every one (a millisecond or so).
const EXACT_EVICTION: usize = 4096;

/// How many sessions one step of a walk (a reaping pass, a sample for eviction, a
/// page of a listing unless the caller asks for fewer) takes at most, give or take a
/// shard: a millisecond of work or so.
pub const WALK_STEP: usize = 1024;

/// The next step of a reaping pass (sent by the supervisor to itself).
struct ReapStep {
    from: usize,
    done: Option<oneshot::Sender<()>>,
}

impl Message for ReapStep {
    type Result = ();
}

impl<C: SessionCore> Handler<ReapStep> for Supervisor<C> {
    type Result = ();

    fn handle(&mut self, msg: ReapStep, ctx: &mut Context<Self>) {
        if !self.shutting_down {
            self.reap_step(msg.from, msg.done, ctx);
        }
    }
}

/// Waits for a closed session's running requests, up to `deadline`, then aborts what is
/// left and stops its actor.
async fn drain<C: SessionCore>(entry: Entry<C>, deadline: Duration) {
    let started = tokio::time::Instant::now();
    while entry.core.in_flight() > 0 && started.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if entry.core.in_flight() > 0 {
        let aborted = entry.running.abort_all();
        tracing::debug!(aborted, "close deadline passed; running requests aborted");
    }
    entry.actor.do_send(Retire);
}

impl<C: SessionCore> Actor for Supervisor<C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.config.reap_interval.is_zero() {
            ctx.run_interval(self.config.reap_interval, |act, ctx| {
                act.reap_step(0, None, ctx)
            });
        }
    }
}

/// Register a new session.
pub struct Create<C: SessionCore> {
    /// Its id (unique; the caller makes it).
    pub id: String,
    /// The session.
    pub core: C,
}

/// Why a session could not be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// At the limit, and nothing could be evicted.
    Limit(usize),
    /// The id is taken.
    Duplicate(String),
    /// Shutting down.
    ShuttingDown,
}

impl<C: SessionCore> Message for Create<C> {
    type Result = Result<Addr<SessionActor<C>>, CreateError>;
}

impl<C: SessionCore> Handler<Create<C>> for Supervisor<C> {
    type Result = Result<Addr<SessionActor<C>>, CreateError>;

    fn handle(&mut self, msg: Create<C>, ctx: &mut Context<Self>) -> Self::Result {
        if self.shutting_down {
            return Err(CreateError::ShuttingDown);
        }
        if self.sessions.contains(&msg.id) {
            return Err(CreateError::Duplicate(msg.id));
        }
        if self.sessions.len() >= self.config.max_sessions {
            let victim = match self.config.at_limit {
                LimitPolicy::Refuse => None,
                LimitPolicy::EvictIdle => self.eviction_victim(),
            };
            match victim {
                Some(id) => {
                    self.close_entry(&id, CloseReason::Evicted, ctx);
                }
                None => return Err(CreateError::Limit(self.config.max_sessions)),
            }
        }
        let core = msg.core.clone();
        let Some((arbiter, dispatcher)) = self
            .placements
            .get(self.next_arbiter % self.placements.len().max(1))
            .cloned()
        else {
            return Err(CreateError::ShuttingDown);
        };
        let running = Running::default();
        let registry = running.clone();
        let actor = match arbiter {
            Some(arbiter) => {
                SessionActor::start_in_arbiter(&arbiter, move |_| SessionActor::new(core, registry))
            }
            None => SessionActor::new(core, registry).start(),
        };
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        metrics::counter!("session_creation_total", "tenant" => msg.core.tenant_label())
            .increment(1);
        self.sessions.insert(
            msg.id.clone(),
            Entry {
                core: msg.core,
                actor: actor.clone(),
                running,
                dispatcher,
                quarantined: false,
            },
        );

        metrics::gauge!("sessions").set(self.sessions.len() as f64);
        let _ = self.events.send(EngineEvent::SessionCreated { id: msg.id });
        Ok(actor)
    }
}

/// Look up a live session: its id, and whether the lookup marks it used (a caller
/// about to send; reads such as stats do not, so polling never keeps a session from
/// being reaped).
pub struct Get<C>(pub String, pub bool, pub std::marker::PhantomData<C>);

/// A live session: its core (for stats) and its actor (for requests).
pub struct Found<C: SessionCore> {
    /// The session.
    pub core: C,
    /// Its actor.
    pub actor: Addr<SessionActor<C>>,
    /// Its running requests.
    pub running: Running,
    /// The dispatcher on its arbiter.
    pub dispatcher: Addr<Dispatcher<C>>,
    /// Quarantined after blocked responses.
    pub quarantined: bool,
}

impl<C: SessionCore> Message for Get<C> {
    type Result = Option<Found<C>>;
}

impl<C: SessionCore> Handler<Get<C>> for Supervisor<C> {
    type Result = Option<Found<C>>;

    fn handle(&mut self, msg: Get<C>, _: &mut Context<Self>) -> Option<Found<C>> {
        self.sessions.get(&msg.0).map(|e| {
            if msg.1 {
                // Looked up to be used: the reaper must not take it in the meantime.
                e.core.touch();
            }
            Found {
                core: e.core.clone(),
                actor: e.actor.clone(),
                running: e.running.clone(),
                dispatcher: e.dispatcher.clone(),
                quarantined: e.quarantined,
            }
        })
    }
}

/// Close a session (gracefully); false when there was none.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Close {
    /// Session id.
    pub id: String,
    /// Why.
    pub reason: CloseReason,
}

impl<C: SessionCore> Handler<Close> for Supervisor<C> {
    type Result = bool;

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) -> bool {
        self.close_entry(&msg.id, msg.reason, ctx)
    }
}

/// One page of the live sessions, from a cursor: each with its id and quarantine mark.
/// The caller asks page after page (the first from `0`) until the cursor comes
/// back `None`, and works out the stats itself, so the supervisor copies a few
/// thousand handles per message and never a million.
pub struct ListPage<C> {
    /// Where the page starts (a cursor from the page before, or 0).
    pub from: usize,
    /// At most this many sessions (bounded by [`WALK_STEP`]), except that a page is at
    /// least one shard of the table.
    pub limit: usize,
    /// The session type.
    pub sessions: std::marker::PhantomData<C>,
}

/// A page of sessions and where the next one starts.
pub type Page<C> = (Vec<(String, C, bool)>, Cursor);

impl<C: SessionCore> Message for ListPage<C> {
    type Result = Page<C>;
}

impl<C: SessionCore> Handler<ListPage<C>> for Supervisor<C> {
    type Result = MessageResult<ListPage<C>>;

    fn handle(&mut self, msg: ListPage<C>, _: &mut Context<Self>) -> Self::Result {
        let (taken, next) = self.sessions.step(msg.from, msg.limit.min(WALK_STEP));
        let page = taken
            .into_iter()
            .map(|(id, e)| (id.clone(), e.core.clone(), e.quarantined))
            .collect();
        MessageResult((page, next))
    }
}

/// Number of live sessions.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Count;

impl<C: SessionCore> Handler<Count> for Supervisor<C> {
    type Result = usize;

    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> usize {
        self.sessions.len()
    }
}

/// Run a reaping pass now, answered when the pass is over (tests, and `touch`-heavy
/// callers that want prompt reaping). The pass goes in steps like the periodic one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReapNow;

impl<C: SessionCore> Handler<ReapNow> for Supervisor<C> {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: ReapNow, ctx: &mut Context<Self>) -> Self::Result {
        let (done, over) = oneshot::channel();
        self.reap_step(0, Some(done), ctx);
        Box::pin(
            async move {
                // A shutdown that stops the pass drops `done`: that is over too.
                let _ = over.await;
            }
            .into_actor(self),
        )
    }
}

impl<C: SessionCore> Handler<MarkQuarantined> for Supervisor<C> {
    type Result = ();

    fn handle(&mut self, msg: MarkQuarantined, _: &mut Context<Self>) {
        if let Some(e) = self.sessions.get_mut(&msg.0) {
            e.quarantined = true;
        }
    }
}

/// Close every session gracefully and stop. Later creates are refused.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl<C: SessionCore> Handler<Shutdown> for Supervisor<C> {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let mut entries = Vec::with_capacity(self.sessions.len());
        for (id, entry) in self.sessions.drain() {
            if let Some(hook) = &self.on_close {
                hook(&entry.core, CloseReason::Shutdown);
            }
            entry.core.close();
            metrics::counter!("session_destruction_total", "reason" => "shutdown", "tenant" => entry.core.tenant_label()).increment(1);
            let _ = self.events.send(EngineEvent::SessionClosed {
                id,
                reason: CloseReason::Shutdown,
            });
            entries.push(entry);
        }
        let deadline = self.config.close_deadline;
        Box::pin(
            async move {
                futures_util::future::join_all(entries.into_iter().map(|e| drain(e, deadline)))
                    .await;
            }
            .into_actor(self)
            .map(|_, _, ctx: &mut Context<Self>| ctx.stop()),
        )
    }
}
