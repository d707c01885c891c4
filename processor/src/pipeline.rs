//! The event loop: one task per image, bounded by raw bytes in flight; CPU
//! work on rayon; outputs written thumbnail → manifest → metadata row.

use std::{future::Future, sync::Arc, time::Instant};
use tracing::Instrument;

use backon::Retryable;
use bytes::Bytes;
use lake::{
    Delivery, EventSource, ImageReceived, Layout, SharedClock, SharedStore, StoreError, layout,
    reconcile,
    records::{Manifest, QuarantineRecord},
    schema::MetadataRow,
    state::ImageState,
    store::PutOptions,
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

use crate::{
    ProcessError, ProcessorConfig,
    analyze::{self, Analysis, AnalyzeLimits},
    outputs::{self, Outputs},
    script::{ScriptInput, ScriptOutcome, ScriptRunner},
    sink::MetadataSink,
    telemetry,
};

#[derive(Debug)]
struct Ctx {
    store: SharedStore,
    /// The same store, every call retried `processor.retries` times.
    outputs: Outputs,
    clock: SharedClock,
    layout: Layout,
    limits: AnalyzeLimits,
    pool: rayon::ThreadPool,
    busy: crate::busy::Busy,
    sink: MetadataSink,
    script: ScriptSlot,
    /// KiB of decoded pixels in memory at once (`processor.max_decode_bytes`),
    /// charged from each image's header before it is decoded. Separate from
    /// the raw-bytes budget, so a task waiting here holds nothing another
    /// decoding task waits for.
    decode_budget: Arc<Semaphore>,
    decode_budget_kib: u32,
    /// The raw-bytes budget (`processor.max_inflight_bytes`) in KiB, to
    /// charge an image again when the lake's record says it is larger
    /// than its event claimed.
    raw_budget: Arc<Semaphore>,
    raw_budget_kib: u32,
}

#[derive(Debug)]
pub struct Processor {
    ctx: Arc<Ctx>,
    budget: Arc<Semaphore>,
    budget_kib: u32,
    sink_task: tokio::task::JoinHandle<()>,
    flush_interval: std::time::Duration,
}

impl Processor {
    /// A processor for `[processor]` over the lake whose keys `layout` lays out.
    pub fn new(
        p: &ProcessorConfig,
        layout: Layout,
        store: SharedStore,
        clock: SharedClock,
    ) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(p.worker_threads())
            .thread_name(|i| format!("imgpipe-cpu-{i}"))
            .build()?;
        let (sink, sink_task) = MetadataSink::spawn(store.clone(), p.flush_interval);
        let budget_kib = u32::try_from(p.max_inflight_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let decode_budget_kib =
            u32::try_from(p.max_decode_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let budget = Arc::new(Semaphore::new(budget_kib as usize));
        Ok(Self {
            ctx: Arc::new(Ctx {
                outputs: Outputs::new(store.clone(), p.retries),
                store,
                clock,
                layout,
                limits: AnalyzeLimits::from(p),
                pool,
                busy: Default::default(),
                sink,
                script: ScriptSlot::new(p.script.as_ref(), p.script_slots()),
                decode_budget: Arc::new(Semaphore::new(decode_budget_kib as usize)),
                decode_budget_kib,
                raw_budget: budget.clone(),
                raw_budget_kib: budget_kib,
            }),
            budget,
            budget_kib,
            sink_task,
            flush_interval: p.flush_interval,
        })
    }

    /// A handle to swap the customer's script while running (SIGHUP).
    pub fn script_slot(&self) -> ScriptSlot {
        self.ctx.script.clone()
    }

    /// Process what `source` delivers until `shutdown` resolves or the
    /// source runs dry, then finish the images in flight, flush metadata
    /// and close the source. Each delivery is reported done once its
    /// outcome is durable; one whose storage kept failing is not, so a
    /// durable source delivers it again. Returns how many events it took.
    pub async fn run(
        self,
        mut source: impl EventSource,
        shutdown: impl Future<Output = ()>,
    ) -> u64 {
        let Self {
            ctx,
            budget,
            budget_kib,
            sink_task,
            flush_interval,
        } = self;
        // A live peer flushes its rows within its flush interval.
        let written_before = source.has_peers().then(|| {
            ctx.clock.now()
                - chrono::Duration::from_std(flush_interval * 2).unwrap_or_default()
                - chrono::Duration::seconds(30)
        });
        // Rows first, before anything new is processed (see lost_rows),
        // in the hours not yet checkpointed.
        let lost = async {
            let hours = reconcile::open_hours(&ctx.store, &ctx.layout, ctx.clock.now()).await?;
            reconcile::lost_rows(&ctx.store, &hours, written_before).await
        };
        match lost.await {
            Ok(rows) => {
                if !rows.is_empty() {
                    tracing::info!(rows = rows.len(), "rewriting metadata rows lost in a crash");
                }
                for row in rows {
                    let _ = ctx.sink.append(row).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "could not check for lost metadata rows"),
        }

        let mut taken = 0u64;
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "image task panicked");
                    }
                }
                delivery = source.next() => {
                    let Some(delivery) = delivery else { break };
                    taken += 1;
                    let kib = raw_kib(delivery.event.bytes, budget_kib);
                    let permit = tokio::select! {
                        p = budget.clone().acquire_many_owned(kib) => p.ok(),
                        () = &mut shutdown => None,
                    };
                    let Some(permit) = permit else { break };
                    tasks.spawn(process_one(ctx.clone(), delivery, permit));
                }
            }
        }
        // Drain: everything already started finishes and is made durable.
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "image task panicked");
            }
        }
        drop(ctx);
        let _ = sink_task.await;
        source.close().await;
        taken
    }
}

