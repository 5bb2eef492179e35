//! The engine: what a tokio program embeds to run many sessions. [`Engine`] is a cheap,
//! cloneable handle to an actor system (from `mummer-actors`) on its own threads: a
//! supervisor that creates, finds, lists, reaps and closes sessions, one actor per
//! session, and a retry/circuit-breaker actor in front of them.
//!
//! This module holds the [`Engine`] handle and its calls to the supervisor (create,
//! adopt, look up, list, close, reap, shut down). The rest is one file per role:
//!
//! | file | owns |
//! |---|---|
//! | `builder.rs` | [`EngineBuilder`] (every setting and `start()`) and [`SessionConfig`] |
//! | `core.rs` | the glue to the actors: `impl SessionCore for Session` (what an attempt is, how its outcome is classified, what its target host is) and the actors' errors as [`Error`] |
//! | `request.rs` | [`EngineSession`] and its `execute` (what [`EngineRequestBuilder`] sends with): a request through the engine, with the robots.txt gate |
//! | `exits.rs` | proxy exits and rotations: which exit a session has, moving it to a successor, replaying a request that failed at the proxy |
//! | `stored.rs` | the session store's lifecycle: checkout, restore, save |
//! | `audit.rs` | the audit trail's writer task |

mod audit;
mod builder;
mod core;
mod exits;
mod persist;
mod request;
mod stored;

use self::audit::AuditTask;
pub use self::builder::{
    BlockCheck, EngineBuilder, SessionConfig, BLOCK_CHECK_BYTES, MAX_STORE_PERIOD, MIN_STORE_PERIOD,
};
use self::exits::{Exits, Routed};
use self::request::Bound;
pub use self::request::{EngineRequestBuilder, EngineSession};

use std::sync::Arc;
use std::time::Duration;

use mummer_actors::dispatch::DeadLetter;
pub use mummer_actors::policy::Detected;
pub use mummer_actors::throttle::ThrottleConfig;
pub use mummer_actors::RequestSite;
use mummer_actors::{ActorSystem, CloseReason, EngineEvent, SystemConfig};
use tokio::sync::broadcast;

use self::persist::Persister;
use crate::error::{Error, Result};
use crate::robots::RobotsCache;
use crate::session::{Session, SessionStats};
use crate::store::Lease;
use crate::tls::TicketBackend;

pub use crate::tenant::DEFAULT_TENANT;

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
    /// Proxy pools, each live session's exit, rotations (see [`Engine::rotate_session`]).
    exits: Exits,
    /// The audit trail's writer task, when configured.
    audit: Option<Arc<AuditTask>>,
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
            #[cfg(feature = "redis")]
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
        let exit = match self.exits.router() {
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
                .exits
                .router()
                .map(|r| r.rotation(&exit.pool))
                .unwrap_or_default(),
            exit,
            key: config.proxy_key.unwrap_or_else(|| tenant.clone()),
            tenant,
        });
        self.go_live_routed(builder.build(), routed).await
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
            return Err(Error::from(e));
        }
        Ok(id)
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
                    None => Error::from(e),
                })
            }
        };
        Ok(EngineSession(Arc::new(Bound {
            engine: self.clone(),
            found,
        })))
    }

    /// Stats of every live session. At a million sessions that is a million entries
    /// at once; [`Engine::list_sessions_page`] gives them a page at a time.
    ///
    /// # Errors
    ///
    /// [`Error::is_closed`] after shutdown.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        let mut all = Vec::new();
        let mut cursor = Some(0);
        while let Some(from) = cursor {
            let (page, next) = self.list_sessions_page(from, usize::MAX).await?;
            all.extend(page);
            cursor = next;
        }
        Ok(all)
    }

    /// One page of [`Engine::list_sessions`]: from the cursor `from` (0 for the first
    /// page), the stats of at most `limit` sessions, and the cursor of the next page
    /// (`None` after the last one). A page never holds more than about a thousand
    /// sessions, and always at least one shard of the engine's table (about a 1024th
    /// of the sessions, so with a million sessions a page is about a thousand whatever
    /// `limit` says). Walking page by page sees every session that lives through the
    /// walk exactly once; the engine goes on serving between pages.
    ///
    /// # Errors
    ///
    /// [`Error::is_closed`] after shutdown.
    pub async fn list_sessions_page(
        &self,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<SessionInfo>, Option<usize>)> {
        let (page, next) = self
            .system
            .list_page(from, limit)
            .await
            .map_err(Error::from)?;
        let page = page
            .into_iter()
            .map(|(_, mut stats, quarantined)| {
                stats.quarantined = quarantined;
                stats
            })
            .collect();
        Ok((page, next))
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

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}
