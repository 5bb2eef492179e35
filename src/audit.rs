//! The audit trail: session lifecycle events (created, proxy assigned, rotated,
//! quarantined, closed, with reasons and timestamps) appended to a JSON-lines file, one
//! entry per event, with retention by age and by size. [`AuditEntries`] turns events
//! into entries; [`AuditLog`] is the file; the Redis stream for many workers is
//! [`crate::store::redis_audit`], with the same entries.
//!
//! - Only lifecycle events are written; requests, cookies and headers never are. Proxy
//!   URLs arrive with their password masked.
//! - With a key, session ids and tenant ids are written as a keyed hash
//!   (HMAC-SHA256, 16 bytes, hex), so the trail links events of one session without
//!   naming it; the same key gives the same hash across restarts.
//! - Retention runs when the log is opened and every [`PURGE_EVERY`] entries: entries
//!   older than the age limit go, then the oldest until the file fits the size limit.
//!   The file is rewritten to a temporary file and renamed over the old one, so a crash
//!   mid-purge leaves one whole log.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use mummer_actors::EngineEvent;
use serde::Serialize;
use sha2::Sha256;

use crate::error::{Error, Result};

/// Entries written between two retention passes.
pub const PURGE_EVERY: u64 = 1000;

/// Where the trail goes and how long it is kept.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The JSON-lines file.
    pub path: PathBuf,
    /// Entries older than this are purged.
    pub max_age: Option<Duration>,
    /// The file is trimmed (oldest first) to at most this many bytes.
    pub max_bytes: Option<u64>,
    /// Key for hashing session and tenant ids; `None` writes them as they are.
    pub hash_key: Option<Vec<u8>>,
}

/// One line of the trail.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    /// Unix milliseconds.
    at: u64,
    event: &'a str,
    session: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_proxy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

struct Writer {
    file: std::fs::File,
    since_purge: u64,
}

/// An open audit trail.
pub struct AuditLog {
    config: AuditConfig,
    entries: AuditEntries,
    writer: Mutex<Writer>,
}

/// Turns engine events into audit entries (JSON objects), hashing ids when keyed.
#[derive(Clone)]
pub struct AuditEntries {
    hash_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for AuditEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditEntries")
            .field("hashed", &self.hash_key.is_some())
            .finish()
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.config.path)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn open_append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening the audit log {}", path.display()), e))
}

impl AuditLog {
    /// Opens (or creates) the trail and applies retention once.
    ///
    /// # Errors
    ///
    /// The file or its directory cannot be created or read.
    pub fn open(config: AuditConfig) -> Result<AuditLog> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let file = open_append(&config.path)?;
        let log = AuditLog {
            entries: AuditEntries::new(config.hash_key.clone()),
            config,
            writer: Mutex::new(Writer {
                file,
                since_purge: 0,
            }),
        };
        log.purge()?;
        Ok(log)
    }

    /// Appends `event` if it is a lifecycle event; returns whether it was written.
    ///
    /// # Errors
    ///
    /// The write failing (disk full, file removed from under it).
    pub fn record(&self, event: &EngineEvent) -> Result<bool> {
        let Some(mut line) = self.entries.entry(event)? else {
            return Ok(false);
        };
        line.push(b'\n');
        let purge = {
            let mut w = self
                .writer
                .lock()
                .map_err(|_| Error::invalid_input("the audit log lock is poisoned"))?;
            w.file.write_all(&line).map_err(|e| {
                Error::io(
                    format!("writing the audit log {}", self.config.path.display()),
                    e,
                )
            })?;
            w.since_purge += 1;
            w.since_purge >= PURGE_EVERY
        };
        if purge {
            self.purge()?;
        }
        Ok(true)
    }

    /// Applies retention now; returns how many entries were removed.
    ///
    /// # Errors
    ///
    /// The file cannot be read or rewritten (the old one is then left whole).
    pub fn purge(&self) -> Result<usize> {
        self.purge_now()
    }
}

