//! wreq 6 with its Chrome emulation as a peer of the side-by-side benchmark: the
//! protocol (modes, what is measured, the output line) is `benches/peers/protocol.rs`.

#[path = "../../protocol.rs"]
mod protocol;

use std::alloc::System;
use std::sync::Arc;

use cap::Cap;

/// Counts live heap bytes, as every peer does.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

struct Wreq;

impl protocol::Peer for Wreq {
    type Client = wreq::Client;

    async fn make(&self) -> Result<wreq::Client, String> {
        wreq::Client::builder()
            .emulation(wreq_util::Emulation::Chrome149)
            // The benchmark server's certificate is self-signed, as for every peer.
            .tls_cert_verification(false)
            .build()
            .map_err(|e| format!("wreq client: {e}"))
    }

    async fn get(client: &wreq::Client, url: &str) -> Result<usize, String> {
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("wreq request: {e}"))?;
        if response.version() != wreq::Version::HTTP_2 {
            return Err(format!("wreq spoke {:?}, not HTTP/2", response.version()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("wreq body: {e}"))?;
        Ok(body.len())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let outcome = protocol::Job::from_args(&args).and_then(|job| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?
            .block_on(protocol::run(Arc::new(Wreq), job, || ALLOCATOR.allocated()))
    });
    match outcome {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("wreq-peer: {e}");
            std::process::exit(1);
        }
    }
}
