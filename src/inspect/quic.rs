//! The inspector's QUIC side: HTTP/3 on the same port as the TCP inspector, over UDP.
//!
//! quinn (with rustls, server side only) runs the QUIC handshake on a socket that keeps
//! a copy of each client's first datagrams ([`TappedSocket`]); the QUIC ClientHello
//! and the Initial packets' shape are read from that copy ([`crate::quic::initial`]),
//! since no TLS server shows the bytes it was sent. HTTP/3 is spoken by hand on quinn's
//! streams (a general-purpose server would hide the SETTINGS order and the QPACK
//! choices): each request is answered with the connection's report so far as JSON, and
//! the final report is sent when the connection ends.

use std::collections::HashMap;
use std::fmt;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;

use super::cert::SelfSignedCert;
use super::clienthello::ClientHello;
use super::h3frames::{self, Http3Report, Http3Request, QuicReport};
use super::server::ConnectionReport;
use crate::error::{Error, Result};
use crate::quic::initial::InitialReader;

/// Datagrams kept per client address before its connection is accepted.
const MAX_TAPPED_DATAGRAMS: usize = 16;
/// Client addresses with a tap at once; the oldest is dropped past this.
const MAX_TAPS: usize = 256;
/// Largest frame the inspector reads from a stream.
const MAX_FRAME: usize = 256 << 10;
/// Requests recorded per connection.
const MAX_REQUESTS: usize = 1000;
/// Longest a QUIC connection may stay open, however busy.
const MAX_CONNECTION_TIME: Duration = Duration::from_secs(300);

/// A socket that hands quinn every datagram and keeps the first few of each client.
#[derive(Debug)]
struct TappedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    taps: Arc<Mutex<Taps>>,
}

#[derive(Default)]
struct Taps {
    by_peer: HashMap<SocketAddr, Vec<Vec<u8>>>,
    order: std::collections::VecDeque<SocketAddr>,
}

impl fmt::Debug for Taps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Taps")
            .field("peers", &self.by_peer.len())
            .finish()
    }
}

impl Taps {
    fn keep(&mut self, peer: SocketAddr, datagram: &[u8]) {
        if !self.by_peer.contains_key(&peer) {
            if self.order.len() >= MAX_TAPS {
                if let Some(old) = self.order.pop_front() {
                    self.by_peer.remove(&old);
                }
            }
            self.order.push_back(peer);
        }
        let kept = self.by_peer.entry(peer).or_default();
        // Only long-header packets carry Initials; short ones are 1-RTT traffic.
        if kept.len() < MAX_TAPPED_DATAGRAMS && datagram.first().is_some_and(|b| b & 0x80 != 0) {
            kept.push(datagram.to_vec());
        }
    }

    fn take(&mut self, peer: SocketAddr) -> Vec<Vec<u8>> {
        self.order.retain(|p| *p != peer);
        self.by_peer.remove(&peer).unwrap_or_default()
    }
}

impl AsyncUdpSocket for TappedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> std::io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<std::io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &polled {
            let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
            for (buf, m) in bufs.iter().zip(meta.iter()).take(*n) {
                let data = &buf[..m.len.min(buf.len())];
                for datagram in data.chunks(m.stride.max(1)) {
                    taps.keep(m.addr, datagram);
                }
            }
        }
        polled
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

