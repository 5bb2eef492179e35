//! HTTP/3 connections: a QUIC connection by quinn whose handshake is BoringSSL's
//! ([`crate::quic`]), with the `h3` crate's client on top, and one request exchange.
//!
//! Each connection has its own UDP socket (an ephemeral port, as a browser uses one
//! per connection), so the client's connection IDs can be as short as the profile's
//! (Chromium: none of its own). The transport is told the profile's values
//! ([`QuicProfile`]) and writes its parameters in the profile's order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::{HeaderName, HeaderValue, Method, StatusCode};

use crate::error::{Error, Result};
use crate::net::{UdpRoute, UdpTarget};
use crate::profile::QuicProfile;
use crate::quic::socks_udp::Socks5UdpSocket;
use crate::quic::{HandshakeData, QuicClientConfig, ResetKey};
use crate::tls::{TicketCache, TlsConnector, TlsInfo};

/// Largest response header section read over HTTP/3 (decoded size as RFC 9114 counts
/// it), whatever the profile advertises.
const MAX_RESPONSE_FIELD_SECTION: u64 = 256 * 1024;

/// A live HTTP/3 connection; clones share it.
#[derive(Clone)]
pub(crate) struct H3Connection {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    /// The profile's pseudo-header order (its HTTP/2 one: Chromium uses the same).
    pseudo_order: [u8; 4],
    quic: quinn::Connection,
    // Closes the connection when the last clone goes (the HTTP/3 driver task holds a
    // handle of its own, which would keep it open), and keeps the socket alive.
    _closer: Arc<CloseOnDrop>,
}

struct CloseOnDrop {
    quic: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        // H3_NO_ERROR (RFC 9114 section 8.1): a browser closing a connection it is done with.
        self.quic.close(quinn::VarInt::from_u32(0x100), b"");
    }
}

/// A response as it came off an HTTP/3 stream.
pub(crate) struct H3Exchange {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
    pub(crate) first_byte: Instant,
}

fn transport_config(quic: &QuicProfile) -> Result<quinn::TransportConfig> {
    let bad = |what: &str| Error::invalid_profile(format!("quic.{what}"), "out of range".into());
    let varint = |v: u64, what: &str| quinn::VarInt::from_u64(v).map_err(|_| bad(what));
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_millis(quic.max_idle_timeout_ms))
            .map_err(|_| bad("max_idle_timeout_ms"))?,
    ))
    .stream_receive_window(varint(
        quic.initial_max_stream_data,
        "initial_max_stream_data",
    )?)
    .receive_window(varint(quic.initial_max_data, "initial_max_data")?)
    .max_concurrent_bidi_streams(varint(
        quic.initial_max_streams_bidi,
        "initial_max_streams_bidi",
    )?)
    .max_concurrent_uni_streams(varint(
        quic.initial_max_streams_uni,
        "initial_max_streams_uni",
    )?)
    .datagram_receive_buffer_size(
        quic.max_datagram_frame_size
            .map(|v| usize::try_from(v).map_err(|_| bad("max_datagram_frame_size")))
            .transpose()?,
    )
    .initial_mtu(quic.initial_packet_size.max(1200));
    Ok(t)
}

/// The endpoint for one connection, on its own socket: a plain UDP socket, or one
/// through a SOCKS5 relay. Returns it and the server's address as quinn knows it.
fn endpoint(quic: &QuicProfile, route: UdpRoute) -> Result<(quinn::Endpoint, SocketAddr)> {
    let mut config = quinn::EndpointConfig::new(Arc::new(ResetKey::random()));
    config
        .max_udp_payload_size(quic.max_udp_payload_size.max(1200))
        .map_err(|e| Error::invalid_profile("quic.max_udp_payload_size".into(), e.to_string()))?;
    // Chromium neither advertises nor greases the QUIC bit.
    config.grease_quic_bit(false);
    let scid_len = usize::from(quic.scid_len.min(20));
    config.cid_generator(move || Box::new(quinn_proto::RandomConnectionIdGenerator::new(scid_len)));
    let runtime = quinn::default_runtime()
        .ok_or_else(|| Error::connect("HTTP/3", "HTTP/3 needs a tokio runtime"))?;
    match route {
        UdpRoute::Direct(remote) => {
            let bind: SocketAddr = if remote.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = std::net::UdpSocket::bind(bind)
                .map_err(|e| Error::connect(remote.to_string(), e))?;
            let endpoint = quinn::Endpoint::new(config, None, socket, runtime)
                .map_err(|e| Error::connect(remote.to_string(), e))?;
            Ok((endpoint, remote))
        }
        UdpRoute::Socks5 {
            control,
            relay,
            target,
        } => {
            // With `socks5h://` quinn still needs an address for the server: a
            // stand-in that never goes on the wire (the socket sends to the relay only).
            let peer = match &target {
                UdpTarget::Addr(addr) => *addr,
                UdpTarget::Name(_, port) => SocketAddr::from(([127, 255, 255, 254], *port)),
            };
            let socket = Socks5UdpSocket::new(control, relay, &target, peer)
                .map_err(|e| Error::connect(relay.to_string(), e))?;
            let endpoint =
                quinn::Endpoint::new_with_abstract_socket(config, None, Arc::new(socket), runtime)
                    .map_err(|e| Error::connect(relay.to_string(), e))?;
            Ok((endpoint, peer))
        }
    }
}

