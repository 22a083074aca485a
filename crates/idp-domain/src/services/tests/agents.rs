//! `AgentService`: registration, reads, updates and decommissioning.

use std::sync::Arc;

use serde_json::json;

use super::fixtures::*;
use crate::audit::AuditEvent;
use crate::entities::Agent;
use crate::page::{Page, PageRequest};
use crate::ports::{AgentFilter, MockAgentRepository, UpdateOutcome};
use crate::services::{AgentPatch, AgentService, Limits, NewAgent};
use crate::values::{
    AgentId, AgentStatus, AgentType, AuditAction, Delegates, DeploymentEnv, Email, EventId,
    MANAGEMENT_SCOPES, Outcome, Resources, SemVer,
};
use crate::{DomainError, StoreError};

fn service(agents: MockAgentRepository) -> AgentService {
    AgentService::new(Arc::new(agents), ambient(), limits())
}

fn new_agent(capabilities: &[&str]) -> NewAgent {
    NewAgent {
        email: Email::parse("Classifier-7@Acme.Example").unwrap(),
        agent_type: AgentType::Classifier,
        version: SemVer::parse("2.0.0-rc.1").unwrap(),
        capabilities: caps(capabilities),
        deployment_env: DeploymentEnv::Staging,
        owner: None,
        resources: Resources::parse(&["https://api.example/mcp"]).unwrap(),
        require_dpop: true,
        delegates: Delegates::default(),
    }
}

/// The agent store finds `agent` for the caller's owner, once.
fn finds(agents: &mut MockAgentRepository, agent: Option<Agent>) {
    agents
        .expect_find()
        .withf(|o, id| *o == owner() && *id == TARGET)
        .times(1)
        .returning(move |_, _| Ok(agent.clone()));
}

// ----- register ------------------------------------------------------------

#[tokio::test]
async fn register_creates_an_active_agent_of_the_callers_owner_stamped_now() {
    let caller = caller(&["agents:write"]);
    let ctx = ctx_of(&caller);
    let new_id = AgentId(generated_id(1));
    let expected = Agent {
        agent_id: new_id,
        email: Email::parse("Classifier-7@Acme.Example").unwrap(),
        agent_type: AgentType::Classifier,
        version: SemVer::parse("2.0.0-rc.1").unwrap(),
        capabilities: caps(&["resume:read", "files:write"]),
        owner: owner(),
        deployment_env: DeploymentEnv::Staging,
        status: AgentStatus::Active,
        resources: Resources::parse(&["https://api.example/mcp"]).unwrap(),
        require_dpop: true,
        delegates: Delegates::default(),
        created_at: now(),
        updated_at: now(),
    };
    let expected_event = AuditEvent {
        event_id: EventId(generated_id(2)),
        owner: Some(owner()),
        agent_id: Some(new_id),
        actor_id: Some(CALLER),
        action: AuditAction::AgentCreated,
        outcome: Outcome::Success,
        ip_address: ctx.ip_address.clone(),
        user_agent: ctx.user_agent.clone(),
        metadata: json!({ "agentType": "classifier", "deploymentEnv": "staging" }),
        timestamp: now(),
        sequence: None,
        hash: None,
    };
    let mut agents = MockAgentRepository::new();
    let stored = expected.clone();
    agents
        .expect_create()
        .withf(move |agent, limit, event| {
            *agent == stored && *limit == 7 && *event == expected_event
        })
        .times(1)
        .returning(|_, _, _| Ok(()));

    let created = service(agents)
        .register(&caller, new_agent(&["resume:read", "files:write"]), &ctx)
        .await
        .unwrap();

    assert_eq!(created, expected);
}

#[tokio::test]
async fn register_passes_the_configured_agent_limit_to_the_store() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_create()
        .withf(|_, limit, _| *limit == 42)
        .times(1)
        .returning(|_, _, _| Ok(()));
    let service = AgentService::new(
        Arc::new(agents),
        ambient(),
        Limits {
            max_agents_per_owner: 42,
            ..limits()
        },
    );
    let caller = caller(&["agents:write"]);

    service
        .register(&caller, new_agent(&["resume:read"]), &ctx_of(&caller))
        .await
        .unwrap();
}

