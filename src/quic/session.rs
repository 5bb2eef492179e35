//! The QUIC handshake over BoringSSL: quinn's [`crypto::Session`] driven by
//! BoringSSL's QUIC API (`SSL_set_quic_method`, `SSL_provide_quic_data`), so the QUIC
//! ClientHello is built by the same profile machinery as TCP ([`crate::tls`]).
//!
//! BoringSSL reports secrets and handshake bytes through C callbacks while
//! `SSL_do_handshake` runs; they are queued in `Pending` (reached through the SSL's
//! ex-data) and handed to quinn in order by `write_handshake` ([`crypto::Session`]):
//! first the bytes of the level quinn is at, then the keys of the next level once
//! BoringSSL has installed both directions.
//!
//! Why by hand: `quinn-boring`, the crate that does this, is built on boring 4 (its
//! `boring-sys` links a second BoringSSL, which cargo refuses next to boring 5) and
//! builds its own `SSL_CTX`, while the ClientHello must come from the profile's.

use std::any::Any;
use std::sync::{Arc, Mutex, OnceLock};

use boring::ex_data::Index;
use boring::ssl::{Ssl, SslRef};
use foreign_types::{ForeignType, ForeignTypeRef};
use quinn_proto::crypto::{self, CryptoError, ExportKeyingMaterialError, KeyPair, Keys, PacketKey};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectError, ConnectionId, Side, TransportError, TransportErrorCode};

use super::keys::{self, Suite, QUIC_V1};
use super::params::ParamsLayout;

/// What quinn learns when the handshake has produced its first results.
#[derive(Clone, Debug)]
pub struct HandshakeData {
    /// The ALPN protocol the server chose (`h3`).
    pub protocol: Option<Vec<u8>>,
    /// Whether the TLS session was resumed from a ticket.
    pub resumed: bool,
    /// The TLS 1.3 cipher suite, by its standard name.
    pub cipher: Option<String>,
}

/// Secrets and bytes BoringSSL handed out, waiting for quinn.
#[derive(Default)]
struct Pending {
    /// Handshake bytes in the order BoringSSL wrote them, by level (0 Initial, 1 early
    /// data, 2 Handshake, 3 application).
    data: Vec<(usize, Vec<u8>)>,
    read: [Option<(Suite, Vec<u8>)>; 4],
    write: [Option<(Suite, Vec<u8>)>; 4],
    alert: Option<u8>,
    refused_cipher: Option<u16>,
}

type Shared = Arc<Mutex<Pending>>;

fn pending_index() -> Index<Ssl, Shared> {
    static INDEX: OnceLock<Index<Ssl, Shared>> = OnceLock::new();
    *INDEX.get_or_init(|| {
        // An index is allocated once per process; failing means BoringSSL is out of
        // memory at start-up, where nothing else would work either.
        Ssl::new_ex_index().expect("BoringSSL allocates an ex-data index")
    })
}

/// The callbacks' view of the queue. `None` only for an SSL this module did not set up.
///
/// # Safety
///
/// `ssl` must be a live SSL pointer handed to a callback by BoringSSL.
unsafe fn pending_of(ssl: *mut boring_sys::SSL) -> Option<Shared> {
    // SAFETY: the caller passes BoringSSL's own live pointer; we only read ex-data.
    let ssl = unsafe { SslRef::from_ptr(ssl) };
    ssl.ex_data(pending_index()).cloned()
}

