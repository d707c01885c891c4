//! Every subprocess imgpipe starts goes through here: a bubblewrap sandbox
//! (its own PID, network, IPC and mount namespaces: a read-only view of the
//! system's programs and libraries, the script's own files, and only the
//! run's private directory writable; when its first process ends, every
//! process in it dies, `setsid` or not), a process group of its own,
//! resource limits via `prlimit` (address space, CPU time, processes, file
//! size, open files), a cleared environment plus an allow-list, capped
//! stdout and a captured stderr tail. Rust opens every descriptor
//! close-on-exec, and `imgpipe` marks those it inherited close-on-exec at
//! start, so a script inherits only its three pipes.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
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
    /// The working directory; in the sandbox, the only writable place.
    pub cwd: PathBuf,
    pub max_memory_bytes: u64,
    pub max_cpu_seconds: u64,
    pub max_processes: u64,
    pub max_file_bytes: u64,
    pub max_open_files: u64,
    /// `None`: run without a sandbox (`sandbox = "none"`).
    pub sandbox: Option<Sandbox>,
}

/// What the sandbox lets the script see besides the system's programs and
/// libraries: read-only paths (the script's files).
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    pub read_only: Vec<PathBuf>,
}

/// The sandbox tool.
pub const BWRAP: &str = "bwrap";

/// Is the sandbox tool installed and able to make here every namespace and
/// mount a script run gets? (Probed with the real arguments: some hosts
/// allow namespaces but refuse a `/proc` mount.)
pub fn sandbox_available() -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    std::process::Command::new(BWRAP)
        .args(sandbox_args(&Sandbox::default(), dir.path(), &[]))
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// bwrap's arguments up to and including `--`: every namespace, no
/// capabilities, the system read-only, `cwd` the only writable place.
fn sandbox_args(sandbox: &Sandbox, cwd: &Path, env: &[(String, String)]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        // Root in the sandbox must not be root: no mounts, no devices.
        "--cap-drop",
        "ALL",
    ]
    .map(String::from)
    .to_vec();
    args.extend(system_binds());
    args.extend(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"].map(String::from));
    for path in &sandbox.read_only {
        let path = path.display().to_string();
        args.extend(["--ro-bind".into(), path.clone(), path]);
    }
    let cwd = cwd.display().to_string();
    args.extend([
        "--bind".into(),
        cwd.clone(),
        cwd.clone(),
        "--chdir".into(),
        cwd,
        "--clearenv".into(),
    ]);
    for (k, v) in env {
        args.extend(["--setenv".into(), k.clone(), v.clone()]);
    }
    args.push("--".into());
    args
}

/// The system's programs and libraries, read-only. Merged-/usr systems
/// have `/bin` and friends as links into `/usr`.
fn system_binds() -> Vec<String> {
    let mut args: Vec<String> = ["--ro-bind", "/usr", "/usr"].map(String::from).to_vec();
    for dir in ["/bin", "/sbin", "/lib", "/lib64", "/lib32"] {
        match std::fs::read_link(dir) {
            Ok(target) => {
                args.extend(["--symlink".into(), target.display().to_string(), dir.into()])
            }
            Err(_) => args.extend(["--ro-bind-try".into(), dir.into(), dir.into()]),
        }
    }
    // What programs need from /etc to start, and nothing else of it.
    for file in [
        "/etc/ld.so.cache",
        "/etc/alternatives",
        "/etc/localtime",
        "/etc/passwd",
        "/etc/group",
    ] {
        args.extend(["--ro-bind-try".into(), file.into(), file.into()]);
    }
    args
}

impl Spec {
    /// The command: `prlimit` (so the limits hold for the script and
    /// everything it starts) around the sandbox around the script.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--as={}", self.max_memory_bytes))
            .arg(format!("--cpu={}", self.max_cpu_seconds))
            .arg(format!("--nproc={}", self.max_processes))
            .arg(format!("--fsize={}", self.max_file_bytes))
            .arg(format!("--nofile={}", self.max_open_files))
            .arg("--");
        if let Some(sandbox) = &self.sandbox {
            cmd.arg(BWRAP)
                .args(sandbox_args(sandbox, &self.cwd, &self.env));
        }
        cmd.arg(&self.program)
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

/// How long a pipe reader may go on after the script is gone.
const READER_GRACE: Duration = Duration::from_secs(5);

async fn join_reader(task: Option<tokio::task::JoinHandle<()>>) {
    if let Some(task) = task {
        let abort = task.abort_handle();
        if tokio::time::timeout(READER_GRACE, task).await.is_err() {
            abort.abort();
        }
    }
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
            join_reader(stderr_task).await;
            return Err(RunError::Timeout {
                timeout,
                stderr_tail: tail.text(),
            });
        }
    };
    // A descendant that kept the pipes open cannot hold the run: the
    // readers get a short grace, then are dropped.
    let stdout_abort = stdout_task.abort_handle();
    let stdout = match tokio::time::timeout(READER_GRACE, stdout_task).await {
        Ok(joined) => joined.unwrap_or(Err(())),
        Err(_) => {
            stdout_abort.abort();
            Err(())
        }
    };
    join_reader(stderr_task).await;
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
