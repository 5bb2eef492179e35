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
//! the HTTP/2 builder in `src/h2.rs`, and the header list in `headers`.
//!
//! Why one file (about 650 lines of code, 150 of tests): the profile is one serde
//! document; its types and their validation (every field's legal range, one `validate`
//! for every way a profile arrives) read best side by side.

pub mod diff;
mod headers;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

pub use crate::stream_priority::PriorityRule;

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
    /// QUIC and HTTP/3 (`--http3-only`): transport parameters and packet shape.
    #[serde(default, skip_serializing_if = "QuicProfile::is_default")]
    pub quic: QuicProfile,
}

/// The QUIC side of a profile: what quinn is told so that its transport parameters
/// and packets carry the browser's values. The defaults are Chromium's published QUIC
/// client settings (`quic_constants.h`, `QuicConfig` defaults); docs/profiles.md says
/// which of them a capture has confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicProfile {
    /// ALPN offered over QUIC.
    pub alpn: Vec<String>,
    /// max_idle_timeout, in milliseconds.
    pub max_idle_timeout_ms: u64,
    /// max_udp_payload_size.
    pub max_udp_payload_size: u16,
    /// initial_max_data.
    pub initial_max_data: u64,
    /// initial_max_stream_data_bidi_local, _bidi_remote and _uni.
    pub initial_max_stream_data: u64,
    /// initial_max_streams_bidi.
    pub initial_max_streams_bidi: u64,
    /// initial_max_streams_uni.
    pub initial_max_streams_uni: u64,
    /// max_datagram_frame_size, when datagrams are offered.
    pub max_datagram_frame_size: Option<u64>,
    /// Length of the first destination connection ID the client picks.
    pub initial_dcid_len: u8,
    /// Length of the client's own (source) connection IDs.
    pub scid_len: u8,
    /// Size of the datagrams that carry the client's Initial packets.
    pub initial_packet_size: u16,
    /// Exactly the transport parameters sent: ids whose value quinn sets (`"0x04"`),
    /// `"grease"` (quinn's reserved parameter), `"version_information"`, or
    /// `"0xID=HEX"` for a value given here; empty sends quinn's own list.
    pub transport_parameters: Vec<String>,
    /// Shuffle the transport parameters for every connection, as Chromium does.
    pub shuffle_transport_parameters: bool,
    /// HTTP/3 SETTINGS in order, as `"0xID=VALUE"` (decimal value) or `"grease"` (a
    /// reserved id with a random value). At most 8.
    pub http3_settings: Vec<String>,
    /// A GREASE frame on the control stream after SETTINGS.
    pub http3_grease_frame: bool,
    /// Open the QPACK encoder and decoder streams when the connection starts.
    pub http3_qpack_streams: bool,
    /// How the ClientHello over QUIC differs from the profile's TCP one.
    pub tls: QuicTlsProfile,
}

/// What a browser changes in its ClientHello for QUIC. Chromium 156 (captured by
/// `tests/conformance_quic.rs`): no GREASE anywhere, no `status_request` or
/// `signed_certificate_timestamp`, a signature algorithm list of its own (no ML-DSA,
/// `rsa_pkcs1_sha1` last) and ALPS for `h3`. The rest (ciphers, groups, key shares,
/// certificate compression, ECH GREASE, trust anchors, extension permutation) is the
/// TCP profile's; BoringSSL itself leaves out what TLS 1.3-only QUIC cannot use
/// (TLS 1.2 suites, `session_ticket`, `extended_master_secret`, `renegotiation_info`,
/// `ec_point_formats`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicTlsProfile {
    /// GREASE values in the ClientHello.
    pub grease: bool,
    /// `status_request`.
    pub ocsp_stapling: bool,
    /// `signed_certificate_timestamp`.
    pub signed_cert_timestamps: bool,
    /// `signature_algorithms`, when it differs from the TCP list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_algorithms: Option<Vec<CodePoint>>,
    /// Protocols with an ALPS entry (the TCP profile's codepoint).
    pub alps_protocols: Vec<String>,
}

