//! mummer: HTTP sessions that wear a real browser's TLS, HTTP/2 and header fingerprint.
//!
//! A [`Profile`] is a browser as a server sees it (Chromium 156 and Firefox ESR 153 are
//! built in): its TLS ClientHello on BoringSSL, its HTTP/2 settings and priorities, its
//! header order. Three layers use it, each on top of the last:
//!
//! - [`Client`]: one exchange at a time, pooled connections, no state (what
//!   `mummer fetch` is).
//! - [`Session`]: a client with a cookie jar, a conditional-request cache, redirects
//!   followed as the browser would, counters, and snapshots that survive restarts.
//! - [`Engine`]: many sessions as actors, with retries, circuit breakers, rate
//!   limits, robots.txt, proxy pools, a session store and an event stream.
//!
//! ```no_run
//! # async fn tour() -> mummer::Result<()> {
//! use mummer::{Client, Engine, Profile, Session, SessionConfig};
//!
//! // One exchange.
//! let client = Client::builder(Profile::named("chrome-156-linux")?).build()?;
//! let page = client.get("https://shop.example/").send().await?;
//! println!("{} {}", page.status(), page.text().len());
//!
//! // A session keeps its cookies between requests.
//! let session = Session::builder(Profile::named("firefox-153-linux")?).build()?;
//! session.get("https://shop.example/login").send().await?;
//!
//! // An engine runs many, with retries and breakers in front of them.
//! let engine = Engine::builder().max_sessions(1000).start()?;
//! let id = engine.create_session(SessionConfig::profile("chrome-latest")).await?;
//! let answer = engine.session(&id).await?.get("https://shop.example/").send().await?;
//! # let _ = answer;
//! engine.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Requests and bodies
//!
//! Every layer sends the same [`Request`] (method, URL, headers, [`Body`], kind,
//! [`RequestOptions`]): the builders (`client.get(url)`, `session.post(url)`,
//! `engine_session.request(method, url)`) put one together and their `send` hands it
//! to `Client::execute`, `Session::execute` or the engine's retry actor. A body is
//! bytes (sent again as often as a 307/308 or a retry needs) or [`Body::wrap_stream`]
//! (read once, so never retried). A response is buffered up to the client's limit by
//! `send`; `send_streaming` returns a [`StreamingResponse`] at the head instead, whose
//! [`BodyStream`] yields the decoded body in bounded chunks, with no total limit, and
//! keeps the session busy (never reaped) until it ends.
//!
//! ```no_run
//! # async fn download(session: mummer::Session) -> mummer::Result<()> {
//! let mut answer = session.get("https://cdn.example/dump.jsonl.gz").send_streaming().await?;
//! let mut total = 0;
//! while let Some(chunk) = answer.chunk().await? {
//!     total += chunk.len(); // decoded, at most mummer::STREAM_CHUNK bytes at a time
//! }
//! # let _ = total;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | (default) | transport, sessions, the engine, the file session store |
//! | `redis` | the Redis session store, shared rate limits, TLS tickets, audit stream and dead letters ([`store`]) |
//! | `api` | the HTTP/JSON API and forward proxy (`mummer::api`, what `mummer serve` runs) |
//! | `cli` | the `mummer` command and `mummer::flags` (implies `api` and `redis`) |
//! | `full` | all of the above |
//!
//! `README.md` is the user's tour; `docs/architecture.md` says where each concern
//! lives.
#![warn(missing_docs)]

pub mod alt_svc;
#[cfg(feature = "api")]
pub mod api;
pub mod audit;
mod body;
pub mod client;
pub mod cookies;
mod decode;
pub mod destination;
pub mod engine;
pub mod error;
pub mod files;
#[cfg(feature = "cli")]
pub mod flags;
mod fs;
#[doc(hidden)]
pub mod fuzzing;
mod h1;
mod h2;
mod h3;
pub mod inspect;
mod json_int;
pub mod net;
pub mod page;
pub mod profile;
pub mod proxies;
mod proxy_syntax;
pub mod quic;
mod read_ahead;
mod request;
pub mod robots;
pub mod session;
pub mod store;
mod stream_priority;
pub mod tenant;
pub mod tls;

pub use body::{Body, BodyStream, STREAM_CHUNK};
pub use client::{
    Client, ClientBuilder, ClientRequest, HttpVersionPref, Response, StreamingResponse, Timings,
};
pub use decode::decode_body;
pub use engine::{
    BlockCheck, Detected, Engine, EngineBuilder, EngineSession, RequestSite, SessionConfig,
    ThrottleConfig,
};
pub use error::{Error, Result};
/// Rate limits (per host, per session, shared): [`rate::Rate`], [`rate::SharedRateLimit`].
pub use mummer_actors::rate;
// The engine's configuration and event types, from the actor crate it runs on, so a
// user of the engine needs no other crate.
pub use mummer_actors::breaker::BreakerConfig;
pub use mummer_actors::dispatch::DeadLetter;
pub use mummer_actors::policy::{parse_retry_after, RetryPolicy};
pub use mummer_actors::rate::Rate;
pub use mummer_actors::{CloseReason, EngineEvent};
pub use profile::{Profile, RequestKind};
pub use request::{Request, RequestBuilder, RequestOptions, RequestPriority, SessionTarget};
pub use session::{Session, SessionBuilder, SessionSnapshot, SessionStats, SnapshotKey};
