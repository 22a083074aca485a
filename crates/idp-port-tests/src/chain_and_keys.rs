//! Contract suites of the audit hash chain ([`AuditLog::chain_page`],
//! [`AuditLog::chain_head`], [`AuditLog::chain_owners`], and the chaining
//! every append does, also inside the agent and credential transactions) and
//! of the [`SigningKeyStore`].
//!
//! Re-exported by [`crate::store`], so [`crate::store_contract_tests!`] runs
//! them like every other store suite. Owners, kids and node names are random,
//! so the functions may share a store; only the `_system` chain and the
//! key-set version are shared by nature, and the suites only check them
//! relative to what they read first.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::audit_chain::{ChainHead, ChainVerifier, Verification};
use idp_domain::keys::SigningKeyRecord;
use idp_domain::ports::{
    AgentRepository, AuditLog, CredentialRepository, RevokedToken, RevokedTokenStore,
    SigningKeyStore, UpdateOutcome,
};
use idp_domain::values::{AgentId, AgentStatus, AuditAction, EventId, Owner, TokenId};
use serde_json::json;
use uuid::Uuid;

use crate::store::fixtures::{agent, at, credential, event, owner, secret_key, unchained};

/// Every stored event of `owner`'s chain, read with `chain_page` in pages of
/// `page` events.
pub async fn whole_chain(audit: &Arc<dyn AuditLog>, owner: &Owner, page: usize) -> Vec<AuditEvent> {
    let mut all: Vec<AuditEvent> = Vec::new();
    let mut from = 1;
    loop {
        let got = audit.chain_page(owner, from, page).await.unwrap();
        assert!(
            got.len() <= page,
            "chain_page answers at most `limit` events"
        );
        let Some(last) = got.last() else { break };
        from = last.sequence.expect("a chained event has a sequence") + 1;
        let full = got.len() == page;
        all.extend(got);
        if !full {
            break;
        }
    }
    all
}

/// Verifies `owner`'s whole chain against its recorded head, as an operator
/// would: [`ChainVerifier`] over `chain_page`, finished with `chain_head`.
pub async fn verify_chain(audit: &Arc<dyn AuditLog>, owner: &Owner) -> Verification {
    let head = audit.chain_head(owner).await.unwrap();
    let mut verifier = ChainVerifier::new(head);
    for event in whole_chain(audit, owner, 64).await {
        verifier.feed(&event);
    }
    verifier.finish()
}

/// Asserts that `owner`'s chain verifies with `events` events and answers its
/// head, which must equal the recorded one.
async fn assert_verified(audit: &Arc<dyn AuditLog>, owner: &Owner, events: u64) -> ChainHead {
    match verify_chain(audit, owner).await {
        Verification::Verified { events: n, head } => {
            assert_eq!(n, events, "events in the chain of {owner}");
            assert_eq!(
                audit.chain_head(owner).await.unwrap(),
                (events > 0).then(|| head.clone()),
                "the recorded head is the last event's"
            );
            head
        }
        broken @ Verification::Broken { .. } => {
            panic!("the chain of {owner} must verify: {broken:?}")
        }
    }
}

fn sequences(events: &[AuditEvent]) -> Vec<u64> {
    events.iter().map(|e| e.sequence.unwrap()).collect()
}

fn ids(events: &[AuditEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.event_id).collect()
}

fn token_event(owner: &Owner, seconds: i64) -> AuditEvent {
    event(
        owner,
        AgentId(Uuid::new_v4()),
        AuditAction::TokenIssued,
        at(seconds),
    )
}

/// An event no tenant owns (it goes to the `_system` chain).
fn ownerless(seconds: i64) -> AuditEvent {
    let mut e = event(
        &owner(),
        AgentId(Uuid::new_v4()),
        AuditAction::AuthFailed,
        at(seconds),
    );
    e.owner = None;
    e
}

// ---------------------------------------------------------------------------
// Audit chain

