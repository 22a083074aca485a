//! [`AgentRepository`] on `agents`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::entities::Agent;
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::{AgentFilter, AgentRepository, UpdateOutcome};
use idp_domain::values::{AgentId, AgentStatus, CredentialId, Owner};
use uuid::Uuid;

use crate::PgStore;
use crate::audit::insert_event;
use crate::error::{TxError, corrupt_row, from_diesel};
use crate::paging::{limit_offset, page_from_rows};
use crate::pool::checkout;
use crate::rows::{AgentChanges, AgentRow, NewAgentRow};
use crate::schema::{agents, credentials};

/// First key of the two-key advisory locks that serialize agent creation per
/// owner (the second is `hashtext(owner)`). Two-key locks never collide with
/// the one-key migration lock.
const OWNER_LOCK_NAMESPACE: i32 = 0x4944_5041;

/// Serializes, until the end of the current transaction, every agent creation
/// for `owner`, so counting its agents and inserting one is atomic. A hash
/// collision between two owners only makes them wait for each other.
async fn lock_owner(conn: &mut AsyncPgConnection, owner: &Owner) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind::<Integer, _>(OWNER_LOCK_NAMESPACE)
        .bind::<Text, _>(owner.as_str())
        .execute(conn)
        .await
        .map(drop)
}

/// Locks the agent `id` of `owner` (`SELECT ... FOR UPDATE`) until the end of
/// the current transaction and answers its status. Every change of an agent or
/// of its set of credentials takes this lock first, so they serialize.
pub(crate) async fn lock_agent(
    conn: &mut AsyncPgConnection,
    owner: &Owner,
    id: AgentId,
) -> Result<AgentStatus, TxError> {
    let status: Option<String> = agents::table
        .filter(agents::agent_id.eq(id.0))
        .filter(agents::owner.eq(owner.as_str()))
        .select(agents::status)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let status = status.ok_or(StoreError::NotFound)?;
    Ok(status
        .parse::<AgentStatus>()
        .map_err(|e| corrupt_row("agents", id, e))?)
}

/// `owner`'s agents matching `filter`.
fn matching<'a>(owner: &'a Owner, filter: &AgentFilter) -> agents::BoxedQuery<'a, Pg> {
    let mut query = agents::table
        .filter(agents::owner.eq(owner.as_str()))
        .into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(agents::status.eq(status.as_str()));
    }
    if let Some(agent_type) = filter.agent_type {
        query = query.filter(agents::agent_type.eq(agent_type.as_str()));
    }
    if let Some(env) = filter.deployment_env {
        query = query.filter(agents::deployment_env.eq(env.as_str()));
    }
    query
}

