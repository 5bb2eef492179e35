//! The actor system a tokio program embeds: its own actix `System` on a dedicated thread,
//! one `Arbiter` (thread) per worker for the session actors, each with its own
//! dispatcher, and the supervisor on the system thread. Callers use [`ActorSystem`] from any tokio runtime:
//! every method is a message to an actor (`Addr::send` is `Send + Sync`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use actix::{Actor, Addr, AsyncContext};
use tokio::sync::broadcast;

use crate::breaker::{BreakerConfig, BreakerState};
use crate::core::SessionCore;
use crate::dispatch::{
    dispatch, BlockDetector, DeadLetter, DeadLetterSink, DeadLetters, Dispatch, DispatchContext,
    Dispatched, Dispatcher, Hooks, HostScope, OpenBreakers, ReauthHook, SharedState,
};
use crate::error::ActorError;
use crate::events::{CloseReason, EngineEvent};
use crate::policy::RetryPolicy;
use crate::rate::{Rate, RateLimits, SharedRateLimit};
use crate::registry::Cursor;
use crate::session_actor::{Aborted, Running, SessionActor};
use crate::supervisor::{
    Close, CloseHook, Count, Create, CreateError, Get, ListPage, Placement, ReapNow, Shutdown,
    Supervisor, SupervisorConfig,
};
use crate::throttle::ThrottleConfig;

/// Where a request's retry loop and attempts run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequestSite {
    /// In the task that called [`ActorSystem::execute`] (the default): no thread
    /// crossing on the request path, so a request costs what the plain session costs
    /// plus the breaker and rate checks. The attempt still registers with the session's
    /// actor, which can abort it when a close reaches its deadline, and the session's
    /// connections live on the caller's runtime.
    #[default]
    Caller,
    /// On the session's arbiter: the retry loop runs in the dispatcher there and each
    /// attempt is a message to the session actor. Two thread crossings per request
    /// (measured in `docs/benchmarks.md`), in exchange for keeping all network work on
    /// the engine's own threads, away from the caller's runtime.
    Arbiter,
}

/// How to start an [`ActorSystem`].
pub struct SystemConfig<C: SessionCore> {
    /// Arbiter threads for session actors (default: one per core). 0 puts them on the
    /// system thread.
    pub workers: usize,
    /// Where requests run (default: in the caller's task). Paused time forces
    /// [`RequestSite::Arbiter`], whose clock is the paused one.
    pub site: RequestSite,
    /// Registry settings.
    pub supervisor: SupervisorConfig,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Breaker settings.
    pub breaker: BreakerConfig,
    /// Rate limits per host and per session.
    pub rates: RateLimits,
    /// A per-host rate limit shared with other processes.
    pub shared_rate: Option<Arc<dyn SharedRateLimit>>,
    /// Re-authentication on 401/403, once per request and one at a time per session.
    pub reauth: Option<ReauthHook<C>>,
    /// A look at each answer that may call it a block page or a soft failure.
    pub block_detector: Option<BlockDetector<C>>,
    /// How hosts answering 429 are slowed down.
    pub throttle: ThrottleConfig,
    /// Called before a session closes.
    pub on_close: Option<CloseHook<C>>,
    /// Receives every dead letter as it is made (a durable queue).
    pub dead_letter_sink: Option<DeadLetterSink>,
    /// Whether host breakers, host rate limits and 429 throttles are kept per tenant
    /// (the default: one tenant cannot trip or slow another's traffic to a host) or
    /// shared by all tenants (one budget per host).
    pub host_scope: HostScope,
    /// Run the system thread's clock paused (tests: sleeps advance instantly when idle).
    /// Puts session actors on the system thread; needs the `paused-time` feature.
    pub paused_time: bool,
}

impl<C: SessionCore> Default for SystemConfig<C> {
    fn default() -> Self {
        SystemConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            site: RequestSite::default(),
            supervisor: SupervisorConfig::default(),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            rates: RateLimits::default(),
            shared_rate: None,
            reauth: None,
            block_detector: None,
            throttle: ThrottleConfig::default(),
            on_close: None,
            dead_letter_sink: None,
            host_scope: HostScope::default(),
            paused_time: false,
        }
    }
}

/// A running actor system.
pub struct ActorSystem<C: SessionCore> {
    supervisor: Addr<Supervisor<C>>,
    dispatcher: Addr<Dispatcher<C>>,
    /// For requests that run in the caller's task.
    context: DispatchContext<C>,
    site: RequestSite,
    events: broadcast::Sender<EngineEvent>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
}

