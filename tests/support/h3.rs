//! A local HTTP/3 site for the tests: quinn with rustls (ring) and the `h3` server,
//! behind a UDP relay that keeps every datagram the client sent, so a test judges the
//! client from the server's side: the request log, and the QUIC ClientHello read out
//! of the client's Initial packets with `mummer::quic::initial`. The benchmark
//! (`benches/http3.rs`) uses its relay-less, unrecorded form.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use mummer::inspect::cert::SelfSignedCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One request as the site received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authority: String,
    /// Regular header fields in the order they were decoded.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The running site.
pub struct H3Site {
    /// Where clients send their datagrams (the relay).
    pub addr: SocketAddr,
    cert: Vec<u8>,
    log: Arc<Mutex<Vec<Seen>>>,
    datagrams: Arc<Mutex<Vec<Vec<u8>>>>,
    senders: Arc<Mutex<Vec<SocketAddr>>>,
}

impl H3Site {
    /// Starts the site on 127.0.0.1 (ports chosen by the system).
    pub async fn start() -> H3Site {
        Self::start_with(None).await
    }

    /// A site for benchmarks: no relay (clients talk to quinn directly), nothing
    /// recorded, every request answered with `payload`.
    pub async fn start_bench(payload: Bytes) -> H3Site {
        Self::start_with(Some(payload)).await
    }

    async fn start_with(payload: Option<Bytes>) -> H3Site {
        let bench = payload.is_some();
        let names = ["h3.test".to_string(), "shop.test".to_string()];
        let cert = SelfSignedCert::generate(&names).expect("certificate");
        let server_config = server_config(&cert);
        let endpoint = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().expect("addr"))
            .expect("server endpoint");
        let server_addr = endpoint.local_addr().expect("server addr");

        let log = Arc::new(Mutex::new(Vec::new()));
        let served = log.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let log = served.clone();
                let payload = payload.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    let Ok(mut h3) = h3::server::builder()
                        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
                        .await
                    else {
                        return;
                    };
                    while let Ok(Some(resolver)) = h3.accept().await {
                        let log = log.clone();
                        let payload = payload.clone();
                        tokio::spawn(async move {
                            let Ok((req, mut stream)) = resolver.resolve_request().await else {
                                return;
                            };
                            let mut body = Vec::new();
                            while let Ok(Some(mut chunk)) = stream.recv_data().await {
                                while chunk.has_remaining() {
                                    let piece = chunk.chunk().to_vec();
                                    chunk.advance(piece.len());
                                    body.extend_from_slice(&piece);
                                }
                            }
                            if let Some(payload) = payload {
                                let resp = http::Response::builder()
                                    .status(200)
                                    .header("content-type", "text/plain")
                                    .body(())
                                    .expect("response");
                                if stream.send_response(resp).await.is_ok()
                                    && stream.send_data(payload).await.is_ok()
                                {
                                    let _ = stream.finish().await;
                                }
                                return;
                            }
                            let seen = Seen {
                                method: req.method().to_string(),
                                path: req.uri().path().to_string(),
                                authority: req
                                    .uri()
                                    .authority()
                                    .map(|a| a.to_string())
                                    .unwrap_or_default(),
                                headers: req
                                    .headers()
                                    .iter()
                                    .map(|(n, v)| {
                                        (
                                            n.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into(),
                                        )
                                    })
                                    .collect(),
                                body: body.clone(),
                            };
                            log.lock().expect("log").push(seen);
                            let text =
                                format!("h3 {} {} {}", req.method(), req.uri().path(), body.len());
                            let resp = http::Response::builder()
                                .status(200)
                                .header("content-type", "text/plain")
                                .header("x-served-by", "h3-site")
                                .body(())
                                .expect("response");
                            if stream.send_response(resp).await.is_ok()
                                && stream.send_data(Bytes::from(text)).await.is_ok()
                            {
                                let _ = stream.finish().await;
                            }
                        });
                    }
                });
            }
        });

        if bench {
            return H3Site {
                addr: server_addr,
                cert: cert.cert_pem(),
                log,
                datagrams: Arc::new(Mutex::new(Vec::new())),
                senders: Arc::new(Mutex::new(Vec::new())),
            };
        }
        // The relay: one client at a time, every client datagram kept.
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("relay");
        let addr = front.local_addr().expect("relay addr");
        let datagrams = Arc::new(Mutex::new(Vec::new()));
        let kept = datagrams.clone();
        let senders = Arc::new(Mutex::new(Vec::new()));
        let seen_from = senders.clone();
        tokio::spawn(async move {
            let front = Arc::new(front);
            let mut back: Option<(SocketAddr, Arc<tokio::net::UdpSocket>)> = None;
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    return;
                };
                kept.lock().expect("datagrams").push(buf[..n].to_vec());
                seen_from.lock().expect("senders").push(from);
                let socket = match &back {
                    Some((client, socket)) if *client == from => socket.clone(),
                    _ => {
                        let socket = Arc::new(
                            tokio::net::UdpSocket::bind("127.0.0.1:0")
                                .await
                                .expect("relay back"),
                        );
                        let (reply, to) = (socket.clone(), front.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok(n) = reply.recv(&mut buf).await {
                                let _ = to.send_to(&buf[..n], from).await;
                            }
                        });
                        socket.connect(server_addr).await.expect("relay connect");
                        back = Some((from, socket.clone()));
                        socket
                    }
                };
                let _ = socket.send(&buf[..n]).await;
            }
        });
        H3Site {
            addr,
            cert: cert.cert_pem(),
            log,
            datagrams,
            senders,
        }
    }

    /// The certificate to trust (`--cacert`).
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().expect("log").clone()
    }

    /// Where every datagram came from, in order.
    pub fn senders(&self) -> Vec<SocketAddr> {
        self.senders.lock().expect("senders").clone()
    }

    /// Every datagram clients sent so far.
    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        self.datagrams.lock().expect("datagrams").clone()
    }
}

/// A quinn server configuration (rustls, ring, ALPN `h3`) for `cert`.
pub fn server_config(cert: &SelfSignedCert) -> quinn::ServerConfig {
    let chain = vec![CertificateDer::from_pem_slice(&cert.cert_pem()).expect("cert PEM")];
    let key = PrivateKeyDer::from_pem_slice(&cert.key_pem()).expect("key PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC TLS");
    quinn::ServerConfig::with_crypto(Arc::new(crypto))
}
