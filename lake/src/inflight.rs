//! Which images a processor in this process is working on right now, so the
//! status endpoint can say `processing` in the embedded deployment.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use crate::id::ImageId;

#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Mutex<HashSet<ImageId>>>);

impl InFlight {
    /// Mark `id` as in processing until the guard drops; `None` when some
    /// task already holds it (a duplicate event).
    pub fn try_enter(&self, id: ImageId) -> Option<InFlightGuard> {
        self.lock().insert(id).then(|| InFlightGuard {
            set: self.clone(),
            id,
        })
    }

    pub fn contains(&self, id: ImageId) -> bool {
        self.lock().contains(&id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ImageId>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub struct InFlightGuard {
    set: InFlight,
    id: ImageId,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}
