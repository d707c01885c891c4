//! `ImageReceived`: the one event between ingest and processing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::ImageId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Http,
    Kafka,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Kafka => "kafka",
        }
    }
}

/// Emitted only after `raw_key` is durably written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReceived {
    pub id: ImageId,
    pub raw_key: String,
    pub source: Source,
    /// Where it came from: the idempotency key or file name (HTTP), or
    /// topic/partition/offset (Kafka).
    pub source_ref: Option<String>,
    pub bytes: u64,
    pub sha256: String,
    /// The sniffed type, never the client's claim.
    pub content_type: String,
    pub received_at: DateTime<Utc>,
    /// The dedup key its record was written under (namespaced: `api:…`,
    /// `kafka:…`), so erasure finds that record from the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
}

/// Where `ImageReceived` goes: the in-process channel (embedded mode) or a
/// Kafka topic (distributed mode). `emit` returns once the event is handed
/// over durably enough for the emitter to acknowledge its input.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    async fn emit(&self, event: ImageReceived) -> Result<(), EmitError>;
}

#[derive(Debug, thiserror::Error)]
#[error("could not emit ImageReceived: {0}")]
pub struct EmitError(pub String);

/// Embedded mode. A closed channel is not an error for the emitter: the
/// raw object is durable and start-up reconciliation finds it.
#[async_trait::async_trait]
impl EventSink for tokio::sync::mpsc::Sender<ImageReceived> {
    async fn emit(&self, event: ImageReceived) -> Result<(), EmitError> {
        let id = event.id;
        if self.send(event).await.is_err() {
            tracing::warn!(%id, "processor not running; image waits for reconciliation");
        }
        Ok(())
    }
}
