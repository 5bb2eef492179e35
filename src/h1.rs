//! HTTP/1.1: the request head written byte for byte in the profile's order and case,
//! the response parsed with `httparse`, bodies framed by Content-Length, chunked coding
//! or connection close.
//!
//! Why not hyper's client connection: hyper 1 writes header names either all lower-case
//! or all Title-Case; the per-name case map it uses internally (`HeaderCaseMap`) is
//! private, and browsers mix both (`Host`, `User-Agent`, then `sec-ch-ua`). Writing the
//! head ourselves is the only way to be byte-exact; parsing stays with `httparse`, the
//! parser hyper itself uses.

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::error::{Error, Result};
use crate::net::Io;
use crate::profile::Http1Profile;

/// Largest response head (status line and headers) we accept.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response header fields we accept.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// One HTTP/1.1 connection, reusable while responses keep it alive.
pub(crate) struct H1Connection<S> {
    io: BufReader<S>,
}

/// A parsed response.
pub(crate) struct H1Exchange {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
    pub first_byte: Instant,
    /// The connection may carry another request.
    pub reusable: bool,
}

impl<S: Io> H1Connection<S> {
    pub fn new(io: S) -> Self {
        H1Connection {
            io: BufReader::with_capacity(16 * 1024, io),
        }
    }

    /// Writes the request and reads the response.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &mut self,
        method: &Method,
        authority: &str,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<&Bytes>,
        profile: &Http1Profile,
        max_body: u64,
    ) -> Result<H1Exchange> {
        let head = encode_head(
            method,
            authority,
            path,
            headers,
            body.map(|b| b.len()),
            profile,
        );
        let io = self.io.get_mut();
        io.write_all(&head).await.map_err(write_error)?;
        if let Some(body) = body {
            io.write_all(body).await.map_err(write_error)?;
        }
        io.flush().await.map_err(write_error)?;

        // Skip interim 1xx responses (100 Continue, 103 Early Hints).
        let (status, headers, keep_alive, first_byte) = loop {
            let raw = self.read_head().await?;
            let first_byte = Instant::now();
            let (status, headers, keep_alive) = parse_head(&raw)?;
            if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            break (status, headers, keep_alive, first_byte);
        };

        let framing = framing(method, status, &headers)?;
        let (body, delimited) = match framing {
            Framing::Empty => (Vec::new(), true),
            Framing::Length(n) => {
                if n > max_body {
                    return Err(too_large(max_body));
                }
                (self.read_exact_body(n).await?, true)
            }
            Framing::Chunked => (self.read_chunked(max_body).await?, true),
            Framing::UntilClose => (self.read_to_close(max_body).await?, false),
        };
        Ok(H1Exchange {
            status,
            headers,
            body,
            first_byte,
            reusable: keep_alive && delimited,
        })
    }

    async fn read_head(&mut self) -> Result<Vec<u8>> {
        let mut raw = Vec::with_capacity(1024);
        loop {
            let before = raw.len();
            let n = (&mut self.io)
                .take((MAX_HEAD_BYTES + 1 - raw.len()) as u64)
                .read_until(b'\n', &mut raw)
                .await
                .map_err(read_error)?;
            if n == 0 {
                return Err(if before == 0 {
                    Error::protocol("the server closed the connection without a response")
                } else {
                    Error::protocol("the connection closed in the middle of the response head")
                });
            }
            if raw.len() > MAX_HEAD_BYTES {
                return Err(Error::protocol(format!(
                    "response head is larger than {MAX_HEAD_BYTES} bytes"
                )));
            }
            if raw.ends_with(b"\r\n\r\n") || raw.ends_with(b"\n\n") {
                return Ok(raw);
            }
        }
    }

    async fn read_exact_body(&mut self, n: u64) -> Result<Vec<u8>> {
        let mut body = Vec::with_capacity(n.min(1 << 20) as usize);
        let got = (&mut self.io)
            .take(n)
            .read_to_end(&mut body)
            .await
            .map_err(read_error)?;
        if (got as u64) < n {
            return Err(Error::protocol(format!(
                "truncated body: the connection closed after {got} of {n} bytes (Content-Length)"
            )));
        }
        Ok(body)
    }

    async fn read_to_close(&mut self, max_body: u64) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        (&mut self.io)
            .take(max_body + 1)
            .read_to_end(&mut body)
            .await
            .map_err(read_error)?;
        if body.len() as u64 > max_body {
            return Err(too_large(max_body));
        }
        Ok(body)
    }

    async fn read_line(&mut self, what: &str) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        (&mut self.io)
            .take(MAX_CHUNK_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(read_error)?;
        if !line.ends_with(b"\n") {
            return Err(if line.len() >= MAX_CHUNK_LINE {
                Error::protocol(format!("{what} line is too long"))
            } else {
                Error::protocol(format!(
                    "truncated chunked body: the connection closed in a {what} line"
                ))
            });
        }
        Ok(line)
    }

    async fn read_chunked(&mut self, max_body: u64) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line("chunk size").await?;
            let text = std::str::from_utf8(&line)
                .map_err(|_| Error::protocol("chunk size line is not ASCII"))?;
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = parse_chunk_size(size_text)
                .ok_or_else(|| Error::protocol(format!("invalid chunk size `{size_text}`")))?;
            if size == 0 {
                // Trailers until the blank line; they are read and dropped.
                let mut trailer_bytes = 0usize;
                loop {
                    let line = self.read_line("trailer").await?;
                    trailer_bytes += line.len();
                    if trailer_bytes > MAX_HEAD_BYTES {
                        return Err(Error::protocol("chunked trailers are too large"));
                    }
                    if line == b"\r\n" || line == b"\n" {
                        return Ok(body);
                    }
                }
            }
            // Compared without adding: a peer's size near u64::MAX must not wrap past
            // the limit (hyper's CVE-2021-32714 was this).
            if size > max_body.saturating_sub(body.len() as u64) {
                return Err(too_large(max_body));
            }
            let chunk = self.read_exact_body(size).await.map_err(|_| {
                Error::protocol(format!(
                    "truncated chunked body: the connection closed inside a {size}-byte chunk"
                ))
            })?;
            body.extend_from_slice(&chunk);
            let end = self.read_line("chunk end").await?;
            if end != b"\r\n" && end != b"\n" {
                return Err(Error::protocol(
                    "chunk data is longer than its declared size",
                ));
            }
        }
    }
}

