//! `imgpipe`: the one CLI for every stage.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lake::{Config, SharedClock, SystemClock, inflight::InFlight};
use tokio::sync::{mpsc, watch};

mod kafka;

#[derive(Debug, Parser)]
#[command(
    name = "imgpipe",
    version,
    about = "Image ingestion pipeline with enforced retention"
)]
struct Cli {
    /// Config file (TOML); `IMGPIPE_<SECTION>__<KEY>` env vars override it.
    #[arg(long, global = true, env = "IMGPIPE_CONFIG")]
    config: Option<PathBuf>,
    /// The local lake directory (the filesystem store), for every command.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline in one process: HTTP ingest, processor and
    /// sweeper, on the local filesystem lake unless `[lake.s3]` is set, and
    /// the Kafka bridge when `[kafka] brokers` is set.
    Up {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Refuse to start when a Kafka topic could keep messages past retention.
        #[arg(long)]
        enforce_retention: bool,
    },
    /// Distributed mode: the HTTP API alone, publishing `ImageReceived` to
    /// the events topic (needs `[kafka] brokers`).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// The Kafka bridge alone: `[kafka] topic` → the lake, events to
    /// `[kafka] events_topic` for `imgpipe process`.
    Bridge {
        /// Refuse to start when a topic could keep messages past retention.
        #[arg(long)]
        enforce_retention: bool,
    },
    /// Distributed mode: a processor fed by the events topic, one member
    /// of the `[kafka] process_group` consumer group.
    Process,
    /// Delete everything whose retention has passed (see `retention`).
    Sweep {
        /// Run one pass and exit instead of every `retention.sweep_interval`.
        #[arg(long)]
        once: bool,
        /// Evaluate expiry at this instant (RFC 3339) instead of now.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Run the current processing script again over images still within
    /// retention, replacing their script fields, outputs and rows.
    Reprocess {
        /// Only images received at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only images processed by this script version (default: every
        /// image not yet processed by the current version).
        #[arg(long)]
        script_version: Option<String>,
    },
    /// SQL over the lake's metadata (table `images`) as a principal of the
    /// policy: only the columns and rows its grants allow.
    Query {
        /// The principal to act as.
        #[arg(long = "as")]
        principal: String,
        /// The policy file (default: the shipped policies/default.toml).
        #[arg(long)]
        policy: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: QueryFormat,
        /// Evaluate retention at this instant instead of now.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        sql: String,
    },
    /// The Lake Formation policy.
    Policies {
        #[command(subcommand)]
        command: PoliciesCommand,
    },
    /// Retention settings of the stores themselves.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Erase every byte of one image now (raw, derived, quarantine record,
    /// idempotency records, its metadata row).
    Erase {
        /// The image id.
        id: lake::ImageId,
    },
    /// Check the lake's invariants: every accepted image ended exactly once
    /// (processed with one row in one Parquet file and the objects its row
    /// names, or quarantined) or is in flight; erased images left nothing;
    /// nothing is past expiry. Exits 1 naming each image that breaks one.
    Verify {
        /// Evaluate at this instant (RFC 3339) instead of now.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        /// Images received this recently may still be in flight.
        #[arg(long, default_value = "10m")]
        grace: humantime::Duration,
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
    /// API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check that nothing in the lake is past its expiry and that no store
    /// (bucket lifecycle, Kafka topic retention) could keep data longer;
    /// exits 1 with the list of violations otherwise.
    Audit {
        /// Evaluate at this instant (RFC 3339) instead of now.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print the SHA-256 to configure as `[[api.keys]] sha256` for a key
    /// (read from standard input when not given, so it stays out of the
    /// shell history).
    Hash { key: Option<String> },
}

#[derive(Debug, Subcommand)]
enum PoliciesCommand {
    /// Print the policy as Terraform JSON (aws_lakeformation_* resources).
    Render {
        #[arg(long)]
        policy: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "terraform")]
        format: PolicyFormat,
    },
    /// Print the Glue table `images` (from the metadata schema) as Terraform JSON.
    GlueTable,
    /// Compare the live Lake Formation tags and grants with the policy
    /// file and print the difference.
    Plan(LakeFormationArgs),
    /// Make the difference `plan` prints; a second apply changes nothing.
    Apply(LakeFormationArgs),
}

#[derive(Debug, clap::Args)]
struct LakeFormationArgs {
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The Glue database holding the table.
    #[arg(long)]
    database: String,
    #[arg(long, default_value = "images")]
    table: String,
    /// The Data Catalog's account id (default: the caller's account).
    #[arg(long)]
    catalog_id: Option<String>,
    /// Lake Formation endpoint (default: AWS, from the standard configuration).
    #[arg(long, env = "IMGPIPE_LAKEFORMATION_ENDPOINT")]
    endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PolicyFormat {
    Terraform,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum QueryFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// The S3 lifecycle rules behind the sweeper: print them, or apply them
    /// to the lake's bucket and check what the bucket then reports.
    Lifecycle {
        #[arg(long, conflicts_with = "apply", required_unless_present = "apply")]
        print: bool,
        #[arg(long)]
        apply: bool,
        #[arg(long, value_enum, default_value = "json")]
        format: RulesFormat,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RulesFormat {
    Json,
    Terraform,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

fn main() -> Result<()> {
    // Descriptors we inherited without close-on-exec would otherwise leak
    // into the customer's script (everything Rust opens is close-on-exec).
    // Done first, while this process has one thread.
    close_fds::set_fds_cloexec(3, &[]);
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMGPIPE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.lake.data_dir = dir;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up {
                listen,
                enforce_retention,
            } => {
                if let Some(addr) = listen {
                    config.api.listen = addr;
                }
                up(config, cli.config, enforce_retention).await
            }
            Command::Serve { listen } => {
                if let Some(addr) = listen {
                    config.api.listen = addr;
                }
                serve(config).await
            }
            Command::Bridge { enforce_retention } => bridge(config, enforce_retention).await,
            Command::Process => process(config).await,
            Command::Sweep { once, now } => sweep(config, once, now).await,
            Command::Retention {
                command:
                    RetentionCommand::Lifecycle {
                        print,
                        apply,
                        format,
                    },
            } => lifecycle(config, print, apply, format).await,
            Command::Query {
                principal,
                policy,
                format,
                now,
                sql,
            } => query(config, &principal, policy, format, now, &sql).await,
            Command::Policies {
                command:
                    PoliciesCommand::Render {
                        policy,
                        format: PolicyFormat::Terraform,
                    },
            } => {
                let policy = policies::Policy::load(policy.as_deref())?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&policies::terraform::render(&policy))?
                );
                Ok(())
            }
            Command::Policies {
                command: PoliciesCommand::Plan(args),
            } => lake_formation(args, false).await,
            Command::Policies {
                command: PoliciesCommand::Apply(args),
            } => lake_formation(args, true).await,
            Command::Policies {
                command: PoliciesCommand::GlueTable,
            } => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&policies::glue::table_terraform())?
                );
                Ok(())
            }
            Command::Reprocess {
                since,
                script_version,
            } => {
                reprocess(
                    config,
                    processor::reprocess::Selection {
                        since,
                        script_version,
                    },
                )
                .await
            }
            Command::Erase { id } => {
                let store = open_lake(&config, false).await?;
                match retention::erase::erase(&store, id, chrono::Utc::now()).await? {
                    Some(r) => println!(
                        "erased {id}: {} objects, {} metadata rows",
                        r.objects, r.rows
                    ),
                    None => {
                        anyhow::bail!("image {id} not found (unknown, expired or already erased)")
                    }
                }
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Hash { key },
            } => {
                let key = match key {
                    Some(k) => k,
                    None => {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line)?;
                        line.trim_end_matches(['\r', '\n']).to_owned()
                    }
                };
                anyhow::ensure!(key.len() >= 16, "an API key must be at least 16 characters");
                println!("{}", ingest_api::key_digest(&key));
                Ok(())
            }
            Command::Verify { now, grace, format } => {
                let store = open_lake(&config, false).await?;
                let grace = chrono::Duration::from_std(grace.into())?;
                let report = retention::verify::verify(
                    &store,
                    lake::Layout::new(config.retention()),
                    now.unwrap_or_else(chrono::Utc::now),
                    grace,
                )
                .await?;
                match format {
                    ReportFormat::Text => println!("{report}"),
                    ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                }
                if !report.passed() {
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::Audit { now, format } => {
                let passed = audit(config, now, format).await?;
                if !passed {
                    std::process::exit(1);
                }
                Ok(())
            }
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn termination() {
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

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// `imgpipe policies plan|apply`.
async fn lake_formation(args: LakeFormationArgs, apply: bool) -> Result<()> {
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
        return Ok(());
    }
    for change in &changes {
        println!("{change}");
    }
    if !apply {
        println!(
            "Plan: {} changes. Run `imgpipe policies apply` to make them.",
            changes.len()
        );
        return Ok(());
    }
    lf::apply(&client, &target, &changes).await?;
    println!("Applied {} changes.", changes.len());
    Ok(())
}

/// The configured lake; `ping` for the long-running commands, so a lake
/// that does not answer stops them at start rather than at the first image.
async fn open_lake(config: &Config, ping: bool) -> Result<lake::SharedStore> {
    let store = lake::store::open(&config.lake)
        .await
        .context("opening the lake")?;
    if ping {
        store.ping().await.context("the lake does not answer")?;
    }
    Ok(store)
}

fn require_kafka(config: &Config, command: &str) -> Result<()> {
    if config.kafka.brokers.is_none() {
        anyhow::bail!(
            "imgpipe {command} needs Kafka: set [kafka] brokers in the config or IMGPIPE_KAFKA_BROKERS"
        );
    }
    Ok(())
}

/// The policy the API's metadata listing enforces, with every principal
/// the API config names checked against it.
fn api_policy(config: &Config) -> Result<policies::Policy> {
    let policy = policies::Policy::load(config.api.policy.as_deref())?;
    let names = std::iter::once(&config.api.principal)
        .chain(config.api.key_principals.values())
        .chain(config.api.keys.iter().map(|k| &k.principal));
    for name in names {
        policy
            .principal(name)
            .with_context(|| format!("api.principal / api.keys / api.key_principals: {name:?}"))?;
    }
    Ok(policy)
}

/// The recorder for every later `metrics::` call, rendered at `/metrics`.
fn metrics_recorder() -> Result<metrics_exporter_prometheus::PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")
}

/// The HTTP API, with `/metrics`, bound to `api.listen` and ready to run.
async fn bind_api(
    config: &Config,
    store: lake::SharedStore,
    clock: SharedClock,
    events: Arc<dyn lake::EventSink>,
    inflight: InFlight,
) -> Result<(tokio::net::TcpListener, SocketAddr, axum::Router)> {
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding {}", config.api.listen))?;
    let addr = listener.local_addr()?;
    let state = ingest_api::AppState::new(
        config,
        store,
        clock,
        events,
        inflight,
        api_policy(config)?,
        Some(metrics_recorder()?),
    );
    Ok((listener, addr, ingest_api::router(state)))
}

async fn serve(config: Config) -> Result<()> {
    require_kafka(&config, "serve")?;
    config.check_listen()?;
    let store = open_lake(&config, true).await?;
    kafka::prepare_topics(&config, false, true).await?;
    let events = kafka::events(&config)?;
    let (listener, addr, app) = bind_api(
        &config,
        store,
        Arc::new(SystemClock),
        events,
        InFlight::default(),
    )
    .await?;
    println!("imgpipe serve: listening on http://{addr}");
    ingest_api::run(listener, app, termination()).await?;
    Ok(())
}

async fn bridge(config: Config, enforce_retention: bool) -> Result<()> {
    require_kafka(&config, "bridge")?;
    let store = open_lake(&config, true).await?;
    kafka::prepare_topics(&config, enforce_retention, true).await?;
    let events = kafka::events(&config)?;
    let intake = kafka::intake(&config, store, Arc::new(SystemClock), events);
    println!(
        "imgpipe bridge: {} → {} (events on {})",
        config.kafka.topic,
        intake.location(),
        config.kafka.events_topic
    );
    let report = kafka::run_bridge(&config, intake, termination()).await?;
    println!(
        "imgpipe bridge: stopped after {} images, {} redeliveries, {} dead letters",
        report.images, report.redelivered, report.dead_letters
    );
    Ok(())
}

/// A configured script runs only in its sandbox, unless the config says
/// `sandbox = "none"`.
fn check_script(config: &Config) -> Result<()> {
    if let Some(script) = &config.processor.script {
        processor::script::check_sandbox(script)?;
    }
    Ok(())
}

async fn process(config: Config) -> Result<()> {
    require_kafka(&config, "process")?;
    check_script(&config)?;
    let store = open_lake(&config, true).await?;
    println!(
        "imgpipe process: {} (group {}) → {}",
        config.kafka.events_topic,
        config.kafka.process_group,
        store.location()
    );
    let handed = kafka::run_processor(&config, store, Arc::new(SystemClock), termination()).await?;
    println!("imgpipe process: stopped after {handed} events");
    Ok(())
}

async fn up(config: Config, config_file: Option<PathBuf>, enforce_retention: bool) -> Result<()> {
    config.check_listen()?;
    check_script(&config)?;
    let store = open_lake(&config, true).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let inflight = InFlight::default();
    let (events_tx, events_rx) = mpsc::channel(config.processor.queue_capacity);
    let (stop_tx, stop_rx) = watch::channel(false);

    let processor =
        processor::Processor::new(&config, store.clone(), clock.clone(), inflight.clone())
            .context("starting the processor pool")?;
    #[cfg(unix)]
    tokio::spawn(reload_script_on_hangup(
        processor.script_slot(),
        config_file,
    ));
    let requeue = events_tx.clone();
    let processing = tokio::spawn(processor.run(events_rx, requeue, stopped(&stop_rx)));

    let sweeper = retention::Sweeper::new(store.clone(), clock.clone(), config.retention())
        .with_scratch(retention::scratch::Scratch::from_config(&config));
    let sweeping =
        tokio::spawn(sweeper.run_every(config.retention.sweep_interval, stopped(&stop_rx)));

    let bridging = match config.kafka.brokers {
        Some(_) => {
            kafka::prepare_topics(&config, enforce_retention, false).await?;
            let intake = kafka::intake(
                &config,
                store.clone(),
                clock.clone(),
                Arc::new(events_tx.clone()),
            );
            let cfg = config.clone();
            let stop = stopped(&stop_rx);
            Some(tokio::spawn(async move {
                kafka::run_bridge(&cfg, intake, stop).await
            }))
        }
        None => None,
    };

    let (listener, addr, app) =
        bind_api(&config, store.clone(), clock, Arc::new(events_tx), inflight).await?;
    let serving = tokio::spawn(ingest_api::run(listener, app, stopped(&stop_rx)));
    println!("imgpipe up: listening on http://{addr}");
    println!("imgpipe up: lake at {}", store.location());
    if bridging.is_some() {
        println!(
            "imgpipe up: consuming Kafka topic {} (dead letters to {})",
            config.kafka.topic, config.kafka.dlq_topic
        );
    }
    println!("imgpipe up: try  curl --data-binary @photo.jpg http://{addr}/v1/images");

    termination().await;
    tracing::info!(
        "stopping: finishing uploads in progress, draining the processor, flushing metadata"
    );
    let _ = stop_tx.send(true);
    serving.await.context("API task")?.context("API server")?;
    if let Some(bridging) = bridging {
        bridging.await.context("bridge task")??;
    }
    processing.await.context("processor task")?;
    sweeping.await.context("sweeper task")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn sweep(
    config: Config,
    once: bool,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<()> {
    let store = open_lake(&config, false).await?;
    let clock: SharedClock = match now {
        Some(at) => Arc::new(lake::FixedClock::new(at)),
        None => Arc::new(SystemClock),
    };
    let mut sweeper = retention::Sweeper::new(store, clock, config.retention())
        .with_scratch(retention::scratch::Scratch::from_config(&config));
    if once || now.is_some() {
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
        return Ok(());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(sweeper.run_every(config.retention.sweep_interval, stopped(&stop_rx)));
    termination().await;
    let _ = stop_tx.send(true);
    run.await?;
    Ok(())
}

async fn audit(
    config: Config,
    now: Option<chrono::DateTime<chrono::Utc>>,
    format: ReportFormat,
) -> Result<bool> {
    let store = open_lake(&config, false).await?;
    let now = now.unwrap_or_else(chrono::Utc::now);
    let mut report = retention::audit::audit(
        &store,
        lake::Layout::new(config.retention()),
        retention::scratch::Scratch::from_config(&config).as_ref(),
        now,
    )
    .await?;
    if let Some(s3) = &config.lake.s3 {
        // S3's lifecycle rules must back the sweeper up.
        let bucket = lake::store::S3Store::connect(s3).await?;
        let actual = retention::lifecycle::read(bucket.client(), &s3.bucket).await?;
        let wanted = retention::lifecycle::rules(config.retention());
        report.violations.extend(
            retention::lifecycle::missing(&wanted, &actual)
                .into_iter()
                .map(|detail| retention::audit::Violation::Backstop { detail }),
        );
    }
    if config.kafka.brokers.is_some() {
        report
            .violations
            .extend(kafka::audit_topics(&config).await?);
    }
    match format {
        ReportFormat::Text => println!("{report}"),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(report.passed())
}

async fn lifecycle(config: Config, print: bool, apply: bool, format: RulesFormat) -> Result<()> {
    let rules = retention::lifecycle::rules(config.retention());
    if print {
        let out = match format {
            RulesFormat::Json => serde_json::to_value(&rules)?,
            RulesFormat::Terraform => retention::lifecycle::terraform(&rules),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    debug_assert!(apply);
    let s3 = config
        .lake
        .s3
        .as_ref()
        .context("lifecycle rules need an S3 lake: set [lake.s3] in the config")?;
    let store = lake::store::S3Store::connect(s3).await?;
    retention::lifecycle::apply(store.client(), &s3.bucket, &rules).await?;
    let actual = retention::lifecycle::read(store.client(), &s3.bucket).await?;
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
    Ok(())
}

/// SIGHUP: read the config again and use its `[processor.script]` for
/// images that start from now on; images in flight finish with the old one.
#[cfg(unix)]
async fn reload_script_on_hangup(slot: processor::ScriptSlot, config_file: Option<PathBuf>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    while hangups.recv().await.is_some() {
        match Config::load(config_file.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|config| check_script(&config).map(|()| config))
        {
            Ok(config) => {
                let version = slot.replace(config.processor.script.as_ref());
                tracing::info!(?version, "processing script reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the current script")
            }
        }
    }
}

async fn reprocess(config: Config, selection: processor::reprocess::Selection) -> Result<()> {
    use futures::StreamExt;
    use processor::reprocess;
    check_script(&config)?;
    let store = open_lake(&config, false).await?;
    let runner = reprocess::runner(&config)?;
    let version = runner.version();
    let todo = reprocess::select(&store, &config, chrono::Utc::now(), &selection, &version).await?;
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(todo.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (config, store, runner) = (&config, &store, &runner);
    let results: Vec<bool> = futures::stream::iter(todo)
        .map(|manifest| async move {
            let id = manifest.id;
            let result = reprocess::reprocess_one(store, config, runner, manifest).await;
            if let Err(e) = &result {
                tracing::warn!(%id, error = %e, "reprocessing failed; the image keeps its previous fields");
            }
            result.is_ok_and(|done| done)
        })
        .buffer_unordered(config.script_slots())
        .inspect(|_| bar.inc(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let done = results.iter().filter(|ok| **ok).count();
    println!(
        "reprocessed {done} of {} images with script version {version} ({} failed or gone)",
        results.len(),
        results.len() - done
    );
    Ok(())
}

async fn query(
    config: Config,
    principal: &str,
    policy: Option<PathBuf>,
    format: QueryFormat,
    now: Option<chrono::DateTime<chrono::Utc>>,
    sql: &str,
) -> Result<()> {
    use datafusion::arrow::{csv, json, util::pretty};
    let policy = policies::Policy::load(policy.as_deref())?;
    // Refuse an unknown principal before reading anything.
    policy.principal(principal)?;
    let store = open_lake(&config, false).await?;
    let batches = policies::query::load(&store).await?;
    let now = now.unwrap_or_else(chrono::Utc::now);
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
    Ok(())
}
