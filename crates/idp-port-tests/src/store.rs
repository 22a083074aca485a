//! Contract suites of the store ports: agents, credentials, audit, revoked tokens, signing keys.
//!
//! One `pub async fn` per rule of the ports' documentation. Each takes the
//! adapter under test as `Arc<dyn Port>` (several ports when the rule spans
//! them, e.g. "the failed write appended no event") and panics when the adapter
//! breaks the rule.
//!
//! Every function makes its own owners, emails, ids and signing algorithms,
//! all random, so the functions may run in any order, concurrently, and
//! against one shared store or a fresh store each. Times are fixed instants
//! (see [`fixtures::at`]), never the wall clock. Functions that race writers
//! against each other spawn Tokio tasks, so they need a Tokio runtime, best a
//! multi-threaded one.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::audit::{AuditEvent, AuditFilter};
use idp_domain::audit_chain::ChainHead;
use idp_domain::entities::{Agent, Credential, CredentialKey, CredentialType};
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::{
    AgentFilter, AgentRepository, AuditLog, CredentialRepository, RevokedToken, RevokedTokenStore,
    SubjectState, UpdateOutcome,
};
use idp_domain::values::{
    AgentId, AgentStatus, AgentType, AuditAction, Capabilities, CredentialId, CredentialStatus,
    Delegates, DeploymentEnv, Email, EventId, Outcome, Owner, PublicKeyJwk, Resources, SemVer,
    TokenId,
};
use serde_json::json;
use uuid::Uuid;

pub use crate::chain_and_keys::*;

use self::fixtures::{agent, at, credential, event, exchanged, owner, unchained, unique_email};

/// Values the suites build their test data from; public so an adapter's own
/// tests can make the same kind of data.
pub mod fixtures {
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use idp_domain::audit::AuditEvent;
    use idp_domain::entities::{Agent, Credential, CredentialKey};
    use idp_domain::values::{
        AgentId, AgentStatus, AgentType, AuditAction, Capabilities, CredentialId, Delegates,
        DeploymentEnv, Email, EventId, Outcome, Owner, PublicKeyJwk, Resources, SecretHash, SemVer,
    };
    use serde_json::json;
    use uuid::Uuid;

    /// `2026-11-22T10:00:00Z` plus `seconds`: the suites' only clock.
    pub fn at(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + Duration::seconds(seconds)
    }

    /// A new owner nobody else uses.
    pub fn owner() -> Owner {
        Owner::parse(&format!("t-{}", &Uuid::new_v4().simple().to_string()[..20])).unwrap()
    }

    /// A new email address nobody else uses, lower case.
    pub fn unique_email() -> Email {
        Email::parse(&format!("agent-{}@example.com", Uuid::new_v4().simple())).unwrap()
    }

    /// An active production screener of `owner`, created (and last updated) at `created_at`.
    pub fn agent(owner: &Owner, created_at: DateTime<Utc>) -> Agent {
        Agent {
            agent_id: AgentId(Uuid::new_v4()),
            email: unique_email(),
            agent_type: AgentType::Screener,
            version: SemVer::parse("1.4.2").unwrap(),
            capabilities: Capabilities::parse(&["resume:read", "agents:read"]).unwrap(),
            owner: owner.clone(),
            deployment_env: DeploymentEnv::Production,
            status: AgentStatus::Active,
            resources: Resources::default(),
            require_dpop: false,
            delegates: Delegates::default(),
            created_at,
            updated_at: created_at,
        }
    }

    /// A secret hash with the given lookup hint.
    pub fn secret_hash(hint: Option<&str>) -> SecretHash {
        SecretHash {
            hash: format!(
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${}",
                Uuid::new_v4().simple()
            ),
            hint: hint.map(str::to_owned),
        }
    }

    /// A new secret key (its hash) with the given lookup hint.
    pub fn secret_key(hint: Option<&str>) -> CredentialKey {
        CredentialKey::Secret(secret_hash(hint))
    }

    /// A new Ed25519 public key nobody else uses (random `x`, no `kid`, so
    /// its `kid` is its thumbprint).
    pub fn public_key() -> PublicKeyJwk {
        // 42 base64url characters and an `A` decode to 32 bytes.
        let x = format!(
            "{}{}A",
            Uuid::new_v4().simple(),
            &Uuid::new_v4().simple().to_string()[..10]
        );
        PublicKeyJwk::parse(
            "jwk",
            &json!({"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig"}),
        )
        .unwrap()
    }

