//! What the crawler makes of a page's fetch: fetched (its links are followed, or it is
//! recorded as failed for good), worth another try later, or a sign that the session
//! itself is gone. Pure, so the rules are tested without a site.

use std::collections::HashMap;
use std::sync::Mutex;

use url::Url;

/// How many times one worker fetches a page before it records the failure.
pub const MAX_TRIES: u32 = 3;

/// The verdict on one fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageOutcome {
    /// Done with: an answer (any status but 5xx), or a failure that another try would
    /// repeat (a malformed URL, a robots.txt refusal, a body too large).
    Fetched,
    /// The site or the path to it failed for now (5xx after the engine's retries, a
    /// timeout, a refused connection, an open breaker): queue the page again.
    Later,
    /// The session can take no more requests (closed, its lease lost, quarantined):
    /// queue the page again and carry on with a fresh session.
    SessionLost,
}

impl PageOutcome {
    /// The verdict on `result`.
    pub fn of(result: &mummer::Result<mummer::Response>) -> PageOutcome {
        match result {
            Ok(r) if r.status().is_server_error() => PageOutcome::Later,
            Ok(_) => PageOutcome::Fetched,
            Err(e) if e.is_closed() || e.is_session_not_found() || e.is_quarantined() => {
                PageOutcome::SessionLost
            }
            Err(e)
                if e.is_timeout()
                    || e.is_connect()
                    || e.is_proxy()
                    || e.is_protocol()
                    || e.is_breaker_open()
                    || e.is_no_healthy_proxy() =>
            {
                PageOutcome::Later
            }
            Err(_) => PageOutcome::Fetched,
        }
    }
}

/// Tries per page in this worker (a page given back may come to another worker, which
/// counts its own).
#[derive(Default)]
pub struct Tries(Mutex<HashMap<String, u32>>);

impl Tries {
    /// Counts a failed try of `url`; whether another one is allowed.
    pub fn another(&self, url: &Url) -> bool {
        let mut tries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = tries.entry(url.to_string()).or_default();
        *n += 1;
        *n < MAX_TRIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_gets_three_tries_in_one_worker() {
        let tries = Tries::default();
        let (a, b) = (
            Url::parse("https://shop.test/a").unwrap(),
            Url::parse("https://shop.test/b").unwrap(),
        );
        assert!(tries.another(&a));
        assert!(tries.another(&a));
        assert!(!tries.another(&a), "the third failure is recorded");
        assert!(tries.another(&b), "counted per page");
    }
}
