//! robots.txt (RFC 9309): fetched once per origin through the session that first goes
//! there (so it wears the same face), cached with an expiry, checked before each request.
//!
//! The fetch is outside the retry loop: no breaker, quarantine or dead letter sees it,
//! because its statuses mean something else (a 401 robots.txt is not a ban of the
//! session, a 404 is not a failed page). Rules, from RFC 9309 §2.3.1:
//!
//! | answer | rules |
//! |---|---|
//! | 2xx | the body (first 500 KiB) parsed with `texting_robots` for the agent token, falling back to `*` groups |
//! | 3xx | followed, up to 5 redirects (more: unavailable, so allow all) |
//! | 4xx but 429 | allow all |
//! | 429 | as a 5xx (Google's crawler does the same: throttling is not "no file") |
//! | 5xx, unreachable | nothing is fetched for now: a robots-unavailable error (`Error::is_robots_unavailable`) with the time of the next fetch, which backs off 1 s, 2 s, 4 s ... up to 5 minutes |
//!
//! A `Crawl-delay` only ever slows a host down: the engine applies it unless the
//! operator's per-host limit is slower (`mummer_actors::rate::Limiters::set_host_rate`).
//! Parsed rules live 24 hours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

use crate::error::{Error, Result};

/// How long a fetched robots.txt is trusted.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// The first wait before fetching an unavailable robots.txt again; it doubles with each
/// failure in a row, up to [`MAX_FAILURE_WAIT`].
const FIRST_FAILURE_WAIT: Duration = Duration::from_secs(1);
/// The longest wait before fetching an unavailable robots.txt again.
const MAX_FAILURE_WAIT: Duration = Duration::from_secs(5 * 60);
/// Bytes of robots.txt read (RFC 9309 asks crawlers to parse at least 500 KiB).
const MAX_BYTES: usize = 500 * 1024;
/// The longest `Crawl-delay` honoured: one request an hour.
pub const MAX_CRAWL_DELAY: Duration = Duration::from_secs(3600);
/// Redirects followed to reach a robots.txt (RFC 9309 §2.3.1.2: at least five).
pub const MAX_REDIRECTS: usize = 5;

/// What a robots.txt says, ready to check.
pub enum Rules {
    /// No robots.txt (4xx, or too many redirects): everything is allowed.
    AllowAll,
    /// Unreachable or 5xx: nothing is fetched for now; the text says why.
    Unavailable(String),
    /// Parsed rules.
    Parsed(Box<texting_robots::Robot>),
}

/// One answer to a robots.txt request: status, `Location` (for 3xx), body.
pub struct Fetched {
    /// The status.
    pub status: u16,
    /// The `Location` header of a redirect.
    pub location: Option<String>,
    /// The body.
    pub body: bytes::Bytes,
}

impl Rules {
    /// Rules from a final (non-redirect) answer: status and body.
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
            // 429 asks for less load, not "no file": like a 5xx, nothing is fetched
            // until the file is read (as Google's crawler treats it).
            429 => Rules::Unavailable("status 429".to_string()),
            // 3xx here is a redirect without a usable Location, treated like a 4xx.
            300..=499 => Rules::AllowAll,
            _ => Rules::Unavailable(format!("status {status}")),
        }
    }

    /// Whether `url` may be fetched (never while unavailable).
    pub fn allows(&self, url: &str) -> bool {
        match self {
            Rules::AllowAll => true,
            Rules::Unavailable(_) => false,
            Rules::Parsed(robot) => robot.allowed(url),
        }
    }

    /// Why robots.txt could not be read, when it could not.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            Rules::Unavailable(why) => Some(why),
            _ => None,
        }
    }

    /// The `Crawl-delay`, if any, held to [`MAX_CRAWL_DELAY`] (the file is the site's:
    /// `Crawl-delay: 1e20` must not overflow a timer). Zero, negative and unreadable
    /// values are none.
    pub fn crawl_delay(&self) -> Option<Duration> {
        let secs = match self {
            Rules::Parsed(robot) => robot.delay?,
            _ => return None,
        };
        if !(secs.is_finite() && secs > 0.0) {
            return None;
        }
        Some(
            Duration::try_from_secs_f64(f64::from(secs))
                .map_or(MAX_CRAWL_DELAY, |d| d.min(MAX_CRAWL_DELAY)),
        )
    }
}

