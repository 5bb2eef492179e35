//! One exchange: [`Client::execute`] resolves a [`Request`]'s target, takes a pooled
//! connection or opens one, sends the request in the profile's header order and
//! decodes the body into a [`Response`]; `RequestBuilder<Client>::send` ends a
//! builder with it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Version};

use super::connect::{
    exchange_h1, exchange_h2, exchange_h3, open_connection, GiveBack, Outgoing, WireBody,
};
use super::pool::{give_back_h1, take_pooled_or_gate, Conn, OriginKey};
use super::response::{CacheStatus, Response, StreamingResponse, Timings};
use super::Client;
use crate::body::{Body, BodyStream};
use crate::decode::decode_body;
use crate::error::{Error, Result};
use crate::request::{Request, RequestBuilder, RequestUrl};

/// A request on a bare client: no cookies, cache or redirects.
pub type ClientRequest = RequestBuilder<Client>;

impl RequestBuilder<Client> {
    /// Performs the exchange.
    ///
    /// # Errors
    ///
    /// A malformed header given to the builder, and every transport failure, see
    /// [`Error`]'s `is_*` methods; the URL is attached.
    pub async fn send(self) -> Result<Response> {
        let (client, request, error) = self.into_parts();
        match error {
            Some(e) => Err(e.with_url(request.url())),
            None => client.execute(request).await,
        }
    }
}

impl RequestBuilder<Client> {
    /// Performs the exchange and returns as soon as the head has arrived; the body is
    /// read from the [`StreamingResponse`] as it comes.
    ///
    /// # Errors
    ///
    /// As `send`.
    pub async fn send_streaming(self) -> Result<StreamingResponse> {
        let (client, request, error) = self.into_parts();
        match error {
            Some(e) => Err(e.with_url(request.url())),
            None => client.execute_streaming(request).await,
        }
    }
}

impl Client {
    /// Performs one exchange of `request` and returns at its head; the body is read
    /// from the [`StreamingResponse`] as it arrives. The client's deadline bounds the
    /// head and then each wait for body bytes.
    ///
    /// # Errors
    ///
    /// As [`Client::execute`].
    pub async fn execute_streaming(&self, request: Request) -> Result<StreamingResponse> {
        // The same switch as a session's (the client has no cache to leave out).
        let response = self.execute(request.into_streaming()).await?;
        Ok(StreamingResponse::from_response(response))
    }

    /// Performs one exchange of `request`: the target is resolved, a pooled
    /// connection taken or one opened, the request sent in the profile's header order
    /// and the body decoded. The request's options are a session's (see
    /// [`crate::RequestOptions`]) and are not read here.
    ///
    /// # Errors
    ///
    /// Every transport failure, see [`Error`]'s `is_*` methods; the URL is attached.
    pub async fn execute(&self, request: Request) -> Result<Response> {
        let url = request.url().to_owned();
        let timeout = self.inner.config.timeout;
        let fut = send_inner(self, request);
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
                Err(Error::timeout(format!("after {limit:?} (total deadline)")))
            }),
            None => fut.await,
        };
        result.map_err(|e| e.with_url(&url))
    }
}

