//! Turning what the inspector saw into a profile: `mummer inspect --save-profile FILE`.
//!
//! Pure logic over [`ConnectionReport`]s, no sockets. A browser that connects to the
//! inspector shows its whole ClientHello, its HTTP/2 preface and one HEADERS frame per
//! request; [`learn_profile`] maps those onto the [`Profile`] format field by field.
//! What one visit cannot show is filled by a documented rule and listed in the profile's
//! `sources`, so nobody mistakes a guess for a capture:
//!
//! - extension permutation is learned when two or more connections are seen (orders
//!   differ: permuted); from one connection it is assumed on when GREASE is present
//!   (Chromium permutes and GREASEs, Firefox does neither);
//! - request kinds are told apart by `sec-fetch-dest`; kinds that were not requested
//!   fall back to the `fetch` and then `navigation` template at request time;
//! - slots for `referer` and `cookie` that the visit did not send are put where Chromium
//!   (before `accept-encoding`) or Firefox (after it) puts them, and Chromium's `origin`
//!   slot first on script and font templates (CORS mode: module scripts, fonts);
//! - Chromium's cache validator slots (`if-none-match`, `if-modified-since`) right after
//!   `accept` on the kinds its renderer's memory cache revalidates (images, scripts,
//!   styles, fonts), as a second visit of the test page shows them; elsewhere (the
//!   document, fetch/XHR: its HTTP cache) they go after the cookie, a rule of
//!   `src/profile/headers.rs`;
//! - HTTP/1.1 header case comes from an HTTP/1.1 visit when there was one, otherwise
//!   Title-Case except the lower-case `sec-ch-*` client hints, as both families send.

use std::collections::BTreeMap;

use super::clienthello::is_grease;
use super::server::ConnectionReport;
use crate::error::{Error, Result};
use crate::profile::{
    AlpsProfile, CertCompression, CodePoint, Http1Profile, Http2Priority, Http2Profile,
    Http2Setting, PriorityRule, Profile, RequestKind, RequestTemplate, TlsProfile,
};

/// Headers whose value changes per request; the template keeps their position only.
const SLOT_HEADERS: [&str; 7] = [
    "referer",
    "origin",
    "cookie",
    "content-type",
    "content-length",
    "if-none-match",
    "if-modified-since",
];

/// Extension code points (RFC 8446 and friends) the profile switches on or off.
const EXT_STATUS_REQUEST: u16 = 5;
const EXT_SCT: u16 = 18;
const EXT_SESSION_TICKET: u16 = 35;
const EXT_ALPS_NEW: u16 = 0x44cd;

