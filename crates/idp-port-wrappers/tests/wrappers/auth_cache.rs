//! The rules of the authentication cache, with mocked stores: what is read
//! once, what every change forgets, what a racing read may not keep, and
//! what it does while the change feed is down or no longer vouches for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use idp_domain::StoreError;
use idp_domain::entities::{Agent, Credential, CredentialKey};
use idp_domain::ports::{
    AgentRepository, ChangeListener, CredentialRepository, MockAgentRepository, MockChangeNotifier,
    MockCredentialRepository, SubjectState, UpdateOutcome,
};
use idp_domain::values::{AgentId, AgentStatus, AuditAction};
use idp_port_tests::store::fixtures::{
    agent, at, credential, event, owner, public_key, public_key_credential,
};
use idp_port_wrappers::{AuthStateCache, CachedAgents, CachedCredentials, SingleNode};
use mockall::predicate::eq;

fn agents_over(
    inner: MockAgentRepository,
    cache: &Arc<AuthStateCache>,
    notifier: MockChangeNotifier,
) -> CachedAgents {
    CachedAgents::new(Arc::new(inner), cache.clone(), Arc::new(notifier))
}

fn credentials_over(
    inner: MockCredentialRepository,
    cache: &Arc<AuthStateCache>,
) -> CachedCredentials {
    CachedCredentials::new(Arc::new(inner), cache.clone(), Arc::new(SingleNode))
}

/// A store that finds `found` exactly `times` times.
fn finding(found: &Agent, times: usize) -> MockAgentRepository {
    let mut inner = MockAgentRepository::new();
    let found = found.clone();
    inner
        .expect_find_for_authentication()
        .with(eq(found.agent_id))
        .times(times)
        .returning(move |_| Ok(Some(found.clone())));
    inner
}

fn silent() -> MockChangeNotifier {
    MockChangeNotifier::new()
}

#[tokio::test]
async fn an_agent_is_read_from_the_store_once() {
    let a = agent(&owner(), at(0));
    let cache = AuthStateCache::single_node();
    let agents = agents_over(finding(&a, 1), &cache, silent());

    for _ in 0..3 {
        assert_eq!(
            agents.find_for_authentication(a.agent_id).await.unwrap(),
            Some(a.clone())
        );
    }
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn another_owner_does_not_find_a_kept_agent() {
    let a = agent(&owner(), at(0));
    let cache = AuthStateCache::single_node();
    let agents = agents_over(finding(&a, 1), &cache, silent());
    agents.find_for_authentication(a.agent_id).await.unwrap();

    let stranger = owner();
    assert_eq!(agents.find(&stranger, a.agent_id).await.unwrap(), None);
}

#[tokio::test]
async fn an_unknown_agent_is_not_kept() {
    let id = AgentId(uuid::Uuid::new_v4());
    let mut inner = MockAgentRepository::new();
    inner
        .expect_find_for_authentication()
        .times(2)
        .returning(|_| Ok(None));
    let cache = AuthStateCache::single_node();
    let agents = agents_over(inner, &cache, silent());

    assert_eq!(agents.find_for_authentication(id).await.unwrap(), None);
    assert_eq!(agents.find_for_authentication(id).await.unwrap(), None);
    assert!(cache.is_empty());
}

#[tokio::test]
async fn an_applied_update_is_announced_and_the_next_read_goes_to_the_store() {
    let a = agent(&owner(), at(0));
    let suspended = Agent {
        status: AgentStatus::Suspended,
        ..a.clone()
    };
    let mut inner = MockAgentRepository::new();
    let mut reads = mockall::Sequence::new();
    let before = a.clone();
    inner
        .expect_find_for_authentication()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some(before.clone())));
    inner
        .expect_update()
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Applied));
    let after = suspended.clone();
    inner
        .expect_find_for_authentication()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some(after.clone())));
    let mut notifier = MockChangeNotifier::new();
    notifier
        .expect_agent_changed()
        .with(eq(a.agent_id))
        .times(1)
        .returning(|_| Ok(()));
    let cache = AuthStateCache::single_node();
    let agents = agents_over(inner, &cache, notifier);

    agents.find_for_authentication(a.agent_id).await.unwrap();
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(1));
    let outcome = agents.update(&a, &suspended, &e).await.unwrap();
    assert_eq!(outcome, UpdateOutcome::Applied);
    let now = agents.find_for_authentication(a.agent_id).await.unwrap();
    assert_eq!(now.map(|found| found.status), Some(AgentStatus::Suspended));
}

