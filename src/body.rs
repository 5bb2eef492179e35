//! Bodies both ways. A request's [`Body`]: bytes in memory, which can be sent as often
//! as a 307/308 redirect or a retry needs, or a stream, read once as it is sent (so
//! such a request is never retried, and a redirect that would send it again is an
//! error saying so). A response body read as it arrives: [`BodyStream`], what a
//! streaming request (`send_streaming` on any builder) hands back instead of a
//! buffered body.
//!
//! The stream yields the body in chunks as the connection delivers them, decoded
//! (`Content-Encoding`) on the way when the client decodes, in pieces of at most
//! [`STREAM_CHUNK`] bytes, so memory stays bounded however large the body and however
//! compressible its encoding: a decompression bomb costs time only while the reader
//! keeps reading, never memory. The stream has no total limit (that is the point of
//! streaming); [`BodyStream::bytes`] and [`BodyStream::text`], which buffer, stop at
//! the client's body limit.
//!
//! While the stream is open it keeps what it was read for alive: the HTTP/1.1
//! connection (given back to the pool when the body ended where its framing said),
//! the HTTP/2 stream (reset when the body is dropped unread), and the session's
//! in-flight mark, so the engine's reaper never closes a session in the middle of a
//! download. Everything is released when the body ends, fails or is dropped.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{Stream, StreamExt};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::decode::{looks_zlib, Coding};
use crate::error::{Error, Result};

/// Most bytes one chunk of a [`BodyStream`] carries.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// The chunks of a body, boxed: the layers compose sources, decoders and guards.
pub(crate) type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Something kept alive until the body ends (a session's in-flight mark).
pub(crate) type Guard = Box<dyn Send + Sync>;

/// A request body: bytes in memory, or a stream read once (see the module
/// documentation). Cheap to clone; clones of a streamed body share the one stream.
///
/// ```
/// use bytes::Bytes;
/// use mummer::Body;
///
/// let body = Body::from("a=1");
/// assert_eq!((body.len(), body.is_replayable()), (Some(3), true));
///
/// let parts = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("a=1"))]);
/// let body = Body::wrap_stream(parts, None);
/// assert_eq!((body.len(), body.is_replayable()), (None, false));
/// ```
#[derive(Clone)]
pub struct Body(BodyKind);

#[derive(Clone)]
enum BodyKind {
    Full(Bytes),
    Stream {
        /// Taken by the one send that reads it.
        chunks: std::sync::Arc<std::sync::Mutex<Option<Chunks>>>,
        len: Option<u64>,
    },
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            BodyKind::Full(bytes) => f.debug_tuple("Body").field(&bytes.len()).finish(),
            BodyKind::Stream { len, .. } => {
                f.debug_struct("Body").field("stream_len", len).finish()
            }
        }
    }
}

impl Body {
    /// A body read from `stream` as it is sent, `len` bytes long when known (then
    /// sent with that `Content-Length`, and a stream of another length is an error;
    /// unknown: chunked over HTTP/1.1, open-ended DATA frames over HTTP/2). An error
    /// from the stream aborts the request with it.
    pub fn wrap_stream<S, E>(stream: S, len: Option<u64>) -> Body
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let chunks = stream.map(|item| {
            item.map_err(|e| {
                Error::invalid_input(format!("the request body stream failed: {}", e.into()))
            })
        });
        Body(BodyKind::Stream {
            chunks: std::sync::Arc::new(std::sync::Mutex::new(Some(Box::pin(chunks)))),
            len,
        })
    }

    /// The length, when known.
    pub fn len(&self) -> Option<u64> {
        match &self.0 {
            BodyKind::Full(bytes) => Some(bytes.len() as u64),
            BodyKind::Stream { len, .. } => *len,
        }
    }

    /// Whether it is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The bytes of a body in memory (`None` for a stream).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.0 {
            BodyKind::Full(bytes) => Some(bytes),
            BodyKind::Stream { .. } => None,
        }
    }

    /// Whether it can be sent more than once (it is in memory).
    pub fn is_replayable(&self) -> bool {
        matches!(self.0, BodyKind::Full(_))
    }

    /// What goes on the wire: the bytes, or the stream (taken: a second send of the
    /// same streamed body finds it gone).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] when the stream was already sent.
    pub(crate) fn take(&self) -> Result<SendBody> {
        match &self.0 {
            BodyKind::Full(bytes) => Ok(SendBody::Full(bytes.clone())),
            BodyKind::Stream { chunks, len } => {
                let taken = chunks.lock().unwrap_or_else(|p| p.into_inner()).take();
                match taken {
                    Some(chunks) => Ok(SendBody::Stream(chunks, *len)),
                    None => Err(Error::invalid_input(
                        "the streamed request body was already sent once and cannot be sent again (a retry or a 307/308 redirect needs a body in memory)",
                    )),
                }
            }
        }
    }
}

