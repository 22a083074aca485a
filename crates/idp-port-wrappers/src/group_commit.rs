//! Group commit of audit events.
//!
//! Every token response waits until its `token.issued` event is committed
//! (contract section 6), so with one commit per event the database's commit
//! (a WAL flush: PostgreSQL's, or SQLite's with `synchronous = FULL`) bounds
//! the token endpoint. [`GroupCommitAuditLog`] lets concurrent requests share
//! commits: one writer task owns the queue; it takes the first waiting event,
//! then whatever else is already queued, up to a cap, appends them all with one
//! [`AuditLog::append_all`] (one transaction), and answers every waiting caller
//! with that commit's result. No one waits for a timer: when the server is
//! idle a batch is one event, committed at once; under load, events queue up
//! while the running commit finishes and share the next one.
//!
//! One batch commits at a time, on both stores. SQLite has one writer anyway.
//! On PostgreSQL much of a commit's cost is the same whatever its size
//! (pgbench of the append function: about 0.35 ms a call, flush included,
//! and about 30 µs an event), so what the token endpoint gains from fewer,
//! larger commits outweighs what a second batch in flight would overlap.
//! Measured under the token bench (ES256 and RS256,
//! alternated runs): two batches in flight waited for each other's chain-head
//! locks and gave 5-20% fewer tokens/s; two writers over disjoint owners (no
//! lock waits) about 15% fewer at ES256, the database busier for smaller
//! batches; and a writer that waited 1 ms for its batch to fill left the
//! machine idle (5-20% fewer at ES256, the same at RS256).
//!
//! A [`CommitObserver`] given at start sees every commit (its events and how
//! long the transaction took) and every caller's wait (from queueing to the
//! answer): the server turns them into metrics, since under load a token
//! response spends most of its time waiting for its commit.
//!
//! What a caller can rely on is unchanged: when `append` answers `Ok`, its
//! event is committed. The price is shared fate: when a commit fails, every
//! caller of that batch gets the error (for the log, the error names the
//! batch's size). If the writer task is gone, callers get
//! [`StoreError::Unavailable`]; a panicking adapter fails only its batch.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use idp_domain::StoreError;
use idp_domain::audit::{AuditEvent, AuditFilter};
use idp_domain::audit_chain::ChainHead;
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::AuditLog;
use idp_domain::values::{AgentId, EventId, Owner};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

/// One caller's events (one, from `append`) and where its answer goes.
struct Pending {
    events: Vec<AuditEvent>,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

/// Sees the group commit at work, for metrics. Called on the commit's hot
/// path: an implementation records and returns, and never blocks.
pub trait CommitObserver: Send + Sync {
    /// One batch of `events` was appended in one transaction, or failed,
    /// after `took` (the adapter's `append_all`, the database's flush
    /// included).
    fn batch_committed(&self, events: usize, took: Duration);

    /// One caller of `append` or `append_all` got its answer after `waited`,
    /// from queueing its events: the commits before its own included.
    fn append_answered(&self, waited: Duration);
}

/// An [`AuditLog`] whose appends share commits; reads go straight through.
pub struct GroupCommitAuditLog {
    inner: Arc<dyn AuditLog>,
    queue: mpsc::Sender<Pending>,
    observer: Option<Arc<dyn CommitObserver>>,
}

impl std::fmt::Debug for GroupCommitAuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitAuditLog")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .finish_non_exhaustive()
    }
}

impl GroupCommitAuditLog {
    /// Events per commit at most, unless one caller's `append_all` brings more.
    /// 256 rows of `audit_events` are one INSERT of a few hundred kilobytes at
    /// worst, committed in about the time of one.
    pub const DEFAULT_MAX_BATCH: usize = 256;

    /// Callers that may wait in the queue per event of a batch; beyond that,
    /// `append` waits for room (back-pressure when the database is slow).
    const QUEUE_PER_BATCH: usize = 4;

