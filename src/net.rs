//! Getting a byte stream to an origin: DNS (with curl-style overrides), TCP dialing
//! with a deadline, and tunnels through HTTP(S) and SOCKS5 proxies.
//!
//! The result is a [`BoxedIo`] that the TLS layer wraps. This module knows nothing about
//! HTTP beyond the CONNECT request a proxy needs.
//!
//! Why one file (about 740 lines of code): every connection goes through one dial path
//! (overrides, DNS, the destination policy, the proxy tunnel), and the proxy handshakes
//! are small. The next cut is the SOCKS5 and CONNECT handshakes into their own file.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::tls::TlsOptions;

/// Any stream the transport can run TLS or HTTP over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A type-erased stream (plain TCP, or a tunnel through a proxy).
pub type BoxedIo = Pin<Box<dyn Io>>;

/// Byte counters shared by every connection of one client.
#[derive(Clone, Debug, Default)]
pub struct ByteCounters {
    /// Bytes read from sockets (TLS records and proxy handshakes included).
    pub read: Arc<AtomicU64>,
    /// Bytes written to sockets.
    pub written: Arc<AtomicU64>,
}

/// A stream that adds what passes through it to [`ByteCounters`].
pub struct CountingIo {
    inner: BoxedIo,
    counters: ByteCounters,
}

impl CountingIo {
    /// Wraps `inner`.
    pub fn new(inner: BoxedIo, counters: ByteCounters) -> CountingIo {
        CountingIo { inner, counters }
    }
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = self.inner.as_mut().poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.counters.read.fetch_add(n as u64, Ordering::Relaxed);
        poll
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = self.inner.as_mut().poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &poll {
            self.counters
                .written
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_shutdown(cx)
    }
}

/// Longest proxy CONNECT response head we read before calling the proxy broken.
const MAX_PROXY_RESPONSE_HEAD: usize = 16 * 1024;

/// A `--resolve HOST:PORT:ADDR` override: connections to `host:port` go to `addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveOverride {
    /// Host name as it appears in URLs (lower-case).
    pub host: String,
    /// Port the override applies to.
    pub port: u16,
    /// Address to connect to instead.
    pub addr: IpAddr,
}

impl FromStr for ResolveOverride {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_input(format!(
                "invalid --resolve `{s}`: expected HOST:PORT:ADDR, e.g. example.test:443:127.0.0.1"
            ))
        };
        let (host, rest) = s.split_once(':').ok_or_else(bad)?;
        let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        Ok(ResolveOverride {
            host: host.to_ascii_lowercase(),
            port: port.parse().map_err(|_| bad())?,
            addr: addr.parse().map_err(|_| bad())?,
        })
    }
}

/// A `--connect-to HOST1:PORT1:HOST2:PORT2` rule (curl's): a request for `HOST1:PORT1`
/// connects to `HOST2:PORT2` instead, while TLS (SNI, certificate check) and the `Host`
/// / `:authority` header still name `HOST1`. An empty `HOST1` or `PORT1` matches any; an
/// empty `HOST2` or `PORT2` keeps the original. `--resolve` overrides apply to `HOST2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTo {
    /// Host this rule applies to (lower-case), or any.
    pub host: Option<String>,
    /// Port this rule applies to, or any.
    pub port: Option<u16>,
    /// Host to connect to instead, or the original.
    pub to_host: Option<String>,
    /// Port to connect to instead, or the original.
    pub to_port: Option<u16>,
}

impl ConnectTo {
    /// Where a connection for `host:port` goes under this rule, if the rule applies.
    pub fn apply(&self, host: &str, port: u16) -> Option<(String, u16)> {
        let host_matches = self
            .host
            .as_ref()
            .is_none_or(|h| h.eq_ignore_ascii_case(host));
        let port_matches = self.port.is_none_or(|p| p == port);
        (host_matches && port_matches).then(|| {
            (
                self.to_host.clone().unwrap_or_else(|| host.to_string()),
                self.to_port.unwrap_or(port),
            )
        })
    }
}

