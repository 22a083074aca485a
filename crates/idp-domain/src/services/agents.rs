use std::sync::Arc;

use serde_json::json;

use crate::audit::{AuditEvent, RequestContext};
use crate::entities::Agent;
use crate::page::{Page, PageRequest};
use crate::ports::{AgentFilter, AgentRepository, UpdateOutcome};
use crate::token::Principal;
use crate::values::{
    AgentId, AgentStatus, AgentType, AuditAction, Capabilities, Delegates, DeploymentEnv, Email,
    Outcome, Owner, Resources, SemVer,
};
use crate::{DomainError, StoreError, ValueError};

use super::{Ambient, Limits};

/// The validated body of `POST /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent {
    /// Email.
    pub email: Email,
    /// Type.
    pub agent_type: AgentType,
    /// Version.
    pub version: SemVer,
    /// Capabilities.
    pub capabilities: Capabilities,
    /// Environment.
    pub deployment_env: DeploymentEnv,
    /// Owner, if the caller named one; it must be the caller's own.
    pub owner: Option<Owner>,
    /// The audiences its tokens may name (default none).
    pub resources: Resources,
    /// Whether its token requests must carry a DPoP proof (default no).
    pub require_dpop: bool,
    /// The agents of the caller's owner that may act for it (default none).
    pub delegates: Delegates,
}

/// The validated body of `PATCH /api/v1/agents/{id}`: the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentPatch {
    /// New email.
    pub email: Option<Email>,
    /// New type.
    pub agent_type: Option<AgentType>,
    /// New version.
    pub version: Option<SemVer>,
    /// New capabilities.
    pub capabilities: Option<Capabilities>,
    /// New environment.
    pub deployment_env: Option<DeploymentEnv>,
    /// `active` or `suspended`.
    pub status: Option<AgentStatus>,
    /// New resources.
    pub resources: Option<Resources>,
    /// New DPoP requirement.
    pub require_dpop: Option<bool>,
    /// New delegates.
    pub delegates: Option<Delegates>,
}

impl AgentPatch {
    /// The camelCase names of the fields present, for the audit event.
    fn field_names(&self) -> Vec<&'static str> {
        [
            ("email", self.email.is_some()),
            ("agentType", self.agent_type.is_some()),
            ("version", self.version.is_some()),
            ("capabilities", self.capabilities.is_some()),
            ("deploymentEnv", self.deployment_env.is_some()),
            ("status", self.status.is_some()),
            ("resources", self.resources.is_some()),
            ("requireDpop", self.require_dpop.is_some()),
            ("delegates", self.delegates.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect()
    }

    /// Whether no field is present.
    pub fn is_empty(&self) -> bool {
        self.field_names().is_empty()
    }
}

/// Registration, reading, updating and decommissioning of agents.
#[derive(Clone)]
pub struct AgentService {
    agents: Arc<dyn AgentRepository>,
    ambient: Ambient,
    limits: Limits,
}

impl std::fmt::Debug for AgentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Refuses `403 AUTHORIZATION_ERROR` when `granted` holds a management scope the
/// caller lacks, unless `already_held` holds it too (keeping is not escalating).
pub(super) fn check_no_escalation(
    caller: &Principal,
    granted: &Capabilities,
    already_held: Option<&Capabilities>,
) -> Result<(), DomainError> {
    let escalated: Vec<&str> = granted
        .management()
        .filter(|scope| !caller.has_scope(scope.as_str()))
        .filter(|scope| !already_held.is_some_and(|held| held.contains(scope)))
        .map(|scope| scope.as_str())
        .collect();
    if escalated.is_empty() {
        Ok(())
    } else {
        Err(DomainError::Authorization(format!(
            "cannot grant management scopes the caller does not hold: {}",
            escalated.join(", ")
        )))
    }
}

impl AgentService {
    /// How many times [`AgentService::update`] reads and tries to write an
    /// agent that other writers keep changing before it gives up. Each refusal
    /// means another change was committed, so a request fails only when this
    /// many land inside its own read-to-write windows.
    pub const MAX_UPDATE_ATTEMPTS: u32 = 8;

    /// Builds the service.
    pub fn new(agents: Arc<dyn AgentRepository>, ambient: Ambient, limits: Limits) -> Self {
        Self {
            agents,
            ambient,
            limits,
        }
    }