#[tokio::test]
async fn register_accepts_the_callers_own_owner_named_explicitly() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_create()
        .withf(|agent, _, event| agent.owner == owner() && event.owner == Some(owner()))
        .times(1)
        .returning(|_, _, _| Ok(()));
    let caller = caller(&["agents:write"]);
    let new = NewAgent {
        owner: Some(owner()),
        ..new_agent(&["resume:read"])
    };

    let created = service(agents)
        .register(&caller, new, &ctx_of(&caller))
        .await
        .unwrap();

    assert_eq!(created.owner, owner());
}

#[tokio::test]
async fn register_refuses_a_foreign_owner_without_touching_the_store() {
    let mut agents = MockAgentRepository::new();
    agents.expect_create().never();
    let caller = caller(&MANAGEMENT_SCOPES);
    let new = NewAgent {
        owner: Some(other_owner()),
        ..new_agent(&["resume:read"])
    };

    let err = service(agents)
        .register(&caller, new, &ctx_of(&caller))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Authorization(_)), "{err:?}");
}

#[tokio::test]
async fn register_refuses_each_management_scope_the_caller_lacks() {
    for missing in MANAGEMENT_SCOPES {
        let held: Vec<&str> = MANAGEMENT_SCOPES
            .into_iter()
            .filter(|s| *s != missing)
            .collect();
        let caller = caller(&held);
        let mut agents = MockAgentRepository::new();
        agents.expect_create().never();

        let err = service(agents)
            .register(
                &caller,
                new_agent(&["resume:read", missing]),
                &ctx_of(&caller),
            )
            .await
            .unwrap_err();

        match err {
            DomainError::Authorization(reason) => assert!(reason.contains(missing), "{reason}"),
            other => panic!("{missing}: expected Authorization, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn register_grants_management_scopes_the_caller_holds() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_create()
        .withf(|agent, _, _| agent.capabilities == caps(&["agents:read", "audit:read"]))
        .times(1)
        .returning(|_, _, _| Ok(()));
    let caller = caller(&["agents:write", "agents:read", "audit:read"]);

    service(agents)
        .register(
            &caller,
            new_agent(&["agents:read", "audit:read"]),
            &ctx_of(&caller),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn register_needs_no_scope_for_ordinary_capabilities() {
    let mut agents = MockAgentRepository::new();
    agents.expect_create().times(1).returning(|_, _, _| Ok(()));
    let caller = caller(&[]);

    service(agents)
        .register(
            &caller,
            new_agent(&["resume:read", "files.v2:write:*", "agents"]),
            &ctx_of(&caller),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn register_maps_a_duplicate_email_to_agent_already_exists() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_create()
        .times(1)
        .returning(|_, _, _| Err(StoreError::Duplicate));
    let caller = caller(&["agents:write"]);

    let err = service(agents)
        .register(&caller, new_agent(&["resume:read"]), &ctx_of(&caller))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentAlreadyExists), "{err:?}");
}

#[tokio::test]
async fn register_maps_the_agent_limit_to_free_tier_limit_exceeded() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_create()
        .times(1)
        .returning(|_, _, _| Err(StoreError::LimitExceeded));
    let caller = caller(&["agents:write"]);

    let err = service(agents)
        .register(&caller, new_agent(&["resume:read"]), &ctx_of(&caller))
        .await
        .unwrap_err();

    assert!(
        matches!(err, DomainError::FreeTierLimitExceeded(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn register_reports_an_unreachable_store_as_unavailable() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_create()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    let caller = caller(&["agents:write"]);

    let err = service(agents)
        .register(&caller, new_agent(&["resume:read"]), &ctx_of(&caller))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

// ----- list and get ----------------------------------------------------------

#[tokio::test]
async fn list_asks_for_the_callers_owner_with_the_filter_and_page() {
    let filter = AgentFilter {
        status: Some(AgentStatus::Suspended),
        agent_type: Some(AgentType::Screener),
        deployment_env: Some(DeploymentEnv::Production),
    };
    let page = PageRequest::new(Some(3), Some(5)).unwrap();
    let expected_filter = filter.clone();
    let mut agents = MockAgentRepository::new();
    agents
        .expect_list()
        .withf(move |o, f, p| *o == owner() && *f == expected_filter && *p == page)
        .times(1)
        .returning(move |_, _, p| {
            Ok(Page {
                items: vec![agent(AgentStatus::Suspended, &["resume:read"])],
                request: p,
                total: 11,
            })
        });

    let listed = service(agents)
        .list(&caller(&["agents:read"]), &filter, page)
        .await
        .unwrap();

    assert_eq!(listed.total, 11);
    assert_eq!(listed.request, page);
    assert_eq!(
        listed.items,
        vec![agent(AgentStatus::Suspended, &["resume:read"])]
    );
}

#[tokio::test]
async fn get_asks_for_the_callers_owner() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));

    let found = service(agents)
        .get(&caller(&["agents:read"]), TARGET)
        .await
        .unwrap();

    assert_eq!(found, active_agent());
}

#[tokio::test]
async fn get_of_a_missing_or_foreign_agent_is_agent_not_found() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, None);

    let err = service(agents)
        .get(&caller(&["agents:read"]), TARGET)
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn get_returns_a_decommissioned_agent() {
    let gone = agent(AgentStatus::Decommissioned, &["resume:read"]);
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(gone.clone()));

    let found = service(agents)
        .get(&caller(&["agents:read"]), TARGET)
        .await
        .unwrap();

    assert_eq!(found, gone);
}

#[tokio::test]
async fn get_reports_an_unreachable_store_as_unavailable() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_find()
        .times(1)
        .returning(|_, _| Err(unavailable()));

    let err = service(agents)
        .get(&caller(&["agents:read"]), TARGET)
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

// ----- update ----------------------------------------------------------------

async fn update(
    agents: MockAgentRepository,
    held: &[&str],
    patch: AgentPatch,
) -> Result<Agent, DomainError> {
    let caller = caller(held);
    service(agents)
        .update(&caller, TARGET, patch, &ctx_of(&caller))
        .await
}

fn version_patch() -> AgentPatch {
    AgentPatch {
        version: Some(SemVer::parse("1.5.0").unwrap()),
        ..AgentPatch::default()
    }
}

fn status_patch(status: AgentStatus) -> AgentPatch {
    AgentPatch {
        status: Some(status),
        ..AgentPatch::default()
    }
}

#[tokio::test]
async fn update_with_an_empty_patch_is_a_validation_error_before_any_read() {
    let mut agents = MockAgentRepository::new();
    agents.expect_find().never();
    agents.expect_update().never();

    let err = update(agents, &["agents:write"], AgentPatch::default())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Validation(_)), "{err:?}");
}

