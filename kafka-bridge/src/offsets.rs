//! Which offsets may be committed. Messages finish out of order (images are
//! stored concurrently); a partition's commit point is its lowest unfinished
//! offset, or one past the highest finished when none is pending — so a
//! crash redelivers everything not yet durable, and nothing durable is
//! skipped.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
struct Partition {
    pending: BTreeSet<i64>,
    /// One past the highest offset finished.
    next: Option<i64>,
    committed: Option<i64>,
}

impl Partition {
    fn commit_point(&self) -> Option<i64> {
        // Nothing finished yet: nothing to say.
        let next = self.next?;
        Some(
            self.pending
                .first()
                .map_or(next, |&lowest| lowest.min(next)),
        )
    }
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<(String, i32), Partition>,
}

impl OffsetTracker {
    pub fn started(&mut self, topic: &str, partition: i32, offset: i64) {
        self.partitions
            .entry((topic.to_owned(), partition))
            .or_default()
            .pending
            .insert(offset);
    }

    pub fn finished(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) {
            p.pending.remove(&offset);
            p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
        }
    }

    /// Offsets to commit now (the next offset to read, per Kafka's
    /// convention), for partitions whose commit point moved.
    pub fn to_commit(&self) -> Vec<(String, i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|((topic, partition), p)| {
                let point = p.commit_point()?;
                (p.committed != Some(point)).then(|| (topic.clone(), *partition, point))
            })
            .collect()
    }

    pub fn committed(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) {
            p.committed = Some(offset);
        }
    }

    /// The partition was taken away: its pending messages go to the new
    /// owner, which redelivers them.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }

    /// Messages in flight on any of `partitions`.
    pub fn pending_in(&self, partitions: &rdkafka::TopicPartitionList) -> usize {
        partitions
            .elements()
            .iter()
            .filter_map(|e| self.partitions.get(&(e.topic().to_owned(), e.partition())))
            .map(|p| p.pending.len())
            .sum()
    }

    #[cfg(test)]
    fn pending(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn commits_only_the_finished_prefix() {
        let mut t = OffsetTracker::default();
        for o in 10..14 {
            t.started("t", 0, o);
        }
        assert!(t.to_commit().is_empty());
        t.finished("t", 0, 11);
        t.finished("t", 0, 12);
        // 10 is not durable yet: nothing past it may be committed.
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 10)]);
        t.committed("t", 0, 10);
        assert!(t.to_commit().is_empty());
        t.finished("t", 0, 10);
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 13)]);
        t.finished("t", 0, 13);
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 14)]);
        t.forget("t", 0);
        assert!(t.to_commit().is_empty());
        assert_eq!(t.pending(), 0);
    }

    proptest! {
        /// Whatever the finishing order, the commit point never passes an
        /// unfinished offset, and ends one past the last.
        #[test]
        fn never_commits_past_unfinished(order in Just((0i64..40).collect::<Vec<_>>()).prop_shuffle()) {
            let mut t = OffsetTracker::default();
            for o in 0..40 { t.started("t", 3, o); }
            let mut done = BTreeSet::new();
            for o in order {
                t.finished("t", 3, o);
                done.insert(o);
                for (_, _, point) in t.to_commit() {
                    prop_assert!((0..point).all(|x| done.contains(&x)));
                }
            }
            prop_assert_eq!(t.to_commit(), vec![("t".to_owned(), 3, 40)]);
        }
    }
}
