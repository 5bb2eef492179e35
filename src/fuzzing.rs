//! Fuzz entry points: one plain function per cargo-fuzz target in `fuzz/fuzz_targets/`,
//! each feeding arbitrary bytes to one parser of hostile input the way the engine feeds
//! it (a server's HTTP/1.1 response and compressed body, a proxy's SOCKS5 or CONNECT reply, a snapshot file,
//! a profile, cookie files and `Set-Cookie` lines, robots.txt, a ClientHello, HTTP/2
//! frames, the `--resolve` / `--connect-to` / proxy URL strings). This module owns those
//! harnesses and the list of targets, [`TARGETS`]; the parsers stay where they are.
//!
//! Not part of the API (hidden from the docs): it exists so that the fuzz targets are
//! one-liners and so that `tests/fuzz_corpus.rs` replays the checked-in corpus
//! (`fuzz/corpus/<target>/`) through the very same code on stable `cargo test`.
//!
//! Every function must return normally for every input. A panic is a finding: either
//! the parser panicked, or one of the few invariants checked here broke (each is named
//! in the function's documentation, and each is one the code already promises: a body
//! never over its limit, what a jar stores it restores, a snapshot restores what it
//! saved).
//!
//! Network I/O is replaced by `Wire`-style in-memory streams: the input is what the
//! peer sends, in short reads of varying size; whatever the code writes is dropped.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::cookies::formats::{self, CookieFormat};
use crate::cookies::{CookieContext, CookieJar, CookieRecord};
use crate::net::{ConnectTo, Proxy, ResolveOverride};
use crate::profile::{Profile, RequestKind};
use crate::session::snapshot::{decode, encode};
use crate::session::{ConditionalCache, Session, SnapshotKey};

/// A fuzz target's harness: takes any bytes, returns normally or panics (a finding).
pub type Harness = fn(&[u8]);

/// Every fuzz target by name (the file name in `fuzz/fuzz_targets/` and the folder in
/// `fuzz/corpus/`) with the function it runs.
pub const TARGETS: &[(&str, Harness)] = &[
    ("h1_response", h1_response),
    ("h1_chunked", h1_chunked),
    ("body_decode", body_decode),
    ("socks5_reply", socks5_reply),
    ("proxy_connect_reply", proxy_connect_reply),
    ("snapshot_decode", snapshot_decode),
    ("session_from_snapshot", session_from_snapshot),
    ("profile_json", profile_json),
    ("cookies_netscape", cookies_netscape),
    ("cookies_playwright", cookies_playwright),
    ("cookies_cdp", cookies_cdp),
    ("cookies_json", cookies_json),
    ("set_cookie", set_cookie),
    ("robots_txt", robots_txt),
    ("resolve_override", resolve_override),
    ("connect_to", connect_to),
    ("proxy_url", proxy_url),
    ("inspect_clienthello", inspect_clienthello),
    ("inspect_h2_frames", inspect_h2_frames),
    ("page_subresources", page_subresources),
    ("quic_initial", quic_initial),
];

/// The function of the target called `name`, if there is one.
pub fn target(name: &str) -> Option<Harness> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

// ===== in-memory I/O =====

/// A peer that sends `input` and swallows everything written to it. Reads come in
/// short pieces (1, 2, 3, 7, 64, 1500 bytes, in turn) so buffer boundaries fall
/// everywhere: a parser that assumes a whole line arrives at once shows up here.
struct Wire<'a> {
    input: &'a [u8],
    reads: usize,
}

impl<'a> Wire<'a> {
    fn new(input: &'a [u8]) -> Self {
        Wire { input, reads: 0 }
    }
}

const READ_SIZES: [usize; 6] = [1, 2, 3, 7, 64, 1500];

impl AsyncRead for Wire<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let want = READ_SIZES[me.reads % READ_SIZES.len()];
        me.reads += 1;
        let n = want.min(buf.remaining()).min(me.input.len());
        buf.put_slice(&me.input[..n]);
        me.input = &me.input[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs `fut` to completion on this thread's current-thread runtime (timers enabled:
/// the inspector wraps its reads in timeouts, which never fire on an in-memory peer).
fn block_on<F: Future>(fut: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
    }
    RT.with(|rt| rt.block_on(fut))
}

