//! The audit hash chain on SQLite (contract section 15): every append links
//! its events after their owner's head in `audit_heads`, inside the writing
//! transaction, and the migration step links the events stored before the
//! chain existed.
//!
//! Every write that appends runs in a `BEGIN IMMEDIATE` transaction: it holds
//! the database's write lock from reading a head to its commit, so writers
//! of one owner (of every connection and every process) take turns and form
//! one gapless chain. That lock is SQLite's `SELECT ... FOR UPDATE` of the
//! head.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text};
use diesel::upsert::excluded;
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::audit_chain::{ChainHead, link};
use idp_domain::values::Owner;

use crate::columns::{instant, millis, uuid_text};
use crate::error::{TxError, corrupt_row};
use crate::rows::{AuditEventRow, NewAuditEventRow};
use crate::schema::{audit_events, audit_heads};

/// Most rows in one INSERT: 12 bind parameters a row stays far below
/// SQLite's limit of 32,766 parameters per statement.
const ROWS_PER_INSERT: usize = 1_000;

/// How many unchained events the backfill links per query.
const BACKFILL_BATCH: i64 = 1_000;

/// The append-only trigger the backfill lifts while it writes the links.
const UPDATE_TRIGGER: &str = "audit_events_no_update";

/// `owner`'s recorded head, inside the caller's transaction.
pub(crate) fn read_head(
    conn: &mut SqliteConnection,
    owner: &str,
) -> Result<Option<ChainHead>, TxError> {
    let row: Option<(i64, String)> = audit_heads::table
        .filter(audit_heads::owner.eq(owner))
        .select((audit_heads::sequence, audit_heads::hash))
        .first(conn)
        .optional()?;
    row.map(|(sequence, hash)| {
        let sequence = u64::try_from(sequence)
            .map_err(|e| corrupt_row("audit_heads", owner, format!("sequence: {e}")))?;
        Ok(ChainHead { sequence, hash })
    })
    .transpose()
}

/// Records `head` as `owner`'s head.
fn write_head(conn: &mut SqliteConnection, owner: &str, head: &ChainHead) -> Result<(), TxError> {
    let sequence = stored_sequence(head.sequence)?;
    diesel::insert_into(audit_heads::table)
        .values((
            audit_heads::owner.eq(owner),
            audit_heads::sequence.eq(sequence),
            audit_heads::hash.eq(&head.hash),
        ))
        .on_conflict(audit_heads::owner)
        .do_update()
        .set((
            audit_heads::sequence.eq(excluded(audit_heads::sequence)),
            audit_heads::hash.eq(excluded(audit_heads::hash)),
        ))
        .execute(conn)?;
    Ok(())
}

/// A sequence as SQLite's INTEGER holds it.
fn stored_sequence(sequence: u64) -> Result<i64, StoreError> {
    i64::try_from(sequence)
        .map_err(|e| StoreError::Unknown(anyhow::anyhow!("audit sequence {sequence}: {e}")))
}

/// Links `events` after `head` (a domain failure to hash is a bug: `Unknown`).
fn link_after(head: &ChainHead, events: &mut [AuditEvent]) -> Result<ChainHead, StoreError> {
    link(head, events).map_err(|e| StoreError::Unknown(e.context("cannot link audit events")))
}

/// Appends `events` to their owners' chains: grouped by
/// [`AuditEvent::chain_owner`], owners in sorted order, each group in the
/// given order after its owner's head (genesis when none), stored with its
/// sequence and hash, and the head moved. Runs inside the caller's write
/// transaction, which must be `BEGIN IMMEDIATE` (see the module's comment).
///
/// The hash covers the event as it will be read back: its timestamp is
/// rounded down to the millisecond first, as the table stores it.
pub(crate) fn append_chained(
    conn: &mut SqliteConnection,
    events: &[AuditEvent],
) -> Result<(), TxError> {
    let mut by_owner: BTreeMap<String, Vec<AuditEvent>> = BTreeMap::new();
    for event in events {
        let mut event = event.clone();
        if let Some(stored) = instant(millis(event.timestamp)) {
            event.timestamp = stored;
        }
        by_owner
            .entry(event.chain_owner().as_str().to_owned())
            .or_default()
            .push(event);
    }
    for (owner, mut events) in by_owner {
        let head = read_head(conn, &owner)?.unwrap_or_else(ChainHead::genesis);
        let head = link_after(&head, &mut events)?;
        let rows = events
            .iter()
            .map(NewAuditEventRow::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            diesel::insert_into(audit_events::table)
                .values(chunk)
                .execute(conn)?;
        }
        write_head(conn, &owner, &head)?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = Bool)]
    found: bool,
}

