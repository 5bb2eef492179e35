//! A page load, as Chromium does it: [`Session::load_page`] fetches a document, then what
//! the browser would fetch for it — stylesheets, scripts, images, the fonts and
//! imports its stylesheets ask for, and the icon — over the session's connections,
//! cookies and cache, each with its request kind's headers and Chromium's priority, and
//! reports every one (fetched, failed, or left out and why). httpcloak's Warmup, with
//! the browser's own choices.
//!
//! What is fetched and in what order is [`discover`] (HTML) and [`css`] (stylesheets);
//! this module only sends and counts. Order on the wire: the document; then every
//! subresource of the document in document order, sent together (HTTP/2 carries their
//! priorities); what a stylesheet asks for as soon as that stylesheet has arrived; the
//! icon once everything else is done (after the load event, as Chromium does).

pub mod css;
pub mod discover;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use url::Url;

use crate::client::CacheStatus;
use crate::error::{Error, Result};
use crate::profile::RequestKind;
use crate::request::RequestPriority;
use crate::request::{Request, RequestBuilder};
use crate::session::Session;
use crate::Response;
use discover::{Subresource, Viewport};
use http::Method;

/// Limits and choices of a page load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// At most this many subresources are fetched (100 by default); the rest are
    /// reported as left out.
    pub max_subresources: usize,
    /// No new subresource is started once this many body bytes arrived (32 MiB by
    /// default).
    pub max_bytes: u64,
    /// The whole load, document included, ends by then (30 s by default); what is
    /// still under way is reported as cut.
    pub timeout: Duration,
    /// Only subresources of the document's origin (default: all, as a browser).
    pub same_origin_only: bool,
    /// Only these kinds (default: every kind; the icon is an image).
    pub kinds: Option<Vec<RequestKind>>,
    /// The icon too (default true).
    pub favicon: bool,
    /// What `srcset`, `sizes` and `<source media>` are chosen for.
    pub viewport: Viewport,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_subresources: 100,
            max_bytes: 32 << 20,
            timeout: Duration::from_secs(30),
            same_origin_only: false,
            kinds: None,
            favicon: true,
            viewport: Viewport::default(),
        }
    }
}

/// What became of one subresource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// A response arrived (any status).
    Fetched {
        /// Its status.
        status: u16,
        /// Body bytes (decoded).
        bytes: u64,
        /// How the session's cache took part.
        cache: CacheStatus,
    },
    /// The request failed.
    Failed {
        /// Why.
        error: String,
    },
    /// Not fetched: a limit or an option left it out.
    LeftOut {
        /// Which (`count limit`, `byte limit`, `time limit`, `other origin`, `kind`).
        reason: String,
    },
}

/// One subresource of a page load.
#[derive(Clone, Debug, Serialize)]
pub struct Fetched {
    /// Its URL.
    pub url: String,
    /// The request kind (its headers).
    pub kind: RequestKind,
    /// Where it was found (`link rel=stylesheet`, `img srcset`, `@font-face`, ...).
    pub found_in: &'static str,
    /// The `priority` header it carried (`None`: Chromium's default, not sent).
    pub priority: Option<String>,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// From the load's start to its response's end, in milliseconds.
    pub started_ms: u64,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
}

/// A finished page load.
#[derive(Debug)]
pub struct PageLoad {
    /// The document's response.
    pub document: Response,
    /// Every subresource found, in the order they were sent (left-out ones where they
    /// were found).
    pub subresources: Vec<Fetched>,
    /// Distinct subresources found beyond what one document or stylesheet lists
    /// ([`discover::MAX_FOUND`]): counted, neither listed nor fetched.
    pub not_listed: usize,
    /// Bytes of the document past [`MAX_DOCUMENT_BYTES`], not read for subresources.
    pub document_bytes_not_read: u64,
    /// The whole load.
    pub took: Duration,
}

impl PageLoad {
    /// Whether every subresource that was sent got a response (a 404 is a response;
    /// a transport error or the time limit is not). Left-out ones do not count.
    pub fn complete(&self) -> bool {
        !self.subresources.iter().any(|f| {
            matches!(&f.outcome, Outcome::Failed { .. })
                || matches!(&f.outcome, Outcome::LeftOut { reason } if reason == "time limit")
        })
    }
}

/// What a page load sends its requests through: a [`Session`], or an engine session
/// (whose requests go through the engine's retries, breakers and rate limits).
pub trait Fetcher: Sync {
    /// Sends `request`, following redirects, through the session's cache.
    fn fetch(&self, request: Request)
        -> impl std::future::Future<Output = Result<Response>> + Send;
}