fn level_index(level: boring_sys::ssl_encryption_level_t) -> usize {
    (level.0 as usize).min(3)
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Pending> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// # Safety
///
/// Called by BoringSSL with a live SSL, a cipher it negotiated and `secret_len`
/// readable bytes at `secret`.
unsafe fn record_secret(
    ssl: *mut boring_sys::SSL,
    level: boring_sys::ssl_encryption_level_t,
    cipher: *const boring_sys::SSL_CIPHER,
    secret: *const u8,
    secret_len: usize,
    write: bool,
) -> std::os::raw::c_int {
    // SAFETY: forwarded from BoringSSL's callback contract.
    let Some(shared) = (unsafe { pending_of(ssl) }) else {
        return 0;
    };
    // SAFETY: BoringSSL passes a valid cipher for the secret it derived.
    let id = unsafe { boring_sys::SSL_CIPHER_get_protocol_id(cipher) };
    let mut pending = lock(&shared);
    let Some(suite) = Suite::from_tls_id(id) else {
        pending.refused_cipher = Some(id);
        return 0;
    };
    // SAFETY: `secret` points at `secret_len` bytes for the duration of the call.
    let bytes = unsafe { std::slice::from_raw_parts(secret, secret_len) }.to_vec();
    let slot = if write {
        &mut pending.write
    } else {
        &mut pending.read
    };
    slot[level_index(level)] = Some((suite, bytes));
    1
}

unsafe extern "C" fn set_read_secret(
    ssl: *mut boring_sys::SSL,
    level: boring_sys::ssl_encryption_level_t,
    cipher: *const boring_sys::SSL_CIPHER,
    secret: *const u8,
    secret_len: usize,
) -> std::os::raw::c_int {
    // SAFETY: BoringSSL's callback contract, forwarded.
    unsafe { record_secret(ssl, level, cipher, secret, secret_len, false) }
}

unsafe extern "C" fn set_write_secret(
    ssl: *mut boring_sys::SSL,
    level: boring_sys::ssl_encryption_level_t,
    cipher: *const boring_sys::SSL_CIPHER,
    secret: *const u8,
    secret_len: usize,
) -> std::os::raw::c_int {
    // SAFETY: BoringSSL's callback contract, forwarded.
    unsafe { record_secret(ssl, level, cipher, secret, secret_len, true) }
}

unsafe extern "C" fn add_handshake_data(
    ssl: *mut boring_sys::SSL,
    level: boring_sys::ssl_encryption_level_t,
    data: *const u8,
    len: usize,
) -> std::os::raw::c_int {
    // SAFETY: a live SSL from BoringSSL.
    let Some(shared) = (unsafe { pending_of(ssl) }) else {
        return 0;
    };
    // SAFETY: `data` holds `len` bytes for the duration of the call.
    let bytes = unsafe { std::slice::from_raw_parts(data, len) };
    let level = level_index(level);
    let mut pending = lock(&shared);
    match pending.data.last_mut() {
        Some((last, buf)) if *last == level => buf.extend_from_slice(bytes),
        _ => pending.data.push((level, bytes.to_vec())),
    }
    1
}

unsafe extern "C" fn flush_flight(_ssl: *mut boring_sys::SSL) -> std::os::raw::c_int {
    // quinn packs and sends what `write_handshake` returns; nothing to flush here.
    1
}

unsafe extern "C" fn send_alert(
    ssl: *mut boring_sys::SSL,
    _level: boring_sys::ssl_encryption_level_t,
    alert: u8,
) -> std::os::raw::c_int {
    // SAFETY: a live SSL from BoringSSL.
    if let Some(shared) = unsafe { pending_of(ssl) } {
        lock(&shared).alert = Some(alert);
    }
    1
}

static QUIC_METHOD: boring_sys::SSL_QUIC_METHOD = boring_sys::SSL_QUIC_METHOD {
    set_read_secret: Some(set_read_secret),
    set_write_secret: Some(set_write_secret),
    add_handshake_data: Some(add_handshake_data),
    flush_flight: Some(flush_flight),
    send_alert: Some(send_alert),
};

/// A quinn client configuration for exactly one connection: the SSL prepared by
/// [`crate::tls::TlsConnector::quic_ssl`] (SNI, ALPN `h3`, key shares, ALPS, ticket) and
/// the layout its transport parameters are written in.
pub struct QuicClientConfig {
    ssl: Mutex<Option<Ssl>>,
    layout: ParamsLayout,
}

impl QuicClientConfig {
    /// Wraps a prepared SSL; quinn starts its session at most once.
    pub fn new(ssl: Ssl, layout: ParamsLayout) -> Self {
        QuicClientConfig {
            ssl: Mutex::new(Some(ssl)),
            layout,
        }
    }
}

impl crypto::ClientConfig for QuicClientConfig {
    fn start_session(
        self: Arc<Self>,
        version: u32,
        server_name: &str,
        params: &TransportParameters,
    ) -> Result<Box<dyn crypto::Session>, ConnectError> {
        if version != QUIC_V1 {
            return Err(ConnectError::UnsupportedVersion);
        }
        let ssl = self
            .ssl
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| {
                ConnectError::InvalidServerName(format!(
                    "{server_name}: this QUIC configuration was already used"
                ))
            })?;
        BoringQuicSession::start(ssl, &self.layout, params)
            .map(|s| Box::new(s) as Box<dyn crypto::Session>)
            .map_err(|why| ConnectError::InvalidServerName(format!("{server_name}: {why}")))
    }
}

