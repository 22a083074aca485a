//! The store contract suite for agents and credentials, through
//! [`CachedAgents`] and [`CachedCredentials`] in front of a real SQLite
//! store: the cache must answer exactly what the store would.

use std::sync::Arc;

use idp_domain::ports::{AgentRepository, AuditLog, CredentialRepository};
use idp_port_tests::store;
use idp_port_wrappers::{AuthStateCache, CachedAgents, CachedCredentials, SingleNode};
use idp_store_sqlite::SqliteConfig;
use idp_store_sqlite::testing::TestDataDir;

struct Cached {
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditLog>,
    _dir: TestDataDir,
}

async fn cached_sqlite() -> Cached {
    let dir = TestDataDir::create().unwrap();
    let store = Arc::new(dir.open(SqliteConfig::with_pool_size(4)).await.unwrap());
    let cache = AuthStateCache::single_node();
    Cached {
        agents: Arc::new(CachedAgents::new(
            store.clone(),
            cache.clone(),
            Arc::new(SingleNode),
        )),
        credentials: Arc::new(CachedCredentials::new(
            store.clone(),
            cache,
            Arc::new(SingleNode),
        )),
        audit: store,
        _dir: dir,
    }
}

/// One test per suite function: `name => suite_function(ports...)`.
macro_rules! contract {
    ($($name:ident => $suite:ident($($port:ident),*);)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let ports = cached_sqlite().await;
            store::$suite($(ports.$port.clone()),*).await;
        }
    )+};
}

contract! {
    agent_create_and_find => agent_create_and_find(agents, audit);
    agent_email_unique_on_update => agent_email_unique_on_update(agents, audit);
    agent_tenancy => agent_tenancy(agents, audit);
    agent_update => agent_update(agents, audit);
    agent_update_refuses_a_stale_read => agent_update_refuses_a_stale_read(agents, audit);
    agent_resources_and_dpop_round_trip => agent_resources_and_dpop_round_trip(agents, audit);
    agent_update_compares_resources_and_dpop => agent_update_compares_resources_and_dpop(agents, audit);
    agent_delegates_round_trip => agent_delegates_round_trip(agents, audit);
    agent_update_has_one_winner_per_read => agent_update_has_one_winner_per_read(agents, audit);
    agent_concurrent_updates_lose_nothing => agent_concurrent_updates_lose_nothing(agents, audit);
    agent_decommission => agent_decommission(agents, credentials, audit);
    credential_create_requires_active_agent => credential_create_requires_active_agent(agents, credentials, audit);
    credential_tenancy => credential_tenancy(agents, credentials);
    credential_rotate_and_revoke => credential_rotate_and_revoke(agents, credentials, audit);
    credential_find_by_hint => credential_find_by_hint(agents, credentials);
    credential_public_key_round_trip => credential_public_key_round_trip(agents, credentials, audit);
    credential_find_by_hint_skips_public_keys => credential_find_by_hint_skips_public_keys(agents, credentials);
    credential_find_public_keys => credential_find_public_keys(agents, credentials);
    credential_rotate_public_key => credential_rotate_public_key(agents, credentials, audit);
    credential_rotate_refuses_the_other_type => credential_rotate_refuses_the_other_type(agents, credentials, audit);
    credential_subject_state => credential_subject_state(agents, credentials);
}