    /// An unrevoked public-key credential of `agent`.
    pub fn public_key_credential(
        agent: &Agent,
        created_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Credential {
        Credential {
            key: CredentialKey::PublicKey(public_key()),
            ..credential(agent, created_at, expires_at)
        }
    }

    /// An unrevoked credential of `agent`.
    pub fn credential(
        agent: &Agent,
        created_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Credential {
        Credential {
            credential_id: CredentialId(Uuid::new_v4()),
            agent_id: agent.agent_id,
            owner: agent.owner.clone(),
            key: secret_key(Some(&Uuid::new_v4().simple().to_string()[..8])),
            created_at,
            expires_at,
            revoked_at: None,
        }
    }

    /// A successful event of `owner` about `agent_id`, with every optional field set.
    pub fn event(
        owner: &Owner,
        agent_id: AgentId,
        action: AuditAction,
        timestamp: DateTime<Utc>,
    ) -> AuditEvent {
        AuditEvent {
            event_id: EventId(Uuid::new_v4()),
            owner: Some(owner.clone()),
            agent_id: Some(agent_id),
            actor_id: Some(AgentId(Uuid::new_v4())),
            action,
            outcome: Outcome::Success,
            ip_address: Some("203.0.113.7".to_owned()),
            user_agent: Some("idp-port-tests/1.0".to_owned()),
            metadata: json!({"suite": "store", "nested": {"n": 1, "list": ["a", "b"]}}),
            timestamp,
            sequence: None,
            hash: None,
        }
    }

    /// A `token.exchanged` event: `actor` exchanged a token of `subject`.
    pub fn exchanged(
        owner: &Owner,
        subject: AgentId,
        actor: AgentId,
        outcome: Outcome,
        timestamp: DateTime<Utc>,
    ) -> AuditEvent {
        AuditEvent {
            actor_id: Some(actor),
            outcome,
            ..event(owner, subject, AuditAction::TokenExchanged, timestamp)
        }
    }

    /// `event` without its chain place (`sequence`, `hash`), as it was before
    /// the store appended it: what a stored event is compared by.
    pub fn unchained(event: &AuditEvent) -> AuditEvent {
        AuditEvent {
            sequence: None,
            hash: None,
            ..event.clone()
        }
    }
}

// ---------------------------------------------------------------------------
// Small helpers

fn page(number: u32, limit: u32) -> PageRequest {
    PageRequest::new(Some(number), Some(limit)).unwrap()
}

/// Long enough ago that `AuditLog::find` sees every event of the suites.
fn long_ago() -> DateTime<Utc> {
    at(-365 * 24 * 3600)
}

async fn create_agent(agents: &Arc<dyn AgentRepository>, agent: &Agent) {
    let created = event(
        &agent.owner,
        agent.agent_id,
        AuditAction::AgentCreated,
        agent.created_at,
    );
    agents.create(agent, 1_000, &created).await.unwrap();
}

async fn create_credential(
    credentials: &Arc<dyn CredentialRepository>,
    credential: &Credential,
    now: DateTime<Utc>,
) {
    let generated = event(
        &credential.owner,
        credential.agent_id,
        AuditAction::CredentialGenerated,
        now,
    );
    credentials
        .create(credential, 1_000, now, &generated)
        .await
        .unwrap();
}

async fn suspend(agents: &Arc<dyn AgentRepository>, agent: &Agent, now: DateTime<Utc>) -> Agent {
    let mut suspended = agent.clone();
    suspended.status = AgentStatus::Suspended;
    suspended.updated_at = now;
    let e = event(
        &agent.owner,
        agent.agent_id,
        AuditAction::AgentSuspended,
        now,
    );
    let outcome = agents.update(agent, &suspended, &e).await.unwrap();
    assert_eq!(outcome, UpdateOutcome::Applied);
    suspended
}

async fn decommission(
    agents: &Arc<dyn AgentRepository>,
    agent: &Agent,
    now: DateTime<Utc>,
) -> Vec<CredentialId> {
    let e = event(
        &agent.owner,
        agent.agent_id,
        AuditAction::AgentDecommissioned,
        now,
    );
    agents
        .decommission(&agent.owner, agent.agent_id, now, &e)
        .await
        .unwrap()
}

async fn assert_event_stored(audit: &Arc<dyn AuditLog>, event: &AuditEvent) {
    let owner = event.owner.as_ref().unwrap();
    let stored = audit.find(owner, event.event_id, long_ago()).await.unwrap();
    assert_eq!(
        stored.as_ref().map(unchained),
        Some(unchained(event)),
        "the write's audit event must be stored as given"
    );
    let stored = stored.unwrap();
    assert!(
        stored.sequence.is_some_and(|s| s >= 1)
            && stored.hash.as_ref().is_some_and(|h| h.len() == 64),
        "a stored event has its chain place: {stored:?}"
    );
}

async fn assert_event_absent(audit: &Arc<dyn AuditLog>, event: &AuditEvent) {
    let owner = event.owner.as_ref().unwrap();
    let stored = audit.find(owner, event.event_id, long_ago()).await.unwrap();
    assert!(
        stored.is_none(),
        "a refused write must append no event, found {stored:?}"
    );
}

fn credential_ids(page: &Page<Credential>) -> Vec<CredentialId> {
    page.items.iter().map(|c| c.credential_id).collect()
}

fn event_ids(page: &Page<AuditEvent>) -> Vec<EventId> {
    page.items.iter().map(|e| e.event_id).collect()
}

/// Walks every page of size `limit` and checks each page's request and total.
async fn collect_pages<T, F, Fut>(limit: u32, expected_total: u64, mut fetch: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Page<T>>,
{
    let mut all = Vec::new();
    let pages = expected_total.div_ceil(u64::from(limit));
    for number in 1..=pages + 1 {
        let request = page(u32::try_from(number).unwrap(), limit);
        let got = fetch(request).await;
        assert_eq!(got.request, request);
        assert_eq!(got.total, expected_total, "total on page {number}");
        let expected_len = if number <= pages {
            (expected_total - (number - 1) * u64::from(limit)).min(u64::from(limit))
        } else {
            0
        };
        assert_eq!(
            got.items.len() as u64,
            expected_len,
            "rows on page {number}"
        );
        all.extend(got.items);
    }
    all
}

// ---------------------------------------------------------------------------
// AgentRepository

/// `create` stores the agent as given and appends its event; `find` and
/// `find_for_authentication` read it back; unknown ids are `None`.
pub async fn agent_create_and_find(agents: Arc<dyn AgentRepository>, audit: Arc<dyn AuditLog>) {
    let owner = owner();
    let mut a = agent(&owner, at(0));
    a.email = Email::parse(&format!(
        "Mixed.Case-{}@Example.COM",
        Uuid::new_v4().simple()
    ))
    .unwrap();
    a.agent_type = AgentType::Orchestrator;
    a.deployment_env = DeploymentEnv::Staging;
    let created = event(&owner, a.agent_id, AuditAction::AgentCreated, at(0));
    agents.create(&a, 100, &created).await.unwrap();

    assert_eq!(
        agents.find(&owner, a.agent_id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        agents.find_for_authentication(a.agent_id).await.unwrap(),
        Some(a.clone())
    );
    assert_event_stored(&audit, &created).await;

    let unknown = AgentId(Uuid::new_v4());
    assert_eq!(agents.find(&owner, unknown).await.unwrap(), None);
    assert_eq!(agents.find_for_authentication(unknown).await.unwrap(), None);
}

/// Email is unique across all owners, compared case-insensitively, and a
/// decommissioned agent keeps its email. A refused create appends no event.
pub async fn agent_email_unique_case_insensitively(
    agents: Arc<dyn AgentRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let first_owner = owner();
    let other_owner = owner();
    let local = format!("Screener-{}", Uuid::new_v4().simple());
    let mut first = agent(&first_owner, at(0));
    first.email = Email::parse(&format!("{local}@Acme.Example")).unwrap();
    create_agent(&agents, &first).await;

    for (owner, email) in [
        (
            &other_owner,
            format!("{}@acme.example", local.to_lowercase()),
        ),
        (
            &first_owner,
            format!("{}@ACME.EXAMPLE", local.to_uppercase()),
        ),
        (&other_owner, format!("{local}@Acme.Example")),
    ] {
        let mut clash = agent(owner, at(1));
        clash.email = Email::parse(&email).unwrap();
        let e = event(owner, clash.agent_id, AuditAction::AgentCreated, at(1));
        let result = agents.create(&clash, 100, &e).await;
        assert!(
            matches!(result, Err(StoreError::Duplicate)),
            "{email}: {result:?}"
        );
        assert_eq!(agents.find(owner, clash.agent_id).await.unwrap(), None);
        assert_event_absent(&audit, &e).await;
    }

    decommission(&agents, &first, at(2)).await;
    let mut after = agent(&other_owner, at(3));
    after.email = Email::parse(&format!("{}@acme.example", local.to_lowercase())).unwrap();
    let e = event(
        &other_owner,
        after.agent_id,
        AuditAction::AgentCreated,
        at(3),
    );
    let result = agents.create(&after, 100, &e).await;
    assert!(
        matches!(result, Err(StoreError::Duplicate)),
        "a decommissioned agent keeps its email: {result:?}"
    );
}

/// `update` answers `Duplicate` when the new email clashes (case-insensitively)
/// with another agent's, of any owner, and changes nothing; changing only the
/// case of an agent's own email is allowed.
pub async fn agent_email_unique_on_update(
    agents: Arc<dyn AgentRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let a = agent(&owner(), at(0));
    let b = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    create_agent(&agents, &b).await;

    let mut clash = b.clone();
    clash.email = Email::parse(&a.email.as_str().to_uppercase()).unwrap();
    clash.updated_at = at(5);
    let e = event(&b.owner, b.agent_id, AuditAction::AgentUpdated, at(5));
    let result = agents.update(&b, &clash, &e).await;
    assert!(matches!(result, Err(StoreError::Duplicate)), "{result:?}");
    assert_eq!(
        agents.find(&b.owner, b.agent_id).await.unwrap(),
        Some(b.clone())
    );
    assert_event_absent(&audit, &e).await;

    let mut recased = a.clone();
    recased.email = Email::parse(&a.email.as_str().to_uppercase()).unwrap();
    recased.updated_at = at(6);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(6));
    let outcome = agents.update(&a, &recased, &e).await.unwrap();
    assert_eq!(outcome, UpdateOutcome::Applied);
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(recased)
    );
}

/// At most `max_agents_per_owner` agents that are not decommissioned, per
/// owner: active and suspended ones count, decommissioned ones do not, and
/// other owners are not affected. A refused create appends no event.
pub async fn agent_limit_per_owner(agents: Arc<dyn AgentRepository>, audit: Arc<dyn AuditLog>) {
    const MAX: u32 = 3;
    let owner = owner();
    let mut made = Vec::new();
    for i in 0..MAX {
        let a = agent(&owner, at(i64::from(i)));
        let e = event(&owner, a.agent_id, AuditAction::AgentCreated, a.created_at);
        agents.create(&a, MAX, &e).await.unwrap();
        made.push(a);
    }
    suspend(&agents, &made[0], at(10)).await;

    let extra = agent(&owner, at(11));
    let e = event(&owner, extra.agent_id, AuditAction::AgentCreated, at(11));
    let result = agents.create(&extra, MAX, &e).await;
    assert!(
        matches!(result, Err(StoreError::LimitExceeded)),
        "{result:?}"
    );
    assert_eq!(agents.find(&owner, extra.agent_id).await.unwrap(), None);
    assert_event_absent(&audit, &e).await;

    let elsewhere = agent(&self::fixtures::owner(), at(11));
    let e = event(
        &elsewhere.owner,
        elsewhere.agent_id,
        AuditAction::AgentCreated,
        at(11),
    );
    agents.create(&elsewhere, MAX, &e).await.unwrap();

    decommission(&agents, &made[1], at(12)).await;
    let e = event(&owner, extra.agent_id, AuditAction::AgentCreated, at(13));
    agents.create(&extra, MAX, &e).await.unwrap();

    let one_more = agent(&owner, at(14));
    let e = event(&owner, one_more.agent_id, AuditAction::AgentCreated, at(14));
    let result = agents.create(&one_more, MAX, &e).await;
    assert!(
        matches!(result, Err(StoreError::LimitExceeded)),
        "{result:?}"
    );
}

/// The agent limit holds when many creates for one owner race: exactly `MAX`
/// succeed, every other one answers `LimitExceeded`.
pub async fn agent_limit_holds_under_concurrent_creates(agents: Arc<dyn AgentRepository>) {
    const MAX: u32 = 5;
    const RACERS: usize = 16;
    let owner = owner();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..RACERS {
        let agents = Arc::clone(&agents);
        let a = agent(&owner, at(i64::try_from(i).unwrap()));
        tasks.spawn(async move {
            let e = event(
                &a.owner,
                a.agent_id,
                AuditAction::AgentCreated,
                a.created_at,
            );
            agents.create(&a, MAX, &e).await
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::LimitExceeded) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((created, refused), (MAX as usize, RACERS - MAX as usize));
    let listed = agents
        .list(&owner, &AgentFilter::default(), page(1, 100))
        .await
        .unwrap();
    assert_eq!(listed.total, u64::from(MAX));
}

/// Another owner's agent is absent: `find` and `list` do not show it, `update`
/// and `decommission` answer `NotFound` and change nothing.
pub async fn agent_tenancy(agents: Arc<dyn AgentRepository>, audit: Arc<dyn AuditLog>) {
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let stranger = owner();

    assert_eq!(agents.find(&stranger, a.agent_id).await.unwrap(), None);
    let listed = agents
        .list(&stranger, &AgentFilter::default(), page(1, 20))
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    assert_eq!(listed.total, 0);

    // The stranger read the agent as if it were its own.
    let mut read = a.clone();
    read.owner = stranger.clone();
    let mut foreign = read.clone();
    foreign.status = AgentStatus::Suspended;
    foreign.updated_at = at(5);
    let e = event(&stranger, a.agent_id, AuditAction::AgentSuspended, at(5));
    let result = agents.update(&read, &foreign, &e).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_event_absent(&audit, &e).await;

    let e = event(
        &stranger,
        a.agent_id,
        AuditAction::AgentDecommissioned,
        at(6),
    );
    let result = agents.decommission(&stranger, a.agent_id, at(6), &e).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_event_absent(&audit, &e).await;

    assert_eq!(agents.find(&a.owner, a.agent_id).await.unwrap(), Some(a));
}

/// `list` is newest first (`created_at` descending, then `agent_id`
/// descending), pages by `limit`, and every page carries the total.
pub async fn agent_list_order_and_pagination(agents: Arc<dyn AgentRepository>) {
    let owner = owner();
    let mut made = Vec::new();
    // Two pairs share a creation time, so the tie-break is exercised.
    for seconds in [0, 30, 10, 30, 20, 10, 40] {
        let a = agent(&owner, at(seconds));
        create_agent(&agents, &a).await;
        made.push(a);
    }
    create_agent(&agents, &agent(&self::fixtures::owner(), at(50))).await;
    made.sort_by_key(|v| std::cmp::Reverse((v.created_at, v.agent_id)));

    let everything = agents
        .list(&owner, &AgentFilter::default(), page(1, 100))
        .await
        .unwrap();
    assert_eq!(
        everything.items, made,
        "newest first, then agent_id descending"
    );

    let paged = collect_pages(3, made.len() as u64, |request| {
        let agents = Arc::clone(&agents);
        let owner = owner.clone();
        async move {
            agents
                .list(&owner, &AgentFilter::default(), request)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(paged, made);
}

/// Each filter of `list` (status, agent type, deployment environment, and
/// their combination) keeps exactly the matching agents, with a matching total.
pub async fn agent_list_filters(agents: Arc<dyn AgentRepository>) {
    let owner = owner();
    let mut specs = Vec::new();
    for (i, (agent_type, env)) in [
        (AgentType::Screener, DeploymentEnv::Production),
        (AgentType::Classifier, DeploymentEnv::Staging),
        (AgentType::Screener, DeploymentEnv::Development),
        (AgentType::Router, DeploymentEnv::Production),
        (AgentType::Screener, DeploymentEnv::Staging),
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = agent(&owner, at(i64::try_from(i).unwrap()));
        a.agent_type = agent_type;
        a.deployment_env = env;
        create_agent(&agents, &a).await;
        specs.push(a);
    }
    specs[2] = suspend(&agents, &specs[2], at(10)).await;
    decommission(&agents, &specs[3], at(11)).await;
    specs[3].status = AgentStatus::Decommissioned;
    specs[3].updated_at = at(11);

    let filters = [
        AgentFilter::default(),
        AgentFilter {
            status: Some(AgentStatus::Active),
            ..AgentFilter::default()
        },
        AgentFilter {
            status: Some(AgentStatus::Suspended),
            ..AgentFilter::default()
        },
        AgentFilter {
            status: Some(AgentStatus::Decommissioned),
            ..AgentFilter::default()
        },
        AgentFilter {
            agent_type: Some(AgentType::Screener),
            ..AgentFilter::default()
        },
        AgentFilter {
            agent_type: Some(AgentType::Monitor),
            ..AgentFilter::default()
        },
        AgentFilter {
            deployment_env: Some(DeploymentEnv::Production),
            ..AgentFilter::default()
        },
        AgentFilter {
            deployment_env: Some(DeploymentEnv::Staging),
            ..AgentFilter::default()
        },
        AgentFilter {
            status: Some(AgentStatus::Active),
            agent_type: Some(AgentType::Screener),
            deployment_env: Some(DeploymentEnv::Staging),
        },
        AgentFilter {
            status: Some(AgentStatus::Active),
            agent_type: Some(AgentType::Router),
            deployment_env: None,
        },
    ];
    for filter in filters {
        let mut expected: Vec<&Agent> = specs
            .iter()
            .filter(|a| filter.status.is_none_or(|s| a.status == s))
            .filter(|a| filter.agent_type.is_none_or(|t| a.agent_type == t))
            .filter(|a| filter.deployment_env.is_none_or(|d| a.deployment_env == d))
            .collect();
        expected.sort_by_key(|v| std::cmp::Reverse((v.created_at, v.agent_id)));
        let listed = agents.list(&owner, &filter, page(1, 100)).await.unwrap();
        let expected: Vec<Agent> = expected.into_iter().cloned().collect();
        assert_eq!(listed.items, expected, "{filter:?}");
        assert_eq!(listed.total, expected.len() as u64, "{filter:?}");
    }
}

/// `update` replaces every mutable field and appends its event; an unknown
/// agent is `NotFound`; a decommissioned one is `AgentDecommissioned` and stays
/// unchanged.
pub async fn agent_update(agents: Arc<dyn AgentRepository>, audit: Arc<dyn AuditLog>) {
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;

    let mut changed = a.clone();
    changed.email = unique_email();
    changed.agent_type = AgentType::Summarizer;
    changed.version = idp_domain::values::SemVer::parse("2.0.0-rc.1+build.5").unwrap();
    changed.capabilities =
        idp_domain::values::Capabilities::parse(&["audit:read", "x.y:z", "resume:write"]).unwrap();
    changed.deployment_env = DeploymentEnv::Development;
    changed.status = AgentStatus::Suspended;
    changed.updated_at = at(100);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(100));
    let outcome = agents.update(&a, &changed, &e).await.unwrap();
    assert_eq!(outcome, UpdateOutcome::Applied);
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(changed.clone())
    );
    assert_event_stored(&audit, &e).await;

    let mut reactivated = changed.clone();
    reactivated.status = AgentStatus::Active;
    reactivated.updated_at = at(101);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentReactivated, at(101));
    let outcome = agents.update(&changed, &reactivated, &e).await.unwrap();
    assert_eq!(outcome, UpdateOutcome::Applied);
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(reactivated.clone())
    );

    let missing = agent(&a.owner, at(0));
    let e = event(
        &a.owner,
        missing.agent_id,
        AuditAction::AgentUpdated,
        at(102),
    );
    let result = agents.update(&missing, &missing, &e).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_event_absent(&audit, &e).await;

    decommission(&agents, &a, at(103)).await;
    let before = agents.find(&a.owner, a.agent_id).await.unwrap().unwrap();
    let mut late = before.clone();
    late.status = AgentStatus::Active;
    late.version = idp_domain::values::SemVer::parse("9.9.9").unwrap();
    late.updated_at = at(104);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(104));
    let result = agents.update(&before, &late, &e).await;
    assert!(
        matches!(result, Err(StoreError::AgentDecommissioned)),
        "{result:?}"
    );
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(before)
    );
    assert_event_absent(&audit, &e).await;
}

/// `update` is a compare-and-swap: when the stored agent differs from
/// `expected` in any field (not only `updated_at`; an email differing only in
/// case counts), it answers `Stale` and writes nothing, no event either. The
/// same change computed from a fresh read applies. A decommissioned agent is
/// `AgentDecommissioned` whatever `expected` says. `updated`'s immutable
/// fields are not written.
pub async fn agent_update_refuses_a_stale_read(
    agents: Arc<dyn AgentRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let suspended = suspend(&agents, &a, at(10)).await;

    // Computed from the read before the suspension: writing it would undo it.
    let mut stale = a.clone();
    stale.version = SemVer::parse("1.5.0").unwrap();
    stale.updated_at = at(11);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(11));
    let outcome = agents.update(&a, &stale, &e).await.unwrap();
    assert_eq!(outcome, UpdateOutcome::Stale);
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(suspended.clone()),
        "a stale update must change nothing"
    );
    assert_event_absent(&audit, &e).await;

    let differing: [fn(&mut Agent); 9] = [
        |x| x.email = Email::parse(&x.email.as_str().to_uppercase()).unwrap(),
        |x| x.agent_type = AgentType::Monitor,
        |x| x.version = SemVer::parse("1.4.3").unwrap(),
        |x| x.capabilities = Capabilities::parse(&["resume:read"]).unwrap(),
        |x| x.deployment_env = DeploymentEnv::Staging,
        |x| x.status = AgentStatus::Active,
        |x| x.created_at = at(-1),
        |x| x.updated_at = at(9),
        |x| x.delegates = Delegates::from_ids(vec![AgentId(Uuid::new_v4())]),
    ];
    for (i, differ) in differing.into_iter().enumerate() {
        let mut expected = suspended.clone();
        differ(&mut expected);
        let mut updated = expected.clone();
        updated.version = SemVer::parse("3.0.0").unwrap();
        updated.updated_at = at(12);
        let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(12));
        let outcome = agents.update(&expected, &updated, &e).await.unwrap();
        assert_eq!(outcome, UpdateOutcome::Stale, "field {i} differs");
        assert_eq!(
            agents.find(&a.owner, a.agent_id).await.unwrap(),
            Some(suspended.clone())
        );
        assert_event_absent(&audit, &e).await;
    }

    let mut fresh = suspended.clone();
    fresh.version = SemVer::parse("1.5.0").unwrap();
    fresh.updated_at = at(13);
    let mut with_other_immutables = fresh.clone();
    with_other_immutables.created_at = at(-50);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(13));
    let outcome = agents
        .update(&suspended, &with_other_immutables, &e)
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Applied);
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(fresh.clone()),
        "the change applies on top of the suspension; created_at is not written"
    );
    assert_event_stored(&audit, &e).await;

    decommission(&agents, &a, at(14)).await;
    let mut late = fresh.clone();
    late.version = SemVer::parse("4.0.0").unwrap();
    late.updated_at = at(15);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(15));
    let result = agents.update(&fresh, &late, &e).await;
    assert!(
        matches!(result, Err(StoreError::AgentDecommissioned)),
        "{result:?}"
    );
    assert_event_absent(&audit, &e).await;
}

