//! Audit events: the append-only record of every write and every token decision.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::values::{AgentId, AuditAction, EventId, Outcome, Owner};

/// One audit event, as the contract's Event object (plus the owner it belongs to,
/// which scopes every query).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Identifier.
    pub event_id: EventId,
    /// The owner whose log holds the event; `None` when a token request named
    /// a client that is no agent, so no tenant can see the event.
    #[serde(skip)]
    pub owner: Option<Owner>,
    /// The agent acted upon (for token events the token's subject).
    pub agent_id: Option<AgentId>,
    /// The authenticated caller, if any.
    pub actor_id: Option<AgentId>,
    /// What happened.
    pub action: AuditAction,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// The client's address.
    pub ip_address: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// Action-specific details; never a secret or a token.
    pub metadata: serde_json::Value,
    /// When it happened.
    #[serde(serialize_with = "crate::values::serialize_time")]
    pub timestamp: DateTime<Utc>,
    /// The event's place in its owner's chain (from 1, no gaps); `None` until
    /// the store has appended it (see [`crate::audit_chain`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// The chain hash (64 lowercase hex characters); `None` until the store
    /// has appended the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl AuditEvent {
    /// The owner whose chain holds the event: its owner, or [`Owner::system`]
    /// for an event no tenant owns (key events, a token request naming a
    /// client that is no agent).
    pub fn chain_owner(&self) -> Owner {
        self.owner.clone().unwrap_or_else(Owner::system)
    }
}

/// Who made a request and from where: what every audit event records about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The authenticated caller, if any.
    pub actor_id: Option<AgentId>,
    /// The client's address.
    pub ip_address: Option<String>,
    /// The client's `User-Agent`, truncated by the HTTP layer.
    pub user_agent: Option<String>,
}

/// Filters of `GET /api/v1/audit`; the owner is passed separately.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events about this agent.
    pub agent_id: Option<AgentId>,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// Only events at or after this time (already clamped to the retention window).
    pub from: Option<DateTime<Utc>>,
    /// Only events at or before this time.
    pub to: Option<DateTime<Utc>>,
}