    /// Registers a new active agent under the caller's owner and writes
    /// `agent.created` with it.
    ///
    /// Refused with [`DomainError::Authorization`] when `new.owner` names
    /// another owner or the capabilities hold a management scope the caller
    /// lacks, [`DomainError::AgentAlreadyExists`] when the e-mail address is
    /// taken (compared case-insensitively), and
    /// [`DomainError::FreeTierLimitExceeded`] when the owner already has
    /// [`Limits::max_agents_per_owner`] agents.
    ///
    /// ```no_run
    /// use idp_domain::audit::RequestContext;
    /// use idp_domain::services::{AgentService, NewAgent};
    /// use idp_domain::token::Principal;
    /// use idp_domain::values::{
    ///     AgentType, Capabilities, Delegates, DeploymentEnv, Email, Resources, SemVer,
    /// };
    ///
    /// // `caller` is who authenticated the request, e.g. from `TokenService::authenticate`.
    /// async fn register(
    ///     agents: &AgentService,
    ///     caller: &Principal,
    /// ) -> Result<(), Box<dyn std::error::Error>> {
    ///     let new = NewAgent {
    ///         email: Email::parse("screener-02@acme.example")?,
    ///         agent_type: AgentType::Screener,
    ///         version: SemVer::parse("1.4.0")?,
    ///         capabilities: Capabilities::parse(&["reports:write"])?,
    ///         deployment_env: DeploymentEnv::Production,
    ///         owner: None, // the caller's own
    ///         resources: Resources::parse(&["https://reports.acme.example/mcp"])?,
    ///         require_dpop: false,
    ///         delegates: Delegates::default(),
    ///     };
    ///     let agent = agents.register(caller, new, &RequestContext::default()).await?;
    ///     assert_eq!(agent.owner, caller.owner);
    ///     Ok(())
    /// }
    /// ```
    pub async fn register(
        &self,
        caller: &Principal,
        new: NewAgent,
        ctx: &RequestContext,
    ) -> Result<Agent, DomainError> {
        if new
            .owner
            .as_ref()
            .is_some_and(|owner| owner != &caller.owner)
        {
            return Err(DomainError::Authorization(
                "owner must be the caller's own".into(),
            ));
        }
        self.check_delegates(caller, &new.delegates, None).await?;
        check_no_escalation(caller, &new.capabilities, None)?;
        let now = self.ambient.now();
        let agent = Agent {
            agent_id: AgentId(self.ambient.ids.new_id()),
            email: new.email,
            agent_type: new.agent_type,
            version: new.version,
            capabilities: new.capabilities,
            owner: caller.owner.clone(),
            deployment_env: new.deployment_env,
            status: AgentStatus::Active,
            resources: new.resources,
            require_dpop: new.require_dpop,
            delegates: new.delegates,
            created_at: now,
            updated_at: now,
        };
        let event = self.ambient.event(
            &agent.owner,
            agent.agent_id,
            ctx,
            AuditAction::AgentCreated,
            Outcome::Success,
            json!({ "agentType": agent.agent_type, "deploymentEnv": agent.deployment_env }),
            now,
        );
        match self
            .agents
            .create(&agent, self.limits.max_agents_per_owner, &event)
            .await
        {
            Ok(()) => Ok(agent),
            Err(StoreError::Duplicate) => Err(DomainError::AgentAlreadyExists),
            Err(StoreError::LimitExceeded) => Err(DomainError::FreeTierLimitExceeded(
                "the owner already has the maximum number of agents",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses (`400`, naming the entry) delegates that are not agents of the
    /// caller's owner, are decommissioned, or are `agent` itself. Another
    /// owner's agent reads as absent, as everywhere.
    async fn check_delegates(
        &self,
        caller: &Principal,
        delegates: &Delegates,
        agent: Option<AgentId>,
    ) -> Result<(), DomainError> {
        for (i, id) in delegates.ids().iter().enumerate() {
            let field = format!("delegates[{i}]");
            if Some(*id) == agent {
                return Err(ValueError::new(field, "an agent cannot be its own delegate").into());
            }
            match self.agents.find(&caller.owner, *id).await? {
                None => {
                    return Err(ValueError::new(field, "names no agent of this owner").into());
                }
                Some(delegate) if delegate.status == AgentStatus::Decommissioned => {
                    return Err(ValueError::new(field, "names a decommissioned agent").into());
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A page of the caller's owner's agents.
    pub async fn list(
        &self,
        caller: &Principal,
        filter: &AgentFilter,
        page: PageRequest,
    ) -> Result<Page<Agent>, DomainError> {
        Ok(self.agents.list(&caller.owner, filter, page).await?)
    }

    /// One agent of the caller's owner; decommissioned agents stay readable.
    pub async fn get(&self, caller: &Principal, id: AgentId) -> Result<Agent, DomainError> {
        self.agents
            .find(&caller.owner, id)
            .await?
            .ok_or(DomainError::AgentNotFound)
    }

    /// Applies `patch`. Suspending or reactivating writes `agent.suspended` /
    /// `agent.reactivated`; any other change `agent.updated`.
    ///
    /// Read, check, compute, then compare-and-swap ([`AgentRepository::update`]):
    /// when another change landed between the read and the write, the store
    /// refuses this one and it is recomputed from a fresh read, so a stale read
    /// never undoes a concurrent change (such as an acknowledged suspension),
    /// and the checks (escalation, decommissioned) always judge the state the
    /// write replaces. After [`Self::MAX_UPDATE_ATTEMPTS`] refusals in a row the
    /// agent is too busy: [`DomainError::Unavailable`] (503, retry later).
    pub async fn update(
        &self,
        caller: &Principal,
        id: AgentId,
        patch: AgentPatch,
        ctx: &RequestContext,
    ) -> Result<Agent, DomainError> {
        if patch.is_empty() {
            return Err(ValueError::new("body", "must change at least one field").into());
        }
        if patch.status == Some(AgentStatus::Decommissioned) {
            return Err(ValueError::new(
                "status",
                "must be active or suspended; DELETE decommissions",
            )
            .into());
        }
        if let Some(delegates) = &patch.delegates {
            self.check_delegates(caller, delegates, Some(id)).await?;
        }
        for _ in 0..Self::MAX_UPDATE_ATTEMPTS {
            let current = self.get(caller, id).await?;
            let (updated, event) = self.patched(caller, &current, &patch, ctx)?;
            match self.agents.update(&current, &updated, &event).await {
                Ok(UpdateOutcome::Applied) => return Ok(updated),
                Ok(UpdateOutcome::Stale) => continue,
                Err(StoreError::NotFound) => return Err(DomainError::AgentNotFound),
                Err(StoreError::Duplicate) => return Err(DomainError::AgentAlreadyExists),
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::Unavailable(anyhow::anyhow!(
            "agent {id} changed concurrently {} times while being updated",
            Self::MAX_UPDATE_ATTEMPTS
        )))
    }

    /// The agent `current` with `patch` applied, stamped now, and its audit
    /// event; or why the caller may not apply it to `current`.
    fn patched(
        &self,
        caller: &Principal,
        current: &Agent,
        patch: &AgentPatch,
        ctx: &RequestContext,
    ) -> Result<(Agent, AuditEvent), DomainError> {
        if let Some(capabilities) = &patch.capabilities {
            check_no_escalation(caller, capabilities, Some(&current.capabilities))?;
        }
        if current.status == AgentStatus::Decommissioned {
            return Err(DomainError::AgentDecommissioned);
        }
        let now = self.ambient.now();
        let updated = Agent {
            email: patch.email.clone().unwrap_or_else(|| current.email.clone()),
            agent_type: patch.agent_type.unwrap_or(current.agent_type),
            version: patch
                .version
                .clone()
                .unwrap_or_else(|| current.version.clone()),
            capabilities: patch
                .capabilities
                .clone()
                .unwrap_or_else(|| current.capabilities.clone()),
            deployment_env: patch.deployment_env.unwrap_or(current.deployment_env),
            status: patch.status.unwrap_or(current.status),
            resources: patch
                .resources
                .clone()
                .unwrap_or_else(|| current.resources.clone()),
            require_dpop: patch.require_dpop.unwrap_or(current.require_dpop),
            delegates: patch
                .delegates
                .clone()
                .unwrap_or_else(|| current.delegates.clone()),
            updated_at: now,
            ..current.clone()
        };
        let action = match (current.status, updated.status) {
            (AgentStatus::Active, AgentStatus::Suspended) => AuditAction::AgentSuspended,
            (AgentStatus::Suspended, AgentStatus::Active) => AuditAction::AgentReactivated,
            _ => AuditAction::AgentUpdated,
        };
        let event = self.ambient.event(
            &updated.owner,
            updated.agent_id,
            ctx,
            action,
            Outcome::Success,
            json!({
                "fields": patch.field_names(),
                "previousStatus": current.status,
                "status": updated.status,
            }),
            now,
        );
        Ok((updated, event))
    }

    /// Decommissions the agent: irreversible; revokes all its credentials.
    pub async fn decommission(
        &self,
        caller: &Principal,
        id: AgentId,
        ctx: &RequestContext,
    ) -> Result<(), DomainError> {
        let now = self.ambient.now();
        let event = self.ambient.event(
            &caller.owner,
            id,
            ctx,
            AuditAction::AgentDecommissioned,
            Outcome::Success,
            json!({}),
            now,
        );
        match self
            .agents
            .decommission(&caller.owner, id, now, &event)
            .await
        {
            Ok(_revoked) => Ok(()),
            Err(StoreError::NotFound) => Err(DomainError::AgentNotFound),
            Err(e) => Err(e.into()),
        }
    }
}
