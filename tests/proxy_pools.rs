//! Proxy pools with real proxies: two `tinyproxy` processes, each sending from its own
//! loopback address, so the site sees which exit each request came through. Sessions
//! keep one exit for life, routing rules pick the pool, a killed proxy is benched after
//! its failures and new sessions avoid it, and a pool with every proxy benched fails
//! fast naming the pool.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use mummer::proxies::{ProxiesFile, ProxyRouter};
use mummer::RetryPolicy;
use mummer::{Engine, SessionConfig};
use support::dante::Dante;
use support::https::{HttpsServer, Reply};
use support::tinyproxy::Tinyproxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_their_exit_and_dead_proxies_are_benched() {
    let site = HttpsServer::start(|_| Reply::ok("ok")).await;
    let (dir, ca) = ca_file(&site);
    let (a, mut b) = (Tinyproxy::start("127.0.0.2"), Tinyproxy::start("127.0.0.3"));
    let file = ProxiesFile::parse(
        &format!(
            r#"
default_pool = "loop"
[pools.loop]
proxies = ["{}", "{}"]
strategy = "round_robin"
ban_after = 2
cooldown_secs = 60
[pools.solo]
proxies = ["{}"]
ban_after = 1
[[routes]]
domain = ".solo.test"
pool = "solo"
"#,
            a.url().replace("http://", "http://auditor:pw-secret@"),
            b.url(),
            b.url()
        ),
        false,
    )
    .expect("pools file");
    let trail = dir.path().join("audit.jsonl");
    let engine = Engine::builder()
        .proxies(ProxyRouter::from_file(&file).expect("router"))
        .audit(mummer::audit::AuditConfig {
            path: trail.clone(),
            max_age: Some(std::time::Duration::from_secs(86_400)),
            max_bytes: Some(1 << 20),
            hash_key: None,
        })
        .retry(RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        })
        .start()
        .expect("engine");
    // Through a proxy the target is named by address (the proxy resolves names itself).
    let url = |tag: &str| format!("https://127.0.0.1:{}/{tag}", site.addr.port());
    let config = |target: &str| trusting(&ca).target(target);

    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            engine
                .create_session(config("shop.test"))
                .await
                .expect("session"),
        );
    }
    visit_in_rounds(&engine, &ids, 3, url).await;
    let exits = exits_by_session(&site);
    for (session, seen) in &exits {
        assert_eq!(
            seen.len(),
            1,
            "session {session} used one exit for life: {seen:?}"
        );
    }
    let used: BTreeSet<IpAddr> = exits.values().flatten().copied().collect();
    assert_eq!(
        used,
        BTreeSet::from([a.exit, b.exit]),
        "round robin used both proxies"
    );
    let on_b: Vec<&String> = ids
        .iter()
        .filter(|id| {
            engine
                .session_exit(id)
                .is_some_and(|e| e.proxy.to_string().contains(&b.port.to_string()))
        })
        .collect();
    assert_eq!(on_b.len(), 2);

    // The domain rule sends `solo.test` sessions to the one-proxy pool.
    let solo = engine
        .create_session(config("www.solo.test"))
        .await
        .expect("solo");
    assert_eq!(
        engine.session_exit(&solo).map(|e| e.pool),
        Some("solo".into())
    );

    // Kill b with three requests in flight on each of its sessions: every one fails at
    // the proxy, the failures bench b in `loop`, each session is rotated onto a once
    // (with a fresh identity) and every request is sent again there: none is lost,
    // none is sent twice.
    let mut events = engine.events();
    b.kill();
    let mut in_flight = Vec::new();
    for (i, id) in on_b.iter().enumerate() {
        let s = engine.session(id).await.expect("live");
        s.session().client().close_connections();
        for k in 0..3 {
            let s = s.clone();
            let tag = url(&format!("after-kill-{i}-{k}"));
            in_flight.push(tokio::spawn(async move { s.get(&tag).send().await }));
        }
    }
    for request in in_flight {
        let answer = request.await.expect("task");
        let answer = answer.expect("replayed on the rotated session");
        assert_eq!(answer.status(), 200);
    }
    let replayed: Vec<_> = site
        .requests()
        .into_iter()
        .filter(|r| r.path().starts_with("/after-kill"))
        .collect();
    let mut tags: Vec<&str> = replayed.iter().map(|r| r.path()).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), 6, "every request arrived once: {tags:?}");
    assert_eq!(replayed.len(), 6, "and none twice");
    assert!(replayed.iter().all(|r| r.peer == a.exit), "all through a");
    let router = engine.proxy_router().expect("router");
    let health = router.health();
    let benched: Vec<_> = health["loop"]
        .iter()
        .filter(|h| h.benched_for_secs.is_some())
        .collect();
    assert_eq!(benched.len(), 1, "{health:?}");
    assert!(benched[0].last_error.is_some());
    let mut rotated = BTreeMap::new();
    while rotated.len() < 2 {
        let r = next_rotation(&mut events).await;
        assert!(
            r.old_proxy.contains(&b.port.to_string()) && r.new_proxy.contains(&a.port.to_string())
        );
        assert!(
            r.reason.contains(&b.port.to_string())
                && (r.reason.contains("benched") || r.reason.contains("failed")),
            "{}",
            r.reason
        );
        assert!(
            rotated.insert(r.old_id, r.new_id).is_none(),
            "one rotation per session"
        );
    }
    for old in &on_b {
        let new = &rotated[*old];
        let gone = engine
            .session(old)
            .await
            .expect_err("the old session is closed");
        assert!(gone.is_session_not_found(), "{gone}");
        assert!(
            gone.to_string().contains(new.as_str()),
            "names its successor: {gone}"
        );
        assert_eq!(engine.successor(old).as_ref(), Some(new));
        let fresh = engine.session(new).await.expect("the new one is live");
        assert_eq!(fresh.session().cookies().len(), 0, "a fresh identity");
        fresh.get(&url("rotated")).send().await.expect("through a");
    }
    assert!(site
        .requests()
        .iter()
        .filter(|r| r.path() == "/rotated")
        .all(|r| r.peer == a.exit));

    // New sessions now all get a.
    for _ in 0..3 {
        let id = engine
            .create_session(config("shop.test"))
            .await
            .expect("session");
        assert_eq!(
            engine.session_exit(&id).map(|e| e.proxy.to_string()),
            Some(
                mummer::net::Proxy::parse(&a.url().replace("http://", "http://auditor:pw-secret@"))
                    .expect("url")
                    .to_string()
            )
        );
        engine
            .session(&id)
            .await
            .expect("live")
            .get(&url("fresh"))
            .send()
            .await
            .expect("via a");
    }
    assert!(site
        .requests()
        .iter()
        .filter(|r| r.path() == "/fresh")
        .all(|r| r.peer == a.exit));

    // `solo` has only b: one failure benches it, then creation fails fast with its name.
    let s = engine.session(&solo).await.expect("live");
    assert!(s
        .get(&url("solo"))
        .send()
        .await
        .expect_err("dead")
        .is_proxy());
    let e = engine
        .create_session(config("solo.test"))
        .await
        .expect_err("no healthy proxy");
    assert!(e.is_no_healthy_proxy(), "{e}");
    assert!(e.to_string().contains("`solo`"), "{e}");
    assert!(
        !format!("{:?}", router.health()).contains("pass"),
        "no credentials"
    );
    engine.shutdown().await;
    // Every session released its slot.
    assert!(
        router.health().values().flatten().all(|h| h.sessions == 0),
        "{:?}",
        router.health()
    );

    // The audit trail: every session created once, closed once, its exit recorded, the
    // two rotations with their reasons, and no proxy password.
    let text = std::fs::read_to_string(&trail).expect("audit trail");
    assert!(
        !text.contains("pw-secret"),
        "a proxy password reached the audit trail"
    );
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let count = |event: &str, session: &str| {
        entries
            .iter()
            .filter(|e| e["event"] == event && e["session"] == session)
            .count()
    };
    let created: Vec<&str> = entries
        .iter()
        .filter(|e| e["event"] == "created")
        .filter_map(|e| e["session"].as_str())
        .collect();
    assert_eq!(created.len(), 4 + 1 + 2 + 3, "{text}");
    for id in &created {
        assert_eq!(count("created", id), 1, "{id}");
        assert_eq!(count("closed", id), 1, "{id} closed once");
        assert_eq!(count("proxy_assigned", id), 1, "{id} got one exit");
    }
    let rotations: Vec<&serde_json::Value> =
        entries.iter().filter(|e| e["event"] == "rotated").collect();
    assert_eq!(rotations.len(), 2);
    for r in rotations {
        assert_eq!(count("closed", r["session"].as_str().expect("old")), 1);
        let reason = r["reason"].as_str().expect("reason");
        assert!(
            reason.contains("benched") || reason.contains("failed"),
            "{reason}"
        );
        assert!(
            r["new_proxy"]
                .as_str()
                .expect("new")
                .contains("auditor:***@"),
            "{r}"
        );
    }
}

