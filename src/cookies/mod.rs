//! The cookie jar: where a cookie is accepted or rejected, and which cookies a request
//! carries.
//!
//! Storage and the RFC 6265 matching rules (domain, path, Secure, expiry, HttpOnly) are
//! `cookie_store`'s. On top of it this module enforces what browsers add and a crawler
//! needs, each in one named place:
//!
//! - [`admit`] (in `policy.rs`) is where a cookie is rejected, whichever way it
//!   arrives (a response, [`CookieJar::set`], an import, a snapshot): malformed,
//!   oversize, a Domain that is a public suffix (the bundled list of the `psl` crate),
//!   `SameSite=None` without `Secure`, `__Secure-`/`__Host-` prefix rules, a Lax or
//!   Strict cookie from a cross-site subresource, a tracking cookie under the opt-in
//!   [`TrackingFilter`]. Each rejection comes back as a [`CookieRejection`] with its
//!   [`RejectReason`]; the session counts them (`cookies_rejected` in its stats).
//! - [`CookieJar::header_for`] is where SameSite is enforced on the way out: a cross-site
//!   subresource request does not carry Lax or Strict cookies; a cross-site top-level GET
//!   navigation carries Lax but not Strict. Cookies without SameSite are Lax, as in
//!   Chromium.
//! - Limits ([`CookieLimits`]): past the per-site or total count the least recently set
//!   cookie is evicted.
//!
//! [`formats`] reads and writes Netscape `cookies.txt`, Playwright `storageState` and
//! the DevTools `Network.setCookies` shape.
//!
//! Why one file (about 620 lines of code, 380 of tests): the jar's bookkeeping (indexes
//! by domain, per-site counts, expiry) must stay consistent with `cookie_store` on
//! every insert and eviction, and is easiest to check in one place; the rules are
//! `policy.rs`, the file formats `formats.rs`.

pub mod formats;
mod policy;

use std::collections::HashMap;

use cookie::SameSite;
use cookie_store::{CookieDomain, CookiePath, CookieStore, RawCookie};
use serde::{Deserialize, Serialize};
use url::Url;

pub use self::policy::{
    admit, is_public_suffix, Admitted, CookieLimits, RejectReason, TrackingFilter, TRACKING_COOKIES,
};
use self::policy::{check_name_and_value, is_host_name};
use crate::error::{Error, Result};

/// How a request (or the response it gets) relates to the page that caused it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CookieContext {
    /// The request's site differs from the initiating document's site.
    pub cross_site: bool,
    /// The request is a top-level navigation (not a subresource or fetch).
    pub top_level_navigation: bool,
    /// The method is GET or HEAD.
    pub safe_method: bool,
}

impl CookieContext {
    /// A same-site context: every cookie applies.
    pub fn same_site() -> CookieContext {
        CookieContext {
            cross_site: false,
            top_level_navigation: true,
            safe_method: true,
        }
    }
}

/// SameSite as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SameSitePolicy {
    /// Only same-site requests.
    Strict,
    /// Same-site requests and cross-site top-level GET navigations.
    Lax,
    /// Every request (the cookie must be Secure).
    None,
}

/// One cookie as data: what snapshots and the import/export formats carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieRecord {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Domain, without a leading dot.
    pub domain: String,
    /// True when the cookie was set without a Domain attribute (sent to that exact host).
    pub host_only: bool,
    /// Path.
    pub path: String,
    /// Sent over https only.
    pub secure: bool,
    /// Not visible to page scripts.
    pub http_only: bool,
    /// SameSite, when the cookie set one.
    pub same_site: Option<SameSitePolicy>,
    /// Expiry as Unix seconds; `None` for a session cookie.
    #[serde(default, deserialize_with = "crate::json_int::opt_i64")]
    pub expires: Option<i64>,
}

impl CookieRecord {
    /// Bytes this cookie counts against the size limit (name plus value).
    pub fn size(&self) -> usize {
        self.name.len() + self.value.len()
    }
}

/// Why a `Set-Cookie` (or an imported cookie) was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieRejection {
    /// The cookie's name, when it could be parsed.
    pub name: Option<String>,
    /// The rule it broke (`Display` says it in words).
    pub reason: RejectReason,
}

impl std::fmt::Display for CookieRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "cookie `{n}` rejected: {}", self.reason),
            None => write!(f, "cookie rejected: {}", self.reason),
        }
    }
}

