//! Session micro-benchmarks: the cost of the observability calls, of choosing a
//! request's cookies from a full jar, and of snapshot save and load.
//!
//! ```text
//! cargo bench --bench session
//! ```
//!
//! Run by `cargo test` (without `--bench`) it does a few iterations of each so the
//! benchmark cannot rot.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mummer::cookies::{CookieContext, CookieJar};
use mummer::session::{CacheConfig, Session, SnapshotKey};
use mummer::Profile;
use url::Url;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full { 1 } else { 1000 };
    println!(
        "session micro-benchmarks{}",
        if full {
            ""
        } else {
            " (smoke run; use `cargo bench --bench session`)"
        }
    );

    let session = Session::builder(Profile::named("chrome-latest").expect("profile"))
        .cache(CacheConfig {
            store_bodies: true,
            ..CacheConfig::default()
        })
        .build()
        .expect("session");
    fill(&session, 1000);

    report("stats()", 200_000 / scale, || {
        black_box(session.stats());
    });
    report("touch()", 2_000_000 / scale, || session.touch());
    report("idle_time()", 2_000_000 / scale, || {
        black_box(session.idle_time());
    });

    let mut jar = CookieJar::new();
    jar.import(&session.cookies()).expect("import");
    let url = Url::parse("https://www.site42.test/account/orders").expect("url");
    let ctx = CookieContext::same_site();
    let header = jar.header_for(&url, ctx).unwrap_or_default();
    report(
        &format!(
            "cookie header from 1000 cookies ({} match)",
            header.split("; ").count()
        ),
        100_000 / scale,
        || {
            black_box(jar.header_for(&url, ctx));
        },
    );

    let profile = Profile::named("chrome-latest").expect("profile");
    report(
        "build a session (TLS context shared)",
        2000 / scale.min(100),
        || {
            black_box(Session::builder(profile.clone()).build().expect("session"));
        },
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("plain.json");
    let enc = dir.path().join("enc.snap");
    let key = SnapshotKey::generate();
    report(
        "save (1000 cookies, plain JSON)",
        200 / scale.min(100),
        || {
            session.save(&plain, None).expect("save");
        },
    );
    report(
        "save (1000 cookies, encrypted)",
        200 / scale.min(100),
        || {
            session.save(&enc, Some(&key)).expect("save");
        },
    );
    report(
        "load (1000 cookies, plain JSON)",
        200 / scale.min(100),
        || {
            black_box(Session::load(&plain, None, |b| b).expect("load"));
        },
    );
    report(
        "load (1000 cookies, encrypted)",
        200 / scale.min(100),
        || {
            black_box(Session::load(&enc, Some(&key), |b| b).expect("load"));
        },
    );
    let size = std::fs::metadata(&plain).map(|m| m.len()).unwrap_or(0);
    println!("  snapshot size: {size} bytes plain");
}

/// 1000 cookies over 100 sites (10 per site, some domain-wide, various paths).
fn fill(session: &Session, n: usize) {
    for i in 0..n {
        let site = i % 100;
        let line = match i % 3 {
            0 => format!("c{i}=value-{i}; Domain=site{site}.test; Path=/; Max-Age=86400"),
            1 => format!("c{i}=value-{i}; Path=/account; Secure; Max-Age=86400"),
            _ => format!("c{i}=value-{i}; Path=/; SameSite=Lax; Max-Age=86400"),
        };
        session
            .set_cookie(&format!("https://www.site{site}.test/"), &line)
            .expect("cookie");
    }
}

fn report(name: &str, iterations: usize, mut f: impl FnMut()) {
    let iterations = iterations.max(1);
    f();
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let per = started.elapsed() / iterations as u32;
    println!("  {name:<48} {:>12}  ({iterations} iterations)", human(per));
}

fn human(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}
