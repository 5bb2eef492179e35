//! One request, whichever layer sends it: [`Request`] (method, URL, headers, body, kind
//! and options, everything needed to send it again) and [`RequestBuilder`], the one
//! builder that puts it together. The client, the session and the engine each start a
//! `RequestBuilder` on themselves and end it with their own `send`, which hands the
//! built `Request` to `Client::execute`, `Session::execute` or the engine's retry actor:
//! a request is put together once and carried as it is from the engine to the wire.
//!
//! The one parser of a header given as text ([`parse_header`]) and the URL as the
//! caller handed it over ([`RequestUrl`]) are here too, so each rule is written once.

use http::{HeaderName, HeaderValue, Method};

use crate::body::Body;
use crate::error::{Error, Result};
use crate::profile::RequestKind;

/// One request: method, URL, headers, body, [`RequestKind`] and [`RequestOptions`].
///
/// Built by a [`RequestBuilder`] (`client.get(url)`, `session.post(url)`,
/// `engine_session.request(method, url)`) or directly, and sent by `Client::execute`,
/// `Session::execute` or a builder's `send`. Cheap to clone: the body is shared.
///
/// ```
/// use mummer::{Request, RequestKind};
///
/// let mut request = Request::new(http::Method::GET, "https://example.test/api");
/// request.set_kind(RequestKind::Fetch);
/// request.headers_mut().push((http::header::ACCEPT, "application/json".parse().unwrap()));
/// assert_eq!(request.url(), "https://example.test/api");
/// ```
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) method: Method,
    /// Parsed when the request was made (a text that did not parse stays text and is
    /// reported when the request is sent): each layer reads the parsed URL, none
    /// parses it again.
    pub(crate) url: RequestUrl,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Option<Body>,
    pub(crate) kind: RequestKind,
    pub(crate) options: RequestOptions,
    /// Hand the body back as a stream (`send_streaming`) instead of buffering it.
    pub(crate) stream_body: bool,
}

/// How a session treats a request. A bare `Client` follows no redirects and has no
/// cache or navigation context, so it reads none of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestOptions {
    /// A navigation the user typed: no initiator, so `sec-fetch-site: none` and no
    /// `Referer` (default false: a link followed from the current document).
    pub typed: bool,
    /// Consult and fill the conditional cache (default true).
    pub use_cache: bool,
    /// Follow redirects up to the session's limit (default true); false returns them.
    pub follow_redirects: bool,
    /// This request's priority instead of its kind's (a page load gives each
    /// subresource the priority Chromium gives it): the `priority` header and the
    /// HTTP/2 weight.
    pub priority: Option<RequestPriority>,
}

/// A request's priority: RFC 9218's urgency and incremental flag (the `priority`
/// header) and the HTTP/2 HEADERS weight that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestPriority {
    /// `u=`: 0 (most urgent) to 7; 3 is the default.
    pub urgency: u8,
    /// `i`: the response is useful as it arrives (images), not only whole.
    pub incremental: bool,
    /// The HTTP/2 weight (1..=256).
    pub http2_weight: u16,
}

impl RequestPriority {
    /// Urgency and incremental flag as Chromium sends them, with the weight Chromium's
    /// `Spdy3PriorityToHttp2Weight` gives the urgency (255.9 / 7 per step below 7,
    /// truncated, plus 1: 256, 220, 183, 147, 110, 74, 37, 1).
    pub fn chromium(urgency: u8, incremental: bool) -> RequestPriority {
        let urgency = urgency.min(7);
        let steps = f32::from(7 - urgency);
        RequestPriority {
            urgency,
            incremental,
            http2_weight: (255.9f32 / 7.0 * steps) as u16 + 1,
        }
    }

    /// The `priority` header value (RFC 9218 section 4), `None` for the defaults
    /// (`u=3`, not incremental), which Chromium leaves out.
    pub fn header_value(self) -> Option<String> {
        match (self.urgency, self.incremental) {
            (3, false) => None,
            (3, true) => Some("i".into()),
            (u, false) => Some(format!("u={u}")),
            (u, true) => Some(format!("u={u}, i")),
        }
    }
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            typed: false,
            use_cache: true,
            follow_redirects: true,
            priority: None,
        }
    }
}

impl Request {
    /// A request for `url`, a navigation with default options. The URL is parsed now;
    /// one that does not parse is reported (as written) when the request is sent.
    pub fn new(method: Method, url: &str) -> Request {
        Request::with_url(method, RequestUrl::parse(url))
    }