/// The exchange under [`Client::execute`]'s deadline.
async fn send_inner(client: &Client, request: Request) -> Result<Response> {
    let started = Instant::now();
    let target = match &request.url {
        RequestUrl::Parsed(url) => Target::from_url(url, url.as_str())?,
        RequestUrl::Text(text) => Target::parse(text)?,
    };
    let client = &client.inner;
    let config = &client.config;
    let template = config.profile.template(request.kind);
    let mut extra = request.headers;
    if let Some(len) = request.body.as_ref().and_then(Body::len) {
        if !extra.iter().any(|(n, _)| n == http::header::CONTENT_LENGTH) {
            extra.push((http::header::CONTENT_LENGTH, HeaderValue::from(len)));
        }
    }
    let mut priority = template.priority;
    if let Some(p) = request.options.priority {
        // The request's own priority: its header in the template's place (or none),
        // its weight in the HEADERS frame.
        priority.weight = p.http2_weight;
        extra.retain(|(n, _)| n != "priority");
        if let Some(Ok(v)) = p.header_value().map(|v| HeaderValue::from_str(&v)) {
            extra.push((http::HeaderName::from_static("priority"), v));
        }
    }
    let mut headers = client
        .templates
        .get(&request.kind)
        .map(|t| t.render(&extra))
        .unwrap_or(extra);
    if request
        .options
        .priority
        .is_some_and(|p| p.header_value().is_none())
    {
        headers.retain(|(n, _)| n != "priority");
    }
    let mut timings = Timings::default();

    // A pooled connection, or else a new one. Opening one is boxed: its futures
    // (dial, TLS and HTTP/2 handshakes) made up a quarter of the request future
    // but run once per connection, while a long session's requests reuse one; a
    // smaller request future is cheaper to move and to allocate.
    let key = target.key();
    let (pooled, dial_permit) = take_pooled_or_gate(client, &key, target.https).await;
    let conn = match pooled {
        Some(conn) => {
            client
                .counters
                .connections_reused
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("connections_reused_total").increment(1);
            conn
        }
        None => {
            Box::pin(open_connection(
                client,
                &target,
                &key,
                template.priority,
                dial_permit,
                &mut timings,
            ))
            .await?
        }
    };
    let outgoing = Outgoing {
        method: &request.method,
        headers: &headers,
        body: request.body.as_ref(),
        streaming: request.stream_body,
        priority,
    };
    let (status, version, resp_headers, body, tls) = match conn {
        Conn::H2(conn, info) => {
            let ex = exchange_h2(&conn, &target, outgoing, config, &mut timings).await?;
            (ex.status, Version::HTTP_2, ex.headers, ex.body, Some(info))
        }
        Conn::H3(conn, info) => {
            let ex = Box::pin(exchange_h3(&conn, &target, outgoing, config, &mut timings)).await?;
            (ex.status, Version::HTTP_3, ex.headers, ex.body, Some(info))
        }
        Conn::H1(conn, info) => {
            let pool = client.clone();
            let tls = info.clone();
            let give_back: GiveBack = Box::new(move |conn| give_back_h1(&pool, key, conn, tls));
            // Boxed: the HTTP/1.1 exchange's future (head, streaming state) would
            // otherwise size every request's future, HTTP/2 ones included.
            let ex = Box::pin(exchange_h1(
                conn,
                &target,
                outgoing,
                config,
                &mut timings,
                give_back,
            ))
            .await?;
            (ex.status, Version::HTTP_11, ex.headers, ex.body, info)
        }
    };

    client.record_alt_svc(&target, &resp_headers);
    let content_encoding = resp_headers
        .iter()
        .filter(|(n, _)| n == http::header::CONTENT_ENCODING)
        .filter_map(|(_, v)| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let decoding = config.decode && !content_encoding.is_empty();
    let (body, raw_len, pending) = match body {
        WireBody::Full(body) => {
            let raw_len = body.len() as u64;
            let body = if decoding {
                decode_body(Vec::from(body), &content_encoding, config.max_decoded_body)?.into()
            } else {
                body
            };
            (body, raw_len, None)
        }
        WireBody::Open(chunks) => {
            // A stalled body is bounded like a stalled head: the total deadline
            // becomes the longest wait for each chunk.
            let chunks = match config.timeout {
                Some(limit) => crate::body::with_idle_timeout(chunks, limit),
                None => chunks,
            };
            let (chunks, limit) = if decoding {
                let codings = crate::decode::codings(&content_encoding)?;
                (
                    crate::body::decoded(chunks, codings),
                    config.max_decoded_body,
                )
            } else {
                (chunks, config.max_body)
            };
            (
                Bytes::new(),
                0,
                Some(Box::new(BodyStream::new(chunks, limit))),
            )
        }
    };
    timings.total = started.elapsed();
    let mut map = HeaderMap::with_capacity(resp_headers.len());
    for (n, v) in &resp_headers {
        map.append(n.clone(), v.clone());
    }
    Ok(Response {
        url: request.url.into_string(),
        status,
        version,
        headers: map,
        wire_headers: resp_headers,
        body,
        raw_body_len: raw_len,
        timings,
        tls,
        request_headers: headers,
        redirects: Vec::new(),
        cache: CacheStatus::NotUsed,
        attempts: 1,
        pending,
    })
}

/// A parsed request target.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) https: bool,
    pub(super) host: String,
    pub(super) port: u16,
    /// `host` or `host:port` when the port is not the scheme's default.
    pub(super) authority: String,
    pub(super) path: String,
    pub(super) uri: String,
}

impl Target {
    pub(super) fn parse(raw: &str) -> Result<Target> {
        let url = url::Url::parse(raw).map_err(|e| Error::invalid_url(raw, e))?;
        Target::from_url(&url, raw)
    }

    /// The target of `url` (`raw` as the caller wrote it, for errors).
    fn from_url(url: &url::Url, raw: &str) -> Result<Target> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(Error::invalid_url(
                    raw,
                    format!("scheme `{other}` is not supported"),
                ))
            }
        };
        // A domain or an IPv4 address is already written out in the URL as it is
        // wanted here (formatting an `Ipv4Addr` again cost 1 400 instructions per
        // request); only an IPv6 address loses its brackets.
        let host = match url.host() {
            Some(url::Host::Domain(_) | url::Host::Ipv4(_)) => {
                url.host_str().unwrap_or_default().to_string()
            }
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(Error::invalid_url(raw, "no host")),
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        // `host` or `host:port` as the URL writes them (an IPv6 address in brackets,
        // no default port), and the path with its query: slices of the parsed URL,
        // nothing formatted again.
        let authority = url[url::Position::BeforeHost..url::Position::AfterPort].to_string();
        let path = url[url::Position::BeforePath..url::Position::AfterQuery].to_string();
        let mut uri = String::with_capacity(url.scheme().len() + 3 + authority.len() + path.len());
        uri.push_str(url.scheme());
        uri.push_str("://");
        uri.push_str(&authority);
        uri.push_str(&path);
        Ok(Target {
            https,
            host,
            port,
            authority,
            path,
            uri,
        })
    }

    fn key(&self) -> OriginKey {
        (
            if self.https { "https" } else { "http" },
            self.host.clone(),
            self.port,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("https://A.test:8443/p?q=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            ("a.test", 8443, "a.test:8443", "/p?q=1")
        );
        let t = Target::parse("http://[::1]/").unwrap();
        assert_eq!((t.authority.as_str(), t.port), ("[::1]", 80));
        // Credentials and fragments stay out; the host is as the URL normalizes it.
        let t = Target::parse("https://u:p@[::1]:8443/a/b?x=%20#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str(), t.path.as_str()),
            ("::1", "[::1]:8443", "/a/b?x=%20")
        );
        assert_eq!(t.uri, "https://[::1]:8443/a/b?x=%20");
        let t = Target::parse("HTTPS://User@Example.TEST:443").unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str(), t.uri.as_str()),
            ("example.test", "example.test", "https://example.test/")
        );
        let t = Target::parse("http://127.000.0.1:8080/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("127.0.0.1", "127.0.0.1:8080")
        );
        assert!(Target::parse("ftp://x/").unwrap_err().is_invalid_url());
        assert!(Target::parse("not a url").unwrap_err().is_invalid_url());
        assert!(Target::parse("/relative").unwrap_err().is_invalid_url());
    }
}
