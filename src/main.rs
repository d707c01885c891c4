//! `imgpipe`: the one CLI for every stage. The command line is in
//! `cli.rs`, each command's wiring in `commands/`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

mod cli;
mod commands;
mod config;
mod kafka;
mod telemetry;

fn main() -> Result<ExitCode> {
    // Descriptors we inherited without close-on-exec would otherwise leak
    // into the customer's script (everything Rust opens is close-on-exec).
    // Done first, while this process has one thread.
    close_fds::set_fds_cloexec(3, &[]);
    let cli = cli::Cli::parse();
    telemetry::init_logging(cli.log_format);
    let mut config = config::Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.lake.data_dir = dir;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(commands::run(cli.command, config, cli.config))
}