/// `site`'s certificate in a CA file (in the returned directory, kept while the test
/// runs).
/// A session's rotation as the event stream reports it.
struct Rotation {
    old_id: String,
    new_id: String,
    old_proxy: String,
    new_proxy: String,
    reason: String,
}

/// Starts waiting for the next rotation now (before the requests that cause it).
fn watch_rotation(
    events: &tokio::sync::broadcast::Receiver<mummer::EngineEvent>,
) -> tokio::task::JoinHandle<Rotation> {
    let mut events = events.resubscribe();
    tokio::spawn(async move { next_rotation(&mut events).await })
}

/// The next rotation on `events` (other events are skipped), within 10 s.
async fn next_rotation(
    events: &mut tokio::sync::broadcast::Receiver<mummer::EngineEvent>,
) -> Rotation {
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
            .await
            .expect("a rotation within 10 s")
            .expect("event stream");
        if let mummer::EngineEvent::SessionRotated {
            old_id,
            new_id,
            old_proxy,
            new_proxy,
            reason,
        } = event
        {
            return Rotation {
                old_id,
                new_id,
                old_proxy,
                new_proxy,
                reason,
            };
        }
    }
}

fn ca_file(site: &HttpsServer) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("site.pem");
    std::fs::write(&ca, &site.cert_pem).expect("write");
    (dir, ca)
}

