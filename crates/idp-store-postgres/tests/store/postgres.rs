//! What only the PostgreSQL adapter promises.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use idp_domain::StoreError;
use idp_domain::audit::AuditFilter;
use idp_domain::page::PageRequest;
use idp_domain::ports::{AgentFilter, AgentRepository, HealthCheck};
use idp_domain::values::{AgentId, AuditAction};
use idp_port_tests::store::fixtures::{agent, at, event, owner, public_key_credential, unchained};
use idp_store_postgres::testing::TestDatabase;
use idp_store_postgres::{PgStore, PoolConfig, connect, connect_with, run_migrations};
use uuid::Uuid;

use crate::{Harness, raw_connection, sql};

/// The versions of every embedded migration, in order.
pub(crate) const ALL_MIGRATIONS: [&str; 8] = [
    "20261123000000",
    "20261204000000",
    "20261205000000",
    "20261205010000",
    "20261206000000",
    "20261207000000",
    "20261208000000",
    "20261209000000",
];

/// Nothing listens there.
const UNREACHABLE_URL: &str = "postgres://postgres@127.0.0.1:1/nowhere";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_to_rewrite_audit_history() {
    let harness = Harness::start().await;
    let audit = harness.audit();
    let owner = owner();
    let original = event(
        &owner,
        AgentId(Uuid::new_v4()),
        AuditAction::TokenIssued,
        at(0),
    );
    audit.append(&original).await.unwrap();

    let mut conn = raw_connection(&harness.db.url).await;
    for sql in [
        "UPDATE audit_events SET action = 'auth.failed'",
        "UPDATE audit_events SET metadata = '{}'::jsonb WHERE event_id = event_id",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let err = diesel::sql_query(sql)
            .execute(&mut conn)
            .await
            .expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let stored = audit.find(&owner, original.event_id, at(-1)).await.unwrap();
    assert_eq!(stored.as_ref().map(unchained), Some(original));
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_then_are_idempotent() {
    let db = TestDatabase::create_empty().await.unwrap();
    let applied = run_migrations(&db.url).await.unwrap();
    assert_eq!(applied, ALL_MIGRATIONS);
    assert!(run_migrations(&db.url).await.unwrap().is_empty());
    // The schema works.
    let store = PgStore::new(connect(&db.url, 2).await.unwrap());
    let listed = AgentRepository::list(
        &store,
        &owner(),
        &AgentFilter::default(),
        PageRequest::default(),
    )
    .await
    .unwrap();
    assert_eq!(listed.total, 0);
    drop(store);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let db = TestDatabase::create_empty().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = db.url.clone();
        tasks.spawn(async move { run_migrations(&url).await });
    }
    let mut applied = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        applied.extend(joined.unwrap().expect("every node's migrate succeeds"));
    }
    applied.sort();
    assert_eq!(applied, ALL_MIGRATIONS, "exactly one node applied each");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_database_is_already_migrated() {
    let harness = Harness::start().await;
    assert!(run_migrations(&harness.db.url).await.unwrap().is_empty());
    harness.finish().await;
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_not_a_panic() {
    let Err(err) = connect(UNREACHABLE_URL, 2).await else {
        panic!("connected to nothing")
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        !message.contains("nowhere"),
        "the URL stays out of the message: {message}"
    );

    let err = run_migrations(UNREACHABLE_URL).await.unwrap_err();
    assert!(!format!("{err:#}").contains('\n'), "{err:#}");
}

#[tokio::test]
async fn a_missing_database_is_unavailable() {
    let url = idp_store_postgres::testing::with_database(
        &std::env::var("IDP_TEST_DATABASE_URL")
            .unwrap_or_else(|_| idp_store_postgres::testing::DEFAULT_TEST_DATABASE_URL.to_owned()),
        &format!("missing_{}", Uuid::new_v4().simple()),
    )
    .unwrap();
    let Err(err) = connect(&url, 2).await else {
        panic!("connected to a missing database")
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_pool_smaller_than_two_is_refused() {
    for size in [0, 1] {
        let Err(err) = connect(UNREACHABLE_URL, size).await else {
            panic!("accepted a pool of {size}")
        };
        assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_runs_select_one_and_reports_loss() {
    let harness = Harness::start().await;
    let health: Arc<dyn HealthCheck> = Arc::new(harness.store.clone());
    assert_eq!(health.name(), "database");
    health.check().await.unwrap();

    let Harness { store, db } = harness;
    db.drop_db().await;
    let err = health.check().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_unavailable_not_a_hang() {
    let db = TestDatabase::create().await.unwrap();
    let config = PoolConfig {
        max_size: 2,
        wait_timeout: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let store = PgStore::new(connect_with(&db.url, config).await.unwrap());
    let first = store.pool().get().await.unwrap();
    let second = store.pool().get().await.unwrap();
    let err = store.check().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    drop((first, second));
    store.check().await.unwrap();
    drop(store);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_unknown_errors_not_panics() {
    let harness = Harness::start().await;
    let agents = harness.agents();
    let audit = harness.audit();
    let owner = owner();
    let good = agent(&owner, at(0));
    agents
        .create(
            &good,
            10,
            &event(&owner, good.agent_id, AuditAction::AgentCreated, at(0)),
        )
        .await
        .unwrap();

    let mut conn = raw_connection(&harness.db.url).await;
    diesel::sql_query("UPDATE agents SET version = 'not-a-version' WHERE agent_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(good.agent_id.0)
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(
        "INSERT INTO audit_events (event_id, owner, action, outcome, \"timestamp\") \
         VALUES ($1, $2, 'agent.exploded', 'success', now())",
    )
    .bind::<diesel::sql_types::Uuid, _>(Uuid::new_v4())
    .bind::<diesel::sql_types::Text, _>(owner.as_str())
    .execute(&mut conn)
    .await
    .unwrap();

    let err = agents.find(&owner, good.agent_id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");
    let err = agents
        .list(&owner, &AgentFilter::default(), PageRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");
    let err = audit
        .list(&owner, &AuditFilter::default(), PageRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");
    harness.finish().await;
}

/// A stored public key that the domain would refuse (private material, a
/// thumbprint that is not its own) or a resource that is no absolute URI is a
/// corrupt row: `Unknown`, never a panic or a key that was not registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_public_keys_and_resources_are_unknown_errors() {
    let harness = Harness::start().await;
    let agents = harness.agents();
    let credentials = harness.credentials();
    let owner = owner();
    let a = agent(&owner, at(0));
    let e = event(&owner, a.agent_id, AuditAction::AgentCreated, at(0));
    agents.create(&a, 10, &e).await.unwrap();
    let mut conn = raw_connection(&harness.db.url).await;
    let corruptions = [
        "UPDATE credentials SET public_jwk = '{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}' \
         WHERE credential_id = $1",
        "UPDATE credentials SET public_jwk = 'not json' WHERE credential_id = $1",
        "UPDATE credentials SET jwk_thumbprint = 'forged' WHERE credential_id = $1",
    ];
    for (i, corruption) in corruptions.into_iter().enumerate() {
        let k = public_key_credential(&a, at(1), None);
        let e = event(&owner, a.agent_id, AuditAction::CredentialGenerated, at(1));
        credentials.create(&k, 10, at(1), &e).await.unwrap();
        diesel::sql_query(corruption)
            .bind::<diesel::sql_types::Uuid, _>(k.credential_id.0)
            .execute(&mut conn)
            .await
            .unwrap();
        let err = credentials
            .find(&owner, a.agent_id, k.credential_id)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unknown(_)), "case {i}: {err:?}");
        let err = credentials.find_public_keys(a.agent_id).await.unwrap_err();
        assert!(matches!(err, StoreError::Unknown(_)), "case {i}: {err:?}");
        diesel::sql_query("DELETE FROM credentials WHERE credential_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(k.credential_id.0)
            .execute(&mut conn)
            .await
            .unwrap();
    }

    diesel::sql_query("UPDATE agents SET resources = '{\"relative/path\"}' WHERE agent_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(a.agent_id.0)
        .execute(&mut conn)
        .await
        .unwrap();
    let err = agents
        .find_for_authentication(a.agent_id)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");
    harness.finish().await;
}

/// Stored delegates the domain would refuse (the same id twice, more than the
/// most an agent may name) are a corrupt row: `Unknown`, never a panic or an
/// agent with such a list. A NULL element the database itself refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_delegates_are_unknown_errors() {
    let harness = Harness::start().await;
    let agents = harness.agents();
    let owner = owner();
    let a = agent(&owner, at(0));
    let e = event(&owner, a.agent_id, AuditAction::AgentCreated, at(0));
    agents.create(&a, 10, &e).await.unwrap();
    let mut conn = raw_connection(&harness.db.url).await;

    let err = diesel::sql_query(
        "UPDATE agents SET delegates = ARRAY[gen_random_uuid(), NULL] WHERE agent_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(a.agent_id.0)
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("agents_delegates_check"), "{err}");

    let id = Uuid::new_v4();
    let too_many: Vec<Uuid> = (0..=idp_domain::values::MAX_DELEGATES)
        .map(|_| Uuid::new_v4())
        .collect();
    for (i, corruption) in [vec![id, id], too_many].into_iter().enumerate() {
        diesel::sql_query("UPDATE agents SET delegates = $1 WHERE agent_id = $2")
            .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(corruption)
            .bind::<diesel::sql_types::Uuid, _>(a.agent_id.0)
            .execute(&mut conn)
            .await
            .unwrap();
        let err = agents
            .find_for_authentication(a.agent_id)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unknown(_)), "case {i}: {err:?}");
        let err = agents
            .list(&owner, &AgentFilter::default(), PageRequest::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unknown(_)), "case {i}: {err:?}");
    }
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_uniqueness_is_enforced_by_the_database() {
    let harness = Harness::start().await;
    let owner = owner();
    let a = agent(&owner, at(0));
    harness
        .agents()
        .create(
            &a,
            10,
            &event(&owner, a.agent_id, AuditAction::AgentCreated, at(0)),
        )
        .await
        .unwrap();
    let mut conn = raw_connection(&harness.db.url).await;
    let err = diesel::sql_query(
        "INSERT INTO agents (agent_id, email, agent_type, version, capabilities, owner, \
         deployment_env, status, created_at, updated_at) \
         VALUES ($1, upper($2), 'custom', '1.0.0', ARRAY['a:b'], 'other', 'staging', 'active', now(), now())",
    )
    .bind::<diesel::sql_types::Uuid, _>(Uuid::new_v4())
    .bind::<diesel::sql_types::Text, _>(a.email.as_str())
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("agents_email_normalized_key"),
        "{err}"
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_plan_each_statement_once() {
    let db = TestDatabase::create().await.unwrap();
    let store = PgStore::new(connect(&db.url, 4).await.unwrap());
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        plan_cache_mode: String,
    }
    let mut conn = store.pool().get().await.unwrap();
    let setting: Setting = diesel::sql_query("SHOW plan_cache_mode")
        .get_result(&mut *conn)
        .await
        .unwrap();
    assert_eq!(setting.plan_cache_mode, "force_generic_plan");
    drop(conn);
    drop(store);
    db.drop_db().await;
}

/// The pool hands out the connection given back last (LIFO): under load the
/// audit writer's commits keep landing on the same warm backend instead of
/// taking turns over every idle one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_hands_out_the_connection_given_back_last() {
    let db = TestDatabase::create().await.unwrap();
    let store = PgStore::new(connect(&db.url, 4).await.unwrap());
    #[derive(diesel::QueryableByName)]
    struct Backend {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    async fn backend(conn: &mut diesel_async::AsyncPgConnection) -> i32 {
        let backend: Backend = diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result(conn)
            .await
            .unwrap();
        backend.pid
    }
    let mut first = store.pool().get().await.unwrap();
    let mut second = store.pool().get().await.unwrap();
    let first_pid = backend(&mut first).await;
    let second_pid = backend(&mut second).await;
    assert_ne!(first_pid, second_pid);
    // `first` goes back before `second`: FIFO would hand `first` out next.
    drop(first);
    drop(second);
    for _ in 0..3 {
        let mut conn = store.pool().get().await.unwrap();
        assert_eq!(backend(&mut conn).await, second_pid);
    }
    drop(store);
    db.drop_db().await;
}

/// One line of `EXPLAIN`'s text output.
#[derive(diesel::QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The listing indexes are ascending (migration `2026-12-09-000000`: new
/// events land on the rightmost leaf); a page, newest first, must still come
/// from one of them read backwards, never from a sort of the owner's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_pages_read_their_index_backwards_without_sorting() {
    let harness = Harness::start().await;
    let mut conn = raw_connection(&harness.db.url).await;
    // 4,000 events of one owner over 20 agents and 8 actions, 1,000 of
    // another owner: enough for the planner to weigh the indexes.
    for (owner, events) in [("plan-owner", 4000), ("plan-neighbour", 1000)] {
        let insert = format!(
            "INSERT INTO audit_events (event_id, owner, agent_id, action, outcome, metadata, \
             \"timestamp\", sequence, hash) \
             SELECT gen_random_uuid(), '{owner}', \
                    ('00000000-0000-7000-8000-' || lpad((g % 20)::text, 12, '0'))::uuid, \
                    'action.' || (g % 8), 'success', '{{}}', \
                    now() - make_interval(secs => g), g, md5(g::text) \
             FROM generate_series(1, {events}) AS g"
        );
        sql(&mut conn, &insert).await;
    }
    sql(&mut conn, "ANALYZE audit_events").await;
    // The shape of `AuditLog::list`'s page query; the service always bounds
    // it below by the retention window.
    let page = |condition: &str| {
        format!(
            "EXPLAIN SELECT * FROM audit_events \
             WHERE owner = 'plan-owner' AND \"timestamp\" >= now() - interval '7 days' {condition} \
             ORDER BY \"timestamp\" DESC, event_id DESC LIMIT 20 OFFSET 40"
        )
    };
    for (condition, index) in [
        ("", "audit_events_owner_time_idx"),
        (
            "AND agent_id = '00000000-0000-7000-8000-000000000007'",
            "audit_events_owner_agent_time_idx",
        ),
        (
            "AND action = 'action.3'",
            "audit_events_owner_action_time_idx",
        ),
    ] {
        let plan: Vec<String> = diesel::sql_query(page(condition))
            .load::<PlanLine>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains(&format!(
                "Index Scan Backward using {index} on audit_events"
            )),
            "{condition:?}:\n{plan}"
        );
        assert!(!plan.contains("Sort"), "{condition:?}:\n{plan}");
    }
    drop(conn);
    harness.finish().await;
}
