//! A fresh, migrated database per test (feature `testing`).
//!
//! Migrating a new database for every test is slow and, done in parallel,
//! fails on `pg_type` unique keys. So the migrations run once into a template
//! database whose name is a hash of the migrations (a changed migration gets a
//! new template), created under an advisory lock by whichever test process
//! gets there first; each test then gets `CREATE DATABASE test_<uuid> TEMPLATE
//! <template>` (about 0.1 s) and drops it at the end.
//!
//! The server is `IDP_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); its database serves only as the
//! place to issue `CREATE DATABASE` from. Test code: it may panic.

use anyhow::Context;
use diesel::migration::MigrationSource;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::migrate::MIGRATIONS;

/// The server the tests use when `IDP_TEST_DATABASE_URL` is unset.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Key of the advisory lock (in the admin database) under which the template
/// is created.
const TEMPLATE_LOCK_KEY: i64 = 0x4944_5054_6d70_6c00;

/// A database of its own for one test, migrated. Drop it with
/// [`TestDatabase::drop_db`]; if the test panics first, `Drop` removes it.
#[derive(Debug)]
pub struct TestDatabase {
    /// URL of the test's database.
    pub url: String,
    /// Its name.
    pub name: String,
    admin_url: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates the template if needed, then a new database cloned from it.
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = admin_url();
        let template = template_name();
        ensure_template(&admin_url, &template).await?;
        Self::create_from(admin_url, &template).await
    }

    /// A new database without any table, for testing migrations themselves.
    pub async fn create_empty() -> anyhow::Result<Self> {
        Self::create_from(admin_url(), "template0").await
    }

    /// A new database with only the first `count` embedded migrations
    /// applied (and no chain backfill): a database as an older release left
    /// it, for testing the later migrations on data.
    pub async fn create_migrated_up_to(count: usize) -> anyhow::Result<Self> {
        let db = Self::create_empty().await?;
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            use diesel::Connection;
            use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
            use diesel_migrations::MigrationHarness;

            let mut conn =
                <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url)?;
            for _ in 0..count {
                conn.run_next_migration(MIGRATIONS)
                    .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
            }
            Ok(())
        })
        .await??;
        Ok(db)
    }

    async fn create_from(admin_url: String, template: &str) -> anyhow::Result<Self> {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .context("cannot connect to IDP_TEST_DATABASE_URL")?;
        // Identifiers cannot be bound; both names are [a-z0-9_] by construction.
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("cannot create {name} from {template}"))?;
        let url = with_database(&admin_url, &name)?;
        Ok(Self {
            url,
            name,
            admin_url,
            dropped: false,
        })
    }

    /// Drops the database, ending any connection still open to it.
    pub async fn drop_db(mut self) {
        self.dropped = true;
        if let Err(e) = drop_database(&self.admin_url, &self.name).await {
            eprintln!("warning: cannot drop test database {}: {e:#}", self.name);
        }
    }
}

impl Drop for TestDatabase {
    /// The test did not reach [`TestDatabase::drop_db`] (it panicked): drop
    /// the database from a thread of its own, as no async runtime can be
    /// entered here.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_database(&admin_url, &name))
        });
        if let Ok(Err(e)) = dropper.join() {
            eprintln!("warning: cannot drop test database {}: {e:#}", self.name);
        }
    }
}

fn admin_url() -> String {
    std::env::var("IDP_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = AsyncPgConnection::establish(admin_url).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// Creates and migrates the template unless a finished one exists. "Finished"
/// is `datistemplate`, set only after the migrations succeeded; a template
/// left half-made by a crashed process is dropped and made again.
async fn ensure_template(admin_url: &str, template: &str) -> anyhow::Result<()> {
    let mut admin = AsyncPgConnection::establish(admin_url)
        .await
        .context("cannot connect to IDP_TEST_DATABASE_URL")?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(TEMPLATE_LOCK_KEY)
        .execute(&mut admin)
        .await?;
    let made = make_template(&mut admin, admin_url, template).await;
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(TEMPLATE_LOCK_KEY)
        .execute(&mut admin)
        .await;
    made?;
    unlocked?;
    Ok(())
}

async fn make_template(
    admin: &mut AsyncPgConnection,
    admin_url: &str,
    template: &str,
) -> anyhow::Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Existing {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        datistemplate: bool,
    }
    let existing: Vec<Existing> =
        diesel::sql_query("SELECT datistemplate FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(template)
            .load(admin)
            .await?;
    match existing.as_slice().first() {
        Some(Existing {
            datistemplate: true,
        }) => return Ok(()),
        Some(_) => {
            diesel::sql_query(format!("DROP DATABASE {template} WITH (FORCE)"))
                .execute(admin)
                .await?;
        }
        None => {}
    }
    diesel::sql_query(format!("CREATE DATABASE {template}"))
        .execute(admin)
        .await?;
    crate::run_migrations(&with_database(admin_url, template)?)
        .await
        .with_context(|| format!("cannot migrate the template {template}"))?;
    diesel::sql_query(format!("ALTER DATABASE {template} IS_TEMPLATE true"))
        .execute(admin)
        .await?;
    Ok(())
}

/// `idp_tmpl_` + FNV-1a (64 bits) of the embedded migrations' names and, when
/// the source tree is at hand, of their SQL, so editing a migration in place
/// also yields a new template.
fn template_name() -> String {
    let mut hash = Fnv1a::new();
    let migrations = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS).unwrap_or_default();
    for migration in &migrations {
        hash.write(migration.name().to_string().as_bytes());
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<_> = entries
            .flatten()
            .flat_map(|entry| {
                std::fs::read_dir(entry.path())
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|entry| entry.path())
            .collect();
        files.sort();
        for file in files {
            hash.write(file.file_name().unwrap_or_default().as_encoded_bytes());
            hash.write(&std::fs::read(&file).unwrap_or_default());
        }
    }
    format!("idp_tmpl_{:016x}", hash.0)
}

struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base
        .find("://")
        .map(|i| i + 3)
        .context("IDP_TEST_DATABASE_URL must be a postgres:// URL")?;
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/test", "x").unwrap(),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h/test?sslmode=disable", "x").unwrap(),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
        assert!(with_database("host=h dbname=test", "x").is_err());
    }

    #[test]
    fn template_name_is_stable() {
        assert_eq!(template_name(), template_name());
        assert!(template_name().starts_with("idp_tmpl_"));
    }
}
