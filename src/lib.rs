//! mummer: HTTP sessions that wear a real browser's TLS, HTTP/2 and header fingerprint.
//!
//! See `README.md` for the tour and `docs/architecture.md` for where each concern lives.
#![warn(missing_docs)]

pub mod api;
pub mod audit;
pub mod client;
pub mod cookies;
mod decode;
pub mod destination;
pub mod engine;
pub mod error;
pub mod files;
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

pub use client::{Client, ClientBuilder, HttpVersionPref, RequestBuilder, Response, Timings};
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
pub use session::{Session, SessionBuilder, SessionSnapshot, SessionStats, SnapshotKey};
