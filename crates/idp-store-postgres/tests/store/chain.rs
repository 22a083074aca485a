//! The audit chain as only PostgreSQL can show it: writers on several pools
//! (as several nodes), the migration that links events stored before the
//! chain, the serving role's privileges, and tampering by someone who
//! bypasses the program.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use idp_domain::audit::AuditEvent;
use idp_domain::audit_chain::{ChainHead, Verification, link};
use idp_domain::ports::{AgentRepository, AuditLog, CredentialRepository, SigningKeyStore};
use idp_domain::values::{AgentId, AuditAction, Owner};
use idp_port_tests::store::fixtures::{agent, at, credential, event, owner, unchained};
use idp_port_tests::store::{verify_chain, whole_chain};
use idp_store_postgres::testing::{DEFAULT_TEST_DATABASE_URL, TestDatabase, with_database};
use idp_store_postgres::{PgStore, SERVING_ROLE_GRANTS, connect, run_migrations};
use uuid::Uuid;

use crate::postgres::ALL_MIGRATIONS;
use crate::{Harness, raw_connection, sql};

fn verified_events(verification: Verification) -> u64 {
    match verification {
        Verification::Verified { events, .. } => events,
        broken @ Verification::Broken { .. } => panic!("must verify: {broken:?}"),
    }
}

fn first_bad(verification: Verification) -> u64 {
    match verification {
        Verification::Broken { bad, .. } => bad.first_bad_sequence,
        Verification::Verified { .. } => panic!("tampering must be detected"),
    }
}

/// The head row as stored, for comparing with the chain's last event.
async fn recorded_head(conn: &mut AsyncPgConnection, owner: &Owner) -> ChainHead {
    #[derive(diesel::QueryableByName)]
    struct Head {
        #[diesel(sql_type = BigInt)]
        sequence: i64,
        #[diesel(sql_type = Text)]
        hash: String,
    }
    let head: Head = diesel::sql_query("SELECT sequence, hash FROM audit_heads WHERE owner = $1")
        .bind::<Text, _>(owner.as_str())
        .get_result(conn)
        .await
        .unwrap();
    ChainHead {
        sequence: u64::try_from(head.sequence).unwrap(),
        hash: head.hash,
    }
}

/// Two stores on two pools (two nodes), 8 writers each, 50 appends per
/// writer, some as batches of mixed owners (ownerless events included): every
/// owner's chain is gapless, unforked and verified, and `audit_heads` holds
/// each chain's last event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_two_pools_form_one_chain_per_owner() {
    const WRITERS: usize = 8;
    const APPENDS: usize = 50;
    let harness = Harness::start().await;
    let second = PgStore::new(connect(&harness.db.url, 8).await.unwrap());
    let logs: [Arc<dyn AuditLog>; 2] = [harness.audit(), Arc::new(second.clone())];
    let owners = [owner(), owner(), owner()];
    let mut tasks = tokio::task::JoinSet::new();
    for (node, log) in logs.iter().enumerate() {
        for writer in 0..WRITERS {
            let log = Arc::clone(log);
            let owners = owners.clone();
            tasks.spawn(async move {
                let mut written = 0;
                let mut i = 0_usize;
                while i < APPENDS {
                    let pick = |k: usize| {
                        let mut e = event(
                            &owners[(node + writer + k) % owners.len()],
                            AgentId(Uuid::new_v4()),
                            AuditAction::TokenIssued,
                            at(i64::try_from(k).unwrap()),
                        );
                        if k % 7 == 3 {
                            e.owner = None;
                        }
                        e
                    };
                    if writer % 2 == 1 && i + 5 <= APPENDS {
                        let batch: Vec<AuditEvent> = (i..i + 5).map(pick).collect();
                        log.append_all(&batch).await.unwrap();
                        i += 5;
                    } else {
                        log.append(&pick(i)).await.unwrap();
                        i += 1;
                    }
                    written = i;
                }
                written
            });
        }
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.unwrap();
    }
    assert_eq!(total, 2 * WRITERS * APPENDS);

    let audit = harness.audit();
    let mut conn = raw_connection(&harness.db.url).await;
    let mut chained = 0;
    for owner in owners.iter().cloned().chain([Owner::system()]) {
        let chain = whole_chain(&audit, &owner, 100).await;
        let sequences: Vec<u64> = chain.iter().map(|e| e.sequence.unwrap()).collect();
        assert_eq!(
            sequences,
            (1..=chain.len() as u64).collect::<Vec<_>>(),
            "{owner}: no gap, no fork"
        );
        assert_eq!(
            verified_events(verify_chain(&audit, &owner).await),
            chain.len() as u64
        );
        let last = chain.last().unwrap();
        assert_eq!(
            recorded_head(&mut conn, &owner).await,
            ChainHead {
                sequence: last.sequence.unwrap(),
                hash: last.hash.clone().unwrap()
            }
        );
        chained += chain.len();
    }
    assert_eq!(chained, total, "every append is in exactly one chain");
    drop(second);
    harness.finish().await;
}

