//! `KeyService`: first key, rotations, early activation, revocation, upkeep.

use std::sync::{Arc, Mutex};

use chrono::Duration;
use mockall::predicate::eq;

use super::fixtures::{ambient, now};
use crate::audit::AuditEvent;
use crate::keys::{KeyState, SigningKeyRecord};
use crate::ports::{GeneratedKey, MockKeyGenerator, MockSigningKeyStore};
use crate::services::{KeyError, KeyService, KeySettings, Rotation};
use crate::values::{AuditAction, Owner};

/// `at` truncated to its second.
fn second(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

fn settings() -> KeySettings {
    KeySettings {
        algorithm: "ES256".into(),
        rotation_period: Some(Duration::days(30)),
        prepublish: Duration::seconds(600),
        token_ttl: Duration::seconds(900),
    }
}

fn key(kid: &str, succeeds: Option<&str>, activates: Duration) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        algorithm: "RS256".into(),
        private_key: "sealed".into(),
        succeeds: succeeds.map(Into::into),
        created_at: now() + activates.min(Duration::zero()),
        activates_at: now() + activates,
        revoked_at: None,
        activation_recorded: true,
    }
}

fn generator(expected_alg: &'static str) -> MockKeyGenerator {
    let mut g = MockKeyGenerator::new();
    g.expect_generate()
        .with(eq(expected_alg))
        .times(1)
        .returning(|_| {
            Ok(GeneratedKey {
                kid: "new".into(),
                private_key: "sealed-new".into(),
            })
        });
    g
}

fn listing(store: &mut MockSigningKeyStore, keys: Vec<SigningKeyRecord>) {
    store.expect_list_keys().returning(move || Ok(keys.clone()));
}

fn actions(events: &[AuditEvent]) -> Vec<AuditAction> {
    events.iter().map(|e| e.action).collect()
}

fn service(store: MockSigningKeyStore, generator: MockKeyGenerator) -> KeyService {
    KeyService::new(Arc::new(store), Arc::new(generator), ambient(), settings())
}

/// What `insert_key` was given.
type Inserted = Arc<Mutex<Vec<(SigningKeyRecord, Vec<AuditEvent>)>>>;

fn capture_insert(store: &mut MockSigningKeyStore, answer: bool) -> Inserted {
    let inserted: Inserted = Arc::default();
    let sink = Arc::clone(&inserted);
    store.expect_insert_key().times(1).returning(move |k, e| {
        sink.lock().unwrap().push((k.clone(), e.to_vec()));
        Ok(answer)
    });
    inserted
}

#[tokio::test]
async fn the_first_key_signs_at_once_with_the_configured_algorithm() {
    let mut store = MockSigningKeyStore::new();
    let mut listed = 0;
    store.expect_list_keys().returning(move || {
        listed += 1;
        Ok(if listed == 1 {
            vec![]
        } else {
            vec![key("new", None, Duration::zero())]
        })
    });
    let inserted = capture_insert(&mut store, true);
    let keys = service(store, generator("ES256"))
        .ensure_active_key()
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    let (record, events) = inserted.lock().unwrap().pop().unwrap();
    assert_eq!(record.algorithm, "ES256");
    assert_eq!(record.succeeds, None);
    assert_eq!(record.activates_at, second(now()));
    assert!(record.activation_recorded);
    assert_eq!(
        actions(&events),
        [AuditAction::KeyCreated, AuditAction::KeyActivated]
    );
    assert!(events.iter().all(|e| e.owner == Some(Owner::system())));
    assert!(
        events
            .iter()
            .all(|e| !e.metadata.to_string().contains("sealed"))
    );
}

#[tokio::test]
async fn an_active_key_needs_no_new_one() {
    let mut store = MockSigningKeyStore::new();
    listing(&mut store, vec![key("a", None, -Duration::days(1))]);
    store.expect_insert_key().never();
    let keys = service(store, MockKeyGenerator::new())
        .ensure_active_key()
        .await
        .unwrap();
    assert_eq!(keys[0].kid, "a");
}

