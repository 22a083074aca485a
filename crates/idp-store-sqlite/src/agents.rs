//! [`AgentRepository`] on `agents`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::entities::Agent;
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::{AgentFilter, AgentRepository, UpdateOutcome};
use idp_domain::values::{AgentId, AgentStatus, CredentialId, Owner};

use crate::SqliteStore;
use crate::chain::append_chained;
use crate::columns::{millis, parse_uuid, uuid_text};
use crate::error::{TxError, corrupt_row, from_diesel};
use crate::paging::{limit_offset, total};
use crate::pool::{read_transaction, run, run_write, write_transaction};
use crate::rows::{AgentChanges, AgentRow, NewAgentRow};
use crate::schema::{agents, credentials};

/// The status of the agent `id` of `owner`, inside the caller's transaction.
/// Under `BEGIN IMMEDIATE` the caller holds the database's write lock, so the
/// status stays true until it commits (SQLite's equivalent of the PostgreSQL
/// adapter's `SELECT ... FOR UPDATE`).
pub(crate) fn agent_status(
    conn: &mut SqliteConnection,
    owner: &str,
    id: &str,
) -> Result<AgentStatus, TxError> {
    let status: Option<String> = agents::table
        .filter(agents::agent_id.eq(id))
        .filter(agents::owner.eq(owner))
        .select(agents::status)
        .first(conn)
        .optional()?;
    let status = status.ok_or(StoreError::NotFound)?;
    Ok(status
        .parse::<AgentStatus>()
        .map_err(|e| corrupt_row("agents", id, e))?)
}

/// `owner`'s agents matching `filter`.
fn matching<'a>(owner: &'a str, filter: &AgentFilter) -> agents::BoxedQuery<'a, Sqlite> {
    let mut query = agents::table.filter(agents::owner.eq(owner)).into_boxed();
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

/// Reads an agent row (any owner when `owner` is `None`).
fn find_agent(
    conn: &mut SqliteConnection,
    owner: Option<&str>,
    id: &str,
) -> Result<Option<Agent>, StoreError> {
    let mut query = agents::table
        .filter(agents::agent_id.eq(id))
        .select(AgentRow::as_select())
        .into_boxed();
    if let Some(owner) = owner {
        query = query.filter(agents::owner.eq(owner));
    }
    let row: Option<AgentRow> = query.first(conn).optional().map_err(from_diesel)?;
    row.map(Agent::try_from).transpose()
}

#[async_trait]
impl AgentRepository for SqliteStore {
    async fn create(
        &self,
        agent: &Agent,
        max_agents_per_owner: u32,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let row = NewAgentRow::try_from(agent)?;
        let event = event.clone();
        let owner = agent.owner.as_str().to_owned();
        run_write(&self.pool, &self.writes, move |conn| {
            write_transaction(conn, |conn| {
                let live: i64 = agents::table
                    .filter(agents::owner.eq(&owner))
                    .filter(agents::status.ne(AgentStatus::Decommissioned.as_str()))
                    .count()
                    .get_result(conn)?;
                if live >= i64::from(max_agents_per_owner) {
                    return Err(StoreError::LimitExceeded.into());
                }
                // A clash on the normalized email is a unique violation: Duplicate.
                diesel::insert_into(agents::table)
                    .values(&row)
                    .execute(conn)?;
                append_chained(conn, std::slice::from_ref(&event))?;
                Ok(())
            })
        })
        .await
    }

    async fn find(&self, owner: &Owner, id: AgentId) -> Result<Option<Agent>, StoreError> {
        let owner = owner.as_str().to_owned();
        let id = uuid_text(id.0);
        run(&self.pool, move |conn| find_agent(conn, Some(&owner), &id)).await
    }

    async fn find_for_authentication(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        let id = uuid_text(id.0);
        run(&self.pool, move |conn| find_agent(conn, None, &id)).await
    }