/// A request body as one send takes it.
pub(crate) enum SendBody {
    Full(Bytes),
    /// The chunks, and the declared length if any.
    Stream(Chunks, Option<u64>),
}

impl SendBody {
    /// Nothing to send (no DATA frame, no body bytes).
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, SendBody::Full(bytes) if bytes.is_empty())
            || matches!(self, SendBody::Stream(_, Some(0)))
    }
}

/// Counts a streamed request body against its declared length.
pub(crate) struct LengthCheck {
    declared: Option<u64>,
    sent: u64,
}

impl LengthCheck {
    pub(crate) fn new(declared: Option<u64>) -> LengthCheck {
        LengthCheck { declared, sent: 0 }
    }

    /// Counts `n` more bytes; an error past the declared length.
    pub(crate) fn add(&mut self, n: usize) -> Result<()> {
        self.sent += n as u64;
        match self.declared {
            Some(declared) if self.sent > declared => Err(self.mismatch(declared)),
            _ => Ok(()),
        }
    }

    /// At the end of the stream: an error if it fell short of the declared length.
    pub(crate) fn finish(&self) -> Result<()> {
        match self.declared {
            Some(declared) if self.sent != declared => Err(self.mismatch(declared)),
            _ => Ok(()),
        }
    }

    fn mismatch(&self, declared: u64) -> Error {
        Error::invalid_input(format!(
            "the request body stream gave {} bytes or more, not the {declared} it declared",
            self.sent
        ))
    }
}

impl<T: Into<Bytes>> From<T> for Body {
    fn from(bytes: T) -> Body {
        Body(BodyKind::Full(bytes.into()))
    }
}

/// A response body still arriving: see the module documentation.
pub struct BodyStream {
    /// `None` once the body has ended or failed. In a mutex only so that a response
    /// is `Sync` (a handler may hold one across an await); only `&mut self` reads it,
    /// so the lock is never contended nor taken.
    chunks: Option<std::sync::Mutex<Chunks>>,
    guards: Vec<Guard>,
    /// What [`BodyStream::bytes`] buffers at most.
    buffer_limit: u64,
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyStream")
            .field("open", &self.chunks.is_some())
            .field("buffer_limit", &self.buffer_limit)
            .finish_non_exhaustive()
    }
}

impl BodyStream {
    /// A body made of `chunks`, buffered by [`BodyStream::bytes`] up to `buffer_limit`.
    pub(crate) fn new(chunks: Chunks, buffer_limit: u64) -> BodyStream {
        BodyStream {
            chunks: Some(std::sync::Mutex::new(chunks)),
            guards: Vec::new(),
            buffer_limit,
        }
    }

    /// A body that is already whole (a cached answer).
    pub(crate) fn full(body: Bytes) -> BodyStream {
        let limit = body.len() as u64;
        let once = futures_util::stream::iter((!body.is_empty()).then_some(Ok(body)));
        BodyStream::new(Box::pin(once), limit)
    }

    /// Keeps `guard` until the body ends, fails or is dropped.
    pub(crate) fn keep(&mut self, guard: Guard) {
        if self.chunks.is_some() {
            self.guards.push(guard);
        }
    }

    /// The next chunk, `None` at the end.
    ///
    /// # Errors
    ///
    /// The transport's ([`Error::is_protocol`] for a truncated or malformed body,
    /// [`Error::is_timeout`]) and the decoder's ([`Error::is_decode`]); the body is over
    /// after an error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let Some(chunks) = self.chunks.as_mut() else {
            return Ok(None);
        };
        let chunks = chunks.get_mut().unwrap_or_else(|p| p.into_inner());
        match chunks.next().await {
            Some(Ok(chunk)) => Ok(Some(chunk)),
            end => {
                self.chunks = None;
                self.guards.clear();
                end.transpose()
            }
        }
    }

    /// The rest of the body, buffered.
    ///
    /// # Errors
    ///
    /// [`Error::is_body_too_large`] past the client's body limit (`max_decoded_body`
    /// when decoding, `max_body` otherwise), and [`BodyStream::chunk`]'s errors.
    pub async fn bytes(mut self) -> Result<Bytes> {
        let mut whole = Gather::new(self.buffer_limit);
        while let Some(chunk) = self.chunk().await? {
            whole.push(chunk)?;
        }
        Ok(whole.finish())
    }

    /// The rest of the body, buffered (as [`BodyStream::bytes`]) and read as UTF-8,
    /// invalid sequences replaced.
    ///
    /// # Errors
    ///
    /// As [`BodyStream::bytes`].
    pub async fn text(self) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.bytes().await?).into_owned())
    }

    /// The chunks as a [`Stream`] (for `StreamExt` combinators, `axum` bodies and the
    /// like); the guards go with it.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes>> + Send {
        futures_util::stream::unfold(self, |mut body| async move {
            body.chunk().await.transpose().map(|item| (item, body))
        })
    }
}

