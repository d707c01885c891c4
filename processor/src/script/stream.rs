//! Stream mode: long-lived workers, one JSON request line in, one JSON
//! answer line out. A worker that dies, hangs past the timeout or answers
//! garbage is killed (with its process group) and replaced on next use.

use std::{sync::Mutex, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout},
    sync::Semaphore,
};

use super::process::{Spec, Tail, kill_group};

/// How long a stream worker serves before it is replaced.
pub const MAX_WORKER_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct Worker {
    started: std::time::Instant,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Tail,
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

#[derive(Debug)]
pub struct Pool {
    spec: Spec,
    slots: Semaphore,
    idle: Mutex<Vec<Worker>>,
}

impl Pool {
    pub fn new(spec: Spec, slots: usize) -> Self {
        Self {
            spec,
            slots: Semaphore::new(slots.max(1)),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn spawn(&self) -> Result<Worker, StreamError> {
        // The worker's writable place is the runner's scratch dir, where
        // every run's private directory is made: it must read the inputs
        // and write the outputs of each request it gets.
        let mut child = self.spec.command().spawn().map_err(StreamError::Spawn)?;
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
        })
    }

    /// Send one request line, get one answer line that `valid` accepts. The
    /// worker goes back to the pool only after a clean exchange; otherwise
    /// it is killed, and the next request starts a fresh one.
    pub async fn ask(
        &self,
        request: &[u8],
        timeout: Duration,
        max_answer: u64,
        valid: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Vec<u8>, StreamError> {
        let _slot = self.slots.acquire().await.map_err(|_| StreamError::Died {
            stderr_tail: "the pool is closed".into(),
        })?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut worker = match idle {
            Some(w) => w,
            None => self.spawn()?,
        };
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
            Ok(Err(_)) => return Err(self.died(worker).await),
            Ok(Ok(line)) if line.is_empty() => return Err(self.died(worker).await),
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
        // A worker lives at most this long: whatever it kept of the images
        // it saw (in memory, or in the scratch dir) dies with it, well
        // within retention.
        if worker.started.elapsed() < MAX_WORKER_AGE {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(worker);
        }
        Ok(line)
    }

    /// A worker whose pipe broke: give its stderr a moment to arrive.
    async fn died(&self, mut worker: Worker) -> StreamError {
        let _ = tokio::time::timeout(Duration::from_millis(500), worker.child.wait()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        StreamError::Died {
            stderr_tail: worker.stderr.text(),
        }
    }
}
