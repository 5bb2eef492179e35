//! Debian's `dante-server` (`danted`, a SOCKS5 proxy) for tests: one server per
//! instance on a free loopback port, sending its outgoing traffic from its own loopback
//! address (`external: 127.0.0.N`) so a test server can tell the exits apart. No
//! authentication; only loopback clients and loopback targets are let through. Stopped
//! on drop (SIGTERM to the PID it started, which takes its worker processes down).

#![allow(dead_code)]

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, wait_listening};

pub struct Dante {
    pub port: u16,
    pub exit: IpAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Dante {
    /// Starts one sending from `exit` (a 127.0.0.0/8 address).
    pub fn start(exit: &str) -> Dante {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("danted.conf");
        std::fs::write(
            &conf,
            format!(
                "logoutput: {log}\n\
                 internal: 127.0.0.1 port = {port}\n\
                 external: {exit}\n\
                 clientmethod: none\n\
                 socksmethod: none\n\
                 client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
                 socks pass {{ from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect }}\n\
                 socks block {{ from: 0.0.0.0/0 to: 0.0.0.0/0 }}\n",
                log = dir.path().join("danted.log").display()
            ),
        )
        .expect("config");
        let child = Command::new("danted")
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path().join("danted.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dante-server is installed (scripts/setup.sh)");
        wait_listening(port, || {
            format!(
                "danted did not listen within 10 s: {}",
                std::fs::read_to_string(dir.path().join("danted.log")).unwrap_or_default()
            )
        });
        Dante {
            port,
            exit: exit.parse().expect("exit address"),
            child: Some(child),
            dir,
        }
    }

    /// `socks5://` (names resolved here) or `socks5h://` (names resolved by the proxy).
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM to its PID) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dante {
    fn drop(&mut self) {
        self.kill();
    }
}
