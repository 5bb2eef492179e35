//! Adaptive per-host throttle: how a host that answers 429 is slowed down, and how a
//! `Retry-After` pauses every session's requests to it. Pure, clock passed in.
//!
//! AIMD, as TCP's congestion control and polite crawlers do: a host that is not
//! throttled has no entry and no cost. Its first 429 sets its rate to
//! [`ThrottleConfig::start_rate`] (or the operator's own limit, when slower); a later
//! 429 multiplies the rate by [`ThrottleConfig::decrease`] (down to
//! [`ThrottleConfig::min_rate`]); each success adds [`ThrottleConfig::increase`]
//! requests per second, and once the rate is back to [`ThrottleConfig::release_rate`]
//! (or the operator's limit) the throttle is dropped. It only ever slows a host down:
//! the operator's `governor` limit applies on top, so it is never faster than that.
//!
//! Like TCP's one decrease per window, the rate is cut once per congestion event: a
//! 429 to a request sent before the last cut was already answered by that cut (sixteen
//! sessions in flight that all get a 429 halve the rate once, not sixteen times).
//!
//! A 429 or 503 with `Retry-After` also pauses the host until then: no session sends
//! to it sooner than the site asked.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Throttle settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottleConfig {
    /// Requests per second a host is slowed to at its first 429 (default 5).
    pub start_rate: f64,
    /// Slowest rate (default one request a minute).
    pub min_rate: f64,
    /// Factor applied to the rate at each further 429 (default 0.5).
    pub decrease: f64,
    /// Requests per second added at each success (default 0.25).
    pub increase: f64,
    /// The rate at which the throttle is dropped (default 20 per second).
    pub release_rate: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            start_rate: 5.0,
            min_rate: 1.0 / 60.0,
            decrease: 0.5,
            increase: 0.25,
            release_rate: 20.0,
        }
    }
}

/// One host's throttle.
#[derive(Clone, Debug)]
pub struct HostThrottle {
    /// Requests per second while slowed down; `None` when only a pause is in force.
    rate: Option<f64>,
    /// No request before this.
    next_at: Instant,
    /// How many times the rate was cut: a 429 to a request sent before the last cut
    /// (it saw a smaller count) changes nothing.
    cuts: u64,
}

fn finite_positive(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then_some(v)
}

/// The slowest a throttle goes, and the longest pause it takes: one request a day.
const SLOWEST: Duration = Duration::from_secs(24 * 3600);

impl HostThrottle {
    /// A throttle that does not slow anything yet.
    pub fn new(now: Instant) -> HostThrottle {
        HostThrottle {
            rate: None,
            next_at: now,
            cuts: 0,
        }
    }

    /// The host answered 429 to a request sent when the rate had been cut
    /// `cuts_at_send` times ([`HostThrottle::cuts`]; 0 for a host without a throttle
    /// then): slow down, unless the rate was cut since that request went; with a
    /// `pause` (its `Retry-After`), send nothing before it has passed. `ceiling` is
    /// the operator's limit for the host.
    pub fn throttled(
        &mut self,
        config: &ThrottleConfig,
        now: Instant,
        cuts_at_send: u64,
        pause: Option<Duration>,
        ceiling: Option<f64>,
    ) {
        self.pause(now, pause);
        if cuts_at_send < self.cuts {
            return;
        }
        self.cuts += 1;
        let floor = finite_positive(config.min_rate).unwrap_or(1.0 / 60.0);
        let rate = match self.rate {
            None => {
                let start = finite_positive(config.start_rate).unwrap_or(5.0);
                ceiling
                    .and_then(finite_positive)
                    .map_or(start, |c| start.min(c))
            }
            Some(rate) => rate * config.decrease.clamp(0.01, 1.0),
        };
        self.rate = Some(rate.max(floor));
    }

    /// Sends nothing to the host before `pause` from now has passed (a 503 with
    /// `Retry-After`, or a 429's).
    pub fn pause(&mut self, now: Instant, pause: Option<Duration>) {
        if let Some(pause) = pause {
            self.next_at = self.next_at.max(now + pause.min(SLOWEST));
        }
    }

    /// The host answered without throttling: recover a little.
    pub fn succeeded(&mut self, config: &ThrottleConfig, ceiling: Option<f64>) {
        if let Some(rate) = self.rate {
            let rate = rate + config.increase.max(0.0);
            let release = ceiling
                .and_then(finite_positive)
                .map_or(config.release_rate, |c| c.min(config.release_rate));
            // Float sums drift: within a billionth of the release rate is there.
            self.rate = (release - rate > 1e-9).then_some(rate);
        }
    }

