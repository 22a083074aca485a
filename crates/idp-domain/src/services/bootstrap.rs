use serde_json::json;

use crate::audit::RequestContext;
use crate::entities::{Agent, Credential, CredentialKey};
use crate::ports::{AgentRepository, CredentialRepository, SecretGenerator, SecretHasher};
use crate::values::{
    AgentId, AgentStatus, AgentType, AuditAction, Capabilities, ClientSecret, CredentialId,
    Delegates, DeploymentEnv, Email, Outcome, Owner, Resources, SemVer,
};
use crate::{DomainError, StoreError};

use super::Ambient;

/// The first agent of an owner, made by the operator's `bootstrap` command.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    /// The new agent.
    pub agent: Agent,
    /// Its credential.
    pub credential: Credential,
    /// The credential's secret, printed once.
    pub client_secret: ClientSecret,
}

/// Creates an active agent and one credential for any owner, with direct store
/// access and no caller (actor null) and no free-tier limit: an operator command.
/// Writes `agent.created` and `credential.generated`.
///
/// The agent is of type `custom`, version `1.0.0`, in `production`; its
/// credential never expires. Refused with [`DomainError::AgentAlreadyExists`]
/// when the e-mail address is taken.
///
/// ```no_run
/// use idp_domain::ports::{AgentRepository, CredentialRepository, SecretGenerator, SecretHasher};
/// use idp_domain::services::{Ambient, bootstrap_agent};
/// use idp_domain::values::{Capabilities, Email, Owner};
///
/// async fn first_agent(
///     store: &(impl AgentRepository + CredentialRepository),
///     hasher: &dyn SecretHasher,
///     secrets: &dyn SecretGenerator,
///     ambient: &Ambient,
/// ) -> Result<(), Box<dyn std::error::Error>> {
///     let made = bootstrap_agent(
///         store,
///         store,
///         hasher,
///         secrets,
///         ambient,
///         Owner::parse("acme")?,
///         Email::parse("admin@acme.example")?,
///         Capabilities::parse(&["agents:read", "agents:write"])?,
///     )
///     .await?;
///     // The client id is the agent id; the secret is shown this once.
///     println!("{} {}", made.agent.agent_id, made.client_secret.expose());
///     Ok(())
/// }
/// ```
pub async fn bootstrap_agent(
    agents: &dyn AgentRepository,
    credentials: &dyn CredentialRepository,
    hasher: &dyn SecretHasher,
    secrets: &dyn SecretGenerator,
    ambient: &Ambient,
    owner: Owner,
    email: Email,
    capabilities: Capabilities,
) -> Result<Bootstrapped, DomainError> {
    let now = ambient.now();
    let ctx = RequestContext::default();
    let agent = Agent {
        agent_id: AgentId(ambient.ids.new_id()),
        email,
        agent_type: AgentType::Custom,
        version: SemVer::parse("1.0.0")?,
        capabilities,
        owner,
        deployment_env: DeploymentEnv::Production,
        status: AgentStatus::Active,
        resources: Resources::default(),
        require_dpop: false,
        delegates: Delegates::default(),
        created_at: now,
        updated_at: now,
    };
    let created = ambient.event(
        &agent.owner,
        agent.agent_id,
        &ctx,
        AuditAction::AgentCreated,
        Outcome::Success,
        json!({ "agentType": agent.agent_type, "deploymentEnv": agent.deployment_env, "via": "bootstrap" }),
        now,
    );
    // Hash before any write: a failed hash must not leave an agent without a credential.
    let client_secret = secrets.generate();
    let secret_hash = hasher.hash(&client_secret).await?;
    match agents.create(&agent, u32::MAX, &created).await {
        Ok(()) => {}
        Err(StoreError::Duplicate) => return Err(DomainError::AgentAlreadyExists),
        Err(e) => return Err(e.into()),
    }
    let credential = Credential {
        credential_id: CredentialId(ambient.ids.new_id()),
        agent_id: agent.agent_id,
        owner: agent.owner.clone(),
        key: CredentialKey::Secret(secret_hash),
        created_at: now,
        expires_at: None,
        revoked_at: None,
    };
    let generated = ambient.event(
        &agent.owner,
        agent.agent_id,
        &ctx,
        AuditAction::CredentialGenerated,
        Outcome::Success,
        json!({ "credentialId": credential.credential_id, "type": "secret", "expiresAt": null, "via": "bootstrap" }),
        now,
    );
    credentials
        .create(&credential, u32::MAX, now, &generated)
        .await?;
    Ok(Bootstrapped {
        agent,
        credential,
        client_secret,
    })
}