#[tokio::test]
async fn update_to_decommissioned_is_a_validation_error_before_any_read() {
    let mut agents = MockAgentRepository::new();
    agents.expect_find().never();
    agents.expect_update().never();

    let err = update(
        agents,
        &["agents:write"],
        status_patch(AgentStatus::Decommissioned),
    )
    .await
    .unwrap_err();

    match err {
        DomainError::Validation(e) => assert_eq!(e.field, "status"),
        other => panic!("expected Validation, got {other:?}"),
    }
}

#[tokio::test]
async fn update_of_a_missing_agent_is_agent_not_found() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, None);
    agents.expect_update().never();

    let err = update(agents, &["agents:write"], version_patch())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn update_of_a_decommissioned_agent_is_agent_decommissioned() {
    let mut agents = MockAgentRepository::new();
    finds(
        &mut agents,
        Some(agent(AgentStatus::Decommissioned, &["resume:read"])),
    );
    agents.expect_update().never();

    let err = update(agents, &["agents:write"], version_patch())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentDecommissioned), "{err:?}");
}

#[tokio::test]
async fn update_refuses_a_new_management_scope_the_caller_lacks() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    agents.expect_update().never();
    let patch = AgentPatch {
        capabilities: Some(caps(&["resume:read", "agents:read", "audit:read"])),
        ..AgentPatch::default()
    };

    let err = update(agents, &["agents:write"], patch).await.unwrap_err();

    match err {
        DomainError::Authorization(reason) => {
            assert!(reason.contains("audit:read"), "{reason}");
            assert!(
                !reason.contains("agents:read"),
                "kept scope named: {reason}"
            );
        }
        other => panic!("expected Authorization, got {other:?}"),
    }
}

