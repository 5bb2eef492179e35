//! Three `examples/crawl` worker processes split one crawl, through a real `redis-server`
//! and through a file store on one machine: the server checks that no session is used by two workers, that the per-host budget
//! holds across workers (Redis), and that after one worker is SIGKILLed halfway (and restarted
//! under the same name) every page is fetched, once, or twice at most for the requests
//! that were in flight in the killed worker; the restarted worker gets its sessions back
//! with their cookies and TLS tickets.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::https::{HttpsServer, Reply};
use support::redis::RedisServer;

const PAGES: usize = 600;
const SESSIONS_PER_WORKER: usize = 34;
const SHARED_RPS: f64 = 100.0;

/// One request as the site saw it.
#[derive(Clone, Debug)]
struct Hit {
    page: usize,
    sid: Option<String>,
    worker: String,
    at: Instant,
}

/// Worker processes, killed (by PID) if the test ends early.
struct Workers(Vec<(String, Child)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the workers keep sessions and the frontier.
enum Backend {
    Redis(RedisServer),
    File(tempfile::TempDir),
}

#[test]
fn three_workers_on_redis_share_sessions_a_budget_and_survive_a_kill() {
    run(Backend::Redis(RedisServer::start()));
}

#[test]
fn three_workers_on_a_file_store_share_sessions_and_survive_a_kill() {
    run(Backend::File(tempfile::tempdir().unwrap()));
}

/// A worker whose leases are taken by someone else (here, the test overwrites them in
/// Redis) loses those sessions mid-crawl: the engine closes them unsaved, the pages they
/// were given go back to the frontier, and the crawl goes on with fresh sessions, so no
/// page (nor the part of the site only it links to) is lost.
#[test]
fn a_worker_whose_leases_are_taken_goes_on_with_fresh_sessions() {
    const SMALL: usize = 300;
    let _serial = ONE_CRAWL_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, hits) = tree_site(&rt, SMALL);
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &server.cert_pem).unwrap();
    let port = server.addr.port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(support::crawl_binary())
        .args(["--store", &redis.url(), "--namespace", "stolen"])
        .args(["--start", &format!("https://shop.test:{port}/p/0")])
        .args(["--resolve", &format!("shop.test:{port}:127.0.0.1")])
        .arg("--cacert")
        .arg(ca.path())
        .args(["--sessions", "4", "--max-pages", "1000", "--no-robots"])
        .args([
            "--rps-per-host",
            "100",
            "--lease-ttl",
            "1",
            "--save-interval",
            "0.3",
        ])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("crawl worker");
    let mut workers = Workers(vec![("w".into(), child)]);
    let started = Instant::now();
    while hits.lock().unwrap().len() < SMALL / 6 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let leases = redis.cli(&["--scan", "--pattern", "stolen:lease:*"]);
    let stolen: Vec<&str> = leases.split_whitespace().collect();
    assert_eq!(stolen.len(), 4, "{leases}");
    for key in &stolen {
        redis.cli(&["SET", key, "another-worker", "PX", "60000"]);
    }
    let (_, child) = &mut workers.0[0];
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the worker did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    let hits = hits.lock().unwrap().clone();
    let mut fetches: HashMap<usize, usize> = HashMap::new();
    for h in &hits {
        *fetches.entry(h.page).or_default() += 1;
    }
    let missing: Vec<usize> = (0..SMALL).filter(|p| !fetches.contains_key(p)).collect();
    assert!(missing.is_empty(), "never fetched: {missing:?}\n{stderr}");
    assert!(
        fetches.values().all(|&n| n == 1),
        "each page once: {fetches:?}"
    );
    // The four sessions were replaced: more than four visitors got a cookie.
    let sids: HashSet<&str> = hits.iter().filter_map(|h| h.sid.as_deref()).collect();
    assert!(sids.len() > 4, "{sids:?}");
    let replaced = stderr.matches("going on with").count();
    assert!(
        (4..=8).contains(&replaced),
        "{replaced} replacements:\n{stderr}"
    );
    // The stolen leases stay the thief's; the replacements were saved and released.
    for key in &stolen {
        assert_eq!(redis.cli(&["GET", key]).trim(), "another-worker");
    }
    let left = redis.cli(&["--scan", "--pattern", "stolen:lease:*"]);
    assert_eq!(left.split_whitespace().count(), 4, "{left}");
}

/// A site whose page `n` links to pages `2n+1` and `2n+2` (below `pages`), that hands
/// each new visitor a `sid` cookie and records every request.
fn tree_site(rt: &tokio::runtime::Runtime, pages: usize) -> (HttpsServer, Arc<Mutex<Vec<Hit>>>) {
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let next_sid = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = hits.clone();
    let server = rt.block_on(HttpsServer::start(move |req| {
        let page: usize = req
            .path()
            .strip_prefix("/p/")
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        let sid = req.cookie().and_then(|c| {
            c.split("; ")
                .find_map(|kv| kv.strip_prefix("sid=").map(str::to_string))
        });
        seen.lock().unwrap().push(Hit {
            page,
            sid: sid.clone(),
            worker: req.header("x-mummer-worker").unwrap_or("?").to_string(),
            at: Instant::now(),
        });
        let links: String = [2 * page + 1, 2 * page + 2]
            .iter()
            .filter(|&&n| n < pages)
            .map(|n| format!("<a href=\"/p/{n}\">{n}</a> "))
            .collect();
        let mut reply = Reply::ok(format!("<html><body>{links}</body></html>"))
            .header("content-type", "text/html");
        if sid.is_none() {
            let n = next_sid.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            reply = reply.header("set-cookie", &format!("sid=s{n}; Path=/; Max-Age=3600"));
        }
        reply
    }));
    (server, hits)
}

