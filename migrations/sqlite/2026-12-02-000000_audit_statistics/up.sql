-- Statistics for SQLite's query planner on audit_events (rows of
-- sqlite_stat1, the table ANALYZE fills), written by hand so that every
-- database plans the audit queries the same way, from its first event on.
--
-- Without statistics SQLite guesses that an equality on an index's second
-- column narrows the first column's 10 rows to 9. With a date range on both
-- sides (the service always sets fromDate), it then reads a page of one
-- agent's (or one action's) events through audit_events_owner_time_idx:
-- every event of the owner in the range, each looked up in the table, to
-- keep a handful. At 100,000 events (10 owners, 1,000 agents, 30 days) that
-- was ~4.5 ms for a 7-day page instead of ~0.05 ms. The test
-- `each_audit_filter_reads_through_its_own_index_without_sorting` in
-- crates/idp-store-sqlite/src/audit.rs checks the plan of every filter.
--
-- The figures describe the shape the indexes serve, not any one database:
-- "rows, rows per owner, rows per (owner, agent or action), rows per
-- instant, rows per event". They are ANALYZE's own output on the database
-- above; their ratios are what matter to the planner: an agent holds a
-- hundredth of its owner's events, an action about a tenth, an instant about
-- one. ANALYZE (or PRAGMA optimize) replaces them with a database's real
-- figures, which plan these queries the same way on data of that shape; a
-- database that was already analyzed keeps its figures.

-- Creates sqlite_stat1 (and sqlite_stat4 where compiled in) if missing;
-- sqlite_schema has no index, so nothing is analyzed.
ANALYZE sqlite_schema;

INSERT INTO sqlite_stat1 (tbl, idx, stat)
SELECT 'audit_events', column1, column2
FROM (VALUES
    ('sqlite_autoindex_audit_events_1', '100000 1'),
    ('audit_events_owner_time_idx', '100000 10000 1 1'),
    ('audit_events_owner_agent_time_idx', '100000 10000 100 1 1'),
    ('audit_events_owner_action_time_idx', '100000 10000 910 1 1'))
WHERE NOT EXISTS (SELECT 1 FROM sqlite_stat1 WHERE tbl = 'audit_events');
