//! Saving and restoring a session: [`SessionSnapshot`] (versioned serde data), its
//! encryption at rest (ChaCha20-Poly1305 with a 32-byte [`SnapshotKey`]) and the atomic
//! file write (temporary file, fsync, rename, fsync of the directory; mode 0600).
//!
//! A crash during [`Session::save`] leaves the previous file intact: the new content is
//! complete on disk before the rename makes it visible. [`Session::load`] refuses a
//! corrupt, truncated, tampered, wrongly keyed or newer-version file with an error that
//! says which, and never writes to it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cache::{CacheConfig, CacheRecord};
use super::{unix_ms, Session};
use crate::client::ClientBuilder;
use crate::cookies::CookieRecord;
use crate::error::{Error, Result};
use crate::profile::Profile;
use crate::tls::TicketRecord;

/// The snapshot format version this build writes. It reads this and every older one.
pub const SNAPSHOT_VERSION: u32 = 1;

/// First bytes of an encrypted snapshot file (also the AEAD's associated data).
const ENCRYPTED_MAGIC: &[u8] = b"MUMMER-SNAPSHOT-ENC1\n";
const NONCE_LEN: usize = 12;

/// Everything a session needs to come back as it was.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// Format version ([`SNAPSHOT_VERSION`] when written by this build).
    pub version: u32,
    /// The session id.
    pub id: Uuid,
    /// The tenant it belongs to (snapshots from before tenants: the default one).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The profile: by name when it is an unchanged built-in, inline otherwise.
    pub profile: SnapshotProfile,
    /// TLS-ticket partition identifier.
    pub identifier: String,
    /// Creation time, Unix milliseconds.
    pub created_at: u64,
    /// Requests sent so far.
    pub request_count: u64,
    /// The current top-level document.
    #[serde(default)]
    pub document: Option<String>,
    /// Cookies, oldest first.
    pub cookies: Vec<CookieRecord>,
    /// TLS session tickets (DER), keyed by identifier, profile, protocol, host and port.
    pub tickets: Vec<TicketRecord>,
    /// What the cache keeps, and its entries (validators, and bodies when kept).
    pub cache_config: CacheConfig,
    /// Cache entries, least recently used first.
    pub cache: Vec<CacheRecord>,
    /// Origins that asked for client hints, and the hints.
    pub accept_ch: BTreeMap<String, Vec<String>>,
    /// HTTP/3 alternatives the origins offered (`Alt-Svc`), unexpired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alt_svc: Vec<crate::alt_svc::AltSvcRecord>,
}

fn default_tenant() -> String {
    crate::tenant::DEFAULT_TENANT.to_owned()
}

/// How a snapshot names its profile.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotProfile {
    /// A built-in profile, by name.
    Name(String),
    /// A custom profile, in full.
    Inline(Box<Profile>),
}

/// A 32-byte key for snapshot encryption.
#[derive(Clone)]
pub struct SnapshotKey([u8; 32]);

impl std::fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotKey(..)")
    }
}

impl SnapshotKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SnapshotKey {
        SnapshotKey(bytes)
    }

    /// A key from 64 hex digits (how the CLI and environment pass it).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] for anything but 64 hex digits.
    pub fn from_hex(hex_key: &str) -> Result<SnapshotKey> {
        let bytes = hex::decode(hex_key.trim())
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| Error::invalid_input("a snapshot key is 64 hex digits (32 bytes)"))?;
        if looks_made_up(&bytes) {
            return Err(Error::invalid_input(
                "this snapshot key is not random (all one byte, a short repeated pattern or a counting sequence): make one with `openssl rand -hex 32`",
            ));
        }
        Ok(SnapshotKey(bytes))
    }

    /// A fresh random key.
    pub fn generate() -> SnapshotKey {
        SnapshotKey(rand::random())
    }

    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Whether 32 key bytes were typed rather than drawn: fewer than 12 distinct byte
/// values (a random key has about 30; one below 12 has a chance under 1e-20), or bytes
/// that step by a constant (`000102...`, `ffeedd...`).
fn looks_made_up(bytes: &[u8; 32]) -> bool {
    let mut seen = [false; 256];
    for b in bytes {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    let step = bytes[1].wrapping_sub(bytes[0]);
    let counting = bytes.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step);
    distinct < 12 || counting
}

