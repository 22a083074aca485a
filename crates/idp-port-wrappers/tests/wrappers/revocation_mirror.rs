//! [`RevocationMirror`] and [`MirroredRevocationList`] with mocked ports: the
//! copy answers only once complete and vouched for by the feed, falls back
//! to the shared list whenever the feed is down or its deadline passed, and
//! learns every revocation announced or inserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use idp_domain::StoreError;
use idp_domain::ports::{
    ChangeListener, MockChangeNotifier, MockClock, MockRevocationList, MockRevokedTokenStore,
    RevocationList, RevokedToken,
};
use idp_domain::values::TokenId;
use idp_port_wrappers::{MirroredRevocationList, RevocationMirror};
use mockall::predicate::eq;
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()
}

fn clock() -> Arc<MockClock> {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    Arc::new(clock)
}

fn revoked() -> RevokedToken {
    RevokedToken {
        token_id: TokenId(Uuid::new_v4()),
        expires_at: now() + TimeDelta::minutes(10),
    }
}

/// A durable store holding `tokens`.
fn durable(tokens: Vec<RevokedToken>) -> Arc<MockRevokedTokenStore> {
    let mut store = MockRevokedTokenStore::new();
    store
        .expect_unexpired()
        .returning(move |_| Ok(tokens.clone()));
    Arc::new(store)
}

/// What the feed does once subscribed: restore, then vouch for the node.
fn restored(mirror: &RevocationMirror) {
    mirror.feed_restored();
    mirror.caught_up_until(Instant::now() + Duration::from_secs(60));
}

async fn until_complete(mirror: &RevocationMirror) {
    for _ in 0..100 {
        if mirror.is_complete() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the mirror never completed");
}

fn list(
    mirror: &Arc<RevocationMirror>,
    shared: MockRevocationList,
    notifier: MockChangeNotifier,
) -> MirroredRevocationList {
    MirroredRevocationList::new(mirror.clone(), Arc::new(shared), Arc::new(notifier))
}

#[tokio::test]
async fn until_complete_the_shared_list_answers() {
    let token = revoked();
    let mirror = RevocationMirror::new(durable(vec![token.clone()]), clock());
    let mut shared = MockRevocationList::new();
    shared
        .expect_contains()
        .with(eq(token.token_id), eq(now()))
        .times(1)
        .returning(|_, _| Ok(true));
    let list = list(&mirror, shared, MockChangeNotifier::new());

    assert!(!mirror.is_complete());
    assert!(list.contains(token.token_id, now()).await.unwrap());
}

#[tokio::test]
async fn once_loaded_the_copy_answers_without_the_shared_list() {
    let (token, other) = (revoked(), revoked());
    let mirror = RevocationMirror::new(durable(vec![token.clone()]), clock());
    // No expectation on the shared list: a call to it fails the test.
    let list = list(
        &mirror,
        MockRevocationList::new(),
        MockChangeNotifier::new(),
    );

    restored(&mirror);
    until_complete(&mirror).await;
    assert!(list.contains(token.token_id, now()).await.unwrap());
    assert!(!list.contains(other.token_id, now()).await.unwrap());
    // Expired entries no longer count.
    let later = token.expires_at + TimeDelta::seconds(1);
    assert!(!list.contains(token.token_id, later).await.unwrap());
}

#[tokio::test]
async fn an_announced_revocation_is_answered_locally() {
    let mirror = RevocationMirror::new(durable(Vec::new()), clock());
    let list = list(
        &mirror,
        MockRevocationList::new(),
        MockChangeNotifier::new(),
    );
    restored(&mirror);
    until_complete(&mirror).await;

    let token = revoked();
    assert!(!list.contains(token.token_id, now()).await.unwrap());
    mirror.token_revoked(&token);
    assert!(list.contains(token.token_id, now()).await.unwrap());
}

#[tokio::test]
async fn an_insert_goes_to_the_shared_list_and_is_announced() {
    let token = revoked();
    let mirror = RevocationMirror::new(durable(Vec::new()), clock());
    let mut shared = MockRevocationList::new();
    shared
        .expect_insert()
        .with(eq(token.clone()), eq(now()))
        .times(1)
        .returning(|_, _| Ok(()));
    let mut notifier = MockChangeNotifier::new();
    notifier
        .expect_token_revoked()
        .with(eq(token.clone()))
        .times(1)
        .returning(|_| Err(StoreError::Unavailable(anyhow::anyhow!("Redis is down"))));
    let list = list(&mirror, shared, notifier);
    restored(&mirror);
    until_complete(&mirror).await;

    // A failed announcement does not fail the revocation.
    list.insert(&token, now()).await.unwrap();
    assert!(list.contains(token.token_id, now()).await.unwrap());
}

#[tokio::test]
async fn a_lost_feed_falls_back_to_the_shared_list() {
    let token = revoked();
    let mirror = RevocationMirror::new(durable(Vec::new()), clock());
    let mut shared = MockRevocationList::new();
    shared.expect_contains().times(1).returning(|_, _| Ok(true));
    let list = list(&mirror, shared, MockChangeNotifier::new());
    restored(&mirror);
    until_complete(&mirror).await;

    mirror.feed_lost();
    assert!(!mirror.is_complete());
    // Revoked on another node while this one could not hear it.
    assert!(list.contains(token.token_id, now()).await.unwrap());
}

#[tokio::test]
async fn a_failed_load_is_retried() {
    let token = revoked();
    let mut store = MockRevokedTokenStore::new();
    let mut attempts = mockall::Sequence::new();
    store
        .expect_unexpired()
        .times(1)
        .in_sequence(&mut attempts)
        .returning(|_| Err(StoreError::Unavailable(anyhow::anyhow!("database down"))));
    let kept = token.clone();
    store
        .expect_unexpired()
        .in_sequence(&mut attempts)
        .returning(move |_| Ok(vec![kept.clone()]));
    let mirror = RevocationMirror::new(Arc::new(store), clock());
    let list = list(
        &mirror,
        MockRevocationList::new(),
        MockChangeNotifier::new(),
    );

    restored(&mirror);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!mirror.is_complete(), "complete without a load");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    until_complete(&mirror).await;
    assert!(list.contains(token.token_id, now()).await.unwrap());
}

#[tokio::test]
async fn a_complete_copy_the_feed_does_not_vouch_for_asks_the_shared_list() {
    let token = revoked();
    let mirror = RevocationMirror::new(durable(Vec::new()), clock());
    let mut shared = MockRevocationList::new();
    // Revoked on another node; this node never heard the announcement.
    shared
        .expect_contains()
        .with(eq(token.token_id), eq(now()))
        .times(2)
        .returning(|_, _| Ok(true));
    let list = list(&mirror, shared, MockChangeNotifier::new());
    mirror.feed_restored();
    until_complete(&mirror).await;

    // Complete, but never vouched for.
    assert!(!mirror.answers_from_memory());
    assert!(list.contains(token.token_id, now()).await.unwrap());

    // Vouched for a moment, then the deadline passes without a renewal.
    mirror.caught_up_until(Instant::now() + Duration::from_millis(100));
    assert!(mirror.answers_from_memory());
    assert!(
        !list.contains(token.token_id, now()).await.unwrap(),
        "the copy answers"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(mirror.is_complete());
    assert!(!mirror.answers_from_memory());
    assert!(list.contains(token.token_id, now()).await.unwrap());
}
