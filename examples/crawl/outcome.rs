//! What the crawler makes of a page's fetch, and what it reports at the end. Pure, so
//! the rules are tested without a site.
//!
//! | result (after the engine's own retries) | verdict |
//! |---|---|
//! | 2xx, 3xx | fetched: links followed |
//! | 429, 502, 503, 504 | later: back to the frontier (not before its `Retry-After` or a backoff): the host or a gateway is overloaded or down for now |
//! | other 4xx/5xx (404, 410, a 500 that stayed a 500) | failed for good, with its status |
//! | refused, reset, timed out, breaker open, robots.txt unavailable, no healthy proxy | later |
//! | robots.txt disallows | disallowed (never sent) |
//! | session closed, lost, quarantined (by this answer or before) | session lost: the page goes back, a fresh session goes on |
//! | anything else (malformed URL, body too large, TLS refused) | failed for good |
//!
//! A page that is still "later" after [`PageTries`] tries in one worker is left
//! unfetched, with its last cause: the crawl then exits non-zero. A page that got
//! every session that asked for it quarantined uses up its tries too, and is reported
//! failed (the site refuses it to everyone).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use url::Url;

/// The verdict on one fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageOutcome {
    /// Answered with success: follow its links.
    Fetched,
    /// Done with, without success: the answer (status) or the failure another try
    /// would repeat.
    Failed(String),
    /// robots.txt disallows it.
    Disallowed,
    /// Not fetched for now (the site or the path to it failed, or asked for less
    /// load): queue it again, not before `after`.
    Later {
        /// Why.
        why: String,
        /// When the engine said to come back (open breaker, Retry-After, robots.txt
        /// refetch), if it did.
        after: Option<Duration>,
    },
    /// The session can take no more requests (closed, its lease lost, quarantined):
    /// queue the page again and carry on with a fresh session.
    SessionLost(String),
}

/// The `Retry-After` of an answer in whole seconds, if readable.
fn retry_after(response: &mummer::Response) -> Option<Duration> {
    let value = response.headers().get(http::header::RETRY_AFTER)?;
    mummer::parse_retry_after(value.to_str().ok()?, std::time::SystemTime::now())
}

impl PageOutcome {
    /// The verdict on `result`, from a session the engine has `quarantined` or not
    /// (the answer that quarantines a session comes back to its caller: the page was
    /// refused to this identity, another may get it).
    pub fn of(result: &mummer::Result<mummer::Response>, quarantined: bool) -> PageOutcome {
        match result {
            Ok(r) if quarantined => PageOutcome::SessionLost(format!(
                "status {}: the session was quarantined as blocked",
                r.status().as_u16()
            )),
            Ok(r) if r.status().is_success() || r.status().is_redirection() => PageOutcome::Fetched,
            Ok(r) if matches!(r.status().as_u16(), 429 | 502 | 503 | 504) => PageOutcome::Later {
                why: format!("status {}", r.status().as_u16()),
                after: retry_after(r),
            },
            Ok(r) => PageOutcome::Failed(format!("status {}", r.status().as_u16())),
            Err(e) if e.is_closed() || e.is_session_not_found() || e.is_quarantined() => {
                PageOutcome::SessionLost(e.to_string())
            }
            Err(e) if e.is_robots_disallowed() => PageOutcome::Disallowed,
            Err(e)
                if e.is_timeout()
                    || e.is_connect()
                    || e.is_dns()
                    || e.is_proxy()
                    || e.is_protocol()
                    || e.is_breaker_open()
                    || e.is_robots_unavailable()
                    || e.is_no_healthy_proxy() =>
            {
                PageOutcome::Later {
                    why: e.to_string(),
                    after: e.retry_in(),
                }
            }
            Err(e) => PageOutcome::Failed(e.to_string()),
        }
    }
}

/// Tries per page in this worker (a page given back may come to another worker, which
/// counts its own), and the wait before each next one.
pub struct PageTries {
    max: u32,
    tries: Mutex<HashMap<String, u32>>,
}

/// The first wait before a page that failed for now is tried again; it doubles with
/// each try, up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(500);
/// The longest wait between two tries of one page.
const MAX_WAIT: Duration = Duration::from_secs(30);

impl PageTries {
    /// `max` tries per page (at least 1).
    pub fn new(max: u32) -> PageTries {
        PageTries {
            max: max.max(1),
            tries: Mutex::default(),
        }
    }

    /// Counts a failed try of `url`: the wait before the next one, or `None` when it
    /// was the last. `after` is the engine's own "come back then", which wins when
    /// longer than the backoff.
    pub fn another(&self, url: &Url, after: Option<Duration>) -> Option<Duration> {
        let mut tries = self.tries.lock().unwrap_or_else(|p| p.into_inner());
        let n = tries.entry(url.to_string()).or_default();
        *n += 1;
        if *n >= self.max {
            return None;
        }
        let backoff = FIRST_WAIT
            .saturating_mul(1u32 << (*n - 1).min(16))
            .min(MAX_WAIT);
        Some(after.map_or(backoff, |a| a.max(backoff)).min(MAX_WAIT * 4))
    }
}

