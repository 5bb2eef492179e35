//! One named proxy pool: its proxies, each proxy's health (consecutive failures, last
//! error, benched until), and how a new session is given one (round-robin, least-used,
//! random, or a hash of a key so the same key lands on the same proxy across restarts).
//!
//! Pure logic: the clock is passed in, nothing here touches a socket, so the benching
//! and assignment rules are unit-tested directly.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::net::Proxy;

/// How a pool picks a proxy for a new session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// In turn.
    #[default]
    RoundRobin,
    /// The healthy proxy with the fewest live sessions (ties: the earliest listed).
    LeastUsed,
    /// Uniformly at random.
    Random,
    /// Rendezvous hash of the session's key (tenant or a caller's key) over the healthy
    /// proxies: the same key gets the same proxy across restarts, and benching one proxy
    /// moves only the keys that were on it.
    Hash,
}

/// Benching rules of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// How sessions are assigned.
    pub strategy: Strategy,
    /// Consecutive connect or authentication failures that bench a proxy (default 3).
    pub ban_after: u32,
    /// How long a benched proxy sits out (default 60 s).
    pub cooldown: Duration,
    /// When its sessions rotate by themselves.
    pub rotate: super::RotationPolicy,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            strategy: Strategy::RoundRobin,
            ban_after: 3,
            cooldown: Duration::from_secs(60),
            rotate: super::RotationPolicy::default(),
        }
    }
}

/// One proxy's health, as [`ProxyPool::health`] reports it (credentials never shown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProxyHealth {
    /// The proxy URL with its password masked.
    pub proxy: String,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Seconds until it is back, while benched.
    pub benched_for_secs: Option<u64>,
    /// Live sessions assigned to it.
    pub sessions: usize,
}

#[derive(Debug)]
struct Entry {
    proxy: Proxy,
    /// `proxy` as shown (password masked), also the hash input.
    shown: String,
    failures: u32,
    last_error: Option<String>,
    benched_until: Option<Instant>,
    sessions: usize,
}

impl Entry {
    fn healthy(&self, now: Instant) -> bool {
        self.benched_until.is_none_or(|until| now >= until)
    }
}

/// What [`ProxyPool::record_failure`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted; the proxy stays in use.
    Counted,
    /// This failure benched the proxy: its sessions should move.
    Benched,
}

/// A named set of proxies with health.
#[derive(Debug)]
pub struct ProxyPool {
    name: String,
    entries: Vec<Entry>,
    settings: PoolSettings,
    next: usize,
}

/// Index of a proxy in its pool (stable for the pool's life).
pub type ProxySlot = usize;