/// A browser-like cookie jar for one session.
#[derive(Clone, Debug, Default)]
pub struct CookieJar {
    store: CookieStore,
    limits: CookieLimits,
    tracking: TrackingFilter,
    /// Bookkeeping for every stored cookie, by (domain, path, name).
    index: HashMap<Key, Meta>,
    /// (path, name) of the cookies stored under each domain: a request looks only at
    /// its host and the host's parent domains instead of scanning the jar.
    by_domain: HashMap<String, HashMap<(String, String), Meta>>,
    /// Cookies per site (registrable domain), for the per-site limit.
    site_counts: HashMap<String, usize>,
    /// Cookies refused by [`admit`] (or the store's rules) since the jar was made.
    rejected: u64,
    /// Bytes of `name=value` over every stored cookie.
    bytes: usize,
    /// The earliest expiry among stored cookies (Unix seconds), when any expires.
    next_expiry: Option<i64>,
    next: u64,
    /// Bumped by every change to the stored cookies: what [`HeaderMemo`] checks.
    generation: u64,
    /// The last `Cookie` header worked out, for the next request to the same URL.
    memo: MemoCell,
}

/// The last `Cookie` header [`CookieJar::header_for`] worked out, and for what: a
/// session sending to the same URL again (an API it polls, a page it reloads) gets the
/// header back without matching every cookie again (with 50 cookies, three hash lookups
/// and a domain and path match each). It is used only while the jar is unchanged
/// (`generation`) and before any cookie in it can expire (`valid_until`).
#[derive(Clone, Debug)]
struct HeaderMemo {
    generation: u64,
    valid_until: Option<i64>,
    scheme: String,
    host: String,
    path: String,
    ctx: CookieContext,
    header: Option<String>,
}

impl HeaderMemo {
    fn answers(&self, generation: u64, url: &Url, ctx: CookieContext, now: i64) -> bool {
        self.generation == generation
            && self.valid_until.is_none_or(|t| t > now)
            && self.ctx == ctx
            && self.path == url.path()
            && self.host == url.host_str().unwrap_or_default()
            && self.scheme == url.scheme()
    }
}

/// The memo's cell: a jar is read under its session's lock, so this lock is never
/// contended; a copied jar starts without a memo.
#[derive(Debug, Default)]
struct MemoCell(std::sync::Mutex<Option<HeaderMemo>>);

impl Clone for MemoCell {
    fn clone(&self) -> Self {
        MemoCell::default()
    }
}

impl MemoCell {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<HeaderMemo>> {
        // A panic while holding it cannot leave a half-written memo that matters: the
        // next change of the jar or of the URL replaces it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Key = (String, String, String);

/// What the jar remembers about one stored cookie besides the cookie itself.
#[derive(Clone, Copy, Debug)]
struct Meta {
    /// Order in which cookies were last set: RFC 6265 sends older cookies first among
    /// equal paths, and eviction drops the oldest.
    seq: u64,
    size: usize,
    expires: Option<i64>,
}

impl CookieJar {
    /// An empty jar with default limits and no tracking filter.
    pub fn new() -> CookieJar {
        CookieJar::default()
    }

