//! [`CredentialRepository`] on `credentials`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::entities::{Credential, CredentialKey, CredentialType};
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::{CredentialRepository, SubjectState};
use idp_domain::values::{AgentId, AgentStatus, CredentialId, CredentialStatus, Owner};

use crate::PgStore;
use crate::agents::lock_agent;
use crate::audit::insert_event;
use crate::error::{TxError, corrupt_row, from_diesel};
use crate::paging::{limit_offset, total};
use crate::pool::checkout;
use crate::rows::{CredentialKeyColumns, CredentialRow, NewCredentialRow};
use crate::schema::{agents, credentials};

/// The credentials of agent `agent_id` of `owner`, with the status `status` at
/// `now` when given (the SQL form of [`Credential::status`]).
fn matching<'a>(
    owner: &'a Owner,
    agent_id: AgentId,
    status: Option<CredentialStatus>,
    now: DateTime<Utc>,
) -> credentials::BoxedQuery<'a, Pg> {
    let query = credentials::table
        .filter(credentials::agent_id.eq(agent_id.0))
        .filter(credentials::owner.eq(owner.as_str()))
        .into_boxed();
    match status {
        None => query,
        Some(CredentialStatus::Revoked) => query.filter(credentials::revoked_at.is_not_null()),
        Some(CredentialStatus::Expired) => query
            .filter(credentials::revoked_at.is_null())
            .filter(credentials::expires_at.le(now)),
        Some(CredentialStatus::Active) => query.filter(credentials::revoked_at.is_null()).filter(
            credentials::expires_at
                .is_null()
                .or(credentials::expires_at.gt(now)),
        ),
    }
}

/// Locks the credential `id` of agent `agent_id` of `owner` until the end of the
/// current transaction; fails with `NotFound` (also when `of_type` is given and
/// the credential is of another type) or `CredentialRevoked`.
async fn lock_unrevoked(
    conn: &mut AsyncPgConnection,
    owner: &Owner,
    agent_id: AgentId,
    id: CredentialId,
    of_type: Option<CredentialType>,
) -> Result<(), TxError> {
    let stored: Option<(String, Option<DateTime<Utc>>)> = credentials::table
        .filter(credentials::credential_id.eq(id.0))
        .filter(credentials::agent_id.eq(agent_id.0))
        .filter(credentials::owner.eq(owner.as_str()))
        .select((credentials::credential_type, credentials::revoked_at))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let Some((stored_type, revoked_at)) = stored else {
        return Err(StoreError::NotFound.into());
    };
    // A key of the other type names no credential the caller could rotate.
    if of_type.is_some_and(|wanted| wanted.as_str() != stored_type) {
        return Err(StoreError::NotFound.into());
    }
    match revoked_at {
        Some(_) => Err(StoreError::CredentialRevoked.into()),
        None => Ok(()),
    }
}

#[async_trait]
impl CredentialRepository for PgStore {
    async fn create(
        &self,
        credential: &Credential,
        max_active_per_agent: u32,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = checkout(&self.pool).await?;
        conn.transaction(async |conn| {
            // The agent's row lock serializes this with other creations,
            // updates and the decommissioning of the same agent.
            let status = lock_agent(conn, &credential.owner, credential.agent_id).await?;
            if status != AgentStatus::Active {
                return Err(StoreError::AgentNotActive.into());
            }
            let active: i64 = matching(
                &credential.owner,
                credential.agent_id,
                Some(CredentialStatus::Active),
                now,
            )
            .count()
            .get_result(conn)
            .await?;
            if active >= i64::from(max_active_per_agent) {
                return Err(StoreError::LimitExceeded.into());
            }
            diesel::insert_into(credentials::table)
                .values(NewCredentialRow::from(credential))
                .execute(conn)
                .await?;
            insert_event(conn, event).await?;
            Ok::<_, TxError>(())
        })
        .await?;
        Ok(())
    }

