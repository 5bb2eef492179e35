//! A minimal DevTools protocol client: starts headless Chromium with
//! `--remote-debugging-port=0`, connects to the WebSocket it announces, and sends
//! commands (to the browser, or to one page's flattened session).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::chromium::Browser;

/// A DevTools connection to a browser this test started.
pub struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Cdp {
    /// Starts Chromium with `args` (see `chromium::base_args`) plus a DevTools port,
    /// and connects to it.
    pub async fn launch(mut args: Vec<String>) -> (Browser, Cdp) {
        args.extend([
            "--remote-debugging-port=0".to_string(),
            "about:blank".to_string(),
        ]);
        let mut browser = Browser::start(&args, Stdio::piped());
        let stderr = browser.0.stderr.take().expect("stderr piped");
        let ws_url = tokio::task::spawn_blocking(move || {
            for line in BufReader::new(stderr).lines() {
                let line = line.ok()?;
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Some(url.trim().to_string());
                }
            }
            None
        })
        .await
        .expect("stderr reader")
        .expect("Chromium announced its DevTools endpoint");
        assert!(ws_url.starts_with("ws://127.0.0.1:"), "{ws_url}");
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("DevTools WebSocket");
        (browser, Cdp { ws, next_id: 0 })
    }

    /// Opens a blank page and returns its session id (for [`Cdp::call`]).
    pub async fn new_page(&mut self) -> String {
        let target = self
            .call("Target.createTarget", json!({"url": "about:blank"}), None)
            .await;
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
                None,
            )
            .await;
        attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string()
    }

    /// Sends `method` and waits (30 s at most) for its result; events in between are
    /// dropped.
    pub async fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("DevTools send");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("DevTools answered within 30 s")
                .expect("DevTools connection open")
                .expect("DevTools frame");
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    pub async fn eval(&mut self, expression: &str, session: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "userGesture": true}),
                Some(session),
            )
            .await;
        r["result"]["value"].clone()
    }
}