/// An engine on the pools of `file`, without retries (every failure shows at once).
fn engine_on(file: &ProxiesFile) -> Engine {
    Engine::builder()
        .proxies(ProxyRouter::from_file(file).expect("router"))
        .retry(RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        })
        .start()
        .expect("engine")
}

/// Each session fetches `/sI-rR` once per round, on a new connection each round.
async fn visit_in_rounds(
    engine: &Engine,
    ids: &[String],
    rounds: usize,
    url: impl Fn(&str) -> String,
) {
    for round in 0..rounds {
        for (i, id) in ids.iter().enumerate() {
            let s = engine.session(id).await.expect("live");
            s.session().client().close_connections();
            s.get(&url(&format!("s{i}-r{round}")))
                .send()
                .await
                .expect("through the proxy");
        }
    }
}

/// The exit addresses the site saw, by the `sI` tag of each path.
fn exits_by_session(site: &HttpsServer) -> BTreeMap<String, BTreeSet<IpAddr>> {
    let mut exits: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    for r in site.requests() {
        let tag = r
            .path()
            .trim_start_matches('/')
            .split('-')
            .next()
            .unwrap_or_default()
            .to_owned();
        exits.entry(tag).or_default().insert(r.peer);
    }
    exits
}

/// A session that trusts the site's certificate.
fn trusting(ca: &std::path::Path) -> SessionConfig {
    let ca = ca.to_path_buf();
    SessionConfig::profile("chrome-latest").transport(move |t| t.ca_file(ca))
}

/// A pool's rotation policy: after N requests, and on quarantine, the session moves to
/// the other exit with a fresh identity; the event says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_policy_moves_sessions_after_n_requests_and_on_quarantine() {
    let site = HttpsServer::start(|req| match req.path() {
        "/blocked" => Reply::new(403).body("challenge"),
        "/login" => Reply::ok("in").header("set-cookie", "sid=1; Path=/; Secure"),
        _ => Reply::ok("ok"),
    })
    .await;
    let (_dir, ca) = ca_file(&site);
    let (a, b) = (Tinyproxy::start("127.0.0.2"), Tinyproxy::start("127.0.0.3"));
    let file = ProxiesFile::parse(
        &format!(
            r#"
default_pool = "loop"
[pools.loop]
proxies = ["{}", "{}"]
[pools.loop.rotate]
on_quarantine = true
after_requests = 3
"#,
            a.url(),
            b.url()
        ),
        false,
    )
    .expect("pools file");
    let engine = engine_on(&file);
    let url = |tag: &str| format!("https://127.0.0.1:{}/{tag}", site.addr.port());
    let config = || trusting(&ca);
    let events = engine.events();

    // After 3 requests (the login and two pages) the session moves, cookies left behind.
    let counted = engine.create_session(config()).await.expect("session");
    let rotation = watch_rotation(&events);
    let s = engine.session(&counted).await.expect("live");
    for tag in ["login", "one", "two"] {
        s.get(&url(tag)).send().await.expect("page");
    }
    let moved = rotation.await.expect("task");
    assert_eq!(moved.old_id, counted);
    assert_ne!(moved.old_proxy, moved.new_proxy, "another exit");
    assert!(moved.reason.contains("3 requests"), "{}", moved.reason);
    let fresh = engine.session(&moved.new_id).await.expect("successor");
    assert!(fresh.session().cookies().is_empty(), "a fresh identity");
    assert_eq!(fresh.session().request_count(), 0);

    // A 403 quarantines the session; the policy replaces it at once.
    let blocked = engine.create_session(config()).await.expect("session");
    let rotation = watch_rotation(&events);
    let s = engine.session(&blocked).await.expect("live");
    let answer = s.get(&url("blocked")).send().await;
    assert!(
        answer.as_ref().map_or(true, |r| r.status() == 403),
        "{answer:?}"
    );
    let moved = rotation.await.expect("task");
    assert_eq!(moved.old_id, blocked);
    assert_ne!(moved.old_proxy, moved.new_proxy);
    assert!(moved.reason.contains("quarantined"), "{}", moved.reason);
    let fresh = engine.session(&moved.new_id).await.expect("successor");
    fresh
        .get(&url("after"))
        .send()
        .await
        .expect("the successor takes requests");
    assert!(engine.session(&blocked).await.is_err());
    engine.shutdown().await;
    drop(events);
}

