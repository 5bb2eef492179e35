//! The engine against a local HTTPS server: sessions through the supervisor, requests
//! through the retry/breaker actor, from a multi-threaded tokio runtime.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mummer::net::ConnectTo;
use mummer::EngineEvent;
use mummer::RetryPolicy;
use mummer::{Engine, SessionConfig};
use support::https::{HttpsServer, Reply};

struct Site {
    server: HttpsServer,
    ca: tempfile::NamedTempFile,
    flaky_hits: Arc<AtomicUsize>,
}

async fn site() -> Site {
    let flaky_hits = Arc::new(AtomicUsize::new(0));
    let hits = flaky_hits.clone();
    let server = HttpsServer::start(move |req| match req.path() {
        "/flaky" => {
            // 503, 503, then 200.
            if hits.fetch_add(1, Ordering::SeqCst) < 2 {
                Reply::new(503)
            } else {
                Reply::ok("finally")
            }
        }
        "/slow-down" => Reply::new(429).header("retry-after", "1"),
        "/gone" => Reply::new(404),
        "/secure" if req.header("authorization") == Some("Bearer fresh") => Reply::ok("secret"),
        "/secure" => Reply::new(401),
        "/forbidden" => Reply::new(403),
        "/login" => Reply::ok("in").header("set-cookie", "sid=1"),
        "/robots.txt" => Reply::ok("User-agent: *\nDisallow: /private\nCrawl-delay: 0.3\n"),
        _ => Reply::ok("ok"),
    })
    .await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &server.cert_pem).unwrap();
    Site {
        server,
        ca,
        flaky_hits,
    }
}

impl Site {
    fn session(&self) -> SessionConfig {
        let route: ConnectTo = format!(":443:127.0.0.1:{}", self.server.addr.port())
            .parse()
            .unwrap();
        let ca = self.ca.path().to_path_buf();
        SessionConfig::profile("chrome-latest").transport(move |b| b.ca_file(ca).connect_to(route))
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        ..RetryPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_requests_retries_and_lifecycle() {
    let site = site().await;
    let engine = Engine::builder()
        .max_sessions(3)
        .retry(fast_retries())
        .workers(2)
        .start()
        .unwrap();
    let mut events = engine.events();
    let id = engine.create_session(site.session()).await.unwrap();
    let s = engine.session(&id).await.unwrap();
    let page = s.get("https://shop.test/login").send().await.unwrap();
    assert_eq!((page.status().as_u16(), page.attempts()), (200, 1));
    assert_eq!(
        s.session().cookies().len(),
        1,
        "the jar lives in the session the actor owns"
    );

    // 503, 503, 200: two retries, one response.
    let flaky = s.get("https://shop.test/flaky").send().await.unwrap();
    assert_eq!(
        (
            flaky.status().as_u16(),
            flaky.attempts(),
            flaky.text().as_str()
        ),
        (200, 3, "finally")
    );
    assert_eq!(site.flaky_hits.load(Ordering::SeqCst), 3);

    // 404 is dead-lettered, not retried.
    let gone = s.get("https://shop.test/gone").send().await.unwrap();
    assert_eq!((gone.status().as_u16(), gone.attempts()), (404, 1));
    let letters = engine.dead_letters(false).await;
    assert_eq!((letters.len(), letters[0].status), (1, Some(404)));

    let list = engine.list_sessions().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].request_count, 5, "each attempt left");

    // Limits.
    engine.create_session(site.session()).await.unwrap();
    engine.create_session(site.session()).await.unwrap();
    let err = engine.create_session(site.session()).await.unwrap_err();
    assert!(
        err.is_session_limit() && err.to_string().contains("maximum sessions limit reached"),
        "{err}"
    );
    assert_eq!(engine.session_count().await, 3);