/// Appended events get sequences 1..n per owner in append order, whatever
/// their timestamps; each owner's chain is its own; every chain verifies and
/// its recorded head is its last event's; an owner without events has no
/// head and an empty chain; `chain_owners` lists owners with a head, sorted.
pub async fn audit_chain_sequences_per_owner(audit: Arc<dyn AuditLog>) {
    let (a, b) = (owner(), owner());
    let mut made_a = Vec::new();
    let mut made_b = Vec::new();
    for (i, seconds) in [30, 10, 20, 10, 0].into_iter().enumerate() {
        let e = token_event(&a, seconds);
        audit.append(&e).await.unwrap();
        made_a.push(e);
        if i % 2 == 0 {
            let e = token_event(&b, seconds);
            audit.append(&e).await.unwrap();
            made_b.push(e);
        }
    }
    for (owner, made) in [(&a, &made_a), (&b, &made_b)] {
        let chain = whole_chain(&audit, owner, 100).await;
        assert_eq!(ids(&chain), ids(made), "append order, not time order");
        assert_eq!(
            sequences(&chain),
            (1..=made.len() as u64).collect::<Vec<_>>()
        );
        assert_eq!(
            chain.iter().map(unchained).collect::<Vec<_>>(),
            *made,
            "every field kept"
        );
        let head = assert_verified(&audit, owner, made.len() as u64).await;
        assert_eq!(head.sequence, made.len() as u64);
        assert_eq!(Some(&head.hash), chain.last().unwrap().hash.as_ref());
        // `find` and `list` answer the chain place too.
        let found = audit
            .find(owner, made[0].event_id, at(-1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, chain[0]);
    }

    let nobody = owner();
    assert_eq!(audit.chain_head(&nobody).await.unwrap(), None);
    assert!(audit.chain_page(&nobody, 1, 10).await.unwrap().is_empty());
    assert_eq!(
        verify_chain(&audit, &nobody).await,
        Verification::Verified {
            events: 0,
            head: ChainHead::genesis()
        }
    );

    let owners = audit.chain_owners().await.unwrap();
    assert!(owners.contains(&a) && owners.contains(&b), "{owners:?}");
    assert!(!owners.contains(&nobody));
    let mut sorted = owners.clone();
    sorted.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(owners, sorted, "chain_owners is sorted");
}

/// An event without owner joins the `_system` chain, read back with owner
/// `Owner::system()`; no tenant sees it.
pub async fn audit_chain_ownerless_goes_to_system(audit: Arc<dyn AuditLog>) {
    let system = Owner::system();
    let before = audit
        .chain_head(&system)
        .await
        .unwrap()
        .map_or(0, |h| h.sequence);
    let e = ownerless(5);
    audit.append(&e).await.unwrap();
    let head = audit.chain_head(&system).await.unwrap().unwrap();
    assert!(head.sequence > before);
    let page = audit.chain_page(&system, before + 1, 1_000).await.unwrap();
    let stored = page
        .iter()
        .find(|s| s.event_id == e.event_id)
        .expect("the ownerless event is in the _system chain");
    assert_eq!(stored.owner, Some(Owner::system()));
    assert_eq!(
        unchained(stored),
        AuditEvent {
            owner: Some(Owner::system()),
            ..e.clone()
        }
    );
    assert_eq!(
        audit
            .find(&system, e.event_id, at(-1))
            .await
            .unwrap()
            .as_ref(),
        Some(stored)
    );
    assert!(audit.chain_owners().await.unwrap().contains(&system));
    assert!(matches!(
        verify_chain(&audit, &system).await,
        Verification::Verified { .. }
    ));
}

/// `chain_page` answers up to `limit` events from `from_sequence` on (0 and
/// 1 alike), in sequence order, and nothing past the head.
pub async fn audit_chain_page_paging(audit: Arc<dyn AuditLog>) {
    let owner = owner();
    let made: Vec<AuditEvent> = (0..23).map(|i| token_event(&owner, 100 - i)).collect();
    for e in &made {
        audit.append(e).await.unwrap();
    }
    let all = whole_chain(&audit, &owner, 5).await;
    assert_eq!(ids(&all), ids(&made));
    assert_eq!(sequences(&all), (1..=23).collect::<Vec<_>>());
    assert_eq!(whole_chain(&audit, &owner, 23).await, all);
    assert_eq!(whole_chain(&audit, &owner, 1_000).await, all);

    let middle = audit.chain_page(&owner, 10, 5).await.unwrap();
    assert_eq!(sequences(&middle), [10, 11, 12, 13, 14]);
    assert_eq!(middle, all[9..14]);
    let tail = audit.chain_page(&owner, 21, 5).await.unwrap();
    assert_eq!(sequences(&tail), [21, 22, 23]);
    assert!(audit.chain_page(&owner, 24, 5).await.unwrap().is_empty());
    assert!(
        audit
            .chain_page(&owner, u64::MAX, 5)
            .await
            .unwrap()
            .is_empty()
    );
    let from_zero = audit.chain_page(&owner, 0, 2).await.unwrap();
    assert_eq!(sequences(&from_zero), [1, 2]);
    assert_verified(&audit, &owner, 23).await;
}

/// `append_all` of mixed owners chains each owner's events in their given
/// order, after what the owner already had.
pub async fn audit_chain_append_all_mixed_owners(audit: Arc<dyn AuditLog>) {
    let (a, b) = (owner(), owner());
    let earlier = [token_event(&a, 0), token_event(&a, 1)];
    audit.append_all(&earlier).await.unwrap();
    let system = Owner::system();
    let system_before = audit
        .chain_head(&system)
        .await
        .unwrap()
        .map_or(0, |h| h.sequence);

    let batch = vec![
        token_event(&b, 9),
        token_event(&a, 8),
        ownerless(7),
        token_event(&a, 6),
        token_event(&b, 5),
        token_event(&a, 4),
        ownerless(3),
    ];
    audit.append_all(&batch).await.unwrap();

    let chain_a = whole_chain(&audit, &a, 100).await;
    let mut expected_a: Vec<EventId> = ids(&earlier);
    expected_a.extend(
        batch
            .iter()
            .filter(|e| e.owner.as_ref() == Some(&a))
            .map(|e| e.event_id),
    );
    assert_eq!(ids(&chain_a), expected_a);
    assert_eq!(sequences(&chain_a), [1, 2, 3, 4, 5]);
    assert_verified(&audit, &a, 5).await;

    let chain_b = whole_chain(&audit, &b, 100).await;
    assert_eq!(ids(&chain_b), [batch[0].event_id, batch[4].event_id]);
    assert_verified(&audit, &b, 2).await;

    let system_page = audit
        .chain_page(&system, system_before + 1, 10_000)
        .await
        .unwrap();
    let positions: Vec<u64> = [&batch[2], &batch[6]]
        .iter()
        .map(|e| {
            system_page
                .iter()
                .find(|s| s.event_id == e.event_id)
                .expect("ownerless events of the batch are in _system")
                .sequence
                .unwrap()
        })
        .collect();
    assert!(
        positions[0] < positions[1],
        "given order kept: {positions:?}"
    );
    assert!(matches!(
        verify_chain(&audit, &system).await,
        Verification::Verified { .. }
    ));
}

/// Many writers appending to one owner at once (single appends and batches)
/// form one chain: sequences 1..n, no gap, no fork, verified.
pub async fn audit_chain_concurrent_appends(audit: Arc<dyn AuditLog>) {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let owner = owner();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let audit = Arc::clone(&audit);
        let owner = owner.clone();
        tasks.spawn(async move {
            let mut made = Vec::new();
            let mut i = 0;
            while i < EACH {
                if task % 2 == 0 && i + 5 <= EACH {
                    let batch: Vec<AuditEvent> = (0..5)
                        .map(|k| token_event(&owner, (i + k) as i64))
                        .collect();
                    audit.append_all(&batch).await.unwrap();
                    made.extend(batch);
                    i += 5;
                } else {
                    let e = token_event(&owner, i as i64);
                    audit.append(&e).await.unwrap();
                    made.push(e);
                    i += 1;
                }
            }
            made
        });
    }
    let mut made = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        made.push(joined.unwrap());
    }
    let chain = whole_chain(&audit, &owner, 64).await;
    let total = TASKS * EACH;
    assert_eq!(sequences(&chain), (1..=total as u64).collect::<Vec<_>>());
    assert_verified(&audit, &owner, total as u64).await;
    // Each writer's events keep their order within the chain.
    for writer in &made {
        let positions: Vec<usize> = writer
            .iter()
            .map(|e| chain.iter().position(|s| s.event_id == e.event_id).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    }
    let distinct: BTreeSet<EventId> = chain.iter().map(|e| e.event_id).collect();
    assert_eq!(distinct.len(), total);
}

