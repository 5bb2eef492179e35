//! The engine's glue to the actors: [`EngineRequest`], the request the retry actor
//! carries (everything needed to send it again), `impl SessionCore for Session` (what
//! an attempt is, how its outcome is described to the retry policy, what its target
//! host is), and the actors' errors as mummer's [`Error`].

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use mummer_actors::policy::Attempt;
use mummer_actors::{ActorError, BoxFuture, SessionCore};

use crate::client::Response;
use crate::error::{EngineErrorKind, Error, Result};
use crate::profile::RequestKind;
use crate::request::RequestUrl;
use crate::session::{Session, SessionStats};

/// One request as the engine carries it: everything needed to send it again.
#[derive(Clone, Debug)]
pub struct EngineRequest {
    pub(super) method: Method,
    /// The URL, parsed once: the session sends it as it is, and its host names the
    /// target for breakers and rate limits. A text that did not parse stays text, and
    /// the session reports it when the request is sent.
    pub(super) url: RequestUrl,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) body: Option<Bytes>,
    pub(super) kind: RequestKind,
    pub(super) typed: bool,
    pub(super) no_cache: bool,
    pub(super) no_redirects: bool,
}

impl EngineRequest {
    /// The URL as the caller gave it (serialized, when it parsed).
    pub(super) fn url_text(&self) -> &str {
        self.url.as_str()
    }

    /// Whether it may be sent twice: an idempotent method, or an `Idempotency-Key`.
    pub(super) fn replayable(&self) -> bool {
        let (method, keyed) = <Session as SessionCore>::method(self);
        mummer_actors::policy::is_idempotent(method, keyed)
    }
}

impl SessionCore for Session {
    type Request = EngineRequest;
    type Response = Response;
    type Error = Error;
    type Stats = SessionStats;

    fn execute(&self, r: &EngineRequest) -> BoxFuture<Result<Response>> {
        let req = match &r.url {
            RequestUrl::Parsed(url) => self.request_parsed(r.method.clone(), url.clone()),
            RequestUrl::Text(text) => self.request(r.method.clone(), text),
        };
        let mut req = req.kind(r.kind);
        for (n, v) in &r.headers {
            req = req.header_value(n.clone(), v.clone());
        }
        if let Some(b) = &r.body {
            req = req.body(b.clone());
        }
        if r.typed {
            req = req.typed();
        }
        if r.no_cache {
            req = req.no_cache();
        }
        if r.no_redirects {
            req = req.no_redirects();
        }
        Box::pin(req.send())
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

    fn target(r: &EngineRequest) -> &str {
        // `url` lower-cases the hosts of http and https URLs as it parses them.
        match &r.url {
            RequestUrl::Parsed(url) => url.host_str().unwrap_or(""),
            RequestUrl::Text(_) => "",
        }
    }

    fn method(r: &EngineRequest) -> (&str, bool) {
        let keyed = r.headers.iter().any(|(n, _)| n == "idempotency-key");
        (r.method.as_str(), keyed)
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
