//! Cookie import and export formats: Netscape `cookies.txt` (curl, wget, browser
//! extensions), Playwright's `storageState` JSON, and the Chrome DevTools Protocol
//! `Network.setCookies` parameters (import also reads `Network.getAllCookies` results).
//!
//! Pure text in, records out (and back): [`super::CookieJar::import`] applies the
//! records all-or-nothing. Every parse error names the line (Netscape) or the field path
//! (JSON), and nothing is returned from input with any error in it.
//!
//! Domain conventions, the same in all three: a leading dot means a domain cookie (sent
//! to subdomains), no dot a host-only cookie.

use serde::{Deserialize, Serialize};

use super::{CookieRecord, SameSitePolicy};
use crate::error::{Error, Result};

/// A cookie file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieFormat {
    /// Netscape `cookies.txt`.
    Netscape,
    /// Playwright `storageState` JSON.
    Playwright,
    /// DevTools `Network.setCookies` parameters JSON.
    Cdp,
}

impl std::str::FromStr for CookieFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "netscape" => Ok(Self::Netscape),
            "playwright" => Ok(Self::Playwright),
            "cdp" => Ok(Self::Cdp),
            other => Err(Error::invalid_input(format!(
                "unknown cookie format `{other}`; expected netscape, playwright or cdp"
            ))),
        }
    }
}

/// Parses `text` in `format`.
///
/// # Errors
///
/// [`Error::is_invalid_input`] naming the line or field that is wrong.
pub fn parse(format: CookieFormat, text: &str) -> Result<Vec<CookieRecord>> {
    match format {
        CookieFormat::Netscape => parse_netscape(text),
        CookieFormat::Playwright => parse_playwright(text),
        CookieFormat::Cdp => parse_cdp(text),
    }
}

/// Writes `cookies` in `format`.
pub fn write(format: CookieFormat, cookies: &[CookieRecord]) -> String {
    match format {
        CookieFormat::Netscape => to_netscape(cookies),
        CookieFormat::Playwright => to_playwright(cookies),
        CookieFormat::Cdp => to_cdp(cookies),
    }
}

// ===== Netscape =====

const HTTP_ONLY_PREFIX: &str = "#HttpOnly_";

/// Parses a Netscape `cookies.txt`: seven tab-separated fields per line, `#` comments,
/// `#HttpOnly_` before the domain of an HttpOnly cookie, expiry 0 for session cookies.
///
/// # Errors
///
/// The first bad line, by number, and what is wrong with it.
pub fn parse_netscape(text: &str) -> Result<Vec<CookieRecord>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        let (line, http_only) = match line.strip_prefix(HTTP_ONLY_PREFIX) {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: String| Error::invalid_input(format!("cookies.txt line {line_no}: {why}"));
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 7 {
            return Err(bad(format!(
                "expected 7 tab-separated fields, found {}",
                fields.len()
            )));
        }
        let flag = |v: &str, what: &str| match v {
            "TRUE" => Ok(true),
            "FALSE" => Ok(false),
            other => Err(bad(format!("{what} must be TRUE or FALSE, not `{other}`"))),
        };
        let include_subdomains = flag(fields[1], "include-subdomains")?;
        let secure = flag(fields[3], "secure")?;
        let expiry: i64 = fields[4]
            .parse()
            .map_err(|_| bad(format!("expiry `{}` is not a number", fields[4])))?;
        let domain = fields[0];
        if domain.is_empty() {
            return Err(bad("empty domain".into()));
        }
        out.push(CookieRecord {
            name: fields[5].to_string(),
            value: fields[6].to_string(),
            domain: domain.trim_start_matches('.').to_string(),
            host_only: !include_subdomains && !domain.starts_with('.'),
            path: fields[2].to_string(),
            secure,
            http_only,
            same_site: None,
            expires: (expiry != 0).then_some(expiry),
        });
    }
    Ok(out)
}

/// Writes a Netscape `cookies.txt`.
pub fn to_netscape(cookies: &[CookieRecord]) -> String {
    let mut out = String::from("# Netscape HTTP Cookie File\n# Written by mummer.\n\n");
    for c in cookies {
        let domain = if c.host_only {
            c.domain.clone()
        } else {
            format!(".{}", c.domain)
        };
        let tf = |b: bool| if b { "TRUE" } else { "FALSE" };
        out.push_str(&format!(
            "{}{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            if c.http_only { HTTP_ONLY_PREFIX } else { "" },
            domain,
            tf(!c.host_only),
            c.path,
            tf(c.secure),
            c.expires.unwrap_or(0),
            c.name,
            c.value
        ));
    }
    out
}

