//! The actor machinery with fake sessions and a paused clock: retry schedule and
//! Retry-After, idempotency, dead letters, quarantine, breaker transitions (waiting for
//! the probe, probes dropped, aborted or lost), throttling without quarantine, the
//! block detector, re-authentication without a stampede, reaping with requests in
//! flight, the session limit and eviction, graceful and double shutdown.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mummer_actors::breaker::BreakerConfig;
use mummer_actors::dispatch::{ReauthHook, Rewrite};
use mummer_actors::policy::{Attempt, Detected, RetryPolicy};
use mummer_actors::supervisor::{LimitPolicy, SupervisorConfig};
use mummer_actors::{
    ActorError, ActorSystem, BoxFuture, CloseReason, EngineEvent, RequestSite, SessionCore,
    SystemConfig,
};
use tokio::time::Instant;

#[derive(Clone, Debug)]
enum Step {
    Status(u16, Option<&'static str>),
    Fail,
    Slow(Duration, u16),
    /// Waits until the test opens the gate.
    Gate(Arc<tokio::sync::Notify>),
    /// Waits until the test opens the gate, then answers this status.
    GateThen(Arc<tokio::sync::Notify>, u16),
}

#[derive(Clone)]
struct Fake(Arc<Inner>);

struct Inner {
    script: Mutex<VecDeque<Step>>,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    last_start: Mutex<Option<Instant>>,
    /// When each attempt started (by the clock of the thread that ran it).
    starts: Mutex<Vec<Instant>>,
    created: Mutex<Option<Instant>>,
    closed: AtomicBool,
}

#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    host: &'static str,
    idempotency_key: bool,
}

fn get() -> Req {
    Req {
        method: "GET",
        host: "shop.test",
        idempotency_key: false,
    }
}

impl Fake {
    fn new(script: Vec<Step>) -> Fake {
        Fake(Arc::new(Inner {
            script: Mutex::new(script.into()),
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            last_start: Mutex::new(None),
            starts: Mutex::new(Vec::new()),
            created: Mutex::new(None),
            closed: AtomicBool::new(false),
        }))
    }
    fn calls(&self) -> usize {
        self.0.calls.load(Ordering::SeqCst)
    }
    fn starts(&self) -> Vec<Instant> {
        self.0.starts.lock().unwrap().clone()
    }
}

impl SessionCore for Fake {
    type Request = Req;
    type Response = u16;
    type Error = String;
    type Stats = usize;

    fn execute(&self, _req: &Req) -> BoxFuture<Result<u16, String>> {
        let inner = self.0.clone();
        Box::pin(async move {
            if inner.closed.load(Ordering::SeqCst) {
                return Err("closed".to_string());
            }
            inner.calls.fetch_add(1, Ordering::SeqCst);
            inner.starts.lock().unwrap().push(Instant::now());
            *inner.last_start.lock().unwrap() = Some(Instant::now());
            inner.in_flight.fetch_add(1, Ordering::SeqCst);
            let step = inner
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Step::Status(200, None));
            let out = match step {
                Step::Status(s, _) => Ok(s),
                Step::Fail => Err("connection refused".to_string()),
                Step::Slow(d, s) => {
                    tokio::time::sleep(d).await;
                    Ok(s)
                }
                Step::Gate(g) => {
                    g.notified().await;
                    Ok(200)
                }
                Step::GateThen(g, s) => {
                    g.notified().await;
                    Ok(s)
                }
            };
            inner.in_flight.fetch_sub(1, Ordering::SeqCst);
            out
        })
    }
    fn stats(&self) -> usize {
        self.calls()
    }
    fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }
    fn idle_time(&self) -> Duration {
        let last = *self.0.last_start.lock().unwrap();
        // Idle since creation when never used; the clock of the actor thread is the one
        // that counts (it is paused in most tests).
        let since = last.unwrap_or_else(|| {
            *self
                .0
                .created
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now)
        });
        since.elapsed()
    }
    fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
    }
    fn touch(&self) {
        *self.0.last_start.lock().unwrap() = Some(Instant::now());
    }
    fn target(r: &Req) -> &str {
        r.host
    }
    fn replayable(r: &Req) -> bool {
        mummer_actors::policy::is_idempotent(r.method, r.idempotency_key)
    }
    fn describe(result: &Result<u16, String>) -> Attempt {
        match result {
            Ok(status) => Attempt::Response {
                status: *status,
                retry_after: None,
            },
            Err(_) => Attempt::Failure { transient: true },
        }
    }
}

/// A fake whose script carries Retry-After values (the describe above has none).
#[derive(Clone)]
struct WithRetryAfter(Fake);

