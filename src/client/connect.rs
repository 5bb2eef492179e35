//! Opening a connection (the dial through any proxy, the TLS handshake, then the HTTP/2
//! one when ALPN picked `h2`) and sending one request on it over HTTP/2
//! ([`exchange_h2`]) or HTTP/1.1 ([`exchange_h1`]), each giving back an [`Exchange`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, Version};

use super::pool::{Conn, MaybeTls, OriginKey, Pool};
use super::request::Target;
use super::response::Timings;
use super::{ClientBuilder, ClientInner, HttpVersionPref};
use crate::alt_svc::Alternative;
use crate::body::{Body, Chunks};
use crate::error::{Error, Result};
use crate::h1::H1Connection;
use crate::h2::{self, H2Connection};
use crate::h3::H3Connection;
use crate::net::{BoxedIo, CountingIo};
use crate::read_ahead::ReadAhead;

/// One response as a connection delivered it: status, header fields in wire order,
/// body as received (still encoded).
pub(super) struct Exchange {
    pub(super) status: StatusCode,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) body: WireBody,
}

/// A response body as received (still encoded): read whole, or still arriving (a
/// streaming request's).
pub(super) enum WireBody {
    Full(Bytes),
    Open(Chunks),
}

/// The request as it goes on the wire: every header in its final order.
pub(super) struct Outgoing<'a> {
    pub(super) method: &'a Method,
    pub(super) headers: &'a [(HeaderName, HeaderValue)],
    pub(super) body: Option<&'a Body>,
    /// Hand the response body back as it arrives ([`WireBody::Open`]).
    pub(super) streaming: bool,
    /// The request kind's HEADERS priority template (HTTP/2).
    pub(super) priority: crate::profile::Http2Priority,
}

/// What a streaming HTTP/1.1 body does with its connection once the body ended where
/// its framing said: the pool takes it back.
pub(super) type GiveBack = Box<dyn FnOnce(H1Connection<MaybeTls>) + Send>;

/// Dials `target` (through the proxy, if any), runs the TLS handshake for `https`
/// and then the HTTP/2 one when ALPN picked `h2`, and pools a new HTTP/2 connection
/// before the dial permit is released (so the requests waiting on it find it).
pub(super) async fn open_connection(
    client: &Arc<ClientInner>,
    target: &Target,
    key: &OriginKey,
    priority: crate::profile::Http2Priority,
    dial_permit: Option<tokio::sync::OwnedMutexGuard<()>>,
    timings: &mut Timings,
) -> Result<Conn> {
    match client.config.version {
        // Plain http:// has no HTTP/3: it stays HTTP/1.1, as with curl's --http3-only.
        HttpVersionPref::Http3Only if target.https => {
            let conn = open_h3(client, &target.host, target.port, key, None, timings).await?;
            drop(dial_permit);
            Ok(conn)
        }
        HttpVersionPref::Auto | HttpVersionPref::Http3 if target.https => {
            match client.usable_alternative(target) {
                Some(alt) => race(client, target, key, alt, priority, dial_permit, timings).await,
                None => open_tcp(client, target, key, priority, dial_permit, timings).await,
            }
        }
        _ => open_tcp(client, target, key, priority, dial_permit, timings).await,
    }
}

/// How long QUIC runs alone before TCP is dialled beside it, when the origin offered
/// HTTP/3. Chrome starts its TCP job after a short delay too; a QUIC handshake on a
/// working path finishes well within it.
const QUIC_HEAD_START: Duration = Duration::from_millis(300);

