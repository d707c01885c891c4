//! The embedded pipeline's event source: what ingest hands over in-process,
//! plus — once, at start — every image a crash left unfinished, found by a
//! scan of the hours not yet checkpointed (`lake::reconcile`). Nothing to
//! acknowledge (the lake is the record), but what it has handed out and
//! not yet seen finished is the status route's `processing`.

use async_trait::async_trait;
use lake::{
    Delivery, EventSource, ImageReceived, InProgress, Layout, SharedClock, SharedStore, reconcile,
};
use tokio::sync::mpsc;

/// Recovered events waiting to be taken; the scan waits when it is full.
const RECOVERED_QUEUE: usize = 64;

#[derive(Debug)]
pub struct Embedded {
    live: mpsc::Receiver<ImageReceived>,
    in_progress: InProgress,
    store: SharedStore,
    clock: SharedClock,
    layout: Layout,
    recovered: Option<mpsc::Receiver<ImageReceived>>,
    scan: Option<tokio::task::JoinHandle<()>>,
}

impl Embedded {
    /// `live` is the receiving end of ingest's bounded channel.
    pub fn new(
        store: SharedStore,
        clock: SharedClock,
        layout: Layout,
        live: mpsc::Receiver<ImageReceived>,
    ) -> Self {
        Self {
            live,
            in_progress: InProgress::default(),
            store,
            clock,
            layout,
            recovered: None,
            scan: None,
        }
    }

    /// The images handed out and not yet done or given up.
    pub fn in_progress(&self) -> InProgress {
        self.in_progress.clone()
    }

    /// The scan starts with the first request for work, so it never runs
    /// before the processor has repaired lost rows.
    fn start_scan(&mut self) {
        let (tx, rx) = mpsc::channel(RECOVERED_QUEUE);
        let (store, layout, now) = (self.store.clone(), self.layout, self.clock.now());
        self.scan = Some(tokio::spawn(async move {
            let todo = async {
                let hours = reconcile::open_hours(&store, &layout, now).await?;
                reconcile::unfinished(&store, &hours).await
            };
            match todo.await {
                Ok(todo) => {
                    if !todo.is_empty() {
                        tracing::info!(images = todo.len(), "resuming images left unfinished");
                    }
                    for ev in todo {
                        if tx.send(ev).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "reconciliation failed"),
            }
        }));
        self.recovered = Some(rx);
    }
}

#[async_trait]
impl EventSource for Embedded {
    async fn next(&mut self) -> Option<Delivery> {
        if self.scan.is_none() {
            self.start_scan();
        }
        loop {
            let recovered = async {
                match self.recovered.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.live.recv() => return ev.map(|ev| self.in_progress.deliver(ev)),
                ev = recovered => match ev {
                    Some(ev) => return Some(self.in_progress.deliver(ev)),
                    // The scan is over; only live events from now on.
                    None => self.recovered = None,
                },
            }
        }
    }

    async fn close(&mut self) {
        if let Some(scan) = self.scan.take() {
            scan.abort();
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(scan) = &self.scan {
            scan.abort();
        }
    }
}
