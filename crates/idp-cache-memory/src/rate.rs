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
/// Runs a log holds before it starts folding requests into runs of their
/// quantum: below this it is exact, so every limit up to it (the default
/// 100 a minute included) behaves as the Redis adapter's log does.
const EXACT_RUNS: usize = 128;
/// Quanta per window beyond [`EXACT_RUNS`]: each adds at most one run, and a
/// folded request counts at most a quantum (window / 64) too long.
const QUANTA: i64 = 64;

/// The requests of one key counted in its window, as runs of requests
/// counted as made in the same millisecond: the Redis adapter's sorted set,
/// exact while it holds fewer than [`EXACT_RUNS`] runs (distinct request
/// times in the window). Beyond that, a request whose quantum (a
/// [`QUANTA`]th of the window) already has a run is counted in that run,
/// timed at the latest request in it: a request may count up to window / 64
/// longer (under a second for a minute), never shorter, so the log never
/// lets through more than the limit, and it holds at most about
/// `EXACT_RUNS + QUANTA + 2` (194) runs of 16 bytes, whatever the rate.
#[derive(Debug)]
struct Log {
    /// (time in unix ms, requests counted as made then), times ascending
    /// (distinct unless a run filled up to `u32::MAX`), counts at least 1.
    /// A run never leaves the quantum it was made in.
    runs: VecDeque<(i64, u32)>,
    /// The sum of the runs' counts.
    counted: usize,
    /// The window (ms) of the latest hit: how long the entries count, for the
    /// sweep, and the length of its quanta.
    window_ms: i64,
    /// The latest cutoff a forget applied: a request at or before it may have
    /// been forgotten, so a release that old must not take another's run.
    forgotten_through: i64,
}

