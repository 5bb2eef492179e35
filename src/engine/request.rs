//! A request through the engine: [`EngineSession`] (a live session's handle) and
//! [`EngineRequestBuilder`], whose `send` passes the robots.txt gate
//! (`EngineSession::robots_gate`) when the engine obeys robots.txt, then hands the
//! request to the retry actor and the outcome to the proxy exits.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use mummer_actors::rate::Rate;
use mummer_actors::{EngineEvent, SessionRef};

use super::{Engine, EngineRequest};

use crate::client::Response;
use crate::error::{Error, Result};
use crate::profile::RequestKind;
use crate::request::RequestUrl;
use crate::robots::RobotsCache;
use crate::session::{Session, SessionStats};

/// A live session of an engine: cheap to clone; requests go through the engine's retry
/// and breaker actor to the session's actor.
#[derive(Clone)]
pub struct EngineSession(pub(super) Arc<Bound>);

/// What an [`EngineSession`] handle shares: one reference count per clone, so building
/// a request (which keeps a handle) costs no more than an `Arc` clone.
pub(super) struct Bound {
    pub(super) engine: Engine,
    pub(super) found: SessionRef<Session>,
}

impl std::fmt::Debug for EngineSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSession")
            .field("id", &self.0.found.id)
            .finish_non_exhaustive()
    }
}

impl EngineSession {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.0.found.id
    }

    /// The session itself (stats, cookies, snapshots).
    pub fn session(&self) -> &Session {
        &self.0.found.core
    }

    /// The session's statistics now, `quarantined` included (the plain session's
    /// own stats cannot know it: quarantine is the engine's).
    pub fn stats(&self) -> SessionStats {
        let mut stats = self.0.found.core.stats();
        stats.quarantined = self.is_quarantined();
        stats
    }

    /// Whether the engine quarantined the session (a blocked answer: 401, 403, a
    /// block page). The answer that quarantined it is still returned to its caller,
    /// who can check here whether to try it again with another session.
    pub fn is_quarantined(&self) -> bool {
        self.0.engine.system.is_quarantined(&self.0.found.id)
    }

    /// Marks the session used now (the reaper measures idleness from here).
    pub fn touch(&self) {
        self.0.found.core.touch();
    }

    /// Starts a request (a navigation unless `kind` says otherwise).
    pub fn request(&self, method: Method, url: &str) -> EngineRequestBuilder {
        // An unparsable URL is kept as text; the session reports it when sent.
        let url = RequestUrl::parse(url);
        EngineRequestBuilder {
            session: self.clone(),
            request: EngineRequest {
                method,
                url,
                headers: Vec::new(),
                body: None,
                kind: RequestKind::Navigation,
                typed: false,
                no_cache: false,
                no_redirects: false,
            },
            error: None,
        }
    }

    /// Starts a GET.
    pub fn get(&self, url: &str) -> EngineRequestBuilder {
        self.request(Method::GET, url)
    }

    /// The robots.txt fetch: one typed GET outside the retry loop (no breaker,
    /// quarantine or dead letter sees its status), redirects returned, not followed
    /// (`robots` follows them by RFC 9309's rule).
    async fn fetch_robots(&self, url: String) -> Result<crate::robots::Fetched> {
        let mut request = self.get(&url).typed().no_cache().no_redirects().request;
        request.kind = RequestKind::Navigation;
        let response = self
            .0
            .engine
            .system
            .execute_once(&self.0.found, request)
            .await
            .map_err(Error::from)?;
        Ok(crate::robots::Fetched {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: response.body().clone(),
        })
    }

    /// The robots.txt gate: whether the engine's robots rules let this session fetch
    /// `url`, fetching the host's robots.txt first when the cache has no fresh copy. A
    /// fresh file's Crawl-delay becomes the host's rate before any request waiting for
    /// the same rules is let through (`rules_for` calls it under its fetch gate).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_url`], the robots-unavailable error (with how long the
    /// verdict holds) while robots.txt cannot be had, and the disallowed error
    /// (reported as [`EngineEvent::RobotsBlocked`] too).
    async fn robots_gate(&self, robots: &RobotsCache, url: &RequestUrl) -> Result<()> {
        let url = url.to_url()?;
        let engine = &self.0.engine;
        let apply_delay = |rules: &crate::robots::Rules| {
            if let (Some(delay), Some(host)) = (rules.crawl_delay(), url.host_str()) {
                engine
                    .system
                    .set_host_rate(host, Rate::per_second(1.0 / delay.as_secs_f64()));
            }
        };
        let (rules, _, holds_for) = robots
            .rules_for(
                &url,
                |robots_url| self.fetch_robots(robots_url),
                apply_delay,
            )
            .await;
        if let Some(why) = rules.unavailable() {
            return Err(Error::robots_unavailable(
                &url.origin().ascii_serialization(),
                why,
                holds_for,
            ));
        }
        if !rules.allows(url.as_str()) {
            engine.system.emit(EngineEvent::RobotsBlocked {
                id: self.0.found.id.clone(),
                url: url.to_string(),
            });
            return Err(crate::robots::disallowed(&url));
        }
        Ok(())
    }

    /// Starts a POST.
    pub fn post(&self, url: &str) -> EngineRequestBuilder {
        self.request(Method::POST, url)
    }
}

/// A request being put together on an engine session.
pub struct EngineRequestBuilder {
    session: EngineSession,
    request: EngineRequest,
    error: Option<Error>,
}

impl EngineRequestBuilder {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match crate::request::parse_header(name, value) {
            Ok(header) => self.request.headers.push(header),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds a header already parsed (see [`EngineRequestBuilder::header`]).
    pub fn header_value(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.request.headers.push((name, value));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.request.body = Some(body.into());
        self
    }

    /// The request kind.
    pub fn kind(mut self, kind: RequestKind) -> Self {
        self.request.kind = kind;
        self
    }

    /// A typed navigation (no initiator).
    pub fn typed(mut self) -> Self {
        self.request.typed = true;
        self
    }

    /// Skip the conditional cache.
    pub fn no_cache(mut self) -> Self {
        self.request.no_cache = true;
        self
    }

    /// Return redirects instead of following them.
    pub fn no_redirects(mut self) -> Self {
        self.request.no_redirects = true;
        self
    }

    /// Sends it through the engine (retries, breakers, quarantine).
    ///
    /// # Errors
    ///
    /// [`Error::is_breaker_open`], [`Error::is_quarantined`], [`Error::is_session_not_found`]
    /// (closed meanwhile), [`Error::is_closed`] (shut down), and the session's errors
    /// after retries.
    pub async fn send(self) -> Result<Response> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(robots) = &self.session.0.engine.robots {
            self.session.robots_gate(robots, &self.request.url).await?;
        }
        let engine = &self.session.0.engine;
        // With pools, a request that fails at the proxy may be sent again elsewhere.
        let replay = (engine.exits.router().is_some() && self.request.replayable())
            .then(|| self.request.clone());
        let outcome = engine
            .system
            .execute(&self.session.0.found, self.request)
            .await
            .map_err(Error::from)
            .map(|done| done.response.with_attempts(done.attempts));
        engine
            .after_request(&self.session.0.found, outcome, replay)
            .await
    }
}