/// An agent's `resources` (in their order) and `require_dpop` are stored by
/// `create`, read back by `find`, `find_for_authentication` and `list`, and
/// replaced by `update`.
pub async fn agent_resources_and_dpop_round_trip(
    agents: Arc<dyn AgentRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let mut a = agent(&owner(), at(0));
    a.resources = Resources::parse(&[
        "urn:example:inventory",
        "https://api.example/mcp",
        "http://localhost:8931/mcp?tenant=1",
    ])
    .unwrap();
    a.require_dpop = true;
    create_agent(&agents, &a).await;
    let plain = agent(&a.owner, at(1));
    create_agent(&agents, &plain).await;

    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        agents.find_for_authentication(a.agent_id).await.unwrap(),
        Some(a.clone())
    );
    let listed = agents
        .list(&a.owner, &AgentFilter::default(), page(1, 10))
        .await
        .unwrap();
    assert_eq!(listed.items, vec![plain.clone(), a.clone()]);

    let mut changed = a.clone();
    changed.resources =
        Resources::parse(&["https://api.example/mcp", "urn:example:other"]).unwrap();
    changed.require_dpop = false;
    changed.updated_at = at(10);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(10));
    assert_eq!(
        agents.update(&a, &changed, &e).await.unwrap(),
        UpdateOutcome::Applied
    );
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(changed.clone())
    );
    assert_event_stored(&audit, &e).await;

    // From none to the most an agent may have, then back to none.
    let mut grown = plain.clone();
    let many: Vec<String> = (0..20).map(|i| format!("urn:example:r{i}")).collect();
    grown.resources = Resources::parse(&many).unwrap();
    grown.require_dpop = true;
    grown.updated_at = at(12);
    let e = event(&a.owner, plain.agent_id, AuditAction::AgentUpdated, at(12));
    assert_eq!(
        agents.update(&plain, &grown, &e).await.unwrap(),
        UpdateOutcome::Applied
    );
    assert_eq!(
        agents.find(&a.owner, plain.agent_id).await.unwrap(),
        Some(grown.clone())
    );
    let mut emptied = grown.clone();
    emptied.resources = Resources::default();
    emptied.updated_at = at(13);
    let e = event(&a.owner, plain.agent_id, AuditAction::AgentUpdated, at(13));
    assert_eq!(
        agents.update(&grown, &emptied, &e).await.unwrap(),
        UpdateOutcome::Applied
    );
    let listed = agents
        .list(&a.owner, &AgentFilter::default(), page(1, 10))
        .await
        .unwrap();
    assert_eq!(listed.items, vec![emptied, changed]);
}

/// An agent's `delegates`, in their order, are stored by `create`, read back
/// by `find`, `find_for_authentication` and `list`, and replaced by `update`,
/// from none to the most an agent may name and back; an `expected` differing
/// only in them (their order too) is `Stale`.
pub async fn agent_delegates_round_trip(
    agents: Arc<dyn AgentRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let owner = owner();
    let first = agent(&owner, at(0));
    create_agent(&agents, &first).await;
    let second = agent(&owner, at(1));
    create_agent(&agents, &second).await;
    // Not in UUID order, so a store that sorted them would be caught.
    let mut ids = [first.agent_id, second.agent_id, AgentId(Uuid::new_v4())];
    ids.sort_unstable();
    let mut a = agent(&owner, at(2));
    a.delegates = Delegates::from_ids(vec![ids[2], ids[0], ids[1]]);
    create_agent(&agents, &a).await;

    assert_eq!(
        agents.find(&owner, a.agent_id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        agents.find_for_authentication(a.agent_id).await.unwrap(),
        Some(a.clone())
    );
    let listed = agents
        .list(&owner, &AgentFilter::default(), page(1, 10))
        .await
        .unwrap();
    assert_eq!(listed.items, vec![a.clone(), second.clone(), first.clone()]);

    // The same ids in another order are another value: Stale, nothing written.
    let differing: [fn(&mut Agent); 3] = [
        |x| x.delegates = Delegates::from_ids(x.delegates.ids().iter().rev().copied().collect()),
        |x| x.delegates = Delegates::from_ids(x.delegates.ids()[..1].to_vec()),
        |x| x.delegates = Delegates::default(),
    ];
    for (i, differ) in differing.into_iter().enumerate() {
        let mut expected = a.clone();
        differ(&mut expected);
        let mut updated = expected.clone();
        updated.version = SemVer::parse("3.0.0").unwrap();
        updated.updated_at = at(10);
        let e = event(&owner, a.agent_id, AuditAction::AgentUpdated, at(10));
        let outcome = agents.update(&expected, &updated, &e).await.unwrap();
        assert_eq!(outcome, UpdateOutcome::Stale, "case {i}");
        assert_eq!(
            agents.find(&owner, a.agent_id).await.unwrap(),
            Some(a.clone()),
            "case {i}: a stale update must change nothing"
        );
        assert_event_absent(&audit, &e).await;
    }

    let mut changed = a.clone();
    changed.delegates = Delegates::from_ids(vec![ids[1], ids[2]]);
    changed.updated_at = at(11);
    let e = event(&owner, a.agent_id, AuditAction::AgentUpdated, at(11));
    assert_eq!(
        agents.update(&a, &changed, &e).await.unwrap(),
        UpdateOutcome::Applied
    );
    assert_eq!(
        agents.find(&owner, a.agent_id).await.unwrap(),
        Some(changed.clone())
    );
    assert_event_stored(&audit, &e).await;

    // From none to the most an agent may name, then back to none.
    let mut grown = first.clone();
    let many: Vec<AgentId> = (0..idp_domain::values::MAX_DELEGATES)
        .map(|_| AgentId(Uuid::new_v4()))
        .collect();
    grown.delegates = Delegates::from_ids(many);
    grown.updated_at = at(12);
    let e = event(&owner, first.agent_id, AuditAction::AgentUpdated, at(12));
    assert_eq!(
        agents.update(&first, &grown, &e).await.unwrap(),
        UpdateOutcome::Applied
    );
    assert_eq!(
        agents
            .find_for_authentication(first.agent_id)
            .await
            .unwrap(),
        Some(grown.clone())
    );
    let mut emptied = grown.clone();
    emptied.delegates = Delegates::default();
    emptied.updated_at = at(13);
    let e = event(&owner, first.agent_id, AuditAction::AgentUpdated, at(13));
    assert_eq!(
        agents.update(&grown, &emptied, &e).await.unwrap(),
        UpdateOutcome::Applied
    );
    let listed = agents
        .list(&owner, &AgentFilter::default(), page(1, 10))
        .await
        .unwrap();
    assert_eq!(listed.items, vec![changed, second, emptied]);
}

/// `update`'s compare-and-swap covers `resources` (their order too) and
/// `require_dpop`: an `expected` differing only there is `Stale`, writes
/// nothing and appends no event.
pub async fn agent_update_compares_resources_and_dpop(
    agents: Arc<dyn AgentRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let mut a = agent(&owner(), at(0));
    a.resources = Resources::parse(&["urn:example:a", "urn:example:b"]).unwrap();
    create_agent(&agents, &a).await;

    let differing: [fn(&mut Agent); 4] = [
        |x| x.resources = Resources::parse(&["urn:example:b", "urn:example:a"]).unwrap(),
        |x| x.resources = Resources::parse(&["urn:example:a"]).unwrap(),
        |x| x.resources = Resources::default(),
        |x| x.require_dpop = true,
    ];
    for (i, differ) in differing.into_iter().enumerate() {
        let mut expected = a.clone();
        differ(&mut expected);
        let mut updated = expected.clone();
        updated.version = SemVer::parse("3.0.0").unwrap();
        updated.updated_at = at(10);
        let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(10));
        let outcome = agents.update(&expected, &updated, &e).await.unwrap();
        assert_eq!(outcome, UpdateOutcome::Stale, "case {i}");
        assert_eq!(
            agents.find(&a.owner, a.agent_id).await.unwrap(),
            Some(a.clone()),
            "case {i}: a stale update must change nothing"
        );
        assert_event_absent(&audit, &e).await;
    }

    let mut updated = a.clone();
    updated.require_dpop = true;
    updated.updated_at = at(11);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(11));
    assert_eq!(
        agents.update(&a, &updated, &e).await.unwrap(),
        UpdateOutcome::Applied
    );
    // The read before that change is now stale in `require_dpop` alone.
    let mut undo = a.clone();
    undo.updated_at = at(11);
    let e = event(&a.owner, a.agent_id, AuditAction::AgentUpdated, at(12));
    assert_eq!(
        agents.update(&undo, &undo, &e).await.unwrap(),
        UpdateOutcome::Stale
    );
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(updated)
    );
    assert_event_absent(&audit, &e).await;
}

