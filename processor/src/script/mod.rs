//! The customer's processing script, run on every image.
//!
//! Both modes get the same request, as JSON: on stdin (per-image mode, with
//! the image path and output dir also as the last two arguments) or as one
//! line (stream mode):
//!
//! ```json
//! {"id": "…", "path": "/tmp/…/input/image.jpg", "preview_path": "/tmp/…/input/preview.ppm",
//!  "out_dir": "/tmp/…/out", "metadata": {"format": "jpeg", "width": 1920, …}}
//! ```
//!
//! `preview_path` is the oriented thumbnail as binary PPM (P6), readable in
//! any language without an image library. Per-image mode prints one JSON
//! object (the fields); stream mode answers one line,
//! `{"id": …, "ok": true, "fields": {…}}` or `{"id": …, "ok": false, "error": "…"}`.
//! Files left in `out_dir` are stored under `derived/…/<id>/script/`.

pub mod process;
pub mod stream;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use lake::{ImageId, records::QuarantineReason};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{ProcessError, SandboxKind, ScriptConfig, ScriptMode};
use process::{RunError, Sandbox, Spec};
use stream::{Pool, StreamError};

/// What one successful run produced.
#[derive(Debug, Clone, Default)]
pub struct ScriptOutcome {
    /// The script version that produced it (see [`ScriptRunner::version`]).
    pub version: String,
    pub fields: Map<String, Value>,
    /// Files from the output dir: path relative to it, bytes.
    pub files: Vec<(String, Bytes)>,
}

impl ScriptOutcome {
    /// The fields as the `script` column stores them: a JSON object as text.
    pub fn fields_text(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }
}

/// The inputs of one run.
#[derive(Debug)]
pub struct ScriptInput<'a> {
    pub id: ImageId,
    pub image: &'a [u8],
    pub extension: &'a str,
    pub preview_ppm: &'a [u8],
    pub metadata: Value,
}

impl<'a> ScriptInput<'a> {
    /// The one request every run gets, first processing or reprocess alike.
    pub fn new(
        id: ImageId,
        source: lake::Source,
        image: &'a [u8],
        a: &'a crate::analyze::Analysis,
    ) -> Self {
        Self {
            id,
            image,
            extension: a.format.name(),
            preview_ppm: &a.preview_ppm,
            metadata: json!({
                "format": a.format.name(),
                "content_type": a.format.mime(),
                "width": a.width,
                "height": a.height,
                "bytes": image.len(),
                "sha256": a.sha256,
                "phash": a.phash,
                "orientation": a.exif.orientation,
                "exif_make": a.exif.make,
                "exif_model": a.exif.model,
                "exif_taken_at": a.exif.taken_at,
                "has_gps": a.exif.gps.is_some(),
                "source": source,
            }),
        }
    }
}

#[derive(Debug)]
pub struct ScriptRunner {
    cfg: ScriptConfig,
    /// The command as given, with file arguments made absolute.
    command: Vec<String>,
    spec: Spec,
    version: String,
    stream: Option<Pool>,
    slots: tokio::sync::Semaphore,
}

/// The sandbox the config asks for cannot be had here.
#[derive(Debug, thiserror::Error)]
#[error(
    "processor.script.sandbox = \"bwrap\" but bubblewrap (`bwrap`) is missing or cannot make \
     namespaces here: install it (Debian: bubblewrap), or set sandbox = \"none\" to run the \
     script unconfined"
)]
pub struct SandboxUnavailable;

/// Refuse a configured script whose sandbox cannot run; warn when the
/// config turned the sandbox off. Also makes the scratch directory.
pub fn check_sandbox(cfg: &ScriptConfig) -> Result<(), SandboxUnavailable> {
    if let Err(e) = std::fs::create_dir_all(cfg.scratch_dir()) {
        tracing::warn!(dir = %cfg.scratch_dir().display(), error = %e, "cannot make the script scratch dir");
    }
    match cfg.sandbox {
        SandboxKind::None => {
            tracing::warn!("processor.script.sandbox = \"none\": the script runs unconfined");
            Ok(())
        }
        SandboxKind::Bwrap if process::sandbox_available() => Ok(()),
        SandboxKind::Bwrap => Err(SandboxUnavailable),
    }
}