/// Inserts an event as the release before the chain did: no sequence, no
/// hash, `owner` possibly NULL.
async fn insert_old_event(
    conn: &mut AsyncPgConnection,
    owner: Option<&Owner>,
    id: Uuid,
    timestamp: DateTime<Utc>,
) {
    diesel::sql_query(
        "INSERT INTO audit_events (event_id, owner, agent_id, action, outcome, metadata, \"timestamp\") \
         VALUES ($1, $2, $3, 'token.issued', 'success', $4, $5)",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<Nullable<Text>, _>(owner.map(Owner::as_str))
    .bind::<diesel::sql_types::Uuid, _>(Uuid::new_v4())
    .bind::<Jsonb, _>(serde_json::json!({"old": true, "n": [1, 2.5, "x"]}))
    .bind::<Timestamptz, _>(timestamp)
    .execute(conn)
    .await
    .unwrap();
}

/// A database of the release before the chain, holding events (some without
/// owner) and one signing key per algorithm, migrated: every event is linked
/// into its owner's chain ordered by timestamp then event_id, the ownerless
/// ones into `_system`, the heads are recorded, the keys form one line; a
/// second run changes nothing, and an event written by hand meanwhile is
/// linked after the head by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_links_events_stored_before_the_chain() {
    let db = TestDatabase::create_migrated_up_to(1).await.unwrap();
    let mut conn = raw_connection(&db.url).await;
    let tenant = owner();
    let mut tenant_events = Vec::new();
    // Out of time order, with a tie on the timestamp.
    for seconds in [30, 10, 20, 10, 0] {
        let id = Uuid::new_v4();
        insert_old_event(&mut conn, Some(&tenant), id, at(seconds)).await;
        tenant_events.push((at(seconds), id));
    }
    let mut system_events = Vec::new();
    for seconds in [5, 1] {
        let id = Uuid::new_v4();
        insert_old_event(&mut conn, None, id, at(seconds)).await;
        system_events.push((at(seconds), id));
    }
    tenant_events.sort();
    system_events.sort();
    sql(
        &mut conn,
        "INSERT INTO signing_keys (algorithm, kid, private_pem, created_at) VALUES \
         ('RS256', 'kid-rs', 'pem-rs', '2026-01-01T00:00:00Z'), \
         ('ES256', 'kid-es', 'pem-es', '2026-02-01T00:00:00Z')",
    )
    .await;

    assert_eq!(run_migrations(&db.url).await.unwrap(), ALL_MIGRATIONS[1..]);

    let store = PgStore::new(connect(&db.url, 4).await.unwrap());
    let audit: Arc<dyn AuditLog> = Arc::new(store.clone());
    for (owner, expected) in [
        (&tenant, &tenant_events),
        (&Owner::system(), &system_events),
    ] {
        let chain = whole_chain(&audit, owner, 100).await;
        let ids: Vec<Uuid> = chain.iter().map(|e| e.event_id.0).collect();
        let expected_ids: Vec<Uuid> = expected.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids, expected_ids, "{owner}: timestamp, then event_id");
        assert!(chain.iter().all(|e| e.owner.as_ref() == Some(owner)));
        assert_eq!(
            verified_events(verify_chain(&audit, owner).await),
            expected.len() as u64
        );
    }
    assert_eq!(
        audit.chain_owners().await.unwrap(),
        [Owner::system(), tenant.clone()]
    );

    let keys: Arc<dyn SigningKeyStore> = Arc::new(store.clone());
    let listed = keys.list_keys().await.unwrap();
    assert_eq!(listed.len(), 2);
    let (rs, es) = (&listed[0], &listed[1]);
    assert_eq!((rs.kid.as_str(), rs.succeeds.as_deref()), ("kid-rs", None));
    assert_eq!(
        (es.kid.as_str(), es.succeeds.as_deref()),
        ("kid-es", Some("kid-rs"))
    );
    assert_eq!(es.private_key, "pem-es");
    assert_eq!(es.activates_at, es.created_at);
    assert!(rs.activation_recorded && es.activation_recorded && es.revoked_at.is_none());
    assert_eq!(keys.key_set_version().await.unwrap(), 0);

    // Idempotent: nothing to apply, nothing to link.
    let before = whole_chain(&audit, &tenant, 100).await;
    assert!(run_migrations(&db.url).await.unwrap().is_empty());
    assert_eq!(whole_chain(&audit, &tenant, 100).await, before);

    // An event written by hand (no sequence) is linked after the head by the
    // next run, even though its timestamp is older; appends continue after.
    let late = Uuid::new_v4();
    insert_old_event(&mut conn, Some(&tenant), late, at(-100)).await;
    assert!(run_migrations(&db.url).await.unwrap().is_empty());
    let appended = event(
        &tenant,
        AgentId(Uuid::new_v4()),
        AuditAction::TokenIssued,
        at(99),
    );
    audit.append(&appended).await.unwrap();
    let chain = whole_chain(&audit, &tenant, 100).await;
    assert_eq!(chain.len(), 7);
    assert_eq!(chain[5].event_id.0, late);
    assert_eq!(chain[6].event_id, appended.event_id);
    assert_eq!(verified_events(verify_chain(&audit, &tenant).await), 7);

    // The trigger is back on.
    let err = diesel::sql_query("DELETE FROM audit_events")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    drop((store, conn));
    db.drop_db().await;
}

