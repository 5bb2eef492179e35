//! Browser profiles as data: everything a server can observe about one browser build.
//!
//! A [`Profile`] describes the TLS ClientHello (through [`TlsProfile`]), the HTTP/2
//! connection preface and HEADERS frames ([`Http2Profile`]), HTTP/1.1 header case
//! ([`Http1Profile`]) and, for every [`RequestKind`], the header set, order and values
//! ([`RequestTemplate`]). Profiles are plain serde data: the built-in ones live as JSON
//! files in `src/profile/builtin/` and a user can load their own from a JSON
//! file with [`Profile::from_file`]. See `docs/profiles.md` for the format and where
//! each value comes from.
//!
//! This module owns lookup by name ([`Profile::named`]), aliases and validation. It does
//! no I/O beyond reading a profile file; the TLS connector is built in [`crate::tls`],
//! the HTTP/2 builder in [`crate::h2`], and the header list in [`headers`].

mod headers;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use self::headers::{render_headers, HeaderTemplate};
use crate::error::{Error, Result};

/// A browser profile: the whole observable fingerprint of one browser build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The profile's name, e.g. `chrome-156-windows`.
    pub name: String,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
    /// Browser family (`chrome`, `chromium`, `firefox`, ...), informational.
    pub browser: String,
    /// Browser major version, informational.
    pub version: String,
    /// Platform the profile pretends to run on (`linux`, `windows`, `macos`, `android`).
    pub platform: String,
    /// Where each value comes from (captures, documented browser behaviour).
    #[serde(default)]
    pub sources: Vec<String>,
    /// The `User-Agent` this profile sends.
    pub user_agent: String,
    /// The TLS ClientHello.
    pub tls: TlsProfile,
    /// The HTTP/2 connection preface and HEADERS frames.
    pub http2: Http2Profile,
    /// HTTP/1.1 specifics (header case).
    pub http1: Http1Profile,
    /// Header set, order and values for each kind of request.
    pub requests: BTreeMap<RequestKind, RequestTemplate>,
    /// High-entropy client hints (`sec-ch-ua-full-version-list`, `sec-ch-ua-arch`, ...)
    /// and their values, sent to an origin after it asks for them with `Accept-CH`.
    /// Empty for browsers without client hints (Firefox).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub client_hints: BTreeMap<String, String>,
}

/// Every knob of the ClientHello that a profile sets.
///
/// Code points are written as hex strings (`"0x1301"`) exactly as a packet capture
/// shows them, so a profile can be checked against a capture by eye.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsProfile {
    /// Lowest TLS version offered: `"1.2"` or `"1.3"`.
    pub min_version: String,
    /// Highest TLS version offered: `"1.2"` or `"1.3"`.
    pub max_version: String,
    /// Send GREASE values (RFC 8701) in ciphers, extensions, groups, versions and sigalgs.
    pub grease: bool,
    /// Shuffle the extension order on every handshake, as Chromium does.
    pub permute_extensions: bool,
    /// Cipher suites in order (GREASE excluded: it is added by `grease`).
    pub cipher_suites: Vec<CodePoint>,
    /// supported_groups in order.
    pub groups: Vec<CodePoint>,
    /// Groups that get a key share in the first ClientHello, in order.
    pub key_shares: Vec<CodePoint>,
    /// signature_algorithms in order.
    pub signature_algorithms: Vec<CodePoint>,
    /// ALPN protocol ids in order.
    pub alpn: Vec<String>,
    /// ALPS (application_settings), if the browser sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alps: Option<AlpsProfile>,
    /// Certificate compression algorithms offered (`brotli`, `zlib`, `zstd`), in order.
    pub cert_compression: Vec<CertCompression>,
    /// Send a GREASE encrypted_client_hello extension.
    pub ech_grease: bool,
    /// Payload of the trust_anchors extension (0xca34) as hex, if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_anchors: Option<String>,
    /// Send status_request (OCSP stapling).
    pub ocsp_stapling: bool,
    /// Send signed_certificate_timestamp.
    pub signed_cert_timestamps: bool,
    /// Offer session tickets and resume with them.
    pub session_tickets: bool,
    /// record_size_limit the browser sends. BoringSSL cannot send it: recorded for
    /// truth and reported by `mummer profile show`, not put on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_size_limit: Option<u16>,
    /// delegated_credentials signature schemes. Not producible with BoringSSL (see above).
    #[serde(default)]
    pub delegated_credentials: Vec<CodePoint>,
    /// Finite-field groups the browser lists. Not producible with BoringSSL (see above).
    #[serde(default)]
    pub ffdhe_groups: Vec<CodePoint>,
}

