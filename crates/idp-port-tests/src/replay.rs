//! Contract suite of the [`ReplayGuard`] port.
//!
//! Every function takes the guard as `Arc<dyn ReplayGuard>` plus a namespace
//! string that the caller makes unique per test; it is prepended to every
//! key, so tests may share one backing service and run in parallel.
//!
//! Clocks: `now` is the fixed instant of [`base_time`] (2030) and later, as in
//! the other cache suites, and every check but one holds on that clock alone.
//! The exception is expiry. The memory adapter compares `expires_at` with
//! `now`; the Redis adapter hands Redis the remaining lifetime
//! (`expires_at - now`) and Redis counts it down on its own clock, in real
//! time. So [`replay_entry_expires`] gives its entry a lifetime of one
//! second, lets more than that pass in real time (`tokio::time::sleep`), and
//! only then calls with a `now` at the expiry: each adapter sees the entry
//! expired by its own clock. An adapter on a backing service that keeps time
//! must count from `now` in the same way, not from an absolute instant on its
//! own clock (which would tie the suite to the real date).
//!
//! `remembered_since` is checked only while the guard's storage is intact;
//! what a loss does to it is adapter-specific and tested by each adapter.
//!
//! [`replay_guard_contract`] runs every check; the single checks are public
//! too, so a failure names what broke.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use idp_domain::ports::{FirstUse, ReplayGuard};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::cache::base_time;

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

