//! `imgpipe retention lifecycle`: the S3 lifecycle rules behind the sweeper.

use std::process::ExitCode;

use crate::config::Config;
use anyhow::{Context, Result};

use crate::cli::RulesFormat;

pub async fn lifecycle(
    config: Config,
    print: bool,
    apply: bool,
    format: RulesFormat,
) -> Result<ExitCode> {
    let rules = retention::lifecycle::rules(config.retention());
    if print {
        let out = match format {
            RulesFormat::Json => serde_json::to_value(&rules)?,
            RulesFormat::Terraform => retention::lifecycle::terraform(&rules),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    debug_assert!(apply);
    let s3 = config
        .lake
        .s3
        .as_ref()
        .context("lifecycle rules need an S3 lake: set [lake.s3] in the config")?;
    let store = lake::store::S3Store::connect(s3).await?;
    retention::lifecycle::apply(&store, &rules).await?;
    let actual = retention::lifecycle::read(&store).await?;
    let missing = retention::lifecycle::missing(&rules, &actual);
    if !missing.is_empty() {
        anyhow::bail!(
            "the bucket reports different rules after applying them:\n{}",
            missing.join("\n")
        );
    }
    println!(
        "applied {} lifecycle rules to s3://{} and read them back",
        rules.len(),
        s3.bucket
    );
    Ok(ExitCode::SUCCESS)
}