async fn process_one(ctx: Arc<Ctx>, delivery: Delivery, budget: OwnedSemaphorePermit) {
    // Every log line about this image names it, and the HTTP request
    // that brought it (joinable to the API's lines).
    let span = tracing::info_span!(
        "image",
        id = %delivery.event.id,
        request_id = delivery.event.request_id.as_deref().unwrap_or(""),
    );
    process_traced(ctx, delivery, budget).instrument(span).await;
}

/// KiB charged against the raw-bytes budget for an image of `bytes`.
fn raw_kib(bytes: u64, budget_kib: u32) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, budget_kib)
}

async fn process_traced(ctx: Arc<Ctx>, delivery: Delivery, budget: OwnedSemaphorePermit) {
    let id = delivery.event.id;
    let started = Instant::now();
    let mut charged = Some(budget);
    let result = loop {
        match process(&ctx, delivery.event.clone(), &mut charged).await {
            // A duplicate of an image another task holds: done only once
            // that task's outcome is durable (or, if it fails, once this one
            // has done the work), never before — acknowledging it early
            // could let a crash lose the image.
            Ok(Outcome::InFlight) => tokio::time::sleep(IN_FLIGHT_RECHECK).await,
            other => break other,
        }
    };
    match result {
        Ok(outcome) => {
            if matches!(outcome, Outcome::Processed) {
                telemetry::processed(started.elapsed());
            }
            // Quarantines are counted (and logged) where the record is written.
            delivery.done();
        }
        // Storage kept failing: the raw object stays, the delivery is not
        // acknowledged, and the source (or the next start's scan) brings
        // it back.
        Err(e) => telemetry::unfinished(id, &e),
    }
}

/// How often a duplicate checks whether the first delivery finished.
const IN_FLIGHT_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

enum Outcome {
    Processed,
    Quarantined,
    /// Another task has this image right now.
    InFlight,
    Skipped,
}

