//! `imgpipe process`: a processor fed by the events topic.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use lake::SystemClock;

use crate::config::Config;

use super::{check_script, open_lake, require_kafka, termination};
use crate::{kafka, telemetry};

pub async fn run(config: Config) -> Result<ExitCode> {
    require_kafka(&config, "process")?;
    check_script(&config)?;
    let store = open_lake(&config, true).await?;
    let telemetry = telemetry::Listener::start(
        config.telemetry.listen,
        telemetry::metrics_recorder()?,
        store.clone(),
    )
    .await?;
    println!(
        "imgpipe process: {} (group {}) → {}",
        config.kafka.events_topic,
        config.kafka.process_group,
        store.location()
    );
    let handed = kafka::run_processor(&config, store, Arc::new(SystemClock), termination()).await?;
    println!("imgpipe process: stopped after {handed} events");
    telemetry.stop().await?;
    Ok(ExitCode::SUCCESS)
}
