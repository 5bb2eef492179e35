//! The session trait the actors are generic over: what a session must offer to be
//! supervised, reaped, retried and broken. `mummer` implements it for its HTTP
//! `Session`; the tests implement it with fakes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::policy::Attempt;

/// A boxed future that can move between threads: a request runs either in the
/// caller's task or on its session's arbiter (see [`crate::system::RequestSite`]).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The tenant label of a session that names none ([`SessionCore::tenant_label`]'s
/// default; `requests_total` has compile-time keys for it).
pub const DEFAULT_TENANT: &str = "default";

/// A session the engine can run. Cheap to clone (clones share state), usable from any
/// thread.
pub trait SessionCore: Clone + Send + Sync + Unpin + 'static {
    /// One request, replayable: the retry actor sends the same value again.
    type Request: Clone + Send + 'static;
    /// A response.
    type Response: Send + 'static;
    /// A failure.
    type Error: std::fmt::Display + Send + 'static;
    /// The statistics `list` and `get` report.
    type Stats: Clone + Send + 'static;

    /// Performs one attempt of `request`. It is borrowed: the retry loop keeps the one
    /// value for every attempt, so a request that is answered the first time is never
    /// copied.
    ///
    /// Boxed on purpose: a session's request future is several kilobytes, and returned
    /// unboxed it is copied each time the retry loop's futures move it (measured:
    /// 55 000 more instructions per request under callgrind, against one allocation).
    fn execute(&self, request: &Self::Request) -> BoxFuture<Result<Self::Response, Self::Error>>;

    /// The session's statistics now (cheap: no I/O).
    fn stats(&self) -> Self::Stats;

    /// Requests running now; reaping never closes a session with one.
    fn in_flight(&self) -> usize;

    /// Time since the last request started (or the last [`SessionCore::touch`]).
    fn idle_time(&self) -> Duration;

    /// Marks the session used now: a caller that just looked it up is about to send.
    fn touch(&self);

    /// Refuses new requests and drops idle connections; running requests finish.
    fn close(&self);

    /// The tenant the session belongs to, as the `tenant` label of the session and
    /// request metrics (a shared string: labelling a request allocates nothing).
    fn tenant_label(&self) -> metrics::SharedString {
        metrics::SharedString::const_str(DEFAULT_TENANT)
    }

    /// The host a request targets (for per-host breakers and rate limits), borrowed
    /// from the request: the retry loop asks again after a re-authentication replaced
    /// the request, and copies it only into a dead letter or an event.
    fn target(request: &Self::Request) -> &str;

    /// Whether the request may be sent again (the retry rule): an idempotent method
    /// or an `Idempotency-Key` ([`crate::policy::is_idempotent`]), and a body that can
    /// be sent twice (a streamed one cannot).
    fn replayable(request: &Self::Request) -> bool;

    /// What an attempt produced, as the retry policy sees it.
    fn describe(result: &Result<Self::Response, Self::Error>) -> Attempt;
}
