//! What every stage shares of the configuration: where the lake lives and
//! how long anything may stay in it. Each stage crate owns its own section
//! (`ingest_api::ApiConfig`, `processor::ProcessorConfig`,
//! `kafka_bridge::KafkaConfig`) and its checks; the `imgpipe` binary
//! assembles the file from them.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::Layout;

/// The longest retention period anything may be configured with.
pub const MAX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A setting that is not allowed, and why (the message names the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// `Err(Invalid(msg))`, for the checks' early returns.
    pub fn err<T>(msg: impl Into<String>) -> Result<T, Invalid> {
        Err(Self(msg.into()))
    }
}

/// A value kept out of `Debug` output and logs.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// The embedded default: a directory on the local filesystem.
    pub data_dir: PathBuf,
    /// When set, the lake lives in S3 instead of `data_dir`.
    pub s3: Option<S3Config>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./imgpipe-data"),
            s3: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `imgpipe/`; empty for the root.
    #[serde(default)]
    pub prefix: String,
    /// Custom endpoint (SeaweedFS, MinIO…); unset means AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_true")]
    pub force_path_style: bool,
    /// Per-request timeout for every S3 call.
    #[serde(default = "default_s3_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Server-side encryption asked for on every write: `aws:kms` (with
    /// `sse_kms_key_id`, what the deployed bucket policy requires) or
    /// `AES256`. Unset: the bucket's default.
    #[serde(default)]
    pub sse: Option<ServerSideEncryption>,
    /// The KMS key (id or ARN) for `sse = "aws:kms"`.
    #[serde(default)]
    pub sse_kms_key_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerSideEncryption {
    #[serde(rename = "aws:kms")]
    AwsKms,
    #[serde(rename = "AES256")]
    Aes256,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_s3_timeout() -> Duration {
    Duration::from_secs(30)
}

impl LakeConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let Some(s3) = &self.s3 else {
            return Ok(());
        };
        if s3.bucket.is_empty() {
            return Invalid::err("lake.s3.bucket must not be empty");
        }
        if !(s3.prefix.is_empty() || s3.prefix.ends_with('/')) || s3.prefix.starts_with('/') {
            return Invalid::err(
                "lake.s3.prefix must be empty or end with '/' (and not start with one)",
            );
        }
        match (s3.sse, &s3.sse_kms_key_id) {
            (Some(ServerSideEncryption::AwsKms), Some(key)) if !key.is_empty() => Ok(()),
            (Some(ServerSideEncryption::AwsKms), _) => {
                Invalid::err("lake.s3.sse = \"aws:kms\" needs lake.s3.sse_kms_key_id")
            }
            (_, Some(_)) => Invalid::err("lake.s3.sse_kms_key_id needs lake.s3.sse = \"aws:kms\""),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long anything we store may live. At most 7 days.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            period: MAX_RETENTION,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.period.is_zero() || self.period > MAX_RETENTION {
            return Invalid::err(format!(
                "retention.period must be more than 0 and at most 7 days, got {}",
                humantime::format_duration(self.period)
            ));
        }
        if self.sweep_interval.is_zero() || self.sweep_interval > Duration::from_secs(300) {
            return Invalid::err("retention.sweep_interval must be between 1s and 5m");
        }
        Ok(())
    }

    /// The period as the lake counts it.
    pub fn duration(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.period).unwrap_or(chrono::Duration::days(7))
    }

    /// Where keys live and when they expire, for this period.
    pub fn layout(&self) -> Layout {
        Layout::new(self.duration())
    }
}