    /// Takes the next slot: how long the request must wait before it goes.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let start = self.next_at.max(now);
        if let Some(rate) = self.rate {
            let interval =
                Duration::try_from_secs_f64(1.0 / rate).map_or(SLOWEST, |d| d.min(SLOWEST));
            self.next_at = start + interval;
        }
        start - now
    }

    /// How many times the rate was cut (a request notes it when sent).
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    /// The current rate while slowed down.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Whether it slows nothing any more (no rate, no pause ahead): it can be dropped.
    pub fn is_at_rest(&self, now: Instant) -> bool {
        self.rate.is_none() && self.next_at <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_429_slows_the_host_and_each_later_one_halves_the_rate() {
        let cfg = ThrottleConfig::default();
        let t0 = Instant::now();
        let mut t = HostThrottle::new(t0);
        assert_eq!(t.reserve(t0), Duration::ZERO);
        t.throttled(&cfg, t0, 0, None, None);
        assert_eq!(t.rate(), Some(5.0));
        assert_eq!(t.reserve(t0), Duration::ZERO);
        assert_eq!(t.reserve(t0), Duration::from_millis(200), "five per second");
        let t1 = t0 + SEC;
        t.throttled(&cfg, t1, t.cuts(), None, None);
        assert_eq!(t.rate(), Some(2.5));
        for i in 0..30 {
            let at = t1 + SEC * (i + 1);
            t.throttled(&cfg, at, t.cuts(), None, None);
        }
        assert_eq!(t.rate(), Some(1.0 / 60.0), "never slower than min_rate");
    }

    #[test]
    fn requests_in_flight_at_the_cut_cut_nothing_more() {
        let cfg = ThrottleConfig::default();
        let t0 = Instant::now();
        let mut t = HostThrottle::new(t0);
        let sent = t.cuts();
        let answered = t0 + Duration::from_millis(50);
        // Sixteen requests sent together all answer 429: one cut.
        for i in 0..16 {
            t.throttled(&cfg, answered + Duration::from_millis(i), sent, None, None);
        }
        assert_eq!(t.rate(), Some(5.0));
        // A request sent after the cut that gets a 429 cuts again.
        let later = t.cuts();
        t.throttled(&cfg, answered + SEC, later, None, None);
        assert_eq!(t.rate(), Some(2.5));
    }

    #[test]
    fn it_never_starts_faster_than_the_operator_limit_and_recovers_slowly() {
        let cfg = ThrottleConfig::default();
        let t0 = Instant::now();
        let mut t = HostThrottle::new(t0);
        t.throttled(&cfg, t0, 0, None, Some(0.5));
        assert_eq!(t.rate(), Some(0.5), "the operator's limit is slower");
        let mut t = HostThrottle::new(t0);
        t.throttled(&cfg, t0, 0, None, Some(10.0));
        assert_eq!(t.rate(), Some(5.0));
        // Back to the operator's 10/s after 20 successes (0.25 per success).
        for i in 0..19 {
            t.succeeded(&cfg, Some(10.0));
            assert!(t.rate().is_some(), "still slowed after {i} successes");
        }
        t.succeeded(&cfg, Some(10.0));
        assert_eq!(t.rate(), None, "released at the operator's rate");
        assert!(t.is_at_rest(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn a_retry_after_pauses_every_request_to_the_host() {
        let cfg = ThrottleConfig::default();
        let t0 = Instant::now();
        let mut t = HostThrottle::new(t0);
        t.pause(t0, Some(Duration::from_secs(3)));
        assert_eq!(t.rate(), None, "a pause alone does not slow later requests");
        assert_eq!(t.reserve(t0 + SEC), Duration::from_secs(2));
        assert!(!t.is_at_rest(t0 + Duration::from_secs(2)));
        assert!(t.is_at_rest(t0 + Duration::from_secs(3)));
        // A shorter pause later does not shorten the one in force.
        let mut t = HostThrottle::new(t0);
        t.throttled(&cfg, t0, 0, Some(Duration::from_secs(5)), None);
        t.pause(t0, Some(SEC));
        assert_eq!(t.reserve(t0), Duration::from_secs(5));
        assert_eq!(
            t.reserve(t0),
            Duration::from_millis(5200),
            "then spaced at the throttled rate"
        );
        // A 429 from before the cut still brings its pause.
        t.throttled(&cfg, t0, 0, Some(Duration::from_secs(9)), None);
        assert_eq!(t.reserve(t0), Duration::from_secs(9));
    }

    #[test]
    fn hostile_settings_do_not_break_it() {
        let cfg = ThrottleConfig {
            start_rate: f64::NAN,
            min_rate: -1.0,
            decrease: 0.0,
            increase: f64::NEG_INFINITY,
            release_rate: 0.0,
        };
        let t0 = Instant::now();
        let mut t = HostThrottle::new(t0);
        t.throttled(&cfg, t0, 0, None, Some(f64::INFINITY));
        t.throttled(&cfg, t0 + SEC, t.cuts(), None, None);
        let rate = t.rate().expect("slowed");
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
        assert!(t.reserve(t0) < Duration::from_secs(3600));
        // A tiny floor and a pause of u64::MAX seconds are held to a day.
        let tiny = ThrottleConfig {
            min_rate: 1e-300,
            decrease: 1e-9,
            ..ThrottleConfig::default()
        };
        let mut t = HostThrottle::new(t0);
        for i in 0..50 {
            let at = t0 + SEC * i;
            t.throttled(
                &tiny,
                at,
                t.cuts(),
                Some(Duration::from_secs(u64::MAX)),
                None,
            );
        }
        let _ = t.reserve(t0);
        assert!(t.reserve(t0) <= SLOWEST * 3);
    }
}
