//! A chaos shop for crawler tests: `shop.test` (HTTPS on 127.0.0.1) with about forty
//! linked pages that misbehave on purpose, and `www.shop.test`, the same site on
//! 127.0.0.2 and the same port, which is down (nothing listens) until the test brings it
//! up. Every request is logged with when it came, for which host and path, what it was
//! answered, the session cookie it carried (or was handed) and its HTTP version, so a
//! test judges a crawl from the site's side alone.
//!
//! The pages (layout [`Layout::Full`]):
//! - normal pages, a small graph (root, 5 categories, 15 items) with several links each;
//! - 5 flaky pages (`/flaky/N`): 503 the first 2 times, then 200;
//! - 2 dead pages (`/dead/N`): 500 always; `/missing` 404, `/removed` 410;
//! - `/busy/N`: 429 with `Retry-After: 1` once, then 200; `/busy-date`: 429 with an
//!   HTTP-date `Retry-After` 1-2 s ahead once; `/busy-bare`: 429 without one once;
//! - `/slow`: answered after [`Options::slow`];
//! - `/captcha`: a 200 whose body carries [`CAPTCHA_MARKER`] for the first session that
//!   asks (by its `sid` cookie), and for it alone; the real page for any other;
//! - links into `/private/`, which robots.txt disallows;
//! - links to `www.shop.test` (4 pages and a private one).
//!
//! [`Layout::Small`] is a root, five pages and a private one, for robots.txt variants.
//! Counters (flaky, 429, robots.txt failures) are per host and path, across sessions.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::https::{HttpsServer, Reply, SeenRequest};

/// The site's main host.
pub const HOST: &str = "shop.test";
/// The second host, down until [`ChaosSite::bring_up_www`].
pub const WWW: &str = "www.shop.test";
/// Where `shop.test` listens.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Where `www.shop.test` listens once up (same port as `shop.test`).
pub const WWW_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// What the captcha page says to the session it blocks.
pub const CAPTCHA_MARKER: &str = "PLEASE-SOLVE-CAPTCHA";
/// ALPN `h2` then `http/1.1`.
pub const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN `http/1.1` only.
pub const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

/// How a page behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 200 with links.
    Normal,
    /// 503 the first 2 times, then 200.
    Flaky,
    /// 500 always.
    Dead,
    /// 404.
    NotFound,
    /// 410.
    Gone,
    /// 429 with `Retry-After: 1` once, then 200.
    RetryAfterSeconds,
    /// 429 with an HTTP-date `Retry-After` (1-2 s ahead) once, then 200.
    RetryAfterDate,
    /// 429 without `Retry-After` once, then 200.
    TooManyBare,
    /// 200 after [`Options::slow`].
    Slow,
    /// 200 with [`CAPTCHA_MARKER`] for the first session, the page for the others.
    Captcha,
    /// Under `/private/` (robots.txt disallows it); 200 with links if asked anyway.
    Private,
}

impl Kind {
    /// Whether a crawl that obeys robots.txt ends with the page answered 200.
    pub fn succeeds(self) -> bool {
        !matches!(
            self,
            Kind::Dead | Kind::NotFound | Kind::Gone | Kind::Private
        )
    }

    /// The status a crawl gives the page up with, for good.
    pub fn fails_with(self) -> Option<u16> {
        match self {
            Kind::Dead => Some(500),
            Kind::NotFound => Some(404),
            Kind::Gone => Some(410),
            _ => None,
        }
    }
}

/// Which pages the site has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Every kind of page, on both hosts.
    Full,
    /// `/`, `/s/0`..`/s/4` and `/private/a` on `shop.test` alone.
    Small,
}

/// What `/robots.txt` answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Robots {
    /// 200: `User-agent: *`, `Disallow: /private/`, and `Crawl-delay` when given.
    Rules { crawl_delay: Option<f64> },
    /// This status (401, 404...), no rules.
    Status(u16),
    /// 500 for the first `n` fetches (per host), then the rules without a delay.
    FailFirst(usize),
}

/// How the site is set up.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub alpn: &'static [&'static [u8]],
    pub layout: Layout,
    pub robots: Robots,
    /// How long `/slow` takes.
    pub slow: Duration,
    /// `shop.test`'s gateway failing for a while: every request answered 502.
    pub outage: Option<Outage>,
}

