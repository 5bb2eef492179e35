//! How an API-created session connects: the transport options a `POST /v1/sessions`
//! body carries (the same ones as `mummer fetch`), merged over the server's defaults
//! (`mummer serve --resolve/--cacert/-k`).
//!
//! Everything is parsed when the session is created, so a typo is a 400 naming the
//! field, never a failure on the first request.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{ClientBuilder, HttpVersionPref};
use crate::error::{Error, Result};
use crate::net::{ConnectTo, Proxy, ResolveOverride};

/// Largest per-attempt timeout a caller may set: one hour (a larger one held requests
/// long past the server's deadline, and `u64::MAX` never ended).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Transport options of one session, or the server's defaults for every session.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransportOptions {
    /// Upstream proxy URL (`http://`, `https://`, `socks5://`, `socks5h://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// curl-style `HOST:PORT:ADDR` overrides, tried before the server's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolve: Vec<String>,
    /// curl-style `HOST:PORT:CONNECT_HOST:CONNECT_PORT` rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_to: Vec<String>,
    /// A PEM file of extra trust anchors (path on the server's machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<PathBuf>,
    /// Skip certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// `auto` (default: HTTP/2 or 1.1 by ALPN, HTTP/3 once an origin offers it with
    /// `Alt-Svc`), `http1`, `http2`, `http3` (try QUIC first on every origin) or
    /// `http3-only` (QUIC only, no TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_version: Option<String>,
    /// Per-attempt timeout in milliseconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_int::opt_u64"
    )]
    pub timeout_ms: Option<u64>,
}

/// [`TransportOptions`] after parsing: applied to a client builder with
/// [`ParsedTransport::apply`].
#[derive(Clone, Debug)]
pub struct ParsedTransport {
    proxy: Option<Proxy>,
    resolve: Vec<ResolveOverride>,
    connect_to: Vec<ConnectTo>,
    cacert: Option<PathBuf>,
    insecure: bool,
    version: HttpVersionPref,
    timeout: Option<Duration>,
    destination: Option<std::sync::Arc<crate::destination::DestinationPolicy>>,
}

impl TransportOptions {
    /// Refuses a server file path from an API caller unless the operator allows them
    /// (`mummer serve --allow-file-paths`). Checked before anything touches the file,
    /// so the answer says nothing about whether the path exists.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming `cacert`.
    pub fn check_caller_paths(&self, allow_file_paths: bool) -> Result<()> {
        if self.cacert.is_some() && !allow_file_paths {
            return Err(Error::invalid_input(
                "cacert: file paths on the server are not accepted from API callers (the operator can allow them with --allow-file-paths); set --cacert on the server instead",
            ));
        }
        Ok(())
    }

    /// Parses these options laid over `defaults`: lists are joined (these first), single
    /// values replace the default's.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the field (`transport.resolve[1]`, ...).
    pub fn parse_over(&self, defaults: &TransportOptions) -> Result<ParsedTransport> {
        let field = |name: String, e: Error| Error::invalid_input(format!("{name}: {e}"));
        let resolve = self
            .resolve
            .iter()
            .chain(&defaults.resolve)
            .enumerate()
            .map(|(i, r)| {
                r.parse::<ResolveOverride>()
                    .map_err(|e| field(format!("resolve[{i}]"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let connect_to = self
            .connect_to
            .iter()
            .chain(&defaults.connect_to)
            .enumerate()
            .map(|(i, r)| {
                r.parse::<ConnectTo>()
                    .map_err(|e| field(format!("connect_to[{i}]"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let proxy = self
            .proxy
            .as_ref()
            .or(defaults.proxy.as_ref())
            .map(|p| Proxy::parse(p).map_err(|e| field("proxy".into(), e)))
            .transpose()?;
        let version = match self
            .http_version
            .as_deref()
            .or(defaults.http_version.as_deref())
        {
            None | Some("auto") => HttpVersionPref::Auto,
            Some("http1") => HttpVersionPref::Http1Only,
            Some("http2") => HttpVersionPref::Http2Only,
            Some("http3") => HttpVersionPref::Http3,
            Some("http3-only") => HttpVersionPref::Http3Only,
            Some(other) => {
                return Err(Error::invalid_input(format!(
                    "http_version: `{other}` is not one of auto, http1, http2, http3, http3-only"
                )))
            }
        };
        let timeout = match self.timeout_ms.or(defaults.timeout_ms) {
            Some(0) => {
                return Err(Error::invalid_input(
                    "timeout_ms: must be a positive number of milliseconds",
                ))
            }
            Some(ms) if ms > MAX_TIMEOUT_MS => {
                return Err(Error::invalid_input(format!(
                    "timeout_ms: at most {MAX_TIMEOUT_MS} (one hour)"
                )))
            }
            ms => ms.map(Duration::from_millis),
        };
        let cacert = self.cacert.clone().or_else(|| defaults.cacert.clone());
        if let Some(path) = &cacert {
            if !path.is_file() {
                return Err(Error::invalid_input(format!(
                    "cacert: {} is not a readable file",
                    path.display()
                )));
            }
        }
        Ok(ParsedTransport {
            proxy,
            resolve,
            connect_to,
            cacert,
            insecure: self.insecure.or(defaults.insecure).unwrap_or(false),
            version,
            timeout,
            destination: None,
        })
    }
}

impl ParsedTransport {
    /// Puts the server's destination policy on the sessions these options build (none:
    /// every address allowed). Never from a caller: the server sets it.
    #[must_use]
    pub fn with_destination(
        mut self,
        policy: Option<std::sync::Arc<crate::destination::DestinationPolicy>>,
    ) -> Self {
        self.destination = policy;
        self
    }

    /// Sets these options on `builder`.
    pub fn apply(self, mut builder: ClientBuilder) -> ClientBuilder {
        builder = builder.insecure(self.insecure).http_version(self.version);
        if let Some(policy) = self.destination {
            builder = builder.destination_policy(policy);
        }
        if let Some(ca) = self.cacert {
            builder = builder.ca_file(ca);
        }
        for rule in self.connect_to {
            builder = builder.connect_to(rule);
        }
        for r in self.resolve {
            builder = builder.resolve(r);
        }
        if let Some(p) = self.proxy {
            builder = builder.proxy(p);
        }
        if let Some(t) = self.timeout {
            builder = builder.timeout(t);
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_options_go_before_defaults_and_errors_name_the_field() {
        let defaults = TransportOptions {
            resolve: vec!["a.test:443:127.0.0.1".into()],
            insecure: Some(true),
            ..Default::default()
        };
        let mine = TransportOptions {
            resolve: vec!["b.test:443:127.0.0.2".into()],
            ..Default::default()
        };
        let parsed = mine.parse_over(&defaults).expect("valid");
        assert_eq!(parsed.resolve.len(), 2);
        assert!(parsed.insecure);

        let bad = TransportOptions {
            resolve: vec!["ok.test:1:127.0.0.1".into(), "nonsense".into()],
            ..Default::default()
        };
        let e = bad.parse_over(&defaults).expect_err("invalid");
        assert!(e.to_string().contains("resolve[1]"), "{e}");
        let bad = TransportOptions {
            http_version: Some("h3".into()),
            ..Default::default()
        };
        assert!(bad
            .parse_over(&defaults)
            .expect_err("invalid")
            .to_string()
            .contains("http_version"));
    }
}
