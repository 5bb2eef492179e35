//! QUIC for HTTP/3: quinn's transport with a TLS handshake by BoringSSL, so the QUIC
//! ClientHello comes from the same profile as the TCP one.
//!
//! | file | owns |
//! |---|---|
//! | `keys.rs` | packet and header protection, Initial secrets, the Retry tag (RFC 9001) |
//! | `session.rs` | quinn's crypto session over BoringSSL's QUIC API |
//! | `params.rs` | the transport parameters on the wire, in the profile's order |
//! | `initial.rs` | reading a client's Initial packets (the inspector's view of a ClientHello) |
//! | `socks_udp.rs` | quinn's socket through a SOCKS5 UDP relay |

pub mod initial;
pub mod keys;
pub mod params;
pub mod session;
pub(crate) mod socks_udp;

pub use session::{BoringQuicSession, HandshakeData, QuicClientConfig, ResetKey};