    /// Wraps `inner` and starts the writer task on the current Tokio runtime.
    /// The task ends once the returned log (and every clone of the `Arc`
    /// holding it) is dropped and the queue is drained.
    ///
    /// `observer`, when given, sees every batch and every caller's wait.
    ///
    /// Fails, rather than panics, outside a Tokio runtime.
    pub fn start(
        inner: Arc<dyn AuditLog>,
        max_batch: usize,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| anyhow::anyhow!("the audit group commit needs a Tokio runtime: {e}"))?;
        let max_batch = max_batch.max(1);
        let (queue, waiting) = mpsc::channel(max_batch.saturating_mul(Self::QUEUE_PER_BATCH));
        runtime.spawn(write_batches(
            Arc::clone(&inner),
            waiting,
            max_batch,
            observer.clone(),
        ));
        Ok(Self {
            inner,
            queue,
            observer,
        })
    }

    /// Queues `events` as one entry (never split across commits) and waits
    /// for the commit that holds them.
    async fn commit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        let queued = Instant::now();
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { events, answer })
            .await
            .map_err(|_| writer_gone())?;
        let answer = answered.await.map_err(|_| writer_gone());
        if let Some(observer) = &self.observer {
            observer.append_answered(queued.elapsed());
        }
        answer?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("the audit log's writer task has stopped"))
}

#[async_trait]
impl AuditLog for GroupCommitAuditLog {
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.commit(vec![event.clone()]).await
    }

    /// The events stay together, in one commit, possibly with other callers'.
    async fn append_all(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.commit(events.to_vec()).await
    }

    async fn list(
        &self,
        owner: &Owner,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        self.inner.list(owner, filter, page).await
    }

    async fn find(
        &self,
        owner: &Owner,
        id: EventId,
        not_before: DateTime<Utc>,
    ) -> Result<Option<AuditEvent>, StoreError> {
        self.inner.find(owner, id, not_before).await
    }

    async fn tokens_issued_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(AgentId, u64)>, StoreError> {
        self.inner.tokens_issued_since(since).await
    }

    async fn tokens_issued_by(
        &self,
        owner: &Owner,
        agent: AgentId,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.tokens_issued_by(owner, agent, since).await
    }

    async fn chain_page(
        &self,
        owner: &Owner,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.chain_page(owner, from_sequence, limit).await
    }

    async fn chain_head(&self, owner: &Owner) -> Result<Option<ChainHead>, StoreError> {
        self.inner.chain_head(owner).await
    }

    async fn chain_owners(&self) -> Result<Vec<Owner>, StoreError> {
        self.inner.chain_owners().await
    }
}

/// The writer task, until every sender is gone: once the previous batch is
/// committed, takes the next one and commits it in a task of its own, which
/// frees the commit slot before answering the batch's callers, so the next
/// batch is taken while they are woken.
async fn write_batches(
    inner: Arc<dyn AuditLog>,
    mut waiting: mpsc::Receiver<Pending>,
    max_batch: usize,
    observer: Option<Arc<dyn CommitObserver>>,
) {
    let commit_slot = Arc::new(Semaphore::new(1));
    loop {
        // The slot is taken before the batch, so callers arriving while a
        // batch commits queue up and share the next commit.
        let Ok(slot) = Arc::clone(&commit_slot).acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut events = first.events;
        let mut answers = vec![first.answer];
        while events.len() < max_batch {
            match waiting.try_recv() {
                Ok(next) => {
                    events.extend(next.events);
                    answers.push(next.answer);
                }
                Err(_) => break,
            }
        }
        let inner = Arc::clone(&inner);
        let observer = observer.clone();
        tokio::spawn(async move {
            let size = events.len();
            let started = Instant::now();
            let result = append_batch(&inner, events).await;
            if let Some(observer) = &observer {
                observer.batch_committed(size, started.elapsed());
            }
            drop(slot);
            for answer in answers {
                // A caller that stopped waiting (its request was dropped) needs no answer.
                let _ = answer.send(shared(&result));
            }
        });
    }
}

