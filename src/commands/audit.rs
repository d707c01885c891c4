//! `imgpipe audit`: nothing in the lake past expiry, and no store that
//! could keep data longer.

use std::process::ExitCode;

use crate::config::Config;
use anyhow::Result;
use chrono::{DateTime, Utc};

use super::{open_lake, passed};
use crate::{cli::ReportFormat, kafka};

pub async fn run(
    config: Config,
    now: Option<DateTime<Utc>>,
    format: ReportFormat,
) -> Result<ExitCode> {
    let report = match report(&config, now).await {
        Ok(report) => report,
        Err(e) => {
            // An audit that cannot run is an alarm too.
            tracing::error!(event = "audit_failed", error = %e, "the audit could not run");
            return Err(e);
        }
    };
    match format {
        ReportFormat::Text => println!("{report}"),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if !report.passed() {
        tracing::error!(
            event = "audit_failed",
            violations = report.violations.len(),
            "the audit found violations"
        );
    }
    Ok(passed(report.passed()))
}

async fn report(
    config: &Config,
    now: Option<DateTime<Utc>>,
) -> Result<retention::audit::AuditReport> {
    let store = open_lake(config, false).await?;
    let now = now.unwrap_or_else(Utc::now);
    let mut report =
        retention::audit::audit(&store, config.layout(), config.scratch().as_ref(), now).await?;
    if let Some(s3) = &config.lake.s3 {
        // S3's lifecycle rules must back the sweeper up.
        let bucket = lake::store::S3Store::connect(s3).await?;
        let actual = retention::lifecycle::read(&bucket).await?;
        let wanted = retention::lifecycle::rules(config.retention());
        report.violations.extend(
            retention::lifecycle::missing(&wanted, &actual)
                .into_iter()
                .map(|detail| retention::audit::Violation::Backstop { detail }),
        );
    }
    if config.kafka.brokers.is_some() {
        report.violations.extend(kafka::audit_topics(config).await?);
    }
    Ok(report)
}
