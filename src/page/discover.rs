//! What an HTML document makes Chromium fetch, and in what order, with what priority:
//! the one place that decides a page load's subresources. Pure: the document's bytes
//! and URL in, an ordered list out; [`super::load`] fetches it.
//!
//! Read with html5ever's tokenizer (the parser Servo uses: broken markup is tokenized
//! as a browser tokenizes it), as Chromium's preload scanner reads a page: from tags,
//! without building the tree. What is found, in document order: `<link rel=stylesheet>` (not `alternate`), `<link rel=preload>` with its
//! `as`, `<link rel=modulepreload>`, `<script src>` (classic, `async`, `defer`,
//! `type=module`; `nomodule` and unknown types are not fetched), `<img>` with `srcset`
//! and `sizes` chosen at the viewport width and device pixel ratio, `<picture>`'s first
//! matching `<source>`, and one icon (`<link rel=icon>`, else `/favicon.ico`), fetched
//! last, after the load. `<base href>` applies. A URL is fetched once (Chromium's memory
//! cache). `loading=lazy` images, iframes, media and CSS backgrounds need a layout and
//! are left out; fonts come from the stylesheets ([`super::css`]).
//!
//! Priorities are Blink's `ResourceLoadPriority` as the network sees it (`u=` of the
//! `priority` header; the HTTP/2 weight follows from it): stylesheets VeryHigh (`u=0`),
//! parser-blocking and module scripts High (`u=1`; a parser-blocking one after the
//! first image Medium, `u=2`), `async`/`defer` classic scripts Low (`u=3`), the first
//! five images that are not small Medium and incremental (`u=2, i`), later ones Low
//! (`i`), fonts from stylesheets `u=4`, the icon High and incremental (`u=1, i`). What
//! a live Chromium 156 page load sent is checked by `tests/conformance_page_load.rs`;
//! the rest follows Blink's priority table.
//!
//! Bounded for hostile documents: at most [`MAX_FOUND`] subresources are listed (the
//! rest are counted, never dropped silently), and finding a URL again is a set lookup,
//! so a page of a hundred thousand images costs its parse and no more.

use std::cell::RefCell;
use std::collections::HashSet;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use url::Url;

use crate::profile::RequestKind;
use crate::request::RequestPriority as Priority;
use level::{high, incremental, low, medium, very_high, very_low};

/// Blink's `ResourceLoadPriority` levels as the network sees them.
mod level {
    use crate::request::RequestPriority;

    pub fn very_high() -> RequestPriority {
        RequestPriority::chromium(0, false)
    }
    pub fn high() -> RequestPriority {
        RequestPriority::chromium(1, false)
    }
    pub fn medium() -> RequestPriority {
        RequestPriority::chromium(2, false)
    }
    pub fn low() -> RequestPriority {
        RequestPriority::chromium(3, false)
    }
    pub fn very_low() -> RequestPriority {
        RequestPriority::chromium(4, false)
    }
    /// The same urgency, incremental.
    pub fn incremental(p: RequestPriority) -> RequestPriority {
        RequestPriority::chromium(p.urgency, true)
    }
}

/// One subresource to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// Absolute URL.
    pub url: Url,
    /// The profile's request kind whose headers it takes.
    pub kind: RequestKind,
    /// `sec-fetch-mode: cors` over the template's (module scripts, `crossorigin`).
    pub cors: bool,
    /// Its priority.
    pub priority: Priority,
    /// Where it was found (`link rel=stylesheet`, `img srcset`, ...).
    pub found_in: &'static str,
    /// The stylesheet that asked for it (fonts, `@import`): its `Referer`.
    pub referrer: Option<Url>,
}

/// The screen a page is laid out for: what `srcset`, `sizes` and `<source media>`
/// are chosen against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Viewport {
    /// CSS pixels.
    pub width: u32,
    /// Device pixels per CSS pixel.
    pub device_pixel_ratio: f64,
}

impl Default for Viewport {
    /// A desktop window as Chromium opens it on a 1920-pixel screen, ratio 1.
    fn default() -> Self {
        Viewport {
            width: 1920,
            device_pixel_ratio: 1.0,
        }
    }
}

/// The most subresources one document lists (its icon included); the API's
/// `max_subresources` bound too.
pub const MAX_FOUND: usize = 10_000;