/// A body's chunks gathered into one buffer under a limit. A body that arrives in one
/// chunk is kept as that chunk's buffer (no copy); longer ones are copied into one.
pub(crate) struct Gather {
    first: Option<Bytes>,
    gathered: BytesMut,
    len: u64,
    limit: u64,
}

impl Gather {
    pub(crate) fn new(limit: u64) -> Gather {
        Gather {
            first: None,
            gathered: BytesMut::new(),
            len: 0,
            limit,
        }
    }

    /// Adds the next chunk; [`Error::is_body_too_large`] past the limit.
    pub(crate) fn push(&mut self, chunk: Bytes) -> Result<()> {
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            return Err(Error::body_too_large(format!(
                "response body is larger than the {}-byte limit",
                self.limit
            )));
        }
        match self.first.take() {
            None if self.gathered.is_empty() => self.first = Some(chunk),
            earlier => {
                if let Some(earlier) = earlier {
                    self.gathered.extend_from_slice(&earlier);
                }
                self.gathered.extend_from_slice(&chunk);
            }
        }
        Ok(())
    }

    /// The whole body.
    pub(crate) fn finish(self) -> Bytes {
        self.first.unwrap_or_else(|| self.gathered.freeze())
    }
}

/// `chunks`, failing with a timeout when the next chunk takes longer than `limit`.
pub(crate) fn with_idle_timeout(chunks: Chunks, limit: std::time::Duration) -> Chunks {
    Box::pin(futures_util::stream::unfold(
        Some(chunks),
        move |chunks| async move {
            let mut chunks = chunks?;
            match tokio::time::timeout(limit, chunks.next()).await {
                Ok(Some(item)) => Some((item, Some(chunks))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(Error::timeout(format!(
                    "no body bytes for {limit:?} (the client's deadline, per chunk when streaming)"
                ))),
                    None,
                )),
            }
        },
    ))
}

/// `raw` with `codings` (in the order applied) undone, in pieces of at most
/// [`STREAM_CHUNK`] bytes.
pub(crate) fn decoded(raw: Chunks, codings: Vec<Coding>) -> Chunks {
    if codings.is_empty() {
        return raw;
    }
    enum State {
        Start(Chunks, Vec<Coding>),
        Reading(Pin<Box<dyn AsyncBufRead + Send>>),
    }
    let state = State::Start(raw, codings);
    Box::pin(futures_util::stream::try_unfold(
        state,
        |state| async move {
            let mut reader = match state {
                State::Start(raw, codings) => decoder(raw, &codings).await?,
                State::Reading(reader) => reader,
            };
            let mut piece = BytesMut::with_capacity(STREAM_CHUNK);
            while piece.len() < STREAM_CHUNK {
                let n = reader.read_buf(&mut piece).await.map_err(decode_error)?;
                if n == 0 {
                    break;
                }
            }
            if piece.is_empty() {
                return Ok(None);
            }
            Ok(Some((piece.freeze(), State::Reading(reader))))
        },
    ))
}

/// The reader that undoes `codings` over `raw`. Written over async-compression's
/// decoders; a `deflate` body's first bytes tell zlib from raw deflate, as in the
/// buffered decoder.
async fn decoder(raw: Chunks, codings: &[Coding]) -> Result<Pin<Box<dyn AsyncBufRead + Send>>> {
    use async_compression::tokio::bufread::{
        BrotliDecoder, DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder,
    };
    let io = raw.map(|chunk| chunk.map_err(std::io::Error::other));
    let mut reader: Pin<Box<dyn AsyncBufRead + Send>> =
        Box::pin(tokio_util::io::StreamReader::new(io));
    for coding in codings.iter().rev() {
        reader = match coding {
            Coding::Gzip => {
                let mut d = GzipDecoder::new(reader);
                d.multiple_members(true);
                Box::pin(BufReader::new(d))
            }
            Coding::Deflate => {
                // Two bytes tell zlib from raw deflate; they may come in two chunks.
                let mut prefix = Vec::with_capacity(2);
                while prefix.len() < 2 {
                    let mut pinned = reader.as_mut();
                    let buf = pinned.fill_buf().await.map_err(decode_error)?;
                    if buf.is_empty() {
                        break;
                    }
                    let take = (2 - prefix.len()).min(buf.len());
                    prefix.extend_from_slice(&buf[..take]);
                    pinned.consume(take);
                }
                let zlib = looks_zlib(&prefix);
                let whole = std::io::Cursor::new(prefix).chain(reader);
                if zlib {
                    Box::pin(BufReader::new(ZlibDecoder::new(whole)))
                } else {
                    Box::pin(BufReader::new(DeflateDecoder::new(whole)))
                }
            }
            Coding::Brotli => Box::pin(BufReader::new(BrotliDecoder::new(reader))),
            Coding::Zstd => Box::pin(BufReader::new(ZstdDecoder::new(reader))),
        };
    }
    Ok(reader)
}

