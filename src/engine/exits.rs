//! Proxy exits and rotations: the exit a session was given, counting each outcome
//! against its proxy, moving a session to a successor (on a failed or benched proxy,
//! after N requests or an age, on quarantine) and sending a request that failed at the
//! proxy again on the successor, so a dying proxy loses no request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mummer_actors::{EngineEvent, SessionRef};

use super::{Engine, Origin};
use crate::request::Request;

use crate::client::Response;
use crate::error::{Error, Result};
use crate::proxies::{Assignment, ProxyRouter, RotationPolicy};
use crate::session::Session;

/// Rotations by old session id: a second rotation of one session (a request that failed
/// at the proxy while the proxy's benching rotates everything on it) waits for the first
/// and gets the same successor; callers holding an old id can find the new one.
#[derive(Default)]
struct Rotations {
    by_old: HashMap<String, (Instant, Arc<tokio::sync::OnceCell<String>>)>,
}

impl Rotations {
    /// How long a finished rotation is remembered (to name the successor).
    const KEEP: Duration = Duration::from_secs(600);
    /// Past this many remembered rotations, finished ones older than [`Self::KEEP`]
    /// are forgotten.
    const PRUNE_ABOVE: usize = 1024;

    /// The rotation of `id`, started at `now` unless one is under way or done.
    fn of(&mut self, id: &str, now: Instant) -> Arc<tokio::sync::OnceCell<String>> {
        if self.by_old.len() > Self::PRUNE_ABOVE {
            self.by_old.retain(|_, (at, cell)| {
                !cell.initialized() || now.saturating_duration_since(*at) < Self::KEEP
            });
        }
        self.by_old
            .entry(id.to_owned())
            .or_insert_with(|| (now, Arc::default()))
            .1
            .clone()
    }

    /// The live successor of `id`, following rotations of rotations (at most 16).
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

/// The engine's proxy exits: the router (when the engine has pools), the exit of every
/// live session routed to a pool, and the rotations under way or done. Cheap to clone
/// (the state is shared). What needs no I/O is decided here, without proxies: which
/// sessions sit on an exit, the successor of an id, whether a rotation is known.
#[derive(Clone, Default)]
pub(super) struct Exits {
    router: Option<ProxyRouter>,
    live: Arc<Mutex<HashMap<String, Routed>>>,
    rotations: Arc<Mutex<Rotations>>,
}

impl Exits {
    pub(super) fn new(router: Option<ProxyRouter>) -> Exits {
        Exits {
            router,
            ..Exits::default()
        }
    }

    /// The proxy router, when the engine has pools.
    pub(super) fn router(&self) -> Option<&ProxyRouter> {
        self.router.as_ref()
    }

