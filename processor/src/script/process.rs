//! Every subprocess imgpipe starts goes through here: a process group of
//! its own (so a timeout or the end of a run kills everything the script
//! forked), resource limits via `prlimit` (address space, CPU time), a
//! cleared environment plus an allow-list, a private working directory,
//! capped stdout and a captured stderr tail. Rust opens every descriptor
//! close-on-exec, and `imgpipe` marks those it inherited close-on-exec at
//! start, so a script inherits only its three pipes.

use std::{
    collections::VecDeque,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::{Child, Command},
};

/// How much of stderr we keep (its end: where the error usually is).
pub const STDERR_TAIL: usize = 4096;

#[derive(Debug, Clone)]
pub struct Spec {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub max_memory_bytes: u64,
    pub max_cpu_seconds: u64,
}

impl Spec {
    /// The command, wrapped in `prlimit` so the limits hold for the script
    /// and everything it starts.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--as={}", self.max_memory_bytes))
            .arg(format!("--cpu={}", self.max_cpu_seconds))
            .arg("--")
            .arg(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// Kill a whole process group; gone already is fine.
pub fn kill_group(child_pid: Option<u32>) {
    if let Some(pid) = child_pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The last bytes a process wrote to stderr, shared with a reader task.
#[derive(Debug, Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<u8>>>);

impl Tail {
    pub fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = buf.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).trim().to_owned()
    }

    /// Keep reading `from` until it closes, holding on to the tail only.
    pub fn collect(
        &self,
        mut from: impl AsyncRead + Unpin + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let tail = self.clone();
        tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = from.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let mut buf = tail.0.lock().unwrap_or_else(|e| e.into_inner());
                buf.extend(&chunk[..n]);
                let excess = buf.len().saturating_sub(STDERR_TAIL);
                buf.drain(..excess);
            }
        })
    }
}

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr_tail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("no answer within {timeout:?}")]
    Timeout {
        timeout: Duration,
        stderr_tail: String,
    },
    #[error("printed more than {limit} bytes")]
    TooMuchOutput { limit: u64, stderr_tail: String },
}

/// Run once: `stdin` in, stdout (capped) and the stderr tail out.
pub async fn run_once(
    spec: &Spec,
    stdin: Vec<u8>,
    timeout: Duration,
    max_stdout: u64,
) -> Result<Output, RunError> {
    let mut child: Child = spec.command().spawn().map_err(|source| RunError::Spawn {
        program: spec.program.clone(),
        source,
    })?;
    let pid = child.id();
    if let Some(mut input) = child.stdin.take() {
        // A script that ignores its stdin closes the pipe early: not an error.
        tokio::spawn(async move {
            let _ = input.write_all(&stdin).await;
        });
    }
    let tail = Tail::default();
    let stderr_task = child.stderr.take().map(|e| tail.collect(e));
    let stdout = child.stdout.take();
    let stdout_task = tokio::spawn(async move {
        let mut out = Vec::new();
        let Some(stdout) = stdout else { return Ok(out) };
        stdout.take(max_stdout + 1).read_to_end(&mut out).await.ok();
        if out.len() as u64 > max_stdout {
            // Stop it at once rather than reading 100 MB we will refuse.
            kill_group(pid);
            return Err(());
        }
        Ok(out)
    });
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    // Whatever happened, nothing the script started may outlive the run
    // (and a forked child holding stdout open would block the readers).
    kill_group(pid);
    let status = match waited {
        Ok(Ok(status)) => status,
        Ok(Err(source)) => {
            return Err(RunError::Spawn {
                program: spec.program.clone(),
                source,
            });
        }
        Err(_) => {
            let _ = child.wait().await;
            if let Some(t) = stderr_task {
                let _ = t.await;
            }
            return Err(RunError::Timeout {
                timeout,
                stderr_tail: tail.text(),
            });
        }
    };
    let stdout = stdout_task.await.unwrap_or(Err(()));
    if let Some(t) = stderr_task {
        let _ = t.await;
    }
    match stdout {
        Ok(stdout) => Ok(Output {
            status,
            stdout,
            stderr_tail: tail.text(),
        }),
        Err(()) => Err(RunError::TooMuchOutput {
            limit: max_stdout,
            stderr_tail: tail.text(),
        }),
    }
}