impl Session {
    /// The session as data. Cost: the session lock while copying cookies and cache
    /// entries, and the ticket lock while encoding tickets; no I/O.
    pub fn snapshot(&self) -> SessionSnapshot {
        let profile = self.profile();
        let profile = match Profile::shared(&profile.name) {
            Ok(builtin) if *builtin == *profile => SnapshotProfile::Name(profile.name.clone()),
            _ => SnapshotProfile::Inline(Box::new(profile.clone())),
        };
        let tickets = self.inner.client.tickets().export();
        let st = self.state();
        SessionSnapshot {
            version: SNAPSHOT_VERSION,
            id: self.inner.id,
            tenant: self.inner.tenant.to_string(),
            profile,
            identifier: st.identifier.clone(),
            created_at: unix_ms(self.inner.created_at),
            request_count: self
                .inner
                .request_count
                .load(std::sync::atomic::Ordering::Relaxed),
            document: st.document.as_ref().map(|u| u.to_string()),
            cookies: st.jar.records(),
            tickets,
            cache_config: st.cache.config(),
            cache: st.cache.export(),
            accept_ch: st.accept_ch.clone(),
            alt_svc: self.inner.client.alt_svc_export(),
        }
    }

    /// A session from a snapshot; `transport` sets the options snapshots do not carry
    /// (proxy, CA file, resolve overrides, timeouts).
    ///
    /// # Errors
    ///
    /// An unknown profile name, or invalid cookies, tickets or cache entries (named).
    pub fn from_snapshot(
        snapshot: SessionSnapshot,
        transport: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Result<Session> {
        let profile: std::sync::Arc<Profile> = match snapshot.profile {
            SnapshotProfile::Name(name) => Profile::shared(&name)?,
            SnapshotProfile::Inline(p) => std::sync::Arc::new(*p),
        };
        let created_at = UNIX_EPOCH + Duration::from_millis(snapshot.created_at);
        let session = Session::builder(profile)
            .identifier(snapshot.identifier)
            .tenant(snapshot.tenant)
            .cache(snapshot.cache_config)
            .transport(transport)
            .build_with(snapshot.id, created_at)?;
        session.inner.client.tickets().import(&snapshot.tickets)?;
        session.inner.client.alt_svc_import(&snapshot.alt_svc);
        {
            let mut st = session.state();
            st.jar.import(&snapshot.cookies)?;
            st.cache.import(&snapshot.cache)?;
            st.accept_ch = snapshot.accept_ch;
            st.document = snapshot
                .document
                .as_deref()
                .and_then(|d| url::Url::parse(d).ok())
                .map(std::sync::Arc::new);
        }
        session
            .inner
            .request_count
            .store(snapshot.request_count, std::sync::atomic::Ordering::Relaxed);
        Ok(session)
    }

    /// The snapshot as a session store keeps it: compact JSON, encrypted when `key` is
    /// given (the same envelope as snapshot files). Cost: [`Session::snapshot`] plus
    /// serialization; no I/O.
    ///
    /// # Errors
    ///
    /// Serialization or encryption failure (neither happens in practice).
    pub fn snapshot_bytes(&self, key: Option<&SnapshotKey>) -> Result<Vec<u8>> {
        encode_compact(&self.snapshot(), key)
    }

    /// Writes the snapshot to `path` atomically (mode 0600), encrypted when `key` is
    /// given.
    ///
    /// # Errors
    ///
    /// [`Error::is_snapshot`] with the I/O failure; the previous file is untouched.
    pub fn save(&self, path: impl AsRef<Path>, key: Option<&SnapshotKey>) -> Result<()> {
        let path = path.as_ref();
        let bytes = encode(&self.snapshot(), key)?;
        crate::fs::write_atomic(path, &bytes, |_| Ok(()))
            .map_err(|e| Error::snapshot(path.display(), format!("cannot write: {e}")))
    }

    /// Reads a snapshot file written by [`Session::save`] and restores the session.
    ///
    /// # Errors
    ///
    /// [`Error::is_snapshot`] saying whether the file is unreadable, not a snapshot,
    /// corrupt or truncated (with the field), encrypted without a key, wrongly keyed or
    /// tampered, or from a newer version. The file is never modified.
    pub fn load(
        path: impl AsRef<Path>,
        key: Option<&SnapshotKey>,
        transport: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Result<Session> {
        let path = path.as_ref();
        if let (Some(name), dir) = (path.file_name().and_then(|n| n.to_str()), path.parent()) {
            let dir = dir
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            crate::fs::sweep_interrupted_saves(dir, Some(name));
        }
        let bytes = crate::files::read_capped(path, crate::files::MAX_SNAPSHOT_FILE_BYTES)
            .map_err(|e| Error::snapshot(path.display(), format!("cannot read: {e}")))?;
        let snapshot = decode(&bytes, key).map_err(|why| Error::snapshot(path.display(), why))?;
        Session::from_snapshot(snapshot, transport)
            .map_err(|e| Error::snapshot(path.display(), format!("cannot restore: {e}")))
    }
}

/// The file bytes of `snapshot`: JSON, or the encrypted envelope.
///
/// # Errors
///
/// Serialization or encryption failure (neither happens in practice).
pub fn encode(snapshot: &SessionSnapshot, key: Option<&SnapshotKey>) -> Result<Vec<u8>> {
    let json = serde_json::to_vec_pretty(snapshot)
        .map_err(|e| Error::snapshot("(in memory)", format!("cannot serialize: {e}")))?;
    seal(json, key)
}

/// As [`encode`], without the indentation (what stores keep: about a third smaller).
///
/// # Errors
///
/// As [`encode`].
pub(crate) fn encode_compact(
    snapshot: &SessionSnapshot,
    key: Option<&SnapshotKey>,
) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(snapshot)
        .map_err(|e| Error::snapshot("(in memory)", format!("cannot serialize: {e}")))?;
    seal(json, key)
}

/// Encrypts `json` into the envelope when there is a key.
fn seal(json: Vec<u8>, key: Option<&SnapshotKey>) -> Result<Vec<u8>> {
    let Some(key) = key else {
        return Ok(json);
    };
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let nonce: [u8; NONCE_LEN] = rand::random();
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &json,
                aad: ENCRYPTED_MAGIC,
            },
        )
        .map_err(|_| Error::snapshot("(in memory)", "encryption failed"))?;
    let mut out = Vec::with_capacity(ENCRYPTED_MAGIC.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(ENCRYPTED_MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Parses file bytes into a snapshot; the error says what is wrong.
pub fn decode(
    bytes: &[u8],
    key: Option<&SnapshotKey>,
) -> std::result::Result<SessionSnapshot, String> {
    let json: Vec<u8> = match (bytes.strip_prefix(ENCRYPTED_MAGIC), key) {
        (Some(_), None) => {
            return Err("the snapshot is encrypted: pass its key (--session-key or MUMMER_SESSION_KEY)".into())
        }
        (Some(rest), Some(key)) => {
            if rest.len() < NONCE_LEN + 16 {
                return Err("the encrypted snapshot is truncated".into());
            }
            let (nonce, sealed) = rest.split_at(NONCE_LEN);
            ChaCha20Poly1305::new(Key::from_slice(&key.0))
                .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: ENCRYPTED_MAGIC })
                .map_err(|_| "cannot decrypt: wrong key, or the file was tampered with or truncated".to_string())?
        }
        (None, Some(_)) => {
            return Err("the snapshot is not encrypted but a key was given; refusing a file that may have been replaced".into())
        }
        (None, None) => bytes.to_vec(),
    };
    let value: serde_json::Value = serde_json::from_slice(&json).map_err(|e| {
        if e.is_eof() {
            format!(
                "truncated: the JSON ends early (line {}, column {})",
                e.line(),
                e.column()
            )
        } else {
            format!("corrupt: not valid JSON ({e})")
        }
    })?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or("corrupt: no `version` field; not a mummer session snapshot")?;
    if version > u64::from(SNAPSHOT_VERSION) {
        return Err(format!(
            "written by a newer mummer (snapshot version {version}; this build reads up to {SNAPSHOT_VERSION}): upgrade to load it"
        ));
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| format!("corrupt: field `{}`: {}", e.path(), e.inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_keys_are_refused_and_random_ones_taken() {
        for made_up in [
            "00".repeat(32),
            "ab".repeat(32),
            "deadbeef".repeat(8),
            (0u8..32).map(|b| format!("{b:02x}")).collect::<String>(),
            (0u8..32)
                .map(|b| format!("{:02x}", 255 - b))
                .collect::<String>(),
        ] {
            let err = SnapshotKey::from_hex(&made_up).unwrap_err();
            assert!(err.to_string().contains("not random"), "{made_up}: {err}");
        }
        for _ in 0..1000 {
            let key = SnapshotKey::generate().to_hex();
            assert!(SnapshotKey::from_hex(&key).is_ok(), "{key}");
        }
    }

    #[test]
    fn keys_parse_from_hex_only() {
        let k = SnapshotKey::generate();
        assert_eq!(SnapshotKey::from_hex(&k.to_hex()).unwrap().0, k.0);
        assert!(SnapshotKey::from_hex("abcd")
            .unwrap_err()
            .is_invalid_input());
        assert!(!format!("{k:?}").contains(&k.to_hex()[..8]));
    }
}
