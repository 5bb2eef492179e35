//! Tenant isolation in the engine, against a local HTTPS server, real file and Redis
//! stores and a real Redis ticket backend: no cookie, TLS ticket or snapshot crosses
//! from one tenant to another, and metrics carry the tenant. (The API's scoping is
//! proved in `api_contract.rs`.)

mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mummer::net::ConnectTo;
use mummer::store::{FileStore, RedisStore, RedisTickets, SessionStore};
use mummer::{ClientBuilder, Engine, SessionConfig, SnapshotKey};
use support::https::{HttpsServer, Reply};
use support::redis::RedisServer;

struct Site {
    server: HttpsServer,
    ca: tempfile::NamedTempFile,
}

/// `/login?as=NAME` sets `sid=NAME`; every other path answers what cookie it got.
async fn site() -> Site {
    let server = HttpsServer::start(|req| {
        if req.path() == "/fail" {
            return Reply::new(503);
        }
        if let Some(name) = req.path().strip_prefix("/login/") {
            let name = name.to_owned();
            return Reply::ok("in").header(
                "set-cookie",
                &format!("sid={name}; Path=/; Secure; Max-Age=3600"),
            );
        }
        Reply::ok(req.cookie().unwrap_or_default())
    })
    .await;
    let ca = tempfile::NamedTempFile::new().expect("ca file");
    std::fs::write(ca.path(), &server.cert_pem).expect("write ca");
    Site { server, ca }
}

impl Site {
    fn transport(&self) -> impl Fn(ClientBuilder) -> ClientBuilder + Send + Sync + Clone + 'static {
        let route: ConnectTo = format!(":443:127.0.0.1:{}", self.server.addr.port())
            .parse()
            .expect("route");
        let ca = self.ca.path().to_path_buf();
        move |b: ClientBuilder| b.ca_file(ca.clone()).connect_to(route.clone())
    }

    fn session(&self, tenant: &str) -> SessionConfig {
        SessionConfig::profile("chrome-latest")
            .tenant(tenant)
            .transport(self.transport())
    }
}

async fn body(engine: &Engine, id: &str, url: &str) -> String {
    let s = engine.session(id).await.expect("live");
    let r = s.get(url).send().await.expect("request");
    String::from_utf8_lossy(r.body()).into_owned()
}

