//! How an engine keeps its sessions in a store: which sessions it owns (with their lease
//! and last saved version), what waits to be written, and the background task that
//! saves on an interval, renews leases and writes what waited once the store is back.
//!
//! The rules:
//! - a session is saved on the interval (when it sent requests since its last save), on
//!   close (explicit, idle, evicted, quarantined, shutdown) and on demand;
//! - a snapshot is taken when it is written, not when it was asked for, so a closing
//!   session is written after its last request finished (or the close deadline passed);
//! - a store that fails is reported once ([`EngineEvent::StoreUnavailable`] and one
//!   warning), retried with backoff (0.2 s doubling to 10 s), and reported back
//!   ([`EngineEvent::StoreRecovered`]) when the waiting state is written;
//! - a lease that cannot be renewed because another worker took it closes the session
//!   without saving it ([`CloseReason::LeaseLost`]): the other worker's copy wins.
//!
//! Sessions are tracked here by their store key ([`crate::tenant::store_key`]: the id,
//! prefixed by the tenant outside the default one); events and the lost-lease hook get
//! the session id back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use mummer_actors::{CloseReason, EngineEvent};
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::session::{Session, SnapshotKey};
use crate::store::{Lease, SessionStore};

/// When the engine saves and how long its leases last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PersistSettings {
    /// Save sessions that sent requests since their last save this often.
    pub save_interval: Duration,
    /// Lease time to live; renewed every third of it.
    pub lease_ttl: Duration,
    /// How long a closing session's requests may run before it is written anyway.
    pub close_deadline: Duration,
}

/// A session this engine holds the lease of.
struct Owned {
    session: Session,
    version: u64,
    /// `None` while the store was unavailable when the session was created: taken
    /// when the store is back.
    lease: Option<Lease>,
    /// Requests sent when it was last saved.
    saved_requests: u64,
    /// Closed as quarantined: its identity is blocked, so its final write deletes it
    /// from the store instead of saving it for the next worker to restore.
    retire: bool,
}

#[derive(Default)]
struct State {
    owned: HashMap<String, Owned>,
    /// Live sessions to write.
    dirty: HashSet<String>,
    /// Closed sessions to write once, then release.
    closing: HashMap<String, Owned>,
    unavailable: bool,
    stopped: bool,
}

/// Called with the id (not the store key) of a session whose lease was lost.
pub(crate) type LostHook = Box<dyn Fn(String) + Send + Sync>;

/// An engine's link to its store.
pub(crate) struct Persister {
    store: Arc<dyn SessionStore>,
    key: Option<SnapshotKey>,
    settings: PersistSettings,
    state: Mutex<State>,
    /// Held while a snapshot is written: two writes of one session at once (an
    /// interval save and `save_session`) would both claim the next version.
    writing: tokio::sync::Mutex<()>,
    wake: Notify,
    events: OnceLock<broadcast::Sender<EngineEvent>>,
    on_lost: OnceLock<LostHook>,
}

/// What writing one session came to.
enum Written {
    Saved,
    /// Nothing to write (closed meanwhile, or lost).
    Skipped,
}