/// One client handshake and its 1-RTT key updates.
pub struct BoringQuicSession {
    ssl: Ssl,
    pending: Shared,
    /// The level whose keys quinn has: 0 Initial, 2 Handshake, 3 application.
    level: usize,
    got_handshake_data: bool,
    /// The current 1-RTT secrets (local, remote), advanced by each key update.
    app_secrets: Option<(Suite, Vec<u8>, Vec<u8>)>,
}

impl BoringQuicSession {
    fn start(
        mut ssl: Ssl,
        layout: &ParamsLayout,
        params: &TransportParameters,
    ) -> Result<Self, String> {
        let pending: Shared = Arc::default();
        ssl.set_ex_data(pending_index(), pending.clone());
        let raw = layout.encode(params);
        let ptr = ssl.as_ptr();
        // SAFETY: `ptr` is the SSL we own; the method table is a static that outlives
        // it; BoringSSL copies the transport parameters.
        let ok = unsafe {
            boring_sys::SSL_set_quic_use_legacy_codepoint(ptr, 0);
            boring_sys::SSL_set_quic_method(ptr, &QUIC_METHOD) == 1
                && boring_sys::SSL_set_quic_transport_params(ptr, raw.as_ptr(), raw.len()) == 1
        };
        if !ok {
            return Err("BoringSSL refused the QUIC settings".into());
        }
        // SAFETY: a fully configured client SSL; the first call writes the ClientHello
        // through `add_handshake_data` and asks for more input.
        unsafe { boring_sys::SSL_set_connect_state(ptr) };
        let mut session = BoringQuicSession {
            ssl,
            pending,
            level: 0,
            got_handshake_data: false,
            app_secrets: None,
        };
        session.drive().map_err(|e| e.reason)?;
        Ok(session)
    }

    fn handshaking(&self) -> bool {
        // SAFETY: a live SSL we own.
        unsafe { boring_sys::SSL_in_init(self.ssl.as_ptr()) == 1 }
    }

    /// Runs the handshake (or post-handshake processing) as far as the input allows.
    fn drive(&mut self) -> Result<(), TransportError> {
        let ptr = self.ssl.as_ptr();
        if self.handshaking() {
            // SAFETY: a live SSL with the QUIC method installed.
            let rc = unsafe { boring_sys::SSL_do_handshake(ptr) };
            if rc == 1 {
                return Ok(());
            }
            // SAFETY: as above; `rc` is the value the call returned.
            let code = unsafe { boring_sys::SSL_get_error(ptr, rc) };
            if code == boring_sys::SSL_ERROR_WANT_READ {
                return Ok(());
            }
            return Err(self.failure("TLS handshake failed"));
        }
        // SAFETY: as above; handles NewSessionTicket and other post-handshake messages.
        if unsafe { boring_sys::SSL_process_quic_post_handshake(ptr) } != 1 {
            return Err(self.failure("TLS post-handshake message refused"));
        }
        Ok(())
    }

    fn failure(&self, what: &str) -> TransportError {
        let pending = lock(&self.pending);
        let reason = match (pending.alert, pending.refused_cipher) {
            (_, Some(id)) => format!("{what}: cipher 0x{id:04x} is not a QUIC cipher"),
            (Some(alert), _) => {
                // SAFETY: returns a static string for any alert value.
                let name = unsafe {
                    std::ffi::CStr::from_ptr(boring_sys::SSL_alert_desc_string_long(i32::from(
                        alert,
                    )))
                };
                format!("{what}: {}", name.to_string_lossy())
            }
            _ => format!("{what}: {}", boring::error::ErrorStack::get()),
        };
        TransportError {
            code: TransportErrorCode::crypto(pending.alert.unwrap_or(80)),
            frame: None,
            reason,
        }
    }

    fn cipher_name(&self) -> Option<String> {
        self.ssl
            .current_cipher()
            .and_then(|c| c.standard_name())
            .map(str::to_string)
    }
}

