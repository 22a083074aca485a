//! [`AuditLog`] on `audit_events` and `audit_heads`. Append-only: this
//! module has no UPDATE or DELETE, and the table's triggers refuse them (and
//! `INSERT OR REPLACE`, and an event that is not chained) from anywhere else.
//! Appending links the events into their owners' chains (the `chain` module).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::AsSelect;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::sqlite::Sqlite;
use idp_domain::StoreError;
use idp_domain::audit::{AuditEvent, AuditFilter};
use idp_domain::audit_chain::ChainHead;
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::AuditLog;
use idp_domain::values::{AgentId, AuditAction, EventId, Outcome, Owner};

use std::collections::BTreeMap;

use crate::SqliteStore;
use crate::chain::{append_chained, read_head};
use crate::columns::{at_or_after, at_or_before, parse_uuid, uuid_text};
use crate::error::{corrupt_row, from_diesel};
use crate::paging::{limit_offset, total};
use crate::pool::{read_transaction, run, run_write, write_transaction};
use crate::rows::AuditEventRow;
use crate::schema::{audit_events, audit_heads};

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

/// How many of `owner`'s events match `filter`.
fn count_of<'a>(
    owner: &'a str,
    filter: &AuditFilter,
) -> audit_events::BoxedQuery<'a, Sqlite, BigInt> {
    matching(owner, filter).count()
}

/// One page of `owner`'s events matching `filter`, newest first. Each filter
/// has an index that yields this order (the planner's statistics for them
/// are in migration `2026-12-02-000000_audit_statistics`).
fn page_of<'a>(
    owner: &'a str,
    filter: &AuditFilter,
    limit: i64,
    offset: i64,
) -> audit_events::BoxedQuery<'a, Sqlite, AsSelect<AuditEventRow, Sqlite>> {
    matching(owner, filter)
        .select(AuditEventRow::as_select())
        .order((
            audit_events::timestamp.desc(),
            audit_events::event_id.desc(),
        ))
        .limit(limit)
        .offset(offset)
}

