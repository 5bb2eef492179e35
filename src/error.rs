//! The crate's one error type.
//!
//! [`Error`] wraps a private kind and answers questions (`is_timeout()`, `is_connect()`,
//! `is_tls()`, ...) so callers branch on what happened, never on message text. The
//! message names the thing that failed and, where there is one, the fix.

use std::fmt;
use std::time::Duration;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Engine failures that map onto an error kind.
#[derive(Clone, Copy, Debug)]
pub(crate) enum EngineErrorKind {
    Limit,
    Breaker,
    Quarantined,
    ShutDown,
    Deadline,
}

/// Everything that can go wrong in mummer.
pub struct Error {
    kind: Kind,
    message: String,
    url: Option<String>,
    /// When trying again is worth it (open breaker, robots.txt unavailable).
    retry_in: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What kind of failure an [`Error`] is. Private: use the `is_*` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    UnknownProfile,
    InvalidProfile,
    InvalidInput,
    Conflict,
    InvalidUrl,
    Dns,
    Connect,
    Proxy,
    Tls,
    Timeout,
    Protocol,
    BodyTooLarge,
    Decode,
    Io,
    Closed,
    Redirect,
    Snapshot,
    SessionNotFound,
    SessionLimit,
    BreakerOpen,
    Quarantined,
    RobotsDisallowed,
    RobotsUnavailable,
    StoreUnavailable,
    StoreConflict,
    LeaseHeld,
    NoHealthyProxy,
    DestinationRefused,
}