#[tokio::test]
async fn update_checks_escalation_before_the_decommissioned_state() {
    // Contract section 1: authorization (403) comes before state (409).
    let mut agents = MockAgentRepository::new();
    finds(
        &mut agents,
        Some(agent(AgentStatus::Decommissioned, &["resume:read"])),
    );
    agents.expect_update().never();
    let patch = AgentPatch {
        capabilities: Some(caps(&["tokens:introspect"])),
        ..AgentPatch::default()
    };

    let err = update(agents, &["agents:write"], patch).await.unwrap_err();

    assert!(matches!(err, DomainError::Authorization(_)), "{err:?}");
}

#[tokio::test]
async fn update_lets_a_caller_keep_a_management_scope_it_does_not_hold() {
    // The agent already has agents:read; the caller (agents:write only) keeps it.
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    agents
        .expect_update()
        .withf(|_, agent, _| agent.capabilities == caps(&["agents:read", "summaries:write"]))
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Applied));
    let patch = AgentPatch {
        capabilities: Some(caps(&["agents:read", "summaries:write"])),
        ..AgentPatch::default()
    };

    let updated = update(agents, &["agents:write"], patch).await.unwrap();

    assert_eq!(
        updated.capabilities,
        caps(&["agents:read", "summaries:write"])
    );
}

#[tokio::test]
async fn update_lets_a_caller_drop_a_management_scope_it_does_not_hold() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    agents
        .expect_update()
        .withf(|_, agent, _| agent.capabilities == caps(&["resume:read"]))
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Applied));
    let patch = AgentPatch {
        capabilities: Some(caps(&["resume:read"])),
        ..AgentPatch::default()
    };

    update(agents, &["agents:write"], patch).await.unwrap();
}

#[tokio::test]
async fn update_grants_a_management_scope_the_caller_holds() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    agents
        .expect_update()
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Applied));
    let patch = AgentPatch {
        capabilities: Some(caps(&["resume:read", "audit:read"])),
        ..AgentPatch::default()
    };

    update(agents, &["agents:write", "audit:read"], patch)
        .await
        .unwrap();
}

#[tokio::test]
async fn suspending_writes_agent_suspended() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    let caller = caller(&["agents:write"]);
    let ctx = ctx_of(&caller);
    let expected = Agent {
        status: AgentStatus::Suspended,
        updated_at: now(),
        ..active_agent()
    };
    let expected_event = AuditEvent {
        event_id: EventId(generated_id(1)),
        owner: Some(owner()),
        agent_id: Some(TARGET),
        actor_id: Some(CALLER),
        action: AuditAction::AgentSuspended,
        outcome: Outcome::Success,
        ip_address: ctx.ip_address.clone(),
        user_agent: ctx.user_agent.clone(),
        metadata: json!({
            "fields": ["status"],
            "previousStatus": "active",
            "status": "suspended",
        }),
        timestamp: now(),
        sequence: None,
        hash: None,
    };
    let stored = expected.clone();
    agents
        .expect_update()
        .withf(move |read, agent, event| {
            *read == active_agent() && *agent == stored && *event == expected_event
        })
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Applied));

    let updated = service(agents)
        .update(&caller, TARGET, status_patch(AgentStatus::Suspended), &ctx)
        .await
        .unwrap();

    assert_eq!(updated, expected);
}

#[tokio::test]
async fn reactivating_writes_agent_reactivated() {
    let mut agents = MockAgentRepository::new();
    finds(
        &mut agents,
        Some(agent(AgentStatus::Suspended, &["resume:read"])),
    );
    agents
        .expect_update()
        .withf(|_, agent, event| {
            agent.status == AgentStatus::Active
                && is_event(
                    event,
                    AuditAction::AgentReactivated,
                    Outcome::Success,
                    TARGET,
                    Some(CALLER),
                )
                && event.metadata["previousStatus"] == "suspended"
                && event.metadata["status"] == "active"
        })
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Applied));

    let updated = update(agents, &["agents:write"], status_patch(AgentStatus::Active))
        .await
        .unwrap();

    assert_eq!(updated.status, AgentStatus::Active);
}

