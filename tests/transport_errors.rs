//! Bad input gets a typed error that names the problem: unknown profiles, malformed
//! profile files, bad URLs, refused connections, handshake and certificate failures,
//! oversize headers, decompression bombs, truncated bodies, and a proxy refusing auth.

mod support;

use std::io::Write;

use mummer::net::Proxy;
use mummer::{Client, Profile};

fn client() -> Client {
    Client::builder(Profile::named("chrome-156-linux").unwrap())
        .build()
        .unwrap()
}

#[test]
fn unknown_profile_names_the_closest() {
    let err = Profile::resolve("firefox-135-linux").unwrap_err();
    assert!(err.is_unknown_profile());
    assert!(err.to_string().contains("firefox-153-linux"), "{err}");
}

#[test]
fn malformed_profile_file_names_the_field() {
    let mut v: serde_json::Value =
        serde_json::to_value(Profile::named("chrome-156-linux").unwrap()).unwrap();
    v["http2"]["settings"][0][1] = serde_json::json!("big");
    let mut f = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    f.write_all(v.to_string().as_bytes()).unwrap();
    let err = Profile::resolve(f.path().to_str().unwrap()).unwrap_err();
    assert!(err.is_invalid_profile());
    assert!(err.to_string().contains("http2.settings[0]"), "{err}");

    // A user profile round-trips through a JSON file.
    let p = Profile::named("firefox-153-macos").unwrap();
    let mut t = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    t.write_all(serde_json::to_string(&p).unwrap().as_bytes())
        .unwrap();
    assert_eq!(Profile::from_file(t.path()).unwrap(), p);
}

#[tokio::test]
async fn bad_urls_are_refused_before_any_io() {
    for url in [
        "not a url",
        "ftp://127.0.0.1/",
        "/relative/path",
        "https://",
    ] {
        let err = client().get(url).send().await.unwrap_err();
        assert!(err.is_invalid_url(), "{url}: {err}");
    }
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let port = support::closed_port().await;
    let err = client()
        .get(&format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert!(err.to_string().contains(&port.to_string()));
}

#[tokio::test]
async fn handshake_failure_names_the_host() {
    // A server that answers the ClientHello with plain HTTP: the handshake cannot succeed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            let _ = s.shutdown().await;
        }
    });
    let err = client()
        .get(&format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap_err();
    server.abort();
    assert!(err.is_tls(), "{err}");
    assert!(err.to_string().contains("127.0.0.1"));
}

/// Serves `answer` to every connection (after reading the ClientHello) and closes.
async fn serve_bytes(answer: &'static [u8]) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut hello = [0u8; 4096];
            let _ = s.read(&mut hello).await;
            let _ = s.write_all(answer).await;
            let _ = s.shutdown().await;
        }
    });
    (port, task)
}

#[tokio::test]
async fn tls_failures_name_their_real_reason_and_blame_no_certificate() {
    // A TLS 1.2 record: fatal alert, handshake_failure (40).
    const ALERT: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40];
    let cases: [(&[u8], &str); 3] = [
        (
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            "did not answer with TLS",
        ),
        (ALERT, "fatal TLS alert: handshake failure"),
        (
            b"\x16\x03\x03\x00\x04garbage that is no ServerHello",
            "TLS handshake failed",
        ),
    ];
    for (answer, want) in cases {
        let (port, server) = serve_bytes(answer).await;
        for insecure in [false, true] {
            let client = Client::builder(Profile::named("chrome-156-linux").unwrap())
                .insecure(insecure)
                .build()
                .unwrap();
            let err = client
                .get(&format!("https://127.0.0.1:{port}/"))
                .send()
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(err.is_tls(), "{text}");
            assert!(
                text.contains(want),
                "-k {insecure}: want `{want}` in {text}"
            );
            assert!(
                !text.contains("certificate") && !text.contains("-k"),
                "no certificate was received, none is to blame: {text}"
            );
        }
        server.abort();
    }
}

