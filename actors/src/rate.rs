//! Rate limits: per target host (shared by every session of the engine) and per
//! session, with `governor`'s GCRA. A host can get its own rate (robots.txt
//! `Crawl-delay`). Waiting for a slot is asynchronous and bounded by the request's
//! deadline. A [`SharedRateLimit`] (a GCRA in Redis, say) extends the per-host budget
//! to every process that uses the same backend.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

/// A rate: `per_second` requests per second on average, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Average requests per second (e.g. 0.5 = one every two seconds).
    pub per_second: f64,
    /// Requests allowed back to back before the average applies (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `per_second` with a burst of 1: requests evenly spaced, as polite crawlers do.
    pub fn per_second(per_second: f64) -> Rate {
        Rate {
            per_second,
            burst: 1,
        }
    }

    fn quota(self) -> Option<Quota> {
        let period = self.interval()?;
        Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(self.burst.max(1))?))
    }
}

/// The longest interval a rate can ask for: one request a day. A slower rate (a hostile
/// `Crawl-delay: 1e20`, a typo in a flag) is held to it rather than overflowing a
/// `Duration` or governor's nanosecond clock.
pub const SLOWEST_INTERVAL: Duration = Duration::from_secs(24 * 3600);

impl Rate {
    /// Time between two requests at this rate (`None` when it does not limit).
    pub fn interval(self) -> Option<Duration> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return None;
        }
        Some(
            Duration::try_from_secs_f64(1.0 / self.per_second)
                .map_or(SLOWEST_INTERVAL, |d| d.min(SLOWEST_INTERVAL)),
        )
    }
}

/// A per-host rate limit kept outside the process, shared by every worker that uses
/// the same backend. Asked once per attempt, after the local limiters.
pub trait SharedRateLimit: Send + Sync + 'static {
    /// Waits for a slot for `host`: `true` once there is one, `false` when none came
    /// within `within`. A backend that cannot be reached lets the request go (the
    /// local limiters still apply) and says so in its own log.
    fn acquire(&self, host: &str, within: Duration) -> crate::core::BoxFuture<bool>;
}

/// The limits in force.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimits {
    /// Every target host (all sessions together), unless overridden.
    pub per_host: Option<Rate>,
    /// Every session.
    pub per_session: Option<Rate>,
}

/// The limiters, created on first use of a key.
#[derive(Default)]
pub struct Limiters {
    config: RateLimits,
    hosts: HashMap<String, Arc<DefaultDirectRateLimiter>>,
    host_overrides: HashMap<String, Rate>,
    sessions: HashMap<String, Arc<DefaultDirectRateLimiter>>,
}

impl Limiters {
    /// Limiters for `config`.
    pub fn new(config: RateLimits) -> Limiters {
        Limiters {
            config,
            ..Limiters::default()
        }
    }

    /// Gives `host` its own rate (robots.txt `Crawl-delay`), unless the operator's
    /// per-host limit is slower: the stricter of the two wins, never the looser.
    pub fn set_host_rate(&mut self, host: &str, rate: Rate) {
        let rate = match self.config.per_host {
            Some(operator)
                if operator.quota().is_some() && operator.per_second <= rate.per_second =>
            {
                operator
            }
            _ if rate.quota().is_none() => return,
            _ => rate,
        };
        if self.host_overrides.get(host) == Some(&rate) {
            // The same rate again (another origin on the host, a refetch): the limiter
            // in force, and the requests waiting on it, stay as they are.
            return;
        }
        self.host_overrides.insert(host.to_string(), rate);
        // The new limiter starts as if a request had just gone (the robots.txt fetch
        // that brought the Crawl-delay did): a fresh one would let the next request
        // out at once.
        match rate.quota() {
            Some(quota) => {
                let limiter = RateLimiter::direct(quota);
                let _ = limiter.check();
                self.hosts.insert(host.to_string(), Arc::new(limiter));
            }
            None => {
                self.hosts.remove(host);
            }
        }
    }

    /// The rate in force for `host` (its own, or the per-host default).
    pub fn host_rate(&self, host: &str) -> Option<Rate> {
        self.host_overrides
            .get(host)
            .copied()
            .or(self.config.per_host)
            .filter(|r| r.quota().is_some())
    }

