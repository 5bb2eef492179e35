//! HTTP Alternative Services (RFC 7838) as Chrome keeps them: which origins offered
//! HTTP/3 (`Alt-Svc: h3=":443"; ma=86400`), until when, and which alternatives are
//! broken for now.
//!
//! Pure state on a caller's clock (a [`SystemTime`] passed in), so the rules are tested
//! without a network: [`parse`] reads one header value, [`AltSvcCache::record`] files
//! what a response said, [`AltSvcCache::usable`] answers whether the next connection
//! may try QUIC, and [`AltSvcCache::mark_broken`] backs a failed alternative off as
//! Chrome does (5 minutes, doubling with each consecutive failure, at most 2 days).
//! Bounded: [`MAX_ORIGINS`] origins, [`MAX_ALTERNATIVES`] each, header values past
//! [`MAX_HEADER_BYTES`] ignored.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Origins remembered at once; the one expiring first goes past this.
pub const MAX_ORIGINS: usize = 256;
/// Alternatives kept per origin.
pub const MAX_ALTERNATIVES: usize = 8;
/// Longest header value read.
pub const MAX_HEADER_BYTES: usize = 4096;
/// `ma` when the header gives none (RFC 7838 section 3.1: 24 hours).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Longest `ma` honoured (a year; larger values are clamped).
pub const MAX_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long an alternative stays broken after its first failure (Chrome: 5 minutes).
pub const BROKEN_FIRST: Duration = Duration::from_secs(300);
/// Longest it stays broken however often it failed (Chrome: 2 days).
pub const BROKEN_MAX: Duration = Duration::from_secs(2 * 24 * 3600);

/// One alternative service for an origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alternative {
    /// ALPN protocol id (`h3`).
    pub protocol: String,
    /// Host to connect to; empty means the origin's own.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// When it stops being valid (`ma`), in seconds since the Unix epoch.
    pub expires: u64,
}

/// What one `Alt-Svc` header value says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AltSvcHeader {
    /// `clear`: forget every alternative of the origin.
    Clear,
    /// These alternatives (protocols mummer cannot speak left out).
    Alternatives(Vec<Alternative>),
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses one `Alt-Svc` value received at `now`. Only `h3` alternatives are kept;
/// a malformed entry is skipped, never the whole value (as Chrome does).
pub fn parse(value: &str, now: SystemTime) -> AltSvcHeader {
    let value = value.trim();
    if value.len() > MAX_HEADER_BYTES {
        return AltSvcHeader::Alternatives(Vec::new());
    }
    if value.eq_ignore_ascii_case("clear") {
        return AltSvcHeader::Clear;
    }
    let mut out = Vec::new();
    for entry in split_outside_quotes(value, ',') {
        let mut parts = split_outside_quotes(entry, ';').into_iter();
        let Some(first) = parts.next() else { continue };
        let Some((protocol, authority)) = first.trim().split_once('=') else {
            continue;
        };
        let protocol = protocol.trim();
        if protocol != "h3" {
            continue;
        }
        let authority = authority.trim();
        let Some(authority) = authority
            .strip_prefix('"')
            .and_then(|a| a.strip_suffix('"'))
        else {
            continue;
        };
        let Some((host, port)) = authority.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if port == 0 || host.len() > 253 || host.contains(['"', ' ', '/']) {
            continue;
        }
        let mut max_age = DEFAULT_MAX_AGE;
        for param in parts {
            if let Some((name, v)) = param.trim().split_once('=') {
                if name.trim().eq_ignore_ascii_case("ma") {
                    if let Ok(secs) = v.trim().trim_matches('"').parse::<u64>() {
                        max_age = Duration::from_secs(secs).min(MAX_MAX_AGE);
                    }
                }
            }
        }
        out.push(Alternative {
            protocol: protocol.to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            expires: unix(now).saturating_add(max_age.as_secs()),
        });
        if out.len() >= MAX_ALTERNATIVES {
            break;
        }
    }
    AltSvcHeader::Alternatives(out)
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// An origin as `scheme://host:port`.
pub fn origin_key(host: &str, port: u16) -> String {
    format!("https://{}:{port}", host.to_ascii_lowercase())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Broken {
    /// Consecutive failures.
    count: u32,
    /// Unix seconds until which it is not tried.
    until: u64,
}

/// The alternatives a client learned, and which of them are broken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AltSvcCache {
    origins: HashMap<String, Vec<Alternative>>,
    broken: HashMap<(String, String, u16), Broken>,
}

/// An [`AltSvcCache`] as a snapshot keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AltSvcRecord {
    /// The origin (`https://host:port`).
    pub origin: String,
    /// Its alternatives.
    pub alternatives: Vec<Alternative>,
}