/// What a document asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    /// In order; the icon comes last and is marked `found_in: "favicon"`.
    pub list: Vec<Subresource>,
    /// Distinct subresources found beyond [`MAX_FOUND`]: counted, not listed.
    pub not_listed: usize,
}

/// What `document` (fetched from `url`) makes the browser fetch, in order.
pub fn subresources(document: &str, url: &Url, viewport: Viewport) -> Discovered {
    let scanner = Scanner {
        state: RefCell::new(Scan {
            found: Found {
                list: Vec::new(),
                seen: HashSet::new(),
                not_listed: 0,
                base: url.clone(),
                seen_image: false,
                boosted_images: 0,
                icon: None,
            },
            viewport,
            base_set: false,
            picture: None,
            templates: 0,
        }),
    };
    let tokenizer = Tokenizer::new(scanner, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(document));
    // The scanner never asks to stop for a script, so one feed reads everything.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let mut scan = tokenizer.sink.state.into_inner();
    scan.end_picture();
    let mut found = scan.found;
    let icon = found
        .icon
        .take()
        .or_else(|| url.join("/favicon.ico").ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    if let Some(icon) = icon.filter(|i| !found.seen.contains(i)) {
        if found.list.len() >= MAX_FOUND {
            // Room for the icon, which every browser fetches: the last one listed is
            // counted instead.
            found.list.pop();
            found.not_listed += 1;
        }
        found.push(
            icon,
            RequestKind::Image,
            false,
            incremental(high()),
            "favicon",
        );
    }
    Discovered {
        list: found.list,
        not_listed: found.not_listed,
    }
}

/// A start tag as the scanner keeps it: its name and attributes (lower-case names; the
/// tokenizer keeps the first of a repeated attribute, as the HTML standard says).
#[derive(Clone, Debug)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
}

impl Element {
    fn from_tag(tag: &Tag) -> Element {
        Element {
            name: tag.name.to_string(),
            attrs: tag
                .attrs
                .iter()
                .map(|a| (a.name.local.to_string(), a.value.to_string()))
                .collect(),
        }
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// html5ever's tokenizer fed into [`Found`]: a preload scanner (Chromium's finds a page's
/// subresources the same way, from tokens, before the tree is built). Only tokens, no
/// tree: time and memory grow with the document's length, never with its nesting
/// (html5ever's tree builder walks the open-element stack on every tag, which a page of
/// 200 000 unclosed `<div>`s turns quadratic).
struct Scanner {
    state: RefCell<Scan>,
}

struct Scan {
    found: Found,
    viewport: Viewport,
    /// The first `<base href>` was taken (later ones do not count).
    base_set: bool,
    /// Inside a `<picture>`: what it holds so far.
    picture: Option<Picture>,
    /// `<template>`s open: their contents are inert (not fetched, as Chromium's scanner
    /// skips them).
    templates: usize,
}

/// An open `<picture>`.
#[derive(Default)]
struct Picture {
    /// Its `<source>`s so far.
    sources: Vec<Element>,
    /// Its `<img>` came: the picture's image is chosen (later ones are not its choice).
    done: bool,
}

impl TokenSink for Scanner {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let Token::TagToken(tag) = token else {
            return TokenSinkResult::Continue;
        };
        let mut scan = self.state.borrow_mut();
        let name: &str = &tag.name;
        if tag.kind == TagKind::EndTag {
            match name {
                "template" => scan.templates = scan.templates.saturating_sub(1),
                "picture" => scan.end_picture(),
                _ => {}
            }
            return TokenSinkResult::Continue;
        }
        if name == "template" {
            scan.templates += 1;
        }
        if scan.templates == 0 {
            scan.start_tag(Element::from_tag(&tag));
        }
        // What the tree builder would tell the tokenizer: these elements' text is not
        // markup (a `<script>` holding "<img src=x>" asks for no image).
        match name {
            "script" => TokenSinkResult::RawData(RawKind::ScriptData),
            "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript" => {
                TokenSinkResult::RawData(RawKind::Rawtext)
            }
            "textarea" | "title" => TokenSinkResult::RawData(RawKind::Rcdata),
            "plaintext" => TokenSinkResult::Plaintext,
            _ => TokenSinkResult::Continue,
        }
    }
}

impl Scan {
    fn start_tag(&mut self, el: Element) {
        match el.name.as_str() {
            "base" if !self.base_set => {
                if let Some(href) = el.attr("href").and_then(|h| self.found.base.join(h).ok()) {
                    self.found.base = href;
                    self.base_set = true;
                }
            }
            "link" => self.found.link(&el),
            "script" => self.found.script(&el),
            "picture" if self.picture.is_none() => self.picture = Some(Picture::default()),
            "source" => {
                if let Some(picture) = self.picture.as_mut().filter(|p| !p.done) {
                    picture.sources.push(el);
                }
            }
            "img" => match self.picture.as_mut() {
                // A picture's image: its first matching source, else its own.
                Some(picture) if !picture.done => {
                    picture.done = true;
                    let source = chosen_source(&picture.sources).cloned();
                    self.found.img(&el, source.as_ref(), self.viewport);
                }
                Some(_) => {}
                None => self.found.img(&el, None, self.viewport),
            },
            _ => {}
        }
    }

