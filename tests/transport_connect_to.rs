//! `--connect-to`: the connection goes elsewhere while TLS and headers keep the URL's host.

mod support;

use mummer::net::ConnectTo;
use mummer::{Client, Profile};
use support::https::{HttpsServer, Reply};

#[tokio::test]
async fn connect_to_keeps_sni_certificate_check_and_authority() {
    let server = HttpsServer::start(|_| Reply::ok("routed")).await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &server.cert_pem).unwrap();
    let rule: ConnectTo = format!("shop.test:443:127.0.0.1:{}", server.addr.port())
        .parse()
        .unwrap();
    let client = Client::builder(Profile::named("chrome-156-linux").unwrap())
        .ca_file(ca.path())
        .connect_to(rule)
        .build()
        .unwrap();
    // The certificate names shop.test, not 127.0.0.1's port: verification passes only
    // because SNI and the check still use the URL's host.
    let resp = client.get("https://shop.test/").send().await.unwrap();
    assert_eq!(resp.text(), "routed");
    let seen = &server.requests()[0];
    assert_eq!(seen.uri, "https://shop.test/");
    // A host the rule does not name is not routed (and does not resolve: it is .test).
    let err = client.get("https://other.test/").send().await.unwrap_err();
    assert!(err.is_dns(), "{err}");
}
