//! The engine with a session store, end to end against a local HTTPS server: sessions
//! survive a restart with their cookies and TLS tickets (the next handshake resumes),
//! a leased session cannot be used by two engines at once, and a Redis that goes away
//! mid-run loses nothing.

mod support;

use std::sync::Arc;
use std::time::Duration;

use mummer::net::ConnectTo;
use mummer::store::{FileStore, RedisStore, SessionStore};
use mummer::{ClientBuilder, Engine, EngineEvent, SessionConfig, SnapshotKey};
use support::https::{HttpsServer, Reply};
use support::redis::RedisServer;

struct Site {
    server: HttpsServer,
    ca: tempfile::NamedTempFile,
}

async fn site() -> Site {
    Site::serving(
        HttpsServer::start(|req| match req.path() {
            "/login" => Reply::ok("in").header("set-cookie", "sid=s3cret; Path=/; Max-Age=3600"),
            _ => Reply::ok("ok"),
        })
        .await,
    )
}

impl Site {
    /// `server`, with its certificate in a CA file for the sessions.
    fn serving(server: HttpsServer) -> Site {
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), &server.cert_pem).unwrap();
        Site { server, ca }
    }

    fn transport(&self) -> impl Fn(ClientBuilder) -> ClientBuilder + Send + Sync + Clone + 'static {
        let route: ConnectTo = format!(":443:127.0.0.1:{}", self.server.addr.port())
            .parse()
            .unwrap();
        let ca = self.ca.path().to_path_buf();
        move |b: ClientBuilder| b.ca_file(ca.clone()).connect_to(route.clone())
    }

    fn session(&self) -> SessionConfig {
        SessionConfig::profile("chrome-latest").transport(self.transport())
    }

    /// The Cookie header of the last request to `path`.
    fn last_cookie(&self, path: &str) -> Option<String> {
        self.server
            .requests()
            .iter()
            .rev()
            .find(|r| r.path() == path)
            .and_then(|r| r.cookie())
    }
}

fn engine(store: Arc<dyn SessionStore>) -> Engine {
    Engine::builder()
        .store(store)
        .snapshot_key(SnapshotKey::from_bytes([7; 32]))
        .save_interval(Duration::from_millis(200))
        .lease_ttl(Duration::from_secs(3))
        .start()
        .unwrap()
}

