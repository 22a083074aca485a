//! [`AuditLog`] on `audit_events`. Append-only: this module has no UPDATE or
//! DELETE of an event, and the table's triggers refuse them from anywhere
//! else. Every append links its events into their owner's hash chain
//! ([`idp_domain::audit_chain`]) under the owner's `audit_heads` row lock:
//! [`AuditLog::append_all`] from the heads it last wrote, in one statement
//! that checks them (see [`crate::known_heads`]), or, when they are unknown
//! or have moved, by reading them under the locks ([`insert_events`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::Error as DieselError;
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use idp_domain::StoreError;
use idp_domain::audit::{AuditEvent, AuditFilter};
use idp_domain::audit_chain::{ChainHead, GENESIS_HASH, link};
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::AuditLog;
use idp_domain::values::{AgentId, AuditAction, EventId, Outcome, Owner};

use crate::PgStore;
use crate::error::{TxError, corrupt_row, from_diesel};
use crate::known_heads::LinkedBatch;
use crate::paging::{limit_offset, page_from_rows};
use crate::pool::checkout;
use crate::rows::{AuditEventRow, NewAuditEventColumns};
use crate::schema::{audit_events, audit_heads};

/// Appends `event` on `conn`, linked into its owner's chain; see
/// [`insert_events`]. Must run inside the caller's transaction.
pub(crate) async fn insert_event(
    conn: &mut AsyncPgConnection,
    event: &AuditEvent,
) -> QueryResult<()> {
    insert_events(conn, std::slice::from_ref(event))
        .await
        .map(drop)
}

/// Appends `events` on `conn`, each linked into its chain owner's hash chain
/// ([`AuditEvent::chain_owner`]), and answers the heads they leave. Must run
/// inside the caller's transaction, which holds each touched owner's
/// `audit_heads` row lock until it commits.
///
/// Three round trips whatever the number of owners: one statement creates or
/// locks every touched head and reads it (owners in sorted order, so two
/// batches never wait for each other in a cycle); each owner's events (in
/// their given order) are linked after its head; then the INSERT of the
/// events ([`InsertEvents`]) and one UPDATE of every head are sent together
/// (pipelined).
/// Concurrent writers of one owner, on any pool or node, queue on the head's
/// row lock, so they form one gapless chain; the unique index on
/// `(owner, sequence)` refuses a fork should anything else write.
pub(crate) async fn insert_events(
    conn: &mut AsyncPgConnection,
    events: &[AuditEvent],
) -> QueryResult<Vec<(String, ChainHead)>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let by_owner = by_chain_owner(events);
    let heads = lock_heads(conn, by_owner.keys()).await?;
    let mut new_heads = Vec::with_capacity(by_owner.len());
    let mut linked_events = Vec::with_capacity(events.len());
    for (owner, mut linked) in by_owner {
        let head = heads.get(&owner).ok_or_else(|| {
            DieselError::DeserializationError(format!("no head for {owner}").into())
        })?;
        let new_head =
            link(head, &mut linked).map_err(|e| DieselError::SerializationError(e.into()))?;
        new_heads.push((owner, new_head));
        linked_events.extend(linked);
    }
    let moved = HeadColumns::of(new_heads.iter().map(|(owner, head)| (owner, head)))?;
    let update_heads = diesel::sql_query(
        "UPDATE audit_heads AS h SET sequence = v.sequence, hash = v.hash \
         FROM unnest($1::text[], $2::bigint[], $3::text[]) AS v(owner, sequence, hash) \
         WHERE h.owner = v.owner",
    )
    .bind::<Array<Text>, _>(&moved.owner)
    .bind::<Array<BigInt>, _>(&moved.sequence)
    .bind::<Array<Text>, _>(&moved.hash);
    // The INSERT and the heads' UPDATE in one round trip: pipelined on
    // the connection, executed in order. Should the INSERT fail, the UPDATE
    // fails too (the transaction is aborted) and the INSERT's error, polled
    // first, is the one answered.
    let shared: &AsyncPgConnection = conn;
    let insert = InsertEvents(NewAuditEventColumns::of(&linked_events)).execute(&mut &*shared);
    let update = update_heads.execute(&mut &*shared);
    futures_util::future::try_join(insert, update).await?;
    Ok(new_heads)
}