    fn live(&self) -> MutexGuard<'_, HashMap<String, Routed>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rotations(&self) -> MutexGuard<'_, Rotations> {
        self.rotations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `id`'s exit (before the session can take requests).
    pub(super) fn record(&self, id: &str, routed: &Routed) {
        self.live().insert(id.to_owned(), routed.clone());
    }

    /// The exit `id` is on and what it was routed by.
    pub(super) fn routed(&self, id: &str) -> Option<Routed> {
        self.live().get(id).cloned()
    }

    /// Forgets `id`'s exit and gives it back to its pool (the session closed, or never
    /// went live).
    pub(super) fn release(&self, id: &str) {
        let routed = self.live().remove(id);
        self.give_back(routed.as_ref());
    }

    /// Gives an exit that was assigned but never recorded back to its pool.
    pub(super) fn give_back(&self, routed: Option<&Routed>) {
        if let (Some(router), Some(r)) = (&self.router, routed) {
            router.release(&r.exit);
        }
    }

    /// The live sessions on `exit`'s proxy (its pool and slot), sorted.
    pub(super) fn sessions_on(&self, exit: &Assignment) -> Vec<String> {
        let mut ids: Vec<String> = self
            .live()
            .iter()
            .filter(|(_, r)| r.exit.pool == exit.pool && r.exit.slot == exit.slot)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The rotation of `id`: started at `now` unless one is under way or done.
    pub(super) fn rotation(&self, id: &str, now: Instant) -> Arc<tokio::sync::OnceCell<String>> {
        self.rotations().of(id, now)
    }

    /// The session that replaced `id` by rotation (following chains), if any.
    pub(super) fn successor(&self, id: &str) -> Option<String> {
        self.rotations().successor(id)
    }

    /// Whether `id` has a rotation under way or done.
    pub(super) fn rotation_known(&self, id: &str) -> bool {
        self.rotations().by_old.contains_key(id)
    }
}

/// A live session's exit and what it was routed by (kept for rotation).
#[derive(Clone, Debug)]
pub(super) struct Routed {
    pub(super) exit: Assignment,
    /// The pool's rotation policy (fixed for a pool's life), read once at assignment.
    pub(super) policy: RotationPolicy,
    pub(super) tenant: String,
    /// What the hash strategy hashes (the proxy key, else the tenant).
    pub(super) key: String,
}

impl Engine {
    /// Makes a freshly built session live on its exit (when it has one): the exit is
    /// recorded before the session can take requests, given back if it cannot go live,
    /// and reported ([`EngineEvent::ProxyAssigned`]) once it is live.
    pub(super) async fn go_live_routed(
        &self,
        built: Result<Session>,
        routed: Option<Routed>,
    ) -> Result<String> {
        let session = match built {
            Ok(s) => s,
            Err(e) => {
                self.exits.give_back(routed.as_ref());
                return Err(e);
            }
        };
        let id = session.id().to_string();
        if let Some(r) = &routed {
            self.exits.record(&id, r);
        }
        if let Err(e) = self.register(session, Origin::Created).await {
            if routed.is_some() {
                self.exits.release(&id);
            }
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
        self.exits.routed(id).map(|r| r.exit)
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
        let rotation = self.exits.rotation(id, Instant::now());
        // A failed rotation leaves the cell empty: the next caller tries again.
        rotation
            .get_or_try_init(|| self.rotate_once(id, reason))
            .await
            .cloned()
    }

    /// The session that replaced `id` by rotation (following chains), if any.
    pub fn successor(&self, id: &str) -> Option<String> {
        self.exits.successor(id)
    }

    pub(super) async fn rotate_once(&self, id: &str, reason: &str) -> Result<String> {
        let router = self.exits.router().ok_or_else(|| {
            Error::invalid_input(
                "this engine has no proxy pools: set them with EngineBuilder::proxies",
            )
        })?;
        let old = self.session(id).await?;
        let routed = self.exits.routed(id).ok_or_else(|| {
            Error::conflict(format!(
                "session {id} was not routed to a proxy pool; nothing to rotate"
            ))
        })?;
        let exit = router.assign_in(&routed.exit.pool, &routed.key, Some(routed.exit.slot))?;
        let settings = old.session().client().settings().proxy(exit.proxy.clone());
        let profile = old.session().client().shared_profile();
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
    pub(super) fn rotate_all_on(&self, exit: &Assignment, why: &str) {
        let ids = self.exits.sessions_on(exit);
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
        self.exits.router()
    }

    /// What the pools make of a request's outcome: it counts against the session's
    /// proxy, and the pool's [`RotationPolicy`](crate::proxies::RotationPolicy) may move
    /// the session. A request that failed at the proxy is sent again on the session's
    /// successor when it may be (idempotent method or `Idempotency-Key`), so a dying
    /// proxy loses no request; that answer is returned instead.
    pub(super) async fn after_request(
        &self,
        found: &SessionRef<Session>,
        outcome: Result<Response>,
        replay: Option<Request>,
    ) -> Result<Response> {
        let Some(router) = self.exits.router() else {
            return outcome;
        };
        let proxy_failure = outcome.as_ref().err().filter(|e| e.is_proxy());
        let routed = self.exits.routed(&found.id).map(|r| (r.exit, r.policy));
        let (exit, policy) = match routed {
            Some(routed) => routed,
            // Rotated away while this request ran (another request's failure, or the
            // proxy's benching): a failure at the proxy, or a refusal because the
            // rotation closed the session first (say, between two retries), goes to the
            // successor.
            None if outcome
                .as_ref()
                .is_err_and(|e| e.is_proxy() || e.is_closed())
                && self.exits.rotation_known(&found.id) =>
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
    /// [`Request::is_replayable`]) on `next`, the successor of `old`; `None` when
    /// there was nothing to send.
    pub(super) async fn replay(
        &self,
        old: &str,
        next: &str,
        request: Option<Request>,
    ) -> Option<Result<Response>> {
        let request = request?;
        tracing::info!(old = %old, new = %next, url = %request.url(), "sending a request that failed at the proxy again on the rotated session");
        let successor = match self.session(next).await {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let again = self
            .system
            .execute(&successor.0.found, request)
            .await
            .map_err(Error::from)
            .map(|done| done.response.with_attempts(done.attempts));
        if let (Some(router), Some(exit)) = (self.exits.router(), self.session_exit(next)) {
            self.note_exit(router, &exit, &again);
        }
        Some(again)
    }

    /// Rotates `id` in a task of its own (the request that made it due is answered
    /// meanwhile).
    pub(super) fn rotate_in_background(&self, id: &str, reason: String) {
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
    pub(super) fn note_exit(
        &self,
        router: &ProxyRouter,
        exit: &Assignment,
        outcome: &Result<Response>,
    ) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(pool: &str, slot: usize) -> Routed {
        Routed {
            exit: Assignment {
                pool: pool.into(),
                slot,
                proxy: crate::net::Proxy::parse(&format!("http://127.0.0.1:{}", 3000 + slot))
                    .unwrap(),
            },
            policy: RotationPolicy::default(),
            tenant: "acme".into(),
            key: "acme".into(),
        }
    }

    #[test]
    fn the_sessions_on_an_exit_are_those_of_its_pool_and_slot() {
        let exits = Exits::new(None);
        exits.record("b", &routed("eu", 1));
        exits.record("a", &routed("eu", 1));
        exits.record("c", &routed("eu", 2));
        exits.record("d", &routed("us", 1));
        assert_eq!(exits.sessions_on(&routed("eu", 1).exit), ["a", "b"]);
        assert_eq!(exits.routed("c").map(|r| r.exit.slot), Some(2));
        exits.release("a");
        assert_eq!(exits.sessions_on(&routed("eu", 1).exit), ["b"]);
        assert!(exits.routed("a").is_none());
    }

    #[test]
    fn a_rotation_is_shared_followed_through_chains_and_forgotten_late() {
        let start = Instant::now();
        let exits = Exits::new(None);
        let first = exits.rotation("s1", start);
        assert!(exits.rotation_known("s1") && !exits.rotation_known("s2"));
        // A second rotation of the same session gets the same cell.
        assert!(Arc::ptr_eq(&first, &exits.rotation("s1", start)));
        assert_eq!(exits.successor("s1"), None, "not finished yet");
        first.set("s2".into()).unwrap();
        exits.rotation("s2", start).set("s3".into()).unwrap();
        assert_eq!(exits.successor("s1").as_deref(), Some("s3"));
        assert_eq!(exits.successor("s2").as_deref(), Some("s3"));

        // Past PRUNE_ABOVE entries, finished rotations older than KEEP go; running
        // ones and recent ones stay.
        let mut rotations = Rotations::default();
        rotations.of("old", start).set("x".into()).unwrap();
        let _running = rotations.of("running", start);
        for i in 0..Rotations::PRUNE_ABOVE {
            rotations
                .of(&format!("recent-{i}"), start + Rotations::KEEP)
                .set("y".into())
                .unwrap();
        }
        let later = start + Rotations::KEEP + Duration::from_secs(1);
        rotations.of("trigger", later);
        assert!(
            !rotations.by_old.contains_key("old"),
            "finished and old: forgotten"
        );
        assert!(rotations.by_old.contains_key("running"));
        assert!(rotations.by_old.contains_key("recent-0"));
    }
}
