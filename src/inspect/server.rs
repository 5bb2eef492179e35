//! The inspector server: a loopback HTTPS endpoint that records each client's
//! ClientHello and HTTP/2 (or HTTP/1.1) request and answers with that fingerprint as JSON.
//!
//! It reads the first TLS record itself before handing the socket to BoringSSL (so the
//! raw ClientHello is seen byte for byte), then speaks just enough HTTP/2 by hand to log
//! every frame the client sends: a general-purpose HTTP/2 server would hide the
//! SETTINGS order and the HEADERS priority block, which are the point here.
//!
//! Why one file (about 590 lines of code): the server reads the TLS record, the HTTP/2
//! frames and the HTTP/1.1 request by hand, in the order a client sends them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use boring::ssl::SslAcceptor;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::cert::SelfSignedCert;
use super::clienthello::{record_len, ClientHello};
use super::h2frames::{self, kind, Frame, HeadersFrame, FRAME_HEADER_LEN, PREFACE};
use super::test_page;
use crate::error::{Error, Result};

/// Largest frame or request head the inspector reads.
const MAX_FRAME: usize = 1 << 20;
/// Largest header block (HEADERS and its CONTINUATIONs) the inspector buffers; a client
/// that sends more is cut off (a CONTINUATION flood once buffered 1.5 GB).
const MAX_HEADER_BLOCK: usize = 256 << 10;
/// Largest decoded header list (names and values) of one request: bounds an HPACK
/// "bomb" of one-byte references to a large table entry.
const MAX_DECODED_HEADERS: usize = 1 << 20;
/// Most requests, frames and re-prioritisations recorded per connection; the report
/// stops growing there (the connection is closed).
const MAX_RECORDED: usize = 1000;
/// Longest a connection may stay open, however busy.
const MAX_CONNECTION_TIME: Duration = Duration::from_secs(300);
/// `GET` on this path (over HTTP/2) answers `RESUME_PAGE` and then closes the
/// connection, so a browser comes back on a second, resumed TLS connection for the
/// request its page makes with `fetch()`: the way to capture a browser's resumed handshake.
pub const RESUME_PATH: &str = "/resume";
/// The page served at [`RESUME_PATH`].
/// The page's script fetches `/after-resume` with `fetch()`, whose priority (HIGH) and
/// headers do not depend on layout, unlike an image's (Chromium boosts images that are
/// among a page's first five, or in the viewport once laid out). The image after it keeps
/// the load event (and so `--dump-dom`) waiting until the fetch has gone out.
pub(super) const RESUME_PAGE: &str = "<!doctype html><title>resume</title><script>fetch('/after-resume')</script><img src=\"/decoy\">";
/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(10);

/// What one connection showed: TLS fingerprints and every request on it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConnectionReport {
    /// Connection number since the inspector started (1-based).
    pub connection: usize,
    /// Peer address.
    pub peer: String,
    /// JA3 string.
    pub ja3: String,
    /// MD5 of JA3.
    pub ja3_hash: String,
    /// JA3 with sorted extensions.
    pub ja3n: String,
    /// MD5 of JA3N.
    pub ja3n_hash: String,
    /// JA4.
    pub ja4: String,
    /// JA4_r.
    pub ja4_r: String,
    /// Every ClientHello field.
    pub client_hello: ClientHello,
    /// Negotiated ALPN.
    pub alpn: Option<String>,
    /// Whether the client resumed a session.
    pub resumed: bool,
    /// HTTP/2 details, when h2 was negotiated.
    pub http2: Option<Http2Report>,
    /// HTTP/1.1 requests (raw header lines in order), when h1 was used.
    pub http1: Vec<Vec<(String, String)>>,
    /// The QUIC packets, for a connection over UDP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic: Option<super::h3frames::QuicReport>,
    /// HTTP/3 details, for a connection over UDP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http3: Option<super::h3frames::Http3Report>,
}