/// Chrome's race for an origin that offered HTTP/3: QUIC first, TCP after
/// [`QUIC_HEAD_START`] unless QUIC is up by then, the first connection to be ready
/// carries the request. A QUIC attempt that loses the race goes on by itself: when it
/// succeeds its connection is pooled for the next requests, when it fails the
/// alternative is marked broken (Chrome's back-off, [`crate::alt_svc`]) and TCP is
/// used until then. A QUIC failure before TCP is ready switches to TCP at once.
async fn race(
    client: &Arc<ClientInner>,
    target: &Target,
    key: &OriginKey,
    alt: Alternative,
    priority: crate::profile::Http2Priority,
    dial_permit: Option<tokio::sync::OwnedMutexGuard<()>>,
    timings: &mut Timings,
) -> Result<Conn> {
    let quic = {
        let (client, host, port, key) = (
            client.clone(),
            target.host.clone(),
            target.port,
            key.clone(),
        );
        tokio::spawn(async move {
            let mut t = Timings::default();
            let result = open_h3(&client, &host, port, &key, Some(&alt), &mut t).await;
            let origin = crate::alt_svc::origin_key(&host, port);
            match &result {
                Ok(_) => client.alt_svc(|cache| cache.confirm(&origin, &alt)),
                Err(e) => {
                    let wait =
                        client.alt_svc(|cache| cache.mark_broken(&origin, &alt, SystemTime::now()));
                    client.counters.h3_fallbacks.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("http3_fallbacks_total").increment(1);
                    tracing::debug!(origin = %origin, error = %e, ?wait, "HTTP/3 alternative marked broken");
                }
            }
            result.map(|conn| (conn, t))
        })
    };
    tokio::pin!(quic);
    tokio::select! {
        joined = &mut quic => {
            if let Ok(Ok((conn, t))) = joined {
                *timings = t;
                drop(dial_permit);
                return Ok(conn);
            }
            return open_tcp(client, target, key, priority, dial_permit, timings).await;
        }
        () = tokio::time::sleep(QUIC_HEAD_START) => {}
    }
    let tcp = async {
        let mut t = Timings::default();
        open_tcp(client, target, key, priority, dial_permit, &mut t)
            .await
            .map(|conn| (conn, t))
    };
    tokio::pin!(tcp);
    let mut quic_failed = false;
    loop {
        tokio::select! {
            joined = &mut quic, if !quic_failed => match joined {
                Ok(Ok((conn, t))) => {
                    *timings = t;
                    return Ok(conn);
                }
                _ => quic_failed = true,
            },
            result = &mut tcp => {
                let (conn, t) = result?;
                *timings = t;
                return Ok(conn);
            }
        }
    }
}

/// Dials over TCP: through the proxy if any, TLS for https, then HTTP/2 or HTTP/1.1.
async fn open_tcp(
    client: &ClientInner,
    target: &Target,
    key: &OriginKey,
    priority: crate::profile::Http2Priority,
    dial_permit: Option<tokio::sync::OwnedMutexGuard<()>>,
    timings: &mut Timings,
) -> Result<Conn> {
    let config = &client.config;
    let (io, dial) = client.dialer.dial(&target.host, target.port).await?;
    let counted = CountingIo::new(io, client.counters.bytes.clone());
    client
        .counters
        .connections_opened
        .fetch_add(1, Ordering::Relaxed);
    metrics::counter!("connections_opened_total").increment(1);
    timings.dns = dial.dns;
    timings.connect = dial.connect;
    if !target.https {
        let io: BoxedIo = Box::pin(counted);
        return Ok(Conn::H1(H1Connection::new(MaybeTls::Plain(io)), None));
    }
    // BoringSSL reads a record header and then its body: the socket is read a buffer
    // at a time beneath it (see `read_ahead`).
    let io: BoxedIo = Box::pin(ReadAhead::new(counted));
    let alpn = match config.version {
        HttpVersionPref::Auto | HttpVersionPref::Http3 | HttpVersionPref::Http3Only => None,
        HttpVersionPref::Http1Only => Some(vec!["http/1.1".to_string()]),
        HttpVersionPref::Http2Only => Some(vec!["h2".to_string()]),
    };
    let tls_started = Instant::now();
    let handshake = client.tls.connect(
        &target.host,
        target.port,
        io,
        alpn.as_deref(),
        &client.tickets,
    );
    let (stream, info) = match config.tls_timeout {
        Some(limit) => tokio::time::timeout(limit, handshake).await.map_err(|_| {
            Error::timeout(format!(
                "after {limit:?} in the TLS handshake with `{}`",
                target.host
            ))
        })??,
        None => handshake.await?,
    };
    timings.tls = tls_started.elapsed();
    count_resumption(client, &info);
    if info.alpn.as_deref() == Some("h2") {
        let conn = h2::handshake(stream, &config.profile.http2, priority).await?;
        Pool::lock(&client.pool)
            .h2
            .entry(key.clone())
            .or_default()
            .push((conn.clone(), info.clone()));
        drop(dial_permit);
        Ok(Conn::H2(conn, info))
    } else {
        Pool::lock(&client.pool).h1_origins.insert(key.clone());
        drop(dial_permit);
        Ok(Conn::H1(
            H1Connection::new(MaybeTls::Tls(Box::new(stream))),
            Some(info),
        ))
    }
}