/// Concurrent `update`s computed from one read: exactly one is `Applied`, the
/// others `Stale`; the stored agent holds the winner's change and the log the
/// winner's event only.
pub async fn agent_update_has_one_winner_per_read(
    agents: Arc<dyn AgentRepository>,
    audit: Arc<dyn AuditLog>,
) {
    const WRITERS: u32 = 8;
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let agents = Arc::clone(&agents);
        let read = a.clone();
        let mut updated = a.clone();
        updated.version = SemVer::parse(&format!("1.{i}.0")).unwrap();
        if i % 2 == 0 {
            updated.status = AgentStatus::Suspended;
        }
        updated.updated_at = at(10 + i64::from(i));
        let e = event(
            &a.owner,
            a.agent_id,
            AuditAction::AgentUpdated,
            updated.updated_at,
        );
        tasks.push(tokio::spawn(async move {
            let outcome = agents.update(&read, &updated, &e).await.unwrap();
            (outcome, updated, e)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (outcome, updated, e) = task.await.unwrap();
        match outcome {
            UpdateOutcome::Applied => winners.push((updated, e)),
            UpdateOutcome::Stale => assert_event_absent(&audit, &e).await,
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update from one read applies");
    let (winner, e) = winners.remove(0);
    assert_eq!(
        agents.find(&a.owner, a.agent_id).await.unwrap(),
        Some(winner)
    );
    assert_event_stored(&audit, &e).await;
}

/// Concurrent read-modify-write loops (`find`, change one field, `update`,
/// again from a fresh `find` on `Stale`), each changing a different field:
/// every change is in the final agent, none is lost, and each loop's applied
/// event is stored while none of its stale attempts' events is.
pub async fn agent_concurrent_updates_lose_nothing(
    agents: Arc<dyn AgentRepository>,
    audit: Arc<dyn AuditLog>,
) {
    /// Copies field `field` of `from` into `to`.
    fn copy_field(field: usize, from: &Agent, to: &mut Agent) {
        match field {
            0 => to.status = from.status,
            1 => to.version = from.version.clone(),
            2 => to.deployment_env = from.deployment_env,
            3 => to.agent_type = from.agent_type,
            4 => to.capabilities = from.capabilities.clone(),
            _ => to.email = from.email.clone(),
        }
    }
    const FIELDS: usize = 6;
    const ROUNDS: usize = 5;

    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let mut target = a.clone();
    target.status = AgentStatus::Suspended;
    target.version = SemVer::parse("7.7.7").unwrap();
    target.deployment_env = DeploymentEnv::Development;
    target.agent_type = AgentType::Router;
    target.capabilities = Capabilities::parse(&["x:y", "agents:write"]).unwrap();
    target.email = unique_email();

    for round in 0..ROUNDS {
        // Round 0 moves every field to `target`, round 1 back to `a`, and so on.
        let (from, to) = if round % 2 == 0 {
            (&a, &target)
        } else {
            (&target, &a)
        };
        assert_eq!(
            agents
                .find(&a.owner, a.agent_id)
                .await
                .unwrap()
                .map(|mut x| {
                    x.updated_at = from.updated_at;
                    x
                }),
            Some(from.clone())
        );
        let mut tasks = Vec::new();
        for field in 0..FIELDS {
            let agents = Arc::clone(&agents);
            let to = to.clone();
            let stamp = at(100 * (round as i64 + 1) + field as i64);
            tasks.push(tokio::spawn(async move {
                let mut stale_events = Vec::new();
                for _ in 0..1_000 {
                    let read = agents.find(&to.owner, to.agent_id).await.unwrap().unwrap();
                    let mut updated = read.clone();
                    copy_field(field, &to, &mut updated);
                    updated.updated_at = stamp;
                    let e = event(&to.owner, to.agent_id, AuditAction::AgentUpdated, stamp);
                    match agents.update(&read, &updated, &e).await.unwrap() {
                        UpdateOutcome::Applied => return (e, stale_events),
                        UpdateOutcome::Stale => stale_events.push(e),
                    }
                }
                panic!("field {field}: 1000 stale reads in a row");
            }));
        }
        for task in tasks {
            let (applied, stale) = task.await.unwrap();
            assert_event_stored(&audit, &applied).await;
            for e in &stale {
                assert_event_absent(&audit, e).await;
            }
        }
        let stored = agents.find(&a.owner, a.agent_id).await.unwrap().unwrap();
        assert_eq!(
            Agent {
                updated_at: to.updated_at,
                ..stored
            },
            to.clone(),
            "round {round}: a concurrent update was lost"
        );
    }
}

/// `decommission` sets the status and `updated_at`, revokes at `now` every
/// credential not yet revoked (and no other), answers their ids, and appends
/// its event with `metadata.revokedCredentialIds` listing them, keeping the
/// event's other metadata. Again: `AgentDecommissioned`; unknown: `NotFound`.
pub async fn agent_decommission(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let active = credential(&a, at(1), None);
    let expired = credential(&a, at(2), Some(at(3)));
    let revoked = credential(&a, at(4), None);
    for c in [&active, &expired, &revoked] {
        create_credential(&credentials, c, at(1)).await;
    }
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, at(5));
    credentials
        .revoke(&a.owner, a.agent_id, revoked.credential_id, at(5), &e)
        .await
        .unwrap();
    // Another agent's credential is not touched.
    let bystander = agent(&a.owner, at(0));
    create_agent(&agents, &bystander).await;
    let untouched = credential(&bystander, at(1), None);
    create_credential(&credentials, &untouched, at(1)).await;

    let now = at(100);
    let mut e = event(&a.owner, a.agent_id, AuditAction::AgentDecommissioned, now);
    e.metadata = json!({"reason": "retired"});
    let ids = agents
        .decommission(&a.owner, a.agent_id, now, &e)
        .await
        .unwrap();
    let ids: BTreeSet<CredentialId> = ids.into_iter().collect();
    assert_eq!(
        ids,
        BTreeSet::from([active.credential_id, expired.credential_id])
    );

    let stored = agents.find(&a.owner, a.agent_id).await.unwrap().unwrap();
    assert_eq!(stored.status, AgentStatus::Decommissioned);
    assert_eq!(stored.updated_at, now);
    for (c, revoked_at) in [(&active, now), (&expired, now), (&revoked, at(5))] {
        let stored = credentials
            .find(&a.owner, a.agent_id, c.credential_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.revoked_at, Some(revoked_at));
    }
    let stored = credentials
        .find(
            &bystander.owner,
            bystander.agent_id,
            untouched.credential_id,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revoked_at, None);

    let logged = audit
        .find(&a.owner, e.event_id, long_ago())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged.action, AuditAction::AgentDecommissioned);
    assert_eq!(logged.timestamp, now);
    assert_eq!(logged.metadata["reason"], json!("retired"));
    let logged_ids: BTreeSet<CredentialId> = logged.metadata["revokedCredentialIds"]
        .as_array()
        .expect("metadata.revokedCredentialIds is an array")
        .iter()
        .map(|v| CredentialId(Uuid::parse_str(v.as_str().unwrap()).unwrap()))
        .collect();
    assert_eq!(logged_ids, ids);

    let again = event(
        &a.owner,
        a.agent_id,
        AuditAction::AgentDecommissioned,
        at(101),
    );
    let result = agents
        .decommission(&a.owner, a.agent_id, at(101), &again)
        .await;
    assert!(
        matches!(result, Err(StoreError::AgentDecommissioned)),
        "{result:?}"
    );
    assert_event_absent(&audit, &again).await;

    let missing = AgentId(Uuid::new_v4());
    let e = event(&a.owner, missing, AuditAction::AgentDecommissioned, at(102));
    let result = agents.decommission(&a.owner, missing, at(102), &e).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");

    let bare = agent(&a.owner, at(0));
    create_agent(&agents, &bare).await;
    let e = event(
        &a.owner,
        bare.agent_id,
        AuditAction::AgentDecommissioned,
        at(103),
    );
    assert!(
        agents
            .decommission(&a.owner, bare.agent_id, at(103), &e)
            .await
            .unwrap()
            .is_empty()
    );
    let logged = audit
        .find(&a.owner, e.event_id, long_ago())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged.metadata["revokedCredentialIds"], json!([]));
}

// ---------------------------------------------------------------------------
// CredentialRepository

/// `create` stores the credential and appends its event when the agent is
/// active; an unknown agent (or one of another owner) is `NotFound`; a
/// suspended or decommissioned one is `AgentNotActive`, appending nothing.
pub async fn credential_create_requires_active_agent(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let now = at(10);
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let c = credential(&a, now, Some(at(1_000_000)));
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialGenerated, now);
    credentials.create(&c, 10, now, &e).await.unwrap();
    assert_eq!(
        credentials
            .find(&a.owner, a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(c.clone())
    );
    assert_event_stored(&audit, &e).await;

    let mut foreign = credential(&a, now, None);
    foreign.owner = owner();
    let e = event(
        &foreign.owner,
        a.agent_id,
        AuditAction::CredentialGenerated,
        now,
    );
    let result = credentials.create(&foreign, 10, now, &e).await;
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "another owner's agent: {result:?}"
    );
    assert_event_absent(&audit, &e).await;

    let ghost = agent(&a.owner, at(0));
    let orphan = credential(&ghost, now, None);
    let e = event(
        &a.owner,
        ghost.agent_id,
        AuditAction::CredentialGenerated,
        now,
    );
    let result = credentials.create(&orphan, 10, now, &e).await;
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "unknown agent: {result:?}"
    );

    let suspended = agent(&a.owner, at(0));
    create_agent(&agents, &suspended).await;
    suspend(&agents, &suspended, at(1)).await;
    let decommissioned = agent(&a.owner, at(0));
    create_agent(&agents, &decommissioned).await;
    decommission(&agents, &decommissioned, at(1)).await;
    for inactive in [&suspended, &decommissioned] {
        let c = credential(inactive, now, None);
        let e = event(
            &a.owner,
            inactive.agent_id,
            AuditAction::CredentialGenerated,
            now,
        );
        let result = credentials.create(&c, 10, now, &e).await;
        assert!(
            matches!(result, Err(StoreError::AgentNotActive)),
            "{result:?}"
        );
        assert_eq!(
            credentials
                .find(&a.owner, inactive.agent_id, c.credential_id)
                .await
                .unwrap(),
            None
        );
        assert_event_absent(&audit, &e).await;
    }
}