/// ALPS (TLS application_settings) as the profile sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlpsProfile {
    /// Protocols that get an (empty) settings entry.
    pub protocols: Vec<String>,
    /// Use the new codepoint 17613 (0x44cd) instead of 17513 (0x4469).
    pub new_codepoint: bool,
}

/// A certificate compression algorithm (RFC 8879).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertCompression {
    /// zlib, id 1.
    Zlib,
    /// brotli, id 2.
    Brotli,
    /// zstd, id 3.
    Zstd,
}

/// The HTTP/2 connection a profile opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Profile {
    /// SETTINGS in wire order.
    pub settings: Vec<(Http2Setting, u32)>,
    /// Increment of the connection-level WINDOW_UPDATE sent after SETTINGS.
    pub connection_window_increment: u32,
    /// Order of the four request pseudo-headers, e.g. `[":method", ":authority", ":scheme", ":path"]`.
    pub pseudo_header_order: Vec<String>,
    /// Id of the first request stream (Chromium 1, Firefox 3).
    pub initial_stream_id: u32,
    /// Send each cookie pair as its own `cookie` field (RFC 9113 §8.2.3), as browsers do.
    pub cookie_crumbling: bool,
}

/// A SETTINGS identifier, by its RFC 9113 name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Http2Setting {
    HeaderTableSize,
    EnablePush,
    MaxConcurrentStreams,
    InitialWindowSize,
    MaxFrameSize,
    MaxHeaderListSize,
}

impl Http2Setting {
    /// The setting's numeric id on the wire.
    pub fn id(self) -> u16 {
        match self {
            Self::HeaderTableSize => 1,
            Self::EnablePush => 2,
            Self::MaxConcurrentStreams => 3,
            Self::InitialWindowSize => 4,
            Self::MaxFrameSize => 5,
            Self::MaxHeaderListSize => 6,
        }
    }
}

/// HTTP/1.1 specifics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http1Profile {
    /// Wire spelling of header names (lower-case name -> as sent); names not listed go
    /// out lower-case, as Chromium sends `sec-ch-ua`.
    pub header_case: BTreeMap<String, String>,
    /// Headers of the request template that are not sent over HTTP/1.1.
    #[serde(default)]
    pub drop_headers: Vec<String>,
}

/// What a request is for; picks the header template and HTTP/2 priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// A top-level document load (typing a URL, following a link).
    Navigation,
    /// `fetch()` from a page.
    Fetch,
    /// `XMLHttpRequest` from a page.
    Xhr,
    /// `<img>`.
    Image,
    /// `<script>`.
    Script,
    /// `<link rel=stylesheet>`.
    Style,
    /// A web font.
    Font,
}

impl RequestKind {
    /// Every kind, in a stable order.
    pub const ALL: [RequestKind; 7] = [
        Self::Navigation,
        Self::Fetch,
        Self::Xhr,
        Self::Image,
        Self::Script,
        Self::Style,
        Self::Font,
    ];

    /// The lower-case name used in profiles and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Navigation => "navigation",
            Self::Fetch => "fetch",
            Self::Xhr => "xhr",
            Self::Image => "image",
            Self::Script => "script",
            Self::Style => "style",
            Self::Font => "font",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "unknown request kind `{s}`; expected one of navigation, fetch, xhr, image, script, style, font"
                ))
            })
    }
}

/// Header set, order and values of one request kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTemplate {
    /// Where this template comes from (captured, or derived and how).
    #[serde(default)]
    pub source: String,
    /// HEADERS frame priority for this kind.
    pub priority: Http2Priority,
    /// Regular headers in wire order. A `null` value is a slot: the header is sent at
    /// this position only when the request supplies it (`referer`, `origin`, `cookie`,
    /// `content-type`, `content-length`).
    pub headers: Vec<(String, Option<String>)>,
}

