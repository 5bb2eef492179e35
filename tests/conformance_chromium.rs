//! Conformance: headless Chromium and mummer's `chromium-156-linux` profile, pointed at
//! the same inspector, must agree on every fingerprint field a server can see.
//!
//! Chromium is Debian's `/usr/bin/chromium` (installed by `scripts/setup.sh`). It
//! resolves only the test's host name (to 127.0.0.1) and nothing else.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mummer::inspect::{ConnectionReport, Inspector};
use mummer::net::ResolveOverride;
use mummer::{Client, Profile};

const HOST: &str = "conformance.test";

/// Kills the browser (by the PID we started) when the test ends, however it ends.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium_path() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

async fn chromium_report(inspector: &mut Inspector) -> ConnectionReport {
    let chromium = chromium_path().expect("chromium is installed by scripts/setup.sh");
    let profile_dir = tempfile::tempdir().unwrap();
    let url = format!("https://{HOST}:{}/", inspector.local_addr().port());
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--ignore-certificate-errors",
            &format!("--host-resolver-rules=MAP {HOST} 127.0.0.1, MAP * ~NOTFOUND"),
            &format!("--user-data-dir={}", profile_dir.path().display()),
            "--dump-dom",
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let _browser = Browser(child);
    // The first connection with an HTTP/2 request is the document load.
    loop {
        let report = tokio::time::timeout(Duration::from_secs(60), inspector.next_report())
            .await
            .expect("chromium connected within 60 s")
            .expect("inspector running");
        if report
            .http2
            .as_ref()
            .is_some_and(|h| !h.requests.is_empty())
        {
            return report;
        }
    }
}

async fn mummer_report(inspector: &mut Inspector, profile: &str) -> ConnectionReport {
    let port = inspector.local_addr().port();
    let client = Client::builder(Profile::named(profile).unwrap())
        .insecure(true)
        .resolve(
            format!("{HOST}:{port}:127.0.0.1")
                .parse::<ResolveOverride>()
                .unwrap(),
        )
        .build()
        .unwrap();
    client
        .get(&format!("https://{HOST}:{port}/"))
        .send()
        .await
        .unwrap();
    client.close_connections();
    tokio::time::timeout(Duration::from_secs(15), inspector.next_report())
        .await
        .unwrap()
        .unwrap()
}

fn non_grease(v: &[u16]) -> Vec<u16> {
    v.iter()
        .copied()
        .filter(|x| !mummer::inspect::clienthello::is_grease(*x))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_mummer_agree() {
    let mut inspector = Inspector::start("127.0.0.1:0".parse().unwrap(), &[HOST.to_string()])
        .await
        .unwrap();
    let browser = chromium_report(&mut inspector).await;
    // Let Chromium's other connections (favicon) drain before mummer connects.
    tokio::time::sleep(Duration::from_millis(500)).await;
    inspector.drain_reports();

    for profile in ["chromium-156-linux", "chrome-156-linux"] {
        let ours = mummer_report(&mut inspector, profile).await;
        let (b, o) = (&browser.client_hello, &ours.client_hello);
        assert_eq!(ours.ja4, browser.ja4, "{profile}: JA4");
        assert_eq!(ours.ja3n_hash, browser.ja3n_hash, "{profile}: JA3N");
        assert_eq!(
            non_grease(&o.cipher_suites),
            non_grease(&b.cipher_suites),
            "{profile}: ciphers"
        );
        let mut ext_b = non_grease(&b.extensions);
        let mut ext_o = non_grease(&o.extensions);
        ext_b.sort_unstable();
        ext_o.sort_unstable();
        assert_eq!(ext_o, ext_b, "{profile}: extension set");
        for ch in [b, o] {
            assert_eq!(ch.grease_extensions.len(), 2);
            assert_eq!(ch.grease_extensions[0].1, "");
            assert_eq!(ch.grease_extensions[1].1, "00");
            assert_ne!(ch.grease_extensions[0].0, ch.grease_extensions[1].0);
            assert!(mummer::inspect::clienthello::is_grease(ch.sigalgs[0]));
            assert_eq!(ch.groups[0], ch.key_shares[0].0);
            assert!([144, 176, 208, 240].contains(&ch.ech.unwrap().payload_len));
        }
        assert_eq!(o.sigalgs[1..], b.sigalgs[1..], "{profile}: sigalgs");
        assert_eq!(
            o.key_shares.iter().map(|k| k.1).collect::<Vec<_>>(),
            b.key_shares.iter().map(|k| k.1).collect::<Vec<_>>()
        );
        assert_eq!(o.alps, b.alps, "{profile}: ALPS");
        let (eb, eo) = (b.ech.unwrap(), o.ech.unwrap());
        assert_eq!(
            (eo.kdf_id, eo.aead_id, eo.enc_len),
            (eb.kdf_id, eb.aead_id, eb.enc_len)
        );
        assert_eq!(
            o.trust_anchors_hex, b.trust_anchors_hex,
            "{profile}: trust anchors"
        );
        assert_eq!(o.cert_compression, b.cert_compression);

        let (hb, ho) = (
            browser.http2.as_ref().unwrap(),
            ours.http2.as_ref().unwrap(),
        );
        assert_eq!(ho.akamai, hb.akamai, "{profile}: Akamai");
        assert_eq!(ho.settings, hb.settings);
        assert_eq!(ho.window_update, hb.window_update);
        let (rb, ro) = (&hb.requests[0], &ours.http2.as_ref().unwrap().requests[0]);
        assert_eq!(ro.priority, rb.priority, "{profile}: HEADERS priority");
        assert_eq!(
            ro.headers.len(),
            rb.headers.len(),
            "{profile}: header count\n{:?}\n{:?}",
            ro.headers,
            rb.headers
        );
        for ((no, vo), (nb, vb)) in ro.headers.iter().zip(&rb.headers) {
            assert_eq!(no, nb, "{profile}: header order");
            match no.as_str() {
                "user-agent" => assert_eq!(vo, &vb.replace("HeadlessChrome", "Chrome")),
                "sec-ch-ua" if profile == "chrome-156-linux" => {
                    assert!(vo.contains("Google Chrome"))
                }
                "sec-ch-ua" => assert_eq!(vo, &vb.replace("HeadlessChrome", "Chromium")),
                _ => assert_eq!(vo, vb, "{profile}: value of {no}"),
            }
        }
    }
}
