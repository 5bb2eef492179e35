//! Retry policy: how an attempt's outcome is classified, which requests may be retried,
//! and how long to wait before the next attempt. Pure logic over plain data; the
//! dispatcher ([`crate::dispatch`]) applies it.
//!
//! Classes:
//! - **recoverable** (timeouts, connection errors, 500/502/503/504, 429 with
//!   `Retry-After`): retried with backoff;
//! - **non-recoverable** (404, 410, other 4xx, malformed responses): not retried, sent to
//!   the dead-letter queue;
//! - **blocked** (401, 403, 429 without `Retry-After` or past the retry limit): the
//!   session is quarantined.
//!
//! Delays are exponential (base 500 ms, cap 30 s, from `backon`) with full jitter: the
//! wait is uniform in `[0, delay]`. `backon`'s own jitter adds `[0, delay)` on top of the
//! delay, which keeps retries from many clients in lock-step at the low end; full jitter
//! spreads them (the AWS architecture blog's comparison), so the jitter is applied here.

use std::time::{Duration, SystemTime};

use backon::BackoffBuilder;
use serde::{Deserialize, Serialize};

/// What one attempt produced, as the policy needs to see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A response with this status, and its `Retry-After` if any.
    Response {
        /// HTTP status code.
        status: u16,
        /// The `Retry-After` value, as sent.
        retry_after: Option<String>,
    },
    /// A transport failure.
    Failure {
        /// Timeouts, refused or reset connections, protocol errors mid-stream: worth
        /// another try.
        transient: bool,
    },
}

/// How an attempt is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Done (2xx, 3xx).
    Success,
    /// Worth retrying.
    Recoverable,
    /// Final failure: dead-letter queue.
    NonRecoverable,
    /// The target is refusing this identity: quarantine the session.
    Blocked,
}

/// Which statuses fall in which class. Statuses in none of the lists: 2xx and 3xx are
/// successes, other 4xx non-recoverable, other 5xx recoverable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// Retried.
    pub recoverable: Vec<u16>,
    /// Quarantine the session.
    pub blocked: Vec<u16>,
    /// Dead-lettered without retry.
    pub non_recoverable: Vec<u16>,
}

impl Default for Classification {
    fn default() -> Self {
        Classification {
            recoverable: vec![500, 502, 503, 504],
            blocked: vec![401, 403],
            non_recoverable: vec![404, 410],
        }
    }
}

impl Classification {
    /// The class of `attempt`. A 429 is recoverable when it says when to come back
    /// (`Retry-After`), blocked otherwise.
    pub fn classify(&self, attempt: &Attempt) -> Class {
        match attempt {
            Attempt::Failure { transient: true } => Class::Recoverable,
            Attempt::Failure { transient: false } => Class::NonRecoverable,
            Attempt::Response {
                status,
                retry_after,
            } => {
                let s = *status;
                if s == 429 {
                    return if retry_after.is_some() {
                        Class::Recoverable
                    } else {
                        Class::Blocked
                    };
                }
                if self.blocked.contains(&s) {
                    Class::Blocked
                } else if self.recoverable.contains(&s) {
                    Class::Recoverable
                } else if self.non_recoverable.contains(&s) {
                    Class::NonRecoverable
                } else {
                    match s {
                        100..=399 => Class::Success,
                        400..=499 => Class::NonRecoverable,
                        _ => Class::Recoverable,
                    }
                }
            }
        }
    }
}

/// Retries, backoff and deadlines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Most retries after the first attempt (default 3).
    pub max_retries: usize,
    /// First backoff delay before jitter (default 500 ms).
    pub base_delay: Duration,
    /// Largest backoff delay before jitter (default 30 s).
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; a longer one ends the retries (default 60 s).
    pub max_retry_after: Duration,
    /// One deadline for all attempts and waits of a request (default 120 s).
    pub deadline: Duration,
    /// Status classes.
    pub classification: Classification,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            deadline: Duration::from_secs(120),
            classification: Classification::default(),
        }
    }
}

/// Methods that may be retried without an `Idempotency-Key` (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &str, has_idempotency_key: bool) -> bool {
    has_idempotency_key
        || ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method))
}

impl RetryPolicy {
    /// The exponential delays before jitter, one per retry: base, 2x base, ... capped.
    pub fn schedule(&self) -> Vec<Duration> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_retries)
            .build()
            .collect()
    }

    /// The wait before retry number `retry` (0-based) with full jitter drawn from `rng`:
    /// uniform in `[0, schedule[retry]]`.
    pub fn jittered(&self, retry: usize, unit: f64) -> Duration {
        let schedule = self.schedule();
        let cap = schedule.get(retry).copied().unwrap_or(self.max_delay);
        cap.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// What to do after `outcome`, the result of attempt number `attempt` (1-based),
    /// given the time left before the deadline and a uniform random `unit` in `[0, 1]`
    /// for the jitter.
    pub fn decide(
        &self,
        outcome: &Attempt,
        attempt: usize,
        now: SystemTime,
        time_left: Duration,
        unit: f64,
    ) -> Decision {
        match self.classification.classify(outcome) {
            Class::Success => return Decision::Done,
            Class::NonRecoverable => return Decision::DeadLetter,
            Class::Blocked => return Decision::Quarantine,
            Class::Recoverable => {}
        }
        let (status, retry_after) = match outcome {
            Attempt::Response {
                status,
                retry_after,
            } => (Some(*status), retry_after.as_deref()),
            Attempt::Failure { .. } => (None, None),
        };
        if attempt > self.max_retries {
            // A 429 that keeps coming past the limit means this identity is throttled.
            return if status == Some(429) {
                Decision::Quarantine
            } else {
                Decision::GiveUp
            };
        }
        let wait = match retry_after.map(|v| parse_retry_after(v, now)) {
            Some(Some(wait)) if wait > self.max_retry_after => return Decision::GiveUp,
            Some(Some(wait)) => wait,
            // An unreadable Retry-After falls back to backoff.
            Some(None) | None => self.jittered(attempt - 1, unit),
        };
        if wait >= time_left {
            return Decision::GiveUp;
        }
        Decision::RetryAfter(wait)
    }
}

