//! JSON records the stages leave in the lake: the per-image manifest (the
//! erasure list, written last, so its presence means "processed") and the
//! quarantine record (why an image was refused).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{event::Source, id::ImageId, schema::MetadataRow};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: ImageId,
    /// Every key written for this image, raw included.
    pub keys: Vec<String>,
    /// The metadata row, kept so a row lost in a crash before its Parquet
    /// flush can be written again from here.
    pub row: MetadataRow,
}

/// Stable reason codes: clients and dashboards match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineReason {
    UnsupportedFormat,
    TooLarge,
    Truncated,
    Corrupt,
    DecodeFailed,
    MissingRaw,
    ScriptFailed,
    ScriptTimeout,
    ScriptBadOutput,
}

impl QuarantineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedFormat => "unsupported_format",
            Self::TooLarge => "too_large",
            Self::Truncated => "truncated",
            Self::Corrupt => "corrupt",
            Self::DecodeFailed => "decode_failed",
            Self::MissingRaw => "missing_raw",
            Self::ScriptFailed => "script_failed",
            Self::ScriptTimeout => "script_timeout",
            Self::ScriptBadOutput => "script_bad_output",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub id: ImageId,
    pub reason: QuarantineReason,
    /// Human text naming the problem (never the script's output).
    pub detail: String,
    /// What the script said (its stderr tail or its reported error), for
    /// the operator; swept with the record, never shown over HTTP (a script
    /// can echo image content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_output: Option<String>,
    pub source: Source,
    pub source_ref: Option<String>,
    /// The bytes stay under this key until they expire, for inspection.
    pub raw_key: String,
    pub received_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub quarantined_at: DateTime<Utc>,
}