/// At most `max_active_per_agent` credentials active at `now`: revoked and
/// expired ones do not count, one expiring after `now` does; other agents are
/// not affected.
pub async fn credential_limit_per_agent(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditLog>,
) {
    const MAX: u32 = 3;
    let now = at(1_000);
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let create = |c: Credential| {
        let credentials = Arc::clone(&credentials);
        async move {
            let e = event(&c.owner, c.agent_id, AuditAction::CredentialGenerated, now);
            let result = credentials.create(&c, MAX, now, &e).await;
            (result, e)
        }
    };
    create(credential(&a, at(1), None)).await.0.unwrap();
    create(credential(
        &a,
        at(2),
        Some(now + chrono::Duration::seconds(1)),
    ))
    .await
    .0
    .unwrap();
    create(credential(&a, at(3), Some(now))).await.0.unwrap(); // expired at `now`
    create(credential(&a, at(4), Some(at(5)))).await.0.unwrap(); // long expired
    let revoked = credential(&a, at(6), None);
    create(revoked.clone()).await.0.unwrap();
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, at(7));
    credentials
        .revoke(&a.owner, a.agent_id, revoked.credential_id, at(7), &e)
        .await
        .unwrap();

    create(credential(&a, at(8), None)).await.0.unwrap();
    let (result, e) = create(credential(&a, at(9), None)).await;
    assert!(
        matches!(result, Err(StoreError::LimitExceeded)),
        "{result:?}"
    );
    assert_event_absent(&audit, &e).await;

    let b = agent(&a.owner, at(0));
    create_agent(&agents, &b).await;
    create(credential(&b, at(9), None)).await.0.unwrap();
}

/// The credential limit holds when many creates for one agent race.
pub async fn credential_limit_holds_under_concurrent_creates(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
) {
    const MAX: u32 = 3;
    const RACERS: usize = 12;
    let now = at(100);
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..RACERS {
        let credentials = Arc::clone(&credentials);
        let c = credential(&a, at(i64::try_from(i).unwrap()), None);
        tasks.spawn(async move {
            let e = event(&c.owner, c.agent_id, AuditAction::CredentialGenerated, now);
            credentials.create(&c, MAX, now, &e).await
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::LimitExceeded) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((created, refused), (MAX as usize, RACERS - MAX as usize));
    let listed = credentials
        .list(&a.owner, a.agent_id, None, now, page(1, 100))
        .await
        .unwrap();
    assert_eq!(listed.total, u64::from(MAX));
}

/// Creating credentials and decommissioning their agent serialize: however
/// they interleave, no credential of a decommissioned agent is left unrevoked.
pub async fn credential_create_races_decommission(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
) {
    let now = at(100);
    for round in 0..4 {
        let a = agent(&owner(), at(0));
        create_agent(&agents, &a).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..6 {
            let credentials = Arc::clone(&credentials);
            let c = credential(&a, at(i), None);
            tasks.spawn(async move {
                let e = event(&c.owner, c.agent_id, AuditAction::CredentialGenerated, now);
                match credentials.create(&c, 100, now, &e).await {
                    Ok(()) | Err(StoreError::AgentNotActive) => {}
                    Err(other) => panic!("unexpected {other:?}"),
                }
            });
        }
        let racer = Arc::clone(&agents);
        let target = a.clone();
        tasks.spawn(async move {
            decommission(&racer, &target, now).await;
        });
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        let left = credentials
            .list(
                &a.owner,
                a.agent_id,
                Some(CredentialStatus::Active),
                now,
                page(1, 100),
            )
            .await
            .unwrap();
        assert_eq!(
            left.total, 0,
            "round {round}: active credentials survived decommissioning"
        );
    }
}

/// Another owner's credential, or one asked for under the wrong agent, is
/// absent: `find` is `None`, `list` empty, `rotate` and `revoke` `NotFound`.
pub async fn credential_tenancy(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
) {
    let now = at(10);
    let a = agent(&owner(), at(0));
    let sibling = agent(&a.owner, at(0));
    create_agent(&agents, &a).await;
    create_agent(&agents, &sibling).await;
    let c = credential(&a, at(1), None);
    create_credential(&credentials, &c, now).await;
    let stranger = owner();

    for (owner, agent_id) in [(&stranger, a.agent_id), (&a.owner, sibling.agent_id)] {
        assert_eq!(
            credentials
                .find(owner, agent_id, c.credential_id)
                .await
                .unwrap(),
            None
        );
        let new_hash = fixtures::secret_key(Some("ffff"));
        let e = event(owner, agent_id, AuditAction::CredentialRotated, now);
        let result = credentials
            .rotate(owner, agent_id, c.credential_id, &new_hash, &e)
            .await;
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
        let e = event(owner, agent_id, AuditAction::CredentialRevoked, now);
        let result = credentials
            .revoke(owner, agent_id, c.credential_id, now, &e)
            .await;
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    }
    let listed = credentials
        .list(&stranger, a.agent_id, None, now, page(1, 20))
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    assert_eq!(listed.total, 0);
    assert_eq!(
        credentials
            .find(&a.owner, a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(c)
    );
}

/// `list` is newest first (`created_at` then `credential_id`, descending),
/// pages with a total, and filters by the status derived at `now` (revoked
/// wins over expired; expired when `expires_at <= now`).
pub async fn credential_list_order_pagination_and_status(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
) {
    let now = at(1_000);
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let other = agent(&a.owner, at(0));
    create_agent(&agents, &other).await;
    create_credential(&credentials, &credential(&other, at(1), None), at(1)).await;

    let mut made = vec![
        credential(&a, at(10), None),            // active
        credential(&a, at(20), Some(at(2_000))), // active, expires later
        credential(&a, at(20), Some(now)),       // expired exactly now
        credential(&a, at(30), Some(at(500))),   // expired
        credential(&a, at(40), None),            // revoked below
        credential(&a, at(10), Some(at(600))),   // revoked below, also expired
    ];
    for c in &made {
        create_credential(&credentials, c, at(0)).await;
    }
    for (i, when) in [(4, at(700)), (5, at(800))] {
        let c = &made[i];
        let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, when);
        let revoked = credentials
            .revoke(&a.owner, a.agent_id, c.credential_id, when, &e)
            .await
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(when));
        made[i].revoked_at = Some(when);
    }
    made.sort_by_key(|v| std::cmp::Reverse((v.created_at, v.credential_id)));

    let everything = credentials
        .list(&a.owner, a.agent_id, None, now, page(1, 100))
        .await
        .unwrap();
    assert_eq!(everything.items, made);
    assert_eq!(everything.total, made.len() as u64);

    let paged = collect_pages(4, made.len() as u64, |request| {
        let credentials = Arc::clone(&credentials);
        let owner = a.owner.clone();
        async move {
            credentials
                .list(&owner, a.agent_id, None, now, request)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(paged, made);

    for status in CredentialStatus::ALL {
        let expected: Vec<CredentialId> = made
            .iter()
            .filter(|c| c.status(now) == *status)
            .map(|c| c.credential_id)
            .collect();
        let listed = credentials
            .list(&a.owner, a.agent_id, Some(*status), now, page(1, 100))
            .await
            .unwrap();
        assert_eq!(credential_ids(&listed), expected, "{status:?}");
        assert_eq!(listed.total, expected.len() as u64, "{status:?}");
    }
    let counts: Vec<usize> = CredentialStatus::ALL
        .iter()
        .map(|s| made.iter().filter(|c| c.status(now) == *s).count())
        .collect();
    assert_eq!(counts, vec![2, 2, 2], "the fixture covers every status");
}

/// `rotate` replaces the hash (and hint) of the same credential and appends
/// its event; `revoke` sets `revoked_at = now` and appends its event; either on
/// a revoked credential is `CredentialRevoked`, on an unknown one `NotFound`,
/// and changes nothing.
pub async fn credential_rotate_and_revoke(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let c = credential(&a, at(1), Some(at(10_000)));
    create_credential(&credentials, &c, at(1)).await;

    let new_hash = fixtures::secret_key(Some("0a1b2c3d"));
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRotated, at(2));
    let rotated = credentials
        .rotate(&a.owner, a.agent_id, c.credential_id, &new_hash, &e)
        .await
        .unwrap();
    let expected = Credential {
        key: new_hash.clone(),
        ..c.clone()
    };
    assert_eq!(rotated, expected);
    assert_eq!(
        credentials
            .find(&a.owner, a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(expected.clone())
    );
    assert_event_stored(&audit, &e).await;

    let unhinted = fixtures::secret_key(None);
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRotated, at(3));
    let rotated = credentials
        .rotate(&a.owner, a.agent_id, c.credential_id, &unhinted, &e)
        .await
        .unwrap();
    assert_eq!(rotated.key, unhinted);

    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, at(4));
    let revoked = credentials
        .revoke(&a.owner, a.agent_id, c.credential_id, at(4), &e)
        .await
        .unwrap();
    let expected = Credential {
        key: unhinted,
        revoked_at: Some(at(4)),
        ..c.clone()
    };
    assert_eq!(revoked, expected);
    assert_event_stored(&audit, &e).await;

    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRotated, at(5));
    let result = credentials
        .rotate(&a.owner, a.agent_id, c.credential_id, &new_hash, &e)
        .await;
    assert!(
        matches!(result, Err(StoreError::CredentialRevoked)),
        "{result:?}"
    );
    assert_event_absent(&audit, &e).await;
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, at(6));
    let result = credentials
        .revoke(&a.owner, a.agent_id, c.credential_id, at(6), &e)
        .await;
    assert!(
        matches!(result, Err(StoreError::CredentialRevoked)),
        "{result:?}"
    );
    assert_event_absent(&audit, &e).await;
    assert_eq!(
        credentials
            .find(&a.owner, a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(expected)
    );

    let missing = CredentialId(Uuid::new_v4());
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRotated, at(7));
    let result = credentials
        .rotate(&a.owner, a.agent_id, missing, &new_hash, &e)
        .await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    let result = credentials
        .revoke(&a.owner, a.agent_id, missing, at(7), &e)
        .await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}

