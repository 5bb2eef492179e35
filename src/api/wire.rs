//! The JSON bodies of the message API: what callers send (session creation, requests)
//! and what they get back (a response with headers in wire order, redacted).
//!
//! Every request body rejects unknown fields, so a misspelt option is a 400 naming it
//! instead of being ignored.

use std::path::PathBuf;

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::transport::TransportOptions;
use crate::client::{Redirect, Response};
use crate::tls::TlsInfo;

/// `POST /v1/sessions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// A built-in profile name or alias (default `chrome-latest`), an inline profile
    /// (a JSON object, as `mummer profile show` prints), or a profile file where the
    /// operator allows file paths.
    #[serde(default)]
    pub profile: Option<serde_json::Value>,
    /// TLS-ticket partition (default: the session id).
    #[serde(default)]
    pub identifier: Option<String>,
    /// Upstream proxy URL.
    #[serde(default)]
    pub proxy: Option<String>,
    /// `HOST:PORT:ADDR` overrides.
    #[serde(default)]
    pub resolve: Vec<String>,
    /// `HOST:PORT:CONNECT_HOST:CONNECT_PORT` rules.
    #[serde(default)]
    pub connect_to: Vec<String>,
    /// Extra trust anchors (a PEM file on the server's machine).
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// Skip certificate verification.
    #[serde(default)]
    pub insecure: Option<bool>,
    /// `auto`, `http1` or `http2`.
    #[serde(default)]
    pub http_version: Option<String>,
    /// Per-attempt timeout in milliseconds.
    #[serde(default, deserialize_with = "crate::json_int::opt_u64")]
    pub timeout_ms: Option<u64>,
    /// The session's tenant (default `default`), for proxy routing.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The domain the session will mostly visit, for proxy routing.
    #[serde(default)]
    pub target: Option<String>,
    /// What the `hash` proxy strategy hashes (default: the tenant).
    #[serde(default)]
    pub proxy_key: Option<String>,
}

/// `PUT /v1/proxies/routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRoutes {
    /// Rules, first match wins.
    pub routes: Vec<crate::proxies::RouteSpec>,
    /// The pool for what no rule matches.
    #[serde(default)]
    pub default_pool: Option<String>,
}

/// `POST /v1/sessions/{id}/rotate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Why (recorded in the event and the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
}

impl CreateSession {
    /// The transport part of the body.
    pub fn transport(&self) -> TransportOptions {
        TransportOptions {
            proxy: self.proxy.clone(),
            resolve: self.resolve.clone(),
            connect_to: self.connect_to.clone(),
            cacert: self.cacert.clone(),
            insecure: self.insecure,
            http_version: self.http_version.clone(),
            timeout_ms: self.timeout_ms,
        }
    }
}

/// `PUT /v1/sessions/{id}/identifier`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetIdentifier {
    /// The new TLS-ticket partition.
    pub identifier: String,
}

/// Request headers: `[["name", "value"], ...]` keeps the order; an object is accepted
/// too (its order is not kept by every JSON library, so prefer the list).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a list of [name, value] string pairs, or an object of string values"
)]
pub enum HeaderList {
    /// Ordered pairs.
    Pairs(Vec<(String, String)>),
    /// An object.
    Object(serde_json::Map<String, serde_json::Value>),
}

impl Default for HeaderList {
    fn default() -> Self {
        HeaderList::Pairs(Vec::new())
    }
}

impl HeaderList {
    /// The pairs, in order; an object's non-string value is an error naming it.
    pub fn pairs(&self) -> Result<Vec<(String, String)>, String> {
        match self {
            HeaderList::Pairs(p) => Ok(p.clone()),
            HeaderList::Object(map) => map
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(format!("headers.{k}: expected a string value")),
                })
                .collect(),
        }
    }
}

