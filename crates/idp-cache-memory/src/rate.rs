use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::ports::{RateDecision, RateLimiter, Reservation};

use crate::lock::lock;
use idp_domain::admission::{rate_decision, stored_key};

/// Number of independently locked maps: hits on different keys rarely wait
/// for each other, and a sweep holds one shard at a time.
const SHARDS: usize = 16;
/// Fewest hits between two sweeps, so a small map is not swept on every hit.
const SWEEP_MIN_HITS: u64 = 1024;

/// The requests of one key counted in its window, as runs of requests made
/// in the same millisecond: the exact log of the Redis adapter (its sorted
/// set), but bounded by the window's length in milliseconds (60,000 runs of
/// 16 bytes for a minute) instead of growing with the request rate.
#[derive(Debug)]
struct Log {
    /// (time in unix ms, requests counted at that time), times ascending and
    /// distinct, counts at least 1.
    runs: VecDeque<(i64, u32)>,
    /// The sum of the runs' counts.
    counted: usize,
    /// The window (ms) of the latest hit: how long the entries count, for the
    /// sweep.
    window_ms: i64,
}

/// What one hit found: whether it was counted, how many requests are counted
/// after it, and the time of the oldest of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HitOutcome {
    allowed: bool,
    counted: usize,
    oldest_ms: Option<i64>,
}

impl Log {
    fn new(window_ms: i64) -> Self {
        Self {
            runs: VecDeque::new(),
            counted: 0,
            window_ms,
        }
    }

    fn is_empty(&self) -> bool {
        self.counted == 0
    }

    /// The time of the oldest counted request.
    fn oldest(&self) -> Option<i64> {
        self.runs.front().map(|&(at, _)| at)
    }

    /// Forgets the requests that left the window ending at `now_ms`: those at
    /// or before `now_ms - window_ms` (the Redis script's `ZREMRANGEBYSCORE`).
    fn forget_left(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(self.window_ms);
        while let Some(&(at, count)) = self.runs.front()
            && at <= cutoff
        {
            self.counted -= count as usize;
            self.runs.pop_front();
        }
    }

    /// Counts one request at `at_ms`. Concurrent callers may pass slightly
    /// different times in any order; inserting in place keeps the runs
    /// sorted, so the front is always the oldest (the sorted set's lowest
    /// score).
    fn add(&mut self, at_ms: i64) {
        let position = self.runs.partition_point(|&(at, _)| at < at_ms);
        match self.runs.get_mut(position) {
            Some((at, count)) if *at == at_ms && *count < u32::MAX => *count += 1,
            _ => self.runs.insert(position, (at_ms, 1)),
        }
        self.counted += 1;
    }

    /// Takes one request at `at_ms` out, if one is counted.
    fn remove(&mut self, at_ms: i64) {
        let position = self.runs.partition_point(|&(at, _)| at < at_ms);
        if let Some((at, count)) = self.runs.get_mut(position)
            && *at == at_ms
        {
            *count -= 1;
            if *count == 0 {
                self.runs.remove(position);
            }
            self.counted -= 1;
        }
    }

    /// One hit at `now_ms`: forget what left the window, then count this
    /// request only if fewer than `limit` remain.
    fn hit(&mut self, now_ms: i64, window_ms: i64, limit: u32) -> HitOutcome {
        self.window_ms = window_ms;
        self.forget_left(now_ms);
        let allowed = self.counted < usize::try_from(limit).unwrap_or(usize::MAX);
        if allowed {
            self.add(now_ms);
        }
        HitOutcome {
            allowed,
            counted: self.counted,
            oldest_ms: self.oldest(),
        }
    }
}

/// The logs of some keys, by key (as `stored_key` names it).
type Shard = Mutex<HashMap<Box<str>, Log>>;

/// A shard's map while its lock is held.
type LockedShard<'m> = std::sync::MutexGuard<'m, HashMap<Box<str>, Log>>;

/// The locked map of shard `index` among `guards` (which hold every shard a
/// reservation needs).
fn guard_of<'g, 'm>(
    guards: &'g mut [(usize, LockedShard<'m>)],
    index: usize,
) -> &'g mut HashMap<Box<str>, Log> {
    let position = guards.partition_point(|(i, _)| *i < index);
    &mut guards[position].1
}