/// `find_by_hint` answers the agent's credentials (any status) whose hint
/// equals the given one or is absent, and no other agent's.
pub async fn credential_find_by_hint(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
) {
    let now = at(10);
    let a = agent(&owner(), at(0));
    let b = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    create_agent(&agents, &b).await;
    let with_hint = |agent: &Agent, hint: Option<&str>, created: i64| Credential {
        key: fixtures::secret_key(hint),
        ..credential(agent, at(created), None)
    };
    let matching = with_hint(&a, Some("aaaa"), 1);
    let other_hint = with_hint(&a, Some("bbbb"), 2);
    let unhinted = with_hint(&a, None, 3);
    let revoked = with_hint(&a, Some("aaaa"), 4);
    let foreign = with_hint(&b, Some("aaaa"), 5);
    for c in [&matching, &other_hint, &unhinted, &revoked, &foreign] {
        create_credential(&credentials, c, now).await;
    }
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, now);
    let revoked = credentials
        .revoke(&a.owner, a.agent_id, revoked.credential_id, now, &e)
        .await
        .unwrap();

    let ids = |found: Vec<Credential>| -> BTreeSet<CredentialId> {
        found.iter().map(|c| c.credential_id).collect()
    };
    let found = credentials.find_by_hint(a.agent_id, "aaaa").await.unwrap();
    assert!(
        found.contains(&matching) && found.contains(&revoked) && found.contains(&unhinted),
        "{found:?}"
    );
    assert_eq!(
        ids(found),
        BTreeSet::from([
            matching.credential_id,
            unhinted.credential_id,
            revoked.credential_id
        ])
    );
    let found = credentials.find_by_hint(a.agent_id, "cccc").await.unwrap();
    assert_eq!(ids(found), BTreeSet::from([unhinted.credential_id]));
    let found = credentials
        .find_by_hint(AgentId(Uuid::new_v4()), "aaaa")
        .await
        .unwrap();
    assert!(found.is_empty());
}

/// A public-key credential is stored as given: `find`, `list` and
/// `find_public_keys` read it back with its JWK (its `kid`, `alg` and `use`
/// too), and its view shows type, JWK and thumbprint.
pub async fn credential_public_key_round_trip(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let x = format!(
        "{}{}A",
        Uuid::new_v4().simple(),
        &Uuid::new_v4().simple().to_string()[..10]
    );
    let y = format!(
        "{}{}A",
        Uuid::new_v4().simple(),
        &Uuid::new_v4().simple().to_string()[..10]
    );
    let ec = PublicKeyJwk::parse(
        "jwk",
        &json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": "client-key-1",
                "alg": "ES256", "use": "sig"}),
    )
    .unwrap();
    let with_kid = Credential {
        key: CredentialKey::PublicKey(ec.clone()),
        ..credential(&a, at(1), Some(at(10_000)))
    };
    let ed = fixtures::public_key_credential(&a, at(2), None);
    let secret = credential(&a, at(3), None);
    let e = event(
        &a.owner,
        a.agent_id,
        AuditAction::CredentialGenerated,
        at(1),
    );
    credentials.create(&with_kid, 10, at(1), &e).await.unwrap();
    assert_event_stored(&audit, &e).await;
    create_credential(&credentials, &ed, at(2)).await;
    create_credential(&credentials, &secret, at(3)).await;

    for c in [&with_kid, &ed, &secret] {
        assert_eq!(
            credentials
                .find(&a.owner, a.agent_id, c.credential_id)
                .await
                .unwrap()
                .as_ref(),
            Some(c)
        );
    }
    let listed = credentials
        .list(&a.owner, a.agent_id, None, at(5), page(1, 10))
        .await
        .unwrap();
    assert_eq!(
        listed.items,
        vec![secret.clone(), ed.clone(), with_kid.clone()]
    );
    let active = credentials
        .list(
            &a.owner,
            a.agent_id,
            Some(CredentialStatus::Active),
            at(5),
            page(1, 10),
        )
        .await
        .unwrap();
    assert_eq!(active.total, 3);

    let found = credentials.find_public_keys(a.agent_id).await.unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.contains(&with_kid) && found.contains(&ed),
        "{found:?}"
    );

    let stored = credentials
        .find(&a.owner, a.agent_id, with_kid.credential_id)
        .await
        .unwrap()
        .unwrap();
    let CredentialKey::PublicKey(key) = &stored.key else {
        panic!("a public key came back as {:?}", stored.key);
    };
    assert_eq!(key.kid(), "client-key-1");
    assert_eq!(key.thumbprint(), ec.thumbprint());
    let view = stored.view(at(5));
    assert_eq!(view.credential_type, CredentialType::PublicKey);
    assert_eq!(view.jwk, Some(ec.to_value()));
    assert_eq!(view.jwk_thumbprint.as_deref(), Some(ec.thumbprint()));
    assert_eq!(view.status, CredentialStatus::Active);
    let view = secret.view(at(5));
    assert_eq!(view.credential_type, CredentialType::Secret);
    assert_eq!((view.jwk, view.jwk_thumbprint), (None, None));
}

/// `find_by_hint` answers secrets only: a public-key credential (which has
/// no hint) is never among its answers, whatever the hint.
pub async fn credential_find_by_hint_skips_public_keys(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
) {
    let now = at(10);
    let a = agent(&owner(), at(0));
    let only_keys = agent(&a.owner, at(0));
    create_agent(&agents, &a).await;
    create_agent(&agents, &only_keys).await;
    let hinted = Credential {
        key: fixtures::secret_key(Some("aaaa")),
        ..credential(&a, at(1), None)
    };
    let unhinted = Credential {
        key: fixtures::secret_key(None),
        ..credential(&a, at(2), None)
    };
    let key = fixtures::public_key_credential(&a, at(3), None);
    let other_key = fixtures::public_key_credential(&only_keys, at(3), None);
    for c in [&hinted, &unhinted, &key, &other_key] {
        create_credential(&credentials, c, now).await;
    }
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, now);
    credentials
        .revoke(&a.owner, a.agent_id, key.credential_id, now, &e)
        .await
        .unwrap();

    let ids = |found: Vec<Credential>| -> BTreeSet<CredentialId> {
        found.iter().map(|c| c.credential_id).collect()
    };
    for (hint, expected) in [
        ("aaaa", vec![hinted.credential_id, unhinted.credential_id]),
        ("zzzz", vec![unhinted.credential_id]),
        ("", vec![unhinted.credential_id]),
    ] {
        let found = credentials.find_by_hint(a.agent_id, hint).await.unwrap();
        assert_eq!(ids(found), expected.into_iter().collect(), "hint {hint:?}");
    }
    for hint in ["aaaa", "zzzz", ""] {
        let found = credentials
            .find_by_hint(only_keys.agent_id, hint)
            .await
            .unwrap();
        assert!(found.is_empty(), "hint {hint:?}: {found:?}");
    }
}

/// `find_public_keys` answers the agent's public-key credentials in any
/// status (active, expired, revoked, also of a suspended agent), and no
/// secret and no other agent's key.
pub async fn credential_find_public_keys(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
) {
    let now = at(100);
    let a = agent(&owner(), at(0));
    let b = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    create_agent(&agents, &b).await;
    let active = fixtures::public_key_credential(&a, at(1), Some(at(10_000)));
    let expired = fixtures::public_key_credential(&a, at(2), Some(at(50)));
    let revoked = fixtures::public_key_credential(&a, at(3), None);
    let secret = credential(&a, at(4), None);
    let foreign = fixtures::public_key_credential(&b, at(5), None);
    for c in [&active, &expired, &revoked, &secret, &foreign] {
        create_credential(&credentials, c, at(10)).await;
    }
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, now);
    let revoked = credentials
        .revoke(&a.owner, a.agent_id, revoked.credential_id, now, &e)
        .await
        .unwrap();
    suspend(&agents, &a, now).await;

    let found = credentials.find_public_keys(a.agent_id).await.unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    for c in [&active, &expired, &revoked] {
        assert!(found.contains(c), "{c:?} missing from {found:?}");
    }
    assert_eq!(
        credentials.find_public_keys(b.agent_id).await.unwrap(),
        vec![foreign]
    );
    assert!(
        credentials
            .find_public_keys(AgentId(Uuid::new_v4()))
            .await
            .unwrap()
            .is_empty()
    );
}

/// `rotate` with a public key replaces a public-key credential's key and
/// appends its event; the old key is no longer found. A revoked one is
/// `CredentialRevoked`.
pub async fn credential_rotate_public_key(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let c = fixtures::public_key_credential(&a, at(1), Some(at(10_000)));
    create_credential(&credentials, &c, at(1)).await;

    let new_key = CredentialKey::PublicKey(fixtures::public_key());
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRotated, at(2));
    let rotated = credentials
        .rotate(&a.owner, a.agent_id, c.credential_id, &new_key, &e)
        .await
        .unwrap();
    let expected = Credential {
        key: new_key.clone(),
        ..c.clone()
    };
    assert_eq!(rotated, expected);
    assert_eq!(
        credentials
            .find(&a.owner, a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        credentials.find_public_keys(a.agent_id).await.unwrap(),
        vec![expected.clone()]
    );
    assert_event_stored(&audit, &e).await;

    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, at(3));
    let revoked = credentials
        .revoke(&a.owner, a.agent_id, c.credential_id, at(3), &e)
        .await
        .unwrap();
    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRotated, at(4));
    let result = credentials
        .rotate(
            &a.owner,
            a.agent_id,
            c.credential_id,
            &CredentialKey::PublicKey(fixtures::public_key()),
            &e,
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::CredentialRevoked)),
        "{result:?}"
    );
    assert_event_absent(&audit, &e).await;
    assert_eq!(
        credentials
            .find(&a.owner, a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(revoked)
    );
}

/// `rotate` with a key of the other type (a public key for a secret, a
/// secret for a public key) is `NotFound`, changes nothing and appends no
/// event.
pub async fn credential_rotate_refuses_the_other_type(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditLog>,
) {
    let a = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    let secret = credential(&a, at(1), None);
    let key = fixtures::public_key_credential(&a, at(2), None);
    create_credential(&credentials, &secret, at(2)).await;
    create_credential(&credentials, &key, at(2)).await;

    for (c, other_type) in [
        (&secret, CredentialKey::PublicKey(fixtures::public_key())),
        (&key, fixtures::secret_key(Some("abcd"))),
    ] {
        let e = event(&a.owner, a.agent_id, AuditAction::CredentialRotated, at(3));
        let result = credentials
            .rotate(&a.owner, a.agent_id, c.credential_id, &other_type, &e)
            .await;
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
        assert_event_absent(&audit, &e).await;
        assert_eq!(
            credentials
                .find(&a.owner, a.agent_id, c.credential_id)
                .await
                .unwrap()
                .as_ref(),
            Some(c)
        );
    }
    assert_eq!(
        credentials.find_public_keys(a.agent_id).await.unwrap(),
        vec![key.clone()]
    );
    let hinted = credentials.find_by_hint(a.agent_id, "abcd").await.unwrap();
    assert!(hinted.is_empty(), "{hinted:?}");
}