/// The quantum of `at_ms` in a window of `window_ms`: runs never move out of
/// theirs, which bounds both how long a folded request counts and how many
/// runs a full log can make.
fn quantum(at_ms: i64, window_ms: i64) -> i64 {
    at_ms.div_euclid((window_ms / QUANTA).max(1))
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
            forgotten_through: i64::MIN,
        }
    }

    fn is_empty(&self) -> bool {
        self.counted == 0
    }

    /// The time of the oldest counted request.
    fn oldest(&self) -> Option<i64> {
        self.runs.front().map(|&(at, _)| at)
    }

    /// The run that counts a request at `at_ms`, whose sorted place is
    /// `position`, or `None` for a new run there. Its own millisecond's run
    /// first, as the exact log would; once the log is full, the later run of
    /// its quantum (the request counts until then: stricter) or else the
    /// earlier one (which then moves to `at_ms`: its requests count at most a
    /// quantum longer, and the runs stay sorted since the next run is later).
    fn fold_into(&self, position: usize, at_ms: i64) -> Option<usize> {
        if let Some(&(at, count)) = self.runs.get(position)
            && at == at_ms
        {
            return (count < u32::MAX).then_some(position);
        }
        if self.runs.len() < EXACT_RUNS {
            return None;
        }
        let quantum_of = |at| quantum(at, self.window_ms);
        let shares = |index: usize| {
            matches!(self.runs.get(index),
                Some(&(at, count)) if count < u32::MAX && quantum_of(at) == quantum_of(at_ms))
        };
        if shares(position) {
            Some(position)
        } else {
            position.checked_sub(1).filter(|&before| shares(before))
        }
    }

    /// Forgets the requests that left the window ending at `now_ms`: those at
    /// or before `now_ms - window_ms` (the Redis script's `ZREMRANGEBYSCORE`).
    fn forget_left(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(self.window_ms);
        self.forgotten_through = self.forgotten_through.max(cutoff);
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
        match self
            .fold_into(position, at_ms)
            .and_then(|index| self.runs.get_mut(index))
        {
            Some((at, count)) => {
                // Only ever later: the run's requests count longer, not shorter.
                *at = (*at).max(at_ms);
                *count += 1;
            }
            None => self.runs.insert(position, (at_ms, 1)),
        }
        self.counted += 1;
    }

    /// Takes one request at `at_ms` out (a released reservation's): from the
    /// first run at or after `at_ms` in its quantum, where `add` put it or
    /// moved it since; nothing if there is none, or if `at_ms` is old enough
    /// to have been forgotten (a later run of its quantum then counts other
    /// requests). Never too much: the run taken from is no later than the
    /// one holding the released request, so if they differ, the request
    /// counted in the first is now counted in the second, later but still in
    /// its quantum.
    fn remove(&mut self, at_ms: i64) {
        if at_ms <= self.forgotten_through {
            return;
        }
        let position = self.runs.partition_point(|&(at, _)| at < at_ms);
        let window_ms = self.window_ms;
        if let Some((at, count)) = self.runs.get_mut(position)
            && quantum(*at, window_ms) == quantum(at_ms, window_ms)
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

/// [`RateLimiter`] in this process: the sliding-window log of the Redis
/// adapter, a sorted `VecDeque` of request times (ms, with how many requests
/// each) per key in one of 16 mutex-guarded maps chosen by the key's hash.
///
/// The log is exact while a key has fewer than 128 distinct request times in
/// its window, so limits up to 128 per window behave exactly as Redis's.
/// Beyond that, the requests in one 64th of the window share a run timed at
/// the latest of them: a request may count up to window / 64 longer (under a
/// second for a minute) but never shorter, so no more than `limit` requests
/// are ever let through in a window, and a key holds at most about 194 runs
/// of 16 bytes whatever its request rate.
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
        log.remove(4_000);
        assert_eq!(
            log.counted, 2,
            "no request at that time or later in its quantum: nothing taken"
        );
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

        // Folding at the extremes: quanta of `i64::MAX / 64` ms, times at both
        // ends of the range.
        let mut log = Log::new(i64::MAX);
        for at in (0..EXACT_RUNS as i64)
            .map(|i| i64::MIN + i)
            .chain([i64::MAX - 1, i64::MAX])
        {
            log.add(at);
        }
        assert_eq!(log.runs.back(), Some(&(i64::MAX, 2)), "one quantum");
        log.add(i64::MIN + 200);
        log.remove(i64::MIN + 150);
        log.remove(i64::MAX);
        assert_eq!(log.counted, EXACT_RUNS + 1);
        log.forget_left(i64::MAX);
        assert_eq!(log.runs, [(i64::MAX, 1)], "all at or before 0 left");
    }

    /// Knuth's MMIX linear congruential generator: a fixed, reproducible
    /// stream of request times.
    struct Lcg(u64);

    impl Lcg {
        /// A number below `bound`.
        fn below(&mut self, bound: u64) -> i64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            i64::try_from((self.0 >> 33) % bound).unwrap()
        }
    }

    /// The most runs a log can hold, whatever the rate.
    const MOST_RUNS: usize = EXACT_RUNS + QUANTA as usize + 2;

    #[test]
    fn below_128_times_each_millisecond_has_its_run_for_exactly_one_window() {
        let mut log = Log::new(60_000);
        for t in 1_000..1_127 {
            assert!(log.hit(t, 60_000, u32::MAX).allowed);
        }
        assert!(log.runs.iter().copied().eq((1_000..1_127).map(|t| (t, 1))));
        for t in 1_000..1_127 {
            log.forget_left(t + 60_000 - 1);
            assert_eq!(log.oldest(), Some(t), "still counted a millisecond before");
            log.forget_left(t + 60_000);
            assert_eq!(log.counted, usize::try_from(1_126 - t).unwrap());
        }
        assert!(log.is_empty());

        // The 128th time still gets its own run; the 129th, in the same
        // quantum as the last (60,000 / 64 = 937 ms), moves it to itself.
        let mut log = Log::new(60_000);
        for t in 0..128 {
            log.add(t);
        }
        assert_eq!(log.runs.len(), EXACT_RUNS);
        assert_eq!(log.runs.back(), Some(&(127, 1)));
        log.add(128);
        assert_eq!(log.runs.len(), EXACT_RUNS);
        assert_eq!(log.runs.back(), Some(&(128, 2)));
    }

    #[test]
    fn a_log_stays_bounded_at_any_rate_and_counts_no_request_short() {
        const WINDOW: i64 = 60_000;
        const PER_MS: usize = 2;
        let slack = WINDOW / QUANTA;
        let start = 1_000_000;
        let mut log = Log::new(WINDOW);
        let (mut most_runs, mut counted_longer) = (0, false);
        for now in start..start + 3 * WINDOW {
            for _ in 0..PER_MS {
                assert!(log.hit(now, WINDOW, u32::MAX).allowed);
            }
            // The requests made in (from, now].
            let made_after =
                |from: i64| usize::try_from(now - from.max(start - 1)).unwrap() * PER_MS;
            let exact = made_after(now - WINDOW);
            assert!(
                (exact..=made_after(now - WINDOW - slack)).contains(&log.counted),
                "at {now}: {} counted, {exact} in the window",
                log.counted
            );
            counted_longer |= log.counted > exact;
            most_runs = most_runs.max(log.runs.len());
            assert!(
                log.runs.len() <= MOST_RUNS,
                "{} runs at {now}",
                log.runs.len()
            );
        }
        assert!(
            log.runs
                .iter()
                .zip(log.runs.iter().skip(1))
                .all(|(a, b)| a.0 < b.0)
        );
        assert_eq!(
            log.counted,
            log.runs
                .iter()
                .map(|&(_, count)| count as usize)
                .sum::<usize>()
        );
        assert!(most_runs > EXACT_RUNS, "the log went beyond its exact part");
        assert!(counted_longer, "some requests counted past their window");
    }

    /// Hits from `seed`'s stream (bursts, pauses and gaps; with `jitter`,
    /// each a few ms earlier or later than the previous at random, as
    /// concurrent callers pass them) against 300 per 10 s, checked against
    /// the exact count of the requests let through.
    fn never_more_than_the_limit(seed: u64, jitter: bool) {
        const WINDOW: i64 = 10_000;
        const LIMIT: usize = 300;
        let slack = WINDOW / QUANTA;
        let mut random = Lcg(seed);
        let mut log = Log::new(WINDOW);
        // The times of the requests let through, ascending.
        let mut allowed: Vec<i64> = Vec::new();
        let after =
            |allowed: &[i64], from: i64| allowed.len() - allowed.partition_point(|&t| t <= from);
        let (mut base, mut latest) = (50_000, i64::MIN);
        let (mut refused, mut most_runs) = (0, 0);
        for _ in 0..30_000 {
            base += match random.below(1_000) {
                0..=1 => 2_000 + random.below(12_000),
                2..=50 => random.below(50),
                _ => random.below(3),
            };
            let now = if jitter { base - random.below(5) } else { base };
            // Every hit so far forgot what was at or before its own
            // now - window, so the latest now decides what may still count.
            latest = latest.max(now);
            let at_least = after(&allowed, latest - WINDOW);
            let at_most = after(&allowed, latest - WINDOW - slack);
            let outcome = log.hit(now, WINDOW, u32::try_from(LIMIT).unwrap());
            if outcome.allowed {
                assert!(
                    at_least < LIMIT,
                    "at {now}: let through with {at_least} in the window"
                );
                allowed.insert(allowed.partition_point(|&t| t <= now), now);
            } else {
                assert!(
                    at_most >= LIMIT,
                    "at {now}: refused with {at_most} counted at most"
                );
                refused += 1;
            }
            let at_least = after(&allowed, latest - WINDOW);
            let at_most = after(&allowed, latest - WINDOW - slack);
            assert!(
                (at_least..=at_most).contains(&outcome.counted),
                "at {now}: {} counted, {at_least} in the window",
                outcome.counted
            );
            if let Some(oldest) = outcome.oldest_ms {
                assert!(
                    oldest > latest - WINDOW,
                    "at {now}: {oldest} left the window"
                );
            }
            most_runs = most_runs.max(log.runs.len());
            assert!(
                log.runs.len() <= MOST_RUNS,
                "{} runs at {now}",
                log.runs.len()
            );
        }
        if !jitter {
            // In time order, no window ever held more than the limit.
            for &t in &allowed {
                let in_window = allowed.partition_point(|&s| s <= t)
                    - allowed.partition_point(|&s| s <= t - WINDOW);
                assert!(
                    in_window <= LIMIT,
                    "{in_window} let through in the window ending at {t}"
                );
            }
        }
        // A quantum after the window, every request has left.
        let outcome = log.hit(latest + WINDOW + slack, WINDOW, 1);
        assert_eq!((outcome.allowed, outcome.counted), (true, 1));
        assert!(
            refused > 1_000 && allowed.len() > 20 * LIMIT,
            "the limit was reached often"
        );
        assert!(most_runs > EXACT_RUNS, "the log went beyond its exact part");
    }

    #[test]
    fn no_window_lets_more_than_the_limit_through_in_time_order() {
        never_more_than_the_limit(1, false);
        never_more_than_the_limit(2, false);
    }

    #[test]
    fn no_window_lets_more_than_the_limit_through_out_of_order() {
        never_more_than_the_limit(3, true);
        never_more_than_the_limit(4, true);
    }

    #[test]
    fn a_release_takes_the_request_from_the_run_it_was_folded_into() {
        // Quanta of 1,000 ms; 128 runs, then folds.
        let mut log = Log::new(64_000);
        for t in (0..127).chain([1_300]) {
            log.add(t);
        }
        // Before a run of its quantum: counted in it, as made at 1,300.
        log.add(1_200);
        assert_eq!(log.runs.back(), Some(&(1_300, 2)));
        // After the last run of its quantum: that run moves to it.
        log.add(1_700);
        log.add(500);
        assert_eq!(log.runs.len(), EXACT_RUNS);
        assert_eq!(log.runs.get(126), Some(&(500, 2)));
        assert_eq!(log.runs.back(), Some(&(1_700, 3)));
        // A quantum without a run gets one.
        log.add(2_000);
        assert_eq!(log.runs.len(), EXACT_RUNS + 1);
        assert_eq!(log.counted, 132);

        log.remove(1_200);
        assert_eq!(log.runs.get(127), Some(&(1_700, 2)), "folded into it");
        log.remove(126);
        assert_eq!(log.runs.get(126), Some(&(500, 1)), "moved with its run");
        log.remove(1_800);
        log.remove(999);
        log.remove(3_000);
        assert_eq!(
            log.counted, 130,
            "no run at or after those times in their quanta: nothing taken"
        );

        // A release older than a forget takes nothing, not even a later run
        // of its quantum (another request's, still in the window).
        let mut log = Log::new(6_400);
        log.add(0);
        log.add(50);
        log.hit(6_401, 6_400, 10);
        assert_eq!(log.oldest(), Some(50));
        log.remove(0);
        assert_eq!(log.counted, 2);
        log.remove(50);
        assert_eq!(log.runs, [(6_401, 1)]);
    }
}