/// `data` as text: the UTF-8 it is, or its lossy reading (parsers that take `&str` are
/// fed every byte string the fuzzer makes, not only the valid ones).
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

fn chromium() -> &'static Profile {
    static P: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();
    P.get_or_init(|| Profile::named("chromium-156-linux").expect("a built-in profile"))
}

// ===== HTTP/1.1 =====

/// The body limit the HTTP/1.1 harnesses pass (small, so the limit checks are reached).
const H1_MAX_BODY: u64 = 64 * 1024;

/// Reads responses from `wire` as the client does after sending a GET, and after a
/// keep-alive response the next one from the same bytes (a server's leftovers are
/// the next response), up to four. Invariant: a body never exceeds the limit.
fn h1_exchanges(wire: Wire<'_>) {
    let profile = chromium();
    let mut conn = crate::h1::H1Connection::new(wire);
    block_on(async {
        for _ in 0..4 {
            let result = conn
                .send(
                    &http::Method::GET,
                    "example.test",
                    "/",
                    &[],
                    None,
                    &profile.http1,
                    H1_MAX_BODY,
                )
                .await;
            let Ok(exchange) = result else { break };
            assert!(
                exchange.body.len() as u64 <= H1_MAX_BODY,
                "body of {} bytes over the {H1_MAX_BODY}-byte limit",
                exchange.body.len()
            );
            if !exchange.reusable {
                break;
            }
        }
    });
}

