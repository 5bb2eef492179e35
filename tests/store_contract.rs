//! The session-store contract, run against the file store and a real `redis-server`:
//! versioned saves that never overwrite newer data, listing and deleting, leases that
//! one holder at a time owns, and the faults (corrupt or foreign values, Redis down and
//! back, a lease holder killed).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mummer::store::{FileStore, RedisStore, SessionStore};
use support::redis::RedisServer;

const TTL: Duration = Duration::from_secs(30);

async fn contract(store: Arc<dyn SessionStore>) {
    let what = store.describe();
    assert_eq!(store.load("s1").await.unwrap(), None, "{what}");
    store.save("s1", 1, b"first").await.unwrap();
    let got = store.load("s1").await.unwrap().unwrap();
    assert_eq!((got.version, got.bytes.as_slice()), (1, &b"first"[..]));

    // The same version again, or an older one, is refused and loses nothing.
    let err = store.save("s1", 1, b"other").await.unwrap_err();
    assert!(err.is_store_conflict(), "{what}: {err}");
    assert!(err.to_string().contains("version 1"), "{err}");
    store.save("s1", 3, b"third").await.unwrap();
    let err = store.save("s1", 2, b"stale").await.unwrap_err();
    assert!(err.is_store_conflict(), "{err}");
    let got = store.load("s1").await.unwrap().unwrap();
    assert_eq!((got.version, got.bytes.as_slice()), (3, &b"third"[..]));

    // Binary data survives as it is.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store.save("s2", 1, &binary).await.unwrap();
    assert_eq!(store.load("s2").await.unwrap().unwrap().bytes, binary);

    let mut ids = store.list().await.unwrap();
    ids.sort();
    assert_eq!(ids, ["s1", "s2"], "{what}");
    store.delete("s2").await.unwrap();
    store.delete("never-saved").await.unwrap();
    assert_eq!(store.list().await.unwrap(), ["s1"]);
    assert_eq!(store.load("s2").await.unwrap(), None);

    // Ids that cannot be keys or file names are refused before any I/O.
    for bad in ["../escape", "a/b", ""] {
        assert!(
            store.load(bad).await.unwrap_err().is_invalid_input(),
            "{bad}"
        );
        assert!(store
            .save(bad, 1, b"x")
            .await
            .unwrap_err()
            .is_invalid_input());
    }

    // Leases: one holder; only the holder renews or releases.
    let lease = store.acquire("s1", TTL).await.unwrap();
    let err = store.acquire("s1", TTL).await.unwrap_err();
    assert!(err.is_lease_held(), "{what}: {err}");
    assert!(store.renew(&lease, TTL).await.unwrap());
    let forged = mummer::store::Lease {
        id: "s1".into(),
        token: "not-the-token".into(),
    };
    assert!(!store.renew(&forged, TTL).await.unwrap());
    assert!(!store.release(&forged).await.unwrap());
    assert!(store.acquire("s1", TTL).await.unwrap_err().is_lease_held());
    assert!(store.release(&lease).await.unwrap());
    assert!(!store.release(&lease).await.unwrap(), "released once");
    assert!(
        !store.renew(&lease, TTL).await.unwrap(),
        "a released lease is gone"
    );
    let again = store.acquire("s1", TTL).await.unwrap();
    assert_ne!(again.token, lease.token);
    assert!(store.release(&again).await.unwrap());
}

#[tokio::test]
async fn file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(Arc::new(FileStore::open(dir.path()).unwrap())).await;
    // Two stores on one directory (two processes on one machine) share the leases.
    let a = FileStore::open(dir.path()).unwrap();
    let b = FileStore::open(dir.path()).unwrap();
    let lease = a.acquire("shared", TTL).await.unwrap();
    assert!(b.acquire("shared", TTL).await.unwrap_err().is_lease_held());
    a.release(&lease).await.unwrap();
    b.acquire("shared", TTL).await.unwrap();
}

/// A lease taken on a session that is never saved (a checkout of an id that is not
/// there, a creation that failed) leaves no lease file behind, so callers cannot fill
/// the directory by asking for ids; a saved session's lease file stays, and a lease
/// taken right after the removal works.
#[tokio::test]
async fn file_leases_on_unsaved_sessions_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    };
    for i in 0..50 {
        let lease = store.acquire(&format!("ghost-{i}"), TTL).await.unwrap();
        assert!(store.release(&lease).await.unwrap());
    }
    assert_eq!(names(), Vec::<String>::new(), "no lease files left");

    let lease = store.acquire("kept", TTL).await.unwrap();
    store.save("kept", 1, b"state").await.unwrap();
    store.release(&lease).await.unwrap();
    assert_eq!(names(), ["kept.lease", "kept.session"]);

    // Held by one store, refused to another; released (file removed), then the
    // other takes it, and the first is refused in turn.
    let other = FileStore::open(dir.path()).unwrap();
    let first = store.acquire("ghost", TTL).await.unwrap();
    assert!(other
        .acquire("ghost", TTL)
        .await
        .unwrap_err()
        .is_lease_held());
    store.release(&first).await.unwrap();
    let second = other.acquire("ghost", TTL).await.unwrap();
    assert!(store
        .acquire("ghost", TTL)
        .await
        .unwrap_err()
        .is_lease_held());
    other.release(&second).await.unwrap();
}