/// The process-wide Prometheus recorder (installed once; the engine's threads report
/// to it).
fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("recorder")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_stay_in_their_tenant_and_metrics_carry_it() {
    // Tenant names no other test uses: the recorder is shared by the whole binary.
    let metrics = metrics();
    let site = site().await;
    let engine = Engine::builder().start().expect("engine");
    let north = engine
        .create_session(site.session("north"))
        .await
        .expect("north");
    let south = engine
        .create_session(site.session("south"))
        .await
        .expect("south");
    body(&engine, &north, "https://shop.test/login/north").await;
    body(&engine, &south, "https://shop.test/login/south").await;
    for _ in 0..3 {
        assert_eq!(
            body(&engine, &north, "https://shop.test/page").await,
            "sid=north"
        );
    }
    assert_eq!(
        body(&engine, &south, "https://shop.test/page").await,
        "sid=south"
    );
    let stats = engine.list_sessions().await.expect("list");
    let tenant_of = |id: &str| {
        stats
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.tenant.clone())
            .expect("listed")
    };
    assert_eq!(
        (tenant_of(&north), tenant_of(&south)),
        ("north".into(), "south".into())
    );

    let text = metrics.render();
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("requests_total{") && l.contains(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no requests_total with {needle} in\n{text}"))
    };
    assert_eq!(value("tenant=\"north\""), 4.0);
    assert_eq!(value("tenant=\"south\""), 2.0);
    assert!(
        text.lines()
            .any(|l| l.starts_with("session_creation_total{") && l.contains("tenant=\"north\"")),
        "{text}"
    );

    // A name that could reach into other keys is refused, and nothing is left behind.
    let bad = engine
        .create_session(site.session("north.other"))
        .await
        .expect_err("refused");
    assert!(bad.is_invalid_input(), "{bad}");
    assert!(bad.to_string().contains("invalid tenant"), "{bad}");
    assert_eq!(engine.session_count().await, 2);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_tickets_resume_within_a_tenant_never_across() {
    let site = site().await;
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "tix").expect("store");
    let engine = || {
        Engine::builder()
            .ticket_backend(Arc::new(RedisTickets::new(&store)))
            .start()
            .expect("engine")
    };
    let (a, b) = (engine(), engine());
    let first = a
        .create_session(site.session("acme").identifier("alice"))
        .await
        .expect("create");
    body(&a, &first, "https://shop.test/a").await;
    let started = std::time::Instant::now();
    loop {
        let keys = redis.cli(&["--scan", "--pattern", "tix:ticket:*"]);
        if !keys.is_empty() {
            assert!(keys.contains("acme/alice|"), "{keys}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no ticket in Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // On another engine: acme's alice resumes; bolt's and the default tenant's alice
    // (same identifier) do a full handshake, and so does a default-tenant session whose
    // identifier spells acme's partition (`acme/alice`: issue 16 defect 12 b).
    let mut resumed = Vec::new();
    for (tenant, identifier) in [
        ("acme", "alice"),
        ("bolt", "alice"),
        ("default", "alice"),
        ("default", "acme/alice"),
    ] {
        let id = b
            .create_session(site.session(tenant).identifier(identifier))
            .await
            .expect("create");
        body(&b, &id, "https://shop.test/b").await;
        let s = b.session(&id).await.expect("live");
        resumed.push((identifier, s.session().stats().transport.tls_resumed));
    }
    assert_eq!(
        resumed,
        [("alice", 1), ("alice", 0), ("alice", 0), ("acme/alice", 0)]
    );
    let seen: Vec<bool> = site.server.requests().iter().map(|r| r.resumed).collect();
    assert_eq!(
        seen,
        [false, true, false, false, false],
        "as the server saw it"
    );
    a.shutdown().await;
    b.shutdown().await;
}

async fn snapshots_stay_in_their_tenant(store: Arc<dyn SessionStore>, keys: impl Fn() -> String) {
    let site = site().await;
    let engine = || {
        Engine::builder()
            .store(store.clone())
            .snapshot_key(SnapshotKey::from_bytes([9; 32]))
            .start()
            .expect("engine")
    };
    let first = engine();
    let id = first
        .create_session(site.session("acme"))
        .await
        .expect("create");
    body(&first, &id, "https://shop.test/login/acme").await;
    first.save_session(&id).await.expect("save");
    first.close_session(&id).await.expect("close");
    let listed = keys();
    assert!(listed.contains(&format!("acme.{id}")), "{listed}");

    assert_eq!(
        first.stored_sessions_of("acme").await.expect("list"),
        vec![id.clone()]
    );
    assert!(first
        .stored_sessions_of("bolt")
        .await
        .expect("list")
        .is_empty());
    assert!(
        first.stored_sessions().await.expect("list").is_empty(),
        "not the default tenant's"
    );
    for tenant in ["bolt", "default"] {
        let e = first
            .checkout_session_of(tenant, &id, site.transport())
            .await
            .expect_err("another tenant's");
        assert!(e.is_session_not_found(), "{tenant}: {e}");
    }
    let e = first
        .checkout_session(&id, site.transport())
        .await
        .expect_err("not the default tenant's");
    assert!(e.is_session_not_found(), "{e}");
    first.shutdown().await;

    // A restart restores it into its own tenant, logged in.
    let second = engine();
    let restored = second
        .restore_sessions(site.transport())
        .await
        .expect("restore");
    assert_eq!(restored, vec![id.clone()]);
    let s = second.session(&id).await.expect("live");
    assert_eq!(s.session().tenant(), "acme");
    assert_eq!(
        body(&second, &id, "https://shop.test/page").await,
        "sid=acme"
    );
    second.shutdown().await;
    assert!(keys().contains(&format!("acme.{id}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_stay_in_their_tenant_in_a_file_store() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().to_path_buf();
    let store = Arc::new(FileStore::open(&path).expect("store"));
    snapshots_stay_in_their_tenant(store, move || {
        std::fs::read_dir(&path)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_stay_in_their_tenant_in_redis() {
    let redis = RedisServer::start();
    let store = Arc::new(RedisStore::open(&redis.url(), "iso").expect("store"));
    snapshots_stay_in_their_tenant(store, || {
        redis.cli(&["--scan", "--pattern", "iso:session:*"])
    })
    .await;
}

/// Issue 16 defect 12 (c): one tenant's failures at a host open that tenant's host
/// breaker only; another tenant's traffic to the same host goes on. With a global
/// budget the operator chose, the breaker is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_failures_open_only_its_own_host_breaker() {
    let site = site().await;
    for global in [false, true] {
        let engine = Engine::builder()
            .retry(mummer::RetryPolicy {
                max_retries: 0,
                // An open breaker is answered at once, not waited out to its probe.
                deadline: Duration::from_secs(2),
                ..Default::default()
            })
            .global_host_budget(global)
            .start()
            .expect("engine");
        // Many acme sessions, so no session breaker opens before the host's.
        let mut opened = false;
        for _ in 0..40 {
            let id = engine
                .create_session(site.session("acme"))
                .await
                .expect("create");
            let s = engine.session(&id).await.expect("live");
            match s.get("https://shop.test/fail").send().await {
                Err(e) if e.is_breaker_open() => {
                    assert!(e.to_string().contains("host"), "{e}");
                    opened = true;
                    break;
                }
                _ => {}
            }
            engine.close_session(&id).await.expect("close");
        }
        assert!(
            opened,
            "acme's host breaker never opened (global: {global})"
        );
        let bolt = engine
            .create_session(site.session("bolt"))
            .await
            .expect("create");
        let s = engine.session(&bolt).await.expect("live");
        let answer = s.get("https://shop.test/ok").send().await;
        if global {
            assert!(
                answer.as_ref().is_err_and(|e| e.is_breaker_open()),
                "a global budget shares the breaker: {:?}",
                answer.map(|r| r.status())
            );
        } else {
            let r = answer.expect("bolt is not stopped by acme's breaker");
            assert_eq!(r.status(), 200);
        }
        engine.shutdown().await;
    }
}
