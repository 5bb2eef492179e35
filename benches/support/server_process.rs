//! The benchmarks' HTTPS server, run in a child process (this benchmark binary executed
//! again with an environment variable) so the CPU time a benchmark reads is the
//! client's alone. It answers every request with a fixed body until its stdin closes
//! (with an `ETag` under `/cached/`).

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;

use crate::https;

const SERVER_ROLE: &str = "MUMMER_BENCH_SERVER_BODY";

/// A running server process; dropping it stops the server.
pub struct ServerProcess {
    /// The port on 127.0.0.1.
    pub port: u16,
    child: Child,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin tells the server to exit.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// When this process is the server child, serves until stdin closes and returns true.
pub fn serve_if_child() -> bool {
    let Ok(body) = std::env::var(SERVER_ROLE) else {
        return false;
    };
    let body: usize = body.parse().unwrap_or(1024);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let payload = Bytes::from(vec![b'x'; body]);
        let server = https::HttpsServer::start_with_alpn(
            &[b"h2"],
            Arc::new(move |seen: &https::SeenRequest| {
                let reply = https::Reply::ok(payload.clone()).header("content-type", "text/plain");
                // Paths under /cached/ carry a validator, so a session keeps an entry
                // for each (the engine bench fills a cache this way).
                if seen.path().starts_with("/cached/") {
                    reply.header("etag", "\"v1\"")
                } else {
                    reply
                }
            }),
            false,
        )
        .await;
        println!("{}", server.addr.port());
        let _ = std::io::stdout().flush();
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
        })
        .await;
        drop(server);
    });
    true
}

/// Starts the server child answering `body`-byte bodies.
pub fn spawn(body: usize) -> ServerProcess {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .env(SERVER_ROLE, body.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("server stdout"))
        .read_line(&mut line)
        .expect("server announces its port");
    let port: u16 = line.trim().parse().expect("a port number");
    ServerProcess { port, child }
}
