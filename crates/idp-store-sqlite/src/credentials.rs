//! [`CredentialRepository`] on `credentials`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::entities::{Credential, CredentialKey, CredentialType};
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::{CredentialRepository, SubjectState};
use idp_domain::values::{AgentId, AgentStatus, CredentialId, CredentialStatus, Owner};

use crate::SqliteStore;
use crate::agents::agent_status;
use crate::chain::append_chained;
use crate::columns::{after, at_or_before, millis, uuid_text};
use crate::error::{TxError, corrupt_row, from_diesel};
use crate::paging::{limit_offset, total};
use crate::pool::{read_transaction, run, run_write, write_transaction};
use crate::rows::{CredentialKeyColumns, CredentialRow, NewCredentialRow};
use crate::schema::{agents, credentials};

/// The credentials of agent `agent_id` of `owner`, with the status `status` at
/// `now` when given (the SQL form of [`Credential::status`]).
fn matching<'a>(
    owner: &'a str,
    agent_id: &'a str,
    status: Option<CredentialStatus>,
    now: DateTime<Utc>,
) -> credentials::BoxedQuery<'a, Sqlite> {
    let query = credentials::table
        .filter(credentials::agent_id.eq(agent_id))
        .filter(credentials::owner.eq(owner))
        .into_boxed();
    match status {
        None => query,
        Some(CredentialStatus::Revoked) => query.filter(credentials::revoked_at.is_not_null()),
        Some(CredentialStatus::Expired) => query
            .filter(credentials::revoked_at.is_null())
            .filter(credentials::expires_at.le(at_or_before(now))),
        Some(CredentialStatus::Active) => query.filter(credentials::revoked_at.is_null()).filter(
            credentials::expires_at
                .is_null()
                .or(credentials::expires_at.gt(after(now))),
        ),
    }
}

/// The credential `id` of agent `agent_id` of `owner`, inside the caller's
/// write transaction; fails with `NotFound` (also when `of_type` is given and
/// the credential is of another type) or `CredentialRevoked`.
fn ensure_unrevoked(
    conn: &mut SqliteConnection,
    owner: &str,
    agent_id: &str,
    id: &str,
    of_type: Option<CredentialType>,
) -> Result<(), TxError> {
    let stored: Option<(String, Option<i64>)> = credentials::table
        .filter(credentials::credential_id.eq(id))
        .filter(credentials::agent_id.eq(agent_id))
        .filter(credentials::owner.eq(owner))
        .select((credentials::credential_type, credentials::revoked_at))
        .first(conn)
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

/// The ids of one credential, as its tenant queries filter on them.
struct CredentialIds {
    owner: String,
    agent_id: String,
    id: String,
}

impl CredentialIds {
    fn new(owner: &Owner, agent_id: AgentId, id: CredentialId) -> Self {
        Self {
            owner: owner.as_str().to_owned(),
            agent_id: uuid_text(agent_id.0),
            id: uuid_text(id.0),
        }
    }

    fn row(&self) -> credentials::BoxedQuery<'_, Sqlite> {
        credentials::table
            .filter(credentials::credential_id.eq(&self.id))
            .filter(credentials::agent_id.eq(&self.agent_id))
            .filter(credentials::owner.eq(&self.owner))
            .into_boxed()
    }

    /// Applies `change` to the credential if it is not revoked (and is of
    /// type `of_type`, when given), appends `event`, and answers the changed
    /// row; one write transaction.
    fn change_unrevoked(
        &self,
        conn: &mut SqliteConnection,
        of_type: Option<CredentialType>,
        event: &AuditEvent,
        change: impl FnOnce(&mut SqliteConnection) -> QueryResult<usize>,
    ) -> Result<Credential, StoreError> {
        let row = write_transaction(conn, |conn| {
            ensure_unrevoked(conn, &self.owner, &self.agent_id, &self.id, of_type)?;
            change(conn)?;
            let row: CredentialRow = self.row().select(CredentialRow::as_select()).first(conn)?;
            append_chained(conn, std::slice::from_ref(event))?;
            Ok(row)
        })?;
        Credential::try_from(row)
    }
}

#[async_trait]
impl CredentialRepository for SqliteStore {
    async fn create(
        &self,
        credential: &Credential,
        max_active_per_agent: u32,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let row = NewCredentialRow::try_from(credential)?;
        let event = event.clone();
        let owner = credential.owner.as_str().to_owned();
        let agent_id = uuid_text(credential.agent_id.0);
        run_write(&self.pool, &self.writes, move |conn| {
            write_transaction(conn, |conn| {
                // The write lock serializes this with other creations, updates
                // and the decommissioning of the same agent.
                if agent_status(conn, &owner, &agent_id)? != AgentStatus::Active {
                    return Err(StoreError::AgentNotActive.into());
                }
                let active: i64 = matching(&owner, &agent_id, Some(CredentialStatus::Active), now)
                    .count()
                    .get_result(conn)?;
                if active >= i64::from(max_active_per_agent) {
                    return Err(StoreError::LimitExceeded.into());
                }
                diesel::insert_into(credentials::table)
                    .values(&row)
                    .execute(conn)?;
                append_chained(conn, std::slice::from_ref(&event))?;
                Ok(())
            })
        })
        .await
    }

