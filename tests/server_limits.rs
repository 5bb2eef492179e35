//! Issue 16 defect 10: every server side of `mummer serve` has time limits on what a
//! client sends. The API and the forward proxy close a connection that sends nothing, a
//! request head that trickles in, a keep-alive connection left idle, and answer a body
//! that stalls; a MITM tunnel whose client never starts TLS is closed. Each limit is set
//! to about a second here and the test checks the server acted within a few.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mummer::api::ca::LocalCa;
use mummer::api::proxy::{ForwardProxy, ProxyConfig};
use mummer::api::{ApiConfig, ApiServer, ServerLimits};
use mummer::{Engine, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits() -> ServerLimits {
    ServerLimits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(1),
        max_body: 4096,
    }
}

/// Writes `sent`, then reads until the server closes (at most 10 s); returns what came
/// back and how long the server took to close.
async fn until_closed(addr: SocketAddr, sent: &[u8]) -> (String, Duration) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(sent).await.expect("write");
    let started = Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open: {sent:?}"
    );
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// The slow-client cases every HTTP server side must cut off.
async fn slow_clients_are_cut_off(addr: SocketAddr, what: &str, path: &str) {
    let (_, took) = until_closed(addr, b"").await;
    assert!(
        took < Duration::from_secs(4),
        "{what}: silent client kept {took:?}"
    );
    let (_, took) = until_closed(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    assert!(
        took < Duration::from_secs(4),
        "{what}: half a head kept {took:?}"
    );
    // One request answered, then the keep-alive connection sits idle.
    let (answer, took) = until_closed(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 "), "{what}: {answer}");
    assert!(
        took < Duration::from_secs(4),
        "{what}: idle keep-alive kept {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_cuts_off_slow_and_idle_clients() {
    let engine = Engine::builder().start().expect("engine");
    let api = ApiServer::start(
        engine.clone(),
        ApiConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            limits: limits(),
            ..ApiConfig::default()
        },
        None,
    )
    .await
    .expect("api");
    slow_clients_are_cut_off(api.local_addr(), "api", "/healthz").await;
    // A body that stops after 10 of its 100 bytes is answered, not waited for.
    let (answer, took) = until_closed(
        api.local_addr(),
        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"profile\"",
    )
    .await;
    assert!(took < Duration::from_secs(4), "stalled body kept {took:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // A body over the limit is a 413 problem, on JSON and raw-body routes alike.
    for path in ["/v1/sessions", "/v1/sessions/import"] {
        let big = format!("{{\"profile\": \"{}\"}}", "x".repeat(8192));
        let (answer, _) = until_closed(
            api.local_addr(),
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
                big.len()
            )
            .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(
            answer.contains("/problems/body-too-large"),
            "{path}: {answer}"
        );
    }
    assert_eq!(
        engine.session_count().await,
        0,
        "a stalled body made a session"
    );
    api.stop();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_and_its_mitm_tunnels_cut_off_slow_clients() {
    let engine = Engine::builder().start().expect("engine");
    let id = engine
        .create_session(SessionConfig::profile("chrome-latest"))
        .await
        .expect("session");
    let proxy = ForwardProxy::start(
        engine.clone(),
        ProxyConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            mitm: Some(Arc::new(LocalCa::generate().expect("ca"))),
            default_session: None,
            token: None,
            tenant_tokens: mummer::api::TenantTokens::new(),
            limits: limits(),
        },
    )
    .await
    .expect("proxy");
    slow_clients_are_cut_off(proxy.local_addr(), "proxy", "http://shop.test/").await;
    // CONNECT answered, then the client never starts its TLS handshake.
    let (answer, took) = until_closed(
        proxy.local_addr(),
        format!("CONNECT shop.test:443 HTTP/1.1\r\nHost: shop.test:443\r\nX-Mummer-Session: {id}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        took < Duration::from_secs(4),
        "a tunnel without TLS stayed {took:?}"
    );
    proxy.stop().await;
    engine.shutdown().await;
}