/// Reads one response from `wire` as a streaming request does: the head, then the
/// body in pieces of at most 7 bytes, with no total limit. Invariant: no piece is
/// larger than asked for.
fn h1_streamed(wire: Wire<'_>) {
    let profile = chromium();
    let mut conn = crate::h1::H1Connection::new(wire);
    block_on(async {
        let head = conn
            .send_head(
                &http::Method::GET,
                "example.test",
                "/",
                &[],
                None,
                &profile.http1,
                u64::MAX,
            )
            .await;
        let Ok(head) = head else { return };
        let mut reader = head.body;
        // Bounded: the input is finite, and every call either reads or ends.
        for _ in 0..100_000 {
            let mut piece = Vec::new();
            match conn.read_body(&mut reader, &mut piece, 7, u64::MAX).await {
                Ok(more) => {
                    assert!(piece.len() <= 7, "a {}-byte piece", piece.len());
                    if !more {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
}

/// `data` is a server's whole answer to a GET over HTTP/1.1 (`src/h1.rs`: the head
/// through `httparse`, 1xx skipping, Content-Length / chunked / close framing, and the
/// next response on a kept-alive connection). A HEAD is read from the same bytes too.
pub fn h1_response(data: &[u8]) {
    h1_exchanges(Wire::new(data));
    h1_streamed(Wire::new(data));
    let profile = chromium();
    let mut conn = crate::h1::H1Connection::new(Wire::new(data));
    let _ = block_on(conn.send(
        &http::Method::HEAD,
        "example.test",
        "/",
        &[],
        None,
        &profile.http1,
        H1_MAX_BODY,
    ));
}

/// `data` is a chunked body (`src/h1.rs`'s chunk decoder: sizes, extensions, trailers,
/// chunk ends, the size limit) after a fixed `200` head with `Transfer-Encoding:
/// chunked`; bytes after the body are read as the next response.
pub fn h1_chunked(data: &[u8]) {
    let mut input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    input.extend_from_slice(data);
    h1_exchanges(Wire::new(&input));
}

/// The `Content-Encoding` values [`body_decode`] picks from by its first byte.
const ENCODINGS: [&str; 8] = [
    "gzip",
    "deflate",
    "br",
    "zstd",
    "gzip, br",
    "identity",
    "zstd, x-gzip",
    "deflate, deflate",
];

/// The decoded-size limit [`body_decode`] passes.
const DECODED_LIMIT: u64 = 1 << 20;

/// `data` is a compressed response body (`src/decode.rs`, `decode_body`: gzip, deflate
/// zlib or raw, brotli, zstd, stacked codings) after one byte that picks the
/// `Content-Encoding` (low 3 bits). Invariant: the output never exceeds the limit.
pub fn body_decode(data: &[u8]) {
    let (&mode, body) = data.split_first().unwrap_or((&0, &[]));
    let coding = ENCODINGS[usize::from(mode & 7)];
    if let Ok(out) = crate::decode_body(body.to_vec(), coding, DECODED_LIMIT) {
        assert!(
            out.len() as u64 <= DECODED_LIMIT,
            "{coding}: {} decoded bytes over the {DECODED_LIMIT}-byte limit",
            out.len()
        );
    }
}

// ===== proxies =====

/// `data` is a SOCKS5 proxy's side of the exchange (`src/net.rs`, `socks5_connect`:
/// method choice, RFC 1929 status, CONNECT reply and its bound address). The first
/// byte picks what we ask: bit 0 with credentials, bits 1-2 an IPv4, IPv6 or name
/// target.
pub fn socks5_reply(data: &[u8]) {
    let (&mode, reply) = data.split_first().unwrap_or((&0, &[]));
    let url = if mode & 1 == 1 {
        "socks5://user:secret@127.0.0.1:1080"
    } else {
        "socks5h://127.0.0.1:1080"
    };
    let proxy = Proxy::parse(url).expect("a valid proxy URL");
    let target = match (mode >> 1) & 3 {
        0 => crate::net::SocksTarget::Addr("127.0.0.1:443".parse().expect("an address")),
        1 => crate::net::SocksTarget::Addr("[::1]:443".parse().expect("an address")),
        _ => crate::net::SocksTarget::Name("example.test", 443),
    };
    let _ = block_on(crate::net::socks5_connect(Wire::new(reply), &proxy, target));
}

/// `data` is an HTTP proxy's answer to `CONNECT` (`src/net.rs`, `http_connect`: the
/// head read byte by byte up to its size limit, then `httparse`).
pub fn proxy_connect_reply(data: &[u8]) {
    let proxy = Proxy::parse("http://user:secret@127.0.0.1:3128").expect("a valid proxy URL");
    let _ = block_on(crate::net::http_connect(
        Wire::new(data),
        &proxy,
        "example.test",
        443,
    ));
}

// ===== snapshots =====

fn fuzz_key() -> SnapshotKey {
    SnapshotKey::from_bytes([7; 32])
}

/// `data` is a snapshot file (`src/session/snapshot.rs`, `decode`), read without a key
/// and with one (the envelope checks; a forged tag is out of the fuzzer's reach).
/// Invariant: a snapshot that decodes encodes and decodes again, plain and encrypted.
pub fn snapshot_decode(data: &[u8]) {
    let _ = decode(data, Some(&fuzz_key()));
    let Ok(snapshot) = decode(data, None) else {
        return;
    };
    let plain = encode(&snapshot, None).expect("a decoded snapshot encodes");
    decode(&plain, None).expect("an encoded snapshot decodes");
    let sealed = encode(&snapshot, Some(&fuzz_key())).expect("a decoded snapshot encrypts");
    decode(&sealed, Some(&fuzz_key())).expect("an encrypted snapshot decrypts");
}

/// `data` is a snapshot file restored as a session (`Session::from_snapshot`: profile
/// by name or inline, tenant, cache config, TLS tickets, cookies, cache entries), with
/// the restored cache asked about each of its URLs. Invariant: a restored session's
/// own snapshot restores.
pub fn session_from_snapshot(data: &[u8]) {
    let Ok(snapshot) = decode(data, None) else {
        return;
    };
    // As a restore does: the config is checked before a cache is made with it.
    let mut cache = ConditionalCache::new(snapshot.cache_config);
    if snapshot.cache_config.validate().is_ok() && cache.import(&snapshot.cache).is_ok() {
        let now = SystemTime::now();
        for record in &snapshot.cache {
            let req = http::Request::get(record.url.as_str())
                .body(())
                .unwrap_or_else(|_| http::Request::new(()))
                .into_parts()
                .0;
            let _ = cache.lookup(&record.url, &req, now);
        }
    }
    let Ok(session) = Session::from_snapshot(snapshot, |b| b.insecure(true)) else {
        return;
    };
    let again = session.snapshot();
    let bytes = encode(&again, None).expect("a session's snapshot encodes");
    let again = decode(&bytes, None).expect("a session's snapshot decodes");
    if let Err(e) = Session::from_snapshot(again, |b| b.insecure(true)) {
        panic!("a restored session's snapshot does not restore: {e}");
    }
}

// ===== profiles =====

/// `data` is a profile file (`src/profile/`: `Profile::from_json`, `validate`); a
/// valid one is built into a client (TLS context, header templates) and its request
/// headers rendered. Invariant: a valid profile written back as JSON reads back equal.
pub fn profile_json(data: &[u8]) {
    let Ok(profile) = Profile::from_json(&text(data)) else {
        return;
    };
    if profile.validate().is_err() {
        return;
    }
    let json = serde_json::to_string(&profile).expect("a profile serializes");
    let back = Profile::from_json(&json).expect("a serialized profile parses");
    assert!(back == profile, "a profile changed on its way through JSON");
    for kind in RequestKind::ALL {
        if let Ok(t) = crate::profile::HeaderTemplate::compile(profile.template(kind)) {
            let _ = t.render(&[]);
        }
    }
    let _ = crate::Client::builder(profile).insecure(true).build();
}

// ===== cookies =====

/// URLs a jar is asked about after a harness filled it.
const COOKIE_URLS: [&str; 6] = [
    "https://www.example.com/",
    "https://example.com/a/b?q",
    "http://sub.www.example.com/a",
    "https://127.0.0.1:8443/",
    "https://[::1]/x/",
    "http://intranet/",
];

/// Imports `records` into a fresh jar and checks what it then holds: every format
/// writes it and reads it back without panicking, and (the invariant) importing the
/// jar's own records into another fresh jar succeeds, as a snapshot restore does.
fn import_and_round_trip(records: &[CookieRecord]) {
    let mut jar = CookieJar::new();
    if jar.import(records).is_ok() {
        check_jar(&jar);
    }
}

fn check_jar(jar: &CookieJar) {
    for url in COOKIE_URLS {
        let url = url::Url::parse(url).expect("a valid URL");
        let _ = jar.header_for(&url, CookieContext::same_site());
        let _ = jar.header_for(
            &url,
            CookieContext {
                cross_site: true,
                top_level_navigation: true,
                safe_method: true,
            },
        );
    }
    let stored = jar.records();
    let mut restored = CookieJar::new();
    if let Err(e) = restored.import(&stored) {
        panic!("the jar's own records do not import: {e}; records: {stored:?}");
    }
    for format in [
        CookieFormat::Netscape,
        CookieFormat::Playwright,
        CookieFormat::Cdp,
    ] {
        let written = formats::write(format, &stored);
        if let Ok(back) = formats::parse(format, &written) {
            let _ = CookieJar::new().import(&back);
        }
    }
}

/// `data` is a Netscape `cookies.txt` (`src/cookies/formats.rs`), imported into a jar.
pub fn cookies_netscape(data: &[u8]) {
    if let Ok(records) = formats::parse_netscape(&text(data)) {
        import_and_round_trip(&records);
    }
}

/// `data` is a Playwright `storageState` JSON (`src/cookies/formats.rs`), imported.
pub fn cookies_playwright(data: &[u8]) {
    if let Ok(records) = formats::parse_playwright(&text(data)) {
        import_and_round_trip(&records);
    }
}

/// `data` is DevTools `Network.setCookies` / `getAllCookies` JSON
/// (`src/cookies/formats.rs`), imported.
pub fn cookies_cdp(data: &[u8]) {
    if let Ok(records) = formats::parse_cdp(&text(data)) {
        import_and_round_trip(&records);
    }
}

/// `data` is the message API's JSON cookie array (`CookieRecord`s, as a snapshot
/// carries them), imported.
pub fn cookies_json(data: &[u8]) {
    if let Ok(records) = serde_json::from_slice::<Vec<CookieRecord>>(data) {
        import_and_round_trip(&records);
    }
}

/// `data` is a response's `Set-Cookie` values, one a line, stored by
/// `CookieJar::store_response` (the `cookie` crate's parser, then the jar's rules);
/// the first byte picks the response URL (bits 0-2) and the request context (bits
/// 4-6). The first line also goes through `CookieJar::set`.
pub fn set_cookie(data: &[u8]) {
    let (&mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let url = url::Url::parse(COOKIE_URLS[usize::from(mode & 7) % COOKIE_URLS.len()])
        .expect("a valid URL");
    let ctx = CookieContext {
        cross_site: mode & 0x10 != 0,
        top_level_navigation: mode & 0x20 != 0,
        safe_method: mode & 0x40 == 0,
    };
    let lines = text(rest);
    let mut jar = CookieJar::new();
    let _ = jar.store_response(lines.split('\n'), &url, ctx);
    if let Some(first) = lines.split('\n').next() {
        let _ = jar.set(url.as_str(), first);
    }
    check_jar(&jar);
}

// ===== robots.txt =====

/// `data` is a robots.txt body (`src/robots.rs`, `Rules::from_response`, on
/// `texting_robots`), checked against fixed URLs and the URL made of its first line.
/// Invariant: the crawl delay is never over `MAX_CRAWL_DELAY`.
pub fn robots_txt(data: &[u8]) {
    for agent in ["mummer", "*"] {
        let rules = crate::robots::Rules::from_response(agent, 200, data);
        let first = text(data);
        let first = first.lines().next().unwrap_or("");
        for url in [
            "https://example.com/",
            "https://example.com/private/x?y=1",
            "https://example.com/%E2%82%AC/a*b$",
            &format!("https://example.com/{first}"),
        ] {
            let _ = rules.allows(url);
        }
        if let Some(d) = rules.crawl_delay() {
            assert!(d <= crate::robots::MAX_CRAWL_DELAY, "crawl delay {d:?}");
            assert!(d > Duration::ZERO, "a zero crawl delay");
        }
    }
}

// ===== page loads =====

/// `data` is a document a page load reads (`src/page/discover.rs`, html5ever's
/// tokenizer) and, the same bytes, a stylesheet (`src/page/css.rs`, `cssparser`); the
/// first byte picks the viewport. Invariants: at most `MAX_FOUND` listed, each URL once,
/// `http(s)` without a fragment, the icon (if any) last; a stylesheet lists at most
/// `MAX_FOUND` fonts and imports each.
pub fn page_subresources(data: &[u8]) {
    use crate::page::discover::{subresources, Viewport, MAX_FOUND};
    let viewport = Viewport {
        width: 1 + u32::from(data.first().copied().unwrap_or(0)) * 16,
        device_pixel_ratio: 1.0 + f64::from(data.get(1).copied().unwrap_or(0) % 4),
    };
    let text = text(data);
    let Ok(base) = url::Url::parse("https://shop.test/dir/page.html") else {
        return;
    };
    let found = subresources(&text, &base, viewport);
    assert!(found.list.len() <= MAX_FOUND, "{} listed", found.list.len());
    let mut seen = std::collections::HashSet::new();
    for (i, s) in found.list.iter().enumerate() {
        assert!(seen.insert(s.url.clone()), "{} listed twice", s.url);
        assert!(matches!(s.url.scheme(), "http" | "https"), "{}", s.url);
        assert!(s.url.fragment().is_none(), "{}", s.url);
        if s.found_in == "favicon" {
            assert_eq!(i + 1, found.list.len(), "the icon is last");
        }
    }
    let sheet = crate::page::css::read(&text);
    assert!(sheet.fonts.len() <= MAX_FOUND && sheet.imports.len() <= MAX_FOUND);
}

// ===== command-line strings =====

/// `data` is a `--resolve HOST:PORT:ADDR` value (`src/net.rs`).
pub fn resolve_override(data: &[u8]) {
    let _ = text(data).parse::<ResolveOverride>();
}

/// `data` is a `--connect-to HOST1:PORT1:HOST2:PORT2` value (`src/net.rs`); a rule
/// that parses is applied to a few origins.
pub fn connect_to(data: &[u8]) {
    if let Ok(rule) = text(data).parse::<ConnectTo>() {
        for (host, port) in [("example.test", 443), ("EXAMPLE.test", 80), ("::1", 0)] {
            let _ = rule.apply(host, port);
        }
    }
}

/// `data` is a proxy URL (`src/net.rs`, `Proxy::parse`, percent-decoded credentials);
/// one that parses is displayed (password masked).
pub fn proxy_url(data: &[u8]) {
    if let Ok(proxy) = Proxy::parse(&text(data)) {
        let _ = proxy.to_string();
    }
}

// ===== inspector =====

/// `data` is the first TLS record a client sends (`src/inspect/clienthello.rs`:
/// `record_len`, `ClientHello::parse`); a hello that parses gets its JA3, JA3N, JA4 and
/// JA4_r computed and its report serialized.
pub fn inspect_clienthello(data: &[u8]) {
    let _ = crate::inspect::clienthello::record_len(data);
    let Ok(hello) = crate::inspect::ClientHello::parse(data) else {
        return;
    };
    let _ = (
        hello.ja3(),
        hello.ja3n(),
        hello.ja3_hash(),
        hello.ja3n_hash(),
    );
    let _ = (hello.ja4(), hello.ja4_r());
    let _ = serde_json::to_string(&hello);
}

/// `data` is what an HTTP/2 client sends after the connection preface, read by the
/// inspector (`src/inspect/server.rs`, `serve_h2`, over `src/inspect/h2frames.rs`:
/// frame headers, SETTINGS, WINDOW_UPDATE, PRIORITY, HEADERS with padding and
/// priority, CONTINUATION, HPACK and how each field was represented, the Akamai string). The frame helpers are also called
/// on the raw bytes (first byte as HEADERS flags).
pub fn inspect_h2_frames(data: &[u8]) {
    use crate::inspect::h2frames;
    if let Some((&flags, rest)) = data.split_first() {
        let _ = h2frames::split_headers_payload(flags, rest);
        let _ = h2frames::headers_flag_names(flags);
    }
    let _ = h2frames::parse_settings(data);
    // The HPACK representation walker, on the raw bytes as a header block.
    if let Ok((fields, _)) = h2frames::representations(data) {
        assert!(
            fields.len() <= data.len(),
            "a field takes at least one byte"
        );
    }
    let mut input = h2frames::PREFACE.to_vec();
    input.extend_from_slice(data);
    let mut report = crate::inspect::ConnectionReport {
        connection: 1,
        peer: "127.0.0.1:1".into(),
        ja3: String::new(),
        ja3_hash: String::new(),
        ja3n: String::new(),
        ja3n_hash: String::new(),
        ja4: String::new(),
        ja4_r: String::new(),
        client_hello: Default::default(),
        alpn: Some("h2".into()),
        resumed: false,
        http2: None,
        http1: Vec::new(),
        quic: None,
        http3: None,
    };
    let mut wire = Wire::new(&input);
    let _ = block_on(crate::inspect::server::serve_h2(
        &mut wire,
        &mut report,
        None,
    ));
}

// ===== QUIC and HTTP/3 =====

/// `data` is what a QUIC client sends, as the inspector reads it: datagrams
/// (`src/quic/initial.rs`, each prefixed by a two-byte length) whose Initial packets
/// are decrypted and whose CRYPTO frames are put back together; the same bytes as a
/// transport parameter list (`src/quic/params.rs`), as HTTP/3 frames and SETTINGS, and
/// as a QPACK field section (`src/inspect/h3frames.rs`).
pub fn quic_initial(data: &[u8]) {
    let mut reader = crate::quic::initial::InitialReader::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = (2 + len).min(rest.len());
        let _ = reader.push_datagram(&rest[2..end]);
        rest = &rest[end..];
    }
    if let Some(hello) = reader.client_hello() {
        let _ = crate::inspect::ClientHello::parse(&hello).map(|h| h.ja4());
    }
    let _ = serde_json::to_string(&reader.packets);
    let _ = crate::quic::params::split(data);
    use crate::inspect::h3frames;
    let mut frames = data;
    while let Ok(Some((ty, payload))) = h3frames::split_frame(&mut frames, 1 << 16) {
        let _ = (h3frames::frame_name(ty), h3frames::parse_settings(payload));
        let _ = h3frames::decode_field_section(payload);
    }
    let _ = h3frames::decode_field_section(data);
}
