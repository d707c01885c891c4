//! kafka-bridge: images from a Kafka topic into the lake — at least once
//! in, exactly one image out — and the distributed event transport.
//!
//! - [`Bridge`]: a consumer group on `[kafka] topic`. Each message (raw
//!   image bytes, a JSON envelope, or a claim-check pointing at S3) becomes
//!   one image in `raw/` plus `ImageReceived`, or a dead letter with the
//!   reason in headers; only then may its offset be committed.
//! - [`KafkaEvents`] / [`EventConsumer`]: `ImageReceived` on the events
//!   topic, consumed by `imgpipe process` as a consumer group.
//! - [`topics`]: the topics' retention checked against the lake's.

mod bridge;
mod claim;
mod client;
pub mod config;
pub mod dead_letter;
mod events;
mod events_consumer;
mod group;
mod intake;
pub mod message;
mod offsets;
pub mod telemetry;
pub mod topics;

pub use bridge::{Bridge, BridgeReport};
pub use config::{KafkaConfig, KafkaSecurity};
pub use events::KafkaEvents;
pub use events_consumer::EventConsumer;
pub use intake::{Intake, IntakeError, Stored};
pub use rdkafka::error::KafkaError;
