//! The Redis session store, for many workers on many machines.
//!
//! Keys, under a namespace `NS` (default `mummer`):
//!
//! ```text
//! NS:session:<id>   hash { v: version, data: snapshot bytes }, expiring after the TTL
//! NS:lease:<id>     the holder's token, expiring after the lease TTL (SET NX PX)
//! ```
//!
//! The version check of a save, and the token checks of renew and release, run inside
//! Lua scripts, so they are atomic with the write: a worker that lost its lease cannot
//! overwrite what the new holder saved, and cannot renew or release the new holder's
//! lease. The connection is `redis`'s `ConnectionManager`, opened lazily and re-opened
//! with backoff, so a store can be created while Redis is down; calls then fail fast
//! with [`crate::Error::is_store_unavailable`].

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{check_id, new_token, Lease, SessionStore, StoredSession};
use crate::error::{Error, Result};

/// Saves `ARGV[2]` as version `ARGV[1]` unless the stored version is as new; sets the
/// TTL `ARGV[3]` (ms, 0 for none). Returns -1 when saved, else the stored version.
const SAVE: &str = r"
local cur = redis.call('HGET', KEYS[1], 'v')
cur = tonumber(cur or '0') or 0
if cur >= tonumber(ARGV[1]) then return cur end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'data', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return -1
";

/// Extends the lease `KEYS[1]` by `ARGV[2]` ms if its token is `ARGV[1]`.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes the lease `KEYS[1]` if its token is `ARGV[1]`.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Sessions in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    namespace: String,
    /// `redis://host:port/db`, without credentials.
    shown: String,
    session_ttl: Option<Duration>,
    save: Script,
    renew: Script,
    release: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Checks a namespace: 1 to 64 characters from `[A-Za-z0-9._-]` (it goes into key
/// patterns, where `*`, `?` and `[` would match other namespaces' keys).
fn check_namespace(ns: &str) -> Result<()> {
    if !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid namespace `{ns}`: use 1 to 64 characters from A-Z, a-z, 0-9, `.`, `_`, `-`"
        )))
    }
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://[:password@]host:port[/db]`), keys under
    /// `namespace`. Does not connect yet: the first call does, and a store made while
    /// Redis is down works once it is up.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] for a malformed URL or namespace.
    pub fn open(url: &str, namespace: &str) -> Result<RedisStore> {
        check_namespace(namespace)?;
        let client = redis::Client::open(url)
            .map_err(|e| Error::invalid_input(format!("invalid Redis URL: {e}")))?;
        let info = client.get_connection_info();
        let shown = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| Error::store_unavailable(&shown, e))?;
        Ok(RedisStore {
            conn,
            namespace: namespace.to_string(),
            shown,
            session_ttl: Some(Duration::from_secs(30 * 24 * 3600)),
            save: Script::new(SAVE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        })
    }

    /// How long a saved session lives without being saved again (default 30 days;
    /// `None`: forever).
    pub fn session_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The connection, for other parts that share it (tickets, dead letters, rates).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `NS:kind:rest`.
    pub fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}:{kind}:{rest}", self.namespace)
    }

    fn failed(&self, e: redis::RedisError) -> Error {
        Error::store_unavailable(self.describe(), e)
    }

    /// A Redis error: unreachable or timed out is "unavailable"; a wrong type or a
    /// script error under our key means a foreign value there.
    fn classify(&self, key: &str, e: redis::RedisError) -> Error {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            self.failed(e)
        } else {
            Error::snapshot(
                format!("{} key {key}", self.describe()),
                format!("not a mummer session record ({e}); remove it or use another namespace"),
            )
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl SessionStore for RedisStore {
    fn describe(&self) -> String {
        format!("{} (namespace {})", self.shown, self.namespace)
    }

    async fn load(&self, id: &str) -> Result<Option<StoredSession>> {
        check_id(id)?;
        let key = self.key("session", id);
        let mut conn = self.conn.clone();
        let (v, data): (Option<String>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("v")
            .arg("data")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.classify(&key, e))?;
        match (v, data) {
            (None, None) => Ok(None),
            (Some(v), Some(bytes)) => match v.parse::<u64>() {
                Ok(version) => Ok(Some(StoredSession { version, bytes })),
                Err(_) => Err(Error::snapshot(
                    format!("{} key {key}", self.describe()),
                    format!("version `{v}` is not a number"),
                )),
            },
            _ => Err(Error::snapshot(
                format!("{} key {key}", self.describe()),
                "the record lacks its version or its data",
            )),
        }
    }

    async fn save(&self, id: &str, version: u64, bytes: &[u8]) -> Result<()> {
        check_id(id)?;
        let key = self.key("session", id);
        let mut conn = self.conn.clone();
        let ttl = self.session_ttl.map_or(0, millis);
        let stored: i64 = self
            .save
            .key(&key)
            .arg(version)
            .arg(bytes)
            .arg(ttl)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.classify(&key, e))?;
        if stored < 0 {
            Ok(())
        } else {
            Err(Error::store_conflict(id, stored.unsigned_abs(), version))
        }
    }

    async fn delete(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let mut conn = self.conn.clone();
        let keys = [self.key("session", id), self.key("lease", id)];
        let _: i64 = conn.del(&keys[..]).await.map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let prefix = self.key("session", "");
        let pattern = format!("{prefix}*");
        let mut ids = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            for key in keys {
                match key.strip_prefix(&prefix) {
                    Some(id) if check_id(id).is_ok() => ids.push(id.to_string()),
                    _ => tracing::warn!(%key, "skipping a key that does not name a session"),
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn acquire(&self, id: &str, ttl: Duration) -> Result<Lease> {
        check_id(id)?;
        let key = self.key("lease", id);
        let token = new_token();
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        if set.is_some() {
            return Ok(Lease {
                id: id.to_string(),
                token,
            });
        }
        let left: i64 = conn.pttl(&key).await.map_err(|e| self.failed(e))?;
        Err(Error::lease_held(id, format!("expires in {left} ms")))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        let key = self.key("lease", &lease.id);
        let mut conn = self.conn.clone();
        let renewed: i64 = self
            .renew
            .key(&key)
            .arg(&lease.token)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(renewed == 1)
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let key = self.key("lease", &lease.id);
        let mut conn = self.conn.clone();
        let released: i64 = self
            .release
            .key(&key)
            .arg(&lease.token)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(released == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_cannot_carry_patterns() {
        assert!(check_namespace("crawl-1.eu_west").is_ok());
        for bad in ["", "a*", "a?", "a[b]", "a:b", "a b", &"n".repeat(65)] {
            assert!(
                check_namespace(bad).unwrap_err().is_invalid_input(),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls_are_checked_and_shown_without_passwords() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = RedisStore::open("redis://:hunter2@127.0.0.1:1/3", "ns").unwrap();
            assert_eq!(store.describe(), "redis://127.0.0.1:1/3 (namespace ns)");
            assert!(!format!("{store:?}").contains("hunter2"));
            assert!(RedisStore::open("http://x", "ns")
                .unwrap_err()
                .is_invalid_input());
        });
    }
}