    /// `</picture>` (or the document's end): a picture with sources but no `<img>`
    /// still loads its chosen source.
    fn end_picture(&mut self) {
        let Some(picture) = self.picture.take().filter(|p| !p.done) else {
            return;
        };
        if let Some(source) = chosen_source(&picture.sources) {
            self.found.img(source, Some(source), self.viewport);
        }
    }
}

/// A picture's first `<source>` whose `type` Chromium decodes and whose `media` applies.
fn chosen_source(sources: &[Element]) -> Option<&Element> {
    sources
        .iter()
        .find(|s| supported_image_type(s.attr("type")) && media_applies(s.attr("media")))
}

struct Found {
    list: Vec<Subresource>,
    /// URLs listed or counted so far (each once).
    seen: HashSet<Url>,
    /// Distinct URLs found once the list was full.
    not_listed: usize,
    base: Url,
    /// Whether an image came before: scripts after it are "late" (Medium).
    seen_image: bool,
    /// Images boosted so far (Chromium boosts the first five that are not small).
    boosted_images: usize,
    /// The first `rel=icon` link.
    icon: Option<Url>,
}

impl Found {
    fn resolve(&self, href: &str) -> Option<Url> {
        let href = href.trim();
        if href.is_empty() {
            return None;
        }
        let mut url = self.base.join(href).ok()?;
        url.set_fragment(None);
        matches!(url.scheme(), "http" | "https").then_some(url)
    }

    fn push(
        &mut self,
        url: Url,
        kind: RequestKind,
        cors: bool,
        priority: Priority,
        found_in: &'static str,
    ) {
        if !self.seen.insert(url.clone()) {
            return;
        }
        if self.list.len() >= MAX_FOUND {
            self.not_listed += 1;
            return;
        }
        self.list.push(Subresource {
            url,
            kind,
            cors,
            priority,
            found_in,
            referrer: None,
        });
    }

    fn link(&mut self, e: &Element) {
        let Some(url) = e.attr("href").and_then(|h| self.resolve(h)) else {
            return;
        };
        let rel = e.attr("rel").unwrap_or_default().to_ascii_lowercase();
        let rels: Vec<&str> = rel.split_ascii_whitespace().collect();
        let cors = e.attr("crossorigin").is_some();
        if rels.contains(&"stylesheet") {
            if rels.contains(&"alternate") || e.attr("disabled").is_some() {
                return;
            }
            // A stylesheet for another medium still loads, at the lowest priority.
            let priority = if media_applies(e.attr("media")) {
                very_high()
            } else {
                very_low()
            };
            self.push(
                url,
                RequestKind::Style,
                cors,
                priority,
                "link rel=stylesheet",
            );
        } else if rels.contains(&"modulepreload") {
            self.push(
                url,
                RequestKind::Script,
                true,
                high(),
                "link rel=modulepreload",
            );
        } else if rels.contains(&"preload") {
            let as_ = e.attr("as").unwrap_or_default().to_ascii_lowercase();
            let (kind, priority, cors) = match as_.as_str() {
                "style" => (RequestKind::Style, very_high(), cors),
                "script" => (RequestKind::Script, high(), cors),
                // A font is always fetched in CORS mode.
                "font" => (RequestKind::Font, high(), true),
                "image" => (RequestKind::Image, incremental(low()), cors),
                "fetch" => (RequestKind::Fetch, incremental(high()), true),
                _ => return,
            };
            self.push(url, kind, cors, priority, "link rel=preload");
        } else if rels.contains(&"icon") && self.icon.is_none() {
            self.icon = Some(url);
        }
    }

