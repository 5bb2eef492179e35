//! A client for the message API in tests: every call checks that the status it got is
//! one `docs/openapi.json` documents for that route, and that errors are problem+json.

#![allow(dead_code)]

use serde_json::Value;

pub struct ApiClient {
    pub base: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
    doc: Value,
}

/// One answer: status, content type and the body (JSON when it parses, else a string).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Answer {
    pub fn problem_field(&self) -> Option<&str> {
        self.json["field"].as_str()
    }
    pub fn detail(&self) -> &str {
        self.json["detail"].as_str().unwrap_or_default()
    }
}

pub fn openapi() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// The documented path template matching a concrete path (`/v1/sessions/abc/touch` ->
/// `/v1/sessions/{id}/touch`), preferring literal segments.
pub fn template_for(doc: &Value, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, String)> = None;
    for template in doc["paths"].as_object()?.keys() {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let ok = parts.iter().zip(&segments).all(|(t, s)| {
            if t.starts_with('{') {
                true
            } else {
                literal += 1;
                t == s
            }
        });
        if ok && best.as_ref().is_none_or(|(l, _)| literal > *l) {
            best = Some((literal, template.clone()));
        }
    }
    best.map(|(_, t)| t)
}

impl ApiClient {
    pub fn new(base: String) -> ApiClient {
        ApiClient {
            base,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            token: None,
            doc: openapi(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("the API answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = resp.bytes().await.expect("body").to_vec();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        let answer = Answer {
            status,
            content_type,
            headers,
            bytes,
            json,
        };
        self.check_documented(method.as_str(), path, &answer);
        answer
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body.to_string().into_bytes()))
            .await
    }
    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Answer {
        self.call("POST", path, Some(body.to_vec())).await
    }
    pub async fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None).await
    }

    fn check_documented(&self, method: &str, path: &str, answer: &Answer) {
        if answer.status >= 400 {
            assert!(
                answer.content_type.starts_with("application/problem+json"),
                "{method} {path}: error {} is not problem+json: {:?}",
                answer.status,
                answer.json
            );
            for key in ["type", "title", "status", "detail"] {
                assert!(
                    !answer.json[key].is_null(),
                    "problem without {key}: {:?}",
                    answer.json
                );
            }
        }
        let bare = path.split('?').next().unwrap_or(path);
        let Some(template) = template_for(&self.doc, bare) else {
            assert_eq!(answer.status, 404, "{path} is undocumented but answered");
            return;
        };
        let op = &self.doc["paths"][&template][method.to_ascii_lowercase()];
        if op.is_null() {
            assert_eq!(
                answer.status, 405,
                "{method} {template} is undocumented but answered"
            );
            return;
        }
        let status = answer.status.to_string();
        assert!(
            !op["responses"][&status].is_null(),
            "{method} {template} answered {status}, which the OpenAPI document does not list: {:?}",
            answer.json
        );
    }
}