impl SessionCore for WithRetryAfter {
    type Request = Req;
    type Response = (u16, Option<&'static str>);
    type Error = String;
    type Stats = usize;
    fn execute(&self, _req: &Req) -> BoxFuture<Result<(u16, Option<&'static str>), String>> {
        let inner = self.0 .0.clone();
        Box::pin(async move {
            inner.calls.fetch_add(1, Ordering::SeqCst);
            inner.starts.lock().unwrap().push(Instant::now());
            match inner.script.lock().unwrap().pop_front() {
                Some(Step::Status(s, ra)) => Ok((s, ra)),
                _ => Ok((200, None)),
            }
        })
    }
    fn stats(&self) -> usize {
        self.0.calls()
    }
    fn in_flight(&self) -> usize {
        0
    }
    fn idle_time(&self) -> Duration {
        Duration::ZERO
    }
    fn close(&self) {}
    fn touch(&self) {}
    fn target(r: &Req) -> &str {
        r.host
    }
    fn replayable(r: &Req) -> bool {
        mummer_actors::policy::is_idempotent(r.method, r.idempotency_key)
    }
    fn describe(result: &Result<(u16, Option<&'static str>), String>) -> Attempt {
        match result {
            Ok((status, ra)) => Attempt::Response {
                status: *status,
                retry_after: ra.map(str::to_string),
            },
            Err(_) => Attempt::Failure { transient: true },
        }
    }
}

fn config<C: SessionCore>() -> SystemConfig<C> {
    SystemConfig {
        workers: 0,
        paused_time: true,
        supervisor: SupervisorConfig {
            max_sessions: 10,
            idle_timeout: Duration::from_secs(60),
            // Periodic reaping off: a paused clock jumps to the next timer whenever the
            // actor thread idles, so tests reap explicitly with reap_now.
            reap_interval: Duration::ZERO,
            at_limit: LimitPolicy::Refuse,
            close_deadline: Duration::from_secs(5),
        },
        ..SystemConfig::default()
    }
}

/// The reasons of the quarantine events among `events`, in order.
fn quarantine_reasons(events: Vec<EngineEvent>) -> Vec<String> {
    events
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::Quarantined { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<EngineEvent>) -> Vec<EngineEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn recoverable_statuses_are_retried_with_jittered_backoff() {
    let sys = ActorSystem::start(config::<Fake>()).unwrap();
    let mut events = sys.events();
    let fake = Fake::new(vec![
        Step::Status(503, None),
        Step::Fail,
        Step::Status(200, None),
    ]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!((done.response, done.attempts), (200, 3));
    let delays: Vec<Duration> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::RetryScheduled { delay, .. } => Some(delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 2);
    assert!(
        delays[0] <= Duration::from_millis(500) && delays[1] <= Duration::from_millis(1000),
        "{delays:?}"
    );
    // Past the retry limit the last answer comes back.
    fake.0
        .script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n(Step::Status(502, None), 4));
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!((done.response, done.attempts), (502, 4));
    let letters = sys.dead_letters(false).await;
    assert_eq!(letters.len(), 1, "retries used up: dead-lettered");
    assert_eq!((letters[0].attempts, letters[0].status), (4, Some(502)));
    assert!(
        letters[0].reason.starts_with("gave up after 4 attempt(s)"),
        "{}",
        letters[0].reason
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_idempotency_respected() {
    let sys = ActorSystem::start(config::<WithRetryAfter>()).unwrap();
    let mut events = sys.events();
    let fake = WithRetryAfter(Fake::new(vec![
        Step::Status(429, Some("7")),
        Step::Status(200, None),
    ]));
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!(done.attempts, 2);
    let retry = drain(&mut events)
        .into_iter()
        .find_map(|e| match e {
            EngineEvent::RetryScheduled { delay, .. } => Some(delay),
            _ => None,
        })
        .unwrap();
    assert_eq!(retry, Duration::from_secs(7), "Retry-After, not backoff");

    // POST is not retried; POST with an Idempotency-Key is.
    fake.0
         .0
        .script
        .lock()
        .unwrap()
        .extend([Step::Status(503, None), Step::Status(200, None)]);
    let post = Req {
        method: "POST",
        ..get()
    };
    let done = sys.execute(&s, post.clone()).await.unwrap();
    assert_eq!((done.response.0, done.attempts), (503, 1));
    fake.0 .0.script.lock().unwrap().clear();
    fake.0
         .0
        .script
        .lock()
        .unwrap()
        .extend([Step::Status(503, None), Step::Status(200, None)]);
    let keyed = Req {
        idempotency_key: true,
        ..post
    };
    let done = sys.execute(&s, keyed).await.unwrap();
    assert_eq!((done.response.0, done.attempts), (200, 2));
    sys.shutdown().await;
}

#[tokio::test]
async fn non_recoverable_goes_to_dead_letters_and_blocked_quarantines() {
    let sys = ActorSystem::start(config::<Fake>()).unwrap();
    let mut events = sys.events();
    let fake = Fake::new(vec![Step::Status(404, None), Step::Status(403, None)]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!((done.response, done.attempts), (404, 1));
    let letters = sys.dead_letters(false).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].status, letters[0].session.as_str()),
        (Some(404), "a")
    );
    assert_eq!(sys.dead_letters(true).await.len(), 1);
    assert!(sys.dead_letters(false).await.is_empty(), "drained");

    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!(done.response, 403);
    let err = sys.execute(&s, get()).await.unwrap_err();
    assert!(
        matches!(err, ActorError::Quarantined(ref id) if id == "a"),
        "{err}"
    );
    assert_eq!(fake.calls(), 2, "a quarantined session sends nothing");
    let list = sys.list().await.unwrap();
    assert!(list[0].2, "listed as quarantined");
    let evs = drain(&mut events);
    assert!(evs
        .iter()
        .any(|e| matches!(e, EngineEvent::Quarantined { id, .. } if id == "a")));
    assert!(evs
        .iter()
        .any(|e| matches!(e, EngineEvent::DeadLettered { .. })));
    // The caller retires it.
    assert!(sys.close("a", CloseReason::Quarantined).await);
    assert!(matches!(
        sys.session("a").await,
        Err(ActorError::SessionNotFound(_))
    ));
    sys.shutdown().await;
}

#[tokio::test]
async fn an_open_host_breaker_holds_requests_until_its_probe() {
    let mut cfg = config::<Fake>();
    cfg.retry = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    cfg.breaker = BreakerConfig {
        consecutive_failures: 2,
        cooldown: Duration::from_secs(30),
        ..BreakerConfig::default()
    };
    let sys = ActorSystem::start(cfg).unwrap();
    let mut events = sys.events();
    let fake = Fake::new(vec![Step::Fail, Step::Fail]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    for _ in 0..2 {
        assert!(matches!(
            sys.execute(&s, get()).await,
            Err(ActorError::Session(_))
        ));
    }
    let open = sys.open_breakers().await;
    assert_eq!(
        open.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["host:shop.test"],
        "transport failures count against the host, not the session"
    );
    // The third request waits for the probe time (30 s, within its 120 s deadline),
    // goes as the probe, and its success closes the breaker: later, not failed.
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!((done.response, done.attempts), (200, 1));
    let starts = fake.starts();
    assert!(
        starts[2] - starts[1] >= Duration::from_secs(30),
        "sent once the cooldown passed: {:?}",
        starts[2] - starts[1]
    );
    assert!(sys.open_breakers().await.is_empty());
    let changes: Vec<String> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::Breaker { key, state } if key == "host:shop.test" => {
                Some(format!("{state:?}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(changes, ["Open", "Closed"]);
    sys.shutdown().await;
}

#[tokio::test]
async fn a_probe_beyond_the_deadline_fails_with_the_time_to_retry_and_the_real_cause() {
    let mut cfg = config::<Fake>();
    cfg.retry = RetryPolicy {
        max_retries: 0,
        deadline: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    cfg.breaker = BreakerConfig {
        consecutive_failures: 2,
        cooldown: Duration::from_secs(30),
        ..BreakerConfig::default()
    };
    let sys = ActorSystem::start(cfg).unwrap();
    let fake = Fake::new(vec![Step::Fail, Step::Fail]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    for _ in 0..2 {
        let _ = sys.execute(&s, get()).await;
    }
    match sys.execute(&s, get()).await {
        Err(e @ ActorError::BreakerOpen { .. }) => {
            let text = e.to_string();
            let ActorError::BreakerOpen {
                key,
                retry_in,
                cause,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(key, "host:shop.test");
            assert!(retry_in <= Duration::from_secs(30) && retry_in > Duration::from_secs(29));
            assert_eq!(cause, "connection refused");
            assert!(text.starts_with("connection refused"), "{text}");
        }
        other => panic!(
            "expected an open breaker, got {:?}",
            other.map(|d| d.response)
        ),
    }
    assert_eq!(fake.calls(), 2, "nothing sent while open");
    sys.shutdown().await;
}

#[tokio::test]
async fn flaky_urls_and_broken_links_do_not_open_the_host_breaker() {
    // A healthy site: some 503s that recover, 404s, 410s and 500s among successes.
    let sys = ActorSystem::start(config::<Fake>()).unwrap();
    let mut script = Vec::new();
    for i in 0..40 {
        script.push(match i % 8 {
            0 => Step::Status(503, None),
            1 => Step::Status(404, None),
            2 => Step::Status(410, None),
            3 => Step::Status(500, None),
            _ => Step::Status(200, None),
        });
    }
    let fake = Fake::new(script);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    for _ in 0..40 {
        let _ = sys.execute(&s, get()).await;
    }
    assert!(sys.open_breakers().await.is_empty());
    assert!(!sys.is_quarantined("a"), "404/410/500 are no block");
    sys.shutdown().await;
}

/// Real time and requests in the caller's task: dropping a request's future is
/// dropping its probe.
fn real_time_config(probe_timeout: Duration) -> SystemConfig<Fake> {
    let mut cfg = config::<Fake>();
    cfg.paused_time = false;
    cfg.workers = 1;
    cfg.site = RequestSite::Caller;
    cfg.retry = RetryPolicy {
        max_retries: 0,
        deadline: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    cfg.breaker = BreakerConfig {
        consecutive_failures: 1,
        cooldown: Duration::from_millis(200),
        probe_timeout,
        ..BreakerConfig::default()
    };
    cfg
}

#[tokio::test]
async fn a_dropped_or_aborted_probe_gives_its_slot_back() {
    let sys = Arc::new(ActorSystem::start(real_time_config(Duration::from_secs(60))).unwrap());
    let gate = Arc::new(tokio::sync::Notify::new());
    let fake = Fake::new(vec![
        Step::Fail,
        Step::Gate(gate.clone()),
        Step::Gate(gate.clone()),
    ]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    assert!(sys.execute(&s, get()).await.is_err(), "opens the breaker");
    // Probe 1 waits out the cooldown, is sent, and its future is dropped.
    let dropped = tokio::time::timeout(Duration::from_millis(800), sys.execute(&s, get())).await;
    assert!(dropped.is_err(), "still waiting on the gate");
    assert_eq!(fake.calls(), 2, "probe 1 was sent");
    // Probe 2 runs in a task that is aborted.
    let task = {
        let (sys, s) = (sys.clone(), s.clone());
        tokio::spawn(async move { sys.execute(&s, get()).await.map(|d| d.response) })
    };
    let t0 = std::time::Instant::now();
    while fake.calls() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(3), "probe 2 never went");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    let _ = task.await;
    // Neither left the breaker wedged: the next request is the probe, and closes it.
    let done = tokio::time::timeout(Duration::from_secs(2), sys.execute(&s, get()))
        .await
        .expect("not wedged")
        .unwrap();
    assert_eq!(done.response, 200);
    assert!(sys.open_breakers().await.is_empty());
    sys.shutdown().await;
}

#[tokio::test]
async fn a_probe_that_hangs_past_the_probe_timeout_lets_another_go() {
    let sys = Arc::new(ActorSystem::start(real_time_config(Duration::from_millis(300))).unwrap());
    let gate = Arc::new(tokio::sync::Notify::new());
    let fake = Fake::new(vec![Step::Fail, Step::Gate(gate.clone())]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    assert!(sys.execute(&s, get()).await.is_err());
    let hung = {
        let (sys, s) = (sys.clone(), s.clone());
        tokio::spawn(async move { sys.execute(&s, get()).await.map(|d| d.response) })
    };
    let t0 = std::time::Instant::now();
    while fake.calls() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the probe never went"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = tokio::time::timeout(Duration::from_secs(3), sys.execute(&s, get()))
        .await
        .expect("a second probe went after the first was presumed lost")
        .unwrap();
    assert_eq!(done.response, 200);
    gate.notify_waiters();
    assert_eq!(hung.await.unwrap().unwrap(), 200);
    sys.shutdown().await;
}

#[tokio::test]
async fn a_probe_whose_deadline_passes_gives_its_slot_back() {
    let mut cfg = real_time_config(Duration::from_secs(60));
    cfg.retry.deadline = Duration::from_millis(800);
    let sys = ActorSystem::start(cfg).unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    let fake = Fake::new(vec![Step::Fail, Step::Gate(gate.clone())]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    assert!(sys.execute(&s, get()).await.is_err(), "opens the breaker");
    // The probe hangs; its deadline ends it, and with it the probe.
    let started = std::time::Instant::now();
    let hung = sys.execute(&s, get()).await;
    assert!(
        matches!(hung, Err(ActorError::Deadline(_))),
        "{:?}",
        hung.map(|d| d.response)
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(fake.calls(), 2, "the probe was sent");
    let done = tokio::time::timeout(Duration::from_secs(2), sys.execute(&s, get()))
        .await
        .expect("not wedged")
        .unwrap();
    assert_eq!(done.response, 200);
    sys.shutdown().await;
}

#[tokio::test]
async fn throttling_is_waited_out_and_never_quarantines() {
    let sys = ActorSystem::start(config::<WithRetryAfter>()).unwrap();
    let fake = WithRetryAfter(Fake::new(vec![
        Step::Status(429, Some("2")),
        Step::Status(429, None),
        Step::Status(200, None),
        // Past the retry limit: given up, not quarantined.
        Step::Status(429, None),
        Step::Status(429, None),
        Step::Status(429, None),
        Step::Status(429, None),
    ]));
    sys.create("a".into(), fake.clone()).await.unwrap();
    let other = WithRetryAfter(Fake::new(vec![Step::Status(429, Some("5"))]));
    sys.create("b".into(), other.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!((done.response.0, done.attempts), (200, 3));
    let starts = fake.0.starts();
    assert!(
        starts[1] - starts[0] >= Duration::from_secs(2),
        "Retry-After"
    );
    assert!(
        starts[2] - starts[1] >= Duration::from_millis(250),
        "a 429 without Retry-After is never retried at once"
    );
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!((done.response.0, done.attempts), (429, 4));
    assert!(!sys.is_quarantined("a"), "throttled, not banned");
    assert_eq!(sys.execute(&s, get()).await.unwrap().response.0, 200);
    // A Retry-After pauses the whole host: session b's 429 holds a's next request.
    let b = sys.session("b").await.unwrap();
    let before = fake.0.calls();
    let _ = sys.execute(&b, get()).await.unwrap();
    let b_at = other.0.starts()[0];
    sys.execute(&s, get()).await.unwrap();
    let a_at = fake.0.starts()[before];
    assert!(
        a_at - b_at >= Duration::from_secs(5),
        "no request to the host before its Retry-After: {:?}",
        a_at - b_at
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn a_block_detector_quarantines_a_200_captcha_page() {
    let mut cfg = config::<Fake>();
    cfg.block_detector = Some(Arc::new(|r: &Result<u16, String>| {
        (r.as_ref().ok() == Some(&299)).then_some(Detected::Blocked)
    }));
    let sys = ActorSystem::start(cfg).unwrap();
    let mut events = sys.events();
    let fake = Fake::new(vec![Step::Status(200, None), Step::Status(299, None)]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    assert_eq!(sys.execute(&s, get()).await.unwrap().response, 200);
    assert_eq!(sys.execute(&s, get()).await.unwrap().attempts, 1);
    assert!(sys.is_quarantined("a"));
    let reason = quarantine_reasons(drain(&mut events)).remove(0);
    assert!(reason.contains("block detector"), "{reason}");
    sys.shutdown().await;
}

#[tokio::test]
async fn reaping_spares_sessions_with_requests_in_flight() {
    reaping_spares_sessions_with_requests_in_flight_on(RequestSite::Caller).await;
}

#[tokio::test]
async fn reaping_spares_sessions_with_requests_in_flight_with_requests_on_arbiters() {
    reaping_spares_sessions_with_requests_in_flight_on(RequestSite::Arbiter).await;
}

async fn reaping_spares_sessions_with_requests_in_flight_on(site: RequestSite) {
    // Real time: a paused clock would race ahead while the test thread waits.
    let mut cfg = config::<Fake>();
    cfg.paused_time = false;
    cfg.site = site;
    cfg.workers = 1;
    cfg.supervisor.idle_timeout = Duration::from_millis(200);
    let sys = Arc::new(ActorSystem::start(cfg).unwrap());
    let mut events = sys.events();
    let gate = Arc::new(tokio::sync::Notify::new());
    let busy = Fake::new(vec![Step::Gate(gate.clone())]);
    let idle = Fake::new(vec![]);
    sys.create("busy".into(), busy.clone()).await.unwrap();
    sys.create("idle".into(), idle.clone()).await.unwrap();
    let s = sys.session("busy").await.unwrap();
    let running = {
        let sys = sys.clone();
        tokio::spawn(async move { sys.execute(&s, get()).await.map(|d| d.response) })
    };
    let i = sys.session("idle").await.unwrap();
    sys.execute(&i, get()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(busy.in_flight(), 1);
    sys.reap_now().await;
    assert!(
        sys.session("busy").await.is_ok(),
        "a request in flight keeps it alive"
    );
    assert!(matches!(
        sys.session("idle").await,
        Err(ActorError::SessionNotFound(_))
    ));
    gate.notify_one();
    assert_eq!(
        running.await.unwrap().unwrap(),
        200,
        "the long request finished"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    sys.reap_now().await;
    assert!(
        matches!(
            sys.session("busy").await,
            Err(ActorError::SessionNotFound(_))
        ),
        "reaped once idle"
    );
    let closed: Vec<(String, CloseReason)> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::SessionClosed { id, reason } => Some((id, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        [
            ("idle".to_string(), CloseReason::Idle),
            ("busy".to_string(), CloseReason::Idle)
        ]
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn the_limit_refuses_or_evicts_the_least_recently_used_idle_session() {
    let mut cfg = config::<Fake>();
    cfg.supervisor.max_sessions = 2;
    let sys = ActorSystem::start(cfg).unwrap();
    sys.create("a".into(), Fake::new(vec![])).await.unwrap();
    sys.create("b".into(), Fake::new(vec![])).await.unwrap();
    let err = sys.create("c".into(), Fake::new(vec![])).await.unwrap_err();
    assert!(
        err.to_string().contains("maximum sessions limit reached"),
        "{err}"
    );
    assert_eq!(sys.count().await, 2);
    sys.shutdown().await;

    let mut cfg = config::<Fake>();
    cfg.supervisor.max_sessions = 2;
    cfg.supervisor.at_limit = LimitPolicy::EvictIdle;
    let sys = Arc::new(ActorSystem::start(cfg).unwrap());
    let mut events = sys.events();
    let old = Fake::new(vec![]);
    let recent = Fake::new(vec![]);
    sys.create("old".into(), old.clone()).await.unwrap();
    sys.create("recent".into(), recent.clone()).await.unwrap();
    // "old" starts its last request 3 s before "recent" starts its.
    old.0
        .script
        .lock()
        .unwrap()
        .push_back(Step::Slow(Duration::from_secs(3), 200));
    let o = sys.session("old").await.unwrap();
    sys.execute(&o, get()).await.unwrap();
    let r = sys.session("recent").await.unwrap();
    sys.execute(&r, get()).await.unwrap();
    sys.create("new".into(), Fake::new(vec![])).await.unwrap();
    assert!(
        matches!(
            sys.session("old").await,
            Err(ActorError::SessionNotFound(_))
        ),
        "the LRU idle one went"
    );
    assert!(sys.session("recent").await.is_ok());
    assert!(drain(&mut events)
        .iter()
        .any(|e| matches!(e, EngineEvent::SessionClosed { id, reason: CloseReason::Evicted } if id == "old")));
    sys.shutdown().await;
}

/// Past a few thousand sessions, listing and reaping go in steps and eviction picks
/// from a sample: every session is still listed once, the limit still holds, and each
/// create at the limit still evicts exactly one idle session.
#[tokio::test]
async fn a_large_table_is_listed_whole_and_evicts_one_per_create_at_the_limit() {
    const K: usize = 6000;
    let mut cfg = config::<Fake>();
    cfg.supervisor.max_sessions = K;
    cfg.supervisor.at_limit = LimitPolicy::EvictIdle;
    let sys = ActorSystem::start(cfg).unwrap();
    for i in 0..K {
        sys.create(format!("s{i}"), Fake::new(vec![]))
            .await
            .unwrap();
    }
    let listed = sys.list().await.unwrap();
    let ids: std::collections::HashSet<&String> = listed.iter().map(|(id, _, _)| id).collect();
    assert_eq!(
        (listed.len(), ids.len()),
        (K, K),
        "each session listed once"
    );
    let mut events = sys.events();
    for i in 0..50 {
        sys.create(format!("new{i}"), Fake::new(vec![]))
            .await
            .unwrap();
    }
    assert_eq!(sys.count().await, K, "the limit holds");
    // All are equally idle on the paused clock, so which ones go is the sample's pick;
    // what holds is one distinct eviction per create, each really gone.
    let evicted: Vec<String> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::SessionClosed {
                id,
                reason: CloseReason::Evicted,
            } => Some(id),
            _ => None,
        })
        .collect();
    let distinct: std::collections::HashSet<&String> = evicted.iter().collect();
    assert_eq!(
        (evicted.len(), distinct.len()),
        (50, 50),
        "one eviction per create"
    );
    for id in &evicted {
        assert!(sys.session(id).await.is_err(), "{id} is gone");
    }
    sys.reap_now().await;
    assert_eq!(sys.count().await, K, "nothing old enough to reap");
    sys.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_graceful_and_idempotent() {
    shutdown_is_graceful_and_idempotent_on(RequestSite::Caller).await;
}

#[tokio::test]
async fn shutdown_is_graceful_and_idempotent_with_requests_on_arbiters() {
    shutdown_is_graceful_and_idempotent_on(RequestSite::Arbiter).await;
}

async fn shutdown_is_graceful_and_idempotent_on(site: RequestSite) {
    let mut cfg = config::<Fake>();
    cfg.paused_time = false;
    cfg.site = site;
    cfg.workers = 2;
    cfg.supervisor.close_deadline = Duration::from_millis(500);
    let sys = Arc::new(ActorSystem::start(cfg).unwrap());
    let stuck_gate = Arc::new(tokio::sync::Notify::new());
    let quick = Fake::new(vec![Step::Slow(Duration::from_millis(150), 200)]);
    let stuck = Fake::new(vec![Step::Gate(stuck_gate)]);
    sys.create("quick".into(), quick).await.unwrap();
    sys.create("stuck".into(), stuck.clone()).await.unwrap();
    let (q, s) = (
        sys.session("quick").await.unwrap(),
        sys.session("stuck").await.unwrap(),
    );
    let sq = sys.clone();
    let quick_req = tokio::spawn(async move { sq.execute(&q, get()).await.map(|d| d.response) });
    let ss = sys.clone();
    let stuck_req = tokio::spawn(async move { ss.execute(&s, get()).await.map(|d| d.response) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    sys.shutdown().await;
    sys.shutdown().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "waited for the deadline: {took:?}"
    );
    assert_eq!(
        quick_req.await.unwrap().unwrap(),
        200,
        "in-flight requests within the deadline finish"
    );
    assert!(
        matches!(stuck_req.await.unwrap(), Err(ActorError::ShuttingDown)),
        "past the deadline: aborted"
    );
    assert_eq!(
        stuck.in_flight(),
        1,
        "the aborted future never reached its end"
    );
    assert!(matches!(
        sys.create("late".into(), Fake::new(vec![])).await,
        Err(ActorError::ShuttingDown)
    ));
    assert!(matches!(
        sys.session("quick").await,
        Err(ActorError::ShuttingDown)
    ));
}

/// A re-authentication hook that counts its calls, takes `work` to log in, and
/// refreshes for a 401 but gives up on a 403.
fn counting_reauth(calls: Arc<AtomicUsize>, work: Duration) -> ReauthHook<Fake> {
    Arc::new(move |_core: &Fake, _req: &Req, status: u16| {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(work).await;
            if status == 401 {
                let same: Rewrite<Fake> = Arc::new(|r: &Req| r.clone());
                Ok(same)
            } else {
                Err("the login page refused the stored password".to_string())
            }
        }) as BoxFuture<Result<Rewrite<Fake>, String>>
    })
}

#[tokio::test]
async fn reauth_hook_runs_once_and_decides_between_retry_and_quarantine() {
    let refreshed = Arc::new(AtomicUsize::new(0));
    let mut cfg = config::<Fake>();
    cfg.reauth = Some(counting_reauth(refreshed.clone(), Duration::ZERO));
    let sys = ActorSystem::start(cfg).unwrap();
    let mut events = sys.events();
    let fake = Fake::new(vec![
        Step::Status(401, None),
        Step::Status(200, None),
        Step::Status(403, None),
    ]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!(
        (done.response, done.attempts),
        (200, 2),
        "refreshed and retried"
    );
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!(done.response, 403);
    assert!(
        matches!(
            sys.execute(&s, get()).await,
            Err(ActorError::Quarantined(_))
        ),
        "the hook said no"
    );
    assert_eq!(refreshed.load(Ordering::SeqCst), 2);
    let reason = quarantine_reasons(drain(&mut events)).remove(0);
    assert!(reason.contains("refused the stored password"), "{reason}");
    sys.shutdown().await;
}

/// `n` requests on one session, refused with `status` all at once (each waits at a
/// gate until all are in flight), in real time with the hook `counting_reauth` (100 ms
/// of login work): what each got (status, attempts), and the events.
async fn refused_together(
    n: usize,
    status: u16,
    refreshed: Arc<AtomicUsize>,
) -> (Arc<ActorSystem<Fake>>, Vec<(u16, usize)>, Vec<EngineEvent>) {
    let mut cfg = config::<Fake>();
    cfg.paused_time = false;
    cfg.workers = 1;
    cfg.site = RequestSite::Caller;
    cfg.reauth = Some(counting_reauth(refreshed, Duration::from_millis(100)));
    let sys = Arc::new(ActorSystem::start(cfg).unwrap());
    let mut events = sys.events();
    let gate = Arc::new(tokio::sync::Notify::new());
    let fake = Fake::new(
        (0..n)
            .map(|_| Step::GateThen(gate.clone(), status))
            .collect(),
    );
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (sys, s) = (sys.clone(), s.clone());
            tokio::spawn(async move {
                sys.execute(&s, get())
                    .await
                    .map(|d| (d.response, d.attempts))
            })
        })
        .collect();
    let t0 = std::time::Instant::now();
    while fake.calls() < n {
        assert!(t0.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gate.notify_waiters();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().unwrap());
    }
    (sys, answers, drain(&mut events))
}

#[tokio::test]
async fn concurrent_401s_trigger_one_reauthentication() {
    let refreshed = Arc::new(AtomicUsize::new(0));
    // More refusals at once than the session breaker's ten in a row: expired
    // credentials must not open it under the refreshed requests.
    let (sys, answers, _) = refused_together(12, 401, refreshed.clone()).await;
    assert!(answers.iter().all(|a| *a == (200, 2)), "{answers:?}");
    assert_eq!(
        refreshed.load(Ordering::SeqCst),
        1,
        "one login for twelve refused requests"
    );
    assert!(!sys.is_quarantined("a"));
    assert!(sys.open_breakers().await.is_empty(), "no breaker opened");
    sys.shutdown().await;
}

#[tokio::test]
async fn a_reauth_hook_that_hangs_quarantines_within_the_deadline() {
    let mut cfg = config::<Fake>();
    cfg.retry = RetryPolicy {
        deadline: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    cfg.reauth = Some(counting_reauth(
        Arc::new(AtomicUsize::new(0)),
        Duration::from_secs(3600),
    ));
    let sys = ActorSystem::start(cfg).unwrap();
    let mut events = sys.events();
    sys.create("a".into(), Fake::new(vec![Step::Status(401, None)]))
        .await
        .unwrap();
    let s = sys.session("a").await.unwrap();
    assert_eq!(sys.execute(&s, get()).await.unwrap().response, 401);
    assert!(sys.is_quarantined("a"));
    let reason = quarantine_reasons(drain(&mut events)).remove(0);
    assert!(reason.contains("did not finish"), "{reason}");
    sys.shutdown().await;
}

#[tokio::test]
async fn a_reaped_session_leaves_no_quarantine_behind_for_its_id() {
    // Real time: reaping needs the session idle by the actor thread's clock.
    let mut cfg = config::<Fake>();
    cfg.paused_time = false;
    cfg.workers = 1;
    cfg.supervisor.idle_timeout = Duration::from_millis(100);
    let sys = ActorSystem::start(cfg).unwrap();
    sys.create("q".into(), Fake::new(vec![Step::Status(403, None)]))
        .await
        .unwrap();
    let s = sys.session("q").await.unwrap();
    assert_eq!(sys.execute(&s, get()).await.unwrap().response, 403);
    assert!(matches!(
        sys.execute(&s, get()).await,
        Err(ActorError::Quarantined(_))
    ));
    tokio::time::sleep(Duration::from_millis(250)).await;
    sys.reap_now().await;
    assert!(matches!(
        sys.session("q").await,
        Err(ActorError::SessionNotFound(_))
    ));
    // The same id again (a session checked back out of a store): a clean slate.
    sys.create("q".into(), Fake::new(vec![])).await.unwrap();
    let again = sys.session("q").await.unwrap();
    assert_eq!(sys.execute(&again, get()).await.unwrap().response, 200);
    sys.shutdown().await;
}

#[tokio::test]
async fn a_failed_reauthentication_is_not_repeated_by_the_requests_that_waited() {
    let refreshed = Arc::new(AtomicUsize::new(0));
    let (sys, answers, events) = refused_together(3, 403, refreshed.clone()).await;
    assert!(
        answers.iter().all(|a| a.0 == 403),
        "the refusal comes back: {answers:?}"
    );
    assert_eq!(refreshed.load(Ordering::SeqCst), 1, "the hook ran once");
    assert!(sys.is_quarantined("a"));
    let reasons = quarantine_reasons(events);
    assert!(
        !reasons.is_empty()
            && reasons
                .iter()
                .all(|r| r.contains("refused the stored password")),
        "every waiter quarantines with the hook's cause: {reasons:?}"
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn a_retry_that_cannot_get_a_slot_in_time_returns_the_last_answer() {
    let mut cfg = config::<Fake>();
    cfg.retry = RetryPolicy {
        deadline: Duration::from_secs(3),
        ..RetryPolicy::default()
    };
    // One request every 10 s to the host: the retry's slot is past the deadline.
    cfg.rates.per_host = Some(mummer_actors::rate::Rate::per_second(0.1));
    let sys = ActorSystem::start(cfg).unwrap();
    let fake = Fake::new(vec![Step::Status(503, None)]);
    sys.create("a".into(), fake.clone()).await.unwrap();
    let s = sys.session("a").await.unwrap();
    let done = sys.execute(&s, get()).await.unwrap();
    assert_eq!(
        (done.response, done.attempts),
        (503, 1),
        "the 503, not a bare deadline"
    );
    assert_eq!(fake.calls(), 1);
    let letters = sys.dead_letters(false).await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("status 503") && letters[0].reason.contains("no rate slot"),
        "{}",
        letters[0].reason
    );
    sys.shutdown().await;
}