impl H3Connection {
    /// Opens QUIC to `addr` for `host:port` and sets HTTP/3 up on it.
    ///
    /// # Errors
    ///
    /// [`Error::is_tls`] for a refused handshake, [`Error::is_connect`] when nothing
    /// answers over UDP (within the idle timeout), [`Error::is_timeout`] after
    /// `limit`.
    pub(crate) async fn connect(
        tls: &TlsConnector,
        tickets: &TicketCache,
        quic: &QuicProfile,
        pseudo_header_order: &[String],
        host: &str,
        port: u16,
        route: UdpRoute,
    ) -> Result<(H3Connection, Arc<TlsInfo>)> {
        let ssl = tls.quic_ssl(host, port, &quic.alpn, tickets).await?;
        let layout = quic.params_layout()?;
        let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::new(ssl, layout)));
        client.transport_config(Arc::new(transport_config(quic)?));
        let dcid_len = usize::from(quic.initial_dcid_len.clamp(8, 20));
        client.initial_dst_cid_provider(Arc::new(move || {
            quinn_proto::ConnectionId::new(&rand::random::<[u8; 20]>()[..dcid_len])
        }));
        let (endpoint, addr) = endpoint(quic, route)?;
        let connecting = endpoint
            .connect_with(client, addr, host)
            .map_err(|e| Error::connect(format!("{host}:{port}"), e))?;
        let conn = connecting.await.map_err(|e| quic_failure(host, port, e))?;
        let data = conn
            .handshake_data()
            .and_then(|d| d.downcast::<HandshakeData>().ok());
        let info = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: data
                .as_ref()
                .and_then(|d| d.cipher.clone())
                .unwrap_or_else(|| "unknown".into()),
            alpn: data
                .as_ref()
                .and_then(|d| d.protocol.as_ref())
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            resumed: data.as_ref().is_some_and(|d| d.resumed),
        };
        let shape = quic.http3_shape()?;
        // The largest response header section accepted: what MAX_FIELD_SECTION_SIZE
        // promises the server (Chromium: 256 KiB), and never more than that.
        let max_field_section = shape.settings[..usize::from(shape.len)]
            .iter()
            .find(|(id, _)| *id == 0x06)
            .map_or(MAX_RESPONSE_FIELD_SECTION, |(_, v)| {
                (*v).min(MAX_RESPONSE_FIELD_SECTION)
            });
        let (mut driver, send) = h3::client::builder()
            .max_field_section_size(max_field_section)
            .browser_shape(shape)
            .build(h3_quinn::Connection::new(conn.clone()))
            .await
            .map_err(|e| Error::connect(format!("{host}:{port}"), format!("HTTP/3 set-up: {e}")))?;
        // The driver reads the server's control stream (SETTINGS, GOAWAY) for as long
        // as the connection lives; it ends when the connection closes.
        tokio::spawn(async move {
            let _closed = futures_util::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok((
            H3Connection {
                send,
                pseudo_order: pseudo_order(pseudo_header_order),
                quic: conn.clone(),
                _closer: Arc::new(CloseOnDrop {
                    quic: conn,
                    _endpoint: endpoint,
                }),
            },
            Arc::new(info),
        ))
    }

    /// Whether the connection is closed (idle timeout, GOAWAY, error).
    pub(crate) fn is_closed(&self) -> bool {
        self.quic.close_reason().is_some()
    }

    /// Sends one request and reads its response whole (at most `max_body` bytes).
    ///
    /// # Errors
    ///
    /// [`Error::is_body_too_large`] past `max_body`; a stream or connection error
    /// naming the host.
    pub(crate) async fn send(
        &self,
        method: &Method,
        uri: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<crate::body::SendBody>,
        max_body: u64,
    ) -> Result<H3Exchange> {
        use crate::body::SendBody;
        use futures_util::StreamExt;
        let mut head = http::Request::builder().method(method.clone()).uri(uri);
        if let Some(map) = head.headers_mut() {
            for (name, value) in headers {
                map.append(name.clone(), value.clone());
            }
        }
        let mut head = head.body(()).map_err(|e| Error::invalid_url(uri, e))?;
        head.extensions_mut()
            .insert(h3::ext::PseudoOrder(self.pseudo_order));
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::connect(uri, format!("HTTP/3 {what}: {e}"))
        };
        let mut send = self.send.clone();
        let mut stream = send
            .send_request(head)
            .await
            .map_err(|e| failed("request", &e))?;
        match body {
            Some(SendBody::Full(bytes)) if !bytes.is_empty() => {
                stream
                    .send_data(bytes)
                    .await
                    .map_err(|e| failed("request body", &e))?;
            }
            Some(SendBody::Stream(mut chunks, declared)) => {
                let mut check = crate::body::LengthCheck::new(declared);
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk?;
                    check.add(chunk.len())?;
                    if !chunk.is_empty() {
                        stream
                            .send_data(chunk)
                            .await
                            .map_err(|e| failed("request body", &e))?;
                    }
                }
                check.finish()?;
            }
            _ => {}
        }
        stream
            .finish()
            .await
            .map_err(|e| failed("request end", &e))?;
        let response = stream
            .recv_response()
            .await
            .map_err(|e| failed("response", &e))?;
        let first_byte = Instant::now();
        let (parts, ()) = response.into_parts();
        let mut wire = Vec::with_capacity(parts.headers.len());
        let mut last: Option<HeaderName> = None;
        for (name, value) in parts.headers {
            if let Some(n) = name {
                last = Some(n);
            }
            if let Some(n) = &last {
                wire.push((n.clone(), value));
            }
        }
        let mut body = Vec::new();
        while let Some(mut chunk) = stream
            .recv_data()
            .await
            .map_err(|e| failed("response body", &e))?
        {
            if (body.len() + chunk.remaining()) as u64 > max_body {
                return Err(Error::body_too_large(format!(
                    "response body is larger than the {max_body}-byte limit"
                )));
            }
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                body.extend_from_slice(piece);
                let n = piece.len();
                chunk.advance(n);
            }
        }
        Ok(H3Exchange {
            status: parts.status,
            headers: wire,
            body: body.into(),
            first_byte,
        })
    }
}

