//! Where sessions live between processes: the [`SessionStore`] trait, with an embedded
//! file store ([`FileStore`], the default) and a Redis store ([`RedisStore`]) for many
//! workers.
//!
//! A store keeps opaque snapshot bytes (what a session snapshot encodes to, encrypted
//! with the snapshot key when there is one) under a session id, with a version for
//! optimistic concurrency, and hands out **leases** so that at any moment one worker owns
//! a session: a session used from two places at once is the fastest way to get it
//! flagged. The engine ([`crate::Engine`]) decides when to save; a store only stores.
//!
//! - [`file`](mod@file): one directory, atomic writes, an OS file lock per leased session;
//! - [`redis`]: keys under a namespace, versioned saves and leases in Lua scripts;
//! - [`dead_letters`]: the dead-letter queue as a Redis stream with consumer groups;
//! - [`redis_rate`]: a per-host rate limit in Redis (GCRA), shared by all workers;
//! - [`redis_tickets`]: TLS session tickets in Redis, shared by every worker;
//! - [`redis_audit`]: the audit trail as a Redis stream, shared by every worker;
//! - [`url`]: `file:DIR` and `redis://HOST:PORT/DB` store URLs for the CLI and examples.

#[cfg(feature = "redis")]
pub mod dead_letters;
pub mod file;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod redis_audit;
#[cfg(feature = "redis")]
pub mod redis_rate;
#[cfg(feature = "redis")]
pub mod redis_tickets;
pub mod url;

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

#[cfg(feature = "redis")]
pub use self::dead_letters::{ClaimedLetter, RedisDeadLetters};
pub use self::file::FileStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
#[cfg(feature = "redis")]
pub use self::redis_audit::{RedisAuditConfig, RedisAuditLog};
#[cfg(feature = "redis")]
pub use self::redis_rate::RedisRateLimit;
#[cfg(feature = "redis")]
pub use self::redis_tickets::RedisTickets;
pub use self::url::open_store;

/// Snapshot bytes as stored, with their version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    /// The version the bytes were saved as (1 for the first save).
    pub version: u64,
    /// The snapshot bytes.
    pub bytes: Vec<u8>,
}

/// Proof that the holder owns a session until `ttl` after its last renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The session.
    pub id: String,
    /// The holder's secret: only the holder can renew or release.
    pub token: String,
}

/// Storage for session snapshots and their leases.
///
/// Every method is safe to call from many tasks and processes at once; the rules that
/// make it so (versions, lease tokens) are checked inside the store, atomically.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// A short description for messages and logs (`file:/var/lib/mummer`,
    /// `redis://127.0.0.1:6379/0 (namespace crawl)`); never a password.
    fn describe(&self) -> String;

    /// The snapshot saved under `id`, if any.
    ///
    /// # Errors
    ///
    /// [`crate::Error::is_store_unavailable`] when the store cannot be reached.
    async fn load(&self, id: &str) -> Result<Option<StoredSession>>;

    /// Saves `bytes` as `version` of `id`, unless the store already holds `version` or
    /// a newer one.
    ///
    /// # Errors
    ///
    /// [`crate::Error::is_store_conflict`] (newer data is kept),
    /// [`crate::Error::is_store_unavailable`].
    async fn save(&self, id: &str, version: u64, bytes: &[u8]) -> Result<()>;

    /// Removes `id` (and its lease). Removing a missing id is not an error.
    ///
    /// # Errors
    ///
    /// [`crate::Error::is_store_unavailable`].
    async fn delete(&self, id: &str) -> Result<()>;

    /// Every saved session id, in no particular order.
    ///
    /// # Errors
    ///
    /// [`crate::Error::is_store_unavailable`].
    async fn list(&self) -> Result<Vec<String>>;

    /// Takes the lease on `id` for `ttl`.
    ///
    /// # Errors
    ///
    /// [`crate::Error::is_lease_held`] while another holder's lease runs,
    /// [`crate::Error::is_store_unavailable`].
    async fn acquire(&self, id: &str, ttl: Duration) -> Result<Lease>;

    /// Extends `lease` by `ttl` from now; `false` when it was lost (expired and taken,
    /// or released).
    ///
    /// # Errors
    ///
    /// [`crate::Error::is_store_unavailable`].
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool>;

    /// Gives `lease` up; `false` when it was no longer held.
    ///
    /// # Errors
    ///
    /// [`crate::Error::is_store_unavailable`].
    async fn release(&self, lease: &Lease) -> Result<bool>;
}

/// A fresh lease token: 128 random bits, hex.
pub(crate) fn new_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `id` can be used as a store key and a file name: 1 to 128 characters from
/// `[A-Za-z0-9._-]`, not starting with a dot. Engine ids are UUIDs; user-chosen ids
/// must keep to this too.
pub(crate) fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid_input(format!(
            "invalid session id `{id}` for a store: use 1 to 128 characters from A-Z, a-z, 0-9, `.`, `_`, `-`, not starting with `.`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_can_be_keys_and_file_names() {
        assert!(check_id("3f2a1c9e-0b7d-4e58-9a61-2c4d5e6f7a8b").is_ok());
        assert!(check_id("worker_1.session-2").is_ok());
        for bad in [
            "",
            ".hidden",
            "../etc/passwd",
            "a/b",
            "a b",
            "ä",
            &"x".repeat(129),
        ] {
            let err = check_id(bad).unwrap_err();
            assert!(err.is_invalid_input(), "{bad}: {err}");
        }
    }

    #[test]
    fn tokens_are_unique() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 32);
    }
}