/// The events that agent, credential and revoked-token writes append in their
/// transactions are chained like any other: the decommission event with the
/// `revokedCredentialIds` the store added, and the chain verifies.
pub async fn audit_chain_covers_transactional_writes(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditLog>,
    revoked_tokens: Arc<dyn RevokedTokenStore>,
) {
    let owner = owner();
    let a = agent(&owner, at(0));
    let e1 = event(&owner, a.agent_id, AuditAction::AgentCreated, at(0));
    agents.create(&a, 10, &e1).await.unwrap();
    let c = credential(&a, at(1), None);
    let e2 = event(&owner, a.agent_id, AuditAction::CredentialGenerated, at(1));
    credentials.create(&c, 10, at(1), &e2).await.unwrap();
    let e3 = event(&owner, a.agent_id, AuditAction::CredentialRotated, at(2));
    credentials
        .rotate(&owner, a.agent_id, c.credential_id, &secret_key(None), &e3)
        .await
        .unwrap();
    let mut suspended = a.clone();
    suspended.status = AgentStatus::Suspended;
    suspended.updated_at = at(3);
    let e4 = event(&owner, a.agent_id, AuditAction::AgentSuspended, at(3));
    assert_eq!(
        agents.update(&a, &suspended, &e4).await.unwrap(),
        UpdateOutcome::Applied
    );
    let token = RevokedToken {
        token_id: TokenId(Uuid::new_v4()),
        expires_at: at(3_600),
    };
    let e5 = event(&owner, a.agent_id, AuditAction::TokenRevoked, at(4));
    assert!(revoked_tokens.revoke(&owner, &token, &e5).await.unwrap());
    let e6 = event(&owner, a.agent_id, AuditAction::AgentDecommissioned, at(5));
    let revoked = agents
        .decommission(&owner, a.agent_id, at(5), &e6)
        .await
        .unwrap();
    assert_eq!(revoked, vec![c.credential_id]);

    let chain = whole_chain(&audit, &owner, 100).await;
    assert_eq!(
        ids(&chain),
        [
            e1.event_id,
            e2.event_id,
            e3.event_id,
            e4.event_id,
            e5.event_id,
            e6.event_id
        ]
    );
    assert_eq!(
        chain[5].metadata["revokedCredentialIds"],
        json!([c.credential_id.to_string()]),
        "the stored (and hashed) metadata is the one with the revoked ids"
    );
    assert_verified(&audit, &owner, 6).await;

    // A refused write appends nothing, so it leaves no gap.
    let refused = event(&owner, a.agent_id, AuditAction::AgentDecommissioned, at(6));
    let result = agents
        .decommission(&owner, a.agent_id, at(6), &refused)
        .await;
    assert!(
        matches!(result, Err(StoreError::AgentDecommissioned)),
        "{result:?}"
    );
    assert_verified(&audit, &owner, 6).await;
}