/// Appends one batch; a panicking adapter fails this batch instead of
/// killing the writer. (Caught here rather than by a task of its own: one
/// wake-up less between the commit and its callers.)
async fn append_batch(
    inner: &Arc<dyn AuditLog>,
    events: Vec<AuditEvent>,
) -> Result<(), StoreError> {
    let size = events.len();
    let span = tracing::debug_span!("audit_group_commit", events = size);
    let appended = AssertUnwindSafe(inner.append_all(&events).instrument(span))
        .catch_unwind()
        .await;
    let result = appended.unwrap_or_else(|_| {
        Err(StoreError::Unknown(anyhow::anyhow!(
            "the audit log adapter panicked"
        )))
    });
    result.map_err(|e| in_batch(e, size))
}

/// Names the batch in the causes of a failure, so the log of each caller
/// says its event shared the fate of `size` events.
fn in_batch(err: StoreError, size: usize) -> StoreError {
    match err {
        StoreError::Unavailable(e) => {
            StoreError::Unavailable(anyhow::anyhow!("group commit of {size} events: {e:#}"))
        }
        StoreError::Unknown(e) => {
            StoreError::Unknown(anyhow::anyhow!("group commit of {size} events: {e:#}"))
        }
        other => other,
    }
}

/// A copy of a batch's result for one of its callers (`StoreError` is not
/// `Clone`: the causes are carried over as text).
fn shared(result: &Result<(), StoreError>) -> Result<(), StoreError> {
    let Err(err) = result else {
        return Ok(());
    };
    Err(match err {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Duplicate => StoreError::Duplicate,
        StoreError::LimitExceeded => StoreError::LimitExceeded,
        StoreError::AgentNotActive => StoreError::AgentNotActive,
        StoreError::AgentDecommissioned => StoreError::AgentDecommissioned,
        StoreError::CredentialRevoked => StoreError::CredentialRevoked,
        StoreError::Unavailable(e) => StoreError::Unavailable(anyhow::anyhow!("{e:#}")),
        StoreError::Unknown(e) => StoreError::Unknown(anyhow::anyhow!("{e:#}")),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use chrono::TimeZone;
    use idp_domain::values::{AgentId, AuditAction, Outcome};
    use tokio::sync::Semaphore;
    use uuid::Uuid;

    use super::*;

    /// An inner log that records each `append_all` call's event ids when it
    /// starts, then waits for its gate before answering; a batch holding
    /// `poison` fails with `poison_error`, one holding `panic_on` panics.
    struct Recording {
        batches: Mutex<Vec<Vec<EventId>>>,
        gate: Semaphore,
        poison: Option<(EventId, fn() -> StoreError)>,
        panic_on: Option<EventId>,
    }

    impl Recording {
        /// Answers at once.
        fn open() -> Self {
            Self {
                batches: Mutex::new(Vec::new()),
                gate: Semaphore::new(Semaphore::MAX_PERMITS),
                poison: None,
                panic_on: None,
            }
        }

        /// Waits for [`Recording::release`] before answering.
        fn closed() -> Self {
            Self {
                gate: Semaphore::new(0),
                ..Self::open()
            }
        }

        fn release(&self) {
            self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }

        fn batches(&self) -> Vec<Vec<EventId>> {
            self.batches.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl AuditLog for Recording {
        async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
            self.append_all(std::slice::from_ref(event)).await
        }

        async fn append_all(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
            let ids: Vec<EventId> = events.iter().map(|e| e.event_id).collect();
            self.batches.lock().unwrap().push(ids.clone());
            self.gate.acquire().await.unwrap().forget();
            if self.panic_on.is_some_and(|id| ids.contains(&id)) {
                panic!("the adapter panicked");
            }
            match self.poison {
                Some((id, error)) if ids.contains(&id) => Err(error()),
                _ => Ok(()),
            }
        }

        async fn list(
            &self,
            _owner: &Owner,
            _filter: &AuditFilter,
            page: PageRequest,
        ) -> Result<Page<AuditEvent>, StoreError> {
            Ok(Page {
                items: Vec::new(),
                request: page,
                total: 42,
            })
        }

        async fn find(
            &self,
            _owner: &Owner,
            id: EventId,
            _not_before: DateTime<Utc>,
        ) -> Result<Option<AuditEvent>, StoreError> {
            Ok(Some(AuditEvent {
                event_id: id,
                ..event()
            }))
        }

        async fn tokens_issued_since(
            &self,
            _since: DateTime<Utc>,
        ) -> Result<Vec<(AgentId, u64)>, StoreError> {
            Ok(Vec::new())
        }

        async fn tokens_issued_by(
            &self,
            _owner: &Owner,
            _agent: AgentId,
            _since: DateTime<Utc>,
        ) -> Result<u64, StoreError> {
            Ok(0)
        }

        async fn chain_page(
            &self,
            _owner: &Owner,
            from_sequence: u64,
            _limit: usize,
        ) -> Result<Vec<AuditEvent>, StoreError> {
            Ok(vec![AuditEvent {
                sequence: Some(from_sequence),
                ..event()
            }])
        }

        async fn chain_head(&self, _owner: &Owner) -> Result<Option<ChainHead>, StoreError> {
            Ok(Some(ChainHead {
                sequence: 42,
                hash: "ab".repeat(32),
            }))
        }

        async fn chain_owners(&self) -> Result<Vec<Owner>, StoreError> {
            Ok(vec![Owner::system()])
        }
    }

    fn event() -> AuditEvent {
        AuditEvent {
            event_id: EventId(Uuid::new_v4()),
            owner: Some(Owner::parse("acme").unwrap()),
            agent_id: Some(AgentId(Uuid::new_v4())),
            actor_id: None,
            action: AuditAction::TokenIssued,
            outcome: Outcome::Success,
            ip_address: Some("203.0.113.7".into()),
            user_agent: None,
            metadata: serde_json::json!({"scope": "a b"}),
            timestamp: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
            sequence: None,
            hash: None,
        }
    }

    fn start(inner: &Arc<Recording>, max_batch: usize) -> Arc<GroupCommitAuditLog> {
        let inner: Arc<dyn AuditLog> = Arc::clone(inner) as Arc<dyn AuditLog>;
        Arc::new(GroupCommitAuditLog::start(inner, max_batch, None).unwrap())
    }

    /// Waits (at most 5 s) until `done` holds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..5_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("timed out waiting until {what}");
    }

    fn queued(log: &GroupCommitAuditLog) -> usize {
        log.queue.max_capacity() - log.queue.capacity()
    }

    /// Starts one `append` per event, each in a task of its own.
    fn append_each(
        log: &Arc<GroupCommitAuditLog>,
        events: &[AuditEvent],
    ) -> Vec<tokio::task::JoinHandle<Result<(), StoreError>>> {
        events
            .iter()
            .map(|e| {
                let log = Arc::clone(log);
                let e = e.clone();
                tokio::spawn(async move { log.append(&e).await })
            })
            .collect()
    }

    /// Holds the writer in a first commit of `first` while `rest` queue up
    /// behind it; answers the tasks of `first` and of `rest`.
    async fn queue_behind_a_commit(
        inner: &Arc<Recording>,
        log: &Arc<GroupCommitAuditLog>,
        first: &AuditEvent,
        rest: &[AuditEvent],
    ) -> (
        tokio::task::JoinHandle<Result<(), StoreError>>,
        Vec<tokio::task::JoinHandle<Result<(), StoreError>>>,
    ) {
        let head = append_each(log, std::slice::from_ref(first)).remove(0);
        until("the first commit started", || inner.batches().len() == 1).await;
        let tail = append_each(log, rest);
        until("the rest are queued", || queued(log) == rest.len()).await;
        (head, tail)
    }

    fn ids(events: &[AuditEvent]) -> Vec<EventId> {
        events.iter().map(|e| e.event_id).collect()
    }

    fn sorted(mut ids: Vec<EventId>) -> Vec<EventId> {
        ids.sort_by_key(|id| id.0);
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_during_a_commit_share_the_next_one() {
        let inner = Arc::new(Recording::closed());
        let log = start(&inner, 256);
        let first = event();
        let rest: Vec<AuditEvent> = (0..10).map(|_| event()).collect();

        let (head, tail) = queue_behind_a_commit(&inner, &log, &first, &rest).await;
        inner.release();

        head.await.unwrap().unwrap();
        for task in tail {
            task.await.unwrap().unwrap();
        }
        let batches = inner.batches();
        assert_eq!(batches.len(), 2, "11 events, 2 commits: {batches:?}");
        assert_eq!(batches[0], vec![first.event_id]);
        assert_eq!(sorted(batches[1].clone()), sorted(ids(&rest)));
    }

    /// Records what a [`CommitObserver`] is told.
    #[derive(Default)]
    struct Seen {
        batches: Mutex<Vec<(usize, Duration)>>,
        waits: Mutex<Vec<Duration>>,
    }

    impl CommitObserver for Seen {
        fn batch_committed(&self, events: usize, took: Duration) {
            self.batches.lock().unwrap().push((events, took));
        }

        fn append_answered(&self, waited: Duration) {
            self.waits.lock().unwrap().push(waited);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_observer_sees_each_batch_and_each_callers_wait() {
        let inner = Arc::new(Recording::closed());
        let seen = Arc::new(Seen::default());
        let observer: Arc<dyn CommitObserver> = Arc::clone(&seen) as Arc<dyn CommitObserver>;
        let log = Arc::new(
            GroupCommitAuditLog::start(
                Arc::clone(&inner) as Arc<dyn AuditLog>,
                256,
                Some(observer),
            )
            .unwrap(),
        );
        let rest: Vec<AuditEvent> = (0..10).map(|_| event()).collect();
        let held = Duration::from_millis(30);

        let (head, tail) = queue_behind_a_commit(&inner, &log, &event(), &rest).await;
        tokio::time::sleep(held).await;
        inner.release();
        head.await.unwrap().unwrap();
        for task in tail {
            task.await.unwrap().unwrap();
        }

        let batches = seen.batches.lock().unwrap().clone();
        let sizes: Vec<usize> = batches.iter().map(|(events, _)| *events).collect();
        assert_eq!(sizes, vec![1, 10], "{batches:?}");
        assert!(
            batches[0].1 >= held,
            "the first commit was held: {batches:?}"
        );
        let waits = seen.waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 11, "one wait per caller: {waits:?}");
        assert!(
            waits.iter().all(|w| *w >= held),
            "every caller waited for the held commit: {waits:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_holds_at_most_the_cap() {
        let inner = Arc::new(Recording::closed());
        let log = start(&inner, 4);
        let rest: Vec<AuditEvent> = (0..10).map(|_| event()).collect();

        let (head, tail) = queue_behind_a_commit(&inner, &log, &event(), &rest).await;
        inner.release();

        head.await.unwrap().unwrap();
        for task in tail {
            task.await.unwrap().unwrap();
        }
        let sizes: Vec<usize> = inner.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 4, 4, 2]);
        let committed: Vec<EventId> = inner.batches()[1..].concat();
        assert_eq!(sorted(committed), sorted(ids(&rest)), "each event once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_log_commits_each_event_at_once() {
        let inner = Arc::new(Recording::open());
        let log = start(&inner, 256);
        let events: Vec<AuditEvent> = (0..3).map(|_| event()).collect();

        for e in &events {
            log.append(e).await.unwrap();
        }

        let expected: Vec<Vec<EventId>> = events.iter().map(|e| vec![e.event_id]).collect();
        assert_eq!(inner.batches(), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_caller_of_a_failed_batch_gets_its_error_and_no_one_else() {
        for (error, is_expected) in [
            (
                (|| StoreError::Duplicate) as fn() -> StoreError,
                (|e: &StoreError| matches!(e, StoreError::Duplicate)) as fn(&StoreError) -> bool,
            ),
            (
                || StoreError::Unavailable(anyhow::anyhow!("connection lost")),
                |e| matches!(e, StoreError::Unavailable(m) if m.to_string().contains("connection lost")),
            ),
            (
                || StoreError::Unknown(anyhow::anyhow!("trigger refused")),
                |e| matches!(e, StoreError::Unknown(m) if m.to_string().contains("of 3 events: trigger refused")),
            ),
        ] {
            let rest: Vec<AuditEvent> = (0..3).map(|_| event()).collect();
            let inner = Arc::new(Recording {
                poison: Some((rest[1].event_id, error)),
                ..Recording::closed()
            });
            let log = start(&inner, 256);

            let (head, tail) = queue_behind_a_commit(&inner, &log, &event(), &rest).await;
            inner.release();

            head.await.unwrap().unwrap();
            for task in tail {
                let err = task.await.unwrap().unwrap_err();
                assert!(is_expected(&err), "{err:?}");
            }
            let after = event();
            log.append(&after).await.unwrap();
            assert_eq!(inner.batches().len(), 3);
            assert_eq!(inner.batches()[2], vec![after.event_id]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_adapter_fails_its_batch_not_the_writer() {
        let doomed = event();
        let inner = Arc::new(Recording {
            panic_on: Some(doomed.event_id),
            ..Recording::open()
        });
        let log = start(&inner, 256);

        let err = log.append(&doomed).await.unwrap_err();
        assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");

        log.append(&event()).await.unwrap();
    }

    #[tokio::test]
    async fn a_stopped_writer_is_unavailable_not_a_panic() {
        let (queue, waiting) = mpsc::channel(1);
        drop(waiting);
        let log = GroupCommitAuditLog {
            inner: Arc::new(Recording::open()),
            queue,
            observer: None,
        };

        let err = log.append(&event()).await.unwrap_err();

        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_writer_that_drops_its_answer_is_unavailable_not_a_panic() {
        let (queue, mut waiting) = mpsc::channel::<Pending>(1);
        tokio::spawn(async move {
            // Takes the entry and drops it unanswered.
            drop(waiting.recv().await);
        });
        let log = GroupCommitAuditLog {
            inner: Arc::new(Recording::open()),
            queue,
            observer: None,
        };

        let err = log.append(&event()).await.unwrap_err();

        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn starting_outside_a_runtime_is_an_error_not_a_panic() {
        let inner: Arc<dyn AuditLog> = Arc::new(Recording::open());
        assert!(GroupCommitAuditLog::start(inner, 256, None).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_append_all_commits_nothing() {
        let inner = Arc::new(Recording::open());
        let log = start(&inner, 256);

        log.append_all(&[]).await.unwrap();

        assert!(inner.batches().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_callers_events_stay_together_and_in_order() {
        let inner = Arc::new(Recording::closed());
        let log = start(&inner, 3);
        let mine: Vec<AuditEvent> = (0..5).map(|_| event()).collect();
        let head = append_each(&log, &[event()]).remove(0);
        until("the first commit started", || inner.batches().len() == 1).await;

        let all = {
            let log = Arc::clone(&log);
            let mine = mine.clone();
            tokio::spawn(async move { log.append_all(&mine).await })
        };
        until("mine are queued", || queued(&log) == 1).await;
        inner.release();

        head.await.unwrap().unwrap();
        all.await.unwrap().unwrap();
        assert_eq!(
            inner.batches()[1],
            ids(&mine),
            "over the cap, still one commit"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_go_straight_to_the_inner_log() {
        let inner = Arc::new(Recording::closed());
        let log = start(&inner, 256);
        let owner = Owner::parse("acme").unwrap();
        let id = EventId(Uuid::new_v4());

        let page = log
            .list(&owner, &AuditFilter::default(), PageRequest::default())
            .await
            .unwrap();
        let found = log.find(&owner, id, event().timestamp).await.unwrap();

        let chain = log.chain_page(&owner, 7, 10).await.unwrap();
        let head = log.chain_head(&owner).await.unwrap();
        let owners = log.chain_owners().await.unwrap();

        assert_eq!(page.total, 42);
        assert_eq!(found.map(|e| e.event_id), Some(id));
        assert_eq!(chain[0].sequence, Some(7));
        assert_eq!(head.map(|h| h.sequence), Some(42));
        assert_eq!(owners, [Owner::system()]);
        assert!(inner.batches().is_empty());
    }
}
