//! Where a processor's work comes from: one shape for every deployment.
//! The embedded pipeline feeds it from ingest's channel plus a scan of the
//! lake for what a crash left unfinished; distributed processing feeds it
//! from the events topic. Either way each event is reported done on its
//! own, once its outcome is durable — for Kafka, that commits its offset.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use crate::{ImageId, event::ImageReceived};

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

    /// The image's outcome (processed, quarantined, or nothing to do) is
    /// durable: the source may forget this event.
    pub fn done(mut self) {
        if let Some(on_done) = self.on_done.take() {
            on_done();
        }
    }
}

/// The images a source has handed to a processor and not yet seen finished
/// or given up: what the status route reports as `processing`. Only the
/// source that hands them out knows this; a source in another process
/// reports nothing here.
#[derive(Debug, Clone, Default)]
pub struct InProgress(Arc<Mutex<HashMap<ImageId, usize>>>);

impl InProgress {
    pub fn contains(&self, id: ImageId) -> bool {
        self.lock().contains_key(&id)
    }

    /// A delivery of `event` that counts as in progress until it is done
    /// or dropped.
    pub fn deliver(&self, event: ImageReceived) -> Delivery {
        *self.lock().entry(event.id).or_default() += 1;
        let mark = Taken {
            set: self.clone(),
            id: event.id,
        };
        Delivery::new(event, move || drop(mark))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ImageId, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One delivery's count in [`InProgress`], given back when it drops.
struct Taken {
    set: InProgress,
    id: ImageId,
}

impl Drop for Taken {
    fn drop(&mut self) {
        let mut map = self.set.lock();
        if let Some(n) = map.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.id);
            }
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
        assert_eq!(acks.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn in_progress_until_done_or_dropped_counting_duplicates() {
        let progress = InProgress::default();
        let ev = event();
        let id = ev.id;
        let first = progress.deliver(ev.clone());
        let second = progress.deliver(ev);
        assert!(progress.contains(id));
        first.done();
        assert!(progress.contains(id), "a second delivery is still out");
        drop(second);
        assert!(!progress.contains(id));
    }
}