impl Fetcher for Session {
    fn fetch(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<Response>> + Send {
        self.execute(request)
    }
}

impl Fetcher for crate::engine::EngineSession {
    fn fetch(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<Response>> + Send {
        self.execute(request)
    }
}

/// Loads `url` through `session` as Chromium loads a page (see the module
/// documentation).
///
/// # Errors
///
/// The document's own failure (transport errors, the time limit) and an invalid URL;
/// a subresource's failure is in its [`Fetched`] entry instead.
pub async fn load<F: Fetcher>(session: &F, url: &str, options: &LoadOptions) -> Result<PageLoad> {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let document = tokio::time::timeout(
        options.timeout,
        session.fetch(Request::new(Method::GET, url)),
    )
    .await
    .map_err(|_| Error::timeout(format!("after {:?} loading the document", options.timeout)))??;
    let base = Url::parse(document.url()).map_err(|e| Error::invalid_url(document.url(), e))?;
    let (html, document_bytes_not_read) = if is_html(&document) {
        readable_part(document.body())
    } else {
        (String::new(), 0)
    };
    let discovered = discover::subresources(&html, &base, options.viewport);
    drop(html);
    let mut found = discovered.list;
    let favicon = match found.last() {
        Some(s) if s.found_in == "favicon" => found.pop(),
        _ => None,
    };

    let mut run = Run {
        session,
        options,
        base: &base,
        started,
        deadline,
        sent: 0,
        bytes: 0,
        seen: found.iter().map(|s| s.url.clone()).collect(),
        done: Vec::new(),
        next_place: 0,
        not_listed: discovered.not_listed,
    };
    let mut running = FuturesUnordered::new();
    for sub in found {
        if let Some(fetch) = run.admit(sub) {
            running.push(fetch);
        }
    }
    run.drain(&mut running).await;
    if let Some(icon) = favicon.filter(|_| options.favicon) {
        if let Some(fetch) = run.admit(icon) {
            running.push(fetch);
        }
        run.drain(&mut running).await;
    }
    let not_listed = run.not_listed;
    Ok(PageLoad {
        document,
        subresources: run.in_order(),
        not_listed,
        document_bytes_not_read,
        took: started.elapsed(),
    })
}

/// The most bytes of a document read for subresources. A browser parses everything; a
/// page load stops here so a hostile document costs bounded memory (the parse tree is
/// many times the text), and says how much it did not read.
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;

/// The document's text up to [`MAX_DOCUMENT_BYTES`] (cut at a character boundary), and
/// how many bytes were left unread.
fn readable_part(body: &[u8]) -> (String, u64) {
    let mut end = body.len().min(MAX_DOCUMENT_BYTES);
    // Back to the start of a UTF-8 sequence, so the cut does not make a U+FFFD.
    while end < body.len() && end > 0 && (body[end] & 0xc0) == 0x80 {
        end -= 1;
    }
    let text = String::from_utf8_lossy(&body[..end]).into_owned();
    (text, (body.len() - end) as u64)
}

/// A load under way: what was sent and what came back.
struct Run<'a, F> {
    session: &'a F,
    options: &'a LoadOptions,
    base: &'a Url,
    started: Instant,
    deadline: Instant,
    sent: usize,
    bytes: u64,
    /// URLs found so far (each fetched once).
    seen: HashSet<Url>,
    /// Each result with its place: the order subresources were admitted in.
    done: Vec<(usize, Fetched)>,
    /// The next admission's place.
    next_place: usize,
    /// Found beyond the listing limits (the document's, each stylesheet's).
    not_listed: usize,
}

/// One subresource in flight: it, the `priority` header it carried, when it started,
/// and its response.
type InFlight<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    usize,
                    Subresource,
                    Option<String>,
                    Instant,
                    Result<Response>,
                ),
            > + Send
            + 'a,
    >,
>;

