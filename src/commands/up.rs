//! `imgpipe up`: the whole pipeline in one process.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use lake::{SharedClock, SystemClock};

use crate::config::Config;
use tokio::sync::{mpsc, watch};

use super::{check_script, open_lake, serve::bind_api, stopped, termination};
use crate::{cli::ListenArgs, kafka, telemetry};

pub async fn run(
    mut config: Config,
    listen: ListenArgs,
    config_file: Option<PathBuf>,
    enforce_retention: bool,
) -> Result<ExitCode> {
    listen.apply(&mut config);
    config.api.check_listen()?;
    check_script(&config)?;
    let store = open_lake(&config, true).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let (events_tx, events_rx) = mpsc::channel(config.processor.queue_capacity);
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = telemetry::metrics_recorder()?;
    let telemetry =
        telemetry::Listener::start(config.telemetry.listen, metrics.clone(), store.clone()).await?;

    let processor = processor::Processor::new(
        &config.processor,
        config.layout(),
        store.clone(),
        clock.clone(),
    )
    .context("starting the processor pool")?;
    #[cfg(unix)]
    tokio::spawn(reload_script_on_hangup(
        processor.script_slot(),
        config_file,
    ));
    let source =
        processor::source::Embedded::new(store.clone(), clock.clone(), config.layout(), events_rx);
    // The status route's `processing`: what this source has handed out.
    let in_progress = source.in_progress();
    let processing = tokio::spawn(processor.run(source, stopped(&stop_rx)));

    let sweeper = retention::Sweeper::new(store.clone(), clock.clone(), config.retention())
        .with_scratch(config.scratch());
    let sweeping =
        tokio::spawn(sweeper.run_every(config.retention.sweep_interval, stopped(&stop_rx)));

    let bridging = match config.kafka.brokers {
        Some(_) => {
            kafka::prepare_topics(&config, enforce_retention, false).await?;
            let intake = kafka::intake(
                &config,
                store.clone(),
                clock.clone(),
                Arc::new(events_tx.clone()),
            );
            let cfg = config.clone();
            let stop = stopped(&stop_rx);
            Some(tokio::spawn(async move {
                kafka::run_bridge(&cfg, intake, stop).await
            }))
        }
        None => None,
    };

    let api = bind_api(
        &config,
        store.clone(),
        clock,
        Arc::new(events_tx),
        in_progress,
        metrics,
    )
    .await?;
    let url = api.url();
    let serving = tokio::spawn(api.run(stopped(&stop_rx)));
    println!("imgpipe up: listening on {url}");
    println!("imgpipe up: lake at {}", store.location());
    if bridging.is_some() {
        println!(
            "imgpipe up: consuming Kafka topic {} (dead letters to {})",
            config.kafka.topic, config.kafka.dlq_topic
        );
    }
    println!(
        "imgpipe up: upload page at {url}/ ; or curl --data-binary @photo.jpg {url}/v1/images"
    );

    termination().await;
    tracing::info!(
        "stopping: finishing uploads in progress, draining the processor, flushing metadata"
    );
    let _ = stop_tx.send(true);
    serving.await.context("API task")?.context("API server")?;
    if let Some(bridging) = bridging {
        bridging.await.context("bridge task")??;
    }
    processing.await.context("processor task")?;
    sweeping.await.context("sweeper task")?;
    telemetry.stop().await?;
    tracing::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP: read the config again and use its `[processor.script]` for
/// images that start from now on; images in flight finish with the old one.
#[cfg(unix)]
async fn reload_script_on_hangup(slot: processor::ScriptSlot, config_file: Option<PathBuf>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    while hangups.recv().await.is_some() {
        match Config::load(config_file.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|config| check_script(&config).map(|()| config))
        {
            Ok(config) => {
                let version = slot.replace(config.processor.script.as_ref());
                tracing::info!(?version, "processing script reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the current script")
            }
        }
    }
}