#[tokio::test]
async fn a_rotation_publishes_the_next_key_for_the_prepublication_time() {
    let mut store = MockSigningKeyStore::new();
    listing(&mut store, vec![key("a", None, -Duration::days(1))]);
    let inserted = capture_insert(&mut store, true);
    let rotation = service(store, generator("EdDSA"))
        .rotate(Some("EdDSA"), false)
        .await
        .unwrap();
    let (record, events) = inserted.lock().unwrap().pop().unwrap();
    assert_eq!(rotation, Rotation::Created(record.clone()));
    assert_eq!(record.succeeds.as_deref(), Some("a"));
    // Activation instants are whole seconds, rounded up past the pre-publication time.
    assert_eq!(record.activates_at, second(now() + Duration::seconds(601)));
    assert!(!record.activation_recorded);
    assert_eq!(actions(&events), [AuditAction::KeyCreated]);
    assert_eq!(events[0].metadata["alg"], "EdDSA");
}

#[tokio::test]
async fn a_second_rotation_while_one_waits_is_refused() {
    let mut store = MockSigningKeyStore::new();
    listing(
        &mut store,
        vec![
            key("a", None, -Duration::days(1)),
            key("b", Some("a"), Duration::seconds(60)),
        ],
    );
    store.expect_insert_key().never();
    let err = service(store, MockKeyGenerator::new())
        .rotate(None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyError::AlreadyPending { ref kid, .. } if kid == "b"),
        "{err}"
    );
}

#[tokio::test]
async fn rotate_now_activates_the_waiting_key_and_records_it() {
    let mut store = MockSigningKeyStore::new();
    listing(
        &mut store,
        vec![
            key("a", None, -Duration::days(1)),
            key("b", Some("a"), Duration::seconds(60)),
        ],
    );
    store
        .expect_activate_early()
        .withf(|kid, at, events| kid == "b" && *at == second(now()) && events.is_empty())
        .times(1)
        .returning(|_, _, _| Ok(true));
    store
        .expect_record_activation()
        .withf(|kid, events| {
            kid == "b"
                && actions(events) == [AuditAction::KeyActivated, AuditAction::KeyRetired]
                && events[1].metadata["kid"] == "a"
        })
        .times(1)
        .returning(|_, _| Ok(true));
    store.expect_insert_key().never();
    let rotation = service(store, MockKeyGenerator::new())
        .rotate(None, true)
        .await
        .unwrap();
    let Rotation::ActivatedNow(b) = rotation else {
        panic!("{rotation:?}")
    };
    assert_eq!((b.kid.as_str(), b.activates_at), ("b", second(now())));
}

#[tokio::test]
async fn a_rotation_lost_to_another_node_answers_its_key() {
    let mut store = MockSigningKeyStore::new();
    let mut listed = 0;
    store.expect_list_keys().returning(move || {
        listed += 1;
        let mut keys = vec![key("a", None, -Duration::days(1))];
        if listed > 1 {
            keys.push(key("theirs", Some("a"), Duration::seconds(600)));
        }
        Ok(keys)
    });
    capture_insert(&mut store, false);
    let rotation = service(store, generator("ES256"))
        .rotate(None, false)
        .await
        .unwrap();
    assert!(matches!(rotation, Rotation::MadeElsewhere(ref k) if k.kid == "theirs"));
}

#[tokio::test]
async fn an_unknown_algorithm_is_refused_before_anything_is_made() {
    let store = MockSigningKeyStore::new();
    let err = service(store, MockKeyGenerator::new())
        .rotate(Some("HS256"), false)
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::UnsupportedAlgorithm(_)));
}

#[tokio::test]
async fn the_only_signing_key_cannot_be_revoked() {
    let mut store = MockSigningKeyStore::new();
    listing(&mut store, vec![key("a", None, -Duration::days(1))]);
    store.expect_revoke_key().never();
    let err = service(store, MockKeyGenerator::new())
        .revoke("a")
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::LastSigningKey(_)), "{err}");
}