struct Entry {
    rules: Arc<Rules>,
    expires: Instant,
    /// Failed fetches in a row (the backoff of the next one).
    failures: u32,
}

/// The wait before fetching robots.txt again after `failures` failed fetches in a row.
fn failure_wait(failures: u32) -> Duration {
    FIRST_FAILURE_WAIT
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_FAILURE_WAIT)
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

    /// The cached rules for `origin` while they hold, and when they expire.
    fn cached(&self, origin: &str) -> Option<(Arc<Rules>, Instant)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(origin)
            .filter(|e| e.expires > Instant::now())
            .map(|e| (e.rules.clone(), e.expires))
    }

    /// The rules for `url`'s origin, fetching them with `fetch` (one answer per call:
    /// redirects are followed here, up to [`MAX_REDIRECTS`]) when not cached. Returns
    /// the rules, whether they were just fetched, and how long they hold (for
    /// unavailable rules: the time until the next fetch).
    ///
    /// `on_fresh` sees newly fetched rules before any other request for the same
    /// origin gets them (it applies the `Crawl-delay` while no request can slip past).
    pub async fn rules_for<F, Fut>(
        &self,
        url: &Url,
        fetch: F,
        on_fresh: impl FnOnce(&Rules),
    ) -> (Arc<Rules>, bool, Duration)
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Fetched>>,
    {
        let origin = url.origin().ascii_serialization();
        if let Some((rules, expires)) = self.cached(&origin) {
            return (
                rules,
                false,
                expires.saturating_duration_since(Instant::now()),
            );
        }
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(origin.clone())
            .or_default()
            .clone();
        let _one_fetch = gate.lock().await;
        if let Some((rules, expires)) = self.cached(&origin) {
            return (
                rules,
                false,
                expires.saturating_duration_since(Instant::now()),
            );
        }
        let rules = self.fetch_following(&origin, &fetch).await;
        on_fresh(&rules);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let failures = match (&rules, entries.get(&origin)) {
            (Rules::Unavailable(_), Some(before)) => before.failures.saturating_add(1),
            (Rules::Unavailable(_), None) => 1,
            _ => 0,
        };
        let ttl = if failures > 0 {
            failure_wait(failures)
        } else {
            TTL
        };
        if let Rules::Unavailable(why) = &rules {
            tracing::warn!(origin = %origin, why = %why, failures, retry_in = ?ttl, "robots.txt unavailable: nothing fetched there for now");
        }
        let rules = Arc::new(rules);
        entries.insert(
            origin,
            Entry {
                rules: rules.clone(),
                expires: Instant::now() + ttl,
                failures,
            },
        );
        (rules, true, ttl)
    }

    /// Fetches `origin`'s robots.txt, following redirects.
    async fn fetch_following<F, Fut>(&self, origin: &str, fetch: &F) -> Rules
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Fetched>>,
    {
        let mut at = format!("{origin}/robots.txt");
        for _ in 0..=MAX_REDIRECTS {
            let answer = match fetch(at.clone()).await {
                Ok(answer) => answer,
                Err(e) => return Rules::Unavailable(e.to_string()),
            };
            let next = match (answer.status, &answer.location) {
                (300..=399, Some(location)) => Url::parse(&at)
                    .and_then(|base| base.join(location))
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https")),
                _ => None,
            };
            match next {
                Some(next) => at = next.to_string(),
                None => return Rules::from_response(&self.agent, answer.status, &answer.body),
            }
        }
        // More than five redirects: unavailable in RFC 9309's sense, so allow all.
        Rules::AllowAll
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
        assert_eq!(other.crawl_delay(), Some(Duration::from_secs(2)));
        for (text, want) in [
            ("Crawl-delay: 1e20", Some(MAX_CRAWL_DELAY)),
            ("Crawl-delay: 0", None),
            ("Crawl-delay: -5", None),
            ("Crawl-delay: 0.25", Some(Duration::from_millis(250))),
        ] {
            let body = format!("User-agent: *\n{text}\n");
            assert_eq!(
                Rules::from_response("m", 200, body.as_bytes()).crawl_delay(),
                want,
                "{text}"
            );
        }
        assert!(Rules::from_response("m", 404, b"").allows("https://a.test/x"));
        assert!(!Rules::from_response("m", 503, b"").allows("https://a.test/x"));
    }

    fn answer(status: u16, location: Option<&str>, body: &'static [u8]) -> Result<Fetched> {
        Ok(Fetched {
            status,
            location: location.map(str::to_string),
            body: bytes::Bytes::from_static(body),
        })
    }

    #[tokio::test]
    async fn fetched_once_per_origin() {
        let cache = RobotsCache::new("mummer");
        let url = Url::parse("https://a.test/page").unwrap();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..3 {
            let (rules, _, _) = cache
                .rules_for(
                    &url,
                    |u| {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        assert_eq!(u, "https://a.test/robots.txt");
                        async { answer(200, None, b"User-agent: *\nDisallow: /page\n") }
                    },
                    |_| {},
                )
                .await;
            assert!(!rules.allows(url.as_str()));
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn status_table_of_rfc_9309() {
        for (status, allowed, unavailable) in [
            (401, true, false),
            (403, true, false),
            (404, true, false),
            (410, true, false),
            (429, false, true),
            (500, false, true),
            (503, false, true),
        ] {
            let cache = RobotsCache::new("mummer");
            let url = Url::parse("https://a.test/x").unwrap();
            let (rules, fresh, _) = cache
                .rules_for(&url, |_| async move { answer(status, None, b"") }, |_| {})
                .await;
            assert!(fresh);
            assert_eq!(rules.allows(url.as_str()), allowed, "{status}");
            assert_eq!(rules.unavailable().is_some(), unavailable, "{status}");
        }
    }

    #[tokio::test]
    async fn redirects_are_followed_up_to_five() {
        let cache = RobotsCache::new("mummer");
        let url = Url::parse("https://a.test/x").unwrap();
        let (rules, _, _) = cache
            .rules_for(
                &url,
                |u| async move {
                    match u.as_str() {
                        "https://a.test/robots.txt" => answer(301, Some("/r1"), b""),
                        "https://a.test/r1" => answer(302, Some("https://b.test/robots.txt"), b""),
                        "https://b.test/robots.txt" => {
                            answer(200, None, b"User-agent: *\nDisallow: /x\n")
                        }
                        other => panic!("unexpected {other}"),
                    }
                },
                |_| {},
            )
            .await;
        assert!(!rules.allows(url.as_str()), "the redirected file's rules");
        let loops = RobotsCache::new("mummer");
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (rules, _, _) = loops
            .rules_for(
                &url,
                |_| {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { answer(302, Some("/robots.txt"), b"") }
                },
                |_| {},
            )
            .await;
        assert!(rules.allows(url.as_str()), "too many redirects: allow all");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn an_unavailable_robots_txt_is_fetched_again_with_backoff() {
        let cache = RobotsCache::new("mummer");
        let url = Url::parse("https://b.test/").unwrap();
        let (rules, fresh, wait) = cache
            .rules_for(
                &url,
                |_| async { Err(Error::invalid_input("connection refused")) },
                |_| {},
            )
            .await;
        assert!(fresh && !rules.allows("https://b.test/"));
        assert_eq!(rules.unavailable(), Some("connection refused"));
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(failure_wait(2), Duration::from_secs(2));
        assert_eq!(failure_wait(4), Duration::from_secs(8));
        assert_eq!(failure_wait(40), MAX_FAILURE_WAIT);
        // Cached until then: no second fetch.
        let (_, fresh, _) = cache
            .rules_for(&url, |_| async { panic!("cached") }, |_| panic!("cached"))
            .await;
        assert!(!fresh);
    }
}
