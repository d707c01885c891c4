//! The dead-letter topic: for each message that cannot become an image,
//! why (`imgpipe-reason`, `imgpipe-detail`) and where it is
//! (`imgpipe-source`: topic/partition/offset), so the partition moves on and
//! an operator can find the original. No image bytes, key or producer
//! headers are copied: the broker stamps the dead letter when it is written
//! and keeps it another `retention.ms`, so a copy would outlive the
//! original's retention period; the original stays in its own topic until
//! that topic's retention removes it.

use std::time::Duration;

use rdkafka::{
    Message as _,
    error::KafkaError,
    message::{Header, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
};

use crate::message::Rejected;

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Header names on dead letters.
pub const REASON: &str = "imgpipe-reason";
pub const DETAIL: &str = "imgpipe-detail";
pub const SOURCE: &str = "imgpipe-source";

impl DeadLetters {
    pub fn new(cfg: &crate::KafkaConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: crate::client::producer(cfg).create()?,
            topic: cfg.dlq_topic.clone(),
            timeout: cfg.timeout,
        })
    }

    /// Returns once the broker has the dead letter.
    pub async fn send(&self, msg: &OwnedMessage, why: &Rejected) -> Result<(), KafkaError> {
        let source = format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: REASON,
                value: Some(why.reason.as_str()),
            })
            .insert(Header {
                key: DETAIL,
                value: Some(why.detail.as_str()),
            })
            .insert(Header {
                key: SOURCE,
                value: Some(source.as_str()),
            });
        // The value says the same for readers that ignore headers.
        let value = serde_json::json!({
            "reason": why.reason.as_str(),
            "detail": why.detail,
            "source": source,
        })
        .to_string();
        let record = FutureRecord::<[u8], str>::to(&self.topic)
            .headers(headers)
            .payload(&value);
        self.producer
            .send(record, self.timeout)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