/// A live session, as handed out by [`ActorSystem::session`].
pub struct SessionRef<C: SessionCore> {
    /// Its id.
    pub id: String,
    /// The session (for stats and cookies; requests go through the system).
    pub core: C,
    actor: Addr<SessionActor<C>>,
    running: Running,
    dispatcher: Addr<Dispatcher<C>>,
}

impl<C: SessionCore> Clone for SessionRef<C> {
    fn clone(&self) -> Self {
        SessionRef {
            id: self.id.clone(),
            core: self.core.clone(),
            actor: self.actor.clone(),
            running: self.running.clone(),
            dispatcher: self.dispatcher.clone(),
        }
    }
}

impl<C: SessionCore> ActorSystem<C> {
    /// Starts the system thread and the arbiters.
    ///
    /// # Errors
    ///
    /// The OS refusing a thread.
    pub fn start(config: SystemConfig<C>) -> std::io::Result<ActorSystem<C>> {
        let (events, _) = broadcast::channel(4096);
        let (tx, rx) = std::sync::mpsc::channel();
        let ev = events.clone();
        let site = if config.paused_time {
            RequestSite::Arbiter
        } else {
            config.site
        };
        let thread = std::thread::Builder::new()
            .name("mummer-actors".into())
            .spawn(move || {
                let paused = config.paused_time;
                let system = actix::System::with_tokio_rt(move || {
                    let mut b = tokio::runtime::Builder::new_current_thread();
                    b.enable_all();
                    #[cfg(feature = "paused-time")]
                    if paused {
                        b.start_paused(true);
                    }
                    b.build()
                        .unwrap_or_else(|e| panic!("cannot build the actor runtime: {e}"))
                });
                let workers: Vec<actix_rt::Arbiter> = (0..if paused { 0 } else { config.workers })
                    .map(|_| actix_rt::Arbiter::new())
                    .collect();
                let handles: Vec<actix_rt::ArbiterHandle> =
                    workers.iter().map(actix_rt::Arbiter::handle).collect();
                let SystemConfig {
                    supervisor: supervisor_config,
                    retry,
                    breaker,
                    rates,
                    shared_rate,
                    reauth,
                    block_detector,
                    throttle,
                    on_close,
                    dead_letter_sink,
                    host_scope,
                    ..
                } = config;
                let hooks = Hooks {
                    reauth,
                    detector: block_detector,
                };
                system.block_on(async move {
                    let shared = SharedState::new(retry, breaker, rates, ev.clone())
                        .with_shared_rate(shared_rate)
                        .with_throttle(throttle)
                        .with_dead_letter_sink(dead_letter_sink)
                        .with_host_scope(host_scope);
                    let (state, hook) = (shared.clone(), hooks.clone());
                    let forgetting = shared.clone();
                    // One dispatcher per arbiter, next to the sessions it serves.
                    let supervisor = Supervisor::create(move |ctx| {
                        let me = ctx.address();
                        let placements: Vec<Placement<C>> = if handles.is_empty() {
                            vec![(None, Dispatcher::new(state, hook, me.recipient()).start())]
                        } else {
                            handles
                                .into_iter()
                                .map(|h| {
                                    let (st, hk, sup) =
                                        (state.clone(), hook.clone(), me.clone().recipient());
                                    let d = Dispatcher::start_in_arbiter(&h, move |_| {
                                        Dispatcher::new(st, hk, sup)
                                    });
                                    (Some(h), d)
                                })
                                .collect()
                        };
                        Supervisor::new(supervisor_config, placements, ev, on_close)
                            .forgetting_in(forgetting)
                    });
                    // A dispatcher on the system thread for engine-wide calls (dead
                    // letters, breakers, host rates) and for stopping the system.
                    let control = Dispatcher::new(shared, hooks, supervisor.clone().recipient());
                    let context = control.context();
                    let _ = tx.send((supervisor, control.start(), context));
                });
                let _ = system.run();
                for w in workers {
                    w.stop();
                    let _ = w.join();
                }
            })?;
        let (supervisor, dispatcher, context) = rx
            .recv()
            .map_err(|_| std::io::Error::other("the actor system thread died while starting"))?;
        Ok(ActorSystem {
            supervisor,
            dispatcher,
            context,
            site,
            events,
            thread: Mutex::new(Some(thread)),
            stopped: AtomicBool::new(false),
        })
    }