#[tokio::test]
async fn other_changes_write_agent_updated() {
    // (current status, patch): none of them moves between active and suspended.
    let cases = [
        (AgentStatus::Active, version_patch()),
        (AgentStatus::Active, status_patch(AgentStatus::Active)),
        (AgentStatus::Suspended, status_patch(AgentStatus::Suspended)),
        (AgentStatus::Suspended, version_patch()),
    ];
    for (status, patch) in cases {
        let mut agents = MockAgentRepository::new();
        finds(&mut agents, Some(agent(status, &["resume:read"])));
        agents
            .expect_update()
            .withf(move |_, agent, event| {
                agent.status == status
                    && is_event(
                        event,
                        AuditAction::AgentUpdated,
                        Outcome::Success,
                        TARGET,
                        Some(CALLER),
                    )
            })
            .times(1)
            .returning(|_, _, _| Ok(UpdateOutcome::Applied));

        update(agents, &["agents:write"], patch).await.unwrap();
    }
}

#[tokio::test]
async fn update_preserves_the_fields_it_does_not_change() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    let expected = Agent {
        version: SemVer::parse("1.5.0").unwrap(),
        updated_at: now(),
        ..active_agent()
    };
    let stored = expected.clone();
    agents
        .expect_update()
        .withf(move |_, agent, event| {
            *agent == stored
                && event.metadata
                    == json!({
                        "fields": ["version"],
                        "previousStatus": "active",
                        "status": "active",
                    })
        })
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Applied));

    let updated = update(agents, &["agents:write"], version_patch())
        .await
        .unwrap();

    assert_eq!(updated, expected);
}

#[tokio::test]
async fn update_applies_every_field_of_the_patch_and_keeps_the_immutable_ones() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    let patch = AgentPatch {
        email: Some(Email::parse("router-2@acme.example").unwrap()),
        agent_type: Some(AgentType::Router),
        version: Some(SemVer::parse("3.0.0").unwrap()),
        capabilities: Some(caps(&["routes:write"])),
        deployment_env: Some(DeploymentEnv::Development),
        status: Some(AgentStatus::Suspended),
        resources: Some(Resources::parse(&["urn:example:inventory"]).unwrap()),
        require_dpop: Some(true),
        delegates: Some(Delegates::default()),
    };
    let expected = Agent {
        agent_id: TARGET,
        email: Email::parse("router-2@acme.example").unwrap(),
        agent_type: AgentType::Router,
        version: SemVer::parse("3.0.0").unwrap(),
        capabilities: caps(&["routes:write"]),
        owner: owner(),
        deployment_env: DeploymentEnv::Development,
        status: AgentStatus::Suspended,
        resources: Resources::parse(&["urn:example:inventory"]).unwrap(),
        require_dpop: true,
        delegates: Delegates::default(),
        created_at: active_agent().created_at,
        updated_at: now(),
    };
    let stored = expected.clone();
    agents
        .expect_update()
        .withf(move |_, agent, event| {
            *agent == stored
                && event.action == AuditAction::AgentSuspended
                && event.metadata["fields"]
                    == json!([
                        "email",
                        "agentType",
                        "version",
                        "capabilities",
                        "deploymentEnv",
                        "status",
                        "resources",
                        "requireDpop",
                        "delegates"
                    ])
        })
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Applied));

    let updated = update(agents, &["agents:write"], patch).await.unwrap();

    assert_eq!(updated, expected);
}

