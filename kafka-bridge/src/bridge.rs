//! The bridge: the image topic → `raw/` + `ImageReceived`, as a consumer
//! group. Each message is stored (or dead-lettered) before its offset may
//! be committed; images are stored concurrently within a byte budget, and
//! when the budget is spent the bridge takes no further message until
//! images are stored (librdkafka's prefetch queue is bounded too, see
//! `client.rs`). It does not pause partitions: with a paused-then-resumed
//! assignment the consumer stopped receiving for good (seen on tansu).

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use lake::config::S3Config;

use crate::KafkaConfig;

use rdkafka::{
    Message as _,
    consumer::{CommitMode, StreamConsumer},
    error::KafkaError,
    message::{Headers, OwnedMessage},
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

use crate::{
    claim::{ClaimChecks, ClaimError},
    dead_letter::DeadLetters,
    group::{self, Commits, GroupContext},
    intake::{Intake, IntakeError, Stored},
    message::{self, DeadLetterReason, Inbound, Rejected},
    telemetry,
};

/// How the bridge ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BridgeReport {
    pub images: u64,
    pub redelivered: u64,
    pub dead_letters: u64,
}

#[derive(Debug)]
struct Ctx {
    intake: Intake,
    claims: ClaimChecks,
    dead_letters: DeadLetters,
    max_bytes: u64,
}

enum Handled {
    Stored(Stored),
    DeadLettered,
}

pub struct Bridge {
    consumer: StreamConsumer<GroupContext>,
    commits: Arc<Commits>,
    ctx: Arc<Ctx>,
    cfg: KafkaConfig,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("topic", &self.cfg.topic)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Subscribe to `[kafka] topic` as `[kafka] group`; claim-checks are
    /// fetched with the lake's S3 settings when the lake is on S3.
    pub fn new(
        cfg: &KafkaConfig,
        lake_s3: Option<&S3Config>,
        intake: Intake,
    ) -> Result<Self, KafkaError> {
        let cfg = cfg.clone();
        let (consumer, commits) = group::join(
            &cfg,
            "bridge",
            &cfg.group,
            &cfg.topic,
            cfg.max_inflight_bytes,
        )?;
        Ok(Self {
            consumer,
            commits,
            ctx: Arc::new(Ctx {
                claims: ClaimChecks::new(lake_s3, &cfg),
                dead_letters: DeadLetters::new(&cfg)?,
                intake,
                max_bytes: cfg.max_image_bytes,
            }),
            cfg,
        })
    }

    /// Consume until `shutdown`; then commit what is durable and stop.
    /// Work still in flight is abandoned uncommitted: redelivered later.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> BridgeReport {
        let Self {
            consumer,
            commits,
            ctx,
            cfg,
        } = self;
        let budget_kib = u32::try_from(cfg.max_inflight_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let budget = Arc::new(Semaphore::new(budget_kib as usize));
        let mut tasks: JoinSet<(OwnedMessage, Handled)> = JoinSet::new();
        let mut report = BridgeReport::default();
        let mut commit_tick = tokio::time::interval(cfg.commit_interval);
        tokio::pin!(shutdown);
        tracing::info!(topic = %cfg.topic, group = %cfg.group, "bridge consuming");
        // A message waiting for budget; no other is taken meanwhile.
        let mut waiting: Option<(OwnedMessage, u32)> = None;
        loop {
            let waiting_kib = waiting.as_ref().map_or(1, |w| w.1);
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    finish(&commits, done, &mut report);
                }
                _ = commit_tick.tick() => commits.commit(&consumer, CommitMode::Async),
                permit = budget.clone().acquire_many_owned(waiting_kib), if waiting.is_some() => {
                    let (Ok(permit), Some((msg, _))) = (permit, waiting.take()) else {
                        break;
                    };
                    commits.started(msg.topic(), msg.partition(), msg.offset());
                    tasks.spawn(handle(ctx.clone(), msg, permit));
                }
                received = consumer.recv(), if waiting.is_none() => {
                    let msg = match received {
                        Ok(m) => m.detach(),
                        Err(e) => {
                            tracing::warn!(error = %e, "consuming from Kafka");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    telemetry::message();
                    // A claim-check costs the largest image it may fetch.
                    let size = message::budget_bytes(msg.payload().unwrap_or_default(), cfg.max_image_bytes);
                    let kib = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, budget_kib);
                    match budget.clone().try_acquire_many_owned(kib) {
                        Ok(permit) => {
                            commits.started(msg.topic(), msg.partition(), msg.offset());
                            tasks.spawn(handle(ctx.clone(), msg, permit));
                        }
                        // Budget spent: take nothing more until images are stored.
                        Err(_) => {
                            telemetry::paused();
                            waiting = Some((msg, kib));
                        }
                    }
                }
            }
        }
        // What finished by now is committed; the rest comes back next time.
        while let Some(done) = tasks.try_join_next() {
            finish(&commits, done, &mut report);
        }
        tasks.abort_all();
        commits.commit(&consumer, CommitMode::Sync);
        tracing::info!(
            images = report.images,
            redelivered = report.redelivered,
            dead_letters = report.dead_letters,
            "bridge stopped"
        );
        report
    }
}

