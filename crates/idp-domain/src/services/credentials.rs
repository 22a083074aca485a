use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::RequestContext;
use crate::entities::{Agent, Credential, CredentialView};
use crate::page::{Page, PageRequest};
use crate::ports::{AgentRepository, CredentialRepository, SecretGenerator, SecretHasher};
use crate::token::Principal;
use crate::values::{
    AgentId, AgentStatus, AuditAction, ClientSecret, CredentialId, CredentialStatus, Outcome,
    format_time,
};
use crate::{DomainError, StoreError, ValueError};

use super::agents::check_no_escalation;
use super::{Ambient, Limits};

/// A credential together with its secret, which is shown exactly once.
#[derive(Debug, Clone)]
pub struct IssuedCredential {
    /// The public view.
    pub credential: CredentialView,
    /// The secret, for the one response that returns it.
    pub client_secret: ClientSecret,
}

/// Generation, listing, rotation and revocation of credentials.
#[derive(Clone)]
pub struct CredentialService {
    agents: Arc<dyn AgentRepository>,
    credentials: Arc<dyn CredentialRepository>,
    hasher: Arc<dyn SecretHasher>,
    secrets: Arc<dyn SecretGenerator>,
    ambient: Ambient,
    limits: Limits,
}

impl std::fmt::Debug for CredentialService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn map_credential_error(err: StoreError) -> DomainError {
    match err {
        StoreError::NotFound => DomainError::CredentialNotFound,
        other => other.into(),
    }
}

impl CredentialService {
    /// Builds the service.
    pub fn new(
        agents: Arc<dyn AgentRepository>,
        credentials: Arc<dyn CredentialRepository>,
        hasher: Arc<dyn SecretHasher>,
        secrets: Arc<dyn SecretGenerator>,
        ambient: Ambient,
        limits: Limits,
    ) -> Self {
        Self {
            agents,
            credentials,
            hasher,
            secrets,
            ambient,
            limits,
        }
    }

    /// Generates a credential for an active agent of the caller's owner.
    ///
    /// A credential is the agent's authority: a caller lacking one of the agent's
    /// management scopes is refused `Authorization`, as when granting that scope.
    pub async fn generate(
        &self,
        caller: &Principal,
        agent_id: AgentId,
        expires_at: Option<DateTime<Utc>>,
        ctx: &RequestContext,
    ) -> Result<IssuedCredential, DomainError> {
        let now = self.ambient.now();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(ValueError::new("expiresAt", "must be in the future").into());
        }
        // Fail before the slow hash when the agent cannot take a credential; the
        // store checks again atomically.
        let agent = self.find_agent(caller, agent_id).await?;
        check_no_escalation(caller, &agent.capabilities, None)?;
        if agent.status != AgentStatus::Active {
            return Err(DomainError::AgentNotActive);
        }
        let client_secret = self.secrets.generate();
        let secret_hash = self.hasher.hash(&client_secret).await?;
        let credential = Credential {
            credential_id: CredentialId(self.ambient.ids.new_id()),
            agent_id,
            owner: caller.owner.clone(),
            secret_hash,
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        let event = self.ambient.event(
            &caller.owner,
            agent_id,
            ctx,
            AuditAction::CredentialGenerated,
            Outcome::Success,
            json!({
                "credentialId": credential.credential_id,
                "expiresAt": expires_at.as_ref().map(format_time),
            }),
            now,
        );
        match self
            .credentials
            .create(
                &credential,
                self.limits.max_credentials_per_agent,
                now,
                &event,
            )
            .await
        {
            Ok(()) => Ok(IssuedCredential {
                credential: credential.view(now),
                client_secret,
            }),
            Err(StoreError::NotFound) => Err(DomainError::AgentNotFound),
            Err(StoreError::LimitExceeded) => Err(DomainError::FreeTierLimitExceeded(
                "the agent already has the maximum number of active credentials",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A page of an agent's credentials (never a secret or a hash).
    pub async fn list(
        &self,
        caller: &Principal,
        agent_id: AgentId,
        status: Option<CredentialStatus>,
        page: PageRequest,
    ) -> Result<Page<CredentialView>, DomainError> {
        self.find_agent(caller, agent_id).await?;
        let now = self.ambient.now();
        let page = self
            .credentials
            .list(&caller.owner, agent_id, status, now, page)
            .await?;
        Ok(page.map(|c| c.view(now)))
    }

    /// Replaces the secret of a credential that is not revoked. Tokens issued
    /// under it stay valid until they expire. Refused, like [`Self::generate`],
    /// when the agent holds a management scope the caller lacks.
    pub async fn rotate(
        &self,
        caller: &Principal,
        agent_id: AgentId,
        id: CredentialId,
        ctx: &RequestContext,
    ) -> Result<IssuedCredential, DomainError> {
        let agent = self.find_agent(caller, agent_id).await?;
        check_no_escalation(caller, &agent.capabilities, None)?;
        let current = self.find_credential(caller, agent_id, id).await?;
        if current.revoked_at.is_some() {
            return Err(DomainError::CredentialRevoked);
        }
        let client_secret = self.secrets.generate();
        let new_hash = self.hasher.hash(&client_secret).await?;
        let now = self.ambient.now();
        let event = self.ambient.event(
            &caller.owner,
            agent_id,
            ctx,
            AuditAction::CredentialRotated,
            Outcome::Success,
            json!({ "credentialId": id }),
            now,
        );
        let rotated = self
            .credentials
            .rotate(&caller.owner, agent_id, id, &new_hash, &event)
            .await
            .map_err(map_credential_error)?;
        Ok(IssuedCredential {
            credential: rotated.view(now),
            client_secret,
        })
    }

    /// Revokes a credential at once; tokens issued under it die with it.
    pub async fn revoke(
        &self,
        caller: &Principal,
        agent_id: AgentId,
        id: CredentialId,
        ctx: &RequestContext,
    ) -> Result<(), DomainError> {
        self.find(caller, agent_id, id).await?;
        let now = self.ambient.now();
        let event = self.ambient.event(
            &caller.owner,
            agent_id,
            ctx,
            AuditAction::CredentialRevoked,
            Outcome::Success,
            json!({ "credentialId": id }),
            now,
        );
        self.credentials
            .revoke(&caller.owner, agent_id, id, now, &event)
            .await
            .map(drop)
            .map_err(map_credential_error)
    }

    /// The credential, distinguishing a missing agent from a missing credential.
    async fn find(
        &self,
        caller: &Principal,
        agent_id: AgentId,
        id: CredentialId,
    ) -> Result<Credential, DomainError> {
        self.find_agent(caller, agent_id).await?;
        self.find_credential(caller, agent_id, id).await
    }

    /// The agent of the caller's owner, or `AgentNotFound`.
    async fn find_agent(
        &self,
        caller: &Principal,
        agent_id: AgentId,
    ) -> Result<Agent, DomainError> {
        self.agents
            .find(&caller.owner, agent_id)
            .await?
            .ok_or(DomainError::AgentNotFound)
    }

    /// The agent's credential of the caller's owner, or `CredentialNotFound`.
    async fn find_credential(
        &self,
        caller: &Principal,
        agent_id: AgentId,
        id: CredentialId,
    ) -> Result<Credential, DomainError> {
        self.credentials
            .find(&caller.owner, agent_id, id)
            .await?
            .ok_or(DomainError::CredentialNotFound)
    }
}
