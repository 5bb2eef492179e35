//! A loopback HTTPS server for tests and benchmarks: HTTP/2 (the `http2` crate's server)
//! and HTTP/1.1 (keep-alive, Content-Length framing) behind ALPN, answering every request
//! with a handler. It records each request so a test can check what the client sent, and
//! whether the TLS handshake was resumed. A reply may be held back for a while (a slow
//! page), and a second server with the same certificate may be bound to another loopback
//! address (a second host, brought up late). Stops when dropped.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mummer::inspect::SelfSignedCert;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub connection: usize,
    /// When the TCP connection this request came on was accepted.
    pub connected_at: std::time::Instant,
    /// Its place on that connection, in the order requests arrived (0 for the first).
    pub nth_on_connection: usize,
    /// The address the connection came from (a proxy's exit address, say).
    pub peer: std::net::IpAddr,
    pub resumed: bool,
    pub version: http::Version,
    pub method: http::Method,
    pub uri: String,
    /// Header lines in the order they arrived (lower-case names for HTTP/2).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl SeenRequest {
    /// Every `cookie` field joined with `; ` (HTTP/2 clients crumble the header into one
    /// field per cookie), or `None` when there is none.
    pub fn cookie(&self) -> Option<String> {
        let all: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .map(|(_, v)| v.as_str())
            .collect();
        (!all.is_empty()).then(|| all.join("; "))
    }

    /// The path (and query) of the request.
    pub fn path(&self) -> &str {
        match self.uri.find("://") {
            Some(i) => {
                let rest = &self.uri[i + 3..];
                rest.find('/').map_or("/", |p| &rest[p..])
            }
            None => &self.uri,
        }
    }

    /// The host the request named (`:authority` or `Host`, without the port).
    pub fn host(&self) -> String {
        let authority = match self.uri.find("://") {
            Some(i) => {
                let rest = &self.uri[i + 3..];
                rest[..rest.find('/').unwrap_or(rest.len())].to_string()
            }
            None => self.header("host").unwrap_or_default().to_string(),
        };
        authority.split(':').next().unwrap_or_default().to_string()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler answers: status, header lines, body, and how long to wait before
/// answering (zero: at once).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
    /// Send the body in pieces of this many bytes with this pause before each one
    /// after the first (a slow download, or with a long pause a stalled one).
    pub trickle: Option<(usize, Duration)>,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
            trickle: None,
        }
    }
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply::new(200).body(body)
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }
    /// Sends the body `piece` bytes at a time, `pause` between pieces.
    pub fn trickle(mut self, piece: usize, pause: Duration) -> Reply {
        self.trickle = Some((piece.max(1), pause));
        self
    }
    /// The body's pieces and the pause before each one after the first.
    fn pieces(&self) -> (Vec<Bytes>, Duration) {
        match self.trickle {
            None => (vec![self.body.clone()], Duration::ZERO),
            Some((n, pause)) => {
                let pieces = (0..self.body.len())
                    .step_by(n)
                    .map(|at| self.body.slice(at..(at + n).min(self.body.len())))
                    .collect();
                (pieces, pause)
            }
        }
    }
    /// Answers only after `delay` (the request is recorded when it arrives).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

pub type Handler = Arc<dyn Fn(&SeenRequest) -> Reply + Send + Sync>;

pub struct HttpsServer {
    pub addr: SocketAddr,
    pub cert_pem: Vec<u8>,
    cert: Arc<SelfSignedCert>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsServer {
    /// Starts on 127.0.0.1 with ALPN `h2` then `http/1.1`.
    pub async fn start(
        handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> HttpsServer {
        Self::start_with_alpn(&[b"h2", b"http/1.1"], Arc::new(handler), true).await
    }

    /// Starts with the given ALPN preference; `record` off keeps no request log (benchmarks).
    pub async fn start_with_alpn(
        alpn: &'static [&'static [u8]],
        handler: Handler,
        record: bool,
    ) -> HttpsServer {
        let names: Vec<String> = [
            "shop.test",
            "www.shop.test",
            "api.shop.test",
            "cdn.test",
            "other.test",
        ]
        .map(String::from)
        .to_vec();
        let cert = Arc::new(SelfSignedCert::generate(&names).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, cert, alpn, handler, record)
    }

    /// Another server with this one's certificate (so one `--cacert` trusts both), bound
    /// to `addr` (a loopback address: another host on this server's port, say), with its
    /// own handler and request log. Fails when `addr` cannot be bound.
    pub async fn sibling(
        &self,
        addr: SocketAddr,
        alpn: &'static [&'static [u8]],
        handler: Handler,
    ) -> std::io::Result<HttpsServer> {
        assert!(addr.ip().is_loopback(), "{addr} is not a loopback address");
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::serve(
            listener,
            self.cert.clone(),
            alpn,
            handler,
            true,
        ))
    }

    fn serve(
        listener: TcpListener,
        cert: Arc<SelfSignedCert>,
        alpn: &'static [&'static [u8]],
        handler: Handler,
        record: bool,
    ) -> HttpsServer {
        let acceptor = Arc::new(cert.acceptor(alpn).unwrap());
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut n = 0;
            while let Ok((tcp, peer)) = listener.accept().await {
                let connected_at = std::time::Instant::now();
                let _ = tcp.set_nodelay(true);
                n += 1;
                let (acceptor, handler, log) = (acceptor.clone(), handler.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(tls) = tokio_boring::accept(&acceptor, tcp).await else {
                        return;
                    };
                    let resumed = tls.ssl().session_reused();
                    let h2 = tls.ssl().selected_alpn_protocol() == Some(b"h2");
                    let conn = Conn {
                        number: n,
                        connected_at,
                        requests: std::sync::atomic::AtomicUsize::new(0),
                        peer: peer.ip(),
                        resumed,
                        handler,
                        log: record.then_some(log),
                    };
                    if h2 {
                        conn.serve_h2(tls).await;
                    } else {
                        conn.serve_h1(tls).await;
                    }
                });
            }
        });
        HttpsServer {
            addr,
            cert_pem: cert.cert_pem(),
            cert,
            seen,
            task,
        }
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }
}

