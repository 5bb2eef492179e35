//! The conditional-request cache: validators (ETag, Last-Modified) per URL, and
//! optionally the body, so a `304 Not Modified` is served as the cached `200`.
//!
//! RFC 9111 freshness, storability, `Vary` and the 304 header merge are
//! `http-cache-semantics`' (as a private, single-user cache, like a browser's). This
//! module owns the rest: what is kept (entry count and body bytes bounded, least recently
//! used evicted first), which conditional headers go out (`If-None-Match` and
//! `If-Modified-Since`, both when both validators exist, as Chromium sends them), and
//! the snapshot form. No I/O: the session asks [`ConditionalCache::lookup`] before a GET
//! and reports with [`ConditionalCache::update`] after it.

use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How much the cache keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// Most URLs with validators; the least recently used goes first.
    pub max_entries: usize,
    /// Keep bodies too, so a 304 comes back as the cached 200 and a fresh entry is
    /// served without a request.
    pub store_bodies: bool,
    /// Most body bytes kept over all entries (a bigger body is not kept).
    pub max_body_bytes: usize,
}

/// The most entries a cache may be configured for: a snapshot or an API caller sizes
/// the cache, so the size is bounded (entries are allocated as they come, never ahead).
pub const MAX_CACHE_ENTRIES: usize = 1_000_000;
/// The most body bytes a cache may be configured to keep.
pub const MAX_CACHE_BODY_BYTES: usize = 1 << 30;

impl CacheConfig {
    /// Checks the limits (a snapshot's `cache_config` is untrusted input).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the field above its bound
    /// ([`MAX_CACHE_ENTRIES`], [`MAX_CACHE_BODY_BYTES`]).
    pub fn validate(&self) -> Result<()> {
        if self.max_entries > MAX_CACHE_ENTRIES {
            return Err(Error::invalid_input(format!(
                "cache_config.max_entries {} is above {MAX_CACHE_ENTRIES}",
                self.max_entries
            )));
        }
        if self.max_body_bytes > MAX_CACHE_BODY_BYTES {
            return Err(Error::invalid_input(format!(
                "cache_config.max_body_bytes {} is above {MAX_CACHE_BODY_BYTES}",
                self.max_body_bytes
            )));
        }
        Ok(())
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 1000,
            store_bodies: false,
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A response the cache can answer with.
#[derive(Clone, Debug)]
pub struct CachedResponse {
    /// The stored status (200 for a revalidated entry).
    pub status: StatusCode,
    /// The stored headers, updated by the latest 304.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The stored body.
    pub body: Bytes,
}

/// What to do before sending a GET.
#[derive(Debug)]
pub enum Lookup {
    /// Nothing stored: send as is.
    Miss,
    /// Stored, fresh, with a body: answer without a request.
    Fresh(CachedResponse),
    /// Stored: send with these conditional headers.
    Revalidate(Vec<(HeaderName, HeaderValue)>),
}

struct Entry {
    policy: CachePolicy,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
}

/// One entry as data, for snapshots.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The URL.
    pub url: String,
    /// The RFC 9111 state of the stored response.
    #[serde(deserialize_with = "finite_policy")]
    pub policy: CachePolicy,
    /// The stored response headers in order.
    pub headers: Vec<(String, String)>,
    /// The stored body, base64, when bodies are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A stored policy as read back, refused when a number in it is not finite: JSON has
/// no infinity, so `"cache_heuristic": 1e39` (an `f32` overflow) would read as
/// infinite and then be written as `null`, a snapshot that no longer loads.
fn finite_policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CachePolicy, D::Error> {
    use serde::de::Error as _;
    let policy = <CachePolicy as serde::Deserialize>::deserialize(d)?;
    let value = serde_json::to_value(&policy).map_err(D::Error::custom)?;
    if !value["opts"]["cache_heuristic"].is_number() {
        return Err(D::Error::custom(
            "opts.cache_heuristic is not a finite number",
        ));
    }
    Ok(policy)
}

/// The per-session conditional cache.
pub struct ConditionalCache {
    config: CacheConfig,
    entries: LruCache<String, Entry>,
    body_bytes: usize,
}

impl std::fmt::Debug for ConditionalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionalCache")
            .field("entries", &self.entries.len())
            .field("body_bytes", &self.body_bytes)
            .finish()
    }
}

fn options() -> CacheOptions {
    CacheOptions {
        shared: false,
        ..CacheOptions::default()
    }
}

