//! The per-origin connection pool: one multiplexed HTTP/2 connection per origin (more
//! when a server's stream limit is reached), idle keep-alive HTTP/1.1 connections, and
//! the dial gate that makes concurrent first requests to an origin share one dial.
//! Also the plain-or-TLS stream type the HTTP/1.1 connections run on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_boring::SslStream;

use super::ClientInner;
use crate::h1::H1Connection;
use crate::h2::H2Connection;
use crate::h3::H3Connection;
use crate::net::BoxedIo;
use crate::tls::TlsInfo;

pub(super) type OriginKey = (&'static str, String, u16);

/// An idle keep-alive HTTP/1.1 connection and the TLS details it was opened with.
pub(super) type IdleH1 = (H1Connection<MaybeTls>, Option<Arc<TlsInfo>>);

#[derive(Default)]
pub(super) struct Pool {
    pub(super) h2: HashMap<OriginKey, Vec<(H2Connection, Arc<TlsInfo>)>>,
    /// One HTTP/3 connection per origin (QUIC streams are plenty).
    pub(super) h3: HashMap<OriginKey, (H3Connection, Arc<TlsInfo>)>,
    pub(super) h1: HashMap<OriginKey, Vec<IdleH1>>,
    /// One connection attempt at a time per origin while it may speak HTTP/2, so that
    /// concurrent first requests share the connection the first one opens (as browsers
    /// do) instead of opening one each.
    pub(super) dial_gates: HashMap<OriginKey, Arc<tokio::sync::Mutex<()>>>,
    /// Origins whose server chose HTTP/1.1: connections are opened in parallel.
    pub(super) h1_origins: std::collections::HashSet<OriginKey>,
}

impl Pool {
    pub(super) fn lock(m: &Mutex<Pool>) -> std::sync::MutexGuard<'_, Pool> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Plain TCP for `http://`, TLS for `https://`.
pub(super) type MaybeTls = tokio_util_either::Either;

pub(super) mod tokio_util_either {
    //! A two-way stream enum so HTTP/1.1 connections of both schemes share one pool.
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    pub enum Either {
        Plain(super::BoxedIo),
        Tls(Box<super::SslStream<super::BoxedIo>>),
    }

    impl AsyncRead for Either {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                Either::Plain(s) => s.as_mut().poll_read(cx, buf),
                Either::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            }
        }
    }

    impl AsyncWrite for Either {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            match self.get_mut() {
                Either::Plain(s) => s.as_mut().poll_write(cx, buf),
                Either::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            }
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                Either::Plain(s) => s.as_mut().poll_flush(cx),
                Either::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            }
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            match self.get_mut() {
                Either::Plain(s) => s.as_mut().poll_shutdown(cx),
                Either::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            }
        }
    }
}

/// A connection to send one request on.
pub(super) enum Conn {
    /// HTTP/2 (over TLS), shared by concurrent requests.
    H2(H2Connection, Arc<TlsInfo>),
    /// HTTP/1.1, this request's alone until it is given back.
    H1(H1Connection<MaybeTls>, Option<Arc<TlsInfo>>),
    /// HTTP/3 (over QUIC), shared by concurrent requests.
    H3(H3Connection, Arc<TlsInfo>),
}

/// A pooled HTTP/2 connection with room for a stream, or else an idle HTTP/1.1 one.
pub(super) fn take_pooled(client: &ClientInner, key: &OriginKey) -> Option<Conn> {
    let mut pool = Pool::lock(&client.pool);
    let version = client.config.version;
    if matches!(
        version,
        super::HttpVersionPref::Http3Only
            | super::HttpVersionPref::Http3
            | super::HttpVersionPref::Auto
    ) && !pool.h3.is_empty()
    {
        if pool.h3.get(key).is_some_and(|(c, _)| c.is_closed()) {
            pool.h3.remove(key);
        }
        if let Some((c, info)) = pool.h3.get(key) {
            return Some(Conn::H3(c.clone(), info.clone()));
        }
    }
    if version == super::HttpVersionPref::Http3Only {
        return None;
    }
    if let Some(conns) = pool.h2.get_mut(key) {
        conns.retain(|(c, _)| !c.is_closed());
        if let Some((conn, info)) = conns.iter().find(|(c, _)| c.has_capacity()).cloned() {
            return Some(Conn::H2(conn, info));
        }
    }
    pool.h1
        .get_mut(key)
        .and_then(Vec::pop)
        .map(|(conn, info)| Conn::H1(conn, info))
}

/// A pooled connection to `key`, or else the permit to open one. Over TLS, concurrent
/// requests to an origin that may speak HTTP/2 wait for one dial among them (the
/// permit), then share its connection; HTTP/1.1-only origins and plain HTTP dial
/// at once.
pub(super) async fn take_pooled_or_gate(
    client: &ClientInner,
    key: &OriginKey,
    https: bool,
) -> (Option<Conn>, Option<tokio::sync::OwnedMutexGuard<()>>) {
    if !https {
        let idle = Pool::lock(&client.pool).h1.get_mut(key).and_then(Vec::pop);
        return (idle.map(|(conn, _)| Conn::H1(conn, None)), None);
    }
    if let Some(conn) = take_pooled(client, key) {
        return (Some(conn), None);
    }
    let gate = {
        let mut pool = Pool::lock(&client.pool);
        (!pool.h1_origins.contains(key))
            .then(|| pool.dial_gates.entry(key.clone()).or_default().clone())
    };
    match gate {
        Some(gate) => {
            let permit = gate.lock_owned().await;
            (take_pooled(client, key), Some(permit))
        }
        None => (None, None),
    }
}

pub(super) fn give_back_h1(
    client: &ClientInner,
    key: OriginKey,
    conn: H1Connection<MaybeTls>,
    info: Option<Arc<TlsInfo>>,
) {
    let mut pool = Pool::lock(&client.pool);
    let idle = pool.h1.entry(key).or_default();
    if idle.len() < client.config.max_idle_per_origin {
        idle.push((conn, info));
    }
}