struct Conn {
    number: usize,
    connected_at: std::time::Instant,
    /// Requests seen on this connection so far.
    requests: std::sync::atomic::AtomicUsize,
    peer: std::net::IpAddr,
    resumed: bool,
    handler: Handler,
    log: Option<Arc<Mutex<Vec<SeenRequest>>>>,
}

impl Conn {
    /// The place of the request that just arrived on this connection.
    fn next_request(&self) -> usize {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    async fn answer(&self, req: SeenRequest) -> Reply {
        let reply = (self.handler)(&req);
        if let Some(log) = &self.log {
            log.lock().unwrap().push(req);
        }
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        reply
    }

    async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin>(self, io: S) {
        let Ok(mut h2) = http2::server::Builder::new()
            .max_concurrent_streams(256)
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 22)
            .handshake::<_, Bytes>(io)
            .await
        else {
            return;
        };
        let this = Arc::new(self);
        while let Some(Ok((req, mut respond))) = h2.accept().await {
            let this = this.clone();
            tokio::spawn(async move {
                let (parts, mut body) = req.into_parts();
                let mut buf = BytesMut::new();
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    buf.extend_from_slice(&chunk);
                }
                let seen = SeenRequest {
                    connection: this.number,
                    connected_at: this.connected_at,
                    nth_on_connection: this.next_request(),
                    peer: this.peer,
                    resumed: this.resumed,
                    version: http::Version::HTTP_2,
                    method: parts.method,
                    uri: parts.uri.to_string(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                    body: buf.freeze(),
                };
                let reply = this.answer(seen).await;
                let mut resp = http::Response::builder().status(reply.status);
                for (n, v) in &reply.headers {
                    resp = resp.header(n.as_str(), v.as_str());
                }
                let Ok(resp) = resp.body(()) else { return };
                let end = reply.body.is_empty();
                if let Ok(mut stream) = respond.send_response(resp, end) {
                    let (pieces, pause) = reply.pieces();
                    let last = pieces.len().saturating_sub(1);
                    for (i, piece) in pieces.into_iter().enumerate() {
                        if i > 0 && !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                        if end || stream.send_data(piece, i == last).is_err() {
                            break;
                        }
                    }
                }
            });
        }
    }

    async fn serve_h1<S: AsyncRead + AsyncWrite + Unpin>(self, mut io: S) {
        let mut buf = BytesMut::with_capacity(8192);
        loop {
            // Read a head.
            let (head_len, method, path, headers) = loop {
                let mut hdrs = [httparse::EMPTY_HEADER; 64];
                let mut req = httparse::Request::new(&mut hdrs);
                if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (
                        n,
                        req.method.unwrap_or("GET").to_string(),
                        req.path.unwrap_or("/").to_string(),
                        headers,
                    );
                }
                match io.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            };
            let _ = buf.split_to(head_len);
            let chunked = headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
            });
            let body = if chunked {
                // Chunk sizes and data until the last chunk (no trailers).
                let mut body = BytesMut::new();
                loop {
                    let line_end = loop {
                        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        match io.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    };
                    let size_line = buf.split_to(line_end + 2);
                    let text = String::from_utf8_lossy(&size_line[..line_end]).to_string();
                    let Ok(size) = usize::from_str_radix(text.trim(), 16) else {
                        return;
                    };
                    while buf.len() < size + 2 {
                        match io.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                    body.extend_from_slice(&buf.split_to(size));
                    let _ = buf.split_to(2);
                    if size == 0 {
                        break body.freeze();
                    }
                }
            } else {
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < len {
                    match io.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                buf.split_to(len).freeze()
            };
            let seen = SeenRequest {
                connection: self.number,
                connected_at: self.connected_at,
                nth_on_connection: self.next_request(),
                peer: self.peer,
                resumed: self.resumed,
                version: http::Version::HTTP_11,
                method: method.parse().unwrap_or(http::Method::GET),
                uri: path,
                headers,
                body,
            };
            let reply = self.answer(seen).await;
            let mut out = format!("HTTP/1.1 {} X\r\n", reply.status);
            for (n, v) in &reply.headers {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str(&format!("content-length: {}\r\n\r\n", reply.body.len()));
            if io.write_all(out.as_bytes()).await.is_err() {
                return;
            }
            let (pieces, pause) = reply.pieces();
            for (i, piece) in pieces.into_iter().enumerate() {
                if i > 0 && !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                if io.write_all(&piece).await.is_err() || io.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