#[tokio::test]
async fn untrusted_certificate_is_refused_with_the_fix() {
    let inspector = mummer::inspect::Inspector::start("127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let url = format!("https://127.0.0.1:{}/", inspector.local_addr().port());
    let err = client().get(&url).send().await.unwrap_err();
    assert!(err.is_tls(), "{err}");
    assert!(err.to_string().contains("--cacert"), "{err}");
    // -k makes the same request work.
    let ok = Client::builder(Profile::named("chrome-156-linux").unwrap())
        .insecure(true)
        .build()
        .unwrap();
    assert_eq!(ok.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn oversize_response_head_is_a_protocol_error() {
    let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..2000 {
        resp.extend_from_slice(format!("x-filler-{i}: {}\r\n", "a".repeat(60)).as_bytes());
    }
    resp.extend_from_slice(b"content-length: 0\r\n\r\n");
    let server = support::raw_server(resp).await;
    let err = client()
        .get(&format!("http://127.0.0.1:{}/", server.addr.port()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_protocol(), "{err}");
    assert!(err.to_string().contains("larger than"), "{err}");

    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"content-length: 0\r\n\r\n");
    let server = support::raw_server(many).await;
    let err = client()
        .get(&format!("http://127.0.0.1:{}/", server.addr.port()))
        .send()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("header fields"), "{err}");
}

#[tokio::test]
async fn decompression_bomb_is_refused() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 20 << 20]).unwrap();
    let bomb = enc.finish().unwrap();
    let mut resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
        bomb.len()
    )
    .into_bytes();
    resp.extend_from_slice(&bomb);
    let server = support::raw_server(resp).await;
    let client = Client::builder(Profile::named("chrome-156-linux").unwrap())
        .max_decoded_body(1 << 20)
        .build()
        .unwrap();
    let err = client
        .get(&format!("http://127.0.0.1:{}/", server.addr.port()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_body_too_large(), "{err}");
}

/// Serves `response` (raw bytes) once on loopback and fetches it with the default client.
async fn fetch_raw(response: &[u8]) -> mummer::Result<mummer::Response> {
    let server = support::raw_server(response.to_vec()).await;
    client()
        .get(&format!("http://127.0.0.1:{}/", server.addr.port()))
        .send()
        .await
}

#[tokio::test]
async fn truncated_bodies_are_protocol_errors() {
    for truncated in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this"[..],
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nabc"[..],
    ] {
        let err = fetch_raw(truncated).await.unwrap_err();
        assert!(
            err.is_protocol() && err.to_string().contains("truncated"),
            "{err}"
        );
    }

    // A 1-byte chunk, then one of 2^64-1 bytes: the size check must not wrap past the
    // body limit (the client would read until the peer stops), and a signed size is
    // not a size.
    let err = fetch_raw(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\nFFFFFFFFFFFFFFFF\r\nbbbbbbbb",
    )
    .await
    .unwrap_err();
    assert!(err.is_body_too_large(), "{err}");
    for framing in [
        &b"transfer-encoding: chunked\r\n\r\n+5\r\nabcde\r\n0\r\n\r\n"[..],
        &b"content-length: +5\r\n\r\nabcde"[..],
    ] {
        let mut response = b"HTTP/1.1 200 OK\r\n".to_vec();
        response.extend_from_slice(framing);
        let err = fetch_raw(&response).await.unwrap_err();
        assert!(
            err.is_protocol(),
            "{}: {err}",
            String::from_utf8_lossy(framing)
        );
    }

    // A well-formed chunked body with trailers decodes.
    let resp = fetch_raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-t: 1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(resp.body().as_ref(), b"abcde");
}

#[tokio::test]
async fn proxy_refusing_auth_is_a_proxy_error() {
    let server = support::raw_server(
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n".to_vec(),
    )
    .await;
    let proxy = Proxy::parse(&format!(
        "http://user:wrong@127.0.0.1:{}",
        server.addr.port()
    ))
    .unwrap();
    let client = Client::builder(Profile::named("chrome-156-linux").unwrap())
        .proxy(proxy)
        .build()
        .unwrap();
    let err = client.get("https://target.test/").send().await.unwrap_err();
    assert!(err.is_proxy(), "{err}");
    assert!(err.to_string().contains("407"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "password must not leak: {err}"
    );
}

#[tokio::test]
async fn total_deadline_is_a_timeout() {
    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let client = Client::builder(Profile::named("chrome-156-linux").unwrap())
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .get(&format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    hold.abort();
}