/// The logs of all keys, sharded by key.
struct RateState {
    shards: Box<[Shard]>,
    hasher: RandomState,
    /// Hits since the last sweep.
    hits_since_sweep: AtomicU64,
    /// The sweep runs once `hits_since_sweep` reaches this: the number of keys
    /// the last sweep kept, at least [`SWEEP_MIN_HITS`], so its cost is
    /// amortised to O(1) per hit and at most about twice the live keys (plus
    /// the minimum) are ever held.
    sweep_after: AtomicU64,
}

impl RateState {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            hits_since_sweep: AtomicU64::new(0),
            sweep_after: AtomicU64::new(SWEEP_MIN_HITS),
        }
    }

    fn shard(&self, key: &str) -> &Shard {
        &self.shards[self.shard_index(key)]
    }

    /// One hit of `key` (already passed through `stored_key`), atomic under the
    /// shard's lock. A key whose log ends up empty is not kept.
    fn hit(&self, key: &str, limit: u32, window_ms: i64, now_ms: i64) -> HitOutcome {
        let mut logs = lock(self.shard(key));
        if let Some(log) = logs.get_mut(key) {
            let outcome = log.hit(now_ms, window_ms, limit);
            if log.is_empty() {
                logs.remove(key);
            }
            outcome
        } else {
            let mut log = Log::new(window_ms);
            let outcome = log.hit(now_ms, window_ms, limit);
            if !log.is_empty() {
                logs.insert(key.into(), log);
            }
            outcome
        }
    }

    /// Counts a hit and sweeps when enough hits have passed since the last
    /// sweep. Only one of several racing callers sweeps.
    fn sweep_if_due(&self, now_ms: i64) {
        let due = self.sweep_after.load(Ordering::Relaxed);
        if self.hits_since_sweep.fetch_add(1, Ordering::Relaxed) + 1 < due {
            return;
        }
        // Whoever resets the count sweeps; a racer that finds it reset leaves.
        if self.hits_since_sweep.swap(0, Ordering::Relaxed) < due {
            return;
        }
        let kept = self.sweep(now_ms);
        let kept = u64::try_from(kept).unwrap_or(u64::MAX);
        self.sweep_after
            .store(kept.max(SWEEP_MIN_HITS), Ordering::Relaxed);
    }

    /// Forgets every request that left its key's window at `now_ms`, drops
    /// the keys left empty, and answers how many keys remain.
    fn sweep(&self, now_ms: i64) -> usize {
        let mut kept = 0;
        for shard in &self.shards {
            let mut logs = lock(shard);
            logs.retain(|_, log| {
                log.forget_left(now_ms);
                // A burst may have grown the log far beyond what it now holds.
                if log.runs.capacity() > 4 * log.runs.len().max(8) {
                    log.runs.shrink_to_fit();
                }
                !log.is_empty()
            });
            if logs.capacity() > 4 * logs.len().max(64) {
                logs.shrink_to_fit();
            }
            kept += logs.len();
        }
        kept
    }

    /// Counts a request at `now_ms` in every window of `windows` (keys already
    /// passed through `stored_key`) if each has room, else in none: atomic,
    /// holding the shards involved, locked in index order so two reservations
    /// never wait for each other in a cycle.
    fn reserve(
        &self,
        windows: &[(String, u32)],
        window_ms: i64,
        now_ms: i64,
    ) -> (bool, Vec<HitOutcome>) {
        let indices: Vec<usize> = windows
            .iter()
            .map(|(key, _)| self.shard_index(key))
            .collect();
        let mut order = indices.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, LockedShard<'_>)> = order
            .iter()
            .map(|&index| (index, lock(&self.shards[index])))
            .collect();
        let mut counted = Vec::with_capacity(windows.len());
        for ((key, _), index) in windows.iter().zip(&indices) {
            let logs = guard_of(&mut guards, *index);
            let count = logs.get_mut(key.as_str()).map_or(0, |log| {
                log.window_ms = window_ms;
                log.forget_left(now_ms);
                log.counted
            });
            counted.push(count);
        }
        let granted = windows
            .iter()
            .zip(&counted)
            .all(|((_, limit), count)| *count < usize::try_from(*limit).unwrap_or(usize::MAX));
        let mut outcomes = Vec::with_capacity(windows.len());
        for (((key, limit), index), count) in windows.iter().zip(&indices).zip(&counted) {
            let logs = guard_of(&mut guards, *index);
            if granted {
                let log = logs
                    .entry(key.as_str().into())
                    .or_insert_with(|| Log::new(window_ms));
                log.add(now_ms);
            }
            let log = logs.get(key.as_str());
            outcomes.push(HitOutcome {
                allowed: granted || *count < usize::try_from(*limit).unwrap_or(usize::MAX),
                counted: log.map_or(0, |log| log.counted),
                oldest_ms: log.and_then(Log::oldest),
            });
        }
        (granted, outcomes)
    }

    /// Takes one request at `at_ms` out of `key`'s log, if it is still there.
    fn release(&self, key: &str, at_ms: i64) {
        let mut logs = lock(self.shard(key));
        if let Some(log) = logs.get_mut(key) {
            log.remove(at_ms);
            if log.is_empty() {
                logs.remove(key);
            }
        }
    }

    fn shard_index(&self, key: &str) -> usize {
        // Truncating the hash is fine: any bits pick a shard.
        #[expect(clippy::cast_possible_truncation, reason = "only picks a shard")]
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        index
    }

    fn key_count(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }
}