/// Builds a profile named `name` from the connections the inspector reported.
///
/// The first connection with a request gives the TLS and HTTP/2 fields; every request
/// seen gives the template of its kind (first one wins).
///
/// # Errors
///
/// [`Error::is_invalid_input`] when no connection carried a request (a client that
/// only handshook shows nothing about its headers).
pub fn learn_profile(name: &str, reports: &[ConnectionReport]) -> Result<Profile> {
    let first = reports
        .iter()
        .find(|r| r.quic.is_none() && !requests_of(r).is_empty())
        .ok_or_else(|| {
            Error::invalid_input(
                "no connection carried a request; open https://<inspector>/ in the browser and try again",
            )
        })?;
    let hello = &first.client_hello;
    let mut sources = vec![format!(
        "learned by `mummer inspect --save-profile` from {} connection(s); JA4 {}",
        reports.len(),
        first.ja4
    )];

    let without_grease = |v: &[u16]| -> Vec<CodePoint> {
        v.iter()
            .copied()
            .filter(|c| !is_grease(*c))
            .map(CodePoint)
            .collect()
    };
    let grease = hello.cipher_suites.iter().any(|c| is_grease(*c));
    let permute_extensions = {
        let orders: Vec<Vec<u16>> = reports
            .iter()
            .filter(|r| r.client_hello.psk_identities.is_none())
            .map(|r| {
                without_grease(&r.client_hello.extensions)
                    .iter()
                    .map(|c| c.0)
                    .collect()
            })
            .collect();
        if orders.len() >= 2 {
            orders.windows(2).any(|w| w[0] != w[1])
        } else {
            sources
                .push("extension permutation assumed from GREASE (one full handshake seen)".into());
            grease
        }
    };
    let (ffdhe, groups): (Vec<CodePoint>, Vec<CodePoint>) = without_grease(&hello.groups)
        .into_iter()
        .partition(|g| (0x0100..0x0200).contains(&g.0));
    let has = |ext: u16| hello.extensions.contains(&ext);
    let versions = &hello.supported_versions;
    let tls = TlsProfile {
        min_version: if versions.contains(&0x0303) {
            "1.2"
        } else {
            "1.3"
        }
        .into(),
        max_version: if versions.contains(&0x0304) {
            "1.3"
        } else {
            "1.2"
        }
        .into(),
        grease,
        permute_extensions,
        cipher_suites: without_grease(&hello.cipher_suites),
        groups,
        key_shares: without_grease(&hello.key_shares.iter().map(|(g, _)| *g).collect::<Vec<_>>()),
        signature_algorithms: without_grease(&hello.sigalgs),
        alpn: hello.alpn.clone(),
        alps: hello
            .alps
            .as_ref()
            .map(|(codepoint, protocols)| AlpsProfile {
                protocols: protocols.clone(),
                new_codepoint: *codepoint == EXT_ALPS_NEW,
            }),
        cert_compression: hello
            .cert_compression
            .iter()
            .filter_map(|a| match a {
                1 => Some(CertCompression::Zlib),
                2 => Some(CertCompression::Brotli),
                3 => Some(CertCompression::Zstd),
                _ => None,
            })
            .collect(),
        ech_grease: hello.ech.is_some(),
        trust_anchors: hello.trust_anchors_hex.clone(),
        ocsp_stapling: has(EXT_STATUS_REQUEST),
        signed_cert_timestamps: has(EXT_SCT),
        session_tickets: has(EXT_SESSION_TICKET),
        record_size_limit: hello.record_size_limit,
        delegated_credentials: Vec::new(),
        ffdhe_groups: ffdhe,
    };

    let requests = requests_of(first);
    let first_request = &requests[0];
    let http2 = match &first.http2 {
        Some(h2) => {
            // The HEADERS rules, read from what the browser wrote: an exclusive
            // block is Chromium's chain; a literal sent raw means Huffman only
            // where shorter; `:path: /` as a literal is Firefox's.
            let frames = || {
                reports
                    .iter()
                    .filter_map(|r| r.http2.as_ref())
                    .flat_map(|h| &h.requests)
            };
            let chained = frames().any(|f| f.priority.is_some_and(|p| p.exclusive));
            let raw_literals = frames()
                .flat_map(|f| &f.representations)
                .any(|r| r.huffman == Some(false));
            let path_literal = frames().any(|f| {
                f.headers
                    .iter()
                    .zip(&f.representations)
                    .any(|((n, v), r)| n == ":path" && v == "/" && r.kind != "indexed")
            });
            let mut settings = Vec::new();
            for (id, value) in &h2.settings {
                match setting_by_id(*id) {
                    Some(s) => settings.push((s, *value)),
                    None => sources.push(format!(
                        "SETTINGS id {id} = {value} seen but not expressible; left out"
                    )),
                }
            }
            Http2Profile {
                settings,
                connection_window_increment: h2.window_update,
                pseudo_header_order: first_request
                    .headers
                    .iter()
                    .filter(|(n, _)| n.starts_with(':'))
                    .map(|(n, _)| n.clone())
                    .collect(),
                initial_stream_id: first_request.stream,
                cookie_crumbling: true,
                // The templates below carry each kind's weight.
                priority_rule: if chained {
                    PriorityRule::Chromium
                } else {
                    PriorityRule::Template
                },
                huffman_only_when_shorter: raw_literals,
                path_always_literal: path_literal,
            }
        }
        None => {
            sources.push("HTTP/2 fields are Chromium's defaults: the visit used HTTP/1.1".into());
            Profile::named("chromium-156-linux")?.http2
        }
    };

    let user_agent = header(&first_request.headers, "user-agent").unwrap_or_default();
    let chromium_like = header(&first_request.headers, "sec-ch-ua").is_some();
    let mut templates = BTreeMap::new();
    let mut http1_lines: Option<&Vec<(String, String)>> = None;
    for report in reports {
        if let Some(h1) = report.http1.first() {
            http1_lines.get_or_insert(h1);
        }
        for req in requests_of(report) {
            let kind = kind_of(&req.headers);
            if templates.contains_key(&kind) {
                continue;
            }
            templates.insert(
                kind,
                RequestTemplate {
                    source: format!(
                        "learned ({})",
                        header(&req.headers, "sec-fetch-dest")
                            .unwrap_or("no sec-fetch-dest".into())
                    ),
                    priority: req.priority,
                    headers: validator_slots(
                        kind,
                        cors_origin_slot(
                            kind,
                            template_headers(&req.headers, chromium_like),
                            chromium_like,
                        ),
                        chromium_like,
                    ),
                },
            );
        }
    }
    if !templates.contains_key(&RequestKind::Navigation) {
        if let Some((_, t)) = templates.iter().next() {
            let t = t.clone();
            sources.push(
                "no document load seen: the navigation template is the first request's".into(),
            );
            templates.insert(RequestKind::Navigation, t);
        }
    }

    let header_case = match http1_lines {
        Some(lines) => lines
            .iter()
            .filter(|(n, _)| !n.starts_with(':'))
            .map(|(n, _)| (n.to_ascii_lowercase(), n.clone()))
            .collect(),
        None => {
            sources.push("HTTP/1.1 header case derived (Title-Case, sec-ch-* lower-case)".into());
            let mut names: Vec<String> = templates
                .values()
                .flat_map(|t| t.headers.iter().map(|(n, _)| n.clone()))
                .chain(["host".to_string(), "connection".to_string()])
                .collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|n| {
                    let c = title_case(&n);
                    (n, c)
                })
                .collect()
        }
    };
    let drop_headers = if chromium_like {
        vec!["priority".to_string()]
    } else {
        Vec::new()
    };

    let (browser, version) = browser_and_version(&user_agent, &first_request.headers);
    let quic = learn_quic(reports, &tls, &mut sources);
    let profile = Profile {
        name: name.to_string(),
        description: format!("{browser} {version} as seen by mummer inspect"),
        browser,
        version,
        platform: platform_of(&user_agent),
        sources,
        user_agent,
        tls,
        http2,
        http1: Http1Profile {
            header_case,
            drop_headers,
        },
        requests: templates,
        // High-entropy hints appear only after the server asks with Accept-CH, which
        // the inspector does not: none are learned.
        client_hints: BTreeMap::new(),
        quic,
    };
    profile
        .validate()
        .map_err(|e| Error::invalid_input(format!("the learned profile is not valid: {e}")))?;
    Ok(profile)
}

