//! mummer: HTTP sessions that wear a real browser's TLS, HTTP/2 and header fingerprint.
//!
//! See `README.md` for the tour and `docs/architecture.md` for where each concern lives.
#![warn(missing_docs)]

pub mod error;
pub mod profile;
pub mod tls;

pub use error::{Error, Result};
pub use profile::{Profile, RequestKind};
