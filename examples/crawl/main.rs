//! A breadth-first crawler on the mummer engine: N sessions share one frontier, each
//! page is fetched through the engine (retries, breakers, robots.txt, rate limits), links
//! on the same site are followed.
//!
//! No page is lost silently: a page that got no answer for now (refused, timed out,
//! breaker open, robots.txt unavailable, throttled) goes back to the frontier with a
//! not-before time and is tried again (`--page-tries`); one that failed for good is
//! listed with its cause. The summary lists, per reason, the pages not fetched, and the
//! process exits 2 when pages were left unfetched for transient reasons or the start URL
//! failed (the last line of stderr says why). Rules in `outcome.rs`.
//!
//! ```text
//! cargo run --features cli --example crawl -- --start https://shop.test:PORT/ --resolve shop.test:PORT:127.0.0.1 \
//!     --cacert ca.pem --sessions 4 --max-pages 50 --same-site --out pages.jsonl --summary summary.json
//! ```
//!
//! With `--store redis://HOST:PORT/DB`, several workers (processes, machines) split one
//! crawl: the frontier lives in Redis (`frontier.rs`), sessions are saved there under
//! leases and restored by the next run, and `--shared-rps` keeps all workers under one
//! per-host budget. With `--store file:DIR` the sessions and the frontier persist on the
//! local disk, shared by the worker processes of one machine.

mod frontier;
mod outcome;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use mummer::cookies::site_of;
use mummer::net::ResolveOverride;
use mummer::store::{open_store, RedisRateLimit, RedisStore, RedisTickets};
use mummer::Rate;
use mummer::RetryPolicy;
use mummer::{Engine, SessionConfig};
use url::Url;

use crate::frontier::{Frontier, Next};
use crate::outcome::{PageOutcome, PageTries, Report};

/// How often in a row (without a page fetched in between) one crawl task replaces a
/// lost session before it stops.
const MAX_REPLACEMENTS: usize = 8;

/// How every session's transport is set up (resolve overrides, CA, timeout).
type Transport = Arc<dyn Fn(mummer::ClientBuilder) -> mummer::ClientBuilder + Send + Sync>;

/// Opens the crawl's sessions: at the start, and in place of one that was lost.
#[derive(Clone)]
struct SessionFactory {
    engine: Engine,
    profile: String,
    tenant: String,
    /// The start URL's host, which proxy routes may match.
    target: Option<String>,
    transport: Transport,
    /// Save each new session at once (with a store), so a crash loses nothing.
    save: bool,
}

impl SessionFactory {
    async fn open(&self) -> mummer::Result<String> {
        let transport = self.transport.clone();
        let mut config = SessionConfig::profile(&self.profile)
            .transport(move |b| transport(b))
            .tenant(self.tenant.clone());
        if let Some(host) = &self.target {
            config = config.target(host);
        }
        let id = self.engine.create_session(config).await?;
        if self.save {
            if let Err(e) = self.engine.save_session(&id).await {
                eprintln!("session {id} not saved yet: {e}");
            }
        }
        Ok(id)
    }

    async fn open_handle(&self) -> mummer::Result<mummer::EngineSession> {
        let id = self.open().await?;
        self.engine.session(&id).await
    }
}