/// One request seen on a connection, whatever the protocol.
struct SeenRequest {
    stream: u32,
    priority: Http2Priority,
    /// Header lines in wire order, pseudo-headers included, names lower-case.
    headers: Vec<(String, String)>,
}

/// The QUIC section from the connections that came over UDP (Chromium's defaults when
/// none did, with a line in `sources` saying so).
fn learn_quic(
    reports: &[ConnectionReport],
    tcp: &crate::profile::TlsProfile,
    sources: &mut Vec<String>,
) -> crate::profile::QuicProfile {
    use crate::profile::{QuicProfile, QuicTlsProfile};
    let quic_reports: Vec<&ConnectionReport> = reports
        .iter()
        .filter(|r| r.quic.is_some() && r.client_hello.quic_transport_parameters.is_some())
        .collect();
    let Some(first) = quic_reports.first() else {
        sources.push("no QUIC connection seen: the quic section is Chromium 156's".into());
        return QuicProfile::default();
    };
    let mut quic = QuicProfile::default();
    let hello = &first.client_hello;
    let no_grease = |v: &[u16]| -> Vec<CodePoint> {
        v.iter()
            .copied()
            .filter(|c| !is_grease(*c))
            .map(CodePoint)
            .collect()
    };
    let sigalgs = no_grease(&hello.sigalgs);
    quic.tls = QuicTlsProfile {
        grease: hello.cipher_suites.iter().any(|c| is_grease(*c)),
        ocsp_stapling: hello.extensions.contains(&5),
        signed_cert_timestamps: hello.extensions.contains(&18),
        signature_algorithms: (sigalgs != tcp.signature_algorithms).then_some(sigalgs),
        alps_protocols: hello
            .alps
            .as_ref()
            .map(|(_, p)| p.clone())
            .unwrap_or_default(),
    };
    quic.alpn = hello.alpn.clone();
    let varint_of = |hex_value: &str| {
        hex::decode(hex_value)
            .ok()
            .and_then(|b| crate::quic::params::read_varint(&mut &b[..]))
    };
    let mut list = Vec::new();
    for (id, value) in hello.quic_transport_parameters.iter().flatten() {
        let v = varint_of(value);
        match *id {
            id if crate::quic::params::is_grease_id(id) => list.push("grease".to_string()),
            0x11 => list.push("version_information".into()),
            0x01 | 0x03 | 0x04 | 0x05 | 0x06 | 0x07 | 0x08 | 0x09 | 0x0a | 0x0b | 0x0c | 0x0e
            | 0x0f => {
                list.push(format!("0x{id:02x}"));
                if let Some(v) = v {
                    match id {
                        0x01 => quic.max_idle_timeout_ms = v,
                        0x03 => quic.max_udp_payload_size = u16::try_from(v).unwrap_or(1472),
                        0x04 => quic.initial_max_data = v,
                        0x05 => quic.initial_max_stream_data = v,
                        0x08 => quic.initial_max_streams_bidi = v,
                        0x09 => quic.initial_max_streams_uni = v,
                        _ => {}
                    }
                }
            }
            0x20 => {
                quic.max_datagram_frame_size = v;
                list.push(format!("0x20={value}"));
            }
            id => list.push(format!("0x{id:x}={value}")),
        }
    }
    quic.transport_parameters = list;
    let orders: Vec<Vec<u64>> = quic_reports
        .iter()
        .filter_map(|r| r.client_hello.quic_transport_parameters.as_ref())
        .map(|p| {
            p.iter()
                .map(|(id, _)| *id)
                .filter(|id| !crate::quic::params::is_grease_id(*id))
                .collect()
        })
        .collect();
    quic.shuffle_transport_parameters = if orders.len() >= 2 {
        orders.windows(2).any(|w| w[0] != w[1])
    } else {
        sources
            .push("QUIC transport parameter shuffling assumed (one QUIC connection seen)".into());
        true
    };
    if let Some(packet) = first.quic.as_ref().and_then(|q| q.initial_packets.first()) {
        quic.initial_dcid_len = u8::try_from(packet.dcid_len).unwrap_or(8);
        quic.scid_len = u8::try_from(packet.scid_len).unwrap_or(0);
        quic.initial_packet_size = u16::try_from(packet.datagram_len).unwrap_or(1250);
    }
    if let Some(h3) = &first.http3 {
        if !h3.settings.is_empty() {
            let mut qpack_zeroed = false;
            quic.http3_settings = h3
                .settings
                .iter()
                .take(8)
                .map(|(id, value, name)| match *id {
                    _ if name == "GREASE" => "grease".to_string(),
                    0x01 | 0x07 => {
                        qpack_zeroed |= *value != 0;
                        format!("0x{id:02x}=0")
                    }
                    id => format!("0x{id:02x}={value}"),
                })
                .collect();
            if qpack_zeroed {
                sources.push(
                    "the browser's QPACK table settings are sent as 0 (the HTTP/3 client decodes with the static table only)"
                        .into(),
                );
            }
        }
        quic.http3_grease_frame = h3
            .control_frames
            .get(1)
            .is_some_and(|f| f.starts_with("GREASE"));
        // Streams opened up front come as a pair; a decoder stream alone is one a browser
        // opened later (Chromium, to cancel a stream as it exits).
        quic.http3_qpack_streams = h3.uni_streams.iter().any(|s| s == "qpack-encoder");
    }
    sources.push(format!(
        "QUIC learned from {} connection(s); JA4 {}",
        quic_reports.len(),
        first.ja4
    ));
    quic
}

