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

async fn chromium_over_quic(inspector: &mut Inspector) -> ConnectionReport {
    let port = inspector.local_addr().port();
    let url = format!("https://{HOST}:{port}/");
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
        url,
    ]);
    let browser = Browser::start(&args, Stdio::null());
    let mut found = None;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while found.is_none() {
        let wait = give_up.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(wait, inspector.next_report()).await {
            Ok(Some(report)) if report.quic.is_some() => found = Some(report),
            Ok(Some(_)) => continue,
            _ => break,
        }
    }
    drop(browser);
    found.expect("chromium came over QUIC within 60 s")
}

async fn mummer_over_quic(inspector: &mut Inspector) -> ConnectionReport {
    let port = inspector.local_addr().port();
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), inspector.cert_pem()).expect("write CA");
    let client = Client::builder(Profile::named("chromium-156-linux").expect("profile"))
        .ca_file(ca.path())
        .resolve(
            format!("{HOST}:{port}:127.0.0.1")
                .parse::<ResolveOverride>()
                .expect("resolve"),
        )
        .http_version(HttpVersionPref::Http3Only)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let resp = client
        .get(&format!("https://{HOST}:{port}/"))
        .send()
        .await
        .expect("mummer over HTTP/3");
    assert_eq!(resp.status(), 200);
    drop(client);
    loop {
        let report = tokio::time::timeout(Duration::from_secs(20), inspector.next_report())
            .await
            .expect("the QUIC connection ended")
            .expect("inspector running");
        if report.quic.is_some() {
            return report;
        }
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
        let chromium = chromium_over_quic(&mut inspector).await;
        let ours = mummer_over_quic(&mut inspector).await;
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
    });
}
