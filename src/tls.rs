//! The BoringSSL connector: a profile's [`TlsProfile`] turned into a ClientHello.
//!
//! [`TlsConnector`] holds one `SSL_CTX` built from a profile (cipher order, groups,
//! sigalgs, GREASE, extension permutation, certificate compression, trust anchors) and
//! applies the per-connection knobs the context cannot hold (key shares, ALPS, ECH
//! GREASE, ALPN, the resumption ticket) on every handshake. Building a context loads the
//! CA bundle (about 5 ms), so build one connector and share it: it is `Clone` and cheap
//! to clone.
//!
//! TLS session tickets live in a [`TicketCache`] that the caller owns (one per session,
//! so two identities never share a ticket); the connector files new tickets into it and
//! offers the newest one on the next handshake to the same host and port.
//!
//! This module does no socket I/O of its own: it wraps a stream the caller dialed.
//!
//! Why one file (about 750 lines of code): the connector, its per-handshake settings
//! and the error reporting share the BoringSSL FFI (every `unsafe` call with its SAFETY
//! comment), which is easiest to audit in one place.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use boring::ex_data::Index;
use boring::ssl::{
    CertificateCompressionAlgorithm, CertificateCompressor, Ssl, SslConnector, SslMethod,
    SslSession, SslSessionCacheMode, SslSignatureAlgorithm, SslVerifyMode, SslVersion,
};
use foreign_types::ForeignTypeRef;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_boring::SslStream;

use crate::error::{Error, Result};
use crate::profile::{CertCompression, TlsProfile};

/// How the server's certificate is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust this PEM bundle instead of the system's CA store (`--cacert`).
    pub ca_file: Option<PathBuf>,
    /// Skip certificate and host name verification (`-k`). For tests and debugging.
    pub insecure: bool,
}

impl TlsOptions {
    /// Sets up certificate verification on `b`: none with `insecure`, the CA file when
    /// given, the system bundle otherwise.
    pub(crate) fn apply_verification(
        &self,
        b: &mut boring::ssl::SslConnectorBuilder,
    ) -> Result<()> {
        if self.insecure {
            b.set_verify(SslVerifyMode::NONE);
        } else if let Some(ca) = &self.ca_file {
            let cannot = |why: String| {
                Error::invalid_input(format!("cannot load CA file {}: {why}", ca.display()))
            };
            let pem = crate::files::read_capped(ca, crate::files::MAX_CA_FILE_BYTES)
                .map_err(|e| cannot(e.to_string()))?;
            let certs =
                boring::x509::X509::stack_from_pem(&pem).map_err(|e| cannot(e.to_string()))?;
            if certs.is_empty() {
                return Err(cannot("no PEM certificate in it".into()));
            }
            for cert in certs {
                b.cert_store_mut()
                    .add_cert(cert)
                    .map_err(|e| cannot(e.to_string()))?;
            }
        } else if let Some(bundle) = system_ca_bundle() {
            // Missing or unreadable system bundles leave BoringSSL's defaults in place.
            let _ = b.set_ca_file(bundle);
        }
        Ok(())
    }
}

/// Where the system CA bundle lives on common systems; `SSL_CERT_FILE` wins.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
];

/// What was negotiated on one connection, for `-v` and `--json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The negotiated cipher suite's standard name.
    pub cipher: String,
    /// The ALPN protocol the server chose, if any.
    pub alpn: Option<String>,
    /// Whether the handshake resumed a session from a ticket.
    pub resumed: bool,
}

/// TLS session tickets, owned by one session.
///
/// Keys are `PARTITION|HOST:PORT`. The session sets the partition to its identifier,
/// profile and protocol ([`TicketCache::set_partition`]), so two sessions with different
/// identifiers never resume from each other's tickets, even if their tickets meet in a
/// shared backend.
#[derive(Clone, Default)]
pub struct TicketCache {
    inner: Arc<Mutex<HashMap<String, SslSession>>>,
    partition: Arc<Mutex<String>>,
    backend: Arc<Mutex<Option<Arc<dyn TicketBackend>>>>,
}

