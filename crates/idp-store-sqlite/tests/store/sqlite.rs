//! What only the SQLite adapter promises.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{RunQueryDsl, SqliteConnection};
use idp_domain::StoreError;
use idp_domain::audit::{AuditEvent, AuditFilter};
use idp_domain::keys::SigningKeyRecord;
use idp_domain::page::PageRequest;
use idp_domain::ports::{
    AgentFilter, AgentRepository, AuditLog, CredentialRepository, HealthCheck, RevokedToken,
    RevokedTokenStore, SigningKeyStore,
};
use idp_domain::values::{AgentId, AuditAction, CredentialStatus, Delegates, Resources, TokenId};
use idp_port_tests::store::fixtures::{agent, at, credential, event, owner, public_key_credential};
use idp_store_sqlite::testing::TestDataDir;
use idp_store_sqlite::{
    DATABASE_FILE_NAME, InstanceLockError, LOCK_FILE_NAME, SqliteConfig, SqliteStore,
    lock_data_dir, open, run_migrations,
};
use uuid::Uuid;

use crate::Harness;

/// The version of `migrations/sqlite`'s first migration, the same as PostgreSQL's.
const INIT_VERSION: &str = "20261123000000";
/// The version of the migration that writes the audit table's planner statistics.
const AUDIT_STATISTICS_VERSION: &str = "20261202000000";
/// The version of the migration of key rotation and the audit chain.
pub(crate) const KEY_ROTATION_VERSION: &str = "20261204000000";
/// The version of the migration of public-key credentials, resources and DPoP.
pub(crate) const PUBLIC_KEYS_VERSION: &str = "20261205000000";
/// The version of the migration of agents' delegates.
pub(crate) const DELEGATES_VERSION: &str = "20261205010000";
/// The version of the migration of token exchange (the index of exchanges by actor).
pub(crate) const TOKEN_EXCHANGE_VERSION: &str = "20261206000000";

/// Every version of `migrations/sqlite`, in the order they apply.
fn all_versions() -> Vec<String> {
    vec![
        INIT_VERSION.to_owned(),
        AUDIT_STATISTICS_VERSION.to_owned(),
        KEY_ROTATION_VERSION.to_owned(),
        PUBLIC_KEYS_VERSION.to_owned(),
        DELEGATES_VERSION.to_owned(),
        TOKEN_EXCHANGE_VERSION.to_owned(),
    ]
}

/// `event` without what the store adds (its place in the chain), to compare
/// a stored event with the one appended.
pub(crate) fn unchained(mut event: AuditEvent) -> AuditEvent {
    event.sequence = None;
    event.hash = None;
    event
}

/// A signing key of the given kid, successor and instants (in seconds of `at`).
pub(crate) fn signing_key(kid: &str, succeeds: Option<&str>, activates: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_owned(),
        algorithm: "RS256".to_owned(),
        private_key: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n".to_owned(),
        succeeds: succeeds.map(str::to_owned),
        created_at: at(0),
        activates_at: at(activates),
        revoked_at: None,
        activation_recorded: false,
    }
}

/// A well-formed hash that chains nothing.
pub(crate) const FORGED_HASH: &str =
    "abababababababababababababababababababababababababababababababab";

fn page_of_100() -> PageRequest {
    PageRequest::new(Some(1), Some(100)).unwrap()
}

