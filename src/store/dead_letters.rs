//! The dead-letter queue as a Redis stream, shared by every worker: `NS:dead`, one entry
//! per request that failed for good (field `letter`: the [`DeadLetter`] as JSON).
//!
//! Readers use a consumer group, so each entry goes to one consumer; an entry is done
//! when its consumer acknowledges it ([`RedisDeadLetters::ack`]) and is never delivered
//! again. An entry a consumer took and did not acknowledge (it died) goes to another
//! consumer once it has been idle for `min_idle` ([`RedisDeadLetters::claim`] uses
//! `XAUTOCLAIM` first, then new entries).
//!
//! Writing does not block the request path: the engine hands each letter to a channel
//! ([`RedisDeadLetters::sink`]) and a background task appends it; letters wait in memory
//! (up to 10 000) while Redis is unreachable.

use std::collections::VecDeque;
use std::time::Duration;

use mummer_actors::dispatch::{DeadLetter, DeadLetterSink};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::sync::mpsc;

use super::{RedisStore, SessionStore};
use crate::error::{Error, Result};

/// Most letters kept in memory while Redis is unreachable; older ones are dropped first.
const WAITING_CAPACITY: usize = 10_000;
/// The stream is trimmed to about this many entries.
const STREAM_MAX_LEN: usize = 100_000;

/// The shared dead-letter stream.
#[derive(Clone)]
pub struct RedisDeadLetters {
    store: RedisStore,
    stream: String,
    tx: mpsc::UnboundedSender<DeadLetter>,
}

impl std::fmt::Debug for RedisDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDeadLetters")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// A dead letter read from the stream, with the entry id to acknowledge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedLetter {
    /// The stream entry id.
    pub entry: String,
    /// The letter.
    pub letter: DeadLetter,
}

impl RedisDeadLetters {
    /// The stream `NS:dead` of `store`; starts the writer task on the current tokio
    /// runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(store: &RedisStore) -> RedisDeadLetters {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = store.key("dead", "").trim_end_matches(':').to_string();
        tokio::spawn(write_letters(store.clone(), stream.clone(), rx));
        RedisDeadLetters {
            store: store.clone(),
            stream,
            tx,
        }
    }

    /// What the engine calls with each new dead letter
    /// (`EngineBuilder::dead_letter_sink`).
    pub fn sink(&self) -> DeadLetterSink {
        let tx = self.tx.clone();
        std::sync::Arc::new(move |letter: &DeadLetter| {
            let _ = tx.send(letter.clone());
        })
    }

    fn failed(&self, e: redis::RedisError) -> Error {
        Error::store_unavailable(self.store.describe(), e)
    }

    async fn ensure_group(&self, group: &str) -> Result<()> {
        let mut conn = self.store.connection();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Up to `count` letters for `consumer` of `group`: first those another consumer
    /// took and left unacknowledged for `min_idle`, then new ones. Letters that do not
    /// parse are acknowledged and skipped, with a warning naming their entry.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`].
    pub async fn claim(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        min_idle: Duration,
    ) -> Result<Vec<ClaimedLetter>> {
        self.ensure_group(group).await?;
        let mut conn = self.store.connection();
        let stale: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(group)
            .arg(consumer)
            .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let mut entries: Vec<StreamId> = stale.claimed;
        if entries.len() < count {
            let fresh: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count - entries.len())
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            if let Some(reply) = fresh {
                entries.extend(reply.keys.into_iter().flat_map(|k| k.ids));
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        let mut junk = Vec::new();
        for entry in entries {
            let parsed = entry
                .get::<String>("letter")
                .and_then(|json| serde_json::from_str::<DeadLetter>(&json).ok());
            match parsed {
                Some(letter) => out.push(ClaimedLetter {
                    entry: entry.id,
                    letter,
                }),
                None => {
                    tracing::warn!(stream = %self.stream, entry = %entry.id, "skipping a dead-letter entry that is not a mummer dead letter");
                    junk.push(entry.id);
                }
            }
        }
        if !junk.is_empty() {
            self.ack(group, &junk).await?;
        }
        Ok(out)
    }

    /// Marks `entries` done for `group`; returns how many were pending.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`].
    pub async fn ack(&self, group: &str, entries: &[String]) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut conn = self.store.connection();
        redis::cmd("XACK")
            .arg(&self.stream)
            .arg(group)
            .arg(entries)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Entries in the stream (acknowledged ones included, until trimmed).
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`].
    pub async fn len(&self) -> Result<usize> {
        let mut conn = self.store.connection();
        redis::cmd("XLEN")
            .arg(&self.stream)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))
    }
}

/// Appends letters as they come; keeps them while Redis is unreachable.
async fn write_letters(
    store: RedisStore,
    stream: String,
    mut rx: mpsc::UnboundedReceiver<DeadLetter>,
) {
    let mut waiting: VecDeque<String> = VecDeque::new();
    let mut failing = false;
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(letter) => waiting.push_back(encode(&letter)),
                None => return,
            }
        }
        while let Ok(letter) = rx.try_recv() {
            if waiting.len() == WAITING_CAPACITY {
                waiting.pop_front();
            }
            waiting.push_back(encode(&letter));
        }
        let mut conn = store.connection();
        while let Some(json) = waiting.front() {
            let added: redis::RedisResult<String> = redis::cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*")
                .arg("letter")
                .arg(json)
                .query_async(&mut conn)
                .await;
            match added {
                Ok(_) => {
                    waiting.pop_front();
                    if failing {
                        failing = false;
                        tracing::info!(%stream, "dead-letter stream reachable again");
                    }
                }
                Err(e) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(%stream, error = %e, "dead-letter stream unreachable; letters wait in memory");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}

fn encode(letter: &DeadLetter) -> String {
    serde_json::to_string(letter).unwrap_or_else(|_| "{}".to_string())
}