fn finish(
    commits: &Commits,
    done: Result<(OwnedMessage, Handled), tokio::task::JoinError>,
    report: &mut BridgeReport,
) {
    let (msg, handled) = match done {
        Ok(d) => d,
        Err(e) => {
            // Its offset stays pending: redelivered after a restart.
            tracing::error!(error = %e, "message task failed");
            return;
        }
    };
    match handled {
        Handled::Stored(Stored::New(_)) => {
            report.images += 1;
            telemetry::stored(false);
        }
        Handled::Stored(Stored::Redelivered(_)) => {
            report.redelivered += 1;
            telemetry::stored(true);
        }
        // Counted (and logged) by reason when it was dead-lettered.
        Handled::DeadLettered => report.dead_letters += 1,
    }
    commits.finished(msg.topic(), msg.partition(), msg.offset());
}

/// Store the message's image, or dead-letter it. Failures to store or to
/// dead-letter are retried until they pass: the message cannot be skipped,
/// and its partition waits (within the budget) rather than losing it.
async fn handle(
    ctx: Arc<Ctx>,
    msg: OwnedMessage,
    _permit: OwnedSemaphorePermit,
) -> (OwnedMessage, Handled) {
    let position = format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset());
    let stored = match decide(&ctx, &msg).await {
        Ok(image) => {
            until_ok("storing image", &position, || async {
                match ctx
                    .intake
                    .store(
                        image.data.clone(),
                        image.format,
                        &image.dedup_key,
                        &position,
                        image.arrived_at,
                    )
                    .await
                {
                    // Its period ended while it waited for storage: refused
                    // like any other message that cannot be kept.
                    Err(IntakeError::Expired(e)) => Ok(Err(expired(e))),
                    Ok(stored) => Ok(Ok(stored)),
                    Err(e) => Err(e),
                }
            })
            .await
        }
        Err(rejected) => Err(rejected),
    };
    let handled = match stored {
        Ok(stored) => Handled::Stored(stored),
        Err(rejected) => {
            telemetry::dead_letter(&position, rejected.reason.as_str(), &rejected.detail);
            until_ok("dead-lettering", &position, || {
                ctx.dead_letters.send(&msg, &rejected)
            })
            .await;
            Handled::DeadLettered
        }
    };
    (msg, handled)
}

/// Retry `op` with capped exponential backoff until it succeeds; only
/// shutdown (which aborts the task) ends it otherwise.
async fn until_ok<T, E: std::fmt::Display, F, Fut>(what: &str, position: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut wait = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, ?wait, %position, "{what} failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// What a message brings into the lake.
struct Image {
    data: bytes::Bytes,
    format: lake::sniff::ImageFormat,
    dedup_key: String,
    /// The message's timestamp: when the image arrived, which starts its
    /// retention period (a claim-check's too: not its object's time).
    arrived_at: Option<DateTime<Utc>>,
}

fn expired(e: lake::admission::Expired) -> Rejected {
    Rejected::new(DeadLetterReason::Expired, e.to_string())
}

/// The time a message carries: the producer's (`CreateTime`) or the
/// broker's (`LogAppendTime`), whichever its topic keeps.
fn arrived_at(msg: &OwnedMessage) -> Option<DateTime<Utc>> {
    msg.timestamp()
        .to_millis()
        .and_then(DateTime::from_timestamp_millis)
}

/// The image a message carries (fetched, for a claim-check), or why not.
async fn decide(ctx: &Ctx, msg: &OwnedMessage) -> Result<Image, Rejected> {
    // Decided first: an expired claim-check is not even fetched.
    let arrived_at = arrived_at(msg);
    ctx.intake.receipt_time(arrived_at).map_err(expired)?;
    let headers: Vec<(&str, &[u8])> = msg
        .headers()
        .map(|h| h.iter().filter_map(|h| Some((h.key, h.value?))).collect())
        .unwrap_or_default();
    let view = message::Message {
        topic: msg.topic(),
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key(),
        headers: &headers,
        payload: msg.payload(),
    };
    match message::parse(&view, ctx.max_bytes)? {
        Inbound::Image {
            data,
            format,
            dedup_key,
        } => Ok(Image {
            data,
            format,
            dedup_key,
            arrived_at,
        }),
        Inbound::ClaimCheck {
            bucket,
            key,
            dedup_key,
        } => {
            // Passing S3 trouble is retried like storing is: a claim-check
            // is not dead-lettered because the producer's S3 blinked.
            let position = format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset());
            let fetched = until_ok("fetching a claim-check", &position, || async {
                match ctx.claims.fetch(&bucket, &key).await {
                    Err(ClaimError::Rejected(r)) => Ok(Err(r)),
                    Ok(data) => Ok(Ok(data)),
                    Err(e @ ClaimError::Unavailable { .. }) => Err(e),
                }
            })
            .await;
            let data = fetched?;
            let format = message::image_format(&data)?;
            Ok(Image {
                data,
                format,
                dedup_key,
                arrived_at,
            })
        }
    }
}
