//! The crawl frontier: the URLs to visit and the URLs seen. In memory for one worker;
//! in Redis (`--store redis://...`) for N workers that split one crawl; in a file
//! (`--store file:DIR`, `DIR/crawl-frontier.json` under an OS file lock) for N worker
//! processes on one machine, with the same rules as Redis.
//!
//! Redis keys, under the store's namespace `NS`:
//!
//! ```text
//! NS:crawl:queue               list of URLs to visit
//! NS:crawl:seen                set of URLs ever queued (a URL is queued once)
//! NS:crawl:taken               pages handed out (stops at --max-pages)
//! NS:crawl:delayed             sorted set of URLs given back, scored by the Unix ms
//!                              before which they are not taken
//! NS:crawl:processing:<worker> URLs a worker is fetching now
//! NS:crawl:alive:<worker>      the worker's heartbeat (expires 3 s after it stops)
//! NS:crawl:workers             set of worker names
//! ```
//!
//! A URL moves from the queue to its worker's processing list atomically (Lua); when the
//! page is done its links are queued and then the URL leaves the list. A worker that
//! dies leaves its list behind: once its heartbeat expires, another worker moves those
//! URLs back to the queue. So each URL is fetched once, and at most once more if it was
//! in flight in a worker that died. A URL whose fetch failed for now is given back
//! (`give_back`) with a not-before time: out of the processing list, into the delayed
//! set, no longer counted toward the page budget; once its time has come it goes to the
//! end of the queue. The crawl is not over while a URL waits there.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use url::Url;

/// What the frontier has for a worker.
pub enum Next {
    /// Fetch this.
    Url(Url),
    /// Nothing now; others are still fetching (their pages may add links).
    Wait,
    /// The crawl is over.
    Done,
}

/// One crawl's frontier.
pub enum Frontier {
    /// This process only.
    Local(Mutex<Local>),
    /// Shared by every worker on one Redis.
    Redis(Shared),
    /// Shared by the worker processes of one machine.
    File(FileFrontier),
}

pub struct Local {
    queue: VecDeque<Url>,
    /// Given back, not before the time beside them.
    delayed: Vec<(std::time::Instant, Url)>,
    seen: HashSet<String>,
    taken: usize,
    in_progress: usize,
    max_pages: usize,
}

pub struct Shared {
    conn: ConnectionManager,
    ns: String,
    worker: String,
    max_pages: usize,
    take: Script,
    push: Script,
    give_back: Script,
}

/// Moves the delayed URLs whose time has come (`ARGV[2]`, Unix ms) to the queue, then
/// one URL from the queue to the worker's processing list, unless the page budget is
/// spent. Returns {'done'}, {'empty'}, {'waiting'} (only delayed URLs left) or
/// {'url', URL}.
const TAKE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[2])
for i, u in ipairs(due) do
  redis.call('ZREM', KEYS[4], u)
  redis.call('LPUSH', KEYS[1], u)
end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[1]) then return {'done'} end
local u = redis.call('RPOPLPUSH', KEYS[1], KEYS[2])
if not u then
  if redis.call('ZCARD', KEYS[4]) > 0 then return {'waiting'} end
  return {'empty'}
end
redis.call('INCR', KEYS[3])
return {'url', u}
";

/// Gives `ARGV[1]` back: out of the worker's processing list, into the delayed set
/// until `ARGV[2]` (Unix ms), and out of the pages taken. Returns 1, or 0 when it was
/// not being processed here.
const GIVE_BACK: &str = r"
if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('DECR', KEYS[3])
return 1
";

/// Queues every ARGV not seen before.
const PUSH: &str = r"
local n = 0
for i, u in ipairs(ARGV) do
  if redis.call('SADD', KEYS[2], u) == 1 then
    redis.call('LPUSH', KEYS[1], u)
    n = n + 1
  end
end
return n
";

impl Frontier {
    /// An in-memory frontier starting at `start`.
    pub fn local(start: Url, max_pages: usize) -> Frontier {
        Frontier::Local(Mutex::new(Local {
            seen: HashSet::from([start.to_string()]),
            queue: VecDeque::from([start]),
            delayed: Vec::new(),
            taken: 0,
            in_progress: 0,
            max_pages,
        }))
    }