/// [`RateLimiter`] in this process: the exact sliding-window log of the Redis
/// adapter, a sorted `VecDeque` of request times (ms, with how many requests
/// each) per key in one of 16 mutex-guarded maps chosen by the key's hash.
///
/// A hit forgets the key's requests at or before `now - window`, counts this
/// one only if fewer than `limit` remain (refused requests are not counted),
/// and reports: `remaining` after this request; `reset_at`, the unix second
/// (rounded up) at which the oldest counted request leaves the window (a full
/// window from `now` when nothing is counted); `retry_after`, when refused, the
/// whole seconds until then, at least 1, and 0 when allowed.
///
/// Keys longer than 128 bytes or not printable ASCII are stored as their
/// SHA-256. Every so often (after as many hits as there were keys, at least
/// 1024) a hit sweeps all keys and drops those with nothing left in their
/// window, so memory follows the keys active in the last window.
///
/// Cloning shares the state; [`MemoryCache::rate_limiter`](crate::MemoryCache::rate_limiter)
/// hands out clones of one limiter's state.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    state: Arc<RateState>,
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("shards", &self.state.shards.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRateLimiter {
    /// An empty limiter with a state of its own.
    pub fn new() -> Self {
        Self {
            state: Arc::new(RateState::new()),
        }
    }

    /// How many keys have requests in memory; for metrics and tests.
    pub fn key_count(&self) -> usize {
        self.state.key_count()
    }

    /// Sweeps now: forgets every request that left its window at `now` and
    /// drops the keys left empty. Answers how many keys remain. Optional: hits
    /// sweep on their own every so often.
    pub fn prune(&self, now: DateTime<Utc>) -> usize {
        self.state.sweep(now.timestamp_millis())
    }
}

/// The decision of a hit at `now_ms`: the domain's one computation, which the
/// Redis adapter makes from its script's reply too.
fn decision(outcome: HitOutcome, limit: u32, window_ms: i64, now_ms: i64) -> RateDecision {
    rate_decision(
        outcome.allowed,
        u32::try_from(outcome.counted).unwrap_or(u32::MAX),
        outcome.oldest_ms,
        limit,
        window_ms,
        now_ms,
    )
}

impl MemoryRateLimiter {
    /// [`RateLimiter::hit`], without the `async`.
    pub(crate) fn hit_now(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: DateTime<Utc>,
    ) -> RateDecision {
        let now_ms = now.timestamp_millis();
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
        let outcome = self.state.hit(&stored_key(key), limit, window_ms, now_ms);
        self.state.sweep_if_due(now_ms);
        decision(outcome, limit, window_ms, now_ms)
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<RateDecision, StoreError> {
        Ok(self.hit_now(key, limit, window, now))
    }

    async fn reserve(
        &self,
        windows: &[(String, u32)],
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError> {
        let now_ms = now.timestamp_millis();
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
        let keyed: Vec<(String, u32)> = windows
            .iter()
            .map(|(key, limit)| (stored_key(key).into_owned(), *limit))
            .collect();
        let (granted, outcomes) = self.state.reserve(&keyed, window_ms, now_ms);
        self.state.sweep_if_due(now_ms);
        Ok(Reservation {
            granted,
            decisions: outcomes
                .into_iter()
                .zip(windows)
                .map(|(outcome, (_, limit))| decision(outcome, *limit, window_ms, now_ms))
                .collect(),
            keys: windows.iter().map(|(key, _)| key.clone()).collect(),
            entry: now_ms.to_string(),
        })
    }

    async fn release(&self, reservation: &Reservation) -> Result<(), StoreError> {
        if !reservation.granted {
            return Ok(());
        }
        let Ok(at_ms) = reservation.entry.parse::<i64>() else {
            return Ok(());
        };
        for key in &reservation.keys {
            self.state.release(&stored_key(key), at_ms);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_stays_sorted_when_times_arrive_out_of_order() {
        let mut log = Log::new(10_000);
        for t in [1_002, 1_000, 1_001, 1_000] {
            assert!(log.hit(t, 10_000, 10).allowed);
        }
        assert_eq!(log.runs, [(1_000, 2), (1_001, 1), (1_002, 1)]);
        assert_eq!(log.counted, 4);
        let outcome = log.hit(11_000, 10_000, 10);
        assert_eq!(
            outcome,
            HitOutcome {
                allowed: true,
                counted: 3,
                oldest_ms: Some(1_001)
            },
            "both entries at exactly now - window left"
        );
    }

    #[test]
    fn a_log_holds_one_run_per_millisecond_whatever_the_rate() {
        let mut log = Log::new(60_000);
        for i in 0..100_000 {
            assert!(log.hit(1_000 + i % 50, 60_000, u32::MAX).allowed);
        }
        assert_eq!(log.runs.len(), 50);
        assert_eq!(log.counted, 100_000);
        assert_eq!(log.runs.front(), Some(&(1_000, 2_000)));

        // The limit counts requests, not runs.
        let mut log = Log::new(60_000);
        for _ in 0..3 {
            assert!(log.hit(5_000, 60_000, 3).allowed);
        }
        assert!(!log.hit(5_000, 60_000, 3).allowed);
        assert_eq!((log.runs.len(), log.counted), (1, 3));

        // A release takes out one request of its run, the run with its last.
        log.remove(5_000);
        assert_eq!(log.runs.front(), Some(&(5_000, 2)));
        log.remove(4_999);
        assert_eq!(log.counted, 2, "no request at that time: nothing taken");
        log.remove(5_000);
        log.remove(5_000);
        assert!(log.is_empty());
        assert!(log.runs.is_empty());

        // A run leaves the window whole.
        let mut log = Log::new(1_000);
        for t in [100, 100, 100, 600] {
            log.hit(t, 1_000, 10);
        }
        let outcome = log.hit(1_100, 1_000, 10);
        assert_eq!((outcome.counted, outcome.oldest_ms), (2, Some(600)));
    }

    #[test]
    fn limit_zero_counts_nothing_and_keeps_no_key() {
        let state = RateState::new();
        let outcome = state.hit("k", 0, 1_000, 5_000);
        assert_eq!(
            outcome,
            HitOutcome {
                allowed: false,
                counted: 0,
                oldest_ms: None
            }
        );
        assert_eq!(state.key_count(), 0);
        let d = decision(outcome, 0, 1_000, 5_000);
        assert_eq!((d.reset_at, d.retry_after, d.remaining), (6, 1, 0));
    }

    #[test]
    fn a_key_whose_window_emptied_is_dropped_on_its_next_refusal() {
        let state = RateState::new();
        assert!(state.hit("k", 1, 1_000, 0).allowed);
        // Limit lowered to 0 after the window passed: nothing counted, no key.
        assert!(!state.hit("k", 0, 1_000, 1_000).allowed);
        assert_eq!(state.key_count(), 0);
    }

    #[test]
    fn extreme_windows_and_times_do_not_overflow() {
        let state = RateState::new();
        let outcome = state.hit("k", 1, i64::MAX, i64::MAX - 1);
        assert!(outcome.allowed);
        let d = decision(outcome, 1, i64::MAX, i64::MAX - 1);
        assert_eq!(d.remaining, 0);
        assert!(!state.hit("k", 1, i64::MAX, i64::MIN + 1).allowed);
        assert_eq!(state.sweep(i64::MIN), 1);
    }
}