impl ScriptRunner {
    pub fn new(cfg: &ScriptConfig, slots: usize) -> Self {
        let env = cfg
            .env
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
            .collect();
        // Scripts run in a private directory: pin arguments that name files
        // here (the script itself) to absolute paths.
        let command: Vec<String> = cfg
            .command
            .iter()
            .map(|arg| match Path::new(arg).canonicalize() {
                Ok(abs) if Path::new(arg).is_file() && arg.contains('/') => {
                    abs.display().to_string()
                }
                _ => arg.clone(),
            })
            .collect();
        let scratch = cfg.scratch_dir();
        // Readable in the sandbox: the files the command names (the script
        // itself), never their folders (a script beside the lake must not
        // open the lake), plus what the config adds.
        let read_only = command
            .iter()
            .filter(|arg| arg.starts_with('/') && Path::new(arg).is_file())
            .map(PathBuf::from)
            .chain(cfg.read_only.iter().cloned())
            .collect();
        let spec = Spec {
            program: command[0].clone(),
            args: command[1..].to_vec(),
            env,
            cwd: scratch.clone(),
            max_memory_bytes: cfg.max_memory_bytes,
            max_cpu_seconds: cfg.max_cpu_seconds,
            max_processes: cfg.max_processes,
            max_file_bytes: cfg.max_files_bytes.max(cfg.max_output_bytes),
            max_open_files: cfg.max_open_files,
            sandbox: (cfg.sandbox == SandboxKind::Bwrap).then_some(Sandbox { read_only }),
        };
        Self {
            version: script_version(&command),
            command: command.clone(),
            stream: (cfg.mode == ScriptMode::Stream).then(|| Pool::new(spec.clone(), slots)),
            slots: tokio::sync::Semaphore::new(slots.max(1)),
            spec,
            cfg: cfg.clone(),
        }
    }

    /// A hash of the command and of every argument that names a file
    /// (the script itself), so a changed script is a new version. Stream
    /// workers load the script once, so theirs is fixed at start; a
    /// per-image run reads the file afresh each time, and so is hashed then.
    pub fn version(&self) -> String {
        match self.stream {
            Some(_) => self.version.clone(),
            None => script_version(&self.command),
        }
    }

