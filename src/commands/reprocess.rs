//! `imgpipe reprocess`: the current script again over images still kept.

use std::process::ExitCode;

use crate::config::Config;
use anyhow::Result;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use processor::reprocess;

use super::{check_script, open_lake};

pub async fn run(
    config: Config,
    since: Option<DateTime<Utc>>,
    script_version: Option<String>,
) -> Result<ExitCode> {
    check_script(&config)?;
    let selection = reprocess::Selection {
        since,
        script_version,
    };
    let store = open_lake(&config, false).await?;
    let runner = reprocess::runner(&config.processor)?;
    let version = runner.version();
    let layout = config.layout();
    let todo = reprocess::select(
        &store,
        &config.processor,
        &layout,
        Utc::now(),
        &selection,
        &version,
    )
    .await?;
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(todo.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (config, store, runner) = (&config, &store, &runner);
    let results: Vec<bool> = futures::stream::iter(todo)
        .map(|manifest| async move {
            let id = manifest.id;
            let result =
                reprocess::reprocess_one(store, &config.processor, runner, manifest).await;
            if let Err(e) = &result {
                tracing::warn!(%id, error = %e, "reprocessing failed; the image keeps its previous fields");
            }
            result.is_ok_and(|done| done)
        })
        .buffer_unordered(config.processor.script_slots())
        .inspect(|_| bar.inc(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let done = results.iter().filter(|ok| **ok).count();
    println!(
        "reprocessed {done} of {} images with script version {version} ({} failed or gone)",
        results.len(),
        results.len() - done
    );
    Ok(ExitCode::SUCCESS)
}