/// The HTTP/2 side of a connection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Http2Report {
    /// SETTINGS in wire order.
    pub settings: Vec<(u16, u32)>,
    /// Connection-level WINDOW_UPDATE increment sent before the first HEADERS (0 if none).
    pub window_update: u32,
    /// PRIORITY frames sent before the first request, as
    /// `stream:exclusive:depends_on:weight` (part of the Akamai string).
    pub priority_frames: Vec<String>,
    /// PRIORITY frames sent after requests started (Chromium re-prioritises images once
    /// it has laid out the page), same format.
    pub reprioritizations: Vec<String>,
    /// Frame types in order until the first HEADERS.
    pub frames_until_first_headers: Vec<String>,
    /// Akamai fingerprint.
    pub akamai: String,
    /// Every request's HEADERS.
    pub requests: Vec<HeadersFrame>,
}

/// A running inspector.
pub struct Inspector {
    addr: SocketAddr,
    reports: mpsc::UnboundedReceiver<ConnectionReport>,
    task: tokio::task::JoinHandle<()>,
    quic: Option<tokio::task::JoinHandle<()>>,
    cert_pem: Vec<u8>,
    offer_h3: Arc<std::sync::atomic::AtomicBool>,
}

impl Inspector {
    /// Binds `addr` with a fresh self-signed certificate for `names` (and 127.0.0.1,
    /// localhost), and starts accepting.
    ///
    /// # Errors
    ///
    /// Bind failures and certificate generation failures.
    pub async fn start(addr: SocketAddr, names: &[String]) -> Result<Inspector> {
        Self::start_with(addr, SelfSignedCert::generate(names)?).await
    }

    /// Like [`Inspector::start`] with a given certificate and key (PEM files).
    ///
    /// # Errors
    ///
    /// Unreadable or invalid files, bind failures.
    pub async fn start_with_files(
        addr: SocketAddr,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Inspector> {
        Self::start_with(addr, SelfSignedCert::from_files(cert, key)?).await
    }

    async fn start_with(addr: SocketAddr, cert: SelfSignedCert) -> Result<Inspector> {
        let acceptor = Arc::new(cert.acceptor(&[b"h2", b"http/1.1"])?);
        let cert_pem = cert.cert_pem();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("binding {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("local address", e))?;
        let (tx, reports) = mpsc::unbounded_channel();
        let counter = Arc::new(AtomicUsize::new(0));
        let offer_h3 = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let offering = offer_h3.clone();
        let alt_svc: Arc<str> = format!("h3=\":{}\"; ma=86400", addr.port()).into();
        // HTTP/3 on the same port over UDP, when built with QUIC.
        #[cfg(feature = "quic-server")]
        let quic = Some(super::quic::start(
            addr,
            &cert,
            tx.clone(),
            counter.clone(),
        )?);
        #[cfg(not(feature = "quic-server"))]
        let quic: Option<tokio::task::JoinHandle<()>> = None;
        let task = tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                let alt_svc = offering.load(Ordering::Relaxed).then(|| alt_svc.clone());
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                tokio::spawn(async move {
                    match serve(tcp, peer, n, &acceptor, alt_svc.as_deref()).await {
                        Ok(report) => {
                            let _ = tx.send(report);
                        }
                        Err(e) => {
                            tracing::debug!(peer = %peer, error = %e, "inspector connection failed")
                        }
                    }
                });
            }
        });
        Ok(Inspector {
            addr,
            reports,
            task,
            quic,
            cert_pem,
            offer_h3,
        })
    }

    /// Offers HTTP/3 on its own port to TCP clients from now on: each JSON answer over
    /// HTTP/2 carries `alt-svc: h3=":PORT"; ma=86400` (what big sites send), so a
    /// browser or a mummer session upgrades the way it does on the internet.
    pub fn offer_http3(&self, on: bool) {
        self.offer_h3.store(on, Ordering::Relaxed);
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server certificate (PEM), for `--cacert`.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// Waits for the next finished connection's report.
    pub async fn next_report(&mut self) -> Option<ConnectionReport> {
        self.reports.recv().await
    }

    /// Takes every report that is ready now.
    pub fn drain_reports(&mut self) -> Vec<ConnectionReport> {
        let mut out = Vec::new();
        while let Ok(r) = self.reports.try_recv() {
            out.push(r);
        }
        out
    }
}

