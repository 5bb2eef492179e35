//! HTTP/2 with the `http2` crate, configured from a profile's [`Http2Profile`].
//!
//! Owns the connection preface (SETTINGS values and order, the connection WINDOW_UPDATE),
//! the pseudo-header order, each stream's HEADERS priority block (worked out by
//! [`crate::stream_priority`] and handed to the crate per request), the HPACK choices
//! (Huffman only when shorter, what enters the dynamic table), the first stream id,
//! and cookie crumbling.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http2::client::SendRequest;
use http2::frame::{PseudoId, PseudoOrder, SettingId, SettingsOrder, StreamDependency, StreamId};

use crate::body::{Chunks, Gather, LengthCheck, SendBody};
use crate::error::{Error, Result};
use crate::net::Io;
use crate::profile::{Http2Priority, Http2Profile, Http2Setting};
use crate::stream_priority::{OpenStreams, PriorityRule};

/// A live HTTP/2 connection: cheap to clone, one per origin in the pool.
#[derive(Clone, Debug)]
pub(crate) struct H2Connection {
    send: SendRequest<Bytes>,
    /// Set by the driver task when the connection ends (GOAWAY, error, EOF).
    closed: Arc<AtomicBool>,
    /// Streams this process has open on the connection.
    in_flight: Arc<AtomicUsize>,
    /// How each stream's HEADERS priority is worked out.
    rule: PriorityRule,
    /// The block the connection writes when a request carries none of its own (the
    /// request kind that opened it): a stream whose block is this one is sent without
    /// one.
    default_block: Http2Priority,
    /// The open streams and their weights, for the Chromium rule (untouched with the
    /// template rule).
    open: Arc<Mutex<OpenStreams>>,
}

/// Decrements the in-flight count when a request ends, however it ends, and takes
/// its stream off the open list.
struct InFlight {
    count: Arc<AtomicUsize>,
    stream: Option<(u32, Arc<Mutex<OpenStreams>>)>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        if let Some((id, open)) = self.stream.take() {
            lock(&open).closed(id);
        }
    }
}

/// The open-stream list, even if a panic elsewhere poisoned it (it stays consistent:
/// every change is one push or one remove).
fn lock(open: &Mutex<OpenStreams>) -> MutexGuard<'_, OpenStreams> {
    open.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the HTTP/2 handshake over `io` with the profile's preface and spawns the
/// connection driver.
pub(crate) async fn handshake<S>(
    io: S,
    profile: &Http2Profile,
    priority: Http2Priority,
) -> Result<H2Connection>
where
    S: Io + 'static,
{
    let mut builder = http2::client::Builder::new();
    let mut order = SettingsOrder::builder();
    for (setting, value) in &profile.settings {
        let value = *value;
        match setting {
            Http2Setting::HeaderTableSize => builder.header_table_size(value),
            Http2Setting::EnablePush => builder.enable_push(value != 0),
            Http2Setting::MaxConcurrentStreams => builder.max_concurrent_streams(value),
            Http2Setting::InitialWindowSize => builder.initial_window_size(value),
            Http2Setting::MaxFrameSize => builder.max_frame_size(value),
            Http2Setting::MaxHeaderListSize => builder.max_header_list_size(value),
        };
        order = order.push(setting_id(*setting));
    }
    builder.settings_order(order.build());
    // The connection window starts at 65 535; the WINDOW_UPDATE after SETTINGS raises it
    // by the profile's increment.
    builder
        .initial_connection_window_size(profile.connection_window_increment.saturating_add(65_535));
    let mut pseudo = PseudoOrder::builder();
    for p in &profile.pseudo_header_order {
        pseudo = pseudo.push(match p.as_str() {
            ":method" => PseudoId::Method,
            ":authority" => PseudoId::Authority,
            ":scheme" => PseudoId::Scheme,
            _ => PseudoId::Path,
        });
    }
    builder.headers_pseudo_order(pseudo.build());
    builder.headers_stream_dependency(stream_dependency(priority));
    builder.initial_stream_id(profile.initial_stream_id);
    builder.hpack_encoding(http2::EncodingPolicy {
        huffman_only_when_shorter: profile.huffman_only_when_shorter,
        browser_indexing: true,
        path_always_literal: profile.path_always_literal,
    });

    let (send, connection) = builder
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| Error::protocol(format!("HTTP/2 handshake: {e}")))?;
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let streams = in_flight.clone();
    tokio::spawn(async move {
        if let Err(e) = drive_coalescing_writes(connection, streams).await {
            tracing::debug!(error = %e, "HTTP/2 connection ended");
        }
        flag.store(true, Ordering::Release);
    });
    Ok(H2Connection {
        send,
        closed,
        in_flight,
        rule: profile.priority_rule,
        default_block: priority,
        open: Arc::default(),
    })
}

