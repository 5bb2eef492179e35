//! What the jar accepts: [`admit`], the one place a cookie is accepted or rejected
//! (with a [`RejectReason`] per rule), the size and count limits, and the opt-in
//! tracking-cookie filter.
//!
//! Pure data and predicates, no I/O and no jar state; the jar in [`super::CookieJar`]
//! applies them, then `cookie_store`'s RFC 6265 rules (the Domain must match the URL).

use cookie::SameSite;
use cookie_store::RawCookie;
use serde::{Deserialize, Serialize};
use url::Url;

use super::CookieContext;

/// What [`admit`] makes of a cookie it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Store it as it was sent.
    AsSent,
    /// Store it without its Domain, as a host-only cookie: its Domain is a public
    /// suffix equal to the request host (`intranet`, `[::1]`), which RFC 6265 5.3
    /// step 5 and Chromium treat so.
    HostOnly,
}

/// Why a cookie was rejected: one variant per rule. `Display` says it in words.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The `Set-Cookie` line did not parse (the parser's words).
    Malformed(String),
    /// The name or value holds a character a cookie may not (which, in words).
    Characters(&'static str),
    /// `name=value` is over [`CookieLimits::max_cookie_bytes`].
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Dropped by the [`TrackingFilter`].
    Tracking,
    /// A `Secure` cookie sent over plain http.
    SecureOverHttp,
    /// `SameSite=None` without `Secure`.
    SameSiteNoneWithoutSecure,
    /// A `__Secure-` name without `Secure`.
    SecurePrefix,
    /// A `__Host-` name without `Secure` or `Path=/`, or with a Domain.
    HostPrefix,
    /// The Domain attribute is not a host name.
    DomainNotAHostName(String),
    /// The Domain attribute is a public suffix other than the request's host.
    PublicSuffix(String),
    /// A Lax or Strict cookie set by a cross-site subresource.
    CrossSiteSubresource,
    /// Refused by `cookie_store`'s RFC 6265 rules (a Domain the URL is not in, say).
    Store(String),
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::Malformed(e) => write!(f, "malformed Set-Cookie ({e})"),
            RejectReason::Characters(why) => f.write_str(why),
            RejectReason::TooLarge { size, limit } => {
                write!(f, "{size} bytes is over the {limit}-byte limit per cookie")
            }
            RejectReason::Tracking => f.write_str("tracking cookie dropped by the tracking filter"),
            RejectReason::SecureOverHttp => f.write_str("Secure cookie set over plain http"),
            RejectReason::SameSiteNoneWithoutSecure => f.write_str("SameSite=None requires Secure"),
            RejectReason::SecurePrefix => f.write_str("__Secure- prefix requires Secure"),
            RejectReason::HostPrefix => {
                f.write_str("__Host- prefix requires Secure, Path=/ and no Domain")
            }
            RejectReason::DomainNotAHostName(d) => write!(f, "Domain=`{d}` is not a host name"),
            RejectReason::PublicSuffix(d) => write!(f, "Domain={d} is a public suffix"),
            RejectReason::CrossSiteSubresource => {
                f.write_str("a cross-site subresource cannot set a Lax or Strict cookie")
            }
            RejectReason::Store(e) => f.write_str(e),
        }
    }
}

/// Whether a cookie `raw`, received from `url` in `ctx`, may be stored under `limits`
/// and `tracking`: every rule browsers add to RFC 6265, in the order a reader would
/// check them. The first rule broken is the reason.
///
/// # Errors
///
/// The [`RejectReason`] of the first rule the cookie breaks.
pub fn admit(
    raw: &RawCookie<'_>,
    url: &Url,
    ctx: CookieContext,
    limits: &CookieLimits,
    tracking: &TrackingFilter,
) -> Result<Admitted, RejectReason> {
    let name = raw.name();
    check_name_and_value(name, raw.value()).map_err(RejectReason::Characters)?;
    let size = name.len() + raw.value().len();
    if size > limits.max_cookie_bytes {
        return Err(RejectReason::TooLarge {
            size,
            limit: limits.max_cookie_bytes,
        });
    }
    if tracking.drops(name) {
        return Err(RejectReason::Tracking);
    }
    let secure = raw.secure().unwrap_or(false);
    if secure && url.scheme() != "https" {
        return Err(RejectReason::SecureOverHttp);
    }
    if raw.same_site() == Some(SameSite::None) && !secure {
        return Err(RejectReason::SameSiteNoneWithoutSecure);
    }
    if name.starts_with("__Secure-") && !secure {
        return Err(RejectReason::SecurePrefix);
    }
    if name.starts_with("__Host-") && (!secure || raw.domain().is_some() || raw.path() != Some("/"))
    {
        return Err(RejectReason::HostPrefix);
    }
    let mut admitted = Admitted::AsSent;
    if let Some(domain) = raw.domain() {
        let domain = domain.trim_start_matches('.').to_ascii_lowercase();
        if !is_host_name(&domain) {
            return Err(RejectReason::DomainNotAHostName(domain));
        }
        if is_public_suffix(&domain) {
            let host = url.host_str().unwrap_or_default();
            if !domain.eq_ignore_ascii_case(host) {
                return Err(RejectReason::PublicSuffix(domain));
            }
            admitted = Admitted::HostOnly;
        }
    }
    if ctx.cross_site && !ctx.top_level_navigation && raw.same_site() != Some(SameSite::None) {
        return Err(RejectReason::CrossSiteSubresource);
    }
    Ok(admitted)
}

