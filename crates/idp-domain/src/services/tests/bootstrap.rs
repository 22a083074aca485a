//! `bootstrap_agent`: the operator's first agent of an owner.

use mockall::Sequence;
use serde_json::json;

use super::fixtures::*;
use crate::audit::AuditEvent;
use crate::entities::{Agent, Credential, CredentialKey};
use crate::ports::{
    MockAgentRepository, MockCredentialRepository, MockSecretGenerator, MockSecretHasher,
};
use crate::services::{Bootstrapped, bootstrap_agent};
use crate::values::{
    AgentId, AgentStatus, AgentType, AuditAction, CredentialId, Delegates, DeploymentEnv, Email,
    EventId, MANAGEMENT_SCOPES, Outcome, Resources, SemVer,
};
use crate::{DomainError, StoreError};

struct Mocks {
    agents: MockAgentRepository,
    credentials: MockCredentialRepository,
    hasher: MockSecretHasher,
    secrets: MockSecretGenerator,
}

impl Mocks {
    fn new() -> Self {
        Self {
            agents: MockAgentRepository::new(),
            credentials: MockCredentialRepository::new(),
            hasher: MockSecretHasher::new(),
            secrets: MockSecretGenerator::new(),
        }
    }

    fn new_secret_is_hashed(&mut self) {
        self.secrets
            .expect_generate()
            .times(1)
            .returning(|| secret(NEW_SECRET));
        self.hasher
            .expect_hash()
            .withf(|s| s.expose() == NEW_SECRET)
            .times(1)
            .returning(|_| Ok(new_hash()));
    }

    /// Bootstraps owner `globex` (not the fixture caller's: any owner goes).
    async fn run(self) -> Result<Bootstrapped, DomainError> {
        bootstrap_agent(
            &self.agents,
            &self.credentials,
            &self.hasher,
            &self.secrets,
            &ambient(),
            other_owner(),
            Email::parse("root@globex.example").unwrap(),
            caps(&MANAGEMENT_SCOPES),
        )
        .await
    }
}

fn expected_agent() -> Agent {
    Agent {
        agent_id: AgentId(generated_id(1)),
        email: Email::parse("root@globex.example").unwrap(),
        agent_type: AgentType::Custom,
        version: SemVer::parse("1.0.0").unwrap(),
        capabilities: caps(&MANAGEMENT_SCOPES),
        owner: other_owner(),
        deployment_env: DeploymentEnv::Production,
        status: AgentStatus::Active,
        resources: Resources::default(),
        require_dpop: false,
        delegates: Delegates::default(),
        created_at: now(),
        updated_at: now(),
    }
}

#[tokio::test]
async fn bootstrap_creates_an_active_agent_and_one_credential_with_two_events() {
    let agent_id = AgentId(generated_id(1));
    let credential_id = CredentialId(generated_id(3));
    let created_event = AuditEvent {
        event_id: EventId(generated_id(2)),
        owner: Some(other_owner()),
        agent_id: Some(agent_id),
        actor_id: None,
        action: AuditAction::AgentCreated,
        outcome: Outcome::Success,
        ip_address: None,
        user_agent: None,
        metadata: json!({ "agentType": "custom", "deploymentEnv": "production", "via": "bootstrap" }),
        timestamp: now(),
        sequence: None,
        hash: None,
    };
    let generated_event = AuditEvent {
        event_id: EventId(generated_id(4)),
        action: AuditAction::CredentialGenerated,
        metadata: json!({ "credentialId": credential_id, "type": "secret", "expiresAt": null, "via": "bootstrap" }),
        ..created_event.clone()
    };
    let expected_credential = Credential {
        credential_id,
        agent_id,
        owner: other_owner(),
        key: CredentialKey::Secret(new_hash()),
        created_at: now(),
        expires_at: None,
        revoked_at: None,
    };
    let mut m = Mocks::new();
    let mut order = Sequence::new();
    let events = Captured::new();
    let (seen_created, seen_generated) = (events.clone(), events.clone());
    m.agents
        .expect_create()
        .withf(move |agent, limit, event| {
            *agent == expected_agent() && *limit == u32::MAX && *event == created_event
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(move |_, _, event| {
            seen_created.push(event.clone());
            Ok(())
        });
    m.new_secret_is_hashed();
    let stored = expected_credential.clone();
    m.credentials
        .expect_create()
        .withf(move |credential, limit, at, event| {
            *credential == stored && *limit == u32::MAX && *at == now() && *event == generated_event
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(move |_, _, _, event| {
            seen_generated.push(event.clone());
            Ok(())
        });

    let done = m.run().await.unwrap();

    assert_eq!(done.agent, expected_agent());
    assert_eq!(done.credential, expected_credential);
    assert_eq!(done.client_secret.expose(), NEW_SECRET);
    let written = events.all();
    assert_eq!(written.len(), 2);
    for event in &written {
        let text = event_text(event);
        assert!(!text.contains(&NEW_SECRET[8..]), "secret in event: {text}");
        assert!(!text.contains(&new_hash().hash), "hash in event: {text}");
    }
}

#[tokio::test]
async fn bootstrap_of_a_taken_email_is_agent_already_exists_and_makes_no_credential() {
    let mut m = Mocks::new();
    m.agents
        .expect_create()
        .times(1)
        .returning(|_, _, _| Err(StoreError::Duplicate));
    m.credentials.expect_create().never();
    m.secrets
        .expect_generate()
        .times(..=1)
        .returning(|| secret(NEW_SECRET));
    m.hasher
        .expect_hash()
        .times(..=1)
        .returning(|_| Ok(new_hash()));

    let err = m.run().await.unwrap_err();

    assert!(matches!(err, DomainError::AgentAlreadyExists), "{err:?}");
}

#[tokio::test]
async fn bootstrap_reports_an_unreachable_store_as_unavailable() {
    let mut m = Mocks::new();
    m.agents
        .expect_create()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    m.credentials.expect_create().never();
    m.secrets
        .expect_generate()
        .times(..=1)
        .returning(|| secret(NEW_SECRET));
    m.hasher
        .expect_hash()
        .times(..=1)
        .returning(|_| Ok(new_hash()));

    let err = m.run().await.unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

#[tokio::test]

async fn bootstrap_hashes_the_secret_before_writing_anything() {
    let mut m = Mocks::new();
    m.secrets
        .expect_generate()
        .times(1)
        .returning(|| secret(NEW_SECRET));
    m.hasher
        .expect_hash()
        .times(1)
        .returning(|_| Err(unavailable()));
    m.agents.expect_create().never();
    m.credentials.expect_create().never();

    let err = m.run().await.unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}
