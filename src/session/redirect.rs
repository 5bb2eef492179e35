//! Redirect rules: what the next request of a redirect chain is. Pure logic; the
//! session follows what [`next_hop`] decides.
//!
//! - 301, 302 and 303 become GET without a body (HEAD stays HEAD), as browsers do;
//! - 307 and 308 repeat the method and the body;
//! - `Authorization` and a caller's `Cookie` never cross to another origin (the jar's
//!   cookies are chosen again for each hop);
//! - a missing or unparsable `Location` ends the chain: the 3xx is the answer.

use http::{Method, StatusCode};
use url::Url;

/// Default limit on redirects followed for one request (Chromium's is 20; 10 is what
/// most HTTP clients use and what crawls expect).
pub const DEFAULT_MAX_REDIRECTS: usize = 10;

/// What to send next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The next URL.
    pub url: Url,
    /// The next method.
    pub method: Method,
    /// Whether the request body is sent again.
    pub keep_body: bool,
    /// Whether the hop leaves the origin (strip `Authorization` and caller cookies).
    pub cross_origin: bool,
}

/// The next hop after a `status` answer to `method` at `current`, when the status is a
/// redirect with a usable `location`.
pub fn next_hop(
    status: StatusCode,
    method: &Method,
    current: &Url,
    location: Option<&str>,
) -> Option<Hop> {
    let (method, keep_body) = match status.as_u16() {
        301..=303 if *method == Method::HEAD => (Method::HEAD, false),
        301..=303 => (Method::GET, false),
        307 | 308 => (method.clone(), true),
        _ => return None,
    };
    let url = current.join(location?.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let cross_origin = !super::nav::same_origin(&url, current);
    Some(Hop {
        url,
        method,
        keep_body,
        cross_origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(status: u16, method: Method, loc: &str) -> Option<Hop> {
        let cur = Url::parse("https://shop.test/a/b").unwrap();
        next_hop(
            StatusCode::from_u16(status).unwrap(),
            &method,
            &cur,
            Some(loc),
        )
    }

    #[test]
    fn method_and_body_rules() {
        for s in [301, 302, 303] {
            let h = hop(s, Method::POST, "/c").unwrap();
            assert_eq!((h.method, h.keep_body), (Method::GET, false), "{s}");
        }
        assert_eq!(hop(303, Method::HEAD, "/c").unwrap().method, Method::HEAD);
        for s in [307, 308] {
            let h = hop(s, Method::POST, "/c").unwrap();
            assert_eq!((h.method, h.keep_body), (Method::POST, true), "{s}");
        }
        assert!(hop(200, Method::GET, "/c").is_none());
        assert!(hop(304, Method::GET, "/c").is_none());
    }

    #[test]
    fn locations_resolve_and_origin_is_tracked() {
        assert_eq!(
            hop(302, Method::GET, "c").unwrap().url.as_str(),
            "https://shop.test/a/c"
        );
        assert!(!hop(302, Method::GET, "/x").unwrap().cross_origin);
        assert!(
            hop(302, Method::GET, "https://cdn.test/")
                .unwrap()
                .cross_origin
        );
        assert!(
            hop(302, Method::GET, "http://shop.test/")
                .unwrap()
                .cross_origin
        );
        assert!(hop(302, Method::GET, "javascript:alert(1)").is_none());
    }
}
