//! Circuit breaker: stop hammering a failing target. A pure state machine with the
//! clock passed in, so every transition is tested without waiting.
//!
//! The rules follow resilience4j's count-based sliding window and Envoy's outlier
//! detection rather than a bare "N failures in a row":
//!
//! - **Closed**: requests pass. The last [`BreakerConfig::window`] outcomes are kept;
//!   the breaker opens when, with at least [`BreakerConfig::min_calls`] outcomes in the
//!   window, the share of failures reaches [`BreakerConfig::failure_rate`], or when
//!   [`BreakerConfig::consecutive_failures`] failures come in a row. A few flaky URLs on
//!   a healthy site stay far below both.
//! - **Open**: requests wait (the dispatcher sleeps until the probe time when that fits
//!   in their deadline) until [`BreakerConfig::cooldown`] has passed.
//! - **Half-open**: exactly one probe goes. Its success closes the breaker (window
//!   cleared), its failure opens it for another cooldown. A probe that never reports
//!   (its future was dropped, aborted, or its deadline passed) gives its slot back:
//!   the dispatcher calls [`Breaker::release_probe`] from a drop guard, and a probe out
//!   for longer than [`BreakerConfig::probe_timeout`] is presumed lost, so the breaker
//!   can never stay wedged.
//!
//! What counts as a failure for which breaker is decided in [`crate::policy::Classification::signals`];
//! this module only counts.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Most outcomes a window can hold (the window is a 64-bit ring).
pub const MAX_WINDOW: u32 = 64;

/// Breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BreakerConfig {
    /// Outcomes remembered (default 20, at most [`MAX_WINDOW`]).
    pub window: u32,
    /// Outcomes needed in the window before the failure rate applies (default 10).
    pub min_calls: u32,
    /// Share of failures in the window that opens the breaker (default 0.5).
    pub failure_rate: f64,
    /// Failures in a row that open the breaker whatever the window says (default 10).
    pub consecutive_failures: u32,
    /// How long it stays open before a probe (default 30 s, Envoy's base ejection
    /// time).
    pub cooldown: Duration,
    /// A probe that has not reported after this long is presumed lost and another
    /// may go (default 60 s; normally a dropped probe releases its slot at once).
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            consecutive_failures: 10,
            cooldown: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(60),
        }
    }
}

impl BreakerConfig {
    /// Checks the settings: a window of 1 to [`MAX_WINDOW`], `min_calls` within it, a
    /// failure rate in (0, 1], at least one consecutive failure.
    ///
    /// # Errors
    ///
    /// A message naming the field and the allowed range.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return Err(format!(
                "breaker window must be 1..={MAX_WINDOW} outcomes, not {}",
                self.window
            ));
        }
        if self.min_calls == 0 || self.min_calls > self.window {
            return Err(format!(
                "breaker min_calls must be 1..={} (the window), not {}",
                self.window, self.min_calls
            ));
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err(format!(
                "breaker failure_rate must be in (0, 1], not {}",
                self.failure_rate
            ));
        }
        if self.consecutive_failures == 0 {
            return Err("breaker consecutive_failures must be at least 1".to_string());
        }
        Ok(())
    }
}

/// Where a breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests wait for the probe time.
    Open,
    /// One probe is allowed.
    HalfOpen,
}

/// One breaker (per session, or per target host).
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    /// The window as a ring of bits, 1 = failure; the newest outcome is bit 0.
    outcomes: u64,
    /// Outcomes in the window (at most `config.window`).
    len: u32,
    consecutive: u32,
    opened_at: Option<Instant>,
    /// The probe out now: when it went, and its number.
    probe: Option<(Instant, u64)>,
    probes: u64,
}

