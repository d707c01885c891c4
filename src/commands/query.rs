//! `imgpipe query --as <principal>`: SQL over the metadata, through the
//! principal's view.

use std::{path::PathBuf, process::ExitCode};

use crate::config::Config;
use anyhow::Result;
use chrono::{DateTime, Utc};
use datafusion::arrow::{csv, json, util::pretty};

use super::open_lake;
use crate::cli::QueryFormat;

/// Which receipt times to read: the hour partitions outside it are never
/// listed or read, so a "last hour" query costs the same in any lake.
#[derive(Debug, Default)]
pub struct Window {
    pub since: Option<std::time::Duration>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Window {
    /// `[from, to)`, within what can exist: nothing older than the
    /// retention period, nothing received after `now`.
    fn range(
        &self,
        now: DateTime<Utc>,
        retention: chrono::Duration,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        let earliest = now - retention;
        let from = match (self.since, self.from) {
            (Some(since), _) => now - chrono::Duration::from_std(since).unwrap_or(retention),
            (None, Some(from)) => from,
            (None, None) => earliest,
        };
        let to = self.to.unwrap_or(now + chrono::Duration::seconds(1));
        (
            from.max(earliest),
            to.min(now + chrono::Duration::seconds(1)),
        )
    }
}

pub async fn run(
    config: Config,
    principal: &str,
    policy: Option<PathBuf>,
    format: QueryFormat,
    now: Option<DateTime<Utc>>,
    window: Window,
    sql: &str,
) -> Result<ExitCode> {
    let policy = policies::Policy::load(policy.as_deref())?;
    // Refuse an unknown principal before reading anything.
    policy.principal(principal)?;
    let store = open_lake(&config, false).await?;
    let now = now.unwrap_or_else(Utc::now);
    let (from, to) = window.range(now, config.retention());
    let batches = if from < to {
        policies::query::load_range(&store, from, to).await?
    } else {
        Vec::new()
    };
    // The files of an hour hold whole hours: rows outside the window are
    // dropped, so the window means what it says.
    let batches = policies::query::received_within(batches, from, to)?;
    let result = policies::query::run(&policy, principal, batches, now, sql).await?;
    let mut out = std::io::stdout().lock();
    match format {
        QueryFormat::Table => println!("{}", pretty::pretty_format_batches(&result)?),
        QueryFormat::Csv => {
            let mut writer = csv::Writer::new(&mut out);
            for batch in &result {
                writer.write(batch)?;
            }
        }
        QueryFormat::Json => {
            let mut writer = json::ArrayWriter::new(&mut out);
            for batch in &result {
                writer.write(batch)?;
            }
            writer.finish()?;
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}
