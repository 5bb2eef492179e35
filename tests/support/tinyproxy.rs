//! Debian's `tinyproxy` (an HTTP CONNECT proxy) for tests: one process per instance on
//! a free loopback port, sending its outgoing traffic from its own loopback address
//! (`Bind 127.0.0.N`) so a test server can tell the exits apart. Stopped on drop.

#![allow(dead_code)]

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};

use super::{free_port, wait_listening};

pub struct Tinyproxy {
    pub port: u16,
    pub exit: IpAddr,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// Starts one sending from `exit` (a 127.0.0.0/8 address).
    pub fn start(exit: &str) -> Tinyproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nBind {exit}\nTimeout 30\nMaxClients 200\nAllow 127.0.0.1\nLogLevel Critical\nLogFile \"{}\"\nDisableViaHeader Yes\n",
                dir.path().join("log").display()
            ),
        )
        .expect("config");
        let child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy is installed (scripts/setup.sh)");
        wait_listening(port, || "tinyproxy did not listen within 10 s".into());
        Tinyproxy {
            port,
            exit: exit.parse().expect("exit address"),
            child: Some(child),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process (by its PID) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        self.kill();
    }
}
