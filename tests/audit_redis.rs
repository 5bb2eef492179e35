//! The audit trail as a Redis stream, against a real redis-server: every lifecycle event
//! recorded once and in order (rotation included), no proxy credentials, retention by
//! age and by count, and entries written while Redis was down arrive once it is back.

mod support;

use std::time::Duration;

use mummer::proxies::{ProxiesFile, ProxyRouter};
use mummer::store::{RedisAuditConfig, RedisAuditLog, RedisStore};
use mummer::{Engine, SessionConfig};
use support::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_reach_the_stream_once_even_across_an_outage() {
    let mut redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "trail").expect("store");
    // An entry from long ago: the age limit purges it when the engine starts.
    redis.cli(&[
        "XADD",
        "trail:audit",
        "1000-0",
        "entry",
        r#"{"at":1000,"event":"created","session":"ancient"}"#,
    ]);
    // Assignment does not contact the proxies, so none has to run.
    let file = ProxiesFile::parse(
        r#"
default_pool = "p"
[pools.p]
proxies = ["http://auditor:pw-secret@127.0.0.1:9", "http://auditor:pw-secret@127.0.0.1:10"]
"#,
        false,
    )
    .expect("pools");
    let engine = Engine::builder()
        .proxies(ProxyRouter::from_file(&file).expect("router"))
        .audit_redis(
            &store,
            RedisAuditConfig {
                max_age: Some(Duration::from_secs(86_400)),
                max_entries: None,
                hash_key: None,
            },
        )
        .start()
        .expect("engine");
    let mut ids = Vec::new();
    for tenant in ["acme", "acme", "bolt"] {
        ids.push(
            engine
                .create_session(SessionConfig::profile("chrome-latest").tenant(tenant))
                .await
                .expect("session"),
        );
    }
    let rotated = engine
        .rotate_session(&ids[0], "asked by the test")
        .await
        .expect("rotate");
    // Redis goes away: what happens meanwhile waits in memory.
    redis.down();
    engine.close_session(&ids[1]).await.expect("close");
    let late = engine
        .create_session(SessionConfig::profile("chrome-latest"))
        .await
        .expect("session while Redis is down");
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.up();
    engine.shutdown().await;

    let log = RedisAuditLog::new(&store, RedisAuditConfig::default());
    let entries = log.read_all().await.expect("read the stream");
    let text = serde_json::to_string(&entries).expect("json");
    assert!(
        !text.contains("pw-secret"),
        "a proxy password reached the trail"
    );
    assert!(
        !text.contains("ancient"),
        "the age limit purged the old entry"
    );
    let count = |event: &str, id: &str| {
        entries
            .iter()
            .filter(|e| e["event"] == event && e["session"] == id)
            .count()
    };
    let all = [&ids[..], &[rotated.clone(), late.clone()]].concat();
    for id in &all {
        assert_eq!(count("created", id), 1, "{id} created once: {text}");
        assert_eq!(count("closed", id), 1, "{id} closed once: {text}");
    }
    for id in ids.iter().chain([&rotated, &late]) {
        assert_eq!(count("proxy_assigned", id), 1, "{id}: {text}");
    }
    let rotation: Vec<_> = entries.iter().filter(|e| e["event"] == "rotated").collect();
    assert_eq!(rotation.len(), 1);
    assert_eq!(rotation[0]["session"], ids[0].as_str());
    assert_eq!(rotation[0]["new_session"], rotated.as_str());
    assert_eq!(rotation[0]["reason"], "asked by the test");
    assert!(rotation[0]["new_proxy"]
        .as_str()
        .expect("proxy")
        .contains("auditor:***@"));
    let tenants: Vec<&str> = entries
        .iter()
        .filter(|e| e["event"] == "proxy_assigned")
        .filter_map(|e| e["tenant"].as_str())
        .collect();
    assert_eq!(tenants, ["acme", "acme", "bolt", "acme", "default"]);
    // In order: the late session's entries come after the close made while Redis was
    // down, and every timestamp is non-decreasing.
    let at: Vec<u64> = entries
        .iter()
        .map(|e| e["at"].as_u64().expect("at"))
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");

    // Retention by count keeps the newest.
    let trimmed = RedisAuditLog::open(
        &store,
        RedisAuditConfig {
            max_entries: Some(3),
            ..RedisAuditConfig::default()
        },
    )
    .await
    .expect("open with a count limit");
    let left = trimmed.read_all().await.expect("read");
    assert_eq!(left.len(), 3);
    assert_eq!(left[2], entries[entries.len() - 1], "the newest are kept");

    // A foreign entry is named, not skipped silently.
    redis.cli(&["XADD", "trail:audit", "*", "entry", "not json"]);
    let e = trimmed.read_all().await.expect_err("foreign entry");
    assert!(e.to_string().contains("trail:audit"), "{e}");
}