#[tokio::test]
async fn update_maps_the_stores_not_found_to_agent_not_found() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    agents
        .expect_update()
        .times(1)
        .returning(|_, _, _| Err(StoreError::NotFound));

    let err = update(agents, &["agents:write"], version_patch())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn update_maps_an_email_clash_to_agent_already_exists() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    agents
        .expect_update()
        .times(1)
        .returning(|_, _, _| Err(StoreError::Duplicate));
    let patch = AgentPatch {
        email: Some(Email::parse("taken@acme.example").unwrap()),
        ..AgentPatch::default()
    };

    let err = update(agents, &["agents:write"], patch).await.unwrap_err();

    assert!(matches!(err, DomainError::AgentAlreadyExists), "{err:?}");
}

#[tokio::test]
async fn update_racing_a_decommission_is_agent_decommissioned() {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, Some(active_agent()));
    agents
        .expect_update()
        .times(1)
        .returning(|_, _, _| Err(StoreError::AgentDecommissioned));

    let err = update(agents, &["agents:write"], version_patch())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentDecommissioned), "{err:?}");
}

/// The store finds each of `reads` in turn, one per call.
fn finds_in_turn(agents: &mut MockAgentRepository, reads: Vec<Agent>) {
    let times = reads.len();
    let mut reads = reads.into_iter();
    agents
        .expect_find()
        .withf(|o, id| *o == owner() && *id == TARGET)
        .times(times)
        .returning(move |_, _| Ok(reads.next()));
}

#[tokio::test]
async fn a_stale_update_is_recomputed_from_a_fresh_read() {
    // Read active; a concurrent suspension lands; the version change must be
    // written on top of the suspension, not undo it.
    let suspended = agent(AgentStatus::Suspended, &["resume:read"]);
    let mut agents = MockAgentRepository::new();
    finds_in_turn(
        &mut agents,
        vec![
            agent(AgentStatus::Active, &["resume:read"]),
            suspended.clone(),
        ],
    );
    let seen = Captured::new();
    let sink = seen.clone();
    let mut attempts = 0;
    agents
        .expect_update()
        .times(2)
        .returning(move |read, updated, event| {
            sink.push((read.clone(), updated.clone(), event.clone()));
            attempts += 1;
            Ok(if attempts == 1 {
                UpdateOutcome::Stale
            } else {
                UpdateOutcome::Applied
            })
        });

    let updated = update(agents, &["agents:write"], version_patch())
        .await
        .unwrap();

    let expected = Agent {
        version: SemVer::parse("1.5.0").unwrap(),
        updated_at: now(),
        ..suspended.clone()
    };
    assert_eq!(updated, expected);
    let seen = seen.all();
    assert_eq!(seen.len(), 2);
    let (read, written, event) = &seen[1];
    assert_eq!(
        *read, suspended,
        "the retry compares against the fresh read"
    );
    assert_eq!(*written, expected);
    assert_eq!(event.event_id, EventId(generated_id(2)));
    assert_ne!(seen[0].2.event_id, event.event_id);
    assert!(is_event(
        event,
        AuditAction::AgentUpdated,
        Outcome::Success,
        TARGET,
        Some(CALLER)
    ));
    assert_eq!(
        event.metadata,
        json!({ "fields": ["version"], "previousStatus": "suspended", "status": "suspended" })
    );
}

#[tokio::test]
async fn a_stale_suspension_names_the_action_the_fresh_read_makes_it() {
    // Read suspended; a concurrent reactivation lands; suspending again is a
    // suspension of an active agent.
    let mut agents = MockAgentRepository::new();
    finds_in_turn(
        &mut agents,
        vec![
            agent(AgentStatus::Suspended, &["resume:read"]),
            agent(AgentStatus::Active, &["resume:read"]),
        ],
    );
    let mut attempts = 0;
    agents
        .expect_update()
        .times(2)
        .returning(move |_, updated, event| {
            attempts += 1;
            if attempts == 1 {
                assert_eq!(event.action, AuditAction::AgentUpdated);
                return Ok(UpdateOutcome::Stale);
            }
            assert_eq!(updated.status, AgentStatus::Suspended);
            assert_eq!(event.action, AuditAction::AgentSuspended);
            assert_eq!(event.metadata["previousStatus"], "active");
            Ok(UpdateOutcome::Applied)
        });

    let updated = update(
        agents,
        &["agents:write"],
        status_patch(AgentStatus::Suspended),
    )
    .await
    .unwrap();

    assert_eq!(updated.status, AgentStatus::Suspended);
}

