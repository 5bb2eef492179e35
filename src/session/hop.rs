//! One hop of a session request, as decisions on the session's state: what the request
//! carries ([`outgoing`]: the session's own headers, cookies, client hints and cache
//! validators, or a fresh cached answer instead of a request) and what its answer
//! changes ([`absorb`]: cookies, `Accept-CH`, the cache, then done or a redirect to
//! follow). No I/O: `Session::execute` is the loop that sends between them, and the
//! tests here run them on canned responses, without a server.

use std::time::SystemTime;

use http::{HeaderName, HeaderValue, Method};
use url::Url;

use super::cache::{CachedResponse, ConditionalCache, Lookup};
use super::nav::{self, FetchSite};
use super::{cache_request, redirect, State, SESSION_HEADERS};
use crate::body::Body;
use crate::client::{CacheStatus, Redirect, Response};
use crate::cookies::CookieContext;
use crate::error::{Error, Result};
use crate::profile::{Profile, RequestKind};

/// What stays the same over the hops of one request.
pub(super) struct Plan<'a> {
    pub(super) profile: &'a Profile,
    pub(super) kind: RequestKind,
    /// The document that started the request (`None` for a typed navigation).
    pub(super) initiator: Option<std::sync::Arc<Url>>,
    /// Whether the profile's template for `kind` sends `sec-fetch-site`.
    pub(super) template_has_site: bool,
    pub(super) use_cache: bool,
    pub(super) follow_redirects: bool,
    pub(super) max_redirects: usize,
}

impl Plan<'_> {
    fn top_level(&self) -> bool {
        self.kind == RequestKind::Navigation
    }
}

/// Where the request is now; a redirect changes it.
pub(super) struct Hop {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) body: Option<Body>,
    /// The caller's headers (`Authorization` and `Cookie` go at a cross-origin hop,
    /// the body's headers when the body does).
    pub(super) caller: Vec<(HeaderName, HeaderValue)>,
    /// `sec-fetch-site`: the worst relation to the initiator over the hops so far.
    pub(super) site: FetchSite,
    pub(super) redirects: Vec<Redirect>,
}

/// What [`outgoing`] decided for a hop.
pub(super) enum Outgoing {
    /// The cache holds a fresh answer: nothing is sent.
    Fresh(CachedResponse),
    /// Send the request with these headers (every one beyond the profile's template);
    /// [`absorb`] takes the answer with the [`Sent`].
    Send(Vec<(HeaderName, HeaderValue)>, Sent),
}

/// What [`absorb`] needs to know of the request that was sent.
pub(super) struct Sent {
    ctx: CookieContext,
    cache_req: Option<http::request::Parts>,
    /// The cache was consulted (a GET with the cache on).
    looked_up: bool,
    /// It carries the cache's validators (`If-None-Match`, `If-Modified-Since`).
    sent_validators: bool,
}

/// What [`absorb`] made of an answer. Small on purpose: the response itself stays with
/// the caller (moving it in and out cost a 400-byte copy per hop, seen in callgrind).
pub(super) enum Absorbed {
    /// The response is the answer; how the cache took part.
    Done(CacheStatus),
    /// A 304 revalidated the stored entry: the answer is the cache's copy.
    Revalidated(CachedResponse),
    /// `hop` now names the redirect's target: send again.
    Follow,
}