async fn first_use(
    guard: &Arc<dyn ReplayGuard>,
    key: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> FirstUse {
    guard.first_use(key, expires_at, now).await.unwrap()
}

#[track_caller]
fn assert_yes(answer: FirstUse, what: &str) -> DateTime<Utc> {
    match answer {
        FirstUse::Yes { remembered_since } => remembered_since,
        FirstUse::Replayed => panic!("{what}: Replayed, expected Yes"),
    }
}

#[track_caller]
fn assert_replayed(answer: FirstUse, what: &str) {
    assert_eq!(answer, FirstUse::Replayed, "{what}");
}

/// A key's first use is `Yes`; every later use before its expiry is
/// `Replayed`, up to the last millisecond, whatever expiry the later call
/// brings.
pub async fn replay_first_use_then_replayed(guard: Arc<dyn ReplayGuard>, ns: &str) {
    let key = format!("{ns}:replay:once");
    let t0 = base_time();
    let expires_at = t0 + secs(60);
    assert_yes(first_use(&guard, &key, expires_at, t0).await, "first use");
    assert_replayed(
        first_use(&guard, &key, expires_at, t0).await,
        "same call again",
    );
    assert_replayed(
        first_use(&guard, &key, expires_at, t0 + secs(30)).await,
        "half way",
    );
    assert_replayed(
        first_use(&guard, &key, t0 + secs(3_600), t0 + secs(59)).await,
        "a longer expiry does not make it new",
    );
    assert_replayed(
        first_use(
            &guard,
            &key,
            expires_at + secs(60),
            expires_at - TimeDelta::milliseconds(1),
        )
        .await,
        "1 ms before expiry",
    );
}

/// Keys are independent, including keys that differ only in their last
/// character or by a prefix of one another.
pub async fn replay_keys_independent(guard: Arc<dyn ReplayGuard>, ns: &str) {
    let t0 = base_time();
    let expires_at = t0 + secs(60);
    let keys = [
        format!("{ns}:replay:assertion:ab"),
        format!("{ns}:replay:assertion:ac"),
        format!("{ns}:replay:assertion:a"),
        format!("{ns}:replay:dpop:ab"),
    ];
    for key in &keys {
        assert_yes(first_use(&guard, key, expires_at, t0).await, key);
    }
    for key in &keys {
        assert_replayed(first_use(&guard, key, expires_at, t0).await, key);
    }
}

/// An entry counts until `expires_at` and not after: the key is new again.
/// Sleeps a little over a second of real time; see the module's note on
/// clocks.
pub async fn replay_entry_expires(guard: Arc<dyn ReplayGuard>, ns: &str) {
    let key = format!("{ns}:replay:expires");
    let t0 = base_time();
    let expires_at = t0 + secs(1);
    assert_yes(first_use(&guard, &key, expires_at, t0).await, "first use");
    assert_replayed(
        first_use(
            &guard,
            &key,
            expires_at,
            expires_at - TimeDelta::milliseconds(1),
        )
        .await,
        "still counts 1 ms before its expiry",
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let again = expires_at + secs(60);
    assert_yes(
        first_use(&guard, &key, again, expires_at).await,
        "new again at its expiry",
    );
    assert_replayed(
        first_use(&guard, &key, again, expires_at + secs(1)).await,
        "remembered again, until the new expiry",
    );
}

/// An `expires_at` at or before `now` is refused and stores nothing: the
/// domain never asks so, and an entry already expired would guard nothing.
pub async fn replay_expired_expiry_is_refused(guard: Arc<dyn ReplayGuard>, ns: &str) {
    let key = format!("{ns}:replay:expired");
    let t0 = base_time();
    assert_replayed(first_use(&guard, &key, t0, t0).await, "expiring now");
    assert_replayed(
        first_use(&guard, &key, t0 - secs(1), t0).await,
        "expired a second ago",
    );
    assert_yes(
        first_use(&guard, &key, t0 + secs(60), t0).await,
        "nothing was stored",
    );
}

/// 32 simultaneous first uses of one key: exactly one `Yes`. Run it on a
/// multi-threaded runtime.
pub async fn replay_concurrent_first_use_has_one_winner(guard: Arc<dyn ReplayGuard>, ns: &str) {
    const CALLS: usize = 32;
    let key = format!("{ns}:replay:race");
    let t0 = base_time();
    let start = Arc::new(Barrier::new(CALLS));
    let mut tasks = JoinSet::new();
    for _ in 0..CALLS {
        let (guard, key, start) = (Arc::clone(&guard), key.clone(), Arc::clone(&start));
        tasks.spawn(async move {
            start.wait().await;
            guard.first_use(&key, t0 + secs(60), t0).await.unwrap()
        });
    }
    let answers = tasks.join_all().await;
    let winners = answers
        .iter()
        .filter(|a| matches!(a, FirstUse::Yes { .. }))
        .count();
    assert_eq!(winners, 1, "{answers:?}");
}

/// `remembered_since` is no later than the `now` of the first call (the guard
/// cannot have remembered uses from the future), and while the storage is
/// intact it does not move: every `Yes` reports the same instant.
pub async fn replay_remembered_since_is_stable(guard: Arc<dyn ReplayGuard>, ns: &str) {
    let t0 = base_time();
    let since = assert_yes(
        first_use(&guard, &format!("{ns}:replay:since:0"), t0 + secs(60), t0).await,
        "first use",
    );
    assert!(since <= t0, "remembered since {since}, after now {t0}");
    for i in 1..5 {
        let now = t0 + secs(i);
        let key = format!("{ns}:replay:since:{i}");
        let later = assert_yes(first_use(&guard, &key, now + secs(60), now).await, &key);
        assert_eq!(later, since, "moved at call {i}");
        assert_replayed(first_use(&guard, &key, now + secs(60), now).await, &key);
    }
}

/// Every check above, on one guard.
pub async fn replay_guard_contract(guard: Arc<dyn ReplayGuard>, ns: &str) {
    replay_remembered_since_is_stable(Arc::clone(&guard), ns).await;
    replay_first_use_then_replayed(Arc::clone(&guard), ns).await;
    replay_keys_independent(Arc::clone(&guard), ns).await;
    replay_expired_expiry_is_refused(Arc::clone(&guard), ns).await;
    replay_concurrent_first_use_has_one_winner(Arc::clone(&guard), ns).await;
    replay_entry_expires(guard, ns).await;
}