#[tokio::test]
async fn a_stale_update_is_checked_again_against_the_fresh_read() {
    // The first read still held agents:read, so keeping it was no escalation;
    // it was removed concurrently, so now the caller would be granting it.
    let mut agents = MockAgentRepository::new();
    finds_in_turn(
        &mut agents,
        vec![active_agent(), agent(AgentStatus::Active, &["resume:read"])],
    );
    agents
        .expect_update()
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Stale));
    let patch = AgentPatch {
        capabilities: Some(caps(&["agents:read", "summaries:write"])),
        ..AgentPatch::default()
    };

    let err = update(agents, &["agents:write"], patch).await.unwrap_err();

    assert!(matches!(err, DomainError::Authorization(_)), "{err:?}");
}

#[tokio::test]
async fn a_stale_update_of_an_agent_decommissioned_meanwhile_is_agent_decommissioned() {
    let mut agents = MockAgentRepository::new();
    finds_in_turn(
        &mut agents,
        vec![
            active_agent(),
            agent(AgentStatus::Decommissioned, &["resume:read"]),
        ],
    );
    agents
        .expect_update()
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Stale));

    let err = update(agents, &["agents:write"], version_patch())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentDecommissioned), "{err:?}");
}

#[tokio::test]
async fn a_stale_update_of_an_agent_gone_meanwhile_is_agent_not_found() {
    let mut agents = MockAgentRepository::new();
    let mut reads = vec![Some(active_agent()), None].into_iter();
    agents
        .expect_find()
        .times(2)
        .returning(move |_, _| Ok(reads.next().flatten()));
    agents
        .expect_update()
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Stale));

    let err = update(agents, &["agents:write"], version_patch())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn an_agent_that_keeps_changing_is_unavailable_after_the_last_attempt() {
    let attempts = AgentService::MAX_UPDATE_ATTEMPTS as usize;
    let mut agents = MockAgentRepository::new();
    agents
        .expect_find()
        .times(attempts)
        .returning(|_, _| Ok(Some(active_agent())));
    agents
        .expect_update()
        .times(attempts)
        .returning(|_, _, _| Ok(UpdateOutcome::Stale));

    let err = update(agents, &["agents:write"], version_patch())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

// ----- decommission ----------------------------------------------------------

#[tokio::test]
async fn decommission_writes_one_agent_decommissioned_event() {
    let caller = caller(&["agents:write"]);
    let ctx = ctx_of(&caller);
    let expected_event = AuditEvent {
        event_id: EventId(generated_id(1)),
        owner: Some(owner()),
        agent_id: Some(TARGET),
        actor_id: Some(CALLER),
        action: AuditAction::AgentDecommissioned,
        outcome: Outcome::Success,
        ip_address: ctx.ip_address.clone(),
        user_agent: ctx.user_agent.clone(),
        metadata: json!({}),
        timestamp: now(),
        sequence: None,
        hash: None,
    };
    let mut agents = MockAgentRepository::new();
    agents
        .expect_decommission()
        .withf(move |o, id, at, event| {
            *o == owner() && *id == TARGET && *at == now() && *event == expected_event
        })
        .times(1)
        .returning(|_, _, _, _| Ok(vec![CREDENTIAL, OTHER_CREDENTIAL]));

    service(agents)
        .decommission(&caller, TARGET, &ctx)
        .await
        .unwrap();
}

#[tokio::test]
async fn decommission_of_a_missing_agent_is_agent_not_found() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_decommission()
        .times(1)
        .returning(|_, _, _, _| Err(StoreError::NotFound));
    let caller = caller(&["agents:write"]);

    let err = service(agents)
        .decommission(&caller, TARGET, &ctx_of(&caller))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn decommission_twice_is_agent_decommissioned() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_decommission()
        .times(1)
        .returning(|_, _, _, _| Err(StoreError::AgentDecommissioned));
    let caller = caller(&["agents:write"]);

    let err = service(agents)
        .decommission(&caller, TARGET, &ctx_of(&caller))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentDecommissioned), "{err:?}");
}