    async fn list(
        &self,
        owner: &Owner,
        filter: &AgentFilter,
        page: PageRequest,
    ) -> Result<Page<Agent>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        let owner = owner.as_str().to_owned();
        let filter = filter.clone();
        let (count, rows) = run(&self.pool, move |conn| {
            read_transaction(conn, |conn| {
                let count: i64 = matching(&owner, &filter).count().get_result(conn)?;
                let rows: Vec<AgentRow> = matching(&owner, &filter)
                    .select(AgentRow::as_select())
                    .order((agents::created_at.desc(), agents::agent_id.desc()))
                    .limit(limit)
                    .offset(offset)
                    .load(conn)?;
                Ok((count, rows))
            })
        })
        .await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(Agent::try_from)
                .collect::<Result<_, _>>()?,
            request: page,
            total: total(count)?,
        })
    }

    async fn update(
        &self,
        expected: &Agent,
        updated: &Agent,
        event: &AuditEvent,
    ) -> Result<UpdateOutcome, StoreError> {
        let changes = AgentChanges::try_from(updated)?;
        let event = event.clone();
        let expected = expected.clone();
        let owner = expected.owner.as_str().to_owned();
        let id = uuid_text(expected.agent_id.0);
        run_write(&self.pool, &self.writes, move |conn| {
            write_transaction(conn, |conn| {
                // Under BEGIN IMMEDIATE this transaction holds the write lock
                // from this read to the commit, so the comparison still holds
                // when the row is written.
                let stored = find_agent(conn, Some(&owner), &id)?.ok_or(StoreError::NotFound)?;
                if stored.status == AgentStatus::Decommissioned {
                    return Err(StoreError::AgentDecommissioned.into());
                }
                if stored != expected {
                    return Ok(UpdateOutcome::Stale);
                }
                diesel::update(
                    agents::table
                        .filter(agents::agent_id.eq(&id))
                        .filter(agents::owner.eq(&owner)),
                )
                .set(&changes)
                .execute(conn)?;
                append_chained(conn, std::slice::from_ref(&event))?;
                Ok(UpdateOutcome::Applied)
            })
        })
        .await
    }

    async fn decommission(
        &self,
        owner: &Owner,
        id: AgentId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Vec<CredentialId>, StoreError> {
        let mut event = event.clone();
        let owner = owner.as_str().to_owned();
        let id = uuid_text(id.0);
        let now = millis(now);
        run_write(&self.pool, &self.writes, move |conn| {
            write_transaction(conn, |conn| {
                if agent_status(conn, &owner, &id)? == AgentStatus::Decommissioned {
                    return Err(StoreError::AgentDecommissioned.into());
                }
                diesel::update(
                    agents::table
                        .filter(agents::agent_id.eq(&id))
                        .filter(agents::owner.eq(&owner)),
                )
                .set((
                    agents::status.eq(AgentStatus::Decommissioned.as_str()),
                    agents::updated_at.eq(now),
                ))
                .execute(conn)?;
                let unrevoked = credentials::table
                    .filter(credentials::agent_id.eq(&id))
                    .filter(credentials::owner.eq(&owner))
                    .filter(credentials::revoked_at.is_null());
                // Read then update under the write lock: no credential can
                // appear or be revoked in between.
                let ids: Vec<String> = unrevoked.select(credentials::credential_id).load(conn)?;
                diesel::update(unrevoked)
                    .set(credentials::revoked_at.eq(now))
                    .execute(conn)?;
                let mut revoked = ids
                    .iter()
                    .map(|text| parse_uuid(text).map_err(|e| corrupt_row("credentials", text, e)))
                    .collect::<Result<Vec<_>, _>>()?;
                revoked.sort_unstable();
                let revoked: Vec<CredentialId> = revoked.into_iter().map(CredentialId).collect();
                event.metadata = with_revoked_ids(&event.metadata, &revoked);
                append_chained(conn, std::slice::from_ref(&event))?;
                Ok(revoked)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

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
