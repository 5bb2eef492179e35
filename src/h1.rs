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

use http::{HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::body::{LengthCheck, SendBody};
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

/// A response head, with where its body stands.
pub(crate) struct H1Head {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The server did not ask to close the connection.
    pub keep_alive: bool,
    pub first_byte: Instant,
    pub body: BodyReader,
}

/// How much of a response body is still to be read, by its framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyReader {
    /// `Content-Length`: this many bytes to come.
    Length { remaining: u64 },
    /// Chunked: bytes left in the current chunk (0: a chunk-size line comes next).
    Chunked { in_chunk: u64 },
    /// Neither: the body ends when the connection does.
    UntilClose,
    /// Read to its end; `delimited` when the framing said where (the connection may
    /// carry another request then).
    Done { delimited: bool },
}

impl BodyReader {
    /// The body was read to an end the framing declared.
    pub fn delimited(&self) -> bool {
        matches!(self, BodyReader::Done { delimited: true })
    }
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

    /// Writes the request and reads the whole response (the body under `max_body`).
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &mut self,
        method: &Method,
        authority: &str,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<SendBody>,
        profile: &Http1Profile,
        max_body: u64,
    ) -> Result<H1Exchange> {
        let head = self
            .send_head(method, authority, path, headers, body, profile, max_body)
            .await?;
        let mut reader = head.body;
        let mut body = Vec::new();
        if let BodyReader::Length { remaining } = reader {
            body.reserve(remaining.min(1 << 20) as usize);
        }
        while self
            .read_body(&mut reader, &mut body, usize::MAX, max_body)
            .await?
        {}
        Ok(H1Exchange {
            status: head.status,
            headers: head.headers,
            body,
            first_byte: head.first_byte,
            reusable: head.keep_alive && reader.delimited(),
        })
    }

    /// Writes the request and reads the response head; the body is read after, with
    /// [`H1Connection::read_body`] and the returned [`BodyReader`]. A `Content-Length`
    /// over `max_body` is refused here, before any of it is read.
    #[allow(clippy::too_many_arguments)]
    pub async fn send_head(
        &mut self,
        method: &Method,
        authority: &str,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<SendBody>,
        profile: &Http1Profile,
        max_body: u64,
    ) -> Result<H1Head> {
        let request_framing = match &body {
            None => BodyFraming::None,
            Some(SendBody::Full(bytes)) => BodyFraming::Length(bytes.len() as u64),
            Some(SendBody::Stream(_, Some(len))) => BodyFraming::Length(*len),
            Some(SendBody::Stream(_, None)) => BodyFraming::Chunked,
        };
        let head = encode_head(method, authority, path, headers, request_framing, profile);
        let io = self.io.get_mut();
        io.write_all(&head).await.map_err(write_error)?;
        match body {
            None => {}
            Some(SendBody::Full(bytes)) => io.write_all(&bytes).await.map_err(write_error)?,
            Some(SendBody::Stream(mut chunks, len)) => {
                use futures_util::StreamExt;
                let chunked = len.is_none();
                let mut count = LengthCheck::new(len);
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk?;
                    if chunk.is_empty() {
                        continue;
                    }
                    count.add(chunk.len())?;
                    if chunked {
                        let size = format!("{:x}\r\n", chunk.len());
                        io.write_all(size.as_bytes()).await.map_err(write_error)?;
                    }
                    io.write_all(&chunk).await.map_err(write_error)?;
                    if chunked {
                        io.write_all(b"\r\n").await.map_err(write_error)?;
                    }
                }
                count.finish()?;
                if chunked {
                    io.write_all(b"0\r\n\r\n").await.map_err(write_error)?;
                }
            }
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
        let body = match framing(method, status, &headers)? {
            Framing::Empty => BodyReader::Done { delimited: true },
            Framing::Length(n) if n > max_body => return Err(too_large(max_body)),
            Framing::Length(0) => BodyReader::Done { delimited: true },
            Framing::Length(n) => BodyReader::Length { remaining: n },
            Framing::Chunked => BodyReader::Chunked { in_chunk: 0 },
            Framing::UntilClose => BodyReader::UntilClose,
        };
        Ok(H1Head {
            status,
            headers,
            keep_alive,
            first_byte,
            body,
        })
    }

    /// Appends the next piece of the body (at most `max` bytes, and never past
    /// `budget` bytes of body in all: `out.len()` counts as read) to `out`; false once
    /// the body has ended, true while more may follow.
    ///
    /// # Errors
    ///
    /// A body that would pass `budget` ([`Error::is_body_too_large`], decided from a
    /// declared chunk size before the chunk is read), a truncated body or a malformed
    /// chunked framing ([`Error::is_protocol`]).
    pub async fn read_body(
        &mut self,
        reader: &mut BodyReader,
        out: &mut Vec<u8>,
        max: usize,
        budget: u64,
    ) -> Result<bool> {
        // Buffering (no `max`) reads whole pieces, straight into `out`; streaming
        // hands on whatever has arrived.
        let exact = max == usize::MAX;
        let max = max as u64;
        match *reader {
            BodyReader::Done { .. } => Ok(false),
            BodyReader::Length { remaining } => {
                let got = self
                    .read_piece(remaining.min(max), exact, out)
                    .await
                    .map_err(|_| {
                        Error::protocol(format!(
                            "truncated body: the connection closed with {remaining} bytes of the Content-Length still to come"
                        ))
                    })?;
                let remaining = remaining - got;
                *reader = if remaining == 0 {
                    BodyReader::Done { delimited: true }
                } else {
                    BodyReader::Length { remaining }
                };
                Ok(remaining > 0)
            }
            BodyReader::UntilClose => {
                let room = budget.saturating_sub(out.len() as u64);
                let n = (&mut self.io)
                    .take(max.min(room.saturating_add(1)))
                    .read_to_end(out)
                    .await
                    .map_err(read_error)?;
                if out.len() as u64 > budget {
                    return Err(too_large(budget));
                }
                // `read_to_end` on a `take` stops at the cap or at EOF: EOF only when
                // it read less than it could.
                if (n as u64) < max.min(room.saturating_add(1)) {
                    *reader = BodyReader::Done { delimited: false };
                    return Ok(false);
                }
                Ok(true)
            }
            BodyReader::Chunked { in_chunk } => {
                let mut in_chunk = in_chunk;
                if in_chunk == 0 {
                    match self.read_chunk_size().await? {
                        None => {
                            *reader = BodyReader::Done { delimited: true };
                            return Ok(false);
                        }
                        Some(size) => {
                            // Compared without adding: a peer's size near u64::MAX must
                            // not wrap past the limit (hyper's CVE-2021-32714 was this).
                            if size > budget.saturating_sub(out.len() as u64) {
                                return Err(too_large(budget));
                            }
                            in_chunk = size;
                        }
                    }
                }
                let got = self
                    .read_piece(in_chunk.min(max), exact, out)
                    .await
                    .map_err(|_| {
                        Error::protocol(format!(
                            "truncated chunked body: the connection closed inside a {in_chunk}-byte chunk"
                        ))
                    })?;
                in_chunk -= got;
                if in_chunk == 0 {
                    let end = self.read_line("chunk end").await?;
                    if end != b"\r\n" && end != b"\n" {
                        return Err(Error::protocol(
                            "chunk data is longer than its declared size",
                        ));
                    }
                }
                *reader = BodyReader::Chunked { in_chunk };
                Ok(true)
            }
        }
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

    /// Appends `n` bytes to `out` when `exact`, else between 1 and `n` (what has
    /// arrived); how many. An error if the connection ends first.
    async fn read_piece(&mut self, n: u64, exact: bool, out: &mut Vec<u8>) -> Result<u64> {
        if exact || n == 0 {
            self.read_exact_into(n, out).await?;
            return Ok(n);
        }
        let arrived = self.io.fill_buf().await.map_err(read_error)?;
        if arrived.is_empty() {
            return Err(Error::protocol("truncated body"));
        }
        let take = arrived.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        out.extend_from_slice(&arrived[..take]);
        self.io.consume(take);
        Ok(take as u64)
    }

    /// Appends exactly `n` bytes to `out`; an error if the connection ends first.
    async fn read_exact_into(&mut self, n: u64, out: &mut Vec<u8>) -> Result<()> {
        let got = (&mut self.io)
            .take(n)
            .read_to_end(out)
            .await
            .map_err(read_error)?;
        if (got as u64) < n {
            return Err(Error::protocol("truncated body"));
        }
        Ok(())
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

    /// The next chunk's size, or `None` at the last chunk (whose trailers are read and
    /// dropped).
    async fn read_chunk_size(&mut self) -> Result<Option<u64>> {
        let line = self.read_line("chunk size").await?;
        let text = std::str::from_utf8(&line)
            .map_err(|_| Error::protocol("chunk size line is not ASCII"))?;
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = parse_chunk_size(size_text)
            .ok_or_else(|| Error::protocol(format!("invalid chunk size `{size_text}`")))?;
        if size > 0 {
            return Ok(Some(size));
        }
        // Trailers until the blank line; they are read and dropped.
        let mut trailer_bytes = 0usize;
        loop {
            let line = self.read_line("trailer").await?;
            trailer_bytes += line.len();
            if trailer_bytes > MAX_HEAD_BYTES {
                return Err(Error::protocol("chunked trailers are too large"));
            }
            if line == b"\r\n" || line == b"\n" {
                return Ok(None);
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
/// How a request body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (a stream of unknown length).
    Chunked,
}

pub(crate) fn encode_head(
    method: &Method,
    authority: &str,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: BodyFraming,
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
        // The framing is decided here, from the body, never by a caller's header.
        if n == "host"
            || n == "connection"
            || (n == "transfer-encoding" && body != BodyFraming::None)
            || (n == "content-length" && body == BodyFraming::Chunked)
            || profile.drop_headers.iter().any(|d| d == n)
        {
            continue;
        }
        has_length |= n == "content-length";
        put(n, value.as_bytes());
    }
    match body {
        BodyFraming::Length(len) if !has_length => {
            put("content-length", len.to_string().as_bytes())
        }
        BodyFraming::Chunked => put("transfer-encoding", b"chunked"),
        _ => {}
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
        let head = encode_head(
            &Method::GET,
            "a.test",
            "/x?y",
            &headers,
            BodyFraming::None,
            &p.http1,
        );
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
