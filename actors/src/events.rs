//! Engine events: a broadcast stream anyone can subscribe to (the HTTP API streams it as
//! server-sent events). Slow subscribers miss events rather than slow the engine.

use std::time::Duration;

use serde::Serialize;

use crate::breaker::BreakerState;
use crate::policy::Class;

/// Why a session was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The caller closed it.
    Explicit,
    /// Idle past the idle timeout.
    Idle,
    /// Evicted to make room under the session limit.
    Evicted,
    /// Closed by the caller after quarantine.
    Quarantined,
    /// The engine shut down.
    Shutdown,
    /// Its store lease was lost (expired and taken by another worker): this worker
    /// must not use or save it any more.
    LeaseLost,
}

impl CloseReason {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Explicit => "explicit",
            CloseReason::Idle => "idle",
            CloseReason::Evicted => "evicted",
            CloseReason::Quarantined => "quarantined",
            CloseReason::Shutdown => "shutdown",
            CloseReason::LeaseLost => "lease_lost",
        }
    }
}

/// Something the engine did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    /// A session was created.
    SessionCreated {
        /// Session id.
        id: String,
    },
    /// A session was closed.
    SessionClosed {
        /// Session id.
        id: String,
        /// Why.
        reason: CloseReason,
    },
    /// A request will be retried.
    RetryScheduled {
        /// Session id.
        id: String,
        /// Target host.
        target: String,
        /// The attempt that just failed (1-based).
        attempt: usize,
        /// Wait before the next attempt.
        delay: Duration,
        /// Why it is retried.
        class: Class,
    },
    /// A breaker changed state.
    Breaker {
        /// `session:ID` or `host:NAME`.
        key: String,
        /// The new state.
        state: BreakerState,
    },
    /// A request failed for good and went to the dead-letter queue.
    DeadLettered {
        /// Session id.
        id: String,
        /// Target host.
        target: String,
        /// What happened.
        reason: String,
    },
    /// A request was not sent because the site's robots.txt disallows it.
    RobotsBlocked {
        /// Session id.
        id: String,
        /// The URL.
        url: String,
    },
    /// A session was quarantined (blocked responses); it takes no more requests.
    Quarantined {
        /// Session id.
        id: String,
        /// What happened.
        reason: String,
    },
    /// A session's snapshot was written to the store.
    SessionSaved {
        /// Session id.
        id: String,
        /// The version written.
        version: u64,
    },
    /// The session store failed; the state waits in memory and is written when the
    /// store is back.
    StoreUnavailable {
        /// The store.
        store: String,
        /// What failed.
        error: String,
    },
    /// The store is reachable again; what waited has been written.
    StoreRecovered {
        /// The store.
        store: String,
    },
    /// A session was given its exit from a proxy pool (once, at creation).
    ProxyAssigned {
        /// Session id.
        id: String,
        /// The session's tenant.
        tenant: String,
        /// The pool.
        pool: String,
        /// The proxy (credentials masked).
        proxy: String,
    },
    /// A session was replaced by a fresh one on another exit (new cookies, new TLS
    /// tickets); the old one was drained and closed.
    SessionRotated {
        /// The closed session.
        old_id: String,
        /// Its replacement.
        new_id: String,
        /// The old exit (credentials masked).
        old_proxy: String,
        /// The new exit.
        new_proxy: String,
        /// Why.
        reason: String,
    },
}