impl FromStr for ConnectTo {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid_input(format!(
                "invalid --connect-to `{s}`: {why}; expected HOST1:PORT1:HOST2:PORT2, e.g. shop.test:443:127.0.0.1:8443 (empty parts match any / keep the original)"
            ))
        };
        // An IPv6 HOST2 is written in brackets: split on colons outside them.
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ':' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        let [host, port, to_host, to_port] = parts[..] else {
            return Err(bad("it needs exactly four colon-separated parts"));
        };
        let port_of = |p: &str| -> Result<Option<u16>> {
            if p.is_empty() {
                Ok(None)
            } else {
                p.parse()
                    .map(Some)
                    .map_err(|_| bad(&format!("`{p}` is not a port")))
            }
        };
        let host_of = |h: &str| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            (!h.is_empty()).then(|| h.to_ascii_lowercase())
        };
        Ok(ConnectTo {
            host: host_of(host),
            port: port_of(port)?,
            to_host: host_of(to_host),
            to_port: port_of(to_port)?,
        })
    }
}

/// A proxy URL: `http://`, `https://`, `socks5://` or `socks5h://`, with optional
/// `user:password@`.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    scheme: ProxyScheme,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProxyScheme {
    Http,
    Https,
    Socks5,
    Socks5h,
}

/// `url` as text with the password of its userinfo (`user:PASSWORD@`) replaced by
/// `***`, for error messages about a URL that may not parse: the text is the caller's,
/// and an error (or the API's 400 that carries it) must not repeat a secret.
fn mask_password(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else {
        return url.to_string();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_string(),
    }
}

impl Proxy {
    /// Parses a proxy URL.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] for an unknown scheme, or a text that is not a proxy
    /// URL as `src/proxy_syntax.rs` defines it (the reason is named; a password is
    /// never repeated).
    pub fn parse(url: &str) -> Result<Proxy> {
        crate::proxy_syntax::check(url).map_err(|why| {
            Error::invalid_input(format!("invalid proxy URL `{}`: {why}", mask_password(url)))
        })?;
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::invalid_input(format!("invalid proxy URL `{}`: {e}", mask_password(url)))
        })?;
        let scheme = match parsed.scheme() {
            "http" => ProxyScheme::Http,
            "https" => ProxyScheme::Https,
            "socks5" => ProxyScheme::Socks5,
            "socks5h" => ProxyScheme::Socks5h,
            other => {
                return Err(Error::invalid_input(format!(
                    "proxy scheme `{other}` is not supported; use http, https, socks5 or socks5h"
                )))
            }
        };
        let host = parsed
            .host_str()
            .ok_or_else(|| {
                Error::invalid_input(format!("proxy URL `{}` has no host", mask_password(url)))
            })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port().unwrap_or(match scheme {
            ProxyScheme::Http => 80,
            ProxyScheme::Https => 443,
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => 1080,
        });
        let credentials = if parsed.username().is_empty() {
            None
        } else {
            let decode = |s: &str| {
                percent_decode(s).ok_or_else(|| {
                    Error::invalid_input("proxy credentials are not valid percent-encoded UTF-8")
                })
            };
            Some((
                decode(parsed.username())?,
                decode(parsed.password().unwrap_or(""))?,
            ))
        };
        Ok(Proxy {
            scheme,
            host,
            port,
            credentials,
        })
    }
}

/// Shows the proxy without its password.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            ProxyScheme::Http => "http",
            ProxyScheme::Https => "https",
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
        };
        let user = match &self.credentials {
            Some((u, _)) => format!("{u}:***@"),
            None => String::new(),
        };
        write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How to reach origins: overrides, proxy and the connect deadline.
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    overrides: HashMap<(String, u16), IpAddr>,
    connect_to: Vec<ConnectTo>,
    proxy_tls: TlsOptions,
    proxy: Option<Proxy>,
    connect_timeout: Option<Duration>,
    destination: Option<std::sync::Arc<crate::destination::DestinationPolicy>>,
}

/// Time spent resolving and connecting, for `-v`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DialTimings {
    /// Name resolution.
    pub dns: Duration,
    /// TCP connect (and proxy tunnel set-up).
    pub connect: Duration,
}

impl Dialer {
    /// A dialer with the given overrides, proxy and connect deadline.
    pub fn new(
        overrides: &[ResolveOverride],
        proxy: Option<Proxy>,
        connect_timeout: Option<Duration>,
    ) -> Self {
        Dialer {
            overrides: overrides
                .iter()
                .map(|o| ((o.host.clone(), o.port), o.addr))
                .collect(),
            connect_to: Vec::new(),
            proxy_tls: TlsOptions::default(),
            proxy,
            connect_timeout,
            destination: None,
        }
    }

