//! `imgpipe query --as <principal>`: SQL over the metadata, through the
//! principal's view.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use chrono::{DateTime, Utc};
use datafusion::arrow::{csv, json, util::pretty};
use lake::Config;

use super::open_lake;
use crate::cli::QueryFormat;

pub async fn run(
    config: Config,
    principal: &str,
    policy: Option<PathBuf>,
    format: QueryFormat,
    now: Option<DateTime<Utc>>,
    sql: &str,
) -> Result<ExitCode> {
    let policy = policies::Policy::load(policy.as_deref())?;
    // Refuse an unknown principal before reading anything.
    policy.principal(principal)?;
    let store = open_lake(&config, false).await?;
    let batches = policies::query::load(&store).await?;
    let now = now.unwrap_or_else(Utc::now);
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
