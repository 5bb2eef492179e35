//! Retry policy: how an attempt's outcome is classified, which requests may be retried,
//! and how long to wait before the next attempt. Pure logic over plain data; the
//! dispatcher ([`crate::dispatch`]) applies it.
//!
//! Classes:
//! - **recoverable** (timeouts, connection errors, 429, 500/502/503/504): retried with
//!   backoff, or after the `Retry-After` the server asked for;
//! - **non-recoverable** (404, 410, other 4xx, malformed responses): not retried, sent to
//!   the dead-letter queue;
//! - **blocked** (401, 403, or what a user's block detector calls a block, such as a 200
//!   CAPTCHA page): the session is quarantined.
//!
//! Throttling is not a ban: a 429 is retried (after its `Retry-After`, or backoff) and
//! slows its host down (see [`crate::throttle`]); past the retry limit it is given up,
//! never a reason to quarantine.
//!
//! [`Classification::signals`] says what an outcome tells each circuit breaker: the
//! host's sees only host trouble (transport failures, 502/503/504), the session's only
//! refusals of this identity (401/403/429, detected blocks). A 404 is neither: the host
//! answered correctly.
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

/// Which statuses fall in which class, and which count against which breaker.
/// Statuses in none of the class lists: 2xx and 3xx are successes, other 4xx
/// non-recoverable, other 5xx recoverable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Classification {
    /// Retried (default 429, 500, 502, 503, 504).
    pub recoverable: Vec<u16>,
    /// Quarantine the session (default 401, 403).
    pub blocked: Vec<u16>,
    /// Dead-lettered without retry (default 404, 410).
    pub non_recoverable: Vec<u16>,
    /// Count against the target host's breaker, besides transport failures (default
    /// 502, 503, 504: a gateway or an overloaded server). A 503 with `Retry-After` is
    /// a pause the host asked for, not counted.
    pub host_failures: Vec<u16>,
    /// Count against the session's breaker: the site refusing this identity (default
    /// 401, 403, 429).
    pub session_refusals: Vec<u16>,
}

impl Default for Classification {
    fn default() -> Self {
        Classification {
            recoverable: vec![429, 500, 502, 503, 504],
            blocked: vec![401, 403],
            non_recoverable: vec![404, 410],
            host_failures: vec![502, 503, 504],
            session_refusals: vec![401, 403, 429],
        }
    }
}

/// What a user's block detector made of a response (it sees the status, the headers
/// and the first bytes of the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detected {
    /// A block page (a CAPTCHA served with 200, say): quarantine the session.
    Blocked,
    /// A soft failure: retry it like a 503.
    Retry,
}

/// What an outcome tells one breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Counts as a failure.
    Failure,
    /// Counts as a success.
    Success,
    /// Tells this breaker nothing.
    Neutral,
}

/// What an outcome tells the host's breaker and the session's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signals {
    /// The target host's breaker.
    pub host: Signal,
    /// The session's breaker.
    pub session: Signal,
}

impl Classification {
    /// What `attempt` (and the block detector's verdict on it) tells each breaker.
    ///
    /// | outcome | host | session |
    /// |---|---|---|
    /// | transport failure worth a retry (refused, reset, timeout) | failure | neutral |
    /// | other transport failure (bad input, TLS refusal, body limit) | neutral | neutral |
    /// | `host_failures` status (502/503/504), not 503 + `Retry-After` | failure | neutral |
    /// | other 5xx, 503 + `Retry-After` | neutral | neutral |
    /// | `session_refusals` status (401/403/429) | neutral | failure |
    /// | detected block | success | failure |
    /// | detected soft failure (retried like a 503) | failure | neutral |
    /// | other 4xx (404, 410, ...) | success | neutral |
    /// | 2xx, 3xx | success | success |
    pub fn signals(&self, attempt: &Attempt, detected: Option<Detected>) -> Signals {
        let (status, retry_after) = match attempt {
            Attempt::Failure { transient } => {
                return Signals {
                    host: if *transient {
                        Signal::Failure
                    } else {
                        Signal::Neutral
                    },
                    session: Signal::Neutral,
                }
            }
            Attempt::Response {
                status,
                retry_after,
            } => (*status, retry_after.is_some()),
        };
        let host = if detected == Some(Detected::Retry)
            || (self.host_failures.contains(&status) && !(status == 503 && retry_after))
        {
            Signal::Failure
        } else if status >= 500 || self.session_refusals.contains(&status) {
            Signal::Neutral
        } else {
            Signal::Success
        };
        let session =
            if detected == Some(Detected::Blocked) || self.session_refusals.contains(&status) {
                Signal::Failure
            } else if (200..400).contains(&status) && detected.is_none() {
                Signal::Success
            } else {
                Signal::Neutral
            };
        Signals { host, session }
    }

