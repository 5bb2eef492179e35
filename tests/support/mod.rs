//! Shared helpers for the integration tests: loopback servers that stop on drop.

#![allow(dead_code)]

pub mod api;
pub mod cdp;
pub mod chaos;
pub mod chromium;
pub mod dante;
pub mod https;
pub mod redis;
pub mod tinyproxy;

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A plain-TCP server that answers every connection with `response` bytes after reading
/// the request head, then closes. Stops when dropped.
pub struct RawServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn raw_server(response: Vec<u8>) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(&response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    RawServer { addr, task }
}

/// A free loopback port for a server process a test starts (bound, then released).
/// (`redis.rs` keeps its own: the store benchmark includes it without this module.)
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits up to 10 s for a process this test started to listen on loopback `port`;
/// `why_not` says what went wrong (its log, say) when it never does.
pub fn wait_listening(port: u16, why_not: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{}", why_not());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A loopback port that nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// The crawl example binary. `scripts/test.sh` builds it (`cargo build --workspace
/// --examples`) before the tests: `cargo test` itself builds examples as test harnesses,
/// and building it from here would rebuild every dependency with other features.
pub fn crawl_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join("crawl");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --examples` first (scripts/test.sh does)",
        path.display()
    );
    path
}
