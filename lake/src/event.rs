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
}
