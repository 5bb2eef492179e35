//! robots.txt (RFC 9309): fetched once per origin through the session that first goes
//! there (so it wears the same face), cached with an expiry, checked before each request.
//!
//! Rules: a 2xx body (first 500 KiB) is parsed with `texting_robots` for the configured
//! agent token (falling back to `*` groups); a 4xx means everything is allowed; a 5xx or
//! a network failure means nothing is allowed for a while (RFC 9309 §2.3.1.3/4). A
//! `Crawl-delay` becomes that host's rate. Entries live 24 hours (5 minutes after a
//! failure).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

use crate::error::{Error, Result};

/// How long a fetched robots.txt is trusted.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a failed fetch keeps everything disallowed.
const FAILURE_TTL: Duration = Duration::from_secs(5 * 60);
/// Bytes of robots.txt read (RFC 9309 asks crawlers to parse at least 500 KiB).
const MAX_BYTES: usize = 500 * 1024;

/// What a robots.txt says, ready to check.
pub enum Rules {
    /// No robots.txt (4xx): everything is allowed.
    AllowAll,
    /// Unreachable or 5xx: nothing is allowed for now.
    DisallowAll,
    /// Parsed rules.
    Parsed(Box<texting_robots::Robot>),
}

impl Rules {
    /// Rules from a fetch result: status and body.
    pub fn from_response(agent: &str, status: u16, body: &[u8]) -> Rules {
        match status {
            200..=299 => {
                let body = &body[..body.len().min(MAX_BYTES)];
                match texting_robots::Robot::new(agent, body) {
                    Ok(robot) => Rules::Parsed(Box::new(robot)),
                    // Unparsable text has no rules that apply.
                    Err(_) => Rules::AllowAll,
                }
            }
            400..=499 => Rules::AllowAll,
            _ => Rules::DisallowAll,
        }
    }

    /// Whether `url` may be fetched.
    pub fn allows(&self, url: &str) -> bool {
        match self {
            Rules::AllowAll => true,
            Rules::DisallowAll => false,
            Rules::Parsed(robot) => robot.allowed(url),
        }
    }

    /// The `Crawl-delay` in seconds, if any.
    pub fn crawl_delay(&self) -> Option<f32> {
        match self {
            Rules::Parsed(robot) => robot.delay,
            _ => None,
        }
    }
}

struct Entry {
    rules: Arc<Rules>,
    expires: Instant,
}

/// The engine's robots.txt cache.
pub struct RobotsCache {
    agent: String,
    entries: Mutex<HashMap<String, Entry>>,
    /// One fetch per origin at a time.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl RobotsCache {
    /// A cache matching groups for `agent` (e.g. `mummer`).
    pub fn new(agent: &str) -> RobotsCache {
        RobotsCache {
            agent: agent.to_string(),
            entries: Mutex::default(),
            gates: Mutex::default(),
        }
    }

    fn cached(&self, origin: &str) -> Option<Arc<Rules>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(origin)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.rules.clone())
    }

    /// The rules for `url`'s origin, fetching them with `fetch` (status and body, or an
    /// error) when not cached. Returns the rules and whether they were just fetched.
    pub async fn rules_for<F, Fut>(&self, url: &Url, fetch: F) -> (Arc<Rules>, bool)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<(u16, bytes::Bytes)>>,
    {
        let origin = url.origin().ascii_serialization();
        if let Some(rules) = self.cached(&origin) {
            return (rules, false);
        }
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(origin.clone())
            .or_default()
            .clone();
        let _one_fetch = gate.lock().await;
        if let Some(rules) = self.cached(&origin) {
            return (rules, false);
        }
        let (rules, ttl) = match fetch(format!("{origin}/robots.txt")).await {
            Ok((status, body)) => {
                let rules = Rules::from_response(&self.agent, status, &body);
                let ttl = if matches!(rules, Rules::DisallowAll) {
                    FAILURE_TTL
                } else {
                    TTL
                };
                (rules, ttl)
            }
            Err(e) => {
                tracing::warn!(origin = %origin, error = %e, "robots.txt unreachable: disallowing for now");
                (Rules::DisallowAll, FAILURE_TTL)
            }
        };
        let rules = Arc::new(rules);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                origin,
                Entry {
                    rules: rules.clone(),
                    expires: Instant::now() + ttl,
                },
            );
        (rules, true)
    }
}

/// The error for a URL robots.txt disallows.
pub(crate) fn disallowed(url: &Url) -> Error {
    Error::robots_disallowed(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_groups() {
        let txt = b"User-agent: *\nDisallow: /private\nCrawl-delay: 2\n\nUser-agent: mummer\nDisallow: /no-mummer\n";
        let r = Rules::from_response("mummer", 200, txt);
        assert!(!r.allows("https://a.test/no-mummer/x"));
        assert!(
            r.allows("https://a.test/private"),
            "the agent's own group wins over *"
        );
        let other = Rules::from_response("otherbot", 200, txt);
        assert!(!other.allows("https://a.test/private/x"));
        assert_eq!(other.crawl_delay(), Some(2.0));
        assert!(Rules::from_response("m", 404, b"").allows("https://a.test/x"));
        assert!(!Rules::from_response("m", 503, b"").allows("https://a.test/x"));
    }

    #[tokio::test]
    async fn fetched_once_per_origin() {
        let cache = RobotsCache::new("mummer");
        let url = Url::parse("https://a.test/page").unwrap();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..3 {
            let (rules, _) = cache
                .rules_for(&url, |u| {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    assert_eq!(u, "https://a.test/robots.txt");
                    async {
                        Ok((
                            200,
                            bytes::Bytes::from_static(b"User-agent: *\nDisallow: /page\n"),
                        ))
                    }
                })
                .await;
            assert!(!rules.allows(url.as_str()));
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let (rules, fresh) = cache
            .rules_for(&Url::parse("https://b.test/").unwrap(), |_| async {
                Err(Error::invalid_input("unreachable"))
            })
            .await;
        assert!(fresh && !rules.allows("https://b.test/"));
    }
}