fn execute(conn: &mut SqliteConnection, sql: &str) -> Result<usize, diesel::result::Error> {
    diesel::sql_query(sql).execute(conn)
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut SqliteConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).unwrap().n
}

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
    let id = original.event_id.0.to_string();

    // As the sqlite3 shell would: a plain connection, none of the store's set-up.
    let mut conn = harness.dir.raw_connection().unwrap();
    for sql in [
        "UPDATE audit_events SET action = 'auth.failed'".to_owned(),
        "UPDATE audit_events SET metadata = '{}' WHERE event_id = event_id".to_owned(),
        "DELETE FROM audit_events".to_owned(),
        format!("DELETE FROM audit_events WHERE event_id = '{id}'"),
        format!(
            "INSERT OR REPLACE INTO audit_events (event_id, owner, action, outcome, \"timestamp\", \
             sequence, hash) VALUES ('{id}', 'x', 'forged', 'success', 0, 1, '{FORGED_HASH}')"
        ),
        format!(
            "REPLACE INTO audit_events (event_id, owner, action, outcome, \"timestamp\", \
             sequence, hash) VALUES ('{id}', 'x', 'forged', 'success', 0, 1, '{FORGED_HASH}')"
        ),
        format!(
            "INSERT INTO audit_events (event_id, owner, action, outcome, \"timestamp\", \
             sequence, hash) VALUES ('{id}', 'x', 'forged', 'success', 0, 1, '{FORGED_HASH}') \
             ON CONFLICT (event_id) DO UPDATE SET action = excluded.action"
        ),
    ] {
        let err = execute(&mut conn, &sql).expect_err(&sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // A new event must be chained: owner, sequence and hash.
    for (owner, sequence, hash) in [
        ("NULL", "1", format!("'{FORGED_HASH}'")),
        ("'x'", "NULL", format!("'{FORGED_HASH}'")),
        ("'x'", "1", "NULL".to_owned()),
    ] {
        let sql = format!(
            "INSERT INTO audit_events (event_id, owner, action, outcome, \"timestamp\", sequence, hash) \
             VALUES ('{}', {owner}, 'forged', 'success', 0, {sequence}, {hash})",
            Uuid::new_v4()
        );
        let err = execute(&mut conn, &sql).expect_err(&sql);
        assert!(err.to_string().contains("chained"), "{sql}: {err}");
    }
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM audit_events"),
        1
    );
    let stored = audit.find(&owner, original.event_id, at(-1)).await.unwrap();
    assert_eq!(stored.clone().map(unchained), Some(original));
    assert_eq!(stored.and_then(|e| e.sequence), Some(1));
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_closing_and_reopening_the_store() {
    let dir = TestDataDir::create().unwrap();
    let config = SqliteConfig::with_pool_size(2);
    let store = dir.open(config).await.unwrap();
    let owner = owner();
    let a = agent(&owner, at(0));
    let created = event(&owner, a.agent_id, AuditAction::AgentCreated, at(0));
    AgentRepository::create(&store, &a, 10, &created)
        .await
        .unwrap();
    let c = credential(&a, at(1), Some(at(5_000)));
    let generated = event(&owner, a.agent_id, AuditAction::CredentialGenerated, at(1));
    CredentialRepository::create(&store, &c, 10, at(1), &generated)
        .await
        .unwrap();
    let token = RevokedToken {
        token_id: TokenId(Uuid::new_v4()),
        expires_at: at(3_600),
    };
    let revoked = event(&owner, a.agent_id, AuditAction::TokenRevoked, at(2));
    assert!(
        RevokedTokenStore::revoke(&store, &owner, &token, &revoked)
            .await
            .unwrap()
    );
    let key = signing_key("kid-1", None, 0);
    assert!(store.insert_key(&key, &[]).await.unwrap());
    store.acknowledge_key_set("node-a", 1, at(3)).await.unwrap();
    drop(store);

    let store = dir.open(config).await.unwrap();
    assert_eq!(
        AgentRepository::find(&store, &owner, a.agent_id)
            .await
            .unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        CredentialRepository::find(&store, &owner, a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(c)
    );
    let events = AuditLog::list(&store, &owner, &AuditFilter::default(), page_of_100())
        .await
        .unwrap();
    assert_eq!(
        events.items.into_iter().map(unchained).collect::<Vec<_>>(),
        vec![revoked, generated, created]
    );
    assert_eq!(store.unexpired(at(0)).await.unwrap(), vec![token]);
    assert_eq!(
        store.list_keys().await.unwrap(),
        vec![key],
        "the signing key survives a restart"
    );
    assert_eq!(store.key_set_version().await.unwrap(), 1);
    assert_eq!(
        store.key_set_acknowledgements(at(0)).await.unwrap(),
        vec![("node-a".to_owned(), 1)]
    );
    let head = AuditLog::chain_head(&store, &owner).await.unwrap();
    assert_eq!(
        head.map(|h| h.sequence),
        Some(3),
        "the chain head survives too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_survive_a_store_that_never_closed() {
    let dir = TestDataDir::create().unwrap();
    let config = SqliteConfig::with_pool_size(2);
    let crashed = dir.open(config).await.unwrap();
    let owner = owner();
    let a = agent(&owner, at(0));
    let created = event(&owner, a.agent_id, AuditAction::AgentCreated, at(0));
    AgentRepository::create(&crashed, &a, 10, &created)
        .await
        .unwrap();
    // Its connections are never closed, so nothing is checkpointed from the
    // write-ahead log into the database file: as after a crash.
    std::mem::forget(crashed);

    let store = dir.open(config).await.unwrap();
    assert_eq!(
        AgentRepository::find(&store, &owner, a.agent_id)
            .await
            .unwrap(),
        Some(a)
    );
    let logged = AuditLog::find(&store, &owner, created.event_id, at(-1))
        .await
        .unwrap();
    assert_eq!(logged.map(unchained), Some(created));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_then_are_idempotent() {
    let dir = TestDataDir::create().unwrap();
    let path = dir.database();
    assert_eq!(run_migrations(&path).await.unwrap(), all_versions());
    assert!(run_migrations(&path).await.unwrap().is_empty());

    // Opening migrates too, and reopening finds nothing to do.
    for _ in 0..3 {
        let store = open(&path, 2).await.unwrap();
        let listed = AgentRepository::list(
            &store,
            &owner(),
            &AgentFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap();
        assert_eq!(listed.total, 0);
    }
    assert!(run_migrations(&path).await.unwrap().is_empty());
    let mut conn = dir.raw_connection().unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM __diesel_schema_migrations"
        ),
        i64::try_from(all_versions().len()).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_a_new_file_together_migrate_it_once() {
    let dir = TestDataDir::create().unwrap();
    let path = Arc::new(dir.database());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let path = Arc::clone(&path);
        tasks.spawn(async move { run_migrations(&path).await });
    }
    let mut applied = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        applied.extend(joined.unwrap().expect("every process's migrate succeeds"));
    }
    assert_eq!(applied, all_versions(), "exactly one applied them");
}

#[tokio::test]
async fn the_data_dir_lock_refuses_a_second_holder_and_is_released_on_drop() {
    let parent = TestDataDir::create().unwrap();
    let dir = parent.dir().join("nested").join("data");
    let first = lock_data_dir(&dir).expect("the first server gets the lock");
    assert_eq!(first.path(), dir.join(LOCK_FILE_NAME));
    let holder = std::fs::read_to_string(first.path()).unwrap();
    assert_eq!(holder.trim(), std::process::id().to_string());

    let Err(err) = lock_data_dir(&dir) else {
        panic!("a second server got the lock")
    };
    assert!(
        matches!(err, InstanceLockError::AlreadyLocked { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "another idp-server is already serving the embedded store in {}; \
             run several nodes on PostgreSQL + Redis instead",
            dir.display()
        )
    );

    // The store itself does not take the lock: one-off commands open it
    // beside a serving server.
    let store = open(&dir.join(DATABASE_FILE_NAME), 2).await.unwrap();
    store.check().await.unwrap();
    assert!(matches!(
        lock_data_dir(&dir),
        Err(InstanceLockError::AlreadyLocked { .. })
    ));

    drop(first);
    let second = lock_data_dir(&dir).expect("released on drop");
    drop(second);
    drop(lock_data_dir(&dir).expect("and again"));
}

#[tokio::test]
async fn a_data_dir_that_cannot_be_created_is_an_io_error() {
    let parent = TestDataDir::create().unwrap();
    let file = parent.dir().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = lock_data_dir(&file.join("data")).unwrap_err();
    assert!(matches!(err, InstanceLockError::Io { .. }), "{err:?}");
    assert!(!err.to_string().contains('\n'), "{err}");
}

/// Two stores on one file, as a server and a `bootstrap` command beside it.
async fn two_stores() -> (TestDataDir, SqliteStore, SqliteStore) {
    let dir = TestDataDir::create().unwrap();
    let config = SqliteConfig::with_pool_size(4);
    let server = dir.open(config).await.unwrap();
    let command = dir.open(config).await.unwrap();
    (dir, server, command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_from_two_stores_never_exceed_the_agent_limit() {
    const MAX: u32 = 5;
    const RACERS_PER_STORE: usize = 8;
    let (_dir, server, command) = two_stores().await;
    let owner = owner();
    let mut tasks = tokio::task::JoinSet::new();
    for store in [&server, &command] {
        for i in 0..RACERS_PER_STORE {
            let agents: Arc<dyn AgentRepository> = Arc::new(store.clone());
            let a = agent(&owner, at(i64::try_from(i).unwrap()));
            tasks.spawn(async move {
                let e = event(&a.owner, a.agent_id, AuditAction::AgentCreated, at(0));
                agents.create(&a, MAX, &e).await
            });
        }
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::LimitExceeded) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        (created, refused),
        (MAX as usize, 2 * RACERS_PER_STORE - MAX as usize)
    );
    for store in [&server, &command] {
        let listed = AgentRepository::list(store, &owner, &AgentFilter::default(), page_of_100())
            .await
            .unwrap();
        assert_eq!(listed.total, u64::from(MAX));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_credential_creates_from_two_stores_never_exceed_the_limit() {
    const MAX: u32 = 3;
    let (_dir, server, command) = two_stores().await;
    let a = agent(&owner(), at(0));
    let e = event(&a.owner, a.agent_id, AuditAction::AgentCreated, at(0));
    AgentRepository::create(&server, &a, 10, &e).await.unwrap();
    let now = at(100);
    let mut tasks = tokio::task::JoinSet::new();
    for store in [&server, &command] {
        for i in 0..6 {
            let credentials: Arc<dyn CredentialRepository> = Arc::new(store.clone());
            let c = credential(&a, at(i), None);
            tasks.spawn(async move {
                let e = event(&c.owner, c.agent_id, AuditAction::CredentialGenerated, now);
                credentials.create(&c, MAX, now, &e).await
            });
        }
    }
    let mut created = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::LimitExceeded) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, MAX);
    let active = CredentialRepository::list(
        &command,
        &a.owner,
        a.agent_id,
        Some(CredentialStatus::Active),
        now,
        page_of_100(),
    )
    .await
    .unwrap();
    assert_eq!(active.total, u64::from(MAX));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_holding_the_lock_past_the_busy_timeout_is_unavailable() {
    let config = SqliteConfig {
        busy_timeout: Duration::from_millis(300),
        ..SqliteConfig::with_pool_size(2)
    };
    let harness = Harness::start_with(config).await;
    let agents = harness.agents();
    let owner = owner();
    let before = agent(&owner, at(0));
    let e = event(&owner, before.agent_id, AuditAction::AgentCreated, at(0));
    agents.create(&before, 10, &e).await.unwrap();

    // Another process takes the write lock and keeps it.
    let mut other = harness.dir.raw_connection().unwrap();
    other.batch_execute("BEGIN IMMEDIATE").unwrap();

    let blocked = agent(&owner, at(1));
    let e = event(&owner, blocked.agent_id, AuditAction::AgentCreated, at(1));
    let started = Instant::now();
    let err = agents.create(&blocked, 10, &e).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited for the busy timeout first: {:?}",
        started.elapsed()
    );
    assert!(!err.to_string().contains('\n'), "{err}");
    // Readers do not wait for the writer (WAL).
    assert_eq!(
        agents.find(&owner, before.agent_id).await.unwrap(),
        Some(before)
    );
    harness.store.check().await.unwrap();

    other.batch_execute("COMMIT").unwrap();
    agents.create(&blocked, 10, &e).await.unwrap();
    harness.finish();
}

/// The future of a write dropped half-way (a client that disconnects: actix-web
/// drops the handler's future) never leaves a transaction or the write lock
/// behind, and a write either happens whole (with its event) or not at all.
/// Runs on a current-thread runtime, as actix-web's workers do.
#[tokio::test]
async fn a_dropped_write_leaves_no_transaction_behind() {
    let harness = Harness::start_with(SqliteConfig::with_pool_size(2)).await;
    let agents = harness.agents();
    let audit = harness.audit();
    let owner = owner();

    // Another process holds the write lock, so every write below is still
    // waiting (for the lock, or for a connection) when its future is dropped.
    let mut other = harness.dir.raw_connection().unwrap();
    other.batch_execute("BEGIN IMMEDIATE").unwrap();
    let mut attempts = Vec::new();
    for i in 0..6 {
        let a = agent(&owner, at(i));
        let e = event(&owner, a.agent_id, AuditAction::AgentCreated, at(i));
        let dropped = tokio::time::timeout(Duration::from_millis(50), agents.create(&a, 100, &e))
            .await
            .is_err();
        assert!(dropped, "attempt {i} finished while the lock was held");
        attempts.push((a, e));
    }
    other.batch_execute("COMMIT").unwrap();

    // The writes that had started run to their end on their own.
    tokio::time::timeout(
        Duration::from_secs(10),
        TestDataDir::wait_until_idle(&harness.store),
    )
    .await
    .expect("every connection comes back");
    let mut stored = 0;
    for (a, e) in &attempts {
        let agent = agents.find(&owner, a.agent_id).await.unwrap();
        let logged = audit.find(&owner, e.event_id, at(-1)).await.unwrap();
        assert_eq!(
            agent.is_some(),
            logged.is_some(),
            "an agent and its event are written together or not at all"
        );
        stored += usize::from(agent.is_some());
    }
    assert!(
        (1..=2).contains(&stored),
        "the writes holding the pool's connections completed: {stored}"
    );

    // No transaction or lock was left behind.
    let last = agent(&owner, at(100));
    let e = event(&owner, last.agent_id, AuditAction::AgentCreated, at(100));
    tokio::time::timeout(Duration::from_secs(10), agents.create(&last, 100, &e))
        .await
        .expect("no write lock left behind")
        .unwrap();
    harness.finish();
}

#[tokio::test]
async fn an_unopenable_path_is_unavailable() {
    let parent = TestDataDir::create().unwrap();
    let file = parent.dir().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let inside_a_file = file.join("agentidp.db");

    let Err(err) = open(&inside_a_file, 2).await else {
        panic!("opened a database inside a file")
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    let err = run_migrations(&inside_a_file).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = TestDataDir::create().unwrap();
    std::fs::write(dir.database(), vec![b'x'; 4096]).unwrap();
    let Err(err) = dir.open(SqliteConfig::default()).await else {
        panic!("opened garbage as a database")
    };
    assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");
    assert!(err.to_string().contains("not a database"), "{err}");
}

#[tokio::test]
async fn a_pool_smaller_than_two_is_refused_before_touching_the_disk() {
    let dir = TestDataDir::create().unwrap();
    for size in [0, 1] {
        let Err(err) = open(&dir.database(), size).await else {
            panic!("accepted a pool of {size}")
        };
        assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");
    }
    assert!(!dir.database().exists());
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_data_directory_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = TestDataDir::create().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // In the server's order: the lock creates the directory, then the store.
    let locked_dir = parent.dir().join("served");
    let lock = lock_data_dir(&locked_dir).unwrap();
    assert_eq!(mode(&locked_dir), 0o700);
    drop(lock);

    let dir = parent.dir().join("data");
    let path = dir.join(DATABASE_FILE_NAME);
    let store = open(&path, 2).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = dir.join(format!("{DATABASE_FILE_NAME}-wal"));
    assert!(wal.exists(), "WAL mode");
    assert_eq!(mode(&wal), 0o600);
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pooled_connection_is_set_up() {
    let harness = Harness::start().await;
    // Several at once, so more than one connection is opened.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = harness.store.clone();
        tasks.spawn(async move {
            (
                TestDataDir::journal_mode_of(&store).await.unwrap(),
                TestDataDir::pragma_of(&store, "foreign_keys")
                    .await
                    .unwrap(),
                TestDataDir::pragma_of(&store, "busy_timeout")
                    .await
                    .unwrap(),
                TestDataDir::pragma_of(&store, "synchronous").await.unwrap(),
                // A small page cache per connection (KiB when negative).
                TestDataDir::pragma_of(&store, "cache_size").await.unwrap(),
            )
        });
    }
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(joined.unwrap(), ("wal".to_owned(), 1, 5_000, 2, -256));
    }
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_reads_the_database() {
    let harness = Harness::start().await;
    let health: Arc<dyn HealthCheck> = Arc::new(harness.store.clone());
    assert_eq!(health.name(), "database");
    health.check().await.unwrap();
    harness.finish();
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
    let other = agent(&owner, at(0));
    agents
        .create(
            &other,
            10,
            &event(&owner, other.agent_id, AuditAction::AgentCreated, at(0)),
        )
        .await
        .unwrap();

    let mut conn = harness.dir.raw_connection().unwrap();
    diesel::sql_query("UPDATE agents SET version = 'not-a-version' WHERE agent_id = ?")
        .bind::<Text, _>(good.agent_id.0.to_string())
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query("UPDATE agents SET created_at = ? WHERE agent_id = ?")
        .bind::<BigInt, _>(i64::MAX)
        .bind::<Text, _>(other.agent_id.0.to_string())
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query(
        "INSERT INTO audit_events (event_id, owner, action, outcome, \"timestamp\", sequence, hash) \
         VALUES (?, ?, 'agent.exploded', 'success', 0, 99, ?)",
    )
    .bind::<Text, _>(Uuid::new_v4().to_string())
    .bind::<Text, _>(owner.as_str())
    .bind::<Text, _>(FORGED_HASH)
    .execute(&mut conn)
    .unwrap();

    for id in [good.agent_id, other.agent_id] {
        let err = agents.find(&owner, id).await.unwrap_err();
        assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");
    }
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
    harness.finish();
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
    let mut conn = harness.dir.raw_connection().unwrap();
    let corruptions = [
        "UPDATE credentials SET public_jwk = '{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}' \
         WHERE credential_id = ?",
        "UPDATE credentials SET public_jwk = '{\"kty\":\"EC\"}' WHERE credential_id = ?",
        "UPDATE credentials SET jwk_thumbprint = 'forged' WHERE credential_id = ?",
    ];
    for (i, corruption) in corruptions.into_iter().enumerate() {
        let k = public_key_credential(&a, at(1), None);
        let e = event(&owner, a.agent_id, AuditAction::CredentialGenerated, at(1));
        credentials.create(&k, 10, at(1), &e).await.unwrap();
        diesel::sql_query(corruption)
            .bind::<Text, _>(k.credential_id.0.to_string())
            .execute(&mut conn)
            .unwrap();
        let err = credentials
            .find(&owner, a.agent_id, k.credential_id)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unknown(_)), "case {i}: {err:?}");
        let err = credentials.find_public_keys(a.agent_id).await.unwrap_err();
        assert!(matches!(err, StoreError::Unknown(_)), "case {i}: {err:?}");
        diesel::sql_query("DELETE FROM credentials WHERE credential_id = ?")
            .bind::<Text, _>(k.credential_id.0.to_string())
            .execute(&mut conn)
            .unwrap();
    }

    diesel::sql_query("UPDATE agents SET resources = '[\"relative/path\"]' WHERE agent_id = ?")
        .bind::<Text, _>(a.agent_id.0.to_string())
        .execute(&mut conn)
        .unwrap();
    let err = agents
        .find_for_authentication(a.agent_id)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unknown(_)), "{err:?}");
    harness.finish();
}

/// Stored delegates the domain would refuse (not a JSON array, an id that is
/// no UUID, the same id twice, more than the most an agent may name) are a
/// corrupt row: `Unknown`, never a panic or an agent with such a list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_delegates_are_unknown_errors() {
    let harness = Harness::start().await;
    let agents = harness.agents();
    let owner = owner();
    let a = agent(&owner, at(0));
    let e = event(&owner, a.agent_id, AuditAction::AgentCreated, at(0));
    agents.create(&a, 10, &e).await.unwrap();
    let mut conn = harness.dir.raw_connection().unwrap();
    let id = Uuid::new_v4();
    let too_many: Vec<String> = (0..=idp_domain::values::MAX_DELEGATES)
        .map(|_| Uuid::new_v4().to_string())
        .collect();
    let corruptions = [
        "[\"not-a-uuid\"]".to_owned(),
        format!("[\"{id}\", \"{id}\"]"),
        serde_json::to_string(&too_many).unwrap(),
    ];
    for (i, corruption) in corruptions.into_iter().enumerate() {
        diesel::sql_query("UPDATE agents SET delegates = ? WHERE agent_id = ?")
            .bind::<Text, _>(&corruption)
            .bind::<Text, _>(a.agent_id.0.to_string())
            .execute(&mut conn)
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
    harness.finish();
}

/// The columns of public keys, resources and DPoP refuse what the program
/// never writes: an unknown type, a public key without its JWK or
/// thumbprint, a secret carrying a JWK, resources that are not a JSON array
/// of strings, a `require_dpop` other than 0 or 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_half_made_public_keys_and_resources() {
    let harness = Harness::start().await;
    let owner = owner();
    let a = agent(&owner, at(0));
    let e = event(&owner, a.agent_id, AuditAction::AgentCreated, at(0));
    harness.agents().create(&a, 10, &e).await.unwrap();
    let mut conn = harness.dir.raw_connection().unwrap();
    let insert = |columns: &str, values: &str| {
        format!(
            "INSERT INTO credentials (credential_id, agent_id, owner, created_at, {columns}) \
             VALUES ('{}', '{}', '{}', 0, {values})",
            Uuid::new_v4(),
            a.agent_id.0,
            owner.as_str()
        )
    };
    let jwk = r#"'{"kty":"OKP"}'"#;
    for (i, sql) in [
        insert("secret_hash, credential_type", "'h', 'password'"),
        insert("secret_hash, credential_type", "'', 'public_key'"),
        insert(
            "secret_hash, credential_type, public_jwk",
            &format!("'', 'public_key', {jwk}"),
        ),
        insert(
            "secret_hash, credential_type, public_jwk, jwk_thumbprint",
            &format!("'h', 'public_key', {jwk}, 't'"),
        ),
        insert(
            "secret_hash, credential_type, public_jwk, jwk_thumbprint",
            &format!("'h', 'secret', {jwk}, 't'"),
        ),
        insert(
            "secret_hash, credential_type, public_jwk, jwk_thumbprint",
            "'', 'public_key', 'not json', 't'",
        ),
        format!(
            "UPDATE agents SET resources = '[\"urn:a\", 1]' WHERE agent_id = '{}'",
            a.agent_id.0
        ),
        format!(
            "UPDATE agents SET resources = '{{}}' WHERE agent_id = '{}'",
            a.agent_id.0
        ),
        format!(
            "UPDATE agents SET require_dpop = 2 WHERE agent_id = '{}'",
            a.agent_id.0
        ),
        format!(
            "UPDATE agents SET delegates = '[\"{}\", 1]' WHERE agent_id = '{}'",
            Uuid::new_v4(),
            a.agent_id.0
        ),
        format!(
            "UPDATE agents SET delegates = '{{}}' WHERE agent_id = '{}'",
            a.agent_id.0
        ),
        format!(
            "UPDATE agents SET delegates = 'not json' WHERE agent_id = '{}'",
            a.agent_id.0
        ),
        format!(
            "UPDATE agents SET delegates = NULL WHERE agent_id = '{}'",
            a.agent_id.0
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let err = diesel::sql_query(&sql).execute(&mut conn).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("CHECK constraint failed")
                || message.contains("NOT NULL constraint failed")
                || message.contains("malformed JSON")
                || message.contains("JSON array of strings"),
            "case {i}: {sql}: {message}"
        );
    }
    let ok = insert(
        "secret_hash, credential_type, public_jwk, jwk_thumbprint",
        &format!("'', 'public_key', {jwk}, 't'"),
    );
    diesel::sql_query(&ok).execute(&mut conn).unwrap();
    harness.finish();
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
    let mut conn = harness.dir.raw_connection().unwrap();
    let err = diesel::sql_query(
        "INSERT INTO agents (agent_id, email, agent_type, version, capabilities, owner, \
         deployment_env, status, created_at, updated_at) \
         VALUES (?, upper(?), 'custom', '1.0.0', '[\"a:b\"]', 'other', 'staging', 'active', 0, 0)",
    )
    .bind::<Text, _>(Uuid::new_v4().to_string())
    .bind::<Text, _>(a.email.as_str())
    .execute(&mut conn)
    .unwrap_err();
    assert!(err.to_string().contains("agents.email_normalized"), "{err}");
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_values_the_program_never_writes() {
    let harness = Harness::start().await;
    let mut conn = harness.dir.raw_connection().unwrap();
    let insert_agent = |agent_id: &str, capabilities: &str, status: &str, created_at: &str| {
        format!(
            "INSERT INTO agents (agent_id, email, agent_type, version, capabilities, owner, \
             deployment_env, status, created_at, updated_at) \
             VALUES ('{agent_id}', '{}@example.com', 'custom', '1.0.0', '{capabilities}', 'acme', \
             'staging', '{status}', {created_at}, 0)",
            Uuid::new_v4().simple()
        )
    };
    let id = Uuid::new_v4().to_string();
    let ok = insert_agent(&id, r#"["a:b"]"#, "active", "0");
    for (sql, why) in [
        (
            insert_agent(&Uuid::new_v4().to_string(), r#"["a:b"]"#, "zombie", "0"),
            "CHECK constraint failed",
        ),
        (
            insert_agent(&Uuid::new_v4().to_string(), "[]", "active", "0"),
            "CHECK constraint failed",
        ),
        (
            insert_agent(&Uuid::new_v4().to_string(), "not json", "active", "0"),
            "malformed JSON",
        ),
        (
            insert_agent(
                &Uuid::new_v4().to_string(),
                r#"["a:b", null]"#,
                "active",
                "0",
            ),
            "JSON array of strings",
        ),
        (
            insert_agent(&Uuid::new_v4().to_string(), r#"["a:b", 7]"#, "active", "0"),
            "JSON array of strings",
        ),
        (
            insert_agent("not-a-uuid", r#"["a:b"]"#, "active", "0"),
            "CHECK constraint failed",
        ),
        (
            insert_agent(
                &Uuid::new_v4().to_string().to_uppercase(),
                r#"["a:b"]"#,
                "active",
                "0",
            ),
            "CHECK constraint failed",
        ),
        (
            insert_agent(
                &Uuid::new_v4().to_string(),
                r#"["a:b"]"#,
                "active",
                "'yesterday'",
            ),
            "cannot store TEXT value in INTEGER column",
        ),
    ] {
        let err = execute(&mut conn, &sql).expect_err(&sql);
        assert!(err.to_string().contains(why), "{sql}: {err}");
    }
    execute(&mut conn, &ok).unwrap();
    let err = execute(
        &mut conn,
        &format!("UPDATE agents SET capabilities = '[1]' WHERE agent_id = '{id}'"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("JSON array of strings"), "{err}");

    // A credential must belong to an agent of the same owner (with foreign
    // keys on, as every connection of the store has them).
    conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
    let credential = |agent_id: &str, owner: &str| {
        format!(
            "INSERT INTO credentials (credential_id, agent_id, owner, secret_hash, created_at) \
             VALUES ('{}', '{agent_id}', '{owner}', 'h', 0)",
            Uuid::new_v4()
        )
    };
    for sql in [
        credential(&id, "other"),
        credential(&Uuid::new_v4().to_string(), "acme"),
    ] {
        let err = execute(&mut conn, &sql).expect_err(&sql);
        assert!(err.to_string().contains("FOREIGN KEY"), "{sql}: {err}");
    }
    execute(&mut conn, &credential(&id, "acme")).unwrap();
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_finer_than_a_millisecond_compare_exactly() {
    let harness = Harness::start().await;
    let audit = harness.audit();
    let owner = owner();
    let e = event(
        &owner,
        AgentId(Uuid::new_v4()),
        AuditAction::TokenIssued,
        at(10),
    );
    audit.append(&e).await.unwrap();
    let micro = |t: DateTime<Utc>, us: i64| t + chrono::Duration::microseconds(us);
    let listed = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| {
        let audit = Arc::clone(&audit);
        let owner = owner.clone();
        async move {
            let filter = AuditFilter {
                from,
                to,
                ..AuditFilter::default()
            };
            audit
                .list(&owner, &filter, page_of_100())
                .await
                .unwrap()
                .total
        }
    };
    assert_eq!(listed(Some(micro(at(10), 1)), None).await, 0);
    assert_eq!(listed(Some(micro(at(10), -1)), None).await, 1);
    assert_eq!(listed(None, Some(micro(at(10), 1))).await, 1);
    assert_eq!(listed(None, Some(micro(at(10), -1))).await, 0);
    assert!(
        audit
            .find(&owner, e.event_id, micro(at(10), 1))
            .await
            .unwrap()
            .is_none()
    );
    harness.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrations_revert_cleanly_and_apply_again() {
    use diesel_migrations::MigrationHarness;
    let harness = Harness::start().await;
    let owner = owner();
    let mut a = agent(&owner, at(0));
    a.resources = Resources::parse(&["urn:example:inventory"]).unwrap();
    a.require_dpop = true;
    a.delegates = Delegates::from_ids(vec![AgentId(Uuid::new_v4()), AgentId(Uuid::new_v4())]);
    let e = event(&owner, a.agent_id, AuditAction::AgentCreated, at(0));
    harness.agents().create(&a, 10, &e).await.unwrap();
    let c = credential(&a, at(1), None);
    let e = event(&owner, a.agent_id, AuditAction::CredentialGenerated, at(1));
    harness
        .credentials()
        .create(&c, 10, at(1), &e)
        .await
        .unwrap();
    let k = public_key_credential(&a, at(1), None);
    let e = event(&owner, a.agent_id, AuditAction::CredentialGenerated, at(1));
    harness
        .credentials()
        .create(&k, 10, at(1), &e)
        .await
        .unwrap();
    let mut system = event(&owner, a.agent_id, AuditAction::AuthFailed, at(2));
    system.owner = None;
    harness.audit().append(&system).await.unwrap();
    let keys = harness.signing_keys();
    assert!(
        keys.insert_key(&signing_key("k1", None, 0), &[])
            .await
            .unwrap()
    );
    assert!(
        keys.insert_key(&signing_key("k2", Some("k1"), 10), &[])
            .await
            .unwrap()
    );
    keys.acknowledge_key_set("node-a", 2, at(3)).await.unwrap();
    let Harness { store, dir } = harness;
    drop(store);

    let mut conn = dir.raw_connection().unwrap();
    conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
    let reverted = conn
        .revert_last_migration(idp_store_sqlite::MIGRATIONS)
        .unwrap();
    assert_eq!(reverted.to_string(), TOKEN_EXCHANGE_VERSION);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM sqlite_schema \
             WHERE name = 'audit_events_exchanges_by_actor_idx'"
        ),
        0,
        "down.sql drops the index of exchanges"
    );
    let reverted = conn
        .revert_last_migration(idp_store_sqlite::MIGRATIONS)
        .unwrap();
    assert_eq!(reverted.to_string(), DELEGATES_VERSION);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM pragma_table_info('agents') WHERE name = 'delegates'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM sqlite_schema WHERE name LIKE 'agents_delegates%'"
        ),
        0,
        "down.sql drops the delegates' triggers"
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM agents"),
        1,
        "the agent stays"
    );
    let reverted = conn
        .revert_last_migration(idp_store_sqlite::MIGRATIONS)
        .unwrap();
    assert_eq!(reverted.to_string(), PUBLIC_KEYS_VERSION);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM credentials"),
        1,
        "the public key is gone, the secret stays"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM pragma_table_info('credentials') \
             WHERE name IN ('credential_type', 'public_jwk', 'jwk_thumbprint')"
        ),
        0
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM pragma_table_info('agents') \
             WHERE name IN ('resources', 'require_dpop')"
        ),
        0
    );
    let reverted = conn
        .revert_last_migration(idp_store_sqlite::MIGRATIONS)
        .unwrap();
    assert_eq!(reverted.to_string(), KEY_ROTATION_VERSION);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM audit_events WHERE owner IS NULL"
        ),
        1,
        "the system chain's events have no owner again"
    );
    #[derive(diesel::QueryableByName)]
    struct Key {
        #[diesel(sql_type = Text)]
        algorithm: String,
        #[diesel(sql_type = Text)]
        kid: String,
    }
    let kept: Vec<Key> = diesel::sql_query("SELECT algorithm, kid FROM signing_keys")
        .load(&mut conn)
        .unwrap();
    assert_eq!(
        kept.iter()
            .map(|k| (k.algorithm.as_str(), k.kid.as_str()))
            .collect::<Vec<_>>(),
        [("RS256", "k2")],
        "one key per algorithm: the one activated last"
    );
    let reverted = conn
        .revert_last_migration(idp_store_sqlite::MIGRATIONS)
        .unwrap();
    assert_eq!(reverted.to_string(), AUDIT_STATISTICS_VERSION);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM sqlite_schema WHERE name LIKE 'sqlite_stat%'"
        ),
        0,
        "down.sql drops the statistics tables"
    );
    let reverted = conn
        .revert_last_migration(idp_store_sqlite::MIGRATIONS)
        .unwrap();
    assert_eq!(reverted.to_string(), INIT_VERSION);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM sqlite_schema WHERE name NOT LIKE '%diesel%'"
        ),
        0,
        "down.sql drops every table, index and trigger"
    );
    drop(conn);
    assert_eq!(
        run_migrations(&dir.database()).await.unwrap(),
        all_versions()
    );
}

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq)]
struct StatRow {
    #[diesel(sql_type = Text)]
    idx: String,
    #[diesel(sql_type = Text)]
    stat: String,
}