/// A stretch of time when the host answers every request 502 (a load balancer without
/// its backend), starting at a page request and lasting a while.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    /// Page requests (robots.txt not counted) answered normally before it starts.
    pub after_pages: usize,
    /// How long it lasts.
    pub lasts: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            alpn: H2_AND_H1,
            layout: Layout::Full,
            robots: Robots::Rules { crawl_delay: None },
            slow: Duration::from_millis(1500),
            outage: None,
        }
    }
}

/// One request as the site saw it.
#[derive(Clone, Debug)]
pub struct Hit {
    /// When it arrived (before any delay of the answer).
    pub at: Instant,
    /// The latest the client can have let it go: when its connection was accepted if it
    /// was the first on it (the client connects only once its request may go, and the TLS
    /// handshake delays the arrival), else when it arrived.
    pub sent_by: Instant,
    pub host: String,
    pub path: String,
    pub status: u16,
    /// The `sid` cookie the request carried.
    pub sid: Option<String>,
    /// The `sid` this answer handed out (to a request that carried none).
    pub new_sid: Option<String>,
    pub version: http::Version,
    /// A 200 that carried the captcha, not the page.
    pub captcha: bool,
    /// The wait a 429 asked for, counted from `at`.
    pub retry_after: Option<Duration>,
    /// The address of the server that answered.
    pub server: IpAddr,
    /// `x-mummer-worker`, when the crawler tags its requests.
    pub worker: Option<String>,
}

impl Hit {
    /// The session the request belongs to: its cookie, or the one it was handed.
    pub fn session(&self) -> Option<&str> {
        self.sid.as_deref().or(self.new_sid.as_deref())
    }

    /// Answered 200 with the real page (not the captcha).
    pub fn served(&self) -> bool {
        self.status == 200 && !self.captcha
    }

    /// A robots.txt fetch.
    pub fn is_robots(&self) -> bool {
        self.path == "/robots.txt"
    }
}

/// One page of the site.
#[derive(Clone, Debug)]
pub struct Page {
    pub host: &'static str,
    pub path: String,
    pub kind: Kind,
    /// (host, path) of each link, in page order.
    pub links: Vec<(&'static str, String)>,
}

struct State {
    opts: Options,
    pages: HashMap<(String, String), Page>,
    port: OnceLock<u16>,
    /// Requests seen per (host, path).
    counts: Mutex<HashMap<(String, String), usize>>,
    next_sid: AtomicUsize,
    /// The session the captcha page blocks (the first that asked for it).
    captcha_sid: Mutex<Option<String>>,
    hits: Mutex<Vec<Hit>>,
    /// Page requests seen on `shop.test`, and when its outage began.
    page_requests: AtomicUsize,
    outage_began: OnceLock<Instant>,
}

/// The running site.
pub struct ChaosSite {
    state: Arc<State>,
    main: HttpsServer,
    www: Mutex<Option<HttpsServer>>,
    www_up_at: OnceLock<Instant>,
}

impl ChaosSite {
    /// When `shop.test`'s outage began, if it has.
    pub fn outage_began(&self) -> Option<Instant> {
        self.state.outage_began.get().copied()
    }

    /// Starts `shop.test` on 127.0.0.1 (a free port); `www.shop.test` stays down.
    pub async fn start(opts: Options) -> ChaosSite {
        let pages = match opts.layout {
            Layout::Full => full_layout(),
            Layout::Small => small_layout(),
        };
        let state = Arc::new(State {
            opts,
            pages: pages
                .into_iter()
                .map(|p| ((p.host.to_string(), p.path.clone()), p))
                .collect(),
            port: OnceLock::new(),
            counts: Mutex::default(),
            next_sid: AtomicUsize::new(0),
            captcha_sid: Mutex::default(),
            hits: Mutex::default(),
            page_requests: AtomicUsize::new(0),
            outage_began: OnceLock::new(),
        });
        let s = state.clone();
        let main = HttpsServer::start_with_alpn(
            opts.alpn,
            Arc::new(move |req| answer(&s, IpAddr::V4(HOST_ADDR), req)),
            true,
        )
        .await;
        state.port.set(main.addr.port()).unwrap();
        ChaosSite {
            state,
            main,
            www: Mutex::default(),
            www_up_at: OnceLock::new(),
        }
    }