fn requests_of(report: &ConnectionReport) -> Vec<SeenRequest> {
    if let Some(h2) = &report.http2 {
        return h2
            .requests
            .iter()
            .map(|f| SeenRequest {
                stream: f.stream,
                priority: f.priority.map_or(
                    Http2Priority {
                        exclusive: false,
                        depends_on: 0,
                        weight: 16,
                    },
                    |p| Http2Priority {
                        exclusive: p.exclusive,
                        depends_on: p.depends_on,
                        weight: p.weight,
                    },
                ),
                headers: f.headers.clone(),
            })
            .collect();
    }
    report
        .http1
        .iter()
        .map(|lines| SeenRequest {
            stream: 1,
            priority: Http2Priority {
                exclusive: true,
                depends_on: 0,
                weight: 256,
            },
            headers: lines
                .iter()
                .filter(|(n, _)| {
                    !n.starts_with(':')
                        && !n.eq_ignore_ascii_case("host")
                        && !n.eq_ignore_ascii_case("connection")
                })
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
        })
        .collect()
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// The request kind a browser meant, from `sec-fetch-dest` (and `sec-fetch-mode`).
fn kind_of(headers: &[(String, String)]) -> RequestKind {
    match header(headers, "sec-fetch-dest").as_deref() {
        Some("document") | None => RequestKind::Navigation,
        Some("image") => RequestKind::Image,
        Some("script") => RequestKind::Script,
        Some("style") => RequestKind::Style,
        Some("font") => RequestKind::Font,
        Some(_) => RequestKind::Fetch,
    }
}

/// The regular headers of a request as a template: values kept, per-request headers
/// turned into slots, and the usual slots added where the family puts them.
fn template_headers(
    headers: &[(String, String)],
    chromium_like: bool,
) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = headers
        .iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .map(|(n, v)| {
            let slot = SLOT_HEADERS.contains(&n.as_str());
            (n.clone(), (!slot).then(|| v.clone()))
        })
        .collect();
    let has = |out: &[(String, Option<String>)], n: &str| out.iter().any(|(h, _)| h == n);
    let pos = |out: &[(String, Option<String>)], n: &str| out.iter().position(|(h, _)| h == n);
    if !has(&out, "referer") {
        let at = match pos(&out, "accept-encoding") {
            Some(i) if chromium_like => i,
            Some(i) => i + 1,
            None => out.len(),
        };
        out.insert(at, ("referer".into(), None));
    }
    if !has(&out, "cookie") {
        let at = if chromium_like {
            pos(&out, "priority").unwrap_or(out.len())
        } else {
            pos(&out, "referer").map_or(out.len(), |i| i + 1)
        };
        out.insert(at, ("cookie".into(), None));
    }
    out
}

