//! Stream mode: long-lived workers, one JSON request line in, one JSON
//! answer line out. A worker that dies, hangs past the timeout or answers
//! garbage is killed (with its process group) and replaced on next use.
//!
//! Each worker gets a directory of its own in the scratch dir
//! (`worker-<start, unix seconds>-…`), its only writable place; the runs
//! it serves get their private directories inside it. The scratch dir
//! itself stays imgpipe's alone, so the names the sweeper judges there are
//! the ones imgpipe gave. A worker lives at most [`MAX_WORKER_AGE`], busy
//! or idle: an idle one past it is retired by a reaper, so what it kept of
//! the images it saw dies with it, well within retention.

use std::{
    path::Path,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout},
    sync::{Semaphore, SemaphorePermit},
};

use super::process::{Spec, Tail, kill_group};

pub use lake::scratch::MAX_WORKER_AGE;

#[derive(Debug)]
struct Worker {
    started: std::time::Instant,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Tail,
    /// Removed (after the process group is killed) when the worker drops.
    dir: tempfile::TempDir,
}

impl Drop for Worker {
    fn drop(&mut self) {
        kill_group(self.child.id());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("could not start a worker: {0}")]
    Spawn(std::io::Error),
    #[error("no answer within {timeout:?}")]
    Timeout {
        timeout: Duration,
        stderr_tail: String,
    },
    #[error("the worker exited without answering")]
    Died { stderr_tail: String },
    #[error("answer longer than {limit} bytes")]
    TooLong { limit: u64, stderr_tail: String },
    #[error("answered something that is not a valid answer line")]
    Garbage { stderr_tail: String },
}

type Idle = Arc<Mutex<Vec<Worker>>>;

#[derive(Debug)]
pub struct Pool {
    spec: Spec,
    slots: Semaphore,
    idle: Idle,
    max_age: Duration,
}

impl Pool {
    pub fn new(spec: Spec, slots: usize) -> Self {
        Self::with_max_age(spec, slots, MAX_WORKER_AGE)
    }

    /// A pool whose workers live at most `max_age`. Inside a runtime, a
    /// reaper retires idle workers past it (it ends with the pool).
    pub fn with_max_age(spec: Spec, slots: usize, max_age: Duration) -> Self {
        let idle: Idle = Arc::default();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap(Arc::downgrade(&idle), max_age));
        }
        Self {
            spec,
            slots: Semaphore::new(slots.max(1)),
            idle,
            max_age,
        }
    }

    fn spawn(&self) -> Result<Worker, StreamError> {
        let prefix = lake::scratch::entry_prefix(
            lake::scratch::WORKER_PREFIX,
            chrono::Utc::now().timestamp(),
        );
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&self.spec.cwd)
            .map_err(StreamError::Spawn)?;
        let mut spec = self.spec.clone();
        spec.cwd = dir.path().to_owned();
        let mut child = spec.command().spawn().map_err(StreamError::Spawn)?;
        let missing = || StreamError::Spawn(std::io::Error::other("worker pipes missing"));
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(missing)?);
        let stderr = Tail::default();
        if let Some(e) = child.stderr.take() {
            stderr.collect(e);
        }
        Ok(Worker {
            started: std::time::Instant::now(),
            child,
            stdin,
            stdout,
            stderr,
            dir,
        })
    }

    /// A worker for one exchange (an idle one young enough, or a new one),
    /// within the pool's slots.
    pub async fn lease(&self) -> Result<Lease<'_>, StreamError> {
        let slot = self.slots.acquire().await.map_err(|_| StreamError::Died {
            stderr_tail: "the pool is closed".into(),
        })?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|w| w.started.elapsed() < self.max_age);
            idle.pop()
        };
        let worker = match idle {
            Some(w) => w,
            None => self.spawn()?,
        };
        Ok(Lease {
            pool: self,
            worker,
            _slot: slot,
        })
    }
}

/// Retire idle workers past `max_age` until the pool is gone.
async fn reap(idle: Weak<Mutex<Vec<Worker>>>, max_age: Duration) {
    let every = (max_age / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let Some(idle) = idle.upgrade() else { return };
        let old: Vec<Worker> = {
            let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
            let (old, young) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|w| w.started.elapsed() >= max_age);
            *idle = young;
            old
        };
        // Dropped outside the lock: each kills its process group.
        drop(old);
    }
}

