//! A fixed set of threads for slow secret hashing, each owning the Argon2
//! working memory it reuses from one hash to the next.
//!
//! Why not tokio's blocking pool: Argon2 needs `m_cost` KiB of memory per hash
//! (9 MiB for the hashes AgentIdP makes). Allocated per hash on whichever of the
//! pool's many threads ran it, glibc served those buffers from per-thread
//! arenas and kept them after they were freed (freeing one large mmapped
//! block raises glibc's mmap threshold, so the next ones come from the arenas),
//! and the server's resident memory grew to gigabytes under load. Here
//! `concurrency` threads each allocate their buffer once and keep it while
//! there is hashing to do, so the memory Argon2 holds is at most
//! `concurrency x m_cost` whatever the load, the number of threads that hash
//! never grows, and a hash under load allocates nothing. A worker that has had
//! nothing to hash for [`IDLE_RELEASE`] frees its buffer: a server whose
//! clients are warm (each secret is hashed once per process, see
//! [`crate::verified`]) does not hold `concurrency x 9 MiB` for nothing.
//!
//! The hasher's semaphore hands out as many permits as there are workers, and
//! a job is sent only with a permit, which it releases when done: so a job
//! never waits in the queue for more than a worker's turnaround, and at most
//! `concurrency` hashes run at once.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use argon2::Block;

use crate::CryptoError;

/// Blocks (of 1 KiB) a worker keeps between hashes: the memory cost of every
/// hash AgentIdP makes ([`crate::NEW_HASH_MEMORY_KIB`], 9 MiB).
pub(crate) const KEPT_BLOCKS: usize = crate::hasher::NEW_HASH_MEMORY_KIB as usize;

/// Blocks every Argon2 buffer reserves at least: just over 32 MiB, the most
/// glibc's dynamic mmap threshold can rise to. A request that large is always
/// served by its own `mmap` and always unmapped when freed, so a released
/// buffer leaves the process at once, whatever other large blocks were freed
/// before (each of which raises the threshold to its size). Only the blocks a
/// hash writes become resident: 9 MiB for the kept buffer.
const RESERVED_BLOCKS: usize = 32 * 1024 + 1;

/// How long a hashing thread keeps its Argon2 buffer with nothing to hash
/// before freeing it.
pub const IDLE_RELEASE: Duration = Duration::from_secs(5);

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
                self.kept = mapped_buffer(KEPT_BLOCKS);
            }
            return Ok(hash(&mut self.kept));
        }
        let mut own = mapped_buffer(blocks);
        Ok(hash(&mut own))
    }

    /// Frees the kept buffer; the next hash allocates it again.
    fn release(&mut self) {
        self.kept = Vec::new();
    }

    /// Whether a buffer is kept.
    fn holds(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Where the kept buffer lives and how many blocks it has; for tests.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> (usize, usize) {
        (self.kept.as_ptr() as usize, self.kept.len())
    }
}

/// `blocks` zeroed blocks in an allocation of at least [`RESERVED_BLOCKS`].
fn mapped_buffer(blocks: usize) -> Vec<Block> {
    let mut buffer = Vec::with_capacity(blocks.max(RESERVED_BLOCKS));
    buffer.resize(blocks, Block::new());
    buffer
}

/// Work for a hashing thread.
pub(crate) type Job = Box<dyn FnOnce(&mut HashMemory) + Send>;

/// The jobs waiting for a worker, and whether more may come.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled for each queued job, and when the queue closes.
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    /// The state; a poisoned lock only means a thread panicked while holding
    /// it, between whole operations on the deque, which stays sound.
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes the queue when the last [`HashWorkers`] clone is dropped: the
/// workers finish the queued jobs and stop.
struct Closer(Arc<Queue>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

/// The handle of the workers' queue. The threads stop when the last clone of
/// it is dropped.
#[derive(Clone)]
pub(crate) struct HashWorkers {
    queue: Arc<Closer>,
}

impl std::fmt::Debug for HashWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashWorkers")
            .field("queued", &self.queue.0.lock().jobs.len())
            .finish()
    }
}

impl HashWorkers {
    /// Starts `count` (at least 1) threads named `idp-hash-<n>`, each freeing
    /// its buffer after [`IDLE_RELEASE`] without work.
    pub(crate) fn start(count: usize) -> Result<Self, CryptoError> {
        Self::start_with_idle_release(count, IDLE_RELEASE)
    }

    /// [`HashWorkers::start`] with another idle time before a buffer is freed.
    pub(crate) fn start_with_idle_release(
        count: usize,
        idle_release: Duration,
    ) -> Result<Self, CryptoError> {
        let queue = Arc::new(Queue::default());
        // Created first, so a failed start closes the queue and stops the
        // threads already started.
        let handle = Self {
            queue: Arc::new(Closer(Arc::clone(&queue))),
        };
        for n in 0..count.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("idp-hash-{n}"))
                .spawn(move || work(&queue, idle_release))
                .map_err(|e| {
                    CryptoError::Operation(format!("cannot start a hashing thread: {e}"))
                })?;
        }
        Ok(handle)
    }

    /// Queues `job` for the next free worker; `false` once the queue closed.
    pub(crate) fn submit(&self, job: Job) -> bool {
        let queue = &self.queue.0;
        let mut state = queue.lock();
        if state.closed {
            return false;
        }
        state.jobs.push_back(job);
        drop(state);
        queue.ready.notify_one();
        true
    }
}