    /// The port both hosts use.
    pub fn port(&self) -> u16 {
        self.main.addr.port()
    }

    /// The certificate both hosts serve (PEM, for `--cacert`).
    pub fn cert_pem(&self) -> &[u8] {
        &self.main.cert_pem
    }

    pub fn layout(&self) -> Layout {
        self.state.opts.layout
    }

    /// `https://HOST:PORT{path}`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port())
    }

    /// Where a crawl starts: `https://shop.test:PORT/`.
    pub fn start_url(&self) -> String {
        self.url(HOST, "/")
    }

    /// `--resolve` values for the hosts of the layout.
    pub fn resolve_args(&self) -> Vec<String> {
        let port = self.port();
        let mut out = vec![format!("{HOST}:{port}:{HOST_ADDR}")];
        if self.layout() == Layout::Full {
            out.push(format!("{WWW}:{port}:{WWW_ADDR}"));
        }
        out
    }

    /// Where `www.shop.test` listens once up.
    pub fn www_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(WWW_ADDR), self.port())
    }

    /// Brings `www.shop.test` up on 127.0.0.2, same port; returns when it listens.
    pub async fn bring_up_www(&self) -> Instant {
        let s = self.state.clone();
        let server = self
            .main
            .sibling(
                self.www_addr(),
                self.state.opts.alpn,
                Arc::new(move |req| answer(&s, IpAddr::V4(WWW_ADDR), req)),
            )
            .await
            .unwrap_or_else(|e| panic!("binding {}: {e}", self.www_addr()));
        let at = Instant::now();
        *self.www.lock().unwrap() = Some(server);
        *self.www_up_at.get_or_init(|| at)
    }

    /// When `www.shop.test` came up, if it did.
    pub fn www_up_at(&self) -> Option<Instant> {
        self.www_up_at.get().copied()
    }

    /// Every request so far, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Every page, sorted by host and path.
    pub fn pages(&self) -> Vec<Page> {
        let mut pages: Vec<Page> = self.state.pages.values().cloned().collect();
        pages.sort_by(|a, b| (a.host, &a.path).cmp(&(b.host, &b.path)));
        pages
    }

    /// The page at `host` `path`, if the site has it.
    pub fn page(&self, host: &str, path: &str) -> Option<&Page> {
        self.state.pages.get(&(host.to_string(), path.to_string()))
    }
}

fn page(host: &'static str, path: &str, kind: Kind, links: Vec<(&'static str, String)>) -> Page {
    Page {
        host,
        path: path.to_string(),
        kind,
        links,
    }
}

fn on(host: &'static str, path: impl Into<String>) -> (&'static str, String) {
    (host, path.into())
}