impl ProxyPool {
    /// A pool of `urls` (`http://`, `https://`, `socks5://`, `socks5h://`, with
    /// credentials).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] for an empty pool or a URL that does not parse
    /// (named by pool and position, password masked).
    pub fn new(name: &str, urls: &[String], settings: PoolSettings) -> Result<ProxyPool> {
        if urls.is_empty() {
            return Err(Error::invalid_input(format!(
                "proxy pool `{name}` lists no proxies"
            )));
        }
        if settings.ban_after == 0 {
            return Err(Error::invalid_input(format!(
                "proxy pool `{name}`: ban_after must be at least 1"
            )));
        }
        let entries = urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let proxy = Proxy::parse(url).map_err(|e| {
                    Error::invalid_input(format!("proxy pool `{name}`, proxy {i}: {e}"))
                })?;
                Ok(Entry {
                    shown: proxy.to_string(),
                    proxy,
                    failures: 0,
                    last_error: None,
                    benched_until: None,
                    sessions: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ProxyPool {
            name: name.to_owned(),
            entries,
            settings,
            next: 0,
        })
    }

    /// When its sessions rotate by themselves.
    pub fn rotation(&self) -> super::RotationPolicy {
        self.settings.rotate
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The proxy in `slot`.
    pub fn proxy(&self, slot: ProxySlot) -> Option<&Proxy> {
        self.entries.get(slot).map(|e| &e.proxy)
    }

    /// Picks a healthy proxy for a new session and counts the session on it. `key` is
    /// what [`Strategy::Hash`] hashes (ignored by the others); `avoid` is a slot not to
    /// pick when another healthy one exists (rotation away from a proxy).
    ///
    /// # Errors
    ///
    /// [`Error::is_no_healthy_proxy`] naming the pool when every proxy is benched.
    pub fn assign(
        &mut self,
        now: Instant,
        key: Option<&str>,
        avoid: Option<ProxySlot>,
    ) -> Result<ProxySlot> {
        let healthy: Vec<ProxySlot> = (0..self.entries.len())
            .filter(|&i| self.entries[i].healthy(now))
            .collect();
        let candidates: Vec<ProxySlot> = match healthy
            .iter()
            .copied()
            .filter(|&i| Some(i) != avoid)
            .collect::<Vec<_>>()
        {
            c if c.is_empty() => healthy,
            c => c,
        };
        if candidates.is_empty() {
            let back = self
                .entries
                .iter()
                .filter_map(|e| e.benched_until)
                .min()
                .map_or(0, |t| t.saturating_duration_since(now).as_secs());
            return Err(Error::no_healthy_proxy(
                &self.name,
                self.entries.len(),
                back,
            ));
        }
        let slot = match self.settings.strategy {
            Strategy::RoundRobin => {
                let n = self.entries.len();
                let start = self.next;
                let pick = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|i| candidates.contains(i))
                    .unwrap_or(candidates[0]);
                self.next = (pick + 1) % n;
                pick
            }
            Strategy::LeastUsed => *candidates
                .iter()
                .min_by_key(|&&i| (self.entries[i].sessions, i))
                .unwrap_or(&candidates[0]),
            Strategy::Random => candidates[rand::random_range(0..candidates.len())],
            Strategy::Hash => {
                let key = key.unwrap_or_default();
                *candidates
                    .iter()
                    .max_by_key(|&&i| rendezvous(key, &self.entries[i].shown))
                    .unwrap_or(&candidates[0])
            }
        };
        self.entries[slot].sessions += 1;
        Ok(slot)
    }

    /// A session on `slot` ended.
    pub fn release(&mut self, slot: ProxySlot) {
        if let Some(e) = self.entries.get_mut(slot) {
            e.sessions = e.sessions.saturating_sub(1);
        }
    }

    /// A request through `slot` got through the proxy (whatever the target answered).
    pub fn record_success(&mut self, slot: ProxySlot) {
        if let Some(e) = self.entries.get_mut(slot) {
            e.failures = 0;
        }
    }

    /// Connecting or authenticating through `slot` failed. The `ban_after`-th failure in
    /// a row benches it for the cooldown.
    pub fn record_failure(&mut self, slot: ProxySlot, now: Instant, error: &str) -> FailureOutcome {
        let Some(e) = self.entries.get_mut(slot) else {
            return FailureOutcome::Counted;
        };
        e.failures += 1;
        e.last_error = Some(error.to_owned());
        if e.failures >= self.settings.ban_after && e.healthy(now) {
            e.benched_until = Some(now + self.settings.cooldown);
            e.failures = 0;
            tracing::warn!(pool = %self.name, proxy = %e.shown, cooldown = ?self.settings.cooldown, error, "proxy benched");
            FailureOutcome::Benched
        } else {
            FailureOutcome::Counted
        }
    }

    /// Whether `slot` is usable now.
    pub fn is_healthy(&self, slot: ProxySlot, now: Instant) -> bool {
        self.entries.get(slot).is_some_and(|e| e.healthy(now))
    }

    /// Every proxy's health.
    pub fn health(&self, now: Instant) -> Vec<ProxyHealth> {
        self.entries
            .iter()
            .map(|e| ProxyHealth {
                proxy: e.shown.clone(),
                consecutive_failures: e.failures,
                last_error: e.last_error.clone(),
                benched_for_secs: e
                    .benched_until
                    .filter(|&u| u > now)
                    .map(|u| u.saturating_duration_since(now).as_secs().max(1)),
                sessions: e.sessions,
            })
            .collect()
    }
}

/// The rendezvous weight of `proxy` for `key`.
fn rendezvous(key: &str, proxy: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update([0u8])
        .chain_update(proxy.as_bytes())
        .finalize();
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(eight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, strategy: Strategy) -> ProxyPool {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("http://u:secret@127.0.0.{}:3128", i + 2))
            .collect();
        ProxyPool::new(
            "res",
            &urls,
            PoolSettings {
                strategy,
                ban_after: 2,
                cooldown: Duration::from_secs(30),
                ..PoolSettings::default()
            },
        )
        .expect("pool")
    }