/// The decommission event's metadata: the service's, plus
/// `revokedCredentialIds`. Metadata that is not a JSON object is replaced.
fn with_revoked_ids(metadata: &serde_json::Value, ids: &[CredentialId]) -> serde_json::Value {
    let mut object = match metadata {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    object.insert(
        "revokedCredentialIds".to_owned(),
        ids.iter().map(|id| id.to_string()).collect(),
    );
    serde_json::Value::Object(object)
}

#[async_trait]
impl AgentRepository for PgStore {
    async fn create(
        &self,
        agent: &Agent,
        max_agents_per_owner: u32,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = checkout(&self.pool).await?;
        conn.transaction(async |conn| {
            lock_owner(conn, &agent.owner).await?;
            let live: i64 = agents::table
                .filter(agents::owner.eq(agent.owner.as_str()))
                .filter(agents::status.ne(AgentStatus::Decommissioned.as_str()))
                .count()
                .get_result(conn)
                .await?;
            if live >= i64::from(max_agents_per_owner) {
                return Err(StoreError::LimitExceeded.into());
            }
            // A clash on the normalized email is a unique violation: Duplicate.
            diesel::insert_into(agents::table)
                .values(NewAgentRow::from(agent))
                .execute(conn)
                .await?;
            insert_event(conn, event).await?;
            Ok::<_, TxError>(())
        })
        .await?;
        Ok(())
    }

    async fn find(&self, owner: &Owner, id: AgentId) -> Result<Option<Agent>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let row: Option<AgentRow> = agents::table
            .filter(agents::agent_id.eq(id.0))
            .filter(agents::owner.eq(owner.as_str()))
            .select(AgentRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        row.map(Agent::try_from).transpose()
    }

    async fn find_for_authentication(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let row: Option<AgentRow> = agents::table
            .filter(agents::agent_id.eq(id.0))
            .select(AgentRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        row.map(Agent::try_from).transpose()
    }

    async fn list(
        &self,
        owner: &Owner,
        filter: &AgentFilter,
        page: PageRequest,
    ) -> Result<Page<Agent>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        let mut conn = checkout(&self.pool).await?;
        // One statement, one round trip: see `page_from_rows`.
        let rows: Vec<(AgentRow, Option<i64>)> = matching(owner, filter)
            .select((
                AgentRow::as_select(),
                matching(owner, filter).count().single_value(),
            ))
            .order((agents::created_at.desc(), agents::agent_id.desc()))
            .limit(limit)
            .offset(offset)
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        let count_alone = async {
            matching(owner, filter)
                .count()
                .get_result(&mut conn)
                .await
                .map_err(from_diesel)
        };
        page_from_rows(rows, count_alone, page).await
    }

    async fn update(
        &self,
        expected: &Agent,
        updated: &Agent,
        event: &AuditEvent,
    ) -> Result<UpdateOutcome, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let outcome = conn
            .transaction(async |conn| {
                // The row lock is held from this read to the commit, so the
                // comparison still holds when the row is written.
                let stored: Option<AgentRow> = agents::table
                    .filter(agents::agent_id.eq(expected.agent_id.0))
                    .filter(agents::owner.eq(expected.owner.as_str()))
                    .select(AgentRow::as_select())
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?;
                let stored = Agent::try_from(stored.ok_or(StoreError::NotFound)?)?;
                if stored.status == AgentStatus::Decommissioned {
                    return Err(StoreError::AgentDecommissioned.into());
                }
                if stored != *expected {
                    return Ok(UpdateOutcome::Stale);
                }
                diesel::update(
                    agents::table
                        .filter(agents::agent_id.eq(expected.agent_id.0))
                        .filter(agents::owner.eq(expected.owner.as_str())),
                )
                .set(AgentChanges::from(updated))
                .execute(conn)
                .await?;
                insert_event(conn, event).await?;
                Ok::<_, TxError>(UpdateOutcome::Applied)
            })
            .await?;
        Ok(outcome)
    }

    async fn decommission(
        &self,
        owner: &Owner,
        id: AgentId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Vec<CredentialId>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let revoked = conn
            .transaction(async |conn| {
                if lock_agent(conn, owner, id).await? == AgentStatus::Decommissioned {
                    return Err(StoreError::AgentDecommissioned.into());
                }
                diesel::update(
                    agents::table
                        .filter(agents::agent_id.eq(id.0))
                        .filter(agents::owner.eq(owner.as_str())),
                )
                .set((
                    agents::status.eq(AgentStatus::Decommissioned.as_str()),
                    agents::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
                let mut revoked: Vec<Uuid> = diesel::update(
                    credentials::table
                        .filter(credentials::agent_id.eq(id.0))
                        .filter(credentials::owner.eq(owner.as_str()))
                        .filter(credentials::revoked_at.is_null()),
                )
                .set(credentials::revoked_at.eq(now))
                .returning(credentials::credential_id)
                .get_results(conn)
                .await?;
                revoked.sort_unstable();
                let revoked: Vec<CredentialId> = revoked.into_iter().map(CredentialId).collect();
                let stored = AuditEvent {
                    metadata: with_revoked_ids(&event.metadata, &revoked),
                    ..event.clone()
                };
                insert_event(conn, &stored).await?;
                Ok::<_, TxError>(revoked)
            })
            .await?;
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn revoked_ids_join_the_metadata() {
        let id = CredentialId(Uuid::nil());
        assert_eq!(
            with_revoked_ids(&json!({"reason": "x"}), &[id]),
            json!({"reason": "x", "revokedCredentialIds": [Uuid::nil().to_string()]})
        );
        assert_eq!(
            with_revoked_ids(&serde_json::Value::Null, &[]),
            json!({"revokedCredentialIds": []})
        );
    }
}
