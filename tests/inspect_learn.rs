//! `mummer inspect --save-profile`: a profile learned from what a client showed the
//! inspector reproduces that client. mummer itself plays the browser here (the live
//! Chromium version of this check is in `conformance_chromium.rs`).

use mummer::inspect::{learn_profile, ConnectionReport, Inspector};
use mummer::{Client, Profile, RequestKind};

async fn visit(
    profile: &Profile,
    inspector: &mut Inspector,
    kinds: &[RequestKind],
) -> ConnectionReport {
    let client = Client::builder(profile.clone())
        .insecure(true)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/", inspector.local_addr().port());
    for kind in kinds {
        let resp = client.get(&url).kind(*kind).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    client.close_connections();
    tokio::time::timeout(std::time::Duration::from_secs(15), inspector.next_report())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn learned_chromium_profile_equals_the_builtin() {
    let builtin = Profile::named("chromium-156-linux").unwrap();
    let mut inspector = Inspector::start("127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let kinds = [
        RequestKind::Navigation,
        RequestKind::Image,
        RequestKind::Script,
    ];
    let reports = vec![
        visit(&builtin, &mut inspector, &kinds).await,
        visit(&builtin, &mut inspector, &kinds).await,
    ];
    let learned = learn_profile("my-chromium", &reports).unwrap();
    assert_eq!(learned.name, "my-chromium");
    assert_eq!(
        (
            learned.browser.as_str(),
            learned.version.as_str(),
            learned.platform.as_str()
        ),
        ("chromium", "156", "linux")
    );
    assert_eq!(learned.user_agent, builtin.user_agent);
    assert_eq!(learned.tls, builtin.tls, "every TLS knob learned back");
    assert_eq!(learned.http2, builtin.http2);
    for kind in kinds {
        assert_eq!(
            learned.requests[&kind].headers, builtin.requests[&kind].headers,
            "{kind} headers"
        );
    }
    // Every stream carries its own kind's priority block, so each is learned back.
    for kind in kinds {
        assert_eq!(
            learned.requests[&kind].priority, builtin.requests[&kind].priority,
            "{kind} priority"
        );
    }
    // Kinds not requested fall back at request time instead of being invented.
    assert!(!learned.requests.contains_key(&RequestKind::Font));

    // The file round-trips through the loader, and the learned profile wears the same JA4.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my-chromium.json");
    std::fs::write(&path, serde_json::to_string_pretty(&learned).unwrap()).unwrap();
    let loaded = Profile::from_file(&path).unwrap();
    assert_eq!(loaded, learned);
    let again = visit(&loaded, &mut inspector, &[RequestKind::Navigation]).await;
    assert_eq!(again.ja4, reports[0].ja4);
    assert_eq!(
        again.http2.unwrap().akamai,
        reports[0].http2.as_ref().unwrap().akamai
    );
}

#[tokio::test]
async fn learned_firefox_profile_keeps_order_and_one_handshake_rules() {
    let builtin = Profile::named("firefox-153-linux").unwrap();
    let mut inspector = Inspector::start("127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let report = visit(
        &builtin,
        &mut inspector,
        &[RequestKind::Navigation, RequestKind::Fetch],
    )
    .await;
    let learned = learn_profile("ff", &[report]).unwrap();
    assert_eq!(learned.browser, "firefox");
    assert!(!learned.tls.grease);
    assert!(
        !learned.tls.permute_extensions,
        "no GREASE, one handshake: not permuted"
    );
    assert!(learned.sources.iter().any(|s| s.contains("assumed")));
    assert_eq!(learned.tls.cipher_suites, builtin.tls.cipher_suites);
    assert_eq!(
        learned.http2, builtin.http2,
        "initial stream 3 and pseudo order :m :p :a :s"
    );
    assert_eq!(
        learned.requests[&RequestKind::Navigation].headers,
        builtin.requests[&RequestKind::Navigation].headers
    );
    assert_eq!(
        learned.requests[&RequestKind::Fetch].headers.first(),
        builtin.requests[&RequestKind::Fetch].headers.first()
    );
    assert_eq!(learned.http1.header_case["user-agent"], "User-Agent");
}