/// The characters a cookie's name and value may hold, whichever way it arrives (a
/// response, an import, a snapshot), so whatever the jar stores it can also restore.
/// As browsers parse (RFC 6265bis §5.6): no control characters but tab, no `;`, no `=`
/// in the name, the name not empty; spaces inside and UTF-8 are kept.
pub(super) fn check_name_and_value(name: &str, value: &str) -> Result<(), &'static str> {
    let control = |b: u8| (b < b' ' && b != b'\t') || b == 0x7f;
    if name.is_empty() {
        return Err("empty name");
    }
    if name.bytes().any(|b| control(b) || b == b';' || b == b'=') {
        return Err("name has a control character, `;` or `=`");
    }
    if value.bytes().any(|b| control(b) || b == b';') {
        return Err("value has a control character or `;`");
    }
    Ok(())
}

/// A host name a cookie's Domain can be: letters, digits, `-`, `_` and dots (IDNs in
/// their ASCII form), or an IP address.
pub(super) fn is_host_name(domain: &str) -> bool {
    let name_like = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !domain.contains("..");
    name_like
        || domain
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
}

/// True when `domain` is exactly a public suffix (`com`, `co.uk`, `github.io`, or an
/// unlisted top-level name such as `test`, by the list's `*` rule).
pub fn is_public_suffix(domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    psl::suffix_str(domain) == Some(domain)
}

/// Bounds that keep a hostile site from growing the jar without limit. The defaults are
/// Chromium's: 4096 bytes per cookie (name plus value), 180 cookies per site
/// (registrable domain), 3000 in all. Past a count limit the least recently set cookie
/// of that site (or of the whole jar) is evicted, as browsers do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieLimits {
    /// Largest `name=value` in bytes; a bigger cookie is rejected.
    pub max_cookie_bytes: usize,
    /// Most cookies per registrable domain.
    pub max_per_site: usize,
    /// Most cookies in the jar.
    pub max_total: usize,
}

impl Default for CookieLimits {
    fn default() -> Self {
        CookieLimits {
            max_cookie_bytes: 4096,
            max_per_site: 180,
            max_total: 3000,
        }
    }
}

/// Cookie names dropped by [`TrackingFilter::Standard`]: analytics and advertising
/// identifiers that a crawler has no use for and that make every visit look tracked.
/// Exact names; entries ending in `*` are prefixes.
pub const TRACKING_COOKIES: &[&str] = &[
    // Google Analytics / Ads
    "_ga",
    "_ga_*",
    "_gid",
    "_gat",
    "_gat_*",
    "_gcl_*",
    "__utma",
    "__utmb",
    "__utmc",
    "__utmt",
    "__utmz",
    "__utmv",
    "utm_*",
    "IDE",
    "DSID",
    // Meta
    "_fbp",
    "_fbc",
    "fr",
    // Microsoft / Bing / Clarity
    "_uetsid",
    "_uetvid",
    "MUID",
    "_clck",
    "_clsk",
    // HubSpot
    "__hstc",
    "__hssc",
    "__hssrc",
    "hubspotutk",
    // Hotjar
    "_hjid",
    "_hjSession_*",
    "_hjSessionUser_*",
    // TikTok, Pinterest, LinkedIn, Twitter/X
    "_ttp",
    "_pin_unauth",
    "li_fat_id",
    "bcookie",
    "personalization_id",
    // Adobe
    "s_cc",
    "s_sq",
    "s_vi",
    "s_fid",
];