#[async_trait]
impl AuditLog for SqliteStore {
    /// One `BEGIN IMMEDIATE` transaction: the event is linked after its
    /// owner's head, stored and the head moved (see the `chain` module).
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.append_all(std::slice::from_ref(event)).await
    }

    /// One `BEGIN IMMEDIATE` transaction for the whole batch, so one commit
    /// (one sync of the WAL): every event linked into its owner's chain, one
    /// multi-row INSERT per owner (per `ROWS_PER_INSERT` events), all or none.
    async fn append_all(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        run_write(&self.pool, &self.writes, move |conn| {
            write_transaction(conn, |conn| append_chained(conn, &events))
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
                let count: i64 = count_of(&owner, &filter).get_result(conn)?;
                let rows: Vec<AuditEventRow> =
                    page_of(&owner, &filter, limit, offset).load(conn)?;
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

    async fn tokens_issued_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(AgentId, u64)>, StoreError> {
        let since = at_or_after(since);
        let (issued, exchanged): (Vec<(Option<String>, i64)>, Vec<(Option<String>, i64)>) =
            run(&self.pool, move |conn| {
                let issued = audit_events::table
                    .filter(audit_events::action.eq(AuditAction::TokenIssued.as_str()))
                    .filter(audit_events::timestamp.ge(since))
                    .filter(audit_events::agent_id.is_not_null())
                    .group_by(audit_events::agent_id)
                    .select((audit_events::agent_id, diesel::dsl::count_star()))
                    .load(conn)
                    .map_err(from_diesel)?;
                let exchanged = audit_events::table
                    .filter(audit_events::action.eq(AuditAction::TokenExchanged.as_str()))
                    .filter(audit_events::outcome.eq(Outcome::Success.as_str()))
                    .filter(audit_events::timestamp.ge(since))
                    .filter(audit_events::actor_id.is_not_null())
                    .group_by(audit_events::actor_id)
                    .select((audit_events::actor_id, diesel::dsl::count_star()))
                    .load(conn)
                    .map_err(from_diesel)?;
                Ok((issued, exchanged))
            })
            .await?;
        // A row whose agent id is not a UUID names no agent, so it counts
        // against no quota: skipped rather than refusing to start over it.
        let mut counts: BTreeMap<uuid::Uuid, u64> = BTreeMap::new();
        for (agent_id, count) in issued.into_iter().chain(exchanged) {
            let Some(id) = agent_id.and_then(|id| parse_uuid(&id).ok()) else {
                continue;
            };
            *counts.entry(id).or_default() += u64::try_from(count).unwrap_or(0);
        }
        Ok(counts
            .into_iter()
            .map(|(id, count)| (AgentId(id), count))
            .collect())
    }

    async fn tokens_issued_by(
        &self,
        owner: &Owner,
        agent: AgentId,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let owner = owner.as_str().to_owned();
        let agent = uuid_text(agent.0);
        let since = at_or_after(since);
        let count: i64 = run(&self.pool, move |conn| {
            let issued: i64 = audit_events::table
                .filter(audit_events::owner.eq(&owner))
                .filter(audit_events::agent_id.eq(&agent))
                .filter(audit_events::timestamp.ge(since))
                .filter(audit_events::action.eq(AuditAction::TokenIssued.as_str()))
                .count()
                .get_result(conn)
                .map_err(from_diesel)?;
            let exchanged: i64 = audit_events::table
                .filter(audit_events::owner.eq(&owner))
                .filter(audit_events::actor_id.eq(&agent))
                .filter(audit_events::timestamp.ge(since))
                .filter(audit_events::action.eq(AuditAction::TokenExchanged.as_str()))
                .filter(audit_events::outcome.eq(Outcome::Success.as_str()))
                .count()
                .get_result(conn)
                .map_err(from_diesel)?;
            Ok(issued + exchanged)
        })
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Served by the unique index on `(owner, sequence)`.
    async fn chain_page(
        &self,
        owner: &Owner,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        // A sequence beyond SQLite's integers is past every stored one.
        let Ok(from) = i64::try_from(from_sequence) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let owner = owner.as_str().to_owned();
        let rows: Vec<AuditEventRow> = run(&self.pool, move |conn| {
            audit_events::table
                .filter(audit_events::owner.eq(&owner))
                .filter(audit_events::sequence.ge(from))
                .order(audit_events::sequence)
                .limit(limit)
                .select(AuditEventRow::as_select())
                .load(conn)
                .map_err(from_diesel)
        })
        .await?;
        rows.into_iter().map(AuditEvent::try_from).collect()
    }

    async fn chain_head(&self, owner: &Owner) -> Result<Option<ChainHead>, StoreError> {
        let owner = owner.as_str().to_owned();
        run(&self.pool, move |conn| {
            read_head(conn, &owner).map_err(StoreError::from)
        })
        .await
    }

    async fn chain_owners(&self) -> Result<Vec<Owner>, StoreError> {
        let owners: Vec<String> = run(&self.pool, |conn| {
            audit_heads::table
                .select(audit_heads::owner)
                .order(audit_heads::owner)
                .load(conn)
                .map_err(from_diesel)
        })
        .await?;
        owners
            .iter()
            .map(|owner| {
                Owner::parse_operator(owner).map_err(|e| corrupt_row("audit_heads", owner, e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel::sql_types::{Integer, Text};
    use idp_domain::values::{AuditAction, Outcome};
    use uuid::Uuid;

    use super::*;
    use crate::SqliteConfig;
    use crate::rows::NewAuditEventRow;
    use crate::testing::TestDataDir;

    /// `EXPLAIN QUERY PLAN` of a query, bind parameters included.
    struct ExplainQueryPlan<Q>(Q);

    impl<Q: QueryFragment<Sqlite>> QueryFragment<Sqlite> for ExplainQueryPlan<Q> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
            out.push_sql("EXPLAIN QUERY PLAN ");
            self.0.walk_ast(out.reborrow())
        }
    }

    impl<Q> QueryId for ExplainQueryPlan<Q> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<Q> Query for ExplainQueryPlan<Q> {
        /// id, parent, unused, detail.
        type SqlType = (Integer, Integer, Integer, Text);
    }

    impl<Q> RunQueryDsl<SqliteConnection> for ExplainQueryPlan<Q> {}

    /// The detail lines of `query`'s plan.
    fn plan_of<Q: QueryFragment<Sqlite>>(conn: &mut SqliteConnection, query: Q) -> Vec<String> {
        ExplainQueryPlan(query)
            .load::<(i32, i32, i32, String)>(conn)
            .unwrap()
            .into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect()
    }

    /// SQLite picks an index from estimates. Without statistics it guesses
    /// that `agent_id = ?` narrows `owner = ?` only from 10 rows to 9, and
    /// with a date range on both sides it read an agent's page through
    /// `audit_events_owner_time_idx`: every event of the owner in the range,
    /// each looked up in the table (thousands for a page of 20). The
    /// statistics written by migration `2026-12-02-000000_audit_statistics`
    /// make each filter use its own index whatever the rows (the database
    /// here is empty), so this fails if they go missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_audit_filter_reads_through_its_own_index_without_sorting() {
        let dir = TestDataDir::create().unwrap();
        drop(dir.open(SqliteConfig::default()).await.unwrap());
        let mut conn = dir.raw_connection().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let agent_id = Some(AgentId(Uuid::new_v4()));
        let action = Some(AuditAction::TokenIssued);
        // The service always adds a lower bound (the retention window).
        let from = Some(now - Duration::days(7));
        let to = Some(now + Duration::hours(1));
        let by_agent = "audit_events_owner_agent_time_idx";
        let by_action = "audit_events_owner_action_time_idx";
        let by_time = "audit_events_owner_time_idx";
        let cases = [
            (
                "agent, from, to",
                AuditFilter {
                    agent_id,
                    from,
                    to,
                    ..AuditFilter::default()
                },
                by_agent,
            ),
            (
                "agent, from",
                AuditFilter {
                    agent_id,
                    from,
                    ..AuditFilter::default()
                },
                by_agent,
            ),
            (
                "agent, action, from",
                AuditFilter {
                    agent_id,
                    action,
                    from,
                    ..AuditFilter::default()
                },
                by_agent,
            ),
            (
                "action, from, to",
                AuditFilter {
                    action,
                    from,
                    to,
                    ..AuditFilter::default()
                },
                by_action,
            ),
            (
                "outcome, from",
                AuditFilter {
                    outcome: Some(Outcome::Failure),
                    from,
                    ..AuditFilter::default()
                },
                by_time,
            ),
            (
                "from, to",
                AuditFilter {
                    from,
                    to,
                    ..AuditFilter::default()
                },
                by_time,
            ),
            ("nothing", AuditFilter::default(), by_time),
        ];
        for (name, filter, index) in cases {
            for (query, plan) in [
                ("count", plan_of(&mut conn, count_of("acme", &filter))),
                ("page", plan_of(&mut conn, page_of("acme", &filter, 20, 40))),
            ] {
                // One line: a search of that index, and no `USE TEMP B-TREE
                // FOR ORDER BY` (the index yields the page's order). Counting
                // all of an owner's events may read the chain's index instead,
                // the smallest one that starts with the owner: as good.
                let index = if (name, query) == ("nothing", "count")
                    && plan[0].contains("INDEX audit_events_owner_sequence_key (owner=?)")
                {
                    "audit_events_owner_sequence_key"
                } else {
                    index
                };
                assert_eq!(plan.len(), 1, "{name}, {query}: {plan:?}");
                assert!(
                    plan[0].starts_with("SEARCH audit_events USING ")
                        && plan[0].contains(&format!("INDEX {index} (owner=?")),
                    "{name}, {query}: {plan:?} does not search {index}"
                );
            }
        }
    }

    /// A chain page reads the unique index on `(owner, sequence)` in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chain_page_reads_through_the_sequence_index() {
        let dir = TestDataDir::create().unwrap();
        drop(dir.open(SqliteConfig::default()).await.unwrap());
        let mut conn = dir.raw_connection().unwrap();
        let query = audit_events::table
            .filter(audit_events::owner.eq("acme"))
            .filter(audit_events::sequence.ge(100_i64))
            .order(audit_events::sequence)
            .limit(50)
            .select(AuditEventRow::as_select());
        let plan = plan_of(&mut conn, query);
        assert_eq!(
            plan,
            [
                "SEARCH audit_events USING INDEX audit_events_owner_sequence_key (owner=? AND sequence>?)"
            ]
        );
    }

    fn event(owner: Option<&str>) -> AuditEvent {
        AuditEvent {
            event_id: EventId(Uuid::new_v4()),
            owner: owner.map(|o| Owner::parse(o).unwrap()),
            agent_id: None,
            actor_id: None,
            action: AuditAction::AuthFailed,
            outcome: Outcome::Failure,
            ip_address: None,
            user_agent: None,
            metadata: serde_json::json!({}),
            timestamp: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
            sequence: None,
            hash: None,
        }
    }

    #[test]
    fn a_batch_with_absent_values_is_one_multi_row_insert() {
        // diesel would run one INSERT per row (inside BEGIN ... COMMIT) if an
        // absent value were written as DEFAULT.
        let mut events = [event(Some("acme")), event(None), event(None)];
        idp_domain::audit_chain::link(&idp_domain::audit_chain::ChainHead::genesis(), &mut events)
            .unwrap();
        let rows = events
            .iter()
            .map(NewAuditEventRow::try_from)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let query = diesel::insert_into(audit_events::table).values(&rows[..]);
        let sql = diesel::debug_query::<Sqlite, _>(&query).to_string();
        assert_eq!(sql.matches("INSERT").count(), 1, "{sql}");
        assert!(!sql.contains("BEGIN"), "{sql}");
        assert_eq!(sql.matches("), (").count(), 2, "{sql}");
    }
}
