//! Distributed mode's event transport: `ImageReceived` as JSON on the
//! events topic, keyed by image id (so one image's events stay in order on
//! one partition).

use std::time::Duration;

use async_trait::async_trait;
use lake::{EmitError, EventSink, ImageReceived};

use crate::KafkaConfig;
use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
};

pub struct KafkaEvents {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaEvents")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaEvents {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: crate::client::producer(cfg).create()?,
            topic: cfg.events_topic.clone(),
            timeout: cfg.timeout,
        })
    }
}

#[async_trait]
impl EventSink for KafkaEvents {
    /// Returns once the broker has the event (acks=all).
    async fn emit(&self, event: ImageReceived) -> Result<(), EmitError> {
        let key = event.id.to_string();
        let payload = serde_json::to_vec(&event).map_err(|e| EmitError(e.to_string()))?;
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(&key).payload(&payload),
                self.timeout,
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| EmitError(format!("publishing to {}: {e}", self.topic)))
    }
}