fn full_layout() -> Vec<Page> {
    use Kind::*;
    let mut pages = Vec::new();
    let mut root: Vec<_> = (0..5).map(|c| on(HOST, format!("/cat/{c}"))).collect();
    root.push(on(HOST, "/private/a"));
    root.push(on(WWW, "/"));
    pages.push(page(HOST, "/", Normal, root));
    let specials: [Vec<(&'static str, String)>; 5] = [
        vec![
            on(HOST, "/flaky/0"),
            on(HOST, "/flaky/1"),
            on(HOST, "/dead/0"),
        ],
        vec![
            on(HOST, "/flaky/2"),
            on(HOST, "/busy/0"),
            on(HOST, "/missing"),
            on(HOST, "/private/b"),
            on(WWW, "/w/0"),
        ],
        vec![
            on(HOST, "/flaky/3"),
            on(HOST, "/busy/1"),
            on(HOST, "/removed"),
            on(HOST, "/slow"),
        ],
        vec![
            on(HOST, "/flaky/4"),
            on(HOST, "/busy-date"),
            on(HOST, "/dead/1"),
            on(HOST, "/captcha"),
        ],
        vec![on(HOST, "/busy-bare"), on(HOST, "/item/0"), on(WWW, "/w/1")],
    ];
    for (c, special) in specials.into_iter().enumerate() {
        let mut links: Vec<_> = (3 * c..3 * c + 3)
            .map(|i| on(HOST, format!("/item/{i}")))
            .collect();
        links.push(on(HOST, format!("/cat/{}", (c + 1) % 5)));
        links.push(on(HOST, "/"));
        links.extend(special);
        pages.push(page(HOST, &format!("/cat/{c}"), Normal, links));
    }
    for i in 0..15 {
        let mut links = vec![
            on(HOST, format!("/item/{}", (i + 1) % 15)),
            // The same page again, with a fragment.
            on(HOST, format!("/cat/{}#top", i / 3)),
            on(HOST, "/"),
        ];
        if i % 5 == 0 {
            links.push(on(HOST, "/private/a"));
        }
        pages.push(page(HOST, &format!("/item/{i}"), Normal, links));
    }
    for i in 0..5 {
        let links = vec![on(HOST, "/"), on(HOST, format!("/item/{}", (3 * i) % 15))];
        pages.push(page(HOST, &format!("/flaky/{i}"), Flaky, links));
    }
    for (path, kind) in [
        ("/dead/0", Dead),
        ("/dead/1", Dead),
        ("/missing", NotFound),
        ("/removed", Gone),
    ] {
        pages.push(page(HOST, path, kind, Vec::new()));
    }
    for (path, kind) in [
        ("/busy/0", RetryAfterSeconds),
        ("/busy/1", RetryAfterSeconds),
        ("/busy-date", RetryAfterDate),
        ("/busy-bare", TooManyBare),
        ("/slow", Slow),
        ("/captcha", Captcha),
    ] {
        pages.push(page(
            HOST,
            path,
            kind,
            vec![on(HOST, "/"), on(HOST, "/item/14")],
        ));
    }
    pages.push(page(HOST, "/private/a", Private, vec![on(HOST, "/")]));
    pages.push(page(HOST, "/private/b", Private, vec![on(HOST, "/")]));
    let mut www_root: Vec<_> = (0..3).map(|i| on(WWW, format!("/w/{i}"))).collect();
    www_root.push(on(WWW, "/private/w"));
    www_root.push(on(HOST, "/"));
    pages.push(page(WWW, "/", Normal, www_root));
    for i in 0..3 {
        let links = vec![
            on(WWW, format!("/w/{}", (i + 1) % 3)),
            on(WWW, "/"),
            on(HOST, format!("/cat/{i}")),
        ];
        pages.push(page(WWW, &format!("/w/{i}"), Normal, links));
    }
    pages.push(page(WWW, "/private/w", Private, vec![on(WWW, "/")]));
    pages
}

fn small_layout() -> Vec<Page> {
    let mut root: Vec<_> = (0..5).map(|i| on(HOST, format!("/s/{i}"))).collect();
    root.push(on(HOST, "/private/a"));
    let mut pages = vec![page(HOST, "/", Kind::Normal, root)];
    for i in 0..5 {
        let links = vec![on(HOST, format!("/s/{}", (i + 1) % 5)), on(HOST, "/")];
        pages.push(page(HOST, &format!("/s/{i}"), Kind::Normal, links));
    }
    pages.push(page(HOST, "/private/a", Kind::Private, vec![on(HOST, "/")]));
    pages
}

fn html(state: &State, page: &Page) -> Reply {
    let port = state.port.get().copied().unwrap_or_default();
    let links: String = page
        .links
        .iter()
        .map(|(host, path)| {
            let href = if *host == page.host {
                path.clone()
            } else {
                format!("https://{host}:{port}{path}")
            };
            format!("<li><a href=\"{href}\">{path}</a></li>")
        })
        .collect();
    Reply::ok(format!(
        "<!doctype html><html><head><title>{host}{path}</title></head>\
         <body><h1>{path}</h1><ul>{links}</ul></body></html>",
        host = page.host,
        path = page.path,
    ))
    .header("content-type", "text/html; charset=utf-8")
}

fn error(status: u16, text: &str) -> Reply {
    Reply::new(status)
        .header("content-type", "text/html; charset=utf-8")
        .body(format!(
            "<html><body><h1>{status} {text}</h1></body></html>"
        ))
}

fn robots(state: &State, n: usize) -> Reply {
    let rules = |delay: Option<f64>| {
        let mut text = String::from("User-agent: *\nDisallow: /private/\n");
        if let Some(d) = delay {
            text.push_str(&format!("Crawl-delay: {d}\n"));
        }
        Reply::ok(text).header("content-type", "text/plain")
    };
    match state.opts.robots {
        Robots::Rules { crawl_delay } => rules(crawl_delay),
        Robots::Status(status) => Reply::new(status)
            .header("content-type", "text/plain")
            .body("no robots.txt for you\n"),
        Robots::FailFirst(k) if n < k => Reply::new(500)
            .header("content-type", "text/plain")
            .body("robots.txt is on fire\n"),
        Robots::FailFirst(_) => rules(None),
    }
}

fn answer(state: &State, server: IpAddr, req: &SeenRequest) -> Reply {
    let at = Instant::now();
    let host = req.host();
    let path = req.path().to_string();
    let sid = req.cookie().and_then(|c| {
        c.split(';')
            .find_map(|kv| kv.trim().strip_prefix("sid=").map(str::to_string))
    });
    let n = {
        let mut counts = state.counts.lock().unwrap();
        let count = counts.entry((host.clone(), path.clone())).or_default();
        *count += 1;
        *count - 1
    };
    let new_sid = sid.is_none().then(|| {
        let n = state.next_sid.fetch_add(1, Ordering::SeqCst);
        format!("c{n}")
    });
    let session = sid.clone().or(new_sid.clone());
    let mut captcha = false;
    let mut retry_after = None;
    let in_outage = match state.opts.outage {
        Some(outage) if host == HOST && path != "/robots.txt" => {
            let seen = state.page_requests.fetch_add(1, Ordering::SeqCst);
            seen >= outage.after_pages && {
                let began = *state.outage_began.get_or_init(|| at);
                at < began + outage.lasts
            }
        }
        _ => false,
    };
    let mut reply = if in_outage {
        error(502, "bad gateway: no backend")
    } else if path == "/robots.txt" {
        robots(state, n)
    } else {
        match state.pages.get(&(host.clone(), path.clone())) {
            None => error(404, "no such page"),
            Some(page) => match page.kind {
                Kind::Normal | Kind::Private => html(state, page),
                Kind::Flaky if n < 2 => error(503, "try again"),
                Kind::Flaky => html(state, page),
                Kind::Dead => error(500, "broken"),
                Kind::NotFound => error(404, "not found"),
                Kind::Gone => error(410, "gone"),
                Kind::RetryAfterSeconds if n == 0 => {
                    retry_after = Some(Duration::from_secs(1));
                    error(429, "slow down").header("retry-after", "1")
                }
                Kind::RetryAfterDate if n == 0 => {
                    // A whole second 1-2 s from now (HTTP dates have no fractions).
                    let now = SystemTime::now();
                    let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs() + 2;
                    let then = UNIX_EPOCH + Duration::from_secs(secs);
                    retry_after = Some(then.duration_since(now).unwrap());
                    error(429, "slow down").header("retry-after", &http_date(then))
                }
                Kind::TooManyBare if n == 0 => error(429, "slow down"),
                Kind::RetryAfterSeconds | Kind::RetryAfterDate | Kind::TooManyBare => {
                    html(state, page)
                }
                Kind::Slow => html(state, page).delay(state.opts.slow),
                Kind::Captcha => {
                    let mut blocked = state.captcha_sid.lock().unwrap();
                    let first = blocked.get_or_insert_with(|| session.clone().unwrap_or_default());
                    if Some(&*first) == session.as_ref() {
                        captcha = true;
                        Reply::ok(format!(
                            "<html><body><h1>Are you a robot?</h1><p>{CAPTCHA_MARKER}</p></body></html>"
                        ))
                        .header("content-type", "text/html; charset=utf-8")
                    } else {
                        html(state, page)
                    }
                }
            },
        }
    };
    if let Some(sid) = &new_sid {
        reply = reply.header(
            "set-cookie",
            &format!("sid={sid}; Path=/; Domain={HOST}; Max-Age=3600"),
        );
    }
    let sent_by = if req.nth_on_connection == 0 {
        req.connected_at
    } else {
        at
    };
    state.hits.lock().unwrap().push(Hit {
        at,
        sent_by,
        host,
        path,
        status: reply.status,
        sid,
        new_sid,
        version: req.version,
        captcha,
        retry_after,
        server,
        worker: req.header("x-mummer-worker").map(str::to_string),
    });
    reply
}

/// `t` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), whole seconds.
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!(
        "{weekday}, {day:02} {name} {year} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
