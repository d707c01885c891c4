//! `imgpipe verify`: the lake's invariants, each violation naming its image.

use std::process::ExitCode;

use crate::config::Config;
use anyhow::Result;
use chrono::{DateTime, Utc};

use super::{open_lake, passed};
use crate::cli::ReportFormat;

pub async fn run(
    config: Config,
    now: Option<DateTime<Utc>>,
    grace: humantime::Duration,
    format: ReportFormat,
) -> Result<ExitCode> {
    let store = open_lake(&config, false).await?;
    let grace = chrono::Duration::from_std(grace.into())?;
    let report =
        retention::verify::verify(&store, config.layout(), now.unwrap_or_else(Utc::now), grace)
            .await?;
    match format {
        ReportFormat::Text => println!("{report}"),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(passed(report.passed()))
}
