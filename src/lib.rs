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
pub mod inspect;
mod json_int;
pub mod net;
pub mod profile;
pub mod proxies;
mod proxy_syntax;
mod request;
pub mod robots;
pub mod session;
pub mod store;
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
pub use request::{Request, RequestBuilder, RequestOptions, SessionTarget};
pub use session::{Session, SessionBuilder, SessionSnapshot, SessionStats, SnapshotKey};