    async fn find(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
    ) -> Result<Option<Credential>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::credential_id.eq(id.0))
            .filter(credentials::agent_id.eq(agent_id.0))
            .filter(credentials::owner.eq(owner.as_str()))
            .select(CredentialRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        row.map(Credential::try_from).transpose()
    }

    async fn list(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        status: Option<CredentialStatus>,
        now: DateTime<Utc>,
        page: PageRequest,
    ) -> Result<Page<Credential>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        let mut conn = checkout(&self.pool).await?;
        // One snapshot for the count and the page, so they agree.
        let (count, rows) = conn
            .build_transaction()
            .read_only()
            .repeatable_read()
            .run(async |conn| {
                let count: i64 = matching(owner, agent_id, status, now)
                    .count()
                    .get_result(conn)
                    .await?;
                let rows: Vec<CredentialRow> = matching(owner, agent_id, status, now)
                    .select(CredentialRow::as_select())
                    .order((
                        credentials::created_at.desc(),
                        credentials::credential_id.desc(),
                    ))
                    .limit(limit)
                    .offset(offset)
                    .load(conn)
                    .await?;
                Ok::<_, TxError>((count, rows))
            })
            .await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(Credential::try_from)
                .collect::<Result<_, _>>()?,
            request: page,
            total: total(count)?,
        })
    }

    async fn find_by_hint(
        &self,
        agent_id: AgentId,
        hint: &str,
    ) -> Result<Vec<Credential>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let rows: Vec<CredentialRow> = credentials::table
            .filter(credentials::agent_id.eq(agent_id.0))
            // A public key's hint is NULL: without this it would match
            // every lookup.
            .filter(credentials::credential_type.eq(CredentialType::Secret.as_str()))
            .filter(
                credentials::secret_hint
                    .eq(hint)
                    .or(credentials::secret_hint.is_null()),
            )
            .select(CredentialRow::as_select())
            .order((
                credentials::created_at.desc(),
                credentials::credential_id.desc(),
            ))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        rows.into_iter().map(Credential::try_from).collect()
    }

    async fn find_public_keys(&self, agent_id: AgentId) -> Result<Vec<Credential>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let rows: Vec<CredentialRow> = credentials::table
            .filter(credentials::agent_id.eq(agent_id.0))
            .filter(credentials::credential_type.eq(CredentialType::PublicKey.as_str()))
            .select(CredentialRow::as_select())
            .order((
                credentials::created_at.desc(),
                credentials::credential_id.desc(),
            ))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        rows.into_iter().map(Credential::try_from).collect()
    }

    async fn rotate(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
        new_key: &CredentialKey,
        event: &AuditEvent,
    ) -> Result<Credential, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let row = conn
            .transaction(async |conn| {
                lock_unrevoked(conn, owner, agent_id, id, Some(new_key.credential_type())).await?;
                let row: CredentialRow = diesel::update(
                    credentials::table
                        .filter(credentials::credential_id.eq(id.0))
                        .filter(credentials::agent_id.eq(agent_id.0))
                        .filter(credentials::owner.eq(owner.as_str())),
                )
                .set(CredentialKeyColumns::from(new_key))
                .returning(CredentialRow::as_returning())
                .get_result(conn)
                .await?;
                insert_event(conn, event).await?;
                Ok::<_, TxError>(row)
            })
            .await?;
        Credential::try_from(row)
    }

    async fn revoke(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Credential, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let row = conn
            .transaction(async |conn| {
                lock_unrevoked(conn, owner, agent_id, id, None).await?;
                let row: CredentialRow = diesel::update(
                    credentials::table
                        .filter(credentials::credential_id.eq(id.0))
                        .filter(credentials::agent_id.eq(agent_id.0))
                        .filter(credentials::owner.eq(owner.as_str())),
                )
                .set(credentials::revoked_at.eq(now))
                .returning(CredentialRow::as_returning())
                .get_result(conn)
                .await?;
                insert_event(conn, event).await?;
                Ok::<_, TxError>(row)
            })
            .await?;
        Credential::try_from(row)
    }

    async fn subject_state(
        &self,
        agent_id: AgentId,
        credential_id: CredentialId,
    ) -> Result<Option<SubjectState>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let row: Option<(String, String, Option<DateTime<Utc>>)> = credentials::table
            .inner_join(agents::table)
            .filter(credentials::credential_id.eq(credential_id.0))
            .filter(credentials::agent_id.eq(agent_id.0))
            .select((agents::owner, agents::status, credentials::revoked_at))
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        let Some((owner, status, revoked_at)) = row else {
            return Ok(None);
        };
        let bad = |e: idp_domain::ValueError| corrupt_row("agents", agent_id, e);
        Ok(Some(SubjectState {
            owner: Owner::parse(&owner).map_err(bad)?,
            agent_status: status.parse().map_err(bad)?,
            credential_revoked: revoked_at.is_some(),
        }))
    }
}