#[tokio::test]
async fn a_stale_update_forgets_the_copy_it_was_computed_from() {
    let a = agent(&owner(), at(0));
    let mut inner = finding(&a, 2);
    inner
        .expect_update()
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Stale));
    let cache = AuthStateCache::single_node();
    // Nothing was written, so nothing is announced.
    let agents = agents_over(inner, &cache, silent());

    let expected = agents.find(&a.owner, a.agent_id).await.unwrap().unwrap();
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(1));
    let outcome = agents.update(&expected, &expected, &e).await.unwrap();
    assert_eq!(outcome, UpdateOutcome::Stale);
    agents.find(&a.owner, a.agent_id).await.unwrap();
}

#[tokio::test]
async fn a_failed_announcement_still_answers_the_committed_change() {
    let a = agent(&owner(), at(0));
    let mut inner = finding(&a, 2);
    inner
        .expect_decommission()
        .times(1)
        .returning(|_, _, _, _| Ok(Vec::new()));
    let mut notifier = MockChangeNotifier::new();
    notifier
        .expect_agent_changed()
        .times(1)
        .returning(|_| Err(StoreError::Unavailable(anyhow::anyhow!("Redis is down"))));
    let cache = AuthStateCache::single_node();
    let agents = agents_over(inner, &cache, notifier);

    agents.find_for_authentication(a.agent_id).await.unwrap();
    let e = event(
        &a.owner,
        a.agent_id,
        AuditAction::AgentDecommissioned,
        at(1),
    );
    assert!(
        agents
            .decommission(&a.owner, a.agent_id, at(1), &e)
            .await
            .is_ok()
    );
    // Forgotten here all the same: the next read goes to the store.
    agents.find_for_authentication(a.agent_id).await.unwrap();
}

#[tokio::test]
async fn a_read_that_raced_a_change_is_not_kept() {
    let a = agent(&owner(), at(0));
    let cache = AuthStateCache::single_node();
    let mut inner = MockAgentRepository::new();
    let (racing, found) = (cache.clone(), a.clone());
    // The change lands while the first read is in flight: what that read
    // found may predate it.
    inner
        .expect_find_for_authentication()
        .times(1)
        .returning(move |id| {
            racing.agent_changed(id);
            Ok(Some(found.clone()))
        });
    let found = a.clone();
    inner
        .expect_find_for_authentication()
        .times(1)
        .returning(move |_| Ok(Some(found.clone())));
    let agents = agents_over(inner, &cache, silent());

    agents.find_for_authentication(a.agent_id).await.unwrap();
    assert!(cache.is_empty(), "the racing read must not be kept");
    agents.find_for_authentication(a.agent_id).await.unwrap();
    agents.find_for_authentication(a.agent_id).await.unwrap();
}

#[tokio::test]
async fn nothing_is_kept_or_answered_while_the_feed_is_down() {
    let a = agent(&owner(), at(0));
    let cache = AuthStateCache::awaiting_feed();
    let agents = agents_over(finding(&a, 4), &cache, silent());

    // Not subscribed yet.
    agents.find_for_authentication(a.agent_id).await.unwrap();
    agents.find_for_authentication(a.agent_id).await.unwrap();
    assert!(cache.is_empty());

    cache.feed_restored();
    cache.caught_up_until(Instant::now() + Duration::from_secs(60));
    agents.find_for_authentication(a.agent_id).await.unwrap();
    agents.find_for_authentication(a.agent_id).await.unwrap();
    assert_eq!(cache.len(), 1);

    cache.feed_lost();
    assert!(cache.is_empty(), "a lost feed forgets everything");
    agents.find_for_authentication(a.agent_id).await.unwrap();
    assert!(cache.is_empty());
}

