//! Each command's wiring, one module per command; what several share
//! (opening the lake, signals, checks) lives here.

use std::{path::PathBuf, process::ExitCode};

use crate::config::Config;
use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::cli::{Command, KeysCommand, PoliciesCommand, RetentionCommand};

mod audit;
mod bridge;
mod erase;
mod keys;
mod policies;
mod process;
mod query;
mod reprocess;
mod retention;
mod serve;
mod sweep;
mod up;
mod verify;

/// Run one command; `config_file` is kept for SIGHUP reloads.
pub async fn run(
    command: Command,
    config: Config,
    config_file: Option<PathBuf>,
) -> Result<ExitCode> {
    match command {
        Command::Up {
            listen,
            enforce_retention,
        } => up::run(config, listen, config_file, enforce_retention).await,
        Command::Serve { listen } => serve::run(config, listen).await,
        Command::Bridge { enforce_retention } => bridge::run(config, enforce_retention).await,
        Command::Process => process::run(config).await,
        Command::Sweep { once, now } => sweep::run(config, once, now).await,
        Command::Retention {
            command:
                RetentionCommand::Lifecycle {
                    print,
                    apply,
                    format,
                },
        } => retention::lifecycle(config, print, apply, format).await,
        Command::Query {
            principal,
            policy,
            format,
            now,
            since,
            from,
            to,
            sql,
        } => {
            let window = query::Window { since, from, to };
            query::run(config, &principal, policy, format, now, window, &sql).await
        }
        Command::Policies { command } => match command {
            PoliciesCommand::Render { policy, format } => policies::render(policy, format),
            PoliciesCommand::GlueTable => policies::glue_table(),
            PoliciesCommand::TaskAccess => policies::task_access(),
            PoliciesCommand::Plan(args) => policies::lake_formation(args, false).await,
            PoliciesCommand::Apply(args) => policies::lake_formation(args, true).await,
        },
        Command::Reprocess {
            since,
            script_version,
        } => reprocess::run(config, since, script_version).await,
        Command::Erase { id } => erase::run(config, id).await,
        Command::Keys {
            command: KeysCommand::Hash { key },
        } => keys::hash(key),
        Command::Verify { now, grace, format } => verify::run(config, now, grace, format).await,
        Command::Audit { now, format } => audit::run(config, now, format).await,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A future that resolves once `rx` says stop: one per task to stop.
pub fn stopped(
    rx: &watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// The configured lake; `ping` for the long-running commands, so a lake
/// that does not answer stops them at start rather than at the first image.
pub async fn open_lake(config: &Config, ping: bool) -> Result<lake::SharedStore> {
    let store = lake::store::open(&config.lake)
        .await
        .context("opening the lake")?;
    if ping {
        store.ping().await.context("the lake does not answer")?;
    }
    Ok(store)
}

pub fn require_kafka(config: &Config, command: &str) -> Result<()> {
    if config.kafka.brokers.is_none() {
        anyhow::bail!(
            "imgpipe {command} needs Kafka: set [kafka] brokers in the config or IMGPIPE_KAFKA_BROKERS"
        );
    }
    Ok(())
}

/// A configured script runs only in its sandbox, unless the config says
/// `sandbox = "none"`.
pub fn check_script(config: &Config) -> Result<()> {
    if let Some(script) = &config.processor.script {
        processor::script::check_sandbox(script)?;
    }
    Ok(())
}

/// Exit status of a check: 1 names a violation, not a crash.
pub fn passed(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
