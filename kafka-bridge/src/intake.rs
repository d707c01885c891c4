//! One image from a message into the lake, exactly once per dedup key:
//! the message mapped onto [`lake::admission`], where every source stores
//! its images the same crash-safe way. A Kafka key names a stream, not one
//! image, so the same key with other bytes is a new image; a redelivery
//! finds its dedup record and completes whatever the first delivery did
//! not.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use lake::{
    ImageId, Source,
    admission::{Admission, AdmitError, Admitted, Expired, Incoming, Reuse},
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
    /// Messages' images, stored through `admission` like every upload.
    pub fn new(admission: Admission) -> Self {
        Self(admission)
    }

    /// Where images land, for people.
    pub fn location(&self) -> String {
        self.0.store.location()
    }

    /// When a message that arrived at `arrived_at` (its timestamp) was
    /// received in the lake's terms, or that its retention already ended.
    pub fn receipt_time(
        &self,
        arrived_at: Option<DateTime<Utc>>,
    ) -> Result<DateTime<Utc>, Expired> {
        self.0.receipt_time(arrived_at)
    }

    pub async fn store(
        &self,
        data: Bytes,
        format: ImageFormat,
        dedup_key: &str,
        source_ref: &str,
        arrived_at: Option<DateTime<Utc>>,
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
                arrived_at,
            })
            .await?;
        Ok(match admitted {
            Admitted::New(id) => Stored::New(id),
            Admitted::Again(id) => Stored::Redelivered(id),
        })
    }
}
