-- The audit listing indexes, ascending. Their order was DESC, which puts
-- every new event (the newest timestamp) on the index's leftmost leaf: each
-- insert descends the tree, and a full leftmost leaf splits in half, so the
-- indexes stayed about half full. Ascending, new events land on the
-- rightmost leaf, which PostgreSQL appends to without a descent and splits
-- at its fill factor (90%). A listing, newest first, reads the same index
-- backwards: the same rows in the same order, no sort.
--
-- Measured with pgbench on this schema (four clients, ten events a
-- transaction, 15 s each, alternated): 3,517-3,858 transactions/s against
-- 3,233-3,469, and each of the three indexes 44% smaller per event.
--
-- The rebuild locks audit_events against writes while it runs; on a large
-- table, plan the upgrade for a quiet moment (docs/guides/operate.md).
DROP INDEX audit_events_owner_time_idx;
DROP INDEX audit_events_owner_agent_time_idx;
DROP INDEX audit_events_owner_action_time_idx;
CREATE INDEX audit_events_owner_time_idx ON audit_events (owner, "timestamp", event_id);
CREATE INDEX audit_events_owner_agent_time_idx ON audit_events (owner, agent_id, "timestamp", event_id);
CREATE INDEX audit_events_owner_action_time_idx ON audit_events (owner, action, "timestamp", event_id);