/// The priority block of a HEADERS frame (RFC 9113 §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Priority {
    /// The E flag.
    pub exclusive: bool,
    /// Stream this one depends on.
    pub depends_on: u32,
    /// Weight as seen on the wire plus one (1..=256).
    pub weight: u16,
}

/// A TLS code point written as `"0x1301"` in profile files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodePoint(pub u16);

impl Serialize for CodePoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{:04x}", self.0))
    }
}

impl<'de> Deserialize<'de> for CodePoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let hex = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or_else(|| {
                serde::de::Error::custom(format!("code point `{s}` must look like 0x1301"))
            })?;
        u16::from_str_radix(hex, 16).map(CodePoint).map_err(|_| {
            serde::de::Error::custom(format!("code point `{s}` is not a 16-bit hex number"))
        })
    }
}

// ===== built-in profiles =====

/// Built-in profiles: name and JSON text, compiled into the binary.
const BUILTIN: &[(&str, &str)] = &[
    (
        "chromium-156-linux",
        include_str!("builtin/chromium-156-linux.json"),
    ),
    (
        "chrome-156-linux",
        include_str!("builtin/chrome-156-linux.json"),
    ),
    (
        "chrome-156-windows",
        include_str!("builtin/chrome-156-windows.json"),
    ),
    (
        "chrome-156-macos",
        include_str!("builtin/chrome-156-macos.json"),
    ),
    (
        "chrome-156-android",
        include_str!("builtin/chrome-156-android.json"),
    ),
    (
        "firefox-153-linux",
        include_str!("builtin/firefox-153-linux.json"),
    ),
    (
        "firefox-153-windows",
        include_str!("builtin/firefox-153-windows.json"),
    ),
    (
        "firefox-153-macos",
        include_str!("builtin/firefox-153-macos.json"),
    ),
];

/// Aliases and the explicit profile each resolves to. They never depend on the host OS,
/// so a crawl behaves the same on a laptop and on a Linux server.
pub const ALIASES: &[(&str, &str)] = &[
    ("chrome-latest", "chrome-156-windows"),
    ("firefox-latest", "firefox-153-windows"),
];