    /// An empty jar with these limits and tracking filter.
    pub fn with_policy(limits: CookieLimits, tracking: TrackingFilter) -> CookieJar {
        CookieJar {
            limits,
            tracking,
            ..CookieJar::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> CookieLimits {
        self.limits
    }

    /// Stores the cookies of one response's `Set-Cookie` values, received from `url` in
    /// `ctx`. Returns what was rejected and why; accepted cookies are stored even when
    /// others in the same response are rejected (as a browser does).
    pub fn store_response<'a>(
        &mut self,
        set_cookies: impl IntoIterator<Item = &'a str>,
        url: &Url,
        ctx: CookieContext,
    ) -> Vec<CookieRejection> {
        let mut rejected = Vec::new();
        for line in set_cookies {
            let stored = RawCookie::parse(line.to_string())
                .map_err(|e| CookieRejection {
                    name: None,
                    reason: RejectReason::Malformed(e.to_string()),
                })
                .and_then(|raw| self.store_one(raw, url, ctx));
            if let Err(r) = stored {
                tracing::debug!(url = %url, "{r}");
                rejected.push(r);
            }
        }
        self.rejected += rejected.len() as u64;
        rejected
    }

    /// How many cookies from responses this jar has rejected since it was made (or
    /// restored): each one's reason is logged at debug level as it happens.
    pub fn rejected_count(&self) -> u64 {
        self.rejected
    }

    /// Sets one cookie as if `url` had answered `Set-Cookie: line` to a same-site request.
    ///
    /// # Errors
    ///
    /// The rejection, as [`Error::is_invalid_input`].
    pub fn set(&mut self, url: &str, line: &str) -> Result<()> {
        let url = Url::parse(url).map_err(|e| Error::invalid_url(url, e))?;
        let raw = RawCookie::parse(line.to_string())
            .map_err(|e| Error::invalid_input(format!("malformed cookie `{line}`: {e}")))?;
        self.store_one(raw, &url, CookieContext::same_site())
            .map_err(|r| Error::invalid_input(r.to_string()))
    }

    fn store_one(
        &mut self,
        mut raw: RawCookie<'static>,
        url: &Url,
        ctx: CookieContext,
    ) -> std::result::Result<(), CookieRejection> {
        let name = raw.name().to_string();
        let reject = |reason: RejectReason| CookieRejection {
            name: Some(name.clone()),
            reason,
        };
        match admit(&raw, url, ctx, &self.limits, &self.tracking).map_err(reject)? {
            Admitted::AsSent => {}
            Admitted::HostOnly => raw.unset_domain(),
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        match self.store.insert_raw(&raw, url) {
            Ok(_) => {}
            // A cookie that arrives already expired deletes the stored one (or nothing).
            Err(cookie_store::CookieError::Expired) => {}
            Err(e) => return Err(reject(RejectReason::Store(e.to_string()))),
        }
        let domain = match CookieDomain::try_from(&raw) {
            Ok(CookieDomain::Suffix(d)) if !is_public_suffix(&d) => d,
            _ => host,
        };
        let path = raw
            .path()
            .and_then(CookiePath::parse)
            .unwrap_or_else(|| CookiePath::default_path(url));
        let key = (domain, String::from(&path), name);
        match self.store.get(&key.0, &key.1, &key.2) {
            Some(stored) => {
                let size = stored.name().len() + stored.value().len();
                let expires = match stored.expires {
                    cookie_store::CookieExpiration::AtUtc(t) => Some(t.unix_timestamp()),
                    cookie_store::CookieExpiration::SessionEnd => None,
                };
                self.remember(key.clone(), size, expires);
                self.enforce_limits(&key);
            }
            None => self.forget(&key),
        }
        Ok(())
    }

    /// Records `key` as set now.
    fn remember(&mut self, key: Key, size: usize, expires: Option<i64>) {
        self.generation += 1;
        self.next += 1;
        let meta = Meta {
            seq: self.next,
            size,
            expires,
        };
        if let Some(t) = expires {
            self.next_expiry = Some(self.next_expiry.map_or(t, |n| n.min(t)));
        }
        self.by_domain
            .entry(key.0.clone())
            .or_default()
            .insert((key.1.clone(), key.2.clone()), meta);
        match self.index.insert(key.clone(), meta) {
            Some(old) => self.bytes = self.bytes - old.size + size,
            None => {
                self.bytes += size;
                *self
                    .site_counts
                    .entry(site_of(&key.0).to_string())
                    .or_default() += 1;
            }
        }
    }

    /// Drops `key` from the bookkeeping (the store has already dropped the cookie).
    fn forget(&mut self, key: &Key) {
        self.generation += 1;
        let Some(old) = self.index.remove(key) else {
            return;
        };
        self.bytes -= old.size;
        let site = site_of(&key.0).to_string();
        if let Some(n) = self.site_counts.get_mut(&site) {
            *n -= 1;
            if *n == 0 {
                self.site_counts.remove(&site);
            }
        }
        if let Some(set) = self.by_domain.get_mut(&key.0) {
            set.remove(&(key.1.clone(), key.2.clone()));
            if set.is_empty() {
                self.by_domain.remove(&key.0);
            }
        }
    }

    /// Evicts until both count limits hold: first expired cookies, then the least
    /// recently set of `just_set`'s site (per-site limit) or of the jar (total limit).
    /// The cookie just set goes last. Cheap when no limit is exceeded (two lookups).
    fn enforce_limits(&mut self, just_set: &Key) {
        let site = site_of(&just_set.0).to_string();
        let over = |jar: &CookieJar| {
            jar.site_counts.get(&site).copied().unwrap_or(0) > jar.limits.max_per_site
                || jar.index.len() > jar.limits.max_total
        };
        if !over(self) {
            return;
        }
        self.remove_expired();
        while over(self) {
            let per_site =
                self.site_counts.get(&site).copied().unwrap_or(0) > self.limits.max_per_site;
            let victim = self
                .index
                .iter()
                .filter(|(k, _)| *k != just_set && (!per_site || site_of(&k.0) == site))
                .min_by_key(|(_, meta)| meta.seq)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            self.store.remove(&victim.0, &victim.1, &victim.2);
            self.forget(&victim);
        }
    }

    /// Drops cookies whose expiry has passed. Cheap (one comparison) until the earliest
    /// expiry is reached; then one pass over the jar.
    pub fn remove_expired(&mut self) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if self.next_expiry.is_none_or(|t| t > now) {
            return;
        }
        let expired: Vec<Key> = self
            .index
            .iter()
            .filter(|(_, m)| m.expires.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.store.remove(&k.0, &k.1, &k.2);
            self.forget(&k);
        }
        self.next_expiry = self.index.values().filter_map(|m| m.expires).min();
    }

    /// The `Cookie` header value for a request to `url` in `ctx` (`None` when no cookie
    /// applies): longer paths first, then older cookies first (RFC 6265 §5.4).
    pub fn header_for(&self, url: &Url, ctx: CookieContext) -> Option<String> {
        let now = time::OffsetDateTime::now_utc();
        let secs = now.unix_timestamp();
        if let Some(memo) = self.memo.slot().as_ref() {
            if memo.answers(self.generation, url, ctx, secs) {
                return memo.header.clone();
            }
        }
        let header = self.work_out_header(url, ctx, now);
        // Not while some cookie may have expired unnoticed (the jar purges on its own
        // schedule): then every request looks again.
        if self.next_expiry.is_none_or(|t| t > secs) {
            *self.memo.slot() = Some(HeaderMemo {
                generation: self.generation,
                valid_until: self.next_expiry,
                scheme: url.scheme().to_owned(),
                host: url.host_str().unwrap_or_default().to_owned(),
                path: url.path().to_owned(),
                ctx,
                header: header.clone(),
            });
        }
        header
    }

    fn work_out_header(
        &self,
        url: &Url,
        ctx: CookieContext,
        now: time::OffsetDateTime,
    ) -> Option<String> {
        // (path length, set order, name, value): one pass, no copy of any string.
        let mut cookies: Vec<(usize, u64, &str, &str)> = Vec::new();
        self.each_candidate(url, now, |meta, c| {
            if same_site_allows(c.same_site(), ctx) {
                let path: &str = c.path.as_ref();
                cookies.push((path.len(), meta.seq, c.name(), c.value()));
            }
        });
        if cookies.is_empty() {
            return None;
        }
        cookies.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out =
            String::with_capacity(cookies.iter().map(|c| c.2.len() + c.3.len() + 2).sum());
        for (i, (_, _, n, v)) in cookies.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            out.push_str(n);
            out.push('=');
            out.push_str(v);
        }
        Some(out)
    }

