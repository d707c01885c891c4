//! One image from a message into the lake, exactly once per dedup key:
//! the dedup record first (so a crash after it cannot leave an image no
//! redelivery finds), then the raw object and the content index, then
//! `ImageReceived`. A redelivery finds the record and completes whatever
//! the first delivery did not.

use std::sync::Arc;

use bytes::Bytes;
use lake::{
    EmitError, EventSink, ImageId, ImageReceived, Layout, SharedClock, SharedStore, Source,
    StoreError, erasure, index, layout, sniff::ImageFormat, store::PutOptions,
};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Intake {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub layout: Layout,
    pub events: Arc<dyn EventSink>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New(ImageId),
    /// Seen before under the same dedup key with the same bytes.
    Redelivered(ImageId),
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Emit(#[from] EmitError),
}

impl Intake {
    pub async fn store(
        &self,
        data: Bytes,
        format: ImageFormat,
        dedup_key: &str,
        source_ref: &str,
    ) -> Result<Stored, IntakeError> {
        let sha256 = hex::encode(Sha256::digest(&data));
        let now = self.clock.now();
        let existing = index::find_dedup(&self.store, dedup_key, &sha256)
            .await?
            // Past its expiry the first image is gone (or going): new image.
            .filter(|id| now < self.layout.expires_at(*id));
        let (id, stored) = match existing {
            Some(id) => {
                if erasure::is_erased(&self.store, id).await? {
                    // Erased on request: a redelivery must not bring it back.
                    return Ok(Stored::Redelivered(id));
                }
                (id, Stored::Redelivered(id))
            }
            None => {
                let id = ImageId::new(now);
                (id, Stored::New(id))
            }
        };
        let opts = PutOptions::for_image(
            id,
            Source::Kafka,
            &sha256,
            self.layout.expires_at(id),
            format.mime(),
        );
        let raw_key = layout::raw_key(id);
        if matches!(stored, Stored::New(_)) {
            index::record_dedup(&self.store, dedup_key, id, &sha256, &opts).await?;
        } else if self.finished(id).await? {
            return Ok(stored);
        }
        let event = ImageReceived {
            id,
            raw_key: raw_key.clone(),
            source: Source::Kafka,
            source_ref: Some(source_ref.to_owned()),
            bytes: data.len() as u64,
            sha256: sha256.clone(),
            content_type: format.mime().to_owned(),
            received_at: id.received_at(),
            dedup_key: Some(dedup_key.to_owned()),
        };
        if matches!(stored, Stored::New(_)) || !self.store.exists(&raw_key).await? {
            index::record_event(&self.store, &event, &opts).await?;
            self.store.put(&raw_key, data, &opts).await?;
        }
        index::record_content(&self.store, &sha256, id, &opts).await?;
        self.events.emit(event).await?;
        Ok(stored)
    }

    async fn finished(&self, id: ImageId) -> Result<bool, StoreError> {
        Ok(self.store.exists(&layout::manifest_key(id)).await?
            || self.store.exists(&layout::quarantine_key(id)).await?)
    }
}