async fn survives_a_restart(store: Arc<dyn SessionStore>) {
    let site = site().await;
    let first = engine(store.clone());
    let id = first.create_session(site.session()).await.unwrap();
    let s = first.session(&id).await.unwrap();
    assert_eq!(
        s.get("https://shop.test/login")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    first.shutdown().await;
    // The store holds it, encrypted, with its lease released.
    let stored = store.load(&id).await.unwrap().expect("saved at shutdown");
    assert!(
        !String::from_utf8_lossy(&stored.bytes).contains("s3cret"),
        "encrypted"
    );
    let lease = store
        .acquire(&id, Duration::from_secs(1))
        .await
        .expect("released");
    store.release(&lease).await.unwrap();

    let second = engine(store.clone());
    let restored = second.restore_sessions(site.transport()).await.unwrap();
    assert_eq!(restored, vec![id.clone()]);
    let s = second.session(&id).await.unwrap();
    let page = s.get("https://shop.test/account").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(site.last_cookie("/account").as_deref(), Some("sid=s3cret"));
    assert_eq!(
        s.session().stats().transport.tls_resumed,
        1,
        "the handshake resumed from the stored ticket"
    );
    assert_eq!(s.session().stats().request_count, 2, "counters survive too");
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_in_a_file_store() {
    let dir = tempfile::tempdir().unwrap();
    survives_a_restart(Arc::new(FileStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_in_redis() {
    let redis = RedisServer::start();
    survives_a_restart(Arc::new(RedisStore::open(&redis.url(), "restart").unwrap())).await;
}

/// A store whose lease release takes a while (a slow Redis round trip, a loaded disk).
struct SlowRelease(FileStore);

#[async_trait::async_trait]
impl SessionStore for SlowRelease {
    fn describe(&self) -> String {
        self.0.describe()
    }
    async fn load(&self, id: &str) -> mummer::Result<Option<mummer::store::StoredSession>> {
        self.0.load(id).await
    }
    async fn save(&self, id: &str, version: u64, bytes: &[u8]) -> mummer::Result<()> {
        self.0.save(id, version, bytes).await
    }
    async fn delete(&self, id: &str) -> mummer::Result<()> {
        self.0.delete(id).await
    }
    async fn list(&self) -> mummer::Result<Vec<String>> {
        self.0.list().await
    }
    async fn acquire(&self, id: &str, ttl: Duration) -> mummer::Result<mummer::store::Lease> {
        self.0.acquire(id, ttl).await
    }
    async fn renew(&self, lease: &mummer::store::Lease, ttl: Duration) -> mummer::Result<bool> {
        self.0.renew(lease, ttl).await
    }
    async fn release(&self, lease: &mummer::store::Lease) -> mummer::Result<bool> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.release(lease).await
    }
}

/// Closing a session (and so shutdown) returns only once its lease is released: the
/// next worker can check it out at once. It once returned after the final save, with
/// the release still on its way, and a worker started right after was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_waits_for_the_lease_release() {
    let site = site().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SessionStore> = Arc::new(SlowRelease(FileStore::open(dir.path()).unwrap()));
    let first = engine(store.clone());
    let id = first.create_session(site.session()).await.unwrap();
    let s = first.session(&id).await.unwrap();
    assert_eq!(
        s.get("https://shop.test/login")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    first.close_session(&id).await.unwrap();
    let lease = store
        .acquire(&id, Duration::from_secs(1))
        .await
        .expect("released once close_session returned");
    store.release(&lease).await.unwrap();
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_engine_at_a_time_owns_a_session() {
    let site = site().await;
    let redis = RedisServer::start();
    let store: Arc<dyn SessionStore> = Arc::new(RedisStore::open(&redis.url(), "lease").unwrap());
    let a = engine(store.clone());
    let b = engine(store.clone());
    let id = a.create_session(site.session()).await.unwrap();
    let s = a.session(&id).await.unwrap();
    s.get("https://shop.test/login").send().await.unwrap();
    a.save_session(&id).await.unwrap();
    // Saves of one session at once (interval, close, callers) never race each other
    // into a conflict: each gets its own version.
    let saves = (0..8).map(|_| {
        let (a, id) = (a.clone(), id.clone());
        tokio::spawn(async move { a.save_session(&id).await })
    });
    let mut versions: Vec<u64> = Vec::new();
    for s in saves {
        versions.push(s.await.unwrap().unwrap());
    }
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 8, "{versions:?}");
    let err = b.checkout_session(&id, site.transport()).await.unwrap_err();
    assert!(err.is_lease_held(), "{err}");
    assert!(b
        .restore_sessions(site.transport())
        .await
        .unwrap()
        .is_empty());
    let err = b
        .checkout_session("no-such-session", site.transport())
        .await
        .unwrap_err();
    assert!(err.is_session_not_found(), "{err}");
    // Closing saves and frees it; then the other engine takes it, cookies and all.
    let mut events = a.events();
    a.close_session(&id).await.unwrap();
    wait_for(
        &mut events,
        |e| matches!(e, EngineEvent::SessionSaved { id: i, .. } if *i == id),
    )
    .await;
    b.checkout_session(&id, site.transport()).await.unwrap();
    let s = b.session(&id).await.unwrap();
    s.get("https://shop.test/orders").send().await.unwrap();
    assert_eq!(site.last_cookie("/orders").as_deref(), Some("sid=s3cret"));
    // Without a store, the store calls say so.
    let plain = Engine::builder().start().unwrap();
    assert!(plain
        .save_session(&id)
        .await
        .unwrap_err()
        .is_invalid_input());
    plain.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

async fn wait_for(
    events: &mut tokio::sync::broadcast::Receiver<EngineEvent>,
    want: impl Fn(&EngineEvent) -> bool,
) -> EngineEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .expect("the event within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_mid_run_loses_nothing() {
    let site = site().await;
    let mut redis = RedisServer::start();
    let store: Arc<dyn SessionStore> = Arc::new(RedisStore::open(&redis.url(), "outage").unwrap());
    let a = engine(store.clone());
    let mut events = a.events();
    let id = a.create_session(site.session()).await.unwrap();
    let s = a.session(&id).await.unwrap();
    redis.down();
    // Requests keep working; a save says it did not happen.
    assert_eq!(
        s.get("https://shop.test/login")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let err = a.save_session(&id).await.unwrap_err();
    assert!(err.is_store_unavailable(), "{err}");
    wait_for(&mut events, |e| {
        matches!(e, EngineEvent::StoreUnavailable { .. })
    })
    .await;
    // A session created while Redis is down works too.
    let late = a.create_session(site.session()).await.unwrap();
    a.session(&late)
        .await
        .unwrap()
        .get("https://shop.test/login")
        .send()
        .await
        .unwrap();
    redis.up();
    wait_for(&mut events, |e| {
        matches!(e, EngineEvent::StoreRecovered { .. })
    })
    .await;
    for wanted in [&id, &late] {
        let started = std::time::Instant::now();
        while store.load(wanted).await.unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{wanted} not written once Redis was back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    a.shutdown().await;
    let b = engine(store.clone());
    let mut restored = b.restore_sessions(site.transport()).await.unwrap();
    restored.sort();
    let mut want = vec![id.clone(), late.clone()];
    want.sort();
    assert_eq!(restored, want);
    b.session(&id)
        .await
        .unwrap()
        .get("https://shop.test/after")
        .send()
        .await
        .unwrap();
    assert_eq!(site.last_cookie("/after").as_deref(), Some("sid=s3cret"));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_share_one_per_host_budget_through_redis() {
    use mummer::rate::Rate;
    use mummer::store::RedisRateLimit;
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let server = HttpsServer::start(move |_req| {
        seen.lock().unwrap().push(std::time::Instant::now());
        Reply::ok("ok")
    })
    .await;
    let site = Site::serving(server);
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "budget").unwrap();
    // 20 requests per second for the host, whichever engine sends them.
    let rate = Rate::per_second(20.0);
    let mut engines = Vec::new();
    for _ in 0..3 {
        engines.push(
            Engine::builder()
                .shared_rate_limit(Arc::new(RedisRateLimit::new(&store, rate).unwrap()))
                .start()
                .unwrap(),
        );
    }
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for engine in &engines {
        let id = engine.create_session(site.session()).await.unwrap();
        let s = engine.session(&id).await.unwrap();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let r = s
                    .get(&format!("https://shop.test/p/{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = started.elapsed();
    // 30 requests at 20/s: at least 29 intervals of 50 ms.
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    let mut times = arrivals.lock().unwrap().clone();
    times.sort();
    assert_eq!(times.len(), 30);
    // Any 11 consecutive arrivals span at least ~10 intervals (loopback jitter allowed).
    for w in times.windows(11) {
        let span = w[10] - w[0];
        assert!(
            span >= Duration::from_millis(400),
            "11 requests within {span:?}"
        );
    }
    assert_eq!(
        redis.cli(&["EXISTS", "budget:rate:shop.test"]),
        "1",
        "one budget key per host"
    );
    for e in engines {
        e.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_go_to_a_redis_stream_that_hands_each_one_out_once() {
    use mummer::store::RedisDeadLetters;
    let site = site().await;
    let mut redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "dlq").unwrap();
    let stream = RedisDeadLetters::new(&store);
    let engine = Engine::builder()
        .dead_letter_sink(stream.sink())
        .start()
        .unwrap();
    let id = engine.create_session(site.session()).await.unwrap();
    let s = engine.session(&id).await.unwrap();
    // A second site (same name, another server) answers 404 everywhere.
    let gone = HttpsServer::start(|_| Reply::new(404)).await;
    let route: ConnectTo = format!(":443:127.0.0.1:{}", gone.addr.port())
        .parse()
        .unwrap();
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &gone.cert_pem).unwrap();
    let ca_path = ca.path().to_path_buf();
    let id404 = engine
        .create_session(
            SessionConfig::profile("chrome-latest")
                .transport(move |b| b.ca_file(ca_path).connect_to(route)),
        )
        .await
        .unwrap();
    let lost = engine.session(&id404).await.unwrap();
    for i in 0..3 {
        let r = lost
            .get(&format!("https://shop.test/{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert_eq!(
        s.get("https://shop.test/").send().await.unwrap().status(),
        200
    );
    let started = std::time::Instant::now();
    while stream.len().await.unwrap() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "letters not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Consumer a takes two and dies without acknowledging them.
    let a = stream
        .claim("ops", "a", 2, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(a.len(), 2);
    assert!(a
        .iter()
        .all(|c| c.letter.session == id404 && c.letter.status == Some(404)));
    // Consumer b gets the third at once, and a's two once they have been idle.
    let b = stream
        .claim("ops", "b", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(stream.ack("ops", &[b[0].entry.clone()]).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b2 = stream
        .claim("ops", "b", 10, Duration::from_millis(200))
        .await
        .unwrap();
    let mut reclaimed: Vec<&str> = b2.iter().map(|c| c.entry.as_str()).collect();
    reclaimed.sort();
    let mut taken: Vec<&str> = a.iter().map(|c| c.entry.as_str()).collect();
    taken.sort();
    assert_eq!(reclaimed, taken, "a's unacknowledged letters went to b");
    let entries: Vec<String> = b2.iter().map(|c| c.entry.clone()).collect();
    assert_eq!(stream.ack("ops", &entries).await.unwrap(), 2);
    assert_eq!(
        stream.ack("ops", &entries).await.unwrap(),
        0,
        "acknowledged once"
    );
    // Acknowledged letters never come back, to anyone.
    for consumer in ["a", "b", "c"] {
        assert!(stream
            .claim("ops", consumer, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty());
    }
    // Redis away: letters wait in memory and are written when it is back.
    redis.down();
    let r = lost.get("https://shop.test/late").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(stream.len().await.unwrap_err().is_store_unavailable());
    redis.up();
    let started = std::time::Instant::now();
    loop {
        if let Ok(4) = stream.len().await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the waiting letter was not written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = stream
        .claim("ops", "c", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert!(
        late[0].letter.target.starts_with("shop.test"),
        "{:?}",
        late[0]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_tickets_in_redis_resume_across_engines_within_one_identifier() {
    use mummer::store::RedisTickets;
    let site = site().await;
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "tix").unwrap();
    let engine = || {
        Engine::builder()
            .ticket_backend(Arc::new(RedisTickets::new(&store)))
            .start()
            .unwrap()
    };
    let (a, b) = (engine(), engine());
    let first = a
        .create_session(site.session().identifier("alice"))
        .await
        .unwrap();
    a.session(&first)
        .await
        .unwrap()
        .get("https://shop.test/a")
        .send()
        .await
        .unwrap();
    // The ticket reaches Redis under alice's partition.
    let started = std::time::Instant::now();
    loop {
        let keys = redis.cli(&["--scan", "--pattern", "tix:ticket:*"]);
        if !keys.is_empty() {
            assert!(keys.contains("alice|"), "{keys}");
            assert!(!keys.contains("bob"), "{keys}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no ticket in Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another engine, a fresh session with the same identifier: resumed. Another
    // identifier: a full handshake.
    let same = b
        .create_session(site.session().identifier("alice"))
        .await
        .unwrap();
    let other = b
        .create_session(site.session().identifier("bob"))
        .await
        .unwrap();
    let s = b.session(&same).await.unwrap();
    s.get("https://shop.test/b").send().await.unwrap();
    assert_eq!(
        s.session().stats().transport.tls_resumed,
        1,
        "alice resumed on engine b"
    );
    let o = b.session(&other).await.unwrap();
    o.get("https://shop.test/c").send().await.unwrap();
    assert_eq!(
        o.session().stats().transport.tls_resumed,
        0,
        "bob cannot use alice's ticket"
    );
    let resumed: Vec<bool> = site.server.requests().iter().map(|r| r.resumed).collect();
    assert_eq!(resumed, [false, true, false]);
    a.shutdown().await;
    b.shutdown().await;
}
