//! Batches metadata rows into Parquet files under `metadata/`: flushed at
//! least every `flush_interval` and on shutdown, one file per hour
//! partition (a file never spans two hours, so dt/hr pruning is exact).

use std::time::Duration;

use lake::{SharedStore, layout, schema::MetadataRow};
use tokio::{sync::mpsc, task::JoinHandle};

/// Flush early when this many rows are waiting.
const MAX_BUFFERED_ROWS: usize = 20_000;

#[derive(Debug, Clone)]
pub struct MetadataSink {
    tx: mpsc::Sender<MetadataRow>,
}

#[derive(Debug, thiserror::Error)]
#[error("the metadata writer has stopped")]
pub struct SinkClosed;

impl MetadataSink {
    /// Start the writer task. It ends, after a final flush, once every
    /// `MetadataSink` clone is dropped.
    pub fn spawn(store: SharedStore, flush_interval: Duration) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(write_loop(store, rx, flush_interval));
        (Self { tx }, task)
    }

    pub async fn append(&self, row: MetadataRow) -> Result<(), SinkClosed> {
        self.tx.send(row).await.map_err(|_| SinkClosed)
    }
}

async fn write_loop(store: SharedStore, mut rx: mpsc::Receiver<MetadataRow>, every: Duration) {
    let mut buffer: Vec<MetadataRow> = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            row = rx.recv() => match row {
                Some(row) => {
                    buffer.push(row);
                    if buffer.len() >= MAX_BUFFERED_ROWS {
                        flush(&store, &mut buffer).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => flush(&store, &mut buffer).await,
        }
    }
    // Shutdown: try hard, but rows whose manifest exists are rewritten from
    // it at the next start if this fails.
    for attempt in 0..5 {
        flush(&store, &mut buffer).await;
        if buffer.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    tracing::error!(
        rows = buffer.len(),
        "metadata rows not written at shutdown; recovered from manifests at next start"
    );
}

/// Write what is buffered; rows of partitions that failed stay buffered.
async fn flush(store: &SharedStore, buffer: &mut Vec<MetadataRow>) {
    if buffer.is_empty() {
        return;
    }
    buffer.sort_by_key(|r| r.id);
    let mut kept = Vec::new();
    let rows = std::mem::take(buffer);
    for group in rows.chunk_by(|a, b| {
        layout::partition(a.id.received_at()) == layout::partition(b.id.received_at())
    }) {
        if let Err(e) = write_file(store, group).await {
            tracing::warn!(error = %e, rows = group.len(), "metadata flush failed; will retry");
            kept.extend_from_slice(group);
        }
    }
    *buffer = kept;
}

async fn write_file(
    store: &SharedStore,
    rows: &[MetadataRow],
) -> Result<(), lake::metadata::MetadataError> {
    if let Some(key) = lake::metadata::write_rows(store, rows).await? {
        tracing::debug!(%key, rows = rows.len(), "metadata flushed");
    }
    Ok(())
}