    /// A request for a URL the caller already parsed.
    pub fn from_url(method: Method, url: url::Url) -> Request {
        Request::with_url(method, RequestUrl::Parsed(url))
    }

    fn with_url(method: Method, url: RequestUrl) -> Request {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: None,
            kind: RequestKind::Navigation,
            options: RequestOptions::default(),
            stream_body: false,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL: as serialized when it parsed, as written when it did not.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The caller's headers, in order. A name the profile's template knows takes the
    /// template's position when sent; others go after the template's, in this order.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// The caller's headers, to change.
    pub fn headers_mut(&mut self) -> &mut Vec<(HeaderName, HeaderValue)> {
        &mut self.headers
    }

    /// Adds a header given as text (see [`RequestBuilder::header`]).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the header when the name is not a token or
    /// the value holds a byte a header value may not; the request is unchanged then.
    pub fn push_header(&mut self, name: &str, value: &str) -> Result<()> {
        self.headers.push(parse_header(name, value)?);
        Ok(())
    }

    /// The body, if any.
    pub fn body(&self) -> Option<&Body> {
        self.body.as_ref()
    }

    /// Sets or removes the body.
    pub fn set_body(&mut self, body: Option<Body>) {
        self.body = body;
    }

    /// Whether it may be sent more than once: an idempotent method or an
    /// `Idempotency-Key` (the retry rule, `policy::is_idempotent`), and no body or one
    /// in memory.
    pub fn is_replayable(&self) -> bool {
        mummer_actors::policy::is_idempotent(
            self.method.as_str(),
            self.has_header("idempotency-key"),
        ) && self.body.as_ref().is_none_or(Body::is_replayable)
    }

    /// What the request is for: picks the profile's header template and priority.
    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// Sets the kind.
    pub fn set_kind(&mut self, kind: RequestKind) {
        self.kind = kind;
    }

    /// The options a session reads.
    pub fn options(&self) -> RequestOptions {
        self.options
    }

    /// The options, to change.
    pub fn options_mut(&mut self) -> &mut RequestOptions {
        &mut self.options
    }

    /// The request as `execute_streaming` sends it: the body handed back as it
    /// arrives, and the cache left out (a streamed answer is not stored, so no
    /// validators are sent for it).
    pub(crate) fn into_streaming(mut self) -> Request {
        self.stream_body = true;
        self.options.use_cache = false;
        self
    }

    /// Whether the caller named a header (case-insensitive, as header names are).
    pub(crate) fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }
}

/// A [`Request`] being put together on `T` (a `Client`, a `Session` or an
/// `EngineSession`); `T`'s `send` performs it. A malformed header is kept as the first
/// error and reported by `send` or [`RequestBuilder::build`], so a chain of setters
/// never needs a `?`.
#[derive(Debug)]
pub struct RequestBuilder<T> {
    target: T,
    request: Request,
    error: Option<Error>,
}

impl<T> RequestBuilder<T> {
    /// A builder sending `request` on `target`.
    pub(crate) fn new(target: T, request: Request) -> Self {
        RequestBuilder {
            target,
            request,
            error: None,
        }
    }

    /// Adds a header given as text. A name the profile's template knows takes the
    /// template's position; others go after the template's headers, in the order
    /// added. On a session, a caller's `referer`, `origin` or `sec-fetch-site`
    /// replaces the computed one, and a caller's `cookie` goes before the jar's.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match parse_header(name, value) {
            Ok(header) => self.request.headers.push(header),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds a header given as curl's `Name: value`.
    pub fn header_line(mut self, line: &str) -> Self {
        match line.split_once(':') {
            Some((n, v)) => self.header(n, v),
            None => {
                self.error.get_or_insert(Error::invalid_input(format!(
                    "invalid header `{line}`: expected `Name: value`"
                )));
                self
            }
        }
    }

    /// Adds a parsed header (see [`RequestBuilder::header`]).
    pub fn header_value(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.request.headers.push((name, value));
        self
    }

    /// Adds parsed headers, in order (see [`RequestBuilder::header`]).
    pub fn headers(mut self, headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Self {
        self.request.headers.extend(headers);
        self
    }

    /// Sets the body: bytes (which a 307/308 or a retry can send again) or a
    /// [`Body::wrap_stream`] (sent once).
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.request.body = Some(body.into());
        self
    }