/// The headers, cookies, client hints and validators `hop` carries, or the cache's
/// fresh answer.
pub(super) fn outgoing(st: &mut State, plan: &Plan<'_>, hop: &Hop, now: SystemTime) -> Outgoing {
    let url = &hop.url;
    let ctx = CookieContext {
        cross_site: hop.site.is_cross_site(),
        top_level_navigation: plan.top_level(),
        safe_method: matches!(hop.method, Method::GET | Method::HEAD),
    };
    let caller = &hop.caller;
    let caller_has = |n: &HeaderName| caller.iter().any(|(h, _)| h == n);
    let mut extra: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(caller.len() + 8);
    if plan.template_has_site && !caller_has(&SESSION_HEADERS[2]) {
        extra.push((
            SESSION_HEADERS[2].clone(),
            HeaderValue::from_static(hop.site.as_str()),
        ));
    }
    if let Some(from) = &plan.initiator {
        if !caller_has(&http::header::REFERER) {
            if let Some(r) = nav::referrer(from, url).and_then(|r| HeaderValue::from_str(&r).ok()) {
                extra.push((http::header::REFERER, r));
            }
        }
    }
    if nav::sends_origin(plan.kind, &hop.method, hop.site) && !caller_has(&http::header::ORIGIN) {
        if let Ok(v) = HeaderValue::from_str(&nav::origin_value(plan.initiator.as_deref())) {
            extra.push((http::header::ORIGIN, v));
        }
    }
    // The request as the cache sees it is built only when the cache holds this URL
    // (otherwise the lookup is a miss without it; [`absorb`] builds it if the answer
    // turns out to be worth keeping).
    let cacheable = plan.use_cache && hop.method == Method::GET;
    let cache_req = (cacheable && st.cache.holds(url.as_str())).then(|| cache_request(url, caller));
    let jar_cookie = st.jar.header_for(url, ctx);
    // The origin is serialized (an allocation) only when some origin asked for hints.
    let hints = if st.accept_ch.is_empty() {
        Default::default()
    } else {
        st.accept_ch
            .get(&url.origin().ascii_serialization())
            .cloned()
            .unwrap_or_default()
    };
    let lookup = cache_req
        .as_ref()
        .map(|req| st.cache.lookup(url.as_str(), req, now));
    if let Some(Lookup::Fresh(hit)) = lookup {
        return Outgoing::Fresh(hit);
    }
    for (name, value) in &plan.profile.client_hints {
        if hints.iter().any(|h| h == name) && !extra.iter().any(|(n, _)| n == name.as_str()) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                extra.push((n, v));
            }
        }
    }
    let mut sent_validators = false;
    if let Some(Lookup::Revalidate(validators)) = &lookup {
        for (n, v) in validators {
            if !caller_has(n) {
                extra.push((n.clone(), v.clone()));
                sent_validators = true;
            }
        }
    }
    let mut headers: Vec<(HeaderName, HeaderValue)> = caller
        .iter()
        .filter(|(n, _)| n != http::header::COOKIE)
        .cloned()
        .collect();
    headers.extend(extra);
    // The caller's own Cookie values first, then the jar's, in one header.
    let cookie = caller
        .iter()
        .filter(|(n, _)| n == http::header::COOKIE)
        .filter_map(|(_, v)| v.to_str().ok())
        .map(str::to_string)
        .chain(jar_cookie)
        .collect::<Vec<_>>()
        .join("; ");
    if !cookie.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.push((http::header::COOKIE, v));
        }
    }
    Outgoing::Send(
        headers,
        Sent {
            ctx,
            looked_up: cacheable,
            cache_req,
            sent_validators,
        },
    )
}

