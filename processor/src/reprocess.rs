//! `imgpipe reprocess`: run the current script again over images still in
//! retention, replacing their script fields, script outputs and metadata
//! rows. Idempotent: an image whose row already carries the current script
//! version is left alone, so a second run does nothing.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use lake::{
    ImageId, Layout, SharedStore, StoreError, erasure,
    layout::{self, parse_key},
    records::Manifest,
    schema,
    store::PutOptions,
};

use crate::{
    ProcessorConfig,
    analyze::{AnalyzeLimits, analyze_contained},
    outputs::{self, Outputs},
    script::{ScriptInput, ScriptRunner},
};

#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only images received at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only images whose row was produced by this script version (default:
    /// every version but the current one).
    pub script_version: Option<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReprocessReport {
    pub version: String,
    pub candidates: usize,
    pub reprocessed: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    #[error("no [processor.script] is configured")]
    NoScript,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Erasure(#[from] erasure::ErasureError),
}

/// The images to redo, oldest first, with their manifests.
pub async fn select(
    store: &SharedStore,
    cfg: &ProcessorConfig,
    layout: &Layout,
    now: DateTime<Utc>,
    selection: &Selection,
    current_version: &str,
) -> Result<Vec<Manifest>, ReprocessError> {
    // Rows younger than two flushes may still sit in a running writer's
    // buffer, where we could not replace them.
    let settled = now - chrono::Duration::from_std(cfg.flush_interval * 2).unwrap_or_default();
    // Only the hour partitions the selection can reach.
    let first = selection.since.map_or(now - layout.retention, |since| {
        since.max(now - layout.retention)
    });
    let mut hour = layout::hour_start(first);
    let mut objects = Vec::new();
    while hour <= settled {
        let prefix = layout::hour_prefix(layout::Area::Derived, hour);
        objects.extend(store.list(&prefix).await?);
        hour += chrono::Duration::hours(1);
    }
    let mut out = Vec::new();
    for obj in objects {
        if !obj.key.ends_with(layout::MANIFEST_FILE) {
            continue;
        }
        let Ok(parsed) = parse_key(&obj.key) else {
            continue;
        };
        let received = parsed.id.received_at();
        if layout.expires_at(parsed.id) <= now
            || received > settled
            || selection.since.is_some_and(|since| received < since)
        {
            continue;
        }
        let Some(bytes) = store.get(&obj.key).await? else {
            continue;
        };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
            continue;
        };
        let version = manifest.row.script_version.as_deref();
        let wanted = match &selection.script_version {
            Some(v) => version == Some(v.as_str()),
            None => version != Some(current_version),
        };
        if wanted {
            out.push(manifest);
        }
    }
    out.sort_by_key(|m| m.id);
    Ok(out)
}

/// Redo one image through the processor's own steps: the same limits and
/// script request, the same writers and retries, the same tombstone checks.
/// `Ok(false)` when it was erased or its raw bytes are gone.
pub async fn reprocess_one(
    store: &SharedStore,
    cfg: &ProcessorConfig,
    runner: &ScriptRunner,
    mut manifest: Manifest,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let outputs = Outputs::new(store.clone(), cfg.retries);
    let id = manifest.id;
    if outputs.is_erased(id).await? {
        return Ok(false);
    }
    let Some(raw) = outputs.get(&manifest.row.raw_key).await? else {
        return Ok(false);
    };
    let limits = AnalyzeLimits::from(cfg);
    let raw_for_cpu = raw.clone();
    let analysis =
        tokio::task::spawn_blocking(move || analyze_contained(&raw_for_cpu, &limits)).await??;
    let outcome = runner
        .run(&ScriptInput::new(id, manifest.row.source, &raw, &analysis))
        .await?;

    // New outputs first, then the manifest that names them, then the row.
    let opts = PutOptions::for_image(
        id,
        manifest.row.source,
        &manifest.row.sha256,
        manifest.row.expires_at,
        "application/octet-stream",
    );
    let fields = outcome.fields_text();
    let new_keys = outputs.script_files(id, outcome.files, &opts).await?;
    let script_prefix = format!("{}script/", layout::derived_prefix(id));
    let stale: Vec<String> = manifest
        .keys
        .iter()
        .filter(|k| k.starts_with(&script_prefix) && !new_keys.contains(k))
        .cloned()
        .collect();
    manifest.keys = outputs::manifest_keys(id, &manifest.row.raw_key, new_keys);
    manifest.row.script = Some(fields);
    manifest.row.script_version = Some(outcome.version);
    outputs.manifest(&manifest, &opts).await?;
    erasure::purge_keys(store, &stale).await?;
    replace_row(store, &manifest.row).await?;
    if outputs.erased_meanwhile(id, &manifest.keys[1..]).await? {
        erasure::scrub_partition(store, id).await?;
        return Ok(false);
    }
    Ok(true)
}

/// Replace `row` in the metadata file of its hour that holds it.
async fn replace_row(
    store: &SharedStore,
    row: &schema::MetadataRow,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // One writer per file: images of one hour share files, and two
    // read-modify-writes of one file would lose an update.
    let _writer = partition_lock(&layout::metadata_partition_prefix(row.id)).await;
    for obj in store
        .list(&layout::metadata_partition_prefix(row.id))
        .await?
    {
        let Some(file) = store.get(&obj.key).await? else {
            continue;
        };
        let ids: HashSet<ImageId> = schema::read_ids(file.clone())?.into_iter().collect();
        if !ids.contains(&row.id) {
            continue;
        }
        let rows: Vec<_> = schema::read_rows(file)?
            .into_iter()
            .map(|r| if r.id == row.id { row.clone() } else { r })
            .collect();
        let opts = PutOptions {
            content_type: Some("application/vnd.apache.parquet".into()),
            metadata: Vec::new(),
        };
        store
            .put(&obj.key, schema::write_parquet(&rows)?, &opts)
            .await?;
        // Same protocol as every row writer: look at the tombstones again.
        let erased = erasure::tombstones_near(store, row.id).await?;
        erasure::scrub_file(store, &obj.key, &erased).await?;
    }
    Ok(())
}

/// A lock per hour partition (hashed into a fixed table), for this process.
async fn partition_lock(prefix: &str) -> tokio::sync::MutexGuard<'static, ()> {
    static LOCKS: std::sync::LazyLock<Vec<tokio::sync::Mutex<()>>> =
        std::sync::LazyLock::new(|| (0..64).map(|_| tokio::sync::Mutex::new(())).collect());
    let hash = prefix.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    LOCKS[hash % LOCKS.len()].lock().await
}

/// The runner for the configured script.
pub fn runner(cfg: &ProcessorConfig) -> Result<ScriptRunner, ReprocessError> {
    let script = cfg.script.as_ref().ok_or(ReprocessError::NoScript)?;
    Ok(ScriptRunner::new(script, cfg.script_slots()))
}
