//! Where a processor's work comes from: one shape for every deployment.
//! The embedded pipeline feeds it from ingest's channel plus a scan of the
//! lake for what a crash left unfinished; distributed processing feeds it
//! from the events topic. Either way each event is reported done on its
//! own, once its outcome is durable — for Kafka, that commits its offset.

use async_trait::async_trait;

use crate::event::ImageReceived;

/// One event to process, and how to say its outcome is durable. Dropping
/// it without [`Delivery::done`] leaves it unacknowledged: a durable source
/// delivers it again (after a restart or a rebalance).
pub struct Delivery {
    pub event: ImageReceived,
    on_done: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("event", &self.event.id)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// An event whose source needs to hear when it is done.
    pub fn new(event: ImageReceived, on_done: impl FnOnce() + Send + 'static) -> Self {
        Self {
            event,
            on_done: Some(Box::new(on_done)),
        }
    }

    /// An event nobody needs to hear about (the lake itself is the record).
    pub fn untracked(event: ImageReceived) -> Self {
        Self {
            event,
            on_done: None,
        }
    }

    /// The image's outcome (processed, quarantined, or nothing to do) is
    /// durable: the source may forget this event.
    pub fn done(mut self) {
        if let Some(on_done) = self.on_done.take() {
            on_done();
        }
    }
}

#[async_trait]
pub trait EventSource: Send {
    /// The next event; `None` once the source has no more and never will.
    async fn next(&mut self) -> Option<Delivery>;

    /// Do other processors write to the same lake at the same time? Then a
    /// metadata row missing for a recent manifest may still sit in a live
    /// peer's buffer, and is repaired only once that peer must have flushed.
    fn has_peers(&self) -> bool {
        false
    }

    /// Called once, after every delivery taken was done or dropped: a
    /// durable source records its progress here.
    async fn close(&mut self) {}
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    fn event() -> ImageReceived {
        let id = crate::ImageId::new(chrono::Utc::now());
        ImageReceived {
            id,
            raw_key: crate::layout::raw_key(id),
            source: crate::Source::Http,
            source_ref: None,
            bytes: 1,
            sha256: String::new(),
            content_type: "image/png".into(),
            received_at: id.received_at(),
            dedup_key: None,
            request_id: None,
        }
    }

    #[test]
    fn done_acknowledges_once_and_drop_does_not() {
        let acks = Arc::new(AtomicUsize::new(0));
        let counted = || {
            let acks = acks.clone();
            move || {
                acks.fetch_add(1, Ordering::SeqCst);
            }
        };
        Delivery::new(event(), counted()).done();
        drop(Delivery::new(event(), counted()));
        Delivery::untracked(event()).done();
        assert_eq!(acks.load(Ordering::SeqCst), 1);
    }
}