impl AltSvcCache {
    /// Files the `Alt-Svc` values of a response from `origin` received at `now`. Values
    /// replace what the origin said before (RFC 7838 section 3); `clear` forgets it.
    pub fn record<'a>(
        &mut self,
        origin: &str,
        values: impl IntoIterator<Item = &'a str>,
        now: SystemTime,
    ) {
        let mut fresh = Vec::new();
        let mut any = false;
        for value in values {
            any = true;
            match parse(value, now) {
                AltSvcHeader::Clear => {
                    self.origins.remove(origin);
                    return;
                }
                AltSvcHeader::Alternatives(alts) => fresh.extend(alts),
            }
        }
        if !any {
            return;
        }
        fresh.truncate(MAX_ALTERNATIVES);
        if fresh.is_empty() {
            return;
        }
        if !self.origins.contains_key(origin) && self.origins.len() >= MAX_ORIGINS {
            let now = unix(now);
            self.origins
                .retain(|_, alts| alts.iter().any(|a| a.expires > now));
            if self.origins.len() >= MAX_ORIGINS {
                let soonest = self
                    .origins
                    .iter()
                    .min_by_key(|(_, alts)| alts.iter().map(|a| a.expires).max().unwrap_or(0))
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.origins.remove(&k);
                }
            }
        }
        self.origins.insert(origin.to_string(), fresh);
    }

    /// The HTTP/3 alternative the next connection to `origin` may try at `now`: valid
    /// and not broken.
    pub fn usable(&self, origin: &str, now: SystemTime) -> Option<Alternative> {
        let now = unix(now);
        self.origins
            .get(origin)?
            .iter()
            .find(|a| {
                a.protocol == "h3"
                    && a.expires > now
                    && self
                        .broken
                        .get(&(origin.to_string(), a.host.clone(), a.port))
                        .is_none_or(|b| b.until <= now)
            })
            .cloned()
    }

    /// `alt` of `origin` failed at `now`: not tried again for 5 minutes, doubled with
    /// each consecutive failure, at most 2 days. Returns how long.
    pub fn mark_broken(&mut self, origin: &str, alt: &Alternative, now: SystemTime) -> Duration {
        let entry = self
            .broken
            .entry((origin.to_string(), alt.host.clone(), alt.port))
            .or_default();
        entry.count = entry.count.saturating_add(1);
        let factor = 1u64 << (entry.count - 1).min(20);
        let wait = BROKEN_FIRST
            .saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX))
            .min(BROKEN_MAX);
        entry.until = unix(now).saturating_add(wait.as_secs());
        if self.broken.len() > MAX_ORIGINS * MAX_ALTERNATIVES {
            let now = unix(now);
            self.broken.retain(|_, b| b.until > now);
        }
        wait
    }

    /// `alt` of `origin` worked: its failures are forgotten.
    pub fn confirm(&mut self, origin: &str, alt: &Alternative) {
        self.broken
            .remove(&(origin.to_string(), alt.host.clone(), alt.port));
    }

    /// Whether `alt` of `origin` is broken at `now`.
    pub fn is_broken(&self, origin: &str, alt: &Alternative, now: SystemTime) -> bool {
        self.broken
            .get(&(origin.to_string(), alt.host.clone(), alt.port))
            .is_some_and(|b| b.until > unix(now))
    }

    /// The unexpired alternatives, for a snapshot.
    pub fn export(&self, now: SystemTime) -> Vec<AltSvcRecord> {
        let now = unix(now);
        let mut out: Vec<AltSvcRecord> = self
            .origins
            .iter()
            .map(|(origin, alts)| AltSvcRecord {
                origin: origin.clone(),
                alternatives: alts.iter().filter(|a| a.expires > now).cloned().collect(),
            })
            .filter(|r| !r.alternatives.is_empty())
            .collect();
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        out
    }

    /// Takes alternatives back from a snapshot (bounded as if they had been received).
    pub fn import(&mut self, records: &[AltSvcRecord]) {
        for r in records.iter().take(MAX_ORIGINS) {
            let alts: Vec<Alternative> = r
                .alternatives
                .iter()
                .filter(|a| a.protocol == "h3" && a.port != 0)
                .take(MAX_ALTERNATIVES)
                .cloned()
                .collect();
            if !alts.is_empty()
                && (self.origins.len() < MAX_ORIGINS || self.origins.contains_key(&r.origin))
            {
                self.origins.insert(r.origin.clone(), alts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn h3_alternatives_are_read_and_the_rest_skipped() {
        let parsed = parse(
            r#"h3=":443"; ma=3600, h3-29=":443", h2="alt.example:8443", h3="cdn.test:4433""#,
            at(1000),
        );
        let AltSvcHeader::Alternatives(alts) = parsed else {
            panic!("not clear")
        };
        assert_eq!(alts.len(), 2);
        assert_eq!(
            (alts[0].host.as_str(), alts[0].port, alts[0].expires),
            ("", 443, 4600)
        );
        assert_eq!((alts[1].host.as_str(), alts[1].port), ("cdn.test", 4433));
        assert_eq!(alts[1].expires, 1000 + 86_400);
        assert_eq!(parse("clear", at(0)), AltSvcHeader::Clear);
        for junk in [
            "h3",
            "h3=443",
            r#"h3=":0""#,
            r#"h3=":99999""#,
            r#"h3=":443"; ma=-1"#,
            "",
            "\"\"",
            ",,,;;",
        ] {
            let AltSvcHeader::Alternatives(alts) = parse(junk, at(0)) else {
                panic!("{junk}")
            };
            assert!(alts.iter().all(|a| a.port != 0), "{junk}: {alts:?}");
        }
        let huge = format!("h3=\":443\", {}", "x".repeat(MAX_HEADER_BYTES));
        assert_eq!(parse(&huge, at(0)), AltSvcHeader::Alternatives(Vec::new()));
        let AltSvcHeader::Alternatives(max) = parse(r#"h3=":1"; ma=99999999999999999999"#, at(0))
        else {
            panic!("not clear")
        };
        assert_eq!(max[0].expires, 86_400, "an unreadable ma keeps the default");
        let AltSvcHeader::Alternatives(year) = parse(r#"h3=":1"; ma=999999999999"#, at(0)) else {
            panic!("not clear")
        };
        assert_eq!(year[0].expires, MAX_MAX_AGE.as_secs(), "ma is clamped");
    }

    #[test]
    fn alternatives_expire_are_cleared_and_are_replaced() {
        let mut cache = AltSvcCache::default();
        let o = origin_key("Shop.test", 443);
        cache.record(&o, [r#"h3=":443"; ma=60"#], at(100));
        assert_eq!(cache.usable(&o, at(159)).map(|a| a.port), Some(443));
        assert_eq!(cache.usable(&o, at(160)), None, "expired at ma");
        cache.record(&o, [r#"h3=":8443""#], at(200));
        assert_eq!(cache.usable(&o, at(201)).map(|a| a.port), Some(8443));
        cache.record(&o, std::iter::empty(), at(202));
        assert!(
            cache.usable(&o, at(203)).is_some(),
            "no header changes nothing"
        );
        cache.record(&o, ["clear"], at(204));
        assert_eq!(cache.usable(&o, at(205)), None);
    }

    #[test]
    fn a_broken_alternative_backs_off_exponentially_and_is_forgiven_on_success() {
        let mut cache = AltSvcCache::default();
        let o = origin_key("shop.test", 443);
        cache.record(&o, [r#"h3=":443"; ma=31536000"#], at(0));
        let alt = cache.usable(&o, at(0)).expect("usable");
        assert_eq!(
            cache.mark_broken(&o, &alt, at(10)),
            Duration::from_secs(300)
        );
        assert_eq!(cache.usable(&o, at(309)), None);
        assert!(cache.usable(&o, at(310)).is_some());
        assert_eq!(
            cache.mark_broken(&o, &alt, at(310)),
            Duration::from_secs(600)
        );
        assert_eq!(
            cache.mark_broken(&o, &alt, at(910)),
            Duration::from_secs(1200)
        );
        for _ in 0..40 {
            cache.mark_broken(&o, &alt, at(1000));
        }
        assert_eq!(cache.mark_broken(&o, &alt, at(1000)), BROKEN_MAX);
        cache.confirm(&o, &alt);
        assert!(!cache.is_broken(&o, &alt, at(1001)));
        assert_eq!(
            cache.mark_broken(&o, &alt, at(1001)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn the_cache_stays_bounded_and_round_trips_through_a_snapshot() {
        let mut cache = AltSvcCache::default();
        for i in 0..(MAX_ORIGINS + 50) {
            cache.record(
                &origin_key(&format!("h{i}.test"), 443),
                [r#"h3=":443""#],
                at(i as u64),
            );
        }
        assert_eq!(cache.origins.len(), MAX_ORIGINS);
        let many = vec![r#"h3=":1""#; 100];
        cache.record("https://x.test:443", many, at(0));
        assert_eq!(cache.origins["https://x.test:443"].len(), MAX_ALTERNATIVES);
        let records = cache.export(at(1000));
        let mut back = AltSvcCache::default();
        back.import(&records);
        assert_eq!(back.export(at(1000)), records);
        assert!(
            cache.export(at(1_000_000)).is_empty(),
            "nothing expired is kept"
        );
    }
}