#[derive(Parser)]
#[command(about = "Breadth-first crawl with mummer sessions")]
struct Args {
    /// Where to start.
    #[arg(long)]
    start: String,
    /// Sessions crawling in parallel.
    #[arg(long, default_value_t = 4)]
    sessions: usize,
    /// Stop after this many pages.
    #[arg(long = "max-pages", default_value_t = 100)]
    max_pages: usize,
    /// Follow links on the start URL's site only (registrable domain).
    #[arg(long = "same-site")]
    same_site: bool,
    /// At most this many requests per second to each host.
    #[arg(long = "rps-per-host", value_parser = mummer::flags::rate)]
    rps_per_host: Option<f64>,
    /// Profile name or file.
    #[arg(long, default_value = "chrome-latest")]
    profile: String,
    /// HOST:PORT:ADDR override (repeatable).
    #[arg(long)]
    resolve: Vec<String>,
    /// Trust this CA bundle (PEM).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Skip certificate verification.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Do not fetch or obey robots.txt.
    #[arg(long = "no-robots")]
    no_robots: bool,
    /// One JSON line per page: url, status, session, attempts, bytes, elapsed_ms.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The engine's final stats as JSON.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Keep sessions (and, with Redis, the frontier) in a store: file:DIR or
    /// redis://HOST:PORT/DB.
    #[arg(long)]
    store: Option<String>,
    /// Namespace of the store's keys (Redis).
    #[arg(long, default_value = "mummer")]
    namespace: String,
    /// This worker's name (default: crawl-PID); a restarted worker with the same name
    /// takes back what it was fetching.
    #[arg(long)]
    worker: Option<String>,
    /// Session lease time to live in seconds (how soon a dead worker's sessions free up).
    #[arg(long = "lease-ttl", default_value = "30", value_parser = mummer::flags::seconds)]
    lease_ttl: Duration,
    /// Save sessions that were used this often, in seconds.
    #[arg(long = "save-interval", default_value = "30", value_parser = mummer::flags::seconds)]
    save_interval: Duration,
    /// A per-host budget, in requests per second, shared by every worker on the Redis
    /// store.
    #[arg(long = "shared-rps", value_parser = mummer::flags::rate)]
    shared_rps: Option<f64>,
    /// Send `x-mummer-worker: NAME` with every request (for test sites that check which
    /// worker uses which session; a real browser sends no such header).
    #[arg(long = "tag-requests")]
    tag_requests: bool,
    /// Proxy pools and routes (TOML or JSON, see docs/proxies.md): each session takes
    /// its exit from the pool the start URL's host and the tenant route to.
    #[arg(long)]
    proxies: Option<PathBuf>,
    /// The tenant the sessions belong to (routing rules may name it).
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Transport timeout of one attempt, in seconds.
    #[arg(long, default_value = "20", value_parser = mummer::flags::seconds)]
    timeout: Duration,
    /// How long one page's request may take, its retries and waits included, in
    /// seconds (keep it above `--timeout`). An open breaker whose probe is further away gives the page back
    /// to the frontier (not before the probe) instead of holding the session.
    #[arg(long, default_value = "45", value_parser = mummer::flags::seconds)]
    deadline: Duration,
    /// How long an open circuit breaker holds requests back before a probe, in seconds.
    #[arg(long = "breaker-cooldown", default_value = "10", value_parser = mummer::flags::seconds)]
    breaker_cooldown: Duration,
    /// A page whose body contains this text is a block page (a CAPTCHA served with
    /// 200): its session is quarantined and the page is fetched again by a fresh one.
    #[arg(long = "blocked-body")]
    blocked_body: Option<String>,
    /// Tries of one page that got no answer (each after the engine's own retries)
    /// before it is reported unfetched.
    #[arg(long = "page-tries", default_value_t = 4)]
    page_tries: u32,
}

