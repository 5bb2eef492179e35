//! TLS session tickets in Redis, so that a session checked out on another worker (or a
//! new session given the same identifier and profile) resumes its TLS sessions: keys
//! `NS:ticket:<identifier>|<profile>|tls|<host>:<port>`, the same partition the
//! session's own cache uses, so identifiers keep sessions isolated; each expires after
//! the TTL (default 2 hours, what servers commonly give a ticket).

use std::time::Duration;

use crate::store::{RedisStore, SessionStore};
use crate::tls::TicketBackend;

/// The ticket backend on a Redis store's connection and namespace.
#[derive(Clone, Debug)]
pub struct RedisTickets {
    store: RedisStore,
    ttl: Duration,
}

impl RedisTickets {
    /// Tickets under `store`'s namespace, kept for 2 hours.
    pub fn new(store: &RedisStore) -> RedisTickets {
        RedisTickets {
            store: store.clone(),
            ttl: Duration::from_secs(2 * 3600),
        }
    }

    /// How long a ticket is kept.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

impl TicketBackend for RedisTickets {
    fn put(&self, key: &str, der: Vec<u8>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (key, mut conn) = (self.store.key("ticket", key), self.store.connection());
        let ttl = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let shown = self.store.describe();
        runtime.spawn(async move {
            let written: redis::RedisResult<()> = redis::cmd("SET")
                .arg(&key)
                .arg(der)
                .arg("PX")
                .arg(ttl)
                .query_async(&mut conn)
                .await;
            if let Err(e) = written {
                tracing::debug!(store = %shown, %key, error = %e, "ticket not stored; the local cache still has it");
            }
        });
    }

    fn get(
        &self,
        key: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>> {
        let (key, mut conn) = (self.store.key("ticket", key), self.store.connection());
        Box::pin(async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<Vec<u8>>>(&mut conn)
                .await
                .ok()
                .flatten()
        })
    }
}
