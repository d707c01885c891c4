//! `imgpipe bridge`: the Kafka bridge alone.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use lake::SystemClock;

use crate::config::Config;

use super::{open_lake, require_kafka, termination};
use crate::{kafka, telemetry};

pub async fn run(config: Config, enforce_retention: bool) -> Result<ExitCode> {
    require_kafka(&config, "bridge")?;
    let store = open_lake(&config, true).await?;
    kafka::prepare_topics(&config, enforce_retention, true).await?;
    let events = kafka::events(&config)?;
    let telemetry = telemetry::Listener::start(
        config.telemetry.listen,
        telemetry::metrics_recorder()?,
        store.clone(),
    )
    .await?;
    let intake = kafka::intake(&config, store, Arc::new(SystemClock), events);
    println!(
        "imgpipe bridge: {} → {} (events on {})",
        config.kafka.topic,
        intake.location(),
        config.kafka.events_topic
    );
    let report = kafka::run_bridge(&config, intake, termination()).await?;
    println!(
        "imgpipe bridge: stopped after {} images, {} redeliveries, {} dead letters",
        report.images, report.redelivered, report.dead_letters
    );
    telemetry.stop().await?;
    Ok(ExitCode::SUCCESS)
}