fn to_map(headers: &[(HeaderName, HeaderValue)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (n, v) in headers {
        map.append(n.clone(), v.clone());
    }
    map
}

fn response_parts(
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
) -> http::response::Parts {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.headers = to_map(headers);
    parts
}

impl ConditionalCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> ConditionalCache {
        ConditionalCache {
            config,
            // Unbounded and capped by `insert`: `LruCache::new(n)` allocates n slots up
            // front, which a configured size must never do.
            entries: LruCache::unbounded(),
            body_bytes: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// Number of URLs with validators.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Body bytes held.
    pub fn body_bytes(&self) -> usize {
        self.body_bytes
    }

    /// Drops every entry (validators and bodies).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.body_bytes = 0;
    }

    /// What to do before sending `req` (a GET) for `url`.
    pub fn lookup(&mut self, url: &str, req: &http::request::Parts, now: SystemTime) -> Lookup {
        let Some(entry) = self.entries.get(url) else {
            return Lookup::Miss;
        };
        match entry.policy.before_request(req, now) {
            BeforeRequest::Fresh(parts) => match &entry.body {
                Some(body) => Lookup::Fresh(CachedResponse {
                    status: parts.status,
                    headers: entry.headers.clone(),
                    body: body.clone(),
                }),
                None => Lookup::Revalidate(validators(&entry.headers)),
            },
            BeforeRequest::Stale { matches: false, .. } => Lookup::Miss,
            BeforeRequest::Stale { .. } => Lookup::Revalidate(validators(&entry.headers)),
        }
    }

    /// Whether `url` has an entry (without marking it used).
    pub fn holds(&self, url: &str) -> bool {
        self.entries.contains(url)
    }

    /// Whether an answer with `status` and `headers` could be kept at all: a `304`, or
    /// one with a validator or explicit freshness (`Cache-Control`, `Expires`;
    /// heuristic freshness needs `Last-Modified`, a validator). Checked before any
    /// policy is worked out, so most answers cost two scans of their header names:
    /// the policy's parse was a twentieth of every request's cost.
    pub fn may_keep(status: StatusCode, headers: &[(HeaderName, HeaderValue)]) -> bool {
        status == StatusCode::NOT_MODIFIED
            || headers.iter().any(|(n, _)| {
                n == http::header::ETAG
                    || n == http::header::LAST_MODIFIED
                    || n == http::header::CACHE_CONTROL
                    || n == http::header::EXPIRES
            })
    }

    /// Records the answer to `req` for `url`. Returns the cached response to hand back
    /// instead of a `304`, when the body is stored.
    pub fn update(
        &mut self,
        url: &str,
        req: &http::request::Parts,
        status: StatusCode,
        headers: &[(HeaderName, HeaderValue)],
        body: &Bytes,
        now: SystemTime,
    ) -> Option<CachedResponse> {
        if status == StatusCode::NOT_MODIFIED {
            let resp = response_parts(status, headers);
            let entry = self.entries.get_mut(url)?;
            return match entry.policy.after_response(req, &resp, now) {
                AfterResponse::NotModified(policy, parts) => {
                    entry.policy = policy;
                    // Headers from the 304 replace the stored ones of the same name.
                    for (name, value) in &entry.headers.clone() {
                        if let Some(new) = parts.headers.get(name) {
                            if new != value {
                                entry.headers.retain(|(n, _)| n != name);
                                entry.headers.push((name.clone(), new.clone()));
                            }
                        }
                    }
                    entry.body.as_ref().map(|b| CachedResponse {
                        status: StatusCode::OK,
                        headers: entry.headers.clone(),
                        body: b.clone(),
                    })
                }
                AfterResponse::Modified(..) => {
                    self.remove(url);
                    None
                }
            };
        }
        let has_validator = headers
            .iter()
            .any(|(n, _)| n == http::header::ETAG || n == http::header::LAST_MODIFIED);
        if !ConditionalCache::may_keep(status, headers) {
            self.remove(url);
            return None;
        }
        let resp = response_parts(status, headers);
        let policy = CachePolicy::new_options(req, &resp, now, options());
        if !policy.is_storable() || !(has_validator || policy.time_to_live(now).as_secs() > 0) {
            self.remove(url);
            return None;
        }
        let body = (self.config.store_bodies && body.len() <= self.config.max_body_bytes)
            .then(|| body.clone());
        self.insert(
            url.to_string(),
            Entry {
                policy,
                headers: headers.to_vec(),
                body,
            },
        );
        None
    }

    /// Stores `entry` as the most recently used, then evicts the least recently used
    /// until both limits hold.
    fn insert(&mut self, url: String, entry: Entry) {
        self.remove(&url);
        self.body_bytes += entry.body.as_ref().map_or(0, Bytes::len);
        self.entries.push(url, entry);
        let max_entries = self.config.max_entries.max(1);
        while self.entries.len() > max_entries || self.body_bytes > self.config.max_body_bytes {
            match self.entries.pop_lru() {
                Some((_, e)) => self.body_bytes -= e.body.as_ref().map_or(0, Bytes::len),
                None => break,
            }
        }
    }

    fn remove(&mut self, url: &str) {
        if let Some(e) = self.entries.pop(url) {
            self.body_bytes -= e.body.as_ref().map_or(0, Bytes::len);
        }
    }

    /// Every entry as data, least recently used first.
    pub fn export(&self) -> Vec<CacheRecord> {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.entries
            .iter()
            .rev()
            .map(|(url, e)| CacheRecord {
                url: url.clone(),
                policy: e.policy.clone(),
                headers: e
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body: e.body.as_ref().map(|b| b64.encode(b)),
            })
            .collect()
    }

    /// Replaces the contents with `records`, all or nothing.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the first bad record's URL.
    pub fn import(&mut self, records: &[CacheRecord]) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut fresh = ConditionalCache::new(self.config);
        for r in records {
            let bad = |why: String| Error::invalid_input(format!("cache entry {}: {why}", r.url));
            let headers = r
                .headers
                .iter()
                .map(|(n, v)| {
                    Ok((
                        HeaderName::from_bytes(n.as_bytes())
                            .map_err(|_| bad(format!("header name `{n}`")))?,
                        HeaderValue::from_str(v).map_err(|_| bad(format!("value of `{n}`")))?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let body = match &r.body {
                Some(b) => Some(Bytes::from(
                    b64.decode(b).map_err(|e| bad(format!("body: {e}")))?,
                )),
                None => None,
            };
            fresh.insert(
                r.url.clone(),
                Entry {
                    policy: r.policy.clone(),
                    headers,
                    body,
                },
            );
        }
        *self = fresh;
        Ok(())
    }
}

/// The conditional headers for a stored response: `If-None-Match` from its ETag and
/// `If-Modified-Since` from its Last-Modified, in that order.
fn validators(stored: &[(HeaderName, HeaderValue)]) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some((_, etag)) = stored.iter().find(|(n, _)| n == http::header::ETAG) {
        out.push((http::header::IF_NONE_MATCH, etag.clone()));
    }
    if let Some((_, lm)) = stored
        .iter()
        .find(|(n, _)| n == http::header::LAST_MODIFIED)
    {
        out.push((http::header::IF_MODIFIED_SINCE, lm.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> http::request::Parts {
        http::Request::get(url).body(()).unwrap().into_parts().0
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(HeaderName, HeaderValue)> {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    const URL: &str = "https://shop.test/a";

    #[test]
    fn validators_then_304_served_as_200() {
        let mut c = ConditionalCache::new(CacheConfig {
            store_bodies: true,
            ..CacheConfig::default()
        });
        let now = SystemTime::now();
        let req = get(URL);
        let headers = h(&[
            ("etag", "\"v1\""),
            ("last-modified", "Mon, 02 Nov 2026 10:00:00 GMT"),
            ("cache-control", "no-cache"),
        ]);
        assert!(c
            .update(
                URL,
                &req,
                StatusCode::OK,
                &headers,
                &Bytes::from_static(b"page"),
                now
            )
            .is_none());
        let Lookup::Revalidate(cond) = c.lookup(URL, &req, now) else {
            panic!("expected a revalidation")
        };
        let names: Vec<&str> = cond.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["if-none-match", "if-modified-since"]);
        let served = c
            .update(
                URL,
                &req,
                StatusCode::NOT_MODIFIED,
                &h(&[("etag", "\"v1\"")]),
                &Bytes::new(),
                now,
            )
            .expect("the stored body comes back");
        assert_eq!(
            (served.status, &served.body[..]),
            (StatusCode::OK, &b"page"[..])
        );
    }

    #[test]
    fn fresh_entries_answer_without_a_request_only_with_bodies() {
        let now = SystemTime::now();
        let req = get(URL);
        let headers = h(&[("cache-control", "max-age=600"), ("etag", "\"x\"")]);
        let mut with = ConditionalCache::new(CacheConfig {
            store_bodies: true,
            ..CacheConfig::default()
        });
        with.update(
            URL,
            &req,
            StatusCode::OK,
            &headers,
            &Bytes::from_static(b"b"),
            now,
        );
        assert!(matches!(with.lookup(URL, &req, now), Lookup::Fresh(_)));
        let mut without = ConditionalCache::new(CacheConfig::default());
        without.update(
            URL,
            &req,
            StatusCode::OK,
            &headers,
            &Bytes::from_static(b"b"),
            now,
        );
        assert!(matches!(
            without.lookup(URL, &req, now),
            Lookup::Revalidate(_)
        ));
        assert_eq!(without.body_bytes(), 0);
    }

    #[test]
    fn no_store_and_no_validator_are_not_kept() {
        let now = SystemTime::now();
        let req = get(URL);
        let mut c = ConditionalCache::new(CacheConfig::default());
        c.update(
            URL,
            &req,
            StatusCode::OK,
            &h(&[("etag", "\"1\""), ("cache-control", "no-store")]),
            &Bytes::new(),
            now,
        );
        c.update(
            "https://shop.test/b",
            &req,
            StatusCode::OK,
            &h(&[]),
            &Bytes::new(),
            now,
        );
        assert!(c.is_empty());
    }

    /// Explicit freshness alone (no validator) still keeps a body, and a later answer
    /// with neither freshness nor validator drops what was kept for that URL.
    #[test]
    fn freshness_without_validators_is_kept_and_a_plain_answer_drops_it() {
        let now = SystemTime::now();
        let req = get(URL);
        let mut c = ConditionalCache::new(CacheConfig {
            store_bodies: true,
            ..CacheConfig::default()
        });
        for fresh in [
            h(&[("cache-control", "max-age=600")]),
            h(&[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")]),
        ] {
            c.update(
                URL,
                &req,
                StatusCode::OK,
                &fresh,
                &Bytes::from_static(b"b"),
                now,
            );
            assert!(
                matches!(c.lookup(URL, &req, now), Lookup::Fresh(_)),
                "{fresh:?}"
            );
            c.update(
                URL,
                &req,
                StatusCode::OK,
                &h(&[]),
                &Bytes::from_static(b"b"),
                now,
            );
            assert!(c.is_empty(), "the plain answer replaced it");
        }
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let now = SystemTime::now();
        let mut c = ConditionalCache::new(CacheConfig {
            max_entries: 3,
            store_bodies: true,
            max_body_bytes: 10,
        });
        for i in 0..5 {
            let url = format!("https://shop.test/{i}");
            c.update(
                &url,
                &get(&url),
                StatusCode::OK,
                &h(&[("etag", "\"e\"")]),
                &Bytes::from_static(b"1234"),
                now,
            );
        }
        assert_eq!(c.len(), 2, "3 entries of 4 bytes exceed 10 bytes");
        assert!(c.body_bytes() <= 10);
        let records = c.export();
        let mut back = ConditionalCache::new(c.config());
        back.import(&records).unwrap();
        assert_eq!((back.len(), back.body_bytes()), (c.len(), c.body_bytes()));
        c.clear();
        assert_eq!((c.len(), c.body_bytes()), (0, 0));
    }

    #[test]
    fn an_import_larger_than_the_limits_keeps_the_most_recent_within_them() {
        let now = SystemTime::now();
        let mut big = ConditionalCache::new(CacheConfig {
            max_entries: 10,
            store_bodies: true,
            max_body_bytes: 100,
        });
        for i in 0..10 {
            let url = format!("https://shop.test/{i}");
            let body = Bytes::from_static(b"0123456789");
            big.update(
                &url,
                &get(&url),
                StatusCode::OK,
                &h(&[("etag", "\"e\"")]),
                &body,
                now,
            );
        }
        let mut small = ConditionalCache::new(CacheConfig {
            max_entries: 3,
            store_bodies: true,
            max_body_bytes: 25,
        });
        small.import(&big.export()).unwrap();
        assert_eq!((small.len(), small.body_bytes()), (2, 20));
        let kept: Vec<String> = small.export().into_iter().map(|r| r.url).collect();
        assert_eq!(kept, ["https://shop.test/8", "https://shop.test/9"]);
    }

    #[test]
    fn a_configured_size_is_bounded_and_never_allocated_ahead() {
        let huge = CacheConfig {
            max_entries: 1_000_000_000,
            ..CacheConfig::default()
        };
        let err = huge.validate().unwrap_err();
        assert!(err.to_string().contains("max_entries"), "{err}");
        let too_many_bytes = CacheConfig {
            max_body_bytes: usize::MAX,
            ..CacheConfig::default()
        };
        assert!(too_many_bytes.validate().is_err());
        // Even unvalidated, building one allocates nothing for its size.
        let c = ConditionalCache::new(CacheConfig {
            max_entries: usize::MAX,
            ..CacheConfig::default()
        });
        assert!(c.is_empty());
    }
}