// ---------------------------------------------------------------------------
// SigningKeyStore

/// A fresh, unrevoked key succeeding `succeeds`, activating at `activates`.
fn key(succeeds: Option<&str>, activates: DateTime<Utc>) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: format!("kid-{}", Uuid::new_v4().simple()),
        algorithm: "ES256".to_owned(),
        private_key: format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            Uuid::new_v4().simple()
        ),
        succeeds: succeeds.map(str::to_owned),
        created_at: at(0),
        activates_at: activates,
        revoked_at: None,
        activation_recorded: false,
    }
}

/// A predecessor kid nobody else uses.
fn predecessor() -> String {
    format!("pred-{}", Uuid::new_v4().simple())
}

/// A `_system` event about key `kid`.
fn key_event(action: AuditAction, kid: &str, seconds: i64) -> AuditEvent {
    let mut e = event(
        &Owner::system(),
        AgentId(Uuid::new_v4()),
        action,
        at(seconds),
    );
    e.agent_id = None;
    e.actor_id = None;
    e.metadata = json!({ "kid": kid });
    e
}

async fn stored_key(
    signing_keys: &Arc<dyn SigningKeyStore>,
    kid: &str,
) -> Option<SigningKeyRecord> {
    signing_keys
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.kid == kid)
}

async fn event_stored(audit: &Arc<dyn AuditLog>, e: &AuditEvent) -> bool {
    audit
        .find(&Owner::system(), e.event_id, at(-1))
        .await
        .unwrap()
        .is_some()
}