impl Drop for Inspector {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(quic) = &self.quic {
            quic.abort();
        }
    }
}

/// A stream that replays bytes already read before reading the socket.
struct Replay<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if me.pos < me.prefix.len() {
            let n = (me.prefix.len() - me.pos).min(buf.remaining());
            buf.put_slice(&me.prefix[me.pos..me.pos + n]);
            me.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve(
    mut tcp: TcpStream,
    peer: SocketAddr,
    n: usize,
    acceptor: &SslAcceptor,
    alt_svc: Option<&str>,
) -> std::result::Result<ConnectionReport, BoxError> {
    let mut record = vec![0u8; 5];
    tokio::time::timeout(IDLE, tcp.read_exact(&mut record)).await??;
    let total = record_len(&record).ok_or("first bytes are not a TLS handshake record")?;
    record.resize(total, 0);
    tokio::time::timeout(IDLE, tcp.read_exact(&mut record[5..])).await??;
    let hello = ClientHello::parse(&record)?;
    let stream = Replay {
        prefix: record,
        pos: 0,
        inner: tcp,
    };
    let mut tls = tokio::time::timeout(IDLE, tokio_boring::accept(acceptor, stream))
        .await?
        .map_err(|e| e.to_string())?;
    let alpn = tls
        .ssl()
        .selected_alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let resumed = tls.ssl().session_reused();
    let mut report = ConnectionReport {
        connection: n,
        peer: peer.to_string(),
        ja3: hello.ja3(),
        ja3_hash: hello.ja3_hash(),
        ja3n: hello.ja3n(),
        ja3n_hash: hello.ja3n_hash(),
        ja4: hello.ja4(),
        ja4_r: hello.ja4_r(),
        client_hello: hello,
        alpn: alpn.clone(),
        resumed,
        http2: None,
        http1: Vec::new(),
        quic: None,
        http3: None,
    };
    if alpn.as_deref() == Some("h2") {
        serve_h2(&mut tls, &mut report, alt_svc).await?;
    } else {
        serve_h1(&mut tls, &mut report).await?;
    }
    Ok(report)
}

async fn read_frame<S: AsyncRead + Unpin>(
    io: &mut S,
) -> std::result::Result<Option<Frame>, BoxError> {
    let mut head = [0u8; FRAME_HEADER_LEN];
    match tokio::time::timeout(IDLE, io.read_exact(&mut head)).await {
        Err(_) => return Ok(None),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(r) => {
            r?;
        }
    }
    let len = h2frames::frame_len(&head);
    if len > MAX_FRAME {
        return Err("frame too large".into());
    }
    let mut payload = vec![0u8; len];
    tokio::time::timeout(IDLE, io.read_exact(&mut payload)).await??;
    Ok(Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    }))
}

fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn frame_name(k: u8) -> &'static str {
    match k {
        kind::DATA => "DATA",
        kind::HEADERS => "HEADERS",
        kind::PRIORITY => "PRIORITY",
        kind::RST_STREAM => "RST_STREAM",
        kind::SETTINGS => "SETTINGS",
        kind::PING => "PING",
        kind::GOAWAY => "GOAWAY",
        kind::WINDOW_UPDATE => "WINDOW_UPDATE",
        kind::CONTINUATION => "CONTINUATION",
        _ => "UNKNOWN",
    }
}