#[tokio::test]
async fn an_entry_expires() {
    let a = agent(&owner(), at(0));
    let cache = AuthStateCache::with_limits(true, Duration::from_millis(50), 100);
    let agents = agents_over(finding(&a, 2), &cache, silent());

    agents.find_for_authentication(a.agent_id).await.unwrap();
    agents.find_for_authentication(a.agent_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    agents.find_for_authentication(a.agent_id).await.unwrap();
}

#[tokio::test]
async fn the_number_of_agents_kept_is_bounded() {
    let the_owner = owner();
    let many: Vec<Agent> = (0..5).map(|_| agent(&the_owner, at(0))).collect();
    let mut inner = MockAgentRepository::new();
    let known = many.clone();
    inner
        .expect_find_for_authentication()
        .returning(move |id| Ok(known.iter().find(|a| a.agent_id == id).cloned()));
    let cache = AuthStateCache::with_limits(true, Duration::from_secs(60), 2);
    let agents = agents_over(inner, &cache, silent());

    for a in &many {
        assert_eq!(
            agents
                .find_for_authentication(a.agent_id)
                .await
                .unwrap()
                .as_ref(),
            Some(a)
        );
    }
    assert!(cache.len() <= 2, "{} agents kept", cache.len());
}

#[tokio::test]
async fn credentials_by_hint_are_read_once_and_forgotten_on_revocation() {
    let a = agent(&owner(), at(0));
    let c = credential(&a, at(1), None);
    let mut inner = MockCredentialRepository::new();
    let listed = vec![c.clone()];
    inner
        .expect_find_by_hint()
        .with(eq(a.agent_id), eq("abcd1234"))
        .times(2)
        .returning(move |_, _| Ok(listed.clone()));
    let revoked = Credential {
        revoked_at: Some(at(2)),
        ..c.clone()
    };
    inner
        .expect_revoke()
        .times(1)
        .returning(move |_, _, _, _, _| Ok(revoked.clone()));
    let cache = AuthStateCache::single_node();
    let credentials = credentials_over(inner, &cache);

    for _ in 0..3 {
        assert_eq!(
            credentials
                .find_by_hint(a.agent_id, "abcd1234")
                .await
                .unwrap(),
            vec![c.clone()]
        );
    }
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, at(2));
    credentials
        .revoke(&a.owner, a.agent_id, c.credential_id, at(2), &e)
        .await
        .unwrap();
    credentials
        .find_by_hint(a.agent_id, "abcd1234")
        .await
        .unwrap();
}

#[tokio::test]
async fn public_keys_are_read_once_and_forgotten_on_rotation_or_a_change_elsewhere() {
    let a = agent(&owner(), at(0));
    let c = public_key_credential(&a, at(1), None);
    let rotated = Credential {
        key: CredentialKey::PublicKey(public_key()),
        ..c.clone()
    };
    let mut inner = MockCredentialRepository::new();
    let mut reads = mockall::Sequence::new();
    let before = vec![c.clone()];
    inner
        .expect_find_public_keys()
        .with(eq(a.agent_id))
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(before.clone()));
    let answer = rotated.clone();
    inner
        .expect_rotate()
        .times(1)
        .returning(move |_, _, _, _, _| Ok(answer.clone()));
    let after = vec![rotated.clone()];
    inner
        .expect_find_public_keys()
        .with(eq(a.agent_id))
        .times(2)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(after.clone()));
    let cache = AuthStateCache::single_node();
    let credentials = credentials_over(inner, &cache);

    for _ in 0..3 {
        assert_eq!(
            credentials.find_public_keys(a.agent_id).await.unwrap(),
            vec![c.clone()]
        );
    }
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRotated, at(2));
    credentials
        .rotate(&a.owner, a.agent_id, c.credential_id, &rotated.key, &e)
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            credentials.find_public_keys(a.agent_id).await.unwrap(),
            vec![rotated.clone()]
        );
    }
    // Another node changed the agent: the kept keys go with it.
    cache.agent_changed(a.agent_id);
    assert_eq!(
        credentials.find_public_keys(a.agent_id).await.unwrap(),
        vec![rotated.clone()]
    );
}

#[tokio::test]
async fn hints_kept_per_agent_are_bounded() {
    let a = agent(&owner(), at(0));
    let mut inner = MockCredentialRepository::new();
    // Nine different wrong secrets, then the first again: it was dropped.
    inner
        .expect_find_by_hint()
        .times(10)
        .returning(|_, _| Ok(Vec::new()));
    let cache = AuthStateCache::single_node();
    let credentials = credentials_over(inner, &cache);

    for n in 0..9 {
        credentials
            .find_by_hint(a.agent_id, &format!("{n:08x}"))
            .await
            .unwrap();
    }
    credentials
        .find_by_hint(a.agent_id, "00000000")
        .await
        .unwrap();
    credentials
        .find_by_hint(a.agent_id, "00000008")
        .await
        .unwrap();
}

