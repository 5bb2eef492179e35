//! HTTP/2 servers that misbehave on purpose (issue 16): each answers the client's first
//! request with a scripted run of raw frames, and the client must come back with a typed
//! error within its deadline (or, where the misbehaviour is legal, the right answer),
//! with bounded memory and no panic. Covered: a response without `:status`, with a
//! duplicate or misplaced pseudo-header or a request pseudo-header, an HPACK table size
//! update above what the client allows, SETTINGS, PING and WINDOW_UPDATE floods, a window
//! pushed past 2^31-1, DATA frames over the frame size or on stream 0, RST_STREAM and GOAWAY in the
//! middle of a body, a `content-length` that lies or overflows, and a server that
//! completes the handshake and then never answers.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mummer::inspect::SelfSignedCert;
use mummer::{Client, Profile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// One frame: the 9-byte header and the payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame fits");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(first: u8, n: u32, mut value: u64, out: &mut Vec<u8>) {
    let max = (1u64 << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields without indexing, new names, no Huffman.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(0, 7, name.len() as u64, &mut out);
        out.extend(name.as_bytes());
        hpack_int(0, 7, value.len() as u64, &mut out);
        out.extend(value.as_bytes());
    }
    out
}

fn headers(stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &block(fields))
}

/// What the server does once the client's first HEADERS frame (stream `id`) arrived.
type Script = fn(u32) -> Vec<u8>;