/// A chunk size: 1 to 16 hex digits, nothing else. `u64::from_str_radix` alone would
/// take a sign (`+5`), which no HTTP peer may send.
fn parse_chunk_size(text: &str) -> Option<u64> {
    let digits = text.trim_start_matches('0');
    if text.is_empty() || digits.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// A Content-Length: ASCII digits only (RFC 9110 §8.6), so `+5`, `-0` and ` 5` are
/// refused where `str::parse` would take the first; too many digits for a u64 too.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn write_error(e: std::io::Error) -> Error {
    Error::protocol(format!("writing the request failed: {e}"))
}

fn read_error(e: std::io::Error) -> Error {
    Error::protocol(format!("reading the response failed: {e}"))
}

fn too_large(limit: u64) -> Error {
    Error::body_too_large(format!(
        "response body is larger than the {limit}-byte limit"
    ))
}

/// The request head, in the profile's header order and case. `Host` and `Connection`
/// come first, as in every browser.
pub(crate) fn encode_head(
    method: &Method,
    authority: &str,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    body_len: Option<usize>,
    profile: &Http1Profile,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut put = |name: &str, value: &[u8]| {
        let wire = profile.header_case.get(name).map_or(name, String::as_str);
        out.extend_from_slice(wire.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    put("host", authority.as_bytes());
    put("connection", b"keep-alive");
    let mut has_length = false;
    for (name, value) in headers {
        let n = name.as_str();
        if n == "host" || n == "connection" || profile.drop_headers.iter().any(|d| d == n) {
            continue;
        }
        has_length |= n == "content-length";
        put(n, value.as_bytes());
    }
    if let (Some(len), false) = (body_len, has_length) {
        put("content-length", len.to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

type Head = (StatusCode, Vec<(HeaderName, HeaderValue)>, bool);

fn parse_head(raw: &[u8]) -> Result<Head> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    match resp.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::protocol("incomplete response head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::protocol(format!(
                "response has more than {MAX_HEADERS} header fields"
            )))
        }
        Err(e) => return Err(Error::protocol(format!("malformed response head: {e}"))),
    }
    let code = resp
        .code
        .ok_or_else(|| Error::protocol("response has no status code"))?;
    let status = StatusCode::from_u16(code)
        .map_err(|_| Error::protocol(format!("invalid status code {code}")))?;
    let version_11 = resp.version == Some(1);
    let mut headers = Vec::with_capacity(resp.headers.len());
    let mut keep_alive = version_11;
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| Error::protocol(format!("invalid header name `{}`", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| Error::protocol(format!("invalid value for header `{name}`")))?;
        if name == http::header::CONNECTION {
            let v = value.to_str().unwrap_or("").to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                keep_alive = false;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                keep_alive = true;
            }
        }
        headers.push((name, value));
    }
    Ok((status, headers, keep_alive))
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

