//! HTTP/3 (`--http3-only`) against a local quinn/rustls HTTP/3 site, judged from the
//! site's side: the requests it decoded, and the QUIC ClientHello read back out of the
//! client's own Initial packets (the same BoringSSL profile as over TCP, with `h3` and
//! QUIC transport parameters).

#[path = "support/h3.rs"]
mod h3site;
#[path = "support/https.rs"]
mod https;

use std::time::{Duration, Instant};

use http::Version;
use mummer::client::{Client, HttpVersionPref};
use mummer::inspect::clienthello::ClientHello;
use mummer::net::{Proxy, ResolveOverride};
use mummer::profile::Profile;
use mummer::quic::initial::InitialReader;

fn client(site: &h3site::H3Site, ca: &std::path::Path) -> Client {
    client_for(
        ca,
        "h3.test",
        site.addr.port(),
        HttpVersionPref::Http3Only,
        |b| b.connect_timeout(Duration::from_secs(5)),
    )
}

/// A `chromium-156-linux` client that trusts `ca` and finds `host:port` on 127.0.0.1,
/// with `version` and whatever `more` adds.
fn client_for(
    ca: &std::path::Path,
    host: &str,
    port: u16,
    version: HttpVersionPref,
    more: impl FnOnce(mummer::client::ClientBuilder) -> mummer::client::ClientBuilder,
) -> Client {
    more(
        Client::builder(Profile::named("chromium-156-linux").expect("built-in profile"))
            .ca_file(ca)
            .resolve(
                format!("{host}:{port}:127.0.0.1")
                    .parse::<ResolveOverride>()
                    .expect("resolve rule"),
            )
            .http_version(version),
    )
    .build()
    .expect("client")
}

#[tokio::test]
async fn requests_go_over_http3_and_the_site_sees_the_profiles_headers_in_order() {
    let site = h3site::H3Site::start().await;
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), site.cert_pem()).expect("write CA");
    let client = client(&site, ca.path());
    let base = format!("https://h3.test:{}", site.addr.port());

    let first = client
        .get(&format!("{base}/first"))
        .send()
        .await
        .expect("GET over h3");
    assert_eq!(first.status(), 200);
    assert_eq!(first.version(), Version::HTTP_3);
    assert_eq!(first.text(), "h3 GET /first 0");
    let tls = first.tls().expect("TLS details");
    assert_eq!(tls.alpn.as_deref(), Some("h3"));
    assert_eq!(tls.version, "TLSv1.3");

    let posted = client
        .post(&format!("{base}/form"))
        .body("a=1&b=2")
        .send()
        .await
        .expect("POST over h3");
    assert_eq!(posted.text(), "h3 POST /form 7");

    let seen = site.seen();
    assert_eq!(
        seen.len(),
        2,
        "every request reached the site once: {seen:?}"
    );
    assert_eq!(seen[0].authority, format!("h3.test:{}", site.addr.port()));
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/first")
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("POST", "/form")
    );
    assert_eq!(seen[1].body, b"a=1&b=2");
    // The site decoded the header list the client says it sent, in that order.
    let sent: Vec<String> = first
        .request_headers()
        .iter()
        .map(|(n, _)| n.as_str().to_string())
        .collect();
    let received: Vec<String> = seen[0].headers.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(received, sent);
    assert!(received.iter().any(|n| n == "sec-ch-ua"), "{received:?}");
    assert_eq!(
        seen[0]
            .headers
            .iter()
            .find(|(n, _)| n == "user-agent")
            .map(|(_, v)| v.as_str()),
        Some(client.profile().user_agent.as_str())
    );
    let stats = client.transport_stats();
    assert_eq!(
        stats.connections_opened, 1,
        "both requests shared one QUIC connection"
    );
    assert_eq!(stats.connections_reused, 1);
}