/// `insert_key` stores the key as given with its events (in the `_system`
/// chain, which verifies); a second key succeeding the same key is refused
/// (`false`, no key, no event) until the first is revoked; `None` is a
/// `succeeds` like any other.
pub async fn signing_key_insert_and_list(
    signing_keys: Arc<dyn SigningKeyStore>,
    audit: Arc<dyn AuditLog>,
) {
    let pred = predecessor();
    let first = key(Some(&pred), at(100));
    let created = key_event(AuditAction::KeyCreated, &first.kid, 1);
    assert!(
        signing_keys
            .insert_key(&first, std::slice::from_ref(&created))
            .await
            .unwrap()
    );
    assert_eq!(
        stored_key(&signing_keys, &first.kid).await,
        Some(first.clone())
    );
    assert!(event_stored(&audit, &created).await);

    let rival = key(Some(&pred), at(100));
    let rival_event = key_event(AuditAction::KeyCreated, &rival.kid, 2);
    assert!(
        !signing_keys
            .insert_key(&rival, std::slice::from_ref(&rival_event))
            .await
            .unwrap()
    );
    assert_eq!(stored_key(&signing_keys, &rival.kid).await, None);
    assert!(
        !event_stored(&audit, &rival_event).await,
        "a refused insert writes no event"
    );

    // Every field round trips, a revoked, recorded key included.
    let mut full = key(Some(&predecessor()), at(200));
    full.revoked_at = Some(at(300));
    full.activation_recorded = true;
    full.algorithm = "RS256".to_owned();
    assert!(signing_keys.insert_key(&full, &[]).await.unwrap());
    assert_eq!(stored_key(&signing_keys, &full.kid).await, Some(full));

    // Once the first is revoked, its place is free again.
    assert!(
        signing_keys
            .revoke_key(&first.kid, at(50), &[])
            .await
            .unwrap()
    );
    assert!(
        signing_keys
            .insert_key(&rival, std::slice::from_ref(&rival_event))
            .await
            .unwrap()
    );
    assert!(event_stored(&audit, &rival_event).await);

    // `None`: the first key of a deployment, at most one live.
    let live_first = signing_keys
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .any(|k| k.succeeds.is_none() && k.revoked_at.is_none());
    let genesis = key(None, at(0));
    assert_eq!(
        signing_keys.insert_key(&genesis, &[]).await.unwrap(),
        !live_first
    );
    let another = key(None, at(0));
    assert!(!signing_keys.insert_key(&another, &[]).await.unwrap());
    assert_eq!(stored_key(&signing_keys, &another.kid).await, None);

    assert!(matches!(
        verify_chain(&audit, &Owner::system()).await,
        Verification::Verified { .. }
    ));
}

