//! The inspector's page-load test page: a document at [`PAGE_LOAD_PATH`] with a
//! stylesheet, a classic and a module script, an image, a web font used by the
//! stylesheet, an icon, and a `fetch()` and an XHR from its script, each answered with a
//! body of the right type. Pointing a real browser and `Session::load_page` at it
//! shows, request by request, how each loads a page (the conformance test compares
//! them). Every other path gets the connection's report.

/// The page-load test page.
pub const PAGE_LOAD_PATH: &str = "/page-load";

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

/// The content type and body the test page serves at `path`, if it is one of its own.
pub fn page_resource(path: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match path {
        PAGE_LOAD_PATH => ("text/html; charset=utf-8", PAGE.as_bytes()),
        "/pl/site.css" => ("text/css", CSS.as_bytes()),
        "/pl/head.js" => ("text/javascript", HEAD_JS.as_bytes()),
        "/pl/app.mjs" => ("text/javascript", b"export {};\n"),
        "/pl/img.png" | "/pl/icon.png" => ("image/png", PNG),
        // Not a real font: the browser fetches it, then fails to decode it, which
        // changes nothing on the wire.
        "/pl/font.woff2" => ("font/woff2", b"wOF2"),
        "/pl/api/fetch" | "/pl/api/xhr" => ("application/json", b"{}"),
        _ => return None,
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
        let found = subresources(PAGE, &url, Viewport::default());
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
}