    /// The shared frontier in namespace `ns`, seeded with `start` (once for all
    /// workers); URLs this `worker` was fetching when it last died go back to the queue.
    pub async fn shared(
        conn: ConnectionManager,
        ns: &str,
        worker: &str,
        start: &Url,
        max_pages: usize,
    ) -> redis::RedisResult<Frontier> {
        let shared = Shared {
            conn,
            ns: ns.to_string(),
            worker: worker.to_string(),
            max_pages,
            take: Script::new(TAKE),
            push: Script::new(PUSH),
            give_back: Script::new(GIVE_BACK),
        };
        shared.heartbeat().await?;
        let mut conn = shared.conn.clone();
        let _: i64 = redis::cmd("SADD")
            .arg(shared.key("workers"))
            .arg(worker)
            .query_async(&mut conn)
            .await?;
        shared.requeue(worker).await?;
        shared.push(&[start.to_string()]).await?;
        Ok(Frontier::Redis(shared))
    }

    /// The next URL for this worker.
    pub async fn next(&self) -> Next {
        match self {
            Frontier::Local(m) => {
                let mut f = m.lock().unwrap_or_else(|p| p.into_inner());
                let now = std::time::Instant::now();
                let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut f.delayed)
                    .into_iter()
                    .partition(|(at, _)| *at <= now);
                f.delayed = later;
                f.queue.extend(due.into_iter().map(|(_, u)| u));
                if f.taken >= f.max_pages {
                    Next::Done
                } else if let Some(u) = f.queue.pop_front() {
                    f.taken += 1;
                    f.in_progress += 1;
                    Next::Url(u)
                } else if f.in_progress == 0 && f.delayed.is_empty() {
                    Next::Done
                } else {
                    Next::Wait
                }
            }
            Frontier::Redis(s) => match s.next().await {
                Ok(next) => next,
                Err(e) => {
                    eprintln!("frontier: {e}; retrying");
                    Next::Wait
                }
            },
            Frontier::File(f) => f.next().await,
        }
    }

    /// `url` is done; queue the links it had.
    pub async fn finish(&self, url: &Url, found: Vec<Url>) {
        match self {
            Frontier::Local(m) => {
                let mut f = m.lock().unwrap_or_else(|p| p.into_inner());
                f.in_progress -= 1;
                for l in found {
                    if f.seen.insert(l.to_string()) {
                        f.queue.push_back(l);
                    }
                }
            }
            Frontier::Redis(s) => {
                let links: Vec<String> = found.iter().map(Url::to_string).collect();
                // Links first, then the URL leaves the processing list: a crash in
                // between fetches it once more, never loses its links.
                while let Err(e) = s.push(&links).await {
                    eprintln!("frontier: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let mut conn = s.conn.clone();
                let removed: redis::RedisResult<i64> = redis::cmd("LREM")
                    .arg(s.key(&format!("processing:{}", s.worker)))
                    .arg(1)
                    .arg(url.as_str())
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = removed {
                    eprintln!("frontier: {e}");
                }
            }
            Frontier::File(f) => f.finish(url, found).await,
        }
    }

    /// `url` was not fetched (its session was lost, or the site failed for now): it goes
    /// back, to be taken again (by this worker or another) not before `after` from
    /// now, and does not count toward `--max-pages`.
    pub async fn give_back(&self, url: &Url, after: Duration) {
        let not_before = unix_ms().saturating_add(after.as_millis() as u64);
        match self {
            Frontier::Local(m) => {
                let mut f = m.lock().unwrap_or_else(|p| p.into_inner());
                f.in_progress -= 1;
                f.taken -= 1;
                f.delayed
                    .push((std::time::Instant::now() + after, url.clone()));
            }
            Frontier::Redis(s) => {
                let mut call = s.give_back.key(s.key("delayed"));
                call.key(s.key(&format!("processing:{}", s.worker)))
                    .key(s.key("taken"))
                    .arg(url.as_str())
                    .arg(not_before);
                let mut conn = s.conn.clone();
                while let Err(e) = call.invoke_async::<i64>(&mut conn).await {
                    eprintln!("frontier: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Frontier::File(f) => {
                let url = url.to_string();
                f.retry(move |st, me| {
                    let list = st.processing.entry(me.to_string()).or_default();
                    if let Some(i) = list.iter().position(|u| *u == url) {
                        list.remove(i);
                        st.delayed.push((url.clone(), not_before));
                        st.taken = st.taken.saturating_sub(1);
                    }
                })
                .await;
            }
        }
    }

    /// URLs queued now and URLs waiting for their not-before time (every worker's).
    pub async fn counts(&self) -> (usize, usize) {
        match self {
            Frontier::Local(m) => {
                let f = m.lock().unwrap_or_else(|p| p.into_inner());
                (f.queue.len(), f.delayed.len())
            }
            Frontier::Redis(s) => {
                let mut conn = s.conn.clone();
                let counted: redis::RedisResult<(usize, usize)> = redis::pipe()
                    .cmd("LLEN")
                    .arg(s.key("queue"))
                    .cmd("ZCARD")
                    .arg(s.key("delayed"))
                    .query_async(&mut conn)
                    .await;
                counted.unwrap_or_default()
            }
            Frontier::File(f) => f
                .update(|st, _| (st.queue.len(), st.delayed.len()))
                .await
                .unwrap_or_default(),
        }
    }

    /// Pages handed out so far (by every worker).
    pub async fn taken(&self) -> usize {
        match self {
            Frontier::Local(m) => m.lock().unwrap_or_else(|p| p.into_inner()).taken,
            Frontier::Redis(s) => {
                let mut conn = s.conn.clone();
                redis::cmd("GET")
                    .arg(s.key("taken"))
                    .query_async::<Option<usize>>(&mut conn)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            }
            Frontier::File(f) => f.update(|st, _| st.taken).await.unwrap_or(0),
        }
    }

    /// Keeps this worker's heartbeat alive (Redis only); run it in its own task.
    pub async fn keep_alive(&self) {
        loop {
            match self {
                Frontier::Local(_) => return,
                Frontier::Redis(s) => {
                    if let Err(e) = s.heartbeat().await {
                        eprintln!("frontier heartbeat: {e}");
                    }
                }
                Frontier::File(f) => {
                    if let Err(e) = f.update(|_, _| ()).await {
                        eprintln!("frontier heartbeat: {e}");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }
}

impl Shared {
    fn key(&self, rest: &str) -> String {
        format!("{}:crawl:{rest}", self.ns)
    }

    async fn heartbeat(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(&format!("alive:{}", self.worker)))
            .arg(std::process::id())
            .arg("PX")
            .arg(3000)
            .query_async(&mut conn)
            .await
    }

    async fn push(&self, urls: &[String]) -> redis::RedisResult<i64> {
        if urls.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let mut call = self.push.key(self.key("queue"));
        call.key(self.key("seen"));
        for u in urls {
            call.arg(u);
        }
        call.invoke_async(&mut conn).await
    }

    /// Moves `worker`'s processing list back to the queue.
    async fn requeue(&self, worker: &str) -> redis::RedisResult<usize> {
        let mut conn = self.conn.clone();
        let mut moved = 0;
        loop {
            let u: Option<String> = redis::cmd("RPOPLPUSH")
                .arg(self.key(&format!("processing:{worker}")))
                .arg(self.key("queue"))
                .query_async(&mut conn)
                .await?;
            if u.is_none() {
                return Ok(moved);
            }
            moved += 1;
        }
    }

    async fn next(&self) -> redis::RedisResult<Next> {
        let mut conn = self.conn.clone();
        let got: Vec<String> = self
            .take
            .key(self.key("queue"))
            .key(self.key(&format!("processing:{}", self.worker)))
            .key(self.key("taken"))
            .key(self.key("delayed"))
            .arg(self.max_pages)
            .arg(unix_ms())
            .invoke_async(&mut conn)
            .await?;
        match got.first().map(String::as_str) {
            Some("url") => match got.get(1).and_then(|u| Url::parse(u).ok()) {
                Some(u) => Ok(Next::Url(u)),
                None => Ok(Next::Wait),
            },
            Some("done") => Ok(Next::Done),
            Some("waiting") => Ok(Next::Wait),
            _ => {
                // Empty queue: over when nobody is fetching; a dead worker's URLs go
                // back to the queue.
                let workers: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(self.key("workers"))
                    .query_async(&mut conn)
                    .await?;
                let mut busy = false;
                for w in workers {
                    let pending: usize = redis::cmd("LLEN")
                        .arg(self.key(&format!("processing:{w}")))
                        .query_async(&mut conn)
                        .await?;
                    if pending == 0 {
                        continue;
                    }
                    let alive: bool = redis::cmd("EXISTS")
                        .arg(self.key(&format!("alive:{w}")))
                        .query_async(&mut conn)
                        .await?;
                    if alive {
                        busy = true;
                    } else {
                        let moved = self.requeue(&w).await?;
                        eprintln!("frontier: worker {w} is gone; {moved} URL(s) it was fetching are queued again");
                        busy = true;
                    }
                }
                Ok(if busy { Next::Wait } else { Next::Done })
            }
        }
    }
}

/// How long a worker's heartbeat lasts in the file frontier.
const FILE_HEARTBEAT_MS: u64 = 3000;

/// The file frontier's state, the whole of `crawl-frontier.json`.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct FileState {
    queue: VecDeque<String>,
    /// Given back: URL and the Unix ms before which it is not taken.
    #[serde(default)]
    delayed: Vec<(String, u64)>,
    seen: HashSet<String>,
    taken: usize,
    /// URLs each worker is fetching.
    processing: std::collections::HashMap<String, Vec<String>>,
    /// Each worker's last heartbeat, Unix milliseconds.
    alive: std::collections::HashMap<String, u64>,
}

/// The frontier in one JSON file, read and rewritten under an exclusive lock for each
/// step: fine for one machine and crawls of thousands of pages (each step costs the
/// file's size), not for millions.
pub struct FileFrontier {
    path: std::path::PathBuf,
    lock: std::path::PathBuf,
    worker: String,
    max_pages: usize,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Frontier {
    /// The frontier in `dir`, seeded with `start` once; what this `worker` was fetching
    /// when it last died goes back to the queue.
    pub async fn file(
        dir: &std::path::Path,
        worker: &str,
        start: &Url,
        max_pages: usize,
    ) -> std::io::Result<Frontier> {
        let f = FileFrontier {
            path: dir.join("crawl-frontier.json"),
            lock: dir.join("crawl-frontier.lock"),
            worker: worker.to_string(),
            max_pages,
        };
        let start = start.to_string();
        f.update(move |st, me| {
            let mine = st.processing.remove(me).unwrap_or_default();
            st.queue.extend(mine);
            if st.seen.insert(start.clone()) {
                st.queue.push_back(start);
            }
        })
        .await?;
        Ok(Frontier::File(f))
    }
}

impl FileFrontier {
    /// Runs `step` on the state under the lock, refreshing this worker's heartbeat, and
    /// writes the state back atomically.
    async fn update<T: Send + 'static>(
        &self,
        step: impl FnOnce(&mut FileState, &str) -> T + Send + 'static,
    ) -> std::io::Result<T> {
        let (path, lock, worker) = (self.path.clone(), self.lock.clone(), self.worker.clone());
        tokio::task::spawn_blocking(move || {
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)?;
            lock.lock()?;
            let mut st: FileState = match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::default(),
                Err(e) => return Err(e),
            };
            st.alive.insert(worker.clone(), unix_ms());
            let out = step(&mut st, &worker);
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            std::fs::write(
                &tmp,
                serde_json::to_vec(&st).map_err(std::io::Error::other)?,
            )?;
            std::fs::rename(&tmp, &path)?;
            drop(lock);
            Ok(out)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn next(&self) -> Next {
        let max_pages = self.max_pages;
        let result = self
            .update(move |st, me| {
                let now = unix_ms();
                let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut st.delayed)
                    .into_iter()
                    .partition(|(_, at)| *at <= now);
                st.delayed = later;
                st.queue.extend(due.into_iter().map(|(u, _)| u));
                if st.taken >= max_pages {
                    return Next::Done;
                }
                if let Some(u) = st.queue.pop_front() {
                    st.taken += 1;
                    st.processing.entry(me.to_string()).or_default().push(u.clone());
                    return Url::parse(&u).map_or(Next::Wait, Next::Url);
                }
                // Empty queue: a dead worker's URLs go back; over when nobody fetches
                // and nothing waits for its time.
                let mut busy = !st.delayed.is_empty();
                let workers: Vec<String> = st.processing.keys().cloned().collect();
                for w in workers {
                    let alive = st
                        .alive
                        .get(&w)
                        .is_some_and(|t| now.saturating_sub(*t) < FILE_HEARTBEAT_MS);
                    let pending = st.processing.get(&w).map_or(0, Vec::len);
                    if pending == 0 {
                        continue;
                    }
                    busy = true;
                    if !alive {
                        let back = st.processing.remove(&w).unwrap_or_default();
                        eprintln!("frontier: worker {w} is gone; {} URL(s) it was fetching are queued again", back.len());
                        st.queue.extend(back);
                    }
                }
                if busy {
                    Next::Wait
                } else {
                    Next::Done
                }
            })
            .await;
        result.unwrap_or_else(|e| {
            eprintln!("frontier: {e}; retrying");
            Next::Wait
        })
    }

    async fn finish(&self, url: &Url, found: Vec<Url>) {
        let (url, found): (String, Vec<String>) =
            (url.to_string(), found.iter().map(Url::to_string).collect());
        self.retry(move |st, me| {
            for l in &found {
                if st.seen.insert(l.clone()) {
                    st.queue.push_back(l.clone());
                }
            }
            if let Some(list) = st.processing.get_mut(me) {
                if let Some(i) = list.iter().position(|u| *u == url) {
                    list.remove(i);
                }
            }
        })
        .await;
    }

    /// Runs `step` under the lock until the file can be read and written.
    async fn retry(&self, step: impl Fn(&mut FileState, &str) + Clone + Send + 'static) {
        while let Err(e) = self.update(step.clone()).await {
            eprintln!("frontier: {e}; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