fn framing(
    method: &Method,
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<Framing> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    let te = headers
        .iter()
        .filter(|(n, _)| n == http::header::TRANSFER_ENCODING)
        .filter_map(|(_, v)| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if !te.is_empty() {
        let last = te
            .rsplit(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        return Ok(if last == "chunked" {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length: Option<u64> = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n == http::header::CONTENT_LENGTH)
    {
        let n: u64 = v
            .to_str()
            .ok()
            .and_then(|s| parse_decimal(s.trim()))
            .ok_or_else(|| Error::protocol("invalid Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(Error::protocol("conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, RequestKind};

    #[test]
    fn head_uses_profile_case_and_order() {
        let p = Profile::named("chromium-156-linux").unwrap();
        let headers =
            crate::profile::render_headers(p.template(RequestKind::Navigation), &[]).unwrap();
        let head = encode_head(&Method::GET, "a.test", "/x?y", &headers, None, &p.http1);
        let text = String::from_utf8(head).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "GET /x?y HTTP/1.1");
        assert_eq!(lines[1], "Host: a.test");
        assert_eq!(lines[2], "Connection: keep-alive");
        assert!(lines[3].starts_with("sec-ch-ua: "));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("User-Agent: Mozilla/5.0")));
        assert!(
            !text.contains("priority"),
            "Chromium sends no priority header over HTTP/1.1"
        );
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn chunk_sizes_are_hex_digits_only() {
        assert_eq!(parse_chunk_size("1a"), Some(26));
        assert_eq!(parse_chunk_size("0"), Some(0));
        assert_eq!(parse_chunk_size("FFFFFFFFFFFFFFFF"), Some(u64::MAX));
        assert_eq!(
            parse_chunk_size("0000000000000000000001"),
            Some(1),
            "leading zeros"
        );
        for bad in ["", "+5", "-1", "0x10", "1 0", "10000000000000000", "g"] {
            assert_eq!(parse_chunk_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn framing_rules() {
        let cl =
            |v: &'static str| vec![(http::header::CONTENT_LENGTH, HeaderValue::from_static(v))];
        assert!(matches!(
            framing(&Method::GET, StatusCode::OK, &cl("5")).unwrap(),
            Framing::Length(5)
        ));
        assert!(matches!(
            framing(&Method::HEAD, StatusCode::OK, &cl("5")).unwrap(),
            Framing::Empty
        ));
        assert!(framing(&Method::GET, StatusCode::OK, &cl("x")).is_err());
        for bad in ["+5", "-0", "5 5", "0x5", "99999999999999999999999"] {
            assert!(
                framing(&Method::GET, StatusCode::OK, &cl(bad)).is_err(),
                "Content-Length: {bad}"
            );
        }
        let te = vec![(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, chunked"),
        )];
        assert!(matches!(
            framing(&Method::GET, StatusCode::OK, &te).unwrap(),
            Framing::Chunked
        ));
    }
}