async fn process(
    ctx: &Ctx,
    ev: ImageReceived,
    charged: &mut Option<OwnedSemaphorePermit>,
) -> Result<Outcome, StoreError> {
    // One task per id at a time; a finished image is never redone.
    let Some(_guard) = ctx.busy.try_enter(ev.id) else {
        return Ok(Outcome::InFlight);
    };
    let store = &ctx.store;
    let policy = ctx.outputs.policy();
    let state = (|| lake::state::image_state(store, &ctx.layout, ev.id, ctx.clock.now(), None))
        .retry(policy)
        .await?;
    // Finished, erased or expired: nothing to do. (Received or unknown:
    // the raw read below decides.)
    let done = state.is_finished() || matches!(state, ImageState::Erased | ImageState::Expired);
    if done {
        return Ok(Outcome::Skipped);
    }
    // What the lake recorded at admission, not what the event claims: an
    // event from a topic could name another source (and so another row
    // filter) for this image.
    let ev = match (|| lake::index::recorded_event(store, ev.id))
        .retry(policy)
        .await?
    {
        Some(recorded) if recorded.raw_key == ev.raw_key => recorded,
        _ => ev,
    };
    // The event was charged what it claimed; the lake's record is the
    // truth. Charge that before reading the bytes — releasing first, so
    // no task holds part of the budget while it waits for more.
    let needed = raw_kib(ev.bytes, ctx.raw_budget_kib);
    if charged
        .as_ref()
        .is_none_or(|p| p.num_permits() < needed as usize)
    {
        *charged = None;
        *charged = ctx.raw_budget.clone().acquire_many_owned(needed).await.ok();
    }
    let Some(bytes) = ctx.outputs.get(&ev.raw_key).await? else {
        tracing::info!(id = %ev.id, "raw object gone (erased or expired) before processing");
        return Ok(Outcome::Skipped);
    };
    let started = Instant::now();
    // Memory for the pixels, as the header declares them (a small PNG can
    // declare gigabytes), before any is decoded.
    // A header parse is the decoder's first step: off the runtime, and a
    // panic in it is the decode's to report (it runs again under
    // catch_unwind there), not this task's.
    let header = bytes.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(|| analyze::decoded_bytes(&header))
            .ok()
            .flatten()
    })
    .await
    .ok()
    .flatten();
    let decoded_kib = decoded
        .map_or(1, |b| u32::try_from(b.div_ceil(1024)).unwrap_or(u32::MAX))
        .clamp(1, ctx.decode_budget_kib);
    let decoding = ctx
        .decode_budget
        .clone()
        .acquire_many_owned(decoded_kib)
        .await
        .ok();
    let analysis = on_pool(&ctx.pool, bytes.clone(), ctx.limits).await;
    drop(decoding);
    match analysis {
        Err(problem) => {
            quarantine(ctx, &ev, problem).await?;
            Ok(Outcome::Quarantined)
        }
        Ok(a) => {
            // The runner current when the image started; a reload swaps
            // runners for later images only.
            let script = match ctx.script.current() {
                None => None,
                Some(runner) => match telemetry::timed_script(
                    runner.run(&ScriptInput::new(ev.id, ev.source, &bytes, &a)),
                )
                .await
                {
                    Ok(outcome) => Some(outcome),
                    Err(problem) => {
                        quarantine(ctx, &ev, problem).await?;
                        return Ok(Outcome::Quarantined);
                    }
                },
            };
            write_outputs(ctx, &ev, a, bytes.len(), started, script).await?;
            Ok(Outcome::Processed)
        }
    }
}

async fn on_pool(
    pool: &rayon::ThreadPool,
    bytes: Bytes,
    limits: AnalyzeLimits,
) -> Result<Analysis, ProcessError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.spawn(move || {
        let _ = tx.send(analyze::analyze_contained(&bytes, &limits));
    });
    rx.await.unwrap_or_else(|_| {
        Err(ProcessError::new(
            lake::records::QuarantineReason::DecodeFailed,
            "the worker pool dropped the image",
        ))
    })
}