/// One worker, held for one exchange.
#[derive(Debug)]
pub struct Lease<'a> {
    pool: &'a Pool,
    worker: Worker,
    _slot: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The worker's own directory: where the runs it serves put their
    /// files (it can read and write nowhere else).
    pub fn dir(&self) -> &Path {
        self.worker.dir.path()
    }

    /// Send one request line, get one answer line that `valid` accepts. The
    /// worker goes back to the pool only after a clean exchange; otherwise
    /// it is killed, and the next request starts a fresh one.
    pub async fn ask(
        self,
        request: &[u8],
        timeout: Duration,
        max_answer: u64,
        valid: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Vec<u8>, StreamError> {
        let Self {
            pool, mut worker, ..
        } = self;
        let exchange = async {
            worker.stdin.write_all(request).await?;
            worker.stdin.write_all(b"\n").await?;
            worker.stdin.flush().await?;
            let mut line = Vec::new();
            (&mut worker.stdout)
                .take(max_answer + 1)
                .read_until(b'\n', &mut line)
                .await?;
            Ok::<_, std::io::Error>(line)
        };
        let line = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => {
                return Err(StreamError::Timeout {
                    timeout,
                    stderr_tail: worker.stderr.text(),
                });
            }
            Ok(Err(_)) => return Err(pool.died(worker).await),
            Ok(Ok(line)) if line.is_empty() => return Err(pool.died(worker).await),
            Ok(Ok(line)) => line,
        };
        if line.len() as u64 > max_answer || !line.ends_with(b"\n") {
            return Err(StreamError::TooLong {
                limit: max_answer,
                stderr_tail: worker.stderr.text(),
            });
        }
        if !valid(&line) {
            return Err(StreamError::Garbage {
                stderr_tail: worker.stderr.text(),
            });
        }
        if worker.started.elapsed() < pool.max_age {
            pool.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(worker);
        }
        Ok(line)
    }
}

impl Pool {
    /// A worker whose pipe broke: give its stderr a moment to arrive.
    async fn died(&self, mut worker: Worker) -> StreamError {
        let _ = tokio::time::timeout(Duration::from_millis(500), worker.child.wait()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        StreamError::Died {
            stderr_tail: worker.stderr.text(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_spec(cwd: &Path) -> Spec {
        Spec {
            program: "sh".into(),
            args: vec!["-c".into(), "while read l; do echo ok; done".into()],
            env: Vec::new(),
            cwd: cwd.to_owned(),
            max_memory_bytes: 1 << 30,
            max_cpu_seconds: 60,
            max_processes: 64,
            max_file_bytes: 1 << 20,
            max_open_files: 64,
            sandbox: None,
        }
    }

    fn worker_dirs(scratch: &Path) -> Vec<String> {
        std::fs::read_dir(scratch)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Each worker writes only in a directory of its own, named by imgpipe;
    /// idle workers are retired at their age even with no work coming (a
    /// last-in-first-out stack never reached the bottom ones).
    #[tokio::test]
    async fn idle_workers_are_retired_at_their_age_with_their_directories() {
        let scratch = tempfile::tempdir().unwrap();
        let pool = Pool::with_max_age(echo_spec(scratch.path()), 2, Duration::from_millis(300));
        let (a, b) = (pool.lease().await.unwrap(), pool.lease().await.unwrap());
        for lease in [&a, &b] {
            assert_eq!(lease.dir().parent(), Some(scratch.path()));
            let name = lease
                .dir()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(
                matches!(
                    lake::scratch::parse_entry(&name),
                    Some((lake::scratch::WORKER_PREFIX, _))
                ),
                "{name}"
            );
        }
        for lease in [a, b] {
            let answer = lease
                .ask(b"{}", Duration::from_secs(10), 100, |l| l == b"ok\n")
                .await
                .unwrap();
            assert_eq!(answer, b"ok\n");
        }
        assert_eq!(worker_dirs(scratch.path()).len(), 2);
        // No request comes; both idle workers go anyway.
        let start = std::time::Instant::now();
        while !worker_dirs(scratch.path()).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "idle workers outlived their age: {:?}",
                worker_dirs(scratch.path())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(pool.idle.lock().unwrap().is_empty());
    }
}