/// Drives `connection` one scheduler turn behind its wake-ups. A wake-up (a request
/// queued, bytes arrived) first lets the other tasks that are ready run, and the
/// requests they queue meanwhile leave in one write with it. Polled at once, the
/// driver wrote each request on its own: the scheduler runs a task woken by the
/// running one next, so with 256 requests in flight every finished request's successor
/// cost a `sendto` (20 105 for 20 000 requests at 256 in flight; 312 now, strace of
/// the peers bench). With at most one stream in flight (`streams`) nobody else can be
/// queueing on this connection, and the driver runs at once, as it did.
async fn drive_coalescing_writes<F: std::future::Future>(
    connection: F,
    streams: Arc<AtomicUsize>,
) -> F::Output {
    let mut connection = std::pin::pin!(connection);
    loop {
        let polled = std::future::poll_fn(|cx| Poll::Ready(connection.as_mut().poll(cx))).await;
        if let Poll::Ready(output) = polled {
            return output;
        }
        let alone = || streams.load(Ordering::Acquire) <= 1;
        // Pending: the connection left this task's waker where it waits. Sleep until
        // that wakes the task (the first `Pending`), then wake it again from inside
        // its own poll (the second), which the scheduler answers by queueing the task
        // behind the ready ones. Not `yield_now`: that one waits for the scheduler's
        // next look at the sockets, an `epoll_wait` per wake-up.
        let mut turns = 0;
        std::future::poll_fn(|cx| {
            turns += 1;
            match turns {
                1 => Poll::Pending,
                2 if !alone() => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                _ => Poll::Ready(()),
            }
        })
        .await;
    }
}

/// A profile's priority block as the crate takes it (weight on the wire is one less).
fn stream_dependency(priority: Http2Priority) -> StreamDependency {
    StreamDependency::new(
        StreamId::from(priority.depends_on),
        (priority.weight.clamp(1, 256) - 1) as u8,
        priority.exclusive,
    )
}

fn setting_id(s: Http2Setting) -> SettingId {
    match s {
        Http2Setting::HeaderTableSize => SettingId::HeaderTableSize,
        Http2Setting::EnablePush => SettingId::EnablePush,
        Http2Setting::MaxConcurrentStreams => SettingId::MaxConcurrentStreams,
        Http2Setting::InitialWindowSize => SettingId::InitialWindowSize,
        Http2Setting::MaxFrameSize => SettingId::MaxFrameSize,
        Http2Setting::MaxHeaderListSize => SettingId::MaxHeaderListSize,
    }
}

impl H2Connection {
    /// True once the connection has ended; the pool drops it.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Streams open on this connection now.
    pub fn streams_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// True when the connection can take another stream now (not closed, under the
    /// server's concurrency limit).
    pub fn has_capacity(&self) -> bool {
        let max = self.send.current_max_send_streams();
        !self.is_closed() && self.in_flight.load(Ordering::Acquire) < max
    }

