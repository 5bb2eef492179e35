//! Where a request's headers get their order: the profile's template merged with the
//! caller's headers.
//!
//! Rules, in one place:
//! - the template's order wins; a caller's header with a template name takes that slot
//!   (so `-H 'accept: text/plain'` replaces Chrome's accept at Chrome's position);
//! - a template slot with no default (`referer`, `origin`, `cookie`, `content-type`,
//!   `content-length`) is sent only when the caller gives it;
//! - caller headers the template does not know go last, in the caller's order;
//! - `host` and pseudo-headers are the transport's business and never come from here.

use http::{HeaderName, HeaderValue};

use super::RequestTemplate;
use crate::error::{Error, Result};

/// A request template with its header names and values parsed once, so rendering a
/// request's headers is only clones of shared buffers.
#[derive(Clone, Debug)]
pub struct HeaderTemplate {
    entries: Vec<(HeaderName, Option<HeaderValue>)>,
}

impl HeaderTemplate {
    /// Parses every name and value of `template`.
    ///
    /// # Errors
    ///
    /// A name or value that is not valid in HTTP (possible only in a user's profile
    /// file), reported with the header's name.
    pub fn compile(template: &RequestTemplate) -> Result<HeaderTemplate> {
        let entries = template
            .headers
            .iter()
            .map(|(name, value)| {
                let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    Error::invalid_input(format!("profile header name `{name}` is invalid"))
                })?;
                let value = value
                    .as_deref()
                    .map(HeaderValue::from_str)
                    .transpose()
                    .map_err(|_| {
                        Error::invalid_input(format!("profile value of header `{name}` is invalid"))
                    })?;
                Ok((parsed, value))
            })
            .collect::<Result<_>>()?;
        Ok(HeaderTemplate { entries })
    }

    /// Merges the template with the caller's `extra` headers into the wire order (the
    /// rules are in this module's documentation).
    pub fn render(&self, extra: &[(HeaderName, HeaderValue)]) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(self.entries.len() + extra.len());
        let mut used = vec![false; extra.len()];
        for (name, default) in &self.entries {
            let mut supplied = false;
            for (i, (n, v)) in extra.iter().enumerate() {
                if n == name {
                    out.push((n.clone(), v.clone()));
                    used[i] = true;
                    supplied = true;
                }
            }
            if !supplied {
                if let Some(value) = default {
                    out.push((name.clone(), value.clone()));
                }
            }
        }
        for (i, (n, v)) in extra.iter().enumerate() {
            if !used[i] && n != http::header::HOST {
                out.push((n.clone(), v.clone()));
            }
        }
        out
    }
}

/// Merges `template` with the caller's `extra` headers into the wire order. Compiles the
/// template each call: a client keeps [`HeaderTemplate`]s instead.
///
/// # Errors
///
/// A template value that is not a valid header value (possible only in a user's profile
/// file) is reported with its name.
pub fn render_headers(
    template: &RequestTemplate,
    extra: &[(HeaderName, HeaderValue)],
) -> Result<Vec<(HeaderName, HeaderValue)>> {
    Ok(HeaderTemplate::compile(template)?.render(extra))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, RequestKind};

    fn names(h: &[(HeaderName, HeaderValue)]) -> Vec<&str> {
        h.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn navigation_order_is_the_captured_one() {
        let p = Profile::named("chromium-156-linux").unwrap();
        let h = render_headers(p.template(RequestKind::Navigation), &[]).unwrap();
        assert_eq!(
            names(&h),
            [
                "sec-ch-ua",
                "sec-ch-ua-mobile",
                "sec-ch-ua-platform",
                "upgrade-insecure-requests",
                "user-agent",
                "accept",
                "sec-fetch-site",
                "sec-fetch-mode",
                "sec-fetch-user",
                "sec-fetch-dest",
                "accept-encoding",
                "accept-language",
                "priority"
            ]
        );
    }

    #[test]
    fn caller_values_take_the_template_slot_and_unknown_go_last() {
        let p = Profile::named("chromium-156-linux").unwrap();
        let extra = [
            (
                HeaderName::from_static("x-extra"),
                HeaderValue::from_static("1"),
            ),
            (
                HeaderName::from_static("accept"),
                HeaderValue::from_static("text/plain"),
            ),
            (
                HeaderName::from_static("cookie"),
                HeaderValue::from_static("a=b"),
            ),
        ];
        let h = render_headers(p.template(RequestKind::Navigation), &extra).unwrap();
        let n = names(&h);
        assert_eq!(n.iter().position(|x| *x == "accept"), Some(5));
        assert_eq!(h[5].1, "text/plain");
        let cookie = n.iter().position(|x| *x == "cookie").unwrap();
        assert_eq!(n[cookie - 1], "accept-language");
        assert_eq!(*n.last().unwrap(), "x-extra");
    }
}