#[tokio::test]
async fn revoking_the_active_key_activates_its_successor_first() {
    let mut store = MockSigningKeyStore::new();
    let revoked = Arc::new(Mutex::new(false));
    let seen = Arc::clone(&revoked);
    store.expect_list_keys().returning(move || {
        let mut a = key("a", None, -Duration::days(1));
        let b = key("b", Some("a"), Duration::seconds(60));
        if *seen.lock().unwrap() {
            a.revoked_at = Some(now());
        }
        Ok(vec![a, b])
    });
    let mut order = mockall::Sequence::new();
    store
        .expect_activate_early()
        .withf(|kid, _, _| kid == "b")
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Ok(true));
    store
        .expect_record_activation()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(true));
    let flag = Arc::clone(&revoked);
    store
        .expect_revoke_key()
        .withf(|kid, at, events| {
            kid == "a" && *at == now() && actions(events) == [AuditAction::KeyRevoked]
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(move |_, _, _| {
            *flag.lock().unwrap() = true;
            Ok(true)
        });
    let status = service(store, MockKeyGenerator::new())
        .revoke("a")
        .await
        .unwrap();
    assert_eq!(status.state, KeyState::Revoked);
}

#[tokio::test]
async fn revoking_an_unknown_or_revoked_key_is_refused() {
    let mut store = MockSigningKeyStore::new();
    let mut gone = key("gone", None, -Duration::days(9));
    gone.revoked_at = Some(now());
    listing(&mut store, vec![key("a", None, -Duration::days(1)), gone]);
    store.expect_revoke_key().never();
    let keys = service(store, MockKeyGenerator::new());
    assert!(matches!(
        keys.revoke("nope").await,
        Err(KeyError::UnknownKey(_))
    ));
    assert!(matches!(
        keys.revoke("gone").await,
        Err(KeyError::AlreadyRevoked(_))
    ));
}

#[tokio::test]
async fn upkeep_rotates_a_key_older_than_the_period() {
    let mut store = MockSigningKeyStore::new();
    listing(&mut store, vec![key("a", None, -Duration::days(31))]);
    let inserted = capture_insert(&mut store, true);
    service(store, generator("ES256")).maintain().await.unwrap();
    let (record, _) = inserted.lock().unwrap().pop().unwrap();
    assert_eq!(record.succeeds.as_deref(), Some("a"));
    assert_eq!(record.activates_at, second(now() + Duration::seconds(601)));
}

#[tokio::test]
async fn upkeep_leaves_a_young_key_and_a_waiting_rotation_alone() {
    let mut store = MockSigningKeyStore::new();
    listing(
        &mut store,
        vec![
            key("a", None, -Duration::days(31)),
            key("b", Some("a"), Duration::seconds(5)),
        ],
    );
    store.expect_insert_key().never();
    service(store, MockKeyGenerator::new())
        .maintain()
        .await
        .unwrap();

    let mut store = MockSigningKeyStore::new();
    listing(&mut store, vec![key("a", None, -Duration::days(29))]);
    store.expect_insert_key().never();
    service(store, MockKeyGenerator::new())
        .maintain()
        .await
        .unwrap();
}

#[tokio::test]
async fn upkeep_records_an_activation_that_happened_once() {
    let mut store = MockSigningKeyStore::new();
    let mut b = key("b", Some("a"), -Duration::seconds(5));
    b.activation_recorded = false;
    listing(&mut store, vec![key("a", None, -Duration::days(2)), b]);
    store
        .expect_record_activation()
        .withf(|kid, events| {
            kid == "b" && actions(events) == [AuditAction::KeyActivated, AuditAction::KeyRetired]
        })
        .times(1)
        .returning(|_, _| Ok(false));
    service(store, MockKeyGenerator::new())
        .maintain()
        .await
        .unwrap();
}

#[tokio::test]
async fn nodes_behind_are_those_alive_that_have_not_seen_the_version() {
    let mut store = MockSigningKeyStore::new();
    store
        .expect_key_set_acknowledgements()
        .with(eq(now() - Duration::seconds(3)))
        .returning(|_| Ok(vec![("n1".into(), 7), ("n2".into(), 6), ("n3".into(), 8)]));
    let behind = service(store, MockKeyGenerator::new())
        .nodes_behind(7, Duration::seconds(3))
        .await
        .unwrap();
    assert_eq!(behind, ["n2"]);
}
