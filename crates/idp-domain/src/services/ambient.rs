use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::audit::{AuditEvent, RequestContext};
use crate::ports::{Clock, IdGenerator};
use crate::values::{AgentId, AuditAction, EventId, Outcome, Owner};

/// The ports every service needs: the time and new identifiers.
#[derive(Clone)]
pub struct Ambient {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The identifier source.
    pub ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for Ambient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ambient")
    }
}

impl Ambient {
    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// An audit event about `agent_id` of `owner`, stamped now, by the caller in `ctx`.
    pub fn event(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        ctx: &RequestContext,
        action: AuditAction,
        outcome: Outcome,
        metadata: serde_json::Value,
        now: DateTime<Utc>,
    ) -> AuditEvent {
        AuditEvent {
            event_id: EventId(self.ids.new_id()),
            owner: Some(owner.clone()),
            agent_id: Some(agent_id),
            actor_id: ctx.actor_id,
            action,
            outcome,
            ip_address: ctx.ip_address.clone(),
            user_agent: ctx.user_agent.clone(),
            metadata,
            timestamp: now,
            sequence: None,
            hash: None,
        }
    }

    /// An event of the operators' `_system` chain (about no agent, by no
    /// authenticated caller), stamped `now`.
    pub fn system_event(
        &self,
        action: AuditAction,
        metadata: serde_json::Value,
        now: DateTime<Utc>,
    ) -> AuditEvent {
        AuditEvent {
            event_id: EventId(self.ids.new_id()),
            owner: Some(Owner::system()),
            agent_id: None,
            actor_id: None,
            action,
            outcome: Outcome::Success,
            ip_address: None,
            user_agent: None,
            metadata,
            timestamp: now,
            sequence: None,
            hash: None,
        }
    }
}