impl Default for QuicTlsProfile {
    fn default() -> Self {
        QuicTlsProfile {
            grease: false,
            ocsp_stapling: false,
            signed_cert_timestamps: false,
            signature_algorithms: Some(
                [
                    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201,
                ]
                .into_iter()
                .map(CodePoint)
                .collect(),
            ),
            alps_protocols: vec!["h3".into()],
        }
    }
}

impl Default for QuicProfile {
    fn default() -> Self {
        QuicProfile {
            alpn: vec!["h3".into()],
            max_idle_timeout_ms: 30_000,
            max_udp_payload_size: 1472,
            initial_max_data: 15_728_640,
            initial_max_stream_data: 6_291_456,
            initial_max_streams_bidi: 100,
            initial_max_streams_uni: 103,
            max_datagram_frame_size: Some(65_536),
            initial_dcid_len: 8,
            scid_len: 0,
            initial_packet_size: 1250,
            // Chromium 156's set (tests/conformance_quic.rs), shuffled per connection.
            transport_parameters: [
                "0x01",
                "0x03",
                "0x04",
                "0x05",
                "0x06",
                "0x07",
                "0x08",
                "0x09",
                "0x0f",
                "0x20=80010000",
                "grease",
                "version_information",
                "0x3128=4f524947",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            shuffle_transport_parameters: true,
            // Chromium 156's order; its QPACK_MAX_TABLE_CAPACITY (65536) and
            // QPACK_BLOCKED_STREAMS (100) are sent as 0, since the HTTP/3 client has no
            // QPACK dynamic table to decode with (docs/profiles.md).
            http3_settings: ["0x01=0", "0x06=262144", "0x07=0", "0x33=1", "grease"]
                .into_iter()
                .map(String::from)
                .collect(),
            http3_grease_frame: true,
            http3_qpack_streams: false,
            tls: QuicTlsProfile::default(),
        }
    }
}

impl QuicProfile {
    /// Whether every field has its default (then a saved profile leaves the section out).
    pub fn is_default(&self) -> bool {
        *self == QuicProfile::default()
    }

    /// The ClientHello settings for QUIC: `tcp` with [`QuicProfile::tls`] applied and
    /// ALPN from [`QuicProfile::alpn`].
    pub fn tls_profile(&self, tcp: &TlsProfile) -> TlsProfile {
        let mut tls = tcp.clone();
        tls.min_version = "1.3".into();
        tls.max_version = "1.3".into();
        tls.grease = self.tls.grease;
        tls.ocsp_stapling = self.tls.ocsp_stapling;
        tls.signed_cert_timestamps = self.tls.signed_cert_timestamps;
        if let Some(sigalgs) = &self.tls.signature_algorithms {
            tls.signature_algorithms = sigalgs.clone();
        }
        tls.alpn = self.alpn.clone();
        tls.alps = match (&tcp.alps, self.tls.alps_protocols.is_empty()) {
            (_, true) => None,
            (Some(alps), false) => Some(AlpsProfile {
                protocols: self.tls.alps_protocols.clone(),
                new_codepoint: alps.new_codepoint,
            }),
            (None, false) => Some(AlpsProfile {
                protocols: self.tls.alps_protocols.clone(),
                new_codepoint: true,
            }),
        };
        tls
    }

