//! The audit hash chain and the signing keys on SQLite: the backfill of a file
//! written before the chain existed, tamper detection on the stored chain,
//! the append-only triggers after the migration, concurrent appenders.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{RunQueryDsl, SqliteConnection};
use diesel_migrations::MigrationHarness;
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::audit_chain::{ChainVerifier, Verification, link};
use idp_domain::ports::{AuditLog, SigningKeyStore};
use idp_domain::values::{AgentId, AuditAction, Owner};
use idp_port_tests::store::fixtures::{at, event, owner};
use idp_store_sqlite::testing::TestDataDir;
use idp_store_sqlite::{MIGRATIONS, SqliteConfig, SqliteStore};
use uuid::Uuid;

use crate::Harness;
use crate::sqlite::{FORGED_HASH, KEY_ROTATION_VERSION, signing_key};

/// Verifies `owner`'s stored chain as an auditor would: in pages (of 3, so
/// paging is exercised) against the recorded head.
async fn verify(audit: &dyn AuditLog, owner: &Owner) -> Verification {
    let head = audit.chain_head(owner).await.unwrap();
    let mut verifier = ChainVerifier::new(head);
    let mut from = 1;
    loop {
        let page = audit.chain_page(owner, from, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.sequence.unwrap() + 1;
        page.iter().for_each(|e| verifier.feed(e));
    }
    verifier.finish()
}

/// Every stored event of `owner`'s chain, in sequence order.
async fn whole_chain(audit: &dyn AuditLog, owner: &Owner) -> Vec<AuditEvent> {
    audit.chain_page(owner, 1, 10_000).await.unwrap()
}

fn first_bad(verification: Verification) -> u64 {
    match verification {
        Verification::Broken { bad, .. } => bad.first_bad_sequence,
        Verification::Verified { events, .. } => panic!("verified {events} events"),
    }
}

fn verified_events(verification: Verification) -> u64 {
    match verification {
        Verification::Verified { events, .. } => events,
        Verification::Broken { bad, .. } => panic!("broken: {bad:?}"),
    }
}

#[derive(diesel::QueryableByName)]
struct TriggerSql {
    #[diesel(sql_type = Nullable<Text>)]
    sql: Option<String>,
}

fn trigger_sql(conn: &mut SqliteConnection, name: &str) -> Option<String> {
    diesel::sql_query("SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?")
        .bind::<Text, _>(name)
        .get_result::<TriggerSql>(conn)
        .ok()
        .and_then(|row| row.sql)
}

/// Inserts an event the way the schema before the chain stored it.
fn insert_old_event(
    conn: &mut SqliteConnection,
    id: Uuid,
    owner: Option<&str>,
    action: &str,
    millis: i64,
) {
    diesel::sql_query(
        "INSERT INTO audit_events (event_id, owner, agent_id, action, outcome, metadata, \"timestamp\") \
         VALUES (?, ?, ?, ?, 'success', '{\"n\": 1.5, \"list\": [\"a\"]}', ?)",
    )
    .bind::<Text, _>(id.to_string())
    .bind::<Nullable<Text>, _>(owner)
    .bind::<Text, _>(Uuid::new_v4().to_string())
    .bind::<Text, _>(action)
    .bind::<BigInt, _>(millis)
    .execute(conn)
    .unwrap();
}

fn millis(seconds: i64) -> i64 {
    at(seconds).timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_before_the_chain_is_linked_when_opened() {
    let dir = TestDataDir::create().unwrap();
    let mut conn = dir.raw_connection().unwrap();
    // The schema as the release before the chain left it.
    conn.run_next_migration(MIGRATIONS).unwrap();
    conn.run_next_migration(MIGRATIONS).unwrap();
    let update_trigger = trigger_sql(&mut conn, "audit_events_no_update").unwrap();

    // Inserted out of order; two of a tenant share an instant (the event id
    // breaks the tie), two have no owner.
    let low = Uuid::from_u128(1);
    let high = Uuid::from_u128(u128::MAX - 1);
    let (a, b) = ("tenant-a", "tenant-b");
    let tenant_a = [
        (Uuid::new_v4(), 30),
        (high, 10),
        (Uuid::new_v4(), 50),
        (low, 10),
        (Uuid::new_v4(), 5),
    ];
    for (id, seconds) in tenant_a {
        insert_old_event(&mut conn, id, Some(a), "agent.updated", millis(seconds));
    }
    let tenant_b = [(Uuid::new_v4(), 7)];
    for (id, seconds) in tenant_b {
        insert_old_event(&mut conn, id, Some(b), "token.issued", millis(seconds));
    }
    let ownerless = [(Uuid::new_v4(), 9), (Uuid::new_v4(), 2)];
    for (id, seconds) in ownerless {
        insert_old_event(&mut conn, id, None, "auth.failed", millis(seconds));
    }
    // One signing key per algorithm, as the old schema kept them.
    conn.batch_execute(
        "INSERT INTO signing_keys (algorithm, kid, private_pem, created_at) VALUES \
         ('ES256', 'es-kid', 'es-pem', 2000), ('RS256', 'rs-kid', 'rs-pem', 1000)",
    )
    .unwrap();
    drop(conn);

    let store = dir.open(SqliteConfig::with_pool_size(2)).await.unwrap();
    let audit: &dyn AuditLog = &store;
    let owners = audit.chain_owners().await.unwrap();
    let (a, b) = (Owner::parse(a).unwrap(), Owner::parse(b).unwrap());
    assert_eq!(owners, vec![Owner::system(), a.clone(), b.clone()]);

    for (owner, stored) in [
        (&a, &tenant_a[..]),
        (&b, &tenant_b[..]),
        (&Owner::system(), &ownerless[..]),
    ] {
        let mut expected = stored.to_vec();
        expected.sort_by_key(|(id, seconds)| (*seconds, *id));
        let chain = whole_chain(audit, owner).await;
        assert_eq!(
            chain.iter().map(|e| e.event_id.0).collect::<Vec<_>>(),
            expected.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            "{owner}: by timestamp, then event id"
        );
        assert_eq!(
            chain.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            (1..=expected.len() as u64).map(Some).collect::<Vec<_>>()
        );
        assert!(chain.iter().all(|e| e.owner.as_ref() == Some(owner)));
        assert_eq!(
            verified_events(verify(audit, owner).await),
            expected.len() as u64
        );
    }
    let head_a = audit.chain_head(&a).await.unwrap();
    assert_eq!(head_a.as_ref().map(|h| h.sequence), Some(5));

    // The keys: re-keyed by kid, the later one succeeding the earlier.
    let keys = store.list_keys().await.unwrap();
    let summary: Vec<_> = keys
        .iter()
        .map(|k| {
            (
                k.kid.as_str(),
                k.algorithm.as_str(),
                k.private_key.as_str(),
                k.succeeds.as_deref(),
                k.activates_at == k.created_at,
                k.revoked_at,
                k.activation_recorded,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("rs-kid", "RS256", "rs-pem", None, true, None, true),
            (
                "es-kid",
                "ES256",
                "es-pem",
                Some("rs-kid"),
                true,
                None,
                true
            ),
        ]
    );
    assert_eq!(store.key_set_version().await.unwrap(), 0);
    drop(store);

    // The UPDATE trigger is back, exactly as it was, and refuses again.
    let mut conn = dir.raw_connection().unwrap();
    assert_eq!(
        trigger_sql(&mut conn, "audit_events_no_update").as_deref(),
        Some(update_trigger.as_str())
    );
    let err = diesel::sql_query("UPDATE audit_events SET sequence = sequence + 100")
        .execute(&mut conn)
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    drop(conn);

    // Opening again links nothing; appending continues the chain.
    let store = dir.open(SqliteConfig::with_pool_size(2)).await.unwrap();
    let audit: &dyn AuditLog = &store;
    assert_eq!(audit.chain_head(&a).await.unwrap(), head_a);
    let next = event(
        &a,
        AgentId(Uuid::new_v4()),
        AuditAction::AgentUpdated,
        at(1),
    );
    audit.append(&next).await.unwrap();
    let chain = whole_chain(audit, &a).await;
    assert_eq!(chain.len(), 6);
    assert_eq!(chain[5].event_id, next.event_id);
    assert_eq!(chain[5].sequence, Some(6));
    assert_eq!(verified_events(verify(audit, &a).await), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_migrated_by_an_older_process_is_linked_on_the_next_open() {
    // The backfill runs at every open, not only with the migration: a file
    // holding unlinked events (here: the triggers forced by hand) is linked.
    let harness = Harness::start().await;
    let owner = owner();
    let audit = harness.audit();
    audit
        .append(&event(
            &owner,
            AgentId(Uuid::new_v4()),
            AuditAction::AgentCreated,
            at(0),
        ))
        .await
        .unwrap();
    let mut conn = harness.dir.raw_connection().unwrap();
    conn.batch_execute("DROP TRIGGER audit_events_chained")
        .unwrap();
    insert_old_event(
        &mut conn,
        Uuid::new_v4(),
        Some(owner.as_str()),
        "agent.updated",
        millis(9),
    );
    let Harness { store, dir } = harness;
    drop(store);
    let store = dir.open(SqliteConfig::with_pool_size(2)).await.unwrap();
    let chain = whole_chain(&store, &owner).await;
    assert_eq!(chain.len(), 2);
    assert_eq!(verified_events(verify(&store, &owner).await), 2);
    drop(conn);
}

/// Five events of a fresh owner, appended through the store, and a raw
/// connection with the append-only triggers dropped (as someone editing the
/// file by hand).
async fn tamperable() -> (Harness, Owner, Vec<AuditEvent>, SqliteConnection) {
    let harness = Harness::start().await;
    let owner = owner();
    let events: Vec<_> = (0..5)
        .map(|i| {
            event(
                &owner,
                AgentId(Uuid::new_v4()),
                AuditAction::AgentUpdated,
                at(i),
            )
        })
        .collect();
    harness.audit().append_all(&events).await.unwrap();
    assert_eq!(verified_events(verify(&*harness.audit(), &owner).await), 5);
    let mut conn = harness.dir.raw_connection().unwrap();
    conn.batch_execute("DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;")
        .unwrap();
    (harness, owner, events, conn)
}

fn tamper(conn: &mut SqliteConnection, owner: &Owner, sql: &str) {
    let changed = diesel::sql_query(sql)
        .bind::<Text, _>(owner.as_str())
        .execute(conn)
        .unwrap();
    assert!(changed >= 1, "{sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_field_breaks_the_chain_at_its_event() {
    let (harness, owner, _, mut conn) = tamperable().await;
    tamper(
        &mut conn,
        &owner,
        "UPDATE audit_events SET metadata = '{\"forged\": true}' WHERE owner = ? AND sequence = 3",
    );
    assert_eq!(first_bad(verify(&*harness.audit(), &owner).await), 3);
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_timestamp_breaks_the_chain_at_its_event() {
    let (harness, owner, _, mut conn) = tamperable().await;
    tamper(
        &mut conn,
        &owner,
        "UPDATE audit_events SET \"timestamp\" = \"timestamp\" + 1 WHERE owner = ? AND sequence = 4",
    );
    assert_eq!(first_bad(verify(&*harness.audit(), &owner).await), 4);
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_event_breaks_the_chain_at_its_sequence() {
    let (harness, owner, _, mut conn) = tamperable().await;
    tamper(
        &mut conn,
        &owner,
        "DELETE FROM audit_events WHERE owner = ? AND sequence = 2",
    );
    assert_eq!(first_bad(verify(&*harness.audit(), &owner).await), 2);
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_tail_is_caught_by_the_recorded_head() {
    let (harness, owner, _, mut conn) = tamperable().await;
    tamper(
        &mut conn,
        &owner,
        "DELETE FROM audit_events WHERE owner = ? AND sequence >= 4",
    );
    assert_eq!(first_bad(verify(&*harness.audit(), &owner).await), 4);
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_sequences_break_the_chain_at_the_first_of_them() {
    let (harness, owner, _, mut conn) = tamperable().await;
    for sql in [
        "UPDATE audit_events SET sequence = 1000 WHERE owner = ? AND sequence = 2",
        "UPDATE audit_events SET sequence = 2 WHERE owner = ? AND sequence = 4",
        "UPDATE audit_events SET sequence = 4 WHERE owner = ? AND sequence = 1000",
    ] {
        tamper(&mut conn, &owner, sql);
    }
    assert_eq!(first_bad(verify(&*harness.audit(), &owner).await), 2);
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_event_is_caught_whether_or_not_its_hash_links() {
    let (harness, owner, _, mut conn) = tamperable().await;
    let audit = harness.audit();
    let head = audit.chain_head(&owner).await.unwrap().unwrap();

    // Correctly linked after the real head: only the recorded head tells.
    let mut forged = event(
        &owner,
        AgentId(Uuid::new_v4()),
        AuditAction::AgentDecommissioned,
        at(9),
    );
    // Only the columns the INSERT below writes.
    (
        forged.agent_id,
        forged.actor_id,
        forged.ip_address,
        forged.user_agent,
    ) = (None, None, None, None);
    let mut forged = vec![forged];
    let forged_head = link(&head, &mut forged).unwrap();
    assert_eq!(forged_head.sequence, 6);
    let insert = |conn: &mut SqliteConnection, e: &AuditEvent| {
        diesel::sql_query(
            "INSERT INTO audit_events (event_id, owner, action, outcome, metadata, \"timestamp\", sequence, hash) \
             VALUES (?, ?, ?, 'success', ?, ?, ?, ?)",
        )
        .bind::<Text, _>(e.event_id.0.to_string())
        .bind::<Text, _>(owner.as_str())
        .bind::<Text, _>(e.action.as_str())
        .bind::<Text, _>(e.metadata.to_string())
        .bind::<BigInt, _>(e.timestamp.timestamp_millis())
        .bind::<BigInt, _>(i64::try_from(e.sequence.unwrap()).unwrap())
        .bind::<Text, _>(e.hash.clone().unwrap())
        .execute(conn)
        .unwrap();
    };
    insert(&mut conn, &forged[0]);
    let verification = verify(&*audit, &owner).await;
    let Verification::Broken { events, bad } = verification else {
        panic!("{verification:?}")
    };
    // Its hash links, but it lies past the recorded head: it is named.
    assert_eq!(
        (events, bad.first_bad_sequence, bad.event_id),
        (6, 6, Some(forged[0].event_id.to_string()))
    );

    // With a hash that does not link: the event itself is named.
    let mut badly = event(
        &owner,
        AgentId(Uuid::new_v4()),
        AuditAction::AgentDecommissioned,
        at(10),
    );
    badly.sequence = Some(7);
    badly.hash = Some(FORGED_HASH.to_owned());
    insert(&mut conn, &badly);
    conn.batch_execute("DELETE FROM audit_events WHERE sequence = 6")
        .unwrap();
    let verification = verify(&*audit, &owner).await;
    let Verification::Broken { bad, .. } = verification else {
        panic!("{verification:?}")
    };
    assert_eq!(bad.first_bad_sequence, 6);
    assert_eq!(bad.event_id, Some(badly.event_id.to_string()));
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_heads_are_not_audit_events() {
    // Moving the recorded head forward by hand is caught too: the stored
    // chain stops short of it.
    let (harness, owner, _, mut conn) = tamperable().await;
    tamper(
        &mut conn,
        &owner,
        "UPDATE audit_heads SET sequence = 9 WHERE owner = ?",
    );
    assert_eq!(first_bad(verify(&*harness.audit(), &owner).await), 6);
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_append_only_triggers_refuse_changes_to_the_chain() {
    let harness = Harness::start().await;
    let owner = owner();
    let audit = harness.audit();
    for i in 0..3 {
        audit
            .append(&event(
                &owner,
                AgentId(Uuid::new_v4()),
                AuditAction::TokenIssued,
                at(i),
            ))
            .await
            .unwrap();
    }
    let mut conn = harness.dir.raw_connection().unwrap();
    for sql in [
        "UPDATE audit_events SET sequence = 10 WHERE sequence = 3",
        "UPDATE audit_events SET hash = NULL",
        "UPDATE audit_events SET owner = '_system'",
        "DELETE FROM audit_events WHERE sequence = 3",
        "DELETE FROM audit_events",
    ] {
        let err = diesel::sql_query(sql).execute(&mut conn).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(verified_events(verify(&*audit, &owner).await), 3);
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_make_one_gapless_chain_per_owner() {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let dir = TestDataDir::create().unwrap();
    let config = SqliteConfig::with_pool_size(4);
    // Two stores on one file, as two processes would use it.
    let stores = [
        dir.open(config).await.unwrap(),
        dir.open(config).await.unwrap(),
    ];
    let owner = owner();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store: SqliteStore = stores[task % 2].clone();
        let owner = owner.clone();
        tasks.spawn(async move {
            for i in 0..EACH {
                let mut e = event(
                    &owner,
                    AgentId(Uuid::new_v4()),
                    AuditAction::TokenIssued,
                    at(0),
                );
                if i % 5 == 0 {
                    e.owner = None;
                }
                if i % 2 == 0 {
                    store.append(&e).await.unwrap();
                } else {
                    let other = event(
                        &owner,
                        AgentId(Uuid::new_v4()),
                        AuditAction::TokenIssued,
                        at(1),
                    );
                    store.append_all(&[e, other]).await.unwrap();
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let audit: &dyn AuditLog = &stores[0];
    // Per task: 25 events, 12 of them with a second one; every fifth has no owner.
    let system = TASKS * EACH.div_ceil(5);
    let tenant = TASKS * (EACH + EACH / 2) - system;
    for (owner, expected) in [(&owner, tenant), (&Owner::system(), system)] {
        let chain = whole_chain(audit, owner).await;
        assert_eq!(
            chain
                .iter()
                .map(|e| e.sequence.unwrap())
                .collect::<Vec<_>>(),
            (1..=expected as u64).collect::<Vec<_>>(),
            "{owner}"
        );
        assert_eq!(verified_events(verify(audit, owner).await), expected as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_leaves_the_chain_untouched() {
    let harness = Harness::start().await;
    let owner = owner();
    let audit = harness.audit();
    let first = event(
        &owner,
        AgentId(Uuid::new_v4()),
        AuditAction::TokenIssued,
        at(0),
    );
    audit.append(&first).await.unwrap();
    let head = audit.chain_head(&owner).await.unwrap();
    // A batch with an existing event id stores none of it, head included.
    let fresh = event(
        &owner,
        AgentId(Uuid::new_v4()),
        AuditAction::TokenIssued,
        at(1),
    );
    audit.append_all(&[fresh, first]).await.unwrap_err();
    assert_eq!(audit.chain_head(&owner).await.unwrap(), head);
    assert_eq!(verified_events(verify(&*audit, &owner).await), 1);
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_rotations_from_two_stores_store_one_successor() {
    let dir = TestDataDir::create().unwrap();
    let config = SqliteConfig::with_pool_size(4);
    let stores = [
        dir.open(config).await.unwrap(),
        dir.open(config).await.unwrap(),
    ];
    assert!(
        stores[0]
            .insert_key(&signing_key("k0", None, 0), &[])
            .await
            .unwrap()
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let store = stores[i % 2].clone();
        tasks.spawn(async move {
            let mut e = event(
                &owner(),
                AgentId(Uuid::new_v4()),
                AuditAction::TokenIssued,
                at(0),
            );
            e.owner = None;
            store
                .insert_key(&signing_key(&format!("k1-{i}"), Some("k0"), 10), &[e])
                .await
                .unwrap()
        });
    }
    let mut won = 0;
    while let Some(joined) = tasks.join_next().await {
        won += usize::from(joined.unwrap());
    }
    assert_eq!(won, 1);
    let keys = stores[1].list_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(stores[0].key_set_version().await.unwrap(), 2);
    // Only the winner's event was written.
    let system = whole_chain(&stores[0], &Owner::system()).await;
    assert_eq!(system.len(), 1);

    // A rewrap that finds another value stores none of its replacements.
    let err = stores[0]
        .replace_private_keys(&[
            (
                "k0".to_owned(),
                keys[0].private_key.clone(),
                "sealed-0".to_owned(),
            ),
            (
                keys[1].kid.clone(),
                "stale".to_owned(),
                "sealed-1".to_owned(),
            ),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(stores[0].list_keys().await.unwrap(), keys);
    assert_eq!(stores[0].key_set_version().await.unwrap(), 2);

    // The database itself holds one live successor per key.
    let mut conn = dir.raw_connection().unwrap();
    let err = diesel::sql_query(
        "INSERT INTO signing_keys (kid, algorithm, private_key, succeeds, created_at, activates_at, activation_recorded) \
         VALUES ('rogue', 'RS256', 'pem', 'k0', 0, 0, 0)",
    )
    .execute(&mut conn)
    .unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    // The migration that made this index is recorded as applied.
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let applied: Vec<Version> =
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations ORDER BY version")
            .load(&mut conn)
            .unwrap();
    assert!(applied.iter().any(|v| v.version == KEY_ROTATION_VERSION));
}