    fn live(&self) -> Result<(), ActorError<C::Error>> {
        if self.stopped.load(Ordering::Acquire) {
            Err(ActorError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Registers `core` under `id` and starts its actor.
    ///
    /// # Errors
    ///
    /// [`ActorError::SessionLimit`] at the limit (unless eviction made room),
    /// [`ActorError::ShuttingDown`].
    pub async fn create(&self, id: String, core: C) -> Result<(), ActorError<C::Error>> {
        self.live()?;
        match self.supervisor.send(Create { id, core }).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(CreateError::Limit(max))) => Err(ActorError::SessionLimit { max }),
            Ok(Err(CreateError::Duplicate(id))) => Err(ActorError::SessionNotFound(format!(
                "{id} (an id that is already taken cannot be created again)"
            ))),
            Ok(Err(CreateError::ShuttingDown)) | Err(_) => Err(ActorError::ShuttingDown),
        }
    }

    /// The live session `id`, marked used (the caller is about to send on it).
    ///
    /// # Errors
    ///
    /// [`ActorError::SessionNotFound`] for a missing, closed or reaped id.
    pub async fn session(&self, id: &str) -> Result<SessionRef<C>, ActorError<C::Error>> {
        self.look_up(id, true).await
    }

    /// The live session `id`, not marked used: for reads (stats, cookies), which must
    /// not keep a session from being reaped.
    ///
    /// # Errors
    ///
    /// [`ActorError::SessionNotFound`] for a missing, closed or reaped id.
    pub async fn peek(&self, id: &str) -> Result<SessionRef<C>, ActorError<C::Error>> {
        self.look_up(id, false).await
    }

    async fn look_up(&self, id: &str, touch: bool) -> Result<SessionRef<C>, ActorError<C::Error>> {
        self.live()?;
        match self
            .supervisor
            .send(Get(id.to_string(), touch, std::marker::PhantomData))
            .await
        {
            Ok(Some(found)) => Ok(SessionRef {
                id: id.to_string(),
                core: found.core,
                actor: found.actor,
                running: found.running,
                dispatcher: found.dispatcher,
            }),
            Ok(None) => Err(ActorError::SessionNotFound(id.to_string())),
            Err(_) => Err(ActorError::ShuttingDown),
        }
    }

    /// Performs `request` on `session` with retries, breakers and rate limits, where
    /// the system's [`RequestSite`] says.
    ///
    /// # Errors
    ///
    /// Breaker, quarantine, deadline and shutdown errors, and the session's own error
    /// after retries.
    pub async fn execute(
        &self,
        session: &SessionRef<C>,
        request: C::Request,
    ) -> Result<Dispatched<C::Response>, ActorError<C::Error>> {
        self.live()?;
        if self.site == RequestSite::Caller {
            // Everything is borrowed from the caller's handle: the retry loop runs in
            // this task and nothing here outlives it.
            let (core, running) = (&session.core, &session.running);
            let attempt = |request: &C::Request| {
                let run = running.run(core.execute(request));
                async move { run.await.map_err(|Aborted| ActorError::ShuttingDown) }
            };
            return dispatch(&self.context, &session.id, core, request, attempt).await;
        }
        session
            .dispatcher
            .send(Dispatch {
                id: session.id.clone(),
                core: session.core.clone(),
                actor: session.actor.clone(),
                request,
            })
            .await
            .map_err(|_| ActorError::ShuttingDown)?
    }

    /// Performs one attempt of `request` on `session` outside the retry loop: no
    /// breaker, classification, quarantine or dead letter sees it (the robots.txt
    /// fetch, whose statuses mean something else). It waits for its host's rate limit
    /// like any request (the site sees it), runs where the system's [`RequestSite`]
    /// says, and is aborted by a close like any request.
    ///
    /// # Errors
    ///
    /// [`ActorError::Deadline`] when no rate slot came within the policy's deadline;
    /// shutdown, and the session's own error.
    pub async fn execute_once(
        &self,
        session: &SessionRef<C>,
        request: C::Request,
    ) -> Result<C::Response, ActorError<C::Error>> {
        self.live()?;
        let deadline = self.context.policy().deadline;
        if !self.context.host_slot(C::target(&request), deadline).await {
            return Err(ActorError::Deadline(deadline));
        }
        let result = if self.site == RequestSite::Caller {
            session
                .running
                .run(session.core.execute(&request))
                .await
                .map_err(|Aborted| ActorError::ShuttingDown)?
        } else {
            match session
                .actor
                .send(crate::session_actor::Execute(request))
                .await
            {
                Ok(Ok(result)) => result,
                Ok(Err(Aborted)) => return Err(ActorError::ShuttingDown),
                Err(_) => return Err(ActorError::SessionNotFound(session.id.clone())),
            }
        };
        result.map_err(ActorError::Session)
    }

    /// Whether the live session `id` is quarantined (a cheap check, no message).
    pub fn is_quarantined(&self, id: &str) -> bool {
        self.context.is_quarantined(id)
    }

    /// Closes `id` gracefully; false when it was not live.
    pub async fn close(&self, id: &str, reason: CloseReason) -> bool {
        let closed = self
            .supervisor
            .send(Close {
                id: id.to_string(),
                reason,
            })
            .await
            .unwrap_or(false);
        closed
    }

    /// Every live session: id, stats, quarantined. At a million sessions this is a
    /// million entries in one vector; [`ActorSystem::list_page`] gives them a page at
    /// a time.
    pub async fn list(&self) -> Result<Vec<(String, C::Stats, bool)>, ActorError<C::Error>> {
        let mut all = Vec::new();
        let mut cursor = Some(0);
        while let Some(from) = cursor {
            let (page, next) = self.list_page(from, usize::MAX).await?;
            all.extend(page);
            cursor = next;
        }
        Ok(all)
    }

    /// One page of the live sessions (id, stats, quarantined) from the cursor `from`
    /// (0 for the first page), and the cursor of the next page (`None` after the last).
    /// A page holds at most `limit` sessions and at most about a thousand, except that
    /// it always holds one whole shard of the table (about a 1024th of the sessions).
    /// A walk page by page sees every session that lives through it exactly once;
    /// sessions created or closed meanwhile may or may not be seen. A cursor past the
    /// end gives an empty last page.
    pub async fn list_page(
        &self,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<(String, C::Stats, bool)>, Cursor), ActorError<C::Error>> {
        self.live()?;
        if from >= crate::registry::SHARDS {
            return Ok((Vec::new(), None));
        }
        // The stats are worked out here: between two pages the supervisor answers
        // lookups and creates, and a session's stats (its lock, its strings) cost
        // this caller, not every caller waiting on the supervisor.
        let (page, next) = self
            .supervisor
            .send(ListPage {
                from,
                limit,
                sessions: std::marker::PhantomData,
            })
            .await
            .map_err(|_| ActorError::ShuttingDown)?;
        let page = page
            .into_iter()
            .map(|(id, core, quarantined)| (id, core.stats(), quarantined))
            .collect();
        Ok((page, next))
    }

    /// Number of live sessions.
    pub async fn count(&self) -> usize {
        self.supervisor.send(Count).await.unwrap_or(0)
    }

    /// Runs the reaper now.
    pub async fn reap_now(&self) {
        let _ = self.supervisor.send(ReapNow).await;
    }

    /// The dead-letter queue (drained when `drain`).
    pub async fn dead_letters(&self, drain: bool) -> Vec<DeadLetter> {
        self.dispatcher
            .send(DeadLetters { drain })
            .await
            .unwrap_or_default()
    }

    /// Breakers that are open or half-open.
    pub async fn open_breakers(&self) -> Vec<(String, BreakerState)> {
        self.dispatcher.send(OpenBreakers).await.unwrap_or_default()
    }

    /// Gives `host` its own rate (robots.txt `Crawl-delay`) unless the operator's limit
    /// is slower (the stricter wins), before the next request takes a slot.
    pub fn set_host_rate(&self, host: &str, rate: Rate) {
        self.context.set_host_rate(host, rate);
    }

    /// Publishes an event on the engine's stream (for layers above the actors, such as
    /// robots.txt).
    pub fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    /// A new subscription to the event stream.
    pub fn events(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    /// The sender of the event stream, for layers above the actors that publish their
    /// own events (session stores).
    pub fn event_sender(&self) -> broadcast::Sender<EngineEvent> {
        self.events.clone()
    }

    /// Closes every session gracefully (running requests get the close deadline), stops
    /// the actors and joins the threads. Calling it again does nothing.
    pub async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.supervisor.send(Shutdown).await;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            // Stopping the system returns `run()`; the thread then joins the arbiters.
            let system_stopper = StopSystem;
            let _ = self.dispatcher.send(system_stopper).await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl<C: SessionCore> Drop for ActorSystem<C> {
    fn drop(&mut self) {
        if !self.stopped.swap(true, Ordering::AcqRel) {
            self.dispatcher.do_send(StopSystem);
        }
    }
}

/// Stops the actix system (sent to the dispatcher, which lives on the system thread).
#[derive(actix::Message)]
#[rtype(result = "()")]
struct StopSystem;

impl<C: SessionCore> actix::Handler<StopSystem> for Dispatcher<C> {
    type Result = ();

    fn handle(&mut self, _: StopSystem, _: &mut actix::Context<Self>) {
        actix::System::current().stop();
    }
}
