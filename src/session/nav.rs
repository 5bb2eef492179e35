//! The navigation context: how a request relates to the page that caused it, and the
//! `sec-fetch-site`, `Referer` and `Origin` values Chromium derives from that.
//!
//! Pure functions over URLs. The session keeps the current top-level document and asks
//! these for every request (and every redirect hop).

use http::Method;
use url::Url;

use crate::cookies::site_of;
use crate::profile::RequestKind;

/// `sec-fetch-site`: the initiator's relation to the target, worst hop of a redirect
/// chain included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FetchSite {
    /// The user typed or bookmarked the URL: no initiator.
    None,
    /// Same scheme, host and port.
    SameOrigin,
    /// Same registrable domain and scheme.
    SameSite,
    /// Anything else.
    CrossSite,
}

impl FetchSite {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchSite::None => "none",
            FetchSite::SameOrigin => "same-origin",
            FetchSite::SameSite => "same-site",
            FetchSite::CrossSite => "cross-site",
        }
    }

    /// The relation of a whole redirect chain: the least related hop wins.
    pub fn worst(self, other: FetchSite) -> FetchSite {
        self.max(other)
    }

    /// True for cross-site (what SameSite cookies care about).
    pub fn is_cross_site(self) -> bool {
        self == FetchSite::CrossSite
    }
}

/// Whether `a` and `b` have the same origin, as `Url::origin` decides it. Compared
/// part by part for the schemes whose origin is a (scheme, host, port) tuple: building
/// the two origins copies both hosts, on every request.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    let tuple = |u: &Url| matches!(u.scheme(), "http" | "https" | "ws" | "wss" | "ftp");
    if tuple(a) && tuple(b) {
        a.scheme() == b.scheme()
            && a.host() == b.host()
            && a.port_or_known_default() == b.port_or_known_default()
    } else {
        a.origin() == b.origin()
    }
}

/// How `target` relates to `initiator` (`None` initiator: typed navigation).
pub fn fetch_site(initiator: Option<&Url>, target: &Url) -> FetchSite {
    let Some(from) = initiator else {
        return FetchSite::None;
    };
    if same_origin(from, target) {
        return FetchSite::SameOrigin;
    }
    let host = |u: &Url| u.host_str().unwrap_or_default().to_ascii_lowercase();
    let (a, b) = (host(from), host(target));
    if from.scheme() == target.scheme() && site_of(&a) == site_of(&b) {
        FetchSite::SameSite
    } else {
        FetchSite::CrossSite
    }
}

/// The `Referer` a document at `from` sends to `target` under
/// `strict-origin-when-cross-origin` (Chromium's default): the full URL (no fragment,
/// no credentials) to the same origin, the origin alone to another origin, nothing from
/// https to http.
pub fn referrer(from: &Url, target: &Url) -> Option<String> {
    if from.scheme() == "https" && target.scheme() != "https" {
        return None;
    }
    if !matches!(from.scheme(), "http" | "https") {
        return None;
    }
    if same_origin(from, target) {
        if from.fragment().is_none() && from.username().is_empty() && from.password().is_none() {
            return Some(from.as_str().to_owned());
        }
        let mut full = from.clone();
        full.set_fragment(None);
        let _ = full.set_username("");
        let _ = full.set_password(None);
        Some(full.to_string())
    } else {
        Some(format!("{}/", from.origin().ascii_serialization()))
    }
}

/// Whether Chromium sends `Origin` on this request: fetch and XHR when cross-origin
/// or not GET/HEAD, fonts always (a live Chromium 156 page load sends it on a
/// same-origin font GET too, `tests/conformance_page_load.rs`), and any non-GET/HEAD
/// navigation (a form POST). `no-cors` subresources (images, classic scripts, styles)
/// never do; a module script is CORS mode and its page load adds it.
pub fn sends_origin(kind: RequestKind, method: &Method, site: FetchSite) -> bool {
    let unsafe_method = !matches!(*method, Method::GET | Method::HEAD);
    match kind {
        RequestKind::Fetch | RequestKind::Xhr => unsafe_method || site != FetchSite::SameOrigin,
        RequestKind::Font => true,
        RequestKind::Navigation => unsafe_method,
        RequestKind::Image | RequestKind::Script | RequestKind::Style => false,
    }
}