    /// Checks every address dialled against `policy` (none: every address is allowed).
    pub fn with_destination_policy(
        mut self,
        policy: Option<std::sync::Arc<crate::destination::DestinationPolicy>>,
    ) -> Self {
        self.destination = policy;
        self
    }

    /// The addresses of `addrs` the destination policy allows for `host`.
    ///
    /// # Errors
    ///
    /// [`Error::is_destination_refused`] when it allows none, with the first reason.
    fn allowed(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>> {
        let Some(policy) = &self.destination else {
            return Ok(addrs);
        };
        let mut first_refusal = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match policy.check(host, *a) {
                Ok(()) => true,
                Err(why) => {
                    first_refusal.get_or_insert(why);
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), first_refusal) {
            (true, Some(why)) => Err(Error::destination_refused(why)),
            _ => Ok(allowed),
        }
    }

    /// Adds `--connect-to` rules; the first that matches a request's host and port wins.
    pub fn with_connect_to(mut self, rules: Vec<ConnectTo>) -> Self {
        self.connect_to = rules;
        self
    }

    /// How an `https://` proxy's certificate is checked.
    pub fn with_proxy_tls(mut self, options: TlsOptions) -> Self {
        self.proxy_tls = options;
        self
    }

    /// Where a connection for `host:port` actually goes, after `--connect-to`.
    fn target(&self, host: &str, port: u16) -> (String, u16) {
        self.connect_to
            .iter()
            .find_map(|rule| rule.apply(host, port))
            .unwrap_or_else(|| (host.to_string(), port))
    }

    /// Opens a stream to `host:port`, directly or through the proxy.
    ///
    /// # Errors
    ///
    /// [`Error::is_dns`], [`Error::is_connect`], [`Error::is_timeout`] or
    /// [`Error::is_proxy`], each naming the target.
    pub async fn dial(&self, host: &str, port: u16) -> Result<(BoxedIo, DialTimings)> {
        let (host, port) = self.target(host, port);
        let host = host.as_str();
        let mut timings = DialTimings::default();
        let Some(proxy) = &self.proxy else {
            let started = Instant::now();
            let addrs = self.allowed(host, self.resolve(host, port).await?)?;
            timings.dns = started.elapsed();
            let started = Instant::now();
            let tcp = self.connect_any(&addrs, &format!("{host}:{port}")).await?;
            timings.connect = started.elapsed();
            return Ok((Box::pin(tcp), timings));
        };

        let started = Instant::now();
        let proxy_addrs =
            self.allowed(&proxy.host, self.resolve(&proxy.host, proxy.port).await?)?;
        timings.dns = started.elapsed();
        let started = Instant::now();
        let tcp = self
            .connect_any(&proxy_addrs, &format!("proxy {proxy}"))
            .await
            .map_err(|e| Error::proxy(proxy, e))?;
        let stream: BoxedIo = match proxy.scheme {
            ProxyScheme::Http => {
                Box::pin(self.deadline(http_connect(tcp, proxy, host, port)).await?)
            }
            ProxyScheme::Https => {
                let tls = proxy_tls(tcp, &proxy.host, &self.proxy_tls)
                    .await
                    .map_err(|e| Error::proxy(proxy, e))?;
                Box::pin(self.deadline(http_connect(tls, proxy, host, port)).await?)
            }
            ProxyScheme::Socks5 => {
                let target = self.allowed(host, self.resolve(host, port).await?)?;
                let addr = target[0];
                Box::pin(
                    self.deadline(socks5_connect(tcp, proxy, SocksTarget::Addr(addr)))
                        .await?,
                )
            }
            ProxyScheme::Socks5h => Box::pin(
                self.deadline(socks5_connect(tcp, proxy, SocksTarget::Name(host, port)))
                    .await?,
            ),
        };
        timings.connect = started.elapsed();
        Ok((stream, timings))
    }

    /// The address a QUIC connection to `host:port` goes to (after `--connect-to`,
    /// `--resolve` and the destination policy), and the time resolving took.
    ///
    /// # Errors
    ///
    /// [`Error::is_dns`] or [`Error::is_destination_refused`]; [`Error::is_proxy`]
    /// when a proxy is set, since HTTP/3 through a proxy (SOCKS5 UDP ASSOCIATE) is not
    /// built yet and going around the proxy would leak the client's own address.
    pub(crate) async fn resolve_udp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(SocketAddr, Duration)> {
        if let Some(proxy) = &self.proxy {
            return Err(Error::proxy(
                proxy,
                "HTTP/3 cannot go through an HTTP proxy (it carries no UDP); use HTTP/2",
            ));
        }
        let (host, port) = self.target(host, port);
        let started = Instant::now();
        let addrs = self.allowed(&host, self.resolve(&host, port).await?)?;
        let addr = addrs
            .first()
            .copied()
            .ok_or_else(|| Error::dns(&host, "no addresses"))?;
        Ok((addr, started.elapsed()))
    }

    /// Where QUIC datagrams for `host:port` go: straight to the address, or through a
    /// SOCKS5 proxy's UDP relay (UDP ASSOCIATE over a control connection that must stay
    /// open). With `socks5h://` the proxy resolves the name; with `socks5://` it is
    /// resolved here and checked by the destination policy.
    ///
    /// # Errors
    ///
    /// As [`Dialer::resolve_udp`], and [`Error::is_proxy`] when the proxy refuses the
    /// association or is an HTTP proxy. `host:port` is looked up (its `--resolve`
    /// rule included) and `udp_port` is where the datagrams go (an Alt-Svc port).
    pub(crate) async fn udp_route(
        &self,
        host: &str,
        port: u16,
        udp_port: u16,
    ) -> Result<(UdpRoute, Duration)> {
        let Some(proxy) = self
            .proxy
            .as_ref()
            .filter(|p| matches!(p.scheme, ProxyScheme::Socks5 | ProxyScheme::Socks5h))
        else {
            let (mut addr, took) = self.resolve_udp(host, port).await?;
            addr.set_port(udp_port);
            return Ok((UdpRoute::Direct(addr), took));
        };
        let (host, port) = self.target(host, port);
        let started = Instant::now();
        let target = if proxy.scheme == ProxyScheme::Socks5 {
            let addrs = self.allowed(&host, self.resolve(&host, port).await?)?;
            UdpTarget::Addr(SocketAddr::new(addrs[0].ip(), udp_port))
        } else {
            if host.len() > 255 {
                return Err(Error::proxy(proxy, "host name longer than 255 bytes"));
            }
            UdpTarget::Name(host.clone(), udp_port)
        };
        let proxy_addrs =
            self.allowed(&proxy.host, self.resolve(&proxy.host, proxy.port).await?)?;
        let mut control = self
            .connect_any(&proxy_addrs, &format!("proxy {proxy}"))
            .await
            .map_err(|e| Error::proxy(proxy, e))?;
        let proxy_addr = control.peer_addr().map_err(|e| Error::proxy(proxy, e))?;
        let relay = self
            .deadline(socks5_udp_associate(&mut control, proxy, proxy_addr))
            .await?;
        Ok((
            UdpRoute::Socks5 {
                control,
                relay,
                target,
            },
            started.elapsed(),
        ))
    }

    /// Whether HTTP/3 can go where this dialer's connections go: directly, or through
    /// a SOCKS5 proxy (UDP ASSOCIATE); not through an HTTP proxy.
    pub(crate) fn carries_udp(&self) -> bool {
        self.proxy
            .as_ref()
            .is_none_or(|p| matches!(p.scheme, ProxyScheme::Socks5 | ProxyScheme::Socks5h))
    }

    async fn deadline<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match self.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, fut).await.map_err(|_| {
                Error::timeout(format!("after {limit:?} setting up the proxy tunnel"))
            })?,
            None => fut.await,
        }
    }

    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        if let Some(addr) = self.overrides.get(&(host.to_ascii_lowercase(), port)) {
            return Ok(vec![SocketAddr::new(*addr, port)]);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::dns(host, e))?
            .collect();
        if addrs.is_empty() {
            return Err(Error::dns(host, "no addresses"));
        }
        Ok(addrs)
    }

    async fn connect_any(&self, addrs: &[SocketAddr], what: &str) -> Result<TcpStream> {
        let mut last = None;
        for addr in addrs {
            let attempt = TcpStream::connect(addr);
            let result = match self.connect_timeout {
                Some(limit) => match tokio::time::timeout(limit, attempt).await {
                    Ok(r) => r,
                    Err(_) => {
                        last = Some(Error::timeout(format!(
                            "after {limit:?} connecting to {what} ({addr})"
                        )));
                        continue;
                    }
                },
                None => attempt.await,
            };
            match result {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Err(e) => last = Some(Error::connect(format!("{what} ({addr})"), e)),
            }
        }
        Err(last.unwrap_or_else(|| Error::connect(what, "no address to try")))
    }
}