impl Error {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            url: None,
            retry_in: None,
            source: None,
        }
    }

    pub(crate) fn with_retry_in(mut self, retry_in: Duration) -> Self {
        self.retry_in = Some(retry_in);
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(crate) fn with_url(mut self, url: impl fmt::Display) -> Self {
        self.url = Some(url.to_string());
        self
    }

    pub(crate) fn unknown_profile(name: &str, closest: Vec<String>) -> Self {
        Error::new(
            Kind::UnknownProfile,
            format!(
                "unknown profile `{name}`; closest: {} (run `mummer profiles` for the full list, or pass a profile file)",
                closest.join(", ")
            ),
        )
    }

    pub(crate) fn invalid_profile(origin: String, detail: String) -> Self {
        Error::new(
            Kind::InvalidProfile,
            format!("invalid profile {origin}: {detail}"),
        )
    }

    pub(crate) fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(Kind::InvalidInput, message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Error::new(Kind::Conflict, message)
    }

    pub(crate) fn invalid_url(url: &str, why: impl fmt::Display) -> Self {
        Error::new(
            Kind::InvalidUrl,
            format!("invalid URL `{url}`: {why} (expected an absolute http:// or https:// URL)"),
        )
    }

    pub(crate) fn dns(host: &str, why: impl fmt::Display) -> Self {
        Error::new(
            Kind::Dns,
            format!("cannot resolve `{host}`: {why} (check the name, or pin it with --resolve HOST:PORT:ADDR)"),
        )
    }

    pub(crate) fn connect(target: impl fmt::Display, why: impl fmt::Display) -> Self {
        Error::new(Kind::Connect, format!("cannot connect to {target}: {why}"))
    }

    pub(crate) fn proxy(proxy: impl fmt::Display, why: impl fmt::Display) -> Self {
        Error::new(Kind::Proxy, format!("proxy {proxy}: {why}"))
    }

    pub(crate) fn tls(host: &str, why: impl fmt::Display) -> Self {
        Error::new(
            Kind::Tls,
            format!("TLS handshake with `{host}` failed: {why}"),
        )
    }

    pub(crate) fn timeout(what: impl fmt::Display) -> Self {
        Error::new(Kind::Timeout, format!("timed out {what}"))
    }

    pub(crate) fn protocol(why: impl fmt::Display) -> Self {
        Error::new(Kind::Protocol, format!("protocol error: {why}"))
    }

    pub(crate) fn body_too_large(what: impl fmt::Display) -> Self {
        Error::new(Kind::BodyTooLarge, what.to_string())
    }

    pub(crate) fn decode(why: impl fmt::Display) -> Self {
        Error::new(
            Kind::Decode,
            format!("cannot decode the response body: {why}"),
        )
    }

    pub(crate) fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        Error::new(Kind::Io, format!("{what}: {e}")).with_source(e)
    }

    pub(crate) fn closed(what: impl fmt::Display) -> Self {
        Error::new(
            Kind::Closed,
            format!("{what} is closed; create a new session (or restore its snapshot) to go on"),
        )
    }

    pub(crate) fn session_not_found(id: &str) -> Self {
        Error::new(Kind::SessionNotFound, format!("session not found: {id}"))
    }

    pub(crate) fn engine(kind: EngineErrorKind, message: impl Into<String>) -> Self {
        Error::new(
            match kind {
                EngineErrorKind::Limit => Kind::SessionLimit,
                EngineErrorKind::Breaker => Kind::BreakerOpen,
                EngineErrorKind::Quarantined => Kind::Quarantined,
                EngineErrorKind::ShutDown => Kind::Closed,
                EngineErrorKind::Deadline => Kind::Timeout,
            },
            message,
        )
    }

    pub(crate) fn robots_disallowed(url: &str) -> Self {
        Error::new(
            Kind::RobotsDisallowed,
            format!(
                "robots.txt disallows {url} (turn robots.txt off in the engine to fetch it anyway)"
            ),
        )
    }

    pub(crate) fn robots_unavailable(
        origin: &str,
        why: impl fmt::Display,
        retry_in: Duration,
    ) -> Self {
        Error::new(
            Kind::RobotsUnavailable,
            format!(
                "robots.txt of {origin} is unavailable ({why}); nothing there is fetched until it is read (RFC 9309), next try in {} s",
                retry_in.as_secs_f64().ceil()
            ),
        )
        .with_retry_in(retry_in)
    }

    pub(crate) fn redirect(why: impl fmt::Display) -> Self {
        Error::new(Kind::Redirect, format!("redirect: {why}"))
    }

    pub(crate) fn store_unavailable(store: impl fmt::Display, why: impl fmt::Display) -> Self {
        Error::new(
            Kind::StoreUnavailable,
            format!("session store {store} is unavailable: {why} (the engine keeps the state in memory and writes it when the store is back)"),
        )
    }

    pub(crate) fn store_conflict(id: &str, stored: u64, attempted: u64) -> Self {
        Error::new(
            Kind::StoreConflict,
            format!("refused to save session {id} as version {attempted}: the store already holds version {stored} (another worker saved it since; check it out again instead of overwriting)"),
        )
    }

    pub(crate) fn lease_held(id: &str, detail: impl fmt::Display) -> Self {
        Error::new(
            Kind::LeaseHeld,
            format!("session {id} is leased by another worker ({detail}); it can be checked out once that worker releases it or its lease expires"),
        )
    }

    pub(crate) fn no_healthy_proxy(pool: &str, size: usize, back_in_secs: u64) -> Self {
        Error::new(
            Kind::NoHealthyProxy,
            format!("proxy pool `{pool}` has no healthy proxy: all {size} are benched after failures (the first is back in {back_in_secs} s); check the proxies, add some, or route elsewhere"),
        )
    }

    pub(crate) fn destination_refused(why: impl Into<String>) -> Self {
        Error::new(Kind::DestinationRefused, why)
    }

    pub(crate) fn snapshot(path: impl fmt::Display, why: impl fmt::Display) -> Self {
        Error::new(Kind::Snapshot, format!("session snapshot {path}: {why}"))
    }

    /// The destination policy refused every address of the host (loopback, private, the
    /// server's own port...): see [`crate::destination`]. Never retried.
    pub fn is_destination_refused(&self) -> bool {
        self.kind == Kind::DestinationRefused
    }

    /// Every proxy of the pool a session was routed to is benched.
    pub fn is_no_healthy_proxy(&self) -> bool {
        self.kind == Kind::NoHealthyProxy
    }

    /// No built-in profile or alias has the requested name.
    pub fn is_unknown_profile(&self) -> bool {
        self.kind == Kind::UnknownProfile
    }

    /// A profile file (or built-in) does not match the profile format.
    pub fn is_invalid_profile(&self) -> bool {
        self.kind == Kind::InvalidProfile
    }

    /// An argument from the caller is malformed (header, option, request kind).
    pub fn is_invalid_input(&self) -> bool {
        self.kind == Kind::InvalidInput
    }

    /// A well-formed request the current state cannot take: routes naming a pool that
    /// is not defined, rotating a session that no pool routes. Nothing was changed.
    pub fn is_conflict(&self) -> bool {
        self.kind == Kind::Conflict
    }

    /// The session store could not be reached (the state waits in memory).
    pub fn is_store_unavailable(&self) -> bool {
        self.kind == Kind::StoreUnavailable
    }

    /// A save was refused because the store holds a newer version.
    pub fn is_store_conflict(&self) -> bool {
        self.kind == Kind::StoreConflict
    }

    /// Another worker holds the session's lease.
    pub fn is_lease_held(&self) -> bool {
        self.kind == Kind::LeaseHeld
    }

    /// The URL cannot be requested (malformed, relative, unsupported scheme).
    pub fn is_invalid_url(&self) -> bool {
        self.kind == Kind::InvalidUrl
    }

    /// Name resolution failed.
    pub fn is_dns(&self) -> bool {
        self.kind == Kind::Dns
    }

    /// The TCP connection could not be established (refused, unreachable).
    pub fn is_connect(&self) -> bool {
        self.kind == Kind::Connect
    }

    /// The proxy refused the tunnel, the credentials, or spoke garbage.
    pub fn is_proxy(&self) -> bool {
        self.kind == Kind::Proxy
    }

    /// The TLS handshake failed (including certificate verification).
    pub fn is_tls(&self) -> bool {
        self.kind == Kind::Tls
    }

    /// A connect, TLS or total deadline passed.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// The peer broke HTTP (malformed or oversize headers, truncated body, reset).
    pub fn is_protocol(&self) -> bool {
        self.kind == Kind::Protocol
    }

    /// A body exceeded its limit (raw or decoded: a decompression bomb lands here).
    pub fn is_body_too_large(&self) -> bool {
        self.kind == Kind::BodyTooLarge
    }

    /// The body's Content-Encoding could not be decoded.
    pub fn is_decode(&self) -> bool {
        self.kind == Kind::Decode
    }

    /// The session (or engine) was closed before or during the call.
    pub fn is_closed(&self) -> bool {
        self.kind == Kind::Closed
    }

    /// A redirect could not be followed: too many, or a body that cannot be replayed.
    pub fn is_redirect(&self) -> bool {
        self.kind == Kind::Redirect
    }

    /// A session snapshot could not be read or written: corrupt, truncated, tampered,
    /// wrongly keyed, or from a newer version. The file is left as it was.
    pub fn is_snapshot(&self) -> bool {
        self.kind == Kind::Snapshot
    }

    /// The engine has no live session with that id (never created, closed or reaped).
    pub fn is_session_not_found(&self) -> bool {
        self.kind == Kind::SessionNotFound
    }

    /// The engine is at its session limit (`maximum sessions limit reached`).
    pub fn is_session_limit(&self) -> bool {
        self.kind == Kind::SessionLimit
    }

    /// A circuit breaker is open for the session or the target host and its next probe
    /// is beyond the request's deadline; the message starts with the last failure it
    /// counted (the real cause) and [`Error::retry_in`] says when the probe goes.
    pub fn is_breaker_open(&self) -> bool {
        self.kind == Kind::BreakerOpen
    }

    /// The session was quarantined after blocked responses (401, 403, a block page the
    /// block detector recognized).
    pub fn is_quarantined(&self) -> bool {
        self.kind == Kind::Quarantined
    }

    /// The site's robots.txt disallows the URL.
    pub fn is_robots_disallowed(&self) -> bool {
        self.kind == Kind::RobotsDisallowed
    }

    /// The site's robots.txt could not be read (5xx, unreachable): nothing on the site
    /// is fetched for now (RFC 9309 §2.3.1.3); [`Error::retry_in`] says when it is
    /// fetched again.
    pub fn is_robots_unavailable(&self) -> bool {
        self.kind == Kind::RobotsUnavailable
    }

    /// When trying again is worth it: the time until an open breaker lets a probe
    /// through, or until robots.txt is fetched again. `None` for other errors.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }

    /// The URL of the request that failed, if there was one.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("mummer::Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(url) = &self.url {
            d.field("url", url);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(url) = &self.url {
            write!(f, " ({url})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}
