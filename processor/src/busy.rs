//! The images this processor's tasks are working on right now: a second
//! event for one of them (a redelivery, a recovered duplicate) waits
//! rather than processing it twice at once.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use lake::ImageId;

#[derive(Debug, Clone, Default)]
pub(crate) struct Busy(Arc<Mutex<HashSet<ImageId>>>);

impl Busy {
    /// Mark `id` as in processing until the guard drops; `None` when some
    /// task already holds it (a duplicate event).
    pub(crate) fn try_enter(&self, id: ImageId) -> Option<BusyGuard> {
        self.lock().insert(id).then(|| BusyGuard {
            set: self.clone(),
            id,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ImageId>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub(crate) struct BusyGuard {
    set: Busy,
    id: ImageId,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}