/// Sends `CONNECT host:port` and waits for a 2xx.
pub(crate) async fn http_connect<S: Io>(
    mut io: S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<S> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, pass)) = &proxy.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes())
        .await
        .map_err(|e| Error::proxy(proxy, format!("sending CONNECT: {e}")))?;

    // Read byte by byte up to the blank line: the tunnel's first bytes must stay unread.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_PROXY_RESPONSE_HEAD {
            return Err(Error::proxy(proxy, "CONNECT response head is too large"));
        }
        let b = io
            .read_u8()
            .await
            .map_err(|e| Error::proxy(proxy, format!("reading the CONNECT response: {e}")))?;
        head.push(b);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(&head)
        .map_err(|e| Error::proxy(proxy, format!("malformed CONNECT response: {e}")))?;
    match resp.code {
        Some(code) if (200..300).contains(&code) => Ok(io),
        Some(407) => Err(Error::proxy(
            proxy,
            "refused the credentials (407 Proxy Authentication Required); check user:password in the proxy URL",
        )),
        Some(code) => Err(Error::proxy(
            proxy,
            format!("refused CONNECT to {authority} with status {code}"),
        )),
        None => Err(Error::proxy(proxy, "incomplete CONNECT response")),
    }
}

/// TLS to an `https://` proxy itself (a plain BoringSSL client, system CAs).
/// TLS to an `https://` proxy, checked like origins are (`--cacert`, `-k`). The proxy
/// sees a plain BoringSSL ClientHello: the browser profile is for the origin, inside.
async fn proxy_tls(
    tcp: TcpStream,
    host: &str,
    options: &TlsOptions,
) -> std::result::Result<tokio_boring::SslStream<TcpStream>, String> {
    let mut b = boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls())
        .map_err(|e| e.to_string())?;
    options
        .apply_verification(&mut b)
        .map_err(|e| e.to_string())?;
    let connector = b.build();
    let mut config = connector.configure().map_err(|e| e.to_string())?;
    if options.insecure {
        config.set_verify_hostname(false);
    }
    tokio_boring::connect(config, host, tcp)
        .await
        .map_err(|e| format!("TLS to the proxy failed: {e}"))
}

