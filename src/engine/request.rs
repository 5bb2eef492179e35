//! A request through the engine: [`EngineSession`] (a live session's handle) and its
//! `execute` (what [`EngineRequestBuilder`]'s `send` calls), which passes the
//! robots.txt gate (`EngineSession::robots_gate`) when the engine obeys robots.txt,
//! then hands the request to the retry actor and the outcome to the proxy exits.

use std::sync::Arc;

use http::Method;
use mummer_actors::rate::Rate;
use mummer_actors::{EngineEvent, SessionRef};

use super::Engine;

use crate::client::{Response, StreamingResponse};
use crate::error::{Error, Result};
use crate::request::{Request, RequestBuilder, RequestOptions, RequestUrl};
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

    /// Starts a request (a navigation unless `kind` says otherwise); `send` performs
    /// it through the engine.
    pub fn request(&self, method: Method, url: &str) -> EngineRequestBuilder {
        RequestBuilder::new(self.clone(), Request::new(method, url))
    }

    /// Starts a GET.
    pub fn get(&self, url: &str) -> EngineRequestBuilder {
        self.request(Method::GET, url)
    }

    /// The robots.txt fetch: one typed GET outside the retry loop (no breaker,
    /// quarantine or dead letter sees its status), redirects returned, not followed
    /// (`robots` follows them by RFC 9309's rule).
    async fn fetch_robots(&self, url: String) -> Result<crate::robots::Fetched> {
        let mut request = Request::new(Method::GET, &url);
        *request.options_mut() = RequestOptions {
            typed: true,
            use_cache: false,
            follow_redirects: false,
            priority: None,
        };
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

/// A request on an engine session; `send` performs it through the engine.
pub type EngineRequestBuilder = RequestBuilder<EngineSession>;

impl crate::request::sealed::Sealed for EngineSession {}
impl crate::request::SessionTarget for EngineSession {}

impl RequestBuilder<EngineSession> {
    /// Sends it through the engine: the robots.txt gate when the engine obeys
    /// robots.txt, then the retry actor (retries, breakers, rate limits, quarantine),
    /// then the proxy exits' verdict on the outcome.
    ///
    /// # Errors
    ///
    /// A malformed header given to the builder, [`Error::is_breaker_open`],
    /// [`Error::is_quarantined`], [`Error::is_session_not_found`] (closed meanwhile),
    /// [`Error::is_closed`] (shut down), and the session's errors after retries.
    pub async fn send(self) -> Result<Response> {
        let (session, request, error) = self.into_parts();
        if let Some(e) = error {
            return Err(e);
        }
        session.execute(request).await
    }
}

impl RequestBuilder<EngineSession> {
    /// Sends it through the engine as `send` does and returns at the final head; the
    /// body is read from the [`StreamingResponse`] (see
    /// [`EngineSession::execute_streaming`]).
    ///
    /// # Errors
    ///
    /// As `send`.
    pub async fn send_streaming(self) -> Result<StreamingResponse> {
        let (session, request, error) = self.into_parts();
        if let Some(e) = error {
            return Err(e);
        }
        session.execute_streaming(request).await
    }
}

impl EngineSession {
    /// Sends `request` through the engine and returns at the final head. Retries,
    /// breakers and quarantine decide from the status and headers (a block check that
    /// reads the body sees it empty); an attempt that is retried has its body dropped
    /// unread. The session is busy, and not reaped, until the body ends or is
    /// dropped; it is not cached.
    ///
    /// # Errors
    ///
    /// As `send`.
    pub async fn execute_streaming(&self, request: Request) -> Result<StreamingResponse> {
        let response = self.execute(request.into_streaming()).await?;
        Ok(StreamingResponse::from_response(response))
    }

    /// Loads the page at `url` as Chromium loads it (see [`crate::page`]), every request
    /// going through the engine's retries, breakers and rate limits.
    ///
    /// # Errors
    ///
    /// The document's failure; a subresource's is in its entry.
    pub async fn load_page(
        &self,
        url: &str,
        options: &crate::page::LoadOptions,
    ) -> Result<crate::page::PageLoad> {
        crate::page::load(self, url, options).await
    }

    /// Sends `request` through the engine (see `RequestBuilder<EngineSession>::send`).
    ///
    /// # Errors
    ///
    /// As `send`.
    pub async fn execute(&self, request: Request) -> Result<Response> {
        // Boxed: the engine's request future is about 5 KiB (robots gate, retry loop,
        // actor hops, the session's exchange), and every future that awaits this one
        // would otherwise carry it and copy all of it each time it is moved.
        Box::pin(self.execute_unboxed(request)).await
    }

    async fn execute_unboxed(&self, request: Request) -> Result<Response> {
        let engine = &self.0.engine;
        if let Some(robots) = &engine.robots {
            self.robots_gate(robots, &request.url).await?;
        }
        // With pools, a request that fails at the proxy may be sent again elsewhere.
        let replay =
            (engine.exits.router().is_some() && request.is_replayable()).then(|| request.clone());
        let outcome = engine
            .system
            .execute(&self.0.found, request)
            .await
            .map_err(Error::from)
            .map(|done| done.response.with_attempts(done.attempts));
        engine.after_request(&self.0.found, outcome, replay).await
    }
}