    #[test]
    fn round_robin_skips_benched_and_least_used_balances() {
        let now = Instant::now();
        let mut p = pool(3, Strategy::RoundRobin);
        let picks: Vec<_> = (0..4)
            .map(|_| p.assign(now, None, None).expect("pick"))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0]);
        assert_eq!(p.record_failure(1, now, "refused"), FailureOutcome::Counted);
        assert_eq!(p.record_failure(1, now, "refused"), FailureOutcome::Benched);
        let picks: Vec<_> = (0..3)
            .map(|_| p.assign(now, None, None).expect("pick"))
            .collect();
        assert_eq!(picks, [2, 0, 2]);
        // Back after the cooldown.
        assert!(p.is_healthy(1, now + Duration::from_secs(30)));

        let mut p = pool(3, Strategy::LeastUsed);
        for _ in 0..6 {
            p.assign(now, None, None).expect("pick");
        }
        p.release(1);
        assert_eq!(p.assign(now, None, None).expect("pick"), 1);
    }

    #[test]
    fn hash_keeps_keys_and_moves_only_the_benched_ones() {
        let now = Instant::now();
        let mut p = pool(4, Strategy::Hash);
        let keys: Vec<String> = (0..40).map(|i| format!("tenant-{i}")).collect();
        let before: Vec<_> = keys
            .iter()
            .map(|k| p.assign(now, Some(k), None).expect("pick"))
            .collect();
        let again: Vec<_> = keys
            .iter()
            .map(|k| p.assign(now, Some(k), None).expect("pick"))
            .collect();
        assert_eq!(before, again, "same key, same proxy");
        let fresh = {
            let mut q = pool(4, Strategy::Hash);
            keys.iter()
                .map(|k| q.assign(now, Some(k), None).expect("pick"))
                .collect::<Vec<_>>()
        };
        assert_eq!(before, fresh, "and across restarts");
        assert!((0..4).all(|s| before.contains(&s)), "spread: {before:?}");
        p.record_failure(0, now, "x");
        p.record_failure(0, now, "x");
        let after: Vec<_> = keys
            .iter()
            .map(|k| p.assign(now, Some(k), None).expect("pick"))
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 0 {
                assert_eq!(a, b, "a key not on the benched proxy stays");
            } else {
                assert_ne!(*a, 0);
            }
        }
    }

    #[test]
    fn an_all_benched_pool_fails_fast_with_its_name_and_avoid_is_honoured() {
        let now = Instant::now();
        let mut p = pool(2, Strategy::RoundRobin);
        assert_eq!(p.assign(now, None, Some(0)).expect("pick"), 1);
        for slot in 0..2 {
            p.record_failure(slot, now, "connection refused");
            p.record_failure(slot, now, "connection refused");
        }
        let e = p.assign(now, None, None).expect_err("no healthy proxy");
        assert!(e.is_no_healthy_proxy());
        assert!(e.to_string().contains("`res`"), "{e}");
        let health = p.health(now);
        assert_eq!(health[0].benched_for_secs, Some(30));
        assert_eq!(health[0].last_error.as_deref(), Some("connection refused"));
        assert!(
            !format!("{health:?}").contains("secret"),
            "credentials never shown"
        );
        // Avoiding the only healthy proxy still gives it.
        let later = now + Duration::from_secs(31);
        p.record_failure(1, later, "again");
        p.record_failure(1, later, "again");
        assert_eq!(p.assign(later, None, Some(0)).expect("pick"), 0);
        assert!(ProxyPool::new("empty", &[], PoolSettings::default()).is_err());
        let bad = ProxyPool::new("p", &["ftp://x:1".into()], PoolSettings::default())
            .expect_err("bad url");
        assert!(bad.to_string().contains("pool `p`, proxy 0"), "{bad}");
    }
}
