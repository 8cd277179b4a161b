//! The CPU phases of large records, kept off the async runtime's worker threads.
//!
//! Translating, validating and projecting a record costs about 50 µs per KB (`cargo bench
//! --bench phases -- large-record`, on the shared 2-core machine under load: 0.5 ms at 10 KB,
//! 3.7 ms at 100 KB, 50 ms at 1 MB for one direction; a record's `pattern` matches add at most
//! their budget, `registry::PATTERN_STEPS_PER_RECORD`). On a worker thread that time is taken
//! from every other call and from the admin plane, so a record larger than
//! [`LARGE_RECORD_BYTES`] runs its CPU phases on tokio's blocking pool instead, at most
//! [`CpuPool::workers`] at a time; a smaller one stays inline, where a hop (a thread wake-up,
//! tens of µs) would cost more than it saves.
//!
//! The queue is bounded twice: at most [`QUEUED_PER_WORKER`] records per turn wait at once (a
//! further one is refused at once), and none waits longer than [`MAX_WAIT`]; a refused call is
//! `overloaded` (503 with `Retry-After`), never queued without end. A caller that hangs up while
//! waiting leaves the queue (its future is dropped); work that has started runs to its end, which
//! the per-record budgets bound (`registry::PATTERN_STEPS_PER_RECORD`, the body limit).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::problem::ExchangeError;

/// Records (request or response bodies, `/validate` bodies and NDJSON lines) of more bytes than
/// this run their CPU phases on the blocking pool: about 1.5 ms of work, against the hop's tens
/// of µs.
pub const LARGE_RECORD_BYTES: usize = 32 * 1024;

/// The longest a large record waits for a turn on the pool before it is refused (503).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// How many large records may wait for a turn, per turn, before further ones are refused.
pub(crate) const QUEUED_PER_WORKER: usize = 16;

/// What a caller refused for want of a turn is told to wait before trying again.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The turns of large records on the blocking pool.
#[derive(Debug, Clone)]
pub struct CpuPool {
    turns: Arc<Semaphore>,
    workers: usize,
    max_wait: Duration,
    in_progress: Arc<AtomicUsize>,
    waiting: Arc<AtomicUsize>,
}

/// Counts a record as in progress from the moment it asks for a turn until its work ends (or
/// it gives up waiting).
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn new(counter: &Arc<AtomicUsize>) -> InProgress {
        counter.fetch_add(1, Ordering::Relaxed);
        InProgress(counter.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CpuPool {
    /// A pool of `workers` turns (at least one), each waited for at most `max_wait`.
    pub fn new(workers: usize, max_wait: Duration) -> CpuPool {
        let workers = workers.max(1);
        CpuPool {
            turns: Arc::new(Semaphore::new(workers)),
            workers,
            max_wait,
            in_progress: Arc::new(AtomicUsize::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// One turn fewer than the machine has cores (at least one), so large records never take
    /// every core from the runtime's small calls and the admin plane.
    pub(crate) fn for_this_machine() -> CpuPool {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        CpuPool::new(cores.saturating_sub(1), MAX_WAIT)
    }

    /// How many large records may run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Large records waiting for a turn or running now.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::Relaxed)
    }

    /// Whether a record of `bytes` runs on the pool rather than inline.
    pub(crate) fn is_large(bytes: usize) -> bool {
        bytes > LARGE_RECORD_BYTES
    }

    /// Runs `work` on the blocking pool once a turn is free: `Overloaded` when the queue is
    /// full or after the pool's longest wait without a turn, `Internal` when the work panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ExchangeError> {
        let overloaded = ExchangeError::Overloaded {
            retry_after_seconds: RETRY_AFTER_SECONDS,
        };
        let in_progress = InProgress::new(&self.in_progress);
        let waiting = InProgress::new(&self.waiting);
        if self.waiting.load(Ordering::Relaxed) > self.workers.saturating_mul(QUEUED_PER_WORKER) {
            return Err(overloaded);
        }
        let turn = tokio::time::timeout(self.max_wait, self.turns.clone().acquire_owned()).await;
        drop(waiting);
        let turn = match turn {
            Ok(Ok(turn)) => turn,
            // The semaphore is never closed; both are a busy gateway to the caller.
            Ok(Err(_)) | Err(_) => return Err(overloaded),
        };
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let _in_progress = in_progress;
            work()
        })
        .await
        .map_err(|error| {
            tracing::error!(%error, "the CPU phases of a large record did not finish");
            ExchangeError::Internal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_work_runs_off_the_runtime_in_bounded_turns() {
        let pool = CpuPool::new(1, MAX_WAIT);
        let runtime_thread = std::thread::current().id();
        let thread = pool.run(|| std::thread::current().id()).await.unwrap();
        assert_ne!(thread, runtime_thread);
        assert_eq!(pool.in_progress(), 0);
        assert!(!CpuPool::is_large(LARGE_RECORD_BYTES));
        assert!(CpuPool::is_large(LARGE_RECORD_BYTES + 1));
        assert_eq!(CpuPool::new(0, MAX_WAIT).workers(), 1);
    }

    #[tokio::test]
    async fn a_record_that_waits_too_long_for_a_turn_is_refused_as_overloaded() {
        let pool = CpuPool::new(1, Duration::from_millis(50));
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    started.send(()).ok();
                    released.recv()
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || has_started.recv())
            .await
            .unwrap()
            .unwrap();
        let refused = pool.run(|| ()).await;
        assert!(matches!(refused, Err(ExchangeError::Overloaded { .. })));
        release.send(()).unwrap();
        assert!(holder.await.unwrap().unwrap().is_ok());
        assert_eq!(pool.in_progress(), 0);
    }
}
