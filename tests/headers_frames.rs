//! Every HEADERS frame of a page's requests, as the inspector sees them, against the
//! Chromium 156 capture: the priority block each stream carries (weight of its kind,
//! exclusive, depending on the newest open stream of its priority or above) and how
//! HPACK wrote each field (indexed or literal, what enters the dynamic table, Huffman
//! only where it is shorter).

use mummer::inspect::{ConnectionReport, Inspector};
use mummer::net::ResolveOverride;
use mummer::{Profile, RequestKind, Session};
use serde_json::Value;

fn reference(file: &str) -> Value {
    let path = format!(
        "{}/tests/data/fingerprints/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("capture")).expect("json")
}

fn session(profile: &str, inspector: &Inspector, ca: &tempfile::NamedTempFile) -> Session {
    let port = inspector.local_addr().port();
    let resolve: ResolveOverride = format!("fp.test:{port}:127.0.0.1")
        .parse()
        .expect("resolve");
    let ca = ca.path().to_path_buf();
    Session::builder(Profile::named(profile).expect("profile"))
        .transport(move |b| b.ca_file(ca).resolve(resolve))
        .build()
        .expect("session")
}

/// One request as the capture words it: (name, representation, huffman, name source).
type Fields = Vec<(String, String, Option<bool>, String)>;

fn captured(capture: &Value, kind: &str) -> Fields {
    capture["hpack_representation_by_request_type"][kind]
        .as_array()
        .expect("a captured request type")
        .iter()
        .map(|f| {
            (
                f[0].as_str().expect("name").to_string(),
                f[1].as_str().expect("kind").to_string(),
                f[2].as_bool(),
                f[3].as_str().expect("name source").to_string(),
            )
        })
        .collect()
}

fn seen(report: &ConnectionReport, at: usize) -> Fields {
    let request = &report.http2.as_ref().expect("HTTP/2").requests[at];
    assert_eq!(request.headers.len(), request.representations.len());
    request
        .headers
        .iter()
        .zip(&request.representations)
        .map(|((name, _), r)| {
            (
                name.clone(),
                r.kind.to_string(),
                r.huffman,
                r.name.to_string(),
            )
        })
        .collect()
}

fn block(report: &ConnectionReport, at: usize) -> (bool, u32, u16) {
    let p = report.http2.as_ref().expect("HTTP/2").requests[at]
        .priority
        .expect("a priority block");
    (p.exclusive, p.depends_on, p.weight)
}

/// A document, an image, a fetch() whose body is still unread when an XHR goes out
/// (so the XHR depends on it, as Chromium's XHR depended on the open favicon), then a
/// POST fetch: each HEADERS frame as Chromium 156 wrote it.
#[tokio::test]
async fn a_page_loads_requests_carry_chromiums_priority_and_hpack_choices() {
    let capture = reference("chromium-156-linux.json");
    let mut inspector = Inspector::start("127.0.0.1:0".parse().expect("addr"), &["fp.test".into()])
        .await
        .expect("inspector");
    let ca = tempfile::NamedTempFile::new().expect("ca file");
    std::fs::write(ca.path(), inspector.cert_pem()).expect("ca");
    let s = session("chromium-156-linux", &inspector, &ca);
    let base = format!("https://fp.test:{}", inspector.local_addr().port());

    let doc = s.get(&format!("{base}/")).send().await.expect("document");
    assert_eq!(doc.status(), 200);
    s.get(&format!("{base}/img.png"))
        .kind(RequestKind::Image)
        .send()
        .await
        .expect("image");
    let open_fetch = s
        .get(&format!("{base}/api/fetch-get"))
        .kind(RequestKind::Fetch)
        .send_streaming()
        .await
        .expect("fetch");
    s.get(&format!("{base}/api/xhr-get"))
        .kind(RequestKind::Xhr)
        .send()
        .await
        .expect("xhr");
    drop(open_fetch);
    s.post(&format!("{base}/api/fetch-post"))
        .kind(RequestKind::Fetch)
        .header("content-type", "application/json")
        .body(r#"{"a":1}"#)
        .send()
        .await
        .expect("post");
    s.client().close_connections();
    let report = tokio::time::timeout(std::time::Duration::from_secs(15), inspector.next_report())
        .await
        .expect("a report in time")
        .expect("a report");
    let requests = &report.http2.as_ref().expect("HTTP/2").requests;
    assert_eq!(requests.len(), 5, "five requests on one connection");

    // Stream ids 1, 3, 5, 7, 9; the XHR went out while stream 5 was open.
    let expected_blocks = [
        ("document", (true, 0, 256)),
        ("image", (true, 0, 147)),
        ("fetch", (true, 0, 220)),
        ("xhr behind the open fetch", (true, 5, 220)),
        ("post", (true, 0, 220)),
    ];
    for (at, (what, expected)) in expected_blocks.iter().enumerate() {
        assert_eq!(block(&report, at), *expected, "{what}");
    }
    let captured_kinds = [
        "document",
        "image",
        "fetch_get",
        "xhr_get",
        "fetch_post_json",
    ];
    for (at, kind) in captured_kinds.iter().enumerate() {
        assert_eq!(
            seen(&report, at),
            captured(&capture, kind),
            "{kind}: every field written as Chromium wrote it"
        );
    }
}

/// Firefox's frames keep their kind's fixed block (depends on 0, not exclusive) and
/// Huffman-code every literal.
#[tokio::test]
async fn firefox_keeps_the_fixed_blocks_and_huffman_codes_every_literal() {
    let mut inspector = Inspector::start("127.0.0.1:0".parse().expect("addr"), &["fp.test".into()])
        .await
        .expect("inspector");
    let ca = tempfile::NamedTempFile::new().expect("ca file");
    std::fs::write(ca.path(), inspector.cert_pem()).expect("ca");
    let s = session("firefox-153-linux", &inspector, &ca);
    let base = format!("https://fp.test:{}", inspector.local_addr().port());
    s.get(&format!("{base}/")).send().await.expect("document");
    let open = s
        .get(&format!("{base}/api/a"))
        .kind(RequestKind::Fetch)
        .send_streaming()
        .await
        .expect("fetch");
    s.get(&format!("{base}/api/b"))
        .kind(RequestKind::Fetch)
        .send()
        .await
        .expect("fetch");
    drop(open);
    s.client().close_connections();
    let report = tokio::time::timeout(std::time::Duration::from_secs(15), inspector.next_report())
        .await
        .expect("a report in time")
        .expect("a report");
    let capture = reference("firefox-esr-153-linux.json");
    assert_eq!(block(&report, 0), (false, 0, 42), "document");
    assert_eq!(
        block(&report, 2),
        (false, 0, 22),
        "a fetch, another one open"
    );
    let requests = &report.http2.as_ref().expect("HTTP/2").requests;
    assert!(requests[0]
        .representations
        .iter()
        .all(|r| r.huffman != Some(false)));
    assert_eq!(seen(&report, 0), captured(&capture, "document"));
}