/// How the response body comes back.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// Text when it is UTF-8, base64 otherwise.
    #[default]
    Auto,
    /// Always base64.
    Base64,
    /// No body (its length is still reported).
    None,
}

/// `POST /v1/sessions/{id}/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// HTTP method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Extra headers, merged into the profile's order.
    #[serde(default)]
    pub headers: HeaderList,
    /// A text body.
    #[serde(default)]
    pub body: Option<String>,
    /// A binary body in base64 (instead of `body`).
    #[serde(default)]
    pub body_base64: Option<String>,
    /// navigation (default), fetch, xhr, image, script, style, font.
    #[serde(default)]
    pub kind: Option<String>,
    /// A navigation the user typed (no referrer, `sec-fetch-site: none`).
    #[serde(default)]
    pub typed: bool,
    /// Follow redirects (default true).
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// Use the conditional cache (default true).
    #[serde(default = "yes")]
    pub use_cache: bool,
    /// auto (default), base64 or none.
    #[serde(default)]
    pub response_body: BodyFormat,
}

fn yes() -> bool {
    true
}

/// `POST /v1/sessions/{id}/load`: a page load and its limits (each bounded; see
/// `docs/openapi.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Absolute `http://` or `https://` URL of the document.
    pub url: String,
    /// Most subresources fetched (default 100, at most 10 000).
    #[serde(default, deserialize_with = "crate::json_int::opt_u64")]
    pub max_subresources: Option<u64>,
    /// No new subresource once this many body bytes arrived (default 32 MiB, at most
    /// 1 GiB).
    #[serde(default, deserialize_with = "crate::json_int::opt_u64")]
    pub max_bytes: Option<u64>,
    /// The whole load's time limit in ms (default 30 000, 1 to 600 000).
    #[serde(default, deserialize_with = "crate::json_int::opt_u64")]
    pub timeout_ms: Option<u64>,
    /// Only the document's origin.
    #[serde(default)]
    pub same_origin_only: bool,
    /// Only these kinds (`style`, `script`, `image`, `font`, `fetch`).
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// The icon too (default true).
    #[serde(default = "yes")]
    pub favicon: bool,
    /// Viewport width in CSS px (default 1920, 1 to 10 000).
    #[serde(default, deserialize_with = "crate::json_int::opt_u64")]
    pub viewport_width: Option<u64>,
    /// Device pixel ratio (default 1, 0.1 to 10).
    #[serde(default)]
    pub device_pixel_ratio: Option<f64>,
}

/// A page load as the API returns it.
#[derive(Debug, Serialize)]
pub struct PageLoadView {
    /// The document's response (without its body).
    pub document: ResponseView,
    /// Every subresource found, with what became of it.
    pub subresources: Vec<crate::page::Fetched>,
    /// Every subresource that was sent got a response.
    pub complete: bool,
    /// Subresources found beyond the listing limit (10 000 per document or
    /// stylesheet): counted, not fetched.
    pub not_listed: usize,
    /// Bytes of the document past the 8 MiB read for subresources.
    pub document_bytes_not_read: u64,
    /// The whole load, in ms.
    pub took_ms: f64,
}

/// Milliseconds of each phase of the last attempt.
#[derive(Debug, Serialize)]
pub struct TimingsView {
    /// Name resolution.
    pub dns: f64,
    /// TCP connect.
    pub connect: f64,
    /// TLS handshake.
    pub tls: f64,
    /// Until the response head.
    pub first_byte: f64,
    /// The whole request.
    pub total: f64,
}