#[tokio::test]
async fn redis_store_keeps_the_contract() {
    let redis = RedisServer::start();
    contract(Arc::new(
        RedisStore::open(&redis.url(), "contract").unwrap(),
    ))
    .await;
    // Namespaces do not see each other.
    let other = RedisStore::open(&redis.url(), "other").unwrap();
    assert!(other.list().await.unwrap().is_empty());
    assert_eq!(other.load("s1").await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_redis_lease_can_be_taken_and_the_old_holder_cannot_touch_it() {
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "leases").unwrap();
    let old = store
        .acquire("s", Duration::from_millis(200))
        .await
        .unwrap();
    assert!(store.acquire("s", TTL).await.unwrap_err().is_lease_held());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let new = store.acquire("s", TTL).await.unwrap();
    assert!(!store.renew(&old, TTL).await.unwrap());
    assert!(!store.release(&old).await.unwrap());
    assert!(
        store.acquire("s", TTL).await.unwrap_err().is_lease_held(),
        "still the new holder's"
    );
    assert!(store.release(&new).await.unwrap());
    // A lease in Redis carries its TTL.
    let _held = store.acquire("t", Duration::from_secs(60)).await.unwrap();
    let pttl: i64 = redis.cli(&["PTTL", "leases:lease:t"]).parse().unwrap();
    assert!((50_000..=60_000).contains(&pttl), "{pttl}");
}

#[tokio::test]
async fn corrupt_and_foreign_values_are_reported_with_their_key() {
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "ns").unwrap();
    store.save("good", 1, b"ok").await.unwrap();
    redis.cli(&["SET", "ns:session:foreign", "a plain string"]);
    redis.cli(&["HSET", "ns:session:partial", "data", "no version"]);
    for id in ["foreign", "partial"] {
        let err = store.load(id).await.unwrap_err();
        assert!(err.is_snapshot(), "{err}");
        assert!(
            err.to_string().contains(&format!("ns:session:{id}")),
            "{err}"
        );
    }
    let err = store.save("foreign", 1, b"x").await.unwrap_err();
    assert!(
        err.is_snapshot(),
        "a foreign value is not overwritten: {err}"
    );
    assert_eq!(redis.cli(&["GET", "ns:session:foreign"]), "a plain string");
    // Listing still works and the good session is intact.
    let mut ids = store.list().await.unwrap();
    ids.sort();
    assert_eq!(ids, ["foreign", "good", "partial"]);
    assert_eq!(store.load("good").await.unwrap().unwrap().bytes, b"ok");

    let dir = tempfile::tempdir().unwrap();
    let files = FileStore::open(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("junk.session"),
        b"\x00\x01 not a store file",
    )
    .unwrap();
    std::fs::write(dir.path().join("not an id!.session"), b"x").unwrap();
    let err = files.load("junk").await.unwrap_err();
    assert!(
        err.is_snapshot() && err.to_string().contains("junk.session"),
        "{err}"
    );
    assert_eq!(
        files.list().await.unwrap(),
        ["junk"],
        "bad names are skipped"
    );
    files.save("junk", 1, b"replaced").await.unwrap();
    assert_eq!(
        files.load("junk").await.unwrap().unwrap().bytes,
        b"replaced"
    );
}

#[tokio::test]
async fn redis_down_fails_fast_and_the_store_works_again_when_it_is_back() {
    let mut redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "restart").unwrap();
    store.save("s", 1, b"before").await.unwrap();
    redis.down();
    let started = Instant::now();
    let err = store.save("s", 2, b"during").await.unwrap_err();
    assert!(err.is_store_unavailable(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", redis.port)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(store.load("s").await.unwrap_err().is_store_unavailable());
    redis.up();
    // The connection manager reconnects; the first call may still see the old socket.
    let mut tries = 0;
    loop {
        tries += 1;
        match store.save("s", 2, b"after").await {
            Ok(()) => break,
            Err(e) if e.is_store_unavailable() && tries < 20 => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    let got = store.load("s").await.unwrap().unwrap();
    assert_eq!((got.version, got.bytes.as_slice()), (2, &b"after"[..]));

    // A store made while Redis is down works once it is up.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let early = RedisStore::open(&format!("redis://127.0.0.1:{port}/0"), "early").unwrap();
    assert!(early.list().await.unwrap_err().is_store_unavailable());
}

/// Run as a child process by the test below: takes a lease, says so, and waits to be
/// killed.
#[test]
fn file_lease_holder_child() {
    let Ok(dir) = std::env::var("MUMMER_TEST_LEASE_DIR") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = FileStore::open(&dir).unwrap();
        let _lease = store.acquire("owned", TTL).await.unwrap();
        println!("HELD");
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

#[tokio::test]
async fn a_file_lease_is_freed_when_its_holder_is_killed() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "file_lease_holder_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("MUMMER_TEST_LEASE_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.map(|l| l.contains("HELD")).unwrap_or(false)));
    let store = FileStore::open(dir.path()).unwrap();
    let err = store.acquire("owned", TTL).await.unwrap_err();
    assert!(err.is_lease_held(), "{err}");
    assert!(
        err.to_string().contains(&child.id().to_string()),
        "names the holder: {err}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    store.acquire("owned", TTL).await.unwrap();
}
