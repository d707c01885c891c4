//! `imgpipe verify`: the lake's invariants, checked from what is stored.
//! Every accepted image ends exactly once — processed (a manifest, one row
//! in exactly one Parquet file, the objects its row names) or quarantined
//! (a record) — or is still in flight; an erased image has no data left;
//! nothing is past its expiry. A full walk, like the audit: run it after a
//! crash or a fault test, not every minute.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use chrono::{DateTime, Duration, Utc};
use lake::{
    ImageId, Layout, SharedStore, StoreError,
    layout::{self, Area, parse_key},
    records::Manifest,
    schema,
};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub id: ImageId,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub at: DateTime<Utc>,
    pub images: usize,
    pub processed: usize,
    pub quarantined: usize,
    pub in_flight: usize,
    pub violations: Vec<Violation>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "verify at {}: {} images, {} processed, {} quarantined, {} in flight",
            self.at.to_rfc3339(),
            self.images,
            self.processed,
            self.quarantined,
            self.in_flight
        )?;
        for v in &self.violations {
            writeln!(f, "VIOLATION {}: {}", v.id, v.problem)?;
        }
        if self.passed() {
            write!(f, "PASS: every image ended exactly once")
        } else {
            write!(f, "FAIL: {} violations", self.violations.len())
        }
    }
}

/// Check the lake at `now`. Images received within `grace` may still be in
/// flight (no outcome yet, or a row not yet flushed).
pub async fn verify(
    store: &SharedStore,
    layout: Layout,
    now: DateTime<Utc>,
    grace: Duration,
) -> Result<VerifyReport, StoreError> {
    let mut written: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut ids_in = async |area: Area| {
        let mut keys: BTreeMap<ImageId, Vec<String>> = BTreeMap::new();
        for obj in store.list(area.prefix()).await? {
            if let Ok(parsed) = parse_key(&obj.key) {
                if let Some(t) = obj.last_modified {
                    written.insert(obj.key.clone(), t);
                }
                keys.entry(parsed.id).or_default().push(obj.key);
            }
        }
        Ok::<_, StoreError>(keys)
    };
    let raw = ids_in(Area::Raw).await?;
    let derived = ids_in(Area::Derived).await?;
    let quarantined = ids_in(Area::Quarantine).await?;
    let erased = ids_in(Area::Erased).await?;
    let mut rows: BTreeMap<ImageId, usize> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut bad = |id: ImageId, problem: String| violations.push(Violation { id, problem });

    for obj in store.list(Area::Metadata.prefix()).await? {
        let Some(file) = store.get(&obj.key).await? else {
            continue;
        };
        match schema::read_ids(file) {
            Ok(ids) => ids
                .into_iter()
                .for_each(|id| *rows.entry(id).or_default() += 1),
            Err(e) => {
                if let Ok(p) = parse_key(&obj.key) {
                    bad(
                        p.id,
                        format!("metadata file {} is unreadable: {e}", obj.key),
                    );
                }
            }
        }
    }

    let everything: BTreeSet<ImageId> = raw
        .keys()
        .chain(derived.keys())
        .chain(quarantined.keys())
        .chain(rows.keys())
        .copied()
        .collect();
    let (mut processed, mut quarantines, mut in_flight) = (0, 0, 0);
    for &id in &everything {
        let recent = now - id.received_at() < grace;
        let only_a_row =
            !raw.contains_key(&id) && !derived.contains_key(&id) && !quarantined.contains_key(&id);
        if layout.expires_at(id) <= now {
            // A row lives as long as its file, named after the file's newest
            // row: the audit judges files; here an old row in a live file is
            // no violation.
            if !only_a_row {
                bad(id, "data past its expiry".into());
            }
            continue;
        }
        if erased.contains_key(&id) {
            bad(id, "erased, yet data of it is stored".into());
            continue;
        }
        let files = derived.get(&id).map(Vec::as_slice).unwrap_or_default();
        let has_manifest = files.contains(&layout::manifest_key(id));
        let is_quarantined = quarantined.contains_key(&id);
        let n_rows = rows.get(&id).copied().unwrap_or(0);
        if !raw.contains_key(&id) {
            bad(id, "outcome or row without the raw image".into());
        }
        match (has_manifest, is_quarantined) {
            (true, true) => bad(id, "both processed and quarantined".into()),
            (false, false) if recent => in_flight += 1,
            (false, false) => bad(id, "accepted but never finished".into()),
            (false, true) => {
                quarantines += 1;
                if n_rows > 0 {
                    bad(id, "quarantined, yet it has a metadata row".into());
                }
            }
            (true, false) => {
                processed += 1;
                // Processed recently (a backlog, a restart): its row may still
                // wait in a writer's buffer.
                let processed_at = written.get(&layout::manifest_key(id)).copied();
                let settling = recent || processed_at.is_some_and(|t| now - t < grace);
                match n_rows {
                    1 => {}
                    0 if settling => {}
                    n => bad(id, format!("processed, with {n} metadata rows (want 1)")),
                }
                check_manifest(store, id, files, &mut bad).await?;
            }
        }
    }
    Ok(VerifyReport {
        at: now,
        images: raw.len(),
        processed,
        quarantined: quarantines,
        in_flight,
        violations,
    })
}