    fn script(&mut self, e: &Element) {
        let Some(url) = e.attr("src").and_then(|s| self.resolve(s)) else {
            return;
        };
        if e.attr("nomodule").is_some() {
            return;
        }
        let kind = e.attr("type").map(|t| t.trim().to_ascii_lowercase());
        let module = match kind.as_deref() {
            None | Some("") | Some("text/javascript") | Some("application/javascript") => false,
            Some("module") => true,
            // A data block (`text/template`, JSON, ...) is not fetched.
            Some(_) => return,
        };
        // A module script is High, as a live Chromium 156 page load sent it (without
        // `async`); async and deferred classic ones Low, as Blink's table says.
        let priority = if e.attr("async").is_some() || (!module && e.attr("defer").is_some()) {
            low()
        } else if module {
            high()
        } else if self.seen_image {
            medium()
        } else {
            high()
        };
        let cors = module || e.attr("crossorigin").is_some();
        let found_in = if module {
            "script type=module"
        } else {
            "script src"
        };
        self.push(url, RequestKind::Script, cors, priority, found_in);
    }

    /// An image: from `source`'s `srcset` when a `<picture>` chose one, else `img`'s
    /// `srcset`, else its `src`.
    fn img(&mut self, e: &Element, source: Option<&Element>, viewport: Viewport) {
        if e.attr("loading")
            .is_some_and(|l| l.trim().eq_ignore_ascii_case("lazy"))
        {
            return;
        }
        let from = source.unwrap_or(e);
        let chosen = from
            .attr("srcset")
            .and_then(|set| choose_from_srcset(set, from.attr("sizes"), viewport))
            .or_else(|| source.is_none().then(|| e.attr("src")).flatten());
        let found_in = match (source.is_some(), from.attr("srcset").is_some()) {
            (true, _) => "picture source",
            (false, true) => "img srcset",
            (false, false) => "img src",
        };
        if let Some(url) = chosen.and_then(|c| self.resolve(c)) {
            let cors = e.attr("crossorigin").is_some();
            // The first five images that are not small (both sides given, at most
            // 10 000 px² together) are Medium, later ones Low: Chromium's
            // image-loading prioritization (Medium seen on a live Chromium 156 load).
            let small = match (dimension(e.attr("width")), dimension(e.attr("height"))) {
                (Some(w), Some(h)) => w * h <= 10_000.0,
                _ => false,
            };
            let priority = if !small && self.boosted_images < 5 {
                self.boosted_images += 1;
                incremental(medium())
            } else {
                incremental(low())
            };
            self.push(url, RequestKind::Image, cors, priority, found_in);
            self.seen_image = true;
        }
    }
}

/// A `width`/`height` attribute in CSS px (a plain number).
fn dimension(value: Option<&str>) -> Option<f64> {
    value?
        .trim()
        .trim_end_matches("px")
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Image types Chromium 156 decodes (what `<source type>` is checked against).
fn supported_image_type(t: Option<&str>) -> bool {
    let Some(t) = t.map(str::trim) else {
        return true;
    };
    let t = t.to_ascii_lowercase();
    matches!(
        t.split(';').next().unwrap_or_default().trim(),
        "" | "image/avif"
            | "image/webp"
            | "image/jxl"
            | "image/apng"
            | "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/svg+xml"
            | "image/bmp"
            | "image/x-icon"
            | "image/vnd.microsoft.icon"
    )
}

/// Whether a `media` attribute applies to a screen (without a viewport query:
/// `all`, `screen`, none; a query with `min-width`/`max-width` is judged against the
/// default viewport by [`media_query_applies`]).
fn media_applies(media: Option<&str>) -> bool {
    match media.map(|m| m.trim().to_ascii_lowercase()) {
        None => true,
        Some(m) if m.is_empty() => true,
        Some(m) => m
            .split(',')
            .any(|q| media_query_applies(q.trim(), Viewport::default())),
    }
}

/// One media query: a type (`all`, `screen`, `print`, ...) and `and (min-width: Npx)`
/// / `(max-width: Npx)` features; a feature it does not know does not apply.
fn media_query_applies(query: &str, viewport: Viewport) -> bool {
    let mut applies = true;
    for part in query.split(" and ") {
        let part = part.trim();
        let ok = match part {
            "" | "all" | "screen" | "only screen" => true,
            "print" | "speech" | "not screen" | "only print" => false,
            p if p.starts_with('(') && p.ends_with(')') => {
                let inner = &p[1..p.len() - 1];
                match inner.split_once(':') {
                    Some((feature, value)) => match (feature.trim(), css_px(value.trim())) {
                        ("min-width", Some(px)) => f64::from(viewport.width) >= px,
                        ("max-width", Some(px)) => f64::from(viewport.width) <= px,
                        _ => false,
                    },
                    None => false,
                }
            }
            _ => false,
        };
        applies &= ok;
    }
    applies
}

/// A CSS length in px (`px`, `em`/`rem` at 16 px); `vw` needs the viewport: see
/// [`sizes_width`].
fn css_px(value: &str) -> Option<f64> {
    let v = value.trim();
    let (number, factor) = if let Some(n) = v.strip_suffix("px") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("rem") {
        (n, 16.0)
    } else if let Some(n) = v.strip_suffix("em") {
        (n, 16.0)
    } else {
        (v, 1.0)
    };
    let n: f64 = number.trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some(n * factor)
}

/// The width in CSS px the `sizes` attribute gives the image (100vw without one).
fn sizes_width(sizes: Option<&str>, viewport: Viewport) -> f64 {
    let length = |v: &str| -> Option<f64> {
        let v = v.trim();
        match v.strip_suffix("vw") {
            Some(n) => n
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| n * f64::from(viewport.width) / 100.0),
            None => css_px(v),
        }
    };
    let full = f64::from(viewport.width);
    let Some(sizes) = sizes else { return full };
    for entry in sizes.split(',') {
        let entry = entry.trim();
        if let Some(rest) = entry.strip_prefix('(') {
            let Some((query, value)) = rest.split_once(')') else {
                continue;
            };
            if media_query_applies(&format!("({query})"), viewport) {
                if let Some(w) = length(value) {
                    return w;
                }
            }
        } else if let Some(w) = length(entry) {
            return w;
        }
    }
    full
}

/// The candidate of `srcset` the browser picks: the smallest whose density is at least
/// the device pixel ratio, else the densest (HTML's "select an image source", with
/// Chromium's choice among candidates).
fn choose_from_srcset<'a>(
    set: &'a str,
    sizes: Option<&str>,
    viewport: Viewport,
) -> Option<&'a str> {
    let width = sizes_width(sizes, viewport).max(1.0);
    let mut candidates: Vec<(f64, &str)> = Vec::new();
    for candidate in split_srcset(set) {
        let mut parts = candidate.split_ascii_whitespace();
        let Some(url) = parts.next() else { continue };
        let density = match parts.next() {
            None => Some(1.0),
            Some(d) => {
                if let Some(x) = d.strip_suffix('x') {
                    x.parse::<f64>().ok()
                } else if let Some(w) = d.strip_suffix('w') {
                    w.parse::<f64>().ok().map(|w| w / width)
                } else {
                    None
                }
            }
        };
        if let Some(d) = density.filter(|d| d.is_finite() && *d > 0.0) {
            candidates.push((d, url));
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
    candidates
        .iter()
        .find(|(d, _)| *d >= viewport.device_pixel_ratio)
        .or(candidates.last())
        .map(|(_, url)| *url)
}

/// `srcset`'s candidates: split at commas that end a candidate (a URL may hold
/// commas, e.g. `data:` or `?a=1,2`; a comma right after a URL is the URL's).
fn split_srcset(set: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = set.trim_start_matches([' ', '\t', '\n', '\r', '\x0c', ',']);
    while !rest.is_empty() {
        // The URL runs to the first whitespace.
        let url_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let url = &rest[..url_end];
        if url.ends_with(',') {
            // `a.png, b.png 2x`: commas right after a URL end a candidate without a
            // descriptor.
            out.push(url.trim_end_matches(','));
            rest = rest[url_end..].trim_start_matches([' ', '\t', '\n', '\r', '\x0c', ',']);
            continue;
        }
        // Descriptors run to the next comma.
        let end = rest[url_end..]
            .find(',')
            .map_or(rest.len(), |i| url_end + i);
        out.push(rest[..end].trim());
        rest = rest[end..].trim_start_matches([' ', '\t', '\n', '\r', '\x0c', ',']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(html: &str) -> Vec<(String, RequestKind, u8, bool, &'static str)> {
        let url = Url::parse("https://shop.test/dir/page.html").expect("url");
        subresources(html, &url, Viewport::default())
            .list
            .into_iter()
            .map(|s| {
                (
                    s.url.to_string(),
                    s.kind,
                    s.priority.urgency,
                    s.cors,
                    s.found_in,
                )
            })
            .collect()
    }

    #[test]
    fn a_page_is_read_in_document_order_with_chromiums_priorities() {
        let page = r#"<!doctype html><html><head>
            <link rel="stylesheet" href="/a.css">
            <link rel="stylesheet" href="print.css" media="print">
            <link rel="alternate stylesheet" href="/alt.css">
            <script src="/head.js"></script>
            <script src="/async.js" async></script>
            <script type="module" src="/app.mjs"></script>
            <script nomodule src="/legacy.js"></script>
            <script type="text/template" src="/tpl.html"></script>
            <link rel="modulepreload" href="/dep.mjs">
            <link rel="preload" as="font" href="/f.woff2">
            <link rel="icon" href="/icon.png">
            </head><body>
            <img src="hero.jpg">
            <img src="/small.png" width="50" height="50">
            <script src="/late.js"></script>
            <img src="/lazy.jpg" loading="lazy">
            <img src="/a.css">
            </body></html>"#;
        let got = found(page);
        let want = [
            (
                "https://shop.test/a.css",
                RequestKind::Style,
                0,
                false,
                "link rel=stylesheet",
            ),
            (
                "https://shop.test/dir/print.css",
                RequestKind::Style,
                4,
                false,
                "link rel=stylesheet",
            ),
            (
                "https://shop.test/head.js",
                RequestKind::Script,
                1,
                false,
                "script src",
            ),
            (
                "https://shop.test/async.js",
                RequestKind::Script,
                3,
                false,
                "script src",
            ),
            (
                "https://shop.test/app.mjs",
                RequestKind::Script,
                1,
                true,
                "script type=module",
            ),
            (
                "https://shop.test/dep.mjs",
                RequestKind::Script,
                1,
                true,
                "link rel=modulepreload",
            ),
            (
                "https://shop.test/f.woff2",
                RequestKind::Font,
                1,
                true,
                "link rel=preload",
            ),
            (
                "https://shop.test/dir/hero.jpg",
                RequestKind::Image,
                2,
                false,
                "img src",
            ),
            (
                "https://shop.test/small.png",
                RequestKind::Image,
                3,
                false,
                "img src",
            ),
            (
                "https://shop.test/late.js",
                RequestKind::Script,
                2,
                false,
                "script src",
            ),
            (
                "https://shop.test/icon.png",
                RequestKind::Image,
                1,
                false,
                "favicon",
            ),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(u, k, p, c, f)| (u.to_string(), *k, *p, *c, *f))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn without_an_icon_link_the_favicon_is_at_the_root_and_base_applies() {
        let got = found(r#"<base href="https://cdn.test/x/"><img src="i.png">"#);
        assert_eq!(got[0].0, "https://cdn.test/x/i.png");
        assert_eq!(got[1].0, "https://shop.test/favicon.ico", "the page's root");
        assert_eq!(got[1].4, "favicon");
    }

    #[test]
    fn srcset_and_picture_are_chosen_at_the_viewport() {
        let wide = Viewport::default();
        assert_eq!(
            choose_from_srcset("a.png 1x, b.png 2x", None, wide),
            Some("a.png")
        );
        let retina = Viewport {
            width: 400,
            device_pixel_ratio: 2.0,
        };
        assert_eq!(
            choose_from_srcset("a.png 1x, b.png 2x", None, retina),
            Some("b.png")
        );
        // 100vw at 1920: 480w is density 0.25, 1920w 1.0, 3000w 1.56.
        assert_eq!(
            choose_from_srcset("s.jpg 480w, m.jpg 1920w, l.jpg 3000w", None, wide),
            Some("m.jpg")
        );
        // sizes 50vw: 960 px wide, so 1920w is density 2 and 1000w just above 1.
        assert_eq!(
            choose_from_srcset(
                "s.jpg 480w, m.jpg 1000w, l.jpg 1920w",
                Some("(max-width: 600px) 100vw, 50vw"),
                wide
            ),
            Some("m.jpg")
        );
        assert_eq!(
            choose_from_srcset("only.jpg 10x", None, wide),
            Some("only.jpg"),
            "nothing dense enough: the densest"
        );
        assert_eq!(choose_from_srcset(" , ,", None, wide), None);
        // HTML's rules: a URL runs to whitespace (commas inside it are its own), and a
        // comma right after a URL ends that candidate.
        assert_eq!(
            split_srcset("a.png,b.png 2x, c.png?x=1,2 3x"),
            ["a.png,b.png 2x", "c.png?x=1,2 3x"]
        );
        assert_eq!(split_srcset("a.png, b.png 2x"), ["a.png", "b.png 2x"]);
        assert_eq!(split_srcset("a.png,, b.png,"), ["a.png", "b.png"]);

        let page = r#"<picture>
            <source type="image/x-unknown" srcset="/u.img">
            <source media="(max-width: 600px)" srcset="/small.webp">
            <source type="image/avif" srcset="/wide.avif 1x, /wide2.avif 2x">
            <img src="/fallback.jpg">
            </picture>"#;
        let got = found(page);
        assert_eq!(got[0].0, "https://shop.test/wide.avif");
        assert_eq!(got[0].4, "picture source");
        assert_eq!(got.len(), 2, "the picture's img is not fetched as well");
    }

    #[test]
    fn broken_markup_and_odd_urls_lose_nothing_and_fetch_nothing_wrong() {
        let got = found(
            r#"<link rel=stylesheet href="javascript:alert(1)"><img src="">
            <img src="data:image/png;base64,AAAA"><script src="  /s.js#frag "></script>
            <img src="/x.png"><img src="/x.png#again"><p><img src=/y.png></p>"#,
        );
        let urls: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://shop.test/s.js",
                "https://shop.test/x.png",
                "https://shop.test/y.png",
                "https://shop.test/favicon.ico"
            ]
        );
    }

    #[test]
    fn text_that_is_not_markup_asks_for_nothing() {
        // Tags inside a script, a style, a textarea, a title, a noscript (scripting on,
        // as in Chromium) or a comment are text; a template's contents are inert.
        let got = found(
            r#"<title><img src=/t.png></title><script>document.write('<img src=/w.png>')</script>
            <style>/* <link rel=stylesheet href=/s.css> */</style><!-- <img src=/c.png> -->
            <noscript><img src=/n.png></noscript><textarea><img src=/ta.png></textarea>
            <template><img src=/tpl.png><template><img src=/tpl2.png></template></template>
            <img src=/after.png><svg><script>x</script></svg>"#,
        );
        let urls: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://shop.test/after.png",
                "https://shop.test/favicon.ico"
            ]
        );
    }

    #[test]
    fn deep_nesting_costs_its_length_only() {
        // 100 000 unclosed elements: a tree builder walks its open-element stack on each
        // tag; the scanner does not build one.
        let html = format!("{}<img src=/deep.png>", "<div><span>".repeat(50_000));
        let got = found(&html);
        assert_eq!(got[0].0, "https://shop.test/deep.png");
    }

    #[test]
    fn priority_header_and_weight_follow_chromium() {
        assert_eq!(very_high().header_value().as_deref(), Some("u=0"));
        assert_eq!(incremental(low()).header_value().as_deref(), Some("i"));
        assert_eq!(low().header_value(), None, "the default is left out");
        assert_eq!(
            incremental(high()).header_value().as_deref(),
            Some("u=1, i")
        );
        let weights: Vec<u16> = (0..=7)
            .map(|u| Priority::chromium(u, false).http2_weight)
            .collect();
        assert_eq!(weights, [256, 220, 183, 147, 110, 74, 37, 1]);
        assert_eq!(
            Priority::chromium(200, true).http2_weight,
            1,
            "clamped to 7"
        );
    }
}