    /// Run the script, retrying crashes, timeouts and bad answers; what
    /// still fails is a quarantine reason.
    pub async fn run(&self, input: &ScriptInput<'_>) -> Result<ScriptOutcome, ProcessError> {
        let mut attempt = 0;
        loop {
            match self.run_once(input).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) if attempt < self.cfg.retries => {
                    tracing::info!(id = %input.id, attempt, error = %e, "script failed; retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn run_once(&self, input: &ScriptInput<'_>) -> Result<ScriptOutcome, ProcessError> {
        let io_error = |what: &str, e: std::io::Error| {
            ProcessError::new(
                QuarantineReason::ScriptFailed,
                format!("preparing the script's {what}: {e}"),
            )
        };
        // Stream mode: the worker first, since the run's files go in its
        // own directory (the only one it can read and write).
        let lease = match &self.stream {
            Some(pool) => Some(pool.lease().await.map_err(stream_error)?),
            None => None,
        };
        // A private directory per run, removed when it drops; its start time
        // in its name, for the sweeper (see retention's scratch).
        let prefix =
            lake::scratch::entry_prefix(lake::scratch::RUN_PREFIX, chrono::Utc::now().timestamp());
        let parent = lease.as_ref().map_or(self.spec.cwd.as_path(), |l| l.dir());
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(parent)
            .map_err(|e| io_error("directory", e))?;
        let input_dir = dir.path().join("input");
        let out_dir = dir.path().join("out");
        std::fs::create_dir_all(&input_dir).map_err(|e| io_error("input dir", e))?;
        std::fs::create_dir_all(&out_dir).map_err(|e| io_error("output dir", e))?;
        // Resolved now, before the script can swap it for a link.
        let out_root = out_dir
            .canonicalize()
            .map_err(|e| io_error("output dir", e))?;
        let image_path = input_dir.join(format!("image.{}", input.extension));
        let preview_path = input_dir.join("preview.ppm");
        std::fs::write(&image_path, input.image).map_err(|e| io_error("input image", e))?;
        std::fs::write(&preview_path, input.preview_ppm).map_err(|e| io_error("preview", e))?;
        let request = json!({
            "id": input.id,
            "path": image_path,
            "preview_path": preview_path,
            "out_dir": out_dir,
            "metadata": input.metadata,
        });
        let request = serde_json::to_vec(&request).unwrap_or_default();
        let timeout = self.cfg.timeout;
        let version = self.version();
        let fields = match lease {
            None => {
                let _slot = self.slots.acquire().await.map_err(|_| closed())?;
                let mut spec = self.spec.clone();
                spec.args.push(image_path.display().to_string());
                spec.args.push(out_dir.display().to_string());
                spec.cwd = dir.path().to_owned();
                let out = process::run_once(&spec, request, timeout, self.cfg.max_output_bytes)
                    .await
                    .map_err(run_error)?;
                if !out.status.success() {
                    return Err(ProcessError::with_script_output(
                        QuarantineReason::ScriptFailed,
                        format!("script exited with {}", out.status),
                        &out.stderr_tail,
                    ));
                }
                parse_fields(&out.stdout).map_err(|why| bad_output(why, &out.stderr_tail))?
            }
            Some(lease) => {
                let id = input.id.to_string();
                let line = lease
                    .ask(&request, timeout, self.cfg.max_output_bytes, |line| {
                        parse_answer(line, &id).is_ok()
                    })
                    .await
                    .map_err(stream_error)?;
                match parse_answer(&line, &id) {
                    Ok(Ok(fields)) => fields,
                    Ok(Err(error)) => {
                        return Err(ProcessError::with_script_output(
                            QuarantineReason::ScriptFailed,
                            "the script reported an error",
                            &error,
                        ));
                    }
                    Err(why) => return Err(bad_output(why, "")),
                }
            }
        };
        let files = collect_outputs(&out_dir, &out_root, self.cfg.max_files_bytes)?;
        Ok(ScriptOutcome {
            version,
            fields,
            files,
        })
    }
}

fn closed() -> ProcessError {
    ProcessError::new(
        QuarantineReason::ScriptFailed,
        "the script runner is shutting down",
    )
}

fn bad_output(why: impl std::fmt::Display, stderr_tail: &str) -> ProcessError {
    ProcessError::with_script_output(
        QuarantineReason::ScriptBadOutput,
        why.to_string(),
        stderr_tail,
    )
}

fn run_error(e: RunError) -> ProcessError {
    match &e {
        RunError::Spawn { .. } => ProcessError::new(QuarantineReason::ScriptFailed, e.to_string()),
        RunError::Timeout { stderr_tail, .. } => ProcessError::with_script_output(
            QuarantineReason::ScriptTimeout,
            format!("script gave {e}"),
            stderr_tail,
        ),
        RunError::TooMuchOutput { stderr_tail, .. } => {
            bad_output(format!("script {e}"), stderr_tail)
        }
    }
}

fn stream_error(e: StreamError) -> ProcessError {
    match &e {
        StreamError::Spawn(_) => ProcessError::new(QuarantineReason::ScriptFailed, e.to_string()),
        StreamError::Timeout { stderr_tail, .. } => ProcessError::with_script_output(
            QuarantineReason::ScriptTimeout,
            format!("worker gave {e}"),
            stderr_tail,
        ),
        StreamError::Died { stderr_tail } => ProcessError::with_script_output(
            QuarantineReason::ScriptFailed,
            e.to_string(),
            stderr_tail,
        ),
        StreamError::TooLong { stderr_tail, .. } | StreamError::Garbage { stderr_tail } => {
            bad_output(format!("worker {e}"), stderr_tail)
        }
    }
}

/// Per-image mode: stdout must be exactly one JSON object.
fn parse_fields(stdout: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(stdout) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(format!(
            "script printed JSON that is not an object: {}",
            kind(&other)
        )),
        Err(e) => Err(format!("script did not print one JSON object: {e}")),
    }
}

/// Stream mode: `Ok(Ok(fields))`, `Ok(Err(script's own error))`, or why
/// the line is not an answer to request `id`.
fn parse_answer(line: &[u8], id: &str) -> Result<Result<Map<String, Value>, String>, String> {
    let Value::Object(mut answer) =
        serde_json::from_slice::<Value>(line).map_err(|e| format!("answer is not JSON: {e}"))?
    else {
        return Err("answer is not a JSON object".into());
    };
    if answer.get("id").and_then(Value::as_str) != Some(id) {
        // Not echoed: the detail is shown over HTTP, script text is not.
        return Err(format!("answer is for another request, not for {id}"));
    }
    match answer.get("ok").and_then(Value::as_bool) {
        Some(true) => match answer.remove("fields") {
            Some(Value::Object(fields)) => Ok(Ok(fields)),
            None => Ok(Ok(Map::new())),
            Some(other) => Err(format!("fields is {}, not an object", kind(&other))),
        },
        Some(false) => Ok(Err(answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error message")
            .chars()
            .take(2000)
            .collect())),
        None => Err("answer has no boolean \"ok\"".into()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Regular files under `out_dir` (symlinks are skipped: they could point
/// anywhere), names that are safe key segments, within the size cap.
/// `root` is `out_dir` as it resolved before the run: a script that swapped
/// the directory (or any part of it) for a link is refused, not followed.
fn collect_outputs(
    out_dir: &Path,
    root: &Path,
    max_bytes: u64,
) -> Result<Vec<(String, Bytes)>, ProcessError> {
    if out_dir.canonicalize().ok().as_deref() != Some(root) {
        return Err(bad_output("the output dir was replaced", ""));
    }
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![out_dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| bad_output(format!("reading the output dir: {e}"), ""))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let rel = path
                .strip_prefix(out_dir)
                .ok()
                .and_then(|p| p.to_str())
                .map(str::to_owned)
                .ok_or_else(|| bad_output("an output file name is not UTF-8", ""))?;
            if lake::store::validate_key(&format!("script/{rel}")).is_err() {
                // The name is the script's text: kept off HTTP.
                return Err(bad_output("an output file name is not allowed", &rel));
            }
            let room = max_bytes.saturating_sub(total);
            let bytes = read_output(&path, root, room)
                .map_err(|e| bad_output(format!("reading an output file: {e}"), &rel))?;
            let Some(bytes) = bytes else { continue };
            total += bytes.len() as u64;
            if total > max_bytes {
                return Err(bad_output(
                    format!("output files exceed {max_bytes} bytes"),
                    "",
                ));
            }
            files.push((rel, Bytes::from(bytes)));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// One output file, read as what it is when opened — a stream worker is
/// still running and may have swapped it since it was listed: never through
/// a symlink (last component: `O_NOFOLLOW`; any other: the opened file's
/// real path must be inside the output dir), never a FIFO or device, and
/// at most `cap` + 1 bytes. `None`: not a regular file any more.
fn read_output(path: &Path, root: &Path, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    use nix::fcntl::OFlag;
    use std::{
        io::Read,
        os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    if !real.starts_with(root) {
        return Err(std::io::Error::other("it leads outside the output dir"));
    }
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

fn script_version(command: &[String]) -> String {
    let mut hash = Sha256::new();
    for arg in command {
        hash.update(arg.as_bytes());
        hash.update([0]);
        if let Ok(contents) = std::fs::read(arg) {
            hash.update(&contents);
        }
    }
    hex::encode(&hash.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream worker may swap an output for a link or a FIFO after it
    /// answered: what is read is never followed out, never blocks, never
    /// more than the cap.
    #[test]
    fn outputs_are_read_without_following_links_or_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("ok.txt"), b"fine").unwrap();
        std::os::unix::fs::symlink("/dev/zero", out.join("zero")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", out.join("host")).unwrap();
        nix::unistd::mkfifo(&out.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let root = out.canonicalize().unwrap();
        assert_eq!(
            read_output(&out.join("ok.txt"), &root, 100).unwrap(),
            Some(b"fine".to_vec())
        );
        assert!(read_output(&out.join("zero"), &root, 100).is_err());
        assert!(read_output(&out.join("host"), &root, 100).is_err());
        assert_eq!(read_output(&out.join("fifo"), &root, 100).unwrap(), None);
        // Capped: one byte past the cap is enough to refuse.
        std::fs::write(out.join("big"), vec![0u8; 1000]).unwrap();
        assert_eq!(
            read_output(&out.join("big"), &root, 10)
                .unwrap()
                .unwrap()
                .len(),
            11
        );
        let files = collect_outputs(&out, &root, 1 << 20).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["big", "ok.txt"]);
        // The whole output dir swapped for a link after the run.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(&out, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &out).unwrap();
        assert!(collect_outputs(&out, &root, 1 << 20).is_err());
    }
}