    /// Sends one request and waits for the response head; the body is read after,
    /// from the returned [`H2Body`]. `priority` is the request kind's template block.
    pub async fn send_head(
        &self,
        head: Request<()>,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Option<SendBody>,
        crumble_cookies: bool,
        priority: Http2Priority,
    ) -> Result<H2Head> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let mut guard = InFlight {
            count: self.in_flight.clone(),
            stream: None,
        };
        let (mut parts, ()) = head.into_parts();
        parts.headers = header_map(headers, crumble_cookies);
        let request = Request::from_parts(parts, ());
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| Error::protocol(format!("HTTP/2 connection unusable: {e}")))?;
        let body = body.filter(|b| !b.is_empty());
        // The block depends on the streams open at this moment, so it is worked out
        // and the stream opened under one lock: two requests sent together see each
        // other in the order they leave.
        let (response, mut stream) = {
            let mut open = match self.rule {
                PriorityRule::Chromium => Some(lock(&self.open)),
                PriorityRule::Template => None,
            };
            let block = match &open {
                Some(open) => open.block_for(self.rule, priority),
                None => priority,
            };
            let own = (block != self.default_block).then(|| stream_dependency(block));
            let sent = send
                .send_request_with_dependency(request, body.is_none(), own)
                .map_err(|e| Error::protocol(format!("HTTP/2 send: {e}")))?;
            if let Some(open) = open.as_mut() {
                let id = u32::from(sent.0.stream_id());
                open.opened(id, block.weight);
                guard.stream = Some((id, self.open.clone()));
            }
            sent
        };
        match body {
            None => {}
            Some(SendBody::Full(bytes)) => stream
                .send_data(bytes, true)
                .map_err(|e| Error::protocol(format!("HTTP/2 request body: {e}")))?,
            Some(SendBody::Stream(chunks, len)) => send_stream(&mut stream, chunks, len).await?,
        }
        let response = response.await.map_err(h2_error)?;
        let first_byte = Instant::now();
        let (parts, recv) = response.into_parts();
        Ok(H2Head {
            response: Response::from_parts(parts, ()),
            first_byte,
            body: H2Body {
                recv,
                _in_flight: guard,
            },
        })
    }
}

/// A response head; its body is still on the stream.
pub(crate) struct H2Head {
    pub response: Response<()>,
    pub first_byte: Instant,
    pub body: H2Body,
}

/// A response body still arriving on its stream; the stream counts as in flight on
/// its connection until this is dropped (dropping it unread resets the stream).
pub(crate) struct H2Body {
    recv: http2::RecvStream,
    _in_flight: InFlight,
}

impl H2Body {
    /// The next DATA frame's bytes (their flow-control capacity is given back at
    /// once), `None` at the end of the stream.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        match self.recv.data().await {
            None => Ok(None),
            Some(Err(e)) => Err(h2_error(e)),
            Some(Ok(chunk)) => {
                let _ = self.recv.flow_control().release_capacity(chunk.len());
                Ok(Some(chunk))
            }
        }
    }

    /// The whole body, refusing more than `max_body` bytes.
    pub async fn read_to_end(mut self, max_body: u64) -> Result<Bytes> {
        let mut whole = Gather::new(max_body);
        while let Some(chunk) = self.chunk().await? {
            whole.push(chunk)?;
        }
        Ok(whole.finish())
    }
}

/// Sends a streamed request body as DATA frames, as the peer's flow-control window
/// lets it, then ends the stream.
async fn send_stream(
    stream: &mut http2::SendStream<Bytes>,
    mut chunks: Chunks,
    len: Option<u64>,
) -> Result<()> {
    use futures_util::StreamExt;
    let sending = |e: http2::Error| Error::protocol(format!("HTTP/2 request body: {e}"));
    let mut count = LengthCheck::new(len);
    while let Some(chunk) = chunks.next().await {
        let mut chunk = chunk?;
        count.add(chunk.len())?;
        while !chunk.is_empty() {
            stream.reserve_capacity(chunk.len());
            let granted = std::future::poll_fn(|cx| stream.poll_capacity(cx))
                .await
                .ok_or_else(|| {
                    Error::protocol("HTTP/2 stream closed while sending the request body")
                })?
                .map_err(sending)?;
            let piece = chunk.split_to(granted.min(chunk.len()));
            stream.send_data(piece, false).map_err(sending)?;
        }
    }
    count.finish()?;
    stream.send_data(Bytes::new(), true).map_err(sending)
}

fn h2_error(e: http2::Error) -> Error {
    if e.is_go_away() || e.is_reset() {
        Error::protocol(format!("HTTP/2 stream ended early: {e}"))
    } else {
        Error::protocol(format!("HTTP/2: {e}"))
    }
}