    async fn find(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
    ) -> Result<Option<Credential>, StoreError> {
        let ids = CredentialIds::new(owner, agent_id, id);
        run(&self.pool, move |conn| {
            let row: Option<CredentialRow> = ids
                .row()
                .select(CredentialRow::as_select())
                .first(conn)
                .optional()
                .map_err(from_diesel)?;
            row.map(Credential::try_from).transpose()
        })
        .await
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
        let owner = owner.as_str().to_owned();
        let agent_id = uuid_text(agent_id.0);
        let (count, rows) = run(&self.pool, move |conn| {
            read_transaction(conn, |conn| {
                let count: i64 = matching(&owner, &agent_id, status, now)
                    .count()
                    .get_result(conn)?;
                let rows: Vec<CredentialRow> = matching(&owner, &agent_id, status, now)
                    .select(CredentialRow::as_select())
                    .order((
                        credentials::created_at.desc(),
                        credentials::credential_id.desc(),
                    ))
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
        let agent_id = uuid_text(agent_id.0);
        let hint = hint.to_owned();
        let rows: Vec<CredentialRow> = run(&self.pool, move |conn| {
            credentials::table
                .filter(credentials::agent_id.eq(&agent_id))
                // A public key's hint is NULL: without this it would match
                // every lookup.
                .filter(credentials::credential_type.eq(CredentialType::Secret.as_str()))
                .filter(
                    credentials::secret_hint
                        .eq(&hint)
                        .or(credentials::secret_hint.is_null()),
                )
                .select(CredentialRow::as_select())
                .order((
                    credentials::created_at.desc(),
                    credentials::credential_id.desc(),
                ))
                .load(conn)
                .map_err(from_diesel)
        })
        .await?;
        rows.into_iter().map(Credential::try_from).collect()
    }

    async fn find_public_keys(&self, agent_id: AgentId) -> Result<Vec<Credential>, StoreError> {
        let agent_id = uuid_text(agent_id.0);
        let rows: Vec<CredentialRow> = run(&self.pool, move |conn| {
            credentials::table
                .filter(credentials::agent_id.eq(&agent_id))
                .filter(credentials::credential_type.eq(CredentialType::PublicKey.as_str()))
                .select(CredentialRow::as_select())
                .order((
                    credentials::created_at.desc(),
                    credentials::credential_id.desc(),
                ))
                .load(conn)
                .map_err(from_diesel)
        })
        .await?;
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
        let ids = CredentialIds::new(owner, agent_id, id);
        let event = event.clone();
        let of_type = new_key.credential_type();
        let columns = CredentialKeyColumns::try_from(new_key)?;
        run_write(&self.pool, &self.writes, move |conn| {
            ids.change_unrevoked(conn, Some(of_type), &event, |conn| {
                diesel::update(
                    credentials::table
                        .filter(credentials::credential_id.eq(&ids.id))
                        .filter(credentials::agent_id.eq(&ids.agent_id))
                        .filter(credentials::owner.eq(&ids.owner)),
                )
                .set(&columns)
                .execute(conn)
            })
        })
        .await
    }

    async fn revoke(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Credential, StoreError> {
        let ids = CredentialIds::new(owner, agent_id, id);
        let event = event.clone();
        let now = millis(now);
        run_write(&self.pool, &self.writes, move |conn| {
            ids.change_unrevoked(conn, None, &event, |conn| {
                diesel::update(
                    credentials::table
                        .filter(credentials::credential_id.eq(&ids.id))
                        .filter(credentials::agent_id.eq(&ids.agent_id))
                        .filter(credentials::owner.eq(&ids.owner)),
                )
                .set(credentials::revoked_at.eq(now))
                .execute(conn)
            })
        })
        .await
    }

    async fn subject_state(
        &self,
        agent_id: AgentId,
        credential_id: CredentialId,
    ) -> Result<Option<SubjectState>, StoreError> {
        let agent_key = uuid_text(agent_id.0);
        let credential_key = uuid_text(credential_id.0);
        let row: Option<(String, String, Option<i64>)> = run(&self.pool, move |conn| {
            credentials::table
                .inner_join(agents::table)
                .filter(credentials::credential_id.eq(&credential_key))
                .filter(credentials::agent_id.eq(&agent_key))
                .select((agents::owner, agents::status, credentials::revoked_at))
                .first(conn)
                .optional()
                .map_err(from_diesel)
        })
        .await?;
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