/// The policy's verdict on one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Return the response.
    Done,
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Out of retries or time: return the last result.
    GiveUp,
    /// Final failure: return it and put it in the dead-letter queue.
    DeadLetter,
    /// Return it and quarantine the session.
    Quarantine,
}

/// `Retry-After` as a wait from `now`: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
/// A date in the past is a zero wait; anything unreadable is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, ra: Option<&str>) -> Attempt {
        Attempt::Response {
            status,
            retry_after: ra.map(str::to_string),
        }
    }

    #[test]
    fn classification_defaults() {
        let c = Classification::default();
        for (a, want) in [
            (resp(200, None), Class::Success),
            (resp(304, None), Class::Success),
            (resp(500, None), Class::Recoverable),
            (resp(503, None), Class::Recoverable),
            (resp(599, None), Class::Recoverable),
            (resp(429, Some("3")), Class::Recoverable),
            (resp(429, None), Class::Blocked),
            (resp(403, None), Class::Blocked),
            (resp(401, None), Class::Blocked),
            (resp(404, None), Class::NonRecoverable),
            (resp(410, None), Class::NonRecoverable),
            (resp(418, None), Class::NonRecoverable),
            (Attempt::Failure { transient: true }, Class::Recoverable),
            (Attempt::Failure { transient: false }, Class::NonRecoverable),
        ] {
            assert_eq!(c.classify(&a), want, "{a:?}");
        }
        let custom = Classification {
            recoverable: vec![520],
            blocked: vec![451],
            non_recoverable: vec![503],
        };
        assert_eq!(custom.classify(&resp(503, None)), Class::NonRecoverable);
        assert_eq!(custom.classify(&resp(451, None)), Class::Blocked);
    }

    #[test]
    fn schedule_doubles_and_caps() {
        let p = RetryPolicy {
            max_retries: 8,
            ..RetryPolicy::default()
        };
        let s: Vec<u64> = p.schedule().iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(s, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_delay() {
        let p = RetryPolicy::default();
        assert_eq!(p.jittered(0, 0.0), Duration::ZERO);
        assert_eq!(p.jittered(0, 1.0), Duration::from_millis(500));
        assert_eq!(p.jittered(2, 0.5), Duration::from_millis(1000));
        for _ in 0..1000 {
            let d = p.jittered(1, rand::random());
            assert!(d <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Mon, 23 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn decisions() {
        let p = RetryPolicy::default();
        let now = SystemTime::now();
        let left = Duration::from_secs(100);
        let d = |a: Attempt, n: usize, left: Duration, unit: f64| p.decide(&a, n, now, left, unit);
        assert_eq!(d(resp(200, None), 1, left, 0.5), Decision::Done);
        assert_eq!(d(resp(404, None), 1, left, 0.5), Decision::DeadLetter);
        assert_eq!(d(resp(403, None), 1, left, 0.5), Decision::Quarantine);
        assert_eq!(
            d(resp(503, None), 1, left, 1.0),
            Decision::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(
            d(resp(503, None), 3, left, 1.0),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            d(resp(429, Some("4")), 2, left, 0.0),
            Decision::RetryAfter(Duration::from_secs(4)),
            "Retry-After wins over backoff"
        );
        assert_eq!(
            d(resp(503, Some("3600")), 1, left, 0.5),
            Decision::GiveUp,
            "over max_retry_after"
        );
        assert_eq!(
            d(resp(503, Some("5")), 1, Duration::from_secs(2), 0.5),
            Decision::GiveUp,
            "past the deadline"
        );
        assert_eq!(
            d(resp(503, None), 4, left, 0.5),
            Decision::GiveUp,
            "retries exhausted"
        );
        assert_eq!(
            d(resp(429, Some("1")), 4, left, 0.5),
            Decision::Quarantine,
            "429 past the limit"
        );
        assert_eq!(
            d(Attempt::Failure { transient: true }, 2, left, 1.0),
            Decision::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            d(resp(503, Some("later")), 1, left, 1.0),
            Decision::RetryAfter(Duration::from_millis(500)),
            "unreadable Retry-After"
        );
    }

    #[test]
    fn idempotency() {
        assert!(is_idempotent("GET", false));
        assert!(is_idempotent("put", false));
        assert!(!is_idempotent("POST", false));
        assert!(is_idempotent("POST", true));
        assert!(!is_idempotent("PATCH", false));
    }
}