impl AuditEntries {
    /// Entries with ids as they are (`None`) or as HMAC-SHA256 under `hash_key`.
    pub fn new(hash_key: Option<Vec<u8>>) -> AuditEntries {
        AuditEntries { hash_key }
    }

    fn hide(&self, id: &str) -> String {
        match &self.hash_key {
            None => id.to_owned(),
            Some(key) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                    return "[unhashable]".to_owned();
                };
                mac.update(id.as_bytes());
                format!("h:{}", hex::encode(&mac.finalize().into_bytes()[..16]))
            }
        }
    }

    /// The entry for `event` as one line of JSON (no newline), or `None` for an event
    /// that is not part of a session's lifecycle.
    ///
    /// # Errors
    ///
    /// Encoding failing (it does not in practice).
    pub fn entry(&self, event: &EngineEvent) -> Result<Option<Vec<u8>>> {
        let mut entry = Entry {
            at: now_ms(),
            event: "",
            session: String::new(),
            new_session: None,
            tenant: None,
            pool: None,
            proxy: None,
            new_proxy: None,
            reason: None,
        };
        match event {
            EngineEvent::SessionCreated { id } => {
                entry.event = "created";
                entry.session = self.hide(id);
            }
            EngineEvent::ProxyAssigned {
                id,
                tenant,
                pool,
                proxy,
            } => {
                entry.event = "proxy_assigned";
                entry.session = self.hide(id);
                entry.tenant = Some(self.hide(tenant));
                entry.pool = Some(pool);
                entry.proxy = Some(proxy);
            }
            EngineEvent::SessionRotated {
                old_id,
                new_id,
                old_proxy,
                new_proxy,
                reason,
            } => {
                entry.event = "rotated";
                entry.session = self.hide(old_id);
                entry.new_session = Some(self.hide(new_id));
                entry.proxy = Some(old_proxy);
                entry.new_proxy = Some(new_proxy);
                entry.reason = Some(reason.clone());
            }
            EngineEvent::Quarantined { id, reason } => {
                entry.event = "quarantined";
                entry.session = self.hide(id);
                entry.reason = Some(reason.clone());
            }
            EngineEvent::SessionClosed { id, reason } => {
                entry.event = "closed";
                entry.session = self.hide(id);
                entry.reason = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned));
            }
            _ => return Ok(None),
        }
        serde_json::to_vec(&entry)
            .map(Some)
            .map_err(|e| Error::invalid_input(format!("encoding an audit entry: {e}")))
    }
}