impl<'a, F: Fetcher> Run<'a, F> {
    /// Starts `sub`, or files it as left out and why.
    fn admit(&mut self, sub: Subresource) -> Option<InFlight<'a>> {
        let left_out = if self.options.same_origin_only && sub.url.origin() != self.base.origin() {
            Some("other origin")
        } else if self
            .options
            .kinds
            .as_ref()
            .is_some_and(|k| !k.contains(&sub.kind))
        {
            Some("kind")
        } else if self.sent >= self.options.max_subresources {
            Some("count limit")
        } else if self.bytes >= self.options.max_bytes {
            Some("byte limit")
        } else if Instant::now() >= self.deadline {
            Some("time limit")
        } else {
            None
        };
        let header = sub.priority.header_value();
        let place = self.next_place;
        self.next_place += 1;
        if let Some(reason) = left_out {
            let outcome = Outcome::LeftOut {
                reason: reason.into(),
            };
            self.file(place, &sub, header, outcome, 0, 0);
            return None;
        }
        self.sent += 1;
        let mut request = RequestBuilder::new((), Request::from_url(Method::GET, sub.url.clone()))
            .kind(sub.kind)
            .priority(sub.priority);
        if sub.cors && sub.kind != RequestKind::Font {
            // CORS mode (module scripts, `crossorigin`): Chromium sends `Origin` even
            // to the same origin; fonts get both from their template and the session.
            request = request
                .header("sec-fetch-mode", "cors")
                .header("origin", &self.base.origin().ascii_serialization());
        }
        if let Some(from) = &sub.referrer {
            if let Some(referer) = crate::session::nav::referrer(from, &sub.url) {
                request = request.header("referer", &referer);
            }
        }
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let header_sent = header.clone();
        let session = self.session;
        Some(Box::pin(async move {
            let at = Instant::now();
            let sent = async {
                match request.build() {
                    Ok(request) => session.fetch(request).await,
                    Err(e) => Err(e),
                }
            };
            let response = match tokio::time::timeout_at(deadline, sent).await {
                Ok(r) => r,
                Err(_) => Err(Error::timeout("the page load's time limit")),
            };
            (place, sub, header_sent, at, response)
        }))
    }

    /// Waits for everything in flight, filing each result and starting what a
    /// stylesheet asks for as it arrives.
    async fn drain(&mut self, running: &mut FuturesUnordered<InFlight<'a>>) {
        while let Some((place, sub, header, at, response)) = running.next().await {
            let started_ms = at.duration_since(self.started).as_millis() as u64;
            let took_ms = at.elapsed().as_millis() as u64;
            let outcome = match response {
                Ok(r) => {
                    let bytes = r.body().len() as u64;
                    self.bytes = self.bytes.saturating_add(bytes);
                    if sub.kind == RequestKind::Style && r.status().is_success() {
                        for next in self.asked_by_stylesheet(&sub.url, r.body()) {
                            if let Some(fetch) = self.admit(next) {
                                running.push(fetch);
                            }
                        }
                    }
                    Outcome::Fetched {
                        status: r.status().as_u16(),
                        bytes,
                        cache: r.cache_status(),
                    }
                }
                Err(e) if e.is_timeout() && Instant::now() >= self.deadline => Outcome::LeftOut {
                    reason: "time limit".into(),
                },
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                },
            };
            self.file(place, &sub, header, outcome, started_ms, took_ms);
        }
    }

    /// Files what became of `sub`, at its `place` in the list.
    fn file(
        &mut self,
        place: usize,
        sub: &Subresource,
        priority: Option<String>,
        outcome: Outcome,
        started_ms: u64,
        took_ms: u64,
    ) {
        self.done.push((
            place,
            Fetched {
                url: sub.url.to_string(),
                kind: sub.kind,
                found_in: sub.found_in,
                priority,
                outcome,
                started_ms,
                took_ms,
            },
        ));
    }

    /// The results in the order the subresources were found and sent.
    fn in_order(self) -> Vec<Fetched> {
        let mut done = self.done;
        done.sort_by_key(|(place, _)| *place);
        done.into_iter().map(|(_, f)| f).collect()
    }

    /// What the stylesheet at `url` asks for: its imports, then the fonts it uses.
    fn asked_by_stylesheet(&mut self, url: &Url, body: &[u8]) -> Vec<Subresource> {
        let sheet = css::read(&String::from_utf8_lossy(body));
        self.not_listed = self.not_listed.saturating_add(sheet.not_listed);
        let mut out = Vec::new();
        let imports = sheet
            .imports
            .iter()
            .map(|u| (u, RequestKind::Style, "@import"));
        let fonts = sheet
            .fonts
            .iter()
            .map(|u| (u, RequestKind::Font, "@font-face"));
        for (href, kind, found_in) in imports.chain(fonts) {
            let Ok(mut target) = url.join(href) else {
                continue;
            };
            target.set_fragment(None);
            if !matches!(target.scheme(), "http" | "https") || !self.seen.insert(target.clone()) {
                continue;
            }
            out.push(Subresource {
                url: target,
                kind,
                // Fonts are fetched in CORS mode, which the font template says.
                cors: false,
                // An imported stylesheet is VeryHigh; a font `u=4`, as a live
                // Chromium 156 page load sent it (Blink's table says VeryHigh for a
                // font that layout needs).
                priority: if kind == RequestKind::Font {
                    RequestPriority::chromium(4, false)
                } else {
                    RequestPriority::chromium(0, false)
                },
                found_in,
                referrer: Some(url.clone()),
            });
        }
        out
    }
}

/// Whether the response is an HTML document worth reading for subresources.
fn is_html(response: &Response) -> bool {
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    content_type.is_empty()
        || content_type.starts_with("text/html")
        || content_type.starts_with("application/xhtml+xml")
}
