//! One image from a message into the lake, exactly once per dedup key:
//! the message mapped onto [`lake::admission`], where every source stores
//! its images the same crash-safe way. A Kafka key names a stream, not one
//! image, so the same key with other bytes is a new image; a redelivery
//! finds its dedup record and completes whatever the first delivery did
//! not.

use std::sync::Arc;

use bytes::Bytes;
use lake::{
    EventSink, ImageId, Layout, SharedClock, SharedStore, Source,
    admission::{Admission, AdmitError, Admitted, Incoming, Reuse},
    sniff::ImageFormat,
};

#[derive(Debug, Clone)]
pub struct Intake(Admission);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New(ImageId),
    /// Seen before under the same dedup key with the same bytes.
    Redelivered(ImageId),
}

pub type IntakeError = AdmitError;

impl Intake {
    pub fn new(
        store: SharedStore,
        clock: SharedClock,
        layout: Layout,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self(Admission::new(store, clock, layout, events))
    }

    /// Where images land, for people.
    pub fn location(&self) -> String {
        self.0.store.location()
    }

    pub async fn store(
        &self,
        data: Bytes,
        format: ImageFormat,
        dedup_key: &str,
        source_ref: &str,
    ) -> Result<Stored, IntakeError> {
        let admitted = self
            .0
            .admit(Incoming {
                data,
                format,
                source: Source::Kafka,
                source_ref: Some(source_ref.to_owned()),
                dedup_key: Some(dedup_key.to_owned()),
                on_reuse: Reuse::NewImage,
                request_id: None,
            })
            .await?;
        Ok(match admitted {
            Admitted::New(id) => Stored::New(id),
            Admitted::Again(id) => Stored::Redelivered(id),
        })
    }
}
