//! Distributed processing's event source: the events topic, read as a
//! consumer group. Each event's offset is committed only once its image's
//! outcome is durable (its delivery is done), offset by offset, so a crash
//! or a rebalance redelivers exactly what was not finished, and the
//! processor skips images already finished.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use lake::{Delivery, EventSource, ImageReceived};

use crate::KafkaConfig;
use rdkafka::{
    Message as _,
    consumer::{CommitMode, StreamConsumer},
    error::KafkaError,
};
use tokio::sync::{mpsc, oneshot};

use crate::group::{self, Commits, GroupContext};

pub struct EventConsumer {
    deliveries: mpsc::Receiver<Delivery>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for EventConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer").finish_non_exhaustive()
    }
}

impl EventConsumer {
    /// Join the processors' group; at most `queue` events wait, taken from
    /// the topic but not yet by the processor.
    pub fn new(cfg: &KafkaConfig, queue: usize) -> Result<Self, KafkaError> {
        // Events are small; 64 MiB of prefetch is plenty.
        let (consumer, commits) = group::join(
            cfg,
            "process",
            &cfg.process_group,
            &cfg.events_topic,
            64 << 20,
        )?;
        let (tx, deliveries) = mpsc::channel(queue.max(1));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(consume(consumer, commits, cfg.commit_interval, tx, stopped));
        Ok(Self {
            deliveries,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

#[async_trait]
impl EventSource for EventConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        self.deliveries.recv().await
    }

    /// Other members of the group write the same lake.
    fn has_peers(&self) -> bool {
        true
    }

    /// Commit what is finished, and leave the group; events handed out but
    /// not done come back to whoever gets their partitions.
    async fn close(&mut self) {
        self.deliveries.close();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Read the topic into `deliveries` (taking a message only when there is
/// room for it) until `stopped`, committing finished offsets as it goes.
async fn consume(
    consumer: StreamConsumer<GroupContext>,
    commits: Arc<Commits>,
    commit_interval: Duration,
    deliveries: mpsc::Sender<Delivery>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(commit_interval);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = tick.tick() => commits.commit(&consumer, CommitMode::Async),
            permit = deliveries.reserve() => {
                let Ok(permit) = permit else { break };
                let msg = tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    m = consumer.recv() => m,
                };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "consuming events");
                        continue;
                    }
                };
                let (topic, partition, offset) = (msg.topic().to_owned(), msg.partition(), msg.offset());
                commits.started(&topic, partition, offset);
                let event = msg
                    .payload()
                    .and_then(|p| serde_json::from_slice::<ImageReceived>(p).ok())
                    .map(|ev| ev.checked(chrono::Utc::now()));
                match event {
                    Some(Ok(event)) => {
                        let commits = commits.clone();
                        permit.send(Delivery::new(event, move || {
                            commits.finished(&topic, partition, offset);
                        }));
                    }
                    // Whoever can write this topic can forge: refused, logged.
                    Some(Err(forged)) => {
                        crate::telemetry::bad_event(&topic, partition, offset, Some(&forged));
                        commits.finished(&topic, partition, offset);
                    }
                    // Only imgpipe writes this topic: a bad event is a bug
                    // elsewhere, logged and passed over.
                    None => {
                        crate::telemetry::bad_event(&topic, partition, offset, None);
                        commits.finished(&topic, partition, offset);
                    }
                }
            }
        }
    }
    // Deliveries done by now are committed; the rest come back.
    commits.commit(&consumer, CommitMode::Sync);
}
