//! What the replay guard promises beyond the contract: `remembered_since` is
//! the process's start, memory follows the live entries, clones share them.

use chrono::{DateTime, TimeDelta, Utc};
use idp_cache_memory::MemoryReplayGuard;
use idp_domain::ports::{FirstUse, ReplayGuard};
use idp_port_tests::cache::base_time;

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// Uses `count` distinct keys once each at `now`, each counting for `life`.
async fn use_keys(
    guard: &MemoryReplayGuard,
    prefix: &str,
    count: usize,
    now: DateTime<Utc>,
    life: TimeDelta,
) {
    for i in 0..count {
        let answer = guard
            .first_use(&format!("{prefix}{i}"), now + life, now)
            .await
            .unwrap();
        assert!(matches!(answer, FirstUse::Yes { .. }), "{prefix}{i}");
    }
}

#[tokio::test]
async fn remembered_since_is_the_start_the_server_passed() {
    let started_at = base_time() - TimeDelta::hours(5);
    let guard = MemoryReplayGuard::new(started_at);
    for i in 0..3 {
        let now = base_time() + secs(i);
        let answer = guard
            .first_use(&format!("k{i}"), now + secs(60), now)
            .await
            .unwrap();
        assert_eq!(
            answer,
            FirstUse::Yes {
                remembered_since: started_at
            }
        );
    }
}

#[tokio::test]
async fn inserts_forget_entries_once_they_expired() {
    let guard = MemoryReplayGuard::new(base_time());
    let t0 = base_time();
    use_keys(&guard, "short:", 10_000, t0, secs(1)).await;
    assert_eq!(guard.entry_count(), 10_000, "all still counting");

    // All expired. Within as many new keys as there were entries, an insert
    // sweeps, and only the live ones are left.
    let t1 = t0 + secs(1);
    use_keys(&guard, "live:", 10_000, t1, secs(60)).await;
    assert_eq!(
        guard.entry_count(),
        10_000,
        "the 10,000 expired ones dropped"
    );
    let answer = guard.first_use("short:0", t1 + secs(60), t1).await.unwrap();
    assert!(
        matches!(answer, FirstUse::Yes { .. }),
        "an expired key is new"
    );
}

#[tokio::test]
async fn prune_drops_exactly_the_expired_entries() {
    let guard = MemoryReplayGuard::new(base_time());
    let t0 = base_time();
    use_keys(&guard, "early:", 500, t0, secs(10)).await;
    use_keys(&guard, "late:", 500, t0, secs(20)).await;
    assert_eq!(guard.prune(t0 + TimeDelta::milliseconds(9_999)), 1_000);
    assert_eq!(guard.prune(t0 + secs(10)), 500, "expired at its expiry");
    assert_eq!(guard.prune(t0 + secs(20)), 0);
    assert_eq!(guard.entry_count(), 0);
}

#[tokio::test]
async fn clones_share_entries_and_guards_do_not() {
    let t0 = base_time();
    let guard = MemoryReplayGuard::new(t0);
    let (clone, other) = (guard.clone(), MemoryReplayGuard::new(t0));
    let expires_at = t0 + secs(60);
    assert!(matches!(
        guard.first_use("k", expires_at, t0).await.unwrap(),
        FirstUse::Yes { .. }
    ));
    assert_eq!(
        clone.first_use("k", expires_at, t0).await.unwrap(),
        FirstUse::Replayed
    );
    assert!(matches!(
        other.first_use("k", expires_at, t0).await.unwrap(),
        FirstUse::Yes { .. }
    ));
}