/// Pages this worker did not fetch, by what became of them.
#[derive(Default)]
pub struct Report {
    /// Answered with success.
    pub fetched: usize,
    /// Done with, without success: url, status, why.
    pub failed: Vec<(String, Option<u16>, String)>,
    /// Left for transient reasons after every try: url, why.
    pub unfetched: Vec<(String, String)>,
    /// Skipped by robots.txt.
    pub disallowed: Vec<String>,
    /// The start URL's end, when this worker handled it: `None` while fetched.
    pub start_failed: Option<String>,
    /// Pages left in the frontier when tasks of this worker stopped for lack of
    /// sessions (none when every task ran to the end).
    pub abandoned: usize,
}

impl Report {
    /// The short reason a page is counted under: the status, or the error's first
    /// clause ("cannot connect to ...: Connection refused" keeps its cause).
    fn bucket(why: &str) -> String {
        let why = why.split(" (circuit breaker").next().unwrap_or(why);
        why.chars().take(120).collect()
    }

    /// Pages not fetched, per reason.
    pub fn by_reason(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        let reasons = self
            .failed
            .iter()
            .map(|(_, _, why)| why)
            .chain(self.unfetched.iter().map(|(_, why)| why));
        for why in reasons {
            *out.entry(Report::bucket(why)).or_default() += 1;
        }
        if !self.disallowed.is_empty() {
            out.insert(
                "disallowed by robots.txt".to_string(),
                self.disallowed.len(),
            );
        }
        out
    }

    /// Why the crawl did not complete (one line), or `None` when it did: every page
    /// was fetched or failed for good, and the start URL was fetched.
    pub fn incomplete(&self) -> Option<String> {
        if let Some(why) = &self.start_failed {
            return Some(format!("the start URL was not fetched: {why}"));
        }
        if self.abandoned > 0 && self.unfetched.is_empty() {
            return Some(format!(
                "crawl incomplete: {} page(s) left in the frontier: the crawl tasks lost their sessions (see the lines above)",
                self.abandoned
            ));
        }
        if self.unfetched.is_empty() {
            return None;
        }
        let reasons: Vec<String> = self
            .unfetched
            .iter()
            .fold(BTreeMap::<String, usize>::new(), |mut m, (_, why)| {
                *m.entry(Report::bucket(why)).or_default() += 1;
                m
            })
            .into_iter()
            .map(|(why, n)| format!("{n} x {why}"))
            .collect();
        let abandoned = match self.abandoned {
            0 => String::new(),
            n => format!("; {n} page(s) left in the frontier by tasks that lost their sessions"),
        };
        Some(format!(
            "crawl incomplete: {} page(s) not fetched for transient reasons: {}{abandoned}",
            self.unfetched.len(),
            reasons.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_gets_its_tries_with_growing_waits() {
        let tries = PageTries::new(4);
        let (a, b) = (
            Url::parse("https://shop.test/a").unwrap(),
            Url::parse("https://shop.test/b").unwrap(),
        );
        assert_eq!(tries.another(&a, None), Some(Duration::from_millis(500)));
        assert_eq!(tries.another(&a, None), Some(Duration::from_secs(1)));
        assert_eq!(
            tries.another(&a, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7)),
            "the engine's own wait when longer"
        );
        assert_eq!(
            tries.another(&a, None),
            None,
            "the fourth failure is the last"
        );
        assert_eq!(
            tries.another(&b, Some(Duration::from_millis(1))),
            Some(Duration::from_millis(500)),
            "counted per page; never sooner than the backoff"
        );
    }

    #[test]
    fn the_report_says_why_a_crawl_is_incomplete() {
        let mut r = Report::default();
        r.failed
            .push(("https://s.test/dead".into(), Some(500), "status 500".into()));
        assert_eq!(
            r.incomplete(),
            None,
            "a page failed for good is no transient loss"
        );
        r.unfetched.push((
            "https://s.test/a".into(),
            "cannot connect to 127.0.0.1:9: Connection refused (circuit breaker open for host:s.test; next probe in 3s)".into(),
        ));
        let line = r.incomplete().unwrap();
        assert!(
            line.contains("1 x cannot connect to 127.0.0.1:9: Connection refused"),
            "{line}"
        );
        assert!(
            !line.contains("circuit breaker"),
            "the real cause, not the breaker: {line}"
        );
        assert_eq!(r.by_reason().len(), 2);
        let mut left = Report {
            abandoned: 3,
            ..Report::default()
        };
        assert!(left
            .incomplete()
            .unwrap()
            .contains("3 page(s) left in the frontier"));
        left.abandoned = 0;
        assert_eq!(left.incomplete(), None);
        r.start_failed = Some("cannot connect: Connection refused".into());
        assert!(r
            .incomplete()
            .unwrap()
            .starts_with("the start URL was not fetched"));
    }
}