/// A role granted [`SERVING_ROLE_GRANTS`] serves (agents, credentials,
/// appends, keys) but cannot rewrite audit history: UPDATE, DELETE, TRUNCATE
/// and disabling the triggers are refused by the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_role_can_append_but_never_rewrite() {
    let harness = Harness::start().await;
    let role = format!("idp_serving_{}", Uuid::new_v4().simple());
    let admin_url = std::env::var("IDP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
    let mut admin = raw_connection(&admin_url).await;
    sql(&mut admin, &format!("CREATE ROLE {role} LOGIN")).await;

    let outcome = async {
        let mut owner_conn = raw_connection(&harness.db.url).await;
        for statement in SERVING_ROLE_GRANTS.replace("{role}", &role).split(';') {
            if !statement.trim().is_empty() {
                sql(&mut owner_conn, statement).await;
            }
        }
        let role_url = with_database(
            &admin_url.replacen("postgres@", &format!("{role}@"), 1),
            &harness.db.name,
        )
        .unwrap();
        assert!(
            role_url.contains(&role),
            "the test server URL names user postgres"
        );

        let store = PgStore::new(connect(&role_url, 4).await.unwrap());
        let agents: Arc<dyn AgentRepository> = Arc::new(store.clone());
        let credentials: Arc<dyn CredentialRepository> = Arc::new(store.clone());
        let audit: Arc<dyn AuditLog> = Arc::new(store.clone());
        let keys: Arc<dyn SigningKeyStore> = Arc::new(store.clone());
        let owner = owner();
        let a = agent(&owner, at(0));
        agents
            .create(
                &a,
                10,
                &event(&owner, a.agent_id, AuditAction::AgentCreated, at(0)),
            )
            .await
            .unwrap();
        let c = credential(&a, at(1), None);
        credentials
            .create(
                &c,
                10,
                at(1),
                &event(&owner, a.agent_id, AuditAction::CredentialGenerated, at(1)),
            )
            .await
            .unwrap();
        audit
            .append_all(&[
                event(&owner, a.agent_id, AuditAction::TokenIssued, at(2)),
                event(&owner, a.agent_id, AuditAction::TokenIssued, at(3)),
            ])
            .await
            .unwrap();
        let key = idp_domain::keys::SigningKeyRecord {
            kid: format!("kid-{}", Uuid::new_v4().simple()),
            algorithm: "ES256".to_owned(),
            private_key: "pem".to_owned(),
            succeeds: None,
            created_at: at(0),
            activates_at: at(0),
            revoked_at: None,
            activation_recorded: false,
        };
        assert!(keys.insert_key(&key, &[]).await.unwrap());
        keys.acknowledge_key_set("node-1", 1, at(0)).await.unwrap();
        assert_eq!(verified_events(verify_chain(&audit, &owner).await), 4);

        let mut conn = raw_connection(&role_url).await;
        for statement in [
            "UPDATE audit_events SET action = 'auth.failed'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
            "ALTER TABLE audit_events DISABLE TRIGGER ALL",
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete",
            "DROP TRIGGER audit_events_no_update_or_delete ON audit_events",
        ] {
            let err = diesel::sql_query(statement)
                .execute(&mut conn)
                .await
                .expect_err(statement);
            let message = err.to_string();
            assert!(
                message.contains("permission denied") || message.contains("must be owner"),
                "{statement}: {message}"
            );
        }
        assert_eq!(verified_events(verify_chain(&audit, &owner).await), 4);
        drop((store, conn));
    };
    outcome.await;
    harness.finish().await;
    sql(&mut admin, &format!("DROP ROLE {role}")).await;
}