    /// Calls `found` with each unexpired cookie that matches `url` (domain, path,
    /// Secure), found through the host and its parent domains only. A cookie's expiry
    /// is looked at only when the jar's earliest expiry has passed (until then none can
    /// have expired): this runs on every request.
    fn each_candidate<'a>(
        &'a self,
        url: &Url,
        now: time::OffsetDateTime,
        mut found: impl FnMut(&'a Meta, &'a cookie_store::Cookie<'static>),
    ) {
        let may_have_expired = self.next_expiry.is_some_and(|t| t <= now.unix_timestamp());
        let mut domain = url.host_str().unwrap_or_default();
        loop {
            if let Some((d, keys)) = self.by_domain.get_key_value(domain) {
                for ((path, name), meta) in keys {
                    let Some(cookie) = self.store.get_any(d, path, name) else {
                        continue;
                    };
                    if !(may_have_expired && cookie.expires_by(&now)) && cookie.matches(url) {
                        found(meta, cookie);
                    }
                }
            }
            match domain.split_once('.') {
                Some((_, parent)) => domain = parent,
                None => break,
            }
        }
    }

    /// The cookies a same-site request to `url` would carry, as records.
    ///
    /// # Errors
    ///
    /// An unparsable URL.
    pub fn get(&self, url: &str) -> Result<Vec<CookieRecord>> {
        let url = Url::parse(url).map_err(|e| Error::invalid_url(url, e))?;
        let mut found: Vec<(u64, CookieRecord)> = Vec::new();
        let now = time::OffsetDateTime::now_utc();
        self.each_candidate(&url, now, |meta, c| found.push((meta.seq, record_of(c))));
        found.sort_by_key(|(seq, _)| *seq);
        Ok(found.into_iter().map(|(_, r)| r).collect())
    }

    /// Removes the cookie `name` set for `domain` and `path`; true when there was one.
    pub fn delete(&mut self, domain: &str, path: &str, name: &str) -> bool {
        let domain = domain.trim_start_matches('.').to_ascii_lowercase();
        self.forget(&(domain.clone(), path.to_string(), name.to_string()));
        self.store.remove(&domain, path, name).is_some()
    }

    /// Removes every cookie.
    pub fn clear(&mut self) {
        self.generation += 1;
        self.store.clear();
        self.index.clear();
        self.by_domain.clear();
        self.site_counts.clear();
        self.bytes = 0;
        self.next_expiry = None;
    }

    /// Every unexpired cookie, oldest first.
    pub fn records(&self) -> Vec<CookieRecord> {
        let mut all: Vec<(u64, CookieRecord)> = self
            .store
            .iter_unexpired()
            .map(|c| {
                let key = (
                    String::from(&c.domain),
                    String::from(&c.path),
                    c.name().to_string(),
                );
                (self.index.get(&key).map_or(0, |m| m.seq), record_of(c))
            })
            .collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, r)| r).collect()
    }

