//! Where a request's headers get their order: the profile's template merged with the
//! caller's headers.
//!
//! Rules, in one place:
//! - the template's order wins; a caller's header with a template name takes that slot
//!   (so `-H 'accept: text/plain'` replaces Chrome's accept at Chrome's position);
//! - a template slot with no default (`referer`, `origin`, `cookie`, `content-type`,
//!   `content-length`) is sent only when the caller gives it;
//! - caller headers the template does not know go last, in the caller's order, with two
//!   exceptions that follow Chromium: client hints (`sec-ch-*`, the high-entropy ones
//!   sent after `Accept-CH`) go right after the template's last `sec-ch-*` header, and
//!   cache validators (`if-none-match`, `if-modified-since`) go right after the `cookie`
//!   slot (or before `priority` when there is no cookie slot), where Chromium's HTTP cache
//!   adds them (documents, fetch/XHR); a template with slots of their own (Chromium's
//!   subresource templates: right after `accept`, where its renderer's memory cache puts
//!   them) takes them there, as any slot;
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
        // Where template names ended up in `out`, for the placement exceptions.
        let after_last = |out: &[(HeaderName, HeaderValue)], pred: &dyn Fn(&str) -> bool| {
            out.iter()
                .rposition(|(n, _)| pred(n.as_str()))
                .map(|i| i + 1)
        };
        let cookie_slot = self
            .entries
            .iter()
            .position(|(n, _)| n == http::header::COOKIE);
        for (i, (n, v)) in extra.iter().enumerate() {
            if used[i] || n == http::header::HOST {
                continue;
            }
            let at = if n.as_str().starts_with("sec-ch-") {
                after_last(&out, &|h| h.starts_with("sec-ch-"))
            } else if n == http::header::IF_NONE_MATCH || n == http::header::IF_MODIFIED_SINCE {
                // After the cookie (if sent) and any validator already placed; else
                // where the cookie slot would be, i.e. before what follows it.
                after_last(&out, &|h| {
                    h == "cookie" || h == "if-none-match" || h == "if-modified-since"
                })
                .or_else(|| {
                    let next = cookie_slot.and_then(|c| self.entries.get(c + 1))?;
                    out.iter().position(|(h, _)| h == next.0)
                })
            } else {
                None
            };
            match at {
                Some(at) => out.insert(at, (n.clone(), v.clone())),
                None => out.push((n.clone(), v.clone())),
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
    fn client_hints_and_validators_go_where_chromium_puts_them() {
        let p = Profile::named("chromium-156-linux").unwrap();
        let t = HeaderTemplate::compile(p.template(RequestKind::Navigation)).unwrap();
        let v = HeaderValue::from_static("x");
        let extra = [
            (HeaderName::from_static("if-none-match"), v.clone()),
            (HeaderName::from_static("sec-ch-ua-arch"), v.clone()),
            (HeaderName::from_static("if-modified-since"), v.clone()),
            (HeaderName::from_static("x-last"), v.clone()),
        ];
        let h = t.render(&extra);
        let n = names(&h);
        assert_eq!(
            &n[..4],
            [
                "sec-ch-ua",
                "sec-ch-ua-mobile",
                "sec-ch-ua-platform",
                "sec-ch-ua-arch"
            ]
        );
        let tail: Vec<&str> = n[n.len() - 4..].to_vec();
        assert_eq!(
            tail,
            ["if-none-match", "if-modified-since", "priority", "x-last"]
        );
        let mut with_cookie = extra.to_vec();
        with_cookie.push((HeaderName::from_static("cookie"), v.clone()));
        let n2 = names(&t.render(&with_cookie)).join(",");
        assert!(
            n2.ends_with("accept-language,cookie,if-none-match,if-modified-since,priority,x-last"),
            "{n2}"
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