/// The answer to "may a request go now?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes.
    Allowed,
    /// Yes, as the half-open probe with this number: report its outcome, or
    /// [`Breaker::release_probe`] it when it ends without one.
    Probe(u64),
    /// Not now.
    Rejected {
        /// Time until a probe may go (open), or until the probe out now is presumed
        /// lost (half-open with a probe out; its outcome usually comes much sooner).
        retry_in: Duration,
        /// Whether a probe is out (its outcome decides; ask again soon).
        probing: bool,
    },
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: BreakerState::Closed,
            outcomes: 0,
            len: 0,
            consecutive: 0,
            opened_at: None,
            probe: None,
            probes: 0,
        }
    }

    fn window(&self) -> u32 {
        self.config.window.clamp(1, MAX_WINDOW)
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
            BreakerState::HalfOpen => {
                if let Some((sent, _)) = self.probe {
                    let out_for = now.duration_since(sent);
                    if out_for < self.config.probe_timeout {
                        return Admission::Rejected {
                            retry_in: self.config.probe_timeout - out_for,
                            probing: true,
                        };
                    }
                    // Lost: never reported, never released. Another goes.
                }
                self.state = BreakerState::HalfOpen;
                self.probes += 1;
                self.probe = Some((now, self.probes));
                Admission::Probe(self.probes)
            }
            BreakerState::Open => {
                let opened = self.opened_at.unwrap_or(now);
                Admission::Rejected {
                    retry_in: self
                        .config
                        .cooldown
                        .saturating_sub(now.duration_since(opened)),
                    probing: false,
                }
            }
        }
    }

    /// Probe `number` leaves now (it waited for a rate slot since it was admitted):
    /// the probe timeout counts from here.
    pub fn probe_sent(&mut self, number: u64, now: Instant) {
        if let Some((sent, n)) = &mut self.probe {
            if *n == number {
                *sent = now;
            }
        }
    }

    /// Gives back probe `number`'s slot: it ended without an outcome (dropped,
    /// aborted, refused before it was sent). The next request becomes the probe.
    pub fn release_probe(&mut self, number: u64) {
        if self.probe.is_some_and(|(_, n)| n == number) {
            self.probe = None;
        }
    }

    /// Records a success; returns the state change, if any. Any success while open
    /// or half-open (the probe, or a request admitted before the breaker opened) means
    /// the target answers again: the breaker closes with an empty window.
    pub fn success(&mut self, now: Instant) -> Option<BreakerState> {
        let before = self.state(now);
        self.consecutive = 0;
        self.probe = None;
        if before == BreakerState::Closed {
            self.push(false);
            return None;
        }
        self.state = BreakerState::Closed;
        self.opened_at = None;
        self.outcomes = 0;
        self.len = 0;
        Some(BreakerState::Closed)
    }

    /// Records a failure; returns the state change, if any. A late failure while open
    /// (sent before it opened) changes nothing: the cooldown is not extended.
    pub fn failure(&mut self, now: Instant) -> Option<BreakerState> {
        let before = self.state(now);
        match before {
            BreakerState::Open => None,
            BreakerState::HalfOpen => {
                self.probe = None;
                self.open(now);
                // Half-open was computed from the clock: the state itself may still
                // read open, but a new cooldown starts either way.
                Some(BreakerState::Open)
            }
            BreakerState::Closed => {
                self.consecutive = self.consecutive.saturating_add(1);
                self.push(true);
                if self.should_open() {
                    self.open(now);
                    Some(BreakerState::Open)
                } else {
                    None
                }
            }
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
    }

    fn push(&mut self, failed: bool) {
        let window = self.window();
        self.outcomes = (self.outcomes << 1) | u64::from(failed);
        if window < 64 {
            self.outcomes &= (1u64 << window) - 1;
        }
        self.len = (self.len + 1).min(window);
    }

    fn should_open(&self) -> bool {
        if self.consecutive >= self.config.consecutive_failures.max(1) {
            return true;
        }
        if self.len < self.config.min_calls.max(1) {
            return false;
        }
        f64::from(self.failures()) >= self.config.failure_rate * f64::from(self.len)
    }

    /// Failures in the window.
    pub fn failures(&self) -> u32 {
        self.outcomes.count_ones()
    }

    /// Failures in a row so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Whether it is as a new breaker is: closed, no failure in the window, no probe
    /// out. A breaker at rest behaves exactly like a missing one, so the dispatcher
    /// keeps only breakers that are not (see `dispatch::State::record`).
    pub fn is_at_rest(&self) -> bool {
        self.state == BreakerState::Closed && self.outcomes == 0 && self.probe.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(consecutive: u32) -> BreakerConfig {
        BreakerConfig {
            window: 10,
            min_calls: 6,
            failure_rate: 0.5,
            consecutive_failures: consecutive,
            cooldown: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn opens_on_consecutive_failures_then_probes_then_closes() {
        let mut b = Breaker::new(config(3));
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Admission::Allowed);
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        b.success(t0);
        assert_eq!(b.consecutive_failures(), 0, "a success resets the run");
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.failure(t0), Some(BreakerState::Open));
        assert_eq!(
            b.admit(t0 + Duration::from_secs(10)),
            Admission::Rejected {
                retry_in: Duration::from_secs(20),
                probing: false
            }
        );
        let later = t0 + Duration::from_secs(30);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        let Admission::Probe(_) = b.admit(later) else {
            panic!("a probe goes once the cooldown passed")
        };
        assert!(
            matches!(b.admit(later), Admission::Rejected { probing: true, .. }),
            "one probe at a time"
        );
        assert_eq!(b.success(later), Some(BreakerState::Closed));
        assert_eq!(b.admit(later), Admission::Allowed);
        assert!(b.is_at_rest(), "closed again with nothing counted");
    }

    #[test]
    fn a_failure_rate_opens_only_past_the_minimum_calls() {
        let mut b = Breaker::new(config(100));
        let t0 = Instant::now();
        // Five failures among the first five calls: under min_calls (6), still closed.
        for _ in 0..5 {
            assert_eq!(b.failure(t0), None);
        }
        // The sixth call succeeds: 5 of 6 failed (83% >= 50%), but the rate is checked
        // on failures only; the next failure opens it.
        assert_eq!(b.success(t0), None);
        assert_eq!(b.failure(t0), Some(BreakerState::Open));
    }

    #[test]
    fn a_few_flaky_urls_on_a_healthy_site_do_not_open_it() {
        // The default settings and a crawl where one request in four fails.
        let mut b = Breaker::new(BreakerConfig::default());
        let t0 = Instant::now();
        for i in 0..200 {
            if i % 4 == 0 {
                assert_eq!(b.failure(t0), None, "call {i}");
            } else {
                b.success(t0);
            }
        }
        // Five gateway failures in a row (five flaky URLs at once) are not ten.
        for _ in 0..5 {
            assert_eq!(b.failure(t0), None);
        }
        assert_eq!(b.admit(t0), Admission::Allowed);
    }

    #[test]
    fn old_failures_slide_out_of_the_window() {
        let mut b = Breaker::new(config(100));
        let t0 = Instant::now();
        for _ in 0..4 {
            b.failure(t0);
        }
        for _ in 0..10 {
            b.success(t0);
        }
        assert_eq!(b.failures(), 0);
        assert!(b.is_at_rest(), "a window of successes is a breaker at rest");
    }

    #[test]
    fn a_failed_probe_reopens_for_a_full_cooldown() {
        let mut b = Breaker::new(BreakerConfig {
            consecutive_failures: 1,
            cooldown: Duration::from_secs(10),
            ..BreakerConfig::default()
        });
        let t0 = Instant::now();
        assert_eq!(b.failure(t0), Some(BreakerState::Open));
        let t1 = t0 + Duration::from_secs(10);
        assert!(matches!(b.admit(t1), Admission::Probe(_)));
        assert_eq!(b.failure(t1), Some(BreakerState::Open));
        assert_eq!(
            b.admit(t1 + Duration::from_secs(4)),
            Admission::Rejected {
                retry_in: Duration::from_secs(6),
                probing: false
            }
        );
    }

    #[test]
    fn a_late_failure_does_not_extend_the_cooldown() {
        let mut b = Breaker::new(BreakerConfig {
            consecutive_failures: 1,
            cooldown: Duration::from_secs(10),
            ..BreakerConfig::default()
        });
        let t0 = Instant::now();
        b.failure(t0);
        assert_eq!(b.failure(t0 + Duration::from_secs(5)), None);
        assert_eq!(
            b.state(t0 + Duration::from_secs(10)),
            BreakerState::HalfOpen
        );
    }

    #[test]
    fn a_released_probe_lets_the_next_request_probe() {
        let mut b = Breaker::new(BreakerConfig {
            consecutive_failures: 1,
            cooldown: Duration::from_secs(1),
            ..BreakerConfig::default()
        });
        let t0 = Instant::now();
        b.failure(t0);
        let t1 = t0 + Duration::from_secs(1);
        let Admission::Probe(first) = b.admit(t1) else {
            panic!("probe")
        };
        b.release_probe(first + 7);
        assert!(
            matches!(b.admit(t1), Admission::Rejected { probing: true, .. }),
            "another probe's number releases nothing"
        );
        b.release_probe(first);
        let Admission::Probe(second) = b.admit(t1) else {
            panic!("released: the next request probes")
        };
        assert_ne!(first, second);
        b.release_probe(first);
        assert!(
            matches!(b.admit(t1), Admission::Rejected { probing: true, .. }),
            "a stale release does not free the new probe"
        );
    }

    #[test]
    fn a_probe_that_never_reports_is_presumed_lost() {
        let mut b = Breaker::new(BreakerConfig {
            consecutive_failures: 1,
            cooldown: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(5),
            ..BreakerConfig::default()
        });
        let t0 = Instant::now();
        b.failure(t0);
        let t1 = t0 + Duration::from_secs(1);
        assert!(matches!(b.admit(t1), Admission::Probe(_)));
        assert_eq!(
            b.admit(t1 + Duration::from_secs(2)),
            Admission::Rejected {
                retry_in: Duration::from_secs(3),
                probing: true
            }
        );
        assert!(
            matches!(b.admit(t1 + Duration::from_secs(5)), Admission::Probe(_)),
            "after the probe timeout another probe goes"
        );
        // A probe that waited for a rate slot counts its timeout from when it left.
        let t2 = t1 + Duration::from_secs(5);
        let Admission::Probe(n) = b.admit(t2 + Duration::from_secs(5)) else {
            panic!("lost again: another probe")
        };
        b.probe_sent(n, t2 + Duration::from_secs(9));
        assert!(
            matches!(
                b.admit(t2 + Duration::from_secs(12)),
                Admission::Rejected { probing: true, .. }
            ),
            "sent 3 s ago: not lost yet"
        );
    }

    #[test]
    fn settings_are_checked() {
        assert!(BreakerConfig::default().validate().is_ok());
        for bad in [
            BreakerConfig {
                window: 0,
                ..BreakerConfig::default()
            },
            BreakerConfig {
                window: 65,
                ..BreakerConfig::default()
            },
            BreakerConfig {
                min_calls: 21,
                ..BreakerConfig::default()
            },
            BreakerConfig {
                failure_rate: 0.0,
                ..BreakerConfig::default()
            },
            BreakerConfig {
                failure_rate: f64::NAN,
                ..BreakerConfig::default()
            },
            BreakerConfig {
                consecutive_failures: 0,
                ..BreakerConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
