//! [`AuditLog`] on `audit_events`. Append-only: this module has no UPDATE or
//! DELETE, and the table's triggers refuse them (and `INSERT OR REPLACE`) from
//! anywhere else.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use idp_domain::StoreError;
use idp_domain::audit::{AuditEvent, AuditFilter};
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::AuditLog;
use idp_domain::values::{EventId, Owner};

use crate::SqliteStore;
use crate::columns::{at_or_after, at_or_before, uuid_text};
use crate::error::from_diesel;
use crate::paging::{limit_offset, total};
use crate::pool::{read_transaction, run};
use crate::rows::{AuditEventRow, NewAuditEventRow};
use crate::schema::audit_events;

/// Appends `row` on `conn` (inside the caller's transaction, if any).
pub(crate) fn insert_event(conn: &mut SqliteConnection, row: &NewAuditEventRow) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

/// `owner`'s events matching `filter`.
fn matching<'a>(owner: &'a str, filter: &AuditFilter) -> audit_events::BoxedQuery<'a, Sqlite> {
    let mut query = audit_events::table
        .filter(audit_events::owner.eq(owner))
        .into_boxed();
    if let Some(agent_id) = filter.agent_id {
        query = query.filter(audit_events::agent_id.eq(uuid_text(agent_id.0)));
    }
    if let Some(action) = filter.action {
        query = query.filter(audit_events::action.eq(action.as_str()));
    }
    if let Some(outcome) = filter.outcome {
        query = query.filter(audit_events::outcome.eq(outcome.as_str()));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_events::timestamp.ge(at_or_after(from)));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_events::timestamp.le(at_or_before(to)));
    }
    query
}

#[async_trait]
impl AuditLog for SqliteStore {
    /// One autocommit INSERT: committed (to the WAL) before this returns.
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let row = NewAuditEventRow::try_from(event)?;
        run(&self.pool, move |conn| {
            insert_event(conn, &row).map_err(from_diesel)
        })
        .await
    }

    async fn list(
        &self,
        owner: &Owner,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let (limit, offset) = limit_offset(page)?;
        let owner = owner.as_str().to_owned();
        let filter = filter.clone();
        let (count, rows) = run(&self.pool, move |conn| {
            read_transaction(conn, |conn| {
                let count: i64 = matching(&owner, &filter).count().get_result(conn)?;
                let rows: Vec<AuditEventRow> = matching(&owner, &filter)
                    .select(AuditEventRow::as_select())
                    .order((
                        audit_events::timestamp.desc(),
                        audit_events::event_id.desc(),
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
                .map(AuditEvent::try_from)
                .collect::<Result<_, _>>()?,
            request: page,
            total: total(count)?,
        })
    }

    async fn find(
        &self,
        owner: &Owner,
        id: EventId,
        not_before: DateTime<Utc>,
    ) -> Result<Option<AuditEvent>, StoreError> {
        let owner = owner.as_str().to_owned();
        let id = uuid_text(id.0);
        let not_before = at_or_after(not_before);
        let row: Option<AuditEventRow> = run(&self.pool, move |conn| {
            audit_events::table
                .filter(audit_events::event_id.eq(&id))
                .filter(audit_events::owner.eq(&owner))
                .filter(audit_events::timestamp.ge(not_before))
                .select(AuditEventRow::as_select())
                .first(conn)
                .optional()
                .map_err(from_diesel)
        })
        .await?;
        row.map(AuditEvent::try_from).transpose()
    }
}
