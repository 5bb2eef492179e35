//! Reading a TLS connection's socket a buffer at a time instead of a record header at a
//! time: [`ReadAhead`] sits between the socket and BoringSSL.
//!
//! BoringSSL reads a TLS record in two exact reads, its 5-byte header and then its
//! body, so a 1 KiB HTTP/2 response (a HEADERS record, a DATA record) took four
//! `recvfrom` calls and a fifth that found nothing; every peer built on BoringSSL
//! does the same (strace of the peers bench, `docs/benchmarks.md`). Here one read
//! takes whatever the socket holds, up to [`READ_AHEAD`] bytes, and BoringSSL's small
//! reads are served from it.
//!
//! Written by hand because `tokio::io::BufReader` keeps its buffer for the life of
//! the connection: 17 KiB more for every pooled, idle connection. This buffer is let
//! go whenever the socket is drained and the read would wait, as Chromium's socket
//! adapter under BoringSSL does, so an idle connection holds none. Let go to a few
//! spares per thread rather than to the allocator: allocating and freeing 17 KiB on
//! every drain cost about 1 800 instructions per request (callgrind, peers bench). A
//! read at least as large as the buffer goes straight to the socket.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most one socket read takes: a whole TLS record of the largest size (16 KiB of
/// plaintext, its header, tag and padding allowance) fits, as in Chromium.
pub(crate) const READ_AHEAD: usize = 17 * 1024;

/// Drained buffers each thread keeps for the next connection that reads: at most
/// this many, 17 KiB each, however many connections the thread drives.
const SPARES_PER_THREAD: usize = 4;

thread_local! {
    static SPARES: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of [`READ_AHEAD`] bytes: a spare of this thread's, or a new one.
fn take_spare() -> BytesMut {
    SPARES
        .with(|spares| spares.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_AHEAD))
}

/// Keeps `buffer` (empty) as one of this thread's spares, or frees it when the thread
/// has enough.
fn give_back(mut buffer: BytesMut) {
    if buffer.capacity() == 0 {
        return;
    }
    buffer.clear();
    // Empty and not shared: this moves its start back instead of allocating.
    buffer.reserve(READ_AHEAD);
    SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < SPARES_PER_THREAD {
            spares.push(buffer);
        }
    });
}

