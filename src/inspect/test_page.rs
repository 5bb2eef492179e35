//! The inspector's page-load test page: a document at [`PAGE_LOAD_PATH`] with a
//! stylesheet, a classic and a module script, an image, a web font used by the
//! stylesheet, an icon, and a `fetch()` and an XHR from its script, each answered with a
//! body of the right type. Pointing a real browser and `Session::load_page` at it
//! shows, request by request, how each loads a page (the conformance test compares
//! them). Every other path gets the connection's report.
//!
//! Each resource carries the cache headers a real site would, chosen so a second visit
//! shows every kind of cache decision: the document, the stylesheet and the classic
//! script are `no-cache` with an `ETag` (revalidated on each visit: `If-None-Match`, then
//! `304`), the module script has only a `Last-Modified` (`If-Modified-Since`), and the
//! image, the font and the icon are fresh for an hour (not asked for again). The page's
//! link, [`AGAIN_ID`], leads to the page itself: a browser clicks it for the second
//! visit.

/// The page-load test page.
pub const PAGE_LOAD_PATH: &str = "/page-load";

/// The `id` of the page's link to itself (what a browser clicks for a second visit).
pub const AGAIN_ID: &str = "again";

/// The page's HTML.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>page load</title>
<link rel="stylesheet" href="/pl/site.css">
<script src="/pl/head.js"></script>
<script type="module" src="/pl/app.mjs"></script>
<link rel="icon" href="/pl/icon.png">
</head><body>
<p class="f">Text drawn with the page's web font.</p>
<img src="/pl/img.png" alt="">
<p><a id="again" href="/page-load">again</a></p>
</body></html>
"#;

/// A font face the page's text uses.
const CSS: &str = r#"@font-face { font-family: PageLoad; src: url(/pl/font.woff2) format("woff2"); }
.f { font-family: PageLoad, sans-serif; }
"#;

/// The classic script: a `fetch()` and an XHR, as a page's own code makes them.
const HEAD_JS: &str = r#"fetch('/pl/api/fetch');
var x = new XMLHttpRequest(); x.open('GET', '/pl/api/xhr'); x.send();
"#;

/// A 1x1 transparent PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// How a resource of the test page may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// `cache-control: no-cache` and this `ETag`: revalidated on every use.
    ETag(&'static str),
    /// `cache-control: no-cache` and this `Last-Modified`: revalidated on every use.
    LastModified(&'static str),
    /// `cache-control: max-age=3600`: fresh for an hour.
    Fresh,
    /// `cache-control: no-store`: never kept.
    NoStore,
}

impl Caching {
    /// The response headers that say so (lower-case names).
    pub fn headers(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Caching::ETag(tag) => vec![("cache-control", "no-cache"), ("etag", tag)],
            Caching::LastModified(date) => {
                vec![("cache-control", "no-cache"), ("last-modified", date)]
            }
            Caching::Fresh => vec![("cache-control", "max-age=3600")],
            Caching::NoStore => vec![("cache-control", "no-store")],
        }
    }

    /// Whether a request with `headers` (its `If-None-Match`, `If-Modified-Since`) is
    /// answered `304 Not Modified`: its validator is this resource's own.
    pub fn not_modified(self, headers: &[(String, String)]) -> bool {
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        match self {
            Caching::ETag(tag) => value("if-none-match")
                .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*")),
            Caching::LastModified(date) => value("if-modified-since") == Some(date),
            Caching::Fresh | Caching::NoStore => false,
        }
    }
}

/// One resource of the test page.
#[derive(Clone, Copy, Debug)]
pub struct PageResource {
    /// Its `content-type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: &'static [u8],
    /// How it may be cached.
    pub caching: Caching,
    /// `set-cookie` values it answers with.
    pub set_cookies: &'static [&'static str],
}

/// The resource the test page serves at `path`, if it is one of its own.
pub fn page_resource(path: &str) -> Option<PageResource> {
    let (content_type, body, caching): (_, &'static [u8], _) = match path {
        PAGE_LOAD_PATH => (
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
            Caching::ETag("\"pl-page-1\""),
        ),
        "/pl/site.css" => ("text/css", CSS.as_bytes(), Caching::ETag("\"pl-css-1\"")),
        "/pl/head.js" => (
            "text/javascript",
            HEAD_JS.as_bytes(),
            Caching::ETag("\"pl-js-1\""),
        ),
        "/pl/app.mjs" => (
            "text/javascript",
            b"export {};\n",
            Caching::LastModified("Tue, 01 Dec 2026 10:00:00 GMT"),
        ),
        "/pl/img.png" | "/pl/icon.png" => ("image/png", PNG, Caching::Fresh),
        // Not a real font: the browser fetches it, then fails to decode it, which
        // changes nothing on the wire.
        "/pl/font.woff2" => ("font/woff2", b"wOF2", Caching::Fresh),
        "/pl/api/fetch" | "/pl/api/xhr" => ("application/json", b"{}", Caching::NoStore),
        _ => return None,
    };
    // The document sets two cookies, as most sites do: every later request carries
    // them, so how a browser writes a `cookie` field in HPACK is on the wire.
    let set_cookies: &[&str] = if path == PAGE_LOAD_PATH {
        &[
            "pl_session=0f3a9c1d; Path=/; Secure; HttpOnly",
            "pl_pref=dark; Path=/; Secure",
        ]
    } else {
        &[]
    };
    Some(PageResource {
        content_type,
        body,
        caching,
        set_cookies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::discover::{subresources, Viewport};

    /// What the page asks for, as mummer's page load reads it: everything but the
    /// script's own `fetch()` and XHR, each served by the page.
    #[test]
    fn the_page_serves_everything_it_asks_for() {
        let url = url::Url::parse("https://inspect.test/page-load").expect("url");
        let found = subresources(PAGE, &url, Viewport::default()).list;
        let paths: Vec<&str> = found.iter().map(|s| s.url.path()).collect();
        assert_eq!(
            paths,
            [
                "/pl/site.css",
                "/pl/head.js",
                "/pl/app.mjs",
                "/pl/img.png",
                "/pl/icon.png"
            ]
        );
        for p in paths {
            assert!(page_resource(p).is_some(), "{p} is served");
        }
        let css = crate::page::css::read(CSS);
        assert_eq!(css.fonts, ["/pl/font.woff2"]);
        assert!(page_resource("/pl/font.woff2").is_some());
        assert!(page_resource("/other").is_none());
    }

    #[test]
    fn validators_are_answered_304_only_when_they_match() {
        let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        let css = page_resource("/pl/site.css").expect("css").caching;
        assert!(css.not_modified(&h("if-none-match", "\"pl-css-1\"")));
        assert!(css.not_modified(&h("If-None-Match", "\"x\", \"pl-css-1\"")));
        assert!(!css.not_modified(&h("if-none-match", "\"pl-css-0\"")));
        assert!(!css.not_modified(&[]));
        let module = page_resource("/pl/app.mjs").expect("module").caching;
        assert!(module.not_modified(&h("if-modified-since", "Tue, 01 Dec 2026 10:00:00 GMT")));
        assert!(!module.not_modified(&h("if-modified-since", "Mon, 30 Nov 2026 10:00:00 GMT")));
        let image = page_resource("/pl/img.png").expect("image").caching;
        assert!(!image.not_modified(&h("if-none-match", "*")));
        assert_eq!(image.headers(), [("cache-control", "max-age=3600")]);
    }
}