    // 403 quarantines.
    let blocked = s.get("https://shop.test/forbidden").send().await.unwrap();
    assert_eq!(blocked.status(), 403);
    let err = s.get("https://shop.test/").send().await.unwrap_err();
    assert!(err.is_quarantined(), "{err}");
    assert!(engine
        .list_sessions()
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == id && x.quarantined));

    // Close, then not found.
    engine.close_session(&id).await.unwrap();
    let err = engine.session(&id).await.unwrap_err();
    assert!(
        err.is_session_not_found() && err.to_string().contains("session not found"),
        "{err}"
    );
    assert!(engine
        .close_session(&id)
        .await
        .unwrap_err()
        .is_session_not_found());
    let err = s.get("https://shop.test/").send().await.unwrap_err();
    assert!(
        err.is_closed() || err.is_session_not_found(),
        "a handle to a closed session: {err}"
    );

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.iter()
            .filter(|e| matches!(e, EngineEvent::RetryScheduled { .. }))
            .count()
            == 2
    );
    assert!(seen
        .iter()
        .any(|e| matches!(e, EngineEvent::Quarantined { .. })));
    assert!(seen
        .iter()
        .any(|e| matches!(e, EngineEvent::SessionClosed { .. })));

    engine.shutdown().await;
    engine.shutdown().await;
    assert!(engine
        .create_session(site.session())
        .await
        .unwrap_err()
        .is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_one_session_run_concurrently_over_one_connection() {
    let site = site().await;
    let engine = Engine::builder().start().unwrap();
    let id = engine.create_session(site.session()).await.unwrap();
    let s = engine.session(&id).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.get(&format!("https://shop.test/item/{i}")).send().await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), 200);
    }
    let connections: std::collections::HashSet<usize> = site
        .server
        .requests()
        .iter()
        .map(|r| r.connection)
        .collect();
    assert_eq!(connections.len(), 1, "multiplexed on one HTTP/2 connection");
    let stats = s.session().stats();
    assert_eq!(
        (stats.request_count, stats.transport.connections_opened),
        (50, 1)
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_and_repeated_429_slows_the_host_without_quarantine() {
    let site = site().await;
    let policy = RetryPolicy {
        max_retries: 1,
        ..fast_retries()
    };
    let engine = Engine::builder().retry(policy).start().unwrap();
    let id = engine.create_session(site.session()).await.unwrap();
    let s = engine.session(&id).await.unwrap();
    let started = std::time::Instant::now();
    let r = s.get("https://shop.test/slow-down").send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.attempts()), (429, 2));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited Retry-After: {:?}",
        started.elapsed()
    );
    // Throttled is not banned: the session still works, and the host is slowed
    // down (the next request waits for the 429's Retry-After and the throttle).
    let before = std::time::Instant::now();
    assert_eq!(
        s.get("https://shop.test/").send().await.unwrap().status(),
        200
    );
    assert!(
        before.elapsed() >= Duration::from_millis(400),
        "slowed after the 429s: {:?}",
        before.elapsed()
    );
    assert!(!engine.list_sessions().await.unwrap()[0].quarantined);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_is_fetched_once_and_obeyed_with_its_crawl_delay() {
    let site = site().await;
    let engine = Engine::builder()
        .respect_robots(Some("mummer"))
        .start()
        .unwrap();
    let mut events = engine.events();
    let id = engine.create_session(site.session()).await.unwrap();
    let s = engine.session(&id).await.unwrap();
    let err = s
        .get("https://shop.test/private/data")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_robots_disallowed(), "{err}");
    let started = std::time::Instant::now();
    for i in 0..3 {
        assert_eq!(
            s.get(&format!("https://shop.test/page/{i}"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // Crawl-delay 0.3 s: the three pages are spaced (the first one waits for the slot the
    // robots.txt fetch did not use; at least two gaps of 0.3 s).
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    let robots_fetches = site
        .server
        .requests()
        .iter()
        .filter(|r| r.path() == "/robots.txt")
        .count();
    assert_eq!(robots_fetches, 1, "fetched once per origin");
    assert!(
        !site
            .server
            .requests()
            .iter()
            .any(|r| r.path().starts_with("/private")),
        "never sent"
    );
    let mut blocked = false;
    while let Ok(e) = events.try_recv() {
        blocked |= matches!(e, EngineEvent::RobotsBlocked { .. });
    }
    assert!(blocked);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_rate_limit_is_shared_by_sessions() {
    let site = site().await;
    let engine = Engine::builder()
        .rate_limit_per_host(mummer::Rate::per_second(10.0))
        .start()
        .unwrap();
    let a = engine
        .session(&engine.create_session(site.session()).await.unwrap())
        .await
        .unwrap();
    let b = engine
        .session(&engine.create_session(site.session()).await.unwrap())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.get("https://shop.test/limited")
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    // 10/s with a burst of 1 across both sessions: six requests need five gaps of 100 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failure_hook_refreshes_once_then_retries() {
    let site = site().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let engine = Engine::builder()
        .on_auth_failure(move |_session, status| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(status, 401);
                Some(vec![(
                    http::header::AUTHORIZATION,
                    http::HeaderValue::from_static("Bearer fresh"),
                )])
            }
        })
        .start()
        .unwrap();
    let id = engine.create_session(site.session()).await.unwrap();
    let s = engine.session(&id).await.unwrap();
    let r = s
        .get("https://shop.test/secure")
        .header("authorization", "Bearer stale")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.attempts(), r.text().as_str()),
        (200, 2, "secret")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!engine.list_sessions().await.unwrap()[0].quarantined);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_host_opens_its_breaker_and_eviction_makes_room() {
    let site = site().await;
    let closed = support::closed_port().await;
    let engine = Engine::builder()
        .max_sessions(1)
        .evict_idle_at_limit(true)
        .retry(RetryPolicy {
            max_retries: 0,
            // Shorter than the cooldown: the open breaker's probe is beyond it, so
            // the request fails at once instead of waiting for the probe.
            deadline: Duration::from_secs(5),
            ..fast_retries()
        })
        .breaker(mummer::BreakerConfig {
            consecutive_failures: 2,
            cooldown: Duration::from_secs(60),
            ..Default::default()
        })
        .start()
        .unwrap();
    let id = engine.create_session(site.session()).await.unwrap();
    let s = engine.session(&id).await.unwrap();
    let down = format!("https://127.0.0.1:{closed}/");
    assert!(s.get(&down).send().await.unwrap_err().is_connect());
    assert!(s.get(&down).send().await.unwrap_err().is_connect());
    let err = s.get(&down).send().await.unwrap_err();
    assert!(
        err.is_breaker_open() && err.to_string().contains("next probe in"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("cannot connect to"),
        "the real cause first: {err}"
    );
    assert!(err.retry_in().is_some_and(|d| d > Duration::from_secs(50)));

    // At the limit with eviction on: the idle session makes room.
    let second = engine.create_session(site.session()).await.unwrap();
    assert!(engine
        .session(&id)
        .await
        .unwrap_err()
        .is_session_not_found());
    assert!(engine.session(&second).await.is_ok());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_session_reads_as_quarantined_and_closes_as_quarantined() {
    let site = site().await;
    let engine = Engine::builder().start().unwrap();
    let mut events = engine.events();
    let id = engine.create_session(site.session()).await.unwrap();
    let s = engine.session(&id).await.unwrap();
    assert_eq!(
        s.get("https://shop.test/secure")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert!(
        engine.peek_session(&id).await.unwrap().stats().quarantined,
        "one session's stats say it is quarantined"
    );
    assert!(engine.list_sessions().await.unwrap()[0].quarantined);
    engine.close_session(&id).await.unwrap();
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Ok(mummer::EngineEvent::SessionClosed { reason, .. })) => break reason,
            Ok(Ok(_)) => continue,
            other => panic!("no close event: {other:?}"),
        }
    };
    assert_eq!(reason, mummer::CloseReason::Quarantined);
    engine.shutdown().await;
}