/// `events` by chain owner, owners in sorted order, each owner's events in
/// their given order.
pub(crate) fn by_chain_owner(events: &[AuditEvent]) -> BTreeMap<String, Vec<AuditEvent>> {
    let mut by_owner: BTreeMap<String, Vec<AuditEvent>> = BTreeMap::new();
    for event in events {
        by_owner
            .entry(event.chain_owner().as_str().to_owned())
            .or_default()
            .push(event.clone());
    }
    by_owner
}

/// Heads as three column arrays, for `unnest`.
struct HeadColumns<'a> {
    owner: Vec<&'a str>,
    sequence: Vec<i64>,
    hash: Vec<&'a str>,
}

impl<'a> HeadColumns<'a> {
    fn of(heads: impl Iterator<Item = (&'a String, &'a ChainHead)>) -> QueryResult<Self> {
        let mut columns = Self {
            owner: Vec::new(),
            sequence: Vec::new(),
            hash: Vec::new(),
        };
        for (owner, head) in heads {
            columns.owner.push(owner);
            columns.sequence.push(
                i64::try_from(head.sequence)
                    .map_err(|e| DieselError::SerializationError(e.into()))?,
            );
            columns.hash.push(&head.hash);
        }
        Ok(columns)
    }

    fn push_binds<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<Array<Text>, _>(&self.owner)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.sequence)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.hash)
    }
}

/// The INSERT of a batch of events as twelve column arrays (`SELECT * FROM
/// unnest(...)`): one statement text whatever the number of rows, so each
/// connection prepares it once and reuses it, where a multi-row VALUES list
/// is a new statement for each batch size, parsed and planned at every
/// commit; and twelve bind parameters whatever the batch's size.
struct InsertEvents<'a>(NewAuditEventColumns<'a>);

impl QueryId for InsertEvents<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for InsertEvents<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO audit_events (event_id, owner, agent_id, actor_id, action, outcome, \
             ip_address, user_agent, metadata, \"timestamp\", sequence, hash) \
             SELECT * FROM unnest(",
        );
        push_event_binds(&self.0, &mut out)?;
        out.push_sql(")");
        Ok(())
    }
}

/// The twelve column arrays of `events`, comma-separated, in the order of
/// `audit_events`' columns in [`InsertEvents`] and in
/// `audit_append_from_known_heads`.
fn push_event_binds<'b>(
    events: &'b NewAuditEventColumns<'_>,
    out: &mut AstPass<'_, 'b, Pg>,
) -> QueryResult<()> {
    let c = events;
    out.push_bind_param::<Array<SqlUuid>, _>(&c.event_id)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Text>, _>(&c.owner)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Nullable<SqlUuid>>, _>(&c.agent_id)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Nullable<SqlUuid>>, _>(&c.actor_id)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Text>, _>(&c.action)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Text>, _>(&c.outcome)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Nullable<Text>>, _>(&c.ip_address)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Nullable<Text>>, _>(&c.user_agent)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Jsonb>, _>(&c.metadata)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Timestamptz>, _>(&c.timestamp)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Nullable<BigInt>>, _>(&c.sequence)?;
    out.push_sql(", ");
    out.push_bind_param::<Array<Nullable<Text>>, _>(&c.hash)
}

/// A batch linked from known heads ([`KnownHeads`](crate::known_heads::KnownHeads)), appended by the
/// migration's `audit_append_from_known_heads`: one statement, run outside a
/// transaction, so one round trip and its own commit.
struct AppendFromKnownHeads<'a> {
    from: HeadColumns<'a>,
    to: HeadColumns<'a>,
    events: NewAuditEventColumns<'a>,
}

impl<'a> AppendFromKnownHeads<'a> {
    fn of(batch: &'a LinkedBatch) -> QueryResult<Self> {
        Ok(Self {
            from: HeadColumns::of(batch.moves.iter().map(|m| (&m.owner, &m.from)))?,
            to: HeadColumns::of(batch.moves.iter().map(|m| (&m.owner, &m.to)))?,
            events: NewAuditEventColumns::of(&batch.events),
        })
    }
}