/// Opens an HTTP/3 connection (QUIC over UDP, no TCP) and pools it before the dial
/// permit is released.
async fn open_h3(
    client: &ClientInner,
    host: &str,
    port: u16,
    key: &OriginKey,
    alt: Option<&Alternative>,
    timings: &mut Timings,
) -> Result<Conn> {
    let config = &client.config;
    // An alternative on the origin's host keeps the origin's address (its `--resolve`
    // rule included) with the alternative's port; on another host, that host is looked up.
    let (route, dns) = match alt {
        Some(a) if !a.host.is_empty() => client.dialer.udp_route(&a.host, a.port, a.port).await?,
        Some(a) => client.dialer.udp_route(host, port, a.port).await?,
        None => client.dialer.udp_route(host, port, port).await?,
    };
    timings.dns = dns;
    client
        .counters
        .connections_opened
        .fetch_add(1, Ordering::Relaxed);
    metrics::counter!("connections_opened_total").increment(1);
    let started = Instant::now();
    let tls = client.quic_tls()?;
    let connect = H3Connection::connect(
        &tls,
        &client.tickets,
        &config.profile.quic,
        &config.profile.http2.pseudo_header_order,
        host,
        port,
        route,
    );
    // QUIC's handshake is its connect: the shorter of the two deadlines bounds it.
    let limit = match (config.connect_timeout, config.tls_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (conn, info) = match limit {
        Some(limit) => tokio::time::timeout(limit, connect).await.map_err(|_| {
            Error::timeout(format!(
                "after {limit:?} in the QUIC handshake with `{host}`"
            ))
        })??,
        None => connect.await?,
    };
    // QUIC has no separate connect step: the handshake is the connection.
    timings.tls = started.elapsed();
    count_resumption(client, &info);
    client
        .counters
        .h3_connections
        .fetch_add(1, Ordering::Relaxed);
    metrics::counter!("http3_connections_total").increment(1);
    Pool::lock(&client.pool)
        .h3
        .insert(key.clone(), (conn.clone(), info.clone()));
    Ok(Conn::H3(conn, info))
}

/// Sends one request on an HTTP/3 connection.
pub(super) async fn exchange_h3(
    conn: &H3Connection,
    target: &Target,
    out: Outgoing<'_>,
    config: &ClientBuilder,
    timings: &mut Timings,
) -> Result<Exchange> {
    let body = out.body.map(Body::take).transpose()?;
    let sent = Instant::now();
    let ex = conn
        .send(out.method, &target.uri, out.headers, body, config.max_body)
        .await?;
    timings.first_byte = ex.first_byte.duration_since(sent);
    Ok(Exchange {
        status: ex.status,
        headers: ex.headers,
        body: WireBody::Full(ex.body),
    })
}

/// Counts a handshake that resumed a TLS session (TCP or QUIC).
fn count_resumption(client: &ClientInner, info: &crate::tls::TlsInfo) {
    if info.resumed {
        client.counters.tls_resumed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tls_resumed_total").increment(1);
    }
}

/// Sends one request on a pooled HTTP/2 connection.
pub(super) async fn exchange_h2(
    conn: &H2Connection,
    target: &Target,
    out: Outgoing<'_>,
    config: &ClientBuilder,
    timings: &mut Timings,
) -> Result<Exchange> {
    let Outgoing {
        method,
        headers,
        body,
        streaming,
        priority,
    } = out;
    let (headers, body) = (headers.to_vec(), body.map(Body::take).transpose()?);
    let sent = Instant::now();
    let head = http::Request::builder()
        .method(method.clone())
        .uri(&target.uri)
        .version(Version::HTTP_2)
        .body(())
        .map_err(|e| Error::invalid_url(&target.uri, e))?;
    let ex = conn
        .send_head(
            head,
            headers,
            body,
            config.profile.http2.cookie_crumbling,
            priority,
        )
        .await?;
    timings.first_byte = ex.first_byte.duration_since(sent);
    let body = if streaming {
        let chunks = futures_util::stream::try_unfold(ex.body, |mut body| async move {
            Ok(body.chunk().await?.map(|chunk| (chunk, body)))
        });
        WireBody::Open(Box::pin(chunks))
    } else {
        WireBody::Full(ex.body.read_to_end(config.max_body).await?)
    };
    let (parts, ()) = ex.response.into_parts();
    let headers = parts
        .headers
        .into_iter()
        .fold(Vec::new(), |mut acc, (n, v)| {
            let name = n.or_else(|| {
                acc.last()
                    .map(|(n, _): &(HeaderName, HeaderValue)| n.clone())
            });
            if let Some(name) = name {
                acc.push((name, v));
            }
            acc
        });
    Ok(Exchange {
        status: parts.status,
        headers,
        body,
    })
}

/// Sends one request on an HTTP/1.1 connection (this request's alone). The
/// connection goes to `give_back` once the body ended where its framing said and the
/// server keeps the connection open; otherwise it is dropped (closed).
pub(super) async fn exchange_h1(
    mut conn: H1Connection<MaybeTls>,
    target: &Target,
    out: Outgoing<'_>,
    config: &ClientBuilder,
    timings: &mut Timings,
    give_back: GiveBack,
) -> Result<Exchange> {
    let Outgoing {
        method,
        headers,
        body,
        streaming,
        ..
    } = out;
    let body = body.map(Body::take).transpose()?;
    let sent = Instant::now();
    if !streaming {
        let ex = conn
            .send(
                method,
                &target.authority,
                &target.path,
                headers,
                body,
                &config.profile.http1,
                config.max_body,
            )
            .await?;
        timings.first_byte = ex.first_byte.duration_since(sent);
        if ex.reusable {
            give_back(conn);
        }
        return Ok(Exchange {
            status: ex.status,
            headers: ex.headers,
            body: WireBody::Full(ex.body.into()),
        });
    }
    // A stream has no total limit: a declared length is not refused.
    let head = conn
        .send_head(
            method,
            &target.authority,
            &target.path,
            headers,
            body,
            &config.profile.http1,
            u64::MAX,
        )
        .await?;
    timings.first_byte = head.first_byte.duration_since(sent);
    let keep_alive = head.keep_alive;
    let state = (conn, head.body, Some(give_back));
    let chunks = futures_util::stream::try_unfold(state, move |mut state| async move {
        loop {
            let (conn, reader, _) = &mut state;
            let mut piece = Vec::new();
            let more = conn
                .read_body(reader, &mut piece, crate::body::STREAM_CHUNK, u64::MAX)
                .await?;
            if !piece.is_empty() {
                return Ok(Some((Bytes::from(piece), state)));
            }
            if !more {
                let (conn, reader, give_back) = state;
                if keep_alive && reader.delimited() {
                    if let Some(give_back) = give_back {
                        give_back(conn);
                    }
                }
                return Ok(None);
            }
        }
    });
    let body = WireBody::Open(Box::pin(chunks));
    Ok(Exchange {
        status: head.status,
        headers: head.headers,
        body,
    })
}
