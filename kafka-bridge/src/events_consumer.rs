//! Distributed processing: `imgpipe process` consumes the events topic as
//! a consumer group and feeds the processor; an event's offset is committed
//! only once its image's outcome is durable, so a crash or a rebalance
//! redelivers it, and the processor skips images already finished.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use lake::{ImageId, ImageReceived, config::KafkaConfig};
use rdkafka::{
    Message as _,
    consumer::{CommitMode, StreamConsumer},
    error::KafkaError,
};
use tokio::sync::mpsc;

use crate::group::{self, Commits, GroupContext};

pub struct EventConsumer {
    consumer: StreamConsumer<GroupContext>,
    commits: Arc<Commits>,
    commit_interval: Duration,
}

impl std::fmt::Debug for EventConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer").finish_non_exhaustive()
    }
}

impl EventConsumer {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        // Events are small; 16 MiB of prefetch is plenty.
        let (consumer, commits) = group::join(
            cfg,
            "process",
            &cfg.process_group,
            &cfg.events_topic,
            64 << 20,
        )?;
        Ok(Self {
            consumer,
            commits,
            commit_interval: cfg.commit_interval,
        })
    }

    /// Feed `events` (the processor's queue, bounded) until `shutdown`;
    /// `finished` reports the ids whose outcome is durable. Returns how many
    /// events were handed to the processor.
    pub async fn run(
        self,
        events: mpsc::Sender<ImageReceived>,
        mut finished: mpsc::UnboundedReceiver<ImageId>,
        shutdown: impl Future<Output = ()>,
    ) -> u64 {
        let Self {
            consumer,
            commits,
            commit_interval,
        } = self;
        // Offsets waiting for each id's outcome.
        let mut waiting: HashMap<ImageId, Vec<(String, i32, i64)>> = HashMap::new();
        let mut handed = 0u64;
        let mut tick = tokio::time::interval(commit_interval);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(id) = finished.recv() => {
                    for (topic, partition, offset) in waiting.remove(&id).unwrap_or_default() {
                        commits.finished(&topic, partition, offset);
                    }
                }
                _ = tick.tick() => commits.commit(&consumer, CommitMode::Async),
                // Taking a message needs room in the processor's queue.
                permit = events.reserve() => {
                    let Ok(permit) = permit else { break };
                    let msg = tokio::select! {
                        biased;
                        () = &mut shutdown => break,
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
                    let event = msg
                        .payload()
                        .and_then(|p| serde_json::from_slice::<ImageReceived>(p).ok())
                        .map(|ev| ev.checked(chrono::Utc::now()));
                    match event {
                        Some(Ok(event)) => {
                            commits.started(&topic, partition, offset);
                            waiting.entry(event.id).or_default().push((topic, partition, offset));
                            permit.send(event);
                            handed += 1;
                        }
                        // Whoever can write this topic can forge: refused, logged.
                        Some(Err(forged)) => {
                            crate::telemetry::bad_event(&topic, partition, offset, Some(&forged));
                            commits.started(&topic, partition, offset);
                            commits.finished(&topic, partition, offset);
                        }
                        // Only imgpipe writes this topic: a bad event is a bug
                        // elsewhere, logged and passed over.
                        None => {
                            crate::telemetry::bad_event(&topic, partition, offset, None);
                            commits.started(&topic, partition, offset);
                            commits.finished(&topic, partition, offset);
                        }
                    }
                }
            }
        }
        // Outcomes that are durable by now are committed; the rest come back.
        while let Ok(id) = finished.try_recv() {
            for (topic, partition, offset) in waiting.remove(&id).unwrap_or_default() {
                commits.finished(&topic, partition, offset);
            }
        }
        commits.commit(&consumer, CommitMode::Sync);
        handed
    }
}