/// Where a QUIC connection's datagrams go ([`Dialer::udp_route`]).
pub(crate) enum UdpRoute {
    /// Straight to the server.
    Direct(SocketAddr),
    /// Through a SOCKS5 UDP relay.
    Socks5 {
        /// The association's control connection: the relay forwards while it is open.
        control: TcpStream,
        /// Where datagrams go, each with a SOCKS5 UDP header.
        relay: SocketAddr,
        /// The server, as each datagram's header names it.
        target: UdpTarget,
    },
}

/// The server a relayed datagram is for.
#[derive(Clone, Debug)]
pub(crate) enum UdpTarget {
    /// An address resolved here.
    Addr(SocketAddr),
    /// A name the proxy resolves (`socks5h://`).
    Name(String, u16),
}

/// Appends a SOCKS5 address (ATYP, address, port: RFC 1928 section 5) for `target`;
/// `false` for a name longer than 255 bytes, which SOCKS5 cannot carry.
pub(crate) fn put_socks_address(out: &mut Vec<u8>, target: &SocksTarget<'_>) -> bool {
    match target {
        SocksTarget::Addr(SocketAddr::V4(a)) => {
            out.push(0x01);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        SocksTarget::Addr(SocketAddr::V6(a)) => {
            out.push(0x04);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        SocksTarget::Name(name, port) => {
            let Ok(len) = u8::try_from(name.len()) else {
                return false;
            };
            out.push(0x03);
            out.push(len);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
    true
}

pub(crate) enum SocksTarget<'a> {
    Addr(SocketAddr),
    Name(&'a str, u16),
}

/// SOCKS5 (RFC 1928) CONNECT with optional username/password (RFC 1929).
///
/// Written here rather than taken from a crate: it is forty lines of framing, and this
/// keeps proxy errors in our error type with the proxy named.
pub(crate) async fn socks5_connect<S: Io>(
    mut io: S,
    proxy: &Proxy,
    target: SocksTarget<'_>,
) -> Result<S> {
    socks5_greet(&mut io, proxy).await?;
    socks5_request(&mut io, proxy, 0x01, target).await?;
    Ok(io)
}

/// SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) on a control connection to the proxy:
/// greeting and credentials as for CONNECT, then the association. Returns the relay
/// address datagrams go to (the proxy's own address when it answers `0.0.0.0`). The
/// association lives as long as `io` stays open.
pub(crate) async fn socks5_udp_associate<S: Io>(
    io: &mut S,
    proxy: &Proxy,
    proxy_addr: SocketAddr,
) -> Result<SocketAddr> {
    socks5_greet(io, proxy).await?;
    let any = SocketAddr::new(
        if proxy_addr.is_ipv4() {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    );
    let bound = socks5_request(io, proxy, 0x03, SocksTarget::Addr(any)).await?;
    Ok(match bound {
        Some(addr) if !addr.ip().is_unspecified() => addr,
        Some(addr) => SocketAddr::new(proxy_addr.ip(), addr.port()),
        None => {
            return Err(Error::proxy(
                proxy,
                "answered UDP ASSOCIATE with a host name for its relay; an address is needed",
            ))
        }
    })
}

/// The greeting and, when the proxy asks, the username and password (RFC 1929).
async fn socks5_greet<S: Io>(io: &mut S, proxy: &Proxy) -> Result<()> {
    let fail = |what: String| Error::proxy(proxy, what);
    let io_fail = |e: std::io::Error| Error::proxy(proxy, format!("SOCKS5 exchange failed: {e}"));
    let methods: &[u8] = if proxy.credentials.is_some() {
        &[0x00, 0x02]
    } else {
        &[0x00]
    };
    let mut hello = vec![0x05, methods.len() as u8];
    hello.extend_from_slice(methods);
    io.write_all(&hello).await.map_err(io_fail)?;
    let mut reply = [0u8; 2];
    io.read_exact(&mut reply).await.map_err(io_fail)?;
    if reply[0] != 0x05 {
        return Err(fail("is not a SOCKS5 server".into()));
    }
    match reply[1] {
        0x00 => {}
        0x02 => {
            let (user, pass) = proxy
                .credentials
                .as_ref()
                .ok_or_else(|| fail("demands a username and password".into()))?;
            if user.len() > 255 || pass.len() > 255 {
                return Err(fail(
                    "SOCKS5 user and password must be at most 255 bytes".into(),
                ));
            }
            let mut auth = vec![0x01, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(pass.len() as u8);
            auth.extend_from_slice(pass.as_bytes());
            io.write_all(&auth).await.map_err(io_fail)?;
            let mut status = [0u8; 2];
            io.read_exact(&mut status).await.map_err(io_fail)?;
            if status[1] != 0x00 {
                return Err(fail(
                    "refused the credentials; check user:password in the proxy URL".into(),
                ));
            }
        }
        0xff => return Err(fail("accepts none of our authentication methods".into())),
        m => return Err(fail(format!("chose an unknown authentication method {m}"))),
    }
    Ok(())
}

/// One SOCKS5 request (`cmd` 1 CONNECT, 3 UDP ASSOCIATE) and its reply; the bound
/// address the reply names, when it is an address.
async fn socks5_request<S: Io>(
    io: &mut S,
    proxy: &Proxy,
    cmd: u8,
    target: SocksTarget<'_>,
) -> Result<Option<SocketAddr>> {
    let fail = |what: String| Error::proxy(proxy, what);
    let io_fail = |e: std::io::Error| Error::proxy(proxy, format!("SOCKS5 exchange failed: {e}"));
    let mut req = vec![0x05, cmd, 0x00];
    if !put_socks_address(&mut req, &target) {
        return Err(fail("host name longer than 255 bytes".into()));
    }
    io.write_all(&req).await.map_err(io_fail)?;
    let mut head = [0u8; 4];
    io.read_exact(&mut head).await.map_err(io_fail)?;
    if head[1] != 0x00 {
        let why = match head[1] {
            0x01 => "general failure",
            0x02 => "connection not allowed by ruleset",
            0x03 => "network unreachable",
            0x04 => "host unreachable",
            0x05 => "connection refused",
            0x06 => "TTL expired",
            0x07 => "command not supported",
            0x08 => "address type not supported",
            _ => "unknown error",
        };
        let what = if cmd == 0x03 {
            "UDP ASSOCIATE"
        } else {
            "CONNECT"
        };
        return Err(fail(format!("SOCKS5 {what} failed: {why}")));
    }
    let (skip, kind) = match head[3] {
        0x01 => (4 + 2, 4),
        0x04 => (16 + 2, 6),
        0x03 => {
            let len = io.read_u8().await.map_err(io_fail)?;
            (usize::from(len) + 2, 0)
        }
        t => return Err(fail(format!("SOCKS5 reply has unknown address type {t}"))),
    };
    let mut rest = vec![0u8; skip];
    io.read_exact(&mut rest).await.map_err(io_fail)?;
    let port = u16::from_be_bytes([rest[skip - 2], rest[skip - 1]]);
    Ok(match kind {
        4 => Some(SocketAddr::new(
            IpAddr::from([rest[0], rest[1], rest[2], rest[3]]),
            port,
        )),
        6 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&rest[..16]);
            Some(SocketAddr::new(IpAddr::from(octets), port))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_parses_and_matches() {
        let rule: ConnectTo = "Shop.test:443:127.0.0.1:8443".parse().unwrap();
        assert_eq!(
            rule.apply("shop.test", 443),
            Some(("127.0.0.1".into(), 8443))
        );
        assert_eq!(rule.apply("shop.test", 80), None);
        assert_eq!(rule.apply("cdn.test", 443), None);
        let any: ConnectTo = "::[::1]:".parse().unwrap();
        assert_eq!(any.apply("x.test", 8443), Some(("::1".into(), 8443)));
        let keep_host: ConnectTo = "a.test:::9000".parse().unwrap();
        assert_eq!(keep_host.apply("a.test", 1), Some(("a.test".into(), 9000)));
        for bad in ["a.test:443:b.test", "a.test:x:b.test:1", "a:1:b:99999"] {
            let err = bad.parse::<ConnectTo>().unwrap_err();
            assert!(
                err.is_invalid_input() && err.to_string().contains("--connect-to"),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolve_override_parses_v4_and_v6() {
        let o: ResolveOverride = "Example.test:443:127.0.0.1".parse().unwrap();
        assert_eq!((o.host.as_str(), o.port), ("example.test", 443));
        let o: ResolveOverride = "a.test:8443:[::1]".parse().unwrap();
        assert_eq!(o.addr, "::1".parse::<IpAddr>().unwrap());
        assert!("a.test:x:127.0.0.1"
            .parse::<ResolveOverride>()
            .unwrap_err()
            .is_invalid_input());
    }

    #[test]
    fn proxy_display_hides_password() {
        let p = Proxy::parse("socks5h://user:s%40cret@127.0.0.1:1080").unwrap();
        assert_eq!(p.credentials.as_ref().unwrap().1, "s@cret");
        assert_eq!(p.to_string(), "socks5h://user:***@127.0.0.1:1080");
        assert!(Proxy::parse("ftp://x").unwrap_err().is_invalid_input());
    }

    #[test]
    fn an_unparsable_proxy_url_does_not_repeat_its_password() {
        for url in [
            "http://user:hunter2@[::1:8080",
            "socks5://user:hunter2@host:99999",
            "http://user:hunter2@",
        ] {
            let err = Proxy::parse(url).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("user:***@"), "{err}");
        }
        assert_eq!(mask_password("http://h:1/a@b"), "http://h:1/a@b");
        assert_eq!(mask_password("http://u@h"), "http://u@h");
        assert_eq!(mask_password("u:p@h"), "u:***@h");
    }
}
