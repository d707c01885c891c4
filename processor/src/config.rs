//! The processor's section of the config file (`[processor]` and
//! `[processor.script]`): its types, defaults and checks.

use std::{path::PathBuf, time::Duration};

use lake::config::Invalid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Refuse images with more pixels than this, read from the header.
    pub max_pixels: u64,
    /// Decoded pixels in memory at once, charged from each image's header
    /// before it is decoded; also each decode's allocation cap
    /// (`image::Limits::max_alloc`).
    pub max_decode_bytes: u64,
    /// Raw bytes held by images being processed at once.
    pub max_inflight_bytes: u64,
    /// Capacity of the event channel from ingest to the processor.
    pub queue_capacity: usize,
    /// Longest side of the thumbnail, in pixels.
    pub thumbnail_px: u32,
    /// CPU threads for decode/resize/hash; 0 means one per core.
    pub workers: usize,
    /// Metadata rows are written at least this often.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Attempts for a storage failure before the image is given up for now.
    pub retries: u32,
    /// The customer's processing script; unset means none runs.
    pub script: Option<ScriptConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScriptMode {
    /// One process per image.
    PerImage,
    /// Long-lived workers answering one JSON line per request line.
    Stream,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// Program and arguments, e.g. `["python3", "scripts/example.py"]`.
    pub command: Vec<String>,
    #[serde(default = "default_mode")]
    pub mode: ScriptMode,
    /// Per image; past it the script's whole process group is killed.
    #[serde(default = "default_script_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Cap on what the script prints for one image (its JSON answer).
    #[serde(default = "default_max_output")]
    pub max_output_bytes: u64,
    /// Cap on the files one run may leave in its output dir, in total.
    #[serde(default = "default_max_files")]
    pub max_files_bytes: u64,
    /// Scripts running at once; 0 means one per core.
    #[serde(default)]
    pub concurrency: usize,
    /// Names of environment variables the script may see (values are ours);
    /// nothing else is inherited, so our secrets never reach it.
    #[serde(default = "default_env")]
    pub env: Vec<String>,
    /// Extra attempts after a crash, timeout or bad answer.
    #[serde(default = "default_script_retries")]
    pub retries: u32,
    /// Address-space limit (RLIMIT_AS) for the script's processes.
    #[serde(default = "default_script_memory")]
    pub max_memory_bytes: u64,
    /// CPU-time limit (RLIMIT_CPU) for one script process, in seconds.
    #[serde(default = "default_script_cpu")]
    pub max_cpu_seconds: u64,
    /// RLIMIT_NPROC. The kernel counts every process of the user imgpipe
    /// runs as, so leave room for imgpipe's own.
    #[serde(default = "default_script_processes")]
    pub max_processes: u64,
    /// RLIMIT_NOFILE for the script's processes.
    #[serde(default = "default_script_open_files")]
    pub max_open_files: u64,
    /// `bwrap` (bubblewrap; required unless `none` is said explicitly) or
    /// `none`, which runs the script with imgpipe's own view of the system.
    #[serde(default)]
    pub sandbox: SandboxKind,
    /// Extra paths the sandboxed script may read (models, libraries); the
    /// files named in `command` are always readable.
    #[serde(default)]
    pub read_only: Vec<PathBuf>,
    /// Where each run's private directory is made; stale ones (a crash) are
    /// removed by the sweeper. Default: `<temp dir>/imgpipe-scratch`.
    #[serde(default)]
    pub scratch_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxKind {
    #[default]
    Bwrap,
    None,
}

impl ScriptConfig {
    /// The longest one image's script can take, retries included.
    pub fn longest_run(&self) -> Duration {
        self.timeout * (self.retries + 1)
    }

    pub fn scratch_dir(&self) -> PathBuf {
        self.scratch_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("imgpipe-scratch"))
    }
}

fn default_mode() -> ScriptMode {
    ScriptMode::PerImage
}
fn default_script_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_output() -> u64 {
    1024 * 1024
}
fn default_max_files() -> u64 {
    64 * 1024 * 1024
}
fn default_env() -> Vec<String> {
    vec!["PATH".into(), "LANG".into(), "LC_ALL".into(), "TZ".into()]
}
fn default_script_retries() -> u32 {
    1
}
fn default_script_memory() -> u64 {
    4 * 1024 * 1024 * 1024
}
fn default_script_cpu() -> u64 {
    600
}
fn default_script_processes() -> u64 {
    1024
}
fn default_script_open_files() -> u64 {
    256
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_decode_bytes: 1024 * 1024 * 1024,
            max_inflight_bytes: 256 * 1024 * 1024,
            queue_capacity: 1024,
            thumbnail_px: 256,
            workers: 0,
            flush_interval: Duration::from_secs(60),
            retries: 5,
            script: None,
        }
    }
}

impl ProcessorConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(16..=4096).contains(&self.thumbnail_px) {
            return Invalid::err(format!(
                "processor.thumbnail_px must be 16..=4096, got {}",
                self.thumbnail_px
            ));
        }
        if self.max_pixels == 0 || self.max_decode_bytes == 0 || self.queue_capacity == 0 {
            return Invalid::err(
                "processor.max_pixels, max_decode_bytes and queue_capacity must be positive",
            );
        }
        if self.flush_interval.is_zero() || self.flush_interval > Duration::from_secs(60) {
            return Invalid::err(
                "processor.flush_interval must be between 1s and 60s (it bounds how late rows are purged)",
            );
        }
        if let Some(script) = &self.script {
            if script.command.is_empty() || script.command[0].is_empty() {
                return Invalid::err("processor.script.command must name a program");
            }
            if script.timeout.is_zero() || script.max_output_bytes == 0 {
                return Invalid::err(
                    "processor.script.timeout and max_output_bytes must be positive",
                );
            }
        }
        Ok(())
    }

    /// Scripts run at once: `script.concurrency`, or one per CPU thread.
    pub fn script_slots(&self) -> usize {
        match self.script.as_ref().map_or(0, |s| s.concurrency) {
            0 => self.worker_threads(),
            n => n,
        }
    }

    /// Threads of the CPU pool: `workers`, or one per core.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}