#[tokio::test]
async fn the_quic_client_hello_is_the_profiles_with_h3_and_transport_parameters() {
    let site = h3site::H3Site::start().await;
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), site.cert_pem()).expect("write CA");
    let client = client(&site, ca.path());
    let url = format!("https://h3.test:{}/", site.addr.port());
    client.get(&url).send().await.expect("GET over h3");

    let mut reader = InitialReader::new();
    for datagram in site.datagrams() {
        // Datagrams after the handshake carry no Initial packets; errors there are
        // short-header packets the reader is not meant to read.
        let _ = reader.push_datagram(&datagram);
    }
    let hello = reader
        .client_hello()
        .expect("the ClientHello came in Initial packets");
    let mut hello = ClientHello::parse(&hello).expect("a ClientHello");
    hello.over_quic = true;
    let profile = client.profile();

    assert_eq!(hello.sni.as_deref(), Some("h3.test"));
    assert_eq!(hello.alpn, vec!["h3".to_string()]);
    assert!(hello.ja4().starts_with("q13d"), "{}", hello.ja4());
    // TLS 1.3 only over QUIC: the profile's TLS 1.3 suites, in its order.
    let tls13: Vec<u16> = profile
        .tls
        .cipher_suites
        .iter()
        .map(|c| c.0)
        .filter(|c| (0x1301..=0x1303).contains(c))
        .collect();
    let offered: Vec<u16> = hello
        .cipher_suites
        .iter()
        .copied()
        .filter(|c| !mummer::inspect::clienthello::is_grease(*c))
        .collect();
    assert_eq!(offered, tls13);
    let groups: Vec<u16> = hello
        .key_shares
        .iter()
        .map(|(g, _)| *g)
        .filter(|g| !mummer::inspect::clienthello::is_grease(*g))
        .collect();
    let wanted: Vec<u16> = profile.tls.key_shares.iter().map(|k| k.0).collect();
    assert_eq!(groups, wanted, "the profile's key shares, ML-KEM included");
    let params = hello
        .quic_transport_parameters
        .as_ref()
        .expect("quic_transport_parameters (0x39) sent");
    let value = |id: u64| {
        params
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v.clone())
    };
    // initial_max_data 15728640 and initial_max_streams_bidi 100, as varints.
    assert_eq!(value(0x04).as_deref(), Some("80f00000"));
    assert_eq!(value(0x08).as_deref(), Some("4064"));
    // The client's own connection ID is empty, as Chromium's.
    assert_eq!(value(0x0f).as_deref(), Some(""));
    let first = &reader.packets[0];
    assert_eq!(first.dcid_len, 8);
    assert_eq!(first.scid_len, 0);
    assert!(
        first.datagram_len >= 1200,
        "Initial datagrams are padded: {first:?}"
    );
}

