//! HTTP/3 against live headless Chromium: the inspector listens over UDP too, Chromium
//! is told to use QUIC for the test origin, then `mummer` with `chromium-156-linux`
//! (`--http3-only`) visits the same inspector, and the two QUIC ClientHellos, transport
//! parameters, Initial packets, HTTP/3 SETTINGS and document request headers are
//! compared field by field. Chromium runs in a loopback-only network namespace where
//! the machine allows it, and resolves only the test's host.

mod support;

use std::process::Stdio;
use std::time::Duration;

use mummer::client::{Client, HttpVersionPref};
use mummer::inspect::clienthello::is_grease;
use mummer::inspect::server::{ConnectionReport, Inspector};
use mummer::net::ResolveOverride;
use mummer::profile::Profile;
use support::chromium::{base_args, run_isolated, spki_hash, Browser};

const HOST: &str = "quic.test";

/// Headless Chromium told to use QUIC for the test origin opens `path`; the first
/// report `wanted` accepts (within 60 s) is returned, the browser killed.
async fn chromium_over_quic(
    inspector: &mut Inspector,
    path: &str,
    wanted: fn(&ConnectionReport) -> bool,
) -> ConnectionReport {
    let port = inspector.local_addr().port();
    let profile_dir = tempfile::tempdir().expect("profile dir");
    let mut args = base_args(&[HOST], profile_dir.path());
    args.retain(|a| a != "--disable-quic" && a != "--ignore-certificate-errors");
    args.extend([
        "--enable-quic".to_string(),
        format!("--origin-to-force-quic-on={HOST}:{port}"),
        format!(
            "--ignore-certificate-errors-spki-list={}",
            spki_hash(inspector.cert_pem())
        ),
        "--dump-dom".to_string(),
        format!("https://{HOST}:{port}{path}"),
    ]);
    let browser = Browser::start(&args, Stdio::null());
    let mut found = None;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while found.is_none() {
        let wait = give_up.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(wait, inspector.next_report()).await {
            Ok(Some(report)) if wanted(&report) => found = Some(report),
            Ok(Some(_)) => continue,
            _ => break,
        }
    }
    drop(browser);
    found.expect("chromium came over QUIC within 60 s")
}

/// The next report `wanted` accepts, within 20 s of each other report.
async fn next_report_where(
    inspector: &mut Inspector,
    wanted: fn(&ConnectionReport) -> bool,
) -> ConnectionReport {
    loop {
        let report = tokio::time::timeout(Duration::from_secs(20), inspector.next_report())
            .await
            .expect("the connection ended")
            .expect("inspector running");
        if wanted(&report) {
            return report;
        }
    }
}