/// Appends five events of a new owner and answers it.
async fn five_events(audit: &Arc<dyn AuditLog>) -> (Owner, Vec<AuditEvent>) {
    let owner = owner();
    let events: Vec<AuditEvent> = (0..5)
        .map(|i| {
            event(
                &owner,
                AgentId(Uuid::new_v4()),
                AuditAction::TokenIssued,
                at(i),
            )
        })
        .collect();
    audit.append_all(&events).await.unwrap();
    let chain = whole_chain(audit, &owner, 100).await;
    (owner, chain)
}

/// Runs `statements` (`$1` is the owner) with the append-only trigger off,
/// as a superuser bypassing the program would.
async fn tamper(conn: &mut AsyncPgConnection, owner: &Owner, statements: &[&str]) {
    sql(
        conn,
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete",
    )
    .await;
    for statement in statements {
        diesel::sql_query(*statement)
            .bind::<Text, _>(owner.as_str())
            .execute(conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    sql(
        conn,
        "ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_or_delete",
    )
    .await;
}

async fn insert_chained(conn: &mut AsyncPgConnection, event: &AuditEvent) {
    diesel::sql_query(
        "INSERT INTO audit_events (event_id, owner, agent_id, action, outcome, metadata, \
         \"timestamp\", sequence, hash, actor_id, ip_address, user_agent) \
         VALUES ($1, $2, $3, $4, 'success', $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind::<diesel::sql_types::Uuid, _>(event.event_id.0)
    .bind::<Text, _>(event.chain_owner().as_str())
    .bind::<Nullable<diesel::sql_types::Uuid>, _>(event.agent_id.map(|a| a.0))
    .bind::<Text, _>(event.action.as_str())
    .bind::<Jsonb, _>(&event.metadata)
    .bind::<Timestamptz, _>(event.timestamp)
    .bind::<BigInt, _>(i64::try_from(event.sequence.unwrap()).unwrap())
    .bind::<Text, _>(event.hash.as_deref().unwrap())
    .bind::<Nullable<diesel::sql_types::Uuid>, _>(event.actor_id.map(|a| a.0))
    .bind::<Nullable<Text>, _>(event.ip_address.as_deref())
    .bind::<Nullable<Text>, _>(event.user_agent.as_deref())
    .execute(conn)
    .await
    .unwrap();
}

/// Whoever bypasses the program (a superuser with the trigger off) and
/// changes, removes, reorders or adds an event is found out by verifying the
/// chain through the store: the verifier names the first bad sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_found_at_the_first_bad_sequence() {
    let harness = Harness::start().await;
    let audit = harness.audit();
    let mut conn = raw_connection(&harness.db.url).await;

    let (changed, _) = five_events(&audit).await;
    tamper(
        &mut conn,
        &changed,
        &["UPDATE audit_events SET metadata = '{\"forged\": true}' WHERE owner = $1 AND sequence = 3"],
    )
    .await;
    assert_eq!(first_bad(verify_chain(&audit, &changed).await), 3);

    let (deleted, _) = five_events(&audit).await;
    tamper(
        &mut conn,
        &deleted,
        &["DELETE FROM audit_events WHERE owner = $1 AND sequence = 2"],
    )
    .await;
    assert_eq!(first_bad(verify_chain(&audit, &deleted).await), 2);

    let (cut, _) = five_events(&audit).await;
    tamper(
        &mut conn,
        &cut,
        &["DELETE FROM audit_events WHERE owner = $1 AND sequence = 5"],
    )
    .await;
    assert_eq!(
        first_bad(verify_chain(&audit, &cut).await),
        5,
        "a cut tail shows against the recorded head"
    );

    let (swapped, _) = five_events(&audit).await;
    tamper(
        &mut conn,
        &swapped,
        &[
            "UPDATE audit_events SET sequence = -2 WHERE owner = $1 AND sequence = 2",
            "UPDATE audit_events SET sequence = 2 WHERE owner = $1 AND sequence = 4",
            "UPDATE audit_events SET sequence = 4 WHERE owner = $1 AND sequence = -2",
        ],
    )
    .await;
    assert_eq!(first_bad(verify_chain(&audit, &swapped).await), 2);

    // A forged sixth event with a garbage hash, and one hashed correctly:
    // only the recorded head knows the chain ended at 5.
    for correctly_hashed in [false, true] {
        let (extended, chain) = five_events(&audit).await;
        let last = chain.last().unwrap();
        let head = ChainHead {
            sequence: last.sequence.unwrap(),
            hash: last.hash.clone().unwrap(),
        };
        let mut forged = vec![event(
            &extended,
            AgentId(Uuid::new_v4()),
            AuditAction::TokenIssued,
            at(9),
        )];
        link(&head, &mut forged).unwrap();
        if !correctly_hashed {
            forged[0].hash = Some("ab".repeat(32));
        }
        insert_chained(&mut conn, &forged[0]).await;
        assert_eq!(
            unchained(&whole_chain(&audit, &extended, 100).await[5]),
            AuditEvent {
                sequence: None,
                hash: None,
                ..forged[0].clone()
            }
        );
        assert_eq!(
            first_bad(verify_chain(&audit, &extended).await),
            6,
            "correctly hashed: {correctly_hashed}"
        );
    }

    // Nothing of that touched the other chains.
    let (untouched, _) = five_events(&audit).await;
    assert_eq!(verified_events(verify_chain(&audit, &untouched).await), 5);
    drop(conn);
    harness.finish().await;
}

/// Events of `owners` at `at(first..)`, a third of them without agent,
/// actor, address or user agent and with quoted or non-ASCII metadata.
fn varied_events(owners: &[Owner], first: usize, count: usize) -> Vec<AuditEvent> {
    (first..first + count)
        .map(|i| {
            let mut e = event(
                &owners[i % owners.len()],
                AgentId(Uuid::new_v4()),
                AuditAction::TokenIssued,
                at(i64::try_from(i).unwrap()),
            );
            if i % 3 == 0 {
                e.agent_id = None;
                e.actor_id = None;
                e.ip_address = None;
                e.user_agent = None;
                e.metadata = serde_json::json!({"i": i, "quote": "it's \"quoted\"", "u": "é€"});
            }
            e
        })
        .collect()
}

/// Each owner's chain is `sent` (of every owner, in order), field for field,
/// verified, and its head row is its last event.
async fn assert_chains_are(
    audit: &Arc<dyn AuditLog>,
    conn: &mut AsyncPgConnection,
    owners: &[Owner],
    sent: &[AuditEvent],
) {
    for owner in owners {
        let mine: Vec<&AuditEvent> = sent
            .iter()
            .filter(|e| e.owner.as_ref() == Some(owner))
            .collect();
        assert_eq!(
            verified_events(verify_chain(audit, owner).await),
            mine.len() as u64
        );
        let chain = whole_chain(audit, owner, 500).await;
        assert_eq!(chain.len(), mine.len());
        for (stored, sent) in chain.iter().zip(mine) {
            let mut unlinked = stored.clone();
            (unlinked.sequence, unlinked.hash) = (None, None);
            assert_eq!(&unlinked, sent);
        }
        let last = chain.last().unwrap();
        assert_eq!(
            recorded_head(conn, owner).await,
            ChainHead {
                sequence: last.sequence.unwrap(),
                hash: last.hash.clone().unwrap()
            }
        );
    }
}

/// One `append_all` far larger than any group commit (2,500 events of two
/// owners, some without agent, actor, address or user agent) is stored
/// whole, field for field, in one gapless chain per owner: as an owner's
/// first append (the heads read under their locks) and as a later one (in one
/// statement from the heads the store knows).
#[tokio::test]
async fn a_large_batch_is_stored_whole_in_one_insert() {
    let harness = Harness::start().await;
    let audit = harness.audit();
    let mut conn = raw_connection(&harness.db.url).await;
    let owners = [owner(), owner()];
    let first = varied_events(&owners, 0, 2_500);
    audit.append_all(&first).await.unwrap();
    assert_chains_are(&audit, &mut conn, &owners, &first).await;

    let second = varied_events(&owners, 2_500, 2_500);
    audit.append_all(&second).await.unwrap();
    let all: Vec<AuditEvent> = first.into_iter().chain(second).collect();
    assert_chains_are(&audit, &mut conn, &owners, &all).await;
    drop(conn);
    harness.finish().await;
}

/// A store that knows an owner's head goes on from the stored head when
/// something else moved it: another node's append, or an event appended
/// inside another transaction (an agent's registration). Nothing is lost,
/// the chain has no gap or fork and verifies.
#[tokio::test]
async fn a_head_moved_behind_the_stores_back_is_appended_after() {
    let harness = Harness::start().await;
    let audit = harness.audit();
    let other_node: Arc<dyn AuditLog> =
        Arc::new(PgStore::new(connect(&harness.db.url, 2).await.unwrap()));
    let mut conn = raw_connection(&harness.db.url).await;
    let tenant = owner();
    let mut sent = Vec::new();
    let mut append = async |log: &Arc<dyn AuditLog>, n: usize| {
        let batch = varied_events(std::slice::from_ref(&tenant), n * 10, 3);
        log.append_all(&batch).await.unwrap();
        sent.extend(batch);
    };
    append(&audit, 0).await;
    append(&audit, 1).await;
    append(&other_node, 2).await;
    append(&audit, 3).await;
    append(&other_node, 4).await;
    append(&other_node, 5).await;
    append(&audit, 6).await;
    assert_chains_are(&audit, &mut conn, std::slice::from_ref(&tenant), &sent).await;

    let registered = agent(&tenant, at(100));
    let created = event(
        &tenant,
        registered.agent_id,
        AuditAction::AgentCreated,
        at(100),
    );
    harness
        .agents()
        .create(&registered, 10, &created)
        .await
        .unwrap();
    let after = varied_events(std::slice::from_ref(&tenant), 200, 3);
    audit.append_all(&after).await.unwrap();
    let chain = whole_chain(&audit, &tenant, 100).await;
    assert_eq!(chain.len(), sent.len() + 1 + after.len());
    assert_eq!(chain[sent.len()].action, AuditAction::AgentCreated);
    assert_eq!(
        verified_events(verify_chain(&audit, &tenant).await),
        chain.len() as u64
    );
    drop(conn);
    harness.finish().await;
}

/// `audit_append_from_known_heads` called with a head that is not the stored
/// one (a stale guess, or a forger's) refuses the whole batch: no event
/// written, no head moved, for any owner of it.
#[tokio::test]
async fn an_append_from_a_head_that_is_not_the_stored_one_writes_nothing() {
    let harness = Harness::start().await;
    let audit = harness.audit();
    let (tenant, _) = five_events(&audit).await;
    let (other, _) = five_events(&audit).await;
    let mut conn = raw_connection(&harness.db.url).await;
    let stored = recorded_head(&mut conn, &tenant).await;
    let other_head = recorded_head(&mut conn, &other).await;
    let stale = ChainHead {
        sequence: stored.sequence - 1,
        hash: stored.hash.clone(),
    };
    for (tenant_from, label) in [
        (&stale, "a stale sequence"),
        (&other_head, "another chain's head"),
    ] {
        let mut forged = vec![event(
            &tenant,
            AgentId(Uuid::new_v4()),
            AuditAction::TokenIssued,
            at(50),
        )];
        let tenant_to = link(tenant_from, &mut forged).unwrap();
        let mut beside = vec![event(
            &other,
            AgentId(Uuid::new_v4()),
            AuditAction::TokenIssued,
            at(50),
        )];
        let other_to = link(&other_head, &mut beside).unwrap();
        let (a, b) = (&forged[0], &beside[0]);
        let refused = diesel::sql_query(
            "SELECT audit_append_from_known_heads($1, $2, $3, $4, $5, \
             ARRAY[$6, $7]::uuid[], ARRAY[$8, $9], ARRAY[NULL, NULL]::uuid[], ARRAY[NULL, NULL]::uuid[], \
             ARRAY['token.issued', 'token.issued'], ARRAY['success', 'success'], \
             ARRAY[NULL, NULL]::text[], ARRAY[NULL, NULL]::text[], ARRAY['{}', '{}']::jsonb[], \
             ARRAY[$10, $10]::timestamptz[], ARRAY[$11, $12]::bigint[], ARRAY[$13, $14])",
        )
        .bind::<diesel::sql_types::Array<Text>, _>(vec![other.as_str(), tenant.as_str()])
        .bind::<diesel::sql_types::Array<BigInt>, _>(vec![
            i64::try_from(other_head.sequence).unwrap(),
            i64::try_from(tenant_from.sequence).unwrap(),
        ])
        .bind::<diesel::sql_types::Array<Text>, _>(vec![&other_head.hash, &tenant_from.hash])
        .bind::<diesel::sql_types::Array<BigInt>, _>(vec![
            i64::try_from(other_to.sequence).unwrap(),
            i64::try_from(tenant_to.sequence).unwrap(),
        ])
        .bind::<diesel::sql_types::Array<Text>, _>(vec![&other_to.hash, &tenant_to.hash])
        .bind::<diesel::sql_types::Uuid, _>(b.event_id.0)
        .bind::<diesel::sql_types::Uuid, _>(a.event_id.0)
        .bind::<Text, _>(other.as_str())
        .bind::<Text, _>(tenant.as_str())
        .bind::<Timestamptz, _>(a.timestamp)
        .bind::<BigInt, _>(i64::try_from(b.sequence.unwrap()).unwrap())
        .bind::<BigInt, _>(i64::try_from(a.sequence.unwrap()).unwrap())
        .bind::<Text, _>(b.hash.clone().unwrap())
        .bind::<Text, _>(a.hash.clone().unwrap())
        .execute(&mut conn)
        .await
        .expect_err(label)
        .to_string();
        assert!(
            refused.contains("audit chain head moved"),
            "{label}: {refused}"
        );
        assert_eq!(recorded_head(&mut conn, &tenant).await, stored, "{label}");
        assert_eq!(
            recorded_head(&mut conn, &other).await,
            other_head,
            "{label}"
        );
        for owner in [&tenant, &other] {
            assert_eq!(
                verified_events(verify_chain(&audit, owner).await),
                5,
                "{label}"
            );
        }
    }
    drop(conn);
    harness.finish().await;
}