/// `subject_state` reads the agent's owner and status and whether the
/// credential is revoked; `None` when either is unknown or the credential is
/// another agent's.
pub async fn credential_subject_state(
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
) {
    let now = at(10);
    let a = agent(&owner(), at(0));
    let b = agent(&owner(), at(0));
    create_agent(&agents, &a).await;
    create_agent(&agents, &b).await;
    let c = credential(&a, at(1), None);
    let d = credential(&b, at(1), None);
    create_credential(&credentials, &c, now).await;
    create_credential(&credentials, &d, now).await;

    let state = |status, revoked| SubjectState {
        owner: a.owner.clone(),
        agent_status: status,
        credential_revoked: revoked,
    };
    assert_eq!(
        credentials
            .subject_state(a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(state(AgentStatus::Active, false))
    );

    let e = event(&a.owner, a.agent_id, AuditAction::CredentialRevoked, now);
    credentials
        .revoke(&a.owner, a.agent_id, c.credential_id, now, &e)
        .await
        .unwrap();
    assert_eq!(
        credentials
            .subject_state(a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(state(AgentStatus::Active, true))
    );

    suspend(&agents, &a, at(11)).await;
    assert_eq!(
        credentials
            .subject_state(a.agent_id, c.credential_id)
            .await
            .unwrap(),
        Some(state(AgentStatus::Suspended, true))
    );

    assert_eq!(
        credentials
            .subject_state(a.agent_id, d.credential_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        credentials
            .subject_state(b.agent_id, c.credential_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        credentials
            .subject_state(AgentId(Uuid::new_v4()), c.credential_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        credentials
            .subject_state(a.agent_id, CredentialId(Uuid::new_v4()))
            .await
            .unwrap(),
        None
    );

    decommission(&agents, &b, at(12)).await;
    let decommissioned = credentials
        .subject_state(b.agent_id, d.credential_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decommissioned.owner, b.owner);
    assert_eq!(decommissioned.agent_status, AgentStatus::Decommissioned);
    assert!(decommissioned.credential_revoked);
}

// ---------------------------------------------------------------------------
// AuditLog

/// `append` stores every field as given; `list` shows only the owner's events,
/// newest first (`timestamp` then `event_id`, descending), paged with a total;
/// `find` answers the owner's event at or after `not_before`, else `None`.
pub async fn audit_append_list_find(audit: Arc<dyn AuditLog>) {
    let owner = owner();
    let subject = AgentId(Uuid::new_v4());
    let mut made = Vec::new();
    for (i, seconds) in [0, 50, 10, 50, 30, 20, 50].into_iter().enumerate() {
        let mut e = event(&owner, subject, AuditAction::TokenIssued, at(seconds));
        e.metadata = json!({"i": i, "scope": "a b"});
        if i == 1 {
            e.actor_id = None;
            e.ip_address = None;
            e.user_agent = None;
            e.outcome = Outcome::Failure;
            e.action = AuditAction::AuthFailed;
        }
        audit.append(&e).await.unwrap();
        made.push(e);
    }
    let stranger = owner_with_events(&audit, subject).await;
    let mut ownerless = event(&owner, subject, AuditAction::AuthFailed, at(60));
    ownerless.owner = None;
    audit.append(&ownerless).await.unwrap();

    made.sort_by_key(|v| std::cmp::Reverse((v.timestamp, v.event_id)));
    let everything = audit
        .list(&owner, &AuditFilter::default(), page(1, 100))
        .await
        .unwrap();
    assert_eq!(
        everything.items.iter().map(unchained).collect::<Vec<_>>(),
        made,
        "newest first, then event_id descending, every field kept"
    );
    assert_eq!(everything.total, made.len() as u64);

    let paged = collect_pages(2, made.len() as u64, |request| {
        let audit = Arc::clone(&audit);
        let owner = owner.clone();
        async move {
            audit
                .list(&owner, &AuditFilter::default(), request)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(paged.iter().map(unchained).collect::<Vec<_>>(), made);

    let target = made.iter().find(|e| e.timestamp == at(30)).unwrap();
    assert_eq!(
        audit
            .find(&owner, target.event_id, at(29))
            .await
            .unwrap()
            .as_ref()
            .map(unchained)
            .as_ref(),
        Some(target)
    );
    assert_eq!(
        audit
            .find(&owner, target.event_id, at(30))
            .await
            .unwrap()
            .as_ref()
            .map(unchained)
            .as_ref(),
        Some(target),
        "not_before is inclusive"
    );
    assert_eq!(
        audit.find(&owner, target.event_id, at(31)).await.unwrap(),
        None
    );
    assert_eq!(
        audit
            .find(&stranger, target.event_id, long_ago())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        audit
            .find(&owner, EventId(Uuid::new_v4()), long_ago())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        audit
            .find(&owner, ownerless.event_id, long_ago())
            .await
            .unwrap(),
        None
    );
}

/// A new owner with one event about `subject`, for tenancy checks.
async fn owner_with_events(audit: &Arc<dyn AuditLog>, subject: AgentId) -> Owner {
    let stranger = owner();
    audit
        .append(&event(&stranger, subject, AuditAction::TokenIssued, at(40)))
        .await
        .unwrap();
    stranger
}

/// Each filter of `list` (agent, action, outcome, from, to, inclusive bounds,
/// combinations) keeps exactly the owner's matching events, with their total.
pub async fn audit_list_filters(audit: Arc<dyn AuditLog>) {
    let owner = owner();
    let first = AgentId(Uuid::new_v4());
    let second = AgentId(Uuid::new_v4());
    let specs = [
        (first, AuditAction::AgentCreated, Outcome::Success, 0),
        (first, AuditAction::TokenIssued, Outcome::Success, 10),
        (first, AuditAction::AuthFailed, Outcome::Failure, 20),
        (second, AuditAction::TokenIssued, Outcome::Success, 30),
        (second, AuditAction::AuthFailed, Outcome::Failure, 40),
        (second, AuditAction::TokenRevoked, Outcome::Success, 50),
    ];
    let mut made = Vec::new();
    for (agent_id, action, outcome, seconds) in specs {
        let mut e = event(&owner, agent_id, action, at(seconds));
        e.outcome = outcome;
        audit.append(&e).await.unwrap();
        made.push(e);
    }
    owner_with_events(&audit, first).await;
    made.sort_by_key(|v| std::cmp::Reverse((v.timestamp, v.event_id)));

    let filters = [
        AuditFilter {
            agent_id: Some(first),
            ..AuditFilter::default()
        },
        AuditFilter {
            agent_id: Some(AgentId(Uuid::new_v4())),
            ..AuditFilter::default()
        },
        AuditFilter {
            action: Some(AuditAction::TokenIssued),
            ..AuditFilter::default()
        },
        AuditFilter {
            action: Some(AuditAction::CredentialRotated),
            ..AuditFilter::default()
        },
        AuditFilter {
            outcome: Some(Outcome::Failure),
            ..AuditFilter::default()
        },
        AuditFilter {
            outcome: Some(Outcome::Success),
            ..AuditFilter::default()
        },
        AuditFilter {
            from: Some(at(20)),
            ..AuditFilter::default()
        },
        AuditFilter {
            to: Some(at(20)),
            ..AuditFilter::default()
        },
        AuditFilter {
            from: Some(at(10)),
            to: Some(at(40)),
            ..AuditFilter::default()
        },
        AuditFilter {
            from: Some(at(11)),
            to: Some(at(19)),
            ..AuditFilter::default()
        },
        AuditFilter {
            agent_id: Some(second),
            action: Some(AuditAction::AuthFailed),
            outcome: Some(Outcome::Failure),
            from: Some(at(40)),
            to: Some(at(40)),
        },
        AuditFilter {
            agent_id: Some(first),
            outcome: Some(Outcome::Success),
            to: Some(at(5)),
            ..AuditFilter::default()
        },
    ];
    for filter in filters {
        let expected: Vec<EventId> = made
            .iter()
            .filter(|e| filter.agent_id.is_none_or(|id| e.agent_id == Some(id)))
            .filter(|e| filter.action.is_none_or(|a| e.action == a))
            .filter(|e| filter.outcome.is_none_or(|o| e.outcome == o))
            .filter(|e| filter.from.is_none_or(|from| e.timestamp >= from))
            .filter(|e| filter.to.is_none_or(|to| e.timestamp <= to))
            .map(|e| e.event_id)
            .collect();
        let listed = audit.list(&owner, &filter, page(1, 100)).await.unwrap();
        assert_eq!(event_ids(&listed), expected, "{filter:?}");
        assert_eq!(listed.total, expected.len() as u64, "{filter:?}");
    }
}

/// History cannot be rewritten through `append`: a second event with an
/// existing `event_id` is refused and the stored event stays as it was.
pub async fn audit_append_never_overwrites(audit: Arc<dyn AuditLog>) {
    let owner = owner();
    let original = event(
        &owner,
        AgentId(Uuid::new_v4()),
        AuditAction::TokenIssued,
        at(0),
    );
    audit.append(&original).await.unwrap();
    let forged = AuditEvent {
        action: AuditAction::AuthFailed,
        outcome: Outcome::Failure,
        metadata: json!({"forged": true}),
        ..original.clone()
    };
    let result = audit.append(&forged).await;
    assert!(result.is_err(), "appending an existing event id must fail");
    assert_event_stored(&audit, &original).await;
}

/// `append_all` stores every event of the batch exactly as given (optional
/// fields absent or present, ownerless events, failures, equal timestamps),
/// listed like events appended one by one; an empty batch writes nothing and
/// succeeds; a batch larger than one statement's worth is stored whole.
/// `tokens_issued_since` counts `token.issued` events per agent and successful
/// `token.exchanged` events per actor from `since` on (inclusive), across
/// owners, and nothing else.
pub async fn audit_tokens_issued_since(audit: Arc<dyn AuditLog>) {
    let (first, second) = (owner(), owner());
    let (a, b, c) = (
        AgentId(Uuid::new_v4()),
        AgentId(Uuid::new_v4()),
        AgentId(Uuid::new_v4()),
    );
    let events = [
        // c exchanges a's token: one token for c, none for a.
        exchanged(&first, a, c, Outcome::Success, at(8)),
        exchanged(&first, a, c, Outcome::Failure, at(9)),
        event(&first, a, AuditAction::TokenIssued, at(0)),
        event(&first, a, AuditAction::TokenIssued, at(10)),
        event(&first, a, AuditAction::AuthFailed, at(15)),
        event(&first, a, AuditAction::TokenIssued, at(20)),
        event(&second, b, AuditAction::TokenIssued, at(5)),
        event(&second, b, AuditAction::TokenRevoked, at(6)),
        event(&second, b, AuditAction::TokenIssued, at(30)),
        event(&second, c, AuditAction::TokenIssued, at(4)),
    ];
    for e in &events {
        audit.append(e).await.unwrap();
    }

    let mut counts: Vec<(AgentId, u64)> = audit
        .tokens_issued_since(at(5))
        .await
        .unwrap()
        .into_iter()
        .filter(|(agent, _)| [a, b, c].contains(agent))
        .collect();
    counts.sort();
    let mut expected = vec![(a, 2), (b, 2), (c, 1)];
    expected.sort();
    assert_eq!(counts, expected);
    assert!(
        audit
            .tokens_issued_since(at(31))
            .await
            .unwrap()
            .iter()
            .all(|(agent, _)| ![a, b, c].contains(agent))
    );
}

/// `tokens_issued_by` counts one agent's `token.issued` events of one owner
/// and the successful `token.exchanged` events it acted in, at or after
/// `since`: nothing of another action, outcome, agent or owner.
pub async fn audit_tokens_issued_by(audit: Arc<dyn AuditLog>) {
    let (mine, other_owner) = (owner(), owner());
    let (a, b) = (AgentId(Uuid::new_v4()), AgentId(Uuid::new_v4()));
    let events = [
        // b exchanges a's token twice (once refused), a exchanges b's once.
        exchanged(&mine, a, b, Outcome::Success, at(13)),
        exchanged(&mine, a, b, Outcome::Failure, at(14)),
        exchanged(&mine, b, a, Outcome::Success, at(25)),
        exchanged(&other_owner, b, a, Outcome::Success, at(26)),
        event(&mine, a, AuditAction::TokenIssued, at(0)),
        event(&mine, a, AuditAction::TokenIssued, at(10)),
        event(&mine, a, AuditAction::AuthFailed, at(11)),
        event(&mine, a, AuditAction::TokenRevoked, at(12)),
        event(&mine, a, AuditAction::TokenIssued, at(20)),
        event(&mine, b, AuditAction::TokenIssued, at(15)),
        event(&other_owner, a, AuditAction::TokenIssued, at(16)),
    ];
    for e in &events {
        audit.append(e).await.unwrap();
    }
    assert_eq!(audit.tokens_issued_by(&mine, a, at(0)).await.unwrap(), 4);
    assert_eq!(audit.tokens_issued_by(&mine, a, at(10)).await.unwrap(), 3);
    assert_eq!(audit.tokens_issued_by(&mine, a, at(21)).await.unwrap(), 1);
    assert_eq!(audit.tokens_issued_by(&mine, a, at(26)).await.unwrap(), 0);
    assert_eq!(audit.tokens_issued_by(&mine, b, at(0)).await.unwrap(), 2);
    assert_eq!(
        audit
            .tokens_issued_by(&other_owner, a, at(0))
            .await
            .unwrap(),
        2,
        "the owner is part of the query (one token issued, one exchanged there)"
    );
    assert_eq!(
        audit
            .tokens_issued_by(&owner(), AgentId(Uuid::new_v4()), at(0))
            .await
            .unwrap(),
        0
    );
}

pub async fn audit_append_all(audit: Arc<dyn AuditLog>) {
    audit.append_all(&[]).await.unwrap();

    let large_owner = owner();
    let owner = owner();
    let subject = AgentId(Uuid::new_v4());
    let mut batch = Vec::new();
    for (i, seconds) in [5, 0, 5, 3, 5, 1].into_iter().enumerate() {
        let mut e = event(&owner, subject, AuditAction::TokenIssued, at(seconds));
        e.metadata = json!({"i": i, "scope": "a b", "nested": {"list": [i]}});
        if i % 2 == 1 {
            e.actor_id = None;
            e.ip_address = None;
            e.user_agent = None;
            e.outcome = Outcome::Failure;
            e.action = AuditAction::AuthFailed;
            e.metadata = json!({});
        }
        batch.push(e);
    }
    let mut ownerless = event(&owner, subject, AuditAction::AuthFailed, at(6));
    ownerless.owner = None;
    let other_owner = owner_with_events(&audit, subject).await;
    let foreign = event(&other_owner, subject, AuditAction::TokenIssued, at(7));
    let mut all = batch.clone();
    all.push(ownerless.clone());
    all.push(foreign.clone());

    audit.append_all(&all).await.unwrap();

    for e in &batch {
        assert_event_stored(&audit, e).await;
    }
    assert_event_stored(&audit, &foreign).await;
    assert_eq!(
        audit
            .find(&owner, ownerless.event_id, long_ago())
            .await
            .unwrap(),
        None,
        "an ownerless event is no tenant's"
    );
    let mut expected = batch.clone();
    expected.sort_by_key(|v| std::cmp::Reverse((v.timestamp, v.event_id)));
    let listed = audit
        .list(&owner, &AuditFilter::default(), page(1, 100))
        .await
        .unwrap();
    assert_eq!(
        listed.items.iter().map(unchained).collect::<Vec<_>>(),
        expected,
        "every field kept, listed as usual"
    );
    assert_eq!(listed.total, batch.len() as u64);

    const LARGE: usize = 2_345;
    let large: Vec<AuditEvent> = (0..LARGE)
        .map(|i| {
            let mut e = event(
                &large_owner,
                subject,
                AuditAction::TokenIssued,
                at(i as i64),
            );
            e.metadata = json!({ "i": i });
            e
        })
        .collect();
    audit.append_all(&large).await.unwrap();
    let listed = audit
        .list(&large_owner, &AuditFilter::default(), page(1, 100))
        .await
        .unwrap();
    assert_eq!(listed.total, LARGE as u64);
    assert_eq!(unchained(&listed.items[0]), large[LARGE - 1]);
    assert_event_stored(&audit, &large[0]).await;
    assert_event_stored(&audit, &large[LARGE / 2]).await;
}

/// `append_all` is all or none and never rewrites history: a batch holding an
/// event whose `event_id` is already stored, or two events with one
/// `event_id`, fails and stores none of its events (however large the batch),
/// and the stored event stays as it was.
pub async fn audit_append_all_is_all_or_none(audit: Arc<dyn AuditLog>) {
    let owner = owner();
    let subject = AgentId(Uuid::new_v4());
    let original = event(&owner, subject, AuditAction::TokenIssued, at(0));
    audit.append(&original).await.unwrap();
    let forged = AuditEvent {
        action: AuditAction::AuthFailed,
        outcome: Outcome::Failure,
        metadata: json!({"forged": true}),
        ..original.clone()
    };

    for size in [3, 1_500] {
        let fresh: Vec<AuditEvent> = (0..size)
            .map(|i| event(&owner, subject, AuditAction::TokenIssued, at(i + 1)))
            .collect();

        let mut with_existing = fresh.clone();
        with_existing.insert(with_existing.len() / 2, forged.clone());
        let result = audit.append_all(&with_existing).await;
        assert!(result.is_err(), "an existing event id must fail the batch");

        let mut with_twice = fresh.clone();
        with_twice.push(fresh[0].clone());
        let result = audit.append_all(&with_twice).await;
        assert!(result.is_err(), "an event id twice must fail the batch");

        for e in [&fresh[0], &fresh[fresh.len() - 1]] {
            assert_event_absent(&audit, e).await;
        }
        let listed = audit
            .list(&owner, &AuditFilter::default(), page(1, 10))
            .await
            .unwrap();
        assert_eq!(listed.total, 1, "batch of {size}: nothing of it stored");
        assert_event_stored(&audit, &original).await;
    }
}

/// Audit immutability, as far as the port can express it: [`AuditLog`] has
/// only `append`, `append_all` (with a default built on `append`) and reads
/// (`list`, `find`, the token counts, the chain reads), so no caller can
/// update or delete an event through it. This function compiles only while an
/// implementation of `append` and the reads alone is a complete `AuditLog`:
/// adding an `update` or `delete` to the port breaks the build here. (That the database itself
/// refuses is each adapter's own test.)
pub async fn audit_log_port_has_no_update_or_delete() {
    /// A log that can only append and read.
    struct AppendOnly;

    type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

    // Written out as `#[async_trait]` expands it, as this crate does not
    // depend on async-trait.
    impl AuditLog for AppendOnly {
        fn append<'life0, 'life1, 'async_trait>(
            &'life0 self,
            _event: &'life1 AuditEvent,
        ) -> Answer<'async_trait, ()>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Ok(()) })
        }

        fn list<'life0, 'life1, 'life2, 'async_trait>(
            &'life0 self,
            _owner: &'life1 Owner,
            _filter: &'life2 AuditFilter,
            page: PageRequest,
        ) -> Answer<'async_trait, Page<AuditEvent>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            'life2: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                Ok(Page {
                    items: Vec::new(),
                    request: page,
                    total: 0,
                })
            })
        }

        fn find<'life0, 'life1, 'async_trait>(
            &'life0 self,
            _owner: &'life1 Owner,
            _id: EventId,
            _not_before: DateTime<Utc>,
        ) -> Answer<'async_trait, Option<AuditEvent>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Ok(None) })
        }

        fn tokens_issued_since<'life0, 'async_trait>(
            &'life0 self,
            _since: DateTime<Utc>,
        ) -> Answer<'async_trait, Vec<(AgentId, u64)>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn tokens_issued_by<'life0, 'life1, 'async_trait>(
            &'life0 self,
            _owner: &'life1 Owner,
            _agent: AgentId,
            _since: DateTime<Utc>,
        ) -> Answer<'async_trait, u64>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Ok(0) })
        }

        fn chain_page<'life0, 'life1, 'async_trait>(
            &'life0 self,
            _owner: &'life1 Owner,
            _from_sequence: u64,
            _limit: usize,
        ) -> Answer<'async_trait, Vec<AuditEvent>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn chain_head<'life0, 'life1, 'async_trait>(
            &'life0 self,
            _owner: &'life1 Owner,
        ) -> Answer<'async_trait, Option<ChainHead>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Ok(None) })
        }

        fn chain_owners<'life0, 'async_trait>(&'life0 self) -> Answer<'async_trait, Vec<Owner>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    let log: Arc<dyn AuditLog> = Arc::new(AppendOnly);
    let owner = owner();
    log.append(&event(
        &owner,
        AgentId(Uuid::new_v4()),
        AuditAction::TokenIssued,
        at(0),
    ))
    .await
    .unwrap();
    assert_eq!(
        log.list(&owner, &AuditFilter::default(), PageRequest::default())
            .await
            .unwrap()
            .total,
        0
    );
}