    /// Number of stored cookies. Constant time; cookies that expired since the last
    /// write count until [`CookieJar::remove_expired`] (which the session calls before
    /// reporting stats).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when the jar holds no cookie.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of `name=value` over every stored cookie. Constant time.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds cookies from records (an import or a snapshot). Every record is checked
    /// first; if any is invalid nothing is added. Records already expired are skipped
    /// and counted apart.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the first bad record by index and name.
    pub fn import(&mut self, records: &[CookieRecord]) -> Result<ImportedCookies> {
        let mut staged = self.clone();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut counted = ImportedCookies::default();
        for (i, record) in records.iter().enumerate() {
            // Expired since it was exported (a snapshot saved yesterday): gone, as in a
            // browser, not a reason to refuse the rest.
            if record.expires.is_some_and(|t| t <= now) {
                counted.expired += 1;
                continue;
            }
            counted.stored += 1;
            let (raw, url) = raw_cookie_of(record).map_err(|why| {
                Error::invalid_input(format!("cookie #{} `{}`: {why}", i + 1, record.name))
            })?;
            staged
                .store_one(raw, &url, CookieContext::same_site())
                .map_err(|r| {
                    Error::invalid_input(format!(
                        "cookie #{} `{}`: {}",
                        i + 1,
                        record.name,
                        r.reason
                    ))
                })?;
        }
        *self = staged;
        Ok(counted)
    }
}

/// What [`CookieJar::import`] did with the records it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportedCookies {
    /// Records stored (each replaces a cookie of the same name, domain and path).
    pub stored: usize,
    /// Records skipped because they had expired already.
    pub expired: usize,
}

/// SameSite on the way out (see the module documentation).
fn same_site_allows(policy: Option<SameSite>, ctx: CookieContext) -> bool {
    if !ctx.cross_site {
        return true;
    }
    match policy {
        Some(SameSite::None) => true,
        Some(SameSite::Strict) => false,
        // Lax, and no attribute (Lax by default).
        _ => ctx.top_level_navigation && ctx.safe_method,
    }
}

/// The registrable domain (eTLD+1) of `host`: the "site" of SameSite and of
/// `sec-fetch-site`. IP addresses and single labels are their own site.
pub fn site_of(host: &str) -> &str {
    if host.parse::<std::net::IpAddr>().is_ok()
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    {
        return host;
    }
    psl::domain_str(host).unwrap_or(host)
}

fn record_of(c: &cookie_store::Cookie<'static>) -> CookieRecord {
    let expires = match c.expires {
        cookie_store::CookieExpiration::AtUtc(t) => Some(t.unix_timestamp()),
        cookie_store::CookieExpiration::SessionEnd => None,
    };
    CookieRecord {
        name: c.name().to_string(),
        value: c.value().to_string(),
        domain: String::from(&c.domain),
        host_only: matches!(c.domain, CookieDomain::HostOnly(_)),
        path: String::from(&c.path),
        secure: c.secure().unwrap_or(false),
        http_only: c.http_only().unwrap_or(false),
        same_site: c.same_site().map(|s| match s {
            SameSite::Strict => SameSitePolicy::Strict,
            SameSite::Lax => SameSitePolicy::Lax,
            SameSite::None => SameSitePolicy::None,
        }),
        expires,
    }
}