impl Profile {
    /// Looks up a built-in profile or alias by name.
    ///
    /// # Errors
    ///
    /// [`Error::is_unknown_profile`] when no profile has that name; the message lists the
    /// closest names.
    pub fn named(name: &str) -> Result<Profile> {
        let target = ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, target)| *target);
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == target)
            .ok_or_else(|| Error::unknown_profile(name, closest_names(name)))?;
        Profile::from_json(text).map_err(|e| {
            Error::invalid_profile(format!("built-in profile {target}"), e.to_string())
        })
    }

    /// Resolves `spec` as a built-in name or alias, or, when it names an existing file
    /// (or contains a path separator or ends in `.json`), as a profile file.
    ///
    /// # Errors
    ///
    /// Unknown names and malformed files, see [`Profile::named`] and [`Profile::from_file`].
    pub fn resolve(spec: &str) -> Result<Profile> {
        let looks_like_path =
            spec.contains('/') || spec.ends_with(".json") || Path::new(spec).is_file();
        if looks_like_path {
            Profile::from_file(spec)
        } else {
            Profile::named(spec)
        }
    }

    /// Reads a profile from a JSON file.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_profile`] naming the file and the field (with line and column)
    /// that is wrong, or an I/O error if the file cannot be read.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Profile> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid_profile(
                path.display().to_string(),
                format!("cannot read the file: {e}"),
            )
        })?;
        let profile = Profile::from_json(&text)
            .map_err(|e| Error::invalid_profile(path.display().to_string(), e.to_string()))?;
        profile
            .validate()
            .map_err(|e| Error::invalid_profile(path.display().to_string(), e))?;
        Ok(profile)
    }

    /// Parses a profile from JSON text, naming the field path of any error.
    pub fn from_json(text: &str) -> std::result::Result<Profile, ProfileParseError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| ProfileParseError {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    /// Checks the rules serde cannot express, returning the offending field.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        const PSEUDO: [&str; 4] = [":method", ":authority", ":scheme", ":path"];
        let mut sorted = self.http2.pseudo_header_order.clone();
        sorted.sort();
        let mut want: Vec<String> = PSEUDO.iter().map(|s| s.to_string()).collect();
        want.sort();
        if sorted != want {
            return Err(format!(
                "http2.pseudo_header_order must hold each of {PSEUDO:?} once, got {:?}",
                self.http2.pseudo_header_order
            ));
        }
        if self.http2.initial_stream_id.is_multiple_of(2) {
            return Err("http2.initial_stream_id must be odd (client streams are odd)".into());
        }
        for version in [&self.tls.min_version, &self.tls.max_version] {
            if version != "1.2" && version != "1.3" {
                return Err(format!(
                    "tls version `{version}` must be \"1.2\" or \"1.3\""
                ));
            }
        }
        if self.tls.cipher_suites.is_empty() {
            return Err("tls.cipher_suites must not be empty".into());
        }
        if !self.requests.contains_key(&RequestKind::Navigation) {
            return Err("requests.navigation is required".into());
        }
        for (kind, template) in &self.requests {
            if !(1..=256).contains(&template.priority.weight) {
                return Err(format!("requests.{kind}.priority.weight must be 1..=256"));
            }
            for (name, _) in &template.headers {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || name.bytes().any(|b| b.is_ascii_uppercase())
                {
                    return Err(format!(
                        "requests.{kind}.headers: `{name}` is not a lower-case header name"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The template for `kind`, falling back to `fetch` and then `navigation`.
    pub fn template(&self, kind: RequestKind) -> &RequestTemplate {
        self.requests
            .get(&kind)
            .or_else(|| self.requests.get(&RequestKind::Fetch))
            .or_else(|| self.requests.get(&RequestKind::Navigation))
            .expect("validated profiles have a navigation template")
    }

    /// Names of every built-in profile.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(n, _)| *n)
    }
}

/// A profile file that does not match the format, with the field path that is wrong.
#[derive(Debug)]
pub struct ProfileParseError {
    path: String,
    message: String,
}

impl fmt::Display for ProfileParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.path, self.message)
    }
}

impl std::error::Error for ProfileParseError {}

/// Up to three known names closest to `name` (built-ins and aliases), best first.
fn closest_names(name: &str) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = Profile::builtin_names()
        .chain(ALIASES.iter().map(|(a, _)| *a))
        .map(|known| (strsim::jaro_winkler(name, known), known))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .into_iter()
        .take(3)
        .map(|(_, n)| n.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_and_validates() {
        for name in Profile::builtin_names() {
            let p = Profile::named(name).unwrap();
            assert_eq!(p.name, name);
            p.validate().unwrap();
            for kind in RequestKind::ALL {
                assert!(p.requests.contains_key(&kind), "{name} lacks {kind}");
            }
        }
    }

    #[test]
    fn aliases_resolve_to_explicit_platforms() {
        assert_eq!(
            Profile::named("chrome-latest").unwrap().name,
            "chrome-156-windows"
        );
        assert_eq!(
            Profile::named("firefox-latest").unwrap().name,
            "firefox-153-windows"
        );
    }

    #[test]
    fn unknown_name_lists_closest() {
        let err = Profile::named("chrome-156-linx").unwrap_err();
        assert!(err.is_unknown_profile());
        let msg = err.to_string();
        assert!(msg.contains("chrome-156-linux"), "{msg}");
    }

    #[test]
    fn chrome_differs_from_chromium_only_in_brands() {
        let a = Profile::named("chromium-156-linux").unwrap();
        let b = Profile::named("chrome-156-linux").unwrap();
        assert_eq!(a.tls, b.tls);
        assert_eq!(a.http2, b.http2);
        for kind in RequestKind::ALL {
            let ta = &a.requests[&kind].headers;
            let tb = &b.requests[&kind].headers;
            assert_eq!(ta.len(), tb.len());
            for (x, y) in ta.iter().zip(tb) {
                assert_eq!(x.0, y.0);
                if x.0 != "sec-ch-ua" {
                    assert_eq!(x.1, y.1, "{kind} {}", x.0);
                }
            }
        }
    }

    #[test]
    fn malformed_json_names_the_field() {
        let mut v: serde_json::Value = serde_json::from_str(BUILTIN[0].1).unwrap();
        v["tls"]["cipher_suites"][2] = serde_json::json!("1303");
        let err = Profile::from_json(&v.to_string()).unwrap_err();
        assert_eq!(err.path, "tls.cipher_suites[2]");
    }
}