impl QueryId for AppendFromKnownHeads<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for AppendFromKnownHeads<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT audit_append_from_known_heads(");
        self.from.push_binds(&mut out)?;
        out.push_sql(", ");
        // The heads after the batch, in the same owners' order (the owners
        // are not sent twice).
        out.push_bind_param::<Array<BigInt>, _>(&self.to.sequence)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.to.hash)?;
        out.push_sql(", ");
        push_event_binds(&self.events, &mut out)?;
        out.push_sql(")");
        Ok(())
    }
}

/// The message `audit_append_from_known_heads` raises when a head is no
/// longer the one the batch was linked from (its own text: not translated).
const HEAD_MOVED: &str = "audit chain head moved";

/// What became of an append from known heads.
enum KnownHeadsAppend {
    Appended,
    /// A head had moved: nothing was written.
    HeadMoved,
}

/// Appends `batch` in one statement; see [`AppendFromKnownHeads`].
async fn append_from_known_heads(
    pool: &crate::PgPool,
    batch: &LinkedBatch,
) -> Result<KnownHeadsAppend, StoreError> {
    let statement = AppendFromKnownHeads::of(batch).map_err(from_diesel)?;
    let mut conn = checkout(pool).await?;
    match statement.execute(&mut conn).await {
        Ok(_) => Ok(KnownHeadsAppend::Appended),
        Err(DieselError::DatabaseError(_, info)) if info.message() == HEAD_MOVED => {
            Ok(KnownHeadsAppend::HeadMoved)
        }
        Err(e) => Err(from_diesel(e)),
    }
}

