//! The dead-letter topic: messages that cannot become images, copied with
//! their key and value and the reason in headers, so the partition moves
//! on and an operator can see (and replay) what was refused. The topic is
//! created with retention inside the retention period (see `topics`).

use std::time::Duration;

use rdkafka::{
    Message as _,
    error::KafkaError,
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
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
            producer: crate::client::producer(cfg)
                // A refused message may be as large as the largest image.
                .set(
                    "message.max.bytes",
                    (cfg.max_image_bytes * 2)
                        .clamp(1 << 20, 1_000_000_000)
                        .to_string(),
                )
                .create()?,
            topic: cfg.dlq_topic.clone(),
            timeout: cfg.timeout,
        })
    }

    /// Returns once the broker has the dead letter.
    pub async fn send(&self, msg: &OwnedMessage, why: &Rejected) -> Result<(), KafkaError> {
        let source = format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset());
        let mut headers = OwnedHeaders::new()
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
        // The producer's own headers travel along.
        if let Some(original) = msg.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        if let Some(payload) = msg.payload() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, self.timeout)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
