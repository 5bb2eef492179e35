//! The audit trail's writer task: engine events go to a file trail or a Redis stream
//! as they come, what waits is written at shutdown.

use mummer_actors::EngineEvent;
use tokio::sync::broadcast;

use crate::audit::AuditLog;

/// Where the audit trail goes.
pub(super) enum AuditSink {
    File(AuditLog),
    #[cfg(feature = "redis")]
    Redis(Box<crate::store::RedisAuditLog>),
}

impl AuditSink {
    async fn write(&self, e: &EngineEvent) {
        let written = match self {
            AuditSink::File(log) => log.record(e),
            #[cfg(feature = "redis")]
            AuditSink::Redis(log) => log.record(e).await,
        };
        if let Err(err) = written {
            if err.is_store_unavailable() {
                tracing::warn!(error = %err, "audit trail store unavailable; entries wait in memory");
            } else {
                tracing::error!(error = %err, "audit trail write failed");
            }
        }
    }

    /// Writes what waited for an unreachable store (the file trail has nothing waiting).
    async fn flush(&self) {
        #[cfg(feature = "redis")]
        if let AuditSink::Redis(log) = self {
            if let Err(e) = log.flush_waiting().await {
                tracing::error!(error = %e, "audit entries still waiting for Redis at shutdown were not written");
            }
        }
    }
}

/// Writes engine events to the audit trail as they come; drained at shutdown.
pub(super) struct AuditTask {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl AuditTask {
    pub(super) fn spawn(
        sink: AuditSink,
        mut events: broadcast::Receiver<EngineEvent>,
        runtime: &tokio::runtime::Handle,
    ) -> AuditTask {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = runtime.spawn(async move {
            #[cfg(feature = "redis")]
            if let AuditSink::Redis(log) = &sink {
                // Retention once at start, as the file trail does when it opens.
                if let Err(e) = log.purge().await {
                    tracing::warn!(error = %e, "audit stream retention skipped: Redis unavailable");
                }
            }
            loop {
                tokio::select! {
                    next = events.recv() => match next {
                        Ok(e) => sink.write(&e).await,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::error!(missed = n, "the audit trail fell behind and missed events");
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = stopped.changed() => {
                        while let Ok(e) = events.try_recv() {
                            sink.write(&e).await;
                        }
                        sink.flush().await;
                        break;
                    }
                }
            }
        });
        AuditTask {
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Writes what is queued and stops.
    pub(super) async fn finish(&self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}