impl Persister {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        key: Option<SnapshotKey>,
        settings: PersistSettings,
    ) -> Persister {
        Persister {
            store,
            key,
            settings,
            state: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            events: OnceLock::new(),
            on_lost: OnceLock::new(),
        }
    }

    /// Connects the persister to its engine (events, and closing sessions whose lease
    /// was lost).
    pub(crate) fn attach(&self, events: broadcast::Sender<EngineEvent>, on_lost: LostHook) {
        let _ = self.events.set(events);
        let _ = self.on_lost.set(on_lost);
    }

    pub(crate) fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub(crate) fn key(&self) -> Option<&SnapshotKey> {
        self.key.as_ref()
    }

    pub(crate) fn lease_ttl(&self) -> Duration {
        self.settings.lease_ttl
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section is a few map operations.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, event: EngineEvent) {
        if let Some(events) = self.events.get() {
            let _ = events.send(event);
        }
    }

    /// Starts tracking a session this engine now owns (`version` as loaded, 0 for a
    /// new one).
    pub(crate) fn adopt(&self, id: String, session: Session, version: u64, lease: Option<Lease>) {
        let saved_requests = session.stats().request_count;
        let mut st = self.lock();
        if lease.is_none() {
            // Made while the store was away: written as soon as it is back.
            st.dirty.insert(id.clone());
        }
        st.owned.insert(
            id,
            Owned {
                session,
                version,
                lease,
                saved_requests,
                retire: false,
            },
        );
    }

    /// Forgets a session that never went live (its creation failed) and frees its
    /// lease.
    pub(crate) async fn abandon(&self, id: &str) {
        let owned = self.lock().owned.remove(id);
        if let Some(lease) = owned.and_then(|o| o.lease) {
            let _ = self.store.release(&lease).await;
        }
    }

    /// The close hook: the session is written once its requests are done, then its
    /// lease is released. A lost lease writes nothing.
    pub(crate) fn closing(&self, id: &str, reason: CloseReason) {
        let mut st = self.lock();
        st.dirty.remove(id);
        if let Some(mut owned) = st.owned.remove(id) {
            if reason != CloseReason::LeaseLost {
                owned.retire = reason == CloseReason::Quarantined;
                st.closing.insert(id.to_string(), owned);
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Waits until a closed session's final write and lease release are done, up to
    /// `within`; gives up at once while the store is unavailable (the write stays
    /// queued). True when it was settled.
    pub(crate) async fn settled(&self, id: &str, within: Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        loop {
            {
                let st = self.lock();
                if !st.closing.contains_key(id) {
                    return true;
                }
                if st.unavailable {
                    return false;
                }
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Writes `id` now.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`] (the state waits in memory and is written when
    /// the store is back), [`Error::is_store_conflict`] (another worker saved a newer
    /// version), [`Error::is_session_not_found`] when this engine does not own `id`.
    pub(crate) async fn save_now(&self, id: &str) -> Result<u64> {
        match self.write(id).await {
            Ok(Written::Saved) => Ok(self.version(id)),
            Ok(Written::Skipped) => Err(Error::session_not_found(id)),
            Err(e) => {
                if e.is_store_unavailable() {
                    self.lock().dirty.insert(id.to_string());
                    self.wake.notify_one();
                }
                Err(e)
            }
        }
    }

    fn version(&self, id: &str) -> u64 {
        let st = self.lock();
        st.owned
            .get(id)
            .or_else(|| st.closing.get(id))
            .map_or(0, |o| o.version)
    }

    /// Writes one session's current state as its next version.
    async fn write(&self, id: &str) -> Result<Written> {
        // A closing session: let its last requests land their cookies first (before
        // taking the writer lock, so other sessions' saves do not wait for it).
        let closing = self.lock().closing.get(id).map(|o| o.session.clone());
        if let Some(session) = closing {
            let started = Instant::now();
            while session.in_flight() > 0 && started.elapsed() < self.settings.close_deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let _one_writer = self.writing.lock().await;
        let retire = self.lock().closing.get(id).is_some_and(|o| o.retire);
        if retire {
            // Deleting drops its lease too.
            self.store.delete(id).await?;
            self.lock().closing.remove(id);
            tracing::info!(
                session = id,
                "quarantined: deleted from the store, not saved (its identity is blocked)"
            );
            return Ok(Written::Skipped);
        }
        let (session, version, final_write) = {
            let st = self.lock();
            match (st.owned.get(id), st.closing.get(id)) {
                (Some(o), _) => (o.session.clone(), o.version, false),
                (None, Some(o)) => (o.session.clone(), o.version, true),
                (None, None) => return Ok(Written::Skipped),
            }
        };
        let requests = session.stats().request_count;
        let bytes = session.snapshot_bytes(self.key.as_ref())?;
        let next = version + 1;
        match self.store.save(id, next, &bytes).await {
            Ok(()) => {}
            Err(e) if e.is_store_conflict() => {
                tracing::warn!(session = id, error = %e, "a newer copy of the session is in the store; this one is dropped");
                let lost = {
                    let mut st = self.lock();
                    st.dirty.remove(id);
                    st.closing.remove(id);
                    st.owned.contains_key(id)
                };
                if lost {
                    self.lost(id);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        let release = {
            let mut st = self.lock();
            if final_write {
                // The entry stays in `closing` until its lease is released, so
                // `settled` (and so shutdown) returns only once another worker can
                // check the session out.
                st.closing.get_mut(id).and_then(|o| o.lease.take())
            } else if let Some(o) = st.owned.get_mut(id) {
                o.version = next;
                o.saved_requests = requests;
                None
            } else {
                // It closed while this (live) snapshot was written: its final write,
                // with what its last requests brought, is still to come.
                if let Some(o) = st.closing.get_mut(id) {
                    o.version = next;
                }
                None
            }
        };
        if let Some(lease) = release {
            if let Err(e) = self.store.release(&lease).await {
                tracing::debug!(session = id, error = %e, "lease not released; it expires by itself");
            }
        }
        if final_write {
            self.lock().closing.remove(id);
        }
        self.emit(EngineEvent::SessionSaved {
            id: crate::tenant::split_store_key(id).1.to_string(),
            version: next,
        });
        Ok(Written::Saved)
    }

    fn lost(&self, id: &str) {
        tracing::warn!(
            session = id,
            "the session's lease was lost; closing it without saving"
        );
        self.lock().owned.remove(id);
        if let Some(hook) = self.on_lost.get() {
            hook(crate::tenant::split_store_key(id).1.to_string());
        }
    }

    /// Writes everything that waits; stops at the first unavailable error.
    async fn write_waiting(&self) -> Result<usize> {
        let ids: Vec<String> = {
            let st = self.lock();
            st.closing.keys().chain(st.dirty.iter()).cloned().collect()
        };
        let mut written = 0;
        for id in ids {
            match self.write(&id).await {
                Ok(_) => {
                    self.lock().dirty.remove(&id);
                    written += 1;
                }
                Err(e) if e.is_store_unavailable() => return Err(e),
                Err(e) if e.is_store_conflict() => {}
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "cannot save the session");
                    let mut st = self.lock();
                    st.dirty.remove(&id);
                    st.closing.remove(&id);
                }
            }
        }
        Ok(written)
    }

    fn mark_changed(&self) {
        let mut st = self.lock();
        let changed: Vec<String> = st
            .owned
            .iter()
            .filter(|(_, o)| o.session.stats().request_count != o.saved_requests)
            .map(|(id, _)| id.clone())
            .collect();
        st.dirty.extend(changed);
    }

    async fn renew_leases(&self) {
        let (leases, missing): (Vec<Lease>, Vec<String>) = {
            let st = self.lock();
            let leases = st.owned.values().filter_map(|o| o.lease.clone()).collect();
            let missing = st
                .owned
                .iter()
                .filter(|(_, o)| o.lease.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            (leases, missing)
        };
        for id in missing {
            match self.store.acquire(&id, self.settings.lease_ttl).await {
                Ok(lease) => {
                    if let Some(o) = self.lock().owned.get_mut(&id) {
                        o.lease = Some(lease);
                    }
                }
                Err(e) if e.is_lease_held() => self.lost(&id),
                Err(_) => return,
            }
        }
        for lease in leases {
            match self.store.renew(&lease, self.settings.lease_ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    let still_ours = self.lock().owned.contains_key(&lease.id);
                    if still_ours {
                        self.lost(&lease.id);
                    }
                }
                Err(e) => {
                    tracing::debug!(session = %lease.id, error = %e, "lease renewal failed; retrying");
                    return;
                }
            }
        }
    }

    /// Reports a store failure seen outside the background task (once).
    pub(crate) fn note_unavailable(&self, e: &Error) {
        self.note(Some(e.to_string()));
    }

    fn note_result(&self, result: &Result<usize>) {
        self.note(result.as_ref().err().map(ToString::to_string));
    }

    /// Reports the store going away (`Some(error)`) or coming back (`None`), once each.
    fn note(&self, failure: Option<String>) {
        let mut st = self.lock();
        match failure {
            Some(e) if !st.unavailable => {
                st.unavailable = true;
                drop(st);
                tracing::warn!(store = %self.store.describe(), error = %e, "session store unavailable; keeping sessions in memory and retrying with backoff");
                self.emit(EngineEvent::StoreUnavailable {
                    store: self.store.describe(),
                    error: e,
                });
            }
            None if st.unavailable => {
                st.unavailable = false;
                drop(st);
                tracing::info!(store = %self.store.describe(), "session store reachable again; waiting sessions written");
                self.emit(EngineEvent::StoreRecovered {
                    store: self.store.describe(),
                });
            }
            _ => {}
        }
    }

    /// The background task: interval saves, lease renewals, retries with backoff.
    /// Ends after [`Persister::finish`].
    pub(crate) async fn run(self: Arc<Self>) {
        let renew_every = self.settings.lease_ttl / 3;
        let mut next_save = Instant::now() + self.settings.save_interval;
        let mut next_renew = Instant::now() + renew_every;
        let mut backoff: Option<Duration> = None;
        let mut retry_at = Instant::now();
        loop {
            let mut until = next_save.min(next_renew);
            if backoff.is_some() {
                until = until.min(retry_at);
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(until) => {}
            }
            if self.lock().stopped {
                return;
            }
            let now = Instant::now();
            if now >= next_save {
                self.mark_changed();
                next_save = now + self.settings.save_interval;
            }
            if now >= next_renew {
                self.renew_leases().await;
                next_renew = now + renew_every;
            }
            if backoff.is_some() && now < retry_at {
                continue;
            }
            let result = self.write_waiting().await;
            self.note_result(&result);
            match result {
                Ok(_) => backoff = None,
                Err(_) => {
                    let next = backoff.map_or(Duration::from_millis(200), |b| {
                        (b * 2).min(Duration::from_secs(10))
                    });
                    backoff = Some(next);
                    retry_at = Instant::now() + next;
                }
            }
        }
    }

    /// At shutdown, after every session closed: stops the background task and writes
    /// what waits, retrying until `deadline`. Returns the ids that could not be written.
    pub(crate) async fn finish(&self, deadline: Duration) -> Vec<String> {
        self.lock().stopped = true;
        self.wake.notify_one();
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let result = self.write_waiting().await;
            self.note_result(&result);
            let left: Vec<String> = {
                let st = self.lock();
                st.closing.keys().chain(st.dirty.iter()).cloned().collect()
            };
            if left.is_empty() || started.elapsed() >= deadline {
                if !left.is_empty() {
                    tracing::error!(store = %self.store.describe(), sessions = ?left, "session store unavailable at shutdown; these sessions were not saved");
                }
                return left;
            }
            tokio::time::sleep(pause.min(deadline.saturating_sub(started.elapsed()))).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}