// ===== Playwright storageState =====

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StorageState {
    cookies: Vec<PlaywrightCookie>,
    #[serde(default)]
    origins: Vec<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlaywrightCookie {
    name: String,
    value: String,
    domain: String,
    path: String,
    /// Unix seconds; -1 for a session cookie.
    expires: f64,
    http_only: bool,
    secure: bool,
    same_site: SameSiteName,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
enum SameSiteName {
    Strict,
    Lax,
    None,
}

impl From<SameSiteName> for SameSitePolicy {
    fn from(s: SameSiteName) -> Self {
        match s {
            SameSiteName::Strict => SameSitePolicy::Strict,
            SameSiteName::Lax => SameSitePolicy::Lax,
            SameSiteName::None => SameSitePolicy::None,
        }
    }
}

fn same_site_name(s: Option<SameSitePolicy>) -> SameSiteName {
    match s {
        Some(SameSitePolicy::Strict) => SameSiteName::Strict,
        Some(SameSitePolicy::None) => SameSiteName::None,
        // Chromium treats a cookie without SameSite as Lax; Playwright says so too.
        Some(SameSitePolicy::Lax) | None => SameSiteName::Lax,
    }
}

fn from_json<'a, T: Deserialize<'a>>(text: &'a str, what: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de)
        .map_err(|e| Error::invalid_input(format!("{what}: field `{}`: {}", e.path(), e.inner())))
}

fn expiry_of(expires: f64) -> Option<i64> {
    (expires >= 0.0).then_some(expires as i64)
}

/// Parses Playwright's `storageState` JSON (its `cookies`; `origins` is ignored).
///
/// # Errors
///
/// The field path that does not match the format.
pub fn parse_playwright(text: &str) -> Result<Vec<CookieRecord>> {
    let state: StorageState = from_json(text, "storageState")?;
    Ok(state
        .cookies
        .into_iter()
        .map(|c| CookieRecord {
            host_only: !c.domain.starts_with('.'),
            domain: c.domain.trim_start_matches('.').to_string(),
            name: c.name,
            value: c.value,
            path: c.path,
            secure: c.secure,
            http_only: c.http_only,
            same_site: Some(c.same_site.into()),
            expires: expiry_of(c.expires),
        })
        .collect())
}

/// Writes Playwright's `storageState` JSON with no `origins`.
pub fn to_playwright(cookies: &[CookieRecord]) -> String {
    let state = StorageState {
        cookies: cookies
            .iter()
            .map(|c| PlaywrightCookie {
                name: c.name.clone(),
                value: c.value.clone(),
                domain: if c.host_only {
                    c.domain.clone()
                } else {
                    format!(".{}", c.domain)
                },
                path: c.path.clone(),
                expires: c.expires.map_or(-1.0, |e| e as f64),
                http_only: c.http_only,
                secure: c.secure,
                same_site: same_site_name(c.same_site),
            })
            .collect(),
        origins: Vec::new(),
    };
    serde_json::to_string_pretty(&state).unwrap_or_default()
}

// ===== DevTools protocol =====

#[derive(Serialize, Deserialize)]
struct CdpCookies {
    cookies: Vec<CdpCookie>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdpCookie {
    name: String,
    value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default)]
    secure: bool,
    #[serde(default)]
    http_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    same_site: Option<SameSiteName>,
    /// Unix seconds; absent or negative for a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<f64>,
}

/// Parses `Network.setCookies` parameters (`{"cookies": [...]}`), a
/// `Network.getAllCookies` result (same shape, extra fields ignored), or a bare array.
///
/// # Errors
///
/// The field path that does not match, or a cookie with neither `url` nor `domain`.
pub fn parse_cdp(text: &str) -> Result<Vec<CookieRecord>> {
    let cookies: Vec<CdpCookie> = if text.trim_start().starts_with('[') {
        from_json(text, "CDP cookies")?
    } else {
        from_json::<CdpCookies>(text, "CDP cookies")?.cookies
    };
    cookies
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (domain, host_only, url_path) = match (&c.domain, &c.url) {
                (Some(d), _) => (
                    d.trim_start_matches('.').to_string(),
                    !d.starts_with('.'),
                    None,
                ),
                (None, Some(u)) => {
                    let url = url::Url::parse(u).map_err(|e| {
                        Error::invalid_input(format!("CDP cookies: field `cookies[{i}].url`: {e}"))
                    })?;
                    let host = url.host_str().unwrap_or_default().to_string();
                    (host, true, Some(url.path().to_string()))
                }
                (None, None) => {
                    return Err(Error::invalid_input(format!(
                        "CDP cookies: field `cookies[{i}]`: needs `url` or `domain`"
                    )))
                }
            };
            Ok(CookieRecord {
                name: c.name,
                value: c.value,
                domain,
                host_only,
                path: c.path.or(url_path).unwrap_or_else(|| "/".into()),
                secure: c.secure,
                http_only: c.http_only,
                same_site: c.same_site.map(Into::into),
                expires: c.expires.and_then(expiry_of),
            })
        })
        .collect()
}

