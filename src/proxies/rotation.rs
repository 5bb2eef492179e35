//! When a pool's sessions move to another exit without being asked: [`RotationPolicy`]
//! (one per pool, the `rotate` table of a pool in the pools-and-routes file) and its
//! pure decisions. The engine asks after each request and rotates with
//! `Engine::rotate_session`; nothing here touches a socket.
//!
//! ```toml
//! [pools.residential.rotate]
//! on_proxy_failure = true   # default: move and replay the request that failed
//! on_quarantine = true      # blocked responses (403 challenges, 401, repeated 429)
//! after_requests = 500
//! after_secs = 1800
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a pool's sessions are rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPolicy {
    /// A request that failed at the proxy (after its retries) moves its session to
    /// another healthy proxy of the pool, and the request is sent again there when it
    /// may be (an idempotent method or an `Idempotency-Key`), so a dying proxy loses
    /// no request. Default on.
    #[serde(default = "on")]
    pub on_proxy_failure: bool,
    /// A session the engine quarantined (blocked responses) is replaced by a fresh one
    /// on another exit. Default off: a quarantined session waits for its caller.
    #[serde(default)]
    pub on_quarantine: bool,
    /// Rotate once a session has sent this many requests (each redirect hop counts).
    #[serde(default)]
    pub after_requests: Option<u64>,
    /// Rotate once a session is this many seconds old (checked after each request).
    #[serde(default)]
    pub after_secs: Option<u64>,
}

fn on() -> bool {
    true
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            on_proxy_failure: true,
            on_quarantine: false,
            after_requests: None,
            after_secs: None,
        }
    }
}

impl RotationPolicy {
    /// Why a session that sent `requests` requests and is `age` old is due for
    /// rotation, if it is.
    pub fn due(&self, requests: u64, age: Duration) -> Option<String> {
        if let Some(n) = self.after_requests.filter(|&n| requests >= n) {
            return Some(format!("rotation policy: {requests} requests (limit {n})"));
        }
        if let Some(secs) = self.after_secs.filter(|&s| age >= Duration::from_secs(s)) {
            return Some(format!(
                "rotation policy: {} s old (limit {secs} s)",
                age.as_secs()
            ));
        }
        None
    }

    /// Whether it ever rotates on age or count (so the engine can skip the check).
    pub fn has_limits(&self) -> bool {
        self.after_requests.is_some() || self.after_secs.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_make_a_session_due_with_the_reason() {
        let policy = RotationPolicy {
            after_requests: Some(3),
            after_secs: Some(60),
            ..RotationPolicy::default()
        };
        assert!(policy.has_limits());
        assert_eq!(policy.due(2, Duration::from_secs(59)), None);
        let by_count = policy.due(3, Duration::ZERO).expect("due");
        assert!(by_count.contains("3 requests"), "{by_count}");
        let by_age = policy.due(0, Duration::from_secs(61)).expect("due");
        assert!(by_age.contains("61 s old"), "{by_age}");
    }

    #[test]
    fn the_default_only_moves_sessions_off_failed_proxies() {
        let policy = RotationPolicy::default();
        assert!(policy.on_proxy_failure && !policy.on_quarantine);
        assert!(!policy.has_limits());
        assert_eq!(policy.due(u64::MAX, Duration::MAX), None);
        let parsed: RotationPolicy = toml::from_str("after_requests = 5").expect("toml");
        assert_eq!(parsed.after_requests, Some(5));
        assert!(parsed.on_proxy_failure);
        assert!(toml::from_str::<RotationPolicy>("after_request = 5").is_err());
    }
}
