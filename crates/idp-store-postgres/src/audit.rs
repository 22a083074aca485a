//! [`AuditLog`] on `audit_events`. Append-only: this module has no UPDATE or
//! DELETE, and the table's triggers refuse them from anywhere else.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use idp_domain::StoreError;
use idp_domain::audit::{AuditEvent, AuditFilter};
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::AuditLog;
use idp_domain::values::{AgentId, AuditAction, EventId, Owner};

use crate::PgStore;
use crate::error::{TxError, from_diesel};
use crate::paging::{limit_offset, page_from_rows};
use crate::pool::checkout;
use crate::rows::{AuditEventRow, NewAuditEventRow};
use crate::schema::audit_events;

/// Appends `row` on `conn` (inside the caller's transaction, if any).
pub(crate) async fn insert_event(
    conn: &mut AsyncPgConnection,
    row: NewAuditEventRow<'_>,
) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values(row)
        .execute(conn)
        .await
        .map(drop)
}

/// Most rows in one INSERT: 10 bind parameters a row stays far below
/// PostgreSQL's limit of 65,535 parameters per statement.
const ROWS_PER_INSERT: usize = 1_000;

/// Appends `rows` on `conn` with one multi-row INSERT per [`ROWS_PER_INSERT`]
/// rows (inside the caller's transaction, if any).
async fn insert_events(
    conn: &mut AsyncPgConnection,
    rows: &[NewAuditEventRow<'_>],
) -> QueryResult<()> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        diesel::insert_into(audit_events::table)
            .values(chunk)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// `owner`'s events matching `filter`.
fn matching<'a>(owner: &'a Owner, filter: &AuditFilter) -> audit_events::BoxedQuery<'a, Pg> {
    let mut query = audit_events::table
        .filter(audit_events::owner.eq(owner.as_str()))
        .into_boxed();
    if let Some(agent_id) = filter.agent_id {
        query = query.filter(audit_events::agent_id.eq(agent_id.0));
    }
    if let Some(action) = filter.action {
        query = query.filter(audit_events::action.eq(action.as_str()));
    }
    if let Some(outcome) = filter.outcome {
        query = query.filter(audit_events::outcome.eq(outcome.as_str()));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_events::timestamp.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_events::timestamp.le(to));
    }
    query
}

#[async_trait]
impl AuditLog for PgStore {
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = checkout(&self.pool).await?;
        insert_event(&mut conn, event.into())
            .await
            .map_err(from_diesel)
    }

    /// One multi-row INSERT, atomic on its own; several (over
    /// `ROWS_PER_INSERT` events) share one transaction. One commit either way.
    async fn append_all(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<NewAuditEventRow<'_>> = events.iter().map(Into::into).collect();
        let mut conn = checkout(&self.pool).await?;
        if rows.len() <= ROWS_PER_INSERT {
            return insert_events(&mut conn, &rows).await.map_err(from_diesel);
        }
        conn.transaction(async |conn| {
            insert_events(conn, &rows).await?;
            Ok::<_, TxError>(())
        })
        .await?;
        Ok(())
    }

    async fn list(
        &self,
        owner: &Owner,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        let mut conn = checkout(&self.pool).await?;
        // One statement, one round trip: see `page_from_rows`.
        let rows: Vec<(AuditEventRow, Option<i64>)> = matching(owner, filter)
            .select((
                AuditEventRow::as_select(),
                matching(owner, filter).count().single_value(),
            ))
            .order((
                audit_events::timestamp.desc(),
                audit_events::event_id.desc(),
            ))
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

    async fn find(
        &self,
        owner: &Owner,
        id: EventId,
        not_before: DateTime<Utc>,
    ) -> Result<Option<AuditEvent>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let row: Option<AuditEventRow> = audit_events::table
            .filter(audit_events::event_id.eq(id.0))
            .filter(audit_events::owner.eq(owner.as_str()))
            .filter(audit_events::timestamp.ge(not_before))
            .select(AuditEventRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        row.map(AuditEvent::try_from).transpose()
    }

    async fn tokens_issued_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(AgentId, u64)>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let counts: Vec<(Option<uuid::Uuid>, i64)> = audit_events::table
            .filter(audit_events::action.eq(AuditAction::TokenIssued.as_str()))
            .filter(audit_events::timestamp.ge(since))
            .filter(audit_events::agent_id.is_not_null())
            .group_by(audit_events::agent_id)
            .select((audit_events::agent_id, diesel::dsl::count_star()))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(counts
            .into_iter()
            .filter_map(|(agent_id, count)| {
                Some((AgentId(agent_id?), u64::try_from(count).unwrap_or(0)))
            })
            .collect())
    }

    async fn tokens_issued_by(
        &self,
        owner: &Owner,
        agent: AgentId,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let count: i64 = audit_events::table
            .filter(audit_events::owner.eq(owner.as_str()))
            .filter(audit_events::agent_id.eq(agent.0))
            .filter(audit_events::timestamp.ge(since))
            .filter(audit_events::action.eq(AuditAction::TokenIssued.as_str()))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