/// The opt-in policy that drops tracking cookies before they are stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingFilter {
    /// Keep every cookie (the default: a browser keeps them too).
    #[default]
    Off,
    /// Drop the names in [`TRACKING_COOKIES`].
    Standard,
    /// Drop [`TRACKING_COOKIES`] and these extra names (`*` suffix for prefixes).
    Custom(Vec<String>),
}

impl TrackingFilter {
    /// True when a cookie called `name` is to be dropped.
    pub fn drops(&self, name: &str) -> bool {
        let matches = |pattern: &str| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        };
        match self {
            TrackingFilter::Off => false,
            TrackingFilter::Standard => TRACKING_COOKIES.iter().any(|p| matches(p)),
            TrackingFilter::Custom(extra) => {
                TRACKING_COOKIES.iter().any(|p| matches(p)) || extra.iter().any(|p| matches(p))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule of `admit` on its own: the reason named, and the cookie that keeps
    /// the rule accepted.
    #[test]
    fn admit_names_the_rule_each_cookie_breaks() {
        let https = Url::parse("https://shop.example/a").unwrap();
        let http = Url::parse("http://shop.example/a").unwrap();
        let same = CookieContext::same_site();
        let sub = CookieContext {
            cross_site: true,
            top_level_navigation: false,
            safe_method: true,
        };
        let limits = CookieLimits {
            max_cookie_bytes: 16,
            ..CookieLimits::default()
        };
        let off = TrackingFilter::Off;
        let check = |line: &str, url: &Url, ctx: CookieContext, tracking: &TrackingFilter| {
            admit(
                &RawCookie::parse(line).unwrap(),
                url,
                ctx,
                &limits,
                tracking,
            )
        };
        use RejectReason as R;
        for (line, url, ctx, want) in [
            ("a=1", &https, same, Ok(Admitted::AsSent)),
            (
                "a=\u{1}",
                &https,
                same,
                Err(R::Characters("value has a control character or `;`")),
            ),
            (
                "a=0123456789abcdef",
                &https,
                same,
                Err(R::TooLarge {
                    size: 17,
                    limit: 16,
                }),
            ),
            ("a=1; Secure", &http, same, Err(R::SecureOverHttp)),
            ("a=1; Secure", &https, same, Ok(Admitted::AsSent)),
            (
                "a=1; SameSite=None",
                &https,
                same,
                Err(R::SameSiteNoneWithoutSecure),
            ),
            ("__Secure-a=1", &https, same, Err(R::SecurePrefix)),
            (
                "__Host-a=1; Secure; Path=/x",
                &https,
                same,
                Err(R::HostPrefix),
            ),
            (
                "__Host-a=1; Secure; Path=/",
                &https,
                same,
                Ok(Admitted::AsSent),
            ),
            (
                "a=1; Domain=sh op.example",
                &https,
                same,
                Err(R::DomainNotAHostName("sh op.example".into())),
            ),
            (
                "a=1; Domain=example",
                &https,
                same,
                Err(R::PublicSuffix("example".into())),
            ),
            (
                "a=1; Domain=.shop.example",
                &https,
                same,
                Ok(Admitted::AsSent),
            ),
            ("a=1", &https, sub, Err(R::CrossSiteSubresource)),
            (
                "a=1; SameSite=None; Secure",
                &https,
                sub,
                Ok(Admitted::AsSent),
            ),
        ] {
            assert_eq!(check(line, url, ctx, &off), want, "{line} from {url}");
        }
        // A public-suffix Domain equal to the host is kept as a host-only cookie.
        let intranet = Url::parse("http://intranet/").unwrap();
        assert_eq!(
            check("a=1; Domain=intranet", &intranet, same, &off),
            Ok(Admitted::HostOnly)
        );
        assert_eq!(
            check("_ga=1", &https, same, &TrackingFilter::Standard),
            Err(R::Tracking)
        );
        assert_eq!(
            R::TooLarge {
                size: 17,
                limit: 16
            }
            .to_string(),
            "17 bytes is over the 16-byte limit per cookie"
        );
    }

    #[test]
    fn tracking_filter_matches_names_and_prefixes() {
        let f = TrackingFilter::Standard;
        for name in ["_ga", "_ga_ABC123", "_gid", "_fbp", "_gcl_au", "utm_source"] {
            assert!(f.drops(name), "{name}");
        }
        for name in ["session", "_gax", "csrftoken", "ga"] {
            assert!(!f.drops(name), "{name}");
        }
        assert!(!TrackingFilter::Off.drops("_ga"));
        let custom = TrackingFilter::Custom(vec!["ab_test*".into()]);
        assert!(custom.drops("ab_test_42") && custom.drops("_gid"));
    }
}
