//! mummer-actors: supervision, reaping, retries, circuit breakers, dead letters and
//! events for browser sessions, over a small trait ([`SessionCore`]) that knows nothing
//! of HTTP or TLS.
//!
//! - [`policy`]: retry classification and backoff (pure);
//! - [`breaker`]: the circuit breaker state machine (pure);
//! - [`session_actor`]: one actor per session, running its requests concurrently;
//! - [`supervisor`]: the registry (create, get, close, list, reap, limits, shutdown);
//! - [`registry`]: the supervisor's sharded session table, walked in steps;
//! - [`dispatch`]: the retry, breaker and rate-limit actor in front of the sessions;
//! - [`rate`]: per-host and per-session rate limits (`governor`);
//! - [`throttle`]: the adaptive per-host slow-down on 429 and `Retry-After` pauses (pure);
//! - [`system`]: the actix system on its own threads, usable from any tokio runtime;
//! - [`events`]: what the engine reports.
#![warn(missing_docs)]

pub mod breaker;
pub mod core;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod policy;
pub mod rate;
pub mod registry;
pub mod session_actor;
pub mod supervisor;
pub mod system;
pub mod throttle;

pub use crate::core::{BoxFuture, SessionCore};
pub use crate::dispatch::HostScope;
pub use crate::error::ActorError;
pub use crate::events::{CloseReason, EngineEvent};
pub use crate::system::{ActorSystem, RequestSite, SessionRef, SystemConfig};