#[tokio::test]
async fn no_answer_over_udp_fails_within_the_deadline_and_a_proxy_is_never_bypassed() {
    // A UDP port nobody reads.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port = silent.local_addr().expect("addr").port();
    let client = Client::builder(Profile::named("chromium-156-linux").expect("profile"))
        .insecure(true)
        .http_version(HttpVersionPref::Http3Only)
        .connect_timeout(Duration::from_millis(800))
        .build()
        .expect("client");
    let started = Instant::now();
    let err = client
        .get(&format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .expect_err("nothing answers");
    assert!(err.is_timeout(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let site = h3site::H3Site::start().await;
    let proxied = Client::builder(Profile::named("chromium-156-linux").expect("profile"))
        .insecure(true)
        .http_version(HttpVersionPref::Http3Only)
        .proxy(Proxy::parse("http://127.0.0.1:9").expect("proxy"))
        .build()
        .expect("client");
    let err = proxied
        .get(&format!("https://127.0.0.1:{}/", site.addr.port()))
        .send()
        .await
        .expect_err("no UDP through an HTTP proxy");
    assert!(err.is_proxy(), "{err}");
    assert!(
        site.datagrams().is_empty(),
        "no datagram went around the proxy"
    );

    // Plain http:// has no HTTP/3: it goes over TCP (nothing listens on port 1).
    let plain = client
        .get("http://127.0.0.1:1/")
        .send()
        .await
        .expect_err("nothing on port 1");
    assert!(plain.is_connect(), "{plain}");
    assert!(err.to_string().contains("HTTP/3"), "{err}");
}

/// A TCP site (HTTP/2) whose answers offer HTTP/3 at `alt_port`, and the file the
/// client's CA bundle goes to.
async fn offering_site(alt_port: u16) -> (https::HttpsServer, tempfile::NamedTempFile) {
    let offer = format!("h3=\":{alt_port}\"; ma=60");
    let tcp =
        https::HttpsServer::start(move |_| https::Reply::ok("tcp").header("alt-svc", &offer)).await;
    (tcp, tempfile::NamedTempFile::new().expect("temp file"))
}

fn auto_client(tcp: &https::HttpsServer, extra_ca: &[u8], ca: &tempfile::NamedTempFile) -> Client {
    let mut bundle = tcp.cert_pem.clone();
    bundle.extend_from_slice(extra_ca);
    std::fs::write(ca.path(), bundle).expect("CA bundle");
    client_for(
        ca.path(),
        "shop.test",
        tcp.addr.port(),
        HttpVersionPref::Auto,
        |b| b.connect_timeout(Duration::from_secs(1)),
    )
}

#[tokio::test]
async fn an_origin_that_offers_http3_gets_it_on_the_next_connection() {
    let site = h3site::H3Site::start().await;
    let (tcp, ca) = offering_site(site.addr.port()).await;
    let client = auto_client(&tcp, site.cert_pem(), &ca);
    let url = format!("https://shop.test:{}/page", tcp.addr.port());

    let first = client.get(&url).send().await.expect("first visit");
    assert_eq!(
        first.version(),
        Version::HTTP_2,
        "a first visit goes over TCP"
    );
    let alt = client
        .alternative("shop.test", tcp.addr.port())
        .expect("the Alt-Svc offer was kept");
    assert_eq!(alt.port, site.addr.port());

    // The open HTTP/2 connection keeps serving, as in Chrome; a new connection races
    // QUIC and QUIC wins on loopback.
    let again = client.get(&url).send().await.expect("same connection");
    assert_eq!(again.version(), Version::HTTP_2);
    client.close_connections();
    let upgraded = client.get(&url).send().await.expect("after the upgrade");
    assert_eq!(upgraded.version(), Version::HTTP_3);
    assert_eq!(upgraded.text(), "h3 GET /page 0");
    let seen = site.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].authority,
        format!("shop.test:{}", tcp.addr.port()),
        "the origin, not the alternative"
    );
    assert_eq!(
        tcp.requests().len(),
        2,
        "the TCP site saw only the first two"
    );
    let next = client.get(&url).send().await.expect("pooled QUIC");
    assert_eq!(next.version(), Version::HTTP_3);
    assert_eq!(client.transport_stats().http3_opened, 1);
    let origins = client.origin_protocols();
    let shop = origins
        .iter()
        .find(|o| o.origin == format!("https://shop.test:{}", tcp.addr.port()))
        .expect("the origin is listed");
    assert_eq!(shop.protocol, Some("h3"));
    assert_eq!(shop.http3_alternative, Some(site.addr.port()));
}

#[tokio::test]
async fn udp_that_goes_nowhere_falls_back_to_tcp_at_once_and_marks_http3_broken() {
    // Where the offered HTTP/3 goes: a socket that counts datagrams and answers none.
    let hole = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let hole_port = hole.local_addr().expect("addr").port();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = dropped.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while hole.recv_from(&mut buf).await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let (tcp, ca) = offering_site(hole_port).await;
    let client = auto_client(&tcp, &[], &ca);
    let url = format!("https://shop.test:{}/", tcp.addr.port());
    client.get(&url).send().await.expect("first visit");
    assert!(client.alternative("shop.test", tcp.addr.port()).is_some());
    client.close_connections();

    let started = Instant::now();
    let resp = client
        .get(&url)
        .send()
        .await
        .expect("still served, over TCP");
    let took = started.elapsed();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert!(
        took < Duration::from_millis(900),
        "no long QUIC timeout waited out: {took:?}"
    );
    assert!(
        dropped.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "QUIC was tried"
    );

    // The attempt gives up within its deadline (1 s here) and marks the alternative
    // broken; then no new connection tries it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.alternative("shop.test", tcp.addr.port()).is_some() {
        assert!(
            Instant::now() < deadline,
            "the alternative was never marked broken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.transport_stats().http3_fallbacks, 1);
    client.close_connections();
    // The given-up attempt may still send its closing packet: let it go first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = dropped.load(std::sync::atomic::Ordering::Relaxed);
    let third = client.get(&url).send().await.expect("third visit");
    assert_eq!(third.version(), Version::HTTP_2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        dropped.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "a broken alternative is not tried"
    );
    assert_eq!(
        tcp.requests().len(),
        3,
        "every request reached the site once"
    );
}

#[tokio::test]
async fn a_second_quic_connection_resumes_the_first_ones_tls_session() {
    let site = h3site::H3Site::start().await;
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), site.cert_pem()).expect("write CA");
    let client = client(&site, ca.path());
    let url = format!("https://h3.test:{}/", site.addr.port());
    let first = client.get(&url).send().await.expect("first");
    assert!(!first.tls().expect("tls").resumed);
    // The ticket comes after the handshake; give it a moment to be filed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!client.tickets().is_empty(), "the QUIC ticket was kept");
    client.close_connections();
    let second = client.get(&url).send().await.expect("second");
    assert!(
        second.tls().expect("tls").resumed,
        "resumed from the QUIC ticket"
    );
    assert_eq!(client.transport_stats().tls_resumed, 1);
}