fn server_config(cert: &SelfSignedCert) -> Result<quinn::ServerConfig> {
    let bad =
        |e: &dyn fmt::Display| Error::invalid_input(format!("QUIC inspector certificate: {e}"));
    let chain = vec![CertificateDer::from_pem_slice(&cert.cert_pem()).map_err(|e| bad(&e))?];
    let key = PrivateKeyDer::from_pem_slice(&cert.key_pem()).map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(&e))?;
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| bad(&e))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(10)).map_err(|e| bad(&e))?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Starts the QUIC inspector on UDP `addr`; reports go to `reports`, numbered from
/// `counter` (shared with the TCP side).
pub(super) fn start(
    addr: SocketAddr,
    cert: &SelfSignedCert,
    reports: mpsc::UnboundedSender<ConnectionReport>,
    counter: Arc<AtomicUsize>,
) -> Result<tokio::task::JoinHandle<()>> {
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|e| Error::io(format!("binding UDP {addr}"), e))?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| Error::invalid_input("the QUIC inspector needs a tokio runtime"))?;
    let inner = runtime
        .wrap_udp_socket(socket)
        .map_err(|e| Error::io("UDP socket", e))?;
    let taps = Arc::new(Mutex::new(Taps::default()));
    let tapped = Arc::new(TappedSocket {
        inner,
        taps: taps.clone(),
    });
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(server_config(cert)?),
        tapped,
        runtime,
    )
    .map_err(|e| Error::io("QUIC endpoint", e))?;
    Ok(tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let taps = taps.clone();
            let reports = reports.clone();
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            tokio::spawn(async move {
                let peer = incoming.remote_address();
                let Ok(conn) = incoming.await else {
                    taps.lock().unwrap_or_else(|p| p.into_inner()).take(peer);
                    return;
                };
                let datagrams = taps.lock().unwrap_or_else(|p| p.into_inner()).take(peer);
                let report = Arc::new(Mutex::new(first_report(n, peer, &conn, &datagrams)));
                let served =
                    tokio::time::timeout(MAX_CONNECTION_TIME, serve(conn.clone(), report.clone()))
                        .await;
                if served.is_err() {
                    conn.close(0u32.into(), b"inspector: connection open too long");
                }
                let done = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let _ = reports.send(done);
            });
        }
    }))
}