#[tokio::test]
async fn subject_states_are_read_once_and_forgotten_on_any_change_of_the_agent() {
    let a = agent(&owner(), at(0));
    let c = credential(&a, at(1), None);
    let state = SubjectState {
        owner: a.owner.clone(),
        agent_status: AgentStatus::Active,
        credential_revoked: false,
    };
    let mut inner = MockCredentialRepository::new();
    let kept = state.clone();
    inner
        .expect_subject_state()
        .with(eq(a.agent_id), eq(c.credential_id))
        .times(2)
        .returning(move |_, _| Ok(Some(kept.clone())));
    let unknown = AgentId(uuid::Uuid::new_v4());
    inner
        .expect_subject_state()
        .with(eq(unknown), eq(c.credential_id))
        .times(2)
        .returning(|_, _| Ok(None));
    let cache = AuthStateCache::single_node();
    let credentials = credentials_over(inner, &cache);

    for _ in 0..3 {
        assert_eq!(
            credentials
                .subject_state(a.agent_id, c.credential_id)
                .await
                .unwrap(),
            Some(state.clone())
        );
    }
    // Another node suspended the agent.
    cache.agent_changed(a.agent_id);
    credentials
        .subject_state(a.agent_id, c.credential_id)
        .await
        .unwrap();
    // A subject that does not exist is not kept.
    for _ in 0..2 {
        assert_eq!(
            credentials
                .subject_state(unknown, c.credential_id)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn a_node_the_feed_does_not_vouch_for_asks_the_store_every_time() {
    let a = agent(&owner(), at(0));
    let c = credential(&a, at(1), None);
    let cache = AuthStateCache::awaiting_feed();
    // Subscribed, but the feed has not yet shown this node caught up.
    cache.feed_restored();
    let agents = agents_over(finding(&a, 2), &cache, silent());
    let mut inner = MockCredentialRepository::new();
    let listed = vec![c.clone()];
    inner
        .expect_find_by_hint()
        .times(2)
        .returning(move |_, _| Ok(listed.clone()));
    let subject = SubjectState {
        owner: a.owner.clone(),
        agent_status: AgentStatus::Active,
        credential_revoked: false,
    };
    let state = subject.clone();
    inner
        .expect_subject_state()
        .times(2)
        .returning(move |_, _| Ok(Some(state.clone())));
    let credentials = CachedCredentials::new(Arc::new(inner), cache.clone(), Arc::new(SingleNode));

    for _ in 0..2 {
        agents.find_for_authentication(a.agent_id).await.unwrap();
        credentials
            .find_by_hint(a.agent_id, "abcd1234")
            .await
            .unwrap();
        let found = credentials
            .subject_state(a.agent_id, c.credential_id)
            .await
            .unwrap();
        assert_eq!(found, Some(subject.clone()));
    }
    assert!(!cache.answers_from_memory());

    // Vouched for: what the store answered meanwhile was kept (it is newer
    // than any announcement missed), and is now answered from memory: the
    // mocks fail the test on a third call.
    cache.caught_up_until(Instant::now() + Duration::from_secs(60));
    assert!(cache.answers_from_memory());
    agents.find_for_authentication(a.agent_id).await.unwrap();
    agents.find_for_authentication(a.agent_id).await.unwrap();
    credentials
        .find_by_hint(a.agent_id, "abcd1234")
        .await
        .unwrap();
    credentials
        .subject_state(a.agent_id, c.credential_id)
        .await
        .unwrap();
}

#[tokio::test]
async fn once_the_vouched_deadline_passes_the_store_answers_again() {
    let a = agent(&owner(), at(0));
    let suspended = Agent {
        status: AgentStatus::Suspended,
        ..a.clone()
    };
    let mut inner = MockAgentRepository::new();
    let mut reads = mockall::Sequence::new();
    let first = a.clone();
    inner
        .expect_find_for_authentication()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some(first.clone())));
    // Suspended on another node; this node never heard the announcement.
    let later = suspended.clone();
    inner
        .expect_find_for_authentication()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some(later.clone())));
    let cache = AuthStateCache::awaiting_feed();
    cache.feed_restored();
    cache.caught_up_until(Instant::now() + Duration::from_millis(150));
    let agents = agents_over(inner, &cache, silent());

    assert_eq!(
        agents.find_for_authentication(a.agent_id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        agents.find_for_authentication(a.agent_id).await.unwrap(),
        Some(a.clone()),
        "answered from memory while vouched for"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!cache.answers_from_memory());
    assert_eq!(
        agents.find_for_authentication(a.agent_id).await.unwrap(),
        Some(suspended),
        "a node past its deadline must ask the store"
    );
}
