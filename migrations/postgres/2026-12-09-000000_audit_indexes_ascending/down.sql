-- Back to the descending indexes of 2026-11-23-000000.
DROP INDEX audit_events_owner_time_idx;
DROP INDEX audit_events_owner_agent_time_idx;
DROP INDEX audit_events_owner_action_time_idx;
CREATE INDEX audit_events_owner_time_idx ON audit_events (owner, "timestamp" DESC, event_id DESC);
CREATE INDEX audit_events_owner_agent_time_idx ON audit_events (owner, agent_id, "timestamp" DESC, event_id DESC);
CREATE INDEX audit_events_owner_action_time_idx ON audit_events (owner, action, "timestamp" DESC, event_id DESC);