/// Chromium's `Origin` slot on the kinds that go in CORS mode without a body (fonts,
/// and module scripts under the script template): first after the pseudo-headers, as a
/// live Chromium 156 page load sent it; a classic script's visit cannot show it.
fn cors_origin_slot(
    kind: RequestKind,
    mut headers: Vec<(String, Option<String>)>,
    chromium_like: bool,
) -> Vec<(String, Option<String>)> {
    let cors_kind = matches!(kind, RequestKind::Script | RequestKind::Font);
    if chromium_like && cors_kind && !headers.iter().any(|(n, _)| n == "origin") {
        headers.insert(0, ("origin".into(), None));
    }
    headers
}

/// Chromium's validator slots right after `accept` on the kinds whose revalidation its
/// renderer's memory cache makes (a live Chromium 156 second visit put `if-none-match`
/// there on the stylesheet and scripts; the document's came last, from the HTTP cache).
fn validator_slots(
    kind: RequestKind,
    mut headers: Vec<(String, Option<String>)>,
    chromium_like: bool,
) -> Vec<(String, Option<String>)> {
    let renderer_cached = matches!(
        kind,
        RequestKind::Image | RequestKind::Script | RequestKind::Style | RequestKind::Font
    );
    let has = |h: &[(String, Option<String>)], n: &str| h.iter().any(|(name, _)| name == n);
    if !chromium_like || !renderer_cached || has(&headers, "if-none-match") {
        return headers;
    }
    if let Some(accept) = headers.iter().position(|(n, _)| n == "accept") {
        headers.insert(accept + 1, ("if-modified-since".into(), None));
        headers.insert(accept + 1, ("if-none-match".into(), None));
    }
    headers
}

