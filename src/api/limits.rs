//! Time and size limits on what a client of `mummer serve` may send, for the API, the
//! forward proxy and its MITM tunnels alike: how long a request head, a request body,
//! and a tunnel's TLS handshake may take (an idle keep-alive connection counts as a
//! request head that has not arrived), and how large a
//! body may be. A client that goes past one is cut off; nothing it sent is kept.

use std::time::Duration;

use hyper::server::conn::http1;

/// The limits one server applies to its clients.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// A request head (request line and headers) must arrive within this (slow-loris).
    /// hyper starts this clock whenever the connection waits for a request, so it is
    /// also how long a keep-alive connection may sit idle, or a new one send nothing.
    pub header_timeout: Duration,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
    /// A CONNECT tunnel's client must finish its TLS handshake within this.
    pub handshake_timeout: Duration,
    /// Largest request body read.
    pub max_body: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_body: 32 << 20,
        }
    }
}

impl ServerLimits {
    /// The HTTP/1 server settings for client connections under these limits.
    pub(crate) fn http1(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        b.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        b
    }
}
