//! A fixed set of threads for slow secret hashing, each owning the Argon2
//! working memory it reuses from one hash to the next.
//!
//! Why not tokio's blocking pool: Argon2 needs `m_cost` KiB of memory per hash
//! (19 MiB for `Argon2::default()`). Allocated per hash on whichever of the
//! pool's many threads ran it, glibc served those buffers from per-thread
//! arenas and kept them after they were freed (freeing one large mmapped
//! block raises glibc's mmap threshold, so the next ones come from the arenas),
//! and the server's resident memory grew to gigabytes under load. Here
//! `concurrency` threads each allocate their buffer once and keep it, so the
//! memory Argon2 holds is `concurrency x m_cost` whatever the load, the
//! number of threads that hash never grows, and no hash allocates.
//!
//! The hasher's semaphore hands out as many permits as there are workers, and
//! a job is sent only with a permit, which it releases when done: so a job
//! never waits in the queue for more than a worker's turnaround, and at most
//! `concurrency` hashes run at once.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::Block;

use crate::CryptoError;

/// Blocks (of 1 KiB) a worker keeps between hashes: `Argon2::default()`'s
/// memory cost (19 MiB), what every hash AgentIdP makes needs.
pub(crate) const KEPT_BLOCKS: usize = argon2::Params::DEFAULT_M_COST as usize;

/// Most blocks one verification may use (256 MiB). A stored hash asking for
/// more is refused rather than allowed to exhaust memory; imported hashes
/// with costs above [`KEPT_BLOCKS`] and up to this get a buffer of their own
/// for the one verification.
pub(crate) const MAX_BLOCKS: usize = 256 * 1024;

/// Why a hash could not get its working memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooMuchMemory {
    /// The blocks asked for.
    pub(crate) blocks: usize,
}

/// The Argon2 working memory of one worker.
#[derive(Debug, Default)]
pub(crate) struct HashMemory {
    /// Kept between hashes; grows once to at most [`KEPT_BLOCKS`].
    kept: Vec<Block>,
}

impl HashMemory {
    /// Runs `hash` with at least `blocks` blocks of memory: the kept buffer
    /// when it is large enough (growing it the first time), else a buffer
    /// allocated for this call and freed after it.
    pub(crate) fn with_blocks<T>(
        &mut self,
        blocks: usize,
        hash: impl FnOnce(&mut [Block]) -> T,
    ) -> Result<T, TooMuchMemory> {
        if blocks > MAX_BLOCKS {
            return Err(TooMuchMemory { blocks });
        }
        if blocks <= KEPT_BLOCKS {
            if self.kept.len() < blocks {
                // Grown straight to the kept size, so this happens once.
                self.kept.resize(KEPT_BLOCKS, Block::new());
            }
            return Ok(hash(&mut self.kept));
        }
        let mut own = vec![Block::new(); blocks];
        Ok(hash(&mut own))
    }

    /// Where the kept buffer lives and how many blocks it has; for tests.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> (usize, usize) {
        (self.kept.as_ptr() as usize, self.kept.len())
    }
}

/// Work for a hashing thread.
pub(crate) type Job = Box<dyn FnOnce(&mut HashMemory) + Send>;

/// The sending side of the workers' queue. The threads stop when the last
/// clone of it is dropped.
#[derive(Debug, Clone)]
pub(crate) struct HashWorkers {
    jobs: Sender<Job>,
}

impl HashWorkers {
    /// Starts `count` (at least 1) threads named `idp-hash-<n>`.
    pub(crate) fn start(count: usize) -> Result<Self, CryptoError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("idp-hash-{n}"))
                .spawn(move || work(&queue))
                .map_err(|e| {
                    CryptoError::Operation(format!("cannot start a hashing thread: {e}"))
                })?;
        }
        Ok(Self { jobs })
    }

    /// Queues `job`; `false` when every worker has stopped.
    pub(crate) fn submit(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }
}

/// A worker's life: take the next job, run it on this thread's memory, until
/// the queue is closed.
fn work(queue: &Mutex<Receiver<Job>>) {
    let mut memory = HashMemory::default();
    loop {
        // One idle worker waits on the queue while holding the lock, the
        // others on the lock. A poisoned lock only means another worker
        // panicked while waiting; the receiver is still sound.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return;
        };
        // A job that panics drops its reply channel (the caller sees an
        // error) and its permit; the worker and its memory stay.
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            tracing::error!("a hashing job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_buffer_is_allocated_once_and_reused() {
        let mut memory = HashMemory::default();
        assert_eq!(memory.kept().1, 0, "nothing before the first hash");
        memory
            .with_blocks(8, |blocks| assert!(blocks.len() >= 8))
            .unwrap();
        let first = memory.kept();
        assert_eq!(first.1, KEPT_BLOCKS);
        for blocks in [8, 1024, KEPT_BLOCKS] {
            memory
                .with_blocks(blocks, |b| assert!(b.len() >= blocks))
                .unwrap();
            assert_eq!(memory.kept(), first, "{blocks} blocks reused the buffer");
        }
    }

    #[test]
    fn larger_costs_get_their_own_buffer_and_huge_ones_none() {
        let mut memory = HashMemory::default();
        let more = KEPT_BLOCKS + 4;
        memory
            .with_blocks(more, |b| assert_eq!(b.len(), more))
            .unwrap();
        assert_eq!(memory.kept().1, 0, "the kept buffer did not grow");
        assert_eq!(
            memory.with_blocks(MAX_BLOCKS + 1, |_| ()),
            Err(TooMuchMemory {
                blocks: MAX_BLOCKS + 1
            })
        );
    }

    #[test]
    fn workers_run_jobs_and_survive_a_panicking_one() {
        let workers = HashWorkers::start(1).unwrap();
        let (tx, rx) = mpsc::channel();
        assert!(workers.submit(Box::new(|_| panic!("boom"))));
        let tx2 = tx.clone();
        assert!(workers.submit(Box::new(move |_| {
            tx2.send(std::thread::current().name().map(str::to_owned))
                .unwrap();
        })));
        assert_eq!(rx.recv().unwrap().as_deref(), Some("idp-hash-0"));
    }
}
