//! The command line: clap's types only; each command's wiring lives in
//! `commands/<command>.rs`.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "imgpipe",
    version,
    about = "Image ingestion pipeline with enforced retention"
)]
pub struct Cli {
    /// Config file (TOML); `IMGPIPE_<SECTION>__<KEY>` env vars override it.
    #[arg(long, global = true, env = "IMGPIPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The local lake directory (the filesystem store), for every command.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log lines as text (for people) or JSON (one object per line, for
    /// CloudWatch and other collectors).
    #[arg(
        long,
        global = true,
        env = "IMGPIPE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Where and how the HTTP API listens.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS with this PEM certificate chain (`[api.tls] cert`);
    /// read again on SIGHUP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (`[api.tls] key`).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ListenArgs {
    /// The flags over the config file.
    pub fn apply(self, config: &mut crate::config::Config) {
        if let Some(addr) = self.listen {
            config.api.listen = addr;
        }
        if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            config.api.tls.cert = Some(cert);
            config.api.tls.key = Some(key);
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline in one process: HTTP ingest, processor and
    /// sweeper, on the local filesystem lake unless `[lake.s3]` is set, and
    /// the Kafka bridge when `[kafka] brokers` is set.
    Up {
        #[command(flatten)]
        listen: ListenArgs,
        /// Refuse to start when a Kafka topic could keep messages past retention.
        #[arg(long)]
        enforce_retention: bool,
    },
    /// Distributed mode: the HTTP API alone, publishing `ImageReceived` to
    /// the events topic (needs `[kafka] brokers`).
    Serve {
        #[command(flatten)]
        listen: ListenArgs,
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
        /// Read only images received in the last … (`1h`, `30m`, `2d`):
        /// only those hour partitions' files are read.
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "from")]
        since: Option<std::time::Duration>,
        /// Read only images received at or after this instant (RFC 3339).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// …and before this one (default: now).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
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
pub enum KeysCommand {
    /// Print the SHA-256 to configure as `[[api.keys]] sha256` for a key
    /// (read from standard input when not given, so it stays out of the
    /// shell history).
    Hash { key: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum PoliciesCommand {
    /// Print the policy as Terraform JSON (aws_lakeformation_* resources).
    Render {
        #[arg(long)]
        policy: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "terraform")]
        format: PolicyFormat,
    },
    /// Print the Glue table `images` (from the metadata schema) as Terraform JSON.
    GlueTable,
    /// Print what each mode reads, writes, lists and deletes in the lake
    /// (lake/src/access.rs) as Terraform JSON, for the task roles.
    TaskAccess,
    /// Compare the live Lake Formation tags and grants with the policy
    /// file and print the difference.
    Plan(LakeFormationArgs),
    /// Make the difference `plan` prints; a second apply changes nothing.
    Apply(LakeFormationArgs),
}

#[derive(Debug, clap::Args)]
pub struct LakeFormationArgs {
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The Glue database holding the table.
    #[arg(long)]
    pub database: String,
    #[arg(long, default_value = "images")]
    pub table: String,
    /// The Data Catalog's account id (default: the caller's account).
    #[arg(long)]
    pub catalog_id: Option<String>,
    /// Lake Formation endpoint (default: AWS, from the standard configuration).
    #[arg(long, env = "IMGPIPE_LAKEFORMATION_ENDPOINT")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PolicyFormat {
    Terraform,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum QueryFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
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
pub enum RulesFormat {
    Json,
    Terraform,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