/// Builds the header map in wire order. With `crumble_cookies`, a `cookie` header is sent
/// as one field per pair (RFC 9113 §8.2.3), as browsers do for better HPACK reuse.
fn header_map(headers: Vec<(HeaderName, HeaderValue)>, crumble_cookies: bool) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if crumble_cookies && name == http::header::COOKIE {
            if let Ok(text) = value.to_str() {
                // Every crumb is a slice of one shared copy of the value: one allocation
                // for the header, not one per cookie.
                let whole = Bytes::copy_from_slice(text.as_bytes());
                let mut start = 0;
                for piece in text.split(';') {
                    let end = start + piece.len();
                    let from = start + (piece.len() - piece.trim_start().len());
                    let to = end - (piece.len() - piece.trim_end().len());
                    if from < to {
                        if let Ok(v) = HeaderValue::from_maybe_shared(whole.slice(from..to)) {
                            map.append(http::header::COOKIE, v);
                        }
                    }
                    start = end + 1;
                }
                continue;
            }
        }
        map.append(name, value);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection stand-in: each poll takes every request queued so far as one
    /// write, and ends once `expected` requests went out.
    struct FakeConnection {
        shared: Arc<std::sync::Mutex<FakeWire>>,
        expected: usize,
    }

    #[derive(Default)]
    struct FakeWire {
        queued: usize,
        writes: Vec<usize>,
        waker: Option<std::task::Waker>,
    }

    impl std::future::Future for FakeConnection {
        type Output = ();

        fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
            let mut wire = self.shared.lock().expect("wire");
            if wire.queued > 0 {
                let batch = std::mem::take(&mut wire.queued);
                wire.writes.push(batch);
            }
            if wire.writes.iter().sum::<usize>() == self.expected {
                return Poll::Ready(());
            }
            wire.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    // One worker, as in the peers bench: the scheduler runs a task woken by the
    // running one next (its LIFO slot), which is what sent one write per request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn requests_queued_by_tasks_that_are_ready_together_leave_in_one_write() {
        let shared = Arc::new(std::sync::Mutex::new(FakeWire::default()));
        let connection = FakeConnection {
            shared: shared.clone(),
            expected: 8,
        };
        let wire = shared.clone();
        // Eight streams open, as each request's `InFlight` would count them.
        let streams = Arc::new(AtomicUsize::new(8));
        let driver = tokio::spawn(drive_coalescing_writes(connection, streams));
        // Spawned from the worker, so the eight requests wait in its local queue; the
        // driver is waiting for them first.
        tokio::spawn(async move {
            while wire.lock().expect("wire").waker.is_none() {
                tokio::task::yield_now().await;
            }
            for _ in 0..8 {
                let wire = wire.clone();
                tokio::spawn(async move {
                    let mut w = wire.lock().expect("wire");
                    w.queued += 1;
                    if let Some(waker) = w.waker.take() {
                        waker.wake();
                    }
                });
            }
        })
        .await
        .expect("spawned");
        tokio::time::timeout(std::time::Duration::from_secs(10), driver)
            .await
            .expect("the driver ends once all eight went out")
            .expect("driver");
        let writes = shared.lock().expect("wire").writes.clone();
        assert_eq!(writes, vec![8], "one write for the eight requests");
    }

    #[test]
    fn cookies_are_crumbled_and_order_kept() {
        let h = vec![
            (
                HeaderName::from_static("user-agent"),
                HeaderValue::from_static("x"),
            ),
            (
                http::header::COOKIE,
                HeaderValue::from_static("a=1; b=2;c=3"),
            ),
            (
                HeaderName::from_static("priority"),
                HeaderValue::from_static("u=0, i"),
            ),
        ];
        let map = header_map(h, true);
        let names: Vec<_> = map.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["user-agent", "cookie", "cookie", "cookie", "priority"]
        );
        let cookies: Vec<_> = map.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2", "c=3"]);
    }

    #[test]
    fn crumbs_lose_the_spaces_and_empty_pieces_around_them() {
        let h = vec![(
            http::header::COOKIE,
            HeaderValue::from_static(" a=1;  b=2 ;;c=3 ; "),
        )];
        let map = header_map(h, true);
        let cookies: Vec<_> = map.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2", "c=3"]);
        let one = header_map(
            vec![(http::header::COOKIE, HeaderValue::from_static("x=1"))],
            true,
        );
        assert_eq!(one.get_all("cookie").iter().collect::<Vec<_>>(), ["x=1"]);
    }
}