// ---------------------------------------------------------------------------
// RevokedTokenStore

/// `revoke` records the token and appends its event once; revoking it again
/// answers `false` and writes nothing. `unexpired(now)` holds exactly the
/// revocations whose token expires after `now`.
pub async fn revoked_token_store(
    revoked_tokens: Arc<dyn RevokedTokenStore>,
    audit: Arc<dyn AuditLog>,
) {
    let owner = owner();
    let subject = AgentId(Uuid::new_v4());
    let live = RevokedToken {
        token_id: TokenId(Uuid::new_v4()),
        expires_at: at(3_600),
    };
    let short = RevokedToken {
        token_id: TokenId(Uuid::new_v4()),
        expires_at: at(60),
    };

    let e = event(&owner, subject, AuditAction::TokenRevoked, at(0));
    assert!(revoked_tokens.revoke(&owner, &live, &e).await.unwrap());
    assert_event_stored(&audit, &e).await;
    let again = event(&owner, subject, AuditAction::TokenRevoked, at(1));
    assert!(
        !revoked_tokens.revoke(&owner, &live, &again).await.unwrap(),
        "second revocation answers false"
    );
    assert_event_absent(&audit, &again).await;
    let e = event(&owner, subject, AuditAction::TokenRevoked, at(2));
    assert!(revoked_tokens.revoke(&owner, &short, &e).await.unwrap());

    let ids = |tokens: Vec<RevokedToken>| -> Vec<RevokedToken> {
        tokens
            .into_iter()
            .filter(|t| t.token_id == live.token_id || t.token_id == short.token_id)
            .collect()
    };
    let mut now_live = ids(revoked_tokens.unexpired(at(10)).await.unwrap());
    now_live.sort_by_key(|t| t.expires_at);
    assert_eq!(now_live, vec![short.clone(), live.clone()]);
    assert_eq!(
        ids(revoked_tokens.unexpired(at(60)).await.unwrap()),
        vec![live.clone()],
        "a token expiring at now is expired"
    );
    assert_eq!(
        ids(revoked_tokens.unexpired(at(3_599)).await.unwrap()),
        vec![live.clone()]
    );
    assert!(ids(revoked_tokens.unexpired(at(3_600)).await.unwrap()).is_empty());
}