#[tokio::test]
async fn decommission_reports_an_unreachable_store_as_unavailable() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_decommission()
        .times(1)
        .returning(|_, _, _, _| Err(unavailable()));
    let caller = caller(&["agents:write"]);

    let err = service(agents)
        .decommission(&caller, TARGET, &ctx_of(&caller))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

// ----- delegates -------------------------------------------------------------

const DELEGATE: AgentId = AgentId(uuid::Uuid::from_u128(
    0x0b7c_1a2e_0000_7000_8000_0000_0000_0d01,
));

fn delegates(ids: &[AgentId]) -> Delegates {
    let raw: Vec<String> = ids.iter().map(ToString::to_string).collect();
    Delegates::parse(&raw).unwrap()
}

/// The store answers `delegate` (or nothing) for the delegate's id.
fn finds_delegate(agents: &mut MockAgentRepository, delegate: Option<Agent>) {
    agents
        .expect_find()
        .withf(|o, id| *o == owner() && *id == DELEGATE)
        .times(1)
        .returning(move |_, _| Ok(delegate.clone()));
}

fn delegate_agent(status: AgentStatus) -> Agent {
    Agent {
        agent_id: DELEGATE,
        status,
        ..active_agent()
    }
}

#[tokio::test]
async fn register_keeps_delegates_of_the_callers_owner() {
    let mut agents = MockAgentRepository::new();
    finds_delegate(&mut agents, Some(delegate_agent(AgentStatus::Active)));
    agents
        .expect_create()
        .withf(|agent, _, _| agent.delegates.ids() == [DELEGATE])
        .times(1)
        .returning(|_, _, _| Ok(()));
    let caller = caller(&["agents:write"]);
    let new = NewAgent {
        delegates: delegates(&[DELEGATE]),
        ..new_agent(&["resume:read"])
    };

    let agent = service(agents)
        .register(&caller, new, &ctx_of(&caller))
        .await
        .unwrap();

    assert_eq!(agent.delegates.ids(), [DELEGATE]);
}

#[tokio::test]
async fn unknown_foreign_or_decommissioned_delegates_are_refused_before_anything_is_written() {
    for found in [None, Some(delegate_agent(AgentStatus::Decommissioned))] {
        let mut agents = MockAgentRepository::new();
        finds_delegate(&mut agents, found.clone());
        agents.expect_create().never();
        let caller = caller(&["agents:write"]);
        let new = NewAgent {
            delegates: delegates(&[DELEGATE]),
            ..new_agent(&["resume:read"])
        };

        let err = service(agents)
            .register(&caller, new, &ctx_of(&caller))
            .await
            .unwrap_err();

        match err {
            DomainError::Validation(e) => assert_eq!(e.field, "delegates[0]", "{found:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn an_agent_cannot_be_its_own_delegate() {
    let mut agents = MockAgentRepository::new();
    agents.expect_find().never();
    agents.expect_update().never();
    let patch = AgentPatch {
        delegates: Some(delegates(&[TARGET])),
        ..AgentPatch::default()
    };

    let err = update(agents, &["agents:write"], patch).await.unwrap_err();

    match err {
        DomainError::Validation(e) => assert_eq!(e.field, "delegates[0]"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn update_replaces_the_delegates() {
    let mut agents = MockAgentRepository::new();
    finds_delegate(&mut agents, Some(delegate_agent(AgentStatus::Suspended)));
    finds(&mut agents, Some(active_agent()));
    agents
        .expect_update()
        .withf(|_, agent, event| {
            agent.delegates.ids() == [DELEGATE] && event.metadata["fields"] == json!(["delegates"])
        })
        .times(1)
        .returning(|_, _, _| Ok(UpdateOutcome::Applied));
    let patch = AgentPatch {
        delegates: Some(delegates(&[DELEGATE])),
        ..AgentPatch::default()
    };

    let updated = update(agents, &["agents:write"], patch).await.unwrap();

    assert_eq!(updated.delegates.ids(), [DELEGATE]);
}