/// An error out of the decoding reader: the transport's own error when it came from
/// the body underneath, a decode error otherwise.
fn decode_error(e: std::io::Error) -> Error {
    match e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        true => match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            _ => Error::decode("decoding the body failed"),
        },
        false => Error::decode(format!("decoding the body: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn chunks_of(data: &[u8], size: usize) -> Chunks {
        let parts: Vec<Result<Bytes>> = data
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures_util::stream::iter(parts))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn every_coding_decodes_across_chunk_boundaries() {
        let plain: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&plain).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&plain).unwrap();
        let raw = raw.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        let mut br = Vec::new();
        brotli::BrotliCompress(&mut &plain[..], &mut br, &Default::default()).unwrap();
        for (coding, data) in [
            (Coding::Gzip, gz),
            (Coding::Deflate, zlib),
            (Coding::Deflate, raw),
            (Coding::Zstd, zst),
            (Coding::Brotli, br),
        ] {
            for size in [1, 4096] {
                let mut body =
                    BodyStream::new(decoded(chunks_of(&data, size), vec![coding]), u64::MAX);
                let mut got = Vec::new();
                block_on(async {
                    while let Some(c) = body.chunk().await.unwrap() {
                        assert!(c.len() <= STREAM_CHUNK);
                        got.extend_from_slice(&c);
                    }
                });
                assert!(got == plain, "{coding} in {size}-byte pieces");
            }
        }
    }

    #[test]
    fn a_bomb_is_read_in_bounded_pieces_and_buffering_stops_at_the_limit() {
        // 16 MiB of zeros compress to about 16 KiB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![0u8; 16 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        let mut body = BodyStream::new(
            decoded(chunks_of(&gz, 16 * 1024), vec![Coding::Gzip]),
            1 << 20,
        );
        let first = block_on(body.chunk()).unwrap().unwrap();
        assert_eq!(first.len(), STREAM_CHUNK);
        let e = block_on(body.bytes()).unwrap_err();
        assert!(e.is_body_too_large(), "{e}");
    }

    #[test]
    fn corrupt_data_and_transport_errors_end_the_stream_with_their_cause() {
        let mut body = BodyStream::new(
            decoded(chunks_of(b"not gzip at all", 4), vec![Coding::Gzip]),
            1 << 20,
        );
        let e = block_on(body.chunk()).unwrap_err();
        assert!(e.is_decode(), "{e}");
        assert!(
            block_on(body.chunk()).unwrap().is_none(),
            "over after an error"
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        let gz = gz.finish().unwrap();
        let failing: Chunks = Box::pin(futures_util::stream::iter(vec![
            Ok(Bytes::copy_from_slice(&gz[..4])),
            Err(Error::protocol("truncated body")),
        ]));
        let e = block_on(BodyStream::new(decoded(failing, vec![Coding::Gzip]), 1 << 20).bytes())
            .unwrap_err();
        assert!(
            e.is_protocol() && e.to_string().contains("truncated"),
            "{e}"
        );
    }

    #[test]
    fn guards_are_released_at_the_end_and_on_drop() {
        let live = std::sync::Arc::new(());
        let mut body = BodyStream::new(chunks_of(b"abc", 2), 10);
        body.keep(Box::new(live.clone()));
        assert_eq!(std::sync::Arc::strong_count(&live), 2);
        assert_eq!(block_on(body.bytes()).unwrap(), "abc");
        assert_eq!(std::sync::Arc::strong_count(&live), 1);

        let mut body = BodyStream::new(chunks_of(b"abc", 2), 10);
        body.keep(Box::new(live.clone()));
        drop(body);
        assert_eq!(std::sync::Arc::strong_count(&live), 1);
    }
}