impl AuditLog {
    fn purge_now(&self) -> Result<usize> {
        let mut w = self
            .writer
            .lock()
            .map_err(|_| Error::invalid_input("the audit log lock is poisoned"))?;
        w.since_purge = 0;
        if self.config.max_age.is_none() && self.config.max_bytes.is_none() {
            return Ok(0);
        }
        let path = &self.config.path;
        let io = |what: &str, e| Error::io(format!("{what} the audit log {}", path.display()), e);
        let file = std::fs::File::open(path).map_err(|e| io("reading", e))?;
        let lines: Vec<String> = std::io::BufReader::new(file)
            .lines()
            .collect::<std::io::Result<_>>()
            .map_err(|e| io("reading", e))?;
        let oldest_kept = self
            .config
            .max_age
            .map(|age| now_ms().saturating_sub(age.as_millis() as u64));
        // An unparsable line (a torn write) has no age: it goes with the old ones.
        let at = |line: &str| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["at"].as_u64())
                .unwrap_or(0)
        };
        let mut kept: Vec<&String> = lines
            .iter()
            .filter(|l| oldest_kept.is_none_or(|min| at(l) >= min))
            .collect();
        if let Some(max) = self.config.max_bytes {
            let mut size: u64 = kept.iter().map(|l| l.len() as u64 + 1).sum();
            let mut first = 0;
            while size > max && first < kept.len() {
                size -= kept[first].len() as u64 + 1;
                first += 1;
            }
            kept.drain(..first);
        }
        let removed = lines.len() - kept.len();
        if removed == 0 {
            return Ok(0);
        }
        let tmp = path.with_extension("purge.tmp");
        {
            let mut out = std::fs::File::create(&tmp).map_err(|e| io("rewriting", e))?;
            for l in &kept {
                out.write_all(l.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|e| io("rewriting", e))?;
            }
            out.sync_all().map_err(|e| io("rewriting", e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| io("replacing", e))?;
        w.file = open_append(path)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mummer_actors::CloseReason;

    fn config(dir: &Path) -> AuditConfig {
        AuditConfig {
            path: dir.join("audit").join("trail.jsonl"),
            max_age: None,
            max_bytes: None,
            hash_key: None,
        }
    }

    #[test]
    fn lifecycle_events_are_written_once_and_ids_can_be_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config(dir.path());
        c.hash_key = Some(b"audit key".to_vec());
        let log = AuditLog::open(c.clone()).expect("open");
        let events = [
            EngineEvent::SessionCreated { id: "s1".into() },
            EngineEvent::ProxyAssigned {
                id: "s1".into(),
                tenant: "acme".into(),
                pool: "res".into(),
                proxy: "http://bob:***@127.0.0.2:3128".into(),
            },
            EngineEvent::SessionSaved {
                id: "s1".into(),
                version: 1,
            },
            EngineEvent::SessionClosed {
                id: "s1".into(),
                reason: CloseReason::Idle,
            },
        ];
        let written: Vec<bool> = events
            .iter()
            .map(|e| log.record(e).expect("write"))
            .collect();
        assert_eq!(written, [true, true, false, true]);
        let text = std::fs::read_to_string(&c.path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["event"], "created");
        assert_eq!(lines[2]["reason"], "idle");
        assert_eq!(
            lines[0]["session"], lines[2]["session"],
            "one session, one hash"
        );
        assert!(!text.contains("s1") && !text.contains("acme"), "{text}");
        assert!(lines[0]["session"]
            .as_str()
            .expect("hash")
            .starts_with("h:"));
        // Same key, same hash after a restart.
        drop(log);
        let again = AuditLog::open(c.clone()).expect("reopen");
        again.record(&events[0]).expect("write");
        let text = std::fs::read_to_string(&c.path).expect("read");
        let last: serde_json::Value =
            serde_json::from_str(text.lines().last().expect("line")).expect("json");
        assert_eq!(last["session"], lines[0]["session"]);
    }

    #[test]
    fn retention_purges_by_age_and_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        std::fs::create_dir_all(c.path.parent().expect("dir")).expect("mkdir");
        let old = now_ms() - 3_600_000;
        let mut seed = String::new();
        for i in 0..10 {
            seed.push_str(&format!(
                "{{\"at\":{old},\"event\":\"created\",\"session\":\"old{i}\"}}\n"
            ));
        }
        seed.push_str("{torn line\n");
        std::fs::write(&c.path, &seed).expect("seed");
        let log = AuditLog::open(AuditConfig {
            max_age: Some(Duration::from_secs(600)),
            ..c.clone()
        })
        .expect("open purges");
        assert_eq!(std::fs::read_to_string(&c.path).expect("read"), "");
        for i in 0..50 {
            log.record(&EngineEvent::SessionCreated {
                id: format!("new{i}"),
            })
            .expect("write");
        }
        drop(log);
        let log = AuditLog::open(AuditConfig {
            max_bytes: Some(1000),
            ..c.clone()
        })
        .expect("open");
        let text = std::fs::read_to_string(&c.path).expect("read");
        assert!(text.len() <= 1000, "{}", text.len());
        assert!(
            text.contains("new49") && !text.contains("\"new0\""),
            "the newest are kept"
        );
        assert_eq!(log.purge().expect("purge"), 0, "nothing more to purge");
    }
}