/// Takes what `resp` (the answer to `sent`) tells the session: its cookies (from every
/// answer, redirects and errors included), `Accept-CH` over https, the cache's update;
/// then whether it is the answer or a redirect to follow, in which case `hop` becomes
/// the next one.
///
/// # Errors
///
/// [`Error::is_redirect`] past `plan.max_redirects`.
pub(super) fn absorb(
    st: &mut State,
    plan: &Plan<'_>,
    hop: &mut Hop,
    sent: &Sent,
    resp: &Response,
    now: SystemTime,
) -> Result<Absorbed> {
    let url = &hop.url;
    let set_cookies = resp
        .wire_headers()
        .iter()
        .filter(|(n, _)| n == http::header::SET_COOKIE)
        // UTF-8, not only visible ASCII: browsers keep UTF-8 octets in values.
        .filter_map(|(_, v)| std::str::from_utf8(v.as_bytes()).ok());
    st.jar.store_response(set_cookies, url, sent.ctx);
    if url.scheme() == "https" {
        if let Some(v) = resp
            .headers()
            .get("accept-ch")
            .and_then(|v| v.to_str().ok())
        {
            let hints = v
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
            st.accept_ch
                .insert(url.origin().ascii_serialization(), hints);
        }
    }
    let built;
    let cache_req = match &sent.cache_req {
        Some(req) => Some(req),
        None if sent.looked_up
            && ConditionalCache::may_keep(resp.status(), resp.wire_headers()) =>
        {
            built = cache_request(url, &hop.caller);
            Some(&built)
        }
        None => None,
    };
    let served = cache_req.and_then(|req| {
        st.cache.update(
            url.as_str(),
            req,
            resp.status(),
            resp.wire_headers(),
            resp.body(),
            now,
        )
    });
    if let Some(hit) = served.filter(|_| sent.sent_validators) {
        return Ok(Absorbed::Revalidated(hit));
    }
    let cache_status = match (sent.looked_up, sent.sent_validators) {
        (false, _) => CacheStatus::NotUsed,
        (true, false) => CacheStatus::Miss,
        (true, true) if resp.status() == http::StatusCode::NOT_MODIFIED => CacheStatus::NotModified,
        (true, true) => CacheStatus::Modified,
    };
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok());
    let next = if plan.follow_redirects {
        redirect::next_hop(resp.status(), &hop.method, url, location)
    } else {
        None
    };
    let Some(next) = next else {
        return Ok(Absorbed::Done(cache_status));
    };
    if hop.redirects.len() >= plan.max_redirects {
        return Err(Error::redirect(format!(
            "more than {} redirects (last: {} to {}); raise the limit with max_redirects",
            plan.max_redirects,
            resp.status().as_u16(),
            next.url
        ))
        .with_url(url.clone()));
    }
    hop.redirects.push(Redirect {
        url: url.to_string(),
        status: resp.status().as_u16(),
    });
    if next.cross_origin {
        hop.caller
            .retain(|(n, _)| n != http::header::AUTHORIZATION && n != http::header::COOKIE);
    }
    if next.keep_body && hop.body.as_ref().is_some_and(|b| !b.is_replayable()) {
        return Err(Error::invalid_input(format!(
            "the {} redirect to {} needs the request body sent again, but it was a stream (read once); give the body as bytes to follow it, or send with no_redirects",
            resp.status().as_u16(),
            next.url
        ))
        .with_url(url.clone()));
    }
    if !next.keep_body {
        hop.body = None;
        hop.caller
            .retain(|(n, _)| n != http::header::CONTENT_TYPE && n != http::header::CONTENT_LENGTH);
    }
    if plan.initiator.is_some() {
        hop.site = hop
            .site
            .worst(nav::fetch_site(plan.initiator.as_deref(), &next.url));
    }
    hop.method = next.method;
    hop.url = next.url;
    Ok(Absorbed::Follow)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use std::collections::BTreeMap;
    use std::time::Duration;

    use http::StatusCode;

    use super::*;
    use crate::cookies::CookieJar;
    use crate::session::cache::{CacheConfig, ConditionalCache};

    fn state() -> State {
        State {
            jar: CookieJar::new(),
            cache: ConditionalCache::new(CacheConfig {
                store_bodies: true,
                ..CacheConfig::default()
            }),
            document: None,
            accept_ch: BTreeMap::new(),
            identifier: String::new(),
        }
    }

    fn profile() -> Profile {
        Profile::named("chrome-156-linux").unwrap()
    }

    fn plan<'a>(profile: &'a Profile, initiator: Option<&str>) -> Plan<'a> {
        Plan {
            profile,
            kind: RequestKind::Navigation,
            initiator: initiator.map(|u| std::sync::Arc::new(Url::parse(u).unwrap())),
            template_has_site: true,
            use_cache: true,
            follow_redirects: true,
            max_redirects: 2,
        }
    }

    fn hop(url: &str, caller: &[(&'static str, &'static str)]) -> Hop {
        Hop {
            method: Method::GET,
            url: Url::parse(url).unwrap(),
            body: None,
            caller: caller
                .iter()
                .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
                .collect(),
            site: FetchSite::None,
            redirects: Vec::new(),
        }
    }

    /// A canned answer, as a connection would deliver it.
    fn answer(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Response {
        Response::from_cache(
            String::new(),
            StatusCode::from_u16(status).unwrap(),
            headers
                .iter()
                .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
                .collect(),
            Bytes::from(body.to_string()),
            CacheStatus::NotUsed,
        )
    }

    fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    fn send(st: &mut State, plan: &Plan<'_>, hop: &Hop) -> (Vec<(HeaderName, HeaderValue)>, Sent) {
        match outgoing(st, plan, hop, SystemTime::now()) {
            Outgoing::Send(headers, sent) => (headers, sent),
            Outgoing::Fresh(_) => panic!("expected a request, got a cache hit"),
        }
    }

    #[test]
    fn a_cross_origin_redirect_keeps_its_cookie_and_drops_the_callers_secrets() {
        let (profile, mut st) = (profile(), state());
        let plan = plan(&profile, None);
        let mut hop = hop(
            "https://shop.example/login",
            &[
                ("authorization", "Bearer t"),
                ("cookie", "mine=1"),
                ("x-trace", "7"),
            ],
        );
        let (headers, sent) = send(&mut st, &plan, &hop);
        assert_eq!(header(&headers, "authorization"), Some("Bearer t"));
        assert_eq!(header(&headers, "cookie"), Some("mine=1"));
        let redirect = answer(
            302,
            &[
                ("location", "https://cdn.example/next"),
                ("set-cookie", "sid=abc; Path=/"),
            ],
            "",
        );
        let next = absorb(
            &mut st,
            &plan,
            &mut hop,
            &sent,
            &redirect,
            SystemTime::now(),
        )
        .unwrap();
        assert!(matches!(next, Absorbed::Follow));
        assert_eq!(hop.url.as_str(), "https://cdn.example/next");
        assert_eq!(hop.redirects.len(), 1);
        assert_eq!(hop.redirects[0].status, 302);
        // The 302's cookie was stored for shop.example; the next hop (another origin)
        // carries neither it nor the caller's Authorization and Cookie.
        let (headers, _) = send(&mut st, &plan, &hop);
        assert_eq!(header(&headers, "authorization"), None);
        assert_eq!(header(&headers, "cookie"), None);
        assert_eq!(header(&headers, "x-trace"), Some("7"));
        let back = self::hop("https://shop.example/account", &[]);
        let (headers, _) = send(&mut st, &plan, &back);
        assert_eq!(header(&headers, "cookie"), Some("sid=abc"));
    }

    #[test]
    fn a_fresh_entry_answers_and_a_stale_one_is_revalidated() {
        let (profile, mut st) = (profile(), state());
        let plan = plan(&profile, None);
        let mut first = hop("https://shop.example/a", &[]);
        let (_, sent) = send(&mut st, &plan, &first);
        let page = answer(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
            "A",
        );
        let done = absorb(&mut st, &plan, &mut first, &sent, &page, SystemTime::now()).unwrap();
        assert!(matches!(done, Absorbed::Done(CacheStatus::Miss)));
        match outgoing(&mut st, &plan, &first, SystemTime::now()) {
            Outgoing::Fresh(hit) => assert_eq!(hit.body.as_ref(), b"A"),
            Outgoing::Send(..) => panic!("a fresh entry is served without a request"),
        }
        // A minute and more later it is stale: the request carries If-None-Match, and a
        // 304 gives back the stored body.
        let later = SystemTime::now() + Duration::from_secs(120);
        let Outgoing::Send(headers, sent) = outgoing(&mut st, &plan, &first, later) else {
            panic!("a stale entry is revalidated");
        };
        assert_eq!(header(&headers, "if-none-match"), Some("\"v1\""));
        let not_modified = answer(304, &[("etag", "\"v1\"")], "");
        match absorb(&mut st, &plan, &mut first, &sent, &not_modified, later).unwrap() {
            Absorbed::Revalidated(hit) => assert_eq!(hit.body.as_ref(), b"A"),
            _ => panic!("a 304 is answered from the cache"),
        }
    }

    #[test]
    fn redirects_past_the_limit_are_an_error_and_the_site_only_gets_worse() {
        let (profile, mut st) = (profile(), state());
        let plan = plan(&profile, Some("https://shop.example/"));
        let mut hop = hop("https://shop.example/1", &[]);
        hop.site = nav::fetch_site(plan.initiator.as_deref(), &hop.url);
        assert_eq!(hop.site.as_str(), "same-origin");
        for (to, site) in [
            ("https://other.example/2", "cross-site"),
            ("https://shop.example/3", "cross-site"),
        ] {
            let (_, sent) = send(&mut st, &plan, &hop);
            let redirect = answer(301, &[("location", to)], "");
            let next = absorb(
                &mut st,
                &plan,
                &mut hop,
                &sent,
                &redirect,
                SystemTime::now(),
            );
            assert!(matches!(next, Ok(Absorbed::Follow)));
            assert_eq!(hop.site.as_str(), site, "after {to}");
        }
        let (headers, sent) = send(&mut st, &plan, &hop);
        assert_eq!(header(&headers, "sec-fetch-site"), Some("cross-site"));
        let third = answer(301, &[("location", "https://shop.example/4")], "");
        let err = absorb(&mut st, &plan, &mut hop, &sent, &third, SystemTime::now())
            .err()
            .expect("a third redirect is over the limit of 2");
        assert!(err.is_redirect(), "{err}");
    }
}
