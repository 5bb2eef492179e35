//! What the jar accepts: size and count limits, and the opt-in tracking-cookie filter.
//!
//! Pure data and predicates; the jar in [`super::CookieJar`] applies them.

use serde::{Deserialize, Serialize};

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