impl crypto::Session for BoringQuicSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        let derived = keys::initial_secrets(dst_cid).and_then(|(client, server)| match side {
            Side::Client => Suite::Aes128Gcm.keys(&client, &server),
            Side::Server => Suite::Aes128Gcm.keys(&server, &client),
        });
        // HKDF over a connection ID of at most 20 bytes and fixed-length outputs
        // cannot fail; `expect` documents that rather than inventing a fallback key.
        derived.expect("Initial keys derive from any connection ID")
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        if !self.got_handshake_data {
            return None;
        }
        Some(Box::new(HandshakeData {
            protocol: self.ssl.selected_alpn_protocol().map(<[u8]>::to_vec),
            resumed: self.ssl.session_reused(),
            cipher: self.cipher_name(),
        }))
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        let chain = self.ssl.peer_cert_chain()?;
        let ders: Vec<Vec<u8>> = chain.iter().filter_map(|c| c.to_der().ok()).collect();
        Some(Box::new(ders))
    }

    fn early_crypto(&self) -> Option<(Box<dyn crypto::HeaderKey>, Box<dyn PacketKey>)> {
        // 0-RTT is not offered yet (docs/architecture.md, "HTTP/3").
        None
    }

    fn early_data_accepted(&self) -> Option<bool> {
        None
    }

    fn is_handshaking(&self) -> bool {
        self.handshaking()
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        let ptr = self.ssl.as_ptr();
        // SAFETY: a live SSL; BoringSSL copies `buf` at the level it expects to read.
        let ok = unsafe {
            let level = boring_sys::SSL_quic_read_level(ptr);
            boring_sys::SSL_provide_quic_data(ptr, level, buf.as_ptr(), buf.len()) == 1
        };
        if !ok {
            return Err(self.failure("TLS data refused"));
        }
        self.drive()?;
        if !self.got_handshake_data
            && (self.ssl.selected_alpn_protocol().is_some() || !self.handshaking())
        {
            self.got_handshake_data = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        let mut ptr = std::ptr::null();
        let mut len = 0usize;
        // SAFETY: a live SSL; the out-pointers are valid locals. The returned buffer
        // belongs to the SSL and is copied below before any other call.
        unsafe {
            boring_sys::SSL_get_peer_quic_transport_params(self.ssl.as_ptr(), &mut ptr, &mut len)
        };
        if ptr.is_null() || len == 0 {
            return Ok(None);
        }
        // SAFETY: BoringSSL guarantees `len` readable bytes at `ptr` while the SSL lives.
        let raw = unsafe { std::slice::from_raw_parts(ptr, len) };
        TransportParameters::read(Side::Client, &mut &raw[..])
            .map(Some)
            .map_err(|e| TransportError {
                code: TransportErrorCode::TRANSPORT_PARAMETER_ERROR,
                frame: None,
                reason: format!("server transport parameters: {e}"),
            })
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        let mut pending = lock(&self.pending);
        let level = self.level;
        pending.data.retain(|(l, bytes)| {
            if *l == level {
                buf.extend_from_slice(bytes);
                false
            } else {
                true
            }
        });
        let next = match level {
            0 => 2,
            2 => 3,
            _ => return None,
        };
        let (Some((suite, local)), Some((_, remote))) =
            (pending.write[next].clone(), pending.read[next].clone())
        else {
            return None;
        };
        let keys = suite.keys(&local, &remote).ok()?;
        self.level = next;
        if next == 3 {
            self.app_secrets = Some((suite, local, remote));
        }
        Some(keys)
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        let (suite, local, remote) = self.app_secrets.as_mut()?;
        let next_local = suite.next_secret(local).ok()?;
        let next_remote = suite.next_secret(remote).ok()?;
        let pair = KeyPair {
            local: Box::new(suite.packet_key(&next_local).ok()?) as Box<dyn PacketKey>,
            remote: Box::new(suite.packet_key(&next_remote).ok()?) as Box<dyn PacketKey>,
        };
        *local = next_local;
        *remote = next_remote;
        Some(pair)
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        keys::retry_tag_is_valid(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        // SAFETY: a live SSL; every pointer is paired with its slice's length.
        let ok = unsafe {
            boring_sys::SSL_export_keying_material(
                self.ssl.as_ptr(),
                output.as_mut_ptr(),
                output.len(),
                label.as_ptr().cast(),
                label.len(),
                context.as_ptr(),
                context.len(),
                1,
            )
        };
        if ok == 1 {
            Ok(())
        } else {
            Err(ExportKeyingMaterialError)
        }
    }
}

/// quinn's stateless-reset key: HMAC-SHA256 from the `hmac` crate, so the client needs
/// no `ring`.
pub struct ResetKey {
    key: [u8; 32],
}

impl ResetKey {
    /// A fresh random key.
    pub fn random() -> Self {
        ResetKey {
            key: rand::random(),
        }
    }
}

impl crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        use hmac::Mac;
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key) else {
            return;
        };
        mac.update(data);
        let tag = mac.finalize().into_bytes();
        let n = signature_out.len().min(tag.len());
        signature_out[..n].copy_from_slice(&tag[..n]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let mut expected = [0u8; 32];
        self.sign(data, &mut expected);
        if signature.len() == expected.len() && boring::memcmp::eq(&expected, signature) {
            Ok(())
        } else {
            Err(CryptoError)
        }
    }
}