/// A TLS server speaking h2 only: it sends an empty SETTINGS, acknowledges the client's,
/// and answers the first request with `script`; then it reads until the client leaves.
async fn hostile_server(script: Script) -> u16 {
    let cert = Arc::new(SelfSignedCert::generate(&["hostile.test".to_string()]).expect("cert"));
    let acceptor = Arc::new(cert.acceptor(&[b"h2"]).expect("acceptor"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = tokio_boring::accept(&acceptor, tcp).await else {
                    return;
                };
                let (mut rd, mut wr) = tokio::io::split(tls);
                if wr.write_all(&frame(SETTINGS, 0, 0, &[])).await.is_err() {
                    return;
                }
                let mut preface = [0u8; 24];
                if rd.read_exact(&mut preface).await.is_err() {
                    return;
                }
                let mut answered = false;
                loop {
                    let mut head = [0u8; 9];
                    if rd.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    let mut payload = vec![0u8; len];
                    if rd.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    let (kind, flags) = (head[3], head[4]);
                    let stream =
                        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    let reply = match kind {
                        SETTINGS if flags & ACK == 0 => frame(SETTINGS, ACK, 0, &[]),
                        HEADERS if !answered => {
                            answered = true;
                            script(stream)
                        }
                        _ => continue,
                    };
                    if wr.write_all(&reply).await.is_err() || wr.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The client's answer to `GET https://hostile.test/`, and how long it took.
async fn fetch(script: Script) -> (mummer::Result<mummer::Response>, Duration) {
    let port = hostile_server(script).await;
    let client = Client::builder(Profile::named("chrome-156-linux").expect("profile"))
        .insecure(true)
        .resolve(
            format!("hostile.test:{port}:127.0.0.1")
                .parse()
                .expect("resolve"),
        )
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let started = Instant::now();
    let result = client
        .get(&format!("https://hostile.test:{port}/"))
        .send()
        .await;
    (result, started.elapsed())
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A protocol error (or, for a server that goes quiet, a timeout) within the deadline.
async fn refused(what: &str, script: Script, timeout_ok: bool) {
    let (result, took) = fetch(script).await;
    let err = match result {
        Ok(r) => panic!("{what}: answered {} instead of an error", r.status()),
        Err(e) => e,
    };
    assert!(
        err.is_protocol() || (timeout_ok && err.is_timeout()),
        "{what}: not a protocol error: {err} ({err:?})"
    );
    assert!(took < Duration::from_secs(6), "{what}: took {took:?}");
}

#[tokio::test]
async fn malformed_pseudo_headers_are_protocol_errors() {
    refused(
        "no :status",
        |id| headers(id, &[("content-type", "text/plain")], true),
        false,
    )
    .await;
    refused(
        "two :status",
        |id| headers(id, &[(":status", "200"), (":status", "204")], true),
        false,
    )
    .await;
    refused(
        ":status after a regular field",
        |id| headers(id, &[("x-a", "1"), (":status", "200")], true),
        false,
    )
    .await;
    refused(
        "a request pseudo-header in a response",
        |id| headers(id, &[(":status", "200"), (":path", "/")], true),
        false,
    )
    .await;
    refused(
        "an unknown pseudo-header",
        |id| headers(id, &[(":status", "200"), (":colour", "red")], true),
        false,
    )
    .await;
    refused(
        "a status that is not three digits",
        |id| headers(id, &[(":status", "2000")], true),
        false,
    )
    .await;
}

#[tokio::test]
async fn hpack_and_length_lies_are_protocol_errors() {
    refused(
        "an HPACK table size update above the client's limit",
        |id| {
            let mut b = Vec::new();
            hpack_int(0x20, 5, 1 << 30, &mut b);
            b.extend(block(&[(":status", "200")]));
            frame(HEADERS, END_HEADERS | END_STREAM, id, &b)
        },
        false,
    )
    .await;
    refused(
        "an HPACK string longer than the block",
        |id| {
            let mut b = vec![0x00];
            hpack_int(0, 7, u32::MAX as u64, &mut b);
            b.extend(b"x");
            frame(HEADERS, END_HEADERS | END_STREAM, id, &b)
        },
        false,
    )
    .await;
    refused(
        "a content-length longer than the body",
        |id| {
            let mut out = headers(id, &[(":status", "200"), ("content-length", "10")], false);
            out.extend(frame(DATA, END_STREAM, id, b"abc"));
            out
        },
        false,
    )
    .await;
    refused(
        "a content-length that overflows 64 bits",
        |id| {
            headers(
                id,
                &[
                    (":status", "200"),
                    ("content-length", "99999999999999999999999"),
                ],
                true,
            )
        },
        false,
    )
    .await;
    refused(
        "a DATA frame over the client's MAX_FRAME_SIZE",
        |id| {
            let mut out = headers(id, &[(":status", "200")], false);
            out.extend(frame(DATA, END_STREAM, id, &vec![b'x'; 16_385]));
            out
        },
        false,
    )
    .await;
    refused(
        "DATA on stream 0",
        |id| {
            let mut out = headers(id, &[(":status", "200")], false);
            out.extend(frame(DATA, 0, 0, b"abcd"));
            out
        },
        false,
    )
    .await;
}

#[tokio::test]
async fn resets_and_goaways_mid_body_are_errors_not_short_bodies() {
    refused(
        "RST_STREAM after half the body",
        |id| {
            let mut out = headers(id, &[(":status", "200"), ("content-length", "8")], false);
            out.extend(frame(DATA, 0, id, b"abcd"));
            out.extend(frame(RST_STREAM, 0, id, &2u32.to_be_bytes()));
            out
        },
        false,
    )
    .await;
    refused(
        "RST_STREAM(NO_ERROR) after half a body without a length",
        |id| {
            let mut out = headers(id, &[(":status", "200")], false);
            out.extend(frame(DATA, 0, id, b"abcd"));
            out.extend(frame(RST_STREAM, 0, id, &0u32.to_be_bytes()));
            out
        },
        false,
    )
    .await;
    refused(
        "GOAWAY(INTERNAL_ERROR) after half the body, the stream not processed",
        |id| {
            let mut out = headers(id, &[(":status", "200")], false);
            out.extend(frame(DATA, 0, id, b"abcd"));
            let mut goaway = 0u32.to_be_bytes().to_vec();
            goaway.extend(2u32.to_be_bytes());
            out.extend(frame(GOAWAY, 0, 0, &goaway));
            out
        },
        false,
    )
    .await;
    refused(
        "a window pushed past 2^31-1",
        |id| {
            let mut out = headers(id, &[(":status", "200")], false);
            for _ in 0..2 {
                out.extend(frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()));
            }
            out
        },
        true,
    )
    .await;
    refused("a server that never answers", |_| Vec::new(), true).await;
}

#[tokio::test]
async fn control_frame_floods_stay_bounded() {
    let before = resident_kib();
    for (what, script) in [
        (
            "100 000 SETTINGS frames",
            (|id| {
                let mut out = Vec::new();
                for _ in 0..100_000 {
                    out.extend(frame(SETTINGS, 0, 0, &[]));
                }
                out.extend(headers(id, &[(":status", "200")], true));
                out
            }) as Script,
        ),
        ("100 000 PINGs", |id| {
            let mut out = Vec::new();
            for i in 0..100_000u64 {
                out.extend(frame(PING, 0, 0, &i.to_be_bytes()));
            }
            out.extend(headers(id, &[(":status", "200")], true));
            out
        }),
        ("100 000 WINDOW_UPDATEs of 1", |id| {
            let mut out = Vec::new();
            for _ in 0..100_000 {
                out.extend(frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()));
            }
            out.extend(headers(id, &[(":status", "200")], true));
            out
        }),
    ] {
        let (result, took) = fetch(script).await;
        // A client may answer or give up on the connection; it must not hang or grow.
        match result {
            Ok(r) => assert_eq!(r.status(), 200, "{what}"),
            Err(e) => assert!(e.is_protocol() || e.is_timeout(), "{what}: {e}"),
        }
        assert!(took < Duration::from_secs(6), "{what}: took {took:?}");
    }
    let grown = resident_kib().saturating_sub(before);
    assert!(grown < 256 * 1024, "resident size grew by {grown} KiB");
}