    /// The HTTP/3 connection's SETTINGS and streams ([`QuicProfile::http3_settings`]
    /// and the stream switches), for the `h3` crate.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_profile`] naming an entry that is not `0xID=VALUE` or
    /// `grease`, a repeated id, a QPACK table (the client cannot decode with one), or
    /// more than 8 entries.
    pub fn http3_shape(&self) -> Result<h3::BrowserShape> {
        let bad = |why: String| Error::invalid_profile("quic.http3_settings".into(), why);
        if self.http3_settings.len() > 8 {
            return Err(bad(format!(
                "{} settings; at most 8",
                self.http3_settings.len()
            )));
        }
        let mut settings = [(0u64, 0u64); 8];
        for (slot, entry) in settings.iter_mut().zip(&self.http3_settings) {
            *slot = if entry == "grease" {
                (u64::MAX, 0)
            } else {
                let (id, value) = entry
                    .split_once('=')
                    .ok_or_else(|| bad(format!("`{entry}` is not `0xID=VALUE` or `grease`")))?;
                let id = u64::from_str_radix(id.trim_start_matches("0x"), 16)
                    .ok()
                    .filter(|id| *id < 1 << 62)
                    .ok_or_else(|| bad(format!("`{entry}`: the id is not hex")))?;
                let value: u64 = value.parse().ok().filter(|v| *v < 1 << 62).ok_or_else(|| {
                    bad(format!("`{entry}`: the value is not a number below 2^62"))
                })?;
                if (id == 0x01 || id == 0x07) && value != 0 {
                    return Err(bad(format!(
                        "`{entry}`: a QPACK dynamic table cannot be offered (the client decodes with the static table only)"
                    )));
                }
                (id, value)
            };
        }
        let used = &settings[..self.http3_settings.len()];
        for (i, (id, _)) in used.iter().enumerate() {
            if *id != u64::MAX && used[..i].iter().any(|(other, _)| other == id) {
                return Err(bad(format!("setting 0x{id:x} appears twice")));
            }
        }
        Ok(h3::BrowserShape {
            settings,
            len: self.http3_settings.len() as u8,
            qpack_streams: self.http3_qpack_streams,
            grease_stream: false,
            grease_frame_on_control: self.http3_grease_frame,
            grease_frame_on_requests: false,
        })
    }

