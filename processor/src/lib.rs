//! The processor: turns each `ImageReceived` into a thumbnail, a manifest
//! and a metadata row — or a quarantine record with a reason. CPU work runs
//! on a rayon pool; raw bytes in flight are bounded; nothing is considered
//! done before its outputs are durable, and a restart picks up whatever a
//! crash left unfinished.

pub mod analyze;
mod busy;
pub mod config;
pub mod exif;
pub mod integrity;
mod outputs;
mod pipeline;
pub mod reprocess;
pub mod script;
mod shrink;
pub mod sink;
pub mod source;
pub mod telemetry;

use lake::records::QuarantineReason;

pub use config::{ProcessorConfig, SandboxKind, ScriptConfig, ScriptMode};
pub use pipeline::{Processor, ScriptSlot};

/// Why an image cannot be processed: permanent, so it is quarantined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct ProcessError {
    pub reason: QuarantineReason,
    pub detail: String,
    /// What the script said (stderr tail, reported error): kept in the
    /// quarantine record for the operator, never shown over HTTP (it can
    /// echo image content).
    pub script_output: Option<String>,
}

impl ProcessError {
    pub fn new(reason: QuarantineReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            script_output: None,
        }
    }

    pub fn with_script_output(
        reason: QuarantineReason,
        detail: impl Into<String>,
        said: &str,
    ) -> Self {
        Self {
            script_output: (!said.is_empty()).then(|| said.to_owned()),
            ..Self::new(reason, detail)
        }
    }
}
