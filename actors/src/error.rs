//! The actor layer's error: the cases callers branch on, plus the session's own error.

use std::time::Duration;

/// What can go wrong between the caller and a session. `E` is the session's own error.
#[derive(Debug, thiserror::Error)]
pub enum ActorError<E> {
    /// No live session has this id (never created, closed or reaped).
    #[error("session not found: {0}")]
    SessionNotFound(String),
    /// The session limit is reached and eviction is off (or nothing is idle).
    #[error("maximum sessions limit reached ({max}); close a session, raise max_sessions, or enable eviction")]
    SessionLimit {
        /// The limit.
        max: usize,
    },
    /// A breaker is open for the session or the target host, and its next probe is
    /// further away than the request's deadline.
    #[error("{cause} (circuit breaker open for {key}; next probe in {retry_in:?})")]
    BreakerOpen {
        /// `session:ID` or `host:NAME`.
        key: String,
        /// Time until a probe is let through: try again then.
        retry_in: Duration,
        /// The last failure the breaker counted (the real cause).
        cause: String,
    },
    /// The session was quarantined after blocked responses.
    #[error("session {0} is quarantined after blocked responses; close it and create another")]
    Quarantined(String),
    /// The engine is shutting down (or has shut down).
    #[error("the engine is shut down")]
    ShuttingDown,
    /// The request's deadline passed while waiting to retry.
    #[error("deadline of {0:?} passed")]
    Deadline(Duration),
    /// The session's own error (transport, protocol, ...), after retries if any.
    #[error("{0}")]
    Session(E),
}