fn first_report(
    n: usize,
    peer: SocketAddr,
    conn: &quinn::Connection,
    datagrams: &[Vec<u8>],
) -> ConnectionReport {
    let mut reader = InitialReader::new();
    let mut error = None;
    for d in datagrams {
        if let Err(e) = reader.push_datagram(d) {
            error.get_or_insert_with(|| e.to_string());
        }
    }
    let hello = match reader.client_hello() {
        Some(bytes) => match ClientHello::parse(&bytes) {
            Ok(mut hello) => {
                hello.over_quic = true;
                Some(hello)
            }
            Err(e) => {
                error = Some(e.to_string());
                None
            }
        },
        None => {
            error.get_or_insert_with(|| "the ClientHello was not in the first datagrams".into());
            None
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .map(|p| String::from_utf8_lossy(&p).into_owned());
    let mut report = ConnectionReport {
        connection: n,
        peer: peer.to_string(),
        alpn,
        quic: Some(QuicReport {
            initial_packets: reader.packets.clone(),
            client_hello_error: if hello.is_some() { None } else { error },
        }),
        http3: Some(Http3Report::default()),
        ..Default::default()
    };
    if let Some(hello) = hello {
        report.ja3 = hello.ja3();
        report.ja3_hash = hello.ja3_hash();
        report.ja3n = hello.ja3n();
        report.ja3n_hash = hello.ja3n_hash();
        report.ja4 = hello.ja4();
        report.ja4_r = hello.ja4_r();
        report.resumed = hello.psk_identities.is_some();
        report.client_hello = hello;
    }
    report
}

type Shared = Arc<Mutex<ConnectionReport>>;

fn with_h3(report: &Shared, f: impl FnOnce(&mut Http3Report)) {
    let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h3) = r.http3.as_mut() {
        f(h3);
    }
}

async fn serve(conn: quinn::Connection, report: Shared) {
    // Our control stream: the type and an empty SETTINGS (a QPACK table of zero).
    if let Ok(mut control) = conn.open_uni().await {
        let _ = control.write_all(&[0x00, 0x04, 0x00]).await;
        // Dropping the stream would reset it, which the client must treat as an
        // error: it stays open until the connection ends.
        let uni = tokio::spawn(read_uni_streams(conn.clone(), report.clone()));
        while let Ok((send, recv)) = conn.accept_bi().await {
            if report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .http3
                .as_ref()
                .is_some_and(|h| h.requests.len() >= MAX_REQUESTS)
            {
                conn.close(0x0107u32.into(), b"inspector: too many requests");
                break;
            }
            tokio::spawn(serve_request(conn.clone(), send, recv, report.clone()));
        }
        uni.abort();
        drop(control);
    }
}

async fn read_uni_streams(conn: quinn::Connection, report: Shared) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let report = report.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut stream_type = None;
            loop {
                let n = match recv.read(&mut chunk).await {
                    Ok(Some(n)) => n,
                    _ => return,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut r = &buf[..];
                if stream_type.is_none() {
                    let Some(ty) = crate::quic::params::read_varint(&mut r) else {
                        continue;
                    };
                    let name = match ty {
                        0x00 => "control".to_string(),
                        0x02 => "qpack-encoder".into(),
                        0x03 => "qpack-decoder".into(),
                        t if h3frames::is_reserved(t) => format!("GREASE(0x{t:x})"),
                        t => format!("0x{t:x}"),
                    };
                    with_h3(&report, |h| h.uni_streams.push(name));
                    stream_type = Some(ty);
                    let used = buf.len() - r.len();
                    buf.drain(..used);
                }
                if stream_type != Some(0x00) {
                    // QPACK instructions (none with a zero table) and GREASE streams
                    // are only named; their bytes are dropped, bounded per read.
                    buf.clear();
                    continue;
                }
                let mut r = &buf[..];
                loop {
                    match h3frames::split_frame(&mut r, MAX_FRAME) {
                        Ok(Some((ty, payload))) => {
                            let settings = if ty == 0x04 {
                                h3frames::parse_settings(payload).ok()
                            } else {
                                None
                            };
                            with_h3(&report, |h| {
                                if h.control_frames.len() < 1000 {
                                    h.control_frames.push(h3frames::frame_name(ty));
                                }
                                if let Some(settings) = settings {
                                    h.settings = settings
                                        .into_iter()
                                        .map(|(id, v)| (id, v, h3frames::setting_name(id)))
                                        .collect();
                                }
                            });
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                let used = buf.len() - r.len();
                buf.drain(..used);
            }
        });
    }
}

async fn serve_request(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    report: Shared,
) {
    let mut request = Http3Request {
        stream_id: u64::from(recv.id()),
        ..Default::default()
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut have_headers = false;
    'read: loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), recv.read(&mut chunk)).await {
            Ok(Ok(Some(n))) => n,
            Ok(Ok(None)) => break,
            _ => return,
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_FRAME + 16 {
            return;
        }
        let mut r = &buf[..];
        loop {
            match h3frames::split_frame(&mut r, MAX_FRAME) {
                Ok(Some((ty, payload))) => {
                    if request.frames.len() < 100 {
                        request.frames.push(h3frames::frame_name(ty));
                    }
                    if ty == 0x01 && !have_headers {
                        match h3frames::decode_field_section(payload) {
                            Ok(fields) => request.fields = fields,
                            Err(e) => {
                                request.frames.push(format!("undecodable HEADERS: {e}"));
                            }
                        }
                        have_headers = true;
                    }
                }
                Ok(None) => break,
                Err(_) => break 'read,
            }
        }
        let used = buf.len() - r.len();
        buf.drain(..used);
    }
    let resume = request
        .fields
        .iter()
        .any(|f| f.name == ":path" && f.value == super::RESUME_PATH);
    with_h3(&report, |h| h.requests.push(request));
    // HEADERS: prefix 0,0; `:status 200` (static 25) and `content-type` (static 52,
    // text/html; charset=utf-8, or 46, application/json), both indexed; then DATA.
    let (content_type, body) = if resume {
        (52, super::server::RESUME_PAGE.as_bytes().to_vec())
    } else {
        let r = report.lock().unwrap_or_else(|p| p.into_inner());
        (46, serde_json::to_vec_pretty(&*r).unwrap_or_default())
    };
    let mut out = vec![0x01, 0x04, 0x00, 0x00, 0xc0 | 25, 0xc0 | content_type, 0x00];
    crate::quic::params::write_varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    if send.write_all(&out).await.is_ok() {
        let _ = send.finish();
    }
    if resume {
        // As over TCP: the page needs one more resource, and the connection is closed
        // once the page is out, so the browser comes back on a resumed handshake.
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        conn.close(0x100u32.into(), b"");
    }
}
