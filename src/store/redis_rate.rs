//! A per-host rate limit shared by every worker on one Redis: GCRA (the generic cell
//! rate algorithm, as `governor` runs it in memory) in a Lua script, so that three
//! workers crawling one host together stay under one budget.
//!
//! The script keeps one value per host, `NS:rate:<host>`: the theoretical arrival time
//! (TAT) of the next request, in milliseconds of the Redis server's clock (its `TIME`),
//! so the workers' own clocks do not matter. A request is allowed when
//! `now >= TAT - burst_tolerance`; then `TAT = max(TAT, now) + interval`. Otherwise the
//! script answers how long to wait, and the worker sleeps that long and asks again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mummer_actors::rate::{Rate, SharedRateLimit};
use mummer_actors::BoxFuture;
use redis::Script;
use tokio::time::Instant;

use super::{RedisStore, SessionStore};
use crate::error::{Error, Result};

/// Returns 0 when a request may go now (and books it), else the milliseconds to wait.
/// `ARGV[1]`: interval in microseconds; `ARGV[2]`: burst tolerance in microseconds.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return math.ceil((allow_at - now) / 1000)
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
";

/// The per-host budget in Redis.
#[derive(Clone)]
pub struct RedisRateLimit {
    store: RedisStore,
    interval_us: u64,
    tolerance_us: u64,
    script: Script,
    /// Set while Redis is unreachable (reported once).
    failing: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedisRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimit")
            .field("store", &self.store.describe())
            .field("interval_us", &self.interval_us)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimit {
    /// `rate` per target host, shared through `store`'s connection and namespace.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] for a rate that does not limit (zero, negative).
    pub fn new(store: &RedisStore, rate: Rate) -> Result<RedisRateLimit> {
        let interval = rate.interval().ok_or_else(|| {
            Error::invalid_input(format!(
                "a shared rate needs a positive requests-per-second value, not {}",
                rate.per_second
            ))
        })?;
        let interval_us = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
        Ok(RedisRateLimit {
            store: store.clone(),
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(rate.burst.max(1) - 1)),
            script: Script::new(GCRA),
            failing: Arc::default(),
        })
    }

    /// One try: `Ok(None)` when booked, `Ok(Some(wait))` otherwise.
    async fn try_book(
        &self,
        host: &str,
    ) -> std::result::Result<Option<Duration>, redis::RedisError> {
        let mut conn = self.store.connection();
        let wait_ms: u64 = self
            .script
            .key(self.store.key("rate", host))
            .arg(self.interval_us)
            .arg(self.tolerance_us)
            .invoke_async(&mut conn)
            .await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    /// Waits for a slot for `host` (see [`SharedRateLimit::acquire`]).
    pub async fn wait(&self, host: &str, within: Duration) -> bool {
        let until = Instant::now() + within;
        loop {
            match self.try_book(host).await {
                Ok(None) => {
                    if self.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(store = %self.store.describe(), "shared rate limit reachable again");
                    }
                    return true;
                }
                Ok(Some(wait)) => {
                    if Instant::now() + wait > until {
                        return false;
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(store = %self.store.describe(), error = %e, "shared rate limit unreachable; only the local limits apply until it is back");
                    }
                    return true;
                }
            }
        }
    }
}

impl SharedRateLimit for RedisRateLimit {
    fn acquire(&self, host: &str, within: Duration) -> BoxFuture<bool> {
        let (me, host) = (self.clone(), host.to_string());
        Box::pin(async move { me.wait(&host, within).await })
    }
}