fn setting_by_id(id: u16) -> Option<Http2Setting> {
    [
        Http2Setting::HeaderTableSize,
        Http2Setting::EnablePush,
        Http2Setting::MaxConcurrentStreams,
        Http2Setting::InitialWindowSize,
        Http2Setting::MaxFrameSize,
        Http2Setting::MaxHeaderListSize,
    ]
    .into_iter()
    .find(|s| s.id() == id)
}

fn title_case(name: &str) -> String {
    if name.starts_with("sec-ch-") {
        return name.to_string();
    }
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn browser_and_version(ua: &str, headers: &[(String, String)]) -> (String, String) {
    let after = |token: &str| {
        ua.split(token)
            .nth(1)
            .and_then(|rest| rest.split(['.', ' ']).next())
            .map(str::to_string)
    };
    if let Some(v) = after("Firefox/") {
        return ("firefox".into(), v);
    }
    if let Some(v) = after("Chrome/") {
        let branded = header(headers, "sec-ch-ua").is_some_and(|b| b.contains("Google Chrome"));
        return (if branded { "chrome" } else { "chromium" }.into(), v);
    }
    ("unknown".into(), String::new())
}

fn platform_of(ua: &str) -> String {
    if ua.contains("Android") {
        "android"
    } else if ua.contains("Windows") {
        "windows"
    } else if ua.contains("Macintosh") {
        "macos"
    } else if ua.contains("Linux") {
        "linux"
    } else {
        "unknown"
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_go_where_each_family_puts_them() {
        let h = |v: &[&str]| {
            v.iter()
                .map(|n| (n.to_string(), "x".to_string()))
                .collect::<Vec<_>>()
        };
        let chromium = template_headers(
            &h(&[
                "user-agent",
                "accept-encoding",
                "accept-language",
                "priority",
            ]),
            true,
        );
        let names: Vec<&str> = chromium.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "user-agent",
                "referer",
                "accept-encoding",
                "accept-language",
                "cookie",
                "priority"
            ]
        );
        let firefox = template_headers(
            &h(&["user-agent", "accept-encoding", "upgrade-insecure-requests"]),
            false,
        );
        let names: Vec<&str> = firefox.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "user-agent",
                "accept-encoding",
                "referer",
                "cookie",
                "upgrade-insecure-requests"
            ]
        );
        assert!(firefox
            .iter()
            .find(|(n, _)| n == "cookie")
            .unwrap()
            .1
            .is_none());
    }

    #[test]
    fn validator_slots_follow_accept_on_what_chromium_revalidates_in_the_renderer() {
        let headers = |v: &[&str]| {
            v.iter()
                .map(|n| (n.to_string(), None))
                .collect::<Vec<(String, Option<String>)>>()
        };
        let names =
            |v: Vec<(String, Option<String>)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let seen = headers(&["user-agent", "accept", "sec-fetch-site"]);
        for kind in [
            RequestKind::Style,
            RequestKind::Script,
            RequestKind::Image,
            RequestKind::Font,
        ] {
            assert_eq!(
                names(validator_slots(kind, seen.clone(), true)),
                [
                    "user-agent",
                    "accept",
                    "if-none-match",
                    "if-modified-since",
                    "sec-fetch-site"
                ],
                "{kind:?}"
            );
        }
        // The document's and fetch's come from the HTTP cache (after the cookie), and
        // Firefox's are not known: no slots.
        for (kind, chromium) in [
            (RequestKind::Navigation, true),
            (RequestKind::Fetch, true),
            (RequestKind::Style, false),
        ] {
            assert_eq!(
                names(validator_slots(kind, seen.clone(), chromium)),
                names(seen.clone())
            );
        }
    }

    #[test]
    fn title_case_keeps_client_hints_lower() {
        assert_eq!(title_case("sec-fetch-site"), "Sec-Fetch-Site");
        assert_eq!(title_case("sec-ch-ua-mobile"), "sec-ch-ua-mobile");
        assert_eq!(title_case("user-agent"), "User-Agent");
    }

    #[test]
    fn no_request_is_a_clear_error() {
        let err = learn_profile("x", &[]).unwrap_err();
        assert!(err.is_invalid_input());
        assert!(err.to_string().contains("no connection carried a request"));
    }
}
