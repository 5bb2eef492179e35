//! Proxies: a SOCKS5 server with username/password (RFC 1928/1929) on loopback, in front
//! of the inspector. socks5h sends the host name to the proxy; a wrong password is a
//! typed proxy error that does not leak the password.

use mummer::inspect::Inspector;
use mummer::net::Proxy;
use mummer::{Client, Profile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Accepts user `u` with password `p`; resolves every host name to 127.0.0.1 itself.
async fn socks5_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 2];
                s.read_exact(&mut head).await.ok()?;
                let mut methods = vec![0u8; head[1] as usize];
                s.read_exact(&mut methods).await.ok()?;
                s.write_all(&[5, 2]).await.ok()?;
                let ver = s.read_u8().await.ok()?;
                assert_eq!(ver, 1);
                let ulen = s.read_u8().await.ok()? as usize;
                let mut user = vec![0u8; ulen];
                s.read_exact(&mut user).await.ok()?;
                let plen = s.read_u8().await.ok()? as usize;
                let mut pass = vec![0u8; plen];
                s.read_exact(&mut pass).await.ok()?;
                if user != b"u" || pass != b"p" {
                    s.write_all(&[1, 1]).await.ok()?;
                    return None;
                }
                s.write_all(&[1, 0]).await.ok()?;
                let mut req = [0u8; 4];
                s.read_exact(&mut req).await.ok()?;
                assert_eq!(req[3], 3, "socks5h sends a domain name");
                let len = s.read_u8().await.ok()? as usize;
                let mut name = vec![0u8; len];
                s.read_exact(&mut name).await.ok()?;
                let port = s.read_u16().await.ok()?;
                let mut upstream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await.ok()?;
                tokio::io::copy_bidirectional(&mut s, &mut upstream)
                    .await
                    .ok()?;
                Some(())
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn socks5h_with_credentials_reaches_the_target() {
    let mut inspector = Inspector::start(
        "127.0.0.1:0".parse().unwrap(),
        &["behind.proxy.test".into()],
    )
    .await
    .unwrap();
    let (proxy_port, task) = socks5_server().await;
    let client = Client::builder(Profile::named("chrome-156-linux").unwrap())
        .insecure(true)
        .proxy(Proxy::parse(&format!("socks5h://u:p@127.0.0.1:{proxy_port}")).unwrap())
        .build()
        .unwrap();
    let url = format!(
        "https://behind.proxy.test:{}/",
        inspector.local_addr().port()
    );
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    client.close_connections();
    let report = inspector.next_report().await.unwrap();
    assert_eq!(
        report.client_hello.sni.as_deref(),
        Some("behind.proxy.test")
    );
    assert_eq!(
        report.ja4, "t13d1517h2_8daaf6152771_cb7bf5808d99",
        "the fingerprint survives the tunnel"
    );

    let bad = Client::builder(Profile::named("chrome-156-linux").unwrap())
        .insecure(true)
        .proxy(Proxy::parse(&format!("socks5h://u:wrong@127.0.0.1:{proxy_port}")).unwrap())
        .build()
        .unwrap();
    let err = bad.get(&url).send().await.unwrap_err();
    assert!(err.is_proxy(), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");
    task.abort();
}

/// An `https://` CONNECT proxy: TLS with its own self-signed certificate, Basic auth
/// `u:p`, then a tunnel to 127.0.0.1 at the requested port.
async fn https_connect_proxy() -> (u16, Vec<u8>, tokio::task::JoinHandle<()>) {
    let cert = mummer::inspect::SelfSignedCert::generate(&["proxy.test".into()]).unwrap();
    let acceptor = std::sync::Arc::new(cert.acceptor(&[b"http/1.1"]).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut tls = tokio_boring::accept(&acceptor, tcp).await.ok()?;
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    head.push(tls.read_u8().await.ok()?);
                }
                let head = String::from_utf8(head).ok()?;
                let target_port: u16 = head
                    .split_whitespace()
                    .nth(1)?
                    .rsplit_once(':')?
                    .1
                    .parse()
                    .ok()?;
                // base64("u:p") = dTpw
                if !head.contains("Proxy-Authorization: Basic dTpw\r\n") {
                    tls.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n").await.ok()?;
                    return None;
                }
                let mut upstream = TcpStream::connect(("127.0.0.1", target_port)).await.ok()?;
                tls.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .ok()?;
                tokio::io::copy_bidirectional(&mut tls, &mut upstream)
                    .await
                    .ok()?;
                Some(())
            });
        }
    });
    (port, cert.cert_pem(), task)
}

#[tokio::test]
async fn https_proxy_tunnels_tls_in_tls_and_checks_the_proxy_certificate() {
    let mut inspector = Inspector::start("127.0.0.1:0".parse().unwrap(), &["behind.test".into()])
        .await
        .unwrap();
    let (proxy_port, proxy_cert, task) = https_connect_proxy().await;
    // One bundle trusted for both the proxy and the origin.
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        ca.path(),
        [proxy_cert, inspector.cert_pem().to_vec()].concat(),
    )
    .unwrap();
    let url = format!("https://behind.test:{}/", inspector.local_addr().port());
    let client_with = |proxy: &str, trust: bool| {
        let mut b = Client::builder(Profile::named("chrome-156-linux").unwrap())
            .proxy(Proxy::parse(proxy).unwrap());
        if trust {
            b = b.ca_file(ca.path());
        }
        b.build().unwrap()
    };

    let good = client_with(&format!("https://u:p@localhost:{proxy_port}"), true);
    let resp = good.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    good.close_connections();
    let report = inspector.next_report().await.unwrap();
    assert_eq!(report.client_hello.sni.as_deref(), Some("behind.test"));
    assert_eq!(
        report.ja4, "t13d1517h2_8daaf6152771_cb7bf5808d99",
        "the profile's ClientHello reaches the origin inside the proxy's TLS"
    );

    let wrong = client_with(
        &format!("https://u:secret-wrong@localhost:{proxy_port}"),
        true,
    );
    let err = wrong.get(&url).send().await.unwrap_err();
    assert!(err.is_proxy(), "{err}");
    assert!(err.to_string().contains("407"), "{err}");
    assert!(!err.to_string().contains("secret-wrong"), "{err}");

    // The proxy's self-signed certificate is not trusted by the system store.
    let untrusted = client_with(&format!("https://u:p@localhost:{proxy_port}"), false);
    let err = untrusted.get(&url).send().await.unwrap_err();
    assert!(err.is_proxy(), "{err}");
    assert!(err.to_string().contains("TLS to the proxy"), "{err}");
    task.abort();
}