pub(crate) async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    report: &mut ConnectionReport,
    alt_svc: Option<&str>,
) -> std::result::Result<(), BoxError> {
    let mut preface = [0u8; 24];
    tokio::time::timeout(IDLE, io.read_exact(&mut preface)).await??;
    if preface != PREFACE {
        return Err("missing HTTP/2 client preface".into());
    }
    io.write_all(&frame_bytes(kind::SETTINGS, 0, 0, &[]))
        .await?;
    let mut h2 = Http2Report::default();
    let mut decoder = loona_hpack::Decoder::new();
    let mut seen_first_settings = false;
    let mut pending: Option<(u32, u8, Option<h2frames::PriorityBlock>, Vec<u8>)> = None;
    let opened = tokio::time::Instant::now();
    while let Some(frame) = read_frame(io).await? {
        if opened.elapsed() > MAX_CONNECTION_TIME {
            return Err(format!("connection open longer than {MAX_CONNECTION_TIME:?}").into());
        }
        if h2.requests.len() >= MAX_RECORDED
            || h2.frames_until_first_headers.len() >= MAX_RECORDED
            || h2.reprioritizations.len() >= MAX_RECORDED
        {
            return Err(format!("more than {MAX_RECORDED} requests or frames to record").into());
        }
        if h2.requests.is_empty() && pending.is_none() {
            let label = match frame.kind {
                kind::WINDOW_UPDATE if frame.payload.len() == 4 => {
                    format!(
                        "WINDOW_UPDATE={}",
                        u32::from_be_bytes([
                            frame.payload[0],
                            frame.payload[1],
                            frame.payload[2],
                            frame.payload[3]
                        ]) & 0x7fff_ffff
                    )
                }
                kind::HEADERS => format!("HEADERS@{}", frame.stream),
                k => frame_name(k).to_string(),
            };
            h2.frames_until_first_headers.push(label);
        }
        match frame.kind {
            kind::SETTINGS if frame.flags & 0x1 == 0 => {
                if !seen_first_settings {
                    h2.settings = h2frames::parse_settings(&frame.payload);
                    seen_first_settings = true;
                }
                io.write_all(&frame_bytes(kind::SETTINGS, 0x1, 0, &[]))
                    .await?;
            }
            kind::WINDOW_UPDATE
                if frame.stream == 0 && frame.payload.len() == 4 && h2.requests.is_empty() =>
            {
                h2.window_update = u32::from_be_bytes([
                    frame.payload[0],
                    frame.payload[1],
                    frame.payload[2],
                    frame.payload[3],
                ]) & 0x7fff_ffff;
            }
            kind::PRIORITY if frame.payload.len() == 5 => {
                let dep = u32::from_be_bytes([
                    frame.payload[0],
                    frame.payload[1],
                    frame.payload[2],
                    frame.payload[3],
                ]);
                let entry = format!(
                    "{}:{}:{}:{}",
                    frame.stream,
                    dep >> 31,
                    dep & 0x7fff_ffff,
                    u16::from(frame.payload[4]) + 1
                );
                // Only frames sent before the first request belong to the Akamai
                // fingerprint; later ones re-prioritise streams already open.
                if h2.requests.is_empty() && pending.is_none() {
                    h2.priority_frames.push(entry);
                } else {
                    h2.reprioritizations.push(entry);
                }
            }
            kind::PING if frame.flags & 0x1 == 0 => {
                io.write_all(&frame_bytes(kind::PING, 0x1, 0, &frame.payload))
                    .await?;
            }
            kind::GOAWAY => break,
            kind::HEADERS => {
                let (prio, block) = h2frames::split_headers_payload(frame.flags, &frame.payload)?;
                if block.len() > MAX_HEADER_BLOCK {
                    return Err(format!("header block over {MAX_HEADER_BLOCK} bytes").into());
                }
                pending = Some((frame.stream, frame.flags, prio, block.to_vec()));
            }
            kind::CONTINUATION => {
                if let Some(p) = pending.as_mut() {
                    if p.3.len() + frame.payload.len() > MAX_HEADER_BLOCK {
                        return Err(format!(
                            "header block over {MAX_HEADER_BLOCK} bytes (CONTINUATION flood)"
                        )
                        .into());
                    }
                    p.3.extend_from_slice(&frame.payload);
                    p.1 |= frame.flags & 0x4;
                }
            }
            _ => {}
        }
        let complete = pending.as_ref().is_some_and(|p| p.1 & 0x4 != 0);
        if complete {
            let Some((stream, flags, priority, block)) = pending.take() else {
                continue;
            };
            let mut headers = Vec::new();
            let mut decoded = 0usize;
            decoder
                .decode_with_cb(&block, |n, v| {
                    decoded = decoded.saturating_add(n.len() + v.len() + 32);
                    if decoded <= MAX_DECODED_HEADERS {
                        headers.push((
                            String::from_utf8_lossy(&n).into_owned(),
                            String::from_utf8_lossy(&v).into_owned(),
                        ));
                    }
                })
                .map_err(|e| format!("HPACK: {e:?}"))?;
            if decoded > MAX_DECODED_HEADERS {
                return Err(format!(
                    "decoded header list over {MAX_DECODED_HEADERS} bytes (HPACK bomb)"
                )
                .into());
            }
            let (representations, table_size_updates) = h2frames::representations(&block)?;
            h2.requests.push(HeadersFrame {
                stream,
                flags: h2frames::headers_flag_names(flags),
                priority,
                headers,
                representations,
                table_size_updates,
            });
            h2.akamai = h2frames::akamai(
                &h2.settings,
                h2.window_update,
                &h2.priority_frames,
                h2.requests.first(),
            );
            report.http2 = Some(h2.clone());
            let path = h2
                .requests
                .last()
                .and_then(|r| r.headers.iter().find(|(n, _)| n == ":path"))
                .map(|(_, v)| v.as_str());
            if path == Some(RESUME_PATH) {
                // Answer a page that needs one more resource, then close: the browser
                // must open a second connection, which resumes the TLS session.
                let mut headers = vec![("content-type", "text/html")];
                headers.extend(alt_svc.map(|v| ("alt-svc", v)));
                respond_h2(io, stream, 200, &headers, Some(RESUME_PAGE.as_bytes())).await?;
                let mut goaway = stream.to_be_bytes().to_vec();
                goaway.extend_from_slice(&0u32.to_be_bytes());
                io.write_all(&frame_bytes(kind::GOAWAY, 0, 0, &goaway))
                    .await?;
                io.flush().await?;
                let _ = io.shutdown().await;
                break;
            }
            if let Some(resource) = path.and_then(test_page::page_resource) {
                let asked = h2
                    .requests
                    .last()
                    .map(|r| &r.headers[..])
                    .unwrap_or_default();
                let cache = resource.caching.headers();
                if resource.caching.not_modified(asked) {
                    respond_h2(io, stream, 304, &cache, None).await?;
                } else {
                    let mut headers = vec![("content-type", resource.content_type)];
                    headers.extend(cache);
                    headers.extend(resource.set_cookies.iter().map(|c| ("set-cookie", *c)));
                    respond_h2(io, stream, 200, &headers, Some(resource.body)).await?;
                }
                continue;
            }
            let body = serde_json::to_vec_pretty(&*report)?;
            let mut headers = vec![("content-type", "application/json")];
            headers.extend(alt_svc.map(|v| ("alt-svc", v)));
            respond_h2(io, stream, 200, &headers, Some(&body)).await?;
        }
    }
    if !h2.requests.is_empty() || report.http2.is_none() {
        h2.akamai = h2frames::akamai(
            &h2.settings,
            h2.window_update,
            &h2.priority_frames,
            h2.requests.first(),
        );
        report.http2 = Some(h2);
    }
    Ok(())
}