/// The `Origin` header value for a document at `from`.
pub fn origin_value(from: Option<&Url>) -> String {
    from.map_or_else(|| "null".to_string(), |u| u.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn same_origin_agrees_with_the_origins_it_does_not_build() {
        let urls = [
            "https://a.test/x",
            "https://A.TEST:443/y?q#f",
            "https://u:p@a.test/",
            "https://a.test:8443/",
            "http://a.test/",
            "http://a.test:80/",
            "https://b.a.test/",
            "https://127.0.0.1/",
            "https://127.0.0.1:443/",
            "https://[::1]/",
            "https://[0:0::1]:443/",
            "wss://a.test/",
            "ftp://a.test/",
            "blob:https://a.test/uuid",
            "file:///etc/hosts",
            "data:text/plain,hi",
            "about:blank",
        ];
        for a in urls {
            for b in urls {
                let (a, b) = (u(a), u(b));
                assert_eq!(same_origin(&a, &b), a.origin() == b.origin(), "{a} and {b}");
            }
        }
    }

    #[test]
    fn site_relations() {
        let doc = u("https://www.shop.test/a");
        assert_eq!(fetch_site(None, &doc), FetchSite::None);
        assert_eq!(
            fetch_site(Some(&doc), &u("https://www.shop.test/b")),
            FetchSite::SameOrigin
        );
        assert_eq!(
            fetch_site(Some(&doc), &u("https://api.shop.test/b")),
            FetchSite::SameSite
        );
        assert_eq!(
            fetch_site(Some(&doc), &u("http://www.shop.test/b")),
            FetchSite::CrossSite
        );
        assert_eq!(
            fetch_site(Some(&doc), &u("https://cdn.test/b")),
            FetchSite::CrossSite
        );
        assert_eq!(
            FetchSite::SameOrigin.worst(FetchSite::CrossSite),
            FetchSite::CrossSite
        );
    }

    #[test]
    fn strict_origin_when_cross_origin() {
        let doc = u("https://user:pw@www.shop.test/cart?x=1#frag");
        assert_eq!(
            referrer(&doc, &u("https://www.shop.test/pay")).unwrap(),
            "https://www.shop.test/cart?x=1"
        );
        assert_eq!(
            referrer(&doc, &u("https://cdn.test/i.png")).unwrap(),
            "https://www.shop.test/"
        );
        assert_eq!(referrer(&doc, &u("http://www.shop.test/")), None);
        // Same origin part by part: the default port written out is the same origin,
        // another port or scheme is not.
        let plain = u("https://www.shop.test/a?b=1");
        assert_eq!(
            referrer(&plain, &u("https://www.shop.test:443/c")).unwrap(),
            "https://www.shop.test/a?b=1"
        );
        assert_eq!(
            referrer(&plain, &u("https://www.shop.test:8443/c")).unwrap(),
            "https://www.shop.test/"
        );
        assert_eq!(
            referrer(
                &u("http://127.0.0.1:8080/x"),
                &u("https://127.0.0.1:8080/y")
            )
            .unwrap(),
            "http://127.0.0.1:8080/"
        );
    }

    #[test]
    fn origin_rules() {
        use RequestKind::*;
        assert!(sends_origin(Fetch, &Method::GET, FetchSite::CrossSite));
        assert!(!sends_origin(Fetch, &Method::GET, FetchSite::SameOrigin));
        assert!(sends_origin(Xhr, &Method::POST, FetchSite::SameOrigin));
        assert!(sends_origin(
            Navigation,
            &Method::POST,
            FetchSite::SameOrigin
        ));
        assert!(!sends_origin(
            Navigation,
            &Method::GET,
            FetchSite::CrossSite
        ));
        assert!(!sends_origin(Image, &Method::GET, FetchSite::CrossSite));
        assert_eq!(
            origin_value(Some(&u("https://a.test:8443/x"))),
            "https://a.test:8443"
        );
    }
}
