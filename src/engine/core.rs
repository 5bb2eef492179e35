//! The engine's glue to the actors: `impl SessionCore for Session` (the retry actor
//! carries a [`Request`], everything needed to send it again; what
//! an attempt is, how its outcome is described to the retry policy, what its target
//! host is), and the actors' errors as mummer's [`Error`].

use std::time::Duration;

use mummer_actors::policy::Attempt;
use mummer_actors::{ActorError, BoxFuture, SessionCore};

use crate::client::Response;
use crate::error::{EngineErrorKind, Error, Result};
use crate::request::{Request, RequestUrl};
use crate::session::{Session, SessionStats};

impl SessionCore for Session {
    type Request = Request;
    type Response = Response;
    type Error = Error;
    type Stats = SessionStats;

    fn execute(&self, r: &Request) -> BoxFuture<Result<Response>> {
        // The actor keeps its copy to send again; an attempt owns its own.
        Box::pin(Session::execute(self, r.clone()))
    }

    fn stats(&self) -> SessionStats {
        Session::stats(self)
    }

    fn in_flight(&self) -> usize {
        Session::in_flight(self)
    }

    fn idle_time(&self) -> Duration {
        Session::idle_time(self)
    }

    fn close(&self) {
        Session::close(self);
    }

    fn touch(&self) {
        Session::touch(self);
    }

    fn tenant_label(&self) -> metrics::SharedString {
        metrics::SharedString::from(self.tenant_shared())
    }

    fn target(r: &Request) -> &str {
        // `url` lower-cases the hosts of http and https URLs as it parses them.
        match &r.url {
            RequestUrl::Parsed(url) => url.host_str().unwrap_or(""),
            RequestUrl::Text(_) => "",
        }
    }

    fn replayable(r: &Request) -> bool {
        r.is_replayable()
    }

    fn describe(result: &Result<Response>) -> Attempt {
        match result {
            Ok(resp) => Attempt::Response {
                status: resp.status().as_u16(),
                retry_after: resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            },
            // Timeouts, refused or reset connections and broken streams may pass; bad
            // input, TLS refusals, proxies refusing credentials and body limits will not.
            Err(e) => Attempt::Failure {
                transient: e.is_timeout() || e.is_connect() || e.is_protocol(),
            },
        }
    }
}

/// The actors' errors as mummer's: a session's own error as it is, the engine's
/// refusals (limit, breaker, quarantine, shutdown, deadline) as engine error kinds (`Error::is_breaker_open` and the like).
impl From<ActorError<Error>> for Error {
    fn from(e: ActorError<Error>) -> Error {
        match e {
            ActorError::Session(e) => e,
            ActorError::SessionNotFound(id) => Error::session_not_found(&id),
            other @ ActorError::SessionLimit { .. } => {
                Error::engine(EngineErrorKind::Limit, other.to_string())
            }
            other @ ActorError::BreakerOpen { retry_in, .. } => {
                Error::engine(EngineErrorKind::Breaker, other.to_string()).with_retry_in(retry_in)
            }
            other @ ActorError::Quarantined(_) => {
                Error::engine(EngineErrorKind::Quarantined, other.to_string())
            }
            other @ ActorError::ShuttingDown => {
                Error::engine(EngineErrorKind::ShutDown, other.to_string())
            }
            other @ ActorError::Deadline(_) => {
                Error::engine(EngineErrorKind::Deadline, other.to_string())
            }
        }
    }
}