/// Where tickets are also kept outside the process (Redis, say), so that a session with
/// the same identifier and profile resumes on another worker. Keys are the cache's
/// (`PARTITION|HOST:PORT`, the partition naming identifier, profile and protocol).
pub trait TicketBackend: Send + Sync + 'static {
    /// Keeps `der` under `key` (called from the handshake: must not block; hand the
    /// write to a task).
    fn put(&self, key: &str, der: Vec<u8>);
    /// The ticket under `key`, if there is one (and the backend answers).
    fn get(
        &self,
        key: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>>;
}

/// One ticket as data, for snapshots: its cache key and the session in DER, base64.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TicketRecord {
    /// `PARTITION|HOST:PORT`.
    pub key: String,
    /// The TLS session (ticket, secret, parameters) as DER, base64-encoded.
    pub der: String,
}

impl TicketCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of origins with a ticket.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no ticket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every ticket.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Sets the key prefix for tickets filed and looked up from now on.
    pub fn set_partition(&self, partition: &str) {
        *self.partition.lock().unwrap_or_else(|p| p.into_inner()) = partition.to_string();
    }

    /// The key a connection to `host:port` files its ticket under.
    pub fn key_for(&self, host: &str, port: u16) -> String {
        let partition = self.partition.lock().unwrap_or_else(|p| p.into_inner());
        format!("{partition}|{host}:{port}")
    }

    /// Every ticket as data.
    pub fn export(&self) -> Vec<TicketRecord> {
        use base64::Engine as _;
        let mut out: Vec<TicketRecord> = self
            .lock()
            .iter()
            .filter_map(|(key, session)| {
                let der = session.to_der().ok()?;
                Some(TicketRecord {
                    key: key.clone(),
                    der: base64::engine::general_purpose::STANDARD.encode(der),
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Adds tickets from data. Every record is decoded first; if any is bad nothing is
    /// added.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the record's key.
    pub fn import(&self, records: &[TicketRecord]) -> Result<()> {
        use base64::Engine as _;
        let mut parsed = Vec::with_capacity(records.len());
        for r in records {
            let der = base64::engine::general_purpose::STANDARD
                .decode(&r.der)
                .map_err(|e| {
                    Error::invalid_input(format!("TLS ticket `{}`: not base64: {e}", r.key))
                })?;
            let session = SslSession::from_der(&der).map_err(|e| {
                Error::invalid_input(format!("TLS ticket `{}`: not a TLS session: {e}", r.key))
            })?;
            parsed.push((r.key.clone(), session));
        }
        self.lock().extend(parsed);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SslSession>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is
        // still a valid map of tickets.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_for(&self, key: &str) -> Option<SslSession> {
        self.lock().get(key).cloned()
    }

    fn store(&self, key: String, session: SslSession) {
        if let Some(backend) = self.backend() {
            if let Ok(der) = session.to_der() {
                backend.put(&key, der);
            }
        }
        self.lock().insert(key, session);
    }

    /// Also keeps (and looks up) tickets in `backend`.
    pub fn set_backend(&self, backend: Option<Arc<dyn TicketBackend>>) {
        *self.backend.lock().unwrap_or_else(|p| p.into_inner()) = backend;
    }

    fn backend(&self) -> Option<Arc<dyn TicketBackend>> {
        self.backend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fills the local cache from the backend for `key` when it has nothing there.
    async fn fetch_missing(&self, key: &str) {
        if self.lock().contains_key(key) {
            return;
        }
        let Some(backend) = self.backend() else {
            return;
        };
        if let Some(der) = backend.get(key).await {
            match SslSession::from_der(&der) {
                Ok(session) => {
                    self.lock().insert(key.to_string(), session);
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "ignoring a stored ticket that does not parse")
                }
            }
        }
    }
}

impl std::fmt::Debug for TicketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketCache")
            .field("origins", &self.len())
            .finish()
    }
}

/// Per-connection data the new-session callback needs: where to file the ticket.
struct TicketSlot {
    cache: TicketCache,
    key: String,
}

fn ticket_slot_index() -> Index<Ssl, TicketSlot> {
    static INDEX: OnceLock<Index<Ssl, TicketSlot>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("BoringSSL can allocate an ex_data index"))
}

/// A BoringSSL client context built from one profile.
#[derive(Clone)]
pub struct TlsConnector {
    connector: SslConnector,
    key_shares: Arc<[u16]>,
    alps: Option<(Arc<[String]>, bool)>,
    alpn: Arc<[String]>,
    ech_grease: bool,
    insecure: bool,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("alpn", &self.alpn)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// The context for `profile` and `options`, shared with every other client that
    /// asks for the same pair while one of them is alive. Building a context parses the
    /// CA bundle (milliseconds); a crawl with thousands of sessions builds it once.
    /// Sharing is safe: BoringSSL's internal session cache is off, and tickets are filed
    /// per connection into the caller's [`TicketCache`].
    ///
    /// # Errors
    ///
    /// As [`TlsConnector::new`].
    pub fn shared(profile: &TlsProfile, options: &TlsOptions) -> Result<Arc<Self>> {
        TlsConnector::shared_keyed(&TlsConnector::profile_key(profile), profile, options)
    }

    /// The part of the shared-context key that comes from the profile (its settings
    /// in full: two profiles share a context only when every setting agrees). A
    /// client computes it once per profile, not per client.
    pub fn profile_key(profile: &TlsProfile) -> String {
        format!("{profile:?}")
    }

    /// [`TlsConnector::shared`] with the profile's part of the key already made
    /// ([`TlsConnector::profile_key`] of `profile`).
    ///
    /// # Errors
    ///
    /// As [`TlsConnector::new`].
    pub fn shared_keyed(
        profile_key: &str,
        profile: &TlsProfile,
        options: &TlsOptions,
    ) -> Result<Arc<Self>> {
        static CACHE: std::sync::OnceLock<Mutex<HashMap<String, std::sync::Weak<TlsConnector>>>> =
            std::sync::OnceLock::new();
        let key = format!("{profile_key}|{options:?}");
        let cache = CACHE.get_or_init(Default::default);
        let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(&key).and_then(std::sync::Weak::upgrade) {
            return Ok(existing);
        }
        let fresh = Arc::new(TlsConnector::new(profile, options)?);
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(&fresh));
        Ok(fresh)
    }

    /// Builds the context for `profile`.
    ///
    /// # Errors
    ///
    /// A code point BoringSSL does not know, or an unreadable `--cacert` file.
    pub fn new(profile: &TlsProfile, options: &TlsOptions) -> Result<Self> {
        let ctx_err = |what: &str, e: boring::error::ErrorStack| {
            Error::invalid_profile("tls".into(), format!("{what}: {e}"))
        };
        let mut b = SslConnector::builder(SslMethod::tls())
            .map_err(|e| ctx_err("cannot create a TLS context", e))?;

        b.set_min_proto_version(Some(tls_version(&profile.min_version)?))
            .map_err(|e| ctx_err("min_version", e))?;
        b.set_max_proto_version(Some(tls_version(&profile.max_version)?))
            .map_err(|e| ctx_err("max_version", e))?;

        let (tls13, tls12): (Vec<u16>, Vec<u16>) = profile
            .cipher_suites
            .iter()
            .map(|c| c.0)
            .partition(|c| (0x1301..=0x1303).contains(c));
        let names = tls12
            .iter()
            .map(|c| {
                cipher_name(*c).ok_or_else(|| {
                    Error::invalid_profile(
                        "tls.cipher_suites".into(),
                        format!("cipher 0x{c:04x} is not supported by BoringSSL"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        b.set_strict_cipher_list(&names.join(":"))
            .map_err(|e| ctx_err("tls.cipher_suites", e))?;
        if !tls13.is_empty() {
            // SAFETY: the context pointer is valid for the builder's lifetime and the
            // slice outlives the call; BoringSSL copies the list.
            let ok = unsafe {
                boring_sys::SSL_CTX_set1_tls13_ciphers(
                    b.as_ptr(),
                    tls13.as_ptr(),
                    std::ptr::null(),
                    tls13.len(),
                )
            };
            if ok != 1 {
                return Err(Error::invalid_profile(
                    "tls.cipher_suites".into(),
                    "BoringSSL refused the TLS 1.3 cipher order".into(),
                ));
            }
        }

        let curves = profile
            .groups
            .iter()
            .map(|g| {
                group_name(g.0).ok_or_else(|| {
                    Error::invalid_profile(
                        "tls.groups".into(),
                        format!("group 0x{:04x} is not supported by BoringSSL", g.0),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        b.set_curves_list(&curves.join(":"))
            .map_err(|e| ctx_err("tls.groups", e))?;

        let sigalgs: Vec<SslSignatureAlgorithm> = profile
            .signature_algorithms
            .iter()
            .map(|s| SslSignatureAlgorithm::from(s.0))
            .collect();
        b.set_verify_algorithm_prefs(&sigalgs)
            .map_err(|e| ctx_err("tls.signature_algorithms", e))?;

        b.set_grease_enabled(profile.grease);
        b.set_permute_extensions(profile.permute_extensions);
        if profile.ocsp_stapling {
            b.enable_ocsp_stapling();
        }
        if profile.signed_cert_timestamps {
            b.enable_signed_cert_timestamps();
        }
        for alg in &profile.cert_compression {
            match alg {
                CertCompression::Brotli => b.add_certificate_compression_algorithm(BrotliCerts),
                CertCompression::Zlib => b.add_certificate_compression_algorithm(ZlibCerts),
                // boring 5 exposes no zstd code point for certificate compression;
                // docs/profiles.md lists this among the fields not sent.
                CertCompression::Zstd => Ok(()),
            }
            .map_err(|e| ctx_err("tls.cert_compression", e))?;
        }
        if let Some(hex_ids) = &profile.trust_anchors {
            let raw = hex::decode(hex_ids).map_err(|e| {
                Error::invalid_profile("tls.trust_anchors".into(), format!("not hex: {e}"))
            })?;
            let ids = strip_u16_length(&raw);
            // SAFETY: valid context pointer; BoringSSL copies `ids`.
            let ok = unsafe {
                boring_sys::SSL_CTX_set1_requested_trust_anchors(
                    b.as_ptr(),
                    ids.as_ptr(),
                    ids.len(),
                )
            };
            if ok != 1 {
                return Err(Error::invalid_profile(
                    "tls.trust_anchors".into(),
                    "not a list of length-prefixed trust anchor IDs".into(),
                ));
            }
        }

        if profile.session_tickets {
            b.set_session_cache_mode(
                SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL,
            );
            b.set_new_session_callback(|ssl, session| {
                if let Some(slot) = ssl.ex_data(ticket_slot_index()) {
                    slot.cache.store(slot.key.clone(), session);
                }
            });
        } else {
            b.set_options(boring::ssl::SslOptions::NO_TICKET);
        }

        options.apply_verification(&mut b)?;

        Ok(TlsConnector {
            connector: b.build(),
            key_shares: profile.key_shares.iter().map(|k| k.0).collect(),
            alps: profile
                .alps
                .as_ref()
                .map(|a| (a.protocols.clone().into(), a.new_codepoint)),
            alpn: profile.alpn.clone().into(),
            ech_grease: profile.ech_grease,
            insecure: options.insecure,
        })
    }

    /// Runs the handshake over `stream` for `host:port`, offering `alpn` (or the profile's
    /// list when `None`) and the cached ticket for that origin.
    ///
    /// # Errors
    ///
    /// [`Error::is_tls`] naming the host and BoringSSL's reason (certificate, alert).
    pub async fn connect<S>(
        &self,
        host: &str,
        port: u16,
        stream: S,
        alpn: Option<&[String]>,
        tickets: &TicketCache,
    ) -> Result<(SslStream<S>, Arc<TlsInfo>)>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        // A ticket another worker filed under this key, before anything is built.
        let key = tickets.key_for(host, port);
        tickets.fetch_missing(&key).await;
        let config = self.handshake_config(host, alpn.unwrap_or(&self.alpn), key, tickets)?;
        let stream = tokio_boring::connect(config, host, stream)
            .await
            .map_err(|e| Error::tls(host, describe_handshake_error(&e)))?;
        let ssl = stream.ssl();
        let info = TlsInfo {
            version: ssl.version_str().to_string(),
            cipher: ssl
                .current_cipher()
                .and_then(|c| c.standard_name())
                .unwrap_or("unknown")
                .to_string(),
            alpn: ssl
                .selected_alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            resumed: ssl.session_reused(),
        };
        // Shared by the pooled connection and every response it carries.
        Ok((stream, Arc::new(info)))
    }
    /// The SSL for one QUIC handshake with `host:port`: the profile's context and
    /// per-handshake settings with ALPN `alpn` (`h3`), SNI and hostname verification,
    /// and the ticket filed by an earlier QUIC connection to that origin (QUIC tickets
    /// are kept apart from TCP ones: BoringSSL refuses to resume one over the other).
    /// [`crate::quic::QuicClientConfig`] drives it.
    ///
    /// # Errors
    ///
    /// [`Error::is_tls`] when BoringSSL refuses a setting.
    pub async fn quic_ssl(
        &self,
        host: &str,
        port: u16,
        alpn: &[String],
        tickets: &TicketCache,
    ) -> Result<Ssl> {
        let key = format!("{}|quic", tickets.key_for(host, port));
        tickets.fetch_missing(&key).await;
        let config = self.handshake_config(host, alpn, key, tickets)?;
        config.into_ssl(host).map_err(|e| Error::tls(host, e))
    }

    /// The per-handshake settings the context cannot hold: ALPN, key shares, ALPS, ECH
    /// GREASE and the ticket filed under `key`, which is also where a new ticket goes.
    fn handshake_config(
        &self,
        host: &str,
        alpn: &[String],
        key: String,
        tickets: &TicketCache,
    ) -> Result<boring::ssl::ConnectConfiguration> {
        let mut config = self
            .connector
            .configure()
            .map_err(|e| Error::tls(host, e))?;
        if self.insecure {
            config.set_verify_hostname(false);
        }
        config
            .set_alpn_protos(&alpn_wire(alpn))
            .map_err(|e| Error::tls(host, e))?;
        let ssl_ptr = config.as_ptr();
        if !self.key_shares.is_empty() {
            // SAFETY: `ssl_ptr` is the live SSL owned by `config`; BoringSSL copies the ids.
            let ok = unsafe {
                boring_sys::SSL_set1_client_key_shares(
                    ssl_ptr,
                    self.key_shares.as_ptr(),
                    self.key_shares.len(),
                )
            };
            if ok != 1 {
                return Err(Error::tls(
                    host,
                    "BoringSSL refused the profile's key shares",
                ));
            }
        }
        if let Some((protocols, new_codepoint)) = &self.alps {
            for proto in protocols.iter().filter(|p| alpn.contains(p)) {
                // SAFETY: valid SSL; proto bytes and the empty settings are copied.
                let ok = unsafe {
                    boring_sys::SSL_add_application_settings(
                        ssl_ptr,
                        proto.as_ptr(),
                        proto.len(),
                        std::ptr::null(),
                        0,
                    )
                };
                if ok != 1 {
                    return Err(Error::tls(host, "BoringSSL refused the ALPS settings"));
                }
            }
            // SAFETY: valid SSL pointer, plain flag setter.
            unsafe {
                boring_sys::SSL_set_alps_use_new_codepoint(ssl_ptr, i32::from(*new_codepoint))
            };
        }
        config.set_enable_ech_grease(self.ech_grease);

        if let Some(session) = tickets.take_for(&key) {
            // SAFETY: `set_session` wants a session made for a compatible context. The
            // session came either from a handshake on this context, or from DER that
            // one of our handshakes wrote (a snapshot): `d2i_SSL_SESSION` rebuilds it
            // with the same X.509 method every `SslMethod::tls()` context uses, and
            // BoringSSL itself refuses to offer a session whose version or cipher the
            // context does not allow.
            unsafe {
                config
                    .set_session(&session)
                    .map_err(|e| Error::tls(host, e))?;
            }
        }
        config.set_ex_data(
            ticket_slot_index(),
            TicketSlot {
                cache: tickets.clone(),
                key,
            },
        );

        Ok(config)
    }
}

/// A short reason for a failed handshake, naming what went wrong: the certificate only
/// when one was received and rejected (then with the `--cacert`/`-k` hint), a fatal
/// alert by its name, a peer that does not speak TLS (`wrong version number`: plain HTTP
/// on the port, say), or the socket error. The decision is [`handshake_failure`]'s.
fn describe_handshake_error<S>(e: &tokio_boring::HandshakeError<S>) -> String {
    let ssl = e.ssl();
    let verify = ssl
        .map(|s| s.verify_result())
        .and_then(|r| r.err())
        .filter(|v| *v != boring::x509::X509VerifyError::INVALID_CALL)
        .map(|v| v.error_string().to_string());
    let certificate_received = ssl.is_some_and(|s| s.peer_certificate().is_some());
    let text = e.to_string();
    let reasons = error_reasons(&text);
    handshake_failure(
        certificate_received.then_some(verify).flatten().as_deref(),
        &reasons,
        e.as_io_error().map(ToString::to_string).as_deref(),
    )
}

/// BoringSSL's reason names (`WRONG_VERSION_NUMBER`, `SSLV3_ALERT_HANDSHAKE_FAILURE`) in a
/// handshake error's text: the upper-case words of its error stack.
fn error_reasons(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| {
            w.len() > 3 && w.contains('_') && w.starts_with(|c: char| c.is_ascii_uppercase())
        })
        .collect()
}

/// What a failed handshake says, from what is known of it: the certificate's verify
/// error when one was received and rejected, BoringSSL's reason names, the socket error.
fn handshake_failure(
    rejected_certificate: Option<&str>,
    reasons: &[&str],
    io: Option<&str>,
) -> String {
    if let Some(verify) = rejected_certificate {
        return format!(
            "certificate verification failed: {verify} (use --cacert FILE to trust a private CA, or -k to skip verification)"
        );
    }
    let words = |reason: &str| reason.to_ascii_lowercase().replace('_', " ");
    if let Some(alert) = reasons.iter().find_map(|r| {
        r.strip_prefix("SSLV3_ALERT_")
            .or_else(|| r.strip_prefix("TLSV1_ALERT_"))
            .or_else(|| r.strip_prefix("TLSV13_ALERT_"))
    }) {
        return format!("the server sent a fatal TLS alert: {}", words(alert));
    }
    if reasons.contains(&"WRONG_VERSION_NUMBER") {
        return "the server did not answer with TLS (wrong version number: plain HTTP on this port, or not a TLS server?)".into();
    }
    if let Some(io) = io {
        return format!("the connection failed during the TLS handshake: {io}");
    }
    match reasons.first() {
        Some(reason) => format!("TLS handshake failed: {}", words(reason)),
        None => "TLS handshake failed: the server closed the connection".into(),
    }
}

fn tls_version(v: &str) -> Result<SslVersion> {
    match v {
        "1.2" => Ok(SslVersion::TLS1_2),
        "1.3" => Ok(SslVersion::TLS1_3),
        other => Err(Error::invalid_profile(
            "tls".into(),
            format!("version `{other}` must be 1.2 or 1.3"),
        )),
    }
}

fn system_ca_bundle() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SSL_CERT_FILE") {
        return Some(PathBuf::from(p));
    }
    SYSTEM_CA_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// ALPN protocol list in wire format (length-prefixed strings).
fn alpn_wire(protocols: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in protocols {
        out.push(p.len() as u8);
        out.extend_from_slice(p.as_bytes());
    }
    out
}

/// The trust_anchors payload as captured starts with a u16 list length; BoringSSL wants
/// the list without it.
fn strip_u16_length(raw: &[u8]) -> &[u8] {
    if raw.len() >= 2 && usize::from(u16::from_be_bytes([raw[0], raw[1]])) == raw.len() - 2 {
        &raw[2..]
    } else {
        raw
    }
}

/// BoringSSL's name for a TLS 1.2 cipher suite code point.
pub fn cipher_name(code: u16) -> Option<&'static str> {
    Some(match code {
        0xc02b => "ECDHE-ECDSA-AES128-GCM-SHA256",
        0xc02f => "ECDHE-RSA-AES128-GCM-SHA256",
        0xc02c => "ECDHE-ECDSA-AES256-GCM-SHA384",
        0xc030 => "ECDHE-RSA-AES256-GCM-SHA384",
        0xcca9 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        0xcca8 => "ECDHE-RSA-CHACHA20-POLY1305",
        0xc009 => "ECDHE-ECDSA-AES128-SHA",
        0xc00a => "ECDHE-ECDSA-AES256-SHA",
        0xc013 => "ECDHE-RSA-AES128-SHA",
        0xc014 => "ECDHE-RSA-AES256-SHA",
        0x009c => "AES128-GCM-SHA256",
        0x009d => "AES256-GCM-SHA384",
        0x002f => "AES128-SHA",
        0x0035 => "AES256-SHA",
        0x000a => "DES-CBC3-SHA",
        _ => return None,
    })
}

/// BoringSSL's name for a supported_groups code point.
pub fn group_name(code: u16) -> Option<&'static str> {
    Some(match code {
        0x11ec => "X25519MLKEM768",
        0x6399 => "X25519Kyber768Draft00",
        0x001d => "X25519",
        0x0017 => "P-256",
        0x0018 => "P-384",
        0x0019 => "P-521",
        _ => return None,
    })
}

// ===== certificate decompression (RFC 8879) =====

/// A compressed certificate larger than this is refused: real chains are a few KiB.
const MAX_DECOMPRESSED_CERTIFICATE: u64 = 256 * 1024;

fn copy_limited(
    reader: impl std::io::Read,
    output: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let n = std::io::copy(&mut reader.take(MAX_DECOMPRESSED_CERTIFICATE + 1), output)?;
    if n > MAX_DECOMPRESSED_CERTIFICATE {
        return Err(std::io::Error::other("decompressed certificate too large"));
    }
    Ok(())
}

struct BrotliCerts;
impl CertificateCompressor for BrotliCerts {
    const ALGORITHM: CertificateCompressionAlgorithm = CertificateCompressionAlgorithm::BROTLI;
    const CAN_COMPRESS: bool = false;
    const CAN_DECOMPRESS: bool = true;
    fn decompress<W: std::io::Write>(&self, input: &[u8], output: &mut W) -> std::io::Result<()> {
        copy_limited(brotli::Decompressor::new(input, 4096), output)
    }
}

struct ZlibCerts;
impl CertificateCompressor for ZlibCerts {
    const ALGORITHM: CertificateCompressionAlgorithm = CertificateCompressionAlgorithm::ZLIB;
    const CAN_COMPRESS: bool = false;
    const CAN_DECOMPRESS: bool = true;
    fn decompress<W: std::io::Write>(&self, input: &[u8], output: &mut W) -> std::io::Result<()> {
        copy_limited(flate2::read::ZlibDecoder::new(input), output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn every_builtin_profile_builds_a_context() {
        for name in Profile::builtin_names() {
            let p = Profile::named(name).unwrap();
            TlsConnector::new(&p.tls, &TlsOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn trust_anchor_length_prefix_is_stripped_once() {
        assert_eq!(strip_u16_length(&[0, 2, 1, 9]), &[1, 9]);
        assert_eq!(strip_u16_length(&[1, 9]), &[1, 9]);
    }

    #[test]
    fn handshake_failures_are_named_by_their_cause() {
        let reasons = error_reasons(
            "TLS handshake failed error:10000410:SSL routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE",
        );
        assert!(
            reasons.contains(&"SSLV3_ALERT_HANDSHAKE_FAILURE"),
            "{reasons:?}"
        );
        assert_eq!(
            handshake_failure(None, &["SSLV3_ALERT_HANDSHAKE_FAILURE"], None),
            "the server sent a fatal TLS alert: handshake failure"
        );
        assert!(handshake_failure(None, &["WRONG_VERSION_NUMBER"], None).contains("plain HTTP"));
        assert!(handshake_failure(Some("self-signed certificate"), &[], None).contains("-k"));
        assert!(handshake_failure(None, &[], Some("connection reset")).contains("connection reset"));
        assert!(!handshake_failure(None, &["DECODE_ERROR"], None).contains("certificate"));
    }
}