/// The two crawls take both cores of a small machine; they run one after the other.
static ONE_CRAWL_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(backend: Backend) {
    let _serial = ONE_CRAWL_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, hits) = tree_site(&rt, PAGES);
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &server.cert_pem).unwrap();
    let port = server.addr.port();
    let out = tempfile::tempdir().unwrap();
    let crawl = support::crawl_binary();
    let spawn = |name: &str| -> Child {
        let mut command = Command::new(&crawl);
        match &backend {
            Backend::Redis(redis) => command
                .args(["--store", &redis.url(), "--namespace", "crawltest"])
                .args(["--shared-rps", &SHARED_RPS.to_string()]),
            // One machine: no shared budget; each worker keeps to its own.
            Backend::File(dir) => command
                .arg("--store")
                .arg(format!("file:{}", dir.path().display()))
                .args(["--rps-per-host", "40"]),
        };
        command
            .args(["--start", &format!("https://shop.test:{port}/p/0")])
            .args(["--resolve", &format!("shop.test:{port}:127.0.0.1")])
            .arg("--cacert")
            .arg(ca.path())
            .args(["--sessions", &SESSIONS_PER_WORKER.to_string()])
            .args(["--max-pages", "1000", "--no-robots", "--tag-requests"])
            .args([
                "--worker",
                name,
                "--lease-ttl",
                "2",
                "--save-interval",
                "0.3",
            ])
            .arg("--summary")
            .arg(out.path().join(format!("{name}.json")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("crawl worker")
    };
    let mut workers = Workers(
        ["w1", "w2", "w3"]
            .iter()
            .map(|n| (n.to_string(), spawn(n)))
            .collect(),
    );
    // A quarter of the way through: kill w2 (enough pages stay for it after its restart).
    let started = Instant::now();
    while hits.lock().unwrap().len() < PAGES / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the crawl does not progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, w2) = &mut workers.0[1];
    w2.kill().expect("SIGKILL w2");
    w2.wait().unwrap();
    let killed_at = Instant::now();
    let sids_before: HashSet<String> = hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.worker == "w2")
        .filter_map(|h| h.sid.clone())
        .collect();
    // Its leases run out (Redis: the 2 s TTL; file store: at once, with the process's
    // locks); then it comes back under the same name.
    std::thread::sleep(match backend {
        Backend::Redis(_) => Duration::from_millis(2500),
        Backend::File(_) => Duration::from_millis(200),
    });
    workers.0[1].1 = spawn("w2");
    for (name, child) in &mut workers.0 {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{name} exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "{name} did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let hits = hits.lock().unwrap().clone();

    // Every page, once; twice at most for what w2 had in flight when it died.
    let mut fetches: HashMap<usize, usize> = HashMap::new();
    for h in &hits {
        *fetches.entry(h.page).or_default() += 1;
    }
    let missing: Vec<usize> = (0..PAGES).filter(|p| !fetches.contains_key(p)).collect();
    assert!(missing.is_empty(), "never fetched: {missing:?}");
    let twice = fetches.values().filter(|&&n| n == 2).count();
    assert!(fetches.values().all(|&n| n <= 2), "{fetches:?}");
    assert!(
        twice <= SESSIONS_PER_WORKER,
        "{twice} pages fetched twice; at most the killed worker's {SESSIONS_PER_WORKER} in flight may be"
    );

    // No session is used by two workers.
    let mut owners: HashMap<&str, HashSet<&str>> = HashMap::new();
    for h in &hits {
        if let Some(sid) = &h.sid {
            owners.entry(sid).or_default().insert(&h.worker);
        }
    }
    for (sid, workers) in &owners {
        assert_eq!(workers.len(), 1, "session {sid} used by {workers:?}");
    }

    // One budget for the host across the workers (Redis): any 21 consecutive requests
    // span at least ~20 intervals (with some loopback jitter).
    if let Backend::Redis(_) = backend {
        let mut times: Vec<Instant> = hits.iter().map(|h| h.at).collect();
        times.sort();
        let interval = Duration::from_secs_f64(1.0 / SHARED_RPS);
        for w in times.windows(21) {
            let span = w[20] - w[0];
            assert!(span >= interval * 14, "21 requests within {span:?}");
        }
    }

    // The restarted w2 got its sessions back: cookies (sids issued before the kill) and
    // TLS tickets (resumed handshakes).
    let after_restart: HashSet<String> = hits
        .iter()
        .filter(|h| h.worker == "w2" && h.at > killed_at)
        .filter_map(|h| h.sid.clone())
        .collect();
    assert!(
        after_restart.intersection(&sids_before).next().is_some(),
        "the restarted worker carries cookies issued before the kill"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("w2.json")).unwrap()).unwrap();
    assert!(
        summary["restored_sessions"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(summary["tls_resumed"].as_u64().unwrap() > 0, "{summary}");
    // Everything is saved and released at the end.
    match &backend {
        Backend::Redis(redis) => {
            let leases = redis.cli(&["--scan", "--pattern", "crawltest:lease:*"]);
            assert!(leases.is_empty(), "leases left: {leases}");
        }
        Backend::File(dir) => rt.block_on(async {
            use mummer::store::{FileStore, SessionStore};
            let store = FileStore::open(dir.path()).unwrap();
            let ids = store.list().await.unwrap();
            assert!(
                ids.len() >= 3 * SESSIONS_PER_WORKER,
                "{} sessions stored",
                ids.len()
            );
            for id in ids {
                store.acquire(&id, Duration::from_secs(1)).await.unwrap();
            }
        }),
    }
}