/// Creates each owner's head (sequence 0, [`GENESIS_HASH`]) unless it
/// exists, takes the row locks until the end of the transaction, in the
/// given (sorted) order, and reads them: one statement, one round trip.
async fn lock_heads<'a>(
    conn: &mut AsyncPgConnection,
    owners: impl Iterator<Item = &'a String>,
) -> QueryResult<BTreeMap<String, ChainHead>> {
    let values: Vec<_> = owners
        .map(|owner| {
            (
                audit_heads::owner.eq(owner.as_str()),
                audit_heads::sequence.eq(0_i64),
                audit_heads::hash.eq(GENESIS_HASH),
            )
        })
        .collect();
    let rows: Vec<(String, i64, String)> = diesel::insert_into(audit_heads::table)
        .values(&values)
        .on_conflict(audit_heads::owner)
        .do_update()
        .set(audit_heads::owner.eq(excluded(audit_heads::owner)))
        .returning((audit_heads::owner, audit_heads::sequence, audit_heads::hash))
        .get_results(conn)
        .await?;
    rows.into_iter()
        .map(|(owner, sequence, hash)| {
            let sequence =
                u64::try_from(sequence).map_err(|e| DieselError::DeserializationError(e.into()))?;
            Ok((owner, ChainHead { sequence, hash }))
        })
        .collect()
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
    /// One transaction: lock the owner's head, link, insert, move the head.
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.append_all(std::slice::from_ref(event)).await
    }

    /// One transaction for the whole batch, whatever its owners: one commit.
    /// When every owner's head is known to this store (it last wrote them)
    /// the batch is one statement from those heads; if one had moved, or was
    /// not known, it is appended under the heads' row locks.
    async fn append_all(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let linked = self
            .known_heads
            .link(by_chain_owner(events))
            .map_err(|e| StoreError::Unknown(e.context("linking audit events")))?;
        if let Some(batch) = linked {
            let mut appended = append_from_known_heads(&self.pool, &batch).await;
            // Refused because a batch this one was linked from had not
            // reached PostgreSQL yet? Then once it has, this one fits.
            if matches!(appended, Ok(KnownHeadsAppend::HeadMoved))
                && batch.has_predecessors()
                && batch.predecessors_appended().await
            {
                appended = append_from_known_heads(&self.pool, &batch).await;
            }
            let done = matches!(appended, Ok(KnownHeadsAppend::Appended));
            if !done {
                self.known_heads.forget(&batch.moves);
            }
            batch.settle(done);
            match appended {
                Ok(KnownHeadsAppend::Appended) => return Ok(()),
                Ok(KnownHeadsAppend::HeadMoved) => {}
                Err(e) => return Err(e),
            }
        }
        let mut conn = checkout(&self.pool).await?;
        let stored = conn
            .transaction(async |conn| Ok::<_, TxError>(insert_events(conn, events).await?))
            .await?;
        self.known_heads.record(stored);
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

    /// Served by the unique index on `(owner, sequence)`.
    async fn chain_page(
        &self,
        owner: &Owner,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        // Past i64::MAX no sequence can be stored.
        let Ok(from_sequence) = i64::try_from(from_sequence) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = checkout(&self.pool).await?;
        let rows: Vec<AuditEventRow> = audit_events::table
            .filter(audit_events::owner.eq(owner.as_str()))
            .filter(audit_events::sequence.ge(from_sequence))
            .order(audit_events::sequence.asc())
            .limit(limit)
            .select(AuditEventRow::as_select())
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        rows.into_iter().map(AuditEvent::try_from).collect()
    }

    async fn chain_head(&self, owner: &Owner) -> Result<Option<ChainHead>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let head: Option<(i64, String)> = audit_heads::table
            .find(owner.as_str())
            .select((audit_heads::sequence, audit_heads::hash))
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        head.map(|(sequence, hash)| {
            let sequence = u64::try_from(sequence)
                .map_err(|e| corrupt_row("audit_heads", owner.as_str(), e))?;
            Ok(ChainHead { sequence, hash })
        })
        .transpose()
    }

    async fn chain_owners(&self) -> Result<Vec<Owner>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let owners: Vec<String> = audit_heads::table
            .select(audit_heads::owner)
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        let mut owners = owners
            .into_iter()
            .map(|raw| Owner::parse_operator(&raw).map_err(|e| corrupt_row("audit_heads", &raw, e)))
            .collect::<Result<Vec<_>, _>>()?;
        // Rust's order, not the database's collation.
        owners.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(owners)
    }

    async fn tokens_issued_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(AgentId, u64)>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let issued: Vec<(Option<uuid::Uuid>, i64)> = audit_events::table
            .filter(audit_events::action.eq(AuditAction::TokenIssued.as_str()))
            .filter(audit_events::timestamp.ge(since))
            .filter(audit_events::agent_id.is_not_null())
            .group_by(audit_events::agent_id)
            .select((audit_events::agent_id, diesel::dsl::count_star()))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        let exchanged: Vec<(Option<uuid::Uuid>, i64)> = audit_events::table
            .filter(audit_events::action.eq(AuditAction::TokenExchanged.as_str()))
            .filter(audit_events::outcome.eq(Outcome::Success.as_str()))
            .filter(audit_events::timestamp.ge(since))
            .filter(audit_events::actor_id.is_not_null())
            .group_by(audit_events::actor_id)
            .select((audit_events::actor_id, diesel::dsl::count_star()))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        let mut counts: BTreeMap<uuid::Uuid, u64> = BTreeMap::new();
        for (agent_id, count) in issued.into_iter().chain(exchanged) {
            if let Some(agent_id) = agent_id {
                *counts.entry(agent_id).or_default() += u64::try_from(count).unwrap_or(0);
            }
        }
        Ok(counts
            .into_iter()
            .map(|(agent_id, count)| (AgentId(agent_id), count))
            .collect())
    }

    /// Served by `audit_events_owner_agent_time_idx` and, for exchanges,
    /// `audit_events_exchanges_by_actor_idx`.
    async fn tokens_issued_by(
        &self,
        owner: &Owner,
        agent: AgentId,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let issued: i64 = audit_events::table
            .filter(audit_events::owner.eq(owner.as_str()))
            .filter(audit_events::agent_id.eq(agent.0))
            .filter(audit_events::timestamp.ge(since))
            .filter(audit_events::action.eq(AuditAction::TokenIssued.as_str()))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(from_diesel)?;
        let exchanged: i64 = audit_events::table
            .filter(audit_events::owner.eq(owner.as_str()))
            .filter(audit_events::actor_id.eq(agent.0))
            .filter(audit_events::timestamp.ge(since))
            .filter(audit_events::action.eq(AuditAction::TokenExchanged.as_str()))
            .filter(audit_events::outcome.eq(Outcome::Success.as_str()))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(u64::try_from(issued + exchanged).unwrap_or(0))
    }
}