/// SOCKS5 exits (two `danted` processes sending from 127.0.0.4 and 127.0.0.5, one
/// named `socks5://`, one `socks5h://`): sticky exits, a killed proxy's sessions
/// rotated with no lost request, and a pool with every proxy dead failing fast with
/// its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_exits_are_sticky_rotated_and_benched() {
    let site = HttpsServer::start(|_| Reply::ok("ok")).await;
    let (_dir, ca) = ca_file(&site);
    let (mut c, mut d) = (Dante::start("127.0.0.4"), Dante::start("127.0.0.5"));
    let file = ProxiesFile::parse(
        &format!(
            r#"{{"default_pool": "socks",
                "pools": {{"socks": {{"proxies": ["{}", "{}"], "ban_after": 1}}}}}}"#,
            c.url("socks5"),
            d.url("socks5h")
        ),
        true,
    )
    .expect("pools file (JSON)");
    let engine = engine_on(&file);
    let url = |tag: &str| format!("https://127.0.0.1:{}/{tag}", site.addr.port());
    let config = || trusting(&ca);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(engine.create_session(config()).await.expect("session"));
    }
    visit_in_rounds(&engine, &ids, 2, url).await;
    let exits = exits_by_session(&site);
    assert!(exits.values().all(|seen| seen.len() == 1), "{exits:?}");
    let used: BTreeSet<IpAddr> = exits.values().flatten().copied().collect();
    assert_eq!(used, BTreeSet::from([c.exit, d.exit]));

    // Kill c: the requests on its sessions arrive through d, once each.
    let on_c: Vec<String> = ids
        .iter()
        .filter(|id| {
            engine
                .session_exit(id)
                .is_some_and(|e| e.proxy.to_string().contains(&c.port.to_string()))
        })
        .cloned()
        .collect();
    assert_eq!(on_c.len(), 2);
    c.kill();
    // The first one's request fails at c, is sent again through d, and c is benched
    // (ban_after = 1), which rotates the other session on c in the background.
    let s = engine.session(&on_c[0]).await.expect("live");
    s.session().client().close_connections();
    let answer = s
        .get(&url("moved-0"))
        .send()
        .await
        .expect("replayed through d");
    assert_eq!(answer.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let second = loop {
        if let Some(next) = engine.successor(&on_c[1]) {
            break next;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the benched proxy's other session was not rotated"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    engine
        .session(&second)
        .await
        .expect("successor")
        .get(&url("moved-1"))
        .send()
        .await
        .expect("through d");
    for id in &on_c {
        let next = engine.successor(id).expect("rotated");
        assert!(engine
            .session_exit(&next)
            .is_some_and(|e| e.proxy.to_string().contains(&d.port.to_string())));
    }
    let moved: Vec<_> = site
        .requests()
        .into_iter()
        .filter(|r| r.path().starts_with("/moved"))
        .collect();
    assert_eq!(moved.len(), 2, "each once");
    assert!(moved.iter().all(|r| r.peer == d.exit));

    // Kill d too: the pool has nobody left and says so by name.
    d.kill();
    let survivor = engine
        .create_session(config())
        .await
        .expect("d is not benched yet");
    let s = engine.session(&survivor).await.expect("live");
    let e = s
        .get(&url("dead"))
        .send()
        .await
        .expect_err("every exit is dead");
    assert!(e.is_proxy(), "{e}");
    let e = engine
        .create_session(config())
        .await
        .expect_err("no healthy proxy");
    assert!(e.is_no_healthy_proxy(), "{e}");
    assert!(e.to_string().contains("`socks`"), "{e}");
    engine.shutdown().await;
}