/// A stream whose reads take up to [`READ_AHEAD`] bytes from `inner` at once and hand
/// them out as asked; writes pass straight through.
pub(crate) struct ReadAhead<S> {
    inner: S,
    /// Bytes read from `inner` and not handed out yet; no allocation while empty and
    /// waiting.
    held: BytesMut,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`; nothing is allocated until the first read.
    pub(crate) fn new(inner: S) -> ReadAhead<S> {
        ReadAhead {
            inner,
            held: BytesMut::new(),
        }
    }

    /// Whether a read buffer is allocated now (for the tests: none while idle).
    #[cfg(test)]
    fn holds_buffer(&self) -> bool {
        self.held.capacity() > 0
    }
}

impl<S> Drop for ReadAhead<S> {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.held));
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if dst.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.held.is_empty() {
            if dst.remaining() >= READ_AHEAD {
                // As much as the buffer would take: no copy through it.
                give_back(std::mem::take(&mut this.held));
                return Pin::new(&mut this.inner).poll_read(cx, dst);
            }
            if this.held.capacity() == 0 {
                this.held = take_spare();
            } else {
                this.held.reserve(READ_AHEAD);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.held) {
                Poll::Pending => {
                    // Drained and waiting: an idle connection keeps no buffer.
                    give_back(std::mem::take(&mut this.held));
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    give_back(std::mem::take(&mut this.held));
                    return Poll::Ready(Err(e));
                }
                // Zero bytes is the end of the stream: `dst` stays as it was.
                Poll::Ready(Ok(_)) => {}
            }
        }
        let n = dst.remaining().min(this.held.len());
        dst.put_slice(&this.held[..n]);
        this.held.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use futures_util::FutureExt;
    use tokio::io::AsyncReadExt;

    /// A socket that hands out scripted chunks, one per read (`None`: would wait),
    /// and counts the reads it was asked for and the largest buffer offered.
    struct Scripted {
        chunks: VecDeque<Option<io::Result<Vec<u8>>>>,
        reads: usize,
        largest_offer: usize,
    }

    impl Scripted {
        fn new(chunks: Vec<Option<io::Result<Vec<u8>>>>) -> Scripted {
            Scripted {
                chunks: chunks.into(),
                reads: 0,
                largest_offer: 0,
            }
        }
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            dst: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            this.largest_offer = this.largest_offer.max(dst.remaining());
            match this.chunks.pop_front() {
                // The end of the script is the end of the stream.
                None => Poll::Ready(Ok(())),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(Some(Err(e))) => Poll::Ready(Err(e)),
                Some(Some(Ok(mut bytes))) => {
                    let n = dst.remaining().min(bytes.len());
                    dst.put_slice(&bytes[..n]);
                    bytes.drain(..n);
                    if !bytes.is_empty() {
                        this.chunks.push_front(Some(Ok(bytes)));
                    }
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    /// What BoringSSL asks for: a 5-byte header, then the record body it announces.
    fn record(body_len: usize, fill: u8) -> Vec<u8> {
        let mut r = vec![23, 3, 3];
        r.extend_from_slice(&u16::try_from(body_len).unwrap_or(u16::MAX).to_be_bytes());
        r.extend(std::iter::repeat_n(fill, body_len));
        r
    }

    async fn read_records(stream: &mut ReadAhead<Scripted>, count: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..count {
            let mut header = [0u8; 5];
            stream.read_exact(&mut header).await.expect("header");
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await.expect("body");
            let mut whole = header.to_vec();
            whole.extend(body);
            out.push(whole);
        }
        out
    }

    #[tokio::test]
    async fn records_that_arrived_together_are_read_from_the_socket_once() {
        let (a, b) = (record(1041, 1), record(37, 2));
        let both: Vec<u8> = a.iter().chain(&b).copied().collect();
        let mut stream = ReadAhead::new(Scripted::new(vec![Some(Ok(both)), None]));
        let got = read_records(&mut stream, 2).await;
        assert_eq!(got, vec![a, b], "the bytes come out as they went in");
        assert_eq!(stream.inner.reads, 1, "four record reads, one socket read");
        assert!(stream.inner.largest_offer >= READ_AHEAD);
    }

    #[tokio::test]
    async fn a_drained_socket_that_would_wait_leaves_no_buffer_behind() {
        let first = record(100, 7);
        let later = record(200, 8);
        let mut stream = ReadAhead::new(Scripted::new(vec![
            Some(Ok(first.clone())),
            None,
            Some(Ok(later.clone())),
        ]));
        assert!(!stream.holds_buffer(), "nothing allocated before a read");
        assert_eq!(read_records(&mut stream, 1).await, vec![first]);
        // The next read waits once (the scripted `None`) before the second record.
        let mut header = [0u8; 5];
        let waited = stream.read_exact(&mut header).now_or_never();
        assert!(waited.is_none(), "the socket had nothing yet");
        assert!(!stream.holds_buffer(), "an idle connection holds no buffer");
        let mut rest = vec![0u8; later.len()];
        stream
            .read_exact(&mut rest)
            .await
            .expect("the later record");
        assert_eq!(rest, later);
    }

    fn spares_here() -> usize {
        SPARES.with(|spares| spares.borrow().len())
    }

    #[tokio::test]
    async fn drained_buffers_are_kept_for_the_next_read_a_few_per_thread() {
        let mut streams: Vec<ReadAhead<Scripted>> = (0..6)
            .map(|i| ReadAhead::new(Scripted::new(vec![Some(Ok(record(10, i))), None])))
            .collect();
        // Six connections holding bytes at once: six buffers.
        for stream in &mut streams {
            let mut header = [0u8; 5];
            stream.read_exact(&mut header).await.expect("header");
            assert!(stream.holds_buffer());
        }
        assert_eq!(spares_here(), 0);
        for stream in &mut streams {
            let mut body = [0u8; 10];
            stream.read_exact(&mut body).await.expect("body");
            let mut header = [0u8; 5];
            assert!(stream.read_exact(&mut header).now_or_never().is_none());
            assert!(!stream.holds_buffer());
        }
        assert_eq!(spares_here(), SPARES_PER_THREAD, "six drained, four kept");
        let mut next = ReadAhead::new(Scripted::new(vec![Some(Ok(record(10, 9)))]));
        read_records(&mut next, 1).await;
        assert_eq!(
            spares_here(),
            SPARES_PER_THREAD - 1,
            "the next read took one"
        );
        drop(next);
        assert_eq!(
            spares_here(),
            SPARES_PER_THREAD,
            "and gave it back as it closed"
        );
    }

    #[tokio::test]
    async fn a_read_as_large_as_the_buffer_goes_straight_to_the_socket() {
        let big = vec![9u8; READ_AHEAD + 10];
        let mut stream = ReadAhead::new(Scripted::new(vec![Some(Ok(big.clone()))]));
        let mut dst = vec![0u8; READ_AHEAD + 10];
        stream.read_exact(&mut dst).await.expect("read");
        assert_eq!(dst, big);
        assert!(!stream.holds_buffer(), "no copy through a buffer");
    }

    #[tokio::test]
    async fn the_end_of_the_stream_and_errors_come_through() {
        let mut stream = ReadAhead::new(Scripted::new(vec![Some(Ok(vec![1, 2, 3]))]));
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.expect("to the end");
        assert_eq!(all, vec![1, 2, 3]);

        let refused = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let mut stream = ReadAhead::new(Scripted::new(vec![Some(Err(refused))]));
        let mut one = [0u8; 1];
        let e = stream.read(&mut one).await.expect_err("the socket's error");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(!stream.holds_buffer());
    }
}