/// Writes `Network.setCookies` parameters: host-only cookies by `url` (so Chromium
/// keeps them host-only), domain cookies by `.domain`.
pub fn to_cdp(cookies: &[CookieRecord]) -> String {
    let out = CdpCookies {
        cookies: cookies
            .iter()
            .map(|c| {
                let scheme = if c.secure { "https" } else { "http" };
                CdpCookie {
                    name: c.name.clone(),
                    value: c.value.clone(),
                    url: c
                        .host_only
                        .then(|| format!("{scheme}://{}{}", c.domain, c.path)),
                    domain: (!c.host_only).then(|| format!(".{}", c.domain)),
                    path: Some(c.path.clone()),
                    secure: c.secure,
                    http_only: c.http_only,
                    same_site: c.same_site.map(|s| same_site_name(Some(s))),
                    expires: c.expires.map(|e| e as f64),
                }
            })
            .collect(),
    };
    serde_json::to_string_pretty(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<CookieRecord> {
        vec![
            CookieRecord {
                name: "sid".into(),
                value: "abc".into(),
                domain: "shop.test".into(),
                host_only: true,
                path: "/".into(),
                secure: true,
                http_only: true,
                same_site: Some(SameSitePolicy::Lax),
                expires: Some(4_102_444_800),
            },
            CookieRecord {
                name: "pref".into(),
                value: "dark".into(),
                domain: "shop.test".into(),
                host_only: false,
                path: "/account".into(),
                secure: false,
                http_only: false,
                same_site: None,
                expires: None,
            },
        ]
    }

    #[test]
    fn every_format_round_trips() {
        for format in [
            CookieFormat::Netscape,
            CookieFormat::Playwright,
            CookieFormat::Cdp,
        ] {
            let text = write(format, &sample());
            let back = parse(format, &text).unwrap();
            assert_eq!(back.len(), 2, "{format:?}");
            for (a, b) in sample().iter().zip(&back) {
                assert_eq!(
                    (&a.name, &a.value, &a.domain, a.host_only, &a.path),
                    (&b.name, &b.value, &b.domain, b.host_only, &b.path),
                    "{format:?}"
                );
                assert_eq!((a.secure, a.expires), (b.secure, b.expires), "{format:?}");
            }
            assert!(back[0].http_only, "{format:?}");
        }
    }

    #[test]
    fn netscape_errors_name_the_line() {
        let text =
            "# comment\nshop.test\tFALSE\t/\tFALSE\t0\ta\tb\nshop.test\tMAYBE\t/\tFALSE\t0\ta\tb\n";
        let err = parse_netscape(text).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("MAYBE"), "{err}");
        let err = parse_netscape("shop.test\tFALSE\t/\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("7 tab-separated"),
            "{err}"
        );
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = parse_playwright(r#"{"cookies":[{"name":"a","value":"b","domain":"x.test","path":"/","expires":-1,"httpOnly":false,"secure":"yes","sameSite":"Lax"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cookies[0].secure"), "{err}");
        let err = parse_cdp(r#"{"cookies":[{"name":"a","value":"b"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cookies[0]") && err.contains("url"), "{err}");
    }

    #[test]
    fn cdp_reads_get_all_cookies_output() {
        let text = r#"{"cookies":[{"name":"a","value":"1","domain":".shop.test","path":"/","expires":-1,"size":2,"httpOnly":false,"secure":false,"session":true,"priority":"Medium","sameParty":false,"sourceScheme":"Secure","sourcePort":443}]}"#;
        let got = parse_cdp(text).unwrap();
        assert_eq!(got[0].domain, "shop.test");
        assert!(!got[0].host_only);
        assert_eq!(got[0].expires, None);
    }
}
