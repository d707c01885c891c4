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
    /// The HTTP request that brought it (`x-request-id`), so the
    /// processor's log lines for it can be joined to the API's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// How far ahead of our clock an image id may be (clock skew between the
/// emitter and us); an id further ahead would live past its retention.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Why an event from outside this process was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgedEvent {
    #[error("event for {id} names raw key {raw_key:?}, not its own")]
    RawKey { id: ImageId, raw_key: String },
    #[error("event for {id} is dated {received_at}, in the future")]
    Future {
        id: ImageId,
        received_at: DateTime<Utc>,
    },
}

impl ImageReceived {
    /// An event read from a topic is a claim, not a fact: its raw key must
    /// be the one its id derives (else it could point the processor at
    /// another image's bytes), and its id may not be from the future (its
    /// 7-day clock would start late).
    pub fn checked(mut self, now: DateTime<Utc>) -> Result<Self, ForgedEvent> {
        let id = self.id;
        if self.raw_key != crate::layout::raw_key(id) {
            return Err(ForgedEvent::RawKey {
                id,
                raw_key: self.raw_key,
            });
        }
        if id.received_at() > now + MAX_CLOCK_SKEW {
            return Err(ForgedEvent::Future {
                id,
                received_at: id.received_at(),
            });
        }
        // Time comes from the id alone.
        self.received_at = id.received_at();
        Ok(self)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout;

    fn event(id: ImageId) -> ImageReceived {
        ImageReceived {
            id,
            raw_key: layout::raw_key(id),
            source: Source::Kafka,
            source_ref: None,
            bytes: 1,
            sha256: "aa".into(),
            content_type: "image/png".into(),
            received_at: id.received_at(),
            dedup_key: None,
            request_id: None,
        }
    }

    #[test]
    fn forged_events_are_refused() {
        let now = Utc::now();
        let (mine, other) = (
            ImageId::new(now),
            ImageId::new(now - chrono::Duration::hours(2)),
        );
        assert!(event(mine).checked(now).is_ok());
        let mut stolen = event(mine);
        stolen.raw_key = layout::raw_key(other);
        assert!(matches!(
            stolen.checked(now),
            Err(ForgedEvent::RawKey { .. })
        ));
        let future = ImageId::new(now + chrono::Duration::hours(1));
        assert!(matches!(
            event(future).checked(now),
            Err(ForgedEvent::Future { .. })
        ));
        let skewed = ImageId::new(now + chrono::Duration::minutes(1));
        assert!(event(skewed).checked(now).is_ok());
        let mut lying = event(mine);
        lying.received_at = now - chrono::Duration::days(30);
        assert_eq!(lying.checked(now).unwrap().received_at, mine.received_at());
    }
}
