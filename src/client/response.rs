//! What a request gives back: [`Response`] (head, decoded body, timings, TLS details,
//! and what the session layer adds: redirects followed, cache status, attempts),
//! [`Timings`], [`Redirect`] and [`CacheStatus`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use crate::body::BodyStream;
use crate::tls::TlsInfo;

/// Where the time of one exchange went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Timings {
    /// Name resolution (zero on a pooled connection).
    #[serde(serialize_with = "as_micros")]
    pub dns: Duration,
    /// TCP connect and proxy tunnel (zero on a pooled connection).
    #[serde(serialize_with = "as_micros")]
    pub connect: Duration,
    /// TLS handshake (zero on a pooled connection).
    #[serde(serialize_with = "as_micros")]
    pub tls: Duration,
    /// From sending the request to the response head.
    #[serde(serialize_with = "as_micros")]
    pub first_byte: Duration,
    /// The whole exchange.
    #[serde(serialize_with = "as_micros")]
    pub total: Duration,
}

fn as_micros<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

/// A complete response: head, decoded body, timings and TLS details.
#[derive(Debug)]
pub struct Response {
    pub(super) url: String,
    pub(super) status: StatusCode,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    pub(super) wire_headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) body: Bytes,
    pub(super) raw_body_len: u64,
    pub(super) timings: Timings,
    pub(super) tls: Option<Arc<TlsInfo>>,
    pub(super) request_headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) redirects: Vec<Redirect>,
    pub(super) cache: CacheStatus,
    pub(super) attempts: usize,
    /// A streaming request's body, still arriving (`body` is empty then); `None` for
    /// a buffered one. Boxed: a buffered response, moved through several futures,
    /// pays for 8 bytes of it, not 56.
    pub(super) pending: Option<Box<BodyStream>>,
}

/// A response whose body is still arriving: the head now, the body as a
/// [`BodyStream`] (from `send_streaming` on a builder, or `execute_streaming`).
///
/// Streaming changes when the bytes are seen, not what is sent: the same request goes
/// out. A session does not cache a streamed response (nor send validators for it),
/// and an engine decides retries and quarantine from the status and headers alone.
#[derive(Debug)]
pub struct StreamingResponse {
    head: Response,
    body: BodyStream,
}

impl StreamingResponse {
    /// Splits a response into its head and its body, whether still arriving or whole.
    pub(crate) fn from_response(mut head: Response) -> StreamingResponse {
        let body = match head.pending.take() {
            Some(body) => *body,
            None => BodyStream::full(std::mem::take(&mut head.body)),
        };
        StreamingResponse { head, body }
    }

    /// Everything but the body: URL, status, headers, redirects, timings, TLS
    /// details (the head's own `body()` is empty).
    pub fn head(&self) -> &Response {
        &self.head
    }

    /// Status code.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// Response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The URL requested (after a session's redirects: the final URL).
    pub fn url(&self) -> &str {
        &self.head.url
    }

    /// The body, to read from.
    pub fn body_mut(&mut self) -> &mut BodyStream {
        &mut self.body
    }

    /// The next chunk of the body (see [`BodyStream::chunk`]).
    ///
    /// # Errors
    ///
    /// As [`BodyStream::chunk`].
    pub async fn chunk(&mut self) -> crate::Result<Option<Bytes>> {
        self.body.chunk().await
    }

    /// The head and the body, apart.
    pub fn into_parts(self) -> (Response, BodyStream) {
        (self.head, self.body)
    }

    /// The rest of the body read into a buffered [`Response`] (see
    /// [`BodyStream::bytes`] for the limit).
    ///
    /// # Errors
    ///
    /// As [`BodyStream::bytes`].
    pub async fn into_response(self) -> crate::Result<Response> {
        let mut head = self.head;
        head.body = self.body.bytes().await?;
        head.raw_body_len = head.body.len() as u64;
        Ok(head)
    }
}

/// One redirect a session followed on the way to a response.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Redirect {
    /// The URL that answered with a redirect.
    pub url: String,
    /// Its status (301, 302, 303, 307 or 308).
    pub status: u16,
}

/// How a session's conditional cache took part in a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// The cache was not consulted (a plain client, a non-GET, or the per-request switch).
    #[default]
    NotUsed,
    /// Nothing was stored for the URL; the request went out as is.
    Miss,
    /// A fresh stored response answered; no request left.
    Hit,
    /// The request carried validators and the server said 304; the stored 200 is returned.
    Revalidated,
    /// The request carried validators and the server said 304; no body was stored, so
    /// the 304 is returned.
    NotModified,
    /// The request carried validators and the server sent a new response.
    Modified,
}

impl Response {
    /// The URL requested (after a session's redirects: the final URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The redirects a session followed to get here, in order (empty for a plain client).
    pub fn redirects(&self) -> &[Redirect] {
        &self.redirects
    }

    /// Attempts the engine made for this response (1 without retries, and outside an
    /// engine).
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// A streaming request's body, still arriving.
    pub(crate) fn pending_mut(&mut self) -> Option<&mut BodyStream> {
        self.pending.as_deref_mut()
    }

    pub(crate) fn with_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts;
        self
    }

    /// How the session's conditional cache took part.
    pub fn cache_status(&self) -> CacheStatus {
        self.cache
    }

    pub(crate) fn with_session_details(
        mut self,
        url: String,
        redirects: Vec<Redirect>,
        cache: CacheStatus,
    ) -> Self {
        self.url = url;
        self.redirects = redirects;
        self.cache = cache;
        self
    }

    /// A response made from a cache entry, for `url`.
    pub(crate) fn from_cache(
        url: String,
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
        cache: CacheStatus,
    ) -> Self {
        let mut map = HeaderMap::with_capacity(headers.len());
        for (n, v) in &headers {
            map.append(n.clone(), v.clone());
        }
        Response {
            url,
            status,
            version: Version::HTTP_2,
            headers: map,
            wire_headers: headers,
            raw_body_len: body.len() as u64,
            body,
            timings: Timings::default(),
            tls: None,
            request_headers: Vec::new(),
            redirects: Vec::new(),
            cache,
            attempts: 1,
            pending: None,
        }
    }
    /// Status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// HTTP version used.
    pub fn version(&self) -> Version {
        self.version
    }
    /// Headers, for lookup.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// Headers in the order the server sent them.
    pub fn wire_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.wire_headers
    }
    /// The body, Content-Encoding undone.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Body bytes as received, before decoding.
    pub fn raw_body_len(&self) -> u64 {
        self.raw_body_len
    }
    /// Timings of the exchange.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }
    /// TLS details, for `https://`.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }
    /// The regular headers sent, in wire order (pseudo-headers and `host` excluded).
    pub fn request_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.request_headers
    }
}
