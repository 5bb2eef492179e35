//! Circuit breaker: stop hammering a failing target. A pure state machine with the
//! clock passed in, so every transition is tested without waiting.
//!
//! Closed: requests pass; consecutive failures are counted and a success resets them.
//! After `failure_threshold` consecutive failures it opens. Open: requests fail fast
//! until `cooldown` has passed. Then half-open: one probe passes; its success closes
//! the breaker, its failure opens it again for another cooldown.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long it stays open before a probe (default 30 s).
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Where a breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests fail fast.
    Open,
    /// One probe is allowed.
    HalfOpen,
}

/// One breaker (per session, or per target host).
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// The answer to "may a request go now?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes.
    Allowed,
    /// Yes, as the half-open probe.
    Probe,
    /// No; the breaker lets a probe through after this long.
    Rejected {
        /// Time until the next probe.
        retry_in: Duration,
    },
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: BreakerState::Closed,
            failures: 0,
            opened_at: None,
            probe_in_flight: false,
        }
    }

    /// The current state (open turns half-open once the cooldown has passed).
    pub fn state(&self, now: Instant) -> BreakerState {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) if now.duration_since(at) >= self.config.cooldown => {
                BreakerState::HalfOpen
            }
            (s, _) => s,
        }
    }

    /// Asks to send a request now.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state(now) {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::HalfOpen if !self.probe_in_flight => {
                self.state = BreakerState::HalfOpen;
                self.probe_in_flight = true;
                Admission::Probe
            }
            BreakerState::HalfOpen => Admission::Rejected {
                retry_in: Duration::ZERO,
            },
            BreakerState::Open => {
                let opened = self.opened_at.unwrap_or(now);
                Admission::Rejected {
                    retry_in: self
                        .config
                        .cooldown
                        .saturating_sub(now.duration_since(opened)),
                }
            }
        }
    }

    /// Records a success; returns the state change, if any.
    pub fn success(&mut self, now: Instant) -> Option<BreakerState> {
        let before = self.state(now);
        self.failures = 0;
        self.probe_in_flight = false;
        self.state = BreakerState::Closed;
        self.opened_at = None;
        (before != BreakerState::Closed).then_some(BreakerState::Closed)
    }

    /// Records a failure; returns the state change, if any.
    pub fn failure(&mut self, now: Instant) -> Option<BreakerState> {
        let before = self.state(now);
        self.failures += 1;
        let open =
            before == BreakerState::HalfOpen || self.failures >= self.config.failure_threshold;
        self.probe_in_flight = false;
        if open {
            self.state = BreakerState::Open;
            self.opened_at = Some(now);
            (before != BreakerState::Open).then_some(BreakerState::Open)
        } else {
            None
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether it is as a new breaker is: closed, no failures counted, no probe out.
    /// A breaker at rest behaves exactly like a missing one, so the dispatcher keeps
    /// only breakers that are not (see `dispatch::State::record`).
    pub fn is_at_rest(&self) -> bool {
        self.state == BreakerState::Closed && self.failures == 0 && !self.probe_in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_then_closes() {
        let cfg = BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
        };
        let mut b = Breaker::new(cfg);
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Admission::Allowed);
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        b.success(t0);
        assert_eq!(b.failures(), 0, "a success resets the count");
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.failure(t0), Some(BreakerState::Open));
        assert_eq!(
            b.admit(t0 + Duration::from_secs(10)),
            Admission::Rejected {
                retry_in: Duration::from_secs(20)
            }
        );
        let later = t0 + Duration::from_secs(30);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert_eq!(b.admit(later), Admission::Probe);
        assert!(
            matches!(b.admit(later), Admission::Rejected { .. }),
            "one probe at a time"
        );
        assert_eq!(b.success(later), Some(BreakerState::Closed));
        assert_eq!(b.admit(later), Admission::Allowed);
        assert!(b.is_at_rest(), "closed again with nothing counted");
    }

    #[test]
    fn only_a_fresh_or_fully_reset_breaker_is_at_rest() {
        let cfg = BreakerConfig::default();
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg);
        assert!(b.is_at_rest());
        b.failure(t0);
        assert!(!b.is_at_rest(), "one failure counted");
        b.success(t0);
        assert!(b.is_at_rest());
    }

    #[test]
    fn a_failed_probe_reopens_for_a_full_cooldown() {
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 1,
            cooldown: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert_eq!(b.failure(t0), Some(BreakerState::Open));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(t1), Admission::Probe);
        assert_eq!(b.failure(t1), Some(BreakerState::Open));
        assert_eq!(
            b.admit(t1 + Duration::from_secs(4)),
            Admission::Rejected {
                retry_in: Duration::from_secs(6)
            }
        );
    }
}