/// `[":method", ":authority", ":scheme", ":path"]` as `*b"masp"`; anything else keeps
/// the `h3` crate's order for the missing ones.
fn pseudo_order(names: &[String]) -> [u8; 4] {
    let mut order = *b"msap";
    for (slot, name) in order.iter_mut().zip(names) {
        *slot = match name.as_str() {
            ":method" => b'm',
            ":authority" => b'a',
            ":scheme" => b's',
            ":path" => b'p',
            _ => b'?',
        };
    }
    order
}

fn quic_failure(host: &str, port: u16, e: quinn::ConnectionError) -> Error {
    let what = format!("{host}:{port}");
    // TLS alerts travel as QUIC's CRYPTO_ERROR codes, 0x100 + the alert (RFC 9001 4.8).
    let is_tls = |code: quinn_proto::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match e {
        quinn::ConnectionError::TimedOut => {
            Error::connect(&what, "no QUIC answer over UDP (timed out)")
        }
        quinn::ConnectionError::TransportError(t) if is_tls(t.code) => Error::tls(host, t.reason),
        quinn::ConnectionError::ConnectionClosed(c) if is_tls(c.error_code) => {
            Error::tls(host, format!("the server ended the handshake: {c}"))
        }
        other => Error::connect(&what, format!("QUIC: {other}")),
    }
}