/// Every key a manifest names exists, and its row names its own objects.
async fn check_manifest(
    store: &SharedStore,
    id: ImageId,
    derived: &[String],
    bad: &mut impl FnMut(ImageId, String),
) -> Result<(), StoreError> {
    let Some(body) = store.get(&layout::manifest_key(id)).await? else {
        return Ok(());
    };
    let manifest: Manifest = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            bad(id, format!("unreadable manifest: {e}"));
            return Ok(());
        }
    };
    if manifest.row.raw_key != layout::raw_key(id)
        || manifest.row.thumb_key != layout::thumb_key(id)
    {
        bad(id, "its row names another image's objects".into());
    }
    for key in &manifest.keys {
        let present = if key.starts_with(Area::Derived.prefix()) {
            derived.contains(key)
        } else {
            store.exists(key).await?
        };
        if !present {
            bad(id, format!("{key} is missing"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use lake::{schema::testing::sample_row, store::FsStore};

    use super::*;

    async fn put(store: &SharedStore, key: &str, body: &[u8]) {
        store
            .put(key, Bytes::copy_from_slice(body), &Default::default())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn each_broken_invariant_names_its_image() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let now = Utc::now();
        let layout = Layout::new(Duration::days(7));
        let hour_ago = now - Duration::hours(1);
        let (good, unfinished, both, no_row, in_flight) = (
            ImageId::new(hour_ago),
            ImageId::new(hour_ago + Duration::seconds(1)),
            ImageId::new(hour_ago + Duration::seconds(2)),
            ImageId::new(hour_ago + Duration::seconds(3)),
            ImageId::new(now + Duration::minutes(19)),
        );
        // Evaluated 20 minutes on: everything written now is settled, the
        // last image is a minute old.
        let now = now + Duration::minutes(20);
        for id in [good, unfinished, both, no_row, in_flight] {
            put(&store, &layout::raw_key(id), b"raw").await;
        }
        for id in [good, both, no_row] {
            let manifest = Manifest {
                id,
                keys: vec![layout::thumb_key(id), layout::raw_key(id)],
                row: sample_row(id),
            };
            put(&store, &layout::thumb_key(id), b"t").await;
            put(
                &store,
                &layout::manifest_key(id),
                &serde_json::to_vec(&manifest).unwrap(),
            )
            .await;
        }
        put(&store, &layout::quarantine_key(both), b"{}").await;
        let file = schema::write_parquet(&[sample_row(good), sample_row(both)]).unwrap();
        store
            .put(&layout::metadata_key(both, 2), file, &Default::default())
            .await
            .unwrap();

        let report = verify(&store, layout, now, Duration::minutes(10))
            .await
            .unwrap();
        let problems: BTreeMap<ImageId, &str> = report
            .violations
            .iter()
            .map(|v| (v.id, v.problem.as_str()))
            .collect();
        assert_eq!(problems.len(), 3, "{report}");
        assert!(problems[&unfinished].contains("never finished"));
        assert!(problems[&both].contains("both"));
        assert!(problems[&no_row].contains("0 metadata rows"));
        assert_eq!(report.in_flight, 1);

        // Fixed, it passes.
        store.delete(&[layout::quarantine_key(both)]).await.unwrap();
        put(&store, &layout::quarantine_key(unfinished), b"{}").await;
        let file = schema::write_parquet(&[sample_row(no_row)]).unwrap();
        store
            .put(&layout::metadata_key(no_row, 1), file, &Default::default())
            .await
            .unwrap();
        let report = verify(&store, layout, now, Duration::minutes(10))
            .await
            .unwrap();
        assert!(report.passed(), "{report}");
    }
}
