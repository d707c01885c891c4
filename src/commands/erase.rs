//! `imgpipe erase <id>`: every byte of one image, now.

use std::process::ExitCode;

use crate::config::Config;
use anyhow::Result;

use super::open_lake;

pub async fn run(config: Config, id: lake::ImageId) -> Result<ExitCode> {
    let store = open_lake(&config, false).await?;
    match retention::erase::erase(&store, id, chrono::Utc::now()).await? {
        Some(r) => println!(
            "erased {id}: {} objects, {} metadata rows",
            r.objects, r.rows
        ),
        None => anyhow::bail!("image {id} not found (unknown, expired or already erased)"),
    }
    Ok(ExitCode::SUCCESS)
}