#[tokio::test]
async fn http3_first_tries_quic_on_an_origin_that_never_offered_it_and_falls_back() {
    // An HTTP/3 site: QUIC wins before TCP is even tried (nothing listens on TCP there).
    let site = h3site::H3Site::start().await;
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), site.cert_pem()).expect("write CA");
    let client = client_for(
        ca.path(),
        "h3.test",
        site.addr.port(),
        HttpVersionPref::Http3,
        |b| b,
    );
    let resp = client
        .get(&format!("https://h3.test:{}/x", site.addr.port()))
        .send()
        .await
        .expect("over QUIC");
    assert_eq!(resp.version(), Version::HTTP_3);

    // A TCP-only site: the request goes over TCP and HTTP/3 is marked broken there.
    let tcp = https::HttpsServer::start(|_| https::Reply::ok("tcp")).await;
    let ca2 = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca2.path(), &tcp.cert_pem).expect("write CA");
    let client = client_for(
        ca2.path(),
        "shop.test",
        tcp.addr.port(),
        HttpVersionPref::Http3,
        |b| b.connect_timeout(Duration::from_millis(700)),
    );
    let url = format!("https://shop.test:{}/", tcp.addr.port());
    let started = Instant::now();
    let resp = client.get(&url).send().await.expect("over TCP");
    assert_eq!(resp.version(), Version::HTTP_2);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.transport_stats().http3_fallbacks == 0 {
        assert!(Instant::now() < deadline, "HTTP/3 was never marked broken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tcp.requests().len(), 1);
}

#[tokio::test]
async fn a_restored_session_remembers_which_origins_offered_http3() {
    let site = h3site::H3Site::start().await;
    let (tcp, ca) = offering_site(site.addr.port()).await;
    let mut bundle = tcp.cert_pem.clone();
    bundle.extend_from_slice(site.cert_pem());
    std::fs::write(ca.path(), bundle).expect("CA bundle");
    let resolve = format!("shop.test:{}:127.0.0.1", tcp.addr.port());
    let ca_path = ca.path().to_path_buf();
    let transport = move |b: mummer::client::ClientBuilder| {
        b.ca_file(&ca_path)
            .resolve(resolve.parse::<ResolveOverride>().expect("resolve"))
    };
    let session =
        mummer::session::Session::builder(Profile::named("chromium-156-linux").expect("profile"))
            .transport(transport.clone())
            .build()
            .expect("session");
    let url = format!("https://shop.test:{}/", tcp.addr.port());
    let first = session.get(&url).send().await.expect("first visit");
    assert_eq!(first.version(), Version::HTTP_2);
    let snapshot = session.snapshot();
    assert_eq!(snapshot.alt_svc.len(), 1, "{:?}", snapshot.alt_svc);
    drop(session);

    let json = serde_json::to_vec(&snapshot).expect("snapshot JSON");
    let back: mummer::session::SessionSnapshot = serde_json::from_slice(&json).expect("reads back");
    let restored = mummer::session::Session::from_snapshot(back, transport).expect("restored");
    let resp = restored.get(&url).send().await.expect("after the restart");
    assert_eq!(
        resp.version(),
        Version::HTTP_3,
        "the restored session went to QUIC at once"
    );
    assert_eq!(site.seen().len(), 1);
}

#[tokio::test]
async fn a_server_that_announces_a_huge_headers_frame_is_cut_off_not_buffered() {
    let cert = mummer::inspect::SelfSignedCert::generate(&["h3.test".to_string()]).expect("cert");
    let endpoint = quinn::Endpoint::server(
        h3site::server_config(&cert),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("endpoint");
    let port = endpoint.local_addr().expect("addr").port();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    // A hostile HTTP/3 server: its control stream is proper, but every response is a
    // HEADERS frame that says it is 64 MiB long, followed by as much junk as the client
    // will take.
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                if let Ok(mut control) = conn.open_uni().await {
                    let _ = control.write_all(&[0x00, 0x04, 0x00]).await;
                    while let Ok((mut send, _recv)) = conn.accept_bi().await {
                        let mut head = vec![0x01];
                        mummer::quic::params::write_varint(&mut head, 64 << 20);
                        if send.write_all(&head).await.is_err() {
                            return;
                        }
                        let junk = vec![0x41u8; 64 * 1024];
                        for _ in 0..1024 {
                            if send.write_all(&junk).await.is_err() {
                                break;
                            }
                            counter.fetch_add(junk.len(), std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    drop(control);
                }
            });
        }
    });
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), cert.cert_pem()).expect("write CA");
    let client = client_for(
        ca.path(),
        "h3.test",
        port,
        HttpVersionPref::Http3Only,
        |b| b.timeout(Duration::from_secs(20)),
    );
    let started = Instant::now();
    let err = client
        .get(&format!("https://h3.test:{port}/"))
        .send()
        .await
        .expect_err("a 64 MiB header frame is refused");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.is_timeout(), "refused, not waited out: {err}");
    let taken = written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        taken < 16 << 20,
        "the client stopped reading early: {taken} bytes taken"
    );
}