/// The cookie and origin URL that recreate `r` in a jar.
fn raw_cookie_of(r: &CookieRecord) -> std::result::Result<(RawCookie<'static>, Url), String> {
    check_name_and_value(&r.name, &r.value)?;
    let domain = r.domain.trim_start_matches('.').to_ascii_lowercase();
    if !is_host_name(&domain) {
        return Err(format!("domain `{}` is not a host name", r.domain));
    }
    // The origin URL below is built from the domain itself, so the jar's own check
    // (a public-suffix Domain is refused unless it is the setting host) would pass it:
    // an imported `.com` cookie would go to every `.com` site.
    if !r.host_only && is_public_suffix(&domain) {
        return Err(format!("Domain={domain} is a public suffix"));
    }
    if !r.path.starts_with('/') {
        return Err(format!("path `{}` must start with /", r.path));
    }
    let url = Url::parse(&format!("https://{domain}{}", r.path))
        .map_err(|e| format!("domain `{}`: {e}", r.domain))?;
    let mut b = RawCookie::build((r.name.clone(), r.value.clone()))
        .path(r.path.clone())
        .secure(r.secure)
        .http_only(r.http_only);
    if !r.host_only {
        b = b.domain(domain);
    }
    if let Some(s) = r.same_site {
        b = b.same_site(match s {
            SameSitePolicy::Strict => SameSite::Strict,
            SameSitePolicy::Lax => SameSite::Lax,
            SameSitePolicy::None => SameSite::None,
        });
    }
    if let Some(t) = r.expires {
        let at = time::OffsetDateTime::from_unix_timestamp(t)
            .map_err(|_| format!("expiry {t} is out of range"))?;
        if at <= time::OffsetDateTime::now_utc() {
            return Err("already expired".into());
        }
        b = b.expires(at);
    }
    Ok((b.build(), url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn same() -> CookieContext {
        CookieContext::same_site()
    }

    /// The remembered header is the one a fresh look would give: after every kind of
    /// change to the jar, for another URL or context, and once a cookie has expired.
    #[test]
    fn the_remembered_header_never_outlives_what_it_was_made_from() {
        let mut jar = CookieJar::new();
        let page = url("https://shop.test/cart");
        let h = |jar: &CookieJar, u: &Url, ctx| jar.header_for(u, ctx);
        assert_eq!(h(&jar, &page, same()), None);
        jar.set("https://shop.test/", "a=1; Path=/").unwrap();
        assert_eq!(
            h(&jar, &page, same()).as_deref(),
            Some("a=1"),
            "a set is seen"
        );
        assert_eq!(
            h(&jar, &page, same()).as_deref(),
            Some("a=1"),
            "and remembered"
        );
        jar.set("https://shop.test/", "a=2; Path=/").unwrap();
        assert_eq!(
            h(&jar, &page, same()).as_deref(),
            Some("a=2"),
            "a replace is seen"
        );
        jar.set("https://shop.test/", "b=3; Path=/cart; SameSite=Strict")
            .unwrap();
        assert_eq!(h(&jar, &page, same()).as_deref(), Some("b=3; a=2"));
        assert_eq!(
            h(&jar, &page, CROSS_SUBRESOURCE),
            None,
            "another context is worked out (Lax by default, Strict: neither goes)"
        );
        assert_eq!(h(&jar, &page, same()).as_deref(), Some("b=3; a=2"));
        assert_eq!(
            h(&jar, &url("https://shop.test/"), same()).as_deref(),
            Some("a=2")
        );
        assert_eq!(
            h(&jar, &url("http://shop.test/cart"), same()).as_deref(),
            Some("b=3; a=2")
        );
        assert!(jar.delete("shop.test", "/cart", "b"));
        assert_eq!(
            h(&jar, &page, same()).as_deref(),
            Some("a=2"),
            "a delete is seen"
        );
        jar.set("https://shop.test/", "a=gone; Max-Age=0; Path=/")
            .unwrap();
        assert_eq!(
            h(&jar, &page, same()),
            None,
            "a deleting Set-Cookie is seen"
        );
        jar.set("https://shop.test/", "c=4; Path=/").unwrap();
        assert_eq!(h(&jar, &page, same()).as_deref(), Some("c=4"));
        jar.clear();
        assert_eq!(h(&jar, &page, same()), None, "a clear is seen");

        jar.set("https://shop.test/", "short=1; Max-Age=1; Path=/")
            .unwrap();
        jar.set("https://shop.test/", "long=2; Max-Age=3600; Path=/")
            .unwrap();
        assert_eq!(h(&jar, &page, same()).as_deref(), Some("short=1; long=2"));
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(
            h(&jar, &page, same()).as_deref(),
            Some("long=2"),
            "an expiry is seen without any change to the jar"
        );
        let copy = jar.clone();
        assert_eq!(h(&copy, &page, same()).as_deref(), Some("long=2"));
    }

    const CROSS_SUBRESOURCE: CookieContext = CookieContext {
        cross_site: true,
        top_level_navigation: false,
        safe_method: true,
    };
    const CROSS_NAVIGATION: CookieContext = CookieContext {
        cross_site: true,
        top_level_navigation: true,
        safe_method: true,
    };

    #[test]
    fn host_only_domain_path_and_secure() {
        let mut jar = CookieJar::new();
        // Default path is the directory of the request path: "/" here.
        let from = url("https://www.shop.test/login");
        let rejected = jar.store_response(
            [
                "host=1",
                "dom=2; Domain=shop.test",
                "deep=3; Path=/account",
                "sec=4; Secure",
            ],
            &from,
            same(),
        );
        assert!(rejected.is_empty(), "{rejected:?}");
        let h = |u: &str| jar.header_for(&url(u), same()).unwrap_or_default();
        assert_eq!(
            h("https://www.shop.test/account/x"),
            "deep=3; host=1; dom=2; sec=4"
        );
        assert_eq!(
            h("https://api.shop.test/"),
            "dom=2",
            "host-only stays on www"
        );
        assert_eq!(
            h("http://www.shop.test/"),
            "host=1; dom=2",
            "Secure needs https"
        );
        assert_eq!(h("https://other.test/"), "");
        assert_eq!(jar.len(), 4);
        assert_eq!(jar.size_bytes(), "host1dom2deep3sec4".len());
    }

    #[test]
    fn public_suffix_domains_are_rejected() {
        let mut jar = CookieJar::new();
        for (from, line) in [
            ("https://a.example.co.uk/", "x=1; Domain=co.uk"),
            ("https://me.github.io/", "x=1; Domain=github.io"),
            ("https://shop.test/", "x=1; Domain=test"),
        ] {
            let r = jar.store_response([line], &url(from), same());
            assert_eq!(r.len(), 1, "{line}");
            assert!(
                r[0].reason.to_string().contains("public suffix"),
                "{}",
                r[0]
            );
        }
        assert!(jar.is_empty());
        // Domain equal to the host is a host cookie, even on a suffix.
        assert!(jar
            .store_response(["x=1"], &url("https://github.io/"), same())
            .is_empty());
    }

    #[test]
    fn same_site_on_the_way_out() {
        let mut jar = CookieJar::new();
        let from = url("https://shop.test/");
        jar.store_response(
            [
                "strict=1; SameSite=Strict",
                "lax=2; SameSite=Lax",
                "default=3",
                "none=4; SameSite=None; Secure",
            ],
            &from,
            same(),
        );
        let to = url("https://shop.test/page");
        assert_eq!(
            jar.header_for(&to, same()).unwrap(),
            "strict=1; lax=2; default=3; none=4"
        );
        assert_eq!(
            jar.header_for(&to, CROSS_NAVIGATION).unwrap(),
            "lax=2; default=3; none=4"
        );
        assert_eq!(jar.header_for(&to, CROSS_SUBRESOURCE).unwrap(), "none=4");
        let post = CookieContext {
            safe_method: false,
            ..CROSS_NAVIGATION
        };
        assert_eq!(jar.header_for(&to, post).unwrap(), "none=4");
    }

    #[test]
    fn same_site_on_the_way_in() {
        let mut jar = CookieJar::new();
        let from = url("https://cdn.test/pixel");
        let r = jar.store_response(
            ["a=1", "b=2; SameSite=Lax", "c=3; SameSite=None; Secure"],
            &from,
            CROSS_SUBRESOURCE,
        );
        assert_eq!(r.len(), 2);
        assert_eq!(
            jar.records()
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["c"]
        );
        let r = jar.store_response(["d=4; SameSite=Strict"], &from, CROSS_NAVIGATION);
        assert!(
            r.is_empty(),
            "a top-level navigation may set Strict cookies"
        );
    }

    #[test]
    fn hostile_input_is_rejected_with_reasons() {
        let mut jar = CookieJar::new();
        let from = url("https://shop.test/");
        let big = format!("big={}", "x".repeat(5000));
        let r = jar.store_response(
            [
                big.as_str(),
                "=novalue",
                "none=1; SameSite=None",
                "__Host-x=1; Secure; Path=/; Domain=shop.test",
                "__Secure-y=1",
            ],
            &from,
            same(),
        );
        let reasons: Vec<String> = r.iter().map(|r| r.reason.to_string()).collect();
        assert_eq!(r.len(), 5, "{reasons:?}");
        assert!(reasons[0].contains("limit"));
        assert!(reasons[2].contains("requires Secure"));
        assert!(jar.is_empty());
        let r = jar.store_response(["s=1; Secure"], &url("http://shop.test/"), same());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn count_limits_evict_the_oldest() {
        let limits = CookieLimits {
            max_cookie_bytes: 4096,
            max_per_site: 3,
            max_total: 5,
        };
        let mut jar = CookieJar::with_policy(limits, TrackingFilter::Off);
        let a = url("https://a.shop.test/");
        for i in 0..5 {
            jar.store_response([format!("c{i}=1; Domain=shop.test").as_str()], &a, same());
        }
        let names: Vec<String> = jar.records().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["c2", "c3", "c4"], "per-site limit keeps the newest");
        for (i, host) in ["one.test", "two.test", "three.test"].iter().enumerate() {
            jar.store_response(
                [format!("x{i}=1").as_str()],
                &url(&format!("https://{host}/")),
                same(),
            );
        }
        assert_eq!(jar.len(), 5, "total limit");
        assert!(
            !jar.records().iter().any(|c| c.name == "c2"),
            "oldest overall went first"
        );
    }

    #[test]
    fn tracking_filter_drops_before_storing() {
        let mut jar = CookieJar::with_policy(CookieLimits::default(), TrackingFilter::Standard);
        let r = jar.store_response(
            ["_ga=GA1.1", "_gcl_au=1", "session=ok"],
            &url("https://shop.test/"),
            same(),
        );
        assert_eq!(r.len(), 2);
        assert_eq!(jar.len(), 1);
    }

    #[test]
    fn import_is_all_or_nothing_and_round_trips() {
        let mut jar = CookieJar::new();
        jar.store_response(
            [
                "a=1; Domain=shop.test; Path=/x; Max-Age=3600",
                "b=2; Secure; HttpOnly; SameSite=Strict",
            ],
            &url("https://shop.test/"),
            same(),
        );
        let records = jar.records();
        let mut copy = CookieJar::new();
        copy.import(&records).unwrap();
        assert_eq!(copy.records(), records);

        let mut bad = records.clone();
        bad.push(CookieRecord {
            name: "ok".into(),
            path: "nope".into(),
            ..records[0].clone()
        });
        let mut target = CookieJar::new();
        let err = target.import(&bad).unwrap_err().to_string();
        assert!(
            err.contains("cookie #3 `ok`") && err.contains("path"),
            "{err}"
        );
        assert!(target.is_empty(), "nothing partial is applied");
    }

    #[test]
    fn delete_and_clear() {
        let mut jar = CookieJar::new();
        jar.store_response(["a=1", "b=2"], &url("https://shop.test/"), same());
        assert!(jar.delete("shop.test", "/", "a"));
        assert!(!jar.delete("shop.test", "/", "a"));
        assert_eq!(jar.get("https://shop.test/").unwrap().len(), 1);
        jar.clear();
        assert!(jar.is_empty());
    }

    #[test]
    fn sites() {
        assert_eq!(site_of("www.shop.test"), "shop.test");
        assert_eq!(site_of("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(site_of("127.0.0.1"), "127.0.0.1");
        assert_eq!(site_of("localhost"), "localhost");
    }

    #[test]
    fn what_a_server_may_set_survives_export_and_import() {
        let mut jar = CookieJar::new();
        let from = url("https://shop.test/");
        let rejected = jar.store_response(
            [
                "foo bar=baz",
                "utf=caf\u{e9} \u{2603}",
                "tab=a\tb",
                "empty=",
                "d=1; Domain=.shop.test; Path=/x",
            ],
            &from,
            same(),
        );
        assert!(rejected.is_empty(), "{rejected:?}");
        let records = jar.records();
        assert_eq!(records.len(), 5);
        let mut back = CookieJar::new();
        back.import(&records).unwrap();
        assert_eq!(back.records(), records);
        let header = back
            .header_for(&url("https://shop.test/x"), same())
            .unwrap();
        assert!(
            header.contains("foo bar=baz") && header.contains("caf\u{e9}"),
            "{header}"
        );
    }

    #[test]
    fn a_domain_with_spaces_inside_is_not_a_domain() {
        let mut jar = CookieJar::new();
        let from = url("https://www.home.example.org/");
        let r = jar.store_response(["a=1; domain=  .  home.example.org"], &from, same());
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].reason.to_string().contains("not a host name"),
            "{}",
            r[0]
        );
        assert!(jar.is_empty());
    }

    #[test]
    fn a_public_suffix_domain_equal_to_its_host_is_host_only_and_round_trips() {
        // Found by the set_cookie fuzz target: the jar took `Domain=intranet` from
        // http://intranet/ as a domain cookie, and its own records then failed to import.
        for (from, line) in [
            ("http://intranet/", "a=b; Domain=intranet"),
            ("https://[::1]/x/", "c=d; Domain=[::1]"),
        ] {
            let mut jar = CookieJar::new();
            let from = url(from);
            assert!(
                jar.store_response([line], &from, same()).is_empty(),
                "{line}"
            );
            let records = jar.records();
            assert_eq!(records.len(), 1, "{line}");
            assert!(records[0].host_only, "{line}: {:?}", records[0]);
            let mut again = CookieJar::new();
            again.import(&records).unwrap();
            assert!(again.header_for(&from, same()).is_some(), "{line}");
        }
    }

    #[test]
    fn an_imported_public_suffix_domain_is_refused() {
        let record = |domain: &str, host_only: bool| CookieRecord {
            name: "id".into(),
            value: "1".into(),
            domain: domain.into(),
            host_only,
            path: "/".into(),
            secure: true,
            http_only: false,
            same_site: None,
            expires: None,
        };
        let mut jar = CookieJar::new();
        for domain in [".com", "com", "co.uk", ".github.io"] {
            let err = jar.import(&[record(domain, false)]).unwrap_err();
            assert!(err.to_string().contains("public suffix"), "{domain}: {err}");
        }
        assert!(jar.is_empty());
        jar.import(&[record(".shop.com", false)]).unwrap();
        assert!(jar.header_for(&url("https://other.com/"), same()).is_none());
        assert!(jar
            .header_for(&url("https://a.shop.com/"), same())
            .is_some());
    }

    #[test]
    fn a_record_that_expired_since_its_export_is_dropped_not_refused() {
        let mut jar = CookieJar::new();
        let from = url("https://shop.test/");
        assert!(jar
            .store_response(["keep=1", "old=2; Max-Age=3600"], &from, same())
            .is_empty());
        let mut records = jar.records();
        for r in &mut records {
            if r.name == "old" {
                r.expires = Some(1);
            }
        }
        let mut back = CookieJar::new();
        back.import(&records).unwrap();
        let names: Vec<String> = back.records().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["keep"]);
    }

    proptest::proptest! {
        /// Whatever the jar takes from a server, an export of it imports again, equal.
        #[test]
        fn any_cookie_the_jar_stores_round_trips(
            name in "[ -~\t\u{80}-\u{2fff}]{1,12}",
            value in "[ -~\t\u{80}-\u{2fff}]{0,24}",
            attrs in proptest::sample::subsequence(
                vec!["; Secure", "; HttpOnly", "; Path=/a", "; Domain=shop.test", "; SameSite=Lax", "; Max-Age=60"],
                0..=6,
            ),
        ) {
            let line = format!("{name}={value}{}", attrs.concat());
            let mut jar = CookieJar::new();
            jar.store_response([line.as_str()], &url("https://www.shop.test/a/b"), same());
            let records = jar.records();
            let mut back = CookieJar::new();
            back.import(&records).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{line:?}: {e}")))?;
            proptest::prop_assert_eq!(back.records(), records);
        }
    }
}
