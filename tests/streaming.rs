//! Bodies read as they arrive, judged from both ends: a local HTTPS server trickles
//! large bodies (plain and gzip, over HTTP/2 and HTTP/1.1) and the test checks what the
//! reader got (every byte, in bounded chunks, past the buffered limit), what the
//! server saw (the HTTP/1.1 connection reused after a body read to its end, not after
//! one dropped half-way), that a stalled body times out, and that an engine does not
//! reap a session while its download is open.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mummer::client::HttpVersionPref;
use mummer::net::ConnectTo;
use mummer::{
    Body, Client, CloseReason, Engine, EngineEvent, Profile, Session, SessionConfig, STREAM_CHUNK,
};
use support::https::{HttpsServer, Reply};

/// 3 MiB that are not all alike (a position-dependent pattern).
fn big_body() -> Bytes {
    (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn gzip(data: &[u8]) -> Bytes {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap().into()
}

async fn site() -> (HttpsServer, tempfile::NamedTempFile) {
    let big = big_body();
    let big_gz = gzip(&big);
    let server = HttpsServer::start(move |req| match req.path() {
        "/big" => Reply::ok(big.clone()).trickle(256 * 1024, Duration::from_millis(5)),
        "/big.gz" => Reply::ok(big_gz.clone())
            .header("content-encoding", "gzip")
            .trickle(100 * 1024, Duration::from_millis(5)),
        "/to-big" => Reply::new(302).header("location", "/big"),
        "/upload" => Reply::ok(format!("{} bytes", req.body.len())),
        "/upload-307" => Reply::new(307).header("location", "/upload"),
        "/upload-303" => Reply::new(303).header("location", "/upload"),
        "/unavailable" => Reply::new(503),
        "/slow" => Reply::ok(vec![b's'; 40 * 1024]).trickle(2 * 1024, Duration::from_millis(60)),
        "/stall" => Reply::ok(vec![b'x'; 64 * 1024]).trickle(32 * 1024, Duration::from_secs(20)),
        _ => Reply::ok("small"),
    })
    .await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &server.cert_pem).unwrap();
    (server, ca)
}

fn route(server: &HttpsServer) -> ConnectTo {
    format!(":443:127.0.0.1:{}", server.addr.port())
        .parse()
        .unwrap()
}

fn client(server: &HttpsServer, ca: &tempfile::NamedTempFile, version: HttpVersionPref) -> Client {
    Client::builder(Profile::resolve("chrome-latest").unwrap())
        .ca_file(ca.path())
        .connect_to(route(server))
        .http_version(version)
        .max_body(1024 * 1024)
        .max_decoded_body(1024 * 1024)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Reads every chunk, checking none is larger than the documented bound.
async fn drain(body: &mut mummer::BodyStream) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(chunk) = body.chunk().await.unwrap() {
        assert!(
            !chunk.is_empty() && chunk.len() <= STREAM_CHUNK,
            "{}",
            chunk.len()
        );
        got.extend_from_slice(&chunk);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_buffered_limit_stream_whole_over_both_protocols() {
    let (server, ca) = site().await;
    let expected = big_body();
    for version in [HttpVersionPref::Http2Only, HttpVersionPref::Http1Only] {
        let client = client(&server, &ca, version);
        for path in ["/big", "/big.gz"] {
            let url = format!("https://shop.test{path}");
            // Buffered: refused at the 1 MiB limit.
            let e = client.get(&url).send().await.unwrap_err();
            assert!(e.is_body_too_large(), "{version:?} {path}: {e}");
            // Streamed: every byte, decoded.
            let mut resp = client.get(&url).send_streaming().await.unwrap();
            assert_eq!(resp.status(), 200);
            let got = drain(resp.body_mut()).await;
            assert!(
                got == expected[..],
                "{version:?} {path}: {} bytes",
                got.len()
            );
            // Buffering a streamed body stops at the same limit.
            let resp = client.get(&url).send_streaming().await.unwrap();
            let e = resp.into_response().await.unwrap_err();
            assert!(e.is_body_too_large(), "{version:?} {path}: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connections_are_reused_after_a_whole_body_and_not_after_a_dropped_one() {
    let (server, ca) = site().await;
    let client = client(&server, &ca, HttpVersionPref::Http1Only);
    let mut resp = client
        .get("https://shop.test/slow")
        .send_streaming()
        .await
        .unwrap();
    assert_eq!(drain(resp.body_mut()).await.len(), 40 * 1024);
    drop(resp);
    client.get("https://shop.test/small").send().await.unwrap();
    // Half a body, then dropped: that connection has bytes left on it.
    let mut resp = client
        .get("https://shop.test/slow")
        .send_streaming()
        .await
        .unwrap();
    resp.chunk().await.unwrap();
    drop(resp);
    client.get("https://shop.test/small").send().await.unwrap();

    let connections: Vec<usize> = server.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections.len(), 4);
    assert_eq!(connections[0], connections[1], "reused after a whole body");
    assert_eq!(connections[1], connections[2]);
    assert_ne!(
        connections[2], connections[3],
        "not reused after a dropped body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_a_timeout_not_a_hang() {
    let (server, ca) = site().await;
    for version in [HttpVersionPref::Http2Only, HttpVersionPref::Http1Only] {
        let client = Client::builder(Profile::resolve("chrome-latest").unwrap())
            .ca_file(ca.path())
            .connect_to(route(&server))
            .http_version(version)
            .timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let started = Instant::now();
        let mut resp = client
            .get("https://shop.test/stall")
            .send_streaming()
            .await
            .unwrap();
        let mut got = 0;
        let e = loop {
            match resp.chunk().await {
                Ok(Some(c)) => got += c.len(),
                Ok(None) => panic!("{version:?}: the stalled body ended"),
                Err(e) => break e,
            }
        };
        assert!(e.is_timeout(), "{version:?}: {e}");
        assert_eq!(got, 32 * 1024, "{version:?}: the first piece arrived");
        assert!(started.elapsed() < Duration::from_secs(5), "{version:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_streams_after_redirects_and_is_busy_until_the_body_ends() {
    let (server, ca) = site().await;
    let ca_path = ca.path().to_path_buf();
    let route = route(&server);
    let session = Session::builder(Profile::resolve("chrome-latest").unwrap())
        .transport(move |b| b.ca_file(ca_path).connect_to(route).max_body(1024 * 1024))
        .build()
        .unwrap();
    let mut resp = session
        .get("https://shop.test/to-big")
        .send_streaming()
        .await
        .unwrap();
    assert_eq!(resp.url(), "https://shop.test/big");
    assert_eq!(resp.head().redirects().len(), 1);
    assert_eq!(
        (session.in_flight(), session.idle_time()),
        (1, Duration::ZERO)
    );
    let got = drain(resp.body_mut()).await;
    assert!(got == big_body()[..]);
    assert_eq!(session.in_flight(), 0, "released at the end of the body");
    assert_eq!(
        session.stats().cache_entry_count,
        0,
        "a streamed answer is not cached"
    );

    // Dropped unread: released too.
    let resp = session
        .get("https://shop.test/slow")
        .send_streaming()
        .await
        .unwrap();
    assert_eq!(session.in_flight(), 1);
    drop(resp);
    assert_eq!(session.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_does_not_reap_a_session_while_its_download_is_open() {
    let (server, ca) = site().await;
    let engine = Engine::builder()
        .idle_timeout(Duration::from_millis(150))
        .reap_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let ca_path = ca.path().to_path_buf();
    let route = route(&server);
    let config = SessionConfig::profile("chrome-latest")
        .transport(move |b| b.ca_file(ca_path).connect_to(route));
    let mut events = engine.events();
    let id = engine.create_session(config).await.unwrap();
    let session = engine.session(&id).await.unwrap();
    // 20 pieces, 60 ms apart: about 1.2 s, eight idle timeouts.
    let mut resp = session
        .get("https://shop.test/slow")
        .send_streaming()
        .await
        .unwrap();
    let mut got = 0;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got += chunk.len();
        assert_eq!(session.stats().idle_secs, 0.0);
    }
    assert_eq!(got, 40 * 1024);
    assert_eq!(
        engine.session_count().await,
        1,
        "alive through the download"
    );
    while let Ok(event) = events.try_recv() {
        let closed = matches!(event, EngineEvent::SessionClosed { .. });
        assert!(!closed, "nothing closed during the download: {event:?}");
    }
    drop(resp);
    // Idle now: reaped within a few intervals (looking it up would mark it used).
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(EngineEvent::SessionClosed { id, reason }) = events.recv().await {
                break (id, reason);
            }
        }
    })
    .await
    .expect("reaped once idle");
    assert_eq!(closed, (id, CloseReason::Idle));
    engine.shutdown().await;
}

/// 2 MiB in 40 pieces, as a stream (of known length or not).
fn upload(len_known: bool) -> Body {
    let pieces: Vec<std::io::Result<Bytes>> = big_body()
        .slice(..2 * 1024 * 1024)
        .chunks(52_429)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Body::wrap_stream(
        futures_util::stream::iter(pieces),
        len_known.then_some(2 * 1024 * 1024),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_uploads_arrive_whole_and_a_wrong_length_is_refused() {
    let (server, ca) = site().await;
    let sent = big_body().slice(..2 * 1024 * 1024);
    for version in [HttpVersionPref::Http2Only, HttpVersionPref::Http1Only] {
        let client = client(&server, &ca, version);
        for len_known in [true, false] {
            let resp = client
                .post("https://shop.test/upload")
                .body(upload(len_known))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.text(), "2097152 bytes", "{version:?} {len_known}");
        }
        // Declared 3 MiB, gave 2: refused, named.
        let short = Body::wrap_stream(
            futures_util::stream::iter([Ok::<_, std::io::Error>(sent.clone())]),
            Some(3 * 1024 * 1024),
        );
        let e = client
            .post("https://shop.test/upload")
            .body(short)
            .send()
            .await
            .unwrap_err();
        assert!(
            e.is_invalid_input() && e.to_string().contains("declared"),
            "{version:?}: {e}"
        );
        // A failing stream aborts with its own error.
        let failing = Body::wrap_stream(
            futures_util::stream::iter([
                Ok(Bytes::from_static(b"part")),
                Err(std::io::Error::other("disk gone")),
            ]),
            None,
        );
        let e = client
            .post("https://shop.test/upload")
            .body(failing)
            .send()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("disk gone"), "{version:?}: {e}");
    }
    let seen: Vec<(http::Version, Option<String>, Option<String>, usize)> = server
        .requests()
        .iter()
        .filter(|r| r.path() == "/upload")
        .map(|r| {
            (
                r.version,
                r.header("content-length").map(str::to_string),
                r.header("transfer-encoding").map(str::to_string),
                r.body.len(),
            )
        })
        .collect();
    // Whole bodies, framed by their length when known, chunked over HTTP/1.1 when not.
    assert!(
        seen.contains(&(http::Version::HTTP_2, Some("2097152".into()), None, 2097152)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(http::Version::HTTP_2, None, None, 2097152)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(
            http::Version::HTTP_11,
            Some("2097152".into()),
            None,
            2097152
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(
            http::Version::HTTP_11,
            None,
            Some("chunked".into()),
            2097152
        )),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_is_never_sent_twice() {
    let (server, ca) = site().await;
    let ca_path = ca.path().to_path_buf();
    let to_server = route(&server);
    let session = Session::builder(Profile::resolve("chrome-latest").unwrap())
        .transport(move |b| b.ca_file(ca_path).connect_to(to_server))
        .build()
        .unwrap();
    // A 303 drops the body: followed.
    let resp = session
        .post("https://shop.test/upload-303")
        .body(upload(false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.text()),
        (200, "0 bytes".to_string())
    );
    // A 307 would send it again: refused, saying why.
    let e = session
        .post("https://shop.test/upload-307")
        .body(upload(true))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_invalid_input() && e.to_string().contains("307"), "{e}");

    // The engine does not retry a request whose body was streamed: one attempt.
    let engine = Engine::builder()
        .retry(mummer::RetryPolicy {
            base_delay: Duration::from_millis(10),
            ..mummer::RetryPolicy::default()
        })
        .start()
        .unwrap();
    let ca_path = ca.path().to_path_buf();
    let to_server = route(&server);
    let config = SessionConfig::profile("chrome-latest")
        .transport(move |b| b.ca_file(ca_path).connect_to(to_server));
    let id = engine.create_session(config).await.unwrap();
    let es = engine.session(&id).await.unwrap();
    let resp = es
        .request(http::Method::PUT, "https://shop.test/unavailable")
        .body(upload(true))
        .send()
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), resp.attempts()), (503, 1));
    // The same PUT with the body in memory is retried.
    let resp = es
        .request(http::Method::PUT, "https://shop.test/unavailable")
        .body(big_body().slice(..1000))
        .send()
        .await;
    let attempts = match resp {
        Ok(r) => r.attempts(),
        Err(_) => 0,
    };
    let puts = server
        .requests()
        .iter()
        .filter(|r| r.path() == "/unavailable")
        .count();
    assert!(
        puts > 2,
        "the replayable PUT was retried ({puts} attempts seen, {attempts} reported)"
    );
    engine.shutdown().await;
}