/// A SOCKS5 proxy that does UDP ASSOCIATE only (RFC 1928 section 7), with
/// username/password: its relay socket is on 127.0.0.3, so a server can tell relayed
/// datagrams from direct ones by their source address. Names resolve to 127.0.0.1.
struct SocksUdp {
    port: u16,
    credentials: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    targets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl SocksUdp {
    async fn start() -> SocksUdp {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let credentials = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let targets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (creds, seen_targets) = (credentials.clone(), targets.clone());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (creds, seen_targets) = (creds.clone(), seen_targets.clone());
                tokio::spawn(async move {
                    let mut head = [0u8; 2];
                    tcp.read_exact(&mut head).await.ok()?;
                    let mut methods = vec![0u8; usize::from(head[1])];
                    tcp.read_exact(&mut methods).await.ok()?;
                    tcp.write_all(&[5, 2]).await.ok()?;
                    let mut ver_ulen = [0u8; 2];
                    tcp.read_exact(&mut ver_ulen).await.ok()?;
                    let mut user = vec![0u8; usize::from(ver_ulen[1])];
                    tcp.read_exact(&mut user).await.ok()?;
                    let plen = tcp.read_u8().await.ok()?;
                    let mut pass = vec![0u8; usize::from(plen)];
                    tcp.read_exact(&mut pass).await.ok()?;
                    creds.lock().ok()?.push((
                        String::from_utf8_lossy(&user).into(),
                        String::from_utf8_lossy(&pass).into(),
                    ));
                    tcp.write_all(&[1, 0]).await.ok()?;
                    let mut req = [0u8; 4];
                    tcp.read_exact(&mut req).await.ok()?;
                    let skip = match req[3] {
                        1 => 6,
                        4 => 18,
                        _ => return None,
                    };
                    let mut rest = vec![0u8; skip];
                    tcp.read_exact(&mut rest).await.ok()?;
                    if req[1] != 3 {
                        tcp.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await.ok()?;
                        return None;
                    }
                    let relay =
                        std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.3:0").await.ok()?);
                    let relay_port = relay.local_addr().ok()?.port();
                    let mut reply = vec![5, 0, 0, 1, 127, 0, 0, 3];
                    reply.extend_from_slice(&relay_port.to_be_bytes());
                    tcp.write_all(&reply).await.ok()?;
                    let pump = tokio::spawn(async move {
                        let mut client: Option<std::net::SocketAddr> = None;
                        let mut buf = vec![0u8; 65_536];
                        loop {
                            let (n, from) = relay.recv_from(&mut buf).await.ok()?;
                            if from.ip() == std::net::IpAddr::from([127, 0, 0, 1])
                                && client.is_none_or(|c| c == from)
                                && buf[..n].get(3).is_some_and(|t| *t == 1 || *t == 3)
                            {
                                client = Some(from);
                                let (dst, header) = match buf[3] {
                                    1 => (
                                        std::net::SocketAddr::from((
                                            [buf[4], buf[5], buf[6], buf[7]],
                                            u16::from_be_bytes([buf[8], buf[9]]),
                                        )),
                                        10,
                                    ),
                                    _ => {
                                        let len = usize::from(buf[4]);
                                        let name =
                                            String::from_utf8_lossy(&buf[5..5 + len]).to_string();
                                        let port = u16::from_be_bytes([buf[5 + len], buf[6 + len]]);
                                        seen_targets.lock().ok()?.push(format!("{name}:{port}"));
                                        (
                                            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                                            7 + len,
                                        )
                                    }
                                };
                                relay.send_to(&buf[header..n], dst).await.ok()?;
                            } else if let Some(client) = client {
                                let std::net::SocketAddr::V4(v4) = from else {
                                    continue;
                                };
                                let mut out = vec![0, 0, 0, 1];
                                out.extend_from_slice(&v4.ip().octets());
                                out.extend_from_slice(&v4.port().to_be_bytes());
                                out.extend_from_slice(&buf[..n]);
                                relay.send_to(&out, client).await.ok()?;
                            }
                        }
                        #[allow(unreachable_code)]
                        Some(())
                    });
                    // The association ends with its control connection.
                    let mut sink = [0u8; 64];
                    while tcp.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                    pump.abort();
                    Some(())
                });
            }
        });
        SocksUdp {
            port,
            credentials,
            targets,
        }
    }
}