    /// The class of `attempt`, with the block detector's verdict first.
    pub fn class_of(&self, attempt: &Attempt, detected: Option<Detected>) -> Class {
        match detected {
            Some(Detected::Blocked) => Class::Blocked,
            Some(Detected::Retry) => Class::Recoverable,
            None => self.classify(attempt),
        }
    }

    /// The class of `attempt`.
    pub fn classify(&self, attempt: &Attempt) -> Class {
        match attempt {
            Attempt::Failure { transient: true } => Class::Recoverable,
            Attempt::Failure { transient: false } => Class::NonRecoverable,
            Attempt::Response { status, .. } => {
                let s = *status;
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

    /// What to do after `outcome` (with the block detector's verdict), the result of
    /// attempt number `attempt` (1-based), given the time left before the deadline, a
    /// uniform random `unit` in `[0, 1]` for the jitter, and whether the request may be
    /// sent again at all (`replayable`: an idempotent method or an `Idempotency-Key`,
    /// see [`is_idempotent`]; one that may not is never retried).
    ///
    /// This is where a retry is decided; the dispatcher only carries it out.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        outcome: &Attempt,
        detected: Option<Detected>,
        attempt: usize,
        now: SystemTime,
        time_left: Duration,
        unit: f64,
        replayable: bool,
    ) -> Decision {
        let class = self.classification.class_of(outcome, detected);
        self.decide_class(class, outcome, attempt, now, time_left, unit, replayable)
    }

    /// [`RetryPolicy::decide`] for an outcome already classified as `class` (the
    /// dispatcher classifies once per attempt).
    #[allow(clippy::too_many_arguments)]
    pub fn decide_class(
        &self,
        class: Class,
        outcome: &Attempt,
        attempt: usize,
        now: SystemTime,
        time_left: Duration,
        unit: f64,
        replayable: bool,
    ) -> Decision {
        match class {
            Class::Success => return Decision::Done,
            Class::NonRecoverable => return Decision::DeadLetter,
            Class::Blocked => return Decision::Quarantine,
            Class::Recoverable => {}
        }
        // Everything below ends in a retry or giving up: one that may not be sent
        // twice is given up at once.
        if !replayable {
            return Decision::GiveUp;
        }
        let (status, retry_after) = match outcome {
            Attempt::Response {
                status,
                retry_after,
            } => (Some(*status), retry_after.as_deref()),
            Attempt::Failure { .. } => (None, None),
        };
        if attempt > self.max_retries {
            // Past the limit, a 429 too is given up: throttling is the site asking for
            // less load (the host's throttle slows down), not a ban of this identity.
            return Decision::GiveUp;
        }
        let wait = match retry_after.map(|v| parse_retry_after(v, now)) {
            Some(Some(wait)) if wait > self.max_retry_after => return Decision::GiveUp,
            Some(Some(wait)) => wait,
            // A 429 without a (readable) Retry-After: backoff, but never at once (equal
            // jitter: at least half the delay).
            _ if status == Some(429) => {
                let cap = self.jittered(attempt - 1, 1.0);
                cap / 2 + cap.mul_f64(unit.clamp(0.0, 1.0)) / 2
            }
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

/// The pause a response asks of its whole host: a 429 or 503 with a readable
/// `Retry-After` of at most `max`. Every session's next request to that host waits
/// for it.
pub fn host_pause(outcome: &Attempt, now: SystemTime, max: Duration) -> Option<Duration> {
    match outcome {
        Attempt::Response {
            status: 429 | 503,
            retry_after: Some(value),
        } => parse_retry_after(value, now).filter(|wait| *wait <= max),
        _ => None,
    }
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
            (resp(429, None), Class::Recoverable),
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
            ..Classification::default()
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
        let d = |a: Attempt, n: usize, left: Duration, unit: f64| {
            p.decide(&a, None, n, now, left, unit, true)
        };
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
            Decision::GiveUp,
            "429 past the limit is given up, not a quarantine"
        );
        // A request that may not be sent twice (a POST without an Idempotency-Key) is
        // given up where another would be retried; its other verdicts stand.
        let once = |a: Attempt| p.decide(&a, None, 1, now, left, 0.5, false);
        assert_eq!(once(resp(503, None)), Decision::GiveUp, "not replayable");
        assert_eq!(once(resp(404, None)), Decision::DeadLetter);
        assert_eq!(once(resp(403, None)), Decision::Quarantine);
        assert_eq!(once(resp(200, None)), Decision::Done);
        assert_eq!(
            d(resp(429, None), 1, left, 0.0),
            Decision::RetryAfter(Duration::from_millis(250)),
            "429 without Retry-After: backoff, at least half of it"
        );
        assert_eq!(
            d(resp(429, None), 2, left, 1.0),
            Decision::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            p.decide(
                &resp(200, None),
                Some(Detected::Blocked),
                1,
                now,
                left,
                0.5,
                true
            ),
            Decision::Quarantine,
            "a detected block page quarantines"
        );
        assert_eq!(
            p.decide(
                &resp(200, None),
                Some(Detected::Retry),
                1,
                now,
                left,
                1.0,
                true
            ),
            Decision::RetryAfter(Duration::from_millis(500)),
            "a detected soft failure is retried"
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
    fn what_counts_against_whom() {
        use Signal::{Failure as F, Neutral as N, Success as S};
        let c = Classification::default();
        for (a, detected, host, session) in [
            (Attempt::Failure { transient: true }, None, F, N),
            (Attempt::Failure { transient: false }, None, N, N),
            (resp(502, None), None, F, N),
            (resp(503, None), None, F, N),
            (resp(504, None), None, F, N),
            (resp(503, Some("2")), None, N, N),
            (resp(500, None), None, N, N),
            (resp(404, None), None, S, N),
            (resp(410, None), None, S, N),
            (resp(418, None), None, S, N),
            (resp(401, None), None, N, F),
            (resp(403, None), None, N, F),
            (resp(429, Some("1")), None, N, F),
            (resp(429, None), None, N, F),
            (resp(200, None), None, S, S),
            (resp(304, None), None, S, S),
            (resp(200, None), Some(Detected::Blocked), S, F),
            (resp(200, None), Some(Detected::Retry), F, N),
        ] {
            assert_eq!(
                c.signals(&a, detected),
                Signals { host, session },
                "{a:?} {detected:?}"
            );
        }
    }

    #[test]
    fn host_pauses_come_from_429_and_503_retry_after() {
        let now = SystemTime::now();
        let max = Duration::from_secs(60);
        assert_eq!(
            host_pause(&resp(429, Some("2")), now, max),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            host_pause(&resp(503, Some("1")), now, max),
            Some(Duration::from_secs(1))
        );
        assert_eq!(host_pause(&resp(429, None), now, max), None);
        assert_eq!(host_pause(&resp(500, Some("1")), now, max), None);
        assert_eq!(
            host_pause(&resp(429, Some("3600")), now, max),
            None,
            "a pause longer than the cap is not taken"
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