/// A `chromium-156-linux` client that trusts the inspector (through `ca`, which must
/// outlive it) and finds the test host on 127.0.0.1.
fn mummer_client(inspector: &Inspector, ca: &std::path::Path, version: HttpVersionPref) -> Client {
    std::fs::write(ca, inspector.cert_pem()).expect("write CA");
    Client::builder(Profile::named("chromium-156-linux").expect("profile"))
        .ca_file(ca)
        .resolve(
            format!("{HOST}:{}:127.0.0.1", inspector.local_addr().port())
                .parse::<ResolveOverride>()
                .expect("resolve"),
        )
        .http_version(version)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// One request from mummer (`chromium-156-linux`) over `version` to the inspector, and
/// the report of its connection (over UDP for HTTP/3, over TCP otherwise).
async fn mummer_visit(inspector: &mut Inspector, version: HttpVersionPref) -> ConnectionReport {
    let port = inspector.local_addr().port();
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    let client = mummer_client(inspector, ca.path(), version);
    let resp = client
        .get(&format!("https://{HOST}:{port}/"))
        .send()
        .await
        .expect("mummer visits the inspector");
    assert_eq!(resp.status(), 200);
    drop(client);
    if version == HttpVersionPref::Http3Only {
        next_report_where(inspector, |r| r.quic.is_some()).await
    } else {
        next_report_where(inspector, |r| r.quic.is_none()).await
    }
}

fn no_grease(v: &[u16]) -> Vec<u16> {
    v.iter().copied().filter(|x| !is_grease(*x)).collect()
}

fn sorted(mut v: Vec<u16>) -> Vec<u16> {
    v.sort_unstable();
    v
}

#[test]
fn chromium_and_mummer_speak_http3_alike() {
    run_isolated("chromium_and_mummer_speak_http3_alike", || async {
        let mut inspector = Inspector::start("127.0.0.1:0".parse().expect("addr"), &[HOST.into()])
            .await
            .expect("inspector");
        let chromium = chromium_over_quic(&mut inspector, "/", |r| r.quic.is_some()).await;
        let ours = mummer_visit(&mut inspector, HttpVersionPref::Http3Only).await;
        eprintln!(
            "chromium: {}\nmummer: {}",
            serde_json::to_string(&chromium).unwrap_or_default(),
            serde_json::to_string(&ours).unwrap_or_default()
        );
        let (c, m) = (&chromium.client_hello, &ours.client_hello);
        assert!(chromium.ja4.starts_with('q'), "{}", chromium.ja4);
        assert_eq!(ours.ja4, chromium.ja4, "JA4 over QUIC");
        assert_eq!(no_grease(&m.cipher_suites), no_grease(&c.cipher_suites));
        assert_eq!(
            sorted(no_grease(&m.extensions)),
            sorted(no_grease(&c.extensions))
        );
        assert_eq!(no_grease(&m.groups), no_grease(&c.groups));
        assert_eq!(no_grease(&m.sigalgs), no_grease(&c.sigalgs));
        assert_eq!(m.alpn, c.alpn);
        assert_eq!(m.alps, c.alps);
        assert_eq!(m.cert_compression, c.cert_compression);
        let shares = |h: &mummer::inspect::clienthello::ClientHello| {
            h.key_shares
                .iter()
                .filter(|(g, _)| !is_grease(*g))
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(shares(m), shares(c));
        assert_eq!(m.psk_modes, c.psk_modes);
        assert_eq!(m.trust_anchors_hex, c.trust_anchors_hex);
        let ech = |h: &mummer::inspect::clienthello::ClientHello| {
            h.ech.map(|e| (e.kdf_id, e.aead_id, e.enc_len))
        };
        assert_eq!(ech(m), ech(c));
        // BoringSSL picks the ECH GREASE payload length at random from this set.
        for h in [m, c] {
            let len = h.ech.map(|e| e.payload_len).unwrap_or_default();
            assert!([144, 176, 208, 240].contains(&len), "{len}");
        }

        // Transport parameters: the same ids with the same values. Each run differs in
        // the order (both shuffle), the GREASE parameter's id and value, and the GREASE
        // version inside version_information, so those are compared by shape.
        let params = |h: &mummer::inspect::clienthello::ClientHello| {
            let mut p: Vec<(u64, String)> = h
                .quic_transport_parameters
                .clone()
                .expect("quic_transport_parameters")
                .into_iter()
                .filter(|(id, _)| !mummer::quic::params::is_grease_id(*id))
                .map(|(id, v)| {
                    if id == 0x11 {
                        (id, format!("{}+{}", &v[..8], v.len()))
                    } else {
                        (id, v)
                    }
                })
                .collect();
            p.sort();
            p
        };
        assert_eq!(params(m), params(c), "transport parameters");
        let grease_count = |h: &mummer::inspect::clienthello::ClientHello| {
            h.quic_transport_parameters
                .iter()
                .flatten()
                .filter(|(id, _)| mummer::quic::params::is_grease_id(*id))
                .count()
        };
        assert_eq!(grease_count(m), 1);
        assert_eq!(grease_count(c), 1);

        // The Initial packets' shape that quinn lets a client set.
        let (cq, mq) = (
            chromium.quic.as_ref().expect("quic report"),
            ours.quic.as_ref().expect("quic report"),
        );
        let first = |q: &mummer::inspect::h3frames::QuicReport| {
            let p = &q.initial_packets[0];
            (
                p.version,
                p.dcid_len,
                p.scid_len,
                p.token_len,
                p.datagram_len,
            )
        };
        assert_eq!(first(mq), first(cq), "first Initial packet");
        // HTTP/3: SETTINGS ids in Chromium's order with its values, except the two QPACK
        // dynamic-table settings (sent as 0: the client decodes with the static table
        // only) and GREASE (random id and value in both); the control stream opens with
        // SETTINGS and a GREASE frame; no other stream is opened up front.
        let (ch3, mh3) = (
            chromium.http3.as_ref().expect("http3 report"),
            ours.http3.as_ref().expect("http3 report"),
        );
        let settings = |h: &mummer::inspect::h3frames::Http3Report| {
            h.settings
                .iter()
                .map(|(id, v, name)| match *id {
                    0x01 | 0x07 => (name.clone(), None),
                    _ if name == "GREASE" => (name.clone(), None),
                    _ => (name.clone(), Some(*v)),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(settings(mh3), settings(ch3), "HTTP/3 SETTINGS");
        let kinds = |frames: &[String]| {
            frames
                .iter()
                .take(2)
                .map(|f| f.split('(').next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(&mh3.control_frames), kinds(&ch3.control_frames));
        // Chromium opens only its control stream up front, as mummer does; in some runs
        // it opens its QPACK decoder stream later (to cancel a stream as it exits),
        // the one run-to-run difference allowed here.
        assert_eq!(mh3.uni_streams, ["control"]);
        assert_eq!(ch3.uni_streams.first().map(String::as_str), Some("control"));
        assert!(
            ch3.uni_streams[1..].iter().all(|s| s == "qpack-decoder"),
            "{:?}",
            ch3.uni_streams
        );
        // The document request: every field line in order, represented alike (static
        // reference or literal, Huffman or raw), with the same values but the
        // user-agent's (HeadlessChrome in the capture) and the authority's port.
        let lines = |h: &mummer::inspect::h3frames::Http3Report| {
            h.requests[0]
                .fields
                .iter()
                .map(|f| {
                    let value = match f.name.as_str() {
                        "user-agent" | ":authority" => String::new(),
                        _ => f.value.clone(),
                    };
                    (
                        f.name.clone(),
                        f.representation,
                        f.static_index,
                        f.huffman_name,
                        f.huffman_value,
                        value,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines(mh3),
            lines(ch3),
            "the document request's field section"
        );
        assert_eq!(mh3.requests[0].frames, ch3.requests[0].frames);

        // What `--save-profile` learns from Chromium's QUIC connection is the built-in
        // QUIC section (the TLS side of the profile comes from a TCP connection: ours).
        let tcp_report = mummer_visit(&mut inspector, HttpVersionPref::Http2Only).await;
        let learned =
            mummer::inspect::learn::learn_profile("learned", &[tcp_report, chromium.clone()])
                .expect("a profile learned");
        let builtin = Profile::named("chromium-156-linux").expect("profile").quic;
        let mut learned_quic = learned.quic.clone();
        learned_quic.transport_parameters.sort();
        let mut builtin_sorted = builtin.clone();
        builtin_sorted.transport_parameters.sort();
        assert_eq!(
            learned_quic, builtin_sorted,
            "learned from Chromium vs built-in"
        );

        // Not reproduced, as docs/profiles.md says: Chromium's "chaos protection"
        // (CRYPTO frames cut up, shuffled and mixed with PING and PADDING in every
        // Initial), its second Initial datagram size and its packet numbers, and the
        // PRIORITY_UPDATE frame it sends on the control stream; printed for the record.
        eprintln!(
            "not compared: Initial frames chromium {:?} mummer {:?}",
            cq.initial_packets
                .iter()
                .map(|p| &p.frames)
                .collect::<Vec<_>>(),
            mq.initial_packets
                .iter()
                .map(|p| &p.frames)
                .collect::<Vec<_>>()
        );
    });
}

#[test]
fn chromium_and_mummer_resume_quic_alike() {
    run_isolated("chromium_and_mummer_resume_quic_alike", || async {
        let mut inspector = Inspector::start("127.0.0.1:0".parse().expect("addr"), &[HOST.into()])
            .await
            .expect("inspector");
        let port = inspector.local_addr().port();
        // Chromium: the /resume page is served and its connection closed, so the page's
        // fetch comes back on a second QUIC connection that resumes the first one.
        let resumed: fn(&ConnectionReport) -> bool =
            |r| r.quic.is_some() && r.client_hello.psk_identities.is_some();
        let chromium =
            chromium_over_quic(&mut inspector, mummer::inspect::RESUME_PATH, resumed).await;

        // mummer: two QUIC connections, the second resuming from the first's ticket.
        let ca = tempfile::NamedTempFile::new().expect("temp file");
        let client = mummer_client(&inspector, ca.path(), HttpVersionPref::Http3Only);
        let url = format!("https://{HOST}:{port}/");
        client.get(&url).send().await.expect("first");
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.close_connections();
        let second = client.get(&url).send().await.expect("second");
        assert!(second.tls().is_some_and(|t| t.resumed), "mummer resumed");
        drop(client);
        let ours = next_report_where(&mut inspector, resumed).await;
        eprintln!(
            "chromium resumed: {}\nmummer resumed: {}",
            serde_json::to_string(&chromium.client_hello).unwrap_or_default(),
            serde_json::to_string(&ours.client_hello).unwrap_or_default()
        );
        let (c, m) = (&chromium.client_hello, &ours.client_hello);
        assert_eq!(m.psk_identities, c.psk_identities);
        assert_eq!(m.psk_modes, c.psk_modes);
        // The same extension set, PSK last in both. The inspector's tickets allow no
        // early data, so neither offers 0-RTT here; against a server whose tickets
        // allow it Chromium would add `early_data`, which mummer does not send yet
        // (docs/profiles.md).
        assert_eq!(m.extensions.last(), Some(&41));
        assert_eq!(c.extensions.last(), Some(&41));
        assert_eq!(
            sorted(no_grease(&m.extensions)),
            sorted(no_grease(&c.extensions))
        );
        assert_eq!(ours.ja4, chromium.ja4, "resumed JA4");
        assert_eq!(no_grease(&m.cipher_suites), no_grease(&c.cipher_suites));
        assert_eq!(no_grease(&m.sigalgs), no_grease(&c.sigalgs));
        assert_eq!(m.alpn, c.alpn);
        assert_eq!(m.alps, c.alps);
    });
}

/// `mummer inspect --alt-svc`: a session with no HTTP/3 flag visits over TCP, is
/// offered HTTP/3, and its next connection is QUIC, as on the internet. (Headless
/// Chromium ignores the offer from this inspector: its certificate is trusted by an
/// SPKI pin, not a known root, and Chromium takes Alt-Svc only from the latter; the
/// browser comparisons above force QUIC with `--origin-to-force-quic-on` instead.)
#[tokio::test]
async fn a_session_upgrades_to_quic_on_the_inspectors_alt_svc() {
    let mut inspector = Inspector::start("127.0.0.1:0".parse().expect("addr"), &[HOST.into()])
        .await
        .expect("inspector");
    inspector.offer_http3(true);
    let port = inspector.local_addr().port();
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), inspector.cert_pem()).expect("write CA");
    let session = mummer::Session::builder(Profile::named("chromium-156-linux").expect("profile"))
        .transport(|b| {
            b.ca_file(ca.path()).resolve(
                format!("{HOST}:{port}:127.0.0.1")
                    .parse::<ResolveOverride>()
                    .expect("resolve"),
            )
        })
        .build()
        .expect("session");
    let url = format!("https://{HOST}:{port}/");
    let first = session.get(&url).send().await.expect("first visit");
    assert_eq!(first.version(), http::Version::HTTP_2);
    assert!(
        first
            .headers()
            .get("alt-svc")
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("h3=\":"))),
        "the inspector offered HTTP/3"
    );
    session.refresh();
    let second = session.get(&url).send().await.expect("second visit");
    assert_eq!(
        second.version(),
        http::Version::HTTP_3,
        "upgraded by Alt-Svc"
    );
    let stats = session.stats();
    assert!(
        stats.origins.iter().any(|o| o.protocol == Some("h3")),
        "{:?}",
        stats.origins
    );
    drop(session);
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let r = tokio::time::timeout(Duration::from_secs(20), inspector.next_report())
            .await
            .expect("both connections reported")
            .expect("inspector running");
        kinds.push(if r.quic.is_some() { "quic" } else { "tcp" });
    }
    kinds.sort_unstable();
    assert_eq!(kinds, ["quic", "tcp"], "the inspector saw one of each");
}