    /// What the request is for: picks the profile's headers and priority, and on a
    /// session how the navigation context applies (a navigation replaces the current
    /// document).
    pub fn kind(mut self, kind: RequestKind) -> Self {
        self.request.kind = kind;
        self
    }

    /// Sends it with `priority` (its `priority` header and HTTP/2 weight) instead of
    /// its kind's.
    pub fn priority(mut self, priority: RequestPriority) -> Self {
        self.request.options.priority = Some(priority);
        self
    }

    /// The request, without sending it.
    ///
    /// # Errors
    ///
    /// The first malformed header given ([`Error::is_invalid_input`]).
    pub fn build(self) -> Result<Request> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.request),
        }
    }

    /// The target, the request and the first error met while building.
    pub(crate) fn into_parts(self) -> (T, Request, Option<Error>) {
        (self.target, self.request, self.error)
    }
}

/// Targets with a navigation context, a cache and redirects to follow: a `Session`
/// and an `EngineSession` (sealed).
pub trait SessionTarget: sealed::Sealed {}

pub(crate) mod sealed {
    /// Keeps [`super::SessionTarget`] to this crate's types.
    pub trait Sealed {}
}

impl<T: SessionTarget> RequestBuilder<T> {
    /// A navigation the user typed (no initiator: `sec-fetch-site: none`, no
    /// `Referer`), instead of a link followed from the current document.
    pub fn typed(mut self) -> Self {
        self.request.options.typed = true;
        self
    }

    /// Bypass the conditional cache for this request (no validators sent, nothing
    /// stored).
    pub fn no_cache(mut self) -> Self {
        self.request.options.use_cache = false;
        self
    }

    /// Return redirects instead of following them.
    pub fn no_redirects(mut self) -> Self {
        self.request.options.follow_redirects = false;
        self
    }
}

/// A header given as text, parsed: the name and value with surrounding whitespace
/// trimmed (as a header line would be read).
///
/// # Errors
///
/// [`Error::is_invalid_input`] naming the header when the name is not a token or the
/// value holds a byte a header value may not (a control character, a newline).
pub(crate) fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue)> {
    match (
        HeaderName::from_bytes(name.trim().as_bytes()),
        HeaderValue::from_str(value.trim()),
    ) {
        (Ok(n), Ok(v)) => Ok((n, v)),
        _ => Err(Error::invalid_input(format!(
            "invalid header `{name}: {value}`"
        ))),
    }
}

/// A request's URL as the caller handed it over: the text, or already parsed (then it
/// is not parsed again, and its text is the parsed URL's serialization, not a copy).
#[derive(Clone, Debug)]
pub(crate) enum RequestUrl {
    /// Not parsed yet: parsed when the request is sent, and reported as written if it
    /// does not parse.
    Text(String),
    /// Parsed by the caller.
    Parsed(url::Url),
}

impl RequestUrl {
    /// The URL's text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RequestUrl::Text(text) => text,
            RequestUrl::Parsed(url) => url.as_str(),
        }
    }

    /// `text` parsed now when it parses; kept as text otherwise (the error is reported
    /// when the request is sent).
    pub(crate) fn parse(text: &str) -> RequestUrl {
        match url::Url::parse(text) {
            Ok(url) => RequestUrl::Parsed(url),
            Err(_) => RequestUrl::Text(text.to_string()),
        }
    }

    /// The URL parsed (a copy when it already was).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_url`] naming the text as written.
    pub(crate) fn to_url(&self) -> Result<url::Url> {
        match self {
            RequestUrl::Parsed(url) => Ok(url.clone()),
            RequestUrl::Text(text) => {
                url::Url::parse(text).map_err(|e| Error::invalid_url(text, e))
            }
        }
    }

    /// The URL's text, owned (a parsed URL gives up its serialization: no copy).
    pub(crate) fn into_string(self) -> String {
        match self {
            RequestUrl::Text(text) => text,
            RequestUrl::Parsed(url) => url.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_trimmed_and_bad_ones_named() {
        let (n, v) = parse_header(" X-Test ", " a b ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-test", "a b"));
        for (name, value) in [("bad name", "v"), ("x", "line\nbreak"), ("", "v")] {
            let e = parse_header(name, value).unwrap_err();
            assert!(e.is_invalid_input() && e.to_string().contains(name), "{e}");
        }
    }
}