    /// The transport parameter layout from [`QuicProfile::transport_parameters`].
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_profile`] naming an entry that is none of the forms.
    pub fn params_layout(&self) -> Result<crate::quic::params::ParamsLayout> {
        use crate::quic::params::{ParamSlot, ParamsLayout};
        let bad = |entry: &str| {
            Error::invalid_profile(
                "quic.transport_parameters".into(),
                format!(
                    "`{entry}` is none of: a hex id, `0xID=HEX`, `grease`, `version_information`"
                ),
            )
        };
        let id_of = |text: &str| {
            let digits = text.strip_prefix("0x").unwrap_or(text);
            u64::from_str_radix(digits, 16)
                .ok()
                .filter(|id| *id < 1 << 62)
        };
        let order = self
            .transport_parameters
            .iter()
            .map(|entry| match entry.as_str() {
                "grease" => Ok(ParamSlot::Grease),
                "version_information" => Ok(ParamSlot::VersionInformation),
                _ => match entry.split_once('=') {
                    Some((id, value)) => {
                        let id = id_of(id).ok_or_else(|| bad(entry))?;
                        let value = hex::decode(value).map_err(|_| bad(entry))?;
                        if value.len() > 1024 {
                            return Err(bad(entry));
                        }
                        Ok(ParamSlot::Extra(id, value))
                    }
                    None => id_of(entry).map(ParamSlot::Id).ok_or_else(|| bad(entry)),
                },
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ParamsLayout {
            order,
            shuffle: self.shuffle_transport_parameters,
        })
    }
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
    /// How each stream's HEADERS priority is worked out from its kind's template and
    /// the streams open then (`src/stream_priority.rs`): `template` (Firefox, and the
    /// default for profile files without it) or `chromium`.
    #[serde(default)]
    pub priority_rule: PriorityRule,
    /// HPACK strings are Huffman-coded only when that is shorter than the raw octets
    /// (Chromium sends `?0` and `"Linux"` raw); `false`: always (Firefox).
    #[serde(default)]
    pub huffman_only_when_shorter: bool,
    /// `:path` is always an HPACK literal with the static name, even `/` that the
    /// static table holds whole (Firefox); `false`: `/` is indexed (Chromium).
    #[serde(default)]
    pub path_always_literal: bool,
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
/// so a crawl behaves the same on a laptop and on a Linux server. Each can be pointed
/// elsewhere by configuration: see [`alias_override`].
pub const ALIASES: &[(&str, &str)] = &[
    ("chrome-latest", "chrome-156-windows"),
    ("firefox-latest", "firefox-153-windows"),
];

/// The environment variable that points an alias elsewhere: `MUMMER_CHROME_LATEST` for
/// `chrome-latest`, `MUMMER_FIREFOX_LATEST` for `firefox-latest`. Its value is a
/// built-in name or a profile file (what `mummer inspect --save-profile` writes), so
/// the day a browser ships, a fleet moves to a learned profile without a rebuild.
pub fn alias_variable(alias: &str) -> String {
    format!("MUMMER_{}", alias.to_ascii_uppercase().replace('-', "_"))
}

/// What `alias` is pointed at by configuration ([`alias_variable`]), if anything (an
/// empty value, or one naming the alias itself, is ignored).
pub fn alias_override(alias: &str) -> Option<String> {
    if !ALIASES.iter().any(|(a, _)| *a == alias) {
        return None;
    }
    std::env::var(alias_variable(alias))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != alias && !ALIASES.iter().any(|(a, _)| a == v))
}

impl Profile {
    /// Looks up a built-in profile or alias by name.
    ///
    /// # Errors
    ///
    /// [`Error::is_unknown_profile`] when no profile has that name; the message lists the
    /// closest names.
    pub fn named(name: &str) -> Result<Profile> {
        Ok(Profile::shared(name)?.as_ref().clone())
    }

    /// A built-in profile or alias by name, shared: each built-in is parsed once per
    /// process and every caller gets the same `Arc` (what keeps an idle session
    /// light: sessions wearing one profile hold one copy of it, and one set of its
    /// compiled header templates).
    ///
    /// # Errors
    ///
    /// As [`Profile::named`].
    pub fn shared(name: &str) -> Result<Arc<Profile>> {
        static PARSED: OnceLock<Mutex<HashMap<&'static str, Arc<Profile>>>> = OnceLock::new();
        // An alias pointed elsewhere by configuration: a file is read once per process.
        static OVERRIDDEN: OnceLock<Mutex<HashMap<String, Arc<Profile>>>> = OnceLock::new();
        if let Some(spec) = alias_override(name) {
            let cache = OVERRIDDEN.get_or_init(Default::default);
            if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&spec) {
                return Ok(hit.clone());
            }
            let profile = if Profile::looks_like_path(&spec) {
                Arc::new(Profile::from_file(&spec).map_err(|e| {
                    Error::invalid_profile(
                        format!("{} (from {})", spec, alias_variable(name)),
                        e.to_string(),
                    )
                })?)
            } else {
                Profile::shared(&spec)?
            };
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            return Ok(cache.entry(spec).or_insert(profile).clone());
        }
        let target = ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, target)| *target);
        let (builtin, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == target)
            .ok_or_else(|| Error::unknown_profile(name, closest_names(name)))?;
        let parsed = PARSED.get_or_init(Default::default);
        if let Some(hit) = parsed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(builtin)
        {
            return Ok(hit.clone());
        }
        let profile = Arc::new(Profile::from_json(text).map_err(|e| {
            Error::invalid_profile(format!("built-in profile {target}"), e.to_string())
        })?);
        let mut parsed = parsed.lock().unwrap_or_else(|p| p.into_inner());
        Ok(parsed.entry(builtin).or_insert(profile).clone())
    }

    /// [`Profile::resolve`], shared when `spec` names a built-in (see
    /// [`Profile::shared`]); a file is read and parsed each time.
    ///
    /// # Errors
    ///
    /// As [`Profile::resolve`].
    pub fn resolve_shared(spec: &str) -> Result<Arc<Profile>> {
        if Profile::looks_like_path(spec) {
            Profile::from_file(spec).map(Arc::new)
        } else {
            Profile::shared(spec)
        }
    }

    fn looks_like_path(spec: &str) -> bool {
        spec.contains('/') || spec.ends_with(".json") || Path::new(spec).is_file()
    }

    /// Resolves `spec` as a built-in name or alias, or, when it names an existing file
    /// (or contains a path separator or ends in `.json`), as a profile file.
    ///
    /// # Errors
    ///
    /// Unknown names and malformed files, see [`Profile::named`] and [`Profile::from_file`].
    pub fn resolve(spec: &str) -> Result<Profile> {
        if Profile::looks_like_path(spec) {
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
        let text = crate::files::read_capped_text(path, crate::files::MAX_PROFILE_FILE_BYTES)
            .map_err(|e| {
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

    /// Checks the rules serde cannot express, returning the offending field: every field
    /// in its legal range (RFC 9113 for HTTP/2, RFC 8446/8449/7301 for TLS) and every list
    /// bounded. The one check for every way a profile arrives (built-in, file, inline in
    /// an API call or a snapshot, learned): [`crate::ClientBuilder::build`] runs it, so no
    /// profile reaches a connector unchecked.
    ///
    /// # Errors
    ///
    /// The first field out of range, named as in the JSON (`http2.settings[1]`, say).
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.validate_http2()?;
        self.validate_tls()?;
        self.validate_requests()?;
        header_value_ok(&self.user_agent).map_err(|e| format!("user_agent: {e}"))?;
        bounded("client_hints", self.client_hints.len())?;
        for (name, value) in &self.client_hints {
            lower_case_name(name).map_err(|e| format!("client_hints: {e}"))?;
            header_value_ok(value).map_err(|e| format!("client_hints.{name}: {e}"))?;
        }
        for (name, spelling) in &self.http1.header_case {
            lower_case_name(name).map_err(|e| format!("http1.header_case: {e}"))?;
            if !spelling.eq_ignore_ascii_case(name) {
                return Err(format!(
                    "http1.header_case.{name}: `{spelling}` is not a spelling of `{name}`"
                ));
            }
        }
        bounded("http1.drop_headers", self.http1.drop_headers.len())?;
        Ok(())
    }

    fn validate_http2(&self) -> std::result::Result<(), String> {
        const PSEUDO: [&str; 4] = [":method", ":authority", ":scheme", ":path"];
        let h2 = &self.http2;
        let mut sorted = h2.pseudo_header_order.clone();
        sorted.sort();
        let mut want: Vec<String> = PSEUDO.iter().map(|s| s.to_string()).collect();
        want.sort();
        if sorted != want {
            return Err(format!(
                "http2.pseudo_header_order must hold each of {PSEUDO:?} once, got {:?}",
                h2.pseudo_header_order
            ));
        }
        if h2.initial_stream_id.is_multiple_of(2) || h2.initial_stream_id > MAX_WINDOW {
            return Err(
                "http2.initial_stream_id must be odd (client streams are odd) and below 2^31"
                    .into(),
            );
        }
        // The connection window starts at 65 535 (RFC 9113 §6.9.2) and may not pass 2^31-1.
        if h2.connection_window_increment > MAX_WINDOW - 65_535 {
            return Err(format!(
                "http2.connection_window_increment must be at most {}",
                MAX_WINDOW - 65_535
            ));
        }
        let mut seen = Vec::new();
        for (i, (setting, value)) in h2.settings.iter().enumerate() {
            let field = format!("http2.settings[{i}] ({setting:?} {value})");
            if seen.contains(setting) {
                return Err(format!("{field}: each setting at most once"));
            }
            seen.push(*setting);
            let legal = match setting {
                // What a server may make our HPACK decoder keep: bounded, as browsers do.
                Http2Setting::HeaderTableSize => *value <= MAX_HEADER_TABLE_SIZE,
                Http2Setting::EnablePush => *value <= 1,
                Http2Setting::MaxConcurrentStreams => true,
                Http2Setting::InitialWindowSize => *value <= MAX_WINDOW,
                Http2Setting::MaxFrameSize => (16_384..=16_777_215).contains(value),
                Http2Setting::MaxHeaderListSize => *value >= 1024,
            };
            if !legal {
                return Err(format!(
                    "{field}: out of range (HEADER_TABLE_SIZE <= {MAX_HEADER_TABLE_SIZE}, \
                     ENABLE_PUSH 0 or 1, INITIAL_WINDOW_SIZE <= 2^31-1, \
                     MAX_FRAME_SIZE 16384..=16777215, MAX_HEADER_LIST_SIZE >= 1024)"
                ));
            }
        }
        Ok(())
    }

    fn validate_tls(&self) -> std::result::Result<(), String> {
        let tls = &self.tls;
        for version in [&tls.min_version, &tls.max_version] {
            if version != "1.2" && version != "1.3" {
                return Err(format!(
                    "tls version `{version}` must be \"1.2\" or \"1.3\""
                ));
            }
        }
        if tls.min_version > tls.max_version {
            return Err("tls.min_version must not be above tls.max_version".into());
        }
        if tls.cipher_suites.is_empty() {
            return Err("tls.cipher_suites must not be empty".into());
        }
        for (field, len) in [
            ("tls.cipher_suites", tls.cipher_suites.len()),
            ("tls.groups", tls.groups.len()),
            ("tls.key_shares", tls.key_shares.len()),
            ("tls.signature_algorithms", tls.signature_algorithms.len()),
            ("tls.alpn", tls.alpn.len()),
            ("tls.delegated_credentials", tls.delegated_credentials.len()),
            ("tls.ffdhe_groups", tls.ffdhe_groups.len()),
        ] {
            bounded(field, len)?;
        }
        let alps = tls.alps.iter().flat_map(|a| a.protocols.iter());
        for protocol in tls.alpn.iter().chain(alps) {
            // RFC 7301 §3.1: a protocol name is 1 to 255 bytes.
            if protocol.is_empty() || protocol.len() > 255 {
                return Err(format!(
                    "tls.alpn: protocol `{protocol}` must be 1 to 255 bytes"
                ));
            }
        }
        if let Some(limit) = tls.record_size_limit {
            // RFC 8449 §4: 64 up to 2^14 + 1.
            if !(64..=16_385).contains(&limit) {
                return Err(format!("tls.record_size_limit {limit} must be 64..=16385"));
            }
        }
        Ok(())
    }

    fn validate_requests(&self) -> std::result::Result<(), String> {
        if !self.requests.contains_key(&RequestKind::Navigation) {
            return Err("requests.navigation is required".into());
        }
        for (kind, template) in &self.requests {
            if !(1..=256).contains(&template.priority.weight) {
                return Err(format!("requests.{kind}.priority.weight must be 1..=256"));
            }
            if template.priority.depends_on > MAX_WINDOW {
                return Err(format!(
                    "requests.{kind}.priority.depends_on must be a stream id below 2^31"
                ));
            }
            bounded(&format!("requests.{kind}.headers"), template.headers.len())?;
            for (name, value) in &template.headers {
                lower_case_name(name).map_err(|e| format!("requests.{kind}.headers: {e}"))?;
                if let Some(value) = value {
                    header_value_ok(value)
                        .map_err(|e| format!("requests.{kind}.headers.{name}: {e}"))?;
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

/// The largest HTTP/2 flow-control window and stream id (RFC 9113 §6.9.1, §5.1.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The largest HPACK table a profile may let a server fill (Chromium and Firefox
/// advertise 64 KiB; 1 MiB leaves room without letting a server size our memory).
const MAX_HEADER_TABLE_SIZE: u32 = 1 << 20;
/// The most entries any list or map in a profile may hold (real profiles hold under 40).
const MAX_LIST: usize = 256;

fn bounded(field: &str, len: usize) -> std::result::Result<(), String> {
    if len > MAX_LIST {
        return Err(format!("{field}: {len} entries, at most {MAX_LIST}"));
    }
    Ok(())
}

fn lower_case_name(name: &str) -> std::result::Result<(), String> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err()
        || name.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(format!("`{name}` is not a lower-case header name"));
    }
    Ok(())
}

fn header_value_ok(value: &str) -> std::result::Result<(), String> {
    http::HeaderValue::from_str(value)
        .map(drop)
        .map_err(|_| "not a valid header value (control characters?)".to_string())
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

    /// A built-in profile with `edit` applied to its JSON, validated.
    fn validated_with(
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> std::result::Result<(), String> {
        let mut v: serde_json::Value = serde_json::from_str(BUILTIN[0].1).unwrap();
        edit(&mut v);
        Profile::from_json(&v.to_string())
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn every_http2_field_out_of_its_legal_range_is_refused() {
        use serde_json::json;
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "initial_stream_id",
                Box::new(|v| v["http2"]["initial_stream_id"] = json!(2)),
            ),
            (
                "initial_stream_id",
                Box::new(|v| v["http2"]["initial_stream_id"] = json!(u32::MAX)),
            ),
            (
                "connection_window_increment",
                Box::new(|v| v["http2"]["connection_window_increment"] = json!(u32::MAX)),
            ),
            (
                "MaxFrameSize",
                Box::new(|v| v["http2"]["settings"] = json!([["MAX_FRAME_SIZE", 1]])),
            ),
            (
                "MaxFrameSize",
                Box::new(|v| v["http2"]["settings"] = json!([["MAX_FRAME_SIZE", 16_777_216]])),
            ),
            (
                "InitialWindowSize",
                Box::new(|v| v["http2"]["settings"] = json!([["INITIAL_WINDOW_SIZE", u32::MAX]])),
            ),
            (
                "EnablePush",
                Box::new(|v| v["http2"]["settings"] = json!([["ENABLE_PUSH", 2]])),
            ),
            (
                "HeaderTableSize",
                Box::new(|v| v["http2"]["settings"] = json!([["HEADER_TABLE_SIZE", u32::MAX]])),
            ),
            (
                "at most once",
                Box::new(|v| {
                    v["http2"]["settings"] = json!([["ENABLE_PUSH", 0], ["ENABLE_PUSH", 0]])
                }),
            ),
            (
                "depends_on",
                Box::new(|v| {
                    v["requests"]["navigation"]["priority"]["depends_on"] = json!(u32::MAX)
                }),
            ),
            (
                "requests.navigation",
                Box::new(|v| v["requests"] = json!({})),
            ),
            (
                "record_size_limit",
                Box::new(|v| v["tls"]["record_size_limit"] = json!(1)),
            ),
            ("tls.alpn", Box::new(|v| v["tls"]["alpn"] = json!([""]))),
            ("user_agent", Box::new(|v| v["user_agent"] = json!("a\nb"))),
            (
                "tls.cipher_suites",
                Box::new(|v| v["tls"]["cipher_suites"] = json!(vec!["0x1301"; 300])),
            ),
        ];
        for (field, edit) in cases {
            let err = validated_with(edit).expect_err(field);
            assert!(err.contains(field), "{field}: {err}");
        }
        // The limits themselves are legal.
        validated_with(|v| {
            v["http2"]["settings"] = json!([
                ["MAX_FRAME_SIZE", 16_777_215],
                ["INITIAL_WINDOW_SIZE", (1u32 << 31) - 1],
                ["HEADER_TABLE_SIZE", 1 << 20]
            ])
        })
        .unwrap();
    }
}