/// What the customer's script sees: the image, a preview it can read
/// without an image library, and what we extracted (no GPS coordinates).
async fn write_outputs(
    ctx: &Ctx,
    ev: &ImageReceived,
    a: Analysis,
    size: usize,
    started: Instant,
    script: Option<ScriptOutcome>,
) -> Result<(), StoreError> {
    let outputs = &ctx.outputs;
    let id = ev.id;
    let expires_at = ctx.layout.expires_at(id);
    let opts = PutOptions::for_image(id, ev.source, &a.sha256, expires_at, "image/jpeg");
    let thumb_key = layout::thumb_key(id);
    outputs
        .put(&thumb_key, Bytes::from(a.thumbnail_jpeg), &opts)
        .await?;
    let (script_fields, script_version, script_keys) = match script {
        Some(outcome) => {
            let fields = outcome.fields_text();
            let keys = outputs.script_files(id, outcome.files, &opts).await?;
            (Some(fields), Some(outcome.version), keys)
        }
        None => (None, None, Vec::new()),
    };

    let row = MetadataRow {
        id,
        source: ev.source,
        source_ref: ev.source_ref.clone(),
        received_at: id.received_at(),
        expires_at,
        content_type: a.format.mime().into(),
        format: a.format.name().into(),
        width: a.width,
        height: a.height,
        bytes: size as u64,
        sha256: a.sha256.clone(),
        phash: a.phash,
        exif_make: a.exif.make,
        exif_model: a.exif.model,
        exif_taken_at: a.exif.taken_at,
        orientation: a.exif.orientation,
        has_gps: a.exif.gps.is_some(),
        gps_lat: a.exif.gps.map(|g| g.0),
        gps_lon: a.exif.gps.map(|g| g.1),
        thumb_key,
        raw_key: ev.raw_key.clone(),
        script: script_fields,
        processing_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        status: lake::state::Status::Processed,
        script_version,
    };
    let manifest = Manifest {
        id,
        keys: outputs::manifest_keys(id, &ev.raw_key, script_keys),
        row: row.clone(),
    };
    outputs.manifest(&manifest, &opts).await?;
    // Everything but the raw object, which stays the erasure's to remove.
    if outputs.erased_meanwhile(id, &manifest.keys[1..]).await? {
        return Ok(());
    }
    if ctx.sink.append(row).await.is_err() {
        tracing::warn!(%id, "metadata writer stopped; row recovered from the manifest at next start");
    }
    Ok(())
}

async fn quarantine(
    ctx: &Ctx,
    ev: &ImageReceived,
    problem: ProcessError,
) -> Result<(), StoreError> {
    telemetry::quarantined(ev.id, problem.reason.as_str(), &problem.detail);
    let record = QuarantineRecord {
        id: ev.id,
        reason: problem.reason,
        detail: problem.detail,
        script_output: problem.script_output,
        source: ev.source,
        source_ref: ev.source_ref.clone(),
        raw_key: ev.raw_key.clone(),
        received_at: ev.id.received_at(),
        expires_at: ctx.layout.expires_at(ev.id),
        quarantined_at: ctx.clock.now(),
    };
    let key = layout::quarantine_key(ev.id);
    let body = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
    let opts = PutOptions {
        content_type: Some("application/json".into()),
        ..PutOptions::for_image(
            ev.id,
            ev.source,
            &ev.sha256,
            record.expires_at,
            "application/json",
        )
    };
    ctx.outputs.put(&key, body, &opts).await?;
    ctx.outputs.erased_meanwhile(ev.id, &[key]).await?;
    Ok(())
}

/// The script runner in use, swappable while images are in flight: each
/// image keeps the runner it started with; the old one (and its stream
/// workers) goes when its last image finishes.
#[derive(Debug, Clone)]
pub struct ScriptSlot {
    current: Arc<std::sync::RwLock<Option<Arc<ScriptRunner>>>>,
    slots: usize,
}

impl ScriptSlot {
    fn new(cfg: Option<&crate::ScriptConfig>, slots: usize) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(
                cfg.map(|c| Arc::new(ScriptRunner::new(c, slots))),
            )),
            slots,
        }
    }

    pub fn current(&self) -> Option<Arc<ScriptRunner>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Use `cfg` for images that start from now on; returns the new version.
    pub fn replace(&self, cfg: Option<&crate::ScriptConfig>) -> Option<String> {
        let runner = cfg.map(|c| Arc::new(ScriptRunner::new(c, self.slots)));
        let version = runner.as_ref().map(|r| r.version());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = runner;
        version
    }
}