/// What a worker does next.
enum Next {
    Run(Job),
    /// Nothing to hash for the idle time: free the buffer.
    Release,
    Stop,
}

/// Waits for the next job. Every idle worker waits on the condition variable
/// itself (not behind another worker), so each one times out on its own.
fn next(queue: &Queue, holds_memory: bool, idle_release: Duration) -> Next {
    let mut state = queue.lock();
    loop {
        if let Some(job) = state.jobs.pop_front() {
            return Next::Run(job);
        }
        if state.closed {
            return Next::Stop;
        }
        if holds_memory {
            let (woken, waited) = queue
                .ready
                .wait_timeout(state, idle_release)
                .unwrap_or_else(PoisonError::into_inner);
            state = woken;
            if waited.timed_out() && state.jobs.is_empty() && !state.closed {
                return Next::Release;
            }
        } else {
            state = queue
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A worker's life: take the next job, run it on this thread's memory, free
/// the memory after `idle_release` without a job, until the queue closes.
fn work(queue: &Queue, idle_release: Duration) {
    let mut memory = HashMemory::default();
    loop {
        match next(queue, memory.holds(), idle_release) {
            Next::Run(job) => {
                // A job that panics drops its reply channel (the caller sees
                // an error) and its permit; the worker and its memory stay.
                if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
                    tracing::error!("a hashing job panicked");
                }
            }
            Next::Release => memory.release(),
            Next::Stop => return,
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

    /// Runs `jobs` at once, one per worker (each waits for the others), and
    /// answers what each sent.
    fn on_every_worker<T: Send + 'static>(
        workers: &HashWorkers,
        count: usize,
        job: impl Fn(&mut HashMemory) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        let together = Arc::new(std::sync::Barrier::new(count));
        let job = Arc::new(job);
        for _ in 0..count {
            let (tx, together, job) = (tx.clone(), Arc::clone(&together), Arc::clone(&job));
            assert!(workers.submit(Box::new(move |memory| {
                together.wait();
                tx.send(job(memory)).unwrap();
            })));
        }
        (0..count).map(|_| rx.recv().unwrap()).collect()
    }

    #[test]
    fn idle_workers_free_their_buffers_and_allocate_them_again_when_needed() {
        let workers = HashWorkers::start_with_idle_release(2, Duration::from_millis(50)).unwrap();
        let kept = on_every_worker(&workers, 2, |memory| {
            memory.with_blocks(8, |_| ()).unwrap();
            memory.kept().1
        });
        assert_eq!(kept, [KEPT_BLOCKS, KEPT_BLOCKS]);

        // Idle well past the release time: each worker freed its own buffer.
        std::thread::sleep(Duration::from_millis(500));
        let before_and_after = on_every_worker(&workers, 2, |memory| {
            let before = memory.kept().1;
            memory.with_blocks(8, |_| ()).unwrap();
            (before, memory.kept().1)
        });
        assert_eq!(before_and_after, [(0, KEPT_BLOCKS), (0, KEPT_BLOCKS)]);
    }

    #[test]
    fn a_busy_worker_keeps_its_buffer() {
        let workers = HashWorkers::start_with_idle_release(1, Duration::from_secs(60)).unwrap();
        let kept: Vec<_> = (0..3)
            .map(|_| {
                on_every_worker(&workers, 1, |memory| {
                    memory.with_blocks(8, |_| ()).unwrap();
                    memory.kept()
                })[0]
            })
            .collect();
        assert_eq!(kept[0], kept[1]);
        assert_eq!(kept[1], kept[2]);
    }

    #[test]
    fn dropping_the_last_handle_stops_the_workers_after_the_queued_jobs() {
        let workers = HashWorkers::start(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for n in 0..3 {
            let tx = tx.clone();
            assert!(workers.clone().submit(Box::new(move |_| {
                tx.send(n).unwrap();
            })));
        }
        drop(tx);
        drop(workers);
        // Every queued job ran; then the worker stopped, dropping nothing
        // more (the channel closes once the jobs' senders are gone).
        assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn workers_run_jobs_and_survive_a_panicking_one() {
        let workers = HashWorkers::start(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(workers.submit(Box::new(|_| panic!("boom"))));
        let tx2 = tx.clone();
        assert!(workers.submit(Box::new(move |_| {
            tx2.send(std::thread::current().name().map(str::to_owned))
                .unwrap();
        })));
        assert_eq!(rx.recv().unwrap().as_deref(), Some("idp-hash-0"));
    }
}
