//! `imgpipe sweep`: delete what is past retention, once or every
//! `retention.sweep_interval`.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use chrono::{DateTime, Utc};
use lake::{SharedClock, SystemClock};

use crate::config::Config;
use tokio::sync::watch;

use super::{open_lake, stopped, termination};
use crate::telemetry;

pub async fn run(config: Config, once: bool, now: Option<DateTime<Utc>>) -> Result<ExitCode> {
    let store = open_lake(&config, false).await?;
    let clock: SharedClock = match now {
        Some(at) => Arc::new(lake::FixedClock::new(at)),
        None => Arc::new(SystemClock),
    };
    let mut sweeper = retention::Sweeper::new(store.clone(), clock, config.retention())
        .with_scratch(config.scratch());
    if once || now.is_some() {
        // By hand: also the whole-index backstop the running sweeper skips.
        sweeper = sweeper.walking_the_index_whole();
        // A spinner for people; logs and the final line for everyone else.
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr())
            .then(indicatif::ProgressBar::new_spinner);
        if let Some(bar) = bar.clone() {
            sweeper = sweeper.with_progress(Arc::new(move |r, area| {
                bar.set_message(format!(
                    "{} done: scanned {}, purged {} ({} bytes)",
                    area.prefix(),
                    r.scanned,
                    r.purged,
                    r.bytes_purged
                ));
                bar.tick();
            }));
        }
        let report = sweeper.sweep_once().await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        println!("{}", report?);
        return Ok(ExitCode::SUCCESS);
    }
    let telemetry = telemetry::Listener::start(
        config.telemetry.listen,
        telemetry::metrics_recorder()?,
        store,
    )
    .await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(sweeper.run_every(config.retention.sweep_interval, stopped(&stop_rx)));
    termination().await;
    let _ = stop_tx.send(true);
    run.await?;
    telemetry.stop().await?;
    Ok(ExitCode::SUCCESS)
}