    /// The limiters a request to `host` from `session` must pass, in order.
    pub fn for_request(&mut self, host: &str, session: &str) -> Vec<Arc<DefaultDirectRateLimiter>> {
        // Empty (no allocation) when no limit is set, the common case.
        let mut out = Vec::new();
        if let Some(limiter) = self.for_host(host) {
            out.push(limiter);
        }
        if let Some(quota) = self.config.per_session.and_then(Rate::quota) {
            out.push(
                self.sessions
                    .entry(session.to_string())
                    .or_insert_with(|| Arc::new(RateLimiter::direct(quota)))
                    .clone(),
            );
        }
        out
    }

    /// The limiter of `host` (its own rate, or the per-host default), if it has one.
    pub fn for_host(&mut self, host: &str) -> Option<Arc<DefaultDirectRateLimiter>> {
        let quota = self
            .host_overrides
            .get(host)
            .copied()
            .or(self.config.per_host)
            .and_then(Rate::quota)?;
        Some(
            self.hosts
                .entry(host.to_string())
                .or_insert_with(|| Arc::new(RateLimiter::direct(quota)))
                .clone(),
        )
    }

    /// Forgets a closed session's limiter.
    pub fn forget_session(&mut self, session: &str) {
        self.sessions.remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_and_overrides() {
        assert!(Rate::per_second(0.0).quota().is_none());
        assert!(Rate::per_second(f64::NAN).quota().is_none());
        for tiny in [1e-20, f64::MIN_POSITIVE, 1e-300] {
            assert_eq!(
                Rate::per_second(tiny).interval(),
                Some(SLOWEST_INTERVAL),
                "{tiny}: held to one a day, no overflow"
            );
            assert!(Rate::per_second(tiny).quota().is_some());
        }
        let mut l = Limiters::new(RateLimits {
            per_host: Some(Rate::per_second(10.0)),
            per_session: None,
        });
        assert_eq!(l.for_request("a.test", "s").len(), 1);
        let first = l.for_request("a.test", "s1")[0].clone();
        assert!(
            Arc::ptr_eq(&first, &l.for_request("a.test", "s2")[0]),
            "one limiter per host, shared by sessions"
        );
        l.set_host_rate("a.test", Rate::per_second(0.5));
        let second = l.for_request("a.test", "s1")[0].clone();
        assert!(!Arc::ptr_eq(&first, &second));
        l.set_host_rate("a.test", Rate::per_second(0.5));
        assert!(
            Arc::ptr_eq(&second, &l.for_request("a.test", "s1")[0]),
            "the same rate again keeps the limiter its waiters hold"
        );
        assert_eq!(l.host_rate("a.test"), Some(Rate::per_second(0.5)));
        assert_eq!(l.host_rate("b.test"), Some(Rate::per_second(10.0)));
        assert!(Limiters::new(RateLimits::default())
            .for_request("a", "b")
            .is_empty());
    }

    #[test]
    fn crawl_delay_never_loosens_the_operator_limit() {
        // --rps-per-host 0.2 (one per 5 s) and Crawl-delay: 2 (one per 2 s): 5 s.
        let mut l = Limiters::new(RateLimits {
            per_host: Some(Rate::per_second(0.2)),
            per_session: None,
        });
        l.set_host_rate("a.test", Rate::per_second(0.5));
        assert_eq!(l.host_rate("a.test"), Some(Rate::per_second(0.2)));
        // --rps-per-host 10 and Crawl-delay: 2: the Crawl-delay is stricter.
        let mut l = Limiters::new(RateLimits {
            per_host: Some(Rate::per_second(10.0)),
            per_session: None,
        });
        l.set_host_rate("a.test", Rate::per_second(0.5));
        assert_eq!(l.host_rate("a.test"), Some(Rate::per_second(0.5)));
        // No operator limit: the Crawl-delay applies; a nonsense one is ignored.
        let mut l = Limiters::new(RateLimits::default());
        l.set_host_rate("a.test", Rate::per_second(f64::NAN));
        assert_eq!(l.host_rate("a.test"), None);
        l.set_host_rate("a.test", Rate::per_second(0.5));
        assert_eq!(l.host_rate("a.test"), Some(Rate::per_second(0.5)));
    }

    #[tokio::test]
    async fn a_limiter_spaces_requests() {
        let mut l = Limiters::new(RateLimits {
            per_host: Some(Rate::per_second(20.0)),
            per_session: None,
        });
        let started = std::time::Instant::now();
        for _ in 0..5 {
            for lim in l.for_request("h", "s") {
                lim.until_ready().await;
            }
        }
        // Burst 1 at 20/s: the first is free, four more take 4 x 50 ms.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
