//! The Kafka side of the CLI: the bridge inside `imgpipe up` or alone
//! (`imgpipe bridge`), distributed processing (`imgpipe process`), and the
//! topics' retention for start-up checks and `imgpipe audit`.

use std::{future::Future, sync::Arc};

use anyhow::{Context, Result, bail};
use kafka_bridge::{Bridge, BridgeReport, Intake, topics};
use lake::{EventSink, SharedClock, SharedStore};

use crate::config::Config;

/// Create the topics the bridge owns, then check every topic the bridge
/// touches: warn, or refuse to start under `enforce`.
pub async fn prepare_topics(config: &Config, enforce: bool, distributed: bool) -> Result<()> {
    let k = &config.kafka;
    topics::reach(k).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Kafka brokers {}: {e}",
            k.brokers.as_deref().unwrap_or_default()
        )
    })?;
    let admin = topics::admin(k).context("creating the Kafka admin client")?;
    topics::ensure_owned(&admin, k, config.retention.period)
        .await
        .map_err(|e| topics::AdminError::new(&admin, e))
        .context("creating the dead-letter and event topics")?;
    let mut names = vec![k.topic.as_str(), k.dlq_topic.as_str()];
    if distributed {
        names.push(&k.events_topic);
    }
    let checked = topics::check(&admin, k, &names, config.retention.period)
        .await
        .map_err(|e| topics::AdminError::new(&admin, e))
        .context("reading the topics' retention settings")?;
    let problems: Vec<String> = checked
        .iter()
        .filter_map(|t| Some(format!("topic {}: {}", t.topic, t.problem.as_ref()?)))
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    if enforce || k.enforce_retention {
        bail!(
            "refusing to run: Kafka could keep data past the retention period:\n  {}\n\
             set retention.ms and segment.ms on these topics so that their sum stays \
             under the period, and message.timestamp.type=LogAppendTime (see README, Kafka)",
            problems.join("\n  ")
        );
    }
    for p in problems {
        tracing::warn!("{p} (start with --enforce-retention to refuse)");
    }
    Ok(())
}

/// Retention problems of every topic, as audit violations.
pub async fn audit_topics(config: &Config) -> Result<Vec<retention::audit::Violation>> {
    let k = &config.kafka;
    let admin = topics::admin(k).context("creating the Kafka admin client")?;
    let names = [
        k.topic.as_str(),
        k.dlq_topic.as_str(),
        k.events_topic.as_str(),
    ];
    let checked = topics::check(&admin, k, &names, config.retention.period)
        .await
        .map_err(|e| topics::AdminError::new(&admin, e))
        .context("reading the topics' retention settings")?;
    Ok(checked
        .into_iter()
        .filter_map(|t| {
            Some(retention::audit::Violation::Backstop {
                detail: format!("kafka topic {}: {}", t.topic, t.problem?),
            })
        })
        .collect())
}

/// Distributed mode's event sink: the events topic.
pub fn events(config: &Config) -> Result<Arc<dyn EventSink>> {
    Ok(Arc::new(
        kafka_bridge::KafkaEvents::new(&config.kafka).context("creating the Kafka producer")?,
    ))
}

pub fn intake(
    config: &Config,
    store: SharedStore,
    clock: SharedClock,
    events: Arc<dyn EventSink>,
) -> Intake {
    Intake::new(lake::admission::Admission::new(
        store,
        clock,
        config.layout(),
        events,
    ))
}

/// The bridge, until `shutdown`.
pub async fn run_bridge(
    config: &Config,
    intake: Intake,
    shutdown: impl Future<Output = ()>,
) -> Result<BridgeReport> {
    let bridge = Bridge::new(&config.kafka, config.lake.s3.as_ref(), intake)
        .context("starting the Kafka consumer")?;
    Ok(bridge.run(shutdown).await)
}

/// `imgpipe process`: a processor fed by the events topic, until
/// `shutdown`. Returns how many events it took.
pub async fn run_processor(
    config: &Config,
    store: SharedStore,
    clock: SharedClock,
    shutdown: impl Future<Output = ()>,
) -> Result<u64> {
    let events = kafka_bridge::EventConsumer::new(&config.kafka, config.processor.queue_capacity)
        .context("starting the Kafka consumer")?;
    let processor = processor::Processor::new(&config.processor, config.layout(), store, clock)
        .context("starting the processor pool")?;
    Ok(processor.run(events, shutdown).await)
}