fn audit_statistics(conn: &mut SqliteConnection) -> Vec<StatRow> {
    diesel::sql_query("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'audit_events' ORDER BY idx")
        .load(conn)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_statistics_are_written_once_and_keep_an_earlier_analysis() {
    use diesel_migrations::MigrationHarness;
    let harness = Harness::start().await;
    let mut conn = harness.dir.raw_connection().unwrap();
    let written = audit_statistics(&mut conn);
    assert_eq!(
        written
            .iter()
            .map(|row| row.idx.as_str())
            .collect::<Vec<_>>(),
        [
            "audit_events_owner_action_time_idx",
            "audit_events_owner_agent_time_idx",
            "audit_events_owner_sequence_key",
            "audit_events_owner_time_idx",
            "sqlite_autoindex_audit_events_1",
        ],
        "one row per index of audit_events but the backfill's (empty) one"
    );

    // A database analyzed before the migration keeps ANALYZE's figures.
    for _ in 0..5 {
        conn.revert_last_migration(idp_store_sqlite::MIGRATIONS)
            .unwrap();
    }
    let owner = owner();
    diesel::sql_query(
        "INSERT INTO audit_events (event_id, owner, action, outcome, \"timestamp\") \
         VALUES (?, ?, 'agent.created', 'success', 0)",
    )
    .bind::<Text, _>(Uuid::new_v4().to_string())
    .bind::<Text, _>(owner.as_str())
    .execute(&mut conn)
    .unwrap();
    conn.batch_execute("ANALYZE").unwrap();
    let analyzed = audit_statistics(&mut conn);
    assert_eq!(analyzed.len(), 4, "{analyzed:?}");
    assert_ne!(analyzed, written);
    drop(conn);
    assert_eq!(
        run_migrations(&harness.dir.database()).await.unwrap(),
        vec![
            AUDIT_STATISTICS_VERSION.to_owned(),
            KEY_ROTATION_VERSION.to_owned(),
            PUBLIC_KEYS_VERSION.to_owned(),
            DELEGATES_VERSION.to_owned(),
            TOKEN_EXCHANGE_VERSION.to_owned(),
        ]
    );
    let mut conn = harness.dir.raw_connection().unwrap();
    let mut kept = audit_statistics(&mut conn);
    assert_eq!(
        kept.remove(2),
        StatRow {
            idx: "audit_events_owner_sequence_key".to_owned(),
            stat: "100000 10000 1".to_owned()
        }
    );
    assert_eq!(kept, analyzed);
    drop(conn);
    harness.finish();
}

/// A private key replaced by its sealed form leaves no copy in the database
/// file or its WAL (`secure_delete`, then a truncating checkpoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_private_keys_leave_no_copy_in_the_files() {
    let harness = Harness::start().await;
    let keys = harness.signing_keys();
    let mut key = signing_key("plain", None, 0);
    key.private_key = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        "Q".repeat(1_600)
    );
    assert!(keys.insert_key(&key, &[]).await.unwrap());
    keys.replace_private_keys(&[(
        "plain".to_owned(),
        key.private_key.clone(),
        format!("agentidp-sealed:v1:aes-256-gcm:{}", "Z".repeat(2_200)),
    )])
    .await
    .unwrap();
    let database = harness.dir.database();
    let mut wal = database.clone().into_os_string();
    wal.push("-wal");
    for file in [database.into_os_string(), wal] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{file:?} keeps the plain key"
        );
        assert!(
            !text.contains(&"Q".repeat(64)),
            "{file:?} keeps the key's body"
        );
    }
    harness.finish();
}