/// Of many concurrent `insert_key` calls succeeding one key, exactly one
/// stores its key and its event.
pub async fn signing_key_insert_races_make_one_key(
    signing_keys: Arc<dyn SigningKeyStore>,
    audit: Arc<dyn AuditLog>,
) {
    let pred = predecessor();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let signing_keys = Arc::clone(&signing_keys);
        let candidate = key(Some(&pred), at(100));
        let e = key_event(AuditAction::KeyCreated, &candidate.kid, i);
        tasks.spawn(async move {
            let won = signing_keys
                .insert_key(&candidate, std::slice::from_ref(&e))
                .await
                .unwrap();
            (won, candidate, e)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (won, candidate, e) = joined.unwrap();
        assert_eq!(event_stored(&audit, &e).await, won);
        if won {
            winners.push(candidate);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one racer stores its key");
    let stored: Vec<SigningKeyRecord> = signing_keys
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.succeeds.as_deref() == Some(pred.as_str()))
        .collect();
    assert_eq!(stored, winners);
}

/// `activate_early` moves a pending key's activation to `at` with its
/// events; a key already active at `at`, a revoked or an unknown key answer
/// `false` and write nothing.
pub async fn signing_key_activate_early(
    signing_keys: Arc<dyn SigningKeyStore>,
    audit: Arc<dyn AuditLog>,
) {
    let pending = key(Some(&predecessor()), at(1_000));
    assert!(signing_keys.insert_key(&pending, &[]).await.unwrap());
    let e = key_event(AuditAction::KeyActivated, &pending.kid, 100);
    assert!(
        signing_keys
            .activate_early(&pending.kid, at(100), std::slice::from_ref(&e))
            .await
            .unwrap()
    );
    assert_eq!(
        stored_key(&signing_keys, &pending.kid)
            .await
            .unwrap()
            .activates_at,
        at(100)
    );
    assert!(event_stored(&audit, &e).await);

    let again = key_event(AuditAction::KeyActivated, &pending.kid, 200);
    assert!(
        !signing_keys
            .activate_early(&pending.kid, at(200), std::slice::from_ref(&again))
            .await
            .unwrap(),
        "already active at that instant"
    );
    assert_eq!(
        stored_key(&signing_keys, &pending.kid)
            .await
            .unwrap()
            .activates_at,
        at(100)
    );
    assert!(!event_stored(&audit, &again).await);

    let revoked = key(Some(&predecessor()), at(1_000));
    assert!(signing_keys.insert_key(&revoked, &[]).await.unwrap());
    assert!(
        signing_keys
            .revoke_key(&revoked.kid, at(10), &[])
            .await
            .unwrap()
    );
    assert!(
        !signing_keys
            .activate_early(&revoked.kid, at(100), &[])
            .await
            .unwrap()
    );
    assert_eq!(
        stored_key(&signing_keys, &revoked.kid)
            .await
            .unwrap()
            .activates_at,
        at(1_000)
    );
    assert!(
        !signing_keys
            .activate_early("no-such-kid", at(100), &[])
            .await
            .unwrap()
    );
}

/// `revoke_key` sets `revoked_at` with its events once; an already revoked
/// or unknown key answers `false` and writes nothing.
pub async fn signing_key_revoke(signing_keys: Arc<dyn SigningKeyStore>, audit: Arc<dyn AuditLog>) {
    let k = key(Some(&predecessor()), at(0));
    assert!(signing_keys.insert_key(&k, &[]).await.unwrap());
    let e = key_event(AuditAction::KeyRevoked, &k.kid, 10);
    assert!(
        signing_keys
            .revoke_key(&k.kid, at(10), std::slice::from_ref(&e))
            .await
            .unwrap()
    );
    assert_eq!(
        stored_key(&signing_keys, &k.kid).await.unwrap().revoked_at,
        Some(at(10))
    );
    assert!(event_stored(&audit, &e).await);

    let again = key_event(AuditAction::KeyRevoked, &k.kid, 20);
    assert!(
        !signing_keys
            .revoke_key(&k.kid, at(20), std::slice::from_ref(&again))
            .await
            .unwrap()
    );
    assert_eq!(
        stored_key(&signing_keys, &k.kid).await.unwrap().revoked_at,
        Some(at(10)),
        "the first revocation stays"
    );
    assert!(!event_stored(&audit, &again).await);
    let unknown = key_event(AuditAction::KeyRevoked, "no-such-kid", 30);
    assert!(
        !signing_keys
            .revoke_key("no-such-kid", at(30), std::slice::from_ref(&unknown))
            .await
            .unwrap()
    );
    assert!(!event_stored(&audit, &unknown).await);
}

/// `record_activation` sets the flag and writes its events once: of many
/// concurrent callers, one answers `true`.
pub async fn signing_key_record_activation_once(
    signing_keys: Arc<dyn SigningKeyStore>,
    audit: Arc<dyn AuditLog>,
) {
    let k = key(Some(&predecessor()), at(0));
    assert!(signing_keys.insert_key(&k, &[]).await.unwrap());
    let e = key_event(AuditAction::KeyActivated, &k.kid, 1);
    assert!(
        signing_keys
            .record_activation(&k.kid, std::slice::from_ref(&e))
            .await
            .unwrap()
    );
    assert!(
        stored_key(&signing_keys, &k.kid)
            .await
            .unwrap()
            .activation_recorded
    );
    assert!(event_stored(&audit, &e).await);
    let again = key_event(AuditAction::KeyActivated, &k.kid, 2);
    assert!(
        !signing_keys
            .record_activation(&k.kid, std::slice::from_ref(&again))
            .await
            .unwrap()
    );
    assert!(!event_stored(&audit, &again).await);
    assert!(
        !signing_keys
            .record_activation("no-such-kid", &[])
            .await
            .unwrap()
    );

    let raced = key(Some(&predecessor()), at(0));
    assert!(signing_keys.insert_key(&raced, &[]).await.unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let signing_keys = Arc::clone(&signing_keys);
        let kid = raced.kid.clone();
        let e = key_event(AuditAction::KeyActivated, &kid, i);
        tasks.spawn(async move { signing_keys.record_activation(&kid, &[e]).await.unwrap() });
    }
    let mut wins = 0;
    while let Some(joined) = tasks.join_next().await {
        wins += usize::from(joined.unwrap());
    }
    assert_eq!(wins, 1, "one node records an activation");
}

/// `replace_private_keys` swaps every given private key when each still holds
/// what the caller read, and else fails with `NotFound`, changing none.
pub async fn signing_key_replace_private_keys(signing_keys: Arc<dyn SigningKeyStore>) {
    let (a, b) = (
        key(Some(&predecessor()), at(0)),
        key(Some(&predecessor()), at(0)),
    );
    assert!(signing_keys.insert_key(&a, &[]).await.unwrap());
    assert!(signing_keys.insert_key(&b, &[]).await.unwrap());
    signing_keys
        .replace_private_keys(&[
            (a.kid.clone(), a.private_key.clone(), "sealed-a".to_owned()),
            (b.kid.clone(), b.private_key.clone(), "sealed-b".to_owned()),
        ])
        .await
        .unwrap();
    assert_eq!(
        stored_key(&signing_keys, &a.kid).await.unwrap().private_key,
        "sealed-a"
    );
    assert_eq!(
        stored_key(&signing_keys, &b.kid).await.unwrap().private_key,
        "sealed-b"
    );

    // `a` is read right, `b` changed since (a concurrent rewrap): none moves.
    let result = signing_keys
        .replace_private_keys(&[
            (
                a.kid.clone(),
                "sealed-a".to_owned(),
                "resealed-a".to_owned(),
            ),
            (
                b.kid.clone(),
                b.private_key.clone(),
                "resealed-b".to_owned(),
            ),
        ])
        .await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(
        stored_key(&signing_keys, &a.kid).await.unwrap().private_key,
        "sealed-a"
    );
    assert_eq!(
        stored_key(&signing_keys, &b.kid).await.unwrap().private_key,
        "sealed-b"
    );
    let result = signing_keys
        .replace_private_keys(&[("no-such-kid".to_owned(), "x".to_owned(), "y".to_owned())])
        .await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    signing_keys.replace_private_keys(&[]).await.unwrap();
}

/// The key-set version grows with every change of the keys and stays put
/// when a change is refused.
pub async fn signing_key_set_version_grows(signing_keys: Arc<dyn SigningKeyStore>) {
    let mut last = signing_keys.key_set_version().await.unwrap();
    let mut grew = |now: u64, what: &str| {
        assert!(now > last, "{what}: {now} after {last}");
        last = now;
    };
    let k = key(Some(&predecessor()), at(1_000));
    assert!(signing_keys.insert_key(&k, &[]).await.unwrap());
    grew(signing_keys.key_set_version().await.unwrap(), "insert_key");
    assert!(
        signing_keys
            .activate_early(&k.kid, at(10), &[])
            .await
            .unwrap()
    );
    grew(
        signing_keys.key_set_version().await.unwrap(),
        "activate_early",
    );
    assert!(signing_keys.record_activation(&k.kid, &[]).await.unwrap());
    grew(
        signing_keys.key_set_version().await.unwrap(),
        "record_activation",
    );
    assert!(signing_keys.revoke_key(&k.kid, at(20), &[]).await.unwrap());
    grew(signing_keys.key_set_version().await.unwrap(), "revoke_key");

    assert!(!signing_keys.revoke_key(&k.kid, at(30), &[]).await.unwrap());
    assert!(!signing_keys.record_activation(&k.kid, &[]).await.unwrap());
    assert!(
        !signing_keys
            .activate_early("no-such-kid", at(30), &[])
            .await
            .unwrap()
    );
    let taken = key(Some(&predecessor()), at(0));
    assert!(signing_keys.insert_key(&taken, &[]).await.unwrap());
    let after_insert = signing_keys.key_set_version().await.unwrap();
    let rival = key(taken.succeeds.as_deref(), at(0));
    assert!(!signing_keys.insert_key(&rival, &[]).await.unwrap());
    assert_eq!(
        signing_keys.key_set_version().await.unwrap(),
        after_insert,
        "a refused change counts no version"
    );
}

/// `acknowledge_key_set` keeps each node's latest acknowledgement;
/// `key_set_acknowledgements(since)` answers the nodes seen at or after
/// `since`, with the version each last acknowledged.
pub async fn signing_key_set_acknowledgements(signing_keys: Arc<dyn SigningKeyStore>) {
    let (a, b) = (
        format!("node-a-{}", Uuid::new_v4().simple()),
        format!("node-b-{}", Uuid::new_v4().simple()),
    );
    let mine = |acks: Vec<(String, u64)>| -> Vec<(String, u64)> {
        let mut acks: Vec<_> = acks
            .into_iter()
            .filter(|(n, _)| *n == a || *n == b)
            .collect();
        acks.sort();
        acks
    };
    signing_keys
        .acknowledge_key_set(&a, 1, at(0))
        .await
        .unwrap();
    signing_keys
        .acknowledge_key_set(&b, 2, at(10))
        .await
        .unwrap();
    assert_eq!(
        mine(signing_keys.key_set_acknowledgements(at(0)).await.unwrap()),
        [(a.clone(), 1), (b.clone(), 2)]
    );
    assert_eq!(
        mine(signing_keys.key_set_acknowledgements(at(5)).await.unwrap()),
        [(b.clone(), 2)]
    );
    assert_eq!(
        mine(signing_keys.key_set_acknowledgements(at(10)).await.unwrap()),
        [(b.clone(), 2)],
        "since is inclusive"
    );
    signing_keys
        .acknowledge_key_set(&a, 3, at(20))
        .await
        .unwrap();
    assert_eq!(
        mine(signing_keys.key_set_acknowledgements(at(15)).await.unwrap()),
        [(a.clone(), 3)]
    );
    assert!(mine(signing_keys.key_set_acknowledgements(at(21)).await.unwrap()).is_empty());
}
