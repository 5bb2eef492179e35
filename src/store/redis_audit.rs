//! The audit trail as a Redis stream, for many workers sharing one Redis: `NS:audit`,
//! one stream entry per session lifecycle event (field `entry`: the same JSON object a
//! line of the file trail holds, from [`AuditEntries`]).
//!
//! - Entries are appended in the order the engine emitted them. While Redis is
//!   unreachable they wait in memory (up to 10 000, oldest dropped first, with an
//!   error in the log) and are written, still in order, with the next event or at
//!   shutdown. Each entry carries a random token and is appended by a script only if
//!   its token is new (`NS:audit-sent:TOKEN`, kept 10 minutes), so a write whose reply
//!   was lost (Redis went away mid-write) is sent again without being recorded twice.
//! - Retention runs when the trail is opened and every [`PURGE_EVERY`] entries:
//!   `XTRIM MINID` drops entries older than the age limit (stream ids are
//!   millisecond timestamps), then `XTRIM MAXLEN` keeps at most `max_entries`.
//!   A stream has no byte size to trim by, so the file trail's size limit is a count
//!   here.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mummer_actors::EngineEvent;

use super::{RedisStore, SessionStore};
use crate::audit::{AuditEntries, PURGE_EVERY};
use crate::error::{Error, Result};

/// Most entries kept in memory while Redis is unreachable.
const WAITING_CAPACITY: usize = 10_000;

/// Appends `ARGV[1]` to the stream `KEYS[1]` unless the token key `KEYS[2]` was set
/// already (for `ARGV[2]` milliseconds).
const APPEND_ONCE: &str = r"
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  return redis.call('XADD', KEYS[1], '*', 'entry', ARGV[1])
end
return false
";

/// How long a written entry's token is remembered.
const TOKEN_TTL_MS: u64 = 600_000;

/// How long the stream trail keeps entries, and whether ids are hashed.
#[derive(Clone, Debug, Default)]
pub struct RedisAuditConfig {
    /// Entries older than this are purged.
    pub max_age: Option<Duration>,
    /// The stream is trimmed (oldest first) to at most this many entries.
    pub max_entries: Option<u64>,
    /// Key for hashing session and tenant ids (HMAC-SHA256); `None` writes them as
    /// they are.
    pub hash_key: Option<Vec<u8>>,
}

/// The audit trail in a Redis stream.
pub struct RedisAuditLog {
    store: RedisStore,
    stream: String,
    config: RedisAuditConfig,
    entries: AuditEntries,
    state: tokio::sync::Mutex<Pending>,
    dropped: Mutex<u64>,
}

#[derive(Default)]
struct Pending {
    /// Entries not written yet (token, encoded entry), oldest first.
    waiting: VecDeque<(String, Vec<u8>)>,
    since_purge: u64,
}

impl std::fmt::Debug for RedisAuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuditLog")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisAuditLog {
    /// The trail `NS:audit` of `store`; applies retention once.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`] when Redis cannot be reached to trim (the
    /// engine starts anyway when the caller chooses to; entries wait in memory).
    pub async fn open(store: &RedisStore, config: RedisAuditConfig) -> Result<RedisAuditLog> {
        let log = RedisAuditLog::new(store, config);
        log.purge().await?;
        Ok(log)
    }

    /// The trail without the first retention pass (it runs with the first entries).
    pub fn new(store: &RedisStore, config: RedisAuditConfig) -> RedisAuditLog {
        RedisAuditLog {
            stream: store.key("audit", "").trim_end_matches(':').to_owned(),
            store: store.clone(),
            entries: AuditEntries::new(config.hash_key.clone()),
            config,
            state: tokio::sync::Mutex::default(),
            dropped: Mutex::new(0),
        }
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn unavailable(&self, e: &redis::RedisError) -> Error {
        Error::store_unavailable(self.store.describe(), e.to_string())
    }

    /// Appends `event` if it is a lifecycle event (with anything still waiting first);
    /// returns whether it was part of the trail.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`]: the entry waits in memory and goes with the
    /// next write.
    pub async fn record(&self, event: &EngineEvent) -> Result<bool> {
        let Some(entry) = self.entries.entry(event)? else {
            return Ok(false);
        };
        let mut pending = self.state.lock().await;
        if pending.waiting.len() >= WAITING_CAPACITY {
            pending.waiting.pop_front();
            let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
            *dropped += 1;
            tracing::error!(store = %self.store.describe(), dropped = *dropped, "Redis unreachable for too long: the oldest waiting audit entry was dropped");
        }
        pending.waiting.push_back((super::new_token(), entry));
        self.flush(&mut pending).await?;
        Ok(true)
    }

    /// Writes what waits, in order.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`] (what is left keeps waiting).
    pub async fn flush_waiting(&self) -> Result<()> {
        let mut pending = self.state.lock().await;
        self.flush(&mut pending).await
    }

    async fn flush(&self, pending: &mut Pending) -> Result<()> {
        if pending.waiting.is_empty() {
            return Ok(());
        }
        let mut conn = self.store.connection();
        let mut pipe = redis::pipe();
        for (token, entry) in &pending.waiting {
            pipe.cmd("EVAL")
                .arg(APPEND_ONCE)
                .arg(2)
                .arg(&self.stream)
                .arg(self.store.key("audit-sent", token))
                .arg(entry.as_slice())
                .arg(TOKEN_TTL_MS)
                .ignore();
        }
        let written: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        written.map_err(|e| self.unavailable(&e))?;
        pending.since_purge += pending.waiting.len() as u64;
        pending.waiting.clear();
        if pending.since_purge >= PURGE_EVERY {
            pending.since_purge = 0;
            self.purge().await?;
        }
        Ok(())
    }

    /// Applies retention now; returns how many entries were removed.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`].
    pub async fn purge(&self) -> Result<u64> {
        let mut conn = self.store.connection();
        let mut removed = 0;
        if let Some(age) = self.config.max_age {
            let oldest =
                now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            let n: u64 = redis::cmd("XTRIM")
                .arg(&self.stream)
                .arg("MINID")
                .arg(format!("{oldest}-0"))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.unavailable(&e))?;
            removed += n;
        }
        if let Some(max) = self.config.max_entries {
            let n: u64 = redis::cmd("XTRIM")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg(max)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.unavailable(&e))?;
            removed += n;
        }
        Ok(removed)
    }

    /// Every entry in the stream, oldest first, as JSON (for tools and tests).
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`]; [`Error::is_snapshot`] for an entry that is not
    /// an audit entry (named by its stream id).
    pub async fn read_all(&self) -> Result<Vec<serde_json::Value>> {
        let mut conn = self.store.connection();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&e))?;
        reply
            .ids
            .iter()
            .map(|item| {
                let place = format!(
                    "{} stream {} entry {}",
                    self.store.describe(),
                    self.stream,
                    item.id
                );
                let bytes: Vec<u8> = item
                    .get("entry")
                    .ok_or_else(|| Error::snapshot(&place, "no `entry` field"))?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::snapshot(&place, format!("not an audit entry: {e}")))
            })
            .collect()
    }
}