#[derive(QueryableByName)]
struct TriggerSql {
    #[diesel(sql_type = Nullable<Text>)]
    sql: Option<String>,
}

/// Links the events stored before the chain existed (NULL `sequence`), inside
/// the migration's write transaction: for every owner, in `timestamp` then
/// `event_id` order, after that owner's head, which is then recorded. An
/// event without owner joins the [`Owner::system`] chain. Answers how many
/// events it linked; nothing to do (the usual case) is one probe of an empty
/// partial index.
///
/// The table refuses every UPDATE (trigger `audit_events_no_update`), so the
/// backfill drops that trigger and creates it again from its own stored SQL,
/// both in this transaction: no other writer can run meanwhile (the write
/// lock is held), no reader ever sees the table without it (the drop commits
/// with the re-creation or not at all), and the trigger comes back exactly
/// as the migrations last wrote it.
pub(crate) fn backfill(conn: &mut SqliteConnection) -> Result<u64, TxError> {
    let pending = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM audit_events WHERE sequence IS NULL) AS found",
    )
    .get_result::<Found>(conn)?;
    if !pending.found {
        return Ok(0);
    }
    let trigger =
        diesel::sql_query("SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?")
            .bind::<Text, _>(UPDATE_TRIGGER)
            .get_result::<TriggerSql>(conn)
            .optional()?
            .and_then(|row| row.sql);
    if trigger.is_some() {
        diesel::sql_query(format!("DROP TRIGGER {UPDATE_TRIGGER}")).execute(conn)?;
    }
    let linked = link_unchained(conn)?;
    if let Some(sql) = trigger {
        diesel::sql_query(sql).execute(conn)?;
    }
    Ok(linked)
}

/// The body of [`backfill`], with the UPDATE trigger lifted.
fn link_unchained(conn: &mut SqliteConnection) -> Result<u64, TxError> {
    diesel::update(audit_events::table.filter(audit_events::owner.is_null()))
        .set(audit_events::owner.eq(Owner::system().as_str()))
        .execute(conn)?;
    let owners: Vec<Option<String>> = audit_events::table
        .filter(audit_events::sequence.is_null())
        .select(audit_events::owner)
        .distinct()
        .order(audit_events::owner)
        .load(conn)?;
    let mut linked = 0;
    for owner in owners.into_iter().flatten() {
        let mut head = read_head(conn, &owner)?.unwrap_or_else(ChainHead::genesis);
        loop {
            let rows: Vec<AuditEventRow> = audit_events::table
                .filter(audit_events::owner.eq(&owner))
                .filter(audit_events::sequence.is_null())
                .order((audit_events::timestamp, audit_events::event_id))
                .limit(BACKFILL_BATCH)
                .select(AuditEventRow::as_select())
                .load(conn)?;
            if rows.is_empty() {
                break;
            }
            let mut events = rows
                .into_iter()
                .map(AuditEvent::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            head = link_after(&head, &mut events)?;
            for event in &events {
                let sequence = stored_sequence(event.sequence.unwrap_or_default())?;
                let updated = diesel::update(
                    audit_events::table
                        .filter(audit_events::event_id.eq(uuid_text(event.event_id.0)))
                        .filter(audit_events::sequence.is_null()),
                )
                .set((
                    audit_events::sequence.eq(sequence),
                    audit_events::hash.eq(event.hash.as_deref()),
                ))
                .execute(conn)?;
                // Each row is linked once: anything else would loop forever.
                if updated != 1 {
                    return Err(StoreError::Unknown(anyhow::anyhow!(
                        "audit backfill could not link event {}",
                        event.event_id
                    ))
                    .into());
                }
                linked += 1;
            }
        }
        if head.sequence > 0 {
            write_head(conn, &owner, &head)?;
        }
    }
    Ok(linked)
}
