//! mummer's own ClientHello and HTTP/2 preface, as the inspector sees them, against the
//! reference captures of Chromium 156 and Firefox ESR 153.

use mummer::inspect::{ConnectionReport, Inspector};
use mummer::net::ResolveOverride;
use mummer::{Client, Profile, RequestKind};
use serde_json::Value;

fn reference(file: &str) -> Value {
    let path = format!(
        "{}/tests/data/fingerprints/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn inspector() -> Inspector {
    Inspector::start("127.0.0.1:0".parse().unwrap(), &["fp.test".to_string()])
        .await
        .unwrap()
}

fn client(profile: &str, inspector: &Inspector) -> Client {
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), inspector.cert_pem()).unwrap();
    let port = inspector.local_addr().port();
    let client = Client::builder(Profile::named(profile).unwrap())
        .ca_file(ca.path())
        .resolve(
            format!("fp.test:{port}:127.0.0.1")
                .parse::<ResolveOverride>()
                .unwrap(),
        )
        .build()
        .unwrap();
    drop(ca);
    client
}

async fn fetch_report(
    client: &Client,
    inspector: &mut Inspector,
    kind: RequestKind,
) -> ConnectionReport {
    let url = format!("https://fp.test:{}/", inspector.local_addr().port());
    let resp = client.get(&url).kind(kind).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The response body is the report so far; the final one comes when the connection closes.
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert!(body["ja4"].is_string());
    client.close_connections();
    tokio::time::timeout(std::time::Duration::from_secs(15), inspector.next_report())
        .await
        .unwrap()
        .unwrap()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn chromium_profile_matches_the_capture() {
    let reference = reference("chromium-156-linux.json");
    let mut inspector = inspector().await;
    let client = client("chromium-156-linux", &inspector);
    let first = fetch_report(&client, &mut inspector, RequestKind::Navigation).await;
    assert_eq!(first.ja4, reference["ja4"].as_str().unwrap());
    assert_eq!(first.ja4_r, reference["ja4_r"].as_str().unwrap());
    assert_eq!(first.ja3n_hash, reference["ja3n_hash"].as_str().unwrap());
    let h2 = first.http2.as_ref().unwrap();
    assert_eq!(h2.akamai, reference["akamai_h2"].as_str().unwrap());
    assert_eq!(
        h2.frames_until_first_headers,
        strs(&reference["frames_until_second_request"])
    );
    let ch = &first.client_hello;
    // GREASE placement: first extension empty, last one byte, distinct values.
    let (g1, g2) = (&ch.grease_extensions[0], &ch.grease_extensions[1]);
    assert_eq!((ch.extensions[0], g1.1.as_str()), (g1.0, ""));
    assert_eq!(
        (*ch.extensions.last().unwrap(), g2.1.as_str()),
        (g2.0, "00")
    );
    assert_ne!(g1.0, g2.0);
    assert!(
        mummer::inspect::clienthello::is_grease(ch.sigalgs[0]),
        "GREASE leads signature_algorithms"
    );
    assert_eq!(
        ch.groups[0], ch.key_shares[0].0,
        "GREASE group equals GREASE key share"
    );
    assert_eq!(
        ch.key_shares.iter().map(|k| k.1).collect::<Vec<_>>(),
        [1, 1216, 32]
    );
    assert_eq!(ch.alps, Some((17613, vec!["h2".to_string()])));
    let ech = ch.ech.unwrap();
    assert_eq!((ech.kdf_id, ech.aead_id, ech.enc_len), (1, 1, 32));
    assert!(
        [144, 176, 208, 240].contains(&ech.payload_len),
        "{}",
        ech.payload_len
    );
    assert_eq!(
        ch.trust_anchors_hex.as_deref(),
        reference["trust_anchors_0xca34_hex"].as_str()
    );
    // Navigation header list in order with values (authority differs by port only).
    let want: Vec<(String, String)> = reference["header_orders_by_request_type"]["document"]
        ["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .filter(|(n, _)| n != ":authority")
        .collect();
    let got: Vec<(String, String)> = h2.requests[0]
        .headers
        .iter()
        .filter(|(n, _)| n != ":authority")
        .cloned()
        .collect();
    assert_eq!(got, want);
    let prio = h2.requests[0].priority.unwrap();
    assert_eq!(
        (prio.exclusive, prio.depends_on, prio.weight),
        (true, 0, 256)
    );

    // A second connection resumes with the ticket, pre_shared_key last, and permutes.
    let second = fetch_report(&client, &mut inspector, RequestKind::Navigation).await;
    assert!(second.resumed, "second connection should resume");
    assert_eq!(second.ja4, reference["resumption"]["ja4"].as_str().unwrap());
    assert_eq!(
        *second.client_hello.extensions.last().unwrap(),
        41,
        "pre_shared_key is last"
    );
    let third = fetch_report(&client, &mut inspector, RequestKind::Image).await;
    let sorted = |e: &[u16]| {
        let mut v = e
            .iter()
            .copied()
            .filter(|x| !mummer::inspect::clienthello::is_grease(*x) && *x != 41)
            .collect::<Vec<_>>();
        v.sort();
        v
    };
    assert_eq!(
        sorted(&first.client_hello.extensions),
        sorted(&third.client_hello.extensions)
    );
    assert_ne!(
        first
            .client_hello
            .extensions
            .iter()
            .filter(|x| !mummer::inspect::clienthello::is_grease(**x))
            .collect::<Vec<_>>(),
        third
            .client_hello
            .extensions
            .iter()
            .filter(|x| !mummer::inspect::clienthello::is_grease(**x) && **x != 41)
            .collect::<Vec<_>>(),
        "extension order is permuted per connection"
    );
    assert_eq!(
        third.http2.as_ref().unwrap().requests[0]
            .priority
            .unwrap()
            .weight,
        147,
        "image weight"
    );
}

#[tokio::test]
async fn chrome_differs_from_chromium_only_in_brands() {
    let mut inspector = inspector().await;
    let a = fetch_report(
        &client("chromium-156-linux", &inspector),
        &mut inspector,
        RequestKind::Navigation,
    )
    .await;
    let b = fetch_report(
        &client("chrome-156-linux", &inspector),
        &mut inspector,
        RequestKind::Navigation,
    )
    .await;
    assert_eq!(a.ja4, b.ja4);
    assert_eq!(
        a.http2.as_ref().unwrap().akamai,
        b.http2.as_ref().unwrap().akamai
    );
    let ha = &a.http2.as_ref().unwrap().requests[0].headers;
    let hb = &b.http2.as_ref().unwrap().requests[0].headers;
    for (x, y) in ha.iter().zip(hb) {
        assert_eq!(x.0, y.0);
        if x.0 != "sec-ch-ua" {
            assert_eq!(x.1, y.1);
        } else {
            assert!(y.1.contains("\"Google Chrome\";v=\"156\""));
        }
    }
}

#[tokio::test]
async fn firefox_profile_matches_what_boringssl_can_send() {
    let reference = reference("firefox-esr-153-linux.json");
    let mut inspector = inspector().await;
    let r = fetch_report(
        &client("firefox-153-linux", &inspector),
        &mut inspector,
        RequestKind::Navigation,
    )
    .await;
    let h2 = r.http2.as_ref().unwrap();
    assert_eq!(h2.akamai, reference["akamai_h2"].as_str().unwrap());
    assert_eq!(h2.requests[0].stream, 3, "Firefox opens stream 3 first");
    let p = h2.requests[0].priority.unwrap();
    assert_eq!((p.exclusive, p.weight), (false, 42));
    // Same cipher list and sigalgs as Firefox; the extension set lacks only what
    // BoringSSL cannot produce (docs/profiles.md).
    let ja4_b = reference["ja4"]
        .as_str()
        .unwrap()
        .split('_')
        .nth(1)
        .unwrap();
    assert_eq!(r.ja4.split('_').nth(1).unwrap(), ja4_b);
    assert!(!r
        .client_hello
        .extensions
        .iter()
        .any(|e| mummer::inspect::clienthello::is_grease(*e)));
    let want_headers: Vec<String> = reference["header_orders_by_request_type"]["document"]
        ["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap().to_string())
        .collect();
    let got: Vec<String> = h2.requests[0]
        .headers
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(got, want_headers);
}