#[tokio::test]
async fn http3_through_socks5_goes_by_udp_associate_and_never_around_the_proxy() {
    let site = h3site::H3Site::start().await;
    let socks = SocksUdp::start().await;
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), site.cert_pem()).expect("write CA");
    for scheme in ["socks5", "socks5h"] {
        let client = client_for(
            ca.path(),
            "h3.test",
            site.addr.port(),
            HttpVersionPref::Http3Only,
            |b| {
                b.proxy(
                    Proxy::parse(&format!(
                        "{scheme}://crawler:s3cret@127.0.0.1:{}",
                        socks.port
                    ))
                    .expect("proxy"),
                )
                .connect_timeout(Duration::from_secs(5))
            },
        );
        let resp = client
            .get(&format!(
                "https://h3.test:{}/via-{scheme}",
                site.addr.port()
            ))
            .send()
            .await
            .expect("HTTP/3 through the SOCKS5 relay");
        assert_eq!(resp.version(), Version::HTTP_3);
        assert_eq!(resp.text(), format!("h3 GET /via-{scheme} 0"));
    }
    let senders = site.senders();
    assert!(!senders.is_empty());
    assert!(
        senders
            .iter()
            .all(|a| a.ip() == std::net::IpAddr::from([127, 0, 0, 3])),
        "every datagram the site got came from the proxy's relay: {senders:?}"
    );
    assert_eq!(
        socks.credentials.lock().expect("creds").clone(),
        vec![("crawler".to_string(), "s3cret".to_string()); 2]
    );
    assert_eq!(
        socks
            .targets
            .lock()
            .expect("targets")
            .first()
            .map(String::as_str),
        Some(format!("h3.test:{}", site.addr.port()).as_str()),
        "socks5h sends the name for the proxy to resolve"
    );
}
