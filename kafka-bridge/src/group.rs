//! What the bridge's and the processors' consumer groups share: commits
//! of durable work only, a careful hand-over of revoked partitions,
//! librdkafka's logs and lag statistics as tracing events and metrics.

use std::{
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::KafkaConfig;
use rdkafka::{
    ClientContext, Offset, Statistics, TopicPartitionList,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
};

use crate::offsets::OffsetTracker;

/// Offsets in flight and finished, shared with the rebalance callback.
#[derive(Debug, Default)]
pub struct Commits {
    tracker: Mutex<OffsetTracker>,
    changed: Condvar,
}

impl Commits {
    fn lock(&self) -> MutexGuard<'_, OffsetTracker> {
        // A panic elsewhere leaves the tracker consistent (each call is
        // one small update), so a poisoned lock is still usable.
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn started(&self, topic: &str, partition: i32, offset: i64) {
        self.lock().started(topic, partition, offset);
    }

    pub fn finished(&self, topic: &str, partition: i32, offset: i64) {
        self.lock().finished(topic, partition, offset);
        self.changed.notify_all();
    }

    /// Commit every partition whose commit point moved.
    pub fn commit<C: Consumer<X>, X: ConsumerContext>(&self, consumer: &C, mode: CommitMode) {
        let mut tracker = self.lock();
        let points = tracker.to_commit();
        if points.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in &points {
            if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(error = %e, "bad offset for commit");
            }
        }
        match consumer.commit(&list, mode) {
            Ok(()) => {
                for (topic, partition, offset) in points {
                    tracker.committed(&topic, partition, offset);
                }
            }
            // Not fatal: what is not committed is redelivered and deduplicated.
            Err(e) => tracing::warn!(error = %e, "offset commit failed; will retry"),
        }
    }

    /// The group takes `revoked` away: wait (up to `wait`) for their work in
    /// flight to become durable, commit it, and forget them — so the next
    /// owner starts after what we finished rather than redoing it alongside.
    fn hand_over<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        revoked: &TopicPartitionList,
        wait: Duration,
    ) {
        let deadline = Instant::now() + wait;
        let mut tracker = self.lock();
        while tracker.pending_in(revoked) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    pending = tracker.pending_in(revoked),
                    "partitions revoked with work in flight; their messages will be redelivered"
                );
                break;
            }
            tracker = self
                .changed
                .wait_timeout(tracker, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        drop(tracker);
        self.commit(consumer, CommitMode::Sync);
        let mut tracker = self.lock();
        for e in revoked.elements() {
            tracker.forget(e.topic(), e.partition());
        }
    }
}

/// The consumer context of both groups.
#[derive(Debug)]
pub struct GroupContext {
    name: &'static str,
    commits: Arc<Commits>,
    hand_over_wait: Duration,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::client::log(level, fac, log_message);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is "unknown" (not assigned to us, or not fetched yet).
                if *partition >= 0 && p.consumer_lag >= 0 {
                    crate::telemetry::consumer_lag(self.name, topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            tracing::info!(
                group = self.name,
                partitions = list.count(),
                "partitions revoked"
            );
            self.commits.hand_over(consumer, list, self.hand_over_wait);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let parts: Vec<String> = list
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                tracing::info!(group = self.name, partitions = ?parts, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(group = self.name, error = %e, "rebalance error"),
        }
    }
}

/// A member of `group` subscribed to `topic`, with commits tracked in the
/// returned [`Commits`]. `inflight_bytes` sizes librdkafka's prefetch.
pub fn join(
    cfg: &KafkaConfig,
    name: &'static str,
    group: &str,
    topic: &str,
    inflight_bytes: u64,
) -> Result<(StreamConsumer<GroupContext>, Arc<Commits>), KafkaError> {
    let commits = Arc::new(Commits::default());
    let context = GroupContext {
        name,
        commits: commits.clone(),
        // Let work in flight finish before a partition moves on.
        hand_over_wait: cfg.timeout,
    };
    let consumer: StreamConsumer<GroupContext> =
        crate::client::consumer(cfg, group, inflight_bytes)
            .set("statistics.interval.ms", "5000")
            .create_with_context(context)?;
    consumer.subscribe(&[topic])?;
    Ok((consumer, commits))
}
