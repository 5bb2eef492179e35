//! The fingerprint inspector behind `mummer inspect`: what a careful server sees.
//!
//! [`clienthello`] parses a ClientHello and computes JA3/JA3N/JA4/JA4_r,
//! [`h2frames`] reads the HTTP/2 preface and HEADERS, and [`server`] runs the loopback
//! HTTPS endpoint that reports both for every connection.

pub mod cert;
pub mod clienthello;
pub mod h2frames;
pub mod h3frames;
pub mod learn;
#[cfg(feature = "quic-server")]
mod quic;
pub mod server;
pub mod test_page;

pub use cert::SelfSignedCert;
pub use clienthello::ClientHello;
pub use learn::learn_profile;
pub use server::{ConnectionReport, Http2Report, Inspector, RESUME_PATH};
pub use test_page::PAGE_LOAD_PATH;