/// Answers `stream` with `status` (200 or 304), `headers` and, for a 200, `body` with its
/// `content-length`. The header block is written by hand: the status from the static
/// table, each field a literal without indexing whose name is a static-table entry.
async fn respond_h2<S: AsyncWrite + Unpin>(
    io: &mut S,
    stream: u32,
    status: u16,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<()> {
    // Static table: `:status 200` is 8, `:status 304` 11.
    let mut block = vec![if status == 304 { 0x8b } else { 0x88 }];
    let length = body.map(|b| b.len().to_string());
    let fields = headers
        .iter()
        .map(|(n, v)| (*n, *v))
        .chain(length.as_deref().map(|l| ("content-length", l)));
    for (name, value) in fields {
        let index = match name {
            "cache-control" => 24,
            "content-length" => 28,
            "content-type" => 31,
            "etag" => 34,
            "last-modified" => 44,
            "set-cookie" => 55,
            _ => 0,
        };
        if value.len() > 126 || name.len() > 126 {
            return Err(std::io::Error::other(format!("{name} too long")));
        }
        if index == 0 {
            // Literal without indexing, new name (`alt-svc` has no static entry).
            block.extend_from_slice(&[0x00, name.len() as u8]);
            block.extend_from_slice(name.as_bytes());
        } else {
            // Literal without indexing, indexed name (4-bit prefix: 15 + the rest).
            block.extend_from_slice(&[0x0f, index - 15]);
        }
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let body = body.unwrap_or_default();
    let no_body = status == 304;
    let mut out = frame_bytes(
        kind::HEADERS,
        if no_body { 0x5 } else { 0x4 },
        stream,
        &block,
    );
    if !no_body {
        let mut chunks = body.chunks(16_384).peekable();
        if chunks.peek().is_none() {
            out.extend(frame_bytes(kind::DATA, 0x1, stream, &[]));
        }
        while let Some(chunk) = chunks.next() {
            let end = if chunks.peek().is_none() { 0x1 } else { 0 };
            out.extend(frame_bytes(kind::DATA, end, stream, chunk));
        }
    }
    io.write_all(&out).await?;
    io.flush().await
}

async fn serve_h1<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    report: &mut ConnectionReport,
) -> std::result::Result<(), BoxError> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > MAX_FRAME {
            return Err("request head too large".into());
        }
        if tokio::time::timeout(IDLE, io.read(&mut byte)).await?? == 0 {
            return Ok(());
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut headers = vec![(":request-line".to_string(), request_line)];
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.to_string(), v.trim().to_string()));
        }
    }
    report.http1.push(headers);
    let body = serde_json::to_vec_pretty(&*report)?;
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    io.write_all(head.as_bytes()).await?;
    io.write_all(&body).await?;
    io.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Runs `serve_h2` on what a client sends after the preface; returns its outcome and
    /// how many bytes the client got to write before the inspector stopped reading.
    async fn serve(client: impl FnOnce(&mut Vec<u8>) + Send + 'static) -> (String, usize) {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move {
            let mut bytes = PREFACE.to_vec();
            client(&mut bytes);
            let mut written = 0;
            for chunk in bytes.chunks(8192) {
                if theirs.write_all(chunk).await.is_err() {
                    break;
                }
                written += chunk.len();
            }
            (written, theirs)
        });
        let mut report = ConnectionReport::default();
        let outcome = match serve_h2(&mut ours, &mut report, None).await {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        drop(ours);
        (outcome, writer.await.unwrap().0)
    }

    #[tokio::test]
    async fn a_continuation_flood_is_cut_off_not_buffered() {
        let (outcome, written) = serve(|b| {
            b.extend(frame_bytes(kind::HEADERS, 0, 1, &[0x82]));
            for _ in 0..20_000 {
                b.extend(frame_bytes(kind::CONTINUATION, 0, 1, &[0x82; 1024]));
            }
        })
        .await;
        assert!(outcome.contains("CONTINUATION flood"), "{outcome}");
        assert!(written < 2 << 20, "read {written} bytes of a 20 MB flood");
    }

    #[tokio::test]
    async fn an_hpack_bomb_is_refused() {
        // One literal with incremental indexing of a 4000-byte value, then 60 000
        // one-byte references to it: a 60 KB block that decodes to 240 MB.
        let (outcome, _) = serve(|b| {
            let mut block = vec![0x40, 0x01, b'x', 0x7f];
            let mut n = 4000u32 - 127;
            while n >= 128 {
                block.push((n % 128) as u8 | 0x80);
                n /= 128;
            }
            block.push(n as u8);
            block.extend(std::iter::repeat_n(b'v', 4000));
            block.extend(std::iter::repeat_n(0xbe, 60_000));
            b.extend(frame_bytes(kind::HEADERS, 0x4 | 0x1, 1, &block));
        })
        .await;
        assert!(outcome.contains("HPACK bomb"), "{outcome}");
    }

    #[tokio::test]
    async fn a_ping_flood_before_any_request_stops_being_recorded() {
        let (outcome, _) = serve(|b| {
            for i in 0..5_000u64 {
                b.extend(frame_bytes(kind::PING, 0, 0, &i.to_be_bytes()));
            }
        })
        .await;
        assert!(outcome.contains("more than 1000"), "{outcome}");
    }
}