/// A response as the API returns it.
#[derive(Debug, Serialize)]
pub struct ResponseView {
    /// Status code.
    pub status: u16,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The final URL (after redirects).
    pub url: String,
    /// Response headers in wire order; `set-cookie` values redacted.
    pub headers: Vec<(String, String)>,
    /// The headers sent, in wire order; `cookie` and credentials redacted.
    pub request_headers: Vec<(String, String)>,
    /// The body as text (UTF-8 bodies, `response_body: auto`).
    pub body: Option<String>,
    /// The body in base64 (binary bodies, or `response_body: base64`).
    pub body_base64: Option<String>,
    /// Body bytes after decoding.
    pub body_bytes: usize,
    /// Body bytes on the wire.
    pub raw_body_bytes: u64,
    /// Attempts made by the retry policy.
    pub attempts: usize,
    /// Redirects followed.
    pub redirects: Vec<Redirect>,
    /// What the conditional cache did.
    pub cache: crate::client::CacheStatus,
    /// Phase timings of the last attempt.
    pub timings_ms: TimingsView,
    /// The TLS connection's parameters (HTTPS only).
    pub tls: Option<TlsInfo>,
}

/// Headers whose values never leave the server in API output or logs.
pub const SECRET_HEADERS: [&str; 4] = [
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
];

/// The value to show for `name`: the value itself, or `[redacted]` for a secret header.
pub fn shown_value(name: &HeaderName, value: &HeaderValue) -> String {
    if SECRET_HEADERS.contains(&name.as_str()) {
        "[redacted]".to_owned()
    } else {
        String::from_utf8_lossy(value.as_bytes()).into_owned()
    }
}

fn shown(headers: &[(HeaderName, HeaderValue)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), shown_value(n, v)))
        .collect()
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl ResponseView {
    /// The API's view of `response`.
    pub fn new(response: &Response, format: BodyFormat) -> ResponseView {
        let bytes = response.body();
        let (body, body_base64) = match format {
            BodyFormat::None => (None, None),
            BodyFormat::Auto if std::str::from_utf8(bytes).is_ok() => {
                (Some(String::from_utf8_lossy(bytes).into_owned()), None)
            }
            BodyFormat::Auto | BodyFormat::Base64 => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        };
        let t = response.timings();
        ResponseView {
            status: response.status().as_u16(),
            version: format!("{:?}", response.version()),
            url: response.url().to_owned(),
            headers: shown(response.wire_headers()),
            request_headers: shown(response.request_headers()),
            body,
            body_base64,
            body_bytes: bytes.len(),
            raw_body_bytes: response.raw_body_len(),
            attempts: response.attempts(),
            redirects: response.redirects().to_vec(),
            cache: response.cache_status(),
            timings_ms: TimingsView {
                dns: ms(t.dns),
                connect: ms(t.connect),
                tls: ms(t.tls),
                first_byte: ms(t.first_byte),
                total: ms(t.total),
            },
            tls: response.tls().cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_other_values_kept() {
        let v = HeaderValue::from_static("sid=secret");
        assert_eq!(shown_value(&http::header::SET_COOKIE, &v), "[redacted]");
        assert_eq!(shown_value(&http::header::COOKIE, &v), "[redacted]");
        assert_eq!(
            shown_value(&http::header::PROXY_AUTHORIZATION, &v),
            "[redacted]"
        );
        assert_eq!(shown_value(&http::header::ETAG, &v), "sid=secret");
    }

    #[test]
    fn header_objects_and_lists_both_parse() {
        let list: RequestSpec =
            serde_json::from_str(r#"{"url":"https://a.test/","headers":[["b","1"],["a","2"]]}"#)
                .expect("list");
        assert_eq!(list.headers.pairs().expect("pairs")[0].0, "b");
        let obj: RequestSpec =
            serde_json::from_str(r#"{"url":"https://a.test/","headers":{"x":"1"}}"#)
                .expect("object");
        assert_eq!(obj.headers.pairs().expect("pairs").len(), 1);
        let bad: RequestSpec =
            serde_json::from_str(r#"{"url":"https://a.test/","headers":{"x":1}}"#).expect("object");
        assert!(bad.headers.pairs().is_err());
        assert!(serde_json::from_str::<RequestSpec>(r#"{"url":"x","bogus":1}"#).is_err());
    }
}