/// Closes a lost `session` and goes on with a fresh one; false when this task must stop
/// (too many replacements in a row, or none could be opened).
async fn replace_session(
    sessions: &SessionFactory,
    session: &mut mummer::EngineSession,
    replaced: &mut usize,
    why: &str,
) -> bool {
    let old = session.id().to_string();
    let _ = sessions.engine.close_session(&old).await;
    *replaced += 1;
    if *replaced > MAX_REPLACEMENTS {
        eprintln!(
            "session {old} lost ({why}); {MAX_REPLACEMENTS} replaced in a row already, this task stops"
        );
        return false;
    }
    match sessions.open_handle().await {
        Ok(s) => {
            eprintln!("session {old} lost ({why}); going on with {}", s.id());
            *session = s;
            true
        }
        Err(e) => {
            eprintln!("session {old} lost ({why}) and no replacement: {e}");
            false
        }
    }
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `href="..."` targets of `<a>` tags, resolved against `base`, fragments dropped.
fn links(base: &Url, html: &str) -> Vec<Url> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("href=\"") {
        rest = &rest[i + 6..];
        let Some(end) = rest.find('"') else { break };
        if let Ok(mut u) = base.join(&rest[..end]) {
            u.set_fragment(None);
            if matches!(u.scheme(), "http" | "https") {
                out.push(u);
            }
        }
        rest = &rest[end..];
    }
    out
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let start = Url::parse(&args.start)?;
    let start_site = site_of(start.host_str().unwrap_or_default()).to_string();
    let resolve = args
        .resolve
        .iter()
        .map(|r| r.parse::<ResolveOverride>())
        .collect::<Result<Vec<_>, _>>()?;

    let worker = args
        .worker
        .clone()
        .unwrap_or_else(|| format!("crawl-{}", std::process::id()));
    let store = match &args.store {
        Some(url) => Some(open_store(url, &args.namespace)?),
        None => None,
    };
    let redis = match &args.store {
        Some(url) if url.starts_with("redis") => Some(RedisStore::open(url, &args.namespace)?),
        _ => None,
    };
    let (timeout, cooldown, deadline) = (args.timeout, args.breaker_cooldown, args.deadline);
    let mut builder = Engine::builder()
        .max_sessions(args.sessions.max(1))
        .breaker(mummer::BreakerConfig {
            cooldown,
            ..Default::default()
        })
        .retry(RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            deadline,
            ..RetryPolicy::default()
        })
        .respect_robots(if args.no_robots { None } else { Some("mummer") });
    if let Some(r) = args.rps_per_host {
        builder = builder.rate_limit_per_host(Rate::per_second(r));
    }
    if let Some(text) = args.blocked_body.clone().filter(|t| !t.is_empty()) {
        builder = builder.block_detector(move |check| {
            contains(check.body, text.as_bytes()).then_some(mummer::Detected::Blocked)
        });
    }
    if let Some(redis) = &redis {
        // Tickets shared through Redis: a session checked out elsewhere resumes TLS.
        builder = builder.ticket_backend(Arc::new(RedisTickets::new(redis)));
    }
    if let (Some(r), Some(redis)) = (args.shared_rps, &redis) {
        builder =
            builder.shared_rate_limit(Arc::new(RedisRateLimit::new(redis, Rate::per_second(r))?));
    }
    if let Some(store) = &store {
        builder = builder
            .store(store.clone())
            .lease_ttl(args.lease_ttl)
            .save_interval(args.save_interval);
    }
    if let Some(path) = &args.proxies {
        let file = mummer::proxies::ProxiesFile::load(path)?;
        builder = builder.proxies(mummer::proxies::ProxyRouter::from_file(&file)?);
    }
    let engine = builder.start()?;
    let transport: Transport = {
        let (resolve, ca, insecure) = (resolve.clone(), args.cacert.clone(), args.insecure);
        Arc::new(move |mut b: mummer::ClientBuilder| {
            for r in resolve.iter().cloned() {
                b = b.resolve(r);
            }
            if let Some(ca) = &ca {
                b = b.ca_file(ca.clone());
            }
            b.insecure(insecure).timeout(timeout)
        })
    };
    let sessions = SessionFactory {
        engine: engine.clone(),
        profile: args.profile.clone(),
        tenant: args.tenant.clone(),
        target: start.host_str().map(str::to_string),
        transport: transport.clone(),
        save: store.is_some(),
    };
    // Sessions saved by earlier runs (and not held by another worker) first.
    let mut ids = match &store {
        Some(_) => engine.restore_sessions(|b| transport(b)).await?,
        None => Vec::new(),
    };
    let restored = ids.len();
    while ids.len() < args.sessions.max(1) {
        ids.push(sessions.open().await?);
    }

    let file_dir = args
        .store
        .as_deref()
        .and_then(|url| url.strip_prefix("file:"))
        .map(|d| PathBuf::from(d.strip_prefix("//").unwrap_or(d)));
    let frontier = Arc::new(match (&redis, &file_dir) {
        (Some(redis), _) => {
            Frontier::shared(
                redis.connection(),
                redis.namespace(),
                &worker,
                &start,
                args.max_pages,
            )
            .await?
        }
        (None, Some(dir)) => Frontier::file(dir, &worker, &start, args.max_pages).await?,
        (None, None) => Frontier::local(start.clone(), args.max_pages),
    });
    let heartbeat = {
        let frontier = frontier.clone();
        tokio::spawn(async move { frontier.keep_alive().await })
    };
    let out: Arc<Mutex<Option<std::fs::File>>> = Arc::new(Mutex::new(match &args.out {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    }));
    let bar = std::io::stderr().is_terminal().then(|| {
        // Its length is what is known so far: done, queued and waiting.
        let b = indicatif::ProgressBar::new(1);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} pages {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let started = Instant::now();
    let mut workers = Vec::new();
    let tries = Arc::new(PageTries::new(args.page_tries));
    let report = Arc::new(Mutex::new(Report::default()));
    // A task that ran out of sessions stopped with pages possibly left behind.
    let stopped_early = Arc::new(AtomicBool::new(false));
    // On a terminal: what is done, queued and waiting, four times a second.
    let ticker = bar.clone().map(|b| {
        let (frontier, report) = (frontier.clone(), report.clone());
        tokio::spawn(async move {
            loop {
                let (queued, waiting) = frontier.counts().await;
                let line = {
                    let r = report.lock().unwrap_or_else(|p| p.into_inner());
                    format!(
                        "fetched {}, failed {}, unfetched {}, disallowed {}; queued {queued}, waiting {waiting}",
                        r.fetched,
                        r.failed.len(),
                        r.unfetched.len(),
                        r.disallowed.len()
                    )
                };
                b.set_length(b.position() + (queued + waiting) as u64);
                b.set_message(line);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    for id in ids.clone() {
        let (engine, frontier, out, bar) =
            (engine.clone(), frontier.clone(), out.clone(), bar.clone());
        let (sessions, tries, report) = (sessions.clone(), tries.clone(), report.clone());
        let stopped_early = stopped_early.clone();
        let (same_site, start_site, start) = (args.same_site, start_site.clone(), start.clone());
        let (tag, worker_name) = (args.tag_requests, worker.clone());
        workers.push(tokio::spawn(async move {
            let Ok(mut session) = engine.session(&id).await else {
                return;
            };
            let mut replaced = 0;
            loop {
                let url = match frontier.next().await {
                    Next::Done => break,
                    Next::Wait => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    Next::Url(u) => u,
                };
                let t = Instant::now();
                let mut request = session.get(url.as_str());
                if tag {
                    request = request.header("x-mummer-worker", &worker_name);
                }
                let mut result = request.send().await;
                // With proxy pools the session may have been rotated onto another exit:
                // carry on with its successor (and this URL) instead of stopping.
                if result.as_ref().is_err_and(|e| e.is_session_not_found()) {
                    if let Some(next) = engine.successor(session.id()) {
                        if let Ok(s) = engine.session(&next).await {
                            session = s;
                            result = session.get(url.as_str()).send().await;
                        }
                    }
                }
                let elapsed_ms = t.elapsed().as_millis();
                // Set when this answer cost the session: reported, then replaced.
                let mut replace_after = None;
                let verdict = match PageOutcome::of(&result, session.is_quarantined()) {
                    PageOutcome::Later { why, after } => match tries.another(&url, after) {
                        Some(wait) => {
                            frontier.give_back(&url, wait).await;
                            continue;
                        }
                        None => PageOutcome::Later { why, after },
                    },
                    PageOutcome::SessionLost(why) => {
                        // Lost (its lease went to another worker, say) or blocked: the
                        // page goes back and this task goes on with a fresh session.
                        // A block counts as a try of the page: a page refused to every
                        // identity ends as failed instead of burning sessions.
                        let blocked = session.is_quarantined();
                        if !blocked || tries.another(&url, None).is_some() {
                            frontier.give_back(&url, Duration::ZERO).await;
                            if !replace_session(&sessions, &mut session, &mut replaced, &why)
                                .await
                            {
                                stopped_early.store(true, Ordering::Relaxed);
                                break;
                            }
                            continue;
                        }
                        replace_after = Some(why.clone());
                        PageOutcome::Failed(format!("{why} (every session that asked)"))
                    }
                    other => other,
                };
                let (outcome, reason) = match &verdict {
                    PageOutcome::Fetched => ("fetched", None),
                    PageOutcome::Failed(why) => ("failed", Some(why.clone())),
                    PageOutcome::Disallowed => ("disallowed", None),
                    PageOutcome::Later { why, .. } => ("unfetched", Some(why.clone())),
                    PageOutcome::SessionLost(why) => ("unfetched", Some(why.clone())),
                };
                {
                    let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                    let status = result.as_ref().ok().map(|r| r.status().as_u16());
                    match &verdict {
                        PageOutcome::Fetched => r.fetched += 1,
                        PageOutcome::Failed(why) => {
                            r.failed.push((url.to_string(), status, why.clone()))
                        }
                        PageOutcome::Disallowed => r.disallowed.push(url.to_string()),
                        _ => r.unfetched.push((url.to_string(), reason.clone().unwrap_or_default())),
                    }
                    if url == start && verdict != PageOutcome::Fetched {
                        r.start_failed = Some(reason.clone().unwrap_or_else(|| outcome.to_string()));
                    }
                }
                let line = match &result {
                    Ok(r) => serde_json::json!({
                        "url": url.as_str(), "status": r.status().as_u16(), "session": session.id(),
                        "attempts": r.attempts(), "bytes": r.body().len(), "elapsed_ms": elapsed_ms,
                        "outcome": outcome, "reason": reason,
                    }),
                    Err(e) => serde_json::json!({
                        "url": url.as_str(), "status": null, "session": session.id(), "error": e.to_string(),
                        "elapsed_ms": elapsed_ms, "outcome": outcome, "reason": reason,
                    }),
                };
                let mut found = Vec::new();
                if let (Ok(r), PageOutcome::Fetched) = (&result, &verdict) {
                    let is_html = r
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|c| c.contains("html"));
                    if is_html {
                        let final_url = Url::parse(r.url()).unwrap_or(url.clone());
                        found = links(&final_url, &r.text());
                    }
                }
                found.retain(|l| {
                    !same_site || site_of(l.host_str().unwrap_or_default()) == start_site
                });
                frontier.finish(&url, found).await;
                match &bar {
                    Some(b) => b.inc(1),
                    None => eprintln!("{}", line),
                }
                if let Some(file) = out.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                if verdict == PageOutcome::Fetched {
                    replaced = 0;
                }
                if let Some(why) = replace_after {
                    if !replace_session(&sessions, &mut session, &mut replaced, &why).await {
                        stopped_early.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    for w in workers {
        if let Err(e) = w.await {
            eprintln!("a crawl task failed: {e}");
            stopped_early.store(true, Ordering::Relaxed);
        }
    }
    // Tasks that stopped for lack of sessions may have left pages behind: they are
    // not fetched, and the crawl is not complete.
    if stopped_early.load(Ordering::Relaxed) {
        let (queued, waiting) = frontier.counts().await;
        if queued + waiting > 0 {
            report.lock().unwrap_or_else(|p| p.into_inner()).abandoned = queued + waiting;
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(b) = &bar {
        // The bar ends at the true number of pages handled, not the budget.
        let r = report.lock().unwrap_or_else(|p| p.into_inner());
        b.set_message(format!(
            "fetched {}, failed {}, unfetched {}, disallowed {}",
            r.fetched,
            r.failed.len(),
            r.unfetched.len(),
            r.disallowed.len()
        ));
        b.set_length(b.position());
        b.finish();
    }
    let report = std::mem::take(&mut *report.lock().unwrap_or_else(|p| p.into_inner()));
    let sessions = engine.list_sessions().await?;
    let dead = engine.dead_letters(false).await;
    heartbeat.abort();
    let pages = frontier.taken().await;
    let summary = serde_json::json!({
        "worker": worker,
        "restored_sessions": restored,
        "pages": pages,
        "elapsed_ms": started.elapsed().as_millis(),
        "requests": sessions.iter().map(|s| s.request_count).sum::<u64>(),
        "cookies": sessions.iter().map(|s| s.cookie_count).sum::<usize>(),
        "connections_opened": sessions.iter().map(|s| s.transport.connections_opened).sum::<u64>(),
        "tls_resumed": sessions.iter().map(|s| s.transport.tls_resumed).sum::<u64>(),
        "dead_letters": dead,
        "sessions": sessions,
        "fetched": report.fetched,
        "failed": report.failed.iter().map(|(url, status, reason)| serde_json::json!({"url": url, "status": status, "reason": reason})).collect::<Vec<_>>(),
        "unfetched": report.unfetched.iter().map(|(url, reason)| serde_json::json!({"url": url, "reason": reason})).collect::<Vec<_>>(),
        "disallowed": report.disallowed,
        "abandoned": report.abandoned,
        "not_fetched_by_reason": report.by_reason(),
    });
    let text = serde_json::to_string_pretty(&summary)?;
    match &args.summary {
        Some(p) => std::fs::write(p, &text)?,
        None => println!("{text}"),
    }
    engine.shutdown().await;
    if let Some(why) = report.incomplete() {
        eprintln!("{why}");
        std::process::exit(2);
    }
    Ok(())
}
