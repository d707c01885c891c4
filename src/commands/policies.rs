//! `imgpipe policies render|glue-table|task-access|plan|apply`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;

use crate::cli::{LakeFormationArgs, PolicyFormat};

pub fn render(policy: Option<PathBuf>, format: PolicyFormat) -> Result<ExitCode> {
    let policy = policies::Policy::load(policy.as_deref())?;
    match format {
        PolicyFormat::Terraform => println!(
            "{}",
            serde_json::to_string_pretty(&policies::terraform::render(&policy))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn glue_table() -> Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(&policies::glue::table_terraform())?
    );
    Ok(ExitCode::SUCCESS)
}

pub fn task_access() -> Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(&lake::access::terraform())?
    );
    Ok(ExitCode::SUCCESS)
}

/// `plan` prints the difference between Lake Formation and the policy;
/// `apply` also makes it.
pub async fn lake_formation(args: LakeFormationArgs, apply: bool) -> Result<ExitCode> {
    use policies::lake_formation as lf;
    let policy = policies::Policy::load(args.policy.as_deref())?;
    let target = lf::Target {
        catalog_id: args.catalog_id,
        database: args.database,
        table: args.table,
    };
    let client = lf::client(args.endpoint.as_deref(), std::time::Duration::from_secs(30)).await;
    let (want, left_to_terraform) = lf::desired(&policy);
    let live = lf::live(&client, &target, &policy).await?;
    let changes = lf::diff(&live, &want);
    for name in left_to_terraform {
        println!(
            "  {name}: row filter → data-cells filter, applied by Terraform (imgpipe policies render)"
        );
    }
    if changes.is_empty() {
        println!("No changes: Lake Formation matches the policy.");
        return Ok(ExitCode::SUCCESS);
    }
    for change in &changes {
        println!("{change}");
    }
    if !apply {
        println!(
            "Plan: {} changes. Run `imgpipe policies apply` to make them.",
            changes.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    lf::apply(&client, &target, &changes).await?;
    println!("Applied {} changes.", changes.len());
    Ok(ExitCode::SUCCESS)
}
